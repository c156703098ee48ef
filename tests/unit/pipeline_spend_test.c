/* The pipeline's spending-budget rules (internal/pipeline/spend_rules.h):
 * what an unanswered call is charged, and how long a deferral lasts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#include "budget/budget.h"
#include "pipeline/parking.h"
#include "pipeline/spend_rules.h"

#define BOUND 123456

static void test_never_sent_costs_nothing(void **state)
{
    (void)state;
    /* A connection that never opened, or a request never written. */
    assert_int_equal(aq_spend_unanswered_cost(AQ_HTTP_CONNECT, 0, 0, BOUND), 0);
    assert_int_equal(aq_spend_unanswered_cost(AQ_HTTP_TIMEOUT, 0, 0, BOUND), 0);
    assert_int_equal(aq_spend_unanswered_cost(AQ_NOMEM, 0, 0, BOUND), 0);
}

static void test_refusals_cost_nothing(void **state)
{
    (void)state;
    const long codes[] = {400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 504, 529};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_int_equal(aq_spend_unanswered_cost(AQ_OK, codes[i], 1, BOUND), 0);
        assert_int_equal(aq_spend_unanswered_cost(AQ_OK, codes[i], 2, BOUND), 0);
    }
}

static void test_maybe_billed_costs_the_bound(void **state)
{
    (void)state;
    /* Sent, then no usable answer: the provider may have run (and billed) it. */
    assert_int_equal(aq_spend_unanswered_cost(AQ_HTTP_TIMEOUT, 0, 1, BOUND), BOUND);
    assert_int_equal(aq_spend_unanswered_cost(AQ_HTTP_CONNECT, 0, 1, BOUND), BOUND);
    assert_int_equal(aq_spend_unanswered_cost(AQ_LLM_RESPONSE_TOO_BIG, 200, 1, BOUND), BOUND);
    assert_int_equal(aq_spend_unanswered_cost(AQ_HTTP_TIMEOUT, 200, 2, BOUND), BOUND);
    /* A 200 whose body did not parse: billed, usage unknown. */
    assert_int_equal(aq_spend_unanswered_cost(AQ_OK, 200, 1, BOUND), BOUND);
    assert_int_equal(aq_spend_unanswered_cost(AQ_OK, 200, 1, 0), 0);
}

static void test_defer_until_reset(void **state)
{
    (void)state;
    /* 2024-03-10 15:30:00 UTC: the budget day ends at 2024-03-11 00:00 UTC. */
    int64_t now = 1710084600000LL;
    int64_t reset = aq_budget_day_end_ms(aq_budget_day_of(now));
    assert_int_equal(reset, 1710115200000LL);
    assert_int_equal(aq_spend_defer_ms(now, reset, 0), reset - now);
    assert_int_equal(aq_spend_defer_ms(now, reset, 1234), reset - now + 1234);
    /* The jitter is clamped to its range. */
    assert_int_equal(aq_spend_defer_ms(now, reset, -5), reset - now);
    assert_int_equal(aq_spend_defer_ms(now, reset, 10 * AQ_SPEND_RESET_JITTER_MS),
                     reset - now + AQ_SPEND_RESET_JITTER_MS);
    /* At or past the reset (a clock that moved): still a short hand-back,
     * never 0 (an immediate redelivery would spin) nor negative. */
    assert_int_equal(aq_spend_defer_ms(reset, reset, 0), AQ_SPEND_MIN_DEFER_MS);
    assert_int_equal(aq_spend_defer_ms(reset + 5000, reset, 0), AQ_SPEND_MIN_DEFER_MS);
    assert_int_equal(aq_spend_defer_ms(reset - 10, reset, 0), AQ_SPEND_MIN_DEFER_MS);
    assert_int_equal(aq_spend_defer_ms(reset - 10, reset, 2000), 2010);
    /* A deferral is at most a day and the jitter. */
    int64_t midnight = reset - 86400000LL;
    assert_int_equal(aq_spend_defer_ms(midnight, reset, AQ_SPEND_RESET_JITTER_MS),
                     86400000LL + AQ_SPEND_RESET_JITTER_MS);
}

static void test_parked_released_when(void **state)
{
    (void)state;
    const int64_t day = 19792, limit = 5000000;
    /* Its day is over: a new day's budget, whatever the limit. */
    assert_true(aq_park_releasable(day, limit, day + 1, limit));
    assert_true(aq_park_releasable(day, limit, day + 1, -1));
    assert_true(aq_park_releasable(day, limit, day + 1, 0));
    /* Same day: only a higher limit brings it back. */
    assert_false(aq_park_releasable(day, limit, day, limit));
    assert_false(aq_park_releasable(day, limit, day, limit - 1));
    assert_true(aq_park_releasable(day, limit, day, limit + 1));
    assert_true(aq_park_releasable(day, 0, day, 1));
    /* A worker without this budget knows nothing of a raise. */
    assert_false(aq_park_releasable(day, limit, day, -1));
    assert_false(aq_park_releasable(day, 0, day, -1));
    /* A clock behind the parking worker's: not released early. */
    assert_false(aq_park_releasable(day, limit, day - 1, limit));
}

