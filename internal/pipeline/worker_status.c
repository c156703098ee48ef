#include "worker_status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/text.h"
#include "pipeline/pipeline.h"
#include "pipeline/worker_metrics.h"
#include "queue/queue_probe.h"

#define WINDOW_MS ((int64_t)AQ_FLEET_WINDOW_S * 1000)
#define DAY_MS 86400000LL

/* What the ring keeps of a sample: only the figures a window or the trend
 * subtracts. */
typedef struct ws_entry {
    int64_t mono_ms;
    int64_t completed, llm_calls, responses_429;
    int64_t probed_ms, pending;
    bool have_durations;
    aq_hist_snapshot durations;
} ws_entry;

struct aq_worker_status {
    aq_ws_config cfg;
    char version[AQ_FLEET_VERSION_MAX + 1];
    ws_entry *ring;
    size_t cap, n, head; /* head: where the next entry goes */
    /* the cost of the UTC day */
    bool have_day;
    int64_t day;           /* days since 1970-01-01 */
    int64_t day_base;      /* the cost counter when the day began */
    int64_t last_cost;     /* the cost counter at the last update */
};

aq_status aq_ws_new(const aq_ws_config *cfg, aq_worker_status **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_worker_status *ws = NULL;
    if (!cfg || cfg->interval_ms <= 0) {
        st = aq_err_set(err, AQ_INVALID_ARG, "worker status: no configuration or no interval");
        goto out;
    }
    if (!(ws = calloc(1, sizeof(*ws)))) {
        st = aq_err_set(err, AQ_NOMEM, "worker status: out of memory");
        goto out;
    }
    ws->cfg = *cfg;
    if (cfg->version) {
        snprintf(ws->version, sizeof(ws->version), "%s", cfg->version);
        ws->cfg.version = ws->version;
    }
    /* Enough samples to reach a window plus the trend's slack back, one per
     * interval, and two more for the timer's drift. */
    int64_t want = (WINDOW_MS + AQ_WS_TREND_SLACK_MS) / cfg->interval_ms + 2;
    ws->cap = want > AQ_WS_RING_MAX ? AQ_WS_RING_MAX : (size_t)want;
    if (!(ws->ring = calloc(ws->cap, sizeof(*ws->ring)))) {
        st = aq_err_set(err, AQ_NOMEM, "worker status: out of memory");
        goto out;
    }
    /* The zero sample: everything counted so far happened after it, so a
     * young worker's window is its whole life. No probe, no histogram. */
    ws->ring[0].mono_ms = cfg->start_mono_ms ? cfg->start_mono_ms : aq_mono_ms();
    ws->n = 1;
    ws->head = 1 % ws->cap;
    *out = ws;
    ws = NULL;
out:
    aq_ws_destroy(ws);
    return st;
}

void aq_ws_destroy(aq_worker_status *ws)
{
    if (!ws)
        return;
    free(ws->ring);
    free(ws);
}

/* The i-th entry from the oldest (i < n). */
static const ws_entry *entry(const aq_worker_status *ws, size_t i)
{
    return &ws->ring[(ws->head + ws->cap - ws->n + i) % ws->cap];
}

static void push(aq_worker_status *ws, const aq_ws_sample *s)
{
    ws_entry *e = &ws->ring[ws->head];
    e->mono_ms = s->mono_ms;
    e->completed = s->counters.completed;
    e->llm_calls = s->counters.llm_calls;
    e->responses_429 = s->counters.responses_429;
    e->probed_ms = s->probed_ms;
    e->pending = s->pending;
    e->have_durations = s->have_durations;
    if (s->have_durations)
        e->durations = s->durations;
    ws->head = (ws->head + 1) % ws->cap;
    if (ws->n < ws->cap)
        ws->n++;
}

/* The window's start: the newest sample at least a window old, else the
 * oldest kept (a worker younger than the window). */
static const ws_entry *window_base(const aq_worker_status *ws, int64_t now_mono)
{
    for (size_t i = ws->n; i-- > 0;)
        if (entry(ws, i)->mono_ms <= now_mono - WINDOW_MS)
            return entry(ws, i);
    return entry(ws, 0);
}

static int64_t delta(int64_t now, int64_t before)
{
    return now > before ? now - before : 0; /* counters never go back; a restart would */
}

static int64_t quantile_ms(const aq_hist_snapshot *h, double q)
{
    double s = aq_hist_quantile(h, q);
    return isnan(s) || s < 0 ? -1 : (int64_t)llround(s * 1000.0);
}

static void fill_window(const aq_worker_status *ws, const aq_ws_sample *now, aq_fleet_window *w)
{
    const ws_entry *b = window_base(ws, now->mono_ms);
    int64_t span_ms = now->mono_ms - b->mono_ms;
    w->completed = delta(now->counters.completed, b->completed);
    w->completed_per_s = span_ms > 0 ? (double)w->completed * 1000.0 / (double)span_ms : 0;
    w->llm_calls = delta(now->counters.llm_calls, b->llm_calls);
    w->responses_429 = delta(now->counters.responses_429, b->responses_429);
    w->share_429 = w->llm_calls > 0 ? (double)w->responses_429 / (double)w->llm_calls : 0;
    w->p50_ms = w->p99_ms = -1;
    if (!now->have_durations)
        return;
    aq_hist_snapshot d;
    /* No histogram at the base: it is the zero sample (everything is new). */
    if (!b->have_durations || !aq_hist_delta(&now->durations, &b->durations, &d))
        d = now->durations;
    if (d.cum[d.n_buckets] == 0)
        return;
    w->p50_ms = quantile_ms(&d, 0.5);
    w->p99_ms = quantile_ms(&d, 0.99);
}

