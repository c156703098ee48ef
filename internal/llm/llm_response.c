#include "llm_response.h"

#include "core/text.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "llm_internal.h"

/* How much provider text goes into an error message. */
#define ERR_TEXT_MAX 300

/* ---- sanitising untrusted text for messages ---------------------------- */

static int is_key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

void aq_llm_sanitize(char *dst, size_t dstsz, const char *src, size_t n, size_t max,
                     const char *secret)
{
    static const char redacted[] = "[REDACTED]";
    static const char key_prefix[] = "sk-ant-";
    const size_t klen = sizeof(key_prefix) - 1;
    size_t slen = secret ? strlen(secret) : 0;
    size_t o = 0, i = 0;
    int cut = 0;

    if (!dst || dstsz == 0)
        return;
    if (dstsz < 8 || !src) {
        dst[0] = '\0';
        return;
    }
    if (max > dstsz - 4)
        max = dstsz - 4;   /* room for "..." and the NUL */

    while (i < n) {
        const unsigned char *p = (const unsigned char *)src + i;
        const char *emit;
        size_t elen, adv;
        char one;

        if (slen > 0 && n - i >= slen && memcmp(p, secret, slen) == 0) {
            emit = redacted;
            elen = sizeof(redacted) - 1;
            adv = slen;
        } else if (n - i >= klen && memcmp(p, key_prefix, klen) == 0 && n - i > klen &&
                   is_key_char(p[klen])) {
            adv = klen;
            while (i + adv < n && is_key_char(p[adv]))
                adv++;
            emit = "sk-ant-[REDACTED]";
            elen = strlen(emit);
        } else if (p[0] < 0x20 || p[0] == 0x7f) {
            one = ' ';
            emit = &one;
            elen = adv = 1;
        } else {
            size_t sl = aq_utf8_seq_len((const char *)p, n - i);
            if (sl == 0) {
                one = '?';
                emit = &one;
                elen = adv = 1;
            } else {
                emit = (const char *)p;
                elen = adv = sl;
            }
        }
        if (o + elen > max) {
            cut = 1;
            break;
        }
        memcpy(dst + o, emit, elen);
        o += elen;
        i += adv;
    }
    if (cut) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

void aq_llm_redact_inplace(char *buf, size_t n, const char *secret)
{
    size_t slen = secret ? strlen(secret) : 0;
    if (!buf || slen == 0 || n < slen)
        return;
    for (size_t i = 0; i + slen <= n;) {
        if (buf[i] == secret[0] && memcmp(buf + i, secret, slen) == 0) {
            memset(buf + i, '*', slen);
            i += slen;
        } else {
            i++;
        }
    }
}

/* ---- 200 bodies --------------------------------------------------------- */

/* An optional string member: absent or null -> NULL; a string -> a copy. */
aq_status aq_llm_json_opt_string(json_t *obj, const char *key, char **out, aq_err *err)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return AQ_OK;
    if (!json_is_string(v))
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response field \"%s\" is not a string", key);
    size_t n = json_string_length(v);
    if (n > AQ_LLM_FIELD_MAX)
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE,
                          "response field \"%s\" is %zu bytes, over the %u-byte cap", key, n,
                          AQ_LLM_FIELD_MAX);
    char *s = malloc(n + 1);
    if (!s)
        return aq_err_set(err, AQ_NOMEM, "out of memory parsing the response");
    memcpy(s, json_string_value(v), n);
    s[n] = '\0';
    *out = s;
    return AQ_OK;
}

/* A token count: an integer in [0, UINT32_MAX]; `required` says whether
 * absent/null is an error (else it reads as 0). */
aq_status aq_llm_json_token_count(json_t *usage, const char *key, int required, uint32_t *out,
                             aq_err *err)
{
    json_t *v = json_object_get(usage, key);
    *out = 0;
    if (!v || json_is_null(v)) {
        if (required)
            return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response usage has no \"%s\"", key);
        return AQ_OK;
    }
    if (!json_is_integer(v))
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response usage.%s is not an integer", key);
    json_int_t n = json_integer_value(v);
    if (n < 0 || (unsigned long long)n > UINT32_MAX)
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response usage.%s is out of range (%lld)",
                          key, (long long)n);
    *out = (uint32_t)n;
    return AQ_OK;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

