#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit/ratelimit.h"

/* Every test runs on an injected clock: times are plain numbers. */
#define UNIX0 1700000000000LL /* wall clock at mono 0, for reset headers */

static aq_llm_ratelimit no_headers(void)
{
    aq_llm_ratelimit h;
    h.requests_limit = h.requests_remaining = -1;
    h.input_limit = h.input_remaining = -1;
    h.output_limit = h.output_remaining = -1;
    h.requests_reset_unix_ms = h.input_reset_unix_ms = h.output_reset_unix_ms = -1;
    return h;
}

/* Token limits no test reaches: with every dimension of a class configured
 * there is no probing before the first headers. */
#define BIG_TOKENS "itpm=1000000000,otpm=1000000000"

static aq_rl *new_rl(const char *limits, size_t n_keys)
{
    aq_rl_config cfg;
    aq_err err;
    aq_rl *rl = NULL;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(aq_rl_limits_parse(limits, &cfg.limits, &err), AQ_OK);
    cfg.n_keys = n_keys;
    assert_int_equal(aq_rl_new(&cfg, 0, &rl, &err), AQ_OK);
    return rl;
}

static aq_rl_dim_stats dim_stats(const aq_rl *rl, size_t key, aq_rl_class cls, aq_rl_dim d, int64_t now)
{
    aq_rl_stats st;
    assert_true(aq_rl_stats_get(rl, key, cls, now, &st));
    return st.dim[d];
}

static int64_t avail(const aq_rl *rl, size_t key, aq_rl_class cls, aq_rl_dim d, int64_t now)
{
    return dim_stats(rl, key, cls, d, now).available;
}

static aq_rl_verdict acq(aq_rl *rl, aq_rl_class cls, int64_t in, int64_t out, int64_t now, aq_rl_reservation *r,
                         int64_t *wait)
{
    return aq_rl_acquire(rl, cls, in, out, now, r, wait);
}

/* ---- model classes ---- */

static void test_model_class(void **state)
{
    (void)state;
    assert_int_equal(aq_rl_model_class("claude-haiku-4-5"), AQ_RL_HAIKU);
    assert_int_equal(aq_rl_model_class("claude-3-5-haiku-20241022"), AQ_RL_HAIKU);
    assert_int_equal(aq_rl_model_class("claude-sonnet-4-5"), AQ_RL_SONNET);
    assert_int_equal(aq_rl_model_class("claude-sonnet-4-6"), AQ_RL_SONNET);
    assert_int_equal(aq_rl_model_class("Claude-Sonnet-5"), AQ_RL_SONNET);
    assert_int_equal(aq_rl_model_class("claude-opus-4-1@20250805"), AQ_RL_OPUS);
    assert_int_equal(aq_rl_model_class("anthropic.claude-3-opus-20240229-v1:0"), AQ_RL_OPUS);
    assert_int_equal(aq_rl_model_class("claude-instant-1"), AQ_RL_OTHER);
    assert_int_equal(aq_rl_model_class("opusx-1"), AQ_RL_OTHER);      /* a word, not a substring */
    assert_int_equal(aq_rl_model_class("my-sonnets"), AQ_RL_OTHER);
    assert_int_equal(aq_rl_model_class(""), AQ_RL_OTHER);
    assert_int_equal(aq_rl_model_class(NULL), AQ_RL_OTHER);
    assert_string_equal(aq_rl_class_name(AQ_RL_HAIKU), "haiku");
    assert_string_equal(aq_rl_class_name(AQ_RL_SONNET), "sonnet");
    assert_string_equal(aq_rl_class_name(AQ_RL_OPUS), "opus");
    assert_string_equal(aq_rl_class_name(AQ_RL_OTHER), "other");
    assert_string_equal(aq_rl_class_name((aq_rl_class)99), "other");
    assert_string_equal(aq_rl_dim_name(AQ_RL_REQUESTS), "requests");
    assert_string_equal(aq_rl_dim_name(AQ_RL_INPUT_TOKENS), "input_tokens");
    assert_string_equal(aq_rl_dim_name(AQ_RL_OUTPUT_TOKENS), "output_tokens");
}

/* ---- the limits string ---- */

static void test_limits_parse_valid(void **state)
{
    (void)state;
    aq_rl_limits l;
    aq_err err;
    assert_int_equal(aq_rl_limits_parse("sonnet:rpm=4000,itpm=2000000,otpm=400000;"
                                        "haiku:rpm=4000,itpm=4000000,otpm=800000",
                                        &l, &err),
                     AQ_OK);
    assert_int_equal(l.per_min[AQ_RL_SONNET][AQ_RL_REQUESTS], 4000);
    assert_int_equal(l.per_min[AQ_RL_SONNET][AQ_RL_INPUT_TOKENS], 2000000);
    assert_int_equal(l.per_min[AQ_RL_SONNET][AQ_RL_OUTPUT_TOKENS], 400000);
    assert_int_equal(l.per_min[AQ_RL_HAIKU][AQ_RL_INPUT_TOKENS], 4000000);
    assert_int_equal(l.per_min[AQ_RL_HAIKU][AQ_RL_OUTPUT_TOKENS], 800000);
    assert_int_equal(l.per_min[AQ_RL_OPUS][AQ_RL_REQUESTS], 0);
    assert_int_equal(l.per_min[AQ_RL_OTHER][AQ_RL_OUTPUT_TOKENS], 0);

    /* Blanks around tokens, settings in any order, some left out, 0, the cap. */
    assert_int_equal(aq_rl_limits_parse("  opus : otpm = 80000 , rpm=50 ;\tother:itpm=0; haiku:rpm=1000000000000 ",
                                        &l, &err),
                     AQ_OK);
    assert_int_equal(l.per_min[AQ_RL_OPUS][AQ_RL_REQUESTS], 50);
    assert_int_equal(l.per_min[AQ_RL_OPUS][AQ_RL_INPUT_TOKENS], 0);
    assert_int_equal(l.per_min[AQ_RL_OPUS][AQ_RL_OUTPUT_TOKENS], 80000);
    assert_int_equal(l.per_min[AQ_RL_OTHER][AQ_RL_INPUT_TOKENS], 0);
    assert_int_equal(l.per_min[AQ_RL_HAIKU][AQ_RL_REQUESTS], AQ_RL_MAX_LIMIT);

    /* Empty, blank and NULL: the default, which learns everything. */
    const char *empties[] = {"", "  \t ", NULL, AQ_RL_DEFAULT_LIMITS};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        memset(&l, 0x5a, sizeof(l));
        assert_int_equal(aq_rl_limits_parse(empties[i], &l, &err), AQ_OK);
        for (int c = 0; c < AQ_RL_CLASS_COUNT; c++)
            for (int d = 0; d < AQ_RL_DIM_COUNT; d++)
                assert_int_equal(l.per_min[c][d], 0);
    }
}

static void expect_parse_error(const char *s, const char *msg)
{
    aq_rl_limits l;
    aq_err err;
    memset(&l, 0x5a, sizeof(l));
    aq_rl_limits before = l;
    assert_int_equal(aq_rl_limits_parse(s, &l, &err), AQ_CONFIG);
    assert_int_equal(err.status, AQ_CONFIG);
    assert_string_equal(err.msg, msg);
    assert_memory_equal(&l, &before, sizeof(l)); /* out written only on success */
}

