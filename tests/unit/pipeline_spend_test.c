/* The pipeline's spending-budget rules (internal/pipeline/spend_rules.h):
 * what an unanswered call is charged, and how long a deferral lasts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_sent_costs_nothing),
        cmocka_unit_test(test_refusals_cost_nothing),
        cmocka_unit_test(test_maybe_billed_costs_the_bound),
        cmocka_unit_test(test_defer_until_reset),
        cmocka_unit_test(test_parked_released_when),
        cmocka_unit_test(test_escape_tenant_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
