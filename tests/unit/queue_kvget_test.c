/* Pipelined KV reads (queue_kvget.h) against a real nats-server that this
 * test starts on a free port in a temporary directory and stops at the end:
 * found / not found / deleted / purged keys (cross-checked against the
 * synchronous js_GetLastMsg reader), 10,000 reads in flight at once, the
 * local queue past the in-flight cap, the value size cap, invalid keys,
 * buckets without direct get, timeouts while the server is stopped
 * (SIGSTOP), and destroy with reads in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_nats.h"

#include <dirent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/mailbox.h"
#include "queue/queue_conn.h"
#include "queue/queue_kvget.h"
#include "queue/queue_kvread.h"

#define BUCKET "kvg"
#define MANY 10000
#define MANY_KEYS 200

typedef struct fixture {
    aq_test_nats srv;
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    struct event_base *base;
    aq_mailbox *mb;
} fixture;

static fixture F;

/* ---- the server ---- */

static int setup(void **state)
{
    (void)state;
    evthread_use_pthreads();
    if (aq_test_nats_start(&F.srv, "kvget", true) != 0)
        return -1;
    natsStatus s = aq_test_nats_connect(&F.srv, &F.nc);
    if (s != NATS_OK || natsConnection_JetStream(&F.js, F.nc, NULL) != NATS_OK)
        return -1;
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = BUCKET;
    kc.History = 1;
    if (js_CreateKeyValue(&F.kv, F.js, &kc) != NATS_OK)
        return -1;
    F.base = event_base_new();
    if (!F.base || aq_mailbox_new(F.base, &F.mb, NULL) != AQ_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    aq_mailbox_destroy(F.mb);
    event_base_free(F.base);
    kvStore_Destroy(F.kv);
    jsCtx_Destroy(F.js);
    natsConnection_Destroy(F.nc);
    aq_test_nats_stop(&F.srv);
    nats_Close();
    return 0;
}

/* ---- reads ---- */

typedef struct reads {
    aq_kv_read *r;
    int n;
    int done;
    int want; /* leave the loop after this many */
    bool sync_done; /* a done ran inside aq_kv_getter_get */
    bool in_get;
    aq_kv_getter *kg;
    size_t max_in_flight_seen;
} reads;

static reads R;

static void on_done(aq_kv_read *r)
{
    (void)r;
    if (R.in_get)
        R.sync_done = true;
    if (R.kg) {
        aq_kv_getter_stats st;
        aq_kv_getter_stats_get(R.kg, &st);
        if (st.in_flight > R.max_in_flight_seen)
            R.max_in_flight_seen = st.in_flight;
    }
    if (++R.done == R.want)
        event_base_loopbreak(F.base);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Run the loop until R.want reads are done (or 20 s). */
static void run_until_done(struct event_base *base)
{
    struct event *guard = evtimer_new(base, on_guard, base);
    struct timeval tv = {20, 0};
    evtimer_add(guard, &tv);
    if (R.done < R.want)
        event_base_dispatch(base);
    event_free(guard);
}

static void reads_begin(aq_kv_getter *kg, int n, int want)
{
    memset(&R, 0, sizeof(R));
    R.r = calloc((size_t)n, sizeof(aq_kv_read));
    assert_non_null(R.r);
    R.n = n;
    R.want = want;
    R.kg = kg;
}

static void get(aq_kv_getter *kg, int i, const char *key)
{
    R.in_get = true;
    aq_kv_getter_get(kg, &R.r[i], key, on_done, NULL);
    R.in_get = false;
}

static void reads_end(void)
{
    for (int i = 0; i < R.n; i++)
        aq_kv_read_clear(&R.r[i]);
    free(R.r);
    memset(&R, 0, sizeof(R));
}

static aq_kv_getter *getter(int64_t timeout_ms, int max_in_flight, size_t max_value)
{
    aq_kv_getter_config cfg = {.timeout_ms = timeout_ms, .max_in_flight = max_in_flight,
                               .max_value_bytes = max_value};
    aq_kv_getter *kg = NULL;
    aq_err err = {0};
    aq_status st = aq_kv_getter_new(F.nc, F.js, BUCKET, &cfg, F.base, F.mb, &kg, &err);
    if (st != AQ_OK)
        fail_msg("aq_kv_getter_new: %s", err.msg);
    return kg;
}

static uint64_t put(const char *key, const char *value)
{
    uint64_t rev = 0;
    assert_int_equal(kvStore_PutString(&rev, F.kv, key, value), NATS_OK);
    return rev;
}

static void test_found_missing_deleted_purged(void **state)
{
    (void)state;
    put("found", "one");
    uint64_t rev = put("found", "two");
    put("deleted", "x");
    assert_int_equal(kvStore_Delete(F.kv, "deleted"), NATS_OK);
    put("purged", "x");
    assert_int_equal(kvStore_Purge(F.kv, "purged", NULL), NATS_OK);
    put("empty", "");

    const char *keys[] = {"found", "missing", "deleted", "purged", "empty"};
    enum { N = 5 };
    aq_kv_getter *kg = getter(2000, 16, 1024);
    reads_begin(kg, N, N);
    for (int i = 0; i < N; i++)
        get(kg, i, keys[i]);
    assert_int_equal(R.done, 0);
    run_until_done(F.base);
    assert_int_equal(R.done, N);
    assert_false(R.sync_done);

    assert_int_equal(R.r[0].status, AQ_OK);
    assert_int_equal(R.r[0].revision, rev);
    assert_false(R.r[0].deleted);
    assert_int_equal(natsMsg_GetDataLength(R.r[0].msg), 3);
    assert_memory_equal(natsMsg_GetData(R.r[0].msg), "two", 3);
    assert_int_equal(R.r[1].status, AQ_NOT_FOUND);
    assert_null(R.r[1].msg);
    assert_int_equal(R.r[1].revision, 0);
    assert_int_equal(R.r[2].status, AQ_OK);
    assert_true(R.r[2].deleted);
    assert_int_equal(R.r[3].status, AQ_OK);
    assert_true(R.r[3].deleted);
    assert_int_equal(R.r[4].status, AQ_OK);
    assert_int_equal(natsMsg_GetDataLength(R.r[4].msg), 0);

    /* The same answers as the synchronous reader (revision = the stream
     * sequence js_GetLastMsg reports). */
    for (int i = 0; i < N; i++) {
        aq_kv_read sync;
        memset(&sync, 0, sizeof(sync));
        aq_kv_read_now(F.js, BUCKET, keys[i], 2000, &sync);
        assert_int_equal(sync.status, R.r[i].status);
        assert_int_equal(sync.revision, R.r[i].revision);
        assert_int_equal(sync.deleted, R.r[i].deleted);
        if (sync.msg) {
            assert_int_equal(natsMsg_GetDataLength(sync.msg), natsMsg_GetDataLength(R.r[i].msg));
            assert_memory_equal(natsMsg_GetData(sync.msg), natsMsg_GetData(R.r[i].msg),
                                (size_t)natsMsg_GetDataLength(sync.msg));
        }
        aq_kv_read_clear(&sync);
    }
    aq_kv_getter_stats st;
    aq_kv_getter_stats_get(kg, &st);
    assert_int_equal(st.sent, N);
    assert_int_equal(st.completed, N);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.in_flight, 0);

    /* A completed, cleared read may be reused. */
    aq_kv_read_clear(&R.r[0]);
    R.want = N + 1;
    get(kg, 0, "found");
    run_until_done(F.base);
    assert_int_equal(R.r[0].status, AQ_OK);
    assert_int_equal(R.r[0].revision, rev);
    reads_end();
    aq_kv_getter_destroy(kg);
}

/* The getter's answers come to an inbox under the connection's
 * nats_inbox_prefix (so that NATS permissions can give each user its own
 * inbox), not under nats.c's "_INBOX". */
static void test_inbox_prefix(void **state)
{
    (void)state;
    put("pfx", "v");
    natsSubscription *mine = NULL, *other = NULL;
    assert_int_equal(natsConnection_SubscribeSync(&mine, F.nc, "_INBOX_kvt.>"), NATS_OK);
    assert_int_equal(natsConnection_SubscribeSync(&other, F.nc, "_INBOX.>"), NATS_OK);
    assert_int_equal(natsConnection_Flush(F.nc), NATS_OK);

    aq_queue_config qc = {.nats_url = F.srv.url, .nats_timeout_ms = 2000,
                          .nats_inbox_prefix = "_INBOX_kvt"};
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    aq_err err = {0};
    assert_int_equal(aq_queue_connect(&qc, NULL, &nc, &js, &err), AQ_OK);
    char inbox[AQ_QUEUE_INBOX_MAX];
    assert_int_equal(aq_queue_inbox_new(nc, inbox, sizeof(inbox), &err), AQ_OK);
    assert_int_equal(strncmp(inbox, "_INBOX_kvt.", 11), 0);
    assert_true(strlen(inbox) > 11 + 20);

    aq_kv_getter_config cfg = {.timeout_ms = 2000, .max_in_flight = 4, .max_value_bytes = 64};
    aq_kv_getter *kg = NULL;
    assert_int_equal(aq_kv_getter_new(nc, js, BUCKET, &cfg, F.base, F.mb, &kg, &err), AQ_OK);
    reads_begin(kg, 1, 1);
    get(kg, 0, "pfx");
    run_until_done(F.base);
    assert_int_equal(R.r[0].status, AQ_OK);
    reads_end();
    aq_kv_getter_destroy(kg);
    aq_queue_disconnect(nc, js);

    natsMsg *m = NULL;
    assert_int_equal(natsSubscription_NextMsg(&m, mine, 1000), NATS_OK);
    assert_int_equal(strncmp(natsMsg_GetSubject(m), "_INBOX_kvt.", 11), 0);
    natsMsg_Destroy(m);
    /* Nothing of that connection went to "_INBOX.". */
    assert_int_equal(natsSubscription_NextMsg(&m, other, 200), NATS_TIMEOUT);
    natsSubscription_Destroy(mine);
    natsSubscription_Destroy(other);

    /* A prefix that is not a subject prefix is refused, naming it. */
    const char *bad[] = {"", "a.*", "a.>", "a..b", ".a", "a.", "a b", "a\tb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(aq_queue_check_inbox_prefix(bad[i], &err), AQ_CONFIG);
        assert_non_null(strstr(err.msg, "nats_inbox_prefix"));
    }
    assert_int_equal(aq_queue_check_inbox_prefix("_INBOX", &err), AQ_OK);
    assert_int_equal(aq_queue_check_inbox_prefix("tenant-a._INBOX_pub", &err), AQ_OK);
    char longp[AQ_QUEUE_INBOX_PREFIX_MAX + 2];
    memset(longp, 'x', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(aq_queue_check_inbox_prefix(longp, &err), AQ_CONFIG);
    qc.nats_inbox_prefix = "a.*";
    assert_int_equal(aq_queue_connect(&qc, NULL, &nc, &js, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "nats_inbox_prefix \"a.*\""));
}

static void test_invalid_keys(void **state)
{
    (void)state;
    char long_key[AQ_KV_KEY_MAX + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    const char *keys[] = {"", "a b", "a..b", ".a", "a.", "a*", "a>", "q\"uote", long_key};
    enum { N = 9 };
    aq_kv_getter *kg = getter(2000, 4, 1024);
    reads_begin(kg, N, N);
    for (int i = 0; i < N; i++)
        get(kg, i, keys[i]);
    assert_int_equal(R.done, 0); /* never inside the call */
    run_until_done(F.base);
    assert_int_equal(R.done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(R.r[i].status, AQ_INVALID_ARG);
        assert_true(strlen(R.r[i].err.msg) > 0);
    }
    aq_kv_getter_stats st;
    aq_kv_getter_stats_get(kg, &st);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.errors, N);
    reads_end();
    aq_kv_getter_destroy(kg);
}

static void test_many_in_flight(void **state)
{
    (void)state;
    uint64_t revs[MANY_KEYS];
    char key[64], value[64];
    for (int k = 0; k < MANY_KEYS; k++) {
        snprintf(key, sizeof(key), "many.%d", k);
        snprintf(value, sizeof(value), "value-%d", k);
        revs[k] = put(key, value);
    }
    aq_kv_getter *kg = getter(10000, MANY, 1024);
    reads_begin(kg, MANY, MANY);
    for (int i = 0; i < MANY; i++) {
        /* every 10th key does not exist */
        snprintf(key, sizeof(key), i % 10 == 9 ? "many.none.%d" : "many.%d", i % MANY_KEYS);
        get(kg, i, key);
    }
    aq_kv_getter_stats st;
    aq_kv_getter_stats_get(kg, &st);
    assert_int_equal(st.sent, MANY);
    assert_int_equal(st.queued, 0);
    int64_t t0 = aq_mono_ms();
    run_until_done(F.base);
    int64_t ms = aq_mono_ms() - t0;
    assert_int_equal(R.done, MANY);
    for (int i = 0; i < MANY; i++) {
        int k = i % MANY_KEYS;
        if (i % 10 == 9) {
            assert_int_equal(R.r[i].status, AQ_NOT_FOUND);
            continue;
        }
        assert_int_equal(R.r[i].status, AQ_OK);
        assert_int_equal(R.r[i].revision, revs[k]);
        snprintf(value, sizeof(value), "value-%d", k);
        assert_int_equal(natsMsg_GetDataLength(R.r[i].msg), (int)strlen(value));
        assert_memory_equal(natsMsg_GetData(R.r[i].msg), value, strlen(value));
    }
    aq_kv_getter_stats_get(kg, &st);
    assert_int_equal(st.completed, MANY);
    assert_int_equal(st.errors + st.timeouts, 0);
    print_message("%d reads in flight at once: %lld ms\n", MANY, (long long)ms);
    reads_end();
    aq_kv_getter_destroy(kg);
}

static void test_local_queue(void **state)
{
    (void)state;
    enum { CAP = 8, N = 2000 };
    put("queued", "q");
    aq_kv_getter *kg = getter(5000, CAP, 1024);
    reads_begin(kg, N, N);
    for (int i = 0; i < N; i++)
        get(kg, i, "queued");
    aq_kv_getter_stats st;
    aq_kv_getter_stats_get(kg, &st);
    assert_int_equal(st.in_flight, CAP);
    assert_int_equal(st.queued, N - CAP);
    run_until_done(F.base);
    assert_int_equal(R.done, N);
    assert_true(R.max_in_flight_seen <= CAP);
    for (int i = 0; i < N; i++)
        assert_int_equal(R.r[i].status, AQ_OK);
    aq_kv_getter_stats_get(kg, &st);
    assert_int_equal(st.sent, N);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.in_flight, 0);
    reads_end();
    aq_kv_getter_destroy(kg);
}

static void test_value_cap(void **state)
{
    (void)state;
    char big[1001];
    memset(big, 'b', 1000);
    big[1000] = '\0';
    put("big", big);
    put("small", "0123456789");
    aq_kv_getter *kg = getter(2000, 4, 64);
    reads_begin(kg, 2, 2);
    get(kg, 0, "big");
    get(kg, 1, "small");
    run_until_done(F.base);
    assert_int_equal(R.r[0].status, AQ_TOO_BIG);
    assert_null(R.r[0].msg);
    assert_non_null(strstr(R.r[0].err.msg, "cap 64"));
    assert_int_equal(R.r[1].status, AQ_OK);
    reads_end();
    aq_kv_getter_destroy(kg);
}

static void test_bucket_checks(void **state)
{
    (void)state;
    aq_kv_getter_config cfg = {.timeout_ms = 1000, .max_in_flight = 4, .max_value_bytes = 64};
    aq_kv_getter *kg = NULL;
    aq_err err = {0};
    assert_int_equal(aq_kv_getter_new(F.nc, F.js, "nosuch", &cfg, F.base, F.mb, &kg, &err),
                     AQ_NOT_FOUND);
    assert_null(kg);
    assert_non_null(strstr(err.msg, "agentq init"));

    /* A KV-shaped stream without AllowDirect (what older tools made). */
    const char *subjects[] = {"$KV.nodirect.>"};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = "KV_nodirect";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.MaxMsgsPerSubject = 1;
    sc.AllowDirect = false;
    jsStreamInfo *si = NULL;
    assert_int_equal(js_AddStream(&si, F.js, &sc, NULL, NULL), NATS_OK);
    jsStreamInfo_Destroy(si);
    assert_int_equal(aq_kv_getter_new(F.nc, F.js, "nodirect", &cfg, F.base, F.mb, &kg, &err),
                     AQ_CONFIG);
    assert_null(kg);
    assert_non_null(strstr(err.msg, "direct get"));
    assert_non_null(strstr(err.msg, "agentq init"));

    /* Bad arguments. */
    assert_int_equal(aq_kv_getter_new(F.nc, F.js, "bad.name", &cfg, F.base, F.mb, &kg, &err),
                     AQ_INVALID_ARG);
    cfg.max_in_flight = 0;
    assert_int_equal(aq_kv_getter_new(F.nc, F.js, BUCKET, &cfg, F.base, F.mb, &kg, &err),
                     AQ_INVALID_ARG);
    assert_null(kg);
    aq_kv_getter_destroy(NULL);
}

/* SIGSTOP is delivered asynchronously: wait until the kernel reports every
 * thread of the server stopped ('T' in /proc/<pid>/task/<tid>/stat), or a
 * request sent at once could still be answered. */
static bool thread_stopped(const char *path)
{
    char buf[256];
    FILE *f = fopen(path, "r");
    if (!f)
        return true; /* the thread is gone */
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* "tid (comm) state ..." */
    return paren && paren[1] == ' ' && paren[2] == 'T';
}

static bool server_stopped(void)
{
    char dir[64], path[64 + 256 + 8];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)F.srv.pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool all = true;
    for (struct dirent *e; all && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
        all = thread_stopped(path);
    }
    closedir(d);
    return all;
}

