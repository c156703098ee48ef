#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

typedef struct tcfg {
    char *name;
    char *secret;
    int64_t count;
    int64_t big;
    int64_t wait_ms;
    int64_t size;
    bool flag;
    bool other;
    double ratio;
    double offset;
    char *nodef;
} tcfg;

#define T tcfg
static const aq_option opts[] = {
    {"name", "AQTEST_NAME", AQ_OPT_STRING, "dflt", 0, 0, offsetof(T, name), "a name"},
    {"secret", "AQTEST_SECRET", AQ_OPT_SECRET, "", 0, 0, offsetof(T, secret), "a secret"},
    {"count", "AQTEST_COUNT", AQ_OPT_INT, "10", 1, 100, offsetof(T, count), "a count"},
    {"big", "AQTEST_BIG", AQ_OPT_INT, "0", 0, 0, offsetof(T, big), "unbounded"},
    {"wait", "AQTEST_WAIT", AQ_OPT_DURATION, "30s", 1, 3600000, offsetof(T, wait_ms), "a wait"},
    {"size", "AQTEST_SIZE", AQ_OPT_BYTES, "64KiB", 1, 1073741824, offsetof(T, size), "a size"},
    {"flag", "AQTEST_FLAG", AQ_OPT_BOOL, "false", 0, 0, offsetof(T, flag), "a flag"},
    {"other", "AQTEST_OTHER", AQ_OPT_BOOL, "true", 0, 0, offsetof(T, other), "another flag"},
    {"ratio", "AQTEST_RATIO", AQ_OPT_DOUBLE, "0.5", 0, 1, offsetof(T, ratio), "a ratio"},
    {"offset", "AQTEST_OFFSET", AQ_OPT_DOUBLE, "0", -10, 10, offsetof(T, offset), "an offset"},
    {"nodef", NULL, AQ_OPT_STRING, NULL, 0, 0, offsetof(T, nodef), "no default, no env"},
    AQ_OPTIONS_END,
};
#undef T

static const char *const test_envs[] = {
    "AQTEST_NAME", "AQTEST_SECRET", "AQTEST_COUNT", "AQTEST_BIG", "AQTEST_WAIT", "AQTEST_SIZE",
    "AQTEST_FLAG", "AQTEST_OTHER", "AQTEST_RATIO", "AQTEST_OFFSET", "AGENTQ_CONFIG",
};

typedef struct fixture {
    tcfg cfg;
    char path[64];
} fixture;

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof(test_envs) / sizeof(test_envs[0]); i++)
        unsetenv(test_envs[i]);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    clear_env();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    aq_config_free(opts, &fx->cfg);
    if (fx->path[0])
        unlink(fx->path);
    clear_env();
    free(fx);
    return 0;
}

static const char *write_file(fixture *fx, const char *text)
{
    snprintf(fx->path, sizeof(fx->path), "/tmp/aq_config_test_XXXXXX");
    int fd = mkstemp(fx->path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return fx->path;
}

static aq_status load(fixture *fx, aq_config_cli *cli, aq_err *err, int argc, char **argv)
{
    aq_err_clear(err);
    return aq_config_load(opts, &fx->cfg, argc, argv, cli, err);
}

#define LOAD(fx, cli, err, ...)                                                          \
    ({                                                                                   \
        char *argv_[] = {"prog", __VA_ARGS__};                                           \
        load((fx), (cli), (err), (int)(sizeof(argv_) / sizeof(argv_[0])), argv_);       \
    })

/* ---- parsers ---- */

static void test_parse_int(void **state)
{
    (void)state;
    int64_t v = -1;
    assert_int_equal(aq_parse_int("0", &v), AQ_OK);
    assert_int_equal(v, 0);
    assert_int_equal(aq_parse_int("-42", &v), AQ_OK);
    assert_int_equal(v, -42);
    assert_int_equal(aq_parse_int("9223372036854775807", &v), AQ_OK);
    assert_int_equal(v, INT64_MAX);
    v = 7;
    const char *bad[] = {"", "abc", "12x", "1.5", "1e3", "99999999999999999999", "5 ", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (aq_parse_int(bad[i], &v) != AQ_INVALID_ARG)
            fail_msg("aq_parse_int accepted '%s'", bad[i]);
    }
    assert_int_equal(aq_parse_int(NULL, &v), AQ_INVALID_ARG);
    assert_int_equal(v, 7);
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"0", 0},         {"250", 250},     {"250ms", 250},     {"30s", 30000},
        {"5m", 300000},   {"1h", 3600000},  {"1.5s", 1500},     {"2 s", 2000},
        {"10MS", 10},     {"2H", 7200000},  {"720h", 2592000000LL}, {"0.5m", 30000},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t v = -1;
        if (aq_parse_duration_ms(good[i].s, &v) != AQ_OK)
            fail_msg("duration '%s' rejected", good[i].s);
        if (v != good[i].ms)
            fail_msg("duration '%s' = %lld, want %lld", good[i].s, (long long)v,
                     (long long)good[i].ms);
    }
    const char *bad[] = {"", "s", "-1s", "1d", "10 minutes", "1sec", "inf", "nan", "1e30h",
                         "abc", "5ms5", "1s "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 123;
        if (aq_parse_duration_ms(bad[i], &v) != AQ_INVALID_ARG)
            fail_msg("duration '%s' accepted", bad[i]);
        assert_int_equal(v, 123);
    }
}

