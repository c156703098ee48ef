/* The Anthropic Messages API request body for one task, or for one step of an
 * agent run.
 *
 * Pure functions, no I/O: the pieces of a request (aq_llm_request_parts: a
 * task's, or a conversation the agent loop has grown) are turned into the JSON
 * body of `POST /v1/messages`. The caller chooses the model (routing) and
 * max_tokens (the task's or the worker default). */
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
 *   in order as {"role","content":string}, or with "content":[blocks] for a
 *   message with blocks; or, with no messages, one user message holding
 *   task->prompt), "temperature" (if present), "stop_sequences" (if any),
 *   "metadata":{"user_id": tenant} (if non-empty), then "tools" and
 *   "tool_choice" (aq_llm_request_build_parts). A task without blocks and
 *   tools gets the body it got before content blocks existed.
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
 * are 2), so up to 6 x max_prompt_bytes, plus model, tenant, stop sequences,
 * the framing of max_messages messages, max_blocks blocks and max_tools
 * tools, and max_media_bytes base64-encoded. A buffer with this cap never
 * fails AQ_TOO_BIG on a valid task; being a cap, it costs no memory until
 * the body grows (aq_buf allocates as it is written). Saturates at
 * SIZE_MAX. */
size_t aq_llm_request_body_cap(const aq_task_limits *lim);

/* ---- The pieces of a request ----
 *
 * Everything the body is made of, borrowed (nothing is copied or freed). A
 * task's pieces come from aq_llm_request_parts_from_task; the agent loop fills
 * its own (the task's system, tools and options, and the conversation it has
 * grown: the task's messages, then assistant turns and tool results). The
 * messages are expected to be valid (aq_task_validate's rules); the builder
 * still refuses what it cannot encode (bad UTF-8, an input that is not a JSON
 * object) with AQ_TASK_INVALID naming the field. */
typedef struct aq_llm_request_parts {
    const char *model;                          /* required */
    uint32_t max_tokens;                        /* >= 1 */
    const char *system;                         /* NULL or "": none */
    Agentq__V1__Message *const *messages;       /* the conversation, in order */
    size_t n_messages;
    const char *prompt;                         /* with no messages: one user message */
    Agentq__V1__Tool *const *tools;             /* sent as "tools" when n_tools > 0 */
    size_t n_tools;
    const Agentq__V1__ToolChoice *tool_choice;  /* NULL: none sent (the API's auto);
                                                   ignored without tools */
    bool has_temperature;
    float temperature;
    char *const *stop_sequences;
    size_t n_stop_sequences;
    const char *user_id;                        /* metadata.user_id (the tenant); NULL or "": none */
} aq_llm_request_parts;

/* The pieces of `task` (borrowed from it) with the chosen model and max_tokens. */
void aq_llm_request_parts_from_task(const Agentq__V1__Task *task, const char *model,
                                    uint32_t max_tokens, aq_llm_request_parts *out);

/* ---- Token estimates ----
 *
 * One heuristic for everything that needs input tokens before the provider
 * counts them (routing rules, the prompt-caching threshold, budgets):
 * ceil(bytes / 4), the rule of thumb for English text with Claude's
 * tokenizers, and what agentq-sim counts. It is an estimate, not a count:
 * code, non-Latin scripts and short words give more tokens per byte. */
int64_t aq_llm_estimate_tokens(size_t bytes);
/* Estimated input tokens of a task: ceil(bytes / 4) over system, prompt, every
 * message's content and text blocks (tool_use names and inputs, tool_result
 * text and document titles included), every tool's name, description and
 * input_schema; plus AQ_LLM_IMAGE_TOKENS_EST per image and ceil(bytes / 4) of
 * a document's data (AQ_LLM_IMAGE_TOKENS_EST for a document given by URL).
 * Roles, JSON and per-message overhead are not counted. NULL task: 0. */
int64_t aq_llm_task_input_tokens(const Agentq__V1__Task *task);
/* The same estimate for any request's pieces (an agent run's step). */
int64_t aq_llm_request_input_tokens(const aq_llm_request_parts *parts);

/* An image costs about width x height / 750 tokens and the API scales large
 * images down to about 1.15 megapixels: ~1,600 tokens at most. The estimate
 * does not decode images, so it counts every image at that ceiling. */
