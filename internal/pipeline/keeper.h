/* The worker's housekeeping thread: the release passes of parked tasks
 * (pipeline/parking.h) and the ghost sweep (pipeline/sweep.h). Both block
 * on JetStream round trips, so they run here, never on the event loop.
 *
 *   release: a check when the worker starts and every AQ_KEEPER_CHECK_MS
 *            (plus up to a quarter of it) runs a release pass when
 *            aq_park_due says one is due: the oldest parked task is from
 *            an earlier budget day (so within about 40 s after 00:00 UTC),
 *            or tasks were parked under a lower limit than one of this
 *            worker's budgets (raised). Only when the deferred stream exists.
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
#define AQ_KEEPER_CHECK_MS 30000

typedef struct aq_keeper aq_keeper;

/* `q` and `spec` (may be NULL: no budgets) must outlive the keeper.
 * `release` false: no release passes (no deferred stream). */
aq_status aq_keeper_start(jsCtx *js, const aq_queue_config *q, const aq_budget_spec *spec,
                          bool release, aq_keeper **out, aq_err *err);
/* Stop and join (a pass in progress stops at its next message). Accepts NULL. */
void aq_keeper_destroy(aq_keeper *k);

#endif
