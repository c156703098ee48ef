/* The pipeline's insides, shared by its files and by nothing else:
 *   pipeline.c        fetch, admit, ownership of long calls, shutdown, set-up
 *   pipeline_call.c   route, coalesce, rate budget, the LLM call, classify
 *   pipeline_cache.c  the response cache: look up, share one call, store
 *   pipeline_store.c  the Result (compare-and-set), dead letters
 *   pipeline_job.c    a job's life: timers, dispose (status -> wait, retry or
 *                     failure), settle (ack, term or hand back), release
 *   pipeline_spend.c  the tenants' daily spending budgets: reserve before a
 *                     call, settle after it, defer or fail when spent
 *   pipeline_agent.c  agent runs: checkpoints, the step loop, tool calls
 * Everything here runs on the loop thread unless it says otherwise. */
#ifndef AQ_PIPELINE_JOB_H
#define AQ_PIPELINE_JOB_H

#include <event2/event.h>
#include "core/clock.h"
#include "pipeline/worker_metrics.h"
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "budget/budget.h"
#include "cache/cache_key.h"
#include "core/buf.h"
#include "cost/cost.h"
#include "route/route.h"
#include "core/list.h"
#include "core/log.h"
#include "core/mailbox.h"
#include "core/ptrmap.h"
#include "llm/llm_client.h"
#include "llm/llm_request.h"
#include "llm/llm_response.h"
#include "pipeline/backstop.h"
#include "pipeline/pipeline.h"
#include "queue/queue_conn.h"
#include "queue/queue_fetch.h"
#include "queue/queue_kvget.h"
#include "queue/queue_publish.h"
#include "ratelimit/ratelimit.h"
#include "task/task_codec.h"

/* Where a job is. The stages marked (cb) have a callback outstanding that
 * will come back to the job, so nothing may free it in the meantime. */
typedef enum job_stage {
    STAGE_QUEUED,    /* handed to the loop, not started */
    STAGE_CHECKING,  /* (cb) reading its stored Result */
    STAGE_FOLLOWING, /* the same task id is in flight here: waiting for that one */
    STAGE_SHARING,   /* an identical cacheable request is in flight: waiting for its answer */
    STAGE_CALLING,   /* LLM call in flight (cancellable) */
    STAGE_WAITING,   /* retry, deferral or rate-budget timer before the next call */
    STAGE_STORING,   /* (cb) result or dead letter being written */
    STAGE_TOOLS,     /* an agent run waiting for its tool calls (pipeline_agent.c) */
} job_stage;

typedef enum settle_how { SETTLE_ACK, SETTLE_TERM, SETTLE_NAK } settle_how;

