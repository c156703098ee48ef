/* How the worker reaches tool services: one definition of the option rows,
 * for every program that embeds an aq_tool_config in its option table. */
#ifndef AQ_TOOL_TOOL_CONFIG_H
#define AQ_TOOL_TOOL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/status.h"

#define AQ_TOOL_DEFAULT_SUBJECT_PREFIX "agentq.tools"

typedef struct aq_tool_config {
    char *subject_prefix;   /* a tool `name` is called on <prefix>.<name> */
    char *subjects;         /* "name=subject;name2=subject2" overrides; "" none */
    int64_t timeout_ms;     /* one attempt */
    int64_t max_attempts;   /* attempts after timeouts / no responders */
    int64_t max_reply_bytes;
    char *failure_action;   /* "model" or "fail" */
} aq_tool_config;

/* Option rows for a config struct `T` that embeds aq_tool_config as `m`. */
#define AQ_TOOL_OPTIONS(T, m)                                                                    \
    {"tool_subject_prefix", "AGENTQ_TOOL_SUBJECT_PREFIX", AQ_OPT_STRING,                         \
     AQ_TOOL_DEFAULT_SUBJECT_PREFIX, 0, 0, offsetof(T, m.subject_prefix),                        \
     "agent runs call a tool NAME with NATS request/reply on <prefix>.NAME"},                    \
    {"tool_subjects", "AGENTQ_TOOL_SUBJECTS", AQ_OPT_STRING, "", 0, 0, offsetof(T, m.subjects),   \
     "subjects of particular tools over the prefix, e.g. get_weather=weather.v2.get;lookup_order=orders.lookup (no wildcards)"}, \
    {"tool_timeout", "AGENTQ_TOOL_TIMEOUT", AQ_OPT_DURATION, "30s", 10, 3600000,                  \
     offsetof(T, m.timeout_ms), "longest one tool call attempt may take (capped by the task's deadline)"}, \
    {"tool_max_attempts", "AGENTQ_TOOL_MAX_ATTEMPTS", AQ_OPT_INT, "3", 1, 20,                      \
     offsetof(T, m.max_attempts),                                                                \
     "attempts of one tool call when it times out or has no responders (jittered backoff between them)"}, \
    {"tool_max_reply_bytes", "AGENTQ_TOOL_MAX_REPLY_BYTES", AQ_OPT_BYTES, "1MiB", 16, 67108864,    \
     offsetof(T, m.max_reply_bytes), "largest tool reply accepted (a longer one is a bad_reply)"}, \
    {"tool_failure_action", "AGENTQ_TOOL_FAILURE_ACTION", AQ_OPT_STRING, "model", 0, 0,           \
     offsetof(T, m.failure_action),                                                              \
     "a tool call still timing out or without responders after its attempts: model (an is_error result the model sees) or fail (the run fails)"}

/* Checks what the rows' bounds cannot: the prefix and every subject are
 * valid NATS subjects without wildcards, override names are tool names
 * (^[a-zA-Z0-9_-]{1,64}$) and appear once, failure_action is model or fail.
 * AQ_CONFIG with a message naming the option. */
aq_status aq_tool_config_check(const aq_tool_config *cfg, aq_err *err);

/* tool_failure_action = fail. */
bool aq_tool_config_fails_run(const aq_tool_config *cfg);

#endif
