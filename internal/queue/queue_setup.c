#include "queue_setup.h"

#include "queue/queue_conn.h"

#include <stdio.h>
#include <string.h>

#define NS_PER_MS 1000000LL

static void report(aq_queue_report_fn fn, void *arg, const char *kind, const char *name,
                   const char *action)
{
    if (fn)
        fn(arg, kind, name, action);
}

void aq_queue_kv_stream(const char *bucket, char *out, size_t n)
{
    snprintf(out, n, "KV_%s", bucket);
}

/* Add, or update when it exists: the same config either way. */
static aq_status ensure_stream(jsCtx *js, jsStreamConfig *sc, aq_queue_report_fn fn, void *arg,
                               aq_err *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, js, sc, NULL, &jerr);
    const char *action = "created";
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        jerr = 0;
        s = js_UpdateStream(&si, js, sc, NULL, &jerr);
        action = "updated";
    }
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        char what[256];
        snprintf(what, sizeof(what), "stream %s", sc->Name);
        return aq_queue_nats_error(err, s, jerr, what);
    }
    report(fn, arg, "stream", sc->Name, action);
    return AQ_OK;
}

static aq_status ensure_consumer(jsCtx *js, const char *stream, jsConsumerConfig *cc,
                                 aq_queue_report_fn fn, void *arg, aq_err *err)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    const char *action = "created";
    natsStatus s = js_AddConsumer(&ci, js, stream, cc, NULL, &jerr);
    if (s != NATS_OK && (jerr == JSConsumerNameExistErr || jerr == 10148 /* exists, differs */)) {
        jerr = 0;
        s = js_UpdateConsumer(&ci, js, stream, cc, NULL, &jerr);
        action = "updated";
    }
    jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK) {
        char what[256];
        snprintf(what, sizeof(what), "consumer %s", cc->Durable);
        return aq_queue_nats_error(err, s, jerr, what);
    }
    report(fn, arg, "consumer", cc->Durable, action);
    return AQ_OK;
}

/* nats.c 3.4.1 has no bucket update, so an existing bucket is updated
 * through its stream (TTL = MaxAge, replicas, value size). */
aq_status aq_queue_bucket_ensure(jsCtx *js, const aq_queue_bucket *b, aq_queue_report_fn fn,
                                 void *arg, aq_err *err)
{
    char kv_stream[256];
    kvStore *kv = NULL;
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = b->name;
    kc.History = 1;
    kc.TTL = b->ttl_ms * NS_PER_MS; /* nanoseconds, despite the name */
    kc.StorageType = js_FileStorage;
    kc.Replicas = (int)b->replicas;
    kc.MaxValueSize = (int32_t)b->max_value_bytes;
    natsStatus s = js_CreateKeyValue(&kv, js, &kc);
    kvStore_Destroy(kv);
    aq_err create_err;
    if (s != NATS_OK)
        aq_queue_nats_error(&create_err, s, 0, b->what);
    aq_queue_kv_stream(b->name, kv_stream, sizeof(kv_stream));
    if (s == NATS_OK) {
        report(fn, arg, "kv", b->name, "created");
        return AQ_OK;
    }
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    s = js_GetStreamInfo(&si, js, kv_stream, NULL, &jerr);
    if (s != NATS_OK) /* it does not exist, so the create's error is the one */
        return aq_err_set(err, create_err.status, "%s", create_err.msg);
    si->Config->MaxAge = b->ttl_ms * NS_PER_MS;
    si->Config->Replicas = b->replicas;
    si->Config->MaxMsgSize = (int32_t)b->max_value_bytes;
    /* Workers read with pipelined direct gets (queue_kvget.h). nats.c
     * 3.4.1's create sets AllowDirect; a bucket made by older tools may
     * lack it, and the server then never answers those reads. */
    si->Config->AllowDirect = true;
    jsStreamInfo *si2 = NULL;
    s = js_UpdateStream(&si2, js, si->Config, NULL, &jerr);
    jsStreamInfo_Destroy(si2);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof(what), "%s update", b->what);
        return aq_queue_nats_error(err, s, jerr, what);
    }
    report(fn, arg, "kv", b->name, "updated");
    return AQ_OK;
}

