#include "task_json.h"

#include <limits.h>
#include <openssl/evp.h>
#include <string.h>

/* Borrowed pointers into `obj`, so a Task can be packed without copying;
 * what has to be made (blocks, tools, decoded media) is in `allocs`. */
typedef struct json_task {
    Agentq__V1__Task task;
    Agentq__V1__Message *msg_store;
    Agentq__V1__Message **msgs;
    char **stops;
    Agentq__V1__Task__MetadataEntry *meta_store;
    Agentq__V1__Task__MetadataEntry **metas;
    void **allocs;
    size_t n_allocs, cap_allocs;
} json_task;

static void json_task_free(json_task *jt)
{
    free(jt->msg_store);
    free(jt->msgs);
    free(jt->stops);
    free(jt->meta_store);
    free(jt->metas);
    for (size_t i = 0; i < jt->n_allocs; i++)
        free(jt->allocs[i]);
    free(jt->allocs);
}

/* Zeroed memory that lives as long as `jt`; NULL when out of memory. */
static void *jt_alloc(json_task *jt, size_t n)
{
    if (jt->n_allocs == jt->cap_allocs) {
        size_t cap = jt->cap_allocs ? jt->cap_allocs * 2 : 16;
        void **a = realloc(jt->allocs, cap * sizeof(*a));
        if (!a)
            return NULL;
        jt->allocs = a;
        jt->cap_allocs = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (p)
        jt->allocs[jt->n_allocs++] = p;
    return p;
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


#define JSON_PATH_MAX 128

static aq_status get_bool(json_t *v, const char *field, protobuf_c_boolean *out, aq_err *err)
{
    if (!json_is_boolean(v))
        return aq_err_set(err, AQ_TASK_INVALID, "%s must be true or false", field);
    *out = json_is_true(v);
    return AQ_OK;
}

/* protobuf's JSON mapping of bytes: standard base64 with padding. */
static aq_status get_base64(json_t *v, const char *field, json_task *jt, ProtobufCBinaryData *out,
                            aq_err *err)
{
    if (!json_is_string(v))
        return aq_err_set(err, AQ_TASK_INVALID, "%s must be a base64 string", field);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0)
        return AQ_OK;
    if (n % 4 != 0 || n > INT_MAX)
        return aq_err_set(err, AQ_TASK_INVALID, "%s is not base64 (length %zu)", field, n);
    unsigned char *bin = jt_alloc(jt, n / 4 * 3 + 1);
    if (!bin)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    int w = EVP_DecodeBlock(bin, (const unsigned char *)s, (int)n);
    if (w < 0 || strlen(s) != n)
        return aq_err_set(err, AQ_TASK_INVALID, "%s is not base64", field);
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    out->data = bin;
    out->len = (size_t)w - pad;
    return AQ_OK;
}

static aq_status read_source(json_t *v, const char *path, json_task *jt,
                             Agentq__V1__MediaSource **out, aq_err *err)
{
    char f[JSON_PATH_MAX + 32];
    const char *key;
    json_t *fv;
    if (!json_is_object(v))
        return aq_err_set(err, AQ_TASK_INVALID, "%s.source must be an object", path);
    Agentq__V1__MediaSource *src = jt_alloc(jt, sizeof(*src));
    if (!src)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    agentq__v1__media_source__init(src);
    json_object_foreach(v, key, fv) {
        aq_status st;
        snprintf(f, sizeof(f), "%s.source.%s", path, key);
        if (strcmp(key, "media_type") == 0)
            st = get_string(fv, f, &src->media_type, err);
        else if (strcmp(key, "data") == 0)
            st = get_base64(fv, f, jt, &src->data, err);
        else if (strcmp(key, "url") == 0)
            st = get_string(fv, f, &src->url, err);
        else
            st = aq_err_set(err, AQ_TASK_INVALID, "%s.source: unknown field \"%s\"", path, key);
        if (st != AQ_OK)
            return st;
    }
    *out = src;
    return AQ_OK;
}

static aq_status read_blocks(json_t *v, const char *path, json_task *jt,
                             Agentq__V1__ContentBlock ***out, size_t *n_out, int depth, aq_err *err);

/* {"text":{...}} | {"image":{...}} | {"document":{...}} | {"tool_use":{...}}
 * | {"tool_result":{...}}: protobuf's JSON mapping of the oneof. */
static aq_status read_block(json_t *v, const char *path, json_task *jt,
                            Agentq__V1__ContentBlock *b, int depth, aq_err *err)
{
    char f[JSON_PATH_MAX + 48];
    const char *kind, *key;
    json_t *body, *fv;
    aq_status st = AQ_OK;
    agentq__v1__content_block__init(b);
    if (!json_is_object(v) || json_object_size(v) != 1)
        return aq_err_set(err, AQ_TASK_INVALID,
                          "%s must be an object with one of text, image, document, tool_use or "
                          "tool_result",
                          path);
    void *it = json_object_iter(v);
    kind = json_object_iter_key(it);
    body = json_object_iter_value(it);
    if (!json_is_object(body))
        return aq_err_set(err, AQ_TASK_INVALID, "%s.%s must be an object", path, kind);
    if (strcmp(kind, "text") == 0) {
        Agentq__V1__TextBlock *tb = jt_alloc(jt, sizeof(*tb));
        if (!tb)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        agentq__v1__text_block__init(tb);
        b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
        b->text = tb;
        json_object_foreach(body, key, fv) {
            snprintf(f, sizeof(f), "%s.text.%s", path, key);
            st = strcmp(key, "text") == 0
                     ? get_string(fv, f, &tb->text, err)
                     : aq_err_set(err, AQ_TASK_INVALID, "%s.text: unknown field \"%s\"", path, key);
            if (st != AQ_OK)
                return st;
        }
    } else if (strcmp(kind, "image") == 0) {
        Agentq__V1__ImageBlock *ib = jt_alloc(jt, sizeof(*ib));
        if (!ib)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        agentq__v1__image_block__init(ib);
        b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE;
        b->image = ib;
        snprintf(f, sizeof(f), "%s.image", path);
        json_object_foreach(body, key, fv) {
            st = strcmp(key, "source") == 0
                     ? read_source(fv, f, jt, &ib->source, err)
                     : aq_err_set(err, AQ_TASK_INVALID, "%s: unknown field \"%s\"", f, key);
            if (st != AQ_OK)
                return st;
        }
    } else if (strcmp(kind, "document") == 0) {
        Agentq__V1__DocumentBlock *db = jt_alloc(jt, sizeof(*db));
        if (!db)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        agentq__v1__document_block__init(db);
        b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT;
        b->document = db;
        snprintf(f, sizeof(f), "%s.document", path);
        json_object_foreach(body, key, fv) {
            if (strcmp(key, "source") == 0)
                st = read_source(fv, f, jt, &db->source, err);
            else if (strcmp(key, "title") == 0)
                st = get_string(fv, f, &db->title, err);
            else
                st = aq_err_set(err, AQ_TASK_INVALID, "%s: unknown field \"%s\"", f, key);
            if (st != AQ_OK)
                return st;
        }
    } else if (strcmp(kind, "tool_use") == 0) {
        Agentq__V1__ToolUseBlock *ub = jt_alloc(jt, sizeof(*ub));
        if (!ub)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        agentq__v1__tool_use_block__init(ub);
        b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
        b->tool_use = ub;
        json_object_foreach(body, key, fv) {
            snprintf(f, sizeof(f), "%s.tool_use.%s", path, key);
            if (strcmp(key, "id") == 0)
                st = get_string(fv, f, &ub->id, err);
            else if (strcmp(key, "name") == 0)
                st = get_string(fv, f, &ub->name, err);
            else if (strcmp(key, "input_json") == 0)
                st = get_string(fv, f, &ub->input_json, err);
            else
                st = aq_err_set(err, AQ_TASK_INVALID, "%s.tool_use: unknown field \"%s\"", path, key);
            if (st != AQ_OK)
                return st;
        }
    } else if (strcmp(kind, "tool_result") == 0) {
        Agentq__V1__ToolResultBlock *rb = jt_alloc(jt, sizeof(*rb));
        if (!rb)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        agentq__v1__tool_result_block__init(rb);
        b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT;
        b->tool_result = rb;
        json_object_foreach(body, key, fv) {
            snprintf(f, sizeof(f), "%s.tool_result.%s", path, key);
            if (strcmp(key, "tool_use_id") == 0)
                st = get_string(fv, f, &rb->tool_use_id, err);
            else if (strcmp(key, "is_error") == 0)
                st = get_bool(fv, f, &rb->is_error, err);
            else if (strcmp(key, "content") == 0)
                st = read_blocks(fv, f, jt, &rb->content, &rb->n_content, depth + 1, err);
            else
                st = aq_err_set(err, AQ_TASK_INVALID, "%s.tool_result: unknown field \"%s\"", path,
                                key);
            if (st != AQ_OK)
                return st;
        }
    } else {
        return aq_err_set(err, AQ_TASK_INVALID,
                          "%s: unknown block \"%s\" (expected text, image, document, tool_use or "
                          "tool_result)",
                          path, kind);
    }
    return AQ_OK;
}

static aq_status read_blocks(json_t *v, const char *path, json_task *jt,
                             Agentq__V1__ContentBlock ***out, size_t *n_out, int depth, aq_err *err)
{
    char f[JSON_PATH_MAX];
    /* tool_result content holds no tool_result: one level is all there is. */
    if (depth > 1)
        return aq_err_set(err, AQ_TASK_INVALID, "%s: blocks nest too deep", path);
    if (!json_is_array(v))
        return aq_err_set(err, AQ_TASK_INVALID, "%s must be an array", path);
    size_t n = json_array_size(v);
    if (n == 0)
        return AQ_OK;
    Agentq__V1__ContentBlock *store = jt_alloc(jt, n * sizeof(*store));
    Agentq__V1__ContentBlock **ptrs = jt_alloc(jt, n * sizeof(*ptrs));
    if (!store || !ptrs)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        snprintf(f, sizeof(f), "%s[%zu]", path, i);
        aq_status st = read_block(json_array_get(v, i), f, jt, &store[i], depth, err);
        if (st != AQ_OK)
            return st;
        ptrs[i] = &store[i];
    }
    *out = ptrs;
    *n_out = n;
    return AQ_OK;
}

