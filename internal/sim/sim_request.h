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
 * Prefill (the last message is the assistant's, its text P): the answer
 * continues P. T0 is the text built as above for the request without that
 * message; if P is a prefix of T0 the text is the rest of T0 (P + text = T0),
 * else it is filler words (chosen from the hash of the whole request, a
 * space first unless P ends in one) to the target length. No tool use.
 * Then: if tokens(text) > max_tokens, the text is cut to max_tokens*4 bytes
 * (UTF-8 boundary) and stop_reason is "max_tokens"; then, if a stop sequence
 * occurs in the (possibly cut) text, the text ends right before the earliest
 * occurrence (ties: first in the list) and stop_reason is "stop_sequence".
 *
 * Content blocks (messages.N.content as an array): text, image, document,
 * tool_use (assistant turns only) and tool_result (user turns only). Each
 * block has a text that is counted and hashed like a text block's:
 *   text        its text
 *   image       "" (its data counts as media tokens)
 *   document    a text source's data; a content source's text blocks; else ""
 *   tool_use    name + " " + the input as compact JSON
 *   tool_result its content: the string, or its text blocks concatenated
 * and media tokens added to its message's tokens:
 *   base64 image or document: ceil(decoded bytes / 750), decoded bytes =
 *                             base64 length * 3 / 4
 *   url image or document:    AQ_SIM_URL_MEDIA_TOKENS
 * so tokens(message content) = ceil(text bytes / 4) + media tokens. With
 * tools, input_tokens also counts tokens(tools) = ceil(bytes / 4) over every
 * tool's name + description + input_schema as compact JSON.
 *
 * Tool use (sim_tools.c): with tools and tool_choice not "none" the answer may
 * be tool_use blocks instead of the echo text; see aq_sim_answer_build and the
 * README. Then output_tokens = tokens(text + each call's name + " " + input).
 *
 * Prompt caching: blocks in tools, system and messages may carry
 * "cache_control": {"type": "ephemeral"} (optional "ttl": "5m" or "1h";
 * anything else is a 400; more than AQ_SIM_MAX_BREAKPOINTS marks is the
 * API's 400). The prefix runs tools -> system -> messages; the prefix up to
 * a block has the tokens of everything before it, computed as above (so the
 * prefix of the last block is input_tokens). For each mark the answer lists
 * the prefix hashes (model + prefix content; tool_choice from the first
 * message on) at the marked block and at up to AQ_SIM_CACHE_LOOKBACK blocks
 * before it. The server bills:
 *   cache_read_input_tokens     = the longest listed prefix it has cached
 *   cache_creation_input_tokens = prefix(last mark) - read
 *   input_tokens                = everything after the last mark
 * and caches the prefix of every mark (per model, for the mark's ttl,
 * restarted on every hit, as the provider does). There is no minimum length.
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
#define AQ_SIM_MAX_TOOLS 1024               /* tools per request */
#define AQ_SIM_MAX_BREAKPOINTS 4            /* cache_control marks per request (the API's limit) */
#define AQ_SIM_CACHE_LOOKBACK 20            /* blocks before a mark checked for a cached prefix */
#define AQ_SIM_MAX_CACHE_POINTS (AQ_SIM_MAX_BREAKPOINTS * (AQ_SIM_CACHE_LOOKBACK + 1))
#define AQ_SIM_MEDIA_BYTES_PER_TOKEN 750    /* base64 images and documents */
#define AQ_SIM_URL_MEDIA_TOKENS 1600        /* an image or document given by URL */
#define AQ_SIM_MAX_TOOL_STEPS 1000
#define AQ_SIM_MAX_TOOL_PARALLEL 64
#define AQ_SIM_TOOL_RESULT_ECHO_BYTES 80    /* of each tool_result echoed by the final answer */
#define AQ_SIM_TOOL_RESULT_ECHO_MAX 64      /* tool_results echoed at most */
#define AQ_SIM_TOOL_ID_LEN 28               /* "toolu_0K" + 16 hex + 4 hex */

typedef struct aq_sim_text {
    const char *ptr;
    size_t len;
} aq_sim_text;

typedef enum aq_sim_block_kind {
    AQ_SIM_BLOCK_TEXT = 0,
    AQ_SIM_BLOCK_IMAGE,
    AQ_SIM_BLOCK_DOCUMENT,
    AQ_SIM_BLOCK_TOOL_USE,
    AQ_SIM_BLOCK_TOOL_RESULT,
} aq_sim_block_kind;

/* What a block is besides its text (aq_sim_request.blocks[i]). */
typedef struct aq_sim_block_info {
    aq_sim_block_kind kind;
    bool is_error;        /* tool_result */
    int64_t media_tokens; /* image, document */
    aq_sim_text id;       /* tool_use: id; tool_result: tool_use_id */
    aq_sim_text name;     /* tool_use: name */
    aq_sim_text media;    /* base64 data or URL: hashed, not counted as text */
    char *owned;          /* the block's text when the request owns it (freed with it) */
} aq_sim_block_info;

typedef struct aq_sim_tool {
    aq_sim_text name;
    void *schema;        /* json_t * input_schema, in the request's document */
    char *canon;         /* name + description + compact input_schema: counted and hashed */
    size_t canon_len;
} aq_sim_tool;

typedef enum aq_sim_tool_choice {
    AQ_SIM_CHOICE_AUTO = 0,
    AQ_SIM_CHOICE_ANY,
    AQ_SIM_CHOICE_TOOL,
    AQ_SIM_CHOICE_NONE,
} aq_sim_tool_choice;

/* Tool-use behaviour: the server's options, overridden per request by a
 * directive "[sim key=value ...]" in the first user message's text. */
typedef struct aq_sim_tool_opts {
    int64_t steps;       /* tool_use steps before end_turn (tool_choice auto) */
    int64_t parallel;    /* tool_use blocks per step */
    bool text;           /* a text block before the tool_use blocks */
    double fault_schema; /* share of inputs made to violate their schema */
} aq_sim_tool_opts;

typedef struct aq_sim_message {
    bool assistant;     /* role: false = user, true = assistant */
    size_t first_block; /* index into aq_sim_request.blocks */
    size_t n_blocks;
} aq_sim_message;

typedef struct aq_sim_limits {
    int64_t max_tokens_cap;     /* max_tokens above this: 400 */
    const char *const *models;  /* known model ids; n_models == 0 accepts any */
    size_t n_models;
    bool count_tokens;          /* a POST /v1/messages/count_tokens body: no max_tokens, no stream */
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
    aq_sim_block_info *info; /* one per block */
    aq_sim_tool *tools;
    size_t n_tools;
    aq_sim_tool_choice tool_choice;
    aq_sim_text tool_choice_name;  /* AQ_SIM_CHOICE_TOOL */
    bool disable_parallel_tool_use;
    bool has_tool_result;          /* some message carries a tool_result block */
    size_t n_tool_use;             /* tool_use blocks in the messages */
    /* Cache marks in prefix order; a position counts tools first, then
     * blocks: position p >= n_tools is blocks[p - n_tools]. */
    size_t n_breakpoints;
    size_t bp_pos[AQ_SIM_MAX_BREAKPOINTS];
    int64_t bp_ttl_ms[AQ_SIM_MAX_BREAKPOINTS];
    /* A "[sim ...]" directive (read only when the request has tools). */
    bool has_directive;
    bool has_directive_text;
    aq_sim_tool_opts directive;     /* numbers not given are negative (-1) */
    bool stream;                    /* "stream": true (answered with server-sent events) */
    bool prefill;                   /* the last message is the assistant's: the answer continues it */
} aq_sim_request;

/* Parse and validate a POST /v1/messages body (or, with lim->count_tokens, a
 * POST /v1/messages/count_tokens body: max_tokens and stream are then unknown
 * fields, and r->max_tokens is lim->max_tokens_cap). Top-level fields the API
 * does not know are the API's 400 ("<field>: Extra inputs are not
 * permitted"). On failure nothing is left to free and err->status says how to
 * answer (aq_sim_error_http_status):
 * AQ_INVALID_ARG (400 invalid_request_error), AQ_NOT_FOUND (404 unknown model). */
aq_status aq_sim_parse_request(const char *body, size_t len, const aq_sim_limits *lim,
                               aq_sim_request *out, aq_err *err);
/* Accepts NULL and a zeroed request. */
void aq_sim_request_free(aq_sim_request *r);

/* HTTP status and API error type for a status returned by the simulator. */
int aq_sim_error_http_status(aq_status st, const char **error_type);

int64_t aq_sim_tokens(size_t bytes);
/* Media tokens of base64 data of this length: ceil(len * 3 / 4 / 750). */
int64_t aq_sim_media_tokens(size_t base64_len);
int64_t aq_sim_input_tokens(const aq_sim_request *r);
/* The largest n <= max (and <= len) such that s[0..n) ends on a UTF-8 boundary. */
size_t aq_sim_utf8_cut(const char *s, size_t len, size_t max);

/* Output length in tokens: min == max for a fixed length. */
typedef struct aq_sim_output_range {
    uint32_t min, max;
} aq_sim_output_range;

/* "40" or "20-200"; each in [1, AQ_SIM_MAX_OUTPUT_TOKENS]. */
aq_status aq_sim_output_range_parse(const char *s, aq_sim_output_range *out, aq_err *err);

/* A prefix the server may have cached (see the caching note above). */
typedef struct aq_sim_cache_point {
    uint64_t hash;   /* model + prefix; never 0 */
    int64_t tokens;  /* of the prefix */
    int64_t ttl_ms;  /* of the mark it belongs to */
    bool mark;       /* the marked block itself: cached by this request */
} aq_sim_cache_point;

/* One tool_use block of the answer. */
typedef struct aq_sim_tool_call {
    char id[AQ_SIM_TOOL_ID_LEN + 1];
    aq_sim_text name;  /* points into the request */
    char *input;       /* compact JSON (malloc'd; aq_sim_answer_free) */
    size_t input_len;
    bool spoiled;      /* made to violate its schema (fault_tool_schema) */
    bool repair;       /* a corrected retry of a spoiled call */
} aq_sim_tool_call;

typedef struct aq_sim_answer {
    const char *stop_reason;   /* "end_turn", "max_tokens", "stop_sequence" or "tool_use" */
    aq_sim_text stop_sequence; /* ptr is NULL unless stop_reason is "stop_sequence" */
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t cache_creation_input_tokens; /* prefix(last mark), until aq_sim_answer_cache_read */
    int64_t cache_read_input_tokens;
    uint64_t cache_prefix_hash;          /* of the last mark's prefix; 0 when nothing is marked */
    size_t n_cache_points;
    aq_sim_cache_point cache_points[AQ_SIM_MAX_CACHE_POINTS];
    uint64_t hash;
    size_t n_calls;            /* tool_use blocks (stop_reason "tool_use") */
    aq_sim_tool_call *calls;
    size_t n_spoiled;
} aq_sim_answer;

/* The server has the whole prefix of the last mark cached: bill it as a read. */
void aq_sim_answer_cache_hit(aq_sim_answer *a);
/* The server has the first `tokens` tokens (a listed prefix) cached. */
void aq_sim_answer_cache_read(aq_sim_answer *a, int64_t tokens);

/* Compute the answer; the text goes to `text` (reset first; its cap bounds
 * it), tool_use blocks to out->calls. topts NULL: no tool steps (text only).
 * Free with aq_sim_answer_free (also on failure). */
aq_status aq_sim_answer_build(const aq_sim_request *r, aq_sim_output_range range,
                              const aq_sim_tool_opts *topts, aq_buf *text, aq_sim_answer *out,
                              aq_err *err);
/* Frees the tool calls; accepts a zeroed answer. */
void aq_sim_answer_free(aq_sim_answer *a);

aq_status aq_sim_render_message(aq_buf *out, const aq_sim_request *r, const aq_sim_answer *a,
                                const char *text, size_t text_len, const char *msg_id);
aq_status aq_sim_render_error(aq_buf *out, const char *error_type, const char *message,
                              const char *request_id);

#endif