aq_status aq_queue_ensure(jsCtx *js, const aq_queue_config *cfg, aq_queue_report_fn fn, void *arg,
                          aq_err *err)
{
    aq_status st;
    char task_subject[256], dlq_subject[256];
    const char *task_subjects[1] = {task_subject}, *dlq_subjects[1] = {dlq_subject};
    snprintf(task_subject, sizeof(task_subject), "%s.>", cfg->task_subjects);
    snprintf(dlq_subject, sizeof(dlq_subject), "%s.>", cfg->dlq_subjects);

    /* Tasks: work-queue retention (a message lives until acked), refuse
     * publishers when full rather than dropping queued work. */
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = cfg->task_stream;
    sc.Subjects = task_subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_WorkQueuePolicy;
    sc.Storage = js_FileStorage;
    sc.Replicas = (int64_t)cfg->replicas;
    sc.Duplicates = cfg->dedup_window_ms * NS_PER_MS;
    sc.MaxMsgs = cfg->stream_max_msgs;
    sc.MaxBytes = cfg->stream_max_bytes;
    sc.MaxMsgSize = (int32_t)cfg->max_msg_size;
    sc.Discard = js_DiscardNew;
    /* Direct gets with next_by_subj let the ghost sweep (pipeline/sweep.c)
     * step over the gaps between the few messages left behind. */
    sc.AllowDirect = true;
    if ((st = ensure_stream(js, &sc, fn, arg, err)) != AQ_OK)
        return st;

    /* Parked tasks (budget_action=defer, pipeline/parking.c): out of the
     * consumer's ack-pending window, kept until a worker moves them back
     * (limits retention and no consumer: each is deleted by sequence once
     * it is back in the task stream). De-duplicated, so a parking repeated
     * after a crash is absorbed; refuses rather than drops when full. */
    char deferred_subject[256];
    const char *deferred_subjects[1] = {deferred_subject};
    snprintf(deferred_subject, sizeof(deferred_subject), "%s.>", cfg->deferred_subjects);
    jsStreamConfig pc;
    jsStreamConfig_Init(&pc);
    pc.Name = cfg->deferred_stream;
    pc.Subjects = deferred_subjects;
    pc.SubjectsLen = 1;
    pc.Retention = js_LimitsPolicy;
    pc.Storage = js_FileStorage;
    pc.Replicas = (int64_t)cfg->replicas;
    pc.Duplicates = cfg->dedup_window_ms * NS_PER_MS;
    pc.MaxMsgs = cfg->stream_max_msgs;
    pc.MaxBytes = cfg->stream_max_bytes;
    pc.MaxMsgSize = (int32_t)(cfg->max_msg_size + AQ_QUEUE_PARK_HEADROOM);
    pc.Discard = js_DiscardNew;
    pc.AllowDirect = true;
    if ((st = ensure_stream(js, &pc, fn, arg, err)) != AQ_OK)
        return st;

    /* Dead letters: kept for a long time, de-duplicated so that a publish
     * repeated after a crash is absorbed. */
    jsStreamConfig dc;
    jsStreamConfig_Init(&dc);
    dc.Name = cfg->dlq_stream;
    dc.Subjects = dlq_subjects;
    dc.SubjectsLen = 1;
    dc.Retention = js_LimitsPolicy;
    dc.Storage = js_FileStorage;
    dc.Replicas = (int64_t)cfg->replicas;
    dc.MaxAge = cfg->dlq_max_age_ms * NS_PER_MS;
    dc.Duplicates = cfg->dedup_window_ms * NS_PER_MS;
    dc.MaxMsgSize = (int32_t)cfg->max_msg_size;
    dc.Discard = js_DiscardOld;
    if ((st = ensure_stream(js, &dc, fn, arg, err)) != AQ_OK)
        return st;

    aq_queue_bucket bucket = {"results bucket", cfg->results_bucket, cfg->results_ttl_ms,
                              cfg->replicas, cfg->max_msg_size};
    if ((st = aq_queue_bucket_ensure(js, &bucket, fn, arg, err)) != AQ_OK)
        return st;

    /* The durable pull consumer every worker shares. Retries happen inside
     * a delivery, so MaxDeliver counts crashes and hand-backs only: past it
     * the server gives up and the backstop dead-letters the task. */
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = cfg->consumer;
    cc.Description = "agentq workers";
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = cfg->ack_wait_ms * NS_PER_MS;
    cc.MaxDeliver = cfg->max_deliver;
    cc.MaxAckPending = cfg->max_ack_pending;
    cc.MaxWaiting = 512;
    if ((st = ensure_consumer(js, cfg->task_stream, &cc, fn, arg, err)) != AQ_OK)
        return st;

    /* The server announces a task that reached MaxDeliver only once, on a
     * core subject: a stream keeps the announcement until a worker has
     * dead-lettered the task, even if no worker was up at that moment. */
    char advisory_subject[512];
    const char *advisory_subjects[1] = {advisory_subject};
    aq_queue_advisory_subject(cfg, advisory_subject, sizeof(advisory_subject));
    jsStreamConfig ac;
    jsStreamConfig_Init(&ac);
    ac.Name = cfg->advisory_stream;
    ac.Subjects = advisory_subjects;
    ac.SubjectsLen = 1;
    ac.Retention = js_WorkQueuePolicy;
    ac.Storage = js_FileStorage;
    ac.Replicas = (int64_t)cfg->replicas;
    ac.MaxAge = cfg->dlq_max_age_ms * NS_PER_MS;
    if ((st = ensure_stream(js, &ac, fn, arg, err)) != AQ_OK)
        return st;
    jsConsumerConfig bc;
    jsConsumerConfig_Init(&bc);
    bc.Durable = cfg->backstop_consumer;
    bc.Description = "agentq workers: dead-letter tasks that reached MaxDeliver";
    bc.AckPolicy = js_AckExplicit;
    bc.DeliverPolicy = js_DeliverAll;
    bc.AckWait = cfg->ack_wait_ms * NS_PER_MS;
    bc.MaxDeliver = -1; /* handling is idempotent; an advisory must not be lost */
    return ensure_consumer(js, cfg->advisory_stream, &bc, fn, arg, err);
}

