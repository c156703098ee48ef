/* Tool calls over NATS request/reply, many in flight on one connection,
 * none blocking the event loop.
 *
 * A tool NAME is called on `<tool_subject_prefix>.NAME` (or the subject
 * `tool_subjects` maps it to). The request body is the tool input (JSON);
 * its headers:
 *   Agentq-Idempotency-Key  given by the caller: task id + ":" + the model's
 *                           tool_use id, the same on every attempt and on
 *                           every redelivery of the run
 *   Agentq-Task-Id, Agentq-Tenant, Agentq-Step (1-based model step)
 *   Agentq-Deadline         Unix ms after which the worker stops waiting for
 *                           this attempt (the attempt timeout or the task's
 *                           deadline, whichever is first)
 *
 * The reply (at most tool_max_reply_bytes, valid UTF-8):
 *   {"content": "text" | [blocks], "is_error": false, "permanent": false}
 *     content: a string, or content blocks as the Messages API's
 *     tool_result takes them: [{"type":"text","text":"..."},
 *     {"type":"image","source":{...}}, {"type":"document",...}];
 *     is_error (optional): the tool failed, the model sees it;
 *     permanent (optional): the run cannot succeed (it ends FAILED);
 *   anything else (plain text, or JSON without "content") is the text
 *   content as it is;
 *   a NATS micro service error (headers Nats-Service-Error and
 *   Nats-Service-Error-Code) is an is_error result with that text.
 * Each attempt has one reply subject (under one wildcard inbox subscription)
 * and its own timer. A timeout or "no responders" (the server's 503 status
 * reply: no service listens on the subject) is retried after a jittered
 * backoff up to tool_max_attempts; a bad reply or a permanent failure is not.
 *
 * Threads: every function here runs on the loop thread (the event_base
 * given to _new). Replies arrive on nats.c's threads and are handed to the
 * loop through the mailbox; `done` always runs on the loop thread. */
#ifndef AQ_TOOL_TOOL_DISPATCH_H
#define AQ_TOOL_TOOL_DISPATCH_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mailbox.h"
#include "core/status.h"
#include "tool/tool_config.h"

struct event_base;

/* Outcome names are the strings of agentq.v1.ToolCallRecord.outcome. */
#define AQ_TOOL_OUTCOME_MAP(X)                                                                 \
    X(OK, "ok")                         /* the tool answered */                                 \
    X(ERROR, "error")                   /* the tool answered is_error */                        \
    X(SCHEMA_VIOLATION, "schema_violation") /* not dispatched (the caller's validation) */      \
    X(TIMEOUT, "timeout")               /* no answer in time, on every attempt */               \
    X(NO_RESPONDERS, "no_responders")   /* no service on the subject, on every attempt */       \
    X(BAD_REPLY, "bad_reply")           /* over the cap, not UTF-8, malformed content */        \
    X(PERMANENT_FAILURE, "permanent_failure") /* the tool says the run cannot succeed */        \
    X(CANCELLED, "cancelled")           /* the dispatcher was destroyed first */

typedef enum aq_tool_outcome {
#define AQ_X_TOOL_OUTCOME(name, str) AQ_TOOL_##name,
    AQ_TOOL_OUTCOME_MAP(AQ_X_TOOL_OUTCOME)
#undef AQ_X_TOOL_OUTCOME
} aq_tool_outcome;

const char *aq_tool_outcome_name(aq_tool_outcome o);

/* ^[a-zA-Z0-9_-]{1,64}$, the Messages API's rule for tool names. */
bool aq_tool_name_valid(const char *name);

/* ---- replies (also used by the fuzzer and tests) ---- */

typedef struct aq_tool_reply {
    aq_tool_outcome outcome; /* OK, ERROR, PERMANENT_FAILURE or BAD_REPLY */
    bool is_error;
    char *content_json; /* malloc'd: a JSON string or a JSON array of blocks */
} aq_tool_reply;

