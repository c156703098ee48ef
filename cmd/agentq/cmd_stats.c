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

const aq_option cli_stats_options[] = {
    AQ_QUEUE_OPTIONS(stats_config, queue),
    {"json", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(stats_config, json),
     "print one JSON object"},
    AQ_OPTIONS_END,
};

static aq_status stream_msgs(jsCtx *js, const char *name, int64_t *n, aq_err *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, name, NULL, &jerr);
    if (s != NATS_OK)
        return aq_queue_nats_error(err, s, jerr, name);
    *n = (int64_t)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return AQ_OK;
}

/* Shared with `agentq status`. */
aq_status cli_queue_probe(jsCtx *js, const aq_queue_config *q, cli_queue_info *out, aq_err *err)
{
    cli_queue_info qi;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    char kv_stream[256];
    aq_status st;
    aq_queue_kv_stream(q->results_bucket, kv_stream, sizeof(kv_stream));
    if ((st = stream_msgs(js, q->task_stream, &qi.tasks_in_stream, err)) != AQ_OK ||
        (st = stream_msgs(js, q->dlq_stream, &qi.dead_letters, err)) != AQ_OK ||
        (st = stream_msgs(js, kv_stream, &qi.results, err)) != AQ_OK)
        goto out;
    natsStatus s = js_GetConsumerInfo(&ci, js, q->task_stream, q->consumer, NULL, &jerr);
    if (s != NATS_OK) {
        st = aq_queue_nats_error(err, s, jerr, "consumer");
        goto out;
    }
    qi.pending = (int64_t)ci->NumPending;
    qi.ack_pending = (int64_t)ci->NumAckPending;
    qi.redelivered = (int64_t)ci->NumRedelivered;
    qi.waiting_pulls = (int64_t)ci->NumWaiting;
    *out = qi;
out:
    jsConsumerInfo_Destroy(ci);
    return st;
}

json_t *cli_queue_info_json(const cli_queue_info *qi)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "tasks_in_stream",
                     (json_int_t)qi->tasks_in_stream, "pending", (json_int_t)qi->pending,
                     "ack_pending", (json_int_t)qi->ack_pending, "redelivered",
                     (json_int_t)qi->redelivered, "waiting_pulls", (json_int_t)qi->waiting_pulls,
                     "dead_letters", (json_int_t)qi->dead_letters, "results",
                     (json_int_t)qi->results);
}

int cmd_stats(int argc, char **argv)
{
    stats_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    cli_queue_info qi;
    aq_err err;
    int argi, rc = cli_parse(cli_stats_options, &cfg, &cfg.queue, argc, argv,
                             "agentq stats [--json]", &argi);
    if (rc >= 0)
        goto out;
    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    if (cli_queue_probe(js, &cfg.queue, &qi, &err) != AQ_OK) {
        cli_error("stats", "%s", err.msg);
        rc = CLI_CONNECT;
        goto out;
    }
    json_t *o = cli_queue_info_json(&qi);
    if (!o) {
        cli_error("stats", "out of memory");
        rc = CLI_ERROR;
        goto out;
    }
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
    aq_queue_disconnect(nc, js);
    aq_config_free(cli_stats_options, &cfg);
    return rc;
}
