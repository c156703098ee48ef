#include "queue_publish.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/ptrmap.h"
#include "queue/queue_conn.h"

typedef struct publish_op {
    aq_mailbox_node node;
    aq_publisher *owner;
    aq_publish_fn done;
    void *ctx;
    aq_status status;
    uint64_t seq;
    aq_err err;
} publish_op;

struct aq_publisher {
    jsCtx *js;
    aq_mailbox *mb;
    int64_t ack_timeout_ms;
    pthread_mutex_t lock;
    aq_ptrmap pending; /* natsMsg* -> publish_op*, until the ack handler runs */
};

static void publish_complete(void *arg)
{
    publish_op *op = arg;
    op->done(op->ctx, op->status, op->seq, &op->err);
    free(op);
}

/* nats.c thread: find the op by the message pointer and hand it to the loop. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    aq_publisher *p = closure;
    pthread_mutex_lock(&p->lock);
    publish_op *op = aq_ptrmap_take(&p->pending, msg);
    pthread_mutex_unlock(&p->lock);
    natsMsg_Destroy(msg);
    if (!op)
        return;
    if (pa) {
        op->status = AQ_OK;
        op->seq = pa->Sequence;
    } else if (pae) {
        aq_queue_nats_error(&op->err, pae->Err, pae->ErrCode,
                            pae->ErrText ? pae->ErrText : "publish");
        op->status = op->err.status;
    } else {
        op->status = aq_err_set(&op->err, AQ_NATS, "publish: no acknowledgement");
    }
    aq_mailbox_post(p->mb, &op->node, publish_complete, op);
}

aq_status aq_publisher_new(natsConnection *nc, aq_mailbox *mb, int64_t ack_timeout_ms,
                           aq_publisher **out, aq_err *err)
{
    aq_publisher *p = calloc(1, sizeof(*p));
    if (!p)
        return aq_err_set(err, AQ_NOMEM, "publisher: out of memory");
    pthread_mutex_init(&p->lock, NULL);
    aq_ptrmap_init(&p->pending);
    p->mb = mb;
    p->ack_timeout_ms = ack_timeout_ms;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = ack_timeout_ms;
    /* High enough that a publish never stalls the loop in practice; the
     * pipeline's own concurrency bound keeps it far below this. */
    jo.PublishAsync.MaxPending = 1 << 20;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = p;
    natsStatus s = natsConnection_JetStream(&p->js, nc, &jo);
    if (s != NATS_OK) {
        aq_publisher_destroy(p);
        return aq_queue_nats_error(err, s, 0, "publisher JetStream context");
    }
    *out = p;
    return AQ_OK;
}

aq_status aq_publisher_send(aq_publisher *p, natsMsg *msg, const char *msg_id, aq_publish_fn done,
                            void *ctx, aq_err *err)
{
    publish_op *op = calloc(1, sizeof(*op));
    if (!op) {
        natsMsg_Destroy(msg);
        return aq_err_set(err, AQ_NOMEM, "publish: out of memory");
    }
    op->owner = p;
    op->done = done;
    op->ctx = ctx;
    /* Registered before sending: the ack can arrive before the call returns. */
    pthread_mutex_lock(&p->lock);
    aq_status st = aq_ptrmap_put(&p->pending, msg, op);
    pthread_mutex_unlock(&p->lock);
    if (st != AQ_OK) {
        free(op);
        natsMsg_Destroy(msg);
        return aq_err_set(err, st, "publish: out of memory");
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = p->ack_timeout_ms;
    natsMsg *key = msg;
    natsStatus s = js_PublishMsgAsync(p->js, &msg, &po);
    if (s != NATS_OK) {
        pthread_mutex_lock(&p->lock);
        publish_op *mine = aq_ptrmap_take(&p->pending, key);
        pthread_mutex_unlock(&p->lock);
        if (mine) {
            /* The library did not take the message: nothing will call back. */
            free(mine);
            natsMsg_Destroy(msg);
            return aq_queue_nats_error(err, s, 0, "publish");
        }
        /* The ack handler already took it (and will report): not an error here. */
    }
    return AQ_OK;
}

void aq_publisher_destroy(aq_publisher *p)
{
    if (!p)
        return;
    jsCtx_Destroy(p->js);
    aq_ptrmap_clear(&p->pending, free);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
