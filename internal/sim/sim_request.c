#include "sim_request.h"

#include "core/text.h"
#include "sim_tools.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

/* ---------------------------------------------------------------- parsing */

#define CACHE_TTL_5M_MS 300000
#define CACHE_TTL_1H_MS 3600000
#define WHERE_MAX 96

/* A block's "cache_control": absent, or {"type":"ephemeral"[, "ttl":"5m"|"1h"]}.
 * *ttl_ms = 0 when absent. */
static aq_status check_cache_control(json_t *b, const char *where, size_t i, int64_t *ttl_ms,
                                     aq_err *err)
{
    json_t *cc = json_object_get(b, "cache_control");
    *ttl_ms = 0;
    if (!cc || json_is_null(cc))
        return AQ_OK;
    json_t *type = json_object_get(cc, "type");
    if (!json_is_object(cc) || !json_is_string(type) ||
        strcmp(json_string_value(type), "ephemeral") != 0)
        return aq_err_set(err, AQ_INVALID_ARG,
                          "%s.%zu.cache_control: Input should be {\"type\": \"ephemeral\"}", where, i);
    json_t *ttl = json_object_get(cc, "ttl");
    *ttl_ms = CACHE_TTL_5M_MS;
    if (ttl && !json_is_null(ttl)) {
        const char *t = json_string_value(ttl);
        if (t && strcmp(t, "1h") == 0)
            *ttl_ms = CACHE_TTL_1H_MS;
        else if (!t || strcmp(t, "5m") != 0)
            return aq_err_set(err, AQ_INVALID_ARG,
                              "%s.%zu.cache_control.ttl: Input should be '5m' or '1h'", where, i);
    }
    return AQ_OK;
}

/* The cache marks of a request, in prefix order. */
typedef struct marks {
    size_t n; /* all marks seen (more than AQ_SIM_MAX_BREAKPOINTS is a 400 at the end) */
} marks;

static void mark_at(aq_sim_request *r, marks *m, size_t pos, int64_t ttl_ms)
{
    if (!ttl_ms)
        return;
    if (m->n < AQ_SIM_MAX_BREAKPOINTS) {
        r->bp_pos[m->n] = pos;
        r->bp_ttl_ms[m->n] = ttl_ms;
        r->n_breakpoints = m->n + 1;
    }
    m->n++;
}

/* Pass 1 of a "system" value or a message "content": a string, or an array of
 * objects with a string "type" (the blocks are checked in pass 2). System
 * blocks are text blocks, checked here. */
static aq_status check_content(json_t *v, const char *where, bool system, size_t *n_blocks,
                               aq_err *err)
{
    if (json_is_string(v)) {
        *n_blocks = 1;
        return AQ_OK;
    }
    if (!json_is_array(v))
        return aq_err_set(err, AQ_INVALID_ARG,
                          system ? "%s: Input should be a valid string or a list of text blocks"
                                 : "%s: Input should be a valid string or a list of content blocks",
                          where);
    size_t n = json_array_size(v);
    if (n > AQ_SIM_MAX_BLOCKS_PER_CONTENT)
        return aq_err_set(err, AQ_INVALID_ARG, "%s: more than %d content blocks", where,
                          AQ_SIM_MAX_BLOCKS_PER_CONTENT);
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(v, i);
        if (!json_is_object(b))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.%zu: Input should be a valid dictionary",
                              where, i);
        json_t *type = json_object_get(b, "type");
        if (!json_is_string(type))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.%zu.type: Field required", where, i);
        if (!system)
            continue;
        if (strcmp(json_string_value(type), "text") != 0)
            return aq_err_set(err, AQ_INVALID_ARG,
                              "%s.%zu.type: Input should be 'text' (system blocks are text blocks)",
                              where, i);
        if (!json_is_string(json_object_get(b, "text")))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.%zu.text: Field required", where, i);
        int64_t ttl = 0;
        aq_status st = check_cache_control(b, where, i, &ttl, err);
        if (st != AQ_OK)
            return st;
    }
    *n_blocks = n;
    return AQ_OK;
}

static aq_sim_text text_of(json_t *s)
{
    return (aq_sim_text){json_string_value(s), json_string_length(s)};
}

static bool base64_valid(const char *s, size_t n)
{
    size_t pad = 0;
    if (n % 4 == 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '+' || c == '/'))
            return false;
    }
    return pad <= 2;
}

int64_t aq_sim_media_tokens(size_t base64_len)
{
    uint64_t decoded = (uint64_t)base64_len * 3 / 4;
    return (int64_t)((decoded + AQ_SIM_MEDIA_BYTES_PER_TOKEN - 1) / AQ_SIM_MEDIA_BYTES_PER_TOKEN);
}

static bool str_in(const char *s, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (strcmp(s, set[i]) == 0)
            return true;
    return false;
}

/* An image or document "source" at where.source: base64 or url (images);
 * base64 (PDF), text, url or content (documents). A text source's data is
 * the block's text; a content source's text blocks too (concatenated,
 * owned); base64 data and URLs are media. */
static aq_status check_source(json_t *b, const char *where, bool document, aq_sim_text *text,
                              char **owned, aq_sim_text *media, int64_t *media_tokens, aq_err *err);

/* A tool_result's "content", or a document's content source: a string, or an
 * array of text and image blocks (and documents, in a tool_result). Its text
 * blocks concatenated are the text (owned when more than one); images and
 * documents add media. Nested marks count as marks of the enclosing block. */
static aq_status check_nested(json_t *c, const char *where, bool allow_document, aq_sim_text *text,
                              char **owned, aq_sim_text *media, int64_t *media_tokens,
                              size_t *n_marks, int64_t *mark_ttl, aq_err *err)
{
    char sub[WHERE_MAX + 32];
    size_t total = 0, n_text = 0;
    aq_sim_text one = {"", 0};
    aq_status st;
    if (!c || json_is_null(c)) {
        *text = one;
        return AQ_OK;
    }
    if (json_is_string(c)) {
        *text = text_of(c);
        return AQ_OK;
    }
    if (!json_is_array(c))
        return aq_err_set(err, AQ_INVALID_ARG, "%s: Input should be a valid string or a list of content blocks",
                          where);
    size_t n = json_array_size(c);
    if (n > AQ_SIM_MAX_BLOCKS_PER_CONTENT)
        return aq_err_set(err, AQ_INVALID_ARG, "%s: more than %d content blocks", where,
                          AQ_SIM_MAX_BLOCKS_PER_CONTENT);
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(c, i);
        const char *type = json_string_value(json_object_get(b, "type"));
        int64_t ttl = 0;
        if (!json_is_object(b))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.%zu: Input should be a valid dictionary", where, i);
        if (!type)
            return aq_err_set(err, AQ_INVALID_ARG, "%s.%zu.type: Field required", where, i);
        if ((st = check_cache_control(b, where, i, &ttl, err)) != AQ_OK)
            return st;
        if (ttl) {
            (*n_marks)++;
            if (ttl > *mark_ttl)
                *mark_ttl = ttl;
        }
        snprintf(sub, sizeof(sub), "%s.%zu", where, i);
        if (strcmp(type, "text") == 0) {
            json_t *t = json_object_get(b, "text");
            if (!json_is_string(t))
                return aq_err_set(err, AQ_INVALID_ARG, "%s.text: Field required", sub);
            total += json_string_length(t);
            if (n_text++ == 0)
                one = text_of(t);
        } else if (strcmp(type, "image") == 0 || (allow_document && strcmp(type, "document") == 0)) {
            aq_sim_text t2 = {"", 0}, m = {NULL, 0};
            char *o2 = NULL;
            int64_t mt = 0;
            st = check_source(b, sub, type[0] == 'd', &t2, &o2, &m, &mt, err);
            free(o2); /* a nested document's own text counts as media, not text */
            if (st != AQ_OK)
                return st;
            *media_tokens += mt + aq_sim_tokens(t2.len);
            if (!media->ptr)
                *media = m;
        } else {
            return aq_err_set(err, AQ_INVALID_ARG,
                              "%s.type: Input tag '%s' found using 'type' does not match any of the "
                              "expected tags: %s",
                              sub, type, allow_document ? "'text', 'image', 'document'" : "'text', 'image'");
        }
    }
    if (n_text <= 1) {
        *text = one;
        return AQ_OK;
    }
    char *cat = malloc(total + 1);
    if (!cat)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(c, i);
        if (strcmp(json_string_value(json_object_get(b, "type")), "text") == 0) {
            json_t *t = json_object_get(b, "text");
            memcpy(cat + at, json_string_value(t), json_string_length(t));
            at += json_string_length(t);
        }
    }
    cat[at] = '\0';
    *owned = cat;
    *text = (aq_sim_text){cat, at};
    return AQ_OK;
}

