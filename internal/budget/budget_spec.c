/* The pure parts of budgets: the budgets string, money as text, UTC days,
 * key names and the lease size. No I/O, no clock. */
#include "budget.h"

#include "core/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct spec_entry {
    char tenant[AQ_BUDGET_NAME_MAX + 1];
    char type[AQ_BUDGET_NAME_MAX + 1];
    int64_t limit;
} spec_entry;

struct aq_budget_spec {
    size_t n;
    spec_entry *e;
};

static bool name_char_ok(unsigned char c)
{
    return c > 0x20 && c != 0x7f && c != ',' && c != ';' && c != '/' && c != '=';
}

aq_status aq_budget_parse_usd(const char *s, int64_t *micro_out)
{
    if (!s || !*s)
        return AQ_CONFIG;
    int64_t whole = 0, frac = 0;
    const char *p = s;
    size_t nd = 0;
    for (; *p >= '0' && *p <= '9'; p++, nd++) {
        /* Bounded before it can overflow: the cap is far below INT64_MAX / 1e6. */
        whole = whole * 10 + (*p - '0');
        if (whole > AQ_BUDGET_MAX_LIMIT / AQ_BUDGET_MICRO)
            return AQ_CONFIG;
    }
    if (nd == 0)
        return AQ_CONFIG;
    if (*p == '.') {
        size_t nf = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, nf++) {
            if (nf == 6)
                return AQ_CONFIG; /* finer than a micro-dollar */
            frac = frac * 10 + (*p - '0');
        }
        if (nf == 0)
            return AQ_CONFIG;
        for (; nf < 6; nf++)
            frac *= 10;
    }
    if (*p)
        return AQ_CONFIG;
    int64_t v = whole * AQ_BUDGET_MICRO + frac;
    if (v > AQ_BUDGET_MAX_LIMIT)
        return AQ_CONFIG;
    *micro_out = v;
    return AQ_OK;
}

void aq_budget_format_usd(int64_t micro, char *out, size_t n)
{
    /* INT64_MIN has no positive counterpart; money never gets near it. */
    const char *sign = micro < 0 ? "-" : "";
    uint64_t m = micro < 0 ? (uint64_t)0 - (uint64_t)micro : (uint64_t)micro;
    snprintf(out, n, "%s%llu.%06llu", sign, (unsigned long long)(m / AQ_BUDGET_MICRO),
             (unsigned long long)(m % AQ_BUDGET_MICRO));
}

aq_status aq_budget_action_parse(const char *s, aq_budget_action *out, aq_err *err)
{
    if (s && strcmp(s, "defer") == 0) {
        *out = AQ_BUDGET_ACTION_DEFER;
        return AQ_OK;
    }
    if (s && strcmp(s, "fail") == 0) {
        *out = AQ_BUDGET_ACTION_FAIL;
        return AQ_OK;
    }
    return aq_err_set(err, AQ_CONFIG, "budget_action must be \"defer\" or \"fail\"");
}

/* Copy s[0..len) trimmed of blanks into out (cap+1 bytes); checks the name. */
static aq_status take_name(const char *s, size_t len, char *out, size_t cap, const char *what,
                           size_t entry, aq_err *err)
{
    while (len && aq_span_is_blank(*s)) {
        s++;
        len--;
    }
    while (len && aq_span_is_blank(s[len - 1]))
        len--;
    if (len == 0)
        return aq_err_set(err, AQ_CONFIG, "budgets: entry %zu: empty %s", entry, what);
    if (len > cap)
        return aq_err_set(err, AQ_CONFIG, "budgets: entry %zu: %s over %zu bytes", entry, what, cap);
    for (size_t i = 0; i < len; i++)
        if (!name_char_ok((unsigned char)s[i]))
            return aq_err_set(err, AQ_CONFIG,
                              "budgets: entry %zu: %s has a character that is not allowed (byte %zu)",
                              entry, what, i + 1);
    memcpy(out, s, len);
    out[len] = '\0';
    return AQ_OK;
}

