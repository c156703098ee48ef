#include "cost.h"

#include "core/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

#define PICO_PER_MICRO 1000000u /* pico-dollars (price x tokens) per micro-dollar */
#define MICRO_PER_USD 1000000LL
#define MAX_DECIMALS 6
#define SNAPSHOT_DIGITS 8       /* "-20250929" */

typedef struct row {
    char model[AQ_COST_MODEL_MAX + 1];
    aq_cost_price price;
} row;

struct aq_cost_table {
    size_t n;
    row rows[AQ_COST_MAX_MODELS];
    size_t n_noted;
    char noted[AQ_COST_MAX_UNPRICED_NOTED][AQ_COST_MODEL_MAX + 1];
};

/* ---- parsing ---- */

/* Quoted input in messages is cut at this many characters. */
#define QUOTE_MAX 40
#define QUOTE(b, e) (int)((e) - (b) > QUOTE_MAX ? QUOTE_MAX : (e) - (b)), (b)

static bool model_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '@' || c == '/' || c == ':' || c == '-';
}

enum { S_IN, S_OUT, S_CACHE_WRITE, S_CACHE_READ, S_COUNT };
static const char *const setting_names[S_COUNT] = {"in", "out", "cache_write", "cache_read"};

/* "3", "0.1", "1.25", "10000": USD per Mtok -> micro-USD per Mtok, exactly. */
static aq_status parse_usd(const char *b, const char *e, const char *model, const char *name,
                           int64_t *out, aq_err *err)
{
    int64_t whole = 0, frac = 0;
    int decimals = 0;
    const char *p = b;
    if (b == e)
        return aq_err_set(err, AQ_CONFIG, "prices: %s: %s has no value", model, name);
    if (*p < '0' || *p > '9')
        goto bad;
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
        whole = whole * 10 + (*p - '0');
        if (whole > AQ_COST_MAX_PRICE / MICRO_PER_USD)
            goto over;
    }
    if (p < e && *p == '.') {
        p++;
        if (p == e)
            goto bad;
        for (; p < e && *p >= '0' && *p <= '9'; p++) {
            if (++decimals > MAX_DECIMALS)
                return aq_err_set(err, AQ_CONFIG,
                                  "prices: %s: %s='%.*s' has more than %d decimals (the unit is "
                                  "one micro-dollar per million tokens)",
                                  model, name, QUOTE(b, e), MAX_DECIMALS);
            frac = frac * 10 + (*p - '0');
        }
    }
    if (p != e)
        goto bad;
    for (int i = decimals; i < MAX_DECIMALS; i++)
        frac *= 10;
    int64_t v = whole * MICRO_PER_USD + frac;
    if (v > AQ_COST_MAX_PRICE)
        goto over;
    *out = v;
    return AQ_OK;
bad:
    return aq_err_set(err, AQ_CONFIG,
                      "prices: %s: %s='%.*s' is not a decimal number of USD per million tokens "
                      "(e.g. 3 or 0.25)",
                      model, name, QUOTE(b, e));
over:
    return aq_err_set(err, AQ_CONFIG, "prices: %s: %s='%.*s' is over the cap of %lld USD per million tokens",
                      model, name, QUOTE(b, e), (long long)(AQ_COST_MAX_PRICE / MICRO_PER_USD));
}

/* Index of the row for model[0, len), or t->n. */
static size_t find_row(const aq_cost_table *t, const char *model, size_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->rows[i].model) == len && memcmp(t->rows[i].model, model, len) == 0)
            return i;
    return t->n;
}

/* One entry [b, e). `given` marks the rows set by this string (a model given
 * twice in one string is a mistake; replacing a default is not). */
