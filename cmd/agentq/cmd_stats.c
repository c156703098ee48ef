/* Queue depth and friends, from the server's own view. */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "queue/queue_conn.h"
#include "queue/queue_setup.h"

typedef struct stats_config {
    aq_queue_config queue;
    bool json;
} stats_config;

static const aq_option stats_options[] = {
    AQ_QUEUE_OPTIONS(stats_config, queue),
    {"json", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(stats_config, json),
     "print one JSON object"},
    AQ_OPTIONS_END,
};

static json_int_t stream_msgs(jsCtx *js, const char *name, aq_err *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, name, NULL, &jerr);
    if (s != NATS_OK) {
        aq_queue_nats_error(err, s, jerr, name);
        return -1;
    }
    json_int_t n = (json_int_t)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

int cmd_stats(int argc, char **argv)
{
    stats_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsConsumerInfo *ci = NULL;
    aq_err err;
    char kv_stream[256];
    int argi, rc = cli_parse(stats_options, &cfg, argc, argv, "agentq stats [--json]", &argi);
    if (rc >= 0)
        goto out;
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    aq_queue_kv_stream(cfg.queue.results_bucket, kv_stream, sizeof(kv_stream));
    json_int_t tasks = stream_msgs(js, cfg.queue.task_stream, &err);
    json_int_t dlq = tasks < 0 ? -1 : stream_msgs(js, cfg.queue.dlq_stream, &err);
    json_int_t results = dlq < 0 ? -1 : stream_msgs(js, kv_stream, &err);
    jsErrCode jerr = 0;
    natsStatus s = NATS_OK;
    if (results >= 0)
        s = js_GetConsumerInfo(&ci, js, cfg.queue.task_stream, cfg.queue.consumer, NULL, &jerr);
    if (results < 0 || s != NATS_OK) {
        if (s != NATS_OK)
            aq_queue_nats_error(&err, s, jerr, "consumer");
        cli_error("stats", "%s", err.msg);
        rc = CLI_CONNECT;
        goto out;
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "tasks_in_stream", tasks,
                          "pending", (json_int_t)ci->NumPending, "ack_pending",
                          (json_int_t)ci->NumAckPending, "redelivered",
                          (json_int_t)ci->NumRedelivered, "waiting_pulls",
                          (json_int_t)ci->NumWaiting, "dead_letters", dlq, "results", results);
    if (cfg.json) {
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) printf("%-16s %lld\n", k, (long long)json_integer_value(v));
    }
    json_decref(o);
    rc = CLI_OK;
out:
    jsConsumerInfo_Destroy(ci);
    aq_queue_disconnect(nc, js);
    aq_config_free(stats_options, &cfg);
    return rc;
}
