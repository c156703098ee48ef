/* The metrics registry: exact exposition text (escaping, histograms),
 * label folding and the series cap, bucket placement, quantiles from
 * snapshots and their deltas, many series, the worker's families, and a
 * micro-benchmark of the update paths (printed, in ns per update). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "metrics/metrics.h"
#include "pipeline/worker_metrics.h"

static aq_metrics *new_registry(void)
{
    aq_metrics *m = NULL;
    aq_err err;
    assert_int_equal(aq_metrics_new(&m, &err), AQ_OK);
    return m;
}

static aq_mfamily *family(aq_metrics *m, aq_metric_desc d)
{
    aq_mfamily *f = NULL;
    aq_err err;
    aq_status st = aq_metrics_family(m, &d, &f, &err);
    if (st != AQ_OK)
        fail_msg("family %s: %s", d.name, err.msg);
    return f;
}

/* The rendered text (caller frees). */
static char *render(aq_metrics *m)
{
    aq_buf b;
    aq_err err;
    aq_buf_init(&b, AQ_METRICS_EXPOSITION_MAX);
    assert_int_equal(aq_metrics_render(m, &b, &err), AQ_OK);
    char *s = aq_buf_take(&b, NULL);
    return s ? s : strdup("");
}

static void test_exposition_exact(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_mfamily *c = family(m, (aq_metric_desc){"x_requests_total", "Requests, by \\path\nand code.",
                                               AQ_METRIC_COUNTER, 2, {"path", "code"}, {0}, NULL, 0});
    aq_mfamily *g = family(m, (aq_metric_desc){"x_up", "Up.", AQ_METRIC_GAUGE, 0, {0}, {0}, NULL, 0});
    static const double b[] = {0.1, 1, 2.5};
    aq_mfamily *h = family(m, (aq_metric_desc){"x_seconds", "Latency.", AQ_METRIC_HISTOGRAM, 1,
                                               {"op"}, {0}, b, 3});
    aq_mfamily_add(c, AQ_LV("/a", "200"), 1);
    aq_mfamily_add(c, AQ_LV("/a", "200"), 2);
    aq_mfamily_add(c, AQ_LV("q\"uo\\te\nnl", "500"), 0.25);
    aq_mfamily_add(c, AQ_LV(NULL, "error"), 1);
    aq_mfamily_add(c, AQ_LV("/a", "200"), -5);   /* counters never go down */
    aq_mfamily_add(c, AQ_LV("/a", "200"), NAN);  /* nor become NaN */
    aq_mfamily_set(g, NULL, 1);
    aq_mfamily_observe(h, AQ_LV("get"), 0.05);
    aq_mfamily_observe(h, AQ_LV("get"), 0.1);  /* on a bound: that bucket */
    aq_mfamily_observe(h, AQ_LV("get"), 2);
    aq_mfamily_observe(h, AQ_LV("get"), 1000); /* +Inf only */
    aq_mfamily_observe(h, AQ_LV("put"), 1e-9);
    char *s = render(m);
    const char *want =
        "# HELP x_requests_total Requests, by \\\\path\\nand code.\n"
        "# TYPE x_requests_total counter\n"
        "x_requests_total{path=\"/a\",code=\"200\"} 3\n"
        "x_requests_total{path=\"q\\\"uo\\\\te\\nnl\",code=\"500\"} 0.25\n"
        "x_requests_total{path=\"\",code=\"error\"} 1\n"
        "# HELP x_up Up.\n"
        "# TYPE x_up gauge\n"
        "x_up 1\n"
        "# HELP x_seconds Latency.\n"
        "# TYPE x_seconds histogram\n"
        "x_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n"
        "x_seconds_bucket{op=\"get\",le=\"1\"} 2\n"
        "x_seconds_bucket{op=\"get\",le=\"2.5\"} 3\n"
        "x_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
        "x_seconds_sum{op=\"get\"} 1002.15\n"
        "x_seconds_count{op=\"get\"} 4\n"
        "x_seconds_bucket{op=\"put\",le=\"0.1\"} 1\n"
        "x_seconds_bucket{op=\"put\",le=\"1\"} 1\n"
        "x_seconds_bucket{op=\"put\",le=\"2.5\"} 1\n"
        "x_seconds_bucket{op=\"put\",le=\"+Inf\"} 1\n"
        "x_seconds_sum{op=\"put\"} 1e-09\n"
        "x_seconds_count{op=\"put\"} 1\n";
    assert_string_equal(s, want);
    free(s);
    aq_metrics_destroy(m);
}

