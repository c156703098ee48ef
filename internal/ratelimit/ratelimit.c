#include "ratelimit.h"

#include "core/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Levels are in ticks: 1 unit = TICKS ticks, so a limit of L per minute
 * refills exactly L ticks per ms. With limits <= 1e12 a full bucket is
 * 6e16 ticks; arithmetic that multiplies is done in 128 bits and the result
 * clamped, so nothing overflows. */
#define TICKS 60000
#define PPM 1000000
#define LEVEL_MIN (-(INT64_MAX / 4))
#define LEVEL_MAX (INT64_MAX / 4)
#define MAX_VISIBILITY_MS 60000
#define MIN_SHARE_WINDOW_MS 100

typedef __int128 i128;

typedef struct bucket {
    int64_t cfg_limit;    /* configured; 0 = learn */
    int64_t limit;        /* effective; 0 = unknown: no local limit */
    bool learned;
    int64_t level;        /* ticks this worker may use (admission bucket) */
    int64_t shadow;       /* ticks: the provider's bucket as if this worker were alone */
    bool shadow_valid;
    int64_t last_ms;      /* refilled up to here */
    int64_t slow_until;   /* refill capped at slow_num per slow_den ms until then */
    int64_t slow_num, slow_den;
    int64_t share_ppm;
    int64_t win_start;    /* -1: no window open */
    int64_t win_own, win_others; /* ticks */
    int64_t cut_window;   /* win_start of the window in which a 429 last halved the share */
    int64_t reserved;     /* units in flight */
    int64_t young;        /* units in flight acquired less than visibility_ms ago */
    uint64_t acquired;    /* units ever granted (wraps): a reservation's mark_ is this after it */
    int64_t rep_remaining, rep_reset;
} bucket;

typedef struct slot { /* one (key, class) */
    bucket b[AQ_RL_DIM_COUNT];
    aq_rl_reservation *head, *tail; /* in flight, oldest first */
    aq_rl_reservation *young;       /* oldest reservation still young, or NULL */
    size_t n_in_flight;
    bool heard;                     /* a response with headers has been applied */
    int64_t last_acquire_ms;
    int64_t paused_until;
    uint64_t grants, pauses;
} slot;

struct aq_rl {
    size_t n_keys;
    char labels[AQ_RL_MAX_KEYS][AQ_RL_LABEL_MAX + 1];
    int64_t default_pause_ms, visibility_ms, share_window_ms;
    uint64_t waits[AQ_RL_CLASS_COUNT];
    slot *slots; /* n_keys * AQ_RL_CLASS_COUNT */
};

/* ---- names ---- */

static const char *const class_names[AQ_RL_CLASS_COUNT] = {"haiku", "sonnet", "opus", "other"};
static const char *const dim_names[AQ_RL_DIM_COUNT] = {"requests", "input_tokens", "output_tokens"};
static const char *const setting_names[AQ_RL_DIM_COUNT] = {"rpm", "itpm", "otpm"};

const char *aq_rl_class_name(aq_rl_class cls)
{
    return (int)cls >= 0 && cls < AQ_RL_CLASS_COUNT ? class_names[cls] : "other";
}

const char *aq_rl_dim_name(aq_rl_dim dim)
{
    return (int)dim >= 0 && dim < AQ_RL_DIM_COUNT ? dim_names[dim] : "unknown";
}

static bool is_sep(char c)
{
    return c == '-' || c == '.' || c == '@' || c == ':' || c == '/' || c == '_';
}

static bool word_is(const char *w, size_t n, const char *name)
{
    if (strlen(name) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = w[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != name[i])
            return false;
    }
    return true;
}

aq_rl_class aq_rl_model_class(const char *model)
{
    if (!model)
        return AQ_RL_OTHER;
    const char *p = model;
    while (*p) {
        while (*p && is_sep(*p))
            p++;
        const char *w = p;
        while (*p && !is_sep(*p))
            p++;
        size_t n = (size_t)(p - w);
        for (int c = AQ_RL_HAIKU; c < AQ_RL_OTHER; c++)
            if (word_is(w, n, class_names[c]))
                return (aq_rl_class)c;
    }
    return AQ_RL_OTHER;
}

/* ---- the limits string ---- */

/* Quoted pieces of the input in messages are cut at this many characters. */
#define QUOTE_MAX 32
#define QUOTE(b, e) (int)((e) - (b) > QUOTE_MAX ? QUOTE_MAX : (e) - (b)), (b)

