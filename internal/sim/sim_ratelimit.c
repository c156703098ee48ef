#include "sim_ratelimit.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define LEVEL_FLOOR (INT64_MIN / 4)        /* debt (enforcement off) saturates here */
#define MAX_COST 10000000000000LL          /* 1e13 tokens: far above any real request */
#define MAX_RFC3339_S 253402300799LL        /* 9999-12-31T23:59:59Z */

typedef struct rl_key {
    uint64_t hash;                     /* 0 = empty slot */
    int64_t level[AQ_SIM_RL_DIMS];     /* units (AQ_SIM_RL_UNITS per token), <= cap */
    int64_t last_ms;                   /* levels are as of this time */
    int64_t inflight;                  /* tickets not settled */
    uint64_t requests;                 /* since the last reset, for /sim/stats */
    char key_id[AQ_SIM_KEY_ID_LEN + 1];
} rl_key;

struct aq_sim_ratelimit {
    pthread_mutex_t lock;
    bool enforce;
    int64_t limit[AQ_SIM_RL_DIMS];     /* per minute = units refilled per ms */
    int64_t cap[AQ_SIM_RL_DIMS];       /* limit * AQ_SIM_RL_UNITS */
    size_t max_keys, n_keys, mask, hand;
    uint64_t epoch;
    uint64_t other_requests;           /* keys reclaimed or refused */
    aq_sim_rl_totals totals;           /* keys_tracked is n_keys */
    rl_key *table;                     /* mask + 1 slots, linear probing, load <= 1/2 */
};

/* ------------------------------------------------------------ arithmetic */

static int64_t ceil_div(int64_t a, int64_t b)
{
    return a <= 0 ? 0 : (a - 1) / b + 1;
}

static int64_t clamp_cost(int64_t v)
{
    return v < 0 ? 0 : v > MAX_COST ? MAX_COST : v;
}

static int64_t sat_sub(int64_t level, int64_t cost)
{
    return level - cost < LEVEL_FLOOR ? LEVEL_FLOOR : level - cost;
}

/* The level of bucket d at `now` (no change made). */
static int64_t level_at(const aq_sim_ratelimit *rl, const rl_key *k, int d, int64_t now)
{
    int64_t need = rl->cap[d] - k->level[d];
    if (need <= 0 || now <= k->last_ms)
        return k->level[d];
    int64_t elapsed = now - k->last_ms;
    if (elapsed >= ceil_div(need, rl->limit[d]))
        return rl->cap[d];
    return k->level[d] + elapsed * rl->limit[d]; /* < cap: no overflow */
}

static void refill(const aq_sim_ratelimit *rl, rl_key *k, int64_t now)
{
    if (now <= k->last_ms)
        return; /* a clock that did not move (or went back) refills nothing */
    for (int d = 0; d < AQ_SIM_RL_DIMS; d++)
        k->level[d] = level_at(rl, k, d, now);
    k->last_ms = now;
}

static int64_t full_in_ms(const aq_sim_ratelimit *rl, int64_t level, int d)
{
    return ceil_div(rl->cap[d] - level, rl->limit[d]);
}

/* Milliseconds until every bucket of k is full, at now. */
static int64_t key_full_in_ms(const aq_sim_ratelimit *rl, const rl_key *k, int64_t now)
{
    int64_t wait = 0;
    for (int d = 0; d < AQ_SIM_RL_DIMS; d++) {
        int64_t w = full_in_ms(rl, level_at(rl, k, d, now), d);
        if (w > wait)
            wait = w;
    }
    return wait;
}

static void view_of(const aq_sim_ratelimit *rl, const rl_key *k, aq_sim_rl_state *v)
{
    if (!v)
        return;
    for (int d = 0; d < AQ_SIM_RL_DIMS; d++) {
        v->limit[d] = rl->limit[d];
        v->remaining[d] = k->level[d] > 0 ? k->level[d] / AQ_SIM_RL_UNITS : 0;
        v->full_in_ms[d] = full_in_ms(rl, k->level[d], d);
    }
}

/* A key that is not tracked: nothing left until wait_ms (0: a fresh key). */
static void view_untracked(const aq_sim_ratelimit *rl, int64_t wait_ms, aq_sim_rl_state *v)
{
    if (!v)
        return;
    for (int d = 0; d < AQ_SIM_RL_DIMS; d++) {
        v->limit[d] = rl->limit[d];
        v->remaining[d] = wait_ms ? 0 : rl->limit[d];
        v->full_in_ms[d] = wait_ms;
    }
}

