/* Runs and their pieces as JSON (jansson), for `agentq run show --json`,
 * `agentq session show --json` and the progress events. Content blocks take
 * the Messages API's shape ({"type":"text","text":...}, {"type":"tool_use",
 * "id","name","input"}, {"type":"tool_result","tool_use_id","content",
 * "is_error"}, image and document with their source; inline bytes are shown
 * as their size, not their content). Every function returns a new reference,
 * or NULL when out of memory. */
#ifndef AQ_AGENT_AGENT_JSON_H
#define AQ_AGENT_AGENT_JSON_H

#include <jansson.h>

#include "agent/agent_run.h"

json_t *aq_agent_block_json(const Agentq__V1__ContentBlock *b);
json_t *aq_agent_message_json(const Agentq__V1__Message *m);
json_t *aq_agent_usage_json(const Agentq__V1__Usage *u);
json_t *aq_agent_step_json(const Agentq__V1__StepRecord *s);
/* The whole state: phase, counters, sums, steps, pending calls, conversation. */
json_t *aq_agent_run_json(const Agentq__V1__RunState *s);

#endif