static aq_status parse_entry(const char *s, size_t len, size_t idx, spec_entry *e, aq_err *err)
{
    const char *eq = memchr(s, '=', len);
    if (!eq)
        return aq_err_set(err, AQ_CONFIG, "budgets: entry %zu: missing \"=\"", idx);
    size_t name_len = (size_t)(eq - s);
    const char *slash = memchr(s, '/', name_len);
    aq_status st;
    if (slash) {
        if ((st = take_name(s, (size_t)(slash - s), e->tenant, AQ_BUDGET_NAME_MAX, "tenant", idx,
                            err)) != AQ_OK)
            return st;
        if ((st = take_name(slash + 1, (size_t)(eq - slash - 1), e->type, AQ_BUDGET_NAME_MAX,
                            "type", idx, err)) != AQ_OK)
            return st;
    } else {
        if ((st = take_name(s, name_len, e->tenant, AQ_BUDGET_NAME_MAX, "tenant", idx, err)) !=
            AQ_OK)
            return st;
        e->type[0] = '\0';
    }
    const char *v = eq + 1, *end = s + len;
    while (v < end && aq_span_is_blank(*v))
        v++;
    while (end > v && aq_span_is_blank(end[-1]))
        end--;
    char amount[64];
    if ((size_t)(end - v) >= sizeof(amount))
        return aq_err_set(err, AQ_CONFIG, "budgets: entry %zu: amount too long", idx);
    memcpy(amount, v, (size_t)(end - v));
    amount[end - v] = '\0';
    if (aq_budget_parse_usd(amount, &e->limit) != AQ_OK)
        return aq_err_set(err, AQ_CONFIG,
                          "budgets: entry %zu (%s%s%s): \"%s\" is not a USD amount "
                          "(digits, up to 6 decimals, at most %lld)",
                          idx, e->tenant, e->type[0] ? "/" : "", e->type, amount,
                          (long long)(AQ_BUDGET_MAX_LIMIT / AQ_BUDGET_MICRO));
    return AQ_OK;
}

aq_status aq_budget_spec_parse(const char *s, aq_budget_spec **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_budget_spec *spec = calloc(1, sizeof(*spec));
    if (!spec)
        return aq_err_set(err, AQ_NOMEM, "budgets: out of memory");
    if (!s)
        s = "";
    size_t len = strlen(s);
    if (len > AQ_BUDGET_SPEC_MAX_LEN) {
        st = aq_err_set(err, AQ_CONFIG, "budgets: over %d characters", AQ_BUDGET_SPEC_MAX_LEN);
        goto out;
    }
    const char *p = s;
    while (aq_span_is_blank(*p))
        p++;
    if (*p == '\0')
        goto out; /* no budgets */
    spec->e = calloc(AQ_BUDGET_MAX_BUDGETS, sizeof(*spec->e));
    if (!spec->e) {
        st = aq_err_set(err, AQ_NOMEM, "budgets: out of memory");
        goto out;
    }
    for (;;) {
        size_t n = strcspn(p, ",;");
        if (spec->n == AQ_BUDGET_MAX_BUDGETS) {
            st = aq_err_set(err, AQ_CONFIG, "budgets: more than %d entries", AQ_BUDGET_MAX_BUDGETS);
            goto out;
        }
        spec_entry *e = &spec->e[spec->n];
        if ((st = parse_entry(p, n, spec->n + 1, e, err)) != AQ_OK)
            goto out;
        for (size_t i = 0; i < spec->n; i++)
            if (strcmp(spec->e[i].tenant, e->tenant) == 0 && strcmp(spec->e[i].type, e->type) == 0) {
                st = aq_err_set(err, AQ_CONFIG, "budgets: entry %zu: %s%s%s is given twice",
                                spec->n + 1, e->tenant, e->type[0] ? "/" : "", e->type);
                goto out;
            }
        spec->n++;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
out:
    if (st != AQ_OK) {
        aq_budget_spec_free(spec);
        return st;
    }
    *out = spec;
    return AQ_OK;
}

void aq_budget_spec_free(aq_budget_spec *spec)
{
    if (!spec)
        return;
    free(spec->e);
    free(spec);
}

size_t aq_budget_spec_count(const aq_budget_spec *spec)
{
    return spec ? spec->n : 0;
}

bool aq_budget_spec_entry(const aq_budget_spec *spec, size_t i, const char **tenant,
                          const char **type, int64_t *limit_micro)
{
    if (!spec || i >= spec->n)
        return false;
    *tenant = spec->e[i].tenant;
    *type = spec->e[i].type;
    *limit_micro = spec->e[i].limit;
    return true;
}

int64_t aq_budget_spec_limit(const aq_budget_spec *spec, const char *tenant, const char *type)
{
    for (size_t i = 0; spec && i < spec->n; i++)
        if (strcmp(spec->e[i].tenant, tenant ? tenant : "") == 0 &&
            strcmp(spec->e[i].type, type ? type : "") == 0)
            return spec->e[i].limit;
    return -1;
}

/* ---- days ---- */

#define MS_PER_DAY 86400000LL

int64_t aq_budget_day_of(int64_t unix_ms)
{
    int64_t d = unix_ms / MS_PER_DAY;
    if (unix_ms % MS_PER_DAY < 0)
        d--; /* floor, not truncation */
    return d;
}

int64_t aq_budget_day_end_ms(int64_t day)
{
    return (day + 1) * MS_PER_DAY;
}

void aq_budget_day_name(int64_t day, char out[9])
{
    /* Civil date from days since the epoch (Howard Hinnant's algorithm):
     * exact for every day, no time zone, no libc state. */
    int64_t z = day + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t dd = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        y++;
    if (y < 0 || y > 9999)
        y = y < 0 ? 0 : 9999; /* outside what a budget day can be: keep 8 digits */
    snprintf(out, 9, "%04d%02d%02d", (int)y, (int)m, (int)dd);
}

/* ---- keys ---- */

static bool key_char_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Append the escaped form of s at out+*pos; false when it does not fit. */
static bool escape_token(const char *s, char *out, size_t n, size_t *pos)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!*s) {
        if (*pos + 1 >= n)
            return false;
        out[(*pos)++] = '=';
        return true;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (key_char_plain(*p)) {
            if (*pos + 1 >= n)
                return false;
            out[(*pos)++] = (char)*p;
        } else {
            if (*pos + 3 >= n)
                return false;
            out[(*pos)++] = '=';
            out[(*pos)++] = hex[*p >> 4];
            out[(*pos)++] = hex[*p & 15];
        }
    }
    return true;
}