static aq_status parse_entry(const char *b, const char *e, aq_rl_limits *lim, bool seen[AQ_RL_CLASS_COUNT],
                             aq_err *err)
{
    const char *colon = aq_span_find(b, e, ':');
    if (colon == e)
        return aq_err_set(err, AQ_CONFIG,
                          "rate limits: entry '%.*s' has no ':' (expected class:rpm=N,itpm=N,otpm=N)",
                          QUOTE(b, e));
    const char *cb = b, *ce = colon;
    aq_span_trim(&cb, &ce);
    int cls = -1;
    for (int c = 0; c < AQ_RL_CLASS_COUNT; c++)
        if ((size_t)(ce - cb) == strlen(class_names[c]) && memcmp(cb, class_names[c], (size_t)(ce - cb)) == 0)
            cls = c;
    if (cls < 0)
        return aq_err_set(err, AQ_CONFIG,
                          "rate limits: unknown model class '%.*s' (expected haiku, sonnet, opus or other)",
                          QUOTE(cb, ce));
    if (seen[cls])
        return aq_err_set(err, AQ_CONFIG, "rate limits: class '%s' given twice", class_names[cls]);
    seen[cls] = true;

    const char *sb = colon + 1, *se = e;
    aq_span_trim(&sb, &se);
    if (sb == se)
        return aq_err_set(err, AQ_CONFIG, "rate limits: class '%s' has no settings", class_names[cls]);

    bool set[AQ_RL_DIM_COUNT] = {false};
    const char *p = colon + 1;
    for (;;) {
        const char *ie = aq_span_find(p, e, ',');
        const char *ib = p, *iend = ie;
        aq_span_trim(&ib, &iend);
        if (ib == iend)
            return aq_err_set(err, AQ_CONFIG, "rate limits: %s: empty setting", class_names[cls]);
        const char *nb, *ne, *vb, *ve;
        int dim = aq_span_setting(ib, iend, setting_names, AQ_RL_DIM_COUNT, &nb, &ne, &vb, &ve);
        if (dim == AQ_SPAN_NO_EQUALS)
            return aq_err_set(err, AQ_CONFIG, "rate limits: %s: '%.*s' is not name=value",
                              class_names[cls], QUOTE(ib, iend));
        if (dim < 0)
            return aq_err_set(err, AQ_CONFIG,
                              "rate limits: %s: unknown setting '%.*s' (expected rpm, itpm or otpm)",
                              class_names[cls], QUOTE(nb, ne));
        if (set[dim])
            return aq_err_set(err, AQ_CONFIG, "rate limits: %s: '%s' given twice", class_names[cls],
                              setting_names[dim]);
        set[dim] = true;
        if (vb == ve)
            return aq_err_set(err, AQ_CONFIG, "rate limits: %s: %s has no value", class_names[cls],
                              setting_names[dim]);
        int64_t v = 0;
        for (const char *q = vb; q < ve; q++) {
            if (*q < '0' || *q > '9')
                return aq_err_set(err, AQ_CONFIG, "rate limits: %s: %s='%.*s' is not a whole number",
                                  class_names[cls], setting_names[dim], QUOTE(vb, ve));
            if (v > (AQ_RL_MAX_LIMIT - (*q - '0')) / 10)
                return aq_err_set(err, AQ_CONFIG, "rate limits: %s: %s='%.*s' is over the cap %lld",
                                  class_names[cls], setting_names[dim], QUOTE(vb, ve),
                                  (long long)AQ_RL_MAX_LIMIT);
            v = v * 10 + (*q - '0');
        }
        lim->per_min[cls][dim] = v;
        if (ie == e)
            break;
        p = ie + 1;
    }
    return AQ_OK;
}

aq_status aq_rl_limits_parse(const char *s, aq_rl_limits *out, aq_err *err)
{
    aq_rl_limits lim;
    bool seen[AQ_RL_CLASS_COUNT] = {false};
    memset(&lim, 0, sizeof(lim));
    if (!s)
        s = AQ_RL_DEFAULT_LIMITS;
    size_t len = strnlen(s, AQ_RL_LIMITS_MAX_LEN + 1);
    if (len > AQ_RL_LIMITS_MAX_LEN)
        return aq_err_set(err, AQ_CONFIG, "rate limits: longer than %d characters", AQ_RL_LIMITS_MAX_LEN);
    const char *b = s, *e = s + len;
    aq_span_trim(&b, &e);
    if (b == e) {
        *out = lim;
        return AQ_OK;
    }
    size_t n = 0;
    for (const char *p = s;;) {
        const char *ee = aq_span_find(p, s + len, ';');
        const char *tb = p, *te = ee;
        aq_span_trim(&tb, &te);
        n++;
        if (tb == te)
            return aq_err_set(err, AQ_CONFIG, "rate limits: entry %zu is empty", n);
        aq_status st = parse_entry(tb, te, &lim, seen, err);
        if (st != AQ_OK)
            return st;
        if (ee == s + len)
            break;
        p = ee + 1;
    }
    *out = lim;
    return AQ_OK;
}

/* ---- bucket arithmetic ---- */

static int64_t clamp_ticks(i128 v, int64_t hi)
{
    if (v > hi)
        return hi;
    if (v < LEVEL_MIN)
        return LEVEL_MIN;
    return (int64_t)v;
}

static int64_t full_ticks(const bucket *b)
{
    return b->limit * TICKS;
}

static int64_t capacity(const bucket *b)
{
    return (int64_t)((i128)b->limit * TICKS * b->share_ppm / PPM);
}

