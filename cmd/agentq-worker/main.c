/* agentq-worker: pulls tasks from JetStream, calls the Messages API, stores
 * results. Everything interesting is in internal/pipeline. */
#include <event2/event.h>
#include <event2/thread.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "llm/llm_client.h"
#include "pipeline/pipeline.h"
#include "pipeline/worker_config.h"

enum { EXIT_USAGE = 2, EXIT_START = 3 };

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    aq_log(AQ_LOG_INFO, "signal received", AQ_LF_I("signal", sig));
    aq_pipeline_shutdown(arg);
}

int main(int argc, char **argv)
{
    aq_worker_config cfg;
    aq_config_cli cli;
    aq_err err;
    aq_log_level level = AQ_LOG_INFO;
    struct event_base *base = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    aq_pipeline *p = NULL;
    int rc = EXIT_START;

    memset(&cfg, 0, sizeof(cfg));
    aq_log_init("agentq-worker", AQ_LOG_INFO, stderr);
    if (aq_config_load(aq_worker_options, &cfg, argc, argv, &cli, &err) != AQ_OK) {
        fprintf(stderr, "agentq-worker: %s\n", err.msg);
        rc = EXIT_USAGE;
        goto out;
    }
    if (cli.help) {
        printf("usage: agentq-worker [options]\n\n");
        aq_config_print_help(aq_worker_options, stdout);
        rc = 0;
        goto out;
    }
    if (cli.print_config) {
        aq_config_print(aq_worker_options, &cfg, stdout);
        rc = 0;
        goto out;
    }
    if (cli.argi < argc) {
        fprintf(stderr, "agentq-worker: unexpected argument '%s' (see --help)\n", argv[cli.argi]);
        rc = EXIT_USAGE;
        goto out;
    }
    if (aq_log_level_parse(cfg.log_level, &level) != AQ_OK) {
        fprintf(stderr, "agentq-worker: log_level: '%s' is not debug, info, warn or error\n",
                cfg.log_level);
        rc = EXIT_USAGE;
        goto out;
    }
    if (aq_worker_config_validate(&cfg, &err) != AQ_OK) {
        fprintf(stderr, "agentq-worker: %s\n", err.msg);
        rc = EXIT_USAGE;
        goto out;
    }
    aq_log_init("agentq-worker", level, stderr);
    signal(SIGPIPE, SIG_IGN);

    if (evthread_use_pthreads() != 0 || aq_llm_global_init(&err) != AQ_OK ||
        !(base = event_base_new())) {
        aq_log(AQ_LOG_ERROR, "cannot initialise", AQ_LF_S("error", err.msg));
        goto out;
    }
    if (aq_pipeline_start(base, &cfg, &p, &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "cannot start", AQ_LF_S("class", aq_status_class(err.status)),
               AQ_LF_S("error", err.msg));
        goto out;
    }
    sigterm = evsignal_new(base, SIGTERM, on_signal, p);
    sigint = evsignal_new(base, SIGINT, on_signal, p);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL)) {
        aq_log(AQ_LOG_ERROR, "cannot install signal handlers");
        goto out;
    }
    aq_log(AQ_LOG_INFO, "worker started", AQ_LF_S("stream", cfg.queue.task_stream),
           AQ_LF_S("consumer", cfg.queue.consumer), AQ_LF_S("base_url", cfg.base_url),
           AQ_LF_I("concurrency", cfg.concurrency));
    event_base_dispatch(base);

    aq_pipeline_stats st;
    aq_pipeline_get_stats(p, &st);
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
    aq_pipeline_destroy(p);
    if (base)
        event_base_free(base);
    aq_llm_global_cleanup();
    aq_config_free(aq_worker_options, &cfg);
    nats_Close();
    return rc;
}