static void test_limits_parse_errors(void **state)
{
    (void)state;
    expect_parse_error("sonnet:rpm=1;;haiku:rpm=2", "rate limits: entry 2 is empty");
    expect_parse_error("sonnet:rpm=1;", "rate limits: entry 2 is empty");
    expect_parse_error(";sonnet:rpm=1", "rate limits: entry 1 is empty");
    expect_parse_error("sonnet rpm=1",
                       "rate limits: entry 'sonnet rpm=1' has no ':' (expected class:rpm=N,itpm=N,otpm=N)");
    expect_parse_error("gpt4:rpm=1",
                       "rate limits: unknown model class 'gpt4' (expected haiku, sonnet, opus or other)");
    expect_parse_error("Sonnet:rpm=1",
                       "rate limits: unknown model class 'Sonnet' (expected haiku, sonnet, opus or other)");
    expect_parse_error(":rpm=1", "rate limits: unknown model class '' (expected haiku, sonnet, opus or other)");
    expect_parse_error("sonnet:rpm=1;sonnet:itpm=2", "rate limits: class 'sonnet' given twice");
    expect_parse_error("haiku:", "rate limits: class 'haiku' has no settings");
    expect_parse_error("haiku: ", "rate limits: class 'haiku' has no settings");
    expect_parse_error("haiku:rpm=1,,otpm=2", "rate limits: haiku: empty setting");
    expect_parse_error("haiku:rpm=1,", "rate limits: haiku: empty setting");
    expect_parse_error("haiku:rpm", "rate limits: haiku: 'rpm' is not name=value");
    expect_parse_error("haiku:tpm=5", "rate limits: haiku: unknown setting 'tpm' (expected rpm, itpm or otpm)");
    expect_parse_error("haiku:RPM=5", "rate limits: haiku: unknown setting 'RPM' (expected rpm, itpm or otpm)");
    expect_parse_error("haiku:rpm=5,rpm=6", "rate limits: haiku: 'rpm' given twice");
    expect_parse_error("haiku:rpm=", "rate limits: haiku: rpm has no value");
    expect_parse_error("haiku:rpm=12x", "rate limits: haiku: rpm='12x' is not a whole number");
    expect_parse_error("haiku:rpm=-5", "rate limits: haiku: rpm='-5' is not a whole number");
    expect_parse_error("haiku:rpm=+5", "rate limits: haiku: rpm='+5' is not a whole number");
    expect_parse_error("haiku:rpm=1 000", "rate limits: haiku: rpm='1 000' is not a whole number");
    expect_parse_error("haiku:rpm=1.5", "rate limits: haiku: rpm='1.5' is not a whole number");
    expect_parse_error("haiku:otpm=1000000000001",
                       "rate limits: haiku: otpm='1000000000001' is over the cap 1000000000000");
    expect_parse_error("haiku:otpm=99999999999999999999999999",
                       "rate limits: haiku: otpm='99999999999999999999999999' is over the cap 1000000000000");

    /* Quoted input is cut in messages. */
    expect_parse_error("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:rpm=1",
                       "rate limits: unknown model class 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' "
                       "(expected haiku, sonnet, opus or other)");

    /* Over the length cap, even when it would parse. */
    char big[AQ_RL_LIMITS_MAX_LEN + 2];
    memset(big, ' ', sizeof(big));
    memcpy(big, "haiku:rpm=1", 11);
    big[sizeof(big) - 1] = '\0';
    expect_parse_error(big, "rate limits: longer than 1024 characters");
    big[AQ_RL_LIMITS_MAX_LEN] = '\0'; /* exactly the cap: fine */
    aq_rl_limits l;
    assert_int_equal(aq_rl_limits_parse(big, &l, NULL), AQ_OK);
    assert_int_equal(l.per_min[AQ_RL_HAIKU][AQ_RL_REQUESTS], 1);
}

/* ---- construction ---- */

static void expect_new_error(const aq_rl_config *cfg, const char *msg)
{
    aq_err err;
    aq_rl *rl = (aq_rl *)0x1;
    assert_int_equal(aq_rl_new(cfg, 0, &rl, &err), AQ_CONFIG);
    assert_string_equal(err.msg, msg);
    assert_ptr_equal(rl, (aq_rl *)0x1);
}

static void test_new_checks_config(void **state)
{
    (void)state;
    aq_rl_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    expect_new_error(&cfg, "rate limiter: 0 keys, expected 1..64");
    cfg.n_keys = 65;
    expect_new_error(&cfg, "rate limiter: 65 keys, expected 1..64");
    cfg.n_keys = 2;

    /* Labels: the message names the key's position, never the label, which
     * might be a key pasted by mistake. */
    const char *long_label[] = {"key-1", "a-label-longer-than-sixteen"};
    cfg.labels = long_label;
    expect_new_error(&cfg, "rate limiter: label of key 2 is longer than 16 characters");
    const char *key_like[] = {"SK-abcd", "key-2"};
    cfg.labels = key_like;
    expect_new_error(&cfg, "rate limiter: label of key 1 looks like an API key");
    const char *bad_char[] = {"key 1", "key-2"};
    cfg.labels = bad_char;
    expect_new_error(&cfg, "rate limiter: label of key 1 has a character outside [A-Za-z0-9._-]");
    const char *empty[] = {"key-1", ""};
    cfg.labels = empty;
    expect_new_error(&cfg, "rate limiter: label of key 2 is empty");
    cfg.labels = NULL;

    cfg.default_pause_ms = 60001;
    expect_new_error(&cfg, "rate limiter: default pause 60001 ms is outside 1..60000");
    cfg.default_pause_ms = -1;
    expect_new_error(&cfg, "rate limiter: default pause -1 ms is outside 1..60000");
    cfg.default_pause_ms = 0;
    cfg.visibility_ms = 60001;
    expect_new_error(&cfg, "rate limiter: visibility 60001 ms is outside 1..60000");
    cfg.visibility_ms = 0;
    cfg.share_window_ms = 99;
    expect_new_error(&cfg, "rate limiter: share window 99 ms is outside 100..60000");
    cfg.share_window_ms = 0;
    cfg.limits.per_min[AQ_RL_OPUS][AQ_RL_OUTPUT_TOKENS] = -3;
    expect_new_error(&cfg, "rate limiter: opus otpm limit -3 is outside 0..1000000000000");
    cfg.limits.per_min[AQ_RL_OPUS][AQ_RL_OUTPUT_TOKENS] = 0;

    /* Default labels, and labels that are fine. */
    aq_rl *rl;
    assert_int_equal(aq_rl_new(&cfg, 0, &rl, NULL), AQ_OK);
    assert_int_equal(aq_rl_key_count(rl), 2);
    assert_string_equal(aq_rl_key_label(rl, 0), "key-1");
    assert_string_equal(aq_rl_key_label(rl, 1), "key-2");
    assert_string_equal(aq_rl_key_label(rl, 2), "");
    aq_rl_destroy(rl);
    const char *ok[] = {"org-a.k1", "k2_...wxyz"};
    cfg.labels = ok;
    assert_int_equal(aq_rl_new(&cfg, 0, &rl, NULL), AQ_OK);
    assert_string_equal(aq_rl_key_label(rl, 1), "k2_...wxyz");
    aq_rl_stats st;
    assert_true(aq_rl_stats_get(rl, 0, AQ_RL_SONNET, 0, &st));
    assert_string_equal(st.key_label, "org-a.k1");
    assert_string_equal(st.class_name, "sonnet");
    assert_false(aq_rl_stats_get(rl, 2, AQ_RL_SONNET, 0, &st));
    assert_false(aq_rl_stats_get(rl, 0, AQ_RL_CLASS_COUNT, 0, &st));
    aq_rl_destroy(rl);
    aq_rl_destroy(NULL);
}

/* ---- refill arithmetic ---- */

static void test_refill_whole_and_partial_minutes(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=60," BIG_TOKENS ";haiku:rpm=1000000,itpm=60000,otpm=1000000000;"
                       "opus:rpm=7," BIG_TOKENS, 1);
    aq_rl_reservation r[64];
    int64_t wait = -1;

    /* 60 per minute = one per second; it starts full. */
    for (int i = 0; i < 60; i++)
        assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &r[i], &wait), AQ_RL_GRANTED);
    assert_int_equal(wait, 0);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &r[60], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 1000);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 999, &r[60], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 1);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 1000, &r[60], &wait), AQ_RL_GRANTED);
    assert_int_equal(aq_rl_waits(rl, AQ_RL_SONNET), 2);

    /* 60000 input tokens per minute = 1 per ms, exactly, at any point. */
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 60000, 0, 0, &r[61], &wait), AQ_RL_GRANTED);
    assert_int_equal(avail(rl, 0, AQ_RL_HAIKU, AQ_RL_INPUT_TOKENS, 0), 0);
    assert_int_equal(avail(rl, 0, AQ_RL_HAIKU, AQ_RL_INPUT_TOKENS, 30), 30);
    assert_int_equal(avail(rl, 0, AQ_RL_HAIKU, AQ_RL_INPUT_TOKENS, 59999), 59999);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 31, 0, 30, &r[62], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 1);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 31, 0, 31, &r[62], &wait), AQ_RL_GRANTED);
    /* Capacity: never more than the limit, however long it idles. */
    assert_int_equal(avail(rl, 0, AQ_RL_HAIKU, AQ_RL_INPUT_TOKENS, 600000), 60000);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_HAIKU, AQ_RL_INPUT_TOKENS, 600000).capacity, 60000);

    /* 7 per minute: one every 8571.43 ms; the wait is rounded up and exact. */
    for (int i = 0; i < 7; i++)
        assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 0, 0, &r[i], &wait), AQ_RL_GRANTED);
    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 0, 0, &r[7], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 8572);
    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 0, 8571, &r[7], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 1);
    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 0, 8572, &r[7], &wait), AQ_RL_GRANTED);
    aq_rl_destroy(rl);
}

