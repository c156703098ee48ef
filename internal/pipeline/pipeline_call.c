#include "pipeline_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/clock.h"
#include "llm/llm_request.h"

/* ---- route, call (loop thread) ---- */

/* The test build's poison task: lets the chaos tests prove that a task which
 * kills the worker on every delivery ends in the DLQ (MAX_DELIVERIES). */
static void maybe_crash_for_test(const job *j)
{
#ifdef AQ_TEST_HOOKS
    const aq_pipeline *p = j->p;
    if (p->crash_marker && *p->crash_marker && strstr(j->task->prompt, p->crash_marker)) {
        aq_job_log(AQ_LOG_ERROR, j, "test crash marker found: aborting", NULL);
        abort();
    }
#else
    (void)j;
#endif
}

static uint64_t id_hash(const char *id)
{
    uint64_t h = XXH3_64bits(id, strlen(id));
    return h < 2 ? h + 2 : h; /* 0 and 1 are not valid map keys */
}

/* Returns true when the job now follows another delivery of the same id. */
static bool follow_if_in_flight(job *j)
{
    aq_pipeline *p = j->p;
    j->id_hash = id_hash(j->task->id);
    job *l = aq_ptrmap_get(&p->leaders, (void *)(uintptr_t)j->id_hash);
    if (!l) {
        j->leads = aq_ptrmap_put(&p->leaders, (void *)(uintptr_t)j->id_hash, j) == AQ_OK;
        return false;
    }
    if (strcmp(l->task->id, j->task->id) != 0)
        return false; /* a hash collision: two tasks, both run */
    j->leader = l;
    j->fnext = l->followers;
    if (l->followers)
        l->followers->fprev = j;
    l->followers = j;
    j->stage = STAGE_FOLLOWING;
    STAT_ADD(p, coalesced);
    aq_job_log(AQ_LOG_INFO, j, "same task already in flight here: waiting for it", NULL);
    return true;
}

static void on_llm_done(void *ctx, const aq_llm_call_result *res);

/* Whether the call streams its answer (llm_stream_min_max_tokens). */
static bool job_streams(const job *j)
{
    return (int64_t)j->max_tokens >= j->p->cfg->llm_stream_min_max_tokens;
}

/* The body of the call: the task's, or the agent run's current step's. */
static aq_status build_request(job *j, aq_err *err)
{
    aq_llm_request_opts o = j->p->request_opts;
    o.stream = job_streams(j);
    aq_buf_reset(&j->request); /* a fallback rebuilds it for another model */
    if (j->agent)
        return aq_agent_build_request(j, &o, err);
    return aq_llm_request_build_opts(j->task, j->model, j->max_tokens, &o, &j->request, err);
}

/* After a 529: the fallback model answers instead, at once, when one is
 * configured and the task allows it. False: defer as usual. */
bool aq_job_try_fallback(job *j)
{
    const char *fb = aq_route_fallback(j->p->router, j->model, j->task->allow_fallback);
    aq_err err;
    if (!fb || j->p->stopping)
        return false;
    const char *was = j->model;
    j->model = fb;
    if (build_request(j, &err) != AQ_OK) {
        j->model = was;
        return false;
    }
    j->fallback_used = true;
    const aq_log_field extra[] = {AQ_LF_S("model", was), AQ_LF_S("fallback", fb)};
    aq_job_log_with(AQ_LOG_INFO, j, "model overloaded: calling the fallback model", NULL, extra,
                    sizeof(extra) / sizeof(extra[0]));
    aq_job_call(j);
    return true;
}

/* What the answer cost, from the price table; an unpriced model is logged
 * once and marked cost_unknown on its results. */
static void price_answer(job *j)
{
    aq_pipeline *p = j->p;
    const aq_llm_usage *u = &j->response.usage;
    aq_cost_usage cu = {u->input_tokens, u->output_tokens, u->cache_creation_input_tokens,
                        u->cache_read_input_tokens};
    const char *model = j->response.model ? j->response.model : j->model;
    j->cost_unknown = !aq_cost_of(p->prices, model, &cu, &j->cost_micro_usd);
    if (j->cost_unknown && aq_cost_note_unpriced(p->prices, model))
        aq_log(AQ_LOG_WARN, "model has no price: its cost is recorded as unknown (see prices)",
               AQ_LF_S("model", model));
}

void aq_job_begin(job *j)
{
    aq_pipeline *p = j->p;
    const Agentq__V1__Task *t = j->task;

    maybe_crash_for_test(j);
    if (follow_if_in_flight(j))
        return;
    j->max_tokens = t->max_tokens ? t->max_tokens : (uint32_t)p->cfg->default_max_tokens;
    /* A task with tools, or continuing a session, is an agent run: its
     * steps come back to aq_job_step. */
    if (t->n_tools > 0 || (t->session_id && *t->session_id)) {
        aq_agent_begin(j);
        return;
    }
    aq_job_step(j, aq_llm_task_input_tokens(t), 1);
}

