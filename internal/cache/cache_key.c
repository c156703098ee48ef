#include "cache_key.h"

#include <openssl/evp.h>
#include <string.h>

bool aq_cache_deterministic(const Agentq__V1__Task *t)
{
    return t->temperature_presence_case == AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE &&
           t->temperature == 0.0f;
}

aq_cache_plan aq_cache_plan_for(const Agentq__V1__Task *t)
{
    switch (t->cache_policy) {
    case AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED: {
        bool det = aq_cache_deterministic(t);
        return (aq_cache_plan){det, det};
    }
    case AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN: return (aq_cache_plan){true, true};
    case AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH: return (aq_cache_plan){false, true};
    default: return (aq_cache_plan){false, false};
    }
}

typedef struct enc {
    EVP_MD_CTX *ctx;
    bool ok;
} enc;

static void put_be(unsigned char *b, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)(v & 0xff);
}

static void field(enc *e, char tag, const void *data, size_t len)
{
    unsigned char hdr[9];
    hdr[0] = (unsigned char)tag;
    put_be(hdr + 1, len, 8);
    if (e->ok && EVP_DigestUpdate(e->ctx, hdr, sizeof(hdr)) != 1)
        e->ok = false;
    if (e->ok && len && EVP_DigestUpdate(e->ctx, data, len) != 1)
        e->ok = false;
}

static void field_str(enc *e, char tag, const char *s)
{
    field(e, tag, s ? s : "", s ? strlen(s) : 0);
}

static void field_u64(enc *e, char tag, uint64_t v)
{
    unsigned char b[8];
    put_be(b, v, 8);
    field(e, tag, b, sizeof(b));
}

static void field_byte(enc *e, char tag, bool v)
{
    unsigned char b = v ? 1 : 0;
    field(e, tag, &b, 1);
}

static void field_block(enc *e, const Agentq__V1__ContentBlock *b);

static void field_source(enc *e, const Agentq__V1__MediaSource *s)
{
    field_str(e, 'm', s ? s->media_type : "");
    field(e, 'D', s ? s->data.data : NULL, s ? s->data.len : 0);
    field_str(e, 'L', s ? s->url : "");
}

static void field_blocks(enc *e, Agentq__V1__ContentBlock *const *blocks, size_t n)
{
    field_u64(e, 'K', n);
    for (size_t i = 0; i < n; i++)
        field_block(e, blocks[i]);
}

static void field_block(enc *e, const Agentq__V1__ContentBlock *b)
{
    switch (b ? b->block_case : AGENTQ__V1__CONTENT_BLOCK__BLOCK__NOT_SET) {
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT:
        field(e, 't', NULL, 0);
        field_str(e, 'C', b->text ? b->text->text : "");
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE:
        field(e, 'i', NULL, 0);
        field_source(e, b->image ? b->image->source : NULL);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT:
        field(e, 'd', NULL, 0);
        field_str(e, 'H', b->document ? b->document->title : "");
        field_source(e, b->document ? b->document->source : NULL);
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE:
        field(e, 'u', NULL, 0);
        field_str(e, 'I', b->tool_use ? b->tool_use->id : "");
        field_str(e, 'A', b->tool_use ? b->tool_use->name : "");
        field_str(e, 'J', b->tool_use ? b->tool_use->input_json : "");
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT: {
        const Agentq__V1__ToolResultBlock *tr = b->tool_result;
        field(e, 'r', NULL, 0);
        field_str(e, 'I', tr ? tr->tool_use_id : "");
        field_byte(e, 'E', tr && tr->is_error);
        /* Validated content is one level deep (text, image, document). */
        field_blocks(e, tr ? tr->content : NULL, tr ? tr->n_content : 0);
        break;
    }
    default: field(e, '0', NULL, 0); break;
    }
}

