#include "agent_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_json.h"
#include "queue/queue_conn.h"

json_t *aq_agent_step_event(const aq_run *r, uint32_t step)
{
    const Agentq__V1__RunState *s = aq_run_state(r);
    if (step == 0 || step > s->n_steps)
        return NULL;
    const Agentq__V1__StepRecord *rec = s->steps[step - 1];
    json_t *o = json_object(), *calls = json_array();
    if (!o || !calls) {
        json_decref(o);
        json_decref(calls);
        return NULL;
    }
    json_object_set_new(o, "task_id", json_string(s->task_id));
    json_object_set_new(o, "step", json_integer(rec->step));
    json_object_set_new(o, "phase", json_string(aq_run_phase_name(s->phase)));
    json_object_set_new(o, "model", json_string(rec->model));
    json_object_set_new(o, "stop_reason", json_string(rec->stop_reason));
    json_object_set_new(o, "usage", aq_agent_usage_json(rec->usage));
    json_object_set_new(o, "cost_micro_usd", json_integer((json_int_t)rec->cost_micro_usd));
    json_object_set_new(o, "latency_ms", json_integer((json_int_t)rec->latency_ms));
    json_object_set_new(o, "cache_hit", json_boolean(rec->cache_hit));
    json_object_set_new(o, "final_at_ceiling", json_boolean(rec->final_at_ceiling));
    /* The last step's calls are still in `pending` until the batch is over. */
    size_t n = rec->n_tool_calls;
    bool from_pending = step == s->n_steps && n == 0 && s->n_pending > 0;
    if (from_pending)
        n = s->n_pending;
    for (size_t i = 0; i < n && i < AQ_AGENT_EVENT_MAX_TOOL_CALLS; i++) {
        const Agentq__V1__ToolCallRecord *t =
            from_pending ? s->pending[i]->record : rec->tool_calls[i];
        bool done = !from_pending || s->pending[i]->done;
        json_t *c = json_object();
        if (!c || !t)
            continue;
        json_object_set_new(c, "id", json_string(t->id));
        json_object_set_new(c, "name", json_string(t->name));
        json_object_set_new(c, "outcome", json_string(done ? t->outcome : "pending"));
        json_object_set_new(c, "latency_ms", json_integer((json_int_t)t->latency_ms));
        json_object_set_new(c, "attempts", json_integer(t->attempts));
        json_array_append_new(calls, c);
    }
    json_object_set_new(o, "tool_calls", calls);
    if (n > AQ_AGENT_EVENT_MAX_TOOL_CALLS)
        json_object_set_new(o, "more_tool_calls",
                            json_integer((json_int_t)(n - AQ_AGENT_EVENT_MAX_TOOL_CALLS)));
    return o;
}

aq_status aq_agent_event_publish(natsConnection *nc, const char *prefix, const char *task_id,
                                 const json_t *ev, aq_err *err)
{
    char subject[512];
    if (snprintf(subject, sizeof(subject), "%s.%s", prefix ? prefix : AQ_AGENT_EVENTS_PREFIX,
                 task_id) >= (int)sizeof(subject))
        return aq_err_set(err, AQ_INVALID_ARG, "event subject for %s is too long", task_id);
    char *text = json_dumps(ev, JSON_COMPACT);
    if (!text)
        return aq_err_set(err, AQ_NOMEM, "event: out of memory");
    natsStatus s = natsConnection_PublishString(nc, subject, text);
    free(text);
    if (s != NATS_OK)
        return aq_queue_nats_error(err, s, 0, "publishing a run event");
    return AQ_OK;
}