aq_status aq_llm_tool_use_field(json_t *blk, const char *key, const char *where, char **out,
                                aq_err *err)
{
    json_t *v = json_object_get(blk, key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "%s (tool_use) has no string \"%s\"", where, key);
    if (json_string_length(v) > AQ_LLM_FIELD_MAX)
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "%s (tool_use) \"%s\" is over the %u-byte cap",
                          where, key, AQ_LLM_FIELD_MAX);
    if (memchr(json_string_value(v), 0, json_string_length(v)))
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "%s (tool_use) \"%s\" holds a NUL byte", where,
                          key);
    if (!(*out = dup_n(json_string_value(v), json_string_length(v))))
        return aq_err_set(err, AQ_NOMEM, "out of memory parsing the response");
    return AQ_OK;
}

/* A tool_use block's id, name and input (re-encoded compactly). */
static aq_status parse_tool_use(json_t *blk, size_t i, aq_llm_block *b, aq_err *err)
{
    char where[48];
    snprintf(where, sizeof(where), "response content[%zu]", i);
    b->type = AQ_LLM_BLOCK_TOOL_USE;
    aq_status st;
    if ((st = aq_llm_tool_use_field(blk, "id", where, &b->id, err)) != AQ_OK ||
        (st = aq_llm_tool_use_field(blk, "name", where, &b->name, err)) != AQ_OK)
        return st;
    json_t *input = json_object_get(blk, "input");
    if (!json_is_object(input))
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE,
                          "response content[%zu] (tool_use) \"input\" is not an object", i);
    if (!(b->input_json = json_dumps(input, JSON_COMPACT)))
        return aq_err_set(err, AQ_NOMEM, "out of memory parsing the response");
    if (strlen(b->input_json) > AQ_LLM_TOOL_INPUT_MAX)
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE,
                          "response content[%zu] (tool_use) input is over the %u-byte cap", i,
                          AQ_LLM_TOOL_INPUT_MAX);
    return AQ_OK;
}

static aq_status parse_content(json_t *content, aq_buf *text, aq_llm_response *r, aq_err *err)
{
    size_t n = json_array_size(content);
    if (n > AQ_LLM_BLOCKS_MAX)
        return aq_err_set(err, AQ_LLM_BAD_RESPONSE,
                          "response has %zu content blocks, over the cap of %u", n,
                          AQ_LLM_BLOCKS_MAX);
    if (n > 0 && !(r->blocks = calloc(n, sizeof(*r->blocks))))
        return aq_err_set(err, AQ_NOMEM, "out of memory parsing the response");
    for (size_t i = 0; i < n; i++) {
        json_t *blk = json_array_get(content, i);
        if (!json_is_object(blk))
            return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response content[%zu] is not an object",
                              i);
        json_t *type = json_object_get(blk, "type");
        if (!json_is_string(type))
            return aq_err_set(err, AQ_LLM_BAD_RESPONSE,
                              "response content[%zu] has no string \"type\"", i);
        const char *t = json_string_value(type);
        if (strcmp(t, "text") == 0) {
            json_t *tx = json_object_get(blk, "text");
            if (!json_is_string(tx))
                return aq_err_set(err, AQ_LLM_BAD_RESPONSE,
                                  "response content[%zu].text is not a string", i);
            size_t off = text->len, len = json_string_length(tx);
            aq_status st = aq_buf_append(text, json_string_value(tx), len);
            if (st == AQ_NOMEM)
                return aq_err_set(err, AQ_NOMEM, "out of memory parsing the response");
            if (st != AQ_OK)
                return aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response text is over the cap");
            if (len > 0) /* an empty text block is not kept (the API refuses it back) */
                r->blocks[r->n_blocks++] = (aq_llm_block){AQ_LLM_BLOCK_TEXT, off, len, NULL, NULL, NULL};
        } else if (strcmp(t, "tool_use") == 0) {
            if (++r->n_tool_use > AQ_LLM_TOOL_USES_MAX)
                return aq_err_set(err, AQ_LLM_BAD_RESPONSE,
                                  "response has more than %u tool_use blocks (the cap)",
                                  AQ_LLM_TOOL_USES_MAX);
            aq_status st = parse_tool_use(blk, i, &r->blocks[r->n_blocks++], err);
            if (st != AQ_OK)
                return st;
        }
        /* thinking, redacted_thinking, server tool blocks, future types: not kept */
    }
    return AQ_OK;
}

