/* Text helpers that several layers need: UTF-8 checks for what goes into
 * JSON, and URL credential redaction for what goes into logs and output. */
#ifndef AQ_CORE_TEXT_H
#define AQ_CORE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 character at s[0..len), or 0 if it is not one. */
size_t aq_utf8_seq_len(const char *s, size_t len);

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
bool aq_utf8_valid(const char *s, size_t len);

/* Copy `s` into `out` (size n) with every invalid byte replaced by U+FFFD,
 * truncated at a character boundary. Returns out. */
char *aq_utf8_sanitize(const char *s, size_t len, char *out, size_t n);

/* Copy a URL, or a comma-separated list of them, with every user-info part
 * ("user:password@", "token@") replaced by "***@". */
void aq_redact_urls(const char *urls, char *out, size_t n);

/* Spans [b, e) of configuration strings (limits, prices, budgets). */
bool aq_span_is_blank(char c); /* space or tab */
/* Moves *b forward and *e back over blanks. */
void aq_span_trim(const char **b, const char **e);
/* The first c in [b, e), or e. */
const char *aq_span_find(const char *b, const char *e, char c);
/* A "name = value" setting [b, e): split at the first '=', both sides
 * trimmed into [*nb, *ne) and [*vb, *ve), and the name looked up in
 * names[0..n). Returns its index, AQ_SPAN_NO_EQUALS (then only the outputs
 * are untouched) or AQ_SPAN_UNKNOWN_NAME (the name span is set, for the
 * error message). */
#define AQ_SPAN_NO_EQUALS (-1)
#define AQ_SPAN_UNKNOWN_NAME (-2)
int aq_span_setting(const char *b, const char *e, const char *const *names, int n,
                    const char **nb, const char **ne, const char **vb, const char **ve);

/* A NATS subject prefix: 1..max_len bytes of dot-separated, non-empty tokens
 * without a wildcard ('*', '>'), space or control character. */
bool aq_subject_prefix_valid(const char *s, size_t max_len);

#endif
