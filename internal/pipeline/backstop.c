#include "backstop.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "pipeline/dead_letter.h"
#include "queue/queue_conn.h"
#include "queue/queue_fetch.h"
#include "queue/queue_kvread.h"
#include "queue/queue_setup.h"
#include "task/task_codec.h"

#define ADVISORY_MAX_BYTES 16384
#define FETCH_WAIT_MS 1000 /* bounds how long stopping takes */
#define RETRY_LATER_MS 5000
#define MAX_WRITE_CONFLICTS 3

struct aq_backstop {
    jsCtx *js;
    const aq_queue_config *q;
    const char *worker;
    aq_task_limits limits;
    jsOptions jo;
    aq_fetcher *fetcher;
};

typedef struct advisory {
    uint64_t stream_seq;
    uint64_t deliveries;
} advisory;

static aq_status parse_advisory(natsMsg *msg, advisory *a, aq_err *err)
{
    int len = natsMsg_GetDataLength(msg);
    if (len <= 0 || len > ADVISORY_MAX_BYTES)
        return aq_err_set(err, AQ_TOO_BIG, "advisory of %d bytes", len);
    json_error_t je;
    json_t *o = json_loadb(natsMsg_GetData(msg), (size_t)len, 0, &je);
    json_int_t seq = 0, deliveries = 0;
    if (!o || json_unpack_ex(o, &je, 0, "{s:I, s?I}", "stream_seq", &seq, "deliveries",
                             &deliveries) != 0 || seq <= 0) {
        json_decref(o);
        return aq_err_set(err, AQ_INVALID_ARG, "advisory does not parse: %s", je.text);
    }
    json_decref(o);
    a->stream_seq = (uint64_t)seq;
    a->deliveries = deliveries > 0 ? (uint64_t)deliveries : 0;
    return AQ_OK;
}

static bool stored_completed(const aq_kv_read *rd)
{
    if (rd->status != AQ_OK || rd->deleted)
        return false;
    Agentq__V1__Status status;
    uint64_t seq;
    return aq_result_peek(natsMsg_GetData(rd->msg), (size_t)natsMsg_GetDataLength(rd->msg), &status,
                          &seq) &&
           status == AGENTQ__V1__STATUS__STATUS_COMPLETED;
}

/* Reads the key; *completed when a COMPLETED result is stored. */
static aq_status read_result(aq_backstop *b, const char *id, uint64_t *rev, bool *completed,
                             aq_err *err)
{
    aq_kv_read rd;
    aq_kv_read_now(b->js, b->q->results_bucket, id, b->q->nats_timeout_ms, &rd);
    aq_status st = rd.status == AQ_NOT_FOUND ? AQ_OK : rd.status;
    if (st != AQ_OK)
        *err = rd.err;
    *rev = rd.status == AQ_OK ? rd.revision : 0;
    *completed = stored_completed(&rd);
    aq_kv_read_clear(&rd);
    return st;
}

/* The FAILED result, compare-and-set so a COMPLETED one is never replaced. */
static aq_status write_failed_result(aq_backstop *b, const Agentq__V1__Task *t, const advisory *a,
                                     const char *why, uint64_t rev, aq_err *err)
{
    Agentq__V1__Result r;
    Agentq__V1__Error e;
    agentq__v1__result__init(&r);
    agentq__v1__error__init(&e);
    r.id = t->id;
    r.type = t->type;
    r.status = AGENTQ__V1__STATUS__STATUS_FAILED;
    r.model = t->model;
    r.attempts = (uint32_t)a->deliveries;
    r.stream_seq = a->stream_seq;
    r.completed_unix_ms = aq_now_unix_ms();
    r.worker = (char *)b->worker;
    e.class_ = (char *)aq_status_class(AQ_MAX_DELIVERIES);
    e.message = (char *)why;
    r.error = &e;
    aq_buf packed;
    aq_buf_init(&packed, (size_t)b->q->max_msg_size);
    aq_status st = aq_result_pack(&r, &packed, err);
    char subject[512], num[32];
    snprintf(subject, sizeof(subject), "$KV.%s.%s", b->q->results_bucket, t->id);
    for (int tries = 0; st == AQ_OK; tries++) {
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        if (natsMsg_Create(&m, subject, NULL, packed.data, (int)packed.len) != NATS_OK) {
            st = aq_err_set(err, AQ_NOMEM, "cannot create the result message");
            break;
        }
        snprintf(num, sizeof(num), "%llu", (unsigned long long)rev);
        natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", num);
        natsStatus s = js_PublishMsg(NULL, b->js, m, NULL, &jerr);
        natsMsg_Destroy(m);
        if (s == NATS_OK)
            break;
        st = aq_queue_nats_error(err, s, jerr, "FAILED result");
        if (st != AQ_WRITE_CONFLICT || tries >= MAX_WRITE_CONFLICTS)
            break;
        bool completed = false;
        if ((st = read_result(b, t->id, &rev, &completed, err)) == AQ_OK && completed)
            break; /* completed meanwhile: keep it */
    }
    aq_buf_free(&packed);
    return st;
}

static aq_status delete_original(aq_backstop *b, uint64_t seq, aq_err *err)
{
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteMsg(b->js, b->q->task_stream, seq, &b->jo, &jerr);
    if (s == NATS_OK || s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr ||
        jerr == JSStreamMsgDeleteFailed)
        return AQ_OK; /* gone already is as good */
    return aq_queue_nats_error(err, s, jerr, "removing the task from the stream");
}

