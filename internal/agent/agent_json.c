#include "agent_json.h"

#include <string.h>

/* json_object_set_new that tolerates a NULL value (out of memory: the
 * caller's NULL check on the container is what matters) and invalid UTF-8
 * (jansson refuses it: the value becomes a placeholder). */
static void put(json_t *o, const char *k, json_t *v)
{
    if (o && v)
        json_object_set_new(o, k, v);
    else
        json_decref(v);
}

static json_t *str(const char *s)
{
    json_t *v = json_string(s ? s : "");
    return v ? v : json_string("(invalid UTF-8)");
}

static json_t *source_json(const Agentq__V1__MediaSource *src)
{
    json_t *o = json_object();
    if (!src)
        return o;
    if (src->url && *src->url) {
        put(o, "type", str("url"));
        put(o, "url", str(src->url));
    } else {
        put(o, "type", str("base64"));
        put(o, "media_type", str(src->media_type));
        put(o, "bytes", json_integer((json_int_t)src->data.len));
    }
    return o;
}

json_t *aq_agent_block_json(const Agentq__V1__ContentBlock *b)
{
    json_t *o = json_object();
    switch (b->block_case) {
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT:
        put(o, "type", str("text"));
        put(o, "text", str(b->text ? b->text->text : ""));
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE:
        put(o, "type", str("image"));
        put(o, "source", source_json(b->image ? b->image->source : NULL));
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT:
        put(o, "type", str("document"));
        put(o, "source", source_json(b->document ? b->document->source : NULL));
        if (b->document && b->document->title && *b->document->title)
            put(o, "title", str(b->document->title));
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE: {
        const Agentq__V1__ToolUseBlock *u = b->tool_use;
        put(o, "type", str("tool_use"));
        put(o, "id", str(u ? u->id : ""));
        put(o, "name", str(u ? u->name : ""));
        json_t *input = u && u->input_json && *u->input_json
                            ? json_loads(u->input_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL)
                            : json_object();
        put(o, "input", input ? input : str(u->input_json)); /* not JSON: shown as text */
        break;
    }
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT: {
        const Agentq__V1__ToolResultBlock *r = b->tool_result;
        put(o, "type", str("tool_result"));
        put(o, "tool_use_id", str(r ? r->tool_use_id : ""));
        json_t *content = json_array();
        for (size_t i = 0; r && i < r->n_content; i++)
            json_array_append_new(content, aq_agent_block_json(r->content[i]));
        put(o, "content", content);
        if (r && r->is_error)
            put(o, "is_error", json_true());
        break;
    }
    default:
        put(o, "type", str("unknown"));
        break;
    }
    return o;
}

json_t *aq_agent_message_json(const Agentq__V1__Message *m)
{
    json_t *o = json_object();
    put(o, "role", str(m->role));
    if (m->n_blocks == 0) {
        put(o, "content", str(m->content));
        return o;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < m->n_blocks; i++)
        json_array_append_new(a, aq_agent_block_json(m->blocks[i]));
    put(o, "content", a);
    return o;
}

json_t *aq_agent_usage_json(const Agentq__V1__Usage *u)
{
    json_t *o = json_object();
    Agentq__V1__Usage zero = AGENTQ__V1__USAGE__INIT;
    if (!u)
        u = &zero;
    put(o, "input_tokens", json_integer(u->input_tokens));
    put(o, "output_tokens", json_integer(u->output_tokens));
    put(o, "cache_creation_input_tokens", json_integer(u->cache_creation_input_tokens));
    put(o, "cache_read_input_tokens", json_integer(u->cache_read_input_tokens));
    return o;
}

static json_t *tool_call_json(const Agentq__V1__ToolCallRecord *t)
{
    json_t *o = json_object();
    put(o, "id", str(t->id));
    put(o, "name", str(t->name));
    put(o, "outcome", str(t->outcome));
    put(o, "latency_ms", json_integer((json_int_t)t->latency_ms));
    put(o, "attempts", json_integer(t->attempts));
    return o;
}

json_t *aq_agent_step_json(const Agentq__V1__StepRecord *s)
{
    json_t *o = json_object();
    put(o, "step", json_integer(s->step));
    put(o, "model", str(s->model));
    put(o, "route_rule", str(s->route_rule));
    put(o, "stop_reason", str(s->stop_reason));
    put(o, "usage", aq_agent_usage_json(s->usage));
    put(o, "cost_micro_usd", json_integer((json_int_t)s->cost_micro_usd));
    put(o, "latency_ms", json_integer((json_int_t)s->latency_ms));
    put(o, "cache_hit", json_boolean(s->cache_hit));
    put(o, "final_at_ceiling", json_boolean(s->final_at_ceiling));
    json_t *calls = json_array();
    for (size_t i = 0; i < s->n_tool_calls; i++)
        json_array_append_new(calls, tool_call_json(s->tool_calls[i]));
    put(o, "tool_calls", calls);
    return o;
}

json_t *aq_agent_run_json(const Agentq__V1__RunState *s)
{
    json_t *o = json_object();
    put(o, "task_id", str(s->task_id));
    put(o, "phase", str(aq_run_phase_name(s->phase)));
    if (*s->session_id)
        put(o, "session_id", str(s->session_id));
    put(o, "model", str(s->model));
    put(o, "stop_reason", str(s->stop_reason));
    put(o, "steps", json_integer((json_int_t)s->n_steps));
    put(o, "tool_calls", json_integer(s->tool_calls));
    put(o, "schema_violations", json_integer(s->schema_violations));
    put(o, "usage", aq_agent_usage_json(s->usage));
    put(o, "cost_micro_usd", json_integer((json_int_t)s->cost_micro_usd));
    put(o, "cost_unknown", json_boolean(s->cost_unknown));
    put(o, "llm_latency_ms", json_integer((json_int_t)s->llm_latency_ms));
    if (*s->ceiling)
        put(o, "ceiling", str(s->ceiling));
    if (s->error) {
        json_t *e = json_object();
        put(e, "class", str(s->error->class_));
        put(e, "message", str(s->error->message));
        put(o, "error", e);
    }
    put(o, "created_unix_ms", json_integer(s->created_unix_ms));
    put(o, "updated_unix_ms", json_integer(s->updated_unix_ms));
    put(o, "history_messages", json_integer(s->history_messages));
    put(o, "own_from", json_integer(s->own_from));
    json_t *steps = json_array();
    for (size_t i = 0; i < s->n_steps; i++)
        json_array_append_new(steps, aq_agent_step_json(s->steps[i]));
    put(o, "step_log", steps);
    json_t *pending = json_array();
    for (size_t i = 0; i < s->n_pending; i++) {
        const Agentq__V1__PendingToolCall *c = s->pending[i];
        json_t *p = json_object();
        put(p, "id", str(c->id));
        put(p, "name", str(c->name));
        put(p, "done", json_boolean(c->done));
        if (c->record && c->done)
            put(p, "outcome", str(c->record->outcome));
        json_array_append_new(pending, p);
    }
    put(o, "pending", pending);
    json_t *final_content = json_array();
    for (size_t i = 0; i < s->n_final_content; i++)
        json_array_append_new(final_content, aq_agent_block_json(s->final_content[i]));
    put(o, "content", final_content);
    json_t *conv = json_array();
    for (size_t i = 0; i < s->n_conversation; i++)
        json_array_append_new(conv, aq_agent_message_json(s->conversation[i]));
    put(o, "conversation", conv);
    return o;
}
