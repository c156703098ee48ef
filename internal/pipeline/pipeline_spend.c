/* The tenants' daily spending budgets in the pipeline (internal/budget does
 * the fleet-wide accounting; this file decides what a job does with it).
 *
 *   aq_job_call -> aq_job_spend_reserve: reserve the most the call can cost
 *     GRANTED      go on (rate budget, then the call)
 *     PENDING      the job waits for the answer (a KV round trip), still owned
 *     EXCEEDED     budget_action=fail: dead letter + FAILED result, class
 *                  budget_exceeded; defer: parked until the day resets or the
 *                  budget is raised (parking.h)
 *     UNAVAILABLE  the bucket cannot be reached: wait in place, try again
 *   on_llm_done -> aq_job_spend_settle: the real cost (or what may have been
 *     billed); job_release -> aq_job_spend_release: cancel or charge the bound
 *
 * Every task reserves, budgeted or not: a tenant without a budget is granted
 * at once without I/O, and the reservation is what records the tenant's
 * real cost in the fleet's "spent today" figures (agentq status).
 *
 * Why a deferral parks the task rather than waiting in place or handing it
 * back: a spent tenant's tasks may keep arriving all day, far more than a
 * worker can hold (waiting in place would fill every slot with them and
 * stop the other tenants' work). A hand-back (NakWithDelay) keeps them in
 * the stream, but nats-server keeps a message nak'ed with a delay in the
 * consumer's ack-pending set until it is redelivered (checked against
 * nats-server 2.9): a backlog above MaxAckPending stopped the consumer for
 * every tenant until the reset. Each hand-back is also a delivery, which
 * MaxDeliver counts. So the task is copied to the deferred stream and acked
 * (parking.h: the headers, the crash windows, the release rules); only a
 * deployment without that stream falls back to one hand-back until the
 * reset. */
#include "pipeline_job.h"
#include "spend_rules.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "pipeline/parking.h"
#include "queue/queue_setup.h"

/* ---- pure rules (spend_rules.h) ---- */

int64_t aq_spend_unanswered_cost(aq_status transport, long http_status, unsigned sends,
                                 int64_t bound_micro)
{
    if (sends == 0)
        return 0; /* never left this process */
    if (transport == AQ_OK && http_status != 200)
        return 0; /* refused (4xx, 5xx, 429, 529): the provider bills answers */
    return bound_micro; /* timed out, cut off, too big or unparsable: may be billed */
}

int64_t aq_spend_defer_ms(int64_t now_unix_ms, int64_t reset_unix_ms, int64_t jitter_ms)
{
    if (jitter_ms < 0)
        jitter_ms = 0;
    if (jitter_ms > AQ_SPEND_RESET_JITTER_MS)
        jitter_ms = AQ_SPEND_RESET_JITTER_MS;
    int64_t ms = reset_unix_ms - now_unix_ms + jitter_ms;
    return ms < AQ_SPEND_MIN_DEFER_MS ? AQ_SPEND_MIN_DEFER_MS : ms;
}

/* ---- set up and tear down ---- */

aq_status aq_spend_start(aq_pipeline *p, aq_err *err)
{
    const aq_worker_config *cfg = p->cfg;
    aq_status st;
    if ((st = aq_budget_spec_parse(cfg->budgets, &p->budgets, err)) != AQ_OK ||
        (st = aq_budget_action_parse(cfg->budget_action, &p->budget_action, err)) != AQ_OK)
        return st;
    bool budgeted = aq_budget_spec_count(p->budgets) > 0;
    if ((st = aq_budget_bucket_check(p->js, cfg->budget_bucket, err)) != AQ_OK) {
        if (budgeted || st != AQ_NOT_FOUND)
            return aq_err_prefix(err, "budgets");
        /* Without budgets the bucket only holds the fleet's spent figures:
         * a deployment set up before it existed still runs. */
        aq_log(AQ_LOG_WARN, "budget bucket missing: the fleet's cost today is not recorded (run `agentq init`)",
               AQ_LF_S("bucket", cfg->budget_bucket));
        return AQ_OK;
    }
    aq_budget_config bc = {
        .budgets = cfg->budgets,
        .bucket = cfg->budget_bucket,
        .instance = p->worker_name,
        .flush_ms = cfg->budget_flush_ms,
        .idle_return_ms = cfg->budget_idle_return_ms,
        .kv_timeout_ms = cfg->budget_kv_timeout_ms,
    };
    if ((st = aq_budget_new(p->nc, p->base, &bc, &p->spend, err)) != AQ_OK)
        return aq_err_prefix(err, "budgets");
    if (budgeted && p->budget_action == AQ_BUDGET_ACTION_DEFER) {
        aq_err e;
        aq_status ps = aq_queue_stream_exists(p->js, cfg->queue.deferred_stream, "deferred stream", &e);
        p->parking = ps == AQ_OK;
        if (ps != AQ_OK)
            aq_log(AQ_LOG_WARN,
                   "no deferred stream: tasks of a spent budget stay ack-pending until it resets",
                   AQ_LF_S("error", e.msg));
    }
    aq_log(AQ_LOG_INFO, "budgets", AQ_LF_I("budgets", aq_budget_spec_count(p->budgets)),
           AQ_LF_S("action", p->budget_action == AQ_BUDGET_ACTION_FAIL ? "fail" : "defer"),
           AQ_LF_S("bucket", cfg->budget_bucket), AQ_LF_S("instance", aq_budget_instance(p->spend)));
    return AQ_OK;
}

