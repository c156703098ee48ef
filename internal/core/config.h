/* One declarative configuration table per program (redis static_configs[],
 * nginx ngx_command_t): name, env var, type, default, bounds, help.
 *
 * Values come from, in increasing precedence: the default, a config file
 * (`--config FILE` or $AGENTQ_CONFIG; lines `name = value`, `#` comments),
 * the environment, the command line (`--name=value`, `--name value`, or
 * `--name` for a bool). Every value is parsed and bounds-checked once, at
 * start; a bad one is a specific error naming the option and its source.
 */
#ifndef AQ_CORE_CONFIG_H
#define AQ_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

typedef enum aq_opt_type {
    AQ_OPT_STRING,   /* char *  (owned; NULL or "" when unset) */
    AQ_OPT_SECRET,   /* char *  like STRING, but printed redacted */
    AQ_OPT_URLS,     /* char *  like STRING; printed with URL credentials redacted */
    AQ_OPT_INT,      /* int64_t */
    AQ_OPT_DURATION, /* int64_t milliseconds; "250ms", "30s", "5m", "1h"; bare number = ms */
    AQ_OPT_BYTES,    /* int64_t bytes; "512", "64KiB", "32MiB", "1GiB", "10MB" */
    AQ_OPT_BOOL,     /* bool; true/false/1/0/yes/no/on/off */
    AQ_OPT_DOUBLE,   /* double */
    /* Strings with a syntax, checked when set (the error names the option
     * and the source); char * like STRING. */
    AQ_OPT_NATS_URLS, /* comma-separated NATS servers, each
                       * [nats:// or tls://][user[:password]@]host[:port] (what nats.c reads; no
                       * WebSocket), at most AQ_CONFIG_URLS_MAX; printed with credentials
                       * redacted */
    AQ_OPT_HTTP_URL,  /* one http:// or https:// URL with a host and no credentials, query or
                       * fragment, parsed by libcurl's URL API; printed redacted */
    AQ_OPT_SUBJECT,   /* NATS subject prefix: dot-separated tokens, no wildcard, space or control
                       * character, at most AQ_CONFIG_SUBJECT_MAX bytes */
    AQ_OPT_JS_NAME,   /* JetStream stream or consumer name: 1-AQ_CONFIG_NAME_MAX bytes, no space,
                       * control character, '.', '*', '>', '/' or '\\' */
    AQ_OPT_BUCKET,    /* JetStream KV bucket name: 1-AQ_CONFIG_NAME_MAX of [A-Za-z0-9_-]
                       * (nats.c's rule) */
    AQ_OPT_FILE,      /* path of a file to read, or empty; no control characters. That it exists
                       * is checked by aq_config_check_files, at start, not when set: a config file
                       * can be checked (--print-config) where its paths do not exist */
} aq_opt_type;

#define AQ_CONFIG_URLS_MAX 32
#define AQ_CONFIG_SUBJECT_MAX 200
#define AQ_CONFIG_NAME_MAX 255

typedef struct aq_option {
    const char *name;   /* option name: --name, and the key in the config file */
    const char *env;    /* environment variable, or NULL */
    aq_opt_type type;
    const char *def;    /* default, as text (NULL = unset) */
    double min, max;    /* bounds for numeric types (ignored when min == max == 0) */
    size_t offset;      /* offsetof(config struct, field) */
    const char *help;
} aq_option;

#define AQ_OPTIONS_END {NULL, NULL, AQ_OPT_STRING, NULL, 0, 0, 0, NULL}

/* What the command line asked for besides values. */
typedef struct aq_config_cli {
    bool help;
    bool print_config;
    int argi;           /* index of the first argument that is not an option */
} aq_config_cli;

/* Apply defaults, the config file, the environment, then argv (from argv[1];
 * argv may be NULL). On error `err` names the option, the source and why. */
aq_status aq_config_load(const aq_option *opts, void *cfg, int argc, char **argv,
                         aq_config_cli *cli, aq_err *err);
/* aq_config_load for a program whose config file may also serve others:
 * `others` (NULL-terminated; NULL = none) are those programs' option tables,
 * and a name of theirs in the config file that `opts` lacks is skipped, not
 * refused. The command line and the environment are not affected. */
aq_status aq_config_load_shared(const aq_option *opts, const aq_option *const *others, void *cfg,
                                int argc, char **argv, aq_config_cli *cli, aq_err *err);
/* Apply text in the config-file format (`name = value` lines, `#` comments,
 * the same line-length and line-count limits) as if it were the content of a
 * file called `name` (which errors name). Only the text: no defaults,
 * environment or command line. For tests and the fuzzer (tests/fuzz), which
 * must not write a file per input; programs use aq_config_load. */
aq_status aq_config_load_text(const aq_option *opts, void *cfg, const char *text, size_t len,
                              const char *name, aq_err *err);
/* Set one option from text (used by the loader and by tests). */
aq_status aq_config_set(const aq_option *opts, void *cfg, const char *name, const char *value,
                        const char *source, aq_err *err);
/* Check every option's current value as aq_config_set would (type, syntax,
 * bounds), whatever put it there; the error names the option. */
aq_status aq_config_check(const aq_option *opts, const void *cfg, aq_err *err);
/* Every non-empty AQ_OPT_FILE option names a readable regular file. */
aq_status aq_config_check_files(const aq_option *opts, const void *cfg, aq_err *err);
/* Free the strings a loaded config owns. */
void aq_config_free(const aq_option *opts, void *cfg);

void aq_config_print_help(const aq_option *opts, FILE *out);
/* The effective configuration, one `name = value` a line, secrets redacted. */
void aq_config_print(const aq_option *opts, const void *cfg, FILE *out);

/* Parsers shared with other code that reads durations or sizes. */
aq_status aq_parse_int(const char *s, int64_t *out);
aq_status aq_parse_duration_ms(const char *s, int64_t *out);
aq_status aq_parse_bytes(const char *s, int64_t *out);
aq_status aq_parse_bool(const char *s, bool *out);

#endif
