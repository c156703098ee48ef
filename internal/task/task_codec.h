/* Decoding and validating tasks, encoding results: the only code that knows
 * the wire contract's rules beyond what protobuf itself checks. */
#ifndef AQ_TASK_CODEC_H
#define AQ_TASK_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentq/v1/result.pb-c.h"
#include "agentq/v1/task.pb-c.h"
#include "core/buf.h"
#include "core/status.h"
#include "core/text.h" /* aq_utf8_valid, for callers that check text */

#define AQ_TASK_ID_MAX 128
#define AQ_TASK_TYPE_MAX 64
#define AQ_TASK_TOOL_NAME_MAX 64   /* the API's ^[a-zA-Z0-9_-]{1,64}$ */
#define AQ_TASK_TOOL_USE_ID_MAX 128 /* ^[a-zA-Z0-9_-]{1,128}$ (the API's "toolu_..." ids) */
#define AQ_TASK_URL_MAX 8192       /* an image's or a document's URL */

/* A tool's input_schema beyond the structural checks of aq_task_validate (a
 * JSON object whose "type" is "object"): the full JSON Schema check, done by
 * internal/tool's validator. aq_task_validate calls it for every tool when it
 * is set; the message it leaves in `err` is prefixed with the tool's path.
 * The task module does not depend on the validator: its caller wires it. */
typedef aq_status (*aq_task_schema_check_fn)(const char *schema_json, aq_err *err);

/* Size caps on everything a publisher controls. */
typedef struct aq_task_limits {
    size_t max_payload_bytes; /* the encoded Task */
    size_t max_prompt_bytes;  /* system + prompt + every message's text: content, text blocks,
                                 tool_use names and inputs, tool_result text, document titles,
                                 and every tool's name, description and input_schema */
    size_t max_media_bytes;   /* image and document data (raw bytes; base64 sends 4/3 of it) */
    uint32_t max_tokens_cap;  /* a task may not ask for more */
    size_t max_messages;
    size_t max_blocks;        /* content blocks of the whole task, tool_result contents included */
    size_t max_stop_sequences;
    size_t max_metadata;
    size_t max_field_bytes;   /* tenant, model, metadata keys/values, stop sequences,
                                 document titles */
    size_t max_tools;
    size_t max_tool_schema_bytes; /* one tool's description; one tool's input_schema_json */
    uint32_t max_steps_cap;       /* a task's max_steps may not be higher */
    uint32_t max_tool_calls_cap;  /* a task's max_tool_calls may not be higher */
    aq_task_schema_check_fn check_tool_schema; /* NULL: structural checks only */
} aq_task_limits;

/* The defaults of the caps above (the worker's configuration can change them). */
#define AQ_TASK_DEFAULT_MAX_MEDIA_BYTES (4u << 20)
#define AQ_TASK_DEFAULT_MAX_BLOCKS 10000u
#define AQ_TASK_DEFAULT_MAX_TOOLS 64u
#define AQ_TASK_DEFAULT_MAX_TOOL_SCHEMA_BYTES (64u << 10)
#define AQ_TASK_DEFAULT_MAX_STEPS_CAP 100u
#define AQ_TASK_DEFAULT_MAX_TOOL_CALLS_CAP 1000u

void aq_task_limits_default(aq_task_limits *lim);

/* Ids are KV keys and Nats-Msg-Id values: 1..128 of [A-Za-z0-9_=.-], not
 * starting or ending with '.', no "..". */
bool aq_task_id_valid(const char *id);
/* Types are subject tokens: 1..64 of [A-Za-z0-9_-]. */
bool aq_task_type_valid(const char *type);
/* Tool names: the API's ^[a-zA-Z0-9_-]{1,64}$. */
bool aq_task_tool_name_valid(const char *name);
/* The media types the API takes inline: images image/jpeg, image/png,
 * image/gif, image/webp; documents application/pdf, text/plain. */
bool aq_task_image_type_valid(const char *media_type);
bool aq_task_document_type_valid(const char *media_type);

/* Unpack the protobuf: AQ_TASK_DECODE when it does not decode (or nests too
 * deep: task_wire.h), AQ_TOO_BIG over the payload cap, AQ_TASK_INVALID when
 * a string field holds a NUL byte (the message names the field: protobuf-c
 * would have cut the string there). *out is written only on AQ_OK. */
aq_status aq_task_unpack(const void *data, size_t len, const aq_task_limits *lim,
                         Agentq__V1__Task **out, aq_err *err);
/* A task that carries only an id, freed by aq_task_free like an unpacked
 * one: what a FAILED result is written from when the payload was refused
 * before decoding but its Nats-Msg-Id is a valid id. */
aq_status aq_task_new_stub(const char *id, Agentq__V1__Task **out, aq_err *err);
/* The subject a task arrived on must be <prefix>.<its type>: the subject is
 * what NATS permissions grant a publisher, so the type (routing, budgets,
 * metrics) may not say otherwise. AQ_TASK_INVALID naming both. */
aq_status aq_task_check_subject(const Agentq__V1__Task *task, const char *subject,
                                const char *prefix, aq_err *err);
/* Check every rule of the contract: AQ_TASK_INVALID, or AQ_PROMPT_TOO_LARGE.
 * Messages: exactly one of content and blocks; blocks follow the Messages
 * API's rules (tool_use only in assistant messages; tool_result only in user
 * messages, before any other block, each answering a tool_use of the
 * previous message, and every tool_use of an assistant message answered by
 * the next one; image and document only in user messages and tool results).
 * Tools, tool_choice, ceiling_action, session_id, max_steps and
 * max_tool_calls are checked against `lim`. Every message names the field,
 * e.g. messages[2].blocks[0].tool_result.tool_use_id. */
aq_status aq_task_validate(const Agentq__V1__Task *task, const aq_task_limits *lim, aq_err *err);
void aq_task_free(Agentq__V1__Task *task);

/* Encode a task (publishers, the CLI, tests). */
aq_status aq_task_pack(const Agentq__V1__Task *task, aq_buf *out, aq_err *err);

aq_status aq_result_pack(const Agentq__V1__Result *res, aq_buf *out, aq_err *err);
aq_status aq_result_unpack(const void *data, size_t len, Agentq__V1__Result **out, aq_err *err);
void aq_result_free(Agentq__V1__Result *res);
/* The status and stream_seq of a packed Result; false when it does not decode. */
bool aq_result_peek(const void *data, size_t len, Agentq__V1__Status *status, uint64_t *stream_seq);

const char *aq_result_status_name(Agentq__V1__Status st);

/* Cache policies by their short names, used in JSON and on the command line:
 * "default", "opt-in", "bypass", "refresh". The name of an unknown value is
 * "unknown". Parsing also accepts the protobuf enum names
 * ("CACHE_POLICY_OPT_IN", ...: what protobuf's JSON mapping writes); false
 * for anything else, `out` untouched. */
const char *aq_task_cache_policy_name(Agentq__V1__CachePolicy p);
bool aq_task_cache_policy_parse(const char *s, Agentq__V1__CachePolicy *out);

/* The same for tool_choice.type ("auto" for UNSPECIFIED, "any", "tool",
 * "none") and ceiling_action ("default" for UNSPECIFIED, "fail", "final"). */
const char *aq_task_tool_choice_name(Agentq__V1__ToolChoiceType t);
bool aq_task_tool_choice_parse(const char *s, Agentq__V1__ToolChoiceType *out);
const char *aq_task_ceiling_action_name(Agentq__V1__CeilingAction a);
bool aq_task_ceiling_action_parse(const char *s, Agentq__V1__CeilingAction *out);

#endif