/* Ticks the provider's bucket gains over [t0, t1) at the full rate. */
static i128 full_gain(const bucket *b, int64_t t0, int64_t t1)
{
    i128 g = 0;
    if (t1 <= t0)
        return 0;
    if (b->slow_until > t0) {
        int64_t e = t1 < b->slow_until ? t1 : b->slow_until;
        g += (i128)(e - t0) * b->slow_num * TICKS / b->slow_den;
        t0 = e;
    }
    return g + (i128)(t1 - t0) * b->limit;
}

static void refill(bucket *b, int64_t now)
{
    if (now <= b->last_ms)
        return;
    if (b->limit > 0) {
        i128 g = full_gain(b, b->last_ms, now);
        if (b->shadow_valid)
            b->shadow = clamp_ticks((i128)b->shadow + g, full_ticks(b));
        if (b->level < capacity(b))
            b->level = clamp_ticks((i128)b->level + g * b->share_ppm / PPM, capacity(b));
    }
    b->last_ms = now;
}

static i128 ceil_div(i128 a, i128 b)
{
    return a <= 0 ? 0 : (a + b - 1) / b;
}

/* ms until the admission level (refilled up to now) gains `deficit` ticks. */
static int64_t time_to_gain(const bucket *b, int64_t now, i128 deficit)
{
    i128 t = 0;
    if (deficit <= 0)
        return 0;
    if (b->slow_until > now) {
        int64_t seg = b->slow_until - now;
        i128 num = (i128)b->slow_num * TICKS * b->share_ppm; /* ticks per ms = num / den */
        i128 den = (i128)b->slow_den * PPM;
        i128 g = (i128)seg * num / den;
        if (g >= deficit)
            return (int64_t)ceil_div(deficit * den, num);
        deficit -= g;
        t = seg;
    }
    t += ceil_div(deficit * PPM, (i128)b->limit * b->share_ppm);
    return t > LEVEL_MAX ? LEVEL_MAX : (int64_t)t;
}

/* What the level must reach for `cost` units: the cost, or a full bucket
 * for a call larger than the bucket. */
static int64_t need_ticks(const bucket *b, int64_t cost)
{
    int64_t need = cost * TICKS, cap = capacity(b);
    return need > cap ? cap : need;
}

/* ---- slots and reservations ---- */

static slot *slot_at(const aq_rl *rl, size_t key, aq_rl_class cls)
{
    return &rl->slots[key * AQ_RL_CLASS_COUNT + (size_t)cls];
}

/* Reservations acquired visibility_ms ago or earlier stop counting as unseen. */
static void advance_young(const aq_rl *rl, slot *s, int64_t now)
{
    while (s->young && s->young->acquired_ms <= now - rl->visibility_ms) {
        aq_rl_reservation *r = s->young;
        for (int d = 0; d < AQ_RL_DIM_COUNT; d++)
            s->b[d].young -= r->cost[d];
        r->young_ = false;
        s->young = r->next_;
    }
}

static void link_reservation(slot *s, aq_rl_reservation *r)
{
    r->prev_ = s->tail;
    r->next_ = NULL;
    if (s->tail)
        s->tail->next_ = r;
    else
        s->head = r;
    s->tail = r;
    r->young_ = true;
    if (!s->young)
        s->young = r;
    s->n_in_flight++;
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        s->b[d].reserved += r->cost[d];
        s->b[d].young += r->cost[d];
        s->b[d].acquired += (uint64_t)r->cost[d];
        r->mark_[d] = s->b[d].acquired;
    }
}

/* Units granted on `s` after `r` was (released, refused and finished ones
 * included), capped so that arithmetic on it cannot overflow. */
static void acquired_after(const slot *s, const aq_rl_reservation *r, int64_t out[AQ_RL_DIM_COUNT])
{
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        uint64_t n = s->b[d].acquired - r->mark_[d]; /* modulo 2^64: exact while < 2^64 */
        out[d] = n > (uint64_t)AQ_RL_MAX_LIMIT * 1000 ? AQ_RL_MAX_LIMIT * 1000 : (int64_t)n;
    }
}

static void unlink_reservation(slot *s, aq_rl_reservation *r)
{
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        s->b[d].reserved -= r->cost[d];
        if (r->young_)
            s->b[d].young -= r->cost[d];
    }
    if (s->young == r)
        s->young = r->next_;
    if (r->prev_)
        r->prev_->next_ = r->next_;
    else
        s->head = r->next_;
    if (r->next_)
        r->next_->prev_ = r->prev_;
    else
        s->tail = r->prev_;
    r->prev_ = r->next_ = NULL;
    r->young_ = false;
    r->in_flight_ = false;
    s->n_in_flight--;
}

/* ---- the share of the fleet ---- */

static void open_window(bucket *b, int64_t now)
{
    b->win_start = now;
    b->win_own = b->win_others = 0;
}

