/* The queue as the server sees it, for metrics, /readyz and the fleet
 * status: the consumer's pending and ack-pending counts and the dead-letter
 * stream's size, read every few seconds on a thread of its own.
 *
 * nats.c 3.4.1 has only synchronous JetStream API calls, so the probe never
 * runs on the event loop: its thread stores what it read in atomics and the
 * loop reads them with aq_queue_probe_get, which never blocks. The
 * connection's status is looked at more often (AQ_QUEUE_PROBE_CONN_CHECK_MS)
 * so that readiness drops soon after a disconnect; while disconnected no
 * request is made (nats.c would only buffer it until the timeout).
 *
 * The connection is the caller's (the probe neither connects nor closes),
 * and must outlive the probe. */
#ifndef AQ_QUEUE_PROBE_H
#define AQ_QUEUE_PROBE_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

#define AQ_QUEUE_PROBE_CONN_CHECK_MS 250 /* connection status polled this often */
#define AQ_QUEUE_PROBE_MIN_INTERVAL_MS 100

typedef struct aq_queue_probe_opts {
    const char *task_stream; /* the consumer's stream */
    const char *consumer;
    const char *dlq_stream;
    const char *deferred_stream; /* parked tasks (may be NULL: not probed) */
    int64_t interval_ms; /* between probes; at least AQ_QUEUE_PROBE_MIN_INTERVAL_MS */
    int64_t timeout_ms;  /* per JetStream API request; also bounds how long destroy waits */
} aq_queue_probe_opts;

typedef enum aq_queue_probe_state {
    AQ_PROBE_UNKNOWN = 0, /* not probed yet */
    AQ_PROBE_OK,          /* connected, the consumer exists */
    AQ_PROBE_DISCONNECTED,
    AQ_PROBE_NO_CONSUMER, /* the stream or the consumer is missing */
    AQ_PROBE_FAILED,      /* the request failed otherwise (timeout, no JetStream, ...) */
} aq_queue_probe_state;

/* A short reason ("ok", "NATS disconnected", "consumer not found", ...). */
const char *aq_queue_probe_state_text(aq_queue_probe_state st);

typedef struct aq_queue_probe_values {
    bool connected;             /* the connection's status, at most ~250 ms old */
    aq_queue_probe_state state; /* of the last probe (DISCONNECTED as soon as seen) */
    int64_t probed_unix_ms;     /* the last probe that read the consumer; 0 never */
    int64_t pending;            /* consumer NumPending (not yet delivered); -1 unknown */
    int64_t ack_pending;        /* consumer NumAckPending (delivered, not acked); -1 unknown */
    int64_t dlq_messages;       /* DLQ stream State.Msgs; -1 unknown */
    int64_t parked;             /* deferred stream State.Msgs; -1 unknown or no such stream */
    uint64_t probes, failures;  /* probes made, and of them the ones that failed */
} aq_queue_probe_values;

typedef struct aq_queue_probe aq_queue_probe;

/* Starts the thread; the first probe is made at once. The strings in
 * `opts` are copied. */
aq_status aq_queue_probe_new(natsConnection *nc, jsCtx *js, const aq_queue_probe_opts *opts,
                             aq_queue_probe **out, aq_err *err);
/* The latest values. Thread-safe, lock-free: each field is read atomically
 * (fields of one call may come from neighbouring probes). */
void aq_queue_probe_get(const aq_queue_probe *pr, aq_queue_probe_values *out);
/* Stops the thread: at once between probes, else once the request in
 * progress returns (timeout_ms at most). Accepts NULL. */
void aq_queue_probe_destroy(aq_queue_probe *pr);

#endif