void aq_spend_stop(aq_pipeline *p)
{
    aq_budget_destroy(p->spend);
    p->spend = NULL;
    aq_budget_spec_free(p->budgets);
    p->budgets = NULL;
}

void aq_pipeline_each_budget(const aq_pipeline *p, aq_pipeline_budget_fn fn, void *ctx)
{
    if (p && p->spend)
        aq_budget_each(p->spend, fn, ctx);
}

/* ---- refusals ---- */

static const char *tenant_of(const job *j) { return j->task->tenant ? j->task->tenant : ""; }

static bool has_budget(const job *j)
{
    const aq_budget_spec *spec = j->p->budgets;
    return aq_budget_spec_limit(spec, tenant_of(j), "") >= 0 ||
           (*job_type(j) && aq_budget_spec_limit(spec, tenant_of(j), job_type(j)) >= 0);
}

static void format_utc(int64_t unix_ms, char *out, size_t n)
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, n, "%" PRId64 " ms", unix_ms);
}

/* ---- parking (parking.h) ---- */

static void park(job *j);

/* The parked copy could not be confirmed: try again while the task is
 * still owned (in-progress acks keep it); when stopping, hand it back. */
static void park_failed(job *j, const aq_err *err)
{
    aq_pipeline *p = j->p;
    aq_job_log(AQ_LOG_WARN, j, "parking not confirmed; retrying", err);
    int64_t ms = aq_job_backoff_ms(p->cfg, ++j->store_tries);
    if (p->stopping) {
        aq_job_settle(j, SETTLE_NAK, ms);
        return;
    }
    j->stage = STAGE_STORING; /* the timer comes back to it */
    if (!aq_job_after(j, ms, park))
        aq_job_settle(j, SETTLE_NAK, ms);
}

static void on_parked(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)seq;
    job *j = ctx;
    if (st != AQ_OK) {
        park_failed(j, err);
        return;
    }
    /* The copy is durable: only now may the original leave the stream. */
    aq_job_settle(j, SETTLE_ACK, 0);
}

static void park(job *j)
{
    aq_pipeline *p = j->p;
    aq_park_info pi = {
        .tenant = tenant_of(j),
        .type = j->park_by_type ? job_type(j) : NULL,
        .limit_micro = j->park_limit,
        .reset_unix_ms = j->spend.reset_unix_ms,
        .stream_seq = j->stream_seq,
        .task_id = j->task->id,
    };
    natsMsg *m = NULL;
    char msg_id[AQ_PARK_MSG_ID_MAX];
    aq_err err;
    j->stage = STAGE_STORING;
    if (aq_park_msg(&p->cfg->queue, j->msg, &pi, &m, msg_id, &err) != AQ_OK) {
        /* Nothing to retry: hand it back until the reset instead. */
        aq_job_log(AQ_LOG_WARN, j, "cannot park: task handed back until the budget resets", &err);
        aq_job_settle(j, SETTLE_NAK,
                      aq_spend_defer_ms(aq_now_unix_ms(), j->spend.reset_unix_ms,
                                        random() % (AQ_SPEND_RESET_JITTER_MS + 1)));
        return;
    }
    if (aq_publisher_send(p->pub, m, msg_id, on_parked, j, &err) != AQ_OK)
        park_failed(j, &err);
}