aq_status aq_llm_response_parse(const char *body, size_t len, aq_llm_response *out, aq_err *err)
{
    aq_status st = AQ_OK;
    json_t *root = NULL;
    json_error_t jerr;
    aq_llm_response r;
    aq_buf text;

    memset(&r, 0, sizeof(r));
    /* Text cannot be longer than the body that carried it. */
    aq_buf_init(&text, len);

    if (!out)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_response_parse: NULL out");
    if (!body || len == 0) {
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response body is empty");
        goto out;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        /* jansson's text quotes the body near the error as is: clean it like
         * any provider text (control characters, partial UTF-8, keys). */
        char jtext[sizeof(jerr.text) + 32];
        aq_llm_sanitize(jtext, sizeof(jtext), jerr.text, strlen(jerr.text), sizeof(jtext), NULL);
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response is not JSON: %s (line %d, column %d)",
                        jtext, jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response is not a JSON object");
        goto out;
    }
    json_t *type = json_object_get(root, "type");
    if (type && !json_is_string(type)) {
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response \"type\" is not a string");
        goto out;
    }
    if (type && strcmp(json_string_value(type), "message") != 0) {
        char t[64];
        aq_llm_sanitize(t, sizeof(t), json_string_value(type), json_string_length(type), 40, NULL);
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response type is \"%s\", not \"message\"", t);
        goto out;
    }

    json_t *content = json_object_get(root, "content");
    if (!content) {
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response has no \"content\"");
        goto out;
    }
    if (!json_is_array(content)) {
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response \"content\" is not an array");
        goto out;
    }
    json_t *usage = json_object_get(root, "usage");
    if (!usage) {
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response has no \"usage\"");
        goto out;
    }
    if (!json_is_object(usage)) {
        st = aq_err_set(err, AQ_LLM_BAD_RESPONSE, "response \"usage\" is not an object");
        goto out;
    }
    if ((st = aq_llm_json_token_count(usage, "input_tokens", 1, &r.usage.input_tokens, err)) != AQ_OK ||
        (st = aq_llm_json_token_count(usage, "output_tokens", 1, &r.usage.output_tokens, err)) != AQ_OK ||
        (st = aq_llm_json_token_count(usage, "cache_creation_input_tokens", 0,
                          &r.usage.cache_creation_input_tokens, err)) != AQ_OK ||
        (st = aq_llm_json_token_count(usage, "cache_read_input_tokens", 0, &r.usage.cache_read_input_tokens,
                          err)) != AQ_OK)
        goto out;

    if ((st = aq_llm_json_opt_string(root, "id", &r.id, err)) != AQ_OK ||
        (st = aq_llm_json_opt_string(root, "model", &r.model, err)) != AQ_OK ||
        (st = aq_llm_json_opt_string(root, "stop_reason", &r.stop_reason, err)) != AQ_OK ||
        (st = aq_llm_json_opt_string(root, "stop_sequence", &r.stop_sequence, err)) != AQ_OK)
        goto out;

    if ((st = parse_content(content, &text, &r, err)) != AQ_OK)
        goto out;
    if (!text.data && (st = aq_buf_append(&text, "", 0)) != AQ_OK) {
        /* a zero cap (len 0) cannot happen here: len > 0 was checked */
        st = aq_err_set(err, AQ_NOMEM, "out of memory parsing the response");
        goto out;
    }
    r.text = aq_buf_take(&text, &r.text_len);
    *out = r;
    memset(&r, 0, sizeof(r));

out:
    aq_llm_response_free(&r);
    aq_buf_free(&text);
    json_decref(root);
    return st;
}

void aq_llm_response_free(aq_llm_response *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->model);
    free(r->text);
    free(r->stop_reason);
    free(r->stop_sequence);
    for (size_t i = 0; i < r->n_blocks; i++) {
        free(r->blocks[i].id);
        free(r->blocks[i].name);
        free(r->blocks[i].input_json);
    }
    free(r->blocks);
    memset(r, 0, sizeof(*r));
}