static aq_status check_source(json_t *b, const char *where, bool document, aq_sim_text *text,
                              char **owned, aq_sim_text *media, int64_t *media_tokens, aq_err *err)
{
    static const char *const image_types[] = {"image/jpeg", "image/png", "image/gif", "image/webp", NULL};
    json_t *src = json_object_get(b, "source");
    if (!src)
        return aq_err_set(err, AQ_INVALID_ARG, "%s.source: Field required", where);
    if (!json_is_object(src))
        return aq_err_set(err, AQ_INVALID_ARG, "%s.source: Input should be a valid dictionary", where);
    const char *type = json_string_value(json_object_get(src, "type"));
    const char *mt = json_string_value(json_object_get(src, "media_type"));
    json_t *data = json_object_get(src, "data");
    if (!type)
        return aq_err_set(err, AQ_INVALID_ARG, "%s.source.type: Field required", where);
    if (strcmp(type, "base64") == 0) {
        if (!document && (!mt || !str_in(mt, image_types)))
            return aq_err_set(err, AQ_INVALID_ARG,
                              "%s.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                              "'image/gif' or 'image/webp'",
                              where);
        if (document && (!mt || strcmp(mt, "application/pdf") != 0))
            return aq_err_set(err, AQ_INVALID_ARG,
                              "%s.source.base64.media_type: Input should be 'application/pdf'", where);
        if (!json_is_string(data))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.source.base64.data: Field required", where);
        if (!base64_valid(json_string_value(data), json_string_length(data)))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.source.base64.data: The %s data is not valid base64",
                              where, document ? "document" : "image");
        *media = text_of(data);
        *media_tokens = aq_sim_media_tokens(json_string_length(data));
        return AQ_OK;
    }
    if (strcmp(type, "url") == 0) {
        json_t *url = json_object_get(src, "url");
        if (!json_is_string(url) || json_string_length(url) == 0)
            return aq_err_set(err, AQ_INVALID_ARG, "%s.source.url.url: Field required", where);
        *media = text_of(url);
        *media_tokens = AQ_SIM_URL_MEDIA_TOKENS;
        return AQ_OK;
    }
    if (document && strcmp(type, "text") == 0) {
        if (!mt || strcmp(mt, "text/plain") != 0)
            return aq_err_set(err, AQ_INVALID_ARG, "%s.source.text.media_type: Input should be 'text/plain'",
                              where);
        if (!json_is_string(data))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.source.text.data: Field required", where);
        *text = text_of(data);
        return AQ_OK;
    }
    if (document && strcmp(type, "content") == 0) {
        char sub[WHERE_MAX + 32];
        size_t n_marks = 0;
        int64_t ttl = 0;
        snprintf(sub, sizeof(sub), "%s.source.content.content", where);
        json_t *c = json_object_get(src, "content");
        if (!c)
            return aq_err_set(err, AQ_INVALID_ARG, "%s: Field required", sub);
        aq_status st = check_nested(c, sub, false, text, owned, media, media_tokens, &n_marks, &ttl, err);
        if (st == AQ_OK && n_marks)
            st = aq_err_set(err, AQ_INVALID_ARG, "%s: cache_control is not supported inside a document source",
                            sub);
        return st;
    }
    return aq_err_set(err, AQ_INVALID_ARG,
                      "%s.source: Input tag '%s' found using 'type' does not match any of the expected tags: %s",
                      where, type, document ? "'base64', 'text', 'url', 'content'" : "'base64', 'url'");
}

/* Pass 2 of one message block: validate it and fill its text and info.
 * where = "messages.N.content"; *ttl = its mark's ttl (0: none). */
static aq_status fill_block(json_t *b, const char *where, size_t j, bool assistant, aq_sim_text *text,
                            aq_sim_block_info *info, size_t *n_marks, int64_t *ttl, aq_err *err)
{
    char sub[WHERE_MAX + 24];
    const char *type = json_string_value(json_object_get(b, "type"));
    aq_status st;
    snprintf(sub, sizeof(sub), "%s.%zu", where, j);
    if ((st = check_cache_control(b, where, j, ttl, err)) != AQ_OK)
        return st;
    if (*ttl)
        (*n_marks)++;
    *text = (aq_sim_text){"", 0};
    if (strcmp(type, "text") == 0) {
        json_t *t = json_object_get(b, "text");
        if (!json_is_string(t))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.text: Field required", sub);
        info->kind = AQ_SIM_BLOCK_TEXT;
        *text = text_of(t);
        return AQ_OK;
    }
    if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        bool doc = type[0] == 'd';
        info->kind = doc ? AQ_SIM_BLOCK_DOCUMENT : AQ_SIM_BLOCK_IMAGE;
        return check_source(b, sub, doc, text, &info->owned, &info->media, &info->media_tokens, err);
    }
    if (strcmp(type, "tool_use") == 0) {
        json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name");
        json_t *input = json_object_get(b, "input");
        if (!assistant)
            return aq_err_set(err, AQ_INVALID_ARG,
                              "%s: `tool_use` blocks can only be in `assistant` messages", sub);
        if (!json_is_string(id) || json_string_length(id) == 0)
            return aq_err_set(err, AQ_INVALID_ARG, "%s.id: Field required", sub);
        if (!json_is_string(name))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.name: Field required", sub);
        if (!aq_sim_tool_name_valid(json_string_value(name), json_string_length(name)))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
                              sub);
        if (!input)
            return aq_err_set(err, AQ_INVALID_ARG, "%s.input: Field required", sub);
        if (!json_is_object(input))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.input: Input should be a valid dictionary", sub);
        /* text: name + " " + compact input (counted and hashed) */
        char *in = json_dumps(input, JSON_COMPACT | JSON_SORT_KEYS);
        if (!in)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        size_t nl = json_string_length(name), il = strlen(in);
        info->owned = malloc(nl + 1 + il + 1);
        if (!info->owned) {
            free(in);
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        }
        memcpy(info->owned, json_string_value(name), nl);
        info->owned[nl] = ' ';
        memcpy(info->owned + nl + 1, in, il + 1);
        free(in);
        info->kind = AQ_SIM_BLOCK_TOOL_USE;
        info->id = text_of(id);
        info->name = text_of(name);
        *text = (aq_sim_text){info->owned, nl + 1 + il};
        return AQ_OK;
    }
    if (strcmp(type, "tool_result") == 0) {
        json_t *id = json_object_get(b, "tool_use_id"), *ie = json_object_get(b, "is_error");
        char csub[WHERE_MAX + 40];
        size_t nested_marks = 0;
        int64_t nested_ttl = 0;
        if (assistant)
            return aq_err_set(err, AQ_INVALID_ARG, "%s: `tool_result` blocks can only be in `user` messages", sub);
        if (!json_is_string(id) || json_string_length(id) == 0)
            return aq_err_set(err, AQ_INVALID_ARG, "%s.tool_use_id: Field required", sub);
        if (ie && !json_is_null(ie) && !json_is_boolean(ie))
            return aq_err_set(err, AQ_INVALID_ARG, "%s.is_error: Input should be a valid boolean", sub);
        info->kind = AQ_SIM_BLOCK_TOOL_RESULT;
        info->id = text_of(id);
        info->is_error = json_is_true(ie);
        snprintf(csub, sizeof(csub), "%s.content", sub);
        if ((st = check_nested(json_object_get(b, "content"), csub, true, text, &info->owned, &info->media,
                               &info->media_tokens, &nested_marks, &nested_ttl, err)) != AQ_OK)
            return st;
        *n_marks += nested_marks;
        if (nested_ttl > *ttl)
            *ttl = nested_ttl;
        return AQ_OK;
    }
    return aq_err_set(err, AQ_INVALID_ARG,
                      "%s.type: Input tag '%s' found using 'type' does not match any of the expected tags: "
                      "'text', 'image', 'document', 'tool_use', 'tool_result' (the content blocks agentq-sim supports)",
                      sub, type);
}

static bool model_known(const aq_sim_limits *lim, const char *model)
{
    if (!lim || lim->n_models == 0)
        return true;
    for (size_t i = 0; i < lim->n_models; i++)
        if (strcmp(lim->models[i], model) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------- tools, pairing */

static aq_status parse_tools(json_t *tools, aq_sim_request *r, marks *m, aq_err *err)
{
    if (!tools || json_is_null(tools))
        return AQ_OK;
    if (!json_is_array(tools))
        return aq_err_set(err, AQ_INVALID_ARG, "tools: Input should be a valid list");
    size_t n = json_array_size(tools);
    if (n > AQ_SIM_MAX_TOOLS)
        return aq_err_set(err, AQ_INVALID_ARG, "tools: more than %d tools", AQ_SIM_MAX_TOOLS);
    if (n == 0)
        return AQ_OK;
    r->tools = calloc(n, sizeof(*r->tools));
    if (!r->tools)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    r->n_tools = n;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tools, i);
        aq_sim_tool *tool = &r->tools[i];
        int64_t ttl = 0;
        aq_status st;
        if (!json_is_object(t))
            return aq_err_set(err, AQ_INVALID_ARG, "tools.%zu: Input should be a valid dictionary", i);
        const char *type = json_string_value(json_object_get(t, "type"));
        if (type && strcmp(type, "custom") != 0)
            return aq_err_set(err, AQ_INVALID_ARG,
                              "tools.%zu.type: server tools ('%s') are not supported by agentq-sim; "
                              "only custom tools (no type, or 'custom')",
                              i, type);
        static const char *const tool_fields[] = {
            "name", "description", "input_schema", "cache_control", "type", "strict", "input_examples",
            "allowed_callers", "defer_loading", "eager_input_streaming", NULL,
        };
        const char *key;
        json_t *v;
        json_object_foreach(t, key, v) {
            if (!str_in(key, tool_fields))
                return aq_err_set(err, AQ_INVALID_ARG, "tools.%zu.custom.%.100s: Extra inputs are not permitted", i,
                                  key);
        }
        json_t *name = json_object_get(t, "name"), *schema = json_object_get(t, "input_schema");
        json_t *desc = json_object_get(t, "description");
        if (!json_is_string(name))
            return aq_err_set(err, AQ_INVALID_ARG, "tools.%zu.custom.name: Field required", i);
        if (!aq_sim_tool_name_valid(json_string_value(name), json_string_length(name)))
            return aq_err_set(err, AQ_INVALID_ARG,
                              "tools.%zu.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'", i);
        if (desc && !json_is_null(desc) && !json_is_string(desc))
            return aq_err_set(err, AQ_INVALID_ARG, "tools.%zu.custom.description: Input should be a valid string",
                              i);
        if (!schema)
            return aq_err_set(err, AQ_INVALID_ARG, "tools.%zu.custom.input_schema: Field required", i);
        if (!json_is_object(schema))
            return aq_err_set(err, AQ_INVALID_ARG, "tools.%zu.custom.input_schema: Input should be a valid dictionary",
                              i);
        json_t *stype = json_object_get(schema, "type");
        if (!json_is_string(stype) || strcmp(json_string_value(stype), "object") != 0)
            return aq_err_set(err, AQ_INVALID_ARG, "tools.%zu.custom.input_schema.type: Input should be 'object'",
                              i);
        if ((st = check_cache_control(t, "tools", i, &ttl, err)) != AQ_OK)
            return st;
        mark_at(r, m, i, ttl);
        for (size_t k = 0; k < i; k++)
            if (r->tools[k].name.len == json_string_length(name) &&
                memcmp(r->tools[k].name.ptr, json_string_value(name), json_string_length(name)) == 0)
                return aq_err_set(err, AQ_INVALID_ARG, "tools: Tool names must be unique.");
        char *dump = json_dumps(schema, JSON_COMPACT | JSON_SORT_KEYS);
        if (!dump)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        size_t nl = json_string_length(name), dl = desc ? json_string_length(desc) : 0, sl = strlen(dump);
        tool->canon = malloc(nl + dl + sl + 1);
        if (!tool->canon) {
            free(dump);
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        }
        memcpy(tool->canon, json_string_value(name), nl);
        if (dl)
            memcpy(tool->canon + nl, json_string_value(desc), dl);
        memcpy(tool->canon + nl + dl, dump, sl + 1);
        free(dump);
        tool->canon_len = nl + dl + sl;
        tool->name = text_of(name);
        tool->schema = schema;
    }
    return AQ_OK;
}