aq_status aq_queue_stream_exists(jsCtx *js, const char *stream, const char *what, aq_err *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
        return aq_err_set(err, AQ_NOT_FOUND, "%s %s does not exist (run `agentq init`)", what,
                          stream);
    if (s != NATS_OK)
        return aq_queue_nats_error(err, s, jerr, what);
    return AQ_OK;
}

aq_status aq_queue_consumer_limits(jsCtx *js, const aq_queue_config *cfg, int64_t *ack_wait_ms,
                                   int64_t *max_deliver, aq_err *err)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, js, cfg->task_stream, cfg->consumer, NULL, &jerr);
    if (s != NATS_OK)
        return aq_queue_nats_error(err, s, jerr, "consumer");
    *ack_wait_ms = ci->Config->AckWait / NS_PER_MS;
    *max_deliver = ci->Config->MaxDeliver;
    jsConsumerInfo_Destroy(ci);
    return AQ_OK;
}

void aq_queue_advisory_subject(const aq_queue_config *cfg, char *out, size_t n)
{
    snprintf(out, n, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", cfg->task_stream,
             cfg->consumer);
}

aq_status aq_queue_check(jsCtx *js, const aq_queue_config *cfg, aq_err *err)
{
    char missing[AQ_ERR_MAX] = "", kv_stream[256];
    const char *streams[4][2] = {{"stream", cfg->task_stream},
                                 {"dead-letter stream", cfg->dlq_stream},
                                 {"results bucket", kv_stream},
                                 {"advisory stream", cfg->advisory_stream}};
    const char *consumers[2][2] = {{cfg->task_stream, cfg->consumer},
                                   {cfg->advisory_stream, cfg->backstop_consumer}};
    aq_queue_kv_stream(cfg->results_bucket, kv_stream, sizeof(kv_stream));
    size_t used = 0;

    for (int i = 0; i < 4; i++) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetStreamInfo(&si, js, streams[i][1], NULL, &jerr);
        jsStreamInfo_Destroy(si);
        if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
            used += (size_t)snprintf(missing + used, sizeof(missing) - used, "%s%s %s",
                                     used ? ", " : "", streams[i][0],
                                     i == 2 ? cfg->results_bucket : streams[i][1]);
        else if (s != NATS_OK)
            return aq_queue_nats_error(err, s, jerr, streams[i][0]);
        if (used >= sizeof(missing))
            used = sizeof(missing) - 1;
    }
    for (int i = 0; i < 2; i++) {
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetConsumerInfo(&ci, js, consumers[i][0], consumers[i][1], NULL, &jerr);
        jsConsumerInfo_Destroy(ci);
        if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr)
            used += (size_t)snprintf(missing + used, sizeof(missing) - used, "%sconsumer %s",
                                     used ? ", " : "", consumers[i][1]);
        else if (s != NATS_OK)
            return aq_queue_nats_error(err, s, jerr, "consumer");
        if (used >= sizeof(missing))
            used = sizeof(missing) - 1;
    }
    if (missing[0])
        return aq_err_set(err, AQ_NOT_FOUND, "missing JetStream objects: %s (run `agentq init`)",
                          missing);
    return AQ_OK;
}