#define AQ_LLM_IMAGE_TOKENS_EST 1600

/* ---- Options ---- */

typedef struct aq_llm_request_opts {
    /* Prompt caching: a system prompt of at least this many estimated tokens
     * (aq_llm_estimate_tokens) is sent as one text block marked
     * "cache_control": {"type": "ephemeral"} (the 5-minute cache), so that a
     * repeated system prompt is billed at the cache-read price. 0 = off. The
     * provider ignores a mark on a prompt shorter than its model's minimum
     * (1024 to 4096 tokens): set at least that. */
    uint32_t prompt_cache_min_tokens;
    /* Explicit prompt-caching breakpoints (agent runs), AQ_LLM_CACHE_* bits:
     * each marks one block with "cache_control":{"type":"ephemeral"}. There
     * are four bits, so never more than the API's four breakpoints. 0 = none
     * (the bodies of single calls). */
    uint32_t cache_breakpoints;
    /* "stream": true, last in the body (the answer comes as server-sent
     * events: aq_llm_call_opts.stream). false: not sent, the body is the
     * same as without this field. */
    bool stream;
} aq_llm_request_opts;

/* The cached prefix runs tools -> system -> messages. */
#define AQ_LLM_CACHE_TOOLS 0x1u        /* the last tool (caches every tool) */
#define AQ_LLM_CACHE_SYSTEM 0x2u       /* the system prompt, whatever its length */
#define AQ_LLM_CACHE_LAST_MESSAGE 0x4u /* the last block of the last message (the prompt
                                          shorthand: its one message) */
#define AQ_LLM_CACHE_PREV_USER 0x8u    /* the last block of the last user message before
                                          the last message: where the previous step's
                                          LAST_MESSAGE mark was, so that step's cache
                                          entry is read even when this step added more
                                          than the API's 20-block lookback */
/* A plain-string message that gets a mark is sent as one text block
 * [{"type":"text","text":...,"cache_control":...}] (the same tokens). */

/* Where `opts` puts marks in a request of `parts`: the AQ_LLM_CACHE_* bits
 * that apply (SYSTEM also when prompt_cache_min_tokens marks it; TOOLS only
 * with tools; PREV_USER only when such a message exists). */
uint32_t aq_llm_request_cache_marks(const aq_llm_request_parts *parts,
                                    const aq_llm_request_opts *opts);

/* Whether `opts` marks `task`'s system prompt for prompt caching. */
bool aq_llm_request_marks_system(const Agentq__V1__Task *task, const aq_llm_request_opts *opts);

/* aq_llm_request_build with options (`opts` NULL = all off, the same body as
 * aq_llm_request_build). A marked system prompt is
 *   "system":[{"type":"text","text":<system>,"cache_control":{"type":"ephemeral"}}]
 * instead of "system":<system>; the rest of the body is unchanged. */
aq_status aq_llm_request_build_opts(const Agentq__V1__Task *task, const char *model,
                                    uint32_t max_tokens, const aq_llm_request_opts *opts,
                                    aq_buf *out, aq_err *err);

/* The body for any request's pieces (what aq_llm_request_build_opts does
 * with a task's). After "metadata" come, when there are tools:
 *   "tools":[{"name","description" (if non-empty),"input_schema":<parsed>}],
 *   "tool_choice": {"type":"auto"|"any"|"none"} or {"type":"tool","name"},
 *                  with "disable_parallel_tool_use":true when set (not for
 *                  none); omitted for auto without disable_parallel_tool_use.
 * A message with blocks has "content":[...] in the API's shapes: text,
 * image/document with "source" {"type":"base64","media_type","data"} (the
 * raw bytes base64-encoded), {"type":"text","media_type":"text/plain","data"}
 * for a plain-text document, or {"type":"url","url"}; tool_use with "input"
 * (the parsed input_json), tool_result with "content" (when it has blocks)
 * and "is_error":true (when set). Same errors and buffer rules as
 * aq_llm_request_build. */
aq_status aq_llm_request_build_parts(const aq_llm_request_parts *parts,
                                     const aq_llm_request_opts *opts, aq_buf *out, aq_err *err);

#endif
