/* The pure part of the simulator: parse and validate a Messages API request
 * body, and compute its deterministic answer. No I/O, no globals, no
 * allocation outside the request and the caller's buffers, so tests and a
 * fuzzer can call it directly.
 *
 * Token counting, used everywhere in the simulator:
 *   tokens(text)   = ceil(bytes / 4)                 (0 for empty text)
 *   input_tokens   = tokens(system)                  (all system text blocks, concatenated)
 *                  + sum over messages of (AQ_SIM_MESSAGE_OVERHEAD_TOKENS
 *                                          + tokens(message content))
 *   output_tokens  = tokens(returned text)
 *
 * The answer text is
 *   "echo: " + <last user message, first AQ_SIM_ECHO_MAX_BYTES bytes cut at a
 *   UTF-8 boundary> + " | " + <filler words chosen by XXH3 of the canonical
 *   request>, cut to exactly the target length (target tokens * 4 bytes) unless
 *   the echo alone is already longer. The target comes from the output range
 *   ("40", or "20-200": uniform in the range, chosen from the hash).
 * Then: if tokens(text) > max_tokens, the text is cut to max_tokens*4 bytes
 * (UTF-8 boundary) and stop_reason is "max_tokens"; then, if a stop sequence
 * occurs in the (possibly cut) text, the text ends right before the earliest
 * occurrence (ties: first in the list) and stop_reason is "stop_sequence".
 *
 * Prompt caching: a text block may carry "cache_control": {"type":
 * "ephemeral"} (optional "ttl": "5m" or "1h"; anything else is a 400). When
 * a system block does, the system blocks up to and including the last marked
 * one are the cached prefix:
 *   prefix_tokens  = tokens(those blocks, concatenated)
 *   input_tokens   = the input_tokens above - prefix_tokens
 *   and the prefix is billed as cache_creation_input_tokens the first time
 *   (per model and prefix, within the ttl) and as cache_read_input_tokens
 *   when the server has seen it (aq_sim_answer_cache_hit; the ttl restarts
 *   on every hit, as the provider's does). There is no minimum length.
 * Marks on message blocks are validated and ignored.
 */
#ifndef AQ_SIM_SIM_REQUEST_H
#define AQ_SIM_SIM_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"

#define AQ_SIM_MAX_MESSAGES 100000          /* messages per request */
#define AQ_SIM_MAX_BLOCKS_PER_CONTENT 10000 /* text blocks in one content or system array */
#define AQ_SIM_MAX_STOP_SEQUENCES 1024
#define AQ_SIM_MAX_MODEL_BYTES 256
#define AQ_SIM_ECHO_MAX_BYTES 200
#define AQ_SIM_MESSAGE_OVERHEAD_TOKENS 4
#define AQ_SIM_MAX_OUTPUT_TOKENS 1000000 /* upper bound of the output_tokens option */
#define AQ_SIM_DEFAULT_MAX_TOKENS_CAP 64000

typedef struct aq_sim_text {
    const char *ptr;
    size_t len;
} aq_sim_text;

typedef struct aq_sim_message {
    bool assistant;     /* role: false = user, true = assistant */
    size_t first_block; /* index into aq_sim_request.blocks */
    size_t n_blocks;
} aq_sim_message;

typedef struct aq_sim_limits {
    int64_t max_tokens_cap;     /* max_tokens above this: 400 */
    const char *const *models;  /* known model ids; n_models == 0 accepts any */
    size_t n_models;
} aq_sim_limits;

typedef struct aq_sim_request {
    void *doc;           /* the parsed JSON document (json_t *); the texts point into it */
    aq_sim_text model;
    int64_t max_tokens;
    bool has_temperature;
    double temperature;
    aq_sim_text *blocks; /* system blocks first, then each message's blocks in order */
    size_t n_blocks;
    size_t n_system_blocks;
    aq_sim_message *messages;
    size_t n_messages;
    aq_sim_text *stop;   /* stop_sequences */
    size_t n_stop;
    bool has_user_id;
    aq_sim_text user_id; /* metadata.user_id */
    size_t n_cached_system_blocks; /* the cached prefix: system blocks up to the last marked one */
    int64_t cache_ttl_ms;          /* of that last mark: 5 minutes or 1 hour */
} aq_sim_request;

/* Parse and validate a POST /v1/messages body. On failure nothing is left to
 * free and err->status says how to answer (aq_sim_error_http_status):
 * AQ_INVALID_ARG (400 invalid_request_error), AQ_NOT_FOUND (404 unknown model). */
aq_status aq_sim_parse_request(const char *body, size_t len, const aq_sim_limits *lim,
                               aq_sim_request *out, aq_err *err);
/* Accepts NULL and a zeroed request. */
void aq_sim_request_free(aq_sim_request *r);

/* HTTP status and API error type for a status returned by the simulator. */
int aq_sim_error_http_status(aq_status st, const char **error_type);

int64_t aq_sim_tokens(size_t bytes);
int64_t aq_sim_input_tokens(const aq_sim_request *r);
/* The largest n <= max (and <= len) such that s[0..n) ends on a UTF-8 boundary. */
size_t aq_sim_utf8_cut(const char *s, size_t len, size_t max);

/* Output length in tokens: min == max for a fixed length. */
typedef struct aq_sim_output_range {
    uint32_t min, max;
} aq_sim_output_range;

/* "40" or "20-200"; each in [1, AQ_SIM_MAX_OUTPUT_TOKENS]. */
aq_status aq_sim_output_range_parse(const char *s, aq_sim_output_range *out, aq_err *err);

typedef struct aq_sim_answer {
    const char *stop_reason;   /* "end_turn", "max_tokens" or "stop_sequence" */
    aq_sim_text stop_sequence; /* ptr is NULL unless stop_reason is "stop_sequence" */
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t cache_creation_input_tokens; /* the prefix, until aq_sim_answer_cache_hit */
    int64_t cache_read_input_tokens;
    uint64_t cache_prefix_hash;          /* model + prefix; 0 when nothing is marked */
    uint64_t hash;
} aq_sim_answer;

/* The server has the prefix cached: bill it as a read, not a write. */
void aq_sim_answer_cache_hit(aq_sim_answer *a);

/* Compute the answer; the text goes to `text` (reset first; its cap bounds it). */
aq_status aq_sim_answer_build(const aq_sim_request *r, aq_sim_output_range range, aq_buf *text,
                              aq_sim_answer *out, aq_err *err);

aq_status aq_sim_render_message(aq_buf *out, const aq_sim_request *r, const aq_sim_answer *a,
                                const char *text, size_t text_len, const char *msg_id);
aq_status aq_sim_render_error(aq_buf *out, const char *error_type, const char *message,
                              const char *request_id);

#endif