void aq_job_step(job *j, int64_t input_tokens, uint32_t step)
{
    aq_pipeline *p = j->p;
    aq_err err;
    aq_status st;
    const Agentq__V1__Task *t = j->task;

    aq_route_task rt = {t->type, t->tenant, t->model, input_tokens, j->max_tokens, step};
    aq_route_choice choice;
    if ((st = aq_route_choose(p->router, &rt, &choice, &err)) != AQ_OK) {
        aq_job_fail(j, st, &err);
        return;
    }
    j->model = choice.model;
    j->route_rule = choice.rule;
    j->fallback_used = false;
    aq_wm_routed(p->wm, j->model, j->route_rule);
    if ((st = build_request(j, &err)) != AQ_OK) {
        if (aq_status_disposition(st) == AQ_DISP_PERMANENT) {
            aq_job_fail(j, st, &err);
            return;
        }
        aq_job_log(AQ_LOG_WARN, j, "cannot build the request: task handed back", &err);
        aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(p->cfg, 1));
        return;
    }
    if (aq_job_cache_lookup(j))
        return;
    aq_job_call(j);
}

/* A call's whole-time limit grows with the answer it may produce: output
 * comes at tens of tokens a second, so allow a minute plus 50 ms a token,
 * never more than llm_timeout. A short task that hangs is cut off early. */
static int64_t call_timeout_ms(const aq_worker_config *cfg, uint32_t max_tokens)
{
    int64_t ms = 60000 + 50 * (int64_t)max_tokens;
    return ms < cfg->llm_timeout_ms ? ms : cfg->llm_timeout_ms;
}

void aq_job_budget_wait_over(job *j, aq_pipeline *p)
{
    if (!j->waits_for_budget)
        return;
    j->waits_for_budget = false;
    if (--p->waiting_for_budget == 0)
        aq_pipeline_update_pause(p);
}

/* Reserve rate budget for the call on the key with the most headroom.
 * When there is none, the task waits here, still owned (in-progress acks),
 * and the fetcher is paused: the backlog stays in JetStream. */
static bool take_budget(job *j)
{
    aq_pipeline *p = j->p;
    int64_t wait_ms = 0;
    /* The request body's bytes/4 over-estimates its tokens a little; the
     * charge is corrected from usage when the answer comes. */
    int64_t est_input = (int64_t)(j->request.len / 4);
    if (aq_rl_acquire(p->limiter, aq_rl_model_class(j->model), est_input, j->max_tokens,
                      aq_mono_ms(), &j->budget, &wait_ms) == AQ_RL_GRANTED) {
        aq_job_budget_wait_over(j, p);
        return true;
    }
    if (!j->waits_for_budget) {
        j->waits_for_budget = true;
        if (p->waiting_for_budget++ == 0)
            aq_pipeline_update_pause(p);
        STAT_ADD(p, budget_waits);
        aq_wm_deferral(p->wm, AQ_WM_DEFER_RATE_LIMITED);
    }
    j->stage = STAGE_WAITING;
    if (!aq_job_after(j, wait_ms, aq_job_call))
        aq_job_settle(j, SETTLE_NAK, wait_ms);
    return false;
}

/* The first answer of a (key, class) ended its probing: the tasks waiting
 * meanwhile ask again now rather than when their poll comes round (up to
 * AQ_RL_PROBE_WAIT_MS later, a whole call's time against a fast provider).
 * Once per (key, class), so walking the jobs is cheap. */
static void wake_budget_waiters(aq_pipeline *p)
{
    static const struct timeval now = {0, 0};
    for (job *w = p->jobs; w; w = w->next)
        if (w->waits_for_budget && w->timer)
            evtimer_add(w->timer, &now);
}

