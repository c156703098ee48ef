/* Pipelined reads of a KV key's latest entry: many requests in flight on one
 * NATS connection, none of them blocking the event loop or waiting for the
 * one before it.
 *
 * The read is JetStream's "direct get": a core request to
 * `$JS.API.DIRECT.GET.KV_<bucket>` with `{"last_by_subj":"$KV.<bucket>.<key>"}`,
 * answered by any replica with the stored message and its headers
 * (Nats-Sequence = revision, KV-Operation = DEL/PURGE for markers) or with a
 * `Status: 404` when the key has no entry. Every request carries its own
 * reply subject under one wildcard inbox subscription, so thousands can be in
 * flight at once where aq_kv_read_now does one round trip at a time.
 *
 * Completions use the same `aq_kv_read` as aq_kv_read_now (same fields, same
 * meaning, freed with aq_kv_read_clear).
 *
 * The stream behind the bucket must have AllowDirect (nats.c 3.4.1's
 * js_CreateKeyValue sets it; `agentq init` sets it on an existing bucket).
 * Without it the server does not answer at all, so aq_kv_getter_new checks
 * it and refuses with AQ_CONFIG.
 *
 * Latency: nats.c holds a publish for about a millisecond so that it goes
 * out with the next ones (its flusher thread), unless the connection was
 * made with natsOptions_SetSendAsap. With many reads in flight that batching
 * is what makes them cheap; with one or two in flight each read pays that
 * millisecond (tests/bench/kvget_bench measures both). */
#ifndef AQ_QUEUE_KVGET_H
#define AQ_QUEUE_KVGET_H

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mailbox.h"
#include "core/status.h"
#include "queue/queue_kvread.h"

struct event_base;

typedef struct aq_kv_getter aq_kv_getter;

typedef struct aq_kv_getter_config {
    int64_t timeout_ms;     /* per read, counted from its send; > 0 */
    int max_in_flight;      /* sent and unanswered, 1..AQ_KV_GETTER_MAX_IN_FLIGHT;
                               reads past it wait in a local FIFO (callers bound it) */
    size_t max_value_bytes; /* a longer value completes with AQ_TOO_BIG; > 0 */
} aq_kv_getter_config;

#define AQ_KV_GETTER_MAX_IN_FLIGHT 65536

/* Counters since _new (loop thread). */
typedef struct aq_kv_getter_stats {
    uint64_t sent;      /* requests published */
    uint64_t completed; /* reads handed back, any status (includes the next two) */
    uint64_t timeouts;  /* no answer within timeout_ms (a late answer is dropped) */
    uint64_t errors;    /* other failures: publish error, bad key, bad answer, too big */
    size_t in_flight;   /* sent, not answered yet */
    size_t queued;      /* waiting for a free in-flight slot */
} aq_kv_getter_stats;

/* Subscribes a wildcard inbox on `nc` and checks the bucket's stream
 * (through `js`, once): AQ_NOT_FOUND if the bucket does not exist, AQ_CONFIG
 * if it has no direct get ("run `agentq init`"). `base` and `mb` are the
 * loop's: timeouts run on `base`, answers come back through `mb`. All four
 * must outlive the getter. */
aq_status aq_kv_getter_new(natsConnection *nc, jsCtx *js, const char *bucket,
                           const aq_kv_getter_config *cfg, struct event_base *base, aq_mailbox *mb,
                           aq_kv_getter **out, aq_err *err);

/* Loop thread only. Starts a read of `key`'s latest entry; `done(r)` runs
 * later on the loop thread, never inside this call, exactly once (unless the
 * getter is destroyed first). `r` is caller-owned and must stay alive until
 * then; it is reset here, so a completed `r` (cleared) may be reused.
 * A key that is not a valid KV key (empty, over AQ_KV_KEY_MAX, characters
 * outside [-/_=.a-zA-Z0-9], a leading or trailing '.') completes with
 * AQ_INVALID_ARG. In `done`: r->status AQ_OK (r->msg holds the entry, maybe a
 * delete/purge marker: r->deleted), AQ_NOT_FOUND, AQ_TIMEOUT, AQ_TOO_BIG or
 * AQ_NATS, with r->err filled on failures. */
void aq_kv_getter_get(aq_kv_getter *kg, aq_kv_read *r, const char *key, aq_kv_read_fn done,
                      void *ctx);

void aq_kv_getter_stats_get(const aq_kv_getter *kg, aq_kv_getter_stats *out);

/* Unsubscribes and waits until nats.c will call nothing more, then frees.
 * Reads not completed yet are dropped: their `done` never runs and their
 * `r` is not touched again. Call it on the loop thread with the loop
 * stopped, and do not run the loop (the mailbox) again afterwards: a
 * completion already handed to the mailbox refers to memory freed here
 * (so the caller frees what the reads point at only after this). Accepts NULL. */
void aq_kv_getter_destroy(aq_kv_getter *kg);

#endif