static aq_status parse_tool_choice(json_t *tc, aq_sim_request *r, aq_err *err)
{
    if (!tc || json_is_null(tc))
        return AQ_OK;
    if (!json_is_object(tc))
        return aq_err_set(err, AQ_INVALID_ARG, "tool_choice: Input should be a valid dictionary");
    const char *type = json_string_value(json_object_get(tc, "type"));
    if (!type)
        return aq_err_set(err, AQ_INVALID_ARG, "tool_choice.type: Field required");
    static const char *const names[] = {"auto", "any", "tool", "none"};
    size_t k = 0;
    while (k < 4 && strcmp(type, names[k]) != 0)
        k++;
    if (k == 4)
        return aq_err_set(err, AQ_INVALID_ARG,
                          "tool_choice: Input tag '%s' found using 'type' does not match any of the expected "
                          "tags: 'auto', 'any', 'tool', 'none'",
                          type);
    r->tool_choice = (aq_sim_tool_choice)k;
    json_t *dp = json_object_get(tc, "disable_parallel_tool_use");
    if (dp && !json_is_null(dp)) {
        if (!json_is_boolean(dp))
            return aq_err_set(err, AQ_INVALID_ARG,
                              "tool_choice.%s.disable_parallel_tool_use: Input should be a valid boolean", type);
        r->disable_parallel_tool_use = json_is_true(dp);
    }
    if (r->tool_choice != AQ_SIM_CHOICE_NONE && r->n_tools == 0)
        return aq_err_set(err, AQ_INVALID_ARG, "tool_choice may only be specified while providing tools.");
    if (r->tool_choice == AQ_SIM_CHOICE_TOOL) {
        json_t *name = json_object_get(tc, "name");
        if (!json_is_string(name))
            return aq_err_set(err, AQ_INVALID_ARG, "tool_choice.tool.name: Field required");
        r->tool_choice_name = text_of(name);
        for (size_t i = 0; i < r->n_tools; i++)
            if (r->tools[i].name.len == json_string_length(name) &&
                memcmp(r->tools[i].name.ptr, json_string_value(name), json_string_length(name)) == 0)
                return AQ_OK;
        return aq_err_set(err, AQ_INVALID_ARG, "tool_choice.tool.name: Tool '%s' not found in tools",
                          json_string_value(name));
    }
    return AQ_OK;
}

typedef struct id_ref {
    aq_sim_text id;
    size_t block; /* index into blocks */
    bool answered;
} id_ref;

static int id_cmp(const void *a, const void *b)
{
    const aq_sim_text *x = &((const id_ref *)a)->id, *y = &((const id_ref *)b)->id;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->ptr, y->ptr, x->len);
}

/* Appends ", id" (or "id") to buf while it fits; "..." once it does not. */
static void list_id(char *buf, size_t cap, aq_sim_text id)
{
    size_t n = strlen(buf);
    int w = snprintf(buf + n, cap - n, "%s%.*s", n ? ", " : "", (int)(id.len > 64 ? 64 : id.len), id.ptr);
    if (w < 0 || (size_t)w >= cap - n) {
        buf[n] = '\0';
        if (n + 4 < cap && !strstr(buf, "..."))
            memcpy(buf + n, "...", 4);
    }
}

/* Every assistant turn with tool_use blocks is followed by a user message
 * that starts with a tool_result for each of them; every tool_result answers
 * a tool_use of the turn right before it. The API's checks and wording. */
static aq_status check_tool_pairs(const aq_sim_request *r, aq_err *err)
{
    aq_status st = AQ_OK;
    id_ref *refs = NULL;
    size_t refs_cap = 0;
    char ids[200];
    for (size_t i = 0; i < r->n_messages && st == AQ_OK; i++) {
        const aq_sim_message *m = &r->messages[i];
        const aq_sim_message *next = i + 1 < r->n_messages ? &r->messages[i + 1] : NULL;
        if (!m->assistant) {
            /* a tool_result with no tool_use turn right before it */
            const aq_sim_message *prev = i > 0 ? &r->messages[i - 1] : NULL;
            bool prev_uses = false;
            for (size_t b = prev && prev->assistant ? prev->first_block : 0;
                 prev && prev->assistant && b < prev->first_block + prev->n_blocks; b++)
                prev_uses = prev_uses || r->info[b].kind == AQ_SIM_BLOCK_TOOL_USE;
            for (size_t b = m->first_block; !prev_uses && b < m->first_block + m->n_blocks; b++)
                if (r->info[b].kind == AQ_SIM_BLOCK_TOOL_RESULT)
                    st = aq_err_set(err, AQ_INVALID_ARG,
                                    "messages.%zu.content.%zu: unexpected `tool_use_id` found in `tool_result` "
                                    "blocks: %.*s. Each `tool_result` block must have a corresponding `tool_use` "
                                    "block in the previous message.",
                                    i, b - m->first_block, (int)(r->info[b].id.len > 64 ? 64 : r->info[b].id.len),
                                    r->info[b].id.ptr);
            if (st != AQ_OK)
                break;
            continue;
        }
        size_t n_uses = 0;
        for (size_t b = m->first_block; b < m->first_block + m->n_blocks; b++)
            n_uses += r->info[b].kind == AQ_SIM_BLOCK_TOOL_USE;
        if (n_uses == 0)
            continue;
        if (n_uses > refs_cap) {
            free(refs);
            refs = malloc(n_uses * sizeof(*refs));
            refs_cap = refs ? n_uses : 0;
            if (!refs) {
                st = aq_err_set(err, AQ_NOMEM, "out of memory");
                break;
            }
        }
        size_t k = 0;
        for (size_t b = m->first_block; b < m->first_block + m->n_blocks; b++)
            if (r->info[b].kind == AQ_SIM_BLOCK_TOOL_USE)
                refs[k++] = (id_ref){r->info[b].id, b, false};
        qsort(refs, n_uses, sizeof(*refs), id_cmp);
        for (k = 1; k < n_uses; k++)
            if (id_cmp(&refs[k - 1], &refs[k]) == 0) {
                st = aq_err_set(err, AQ_INVALID_ARG, "messages.%zu.content.%zu: `tool_use` ids must be unique",
                                i, refs[k].block - m->first_block);
                goto out;
            }
        size_t n_results = 0, leading = 0;
        bool lead = true;
        for (size_t b = next && !next->assistant ? next->first_block : 0;
             next && !next->assistant && b < next->first_block + next->n_blocks; b++) {
            if (r->info[b].kind != AQ_SIM_BLOCK_TOOL_RESULT) {
                lead = false;
                continue;
            }
            n_results++;
            leading += lead;
            id_ref key = {r->info[b].id, 0, false};
            id_ref *hit = bsearch(&key, refs, n_uses, sizeof(*refs), id_cmp);
            if (!hit || hit->answered) {
                st = aq_err_set(err, AQ_INVALID_ARG,
                                hit ? "messages.%zu.content.%zu: more than one `tool_result` block answers the "
                                      "`tool_use` id %.*s"
                                    : "messages.%zu.content.%zu: unexpected `tool_use_id` found in `tool_result` "
                                      "blocks: %.*s. Each `tool_result` block must have a corresponding "
                                      "`tool_use` block in the previous message.",
                                i + 1, b - next->first_block, (int)(key.id.len > 64 ? 64 : key.id.len), key.id.ptr);
                goto out;
            }
            hit->answered = true;
        }
        if (n_results > 0 && leading < n_uses) {
            st = aq_err_set(err, AQ_INVALID_ARG,
                            "messages.%zu: Did not find %zu `tool_result` block(s) at the beginning of this message. "
                            "Messages following `tool_use` blocks must begin with a matching number of "
                            "`tool_result` blocks.",
                            i + 1, n_uses - leading);
            goto out;
        }
        ids[0] = '\0';
        /* in the order of the turn, as the API lists them */
        for (size_t b = m->first_block; b < m->first_block + m->n_blocks; b++) {
            if (r->info[b].kind != AQ_SIM_BLOCK_TOOL_USE)
                continue;
            id_ref key = {r->info[b].id, 0, false};
            id_ref *hit = bsearch(&key, refs, n_uses, sizeof(*refs), id_cmp);
            if (hit && !hit->answered)
                list_id(ids, sizeof(ids), key.id);
        }
        if (ids[0]) {
            st = aq_err_set(err, AQ_INVALID_ARG,
                            "messages.%zu: `tool_use` ids were found without `tool_result` blocks immediately "
                            "after: %s. Each `tool_use` block must have a corresponding `tool_result` block in "
                            "the next message.",
                            i, ids);
            goto out;
        }
    }
out:
    free(refs);
    return st;
}

