/* Reading results: get (now), wait (until they exist), watch (an agent run's
 * step events, then its result). */
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent_event.h"
#include "cli.h"
#include "core/clock.h"
#include "task/task_codec.h"
#include "task/task_json.h"

typedef struct get_config {
    aq_queue_config queue;
    int64_t timeout_ms;
} get_config;

const aq_option cli_get_options[] = {
    AQ_QUEUE_OPTIONS(get_config, queue),
    {"timeout", "AGENTQ_WAIT_TIMEOUT", AQ_OPT_DURATION, "60s", 0, 86400000,
     offsetof(get_config, timeout_ms), "wait: give up after this long"},
    AQ_OPTIONS_END,
};

/* Print a stored value as a JSON line; returns its status. */
static Agentq__V1__Status print_result(const void *data, size_t len, const char *key, bool print)
{
    Agentq__V1__Result *r = NULL;
    aq_err err;
    if (aq_result_unpack(data, len, &r, &err) != AQ_OK) {
        fprintf(stderr, "agentq: result %s: %s\n", key, err.msg);
        return AGENTQ__V1__STATUS__STATUS_UNSPECIFIED;
    }
    Agentq__V1__Status st = r->status;
    if (print) {
        json_t *o = aq_result_to_json(r);
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        fflush(stdout);
        json_decref(o);
    }
    aq_result_free(r);
    return st;
}

static int result_code(size_t failed, size_t missing)
{
    return missing ? CLI_NOT_DONE : failed ? CLI_TASK_FAILED : CLI_OK;
}

int cmd_get(int argc, char **argv)
{
    get_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    size_t failed = 0, missing = 0;
    int argi, rc = cli_parse(cli_get_options, &cfg, &cfg.queue, argc, argv,
                             "agentq get [options] ID...", &argi);
    if (rc >= 0)
        goto out;
    if (argi >= argc) {
        cli_error("get", "give at least one task id");
        rc = CLI_USAGE;
        goto out;
    }
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    natsStatus s = js_KeyValue(&kv, js, cfg.queue.results_bucket);
    if (s != NATS_OK) {
        cli_error("get", "results bucket %s: %s", cfg.queue.results_bucket,
                  aq_queue_status_text(s));
        rc = CLI_CONNECT;
        goto out;
    }
    for (int i = argi; i < argc; i++) {
        kvEntry *e = NULL;
        if (!aq_task_id_valid(argv[i])) {
            cli_error("get", "'%s' is not a valid task id", argv[i]);
            missing++;
            continue;
        }
        s = kvStore_Get(&e, kv, argv[i]);
        if (s == NATS_NOT_FOUND) {
            cli_error("get", "no result for %s (not finished, never submitted, or expired)", argv[i]);
            missing++;
            continue;
        }
        if (s != NATS_OK) {
            cli_error("get", "%s: %s", argv[i], aq_queue_status_text(s));
            missing++;
            continue;
        }
        if (print_result(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), argv[i], true) !=
            AGENTQ__V1__STATUS__STATUS_COMPLETED)
            failed++;
        kvEntry_Destroy(e);
    }
    rc = result_code(failed, missing);
out:
    kvStore_Destroy(kv);
    aq_queue_disconnect(nc, js);
    aq_config_free(cli_get_options, &cfg);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A result put on `subject` ("$KV.<bucket>.<id>") for one of the ids not
 * seen yet: printed and counted. */
typedef struct waiter {
    char **sorted;
    bool *seen;
    size_t n, done, failed;
    bool print;
} waiter;

static void wait_take(waiter *wt, const char *key, const void *data, size_t len)
{
    char **hit = bsearch(&key, wt->sorted, wt->n, sizeof(*wt->sorted), cmp_str);
    if (!hit || wt->seen[hit - wt->sorted])
        return;
    wt->seen[hit - wt->sorted] = true;
    wt->done++;
    if (print_result(data, len, key, wt->print) != AGENTQ__V1__STATUS__STATUS_COMPLETED)
        wt->failed++;
}

/* Direct gets of the ids not seen yet: the results stored before the
 * subscription started, or dropped by it. NATS_OK or the first error. */
