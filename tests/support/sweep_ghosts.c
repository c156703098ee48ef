/* sweep_ghosts: makes "ghost" messages on purpose and runs the ghost sweep
 * (internal/pipeline/sweep.h) on them, for tests/integration/sweep.sh.
 *
 *   sweep_ghosts setup --url U --stream S --subjects P --consumer C --bucket B --n N --after M
 *   sweep_ghosts sweep --url U --stream S --subjects P --consumer C --bucket B --max K
 *
 * A ghost is a task message still in the stream at or below the consumer's
 * ack floor. nats-server leaves them in a work-queue stream only by accident
 * (after a SIGKILL); a limits-retention stream keeps every acked message, so
 * there they can be made at will:
 *
 * setup: creates the limits stream S (subjects P.>, AllowDirect) with a
 * durable pull consumer C, publishes N tasks (ids g-0 ..) and acks each,
 * stores a Result for some in bucket B (i % 3 == 1: COMPLETED, i % 3 == 2:
 * FAILED, i % 3 == 0: none), then publishes M more tasks (ids a-0 ..) with
 * COMPLETED results that nobody fetches (beyond the ack floor). Prints
 * {"with_result": .., "without_result": .., "after": M}.
 *
 * sweep: runs aq_sweep_run with at most K messages per run until a run ends
 * at the ack floor (at most 1000 runs); prints the totals, the runs, the ids
 * reported as kept, and the stream's message count after. */
#include <errno.h>
#include <jansson.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "pipeline/sweep.h"
#include "task/task_codec.h"

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

static long long num(int argc, char **argv, const char *name, long long def)
{
    const char *s = opt(argc, argv, name, NULL);
    if (!s)
        return def;
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno || *e || e == s) {
        fprintf(stderr, "bad %s '%s'\n", name, s);
        exit(2);
    }
    return v;
}

static void check(natsStatus s, const char *what)
{
    if (s != NATS_OK) {
        fprintf(stderr, "sweep_ghosts: %s: %s\n", what, natsStatus_GetText(s));
        exit(1);
    }
}

static void publish_task(jsCtx *js, const char *subjects, const char *id)
{
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.id = (char *)id;
    t.type = (char *)"it";
    t.prompt = (char *)"ghost";
    t.max_tokens = 16;
    aq_buf b;
    aq_buf_init(&b, 1 << 20);
    aq_err err;
    if (aq_task_pack(&t, &b, &err) != AQ_OK) {
        fprintf(stderr, "pack: %s\n", err.msg);
        exit(1);
    }
    char subject[256];
    snprintf(subject, sizeof(subject), "%s.it", subjects);
    check(js_Publish(NULL, js, subject, b.data, (int)b.len, NULL, NULL), "publish");
    aq_buf_free(&b);
}

static void store_result(kvStore *kv, const char *id, Agentq__V1__Status status)
{
    Agentq__V1__Result r;
    agentq__v1__result__init(&r);
    r.id = (char *)id;
    r.type = (char *)"it";
    r.status = status;
    aq_buf b;
    aq_buf_init(&b, 1 << 20);
    aq_err err;
    if (aq_result_pack(&r, &b, &err) != AQ_OK) {
        fprintf(stderr, "pack: %s\n", err.msg);
        exit(1);
    }
    uint64_t rev = 0;
    check(kvStore_Put(&rev, kv, id, b.data, (int)b.len), "kv put");
    aq_buf_free(&b);
}

