/* Spans and their export: OpenTelemetry traces over OTLP/HTTP (JSON).
 *
 * A tracer is made once from the configuration (aq_tracer_new: NULL when
 * tracing is off) and shared by every thread. A span is a small value the
 * caller keeps (in its job, on the stack): aq_span_start fills it, the
 * setters add to it, aq_span_end hands it to the exporter. A span that is
 * not recorded (tracing off, or not sampled) still has a context to pass on
 * (aq_span.ctx) and costs no allocation: every setter is then a no-op.
 *
 * Threads: one span is used by one thread at a time (the one that owns the
 * job); start and end may run on any thread. aq_span_end only takes a lock
 * and appends a pointer to a bounded queue: the export (batching, HTTP,
 * retries with backoff) runs on the tracer's own thread, so a collector that
 * is slow or down costs the caller nothing but that, and spans past the
 * queue's bound are dropped and counted.
 *
 * Sampling is parent-based: a span with a parent context is recorded when
 * the parent's sampled flag is set (a publisher's traceparent decides for
 * the whole task); a new trace is recorded when the last 56 bits of its
 * random trace id fall under trace_sample_ratio * 2^56.
 *
 * Bounds (a span's size never grows with its input): name AQ_SPAN_NAME_MAX
 * bytes, AQ_SPAN_MAX_ATTRS attributes (more are counted in
 * droppedAttributesCount; setting a key again replaces its value), keys
 * AQ_SPAN_ATTR_KEY_MAX bytes, string values AQ_SPAN_ATTR_VALUE_MAX bytes
 * (cut at a UTF-8 character boundary, invalid UTF-8 replaced by U+FFFD),
 * AQ_SPAN_ATTR_ARRAY_MAX strings in an array attribute,
 * AQ_SPAN_MAX_EVENTS events of AQ_SPAN_EVENT_MAX_ATTRS attributes each
 * (more are counted as dropped), status message AQ_SPAN_STATUS_MAX bytes. */
#ifndef AQ_TRACE_TRACE_H
#define AQ_TRACE_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "trace/trace_config.h"
#include "trace/trace_context.h"

#define AQ_SPAN_NAME_MAX 256
#define AQ_SPAN_MAX_ATTRS 64
#define AQ_SPAN_ATTR_KEY_MAX 128
#define AQ_SPAN_ATTR_VALUE_MAX 8192
#define AQ_SPAN_ATTR_ARRAY_MAX 16
#define AQ_SPAN_MAX_EVENTS 32
#define AQ_SPAN_EVENT_MAX_ATTRS 16
#define AQ_SPAN_STATUS_MAX 1024

/* Resource and scope. */
#define AQ_TRACE_SERVICE_NAME "agentq-worker"
#define AQ_TRACE_SCOPE_NAME "agentq"

/* ---- attribute and span names (OpenTelemetry semantic conventions) ---- */
/* GenAI (development status): model and tool calls */
#define AQ_ATTR_GEN_AI_OPERATION_NAME "gen_ai.operation.name" /* "chat", "execute_tool", "invoke_agent" */
#define AQ_ATTR_GEN_AI_PROVIDER_NAME "gen_ai.provider.name"   /* "anthropic" */
#define AQ_ATTR_GEN_AI_REQUEST_MODEL "gen_ai.request.model"
#define AQ_ATTR_GEN_AI_REQUEST_MAX_TOKENS "gen_ai.request.max_tokens"
#define AQ_ATTR_GEN_AI_REQUEST_TEMPERATURE "gen_ai.request.temperature"
#define AQ_ATTR_GEN_AI_RESPONSE_ID "gen_ai.response.id"
#define AQ_ATTR_GEN_AI_RESPONSE_MODEL "gen_ai.response.model"
/* a string array: aq_span_set_str_array(s, key, &stop_reason, 1) */
#define AQ_ATTR_GEN_AI_RESPONSE_FINISH_REASONS "gen_ai.response.finish_reasons"
/* For Anthropic, input_tokens INCLUDES the cache-read and cache-creation
 * tokens: input_tokens + cache_read_input_tokens + cache_creation_input_tokens
 * of the Messages API's usage. */