/* ------------------------------------------------------------ the table */

static uint64_t key_hash(const char *key, size_t key_len)
{
    uint64_t h = XXH3_64bits(key, key_len);
    return h ? h : 1;
}

static rl_key *find(aq_sim_ratelimit *rl, uint64_t h)
{
    for (size_t i = (size_t)h & rl->mask;; i = (i + 1) & rl->mask) {
        rl_key *k = &rl->table[i];
        if (k->hash == h)
            return k;
        if (k->hash == 0)
            return NULL;
    }
}

/* Remove slot i, shifting later entries of its probe run back (no tombstones). */
static void remove_slot(aq_sim_ratelimit *rl, size_t i)
{
    size_t j = i;
    rl->table[i].hash = 0;
    for (;;) {
        j = (j + 1) & rl->mask;
        if (rl->table[j].hash == 0)
            break;
        size_t home = (size_t)rl->table[j].hash & rl->mask;
        /* the entry at j may move to i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            rl->table[i] = rl->table[j];
            rl->table[j].hash = 0;
            i = j;
        }
    }
    rl->n_keys--;
}

/* Reclaim one idle key (every bucket full, nothing in flight), scanning from
 * the clock hand. If none is idle, *wait_ms: until the first idle-but-not-full
 * key is full (AQ_SIM_RL_WINDOW_MS when every key has requests in flight). */
static bool reclaim_one(aq_sim_ratelimit *rl, int64_t now, int64_t *wait_ms)
{
    int64_t best = -1;
    for (size_t n = 0; n <= rl->mask; n++) {
        size_t i = (rl->hand + n) & rl->mask;
        rl_key *k = &rl->table[i];
        if (k->hash == 0 || k->inflight > 0)
            continue;
        int64_t w = key_full_in_ms(rl, k, now);
        if (w == 0) {
            rl->other_requests += k->requests;
            rl->totals.keys_reclaimed++;
            remove_slot(rl, i);
            rl->hand = (i + 1) & rl->mask;
            return true;
        }
        if (best < 0 || w < best)
            best = w;
    }
    *wait_ms = best > 0 ? best : AQ_SIM_RL_WINDOW_MS;
    return false;
}

/* Find the key, or add it (full buckets). NULL: the table is full of busy
 * keys; *wait_ms says for how long. Called and returns with the lock held;
 * may drop it to hash the key id. */
static rl_key *lookup(aq_sim_ratelimit *rl, const char *key, size_t key_len, uint64_t h,
                      int64_t now, int64_t *wait_ms)
{
    char id[AQ_SIM_KEY_ID_LEN + 1];
    rl_key *k = find(rl, h);
    if (k)
        return k;
    pthread_mutex_unlock(&rl->lock);
    aq_sim_key_id(key, key_len, id); /* SHA-256: outside the lock */
    pthread_mutex_lock(&rl->lock);
    if ((k = find(rl, h)) != NULL) /* another thread added it meanwhile */
        return k;
    if (rl->n_keys >= rl->max_keys && !reclaim_one(rl, now, wait_ms))
        return NULL;
    size_t i = (size_t)h & rl->mask;
    while (rl->table[i].hash != 0)
        i = (i + 1) & rl->mask;
    k = &rl->table[i];
    memset(k, 0, sizeof(*k));
    k->hash = h;
    memcpy(k->key_id, id, sizeof(id));
    for (int d = 0; d < AQ_SIM_RL_DIMS; d++)
        k->level[d] = rl->cap[d];
    k->last_ms = now;
    rl->n_keys++;
    return k;
}

/* ------------------------------------------------------------ public */

void aq_sim_key_id(const char *key, size_t key_len, char out[AQ_SIM_KEY_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(key, key_len, md, &md_len, EVP_sha256(), NULL) || md_len < AQ_SIM_KEY_ID_LEN / 2) {
        memcpy(out, "unknown!", AQ_SIM_KEY_ID_LEN);
    } else {
        for (int i = 0; i < AQ_SIM_KEY_ID_LEN / 2; i++) {
            out[2 * i] = hex[md[i] >> 4];
            out[2 * i + 1] = hex[md[i] & 15];
        }
    }
    out[AQ_SIM_KEY_ID_LEN] = '\0';
}

aq_status aq_sim_ratelimit_new(const aq_sim_rl_limits *limits, aq_sim_ratelimit **out, aq_err *err)
{
    return aq_sim_ratelimit_create(limits, NULL, out, err);
}

aq_status aq_sim_ratelimit_create(const aq_sim_rl_limits *limits, const aq_sim_rl_options *opts,
                                  aq_sim_ratelimit **out, aq_err *err)
{
    const aq_sim_rl_options defaults = {.enforce = true, .max_keys = AQ_SIM_RL_MAX_KEYS};
    const int64_t lim[AQ_SIM_RL_DIMS] = {limits->requests_per_min, limits->input_tokens_per_min,
                                         limits->output_tokens_per_min};
    for (int d = 0; d < AQ_SIM_RL_DIMS; d++)
        if (lim[d] < 1 || lim[d] > AQ_SIM_RL_MAX_LIMIT)
            return aq_err_set(err, AQ_CONFIG, "rate limit of %s per minute must be in [1, %lld]",
                              aq_sim_rl_dim_name((aq_sim_rl_dim)d), (long long)AQ_SIM_RL_MAX_LIMIT);
    aq_sim_ratelimit *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return aq_err_set(err, AQ_NOMEM, "out of memory for rate-limit state");
    if (!opts)
        opts = &defaults;
    rl->max_keys = opts->max_keys && opts->max_keys < AQ_SIM_RL_MAX_KEYS ? opts->max_keys : AQ_SIM_RL_MAX_KEYS;
    size_t size = 2;
    while (size < 2 * rl->max_keys)
        size *= 2;
    rl->table = calloc(size, sizeof(*rl->table));
    if (!rl->table) {
        free(rl);
        return aq_err_set(err, AQ_NOMEM, "out of memory for rate-limit state");
    }
    rl->mask = size - 1;
    rl->enforce = opts->enforce;
    for (int d = 0; d < AQ_SIM_RL_DIMS; d++) {
        rl->limit[d] = lim[d];
        rl->cap[d] = lim[d] * AQ_SIM_RL_UNITS;
    }
    rl->epoch = 1;
    pthread_mutex_init(&rl->lock, NULL);
    *out = rl;
    return AQ_OK;
}

void aq_sim_ratelimit_destroy(aq_sim_ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl->table);
    free(rl);
}

void aq_sim_ratelimit_admit(aq_sim_ratelimit *rl, const char *key, size_t key_len,
                            int64_t input_tokens, int64_t max_output_tokens, int64_t now_ms,
                            aq_sim_rl_ticket *ticket, aq_sim_rl_decision *decision,
                            aq_sim_rl_state *view)
{
    const int64_t cost[AQ_SIM_RL_DIMS] = {1, clamp_cost(input_tokens), clamp_cost(max_output_tokens)};
    aq_sim_rl_decision dec = {.outcome = AQ_SIM_RL_ADMITTED};
    uint64_t h = key_hash(key, key_len);
    int64_t wait = 0;

    memset(ticket, 0, sizeof(*ticket));
    pthread_mutex_lock(&rl->lock);
    rl_key *k = lookup(rl, key, key_len, h, now_ms, &wait);
    if (!k) { /* no room for the key: refused, or (not enforcing) let through uncharged */
        rl->other_requests++;
        if (rl->enforce) {
            rl->totals.limited_keys++;
            dec.outcome = AQ_SIM_RL_TOO_MANY_KEYS;
            dec.retry_after_s = aq_sim_rl_retry_after_s(wait);
        }
        view_untracked(rl, rl->enforce ? wait : 0, view);
        pthread_mutex_unlock(&rl->lock);
        *decision = dec;
        return;
    }
    k->requests++;
    refill(rl, k, now_ms);
    if (rl->enforce) {
        int64_t longest = -1;
        for (int d = 0; d < AQ_SIM_RL_DIMS; d++) {
            int64_t need = cost[d] * AQ_SIM_RL_UNITS;
            if (k->level[d] >= need)
                continue;
            bool never = need > rl->cap[d];
            /* never: the bucket will not hold enough even when full; name it first */
            int64_t w = never ? full_in_ms(rl, k->level[d], d) : ceil_div(need - k->level[d], rl->limit[d]);
            if (dec.outcome == AQ_SIM_RL_ADMITTED || (never && !dec.never) ||
                (never == dec.never && w > longest)) {
                dec.outcome = AQ_SIM_RL_LIMITED;
                dec.limited_by = (aq_sim_rl_dim)d;
                dec.cost = cost[d];
                dec.never = never;
                longest = w;
            }
        }
        if (dec.outcome == AQ_SIM_RL_LIMITED) {
            dec.retry_after_s = aq_sim_rl_retry_after_s(longest);
            rl->totals.limited[dec.limited_by]++;
            view_of(rl, k, view);
            pthread_mutex_unlock(&rl->lock);
            *decision = dec;
            return;
        }
    }
    for (int d = 0; d < AQ_SIM_RL_DIMS; d++)
        k->level[d] = sat_sub(k->level[d], cost[d] * AQ_SIM_RL_UNITS);
    k->inflight++;
    rl->totals.charged_requests++;
    rl->totals.charged_input_tokens += (uint64_t)cost[AQ_SIM_RL_INPUT_TOKENS];
    rl->totals.charged_output_tokens += cost[AQ_SIM_RL_OUTPUT_TOKENS];
    ticket->key_hash = h;
    ticket->epoch = rl->epoch;
    ticket->output_reserved = cost[AQ_SIM_RL_OUTPUT_TOKENS];
    view_of(rl, k, view);
    pthread_mutex_unlock(&rl->lock);
    *decision = dec;
}

void aq_sim_ratelimit_settle(aq_sim_ratelimit *rl, aq_sim_rl_ticket *ticket, int64_t output_tokens,
                             int64_t now_ms, aq_sim_rl_state *view)
{
    if (!ticket->key_hash) {
        view_untracked(rl, 0, view);
        return;
    }
    int64_t refund = ticket->output_reserved - clamp_cost(output_tokens); /* < 0: charge more */
    pthread_mutex_lock(&rl->lock);
    rl_key *k = find(rl, ticket->key_hash); /* never reclaimed while in flight */
    if (!k) {
        view_untracked(rl, 0, view);
    } else {
        refill(rl, k, now_ms);
        if (ticket->epoch == rl->epoch) {
            int64_t *lv = &k->level[AQ_SIM_RL_OUTPUT_TOKENS];
            int64_t cap = rl->cap[AQ_SIM_RL_OUTPUT_TOKENS];
            if (refund >= 0)
                *lv = refund * AQ_SIM_RL_UNITS > cap - *lv ? cap : *lv + refund * AQ_SIM_RL_UNITS;
            else
                *lv = sat_sub(*lv, -refund * AQ_SIM_RL_UNITS);
            rl->totals.charged_output_tokens -= refund;
        }
        if (k->inflight > 0)
            k->inflight--;
        view_of(rl, k, view);
    }
    pthread_mutex_unlock(&rl->lock);
    memset(ticket, 0, sizeof(*ticket));
}

void aq_sim_ratelimit_observe(aq_sim_ratelimit *rl, const char *key, size_t key_len, int64_t now_ms,
                              aq_sim_rl_state *view)
{
    uint64_t h = key_hash(key, key_len);
    int64_t wait = 0;
    pthread_mutex_lock(&rl->lock);
    rl_key *k = lookup(rl, key, key_len, h, now_ms, &wait);
    if (!k) {
        rl->other_requests++;
        view_untracked(rl, wait, view);
    } else {
        k->requests++;
        refill(rl, k, now_ms);
        view_of(rl, k, view);
    }
    pthread_mutex_unlock(&rl->lock);
}

typedef struct key_count {
    char id[AQ_SIM_KEY_ID_LEN + 1];
    uint64_t requests;
} key_count;

void aq_sim_ratelimit_foreach(aq_sim_ratelimit *rl, aq_sim_rl_key_fn fn, void *arg)
{
    key_count *list = malloc((rl->mask + 1) * sizeof(*list)); /* n_keys <= slots */
    size_t n = 0;
    uint64_t other;
    pthread_mutex_lock(&rl->lock);
    for (size_t i = 0; i <= rl->mask; i++) {
        const rl_key *k = &rl->table[i];
        if (!k->hash)
            continue;
        if (!list) { /* out of memory for the copy: report under the lock */
            fn(k->key_id, k->requests, arg);
            continue;
        }
        memcpy(list[n].id, k->key_id, sizeof(list[n].id));
        list[n++].requests = k->requests;
    }
    other = rl->other_requests;
    pthread_mutex_unlock(&rl->lock);
    for (size_t i = 0; i < n; i++)
        fn(list[i].id, list[i].requests, arg);
    if (other)
        fn("other", other, arg);
    free(list);
}

void aq_sim_ratelimit_totals(aq_sim_ratelimit *rl, aq_sim_rl_totals *out)
{
    pthread_mutex_lock(&rl->lock);
    *out = rl->totals;
    out->keys_tracked = rl->n_keys;
    pthread_mutex_unlock(&rl->lock);
}

bool aq_sim_ratelimit_enforced(const aq_sim_ratelimit *rl)
{
    return rl->enforce;
}

void aq_sim_ratelimit_reset(aq_sim_ratelimit *rl)
{
    pthread_mutex_lock(&rl->lock);
    for (size_t i = 0; i <= rl->mask; i++) {
        rl_key *k = &rl->table[i];
        if (!k->hash)
            continue;
        for (int d = 0; d < AQ_SIM_RL_DIMS; d++) {
            k->level[d] = rl->cap[d];
        }
        k->last_ms = INT64_MIN; /* full at any time: the next refill only moves it to now */
        k->requests = 0;
    }
    rl->other_requests = 0;
    memset(&rl->totals, 0, sizeof(rl->totals));
    rl->epoch++;
    pthread_mutex_unlock(&rl->lock);
}

/* ------------------------------------------------------------ headers */

int64_t aq_sim_rl_round_thousands(int64_t v)
{
    if (v <= 0)
        return 0;
    return (v / 1000 + (v % 1000 >= 500)) * 1000;
}

void aq_sim_rfc3339(int64_t unix_ms, char out[AQ_SIM_RFC3339_SIZE])
{
    int64_t s = unix_ms <= 0 ? 0 : unix_ms / 1000 >= MAX_RFC3339_S ? MAX_RFC3339_S : (unix_ms + 999) / 1000;
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(out, AQ_SIM_RFC3339_SIZE, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, AQ_SIM_RFC3339_SIZE, "1970-01-01T00:00:00Z");
}

int64_t aq_sim_rl_retry_after_s(int64_t wait_ms)
{
    int64_t s = ceil_div(wait_ms, 1000);
    return s < 1 ? 1 : s;
}

const char *aq_sim_rl_dim_name(aq_sim_rl_dim d)
{
    switch (d) {
    case AQ_SIM_RL_REQUESTS: return "requests";
    case AQ_SIM_RL_INPUT_TOKENS: return "input tokens";
    case AQ_SIM_RL_OUTPUT_TOKENS: return "output tokens";
    default: return "?";
    }
}

static void put_i64(aq_sim_rl_header *h, const char *name, int64_t v)
{
    h->name = name;
    snprintf(h->value, sizeof(h->value), "%" PRId64, v);
}

static void put_time(aq_sim_rl_header *h, const char *name, int64_t now_unix_ms, int64_t in_ms)
{
    h->name = name;
    aq_sim_rfc3339(in_ms > INT64_MAX - now_unix_ms ? INT64_MAX : now_unix_ms + in_ms, h->value);
}

void aq_sim_rl_headers(const aq_sim_rl_state *v, int64_t now, aq_sim_rl_header out[AQ_SIM_RL_N_HEADERS])
{
    const int64_t *lim = v->limit, *rem = v->remaining, *full = v->full_in_ms;
    int64_t tokens_full = full[1] > full[2] ? full[1] : full[2];
    put_i64(&out[0], "anthropic-ratelimit-requests-limit", lim[0]);
    put_i64(&out[1], "anthropic-ratelimit-requests-remaining", rem[0]);
    put_time(&out[2], "anthropic-ratelimit-requests-reset", now, full[0]);
    put_i64(&out[3], "anthropic-ratelimit-input-tokens-limit", lim[1]);
    put_i64(&out[4], "anthropic-ratelimit-input-tokens-remaining", aq_sim_rl_round_thousands(rem[1]));
    put_time(&out[5], "anthropic-ratelimit-input-tokens-reset", now, full[1]);
    put_i64(&out[6], "anthropic-ratelimit-output-tokens-limit", lim[2]);
    put_i64(&out[7], "anthropic-ratelimit-output-tokens-remaining", aq_sim_rl_round_thousands(rem[2]));
    put_time(&out[8], "anthropic-ratelimit-output-tokens-reset", now, full[2]);
    put_i64(&out[9], "anthropic-ratelimit-tokens-limit", lim[1] + lim[2]);
    put_i64(&out[10], "anthropic-ratelimit-tokens-remaining", aq_sim_rl_round_thousands(rem[1] + rem[2]));
    put_time(&out[11], "anthropic-ratelimit-tokens-reset", now, tokens_full);
}
