/* internal/pipeline/worker_status: the snapshot a worker publishes, from
 * synthetic cumulative samples (the window, the queue trend, the day's cost,
 * budgets) and from real worker metrics (aq_ws_fill). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "fleet/fleet_snapshot.h"
#include "metrics/metrics.h"
#include "pipeline/worker_metrics.h"
#include "pipeline/worker_status.h"

#define T0 1000000 /* the worker's start, monotonic ms */
/* 2030-01-01T00:00:00Z in unix ms */
#define JAN1_2030 1893456000000LL

static aq_worker_status *new_ws(int64_t interval_ms)
{
    aq_worker_status *ws = NULL;
    aq_err err;
    aq_ws_config c = {.concurrency = 8, .interval_ms = interval_ms, .start_mono_ms = T0,
                      .version = "9.9.9"};
    assert_int_equal(aq_ws_new(&c, &ws, &err), AQ_OK);
    return ws;
}

/* A sample at `ms` after the start, nothing probed, no histogram. */
static aq_ws_sample at(int64_t ms)
{
    aq_ws_sample s;
    memset(&s, 0, sizeof(s));
    s.mono_ms = T0 + ms;
    s.unix_ms = JAN1_2030 + 12 * 3600000LL + ms;
    s.pending = s.ack_pending = s.dlq_messages = -1;
    return s;
}

static void update(aq_worker_status *ws, const aq_ws_sample *s, aq_fleet_snapshot *snap)
{
    aq_fleet_snapshot_init(snap);
    aq_ws_update(ws, s, snap);
}

/* A task-duration histogram (the worker's buckets) with `n` observations of
 * `seconds` added to `h` (an empty one when h->n_buckets is 0). */
static void observe(aq_hist_snapshot *h, double seconds, uint64_t n)
{
    if (h->n_buckets == 0) {
        memset(h, 0, sizeof(*h));
        h->n_buckets = aq_metrics_buckets_task_n;
        memcpy(h->le, aq_metrics_buckets_task, h->n_buckets * sizeof(double));
    }
    for (size_t i = 0; i <= h->n_buckets; i++)
        if (i == h->n_buckets || seconds <= h->le[i])
            h->cum[i] += n;
    h->sum += seconds * (double)n;
}

static void test_new_refuses_no_interval(void **state)
{
    (void)state;
    aq_worker_status *ws = NULL;
    aq_err err;
    aq_ws_config c = {.interval_ms = 0};
    assert_int_equal(aq_ws_new(&c, &ws, &err), AQ_INVALID_ARG);
    assert_null(ws);
    assert_int_equal(aq_ws_new(NULL, &ws, &err), AQ_INVALID_ARG);
    aq_ws_destroy(NULL);
}

/* Younger than the window: the window is the worker's life so far. */
static void test_young_worker(void **state)
{
    (void)state;
    aq_worker_status *ws = new_ws(1000);
    aq_fleet_snapshot snap;
    aq_ws_sample s = at(10000);
    s.counters.completed = 20;
    s.counters.fetched = 25;
    s.counters.llm_calls = 30;
    s.counters.responses_429 = 6;
    s.counters.responses_529 = 1;
    s.owned = 5;
    s.llm_in_flight = 4;
    s.have_durations = true;
    observe(&s.durations, 0.3, 10); /* in (0.25, 0.5] */
    observe(&s.durations, 8, 10);   /* in (7.5, 10] */
    update(ws, &s, &snap);
    assert_string_equal(snap.version, "9.9.9");
    assert_int_equal(snap.concurrency, 8);
    assert_int_equal(snap.owned, 5);
    assert_int_equal(snap.llm_in_flight, 4);
    assert_int_equal(snap.counters.fetched, 25);
    assert_int_equal(snap.counters.responses_529, 1);
    assert_int_equal(snap.window.completed, 20);
    assert_true(snap.window.completed_per_s == 2.0); /* 20 over 10 s, not over 60 */
    assert_int_equal(snap.window.llm_calls, 30);
    assert_int_equal(snap.window.responses_429, 6);
    assert_true(snap.window.share_429 == 0.2);
    /* rank 10 of 20 is the top of the (0.25, 0.5] bucket; rank 19.8 is in
     * (7.5, 10]: 7.5 + 2.5 * 9.8 / 10 */
    assert_int_equal(snap.window.p50_ms, 500);
    assert_int_equal(snap.window.p99_ms, 9950);
    aq_ws_destroy(ws);
}

