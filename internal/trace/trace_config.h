/* The tracing options (OTLP/HTTP export of spans), declared once: a program
 * embeds an aq_trace_config and lists AQ_TRACE_OPTIONS in its option table,
 * then calls aq_trace_config_validate once at start. */
#ifndef AQ_TRACE_TRACE_CONFIG_H
#define AQ_TRACE_TRACE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

/* Collector headers at most (trace_headers), and one header's size. */
#define AQ_TRACE_MAX_HEADERS 32
#define AQ_TRACE_HEADER_MAX 4096

typedef struct aq_trace_config {
    char *endpoint;         /* OTLP/HTTP base URL; "" = tracing off */
    char *headers;          /* secret: "key=value,key2=value2" (values %-decoded) */
    double sample_ratio;    /* new traces sampled; parents' decisions are kept */
    int64_t queue_size;     /* ended spans waiting for export at most */
    int64_t batch_size;     /* spans in one export request at most */
    int64_t batch_delay_ms; /* a partial batch waits this long at most */
    bool capture_content;   /* prompt and answer text in spans */
} aq_trace_config;

/* Option rows for a config struct `T` that embeds aq_trace_config as `m`. */
#define AQ_TRACE_OPTIONS(T, m)                                                                   \
    {"trace_endpoint", "AGENTQ_TRACE_ENDPOINT", AQ_OPT_URLS, "", 0, 0, offsetof(T, m.endpoint),   \
     "OTLP/HTTP collector base URL; spans are POSTed to URL/v1/traces as OTLP/JSON (empty: tracing off)"}, \
    {"trace_headers", "AGENTQ_TRACE_HEADERS", AQ_OPT_SECRET, "", 0, 0, offsetof(T, m.headers),    \
     "headers of every export request, e.g. authorization=Bearer%20xyz,x-tenant=a (values percent-decoded; secret)"}, \
    {"trace_sample_ratio", "AGENTQ_TRACE_SAMPLE_RATIO", AQ_OPT_DOUBLE, "1", 0, 1,                 \
     offsetof(T, m.sample_ratio),                                                                \
     "share of new traces recorded (by trace id); a publisher's traceparent decides for its own"}, \
    {"trace_queue_size", "AGENTQ_TRACE_QUEUE_SIZE", AQ_OPT_INT, "2048", 1, 1000000,               \
     offsetof(T, m.queue_size), "ended spans waiting for export at most; more are dropped and counted"}, \
    {"trace_batch_size", "AGENTQ_TRACE_BATCH_SIZE", AQ_OPT_INT, "512", 1, 100000,                 \
     offsetof(T, m.batch_size), "spans in one export request at most"},                          \
    {"trace_batch_delay", "AGENTQ_TRACE_BATCH_DELAY", AQ_OPT_DURATION, "5s", 1, 3600000,          \
     offsetof(T, m.batch_delay_ms), "longest a span waits for a fuller batch before it is sent"}, \
    {"trace_capture_content", "AGENTQ_TRACE_CAPTURE_CONTENT", AQ_OPT_BOOL, "false", 0, 0,         \
     offsetof(T, m.capture_content),                                                             \
     "put prompt and answer text in spans (customer data: off by default)"}

/* Checks what the table's bounds cannot: the endpoint's scheme and that it
 * carries no credentials, the headers' syntax, batch_size <= queue_size.
 * Messages never include a header's value. */
aq_status aq_trace_config_validate(const aq_trace_config *cfg, aq_err *err);

static inline bool aq_trace_config_enabled(const aq_trace_config *cfg)
{
    return cfg && cfg->endpoint && cfg->endpoint[0];
}

#endif
