/* Where the queue lives and how to reach it: shared by the worker and the CLI
 * (both embed an aq_queue_config and list AQ_QUEUE_OPTIONS in their option
 * table, so the names, env vars and defaults are declared once). */
#ifndef AQ_QUEUE_CONFIG_H
#define AQ_QUEUE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef struct aq_queue_config {
    /* connection */
    char *nats_url;            /* comma-separated list */
    char *nats_creds;          /* credentials (JWT + nkey seed) file */
    char *nats_user;
    char *nats_password;       /* secret */
    char *nats_token;          /* secret */
    char *nats_tls_ca;
    char *nats_tls_cert;
    char *nats_tls_key;
    int64_t nats_timeout_ms;   /* connect and JetStream API requests */
    char *nats_inbox_prefix;   /* replies and deliveries come to <prefix>.<nuid>... */
    /* JetStream objects */
    char *task_stream;
    char *task_subjects;       /* prefix: tasks are published on <prefix>.<type> */
    char *consumer;
    char *dlq_stream;
    char *dlq_subjects;        /* prefix: dead letters go to <prefix>.<type> */
    char *results_bucket;
    int64_t replicas;
    int64_t results_ttl_ms;
    int64_t dedup_window_ms;
    int64_t stream_max_msgs;
    int64_t stream_max_bytes;
    int64_t max_msg_size;
    int64_t ack_wait_ms;
    int64_t max_deliver;
    int64_t max_ack_pending;
    int64_t dlq_max_age_ms;
    char *advisory_stream;     /* captures the consumer's MAX_DELIVERIES advisories */
    char *backstop_consumer;   /* durable consumer on it, shared by the workers */
    char *deferred_stream;     /* tasks parked until their tenant's budget allows them */
    char *deferred_subjects;   /* prefix: parked tasks go to <prefix>.<tenant> */
} aq_queue_config;