/* The first snapshot, at the start itself: nothing done, no division by 0. */
static void test_first_snapshot_at_start(void **state)
{
    (void)state;
    aq_worker_status *ws = new_ws(5000);
    aq_fleet_snapshot snap;
    aq_ws_sample s = at(0);
    s.have_durations = true;
    observe(&s.durations, 1, 0);
    update(ws, &s, &snap);
    assert_int_equal(snap.window.completed, 0);
    assert_true(snap.window.completed_per_s == 0);
    assert_true(snap.window.share_429 == 0);
    assert_int_equal(snap.window.p50_ms, -1); /* nothing completed: unknown */
    assert_int_equal(snap.window.p99_ms, -1);
    assert_int_equal(snap.queue.probed_ms, 0); /* never probed: the unknowns stay */
    assert_int_equal(snap.queue.pending, -1);
    assert_int_equal(snap.queue.pending_60s_ago, -1);
    aq_ws_destroy(ws);
}

/* Older than the window: only the last 60 s count, for the rates and for
 * the latencies (a slow first minute does not weigh on the second). */
static void test_window_slides(void **state)
{
    (void)state;
    aq_worker_status *ws = new_ws(1000);
    aq_fleet_snapshot snap;
    aq_ws_sample s = at(0);
    s.have_durations = true;
    observe(&s.durations, 1, 0);
    for (int sec = 1; sec <= 120; sec++) {
        s.mono_ms = T0 + sec * 1000;
        s.counters.completed += 3;
        s.counters.llm_calls += 4;
        s.counters.responses_429 += sec <= 60 ? 2 : 0; /* 429s only in the first minute */
        observe(&s.durations, sec <= 60 ? 20.0 : 0.1, 3);
        update(ws, &s, &snap);
    }
    assert_int_equal(snap.counters.completed, 360);
    assert_int_equal(snap.window.completed, 180);
    assert_true(snap.window.completed_per_s == 3.0);
    assert_int_equal(snap.window.llm_calls, 240);
    assert_int_equal(snap.window.responses_429, 0);
    assert_true(snap.window.share_429 == 0);
    /* All 180 in (0.05, 0.1]: p50 at rank 90 -> 0.05 + 0.05 * 90/180 */
    assert_int_equal(snap.window.p50_ms, 75);
    assert_in_range(snap.window.p99_ms, 99, 100); /* 99.5, rounded */
    /* 30 s later with nothing done: the window empties, latencies unknown. */
    for (int sec = 121; sec <= 181; sec++) {
        s.mono_ms = T0 + sec * 1000;
        update(ws, &s, &snap);
    }
    assert_int_equal(snap.window.completed, 0);
    assert_true(snap.window.completed_per_s == 0);
    assert_int_equal(snap.window.p50_ms, -1);
    aq_ws_destroy(ws);
}

/* Snapshots more often than the ring holds a window of: the window is
 * shorter, the rate still divides by its real span. */
static void test_short_interval_caps_ring(void **state)
{
    (void)state;
    aq_worker_status *ws = new_ws(100);
    aq_fleet_snapshot snap;
    aq_ws_sample s = at(0);
    for (int i = 1; i <= 1000; i++) { /* 100 s, one task per 100 ms */
        s.mono_ms = T0 + i * 100;
        s.counters.completed++;
        update(ws, &s, &snap);
    }
    /* The base is AQ_WS_RING_MAX samples back. */
    assert_int_equal(snap.window.completed, AQ_WS_RING_MAX);
    assert_true(snap.window.completed_per_s > 9.999 && snap.window.completed_per_s < 10.001);
    aq_ws_destroy(ws);
}

/* A counter that went back (it cannot, but a window is never negative). */
static void test_counters_never_negative(void **state)
{
    (void)state;
    aq_worker_status *ws = new_ws(1000);
    aq_fleet_snapshot snap;
    aq_ws_sample s = at(70000);
    s.counters.completed = 50;
    s.counters.llm_calls = 50;
    update(ws, &s, &snap);
    s = at(140000);
    s.counters.completed = 10;
    update(ws, &s, &snap);
    assert_int_equal(snap.window.completed, 0);
    assert_int_equal(snap.window.llm_calls, 0);
    assert_true(snap.window.completed_per_s == 0);
    aq_ws_destroy(ws);
}