static natsStatus wait_poll(waiter *wt, kvStore *kv)
{
    for (size_t i = 0; i < wt->n; i++) {
        if (wt->seen[i])
            continue;
        kvEntry *e = NULL;
        natsStatus s = kvStore_Get(&e, kv, wt->sorted[i]);
        if (s == NATS_NOT_FOUND)
            continue;
        if (s != NATS_OK)
            return s;
        wait_take(wt, wt->sorted[i], kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
        kvEntry_Destroy(e);
    }
    return NATS_OK;
}

/* How many messages the subscription may have missed so far: those it
 * dropped (a slow consumer) and, per reconnect, any stored meanwhile. */
static uint64_t wait_gaps(natsConnection *nc, natsSubscription *sub)
{
    int64_t dropped = 0;
    uint64_t in_msgs = 0, in_bytes = 0, out_msgs = 0, out_bytes = 0, reconnects = 0;
    natsStatistics *st = NULL;
    natsSubscription_GetDropped(sub, &dropped);
    if (natsStatistics_Create(&st) == NATS_OK && natsConnection_GetStats(nc, st) == NATS_OK)
        natsStatistics_GetCounts(st, &in_msgs, &in_bytes, &out_msgs, &out_bytes, &reconnects);
    natsStatistics_Destroy(st);
    return (uint64_t)dropped + reconnects;
}

int cli_wait_results(natsConnection *nc, jsCtx *js, const aq_queue_config *q, char **ids, size_t n,
                     int64_t timeout_ms, bool print, const char *cmd)
{
    kvStore *kv = NULL;
    natsSubscription *sub = NULL;
    waiter wt = {.sorted = calloc(n ? n : 1, sizeof(char *)),
                 .seen = calloc(n ? n : 1, sizeof(bool)),
                 .n = n,
                 .print = print};
    char subject[256];
    int rc = CLI_ERROR;
    if (!wt.sorted || !wt.seen)
        goto out;
    memcpy(wt.sorted, ids, n * sizeof(*ids));
    qsort(wt.sorted, n, sizeof(*wt.sorted), cmp_str);

    /* Results are KV puts on $KV.<bucket>.<id>: a plain subscription sees
     * them as they are stored (no consumer to create, so none to delete:
     * a publisher needs neither permission), and direct gets find those
     * stored before it started. */
    int prefix_len = snprintf(subject, sizeof(subject), "$KV.%s.>", q->results_bucket) - 1;
    if (prefix_len < 0 || (size_t)prefix_len + 1 >= sizeof(subject)) {
        cli_error(cmd, "results bucket name too long: %s", q->results_bucket);
        rc = CLI_USAGE;
        goto out;
    }
    natsStatus s = js_KeyValue(&kv, js, q->results_bucket);
    if (s == NATS_OK)
        s = natsConnection_SubscribeSync(&sub, nc, subject);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(sub, 1 << 20, 256 * 1024 * 1024);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(nc, q->nats_timeout_ms);
    /* A refused subscription is reported before the flush's answer. */
    const char *last = NULL;
    if (s == NATS_OK && natsConnection_GetLastError(nc, &last) == NATS_NOT_PERMITTED && last &&
        strstr(last, subject)) {
        cli_error(cmd, "results bucket %s: permission denied for subscription to \"%s\"",
                  q->results_bucket, subject);
        rc = CLI_CONNECT;
        goto out;
    }
    if (s == NATS_OK)
        s = wait_poll(&wt, kv);
    if (s != NATS_OK) {
        cli_error(cmd, "results bucket %s: %s", q->results_bucket, aq_queue_status_text(s));
        rc = CLI_CONNECT;
        goto out;
    }
    int64_t deadline = aq_mono_ms() + timeout_ms, next_check = aq_mono_ms() + 1000;
    uint64_t gaps = wait_gaps(nc, sub);
    while (wt.done < n) {
        int64_t left = deadline - aq_mono_ms();
        if (left <= 0)
            break;
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, left < 1000 ? left : 1000);
        if (s == NATS_OK) {
            const char *op = NULL;
            const char *subj = natsMsg_GetSubject(m);
            if (natsMsgHeader_Get(m, "KV-Operation", &op) != NATS_OK &&
                strlen(subj) > (size_t)prefix_len)
                wait_take(&wt, subj + prefix_len, natsMsg_GetData(m),
                          (size_t)natsMsg_GetDataLength(m));
            natsMsg_Destroy(m);
        } else if (s != NATS_TIMEOUT && s != NATS_SLOW_CONSUMER) {
            break;
        }
        /* Once a second: results the subscription may have missed are
         * looked up. */
        if (aq_mono_ms() >= next_check) {
            next_check = aq_mono_ms() + 1000;
            uint64_t now_gaps = wait_gaps(nc, sub);
            if (now_gaps != gaps && (s = wait_poll(&wt, kv)) != NATS_OK)
                break;
            gaps = now_gaps;
        }
    }
    /* The last look before giving up. */
    if (wt.done < n && s != NATS_OK && s != NATS_TIMEOUT && s != NATS_SLOW_CONSUMER)
        cli_error(cmd, "results bucket %s: %s", q->results_bucket, aq_queue_status_text(s));
    else if (wt.done < n)
        wait_poll(&wt, kv);
    if (wt.done < n) {
        const char *why = aq_queue_status_text(NATS_TIMEOUT);
        bool denied = strcmp(why, natsStatus_GetText(NATS_TIMEOUT)) != 0;
        cli_error(cmd, "timed out: %zu of %zu results arrived%s%s", wt.done, n,
                  denied ? "; " : "", denied ? why : "");
        for (size_t i = 0, shown = 0; i < n && shown < 10; i++)
            if (!wt.seen[i] && ++shown)
                fprintf(stderr, "  still waiting for %s\n", wt.sorted[i]);
    }
    rc = result_code(wt.failed, n - wt.done);
out:
    natsSubscription_Destroy(sub);
    kvStore_Destroy(kv);
    free(wt.sorted);
    free(wt.seen);
    return rc;
}

