#include "sweep.h"

#include <stdio.h>

#include "queue/queue_conn.h"
#include "queue/queue_kvread.h"
#include "queue/queue_scan.h"
#include "task/task_codec.h"

/* Is a Result (COMPLETED or FAILED) stored for the task in `m`? *id gets
 * the task's id when it has a valid one. */
static aq_status result_stored(jsCtx *js, const aq_queue_config *q, natsMsg *m, char *id,
                               size_t id_len, bool *stored, aq_err *err)
{
    aq_task_limits lim;
    aq_task_limits_default(&lim);
    lim.max_payload_bytes = (size_t)q->max_msg_size;
    Agentq__V1__Task *t = NULL;
    *stored = false;
    id[0] = '\0';
    if (aq_task_unpack(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &lim, &t, NULL) !=
            AQ_OK ||
        !t || !aq_task_id_valid(t->id)) {
        aq_task_free(t);
        return AQ_OK; /* no id, no Result: never deleted here */
    }
    snprintf(id, id_len, "%s", t->id);
    aq_task_free(t);
    aq_kv_read rd;
    aq_kv_read_now(js, q->results_bucket, id, q->nats_timeout_ms, &rd);
    aq_status st = AQ_OK;
    if (rd.status == AQ_OK && !rd.deleted) {
        Agentq__V1__Status status;
        uint64_t seq;
        *stored = aq_result_peek(natsMsg_GetData(rd.msg), (size_t)natsMsg_GetDataLength(rd.msg),
                                 &status, &seq) &&
                  (status == AGENTQ__V1__STATUS__STATUS_COMPLETED ||
                   status == AGENTQ__V1__STATUS__STATUS_FAILED);
    } else if (rd.status != AQ_OK && rd.status != AQ_NOT_FOUND) {
        *err = rd.err;
        st = rd.status;
    }
    aq_kv_read_clear(&rd);
    return st;
}

aq_status aq_sweep_run(jsCtx *js, const aq_queue_config *q, uint64_t max_examine, uint64_t *cursor,
                       aq_sweep_kept_fn kept, void *ctx, aq_sweep_report *out, aq_err *err)
{
    aq_sweep_report r = {0};
    jsStreamInfo *si = NULL;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = q->nats_timeout_ms;
    aq_status st = AQ_OK;
    natsStatus s = js_GetConsumerInfo(&ci, js, q->task_stream, q->consumer, &jo, &jerr);
    if (s != NATS_OK) {
        st = aq_queue_nats_error(err, s, jerr, "consumer");
        goto out;
    }
    /* The floor first, the stream after: a message removed in between is
     * simply not found. */
    r.ack_floor = ci->AckFloor.Stream;
    if ((s = js_GetStreamInfo(&si, js, q->task_stream, &jo, &jerr)) != NATS_OK) {
        st = aq_queue_nats_error(err, s, jerr, "task stream");
        goto out;
    }
    if (si->State.Msgs == 0 || si->State.FirstSeq > r.ack_floor) {
        *cursor = 0; /* nothing behind the floor */
        goto out;
    }
    uint64_t next = *cursor > si->State.FirstSeq ? *cursor : si->State.FirstSeq;
    while (r.examined < max_examine) {
        natsMsg *m = NULL;
        uint64_t seq = 0;
        aq_err e;
        aq_status ns = aq_queue_scan_next(js, q->task_stream, next, q->nats_timeout_ms, &m,
                                          &seq, &e);
        if (ns == AQ_NOT_FOUND || (ns == AQ_OK && seq > r.ack_floor)) {
            natsMsg_Destroy(m);
            next = 0; /* past the floor: the next run starts over */
            break;
        }
        if (ns != AQ_OK) {
            *err = e;
            st = ns;
            break;
        }
        next = seq + 1;
        r.examined++;
        char id[160];
        bool stored = false;
        st = result_stored(js, q, m, id, sizeof(id), &stored, err);
        natsMsg_Destroy(m);
        if (st != AQ_OK)
            break;
        if (!stored) {
            r.kept++;
            if (kept)
                kept(ctx, seq, id);
            continue;
        }
        jerr = 0;
        s = js_DeleteMsg(js, q->task_stream, seq, &jo, &jerr);
        if (s == NATS_OK) {
            r.deleted++;
        } else if (s != NATS_NOT_FOUND && jerr != JSNoMessageFoundErr &&
                   jerr != JSStreamMsgDeleteFailed) {
            st = aq_queue_nats_error(err, s, jerr, "removing a settled task from the stream");
            break;
        }
    }
    *cursor = next;
out:
    jsStreamInfo_Destroy(si);
    jsConsumerInfo_Destroy(ci);
    if (st == AQ_OK)
        *out = r;
    return st;
}