static void test_special_values_and_gauges(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_mfamily *g = family(m, (aq_metric_desc){"g", "", AQ_METRIC_GAUGE, 1, {"k"}, {0}, NULL, 0});
    aq_mfamily_set(g, AQ_LV("nan"), NAN);
    aq_mfamily_set(g, AQ_LV("inf"), INFINITY);
    aq_mfamily_set(g, AQ_LV("ninf"), -INFINITY);
    aq_mfamily_set(g, AQ_LV("neg"), -3);
    aq_mfamily_add(g, AQ_LV("neg"), -0.5);
    aq_mfamily_set(g, AQ_LV("big"), 12345678901234.0);
    aq_mfamily_set(g, AQ_LV("third"), 1.0 / 3);
    aq_mfamily_set(g, AQ_LV("tiny"), 0.1);
    char *s = render(m);
    assert_string_equal(s, "# HELP g \n# TYPE g gauge\n"
                           "g{k=\"nan\"} NaN\ng{k=\"inf\"} +Inf\ng{k=\"ninf\"} -Inf\n"
                           "g{k=\"neg\"} -3.5\ng{k=\"big\"} 12345678901234\n"
                           "g{k=\"third\"} 0.33333333333333331\ng{k=\"tiny\"} 0.1\n");
    free(s);
    /* Wrong-type updates are ignored. */
    aq_mseries *gs = aq_mfamily_series(g, AQ_LV("neg"));
    aq_mseries_observe(gs, 1);
    assert_true(aq_mseries_value(gs) == -3.5);
    aq_hist_snapshot snap;
    assert_false(aq_mseries_hist_snapshot(gs, &snap));
    aq_mseries_add(NULL, 1); /* NULL handles are ignored */
    aq_metrics_destroy(m);
}

