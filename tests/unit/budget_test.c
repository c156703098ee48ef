#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "budget/budget.h"

/* ---- the budgets string ---- */

static void test_spec_ok(void **state)
{
    (void)state;
    aq_budget_spec *s = NULL;
    aq_err err;
    assert_int_equal(aq_budget_spec_parse(" acme=25.00, globex = 5 ;acme/summarize=2 ", &s, &err),
                     AQ_OK);
    assert_int_equal(aq_budget_spec_count(s), 3);
    assert_int_equal(aq_budget_spec_limit(s, "acme", ""), 25000000);
    assert_int_equal(aq_budget_spec_limit(s, "globex", NULL), 5000000);
    assert_int_equal(aq_budget_spec_limit(s, "acme", "summarize"), 2000000);
    assert_int_equal(aq_budget_spec_limit(s, "acme", "other"), -1);
    assert_int_equal(aq_budget_spec_limit(s, "nobody", ""), -1);
    const char *t, *y;
    int64_t l;
    assert_true(aq_budget_spec_entry(s, 2, &t, &y, &l));
    assert_string_equal(t, "acme");
    assert_string_equal(y, "summarize");
    assert_false(aq_budget_spec_entry(s, 3, &t, &y, &l));
    aq_budget_spec_free(s);

    assert_int_equal(aq_budget_spec_parse("", &s, &err), AQ_OK);
    assert_int_equal(aq_budget_spec_count(s), 0);
    aq_budget_spec_free(s);
    assert_int_equal(aq_budget_spec_parse(NULL, &s, &err), AQ_OK);
    aq_budget_spec_free(s);
    assert_int_equal(aq_budget_spec_parse("a.b-c_d@e=0.000001;zero=0", &s, &err), AQ_OK);
    assert_int_equal(aq_budget_spec_limit(s, "a.b-c_d@e", ""), 1);
    assert_int_equal(aq_budget_spec_limit(s, "zero", ""), 0);
    aq_budget_spec_free(s);
    aq_budget_spec_free(NULL);
}

static void test_spec_bad(void **state)
{
    (void)state;
    static const char *bad[] = {
        "acme",            "acme=",          "=5",          "acme=5,",      "acme=5;;b=1",
        "acme=5,acme=6",   "acme/x=1,acme/x=2", "acme=-1",   "acme=+1",      "acme=1e3",
        "acme=1.",         "acme=.5",        "acme=1.1234567", "acme=1000001", "acme/=1",
        "/x=1",            "ac me=1",        "acme=1 2",    "a/b/c=1",      "acme=0x10",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        aq_budget_spec *s = (aq_budget_spec *)0x1;
        aq_err err;
        memset(&err, 0, sizeof(err));
        if (aq_budget_spec_parse(bad[i], &s, &err) != AQ_CONFIG)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_ptr_equal(s, (aq_budget_spec *)0x1); /* out written only on success */
        assert_true(strncmp(err.msg, "budgets", 7) == 0);
    }
    /* name cap */
    char name[AQ_BUDGET_NAME_MAX + 10];
    memset(name, 'n', sizeof(name));
    snprintf(name + AQ_BUDGET_NAME_MAX + 1, 9, "=1");
    aq_budget_spec *s = NULL;
    aq_err err;
    assert_int_equal(aq_budget_spec_parse(name, &s, &err), AQ_CONFIG);
    name[AQ_BUDGET_NAME_MAX] = '=';
    name[AQ_BUDGET_NAME_MAX + 1] = '1';
    name[AQ_BUDGET_NAME_MAX + 2] = '\0';
    assert_int_equal(aq_budget_spec_parse(name, &s, &err), AQ_OK);
    aq_budget_spec_free(s);
    /* entry cap */
    static char big[AQ_BUDGET_SPEC_MAX_LEN + 2];
    size_t o = 0;
    for (int i = 0; i <= AQ_BUDGET_MAX_BUDGETS && o + 16 < sizeof(big); i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "%st%d=1", i ? "," : "", i);
    assert_int_equal(aq_budget_spec_parse(big, &s, &err), AQ_CONFIG);
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(aq_budget_spec_parse(big, &s, &err), AQ_CONFIG); /* over the length cap */
}

