#include "worker_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "budget/budget.h"
#include "core/clock.h"
#include "queue/queue_probe.h"
#include "ratelimit/ratelimit.h"

/* The families, in exposition order. Caps of 0 take the default of the
 * registry; the tenant cap is set from the configuration. */
enum {
    F_TASKS,
    F_QUEUE_PENDING,
    F_QUEUE_ACK_PENDING,
    F_DLQ,
    F_IN_PROGRESS,
    F_LLM_IN_FLIGHT,
    F_TASK_DURATION,
    F_LLM_DURATION,
    F_LLM_RESPONSES,
    F_LLM_TTFT,
    F_LLM_TPS,
    F_RETRIES,
    F_DEFERRALS,
    F_CACHE,
    F_TOKENS,
    F_COST,
    F_ROUTED,
    F_RL_REMAINING,
    F_BUDGET,
    F_BUDGET_LIMIT,
    F_PARKED,
    F_BUILD_INFO,
    F_AGENT_RUNS,
    F_AGENT_STEPS,
    F_AGENT_TOOL_CALLS,
    F_AGENT_CEILING,
    F_AGENT_CHECKPOINTS,
    F_TOOL_CALLS,
    F_TOOL_DURATION,
    F_TOOL_SCHEMA,
    F_COUNT
};

/* Model calls and tool calls of one run. */
static const double count_buckets[] = {1, 2, 3, 5, 8, 13, 21, 34, 55, 100, 200, 500};

#define C AQ_METRIC_COUNTER
#define G AQ_METRIC_GAUGE
#define H AQ_METRIC_HISTOGRAM
#define TENANT_CAP_MARK ((size_t)-1) /* replaced by cfg->max_tenants */

/* Output tokens per second of a streamed answer: from a stalled stream to
 * far past any model's rate (a cached or simulated answer). */
static const double tps_buckets[] = {1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 100, 150,
                                     200, 300, 500, 1000, 2000, 5000, 10000, 100000};

