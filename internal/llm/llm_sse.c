#include "llm_sse.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "llm_internal.h"

/* An event name longer than this is no type the parser knows: it is kept
 * cut (and so matches none). */
#define EVENT_NAME_MAX 64
/* How much provider text goes into an error message. */
#define ERR_TEXT_MAX 300
/* A line's field name and separator beyond the event cap ("data: "). */
#define LINE_SLACK 64

typedef enum blk_kind { BLK_NONE = 0, BLK_TEXT, BLK_TOOL, BLK_SKIP } blk_kind;

struct aq_llm_sse {
    aq_llm_sse_limits lim;
    /* line and event assembly */
    aq_buf line;          /* a line cut by the end of a feed */
    aq_buf data;          /* the event's data lines, joined with "\n" */
    bool data_seen;
    bool skip_lf;         /* the last line ended with CR: an LF next is its CRLF */
    char event[EVENT_NAME_MAX + 1];
    /* state */
    aq_status failed;
    aq_err ferr;
    bool started, complete, taken;
    uint64_t deltas, events;
    size_t n_seen;        /* content blocks started (all kinds) */
    size_t total;         /* text + tool input bytes so far */
    /* the open block */
    blk_kind open;
    size_t open_len;      /* its text or input bytes */
    size_t open_off;      /* TEXT: where its text starts */
    aq_buf json;          /* TOOL: partial_json concatenated */
    bool json_delta;      /* TOOL: a delta came (else the initial input is used) */
    json_t *initial;      /* TOOL: content_block.input */
    char *id, *name;      /* TOOL */
    /* the answer */
    aq_llm_response r;
    size_t blocks_alloc;
    aq_buf text;
};

