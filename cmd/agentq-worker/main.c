/* agentq-worker: pulls tasks from JetStream, calls the Messages API, stores
 * results. Everything interesting is in internal/pipeline. */
#include <event2/event.h>
#include <event2/thread.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "fleet/fleet_reporter.h"
#include "llm/llm_client.h"
#include "metrics/metrics.h"
#include "metrics/metrics_http.h"
#include "pipeline/pipeline.h"
#include "pipeline/worker_config.h"
#include "pipeline/worker_metrics.h"
#include "pipeline/worker_status.h"
#include "queue/queue_conn.h"
#include "queue/queue_probe.h"

#ifndef AQ_WORKER_VERSION
#define AQ_WORKER_VERSION "dev"
#endif

enum { EXIT_USAGE = 2, EXIT_START = 3 };

/* The queue probe's cadence: the gauges are scraped every 15-60 s, and the
 * connection itself is watched every AQ_QUEUE_PROBE_CONN_CHECK_MS. */
#define PROBE_INTERVAL_MS 5000
#define PROBE_TIMEOUT_MAX_MS 2000

/* What /readyz and the signal handler share (all on the loop thread). */
typedef struct worker {
    aq_pipeline *p;
    aq_queue_probe *probe;
    bool stopping;
} worker;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    worker *w = arg;
    (void)what;
    aq_log(AQ_LOG_INFO, "signal received", AQ_LF_I("signal", sig));
    w->stopping = true; /* not ready from now on: take no new traffic */
    aq_pipeline_shutdown(w->p);
}

/* Ready: connected to NATS, with the consumer there, and not stopping.
 * The probe's own connection stands for the pipeline's (same servers, same
 * credentials) until the pipeline says so itself. */
static bool worker_ready(void *arg, const char **why)
{
    const worker *w = arg;
    aq_queue_probe_values v;
    if (w->stopping) {
        *why = "shutting down";
        return false;
    }
    if (!w->p || !w->probe) {
        *why = "starting";
        return false;
    }
    aq_queue_probe_get(w->probe, &v);
    if (!v.connected) {
        *why = aq_queue_probe_state_text(AQ_PROBE_DISCONNECTED);
        return false;
    }
    if (v.state != AQ_PROBE_OK) {
        *why = aq_queue_probe_state_text(v.state);
        return false;
    }
    return true;
}

/* The name the pipeline records in results (the same default). */
static void worker_name(const aq_worker_config *cfg, char *out, size_t n)
{
    char host[64] = "worker";
    if (cfg->worker_name && *cfg->worker_name) {
        snprintf(out, n, "%s", cfg->worker_name);
        return;
    }
    gethostname(host, sizeof(host) - 1);
    snprintf(out, n, "%s-%d", host, (int)getpid());
}

/* The name in the status snapshots: the worker's, cut at a character
 * boundary to what a snapshot carries (hostname-pid may be longer). */
static void status_name(const char *name, char *out, size_t n)
{
    size_t len = strlen(name);
    if (len > AQ_FLEET_WORKER_MAX) {
        len = AQ_FLEET_WORKER_MAX;
        while (len > 0 && ((unsigned char)name[len] & 0xC0) == 0x80)
            len--;
    }
    snprintf(out, n, "%.*s", (int)len, name);
}

/* --print-metrics is handled before the configuration is loaded: it needs
 * no option, no connection, and must work with any environment. Options
 * end at "--". */
static bool wants_print_metrics(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--print-metrics") == 0)
            return true;
    }
    return false;
}

/* The probe connection's refusals (its own requests and the fleet status it
 * publishes), each with its subject; the pipeline's connection logs its own
 * events, disconnects included. */
static void on_probe_conn_event(void *arg, const char *what, const char *detail)
{
    (void)arg;
    if (strcmp(what, "error") == 0)
        aq_log(AQ_LOG_WARN, "nats connection", AQ_LF_S("connection", "probe"),
               AQ_LF_S("event", what), AQ_LF_S("detail", detail));
}

/* The probe gets a connection of its own: its JetStream API requests are
 * synchronous and must not queue behind the pipeline's traffic. */
static aq_status start_probe(const aq_worker_config *cfg, natsConnection **nc, jsCtx **js,
                             aq_queue_probe **out, aq_err *err)
{
    aq_queue_conn_opts co = {.name = "agentq-worker-probe", .on_event = on_probe_conn_event};
    aq_status st = aq_queue_connect(&cfg->queue, &co, nc, js, err);
    if (st != AQ_OK)
        return aq_err_prefix(err, "queue probe");
    aq_queue_probe_opts po = {
        .task_stream = cfg->queue.task_stream,
        .consumer = cfg->queue.consumer,
        .dlq_stream = cfg->queue.dlq_stream,
        .deferred_stream = cfg->queue.deferred_stream,
        .interval_ms = PROBE_INTERVAL_MS,
        .timeout_ms = cfg->queue.nats_timeout_ms < PROBE_TIMEOUT_MAX_MS ? cfg->queue.nats_timeout_ms
                                                                      : PROBE_TIMEOUT_MAX_MS,
    };
    return aq_queue_probe_new(*nc, *js, &po, out, err);
}

