/* W3C Trace Context (https://www.w3.org/TR/trace-context/): the
 * `traceparent` and `tracestate` values a publisher puts in a task's NATS
 * headers, parsed, validated, formatted, and carried on to tool calls,
 * progress events and dead letters.
 *
 * Every parser takes untrusted bytes of any length: a malformed value is
 * refused with AQ_INVALID_ARG (the caller then starts a new trace), never a
 * crash, never a read past `len` (tests/fuzz/fuzz_trace_context.c). */
#ifndef AQ_TRACE_TRACE_CONTEXT_H
#define AQ_TRACE_TRACE_CONTEXT_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define AQ_TRACE_ID_SIZE 16
#define AQ_SPAN_ID_SIZE 8
/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define AQ_TRACEPARENT_LEN 55
#define AQ_TRACE_FLAG_SAMPLED 0x01
/* tracestate: what we keep of a longer one (the spec's "at least 512
 * characters" and 32 list members), and the most bytes we read at all
 * (several tracestate headers joined). */
#define AQ_TRACESTATE_MAX 512
#define AQ_TRACESTATE_MAX_MEMBERS 32
#define AQ_TRACESTATE_INPUT_MAX 8192

#define AQ_TRACEPARENT_HEADER "traceparent"
#define AQ_TRACESTATE_HEADER "tracestate"

/* One span's place in a trace. `valid` false: no context (a new trace). */
typedef struct aq_trace_context {
    uint8_t trace_id[AQ_TRACE_ID_SIZE];
    uint8_t span_id[AQ_SPAN_ID_SIZE];
    uint8_t flags; /* AQ_TRACE_FLAG_SAMPLED; other bits as received */
    bool valid;
    bool remote;   /* parsed from outside (a publisher's), not one of our spans */
} aq_trace_context;

/* A validated tracestate, normalised (no optional whitespace, no empty
 * members), at most AQ_TRACESTATE_MAX bytes and AQ_TRACESTATE_MAX_MEMBERS
 * members. len 0: none. */
typedef struct aq_tracestate {
    char text[AQ_TRACESTATE_MAX + 1];
    size_t len;
} aq_tracestate;

static inline bool aq_trace_context_sampled(const aq_trace_context *c)
{
    return c && c->valid && (c->flags & AQ_TRACE_FLAG_SAMPLED);
}

/* Parse a traceparent value (surrounding spaces and tabs ignored). Version
 * 00 is exactly 55 characters; a later version (01..fe) may be longer when
 * character 55 is '-', and its first four fields are read as version 00's;
 * version ff, upper-case or bad hex, wrong lengths and all-zero ids are
 * refused. *out is written only on success. */
aq_status aq_traceparent_parse(const char *s, size_t len, aq_trace_context *out);

/* Format as version 00 into out (at least AQ_TRACEPARENT_LEN + 1 bytes).
 * Only the sampled flag is written (the spec: unknown flags are zeroed when
 * a context is passed on). Returns AQ_INVALID_ARG for an invalid context. */
aq_status aq_traceparent_format(const aq_trace_context *c, char *out, size_t n);

/* Parse a tracestate value: a comma-separated list of key=value members
 * (keys and values checked against the spec's grammar, keys unique). Empty
 * members and optional whitespace are dropped. Longer than
 * AQ_TRACESTATE_MAX bytes or more than AQ_TRACESTATE_MAX_MEMBERS members:
 * truncated as the spec says (members over 128 bytes go first, then members
 * from the end). Malformed: AQ_INVALID_ARG and out->len = 0. An empty value
 * is valid (len 0). Inputs over AQ_TRACESTATE_INPUT_MAX are refused. */
aq_status aq_tracestate_parse(const char *s, size_t len, aq_tracestate *out);

/* New random ids (OpenSSL RAND_bytes; never all zero). AQ_IO when the
 * generator fails. */
aq_status aq_trace_new_trace_id(uint8_t id[AQ_TRACE_ID_SIZE]);
aq_status aq_trace_new_span_id(uint8_t id[AQ_SPAN_ID_SIZE]);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void aq_trace_hex(const uint8_t *bytes, size_t n, char *out);

/* From a message's headers (names matched without regard to case, as HTTP
 * does; several tracestate headers are joined with ','). AQ_NOT_FOUND: no
 * traceparent; AQ_INVALID_ARG: a malformed or repeated one. On either, ctx
 * is invalid and ts empty (the caller starts a new trace). A malformed
 * tracestate beside a good traceparent is dropped (ts empty), AQ_OK.
 * ts may be NULL. */
aq_status aq_trace_context_from_msg(natsMsg *m, aq_trace_context *ctx, aq_tracestate *ts);

/* Set `traceparent` (and `tracestate` when ts is non-empty) on a message
 * being built (tool requests, progress events, dead letters). An invalid
 * ctx sets nothing and returns AQ_OK. */
aq_status aq_trace_context_to_msg(natsMsg *m, const aq_trace_context *ctx,
                                  const aq_tracestate *ts, aq_err *err);

#endif
