/* The tracer's insides, shared by trace.c (spans), trace_export.c (queue,
 * exporter thread, HTTP) and trace_otlp.c (the OTLP/JSON encoding), and by
 * the unit test, which encodes spans without an exporter thread. */
#ifndef AQ_TRACE_TRACE_INT_H
#define AQ_TRACE_TRACE_INT_H

#include <pthread.h>
#include <stdint.h>

#include "trace/trace.h"

typedef struct trace_attr {
    char *key;
    aq_attr_type type;
    union {
        char *s;
        int64_t i;
        double d;
        bool b;
        struct {
            char **v;
            uint32_t n;
        } sa;
    } v;
} trace_attr;

typedef struct trace_event {
    char *name;
    int64_t time_ns;
    trace_attr *attrs;
    uint32_t nattrs, dropped_attrs;
} trace_event;

struct aq_span_rec {
    aq_tracer *t;
    aq_trace_context ctx;
    uint8_t parent_span_id[AQ_SPAN_ID_SIZE];
    bool has_parent, parent_remote;
    char *name;
    char *tracestate; /* NULL: none */
    aq_span_kind kind;
    int64_t start_ns, end_ns;
    trace_attr *attrs;
    uint32_t nattrs, cap_attrs, dropped_attrs;
    trace_event *events;
    uint32_t nevents, cap_events, dropped_events;
    aq_span_status status;
    char *status_msg;
    int64_t enqueued_mono_ms;
};

/* Retry policy of the OTLP/HTTP spec: 429, 502, 503, 504 and transport
 * errors are retried with exponential backoff (with jitter), honouring
 * Retry-After; anything else is dropped at once. */
typedef struct trace_retry_policy {
    int max_attempts;        /* requests per batch at most */
    int64_t backoff_base_ms; /* first wait; doubles */
    int64_t backoff_max_ms;
    int64_t retry_after_max_ms; /* a collector's Retry-After is capped at this */
    int64_t request_timeout_ms; /* one HTTP request */
} trace_retry_policy;

#define AQ_TRACE_DEFAULT_RETRY ((trace_retry_policy){6, 1000, 30000, 60000, 10000})
/* The largest collector response read (partialSuccess). */
#define AQ_TRACE_RESPONSE_MAX 65536

/* aq_tracer_new with a retry policy, and optionally without the exporter
 * thread (start_thread false: spans queue up until aq_tracer_take). */
aq_status aq_tracer_new_ex(const aq_trace_config *cfg, const aq_trace_resource *res,
                           const trace_retry_policy *retry, bool start_thread, aq_tracer **out,
                           aq_err *err);
/* Up to max queued spans, oldest first (the caller frees them). */
size_t aq_tracer_take(aq_tracer *t, aq_span_rec **out, size_t max);
/* The OTLP/JSON body of an ExportTraceServiceRequest holding these spans,
 * under the tracer's resource (malloc'd, NUL-terminated). */
aq_status aq_tracer_encode(const aq_tracer *t, aq_span_rec *const *spans, size_t n, char **json,
                           size_t *len, aq_err *err);
void aq_span_rec_free(aq_span_rec *r);

/* trace_export.c: a span ended (takes ownership). */
void aq_tracer_enqueue(aq_tracer *t, aq_span_rec *r);
/* trace_export.c: a span that could not be recorded (out of memory). */
void aq_tracer_count_dropped(aq_tracer *t);
/* trace_export.c: the sampling threshold (ratio * 2^56). */
uint64_t aq_tracer_threshold(const aq_tracer *t);

/* trace_otlp.c */
aq_status aq_trace_otlp_encode(const char *instance_id, const char *version,
                               aq_span_rec *const *spans, size_t n, char **json, size_t *len,
                               aq_err *err);

#endif