void aq_job_call(job *j)
{
    aq_pipeline *p = j->p;
    aq_err err;
    const Agentq__V1__Task *t = j->task;

    if (p->stopping) {
        /* Shutting down: no new calls; another worker takes it now. */
        aq_job_settle(j, SETTLE_NAK, 0);
        return;
    }
    int64_t now = aq_now_unix_ms();
    /* An agent run checks its deadline itself (aq_run_next), which lets
     * the last call of ceiling_action final go past it. */
    if (t->deadline_unix_ms && now > t->deadline_unix_ms && !j->agent) {
        aq_err_set(&err, AQ_EXPIRED, "deadline passed %lld ms before the %s",
                   (long long)(now - t->deadline_unix_ms),
                   j->calls ? "next attempt" : "task started");
        aq_job_fail(j, AQ_EXPIRED, &err);
        return;
    }
    if (!aq_job_spend_reserve(j)) /* the tenant's daily budget: pipeline_spend.c */
        return;
    if (!take_budget(j))
        return;
    j->stage = STAGE_CALLING;
    j->calls++;
    j->retry_after_ms = -1;
    /* What is left of max_attempts bounds libcurl's own re-sends too (see
     * on_llm_done): at least 1, as a call starts only with failures left. */
    uint32_t left = (uint32_t)p->cfg->max_attempts > j->failures
                        ? (uint32_t)p->cfg->max_attempts - j->failures
                        : 1;
    /* A streamed call is bounded by the idle timeout and llm_stream_timeout */
    bool stream = job_streams(j);
    aq_llm_call_opts co = {stream ? p->cfg->llm_stream_timeout_ms
                                  : call_timeout_ms(p->cfg, j->max_tokens),
                           left, stream};
    aq_status st = aq_llm_call_start_opts(p->llm, p->keys.items[j->budget.key], j->request.data,
                                          j->request.len, &co, on_llm_done, j, &j->call, &err);
    if (st == AQ_OK)
        aq_wm_set_llm_in_flight(p->wm, (int64_t)++p->llm_in_flight);
    if (st != AQ_OK) {
        aq_rl_release(p->limiter, &j->budget, aq_mono_ms());
        aq_job_spend_release(j); /* no call: nothing spent */
        j->stage = STAGE_QUEUED;
        aq_job_dispose(j, st, &err);
    }
}

/* ---- classify (loop thread) ---- */


static void on_llm_done(void *ctx, const aq_llm_call_result *res)
{
    job *j = ctx;
    aq_err err;
    aq_status st;
    j->call = NULL;
    j->stage = STAGE_QUEUED;
    if (res->sends > 1) {
        /* libcurl sent the request again by itself after the reused
         * connection it went out on closed without an answer: the provider
         * may have seen each send, so each is a call, and each but the last
         * a failed attempt (a connection error) against max_attempts. */
        j->calls += res->sends - 1;
        j->failures += res->sends - 1;
    }
    j->llm_latency_ms = (uint64_t)(res->latency_us / 1000);
    j->http_status = res->http_status;
    j->retry_after_ms = res->retry_after_ms;
    snprintf(j->request_id, sizeof(j->request_id), "%s", res->request_id ? res->request_id : "");
    aq_wm_set_llm_in_flight(j->p->wm, (int64_t)--j->p->llm_in_flight);
    aq_wm_llm_response(j->p->wm, j->model, res->transport == AQ_OK ? res->http_status : 0,
                       res->latency_us / 1e6);
    if (res->streamed)
        aq_wm_llm_stream(j->p->wm, j->model, res->ttft_us / 1e6, res->output_tokens_per_s);
    j->ttft_us = res->ttft_us > 0 ? (uint64_t)res->ttft_us : 0;
    j->output_tps = (float)res->output_tokens_per_s;

    /* Parse first: the budget learns from the answer what the provider
     * counted (usage) and what it has left (headers). */
    bool answered = res->transport == AQ_OK && res->http_status == 200;
    if (answered && res->response) { /* streamed: parsed as it came */
        j->response = *res->response;
        memset(res->response, 0, sizeof(*res->response));
        st = AQ_OK;
    } else {
        st = answered ? aq_llm_response_parse(res->body, res->body_len, &j->response, &err) : AQ_OK;
    }
    size_t key = j->budget.key;
    aq_rl_class cls = j->budget.cls;
    bool heard = aq_rl_heard(j->p->limiter, key, cls);
    aq_rl_finish(j->p->limiter, &j->budget, res,
                 answered && st == AQ_OK ? &j->response.usage : NULL, aq_mono_ms(),
                 aq_now_unix_ms());
    if (!answered || st != AQ_OK)
        aq_job_spend_settle(j, res); /* 0, or the bound when it may have been billed */
    if (!heard && j->p->waiting_for_budget > 0 && aq_rl_heard(j->p->limiter, key, cls))
        wake_budget_waiters(j->p);
    if (res->transport != AQ_OK) {
        aq_err_set(&err, res->transport, "%s", res->error ? res->error : aq_status_text(res->transport));
        aq_job_dispose(j, res->transport, &err);
        return;
    }
    if (res->http_status != 200) {
        st = aq_llm_error_classify(res->http_status, res->body, res->body_len, &err);
        aq_job_dispose(j, st, &err);
        return;
    }
    if (st != AQ_OK) {
        aq_job_dispose(j, st, &err);
        return;
    }
    j->have_response = true;
    price_answer(j);
    aq_job_spend_settle(j, NULL);
    aq_wm_tokens(j->p->wm, job_type(j), j->model, j->response.usage.input_tokens,
                 j->response.usage.output_tokens, j->response.usage.cache_creation_input_tokens,
                 j->response.usage.cache_read_input_tokens);
    aq_wm_cost(j->p->wm, job_type(j), j->model, j->task->tenant, (int64_t)j->cost_micro_usd);
    if (j->agent) {
        aq_agent_answered(j);
        return;
    }
    aq_job_cache_share(j);
    aq_job_complete(j);
}