static void test_parse_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t n;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"64KiB", 65536},
        {"32MiB", 33554432},
        {"1GiB", 1073741824},
        {"10KB", 10000},
        {"10MB", 10000000},
        {"2GB", 2000000000},
        {"4K", 4096},
        {"8M", 8388608},
        {"1.5KiB", 1536},
        {"10GiB", 10737418240LL},
        {"64kib", 65536},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t v = -1;
        if (aq_parse_bytes(good[i].s, &v) != AQ_OK)
            fail_msg("bytes '%s' rejected", good[i].s);
        if (v != good[i].n)
            fail_msg("bytes '%s' = %lld, want %lld", good[i].s, (long long)v, (long long)good[i].n);
    }
    const char *bad[] = {"", "KiB", "-1", "1TiB", "1 2", "64 KiBs", "inf", "1e19", "lots"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 123;
        if (aq_parse_bytes(bad[i], &v) != AQ_INVALID_ARG)
            fail_msg("bytes '%s' accepted", bad[i]);
        assert_int_equal(v, 123);
    }
}

static void test_parse_bool(void **state)
{
    (void)state;
    const char *yes[] = {"1", "true", "TRUE", "yes", "Yes", "on", "ON"};
    const char *no[] = {"0", "false", "False", "no", "NO", "off", "Off"};
    const char *bad[] = {"", "2", "y", "n", "truee", "enabled", " true"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        bool b = false;
        assert_int_equal(aq_parse_bool(yes[i], &b), AQ_OK);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        bool b = true;
        assert_int_equal(aq_parse_bool(no[i], &b), AQ_OK);
        assert_false(b);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool b = true;
        if (aq_parse_bool(bad[i], &b) != AQ_INVALID_ARG)
            fail_msg("bool '%s' accepted", bad[i]);
        assert_true(b);
    }
}

/* ---- loading ---- */

static void test_defaults(void **state)
{
    fixture *fx = *state;
    aq_config_cli cli;
    aq_err err;
    assert_int_equal(load(fx, &cli, &err, 0, NULL), AQ_OK);
    assert_string_equal(fx->cfg.name, "dflt");
    assert_string_equal(fx->cfg.secret, "");
    assert_int_equal(fx->cfg.count, 10);
    assert_int_equal(fx->cfg.big, 0);
    assert_int_equal(fx->cfg.wait_ms, 30000);
    assert_int_equal(fx->cfg.size, 65536);
    assert_false(fx->cfg.flag);
    assert_true(fx->cfg.other);
    assert_true(fabs(fx->cfg.ratio - 0.5) < 1e-12);
    assert_true(fx->cfg.offset == 0.0);
    assert_null(fx->cfg.nodef);
    assert_false(cli.help);
    assert_false(cli.print_config);
    assert_int_equal(cli.argi, 1);
}

static void test_set_every_type(void **state)
{
    fixture *fx = *state;
    aq_err err;
    assert_int_equal(load(fx, NULL, &err, 0, NULL), AQ_OK);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "name", "n1", "test", &err), AQ_OK);
    assert_string_equal(fx->cfg.name, "n1");
    assert_int_equal(aq_config_set(opts, &fx->cfg, "name", "", "test", &err), AQ_OK);
    assert_string_equal(fx->cfg.name, "");
    assert_int_equal(aq_config_set(opts, &fx->cfg, "secret", "s3cr3t", "test", &err), AQ_OK);
    assert_string_equal(fx->cfg.secret, "s3cr3t");
    assert_int_equal(aq_config_set(opts, &fx->cfg, "count", "100", "test", &err), AQ_OK);
    assert_int_equal(fx->cfg.count, 100);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "big", "-5000000000", "test", &err), AQ_OK);
    assert_int_equal(fx->cfg.big, -5000000000LL);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "wait", "5m", "test", &err), AQ_OK);
    assert_int_equal(fx->cfg.wait_ms, 300000);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "wait", "250", "test", &err), AQ_OK);
    assert_int_equal(fx->cfg.wait_ms, 250);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "wait", "1h", "test", &err), AQ_OK);
    assert_int_equal(fx->cfg.wait_ms, 3600000);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "size", "32MiB", "test", &err), AQ_OK);
    assert_int_equal(fx->cfg.size, 33554432);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "size", "10MB", "test", &err), AQ_OK);
    assert_int_equal(fx->cfg.size, 10000000);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "flag", "yes", "test", &err), AQ_OK);
    assert_true(fx->cfg.flag);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "flag", "off", "test", &err), AQ_OK);
    assert_false(fx->cfg.flag);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "ratio", "1e-3", "test", &err), AQ_OK);
    assert_true(fabs(fx->cfg.ratio - 0.001) < 1e-12);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "offset", "-10", "test", &err), AQ_OK);
    assert_true(fx->cfg.offset == -10.0);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "nodef", "x", "test", &err), AQ_OK);
    assert_string_equal(fx->cfg.nodef, "x");
}

static void expect_config_error(aq_status st, const aq_err *err, const char *a, const char *b)
{
    assert_int_equal(st, AQ_CONFIG);
    assert_int_equal(err->status, AQ_CONFIG);
    if (a && !strstr(err->msg, a))
        fail_msg("error '%s' does not mention '%s'", err->msg, a);
    if (b && !strstr(err->msg, b))
        fail_msg("error '%s' does not mention '%s'", err->msg, b);
}