static void test_bad_descs(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_mfamily *f = NULL;
    aq_err err;
    static const double b[] = {1, 0.5};
    const aq_metric_desc bad[] = {
        {"9bad", "", AQ_METRIC_COUNTER, 0, {0}, {0}, NULL, 0},
        {"", "", AQ_METRIC_COUNTER, 0, {0}, {0}, NULL, 0},
        {"a-b", "", AQ_METRIC_COUNTER, 0, {0}, {0}, NULL, 0},
        {"ok", "", AQ_METRIC_COUNTER, 1, {"__x"}, {0}, NULL, 0},
        {"ok", "", AQ_METRIC_COUNTER, 1, {"a:b"}, {0}, NULL, 0},
        {"ok", "", AQ_METRIC_COUNTER, 2, {"a", "a"}, {0}, NULL, 0},
        {"ok", "", AQ_METRIC_COUNTER, 5, {"a", "b", "c", "d"}, {0}, NULL, 0},
        {"ok", "", AQ_METRIC_HISTOGRAM, 1, {"le"}, {0}, b, 1},
        {"ok", "", AQ_METRIC_HISTOGRAM, 0, {0}, {0}, b, 2},  /* not ascending */
        {"ok", "", AQ_METRIC_HISTOGRAM, 0, {0}, {0}, NULL, 0}, /* no buckets */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(aq_metrics_family(m, &bad[i], &f, &err), AQ_INVALID_ARG);
    aq_metric_desc ok = {"ns:ok_total", "", AQ_METRIC_COUNTER, 1, {"a"}, {0}, NULL, 0};
    assert_int_equal(aq_metrics_family(m, &ok, &f, &err), AQ_OK);
    assert_ptr_equal(aq_metrics_find(m, "ns:ok_total"), f);
    assert_int_equal(aq_metrics_family(m, &ok, &f, &err), AQ_INVALID_ARG); /* twice */
    assert_null(aq_metrics_find(m, "nope"));
    aq_metrics_destroy(m);
    aq_metrics_destroy(NULL);
}

static void test_folding(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_mfamily *f = family(m, (aq_metric_desc){"t_total", "", AQ_METRIC_COUNTER, 2,
                                               {"tenant", "kind"}, {2, 0}, NULL, 0});
    aq_mfamily_add(f, AQ_LV("acme", "a"), 1);
    aq_mfamily_add(f, AQ_LV("_other", "a"), 1); /* "_other" is not admitted: no slot used */
    aq_mfamily_add(f, AQ_LV("beta", "a"), 1);
    aq_mfamily_add(f, AQ_LV("gamma", "a"), 1);  /* third tenant: folded */
    aq_mfamily_add(f, AQ_LV("delta", "a"), 1);  /* folded */
    aq_mfamily_add(f, AQ_LV("acme", "a"), 1);   /* admitted earlier: its own series still */
    aq_mfamily_add(f, AQ_LV("delta", "b"), 1);  /* folded, other kind */
    char longv[AQ_METRICS_VALUE_MAX + 2];
    memset(longv, 'x', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    aq_mfamily_add(f, AQ_LV("acme", longv), 1); /* too long: folded although kind has room */
    char *s = render(m);
    assert_string_equal(s, "# HELP t_total \n# TYPE t_total counter\n"
                           "t_total{tenant=\"acme\",kind=\"a\"} 2\n"
                           "t_total{tenant=\"_other\",kind=\"a\"} 3\n"
                           "t_total{tenant=\"beta\",kind=\"a\"} 1\n"
                           "t_total{tenant=\"_other\",kind=\"b\"} 1\n"
                           "t_total{tenant=\"acme\",kind=\"_other\"} 1\n");
    free(s);
    assert_int_equal(aq_mfamily_series_count(f), 5);
    /* Handles are stable and shared by equal (folded) label values. */
    assert_ptr_equal(aq_mfamily_series(f, AQ_LV("zeta", "a")), aq_mfamily_series(f, AQ_LV("_other", "a")));
    assert_ptr_equal(aq_mfamily_series(f, AQ_LV("acme", "a")), aq_mfamily_series(f, AQ_LV("acme", "a")));
    aq_metrics_destroy(m);
}

static void test_series_cap(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_mfamily *f = family(m, (aq_metric_desc){"big_total", "", AQ_METRIC_COUNTER, 2, {"a", "b"},
                                               {400, 400}, NULL, 0});
    char a[16], b[16];
    size_t n = 0;
    for (int i = 0; i < 320; i++) {
        for (int j = 0; j < 320; j++) {
            snprintf(a, sizeof(a), "a%d", i);
            snprintf(b, sizeof(b), "b%d", j);
            aq_mfamily_add(f, AQ_LV(a, b), 1);
            n++;
        }
    }
    /* AQ_METRICS_SERIES_MAX real series, then one all-"_other" for the rest. */
    assert_int_equal(aq_mfamily_series_count(f), AQ_METRICS_SERIES_MAX + 1);
    aq_mseries *other = aq_mfamily_series(f, AQ_LV("_other", "_other"));
    assert_true(aq_mseries_value(other) == (double)(n - AQ_METRICS_SERIES_MAX));
    aq_metrics_destroy(m);
}

static void test_many_series(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_mfamily *f = family(m, (aq_metric_desc){"many_total", "", AQ_METRIC_COUNTER, 3,
                                               {"type", "model", "tenant"}, {200, 64, 100}, NULL, 0});
    char t[16], mo[16], te[16];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 200; i++) {
            for (int j = 0; j < 50; j++) {
                snprintf(t, sizeof(t), "type%d", i);
                snprintf(mo, sizeof(mo), "model%d", j % 5);
                snprintf(te, sizeof(te), "tenant%d", j);
                aq_mfamily_add(f, AQ_LV(t, mo, te), 1);
            }
        }
    }
    assert_int_equal(aq_mfamily_series_count(f), 200 * 50);
    assert_true(aq_mseries_value(aq_mfamily_series(f, AQ_LV("type7", "model3", "tenant8"))) == 3);
    char *s = render(m);
    size_t lines = 0;
    for (const char *p = s; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + 200 * 50);
    assert_non_null(strstr(s, "many_total{type=\"type199\",model=\"model4\",tenant=\"tenant49\"} 3\n"));
    free(s);
    aq_metrics_destroy(m);
}

