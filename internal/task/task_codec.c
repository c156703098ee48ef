#include "task_codec.h"

#include "core/text.h"
#include "task_wire.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void aq_task_limits_default(aq_task_limits *lim)
{
    lim->max_payload_bytes = 4u << 20;
    lim->max_prompt_bytes = 1u << 20;
    lim->max_media_bytes = AQ_TASK_DEFAULT_MAX_MEDIA_BYTES;
    lim->max_tokens_cap = 64000;
    lim->max_messages = 1000;
    lim->max_blocks = AQ_TASK_DEFAULT_MAX_BLOCKS;
    lim->max_stop_sequences = 16;
    lim->max_metadata = 64;
    lim->max_field_bytes = 1024;
    lim->max_tools = AQ_TASK_DEFAULT_MAX_TOOLS;
    lim->max_tool_schema_bytes = AQ_TASK_DEFAULT_MAX_TOOL_SCHEMA_BYTES;
    lim->max_steps_cap = AQ_TASK_DEFAULT_MAX_STEPS_CAP;
    lim->max_tool_calls_cap = AQ_TASK_DEFAULT_MAX_TOOL_CALLS_CAP;
    lim->check_tool_schema = NULL;
}

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '=' || c == '.';
}

bool aq_task_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > AQ_TASK_ID_MAX || id[0] == '.' || id[n - 1] == '.' || strstr(id, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(id[i]))
            return false;
    return true;
}

bool aq_task_type_valid(const char *type)
{
    size_t n = type ? strlen(type) : 0;
    if (n == 0 || n > AQ_TASK_TYPE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(type[i]) || type[i] == '.' || type[i] == '=')
            return false;
    return true;
}

/* [A-Za-z0-9_-]{1,max} */
static bool token_valid(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(s[i]) || s[i] == '.' || s[i] == '=')
            return false;
    return true;
}

bool aq_task_tool_name_valid(const char *name)
{
    return token_valid(name, AQ_TASK_TOOL_NAME_MAX);
}

static bool in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

bool aq_task_image_type_valid(const char *media_type)
{
    static const char *const types[] = {"image/jpeg", "image/png", "image/gif", "image/webp", NULL};
    return in_list(media_type, types);
}

bool aq_task_document_type_valid(const char *media_type)
{
    static const char *const types[] = {"application/pdf", "text/plain", NULL};
    return in_list(media_type, types);
}

aq_status aq_task_unpack(const void *data, size_t len, const aq_task_limits *lim,
                         Agentq__V1__Task **out, aq_err *err)
{
    if (len == 0)
        return aq_err_set(err, AQ_TASK_DECODE, "empty payload");
    if (len > lim->max_payload_bytes)
        return aq_err_set(err, AQ_TOO_BIG, "task payload is %zu bytes, over the cap of %zu", len,
                          lim->max_payload_bytes);
    int has_nul = 0;
    aq_wire_nul nul;
    aq_status st = aq_wire_scan(&agentq__v1__task__descriptor, data, len, &has_nul, &nul, err);
    if (st != AQ_OK)
        return st;
    Agentq__V1__Task *t = agentq__v1__task__unpack(NULL, len, data);
    if (!t)
        return aq_err_set(err, AQ_TASK_DECODE,
                          "payload (%zu bytes) does not decode as agentq.v1.Task", len);
    if (has_nul) {
        /* protobuf-c cut the string at the NUL: a cut id is somebody else's
         * id, a cut prompt another question. Nothing of it may be used. */
        agentq__v1__task__free_unpacked(t, NULL);
        return aq_err_set(err, AQ_TASK_INVALID,
                          "%s contains a NUL byte (U+0000) at byte %zu of %zu: refused rather "
                          "than cut short",
                          nul.path, nul.offset, nul.length);
    }
    *out = t;
    return AQ_OK;
}

aq_status aq_task_new_stub(const char *id, Agentq__V1__Task **out, aq_err *err)
{
    Agentq__V1__Task *t = malloc(sizeof(*t));
    char *copy = strdup(id);
    if (!t || !copy) {
        free(t);
        free(copy);
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    }
    agentq__v1__task__init(t);
    t->id = copy;
    *out = t;
    return AQ_OK;
}