static const aq_metric_desc families[F_COUNT] = {
    [F_TASKS] = {"agentq_tasks_total", "Tasks settled, by type and outcome.", C, 2,
                 {"type", "outcome"}, {AQ_WM_MAX_TYPES, AQ_WM_OUTCOME_COUNT}, NULL, 0},
    [F_QUEUE_PENDING] = {"agentq_queue_pending",
                         "Tasks in the consumer not yet delivered (NaN until probed).", G, 0,
                         {0}, {0}, NULL, 0},
    [F_QUEUE_ACK_PENDING] = {"agentq_queue_ack_pending",
                             "Tasks delivered and not yet acked, fleet-wide (NaN until probed).",
                             G, 0, {0}, {0}, NULL, 0},
    [F_DLQ] = {"agentq_dlq_messages", "Messages in the dead-letter stream (NaN until probed).", G,
               0, {0}, {0}, NULL, 0},
    [F_IN_PROGRESS] = {"agentq_tasks_in_progress", "Tasks this worker owns (fetched, not settled).",
                       G, 0, {0}, {0}, NULL, 0},
    [F_LLM_IN_FLIGHT] = {"agentq_llm_in_flight", "LLM calls in flight in this worker.", G, 0, {0},
                         {0}, NULL, 0},
    [F_TASK_DURATION] = {"agentq_task_duration_seconds",
                         "Seconds from a task's publication to its result being stored.", H, 1,
                         {"type"}, {AQ_WM_MAX_TYPES}, aq_metrics_buckets_task, 0},
    [F_LLM_DURATION] = {"agentq_llm_request_duration_seconds", "Seconds of one provider call.",
                        H, 1, {"model"}, {AQ_WM_MAX_MODELS}, aq_metrics_buckets_llm, 0},
    [F_LLM_RESPONSES] = {"agentq_llm_responses_total",
                         "Provider responses by model and HTTP status (code=\"error\": no response).",
                         C, 2, {"model", "code"}, {AQ_WM_MAX_MODELS, AQ_WM_MAX_CODES}, NULL, 0},
    [F_LLM_TTFT] = {"agentq_llm_time_to_first_token_seconds",
                    "Seconds from a streamed call's start to its first content delta.", H, 1,
                    {"model"}, {AQ_WM_MAX_MODELS}, aq_metrics_buckets_llm, 0},
    [F_LLM_TPS] = {"agentq_llm_output_tokens_per_second",
                   "Output tokens per second of a streamed answer (first delta to the end).", H, 1,
                   {"model"}, {AQ_WM_MAX_MODELS}, tps_buckets, 0},
    [F_RETRIES] = {"agentq_llm_retries_total", "Retryable failures that were retried.", C, 1,
                   {"type"}, {AQ_WM_MAX_TYPES}, NULL, 0},
    [F_DEFERRALS] = {"agentq_llm_deferrals_total",
                     "Calls deferred (rate_limited, overloaded, budget).", C, 1, {"reason"},
                     {AQ_WM_DEFERRAL_COUNT}, NULL, 0},
    [F_CACHE] = {"agentq_cache_requests_total", "Response-cache lookups (hit, miss, bypass).", C, 1,
                 {"result"}, {AQ_WM_CACHE_RESULT_COUNT}, NULL, 0},
    [F_TOKENS] = {"agentq_tokens_total",
                  "Tokens billed by kind (input, output, cache_write, cache_read), type and model.",
                  C, 3, {"kind", "type", "model"}, {4, AQ_WM_MAX_TYPES, AQ_WM_MAX_MODELS}, NULL, 0},
    [F_COST] = {"agentq_cost_usd_total", "Cost in US dollars by type, model and tenant.", C, 3,
                {"type", "model", "tenant"}, {AQ_WM_MAX_TYPES, AQ_WM_MAX_MODELS, TENANT_CAP_MARK},
                NULL, 0},
    [F_ROUTED] = {"agentq_routed_total", "Tasks routed to a model, by routing rule.", C, 2,
                  {"model", "rule"}, {AQ_WM_MAX_MODELS, AQ_WM_MAX_RULES}, NULL, 0},
    [F_RL_REMAINING] = {"agentq_ratelimit_remaining",
                        "Provider-reported remaining per API key index, model class and dimension.",
                        G, 3, {"key", "model_class", "dimension"},
                        {AQ_WM_MAX_KEYS, AQ_RL_CLASS_COUNT, AQ_RL_DIM_COUNT}, NULL, 0},
    [F_BUDGET] = {"agentq_budget_remaining_usd", "Today's spending budget left per tenant, in US dollars.",
                  G, 1, {"tenant"}, {TENANT_CAP_MARK}, NULL, 0},
    [F_BUDGET_LIMIT] = {"agentq_budget_limit_usd", "Today's spending budget per tenant, in US dollars.",
                        G, 1, {"tenant"}, {TENANT_CAP_MARK}, NULL, 0},
    [F_PARKED] = {"agentq_parked_tasks",
                  "Tasks of spent budgets parked in the deferred stream, fleet-wide (NaN until probed).",
                  G, 0, {0}, {0}, NULL, 0},
    [F_BUILD_INFO] = {"agentq_build_info", "Always 1: the worker's version and name.", G, 2,
                      {"version", "worker"}, {1, 1}, NULL, 0},
    [F_AGENT_RUNS] = {"agentq_agent_runs_in_flight", "Agent runs this worker owns.", G, 0, {0}, {0},
                      NULL, 0},
    [F_AGENT_STEPS] = {"agentq_agent_run_steps", "Model calls of each agent run that ended here.", H,
                       0, {0}, {0}, count_buckets, sizeof(count_buckets) / sizeof(count_buckets[0])},
    [F_AGENT_TOOL_CALLS] = {"agentq_agent_run_tool_calls",
                            "Tool calls of each agent run that ended here.", H, 0, {0}, {0},
                            count_buckets, sizeof(count_buckets) / sizeof(count_buckets[0])},
    [F_AGENT_CEILING] = {"agentq_agent_runs_at_ceiling_total",
                         "Agent runs that ended at a ceiling (max_steps, max_tool_calls, deadline), by action (fail, final).",
                         C, 1, {"action"}, {2}, NULL, 0},
    [F_AGENT_CHECKPOINTS] = {"agentq_agent_checkpoints_total",
                             "Agent run checkpoints written (KV agentq-runs).", C, 0, {0}, {0},
                             NULL, 0},
    [F_TOOL_CALLS] = {"agentq_tool_calls_total", "Tool calls of agent runs, by tool and outcome.", C,
                      2, {"tool", "outcome"}, {AQ_WM_MAX_TOOLS, 16}, NULL, 0},
    [F_TOOL_DURATION] = {"agentq_tool_call_duration_seconds",
                         "Seconds of one tool call (all its attempts), by tool.", H, 1, {"tool"},
                         {AQ_WM_MAX_TOOLS}, aq_metrics_buckets_llm, 0},
    [F_TOOL_SCHEMA] = {"agentq_tool_schema_violations_total",
                       "Tool inputs that did not match their input_schema (not dispatched), by tool.",
                       C, 1, {"tool"}, {AQ_WM_MAX_TOOLS}, NULL, 0},
};