static void test_refill_large_limits_do_not_overflow(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=1000000000000,itpm=1000000000000,otpm=1000000000000", 1);
    aq_rl_reservation r[10];
    int64_t wait;
    for (int i = 0; i < 10; i++)
        assert_int_equal(acq(rl, AQ_RL_SONNET, INT64_MAX, 1000000000000000LL, 0, &r[i], &wait), AQ_RL_GRANTED);
    assert_int_equal(r[0].cost[AQ_RL_INPUT_TOKENS], AQ_RL_MAX_COST); /* estimates are capped */
    assert_int_equal(r[0].cost[AQ_RL_OUTPUT_TOKENS], AQ_RL_MAX_COST);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0), AQ_RL_MAX_LIMIT - 10 * AQ_RL_MAX_COST);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0).in_flight, 10 * AQ_RL_MAX_COST);
    /* 1e12 per minute over 1e15 ms (decades) is 1.7e19 tokens: capped, not wrapped. */
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 1000000000000000LL), AQ_RL_MAX_LIMIT);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, INT64_MAX / 2), AQ_RL_MAX_LIMIT);
    /* Negative estimates are 0. */
    aq_rl_reservation z = AQ_RL_RESERVATION_INIT;
    assert_int_equal(acq(rl, AQ_RL_SONNET, -5, -1, 1, &z, &wait), AQ_RL_GRANTED);
    assert_int_equal(z.cost[AQ_RL_INPUT_TOKENS], 0);
    assert_int_equal(z.cost[AQ_RL_OUTPUT_TOKENS], 0);
    assert_int_equal(z.cost[AQ_RL_REQUESTS], 1);
    aq_rl_destroy(rl);
}

/* ---- acquire, commit, release ---- */

static void test_commit_and_release_correct_the_charge(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:itpm=100000,otpm=10000", 1);
    aq_rl_reservation r = AQ_RL_RESERVATION_INIT;
    int64_t wait;

    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 4000, 0, &r, &wait), AQ_RL_GRANTED);
    assert_int_equal(r.key, 0);
    assert_int_equal(r.cls, AQ_RL_SONNET);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0), 99000);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0), 6000);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0).in_flight, 1000);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0).in_flight, 4000);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 0).in_flight, 1);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 0).limit, 0); /* rpm: not known */

    /* input + cache creation count; cache reads do not; output is refunded
     * down to what was produced. */
    aq_llm_usage u = {.input_tokens = 300, .output_tokens = 1500, .cache_creation_input_tokens = 200,
                      .cache_read_input_tokens = 5000};
    aq_rl_commit(rl, &r, &u, NULL, 0, UNIX0);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0), 99500);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0), 8500);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0).in_flight, 0);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0).in_flight, 0);

    /* Finishing twice does nothing. */
    aq_rl_commit(rl, &r, &u, NULL, 0, UNIX0);
    aq_rl_release(rl, &r, 0);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0), 8500);
    /* ... nor does finishing a zeroed reservation. */
    aq_rl_reservation zero = AQ_RL_RESERVATION_INIT;
    aq_rl_release(rl, &zero, 0);
    aq_rl_commit(rl, &zero, &u, NULL, 0, UNIX0);

    /* More input than estimated is charged too. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 0, 0, &r, &wait), AQ_RL_GRANTED);
    u = (aq_llm_usage){.input_tokens = 2500, .output_tokens = 0};
    aq_rl_commit(rl, &r, &u, NULL, 0, UNIX0);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0), 97000);

    /* Release: refunded entirely (never above the capacity). */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 5000, 5000, 0, &r, &wait), AQ_RL_GRANTED);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0), 3500);
    aq_rl_release(rl, &r, 0);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0), 97000);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0), 8500);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_release(rl, &r, 120000);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 120000), 10000);

    /* Unknown usage: the reservation stays charged as it is. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 700, 900, 120000, &r, &wait), AQ_RL_GRANTED);
    aq_rl_commit(rl, &r, NULL, NULL, 120000, UNIX0);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 120000), 99300);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 120000), 9100);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 120000).in_flight, 0);

    aq_rl_stats st;
    assert_true(aq_rl_stats_get(rl, 0, AQ_RL_SONNET, 120000, &st));
    assert_int_equal(st.grants, 5);
    assert_int_equal(st.pauses, 0);
    aq_rl_destroy(rl);
}

/* The key chosen is the one left with the most headroom: the minimum over
 * dimensions of (available - cost) / limit. */
static void test_choose_key_with_most_headroom(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=100,otpm=10000", 3);
    aq_rl_reservation r[8];
    int64_t wait;

    /* All equal: the lowest index; then each call moves to the fullest key. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 0, &r[0], &wait), AQ_RL_GRANTED);
    assert_int_equal(r[0].key, 0);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 0, &r[1], &wait), AQ_RL_GRANTED);
    assert_int_equal(r[1].key, 1);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 0, &r[2], &wait), AQ_RL_GRANTED);
    assert_int_equal(r[2].key, 2);

    /* Headers (at t=2000, so nothing in flight is "unseen"): key-1 (index 0)
     * has many requests but few output tokens left, key-2 the reverse, key-3
     * moderate in both. */
    aq_llm_ratelimit h = no_headers();
    aq_llm_usage u = {.input_tokens = 0, .output_tokens = 1000};
    h.requests_limit = 100, h.requests_remaining = 90;
    h.output_limit = 10000, h.output_remaining = 2500; /* -> 2000 after the rounding slack */
    aq_rl_commit(rl, &r[0], &u, &h, 2000, UNIX0 + 2000);
    h.requests_remaining = 20;
    h.output_remaining = 9500;
    aq_rl_commit(rl, &r[1], &u, &h, 2000, UNIX0 + 2000);
    h.requests_remaining = 50;
    h.output_remaining = 6500;
    aq_rl_commit(rl, &r[2], &u, &h, 2000, UNIX0 + 2000);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 2000), 2000);
    assert_int_equal(avail(rl, 1, AQ_RL_SONNET, AQ_RL_REQUESTS, 2000), 20);
    assert_int_equal(avail(rl, 2, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 2000), 6000);

    /* cost 1 request, 1000 output: key-1 min(89/100, 1000/10000) = 0.10,
     * key-2 min(19/100, 8000/10000) = 0.19, key-3 min(49/100, 5000/10000) = 0.49. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 2000, &r[3], &wait), AQ_RL_GRANTED);
    assert_int_equal(r[3].key, 2);
    /* A call key-1 cannot afford at all but the others can: not key-1. */
    aq_rl_release(rl, &r[3], 2000);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 5800, 2000, &r[3], &wait), AQ_RL_GRANTED);
    assert_int_equal(r[3].key, 1); /* key-2: min(0.19, 0.22) beats key-3: min(0.49, 0.02) */
    aq_rl_destroy(rl);
}

static void test_wait_when_nothing_is_affordable(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=60,itpm=1000000000,otpm=6000", 2);
    aq_rl_reservation r[200];
    int64_t wait = 0;
    int n = 0;

    /* Drain both keys' output tokens: 6 calls of 1000 on each. */
    for (int i = 0; i < 12; i++)
        assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 0, &r[n++], &wait), AQ_RL_GRANTED);
    /* 6000/min = 100 per second: 1000 tokens take 10 s. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 0, &r[n], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 10000);
    /* Key 2 gets 500 back: it is the soonest, 5 s. */
    aq_llm_usage u = {.output_tokens = 500};
    aq_rl_commit(rl, &r[1], &u, NULL, 0, UNIX0);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 0, &r[n], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 5000);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 4999, &r[n], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 1);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 1000, 5000, &r[n], &wait), AQ_RL_GRANTED);
    assert_int_equal(r[n].key, 1);
    n++;
    /* The wait is the slowest dimension of a key: requests are plentiful
     * (60 - 7 + 5 s of refill). */
    assert_int_equal(dim_stats(rl, 1, AQ_RL_SONNET, AQ_RL_REQUESTS, 5000).available, 58);
    assert_int_equal(aq_rl_waits(rl, AQ_RL_SONNET), 3);
    assert_int_equal(aq_rl_waits(rl, AQ_RL_HAIKU), 0);
    aq_rl_destroy(rl);
}

/* A call that costs more than the whole bucket is admitted when the bucket
 * is full (it would wait forever otherwise); the debt is then repaid. */
static void test_cost_larger_than_the_limit(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("opus:rpm=1000000,itpm=1000000000,otpm=1000", 1);
    aq_rl_reservation a = AQ_RL_RESERVATION_INIT, b = AQ_RL_RESERVATION_INIT;
    int64_t wait;

    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 5000, 0, &a, &wait), AQ_RL_GRANTED);
    assert_int_equal(avail(rl, 0, AQ_RL_OPUS, AQ_RL_OUTPUT_TOKENS, 0), -4000);
    /* The next big one waits for a full bucket: 5000 tokens at 1000/min =
     * 300 s, answered as the cap (ask again). */
    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 5000, 0, &b, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, AQ_RL_MAX_WAIT_MS);
    /* A small one waits for its own cost: (4000 + 100) tokens = 246 s, capped too. */
    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 100, 0, &b, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, AQ_RL_MAX_WAIT_MS);
    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 100, 240000, &b, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 6000);
    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 5000, 299999, &b, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 1);
    assert_int_equal(acq(rl, AQ_RL_OPUS, 0, 5000, 300000, &b, &wait), AQ_RL_GRANTED);
    /* The real output refunds the debt. */
    aq_llm_usage u = {.output_tokens = 800};
    aq_rl_commit(rl, &a, &u, NULL, 300000, UNIX0);
    assert_int_equal(avail(rl, 0, AQ_RL_OPUS, AQ_RL_OUTPUT_TOKENS, 300000), 200);
    aq_rl_commit(rl, &b, &u, NULL, 300000, UNIX0);
    assert_int_equal(avail(rl, 0, AQ_RL_OPUS, AQ_RL_OUTPUT_TOKENS, 300000), 1000); /* the cap */
    aq_rl_destroy(rl);
}

