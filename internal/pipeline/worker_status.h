/* The worker's fleet status snapshot (internal/fleet), filled from what the
 * worker already keeps: the pipeline's counters, the worker metrics (provider
 * calls, cache, cost, the end-to-end latency histogram) and the queue probe.
 *
 * The windowed figures (AQ_FLEET_WINDOW_S seconds) come from a small ring of
 * past cumulative samples, one per snapshot: the window is "now minus the
 * newest sample at least a window old" (or minus the worker's start while it
 * is younger than that), so nothing is counted twice and nothing needs a
 * timer of its own. The queue trend (pending_60s_ago) comes from the same
 * ring. The day's cost is the cost counter minus its value when the UTC day
 * began (for this process: its start or the first snapshot of the day).
 *
 * Threads: everything runs on the worker's loop thread (the reporter's fill
 * callback), like the metrics it reads.
 */
#ifndef AQ_PIPELINE_WORKER_STATUS_H
#define AQ_PIPELINE_WORKER_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "budget/budget.h"
#include "core/status.h"
#include "fleet/fleet_snapshot.h"
#include "metrics/metrics.h"

struct aq_pipeline;
struct aq_worker_metrics;
struct aq_queue_probe;

/* Samples kept at most; with a short interval the window just gets shorter
 * than AQ_FLEET_WINDOW_S (the rates stay right: they divide by the real span). */
#define AQ_WS_RING_MAX 128
/* pending_60s_ago is taken from a probe between 60 s and 60 s + this before
 * the latest one; none there (a young worker, a stalled probe): unknown. */
#define AQ_WS_TREND_SLACK_MS 30000

/* The budget hook: call `row` once per configured budget with today's
 * figures, like aq_budget_each (a three-line adapter connects it). Only the
 * tenants' own budgets (type NULL or "") go into the snapshot. */
typedef void (*aq_ws_budget_each_fn)(const void *ctx, aq_budget_each_fn row, void *arg);

typedef struct aq_ws_config {
    const struct aq_pipeline *pipeline;   /* counters, tasks owned; NULL: zeros */
    const struct aq_worker_metrics *wm;   /* calls, cache, cost, latencies; NULL: zeros */
    const struct aq_queue_probe *probe;   /* queue figures; NULL: unknown */
    int64_t concurrency;                  /* the configured concurrency */
    int64_t interval_ms;                  /* the reporter's interval: sizes the ring */
    const char *version;                  /* NULL: the reporter's default */
    int64_t start_mono_ms;                /* the zero sample; 0: now (aq_mono_ms) */
    aq_ws_budget_each_fn budget_each;     /* NULL: no budgets in the snapshot */
    const void *budget_ctx;
} aq_ws_config;

typedef struct aq_worker_status aq_worker_status;

/* The strings of `cfg` are copied; the sources must outlive ws. */
aq_status aq_ws_new(const aq_ws_config *cfg, aq_worker_status **out, aq_err *err);
void aq_ws_destroy(aq_worker_status *ws); /* accepts NULL */

/* An aq_fleet_fill_fn (ctx = the aq_worker_status): read the sources now
 * and fill `snap` (aq_ws_update). */
void aq_ws_fill(void *ctx, aq_fleet_snapshot *snap);

/* ---- the arithmetic, without the sources (aq_ws_fill and the tests) ---- */

/* Cumulative figures read at one moment. */
typedef struct aq_ws_sample {
    int64_t mono_ms; /* places the sample in the window */
    int64_t unix_ms; /* the UTC day of the cost */
    aq_fleet_counters counters;
    int64_t owned;
    int64_t llm_in_flight;
    int64_t cost_micro_usd;      /* cost since the start */
    bool have_durations;         /* false: no histogram (no metrics) */
    aq_hist_snapshot durations;  /* end-to-end task latency since the start */
    int64_t probed_ms;           /* the probe's unix ms; 0: never probed */
    int64_t pending, ack_pending, dlq_messages; /* -1 unknown */
} aq_ws_sample;

/* Fill everything of `snap` but its identity from `now` and the ring, then
 * keep `now` in the ring. Samples come in time order. */
void aq_ws_update(aq_worker_status *ws, const aq_ws_sample *now, aq_fleet_snapshot *snap);

#endif
