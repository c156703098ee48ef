/* The server-sent events of a streamed answer ("stream": true), one event at
 * a time, in the API's order:
 *
 *   message_start        the message with empty content, stop_reason null and
 *                        the initial usage (output_tokens min(1, total))
 *   per content block    content_block_start (text "" / tool_use input {}),
 *                        content_block_delta* (text_delta / input_json_delta
 *                        with partial_json: the compact input cut in pieces),
 *                        content_block_stop
 *   message_delta        stop_reason, stop_sequence, usage (cumulative: every
 *                        counter of the whole message)
 *   message_stop
 *
 * The blocks, texts, tool inputs and usage are exactly those of the answer's
 * non-streamed body (aq_sim_render_message): concatenated deltas give the
 * same text and the same input JSON. A delta carries at most chunk_tokens
 * tokens (chunk_tokens * 4 bytes, cut on a UTF-8 boundary). The event JSON is
 * written by jansson. Pure: no I/O, no clock; the server paces the events. */
#ifndef AQ_SIM_SIM_STREAM_H
#define AQ_SIM_SIM_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"
#include "sim_request.h"

#define AQ_SIM_STREAM_MAX_CHUNK_TOKENS 4096

typedef struct aq_sim_stream aq_sim_stream;

/* Copies what it needs from r and text; takes a's tool calls (a is left with
 * none: aq_sim_answer_free on it is still right). */
aq_status aq_sim_stream_new(const aq_sim_request *r, aq_sim_answer *a, const char *text, size_t text_len,
                            const char *msg_id, int64_t chunk_tokens, aq_sim_stream **out, aq_err *err);
/* Append the next event ("event: <type>\ndata: <json>\n\n") to out.
 * *tokens: the output tokens its delta carries (0 for the other events);
 * *done: message_stop was the event (nothing follows). */
aq_status aq_sim_stream_next(aq_sim_stream *s, aq_buf *out, int64_t *tokens, bool *done);
/* Half of the content (text and input bytes) or more has been sent. */
bool aq_sim_stream_past_half(const aq_sim_stream *s);
/* A ping event, and an error event (the API's error body as its data). */
aq_status aq_sim_stream_ping(aq_buf *out);
aq_status aq_sim_stream_error(aq_buf *out, const char *error_type, const char *message);
/* Accepts NULL. */
void aq_sim_stream_free(aq_sim_stream *s);

#endif