static void test_bad_values_name_option_and_source(void **state)
{
    fixture *fx = *state;
    aq_err err;
    assert_int_equal(load(fx, NULL, &err, 0, NULL), AQ_OK);
    static const struct {
        const char *name, *value;
    } bad[] = {
        {"count", "abc"}, {"count", "12x"},   {"count", "1.5"},   {"count", ""},
        {"wait", "soon"}, {"wait", "-1s"},    {"wait", "1d"},     {"size", "big"},
        {"size", "1TiB"}, {"flag", "maybe"},  {"flag", ""},       {"ratio", "half"},
        {"ratio", "nan"}, {"ratio", "inf"},   {"ratio", "0.5x"},  {"big", "1e3"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tcfg before = fx->cfg;
        aq_err_clear(&err);
        aq_status st = aq_config_set(opts, &fx->cfg, bad[i].name, bad[i].value, "SRC", &err);
        expect_config_error(st, &err, bad[i].name, "SRC");
        /* The value is not changed by a failed set. */
        assert_int_equal(fx->cfg.count, before.count);
        assert_int_equal(fx->cfg.wait_ms, before.wait_ms);
        assert_int_equal(fx->cfg.size, before.size);
        assert_int_equal(fx->cfg.flag, before.flag);
        assert_true(fx->cfg.ratio == before.ratio);
    }
    aq_status st = aq_config_set(opts, &fx->cfg, "count", "abc", "SRC", &err);
    expect_config_error(st, &err, "'abc' is not an integer", NULL);
    st = aq_config_set(opts, &fx->cfg, "wait", "soon", "SRC", &err);
    expect_config_error(st, &err, "duration", NULL);
}

static void test_bounds(void **state)
{
    fixture *fx = *state;
    aq_err err;
    assert_int_equal(load(fx, NULL, &err, 0, NULL), AQ_OK);
    /* Inclusive bounds. */
    assert_int_equal(aq_config_set(opts, &fx->cfg, "count", "1", "s", &err), AQ_OK);
    assert_int_equal(aq_config_set(opts, &fx->cfg, "count", "100", "s", &err), AQ_OK);
    static const struct {
        const char *name, *value;
    } out[] = {
        {"count", "0"},      {"count", "101"},    {"count", "-1"},   {"wait", "0"},
        {"wait", "1h1ms"},   {"wait", "2h"},      {"size", "0"},     {"size", "2GiB"},
        {"ratio", "1.0001"}, {"ratio", "-0.1"},   {"offset", "-11"}, {"offset", "10.5"},
    };
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
        aq_err_clear(&err);
        aq_status st = aq_config_set(opts, &fx->cfg, out[i].name, out[i].value, "file.conf:3", &err);
        if (strcmp(out[i].value, "1h1ms") == 0) { /* not a valid duration */
            expect_config_error(st, &err, "wait", "file.conf:3");
            continue;
        }
        expect_config_error(st, &err, out[i].name, "file.conf:3");
        if (!strstr(err.msg, "out of range"))
            fail_msg("%s=%s: '%s' does not say out of range", out[i].name, out[i].value, err.msg);
        assert_non_null(strstr(err.msg, out[i].value));
    }
    assert_int_equal(fx->cfg.count, 100);
    /* Unbounded (min == max == 0) accepts anything that parses. */
    assert_int_equal(aq_config_set(opts, &fx->cfg, "big", "-9223372036854775807", "s", &err), AQ_OK);
}

static void test_unknown_option(void **state)
{
    fixture *fx = *state;
    aq_err err;
    assert_int_equal(load(fx, NULL, &err, 0, NULL), AQ_OK);
    aq_status st = aq_config_set(opts, &fx->cfg, "nope", "1", "somewhere", &err);
    expect_config_error(st, &err, "nope", "somewhere");
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    st = LOAD(fx, NULL, &err, "--nope=1");
    expect_config_error(st, &err, "--nope", NULL);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    /* A prefix of a real name is not a match. */
    st = LOAD(fx, NULL, &err, "--coun=1");
    expect_config_error(st, &err, "coun", NULL);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    st = LOAD(fx, NULL, &err, "--countx", "1");
    expect_config_error(st, &err, "countx", NULL);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    /* A single-dash flag other than -h. */
    st = LOAD(fx, NULL, &err, "-x");
    expect_config_error(st, &err, "-x", NULL);
}

static void test_cli_forms(void **state)
{
    fixture *fx = *state;
    aq_config_cli cli;
    aq_err err;
    aq_status st = LOAD(fx, &cli, &err, "--count=42", "--wait", "2s", "--flag", "--other=false",
                        "--name", "from cli", "--size=1MiB", "--ratio", "0.25", "--offset=-3.5");
    assert_int_equal(st, AQ_OK);
    assert_int_equal(fx->cfg.count, 42);
    assert_int_equal(fx->cfg.wait_ms, 2000);
    assert_true(fx->cfg.flag);
    assert_false(fx->cfg.other);
    assert_string_equal(fx->cfg.name, "from cli");
    assert_int_equal(fx->cfg.size, 1048576);
    assert_true(fabs(fx->cfg.ratio - 0.25) < 1e-12);
    assert_true(fx->cfg.offset == -3.5);
    assert_int_equal(cli.argi, 12);
}

static void test_cli_value_with_equals_and_dash(void **state)
{
    fixture *fx = *state;
    aq_config_cli cli;
    aq_err err;
    /* Only the first '=' splits; a separate value may start with '-'. */
    aq_status st = LOAD(fx, &cli, &err, "--name=a=b", "--offset", "-2");
    assert_int_equal(st, AQ_OK);
    assert_string_equal(fx->cfg.name, "a=b");
    assert_true(fx->cfg.offset == -2.0);
    assert_int_equal(cli.argi, 4);
}

static void test_cli_missing_value(void **state)
{
    fixture *fx = *state;
    aq_err err;
    aq_status st = LOAD(fx, NULL, &err, "--count");
    expect_config_error(st, &err, "--count", "needs a value");
}

static void test_cli_bad_value_names_command_line(void **state)
{
    fixture *fx = *state;
    aq_err err;
    aq_status st = LOAD(fx, NULL, &err, "--count=500");
    expect_config_error(st, &err, "count", "command line");
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    st = LOAD(fx, NULL, &err, "--flag=perhaps");
    expect_config_error(st, &err, "flag", "command line");
    assert_non_null(strstr(err.msg, "perhaps"));
}

