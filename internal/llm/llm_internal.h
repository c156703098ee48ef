/* Private to internal/llm: helpers shared by the module's .c files. */
#ifndef AQ_LLM_INTERNAL_H
#define AQ_LLM_INTERNAL_H

#include <stddef.h>

/* Copy at most `max` bytes of untrusted text `src` (length n) into dst
 * (size dstsz >= 8): control characters become spaces, a cut never splits a
 * UTF-8 sequence and is marked with "...", every occurrence of `secret`
 * (may be NULL) and every "sk-ant-..." token is replaced by "[REDACTED]". */
void aq_llm_sanitize(char *dst, size_t dstsz, const char *src, size_t n, size_t max,
                     const char *secret);

/* Overwrite every occurrence of `secret` in buf[0..n) with '*' (in place). */
void aq_llm_redact_inplace(char *buf, size_t n, const char *secret);

#endif
