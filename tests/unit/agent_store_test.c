/* Run checkpoints and sessions against a real nats-server that this test
 * starts on a free port in a temporary directory (as queue_kvget_test does):
 * compare-and-set conflicts between two writers of one run (sync, and async
 * through aq_publisher with reads through aq_kv_getter), a run resumed after
 * its checkpoint was deleted, idempotent and concurrent session appends,
 * lease contention, takeover of an expired lease (one winner among many),
 * renew and release after a takeover. Buckets are made as `agentq init`
 * makes them (aq_queue_bucket_ensure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_nats.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_event.h"
#include "agent/agent_store.h"
#include "core/clock.h"
#include "core/mailbox.h"
#include "queue/queue_kvget.h"
#include "queue/queue_publish.h"
#include "queue/queue_setup.h"
#include "session/session.h"

#define RUNS "t-runs"
#define SESSIONS "t-sessions"
#define CAP (1024 * 1024)
#define NOW 1700000000000LL
#define TIMEOUT 5000

typedef struct fixture {
    aq_test_nats srv;
    natsConnection *nc;
    jsCtx *js;
    struct event_base *base;
    aq_mailbox *mb;
} fixture;

static fixture F;

/* ---- the server ---- */

static int setup(void **state)
{
    (void)state;
    evthread_use_pthreads();
    if (aq_test_nats_start(&F.srv, "agent", true) != 0)
        return -1;
    natsStatus s = aq_test_nats_connect(&F.srv, &F.nc);
    if (s != NATS_OK || natsConnection_JetStream(&F.js, F.nc, NULL) != NATS_OK)
        return -1;
    aq_err err;
    aq_queue_bucket runs = {"runs bucket", RUNS, 3600000, 1, CAP};
    aq_queue_bucket sessions = {"sessions bucket", SESSIONS, 3600000, 1, CAP};
    if (aq_queue_bucket_ensure(F.js, &runs, NULL, NULL, &err) != AQ_OK ||
        aq_queue_bucket_ensure(F.js, &sessions, NULL, NULL, &err) != AQ_OK)
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
    jsCtx_Destroy(F.js);
    natsConnection_Destroy(F.nc);
    aq_test_nats_stop(&F.srv);
    nats_Close();
    return 0;
}

/* ---- helpers ---- */

static aq_run *new_run(const char *id)
{
    Agentq__V1__Task t = AGENTQ__V1__TASK__INIT;
    t.id = (char *)id;
    t.prompt = "hello";
    aq_run *r = NULL;
    aq_err err;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    return r;
}

static void answer(aq_run *r, const char *tool_use_id)
{
    Agentq__V1__ContentBlock b = AGENTQ__V1__CONTENT_BLOCK__INIT;
    Agentq__V1__ToolUseBlock u = AGENTQ__V1__TOOL_USE_BLOCK__INIT;
    Agentq__V1__ContentBlock *bp[1] = {&b};
    u.id = (char *)tool_use_id;
    u.name = "search";
    u.input_json = "{}";
    b.block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
    b.tool_use = &u;
    aq_run_answer a = {.content = bp, .n_content = 1, .stop_reason = "tool_use", .model = "m"};
    aq_run_limits lim = {10, 10, 0, false};
    aq_err err;
    assert_int_equal(aq_run_apply_answer(r, &lim, &a, NOW, &err), AQ_OK);
}

/* ---- checkpoints, synchronous ---- */

