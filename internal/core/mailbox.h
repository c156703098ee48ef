/* Hand work from other threads (the NATS fetcher, nats.c's callbacks) to the
 * libevent loop thread. Posting is thread-safe and never blocks on the loop;
 * the loop runs every posted function, in order, on its own thread.
 * Requires evthread_use_pthreads() before the event_base is created. */
#ifndef AQ_CORE_MAILBOX_H
#define AQ_CORE_MAILBOX_H

#include "status.h"

struct event_base;

typedef void (*aq_mailbox_fn)(void *arg);

/* Caller-owned node, usually embedded in the object being handed over, so a
 * post never allocates. It must stay alive until its function has run. */
typedef struct aq_mailbox_node {
    struct aq_mailbox_node *next;
    aq_mailbox_fn fn;
    void *arg;
} aq_mailbox_node;

typedef struct aq_mailbox aq_mailbox;

aq_status aq_mailbox_new(struct event_base *base, aq_mailbox **out, aq_err *err);
void aq_mailbox_post(aq_mailbox *mb, aq_mailbox_node *node, aq_mailbox_fn fn, void *arg);
/* Runs nothing further; nodes still queued are dropped (callers own them). */
void aq_mailbox_destroy(aq_mailbox *mb);

#endif