static const char *const outcome_names[AQ_WM_OUTCOME_COUNT] = {"completed", "failed",
                                                               "dead_lettered", "already_done"};
static const char *const deferral_names[AQ_WM_DEFERRAL_COUNT] = {"rate_limited", "overloaded",
                                                                 "budget"};
static const char *const cache_names[AQ_WM_CACHE_RESULT_COUNT] = {"hit", "miss", "bypass"};

struct aq_worker_metrics {
    aq_metrics *reg;
    aq_mfamily *f[F_COUNT];
    /* handles of the series whose labels never change: no lookup */
    aq_mseries *pending, *ack_pending, *dlq, *in_progress, *llm_in_flight, *parked;
    aq_mseries *deferral[AQ_WM_DEFERRAL_COUNT];
    aq_mseries *cache[AQ_WM_CACHE_RESULT_COUNT];
    const aq_rl *rl;
    const struct aq_queue_probe *probe;
    const aq_budget *budget;
    aq_wm_totals totals; /* for aq_wm_totals_get */
};

aq_status aq_wm_new(aq_metrics *reg, const aq_wm_config *cfg, aq_worker_metrics **out,
                    aq_err *err)
{
    aq_status st = AQ_OK;
    aq_worker_metrics *wm = calloc(1, sizeof(*wm));
    if (!wm)
        return aq_err_set(err, AQ_NOMEM, "worker metrics: out of memory");
    wm->reg = reg;
    size_t tenants = cfg && cfg->max_tenants ? cfg->max_tenants : AQ_WM_DEFAULT_TENANTS;
    for (int i = 0; i < F_COUNT; i++) {
        aq_metric_desc d = families[i];
        for (size_t l = 0; l < d.n_labels; l++)
            if (d.caps[l] == TENANT_CAP_MARK)
                d.caps[l] = tenants;
        if (d.type == AQ_METRIC_HISTOGRAM && d.n_buckets == 0)
            d.n_buckets = d.buckets == aq_metrics_buckets_task ? aq_metrics_buckets_task_n
                          : d.buckets == tps_buckets ? sizeof(tps_buckets) / sizeof(tps_buckets[0])
                                                     : aq_metrics_buckets_llm_n;
        if ((st = aq_metrics_family(reg, &d, &wm->f[i], err)) != AQ_OK)
            goto out;
    }
    wm->pending = aq_mfamily_series(wm->f[F_QUEUE_PENDING], NULL);
    wm->ack_pending = aq_mfamily_series(wm->f[F_QUEUE_ACK_PENDING], NULL);
    wm->dlq = aq_mfamily_series(wm->f[F_DLQ], NULL);
    wm->parked = aq_mfamily_series(wm->f[F_PARKED], NULL);
    wm->in_progress = aq_mfamily_series(wm->f[F_IN_PROGRESS], NULL);
    wm->llm_in_flight = aq_mfamily_series(wm->f[F_LLM_IN_FLIGHT], NULL);
    bool ok = wm->pending && wm->ack_pending && wm->dlq && wm->in_progress && wm->llm_in_flight &&
              wm->parked;
    for (int i = 0; i < AQ_WM_DEFERRAL_COUNT; i++)
        ok &= (wm->deferral[i] = aq_mfamily_series(wm->f[F_DEFERRALS], AQ_LV(deferral_names[i]))) != NULL;
    for (int i = 0; i < AQ_WM_CACHE_RESULT_COUNT; i++)
        ok &= (wm->cache[i] = aq_mfamily_series(wm->f[F_CACHE], AQ_LV(cache_names[i]))) != NULL;
    aq_mseries *info = aq_mfamily_series(
        wm->f[F_BUILD_INFO], AQ_LV(cfg && cfg->version ? cfg->version : "",
                                   cfg && cfg->worker ? cfg->worker : ""));
    if (!ok || !info) {
        st = aq_err_set(err, AQ_NOMEM, "worker metrics: out of memory");
        goto out;
    }
    aq_mseries_set(info, 1);
    aq_wm_set_queue(wm, -1, -1, -1);
    aq_mseries_set(wm->parked, NAN);
    *out = wm;
    wm = NULL;
out:
    free(wm);
    return st;
}

