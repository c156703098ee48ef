/* Private to internal/budget: the KV side (a thread doing the synchronous
 * compare-and-set exchanges) as seen by the loop-thread side. */
#ifndef AQ_BUDGET_BUDGET_INT_H
#define AQ_BUDGET_BUDGET_INT_H

#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>

#include "budget.h"

typedef enum kv_op_kind {
    OP_LEASE = 0, /* add a lease to a budget key */
    OP_RETURN,    /* give an unused lease back to a budget key */
    OP_PUT,       /* write this instance's spent figures (one writer: no compare-and-set) */
} kv_op_kind;

/* One exchange with the bucket. Owned by the loop thread except between
 * kv_thread_submit and its completion, when only the KV thread touches it
 * (the queue's lock and the mailbox order the hand-overs). */
typedef struct kv_op {
    /* in */
    kv_op_kind kind;
    char key[AQ_BUDGET_KEY_MAX];
    const char *instance;
    int64_t limit, need_min, want, chunk; /* OP_LEASE */
    int64_t give_back;                    /* OP_RETURN */
    char *put_value;                      /* OP_PUT: owned, freed on completion */
    size_t put_len;
    /* kept between exchanges of one key: the value last written by us and
     * its revision, so the next exchange can try to write at once (one
     * round trip) and reads only when someone else wrote in between */
    json_t *cached;
    uint64_t cached_rev;
    bool cached_valid;
    /* Write on the cached revision without reading first only when that
     * would have worked last time (the last read found our own last write
     * still the latest): with several workers on one key the optimistic
     * write mostly loses, and a lost write is a wasted round trip. */
    bool optimistic;
    uint64_t last_written_rev;
    /* out */
    aq_status st;
    aq_err err;
    int64_t granted, returned, allocated, workers;
    uint32_t round_trips, conflicts, errors;
    bool ran; /* the KV thread has written the results (guarded by the thread's lock) */
    /* plumbing */
    void (*complete)(struct kv_op *op);
    void *owner;
    aq_mailbox_node node;
    struct kv_op *next;
} kv_op;

typedef struct kv_thread kv_thread;

aq_status kv_thread_new(natsConnection *nc, const char *bucket, int64_t timeout_ms, aq_mailbox *mb,
                        kv_thread **out, aq_err *err);
void kv_thread_submit(kv_thread *t, kv_op *op);
/* Stop after the exchange in progress (which stops retrying); join. Ops
 * still queued are left with ran = false. */
void kv_thread_stop(kv_thread *t);
/* Run one op here and now (after kv_thread_stop: destroy's give-backs). */
void kv_thread_run_now(kv_thread *t, kv_op *op);
void kv_thread_free(kv_thread *t);
bool kv_op_ran(kv_thread *t, kv_op *op);
void kv_op_reset_cache(kv_op *op);

#endif
