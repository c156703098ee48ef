#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_snapshot.h"
#include "pipeline/worker_config.h"

static void clear_env(void)
{
    for (const aq_option *o = aq_worker_options; o->name; o++)
        if (o->env)
            unsetenv(o->env);
    unsetenv("AGENTQ_CONFIG");
}

static int setup(void **state)
{
    aq_worker_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return -1;
    clear_env();
    *state = cfg;
    return 0;
}

static int teardown(void **state)
{
    aq_worker_config *cfg = *state;
    aq_config_free(aq_worker_options, cfg);
    free(cfg);
    clear_env();
    return 0;
}

static aq_status load_args(aq_worker_config *cfg, aq_err *err, int argc, char **argv)
{
    aq_config_cli cli;
    aq_config_free(aq_worker_options, cfg);
    memset(cfg, 0, sizeof(*cfg));
    aq_err_clear(err);
    return aq_config_load(aq_worker_options, cfg, argc, argv, &cli, err);
}

#define LOAD(cfg, err, ...)                                                       \
    ({                                                                            \
        char *argv_[] = {"agentq-worker", __VA_ARGS__};                           \
        load_args((cfg), (err), (int)(sizeof(argv_) / sizeof(argv_[0])), argv_); \
    })

static char *print_to_string(const aq_worker_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    aq_config_print(aq_worker_options, cfg, f);
    fclose(f);
    return buf;
}

static void test_table_is_well_formed(void **state)
{
    (void)state;
    size_t n = 0;
    for (const aq_option *o = aq_worker_options; o->name; o++, n++) {
        assert_non_null(o->help);
        assert_true(strlen(o->help) > 0);
        assert_true(o->min <= o->max);
        for (const aq_option *p = aq_worker_options; p < o; p++) {
            if (strcmp(p->name, o->name) == 0)
                fail_msg("option %s listed twice", o->name);
            if (p->env && o->env && strcmp(p->env, o->env) == 0)
                fail_msg("env %s used twice", o->env);
        }
        /* Options that hold credentials are secrets. */
        if (strcmp(o->name, "api_key") == 0 || strcmp(o->name, "nats_password") == 0 ||
            strcmp(o->name, "nats_token") == 0)
            if (o->type != AQ_OPT_SECRET)
                fail_msg("option %s should be a secret", o->name);
    }
    assert_true(n > 30);
}

static void test_defaults(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    assert_int_equal(load_args(cfg, &err, 0, NULL), AQ_OK);
    assert_int_equal(cfg->concurrency, 256);
    assert_int_equal(cfg->queue.ack_wait_ms, 30000);
    assert_int_equal(cfg->queue.results_ttl_ms, 3600000);
    assert_string_equal(cfg->queue.task_stream, "AGENTQ_TASKS");
    assert_string_equal(cfg->queue.consumer, "agentq-workers");
    assert_string_equal(cfg->queue.results_bucket, "agentq-results");
    assert_string_equal(cfg->queue.dlq_stream, "AGENTQ_DLQ");
    assert_string_equal(cfg->queue.task_subjects, "agentq.tasks");
    assert_string_equal(cfg->queue.dlq_subjects, "agentq.dlq");
    assert_string_equal(cfg->queue.nats_url, "nats://127.0.0.1:4222");
    assert_int_equal(cfg->queue.nats_timeout_ms, 5000);
    assert_int_equal(cfg->queue.dedup_window_ms, 120000);
    assert_int_equal(cfg->queue.max_msg_size, 4 << 20);
    assert_int_equal(cfg->queue.stream_max_bytes, 10LL << 30);
    assert_int_equal(cfg->queue.dlq_max_age_ms, 720LL * 3600000);
    assert_int_equal(cfg->queue.replicas, 1);
    assert_string_equal(cfg->api_key, "");
    assert_string_equal(cfg->base_url, "https://api.anthropic.com");
    assert_string_equal(cfg->anthropic_version, "2023-06-01");
    assert_string_equal(cfg->default_model, "claude-sonnet-4-5");
    assert_non_null(strstr(cfg->allowed_models, "claude-sonnet-4-5"));
    assert_int_equal(cfg->default_max_tokens, 1024);
    assert_int_equal(cfg->llm_connect_timeout_ms, 10000);
    assert_int_equal(cfg->llm_timeout_ms, 600000);
    assert_int_equal(cfg->max_response_bytes, 8 << 20);
    assert_int_equal(cfg->max_prompt_bytes, 1 << 20);
    assert_int_equal(cfg->max_tokens_cap, 64000);
    assert_int_equal(cfg->fetch_batch, 256);
    assert_int_equal(cfg->fetch_wait_ms, 500);
    assert_int_equal(cfg->max_attempts, 5);
    assert_int_equal(cfg->retry_base_ms, 1000);
    assert_int_equal(cfg->retry_max_ms, 60000);
    assert_int_equal(cfg->store_timeout_ms, 10000);
    assert_int_equal(cfg->shutdown_grace_ms, 30000);
    assert_string_equal(cfg->log_level, "info");
    assert_string_equal(cfg->status_subject, "agentq.status"); /* agentq status listens there */
    assert_int_equal(cfg->status_interval_ms, 5000);
}

