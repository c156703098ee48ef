/* Walking a stream's messages without a consumer: a direct get of the next
 * message on a subject at or after a sequence (the stream needs AllowDirect,
 * which `agentq init` sets on the task and deferred streams). One round
 * trip per message, gaps skipped by the server. For threads that may block
 * (the ghost sweep, the release of parked tasks). */
#ifndef AQ_QUEUE_SCAN_H
#define AQ_QUEUE_SCAN_H

#include <nats/nats.h>
#include <stdint.h>

#include "core/status.h"

/* The first message of the stream with sequence >= `from_seq`: *out (free
 * with natsMsg_Destroy) and *seq. AQ_NOT_FOUND when there is none.
 *
 * Every message, whatever its subject: the server's per-subject index is
 * not to be trusted here. After nats-server 2.9.10 is killed with SIGKILL,
 * acked messages of a work-queue stream come back that a get by sequence
 * finds but a next-by-subject search with a wildcard such as
 * "agentq.tasks.>" skips (seen in chaos.nats_restart: 1 of 415 such
 * messages); the search for ">" walks the stored messages themselves. */
aq_status aq_queue_scan_next(jsCtx *js, const char *stream, uint64_t from_seq, int64_t timeout_ms,
                             natsMsg **out, uint64_t *seq, aq_err *err);

#endif