/* "[sim tool_steps=N tool_parallel=N tool_text=0|1 fault_tool_schema=X]" in
 * the first text block of the first user message that has one. */
static aq_status parse_directive(aq_sim_request *r, aq_err *err)
{
    const aq_sim_message *m = &r->messages[0];
    const char *at = NULL, *end = NULL;
    r->directive = (aq_sim_tool_opts){-1, -1, false, -1};
    for (size_t b = m->first_block; b < m->first_block + m->n_blocks && !at; b++) {
        if (r->info[b].kind != AQ_SIM_BLOCK_TEXT)
            continue;
        at = memmem(r->blocks[b].ptr, r->blocks[b].len, "[sim ", 5);
        end = r->blocks[b].ptr + r->blocks[b].len;
    }
    if (!at)
        return AQ_OK;
    const char *close = memchr(at, ']', (size_t)(end - at));
    if (!close || close - at > 512)
        return aq_err_set(err, AQ_INVALID_ARG, "messages.0: sim directive: '[sim ' without a closing ']'");
    char buf[520];
    memcpy(buf, at + 5, (size_t)(close - at - 5));
    buf[close - at - 5] = '\0';
    int text = -1;
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
        char *eq = strchr(tok, '='), *e = NULL;
        if (!eq)
            return aq_err_set(err, AQ_INVALID_ARG, "messages.0: sim directive: '%.40s' is not key=value", tok);
        *eq = '\0';
        const char *v = eq + 1;
        errno = 0;
        if (strcmp(tok, "fault_tool_schema") == 0) {
            double d = strtod(v, &e);
            if (errno || e == v || *e || !(d >= 0 && d <= 1))
                return aq_err_set(err, AQ_INVALID_ARG, "messages.0: sim directive: fault_tool_schema=%.40s is not in [0, 1]", v);
            r->directive.fault_schema = d;
            continue;
        }
        long long n = strtoll(v, &e, 10);
        bool bad = errno || e == v || *e;
        if (strcmp(tok, "tool_steps") == 0 && !bad && n >= 0 && n <= AQ_SIM_MAX_TOOL_STEPS)
            r->directive.steps = n;
        else if (strcmp(tok, "tool_parallel") == 0 && !bad && n >= 1 && n <= AQ_SIM_MAX_TOOL_PARALLEL)
            r->directive.parallel = n;
        else if (strcmp(tok, "tool_text") == 0 && !bad && (n == 0 || n == 1))
            text = (int)n;
        else
            return aq_err_set(err, AQ_INVALID_ARG,
                              "messages.0: sim directive: '%.40s=%.40s' is not one of tool_steps=0..%d, "
                              "tool_parallel=1..%d, tool_text=0|1, fault_tool_schema=0..1",
                              tok, v, AQ_SIM_MAX_TOOL_STEPS, AQ_SIM_MAX_TOOL_PARALLEL);
    }
    r->has_directive = true;
    r->directive.text = text == 1;
    r->has_directive_text = text >= 0;
    return AQ_OK;
}

/* The top-level fields of a Messages body the API knows (the official SDK's
 * MessageCreateParams); count_tokens takes the same without max_tokens,
 * stream and a few options of a real call. Anything else is the API's 400. */
static const char *const message_fields[] = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_k", "top_p", "tools", "tool_choice", "thinking", "service_tier",
    "container", "mcp_servers", "context_management", "cache_control", "diagnostics",
    "inference_geo", "output_config", "speed", "user_profile_id", "workspace_id", NULL,
};
static const char *const count_tokens_fields[] = {
    "model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
    "context_management", "cache_control", "output_config", "speed", "user_profile_id",
    "workspace_id", NULL,
};

static aq_status check_fields(json_t *root, bool count_tokens, aq_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!str_in(key, count_tokens ? count_tokens_fields : message_fields))
            return aq_err_set(err, AQ_INVALID_ARG, "%.100s: Extra inputs are not permitted", key);
    }
    return AQ_OK;
}

/* A prefill: the last (assistant) message is continued. Its text may not end
 * in white space (the API's 400), and it cannot hold tool_use blocks (those
 * need a tool_result after them: check_tool_pairs refused them already). */
static aq_status check_prefill(aq_sim_request *r, aq_err *err)
{
    const aq_sim_message *m = &r->messages[r->n_messages - 1];
    for (size_t b = m->first_block + m->n_blocks; b-- > m->first_block;) {
        if (r->info[b].kind != AQ_SIM_BLOCK_TEXT)
            continue;
        const aq_sim_text *t = &r->blocks[b];
        char c = t->len ? t->ptr[t->len - 1] : 'x';
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            return aq_err_set(err, AQ_INVALID_ARG,
                              "messages: final assistant content cannot end with trailing whitespace");
        break;
    }
    r->prefill = true;
    return AQ_OK;
}

aq_status aq_sim_parse_request(const char *body, size_t len, const aq_sim_limits *lim,
                               aq_sim_request *out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_sim_request r = {0};
    json_error_t jerr;
    char where[WHERE_MAX];
    size_t n_sys = 0, n_blocks = 0, n_stop = 0, n;
    marks mk = {0};
    json_t *root = json_loadb(body, len, 0, &jerr);

    if (!root) {
        st = aq_err_set(err, AQ_INVALID_ARG, "The request body is not valid JSON: %s (line %d, column %d)",
                        jerr.text, jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "The request body is not valid JSON: expected an object");
        goto out;
    }

    if ((st = check_fields(root, lim && lim->count_tokens, err)) != AQ_OK)
        goto out;

    /* Pass 1: validate the shape and count. */
    json_t *model = json_object_get(root, "model");
    if (!model) {
        st = aq_err_set(err, AQ_INVALID_ARG, "model: Field required");
        goto out;
    }
    if (!json_is_string(model) || json_string_length(model) == 0 ||
        json_string_length(model) > AQ_SIM_MAX_MODEL_BYTES) {
        st = aq_err_set(err, AQ_INVALID_ARG, "model: Input should be a non-empty string of at most %d bytes",
                        AQ_SIM_MAX_MODEL_BYTES);
        goto out;
    }
    json_t *max_tokens = json_object_get(root, "max_tokens");
    json_int_t mt = lim && lim->max_tokens_cap > 0 ? lim->max_tokens_cap : AQ_SIM_DEFAULT_MAX_TOKENS_CAP;
    if (lim && lim->count_tokens)
        goto max_tokens_done;
    if (!max_tokens) {
        st = aq_err_set(err, AQ_INVALID_ARG, "max_tokens: Field required");
        goto out;
    }
    if (!json_is_integer(max_tokens)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "max_tokens: Input should be a valid integer");
        goto out;
    }
    mt = json_integer_value(max_tokens);
    if (mt < 1) {
        st = aq_err_set(err, AQ_INVALID_ARG, "max_tokens: Input should be greater than or equal to 1");
        goto out;
    }
    if (lim && lim->max_tokens_cap > 0 && mt > lim->max_tokens_cap) {
        st = aq_err_set(err, AQ_INVALID_ARG,
                        "max_tokens: %" PRId64 " > %" PRId64
                        ", which is the maximum allowed number of output tokens for %s",
                        (int64_t)mt, lim->max_tokens_cap, json_string_value(model));
        goto out;
    }
