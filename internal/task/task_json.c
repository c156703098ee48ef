#include "task_json.h"

#include <string.h>

/* Borrowed pointers into `obj`, so a Task can be packed without copying. */
typedef struct json_task {
    Agentq__V1__Task task;
    Agentq__V1__Message *msg_store;
    Agentq__V1__Message **msgs;
    char **stops;
    Agentq__V1__Task__MetadataEntry *meta_store;
    Agentq__V1__Task__MetadataEntry **metas;
} json_task;

static void json_task_free(json_task *jt)
{
    free(jt->msg_store);
    free(jt->msgs);
    free(jt->stops);
    free(jt->meta_store);
    free(jt->metas);
}

static aq_status get_string(json_t *v, const char *field, char **out, aq_err *err)
{
    if (!json_is_string(v))
        return aq_err_set(err, AQ_TASK_INVALID, "%s must be a string", field);
    *out = (char *)json_string_value(v);
    if (strlen(*out) != json_string_length(v))
        return aq_err_set(err, AQ_TASK_INVALID, "%s contains a NUL byte", field);
    return AQ_OK;
}

static aq_status get_int(json_t *v, const char *field, int64_t lo, int64_t hi, int64_t *out,
                         aq_err *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return aq_err_set(err, AQ_TASK_INVALID, "%s must be an integer in [%lld, %lld]", field,
                          (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return AQ_OK;
}

static aq_status read_messages(json_t *v, json_task *jt, aq_err *err)
{
    if (!json_is_array(v))
        return aq_err_set(err, AQ_TASK_INVALID, "messages must be an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return AQ_OK;
    jt->msg_store = calloc(n, sizeof(*jt->msg_store));
    jt->msgs = calloc(n, sizeof(*jt->msgs));
    if (!jt->msg_store || !jt->msgs)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        Agentq__V1__Message *pm = &jt->msg_store[i];
        agentq__v1__message__init(pm);
        const char *key;
        json_t *fv;
        if (!json_is_object(m))
            return aq_err_set(err, AQ_TASK_INVALID, "messages[%zu] must be an object", i);
        json_object_foreach(m, key, fv) {
            aq_status st;
            if (strcmp(key, "role") == 0)
                st = get_string(fv, "messages[].role", &pm->role, err);
            else if (strcmp(key, "content") == 0)
                st = get_string(fv, "messages[].content", &pm->content, err);
            else
                st = aq_err_set(err, AQ_TASK_INVALID, "messages[%zu]: unknown field \"%s\"", i,
                                key);
            if (st != AQ_OK)
                return st;
        }
        jt->msgs[i] = pm;
    }
    jt->task.n_messages = n;
    jt->task.messages = jt->msgs;
    return AQ_OK;
}

static aq_status read_stops(json_t *v, json_task *jt, aq_err *err)
{
    if (!json_is_array(v))
        return aq_err_set(err, AQ_TASK_INVALID, "stop_sequences must be an array of strings");
    size_t n = json_array_size(v);
    if (n == 0)
        return AQ_OK;
    if (!(jt->stops = calloc(n, sizeof(*jt->stops))))
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        aq_status st = get_string(json_array_get(v, i), "stop_sequences[]", &jt->stops[i], err);
        if (st != AQ_OK)
            return st;
    }
    jt->task.n_stop_sequences = n;
    jt->task.stop_sequences = jt->stops;
    return AQ_OK;
}

static aq_status read_metadata(json_t *v, json_task *jt, aq_err *err)
{
    if (!json_is_object(v))
        return aq_err_set(err, AQ_TASK_INVALID, "metadata must be an object of strings");
    size_t n = json_object_size(v), i = 0;
    if (n == 0)
        return AQ_OK;
    jt->meta_store = calloc(n, sizeof(*jt->meta_store));
    jt->metas = calloc(n, sizeof(*jt->metas));
    if (!jt->meta_store || !jt->metas)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    const char *key;
    json_t *fv;
    json_object_foreach(v, key, fv) {
        Agentq__V1__Task__MetadataEntry *e = &jt->meta_store[i];
        agentq__v1__task__metadata_entry__init(e);
        e->key = (char *)key;
        aq_status st = get_string(fv, "metadata values", &e->value, err);
        if (st != AQ_OK)
            return st;
        jt->metas[i++] = e;
    }
    jt->task.n_metadata = n;
    jt->task.metadata = jt->metas;
    return AQ_OK;
}

static aq_status read_field(const char *key, json_t *v, json_task *jt, aq_err *err)
{
    Agentq__V1__Task *t = &jt->task;
    int64_t iv;
    aq_status st;
    if (strcmp(key, "id") == 0)
        return get_string(v, key, &t->id, err);
    if (strcmp(key, "type") == 0)
        return get_string(v, key, &t->type, err);
    if (strcmp(key, "tenant") == 0)
        return get_string(v, key, &t->tenant, err);
    if (strcmp(key, "model") == 0)
        return get_string(v, key, &t->model, err);
    if (strcmp(key, "system") == 0)
        return get_string(v, key, &t->system, err);
    if (strcmp(key, "prompt") == 0)
        return get_string(v, key, &t->prompt, err);
    if (strcmp(key, "messages") == 0)
        return read_messages(v, jt, err);
    if (strcmp(key, "stop_sequences") == 0)
        return read_stops(v, jt, err);
    if (strcmp(key, "metadata") == 0)
        return read_metadata(v, jt, err);
    if (strcmp(key, "max_tokens") == 0) {
        if ((st = get_int(v, key, 0, UINT32_MAX, &iv, err)) == AQ_OK)
            t->max_tokens = (uint32_t)iv;
        return st;
    }
    if (strcmp(key, "temperature") == 0) {
        if (json_is_null(v))
            return AQ_OK;
        if (!json_is_number(v))
            return aq_err_set(err, AQ_TASK_INVALID, "temperature must be a number");
        t->temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
        t->temperature = (float)json_number_value(v);
        return AQ_OK;
    }
    if (strcmp(key, "cache_policy") == 0) {
        if (!json_is_string(v) || !aq_task_cache_policy_parse(json_string_value(v), &t->cache_policy))
            return aq_err_set(err, AQ_TASK_INVALID,
                              "cache_policy must be \"default\", \"opt-in\", \"bypass\" or \"refresh\"");
        return AQ_OK;
    }
    if (strcmp(key, "allow_fallback") == 0) {
        if (!json_is_boolean(v))
            return aq_err_set(err, AQ_TASK_INVALID, "allow_fallback must be true or false");
        t->allow_fallback = json_is_true(v);
        return AQ_OK;
    }
    if (strcmp(key, "deadline_unix_ms") == 0)
        return get_int(v, key, 0, INT64_MAX, &t->deadline_unix_ms, err);
    if (strcmp(key, "created_unix_ms") == 0)
        return get_int(v, key, 0, INT64_MAX, &t->created_unix_ms, err);
    return aq_err_set(err, AQ_TASK_INVALID, "unknown field \"%s\"", key);
}

aq_status aq_task_json_pack(json_t *obj, const aq_task_limits *lim, int64_t now_ms, aq_buf *out,
                            aq_task_ref *ref, aq_err *err)
{
    json_task jt;
    memset(&jt, 0, sizeof(jt));
    agentq__v1__task__init(&jt.task);
    aq_status st = AQ_OK;
    const char *key;
    json_t *v;

    if (!json_is_object(obj)) {
        st = aq_err_set(err, AQ_TASK_INVALID, "a task must be a JSON object");
        goto out;
    }
    json_object_foreach(obj, key, v) {
        if ((st = read_field(key, v, &jt, err)) != AQ_OK)
            goto out;
    }
    if (jt.task.created_unix_ms == 0)
        jt.task.created_unix_ms = now_ms;
    if ((st = aq_task_validate(&jt.task, lim, err)) != AQ_OK)
        goto out;
    if ((st = aq_task_pack(&jt.task, out, err)) != AQ_OK)
        goto out;
    snprintf(ref->id, sizeof(ref->id), "%s", jt.task.id);
    snprintf(ref->type, sizeof(ref->type), "%s", jt.task.type);
out:
    json_task_free(&jt);
    return st;
}

json_t *aq_task_to_json(const Agentq__V1__Task *t)
{
    json_t *o = json_object();
    json_t *msgs = json_array(), *stops = json_array(), *meta = json_object();
    if (!o || !msgs || !stops || !meta) {
        json_decref(o);
        json_decref(msgs);
        json_decref(stops);
        json_decref(meta);
        return NULL;
    }
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "type", json_string(t->type));
    json_object_set_new(o, "tenant", json_string(t->tenant));
    json_object_set_new(o, "model", json_string(t->model));
    json_object_set_new(o, "system", json_string(t->system));
    json_object_set_new(o, "prompt", json_string(t->prompt));
    for (size_t i = 0; i < t->n_messages; i++)
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", t->messages[i]->role,
                                              "content", t->messages[i]->content));
    json_object_set_new(o, "messages", msgs);
    json_object_set_new(o, "max_tokens", json_integer(t->max_tokens));
    if (t->temperature_presence_case == AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE)
        json_object_set_new(o, "temperature", json_real(t->temperature));
    for (size_t i = 0; i < t->n_stop_sequences; i++)
        json_array_append_new(stops, json_string(t->stop_sequences[i]));
    json_object_set_new(o, "stop_sequences", stops);
    for (size_t i = 0; i < t->n_metadata; i++)
        json_object_set_new(meta, t->metadata[i]->key, json_string(t->metadata[i]->value));
    json_object_set_new(o, "metadata", meta);
    json_object_set_new(o, "deadline_unix_ms", json_integer(t->deadline_unix_ms));
    json_object_set_new(o, "created_unix_ms", json_integer(t->created_unix_ms));
    json_object_set_new(o, "cache_policy", json_string(aq_task_cache_policy_name(t->cache_policy)));
    json_object_set_new(o, "allow_fallback", json_boolean(t->allow_fallback));
    return o;
}

