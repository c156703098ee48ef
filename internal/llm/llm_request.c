#include "llm_request.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Only one real number is in the body (temperature); 15 significant digits
 * print the double nearest to a short decimal (0.7) as that decimal. */
#define REQ_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

static int str_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* The shortest decimal that reads back as `f` ("0.7", not 0.699999988...),
 * as the double nearest to that decimal. */
static double float_to_short_double(float f)
{
    char tmp[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, (double)f);
        if (strtof(tmp, NULL) == f)
            break;
    }
    return strtod(tmp, NULL);
}

/* A JSON string; json_string fails on bad UTF-8 or on NOMEM: tell them apart. */
static aq_status new_str(const char *val, const char *what, json_t **out, aq_err *err)
{
    json_t *s = json_string(val ? val : "");
    if (!s) {
        json_t *probe = json_string_nocheck(val ? val : "");
        if (!probe)
            return aq_err_set(err, AQ_NOMEM, "out of memory building the request");
        json_decref(probe);
        return aq_err_set(err, AQ_TASK_INVALID, "%s is not valid UTF-8", what);
    }
    *out = s;
    return AQ_OK;
}

static aq_status obj_set_str(json_t *obj, const char *key, const char *val, const char *what,
                             aq_err *err)
{
    json_t *s = NULL;
    aq_status st = new_str(val, what, &s, err);
    if (st != AQ_OK)
        return st;
    if (json_object_set_new(obj, key, s) != 0)
        return aq_err_set(err, AQ_NOMEM, "out of memory building the request");
    return AQ_OK;
}

/* `idx` < 0: the prompt shorthand. */
static aq_status add_message(json_t *arr, const char *role, const char *content, long idx,
                             aq_err *err)
{
    char what[64];
    aq_status st = AQ_OK;
    json_t *m = json_object();
    if (!m)
        return aq_err_set(err, AQ_NOMEM, "out of memory building the request");
    snprintf(what, sizeof(what), "messages[%ld].role", idx);
    if ((st = obj_set_str(m, "role", role, what, err)) != AQ_OK)
        goto out;
    if (idx < 0)
        snprintf(what, sizeof(what), "prompt");
    else
        snprintf(what, sizeof(what), "messages[%ld].content", idx);
    if ((st = obj_set_str(m, "content", content, what, err)) != AQ_OK)
        goto out;
    if (json_array_append(arr, m) != 0)
        st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
out:
    json_decref(m);
    return st;
}

typedef struct dump_ctx {
    aq_buf *out;
    aq_status st;
} dump_ctx;

static int dump_to_buf(const char *buffer, size_t size, void *data)
{
    dump_ctx *d = data;
    d->st = aq_buf_append(d->out, buffer, size);
    return d->st == AQ_OK ? 0 : -1;
}

int64_t aq_llm_estimate_tokens(size_t bytes)
{
    return (int64_t)(bytes / 4 + (bytes % 4 != 0));
}

int64_t aq_llm_task_input_tokens(const Agentq__V1__Task *task)
{
    if (!task)
        return 0;
    size_t bytes = (task->system ? strlen(task->system) : 0) + (task->prompt ? strlen(task->prompt) : 0);
    for (size_t i = 0; i < task->n_messages; i++)
        if (task->messages[i] && task->messages[i]->content)
            bytes += strlen(task->messages[i]->content);
    return aq_llm_estimate_tokens(bytes);
}

bool aq_llm_request_marks_system(const Agentq__V1__Task *task, const aq_llm_request_opts *opts)
{
    return task && opts && opts->prompt_cache_min_tokens > 0 && !str_empty(task->system) &&
           aq_llm_estimate_tokens(strlen(task->system)) >= (int64_t)opts->prompt_cache_min_tokens;
}

/* "system": [{"type":"text","text":...,"cache_control":{"type":"ephemeral"}}] */
static aq_status set_cached_system(json_t *root, const char *system, aq_err *err)
{
    aq_status st = AQ_OK;
    json_t *text = NULL;
    json_t *block = json_object(), *arr = json_array();
    json_t *cc = json_pack("{s:s}", "type", "ephemeral");
    if (!block || !arr || !cc) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
        goto out;
    }
    if ((st = new_str(system, "system", &text, err)) != AQ_OK)
        goto out;
    /* _set_new consumes its value even when it fails: `text` first, always. */
    if (json_object_set_new(block, "text", text) != 0 ||
        json_object_set_new(block, "type", json_string("text")) != 0 ||
        json_object_set(block, "cache_control", cc) != 0 || json_array_append(arr, block) != 0 ||
        json_object_set(root, "system", arr) != 0)
        st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
