/* `agentq dev`: everything on one machine with embedded defaults. Starts
 * nats-server with JetStream in a temporary directory, the simulator (unless
 * ANTHROPIC_API_KEY is set), creates the JetStream objects, runs a worker,
 * submits sample tasks and shows their results as they arrive. Ctrl-C stops
 * everything it started and removes its temporary files. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_config.h"
#include "budget/budget_config.h"
#include "cache/cache_config.h"
#include "cli.h"
#include "core/buf.h"
#include "core/clock.h"
#include "queue/queue_setup.h"
#include "task/task_codec.h"

#define START_TIMEOUT_MS 15000
#define CHILD_STOP_TIMEOUT_MS 40000 /* longer than the worker's grace */
#define OUTPUT_PREVIEW 72

typedef struct dev_config {
    cli_init_config init; /* the queue objects and buckets, as `agentq init` makes them */
    int64_t tasks;
    bool once;
    int64_t nats_port;
    int64_t concurrency;
    char *sim_latency;
    int64_t timeout_ms;
} dev_config;

#define D dev_config
const aq_option cli_dev_options[] = {
    AQ_QUEUE_OPTIONS(D, init.queue),
    AQ_CACHE_BUCKET_OPTIONS(D, init.cache_bucket, init.cache_ttl_ms),
    AQ_BUDGET_BUCKET_OPTIONS(D, init.budget_bucket, init.budget_ttl_ms),
    AQ_AGENT_RUNS_OPTIONS(D, init.runs_bucket, init.runs_ttl_ms, init.runs_max_bytes),
    AQ_AGENT_SESSION_OPTIONS(D, init.session_bucket, init.session_ttl_ms, init.session_max_bytes),
    {"tasks", NULL, AQ_OPT_INT, "12", 0, 100000, offsetof(D, tasks), "sample tasks to submit"},
    {"once", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(D, once),
     "stop once the sample results are in (default: run until Ctrl-C)"},
    {"nats_port", NULL, AQ_OPT_INT, "4222", 0, 65535, offsetof(D, nats_port),
     "port for the local nats-server (0: any free port)"},
    {"concurrency", NULL, AQ_OPT_INT, "64", 1, 100000, offsetof(D, concurrency),
     "the worker's concurrency"},
    {"sim_latency", NULL, AQ_OPT_STRING, "lognormal:300:1500", 0, 0, offsetof(D, sim_latency),
     "simulated latency: lognormal:MEDIAN_MS:P99_MS or fixed:MS"},
    {"timeout", NULL, AQ_OPT_DURATION, "2m", 1000, 86400000, offsetof(D, timeout_ms),
     "with --once: give up after this long"},
    AQ_OPTIONS_END,
};

static const struct {
    const char *type, *prompt;
    bool agent; /* with the get_weather tool: an agent run */
} samples[] = {
    {"summarize", "Summarize in one sentence: JetStream keeps the backlog durable while workers come and go.", false},
    {"classify", "Classify the sentiment (positive/negative/neutral): 'The deploy went smoothly.'", false},
    {"translate", "Translate to French: 'The queue is empty.'", false},
    {"extract", "Extract the dates from: 'Invoices due 2026-12-01 and 2027-01-15.'", false},
    {"summarize", "Summarize: retries use exponential backoff with jitter and honour retry-after.", false},
    {"classify", "Is this a bug report or a feature request? 'Add a --json flag to status.'", false},
    /* An agent run: its get_weather calls are answered by the example tool
     * service (examples/tool-service-c) when it is built beside us; without
     * it they come back no_responders, an is_error result the model sees. */
    {"agent", "What is the weather in Paris? Use the get_weather tool.", true},
};

#define SAMPLE_TOOL_SCHEMA \
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct dev_env {
    char dir[PATH_MAX];
    char bin_dir[PATH_MAX / 2]; /* room to append our binaries' names */
    pid_t nats, sim, worker, tools;
    char nats_url[64];
    char base_url[64];
} dev_env;

