/* Reads of a KV key's latest entry without blocking the event loop.
 *
 * nats.c 3.4.1 reads only synchronously, so reads run on a thread of their
 * own and each completion is handed back on the loop thread. They are for
 * the rare paths (a redelivered task, a compare-and-set write that lost):
 * one thread, one round trip at a time, never on the per-task hot path. */
#ifndef AQ_QUEUE_KVREAD_H
#define AQ_QUEUE_KVREAD_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/mailbox.h"
#include "core/status.h"

#define AQ_KV_KEY_MAX 256

typedef struct aq_kv_reader aq_kv_reader;
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

aq_status aq_kv_reader_new(jsCtx *js, const char *bucket, int64_t timeout_ms, aq_mailbox *mb,
                           aq_kv_reader **out, aq_err *err);
/* Thread-safe. Fills r->key from `key` (too long: completes with AQ_TOO_BIG). */
void aq_kv_reader_get(aq_kv_reader *kr, aq_kv_read *r, const char *key, aq_kv_read_fn done,
                      void *ctx);
/* The same read, synchronously, for a thread that may block (r->key, done
 * and ctx are not used). */
void aq_kv_read_now(jsCtx *js, const char *bucket, const char *key, int64_t timeout_ms,
                    aq_kv_read *r);
/* Frees what a completed read holds; the node can then be reused. */
void aq_kv_read_clear(aq_kv_read *r);
/* Stops the thread. Reads not completed yet are dropped (their owners
 * must not be waiting any more: call this after the loop has exited). */
void aq_kv_reader_destroy(aq_kv_reader *kr);

#endif
