/* A read of a KV key's latest entry: the record both readers fill.
 * queue_kvget.h reads many at once without blocking the loop (the worker);
 * aq_kv_read_now reads one synchronously, for a thread that may block (the
 * backstop, tests). nats.c 3.4.1 reads KV only synchronously. */
#ifndef AQ_QUEUE_KVREAD_H
#define AQ_QUEUE_KVREAD_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/mailbox.h"
#include "core/status.h"

#define AQ_KV_KEY_MAX 256

typedef struct aq_kv_read aq_kv_read;

/* Runs on the loop thread once the read is over. */
typedef void (*aq_kv_read_fn)(aq_kv_read *r);

/* Caller-owned, usually embedded in the object that needs the answer; it
 * must stay alive until `done` has run. */
struct aq_kv_read {
    /* in */
    char key[AQ_KV_KEY_MAX + 1];
    aq_kv_read_fn done;
    void *ctx;
    /* out, valid in `done` */
    aq_status status;  /* AQ_OK (an entry, maybe a delete marker), AQ_NOT_FOUND, or an error */
    aq_err err;
    uint64_t revision; /* stream sequence of the latest entry; 0 when there is none */
    bool deleted;      /* the latest entry is a delete or purge marker */
    natsMsg *msg;      /* the latest entry (data = the value); freed by aq_kv_read_clear */
    /* private */
    aq_mailbox_node node;
    aq_kv_read *next;
};

/* Reads `key` now, blocking up to timeout_ms (r->key, done and ctx are
 * not used). */
void aq_kv_read_now(jsCtx *js, const char *bucket, const char *key, int64_t timeout_ms,
                    aq_kv_read *r);
/* Frees what a completed read holds; the node can then be reused. */
void aq_kv_read_clear(aq_kv_read *r);

#endif
