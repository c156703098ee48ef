/* A dead letter: the original task bytes on <dlq_subjects>.<type>, with the
 * failure in Agentq-* headers. Built in one place for the pipeline and the
 * MAX_DELIVERIES backstop, so both write exactly the same thing. */
#ifndef AQ_PIPELINE_DEAD_LETTER_H
#define AQ_PIPELINE_DEAD_LETTER_H

#include <nats/nats.h>
#include <stdint.h>

#include "core/status.h"
#include "queue/queue_config.h"

typedef struct aq_dead_letter {
    const void *payload; /* the original task message's data, as received */
    int payload_len;
    const char *type;    /* NULL or not a valid type: "_invalid" */
    const char *task_id; /* NULL when the task had no valid id */
    aq_status status;    /* its class goes in Agentq-Error-Class */
    const char *error;
    uint64_t attempts;
    uint64_t stream_seq; /* of the original in the task stream */
    const char *worker;
} aq_dead_letter;

/* The message to publish, and its Nats-Msg-Id ("<task stream>-<seq>": one
 * dead letter per original message however often the publish repeats). */
aq_status aq_dead_letter_msg(const aq_queue_config *q, const aq_dead_letter *dl, natsMsg **out,
                             char *msg_id, size_t msg_id_size, aq_err *err);

#endif