/* `target`: what the provider has free now (ticks). */
static void close_window_if_due(const aq_rl *rl, bucket *b, aq_rl_dim d, i128 target, int64_t now)
{
    int64_t elapsed = now - b->win_start;
    if (elapsed < rl->share_window_ms)
        return;
    int64_t others = b->win_others > 0 ? b->win_others : 0;
    int64_t own = b->win_own;
    i128 sample = (i128)(own > 0 ? own : 0) + others;
    i128 min_sample = (i128)(d == AQ_RL_REQUESTS ? AQ_RL_SHARE_MIN_REQUESTS : AQ_RL_SHARE_MIN_TOKENS) * TICKS;
    /* A small sample is noisy (rounded headers): wait for more, unless the
     * provider is at least half full, where an error costs nothing and a
     * share that a burst of 429s cut down must come back quickly. */
    if (sample < min_sample && elapsed < AQ_RL_SHARE_MAX_WINDOW_MS && target * 2 < full_ticks(b))
        return;
    int64_t share;
    if (others == 0)
        share = PPM;
    else if (own <= 0)
        share = AQ_RL_MIN_SHARE_PPM;
    else
        share = (int64_t)((i128)own * PPM / ((i128)own + others));
    if (share < AQ_RL_MIN_SHARE_PPM)
        share = AQ_RL_MIN_SHARE_PPM;
    b->share_ppm = share;
    if (b->level > capacity(b))
        b->level = capacity(b);
    open_window(b, now);
}

/* ---- headers ---- */

static void apply_dim(const aq_rl *rl, slot *s, aq_rl_dim d, int64_t lim, int64_t rem, int64_t reset,
                      int64_t after, int64_t now, int64_t now_unix)
{
    bucket *b = &s->b[d];
    refill(b, now);
    if (lim > 0) {
        if (lim > AQ_RL_MAX_LIMIT)
            lim = AQ_RL_MAX_LIMIT;
        int64_t eff = b->cfg_limit > 0 && b->cfg_limit < lim ? b->cfg_limit : lim;
        b->learned = eff == lim && lim != b->cfg_limit;
        if (b->limit == 0) {
            /* First known. Until the first measurement, assume one
             * neighbour on the key: workers that start together and learn
             * that the bucket is full must not each take all of it. A
             * worker alone measures others = 0 and gets the rest within a
             * window (the header floor below then hands it over). */
            b->limit = eff;
            b->share_ppm = AQ_RL_INITIAL_SHARE_PPM;
            b->level = capacity(b); /* until the remaining says otherwise */
            b->shadow_valid = false;
            b->win_start = -1;
        } else if (eff != b->limit) {
            b->limit = eff;
            if (b->level > capacity(b))
                b->level = capacity(b);
            if (b->shadow_valid && b->shadow > full_ticks(b))
                b->shadow = full_ticks(b);
        }
    }
    if (b->limit == 0 || rem < 0)
        return; /* nothing to model without a limit; nothing to sync without a remaining */

    b->rep_remaining = rem;
    b->rep_reset = reset;
    /* Unseen: this worker's calls that the provider may not have counted
     * when it wrote these headers. Only calls granted after the answered one
     * (that one had reached the provider; every call sent before it, too)
     * and less than visibility_ms ago (older ones have arrived). Either
     * bound alone over-counts: a burst of calls granted in the same
     * millisecond are all young, but those before the answered call were
     * seen; and calls granted during a long call are after it, but those
     * older than the visibility were seen. */
    int64_t unseen = b->young < after ? b->young : after;
    /* The shadow follows the provider as reported (the rounding is noise
     * there, and the shadow is capped like the provider's bucket); the level
     * takes the rounding slack off. */
    i128 target = ((i128)rem - unseen) * TICKS;
    if (target > full_ticks(b))
        target = full_ticks(b);
    if (b->shadow_valid && b->win_start >= 0)
        b->win_others = clamp_ticks((i128)b->win_others + b->shadow - target, LEVEL_MAX);
    b->shadow = clamp_ticks(target, full_ticks(b));
    b->shadow_valid = true;
    if (b->win_start < 0)
        open_window(b, now);
    else
        close_window_if_due(rl, b, d, target, now);
    /* This worker's part of what the provider has free. */
    int64_t slack = d == AQ_RL_REQUESTS ? 0 : AQ_RL_TOKEN_REMAINING_SLACK;
    i128 free_now = ((i128)rem - slack - unseen) * TICKS;
    if (free_now > full_ticks(b))
        free_now = full_ticks(b);
    i128 mine = free_now > 0 ? free_now * b->share_ppm / PPM : free_now;
    if (b->level > mine)
        b->level = clamp_ticks(mine, capacity(b));
    /* And a floor: the provider has at least `rem` minus everything this
     * worker was granted after the answered call (whether or not those
     * calls were counted yet, and even if the headers were written when
     * the answered call arrived, long ago), so this worker's part of that
     * is certainly free. Without it a level pushed down by a burst of
     * unseen calls, or by a halved share, stays down until the slow refill
     * repays it, while the provider's bucket sits full. Not when the
     * operator configured less than the provider's limit: that budget is
     * the operator's, and the provider's remaining says nothing about it. */
    bool provider_binds = b->cfg_limit == 0 || (lim > 0 && lim <= b->cfg_limit);
    i128 sure = ((i128)rem - slack - after) * TICKS;
    if (sure > full_ticks(b))
        sure = full_ticks(b);
    if (provider_binds && sure > 0) {
        i128 floor_mine = sure * b->share_ppm / PPM;
        if (b->level < floor_mine)
            b->level = clamp_ticks(floor_mine, capacity(b));
    }

    /* Reset: not full before then. */
    b->slow_until = now;
    int64_t provider_limit = lim > 0 ? lim : b->limit;
    if (reset >= 0 && now_unix >= 0) {
        int64_t dt = reset - now_unix, missing = provider_limit - rem;
        /* Only when clearly slower than nominal (half or less): remaining
         * values are rounded and reset times may be whole seconds, so a
         * continuously refilling provider looks a little slower or faster. */
        if (dt > 0 && dt <= AQ_RL_RESET_HORIZON_MS && missing > 0 &&
            (i128)missing * TICKS * 2 <= (i128)b->limit * dt) {
            b->slow_num = missing;
            b->slow_den = dt;
            b->slow_until = now + dt;
        }
    }
}

