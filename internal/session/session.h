/* Sessions: a conversation continued by several tasks, kept in the KV bucket
 * agentq-sessions (agentq.v1.Session, schemas/agentq/v1/run.proto).
 *
 * Keys: `<session id>.history` holds the history (every turn a completed
 * task added, with its task id: an audit trail, oldest turns dropped only to
 * stay under session_max_bytes, counted in dropped_turns); `<session
 * id>.lease` says which task runs now. The two suffixes differ in their last
 * token, so no session's history key is another's lease key.
 *
 * One task of a session at a time (the lease):
 *   acquire   create the lease key (expected revision 0 or the delete
 *             marker's) with {task id, holder, expires}; a lease that is
 *             ours (the same task id: a redelivery after a crash) or expired
 *             (its holder stopped renewing it) is taken over with a
 *             compare-and-set update on the revision read, so of two
 *             contenders exactly one wins. Otherwise AQ_SESSION_BUSY (its
 *             disposition is a deferral: the pipeline hands the task back
 *             with a delay and it runs after the holder).
 *   renew     while running (the pipeline: after every step), a CAS update
 *             pushing `expires` out; AQ_WRITE_CONFLICT means the lease was
 *             taken over (we were presumed dead).
 *   release   after the turn is appended (or the run failed), a delete marker
 *             written with the revision we hold; AQ_WRITE_CONFLICT: someone
 *             took it over meanwhile, nothing of ours to release.
 *
 * Crash windows. A holder that crashes between acquire and release leaves
 * its lease: its own redelivery takes it back at once (same task id); a
 * task that is never redelivered (dead-lettered) holds up the session's other
 * tasks until the lease expires (session_lease_ttl after the last renewal).
 * A crash between the append and the release: the redelivery finds its
 * turn already in the history (appends are idempotent by task id), and
 * releases. A holder that stalls past its expiry (not crashed) while another
 * task takes the lease over: its appends are still compare-and-set on the
 * history, so neither turn is lost, but the newer task did not see the older
 * turn (the renewal's AQ_WRITE_CONFLICT tells the stalled holder; choose
 * session_lease_ttl well above a step's duration).
 *
 * What is sent to the model: the newest messages of the history that fit
 * session_context_tokens (aq_session_window), then the task's messages. */
#ifndef AQ_SESSION_SESSION_H
#define AQ_SESSION_SESSION_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentq/v1/run.pb-c.h"
#include "core/buf.h"
#include "core/status.h"
#include "queue/queue_kvread.h"

#define AQ_SESSION_HISTORY_SUFFIX ".history"
#define AQ_SESSION_LEASE_SUFFIX ".lease"
/* Compare-and-set attempts of one append or acquire before AQ_WRITE_CONFLICT. */
#define AQ_SESSION_CAS_TRIES 16

/* The two keys of a session; AQ_INVALID_ARG for an id that breaks the task
 * id rules (task_codec.h). Both buffers at least AQ_KV_KEY_MAX + 1. */
aq_status aq_session_keys(const char *session_id, char *history_key, char *lease_key,
                          aq_err *err);

/* ---- the history (pure) ---- */

aq_status aq_session_decode(const void *data, size_t len, size_t cap, Agentq__V1__Session **out,
                            aq_err *err);
aq_status aq_session_encode(const Agentq__V1__Session *s, size_t cap, aq_buf *out, aq_err *err);
void aq_session_free(Agentq__V1__Session *s); /* accepts NULL */

/* Every message of the history, oldest first: a malloc'd array (free it) of
 * pointers into `s`. `s` may be NULL (no history: *n = 0). */
aq_status aq_session_messages(const Agentq__V1__Session *s, const Agentq__V1__Message ***out,
                              size_t *n, aq_err *err);

/* Estimated tokens of a message: ceil(bytes / 4) over its text, tool inputs,
 * tool results and media bytes (the estimate internal/route uses). */
int64_t aq_session_message_tokens(const Agentq__V1__Message *m);

/* The start of what is sent to the model: the smallest i such that
 * msgs[i..n) fits `budget_tokens` and msgs[i] is a user turn without
 * tool_result blocks (so the window starts with a user turn and never
 * separates a tool_result from the tool_use it answers). n when nothing
 * fits. */
