#include "mailbox.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

struct aq_mailbox {
    pthread_mutex_t lock;
    aq_mailbox_node *head, *tail;
    struct event *wake;
};

static void mailbox_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    aq_mailbox *mb = arg;
    pthread_mutex_lock(&mb->lock);
    aq_mailbox_node *n = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    while (n) {
        aq_mailbox_node *next = n->next; /* read first: fn may free the node */
        n->fn(n->arg);
        n = next;
    }
}

aq_status aq_mailbox_new(struct event_base *base, aq_mailbox **out, aq_err *err)
{
    aq_mailbox *mb = calloc(1, sizeof(*mb));
    if (!mb)
        return aq_err_set(err, AQ_NOMEM, "mailbox: out of memory");
    pthread_mutex_init(&mb->lock, NULL);
    mb->wake = event_new(base, -1, 0, mailbox_drain, mb);
    if (!mb->wake) {
        pthread_mutex_destroy(&mb->lock);
        free(mb);
        return aq_err_set(err, AQ_NOMEM, "mailbox: event_new failed");
    }
    *out = mb;
    return AQ_OK;
}

void aq_mailbox_post(aq_mailbox *mb, aq_mailbox_node *node, aq_mailbox_fn fn, void *arg)
{
    node->next = NULL;
    node->fn = fn;
    node->arg = arg;
    pthread_mutex_lock(&mb->lock);
    int was_empty = mb->head == NULL;
    if (mb->tail)
        mb->tail->next = node;
    else
        mb->head = node;
    mb->tail = node;
    pthread_mutex_unlock(&mb->lock);
    /* One activation per batch: the drain takes everything queued. */
    if (was_empty)
        event_active(mb->wake, 0, 0);
}

void aq_mailbox_destroy(aq_mailbox *mb)
{
    if (!mb)
        return;
    event_free(mb->wake);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}
