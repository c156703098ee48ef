#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

const double aq_metrics_buckets_llm[] = {AQ_METRICS_BUCKETS_LLM};
const size_t aq_metrics_buckets_llm_n =
    sizeof(aq_metrics_buckets_llm) / sizeof(aq_metrics_buckets_llm[0]);
const double aq_metrics_buckets_task[] = {AQ_METRICS_BUCKETS_TASK};
const size_t aq_metrics_buckets_task_n =
    sizeof(aq_metrics_buckets_task) / sizeof(aq_metrics_buckets_task[0]);

#define MAP_MIN_CAP 16
#define COLLECT_MAX 32 /* collect callbacks per registry */

/* The admitted values of one label of one family: interned, so that series
 * point at them and the cap can be checked. Open addressing, no deletes. */
typedef struct lslot {
    uint64_t h;
    char *v; /* NULL: empty slot */
    size_t len;
} lslot;

typedef struct ldict {
    size_t cap; /* distinct values admitted at most */
    size_t n;
    size_t nslots; /* power of two, or 0 */
    lslot *slots;
} ldict;

struct aq_mseries {
    aq_mseries *next; /* creation order */
    aq_mfamily *f;
    uint64_t h;
    const char *values[AQ_METRICS_MAX_LABELS]; /* interned, or AQ_METRICS_OTHER */
    size_t lens[AQ_METRICS_MAX_LABELS];
    double value;      /* counter, gauge; a histogram's sum */
    uint64_t count;    /* histogram observations */
    uint64_t bucket[]; /* histogram: per bucket (not cumulative), [n_buckets] = +Inf */
};

typedef struct sslot {
    uint64_t h;
    aq_mseries *s; /* NULL: empty slot */
} sslot;

struct aq_mfamily {
    aq_mfamily *next;
    char *name, *help;
    aq_metric_type type;
    size_t n_labels;
    char *labels[AQ_METRICS_MAX_LABELS];
    ldict dicts[AQ_METRICS_MAX_LABELS];
    size_t n_buckets;
    double le[AQ_METRICS_MAX_BUCKETS];
    aq_mseries *first, *last;
    size_t n_series;
    sslot *map;
    size_t map_cap; /* power of two */
};

typedef struct collector {
    aq_metrics_collect_fn fn;
    void *arg;
} collector;

struct aq_metrics {
    aq_mfamily *first, *last;
    collector collect[COLLECT_MAX];
    size_t n_collect;
};

