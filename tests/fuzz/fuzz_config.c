/* Fuzz target: the configuration parser (internal/core/config.h), on a table
 * with every option type.
 * Input: byte 0 picks the source, the rest is
 *   even: the text of a config file (aq_config_load_text, after the defaults);
 *   odd:  a command line, arguments separated by NUL bytes (aq_config_load).
 * A --config FILE on the fuzzed command line is pointed at /dev/null: the
 * fuzzer must not read (or hang on) whatever file a mutation names.
 * Either way the result is then printed (aq_config_print, with its secret and
 * URL redaction) and freed.
 *
 * Invariants: on success every bounded option is within its bounds, every
 * value passes aq_config_check, and argi is in [1, argc]; the secret never
 * appears in an error message. */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "core/config.h"

typedef struct fcfg {
    char *name;
    char *key;
    char *urls;
    char *nodef;
    char *servers;
    char *endpoint;
    char *subject;
    char *stream;
    char *bucket;
    char *file;
    int64_t count;
    int64_t big;
    int64_t wait_ms;
    int64_t size;
    bool flag;
    bool other;
    double ratio;
    double any;
} fcfg;

#define SECRET_DEFAULT "sk-fuzz-default-secret"

#define F fcfg
static const aq_option opts[] = {
    {"name", NULL, AQ_OPT_STRING, "dflt", 0, 0, offsetof(F, name), "a string"},
    {"key", NULL, AQ_OPT_SECRET, SECRET_DEFAULT, 0, 0, offsetof(F, key), "a secret"},
    {"urls", NULL, AQ_OPT_URLS, "nats://u:p@127.0.0.1:4222", 0, 0, offsetof(F, urls), "URLs"},
    {"nodef", NULL, AQ_OPT_STRING, NULL, 0, 0, offsetof(F, nodef), "no default"},
    {"servers", NULL, AQ_OPT_NATS_URLS, "nats://127.0.0.1:4222", 0, 0, offsetof(F, servers),
     "NATS URLs"},
    {"endpoint", NULL, AQ_OPT_HTTP_URL, "https://api.example.com", 0, 0, offsetof(F, endpoint),
     "an http(s) URL"},
    {"subject", NULL, AQ_OPT_SUBJECT, "a.b", 0, 0, offsetof(F, subject), "a subject prefix"},
    {"stream", NULL, AQ_OPT_JS_NAME, "S", 0, 0, offsetof(F, stream), "a JetStream name"},
    {"bucket", NULL, AQ_OPT_BUCKET, "b", 0, 0, offsetof(F, bucket), "a bucket name"},
    {"file", NULL, AQ_OPT_FILE, "", 0, 0, offsetof(F, file), "a file"},
    {"count", NULL, AQ_OPT_INT, "10", 1, 100, offsetof(F, count), "bounded int"},
    {"big", NULL, AQ_OPT_INT, "0", 0, 0, offsetof(F, big), "unbounded int"},
    {"wait", NULL, AQ_OPT_DURATION, "30s", 1, 3600000, offsetof(F, wait_ms), "a duration"},
    {"size", NULL, AQ_OPT_BYTES, "64KiB", 1, 1073741824, offsetof(F, size), "a size"},
    {"flag", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(F, flag), "a bool"},
    {"other", NULL, AQ_OPT_BOOL, "true", 0, 0, offsetof(F, other), "another bool"},
    {"ratio", NULL, AQ_OPT_DOUBLE, "0.5", 0, 1, offsetof(F, ratio), "bounded double"},
    {"any", NULL, AQ_OPT_DOUBLE, "0", 0, 0, offsetof(F, any), "unbounded double"},
    AQ_OPTIONS_END,
};
#undef F

#define MAX_ARGS 256

static FILE *devnull;

static void check_bounds(const fcfg *c)
{
    FUZZ_CHECK(c->count >= 1 && c->count <= 100);
    FUZZ_CHECK(c->wait_ms >= 1 && c->wait_ms <= 3600000);
    FUZZ_CHECK(c->size >= 1 && c->size <= 1073741824);
    FUZZ_CHECK(c->ratio >= 0 && c->ratio <= 1);
    FUZZ_CHECK(c->name != NULL && c->key != NULL && c->urls != NULL);
    /* What the loader accepted, the check accepts too. */
    aq_err err;
    FUZZ_CHECK_ERR(aq_config_check(opts, c, &err) == AQ_OK, &err);
}

/* What the loader would open as a config file is /dev/null instead. */
static void neuter_config_paths(int argc, char **argv)
{
    static char eq_form[] = "--config=/dev/null";
    static char path[] = "/dev/null";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strncmp(argv[i], "--config=", 9) == 0)
            argv[i] = eq_form;
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            argv[i + 1] = path;
    }
}

static aq_status load_argv(fcfg *cfg, const uint8_t *data, size_t size, aq_err *err)
{
    static char prog[] = "fuzz_config";
    char *buf = malloc(size + 1), *argv[MAX_ARGS + 1];
    int argc = 0;
    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data, size);
    buf[size] = '\0';
    argv[argc++] = prog;
    for (size_t at = 0; at <= size && argc < MAX_ARGS; at += strlen(buf + at) + 1)
        argv[argc++] = buf + at;
    argv[argc] = NULL;
    neuter_config_paths(argc, argv);

    aq_config_cli cli = {.argi = -1};
    aq_status st = aq_config_load(opts, cfg, argc, argv, &cli, err);
    if (st == AQ_OK)
        FUZZ_CHECK(cli.argi >= 1 && cli.argi <= argc);
    free(buf);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull) {
        unsetenv("AGENTQ_CONFIG"); /* the loader reads it; nothing else in the table has env */
        devnull = fopen("/dev/null", "w");
        FUZZ_CHECK(devnull != NULL);
    }
    if (size == 0)
        return 0;

    fcfg cfg;
    aq_err err;
    aq_status st;
    memset(&cfg, 0, sizeof(cfg));
    aq_err_clear(&err);
    if ((data[0] & 1) == 0) {
        st = aq_config_load(opts, &cfg, 0, NULL, NULL, &err); /* the defaults */
        FUZZ_CHECK_ERR(st == AQ_OK, &err);
        st = aq_config_load_text(opts, &cfg, (const char *)data + 1, size - 1, "fuzz.conf", &err);
    } else {
        st = load_argv(&cfg, data + 1, size - 1, &err);
    }
    if (st == AQ_OK) {
        check_bounds(&cfg);
    } else {
        FUZZ_CHECK(st == AQ_CONFIG || st == AQ_NOMEM);
        FUZZ_CHECK(err.status == st);
        FUZZ_CHECK(strnlen(err.msg, sizeof(err.msg)) < sizeof(err.msg));
        /* The secret (its default is always set) is never echoed back,
         * unless the input itself spelled it out somewhere. */
        if (!memmem(data, size, SECRET_DEFAULT, strlen(SECRET_DEFAULT)))
            FUZZ_CHECK_ERR(strstr(err.msg, SECRET_DEFAULT) == NULL, &err);
    }
    aq_config_print(opts, &cfg, devnull);
    aq_config_free(opts, &cfg);
    return 0;
}
