/* Private to internal/llm: helpers shared by the module's .c files. */
#ifndef AQ_LLM_INTERNAL_H
#define AQ_LLM_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Copy at most `max` bytes of untrusted text `src` (length n) into dst
 * (size dstsz >= 8): control characters become spaces, a cut never splits a
 * UTF-8 sequence and is marked with "...", every occurrence of `secret`
 * (may be NULL) and every "sk-ant-..." token is replaced by "[REDACTED]". */
void aq_llm_sanitize(char *dst, size_t dstsz, const char *src, size_t n, size_t max,
                     const char *secret);

/* Overwrite every occurrence of `secret` in buf[0..n) with '*' (in place). */
void aq_llm_redact_inplace(char *buf, size_t n, const char *secret);

/* obj[key] as an optional string (absent or null -> NULL, else a malloc'd
 * copy), capped at AQ_LLM_FIELD_MAX: AQ_LLM_BAD_RESPONSE naming the key. */
aq_status aq_llm_json_opt_string(json_t *obj, const char *key, char **out, aq_err *err);
/* A tool_use block's "id" or "name" (both parsers): a non-empty string of at
 * most AQ_LLM_FIELD_MAX bytes without a NUL (C strings from here on:
 * idempotency keys, subjects), copied into *out. AQ_LLM_BAD_RESPONSE names
 * `where` (e.g. "response content[2]") and the key; AQ_NOMEM. */
aq_status aq_llm_tool_use_field(json_t *blk, const char *key, const char *where, char **out,
                                aq_err *err);

/* usage[key] as a token count in [0, UINT32_MAX]; absent or null is an error
 * when `required`, else 0. AQ_LLM_BAD_RESPONSE naming the key. */
aq_status aq_llm_json_token_count(json_t *usage, const char *key, int required, uint32_t *out,
                                  aq_err *err);

#endif