void aq_wm_destroy(aq_worker_metrics *wm)
{
    free(wm);
}

void aq_wm_print_families(FILE *out)
{
    for (int i = 0; i < F_COUNT; i++)
        fprintf(out, "%s %s %s\n", families[i].name, aq_metric_type_name(families[i].type),
                families[i].help);
}

/* ---- updates ---- */

void aq_wm_task_settled(aq_worker_metrics *wm, const char *type, aq_wm_outcome outcome,
                        double seconds)
{
    if (!wm || (unsigned)outcome >= AQ_WM_OUTCOME_COUNT)
        return;
    aq_mfamily_add(wm->f[F_TASKS], AQ_LV(type, outcome_names[outcome]), 1);
    if (seconds >= 0)
        aq_mfamily_observe(wm->f[F_TASK_DURATION], AQ_LV(type), seconds);
}

void aq_wm_set_in_progress(aq_worker_metrics *wm, int64_t tasks_owned)
{
    if (!wm)
        return;
    wm->totals.in_progress = tasks_owned;
    aq_mseries_set(wm->in_progress, (double)tasks_owned);
}

void aq_wm_set_llm_in_flight(aq_worker_metrics *wm, int64_t calls)
{
    if (!wm)
        return;
    wm->totals.llm_in_flight = calls;
    aq_mseries_set(wm->llm_in_flight, (double)calls);
}

void aq_wm_llm_stream(aq_worker_metrics *wm, const char *model, double ttft_seconds,
                      double tokens_per_second)
{
    if (!wm)
        return;
    if (ttft_seconds >= 0)
        aq_mfamily_observe(wm->f[F_LLM_TTFT], AQ_LV(model), ttft_seconds);
    if (tokens_per_second > 0)
        aq_mfamily_observe(wm->f[F_LLM_TPS], AQ_LV(model), tokens_per_second);
}

void aq_wm_llm_response(aq_worker_metrics *wm, const char *model, long http_status,
                        double seconds)
{
    if (!wm)
        return;
    wm->totals.llm_calls++;
    wm->totals.responses_429 += http_status == 429;
    wm->totals.responses_529 += http_status == 529;
    /* Three digits by hand: snprintf is most of this function's cost. */
    char code[8] = "error";
    if (http_status >= 100 && http_status <= 999) {
        code[0] = (char)('0' + http_status / 100);
        code[1] = (char)('0' + http_status / 10 % 10);
        code[2] = (char)('0' + http_status % 10);
        code[3] = '\0';
    }
    aq_mfamily_add(wm->f[F_LLM_RESPONSES], AQ_LV(model, code), 1);
    if (seconds >= 0)
        aq_mfamily_observe(wm->f[F_LLM_DURATION], AQ_LV(model), seconds);
}

