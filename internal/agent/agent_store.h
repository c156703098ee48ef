/* Run checkpoints in the KV bucket agentq-runs, key = task id, with
 * compare-and-set on the key's revision so that two deliveries of one task
 * can never fork a run: each save names the revision it was derived from,
 * and a save that finds another revision fails with AQ_WRITE_CONFLICT
 * ("another delivery advanced this run": reload, and go on from what is
 * stored).
 *
 * A save is a JetStream publish to `$KV.<bucket>.<task id>` carrying
 * `Nats-Expected-Last-Subject-Sequence: <revision>` (0: the key must have no
 * entry, what kvStore_Create checks; N: what kvStore_Update(last = N)
 * checks), the same compare-and-set the pipeline uses for Results. nats.c's
 * kvStore_Update does not report which JetStream error it got, so the
 * conflict could not be told from other failures through it.
 *
 * Two ways to do each: asynchronously on the worker's event loop, with the
 * queue's pipelined primitives (aq_kv_getter for reads, aq_publisher for
 * writes: completions on the loop thread), or synchronously (the CLI,
 * tests, a thread that may block).
 *
 * The pipeline saves twice per step: after the model answer, and after the
 * batch of tool results (one write however many tools ran). It must wait for
 * a save's completion before the next save of the same run (the next one
 * names the revision the completion reports). It may save more often (for
 * example when some results are in and others take long): a checkpoint with
 * some results known repeats only the calls without one. */
#ifndef AQ_AGENT_AGENT_STORE_H
#define AQ_AGENT_AGENT_STORE_H

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent_run.h"
#include "core/status.h"
#include "queue/queue_kvread.h"
#include "queue/queue_publish.h"

/* ---- asynchronous (the worker's loop) ---- */

/* Decode a completed read of the run's key (aq_kv_getter_get with the task
 * id on a getter of the runs bucket). AQ_OK: *out is the stored run.
 * AQ_NOT_FOUND: no checkpoint (or a deleted one): a new run; *rev is still
 * set, to the revision the first save must name (0, or the delete marker's).
 * Other statuses: the read failed (r->err) or the value does not decode. */
aq_status aq_run_from_read(const aq_kv_read *rd, size_t cap, aq_run **out, uint64_t *rev,
                           aq_err *err);

/* Encode the run now and publish it expecting revision `rev`. `done` runs
 * once on the loop thread: AQ_OK with seq = the new revision,
 * AQ_WRITE_CONFLICT when the key is no longer at `rev`, else a failure
 * (AQ_TIMEOUT: the write may or may not have happened: read before
 * deciding). On an error return `done` is not called (AQ_TOO_BIG: the
 * checkpoint is over `cap`). The run may change as soon as this returns. */
aq_status aq_run_save_async(aq_publisher *pub, const char *bucket, const aq_run *r, uint64_t rev,
                            size_t cap, aq_publish_fn done, void *ctx, aq_err *err);

/* ---- synchronous ---- */

/* Load the checkpoint of `task_id`: as aq_run_from_read. */
aq_status aq_run_load(jsCtx *js, const char *bucket, const char *task_id, int64_t timeout_ms,
                      size_t cap, aq_run **out, uint64_t *rev, aq_err *err);
/* Save expecting `rev`; *new_rev (may be NULL) = the revision written. */
aq_status aq_run_save(jsCtx *js, const char *bucket, const aq_run *r, uint64_t rev, size_t cap,
                      uint64_t *new_rev, aq_err *err);

/* The CAS write both use, for any bucket and key (sessions use it too):
 * a message to `$KV.<bucket>.<key>` expecting revision `rev`. */
aq_status aq_kv_cas_msg(const char *bucket, const char *key, const void *data, size_t len,
                        uint64_t rev, natsMsg **out, aq_err *err);
/* Publish it and wait for the acknowledgement (takes `m`). */
aq_status aq_kv_cas_publish(jsCtx *js, natsMsg *m, uint64_t *new_rev, aq_err *err);

#endif
