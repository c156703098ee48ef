/* The Anthropic Messages API answers: a 200 body parsed into a response, and
 * any other status (with its error body) classified into an aq_status.
 *
 * Pure functions of untrusted bytes, no I/O: fuzz targets. */
#ifndef AQ_LLM_RESPONSE_H
#define AQ_LLM_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "agentq/v1/task.pb-c.h"
#include "core/status.h"

/* Caps on what a 200 body may carry besides the text (which is bounded by the
 * body, itself capped by the client's max_response_bytes). */
#define AQ_LLM_FIELD_MAX 4096u   /* id, model, stop_reason, stop_sequence */
#define AQ_LLM_BLOCKS_MAX 4096u  /* content blocks */
#define AQ_LLM_TOOL_USES_MAX 256u /* tool_use blocks in one answer */
#define AQ_LLM_TOOL_INPUT_MAX (1u << 20) /* one tool_use input, re-encoded as JSON text */

typedef struct aq_llm_usage {
    uint32_t input_tokens;
    uint32_t output_tokens;
    uint32_t cache_creation_input_tokens;   /* 0 when absent or null */
    uint32_t cache_read_input_tokens;       /* 0 when absent or null */
} aq_llm_usage;

/* The content blocks of an answer that agentq keeps: text and tool_use.
 * Others (thinking, server tool blocks, newer types) are skipped, and so are
 * empty text blocks (the API refuses them when the turn is sent back). */
typedef enum aq_llm_block_type {
    AQ_LLM_BLOCK_TEXT = 1,
    AQ_LLM_BLOCK_TOOL_USE = 2,
} aq_llm_block_type;

typedef struct aq_llm_block {
    aq_llm_block_type type;
    /* TEXT: bytes [text_off, text_off + text_len) of the response's text */
    size_t text_off, text_len;
    /* TOOL_USE: malloc'd; input_json is the "input" object re-encoded compactly */
    char *id, *name, *input_json;
} aq_llm_block;

typedef struct aq_llm_response {
    char *id;             /* all strings malloc'd, NULL when absent or null */
    char *model;
    char *text;           /* every "text" block concatenated ("" when there is none) */
    size_t text_len;      /* strlen(text) unless the text holds a NUL (\u0000) */
    char *stop_reason;    /* any string, including ones newer than this code */
    char *stop_sequence;
    aq_llm_usage usage;
    uint32_t n_tool_use;  /* tool_use blocks seen (not part of text) */
    aq_llm_block *blocks; /* text and tool_use blocks in order (malloc'd; NULL when none) */
    size_t n_blocks;
} aq_llm_response;

/* Parse a 200 body. `out` is written only on success (free with
 * aq_llm_response_free). Malformed or truncated JSON, a body that is not a
 * message, missing or mistyped content/usage, negative or over-uint32 token
 * counts, over-cap fields: AQ_LLM_BAD_RESPONSE with a message naming what is
 * wrong. AQ_NOMEM, AQ_INVALID_ARG (NULL out). */
aq_status aq_llm_response_parse(const char *body, size_t len, aq_llm_response *out, aq_err *err);

/* Frees the strings and zeroes *r; accepts NULL and a zeroed response. */
void aq_llm_response_free(aq_llm_response *r);

/* ---- the answer as agentq.v1.ContentBlock ----
 *
 * An answer's blocks as the wire contract's ContentBlocks: for Result.content,
 * or (role "assistant") the turn an agent run appends to its conversation.
 * The blocks borrow the response's strings: `r` must outlive `c`. */
typedef struct aq_llm_content {
    Agentq__V1__ContentBlock **blocks;
    size_t n_blocks;
    void *mem; /* private: one allocation holding all of the above */
} aq_llm_content;

/* Fill `c` from `r` (n_blocks 0 when r has none). AQ_NOMEM. */
aq_status aq_llm_response_content(const aq_llm_response *r, aq_llm_content *c, aq_err *err);
/* Frees what aq_llm_response_content made; accepts NULL and a zeroed one. */
void aq_llm_content_free(aq_llm_content *c);

/* The reverse, for answers read back from a stored Result (the response
 * cache): replace r's text and blocks with copies of `blocks` (text and
 * tool_use blocks; text is their concatenation). Other block kinds are
 * skipped. On failure `r` is unchanged. AQ_NOMEM. */
aq_status aq_llm_response_set_content(aq_llm_response *r, Agentq__V1__ContentBlock *const *blocks,
                                      size_t n, aq_err *err);

/* A non-200 answer: maps the HTTP status (and the error body
 * {"type":"error","error":{"type","message"},"request_id"}) to the status:
 *   400 HTTP_BAD_REQUEST, 401 HTTP_UNAUTHORIZED, 402 HTTP_BILLING,
 *   403 HTTP_FORBIDDEN, 404 HTTP_NOT_FOUND, 408 HTTP_TIMEOUT,
 *   409 HTTP_CONFLICT, 413 HTTP_TOO_LARGE, 429 HTTP_RATE_LIMITED,
 *   529 HTTP_OVERLOADED, other 5xx HTTP_SERVER_ERROR (but a 5xx whose
 *   error.type is "overloaded_error" is HTTP_OVERLOADED), anything else
 *   (including 2xx) HTTP_UNEXPECTED.
 * Always fills `err` (status and message) and returns the status. The message
 * is "HTTP 429 rate_limit_error: <provider message>" (the provider text
 * truncated to ~300 bytes, control characters blanked, anything shaped like an
 * Anthropic key redacted); with a non-JSON body "HTTP 502: <body start>", with
 * an empty one "HTTP 502 (empty body)". `body` may be NULL when len is 0. */
aq_status aq_llm_error_classify(long http_status, const char *body, size_t len, aq_err *err);

#endif
