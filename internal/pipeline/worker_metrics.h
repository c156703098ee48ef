/* The worker's metric families (the contract: README "Metrics"), created
 * in one place, and small typed update functions for the pipeline.
 *
 * Threads: like the registry, everything here runs on the worker's loop
 * thread. Values that live on other threads (the queue probe) or in other
 * modules (the rate limiter) are read at scrape time by collect callbacks
 * (aq_wm_watch_*), also on the loop thread.
 *
 * Every update function accepts wm == NULL and does nothing, so code paths
 * (and tests) without metrics need no branches. Label values may be NULL
 * (exposed as ""); types, models and tenants beyond their caps are folded
 * into "_other". */
#ifndef AQ_PIPELINE_WORKER_METRICS_H
#define AQ_PIPELINE_WORKER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"
#include "metrics/metrics.h"

struct aq_rl;
struct aq_budget;
struct aq_queue_probe;

#define AQ_WM_MAX_TYPES 200       /* distinct task types; more: type="_other" */
#define AQ_WM_DEFAULT_TENANTS 100 /* metrics_max_tenants default */
#define AQ_WM_MAX_MODELS 64       /* distinct models (task-supplied when allowed_models is empty) */
#define AQ_WM_MAX_CODES 32        /* distinct HTTP status codes */
#define AQ_WM_MAX_RULES 64        /* distinct routing rules */
#define AQ_WM_MAX_KEYS 64         /* API key indexes */
#define AQ_WM_MAX_TOOLS 64        /* distinct tool names (task-supplied); more: tool="_other" */

typedef struct aq_worker_metrics aq_worker_metrics;

typedef struct aq_wm_config {
    const char *version; /* agentq_build_info{version}; NULL: "" */
    const char *worker;  /* agentq_build_info{worker}; NULL: "" */
    size_t max_tenants;  /* tenant label values before "_other"; 0: AQ_WM_DEFAULT_TENANTS */
} aq_wm_config;

/* Creates every family in `reg` (which must outlive wm). */
aq_status aq_wm_new(aq_metrics *reg, const aq_wm_config *cfg, aq_worker_metrics **out,
                    aq_err *err);
/* Frees wm (the families stay in the registry). Accepts NULL. */
void aq_wm_destroy(aq_worker_metrics *wm);

/* `<name> <type> <help>`, one family per line (agentq-worker --print-metrics). */
void aq_wm_print_families(FILE *out);

/* ---- tasks ---- */

typedef enum aq_wm_outcome {
    AQ_WM_COMPLETED,     /* COMPLETED result stored and acked */
    AQ_WM_FAILED,        /* FAILED result stored (then dead-lettered or not) */
    AQ_WM_DEAD_LETTERED, /* published to the DLQ and terminated */
    AQ_WM_ALREADY_DONE,  /* a redelivery settled from its stored result */
    AQ_WM_OUTCOME_COUNT
} aq_wm_outcome;

/* A task settled. `seconds`: published -> result stored (agentq_task_duration_seconds);
 * negative when there is no such time (already_done, unknown publish time). */
void aq_wm_task_settled(aq_worker_metrics *wm, const char *type, aq_wm_outcome outcome,
                        double seconds);
/* Gauges the pipeline sets when they change (cheap: no lookup). */
void aq_wm_set_in_progress(aq_worker_metrics *wm, int64_t tasks_owned);
void aq_wm_set_llm_in_flight(aq_worker_metrics *wm, int64_t calls);

/* ---- provider calls ---- */

/* One provider call ended: `http_status` 0 for a transport failure
 * (code="error"); `seconds` the call's duration (negative: not observed). */
void aq_wm_llm_response(aq_worker_metrics *wm, const char *model, long http_status,
                        double seconds);
/* A streamed call's time to first token (negative: none came) and output
 * tokens per second (0: not measured). */
void aq_wm_llm_stream(aq_worker_metrics *wm, const char *model, double ttft_seconds,
                      double tokens_per_second);
/* A retryable failure that will be retried. */
void aq_wm_retry(aq_worker_metrics *wm, const char *type);

typedef enum aq_wm_defer_reason {
    AQ_WM_DEFER_RATE_LIMITED, /* 429, or the local rate budget */
    AQ_WM_DEFER_OVERLOADED,   /* 529 */
    AQ_WM_DEFER_BUDGET,       /* the tenant's spending budget */
    AQ_WM_DEFERRAL_COUNT
} aq_wm_defer_reason;
void aq_wm_deferral(aq_worker_metrics *wm, aq_wm_defer_reason reason);

typedef enum aq_wm_cache_result {
    AQ_WM_CACHE_HIT,
    AQ_WM_CACHE_MISS,
    AQ_WM_CACHE_BYPASS, /* caching off for the task, or the task not cacheable */
    AQ_WM_CACHE_RESULT_COUNT
} aq_wm_cache_result;
void aq_wm_cache(aq_worker_metrics *wm, aq_wm_cache_result result);