static aq_status read_tools(json_t *v, json_task *jt, aq_err *err)
{
    char f[JSON_PATH_MAX];
    if (!json_is_array(v))
        return aq_err_set(err, AQ_TASK_INVALID, "tools must be an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return AQ_OK;
    Agentq__V1__Tool *store = jt_alloc(jt, n * sizeof(*store));
    Agentq__V1__Tool **ptrs = jt_alloc(jt, n * sizeof(*ptrs));
    if (!store || !ptrs)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(v, i), *fv;
        const char *key;
        agentq__v1__tool__init(&store[i]);
        if (!json_is_object(t))
            return aq_err_set(err, AQ_TASK_INVALID, "tools[%zu] must be an object", i);
        json_object_foreach(t, key, fv) {
            aq_status st;
            snprintf(f, sizeof(f), "tools[%zu].%s", i, key);
            if (strcmp(key, "name") == 0)
                st = get_string(fv, f, &store[i].name, err);
            else if (strcmp(key, "description") == 0)
                st = get_string(fv, f, &store[i].description, err);
            else if (strcmp(key, "input_schema_json") == 0)
                st = get_string(fv, f, &store[i].input_schema_json, err);
            else
                st = aq_err_set(err, AQ_TASK_INVALID, "tools[%zu]: unknown field \"%s\"", i, key);
            if (st != AQ_OK)
                return st;
        }
        ptrs[i] = &store[i];
    }
    jt->task.tools = ptrs;
    jt->task.n_tools = n;
    return AQ_OK;
}