static void expect_args(char **argv, int argc, int argi, const char *const *want, int nwant)
{
    if (argc - argi != nwant)
        fail_msg("%d arguments after argi=%d, want %d", argc - argi, argi, nwant);
    for (int k = 0; k < nwant; k++)
        if (strcmp(argv[argi + k], want[k]) != 0)
            fail_msg("argument %d is '%s', want '%s'", k, argv[argi + k], want[k]);
}

static void test_positional_arguments(void **state)
{
    fixture *fx = *state;
    aq_config_cli cli;
    aq_err err;
    /* Options may follow arguments (GNU style); arguments keep their order
     * and end up behind the options, from cli.argi on. */
    char *argv[] = {"prog", "a", "--count=7", "b", "--name", "n", "--flag", "c"};
    int argc = 8;
    assert_int_equal(load(fx, &cli, &err, argc, argv), AQ_OK);
    assert_int_equal(fx->cfg.count, 7);
    assert_string_equal(fx->cfg.name, "n");
    assert_true(fx->cfg.flag);
    static const char *const want[] = {"a", "b", "c"};
    expect_args(argv, argc, cli.argi, want, 3);
    assert_int_equal(cli.argi, 5);

    /* A lone "-" is an argument (stdin), not an option. */
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    char *argv2[] = {"prog", "-", "--count=2"};
    assert_int_equal(load(fx, &cli, &err, 3, argv2), AQ_OK);
    assert_int_equal(fx->cfg.count, 2);
    static const char *const want2[] = {"-"};
    expect_args(argv2, 3, cli.argi, want2, 1);

    /* No arguments at all. */
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    char *argv3[] = {"prog", "--count=4"};
    assert_int_equal(load(fx, &cli, &err, 2, argv3), AQ_OK);
    assert_int_equal(cli.argi, 2);
}

/* `--` ends the options and stays in argv just before the arguments (like
 * getopt's optind), so no slot is left stale. */
static void test_double_dash(void **state)
{
    fixture *fx = *state;
    aq_config_cli cli;
    aq_err err;
    char *argv[] = {"prog", "--count=5", "--", "--count=6", "file"};
    assert_int_equal(load(fx, &cli, &err, 5, argv), AQ_OK);
    assert_int_equal(fx->cfg.count, 5); /* nothing after "--" is an option */
    static const char *const want[] = {"--count=6", "file"};
    expect_args(argv, 5, cli.argi, want, 2);

    /* "--" as the last argument leaves no arguments. */
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    char *argv2[] = {"prog", "--flag", "--"};
    assert_int_equal(load(fx, &cli, &err, 3, argv2), AQ_OK);
    assert_true(fx->cfg.flag);
    expect_args(argv2, 3, cli.argi, NULL, 0);
}

static void test_help_and_print_config_flags(void **state)
{
    fixture *fx = *state;
    aq_config_cli cli;
    aq_err err;
    aq_status st = LOAD(fx, &cli, &err, "--help");
    assert_int_equal(st, AQ_OK);
    assert_true(cli.help);
    assert_false(cli.print_config);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    st = LOAD(fx, &cli, &err, "-h", "--count=3");
    assert_int_equal(st, AQ_OK);
    assert_true(cli.help);
    assert_int_equal(fx->cfg.count, 3);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    st = LOAD(fx, &cli, &err, "--print-config", "--count=4");
    assert_int_equal(st, AQ_OK);
    assert_false(cli.help);
    assert_true(cli.print_config);
    assert_int_equal(fx->cfg.count, 4);
    assert_int_equal(cli.argi, 3);
}

/* ---- config file ---- */

static void test_config_file(void **state)
{
    fixture *fx = *state;
    aq_err err;
    const char *path = write_file(fx,
                                  "# a comment\n"
                                  "\n"
                                  "   \t\n"
                                  "  # an indented comment\n"
                                  "name = \"quoted value\"\n"
                                  "count=55\n"
                                  "  wait   =   90s  \n"
                                  "size = 2MiB\r\n"
                                  "flag = on\n"
                                  "secret = \"a=b\"\n"
                                  "ratio = 0.75\n"
                                  "nodef = \"\"\n"
                                  "offset = '1'\n" /* single quotes are not stripped */
                                  "big = 77"       /* no final newline */);
    aq_status st = LOAD(fx, NULL, &err, "--config", (char *)path);
    assert_int_equal(st, AQ_CONFIG); /* offset = '1' is not a number */
    assert_non_null(strstr(err.msg, "offset"));
    assert_non_null(strstr(err.msg, ":13")); /* names the line */
    assert_non_null(strstr(err.msg, path));
    /* Lines before the bad one were applied. */
    assert_string_equal(fx->cfg.name, "quoted value");
    assert_int_equal(fx->cfg.count, 55);
    assert_int_equal(fx->cfg.wait_ms, 90000);
    assert_int_equal(fx->cfg.size, 2097152);
    assert_true(fx->cfg.flag);
    assert_string_equal(fx->cfg.secret, "a=b");
    assert_true(fabs(fx->cfg.ratio - 0.75) < 1e-12);
    assert_string_equal(fx->cfg.nodef, "");
}

static void test_config_file_ok_and_equals_form(void **state)
{
    fixture *fx = *state;
    aq_config_cli cli;
    aq_err err;
    char arg[128];
    const char *path = write_file(fx, "count = 12\nbig = 77");
    snprintf(arg, sizeof(arg), "--config=%s", path);
    aq_status st = LOAD(fx, &cli, &err, arg, "rest");
    assert_int_equal(st, AQ_OK);
    assert_int_equal(fx->cfg.count, 12);
    assert_int_equal(fx->cfg.big, 77);
    assert_int_equal(cli.argi, 2);
}