static void stop_server(void)
{
    assert_int_equal(kill(F.srv.pid, SIGSTOP), 0);
    int64_t until = aq_mono_ms() + 5000;
    while (!server_stopped()) {
        assert_true(aq_mono_ms() < until);
        usleep(1000);
    }
}

static void test_timeout_server_stopped(void **state)
{
    (void)state;
    enum { N = 50, TIMEOUT_MS = 300 };
    put("slow", "s");
    aq_kv_getter *kg = getter(TIMEOUT_MS, 16, 1024);
    reads_begin(kg, N + 1, N);
    stop_server();
    int64_t t0 = aq_mono_ms();
    for (int i = 0; i < N; i++)
        get(kg, i, "slow");
    run_until_done(F.base);
    int64_t ms = aq_mono_ms() - t0;
    assert_int_equal(kill(F.srv.pid, SIGCONT), 0);
    assert_int_equal(R.done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(R.r[i].status, AQ_TIMEOUT);
        assert_non_null(strstr(R.r[i].err.msg, "within 300 ms"));
    }
    /* 16 in flight at a time, so about ceil(50/16) timeouts back to back. */
    assert_true(ms >= TIMEOUT_MS);
    assert_true(ms < 8 * TIMEOUT_MS);
    aq_kv_getter_stats st;
    aq_kv_getter_stats_get(kg, &st);
    assert_int_equal(st.timeouts, N);

    /* The server is back: the late answers to the timed-out requests are
     * dropped, and a new read is answered. */
    R.want = N + 1;
    get(kg, N, "slow");
    run_until_done(F.base);
    assert_int_equal(R.done, N + 1);
    assert_int_equal(R.r[N].status, AQ_OK);
    reads_end();
    aq_kv_getter_destroy(kg);
}

