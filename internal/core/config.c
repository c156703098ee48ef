#include "config.h"

#include "list.h"
#include "text.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_LINE_MAX 4096
#define CONFIG_FILE_MAX_LINES 10000

aq_status aq_parse_int(const char *s, int64_t *out)
{
    if (!s || !*s)
        return AQ_INVALID_ARG;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s)
        return AQ_INVALID_ARG;
    *out = v;
    return AQ_OK;
}

/* A number followed by one unit from `units` (each with its multiplier). */
static aq_status parse_with_units(const char *s, const char *const *names, const double *mult,
                                  size_t n, double *out)
{
    if (!s || !*s)
        return AQ_INVALID_ARG;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return AQ_INVALID_ARG;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(end, names[i]) == 0) {
            *out = v * mult[i];
            return AQ_OK;
        }
    }
    return AQ_INVALID_ARG;
}

aq_status aq_parse_duration_ms(const char *s, int64_t *out)
{
    static const char *const names[] = {"", "ms", "s", "m", "h"};
    static const double mult[] = {1, 1, 1000, 60000, 3600000};
    double v;
    if (parse_with_units(s, names, mult, 5, &v) != AQ_OK || v > 9.2e18)
        return AQ_INVALID_ARG;
    *out = (int64_t)llround(v);
    return AQ_OK;
}

aq_status aq_parse_bytes(const char *s, int64_t *out)
{
    static const char *const names[] = {"", "B", "KB", "MB", "GB", "KiB", "MiB", "GiB", "K", "M", "G"};
    static const double mult[] = {1, 1, 1e3, 1e6, 1e9, 1024.0, 1048576.0, 1073741824.0,
                                  1024.0, 1048576.0, 1073741824.0};
    double v;
    if (parse_with_units(s, names, mult, 11, &v) != AQ_OK || v > 9.2e18)
        return AQ_INVALID_ARG;
    *out = (int64_t)llround(v);
    return AQ_OK;
}

aq_status aq_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return AQ_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return AQ_OK;
        }
    }
    return AQ_INVALID_ARG;
}

static const aq_option *find_option(const aq_option *opts, const char *name, size_t len)
{
    for (const aq_option *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static const char *type_hint(aq_opt_type t)
{
    switch (t) {
    case AQ_OPT_INT: return "an integer";
    case AQ_OPT_DURATION: return "a duration such as 250ms, 30s, 5m or 1h";
    case AQ_OPT_BYTES: return "a size such as 4096, 64KiB or 32MiB";
    case AQ_OPT_BOOL: return "true or false";
    case AQ_OPT_DOUBLE: return "a number";
    default: return "a string";
    }
}

static bool is_text_type(aq_opt_type t)
{
    switch (t) {
    case AQ_OPT_STRING:
    case AQ_OPT_SECRET:
    case AQ_OPT_URLS:
    case AQ_OPT_NATS_URLS:
    case AQ_OPT_HTTP_URL:
    case AQ_OPT_SUBJECT:
    case AQ_OPT_JS_NAME:
    case AQ_OPT_BUCKET:
    case AQ_OPT_FILE: return true;
    default: return false;
    }
}

static bool has_space_or_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return true;
    return false;
}

static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < ' ' || *p == 0x7f)
            return true;
    return false;
}

static bool js_name_ok(const char *s, bool bucket)
{
    size_t n = strlen(s);
    if (n == 0 || n > AQ_CONFIG_NAME_MAX)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (bucket ? !(isalnum(*p) || *p == '_' || *p == '-')
                   : (*p <= ' ' || *p == 0x7f || strchr(".*>/\\", *p)))
            return false;
    }
    return true;
}

/* Parts of a URL libcurl parsed; `why` gets libcurl's reason on failure. */
static bool curl_url_parse(CURLU *u, const char *url, unsigned flags, char *why, size_t n)
{
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, flags);
    if (rc != CURLUE_OK)
        snprintf(why, n, "%s", curl_url_strerror(rc));
    return rc == CURLUE_OK;
}

static bool curl_url_has(CURLU *u, CURLUPart part)
{
    char *v = NULL;
    bool has = curl_url_get(u, part, &v, 0) == CURLUE_OK && v && *v;
    curl_free(v);
    return has;
}