typedef struct collect_ctx {
    aq_mfamily *g;
    int calls;
} collect_ctx;

static void collect_depth(void *arg)
{
    collect_ctx *c = arg;
    c->calls++;
    aq_mfamily_set(c->g, NULL, 100 + c->calls);
}

static void test_collect_and_output_cap(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_err err;
    collect_ctx c = {family(m, (aq_metric_desc){"depth", "", AQ_METRIC_GAUGE, 0, {0}, {0}, NULL, 0}), 0};
    assert_int_equal(aq_metrics_on_collect(m, collect_depth, &c, &err), AQ_OK);
    char *s = render(m);
    assert_string_equal(s, "# HELP depth \n# TYPE depth gauge\ndepth 101\n");
    free(s);
    s = render(m);
    assert_string_equal(s, "# HELP depth \n# TYPE depth gauge\ndepth 102\n");
    free(s);
    /* A full buffer is AQ_TOO_BIG, not a truncated exposition. */
    aq_buf b;
    aq_buf_init(&b, 20);
    assert_int_equal(aq_metrics_render(m, &b, &err), AQ_TOO_BIG);
    aq_buf_free(&b);
    aq_metrics_destroy(m);
}

static void test_histogram_buckets_and_snapshots(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_mfamily *h = family(m, (aq_metric_desc){"lat_seconds", "", AQ_METRIC_HISTOGRAM, 1, {"model"},
                                               {0}, aq_metrics_buckets_llm, aq_metrics_buckets_llm_n});
    /* The workload's buckets: sub-ms to 120 s, ascending, within the cap. */
    assert_true(aq_metrics_buckets_llm_n <= AQ_METRICS_MAX_BUCKETS);
    assert_true(aq_metrics_buckets_task_n <= AQ_METRICS_MAX_BUCKETS);
    assert_true(aq_metrics_buckets_llm[0] < 0.001);
    assert_true(aq_metrics_buckets_llm[aq_metrics_buckets_llm_n - 1] == 120);
    assert_true(aq_metrics_buckets_task[aq_metrics_buckets_task_n - 1] == 600);
    for (size_t i = 0; i < aq_metrics_buckets_llm_n; i++)
        aq_mfamily_observe(h, AQ_LV("a"), aq_metrics_buckets_llm[i]);
    aq_mfamily_observe(h, AQ_LV("b"), 121);
    aq_mfamily_observe(h, AQ_LV("b"), NAN); /* ignored */
    aq_hist_snapshot sa, all;
    assert_true(aq_mseries_hist_snapshot(aq_mfamily_series(h, AQ_LV("a")), &sa));
    for (size_t i = 0; i < sa.n_buckets; i++)
        assert_int_equal(sa.cum[i], i + 1); /* each bound lands in its own bucket */
    assert_int_equal(sa.cum[sa.n_buckets], aq_metrics_buckets_llm_n);
    assert_true(aq_mfamily_hist_snapshot(h, &all));
    assert_int_equal(all.cum[all.n_buckets], aq_metrics_buckets_llm_n + 1);
    assert_int_equal(all.cum[all.n_buckets - 1], aq_metrics_buckets_llm_n);
    assert_true(fabs(all.sum - sa.sum - 121) < 1e-9);
    aq_metrics_destroy(m);
}

static aq_hist_snapshot snap_of(const double *le, size_t n, const uint64_t *per_bucket)
{
    aq_hist_snapshot s;
    memset(&s, 0, sizeof(s));
    s.n_buckets = n;
    uint64_t cum = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n)
            s.le[i] = le[i];
        cum += per_bucket[i];
        s.cum[i] = cum;
    }
    return s;
}

