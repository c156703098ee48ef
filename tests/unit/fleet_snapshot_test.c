#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first */
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_snapshot.h"

/* A snapshot with every field set to something distinct. */
static void full(aq_fleet_snapshot *s)
{
    aq_fleet_snapshot_init(s);
    snprintf(s->worker, sizeof(s->worker), "worker-\xc3\xa9.1");
    snprintf(s->version, sizeof(s->version), "0.1.0");
    s->pid = 4242;
    s->started_ms = 1700000000000LL;
    s->sent_ms = 1700000005000LL;
    s->interval_ms = 5000;
    s->stopping = true;
    s->concurrency = 64;
    s->owned = 12;
    s->llm_in_flight = 10;
    s->counters = (aq_fleet_counters){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    s->window = (aq_fleet_window){.completed = 600,
                                  .completed_per_s = 10.5,
                                  .p50_ms = 800,
                                  .p99_ms = 4100,
                                  .llm_calls = 700,
                                  .responses_429 = 70,
                                  .share_429 = 0.1};
    s->queue = (aq_fleet_queue){.probed_ms = 1700000004000LL,
                                .pending = 900,
                                .ack_pending = 64,
                                .dlq_messages = 3,
                                .pending_60s_ago = 1200};
    snprintf(s->cost_day, sizeof(s->cost_day), "2023-11-14");
    s->cost_today_micro_usd = 12345678;
    s->n_budgets = 2;
    snprintf(s->budgets[0].tenant, sizeof(s->budgets[0].tenant), "acme");
    s->budgets[0].remaining_micro_usd = 5000000;
    snprintf(s->budgets[1].tenant, sizeof(s->budgets[1].tenant), "overspent");
    s->budgets[1].remaining_micro_usd = -42;
}

static aq_status decode_str(const char *text, aq_fleet_snapshot *out, aq_err *err)
{
    return aq_fleet_snapshot_decode(text, strlen(text), out, err);
}

static void test_round_trip(void **state)
{
    (void)state;
    aq_fleet_snapshot a, b;
    aq_buf buf;
    aq_err err;
    full(&a);
    aq_buf_init(&buf, AQ_FLEET_SNAPSHOT_JSON_MAX);
    assert_int_equal(aq_fleet_snapshot_encode(&a, &buf, &err), AQ_OK);
    assert_true(buf.len < 2048);
    memset(&b, 0x5a, sizeof(b));
    assert_int_equal(aq_fleet_snapshot_decode(buf.data, buf.len, &b, &err), AQ_OK);
    assert_int_equal(b.v, AQ_FLEET_SNAPSHOT_VERSION);
    assert_string_equal(b.worker, a.worker);
    assert_string_equal(b.version, "0.1.0");
    assert_int_equal(b.pid, 4242);
    assert_int_equal(b.started_ms, a.started_ms);
    assert_int_equal(b.sent_ms, a.sent_ms);
    assert_int_equal(b.interval_ms, 5000);
    assert_true(b.stopping);
    assert_int_equal(b.concurrency, 64);
    assert_int_equal(b.owned, 12);
    assert_int_equal(b.llm_in_flight, 10);
    assert_memory_equal(&b.counters, &a.counters, sizeof(a.counters));
    assert_int_equal(b.window.completed, 600);
    assert_true(b.window.completed_per_s == 10.5);
    assert_int_equal(b.window.p50_ms, 800);
    assert_int_equal(b.window.p99_ms, 4100);
    assert_int_equal(b.window.llm_calls, 700);
    assert_int_equal(b.window.responses_429, 70);
    assert_true(b.window.share_429 == 0.1);
    assert_memory_equal(&b.queue, &a.queue, sizeof(a.queue));
    assert_string_equal(b.cost_day, "2023-11-14");
    assert_int_equal(b.cost_today_micro_usd, 12345678);
    assert_int_equal(b.n_budgets, 2);
    assert_string_equal(b.budgets[1].tenant, "overspent");
    assert_int_equal(b.budgets[1].remaining_micro_usd, -42);
    /* Encoding is deterministic (field order preserved). */
    aq_buf again;
    aq_buf_init(&again, AQ_FLEET_SNAPSHOT_JSON_MAX);
    assert_int_equal(aq_fleet_snapshot_encode(&b, &again, &err), AQ_OK);
    assert_int_equal(again.len, buf.len);
    assert_memory_equal(again.data, buf.data, buf.len);
    aq_buf_free(&again);
    aq_buf_free(&buf);
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    aq_fleet_snapshot s;
    aq_err err;
    assert_int_equal(decode_str("{\"v\":1,\"worker\":\"w\",\"sent_ms\":5}", &s, &err), AQ_OK);
    assert_string_equal(s.worker, "w");
    assert_int_equal(s.window.p50_ms, -1);
    assert_int_equal(s.window.p99_ms, -1);
    assert_int_equal(s.queue.pending, -1);
    assert_int_equal(s.queue.pending_60s_ago, -1);
    assert_int_equal(s.counters.completed, 0);
    assert_int_equal(s.n_budgets, 0);
    assert_false(s.stopping);
    assert_string_equal(s.cost_day, "");
}

static void test_unknown_fields_ignored(void **state)
{
    (void)state;
    aq_fleet_snapshot s;
    aq_err err;
    const char *text = "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"future\":{\"x\":[1,2]},"
                       "\"counters\":{\"completed\":7,\"new_counter\":9},"
                       "\"window\":{\"p99_ms\":100,\"p999_ms\":200},"
                       "\"cost\":{\"budgets\":[{\"tenant\":\"t\",\"remaining_micro_usd\":1,"
                       "\"currency\":\"usd\"}]}}";
    assert_int_equal(decode_str(text, &s, &err), AQ_OK);
    assert_int_equal(s.counters.completed, 7);
    assert_int_equal(s.window.p99_ms, 100);
    assert_int_equal(s.n_budgets, 1);
    assert_string_equal(s.budgets[0].tenant, "t");
}

static void test_version(void **state)
{
    (void)state;
    aq_fleet_snapshot s;
    aq_err err;
    assert_int_equal(decode_str("{\"worker\":\"w\",\"sent_ms\":5}", &s, &err), AQ_INVALID_ARG);
    assert_non_null(strstr(err.msg, "no version"));
    assert_int_equal(decode_str("{\"v\":2,\"worker\":\"w\",\"sent_ms\":5}", &s, &err),
                     AQ_INVALID_ARG);
    assert_non_null(strstr(err.msg, "version 2"));
    assert_int_equal(decode_str("{\"v\":\"1\",\"worker\":\"w\",\"sent_ms\":5}", &s, &err),
                     AQ_INVALID_ARG);
    assert_int_equal(decode_str("{\"v\":-1,\"worker\":\"w\",\"sent_ms\":5}", &s, &err),
                     AQ_INVALID_ARG);
}

static void test_bad_json(void **state)
{
    (void)state;
    aq_fleet_snapshot s;
    aq_err err;
    memset(&s, 0x11, sizeof(s));
    aq_fleet_snapshot before = s;
    static const char *const bad[] = {
        "",
        "not json",
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5",
        "[1,2,3]",
        "42",
        "{\"v\":1,\"sent_ms\":5}",                    /* no worker */
        "{\"v\":1,\"worker\":\"\",\"sent_ms\":5}",    /* empty worker */
        "{\"v\":1,\"worker\":\"w\"}",                 /* no sent_ms */
        "{\"v\":1,\"worker\":7,\"sent_ms\":5}",       /* wrong type */
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5.5}", /* not an integer */
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"counters\":[]}",
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"counters\":{\"completed\":-1}}",
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"window\":{\"share_429\":1.5}}",
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"window\":{\"p99_ms\":-2}}",
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"stopping\":1}",
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"cost\":{\"budgets\":{}}}",
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"cost\":{\"budgets\":[1]}}",
        "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"cost\":{\"budgets\":[{\"remaining_micro_usd\":1}"
        "]}}",
        "{\"v\":1,\"worker\":\"w\\u0000x\",\"sent_ms\":5}",          /* NUL in a name */
        "{\"v\":1,\"worker\":\"w\",\"worker\":\"x\",\"sent_ms\":5}", /* duplicate key */
        "{\"v\":1,\"worker\":\"\xff\",\"sent_ms\":5}",               /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        aq_status st = decode_str(bad[i], &s, &err);
        if (st == AQ_OK)
            fail_msg("decoded: %s", bad[i]);
        assert_int_equal(st, AQ_INVALID_ARG);
        assert_true(err.msg[0] != '\0');
    }
    /* out is written only on success */
    assert_memory_equal(&s, &before, sizeof(s));
}