static void test_escape_tenant_token(void **state)
{
    (void)state;
    char out[64];
    assert_true(aq_budget_escape("acme-1_x", out, sizeof(out)));
    assert_string_equal(out, "acme-1_x");
    assert_true(aq_budget_escape("a.b c*>", out, sizeof(out)));
    assert_string_equal(out, "a=2Eb=20c=2A=3E"); /* no subject wildcard or separator */
    assert_true(aq_budget_escape("", out, sizeof(out)));
    assert_string_equal(out, "=");
    assert_false(aq_budget_escape("abcdef", out, 6)); /* no room for the NUL */
    assert_true(aq_budget_escape("abcde", out, 6));
}

static const char *hdr(natsMsg *m, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

static void test_park_msg(void **state)
{
    (void)state;
    assert_int_equal(nats_Open(-1), NATS_OK); /* messages are freed through the library */
    aq_queue_config q = {0};
    q.task_stream = (char *)"AGENTQ_TASKS";
    q.deferred_subjects = (char *)"agentq.deferred";
    natsMsg *orig = NULL, *m = NULL;
    assert_int_equal(natsMsg_Create(&orig, "agentq.tasks.sum", NULL, "payload", 7), NATS_OK);
    natsMsgHeader_Set(orig, "Nats-Msg-Id", "t-1");
    natsMsgHeader_Set(orig, "Nats-Expected-Stream", "AGENTQ_TASKS");
    natsMsgHeader_Add(orig, "X-Trace", "a");
    natsMsgHeader_Add(orig, "X-Trace", "b");
    natsMsgHeader_Set(orig, "Agentq-Parked-Limit", "1"); /* an earlier parking's: replaced */
    /* 2024-03-10 15:30:00 UTC: the day ends at 2024-03-11 00:00 UTC. */
    int64_t reset = aq_budget_day_end_ms(aq_budget_day_of(1710084600000LL));
    aq_park_info pi = {.tenant = "ac.me*", .type = "sum", .limit_micro = 2500000,
                       .reset_unix_ms = reset, .stream_seq = 42, .task_id = "t-1"};
    char id[AQ_PARK_MSG_ID_MAX];
    aq_err err;
    assert_int_equal(aq_park_msg(&q, orig, &pi, &m, id, &err), AQ_OK);
    assert_string_equal(id, "park-AGENTQ_TASKS-42-t-1");
    /* The tenant escaped into one subject token; the type refused it. */
    assert_string_equal(natsMsg_GetSubject(m), "agentq.deferred.ac=2Eme=2A.sum");
    assert_int_equal(natsMsg_GetDataLength(m), 7);
    assert_memory_equal(natsMsg_GetData(m), "payload", 7);
    /* The task's own headers, all values; none of the server's. */
    const char **vals = NULL;
    int n = 0;
    assert_int_equal(natsMsgHeader_Values(m, "X-Trace", &vals, &n), NATS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(vals[0], "a");
    assert_string_equal(vals[1], "b");
    free((void *)vals);
    assert_null(hdr(m, "Nats-Msg-Id"));
    assert_null(hdr(m, "Nats-Expected-Stream"));
    assert_string_equal(hdr(m, AQ_PARK_H_SUBJECT), "agentq.tasks.sum");
    assert_string_equal(hdr(m, AQ_PARK_H_TENANT), "ac.me*");
    assert_string_equal(hdr(m, AQ_PARK_H_TYPE), "sum");
    assert_string_equal(hdr(m, AQ_PARK_H_LIMIT), "2500000");
    char day[32];
    snprintf(day, sizeof(day), "%lld", (long long)aq_budget_day_of(1710084600000LL));
    assert_string_equal(hdr(m, AQ_PARK_H_DAY), day);
    assert_string_equal(hdr(m, AQ_PARK_H_UNTIL), "2024-03-11T00:00:00Z");
    assert_string_equal(hdr(m, AQ_PARK_H_SEQ), "42");
    natsMsg_Destroy(m);
    /* The tenant's own budget refused it: no type header. */
    pi.type = NULL;
    assert_int_equal(aq_park_msg(&q, orig, &pi, &m, id, &err), AQ_OK);
    assert_string_equal(natsMsg_GetSubject(m), "agentq.deferred.ac=2Eme=2A");
    assert_null(hdr(m, AQ_PARK_H_TYPE));
    natsMsg_Destroy(m);
    natsMsg_Destroy(orig);
    nats_Close();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_sent_costs_nothing),
        cmocka_unit_test(test_refusals_cost_nothing),
        cmocka_unit_test(test_maybe_billed_costs_the_bound),
        cmocka_unit_test(test_defer_until_reset),
        cmocka_unit_test(test_parked_released_when),
        cmocka_unit_test(test_escape_tenant_token),
        cmocka_unit_test(test_park_msg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
