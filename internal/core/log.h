/* Structured logs: one JSON object per line on stderr.
 * Only cmd/ and the pipeline log; libraries return a status and an aq_err.
 * Never pass a credential as a field: nothing here can tell one apart. */
#ifndef AQ_CORE_LOG_H
#define AQ_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "status.h"

typedef enum aq_log_level { AQ_LOG_DEBUG, AQ_LOG_INFO, AQ_LOG_WARN, AQ_LOG_ERROR } aq_log_level;

typedef struct aq_log_field {
    const char *key;   /* NULL entries are skipped */
    const char *str;   /* string value, or NULL for an integer field */
    long long num;
} aq_log_field;

#define AQ_LF_S(k, v) ((aq_log_field){(k), (v) ? (v) : "", 0})
#define AQ_LF_I(k, v) ((aq_log_field){(k), NULL, (long long)(v)})

void aq_log_init(const char *program, aq_log_level level, FILE *out);
aq_status aq_log_level_parse(const char *s, aq_log_level *out);
bool aq_log_enabled(aq_log_level level);
void aq_log_fields(aq_log_level level, const char *msg, const aq_log_field *fields, size_t n);

/* aq_log(AQ_LOG_INFO, "task completed", AQ_LF_S("id", id), AQ_LF_I("attempt", 2)); */
#define aq_log(level, msg, ...)                                                      \
    do {                                                                             \
        if (aq_log_enabled(level)) {                                                 \
            const aq_log_field aq_lf_[] = {{NULL, NULL, 0}, ##__VA_ARGS__};          \
            aq_log_fields((level), (msg), aq_lf_, sizeof(aq_lf_) / sizeof(aq_lf_[0])); \
        }                                                                            \
    } while (0)

#endif