static void test_cas_two_writers(void **state)
{
    (void)state;
    aq_err err;
    aq_run *r = NULL, *a = new_run("run-cas"), *b = new_run("run-cas");
    uint64_t rev = 99, rev_a = 0, rev_b = 0;
    assert_int_equal(aq_run_load(F.js, RUNS, "run-cas", TIMEOUT, CAP, &r, &rev, &err), AQ_NOT_FOUND);
    assert_int_equal(rev, 0);
    /* two deliveries start the same run: the first write wins */
    assert_int_equal(aq_run_save(F.js, RUNS, a, 0, CAP, &rev_a, &err), AQ_OK);
    assert_true(rev_a > 0);
    assert_int_equal(aq_run_save(F.js, RUNS, b, 0, CAP, &rev_b, &err), AQ_WRITE_CONFLICT);
    /* the loser reloads and goes on from what is stored */
    aq_run_free(b);
    assert_int_equal(aq_run_load(F.js, RUNS, "run-cas", TIMEOUT, CAP, &b, &rev_b, &err), AQ_OK);
    assert_int_equal(rev_b, rev_a);
    /* A advances the run; B's write from the older revision is refused */
    answer(a, "toolu_a");
    uint64_t rev_a2 = 0;
    assert_int_equal(aq_run_save(F.js, RUNS, a, rev_a, CAP, &rev_a2, &err), AQ_OK);
    answer(b, "toolu_b");
    assert_int_equal(aq_run_save(F.js, RUNS, b, rev_b, CAP, NULL, &err), AQ_WRITE_CONFLICT);
    aq_run_free(b);
    assert_int_equal(aq_run_load(F.js, RUNS, "run-cas", TIMEOUT, CAP, &b, &rev_b, &err), AQ_OK);
    assert_int_equal(rev_b, rev_a2);
    assert_int_equal(aq_run_state(b)->n_pending, 1);
    assert_string_equal(aq_run_state(b)->pending[0]->id, "toolu_a"); /* no fork */
    /* the cap applies to loads too */
    aq_run_free(r);
    r = NULL;
    assert_int_equal(aq_run_load(F.js, RUNS, "run-cas", TIMEOUT, 8, &r, &rev, &err), AQ_TOO_BIG);
    assert_int_equal(aq_run_save(F.js, RUNS, b, rev_b, 8, NULL, &err), AQ_TOO_BIG);
    aq_run_free(a);
    aq_run_free(b);
}

/* ---- checkpoints, asynchronous (the worker's way) ---- */

typedef struct async_op {
    aq_status st;
    uint64_t seq;
    bool done;
    aq_kv_read rd;
} async_op;

static void on_saved(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)err;
    async_op *op = ctx;
    op->st = st;
    op->seq = seq;
    op->done = true;
    event_base_loopbreak(F.base);
}

static void on_read(aq_kv_read *rd)
{
    async_op *op = rd->ctx;
    op->done = true;
    event_base_loopbreak(F.base);
}

static void wait_op(async_op *op)
{
    int64_t until = aq_mono_ms() + 10000;
    while (!op->done && aq_mono_ms() < until)
        event_base_loop(F.base, EVLOOP_ONCE);
    assert_true(op->done);
}

static void test_async_save_and_load(void **state)
{
    (void)state;
    aq_err err;
    aq_publisher *pub = NULL;
    aq_kv_getter *kg = NULL;
    aq_kv_getter_config gc = {.timeout_ms = TIMEOUT, .max_in_flight = 16, .max_value_bytes = CAP};
    assert_int_equal(aq_publisher_new(F.nc, F.mb, TIMEOUT, &pub, &err), AQ_OK);
    assert_int_equal(aq_kv_getter_new(F.nc, F.js, RUNS, &gc, F.base, F.mb, &kg, &err), AQ_OK);
    aq_run *r = new_run("run-async"), *loaded = NULL;
    async_op w1 = {0}, w2 = {0}, rd = {0};
    assert_int_equal(aq_run_save_async(pub, RUNS, r, 0, CAP, on_saved, &w1, &err), AQ_OK);
    wait_op(&w1);
    assert_int_equal(w1.st, AQ_OK);
    assert_true(w1.seq > 0);
    /* a second first-write: the other delivery advanced this run */
    assert_int_equal(aq_run_save_async(pub, RUNS, r, 0, CAP, on_saved, &w2, &err), AQ_OK);
    wait_op(&w2);
    assert_int_equal(w2.st, AQ_WRITE_CONFLICT);
    answer(r, "toolu_1");
    memset(&w2, 0, sizeof(w2));
    assert_int_equal(aq_run_save_async(pub, RUNS, r, w1.seq, CAP, on_saved, &w2, &err), AQ_OK);
    wait_op(&w2);
    assert_int_equal(w2.st, AQ_OK);
    /* the run is changed right after save_async returns: the bytes were taken */
    async_op w3 = {0};
    assert_int_equal(aq_run_save_async(pub, RUNS, r, w2.seq, 16, on_saved, &w3, &err), AQ_TOO_BIG);
    assert_false(w3.done);
    aq_kv_getter_get(kg, &rd.rd, "run-async", on_read, &rd);
    wait_op(&rd);
    uint64_t rev = 0;
    assert_int_equal(aq_run_from_read(&rd.rd, CAP, &loaded, &rev, &err), AQ_OK);
    assert_int_equal(rev, w2.seq);
    assert_int_equal(aq_run_phase(loaded), AGENTQ__V1__RUN_PHASE__RUN_PHASE_TOOLS_PENDING);
    aq_kv_read_clear(&rd.rd);
    aq_run_free(loaded);
    loaded = NULL;

    /* a deleted checkpoint is a new run whose first write names the marker */
    kvStore *kv = NULL;
    assert_int_equal(js_KeyValue(&kv, F.js, RUNS), NATS_OK);
    assert_int_equal(kvStore_Delete(kv, "run-async"), NATS_OK);
    kvStore_Destroy(kv);
    memset(&rd, 0, sizeof(rd));
    aq_kv_getter_get(kg, &rd.rd, "run-async", on_read, &rd);
    wait_op(&rd);
    assert_int_equal(aq_run_from_read(&rd.rd, CAP, &loaded, &rev, &err), AQ_NOT_FOUND);
    assert_true(rev > w2.seq);
    aq_kv_read_clear(&rd.rd);
    memset(&w3, 0, sizeof(w3));
    assert_int_equal(aq_run_save_async(pub, RUNS, r, rev, CAP, on_saved, &w3, &err), AQ_OK);
    wait_op(&w3);
    assert_int_equal(w3.st, AQ_OK);
    aq_run_free(r);
    aq_kv_getter_destroy(kg);
    aq_publisher_destroy(pub);
}

