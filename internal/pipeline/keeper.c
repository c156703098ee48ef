#include "keeper.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "pipeline/parking.h"
#include "pipeline/sweep.h"

struct aq_keeper {
    jsCtx *js;
    const aq_queue_config *q;
    const aq_budget_spec *spec;
    bool release;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    volatile bool stop;
    uint64_t sweep_cursor;
    uint64_t kept_logged; /* the highest sequence said to have no result */
    bool idle_valid;     /* the last pass released nothing, the stream was then `idle` */
    int64_t idle_day;
    aq_park_view idle;
    bool sweep_off; /* the stream does not answer direct gets: said once */
};

/* Each such message is said once per worker (every sweep finds it again). */
static void on_kept(void *ctx, uint64_t seq, const char *id)
{
    aq_keeper *k = ctx;
    if (seq <= k->kept_logged)
        return;
    k->kept_logged = seq;
    aq_log(AQ_LOG_WARN, "sweep: message behind the ack floor has no stored result: left in the stream",
           AQ_LF_I("stream_seq", seq), AQ_LF_S("id", id));
}

static void do_sweep(aq_keeper *k)
{
    aq_sweep_report r;
    aq_err err;
    aq_status st = aq_sweep_run(k->js, k->q, AQ_KEEPER_SWEEP_MAX, &k->sweep_cursor, on_kept, k,
                                &r, &err);
    if (st == AQ_CONFIG) {
        if (!k->sweep_off)
            aq_log(AQ_LOG_WARN, "sweep: off", AQ_LF_S("error", err.msg));
        k->sweep_off = true;
        return;
    }
    k->sweep_off = false;
    if (st != AQ_OK) {
        aq_log(AQ_LOG_WARN, "sweep failed; trying again later", AQ_LF_S("error", err.msg));
        return;
    }
    if (r.deleted > 0 || r.kept > 0)
        aq_log(AQ_LOG_INFO, "sweep: settled tasks left behind the ack floor removed",
               AQ_LF_I("deleted", r.deleted), AQ_LF_I("kept", r.kept),
               AQ_LF_I("ack_floor", r.ack_floor));
}

/* One pass; how many tasks went back. */
static uint64_t do_release(aq_keeper *k)
{
    aq_release_report r;
    aq_err err;
    aq_status st = aq_park_release(k->js, k->q, k->spec, aq_now_unix_ms(), &k->stop, &r, &err);
    if (st != AQ_OK) {
        aq_log(AQ_LOG_WARN, "release of parked tasks failed", AQ_LF_S("error", err.msg),
               AQ_LF_I("released", r.released));
        return r.released;
    }
    if (r.released > 0 || r.bad > 0 || r.refused > 0)
        aq_log(r.refused > 0 ? AQ_LOG_WARN : AQ_LOG_INFO, "parked tasks released",
               AQ_LF_I("released", r.released), AQ_LF_I("examined", r.examined),
               AQ_LF_I("unusable", r.bad), AQ_LF_I("refused", r.refused),
               AQ_LF_S("error", r.last_refusal));
    return r.released;
}

/* A pass when one is due, unless the last pass could release nothing and
 * the deferred stream has not changed since (the same day): a task the
 * task stream refuses must not make every check read the whole stream. */
static void check_release(aq_keeper *k)
{
    aq_park_view v;
    bool due = false;
    aq_err err;
    int64_t now = aq_now_unix_ms(), today = aq_budget_day_of(now);
    if (aq_park_due(k->js, k->q, k->spec, now, &v, &due, &err) != AQ_OK) {
        aq_log(AQ_LOG_WARN, "parked tasks: check failed", AQ_LF_S("error", err.msg));
        return;
    }
    if (!due || (k->idle_valid && k->idle_day == today && k->idle.first_seq == v.first_seq &&
                 k->idle.last_seq == v.last_seq && k->idle.msgs == v.msgs))
        return;
    if (do_release(k) == 0) {
        k->idle_valid = true;
        k->idle_day = today;
        k->idle = v;
    } else {
        k->idle_valid = false;
    }
}

static void *keeper_main(void *arg)
{
    aq_keeper *k = arg;
    int64_t now = aq_now_unix_ms();
    int64_t sweep_at = now + AQ_KEEPER_SWEEP_FIRST_MS;
    int64_t check_at = k->release ? now : INT64_MAX; /* at once: a budget may have been raised */
    pthread_mutex_lock(&k->lock);
    while (!k->stop) {
        now = aq_now_unix_ms();
        int64_t wake = sweep_at < check_at ? sweep_at : check_at;
        if (now < wake) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ms = wake - now;
            ts.tv_sec += ms / 1000;
            ts.tv_nsec += (ms % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&k->cond, &k->lock, &ts);
            continue;
        }
        pthread_mutex_unlock(&k->lock);
        if (now >= check_at) {
            check_release(k);
            /* Workers started together drift apart, so they rarely all
             * walk the stream at once after 00:00 UTC. */
            check_at = now + AQ_KEEPER_CHECK_MS + random() % (AQ_KEEPER_CHECK_MS / 4 + 1);
        }
        if (now >= sweep_at) {
            do_sweep(k);
            sweep_at = now + AQ_KEEPER_SWEEP_MS;
        }
        pthread_mutex_lock(&k->lock);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

aq_status aq_keeper_start(jsCtx *js, const aq_queue_config *q, const aq_budget_spec *spec,
                          bool release, aq_keeper **out, aq_err *err)
{
    aq_keeper *k = calloc(1, sizeof(*k));
    if (!k)
        return aq_err_set(err, AQ_NOMEM, "keeper: out of memory");
    k->js = js;
    k->q = q;
    k->spec = spec;
    k->release = release;
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    if (pthread_create(&k->thread, NULL, keeper_main, k) != 0) {
        aq_keeper_destroy(k);
        return aq_err_set(err, AQ_NOMEM, "keeper: cannot start its thread");
    }
    k->started = true;
    *out = k;
    return AQ_OK;
}

void aq_keeper_destroy(aq_keeper *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    if (k->started)
        pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
    free(k);
}
