#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cache/cache_config.h"
#include "cli.h"
#include "queue/queue_conn.h"
#include "queue/queue_setup.h"

typedef struct init_config {
    aq_queue_config queue;
    char *cache_bucket;
    int64_t cache_ttl_ms;
} init_config;

static const aq_option init_options[] = {
    AQ_QUEUE_OPTIONS(init_config, queue),
    AQ_CACHE_BUCKET_OPTIONS(init_config, cache_bucket, cache_ttl_ms),
    AQ_OPTIONS_END,
};

static void report(void *arg, const char *kind, const char *name, const char *action)
{
    (void)arg;
    printf("%-9s %-20s %s\n", kind, name, action);
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
    /* Entries are whole Results (queue_setup.h), so the same size cap. */
    aq_queue_bucket cache = {"cache bucket", cfg.cache_bucket, cfg.cache_ttl_ms, cfg.queue.replicas,
                             cfg.queue.max_msg_size};
    if (aq_queue_bucket_ensure(js, &cache, report, NULL, &err) != AQ_OK) {
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