static void test_validate_needs_api_key(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    assert_int_equal(load_args(cfg, &err, 0, NULL), AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "ANTHROPIC_API_KEY"));

    setenv("ANTHROPIC_API_KEY", "sk-ant-test", 1);
    assert_int_equal(load_args(cfg, &err, 0, NULL), AQ_OK);
    assert_string_equal(cfg->api_key, "sk-ant-test");
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
}

/* A bad value is refused when set, naming the option and the source; and
 * by the validation too when it was put in the struct some other way. */
static void expect_refused(aq_worker_config *cfg, const char *arg, const char *opt,
                           const char *why)
{
    aq_err err;
    if (LOAD(cfg, &err, "--api_key=k", (char *)arg) != AQ_CONFIG || !strstr(err.msg, opt) ||
        !strstr(err.msg, "(from command line)") || (why && !strstr(err.msg, why)))
        fail_msg("%s: error '%s'", arg, err.msg);
}

static void test_validate_base_url(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    const char *bad[] = {"ftp://api.anthropic.com", "api.anthropic.com", "", "https:/x",
                         "HTTPS//x", "https://api.anthropic.com/v1 x", "http://", "http://:80",
                         "https://x:99999", "https://x/?q=1", "https://x/#f",
                         "https://user:pw@proxy", "http://x\ty"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char arg[128];
        snprintf(arg, sizeof(arg), "--base_url=%s", bad[i]);
        expect_refused(cfg, arg, "base_url", "is not an http(s) URL");
    }
    /* Credentials are not echoed. */
    assert_int_equal(LOAD(cfg, &err, "--base_url=https://user:pwSECRET@proxy"), AQ_CONFIG);
    assert_null(strstr(err.msg, "pwSECRET"));
    assert_non_null(strstr(err.msg, "https://***@proxy"));
    /* Put there without the loader: the validation refuses it too. */
    assert_int_equal(LOAD(cfg, &err, "--api_key=k"), AQ_OK);
    free(cfg->base_url);
    cfg->base_url = strdup("http://a b");
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "base_url"));
    const char *good[] = {"http://127.0.0.1:8080", "https://proxy.internal/anthropic",
                          "HTTPS://API.anthropic.com", "http://[::1]:8080/"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char arg[128];
        snprintf(arg, sizeof(arg), "--base_url=%s", good[i]);
        assert_int_equal(LOAD(cfg, &err, "--api_key=k", arg), AQ_OK);
        assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
    }
}