/* `after`: units granted on `s` after the answered call (acquired_after). */
static void apply_headers(const aq_rl *rl, slot *s, const aq_llm_ratelimit *h,
                          const int64_t after[AQ_RL_DIM_COUNT], int64_t now, int64_t now_unix)
{
    if (!h)
        return;
    s->heard = true;
    advance_young(rl, s, now);
    apply_dim(rl, s, AQ_RL_REQUESTS, h->requests_limit, h->requests_remaining, h->requests_reset_unix_ms,
              after[AQ_RL_REQUESTS], now, now_unix);
    apply_dim(rl, s, AQ_RL_INPUT_TOKENS, h->input_limit, h->input_remaining, h->input_reset_unix_ms,
              after[AQ_RL_INPUT_TOKENS], now, now_unix);
    apply_dim(rl, s, AQ_RL_OUTPUT_TOKENS, h->output_limit, h->output_remaining, h->output_reset_unix_ms,
              after[AQ_RL_OUTPUT_TOKENS], now, now_unix);
}

/* ---- life cycle ---- */

static aq_status check_label(const char *l, size_t i, aq_err *err)
{
    size_t n = l ? strnlen(l, AQ_RL_LABEL_MAX + 1) : 0;
    if (n == 0)
        return aq_err_set(err, AQ_CONFIG, "rate limiter: label of key %zu is empty", i + 1);
    if (n > AQ_RL_LABEL_MAX)
        return aq_err_set(err, AQ_CONFIG, "rate limiter: label of key %zu is longer than %d characters",
                          i + 1, AQ_RL_LABEL_MAX);
    if ((l[0] == 's' || l[0] == 'S') && (l[1] == 'k' || l[1] == 'K') && l[2] == '-')
        return aq_err_set(err, AQ_CONFIG, "rate limiter: label of key %zu looks like an API key", i + 1);
    for (size_t k = 0; k < n; k++) {
        char c = l[k];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return aq_err_set(err, AQ_CONFIG,
                              "rate limiter: label of key %zu has a character outside [A-Za-z0-9._-]", i + 1);
    }
    return AQ_OK;
}

