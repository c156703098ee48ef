/* agentq-sim's rate limits: token-bucket arithmetic on an injected clock,
 * charge / refund / correction, retry-after, header values, the key cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_ratelimit.h"

#define T0 1000000 /* an arbitrary monotonic start, in ms */

enum { RQ = AQ_SIM_RL_REQUESTS, IN = AQ_SIM_RL_INPUT_TOKENS, OUT = AQ_SIM_RL_OUTPUT_TOKENS };

static aq_sim_ratelimit *make(int64_t rpm, int64_t itpm, int64_t otpm, bool enforce, size_t max_keys)
{
    aq_sim_rl_limits lim = {rpm, itpm, otpm};
    aq_sim_rl_options opts = {.enforce = enforce, .max_keys = max_keys};
    aq_sim_ratelimit *rl = NULL;
    aq_err err = {0};
    assert_int_equal(aq_sim_ratelimit_create(&lim, &opts, &rl, &err), AQ_OK);
    return rl;
}

static aq_sim_rl_decision admit(aq_sim_ratelimit *rl, const char *key, int64_t in, int64_t out, int64_t now,
                                aq_sim_rl_ticket *t, aq_sim_rl_state *v)
{
    aq_sim_rl_decision d;
    aq_sim_ratelimit_admit(rl, key, strlen(key), in, out, now, t, &d, v);
    return d;
}

static aq_sim_rl_state look(aq_sim_ratelimit *rl, const char *key, int64_t now)
{
    aq_sim_rl_state v;
    aq_sim_ratelimit_observe(rl, key, strlen(key), now, &v);
    return v;
}

