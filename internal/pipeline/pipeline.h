/* The worker's pipeline: the one place that strings the stages together.
 *
 *   fetch -> decode+validate -> admit: result already stored (redeliveries)?
 *   -> same id in flight here? -> route model -> response cache (hit, or
 *   share an identical request's call) -> rate budget -> LLM call -> classify
 *   -> retry or defer in place | store Result (compare-and-set) | dead letter
 *   -> settle (ack, term or hand back)
 *
 * Everything after fetch runs on one libevent loop; fetching runs on its own
 * thread and hands messages over through a mailbox. */
#ifndef AQ_PIPELINE_H
#define AQ_PIPELINE_H

#include <stdint.h>

#include "core/status.h"
#include "pipeline/worker_config.h"

struct event_base;
typedef struct aq_pipeline aq_pipeline;

typedef struct aq_pipeline_stats {
    uint64_t fetched, completed, failed, retried, deferred, dead_lettered;
    uint64_t already_done; /* settled from a stored result, without a call */
    uint64_t coalesced;    /* waited for another delivery of the same id */
    uint64_t budget_waits; /* calls that had to wait for rate budget */
    uint64_t in_flight;
} aq_pipeline_stats;

/* Connects to NATS, checks the JetStream objects, starts fetching. `cfg`
 * must outlive the pipeline. The loop must have been created after
 * evthread_use_pthreads(). */
aq_status aq_pipeline_start(struct event_base *base, const aq_worker_config *cfg,
                            aq_pipeline **out, aq_err *err);

/* Graceful shutdown: stop fetching, let calls finish within shutdown_grace,
 * settle every message, then leave the loop. A second call cuts the grace
 * short (calls still running are nak'ed for redelivery elsewhere). */
void aq_pipeline_shutdown(aq_pipeline *p);
struct aq_worker_metrics;
void aq_pipeline_set_metrics(aq_pipeline *p, struct aq_worker_metrics *wm);

void aq_pipeline_get_stats(const aq_pipeline *p, aq_pipeline_stats *out);

/* The configured daily budgets with this worker's view of what is left
 * today (limit minus what the fleet has leased, plus this worker's unused
 * lease), in micro-dollars; type "" is a tenant's own budget. For the fleet
 * status. Loop thread. Nothing when no budgets are set. */
typedef void (*aq_pipeline_budget_fn)(void *ctx, const char *tenant, const char *type,
                                      int64_t limit_micro, int64_t remaining_micro);
void aq_pipeline_each_budget(const aq_pipeline *p, aq_pipeline_budget_fn fn, void *ctx);

/* Closes the connection and frees everything. Accepts NULL. */
void aq_pipeline_destroy(aq_pipeline *p);

#endif
