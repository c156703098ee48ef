/* JSON views of the wire contract, for the CLI and for people: the JSONL that
 * `agentq submit` reads, and the Result that `agentq get` prints. Field names
 * are the .proto names. */
#ifndef AQ_TASK_JSON_H
#define AQ_TASK_JSON_H

#include <jansson.h>

#include "task/task_codec.h"

/* What a packed task is filed under. */
typedef struct aq_task_ref {
    char id[AQ_TASK_ID_MAX + 1];
    char type[AQ_TASK_TYPE_MAX + 1];
} aq_task_ref;

/* Validate a JSON task object (unknown fields are an error) and pack it as
 * agentq.v1.Task into `out`. created_unix_ms defaults to `now_ms`. */
aq_status aq_task_json_pack(json_t *obj, const aq_task_limits *lim, int64_t now_ms, aq_buf *out,
                            aq_task_ref *ref, aq_err *err);

/* New references; NULL only when out of memory. */
json_t *aq_task_to_json(const Agentq__V1__Task *task);
json_t *aq_result_to_json(const Agentq__V1__Result *res);

#endif