static void test_usd(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(aq_budget_parse_usd("0", &v), AQ_OK);
    assert_int_equal(v, 0);
    assert_int_equal(aq_budget_parse_usd("12.345678", &v), AQ_OK);
    assert_int_equal(v, 12345678);
    assert_int_equal(aq_budget_parse_usd("0.5", &v), AQ_OK);
    assert_int_equal(v, 500000);
    assert_int_equal(aq_budget_parse_usd("1000000", &v), AQ_OK);
    assert_int_equal(v, AQ_BUDGET_MAX_LIMIT);
    assert_int_equal(aq_budget_parse_usd("1000000.000001", &v), AQ_CONFIG);
    assert_int_equal(aq_budget_parse_usd("99999999999999999999999", &v), AQ_CONFIG);
    assert_int_equal(aq_budget_parse_usd("", &v), AQ_CONFIG);
    char buf[32];
    aq_budget_format_usd(12345678, buf, sizeof(buf));
    assert_string_equal(buf, "12.345678");
    aq_budget_format_usd(-5, buf, sizeof(buf));
    assert_string_equal(buf, "-0.000005");
    aq_budget_format_usd(0, buf, sizeof(buf));
    assert_string_equal(buf, "0.000000");

    aq_budget_action a;
    aq_err err;
    assert_int_equal(aq_budget_action_parse("defer", &a, &err), AQ_OK);
    assert_int_equal(a, AQ_BUDGET_ACTION_DEFER);
    assert_int_equal(aq_budget_action_parse("fail", &a, &err), AQ_OK);
    assert_int_equal(a, AQ_BUDGET_ACTION_FAIL);
    assert_int_equal(aq_budget_action_parse("Fail", &a, &err), AQ_CONFIG);
    assert_int_equal(aq_budget_action_parse(NULL, &a, &err), AQ_CONFIG);
}

/* ---- days ---- */

static void test_days(void **state)
{
    (void)state;
    char dn[9];
    assert_int_equal(aq_budget_day_of(0), 0);
    aq_budget_day_name(0, dn);
    assert_string_equal(dn, "19700101");
    /* 2024-02-29 00:00:00 UTC = 1709164800 */
    int64_t leap = 1709164800000LL;
    int64_t d = aq_budget_day_of(leap);
    aq_budget_day_name(d, dn);
    assert_string_equal(dn, "20240229");
    assert_int_equal(aq_budget_day_of(leap - 1), d - 1); /* the last ms of the 28th */
    aq_budget_day_name(d - 1, dn);
    assert_string_equal(dn, "20240228");
    assert_int_equal(aq_budget_day_of(leap + 86399999), d);
    assert_int_equal(aq_budget_day_of(leap + 86400000), d + 1);
    aq_budget_day_name(d + 1, dn);
    assert_string_equal(dn, "20240301");
    /* the reset time of a day is the next midnight */
    assert_int_equal(aq_budget_day_end_ms(d), leap + 86400000);
    assert_int_equal(aq_budget_day_end_ms(aq_budget_day_of(leap + 123456)), leap + 86400000);
    /* year end, century rules */
    aq_budget_day_name(aq_budget_day_of(1735689599999LL), dn); /* 2024-12-31 23:59:59.999 */
    assert_string_equal(dn, "20241231");
    aq_budget_day_name(aq_budget_day_of(1735689600000LL), dn);
    assert_string_equal(dn, "20250101");
    aq_budget_day_name(aq_budget_day_of(951782400000LL), dn); /* 2000-02-29 */
    assert_string_equal(dn, "20000229");
    aq_budget_day_name(aq_budget_day_of(4107542400000LL), dn); /* 2100-03-01 (no 2100-02-29) */
    assert_string_equal(dn, "21000301");
    /* before the epoch: floor, not truncation */
    assert_int_equal(aq_budget_day_of(-1), -1);
    aq_budget_day_name(-1, dn);
    assert_string_equal(dn, "19691231");
}

/* ---- keys ---- */