static aq_status pick_ms(int64_t v, int64_t def, int64_t lo, int64_t hi, const char *what, int64_t *out,
                         aq_err *err)
{
    if (v == 0)
        v = def;
    if (v < lo || v > hi)
        return aq_err_set(err, AQ_CONFIG, "rate limiter: %s %lld ms is outside %lld..%lld", what,
                          (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return AQ_OK;
}

aq_status aq_rl_new(const aq_rl_config *cfg, int64_t now_ms, aq_rl **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_rl *rl = NULL;
    int64_t pause = 0, vis = 0, win = 0;

    if (!cfg || !out)
        return aq_err_set(err, AQ_INVALID_ARG, "rate limiter: no configuration");
    if (cfg->n_keys < 1 || cfg->n_keys > AQ_RL_MAX_KEYS)
        return aq_err_set(err, AQ_CONFIG, "rate limiter: %zu keys, expected 1..%d", cfg->n_keys,
                          AQ_RL_MAX_KEYS);
    for (int c = 0; c < AQ_RL_CLASS_COUNT; c++)
        for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
            int64_t v = cfg->limits.per_min[c][d];
            if (v < 0 || v > AQ_RL_MAX_LIMIT)
                return aq_err_set(err, AQ_CONFIG, "rate limiter: %s %s limit %lld is outside 0..%lld",
                                  class_names[c], setting_names[d], (long long)v, (long long)AQ_RL_MAX_LIMIT);
        }
    if ((st = pick_ms(cfg->default_pause_ms, AQ_RL_DEFAULT_PAUSE_MS, 1, AQ_RL_MAX_PAUSE_MS, "default pause",
                      &pause, err)) != AQ_OK ||
        (st = pick_ms(cfg->visibility_ms, AQ_RL_DEFAULT_VISIBILITY_MS, 1, MAX_VISIBILITY_MS, "visibility",
                      &vis, err)) != AQ_OK ||
        (st = pick_ms(cfg->share_window_ms, AQ_RL_DEFAULT_SHARE_WINDOW_MS, MIN_SHARE_WINDOW_MS,
                      AQ_RL_SHARE_MAX_WINDOW_MS, "share window", &win, err)) != AQ_OK)
        return st;
    if (cfg->labels)
        for (size_t i = 0; i < cfg->n_keys; i++)
            if ((st = check_label(cfg->labels[i], i, err)) != AQ_OK)
                return st;

    rl = calloc(1, sizeof(*rl));
    if (!rl)
        return aq_err_set(err, AQ_NOMEM, "rate limiter: out of memory");
    rl->slots = calloc(cfg->n_keys * AQ_RL_CLASS_COUNT, sizeof(*rl->slots));
    if (!rl->slots) {
        free(rl);
        return aq_err_set(err, AQ_NOMEM, "rate limiter: out of memory");
    }
    rl->n_keys = cfg->n_keys;
    rl->default_pause_ms = pause;
    rl->visibility_ms = vis;
    rl->share_window_ms = win;
    for (size_t k = 0; k < cfg->n_keys; k++) {
        if (cfg->labels)
            snprintf(rl->labels[k], sizeof(rl->labels[k]), "%s", cfg->labels[k]);
        else
            snprintf(rl->labels[k], sizeof(rl->labels[k]), "key-%u", (unsigned)(k + 1));
        for (int c = 0; c < AQ_RL_CLASS_COUNT; c++) {
            slot *s = slot_at(rl, k, (aq_rl_class)c);
            s->last_acquire_ms = now_ms;
            s->paused_until = now_ms;
            for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
                bucket *b = &s->b[d];
                b->cfg_limit = b->limit = cfg->limits.per_min[c][d];
                b->share_ppm = PPM;
                b->level = capacity(b);
                b->last_ms = now_ms;
                b->slow_until = now_ms;
                b->win_start = -1;
                b->cut_window = -2;
                b->rep_remaining = b->rep_reset = -1;
            }
        }
    }
    *out = rl;
    return AQ_OK;
}

void aq_rl_destroy(aq_rl *rl)
{
    if (!rl)
        return;
    free(rl->slots);
    free(rl);
}

/* ---- acquire ---- */

static int64_t clamp_cost(int64_t v)
{
    return v < 0 ? 0 : v > AQ_RL_MAX_COST ? AQ_RL_MAX_COST : v;
}

/* Before the first answer with headers, a (key, class) with a limit still
 * unknown takes AQ_RL_PROBE_CALLS calls at a time: without a limit every
 * call would be granted, and a worker that starts with hundreds of tasks
 * would send them all before the first answer teaches it anything. */
static bool probe_busy(const slot *s)
{
    if (s->heard || s->n_in_flight < AQ_RL_PROBE_CALLS)
        return false;
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++)
        if (s->b[d].limit <= 0)
            return true;
    return false;
}

static bool affordable(const slot *s, const int64_t cost[AQ_RL_DIM_COUNT])
{
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        const bucket *b = &s->b[d];
        if (b->limit > 0 && b->level < need_ticks(b, cost[d]))
            return false;
    }
    return true;
}

static double headroom(const slot *s, const int64_t cost[AQ_RL_DIM_COUNT])
{
    double h = 1.0;
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        const bucket *b = &s->b[d];
        if (b->limit <= 0)
            continue;
        double x = ((double)b->level - (double)cost[d] * TICKS) / (double)full_ticks(b);
        if (x < h)
            h = x;
    }
    return h;
}

/* ms until `s` (refilled up to now) can afford `cost`, pause included. */
static int64_t time_to_afford(const slot *s, const int64_t cost[AQ_RL_DIM_COUNT], int64_t now)
{
    int64_t t = s->paused_until > now ? s->paused_until - now : 0;
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        const bucket *b = &s->b[d];
        if (b->limit <= 0)
            continue;
        int64_t td = time_to_gain(b, now, (i128)need_ticks(b, cost[d]) - b->level);
        if (td > t)
            t = td;
    }
    return t;
}