/* ---- the answer as agentq.v1.ContentBlock ------------------------------- */

aq_status aq_llm_response_content(const aq_llm_response *r, aq_llm_content *c, aq_err *err)
{
    memset(c, 0, sizeof(*c));
    size_t n = r ? r->n_blocks : 0;
    if (n == 0)
        return AQ_OK;
    /* One text block that is the whole (NUL-free) text is borrowed; others
     * are copied, NUL-terminated, into the arena. */
    bool borrow = n == 1 && r->blocks[0].type == AQ_LLM_BLOCK_TEXT && r->blocks[0].text_off == 0 &&
                  r->blocks[0].text_len == r->text_len && r->text;
    size_t arena = 0;
    for (size_t i = 0; i < n && !borrow; i++)
        if (r->blocks[i].type == AQ_LLM_BLOCK_TEXT)
            arena += r->blocks[i].text_len + 1;
    size_t size = n * (sizeof(Agentq__V1__ContentBlock *) + sizeof(Agentq__V1__ContentBlock) +
                       sizeof(Agentq__V1__TextBlock) + sizeof(Agentq__V1__ToolUseBlock)) +
                  arena;
    char *mem = malloc(size);
    if (!mem)
        return aq_err_set(err, AQ_NOMEM, "out of memory converting the answer's blocks");
    Agentq__V1__ContentBlock **ptrs = (Agentq__V1__ContentBlock **)mem;
    Agentq__V1__ContentBlock *cb = (Agentq__V1__ContentBlock *)(ptrs + n);
    Agentq__V1__TextBlock *tb = (Agentq__V1__TextBlock *)(cb + n);
    Agentq__V1__ToolUseBlock *ub = (Agentq__V1__ToolUseBlock *)(tb + n);
    char *at = (char *)(ub + n);
    for (size_t i = 0; i < n; i++) {
        const aq_llm_block *b = &r->blocks[i];
        agentq__v1__content_block__init(&cb[i]);
        ptrs[i] = &cb[i];
        if (b->type == AQ_LLM_BLOCK_TEXT) {
            agentq__v1__text_block__init(&tb[i]);
            if (borrow) {
                tb[i].text = r->text;
            } else {
                memcpy(at, r->text + b->text_off, b->text_len);
                at[b->text_len] = '\0';
                tb[i].text = at;
                at += b->text_len + 1;
            }
            cb[i].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
            cb[i].text = &tb[i];
        } else {
            agentq__v1__tool_use_block__init(&ub[i]);
            ub[i].id = b->id;
            ub[i].name = b->name;
            ub[i].input_json = b->input_json;
            cb[i].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
            cb[i].tool_use = &ub[i];
        }
    }
    c->blocks = ptrs;
    c->n_blocks = n;
    c->mem = mem;
    return AQ_OK;
}

void aq_llm_content_free(aq_llm_content *c)
{
    if (!c)
        return;
    free(c->mem);
    memset(c, 0, sizeof(*c));
}

aq_status aq_llm_response_set_content(aq_llm_response *r, Agentq__V1__ContentBlock *const *blocks,
                                      size_t n, aq_err *err)
{
    aq_llm_response nr;
    aq_buf text;
    aq_status st = AQ_OK;
    memset(&nr, 0, sizeof(nr));
    aq_buf_init(&text, SIZE_MAX);
    if (n > 0 && !(nr.blocks = calloc(n, sizeof(*nr.blocks)))) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory restoring the answer's blocks");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const Agentq__V1__ContentBlock *b = blocks[i];
        if (b && b->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT && b->text &&
            *b->text->text) {
            size_t off = text.len, len = strlen(b->text->text);
            if (aq_buf_append(&text, b->text->text, len) != AQ_OK) {
                st = aq_err_set(err, AQ_NOMEM, "out of memory restoring the answer's blocks");
                goto out;
            }
            nr.blocks[nr.n_blocks++] = (aq_llm_block){AQ_LLM_BLOCK_TEXT, off, len, NULL, NULL, NULL};
        } else if (b && b->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE && b->tool_use) {
            aq_llm_block *nb = &nr.blocks[nr.n_blocks++];
            nb->type = AQ_LLM_BLOCK_TOOL_USE;
            nr.n_tool_use++;
            if (!(nb->id = strdup(b->tool_use->id)) || !(nb->name = strdup(b->tool_use->name)) ||
                !(nb->input_json = strdup(b->tool_use->input_json))) {
                st = aq_err_set(err, AQ_NOMEM, "out of memory restoring the answer's blocks");
                goto out;
            }
        }
    }
    if (!text.data && aq_buf_append(&text, "", 0) != AQ_OK) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory restoring the answer's blocks");
        goto out;
    }
    /* Install: the new text and blocks, the rest of r as it was. */
    free(r->text);
    for (size_t i = 0; i < r->n_blocks; i++) {
        free(r->blocks[i].id);
        free(r->blocks[i].name);
        free(r->blocks[i].input_json);
    }
    free(r->blocks);
    r->text = aq_buf_take(&text, &r->text_len);
    r->blocks = nr.blocks;
    r->n_blocks = nr.n_blocks;
    r->n_tool_use = nr.n_tool_use;
    nr.blocks = NULL;
    nr.n_blocks = 0;