#define AQ_ATTR_GEN_AI_USAGE_INPUT_TOKENS "gen_ai.usage.input_tokens"
#define AQ_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS "gen_ai.usage.output_tokens"
#define AQ_ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS "gen_ai.usage.cache_read.input_tokens"
#define AQ_ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS "gen_ai.usage.cache_creation.input_tokens"
#define AQ_ATTR_GEN_AI_CONVERSATION_ID "gen_ai.conversation.id"
#define AQ_ATTR_GEN_AI_TOOL_NAME "gen_ai.tool.name"
#define AQ_ATTR_GEN_AI_TOOL_CALL_ID "gen_ai.tool.call.id"
/* opt-in content (trace_capture_content): customer data */
#define AQ_ATTR_GEN_AI_TOOL_CALL_ARGUMENTS "gen_ai.tool.call.arguments"
#define AQ_ATTR_GEN_AI_TOOL_CALL_RESULT "gen_ai.tool.call.result"
#define AQ_ATTR_GEN_AI_INPUT_MESSAGES "gen_ai.input.messages"
#define AQ_ATTR_GEN_AI_OUTPUT_MESSAGES "gen_ai.output.messages"
#define AQ_GEN_AI_OP_CHAT "chat"
#define AQ_GEN_AI_OP_EXECUTE_TOOL "execute_tool"
#define AQ_GEN_AI_OP_INVOKE_AGENT "invoke_agent"
#define AQ_GEN_AI_PROVIDER_ANTHROPIC "anthropic"
/* general */
#define AQ_ATTR_ERROR_TYPE "error.type" /* the status class, e.g. "rate_limited" */
#define AQ_ATTR_HTTP_RESPONSE_STATUS_CODE "http.response.status_code"
#define AQ_ATTR_SERVER_ADDRESS "server.address"
/* messaging: the task consumer span ("process <subject>", kind CONSUMER) */
#define AQ_ATTR_MESSAGING_SYSTEM "messaging.system" /* "nats" */
#define AQ_ATTR_MESSAGING_OPERATION_NAME "messaging.operation.name" /* "process" */
#define AQ_ATTR_MESSAGING_OPERATION_TYPE "messaging.operation.type" /* "process" */
#define AQ_ATTR_MESSAGING_DESTINATION_NAME "messaging.destination.name" /* the subject */
#define AQ_ATTR_MESSAGING_CONSUMER_GROUP_NAME "messaging.consumer.group.name" /* the durable */
#define AQ_ATTR_MESSAGING_MESSAGE_ID "messaging.message.id" /* the task id */
#define AQ_ATTR_MESSAGING_MESSAGE_BODY_SIZE "messaging.message.body.size"
#define AQ_MESSAGING_SYSTEM_NATS "nats"
/* events on a model-call span */
#define AQ_EVENT_RETRY "agentq.retry"       /* a failed call that will be retried */
#define AQ_EVENT_DEFERRAL "agentq.deferral" /* 429/529: the provider asked us to wait */
#define AQ_ATTR_RETRY_AFTER_MS "agentq.retry_after_ms"
#define AQ_ATTR_ATTEMPT "agentq.attempt"
/* agentq's own */
#define AQ_ATTR_TASK_ID "agentq.task.id"
#define AQ_ATTR_TASK_TYPE "agentq.task.type"
#define AQ_ATTR_TENANT "agentq.tenant"
#define AQ_ATTR_DELIVERY_COUNT "agentq.delivery_count"
#define AQ_ATTR_OUTCOME "agentq.outcome"
#define AQ_ATTR_CACHE_HIT "agentq.cache.hit"
#define AQ_ATTR_COST_USD "agentq.cost_usd"