static aq_status parse_entry(aq_cost_table *t, const char *b, const char *e, bool *given,
                             aq_err *err)
{
    const char *eq = aq_span_find(b, e, '=');
    const char *colon = NULL;
    for (const char *p = b; p < eq; p++)
        if (*p == ':')
            colon = p;
    if (!colon)
        return aq_err_set(err, AQ_CONFIG,
                          "prices: entry '%.*s' has no ':' before its settings (expected "
                          "model: in=USD, out=USD[, cache_write=USD][, cache_read=USD])",
                          QUOTE(b, e));
    const char *mb = b, *me = colon;
    aq_span_trim(&mb, &me);
    if (mb == me)
        return aq_err_set(err, AQ_CONFIG, "prices: entry '%.*s' has no model", QUOTE(b, e));
    if (me - mb > AQ_COST_MODEL_MAX)
        return aq_err_set(err, AQ_CONFIG, "prices: model '%.*s...' is longer than %d characters",
                          QUOTE(mb, me), AQ_COST_MODEL_MAX);
    for (const char *p = mb; p < me; p++)
        if (!model_char(*p))
            return aq_err_set(err, AQ_CONFIG,
                              "prices: model '%.*s' has a character outside [A-Za-z0-9._@/:-]",
                              QUOTE(mb, me));
    char model[AQ_COST_MODEL_MAX + 1];
    memcpy(model, mb, (size_t)(me - mb));
    model[me - mb] = '\0';

    const char *sb = colon + 1, *se = e;
    aq_span_trim(&sb, &se);
    if (sb == se)
        return aq_err_set(err, AQ_CONFIG, "prices: %s has no settings", model);

    int64_t v[S_COUNT] = {0};
    bool set[S_COUNT] = {false};
    const char *p = colon + 1;
    for (;;) {
        const char *ie = aq_span_find(p, e, ',');
        const char *ib = p, *iend = ie;
        aq_span_trim(&ib, &iend);
        if (ib == iend)
            return aq_err_set(err, AQ_CONFIG, "prices: %s: empty setting", model);
        const char *nb, *ne, *vb, *ve;
        int s = aq_span_setting(ib, iend, setting_names, S_COUNT, &nb, &ne, &vb, &ve);
        if (s == AQ_SPAN_NO_EQUALS)
            return aq_err_set(err, AQ_CONFIG, "prices: %s: '%.*s' is not name=value", model,
                              QUOTE(ib, iend));
        if (s < 0)
            return aq_err_set(err, AQ_CONFIG,
                              "prices: %s: unknown setting '%.*s' (expected in, out, cache_write "
                              "or cache_read)",
                              model, QUOTE(nb, ne));
        if (set[s])
            return aq_err_set(err, AQ_CONFIG, "prices: %s: '%s' given twice", model, setting_names[s]);
        aq_status st = parse_usd(vb, ve, model, setting_names[s], &v[s], err);
        if (st != AQ_OK)
            return st;
        set[s] = true;
        if (ie == e)
            break;
        p = ie + 1;
    }
    if (!set[S_IN] || !set[S_OUT])
        return aq_err_set(err, AQ_CONFIG, "prices: %s: '%s' is required", model,
                          set[S_IN] ? "out" : "in");
    /* The provider's multipliers: 5-minute write 1.25x, read 0.1x, half up. */
    if (!set[S_CACHE_WRITE])
        v[S_CACHE_WRITE] = (v[S_IN] * 5 + 2) / 4;
    if (!set[S_CACHE_READ])
        v[S_CACHE_READ] = (v[S_IN] + 5) / 10;

    size_t i = find_row(t, model, strlen(model));
    if (i < t->n && given[i])
        return aq_err_set(err, AQ_CONFIG, "prices: %s given twice", model);
    if (i == t->n) {
        if (t->n == AQ_COST_MAX_MODELS)
            return aq_err_set(err, AQ_CONFIG, "prices: more than %d models", AQ_COST_MAX_MODELS);
        t->n++;
        snprintf(t->rows[i].model, sizeof(t->rows[i].model), "%s", model);
    }
    given[i] = true;
    t->rows[i].price = (aq_cost_price){v[S_IN], v[S_OUT], v[S_CACHE_WRITE], v[S_CACHE_READ]};
    return AQ_OK;
}

static aq_status parse_into(aq_cost_table *t, const char *s, aq_err *err)
{
    bool given[AQ_COST_MAX_MODELS] = {false};
    size_t len = strlen(s);
    const char *b = s, *e = s + len;
    aq_span_trim(&b, &e);
    if (b == e)
        return AQ_OK;
    if (len > AQ_COST_PRICES_MAX_LEN)
        return aq_err_set(err, AQ_CONFIG, "prices: %zu characters, over the cap of %d", len,
                          AQ_COST_PRICES_MAX_LEN);
    const char *p = s;
    for (;;) {
        const char *end = aq_span_find(p, s + len, ';');
        const char *tb = p, *te = end;
        aq_span_trim(&tb, &te);
        if (tb == te)
            return aq_err_set(err, AQ_CONFIG, "prices: empty entry (';;' or a ';' at the end)");
        aq_status st = parse_entry(t, tb, te, given, err);
        if (st != AQ_OK)
            return st;
        if (end == s + len)
            break;
        p = end + 1;
    }
    return AQ_OK;
}

aq_status aq_cost_table_parse(const char *s, aq_cost_table **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_cost_table *t = calloc(1, sizeof(*t));
    if (!t)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    if ((st = parse_into(t, AQ_COST_DEFAULT_PRICES, err)) != AQ_OK) {
        aq_err_prefix(err, "built-in prices");
        goto out;
    }
    if (s && (st = parse_into(t, s, err)) != AQ_OK)
        goto out;
    *out = t;
    t = NULL;
out:
    free(t);
    return st;
}