aq_status aq_task_check_subject(const Agentq__V1__Task *t, const char *subject,
                                const char *prefix, aq_err *err)
{
    size_t n = strlen(prefix);
    const char *type = !strncmp(subject, prefix, n) && subject[n] == '.' ? subject + n + 1 : NULL;
    if (!type || strcmp(type, t->type) != 0)
        return aq_err_set(err, AQ_TASK_INVALID,
                          "type \"%s\" does not match the subject %s (publish a task of type T "
                          "on %s.T)",
                          t->type, subject, prefix);
    return AQ_OK;
}

static aq_status check_text(const char *field, const char *s, size_t cap, aq_err *err)
{
    size_t n = strlen(s);
    if (n > cap)
        return aq_err_set(err, AQ_TASK_INVALID, "%s is %zu bytes, over the cap of %zu", field, n,
                          cap);
    if (!aq_utf8_valid(s, n))
        return aq_err_set(err, AQ_TASK_INVALID, "%s is not valid UTF-8", field);
    return AQ_OK;
}

/* ---- content blocks, tools ---- */

/* What validation adds up across the task. */
typedef struct vctx {
    const aq_task_limits *lim;
    size_t text;   /* bytes counted against max_prompt_bytes */
    size_t media;  /* bytes counted against max_media_bytes */
    size_t blocks; /* blocks seen, nested ones included */
    bool tool_blocks; /* a tool_use or tool_result was seen */
    aq_err *err;
} vctx;

#define PATH_MAX_LEN 96

