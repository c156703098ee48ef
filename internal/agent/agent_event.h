/* Progress events of agent runs: one small JSON object per step, published
 * on core NATS `agentq.events.<task id>` (nothing stored: a watcher that is
 * not subscribed misses it, and `agentq watch` ends on the Result anyway).
 *
 *   {"task_id":"t1","step":2,"phase":"tools_pending","model":"claude-...",
 *    "stop_reason":"tool_use","usage":{...},"cost_micro_usd":1234,
 *    "latency_ms":812,"cache_hit":false,"final_at_ceiling":false,
 *    "tool_calls":[{"id":"toolu_1","name":"search","outcome":"ok",
 *                   "latency_ms":40,"attempts":1}]}
 *
 * The pipeline publishes a step's event once its tool calls are over (or
 * right after the answer when it asked for none), so the tool outcomes are in
 * it; "phase" is the run's phase at that moment. */
#ifndef AQ_AGENT_AGENT_EVENT_H
#define AQ_AGENT_AGENT_EVENT_H

#include <jansson.h>
#include <nats/nats.h>
#include <stdint.h>

#include "agent/agent_run.h"
#include "core/status.h"

#define AQ_AGENT_EVENTS_PREFIX "agentq.events"
/* An event is a few hundred bytes; tool calls beyond this many are counted,
 * not listed ("more_tool_calls"). */
#define AQ_AGENT_EVENT_MAX_TOOL_CALLS 32

/* The event of step `step` (1-based) of the run; NULL when the run has no
 * such step or out of memory. */
json_t *aq_agent_step_event(const aq_run *r, uint32_t step);

/* Publish `ev` (not consumed) on `<prefix>.<task id>`; `prefix` NULL =
 * AQ_AGENT_EVENTS_PREFIX. Core NATS: no acknowledgement, nothing stored. */
aq_status aq_agent_event_publish(natsConnection *nc, const char *prefix, const char *task_id,
                                 const json_t *ev, aq_err *err);

#endif
