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

aq_status aq_cache_key(const Agentq__V1__Task *t, const char *model, uint32_t max_tokens,
                       bool share_tenants, char out[AQ_CACHE_KEY_HEX + 1], aq_err *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    aq_status st = AQ_OK;

    if (!t || !out)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_cache_key: NULL task or output");
    if (!model || !*model)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_cache_key: no model");
    if (max_tokens == 0)
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
        field_str(&e, 'T', t->tenant);
    field_str(&e, 'M', model);
    field_str(&e, 'Y', t->system);
    if (t->n_messages > 0) {
        field_u64(&e, 'N', t->n_messages);
        for (size_t i = 0; i < t->n_messages; i++) {
            field_str(&e, 'R', t->messages[i] ? t->messages[i]->role : "");
            field_str(&e, 'C', t->messages[i] ? t->messages[i]->content : "");
        }
    } else {
        /* The prompt shorthand: the request carries one user message. */
        field_u64(&e, 'N', 1);
        field_str(&e, 'R', "user");
        field_str(&e, 'C', t->prompt);
    }
    unsigned char b4[4];
    put_be(b4, max_tokens, 4);
    field(&e, 'X', b4, sizeof(b4));
    if (t->temperature_presence_case == AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE) {
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