/* One delivered task, from fetch to settle. */
typedef struct job {
    aq_mailbox_node node;
    struct aq_pipeline *p;
    struct job *prev, *next; /* the pipeline's in-flight list */
    natsMsg *msg;
    uint64_t stream_seq;
    uint64_t delivered;
    int64_t published_unix_ms;
    int64_t started_unix_ms;
    int64_t last_progress_ms; /* monotonic: last ack/in-progress sent */
    job_stage stage;

    Agentq__V1__Task *task; /* NULL when the payload did not decode */
    aq_status decode_status;
    aq_err decode_err;

    /* Deliveries of one task id in flight together make one call: the first
     * leads, the others follow and are settled as it is. */
    uint64_t id_hash;
    bool leads;
    struct job *leader;
    struct job *followers;             /* of a leader */
    struct job *fprev, *fnext;         /* a follower's place in that list */

    /* The response cache (pipeline_cache.c). Identical cacheable requests
     * in flight together make one call: the first leads (reads the cache,
     * then calls), the others share its answer. */
    aq_cache_plan cache;
    char cache_key[AQ_CACHE_KEY_HEX + 1];
    uint64_t cache_hash;
    bool cache_leads;
    bool cache_hit;            /* answered from the cache or a shared call */
    bool cache_stored;         /* this answer was put in the cache */
    struct job *sharing_with;  /* the leader whose answer this job waits for */
    struct job *sharers;       /* of a leader */
    struct job *sprev, *snext; /* a sharer's place in that list */

    const char *model;
    const char *route_rule;  /* the routing rule that chose the model, "explicit" or "default" */
    bool fallback_used;      /* a 529 moved the call to the fallback model */
    uint32_t max_tokens;
    uint64_t cost_micro_usd; /* of the answer stored (0 for a cache hit) */
    bool cost_unknown;       /* the model has no price: the cost is not 0, just unknown */
    aq_rl_reservation budget; /* the rate budget this call holds, if any */
    /* the tenant's daily spending budget (pipeline_spend.c) */
    aq_budget_reservation spend; /* amount_micro: the bound of the call's cost */
    bool spend_held;     /* `spend` is granted and not settled yet */
    bool spend_pending;  /* waiting for the budget's answer (cancel when released) */
    uint8_t spend_asks;  /* refusals confirmed by asking the bucket again */
    bool waits_for_budget;
    int64_t park_limit;  /* parking: the limit of the budget that refused it */
    bool park_by_type;   /* parking: the type's budget refused it */
    aq_buf request;
    aq_llm_call *call;
    uint32_t calls;    /* LLM calls made by this delivery */
    uint32_t failures; /* of them, retryable failures (deferrals do not count) */
    uint32_t deferrals;
    uint64_t llm_latency_ms;
    uint64_t ttft_us;  /* the last call, streamed: time to first token (0: not streamed) */
    float output_tps;  /* the last call, streamed: output tokens per second (0: not measured) */
    int64_t retry_after_ms; /* the provider's retry-after, -1 when absent */
    char request_id[128];

    /* outcome */
    aq_status outcome;
    aq_err outcome_err;
    long http_status;
    aq_llm_response response;
    bool have_response;
    bool dead_lettered; /* the DLQ has it: the settle counts it as dead_lettered */

    /* storing: the Result is written with compare-and-set on the key's last
     * revision (0 = no entry), so a COMPLETED result is never overwritten */
    uint64_t result_rev;
    int conflicts;
    aq_kv_read *rd; /* made by the first read (most tasks never read: ~0.9 KB saved each) */
    aq_buf packed;
    struct event *timer; /* waits: before the next call, or before a write retry */
    void (*timer_fn)(struct job *);
    int64_t wake_mono_ms;
    int store_tries;

    /* An agent run (a task with tools): its state, NULL for every other
     * task (pipeline_agent.c). */
    struct job_agent *agent;
    settle_how settled;  /* how it was settled (job_release) */
    bool slot_lent;      /* gave its fetcher slot back while its tools run */
    bool waits_for_slot; /* wants it back, for its next model call */
} job;

struct aq_pipeline {
    aq_worker_metrics *wm;
    size_t llm_in_flight; /* calls started, not done (for the gauge) */
    struct event_base *base;
    const aq_worker_config *cfg;
    aq_task_limits limits;
    size_t request_body_cap; /* the largest body a valid task can make */
    natsConnection *nc;
    jsCtx *js;
    aq_mailbox *mb;
    aq_publisher *pub;
    aq_kv_getter *results_get; /* stored Results (redeliveries, lost compare-and-set) */
    aq_kv_getter *cache_get;   /* the response cache */
    aq_kv_getter *runs_get;    /* agent run checkpoints (NULL: no runs bucket) */
    aq_kv_getter *session_get; /* session histories and leases (NULL: no sessions bucket) */
    struct aq_tool_dispatcher *tools; /* agent runs' tool calls */
    size_t runs_in_flight;     /* agent runs owned */
    size_t runs_save_cap;      /* largest checkpoint written: runs_max_bytes, within max_payload */
    size_t slot_waiters;       /* runs waiting for a slot back; while any, the fetcher is paused */
    bool fetch_paused;
    char cache_prefix[256];    /* "$KV.<cache bucket>." */
    aq_ptrmap cache_leaders;   /* cache key hash -> job leading that request */
    aq_llm_client *llm;
    aq_fetcher *fetcher;
    aq_backstop *backstop;
    aq_queue_conn_opts conn_opts;
    struct event *progress_timer;
    struct event *grace_timer;

