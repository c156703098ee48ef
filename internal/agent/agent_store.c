#include "agent_store.h"

#include <stdio.h>

#include "queue/queue_conn.h"

aq_status aq_run_from_read(const aq_kv_read *rd, size_t cap, aq_run **out, uint64_t *rev,
                           aq_err *err)
{
    if (rd->status == AQ_NOT_FOUND || (rd->status == AQ_OK && rd->deleted)) {
        *rev = rd->revision;
        return aq_err_set(err, AQ_NOT_FOUND, "no checkpoint for run %s", rd->key);
    }
    if (rd->status != AQ_OK)
        return aq_err_set(err, rd->status, "%s", rd->err.msg);
    aq_status st = aq_run_decode(natsMsg_GetData(rd->msg), (size_t)natsMsg_GetDataLength(rd->msg),
                                 cap, out, err);
    if (st != AQ_OK)
        return aq_err_prefix(err, "run %s", rd->key);
    *rev = rd->revision;
    return AQ_OK;
}

aq_status aq_kv_cas_msg(const char *bucket, const char *key, const void *data, size_t len,
                        uint64_t rev, natsMsg **out, aq_err *err)
{
    char subject[AQ_KV_KEY_MAX + 300], seq[32];
    natsMsg *m = NULL;
    if (snprintf(subject, sizeof(subject), "$KV.%s.%s", bucket, key) >= (int)sizeof(subject))
        return aq_err_set(err, AQ_INVALID_ARG, "KV key %s is too long", key);
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)rev);
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", seq);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return aq_queue_nats_error(err, s, 0, "building a KV write");
    }
    *out = m;
    return AQ_OK;
}

aq_status aq_kv_cas_publish(jsCtx *js, natsMsg *m, uint64_t *new_rev, aq_err *err)
{
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    aq_status st = AQ_OK;
    natsStatus s = js_PublishMsg(&pa, js, m, NULL, &jerr);
    if (s != NATS_OK)
        st = aq_queue_nats_error(err, s, jerr, natsMsg_GetSubject(m));
    else if (new_rev)
        *new_rev = pa->Sequence;
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return st;
}

aq_status aq_run_save_async(aq_publisher *pub, const char *bucket, const aq_run *r, uint64_t rev,
                            size_t cap, aq_publish_fn done, void *ctx, aq_err *err)
{
    aq_buf b;
    natsMsg *m = NULL;
    aq_buf_init(&b, cap);
    aq_status st = aq_run_encode(r, cap, &b, err);
    if (st == AQ_OK)
        st = aq_kv_cas_msg(bucket, aq_run_state(r)->task_id, b.data, b.len, rev, &m, err);
    aq_buf_free(&b);
    if (st != AQ_OK)
        return st;
    return aq_publisher_send(pub, m, NULL, done, ctx, err);
}

aq_status aq_run_load(jsCtx *js, const char *bucket, const char *task_id, int64_t timeout_ms,
                      size_t cap, aq_run **out, uint64_t *rev, aq_err *err)
{
    aq_kv_read rd = {0};
    snprintf(rd.key, sizeof(rd.key), "%s", task_id);
    aq_kv_read_now(js, bucket, task_id, timeout_ms, &rd);
    if (rd.status == AQ_OK && (size_t)natsMsg_GetDataLength(rd.msg) > cap) {
        aq_status st = aq_err_set(err, AQ_TOO_BIG, "run %s: checkpoint is %d bytes, over the cap "
                                  "of %zu", task_id, natsMsg_GetDataLength(rd.msg), cap);
        aq_kv_read_clear(&rd);
        return st;
    }
    aq_status st = aq_run_from_read(&rd, cap, out, rev, err);
    aq_kv_read_clear(&rd);
    return st;
}

aq_status aq_run_save(jsCtx *js, const char *bucket, const aq_run *r, uint64_t rev, size_t cap,
                      uint64_t *new_rev, aq_err *err)
{
    aq_buf b;
    natsMsg *m = NULL;
    aq_buf_init(&b, cap);
    aq_status st = aq_run_encode(r, cap, &b, err);
    if (st == AQ_OK)
        st = aq_kv_cas_msg(bucket, aq_run_state(r)->task_id, b.data, b.len, rev, &m, err);
    aq_buf_free(&b);
    if (st != AQ_OK)
        return st;
    return aq_kv_cas_publish(js, m, new_rev, err);
}
