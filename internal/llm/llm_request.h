/* The Anthropic Messages API request body for one task.
 *
 * Pure function, no I/O: the task is turned into the JSON body of
 * `POST /v1/messages`. The caller chooses the model (routing) and max_tokens
 * (the task's or the worker default); everything else comes from the task. */
#ifndef AQ_LLM_REQUEST_H
#define AQ_LLM_REQUEST_H

#include <stdint.h>

#include "agentq/v1/task.pb-c.h"
#include "core/buf.h"
#include "core/status.h"

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

#endif
