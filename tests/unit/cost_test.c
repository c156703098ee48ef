#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cost/cost.h"

static aq_cost_table *parse_ok(const char *s)
{
    aq_cost_table *t = NULL;
    aq_err err;
    aq_err_clear(&err);
    if (aq_cost_table_parse(s, &t, &err) != AQ_OK)
        fail_msg("'%s' does not parse: %s", s ? s : "(null)", err.msg);
    return t;
}

/* The reference table (shared/reference/anthropic-messages-api.md), every
 * model, every price: in, out, 5-minute cache write, cache read. */
static const struct {
    const char *model;
    int64_t in, out, cache_write, cache_read;
} reference[] = {
    {"claude-haiku-4-5", 1000000, 5000000, 1250000, 100000},
    {"claude-sonnet-4-5", 3000000, 15000000, 3750000, 300000},
    {"claude-sonnet-4-6", 3000000, 15000000, 3750000, 300000},
    {"claude-opus-4-5", 5000000, 25000000, 6250000, 500000},
    {"claude-opus-4-6", 5000000, 25000000, 6250000, 500000},
    {"claude-opus-4-7", 5000000, 25000000, 6250000, 500000},
    {"claude-opus-4-8", 5000000, 25000000, 6250000, 500000},
};
#define N_REFERENCE (sizeof(reference) / sizeof(reference[0]))

static void test_defaults_are_the_reference_table(void **state)
{
    (void)state;
    aq_cost_table *t = parse_ok(NULL);
    assert_int_equal(aq_cost_table_count(t), N_REFERENCE);
    for (size_t i = 0; i < N_REFERENCE; i++) {
        aq_cost_price p;
        const char *model;
        assert_true(aq_cost_price_of(t, reference[i].model, &p));
        assert_int_equal(p.in, reference[i].in);
        assert_int_equal(p.out, reference[i].out);
        assert_int_equal(p.cache_write, reference[i].cache_write);
        assert_int_equal(p.cache_read, reference[i].cache_read);
        assert_true(aq_cost_table_row(t, i, &model, &p));
        assert_string_equal(model, reference[i].model);
    }
    assert_false(aq_cost_table_row(t, N_REFERENCE, NULL, NULL));
    aq_cost_table_destroy(t);
    /* Blank is the defaults too. */
    t = parse_ok("  \t ");
    assert_int_equal(aq_cost_table_count(t), N_REFERENCE);
    aq_cost_table_destroy(t);
    aq_cost_table_destroy(NULL);
}

/* Every model x every usage kind, one kind at a time, exact. */
static void test_every_model_every_usage_kind(void **state)
{
    (void)state;
    aq_cost_table *t = parse_ok("");
    static const uint64_t counts[] = {0, 1, 7, 1000, 123457, 1000000, 4294967295u};
    for (size_t m = 0; m < N_REFERENCE; m++) {
        const int64_t prices[4] = {reference[m].in, reference[m].out, reference[m].cache_write,
                                   reference[m].cache_read};
        for (int kind = 0; kind < 4; kind++) {
            for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
                aq_cost_usage u = {0, 0, 0, 0};
                uint64_t *f[4] = {&u.input_tokens, &u.output_tokens, &u.cache_creation_input_tokens,
                                  &u.cache_read_input_tokens};
                *f[kind] = counts[c];
                /* pico = tokens x price; micro = pico / 1e6 rounded half up */
                unsigned __int128 pico = (unsigned __int128)counts[c] * (uint64_t)prices[kind];
                uint64_t want = (uint64_t)((pico + 500000) / 1000000);
                uint64_t got = 1;
                assert_true(aq_cost_of(t, reference[m].model, &u, &got));
                if (got != want)
                    fail_msg("%s kind %d, %llu tokens: %llu micro-USD, want %llu",
                             reference[m].model, kind, (unsigned long long)counts[c],
                             (unsigned long long)got, (unsigned long long)want);
            }
        }
        /* A million tokens of each kind costs the per-million price, in micro-USD. */
        aq_cost_usage all = {1000000, 1000000, 1000000, 1000000};
        uint64_t got;
        assert_true(aq_cost_of(t, reference[m].model, &all, &got));
        assert_int_equal(got, prices[0] + prices[1] + prices[2] + prices[3]);
    }
    aq_cost_table_destroy(t);
}