max_tokens_done:;

    json_t *messages = json_object_get(root, "messages");
    if (!messages) {
        st = aq_err_set(err, AQ_INVALID_ARG, "messages: Field required");
        goto out;
    }
    if (!json_is_array(messages)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "messages: Input should be a valid list");
        goto out;
    }
    n = json_array_size(messages);
    if (n == 0) {
        st = aq_err_set(err, AQ_INVALID_ARG, "messages: at least one message is required");
        goto out;
    }
    if (n > AQ_SIM_MAX_MESSAGES) {
        st = aq_err_set(err, AQ_INVALID_ARG, "messages: more than %d messages", AQ_SIM_MAX_MESSAGES);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(messages, i);
        if (!json_is_object(m)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "messages.%zu: Input should be a valid dictionary", i);
            goto out;
        }
        json_t *role = json_object_get(m, "role");
        const char *rs = json_string_value(role);
        if (!rs || (strcmp(rs, "user") != 0 && strcmp(rs, "assistant") != 0)) {
            st = aq_err_set(err, AQ_INVALID_ARG,
                            "messages.%zu.role: Input should be 'user' or 'assistant'", i);
            goto out;
        }
        if (i == 0 && strcmp(rs, "user") != 0) {
            st = aq_err_set(err, AQ_INVALID_ARG, "messages: first message must use the \"user\" role");
            goto out;
        }
        json_t *content = json_object_get(m, "content");
        snprintf(where, sizeof(where), "messages.%zu.content", i);
        if (!content) {
            st = aq_err_set(err, AQ_INVALID_ARG, "%s: Field required", where);
            goto out;
        }
        size_t nb;
        if ((st = check_content(content, where, false, &nb, err)) != AQ_OK)
            goto out;
        n_blocks += nb;
    }

    json_t *system = json_object_get(root, "system");
    if (system && !json_is_null(system)) {
        if ((st = check_content(system, "system", true, &n_sys, err)) != AQ_OK)
            goto out;
    }

    json_t *temp = json_object_get(root, "temperature");
    if (temp && !json_is_null(temp)) {
        if (!json_is_number(temp)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "temperature: Input should be a valid number");
            goto out;
        }
        double t = json_number_value(temp);
        if (!(t >= 0.0 && t <= 1.0)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "temperature: Input should be between 0 and 1");
            goto out;
        }
        r.has_temperature = true;
        r.temperature = t + 0.0; /* -0.0 hashes like 0.0 */
    }

    json_t *stop = json_object_get(root, "stop_sequences");
    if (stop && !json_is_null(stop)) {
        if (!json_is_array(stop)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "stop_sequences: Input should be a valid list");
            goto out;
        }
        n_stop = json_array_size(stop);
        if (n_stop > AQ_SIM_MAX_STOP_SEQUENCES) {
            st = aq_err_set(err, AQ_INVALID_ARG, "stop_sequences: more than %d sequences",
                            AQ_SIM_MAX_STOP_SEQUENCES);
            goto out;
        }
        for (size_t i = 0; i < n_stop; i++) {
            json_t *s = json_array_get(stop, i);
            if (!json_is_string(s) || json_string_length(s) == 0) {
                st = aq_err_set(err, AQ_INVALID_ARG,
                                "stop_sequences.%zu: Input should be a non-empty string", i);
                goto out;
            }
        }
    }

    json_t *meta = json_object_get(root, "metadata");
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "metadata: Input should be a valid dictionary");
            goto out;
        }
        json_t *uid = json_object_get(meta, "user_id");
        if (uid && !json_is_null(uid)) {
            if (!json_is_string(uid)) {
                st = aq_err_set(err, AQ_INVALID_ARG, "metadata.user_id: Input should be a valid string");
                goto out;
            }
            r.has_user_id = true;
            r.user_id = text_of(uid);
        }
    }

    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_null(stream)) {
        if (!json_is_boolean(stream)) {
            st = aq_err_set(err, AQ_INVALID_ARG, "stream: Input should be a valid boolean");
            goto out;
        }
        r.stream = json_is_true(stream);
    }

    /* Tools (before the blocks: marks count in prefix order). */
    if ((st = parse_tools(json_object_get(root, "tools"), &r, &mk, err)) != AQ_OK ||
        (st = parse_tool_choice(json_object_get(root, "tool_choice"), &r, err)) != AQ_OK)
        goto out;

    /* Pass 2: check each block and fill, in one allocation. */
    size_t total_blocks = n_sys + n_blocks;
    size_t bytes = total_blocks * (sizeof(aq_sim_text) + sizeof(aq_sim_block_info)) +
                   n * sizeof(aq_sim_message) + n_stop * sizeof(aq_sim_text);
    char *mem = calloc(1, bytes ? bytes : 1);
    if (!mem) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    /* the info array first: the widest alignment */
    r.info = (aq_sim_block_info *)(void *)mem;
    r.blocks = (aq_sim_text *)(void *)(mem + total_blocks * sizeof(aq_sim_block_info));
    r.messages = (aq_sim_message *)(void *)((char *)r.blocks + total_blocks * sizeof(aq_sim_text));
    r.stop = (aq_sim_text *)(void *)((char *)r.messages + n * sizeof(aq_sim_message));
    r.n_messages = n;
    r.doc = root; /* from here aq_sim_request_free(&r) frees everything */
    root = NULL;
    size_t at = 0;
    if (json_is_string(system)) {
        r.blocks[at++] = text_of(system);
    } else if (n_sys) {
        for (size_t i = 0; i < n_sys; i++) {
            json_t *b = json_array_get(system, i);
            int64_t ttl = 0;
            check_cache_control(b, "system", i, &ttl, err); /* checked in pass 1 */
            mark_at(&r, &mk, r.n_tools + at, ttl);
            r.blocks[at++] = text_of(json_object_get(b, "text"));
        }
    }
    r.n_system_blocks = at;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(messages, i);
        json_t *content = json_object_get(m, "content");
        aq_sim_message *msg = &r.messages[i];
        msg->assistant = strcmp(json_string_value(json_object_get(m, "role")), "user") != 0;
        msg->first_block = at;
        if (json_is_string(content)) {
            r.blocks[at++] = text_of(content);
        } else {
            snprintf(where, sizeof(where), "messages.%zu.content", i);
            for (size_t j = 0; j < json_array_size(content); j++) {
                int64_t ttl = 0;
                if ((st = fill_block(json_array_get(content, j), where, j, msg->assistant, &r.blocks[at],
                                     &r.info[at], &mk.n, &ttl, err)) != AQ_OK) {
                    r.n_blocks = at + 1; /* free what this block owns */
                    goto fail;
                }
                if (ttl && mk.n <= AQ_SIM_MAX_BREAKPOINTS) {
                    /* fill_block counted it (and any nested ones): record it */
                    size_t k = r.n_breakpoints;
                    if (k < AQ_SIM_MAX_BREAKPOINTS) {
                        r.bp_pos[k] = r.n_tools + at;
                        r.bp_ttl_ms[k] = ttl;
                        r.n_breakpoints = k + 1;
                    }
                }
                r.has_tool_result = r.has_tool_result || r.info[at].kind == AQ_SIM_BLOCK_TOOL_RESULT;
                r.n_tool_use += r.info[at].kind == AQ_SIM_BLOCK_TOOL_USE;
                at++;
            }
        }
        msg->n_blocks = at - msg->first_block;
    }
    r.n_blocks = at;
    if (mk.n > AQ_SIM_MAX_BREAKPOINTS) {
        st = aq_err_set(err, AQ_INVALID_ARG, "A maximum of %d blocks with cache_control may be provided. Found %zu.",
                        AQ_SIM_MAX_BREAKPOINTS, mk.n);
        goto fail;
    }
    if ((r.n_tool_use || r.has_tool_result) && (st = check_tool_pairs(&r, err)) != AQ_OK)
        goto fail;
    if (r.messages[n - 1].assistant && (st = check_prefill(&r, err)) != AQ_OK)
        goto fail;
    if (r.n_tools && (st = parse_directive(&r, err)) != AQ_OK)
        goto fail;
    for (size_t i = 0; i < n_stop; i++)
        r.stop[i] = text_of(json_array_get(stop, i));
    r.n_stop = n_stop;
    r.model = text_of(model);
    r.max_tokens = (int64_t)mt;

    /* Checked last so that a malformed request is a 400 whatever its model. */
    if (!model_known(lim, json_string_value(model))) {
        st = aq_err_set(err, AQ_NOT_FOUND, "model: %s", json_string_value(model));
        goto fail;
    }
    *out = r;
    return AQ_OK;

fail:
    aq_sim_request_free(&r);
out:
    if (st != AQ_OK) {
        /* tools parsed before the failure */
        for (size_t i = 0; r.tools && i < r.n_tools; i++)
            free(r.tools[i].canon);
        free(r.tools);
    }
    json_decref(root);
    return st;
}

void aq_sim_request_free(aq_sim_request *r)
{
    if (!r)
        return;
    for (size_t i = 0; r->info && i < r->n_blocks; i++)
        free(r->info[i].owned);
    for (size_t i = 0; r->tools && i < r->n_tools; i++)
        free(r->tools[i].canon);
    free(r->tools);
    free(r->info); /* the one allocation of blocks, messages and stop */
    json_decref((json_t *)r->doc);
    memset(r, 0, sizeof(*r));
}

int aq_sim_error_http_status(aq_status st, const char **error_type)
{
    const char *type;
    int code;
    switch (st) {
    case AQ_INVALID_ARG: code = 400; type = "invalid_request_error"; break;
    case AQ_NOT_FOUND: code = 404; type = "not_found_error"; break;
    case AQ_TOO_BIG: code = 413; type = "request_too_large"; break;
    default: code = 500; type = "api_error"; break;
    }
    if (error_type)
        *error_type = type;
    return code;
}

/* ----------------------------------------------------------- tokens, hash */

int64_t aq_sim_tokens(size_t bytes)
{
    return (int64_t)((bytes + 3) / 4);
}

static size_t content_bytes(const aq_sim_request *r, size_t first, size_t n)
{
    size_t total = 0;
    for (size_t i = first; i < first + n; i++)
        total += r->blocks[i].len;
    return total;
}

static int64_t message_tokens(const aq_sim_request *r, const aq_sim_message *m)
{
    int64_t media = 0;
    for (size_t i = m->first_block; i < m->first_block + m->n_blocks; i++)
        media += r->info[i].media_tokens;
    return AQ_SIM_MESSAGE_OVERHEAD_TOKENS + aq_sim_tokens(content_bytes(r, m->first_block, m->n_blocks)) + media;
}

static size_t tools_bytes(const aq_sim_request *r)
{
    size_t total = 0;
    for (size_t i = 0; i < r->n_tools; i++)
        total += r->tools[i].canon_len;
    return total;
}

int64_t aq_sim_input_tokens(const aq_sim_request *r)
{
    int64_t t = aq_sim_tokens(tools_bytes(r)) + aq_sim_tokens(content_bytes(r, 0, r->n_system_blocks));
    for (size_t i = 0; i < r->n_messages; i++)
        t += message_tokens(r, &r->messages[i]);
    return t;
}