/* Option rows for a config struct `T` that embeds aq_queue_config as `m`. */
#define AQ_QUEUE_OPTIONS(T, m)                                                                   \
    {"nats_url", "AGENTQ_NATS_URL", AQ_OPT_NATS_URLS, "nats://127.0.0.1:4222", 0, 0,                 \
     offsetof(T, m.nats_url), "NATS server URL(s), comma-separated (tls:// for TLS)"},            \
    {"nats_creds", "AGENTQ_NATS_CREDS", AQ_OPT_FILE,   "", 0, 0, offsetof(T, m.nats_creds),       \
     "NATS credentials file (JWT and nkey seed)"},                                               \
    {"nats_user", "AGENTQ_NATS_USER", AQ_OPT_STRING, "", 0, 0, offsetof(T, m.nats_user),          \
     "NATS user name"},                                                                          \
    {"nats_password", "AGENTQ_NATS_PASSWORD", AQ_OPT_SECRET, "", 0, 0,                            \
     offsetof(T, m.nats_password), "NATS password"},                                             \
    {"nats_token", "AGENTQ_NATS_TOKEN", AQ_OPT_SECRET, "", 0, 0, offsetof(T, m.nats_token),       \
     "NATS authentication token"},                                                               \
    {"nats_tls_ca", "AGENTQ_NATS_TLS_CA", AQ_OPT_FILE,   "", 0, 0, offsetof(T, m.nats_tls_ca),    \
     "CA certificate file to verify the NATS server (verification is always on)"},               \
    {"nats_tls_cert", "AGENTQ_NATS_TLS_CERT", AQ_OPT_FILE,   "", 0, 0,                            \
     offsetof(T, m.nats_tls_cert), "client certificate file for NATS mutual TLS"},               \
    {"nats_tls_key", "AGENTQ_NATS_TLS_KEY", AQ_OPT_FILE,   "", 0, 0,                              \
     offsetof(T, m.nats_tls_key), "client private key file for NATS mutual TLS"},                \
    {"nats_timeout", "AGENTQ_NATS_TIMEOUT", AQ_OPT_DURATION, "5s", 100, 600000,                   \
     offsetof(T, m.nats_timeout_ms), "timeout for connecting and for JetStream API calls"},      \
    {"nats_inbox_prefix", "AGENTQ_NATS_INBOX_PREFIX", AQ_OPT_SUBJECT, "_INBOX", 0, 0,              \
     offsetof(T, m.nats_inbox_prefix),                                                           \
     "subject prefix of this program's reply inboxes (grant each NATS user only its own)"},      \
    {"task_stream", "AGENTQ_TASK_STREAM", AQ_OPT_JS_NAME, "AGENTQ_TASKS", 0, 0,                    \
     offsetof(T, m.task_stream), "JetStream stream holding tasks"},                              \
    {"task_subjects", "AGENTQ_TASK_SUBJECTS", AQ_OPT_SUBJECT, "agentq.tasks", 0, 0,                \
     offsetof(T, m.task_subjects), "subject prefix: tasks go to <prefix>.<type>"},               \
    {"consumer", "AGENTQ_CONSUMER", AQ_OPT_JS_NAME, "agentq-workers", 0, 0,                        \
     offsetof(T, m.consumer), "durable pull consumer shared by all workers"},                    \
    {"dlq_stream", "AGENTQ_DLQ_STREAM", AQ_OPT_JS_NAME, "AGENTQ_DLQ", 0, 0,                        \
     offsetof(T, m.dlq_stream), "stream holding dead letters"},                                  \
    {"dlq_subjects", "AGENTQ_DLQ_SUBJECTS", AQ_OPT_SUBJECT, "agentq.dlq", 0, 0,                    \
     offsetof(T, m.dlq_subjects), "subject prefix: dead letters go to <prefix>.<type>"},         \
    {"results_bucket", "AGENTQ_RESULTS_BUCKET", AQ_OPT_BUCKET, "agentq-results", 0, 0,            \
     offsetof(T, m.results_bucket), "KV bucket holding results under the task id"},              \
    {"replicas", "AGENTQ_REPLICAS", AQ_OPT_INT, "1", 1, 5, offsetof(T, m.replicas),               \
     "replicas of every stream and bucket (3 in a production cluster)"},                         \
    {"results_ttl", "AGENTQ_RESULTS_TTL", AQ_OPT_DURATION, "1h", 1000, 31536000000.0,             \
     offsetof(T, m.results_ttl_ms), "how long results are kept"},                                \
    {"dedup_window", "AGENTQ_DEDUP_WINDOW", AQ_OPT_DURATION, "2m", 1000, 604800000.0,             \
     offsetof(T, m.dedup_window_ms), "window in which a repeated Nats-Msg-Id is dropped"},       \
    {"stream_max_msgs", "AGENTQ_STREAM_MAX_MSGS", AQ_OPT_INT, "10000000", 1, 1e12,                \
     offsetof(T, m.stream_max_msgs), "queued tasks at most; then publishes are refused"},        \
    {"stream_max_bytes", "AGENTQ_STREAM_MAX_BYTES", AQ_OPT_BYTES, "10GiB", 1048576, 1e15,          \
     offsetof(T, m.stream_max_bytes), "bytes of queued tasks at most; then publishes are refused"}, \
    {"max_msg_size", "AGENTQ_MAX_MSG_SIZE", AQ_OPT_BYTES, "4MiB", 1024, 67108864,                 \
     offsetof(T, m.max_msg_size), "largest task payload the stream accepts"},                    \
    {"ack_wait", "AGENTQ_ACK_WAIT", AQ_OPT_DURATION, "30s", 1000, 43200000,                       \
     offsetof(T, m.ack_wait_ms), "redeliver a task not acked (or marked in progress) in this time"}, \
    {"max_deliver", "AGENTQ_MAX_DELIVER", AQ_OPT_INT, "10", 2, 100000,                            \
     offsetof(T, m.max_deliver),                                                                 \
     "deliveries of one task at most (crashes and hand-backs; retries do not count), then it is dead-lettered as max_deliveries"}, \
    {"max_ack_pending", "AGENTQ_MAX_ACK_PENDING", AQ_OPT_INT, "20000", 1, 1000000,                \
     offsetof(T, m.max_ack_pending), "tasks in flight across the whole fleet at most"},          \
    {"dlq_max_age", "AGENTQ_DLQ_MAX_AGE", AQ_OPT_DURATION, "720h", 60000, 31536000000.0,          \
     offsetof(T, m.dlq_max_age_ms), "how long dead letters are kept"},                           \
    {"advisory_stream", "AGENTQ_ADVISORY_STREAM", AQ_OPT_JS_NAME, "AGENTQ_ADVISORIES", 0, 0,       \
     offsetof(T, m.advisory_stream),                                                             \
     "stream keeping the consumer's MAX_DELIVERIES advisories until a worker dead-letters the task"}, \
    {"backstop_consumer", "AGENTQ_BACKSTOP_CONSUMER", AQ_OPT_JS_NAME, "agentq-backstop", 0, 0,      \
     offsetof(T, m.backstop_consumer), "durable consumer of the advisory stream, shared by all workers"}, \
    {"deferred_stream", "AGENTQ_DEFERRED_STREAM", AQ_OPT_JS_NAME, "AGENTQ_DEFERRED", 0, 0,         \
     offsetof(T, m.deferred_stream),                                                             \
     "stream parking the tasks of a spent budget until it resets or is raised (budget_action=defer)"}, \
    {"deferred_subjects", "AGENTQ_DEFERRED_SUBJECTS", AQ_OPT_SUBJECT, "agentq.deferred", 0, 0,     \
     offsetof(T, m.deferred_subjects), "subject prefix: parked tasks go to <prefix>.<tenant>"}

/* Checks across the queue options that one row cannot express (queue_config.c):
 * TLS certificate and key together, a password only with a user, distinct
 * streams and subject prefixes. Each row's own syntax is checked when set. */
aq_status aq_queue_config_validate(const aq_queue_config *cfg, aq_err *err);
/* Whether subjects under prefixes a and b (a.> and b.>) can be the same. */
bool aq_queue_subjects_overlap(const char *a, const char *b);

#endif
