/* The JetStream objects agentq runs on: the task stream, the durable pull
 * consumer, the dead-letter stream, the results bucket, and the advisory
 * stream with its consumer (the MAX_DELIVERIES backstop). */
#ifndef AQ_QUEUE_SETUP_H
#define AQ_QUEUE_SETUP_H

#include <nats/nats.h>

#include "core/status.h"
#include "queue/queue_config.h"

/* Create or update every object to match `cfg` (idempotent; `agentq init`).
 * `report` (may be NULL) is told one line per object: "created", "updated". */
typedef void (*aq_queue_report_fn)(void *arg, const char *kind, const char *name,
                                   const char *action);
aq_status aq_queue_ensure(jsCtx *js, const aq_queue_config *cfg, aq_queue_report_fn report,
                          void *arg, aq_err *err);

/* A KV bucket (History 1, file storage, AllowDirect for queue_kvget.h):
 * created, or brought to this configuration when it exists. `what` names it
 * in errors ("results bucket", "cache bucket"). */
typedef struct aq_queue_bucket {
    const char *what;
    const char *name;
    int64_t ttl_ms; /* how long an entry lives */
    int64_t replicas;
    int64_t max_value_bytes;
} aq_queue_bucket;
aq_status aq_queue_bucket_ensure(jsCtx *js, const aq_queue_bucket *b, aq_queue_report_fn fn,
                                 void *arg, aq_err *err);

/* Bytes a parked task may carry beyond max_msg_size (its Agentq-Parked-*
 * headers). */
#define AQ_QUEUE_PARK_HEADROOM 4096

/* AQ_OK when `stream` exists; AQ_NOT_FOUND (saying to run `agentq init`)
 * when not. `what` names it in the message. For optional objects. */
aq_status aq_queue_stream_exists(jsCtx *js, const char *stream, const char *what, aq_err *err);

/* Check that every object exists; the error lists all that are missing. */
aq_status aq_queue_check(jsCtx *js, const aq_queue_config *cfg, aq_err *err);

/* The consumer's AckWait and MaxDeliver as the server has them: `agentq
 * init` may have set other values than the worker's own configuration. */
aq_status aq_queue_consumer_limits(jsCtx *js, const aq_queue_config *cfg, int64_t *ack_wait_ms,
                                   int64_t *max_deliver, aq_err *err);

/* The subject of the server's MAX_DELIVERIES advisories for the consumer. */
void aq_queue_advisory_subject(const aq_queue_config *cfg, char *out, size_t n);

/* Name of the stream behind a KV bucket ("KV_<bucket>"). */
void aq_queue_kv_stream(const char *bucket, char *out, size_t n);

#endif