/* The queue as probed, and pending about 60 s before the probe. */
static void test_queue_trend(void **state)
{
    (void)state;
    aq_worker_status *ws = new_ws(5000);
    aq_fleet_snapshot snap;
    int64_t probe0 = JAN1_2030;
    /* A snapshot every 5 s; the probe lags a second behind; pending falls
     * by 10 a probe. */
    for (int i = 1; i <= 20; i++) {
        aq_ws_sample s = at(i * 5000);
        s.probed_ms = probe0 + i * 5000 - 1000;
        s.pending = 1000 - i * 10;
        s.ack_pending = 7;
        s.dlq_messages = 2;
        update(ws, &s, &snap);
        assert_int_equal(snap.queue.probed_ms, s.probed_ms);
        assert_int_equal(snap.queue.pending, s.pending);
        assert_int_equal(snap.queue.ack_pending, 7);
        assert_int_equal(snap.queue.dlq_messages, 2);
        if (i <= 12) /* no probe 60 s older yet */
            assert_int_equal(snap.queue.pending_60s_ago, -1);
        else /* the probe 12 before */
            assert_int_equal(snap.queue.pending_60s_ago, 1000 - (i - 12) * 10);
    }
    /* The probe stalls (same values) and then comes back 3 minutes later:
     * no probe between 60 and 90 s before it, so the trend is unknown
     * rather than taken from a probe far older. */
    for (int i = 21; i <= 56; i++) {
        aq_ws_sample s = at(i * 5000);
        s.probed_ms = probe0 + 20 * 5000 - 1000;
        s.pending = 800;
        update(ws, &s, &snap);
    }
    aq_ws_sample s = at(57 * 5000);
    s.probed_ms = probe0 + 57 * 5000 - 1000;
    s.pending = 700;
    update(ws, &s, &snap);
    assert_int_equal(snap.queue.pending, 700);
    assert_int_equal(snap.queue.pending_60s_ago, -1);
    /* An unknown pending in the probe: no trend either. */
    s = at(58 * 5000);
    s.probed_ms = probe0 + 58 * 5000 - 1000;
    s.pending = -1;
    update(ws, &s, &snap);
    assert_int_equal(snap.queue.pending, -1);
    assert_int_equal(snap.queue.pending_60s_ago, -1);
    aq_ws_destroy(ws);
}

/* The day's cost: since the start, then since UTC midnight. */
static void test_cost_day(void **state)
{
    (void)state;
    aq_worker_status *ws = new_ws(1000);
    aq_fleet_snapshot snap;
    aq_ws_sample s = at(1000);
    s.unix_ms = JAN1_2030 - 2000; /* 2029-12-31T23:59:58Z */
    s.cost_micro_usd = 100;
    update(ws, &s, &snap);
    assert_string_equal(snap.cost_day, "2029-12-31");
    assert_int_equal(snap.cost_today_micro_usd, 100);
    s.mono_ms += 1000;
    s.unix_ms += 1000;
    s.cost_micro_usd = 150;
    update(ws, &s, &snap);
    assert_string_equal(snap.cost_day, "2029-12-31");
    assert_int_equal(snap.cost_today_micro_usd, 150);
    s.mono_ms += 2000;
    s.unix_ms += 2000; /* 00:00:01 */
    s.cost_micro_usd = 170;
    update(ws, &s, &snap);
    assert_string_equal(snap.cost_day, "2030-01-01");
    assert_int_equal(snap.cost_today_micro_usd, 20);
    s.mono_ms += 3600000;
    s.unix_ms += 3600000;
    s.cost_micro_usd = 1000170;
    update(ws, &s, &snap);
    assert_string_equal(snap.cost_day, "2030-01-01");
    assert_int_equal(snap.cost_today_micro_usd, 1000020);
    /* A day with nothing spent shows 0 for it, not yesterday's figure. */
    s.mono_ms += 86400000;
    s.unix_ms += 86400000;
    update(ws, &s, &snap);
    assert_string_equal(snap.cost_day, "2030-01-02");
    assert_int_equal(snap.cost_today_micro_usd, 0);
    aq_ws_destroy(ws);
}

/* ---- budgets through the hook ---- */