static void test_destroy_in_flight(void **state)
{
    (void)state;
    /* A loop and mailbox of its own: after destroy they are never run again,
     * as the contract asks. */
    struct event_base *base = event_base_new();
    aq_mailbox *mb = NULL;
    assert_non_null(base);
    assert_int_equal(aq_mailbox_new(base, &mb, NULL), AQ_OK);
    aq_kv_getter_config cfg = {.timeout_ms = 5000, .max_in_flight = 2000, .max_value_bytes = 1024};
    aq_kv_getter *kg = NULL;
    aq_err err = {0};
    assert_int_equal(aq_kv_getter_new(F.nc, F.js, BUCKET, &cfg, base, mb, &kg, &err), AQ_OK);
    put("bye", "value");
    reads_begin(kg, MANY, 100);
    for (int i = 0; i < MANY; i++)
        get(kg, i, i % 2 ? "bye" : "bye.none");
    /* Some complete, many are answered but not run yet (in the mailbox),
     * others are in flight or still queued locally. */
    struct event *guard = evtimer_new(base, on_guard, base);
    struct timeval tv = {20, 0};
    evtimer_add(guard, &tv);
    struct event_base *saved = F.base;
    F.base = base; /* on_done breaks F.base */
    event_base_dispatch(base);
    F.base = saved;
    event_free(guard);
    assert_true(R.done >= 100);
    usleep(100 * 1000);
    aq_kv_getter_stats st;
    aq_kv_getter_stats_get(kg, &st);
    /* Every slot is taken: answered (posted, not run) or still in flight. */
    assert_int_equal(st.in_flight, 2000);
    assert_int_equal(st.queued, (size_t)(MANY - 2000 - R.done));
    int done_before = R.done;
    aq_kv_getter_destroy(kg);
    aq_mailbox_destroy(mb);
    event_base_free(base);
    assert_int_equal(R.done, done_before);
    reads_end();
}