/* The snapshot's budget rows, from the budgets the pipeline keeps. */
static void status_budgets(const void *pipeline, aq_budget_each_fn row, void *arg)
{
    aq_pipeline_each_budget(pipeline, row, arg);
}

/* Fleet status: a snapshot on <status_subject>.<worker> every status_interval
 * (agentq status). It publishes on the probe's connection: core publishes,
 * fire and forget, that must not queue behind the pipeline's traffic either. */
static aq_status start_status(const aq_worker_config *cfg, struct event_base *base,
                              natsConnection *nc, const worker *w, const aq_worker_metrics *wm,
                              const char *name, aq_worker_status **ws, aq_fleet_reporter **rep,
                              aq_err *err)
{
    char sname[AQ_FLEET_WORKER_MAX + 1];
    aq_ws_config sc = {
        .pipeline = w->p,
        .wm = wm,
        .probe = w->probe,
        .concurrency = cfg->concurrency,
        .interval_ms = cfg->status_interval_ms,
        .version = AQ_WORKER_VERSION,
        .budget_each = status_budgets,
        .budget_ctx = w->p,
    };
    aq_status st = aq_ws_new(&sc, ws, err);
    if (st != AQ_OK)
        return aq_err_prefix(err, "fleet status");
    status_name(name, sname, sizeof(sname));
    st = aq_fleet_reporter_start(base, nc, cfg->status_subject, sname, cfg->status_interval_ms,
                                 aq_ws_fill, *ws, rep, err);
    if (st != AQ_OK)
        return aq_err_prefix(err, "fleet status");
    return AQ_OK;
}

static void stop_status(aq_fleet_reporter *rep)
{
    if (!rep)
        return;
    uint64_t published = 0, failed = 0;
    aq_err last;
    aq_fleet_reporter_stats(rep, &published, &failed, &last);
    if (failed > 0)
        aq_log(AQ_LOG_WARN, "fleet status: some snapshots were not published",
               AQ_LF_I("published", (int64_t)published), AQ_LF_I("failed", (int64_t)failed),
               AQ_LF_S("last_error", last.msg));
    /* Publishes the last snapshot, marked stopping, and waits briefly for it. */
    aq_fleet_reporter_destroy(rep);
}