static void test_config_file_from_env(void **state)
{
    fixture *fx = *state;
    aq_err err;
    const char *path = write_file(fx, "count = 13\n");
    setenv("AGENTQ_CONFIG", path, 1);
    assert_int_equal(load(fx, NULL, &err, 0, NULL), AQ_OK);
    assert_int_equal(fx->cfg.count, 13);
    /* An empty AGENTQ_CONFIG means no file. */
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    setenv("AGENTQ_CONFIG", "", 1);
    assert_int_equal(load(fx, NULL, &err, 0, NULL), AQ_OK);
    assert_int_equal(fx->cfg.count, 10);
}

static void test_config_file_errors(void **state)
{
    fixture *fx = *state;
    aq_err err;
    aq_status st;

    /* Missing '='. */
    const char *path = write_file(fx, "count = 1\njust words\n");
    st = LOAD(fx, NULL, &err, "--config", (char *)path);
    expect_config_error(st, &err, path, ":2");
    assert_non_null(strstr(err.msg, "name = value"));
    unlink(fx->path);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    /* Unknown option. */
    path = write_file(fx, "\n\nnot_an_option = 5\n");
    st = LOAD(fx, NULL, &err, "--config", (char *)path);
    expect_config_error(st, &err, "not_an_option", ":3");
    unlink(fx->path);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    /* Out of range names the file and line. */
    path = write_file(fx, "count = 1000\n");
    st = LOAD(fx, NULL, &err, "--config", (char *)path);
    expect_config_error(st, &err, "count", ":1");
    assert_non_null(strstr(err.msg, path));
    unlink(fx->path);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    /* A file that does not exist. */
    st = LOAD(fx, NULL, &err, "--config", "/nonexistent/aq.conf");
    expect_config_error(st, &err, "/nonexistent/aq.conf", NULL);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    /* A directory opens but cannot be read: an error, not an empty config. */
    st = LOAD(fx, NULL, &err, "--config", "/tmp");
    expect_config_error(st, &err, "/tmp", NULL);
}

static void test_config_file_long_lines(void **state)
{
    fixture *fx = *state;
    aq_err err;
    aq_status st;
    /* name = <value> in exactly 4094 bytes plus '\n' is accepted. */
    size_t line_len = 4094;
    char *text = malloc(line_len + 64);
    assert_non_null(text);
    memcpy(text, "name = ", 7);
    memset(text + 7, 'v', line_len - 7);
    text[line_len] = '\n';
    strcpy(text + line_len + 1, "count = 9\n");
    const char *path = write_file(fx, text);
    st = LOAD(fx, NULL, &err, "--config", (char *)path);
    assert_int_equal(st, AQ_OK);
    assert_int_equal(strlen(fx->cfg.name), line_len - 7);
    assert_int_equal(fx->cfg.count, 9);
    unlink(fx->path);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    free(text);

    /* One that does not fit in the line buffer is an error, not a split line. */
    text = malloc(10000);
    assert_non_null(text);
    memcpy(text, "name = ", 7);
    memset(text + 7, 'w', 9000);
    strcpy(text + 9007, "\ncount = 9\n");
    path = write_file(fx, text);
    st = LOAD(fx, NULL, &err, "--config", (char *)path);
    expect_config_error(st, &err, path, "longer than");
    free(text);
}

/* ---- precedence ---- */

static void test_precedence(void **state)
{
    fixture *fx = *state;
    aq_err err;
    const char *path = write_file(fx, "count = 20\nwait = 20s\nsize = 20KiB\nname = file\n");
    setenv("AQTEST_WAIT", "30ms", 1);
    setenv("AQTEST_SIZE", "30KiB", 1);
    setenv("AQTEST_NAME", "env", 1);
    setenv("AQTEST_FLAG", "yes", 1);
    aq_status st = LOAD(fx, NULL, &err, "--config", (char *)path, "--size=40KiB");
    assert_int_equal(st, AQ_OK);
    assert_int_equal(fx->cfg.count, 20);      /* file over default */
    assert_int_equal(fx->cfg.wait_ms, 30);    /* env over file */
    assert_int_equal(fx->cfg.size, 40960);    /* command line over env */
    assert_string_equal(fx->cfg.name, "env");
    assert_true(fx->cfg.flag);                /* env over default */
    assert_true(fabs(fx->cfg.ratio - 0.5) < 1e-12); /* default */
}

static void test_env_bad_value_names_env_var(void **state)
{
    fixture *fx = *state;
    aq_err err;
    setenv("AQTEST_COUNT", "lots", 1);
    aq_status st = load(fx, NULL, &err, 0, NULL);
    expect_config_error(st, &err, "count", "AQTEST_COUNT");
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    setenv("AQTEST_COUNT", "0", 1);
    st = load(fx, NULL, &err, 0, NULL);
    expect_config_error(st, &err, "AQTEST_COUNT", "out of range");
}

/* `--config FILE` may follow a `--name value` pair or an argument. */
static void test_config_after_separate_value(void **state)
{
    fixture *fx = *state;
    aq_err err;
    const char *path = write_file(fx, "big = 99\n");
    aq_config_cli cli;
    aq_status st = LOAD(fx, &cli, &err, "--count", "5", "arg", "--config", (char *)path);
    assert_int_equal(st, AQ_OK);
    assert_int_equal(fx->cfg.count, 5);
    assert_int_equal(fx->cfg.big, 99);
    assert_int_equal(cli.argi, 5);
}

/* A trailing `--config` without a file name is an error, like any option
 * missing its value. */
static void test_config_flag_without_value(void **state)
{
    fixture *fx = *state;
    aq_config_cli cli = {0};
    aq_err err;
    aq_status st = LOAD(fx, &cli, &err, "--count=5", "--config");
    expect_config_error(st, &err, "config", "needs a value");
}

