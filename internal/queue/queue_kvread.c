#include "queue_kvread.h"

#include <stdio.h>
#include <string.h>

#include "queue/queue_conn.h"

void aq_kv_read_now(jsCtx *js, const char *bucket, const char *key, int64_t timeout_ms,
                    aq_kv_read *r)
{
    char stream[300], subject[AQ_KV_KEY_MAX + 300];
    jsOptions jo;
    jsErrCode jerr = 0;
    jsOptions_Init(&jo);
    jo.Wait = timeout_ms;
    r->msg = NULL;
    r->revision = 0;
    r->deleted = false;
    snprintf(stream, sizeof(stream), "KV_%s", bucket);
    snprintf(subject, sizeof(subject), "$KV.%s.%s", bucket, key);
    natsStatus s = js_GetLastMsg(&r->msg, js, stream, subject, &jo, &jerr);
    if (s == NATS_OK) {
        const char *op = NULL;
        r->status = AQ_OK;
        r->revision = natsMsg_GetSequence(r->msg);
        r->deleted = natsMsgHeader_Get(r->msg, "KV-Operation", &op) == NATS_OK && op &&
                     (strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0);
    } else if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        r->status = aq_err_set(&r->err, AQ_NOT_FOUND, "no entry for %s", key);
    } else {
        r->status = aq_queue_nats_error(&r->err, s, jerr, "reading the results bucket");
    }
}

void aq_kv_read_clear(aq_kv_read *r)
{
    natsMsg_Destroy(r->msg);
    r->msg = NULL;
}