/* ---- headers ---- */

static void test_headers_lower_availability(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=100,itpm=100000,otpm=1000000000", 1);
    aq_rl_reservation a = AQ_RL_RESERVATION_INIT, b = AQ_RL_RESERVATION_INIT, c = AQ_RL_RESERVATION_INIT;
    int64_t wait;
    aq_llm_ratelimit h = no_headers();
    aq_llm_usage u = {.input_tokens = 0};

    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &a, &wait), AQ_RL_GRANTED);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 1000, &c, &wait), AQ_RL_GRANTED);   /* 1500 ms old at 2500 */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 2000, &b, &wait), AQ_RL_GRANTED);   /* young at 2500 */
    /* Another worker used the key: the provider has 40 requests left. The
     * call acquired 500 ms ago is probably not counted by it yet: 39. The
     * one acquired 1500 ms ago is, and is not subtracted twice. */
    h.requests_limit = 100, h.requests_remaining = 40;
    aq_rl_commit(rl, &a, &u, &h, 2500, UNIX0 + 2500);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 2500), 39);
    aq_rl_stats st;
    assert_true(aq_rl_stats_get(rl, 0, AQ_RL_SONNET, 2500, &st));
    assert_int_equal(st.dim[AQ_RL_REQUESTS].reported_remaining, 40);
    assert_int_equal(st.dim[AQ_RL_REQUESTS].reported_reset_unix_ms, -1);
    assert_int_equal(st.dim[AQ_RL_REQUESTS].limit, 100);
    assert_false(st.dim[AQ_RL_REQUESTS].learned);
    assert_int_equal(st.dim[AQ_RL_REQUESTS].in_flight, 2);

    /* A header raises what this worker may use to what the provider
     * certainly has: its remaining minus every call granted after the
     * answered one (none after b). */
    h.requests_remaining = 95;
    aq_rl_commit(rl, &b, &u, &h, 2500, UNIX0 + 2500);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 2500), 95);

    /* Token remaining values are rounded to the thousand: 500 less is assumed. */
    h = no_headers();
    h.input_limit = 100000, h.input_remaining = 10000;
    aq_rl_commit(rl, &c, &u, &h, 2500, UNIX0 + 2500);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 2500), 9500);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 2500), 95); /* absent: untouched */
    /* ... and it refills from there at the nominal rate (no reset given). */
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 3100), 10500);
    aq_rl_destroy(rl);
}

static void test_limit_learned_from_headers(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("", 1);
    aq_rl_reservation r[120];
    int64_t wait;
    /* Nothing known: no local limit, but one probe call at a time until
     * the first answer (test_probe_until_the_first_headers). */
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 1000000, 100000, 0, &r[0], &wait), AQ_RL_GRANTED);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_HAIKU, AQ_RL_REQUESTS, 0).limit, 0);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_HAIKU, AQ_RL_REQUESTS, 0).in_flight, 1);

    /* The first response teaches rpm = 50 with 10 left. A limit just
     * learned starts at half share (a neighbour is assumed until measured). */
    aq_llm_ratelimit h = no_headers();
    h.requests_limit = 50, h.requests_remaining = 10;
    aq_llm_usage u = {.input_tokens = 10, .output_tokens = 10};
    aq_rl_commit(rl, &r[0], &u, &h, 2000, UNIX0 + 2000);
    aq_rl_dim_stats ds = dim_stats(rl, 0, AQ_RL_HAIKU, AQ_RL_REQUESTS, 2000);
    assert_int_equal(ds.limit, 50);
    assert_true(ds.learned);
    assert_true(fabs(ds.share - 0.5) < 1e-12);
    assert_int_equal(ds.available, 5);
    assert_int_equal(ds.capacity, 25);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_HAIKU, AQ_RL_INPUT_TOKENS, 2000).limit, 0); /* still unknown */
    /* Heard from: no more probing, even with the token limits unknown. */
    for (int i = 100; i < 105; i++)
        assert_int_equal(acq(rl, AQ_RL_HAIKU, 1000000, 100000, 2000, &r[i], &wait), AQ_RL_GRANTED);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 0, 0, 2000, &r[110], &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 2400); /* half of 50 per minute */
    aq_rl_destroy(rl);

    /* A configured limit stays when the provider reports more, and gives
     * way when it reports less. */
    rl = new_rl("sonnet:otpm=1000", 1);
    aq_rl_reservation a = AQ_RL_RESERVATION_INIT;
    h = no_headers();
    h.output_limit = 4000, h.output_remaining = 4000;
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &a, &wait), AQ_RL_GRANTED);
    aq_rl_commit(rl, &a, &u, &h, 0, UNIX0);
    ds = dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0);
    assert_int_equal(ds.limit, 1000);
    assert_false(ds.learned);
    assert_int_equal(ds.available, 990);
    h.output_limit = 600, h.output_remaining = 600;
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &a, &wait), AQ_RL_GRANTED);
    aq_rl_commit(rl, &a, &u, &h, 0, UNIX0);
    ds = dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0);
    assert_int_equal(ds.limit, 600);
    assert_true(ds.learned);
    assert_int_equal(ds.available, 100); /* 600 - 500 rounding slack */
    aq_rl_destroy(rl);
}

/* The reset time caps the refill: never full before the provider says. */
static void test_reset_time_caps_refill(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("other:rpm=60000", 1);
    aq_rl_reservation r = AQ_RL_RESERVATION_INIT;
    int64_t wait;
    aq_llm_usage u = {0};
    aq_llm_ratelimit h = no_headers();

    /* 60000 rpm = 1 per ms nominal. Empty, full again in 120 s: 0.5 per ms. */
    h.requests_limit = 60000, h.requests_remaining = 0;
    h.requests_reset_unix_ms = UNIX0 + 1000 + 120000;
    assert_int_equal(acq(rl, AQ_RL_OTHER, 0, 0, 1000, &r, &wait), AQ_RL_GRANTED);
    aq_rl_commit(rl, &r, &u, &h, 1000, UNIX0 + 1000);
    assert_int_equal(avail(rl, 0, AQ_RL_OTHER, AQ_RL_REQUESTS, 1000), 0);
    assert_int_equal(avail(rl, 0, AQ_RL_OTHER, AQ_RL_REQUESTS, 1010), 5);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_OTHER, AQ_RL_REQUESTS, 1010).reported_reset_unix_ms,
                     UNIX0 + 121000);
    assert_int_equal(acq(rl, AQ_RL_OTHER, 0, 0, 1000, &r, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 2);
    /* After the reset time the nominal rate applies again. */
    assert_int_equal(avail(rl, 0, AQ_RL_OTHER, AQ_RL_REQUESTS, 121000), 60000);
    assert_int_equal(avail(rl, 0, AQ_RL_OTHER, AQ_RL_REQUESTS, 101000), 50000);

    aq_rl_destroy(rl);

    /* A reset consistent with continuous refill (30000 missing, 30 s) changes
     * nothing; one in the past, too far ahead, absent, or without the
     * caller's wall clock neither. */
    const int64_t t = 200000;
    int64_t resets[] = {UNIX0 + t + 30000, UNIX0 + t - 5, UNIX0 + t + 3600000, -1, UNIX0 + t + 120000};
    for (size_t i = 0; i < sizeof(resets) / sizeof(resets[0]); i++) {
        rl = new_rl("other:rpm=60000", 1);
        h.requests_remaining = 30000;
        h.requests_reset_unix_ms = resets[i];
        assert_int_equal(acq(rl, AQ_RL_OTHER, 0, 0, t, &r, &wait), AQ_RL_GRANTED);
        aq_rl_commit(rl, &r, &u, &h, t, i == 4 ? -1 : UNIX0 + t);
        assert_int_equal(avail(rl, 0, AQ_RL_OTHER, AQ_RL_REQUESTS, t), 30000);
        assert_int_equal(avail(rl, 0, AQ_RL_OTHER, AQ_RL_REQUESTS, t + 1000), 31000);
        aq_rl_destroy(rl);
    }
}

/* ---- 429 ---- */