static void test_quantiles(void **state)
{
    (void)state;
    static const double le[] = {1, 2, 4, 8};
    /* 100 observations: 10 in (0,1], 40 in (1,2], 40 in (2,4], 10 in (4,8]. */
    aq_hist_snapshot s = snap_of(le, 4, (const uint64_t[]){10, 40, 40, 10, 0});
    assert_true(fabs(aq_hist_quantile(&s, 0.5) - 2.0) < 1e-9);   /* rank 50: top of (1,2] */
    assert_true(fabs(aq_hist_quantile(&s, 0.05) - 0.5) < 1e-9);  /* rank 5 of 10 in (0,1] */
    assert_true(fabs(aq_hist_quantile(&s, 0.7) - 3.0) < 1e-9);   /* rank 70: 20 of 40 in (2,4] */
    assert_true(fabs(aq_hist_quantile(&s, 0.99) - 7.6) < 1e-9);  /* rank 99: 9 of 10 in (4,8] */
    assert_true(fabs(aq_hist_quantile(&s, 1.0) - 8.0) < 1e-9);
    assert_true(isnan(aq_hist_quantile(&s, 1.5)));
    assert_true(isnan(aq_hist_quantile(&s, -0.1)));
    assert_true(isnan(aq_hist_quantile(&s, NAN)));
    /* Ranks in +Inf: the highest finite bound, as histogram_quantile does. */
    aq_hist_snapshot inf = snap_of(le, 4, (const uint64_t[]){0, 0, 0, 1, 9});
    assert_true(aq_hist_quantile(&inf, 0.99) == 8);
    /* Empty buckets before the first observation are skipped for q = 0. */
    aq_hist_snapshot late = snap_of(le, 4, (const uint64_t[]){0, 0, 5, 0, 0});
    assert_true(aq_hist_quantile(&late, 0) == 2);
    aq_hist_snapshot empty = snap_of(le, 4, (const uint64_t[]){0, 0, 0, 0, 0});
    assert_true(isnan(aq_hist_quantile(&empty, 0.5)));

    /* A window: what happened between two snapshots. */
    aq_hist_snapshot before = snap_of(le, 4, (const uint64_t[]){1000, 0, 0, 0, 0});
    aq_hist_snapshot now = snap_of(le, 4, (const uint64_t[]){1000, 0, 0, 100, 0});
    now.sum = 700;
    before.sum = 300;
    aq_hist_snapshot d;
    assert_true(aq_hist_delta(&now, &before, &d));
    assert_int_equal(d.cum[4], 100);
    assert_true(d.sum == 400);
    /* Over the window every call took 4..8 s, though the lifetime p50 is < 1 s. */
    assert_true(aq_hist_quantile(&now, 0.5) < 1);
    assert_true(fabs(aq_hist_quantile(&d, 0.5) - 6.0) < 1e-9);
    /* A reset (restarted worker): the newer snapshot is the delta. */
    assert_true(aq_hist_delta(&before, &now, &d));
    assert_int_equal(d.cum[4], 1000);
    /* Different buckets do not subtract. */
    static const double le2[] = {1, 2, 4, 9};
    aq_hist_snapshot other = snap_of(le2, 4, (const uint64_t[]){1, 0, 0, 0, 0});
    assert_false(aq_hist_delta(&now, &other, &d));

    /* End to end through a registry. */
    aq_metrics *m = new_registry();
    aq_mfamily *h = family(m, (aq_metric_desc){"q_seconds", "", AQ_METRIC_HISTOGRAM, 0, {0}, {0},
                                               aq_metrics_buckets_llm, aq_metrics_buckets_llm_n});
    aq_mseries *hs = aq_mfamily_series(h, NULL);
    for (int i = 1; i <= 1000; i++)
        aq_mseries_observe(hs, i * 0.01); /* uniform 0.01 .. 10 s */
    aq_hist_snapshot hh;
    assert_true(aq_mfamily_hist_snapshot(h, &hh));
    double p50 = aq_hist_quantile(&hh, 0.5), p99 = aq_hist_quantile(&hh, 0.99);
    assert_true(fabs(p50 - 5.0) < 0.3);
    assert_true(fabs(p99 - 9.9) < 0.3);
    aq_metrics_destroy(m);
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static void test_worker_metrics(void **state)
{
    (void)state;
    aq_metrics *m = new_registry();
    aq_worker_metrics *wm = NULL;
    aq_err err;
    aq_wm_config wc = {.version = "1.2.3", .worker = "w\"1", .max_tenants = 2};
    assert_int_equal(aq_wm_new(m, &wc, &wm, &err), AQ_OK);
    aq_wm_task_settled(wm, "summarize", AQ_WM_COMPLETED, 1.5);
    aq_wm_task_settled(wm, "summarize", AQ_WM_COMPLETED, 0.2);
    aq_wm_task_settled(wm, "summarize", AQ_WM_ALREADY_DONE, -1);
    aq_wm_task_settled(wm, "classify", AQ_WM_DEAD_LETTERED, 3);
    aq_wm_task_settled(wm, "classify", AQ_WM_OUTCOME_COUNT, 3); /* ignored */
    aq_wm_llm_response(wm, "claude-sonnet-4-5", 200, 0.8);
    aq_wm_llm_response(wm, "claude-sonnet-4-5", 429, 0.01);
    aq_wm_llm_response(wm, "claude-sonnet-4-5", 0, -1);
    aq_wm_llm_stream(wm, "claude-sonnet-4-5", 0.3, 55);
    aq_wm_llm_stream(wm, "claude-sonnet-4-5", 1.2, 0); /* tokens/s not measured */
    aq_wm_llm_stream(wm, "claude-sonnet-4-5", -1, 0);  /* no first token: nothing */
    aq_wm_retry(wm, "summarize");
    aq_wm_deferral(wm, AQ_WM_DEFER_OVERLOADED);
    aq_wm_cache(wm, AQ_WM_CACHE_HIT);
    aq_wm_cache(wm, AQ_WM_CACHE_MISS);
    aq_wm_tokens(wm, "summarize", "claude-sonnet-4-5", 100, 20, 0, 7);
    aq_wm_cost(wm, "summarize", "claude-sonnet-4-5", "acme", 1500);      /* $0.0015 */
    aq_wm_cost(wm, "summarize", "claude-sonnet-4-5", "acme", 2500);
    aq_wm_cost(wm, "summarize", "claude-sonnet-4-5", "beta", 1000000);
    aq_wm_cost(wm, "summarize", "claude-sonnet-4-5", "gamma", 1000000);  /* third tenant: folded */
    aq_wm_routed(wm, "claude-haiku-4-5", "short_prompts");
    aq_wm_ratelimit_remaining(wm, 1, "sonnet", "requests", 3999);
    aq_wm_budget(wm, "acme", 25000000, -250000);
    aq_wm_set_in_progress(wm, 12);
    aq_wm_set_llm_in_flight(wm, 10);
    char *s = render(m);
    const char *want[] = {
        "agentq_tasks_total{type=\"summarize\",outcome=\"completed\"} 2",
        "agentq_tasks_total{type=\"summarize\",outcome=\"already_done\"} 1",
        "agentq_tasks_total{type=\"classify\",outcome=\"dead_lettered\"} 1",
        "agentq_queue_pending NaN",
        "agentq_dlq_messages NaN",
        "agentq_tasks_in_progress 12",
        "agentq_llm_in_flight 10",
        "agentq_task_duration_seconds_bucket{type=\"summarize\",le=\"0.25\"} 1",
        "agentq_task_duration_seconds_bucket{type=\"summarize\",le=\"1.5\"} 2",
        "agentq_task_duration_seconds_bucket{type=\"summarize\",le=\"600\"} 2",
        "agentq_task_duration_seconds_count{type=\"summarize\"} 2",
        "agentq_llm_request_duration_seconds_count{model=\"claude-sonnet-4-5\"} 2",
        "agentq_llm_responses_total{model=\"claude-sonnet-4-5\",code=\"200\"} 1",
        "agentq_llm_responses_total{model=\"claude-sonnet-4-5\",code=\"429\"} 1",
        "agentq_llm_responses_total{model=\"claude-sonnet-4-5\",code=\"error\"} 1",
        "agentq_llm_time_to_first_token_seconds_bucket{model=\"claude-sonnet-4-5\",le=\"0.5\"} 1",
        "agentq_llm_time_to_first_token_seconds_count{model=\"claude-sonnet-4-5\"} 2",
        "agentq_llm_output_tokens_per_second_bucket{model=\"claude-sonnet-4-5\",le=\"50\"} 0",
        "agentq_llm_output_tokens_per_second_bucket{model=\"claude-sonnet-4-5\",le=\"60\"} 1",
        "agentq_llm_output_tokens_per_second_count{model=\"claude-sonnet-4-5\"} 1",
        "agentq_llm_retries_total{type=\"summarize\"} 1",
        "agentq_llm_deferrals_total{reason=\"rate_limited\"} 0",
        "agentq_llm_deferrals_total{reason=\"overloaded\"} 1",
        "agentq_cache_requests_total{result=\"hit\"} 1",
        "agentq_cache_requests_total{result=\"bypass\"} 0",
        "agentq_tokens_total{kind=\"input\",type=\"summarize\",model=\"claude-sonnet-4-5\"} 100",
        "agentq_tokens_total{kind=\"output\",type=\"summarize\",model=\"claude-sonnet-4-5\"} 20",
        "agentq_tokens_total{kind=\"cache_read\",type=\"summarize\",model=\"claude-sonnet-4-5\"} 7",
        "agentq_cost_usd_total{type=\"summarize\",model=\"claude-sonnet-4-5\",tenant=\"acme\"} 0.004",
        "agentq_cost_usd_total{type=\"summarize\",model=\"claude-sonnet-4-5\",tenant=\"beta\"} 1",
        "agentq_cost_usd_total{type=\"summarize\",model=\"claude-sonnet-4-5\",tenant=\"_other\"} 1",
        "agentq_routed_total{model=\"claude-haiku-4-5\",rule=\"short_prompts\"} 1",
        "agentq_ratelimit_remaining{key=\"1\",model_class=\"sonnet\",dimension=\"requests\"} 3999",
        "agentq_budget_remaining_usd{tenant=\"acme\"} -0.25",
        "agentq_budget_limit_usd{tenant=\"acme\"} 25",
        "agentq_build_info{version=\"1.2.3\",worker=\"w\\\"1\"} 1",
        "# TYPE agentq_task_duration_seconds histogram",
        "# TYPE agentq_tasks_total counter",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!has_line(s, want[i]))
            fail_msg("missing line: %s\n--- got:\n%s", want[i], s);
    assert_null(strstr(s, "kind=\"cache_write\"")); /* zero token counts make no series */
    free(s);
    aq_hist_snapshot h;
    assert_true(aq_wm_task_duration_snapshot(wm, &h));
    assert_int_equal(h.cum[h.n_buckets], 3);
    assert_true(aq_wm_llm_duration_snapshot(wm, &h));
    assert_int_equal(h.cum[h.n_buckets], 2);
    aq_wm_set_queue(wm, 5, 2, 0);
    s = render(m);
    assert_true(has_line(s, "agentq_queue_pending 5"));
    assert_true(has_line(s, "agentq_queue_ack_pending 2"));
    assert_true(has_line(s, "agentq_dlq_messages 0"));
    free(s);
    /* NULL metrics: every update is a no-op. */
    aq_wm_task_settled(NULL, "x", AQ_WM_COMPLETED, 1);
    aq_wm_llm_response(NULL, "m", 200, 1);
    aq_wm_llm_stream(NULL, "m", 1, 1);
    aq_wm_cost(NULL, "t", "m", "x", 1);
    assert_false(aq_wm_task_duration_snapshot(NULL, &h));
    aq_wm_destroy(wm);
    aq_wm_destroy(NULL);
    aq_metrics_destroy(m);
}

static void test_print_families(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    aq_wm_print_families(f);
    fclose(f);
    assert_non_null(strstr(text, "agentq_tasks_total counter "));
    assert_non_null(strstr(text, "agentq_task_duration_seconds histogram "));
    assert_non_null(strstr(text, "agentq_build_info gauge "));
    assert_non_null(strstr(text, "agentq_parked_tasks gauge "));
    assert_non_null(strstr(text, "agentq_agent_run_steps histogram "));
    assert_non_null(strstr(text, "agentq_tool_calls_total counter "));
    assert_non_null(strstr(text, "agentq_llm_time_to_first_token_seconds histogram "));
    assert_non_null(strstr(text, "agentq_llm_output_tokens_per_second histogram "));
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 30);
    free(text);
}