void aq_cost_table_destroy(aq_cost_table *t)
{
    free(t);
}

size_t aq_cost_table_count(const aq_cost_table *t)
{
    return t ? t->n : 0;
}

bool aq_cost_table_row(const aq_cost_table *t, size_t i, const char **model, aq_cost_price *price)
{
    if (!t || i >= t->n)
        return false;
    if (model)
        *model = t->rows[i].model;
    if (price)
        *price = t->rows[i].price;
    return true;
}

/* ---- lookup ---- */

static const row *lookup(const aq_cost_table *t, const char *model)
{
    if (!t || !model)
        return NULL;
    size_t n = strlen(model), i = find_row(t, model, n);
    if (i < t->n)
        return &t->rows[i];
    /* "<id>-YYYYMMDD" / "<id>@YYYYMMDD": a dated snapshot of a priced alias. */
    if (n > SNAPSHOT_DIGITS + 1) {
        const char *sfx = model + n - SNAPSHOT_DIGITS - 1;
        if (*sfx != '-' && *sfx != '@')
            return NULL;
        for (int d = 1; d <= SNAPSHOT_DIGITS; d++)
            if (sfx[d] < '0' || sfx[d] > '9')
                return NULL;
        i = find_row(t, model, (size_t)(sfx - model));
        return i < t->n ? &t->rows[i] : NULL;
    }
    return NULL;
}

bool aq_cost_price_of(const aq_cost_table *t, const char *model, aq_cost_price *out)
{
    const row *r = lookup(t, model);
    if (!r)
        return false;
    *out = r->price;
    return true;
}

/* ---- arithmetic ---- */

static uint64_t saturate(u128 v)
{
    return v > (u128)UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static u128 price_u(int64_t p)
{
    return (u128)(uint64_t)(p < 0 ? 0 : p);
}

uint64_t aq_cost_compute(const aq_cost_price *p, const aq_cost_usage *u)
{
    /* Each product < 2^64 x 2^34; the sum of four < 2^100: no overflow. */
    u128 pico = (u128)u->input_tokens * price_u(p->in) + (u128)u->output_tokens * price_u(p->out) +
                (u128)u->cache_creation_input_tokens * price_u(p->cache_write) +
                (u128)u->cache_read_input_tokens * price_u(p->cache_read);
    return saturate((pico + PICO_PER_MICRO / 2) / PICO_PER_MICRO);
}

bool aq_cost_of(const aq_cost_table *t, const char *model, const aq_cost_usage *u,
                uint64_t *micro_usd)
{
    const row *r = lookup(t, model);
    *micro_usd = r ? aq_cost_compute(&r->price, u) : 0;
    return r != NULL;
}

uint64_t aq_cost_estimate_max(const aq_cost_price *p, uint64_t input_tokens, uint64_t max_tokens)
{
    int64_t in = p->in;
    if (p->cache_write > in)
        in = p->cache_write;
    if (p->cache_read > in)
        in = p->cache_read;
    u128 pico = (u128)input_tokens * price_u(in) + (u128)max_tokens * price_u(p->out);
    return saturate((pico + PICO_PER_MICRO - 1) / PICO_PER_MICRO);
}

bool aq_cost_estimate_max_of(const aq_cost_table *t, const char *model, uint64_t input_tokens,
                             uint64_t max_tokens, uint64_t *micro_usd)
{
    const row *r = lookup(t, model);
    *micro_usd = r ? aq_cost_estimate_max(&r->price, input_tokens, max_tokens) : 0;
    return r != NULL;
}

bool aq_cost_note_unpriced(aq_cost_table *t, const char *model)
{
    if (!t || !model || lookup(t, model))
        return false;
    size_t n = strlen(model);
    if (n > AQ_COST_MODEL_MAX)
        n = AQ_COST_MODEL_MAX; /* a longer id is noted by its prefix */
    for (size_t i = 0; i < t->n_noted; i++)
        if (strncmp(t->noted[i], model, n) == 0 && t->noted[i][n] == '\0')
            return false;
    if (t->n_noted == AQ_COST_MAX_UNPRICED_NOTED)
        return false;
    memcpy(t->noted[t->n_noted], model, n);
    t->noted[t->n_noted][n] = '\0';
    t->n_noted++;
    return true;
}

const char *aq_cost_format_usd(uint64_t micro_usd, char *buf, size_t cap)
{
    snprintf(buf, cap, "%llu.%06llu", (unsigned long long)(micro_usd / 1000000u),
             (unsigned long long)(micro_usd % 1000000u));
    return buf;
}
