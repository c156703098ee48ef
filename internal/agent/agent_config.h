/* Agent-run options shared by the worker (which runs agents and writes the
 * buckets) and `agentq init` / `agentq run show` (which create and read
 * them): one definition, so they cannot disagree on names or defaults. */
#ifndef AQ_AGENT_AGENT_CONFIG_H
#define AQ_AGENT_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "core/config.h"

#define AQ_AGENT_DEFAULT_RUNS_BUCKET "agentq-runs"
#define AQ_AGENT_DEFAULT_SESSION_BUCKET "agentq-sessions"

/* Rows for a struct T with `char *bucket`, `int64_t ttl_ms`, `int64_t max_bytes`
 * (the runs bucket: a run's checkpoint, kept after the run as its transcript). */
#define AQ_AGENT_RUNS_OPTIONS(T, bucket, ttl_ms, max_bytes)                                      \
    {"runs_bucket", "AGENTQ_RUNS_BUCKET", AQ_OPT_STRING, AQ_AGENT_DEFAULT_RUNS_BUCKET, 0, 0,     \
     offsetof(T, bucket), "KV bucket of agent run checkpoints and transcripts (key: task id)"},  \
    {"runs_ttl", "AGENTQ_RUNS_TTL", AQ_OPT_DURATION, "168h", 60000, 31536000000.0,               \
     offsetof(T, ttl_ms), "how long a run's checkpoint and transcript are kept (set by agentq init)"}, \
    {"runs_max_bytes", "AGENTQ_RUNS_MAX_BYTES", AQ_OPT_BYTES, "1MiB", 4096, 67108864,            \
     offsetof(T, max_bytes), "largest run checkpoint (the whole transcript); a run over it fails"}

/* Rows for the sessions bucket: history and leases. */
#define AQ_AGENT_SESSION_OPTIONS(T, bucket, ttl_ms, max_bytes)                                   \
    {"session_bucket", "AGENTQ_SESSION_BUCKET", AQ_OPT_STRING, AQ_AGENT_DEFAULT_SESSION_BUCKET,  \
     0, 0, offsetof(T, bucket), "KV bucket of session histories and leases"},                    \
    {"session_ttl", "AGENTQ_SESSION_TTL", AQ_OPT_DURATION, "720h", 60000, 31536000000.0,         \
     offsetof(T, ttl_ms), "how long a session is kept after its last turn (set by agentq init)"}, \
    {"session_max_bytes", "AGENTQ_SESSION_MAX_BYTES", AQ_OPT_BYTES, "1MiB", 4096, 67108864,      \
     offsetof(T, max_bytes), "largest stored session history; the oldest turns are dropped to fit"}

/* Rows the worker alone needs (the coordinator adds them to its table). */
#define AQ_AGENT_SESSION_WORKER_OPTIONS(T, context_tokens, lease_ttl_ms)                         \
    {"session_context_tokens", "AGENTQ_SESSION_CONTEXT_TOKENS", AQ_OPT_INT, "50000", 0,          \
     10000000, offsetof(T, context_tokens),                                                      \
     "session history sent to the model, in estimated tokens (newest turns first; 0: none)"},   \
    {"session_lease_ttl", "AGENTQ_SESSION_LEASE_TTL", AQ_OPT_DURATION, "5m", 1000, 86400000,     \
     offsetof(T, lease_ttl_ms),                                                                  \
     "a session's lease (one task at a time) may be taken over this long after its last renewal"}

/* The run limits' defaults and caps (aq_run_defaults); `action` is a char *. */
#define AQ_AGENT_LIMIT_OPTIONS(T, steps, steps_cap, calls, calls_cap, action)              \
    {"agent_max_steps", "AGENTQ_AGENT_MAX_STEPS", AQ_OPT_INT, "25", 1, 10000,                    \
     offsetof(T, steps), "model calls in an agent run when the task does not say"},              \
    {"agent_max_steps_cap", "AGENTQ_AGENT_MAX_STEPS_CAP", AQ_OPT_INT, "100", 1, 10000,           \
     offsetof(T, steps_cap), "most model calls a task may ask for"},                             \
    {"agent_max_tool_calls", "AGENTQ_AGENT_MAX_TOOL_CALLS", AQ_OPT_INT, "50", 0, 100000,         \
     offsetof(T, calls), "tool calls in an agent run when the task does not say"},               \
    {"agent_max_tool_calls_cap", "AGENTQ_AGENT_MAX_TOOL_CALLS_CAP", AQ_OPT_INT, "200", 0, 100000, \
     offsetof(T, calls_cap), "most tool calls a task may ask for"},                              \
    {"agent_ceiling_action", "AGENTQ_AGENT_CEILING_ACTION", AQ_OPT_STRING, "fail", 0, 0,         \
     offsetof(T, action),                                                                        \
     "at a ceiling: fail (FAILED, step_limit) or final (one last call without tools)"}

/* "fail" or "final" (aq_run_defaults.ceiling_final); false for anything else. */
static inline bool aq_agent_ceiling_action_parse(const char *s, bool *final)
{
    if (s && strcmp(s, "fail") == 0)
        *final = false;
    else if (s && strcmp(s, "final") == 0)
        *final = true;
    else
        return false;
    return true;
}

#endif
