#include "queue_probe.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

#define NAME_MAX_LEN 256

struct aq_queue_probe {
    natsConnection *nc;
    jsCtx *js;
    char stream[NAME_MAX_LEN], consumer[NAME_MAX_LEN], dlq[NAME_MAX_LEN], deferred[NAME_MAX_LEN];
    int64_t interval_ms, timeout_ms;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    bool stopping;       /* guarded by lock */
    /* written by the probe thread, read by anyone: atomics */
    bool connected;
    int state;
    int64_t probed_unix_ms, pending, ack_pending, dlq_messages, parked;
    uint64_t probes, failures;
};

#define STORE(field, v) __atomic_store_n(&pr->field, (v), __ATOMIC_RELAXED)
#define LOAD(field) __atomic_load_n(&pr->field, __ATOMIC_RELAXED)

const char *aq_queue_probe_state_text(aq_queue_probe_state st)
{
    switch (st) {
    case AQ_PROBE_UNKNOWN: return "queue not probed yet";
    case AQ_PROBE_OK: return "ok";
    case AQ_PROBE_DISCONNECTED: return "NATS disconnected";
    case AQ_PROBE_NO_CONSUMER: return "consumer not found";
    case AQ_PROBE_FAILED: return "JetStream request failed";
    }
    return "unknown";
}

static bool is_connected(aq_queue_probe *pr)
{
    bool c = natsConnection_Status(pr->nc) == NATS_CONN_STATUS_CONNECTED;
    STORE(connected, c);
    if (!c)
        STORE(state, (int)AQ_PROBE_DISCONNECTED);
    return c;
}

static void probe_once(aq_queue_probe *pr)
{
    jsOptions jo;
    jsErrCode jerr = 0;
    jsConsumerInfo *ci = NULL;
    jsStreamInfo *si = NULL;
    aq_queue_probe_state st;

    __atomic_fetch_add(&pr->probes, 1, __ATOMIC_RELAXED);
    if (!is_connected(pr)) {
        __atomic_fetch_add(&pr->failures, 1, __ATOMIC_RELAXED);
        return;
    }
    jsOptions_Init(&jo);
    jo.Wait = pr->timeout_ms;
    natsStatus s = js_GetConsumerInfo(&ci, pr->js, pr->stream, pr->consumer, &jo, &jerr);
    if (s == NATS_OK) {
        STORE(pending, (int64_t)ci->NumPending);
        STORE(ack_pending, ci->NumAckPending);
        STORE(probed_unix_ms, aq_now_unix_ms());
        st = AQ_PROBE_OK;
    } else if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
               jerr == JSStreamNotFoundErr) {
        st = AQ_PROBE_NO_CONSUMER;
    } else {
        st = is_connected(pr) ? AQ_PROBE_FAILED : AQ_PROBE_DISCONNECTED;
    }
    jsConsumerInfo_Destroy(ci);
    /* The DLQ's size is worth having even when the consumer is missing. */
    jerr = 0;
    if (pr->dlq[0] && is_connected(pr)) {
        s = js_GetStreamInfo(&si, pr->js, pr->dlq, &jo, &jerr);
        if (s == NATS_OK)
            STORE(dlq_messages, (int64_t)si->State.Msgs);
        jsStreamInfo_Destroy(si);
    }
    jerr = 0;
    if (pr->deferred[0] && is_connected(pr)) {
        si = NULL;
        s = js_GetStreamInfo(&si, pr->js, pr->deferred, &jo, &jerr);
        if (s == NATS_OK)
            STORE(parked, (int64_t)si->State.Msgs);
        else if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
            STORE(parked, (int64_t)-1);
        jsStreamInfo_Destroy(si);
    }
    if (st != AQ_PROBE_OK)
        __atomic_fetch_add(&pr->failures, 1, __ATOMIC_RELAXED);
    STORE(state, (int)st);
}

static struct timespec deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

