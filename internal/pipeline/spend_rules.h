/* The pipeline's rules for spending budgets that are pure arithmetic, apart
 * so the unit tests can hold them to their word (pipeline_spend.c). */
#ifndef AQ_PIPELINE_SPEND_RULES_H
#define AQ_PIPELINE_SPEND_RULES_H

#include <stdint.h>

#include "core/status.h"

/* Redeliveries of a deferred task are spread over this much time after the
 * budget day resets, so a fleet's deferred backlog does not all come back
 * in the same second. */
#define AQ_SPEND_RESET_JITTER_MS 30000
#define AQ_SPEND_MIN_DEFER_MS 1000
/* A refused task waits this long (plus up to half again) before it asks
 * again while calls of its budget are in flight here. */
#define AQ_SPEND_RECHECK_MS 500
/* A refusal is confirmed this many times, this far apart (plus up to half
 * again), before the task is deferred or failed: past the budget module's
 * refusal memory (1 s), so each time the bucket itself is asked. Other
 * workers give their unused leases back when they are refused in turn, and
 * their calls in flight settle below their bounds: without asking again,
 * the fleet stops short of the limit by what those calls held. */
#define AQ_SPEND_CONFIRMS 3
#define AQ_SPEND_CONFIRM_MS 1100

/* What a call that brought no priced answer is charged against the budget,
 * given what the client saw (aq_llm_call_result) and the reserved bound:
 *   - never sent (sends == 0): 0;
 *   - an HTTP error status (4xx, 5xx, 429, 529): 0, the provider bills
 *     answers, not refusals;
 *   - a transport failure after the request went out (timeout, connection
 *     lost, response over the cap) or a 200 whose body did not parse: the
 *     bound, since the provider may have billed it and we cannot tell how much. */
int64_t aq_spend_unanswered_cost(aq_status transport, long http_status, unsigned sends,
                                 int64_t bound_micro);

/* How long to hand back a task whose budget is spent: until the budget day
 * resets, plus `jitter_ms` (0 .. AQ_SPEND_RESET_JITTER_MS, chosen by the
 * caller), at least AQ_SPEND_MIN_DEFER_MS. One hand-back per budget day:
 * each one is a delivery, and MaxDeliver counts deliveries. */
int64_t aq_spend_defer_ms(int64_t now_unix_ms, int64_t reset_unix_ms, int64_t jitter_ms);

#endif