static aq_status invalid(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static aq_status invalid(vctx *v, const char *fmt, ...)
{
    char msg[AQ_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return aq_err_set(v->err, AQ_TASK_INVALID, "%s", msg);
}

/* Non-empty, UTF-8 text counted against the prompt cap. */
static aq_status check_block_text(vctx *v, const char *path, const char *field, const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return invalid(v, "%s.%s is empty", path, field);
    if (!aq_utf8_valid(s, n))
        return invalid(v, "%s.%s is not valid UTF-8", path, field);
    v->text += n;
    return AQ_OK;
}

/* `json` parses (no duplicate keys) to a JSON object; *out (optional) gets it. */
static aq_status check_json_object(vctx *v, const char *path, const char *json, json_t **out)
{
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return invalid(v, "%s is not JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                       jerr.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return invalid(v, "%s is not a JSON object", path);
    }
    if (out)
        *out = root;
    else
        json_decref(root);
    return AQ_OK;
}

static bool url_valid(const char *u)
{
    size_t n = strlen(u);
    if (n > AQ_TASK_URL_MAX || !aq_utf8_valid(u, n))
        return false;
    size_t scheme = strncmp(u, "https://", 8) == 0 ? 8 : strncmp(u, "http://", 7) == 0 ? 7 : 0;
    if (scheme == 0 || n == scheme)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
            return false;
    return true;
}

static aq_status check_media(vctx *v, const char *path, const Agentq__V1__MediaSource *src,
                             bool image)
{
    bool (*type_ok)(const char *) = image ? aq_task_image_type_valid : aq_task_document_type_valid;
    const char *allowed = image ? "image/jpeg, image/png, image/gif or image/webp"
                                : "application/pdf or text/plain";
    if (!src)
        return invalid(v, "%s.source is missing", path);
    bool has_data = src->data.len > 0, has_url = src->url && *src->url;
    if (has_data && has_url)
        return invalid(v, "%s.source: set data or url, not both", path);
    if (!has_data && !has_url)
        return invalid(v, "%s.source has neither data nor url", path);
    if (has_data && !*src->media_type)
        return invalid(v, "%s.source.media_type is required with data", path);
    if (*src->media_type && !type_ok(src->media_type)) {
        size_t n = strlen(src->media_type);
        if (n <= 64 && aq_utf8_valid(src->media_type, n))
            return invalid(v, "%s.source.media_type \"%s\" is not %s", path, src->media_type,
                           allowed);
        return invalid(v, "%s.source.media_type is not %s", path, allowed);
    }
    if (has_url && !url_valid(src->url))
        return invalid(v,
                       "%s.source.url must be an http:// or https:// URL of at most %d bytes, "
                       "without spaces or control characters",
                       path, AQ_TASK_URL_MAX);
    if (has_data && strcmp(src->media_type, "text/plain") == 0 &&
        !aq_utf8_valid((const char *)src->data.data, src->data.len))
        return invalid(v, "%s.source.data is text/plain but not valid UTF-8", path);
    v->media += src->data.len;
    return AQ_OK;
}

/* Where a block sits decides which kinds it may be. */
typedef enum { IN_USER, IN_ASSISTANT, IN_TOOL_RESULT } block_place;

static aq_status check_block(vctx *v, const char *path, const Agentq__V1__ContentBlock *b,
                             block_place place)
{
    char sub[PATH_MAX_LEN + 32];
    aq_status st;
    if (++v->blocks > v->lim->max_blocks)
        return invalid(v, "the task has more than %zu content blocks (the cap)", v->lim->max_blocks);
    switch (b ? b->block_case : AGENTQ__V1__CONTENT_BLOCK__BLOCK__NOT_SET) {
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT:
        snprintf(sub, sizeof(sub), "%s.text", path);
        if (!b->text)
            return invalid(v, "%s is missing", sub);
        return check_block_text(v, sub, "text", b->text->text);
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE:
        if (place == IN_ASSISTANT)
            return invalid(v, "%s.image is only allowed in user messages and tool results", path);
        snprintf(sub, sizeof(sub), "%s.image", path);
        return check_media(v, sub, b->image ? b->image->source : NULL, true);
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT: {
        if (place == IN_ASSISTANT)
            return invalid(v, "%s.document is only allowed in user messages and tool results",
                           path);
        snprintf(sub, sizeof(sub), "%s.document", path);
        const char *title = b->document ? b->document->title : "";
        size_t n = strlen(title);
        if (n > v->lim->max_field_bytes)
            return invalid(v, "%s.title is %zu bytes, over the cap of %zu", sub, n,
                           v->lim->max_field_bytes);
        if (!aq_utf8_valid(title, n))
            return invalid(v, "%s.title is not valid UTF-8", sub);
        v->text += n;
        return check_media(v, sub, b->document ? b->document->source : NULL, false);
    }
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE: {
        const Agentq__V1__ToolUseBlock *tu = b->tool_use;
        if (place != IN_ASSISTANT)
            return invalid(v, "%s.tool_use is only allowed in assistant messages", path);
        if (!tu)
            return invalid(v, "%s.tool_use is missing", path);
        v->tool_blocks = true;
        if (!token_valid(tu->id, AQ_TASK_TOOL_USE_ID_MAX))
            return invalid(v, "%s.tool_use.id must be 1-%d characters of [A-Za-z0-9_-]", path,
                           AQ_TASK_TOOL_USE_ID_MAX);
        if (!aq_task_tool_name_valid(tu->name))
            return invalid(v, "%s.tool_use.name must match ^[a-zA-Z0-9_-]{1,64}$", path);
        v->text += strlen(tu->name) + strlen(tu->input_json);
        snprintf(sub, sizeof(sub), "%s.tool_use.input_json", path);
        return check_json_object(v, sub, tu->input_json, NULL);
    }
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT: {
        const Agentq__V1__ToolResultBlock *tr = b->tool_result;
        if (place != IN_USER)
            return invalid(v, "%s.tool_result is only allowed in user messages", path);
        if (!tr)
            return invalid(v, "%s.tool_result is missing", path);
        v->tool_blocks = true;
        if (!token_valid(tr->tool_use_id, AQ_TASK_TOOL_USE_ID_MAX))
            return invalid(v, "%s.tool_result.tool_use_id must be 1-%d characters of [A-Za-z0-9_-]",
                           path, AQ_TASK_TOOL_USE_ID_MAX);
        for (size_t k = 0; k < tr->n_content; k++) {
            const Agentq__V1__ContentBlock *c = tr->content[k];
            snprintf(sub, sizeof(sub), "%s.tool_result.content[%zu]", path, k);
            /* Text, image or document only: this also bounds the nesting. */
            if (c && (c->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE ||
                      c->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT))
                return invalid(v, "%s must be a text, image or document block", sub);
            if ((st = check_block(v, sub, c, IN_TOOL_RESULT)) != AQ_OK)
                return st;
        }
        return AQ_OK;
    }
    default:
        return invalid(v, "%s is empty (no text, image, document, tool_use or tool_result)", path);
    }
}

static bool is_block(const Agentq__V1__ContentBlock *b, Agentq__V1__ContentBlock__BlockCase c)
{
    return b && b->block_case == c;
}

/* The tool_use ids of message `m` (an assistant message) include `id`. */
static bool has_tool_use(const Agentq__V1__Message *m, const char *id)
{
    for (size_t k = 0; k < m->n_blocks; k++)
        if (is_block(m->blocks[k], AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE) &&
            strcmp(m->blocks[k]->tool_use->id, id) == 0)
            return true;
    return false;
}

/* A tool_result of message `m` answers `id` (that they come first is the
 * next message's own check, with its own message). */
static bool answers(const Agentq__V1__Message *m, const char *id)
{
    for (size_t k = 0; k < m->n_blocks; k++)
        if (is_block(m->blocks[k], AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT) &&
            strcmp(m->blocks[k]->tool_result->tool_use_id, id) == 0)
            return true;
    return false;
}

/* How the tool blocks of messages[i] pair with the messages around it (the
 * API's rule): its tool_results come first and answer the previous message's
 * tool_use, once each; its tool_use ids are distinct. Run after every block
 * of the task passed check_block, so ids and kinds are sound. */
static aq_status check_pairing(vctx *v, const Agentq__V1__Task *t, size_t i)
{
    const Agentq__V1__Message *m = t->messages[i];
    const Agentq__V1__Message *prev = i > 0 ? t->messages[i - 1] : NULL;
    bool other_seen = false;
    for (size_t j = 0; j < m->n_blocks; j++) {
        const Agentq__V1__ContentBlock *b = m->blocks[j];
        if (is_block(b, AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT)) {
            const char *id = b->tool_result->tool_use_id;
            if (other_seen)
                return invalid(v,
                               "messages[%zu].blocks[%zu].tool_result must come before any other "
                               "block of the message",
                               i, j);
            if (!prev)
                return invalid(v,
                               "messages[%zu].blocks[%zu].tool_result.tool_use_id \"%s\" answers "
                               "no tool_use: it is in the first message",
                               i, j, id);
            if (strcmp(prev->role, "assistant") != 0 || !has_tool_use(prev, id))
                return invalid(v,
                               "messages[%zu].blocks[%zu].tool_result.tool_use_id \"%s\" answers "
                               "no tool_use of messages[%zu]",
                               i, j, id, i - 1);
            for (size_t k = 0; k < j; k++)
                if (strcmp(m->blocks[k]->tool_result->tool_use_id, id) == 0)
                    return invalid(v,
                                   "messages[%zu].blocks[%zu].tool_result.tool_use_id \"%s\" "
                                   "repeats blocks[%zu]",
                                   i, j, id, k);
            continue;
        }
        other_seen = true;
        if (!is_block(b, AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE))
            continue;
        const char *id = b->tool_use->id;
        for (size_t k = 0; k < j; k++)
            if (is_block(m->blocks[k], AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE) &&
                strcmp(m->blocks[k]->tool_use->id, id) == 0)
                return invalid(v, "messages[%zu].blocks[%zu].tool_use.id \"%s\" repeats blocks[%zu]",
                               i, j, id, k);
    }
    return AQ_OK;
}

/* Every tool_use of messages[i] is answered by the next message (run after
 * check_pairing passed for every message: its messages say more). */
static aq_status check_answered(vctx *v, const Agentq__V1__Task *t, size_t i)
{
    const Agentq__V1__Message *m = t->messages[i];
    const Agentq__V1__Message *next = i + 1 < t->n_messages ? t->messages[i + 1] : NULL;
    for (size_t j = 0; j < m->n_blocks; j++) {
        const Agentq__V1__ContentBlock *b = m->blocks[j];
        if (!is_block(b, AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE))
            continue;
        const char *id = b->tool_use->id;
        if (!next || strcmp(next->role, "user") != 0 || !answers(next, id))
            return invalid(v,
                           "messages[%zu].blocks[%zu].tool_use \"%s\" is not answered: the next "
                           "message must start with a tool_result for every tool_use",
                           i, j, id);
    }
    return AQ_OK;
}

static aq_status check_tools(vctx *v, const Agentq__V1__Task *t)
{
    const aq_task_limits *lim = v->lim;
    char path[PATH_MAX_LEN];
    aq_status st;
    if (t->n_tools > lim->max_tools)
        return invalid(v, "%zu tools, over the cap of %zu", t->n_tools, lim->max_tools);
    for (size_t k = 0; k < t->n_tools; k++) {
        const Agentq__V1__Tool *tool = t->tools[k];
        if (!aq_task_tool_name_valid(tool->name))
            return invalid(v, "tools[%zu].name must match ^[a-zA-Z0-9_-]{1,64}$", k);
        for (size_t o = 0; o < k; o++)
            if (strcmp(t->tools[o]->name, tool->name) == 0)
                return invalid(v, "tools[%zu].name \"%s\" repeats tools[%zu]", k, tool->name, o);
        size_t dn = strlen(tool->description), sn = strlen(tool->input_schema_json);
        if (dn > lim->max_tool_schema_bytes)
            return invalid(v, "tools[%zu].description is %zu bytes, over the cap of %zu", k, dn,
                           lim->max_tool_schema_bytes);
        if (!aq_utf8_valid(tool->description, dn))
            return invalid(v, "tools[%zu].description is not valid UTF-8", k);
        if (sn == 0)
            return invalid(v, "tools[%zu].input_schema_json is empty", k);
        if (sn > lim->max_tool_schema_bytes)
            return invalid(v, "tools[%zu].input_schema_json is %zu bytes, over the cap of %zu", k,
                           sn, lim->max_tool_schema_bytes);
        snprintf(path, sizeof(path), "tools[%zu].input_schema_json", k);
        json_t *schema = NULL;
        if ((st = check_json_object(v, path, tool->input_schema_json, &schema)) != AQ_OK)
            return st;
        json_t *type = json_object_get(schema, "type");
        bool object = json_is_string(type) && strcmp(json_string_value(type), "object") == 0;
        json_decref(schema);
        if (!object)
            return invalid(v, "%s must have \"type\": \"object\"", path);
        if (lim->check_tool_schema &&
            (st = lim->check_tool_schema(tool->input_schema_json, v->err)) != AQ_OK) {
            aq_err_prefix(v->err, "%s", path);
            return st;
        }
        v->text += strlen(tool->name) + dn + sn;
    }

    const Agentq__V1__ToolChoice *tc = t->tool_choice;
    if (tc) {
        const char *type = aq_task_tool_choice_name(tc->type);
        if (!strcmp(type, "unknown"))
            return invalid(v, "tool_choice.type %d is unknown (expected auto, any, tool or none)",
                           (int)tc->type);
        bool needs_tools = tc->type == AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY ||
                           tc->type == AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL;
        if (needs_tools && t->n_tools == 0)
            return invalid(v, "tool_choice.type %s needs tools: the task has none", type);
        if (tc->type == AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL) {
            bool found = false;
            for (size_t k = 0; k < t->n_tools && !found; k++)
                found = strcmp(t->tools[k]->name, tc->name) == 0;
            if (!*tc->name)
                return invalid(v, "tool_choice.name is required with type tool");
            if (!found)
                return invalid(v, "tool_choice.name must be one of the task's tools");
        } else if (*tc->name) {
            return invalid(v, "tool_choice.name is only for type tool (type is %s)", type);
        }
    }
    return AQ_OK;
}

static aq_status check_agent_fields(vctx *v, const Agentq__V1__Task *t)
{
    const aq_task_limits *lim = v->lim;
    if (!strcmp(aq_task_ceiling_action_name(t->ceiling_action), "unknown"))
        return invalid(v, "ceiling_action %d is unknown (expected default, fail or final)",
                       (int)t->ceiling_action);
    if (*t->session_id && !aq_task_id_valid(t->session_id))
        return invalid(v,
                       "session_id must be 1-%d characters of [A-Za-z0-9_=.-], not starting or "
                       "ending with '.' and without '..'",
                       AQ_TASK_ID_MAX);
    if (t->max_steps > lim->max_steps_cap)
        return invalid(v, "max_steps %u is over the cap of %u", t->max_steps, lim->max_steps_cap);
    if (t->max_tool_calls > lim->max_tool_calls_cap)
        return invalid(v, "max_tool_calls %u is over the cap of %u", t->max_tool_calls,
                       lim->max_tool_calls_cap);
    return AQ_OK;
}

aq_status aq_task_validate(const Agentq__V1__Task *t, const aq_task_limits *lim, aq_err *err)
{
    aq_status st;
    vctx v = {lim, 0, 0, 0, false, err};
    char path[PATH_MAX_LEN];
    if (!t->id || !*t->id)
        return aq_err_set(err, AQ_TASK_INVALID, "id is missing");
    if (!aq_task_id_valid(t->id))
        return aq_err_set(err, AQ_TASK_INVALID,
                          "id must be 1-%d characters of [A-Za-z0-9_=.-], not starting or ending "
                          "with '.' and without '..'",
                          AQ_TASK_ID_MAX);
    if (!aq_task_type_valid(t->type))
        return aq_err_set(err, AQ_TASK_INVALID, "type must be 1-%d characters of [A-Za-z0-9_-]",
                          AQ_TASK_TYPE_MAX);
    if ((st = check_text("tenant", t->tenant, lim->max_field_bytes, err)) != AQ_OK ||
        (st = check_text("model", t->model, lim->max_field_bytes, err)) != AQ_OK)
        return st;

    bool has_prompt = t->prompt && *t->prompt;
    if (has_prompt && t->n_messages > 0)
        return aq_err_set(err, AQ_TASK_INVALID, "set prompt or messages, not both");
    if (!has_prompt && t->n_messages == 0)
        return aq_err_set(err, AQ_TASK_INVALID, "no prompt and no messages");
    if (t->n_messages > lim->max_messages)
        return aq_err_set(err, AQ_TASK_INVALID, "%zu messages, over the cap of %zu",
                          t->n_messages, lim->max_messages);

    size_t total = strlen(t->system) + strlen(t->prompt);
    for (size_t i = 0; i < t->n_messages; i++) {
        const Agentq__V1__Message *m = t->messages[i];
        bool user = strcmp(m->role, "user") == 0;
        if (!user && strcmp(m->role, "assistant") != 0)
            return aq_err_set(err, AQ_TASK_INVALID,
                              "messages[%zu].role must be \"user\" or \"assistant\"", i);
        if (i == 0 && !user)
            return aq_err_set(err, AQ_TASK_INVALID, "the first message must have role \"user\"");
        if (*m->content && m->n_blocks > 0)
            return aq_err_set(err, AQ_TASK_INVALID,
                              "messages[%zu]: set content or blocks, not both", i);
        if (!*m->content && m->n_blocks == 0)
            return aq_err_set(err, AQ_TASK_INVALID, "messages[%zu].content is empty", i);
        total += strlen(m->content);
        for (size_t j = 0; j < m->n_blocks; j++) {
            snprintf(path, sizeof(path), "messages[%zu].blocks[%zu]", i, j);
            if ((st = check_block(&v, path, m->blocks[j], user ? IN_USER : IN_ASSISTANT)) != AQ_OK)
                return st;
        }
    }
    for (size_t i = 0; i < t->n_messages; i++)
        if (t->messages[i]->n_blocks > 0 && (st = check_pairing(&v, t, i)) != AQ_OK)
            return st;
    for (size_t i = 0; i < t->n_messages; i++)
        if (t->messages[i]->n_blocks > 0 && (st = check_answered(&v, t, i)) != AQ_OK)
            return st;
    if (v.tool_blocks && t->n_tools == 0)
        return aq_err_set(err, AQ_TASK_INVALID,
                          "messages hold tool_use or tool_result blocks but the task defines no "
                          "tools (the API refuses that)");
    if ((st = check_tools(&v, t)) != AQ_OK || (st = check_agent_fields(&v, t)) != AQ_OK)
        return st;
    total += v.text;
    if (total > lim->max_prompt_bytes)
        return aq_err_set(err, AQ_PROMPT_TOO_LARGE,
                          "prompt is %zu bytes (system + prompt + messages + tools), over the cap "
                          "of %zu",
                          total, lim->max_prompt_bytes);
    if (v.media > lim->max_media_bytes)
        return aq_err_set(err, AQ_PROMPT_TOO_LARGE,
                          "media is %zu bytes (image and document data), over the cap of %zu",
                          v.media, lim->max_media_bytes);
    if (!aq_utf8_valid(t->system, strlen(t->system)) || !aq_utf8_valid(t->prompt, strlen(t->prompt)))
        return aq_err_set(err, AQ_TASK_INVALID, "system or prompt is not valid UTF-8");
    for (size_t i = 0; i < t->n_messages; i++)
        if (!aq_utf8_valid(t->messages[i]->content, strlen(t->messages[i]->content)))
            return aq_err_set(err, AQ_TASK_INVALID, "messages[%zu].content is not valid UTF-8", i);

    if (t->max_tokens > lim->max_tokens_cap)
        return aq_err_set(err, AQ_TASK_INVALID, "max_tokens %u is over the cap of %u",
                          t->max_tokens, lim->max_tokens_cap);
    if (t->temperature_presence_case == AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE &&
        !(isfinite(t->temperature) && t->temperature >= 0.0f && t->temperature <= 1.0f))
        return aq_err_set(err, AQ_TASK_INVALID, "temperature must be between 0 and 1");
    if (t->n_stop_sequences > lim->max_stop_sequences)
        return aq_err_set(err, AQ_TASK_INVALID, "%zu stop_sequences, over the cap of %zu",
                          t->n_stop_sequences, lim->max_stop_sequences);
    for (size_t i = 0; i < t->n_stop_sequences; i++) {
        if (!*t->stop_sequences[i])
            return aq_err_set(err, AQ_TASK_INVALID, "stop_sequences[%zu] is empty", i);
        if ((st = check_text("stop_sequences", t->stop_sequences[i], lim->max_field_bytes, err)))
            return st;
    }
    if (t->n_metadata > lim->max_metadata)
        return aq_err_set(err, AQ_TASK_INVALID, "%zu metadata entries, over the cap of %zu",
                          t->n_metadata, lim->max_metadata);
    for (size_t i = 0; i < t->n_metadata; i++) {
        if ((st = check_text("metadata key", t->metadata[i]->key, lim->max_field_bytes, err)) ||
            (st = check_text("metadata value", t->metadata[i]->value, lim->max_field_bytes, err)))
            return st;
    }
    if (t->deadline_unix_ms < 0 || t->created_unix_ms < 0)
        return aq_err_set(err, AQ_TASK_INVALID, "deadline_unix_ms and created_unix_ms must be >= 0");
    /* proto3 enums are open: a newer publisher's policy arrives as a number
     * this worker does not know. Refused rather than read as the default, so
     * a task never gets a cache behaviour it did not ask for. */
    if (!strcmp(aq_task_cache_policy_name(t->cache_policy), "unknown"))
        return aq_err_set(err, AQ_TASK_INVALID,
                          "cache_policy %d is unknown (expected default, opt-in, bypass or refresh)",
                          (int)t->cache_policy);
    return AQ_OK;
}

static const struct {
    Agentq__V1__CachePolicy value;
    const char *name, *enum_name;
} cache_policies[] = {
    {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED, "default", "CACHE_POLICY_UNSPECIFIED"},
    {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN, "opt-in", "CACHE_POLICY_OPT_IN"},
    {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_BYPASS, "bypass", "CACHE_POLICY_BYPASS"},
    {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH, "refresh", "CACHE_POLICY_REFRESH"},
};

const char *aq_task_cache_policy_name(Agentq__V1__CachePolicy p)
{
    for (size_t i = 0; i < sizeof(cache_policies) / sizeof(cache_policies[0]); i++)
        if (cache_policies[i].value == p)
            return cache_policies[i].name;
    return "unknown";
}

bool aq_task_cache_policy_parse(const char *s, Agentq__V1__CachePolicy *out)
{
    for (size_t i = 0; s && i < sizeof(cache_policies) / sizeof(cache_policies[0]); i++)
        if (!strcmp(s, cache_policies[i].name) || !strcmp(s, cache_policies[i].enum_name)) {
            *out = cache_policies[i].value;
            return true;
        }
    return false;
}

static const struct {
    Agentq__V1__ToolChoiceType value;
    const char *name, *enum_name;
} tool_choices[] = {
    {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_UNSPECIFIED, "auto", "TOOL_CHOICE_TYPE_UNSPECIFIED"},
    {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY, "any", "TOOL_CHOICE_TYPE_ANY"},
    {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL, "tool", "TOOL_CHOICE_TYPE_TOOL"},
    {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE, "none", "TOOL_CHOICE_TYPE_NONE"},
};

const char *aq_task_tool_choice_name(Agentq__V1__ToolChoiceType t)
{
    for (size_t i = 0; i < sizeof(tool_choices) / sizeof(tool_choices[0]); i++)
        if (tool_choices[i].value == t)
            return tool_choices[i].name;
    return "unknown";
}

bool aq_task_tool_choice_parse(const char *s, Agentq__V1__ToolChoiceType *out)
{
    for (size_t i = 0; s && i < sizeof(tool_choices) / sizeof(tool_choices[0]); i++)
        if (!strcmp(s, tool_choices[i].name) || !strcmp(s, tool_choices[i].enum_name)) {
            *out = tool_choices[i].value;
            return true;
        }
    return false;
}

static const struct {
    Agentq__V1__CeilingAction value;
    const char *name, *enum_name;
} ceiling_actions[] = {
    {AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_UNSPECIFIED, "default", "CEILING_ACTION_UNSPECIFIED"},
    {AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FAIL, "fail", "CEILING_ACTION_FAIL"},
    {AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FINAL, "final", "CEILING_ACTION_FINAL"},
};

const char *aq_task_ceiling_action_name(Agentq__V1__CeilingAction a)
{
    for (size_t i = 0; i < sizeof(ceiling_actions) / sizeof(ceiling_actions[0]); i++)
        if (ceiling_actions[i].value == a)
            return ceiling_actions[i].name;
    return "unknown";
}

bool aq_task_ceiling_action_parse(const char *s, Agentq__V1__CeilingAction *out)
{
    for (size_t i = 0; s && i < sizeof(ceiling_actions) / sizeof(ceiling_actions[0]); i++)
        if (!strcmp(s, ceiling_actions[i].name) || !strcmp(s, ceiling_actions[i].enum_name)) {
            *out = ceiling_actions[i].value;
            return true;
        }
    return false;
}

void aq_task_free(Agentq__V1__Task *task)
{
    if (task)
        agentq__v1__task__free_unpacked(task, NULL);
}

/* protobuf-c packs into caller memory: size it, reserve it, write in place. */
static aq_status pack_into(const ProtobufCMessage *m, aq_buf *out, aq_err *err)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    char *at;
    aq_buf_reset(out);
    aq_status st = aq_buf_extend(out, n, &at);
    if (st != AQ_OK)
        return aq_err_set(err, st, "encoded message is %zu bytes, over the cap of %zu", n,
                          out->cap);
    protobuf_c_message_pack(m, (uint8_t *)at);
    return AQ_OK;
}

aq_status aq_task_pack(const Agentq__V1__Task *task, aq_buf *out, aq_err *err)
{
    return pack_into(&task->base, out, err);
}

aq_status aq_result_pack(const Agentq__V1__Result *res, aq_buf *out, aq_err *err)
{
    return pack_into(&res->base, out, err);
}

aq_status aq_result_unpack(const void *data, size_t len, Agentq__V1__Result **out, aq_err *err)
{
    /* Result.content nests like a task's blocks: refuse what would overflow
     * the stack in protobuf-c (a cache entry or result anyone could write). */
    int has_nul;
    aq_wire_nul nul;
    aq_status st = aq_wire_scan(&agentq__v1__result__descriptor, data, len, &has_nul, &nul, err);
    if (st != AQ_OK)
        return st;
    Agentq__V1__Result *r = agentq__v1__result__unpack(NULL, len, data);
    if (!r)
        return aq_err_set(err, AQ_TASK_DECODE,
                          "value (%zu bytes) does not decode as agentq.v1.Result", len);
    *out = r;
    return AQ_OK;
}

void aq_result_free(Agentq__V1__Result *res)
{
    if (res)
        agentq__v1__result__free_unpacked(res, NULL);
}

const char *aq_result_status_name(Agentq__V1__Status st)
{
    switch (st) {
    case AGENTQ__V1__STATUS__STATUS_COMPLETED: return "STATUS_COMPLETED";
    case AGENTQ__V1__STATUS__STATUS_FAILED: return "STATUS_FAILED";
    default: return "STATUS_UNSPECIFIED";
    }
}

bool aq_result_peek(const void *data, size_t len, Agentq__V1__Status *status, uint64_t *stream_seq)
{
    Agentq__V1__Result *r = NULL;
    if (aq_result_unpack(data, len, &r, NULL) != AQ_OK || !r)
        return false;
    *status = r->status;
    *stream_seq = r->stream_seq;
    aq_result_free(r);
    return true;
}