int main(int argc, char **argv)
{
    aq_worker_config cfg;
    aq_config_cli cli;
    aq_err err;
    aq_log_level level = AQ_LOG_INFO;
    struct event_base *base = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    aq_metrics *reg = NULL;
    aq_worker_metrics *wm = NULL;
    aq_metrics_http *http = NULL;
    natsConnection *probe_nc = NULL;
    jsCtx *probe_js = NULL;
    aq_worker_status *status = NULL;
    aq_fleet_reporter *reporter = NULL;
    worker w = {0};
    int rc = EXIT_START;

    memset(&cfg, 0, sizeof(cfg));
    aq_log_init("agentq-worker", AQ_LOG_INFO, stderr);
    if (wants_print_metrics(argc, argv)) {
        aq_wm_print_families(stdout);
        rc = 0;
        goto out;
    }
    if (aq_config_load(aq_worker_options, &cfg, argc, argv, &cli, &err) != AQ_OK) {
        fprintf(stderr, "agentq-worker: %s\n", err.msg);
        rc = EXIT_USAGE;
        goto out;
    }
    if (cli.help) {
        printf("usage: agentq-worker [options]\n\n");
        aq_config_print_help(aq_worker_options, stdout);
        printf("  --%-26s %s\n", "print-metrics",
               "print the metric families (name type help) and exit");
        rc = 0;
        goto out;
    }
    /* Every value is checked before it is printed, and everything before
     * any connection: a bad value is exit 2, never a failed start. */
    if (cli.print_config) {
        if (aq_worker_config_check(&cfg, &err) != AQ_OK) {
            fprintf(stderr, "agentq-worker: %s\n", err.msg);
            rc = EXIT_USAGE;
            goto out;
        }
        aq_config_print(aq_worker_options, &cfg, stdout);
        rc = 0;
        goto out;
    }
    if (cli.argi < argc) {
        fprintf(stderr, "agentq-worker: unexpected argument '%s' (see --help)\n", argv[cli.argi]);
        rc = EXIT_USAGE;
        goto out;
    }
    if (aq_worker_config_validate(&cfg, &err) != AQ_OK) {
        fprintf(stderr, "agentq-worker: %s\n", err.msg);
        rc = EXIT_USAGE;
        goto out;
    }
    aq_log_level_parse(cfg.log_level, &level); /* checked above */
    aq_log_init("agentq-worker", level, stderr);
    signal(SIGPIPE, SIG_IGN);

    /* nats.c before libcurl: both clean OpenSSL up at exit, and in the
     * other order nats.c's handler runs first and frees OpenSSL's
     * compression-method list that OPENSSL_cleanup then frees again (a
     * worker using NATS over TLS crashed at every exit:
     * integration.nats_permissions_tls). */
    if (evthread_use_pthreads() != 0 || nats_Open(-1) != NATS_OK ||
        aq_llm_global_init(&err) != AQ_OK ||
        !(base = event_base_new())) {
        aq_log(AQ_LOG_ERROR, "cannot initialise", AQ_LF_S("error", err.msg));
        goto out;
    }
    /* The metrics exist even without the HTTP server (the fleet status
     * reads the latency histograms). */
    char name[128];
    worker_name(&cfg, name, sizeof(name));
    aq_wm_config wc = {.version = AQ_WORKER_VERSION,
                       .worker = name,
                       .max_tenants = (size_t)cfg.metrics_max_tenants};
    if (aq_metrics_new(&reg, &err) != AQ_OK || aq_wm_new(reg, &wc, &wm, &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "cannot create the metrics", AQ_LF_S("error", err.msg));
        goto out;
    }
    /* Bound before connecting: a taken port fails the start at once. */
    if (cfg.metrics_port > 0) {
        aq_metrics_http_opts ho = {.bind = cfg.metrics_bind,
                                   .port = (int)cfg.metrics_port,
                                   .registry = reg,
                                   .ready = worker_ready,
                                   .ready_arg = &w};
        if (aq_metrics_http_start(base, &ho, &http, &err) != AQ_OK) {
            aq_log(AQ_LOG_ERROR, "cannot start the metrics server (metrics_port, metrics_bind)",
                   AQ_LF_S("error", err.msg), AQ_LF_I("metrics_port", cfg.metrics_port));
            goto out;
        }
        aq_log(AQ_LOG_INFO, "metrics listening", AQ_LF_S("bind", cfg.metrics_bind),
               AQ_LF_I("port", aq_metrics_http_port(http)));
    }
    if (aq_pipeline_start(base, &cfg, &w.p, &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "cannot start", AQ_LF_S("class", aq_status_class(err.status)),
               AQ_LF_S("error", err.msg));
        goto out;
    }
    aq_pipeline_set_metrics(w.p, wm);
    if (start_probe(&cfg, &probe_nc, &probe_js, &w.probe, &err) != AQ_OK ||
        aq_wm_watch_probe(wm, w.probe, &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "cannot start", AQ_LF_S("class", aq_status_class(err.status)),
               AQ_LF_S("error", err.msg));
        goto out;
    }
    if (start_status(&cfg, base, probe_nc, &w, wm, name, &status, &reporter, &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "cannot start", AQ_LF_S("class", aq_status_class(err.status)),
               AQ_LF_S("error", err.msg));
        goto out;
    }
    sigterm = evsignal_new(base, SIGTERM, on_signal, &w);
    sigint = evsignal_new(base, SIGINT, on_signal, &w);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL)) {
        aq_log(AQ_LOG_ERROR, "cannot install signal handlers");
        goto out;
    }
    aq_log(AQ_LOG_INFO, "worker started", AQ_LF_S("stream", cfg.queue.task_stream),
           AQ_LF_S("consumer", cfg.queue.consumer), AQ_LF_S("base_url", cfg.base_url),
           AQ_LF_I("concurrency", cfg.concurrency));
    event_base_dispatch(base);

    aq_pipeline_stats st;
    aq_pipeline_get_stats(w.p, &st);
    aq_log(AQ_LOG_INFO, "worker stopped", AQ_LF_I("fetched", st.fetched),
           AQ_LF_I("completed", st.completed), AQ_LF_I("failed", st.failed),
           AQ_LF_I("dead_lettered", st.dead_lettered), AQ_LF_I("retried", st.retried),
           AQ_LF_I("deferred", st.deferred), AQ_LF_I("already_done", st.already_done),
           AQ_LF_I("coalesced", st.coalesced), AQ_LF_I("budget_waits", st.budget_waits));
    rc = 0;
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    /* The server first (no scrape may run past this point), the status
     * reporter while what its last snapshot reads (pipeline, metrics, probe)
     * and the connection it goes out on are still there, the pipeline before
     * the metrics it updates, the probe before its connection. */
    aq_metrics_http_destroy(http);
    stop_status(reporter);
    aq_ws_destroy(status);
    aq_pipeline_destroy(w.p);
    aq_queue_probe_destroy(w.probe);
    aq_queue_disconnect(probe_nc, probe_js);
    aq_wm_destroy(wm);
    aq_metrics_destroy(reg);
    if (base)
        event_base_free(base);
    aq_llm_global_cleanup();
    aq_config_free(aq_worker_options, &cfg);
    /* Like the CLI: nats.c's threads are gone before the exit handlers run. */
    nats_CloseAndWait(2000);
    return rc;
}