static void test_validate_nats_url(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    static const struct {
        const char *url, *why;
    } bad[] = {
        {"", "names no server"},
        {" , ,", "names no server"},
        {"garbage://::::", "the scheme must be nats:// or tls://"},
        {"http://127.0.0.1:4222", "the scheme must be nats:// or tls://"},
        {"ws://127.0.0.1:8080", "WebSocket"},
        {"wss://nats.example.com", "WebSocket"},
        {"nats://127.0.0.1:99999", "Port number"},
        {"nats://127.0.0.1:0", "port 0"},
        {"nats://127.0.0.1:http", "Port number"},
        {"nats://:4222", "No host"},
        {"nats://a b:4222", "space"},
        {"nats://h:4222/path", "no path"},
        {"nats://h:4222?x=1", "no path, query"},
        {"nats://127.0.0.1:4222,nats://h:70000", "'nats://h:70000'"},
        {"nats://u:p/wSECRET@h:4222", "before the '@'"},
        {"nats://h:4222/a@b", "before the '@'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char arg[256];
        snprintf(arg, sizeof(arg), "--nats_url=%s", bad[i].url);
        expect_refused(cfg, arg, "nats_url", bad[i].why);
    }
    /* 33 servers: over the cap. */
    char many[33 * 20 + 16] = "--nats_url=";
    for (int i = 0; i < 33; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%snats://h%d:4222",
                 i ? "," : "", i);
    expect_refused(cfg, many, "nats_url", "more than 32");
    /* Credentials in a refused URL are not echoed. */
    assert_int_equal(LOAD(cfg, &err, "--nats_url=nats://u:pwSECRET@h:99999"), AQ_CONFIG);
    assert_null(strstr(err.msg, "pwSECRET"));
    assert_int_equal(LOAD(cfg, &err, "--nats_url=h,nats://u:p/wSECRET@h:4222"), AQ_CONFIG);
    assert_null(strstr(err.msg, "SECRET"));
    assert_non_null(strstr(err.msg, "'nats://***@h:4222'"));
    const char *good[] = {"nats://127.0.0.1:4222", "tls://nats.example.com:4443",
                          "127.0.0.1:4222", "nats-0", "NATS://u:p@h:1, tls://t@h2",
                          "nats://[::1]:4222", "nats://h:4222/"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char arg[128];
        snprintf(arg, sizeof(arg), "--nats_url=%s", good[i]);
        if (LOAD(cfg, &err, "--api_key=k", arg) != AQ_OK)
            fail_msg("%s: %s", good[i], err.msg);
        assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
    }
}

static void test_validate_names(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    expect_refused(cfg, "--task_stream=a.b", "task_stream", "not a JetStream name");
    expect_refused(cfg, "--dlq_stream=", "dlq_stream", "not a JetStream name");
    expect_refused(cfg, "--advisory_stream=a/b", "advisory_stream", "not a JetStream name");
    expect_refused(cfg, "--consumer=my workers", "consumer", "not a JetStream name");
    expect_refused(cfg, "--backstop_consumer=b>", "backstop_consumer", "not a JetStream name");
    expect_refused(cfg, "--results_bucket=res.v2", "results_bucket", "not a bucket name");
    expect_refused(cfg, "--cache_bucket=cache@1", "cache_bucket", "not a bucket name");
    expect_refused(cfg, "--budget_bucket=", "budget_bucket", "not a bucket name");
    expect_refused(cfg, "--task_subjects=agentq.*", "task_subjects", "not a subject prefix");
    expect_refused(cfg, "--dlq_subjects=agentq..dlq", "dlq_subjects", "not a subject prefix");
    expect_refused(cfg, "--ca_file=/tmp/a\nb", "ca_file", "control character");
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--task_stream=Tasks-2", "--consumer=w_1",
                          "--results_bucket=res-2", "--task_subjects=t.x-y"),
                     AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
    /* Put there without the loader. */
    free(cfg->queue.results_bucket);
    cfg->queue.results_bucket = strdup("a b");
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "results_bucket"));
}