typedef struct fake_budget {
    const char *tenant, *type;
    int64_t remaining;
} fake_budget;

typedef struct fake_budgets {
    const fake_budget *rows;
    size_t n;
    size_t calls;
} fake_budgets;

static void fake_each(const void *ctx, aq_budget_each_fn row, void *arg)
{
    fake_budgets *fb = (fake_budgets *)ctx;
    fb->calls++;
    for (size_t i = 0; i < fb->n; i++)
        row(arg, fb->rows[i].tenant, fb->rows[i].type, 1000000, fb->rows[i].remaining);
}

static void test_budgets_hook(void **state)
{
    (void)state;
    char long_tenant[AQ_FLEET_TENANT_MAX + 2];
    memset(long_tenant, 't', sizeof(long_tenant) - 1);
    long_tenant[sizeof(long_tenant) - 1] = '\0';
    const fake_budget rows[] = {
        {"acme", NULL, 900000},
        {"acme", "summarize", 5},  /* a type's budget: not in the snapshot */
        {"beta", "", -25},         /* overspent */
        {long_tenant, NULL, 1},    /* longer than a snapshot carries */
        {"bad\xff", NULL, 1},      /* not UTF-8: would fail the whole encoding */
        {"", NULL, 1},
    };
    fake_budgets fb = {rows, sizeof(rows) / sizeof(rows[0]), 0};
    aq_worker_status *ws = NULL;
    aq_err err;
    aq_ws_config c = {.interval_ms = 1000, .start_mono_ms = T0, .budget_each = fake_each,
                      .budget_ctx = &fb};
    assert_int_equal(aq_ws_new(&c, &ws, &err), AQ_OK);
    aq_fleet_snapshot snap;
    aq_ws_sample s = at(1000);
    update(ws, &s, &snap);
    assert_int_equal(fb.calls, 1);
    assert_int_equal(snap.n_budgets, 2);
    assert_string_equal(snap.budgets[0].tenant, "acme");
    assert_int_equal(snap.budgets[0].remaining_micro_usd, 900000);
    assert_string_equal(snap.budgets[1].tenant, "beta");
    assert_int_equal(snap.budgets[1].remaining_micro_usd, -25);
    snprintf(snap.worker, sizeof(snap.worker), "w1");
    snap.sent_ms = 1;
    aq_buf out;
    aq_buf_init(&out, AQ_FLEET_SNAPSHOT_JSON_MAX);
    assert_int_equal(aq_fleet_snapshot_encode(&snap, &out, &err), AQ_OK);
    aq_buf_free(&out);
    aq_ws_destroy(ws);

    /* More tenants than a snapshot carries: the first AQ_FLEET_BUDGETS_MAX. */
    fake_budget many[AQ_FLEET_BUDGETS_MAX + 8];
    char names[AQ_FLEET_BUDGETS_MAX + 8][16];
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++) {
        snprintf(names[i], sizeof(names[i]), "t%zu", i);
        many[i] = (fake_budget){names[i], NULL, (int64_t)i};
    }
    fb = (fake_budgets){many, sizeof(many) / sizeof(many[0]), 0};
    assert_int_equal(aq_ws_new(&c, &ws, &err), AQ_OK);
    update(ws, &s, &snap);
    assert_int_equal(snap.n_budgets, AQ_FLEET_BUDGETS_MAX);
    assert_string_equal(snap.budgets[AQ_FLEET_BUDGETS_MAX - 1].tenant, "t31");
    aq_ws_destroy(ws);
}

/* ---- aq_ws_fill: the real sources ---- */

static void test_fill_without_sources(void **state)
{
    (void)state;
    aq_worker_status *ws = NULL;
    aq_err err;
    aq_ws_config c = {.interval_ms = 1000, .concurrency = 3};
    assert_int_equal(aq_ws_new(&c, &ws, &err), AQ_OK);
    aq_fleet_snapshot snap;
    aq_fleet_snapshot_init(&snap);
    snprintf(snap.version, sizeof(snap.version), "reporter");
    aq_ws_fill(ws, &snap);
    assert_string_equal(snap.version, "reporter"); /* no version configured: kept */
    assert_int_equal(snap.concurrency, 3);
    assert_int_equal(snap.counters.completed, 0);
    assert_int_equal(snap.window.p50_ms, -1);
    assert_int_equal(snap.queue.pending, -1);
    assert_int_equal(strlen(snap.cost_day), 10);
    aq_ws_destroy(ws);
}

