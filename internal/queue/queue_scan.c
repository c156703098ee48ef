#include "queue_scan.h"

#include <errno.h>
#include <stdlib.h>

#include "queue/queue_conn.h"

aq_status aq_queue_scan_next(jsCtx *js, const char *stream, uint64_t from_seq, int64_t timeout_ms,
                             natsMsg **out, uint64_t *seq, aq_err *err)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = timeout_ms;
    jsDirectGetMsgOptions dg;
    jsDirectGetMsgOptions_Init(&dg);
    dg.Sequence = from_seq ? from_seq : 1;
    dg.NextBySubject = ">";
    natsMsg *m = NULL;
    natsStatus s = js_DirectGetMsg(&m, js, stream, &jo, &dg);
    if (s == NATS_NOT_FOUND)
        return aq_err_set(err, AQ_NOT_FOUND, "no message in %s from sequence %llu", stream,
                          (unsigned long long)dg.Sequence);
    if (s == NATS_NO_RESPONDERS)
        return aq_err_set(err, AQ_CONFIG,
                          "stream %s does not answer direct gets (AllowDirect): run `agentq init`",
                          stream);
    if (s != NATS_OK)
        return aq_queue_nats_error(err, s, 0, "direct get");
    uint64_t n = natsMsg_GetSequence(m);
    const char *h = NULL;
    if (n == 0 && natsMsgHeader_Get(m, "Nats-Sequence", &h) == NATS_OK && h) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(h, &end, 10);
        if (errno == 0 && end != h && *end == '\0')
            n = v;
    }
    if (n == 0) {
        natsMsg_Destroy(m);
        return aq_err_set(err, AQ_NATS, "direct get from %s: the answer has no sequence", stream);
    }
    *out = m;
    *seq = n;
    return AQ_OK;
}
