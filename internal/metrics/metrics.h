/* A small Prometheus metrics registry: counter, gauge and histogram families
 * with up to AQ_METRICS_MAX_LABELS label names, bounded label cardinality,
 * and the text exposition format 0.0.4.
 *
 * Threads. A registry is owned by ONE thread (the worker's libevent loop):
 * every update, every series lookup and every render happen there, so
 * nothing is locked or atomic on the hot path. Values other threads produce
 * (the queue probe, nats.c callbacks) are kept by their producer in atomics
 * and copied into gauges by a collect callback (aq_metrics_on_collect), which
 * runs on the owner thread at the start of every render.
 *
 * Cost. An update by label values is one XXH3 per value plus one probe of an
 * open-addressing map and a compare; nothing is allocated once the series
 * exists. Callers with fixed label values can keep the series handle
 * (aq_mfamily_series) and skip the lookup altogether. Series are never
 * removed, so handles stay valid as long as the registry.
 *
 * Cardinality. Each label of a family has a cap on distinct values, chosen
 * when the family is created: values beyond it are folded into "_other"
 * (AQ_METRICS_OTHER), which never counts against the cap. A value longer
 * than AQ_METRICS_VALUE_MAX bytes is folded too (label values come from
 * tasks and from the network). So a family holds at most the product of its
 * caps (plus the folded combinations) series, and a hard AQ_METRICS_SERIES_MAX
 * per family stops even that: past it, every new combination lands in the
 * all-"_other" series.
 */
#ifndef AQ_METRICS_METRICS_H
#define AQ_METRICS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"

#define AQ_METRICS_MAX_LABELS 4
#define AQ_METRICS_MAX_BUCKETS 32        /* finite bucket bounds per histogram */
#define AQ_METRICS_VALUE_MAX 128         /* bytes of one label value; longer: folded */
#define AQ_METRICS_DEFAULT_CAP 100       /* distinct values of a label when the desc says 0 */
#define AQ_METRICS_SERIES_MAX 100000     /* series of one family at most */
#define AQ_METRICS_NAME_MAX 128          /* bytes of a metric or label name */
#define AQ_METRICS_EXPOSITION_MAX (64u * 1024 * 1024) /* rendered text at most */
#define AQ_METRICS_OTHER "_other"

/* Bucket upper bounds in seconds (+Inf is implicit), chosen for this
 * workload: sub-10 ms for the zero-latency simulator of the benchmarks,
 * dense between 0.25 s and 60 s where real Messages API calls fall, up to
 * 120 s (a long generation) for one call and 10 min end to end (a task that
 * waited behind rate limits or retries). */
#define AQ_METRICS_BUCKETS_LLM                                                                 \
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, \
        10, 15, 20, 30, 45, 60, 90, 120
#define AQ_METRICS_BUCKETS_TASK AQ_METRICS_BUCKETS_LLM, 180, 300, 600
extern const double aq_metrics_buckets_llm[];
extern const size_t aq_metrics_buckets_llm_n;
extern const double aq_metrics_buckets_task[];
extern const size_t aq_metrics_buckets_task_n;

typedef enum aq_metric_type {
    AQ_METRIC_COUNTER,
    AQ_METRIC_GAUGE,
    AQ_METRIC_HISTOGRAM,
} aq_metric_type;

/* "counter", "gauge", "histogram". */
const char *aq_metric_type_name(aq_metric_type t);

typedef struct aq_metrics aq_metrics;       /* the registry */
typedef struct aq_mfamily aq_mfamily;       /* one metric name */
typedef struct aq_mseries aq_mseries;       /* one label combination of a family */

typedef struct aq_metric_desc {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*; counters should end in _total */
    const char *help; /* one line; escaped on output */
    aq_metric_type type;
    size_t n_labels;
    const char *labels[AQ_METRICS_MAX_LABELS]; /* [a-zA-Z_][a-zA-Z0-9_]*, not "le", not "__*" */
    size_t caps[AQ_METRICS_MAX_LABELS];        /* distinct values per label; 0: the default */
    const double *buckets;                     /* histograms: ascending, finite */
    size_t n_buckets;
} aq_metric_desc;

aq_status aq_metrics_new(aq_metrics **out, aq_err *err);
/* Frees the registry, its families and series. Accepts NULL. */
void aq_metrics_destroy(aq_metrics *m);

