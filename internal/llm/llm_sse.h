/* A streamed Messages API answer ("stream": true, server-sent events) parsed
 * incrementally into the same aq_llm_response that aq_llm_response_parse
 * makes of the non-streamed body.
 *
 * Bytes are fed as they arrive (libcurl's write callback), split anywhere:
 * mid-line, mid-event, between the CR and LF of a CRLF. Lines end with CRLF,
 * LF or CR; an event is its `event:` and `data:` lines up to a blank line
 * (several data lines are joined with "\n"); comments (":...") and other
 * fields (id, retry, unknown) are ignored. Each event's data is parsed with
 * jansson and folded in:
 *
 *   message_start        id, model, usage (input and output tokens required)
 *   content_block_start  text (its initial text kept) / tool_use (id, name;
 *                        its initial input used when no delta follows) /
 *                        other types (thinking, server tools...) skipped
 *   content_block_delta  text_delta appends text; input_json_delta appends
 *                        partial_json to the block's input, parsed (jansson)
 *                        and re-encoded compactly at content_block_stop;
 *                        other delta types ignored
 *   message_delta        stop_reason, stop_sequence; usage is cumulative:
 *                        each counter present replaces the one so far
 *   message_stop         the answer is complete; later bytes are ignored
 *   ping, unknown types  ignored
 *   error                the stream fails with the error's class:
 *                        overloaded_error HTTP_OVERLOADED (as a 529),
 *                        rate_limit_error HTTP_RATE_LIMITED, api_error and
 *                        unknown types HTTP_SERVER_ERROR (as a 5xx),
 *                        invalid_request_error HTTP_BAD_REQUEST,
 *                        authentication_error HTTP_UNAUTHORIZED,
 *                        permission_error HTTP_FORBIDDEN, not_found_error
 *                        HTTP_NOT_FOUND, request_too_large HTTP_TOO_LARGE,
 *                        billing_error HTTP_BILLING, timeout_error
 *                        HTTP_TIMEOUT
 *
 * Events out of the API's order (a delta for a block that is not open, a
 * second message_start, a block index that skips), data that is not JSON and
 * mistyped fields fail with AQ_LLM_BAD_RESPONSE; a stream that ends before
 * message_stop fails with AQ_LLM_STREAM_CUT. Both are retryable.
 *
 * Caps (aq_llm_sse_limits, chosen by whoever creates the parser): one event's
 * data, one block's text or tool input, and the text plus tool inputs of the
 * whole answer; over one fails with AQ_LLM_RESPONSE_TOO_BIG naming it. The
 * answer's other caps are those of llm_response.h (fields, blocks, tool_uses).
 *
 * Pure: no I/O, no clock. A fuzz target. */
#ifndef AQ_LLM_SSE_H
#define AQ_LLM_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "llm_response.h"

#define AQ_LLM_SSE_DEFAULT_EVENT_MAX (1u << 20)          /* one event's data */
#define AQ_LLM_SSE_DEFAULT_TOTAL_MAX (8u * 1024 * 1024)   /* text + tool inputs */

typedef struct aq_llm_sse_limits {
    size_t max_event_bytes; /* one event's data lines; 0: AQ_LLM_SSE_DEFAULT_EVENT_MAX */
    size_t max_block_bytes; /* one block's text or input JSON; 0: max_total_bytes
                               (a tool input is also held to AQ_LLM_TOOL_INPUT_MAX) */
    size_t max_total_bytes; /* all text + tool input JSON; 0: AQ_LLM_SSE_DEFAULT_TOTAL_MAX */
} aq_llm_sse_limits;

typedef struct aq_llm_sse aq_llm_sse;

/* `lim` NULL: every default. AQ_NOMEM, AQ_INVALID_ARG (NULL out). */
aq_status aq_llm_sse_new(const aq_llm_sse_limits *lim, aq_llm_sse **out, aq_err *err);

/* Feed the next `len` bytes. AQ_OK to go on (also after message_stop: the
 * rest is ignored); a failure is sticky: this and every later feed and
 * aq_llm_sse_finish return it, with the same message. */
aq_status aq_llm_sse_feed(aq_llm_sse *p, const char *data, size_t len, aq_err *err);

/* The stream is over (the connection closed). AQ_OK with *out filled (free
 * with aq_llm_response_free) when message_stop was seen; else the feed's
 * failure, or AQ_LLM_STREAM_CUT ("the stream ended before message_stop ...").
 * A last event without its blank line is not dispatched (the SSE rule). The
 * answer is moved out: a second call fails (AQ_INVALID_ARG). */
aq_status aq_llm_sse_finish(aq_llm_sse *p, aq_llm_response *out, aq_err *err);

/* content_block_delta events seen so far (the first is the first token). */
uint64_t aq_llm_sse_deltas(const aq_llm_sse *p);
/* Events dispatched so far (ping and unknown ones included). */
uint64_t aq_llm_sse_events(const aq_llm_sse *p);
/* message_stop was seen. */
int aq_llm_sse_complete(const aq_llm_sse *p);

/* Accepts NULL. */
void aq_llm_sse_free(aq_llm_sse *p);

#endif
