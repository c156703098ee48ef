/* Fleet status: the small stats snapshot every worker publishes on
 * `<status_subject>.<worker>` every few seconds, and its JSON encoding.
 *
 * The snapshot is a plain struct (a worker fills it, `agentq status` reads
 * it). On the wire it is one JSON object with a `v` version field:
 *
 *   {"v":1,"worker":"w1","version":"0.1.0","pid":42,
 *    "started_ms":..,"sent_ms":..,"interval_ms":5000,"stopping":false,
 *    "concurrency":64,"owned":12,"llm_in_flight":10,
 *    "counters":{"fetched":..,"completed":..,"failed":..,"dead_lettered":..,
 *                "already_done":..,"retried":..,"deferred":..,"llm_calls":..,
 *                "responses_429":..,"responses_529":..,"cache_hits":..,"cache_misses":..},
 *    "window":{"seconds":60,"completed":..,"completed_per_s":..,"p50_ms":..,"p99_ms":..,
 *              "llm_calls":..,"responses_429":..,"share_429":..},
 *    "queue":{"probed_ms":..,"pending":..,"ack_pending":..,"dlq_messages":..,
 *             "pending_60s_ago":..},
 *    "cost":{"day":"2025-01-31","today_micro_usd":..,
 *            "budgets":[{"tenant":"acme","remaining_micro_usd":..}]}}
 *
 * Compatibility: fields are only ever added within one `v`; a reader ignores
 * fields it does not know and takes a missing one as its "unknown" value
 * (0, or -1 where the struct says so). `v` changes only when a field changes
 * meaning, and a reader refuses a `v` it does not know (AQ_INVALID_ARG): a
 * misread number on an operator's screen is worse than a missing worker.
 *
 * The snapshot crosses the network from any process that can publish on the
 * subject, so decoding caps everything: the text, every string and the
 * budget list.
 */
#ifndef AQ_FLEET_SNAPSHOT_H
#define AQ_FLEET_SNAPSHOT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"

#define AQ_FLEET_SNAPSHOT_VERSION 1
/* Largest encoded snapshot: 32 budgets of 64-byte tenants are ~4 KiB. */
#define AQ_FLEET_SNAPSHOT_JSON_MAX 16384
#define AQ_FLEET_WORKER_MAX 64  /* bytes of a worker name */
#define AQ_FLEET_VERSION_MAX 32 /* bytes of a version string */
#define AQ_FLEET_TENANT_MAX 64  /* bytes of a tenant name */
#define AQ_FLEET_BUDGETS_MAX 32 /* tenants with a budget, per snapshot */
#define AQ_FLEET_WINDOW_S 60    /* the windowed figures cover this many seconds */
#define AQ_FLEET_PREFIX_MAX 200 /* bytes of a status subject prefix */
/* The defaults of status_subject and status_interval, shared by the worker
 * (which publishes) and `agentq status` (which listens): they must agree. */
#define AQ_FLEET_DEFAULT_SUBJECT "agentq.status"
#define AQ_FLEET_DEFAULT_INTERVAL "5s"

/* Cumulative since the worker started. */
typedef struct aq_fleet_counters {
    int64_t fetched;       /* messages fetched from the consumer */
    int64_t completed;     /* results stored COMPLETED and acked */
    int64_t failed;        /* results stored FAILED */
    int64_t dead_lettered; /* published to the DLQ */
    int64_t already_done;  /* redeliveries whose result already existed */
    int64_t retried;       /* nak-with-delay after a retryable failure */
    int64_t deferred;      /* nak-with-delay after a 429/529 */
    int64_t llm_calls;     /* HTTP calls to the provider */
    int64_t responses_429;
    int64_t responses_529;
    int64_t cache_hits;
    int64_t cache_misses;
} aq_fleet_counters;

/* Computed by the worker over the last AQ_FLEET_WINDOW_S seconds. */
typedef struct aq_fleet_window {
    int64_t completed; /* tasks completed in the window (the weight of p50) */
    double completed_per_s;
    int64_t p50_ms;    /* end-to-end latency (task created -> acked); -1 unknown */
    int64_t p99_ms;    /* -1 unknown (nothing completed in the window) */
    int64_t llm_calls; /* calls answered in the window */
    int64_t responses_429;
    double share_429; /* responses_429 / llm_calls; 0 without calls */
} aq_fleet_window;