static void test_429_pauses_the_key(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=100," BIG_TOKENS, 2);
    aq_rl_reservation a = AQ_RL_RESERVATION_INIT, b = AQ_RL_RESERVATION_INIT, c = AQ_RL_RESERVATION_INIT;
    aq_rl_reservation d = AQ_RL_RESERVATION_INIT, e = AQ_RL_RESERVATION_INIT;
    int64_t wait;
    aq_rl_stats st;

    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &a, &wait), AQ_RL_GRANTED);
    assert_int_equal(a.key, 0);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &b, &wait), AQ_RL_GRANTED);
    assert_int_equal(b.key, 1);
    /* Key-1 answers 429, retry after 5 s: refunded, paused, and its share
     * halved (the fleet took more than the key gives). */
    aq_rl_rate_limited(rl, &a, 5000, NULL, 100, UNIX0 + 100);
    assert_true(aq_rl_stats_get(rl, 0, AQ_RL_SONNET, 100, &st));
    assert_int_equal(st.paused_ms, 5000);
    assert_int_equal(st.pauses, 1);
    assert_int_equal(st.dim[AQ_RL_REQUESTS].in_flight, 0);
    assert_true(fabs(st.dim[AQ_RL_REQUESTS].share - 0.5) < 1e-12);
    assert_int_equal(st.dim[AQ_RL_REQUESTS].capacity, 50);
    assert_int_equal(st.dim[AQ_RL_REQUESTS].available, 50);
    /* Paused: key-2 it is, until 5100. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 100, &c, &wait), AQ_RL_GRANTED);
    assert_int_equal(c.key, 1);
    aq_rl_release(rl, &c, 100);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 5099, &c, &wait), AQ_RL_GRANTED);
    assert_int_equal(c.key, 1);
    aq_rl_release(rl, &c, 5099);
    assert_true(aq_rl_stats_get(rl, 0, AQ_RL_SONNET, 5100, &st));
    assert_int_equal(st.paused_ms, 0);
    /* At 5100 key-1 is back: with key-2 paused in turn, it is chosen. */
    aq_rl_rate_limited(rl, &b, 10000, NULL, 5100, UNIX0 + 5100);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 5100, &c, &wait), AQ_RL_GRANTED);
    assert_int_equal(c.key, 0);
    /* Other classes of the same key are not paused. */
    assert_true(aq_rl_stats_get(rl, 1, AQ_RL_HAIKU, 5100, &st));
    assert_int_equal(st.paused_ms, 0);

    /* No retry-after: the default pause. The share is halved once per
     * measurement window, not once per 429. */
    aq_rl_rate_limited(rl, &c, -1, NULL, 20000, UNIX0 + 20000);
    assert_true(aq_rl_stats_get(rl, 0, AQ_RL_SONNET, 20000, &st));
    assert_int_equal(st.paused_ms, AQ_RL_DEFAULT_PAUSE_MS);
    assert_int_equal(st.pauses, 2);
    assert_true(fabs(st.dim[AQ_RL_REQUESTS].share - 0.5) < 1e-12);
    /* A huge retry-after is capped; a shorter pause does not cut a longer one. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 20000, &d, &wait), AQ_RL_GRANTED);
    assert_int_equal(d.key, 1);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 20000, &e, &wait), AQ_RL_GRANTED);
    assert_int_equal(e.key, 1);
    aq_rl_rate_limited(rl, &d, 600000, NULL, 20000, UNIX0 + 20000);
    assert_true(aq_rl_stats_get(rl, 1, AQ_RL_SONNET, 20000, &st));
    assert_int_equal(st.paused_ms, AQ_RL_MAX_PAUSE_MS);
    aq_rl_rate_limited(rl, &e, 1000, NULL, 21000, UNIX0 + 21000);
    assert_true(aq_rl_stats_get(rl, 1, AQ_RL_SONNET, 21000, &st));
    assert_int_equal(st.paused_ms, AQ_RL_MAX_PAUSE_MS - 1000);
    assert_int_equal(st.pauses, 3);
    aq_rl_destroy(rl);
}

static void test_all_keys_paused(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("haiku:rpm=100", 2);
    aq_rl_reservation a = AQ_RL_RESERVATION_INIT, b = AQ_RL_RESERVATION_INIT, c = AQ_RL_RESERVATION_INIT;
    int64_t wait;
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 0, 0, 0, &a, &wait), AQ_RL_GRANTED);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 0, 0, 0, &b, &wait), AQ_RL_GRANTED);
    /* 429 with headers: the pause, and the remaining of 0 is taken in. */
    aq_llm_ratelimit h = no_headers();
    h.requests_limit = 100, h.requests_remaining = 0;
    aq_rl_rate_limited(rl, &a, 7000, &h, 0, UNIX0);
    aq_rl_rate_limited(rl, &b, 3000, NULL, 0, UNIX0);
    assert_int_equal(avail(rl, 0, AQ_RL_HAIKU, AQ_RL_REQUESTS, 0), 0);
    assert_int_equal(avail(rl, 1, AQ_RL_HAIKU, AQ_RL_REQUESTS, 0), 50); /* refunded, share halved */
    /* The first to unpause is key-2, in 3 s. */
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 0, 0, 0, &c, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 3000);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 0, 0, 2999, &c, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 1);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 0, 0, 3000, &c, &wait), AQ_RL_GRANTED);
    assert_int_equal(c.key, 1);
    aq_rl_destroy(rl);

    /* Paused and empty: the later of the two (refill at half rate after the
     * 429: one request in 2 s, longer than the 0.5 s pause). */
    rl = new_rl("haiku:rpm=60", 1);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 0, 0, 0, &a, &wait), AQ_RL_GRANTED);
    h.requests_limit = 60, h.requests_remaining = 0;
    aq_rl_rate_limited(rl, &a, 500, &h, 0, UNIX0);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 0, 0, 0, &c, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 2000);
    aq_rl_destroy(rl);
}

/* ---- finish: which outcomes count as reached ---- */

static aq_llm_call_result call_result(aq_status transport, long status)
{
    aq_llm_call_result c;
    memset(&c, 0, sizeof(c));
    c.transport = transport;
    c.http_status = status;
    c.body = c.request_id = c.error = "";
    c.retry_after_ms = -1;
    c.ratelimit = no_headers();
    return c;
}

static void test_finish_dispatch(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=1000,itpm=100000,otpm=100000", 1);
    aq_rl_reservation r = AQ_RL_RESERVATION_INIT;
    int64_t wait;
    aq_llm_usage u = {.input_tokens = 100, .output_tokens = 50, .cache_read_input_tokens = 900};
#define AVAIL(d) avail(rl, 0, AQ_RL_SONNET, d, 0)

    /* Could not connect, no status: never sent, refunded. */
    aq_llm_call_result c = call_result(AQ_HTTP_CONNECT, 0);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 2000, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_finish(rl, &r, &c, NULL, 0, UNIX0);
    assert_int_equal(AVAIL(AQ_RL_REQUESTS), 1000);
    assert_int_equal(AVAIL(AQ_RL_INPUT_TOKENS), 100000);
    assert_int_equal(AVAIL(AQ_RL_OUTPUT_TOKENS), 100000);
    /* No result at all: the same. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 2000, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_finish(rl, &r, NULL, NULL, 0, UNIX0);
    assert_int_equal(AVAIL(AQ_RL_REQUESTS), 1000);

    /* 200 with usage: corrected to it. */
    c = call_result(AQ_OK, 200);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 2000, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_finish(rl, &r, &c, &u, 0, UNIX0);
    assert_int_equal(AVAIL(AQ_RL_REQUESTS), 999);
    assert_int_equal(AVAIL(AQ_RL_INPUT_TOKENS), 99900);
    assert_int_equal(AVAIL(AQ_RL_OUTPUT_TOKENS), 99950);

    /* An error answer (500, 529, 400): counted, with the input estimate, no output. */
    c = call_result(AQ_OK, 529);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 2000, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_finish(rl, &r, &c, NULL, 0, UNIX0);
    assert_int_equal(AVAIL(AQ_RL_REQUESTS), 998);
    assert_int_equal(AVAIL(AQ_RL_INPUT_TOKENS), 98900);
    assert_int_equal(AVAIL(AQ_RL_OUTPUT_TOKENS), 99950);

    /* Timed out after sending: it may have run in full; kept as reserved. */
    c = call_result(AQ_HTTP_TIMEOUT, 0);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 2000, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_finish(rl, &r, &c, NULL, 0, UNIX0);
    assert_int_equal(AVAIL(AQ_RL_REQUESTS), 997);
    assert_int_equal(AVAIL(AQ_RL_INPUT_TOKENS), 97900);
    assert_int_equal(AVAIL(AQ_RL_OUTPUT_TOKENS), 97950);
    /* A connection failure after a status line: the same, and its headers count. */
    c = call_result(AQ_HTTP_CONNECT, 200);
    c.ratelimit.requests_limit = 1000, c.ratelimit.requests_remaining = 900;
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_finish(rl, &r, &c, NULL, 0, UNIX0);
    assert_int_equal(AVAIL(AQ_RL_REQUESTS), 900);
    /* 200 whose body did not parse: kept as reserved. */
    c = call_result(AQ_OK, 200);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 2000, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_finish(rl, &r, &c, NULL, 0, UNIX0);
    assert_int_equal(AVAIL(AQ_RL_OUTPUT_TOKENS), 95950);

    /* 429: refunded, paused for the retry-after (and the share halved). */
    c = call_result(AQ_OK, 429);
    c.retry_after_ms = 4000;
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 2000, 0, &r, &wait), AQ_RL_GRANTED);
    assert_int_equal(AVAIL(AQ_RL_OUTPUT_TOKENS), 93950);
    aq_rl_finish(rl, &r, &c, NULL, 0, UNIX0);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_OUTPUT_TOKENS, 0).in_flight, 0);
    assert_int_equal(AVAIL(AQ_RL_REQUESTS), 500);
    assert_int_equal(AVAIL(AQ_RL_OUTPUT_TOKENS), 50000);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &r, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, 4000);