/* Create a family. The desc's strings and buckets are copied. A family
 * without labels gets its one series at once (so it is exposed as 0).
 * AQ_INVALID_ARG for a bad name, label or bucket list, or a name already
 * registered. */
aq_status aq_metrics_family(aq_metrics *m, const aq_metric_desc *d, aq_mfamily **out,
                            aq_err *err);
/* The family by name, or NULL. */
aq_mfamily *aq_metrics_find(const aq_metrics *m, const char *name);

/* Runs on the owner thread before every render (in registration order), to
 * copy values that live elsewhere into gauges. */
typedef void (*aq_metrics_collect_fn)(void *arg);
aq_status aq_metrics_on_collect(aq_metrics *m, aq_metrics_collect_fn fn, void *arg, aq_err *err);

/* The series for `values` (n_labels strings; NULL counts as ""; may be NULL
 * for a family without labels), created on first use with folding applied.
 * NULL only when out of memory (the update is then dropped). The handle
 * stays valid for the life of the registry. */
aq_mseries *aq_mfamily_series(aq_mfamily *f, const char *const *values);

/* Updates by label values: look up (or create) the series, then update it.
 * Wrong-type updates are ignored (inc on a histogram, observe on a counter). */
void aq_mfamily_add(aq_mfamily *f, const char *const *values, double v); /* counter, gauge */
void aq_mfamily_set(aq_mfamily *f, const char *const *values, double v); /* gauge */
void aq_mfamily_observe(aq_mfamily *f, const char *const *values, double v); /* histogram */

/* Updates through a kept handle (NULL is ignored). A counter refuses a
 * negative or NaN increment (counters only go up). */
void aq_mseries_add(aq_mseries *s, double v);
void aq_mseries_set(aq_mseries *s, double v);
void aq_mseries_observe(aq_mseries *s, double v);
/* Counter or gauge value; a histogram's sum. */
double aq_mseries_value(const aq_mseries *s);

/* Label values for a call: aq_mfamily_add(f, AQ_LV("sonnet", "200"), 1). */
#define AQ_LV(...) ((const char *const[]){__VA_ARGS__})

/* Series in the family (for tests and self-checks). */
size_t aq_mfamily_series_count(const aq_mfamily *f);

/* The exposition text (format 0.0.4) of every family, appended to `out`.
 * Runs the collect callbacks first. Families in registration order, series
 * in creation order. AQ_TOO_BIG when `out`'s cap is reached. */
aq_status aq_metrics_render(aq_metrics *m, aq_buf *out, aq_err *err);
#define AQ_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- Histogram snapshots and quantiles ----
 *
 * A plain copy of cumulative bucket counts, so that a caller can keep one
 * from a minute ago and estimate p50/p99 over the window from the
 * difference (the fleet status screen), or fill one from parsed text. */
typedef struct aq_hist_snapshot {
    size_t n_buckets;                         /* finite bounds; +Inf is implicit */
    double le[AQ_METRICS_MAX_BUCKETS];        /* upper bounds, ascending */
    uint64_t cum[AQ_METRICS_MAX_BUCKETS + 1]; /* observations <= le[i]; [n_buckets] = count */
    double sum;
} aq_hist_snapshot;

/* One series' histogram. false for a non-histogram or NULL. */
bool aq_mseries_hist_snapshot(const aq_mseries *s, aq_hist_snapshot *out);
/* The family's histogram summed over all its series (e.g. every task type).
 * false for a non-histogram. */
bool aq_mfamily_hist_snapshot(const aq_mfamily *f, aq_hist_snapshot *out);
/* `now` minus `before` (same buckets, `before` taken earlier). A counter
 * that went backwards (a restarted worker) gives `now` itself, as
 * Prometheus' rate() does. false when the bucket bounds differ. */
bool aq_hist_delta(const aq_hist_snapshot *now, const aq_hist_snapshot *before,
                   aq_hist_snapshot *out);
/* Estimate quantile q (0..1) like PromQL histogram_quantile(): find the
 * bucket holding rank q*count and interpolate linearly inside it (the first
 * bucket from 0). A rank in the +Inf bucket gives the highest finite bound.
 * NaN when the snapshot is empty or q is out of range. */
double aq_hist_quantile(const aq_hist_snapshot *s, double q);

#endif