/* What the worker last saw of the queue (-1: not probed / unknown). */
typedef struct aq_fleet_queue {
    int64_t probed_ms;       /* unix ms of the probe; 0 never */
    int64_t pending;         /* consumer NumPending */
    int64_t ack_pending;     /* consumer NumAckPending */
    int64_t dlq_messages;    /* DLQ stream State.Msgs */
    int64_t pending_60s_ago; /* pending about 60 s before probed_ms (the trend) */
} aq_fleet_queue;

typedef struct aq_fleet_budget {
    char tenant[AQ_FLEET_TENANT_MAX + 1];
    int64_t remaining_micro_usd; /* may be negative: overspent */
} aq_fleet_budget;

typedef struct aq_fleet_snapshot {
    int v;                                  /* AQ_FLEET_SNAPSHOT_VERSION */
    char worker[AQ_FLEET_WORKER_MAX + 1];   /* required, non-empty */
    char version[AQ_FLEET_VERSION_MAX + 1]; /* the worker's agentq version */
    int64_t pid;
    int64_t started_ms;    /* unix ms */
    int64_t sent_ms;       /* unix ms; required, > 0 */
    int64_t interval_ms;   /* the sender's reporting interval; 0 unknown */
    bool stopping;         /* the last snapshot of a stopping worker */
    int64_t concurrency;   /* configured concurrent tasks */
    int64_t owned;         /* tasks fetched and not yet settled */
    int64_t llm_in_flight; /* provider calls running now */
    aq_fleet_counters counters;
    aq_fleet_window window;
    aq_fleet_queue queue;
    char cost_day[11]; /* "YYYY-MM-DD" (UTC) that cost_today covers; "" unknown */
    int64_t cost_today_micro_usd;
    size_t n_budgets;
    aq_fleet_budget budgets[AQ_FLEET_BUDGETS_MAX];
} aq_fleet_snapshot;

/* Zero everything and set the "unknown" values: v, -1 for the latencies and
 * the queue figures. Every producer starts from this. */
void aq_fleet_snapshot_init(aq_fleet_snapshot *s);

/* The snapshot as a new JSON object (the layout above); NULL only when out of
 * memory. The caller has validated nothing: strings are copied as they are
 * (jansson refuses invalid UTF-8, which makes this fail -> NULL). */
json_t *aq_fleet_snapshot_to_json(const aq_fleet_snapshot *s);

/* Encode into `out` (replacing its contents), compact. AQ_INVALID_ARG for
 * an empty worker or n_budgets over the cap, AQ_TOO_BIG over
 * AQ_FLEET_SNAPSHOT_JSON_MAX or the buffer's own cap. */
aq_status aq_fleet_snapshot_encode(const aq_fleet_snapshot *s, aq_buf *out, aq_err *err);

/* Decode `len` bytes of JSON. Unknown fields are ignored, missing ones take
 * their unknown value. Errors: AQ_TOO_BIG (text over the cap, a string over
 * its cap, more than AQ_FLEET_BUDGETS_MAX budgets), AQ_INVALID_ARG (not JSON,
 * not an object, wrong types, negative counters, missing v/worker/sent_ms,
 * an unknown v). `out` is written only on success. */
aq_status aq_fleet_snapshot_decode(const char *json, size_t len, aq_fleet_snapshot *out,
                                   aq_err *err);

/* Copy `worker` into one NATS subject token: [A-Za-z0-9_-] kept, every other
 * byte '_', at most AQ_FLEET_WORKER_MAX bytes. AQ_INVALID_ARG when empty. */
aq_status aq_fleet_subject_token(const char *worker, char *out, size_t n, aq_err *err);

/* Whether `prefix` is a usable subject prefix: non-empty dot-separated
 * tokens without wildcards, spaces or control bytes, at most
 * AQ_FLEET_PREFIX_MAX bytes. */
bool aq_fleet_prefix_valid(const char *prefix);

#endif