aq_rl_verdict aq_rl_acquire(aq_rl *rl, aq_rl_class cls, int64_t input_estimate, int64_t max_tokens,
                            int64_t now_ms, aq_rl_reservation *res, int64_t *wait_ms)
{
    if ((int)cls < 0 || cls >= AQ_RL_CLASS_COUNT)
        cls = AQ_RL_OTHER;
    int64_t cost[AQ_RL_DIM_COUNT] = {1, clamp_cost(input_estimate), clamp_cost(max_tokens)};
    size_t best = SIZE_MAX;
    double best_h = 0;
    int64_t soonest = INT64_MAX;

    for (size_t k = 0; k < rl->n_keys; k++) {
        slot *s = slot_at(rl, k, cls);
        for (int d = 0; d < AQ_RL_DIM_COUNT; d++)
            refill(&s->b[d], now_ms);
        bool probing = probe_busy(s);
        if (s->paused_until <= now_ms && !probing && affordable(s, cost)) {
            double h = headroom(s, cost);
            if (best == SIZE_MAX || h > best_h) {
                best = k;
                best_h = h;
            }
        } else {
            int64_t t = time_to_afford(s, cost, now_ms);
            if (probing && t < AQ_RL_PROBE_WAIT_MS)
                t = AQ_RL_PROBE_WAIT_MS; /* no telling when the probe is answered: look again */
            if (t < soonest)
                soonest = t;
        }
    }

    if (best == SIZE_MAX) {
        rl->waits[cls]++;
        if (soonest < 1)
            soonest = 1;
        if (soonest > AQ_RL_MAX_WAIT_MS)
            soonest = AQ_RL_MAX_WAIT_MS;
        if (wait_ms)
            *wait_ms = soonest;
        return AQ_RL_WAIT;
    }

    slot *s = slot_at(rl, best, cls);
    memset(res, 0, sizeof(*res));
    res->key = (uint32_t)best;
    res->cls = cls;
    res->acquired_ms = now_ms > s->last_acquire_ms ? now_ms : s->last_acquire_ms;
    s->last_acquire_ms = res->acquired_ms;
    res->owner_ = rl;
    res->in_flight_ = true;
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        bucket *b = &s->b[d];
        res->cost[d] = cost[d];
        if (b->limit <= 0)
            continue;
        i128 t = (i128)cost[d] * TICKS;
        b->level = clamp_ticks((i128)b->level - t, capacity(b));
        if (b->shadow_valid)
            b->shadow = clamp_ticks((i128)b->shadow - t, full_ticks(b));
        if (b->win_start >= 0) {
            b->win_own = clamp_ticks((i128)b->win_own + t, LEVEL_MAX);
            res->counted_ |= 1u << d;
        }
    }
    link_reservation(s, res);
    s->grants++;
    if (wait_ms)
        *wait_ms = 0;
    return AQ_RL_GRANTED;
}

/* ---- finishing ---- */

static slot *owned_slot(const aq_rl *rl, const aq_rl_reservation *r)
{
    if (!rl || !r || !r->in_flight_ || r->owner_ != rl || r->key >= rl->n_keys || (int)r->cls < 0 ||
        r->cls >= AQ_RL_CLASS_COUNT)
        return NULL;
    return slot_at(rl, r->key, r->cls);
}

/* Correct the charge of `r` to `actual` and take it out of the calls in flight. */
static void settle(aq_rl *rl, slot *s, aq_rl_reservation *r, const int64_t actual[AQ_RL_DIM_COUNT],
                   int64_t now)
{
    advance_young(rl, s, now);
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        bucket *b = &s->b[d];
        refill(b, now);
        /* A call acquired before the limit was known was not charged, but
         * the level it was learnt with counts it (the provider's remaining
         * includes it, or it was young and subtracted): correct it too. */
        if (b->limit <= 0)
            continue;
        i128 delta = ((i128)clamp_cost(actual[d]) - r->cost[d]) * TICKS;
        b->level = clamp_ticks((i128)b->level - delta, capacity(b));
        if (b->shadow_valid)
            b->shadow = clamp_ticks((i128)b->shadow - delta, full_ticks(b));
        /* Only a call whose charge was counted as this worker's use has its
         * correction counted (one acquired before the first header is part
         * of the state the measurement started from, like the others' calls
         * in flight then). */
        if (b->win_start >= 0 && (r->counted_ & (1u << d)))
            b->win_own = clamp_ticks((i128)b->win_own + delta, LEVEL_MAX);
    }
    unlink_reservation(s, r);
}

void aq_rl_commit(aq_rl *rl, aq_rl_reservation *res, const aq_llm_usage *usage, const aq_llm_ratelimit *hdr,
                  int64_t now_ms, int64_t now_unix_ms)
{
    slot *s = owned_slot(rl, res);
    if (!s)
        return;
    int64_t actual[AQ_RL_DIM_COUNT] = {res->cost[0], res->cost[1], res->cost[2]};
    if (usage) {
        actual[AQ_RL_INPUT_TOKENS] = (int64_t)usage->input_tokens + (int64_t)usage->cache_creation_input_tokens;
        actual[AQ_RL_OUTPUT_TOKENS] = (int64_t)usage->output_tokens;
    }
    int64_t after[AQ_RL_DIM_COUNT];
    acquired_after(s, res, after);
    settle(rl, s, res, actual, now_ms);
    apply_headers(rl, s, hdr, after, now_ms, now_unix_ms);
}

void aq_rl_release(aq_rl *rl, aq_rl_reservation *res, int64_t now_ms)
{
    slot *s = owned_slot(rl, res);
    if (!s)
        return;
    const int64_t zero[AQ_RL_DIM_COUNT] = {0, 0, 0};
    settle(rl, s, res, zero, now_ms);
}