/* ---- events ---- */

static void test_step_event_published(void **state)
{
    (void)state;
    aq_err err;
    natsSubscription *sub = NULL;
    natsMsg *m = NULL;
    assert_int_equal(natsConnection_SubscribeSync(&sub, F.nc, "agentq.events.run-ev"), NATS_OK);
    assert_int_equal(natsConnection_Flush(F.nc), NATS_OK);
    aq_run *r = new_run("run-ev");
    assert_null(aq_agent_step_event(r, 1)); /* no step yet */
    answer(r, "toolu_ev");
    json_t *ev = aq_agent_step_event(r, 1);
    assert_non_null(ev);
    assert_int_equal(aq_agent_event_publish(F.nc, NULL, "run-ev", ev, &err), AQ_OK);
    json_decref(ev);
    assert_int_equal(natsSubscription_NextMsg(&m, sub, TIMEOUT), NATS_OK);
    json_t *got = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    assert_non_null(got);
    assert_string_equal(json_string_value(json_object_get(got, "task_id")), "run-ev");
    assert_int_equal(json_integer_value(json_object_get(got, "step")), 1);
    assert_string_equal(json_string_value(json_object_get(got, "model")), "m");
    assert_string_equal(json_string_value(json_object_get(got, "phase")), "tools_pending");
    json_t *call = json_array_get(json_object_get(got, "tool_calls"), 0);
    assert_string_equal(json_string_value(json_object_get(call, "name")), "search");
    assert_string_equal(json_string_value(json_object_get(call, "outcome")), "pending");
    assert_non_null(json_object_get(json_object_get(got, "usage"), "input_tokens"));
    json_decref(got);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(sub);
    aq_run_free(r);
}

/* ---- sessions ---- */

static const Agentq__V1__Message *const *turn_msgs(Agentq__V1__Message *m, const char *q)
{
    static const Agentq__V1__Message *p[2];
    agentq__v1__message__init(&m[0]);
    agentq__v1__message__init(&m[1]);
    m[0].role = "user";
    m[0].content = (char *)q;
    m[1].role = "assistant";
    m[1].content = "ok";
    p[0] = &m[0];
    p[1] = &m[1];
    return p;
}