static void fill_queue(const aq_worker_status *ws, const aq_ws_sample *now, aq_fleet_queue *q)
{
    if (now->probed_ms <= 0)
        return; /* the snapshot's unknowns stay */
    q->probed_ms = now->probed_ms;
    q->pending = now->pending;
    q->ack_pending = now->ack_pending;
    q->dlq_messages = now->dlq_messages;
    q->pending_60s_ago = -1;
    if (now->pending < 0)
        return;
    int64_t newest = now->probed_ms - WINDOW_MS, oldest = newest - AQ_WS_TREND_SLACK_MS;
    for (size_t i = ws->n; i-- > 0;) {
        const ws_entry *e = entry(ws, i);
        if (e->probed_ms > 0 && e->pending >= 0 && e->probed_ms <= newest) {
            if (e->probed_ms >= oldest)
                q->pending_60s_ago = e->pending;
            return; /* older ones are further off */
        }
    }
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static void fill_cost(aq_worker_status *ws, const aq_ws_sample *now, aq_fleet_snapshot *snap)
{
    int64_t day = floor_div(now->unix_ms, DAY_MS);
    if (!ws->have_day) {
        ws->have_day = true;
        ws->day = day;
        ws->day_base = 0; /* the zero sample: what it spent so far, it spent today */
    } else if (day != ws->day) {
        /* Spent since the last snapshot lands in the new day: at most an
         * interval's worth, which is as close as a per-snapshot view gets. */
        ws->day = day;
        ws->day_base = ws->last_cost;
    }
    ws->last_cost = now->cost_micro_usd;
    snap->cost_today_micro_usd = delta(now->cost_micro_usd, ws->day_base);
    time_t t = (time_t)(day * 86400);
    struct tm tm;
    if (gmtime_r(&t, &tm) && strftime(snap->cost_day, sizeof(snap->cost_day), "%Y-%m-%d", &tm) == 10)
        return;
    snap->cost_day[0] = '\0';
}

typedef struct budget_rows {
    aq_fleet_snapshot *snap;
} budget_rows;

static void budget_row(void *arg, const char *tenant, const char *type, int64_t limit_micro,
                       int64_t remaining_micro)
{
    (void)limit_micro;
    budget_rows *br = arg;
    aq_fleet_snapshot *s = br->snap;
    size_t len = tenant ? strlen(tenant) : 0;
    /* The snapshot lists tenants' own budgets; a tenant name the snapshot
     * cannot carry (too long, not UTF-8: the encoding would fail as a whole)
     * is left out rather than cut into another tenant's name. */
    if ((type && *type) || len == 0 || len > AQ_FLEET_TENANT_MAX || !aq_utf8_valid(tenant, len) ||
        s->n_budgets >= AQ_FLEET_BUDGETS_MAX)
        return;
    aq_fleet_budget *b = &s->budgets[s->n_budgets++];
    memcpy(b->tenant, tenant, len + 1);
    b->remaining_micro_usd = remaining_micro;
}

void aq_ws_update(aq_worker_status *ws, const aq_ws_sample *now, aq_fleet_snapshot *snap)
{
    if (ws->cfg.version)
        snprintf(snap->version, sizeof(snap->version), "%s", ws->cfg.version);
    snap->concurrency = ws->cfg.concurrency;
    snap->owned = now->owned;
    snap->llm_in_flight = now->llm_in_flight;
    snap->counters = now->counters;
    fill_window(ws, now, &snap->window);
    fill_queue(ws, now, &snap->queue);
    fill_cost(ws, now, snap);
    snap->n_budgets = 0;
    if (ws->cfg.budget_each) {
        budget_rows br = {.snap = snap};
        ws->cfg.budget_each(ws->cfg.budget_ctx, budget_row, &br);
    }
    push(ws, now);
}

static int64_t i64(uint64_t v)
{
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

void aq_ws_fill(void *ctx, aq_fleet_snapshot *snap)
{
    aq_worker_status *ws = ctx;
    aq_ws_sample s;
    memset(&s, 0, sizeof(s));
    s.mono_ms = aq_mono_ms();
    s.unix_ms = aq_now_unix_ms();
    if (ws->cfg.pipeline) {
        aq_pipeline_stats st;
        aq_pipeline_get_stats(ws->cfg.pipeline, &st);
        s.counters.fetched = i64(st.fetched);
        s.counters.completed = i64(st.completed);
        s.counters.failed = i64(st.failed);
        s.counters.dead_lettered = i64(st.dead_lettered);
        s.counters.already_done = i64(st.already_done);
        s.counters.retried = i64(st.retried);
        s.counters.deferred = i64(st.deferred);
        s.owned = i64(st.in_flight);
    }
    aq_wm_totals t;
    aq_wm_totals_get(ws->cfg.wm, &t);
    s.counters.llm_calls = i64(t.llm_calls);
    s.counters.responses_429 = i64(t.responses_429);
    s.counters.responses_529 = i64(t.responses_529);
    s.counters.cache_hits = i64(t.cache_hits);
    s.counters.cache_misses = i64(t.cache_misses);
    s.llm_in_flight = t.llm_in_flight;
    s.cost_micro_usd = t.cost_micro_usd;
    if (!ws->cfg.pipeline)
        s.owned = t.in_progress;
    s.have_durations = aq_wm_task_duration_snapshot(ws->cfg.wm, &s.durations);
    s.pending = s.ack_pending = s.dlq_messages = -1;
    if (ws->cfg.probe) {
        aq_queue_probe_values v;
        aq_queue_probe_get(ws->cfg.probe, &v);
        s.probed_ms = v.probed_unix_ms;
        s.pending = v.pending;
        s.ack_pending = v.ack_pending;
        s.dlq_messages = v.dlq_messages;
    }
    aq_ws_update(ws, &s, snap);
}