size_t aq_session_window(const Agentq__V1__Message *const *msgs, size_t n, int64_t budget_tokens);

/* Add a task's turn (its messages, copied) to `*s` (NULL: a new session,
 * created here). Already there (the same task id: a redelivery) leaves it
 * unchanged with *appended false. Then the oldest turns are dropped while
 * the encoded history is over `max_bytes`; a turn that alone is over it is
 * AQ_TOO_BIG. */
aq_status aq_session_add_turn(Agentq__V1__Session **s, const char *session_id, const char *task_id,
                              const Agentq__V1__Message *const *msgs, size_t n, int64_t now_unix_ms,
                              size_t max_bytes, bool *appended, aq_err *err);

/* ---- the store ---- */

/* A completed read of the history key (aq_kv_getter or aq_kv_read_now):
 * AQ_OK with *out, or AQ_NOT_FOUND (no history yet; *rev = the revision the
 * first write names). For the worker's loop: then aq_session_add_turn,
 * aq_session_encode, aq_kv_cas_msg (agent_store.h) and aq_publisher_send. */
aq_status aq_session_from_read(const aq_kv_read *rd, size_t cap, Agentq__V1__Session **out,
                               uint64_t *rev, aq_err *err);

/* Synchronous load of the history. */
aq_status aq_session_load(jsCtx *js, const char *bucket, const char *session_id, int64_t timeout_ms,
                          size_t cap, Agentq__V1__Session **out, uint64_t *rev, aq_err *err);

/* Synchronous, idempotent append: load, add the turn, write expecting the
 * revision loaded, and on a lost race start again (AQ_SESSION_CAS_TRIES). */
aq_status aq_session_append(jsCtx *js, const char *bucket, const char *session_id,
                            const char *task_id, const Agentq__V1__Message *const *msgs, size_t n,
                            int64_t now_unix_ms, size_t max_bytes, int64_t timeout_ms,
                            bool *appended, aq_err *err);

/* ---- the lease ---- */

typedef struct aq_session_lease {
    uint64_t revision;          /* held: the revision we wrote */
    char holder_task[129];      /* AQ_SESSION_BUSY: the task that holds it */
    int64_t expires_unix_ms;    /* held: ours; busy: theirs */
} aq_session_lease;

/* Synchronous (a thread that may block). The worker's loop composes the same
 * steps from the pieces below: read the lease key with aq_kv_getter,
 * aq_session_lease_decide, aq_session_lease_msg, aq_publisher_send (a
 * completion with AQ_WRITE_CONFLICT: read again). */
aq_status aq_session_lease_acquire(jsCtx *js, const char *bucket, const char *session_id,
                                   const char *task_id, const char *holder, int64_t ttl_ms,
                                   int64_t now_unix_ms, int64_t timeout_ms, aq_session_lease *l,
                                   aq_err *err);
aq_status aq_session_lease_renew(jsCtx *js, const char *bucket, const char *session_id,
                                 const char *task_id, const char *holder, int64_t ttl_ms,
                                 int64_t now_unix_ms, aq_session_lease *l, aq_err *err);
aq_status aq_session_lease_release(jsCtx *js, const char *bucket, const char *session_id,
                                   const aq_session_lease *l, aq_err *err);

/* A completed read of the lease key: AQ_OK = free, ours or expired (write
 * the lease expecting *rev); AQ_SESSION_BUSY = held by another task (*busy
 * says which, until when); or the read's failure. */
aq_status aq_session_lease_decide(const aq_kv_read *rd, const char *task_id, int64_t now_unix_ms,
                                  uint64_t *rev, aq_session_lease *busy, aq_err *err);
/* The lease write (acquire and renew) expecting revision `rev`;
 * *expires_unix_ms (may be NULL) = the expiry written. */
aq_status aq_session_lease_msg(const char *bucket, const char *session_id, const char *task_id,
                               const char *holder, int64_t ttl_ms, int64_t now_unix_ms,
                               uint64_t rev, natsMsg **out, int64_t *expires_unix_ms, aq_err *err);

#endif