static void test_session_append_idempotent(void **state)
{
    (void)state;
    aq_err err;
    Agentq__V1__Message m[2];
    const Agentq__V1__Message *const *msgs = turn_msgs(m, "q1");
    bool appended = false;
    Agentq__V1__Session *s = NULL;
    uint64_t rev = 0;
    assert_int_equal(aq_session_load(F.js, SESSIONS, "chat-1", TIMEOUT, CAP, &s, &rev, &err),
                     AQ_NOT_FOUND);
    assert_int_equal(aq_session_append(F.js, SESSIONS, "chat-1", "t1", msgs, 2, NOW, CAP, TIMEOUT,
                                       &appended, &err), AQ_OK);
    assert_true(appended);
    assert_int_equal(aq_session_append(F.js, SESSIONS, "chat-1", "t1", msgs, 2, NOW, CAP, TIMEOUT,
                                       &appended, &err), AQ_OK);
    assert_false(appended); /* redelivery */
    assert_int_equal(aq_session_append(F.js, SESSIONS, "chat-1", "t2", msgs, 2, NOW, CAP, TIMEOUT,
                                       &appended, &err), AQ_OK);
    assert_true(appended);
    assert_int_equal(aq_session_load(F.js, SESSIONS, "chat-1", TIMEOUT, CAP, &s, &rev, &err), AQ_OK);
    assert_int_equal(s->n_turns, 2);
    assert_string_equal(s->turns[0]->task_id, "t1");
    assert_string_equal(s->turns[1]->task_id, "t2");
    aq_session_free(s);
    assert_int_equal(aq_session_append(F.js, SESSIONS, "bad id", "t1", msgs, 2, NOW, CAP, TIMEOUT,
                                       &appended, &err), AQ_INVALID_ARG);
}

#define APPENDERS 4
#define APPENDS 15

static void *appender(void *arg)
{
    int k = (int)(intptr_t)arg;
    Agentq__V1__Message m[2];
    Agentq__V1__Message *p[2] = {&m[0], &m[1]};
    agentq__v1__message__init(&m[0]);
    agentq__v1__message__init(&m[1]);
    m[0].role = "user";
    m[0].content = "q";
    m[1].role = "assistant";
    m[1].content = "a";
    intptr_t failures = 0;
    for (int i = 0; i < APPENDS; i++) {
        char task[32];
        bool appended = false;
        aq_err err;
        snprintf(task, sizeof(task), "w%d-%d", k, i);
        if (aq_session_append(F.js, SESSIONS, "chat-race", task,
                              (const Agentq__V1__Message *const *)p, 2, NOW, CAP, TIMEOUT,
                              &appended, &err) != AQ_OK || !appended) {
            fprintf(stderr, "append %s: %s (appended %d)\n", task, err.msg, appended);
            failures++;
        }
    }
    return (void *)failures;
}

static void test_session_concurrent_appends(void **state)
{
    (void)state;
    pthread_t th[APPENDERS];
    for (int i = 0; i < APPENDERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, appender, (void *)(intptr_t)i), 0);
    for (int i = 0; i < APPENDERS; i++) {
        void *failures = NULL;
        pthread_join(th[i], &failures);
        assert_int_equal((intptr_t)failures, 0);
    }
    Agentq__V1__Session *s = NULL;
    uint64_t rev = 0;
    aq_err err;
    assert_int_equal(aq_session_load(F.js, SESSIONS, "chat-race", TIMEOUT, CAP, &s, &rev, &err),
                     AQ_OK);
    assert_int_equal(s->n_turns, APPENDERS * APPENDS); /* no turn lost to a race */
    for (size_t i = 0; i < s->n_turns; i++)
        for (size_t j = i + 1; j < s->n_turns; j++)
            assert_string_not_equal(s->turns[i]->task_id, s->turns[j]->task_id);
    aq_session_free(s);
}