out:
    aq_llm_response_free(&nr);
    aq_buf_free(&text);
    return st;
}

/* ---- error answers ------------------------------------------------------ */

static aq_status status_for_http(long code, const char *etype)
{
    switch (code) {
    case 400: return AQ_HTTP_BAD_REQUEST;
    case 401: return AQ_HTTP_UNAUTHORIZED;
    case 402: return AQ_HTTP_BILLING;
    case 403: return AQ_HTTP_FORBIDDEN;
    case 404: return AQ_HTTP_NOT_FOUND;
    case 408: return AQ_HTTP_TIMEOUT;
    case 409: return AQ_HTTP_CONFLICT;
    case 413: return AQ_HTTP_TOO_LARGE;
    case 429: return AQ_HTTP_RATE_LIMITED;
    case 529: return AQ_HTTP_OVERLOADED;
    default: break;
    }
    if (code >= 500 && code <= 599) {
        if (etype && strcmp(etype, "overloaded_error") == 0)
            return AQ_HTTP_OVERLOADED;
        return AQ_HTTP_SERVER_ERROR;
    }
    return AQ_HTTP_UNEXPECTED;
}

aq_status aq_llm_error_classify(long http_status, const char *body, size_t len, aq_err *err)
{
    char etype[80] = "";
    char emsg[ERR_TEXT_MAX + 8] = "";
    const char *raw_type = NULL;
    int is_json = 0;
    json_t *root = NULL;

    if (!body)
        len = 0;
    if (len > 0)
        root = json_loadb(body, len, 0, NULL);
    if (json_is_object(root)) {
        json_t *e = json_object_get(root, "error");
        if (json_is_object(e)) {
            json_t *t = json_object_get(e, "type");
            json_t *m = json_object_get(e, "message");
            is_json = 1;
            if (json_is_string(t)) {
                raw_type = json_string_value(t);
                aq_llm_sanitize(etype, sizeof(etype), raw_type, json_string_length(t), 64, NULL);
            }
            if (json_is_string(m))
                aq_llm_sanitize(emsg, sizeof(emsg), json_string_value(m), json_string_length(m),
                                ERR_TEXT_MAX, NULL);
        }
    }
    aq_status st = status_for_http(http_status, raw_type);

    if (is_json) {
        if (etype[0] && emsg[0])
            aq_err_set(err, st, "HTTP %ld %s: %s", http_status, etype, emsg);
        else if (etype[0])
            aq_err_set(err, st, "HTTP %ld %s", http_status, etype);
        else if (emsg[0])
            aq_err_set(err, st, "HTTP %ld: %s", http_status, emsg);
        else
            aq_err_set(err, st, "HTTP %ld (error body without type or message)", http_status);
    } else if (len == 0) {
        aq_err_set(err, st, "HTTP %ld (empty body)", http_status);
    } else {
        aq_llm_sanitize(emsg, sizeof(emsg), body, len, ERR_TEXT_MAX, NULL);
        aq_err_set(err, st, "HTTP %ld: %s", http_status, emsg);
    }
    json_decref(root);
    return st;
}
