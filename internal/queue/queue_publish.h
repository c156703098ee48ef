/* Pipelined JetStream publishes: many in flight, each completion handed back
 * on the event loop thread. KV puts (a put is a publish to $KV.<bucket>.<key>)
 * and dead letters both go through here, so the hot path never waits for a
 * round trip. */
#ifndef AQ_QUEUE_PUBLISH_H
#define AQ_QUEUE_PUBLISH_H

#include <nats/nats.h>
#include <stdint.h>

#include "core/mailbox.h"
#include "core/status.h"

typedef struct aq_publisher aq_publisher;

/* Runs once per publish, on the loop thread. `st` is AQ_OK once the stream
 * has stored the message (seq is its sequence; a de-duplicated publish is
 * also AQ_OK); otherwise `err` says why (a timeout, a rejected publish). */
typedef void (*aq_publish_fn)(void *ctx, aq_status st, uint64_t seq, const aq_err *err);

/* Creates its own JetStream context on `nc`. `ack_timeout_ms` bounds the wait
 * for each publish acknowledgement. */
aq_status aq_publisher_new(natsConnection *nc, aq_mailbox *mb, int64_t ack_timeout_ms,
                           aq_publisher **out, aq_err *err);

/* Takes ownership of `msg` in every case. `msg_id` (may be NULL) becomes the
 * Nats-Msg-Id. On failure `done` is not called. */
aq_status aq_publisher_send(aq_publisher *p, natsMsg *msg, const char *msg_id, aq_publish_fn done,
                            void *ctx, aq_err *err);

/* Completions that have not run yet are dropped. Close the connection first,
 * so that no acknowledgement arrives during or after this. Accepts NULL. */
void aq_publisher_destroy(aq_publisher *p);

#endif