/* ---- types ---- */

typedef struct aq_tracer aq_tracer;
typedef struct aq_span_rec aq_span_rec; /* a recorded span's data (private) */

/* OTLP's SpanKind numbers. */
typedef enum aq_span_kind {
    AQ_SPAN_INTERNAL = 1,
    AQ_SPAN_SERVER = 2,
    AQ_SPAN_CLIENT = 3,
    AQ_SPAN_PRODUCER = 4,
    AQ_SPAN_CONSUMER = 5,
} aq_span_kind;

/* OTLP's Status.code numbers. */
typedef enum aq_span_status {
    AQ_SPAN_STATUS_UNSET = 0,
    AQ_SPAN_STATUS_OK = 1,
    AQ_SPAN_STATUS_ERROR = 2,
} aq_span_status;

/* A span as its owner holds it. Zero-initialised: no span (ctx invalid). */
typedef struct aq_span {
    aq_trace_context ctx; /* this span's context: the parent of its children,
                             and what goes on in traceparent headers */
    aq_span_rec *rec;     /* NULL: not recorded (every setter is a no-op) */
} aq_span;

typedef enum aq_attr_type {
    AQ_ATTR_STRING,
    AQ_ATTR_INT,
    AQ_ATTR_DOUBLE,
    AQ_ATTR_BOOL,
    AQ_ATTR_STRING_ARRAY, /* e.g. gen_ai.response.finish_reasons */
} aq_attr_type;

/* An attribute passed in (events, aq_span_set_attrs): the strings are
 * copied, so they only need to live for the call. */
typedef struct aq_trace_attr {
    const char *key;
    aq_attr_type type;
    union {
        const char *s;
        int64_t i;
        double d;
        bool b;
        struct {
            const char *const *v;
            size_t n;
        } sa;
    } v;
} aq_trace_attr;

#define AQ_TATTR_STR(k, x) ((aq_trace_attr){.key = (k), .type = AQ_ATTR_STRING, .v.s = (x)})
#define AQ_TATTR_INT(k, x) ((aq_trace_attr){.key = (k), .type = AQ_ATTR_INT, .v.i = (x)})
#define AQ_TATTR_DOUBLE(k, x) ((aq_trace_attr){.key = (k), .type = AQ_ATTR_DOUBLE, .v.d = (x)})
#define AQ_TATTR_BOOL(k, x) ((aq_trace_attr){.key = (k), .type = AQ_ATTR_BOOL, .v.b = (x)})
#define AQ_TATTR_STRS(k, arr, count)                                                             \
    ((aq_trace_attr){.key = (k), .type = AQ_ATTR_STRING_ARRAY, .v.sa = {(arr), (count)}})

/* The resource every exported span carries: service.name is
 * AQ_TRACE_SERVICE_NAME; these become service.instance.id (the worker's
 * name) and service.version (both copied; NULL = omitted). */
typedef struct aq_trace_resource {
    const char *instance_id;
    const char *version;
} aq_trace_resource;

/* The exporter's figures, for the worker's metrics. */
typedef struct aq_tracer_stats {
    uint64_t spans_exported;   /* accepted by the collector */
    uint64_t spans_dropped;    /* never delivered: queue full, given up, shutdown */
    uint64_t spans_queue_full; /* of them, dropped because the queue was full */
    uint64_t export_failures;  /* export requests that failed (each retry counts) */
    uint64_t queued;           /* waiting now */
} aq_tracer_stats;

/* ---- tracer ---- */

/* From a validated config (aq_trace_config_validate). Tracing off (no
 * endpoint): *out = NULL and AQ_OK; every function below accepts NULL.
 * Otherwise starts the exporter thread. */
aq_status aq_tracer_new(const aq_trace_config *cfg, const aq_trace_resource *res,
                        aq_tracer **out, aq_err *err);
/* Exports everything ended so far within timeout_ms (the queue, including
 * spans waiting for a fuller batch). AQ_TIMEOUT when some are still waiting
 * or being retried; they stay queued. */