static aq_status read_tool_choice(json_t *v, json_task *jt, aq_err *err)
{
    const char *key;
    json_t *fv;
    if (!json_is_object(v))
        return aq_err_set(err, AQ_TASK_INVALID, "tool_choice must be an object");
    Agentq__V1__ToolChoice *tc = jt_alloc(jt, sizeof(*tc));
    if (!tc)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    agentq__v1__tool_choice__init(tc);
    json_object_foreach(v, key, fv) {
        aq_status st = AQ_OK;
        if (strcmp(key, "type") == 0) {
            if (!json_is_string(fv) || !aq_task_tool_choice_parse(json_string_value(fv), &tc->type))
                st = aq_err_set(err, AQ_TASK_INVALID,
                                "tool_choice.type must be \"auto\", \"any\", \"tool\" or \"none\"");
        } else if (strcmp(key, "name") == 0) {
            st = get_string(fv, "tool_choice.name", &tc->name, err);
        } else if (strcmp(key, "disable_parallel_tool_use") == 0) {
            st = get_bool(fv, "tool_choice.disable_parallel_tool_use",
                          &tc->disable_parallel_tool_use, err);
        } else {
            st = aq_err_set(err, AQ_TASK_INVALID, "tool_choice: unknown field \"%s\"", key);
        }
        if (st != AQ_OK)
            return st;
    }
    jt->task.tool_choice = tc;
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
            else if (strcmp(key, "blocks") == 0) {
                char path[48];
                snprintf(path, sizeof(path), "messages[%zu].blocks", i);
                st = read_blocks(fv, path, jt, &pm->blocks, &pm->n_blocks, 0, err);
            } else
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
    if (strcmp(key, "tools") == 0)
        return read_tools(v, jt, err);
    if (strcmp(key, "tool_choice") == 0)
        return read_tool_choice(v, jt, err);
    if (strcmp(key, "max_steps") == 0 || strcmp(key, "max_tool_calls") == 0) {
        if ((st = get_int(v, key, 0, UINT32_MAX, &iv, err)) == AQ_OK)
            *(strcmp(key, "max_steps") == 0 ? &t->max_steps : &t->max_tool_calls) = (uint32_t)iv;
        return st;
    }
    if (strcmp(key, "ceiling_action") == 0) {
        if (!json_is_string(v) ||
            !aq_task_ceiling_action_parse(json_string_value(v), &t->ceiling_action))
            return aq_err_set(err, AQ_TASK_INVALID,
                              "ceiling_action must be \"default\", \"fail\" or \"final\"");
        return AQ_OK;
    }
    if (strcmp(key, "session_id") == 0)
        return get_string(v, key, &t->session_id, err);
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


/* ---- JSON views ---- */

/* Standard base64 with padding (protobuf's JSON mapping of bytes). */
static json_t *base64_json(const ProtobufCBinaryData *d)
{
    if (d->len > (size_t)INT_MAX / 4 * 3)
        return NULL;
    char *b64 = malloc(4 * ((d->len + 2) / 3) + 1);
    if (!b64)
        return NULL;
    int w = EVP_EncodeBlock((unsigned char *)b64, d->data, (int)d->len);
    json_t *s = json_stringn_nocheck(b64, (size_t)w);
    free(b64);
    return s;
}

static json_t *source_json(const Agentq__V1__MediaSource *src)
{
    json_t *o = json_object();
    if (!o || !src)
        return o;
    if (*src->media_type)
        json_object_set_new(o, "media_type", json_string(src->media_type));
    if (src->data.len)
        json_object_set_new(o, "data", base64_json(&src->data));
    if (*src->url)
        json_object_set_new(o, "url", json_string(src->url));
    return o;
}

static json_t *blocks_json(Agentq__V1__ContentBlock *const *blocks, size_t n, int depth);

/* One block in protobuf's JSON mapping: {"<kind>": {fields}}. Strings that
 * are not UTF-8 come out null (jansson refuses them), as elsewhere here. */
static json_t *block_json(const Agentq__V1__ContentBlock *b, int depth)
{
    json_t *o = json_object(), *body = json_object();
    if (!o || !body || !b) {
        json_decref(body);
        return o;
    }
    switch (b->block_case) {
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT:
        json_object_set_new(body, "text", json_string(b->text ? b->text->text : ""));
        json_object_set_new(o, "text", body);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE:
        json_object_set_new(body, "source", source_json(b->image ? b->image->source : NULL));
        json_object_set_new(o, "image", body);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT:
        json_object_set_new(body, "source", source_json(b->document ? b->document->source : NULL));
        if (b->document && *b->document->title)
            json_object_set_new(body, "title", json_string(b->document->title));
        json_object_set_new(o, "document", body);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE:
        if (b->tool_use) {
            json_object_set_new(body, "id", json_string(b->tool_use->id));
            json_object_set_new(body, "name", json_string(b->tool_use->name));
            json_object_set_new(body, "input_json", json_string(b->tool_use->input_json));
        }
        json_object_set_new(o, "tool_use", body);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT:
        if (b->tool_result) {
            json_object_set_new(body, "tool_use_id", json_string(b->tool_result->tool_use_id));
            /* A decoded task may nest anything: the view shows one level. */
            if (b->tool_result->n_content && depth == 0)
                json_object_set_new(body, "content",
                                    blocks_json(b->tool_result->content, b->tool_result->n_content,
                                                depth + 1));
            if (b->tool_result->is_error)
                json_object_set_new(body, "is_error", json_true());
        }
        json_object_set_new(o, "tool_result", body);
        break;
    default:
        json_decref(body);
        break;
    }
    return o;
}

static json_t *blocks_json(Agentq__V1__ContentBlock *const *blocks, size_t n, int depth)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, block_json(blocks[i], depth));
    return a;
}

