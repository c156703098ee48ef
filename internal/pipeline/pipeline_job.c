#include "pipeline_job.h"

#include <stdlib.h>

#include "core/clock.h"

/* ---- logging helpers (the pipeline logs; the libraries do not) ---- */

void aq_job_log(aq_log_level lvl, const job *j, const char *msg, const aq_err *err)
{
    aq_job_log_with(lvl, j, msg, err, NULL, 0);
}

void aq_job_log_with(aq_log_level lvl, const job *j, const char *msg, const aq_err *err,
                     const aq_log_field *extra, size_t n)
{
    if (!aq_log_enabled(lvl))
        return;
    const Agentq__V1__Task *t = j->task;
    aq_log_field f[8 + AQ_JOB_LOG_EXTRA_MAX] = {
        AQ_LF_S("id", t ? t->id : ""),
        AQ_LF_S("type", t ? t->type : ""),
        AQ_LF_S("tenant", t ? t->tenant : ""),
        AQ_LF_I("delivery", j->delivered),
        AQ_LF_I("attempt", j->calls),
        AQ_LF_I("stream_seq", j->stream_seq),
        AQ_LF_S("class", err ? aq_status_class(err->status) : ""),
        AQ_LF_S("error", err ? err->msg : ""),
    };
    if (n > AQ_JOB_LOG_EXTRA_MAX)
        n = AQ_JOB_LOG_EXTRA_MAX;
    for (size_t i = 0; i < n; i++)
        f[8 + i] = extra[i];
    aq_log_fields(lvl, msg, f, 8 + n);
}

bool aq_job_has_valid_id(const job *j)
{
    return j->task && aq_task_id_valid(j->task->id);
}

/* ---- timers ---- */

static void on_job_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job *j = arg;
    j->timer_fn(j);
}

bool aq_job_after(job *j, int64_t ms, void (*fn)(job *))
{
    if (!j->timer && !(j->timer = evtimer_new(j->p->base, on_job_timer, j)))
        return false;
    j->timer_fn = fn;
    j->wake_mono_ms = aq_mono_ms() + ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(j->timer, &tv);
    return true;
}

stored_state aq_job_read_stored(const job *j, const aq_kv_read *rd)
{
    if (rd->status != AQ_OK || rd->deleted)
        return STORED_NONE;
    Agentq__V1__Status status;
    uint64_t seq;
    if (!aq_result_peek(natsMsg_GetData(rd->msg), (size_t)natsMsg_GetDataLength(rd->msg), &status,
                        &seq))
        return STORED_OTHER;
    if (status == AGENTQ__V1__STATUS__STATUS_COMPLETED)
        return STORED_COMPLETED;
    if (status == AGENTQ__V1__STATUS__STATUS_FAILED && seq == j->stream_seq)
        return STORED_FAILED_HERE;
    return STORED_OTHER;
}

void aq_job_read(job *j, aq_kv_getter *from, const char *key, aq_kv_read_fn done)
{
    if (!j->rd && !(j->rd = calloc(1, sizeof(*j->rd)))) {
        aq_job_log(AQ_LOG_WARN, j, "out of memory for a read: task handed back", NULL);
        aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(j->p->cfg, 1));
        return;
    }
    aq_kv_getter_get(from, j->rd, key, done, j);
}

/* ---- dispose: the one place a status becomes a result, a wait or a dead letter ---- */

int64_t aq_job_backoff_ms(const aq_worker_config *cfg, uint32_t attempt)
{
    int64_t ms = cfg->retry_base_ms;
    for (uint32_t i = 1; i < attempt && ms < cfg->retry_max_ms; i++)
        ms *= 2;
    if (ms > cfg->retry_max_ms)
        ms = cfg->retry_max_ms;
    /* Full jitter over the upper half: spreads a burst of retries. */
    return ms / 2 + (int64_t)(random() % (ms / 2 + 1));
}

/* Retries and deferrals wait here, the message still owned (in-progress
 * acks keep it), so they never use up the consumer's MaxDeliver: that stays
 * a count of crashes and hand-backs, which is what the backstop needs. */
static void job_wait(job *j, int64_t delay_ms, const aq_err *err)
{
    aq_pipeline *p = j->p;
    if (aq_status_disposition(err->status) == AQ_DISP_DEFER) {
        STAT_ADD(p, deferred);
        aq_wm_deferral(p->wm, err->status == AQ_HTTP_OVERLOADED ? AQ_WM_DEFER_OVERLOADED
                                                                : AQ_WM_DEFER_RATE_LIMITED);
    } else {
        STAT_ADD(p, retried);
        aq_wm_retry(p->wm, job_type(j));
    }
    aq_job_log(AQ_LOG_INFO, j, "task will be retried", err);
    aq_llm_response_free(&j->response);
    aq_job_call_after(j, delay_ms);
}