static aq_status handle(aq_backstop *b, const advisory *a, aq_err *err)
{
    natsMsg *orig = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&orig, b->js, b->q->task_stream, a->stream_seq, &b->jo, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        aq_log(AQ_LOG_INFO, "backstop: task already gone from the stream",
               AQ_LF_I("stream_seq", a->stream_seq));
        return AQ_OK;
    }
    if (s != NATS_OK)
        return aq_queue_nats_error(err, s, jerr, "fetching the task by sequence");

    Agentq__V1__Task *t = NULL;
    aq_task_unpack(natsMsg_GetData(orig), (size_t)natsMsg_GetDataLength(orig), &b->limits, &t, NULL);
    bool valid_id = t && aq_task_id_valid(t->id);
    uint64_t rev = 0;
    bool completed = false;
    aq_status st = AQ_OK;
    char why[256];
    snprintf(why, sizeof(why),
             "delivered %llu times without being settled: the task may crash or stall the worker",
             (unsigned long long)a->deliveries);

    if (valid_id && (st = read_result(b, t->id, &rev, &completed, err)) != AQ_OK)
        goto out;
    if (!completed) {
        aq_dead_letter dl = {
            .payload = natsMsg_GetData(orig),
            .payload_len = natsMsg_GetDataLength(orig),
            .type = t ? t->type : NULL,
            .task_id = valid_id ? t->id : NULL,
            .status = AQ_MAX_DELIVERIES,
            .error = why,
            .attempts = a->deliveries,
            .stream_seq = a->stream_seq,
            .worker = b->worker,
        };
        natsMsg *m = NULL;
        char msg_id[256];
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msg_id;
        if ((st = aq_dead_letter_msg(b->q, &dl, &m, msg_id, sizeof(msg_id), err)) != AQ_OK)
            goto out;
        jerr = 0;
        s = js_PublishMsg(NULL, b->js, m, &po, &jerr);
        natsMsg_Destroy(m);
        if (s != NATS_OK) {
            st = aq_queue_nats_error(err, s, jerr, "publishing the dead letter");
            goto out;
        }
        if (valid_id && (st = write_failed_result(b, t, a, why, rev, err)) != AQ_OK)
            goto out;
        aq_log(AQ_LOG_WARN, "task dead-lettered", AQ_LF_S("id", valid_id ? t->id : ""),
               AQ_LF_S("type", t ? t->type : ""), AQ_LF_S("tenant", t ? t->tenant : ""),
               AQ_LF_I("stream_seq", a->stream_seq),
               AQ_LF_I("delivery", a->deliveries),
               AQ_LF_S("class", aq_status_class(AQ_MAX_DELIVERIES)), AQ_LF_S("error", dl.error));
    }
    st = delete_original(b, a->stream_seq, err);
out:
    aq_task_free(t);
    natsMsg_Destroy(orig);
    return st;
}

/* Fetcher thread. The advisory is acked only when every step is done. */
static void on_advisory(void *ctx, natsMsg *msg)
{
    aq_backstop *b = ctx;
    advisory a = {0};
    aq_err err;
    if (parse_advisory(msg, &a, &err) != AQ_OK) {
        aq_log(AQ_LOG_ERROR, "backstop: dropping an advisory", AQ_LF_S("error", err.msg));
        natsMsg_Term(msg, NULL);
    } else if (handle(b, &a, &err) == AQ_OK) {
        natsMsg_Ack(msg, NULL);
    } else {
        aq_log(AQ_LOG_WARN, "backstop: will retry", AQ_LF_I("stream_seq", a.stream_seq),
               AQ_LF_S("error", err.msg));
        natsMsg_NakWithDelay(msg, RETRY_LATER_MS, NULL);
    }
    natsMsg_Destroy(msg);
}

static void on_fetch_error(void *ctx, const aq_err *err)
{
    (void)ctx;
    aq_log(AQ_LOG_WARN, "backstop: fetch failed; backing off", AQ_LF_S("error", err->msg));
}

aq_status aq_backstop_start(jsCtx *js, const aq_queue_config *q, const char *worker,
                            aq_backstop **out, aq_err *err)
{
    aq_backstop *b = calloc(1, sizeof(*b));
    if (!b)
        return aq_err_set(err, AQ_NOMEM, "backstop: out of memory");
    b->js = js;
    b->q = q;
    b->worker = worker;
    aq_task_limits_default(&b->limits);
    b->limits.max_payload_bytes = (size_t)q->max_msg_size;
    jsOptions_Init(&b->jo);
    b->jo.Wait = q->nats_timeout_ms;
    char subject[512];
    aq_queue_advisory_subject(q, subject, sizeof(subject));
    aq_fetch_opts fo = {
        .slots = 8,
        .max_batch = 8,
        .wait_ms = FETCH_WAIT_MS,
        .deliver = on_advisory,
        .on_error = on_fetch_error,
        .ctx = b,
        .release_on_return = true,
    };
    aq_status st = aq_fetcher_start(js, q->advisory_stream, q->backstop_consumer, subject, &fo,
                                    &b->fetcher, err);
    if (st != AQ_OK) {
        free(b);
        return aq_err_prefix(err, "backstop");
    }
    *out = b;
    return AQ_OK;
}

void aq_backstop_stop(aq_backstop *b)
{
    if (b)
        aq_fetcher_stop(b->fetcher);
}

void aq_backstop_destroy(aq_backstop *b)
{
    if (!b)
        return;
    aq_fetcher_destroy(b->fetcher);
    free(b);
}