/* Our own binaries sit beside us (installed) or in sibling build dirs. */
static int find_binary(const dev_env *env, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", env->bin_dir, name);
    if (access(out, X_OK) == 0)
        return 0;
    snprintf(out, n, "%s/../%s/%s", env->bin_dir, name, name);
    return access(out, X_OK) == 0 ? 0 : -1;
}

static int find_in_path(const char *name, char *out, size_t n)
{
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s:/usr/sbin:/usr/local/sbin", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, n, "%s/%s", d, name);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

/* fork + exec with stdout/stderr to `log`; the child dies with us. It gets
 * its own process group, so a Ctrl-C at the terminal reaches only us and we
 * stop the children in order (worker first, nats-server last). */
static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    execv(argv[0], argv);
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Poll `file` until it holds `needle`; copy the text after it into `out`. */
static int wait_for_text(const char *file, const char *needle, pid_t child, char *out, size_t n)
{
    int64_t end = aq_mono_ms() + START_TIMEOUT_MS;
    char buf[65536];
    while (aq_mono_ms() < end && !g_stop) {
        FILE *f = fopen(file, "r");
        if (f) {
            size_t len = fread(buf, 1, sizeof(buf) - 1, f);
            fclose(f);
            buf[len] = '\0';
            char *hit = strstr(buf, needle);
            if (hit) {
                if (out)
                    snprintf(out, n, "%s", hit + strlen(needle));
                return 0;
            }
        }
        if (waitpid(child, NULL, WNOHANG) == child)
            return -1;
        sleep_ms(50);
    }
    return -1;
}

static void stop_child(pid_t *pid, const char *name)
{
    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    int64_t end = aq_mono_ms() + CHILD_STOP_TIMEOUT_MS;
    while (waitpid(*pid, NULL, WNOHANG) == 0) {
        if (aq_mono_ms() > end) {
            fprintf(stderr, "agentq dev: %s did not stop; killing it\n", name);
            kill(*pid, SIGKILL);
            waitpid(*pid, NULL, 0);
            break;
        }
        sleep_ms(50);
    }
    *pid = 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int start_nats(dev_env *env, const dev_config *cfg)
{
    char server[PATH_MAX], conf[PATH_MAX + 16], log[PATH_MAX + 16], port[32];
    if (find_in_path("nats-server", server, sizeof(server)) != 0) {
        cli_error("dev", "nats-server not found (Debian: apt-get install nats-server)");
        return -1;
    }
    snprintf(conf, sizeof(conf), "%s/nats.conf", env->dir);
    snprintf(log, sizeof(log), "%s/nats.log", env->dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        /* The configured port, else any free one. */
        long p = attempt == 0 && cfg->nats_port ? (long)cfg->nats_port : -1;
        FILE *f = fopen(conf, "w");
        if (!f)
            return -1;
        /* max_payload above the stream's max_msg_size: the stream's limit is
         * the one that refuses an oversized task, with a clear error. */
        fprintf(f, "listen: 127.0.0.1:%ld\nmax_payload: 8MB\njetstream { store_dir: \"%s/js\" }\n",
                p, env->dir);
        fclose(f);
        char *argv[] = {server, "-c", conf, NULL};
        env->nats = spawn(argv, log);
        if (wait_for_text(log, "Listening for client connections on 127.0.0.1:", env->nats, port,
                          sizeof(port)) == 0 &&
            wait_for_text(log, "Server is ready", env->nats, NULL, 0) == 0) {
            snprintf(env->nats_url, sizeof(env->nats_url), "nats://127.0.0.1:%ld",
                     strtol(port, NULL, 10));
            return 0;
        }
        stop_child(&env->nats, "nats-server");
        if (attempt == 0 && cfg->nats_port)
            fprintf(stderr, "agentq dev: port %lld is taken; using a free port\n",
                    (long long)cfg->nats_port);
    }
    cli_error("dev", "nats-server did not start (see %s)", log);
    return -1;
}

/* sim_latency: lognormal:MEDIAN_MS:P99_MS or fixed:MS, whole milliseconds
 * (the median above 0), nothing after. */
static bool parse_sim_latency(const char *s, bool *fixed, long *a, long *b)
{
    char tail;
    *fixed = false;
    if (sscanf(s, "lognormal:%ld:%ld%c", a, b, &tail) == 2 && *a > 0 && *b >= *a)
        return true;
    *fixed = true;
    return sscanf(s, "fixed:%ld%c", a, &tail) == 1 && *a >= 0;
}

static int start_sim(dev_env *env, const dev_config *cfg)
{
    char sim[PATH_MAX], log[PATH_MAX + 16], port_file[PATH_MAX + 16], port_opt[PATH_MAX + 32];
    char lat_dist[64] = "--latency_dist=lognormal", lat_a[64], lat_b[64];
    long a = 300, b = 1500;
    if (find_binary(env, "agentq-sim", sim, sizeof(sim)) != 0) {
        cli_error("dev", "agentq-sim not found next to agentq");
        return -1;
    }
    bool fixed;
    if (!parse_sim_latency(cfg->sim_latency, &fixed, &a, &b)) {
        cli_error("dev", "sim_latency '%s' is not lognormal:MEDIAN:P99 or fixed:MS",
                  cfg->sim_latency);
        return -1;
    }
    if (!fixed) {
        snprintf(lat_a, sizeof(lat_a), "--latency_median_ms=%ld", a);
        snprintf(lat_b, sizeof(lat_b), "--latency_p99_ms=%ld", b);
    } else {
        snprintf(lat_dist, sizeof(lat_dist), "--latency_dist=fixed");
        snprintf(lat_a, sizeof(lat_a), "--latency_ms=%ld", a);
        snprintf(lat_b, sizeof(lat_b), "--log_level=info");
    }
    snprintf(log, sizeof(log), "%s/sim.log", env->dir);
    snprintf(port_file, sizeof(port_file), "%s/sim.port", env->dir);
    snprintf(port_opt, sizeof(port_opt), "--port_file=%s", port_file);
    char *argv[] = {sim, "--listen=127.0.0.1:0", port_opt, lat_dist, lat_a, lat_b, NULL};
    env->sim = spawn(argv, log);
    char port[32];
    int64_t end = aq_mono_ms() + START_TIMEOUT_MS;
    while (aq_mono_ms() < end && !g_stop) {
        FILE *f = fopen(port_file, "r");
        if (f && fgets(port, sizeof(port), f) && strtol(port, NULL, 10) > 0) {
            fclose(f);
            snprintf(env->base_url, sizeof(env->base_url), "http://127.0.0.1:%ld",
                     strtol(port, NULL, 10));
            return 0;
        }
        if (f)
            fclose(f);
        if (waitpid(env->sim, NULL, WNOHANG) == env->sim)
            break;
        sleep_ms(50);
    }
    cli_error("dev", "agentq-sim did not start (see %s)", log);
    return -1;
}

static int start_worker(dev_env *env, const dev_config *cfg, bool simulated)
{
    char worker[PATH_MAX], log[PATH_MAX + 16], conc[64];
    if (find_binary(env, "agentq-worker", worker, sizeof(worker)) != 0) {
        cli_error("dev", "agentq-worker not found next to agentq");
        return -1;
    }
    snprintf(log, sizeof(log), "%s/worker.log", env->dir);
    snprintf(conc, sizeof(conc), "--concurrency=%lld", (long long)cfg->concurrency);
    setenv("AGENTQ_NATS_URL", env->nats_url, 1);
    setenv("AGENTQ_BASE_URL", env->base_url, 1);
    setenv("AGENTQ_CACHE_BUCKET", cfg->init.cache_bucket, 1);
    setenv("AGENTQ_BUDGET_BUCKET", cfg->init.budget_bucket, 1);
    if (simulated)
        setenv("ANTHROPIC_API_KEY", "sim-dev-key", 1);
    /* With a real key, keep the demo cheap. */
    /* Simple work goes to the cheaper model, as an operator would set it up. */
    char *argv[] = {worker, conc, "--worker_name=dev-worker", "--shutdown_grace=10s",
                    "--routes=cheap: type=classify|extract, max_tokens<=512 -> claude-haiku-4-5",
                    simulated ? "--log_level=info" : "--default_model=claude-haiku-4-5", NULL};
    env->worker = spawn(argv, log);
    if (wait_for_text(log, "\"worker started\"", env->worker, NULL, 0) != 0) {
        cli_error("dev", "the worker did not start (see %s)", log);
        return -1;
    }
    return 0;
}

/* The example tool service (get_weather, lookup_order on agentq.tools.*):
 * beside us when installed, or in the build tree's examples/. Optional. */
static void start_tools(dev_env *env)
{
    static const char *const places[] = {"", "/../../examples/tool-service-c"};
    char bin[PATH_MAX], log[PATH_MAX + 16];
    bool found = false;
    for (size_t i = 0; i < sizeof(places) / sizeof(places[0]) && !found; i++) {
        snprintf(bin, sizeof(bin), "%s%s/agentq-example-tool-service", env->bin_dir, places[i]);
        found = access(bin, X_OK) == 0;
    }
    if (!found) {
        printf("agentq dev: no example tool service found: the agent sample's tool calls will "
               "find no responders\n");
        return;
    }
    snprintf(log, sizeof(log), "%s/tools.log", env->dir);
    char *argv[] = {bin, "--url", env->nats_url, NULL};
    env->tools = spawn(argv, log);
    if (env->tools <= 0 || wait_for_text(log, "ready", env->tools, NULL, 0) != 0) {
        printf("agentq dev: the example tool service did not start (see %s)\n", log);
        return;
    }
    printf("agentq dev: example tool service answering get_weather and lookup_order (agentq tools ls)\n");
}

static int submit_samples(jsCtx *js, const dev_config *cfg, char **ids, size_t n)
{
    aq_buf packed;
    aq_buf_init(&packed, 1 << 20);
    int rc = 0;
    /* A run stamp keeps ids unique across runs (the stream de-duplicates). */
    long long run = (long long)(aq_now_unix_ms() / 1000 % 1000000);
    for (size_t i = 0; i < n; i++) {
        const size_t k = i % (sizeof(samples) / sizeof(samples[0]));
        char id[64], subject[256];
        snprintf(id, sizeof(id), "dev-%06lld-%zu", run, i);
        Agentq__V1__Task t;
        agentq__v1__task__init(&t);
        t.id = id;
        t.type = (char *)samples[k].type;
        t.tenant = (char *)"dev";
        t.prompt = (char *)samples[k].prompt;
        t.max_tokens = 256;
        Agentq__V1__Tool tool, *tools[1] = {&tool};
        if (samples[k].agent) {
            agentq__v1__tool__init(&tool);
            tool.name = (char *)"get_weather";
            tool.description = (char *)"Current weather of a city";
            tool.input_schema_json = (char *)SAMPLE_TOOL_SCHEMA;
            t.tools = tools;
            t.n_tools = 1;
            t.max_steps = 4;
        }
        /* Deterministic, so repeated samples are answered by the response cache. */
        t.temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
        t.temperature = 0;
        t.created_unix_ms = aq_now_unix_ms();
        aq_err err;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        snprintf(subject, sizeof(subject), "%s.%s", cfg->init.queue.task_subjects, t.type);
        jsPubAck *pa = NULL;
        if (aq_task_pack(&t, &packed, &err) != AQ_OK ||
            js_Publish(&pa, js, subject, packed.data, (int)packed.len, &po, NULL) != NATS_OK) {
            cli_error("dev", "could not submit sample task %s", id);
            rc = -1;
            break;
        }
        jsPubAck_Destroy(pa);
        ids[i] = strdup(id);
    }
    aq_buf_free(&packed);
    return rc;
}

/* What the sample run showed, for its last line. */
typedef struct dev_tally {
    size_t completed, failed, cache_hits;
    uint64_t cost_micro_usd;
} dev_tally;

/* One line per result as it lands in the bucket. */
static void show_result(const kvEntry *e, dev_tally *tally)
{
    Agentq__V1__Result *r = NULL;
    if (aq_result_unpack(kvEntry_Value((kvEntry *)e), (size_t)kvEntry_ValueLen((kvEntry *)e), &r,
                         NULL) != AQ_OK)
        return;
    bool ok = r->status == AGENTQ__V1__STATUS__STATUS_COMPLETED;
    ok ? tally->completed++ : tally->failed++;
    tally->cache_hits += r->cache_hit;
    tally->cost_micro_usd += r->cost_micro_usd;
    char latency[32];
    if (r->cache_hit)
        snprintf(latency, sizeof(latency), "cached");
    else
        snprintf(latency, sizeof(latency), "%llu ms", (unsigned long long)r->llm_latency_ms);
    char preview[OUTPUT_PREVIEW + 4];
    const char *text = ok ? r->output : (r->error ? r->error->message : "");
    size_t len = strlen(text);
    snprintf(preview, sizeof(preview), "%.*s%s", OUTPUT_PREVIEW, text,
             len > OUTPUT_PREVIEW ? "..." : "");
    for (char *c = preview; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    printf("%s %-22s %-10s %-18s %8s  in %4u out %4u  $%.6f  %s\n", ok ? "ok  " : "FAIL", r->id,
           r->type, r->model, latency, r->usage ? r->usage->input_tokens : 0,
           r->usage ? r->usage->output_tokens : 0, (double)r->cost_micro_usd / 1e6, preview);
    if (r->steps > 0) /* an agent run */
        printf("     %-22s agent run: %u steps, %u tool calls (agentq run show %s)\n", "", r->steps,
               r->tool_calls, r->id);
    fflush(stdout);
    aq_result_free(r);
}

int cmd_dev(int argc, char **argv)
{
    dev_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    dev_env env;
    memset(&env, 0, sizeof(env));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    kvStore *kv = NULL;
    kvWatcher *w = NULL;
    char **ids = NULL;
    dev_tally tally = {0};
    aq_err err;
    int argi, rc = cli_parse(cli_dev_options, &cfg, &cfg.init.queue, argc, argv,
                             "agentq dev [--tasks N] [--once]", &argi);
    if (rc >= 0)
        goto out;
    bool fixed;
    long lat_a, lat_b;
    if (!parse_sim_latency(cfg.sim_latency, &fixed, &lat_a, &lat_b)) {
        cli_error("dev", "sim_latency '%s' is not lognormal:MEDIAN:P99 or fixed:MS (whole ms)",
                  cfg.sim_latency);
        rc = CLI_USAGE;
        goto out;
    }
    rc = CLI_ERROR;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        goto out;
    self[n] = '\0';
    snprintf(env.bin_dir, sizeof(env.bin_dir), "%s", dirname(self));
    snprintf(env.dir, sizeof(env.dir), "%s/agentq-dev.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(env.dir)) {
        cli_error("dev", "cannot create a temporary directory: %s", strerror(errno));
        goto out;
    }
    const char *real_key = getenv("ANTHROPIC_API_KEY");
    bool simulated = !real_key || !*real_key;

    printf("agentq dev: temporary directory %s\n", env.dir);
    if (start_nats(&env, &cfg) != 0)
        goto out;
    printf("agentq dev: nats-server with JetStream at %s\n", env.nats_url);
    if (simulated) {
        if (start_sim(&env, &cfg) != 0)
            goto out;
        printf("agentq dev: simulator at %s (set ANTHROPIC_API_KEY to use the real API)\n",
               env.base_url);
    } else {
        snprintf(env.base_url, sizeof(env.base_url), "https://api.anthropic.com");
        printf("agentq dev: ANTHROPIC_API_KEY is set: calling the real API (claude-haiku-4-5)\n");
    }

    free(cfg.init.queue.nats_url);
    cfg.init.queue.nats_url = strdup(env.nats_url);
    if (cli_connect(&cfg.init.queue, &nc, &js) != CLI_OK)
        goto out;
    if (cli_init_objects(js, &cfg.init, NULL, &err) != AQ_OK) {
        cli_error("dev", "init: %s", err.msg);
        goto out;
    }
    printf("agentq dev: created stream %s, consumer %s, dead-letter stream %s, buckets %s, %s, "
           "%s, %s and %s\n",
           cfg.init.queue.task_stream, cfg.init.queue.consumer, cfg.init.queue.dlq_stream,
           cfg.init.queue.results_bucket, cfg.init.cache_bucket, cfg.init.budget_bucket,
           cfg.init.runs_bucket, cfg.init.session_bucket);
    start_tools(&env);
    if (start_worker(&env, &cfg, simulated) != 0)
        goto out;
    printf("agentq dev: worker running (log: %s/worker.log)\n\n", env.dir);

    /* Watch first, then submit: no result can slip past. */
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    wo.IgnoreDeletes = true;
    if (js_KeyValue(&kv, js, cfg.init.queue.results_bucket) != NATS_OK ||
        kvStore_WatchAll(&w, kv, &wo) != NATS_OK) {
        cli_error("dev", "cannot watch the results bucket");
        goto out;
    }
    size_t want = (size_t)cfg.tasks;
    ids = calloc(want ? want : 1, sizeof(*ids));
    if (!ids || submit_samples(js, &cfg, ids, want) != 0)
        goto out;
    printf("submitted %zu sample tasks; results as they arrive:\n", want);
    printf("%-4s %-22s %-10s %-18s %8s  %-16s  %-9s  %s\n", "", "id", "type", "model", "latency",
           "tokens", "cost", "output");

    int64_t deadline = aq_mono_ms() + cfg.timeout_ms;
    bool announced = false;
    while (!g_stop) {
        if (!announced && tally.completed + tally.failed >= want) {
            announced = true;
            printf("\nall %zu sample results are in (%zu completed, %zu failed; %zu from the "
                   "response cache; cost $%.6f).\n",
                   want, tally.completed, tally.failed, tally.cache_hits,
                   (double)tally.cost_micro_usd / 1e6);
            if (cfg.once)
                break;
            printf("agentq dev keeps running. In another terminal:\n"
                   "  export AGENTQ_NATS_URL=%s\n"
                   "  agentq submit --prompt 'Hello' --wait\n"
                   "  agentq stats\n"
                   "Press Ctrl-C to stop everything and remove %s.\n\n",
                   env.nats_url, env.dir);
            fflush(stdout);
        }
        if (cfg.once && aq_mono_ms() > deadline) {
            cli_error("dev", "timed out: %zu of %zu results", tally.completed + tally.failed, want);
            break;
        }
        if (waitpid(env.worker, NULL, WNOHANG) == env.worker) {
            env.worker = 0;
            cli_error("dev", "the worker exited (see %s/worker.log)", env.dir);
            break;
        }
        kvEntry *e = NULL;
        if (kvWatcher_Next(&e, w, 250) == NATS_OK && e) {
            show_result(e, &tally);
            kvEntry_Destroy(e);
        }
    }
    if (announced)
        rc = tally.failed ? CLI_TASK_FAILED : CLI_OK;
    else if (g_stop)
        rc = CLI_OK; /* Ctrl-C before the samples finished: a normal stop */
    else
        rc = CLI_NOT_DONE;
out:
    if (env.dir[0])
        printf("\nagentq dev: stopping\n");
    kvWatcher_Destroy(w);
    kvStore_Destroy(kv);
    aq_queue_disconnect(nc, js);
    stop_child(&env.worker, "agentq-worker");
    stop_child(&env.tools, "the example tool service");
    stop_child(&env.sim, "agentq-sim");
    stop_child(&env.nats, "nats-server");
    if (env.dir[0])
        nftw(env.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; ids && i < (size_t)cfg.tasks; i++)
        free(ids[i]);
    free(ids);
    aq_config_free(cli_dev_options, &cfg);
    return rc;
}