static void test_caps(void **state)
{
    (void)state;
    aq_fleet_snapshot s;
    aq_err err;
    char text[AQ_FLEET_SNAPSHOT_JSON_MAX * 2];

    /* the whole text */
    int n = snprintf(text, sizeof(text), "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"pad\":\"");
    memset(text + n, 'x', AQ_FLEET_SNAPSHOT_JSON_MAX);
    snprintf(text + n + AQ_FLEET_SNAPSHOT_JSON_MAX,
             sizeof(text) - (size_t)n - AQ_FLEET_SNAPSHOT_JSON_MAX, "\"}");
    assert_int_equal(decode_str(text, &s, &err), AQ_TOO_BIG);

    /* a name at and over its cap */
    char name[AQ_FLEET_WORKER_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    snprintf(text, sizeof(text), "{\"v\":1,\"worker\":\"%s\",\"sent_ms\":5}", name);
    assert_int_equal(decode_str(text, &s, &err), AQ_TOO_BIG);
    name[AQ_FLEET_WORKER_MAX] = '\0';
    snprintf(text, sizeof(text), "{\"v\":1,\"worker\":\"%s\",\"sent_ms\":5}", name);
    assert_int_equal(decode_str(text, &s, &err), AQ_OK);
    assert_int_equal(strlen(s.worker), AQ_FLEET_WORKER_MAX);

    /* cost.day is a date, not a story */
    assert_int_equal(decode_str("{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,"
                                "\"cost\":{\"day\":\"2023-11-14T00:00:00Z\"}}",
                                &s, &err),
                     AQ_TOO_BIG);

    /* budgets: the cap is accepted, one more is not */
    for (int count = AQ_FLEET_BUDGETS_MAX; count <= AQ_FLEET_BUDGETS_MAX + 1; count++) {
        n = snprintf(text, sizeof(text),
                     "{\"v\":1,\"worker\":\"w\",\"sent_ms\":5,\"cost\":{\"budgets\":[");
        for (int i = 0; i < count; i++)
            n += snprintf(text + n, sizeof(text) - (size_t)n,
                          "%s{\"tenant\":\"t%d\",\"remaining_micro_usd\":%d}", i ? "," : "", i, i);
        snprintf(text + n, sizeof(text) - (size_t)n, "]}}");
        aq_status st = decode_str(text, &s, &err);
        if (count == AQ_FLEET_BUDGETS_MAX) {
            assert_int_equal(st, AQ_OK);
            assert_int_equal(s.n_budgets, AQ_FLEET_BUDGETS_MAX);
            assert_string_equal(s.budgets[AQ_FLEET_BUDGETS_MAX - 1].tenant, "t31");
        } else {
            assert_int_equal(st, AQ_TOO_BIG);
        }
    }

    /* the largest snapshot a worker can make encodes within the cap */
    aq_fleet_snapshot big;
    aq_buf buf;
    full(&big);
    memset(big.worker, 'w', AQ_FLEET_WORKER_MAX);
    big.worker[AQ_FLEET_WORKER_MAX] = '\0';
    big.n_budgets = AQ_FLEET_BUDGETS_MAX;
    for (int i = 0; i < AQ_FLEET_BUDGETS_MAX; i++) {
        memset(big.budgets[i].tenant, 'a' + (i % 26), AQ_FLEET_TENANT_MAX);
        big.budgets[i].tenant[AQ_FLEET_TENANT_MAX] = '\0';
        big.budgets[i].remaining_micro_usd = INT64_MIN;
    }
    aq_buf_init(&buf, AQ_FLEET_SNAPSHOT_JSON_MAX);
    assert_int_equal(aq_fleet_snapshot_encode(&big, &buf, &err), AQ_OK);
    assert_int_equal(aq_fleet_snapshot_decode(buf.data, buf.len, &s, &err), AQ_OK);
    assert_int_equal(s.budgets[5].remaining_micro_usd, INT64_MIN);
    /* too many budgets, or no name, are the encoder's errors too */
    big.n_budgets = AQ_FLEET_BUDGETS_MAX + 1;
    assert_int_equal(aq_fleet_snapshot_encode(&big, &buf, &err), AQ_INVALID_ARG);
    big.n_budgets = 0;
    big.worker[0] = '\0';
    assert_int_equal(aq_fleet_snapshot_encode(&big, &buf, &err), AQ_INVALID_ARG);
    /* a buffer capped smaller than the snapshot */
    aq_buf small;
    aq_buf_init(&small, 64);
    full(&big);
    assert_int_equal(aq_fleet_snapshot_encode(&big, &small, &err), AQ_TOO_BIG);
    aq_buf_free(&small);
    aq_buf_free(&buf);
}

static void test_non_finite_rates(void **state)
{
    (void)state;
    aq_fleet_snapshot a, b;
    aq_buf buf;
    aq_err err;
    full(&a);
    a.window.completed_per_s = NAN;
    a.window.share_429 = INFINITY;
    aq_buf_init(&buf, AQ_FLEET_SNAPSHOT_JSON_MAX);
    assert_int_equal(aq_fleet_snapshot_encode(&a, &buf, &err), AQ_OK);
    assert_int_equal(aq_fleet_snapshot_decode(buf.data, buf.len, &b, &err), AQ_OK);
    assert_true(b.window.completed_per_s == 0.0);
    assert_true(b.window.share_429 == 0.0);
    aq_buf_free(&buf);
}

static void test_subjects(void **state)
{
    (void)state;
    char tok[AQ_FLEET_WORKER_MAX + 1];
    aq_err err;
    assert_int_equal(aq_fleet_subject_token("host-1.pod 7>*", tok, sizeof(tok), &err), AQ_OK);
    assert_string_equal(tok, "host-1_pod_7__");
    assert_int_equal(aq_fleet_subject_token("\xc3\xa9t\xc3\xa9", tok, sizeof(tok), &err), AQ_OK);
    assert_string_equal(tok, "__t__");
    assert_int_equal(aq_fleet_subject_token("", tok, sizeof(tok), &err), AQ_INVALID_ARG);
    char lng[200];
    memset(lng, 'x', sizeof(lng) - 1);
    lng[sizeof(lng) - 1] = '\0';
    assert_int_equal(aq_fleet_subject_token(lng, tok, sizeof(tok), &err), AQ_OK);
    assert_int_equal(strlen(tok), AQ_FLEET_WORKER_MAX);

    assert_true(aq_fleet_prefix_valid("agentq.status"));
    assert_true(aq_fleet_prefix_valid("s"));
    assert_false(aq_fleet_prefix_valid(""));
    assert_false(aq_fleet_prefix_valid(NULL));
    assert_false(aq_fleet_prefix_valid("agentq..status"));
    assert_false(aq_fleet_prefix_valid(".agentq"));
    assert_false(aq_fleet_prefix_valid("agentq."));
    assert_false(aq_fleet_prefix_valid("agentq.*"));
    assert_false(aq_fleet_prefix_valid("agentq.>"));
    assert_false(aq_fleet_prefix_valid("agentq status"));
    assert_false(aq_fleet_prefix_valid("agentq\tstatus"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_unknown_fields_ignored),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_non_finite_rates),
        cmocka_unit_test(test_subjects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