static void set_agent_fields(json_t *o, const Agentq__V1__Task *t)
{
    if (t->n_tools) {
        json_t *tools = json_array();
        for (size_t i = 0; tools && i < t->n_tools; i++)
            json_array_append_new(tools, json_pack("{s:s?, s:s?, s:s?}", "name", t->tools[i]->name,
                                                   "description", t->tools[i]->description,
                                                   "input_schema_json",
                                                   t->tools[i]->input_schema_json));
        json_object_set_new(o, "tools", tools);
    }
    if (t->tool_choice) {
        json_t *tc = json_pack("{s:s}", "type", aq_task_tool_choice_name(t->tool_choice->type));
        if (tc && *t->tool_choice->name)
            json_object_set_new(tc, "name", json_string(t->tool_choice->name));
        if (tc && t->tool_choice->disable_parallel_tool_use)
            json_object_set_new(tc, "disable_parallel_tool_use", json_true());
        json_object_set_new(o, "tool_choice", tc);
    }
    if (t->max_steps)
        json_object_set_new(o, "max_steps", json_integer(t->max_steps));
    if (t->max_tool_calls)
        json_object_set_new(o, "max_tool_calls", json_integer(t->max_tool_calls));
    if (t->ceiling_action)
        json_object_set_new(o, "ceiling_action",
                            json_string(aq_task_ceiling_action_name(t->ceiling_action)));
    if (*t->session_id)
        json_object_set_new(o, "session_id", json_string(t->session_id));
}

