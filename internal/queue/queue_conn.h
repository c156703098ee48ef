/* Connecting to NATS with every option a production deployment needs. */
#ifndef AQ_QUEUE_CONN_H
#define AQ_QUEUE_CONN_H

#include <nats/nats.h>
#include <stdbool.h>

#include "core/status.h"
#include "queue/queue_config.h"

/* Told about disconnects, reconnects and async errors (on a nats.c thread),
 * so the caller can log them. `what` is "disconnected", "reconnected",
 * "closed" or "error"; `detail` never contains credentials. A permission
 * refusal is an "error" whose detail names the subject: 'permission denied
 * for publish to "<subject>"'. */
typedef void (*aq_queue_event_fn)(void *arg, const char *what, const char *detail);

typedef struct aq_queue_conn_opts {
    const char *name;           /* connection name shown by the server */
    bool retry_initial_connect; /* keep trying if the server is not up yet */
    aq_queue_event_fn on_event;
    void *event_arg;
} aq_queue_conn_opts;

/* nats_inbox_prefix: unset means this; at most this long. */
#define AQ_QUEUE_INBOX_PREFIX_DEFAULT "_INBOX"
#define AQ_QUEUE_INBOX_PREFIX_MAX 64
/* An inbox of a connection made by aq_queue_connect: "<its prefix>.<nuid>". */
#define AQ_QUEUE_INBOX_MAX (AQ_QUEUE_INBOX_PREFIX_MAX + 32)

/* `opts` may be NULL; it is copied. `js_out` may be NULL for a caller that
 * makes its own JetStream context (with other options). Connects and creates a JetStream context. Reconnects forever; publishes
 * made while disconnected are buffered (up to 64 MiB) and sent on reconnect. */
aq_status aq_queue_connect(const aq_queue_config *cfg, const aq_queue_conn_opts *opts,
                           natsConnection **nc_out, jsCtx **js_out, aq_err *err);
/* Closes and frees. After it returns no callback of this connection runs
 * (it waits for nats.c's final CLOSED callback). Accepts NULLs. */
void aq_queue_disconnect(natsConnection *nc, jsCtx *js);

/* The NATS status as an aq_err message. A timeout that a permission refusal
 * explains (the server drops a refused request; nats.c reports the refusal
 * on its own thread, and the request times out) reads "permission denied for
 * publish to "<subject>" (the request timed out)". */
aq_status aq_queue_nats_error(aq_err *err, natsStatus s, jsErrCode jerr, const char *what);
/* natsStatus_GetText, but with the refusal that explains a timeout, as
 * above. The text is valid until the calling thread's next call. */
const char *aq_queue_status_text(natsStatus s);

/* nats_inbox_prefix: a subject prefix (tokens, no wildcards), at most
 * AQ_QUEUE_INBOX_PREFIX_MAX characters. aq_queue_connect checks it too. */
aq_status aq_queue_check_inbox_prefix(const char *prefix, aq_err *err);
/* A new inbox under the connection's nats_inbox_prefix (for a subscription
 * of our own that a reply or a delivery comes to); `cap` >= AQ_QUEUE_INBOX_MAX. */
aq_status aq_queue_inbox_new(natsConnection *nc, char *buf, size_t cap, aq_err *err);

#endif