static void test_lease(void **state)
{
    (void)state;
    aq_err err;
    aq_session_lease a, b, a2;
    assert_int_equal(aq_session_lease_acquire(F.js, SESSIONS, "chat-l", "task-a", "w1", 60000, NOW,
                                              TIMEOUT, &a, &err), AQ_OK);
    assert_true(a.revision > 0);
    /* another task of the session waits */
    assert_int_equal(aq_session_lease_acquire(F.js, SESSIONS, "chat-l", "task-b", "w2", 60000,
                                              NOW + 1000, TIMEOUT, &b, &err), AQ_SESSION_BUSY);
    assert_string_equal(b.holder_task, "task-a");
    assert_int_equal(b.expires_unix_ms, NOW + 60000);
    assert_int_equal(aq_status_disposition(AQ_SESSION_BUSY), AQ_DISP_DEFER);
    /* the holder's own redelivery takes it back at once */
    assert_int_equal(aq_session_lease_acquire(F.js, SESSIONS, "chat-l", "task-a", "w3", 60000,
                                              NOW + 2000, TIMEOUT, &a2, &err), AQ_OK);
    /* the first delivery's renew learns it lost the lease */
    assert_int_equal(aq_session_lease_renew(F.js, SESSIONS, "chat-l", "task-a", "w1", 60000,
                                            NOW + 3000, &a, &err), AQ_WRITE_CONFLICT);
    assert_int_equal(aq_session_lease_renew(F.js, SESSIONS, "chat-l", "task-a", "w3", 60000,
                                            NOW + 3000, &a2, &err), AQ_OK);
    assert_int_equal(a2.expires_unix_ms, NOW + 63000);
    /* release, then the next task gets it */
    assert_int_equal(aq_session_lease_release(F.js, SESSIONS, "chat-l", &a2, &err), AQ_OK);
    assert_int_equal(aq_session_lease_acquire(F.js, SESSIONS, "chat-l", "task-b", "w2", 1000,
                                              NOW + 4000, TIMEOUT, &b, &err), AQ_OK);
    /* a stale release does not free someone else's lease */
    assert_int_equal(aq_session_lease_release(F.js, SESSIONS, "chat-l", &a2, &err),
                     AQ_WRITE_CONFLICT);
    assert_int_equal(aq_session_lease_acquire(F.js, SESSIONS, "chat-l", "task-c", "w4", 1000,
                                              NOW + 4500, TIMEOUT, &a, &err), AQ_SESSION_BUSY);
    /* b's holder died: after the expiry, taken over */
    assert_int_equal(aq_session_lease_acquire(F.js, SESSIONS, "chat-l", "task-c", "w4", 1000,
                                              NOW + 5000, TIMEOUT, &a, &err), AQ_OK);
    assert_string_equal(a.holder_task, "task-c");
    assert_int_equal(aq_session_lease_renew(F.js, SESSIONS, "chat-l", "task-b", "w2", 1000,
                                            NOW + 5100, &b, &err), AQ_WRITE_CONFLICT);
}

#define CONTENDERS 6

typedef struct contender {
    int k;
    aq_status st;
} contender;

static pthread_barrier_t g_barrier;

static void *contend(void *arg)
{
    contender *c = arg;
    char task[32];
    aq_session_lease l;
    aq_err err;
    snprintf(task, sizeof(task), "c%d", c->k);
    pthread_barrier_wait(&g_barrier);
    c->st = aq_session_lease_acquire(F.js, SESSIONS, "chat-x", task, "w", 60000, NOW + 10000,
                                     TIMEOUT, &l, &err);
    return NULL;
}

/* Many tasks find the same expired lease at once: exactly one takes it. */
static void test_lease_takeover_race(void **state)
{
    (void)state;
    aq_err err;
    aq_session_lease dead;
    assert_int_equal(aq_session_lease_acquire(F.js, SESSIONS, "chat-x", "dead", "w0", 1000, NOW,
                                              TIMEOUT, &dead, &err), AQ_OK);
    pthread_t th[CONTENDERS];
    contender c[CONTENDERS];
    pthread_barrier_init(&g_barrier, NULL, CONTENDERS);
    for (int i = 0; i < CONTENDERS; i++) {
        c[i].k = i;
        assert_int_equal(pthread_create(&th[i], NULL, contend, &c[i]), 0);
    }
    int won = 0, busy = 0;
    for (int i = 0; i < CONTENDERS; i++) {
        pthread_join(th[i], NULL);
        won += c[i].st == AQ_OK;
        busy += c[i].st == AQ_SESSION_BUSY;
    }
    pthread_barrier_destroy(&g_barrier);
    assert_int_equal(won, 1);
    assert_int_equal(busy, CONTENDERS - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cas_two_writers),
        cmocka_unit_test(test_async_save_and_load),
        cmocka_unit_test(test_step_event_published),
        cmocka_unit_test(test_session_append_idempotent),
        cmocka_unit_test(test_session_concurrent_appends),
        cmocka_unit_test(test_lease),
        cmocka_unit_test(test_lease_takeover_race),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