static void test_keys(void **state)
{
    (void)state;
    char k[AQ_BUDGET_KEY_MAX];
    int64_t d = aq_budget_day_of(1709164800000LL);
    assert_true(aq_budget_key(d, "acme", "", k, sizeof(k)));
    assert_string_equal(k, "20240229.alloc.acme");
    assert_true(aq_budget_key(d, "acme", "summarize", k, sizeof(k)));
    assert_string_equal(k, "20240229.alloc.acme.summarize");
    assert_true(aq_budget_key(d, "a.b/c d=", NULL, k, sizeof(k)));
    assert_string_equal(k, "20240229.alloc.a=2Eb=2Fc=20d=3D");
    assert_true(aq_budget_key(d, "", "x", k, sizeof(k)));
    assert_string_equal(k, "20240229.alloc.=.x");
    assert_false(aq_budget_key(d, "acme", "", k, 18)); /* does not fit */

    char out[64];
    assert_true(aq_budget_unescape("a=2Eb=2Fc=20d=3D", 16, out, sizeof(out)));
    assert_string_equal(out, "a.b/c d=");
    assert_true(aq_budget_unescape("=", 1, out, sizeof(out)));
    assert_string_equal(out, "");
    assert_false(aq_budget_unescape("a=2", 3, out, sizeof(out)));
    assert_false(aq_budget_unescape("a=zz", 4, out, sizeof(out)));
    assert_false(aq_budget_unescape("a=00", 4, out, sizeof(out)));
    assert_false(aq_budget_unescape("a.b", 3, out, sizeof(out)));
    assert_false(aq_budget_unescape("", 0, out, sizeof(out)));
    assert_false(aq_budget_unescape("abcdef", 6, out, 4));
    /* every byte round-trips */
    char all[256];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    char key[1024], back[300];
    assert_true(aq_budget_key(0, all, "", key, sizeof(key)));
    const char *tok = key + strlen("19700101.alloc.");
    assert_null(strchr(tok, '.'));
    assert_true(aq_budget_unescape(tok, strlen(tok), back, sizeof(back)));
    assert_string_equal(back, all);
}

/* ---- lease size ---- */

static void test_lease_size(void **state)
{
    (void)state;
    /* far from the limit: a chunk */
    assert_int_equal(aq_budget_lease_size(50000000, 10000, 10000, 500000, 1), 500000);
    assert_int_equal(aq_budget_lease_size(50000000, 10000, 10000, 500000, 10), 500000);
    /* waiting reservations need more than a chunk: what they need */
    assert_int_equal(aq_budget_lease_size(50000000, 10000, 800000, 500000, 1), 800000);
    /* near the end: the share of what is left, remaining / (2 x workers) */
    assert_int_equal(aq_budget_lease_size(400000, 10000, 10000, 500000, 2), 100000);
    assert_int_equal(aq_budget_lease_size(400000, 10000, 10000, 500000, 1), 200000);
    /* ... but never below the head's need */
    assert_int_equal(aq_budget_lease_size(30000, 20000, 20000, 500000, 4), 20000);
    /* ... nor above what is left */
    assert_int_equal(aq_budget_lease_size(30000, 20000, 90000, 500000, 4), 30000);
    /* refused: the head does not fit */
    assert_int_equal(aq_budget_lease_size(19999, 20000, 20000, 500000, 1), 0);
    assert_int_equal(aq_budget_lease_size(0, 1, 1, 500000, 1), 0);
    assert_int_equal(aq_budget_lease_size(-5, 1, 1, 500000, 1), 0); /* over-allocated key */
    /* workers < 1 counts as 1 */
    assert_int_equal(aq_budget_lease_size(400000, 1, 1, 500000, 0), 200000);

    /* The fleet's end game: W workers draw from one key in turn with the
     * rule, each reservation of at most MAXC; as long as a reservation can
     * be served the key keeps going, and the fleet stops with less than one
     * reservation left, never over the limit. */
    for (int64_t workers = 1; workers <= 16; workers *= 2) {
        int64_t limit = 1000000, maxc = 7000, chunk = 10000, allocated = 0;
        int64_t local[16] = {0};
        int64_t spent = 0;
        uint64_t rng = 88172645463325252ULL;
        for (int round = 0; round < 100000; round++) {
            int w = (int)(round % workers);
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int64_t need = 1 + (int64_t)(rng % (uint64_t)maxc);
            if (local[w] < need) {
                int64_t g = aq_budget_lease_size(limit - allocated, need - local[w], need - local[w],
                                                 chunk, workers);
                if (g == 0) {
                    /* refused: give back (pooling), try the next worker */
                    allocated -= local[w];
                    local[w] = 0;
                    continue;
                }
                allocated += g;
                local[w] += g;
            }
            local[w] -= need;
            spent += need;
            assert_true(allocated <= limit);
        }
        for (int w = 0; w < workers; w++)
            allocated -= local[w];
        assert_int_equal(allocated, spent);
        assert_true(spent <= limit);
        assert_true(spent > limit - maxc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_ok),   cmocka_unit_test(test_spec_bad),
        cmocka_unit_test(test_usd),       cmocka_unit_test(test_days),
        cmocka_unit_test(test_keys),      cmocka_unit_test(test_lease_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
