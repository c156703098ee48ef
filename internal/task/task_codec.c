#include "task_codec.h"

#include "core/text.h"
#include "task_wire.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void aq_task_limits_default(aq_task_limits *lim)
{
    lim->max_payload_bytes = 4u << 20;
    lim->max_prompt_bytes = 1u << 20;
    lim->max_tokens_cap = 64000;
    lim->max_messages = 1000;
    lim->max_stop_sequences = 16;
    lim->max_metadata = 64;
    lim->max_field_bytes = 1024;
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
    aq_status st = aq_wire_find_nul(&agentq__v1__task__descriptor, data, len, &has_nul, &nul, err);
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

aq_status aq_task_validate(const Agentq__V1__Task *t, const aq_task_limits *lim, aq_err *err)
{
    aq_status st;
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
        if (!*m->content)
            return aq_err_set(err, AQ_TASK_INVALID, "messages[%zu].content is empty", i);
        total += strlen(m->content);
    }
    if (total > lim->max_prompt_bytes)
        return aq_err_set(err, AQ_PROMPT_TOO_LARGE,
                          "prompt is %zu bytes (system + prompt + messages), over the cap of %zu",
                          total, lim->max_prompt_bytes);
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