/* ---- printing ---- */

static char *print_to_string(const tcfg *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    aq_config_print(opts, cfg, f);
    fclose(f);
    return buf;
}

static void test_print_config_redacts_secrets(void **state)
{
    fixture *fx = *state;
    aq_err err;
    setenv("AQTEST_SECRET", "sk-ant-VERYSECRET", 1);
    assert_int_equal(LOAD(fx, NULL, &err, "--flag", "--wait=90s"), AQ_OK);
    assert_string_equal(fx->cfg.secret, "sk-ant-VERYSECRET");
    char *out = print_to_string(&fx->cfg);
    assert_null(strstr(out, "VERYSECRET"));
    assert_non_null(strstr(out, "secret = <redacted>\n"));
    assert_non_null(strstr(out, "name = dflt\n"));
    assert_non_null(strstr(out, "count = 10\n"));
    assert_non_null(strstr(out, "wait = 90000ms\n"));
    assert_non_null(strstr(out, "size = 65536\n"));
    assert_non_null(strstr(out, "flag = true\n"));
    assert_non_null(strstr(out, "other = true\n"));
    assert_non_null(strstr(out, "ratio = 0.5\n"));
    assert_non_null(strstr(out, "nodef = \n"));
    free(out);

    /* An empty secret prints as empty (so "not set" is visible). */
    free(fx->cfg.secret);
    fx->cfg.secret = NULL;
    out = print_to_string(&fx->cfg);
    assert_non_null(strstr(out, "secret = \n"));
    free(out);
}

static void test_secret_never_in_errors(void **state)
{
    fixture *fx = *state;
    aq_err err;
    /* A misspelt secret option on the command line: only the name is echoed. */
    aq_status st = LOAD(fx, NULL, &err, "--secrett=sk-ant-VERYSECRET");
    assert_int_equal(st, AQ_CONFIG);
    assert_null(strstr(err.msg, "VERYSECRET"));
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    /* Or in a file. */
    const char *path = write_file(fx, "secrett = sk-ant-VERYSECRET\n");
    st = LOAD(fx, NULL, &err, "--config", (char *)path);
    assert_int_equal(st, AQ_CONFIG);
    assert_null(strstr(err.msg, "VERYSECRET"));
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));

    /* A secret is any string, so it cannot be malformed; a secret set from
     * every source never appears in the help text either. */
    setenv("AQTEST_SECRET", "sk-ant-VERYSECRET", 1);
    assert_int_equal(load(fx, NULL, &err, 0, NULL), AQ_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    aq_config_print_help(opts, f);
    fclose(f);
    assert_null(strstr(buf, "VERYSECRET"));
    free(buf);
}

static void test_print_help(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    aq_config_print_help(opts, f);
    fclose(f);
    for (const aq_option *o = opts; o->name; o++) {
        char want[64];
        snprintf(want, sizeof(want), "--%s", o->name);
        if (!strstr(buf, want))
            fail_msg("help does not list %s", want);
        if (o->env && !strstr(buf, o->env))
            fail_msg("help does not list %s", o->env);
    }
    assert_non_null(strstr(buf, "range [1, 100]"));
    assert_non_null(strstr(buf, "default 30s"));
    assert_non_null(strstr(buf, "--config FILE"));
    assert_non_null(strstr(buf, "--print-config"));
    free(buf);
}

static void test_free_and_reload(void **state)
{
    fixture *fx = *state;
    aq_err err;
    assert_int_equal(LOAD(fx, NULL, &err, "--name=x", "--nodef=y", "--secret=z"), AQ_OK);
    /* Setting a string twice frees the first copy (ASan checks). */
    assert_int_equal(aq_config_set(opts, &fx->cfg, "name", "again", "t", &err), AQ_OK);
    aq_config_free(opts, &fx->cfg);
    assert_null(fx->cfg.name);
    assert_null(fx->cfg.secret);
    assert_null(fx->cfg.nodef);
    aq_config_free(opts, &fx->cfg); /* twice is harmless */
}

/* ---- config text from memory (the fuzzer's entry point) ---- */

static void test_config_load_text(void **state)
{
    fixture *fx = *state;
    aq_err err;
    static const char text[] = "# comment\ncount = 21\nname = \"from text\"\nsize=1KiB";
    assert_int_equal(aq_config_load_text(opts, &fx->cfg, text, sizeof(text) - 1, "mem", &err),
                     AQ_OK);
    assert_int_equal(fx->cfg.count, 21);
    assert_string_equal(fx->cfg.name, "from text");
    assert_int_equal(fx->cfg.size, 1024);
    /* Only the text: no defaults were applied. */
    assert_int_equal(fx->cfg.wait_ms, 0);
    /* Empty text sets nothing. */
    assert_int_equal(aq_config_load_text(opts, &fx->cfg, "", 0, "mem", &err), AQ_OK);
    /* Errors name the text and the line, as for a file; bytes past len are not read. */
    static const char bad[] = "count = 5\njust words\ncount = 7";
    aq_status st = aq_config_load_text(opts, &fx->cfg, bad, 21, "mem", &err);
    expect_config_error(st, &err, "mem:2", "name = value");
    assert_int_equal(fx->cfg.count, 5);
}

/* ---- a NUL byte in a line ---- */

