/* The worker's side of fleet status: every interval, on the worker's event
 * loop, ask the caller to fill a snapshot and publish it (core NATS, fire and
 * forget: a lost snapshot is replaced by the next one, so nothing is stored
 * in JetStream) on `<subject_prefix>.<worker token>`. `agentq status`
 * subscribes to `<subject_prefix>.>`.
 *
 * Threading: start, destroy and the fill callback all run on the thread of
 * `base` (the worker's loop), so the callback may read the pipeline's state
 * without locks. natsConnection_Publish only copies into nats.c's buffer.
 */
#ifndef AQ_FLEET_REPORTER_H
#define AQ_FLEET_REPORTER_H

#include <nats/nats.h>
#include <stdint.h>

#include "core/status.h"
#include "fleet/fleet_snapshot.h"

struct event_base;
typedef struct aq_fleet_reporter aq_fleet_reporter;

#define AQ_FLEET_INTERVAL_MIN_MS 100 /* the CLI option's own minimum is 1 s */
#define AQ_FLEET_FINAL_FLUSH_MS 500  /* destroy waits this long for the last snapshot to leave */

/* Fill the figures of `snap`. It arrives initialised (aq_fleet_snapshot_init)
 * with the identity fields set; the reporter sets worker, pid, started_ms,
 * interval_ms, sent_ms, stopping and v again after the call, so the callback
 * cannot get them wrong. `version` may be overwritten (it defaults to this
 * build's agentq version). */
typedef void (*aq_fleet_fill_fn)(void *ctx, aq_fleet_snapshot *snap);

/* Publish a first snapshot as soon as the loop runs, then one every
 * `interval_ms`. `worker` is the name shown by `agentq status` (1 to
 * AQ_FLEET_WORKER_MAX bytes of UTF-8); its subject token replaces every byte
 * outside [A-Za-z0-9_-] by '_'. The reporter borrows `nc` (it must outlive
 * the reporter) and copies the strings. */
aq_status aq_fleet_reporter_start(struct event_base *base, natsConnection *nc,
                                  const char *subject_prefix, const char *worker,
                                  int64_t interval_ms, aq_fleet_fill_fn fill, void *ctx,
                                  aq_fleet_reporter **out, aq_err *err);

/* How publishing went, for the caller's log or metrics: snapshots published,
 * snapshots that failed (encode or publish), and the last failure (status
 * AQ_OK when none). */
void aq_fleet_reporter_stats(const aq_fleet_reporter *r, uint64_t *published, uint64_t *failed,
                             aq_err *last_err);

/* Stop the timer, publish a last snapshot marked `stopping` (so `agentq
 * status` drops the worker at once instead of after three intervals), wait
 * up to AQ_FLEET_FINAL_FLUSH_MS for it to reach the server, free. Call it
 * before the connection is drained or closed. Accepts NULL. */
void aq_fleet_reporter_destroy(aq_fleet_reporter *r);

#endif