/* Worked examples, by hand. */
static void test_worked_examples(void **state)
{
    (void)state;
    static const struct {
        const char *model;
        aq_cost_usage u;
        uint64_t micro;
    } cases[] = {
        /* sonnet: 1200 x 3 + 350 x 15 = 3600 + 5250 = 8850 micro-USD */
        {"claude-sonnet-4-5", {1200, 350, 0, 0}, 8850},
        /* sonnet with a cache write of 2048 (x3.75 = 7680) and read of 0 */
        {"claude-sonnet-4-5", {20, 100, 2048, 0}, 60 + 1500 + 7680},
        /* then the read: 2048 x 0.3 = 614.4; + 60 + 1500 = 2174.4 -> 2174 */
        {"claude-sonnet-4-5", {20, 100, 0, 2048}, 2174},
        /* haiku: 10 x 1 + 3 x 5 + 3 x 1.25 + 5 x 0.1 = 10 + 15 + 3.75 + 0.5 = 29.25 -> 29 */
        {"claude-haiku-4-5", {10, 3, 3, 5}, 29},
        /* opus: 1 x 6.25 + 1 x 0.5 = 6.75 -> 7 */
        {"claude-opus-4-8", {0, 0, 1, 1}, 7},
        /* nothing */
        {"claude-opus-4-5", {0, 0, 0, 0}, 0},
    };
    aq_cost_table *t = parse_ok(NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t got = 0;
        assert_true(aq_cost_of(t, cases[i].model, &cases[i].u, &got));
        if (got != cases[i].micro)
            fail_msg("case %zu: %llu, want %llu", i, (unsigned long long)got,
                     (unsigned long long)cases[i].micro);
    }
    aq_cost_table_destroy(t);
}