/* One NATS server URL as nats.c reads it (src/url.c): no "://" means
 * nats://; then [user[:password]@]host[:port]. nats.c itself takes any
 * scheme and only tls:// means TLS, and it speaks no WebSocket. */
static bool nats_url_ok(const char *url, char *why, size_t n)
{
    const char *sep = strstr(url, "://");
    char buf[1024];
    if (sep) {
        size_t slen = (size_t)(sep - url);
        if ((slen == 2 && strncasecmp(url, "ws", 2) == 0) ||
            (slen == 3 && strncasecmp(url, "wss", 3) == 0)) {
            snprintf(why, n, "WebSocket URLs are not supported by the NATS client (nats.c)");
            return false;
        }
        if (!((slen == 4 && strncasecmp(url, "nats", 4) == 0) ||
              (slen == 3 && strncasecmp(url, "tls", 3) == 0))) {
            snprintf(why, n, "the scheme must be nats:// or tls://");
            return false;
        }
    }
    if (has_space_or_control(url)) {
        snprintf(why, n, "it contains a space or a control character");
        return false;
    }
    /* The user information ends at the last '@', as nats.c reads it; only
     * the rest is libcurl's. A '/', '?' or '#' in it would end it for
     * everything else (the redaction of URLs in output among them). */
    const char *rest = sep ? sep + 3 : url, *at = strrchr(rest, '@');
    if (at && strcspn(rest, "/?#") < (size_t)(at - rest)) {
        snprintf(why, n, "a '/', '?' or '#' before the '@' (give such credentials in nats_user "
                         "and nats_password)");
        return false;
    }
    if ((size_t)snprintf(buf, sizeof(buf), "nats://%s", at ? at + 1 : rest) >= sizeof(buf)) {
        snprintf(why, n, "it is longer than %zu bytes", sizeof(buf) - 8);
        return false;
    }
    CURLU *u = curl_url();
    if (!u) {
        snprintf(why, n, "out of memory");
        return false;
    }
    bool ok = curl_url_parse(u, buf, CURLU_NON_SUPPORT_SCHEME, why, n);
    char *port = NULL;
    if (ok && !curl_url_has(u, CURLUPART_HOST)) {
        snprintf(why, n, "it has no host");
        ok = false;
    }
    if (ok && curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port && atoi(port) < 1) {
        snprintf(why, n, "port %s is not in [1, 65535]", port);
        ok = false;
    }
    curl_free(port);
    char *path = NULL;
    if (ok && ((curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path &&
                strcmp(path, "/") != 0 && *path) ||
               curl_url_has(u, CURLUPART_QUERY) || curl_url_has(u, CURLUPART_FRAGMENT))) {
        snprintf(why, n, "a NATS URL has no path, query or fragment");
        ok = false;
    }
    curl_free(path);
    curl_url_cleanup(u);
    return ok;
}

static bool nats_urls_ok(const char *urls, char *why, size_t n)
{
    aq_list l;
    aq_err lerr;
    if (aq_list_split(urls, "the list", AQ_CONFIG_URLS_MAX, &l, &lerr) != AQ_OK) {
        snprintf(why, n, "%s", lerr.msg);
        return false;
    }
    bool ok = l.n > 0;
    if (!ok)
        snprintf(why, n, "it names no server");
    for (size_t i = 0; ok && i < l.n; i++) {
        char reason[256], safe[512];
        if (!nats_url_ok(l.items[i], reason, sizeof(reason))) {
            /* Everything up to the last '@' hidden, as nats.c reads the
             * user information (aq_redact_urls stops at a '/'). */
            const char *item = l.items[i], *sep = strstr(item, "://");
            const char *at = strrchr(item, '@');
            if (at)
                snprintf(safe, sizeof(safe), "%.*s***%s", sep ? (int)(sep + 3 - item) : 0, item,
                         at);
            else
                snprintf(safe, sizeof(safe), "%s", item);
            ok = snprintf(why, n, "'%s': %s", safe, reason) < 0; /* false; cut if long */
        }
    }
    aq_list_free(&l);
    return ok;
}