/* EXCEEDED: fail, or park until the budget day resets or the budget is
 * raised (hand back when there is nowhere to park). */
static void spend_refused(job *j)
{
    aq_pipeline *p = j->p;
    const Agentq__V1__Task *t = j->task;
    int64_t reset = j->spend.reset_unix_ms, now = aq_now_unix_ms();
    bool by_type = j->spend.exceeded && strcmp(j->spend.exceeded, "type") == 0;
    /* Refused while calls of this budget run here: each holds its whole
     * bound, and what it does not spend comes back to this worker's lease
     * when it settles. Ask again then: giving up for the day now would stop
     * the fleet short of the limit by every running call's unspent bound
     * (measured: 4.5 tasks' worth with 8 calls in flight, where a task
     * spends half its bound). No I/O: the budget answers from its lease or
     * its last refusal. The wait lasts a call at most; the slot stays held. */
    if (aq_budget_in_flight(p->spend, tenant_of(j), by_type ? job_type(j) : "") > 0 &&
        !p->stopping) {
        j->stage = STAGE_WAITING;
        if (aq_job_after(j, AQ_SPEND_RECHECK_MS + random() % (AQ_SPEND_RECHECK_MS / 2 + 1),
                         aq_job_call))
            return;
    }
    /* Nothing of it runs here: still ask the bucket again a few times (see
     * AQ_SPEND_CONFIRMS) for what the rest of the fleet gives back. */
    if (j->spend_asks < AQ_SPEND_CONFIRMS && !p->stopping) {
        j->spend_asks++;
        j->stage = STAGE_WAITING;
        if (aq_job_after(j, AQ_SPEND_CONFIRM_MS + random() % (AQ_SPEND_CONFIRM_MS / 2 + 1),
                         aq_job_call))
            return;
    }
    char usd[32], when[40];
    aq_budget_format_usd(aq_budget_spec_limit(p->budgets, tenant_of(j), by_type ? job_type(j) : ""),
                         usd, sizeof(usd));
    format_utc(reset, when, sizeof(when));
    aq_err e;
    if (by_type)
        aq_err_set(&e, AQ_OVER_BUDGET, "daily budget of tenant %s, type %s ($%s) spent; resets at %s",
                   tenant_of(j), job_type(j), usd, when);
    else
        aq_err_set(&e, AQ_OVER_BUDGET, "daily budget of tenant %s ($%s) spent; resets at %s",
                   tenant_of(j), usd, when);
    if (p->budget_action == AQ_BUDGET_ACTION_FAIL) {
        aq_job_fail(j, AQ_OVER_BUDGET, &e);
        return;
    }
    if (t->deadline_unix_ms && t->deadline_unix_ms < reset) {
        aq_err x;
        aq_err_set(&x, AQ_EXPIRED, "deadline passes before the budget resets (%s)", e.msg);
        aq_job_fail(j, AQ_EXPIRED, &x);
        return;
    }
    if (p->parking) {
        STAT_ADD(p, deferred);
        aq_wm_deferral(p->wm, AQ_WM_DEFER_BUDGET);
        aq_job_log(AQ_LOG_INFO, j, "daily budget spent: task parked until it resets or is raised", &e);
        j->park_limit = aq_budget_spec_limit(p->budgets, tenant_of(j), by_type ? job_type(j) : "");
        j->park_by_type = by_type;
        j->store_tries = 0;
        park(j);
        return;
    }
    /* No deferred stream (a deployment set up before it existed): hand the
     * task back until the reset, ack-pending meanwhile. A hand-back now
     * would be the task's last delivery: the backstop would dead-letter it
     * as max_deliveries. Say why instead. */
    if (p->max_deliver > 0 && j->delivered >= (uint64_t)p->max_deliver) {
        aq_err_prefix(&e, "cannot be deferred (delivery %" PRIu64 " of max_deliver %" PRId64 ")",
                      j->delivered, p->max_deliver);
        aq_job_fail(j, AQ_OVER_BUDGET, &e);
        return;
    }
    STAT_ADD(p, deferred);
    aq_wm_deferral(p->wm, AQ_WM_DEFER_BUDGET);
    aq_job_log(AQ_LOG_INFO, j, "daily budget spent: task handed back until it resets", &e);
    aq_job_settle(j, SETTLE_NAK,
                  aq_spend_defer_ms(now, reset, random() % (AQ_SPEND_RESET_JITTER_MS + 1)));
}