/* Decode a reply body (the format above). Never fails on the tool's bytes:
 * a bad body gives outcome BAD_REPLY, is_error and a content that says why
 * (the same text in err). Returns AQ_NOMEM only. */
aq_status aq_tool_reply_decode(const char *data, size_t len, size_t max_bytes, aq_tool_reply *out,
                               aq_err *err);
void aq_tool_reply_clear(aq_tool_reply *r);

/* ---- calls ---- */

typedef struct aq_tool_dispatcher aq_tool_dispatcher;
typedef struct aq_tool_call aq_tool_call;
typedef void (*aq_tool_done_fn)(aq_tool_call *call);

struct aq_tool_call {
    /* in: set before aq_tool_call_start; copied there (need not outlive it) */
    const char *name;            /* ^[a-zA-Z0-9_-]{1,64}$ */
    const char *input;           /* JSON text */
    size_t input_len;
    const char *idempotency_key; /* task id + ":" + tool_use id; required */
    const char *task_id;         /* may be NULL: header omitted */
    const char *tenant;          /* may be NULL */
    uint32_t step;               /* 0: header omitted */
    int64_t deadline_unix_ms;    /* 0: none; the task's deadline */
    aq_tool_done_fn done;
    void *ctx;

    /* out: valid in `done` */
    aq_tool_outcome outcome;
    bool is_error;               /* true unless outcome OK */
    char *content_json;          /* malloc'd, the caller frees it (aq_tool_call_clear):
                                    the tool_result content, a JSON string or an array
                                    of blocks; for failures a text saying what happened */
    uint32_t attempts;           /* requests sent */
    int64_t latency_ms;          /* start to done */
    aq_err err;                  /* why, for outcomes other than OK and ERROR */

    /* private */
    struct aq_tool_inflight *priv;
};

/* Subscribes one wildcard inbox on `nc`. `cfg` is checked
 * (aq_tool_config_check) and copied. `nc`, `base` and `mb` must outlive
 * the dispatcher. */
aq_status aq_tool_dispatcher_new(natsConnection *nc, const aq_tool_config *cfg,
                                 struct event_base *base, aq_mailbox *mb,
                                 aq_tool_dispatcher **out, aq_err *err);

/* The subject a tool name is called on (NULL for an invalid name). */
const char *aq_tool_dispatcher_subject(const aq_tool_dispatcher *d, const char *name,
                                       char *buf, size_t n);

/* Loop thread. Starts `call`; `call->done(call)` runs later on the loop
 * thread, never inside this function, exactly once. AQ_INVALID_ARG (bad
 * name, missing key or done, input over AQ_TOOL_INPUT_MAX_BYTES) or
 * AQ_NOMEM: then nothing was started and done never runs. `call` is
 * caller-owned and must stay alive until done. */
aq_status aq_tool_call_start(aq_tool_dispatcher *d, aq_tool_call *call, aq_err *err);

/* Frees what `done` left in the call (content_json). Accepts NULL. */
void aq_tool_call_clear(aq_tool_call *call);

/* Counters (loop thread). */
typedef struct aq_tool_dispatcher_stats {
    uint64_t started, completed, requests, retries;
    size_t in_flight;
} aq_tool_dispatcher_stats;
void aq_tool_dispatcher_stats_get(const aq_tool_dispatcher *d, aq_tool_dispatcher_stats *out);

/* Loop thread, with the loop stopped. Unsubscribes and waits until nats.c
 * calls nothing more, then completes every call not done yet with outcome
 * CANCELLED (its done runs inside this call), and frees. Do not run the
 * mailbox again afterwards for this dispatcher's posts (a reply already
 * handed to the mailbox refers to memory freed here: the same contract as
 * aq_kv_getter_destroy). Accepts NULL. */
void aq_tool_dispatcher_destroy(aq_tool_dispatcher *d);

#endif