static void test_config_line_with_nul(void **state)
{
    fixture *fx = *state;
    aq_err err;
    /* Once reported as "line longer than 4094 bytes": fgets stopped at the NUL. */
    static const char text[] = "count = 5\nname = a\0b\ncount = 7\n";
    aq_status st = aq_config_load_text(opts, &fx->cfg, text, sizeof(text) - 1, "mem", &err);
    expect_config_error(st, &err, "mem:2: line 2 contains a NUL byte", NULL);
    assert_null(strstr(err.msg, "longer"));
    assert_int_equal(fx->cfg.count, 5);
    /* In a comment too, and on a last line without '\n'. */
    static const char comment[] = "# a\0b\n";
    st = aq_config_load_text(opts, &fx->cfg, comment, sizeof(comment) - 1, "mem", &err);
    expect_config_error(st, &err, "mem:1: line 1 contains a NUL byte", NULL);
    static const char last[] = "count = 8\ncount = 9\0";
    st = aq_config_load_text(opts, &fx->cfg, last, sizeof(last) - 1, "mem", &err);
    expect_config_error(st, &err, "mem:2: line 2 contains a NUL byte", NULL);
    /* A long line is still a long line, and one without NUL at the end of
     * the text without '\n' is read. */
    static const char nonl[] = "count = 12";
    assert_int_equal(aq_config_load_text(opts, &fx->cfg, nonl, sizeof(nonl) - 1, "mem", &err),
                     AQ_OK);
    assert_int_equal(fx->cfg.count, 12);
}

/* ---- unknown options: a hint for a typo ---- */

static void test_unknown_option_hint(void **state)
{
    fixture *fx = *state;
    aq_err err;
    aq_status st = LOAD(fx, NULL, &err, "--cuont=5");
    expect_config_error(st, &err, "unknown option '--cuont' (did you mean '--count'?)", NULL);
    st = LOAD(fx, NULL, &err, "--ratoi=0.1");
    expect_config_error(st, &err, "did you mean '--ratio'?", NULL);
    st = LOAD(fx, NULL, &err, "--zzzzzz=1");
    expect_config_error(st, &err, "unknown option '--zzzzzz' (see --help)", NULL);
    const char *path = write_file(fx, "count = 3\nsecrte = x\n");
    st = LOAD(fx, NULL, &err, "--config", (char *)path);
    expect_config_error(st, &err, ":2; did you mean 'secret'?)", "unknown option 'secrte' (from");
}

/* ---- a config file shared with other programs ---- */

typedef struct other_cfg {
    int64_t workers;
    char *name;
} other_cfg;

static const aq_option other_opts[] = {
    {"workers", NULL, AQ_OPT_INT, "1", 1, 10, offsetof(other_cfg, workers), "another program's"},
    {"name", NULL, AQ_OPT_STRING, "", 0, 0, offsetof(other_cfg, name), "a name both have"},
    AQ_OPTIONS_END,
};

static void test_shared_config_file(void **state)
{
    fixture *fx = *state;
    aq_err err;
    const aq_option *const others[] = {other_opts, NULL};
    const char *path = write_file(fx, "workers = 99\ncount = 4\nname = both\n");
    char *argv[] = {"prog", "--config", (char *)path};
    /* Alone, the other program's option is unknown. */
    aq_status st = aq_config_load(opts, &fx->cfg, 3, argv, NULL, &err);
    expect_config_error(st, &err, "unknown option 'workers'", ":1");
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    /* Shared: skipped (not even checked: 99 is out of the other's range),
     * the rest applied. */
    assert_int_equal(aq_config_load_shared(opts, others, &fx->cfg, 3, argv, NULL, &err), AQ_OK);
    assert_int_equal(fx->cfg.count, 4);
    assert_string_equal(fx->cfg.name, "both");
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    /* Not on the command line: that is this program's. */
    char *argv2[] = {"prog", "--workers=2"};
    st = aq_config_load_shared(opts, others, &fx->cfg, 2, argv2, NULL, &err);
    expect_config_error(st, &err, "unknown option '--workers'", NULL);
    aq_config_free(opts, &fx->cfg);
    memset(&fx->cfg, 0, sizeof(fx->cfg));
    /* A name nobody has is refused, with a hint from every table. */
    unlink(fx->path);
    path = write_file(fx, "workres = 2\n");
    char *argv3[] = {"prog", "--config", (char *)path};
    st = aq_config_load_shared(opts, others, &fx->cfg, 3, argv3, NULL, &err);
    expect_config_error(st, &err, "unknown option 'workres'", "did you mean 'workers'?");
}

/* ---- text with a syntax ---- */

typedef struct syn_cfg {
    char *servers;
    char *endpoint;
    char *subject;
    char *stream;
    char *bucket;
    char *file;
    int64_t n;
} syn_cfg;

#define SY syn_cfg
static const aq_option syn_opts[] = {
    {"servers", NULL, AQ_OPT_NATS_URLS, "nats://127.0.0.1:4222", 0, 0, offsetof(SY, servers), "s"},
    {"endpoint", NULL, AQ_OPT_HTTP_URL, "https://api.example.com", 0, 0, offsetof(SY, endpoint), "e"},
    {"subject", NULL, AQ_OPT_SUBJECT, "a.b", 0, 0, offsetof(SY, subject), "p"},
    {"stream", NULL, AQ_OPT_JS_NAME, "S", 0, 0, offsetof(SY, stream), "n"},
    {"bucket", NULL, AQ_OPT_BUCKET, "b", 0, 0, offsetof(SY, bucket), "b"},
    {"file", NULL, AQ_OPT_FILE, "", 0, 0, offsetof(SY, file), "f"},
    {"n", NULL, AQ_OPT_INT, "1", 1, 5, offsetof(SY, n), "n"},
    AQ_OPTIONS_END,
};
#undef SY