void aq_wm_retry(aq_worker_metrics *wm, const char *type)
{
    if (wm)
        aq_mfamily_add(wm->f[F_RETRIES], AQ_LV(type), 1);
}

void aq_wm_deferral(aq_worker_metrics *wm, aq_wm_defer_reason reason)
{
    if (wm && (unsigned)reason < AQ_WM_DEFERRAL_COUNT)
        aq_mseries_add(wm->deferral[reason], 1);
}

void aq_wm_cache(aq_worker_metrics *wm, aq_wm_cache_result result)
{
    if (!wm || (unsigned)result >= AQ_WM_CACHE_RESULT_COUNT)
        return;
    wm->totals.cache_hits += result == AQ_WM_CACHE_HIT;
    wm->totals.cache_misses += result == AQ_WM_CACHE_MISS;
    aq_mseries_add(wm->cache[result], 1);
}

void aq_wm_tokens(aq_worker_metrics *wm, const char *type, const char *model, int64_t input,
                  int64_t output, int64_t cache_write, int64_t cache_read)
{
    if (!wm)
        return;
    static const char *const kinds[4] = {"input", "output", "cache_write", "cache_read"};
    const int64_t n[4] = {input, output, cache_write, cache_read};
    for (int i = 0; i < 4; i++)
        if (n[i] > 0)
            aq_mfamily_add(wm->f[F_TOKENS], AQ_LV(kinds[i], type, model), (double)n[i]);
}

void aq_wm_cost(aq_worker_metrics *wm, const char *type, const char *model, const char *tenant,
                int64_t micro_usd)
{
    if (!wm || micro_usd <= 0)
        return;
    wm->totals.cost_micro_usd += micro_usd;
    aq_mfamily_add(wm->f[F_COST], AQ_LV(type, model, tenant), (double)micro_usd / 1e6);
}

void aq_wm_routed(aq_worker_metrics *wm, const char *model, const char *rule)
{
    if (wm)
        aq_mfamily_add(wm->f[F_ROUTED], AQ_LV(model, rule), 1);
}

void aq_wm_ratelimit_remaining(aq_worker_metrics *wm, size_t key, const char *model_class,
                               const char *dimension, int64_t remaining)
{
    if (!wm)
        return;
    char idx[24];
    snprintf(idx, sizeof(idx), "%zu", key);
    aq_mfamily_set(wm->f[F_RL_REMAINING], AQ_LV(idx, model_class, dimension), (double)remaining);
}

void aq_wm_budget(aq_worker_metrics *wm, const char *tenant, int64_t limit_micro_usd,
                  int64_t remaining_micro_usd)
{
    if (!wm)
        return;
    aq_mfamily_set(wm->f[F_BUDGET], AQ_LV(tenant), (double)remaining_micro_usd / 1e6);
    aq_mfamily_set(wm->f[F_BUDGET_LIMIT], AQ_LV(tenant), (double)limit_micro_usd / 1e6);
}

void aq_wm_set_queue(aq_worker_metrics *wm, int64_t pending, int64_t ack_pending,
                     int64_t dlq_messages)
{
    if (!wm)
        return;
    aq_mseries_set(wm->pending, pending < 0 ? NAN : (double)pending);
    aq_mseries_set(wm->ack_pending, ack_pending < 0 ? NAN : (double)ack_pending);
    aq_mseries_set(wm->dlq, dlq_messages < 0 ? NAN : (double)dlq_messages);
}

/* ---- collect callbacks ---- */

static void collect_ratelimit(void *arg)
{
    aq_worker_metrics *wm = arg;
    int64_t now = aq_mono_ms();
    size_t keys = aq_rl_key_count(wm->rl);
    for (size_t k = 0; k < keys; k++) {
        for (int c = 0; c < AQ_RL_CLASS_COUNT; c++) {
            aq_rl_stats st;
            if (!aq_rl_stats_get(wm->rl, k, (aq_rl_class)c, now, &st))
                continue;
            for (int d = 0; d < AQ_RL_DIM_COUNT; d++)
                if (st.dim[d].reported_remaining >= 0)
                    aq_wm_ratelimit_remaining(wm, k, aq_rl_class_name((aq_rl_class)c),
                                              aq_rl_dim_name((aq_rl_dim)d),
                                              st.dim[d].reported_remaining);
        }
    }
}