aq_status aq_cache_key(const Agentq__V1__Task *t, const char *model, uint32_t max_tokens,
                       bool share_tenants, char out[AQ_CACHE_KEY_HEX + 1], aq_err *err)
{
    if (!t || !out)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_cache_key: NULL task or output");
    aq_llm_request_parts p;
    aq_llm_request_parts_from_task(t, model, max_tokens, &p);
    return aq_cache_key_parts(&p, share_tenants, out, err);
}

aq_status aq_cache_key_parts(const aq_llm_request_parts *t, bool share_tenants,
                             char out[AQ_CACHE_KEY_HEX + 1], aq_err *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    aq_status st = AQ_OK;

    if (!t || !out)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_cache_key: NULL task or output");
    if (!t->model || !*t->model)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_cache_key: no model");
    if (t->max_tokens == 0)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_cache_key: max_tokens is 0");

    enc e = {EVP_MD_CTX_new(), true};
    if (!e.ctx || EVP_DigestInit_ex(e.ctx, EVP_sha256(), NULL) != 1) {
        st = aq_err_set(err, AQ_NOMEM, "cannot start SHA-256 (OpenSSL)");
        goto out;
    }
    field_str(&e, 'V', AQ_CACHE_KEY_VERSION);
    if (share_tenants)
        field(&e, 'S', NULL, 0);
    else
        field_str(&e, 'T', t->user_id);
    field_str(&e, 'M', t->model);
    field_str(&e, 'Y', t->system);
    if (t->n_messages > 0) {
        field_u64(&e, 'N', t->n_messages);
        for (size_t i = 0; i < t->n_messages; i++) {
            const Agentq__V1__Message *m = t->messages[i];
            field_str(&e, 'R', m ? m->role : "");
            field_str(&e, 'C', m ? m->content : "");
            if (m && m->n_blocks > 0)
                field_blocks(&e, m->blocks, m->n_blocks);
        }
    } else {
        /* The prompt shorthand: the request carries one user message. */
        field_u64(&e, 'N', 1);
        field_str(&e, 'R', "user");
        field_str(&e, 'C', t->prompt);
    }
    unsigned char b4[4];
    put_be(b4, t->max_tokens, 4);
    field(&e, 'X', b4, sizeof(b4));
    if (t->has_temperature) {
        float f = t->temperature + 0.0f; /* -0 -> +0 */
        uint32_t bits;
        memcpy(&bits, &f, sizeof(bits));
        put_be(b4, bits, 4);
        field(&e, 'P', b4, sizeof(b4));
    } else {
        field(&e, 'P', NULL, 0);
    }
    field_u64(&e, 'Q', t->n_stop_sequences);
    for (size_t i = 0; i < t->n_stop_sequences; i++)
        field_str(&e, 'Z', t->stop_sequences[i]);
    if (t->n_tools > 0) {
        field_u64(&e, 'U', t->n_tools);
        for (size_t i = 0; i < t->n_tools; i++) {
            const Agentq__V1__Tool *tool = t->tools[i];
            field_str(&e, 'A', tool ? tool->name : "");
            field_str(&e, 'G', tool ? tool->description : "");
            field_str(&e, 'J', tool ? tool->input_schema_json : "");
        }
        const Agentq__V1__ToolChoice *tc = t->tool_choice;
        /* As the request: no tool_choice sent for auto without options. */
        if (tc && (tc->type != AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_UNSPECIFIED ||
                   tc->disable_parallel_tool_use)) {
            put_be(b4, (uint32_t)tc->type, 4);
            field(&e, 'O', b4, sizeof(b4));
            field_str(&e, 'A', tc->name);
            field_byte(&e, 'W', tc->disable_parallel_tool_use);
        }
    }
    if (!e.ok || EVP_DigestFinal_ex(e.ctx, md, &md_len) != 1 || md_len * 2 != AQ_CACHE_KEY_HEX) {
        st = aq_err_set(err, AQ_NOMEM, "SHA-256 (OpenSSL) failed");
        goto out;
    }
    for (unsigned int i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[AQ_CACHE_KEY_HEX] = '\0';
out:
    EVP_MD_CTX_free(e.ctx);
    return st;
}