/* UNAVAILABLE: nothing reserved, nothing spent; not the task's fault. */
static void spend_unavailable(job *j)
{
    aq_pipeline *p = j->p;
    aq_err e = j->spend.err;
    e.status = j->spend.status;
    int64_t delay = aq_job_backoff_ms(p->cfg, ++j->deferrals);
    STAT_ADD(p, deferred);
    aq_wm_deferral(p->wm, AQ_WM_DEFER_BUDGET);
    aq_job_log(AQ_LOG_WARN, j, "budget bucket unavailable: the call waits", &e);
    aq_job_call_after(j, delay);
}

/* ---- reserve, settle, release ---- */

static void on_spend_answer(aq_budget_reservation *r, void *ctx)
{
    job *j = ctx;
    j->spend_pending = false;
    j->stage = STAGE_QUEUED;
    switch (r->verdict) {
    case AQ_BUDGET_GRANTED:
        j->spend_held = true;
        aq_job_call(j); /* on to the rate budget and the call */
        return;
    case AQ_BUDGET_EXCEEDED:
        spend_refused(j);
        return;
    case AQ_BUDGET_PENDING:
    case AQ_BUDGET_UNAVAILABLE:
        spend_unavailable(j);
        return;
    }
}

bool aq_job_spend_reserve(job *j)
{
    aq_pipeline *p = j->p;
    if (!p->spend || j->spend_held)
        return true;
    if (j->spend_pending)
        return false; /* its answer will call again */
    /* The bound: every byte of the request body counted as an input token
     * (a token is at least a byte, and the JSON framing outweighs the few
     * tokens the provider adds per message), all at the dearest input-side
     * price, plus max_tokens of output. An estimate (bytes / 4) would be
     * exceeded by real usage, and what exceeds the bound is spent past the
     * limit. */
    uint64_t bound = 0;
    if (!aq_cost_estimate_max_of(p->prices, j->model, j->request.len, j->max_tokens, &bound) &&
        has_budget(j)) {
        /* No price, no bound: the budget could not stop the spending. */
        aq_err e;
        aq_err_set(&e, AQ_CONFIG,
                   "model %s has no price, so the daily budget of tenant %s cannot be kept "
                   "(add the model to prices)",
                   j->model, tenant_of(j));
        aq_job_fail(j, AQ_CONFIG, &e);
        return false;
    }
    int64_t upper = bound > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)bound;
    switch (aq_budget_reserve(p->spend, tenant_of(j), job_type(j), upper, on_spend_answer, j,
                              &j->spend)) {
    case AQ_BUDGET_GRANTED:
        j->spend_held = true;
        return true;
    case AQ_BUDGET_PENDING:
        /* Still owned (in-progress acks); a shutdown hands it back at once. */
        j->spend_pending = true;
        j->stage = STAGE_WAITING;
        j->wake_mono_ms = aq_mono_ms();
        return false;
    case AQ_BUDGET_EXCEEDED:
        spend_refused(j);
        return false;
    case AQ_BUDGET_UNAVAILABLE:
        spend_unavailable(j);
        return false;
    }
    return false;
}

void aq_job_spend_settle(job *j, const aq_llm_call_result *res)
{
    if (!j->spend_held)
        return;
    int64_t bound = j->spend.amount_micro, cost;
    if (res)
        cost = aq_spend_unanswered_cost(res->transport, res->http_status, res->sends, bound);
    else if (j->cost_unknown) /* the answer names a model without a price */
        cost = bound;
    else
        cost = j->cost_micro_usd > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)j->cost_micro_usd;
    j->spend_held = false;
    aq_budget_settle(j->p->spend, &j->spend, cost);
}

void aq_job_spend_release(job *j)
{
    aq_pipeline *p = j->p;
    if (j->spend_pending) {
        j->spend_pending = false;
        aq_budget_cancel(p->spend, &j->spend);
    }
    if (j->spend_held) {
        j->spend_held = false;
        aq_budget_settle(p->spend, &j->spend, j->call ? j->spend.amount_micro : 0);
    }
}