/* The connection closes first (nats.c then closes the subscription itself):
 * destroy must not wait for a callback that never comes. */
static void test_destroy_after_close(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    aq_mailbox *mb = NULL;
    assert_non_null(base);
    assert_int_equal(aq_mailbox_new(base, &mb, NULL), AQ_OK);
    natsConnection *nc = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, F.srv.url), NATS_OK);
    aq_kv_getter_config cfg = {.timeout_ms = 5000, .max_in_flight = 16, .max_value_bytes = 1024};
    aq_kv_getter *kg = NULL;
    aq_err err = {0};
    assert_int_equal(aq_kv_getter_new(nc, F.js, BUCKET, &cfg, base, mb, &kg, &err), AQ_OK);
    reads_begin(kg, 4, 4);
    for (int i = 0; i < 4; i++)
        get(kg, i, "found");
    natsConnection_Close(nc);
    aq_kv_getter_destroy(kg);
    natsConnection_Destroy(nc);
    aq_mailbox_destroy(mb);
    event_base_free(base);
    assert_int_equal(R.done, 0);
    reads_end();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_found_missing_deleted_purged),
        cmocka_unit_test(test_invalid_keys),
        cmocka_unit_test(test_inbox_prefix),
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_local_queue),
        cmocka_unit_test(test_value_cap),
        cmocka_unit_test(test_bucket_checks),
        cmocka_unit_test(test_timeout_server_stopped),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_destroy_after_close),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