/* The Messages API base URL: libcurl must read it as http(s)://host[:port][/path]
 * (the client appends /v1/messages), without user information. */
static bool http_url_ok(const char *url, char *why, size_t n)
{
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        snprintf(why, n, "it must start with http:// or https://");
        return false;
    }
    if (has_space_or_control(url)) {
        snprintf(why, n, "it contains a space or a control character");
        return false;
    }
    CURLU *u = curl_url();
    if (!u) {
        snprintf(why, n, "out of memory");
        return false;
    }
    bool ok = curl_url_parse(u, url, 0, why, n);
    if (ok && !curl_url_has(u, CURLUPART_HOST)) {
        snprintf(why, n, "it has no host");
        ok = false;
    }
    if (ok && (curl_url_has(u, CURLUPART_USER) || curl_url_has(u, CURLUPART_PASSWORD) ||
               strchr(url, '@'))) {
        snprintf(why, n, "it must not hold credentials (user:password@)");
        ok = false;
    }
    if (ok && (curl_url_has(u, CURLUPART_QUERY) || curl_url_has(u, CURLUPART_FRAGMENT) ||
               strchr(url, '?') || strchr(url, '#'))) {
        snprintf(why, n, "it must have no query or fragment (/v1/messages is appended)");
        ok = false;
    }
    curl_url_cleanup(u);
    return ok;
}

/* The syntax of a text option's value; the error names the option and the
 * source and never shows a secret or URL credentials. */
static aq_status check_text(const aq_option *o, const char *value, const char *source,
                            aq_err *err)
{
    char why[640], safe[1024];
    switch (o->type) {
    case AQ_OPT_NATS_URLS:
        if (!nats_urls_ok(value, why, sizeof(why)))
            return aq_err_set(err, AQ_CONFIG,
                              "%s (from %s): not a list of NATS server URLs ([nats:// or "
                              "tls://][user:password@]host[:port], comma-separated): %s",
                              o->name, source, why);
        return AQ_OK;
    case AQ_OPT_HTTP_URL:
        if (!http_url_ok(value, why, sizeof(why))) {
            aq_redact_urls(value, safe, sizeof(safe));
            return aq_err_set(err, AQ_CONFIG, "%s (from %s): '%s' is not an http(s) URL: %s",
                              o->name, source, safe, why);
        }
        return AQ_OK;
    case AQ_OPT_SUBJECT:
        if (!aq_subject_prefix_valid(value, AQ_CONFIG_SUBJECT_MAX))
            return aq_err_set(err, AQ_CONFIG,
                              "%s (from %s): '%.200s' is not a subject prefix (dot-separated "
                              "tokens, no wildcards or spaces, at most %d bytes)",
                              o->name, source, value, AQ_CONFIG_SUBJECT_MAX);
        return AQ_OK;
    case AQ_OPT_JS_NAME:
        if (!js_name_ok(value, false))
            return aq_err_set(err, AQ_CONFIG,
                              "%s (from %s): '%.255s' is not a JetStream name (1-%d bytes, no "
                              "spaces, '.', '*', '>', '/' or '\\\\')",
                              o->name, source, value, AQ_CONFIG_NAME_MAX);
        return AQ_OK;
    case AQ_OPT_BUCKET:
        if (!js_name_ok(value, true))
            return aq_err_set(err, AQ_CONFIG,
                              "%s (from %s): '%.255s' is not a bucket name (1-%d of "
                              "[A-Za-z0-9_-])",
                              o->name, source, value, AQ_CONFIG_NAME_MAX);
        return AQ_OK;
    case AQ_OPT_FILE:
        if (has_control(value))
            return aq_err_set(err, AQ_CONFIG,
                              "%s (from %s): a file name with a control character", o->name,
                              source);
        return AQ_OK;
    default: return AQ_OK;
    }
}

static aq_status check_bounds(const aq_option *o, double v, const char *value, const char *source,
                              aq_err *err)
{
    if (o->min == 0 && o->max == 0)
        return AQ_OK;
    if (v < o->min || v > o->max)
        return aq_err_set(err, AQ_CONFIG, "%s (from %s): %s is out of range [%g, %g]", o->name,
                          source, value, o->min, o->max);
    return AQ_OK;
}