static void test_text_types(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value, *why; /* why NULL: accepted */
    } cases[] = {
        {"servers", "nats://h:4222,tls://u:p@h2:4443,h3", NULL},
        {"servers", "garbage://::::", "the scheme must be nats:// or tls://"},
        {"servers", "", "names no server"},
        {"servers", "nats://h:65536", "Port number"},
        {"endpoint", "http://127.0.0.1:8080/base", NULL},
        {"endpoint", "https://a b", "space"},
        {"endpoint", "gopher://x", "must start with http:// or https://"},
        {"endpoint", "https://", "is not an http(s) URL"},
        {"subject", "x.y-z.w_1", NULL},
        {"subject", "x.*", "not a subject prefix"},
        {"subject", "x.", "not a subject prefix"},
        {"stream", "Stream-1_x", NULL},
        {"stream", "a.b", "not a JetStream name"},
        {"stream", "a\\b", "not a JetStream name"},
        {"bucket", "b-1_2", NULL},
        {"bucket", "b.1", "not a bucket name"},
        {"bucket", "", "not a bucket name"},
        {"file", "/no/such/file", NULL}, /* checked at start: aq_config_check_files */
        {"file", "a\x01", "control character"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        syn_cfg c;
        aq_err err;
        memset(&c, 0, sizeof(c));
        assert_int_equal(aq_config_load(syn_opts, &c, 0, NULL, NULL, &err), AQ_OK);
        aq_status st = aq_config_set(syn_opts, &c, cases[i].name, cases[i].value, "test", &err);
        if (cases[i].why ? (st != AQ_CONFIG || !strstr(err.msg, cases[i].why) ||
                            !strstr(err.msg, "(from test)") || !strstr(err.msg, cases[i].name))
                         : st != AQ_OK)
            fail_msg("%s = '%s': %s", cases[i].name, cases[i].value, st ? err.msg : "accepted");
        aq_config_free(syn_opts, &c);
    }
}

static void test_config_check(void **state)
{
    (void)state;
    syn_cfg c;
    aq_err err;
    memset(&c, 0, sizeof(c));
    assert_int_equal(aq_config_load(syn_opts, &c, 0, NULL, NULL, &err), AQ_OK);
    assert_int_equal(aq_config_check(syn_opts, &c, &err), AQ_OK);
    /* Values put in the struct by hand are checked as the loader would. */
    free(c.bucket);
    c.bucket = strdup("no.dots");
    assert_int_equal(aq_config_check(syn_opts, &c, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "bucket"));
    free(c.bucket);
    c.bucket = strdup("ok");
    c.n = 6;
    assert_int_equal(aq_config_check(syn_opts, &c, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "n (from the configuration): 6 is out of range"));
    c.n = 5;
    free(c.subject);
    c.subject = NULL;
    assert_int_equal(aq_config_check(syn_opts, &c, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "subject is not set"));
    c.subject = strdup("s");
    assert_int_equal(aq_config_check(syn_opts, &c, &err), AQ_OK);
    /* Files: only aq_config_check_files looks at the file system. */
    assert_int_equal(aq_config_check_files(syn_opts, &c, &err), AQ_OK); /* "" = none */
    assert_int_equal(aq_config_set(syn_opts, &c, "file", "/no/such/file", "test", &err), AQ_OK);
    assert_int_equal(aq_config_check(syn_opts, &c, &err), AQ_OK);
    assert_int_equal(aq_config_check_files(syn_opts, &c, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "file: cannot read '/no/such/file': No such file"));
    assert_int_equal(aq_config_set(syn_opts, &c, "file", "/tmp", "test", &err), AQ_OK);
    assert_int_equal(aq_config_check_files(syn_opts, &c, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_int_equal(aq_config_set(syn_opts, &c, "file", "/etc/hostname", "test", &err), AQ_OK);
    assert_int_equal(aq_config_check_files(syn_opts, &c, &err), AQ_OK);
    /* URL credentials are redacted in print and in errors. */
    assert_int_equal(aq_config_set(syn_opts, &c, "servers", "nats://u:pwSECRET@h:1", "t", &err),
                     AQ_OK);
    assert_int_equal(aq_config_set(syn_opts, &c, "endpoint", "https://u:pwSECRET@h", "t", &err),
                     AQ_CONFIG);
    assert_null(strstr(err.msg, "pwSECRET"));
    assert_int_equal(aq_config_set(syn_opts, &c, "servers", "nats://u:pwSECRET@h:0", "t", &err),
                     AQ_CONFIG);
    assert_null(strstr(err.msg, "pwSECRET"));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    aq_config_print(syn_opts, &c, f);
    fclose(f);
    assert_null(strstr(buf, "pwSECRET"));
    assert_non_null(strstr(buf, "servers = nats://***@h:1\n"));
    free(buf);
    aq_config_free(syn_opts, &c);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_bytes),
        cmocka_unit_test(test_parse_bool),
        TEST(test_defaults),
        TEST(test_set_every_type),
        TEST(test_bad_values_name_option_and_source),
        TEST(test_bounds),
        TEST(test_unknown_option),
        TEST(test_cli_forms),
        TEST(test_cli_value_with_equals_and_dash),
        TEST(test_cli_missing_value),
        TEST(test_cli_bad_value_names_command_line),
        TEST(test_positional_arguments),
        TEST(test_double_dash),
        TEST(test_help_and_print_config_flags),
        TEST(test_config_file),
        TEST(test_config_file_ok_and_equals_form),
        TEST(test_config_file_from_env),
        TEST(test_config_file_errors),
        TEST(test_config_file_long_lines),
        TEST(test_precedence),
        TEST(test_env_bad_value_names_env_var),
        TEST(test_config_after_separate_value),
        TEST(test_config_flag_without_value),
        TEST(test_print_config_redacts_secrets),
        TEST(test_secret_never_in_errors),
        TEST(test_print_help),
        TEST(test_free_and_reload),
        TEST(test_config_load_text),
        TEST(test_config_line_with_nul),
        TEST(test_unknown_option_hint),
        TEST(test_shared_config_file),
        TEST(test_text_types),
        TEST(test_config_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
