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

/* The first message on `subject` (wildcards allowed) with sequence >=
 * `from_seq`: *out (free with natsMsg_Destroy) and *seq. AQ_NOT_FOUND when
 * there is none. */
aq_status aq_queue_scan_next(jsCtx *js, const char *stream, const char *subject, uint64_t from_seq,
                             int64_t timeout_ms, natsMsg **out, uint64_t *seq, aq_err *err);

#endif