    char worker_name[128];
    char results_prefix[256]; /* "$KV.<bucket>." */
    aq_list keys;
    aq_rl *limiter;            /* rate budget per (key, model class) */
    size_t waiting_for_budget; /* jobs; while any, the fetcher is paused */
    aq_route *router;      /* routing rules, allowlist, fallback */
    aq_cost_table *prices; /* loop thread only (it notes unpriced models) */
    aq_budget *spend;           /* spending budgets and the fleet's spent figures; NULL
                                   when no budgets are set and the bucket is missing */
    aq_budget_spec *budgets;    /* the configured budgets, for messages */
    aq_budget_action budget_action;
    int64_t max_deliver;        /* the consumer's, as the server has it (-1: none) */
    bool parking;               /* a spent budget's tasks go to the deferred stream */
    struct aq_keeper *keeper;   /* release passes and the ghost sweep (keeper.h) */
    aq_llm_request_opts request_opts;
    const char *crash_marker; /* test builds only: see aq_job_begin */
    bool careful;             /* fetcher thread only: holding one task at a time */
    int64_t ack_wait_ms;      /* the consumer's, as the server has it */

    job *jobs; /* in flight, owned by the loop */
    size_t in_flight;
    aq_ptrmap leaders; /* task id hash -> leading job */
    bool stopping, cut_short, finished;
    aq_pipeline_stats stats; /* updated with atomics (fetcher and loop threads) */
};

static inline const char *job_type(const job *j) { return j->task && j->task->type ? j->task->type : ""; }
static inline double job_seconds(const job *j) { return j->published_unix_ms > 0 ? (aq_now_unix_ms() - j->published_unix_ms) / 1000.0 : -1; }
#define STAT_ADD(p, field) __atomic_fetch_add(&(p)->stats.field, 1, __ATOMIC_RELAXED)

/* What a stored Result says about this delivery. */
typedef enum stored_state { STORED_NONE, STORED_COMPLETED, STORED_FAILED_HERE, STORED_OTHER } stored_state;

/* pipeline_job.c */
/* Every line about a task goes through these: they carry its id, type,
 * tenant, delivery, attempt and stream sequence (the log contract;
 * tests/integration/log_redaction.sh checks it). _with adds up to
 * AQ_JOB_LOG_EXTRA_MAX fields of its own; more are dropped. */
#define AQ_JOB_LOG_EXTRA_MAX 4
void aq_job_log(aq_log_level lvl, const job *j, const char *msg, const aq_err *err);
void aq_job_log_with(aq_log_level lvl, const job *j, const char *msg, const aq_err *err,
                     const aq_log_field *extra, size_t n);
bool aq_job_has_valid_id(const job *j);
/* Runs fn(j) after ms; false when no timer could be made. */
bool aq_job_after(job *j, int64_t ms, void (*fn)(job *));
stored_state aq_job_read_stored(const job *j, const aq_kv_read *rd);
/* Reads `key` from `from`; done(rd) comes back on the loop with rd->ctx = j.
 * When there is no memory for the read the job is handed back instead (and
 * freed): either way the caller must not touch j afterwards. */
void aq_job_read(job *j, aq_kv_getter *from, const char *key, aq_kv_read_fn done);
int64_t aq_job_backoff_ms(const aq_worker_config *cfg, uint32_t attempt);
/* Wait in place (still owned), then aq_job_call; when shutting down, hand
 * the task back with that delay instead. */