void aq_job_call_after(job *j, int64_t delay_ms)
{
    if (j->p->stopping) {
        aq_job_settle(j, SETTLE_NAK, delay_ms);
        return;
    }
    j->stage = STAGE_WAITING;
    if (!aq_job_after(j, delay_ms, aq_job_call))
        aq_job_settle(j, SETTLE_NAK, delay_ms);
}

void aq_job_dispose(job *j, aq_status st, const aq_err *err)
{
    const aq_worker_config *cfg = j->p->cfg;
    aq_err e = *err;
    e.status = st;
    switch (aq_status_disposition(st)) {
    case AQ_DISP_NONE:
        aq_job_complete(j);
        return;
    case AQ_DISP_PERMANENT:
        aq_job_fail(j, st, &e);
        return;
    case AQ_DISP_RETRY:
        if (++j->failures >= (uint32_t)cfg->max_attempts) {
            aq_err_prefix(&e, "gave up after %u attempts", j->calls);
            aq_job_fail(j, st, &e);
            return;
        }
        job_wait(j, aq_job_backoff_ms(cfg, j->failures), &e);
        return;
    case AQ_DISP_DEFER: {
        if (st == AQ_HTTP_OVERLOADED && aq_job_try_fallback(j))
            return;
        /* The provider said when; otherwise back off. Never dead-lettered for
         * this alone: only the task's own deadline bounds the waiting. */
        int64_t delay = j->retry_after_ms > 0 ? j->retry_after_ms : aq_job_backoff_ms(cfg, ++j->deferrals);
        int64_t deadline = j->task->deadline_unix_ms;
        if (deadline && aq_now_unix_ms() + delay > deadline) {
            aq_err x;
            aq_err_set(&x, AQ_EXPIRED, "deadline would pass while deferred %lld ms (%s: %s)",
                       (long long)delay, aq_status_class(st), e.msg);
            aq_job_fail(j, AQ_EXPIRED, &x);
            return;
        }
        job_wait(j, delay, &e);
        return;
    }
    }
}

/* ---- settle and release ---- */

static void job_release(job *j)
{
    aq_pipeline *p = j->p;
    if (j->prev)
        j->prev->next = j->next;
    else
        p->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    p->in_flight--;
    aq_wm_set_in_progress(p->wm, (int64_t)p->in_flight);
    if (j->leader) {
        if (j->fprev)
            j->fprev->fnext = j->fnext;
        else
            j->leader->followers = j->fnext;
        if (j->fnext)
            j->fnext->fprev = j->fprev;
    }
    if (j->leads)
        aq_ptrmap_take(&p->leaders, (void *)(uintptr_t)j->id_hash);
    aq_job_cache_leave(j);
    aq_agent_release(j); /* stops waiting for a slot too */
    if (j->timer)
        event_free(j->timer);
    aq_job_budget_wait_over(j, p);
    /* A call cut off may have reached the provider: it stays charged. */
    if (j->call)
        aq_wm_set_llm_in_flight(p->wm, (int64_t)--p->llm_in_flight);
    if (j->call)
        aq_rl_commit(p->limiter, &j->budget, NULL, NULL, aq_mono_ms(), aq_now_unix_ms());
    aq_job_spend_release(j); /* before the call is cancelled: it may be charged */
    aq_llm_call_cancel(j->call);
    aq_llm_response_free(&j->response);
    aq_task_free(j->task);
    aq_buf_free(&j->request);
    aq_buf_free(&j->packed);
    free(j->rd); /* no read is outstanding: a job waiting for one is never released */
    natsMsg_Destroy(j->msg);
    bool lent = j->slot_lent;
    free(j);
    if (!lent) { /* a run in tools gave its slot back already */
        aq_fetcher_release(p->fetcher, 1);
        if (p->slot_waiters)
            aq_agent_slot_freed(p);
    }
    aq_pipeline_maybe_finish(p);
}

/* The one place a message is acked, terminated or handed back. Deliveries
 * of the same id that waited for this one go the same way. */
void aq_job_settle(job *j, settle_how how, int64_t nak_delay_ms)
{
    switch (how) {
    case SETTLE_ACK:
        natsMsg_Ack(j->msg, NULL);
        break;
    case SETTLE_TERM:
        natsMsg_Term(j->msg, NULL);
        break;
    case SETTLE_NAK:
        if (nak_delay_ms > 0)
            natsMsg_NakWithDelay(j->msg, nak_delay_ms, NULL);
        else
            natsMsg_Nak(j->msg, NULL);
        break;
    }
    while (j->followers)
        aq_job_settle(j->followers, how, nak_delay_ms);
    j->settled = how;
    job_release(j);
}