static aq_status set_value(const aq_option *o, void *cfg, const char *value, const char *source,
                           aq_err *err)
{
    char *field = (char *)cfg + o->offset;
    int64_t iv = 0;
    aq_status st = AQ_OK;

    if (is_text_type(o->type)) {
        if ((st = check_text(o, value, source, err)) != AQ_OK)
            return st;
        char *copy = strdup(value);
        if (!copy)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        free(*(char **)field);
        *(char **)field = copy;
        return AQ_OK;
    }
    switch (o->type) {
    case AQ_OPT_BOOL:
        if (aq_parse_bool(value, (bool *)field) != AQ_OK)
            goto bad;
        return AQ_OK;
    case AQ_OPT_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(d))
            goto bad;
        st = check_bounds(o, d, value, source, err);
        if (st == AQ_OK)
            *(double *)field = d;
        return st;
    }
    case AQ_OPT_INT: st = aq_parse_int(value, &iv); break;
    case AQ_OPT_DURATION: st = aq_parse_duration_ms(value, &iv); break;
    case AQ_OPT_BYTES: st = aq_parse_bytes(value, &iv); break;
    default: break; /* text: above */
    }
    if (st != AQ_OK)
        goto bad;
    st = check_bounds(o, (double)iv, value, source, err);
    if (st == AQ_OK)
        *(int64_t *)field = iv;
    return st;

bad:
    /* Secrets are never echoed back, even when malformed. */
    return aq_err_set(err, AQ_CONFIG, "%s (from %s): '%s' is not %s", o->name, source,
                      o->type == AQ_OPT_SECRET ? "<redacted>" : value, type_hint(o->type));
}

/* Edit distance of a[0..na) and b, a swap of neighbours counting as one
 * edit (optimal string alignment), for typo hints (names are short). */
static size_t edit_distance(const char *a, size_t na, const char *b)
{
    size_t nb = strlen(b), rows[3][64];
    if (na >= 63 || nb >= 63)
        return SIZE_MAX;
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= nb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[nb];
}

/* The known name closest to name[0..len), if close enough to be a typo. */
static const char *closest_name(const aq_option *opts, const aq_option *const *others,
                                const char *name, size_t len)
{
    const char *best = NULL;
    size_t best_d = len < 6 ? 1 : 2;
    for (size_t t = 0; t == 0 || (others && others[t - 1]); t++) {
        for (const aq_option *o = t == 0 ? opts : others[t - 1]; o->name; o++) {
            size_t d = edit_distance(name, len, o->name);
            if (d <= best_d && (!best || d < best_d)) {
                best = o->name;
                best_d = d;
            }
        }
    }
    return best;
}

static aq_status unknown_option(const aq_option *opts, const aq_option *const *others,
                                const char *dashes, const char *name, size_t len,
                                const char *source, aq_err *err)
{
    const char *hint = closest_name(opts, others, name, len);
    char tail[256] = "see --help";
    if (hint)
        snprintf(tail, sizeof(tail), "did you mean '%s%s'?", dashes, hint);
    if (source)
        return aq_err_set(err, AQ_CONFIG, "unknown option '%s%.*s' (from %s%s%s)", dashes,
                          (int)len, name, source, hint ? "; " : "", hint ? tail : "");
    return aq_err_set(err, AQ_CONFIG, "unknown option '%s%.*s' (%s)", dashes, (int)len, name,
                      tail);
}

aq_status aq_config_set(const aq_option *opts, void *cfg, const char *name, const char *value,
                        const char *source, aq_err *err)
{
    const aq_option *o = find_option(opts, name, strlen(name));
    if (!o)
        return unknown_option(opts, NULL, "", name, strlen(name), source, err);
    return set_value(o, cfg, value, source, err);
}