void aq_job_call_after(job *j, int64_t delay_ms);
/* The one place a status becomes a result, a wait or a dead letter. */
void aq_job_dispose(job *j, aq_status st, const aq_err *err);
/* The one place a message is acked, terminated or handed back; frees j. */
void aq_job_settle(job *j, settle_how how, int64_t nak_delay_ms);

/* pipeline_call.c */
void aq_job_begin(job *j);
/* Route (by `input_tokens`, the 1-based model `step` (1 for a single call)
 * and the task), build the request, then the
 * cache or the call: a single task's one call, an agent run's every step. */
void aq_job_step(job *j, int64_t input_tokens, uint32_t step);
void aq_job_call(job *j);
void aq_job_budget_wait_over(job *j, aq_pipeline *p);
bool aq_job_try_fallback(job *j);

/* pipeline_spend.c */
/* Creates p->spend (and checks its bucket) once connected. */
aq_status aq_spend_start(aq_pipeline *p, aq_err *err);
/* Gives the leases back and flushes the spent figures: before the
 * connection closes, after every job is released. */
void aq_spend_stop(aq_pipeline *p);
/* Before a call: true when the job holds its spending reservation (or no
 * budget applies); false when it waits for the budget's answer, was handed
 * back until the budget resets, or failed. */
bool aq_job_spend_reserve(job *j);
/* After a call: settle with what it cost. `res` NULL: the answer was priced
 * (j->cost_micro_usd); otherwise an unanswered call, charged 0 when the
 * provider cannot have billed it and the reserved bound when it may have. */
void aq_job_spend_settle(job *j, const aq_llm_call_result *res);
/* Before the job goes (or a call did not start): cancel a pending
 * reservation; a held one is charged its bound when a call is in flight
 * (cut off: it may be billed), else nothing. */
void aq_job_spend_release(job *j);
/* pipeline_agent.c */
/* Creates the runs getter and the tool dispatcher once connected. */
aq_status aq_agent_start(aq_pipeline *p, aq_err *err);
/* With the loop stopped, after every job is released. */
void aq_agent_stop(aq_pipeline *p);
/* A task with tools, admitted: load its checkpoint and run it. */
void aq_agent_begin(job *j);
/* The request of the run's current step into j->request. */
aq_status aq_agent_build_request(job *j, const aq_llm_request_opts *base, aq_err *err);
/* The cache key of the run's current step into j->cache_key. */
bool aq_agent_cache_key(job *j, aq_err *err);
/* The model answered the step (j->response): record, checkpoint, go on. */
void aq_agent_answered(job *j);
/* Fill the run's part of the Result; false when j is no agent run. */
bool aq_agent_fill_result(job *j, Agentq__V1__Result *r, Agentq__V1__Usage *u);
/* The job is going away (tool calls still out finish on their own). */
void aq_agent_release(job *j);
/* A fetcher slot was given back: a run waiting for one may take it. */
void aq_agent_slot_freed(aq_pipeline *p);

/* pipeline_cache.c */
/* After routing: answer from the cache, or wait for an identical request
 * in flight. true: the cache took the job (it calls aq_job_call on a miss). */
bool aq_job_cache_lookup(job *j);
/* The job has its answer (j->response): jobs sharing its request get it too. */
void aq_job_cache_share(job *j);
/* The Result is packed in j->packed: file it in the cache when it may be. */
void aq_job_cache_store(job *j);
/* The job is going away: hand its waiting sharers to a new leader. */
void aq_job_cache_leave(job *j);

/* pipeline_store.c */
void aq_job_complete(job *j);
void aq_job_store_result(job *j);
/* Permanent failure: dead letter, then a FAILED result, then Term. */
void aq_job_fail(job *j, aq_status st, const aq_err *err);

/* pipeline.c */
void aq_pipeline_maybe_finish(aq_pipeline *p);
/* Pause the fetcher while jobs wait for rate budget or runs for a slot, or
 * agent_max_runs runs are in flight; resume when none of these holds. */
void aq_pipeline_update_pause(aq_pipeline *p);

#endif