static void *probe_loop(void *arg)
{
    aq_queue_probe *pr = arg;
    int64_t next_probe = aq_mono_ms();
    pthread_mutex_lock(&pr->lock);
    while (!pr->stopping) {
        int64_t now = aq_mono_ms();
        pthread_mutex_unlock(&pr->lock);
        if (now >= next_probe) {
            probe_once(pr);
            next_probe = aq_mono_ms() + pr->interval_ms;
        } else {
            bool was = LOAD(connected);
            if (is_connected(pr) && !was) {
                /* Back: probe now rather than stay "disconnected" for up
                 * to an interval. */
                probe_once(pr);
                next_probe = aq_mono_ms() + pr->interval_ms;
            }
        }
        pthread_mutex_lock(&pr->lock);
        if (pr->stopping)
            break;
        int64_t wait = next_probe - aq_mono_ms();
        if (wait > AQ_QUEUE_PROBE_CONN_CHECK_MS)
            wait = AQ_QUEUE_PROBE_CONN_CHECK_MS;
        if (wait > 0) {
            struct timespec ts = deadline_in(wait);
            while (!pr->stopping && pthread_cond_timedwait(&pr->cond, &pr->lock, &ts) != ETIMEDOUT)
                ;
        }
    }
    pthread_mutex_unlock(&pr->lock);
    return NULL;
}

aq_status aq_queue_probe_new(natsConnection *nc, jsCtx *js, const aq_queue_probe_opts *opts,
                             aq_queue_probe **out, aq_err *err)
{
    aq_status st = AQ_OK;
    pthread_condattr_t ca;
    if (!nc || !js || !opts->task_stream || !opts->consumer)
        return aq_err_set(err, AQ_INVALID_ARG, "queue probe: connection, stream and consumer needed");
    const char *dlq = opts->dlq_stream ? opts->dlq_stream : "";
    const char *deferred = opts->deferred_stream ? opts->deferred_stream : "";
    if (strlen(opts->task_stream) >= NAME_MAX_LEN || strlen(opts->consumer) >= NAME_MAX_LEN ||
        strlen(dlq) >= NAME_MAX_LEN || strlen(deferred) >= NAME_MAX_LEN)
        return aq_err_set(err, AQ_TOO_BIG, "queue probe: a stream or consumer name is over %d bytes",
                          NAME_MAX_LEN - 1);
    aq_queue_probe *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return aq_err_set(err, AQ_NOMEM, "queue probe: out of memory");
    pr->nc = nc;
    pr->js = js;
    strcpy(pr->stream, opts->task_stream);
    strcpy(pr->consumer, opts->consumer);
    strcpy(pr->dlq, dlq);
    strcpy(pr->deferred, deferred);
    pr->interval_ms = opts->interval_ms < AQ_QUEUE_PROBE_MIN_INTERVAL_MS
                          ? AQ_QUEUE_PROBE_MIN_INTERVAL_MS
                          : opts->interval_ms;
    pr->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 2000;
    pr->pending = pr->ack_pending = pr->dlq_messages = pr->parked = -1;
    pthread_mutex_init(&pr->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pr->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&pr->thread, NULL, probe_loop, pr) != 0) {
        st = aq_err_set(err, AQ_NOMEM, "queue probe: cannot start the thread");
        goto out;
    }
    pr->running = true;
    *out = pr;
    pr = NULL;
out:
    aq_queue_probe_destroy(pr);
    return st;
}

void aq_queue_probe_get(const aq_queue_probe *cpr, aq_queue_probe_values *out)
{
    aq_queue_probe *pr = (aq_queue_probe *)cpr; /* atomic loads only */
    out->connected = LOAD(connected);
    out->state = (aq_queue_probe_state)LOAD(state);
    out->probed_unix_ms = LOAD(probed_unix_ms);
    out->pending = LOAD(pending);
    out->ack_pending = LOAD(ack_pending);
    out->dlq_messages = LOAD(dlq_messages);
    out->parked = LOAD(parked);
    out->probes = LOAD(probes);
    out->failures = LOAD(failures);
}

void aq_queue_probe_destroy(aq_queue_probe *pr)
{
    if (!pr)
        return;
    if (pr->running) {
        pthread_mutex_lock(&pr->lock);
        pr->stopping = true;
        pthread_cond_signal(&pr->cond);
        pthread_mutex_unlock(&pr->lock);
        pthread_join(pr->thread, NULL);
    }
    pthread_cond_destroy(&pr->cond);
    pthread_mutex_destroy(&pr->lock);
    free(pr);
}