static bool known_elsewhere(const aq_option *const *others, const char *name)
{
    for (size_t t = 0; others && others[t]; t++)
        if (find_option(others[t], name, strlen(name)))
            return true;
    return false;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

enum { LINE_EOF, LINE_OK, LINE_TOO_LONG };

/* One line into buf (NUL-terminated, without its '\n'), at most cap - 2
 * bytes of it. Read a byte at a time, not with fgets: a NUL byte would end
 * fgets' string early, and the line could not be told from a long one. */
static int read_line(FILE *f, char *buf, size_t cap, bool *has_nul)
{
    size_t n = 0;
    int c;
    *has_nul = false;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (n + 2 >= cap)
            return LINE_TOO_LONG;
        if (c == '\0')
            *has_nul = true;
        buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return c == EOF && n == 0 ? LINE_EOF : LINE_OK;
}

/* The config-file format, from an open stream; `path` names it in errors.
 * Names of `others` this table lacks are skipped (aq_config_load_shared). */
static aq_status load_stream(const aq_option *opts, const aq_option *const *others, void *cfg,
                             FILE *f, const char *path, aq_err *err)
{
    char line[CONFIG_LINE_MAX], source[CONFIG_LINE_MAX + 32];
    aq_status st = AQ_OK;
    int lineno = 0, got;
    bool has_nul;
    while ((got = read_line(f, line, sizeof(line), &has_nul)) != LINE_EOF) {
        lineno++;
        if (lineno > CONFIG_FILE_MAX_LINES) {
            st = aq_err_set(err, AQ_CONFIG, "config file %s: more than %d lines", path,
                            CONFIG_FILE_MAX_LINES);
            goto out;
        }
        if (got == LINE_TOO_LONG) {
            st = aq_err_set(err, AQ_CONFIG, "%s:%d: line longer than %d bytes", path, lineno,
                            CONFIG_LINE_MAX - 2);
            goto out;
        }
        if (has_nul) {
            st = aq_err_set(err, AQ_CONFIG, "%s:%d: line %d contains a NUL byte", path, lineno,
                            lineno);
            goto out;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            st = aq_err_set(err, AQ_CONFIG, "%s:%d: expected 'name = value'", path, lineno);
            goto out;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        snprintf(source, sizeof(source), "%s:%d", path, lineno);
        const aq_option *o = find_option(opts, name, strlen(name));
        if (!o && known_elsewhere(others, name))
            continue; /* another program's option in a shared file */
        st = o ? set_value(o, cfg, value, source, err)
               : unknown_option(opts, others, "", name, strlen(name), source, err);
        if (st != AQ_OK)
            goto out;
    }
    /* A directory opens but does not read: say so rather than load nothing. */
    if (ferror(f))
        st = aq_err_set(err, AQ_CONFIG, "config file %s: %s", path, strerror(errno ? errno : EIO));
out:
    return st;
}

static aq_status load_file(const aq_option *opts, const aq_option *const *others, void *cfg,
                           const char *path, aq_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return aq_err_set(err, AQ_CONFIG, "config file %s: %s", path, strerror(errno));
    aq_status st = load_stream(opts, others, cfg, f, path, err);
    fclose(f);
    return st;
}

aq_status aq_config_load_text(const aq_option *opts, void *cfg, const char *text, size_t len,
                              const char *name, aq_err *err)
{
    if (len == 0) /* fmemopen refuses an empty buffer; an empty file sets nothing */
        return AQ_OK;
    /* Read-only: fmemopen does not write to the buffer in mode "r". */
    FILE *f = fmemopen((void *)text, len, "r");
    if (!f)
        return aq_err_set(err, AQ_NOMEM, "config text %s: %s", name, strerror(errno));
    aq_status st = load_stream(opts, NULL, cfg, f, name, err);
    fclose(f);
    return st;
}

aq_status aq_config_load(const aq_option *opts, void *cfg, int argc, char **argv,
                         aq_config_cli *cli, aq_err *err)
{
    return aq_config_load_shared(opts, NULL, cfg, argc, argv, cli, err);
}

aq_status aq_config_load_shared(const aq_option *opts, const aq_option *const *others, void *cfg,
                                int argc, char **argv, aq_config_cli *cli, aq_err *err)
{
    aq_config_cli local = {0};
    aq_status st;
    const char *config_path = getenv("AGENTQ_CONFIG");
    int i;

    for (const aq_option *o = opts; o->name; o++) {
        if (o->def && (st = set_value(o, cfg, o->def, "default", err)) != AQ_OK)
            return st;
    }
    /* The config file is named before other flags are applied. */
    for (i = 1; argv && i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (argv[i][0] != '-')
            continue;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config_path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            config_path = argv[i] + 9;
    }
    if (config_path && *config_path &&
        (st = load_file(opts, others, cfg, config_path, err)) != AQ_OK)
        return st;

    for (const aq_option *o = opts; o->name; o++) {
        const char *v = o->env ? getenv(o->env) : NULL;
        if (v && (st = set_value(o, cfg, v, o->env, err)) != AQ_OK)
            return st;
    }

    /* Options may come before or after arguments (as with GNU getopt):
     * arguments are moved, in order, behind the options; `--` ends options. */
    st = AQ_OK;
    char **positional = argv && argc > 1 ? calloc((size_t)argc, sizeof(char *)) : NULL;
    int npos = 0, nopt = 1;
    if (argv && argc > 1 && !positional)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    for (i = 1; argv && i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            argv[nopt++] = argv[i]; /* keep it, just before the arguments */
            for (i++; i < argc; i++)
                positional[npos++] = argv[i];
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            positional[npos++] = argv[i];
            continue;
        }
        argv[nopt++] = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            local.help = true;
            continue;
        }
        if (strcmp(a, "--print-config") == 0) {
            local.print_config = true;
            continue;
        }
        st = AQ_OK;
        if (strncmp(a, "--", 2) != 0) {
            st = aq_err_set(err, AQ_CONFIG, "unknown flag '%s' (options are --name=value)", a);
            goto done;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (nlen == 6 && strncmp(name, "config", 6) == 0) {
            if (!eq) {
                if (i + 1 >= argc) {
                    st = aq_err_set(err, AQ_CONFIG, "option --config needs a value");
                    goto done;
                }
                argv[nopt++] = argv[++i];
            }
            continue;
        }
        const aq_option *o = find_option(opts, name, nlen);
        if (!o) {
            st = unknown_option(opts, NULL, "--", name, nlen, NULL, err);
            goto done;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (o->type == AQ_OPT_BOOL) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
            argv[nopt++] = argv[i];
        } else {
            st = aq_err_set(err, AQ_CONFIG, "option --%s needs a value", o->name);
            goto done;
        }
        if ((st = set_value(o, cfg, value, "command line", err)) != AQ_OK)
            goto done;
    }
    for (int k = 0; k < npos; k++)
        argv[nopt + k] = positional[k];
    i = argv ? nopt : 1;
done:
    free(positional);
    if (st != AQ_OK)
        return st;
    local.argi = i;
    if (cli)
        *cli = local;
    return AQ_OK;
}

aq_status aq_config_check(const aq_option *opts, const void *cfg, aq_err *err)
{
    aq_status st = AQ_OK;
    for (const aq_option *o = opts; o->name && st == AQ_OK; o++) {
        const char *field = (const char *)cfg + o->offset;
        switch (o->type) {
        case AQ_OPT_INT:
        case AQ_OPT_DURATION:
        case AQ_OPT_BYTES: {
            char v[32];
            snprintf(v, sizeof(v), "%lld", (long long)*(const int64_t *)field);
            st = check_bounds(o, (double)*(const int64_t *)field, v, "the configuration", err);
            break;
        }
        case AQ_OPT_DOUBLE: {
            char v[64];
            double d = *(const double *)field;
            snprintf(v, sizeof(v), "%g", d);
            st = isfinite(d) ? check_bounds(o, d, v, "the configuration", err)
                             : aq_err_set(err, AQ_CONFIG, "%s: %s is not a number", o->name, v);
            break;
        }
        case AQ_OPT_BOOL: break;
        case AQ_OPT_STRING:
        case AQ_OPT_SECRET:
        case AQ_OPT_URLS: break;
        case AQ_OPT_FILE: {
            const char *v = *(char *const *)field;
            if (v)
                st = check_text(o, v, "the configuration", err);
            break;
        }
        default: { /* text with a syntax: an empty or unset value is not one */
            const char *v = *(char *const *)field;
            st = v ? check_text(o, v, "the configuration", err)
                   : aq_err_set(err, AQ_CONFIG, "%s is not set", o->name);
            break;
        }
        }
    }
    return st;
}

aq_status aq_config_check_files(const aq_option *opts, const void *cfg, aq_err *err)
{
    for (const aq_option *o = opts; o->name; o++) {
        const char *path = o->type == AQ_OPT_FILE ? *(char *const *)((const char *)cfg + o->offset)
                                                  : NULL;
        struct stat sb;
        if (!path || !*path)
            continue;
        if (stat(path, &sb) != 0 || access(path, R_OK) != 0)
            return aq_err_set(err, AQ_CONFIG, "%s: cannot read '%s': %s", o->name, path,
                              strerror(errno));
        if (!S_ISREG(sb.st_mode))
            return aq_err_set(err, AQ_CONFIG, "%s: '%s' is not a regular file", o->name, path);
    }
    return AQ_OK;
}

void aq_config_free(const aq_option *opts, void *cfg)
{
    for (const aq_option *o = opts; o->name; o++) {
        if (is_text_type(o->type)) {
            char **p = (char **)((char *)cfg + o->offset);
            free(*p);
            *p = NULL;
        }
    }
}

static void format_value(const aq_option *o, const void *cfg, char *out, size_t n)
{
    const char *field = (const char *)cfg + o->offset;
    switch (o->type) {
    case AQ_OPT_STRING: {
        const char *s = *(char *const *)field;
        snprintf(out, n, "%s", s ? s : "");
        break;
    }
    case AQ_OPT_SECRET: {
        const char *s = *(char *const *)field;
        snprintf(out, n, "%s", s && *s ? "<redacted>" : "");
        break;
    }
    case AQ_OPT_URLS:
    case AQ_OPT_NATS_URLS:
    case AQ_OPT_HTTP_URL: {
        const char *s = *(char *const *)field;
        aq_redact_urls(s ? s : "", out, n);
        break;
    }
    case AQ_OPT_SUBJECT:
    case AQ_OPT_JS_NAME:
    case AQ_OPT_BUCKET:
    case AQ_OPT_FILE: {
        const char *s = *(char *const *)field;
        snprintf(out, n, "%s", s ? s : "");
        break;
    }
    case AQ_OPT_INT: snprintf(out, n, "%lld", (long long)*(const int64_t *)field); break;
    case AQ_OPT_DURATION: snprintf(out, n, "%lldms", (long long)*(const int64_t *)field); break;
    case AQ_OPT_BYTES: snprintf(out, n, "%lld", (long long)*(const int64_t *)field); break;
    case AQ_OPT_BOOL: snprintf(out, n, "%s", *(const bool *)field ? "true" : "false"); break;
    case AQ_OPT_DOUBLE: snprintf(out, n, "%g", *(const double *)field); break;
    }
}

void aq_config_print(const aq_option *opts, const void *cfg, FILE *out)
{
    char value[1024];
    for (const aq_option *o = opts; o->name; o++) {
        format_value(o, cfg, value, sizeof(value));
        fprintf(out, "%s = %s\n", o->name, value);
    }
}

void aq_config_print_help(const aq_option *opts, FILE *out)
{
    fprintf(out, "Options (command line --name=value, environment, or config file `name = value`):\n");
    for (const aq_option *o = opts; o->name; o++) {
        fprintf(out, "  --%-26s %s\n", o->name, o->help ? o->help : "");
        fprintf(out, "  %-28s env %s, default %s", "", o->env ? o->env : "-",
                o->def && *o->def ? o->def : "(none)");
        if (!(o->min == 0 && o->max == 0))
            fprintf(out, ", range [%g, %g]", o->min, o->max);
        fprintf(out, "\n");
    }
    fprintf(out, "  --%-26s %s\n", "config FILE", "read options from FILE (env AGENTQ_CONFIG)");
    fprintf(out, "  --%-26s %s\n", "print-config", "print the effective configuration and exit");
}