static void test_validate_cross_checks(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    static const struct {
        const char *a, *b, *why;
    } cases[] = {
        {"--nats_tls_cert=/etc/hostname", "--api_key=k", "nats_tls_cert is set but nats_tls_key"},
        {"--nats_tls_key=/etc/hostname", "--api_key=k", "nats_tls_key is set but nats_tls_cert"},
        {"--nats_password=pw", "--api_key=k", "nats_password is set but nats_user is not"},
        {"--task_stream=S", "--dlq_stream=S", "task_stream and dlq_stream are the same"},
        {"--advisory_stream=AGENTQ_DLQ", "--api_key=k", "dlq_stream and advisory_stream"},
        {"--dlq_subjects=agentq.tasks", "--api_key=k", "overlap"},
        {"--task_subjects=agentq", "--api_key=k", "overlap"},
        {"--status_subject=agentq.tasks.status", "--api_key=k", "status_subject"},
        {"--status_subject=agentq.dlq", "--api_key=k", "status_subject"},
        {"--log_level=verbose", "--api_key=k", "log_level: 'verbose'"},
        {"--metrics_bind=0.0.0.0:9090", "--api_key=k", "metrics_bind"},
        {"--metrics_bind=-x", "--api_key=k", "metrics_bind"},
        {"--anthropic_version=", "--api_key=k", "anthropic_version"},
        {"--anthropic_version=2023 06", "--api_key=k", "anthropic_version"},
        {"--api_key=k1,k 2", "--concurrency=1", "api_key: key 2 of 2"},
        {"--allowed_models=claude haiku", "--api_key=k", "allowed_models: 'claude haiku'"},
        {"--worker_name=a\tb", "--api_key=k", "worker_name"},
        {"--nats_token=t\r\nPUB x", "--api_key=k", "nats_token has a control character"},
        {"--nats_user=u\n", "--nats_password=p", "nats_user has a control character"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (LOAD(cfg, &err, (char *)cases[i].a, (char *)cases[i].b) != AQ_OK)
            fail_msg("%s %s: not loaded: %s", cases[i].a, cases[i].b, err.msg);
        aq_err_clear(&err);
        /* What --print-config checks, and the start. */
        if (aq_worker_config_check(cfg, &err) != AQ_CONFIG || !strstr(err.msg, cases[i].why))
            fail_msg("%s %s: check says '%s'", cases[i].a, cases[i].b, err.msg);
        assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    }
    /* The key is never echoed. */
    assert_int_equal(LOAD(cfg, &err, "--api_key=sk-SECRET,sk-ant\r\nx"), AQ_OK);
    assert_int_equal(aq_worker_config_check(cfg, &err), AQ_CONFIG);
    assert_null(strstr(err.msg, "SECRET"));
    assert_null(strstr(err.msg, "sk-ant"));
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--nats_user=u", "--nats_password=p",
                          "--metrics_bind=::1", "--worker_name=w-1.eu"),
                     AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--metrics_bind=localhost"), AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
}

/* Files are read at start: the validation checks them, --print-config's
 * check does not (a config file may be checked where they do not exist). */
static void test_validate_files(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    const char *opts[] = {"--ca_file", "--nats_creds", "--nats_tls_ca"};
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        char arg[128];
        snprintf(arg, sizeof(arg), "%s=/nonexistent/file.pem", opts[i]);
        assert_int_equal(LOAD(cfg, &err, "--api_key=k", arg), AQ_OK);
        assert_int_equal(aq_worker_config_check(cfg, &err), AQ_OK);
        assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
        if (!strstr(err.msg, opts[i] + 2) || !strstr(err.msg, "No such file"))
            fail_msg("%s: '%s'", arg, err.msg);
    }
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--ca_file=/tmp"), AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--nats_tls_cert=/etc/hostname",
                          "--nats_tls_key=/nonexistent/key.pem"),
                     AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "nats_tls_key"));
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--ca_file=/etc/hostname"), AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
}

