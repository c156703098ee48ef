#include "trace_context.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Members of one tracestate we look at before giving up (each is at least
 * "a=b", so AQ_TRACESTATE_INPUT_MAX bytes could hold ~2700 of them). */
#define TRACESTATE_SCAN_MEMBERS 256
#define TRACESTATE_MEMBER_BIG 128
#define TRACESTATE_VALUE_MAX 256

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is not HEXDIGLC */
}

/* n bytes from 2n lower-case hex digits; false on a bad digit. */
static bool unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

void aq_trace_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    out[2 * n] = '\0';
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

aq_status aq_traceparent_parse(const char *s, size_t len, aq_trace_context *out)
{
    aq_trace_context c = {0};
    uint8_t version;
    if (!s)
        return AQ_INVALID_ARG;
    while (len > 0 && ows(s[0])) {
        s++;
        len--;
    }
    while (len > 0 && ows(s[len - 1]))
        len--;
    if (len < AQ_TRACEPARENT_LEN)
        return AQ_INVALID_ARG;
    if (!unhex(s, &version, 1) || version == 0xff)
        return AQ_INVALID_ARG;
    /* Version 00 is exactly 55 characters. A later version may append
     * fields after a '-'; its first fields are read as version 00's. */
    if (version == 0 ? len != AQ_TRACEPARENT_LEN
                     : len > AQ_TRACEPARENT_LEN && s[AQ_TRACEPARENT_LEN] != '-')
        return AQ_INVALID_ARG;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return AQ_INVALID_ARG;
    if (!unhex(s + 3, c.trace_id, AQ_TRACE_ID_SIZE) || !unhex(s + 36, c.span_id, AQ_SPAN_ID_SIZE) ||
        !unhex(s + 53, &c.flags, 1))
        return AQ_INVALID_ARG;
    if (all_zero(c.trace_id, AQ_TRACE_ID_SIZE) || all_zero(c.span_id, AQ_SPAN_ID_SIZE))
        return AQ_INVALID_ARG;
    c.valid = true;
    c.remote = true;
    *out = c;
    return AQ_OK;
}

aq_status aq_traceparent_format(const aq_trace_context *c, char *out, size_t n)
{
    if (!c || !c->valid || !out || n < AQ_TRACEPARENT_LEN + 1)
        return AQ_INVALID_ARG;
    char tid[2 * AQ_TRACE_ID_SIZE + 1], sid[2 * AQ_SPAN_ID_SIZE + 1];
    aq_trace_hex(c->trace_id, AQ_TRACE_ID_SIZE, tid);
    aq_trace_hex(c->span_id, AQ_SPAN_ID_SIZE, sid);
    snprintf(out, n, "00-%s-%s-%02x", tid, sid, c->flags & AQ_TRACE_FLAG_SAMPLED);
    return AQ_OK;
}

/* ---- tracestate ---- */

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' ||
           c == '/';
}

static bool lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

/* simple-key = lcalpha 0*255(key chars)
 * multi-tenant-key = (lcalpha / DIGIT) 0*240(key chars) "@" lcalpha 0*13(key chars) */
static bool valid_key(const char *k, size_t n)
{
    const char *at = memchr(k, '@', n);
    if (!at) {
        if (n < 1 || n > 256 || !lcalpha(k[0]))
            return false;
        for (size_t i = 1; i < n; i++)
            if (!key_char(k[i]))
                return false;
        return true;
    }
    size_t tn = (size_t)(at - k), sn = n - tn - 1;
    if (tn < 1 || tn > 241 || sn < 1 || sn > 14)
        return false;
    if (!lcalpha(k[0]) && !(k[0] >= '0' && k[0] <= '9'))
        return false;
    for (size_t i = 1; i < tn; i++)
        if (!key_char(k[i]))
            return false;
    if (!lcalpha(at[1]))
        return false;
    for (size_t i = 2; i <= sn; i++)
        if (!key_char(at[i]))
            return false;
    return true;
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
 * nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (no ',' or '=') */
static bool valid_value(const char *v, size_t n)
{
    if (n < 1 || n > TRACESTATE_VALUE_MAX || v[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return false;
    }
    return true;
}

typedef struct ts_member {
    const char *p;
    size_t len, klen;
    bool keep;
} ts_member;

static size_t kept_size(const ts_member *m, size_t n, size_t *count)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].keep)
            continue;
        total += m[i].len + (k ? 1 : 0);
        k++;
    }
    *count = k;
    return total;
}

static bool over(const ts_member *m, size_t n)
{
    size_t count, total = kept_size(m, n, &count);
    return total > AQ_TRACESTATE_MAX || count > AQ_TRACESTATE_MAX_MEMBERS;
}

