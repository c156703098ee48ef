/* The Anthropic Messages API request body for one task.
 *
 * Pure function, no I/O: the task is turned into the JSON body of
 * `POST /v1/messages`. The caller chooses the model (routing) and max_tokens
 * (the task's or the worker default); everything else comes from the task. */
#ifndef AQ_LLM_REQUEST_H
#define AQ_LLM_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentq/v1/task.pb-c.h"
#include "core/buf.h"
#include "core/status.h"
#include "task/task_codec.h"

/* Append the JSON body for an already-validated `task` to `out`:
 *   "model", "max_tokens", "system" (if non-empty), "messages" (task->messages
 *   in order as {"role","content":string}; or, with no messages, one user
 *   message holding task->prompt), "temperature" (if present),
 *   "stop_sequences" (if any), "metadata":{"user_id": tenant} (if non-empty).
 *
 * `out`'s cap bounds the body: a body that would not fit fails with AQ_TOO_BIG
 * and a message that says so. On any failure `out` is left as it was.
 * Errors: AQ_INVALID_ARG (NULL task/out, empty model, max_tokens 0),
 * AQ_TASK_INVALID (no prompt and no messages, a string that is not UTF-8),
 * AQ_TOO_BIG, AQ_NOMEM. */
aq_status aq_llm_request_build(const Agentq__V1__Task *task, const char *model, uint32_t max_tokens,
                               aq_buf *out, aq_err *err);

/* The largest body aq_llm_request_build(_opts) writes for a task that
 * passes aq_task_validate under `lim`: every string at its cap and escaped
 * at JSON's worst (a control character is 6 bytes, \u00XX; '"' and '\\'
 * are 2), so up to 6 x max_prompt_bytes, plus model, tenant, stop sequences
 * and the framing of max_messages messages. A buffer with this cap never
 * fails AQ_TOO_BIG on a valid task; being a cap, it costs no memory until
 * the body grows (aq_buf allocates as it is written). Saturates at
 * SIZE_MAX. */
size_t aq_llm_request_body_cap(const aq_task_limits *lim);

/* ---- Token estimates ----
 *
 * One heuristic for everything that needs input tokens before the provider
 * counts them (routing rules, the prompt-caching threshold, budgets):
 * ceil(bytes / 4), the rule of thumb for English text with Claude's
 * tokenizers, and what agentq-sim counts. It is an estimate, not a count:
 * code, non-Latin scripts and short words give more tokens per byte. */
int64_t aq_llm_estimate_tokens(size_t bytes);
/* Estimated input tokens of a task: ceil((system + prompt + every message's
 * content, in bytes) / 4). Roles, JSON and per-message overhead are not
 * counted. NULL task: 0. */
int64_t aq_llm_task_input_tokens(const Agentq__V1__Task *task);

/* ---- Options ---- */

typedef struct aq_llm_request_opts {
    /* Prompt caching: a system prompt of at least this many estimated tokens
     * (aq_llm_estimate_tokens) is sent as one text block marked
     * "cache_control": {"type": "ephemeral"} (the 5-minute cache), so that a
     * repeated system prompt is billed at the cache-read price. 0 = off. The
     * provider ignores a mark on a prompt shorter than its model's minimum
     * (1024 to 4096 tokens): set at least that. */
    uint32_t prompt_cache_min_tokens;
} aq_llm_request_opts;

/* Whether `opts` marks `task`'s system prompt for prompt caching. */
bool aq_llm_request_marks_system(const Agentq__V1__Task *task, const aq_llm_request_opts *opts);

/* aq_llm_request_build with options (`opts` NULL = all off, the same body as
 * aq_llm_request_build). A marked system prompt is
 *   "system":[{"type":"text","text":<system>,"cache_control":{"type":"ephemeral"}}]
 * instead of "system":<system>; the rest of the body is unchanged. */
aq_status aq_llm_request_build_opts(const Agentq__V1__Task *task, const char *model,
                                    uint32_t max_tokens, const aq_llm_request_opts *opts,
                                    aq_buf *out, aq_err *err);

#endif
