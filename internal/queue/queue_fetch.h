/* The fetcher: a thread that pulls tasks from the durable consumer, never
 * more than the caller has free slots for (backpressure: the backlog stays
 * in JetStream). nats.c 3.4.1 has only a blocking fetch, hence the thread. */
#ifndef AQ_QUEUE_FETCH_H
#define AQ_QUEUE_FETCH_H

#include <nats/nats.h>
#include <stdbool.h>

#include "core/status.h"

typedef struct aq_fetcher aq_fetcher;

/* Both run on the fetcher thread. `deliver` owns `msg`. */
typedef void (*aq_fetch_deliver_fn)(void *ctx, natsMsg *msg);
typedef void (*aq_fetch_error_fn)(void *ctx, const aq_err *err);

typedef struct aq_fetch_opts {
    int slots;          /* messages owned at most (taken at fetch, given back by release) */
    int max_batch;      /* largest single fetch */
    int64_t wait_ms;    /* how long one fetch waits for messages */
    aq_fetch_deliver_fn deliver;
    aq_fetch_error_fn on_error;
    void *ctx;
    bool release_on_return; /* `deliver` settles at once: its slot is free when it returns */
    int limit;              /* initial aq_fetcher_limit (0: none) */
} aq_fetch_opts;

/* Binds to the existing durable `consumer` of `stream` (its filter is
 * `subject`) and starts the thread. *out is set before the first delivery,
 * so `deliver` may use it. */
aq_status aq_fetcher_start(jsCtx *js, const char *stream, const char *consumer,
                           const char *subject, const aq_fetch_opts *opts, aq_fetcher **out,
                           aq_err *err);
/* Thread-safe: hold at most `n` messages from the next fetch on (0: all
 * the slots again). */
void aq_fetcher_limit(aq_fetcher *f, int n);
/* Thread-safe: stop fetching (slots stay as they are) until resumed. For
 * backpressure that is not about slots, e.g. no rate budget left. */
void aq_fetcher_pause(aq_fetcher *f, bool paused);
/* Thread-safe: `n` slots are free again. */
void aq_fetcher_release(aq_fetcher *f, int n);
/* Thread-safe: take one slot back when one is free (under the slots and the
 * limit); false when none is. For a holder that gave its slot back for a
 * while (aq_fetcher_release) and needs it again. */
bool aq_fetcher_try_take(aq_fetcher *f);
/* Slots currently taken. */
int aq_fetcher_in_use(aq_fetcher *f);
/* Stop fetching and join the thread (returns within about wait_ms). */
void aq_fetcher_stop(aq_fetcher *f);
/* Stops if needed, unsubscribes (the durable consumer stays). Accepts NULL. */
void aq_fetcher_destroy(aq_fetcher *f);

#endif
