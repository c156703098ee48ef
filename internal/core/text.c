#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s[0..len), or 0 if it is invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        n = 1;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 2;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len <= n) /* truncated */
        return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n + 1;
}

size_t aq_utf8_seq_len(const char *s, size_t len)
{
    return len ? utf8_seq((const unsigned char *)s, len) : 0;
}

bool aq_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

char *aq_utf8_sanitize(const char *str, size_t len, char *out, size_t n)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    const unsigned char *s = (const unsigned char *)str;
    size_t o = 0;
    if (n == 0)
        return out;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        const char *src = k ? str + i : replacement;
        size_t w = k ? k : 3;
        if (o + w >= n)
            break;
        memcpy(out + o, src, w);
        o += w;
        i += k ? k : 1;
    }
    out[o] = '\0';
    return out;
}

/* One URL: the user-info ends at the last '@' before the path. */
static size_t redact_one(const char *url, size_t len, char *out, size_t n)
{
    const char *end = url + len;
    const char *scheme = memmem(url, len, "://", 3);
    const char *host = scheme ? scheme + 3 : url;
    const char *path = memchr(host, '/', (size_t)(end - host));
    const char *limit = path ? path : end;
    const char *at = NULL;
    for (const char *p = host; p < limit; p++)
        if (*p == '@')
            at = p;
    int w;
    if (at)
        w = snprintf(out, n, "%.*s***%.*s", (int)(host - url), url, (int)(end - at), at);
    else
        w = snprintf(out, n, "%.*s", (int)len, url);
    return w < 0 ? 0 : ((size_t)w < n ? (size_t)w : n - 1);
}

void aq_redact_urls(const char *urls, char *out, size_t n)
{
    size_t o = 0;
    if (n == 0)
        return;
    out[0] = '\0';
    for (const char *p = urls; o + 1 < n;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        o += redact_one(p, len, out + o, n - o);
        if (!comma || o + 1 >= n)
            break;
        out[o++] = ',';
        out[o] = '\0';
        p = comma + 1;
    }
}

bool aq_span_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

void aq_span_trim(const char **b, const char **e)
{
    while (*b < *e && aq_span_is_blank(**b))
        (*b)++;
    while (*e > *b && aq_span_is_blank((*e)[-1]))
        (*e)--;
}

const char *aq_span_find(const char *b, const char *e, char c)
{
    const char *p = memchr(b, c, (size_t)(e - b));
    return p ? p : e;
}

int aq_span_setting(const char *b, const char *e, const char *const *names, int n,
                    const char **nb, const char **ne, const char **vb, const char **ve)
{
    const char *eq = aq_span_find(b, e, '=');
    if (eq == e)
        return AQ_SPAN_NO_EQUALS;
    *nb = b;
    *ne = eq;
    *vb = eq + 1;
    *ve = e;
    aq_span_trim(nb, ne);
    aq_span_trim(vb, ve);
    size_t len = (size_t)(*ne - *nb);
    for (int i = 0; i < n; i++)
        if (len == strlen(names[i]) && memcmp(*nb, names[i], len) == 0)
            return i;
    return AQ_SPAN_UNKNOWN_NAME;
}

bool aq_subject_prefix_valid(const char *s, size_t max_len)
{
    if (!s || !*s || strlen(s) > max_len)
        return false;
    bool token_empty = true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '.') {
            if (token_empty)
                return false;
            token_empty = true;
            continue;
        }
        if (*p <= ' ' || *p == 0x7f || *p == '*' || *p == '>')
            return false;
        token_empty = false;
    }
    return !token_empty;
}