static void test_fill_from_worker_metrics(void **state)
{
    (void)state;
    aq_metrics *reg = NULL;
    aq_worker_metrics *wm = NULL;
    aq_worker_status *ws = NULL;
    aq_err err;
    assert_int_equal(aq_metrics_new(&reg, &err), AQ_OK);
    assert_int_equal(aq_wm_new(reg, NULL, &wm, &err), AQ_OK);
    aq_wm_task_settled(wm, "t", AQ_WM_COMPLETED, 0.3);
    aq_wm_task_settled(wm, "t", AQ_WM_COMPLETED, 0.3);
    aq_wm_task_settled(wm, "t", AQ_WM_ALREADY_DONE, -1);
    aq_wm_llm_response(wm, "m", 200, 0.2);
    aq_wm_llm_response(wm, "m", 429, 0.01);
    aq_wm_llm_response(wm, "m2", 429, 0.01);
    aq_wm_llm_response(wm, "m", 529, 0.01);
    aq_wm_llm_response(wm, "m", 0, -1);
    aq_wm_cache(wm, AQ_WM_CACHE_HIT);
    aq_wm_cache(wm, AQ_WM_CACHE_MISS);
    aq_wm_cache(wm, AQ_WM_CACHE_MISS);
    aq_wm_cache(wm, AQ_WM_CACHE_BYPASS);
    aq_wm_cost(wm, "t", "m", "acme", 1500);
    aq_wm_cost(wm, "t", "m", "beta", 2500);
    aq_wm_cost(wm, "t", "m", "beta", -7); /* refused, like the counter does */
    aq_wm_set_in_progress(wm, 6);
    aq_wm_set_llm_in_flight(wm, 2);

    aq_wm_totals t;
    aq_wm_totals_get(wm, &t);
    assert_int_equal(t.llm_calls, 5);
    assert_int_equal(t.responses_429, 2);
    assert_int_equal(t.responses_529, 1);
    assert_int_equal(t.cache_hits, 1);
    assert_int_equal(t.cache_misses, 2);
    assert_int_equal(t.cost_micro_usd, 4000);
    assert_int_equal(t.in_progress, 6);
    assert_int_equal(t.llm_in_flight, 2);
    aq_wm_totals_get(NULL, &t);
    assert_int_equal(t.llm_calls, 0);
    assert_int_equal(t.cost_micro_usd, 0);

    aq_ws_config c = {.wm = wm, .interval_ms = 1000, .concurrency = 16};
    assert_int_equal(aq_ws_new(&c, &ws, &err), AQ_OK);
    aq_fleet_snapshot snap;
    aq_fleet_snapshot_init(&snap);
    aq_ws_fill(ws, &snap);
    assert_int_equal(snap.owned, 6); /* no pipeline: the gauge */
    assert_int_equal(snap.llm_in_flight, 2);
    assert_int_equal(snap.counters.llm_calls, 5);
    assert_int_equal(snap.counters.responses_429, 2);
    assert_int_equal(snap.counters.responses_529, 1);
    assert_int_equal(snap.counters.cache_hits, 1);
    assert_int_equal(snap.counters.cache_misses, 2);
    assert_int_equal(snap.cost_today_micro_usd, 4000);
    assert_int_equal(snap.window.llm_calls, 5);
    assert_true(snap.window.share_429 == 0.4);
    /* Two tasks at 0.3 s: both in (0.25, 0.5]. */
    assert_int_equal(snap.window.p50_ms, 375);
    assert_in_range(snap.window.p99_ms, 497, 498); /* 497.5, rounded */
    aq_ws_destroy(ws);
    aq_wm_destroy(wm);
    aq_metrics_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_refuses_no_interval),
        cmocka_unit_test(test_young_worker),
        cmocka_unit_test(test_first_snapshot_at_start),
        cmocka_unit_test(test_window_slides),
        cmocka_unit_test(test_short_interval_caps_ring),
        cmocka_unit_test(test_counters_never_negative),
        cmocka_unit_test(test_queue_trend),
        cmocka_unit_test(test_cost_day),
        cmocka_unit_test(test_budgets_hook),
        cmocka_unit_test(test_fill_without_sources),
        cmocka_unit_test(test_fill_from_worker_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
