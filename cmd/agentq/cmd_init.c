#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "budget/budget.h"
#include "cli.h"
#include "queue/queue_conn.h"
#include "queue/queue_setup.h"

typedef struct init_config {
    aq_queue_config queue;
    char *budget_bucket;
    int64_t budget_ttl_ms;
} init_config;

static const aq_option init_options[] = {
    AQ_QUEUE_OPTIONS(init_config, queue),
    {"budget_bucket", "AGENTQ_BUDGET_BUCKET", AQ_OPT_STRING, AQ_BUDGET_DEFAULT_BUCKET, 0, 0,
     offsetof(init_config, budget_bucket),
     "KV bucket of the daily budgets and the fleet's spent figures"},
    /* At least a day and an hour: a budget key that expired during its own
     * day would start the day's spending over from zero. */
    {"budget_ttl", "AGENTQ_BUDGET_TTL", AQ_OPT_DURATION, "72h", 90000000, 31536000000.0,
     offsetof(init_config, budget_ttl_ms), "how long a day's budget and spent figures are kept"},
    AQ_OPTIONS_END,
};

static void report(void *arg, const char *kind, const char *name, const char *action)
{
    (void)arg;
    printf("%-9s %-20s %s\n", kind, name, action);
}

/* The budget bucket: its own block, after the queue's objects. */
static aq_status ensure_budget_bucket(jsCtx *js, const init_config *cfg, aq_err *err)
{
    bool created = false;
    aq_status st = aq_budget_bucket_ensure(js, cfg->budget_bucket, cfg->budget_ttl_ms,
                                           (int)cfg->queue.replicas, &created, err);
    if (st == AQ_OK)
        report(NULL, "kv", cfg->budget_bucket, created ? "created" : "updated");
    return st;
}

int cmd_init(int argc, char **argv)
{
    init_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    aq_err err;
    int argi, rc = cli_parse(init_options, &cfg, argc, argv, "agentq init [options]", &argi);
    if (rc >= 0)
        goto out;
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    if (aq_queue_ensure(js, &cfg.queue, report, NULL, &err) != AQ_OK) {
        cli_error("init", "%s", err.msg);
        rc = err.status == AQ_NOT_FOUND ? CLI_CONNECT : CLI_ERROR;
        goto out;
    }
    if (ensure_budget_bucket(js, &cfg, &err) != AQ_OK) {
        cli_error("init", "%s", err.msg);
        rc = CLI_ERROR;
        goto out;
    }
    rc = CLI_OK;
out:
    aq_queue_disconnect(nc, js);
    aq_config_free(init_options, &cfg);
    return rc;
}