static void test_validate_budgets(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    /* Defaults: no budgets, defer, the default bucket. */
    assert_int_equal(LOAD(cfg, &err, "--api_key=k"), AQ_OK);
    assert_string_equal(cfg->budgets, "");
    assert_string_equal(cfg->budget_action, "defer");
    assert_string_equal(cfg->budget_bucket, "agentq-budgets");
    assert_int_equal(cfg->budget_flush_ms, 2000);
    assert_int_equal(cfg->budget_idle_return_ms, 10000);
    assert_int_equal(cfg->budget_kv_timeout_ms, 2000);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);

    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--budgets=acme=25,globex=5;acme/summarize=2",
                          "--budget_action=fail"),
                     AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);

    /* A bad budgets string names the option and the entry. */
    const char *bad[][2] = {
        {"--budgets=acme=25,acme=3", "given twice"},
        {"--budgets=acme", "missing \"=\""},
        {"--budgets=acme=-1", "entry 1"},
        {"--budgets=acme=1.1234567", "entry 1"},
        {"--budgets=acme=5,,globex=1", "entry 2"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(LOAD(cfg, &err, "--api_key=k", (char *)bad[i][0]), AQ_OK);
        aq_err_clear(&err);
        assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
        if (strncmp(err.msg, "budgets: ", 9) != 0 || !strstr(err.msg, bad[i][1]))
            fail_msg("%s: error '%s'", bad[i][0], err.msg);
    }
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--budget_action=drop"), AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_string_equal(err.msg, "budget_action: 'drop' is not defer or fail");
}

static void test_validate_retry_and_tokens(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--retry_base=2m", "--retry_max=1m"), AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "retry_base"));
    assert_non_null(strstr(err.msg, "retry_max"));
    /* Equal is fine. */
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--retry_base=1m", "--retry_max=60s"), AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);

    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--default_max_tokens=5000",
                          "--max_tokens_cap=4096"),
                     AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "default_max_tokens"));
    assert_non_null(strstr(err.msg, "max_tokens_cap"));
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--default_max_tokens=4096",
                          "--max_tokens_cap=4096"),
                     AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
}

static void test_validate_status_subject(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    const char *bad[] = {"agentq.*", "agentq.>", "agentq..status", ".agentq", "agentq.",
                         "agent q", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char arg[128];
        snprintf(arg, sizeof(arg), "--status_subject=%s", bad[i]);
        expect_refused(cfg, arg, "status_subject", "is not a subject prefix");
    }
    /* Put there without the loader: the validation refuses it too. */
    assert_int_equal(LOAD(cfg, &err, "--api_key=k"), AQ_OK);
    free(cfg->status_subject);
    cfg->status_subject = strdup("agentq.>");
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "status_subject"));
    char long_prefix[AQ_FLEET_PREFIX_MAX + 32] = "--status_subject=";
    memset(long_prefix + strlen(long_prefix), 'a', AQ_FLEET_PREFIX_MAX + 1);
    expect_refused(cfg, long_prefix, "status_subject", "at most 200 bytes");
    assert_int_equal(LOAD(cfg, &err, "--api_key=k", "--status_subject=team-a.agentq_status"), AQ_OK);
    assert_int_equal(aq_worker_config_validate(cfg, &err), AQ_OK);
    /* The interval's bounds: 1 s to 1 h. */
    assert_int_equal(LOAD(cfg, &err, "--status_interval=999ms"), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "status_interval"));
    assert_int_equal(LOAD(cfg, &err, "--status_interval=61m"), AQ_CONFIG);
    assert_int_equal(LOAD(cfg, &err, "--status_interval=1h"), AQ_OK);
    assert_int_equal(cfg->status_interval_ms, 3600000);
    setenv("AGENTQ_STATUS_INTERVAL", "2s", 1);
    setenv("AGENTQ_STATUS_SUBJECT", "ops.status", 1);
    assert_int_equal(load_args(cfg, &err, 0, NULL), AQ_OK);
    assert_int_equal(cfg->status_interval_ms, 2000);
    assert_string_equal(cfg->status_subject, "ops.status");
}