#undef AVAIL
    aq_rl_destroy(rl);
}

/* Finishing with the wrong limiter does nothing. */
static void test_reservation_misuse_is_harmless(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=10", 1), *other = new_rl("sonnet:rpm=10", 1);
    aq_rl_reservation r = AQ_RL_RESERVATION_INIT;
    int64_t wait;
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &r, &wait), AQ_RL_GRANTED);
    aq_rl_release(other, &r, 0);
    aq_rl_commit(other, &r, NULL, NULL, 0, UNIX0);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 0).in_flight, 1);
    assert_int_equal(avail(other, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 0), 10);
    aq_rl_release(rl, &r, 0);
    assert_int_equal(dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 0).in_flight, 0);
    /* An out-of-range class is "other". */
    assert_int_equal(acq(rl, (aq_rl_class)42, 0, 0, 0, &r, &wait), AQ_RL_GRANTED);
    assert_int_equal(r.cls, AQ_RL_OTHER);
    aq_rl_release(rl, &r, 0);
    aq_rl_destroy(rl);
    aq_rl_destroy(other);
}

/* ---- the fleet: share of a key ---- */

/* One worker on a key that someone else uses as much: the headers show it,
 * the share drops to one half; when the other stops, it comes back to 1. */
static void test_share_follows_the_others(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=600," BIG_TOKENS, 1); /* 0.01 per ms */
    aq_rl_reservation r[21];
    int64_t wait;
    aq_llm_usage u = {0};
    aq_llm_ratelimit h = no_headers();
    h.requests_limit = 600;

    /* t=0: the first header opens the measurement: the provider has 300. */
    assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 0, &r[0], &wait), AQ_RL_GRANTED);
    h.requests_remaining = 300;
    aq_rl_commit(rl, &r[0], &u, &h, 0, UNIX0);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 0), 300);
    /* t=100: 20 calls of ours. */
    for (int i = 1; i <= 20; i++)
        assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 100, &r[i], &wait), AQ_RL_GRANTED);
    for (int i = 1; i < 20; i++)
        aq_rl_commit(rl, &r[i], &u, NULL, 4000, UNIX0 + 4000);
    /* t=5000: refill 50, ours 20, so alone it would be 330; it is 310: the
     * others took 20 too. Share 20 / (20 + 20). */
    h.requests_remaining = 310;
    aq_rl_commit(rl, &r[20], &u, &h, 5000, UNIX0 + 5000);
    aq_rl_dim_stats ds = dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 5000);
    assert_true(fabs(ds.share - 0.5) < 1e-12);
    assert_int_equal(ds.capacity, 300);
    assert_int_equal(ds.available, 155); /* min(330, 0.5 x 310) */
    /* Refill at half the rate: 1000 ms -> 5. */
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 6000), 160);

    /* Next window: only ours (20 at t=6000), the provider agrees: share 1. */
    for (int i = 1; i <= 20; i++)
        assert_int_equal(acq(rl, AQ_RL_SONNET, 0, 0, 6000, &r[i], &wait), AQ_RL_GRANTED);
    for (int i = 1; i < 20; i++)
        aq_rl_commit(rl, &r[i], &u, NULL, 9000, UNIX0 + 9000);
    h.requests_remaining = 340; /* 310 + 50 - 20 */
    aq_rl_commit(rl, &r[20], &u, &h, 10000, UNIX0 + 10000);
    ds = dim_stats(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 10000);
    assert_true(fabs(ds.share - 1.0) < 1e-12);
    assert_int_equal(ds.capacity, 600);
    /* 140 + 4000 ms at half rate = 160, raised by the header to what the
     * provider has (nothing of ours was granted after the answered call). */
    assert_int_equal(ds.available, 340);
    aq_rl_destroy(rl);
}

/* A deterministic simulation: N workers (each its own limiter, as in
 * separate processes) share one key against a provider that enforces
 * continuous token buckets like the real one (all three dimensions charged
 * on arrival, output at max_tokens corrected at the end, 429 when short,
 * token remaining values rounded to the thousand, reset times). Each worker
 * always has work and up to 64 calls in flight. */
typedef struct sim_call {
    int state;            /* 0 free, 1 travelling to the provider, 2 running, 3 answer travelling back */
    int worker;
    int64_t t;            /* time of the next step */
    int64_t in_real, out_real, max_tokens;
    int rejected;
    aq_llm_ratelimit hdr;
    int64_t retry_after_ms;
    aq_rl_reservation res;
} sim_call;

#define SIM_MAX_WORKERS 10
#define SIM_MAX_CONC 256

/* The shape of the traffic; fleet_default for the tests that do not say. */
typedef struct fleet_opts {
    int conc;                /* calls in flight per worker at full load */
    int64_t net_ms;          /* one way, worker <-> provider */
    int64_t run_min_ms, run_spread_ms, ms_per_token; /* a call runs min + rand(spread) + out x per_token */
    int64_t max_tokens_min;  /* > 0: max_tokens uniform in [this, max_tokens] per call */
} fleet_opts;

static const fleet_opts fleet_default = {64, 40, 1000, 6000, 5, 0};
static fleet_opts fleet = {64, 40, 1000, 6000, 5, 0};

typedef struct sim_provider {
    int64_t limit[3], level[3]; /* level in 1/60000 units */
    int64_t last;
} sim_provider;

static uint64_t sim_rand_state;
static uint64_t sim_rand(void)
{
    sim_rand_state = sim_rand_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return sim_rand_state >> 33;
}

static void prov_refill(sim_provider *p, int64_t now)
{
    for (int d = 0; d < 3; d++) {
        p->level[d] += (now - p->last) * p->limit[d];
        if (p->level[d] > p->limit[d] * 60000)
            p->level[d] = p->limit[d] * 60000;
    }
    p->last = now;
}

static void prov_headers(const sim_provider *p, int64_t now, aq_llm_ratelimit *h)
{
    int64_t rem[3], reset[3];
    for (int d = 0; d < 3; d++) {
        int64_t lv = p->level[d] < 0 ? 0 : p->level[d];
        rem[d] = lv / 60000;
        if (d > 0)
            rem[d] = (rem[d] + 500) / 1000 * 1000; /* rounded to the nearest thousand */
        /* whole seconds, like an RFC 3339 timestamp without fractions */
        int64_t full_at = UNIX0 + now + (p->limit[d] * 60000 - lv) / p->limit[d];
        reset[d] = full_at / 1000 * 1000;
    }
    h->requests_limit = p->limit[0], h->requests_remaining = rem[0], h->requests_reset_unix_ms = reset[0];
    h->input_limit = p->limit[1], h->input_remaining = rem[1], h->input_reset_unix_ms = reset[1];
    h->output_limit = p->limit[2], h->output_remaining = rem[2], h->output_reset_unix_ms = reset[2];
}

typedef struct sim_outcome {
    uint64_t sent, rejected, done;
    uint64_t sent_all, rejected_all; /* from t = 0, the start included */
    double use[3]; /* fraction of each limit used over the measured span */
} sim_outcome;

/* Until `light_until_ms` each worker keeps one call in flight (light
 * load), then as many as fleet.conc. 429s and use are counted from
 * `warmup_ms` on. */