/* Tokens billed for one call (agentq_tokens_total by kind); zeros are skipped. */
void aq_wm_tokens(aq_worker_metrics *wm, const char *type, const char *model, int64_t input,
                  int64_t output, int64_t cache_write, int64_t cache_read);
/* Cost of one call in micro-dollars (exposed in dollars). */
void aq_wm_cost(aq_worker_metrics *wm, const char *type, const char *model, const char *tenant,
                int64_t micro_usd);
/* A task routed to `model` by routing rule `rule`. */
void aq_wm_routed(aq_worker_metrics *wm, const char *model, const char *rule);

/* ---- agent runs ---- */

/* agentq_agent_runs_in_flight. */
void aq_wm_agent_runs(aq_worker_metrics *wm, int64_t runs);
/* A checkpoint written. */
void aq_wm_agent_checkpoint(aq_worker_metrics *wm);
/* A run ended (DONE or FAILED) with these counts; `ceiling_action` "fail" or
 * "final" when it ended at a ceiling, else NULL. */
void aq_wm_agent_run_ended(aq_worker_metrics *wm, uint32_t steps, uint32_t tool_calls,
                           const char *ceiling_action);
/* One tool call ended with `outcome` (ToolCallRecord.outcome); `seconds` < 0:
 * never dispatched (not observed in the latency histogram). */
void aq_wm_tool_call(aq_worker_metrics *wm, const char *tool, const char *outcome, double seconds);
void aq_wm_tool_schema_violation(aq_worker_metrics *wm, const char *tool);

/* ---- limits and budgets ---- */

/* Provider-reported remaining for API key number `key` (never the key),
 * model class ("haiku", ...) and dimension ("requests", "input_tokens",
 * "output_tokens"). aq_wm_watch_ratelimit fills these at scrape time. */
void aq_wm_ratelimit_remaining(aq_worker_metrics *wm, size_t key, const char *model_class,
                               const char *dimension, int64_t remaining);
/* A tenant's budget today and what is left of it, in micro-dollars (left
 * may be negative). */
void aq_wm_budget(aq_worker_metrics *wm, const char *tenant, int64_t limit_micro_usd,
                  int64_t remaining_micro_usd);

/* ---- values read at scrape time ---- */

/* agentq_queue_pending, _ack_pending, agentq_dlq_messages; -1 = unknown (NaN). */
void aq_wm_set_queue(aq_worker_metrics *wm, int64_t pending, int64_t ack_pending,
                     int64_t dlq_messages);
/* Fill agentq_ratelimit_remaining from the limiter at every scrape (the
 * limiter is used on the loop thread, like the registry; it must outlive
 * wm). Only (key, class, dimension) with a reported value are exposed. */
aq_status aq_wm_watch_ratelimit(aq_worker_metrics *wm, const struct aq_rl *rl, aq_err *err);
/* Fill agentq_budget_remaining_usd from the budget client at every scrape
 * (tenant budgets; tenant/type budgets have no label for the type). The
 * client runs on the loop thread and must outlive wm. */
aq_status aq_wm_watch_budget(aq_worker_metrics *wm, const struct aq_budget *b, aq_err *err);
/* Fill the queue gauges from the probe at every scrape (the probe must
 * outlive wm; its values are atomics, safe to read on the loop). */
aq_status aq_wm_watch_probe(aq_worker_metrics *wm, const struct aq_queue_probe *probe,
                            aq_err *err);

/* ---- for the fleet status (p50/p99 over a window) ---- */

/* agentq_task_duration_seconds / agentq_llm_request_duration_seconds summed
 * over every type / model. false when wm is NULL. */
bool aq_wm_task_duration_snapshot(const aq_worker_metrics *wm, aq_hist_snapshot *out);
bool aq_wm_llm_duration_snapshot(const aq_worker_metrics *wm, aq_hist_snapshot *out);

/* Totals the fleet status needs without summing families over their label
 * values: kept as plain integers beside the families by the update
 * functions above (cost exactly, in micro-dollars). */
typedef struct aq_wm_totals {
    uint64_t llm_calls;     /* aq_wm_llm_response calls: every code, transport errors too */
    uint64_t responses_429; /* of them, HTTP 429 */
    uint64_t responses_529; /* of them, HTTP 529 */
    uint64_t cache_hits;
    uint64_t cache_misses;
    int64_t cost_micro_usd; /* sum of aq_wm_cost since the start */
    int64_t in_progress;    /* the last aq_wm_set_in_progress */
    int64_t llm_in_flight;  /* the last aq_wm_set_llm_in_flight */
} aq_wm_totals;
/* All zeros when wm is NULL. */
void aq_wm_totals_get(const aq_worker_metrics *wm, aq_wm_totals *out);

#endif
