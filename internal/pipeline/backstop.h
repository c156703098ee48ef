/* The MAX_DELIVERIES backstop.
 *
 * A task that kills its worker every time never reaches the pipeline's own
 * dead-lettering. After MaxDeliver deliveries the server stops delivering it
 * and publishes an advisory, which the advisory stream keeps (queue_setup).
 * Every worker runs a backstop: it pulls those advisories, fetches the task
 * by stream sequence, dead-letters it with class max_deliveries, writes a
 * FAILED result, removes it from the task stream, and only then acks the
 * advisory. Each step is idempotent, so a crash part-way only repeats work.
 * It runs on its own thread and never touches the event loop. */
#ifndef AQ_PIPELINE_BACKSTOP_H
#define AQ_PIPELINE_BACKSTOP_H

#include <nats/nats.h>
#include <stdint.h>

#include "core/status.h"
#include "queue/queue_config.h"

typedef struct aq_backstop aq_backstop;

/* `q` and `worker` must outlive the backstop. */
aq_status aq_backstop_start(jsCtx *js, const aq_queue_config *q, const char *worker,
                            aq_backstop **out, aq_err *err);
/* Stop pulling advisories (returns within about a second). Accepts NULL. */
void aq_backstop_stop(aq_backstop *b);
void aq_backstop_destroy(aq_backstop *b);

#endif