out:
    json_decref(cc);
    json_decref(arr);
    json_decref(block);
    return st;
}

aq_status aq_llm_request_build(const Agentq__V1__Task *task, const char *model, uint32_t max_tokens,
                               aq_buf *out, aq_err *err)
{
    return aq_llm_request_build_opts(task, model, max_tokens, NULL, out, err);
}

aq_status aq_llm_request_build_opts(const Agentq__V1__Task *task, const char *model,
                                    uint32_t max_tokens, const aq_llm_request_opts *opts,
                                    aq_buf *out, aq_err *err)
{
    aq_status st = AQ_OK;
    json_t *root = NULL;
    json_t *msgs = NULL;
    size_t start_len = out ? out->len : 0;

    if (!task || !out)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_request_build: NULL task or buffer");
    if (str_empty(model))
        return aq_err_set(err, AQ_INVALID_ARG, "no model chosen for the request");
    if (max_tokens == 0)
        return aq_err_set(err, AQ_INVALID_ARG, "max_tokens must be at least 1");
    if (task->n_messages == 0 && str_empty(task->prompt))
        return aq_err_set(err, AQ_TASK_INVALID, "task has neither a prompt nor messages");

    root = json_object();
    msgs = json_array();
    if (!root || !msgs) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
        goto out;
    }
    if ((st = obj_set_str(root, "model", model, "model", err)) != AQ_OK)
        goto out;
    if (json_object_set_new(root, "max_tokens", json_integer((json_int_t)max_tokens)) != 0) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
        goto out;
    }
    if (aq_llm_request_marks_system(task, opts)) {
        if ((st = set_cached_system(root, task->system, err)) != AQ_OK)
            goto out;
    } else if (!str_empty(task->system) &&
               (st = obj_set_str(root, "system", task->system, "system", err)) != AQ_OK) {
        goto out;
    }

    if (task->n_messages > 0) {
        for (size_t i = 0; i < task->n_messages; i++) {
            const Agentq__V1__Message *m = task->messages[i];
            if (!m) {
                st = aq_err_set(err, AQ_TASK_INVALID, "messages[%zu] is missing", i);
                goto out;
            }
            if ((st = add_message(msgs, m->role, m->content, (long)i, err)) != AQ_OK)
                goto out;
        }
    } else if ((st = add_message(msgs, "user", task->prompt, -1, err)) != AQ_OK) {
        goto out;
    }
    if (json_object_set(root, "messages", msgs) != 0) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
        goto out;
    }

    if (task->temperature_presence_case == AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE &&
        json_object_set_new(root, "temperature",
                            json_real(float_to_short_double(task->temperature))) != 0) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
        goto out;
    }

    if (task->n_stop_sequences > 0) {
        json_t *stops = json_array();
        if (!stops || json_object_set_new(root, "stop_sequences", stops) != 0) {
            st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
            goto out;
        }
        for (size_t i = 0; i < task->n_stop_sequences; i++) {
            char what[48];
            json_t *s = NULL;
            snprintf(what, sizeof(what), "stop_sequences[%zu]", i);
            if ((st = new_str(task->stop_sequences[i], what, &s, err)) != AQ_OK)
                goto out;
            if (json_array_append_new(stops, s) != 0) {
                st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
                goto out;
            }
        }
    }

    if (!str_empty(task->tenant)) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "metadata", meta) != 0) {
            st = aq_err_set(err, AQ_NOMEM, "out of memory building the request");
            goto out;
        }
        if ((st = obj_set_str(meta, "user_id", task->tenant, "tenant", err)) != AQ_OK)
            goto out;
    }

    dump_ctx d = {out, AQ_OK};
    if (json_dump_callback(root, dump_to_buf, &d, REQ_DUMP_FLAGS) != 0) {
        if (d.st == AQ_TOO_BIG)
            st = aq_err_set(err, AQ_TOO_BIG, "request body is over the %zu-byte cap", out->cap);
        else
            st = aq_err_set(err, d.st == AQ_OK ? AQ_NOMEM : d.st,
                            "cannot serialise the request body");
        goto out;
    }

out:
    if (st != AQ_OK && out) {
        out->len = start_len;   /* leave the buffer as it was */
        if (out->data)
            out->data[start_len] = '\0';
    }
    json_decref(msgs);
    json_decref(root);
    return st;
}