/* Half up, once, over the sum: parts are never rounded separately. */
static void test_rounding(void **state)
{
    (void)state;
    const aq_cost_price haiku = {1000000, 5000000, 1250000, 100000};
    static const struct {
        aq_cost_usage u;
        uint64_t micro;
    } cases[] = {
        {{0, 0, 0, 4}, 0},   /* 0.4 */
        {{0, 0, 0, 5}, 1},   /* 0.5: half up */
        {{0, 0, 0, 14}, 1},  /* 1.4 */
        {{0, 0, 0, 15}, 2},  /* 1.5 */
        {{0, 0, 0, 25}, 3},  /* 2.5: half up, not to even */
        {{0, 0, 1, 0}, 1},   /* 1.25 */
        {{0, 0, 2, 0}, 3},   /* 2.5 */
        {{0, 0, 1, 3}, 2},   /* 1.25 + 0.3 = 1.55: the parts alone would round to 1 + 0 */
        {{0, 0, 0, 3}, 0},   /* 0.3 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t got = aq_cost_compute(&haiku, &cases[i].u);
        if (got != cases[i].micro)
            fail_msg("case %zu: %llu, want %llu", i, (unsigned long long)got,
                     (unsigned long long)cases[i].micro);
    }
    /* Sub-micro prices still add up exactly: 0.000001 USD/Mtok = 1 pico per token. */
    const aq_cost_price tiny = {1, 1, 1, 1};
    aq_cost_usage u = {499999, 0, 0, 0};
    assert_int_equal(aq_cost_compute(&tiny, &u), 0);
    u.input_tokens = 250000;
    u.output_tokens = 250000; /* 500000 pico: 0.5 -> 1 */
    assert_int_equal(aq_cost_compute(&tiny, &u), 1);
}

static void test_overflow_bounds(void **state)
{
    (void)state;
    /* The largest price and uint32 token counts (a Result's usage): exact. */
    const aq_cost_price max = {AQ_COST_MAX_PRICE, AQ_COST_MAX_PRICE, AQ_COST_MAX_PRICE,
                               AQ_COST_MAX_PRICE};
    aq_cost_usage u = {UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX};
    /* 4 x (2^32-1) x 1e10 pico = 4 x (2^32-1) x 1e4 micro */
    assert_true(aq_cost_compute(&max, &u) == 4ULL * 4294967295ULL * 10000ULL);
    /* 64-bit counts: the sum is done in 128 bits and saturates, never wraps. */
    aq_cost_usage big = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
    assert_true(aq_cost_compute(&max, &big) == UINT64_MAX);
    aq_cost_usage edge = {UINT64_MAX, 0, 0, 0};
    const aq_cost_price one = {1000000, 0, 0, 0}; /* 1 micro-USD per token */
    assert_true(aq_cost_compute(&one, &edge) == UINT64_MAX);
    const aq_cost_price pico = {1, 0, 0, 0};
    assert_true(aq_cost_compute(&pico, &edge) ==
                UINT64_MAX / 1000000ULL + ((UINT64_MAX % 1000000ULL) >= 500000ULL));
    assert_true(aq_cost_estimate_max(&max, UINT64_MAX, UINT64_MAX) == UINT64_MAX);
    /* A price table at the cap parses. */
    aq_cost_table *t = parse_ok("m: in=10000, out=10000.000000, cache_write=10000, cache_read=0");
    aq_cost_price p;
    assert_true(aq_cost_price_of(t, "m", &p));
    assert_int_equal(p.in, AQ_COST_MAX_PRICE);
    assert_int_equal(p.cache_read, 0);
    aq_cost_table_destroy(t);
}

static void test_estimate_max(void **state)
{
    (void)state;
    aq_cost_table *t = parse_ok(NULL);
    uint64_t got = 0;
    /* sonnet: input at the 5-minute write price (3.75 > 3), output at 15, rounded up:
     * 1001 x 3.75 = 3753.75 + 100 x 15 = 1500 -> 5253.75 -> 5254 */
    assert_true(aq_cost_estimate_max_of(t, "claude-sonnet-4-5", 1001, 100, &got));
    assert_int_equal(got, 5254);
    /* never below the real cost of any usage within the estimate */
    aq_cost_price p;
    assert_true(aq_cost_price_of(t, "claude-sonnet-4-5", &p));
    aq_cost_usage worst = {0, 100, 1001, 0}, plain = {1001, 100, 0, 0}, read = {0, 100, 0, 1001};
    assert_true(aq_cost_compute(&p, &worst) <= got);
    assert_true(aq_cost_compute(&p, &plain) <= got);
    assert_true(aq_cost_compute(&p, &read) <= got);
    /* 1 pico rounds up to 1 micro */
    const aq_cost_price tiny = {1, 0, 0, 0};
    assert_int_equal(aq_cost_estimate_max(&tiny, 1, 0), 1);
    assert_int_equal(aq_cost_estimate_max(&tiny, 0, 0), 0);
    /* a read price above the others (odd, but configurable) is the worst case */
    const aq_cost_price odd = {1000000, 0, 0, 2000000};
    assert_int_equal(aq_cost_estimate_max(&odd, 10, 0), 20);
    /* unpriced */
    got = 7;
    assert_false(aq_cost_estimate_max_of(t, "gpt-4o", 10, 10, &got));
    assert_int_equal(got, 0);
    aq_cost_table_destroy(t);
}

static void test_lookup_snapshots_and_unknown(void **state)
{
    (void)state;
    aq_cost_table *t = parse_ok(NULL);
    aq_cost_price p = {-1, -1, -1, -1};
    static const struct {
        const char *model;
        const char *as; /* NULL: no price */
    } cases[] = {
        {"claude-sonnet-4-5", "claude-sonnet-4-5"},
        {"claude-sonnet-4-5-20250929", "claude-sonnet-4-5"},
        {"claude-haiku-4-5@20251001", "claude-haiku-4-5"},
        {"claude-opus-4-5-2025092", NULL},   /* 7 digits */
        {"claude-opus-4-5-2025092x", NULL},
        {"claude-opus-4-5-20250929-v2", NULL},
        {"claude-opus-4-5_20250929", NULL},
        {"claude-opus-4-9", NULL},           /* a family is not a price */
        {"claude-opus", NULL},
        {"claude-sonnet-4", NULL},
        {"CLAUDE-SONNET-4-5", NULL},         /* ids are exact */
        {"-20250929", NULL},
        {"", NULL},
        {"gpt-4o", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool found = aq_cost_price_of(t, cases[i].model, &p);
        if (found != (cases[i].as != NULL))
            fail_msg("%s: found=%d", cases[i].model, found);
        if (found) {
            aq_cost_price want;
            assert_true(aq_cost_price_of(t, cases[i].as, &want));
            assert_memory_equal(&p, &want, sizeof(p));
        }
    }
    assert_false(aq_cost_price_of(t, NULL, &p));
    /* No price: cost 0 and false, so the Result says cost_unknown. */
    aq_cost_usage u = {100, 100, 0, 0};
    uint64_t micro = 99;
    assert_false(aq_cost_of(t, "claude-opus-4-9", &u, &micro));
    assert_int_equal(micro, 0);
    aq_cost_table_destroy(t);
}

static void test_parse_overrides_and_derived_prices(void **state)
{
    (void)state;
    aq_cost_table *t = parse_ok(
        " claude-haiku-4-5 : in = 0.8 , out = 4 ;"
        "anthropic.claude-3-haiku-20240307-v1:0: in=0.25, out=1.25, cache_read=0.03;"
        "proxy/model.x@1: in=0.000001, out=0, cache_write=0.123456");
    assert_int_equal(aq_cost_table_count(t), N_REFERENCE + 2);
    aq_cost_price p;
    /* A replaced default row: cache prices derived from the new input price. */
    assert_true(aq_cost_price_of(t, "claude-haiku-4-5", &p));
    assert_int_equal(p.in, 800000);
    assert_int_equal(p.out, 4000000);
    assert_int_equal(p.cache_write, 1000000); /* 1.25 x 0.8 */
    assert_int_equal(p.cache_read, 80000);    /* 0.1 x 0.8 */
    /* The other defaults are untouched. */
    assert_true(aq_cost_price_of(t, "claude-sonnet-4-5", &p));
    assert_int_equal(p.in, 3000000);
    /* A Bedrock id with ':' in it; cache_read given, cache_write derived. */
    assert_true(aq_cost_price_of(t, "anthropic.claude-3-haiku-20240307-v1:0", &p));
    assert_int_equal(p.in, 250000);
    assert_int_equal(p.out, 1250000);
    assert_int_equal(p.cache_write, 312500);
    assert_int_equal(p.cache_read, 30000);
    /* Micro-dollar precision; derived prices round half up. */
    assert_true(aq_cost_price_of(t, "proxy/model.x@1", &p));
    assert_int_equal(p.in, 1);
    assert_int_equal(p.out, 0);
    assert_int_equal(p.cache_write, 123456);
    assert_int_equal(p.cache_read, 0); /* 0.1 rounds to 0 */
    aq_cost_table_destroy(t);
    t = parse_ok("m: in=0.000003, out=1");
    assert_true(aq_cost_price_of(t, "m", &p));
    assert_int_equal(p.cache_write, 4); /* 3.75 -> 4 */
    assert_int_equal(p.cache_read, 0);  /* 0.3 -> 0 */
    aq_cost_table_destroy(t);
    t = parse_ok("m: in=0.000005, out=1");
    assert_true(aq_cost_price_of(t, "m", &p));
    assert_int_equal(p.cache_read, 1); /* 0.5 -> 1 */
    aq_cost_table_destroy(t);
}

static void test_parse_errors(void **state)
{
    (void)state;
    char longs[AQ_COST_PRICES_MAX_LEN + 16];
    memset(longs, ' ', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    memcpy(longs, "m: in=1, out=1", 14);
    char longmodel[AQ_COST_MODEL_MAX + 32];
    memset(longmodel, 'm', AQ_COST_MODEL_MAX + 1);
    snprintf(longmodel + AQ_COST_MODEL_MAX + 1, 31, ": in=1, out=1");
    char many[AQ_COST_MAX_MODELS * 24 + 64];
    size_t at = 0;
    for (int i = 0; i < AQ_COST_MAX_MODELS; i++)
        at += (size_t)snprintf(many + at, sizeof(many) - at, "%sm%d:in=1,out=1", i ? ";" : "", i);

    const struct {
        const char *s, *msg;
    } cases[] = {
        {"claude-haiku-4-5", "entry 'claude-haiku-4-5' has no ':'"},
        {"m in=1, out=1", "has no ':' before its settings"},
        {": in=1, out=1", "has no model"},
        {"m:", "m has no settings"},
        {"m: ", "m has no settings"},
        {"m: in=1,, out=2", "m: empty setting"},
        {"m: in=1, out=2,", "m: empty setting"},
        {"m: in", "m: 'in' is not name=value"},
        {"m: input=1, out=2", "m: unknown setting 'input'"},
        {"m: in=1, in=2, out=3", "m: 'in' given twice"},
        {"m: out=2", "m: 'in' is required"},
        {"m: in=2", "m: 'out' is required"},
        {"m: in=, out=2", "m: in has no value"},
        {"m: in=-1, out=2", "m: in='-1' is not a decimal"},
        {"m: in=+1, out=2", "m: in='+1' is not a decimal"},
        {"m: in=1e3, out=2", "m: in='1e3' is not a decimal"},
        {"m: in=1., out=2", "m: in='1.' is not a decimal"},
        {"m: in=.5, out=2", "m: in='.5' is not a decimal"},
        {"m: in=1.2.3, out=2", "m: in='1.2.3' is not a decimal"},
        {"m: in=1 000, out=2", "m: in='1 000' is not a decimal"},
        {"m: in=0.0000001, out=2", "m: in='0.0000001' has more than 6 decimals"},
        {"m: in=10000.000001, out=2", "m: in='10000.000001' is over the cap of 10000"},
        {"m: in=10001, out=2", "m: in='10001' is over the cap"},
        {"m: in=99999999999999999999, out=2", "is over the cap"},
        {"m: in=1, out=2;;n: in=1, out=2", "empty entry"},
        {"m: in=1, out=2;", "empty entry"},
        {";m: in=1, out=2", "empty entry"},
        {"m: in=1, out=2; m: in=3, out=4", "prices: m given twice"},
        {"claude-haiku-4-5: in=1, out=2; claude-haiku-4-5: in=3, out=4", "claude-haiku-4-5 given twice"},
        {"bad model: in=1, out=2", "model 'bad model' has a character outside"},
        {"m\xc3\xa9: in=1, out=2", "has a character outside"},
        {longs, "characters, over the cap of"},
        {longmodel, "is longer than 128 characters"},
        {many, "more than 128 models"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_cost_table *t = (aq_cost_table *)0x1;
        aq_err err;
        aq_err_clear(&err);
        aq_status st = aq_cost_table_parse(cases[i].s, &t, &err);
        if (st != AQ_CONFIG)
            fail_msg("case %zu '%.60s' parsed (%s)", i, cases[i].s, aq_status_class(st));
        assert_true(t == (aq_cost_table *)0x1); /* untouched */
        assert_int_equal(err.status, AQ_CONFIG);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: error '%s' does not say '%s'", i, err.msg, cases[i].msg);
        if (strncmp(err.msg, "prices: ", 8) != 0)
            fail_msg("case %zu: error '%s' does not name the option", i, err.msg);
    }
}

static void test_note_unpriced_once(void **state)
{
    (void)state;
    aq_cost_table *t = parse_ok(NULL);
    assert_false(aq_cost_note_unpriced(t, "claude-sonnet-4-5")); /* priced */
    assert_false(aq_cost_note_unpriced(t, "claude-sonnet-4-5-20250929"));
    assert_true(aq_cost_note_unpriced(t, "gpt-4o"));
    assert_false(aq_cost_note_unpriced(t, "gpt-4o"));
    assert_true(aq_cost_note_unpriced(t, "gpt-4o-mini"));
    assert_false(aq_cost_note_unpriced(t, NULL));
    assert_false(aq_cost_note_unpriced(NULL, "x"));
    /* Bounded: after AQ_COST_MAX_UNPRICED_NOTED models, nothing more is reported. */
    char m[32];
    for (int i = 2; i < AQ_COST_MAX_UNPRICED_NOTED; i++) {
        snprintf(m, sizeof(m), "model-%d", i);
        assert_true(aq_cost_note_unpriced(t, m));
    }
    assert_false(aq_cost_note_unpriced(t, "one-too-many"));
    assert_false(aq_cost_note_unpriced(t, "model-5"));
    aq_cost_table_destroy(t);
}

static void test_format_usd(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(aq_cost_format_usd(0, buf, sizeof(buf)), "0.000000");
    assert_string_equal(aq_cost_format_usd(1, buf, sizeof(buf)), "0.000001");
    assert_string_equal(aq_cost_format_usd(8850, buf, sizeof(buf)), "0.008850");
    assert_string_equal(aq_cost_format_usd(12345678901ULL, buf, sizeof(buf)), "12345.678901");
    assert_string_equal(aq_cost_format_usd(UINT64_MAX, buf, sizeof(buf)),
                        "18446744073709.551615");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_the_reference_table),
        cmocka_unit_test(test_every_model_every_usage_kind),
        cmocka_unit_test(test_worked_examples),
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_overflow_bounds),
        cmocka_unit_test(test_estimate_max),
        cmocka_unit_test(test_lookup_snapshots_and_unknown),
        cmocka_unit_test(test_parse_overrides_and_derived_prices),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_note_unpriced_once),
        cmocka_unit_test(test_format_usd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
