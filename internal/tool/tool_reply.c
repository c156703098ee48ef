/* A tool service's reply body (the format in tool_dispatch.h). */
#include "tool_dispatch.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"

/* Blocks in one reply. */
#define MAX_BLOCKS 256

static const char *const OUTCOME_NAMES[] = {
#define AQ_X_TOOL_OUTCOME(name, str) str,
    AQ_TOOL_OUTCOME_MAP(AQ_X_TOOL_OUTCOME)
#undef AQ_X_TOOL_OUTCOME
};

const char *aq_tool_outcome_name(aq_tool_outcome o)
{
    if ((size_t)o >= sizeof(OUTCOME_NAMES) / sizeof(OUTCOME_NAMES[0]))
        return "unknown";
    return OUTCOME_NAMES[o];
}

void aq_tool_reply_clear(aq_tool_reply *r)
{
    if (!r)
        return;
    free(r->content_json);
    r->content_json = NULL;
}

/* content_json = the JSON string `text`. */
static aq_status set_text(aq_tool_reply *out, const char *text, size_t len)
{
    json_t *s = json_stringn(text, len);
    char *dump = s ? json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    if (!dump)
        return AQ_NOMEM;
    out->content_json = dump;
    return AQ_OK;
}

/* A bad reply: the message goes to the model as the content. */
static aq_status bad(aq_tool_reply *out, aq_err *err)
{
    char tmp[AQ_ERR_MAX];
    out->outcome = AQ_TOOL_BAD_REPLY;
    out->is_error = true;
    /* "%.40s" of the reply's type may cut a character: keep it UTF-8. */
    aq_utf8_sanitize(err->msg, strnlen(err->msg, sizeof(err->msg)), tmp, sizeof(tmp));
    memcpy(err->msg, tmp, sizeof(tmp));
    return set_text(out, err->msg, strlen(err->msg));
}

/* One block of a content array: the kinds a tool_result may hold. */
static bool check_block(json_t *b, size_t i, aq_err *err)
{
    const char *type = json_string_value(json_object_get(b, "type"));
    if (!json_is_object(b) || !type) {
        aq_err_set(err, AQ_INVALID_ARG, "bad tool reply: content[%zu] is not a block with a type", i);
        return false;
    }
    if (strcmp(type, "text") == 0) {
        if (!json_is_string(json_object_get(b, "text"))) {
            aq_err_set(err, AQ_INVALID_ARG, "bad tool reply: content[%zu] (text) has no string text", i);
            return false;
        }
    } else if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        if (!json_is_object(json_object_get(b, "source"))) {
            aq_err_set(err, AQ_INVALID_ARG, "bad tool reply: content[%zu] (%s) has no source object",
                       i, type);
            return false;
        }
    } else {
        aq_err_set(err, AQ_INVALID_ARG,
                   "bad tool reply: content[%zu] has type \"%.40s\" (text, image or document)", i,
                   type);
        return false;
    }
    return true;
}

aq_status aq_tool_reply_decode(const char *data, size_t len, size_t max_bytes, aq_tool_reply *out,
                               aq_err *err)
{
    aq_status st = AQ_OK;
    json_t *root = NULL;
    memset(out, 0, sizeof(*out));
    aq_err_clear(err);

    if (len > max_bytes) {
        aq_err_set(err, AQ_TOO_BIG, "bad tool reply: %zu bytes, over the cap of %zu", len, max_bytes);
        st = bad(out, err);
        goto out;
    }
    if (!aq_utf8_valid(data, len)) {
        aq_err_set(err, AQ_INVALID_ARG, "bad tool reply: not valid UTF-8");
        st = bad(out, err);
        goto out;
    }
    /* Valid UTF-8, but a text with it becomes "\u0000" in JSON, which
     * jansson (and many readers) refuse to decode again. */
    if (memchr(data, '\0', len)) {
        aq_err_set(err, AQ_INVALID_ARG, "bad tool reply: contains a NUL byte");
        st = bad(out, err);
        goto out;
    }
    json_error_t jerr;
    root = len ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    json_t *content = json_object_get(root, "content");
    if (!content) {
        /* Plain text, or JSON that is not the envelope: the text as it is. */
        out->outcome = AQ_TOOL_OK;
        st = set_text(out, data, len);
        goto out;
    }
    json_t *is_error = json_object_get(root, "is_error");
    json_t *permanent = json_object_get(root, "permanent");
    if ((is_error && !json_is_boolean(is_error)) || (permanent && !json_is_boolean(permanent))) {
        aq_err_set(err, AQ_INVALID_ARG, "bad tool reply: is_error and permanent must be booleans");
        st = bad(out, err);
        goto out;
    }
    if (json_is_array(content)) {
        if (json_array_size(content) > MAX_BLOCKS) {
            aq_err_set(err, AQ_TOO_BIG, "bad tool reply: %zu content blocks, cap %d",
                       json_array_size(content), MAX_BLOCKS);
            st = bad(out, err);
            goto out;
        }
        for (size_t i = 0; i < json_array_size(content); i++) {
            if (!check_block(json_array_get(content, i), i, err)) {
                st = bad(out, err);
                goto out;
            }
        }
    } else if (!json_is_string(content)) {
        aq_err_set(err, AQ_INVALID_ARG, "bad tool reply: content must be a string or an array of blocks");
        st = bad(out, err);
        goto out;
    }
    out->content_json = json_dumps(content, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!out->content_json) {
        st = AQ_NOMEM;
        goto out;
    }
    out->is_error = json_is_true(is_error) || json_is_true(permanent);
    out->outcome = json_is_true(permanent) ? AQ_TOOL_PERMANENT_FAILURE
                   : out->is_error         ? AQ_TOOL_ERROR
                                           : AQ_TOOL_OK;
out:
    json_decref(root);
    if (st != AQ_OK) {
        aq_tool_reply_clear(out);
        aq_err_set(err, st, "tool reply: out of memory");
    }
    return st;
}