bool aq_budget_key(int64_t day, const char *tenant, const char *type, char *out, size_t n)
{
    char dn[9];
    aq_budget_day_name(day, dn);
    int w = snprintf(out, n, "%s.alloc.", dn);
    if (w < 0 || (size_t)w >= n)
        return false;
    size_t pos = (size_t)w;
    if (!escape_token(tenant ? tenant : "", out, n, &pos))
        return false;
    if (type && *type) {
        if (pos + 1 >= n)
            return false;
        out[pos++] = '.';
        if (!escape_token(type, out, n, &pos))
            return false;
    }
    out[pos] = '\0';
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool aq_budget_escape(const char *token, char *out, size_t n)
{
    size_t pos = 0;
    if (n == 0 || !escape_token(token ? token : "", out, n, &pos) || pos >= n)
        return false;
    out[pos] = '\0';
    return true;
}

bool aq_budget_unescape(const char *token, size_t len, char *out, size_t n)
{
    size_t o = 0;
    if (len == 1 && token[0] == '=') {
        if (n == 0)
            return false;
        out[0] = '\0';
        return true;
    }
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c;
        if (token[i] == '=') {
            if (i + 2 >= len)
                return false;
            int hi = hexval(token[i + 1]), lo = hexval(token[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                return false;
            i += 2;
        } else if (key_char_plain((unsigned char)token[i])) {
            c = token[i];
        } else {
            return false;
        }
        if (o + 1 >= n)
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

/* ---- lease size ---- */

int64_t aq_budget_lease_size(int64_t remaining, int64_t need_min, int64_t want, int64_t chunk,
                             int64_t workers)
{
    if (need_min < 0)
        need_min = 0;
    if (remaining <= 0 || remaining < need_min)
        return 0;
    if (want < need_min)
        want = need_min;
    if (workers < 1)
        workers = 1;
    int64_t share = remaining / (2 * workers);
    int64_t size = chunk < share ? chunk : share;
    if (size < want)
        size = want;
    if (size > remaining)
        size = remaining;
    if (size < need_min)
        size = need_min;
    return size;
}
