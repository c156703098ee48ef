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

/* Size caps on everything a publisher controls. */
typedef struct aq_task_limits {
    size_t max_payload_bytes; /* the encoded Task */
    size_t max_prompt_bytes;  /* system + prompt + every message's content */
    uint32_t max_tokens_cap;  /* a task may not ask for more */
    size_t max_messages;
    size_t max_stop_sequences;
    size_t max_metadata;
    size_t max_field_bytes;   /* tenant, model, metadata keys/values, stop sequences */
} aq_task_limits;

void aq_task_limits_default(aq_task_limits *lim);

/* Ids are KV keys and Nats-Msg-Id values: 1..128 of [A-Za-z0-9_=.-], not
 * starting or ending with '.', no "..". */
bool aq_task_id_valid(const char *id);
/* Types are subject tokens: 1..64 of [A-Za-z0-9_-]. */
bool aq_task_type_valid(const char *type);

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
/* Check every rule of the contract: AQ_TASK_INVALID, or AQ_PROMPT_TOO_LARGE. */
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

#endif
