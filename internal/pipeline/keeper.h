/* The worker's housekeeping thread: the release passes of parked tasks
 * (pipeline/parking.h) and the ghost sweep (pipeline/sweep.h). Both block
 * on JetStream round trips, so they run here, never on the event loop.
 *
 *   release: when the worker starts (a budget it now has may be higher than
 *            when its tasks were parked; or the fleet was down at 00:00),
 *            at 00:00 UTC + up to 30 s of jitter, and again 5 minutes later
 *            (tasks parked by a worker whose clock was behind); and when a
 *            check every AQ_KEEPER_CHECK_MS finds the last task parked for
 *            one of its budgets releasable (parked by a worker with a lower
 *            limit, or on an earlier day). Only when the deferred stream
 *            exists.
 *   sweep:   5 s after start, then every AQ_KEEPER_SWEEP_MS.
 * Every step is idempotent: all workers run it. */
#ifndef AQ_PIPELINE_KEEPER_H
#define AQ_PIPELINE_KEEPER_H

#include <nats/nats.h>
#include <stdbool.h>

#include "budget/budget.h"
#include "core/status.h"
#include "queue/queue_config.h"

#define AQ_KEEPER_SWEEP_MS 15000
#define AQ_KEEPER_SWEEP_FIRST_MS 5000
#define AQ_KEEPER_SWEEP_MAX 1000      /* messages examined per sweep */
#define AQ_KEEPER_RELEASE_AGAIN_MS (5 * 60 * 1000)
#define AQ_KEEPER_RELEASE_JITTER_MS 30000
#define AQ_KEEPER_CHECK_MS 30000

typedef struct aq_keeper aq_keeper;

/* `q` and `spec` (may be NULL: no budgets) must outlive the keeper.
 * `release` false: no release passes (no deferred stream). */
aq_status aq_keeper_start(jsCtx *js, const aq_queue_config *q, const aq_budget_spec *spec,
                          bool release, aq_keeper **out, aq_err *err);
/* Stop and join (a pass in progress stops at its next message). Accepts NULL. */
void aq_keeper_destroy(aq_keeper *k);

#endif