void aq_rl_rate_limited(aq_rl *rl, aq_rl_reservation *res, int64_t retry_after_ms, const aq_llm_ratelimit *hdr,
                        int64_t now_ms, int64_t now_unix_ms)
{
    slot *s = owned_slot(rl, res);
    if (!s)
        return;
    int64_t pause = retry_after_ms < 0 ? rl->default_pause_ms
                    : retry_after_ms > AQ_RL_MAX_PAUSE_MS ? AQ_RL_MAX_PAUSE_MS
                                                          : retry_after_ms;
    if (now_ms + pause > s->paused_until)
        s->paused_until = now_ms + pause;
    s->pauses++;
    const int64_t zero[AQ_RL_DIM_COUNT] = {0, 0, 0};
    int64_t after[AQ_RL_DIM_COUNT];
    acquired_after(s, res, after);
    settle(rl, s, res, zero, now_ms);
    /* The fleet took more than the key gives: halve the share (once per
     * measurement window), the next window measures it again. */
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        bucket *b = &s->b[d];
        if (b->limit <= 0 || b->cut_window == b->win_start)
            continue;
        b->cut_window = b->win_start;
        b->share_ppm = b->share_ppm / 2 < AQ_RL_MIN_SHARE_PPM ? AQ_RL_MIN_SHARE_PPM : b->share_ppm / 2;
        if (b->level > capacity(b))
            b->level = capacity(b);
    }
    apply_headers(rl, s, hdr, after, now_ms, now_unix_ms);
}

void aq_rl_finish(aq_rl *rl, aq_rl_reservation *res, const aq_llm_call_result *call, const aq_llm_usage *usage,
                  int64_t now_ms, int64_t now_unix_ms)
{
    slot *s = owned_slot(rl, res);
    if (!s)
        return;
    if (!call || (call->transport == AQ_HTTP_CONNECT && call->http_status == 0)) {
        aq_rl_release(rl, res, now_ms);
        return;
    }
    const aq_llm_ratelimit *hdr = call->http_status != 0 ? &call->ratelimit : NULL;
    if (call->transport != AQ_OK) {
        aq_rl_commit(rl, res, NULL, hdr, now_ms, now_unix_ms);
    } else if (call->http_status == 429) {
        aq_rl_rate_limited(rl, res, call->retry_after_ms, hdr, now_ms, now_unix_ms);
    } else if (call->http_status >= 200 && call->http_status <= 299) {
        aq_rl_commit(rl, res, usage, hdr, now_ms, now_unix_ms);
    } else {
        int64_t actual[AQ_RL_DIM_COUNT] = {res->cost[0], res->cost[1], 0};
        int64_t after[AQ_RL_DIM_COUNT];
        acquired_after(s, res, after);
        settle(rl, s, res, actual, now_ms);
        apply_headers(rl, s, hdr, after, now_ms, now_unix_ms);
    }
}

/* ---- introspection ---- */

size_t aq_rl_key_count(const aq_rl *rl)
{
    return rl ? rl->n_keys : 0;
}

const char *aq_rl_key_label(const aq_rl *rl, size_t key)
{
    return rl && key < rl->n_keys ? rl->labels[key] : "";
}

static int64_t floor_units(int64_t ticks)
{
    int64_t q = ticks / TICKS;
    return (ticks % TICKS != 0 && ticks < 0) ? q - 1 : q;
}

bool aq_rl_stats_get(const aq_rl *rl, size_t key, aq_rl_class cls, int64_t now_ms, aq_rl_stats *out)
{
    if (!rl || !out || key >= rl->n_keys || (int)cls < 0 || cls >= AQ_RL_CLASS_COUNT)
        return false;
    const slot *s = slot_at(rl, key, cls);
    memset(out, 0, sizeof(*out));
    out->key_label = rl->labels[key];
    out->class_name = class_names[cls];
    out->paused_ms = s->paused_until > now_ms ? s->paused_until - now_ms : 0;
    out->grants = s->grants;
    out->pauses = s->pauses;
    for (int d = 0; d < AQ_RL_DIM_COUNT; d++) {
        bucket b = s->b[d]; /* a copy: looking does not change the limiter */
        refill(&b, now_ms);
        aq_rl_dim_stats *o = &out->dim[d];
        o->limit = b.limit;
        o->learned = b.learned;
        o->available = b.limit > 0 ? floor_units(b.level) : 0;
        o->capacity = b.limit > 0 ? floor_units(capacity(&b)) : 0;
        o->in_flight = b.reserved;
        o->share = (double)b.share_ppm / PPM;
        o->reported_remaining = b.rep_remaining;
        o->reported_reset_unix_ms = b.rep_reset;
    }
    return true;
}

uint64_t aq_rl_waits(const aq_rl *rl, aq_rl_class cls)
{
    return rl && (int)cls >= 0 && cls < AQ_RL_CLASS_COUNT ? rl->waits[cls] : 0;
}

bool aq_rl_heard(const aq_rl *rl, size_t key, aq_rl_class cls)
{
    if (!rl || key >= rl->n_keys || (int)cls < 0 || cls >= AQ_RL_CLASS_COUNT)
        return false;
    return slot_at(rl, key, cls)->heard;
}
