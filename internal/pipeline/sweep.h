/* The ghost sweep.
 *
 * After nats-server 2.9.10 is killed with SIGKILL, a few tasks that were
 * already acked can come back in the work-queue task stream from its file
 * store, behind the consumer's ack floor: the consumer never delivers them
 * again and they stay in the stream for good (`tasks_in_stream` above 0).
 * A sweep finds the messages of the task stream whose sequence is at or
 * below the consumer's ack floor and deletes each one whose task has a
 * Result stored (COMPLETED, or FAILED: a FAILED result is written only after
 * the dead letter). A message without a stored Result is never deleted: it
 * is reported to the caller (which logs it) and left alone.
 *
 * Cheap when there is nothing to do (one stream info, one consumer info);
 * at most `max_examine` messages per run, continuing from *cursor on the
 * next run. Idempotent: workers may sweep at the same time. Synchronous: for
 * a thread that may block. */
#ifndef AQ_PIPELINE_SWEEP_H
#define AQ_PIPELINE_SWEEP_H

#include <nats/nats.h>
#include <stdint.h>

#include "core/status.h"
#include "queue/queue_config.h"

typedef struct aq_sweep_report {
    uint64_t ack_floor;  /* the consumer's, in stream sequence */
    uint64_t examined;   /* messages at or below the floor looked at */
    uint64_t deleted;    /* of them, removed (their Result is stored) */
    uint64_t kept;       /* of them, left: no Result stored (each told to `kept`) */
} aq_sweep_report;

/* Told about each message left in place: its sequence and task id ("" when
 * the payload does not decode to a valid id). */
typedef void (*aq_sweep_kept_fn)(void *ctx, uint64_t seq, const char *id);

/* One sweep of q->task_stream behind q->consumer's ack floor. *cursor (0 at
 * first) is where the next run goes on. */
aq_status aq_sweep_run(jsCtx *js, const aq_queue_config *q, uint64_t max_examine, uint64_t *cursor,
                       aq_sweep_kept_fn kept, void *ctx, aq_sweep_report *out, aq_err *err);

#endif
