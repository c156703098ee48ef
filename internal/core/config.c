#include "config.h"

#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

    switch (o->type) {
    case AQ_OPT_STRING:
    case AQ_OPT_SECRET:
    case AQ_OPT_URLS: {
        char *copy = strdup(value);
        if (!copy)
            return aq_err_set(err, AQ_NOMEM, "out of memory");
        free(*(char **)field);
        *(char **)field = copy;
        return AQ_OK;
    }
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

aq_status aq_config_set(const aq_option *opts, void *cfg, const char *name, const char *value,
                        const char *source, aq_err *err)
{
    const aq_option *o = find_option(opts, name, strlen(name));
    if (!o)
        return aq_err_set(err, AQ_CONFIG, "unknown option '%s' (from %s)", name, source);
    return set_value(o, cfg, value, source, err);
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

/* The config-file format, from an open stream; `path` names it in errors. */
static aq_status load_stream(const aq_option *opts, void *cfg, FILE *f, const char *path,
                             aq_err *err)
{
    char line[CONFIG_LINE_MAX], source[CONFIG_LINE_MAX + 32];
    aq_status st = AQ_OK;
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (lineno > CONFIG_FILE_MAX_LINES) {
            st = aq_err_set(err, AQ_CONFIG, "config file %s: more than %d lines", path,
                            CONFIG_FILE_MAX_LINES);
            goto out;
        }
        if (!strchr(line, '\n') && !feof(f)) {
            st = aq_err_set(err, AQ_CONFIG, "%s:%d: line longer than %d bytes", path, lineno,
                            CONFIG_LINE_MAX - 2);
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
        st = aq_config_set(opts, cfg, name, value, source, err);
        if (st != AQ_OK)
            goto out;
    }
    /* A directory opens but does not read: say so rather than load nothing. */
    if (ferror(f))
        st = aq_err_set(err, AQ_CONFIG, "config file %s: %s", path, strerror(errno ? errno : EIO));
out:
    return st;
}

static aq_status load_file(const aq_option *opts, void *cfg, const char *path, aq_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return aq_err_set(err, AQ_CONFIG, "config file %s: %s", path, strerror(errno));
    aq_status st = load_stream(opts, cfg, f, path, err);
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
    aq_status st = load_stream(opts, cfg, f, name, err);
    fclose(f);
    return st;
}

aq_status aq_config_load(const aq_option *opts, void *cfg, int argc, char **argv,
                         aq_config_cli *cli, aq_err *err)
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
    if (config_path && *config_path && (st = load_file(opts, cfg, config_path, err)) != AQ_OK)
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
            st = aq_err_set(err, AQ_CONFIG, "unknown option '--%.*s' (see --help)", (int)nlen, name);
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

void aq_config_free(const aq_option *opts, void *cfg)
{
    for (const aq_option *o = opts; o->name; o++) {
        if (o->type == AQ_OPT_STRING || o->type == AQ_OPT_SECRET || o->type == AQ_OPT_URLS) {
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
    case AQ_OPT_URLS: {
        const char *s = *(char *const *)field;
        aq_redact_urls(s ? s : "", out, n);
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