static void test_buckets_start_full_and_refill_continuously(void **state)
{
    (void)state;
    aq_sim_ratelimit *rl = make(60, 6000, 600, true, 0);
    aq_sim_rl_ticket t;
    aq_sim_rl_state v = look(rl, "k", T0);

    assert_int_equal(v.limit[RQ], 60);
    assert_int_equal(v.limit[IN], 6000);
    assert_int_equal(v.limit[OUT], 600);
    assert_int_equal(v.remaining[RQ], 60);
    assert_int_equal(v.remaining[IN], 6000);
    assert_int_equal(v.remaining[OUT], 600);
    assert_int_equal(v.full_in_ms[RQ] + v.full_in_ms[IN] + v.full_in_ms[OUT], 0);

    assert_int_equal(admit(rl, "k", 3000, 300, T0, &t, &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(v.remaining[RQ], 59);
    assert_int_equal(v.remaining[IN], 3000);
    assert_int_equal(v.remaining[OUT], 300);
    /* limit/60 per second: one request in 1 s, 3000 of 6000 tokens in 30 s */
    assert_int_equal(v.full_in_ms[RQ], 1000);
    assert_int_equal(v.full_in_ms[IN], 30000);
    assert_int_equal(v.full_in_ms[OUT], 30000);

    v = look(rl, "k", T0 + 500); /* half a second: half a request, 50 and 5 tokens */
    assert_int_equal(v.remaining[RQ], 59);
    assert_int_equal(v.remaining[IN], 3050);
    assert_int_equal(v.remaining[OUT], 305);
    assert_int_equal(v.full_in_ms[RQ], 500);
    v = look(rl, "k", T0 + 999);
    assert_int_equal(v.remaining[RQ], 59);
    v = look(rl, "k", T0 + 1000);
    assert_int_equal(v.remaining[RQ], 60);
    assert_int_equal(v.full_in_ms[RQ], 0);
    v = look(rl, "k", T0 + 200); /* the clock went back: nothing changes */
    assert_int_equal(v.remaining[IN], 3100);
    v = look(rl, "k", T0 + 30000);
    assert_int_equal(v.remaining[IN], 6000);
    assert_int_equal(v.remaining[OUT], 600); /* refilled, though the request is still in flight */
    v = look(rl, "k", T0 + 10LL * 24 * 3600 * 1000); /* ten days: full, no overflow */
    assert_int_equal(v.remaining[IN], 6000);
    aq_sim_ratelimit_settle(rl, &t, 300, T0 + 10LL * 24 * 3600 * 1000, &v);
    assert_int_equal(v.remaining[OUT], 600);
    aq_sim_ratelimit_destroy(rl);

    /* fractional refill: 7 per minute is one per 8571.43 ms, kept exactly */
    rl = make(7, 1000, 1000, true, 0);
    assert_int_equal(admit(rl, "k", 0, 0, T0, &t, &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(v.remaining[RQ], 6);
    assert_int_equal(v.full_in_ms[RQ], 8572);
    for (int i = 0; i < 8571; i += 7) /* many small steps add up exactly */
        v = look(rl, "k", T0 + i);
    v = look(rl, "k", T0 + 8571);
    assert_int_equal(v.remaining[RQ], 6);
    assert_int_equal(v.full_in_ms[RQ], 1);
    v = look(rl, "k", T0 + 8572);
    assert_int_equal(v.remaining[RQ], 7);
    aq_sim_ratelimit_settle(rl, &t, 0, T0 + 8572, NULL);
    aq_sim_ratelimit_destroy(rl);

    /* the largest limits: no overflow anywhere */
    rl = make(AQ_SIM_RL_MAX_LIMIT, AQ_SIM_RL_MAX_LIMIT, AQ_SIM_RL_MAX_LIMIT, true, 0);
    assert_int_equal(admit(rl, "k", 10000000000000LL, 999999999999LL, T0, &t, &v).outcome, AQ_SIM_RL_LIMITED);
    assert_int_equal(admit(rl, "k", 999999999999LL, 999999999999LL, T0, &t, &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(v.remaining[IN], 1);
    assert_int_equal(v.full_in_ms[IN], 60000);
    v = look(rl, "k", T0 + 30000);
    assert_int_equal(v.remaining[IN], 500000000001LL);
    v = look(rl, "k", INT64_MAX / 2);
    assert_int_equal(v.remaining[IN], AQ_SIM_RL_MAX_LIMIT);
    aq_sim_ratelimit_settle(rl, &t, 0, INT64_MAX / 2, NULL);
    aq_sim_ratelimit_destroy(rl);

    aq_sim_rl_limits bad = {0, 1, 1};
    aq_err err = {0};
    assert_int_equal(aq_sim_ratelimit_new(&bad, &rl, &err), AQ_CONFIG);
    bad.requests_per_min = AQ_SIM_RL_MAX_LIMIT + 1;
    assert_int_equal(aq_sim_ratelimit_new(&bad, &rl, &err), AQ_CONFIG);
    aq_sim_ratelimit_destroy(NULL);
}

static void test_charge_refund_and_correction(void **state)
{
    (void)state;
    aq_sim_ratelimit *rl = make(100, 10000, 1000, true, 0);
    aq_sim_rl_ticket a, b, c;
    aq_sim_rl_state v;
    aq_sim_rl_totals tot;

    /* output is reserved at max_tokens */
    assert_int_equal(admit(rl, "k", 100, 600, T0, &a, &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(v.remaining[OUT], 400);
    assert_int_equal(a.output_reserved, 600);
    /* a second one does not fit: refused, and nothing of it is charged */
    aq_sim_rl_decision d = admit(rl, "k", 100, 600, T0, &b, &v);
    assert_int_equal(d.outcome, AQ_SIM_RL_LIMITED);
    assert_int_equal(d.limited_by, AQ_SIM_RL_OUTPUT_TOKENS);
    assert_int_equal(d.cost, 600);
    assert_false(d.never);
    assert_int_equal(b.key_hash, 0);
    assert_int_equal(v.remaining[RQ], 99);
    assert_int_equal(v.remaining[IN], 9900);
    assert_int_equal(v.remaining[OUT], 400);
    /* the first ends with 100 tokens of output: 500 come back */
    aq_sim_ratelimit_settle(rl, &a, 100, T0, &v);
    assert_int_equal(a.key_hash, 0);
    assert_int_equal(v.remaining[OUT], 900);
    aq_sim_ratelimit_settle(rl, &a, 100, T0, &v); /* settled already: no effect */
    assert_int_equal(look(rl, "k", T0).remaining[OUT], 900);
    assert_int_equal(admit(rl, "k", 100, 600, T0, &b, &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(v.remaining[OUT], 300);
    /* more output than reserved is charged too */
    aq_sim_ratelimit_settle(rl, &b, 700, T0, &v);
    assert_int_equal(v.remaining[OUT], 200);

    aq_sim_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.charged_requests, 2);
    assert_int_equal(tot.charged_input_tokens, 200);
    assert_int_equal(tot.charged_output_tokens, 800); /* 100 + 700 */
    assert_int_equal(tot.limited[AQ_SIM_RL_OUTPUT_TOKENS], 1);
    assert_int_equal(tot.limited[AQ_SIM_RL_REQUESTS] + tot.limited[AQ_SIM_RL_INPUT_TOKENS], 0);

    /* a refund never fills a bucket past its limit */
    assert_int_equal(admit(rl, "k", 0, 500, T0 + 60000, &c, &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(v.remaining[OUT], 500);
    aq_sim_ratelimit_settle(rl, &c, 0, T0 + 120000, &v);
    assert_int_equal(v.remaining[OUT], 1000);
    assert_int_equal(v.full_in_ms[OUT], 0);

    /* a reset in between voids the correction (the reservation was forgotten) */
    assert_int_equal(admit(rl, "k", 0, 500, T0 + 120000, &c, &v).outcome, AQ_SIM_RL_ADMITTED);
    aq_sim_ratelimit_reset(rl);
    assert_int_equal(admit(rl, "k", 0, 300, T0 + 120000, &a, &v).outcome, AQ_SIM_RL_ADMITTED);
    aq_sim_ratelimit_settle(rl, &c, 0, T0 + 120000, &v);
    assert_int_equal(v.remaining[OUT], 700);
    aq_sim_ratelimit_settle(rl, &a, 300, T0 + 120000, &v);
    assert_int_equal(v.remaining[OUT], 700);
    aq_sim_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.charged_requests, 1);
    assert_int_equal(tot.charged_output_tokens, 300);
    aq_sim_ratelimit_destroy(rl);
}

static void test_retry_after(void **state)
{
    (void)state;
    aq_sim_ratelimit *rl = make(2, 1000, 1000, true, 0);
    aq_sim_rl_ticket t[4];
    aq_sim_rl_state v;
    aq_sim_rl_decision d;

    assert_int_equal(aq_sim_rl_retry_after_s(0), 1);
    assert_int_equal(aq_sim_rl_retry_after_s(1), 1);
    assert_int_equal(aq_sim_rl_retry_after_s(1000), 1);
    assert_int_equal(aq_sim_rl_retry_after_s(1001), 2);
    assert_int_equal(aq_sim_rl_retry_after_s(59999), 60);

    assert_int_equal(admit(rl, "k", 10, 10, T0, &t[0], &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(admit(rl, "k", 10, 10, T0, &t[1], &v).outcome, AQ_SIM_RL_ADMITTED);
    /* 2 per minute: the next request is 30 s away */
    d = admit(rl, "k", 10, 10, T0, &t[2], &v);
    assert_int_equal(d.outcome, AQ_SIM_RL_LIMITED);
    assert_int_equal(d.limited_by, AQ_SIM_RL_REQUESTS);
    assert_int_equal(d.retry_after_s, 30);
    assert_int_equal(v.remaining[RQ], 0);
    assert_int_equal(v.full_in_ms[RQ], 60000);
    d = admit(rl, "k", 10, 10, T0 + 29000, &t[2], &v);
    assert_int_equal(d.retry_after_s, 1);
    d = admit(rl, "k", 10, 10, T0 + 28999, &t[2], &v); /* clock back: same state */
    assert_int_equal(d.retry_after_s, 1);
    d = admit(rl, "k", 10, 10, T0 + 29999, &t[2], &v);
    assert_int_equal(d.retry_after_s, 1); /* 1 ms away is still a whole second */
    assert_int_equal(admit(rl, "k", 10, 10, T0 + 30000, &t[2], &v).outcome, AQ_SIM_RL_ADMITTED);
    for (int i = 0; i < 3; i++)
        aq_sim_ratelimit_settle(rl, &t[i], 10, T0 + 30000, NULL);
    aq_sim_ratelimit_destroy(rl);

    /* several buckets short: the longest wait decides and names the limit */
    rl = make(60, 600, 6000, true, 0);
    assert_int_equal(admit(rl, "k", 590, 10, T0, &t[0], &v).outcome, AQ_SIM_RL_ADMITTED);
    d = admit(rl, "k", 300, 6000, T0, &t[1], &v); /* input: 290 short = 29 s; output: 10 short = 0.1 s */
    assert_int_equal(d.outcome, AQ_SIM_RL_LIMITED);
    assert_int_equal(d.limited_by, AQ_SIM_RL_INPUT_TOKENS);
    assert_int_equal(d.cost, 300);
    assert_int_equal(d.retry_after_s, 29);
    /* more than a whole bucket can never pass: that limit is named first */
    d = admit(rl, "k", 300, 7000, T0, &t[1], &v);
    assert_int_equal(d.limited_by, AQ_SIM_RL_OUTPUT_TOKENS);
    assert_true(d.never);
    assert_int_equal(d.cost, 7000);
    assert_true(d.retry_after_s >= 1);
    aq_sim_ratelimit_settle(rl, &t[0], 10, T0, NULL);
    aq_sim_rl_totals tot;
    aq_sim_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.limited[AQ_SIM_RL_INPUT_TOKENS], 1);
    assert_int_equal(tot.limited[AQ_SIM_RL_OUTPUT_TOKENS], 1);
    aq_sim_ratelimit_destroy(rl);

    /* not enforcing: never refused; the buckets go into debt and take longer to refill */
    rl = make(1, 1000, 1000, false, 0);
    for (int i = 0; i < 3; i++) {
        d = admit(rl, "k", 1000, 0, T0, &t[i], &v);
        assert_int_equal(d.outcome, AQ_SIM_RL_ADMITTED);
        aq_sim_ratelimit_settle(rl, &t[i], 0, T0, &v);
    }
    assert_int_equal(v.remaining[RQ], 0);
    assert_int_equal(v.remaining[IN], 0);
    assert_int_equal(v.full_in_ms[RQ], 180000);
    assert_int_equal(v.full_in_ms[IN], 180000);
    assert_false(aq_sim_ratelimit_enforced(rl));
    aq_sim_ratelimit_destroy(rl);
}

static const char *header(const aq_sim_rl_header *h, const char *suffix)
{
    char name[96];
    snprintf(name, sizeof(name), "anthropic-ratelimit-%s", suffix);
    for (int i = 0; i < AQ_SIM_RL_N_HEADERS; i++)
        if (strcmp(h[i].name, name) == 0)
            return h[i].value;
    fail_msg("no header %s", name);
    return NULL;
}

static void test_header_values(void **state)
{
    (void)state;
    char ts[AQ_SIM_RFC3339_SIZE];
    const int64_t new_year = 1798761600000LL; /* 2027-01-01T00:00:00Z */

    assert_int_equal(aq_sim_rl_round_thousands(0), 0);
    assert_int_equal(aq_sim_rl_round_thousands(-5), 0);
    assert_int_equal(aq_sim_rl_round_thousands(499), 0);
    assert_int_equal(aq_sim_rl_round_thousands(500), 1000);
    assert_int_equal(aq_sim_rl_round_thousands(1499), 1000);
    assert_int_equal(aq_sim_rl_round_thousands(1500), 2000);
    assert_int_equal(aq_sim_rl_round_thousands(2000000), 2000000);

    aq_sim_rfc3339(new_year, ts);
    assert_string_equal(ts, "2027-01-01T00:00:00Z");
    aq_sim_rfc3339(new_year + 1, ts); /* rounded up: full by then */
    assert_string_equal(ts, "2027-01-01T00:00:01Z");
    aq_sim_rfc3339(new_year - 1, ts);
    assert_string_equal(ts, "2027-01-01T00:00:00Z");
    aq_sim_rfc3339(new_year + 59999, ts);
    assert_string_equal(ts, "2027-01-01T00:01:00Z");
    aq_sim_rfc3339(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00Z");
    aq_sim_rfc3339(INT64_MAX, ts);
    assert_string_equal(ts, "9999-12-31T23:59:59Z");

    aq_sim_rl_state v = {
        .limit = {4000, 2000000, 400000},
        .remaining = {3999, 1998499, 399500},
        .full_in_ms = {15, 900, 1500},
    };
    aq_sim_rl_header h[AQ_SIM_RL_N_HEADERS];
    aq_sim_rl_headers(&v, new_year, h);
    assert_string_equal(header(h, "requests-limit"), "4000");
    assert_string_equal(header(h, "requests-remaining"), "3999"); /* requests are not rounded */
    assert_string_equal(header(h, "requests-reset"), "2027-01-01T00:00:01Z");
    assert_string_equal(header(h, "input-tokens-limit"), "2000000");
    assert_string_equal(header(h, "input-tokens-remaining"), "1998000");
    assert_string_equal(header(h, "input-tokens-reset"), "2027-01-01T00:00:01Z");
    assert_string_equal(header(h, "output-tokens-limit"), "400000");
    assert_string_equal(header(h, "output-tokens-remaining"), "400000");
    assert_string_equal(header(h, "output-tokens-reset"), "2027-01-01T00:00:02Z");
    assert_string_equal(header(h, "tokens-limit"), "2400000");
    assert_string_equal(header(h, "tokens-remaining"), "2398000"); /* round(1998499 + 399500) */
    assert_string_equal(header(h, "tokens-reset"), "2027-01-01T00:00:02Z");
    for (int i = 0; i < AQ_SIM_RL_N_HEADERS; i++)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(h[i].name, h[j].name);

    assert_string_equal(aq_sim_rl_dim_name(AQ_SIM_RL_INPUT_TOKENS), "input tokens");
}

typedef struct key_seen {
    char id[16];
    uint64_t n;
} key_seen;

typedef struct seen_list {
    key_seen k[64];
    size_t count;
    uint64_t total;
} seen_list;

static void collect(const char *key_id, uint64_t requests, void *arg)
{
    seen_list *s = arg;
    if (s->count < 64) {
        snprintf(s->k[s->count].id, sizeof(s->k[0].id), "%s", key_id);
        s->k[s->count].n = requests;
    }
    s->count++;
    s->total += requests;
}

static uint64_t seen_of(const seen_list *s, const char *id)
{
    for (size_t i = 0; i < s->count && i < 64; i++)
        if (strcmp(s->k[i].id, id) == 0)
            return s->k[i].n;
    return 0;
}

static void test_counts_per_key_without_the_key(void **state)
{
    (void)state;
    aq_sim_ratelimit *rl = make(100, 10000, 2000, true, 0);
    aq_sim_rl_ticket t;
    aq_sim_rl_state v;
    char id[AQ_SIM_KEY_ID_LEN + 1];
    seen_list seen = {0};

    aq_sim_key_id("abc", 3, id);
    assert_string_equal(id, "ba7816bf"); /* SHA-256("abc") starts ba7816bf */
    admit(rl, "abc", 10, 10, T0, &t, &v);
    aq_sim_ratelimit_settle(rl, &t, 5, T0, NULL);
    look(rl, "abc", T0);
    look(rl, "other-key", T0);
    aq_sim_ratelimit_foreach(rl, collect, &seen);
    assert_int_equal(seen.count, 2);
    assert_int_equal(seen_of(&seen, "ba7816bf"), 2);
    aq_sim_key_id("other-key", 9, id);
    assert_int_equal(seen_of(&seen, id), 1);
    for (size_t i = 0; i < seen.count; i++)
        assert_null(strstr(seen.k[i].id, "abc"));

    /* reset: counts zero, buckets full, keys still listed */
    admit(rl, "abc", 5000, 1000, T0, &t, &v);
    aq_sim_ratelimit_settle(rl, &t, 1000, T0, NULL);
    aq_sim_ratelimit_reset(rl);
    memset(&seen, 0, sizeof(seen));
    aq_sim_ratelimit_foreach(rl, collect, &seen);
    assert_int_equal(seen.count, 2);
    assert_int_equal(seen.total, 0);
    v = look(rl, "abc", T0);
    assert_int_equal(v.remaining[RQ], 100);
    assert_int_equal(v.remaining[IN], 10000);
    assert_int_equal(v.remaining[OUT], 2000);
    aq_sim_rl_totals tot;
    aq_sim_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.charged_requests, 0);
    assert_int_equal(tot.keys_tracked, 2);
    aq_sim_ratelimit_destroy(rl);
}

static void test_key_cap(void **state)
{
    (void)state;
    aq_sim_ratelimit *rl = make(60, 1000, 1000, true, 4);
    aq_sim_rl_ticket t[5];
    aq_sim_rl_state v;
    aq_sim_rl_decision d;
    aq_sim_rl_totals tot;
    seen_list seen = {0};
    char key[32];

    for (int i = 0; i < 4; i++) { /* four keys, each with a request in flight */
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(admit(rl, key, 0, 100, T0, &t[i], &v).outcome, AQ_SIM_RL_ADMITTED);
    }
    d = admit(rl, "key-4", 0, 100, T0, &t[4], &v);
    assert_int_equal(d.outcome, AQ_SIM_RL_TOO_MANY_KEYS);
    assert_int_equal(d.retry_after_s, 60); /* every key busy: a minute */
    assert_int_equal(t[4].key_hash, 0);
    assert_int_equal(v.remaining[RQ], 0);
    /* key-0 is done but its buckets are not full yet: refused until they are (1 s) */
    aq_sim_ratelimit_settle(rl, &t[0], 0, T0, NULL);
    d = admit(rl, "key-4", 0, 100, T0, &t[4], &v);
    assert_int_equal(d.outcome, AQ_SIM_RL_TOO_MANY_KEYS);
    assert_int_equal(d.retry_after_s, 1);
    /* a full, idle key holds no state: it is reclaimed for the new one */
    d = admit(rl, "key-4", 0, 100, T0 + 1000, &t[4], &v);
    assert_int_equal(d.outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(v.remaining[OUT], 900);
    aq_sim_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.keys_tracked, 4);
    assert_int_equal(tot.keys_reclaimed, 1);
    assert_int_equal(tot.limited_keys, 2);
    aq_sim_ratelimit_foreach(rl, collect, &seen);
    assert_int_equal(seen.count, 5);                /* four keys and "other" */
    assert_int_equal(seen_of(&seen, "other"), 3);   /* key-0's request and two refused */
    assert_int_equal(seen.total, 7);
    for (int i = 1; i < 5; i++)
        aq_sim_ratelimit_settle(rl, &t[i], 0, T0 + 1000, NULL);
    aq_sim_ratelimit_destroy(rl);

    /* many more keys than the cap, each idle when the next comes: the table
     * churns (removals shift probe runs back) and never loses or doubles a key */
    rl = make(60, 1000, 1000, true, 16);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "churn-%d", (i * 7919) % 300);
        int64_t now = T0 + (int64_t)i * 1000; /* a request every second: each key full again */
        assert_int_equal(admit(rl, key, 0, 0, now, &t[0], &v).outcome, AQ_SIM_RL_ADMITTED);
        aq_sim_ratelimit_settle(rl, &t[0], 0, now, NULL);
    }
    memset(&seen, 0, sizeof(seen));
    aq_sim_ratelimit_foreach(rl, collect, &seen);
    aq_sim_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.keys_tracked, 16);
    assert_int_equal(seen.count, 17);
    assert_int_equal(seen.total, 5000);
    for (size_t i = 0; i < 16; i++)
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(seen.k[i].id, seen.k[j].id);
    /* a tracked key is found again, not added twice */
    snprintf(key, sizeof(key), "churn-%d", (4999 * 7919) % 300);
    look(rl, key, T0 + 5000000);
    aq_sim_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.keys_tracked, 16);
    aq_sim_ratelimit_destroy(rl);

    /* not enforcing: a key beyond the cap passes, uncharged */
    rl = make(60, 1000, 1000, false, 1);
    assert_int_equal(admit(rl, "a", 0, 100, T0, &t[0], &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(admit(rl, "b", 0, 100, T0, &t[1], &v).outcome, AQ_SIM_RL_ADMITTED);
    assert_int_equal(t[1].key_hash, 0);
    aq_sim_ratelimit_settle(rl, &t[1], 0, T0, NULL);
    aq_sim_ratelimit_settle(rl, &t[0], 0, T0, NULL);
    aq_sim_ratelimit_destroy(rl);
}

typedef struct hammer_arg {
    aq_sim_ratelimit *rl;
    int idx;
} hammer_arg;

#define HAMMER_N 20000

static void *hammer(void *p)
{
    hammer_arg *a = p;
    char key[16];
    for (int i = 0; i < HAMMER_N; i++) {
        aq_sim_rl_ticket t;
        aq_sim_rl_decision d;
        snprintf(key, sizeof(key), "k%d", (i + a->idx) % 8);
        aq_sim_ratelimit_admit(a->rl, key, strlen(key), 3, 10, T0 + i, &t, &d, NULL);
        if (d.outcome == AQ_SIM_RL_ADMITTED)
            aq_sim_ratelimit_settle(a->rl, &t, 4, T0 + i, NULL);
    }
    return NULL;
}

static void test_threads_share_the_limits(void **state)
{
    (void)state;
    aq_sim_ratelimit *rl = make(1000, 1000000, 1000000, false, 0);
    pthread_t th[4];
    hammer_arg args[4];
    aq_sim_rl_totals tot;
    for (int i = 0; i < 4; i++) {
        args[i] = (hammer_arg){rl, i};
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    aq_sim_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.charged_requests, 4 * HAMMER_N);
    assert_int_equal(tot.charged_input_tokens, 3 * 4 * HAMMER_N);
    assert_int_equal(tot.charged_output_tokens, 4 * 4 * HAMMER_N);
    assert_int_equal(tot.keys_tracked, 8);
    aq_sim_ratelimit_destroy(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_start_full_and_refill_continuously),
        cmocka_unit_test(test_charge_refund_and_correction),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_header_values),
        cmocka_unit_test(test_counts_per_key_without_the_key),
        cmocka_unit_test(test_key_cap),
        cmocka_unit_test(test_threads_share_the_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