static aq_status fail(aq_llm_sse *p, aq_err *err, aq_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static aq_status fail(aq_llm_sse *p, aq_err *err, aq_status st, const char *fmt, ...)
{
    va_list ap;
    char msg[AQ_ERR_MAX];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    p->failed = aq_err_set(&p->ferr, st, "%s", msg);
    return aq_err_set(err, st, "%s", msg);
}

/* A status an inner helper already put in p->ferr. */
static aq_status fail_with(aq_llm_sse *p, aq_err *err, aq_status st)
{
    p->failed = st;
    p->ferr.status = st;
    return aq_err_set(err, st, "%s", p->ferr.msg);
}

aq_status aq_llm_sse_new(const aq_llm_sse_limits *lim, aq_llm_sse **out, aq_err *err)
{
    if (!out)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_sse_new: NULL out");
    aq_llm_sse *p = calloc(1, sizeof(*p));
    if (!p)
        return aq_err_set(err, AQ_NOMEM, "out of memory creating the stream parser");
    if (lim)
        p->lim = *lim;
    if (!p->lim.max_event_bytes)
        p->lim.max_event_bytes = AQ_LLM_SSE_DEFAULT_EVENT_MAX;
    if (!p->lim.max_total_bytes)
        p->lim.max_total_bytes = AQ_LLM_SSE_DEFAULT_TOTAL_MAX;
    if (!p->lim.max_block_bytes || p->lim.max_block_bytes > p->lim.max_total_bytes)
        p->lim.max_block_bytes = p->lim.max_total_bytes;
    aq_buf_init(&p->line, p->lim.max_event_bytes + LINE_SLACK);
    aq_buf_init(&p->data, p->lim.max_event_bytes);
    aq_buf_init(&p->text, p->lim.max_total_bytes);
    aq_buf_init(&p->json, 0);
    *out = p;
    return AQ_OK;
}

static void open_block_clear(aq_llm_sse *p)
{
    p->open = BLK_NONE;
    p->open_len = 0;
    p->open_off = 0;
    aq_buf_free(&p->json);
    p->json_delta = false;
    json_decref(p->initial);
    p->initial = NULL;
    free(p->id);
    free(p->name);
    p->id = p->name = NULL;
}

void aq_llm_sse_free(aq_llm_sse *p)
{
    if (!p)
        return;
    open_block_clear(p);
    aq_buf_free(&p->line);
    aq_buf_free(&p->data);
    aq_buf_free(&p->text);
    aq_llm_response_free(&p->r);
    free(p);
}

uint64_t aq_llm_sse_deltas(const aq_llm_sse *p)
{
    return p ? p->deltas : 0;
}

uint64_t aq_llm_sse_events(const aq_llm_sse *p)
{
    return p ? p->events : 0;
}

int aq_llm_sse_complete(const aq_llm_sse *p)
{
    return p && p->complete;
}

/* ---- the events --------------------------------------------------------- */

/* A member that must be a non-negative integer that fits size_t. */
static bool get_index(json_t *o, size_t *out)
{
    json_t *v = json_object_get(o, "index");
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (size_t)json_integer_value(v);
    return true;
}

static aq_status add_block(aq_llm_sse *p, aq_err *err, aq_llm_block b)
{
    if (p->r.n_blocks == p->blocks_alloc) {
        size_t n = p->blocks_alloc ? p->blocks_alloc * 2 : 4;
        aq_llm_block *nb = realloc(p->r.blocks, n * sizeof(*nb));
        if (!nb)
            return fail(p, err, AQ_NOMEM, "out of memory parsing the stream");
        p->r.blocks = nb;
        p->blocks_alloc = n;
    }
    p->r.blocks[p->r.n_blocks++] = b;
    return AQ_OK;
}

/* Count `n` more bytes of the open block against its cap and the total. */
static aq_status charge(aq_llm_sse *p, aq_err *err, size_t n, const char *what)
{
    size_t block_cap = p->lim.max_block_bytes;
    if (p->open == BLK_TOOL && block_cap > AQ_LLM_TOOL_INPUT_MAX)
        block_cap = AQ_LLM_TOOL_INPUT_MAX;
    if (n > block_cap - p->open_len)
        return fail(p, err, AQ_LLM_RESPONSE_TOO_BIG,
                    "streamed content block %zu (%s) is over the %zu-byte block cap",
                    p->n_seen - 1, what, block_cap);
    if (n > p->lim.max_total_bytes - p->total)
        return fail(p, err, AQ_LLM_RESPONSE_TOO_BIG,
                    "streamed answer is over the %zu-byte cap (text and tool inputs)",
                    p->lim.max_total_bytes);
    p->open_len += n;
    p->total += n;
    return AQ_OK;
}

static aq_status on_message_start(aq_llm_sse *p, json_t *root, aq_err *err)
{
    aq_status st;
    if (p->started)
        return fail(p, err, AQ_LLM_BAD_RESPONSE, "stream has a second message_start");
    p->started = true;
    json_t *m = json_object_get(root, "message");
    if (!json_is_object(m))
        return fail(p, err, AQ_LLM_BAD_RESPONSE, "stream message_start has no \"message\" object");
    json_t *usage = json_object_get(m, "usage");
    if (!json_is_object(usage))
        return fail(p, err, AQ_LLM_BAD_RESPONSE,
                    "stream message_start has no \"usage\" object");
    if ((st = aq_llm_json_opt_string(m, "id", &p->r.id, &p->ferr)) != AQ_OK ||
        (st = aq_llm_json_opt_string(m, "model", &p->r.model, &p->ferr)) != AQ_OK ||
        (st = aq_llm_json_token_count(usage, "input_tokens", 1, &p->r.usage.input_tokens,
                                      &p->ferr)) != AQ_OK ||
        (st = aq_llm_json_token_count(usage, "output_tokens", 1, &p->r.usage.output_tokens,
                                      &p->ferr)) != AQ_OK ||
        (st = aq_llm_json_token_count(usage, "cache_creation_input_tokens", 0,
                                      &p->r.usage.cache_creation_input_tokens, &p->ferr)) != AQ_OK ||
        (st = aq_llm_json_token_count(usage, "cache_read_input_tokens", 0,
                                      &p->r.usage.cache_read_input_tokens, &p->ferr)) != AQ_OK)
        return fail_with(p, err, st);
    return AQ_OK;
}

static aq_status on_block_start(aq_llm_sse *p, json_t *root, aq_err *err)
{
    size_t idx;
    if (p->open != BLK_NONE)
        return fail(p, err, AQ_LLM_BAD_RESPONSE,
                    "stream content_block_start while block %zu is open", p->n_seen - 1);
    if (!get_index(root, &idx) || idx != p->n_seen)
        return fail(p, err, AQ_LLM_BAD_RESPONSE,
                    "stream content_block_start has index other than %zu", p->n_seen);
    if (p->n_seen >= AQ_LLM_BLOCKS_MAX)
        return fail(p, err, AQ_LLM_BAD_RESPONSE,
                    "stream has more than %u content blocks (the cap)", AQ_LLM_BLOCKS_MAX);
    json_t *cb = json_object_get(root, "content_block");
    json_t *type = json_object_get(cb, "type");
    if (!json_is_object(cb) || !json_is_string(type))
        return fail(p, err, AQ_LLM_BAD_RESPONSE,
                    "stream content_block_start %zu has no content_block with a string \"type\"",
                    idx);
    p->n_seen++;
    const char *t = json_string_value(type);
    if (strcmp(t, "text") == 0) {
        json_t *tx = json_object_get(cb, "text");
        p->open = BLK_TEXT;
        p->open_off = p->text.len;
        if (tx && !json_is_string(tx))
            return fail(p, err, AQ_LLM_BAD_RESPONSE,
                        "stream content block %zu: \"text\" is not a string", idx);
        size_t n = tx ? json_string_length(tx) : 0;
        aq_status st;
        if (n > 0 && (st = charge(p, err, n, "text")) != AQ_OK)
            return st;
        if (n > 0 && aq_buf_append(&p->text, json_string_value(tx), n) != AQ_OK)
            return fail(p, err, AQ_NOMEM, "out of memory parsing the stream");
    } else if (strcmp(t, "tool_use") == 0) {
        p->open = BLK_TOOL;
        if (++p->r.n_tool_use > AQ_LLM_TOOL_USES_MAX)
            return fail(p, err, AQ_LLM_BAD_RESPONSE,
                        "stream has more than %u tool_use blocks (the cap)", AQ_LLM_TOOL_USES_MAX);
        char where[48];
        snprintf(where, sizeof(where), "stream content block %zu", idx);
        aq_status st;
        if ((st = aq_llm_tool_use_field(cb, "id", where, &p->id, &p->ferr)) != AQ_OK ||
            (st = aq_llm_tool_use_field(cb, "name", where, &p->name, &p->ferr)) != AQ_OK)
            return fail_with(p, err, st);
        json_t *in = json_object_get(cb, "input");
        if (in && !json_is_object(in))
            return fail(p, err, AQ_LLM_BAD_RESPONSE,
                        "stream content block %zu (tool_use): \"input\" is not an object", idx);
        p->initial = json_incref(in);
        /* the deltas' bytes are charged as they come; the buffer only holds them */
        aq_buf_init(&p->json, SIZE_MAX);
    } else {
        p->open = BLK_SKIP; /* thinking, server tool blocks, future types */
    }
    return AQ_OK;
}

static aq_status on_block_delta(aq_llm_sse *p, json_t *root, aq_err *err)
{
    size_t idx;
    if (p->open == BLK_NONE || !get_index(root, &idx) || idx + 1 != p->n_seen)
        return fail(p, err, AQ_LLM_BAD_RESPONSE,
                    "stream content_block_delta for a block that is not open");
    p->deltas++;
    json_t *d = json_object_get(root, "delta");
    json_t *type = json_object_get(d, "type");
    if (!json_is_object(d) || !json_is_string(type))
        return fail(p, err, AQ_LLM_BAD_RESPONSE,
                    "stream content_block_delta %zu has no delta with a string \"type\"", idx);
    const char *t = json_string_value(type);
    aq_status st;
    if (strcmp(t, "text_delta") == 0) {
        if (p->open == BLK_SKIP)
            return AQ_OK;
        json_t *tx = json_object_get(d, "text");
        if (p->open != BLK_TEXT || !json_is_string(tx))
            return fail(p, err, AQ_LLM_BAD_RESPONSE,
                        "stream text_delta for block %zu without a string \"text\" or not a text "
                        "block", idx);
        size_t n = json_string_length(tx);
        if ((st = charge(p, err, n, "text")) != AQ_OK)
            return st;
        if (aq_buf_append(&p->text, json_string_value(tx), n) != AQ_OK)
            return fail(p, err, AQ_NOMEM, "out of memory parsing the stream");
    } else if (strcmp(t, "input_json_delta") == 0) {
        if (p->open == BLK_SKIP)
            return AQ_OK; /* server tool inputs */
        json_t *pj = json_object_get(d, "partial_json");
        if (p->open != BLK_TOOL || !json_is_string(pj))
            return fail(p, err, AQ_LLM_BAD_RESPONSE,
                        "stream input_json_delta for block %zu without a string \"partial_json\" "
                        "or not a tool_use block", idx);
        size_t n = json_string_length(pj);
        if ((st = charge(p, err, n, "tool input")) != AQ_OK)
            return st;
        if (aq_buf_append(&p->json, json_string_value(pj), n) != AQ_OK)
            return fail(p, err, AQ_NOMEM, "out of memory parsing the stream");
        p->json_delta = true;
    }
    /* thinking_delta, signature_delta, citations_delta, newer types: not kept */
    return AQ_OK;
}

static aq_status on_block_stop(aq_llm_sse *p, json_t *root, aq_err *err)
{
    size_t idx;
    if (p->open == BLK_NONE || !get_index(root, &idx) || idx + 1 != p->n_seen)
        return fail(p, err, AQ_LLM_BAD_RESPONSE,
                    "stream content_block_stop for a block that is not open");
    aq_status st = AQ_OK;
    json_t *input = NULL;
    if (p->open == BLK_TEXT && p->open_len > 0) {
        st = add_block(p, err,
                       (aq_llm_block){AQ_LLM_BLOCK_TEXT, p->open_off, p->open_len, NULL, NULL, NULL});
    } else if (p->open == BLK_TOOL) {
        if (p->json_delta) {
            json_error_t jerr;
            input = json_loadb(p->json.data ? p->json.data : "", p->json.len,
                               JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
            if (!json_is_object(input)) {
                char jtext[sizeof(jerr.text) + 32];
                aq_llm_sanitize(jtext, sizeof(jtext), jerr.text, strlen(jerr.text),
                                sizeof(jtext), NULL);
                st = fail(p, err, AQ_LLM_BAD_RESPONSE,
                          "stream content block %zu (tool_use): the input_json_delta pieces are "
                          "not a JSON object%s%s",
                          idx, input ? "" : ": ", input ? "" : jtext);
                goto out;
            }
        } else {
            input = p->initial ? json_incref(p->initial) : json_object();
            if (!input) {
                st = fail(p, err, AQ_NOMEM, "out of memory parsing the stream");
                goto out;
            }
        }
        char *enc = json_dumps(input, JSON_COMPACT);
        if (!enc) {
            st = fail(p, err, AQ_NOMEM, "out of memory parsing the stream");
            goto out;
        }
        if (strlen(enc) > AQ_LLM_TOOL_INPUT_MAX) {
            free(enc);
            st = fail(p, err, AQ_LLM_BAD_RESPONSE,
                      "stream content block %zu (tool_use) input is over the %u-byte cap", idx,
                      AQ_LLM_TOOL_INPUT_MAX);
            goto out;
        }
        aq_llm_block b = {AQ_LLM_BLOCK_TOOL_USE, 0, 0, p->id, p->name, enc};
        if ((st = add_block(p, err, b)) != AQ_OK) {
            free(enc);
            goto out;
        }
        p->id = p->name = NULL; /* the block owns them now */
    }
out:
    json_decref(input);
    if (st == AQ_OK)
        open_block_clear(p);
    return st;
}

/* Replace *dst with delta[key] when it is present (null clears it). */
static aq_status replace_string(aq_llm_sse *p, json_t *delta, const char *key, char **dst,
                                aq_err *err)
{
    if (!json_object_get(delta, key))
        return AQ_OK;
    char *v = NULL;
    aq_status st = aq_llm_json_opt_string(delta, key, &v, &p->ferr);
    if (st != AQ_OK)
        return fail_with(p, err, st);
    free(*dst);
    *dst = v;
    return AQ_OK;
}

static aq_status on_message_delta(aq_llm_sse *p, json_t *root, aq_err *err)
{
    aq_status st;
    if (p->open != BLK_NONE)
        return fail(p, err, AQ_LLM_BAD_RESPONSE, "stream message_delta while a block is open");
    json_t *d = json_object_get(root, "delta");
    if (d && !json_is_object(d))
        return fail(p, err, AQ_LLM_BAD_RESPONSE, "stream message_delta \"delta\" is not an object");
    if (d && ((st = replace_string(p, d, "stop_reason", &p->r.stop_reason, err)) != AQ_OK ||
              (st = replace_string(p, d, "stop_sequence", &p->r.stop_sequence, err)) != AQ_OK))
        return st;
    json_t *usage = json_object_get(root, "usage");
    if (!usage || json_is_null(usage))
        return AQ_OK;
    if (!json_is_object(usage))
        return fail(p, err, AQ_LLM_BAD_RESPONSE, "stream message_delta \"usage\" is not an object");
    /* cumulative: every counter present is the whole message's so far */
    static const char *const keys[] = {"input_tokens", "output_tokens",
                                       "cache_creation_input_tokens", "cache_read_input_tokens"};
    uint32_t *dst[] = {&p->r.usage.input_tokens, &p->r.usage.output_tokens,
                       &p->r.usage.cache_creation_input_tokens,
                       &p->r.usage.cache_read_input_tokens};
    for (size_t k = 0; k < 4; k++) {
        json_t *v = json_object_get(usage, keys[k]);
        if (!v || json_is_null(v))
            continue;
        if ((st = aq_llm_json_token_count(usage, keys[k], 0, dst[k], &p->ferr)) != AQ_OK)
            return fail_with(p, err, st);
    }
    return AQ_OK;
}

static aq_status error_status(const char *type)
{
    static const struct {
        const char *type;
        aq_status st;
    } map[] = {
        {"overloaded_error", AQ_HTTP_OVERLOADED},
        {"rate_limit_error", AQ_HTTP_RATE_LIMITED},
        {"api_error", AQ_HTTP_SERVER_ERROR},
        {"invalid_request_error", AQ_HTTP_BAD_REQUEST},
        {"authentication_error", AQ_HTTP_UNAUTHORIZED},
        {"permission_error", AQ_HTTP_FORBIDDEN},
        {"not_found_error", AQ_HTTP_NOT_FOUND},
        {"request_too_large", AQ_HTTP_TOO_LARGE},
        {"billing_error", AQ_HTTP_BILLING},
        {"timeout_error", AQ_HTTP_TIMEOUT},
    };
    for (size_t i = 0; type && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(type, map[i].type) == 0)
            return map[i].st;
    return AQ_HTTP_SERVER_ERROR;
}

static aq_status on_error(aq_llm_sse *p, json_t *root, aq_err *err)
{
    json_t *e = json_object_get(root, "error");
    json_t *et = json_object_get(e, "type"), *em = json_object_get(e, "message");
    const char *type = json_is_string(et) ? json_string_value(et) : NULL;
    char t[80], m[ERR_TEXT_MAX + 8];
    aq_llm_sanitize(t, sizeof(t), type ? type : "(no type)", type ? json_string_length(et) : 9, 64,
                    NULL);
    if (json_is_string(em))
        aq_llm_sanitize(m, sizeof(m), json_string_value(em), json_string_length(em), ERR_TEXT_MAX,
                        NULL);
    else
        strcpy(m, "(no message)");
    return fail(p, err, error_status(type), "stream error event after %llu events: %s: %s",
                (unsigned long long)p->events, t, m);
}

static aq_status dispatch(aq_llm_sse *p, aq_err *err)
{
    aq_status st = AQ_OK;
    json_t *root = NULL;
    char name[EVENT_NAME_MAX + 1];
    memcpy(name, p->event, sizeof(name));
    bool had_data = p->data_seen;
    p->event[0] = '\0';
    p->data_seen = false;
    if (!had_data) {
        aq_buf_reset(&p->data);
        return AQ_OK; /* no data: nothing to dispatch (the SSE rule) */
    }
    p->events++;
    if (strcmp(name, "ping") == 0)
        goto out;
    json_error_t jerr;
    root = json_loadb(p->data.data ? p->data.data : "", p->data.len,
                      JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!json_is_object(root)) {
        char jtext[sizeof(jerr.text) + 32], ev[80];
        aq_llm_sanitize(ev, sizeof(ev), name[0] ? name : "message", strlen(name[0] ? name : "message"),
                        EVENT_NAME_MAX, NULL);
        if (root)
            snprintf(jtext, sizeof(jtext), "not an object");
        else
            aq_llm_sanitize(jtext, sizeof(jtext), jerr.text, strlen(jerr.text), sizeof(jtext),
                            NULL);
        st = fail(p, err, AQ_LLM_BAD_RESPONSE, "stream event %llu (%s): data is not a JSON object: %s",
                  (unsigned long long)p->events, ev, jtext);
        goto out;
    }
    /* The event field names the type; without one, the data's "type". */
    const char *type = name;
    if (!name[0]) {
        json_t *jt = json_object_get(root, "type");
        type = json_is_string(jt) ? json_string_value(jt) : "";
    }
    if (strcmp(type, "error") == 0) {
        st = on_error(p, root, err);
        goto out;
    }
    bool known = strcmp(type, "message_start") == 0 || strcmp(type, "content_block_start") == 0 ||
                 strcmp(type, "content_block_delta") == 0 ||
                 strcmp(type, "content_block_stop") == 0 || strcmp(type, "message_delta") == 0 ||
                 strcmp(type, "message_stop") == 0;
    if (!known)
        goto out; /* ping without an event line, future types: ignored */
    if (!p->started && strcmp(type, "message_start") != 0) {
        st = fail(p, err, AQ_LLM_BAD_RESPONSE, "stream event %s before message_start", type);
        goto out;
    }
    if (strcmp(type, "message_start") == 0)
        st = on_message_start(p, root, err);
    else if (strcmp(type, "content_block_start") == 0)
        st = on_block_start(p, root, err);
    else if (strcmp(type, "content_block_delta") == 0)
        st = on_block_delta(p, root, err);
    else if (strcmp(type, "content_block_stop") == 0)
        st = on_block_stop(p, root, err);
    else if (strcmp(type, "message_delta") == 0)
        st = on_message_delta(p, root, err);
    else if (p->open != BLK_NONE)
        st = fail(p, err, AQ_LLM_BAD_RESPONSE, "stream message_stop while a block is open");
    else
        p->complete = true;
out:
    json_decref(root);
    aq_buf_reset(&p->data);
    return st;
}

/* ---- lines -------------------------------------------------------------- */

static aq_status on_line(aq_llm_sse *p, const char *s, size_t n, aq_err *err)
{
    if (n == 0)
        return dispatch(p, err);
    if (s[0] == ':')
        return AQ_OK; /* a comment */
    const char *colon = memchr(s, ':', n);
    size_t nlen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (nlen == 4 && memcmp(s, "data", 4) == 0) {
        aq_status st = p->data_seen ? aq_buf_append(&p->data, "\n", 1) : AQ_OK;
        if (st == AQ_OK)
            st = aq_buf_append(&p->data, v, vlen);
        if (st == AQ_TOO_BIG)
            return fail(p, err, AQ_LLM_RESPONSE_TOO_BIG,
                        "stream event %llu is over the %zu-byte event cap",
                        (unsigned long long)p->events + 1, p->lim.max_event_bytes);
        if (st != AQ_OK)
            return fail(p, err, AQ_NOMEM, "out of memory parsing the stream");
        p->data_seen = true;
    } else if (nlen == 5 && memcmp(s, "event", 5) == 0) {
        size_t k = vlen < EVENT_NAME_MAX ? vlen : EVENT_NAME_MAX;
        memcpy(p->event, v, k);
        p->event[k] = '\0';
        if (memchr(p->event, '\0', k)) /* a NUL in the name: no type we know */
            p->event[0] = '?', p->event[1] = '\0';
    }
    /* id, retry, unknown fields: ignored */
    return AQ_OK;
}

static aq_status line_overflow(aq_llm_sse *p, aq_err *err)
{
    return fail(p, err, AQ_LLM_RESPONSE_TOO_BIG,
                "stream line is over the %zu-byte event cap", p->lim.max_event_bytes);
}

aq_status aq_llm_sse_feed(aq_llm_sse *p, const char *data, size_t len, aq_err *err)
{
    if (!p || (!data && len > 0))
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_sse_feed: NULL argument");
    if (p->failed != AQ_OK)
        return aq_err_set(err, p->failed, "%s", p->ferr.msg);
    while (len > 0 && !p->complete) {
        if (p->skip_lf) {
            p->skip_lf = false;
            if (data[0] == '\n') {
                data++;
                len--;
                continue;
            }
        }
        const char *nl = memchr(data, '\n', len);
        const char *cr = memchr(data, '\r', nl ? (size_t)(nl - data) : len);
        const char *eol = cr ? cr : nl;
        if (!eol) {
            return aq_buf_append(&p->line, data, len) == AQ_OK ? AQ_OK : line_overflow(p, err);
        }
        size_t n = (size_t)(eol - data);
        aq_status st;
        if (p->line.len > 0) {
            if (aq_buf_append(&p->line, data, n) != AQ_OK)
                return line_overflow(p, err);
            st = on_line(p, p->line.data, p->line.len, err);
            aq_buf_reset(&p->line);
        } else {
            if (n > p->line.cap)
                return line_overflow(p, err);
            st = on_line(p, data, n, err);
        }
        if (st != AQ_OK)
            return st;
        p->skip_lf = *eol == '\r';
        data = eol + 1;
        len -= n + 1;
    }
    return AQ_OK;
}

aq_status aq_llm_sse_finish(aq_llm_sse *p, aq_llm_response *out, aq_err *err)
{
    if (!p || !out || p->taken)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_sse_finish: NULL argument or called twice");
    if (p->failed != AQ_OK)
        return aq_err_set(err, p->failed, "%s", p->ferr.msg);
    if (!p->complete) {
        const char *where = !p->started ? "before message_start"
                            : p->open != BLK_NONE ? "inside a content block"
                                                  : "between content blocks";
        return fail(p, err, AQ_LLM_STREAM_CUT,
                    "the stream ended before message_stop (%s, after %llu events and %zu bytes "
                    "of content)",
                    where, (unsigned long long)p->events, p->total);
    }
    if (!p->text.data && aq_buf_append(&p->text, "", 0) != AQ_OK)
        return fail(p, err, AQ_NOMEM, "out of memory parsing the stream");
    p->r.text = aq_buf_take(&p->text, &p->r.text_len);
    *out = p->r;
    memset(&p->r, 0, sizeof(p->r));
    p->blocks_alloc = 0;
    p->taken = true;
    return AQ_OK;
}
