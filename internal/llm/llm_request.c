#include "llm_request.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
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
/* One content block's or tool's framing beyond the text counted in
 * max_prompt_bytes: its type, ids (at most AQ_TASK_TOOL_USE_ID_MAX), name,
 * media type, is_error, cache_control, brackets. */
#define REQ_BLOCK_BYTES 512
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
    n = add_sat(n, mul_sat(add_sat(lim->max_blocks, lim->max_tools), REQ_BLOCK_BYTES));
    n = add_sat(n, mul_sat(add_sat(lim->max_media_bytes, 2) / 3, 4)); /* base64, never escaped */
    return n;
}

int64_t aq_llm_estimate_tokens(size_t bytes)
{
    return (int64_t)(bytes / 4 + (bytes % 4 != 0));
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

void aq_llm_request_parts_from_task(const Agentq__V1__Task *task, const char *model,
                                    uint32_t max_tokens, aq_llm_request_parts *out)
{
    memset(out, 0, sizeof(*out));
    out->model = model;
    out->max_tokens = max_tokens;
    if (!task)
        return;
    out->system = task->system;
    out->messages = task->messages;
    out->n_messages = task->n_messages;
    out->prompt = task->prompt;
    out->tools = task->tools;
    out->n_tools = task->n_tools;
    out->tool_choice = task->tool_choice;
    out->has_temperature =
        task->temperature_presence_case == AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
    out->temperature = task->temperature;
    out->stop_sequences = task->stop_sequences;
    out->n_stop_sequences = task->n_stop_sequences;
    out->user_id = task->tenant;
}

/* ---- estimates ---- */

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

/* Bytes of text of one block, and the tokens of its media. */
static void block_size(const Agentq__V1__ContentBlock *b, size_t *bytes, int64_t *media_tokens)
{
    if (!b)
        return;
    switch (b->block_case) {
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT:
        *bytes += b->text ? slen(b->text->text) : 0;
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE:
        *media_tokens += AQ_LLM_IMAGE_TOKENS_EST;
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT:
        if (!b->document)
            break;
        *bytes += slen(b->document->title);
        if (b->document->source && b->document->source->data.len > 0)
            *media_tokens += aq_llm_estimate_tokens(b->document->source->data.len);
        else
            *media_tokens += AQ_LLM_IMAGE_TOKENS_EST;
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE:
        if (b->tool_use)
            *bytes += slen(b->tool_use->name) + slen(b->tool_use->input_json);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT:
        /* tool_result content is text, image or document only: one level */
        for (size_t k = 0; b->tool_result && k < b->tool_result->n_content; k++)
            if (b->tool_result->content[k] &&
                b->tool_result->content[k]->block_case != AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT)
                block_size(b->tool_result->content[k], bytes, media_tokens);
        break;
    default: break;
    }
}

int64_t aq_llm_request_input_tokens(const aq_llm_request_parts *p)
{
    if (!p)
        return 0;
    size_t bytes = slen(p->system) + slen(p->prompt);
    int64_t media = 0;
    for (size_t i = 0; i < p->n_messages; i++) {
        const Agentq__V1__Message *m = p->messages[i];
        if (!m)
            continue;
        bytes += slen(m->content);
        for (size_t j = 0; j < m->n_blocks; j++)
            block_size(m->blocks[j], &bytes, &media);
    }
    for (size_t k = 0; k < p->n_tools; k++)
        if (p->tools[k])
            bytes += slen(p->tools[k]->name) + slen(p->tools[k]->description) +
                     slen(p->tools[k]->input_schema_json);
    return aq_llm_estimate_tokens(bytes) + media;
}

int64_t aq_llm_task_input_tokens(const Agentq__V1__Task *task)
{
    if (!task)
        return 0;
    aq_llm_request_parts p;
    aq_llm_request_parts_from_task(task, NULL, 0, &p);
    return aq_llm_request_input_tokens(&p);
}

/* ---- prompt-caching marks ---- */

static bool parts_mark_system(const aq_llm_request_parts *p, const aq_llm_request_opts *opts)
{
    return opts && opts->prompt_cache_min_tokens > 0 && !str_empty(p->system) &&
           aq_llm_estimate_tokens(strlen(p->system)) >= (int64_t)opts->prompt_cache_min_tokens;
}

bool aq_llm_request_marks_system(const Agentq__V1__Task *task, const aq_llm_request_opts *opts)
{
    if (!task)
        return false;
    aq_llm_request_parts p;
    aq_llm_request_parts_from_task(task, NULL, 0, &p);
    return parts_mark_system(&p, opts);
}

/* The index of the user message that PREV_USER marks, or -1. */
static long prev_user_index(const aq_llm_request_parts *p)
{
    for (size_t i = p->n_messages > 0 ? p->n_messages - 1 : 0; i-- > 0;)
        if (p->messages[i] && p->messages[i]->role && strcmp(p->messages[i]->role, "user") == 0)
            return (long)i;
    return -1;
}

uint32_t aq_llm_request_cache_marks(const aq_llm_request_parts *p, const aq_llm_request_opts *opts)
{
    if (!p || !opts)
        return 0;
    uint32_t want = opts->cache_breakpoints, marks = 0;
    if ((want & AQ_LLM_CACHE_TOOLS) && p->n_tools > 0)
        marks |= AQ_LLM_CACHE_TOOLS;
    if (((want & AQ_LLM_CACHE_SYSTEM) && !str_empty(p->system)) || parts_mark_system(p, opts))
        marks |= AQ_LLM_CACHE_SYSTEM;
    if ((want & AQ_LLM_CACHE_LAST_MESSAGE) && (p->n_messages > 0 || !str_empty(p->prompt)))
        marks |= AQ_LLM_CACHE_LAST_MESSAGE;
    if ((want & AQ_LLM_CACHE_PREV_USER) && prev_user_index(p) >= 0)
        marks |= AQ_LLM_CACHE_PREV_USER;
    return marks;
}

/* ---- building the body ---- */

#define NOMEM(err) aq_err_set((err), AQ_NOMEM, "out of memory building the request")

static aq_status mark_cached(json_t *block, aq_err *err)
{
    json_t *cc = json_pack("{s:s}", "type", "ephemeral");
    if (!cc || json_object_set_new(block, "cache_control", cc) != 0)
        return NOMEM(err);
    return AQ_OK;
}

/* obj[key] = value (consumed, also on failure); NULL value: out of memory. */
static aq_status set_new(json_t *obj, const char *key, json_t *value, aq_err *err)
{
    if (!value || json_object_set_new(obj, key, value) != 0)
        return NOMEM(err);
    return AQ_OK;
}

/* A JSON object from text (validated tasks only hold objects here: a
 * failure still names the field). A "\u0000" inside a string is allowed:
 * the model may write one in a tool input (the answer's parser keeps it),
 * and that input goes back to it in the next step's request. */
static aq_status parse_object(const char *text, const char *what, json_t **out, aq_err *err)
{
    json_t *v = json_loads(text ? text : "", JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return aq_err_set(err, AQ_TASK_INVALID, "%s is not a JSON object", what);
    }
    *out = v;
    return AQ_OK;
}

/* {"type":"base64","media_type","data"} (the bytes base64-encoded),
 * {"type":"text","media_type":"text/plain","data"} for a plain-text document,
 * or {"type":"url","url"}. */
static aq_status media_source(const Agentq__V1__MediaSource *src, const char *what, json_t **out,
                              aq_err *err)
{
    aq_status st = AQ_OK;
    char *b64 = NULL;
    char sub[160];
    json_t *o = json_object();
    if (!o)
        return NOMEM(err);
    if (!src) {
        st = aq_err_set(err, AQ_TASK_INVALID, "%s.source is missing", what);
        goto out;
    }
    if (src->data.len == 0) {
        snprintf(sub, sizeof(sub), "%s.source.url", what);
        if ((st = set_new(o, "type", json_string("url"), err)) != AQ_OK ||
            (st = obj_set_str(o, "url", src->url, sub, err)) != AQ_OK)
            goto out;
    } else if (src->media_type && strcmp(src->media_type, "text/plain") == 0) {
        json_t *data = json_stringn((const char *)src->data.data, src->data.len);
        if (!data) {
            st = aq_err_set(err, AQ_TASK_INVALID, "%s.source.data (text/plain) is not valid UTF-8",
                            what);
            goto out;
        }
        if ((st = set_new(o, "type", json_string("text"), err)) != AQ_OK ||
            (st = set_new(o, "media_type", json_string("text/plain"), err)) != AQ_OK ||
            (st = set_new(o, "data", data, err)) != AQ_OK)
            goto out;
    } else {
        if (src->data.len > (size_t)INT_MAX / 4 * 3) {
            st = aq_err_set(err, AQ_TOO_BIG, "%s.source.data is too large to encode", what);
            goto out;
        }
        if (!(b64 = malloc(4 * ((src->data.len + 2) / 3) + 1))) {
            st = NOMEM(err);
            goto out;
        }
        int w = EVP_EncodeBlock((unsigned char *)b64, src->data.data, (int)src->data.len);
        snprintf(sub, sizeof(sub), "%s.source.media_type", what);
        if ((st = set_new(o, "type", json_string("base64"), err)) != AQ_OK ||
            (st = obj_set_str(o, "media_type", src->media_type, sub, err)) != AQ_OK ||
            (st = set_new(o, "data", json_stringn_nocheck(b64, (size_t)w), err)) != AQ_OK)
            goto out;
    }
    *out = o;
    o = NULL;
out:
    free(b64);
    json_decref(o);
    return st;
}

static aq_status block_json(const Agentq__V1__ContentBlock *b, const char *what, json_t **out,
                            aq_err *err);

/* tool_result: the id, content (text, image and document blocks) and is_error. */
static aq_status tool_result_json(const Agentq__V1__ToolResultBlock *tr, const char *what,
                                  json_t *o, aq_err *err)
{
    char sub[160];
    aq_status st;
    snprintf(sub, sizeof(sub), "%s.tool_result.tool_use_id", what);
    if ((st = obj_set_str(o, "tool_use_id", tr->tool_use_id, sub, err)) != AQ_OK)
        return st;
    if (tr->n_content > 0) {
        json_t *arr = json_array();
        if ((st = set_new(o, "content", arr, err)) != AQ_OK)
            return st;
        for (size_t k = 0; k < tr->n_content; k++) {
            const Agentq__V1__ContentBlock *c = tr->content[k];
            json_t *cj = NULL;
            snprintf(sub, sizeof(sub), "%s.tool_result.content[%zu]", what, k);
            /* Never recurse into a nested tool_result: the depth stays bounded. */
            if (c && (c->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT ||
                      c->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE))
                return aq_err_set(err, AQ_TASK_INVALID,
                                  "%s must be a text, image or document block", sub);
            if ((st = block_json(c, sub, &cj, err)) != AQ_OK)
                return st;
            if (json_array_append_new(arr, cj) != 0)
                return NOMEM(err);
        }
    }
    if (tr->is_error && json_object_set_new(o, "is_error", json_true()) != 0)
        return NOMEM(err);
    return AQ_OK;
}

static aq_status block_json(const Agentq__V1__ContentBlock *b, const char *what, json_t **out,
                            aq_err *err)
{
    char sub[160];
    aq_status st = AQ_OK;
    json_t *o = json_object(), *v = NULL;
    if (!o)
        return NOMEM(err);
    switch (b ? b->block_case : AGENTQ__V1__CONTENT_BLOCK__BLOCK__NOT_SET) {
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT:
        snprintf(sub, sizeof(sub), "%s.text", what);
        if ((st = set_new(o, "type", json_string("text"), err)) == AQ_OK)
            st = obj_set_str(o, "text", b->text ? b->text->text : "", sub, err);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE:
        snprintf(sub, sizeof(sub), "%s.image", what);
        if ((st = set_new(o, "type", json_string("image"), err)) == AQ_OK &&
            (st = media_source(b->image ? b->image->source : NULL, sub, &v, err)) == AQ_OK)
            st = set_new(o, "source", v, err);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT:
        snprintf(sub, sizeof(sub), "%s.document", what);
        if ((st = set_new(o, "type", json_string("document"), err)) == AQ_OK &&
            (st = media_source(b->document ? b->document->source : NULL, sub, &v, err)) == AQ_OK &&
            (st = set_new(o, "source", v, err)) == AQ_OK && b->document &&
            !str_empty(b->document->title)) {
            snprintf(sub, sizeof(sub), "%s.document.title", what);
            st = obj_set_str(o, "title", b->document->title, sub, err);
        }
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE: {
        const Agentq__V1__ToolUseBlock *tu = b->tool_use;
        if (!tu) {
            st = aq_err_set(err, AQ_TASK_INVALID, "%s.tool_use is missing", what);
            break;
        }
        if ((st = set_new(o, "type", json_string("tool_use"), err)) != AQ_OK)
            break;
        snprintf(sub, sizeof(sub), "%s.tool_use.id", what);
        if ((st = obj_set_str(o, "id", tu->id, sub, err)) != AQ_OK)
            break;
        snprintf(sub, sizeof(sub), "%s.tool_use.name", what);
        if ((st = obj_set_str(o, "name", tu->name, sub, err)) != AQ_OK)
            break;
        snprintf(sub, sizeof(sub), "%s.tool_use.input_json", what);
        if ((st = parse_object(tu->input_json, sub, &v, err)) == AQ_OK)
            st = set_new(o, "input", v, err);
        break;
    }
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT:
        if (!b->tool_result) {
            st = aq_err_set(err, AQ_TASK_INVALID, "%s.tool_result is missing", what);
            break;
        }
        if ((st = set_new(o, "type", json_string("tool_result"), err)) == AQ_OK)
            st = tool_result_json(b->tool_result, what, o, err);
        break;
    default:
        st = aq_err_set(err, AQ_TASK_INVALID, "%s is an empty content block", what);
        break;
    }
    if (st != AQ_OK) {
        json_decref(o);
        return st;
    }
    *out = o;
    return AQ_OK;
}

/* One message {"role","content"}: content a string, or blocks. `m` NULL and
 * `idx` < 0: the prompt shorthand. `mark`: cache_control on its last block. */
static aq_status add_message(json_t *arr, const char *role, const char *content,
                             const Agentq__V1__Message *m, long idx, bool mark, aq_err *err)
{
    char what[64];
    aq_status st = AQ_OK;
    json_t *content_json = NULL;
    json_t *o = json_object();
    if (!o)
        return NOMEM(err);
    snprintf(what, sizeof(what), "messages[%ld].role", idx);
    if ((st = obj_set_str(o, "role", role, what, err)) != AQ_OK)
        goto out;
    if (idx < 0)
        snprintf(what, sizeof(what), "prompt");
    else
        snprintf(what, sizeof(what), "messages[%ld].content", idx);
    if (m && m->n_blocks > 0) {
        if (!(content_json = json_array())) {
            st = NOMEM(err);
            goto out;
        }
        for (size_t j = 0; j < m->n_blocks; j++) {
            json_t *bj = NULL;
            snprintf(what, sizeof(what), "messages[%ld].blocks[%zu]", idx, j);
            if ((st = block_json(m->blocks[j], what, &bj, err)) != AQ_OK)
                goto out;
            if (json_array_append_new(content_json, bj) != 0) {
                st = NOMEM(err);
                goto out;
            }
        }
    } else if (mark) {
        /* A marked string becomes one text block: the same tokens. */
        json_t *text = NULL, *blk = json_object();
        if (!blk || !(content_json = json_array()) || json_array_append_new(content_json, blk) != 0) {
            json_decref(blk);
            st = NOMEM(err);
            goto out;
        }
        if ((st = set_new(blk, "type", json_string("text"), err)) != AQ_OK ||
            (st = new_str(content, what, &text, err)) != AQ_OK ||
            (st = set_new(blk, "text", text, err)) != AQ_OK)
            goto out;
    } else if ((st = new_str(content, what, &content_json, err)) != AQ_OK) {
        goto out;
    }
    if (mark && (st = mark_cached(json_array_get(content_json, json_array_size(content_json) - 1),
                                  err)) != AQ_OK)
        goto out;
    st = set_new(o, "content", content_json, err);
    content_json = NULL;
    if (st == AQ_OK && json_array_append(arr, o) != 0)
        st = NOMEM(err);
out:
    json_decref(content_json);
    json_decref(o);
    return st;
}

static aq_status add_tools(json_t *root, const aq_llm_request_parts *p, bool mark_last,
                           aq_err *err)
{
    aq_status st;
    char what[64];
    json_t *arr = json_array();
    if ((st = set_new(root, "tools", arr, err)) != AQ_OK)
        return st;
    for (size_t k = 0; k < p->n_tools; k++) {
        const Agentq__V1__Tool *t = p->tools[k];
        json_t *schema = NULL, *o = json_object();
        if (!o || json_array_append_new(arr, o) != 0)
            return NOMEM(err);
        if (!t)
            return aq_err_set(err, AQ_TASK_INVALID, "tools[%zu] is missing", k);
        snprintf(what, sizeof(what), "tools[%zu].name", k);
        if ((st = obj_set_str(o, "name", t->name, what, err)) != AQ_OK)
            return st;
        snprintf(what, sizeof(what), "tools[%zu].description", k);
        if (!str_empty(t->description) &&
            (st = obj_set_str(o, "description", t->description, what, err)) != AQ_OK)
            return st;
        snprintf(what, sizeof(what), "tools[%zu].input_schema_json", k);
        if ((st = parse_object(t->input_schema_json, what, &schema, err)) != AQ_OK ||
            (st = set_new(o, "input_schema", schema, err)) != AQ_OK)
            return st;
        if (mark_last && k + 1 == p->n_tools && (st = mark_cached(o, err)) != AQ_OK)
            return st;
    }
    const Agentq__V1__ToolChoice *tc = p->tool_choice;
    if (!tc || (tc->type == AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_UNSPECIFIED &&
                !tc->disable_parallel_tool_use))
        return AQ_OK; /* the API's default: auto */
    const char *type;
    switch (tc->type) {
    case AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_UNSPECIFIED: type = "auto"; break;
    case AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY: type = "any"; break;
    case AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL: type = "tool"; break;
    case AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE: type = "none"; break;
    default:
        return aq_err_set(err, AQ_TASK_INVALID, "tool_choice.type %d is unknown", (int)tc->type);
    }
    json_t *o = json_object();
    if ((st = set_new(root, "tool_choice", o, err)) != AQ_OK ||
        (st = set_new(o, "type", json_string(type), err)) != AQ_OK)
        return st;
    if (tc->type == AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL &&
        (st = obj_set_str(o, "name", tc->name, "tool_choice.name", err)) != AQ_OK)
        return st;
    /* The API's "none" takes no disable_parallel_tool_use. */
    if (tc->disable_parallel_tool_use &&
        tc->type != AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE &&
        json_object_set_new(o, "disable_parallel_tool_use", json_true()) != 0)
        return NOMEM(err);
    return AQ_OK;
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
    if (!task)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_request_build: NULL task or buffer");
    aq_llm_request_parts p;
    aq_llm_request_parts_from_task(task, model, max_tokens, &p);
    return aq_llm_request_build_parts(&p, opts, out, err);
}

aq_status aq_llm_request_build_parts(const aq_llm_request_parts *p,
                                     const aq_llm_request_opts *opts, aq_buf *out, aq_err *err)
{
    aq_status st = AQ_OK;
    json_t *root = NULL;
    json_t *msgs = NULL;
    size_t start_len = out ? out->len : 0;

    if (!p || !out)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_request_build: NULL task or buffer");
    if (str_empty(p->model))
        return aq_err_set(err, AQ_INVALID_ARG, "no model chosen for the request");
    if (p->max_tokens == 0)
        return aq_err_set(err, AQ_INVALID_ARG, "max_tokens must be at least 1");
    if (p->n_messages == 0 && str_empty(p->prompt))
        return aq_err_set(err, AQ_TASK_INVALID, "task has neither a prompt nor messages");
    uint32_t marks = aq_llm_request_cache_marks(p, opts);
    long prev_user = (marks & AQ_LLM_CACHE_PREV_USER) ? prev_user_index(p) : -1;

    root = json_object();
    msgs = json_array();
    if (!root || !msgs) {
        st = NOMEM(err);
        goto out;
    }
    if ((st = obj_set_str(root, "model", p->model, "model", err)) != AQ_OK)
        goto out;
    if (json_object_set_new(root, "max_tokens", json_integer((json_int_t)p->max_tokens)) != 0) {
        st = NOMEM(err);
        goto out;
    }
    if (marks & AQ_LLM_CACHE_SYSTEM) {
        if ((st = set_cached_system(root, p->system, err)) != AQ_OK)
            goto out;
    } else if (!str_empty(p->system) &&
               (st = obj_set_str(root, "system", p->system, "system", err)) != AQ_OK) {
        goto out;
    }

    if (p->n_messages > 0) {
        for (size_t i = 0; i < p->n_messages; i++) {
            const Agentq__V1__Message *m = p->messages[i];
            if (!m) {
                st = aq_err_set(err, AQ_TASK_INVALID, "messages[%zu] is missing", i);
                goto out;
            }
            bool mark = ((marks & AQ_LLM_CACHE_LAST_MESSAGE) && i + 1 == p->n_messages) ||
                        (long)i == prev_user;
            if ((st = add_message(msgs, m->role, m->content, m, (long)i, mark, err)) != AQ_OK)
                goto out;
        }
    } else if ((st = add_message(msgs, "user", p->prompt, NULL, -1,
                                 (marks & AQ_LLM_CACHE_LAST_MESSAGE) != 0, err)) != AQ_OK) {
        goto out;
    }
    if (json_object_set(root, "messages", msgs) != 0) {
        st = NOMEM(err);
        goto out;
    }

    if (p->has_temperature &&
        json_object_set_new(root, "temperature",
                            json_real(float_to_short_double(p->temperature))) != 0) {
        st = NOMEM(err);
        goto out;
    }

    if (p->n_stop_sequences > 0) {
        json_t *stops = json_array();
        if (!stops || json_object_set_new(root, "stop_sequences", stops) != 0) {
            st = NOMEM(err);
            goto out;
        }
        for (size_t i = 0; i < p->n_stop_sequences; i++) {
            char what[48];
            json_t *s = NULL;
            snprintf(what, sizeof(what), "stop_sequences[%zu]", i);
            if ((st = new_str(p->stop_sequences[i], what, &s, err)) != AQ_OK)
                goto out;
            if (json_array_append_new(stops, s) != 0) {
                st = NOMEM(err);
                goto out;
            }
        }
    }

    if (!str_empty(p->user_id)) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "metadata", meta) != 0) {
            st = NOMEM(err);
            goto out;
        }
        if ((st = obj_set_str(meta, "user_id", p->user_id, "tenant", err)) != AQ_OK)
            goto out;
    }

    if (p->n_tools > 0 &&
        (st = add_tools(root, p, (marks & AQ_LLM_CACHE_TOOLS) != 0, err)) != AQ_OK)
        goto out;

    if (opts && opts->stream && json_object_set_new(root, "stream", json_true()) != 0) {
        st = NOMEM(err);
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