static json_t *usage_json(const Agentq__V1__Usage *u)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "input_tokens", (json_int_t)u->input_tokens,
                     "output_tokens", (json_int_t)u->output_tokens, "cache_creation_input_tokens",
                     (json_int_t)u->cache_creation_input_tokens, "cache_read_input_tokens",
                     (json_int_t)u->cache_read_input_tokens);
}

static json_t *step_json(const Agentq__V1__StepRecord *s)
{
    json_t *o = json_object(), *calls = json_array();
    if (!o || !calls) {
        json_decref(o);
        json_decref(calls);
        return NULL;
    }
    json_object_set_new(o, "step", json_integer(s->step));
    json_object_set_new(o, "model", json_string(s->model));
    if (s->usage)
        json_object_set_new(o, "usage", usage_json(s->usage));
    json_object_set_new(o, "cost_micro_usd", json_integer((json_int_t)s->cost_micro_usd));
    json_object_set_new(o, "latency_ms", json_integer((json_int_t)s->latency_ms));
    json_object_set_new(o, "stop_reason", json_string(s->stop_reason));
    json_object_set_new(o, "route_rule", json_string(s->route_rule));
    json_object_set_new(o, "cache_hit", json_boolean(s->cache_hit));
    json_object_set_new(o, "final_at_ceiling", json_boolean(s->final_at_ceiling));
    for (size_t i = 0; i < s->n_tool_calls; i++) {
        const Agentq__V1__ToolCallRecord *c = s->tool_calls[i];
        json_array_append_new(calls, json_pack("{s:s?, s:s?, s:s?, s:I, s:I}", "id", c->id, "name",
                                               c->name, "outcome", c->outcome, "latency_ms",
                                               (json_int_t)c->latency_ms, "attempts",
                                               (json_int_t)c->attempts));
    }
    json_object_set_new(o, "tool_calls", calls);
    return o;
}

static void set_result_agent_fields(json_t *o, const Agentq__V1__Result *r)
{
    if (r->n_content)
        json_object_set_new(o, "content", blocks_json(r->content, r->n_content, 0));
    if (r->steps)
        json_object_set_new(o, "steps", json_integer(r->steps));
    if (r->tool_calls)
        json_object_set_new(o, "tool_calls", json_integer(r->tool_calls));
    if (r->n_step_log) {
        json_t *log = json_array();
        for (size_t i = 0; log && i < r->n_step_log; i++)
            json_array_append_new(log, step_json(r->step_log[i]));
        json_object_set_new(o, "step_log", log);
    }
    if (*r->transcript_key)
        json_object_set_new(o, "transcript_key", json_string(r->transcript_key));
    if (*r->session_id)
        json_object_set_new(o, "session_id", json_string(r->session_id));
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
    for (size_t i = 0; i < t->n_messages; i++) {
        json_t *m = json_pack("{s:s, s:s}", "role", t->messages[i]->role, "content",
                              t->messages[i]->content);
        if (m && t->messages[i]->n_blocks)
            json_object_set_new(m, "blocks",
                                blocks_json(t->messages[i]->blocks, t->messages[i]->n_blocks, 0));
        json_array_append_new(msgs, m);
    }
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
    set_agent_fields(o, t);
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
    if (r->time_to_first_token_us) { /* a streamed call */
        json_object_set_new(o, "time_to_first_token_us",
                            json_integer((json_int_t)r->time_to_first_token_us));
        json_object_set_new(o, "output_tokens_per_second",
                            json_real((double)r->output_tokens_per_second));
    }
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
    set_result_agent_fields(o, r);
    return o;
}