static sim_outcome run_fleet(int n_workers, const char *limits, const int64_t plimit[3], int64_t in_mean,
                             int64_t max_tokens, int64_t out_mean, int64_t duration_ms, int64_t warmup_ms,
                             int64_t light_until_ms)
{
    static sim_call calls[SIM_MAX_WORKERS * SIM_MAX_CONC];
    aq_rl *rl[SIM_MAX_WORKERS];
    int64_t next_try[SIM_MAX_WORKERS];
    int in_flight[SIM_MAX_WORKERS];
    sim_provider p;
    sim_outcome o;
    int64_t used[3] = {0, 0, 0};

    memset(calls, 0, sizeof(calls));
    memset(&o, 0, sizeof(o));
    memset(&p, 0, sizeof(p));
    sim_rand_state = 42;
    for (int d = 0; d < 3; d++) {
        p.limit[d] = plimit[d];
        p.level[d] = plimit[d] * 60000;
    }
    for (int w = 0; w < n_workers; w++) {
        rl[w] = new_rl(limits, 1);
        next_try[w] = (int64_t)(sim_rand() % 50);
        in_flight[w] = 0;
    }

    int64_t now = 0;
    while (now < duration_ms) {
        /* The next thing to happen. */
        int64_t next = duration_ms;
        for (int w = 0; w < n_workers; w++)
            if (in_flight[w] < (next_try[w] < light_until_ms ? 1 : fleet.conc) && next_try[w] < next)
                next = next_try[w];
        for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
            if (calls[i].state && calls[i].t < next)
                next = calls[i].t;
        if (now < light_until_ms && light_until_ms < next)
            next = light_until_ms;
        if (next < now)
            next = now;
        now = next;
        if (now >= duration_ms)
            break;
        prov_refill(&p, now);

        for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
            sim_call *c = &calls[i];
            if (!c->state || c->t != now)
                continue;
            if (c->state == 1) { /* arrives at the provider */
                int64_t cost[3] = {1, c->in_real, c->max_tokens};
                int ok = 1;
                for (int d = 0; d < 3; d++)
                    if (p.level[d] < cost[d] * 60000)
                        ok = 0;
                if (!ok) {
                    c->rejected = 1;
                    int64_t worst = 0;
                    for (int d = 0; d < 3; d++) {
                        int64_t missing = cost[d] * 60000 - p.level[d];
                        int64_t t = missing > 0 ? (missing + p.limit[d] - 1) / p.limit[d] : 0;
                        if (t > worst)
                            worst = t;
                    }
                    c->retry_after_ms = (worst + 999) / 1000 * 1000; /* whole seconds */
                    prov_headers(&p, now, &c->hdr);
                    c->state = 3;
                    c->t = now + fleet.net_ms;
                } else {
                    for (int d = 0; d < 3; d++)
                        p.level[d] -= cost[d] * 60000;
                    if (now >= warmup_ms) {
                        used[0] += 1;
                        used[1] += c->in_real;
                    }
                    c->state = 2;
                    c->t = now + fleet.run_min_ms + (int64_t)(sim_rand() % (uint64_t)fleet.run_spread_ms) +
                           c->out_real * fleet.ms_per_token;
                }
            } else if (c->state == 2) { /* generation ends */
                p.level[2] += (c->max_tokens - c->out_real) * 60000;
                if (p.level[2] > p.limit[2] * 60000)
                    p.level[2] = p.limit[2] * 60000;
                if (now >= warmup_ms)
                    used[2] += c->out_real;
                prov_headers(&p, now, &c->hdr);
                c->state = 3;
                c->t = now + fleet.net_ms;
            } else if (c->state == 3) { /* the answer arrives at the worker */
                int w = c->worker;
                if (c->rejected) {
                    aq_rl_rate_limited(rl[w], &c->res, c->retry_after_ms, &c->hdr, now, UNIX0 + now);
                    o.rejected_all++;
                    if (now >= warmup_ms)
                        o.rejected++;
                } else {
                    aq_llm_usage u = {.input_tokens = (uint32_t)c->in_real,
                                      .output_tokens = (uint32_t)c->out_real};
                    aq_rl_commit(rl[w], &c->res, &u, &c->hdr, now, UNIX0 + now);
                    if (now >= warmup_ms)
                        o.done++;
                }
                c->state = 0;
                in_flight[w]--;
                if (next_try[w] > now)
                    next_try[w] = now;
            }
        }

        for (int w = 0; w < n_workers; w++) {
            while (in_flight[w] < (now < light_until_ms ? 1 : fleet.conc) && next_try[w] <= now) {
                size_t i = 0;
                while (calls[i].state)
                    i++;
                sim_call *c = &calls[i];
                int64_t in_real = in_mean / 2 + (int64_t)(sim_rand() % (uint64_t)in_mean);
                int64_t est = in_real + in_real / 10 - (int64_t)(sim_rand() % (uint64_t)(in_real / 5 + 1));
                int64_t out_real = out_mean / 2 + (int64_t)(sim_rand() % (uint64_t)out_mean);
                int64_t mt = max_tokens;
                if (fleet.max_tokens_min > 0)
                    mt = fleet.max_tokens_min +
                         (int64_t)(sim_rand() % (uint64_t)(max_tokens - fleet.max_tokens_min + 1));
                if (out_real > mt)
                    out_real = mt;
                int64_t wait = 0;
                memset(&c->res, 0, sizeof(c->res));
                if (aq_rl_acquire(rl[w], AQ_RL_SONNET, est, mt, now, &c->res, &wait) == AQ_RL_WAIT) {
                    next_try[w] = now + wait;
                    break;
                }
                c->state = 1;
                c->worker = w;
                c->t = now + fleet.net_ms;
                c->in_real = in_real;
                c->out_real = out_real;
                c->max_tokens = mt;
                c->rejected = 0;
                in_flight[w]++;
                o.sent_all++;
                if (now >= warmup_ms)
                    o.sent++;
            }
        }
    }
    double minutes = (double)(duration_ms - warmup_ms) / 60000.0;
    for (int d = 0; d < 3; d++)
        o.use[d] = (double)used[d] / ((double)plimit[d] * minutes);
    for (int w = 0; w < n_workers; w++)
        aq_rl_destroy(rl[w]);
    return o;
}

static void check_fleet(int n, const char *limits, const int64_t plimit[3], int64_t in_mean, int64_t max_tokens,
                        int64_t out_mean, int bound_dim)
{
    sim_outcome o = run_fleet(n, limits, plimit, in_mean, max_tokens, out_mean, 600000, 60000, 0);
    double rej = o.sent ? (double)o.rejected / (double)o.sent : 1.0;
    print_message("fleet of %d, limits \"%s\": sent %llu, 429 %llu (%.3f%%), use rpm %.3f itpm %.3f otpm %.3f\n",
                  n, limits, (unsigned long long)o.sent, (unsigned long long)o.rejected, 100.0 * rej, o.use[0],
                  o.use[1], o.use[2]);
    assert_true(o.sent > 0);
    assert_true(rej < 0.01);               /* under 1% of calls answered 429 */
    assert_true(o.use[bound_dim] > 0.80);  /* and the limit is used, not starved */
    /* at most the limit plus one full bucket over the measured minutes */
    assert_true(o.use[bound_dim] < 1.0 + 60000.0 / (600000 - 60000) + 0.01);
}

/* From light load to full load at once: every worker measured its share as
 * 1 (the others' use was invisible: the provider's bucket was full), so the
 * first burst takes up to N buckets and draws 429s (reported, not bounded
 * here); then the 429 halving and the measurement bring the fleet under the
 * limit within seconds, and it stays there. */
static void test_fleet_ramp_from_light_load(void **state)
{
    (void)state;
    const int64_t out_bound[3] = {1000, 10000000, 80000};
    int sizes[] = {1, 3, 8};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int n = sizes[i];
        sim_outcome burst = run_fleet(n, "", out_bound, 500, 1000, 600, 600000, 120000, 120000);
        sim_outcome after = run_fleet(n, "", out_bound, 500, 1000, 600, 600000, 150000, 120000);
        double rej = (double)after.rejected / (double)after.sent;
        print_message("ramp, fleet of %d: 429 from the ramp on %llu of %llu; from 30 s after it %llu of %llu "
                      "(%.3f%%), otpm use %.3f\n",
                      n, (unsigned long long)burst.rejected, (unsigned long long)burst.sent,
                      (unsigned long long)after.rejected, (unsigned long long)after.sent, 100.0 * rej,
                      after.use[AQ_RL_OUTPUT_TOKENS]);
        if (n == 1)
            assert_int_equal(burst.rejected, 0); /* alone, not even the ramp */
        assert_true(rej < 0.01);
        assert_true(after.use[AQ_RL_OUTPUT_TOKENS] > 0.80);
    }
}

static void test_fleet_stays_under_the_limit(void **state)
{
    (void)state;
    /* Input-bound: 200 calls per minute of ~2000 input tokens. */
    const int64_t in_bound[3] = {1000, 400000, 400000};
    /* Output-bound: ~600 output tokens of max 1000, 80000 per minute. */
    const int64_t out_bound[3] = {1000, 10000000, 80000};
    /* Request-bound. */
    const int64_t req_bound[3] = {120, 10000000, 10000000};
    int sizes[] = {1, 3, 8};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        check_fleet(sizes[i], "", in_bound, 2000, 1000, 300, AQ_RL_INPUT_TOKENS);
        check_fleet(sizes[i], "", out_bound, 500, 1000, 600, AQ_RL_OUTPUT_TOKENS);
        check_fleet(sizes[i], "sonnet:rpm=120", req_bound, 500, 1000, 300, AQ_RL_REQUESTS);
    }
}

