#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent_config.h"
#include "budget/budget.h"
#include "cache/cache_config.h"
#include "cli.h"
#include "queue/queue_conn.h"
#include "queue/queue_setup.h"

const aq_option cli_init_options[] = {
    AQ_QUEUE_OPTIONS(cli_init_config, queue),
    AQ_CACHE_BUCKET_OPTIONS(cli_init_config, cache_bucket, cache_ttl_ms),
    AQ_BUDGET_BUCKET_OPTIONS(cli_init_config, budget_bucket, budget_ttl_ms),
    AQ_AGENT_RUNS_OPTIONS(cli_init_config, runs_bucket, runs_ttl_ms, runs_max_bytes),
    AQ_AGENT_SESSION_OPTIONS(cli_init_config, session_bucket, session_ttl_ms, session_max_bytes),
    AQ_OPTIONS_END,
};

static void print_object(void *arg, const char *kind, const char *name, const char *action)
{
    (void)arg;
    printf("%-9s %-20s %s\n", kind, name, action);
}

aq_status cli_init_objects(jsCtx *js, const cli_init_config *cfg, aq_queue_report_fn report,
                           aq_err *err)
{
    aq_status st = aq_queue_ensure(js, &cfg->queue, report, NULL, err);
    if (st != AQ_OK)
        return st;
    /* Entries are whole Results (queue_setup.h), so the same size cap. */
    aq_queue_bucket cache = {"cache bucket", cfg->cache_bucket, cfg->cache_ttl_ms,
                             cfg->queue.replicas, cfg->queue.max_msg_size};
    if ((st = aq_queue_bucket_ensure(js, &cache, report, NULL, err)) != AQ_OK)
        return st;
    /* Agent runs: checkpoints (the transcripts) and sessions (history, leases). */
    aq_queue_bucket runs = {"runs bucket", cfg->runs_bucket, cfg->runs_ttl_ms,
                            cfg->queue.replicas, cfg->runs_max_bytes};
    aq_queue_bucket sessions = {"sessions bucket", cfg->session_bucket, cfg->session_ttl_ms,
                                cfg->queue.replicas, cfg->session_max_bytes};
    if ((st = aq_queue_bucket_ensure(js, &runs, report, NULL, err)) != AQ_OK ||
        (st = aq_queue_bucket_ensure(js, &sessions, report, NULL, err)) != AQ_OK)
        return st;
    /* The budgets' bucket has its own settings (history 1, its value cap). */
    bool created = false;
    if ((st = aq_budget_bucket_ensure(js, cfg->budget_bucket, cfg->budget_ttl_ms,
                                      (int)cfg->queue.replicas, &created, err)) != AQ_OK)
        return st;
    if (report)
        report(NULL, "kv", cfg->budget_bucket, created ? "created" : "updated");
    return AQ_OK;
}

int cmd_init(int argc, char **argv)
{
    cli_init_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    aq_err err;
    int argi, rc = cli_parse(cli_init_options, &cfg, &cfg.queue, argc, argv,
                             "agentq init [options]", &argi);
    if (rc >= 0)
        goto out;
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    if (cli_init_objects(js, &cfg, print_object, &err) != AQ_OK) {
        cli_error("init", "%s", err.msg);
        rc = err.status == AQ_NOT_FOUND ? CLI_CONNECT : CLI_ERROR;
        goto out;
    }
    rc = CLI_OK;
out:
    aq_queue_disconnect(nc, js);
    aq_config_free(cli_init_options, &cfg);
    return rc;
}
