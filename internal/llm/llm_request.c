#include "llm_request.h"

#include <jansson.h>
#include <stdint.h>
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

/* ---- the body's cap ---- */

/* JSON's worst escape: a control character other than \b \f \n \r \t is
 * \u00XX (jansson writes no other 6-byte escape without JSON_ENSURE_ASCII,
 * and UTF-8 passes through as is). */
#define REQ_ESCAPE_WORST 6
/* Everything but the strings' contents, generously: the keys, max_tokens'
 * digits, the temperature, the cached-system wrapper, brackets, commas and
 * the quotes of system and tenant. */
#define REQ_FRAMING_BYTES 1024
/* One message's framing: {"role":"assistant","content":""}, is 34 bytes. */
#define REQ_MESSAGE_BYTES 64
/* A model the worker chose (default, route, fallback) rather than the task:
 * at most 128 characters that need no escape (AQ_ROUTE_MODEL_MAX). */
#define REQ_WORKER_MODEL_BYTES 256

static size_t add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t mul_sat(size_t a, size_t b)
{
    return b != 0 && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

/* A string of up to n bytes, escaped at worst and quoted. */
static size_t escaped_max(size_t n)
{
    return add_sat(mul_sat(n, REQ_ESCAPE_WORST), 2);
}

size_t aq_llm_request_body_cap(const aq_task_limits *lim)
{
    if (!lim)
        return 0;
    size_t field = escaped_max(lim->max_field_bytes);
    size_t model = field > REQ_WORKER_MODEL_BYTES ? field : REQ_WORKER_MODEL_BYTES;
    size_t messages = lim->max_messages > 0 ? lim->max_messages : 1; /* or the prompt's one */
    size_t n = REQ_FRAMING_BYTES;
    n = add_sat(n, model);
    n = add_sat(n, field); /* metadata.user_id: the tenant */
    n = add_sat(n, mul_sat(lim->max_prompt_bytes, REQ_ESCAPE_WORST)); /* system + contents */
    n = add_sat(n, mul_sat(messages, REQ_MESSAGE_BYTES));
    n = add_sat(n, mul_sat(lim->max_stop_sequences, add_sat(field, 1)));
    return n;
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