aq_status aq_wm_watch_ratelimit(aq_worker_metrics *wm, const aq_rl *rl, aq_err *err)
{
    wm->rl = rl;
    return aq_metrics_on_collect(wm->reg, collect_ratelimit, wm, err);
}

static void budget_row(void *arg, const char *tenant, const char *type, int64_t limit_micro,
                       int64_t remaining_micro)
{
    if (!*type)
        aq_wm_budget(arg, tenant, limit_micro, remaining_micro);
}

static void collect_budget(void *arg)
{
    aq_worker_metrics *wm = arg;
    aq_budget_each(wm->budget, budget_row, wm);
}

aq_status aq_wm_watch_budget(aq_worker_metrics *wm, const aq_budget *b, aq_err *err)
{
    if (!wm)
        return AQ_OK;
    wm->budget = b;
    return aq_metrics_on_collect(wm->reg, collect_budget, wm, err);
}

static void collect_probe(void *arg)
{
    aq_worker_metrics *wm = arg;
    aq_queue_probe_values v;
    aq_queue_probe_get(wm->probe, &v);
    aq_wm_set_queue(wm, v.pending, v.ack_pending, v.dlq_messages);
    aq_mseries_set(wm->parked, v.parked < 0 ? NAN : (double)v.parked);
}

aq_status aq_wm_watch_probe(aq_worker_metrics *wm, const struct aq_queue_probe *probe, aq_err *err)
{
    wm->probe = probe;
    return aq_metrics_on_collect(wm->reg, collect_probe, wm, err);
}

bool aq_wm_task_duration_snapshot(const aq_worker_metrics *wm, aq_hist_snapshot *out)
{
    return wm && aq_mfamily_hist_snapshot(wm->f[F_TASK_DURATION], out);
}

bool aq_wm_llm_duration_snapshot(const aq_worker_metrics *wm, aq_hist_snapshot *out)
{
    return wm && aq_mfamily_hist_snapshot(wm->f[F_LLM_DURATION], out);
}

void aq_wm_totals_get(const aq_worker_metrics *wm, aq_wm_totals *out)
{
    if (!wm) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = wm->totals;
}

/* ---- agent runs ---- */

void aq_wm_agent_runs(aq_worker_metrics *wm, int64_t runs)
{
    if (wm)
        aq_mfamily_set(wm->f[F_AGENT_RUNS], NULL, (double)runs);
}

void aq_wm_agent_checkpoint(aq_worker_metrics *wm)
{
    if (wm)
        aq_mfamily_add(wm->f[F_AGENT_CHECKPOINTS], NULL, 1);
}

void aq_wm_agent_run_ended(aq_worker_metrics *wm, uint32_t steps, uint32_t tool_calls,
                           const char *ceiling_action)
{
    if (!wm)
        return;
    aq_mfamily_observe(wm->f[F_AGENT_STEPS], NULL, (double)steps);
    aq_mfamily_observe(wm->f[F_AGENT_TOOL_CALLS], NULL, (double)tool_calls);
    if (ceiling_action)
        aq_mfamily_add(wm->f[F_AGENT_CEILING], AQ_LV(ceiling_action), 1);
}

void aq_wm_tool_call(aq_worker_metrics *wm, const char *tool, const char *outcome, double seconds)
{
    if (!wm)
        return;
    aq_mfamily_add(wm->f[F_TOOL_CALLS], AQ_LV(tool, outcome), 1);
    if (seconds >= 0)
        aq_mfamily_observe(wm->f[F_TOOL_DURATION], AQ_LV(tool), seconds);
}

void aq_wm_tool_schema_violation(aq_worker_metrics *wm, const char *tool)
{
    if (wm)
        aq_mfamily_add(wm->f[F_TOOL_SCHEMA], AQ_LV(tool), 1);
}