size_t aq_sim_utf8_cut(const char *s, size_t len, size_t max)
{
    if (max >= len)
        return len;
    size_t n = max;
    /* s[n] starts the first byte left out: back up while it continues a character. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static void hash_u64(XXH3_state_t *h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    XXH3_64bits_update(h, b, sizeof(b));
}

static void hash_text(XXH3_state_t *h, aq_sim_text t)
{
    hash_u64(h, t.len);
    XXH3_64bits_update(h, t.ptr, t.len);
}

/* A block: its text, and for the kinds beyond text what else makes it. */
static void hash_block(XXH3_state_t *h, const aq_sim_request *r, size_t b)
{
    const aq_sim_block_info *in = &r->info[b];
    hash_text(h, r->blocks[b]);
    if (in->kind == AQ_SIM_BLOCK_TEXT)
        return;
    hash_u64(h, 0x100 + (uint64_t)in->kind + (in->is_error ? 0x10 : 0));
    hash_text(h, in->id);
    hash_text(h, in->name);
    hash_text(h, in->media);
}

static void hash_tool_choice(XXH3_state_t *h, const aq_sim_request *r)
{
    if (!r->n_tools)
        return;
    hash_u64(h, 0x200 + (uint64_t)r->tool_choice + (r->disable_parallel_tool_use ? 0x10 : 0));
    hash_text(h, r->tool_choice_name);
}

static uint64_t request_hash(const aq_sim_request *r)
{
    XXH3_state_t h;
    double temp = r->has_temperature ? r->temperature : 1.0;
    uint64_t tbits;

    XXH3_INITSTATE(&h);
    XXH3_64bits_reset(&h);
    XXH3_64bits_update(&h, "agentq-sim/1", 12);
    hash_text(&h, r->model);
    hash_u64(&h, r->n_system_blocks);
    for (size_t i = 0; i < r->n_system_blocks; i++)
        hash_text(&h, r->blocks[i]);
    hash_u64(&h, r->n_messages);
    for (size_t i = 0; i < r->n_messages; i++) {
        const aq_sim_message *m = &r->messages[i];
        hash_u64(&h, m->assistant ? 2 : 1);
        hash_u64(&h, m->n_blocks);
        for (size_t j = m->first_block; j < m->first_block + m->n_blocks; j++)
            hash_block(&h, r, j);
    }
    hash_u64(&h, (uint64_t)r->max_tokens);
    memcpy(&tbits, &temp, sizeof(tbits));
    hash_u64(&h, tbits);
    if (r->n_tools) { /* requests without tools hash as they always did */
        hash_u64(&h, r->n_tools);
        for (size_t i = 0; i < r->n_tools; i++)
            hash_text(&h, (aq_sim_text){r->tools[i].canon, r->tools[i].canon_len});
        hash_tool_choice(&h, r);
    }
    return XXH3_64bits_digest(&h);
}

/* The prefixes the answer lists for the server's cache: at every mark and at
 * up to AQ_SIM_CACHE_LOOKBACK positions before it, the hash of model +
 * content so far and its tokens (computed as aq_sim_input_tokens does). */
static void cache_points(const aq_sim_request *r, aq_sim_answer *a)
{
    if (!r->n_breakpoints)
        return;
    size_t last = r->bp_pos[r->n_breakpoints - 1];
    int64_t tools_t = aq_sim_tokens(tools_bytes(r));
    int64_t sys_t = aq_sim_tokens(content_bytes(r, 0, r->n_system_blocks));
    size_t cum = 0, mi = 0, entered = 0;
    int64_t done = 0, media = 0;
    XXH3_state_t h;
    XXH3_INITSTATE(&h);
    XXH3_64bits_reset(&h);
    XXH3_64bits_update(&h, "agentq-sim-prefix/2", 19);
    hash_text(&h, r->model);
    for (size_t p = 0; p <= last; p++) {
        int64_t tokens;
        if (p < r->n_tools) {
            hash_text(&h, (aq_sim_text){r->tools[p].canon, r->tools[p].canon_len});
            cum += r->tools[p].canon_len;
            tokens = aq_sim_tokens(cum);
        } else if (p - r->n_tools < r->n_system_blocks) {
            size_t b = p - r->n_tools;
            if (b == 0)
                cum = 0;
            hash_u64(&h, 0x300);
            hash_text(&h, r->blocks[b]);
            cum += r->blocks[b].len;
            tokens = tools_t + aq_sim_tokens(cum);
        } else {
            size_t b = p - r->n_tools;
            while (mi < r->n_messages && b >= r->messages[mi].first_block + r->messages[mi].n_blocks) {
                done += message_tokens(r, &r->messages[mi]);
                mi++;
            }
            for (; entered <= mi && entered < r->n_messages; entered++) {
                if (entered == 0)
                    hash_tool_choice(&h, r); /* changing tool_choice invalidates message prefixes */
                hash_u64(&h, r->messages[entered].assistant ? 2 : 1);
                if (entered == mi) {
                    cum = 0;
                    media = 0;
                }
            }
            hash_block(&h, r, b);
            cum += r->blocks[b].len;
            media += r->info[b].media_tokens;
            tokens = tools_t + sys_t + done + AQ_SIM_MESSAGE_OVERHEAD_TOKENS + aq_sim_tokens(cum) + media;
        }
        for (size_t k = 0; k < r->n_breakpoints; k++) {
            size_t bp = r->bp_pos[k];
            if (p > bp || bp - p > AQ_SIM_CACHE_LOOKBACK)
                continue;
            if (a->n_cache_points < AQ_SIM_MAX_CACHE_POINTS) {
                uint64_t v = XXH3_64bits_digest(&h);
                a->cache_points[a->n_cache_points++] =
                    (aq_sim_cache_point){v ? v : 1, tokens, r->bp_ttl_ms[k], p == bp};
            }
            break;
        }
    }
    const aq_sim_cache_point *lp = &a->cache_points[a->n_cache_points - 1]; /* the last mark itself */
    a->cache_prefix_hash = lp->hash;
    a->input_tokens -= lp->tokens; /* the last mark's prefix <= everything */
    a->cache_creation_input_tokens = lp->tokens;
}

void aq_sim_answer_cache_hit(aq_sim_answer *a)
{
    a->cache_read_input_tokens += a->cache_creation_input_tokens;
    a->cache_creation_input_tokens = 0;
}

void aq_sim_answer_cache_read(aq_sim_answer *a, int64_t tokens)
{
    int64_t t = tokens < a->cache_creation_input_tokens ? tokens : a->cache_creation_input_tokens;
    if (t <= 0)
        return;
    a->cache_read_input_tokens += t;
    a->cache_creation_input_tokens -= t;
}

/* ------------------------------------------------------------- tool use */

static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The ids the simulator gives its calls: "toolu_0" + kind + 16 hex of the
 * request hash + 4 hex of the call's index. */
#define ID_NORMAL '1'
#define ID_SPOILED '2'
#define ID_REPAIR '3'

static bool sim_id_kind(aq_sim_text id, char kind)
{
    return id.len == AQ_SIM_TOOL_ID_LEN && memcmp(id.ptr, "toolu_0", 7) == 0 && id.ptr[7] == kind;
}

static bool text_eq(aq_sim_text a, aq_sim_text b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* The tool_use block of message `mi` with this id; SIZE_MAX if none. */
static size_t find_tool_use(const aq_sim_request *r, size_t mi, aq_sim_text id)
{
    const aq_sim_message *m = &r->messages[mi];
    for (size_t b = m->first_block; b < m->first_block + m->n_blocks; b++)
        if (r->info[b].kind == AQ_SIM_BLOCK_TOOL_USE && text_eq(r->info[b].id, id))
            return b;
    return SIZE_MAX;
}

static size_t find_tool(const aq_sim_request *r, aq_sim_text name)
{
    for (size_t i = 0; i < r->n_tools; i++)
        if (text_eq(r->tools[i].name, name))
            return i;
    return SIZE_MAX;
}

void aq_sim_answer_free(aq_sim_answer *a)
{
    if (!a)
        return;
    for (size_t i = 0; a->calls && i < a->n_calls; i++)
        free(a->calls[i].input);
    free(a->calls);
    a->calls = NULL;
    a->n_calls = 0;
}

/* The options in force: the server's, overridden by the request's directive. */
static aq_sim_tool_opts effective_opts(const aq_sim_request *r, const aq_sim_tool_opts *o)
{
    aq_sim_tool_opts e = *o;
    if (r->has_directive) {
        if (r->directive.steps >= 0)
            e.steps = r->directive.steps;
        if (r->directive.parallel >= 1)
            e.parallel = r->directive.parallel;
        if (r->has_directive_text)
            e.text = r->directive.text;
        if (r->directive.fault_schema >= 0)
            e.fault_schema = r->directive.fault_schema;
    }
    if (e.parallel < 1)
        e.parallel = 1;
    if (e.parallel > AQ_SIM_MAX_TOOL_PARALLEL)
        e.parallel = AQ_SIM_MAX_TOOL_PARALLEL;
    return e;
}

/* A tool_use answer, when the request calls for one: *used = true and
 * a->calls filled (or, over max_tokens, a cut text and no calls). */
static aq_status tool_answer(const aq_sim_request *r, const aq_sim_tool_opts *o, aq_buf *text,
                             aq_sim_answer *a, bool *used, aq_err *err)
{
    aq_status st = AQ_OK;
    size_t tool_of[AQ_SIM_MAX_TOOL_PARALLEL];
    bool repair = false;
    size_t n_calls = 0;
    *used = false;
    if (r->n_tools == 0 || r->tool_choice == AQ_SIM_CHOICE_NONE)
        return AQ_OK;
    aq_sim_tool_opts e = effective_opts(r, o);
    size_t want_choice = r->tool_choice == AQ_SIM_CHOICE_TOOL ? find_tool(r, r->tool_choice_name) : SIZE_MAX;

    /* Repairs: the errored results of spoiled calls get a corrected call. */
    size_t last = r->n_messages - 1;
    if (last > 0 && !r->messages[last].assistant && r->messages[last - 1].assistant) {
        const aq_sim_message *m = &r->messages[last];
        for (size_t b = m->first_block; b < m->first_block + m->n_blocks; b++) {
            const aq_sim_block_info *in = &r->info[b];
            if (in->kind != AQ_SIM_BLOCK_TOOL_RESULT || !in->is_error || !sim_id_kind(in->id, ID_SPOILED))
                continue;
            size_t u = find_tool_use(r, last - 1, in->id);
            size_t t = u == SIZE_MAX ? SIZE_MAX : find_tool(r, r->info[u].name);
            if (t == SIZE_MAX || (want_choice != SIZE_MAX && t != want_choice) ||
                n_calls == AQ_SIM_MAX_TOOL_PARALLEL)
                continue;
            tool_of[n_calls++] = t;
        }
        repair = n_calls > 0;
    }
    size_t steps_done = 0;
    for (size_t i = 0; i < r->n_messages; i++) {
        const aq_sim_message *m = &r->messages[i];
        bool step = false;
        for (size_t b = m->first_block; m->assistant && b < m->first_block + m->n_blocks; b++)
            step = step || (r->info[b].kind == AQ_SIM_BLOCK_TOOL_USE && !sim_id_kind(r->info[b].id, ID_REPAIR));
        steps_done += step;
    }
    if (!repair) {
        if (r->tool_choice == AQ_SIM_CHOICE_AUTO && steps_done >= (size_t)e.steps)
            return AQ_OK; /* the run is over: end_turn */
        n_calls = r->disable_parallel_tool_use ? 1 : (size_t)e.parallel;
        for (size_t c = 0; c < n_calls; c++)
            tool_of[c] = want_choice != SIZE_MAX ? want_choice : (steps_done * n_calls + c) % r->n_tools;
    }
    *used = true;
    a->calls = calloc(n_calls, sizeof(*a->calls));
    if (!a->calls)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    a->n_calls = n_calls;
    size_t call_bytes = 0;
    for (size_t c = 0; c < n_calls; c++) {
        aq_sim_tool_call *call = &a->calls[c];
        const aq_sim_tool *tool = &r->tools[tool_of[c]];
        json_t *in = aq_sim_tools_gen((json_t *)tool->schema, mix64(a->hash + c));
        if (!in)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        double u = (double)(mix64(a->hash ^ (0xF00DULL + c)) >> 11) * 0x1.0p-53;
        char kind = repair ? ID_REPAIR : ID_NORMAL;
        if (!repair && e.fault_schema > 0 && u < e.fault_schema && aq_sim_tools_spoil((json_t *)tool->schema, in)) {
            kind = ID_SPOILED;
            call->spoiled = true;
            a->n_spoiled++;
        }
        call->repair = repair;
        call->name = tool->name;
        snprintf(call->id, sizeof(call->id), "toolu_0%c%016" PRIx64 "%04x", kind, a->hash, (unsigned)(c & 0xffff));
        call->input = json_dumps(in, JSON_COMPACT);
        json_decref(in);
        if (!call->input)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        call->input_len = strlen(call->input);
        call_bytes += call->name.len + 1 + call->input_len;
    }
    if (e.text) {
        st = aq_buf_printf(text, repair ? "Retrying with a corrected input:" : "Step %zu: calling", steps_done + 1);
        for (size_t c = 0; c < n_calls && st == AQ_OK; c++)
            st = aq_buf_printf(text, "%s %.*s", c ? "," : "", (int)a->calls[c].name.len, a->calls[c].name.ptr);
        if (st == AQ_OK)
            st = aq_buf_append(text, ".", 1);
        if (st != AQ_OK)
            return aq_err_set(err, st, "answer text over its cap of %zu bytes", text->cap);
    }
    a->stop_reason = "tool_use";
    a->output_tokens = aq_sim_tokens(text->len + call_bytes);
    if (a->output_tokens > r->max_tokens) {
        /* the calls do not fit: what fits of the text, and no call */
        uint64_t max_bytes = (uint64_t)r->max_tokens * 4;
        aq_sim_answer_free(a);
        a->n_spoiled = 0;
        if (text->len > max_bytes) {
            text->len = (size_t)max_bytes; /* ASCII apart from tool names, which are ASCII too */
            text->data[text->len] = '\0';
        }
        a->stop_reason = "max_tokens";
        a->output_tokens = aq_sim_tokens(text->len);
    }
    return AQ_OK;
}

/* "Tool results: <name>: <first bytes>; <name> (error): ...; " for the
 * tool_result blocks of the last user message. */
static aq_status echo_tool_results(const aq_sim_request *r, const aq_sim_message *last, aq_buf *text)
{
    aq_status st = AQ_OK;
    size_t k = 0;
    size_t mi = (size_t)(last - r->messages);
    for (size_t b = last->first_block; b < last->first_block + last->n_blocks && st == AQ_OK; b++) {
        const aq_sim_block_info *in = &r->info[b];
        if (in->kind != AQ_SIM_BLOCK_TOOL_RESULT)
            continue;
        if (k == AQ_SIM_TOOL_RESULT_ECHO_MAX) {
            st = aq_buf_append_str(text, "; ...");
            break;
        }
        size_t u = mi > 0 ? find_tool_use(r, mi - 1, in->id) : SIZE_MAX;
        aq_sim_text name = u == SIZE_MAX ? in->id : r->info[u].name;
        st = aq_buf_append_str(text, k++ ? "; " : "Tool results: ");
        if (st == AQ_OK)
            st = aq_buf_append(text, name.ptr, name.len);
        if (st == AQ_OK && in->is_error)
            st = aq_buf_append_str(text, " (error)");
        if (st == AQ_OK)
            st = aq_buf_append(text, ": ", 2);
        size_t take = aq_sim_utf8_cut(r->blocks[b].ptr, r->blocks[b].len, AQ_SIM_TOOL_RESULT_ECHO_BYTES);
        if (st == AQ_OK)
            st = aq_buf_append(text, r->blocks[b].ptr, take);
    }
    bool more = false; /* a text block follows: keep them apart */
    for (size_t b = last->first_block; k && b < last->first_block + last->n_blocks; b++)
        more = more || (r->info[b].kind == AQ_SIM_BLOCK_TEXT && r->blocks[b].len > 0);
    if (st == AQ_OK && more)
        st = aq_buf_append(text, " ", 1);
    return st;
}

/* ----------------------------------------------------------------- answer */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static aq_status parse_u32(const char *s, const char **end, uint32_t *out)
{
    char *e;
    errno = 0;
    if (*s < '0' || *s > '9')
        return AQ_INVALID_ARG;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || e == s || v < 1 || v > AQ_SIM_MAX_OUTPUT_TOKENS)
        return AQ_INVALID_ARG;
    *out = (uint32_t)v;
    *end = e;
    return AQ_OK;
}

aq_status aq_sim_output_range_parse(const char *s, aq_sim_output_range *out, aq_err *err)
{
    aq_sim_output_range r;
    const char *end;
    if (!s || parse_u32(s, &end, &r.min) != AQ_OK)
        goto bad;
    r.max = r.min;
    if (*end == '-' && parse_u32(end + 1, &end, &r.max) != AQ_OK)
        goto bad;
    if (*end != '\0' || r.max < r.min)
        goto bad;
    *out = r;
    return AQ_OK;
bad:
    return aq_err_set(err, AQ_CONFIG,
                      "output_tokens: '%s' is not N or MIN-MAX with 1 <= MIN <= MAX <= %d",
                      s ? s : "", AQ_SIM_MAX_OUTPUT_TOKENS);
}

static const char *const filler_words[] = {
    "alpha",   "bravo",  "charlie", "delta",   "echo",    "foxtrot", "golf",    "hotel",
    "india",   "juliet", "kilo",    "lima",    "mike",    "november", "oscar",  "papa",
    "quebec",  "romeo",  "sierra",  "tango",   "uniform", "victor",  "whiskey", "xray",
    "yankee",  "zulu",   "amber",   "basalt",  "cedar",   "dune",    "ember",   "fjord",
    "granite", "harbor", "island",  "jasper",  "kelp",    "lagoon",  "meadow",  "nectar",
    "orchard", "pebble", "quartz",  "river",   "summit",  "tundra",  "upland",  "valley",
    "willow",  "xenon",  "yarrow",  "zephyr",  "anchor",  "beacon",  "canyon",  "delta",
    "estuary", "forest", "glacier", "horizon", "inlet",   "jungle",  "knoll",   "lantern",
};
#define FILLER_WORDS (sizeof(filler_words) / sizeof(filler_words[0]))

static void buf_truncate(aq_buf *b, size_t n)
{
    if (n < b->len) {
        b->len = n;
        b->data[n] = '\0';
    }
}

/* "echo: " + the last user message + " | " + filler words to the target
 * length (see the header). */
static aq_status echo_text(const aq_sim_request *r, uint64_t hash, aq_sim_output_range range, aq_buf *text)
{
    aq_status st;
    uint64_t rng = hash;
    uint32_t target = range.min;
    if (range.max > range.min)
        target += (uint32_t)(splitmix64(&rng) % ((uint64_t)range.max - range.min + 1));
    size_t target_bytes = (size_t)target * 4;

    if ((st = aq_buf_append(text, "echo: ", 6)) != AQ_OK)
        return st;
    const aq_sim_message *last = NULL;
    for (size_t i = r->n_messages; i-- > 0;) {
        if (!r->messages[i].assistant) {
            last = &r->messages[i];
            break;
        }
    }
    if (last && r->has_tool_result && (st = echo_tool_results(r, last, text)) != AQ_OK)
        return st;
    size_t budget = AQ_SIM_ECHO_MAX_BYTES;
    for (size_t i = last ? last->first_block : 0; last && i < last->first_block + last->n_blocks && budget; i++) {
        if (r->info[i].kind != AQ_SIM_BLOCK_TEXT)
            continue;
        size_t take = aq_sim_utf8_cut(r->blocks[i].ptr, r->blocks[i].len, budget);
        if (take == 0)
            break;
        if ((st = aq_buf_append(text, r->blocks[i].ptr, take)) != AQ_OK)
            return st;
        budget -= take;
    }
    if ((st = aq_buf_append(text, " | ", 3)) != AQ_OK)
        return st;
    size_t prefix = text->len;
    while (text->len < target_bytes) {
        const char *w = filler_words[splitmix64(&rng) % FILLER_WORDS];
        if (text->len > prefix && (st = aq_buf_append(text, " ", 1)) != AQ_OK)
            return st;
        if ((st = aq_buf_append_str(text, w)) != AQ_OK)
            return st;
    }
    if (target_bytes >= prefix)
        buf_truncate(text, target_bytes); /* fillers are ASCII: any cut is a boundary */
    return AQ_OK;
}

/* A prefill's continuation (see the header): the rest of the text the
 * request without its last message gets, or filler words after P. */
static aq_status prefill_text(const aq_sim_request *r, uint64_t hash, aq_sim_output_range range, aq_buf *text)
{
    const aq_sim_message *m = &r->messages[r->n_messages - 1];
    aq_sim_request r0 = *r;
    aq_status st;
    size_t p_len = 0;
    r0.n_messages--;
    r0.has_tool_result = false;
    for (size_t i = 0; i < r0.n_messages && !r0.has_tool_result; i++)
        for (size_t b = r0.messages[i].first_block; b < r0.messages[i].first_block + r0.messages[i].n_blocks; b++)
            r0.has_tool_result = r0.has_tool_result || r0.info[b].kind == AQ_SIM_BLOCK_TOOL_RESULT;
    if ((st = echo_text(&r0, request_hash(&r0), range, text)) != AQ_OK)
        return st;
    /* P: the prefill's text blocks, compared piece by piece with T0 */
    bool prefix = true;
    for (size_t b = m->first_block; b < m->first_block + m->n_blocks && prefix; b++) {
        if (r->info[b].kind != AQ_SIM_BLOCK_TEXT)
            continue;
        const aq_sim_text *t = &r->blocks[b];
        prefix = p_len + t->len <= text->len && memcmp(text->data + p_len, t->ptr, t->len) == 0;
        p_len += t->len;
    }
    if (prefix) {
        memmove(text->data, text->data + p_len, text->len - p_len);
        buf_truncate(text, text->len - p_len);
        return AQ_OK;
    }
    aq_buf_reset(text);
    uint64_t rng = hash;
    uint32_t target = range.min;
    if (range.max > range.min)
        target += (uint32_t)(splitmix64(&rng) % ((uint64_t)range.max - range.min + 1));
    size_t target_bytes = (size_t)target * 4;
    char last = 'x';
    for (size_t b = m->first_block + m->n_blocks; b-- > m->first_block;)
        if (r->info[b].kind == AQ_SIM_BLOCK_TEXT && r->blocks[b].len) {
            last = r->blocks[b].ptr[r->blocks[b].len - 1];
            break;
        }
    bool space = last != ' ';
    while (text->len < target_bytes) {
        if (space && (st = aq_buf_append(text, " ", 1)) != AQ_OK)
            return st;
        if ((st = aq_buf_append_str(text, filler_words[splitmix64(&rng) % FILLER_WORDS])) != AQ_OK)
            return st;
        space = true;
    }
    buf_truncate(text, target_bytes);
    return AQ_OK;
}

aq_status aq_sim_answer_build(const aq_sim_request *r, aq_sim_output_range range,
                              const aq_sim_tool_opts *topts, aq_buf *text, aq_sim_answer *out,
                              aq_err *err)
{
    aq_status st = AQ_OK;
    aq_sim_answer a = {.stop_reason = "end_turn"};
    bool used = false;

    out->calls = NULL;
    out->n_calls = 0;
    a.hash = request_hash(r);
    aq_buf_reset(text);
    if (topts && !r->prefill) {
        if ((st = tool_answer(r, topts, text, &a, &used, err)) != AQ_OK) {
            aq_sim_answer_free(&a);
            return st;
        }
        if (used)
            goto usage;
    }

    st = r->prefill ? prefill_text(r, a.hash, range, text) : echo_text(r, a.hash, range, text);
    if (st != AQ_OK)
        goto fail;

    if (aq_sim_tokens(text->len) > r->max_tokens) {
        uint64_t max_bytes = (uint64_t)r->max_tokens * 4;
        buf_truncate(text, aq_sim_utf8_cut(text->data, text->len, (size_t)max_bytes));
        a.stop_reason = "max_tokens";
    }
    const char *first = NULL;
    for (size_t i = 0; i < r->n_stop; i++) {
        const char *p = memmem(text->data, text->len, r->stop[i].ptr, r->stop[i].len);
        if (p && (!first || p < first)) {
            first = p;
            a.stop_sequence = r->stop[i];
        }
    }
    if (first) {
        buf_truncate(text, (size_t)(first - text->data));
        a.stop_reason = "stop_sequence";
    }
    a.output_tokens = aq_sim_tokens(text->len);
usage:
    a.input_tokens = aq_sim_input_tokens(r);
    cache_points(r, &a);
    *out = a;
    return AQ_OK;

fail:
    return aq_err_set(err, st, "answer text over its cap of %zu bytes", text->cap);
}

/* ----------------------------------------------------------------- render */

static aq_status json_escape(aq_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    aq_status st = AQ_OK;
    size_t run = 0;
    for (size_t i = 0; i < n && st == AQ_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (i > run)
            st = aq_buf_append(out, s + run, i - run);
        run = i + 1;
        if (st != AQ_OK)
            break;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        st = aq_buf_append(out, esc, elen);
    }
    if (st == AQ_OK && n > run)
        st = aq_buf_append(out, s + run, n - run);
    return st;
}

aq_status aq_sim_render_message(aq_buf *out, const aq_sim_request *r, const aq_sim_answer *a,
                                const char *text, size_t text_len, const char *msg_id)
{
    aq_status st = aq_buf_append_str(out, "{\"id\":\"");
    if (st == AQ_OK) st = aq_buf_append_str(out, msg_id);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
    if (st == AQ_OK) st = json_escape(out, r->model.ptr, r->model.len);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"content\":[");
    if (text_len > 0 || a->n_calls == 0) {
        if (st == AQ_OK) st = aq_buf_append_str(out, "{\"type\":\"text\",\"text\":\"");
        if (st == AQ_OK) st = json_escape(out, text, text_len);
        if (st == AQ_OK) st = aq_buf_append_str(out, "\"}");
    }
    for (size_t i = 0; i < a->n_calls && st == AQ_OK; i++) {
        const aq_sim_tool_call *c = &a->calls[i];
        st = aq_buf_append_str(out, i || text_len > 0 ? ",{\"type\":\"tool_use\",\"id\":\"" : "{\"type\":\"tool_use\",\"id\":\"");
        if (st == AQ_OK) st = aq_buf_append_str(out, c->id);
        if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"name\":\"");
        if (st == AQ_OK) st = json_escape(out, c->name.ptr, c->name.len);
        if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"input\":");
        if (st == AQ_OK) st = aq_buf_append(out, c->input, c->input_len); /* jansson's compact JSON */
        if (st == AQ_OK) st = aq_buf_append(out, "}", 1);
    }
    if (st == AQ_OK) st = aq_buf_append_str(out, "],\"stop_reason\":\"");
    if (st == AQ_OK) st = aq_buf_append_str(out, a->stop_reason);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"stop_sequence\":");
    if (a->stop_sequence.ptr) {
        if (st == AQ_OK) st = aq_buf_append(out, "\"", 1);
        if (st == AQ_OK) st = json_escape(out, a->stop_sequence.ptr, a->stop_sequence.len);
        if (st == AQ_OK) st = aq_buf_append(out, "\"", 1);
    } else if (st == AQ_OK) {
        st = aq_buf_append_str(out, "null");
    }
    if (st == AQ_OK)
        st = aq_buf_printf(out,
                           ",\"usage\":{\"input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64
                           ",\"cache_creation_input_tokens\":%" PRId64
                           ",\"cache_read_input_tokens\":%" PRId64 "}}",
                           a->input_tokens, a->output_tokens, a->cache_creation_input_tokens,
                           a->cache_read_input_tokens);
    return st;
}

aq_status aq_sim_render_error(aq_buf *out, const char *error_type, const char *message,
                              const char *request_id)
{
    /* The message may quote the request: jansson's error text can hold the
     * first byte of a multi-byte character. Invalid UTF-8 becomes U+FFFD (at
     * most 3 bytes for 1) so that the body is always JSON. */
    size_t mlen = strlen(message);
    char *clean = malloc(3 * mlen + 1);
    if (!clean)
        return AQ_NOMEM;
    aq_utf8_sanitize(message, mlen, clean, 3 * mlen + 1);
    aq_status st = aq_buf_append_str(out, "{\"type\":\"error\",\"error\":{\"type\":\"");
    if (st == AQ_OK) st = aq_buf_append_str(out, error_type);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\",\"message\":\"");
    if (st == AQ_OK) st = json_escape(out, clean, strlen(clean));
    if (st == AQ_OK) st = aq_buf_append_str(out, "\"},\"request_id\":\"");
    if (st == AQ_OK) st = aq_buf_append_str(out, request_id);
    if (st == AQ_OK) st = aq_buf_append_str(out, "\"}");
    free(clean);
    return st;
}