const char *aq_metric_type_name(aq_metric_type t)
{
    switch (t) {
    case AQ_METRIC_COUNTER: return "counter";
    case AQ_METRIC_GAUGE: return "gauge";
    case AQ_METRIC_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

/* ---- registry ---- */

aq_status aq_metrics_new(aq_metrics **out, aq_err *err)
{
    aq_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return aq_err_set(err, AQ_NOMEM, "metrics: out of memory");
    *out = m;
    return AQ_OK;
}

static void family_free(aq_mfamily *f)
{
    if (!f)
        return;
    for (aq_mseries *s = f->first, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    for (size_t i = 0; i < f->n_labels; i++) {
        free(f->labels[i]);
        for (size_t j = 0; j < f->dicts[i].nslots; j++)
            free(f->dicts[i].slots[j].v);
        free(f->dicts[i].slots);
    }
    free(f->map);
    free(f->name);
    free(f->help);
    free(f);
}

void aq_metrics_destroy(aq_metrics *m)
{
    if (!m)
        return;
    for (aq_mfamily *f = m->first, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    free(m);
}

aq_status aq_metrics_on_collect(aq_metrics *m, aq_metrics_collect_fn fn, void *arg, aq_err *err)
{
    if (m->n_collect == COLLECT_MAX)
        return aq_err_set(err, AQ_TOO_BIG, "metrics: more than %d collect callbacks", COLLECT_MAX);
    m->collect[m->n_collect++] = (collector){fn, arg};
    return AQ_OK;
}

static bool name_ok(const char *s, bool colon)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > AQ_METRICS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

aq_mfamily *aq_metrics_find(const aq_metrics *m, const char *name)
{
    for (aq_mfamily *f = m->first; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static aq_status check_desc(const aq_metrics *m, const aq_metric_desc *d, aq_err *err)
{
    if (!name_ok(d->name, true))
        return aq_err_set(err, AQ_INVALID_ARG, "metrics: bad metric name '%s'",
                          d->name ? d->name : "");
    if (aq_metrics_find(m, d->name))
        return aq_err_set(err, AQ_INVALID_ARG, "metrics: '%s' registered twice", d->name);
    if (d->type != AQ_METRIC_COUNTER && d->type != AQ_METRIC_GAUGE &&
        d->type != AQ_METRIC_HISTOGRAM)
        return aq_err_set(err, AQ_INVALID_ARG, "metrics: '%s' has an unknown type", d->name);
    if (d->n_labels > AQ_METRICS_MAX_LABELS)
        return aq_err_set(err, AQ_INVALID_ARG, "metrics: '%s' has over %d labels", d->name,
                          AQ_METRICS_MAX_LABELS);
    for (size_t i = 0; i < d->n_labels; i++) {
        const char *l = d->labels[i];
        if (!name_ok(l, false) || strncmp(l, "__", 2) == 0 ||
            (d->type == AQ_METRIC_HISTOGRAM && strcmp(l, "le") == 0))
            return aq_err_set(err, AQ_INVALID_ARG, "metrics: '%s' has a bad label name '%s'",
                              d->name, l ? l : "");
        for (size_t j = 0; j < i; j++)
            if (strcmp(l, d->labels[j]) == 0)
                return aq_err_set(err, AQ_INVALID_ARG, "metrics: '%s' repeats label '%s'",
                                  d->name, l);
    }
    if (d->type == AQ_METRIC_HISTOGRAM) {
        if (d->n_buckets == 0 || d->n_buckets > AQ_METRICS_MAX_BUCKETS || !d->buckets)
            return aq_err_set(err, AQ_INVALID_ARG, "metrics: '%s' needs 1..%d buckets", d->name,
                              AQ_METRICS_MAX_BUCKETS);
        for (size_t i = 0; i < d->n_buckets; i++)
            if (!isfinite(d->buckets[i]) || (i > 0 && d->buckets[i] <= d->buckets[i - 1]))
                return aq_err_set(err, AQ_INVALID_ARG,
                                  "metrics: '%s' buckets must be finite and ascending", d->name);
    }
    return AQ_OK;
}

static aq_mseries *series_get(aq_mfamily *f, const char *const *values);

aq_status aq_metrics_family(aq_metrics *m, const aq_metric_desc *d, aq_mfamily **out,
                            aq_err *err)
{
    aq_status st = check_desc(m, d, err);
    aq_mfamily *f = NULL;
    if (st != AQ_OK)
        goto out;
    if (!(f = calloc(1, sizeof(*f))) || !(f->name = strdup(d->name)) ||
        !(f->help = strdup(d->help ? d->help : "")))
        goto nomem;
    f->type = d->type;
    for (size_t i = 0; i < d->n_labels; i++) {
        if (!(f->labels[i] = strdup(d->labels[i])))
            goto nomem;
        f->n_labels = i + 1;
        f->dicts[i].cap = d->caps[i] ? d->caps[i] : AQ_METRICS_DEFAULT_CAP;
    }
    if (d->type == AQ_METRIC_HISTOGRAM) {
        f->n_buckets = d->n_buckets;
        memcpy(f->le, d->buckets, d->n_buckets * sizeof(double));
    }
    /* Without labels the one series exists from the start: exposed as 0. */
    if (f->n_labels == 0 && !series_get(f, NULL))
        goto nomem;
    if (m->last)
        m->last->next = f;
    else
        m->first = f;
    m->last = f;
    *out = f;
    f = NULL;
    st = AQ_OK;
    goto out;
nomem:
    st = aq_err_set(err, AQ_NOMEM, "metrics: out of memory creating '%s'", d->name);
out:
    family_free(f);
    return st;
}

/* ---- label folding and series lookup ---- */

static uint64_t hash_values(const char *const *v, const size_t *len, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < n; i++)
        h = XXH3_64bits_withSeed(v[i], len[i], h + i); /* position matters: a,"" != "",a */
    return h;
}

static bool ldict_grow(ldict *d)
{
    size_t ncap = d->nslots ? d->nslots * 2 : MAP_MIN_CAP;
    lslot *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return false;
    for (size_t i = 0; i < d->nslots; i++) {
        if (!d->slots[i].v)
            continue;
        size_t j = d->slots[i].h & (ncap - 1);
        while (ns[j].v)
            j = (j + 1) & (ncap - 1);
        ns[j] = d->slots[i];
    }
    free(d->slots);
    d->slots = ns;
    d->nslots = ncap;
    return true;
}

/* The interned copy of `v`, admitting it if the cap allows; AQ_METRICS_OTHER
 * when folded; NULL when out of memory. */
static const char *ldict_intern(ldict *d, const char *v, size_t len, size_t *len_out)
{
    *len_out = sizeof(AQ_METRICS_OTHER) - 1;
    if (len > AQ_METRICS_VALUE_MAX ||
        (len == sizeof(AQ_METRICS_OTHER) - 1 && memcmp(v, AQ_METRICS_OTHER, len) == 0))
        return AQ_METRICS_OTHER;
    uint64_t h = XXH3_64bits(v, len);
    if (d->nslots) {
        for (size_t i = h & (d->nslots - 1); d->slots[i].v; i = (i + 1) & (d->nslots - 1)) {
            lslot *s = &d->slots[i];
            if (s->h == h && s->len == len && memcmp(s->v, v, len) == 0) {
                *len_out = len;
                return s->v;
            }
        }
    }
    if (d->n >= d->cap)
        return AQ_METRICS_OTHER;
    if ((d->n + 1) * 2 > d->nslots && !ldict_grow(d))
        return NULL;
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, v, len);
    copy[len] = '\0';
    size_t i = h & (d->nslots - 1);
    while (d->slots[i].v)
        i = (i + 1) & (d->nslots - 1);
    d->slots[i] = (lslot){h, copy, len};
    d->n++;
    *len_out = len;
    return copy;
}

static aq_mseries *map_find(const aq_mfamily *f, uint64_t h, const char *const *v,
                            const size_t *len)
{
    if (!f->map)
        return NULL;
    for (size_t i = h & (f->map_cap - 1); f->map[i].s; i = (i + 1) & (f->map_cap - 1)) {
        aq_mseries *s = f->map[i].s;
        if (f->map[i].h != h)
            continue;
        size_t k = 0;
        while (k < f->n_labels && s->lens[k] == len[k] && memcmp(s->values[k], v[k], len[k]) == 0)
            k++;
        if (k == f->n_labels)
            return s;
    }
    return NULL;
}

static bool map_grow(aq_mfamily *f)
{
    size_t ncap = f->map_cap ? f->map_cap * 2 : MAP_MIN_CAP;
    sslot *nm = calloc(ncap, sizeof(*nm));
    if (!nm)
        return false;
    for (size_t i = 0; i < f->map_cap; i++) {
        if (!f->map[i].s)
            continue;
        size_t j = f->map[i].h & (ncap - 1);
        while (nm[j].s)
            j = (j + 1) & (ncap - 1);
        nm[j] = f->map[i];
    }
    free(f->map);
    f->map = nm;
    f->map_cap = ncap;
    return true;
}

/* A new series for already-folded, interned values. */
static aq_mseries *series_add(aq_mfamily *f, uint64_t h, const char *const *v, const size_t *len)
{
    size_t nb = f->type == AQ_METRIC_HISTOGRAM ? f->n_buckets + 1 : 0;
    if ((f->n_series + 1) * 2 > f->map_cap && !map_grow(f))
        return NULL;
    aq_mseries *s = calloc(1, sizeof(*s) + nb * sizeof(uint64_t));
    if (!s)
        return NULL;
    s->f = f;
    s->h = h;
    for (size_t i = 0; i < f->n_labels; i++) {
        s->values[i] = v[i];
        s->lens[i] = len[i];
    }
    size_t i = h & (f->map_cap - 1);
    while (f->map[i].s)
        i = (i + 1) & (f->map_cap - 1);
    f->map[i] = (sslot){h, s};
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    f->n_series++;
    return s;
}

/* The slow path: fold every value through its label's dictionary, then find
 * or create the series of the folded combination. */
static aq_mseries *series_fold(aq_mfamily *f, const char *const *raw, const size_t *rawlen)
{
    const char *v[AQ_METRICS_MAX_LABELS] = {0};
    size_t len[AQ_METRICS_MAX_LABELS] = {0};
    for (size_t i = 0; i < f->n_labels; i++)
        if (!(v[i] = ldict_intern(&f->dicts[i], raw[i], rawlen[i], &len[i])))
            return NULL;
    uint64_t h = hash_values(v, len, f->n_labels);
    aq_mseries *s = map_find(f, h, v, len);
    if (s)
        return s;
    if (f->n_series >= AQ_METRICS_SERIES_MAX) {
        /* Even the product of the caps is too much: everything new shares
         * the all-"_other" series. */
        for (size_t i = 0; i < f->n_labels; i++) {
            v[i] = AQ_METRICS_OTHER;
            len[i] = sizeof(AQ_METRICS_OTHER) - 1;
        }
        h = hash_values(v, len, f->n_labels);
        if ((s = map_find(f, h, v, len)))
            return s;
    }
    return series_add(f, h, v, len);
}

static aq_mseries *series_get(aq_mfamily *f, const char *const *values)
{
    const char *v[AQ_METRICS_MAX_LABELS] = {0};
    size_t len[AQ_METRICS_MAX_LABELS] = {0};
    for (size_t i = 0; i < f->n_labels; i++) {
        v[i] = values && values[i] ? values[i] : "";
        len[i] = strlen(v[i]);
    }
    uint64_t h = hash_values(v, len, f->n_labels);
    aq_mseries *s = map_find(f, h, v, len);
    return s ? s : series_fold(f, v, len);
}

aq_mseries *aq_mfamily_series(aq_mfamily *f, const char *const *values)
{
    return f ? series_get(f, values) : NULL;
}

size_t aq_mfamily_series_count(const aq_mfamily *f)
{
    return f ? f->n_series : 0;
}

/* ---- updates ---- */

void aq_mseries_add(aq_mseries *s, double v)
{
    if (!s)
        return;
    if (s->f->type == AQ_METRIC_GAUGE || (s->f->type == AQ_METRIC_COUNTER && v >= 0))
        s->value += v;
}

void aq_mseries_set(aq_mseries *s, double v)
{
    if (s && s->f->type == AQ_METRIC_GAUGE)
        s->value = v;
}

void aq_mseries_observe(aq_mseries *s, double v)
{
    if (!s || s->f->type != AQ_METRIC_HISTOGRAM || isnan(v))
        return;
    const aq_mfamily *f = s->f;
    /* First bound >= v (a bucket counts observations <= its bound). */
    size_t lo = 0, hi = f->n_buckets;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->le[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    s->bucket[lo]++;
    s->count++;
    s->value += v;
}

double aq_mseries_value(const aq_mseries *s)
{
    return s ? s->value : 0;
}

void aq_mfamily_add(aq_mfamily *f, const char *const *values, double v)
{
    aq_mseries_add(aq_mfamily_series(f, values), v);
}

void aq_mfamily_set(aq_mfamily *f, const char *const *values, double v)
{
    aq_mseries_set(aq_mfamily_series(f, values), v);
}

void aq_mfamily_observe(aq_mfamily *f, const char *const *values, double v)
{
    aq_mseries_observe(aq_mfamily_series(f, values), v);
}

/* ---- exposition ---- */

/* Shortest text that reads back as the same double; Prometheus spellings
 * for the special values. */
static void fmt_double(char *buf, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(buf, n, "0");
    } else if (v == trunc(v) && fabs(v) < 1e15) {
        snprintf(buf, n, "%.0f", v);
    } else {
        snprintf(buf, n, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, n, "%.17g", v);
    }
}

/* Append `s` with the exposition escapes: backslash and newline always,
 * the double quote inside label values. */
static aq_status append_escaped(aq_buf *out, const char *s, size_t len, bool quote)
{
    aq_status st = AQ_OK;
    size_t run = 0;
    for (size_t i = 0; i < len && st == AQ_OK; i++) {
        const char *esc = s[i] == '\\' ? "\\\\" : s[i] == '\n' ? "\\n"
                        : (quote && s[i] == '"') ? "\\\"" : NULL;
        if (!esc)
            continue;
        if ((st = aq_buf_append(out, s + run, i - run)) == AQ_OK)
            st = aq_buf_append(out, esc, 2);
        run = i + 1;
    }
    return st == AQ_OK ? aq_buf_append(out, s + run, len - run) : st;
}

/* `name{l1="v1",...[,le="x"]} value\n` */
static aq_status render_line(aq_buf *out, const aq_mfamily *f, const char *suffix,
                             const aq_mseries *s, const char *le, double value)
{
    char num[40];
    aq_status st = aq_buf_append_str(out, f->name);
    if (st == AQ_OK && suffix)
        st = aq_buf_append_str(out, suffix);
    if (st == AQ_OK && (f->n_labels || le)) {
        st = aq_buf_append(out, "{", 1);
        for (size_t i = 0; i < f->n_labels && st == AQ_OK; i++) {
            if (i && (st = aq_buf_append(out, ",", 1)) != AQ_OK)
                break;
            if ((st = aq_buf_append_str(out, f->labels[i])) == AQ_OK &&
                (st = aq_buf_append(out, "=\"", 2)) == AQ_OK &&
                (st = append_escaped(out, s->values[i], s->lens[i], true)) == AQ_OK)
                st = aq_buf_append(out, "\"", 1);
        }
        if (st == AQ_OK && le)
            st = aq_buf_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
        if (st == AQ_OK)
            st = aq_buf_append(out, "}", 1);
    }
    fmt_double(num, sizeof(num), value);
    return st == AQ_OK ? aq_buf_printf(out, " %s\n", num) : st;
}

static aq_status render_family(aq_buf *out, const aq_mfamily *f)
{
    aq_status st = aq_buf_printf(out, "# HELP %s ", f->name);
    if (st == AQ_OK)
        st = append_escaped(out, f->help, strlen(f->help), false);
    if (st == AQ_OK)
        st = aq_buf_printf(out, "\n# TYPE %s %s\n", f->name, aq_metric_type_name(f->type));
    for (const aq_mseries *s = f->first; s && st == AQ_OK; s = s->next) {
        if (f->type != AQ_METRIC_HISTOGRAM) {
            st = render_line(out, f, NULL, s, NULL, s->value);
            continue;
        }
        uint64_t cum = 0;
        char le[40];
        for (size_t b = 0; b < f->n_buckets && st == AQ_OK; b++) {
            cum += s->bucket[b];
            fmt_double(le, sizeof(le), f->le[b]);
            st = render_line(out, f, "_bucket", s, le, (double)cum);
        }
        if (st == AQ_OK)
            st = render_line(out, f, "_bucket", s, "+Inf", (double)s->count);
        if (st == AQ_OK)
            st = render_line(out, f, "_sum", s, NULL, s->value);
        if (st == AQ_OK)
            st = render_line(out, f, "_count", s, NULL, (double)s->count);
    }
    return st;
}

aq_status aq_metrics_render(aq_metrics *m, aq_buf *out, aq_err *err)
{
    for (size_t i = 0; i < m->n_collect; i++)
        m->collect[i].fn(m->collect[i].arg);
    for (const aq_mfamily *f = m->first; f; f = f->next) {
        aq_status st = render_family(out, f);
        if (st != AQ_OK)
            return aq_err_set(err, st, "metrics: rendering '%s': %s", f->name,
                              aq_status_text(st));
    }
    return AQ_OK;
}

/* ---- histogram snapshots ---- */

static void snapshot_init(const aq_mfamily *f, aq_hist_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    out->n_buckets = f->n_buckets;
    memcpy(out->le, f->le, f->n_buckets * sizeof(double));
}

static void snapshot_add(const aq_mseries *s, aq_hist_snapshot *out)
{
    uint64_t cum = 0;
    for (size_t b = 0; b < out->n_buckets; b++) {
        cum += s->bucket[b];
        out->cum[b] += cum;
    }
    out->cum[out->n_buckets] += s->count;
    out->sum += s->value;
}

bool aq_mseries_hist_snapshot(const aq_mseries *s, aq_hist_snapshot *out)
{
    if (!s || s->f->type != AQ_METRIC_HISTOGRAM)
        return false;
    snapshot_init(s->f, out);
    snapshot_add(s, out);
    return true;
}

bool aq_mfamily_hist_snapshot(const aq_mfamily *f, aq_hist_snapshot *out)
{
    if (!f || f->type != AQ_METRIC_HISTOGRAM)
        return false;
    snapshot_init(f, out);
    for (const aq_mseries *s = f->first; s; s = s->next)
        snapshot_add(s, out);
    return true;
}

bool aq_hist_delta(const aq_hist_snapshot *now, const aq_hist_snapshot *before,
                   aq_hist_snapshot *out)
{
    if (now->n_buckets != before->n_buckets || now->n_buckets > AQ_METRICS_MAX_BUCKETS)
        return false;
    for (size_t b = 0; b < now->n_buckets; b++)
        if (now->le[b] != before->le[b])
            return false;
    bool reset = false;
    for (size_t b = 0; b <= now->n_buckets; b++)
        reset |= now->cum[b] < before->cum[b];
    aq_hist_snapshot d = *now;
    if (!reset) {
        for (size_t b = 0; b <= now->n_buckets; b++)
            d.cum[b] -= before->cum[b];
        d.sum -= before->sum;
    }
    *out = d;
    return true;
}

double aq_hist_quantile(const aq_hist_snapshot *s, double q)
{
    size_t n = s->n_buckets;
    if (!(q >= 0 && q <= 1) || n == 0 || n > AQ_METRICS_MAX_BUCKETS || s->cum[n] == 0)
        return NAN;
    double rank = q * (double)s->cum[n];
    size_t b = 0;
    /* The first non-empty bucket whose cumulative count reaches the rank. */
    while (b < n && ((double)s->cum[b] < rank || s->cum[b] == 0))
        b++;
    if (b == n)
        return s->le[n - 1];
    double start = b == 0 ? 0 : s->le[b - 1];
    double before = b == 0 ? 0 : (double)s->cum[b - 1];
    double in = (double)s->cum[b] - before;
    if (in <= 0)
        return s->le[b];
    return start + (s->le[b] - start) * ((rank - before) / in);
}