/* Benchmark B3's traffic: a worker starts with 256 tasks and no limits
 * configured, calls of 100-500 ms, 1 ms away from a provider that counts a
 * call when it arrives and writes the headers when it answers (agentq-sim);
 * ~1000 input tokens a call (the binding limit), max_tokens 64-1024. From the
 * very start (the learning included): at most 1% of calls answered 429, and
 * at least 0.9 of the input limit used once the first bucket is spent. */
static void test_fleet_like_b3(void **state)
{
    (void)state;
    const int64_t b3[3] = {600, 300000, 120000};
    fleet = (fleet_opts){.conc = 256, .net_ms = 1, .run_min_ms = 100, .run_spread_ms = 400,
                         .ms_per_token = 0, .max_tokens_min = 64};
    for (int n = 1; n <= 3; n++) {
        sim_outcome o = run_fleet(n, "", b3, 1000, 1024, 310, 120000, 10000, 0);
        double rej = o.sent_all ? (double)o.rejected_all / (double)o.sent_all : 1.0;
        print_message("B3-like, %d worker(s): sent %llu, 429 %llu (%.3f%%), use rpm %.3f itpm %.3f otpm %.3f\n", n,
                      (unsigned long long)o.sent_all, (unsigned long long)o.rejected_all, 100.0 * rej, o.use[0],
                      o.use[1], o.use[2]);
        if (n > 2)
            continue; /* three workers that start together exceed the assumed share once: reported only */
        assert_true(rej <= 0.01);
        assert_true(o.use[AQ_RL_INPUT_TOKENS] >= 0.9);
        assert_true(o.use[AQ_RL_INPUT_TOKENS] < 1.0 + 60000.0 / 110000 + 0.01);
    }
    fleet = fleet_default;
}

/* Without a known limit every call would be granted: one probe call per
 * (key, class) at a time until an answer with headers arrives. */
static void test_probe_until_the_first_headers(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("", 2);
    aq_rl_reservation a = AQ_RL_RESERVATION_INIT, b = AQ_RL_RESERVATION_INIT, c = AQ_RL_RESERVATION_INIT;
    aq_rl_reservation d = AQ_RL_RESERVATION_INIT, e[10];
    int64_t wait = 0;
    aq_llm_usage u = {.input_tokens = 10, .output_tokens = 10};

    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 1000, 0, &a, &wait), AQ_RL_GRANTED);
    assert_int_equal(a.key, 0);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 1000, 0, &b, &wait), AQ_RL_GRANTED); /* each key probes */
    assert_int_equal(b.key, 1);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 1000, 0, &c, &wait), AQ_RL_WAIT);
    assert_int_equal(wait, AQ_RL_PROBE_WAIT_MS);
    assert_int_equal(acq(rl, AQ_RL_HAIKU, 1000, 1000, 0, &c, &wait), AQ_RL_GRANTED); /* per class */
    aq_rl_release(rl, &c, 0);
    /* The probe never reached the provider: the next call probes instead. */
    aq_rl_release(rl, &a, 10);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 1000, 10, &c, &wait), AQ_RL_GRANTED);
    assert_int_equal(c.key, 0);
    /* An answer without headers (a timeout, say) taught nothing: still one at a time. */
    aq_rl_commit(rl, &c, NULL, NULL, 20, UNIX0 + 20);
    assert_false(aq_rl_heard(rl, 0, AQ_RL_SONNET));
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 1000, 20, &c, &wait), AQ_RL_GRANTED);
    assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 1000, 20, &d, &wait), AQ_RL_WAIT);
    /* Any answer with headers ends the probing, even one without rate-limit
     * values (a provider that sends none is not probed forever). */
    aq_llm_ratelimit h = no_headers();
    aq_rl_commit(rl, &c, &u, &h, 30, UNIX0 + 30);
    assert_true(aq_rl_heard(rl, 0, AQ_RL_SONNET));    /* what tells the caller to ask again now */
    assert_false(aq_rl_heard(rl, 1, AQ_RL_SONNET));
    assert_false(aq_rl_heard(rl, 0, AQ_RL_HAIKU));
    assert_false(aq_rl_heard(rl, 2, AQ_RL_SONNET));   /* out of range */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 1000, 30, &e[i], &wait), AQ_RL_GRANTED);
        assert_int_equal(e[i].key, 0); /* key 2 is still probing */
    }
    for (int i = 0; i < 10; i++)
        aq_rl_release(rl, &e[i], 30);
    aq_rl_release(rl, &b, 30);
    aq_rl_destroy(rl);

    /* A class with every limit configured starts full: nothing to probe. */
    rl = new_rl("sonnet:rpm=100," BIG_TOKENS, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 1000, 0, &e[i], &wait), AQ_RL_GRANTED);
    aq_rl_destroy(rl);
}

/* A burst granted in one millisecond reaches the provider at once, and every
 * answer's remaining already counts it. The calls granted before the
 * answered one are not taken off again, and a later answer brings the level
 * back up (in B3 a burst left it at -165k input tokens, refilling slowly for
 * a minute, while the provider's bucket was full). */
static void test_burst_counted_once(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=1000,itpm=100000,otpm=1000000000", 1);
    aq_rl_reservation r[50];
    int64_t wait;
    aq_llm_usage u = {.input_tokens = 1000};
    aq_llm_ratelimit h = no_headers();

    for (int i = 0; i < 50; i++)
        assert_int_equal(acq(rl, AQ_RL_SONNET, 1000, 0, 0, &r[i], &wait), AQ_RL_GRANTED);
    /* The first of the burst answers: the provider counted all 50. The 49
     * granted after it may not have been counted when it wrote the headers:
     * they are taken off (500 = 50000 - 500 slack - 49000). */
    h.input_limit = 100000, h.input_remaining = 50000;
    h.requests_limit = 1000, h.requests_remaining = 950;
    aq_rl_commit(rl, &r[0], &u, &h, 200, UNIX0 + 200);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 200), 500);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 200), 901);
    /* The last of the burst answers: nothing of ours came after it, so what
     * the provider reports is certainly free (less the rounding slack). */
    aq_rl_commit(rl, &r[49], &u, &h, 300, UNIX0 + 300);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 300), 49500);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_REQUESTS, 300), 950);
    for (int i = 1; i < 49; i++)
        aq_rl_commit(rl, &r[i], &u, NULL, 300, UNIX0 + 300);
    aq_rl_destroy(rl);
}

/* The floor is the provider's remaining: it says nothing about a budget the
 * operator set below the provider's limit. */
static void test_floor_keeps_a_configured_budget(void **state)
{
    (void)state;
    aq_rl *rl = new_rl("sonnet:rpm=1000,itpm=10000,otpm=1000000000", 1);
    aq_rl_reservation r = AQ_RL_RESERVATION_INIT;
    int64_t wait;
    aq_llm_usage u = {.input_tokens = 8000};
    aq_llm_ratelimit h = no_headers();
    assert_int_equal(acq(rl, AQ_RL_SONNET, 8000, 0, 0, &r, &wait), AQ_RL_GRANTED);
    h.input_limit = 100000, h.input_remaining = 90000;
    aq_rl_commit(rl, &r, &u, &h, 0, UNIX0);
    assert_int_equal(avail(rl, 0, AQ_RL_SONNET, AQ_RL_INPUT_TOKENS, 0), 2000);
    aq_rl_destroy(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_class),
        cmocka_unit_test(test_limits_parse_valid),
        cmocka_unit_test(test_limits_parse_errors),
        cmocka_unit_test(test_new_checks_config),
        cmocka_unit_test(test_refill_whole_and_partial_minutes),
        cmocka_unit_test(test_refill_large_limits_do_not_overflow),
        cmocka_unit_test(test_commit_and_release_correct_the_charge),
        cmocka_unit_test(test_choose_key_with_most_headroom),
        cmocka_unit_test(test_wait_when_nothing_is_affordable),
        cmocka_unit_test(test_cost_larger_than_the_limit),
        cmocka_unit_test(test_headers_lower_availability),
        cmocka_unit_test(test_limit_learned_from_headers),
        cmocka_unit_test(test_reset_time_caps_refill),
        cmocka_unit_test(test_429_pauses_the_key),
        cmocka_unit_test(test_all_keys_paused),
        cmocka_unit_test(test_finish_dispatch),
        cmocka_unit_test(test_reservation_misuse_is_harmless),
        cmocka_unit_test(test_share_follows_the_others),
        cmocka_unit_test(test_fleet_stays_under_the_limit),
        cmocka_unit_test(test_fleet_ramp_from_light_load),
        cmocka_unit_test(test_probe_until_the_first_headers),
        cmocka_unit_test(test_burst_counted_once),
        cmocka_unit_test(test_floor_keeps_a_configured_budget),
        cmocka_unit_test(test_fleet_like_b3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