aq_status aq_tracestate_parse(const char *s, size_t len, aq_tracestate *out)
{
    ts_member *m = NULL;
    size_t n = 0;
    aq_status st = AQ_INVALID_ARG;
    out->len = 0;
    out->text[0] = '\0';
    if (!s || len > AQ_TRACESTATE_INPUT_MAX)
        goto out;
    m = malloc(TRACESTATE_SCAN_MEMBERS * sizeof(*m));
    if (!m) {
        st = AQ_NOMEM;
        goto out;
    }
    const char *end = s + len;
    for (const char *b = s, *next; b; b = next) {
        const char *e = memchr(b, ',', (size_t)(end - b));
        next = e ? e + 1 : NULL; /* NULL: this was the last member */
        if (!e)
            e = end;
        while (b < e && ows(*b))
            b++;
        while (e > b && ows(e[-1]))
            e--;
        if (b < e) { /* empty and blank members are allowed, and dropped */
            const char *eq = memchr(b, '=', (size_t)(e - b));
            if (!eq || n == TRACESTATE_SCAN_MEMBERS)
                goto out;
            size_t klen = (size_t)(eq - b);
            if (!valid_key(b, klen) || !valid_value(eq + 1, (size_t)(e - eq - 1)))
                goto out;
            for (size_t i = 0; i < n; i++)
                if (m[i].klen == klen && memcmp(m[i].p, b, klen) == 0)
                    goto out; /* a key appears twice */
            m[n++] = (ts_member){b, (size_t)(e - b), klen, true};
        }
    }
    /* Too long: big members first, then from the end (the spec's order). */
    for (size_t i = 0; i < n && over(m, n); i++)
        if (m[i].len > TRACESTATE_MEMBER_BIG)
            m[i].keep = false;
    for (size_t i = n; i > 0 && over(m, n); i--)
        m[i - 1].keep = false;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].keep)
            continue;
        if (w)
            out->text[w++] = ',';
        memcpy(out->text + w, m[i].p, m[i].len);
        w += m[i].len;
    }
    out->text[w] = '\0';
    out->len = w;
    st = AQ_OK;
out:
    free(m);
    return st;
}

/* ---- ids ---- */

static aq_status random_nonzero(uint8_t *b, size_t n)
{
    for (int tries = 0; tries < 4; tries++) {
        if (RAND_bytes(b, (int)n) != 1)
            return AQ_IO;
        if (!all_zero(b, n))
            return AQ_OK;
    }
    return AQ_IO;
}

aq_status aq_trace_new_trace_id(uint8_t id[AQ_TRACE_ID_SIZE])
{
    return random_nonzero(id, AQ_TRACE_ID_SIZE);
}

aq_status aq_trace_new_span_id(uint8_t id[AQ_SPAN_ID_SIZE])
{
    return random_nonzero(id, AQ_SPAN_ID_SIZE);
}

/* ---- NATS headers ---- */

/* The values of header `name`, matched without regard to case: nats.c
 * matches exactly, and publishers write "traceparent" or "Traceparent".
 * *vals is malloc'd (free it); NATS_NOT_FOUND when there is none. */
static natsStatus header_values(natsMsg *m, const char *name, const char ***vals, int *count)
{
    natsStatus s = natsMsgHeader_Values(m, name, vals, count);
    if (s != NATS_NOT_FOUND)
        return s;
    const char **keys = NULL;
    int nkeys = 0;
    if (natsMsgHeader_Keys(m, &keys, &nkeys) != NATS_OK)
        return NATS_NOT_FOUND;
    s = NATS_NOT_FOUND;
    for (int i = 0; i < nkeys && s == NATS_NOT_FOUND; i++)
        if (strcasecmp(keys[i], name) == 0 && strcmp(keys[i], name) != 0)
            s = natsMsgHeader_Values(m, keys[i], vals, count);
    free((void *)keys);
    return s;
}

aq_status aq_trace_context_from_msg(natsMsg *m, aq_trace_context *ctx, aq_tracestate *ts)
{
    const char **vals = NULL;
    int count = 0;
    aq_status st = AQ_NOT_FOUND;
    char *joined = NULL;
    memset(ctx, 0, sizeof(*ctx));
    if (ts) {
        ts->len = 0;
        ts->text[0] = '\0';
    }
    if (!m || header_values(m, AQ_TRACEPARENT_HEADER, &vals, &count) != NATS_OK || count < 1)
        goto out;
    st = AQ_INVALID_ARG;
    if (count != 1 || aq_traceparent_parse(vals[0], strlen(vals[0]), ctx) != AQ_OK) {
        memset(ctx, 0, sizeof(*ctx));
        goto out;
    }
    st = AQ_OK;
    free((void *)vals);
    vals = NULL;
    if (!ts || header_values(m, AQ_TRACESTATE_HEADER, &vals, &count) != NATS_OK)
        goto out;
    /* Several tracestate headers are one list, joined with ','. */
    size_t total = 0;
    for (int i = 0; i < count; i++)
        total += strlen(vals[i]) + 1;
    if (total > AQ_TRACESTATE_INPUT_MAX + 1 || !(joined = malloc(total)))
        goto out; /* too long to read: dropped, the traceparent stands */
    size_t w = 0;
    for (int i = 0; i < count; i++) {
        size_t l = strlen(vals[i]);
        if (i)
            joined[w++] = ',';
        memcpy(joined + w, vals[i], l);
        w += l;
    }
    (void)aq_tracestate_parse(joined, w, ts); /* malformed: ts stays empty */
out:
    free(joined);
    free((void *)vals);
    return st;
}

aq_status aq_trace_context_to_msg(natsMsg *m, const aq_trace_context *ctx,
                                  const aq_tracestate *ts, aq_err *err)
{
    char tp[AQ_TRACEPARENT_LEN + 1];
    natsStatus s;
    if (!ctx || !ctx->valid)
        return AQ_OK;
    if (aq_traceparent_format(ctx, tp, sizeof(tp)) != AQ_OK)
        return aq_err_set(err, AQ_INVALID_ARG, "trace context cannot be formatted");
    if ((s = natsMsgHeader_Set(m, AQ_TRACEPARENT_HEADER, tp)) != NATS_OK)
        return aq_err_set(err, s == NATS_NO_MEMORY ? AQ_NOMEM : AQ_NATS, "set traceparent: %s",
                          natsStatus_GetText(s));
    if (ts && ts->len > 0 && (s = natsMsgHeader_Set(m, AQ_TRACESTATE_HEADER, ts->text)) != NATS_OK)
        return aq_err_set(err, s == NATS_NO_MEMORY ? AQ_NOMEM : AQ_NATS, "set tracestate: %s",
                          natsStatus_GetText(s));
    return AQ_OK;
}