json_t *aq_result_to_json(const Agentq__V1__Result *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "status", json_string(aq_result_status_name(r->status)));
    json_object_set_new(o, "type", json_string(r->type));
    json_object_set_new(o, "output", json_string(r->output));
    json_object_set_new(o, "stop_reason", json_string(r->stop_reason));
    json_object_set_new(o, "model", json_string(r->model));
    if (r->usage)
        json_object_set_new(o, "usage",
                            json_pack("{s:I, s:I, s:I, s:I}", "input_tokens",
                                      (json_int_t)r->usage->input_tokens, "output_tokens",
                                      (json_int_t)r->usage->output_tokens,
                                      "cache_creation_input_tokens",
                                      (json_int_t)r->usage->cache_creation_input_tokens,
                                      "cache_read_input_tokens",
                                      (json_int_t)r->usage->cache_read_input_tokens));
    json_object_set_new(o, "attempts", json_integer(r->attempts));
    if (r->stream_seq)
        json_object_set_new(o, "stream_seq", json_integer((json_int_t)r->stream_seq));
    json_object_set_new(o, "llm_latency_ms", json_integer((json_int_t)r->llm_latency_ms));
    json_object_set_new(o, "queue_latency_ms", json_integer((json_int_t)r->queue_latency_ms));
    if (r->error)
        json_object_set_new(o, "error",
                            json_pack("{s:s, s:s, s:i}", "class", r->error->class_,
                                      "message", r->error->message, "http_status",
                                      (int)r->error->http_status));
    json_object_set_new(o, "completed_unix_ms", json_integer(r->completed_unix_ms));
    json_object_set_new(o, "request_id", json_string(r->request_id));
    json_object_set_new(o, "worker", json_string(r->worker));
    json_object_set_new(o, "tenant", json_string(r->tenant));
    json_object_set_new(o, "route_rule", json_string(r->route_rule));
    json_object_set_new(o, "cache_hit", json_boolean(r->cache_hit));
    json_object_set_new(o, "fallback_used", json_boolean(r->fallback_used));
    json_object_set_new(o, "cost_micro_usd", json_integer((json_int_t)r->cost_micro_usd));
    if (r->cost_unknown)
        json_object_set_new(o, "cost_unknown", json_true());
    return o;
}