/* ns per update on the paths the pipeline uses, printed for the report. */
static void test_bench_updates(void **state)
{
    (void)state;
    enum { N = 2000000 };
    aq_metrics *m = new_registry();
    aq_worker_metrics *wm = NULL;
    aq_err err;
    assert_int_equal(aq_wm_new(m, &(aq_wm_config){"v", "w", 100}, &wm, &err), AQ_OK);
    aq_mfamily *c = aq_metrics_find(m, "agentq_tasks_total");
    aq_mseries *h = aq_mfamily_series(c, AQ_LV("summarize", "completed"));
    static const char *const types[8] = {"summarize", "classify", "extract", "translate",
                                         "chat",      "embed",    "rank",    "label"};
    int64_t t0 = aq_mono_us();
    for (int i = 0; i < N; i++)
        aq_mseries_add(h, 1);
    int64_t t1 = aq_mono_us();
    for (int i = 0; i < N; i++)
        aq_mfamily_add(c, AQ_LV(types[i & 7], "completed"), 1);
    int64_t t2 = aq_mono_us();
    for (int i = 0; i < N; i++)
        aq_wm_llm_response(wm, "claude-sonnet-4-5", 200, (i & 1023) * 0.001);
    int64_t t3 = aq_mono_us();
    /* What one completed task costs, all calls together. */
    for (int i = 0; i < N / 10; i++) {
        const char *t = types[i & 7];
        aq_wm_llm_response(wm, "claude-sonnet-4-5", 200, 0.5);
        aq_wm_tokens(wm, t, "claude-sonnet-4-5", 100, 20, 0, 0);
        aq_wm_cost(wm, t, "claude-sonnet-4-5", "acme", 300);
        aq_wm_cache(wm, AQ_WM_CACHE_MISS);
        aq_wm_routed(wm, "claude-sonnet-4-5", "default");
        aq_wm_task_settled(wm, t, AQ_WM_COMPLETED, 0.6);
        aq_wm_set_in_progress(wm, i & 255);
        aq_wm_set_llm_in_flight(wm, i & 255);
    }
    int64_t t4 = aq_mono_us();
    assert_true(aq_mseries_value(h) >= N);
    /* A scrape of a busy worker: 200 types x 4 models x 10 tenants. */
    char ty[16], mo[16], te[16];
    for (int i = 0; i < 200 * 4 * 10; i++) {
        snprintf(ty, sizeof(ty), "type%d", i % 200);
        snprintf(mo, sizeof(mo), "model%d", i / 200 % 4);
        snprintf(te, sizeof(te), "tenant%d", i / 800);
        aq_wm_llm_response(wm, mo, 200, 0.5);
        aq_wm_tokens(wm, ty, mo, 100, 20, 5, 5);
        aq_wm_cost(wm, ty, mo, te, 300);
        aq_wm_task_settled(wm, ty, AQ_WM_COMPLETED, 0.6);
    }
    aq_buf out;
    aq_buf_init(&out, AQ_METRICS_EXPOSITION_MAX);
    int64_t t5 = aq_mono_us();
    assert_int_equal(aq_metrics_render(m, &out, &err), AQ_OK);
    int64_t t6 = aq_mono_us();
    printf("# metrics bench: a scrape of %zu bytes (%zu cost series) rendered in %.1f ms\n",
           out.len, aq_mfamily_series_count(aq_metrics_find(m, "agentq_cost_usd_total")),
           (t6 - t5) / 1000.0);
    aq_buf_free(&out);
    printf("# metrics bench: handle add %.1f ns, 2-label add %.1f ns, llm_response (counter + "
           "histogram) %.1f ns, one task's updates %.0f ns (%.2f%% of a core at 12,000 tasks/s)\n",
           (t1 - t0) * 1000.0 / N, (t2 - t1) * 1000.0 / N, (t3 - t2) * 1000.0 / N,
           (t4 - t3) * 1000.0 / (N / 10), (t4 - t3) * 1000.0 / (N / 10) * 12000 / 1e9 * 100);
    aq_wm_destroy(wm);
    aq_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition_exact),
        cmocka_unit_test(test_special_values_and_gauges),
        cmocka_unit_test(test_bad_descs),
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_series_cap),
        cmocka_unit_test(test_many_series),
        cmocka_unit_test(test_collect_and_output_cap),
        cmocka_unit_test(test_histogram_buckets_and_snapshots),
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_worker_metrics),
        cmocka_unit_test(test_print_families),
        cmocka_unit_test(test_bench_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