aq_status aq_tracer_flush(aq_tracer *t, int64_t timeout_ms);
/* Exports what is queued within timeout_ms (retries included, an HTTP
 * request in flight is cut off at the deadline), then stops the exporter
 * thread. What is left is dropped and counted; so are spans ended later.
 * AQ_TIMEOUT when something was dropped here. Idempotent. */
aq_status aq_tracer_shutdown(aq_tracer *t, int64_t timeout_ms);
/* aq_tracer_shutdown with AQ_TRACE_SHUTDOWN_DEFAULT_MS (unless done), then
 * frees. Every span must have ended (aq_span_end) before. */
#define AQ_TRACE_SHUTDOWN_DEFAULT_MS 5000
void aq_tracer_destroy(aq_tracer *t);
void aq_tracer_stats_get(aq_tracer *t, aq_tracer_stats *out);
/* trace_capture_content: may prompt and answer text go into spans? */
bool aq_tracer_capture_content(const aq_tracer *t);

/* Wall-clock Unix nanoseconds (span and event times). */
int64_t aq_trace_now_ns(void);

/* ---- spans ---- */

/* Start a span. parent: the parent's context (a publisher's traceparent,
 * or another span's ctx); NULL or invalid: a new trace. ts: the tracestate
 * that came with the trace (recorded on the span; may be NULL; pass the
 * task's for each of its spans, as OpenTelemetry children inherit it). start_ns:
 * Unix ns, 0 = now. name is copied.
 * Tracer NULL (tracing off): nothing is recorded and s->ctx = *parent, so a
 * context passes through unchanged. Otherwise s->ctx gets the parent's
 * trace id (or a new one) and a new span id, sampled or not; only a sampled
 * span allocates. Out of memory: not recorded (counted as dropped). */
void aq_span_start(aq_tracer *t, aq_span *s, const char *name, aq_span_kind kind,
                   const aq_trace_context *parent, const aq_tracestate *ts, int64_t start_ns);

static inline bool aq_span_recording(const aq_span *s)
{
    return s && s->rec;
}

void aq_span_set_str(aq_span *s, const char *key, const char *value);
void aq_span_set_strn(aq_span *s, const char *key, const char *value, size_t len);
void aq_span_set_int(aq_span *s, const char *key, int64_t value);
void aq_span_set_double(aq_span *s, const char *key, double value);
void aq_span_set_bool(aq_span *s, const char *key, bool value);
/* A string array (at most AQ_SPAN_ATTR_ARRAY_MAX values, each cut as a
 * string value is), e.g. gen_ai.response.finish_reasons = ["end_turn"]. */
void aq_span_set_str_array(aq_span *s, const char *key, const char *const *values, size_t n);
void aq_span_set_attrs(aq_span *s, const aq_trace_attr *attrs, size_t n);
/* An event at ts_ns (0 = now), e.g. a retry:
 *   aq_trace_attr a[] = {AQ_TATTR_INT(AQ_ATTR_HTTP_RESPONSE_STATUS_CODE, 429),
 *                        AQ_TATTR_INT(AQ_ATTR_RETRY_AFTER_MS, 2000)};
 *   aq_span_add_event(&j->chat_span, AQ_EVENT_DEFERRAL, 0, a, 2); */
void aq_span_add_event(aq_span *s, const char *name, int64_t ts_ns, const aq_trace_attr *attrs,
                       size_t n);
/* OK, or ERROR with a message (kept for ERROR only, as OTLP says). */
void aq_span_set_status(aq_span *s, aq_span_status code, const char *message);
/* End at end_ns (0 = now) and hand the span to the exporter (or drop it,
 * counted, when the queue is full). s->ctx stays valid; s->rec is NULL
 * afterwards, so ending twice is harmless. */
void aq_span_end(aq_span *s, int64_t end_ns);

#endif