int cmd_wait(int argc, char **argv)
{
    get_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int argi, rc = cli_parse(cli_get_options, &cfg, &cfg.queue, argc, argv,
                             "agentq wait [--timeout 60s] [options] ID...", &argi);
    if (rc >= 0)
        goto out;
    if (argi >= argc) {
        cli_error("wait", "give at least one task id");
        rc = CLI_USAGE;
        goto out;
    }
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    rc = cli_wait_results(nc, js, &cfg.queue, argv + argi, (size_t)(argc - argi), cfg.timeout_ms, true,
                          "wait");
out:
    aq_queue_disconnect(nc, js);
    aq_config_free(cli_get_options, &cfg);
    return rc;
}

/* Events arrive on nats.c's thread, the Result on this one: the last step's
 * event is published before the Result is stored, but the two could still
 * be printed the other way round. So the Result is printed once the final
 * event (phase done or failed) is in, or a second has passed. */
typedef struct watch_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool final_seen, closed;
} watch_state;

static void on_step_event(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc;
    (void)sub;
    watch_state *w = closure;
    const char *data = natsMsg_GetData(m);
    int len = natsMsg_GetDataLength(m);
    pthread_mutex_lock(&w->lock);
    if (!w->closed) {
        printf("%.*s\n", len, data);
        fflush(stdout);
        if (memmem(data, (size_t)len, "\"phase\":\"done\"", 14) ||
            memmem(data, (size_t)len, "\"phase\":\"failed\"", 16)) {
            w->final_seen = true;
            pthread_cond_signal(&w->cond);
        }
    }
    pthread_mutex_unlock(&w->lock);
    natsMsg_Destroy(m);
}

int cmd_watch(int argc, char **argv)
{
    get_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    /* Static: a callback running while the subscription goes must not
     * find it gone (one watch per process). */
    static watch_state w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
    char subject[AQ_TASK_ID_MAX + 64];
    int argi, rc = cli_parse(cli_get_options, &cfg, &cfg.queue, argc, argv,
                             "agentq watch [--timeout 60s] [options] ID", &argi);
    if (rc >= 0)
        goto out;
    if (argi != argc - 1 || !aq_task_id_valid(argv[argi])) {
        cli_error("watch", "give one task id");
        rc = CLI_USAGE;
        goto out;
    }
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    /* Events are core NATS, not stored: subscribe before looking for the
     * result, and what was published before now is not shown. */
    snprintf(subject, sizeof(subject), "%s.%s", AQ_AGENT_EVENTS_PREFIX, argv[argi]);
    natsStatus s = natsConnection_Subscribe(&sub, nc, subject, on_step_event, &w);
    if (s == NATS_OK)
        s = natsConnection_Flush(nc);
    if (s != NATS_OK) {
        cli_error("watch", "cannot subscribe to %s: %s", subject, aq_queue_status_text(s));
        rc = CLI_CONNECT;
        goto out;
    }
    rc = cli_wait_results(nc, js, &cfg.queue, argv + argi, 1, cfg.timeout_ms, false, "watch");
    if (rc == CLI_OK || rc == CLI_TASK_FAILED) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_mutex_lock(&w.lock);
        while (!w.final_seen &&
               pthread_cond_timedwait(&w.cond, &w.lock, &until) == 0)
            ;
        w.closed = true; /* no event line after the Result */
        pthread_mutex_unlock(&w.lock);
        rc = cli_wait_results(nc, js, &cfg.queue, argv + argi, 1, cfg.timeout_ms, true, "watch");
    }
out:
    if (sub)
        natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    aq_queue_disconnect(nc, js);
    aq_config_free(cli_get_options, &cfg);
    return rc;
}