static void test_bad_values_are_specific(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    static const struct {
        const char *arg, *opt, *why;
    } cases[] = {
        {"--concurrency=0", "concurrency", "out of range"},
        {"--concurrency=100001", "concurrency", "out of range"},
        {"--concurrency=many", "concurrency", "not an integer"},
        {"--ack_wait=banana", "ack_wait", "duration"},
        {"--ack_wait=500ms", "ack_wait", "out of range"},
        {"--results_ttl=0s", "results_ttl", "out of range"},
        {"--max_response_bytes=lots", "max_response_bytes", "size"},
        {"--max_response_bytes=2GiB", "max_response_bytes", "out of range"},
        {"--replicas=7", "replicas", "out of range"},
        {"--max_deliver=1", "max_deliver", "out of range"},
        {"--llm_timeout=1h1s", "llm_timeout", "duration"},
        {"--fetch_wait=5ms", "fetch_wait", "out of range"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_status st = LOAD(cfg, &err, (char *)cases[i].arg);
        assert_int_equal(st, AQ_CONFIG);
        if (!strstr(err.msg, cases[i].opt) || !strstr(err.msg, cases[i].why) ||
            !strstr(err.msg, "command line"))
            fail_msg("%s: unspecific error '%s'", cases[i].arg, err.msg);
    }
    /* The same from the environment names the variable. */
    setenv("AGENTQ_CONCURRENCY", "0", 1);
    assert_int_equal(load_args(cfg, &err, 0, NULL), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "AGENTQ_CONCURRENCY"));
    unsetenv("AGENTQ_CONCURRENCY");
    setenv("AGENTQ_ACK_WAIT", "banana", 1);
    assert_int_equal(load_args(cfg, &err, 0, NULL), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "ack_wait"));
    assert_non_null(strstr(err.msg, "AGENTQ_ACK_WAIT"));
}

static void test_env_and_cli(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    setenv("AGENTQ_CONCURRENCY", "32", 1);
    setenv("AGENTQ_ACK_WAIT", "2m", 1);
    setenv("AGENTQ_TASK_STREAM", "OTHER_TASKS", 1);
    assert_int_equal(LOAD(cfg, &err, "--concurrency", "64"), AQ_OK);
    assert_int_equal(cfg->concurrency, 64);
    assert_int_equal(cfg->queue.ack_wait_ms, 120000);
    assert_string_equal(cfg->queue.task_stream, "OTHER_TASKS");
}

static void test_print_config_redacts(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    setenv("ANTHROPIC_API_KEY", "sk-ant-api03-SECRETKEY", 1);
    setenv("AGENTQ_NATS_PASSWORD", "natsSECRETpw", 1);
    assert_int_equal(LOAD(cfg, &err, "--nats_token=tokSECRET"), AQ_OK);
    char *out = print_to_string(cfg);
    assert_null(strstr(out, "SECRET"));
    assert_non_null(strstr(out, "api_key = <redacted>\n"));
    assert_non_null(strstr(out, "nats_password = <redacted>\n"));
    assert_non_null(strstr(out, "nats_token = <redacted>\n"));
    assert_non_null(strstr(out, "concurrency = 256\n"));
    assert_non_null(strstr(out, "ack_wait = 30000ms\n"));
    assert_non_null(strstr(out, "task_stream = AGENTQ_TASKS\n"));
    free(out);
}

/* nats_url is AQ_OPT_NATS_URLS: `--print-config` redacts credentials in it. */
static void test_print_config_redacts_url_credentials(void **state)
{
    aq_worker_config *cfg = *state;
    aq_err err;
    setenv("AGENTQ_NATS_URL", "nats://worker:urlSECRET@nats-0:4222", 1);
    assert_int_equal(load_args(cfg, &err, 0, NULL), AQ_OK);
    char *out = print_to_string(cfg);
    assert_non_null(strstr(out, "nats-0:4222"));
    int leaked = strstr(out, "urlSECRET") != NULL;
    free(out);
    assert_false(leaked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_well_formed),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_needs_api_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_base_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_nats_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_cross_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_retry_and_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_budgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_status_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values_are_specific, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_and_cli, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_config_redacts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_config_redacts_url_credentials, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