static int setup(jsCtx *js, aq_queue_config *q, long long n, long long after)
{
    char filter[256];
    const char *subjects[1] = {filter};
    snprintf(filter, sizeof(filter), "%s.>", q->task_subjects);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = q->task_stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_LimitsPolicy;
    sc.Storage = js_FileStorage;
    sc.AllowDirect = true;
    check(js_AddStream(NULL, js, &sc, NULL, NULL), "add stream");
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = q->consumer;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    check(js_AddConsumer(NULL, js, q->task_stream, &cc, NULL, NULL), "add consumer");
    kvStore *kv = NULL;
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = q->results_bucket;
    kc.History = 1;
    if (js_CreateKeyValue(&kv, js, &kc) != NATS_OK)
        check(js_KeyValue(&kv, js, q->results_bucket), "results bucket");

    char id[64];
    for (long long i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "g-%lld", i);
        publish_task(js, q->task_subjects, id);
    }
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = q->task_stream;
    so.Consumer = q->consumer;
    check(js_PullSubscribe(&sub, js, filter, q->consumer, NULL, &so, NULL), "pull subscribe");
    long long acked = 0;
    while (acked < n) {
        natsMsgList list = {0};
        check(natsSubscription_Fetch(&list, sub, 64, 5000, NULL), "fetch");
        for (int i = 0; i < list.Count; i++) {
            check(natsMsg_AckSync(list.Msgs[i], NULL, NULL), "ack");
            acked++;
        }
        natsMsgList_Destroy(&list);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    long long with = 0, without = 0;
    for (long long i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "g-%lld", i);
        if (i % 3 == 0) {
            without++;
            continue;
        }
        store_result(kv, id, i % 3 == 1 ? AGENTQ__V1__STATUS__STATUS_COMPLETED
                                        : AGENTQ__V1__STATUS__STATUS_FAILED);
        with++;
    }
    for (long long i = 0; i < after; i++) {
        snprintf(id, sizeof(id), "a-%lld", i);
        publish_task(js, q->task_subjects, id);
        store_result(kv, id, AGENTQ__V1__STATUS__STATUS_COMPLETED);
    }
    kvStore_Destroy(kv);
    printf("{\"with_result\": %lld, \"without_result\": %lld, \"after\": %lld}\n", with, without,
           after);
    return 0;
}

static void on_kept(void *ctx, uint64_t seq, const char *id)
{
    (void)seq;
    json_array_append_new(ctx, json_string(id));
}

static int sweep(jsCtx *js, aq_queue_config *q, long long max)
{
    uint64_t cursor = 0, deleted = 0, kept = 0, examined = 0, floor = 0;
    json_t *kept_ids = json_array();
    int runs = 0;
    do {
        aq_sweep_report r;
        aq_err err;
        if (aq_sweep_run(js, q, (uint64_t)max, &cursor, on_kept, kept_ids, &r, &err) != AQ_OK) {
            fprintf(stderr, "sweep: %s\n", err.msg);
            return 1;
        }
        runs++;
        deleted += r.deleted;
        kept += r.kept;
        examined += r.examined;
        floor = r.ack_floor;
    } while (cursor != 0 && runs < 1000);
    jsStreamInfo *si = NULL;
    check(js_GetStreamInfo(&si, js, q->task_stream, NULL, NULL), "stream info");
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:i, s:I, s:o}", "deleted", (json_int_t)deleted,
                          "kept", (json_int_t)kept, "examined", (json_int_t)examined, "ack_floor",
                          (json_int_t)floor, "runs", runs, "msgs_left",
                          (json_int_t)si->State.Msgs, "kept_ids", kept_ids);
    jsStreamInfo_Destroy(si);
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sweep_ghosts setup|sweep --url U ...\n");
        return 2;
    }
    aq_queue_config q;
    memset(&q, 0, sizeof(q));
    q.task_stream = (char *)opt(argc, argv, "--stream", "GHOSTS");
    q.task_subjects = (char *)opt(argc, argv, "--subjects", "ghost.tasks");
    q.consumer = (char *)opt(argc, argv, "--consumer", "ghost-workers");
    q.results_bucket = (char *)opt(argc, argv, "--bucket", "agentq-results");
    q.nats_timeout_ms = 5000;
    q.max_msg_size = 1 << 20;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    check(natsConnection_ConnectTo(&nc, opt(argc, argv, "--url", "nats://127.0.0.1:4222")),
          "connect");
    check(natsConnection_JetStream(&js, nc, NULL), "jetstream");
    int rc;
    if (strcmp(argv[1], "setup") == 0)
        rc = setup(js, &q, num(argc, argv, "--n", 30), num(argc, argv, "--after", 3));
    else if (strcmp(argv[1], "sweep") == 0)
        rc = sweep(js, &q, num(argc, argv, "--max", 1000));
    else {
        fprintf(stderr, "unknown command %s\n", argv[1]);
        rc = 2;
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
