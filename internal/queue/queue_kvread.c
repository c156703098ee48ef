#include "queue_kvread.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue_conn.h"

struct aq_kv_reader {
    jsCtx *js;
    aq_mailbox *mb;
    char bucket[256];
    int64_t timeout_ms;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    aq_kv_read *head, *tail; /* guarded by lock */
    bool stopping;           /* guarded by lock */
};

static void read_complete(void *arg)
{
    aq_kv_read *r = arg;
    r->done(r);
}

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

static void *read_loop(void *arg)
{
    aq_kv_reader *kr = arg;
    for (;;) {
        pthread_mutex_lock(&kr->lock);
        while (!kr->stopping && !kr->head)
            pthread_cond_wait(&kr->cond, &kr->lock);
        if (kr->stopping) {
            pthread_mutex_unlock(&kr->lock);
            return NULL;
        }
        aq_kv_read *r = kr->head;
        kr->head = r->next;
        if (!kr->head)
            kr->tail = NULL;
        pthread_mutex_unlock(&kr->lock);
        aq_kv_read_now(kr->js, kr->bucket, r->key, kr->timeout_ms, r);
        aq_mailbox_post(kr->mb, &r->node, read_complete, r);
    }
}

aq_status aq_kv_reader_new(jsCtx *js, const char *bucket, int64_t timeout_ms, aq_mailbox *mb,
                           aq_kv_reader **out, aq_err *err)
{
    aq_kv_reader *kr = calloc(1, sizeof(*kr));
    if (!kr)
        return aq_err_set(err, AQ_NOMEM, "KV reader: out of memory");
    kr->js = js;
    kr->mb = mb;
    snprintf(kr->bucket, sizeof(kr->bucket), "%s", bucket);
    kr->timeout_ms = timeout_ms;
    pthread_mutex_init(&kr->lock, NULL);
    pthread_cond_init(&kr->cond, NULL);
    if (pthread_create(&kr->thread, NULL, read_loop, kr) != 0) {
        aq_kv_reader_destroy(kr);
        return aq_err_set(err, AQ_NOMEM, "KV reader: cannot start the thread");
    }
    kr->running = true;
    *out = kr;
    return AQ_OK;
}

void aq_kv_reader_get(aq_kv_reader *kr, aq_kv_read *r, const char *key, aq_kv_read_fn done,
                      void *ctx)
{
    memset(r, 0, sizeof(*r));
    r->done = done;
    r->ctx = ctx;
    if (strlen(key) > AQ_KV_KEY_MAX) {
        r->status = aq_err_set(&r->err, AQ_TOO_BIG, "KV key over %d bytes", AQ_KV_KEY_MAX);
        aq_mailbox_post(kr->mb, &r->node, read_complete, r);
        return;
    }
    strcpy(r->key, key);
    pthread_mutex_lock(&kr->lock);
    if (kr->tail)
        kr->tail->next = r;
    else
        kr->head = r;
    kr->tail = r;
    pthread_cond_signal(&kr->cond);
    pthread_mutex_unlock(&kr->lock);
}

void aq_kv_read_clear(aq_kv_read *r)
{
    natsMsg_Destroy(r->msg);
    r->msg = NULL;
}

void aq_kv_reader_destroy(aq_kv_reader *kr)
{
    if (!kr)
        return;
    if (kr->running) {
        pthread_mutex_lock(&kr->lock);
        kr->stopping = true;
        pthread_cond_signal(&kr->cond);
        pthread_mutex_unlock(&kr->lock);
        pthread_join(kr->thread, NULL);
    }
    pthread_cond_destroy(&kr->cond);
    pthread_mutex_destroy(&kr->lock);
    free(kr);
}
