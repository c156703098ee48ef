#include "pipeline.h"

#include <event2/event.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "core/mailbox.h"
#include "core/ptrmap.h"
#include "llm/llm_client.h"
#include "llm/llm_request.h"
#include "llm/llm_response.h"
#include "pipeline/backstop.h"
#include "pipeline/dead_letter.h"
#include "queue/queue_conn.h"
#include "queue/queue_fetch.h"
#include "queue/queue_kvread.h"
#include "queue/queue_publish.h"
#include "queue/queue_setup.h"
#include "ratelimit/ratelimit.h"
#include "task/task_codec.h"

#define REQUEST_BODY_SLACK (64 * 1024) /* JSON framing around the prompt */
#define STORE_RETRY_MIN_MS 250
#define STORE_RETRY_MAX_MS 5000
#define MAX_WRITE_CONFLICTS 10 /* then hand the task back rather than fight */
#define FLUSH_TIMEOUT_MS 2000
/* A task delivered this often without being settled may be what crashes
 * workers: see on_fetched. A worker that merely died (OOM, node loss) makes
 * its tasks' second delivery, which stays on the fast path. */
#define SUSPECT_DELIVERIES 3

/* Where a job is. The stages marked (cb) have a callback outstanding that
 * will come back to the job, so nothing may free it in the meantime. */
typedef enum job_stage {
    STAGE_QUEUED,    /* handed to the loop, not started */
    STAGE_CHECKING,  /* (cb) reading its stored Result */
    STAGE_FOLLOWING, /* the same task id is in flight here: waiting for that one */
    STAGE_CALLING,   /* LLM call in flight (cancellable) */
    STAGE_WAITING,   /* retry, deferral or rate-budget timer before the next call */
    STAGE_STORING,   /* (cb) result or dead letter being written */
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

    const char *model;
    uint32_t max_tokens;
    aq_rl_reservation budget; /* the rate budget this call holds, if any */
    bool waits_for_budget;
    aq_buf request;
    aq_llm_call *call;
    uint32_t calls;    /* LLM calls made by this delivery */
    uint32_t failures; /* of them, retryable failures (deferrals do not count) */
    uint32_t deferrals;
    uint64_t llm_latency_ms;
    int64_t retry_after_ms; /* the provider's retry-after, -1 when absent */
    char request_id[128];

    /* outcome */
    aq_status outcome;
    aq_err outcome_err;
    long http_status;
    aq_llm_response response;
    bool have_response;

    /* storing: the Result is written with compare-and-set on the key's last
     * revision (0 = no entry), so a COMPLETED result is never overwritten */
    uint64_t result_rev;
    int conflicts;
    aq_kv_read rd;
    aq_buf packed;
    struct event *timer; /* waits: before the next call, or before a write retry */
    void (*timer_fn)(struct job *);
    int64_t wake_mono_ms;
    int store_tries;
} job;

struct aq_pipeline {
    struct event_base *base;
    const aq_worker_config *cfg;
    aq_task_limits limits;
    natsConnection *nc;
    jsCtx *js;
    aq_mailbox *mb;
    aq_publisher *pub;
    aq_kv_reader *reader;
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
    aq_list models; /* allowed; empty allows any */
    const char *crash_marker; /* test builds only: see job_begin */
    bool careful;             /* fetcher thread only: holding one task at a time */
    int64_t ack_wait_ms;      /* the consumer's, as the server has it */

    job *jobs; /* in flight, owned by the loop */
    size_t in_flight;
    aq_ptrmap leaders; /* task id hash -> leading job */
    bool stopping, cut_short, finished;
    aq_pipeline_stats stats; /* updated with atomics (fetcher and loop threads) */
};

static void job_begin(job *j);
static void job_call(job *j);
static void job_dispose(job *j, aq_status st, const aq_err *err);
static void job_fail(job *j, aq_status st, const aq_err *err);
static void job_settle(job *j, settle_how how, int64_t nak_delay_ms);
static void store_result(job *j);
static void publish_dead_letter(job *j);
static void pipeline_maybe_finish(aq_pipeline *p);
static int64_t backoff_ms(const aq_worker_config *cfg, uint32_t attempt);

#define STAT_ADD(p, field) __atomic_fetch_add(&(p)->stats.field, 1, __ATOMIC_RELAXED)

/* ---- logging helpers (the pipeline logs; the libraries do not) ---- */

static void log_job(aq_log_level lvl, const job *j, const char *msg, const aq_err *err)
{
    const Agentq__V1__Task *t = j->task;
    aq_log(lvl, msg, AQ_LF_S("id", t ? t->id : ""), AQ_LF_S("type", t ? t->type : ""),
           AQ_LF_S("tenant", t ? t->tenant : ""), AQ_LF_I("delivery", j->delivered),
           AQ_LF_I("attempt", j->calls), AQ_LF_I("stream_seq", j->stream_seq),
           AQ_LF_S("class", err ? aq_status_class(err->status) : ""),
           AQ_LF_S("error", err ? err->msg : ""));
}

static bool has_valid_id(const job *j)
{
    return j->task && aq_task_id_valid(j->task->id);
}

/* ---- timers ---- */

static void on_job_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job *j = arg;
    j->timer_fn(j);
}

static bool job_after(job *j, int64_t ms, void (*fn)(job *))
{
    if (!j->timer && !(j->timer = evtimer_new(j->p->base, on_job_timer, j)))
        return false;
    j->timer_fn = fn;
    j->wake_mono_ms = aq_mono_ms() + ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(j->timer, &tv);
    return true;
}

/* ---- fetch (fetcher thread) ---- */

static void job_admit(void *arg);

static void on_fetched(void *ctx, natsMsg *msg)
{
    aq_pipeline *p = ctx;
    job *j = calloc(1, sizeof(*j));
    if (!j) {
        natsMsg_Nak(msg, NULL);
        natsMsg_Destroy(msg);
        aq_fetcher_release(p->fetcher, 1);
        return;
    }
    j->p = p;
    j->msg = msg;
    j->retry_after_ms = -1;
    aq_buf_init(&j->request, p->cfg->max_prompt_bytes + REQUEST_BODY_SLACK);
    aq_buf_init(&j->packed, (size_t)p->cfg->queue.max_msg_size);
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        j->stream_seq = meta->Sequence.Stream;
        j->delivered = meta->NumDelivered;
        j->published_unix_ms = meta->Timestamp / 1000000;
        jsMsgMetaData_Destroy(meta);
    }
    STAT_ADD(p, fetched);

    /* Careful mode. A task that crashes its worker takes every task that
     * worker holds down with it, and each of them loses a delivery. So a
     * worker starts holding one task at a time, and goes back to one at a
     * time whenever it sees a suspect; the first task that is not a suspect
     * restores full concurrency. A poison task then dies alone and reaches
     * MaxDeliver (and the DLQ) without dragging healthy tasks along. */
    bool suspect = j->delivered >= SUSPECT_DELIVERIES;
    if (suspect != p->careful) {
        p->careful = suspect;
        aq_fetcher_limit(p->fetcher, suspect ? 1 : 0);
        aq_log(AQ_LOG_INFO, suspect ? "suspect task: holding one task at a time"
                                    : "back to full concurrency",
               AQ_LF_I("stream_seq", j->stream_seq), AQ_LF_I("delivery", j->delivered));
    }

    /* Decode and validate here, off the loop thread. */
    j->decode_status = aq_task_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                                      &p->limits, &j->task, &j->decode_err);
    if (j->decode_status == AQ_OK)
        j->decode_status = aq_task_validate(j->task, &p->limits, &j->decode_err);
    aq_mailbox_post(p->mb, &j->node, job_admit, j);
}

static void on_fetch_error(void *ctx, const aq_err *err)
{
    (void)ctx;
    aq_log(AQ_LOG_WARN, "fetch failed; backing off", AQ_LF_S("error", err->msg));
}

/* ---- admit (loop thread) ---- */

/* What a stored Result says about this delivery. */
typedef enum stored_state { STORED_NONE, STORED_COMPLETED, STORED_FAILED_HERE, STORED_OTHER } stored_state;

static stored_state read_stored(const job *j, const aq_kv_read *rd)
{
    if (rd->status != AQ_OK || rd->deleted)
        return STORED_NONE;
    Agentq__V1__Status status;
    uint64_t seq;
    if (!aq_result_peek(natsMsg_GetData(rd->msg), (size_t)natsMsg_GetDataLength(rd->msg), &status,
                        &seq))
        return STORED_OTHER;
    if (status == AGENTQ__V1__STATUS__STATUS_COMPLETED)
        return STORED_COMPLETED;
    if (status == AGENTQ__V1__STATUS__STATUS_FAILED && seq == j->stream_seq)
        return STORED_FAILED_HERE;
    return STORED_OTHER;
}

/* A redelivered task may already have been finished by a worker that died
 * before its ack: answer from the stored Result instead of calling again. */
static void on_redelivery_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    stored_state s = read_stored(j, rd);
    j->result_rev = rd->status == AQ_OK ? rd->revision : 0;
    aq_kv_read_clear(rd);
    j->stage = STAGE_QUEUED;
    if (s == STORED_COMPLETED) {
        STAT_ADD(j->p, already_done);
        log_job(AQ_LOG_INFO, j, "redelivered task already completed: acked without a call", NULL);
        job_settle(j, SETTLE_ACK, 0);
        return;
    }
    if (s == STORED_FAILED_HERE) {
        /* The FAILED result is written after the dead letter: that is done. */
        STAT_ADD(j->p, already_done);
        job_settle(j, SETTLE_TERM, 0);
        return;
    }
    /* No usable answer (or the read failed): go on; the compare-and-set
     * write is what keeps a COMPLETED result from being overwritten. */
    job_begin(j);
}

static void job_admit(void *arg)
{
    job *j = arg;
    aq_pipeline *p = j->p;

    j->next = p->jobs;
    if (p->jobs)
        p->jobs->prev = j;
    p->jobs = j;
    p->in_flight++;
    j->started_unix_ms = aq_now_unix_ms();
    j->last_progress_ms = aq_mono_ms();

    if (j->decode_status != AQ_OK) {
        job_fail(j, j->decode_status, &j->decode_err);
        return;
    }
    if (j->delivered > 1 && has_valid_id(j)) {
        j->stage = STAGE_CHECKING;
        aq_kv_reader_get(p->reader, &j->rd, j->task->id, on_redelivery_read, j);
        return;
    }
    job_begin(j);
}

/* ---- route, call (loop thread) ---- */

static bool model_allowed(const aq_pipeline *p, const char *model)
{
    return p->models.n == 0 || aq_list_contains(&p->models, model);
}

/* The test build's poison task: lets the chaos tests prove that a task which
 * kills the worker on every delivery ends in the DLQ (MAX_DELIVERIES). */
static void maybe_crash_for_test(const aq_pipeline *p, const Agentq__V1__Task *t)
{
#ifdef AQ_TEST_HOOKS
    if (p->crash_marker && *p->crash_marker && strstr(t->prompt, p->crash_marker)) {
        aq_log(AQ_LOG_ERROR, "test crash marker found: aborting", AQ_LF_S("id", t->id));
        abort();
    }
#else
    (void)p;
    (void)t;
#endif
}

static uint64_t id_hash(const char *id)
{
    uint64_t h = XXH3_64bits(id, strlen(id));
    return h < 2 ? h + 2 : h; /* 0 and 1 are not valid map keys */
}

/* Returns true when the job now follows another delivery of the same id. */
static bool follow_if_in_flight(job *j)
{
    aq_pipeline *p = j->p;
    j->id_hash = id_hash(j->task->id);
    job *l = aq_ptrmap_get(&p->leaders, (void *)(uintptr_t)j->id_hash);
    if (!l) {
        j->leads = aq_ptrmap_put(&p->leaders, (void *)(uintptr_t)j->id_hash, j) == AQ_OK;
        return false;
    }
    if (strcmp(l->task->id, j->task->id) != 0)
        return false; /* a hash collision: two tasks, both run */
    j->leader = l;
    j->fnext = l->followers;
    if (l->followers)
        l->followers->fprev = j;
    l->followers = j;
    j->stage = STAGE_FOLLOWING;
    STAT_ADD(p, coalesced);
    log_job(AQ_LOG_INFO, j, "same task already in flight here: waiting for it", NULL);
    return true;
}

static void on_llm_done(void *ctx, const aq_llm_call_result *res);

static void job_begin(job *j)
{
    aq_pipeline *p = j->p;
    aq_err err;
    aq_status st;
    const Agentq__V1__Task *t = j->task;

    maybe_crash_for_test(p, t);
    if (follow_if_in_flight(j))
        return;
    j->model = *t->model ? t->model : p->cfg->default_model;
    if (!model_allowed(p, j->model)) {
        aq_err_set(&err, AQ_MODEL_NOT_ALLOWED, "model \"%s\" is not in allowed_models", j->model);
        job_fail(j, AQ_MODEL_NOT_ALLOWED, &err);
        return;
    }
    j->max_tokens = t->max_tokens ? t->max_tokens : (uint32_t)p->cfg->default_max_tokens;
    if ((st = aq_llm_request_build(t, j->model, j->max_tokens, &j->request, &err)) != AQ_OK) {
        if (aq_status_disposition(st) == AQ_DISP_PERMANENT) {
            job_fail(j, st, &err);
            return;
        }
        log_job(AQ_LOG_WARN, j, "cannot build the request: task handed back", &err);
        job_settle(j, SETTLE_NAK, backoff_ms(p->cfg, 1));
        return;
    }
    job_call(j);
}

/* A call's whole-time limit grows with the answer it may produce: output
 * comes at tens of tokens a second, so allow a minute plus 50 ms a token,
 * never more than llm_timeout. A short task that hangs is cut off early. */
static int64_t call_timeout_ms(const aq_worker_config *cfg, uint32_t max_tokens)
{
    int64_t ms = 60000 + 50 * (int64_t)max_tokens;
    return ms < cfg->llm_timeout_ms ? ms : cfg->llm_timeout_ms;
}

static void budget_wait_over(job *j, aq_pipeline *p)
{
    if (!j->waits_for_budget)
        return;
    j->waits_for_budget = false;
    if (--p->waiting_for_budget == 0)
        aq_fetcher_pause(p->fetcher, false);
}

/* Reserve rate budget for the call on the key with the most headroom.
 * When there is none, the task waits here, still owned (in-progress acks),
 * and the fetcher is paused: the backlog stays in JetStream. */
static bool take_budget(job *j)
{
    aq_pipeline *p = j->p;
    int64_t wait_ms = 0;
    /* The request body's bytes/4 over-estimates its tokens a little; the
     * charge is corrected from usage when the answer comes. */
    int64_t est_input = (int64_t)(j->request.len / 4);
    if (aq_rl_acquire(p->limiter, aq_rl_model_class(j->model), est_input, j->max_tokens,
                      aq_mono_ms(), &j->budget, &wait_ms) == AQ_RL_GRANTED) {
        budget_wait_over(j, p);
        return true;
    }
    if (!j->waits_for_budget) {
        j->waits_for_budget = true;
        if (p->waiting_for_budget++ == 0)
            aq_fetcher_pause(p->fetcher, true);
        STAT_ADD(p, budget_waits);
    }
    j->stage = STAGE_WAITING;
    if (!job_after(j, wait_ms, job_call))
        job_settle(j, SETTLE_NAK, wait_ms);
    return false;
}

static void job_call(job *j)
{
    aq_pipeline *p = j->p;
    aq_err err;
    const Agentq__V1__Task *t = j->task;

    if (p->stopping) {
        /* Shutting down: no new calls; another worker takes it now. */
        job_settle(j, SETTLE_NAK, 0);
        return;
    }
    int64_t now = aq_now_unix_ms();
    if (t->deadline_unix_ms && now > t->deadline_unix_ms) {
        aq_err_set(&err, AQ_EXPIRED, "deadline passed %lld ms before the %s",
                   (long long)(now - t->deadline_unix_ms),
                   j->calls ? "next attempt" : "task started");
        job_fail(j, AQ_EXPIRED, &err);
        return;
    }
    if (!take_budget(j))
        return;
    j->stage = STAGE_CALLING;
    j->calls++;
    j->retry_after_ms = -1;
    aq_status st = aq_llm_call_start(p->llm, p->keys.items[j->budget.key], j->request.data,
                                     j->request.len, call_timeout_ms(p->cfg, j->max_tokens),
                                     on_llm_done, j, &j->call, &err);
    if (st != AQ_OK) {
        aq_rl_release(p->limiter, &j->budget, aq_mono_ms());
        j->stage = STAGE_QUEUED;
        job_dispose(j, st, &err);
    }
}

/* ---- classify (loop thread) ---- */

static void job_complete(job *j);

static void on_llm_done(void *ctx, const aq_llm_call_result *res)
{
    job *j = ctx;
    aq_err err;
    aq_status st;
    j->call = NULL;
    j->stage = STAGE_QUEUED;
    if (res->sends > 1) /* the provider may have seen each: count them all */
        j->calls += res->sends - 1;
    j->llm_latency_ms = (uint64_t)(res->latency_us / 1000);
    j->http_status = res->http_status;
    j->retry_after_ms = res->retry_after_ms;
    snprintf(j->request_id, sizeof(j->request_id), "%s", res->request_id ? res->request_id : "");

    /* Parse first: the budget learns from the answer what the provider
     * counted (usage) and what it has left (headers). */
    bool answered = res->transport == AQ_OK && res->http_status == 200;
    st = answered ? aq_llm_response_parse(res->body, res->body_len, &j->response, &err) : AQ_OK;
    aq_rl_finish(j->p->limiter, &j->budget, res,
                 answered && st == AQ_OK ? &j->response.usage : NULL, aq_mono_ms(),
                 aq_now_unix_ms());
    if (res->transport != AQ_OK) {
        aq_err_set(&err, res->transport, "%s", res->error ? res->error : aq_status_text(res->transport));
        job_dispose(j, res->transport, &err);
        return;
    }
    if (res->http_status != 200) {
        st = aq_llm_error_classify(res->http_status, res->body, res->body_len, &err);
        job_dispose(j, st, &err);
        return;
    }
    if (st != AQ_OK) {
        job_dispose(j, st, &err);
        return;
    }
    j->have_response = true;
    job_complete(j);
}

/* ---- store, then settle (loop thread) ---- */

static void fill_result(const job *j, Agentq__V1__Result *r, Agentq__V1__Usage *u,
                        Agentq__V1__Error *e)
{
    const aq_pipeline *p = j->p;
    const Agentq__V1__Task *t = j->task;
    agentq__v1__result__init(r);
    r->id = t->id;
    r->type = t->type;
    r->status = j->outcome == AQ_OK ? AGENTQ__V1__STATUS__STATUS_COMPLETED
                                    : AGENTQ__V1__STATUS__STATUS_FAILED;
    r->model = (char *)(j->model ? j->model : "");
    r->attempts = j->outcome == AQ_MAX_DELIVERIES ? (uint32_t)j->delivered : j->calls;
    r->stream_seq = j->stream_seq;
    r->llm_latency_ms = j->llm_latency_ms;
    int64_t since = t->created_unix_ms ? t->created_unix_ms : j->published_unix_ms;
    r->queue_latency_ms = since && j->started_unix_ms > since ? (uint64_t)(j->started_unix_ms - since) : 0;
    r->completed_unix_ms = aq_now_unix_ms();
    r->request_id = (char *)j->request_id;
    r->worker = (char *)p->worker_name;
    if (j->have_response) {
        agentq__v1__usage__init(u);
        u->input_tokens = j->response.usage.input_tokens;
        u->output_tokens = j->response.usage.output_tokens;
        u->cache_creation_input_tokens = j->response.usage.cache_creation_input_tokens;
        u->cache_read_input_tokens = j->response.usage.cache_read_input_tokens;
        r->usage = u;
        r->output = j->response.text ? j->response.text : (char *)"";
        r->stop_reason = j->response.stop_reason ? j->response.stop_reason : (char *)"";
        if (j->response.model)
            r->model = j->response.model;
    }
    if (j->outcome != AQ_OK) {
        agentq__v1__error__init(e);
        e->class_ = (char *)aq_status_class(j->outcome);
        e->message = (char *)j->outcome_err.msg;
        e->http_status = (int32_t)(j->http_status >= 400 ? j->http_status : 0);
        r->error = e;
    }
}

/* A write could not be confirmed: try again while we still own the message;
 * when shutting down hard, hand it back for redelivery instead. */
static void write_failed(job *j, const aq_err *err, void (*again)(job *))
{
    log_job(AQ_LOG_WARN, j, "write not confirmed; retrying", err);
    if (j->p->cut_short) {
        job_settle(j, SETTLE_NAK, 0);
        return;
    }
    int64_t ms = STORE_RETRY_MIN_MS << (j->store_tries < 5 ? j->store_tries : 5);
    if (ms > STORE_RETRY_MAX_MS)
        ms = STORE_RETRY_MAX_MS;
    j->store_tries++;
    j->stage = STAGE_STORING; /* the timer comes back to it */
    if (!job_after(j, ms, again))
        job_settle(j, SETTLE_NAK, 0);
}

/* Our compare-and-set lost: someone wrote the key since we looked. */
static void on_conflict_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    if (rd->status != AQ_OK && rd->status != AQ_NOT_FOUND) {
        aq_err e = rd->err;
        aq_kv_read_clear(rd);
        write_failed(j, &e, store_result);
        return;
    }
    stored_state s = read_stored(j, rd);
    j->result_rev = rd->status == AQ_OK ? rd->revision : 0;
    aq_kv_read_clear(rd);
    if (s == STORED_COMPLETED) {
        /* Never overwrite a COMPLETED result nor count its cost twice. */
        STAT_ADD(j->p, already_done);
        log_job(AQ_LOG_INFO, j, "task already completed elsewhere: result kept", NULL);
        job_settle(j, j->outcome == AQ_OK ? SETTLE_ACK : SETTLE_TERM, 0);
        return;
    }
    store_result(j);
}

static void on_result_stored(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)seq;
    job *j = ctx;
    if (st == AQ_WRITE_CONFLICT && ++j->conflicts <= MAX_WRITE_CONFLICTS) {
        aq_kv_reader_get(j->p->reader, &j->rd, j->task->id, on_conflict_read, j);
        return;
    }
    if (st != AQ_OK) {
        write_failed(j, err, store_result);
        return;
    }
    /* The Result is durable: only now may the task leave the stream. */
    if (j->outcome == AQ_OK) {
        STAT_ADD(j->p, completed);
        log_job(AQ_LOG_DEBUG, j, "task completed", NULL);
        job_settle(j, SETTLE_ACK, 0);
    } else {
        STAT_ADD(j->p, failed);
        job_settle(j, SETTLE_TERM, 0);
    }
}

static void store_result(job *j)
{
    aq_pipeline *p = j->p;
    Agentq__V1__Result r;
    Agentq__V1__Usage u;
    Agentq__V1__Error e;
    aq_err err;
    char subject[512], rev[32];
    natsMsg *m = NULL;

    j->stage = STAGE_STORING;
    fill_result(j, &r, &u, &e);
    if (aq_result_pack(&r, &j->packed, &err) != AQ_OK) {
        /* Only a huge output can do this. Storing it without its text would
         * be a silent loss: fail the task, loudly, with a small Result. */
        aq_err_prefix(&err, "result for the bucket (max_msg_size)");
        if (j->outcome == AQ_OK) {
            aq_llm_response_free(&j->response);
            j->have_response = false;
            job_fail(j, AQ_TOO_BIG, &err);
            return;
        }
        r.output = (char *)"";
        aq_result_pack(&r, &j->packed, &err);
    }
    snprintf(subject, sizeof(subject), "%s%s", p->results_prefix, j->task->id);
    if (natsMsg_Create(&m, subject, NULL, j->packed.data, (int)j->packed.len) != NATS_OK) {
        aq_err_set(&err, AQ_NOMEM, "cannot create the result message");
        write_failed(j, &err, store_result);
        return;
    }
    /* Compare-and-set: the write succeeds only if the key is as we last saw
     * it (revision 0: no entry). A lost race is resolved in on_conflict_read. */
    snprintf(rev, sizeof(rev), "%llu", (unsigned long long)j->result_rev);
    natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", rev);
    if (aq_publisher_send(p->pub, m, NULL, on_result_stored, j, &err) != AQ_OK)
        write_failed(j, &err, store_result);
}

static void job_complete(job *j)
{
    j->outcome = AQ_OK;
    j->store_tries = 0;
    store_result(j);
}

/* ---- dead letters ---- */

static void on_dead_letter_stored(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)seq;
    job *j = ctx;
    if (st != AQ_OK) {
        write_failed(j, err, publish_dead_letter);
        return;
    }
    STAT_ADD(j->p, dead_lettered);
    /* A waiting client gets an answer: a FAILED result, when the id allows. */
    if (has_valid_id(j)) {
        j->store_tries = 0;
        store_result(j);
        return;
    }
    STAT_ADD(j->p, failed);
    job_settle(j, SETTLE_TERM, 0);
}

static void publish_dead_letter(job *j)
{
    aq_pipeline *p = j->p;
    aq_dead_letter dl = {
        .payload = natsMsg_GetData(j->msg),
        .payload_len = natsMsg_GetDataLength(j->msg),
        .type = j->task ? j->task->type : NULL,
        .task_id = has_valid_id(j) ? j->task->id : NULL,
        .status = j->outcome,
        .error = j->outcome_err.msg,
        .attempts = j->calls,
        .stream_seq = j->stream_seq,
        .worker = p->worker_name,
    };
    aq_err err;
    natsMsg *m = NULL;
    char msg_id[256];

    j->stage = STAGE_STORING;
    if (aq_dead_letter_msg(&p->cfg->queue, &dl, &m, msg_id, sizeof(msg_id), &err) != AQ_OK ||
        aq_publisher_send(p->pub, m, msg_id, on_dead_letter_stored, j, &err) != AQ_OK)
        write_failed(j, &err, publish_dead_letter);
}

/* Before dead-lettering: if another delivery completed this task meanwhile,
 * its COMPLETED result stands and there is nothing to dead-letter. */
static void on_fail_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    stored_state s = read_stored(j, rd);
    if (rd->status == AQ_OK || rd->status == AQ_NOT_FOUND)
        j->result_rev = rd->status == AQ_OK ? rd->revision : 0;
    aq_kv_read_clear(rd);
    if (s == STORED_COMPLETED) {
        STAT_ADD(j->p, already_done);
        log_job(AQ_LOG_INFO, j, "task failed here but is already completed: acked", &j->outcome_err);
        job_settle(j, SETTLE_ACK, 0);
        return;
    }
    j->store_tries = 0;
    publish_dead_letter(j);
}

/* Permanent failure: dead letter, then a FAILED result, then Term. */
static void job_fail(job *j, aq_status st, const aq_err *err)
{
    j->outcome = st;
    j->outcome_err = *err;
    j->outcome_err.status = st;
    log_job(AQ_LOG_WARN, j, "task dead-lettered", &j->outcome_err);
    if (has_valid_id(j)) {
        j->stage = STAGE_CHECKING;
        aq_kv_reader_get(j->p->reader, &j->rd, j->task->id, on_fail_read, j);
        return;
    }
    j->store_tries = 0;
    publish_dead_letter(j);
}

/* ---- dispose: the one place a status becomes a result, a wait or a dead letter ---- */

static int64_t backoff_ms(const aq_worker_config *cfg, uint32_t attempt)
{
    int64_t ms = cfg->retry_base_ms;
    for (uint32_t i = 1; i < attempt && ms < cfg->retry_max_ms; i++)
        ms *= 2;
    if (ms > cfg->retry_max_ms)
        ms = cfg->retry_max_ms;
    /* Full jitter over the upper half: spreads a burst of retries. */
    return ms / 2 + (int64_t)(random() % (ms / 2 + 1));
}

/* Retries and deferrals wait here, the message still owned (in-progress
 * acks keep it), so they never use up the consumer's MaxDeliver: that stays
 * a count of crashes and hand-backs, which is what the backstop needs. */
static void job_wait(job *j, int64_t delay_ms, const aq_err *err)
{
    aq_pipeline *p = j->p;
    if (aq_status_disposition(err->status) == AQ_DISP_DEFER)
        STAT_ADD(p, deferred);
    else
        STAT_ADD(p, retried);
    log_job(AQ_LOG_INFO, j, "task will be retried", err);
    aq_llm_response_free(&j->response);
    if (p->stopping) {
        job_settle(j, SETTLE_NAK, delay_ms);
        return;
    }
    j->stage = STAGE_WAITING;
    if (!job_after(j, delay_ms, job_call))
        job_settle(j, SETTLE_NAK, delay_ms);
}

static void job_dispose(job *j, aq_status st, const aq_err *err)
{
    const aq_worker_config *cfg = j->p->cfg;
    aq_err e = *err;
    e.status = st;
    switch (aq_status_disposition(st)) {
    case AQ_DISP_NONE:
        job_complete(j);
        return;
    case AQ_DISP_PERMANENT:
        job_fail(j, st, &e);
        return;
    case AQ_DISP_RETRY:
        if (++j->failures >= (uint32_t)cfg->max_attempts) {
            aq_err_prefix(&e, "gave up after %u attempts", j->calls);
            job_fail(j, st, &e);
            return;
        }
        job_wait(j, backoff_ms(cfg, j->failures), &e);
        return;
    case AQ_DISP_DEFER: {
        /* The provider said when; otherwise back off. Never dead-lettered for
         * this alone: only the task's own deadline bounds the waiting. */
        int64_t delay = j->retry_after_ms > 0 ? j->retry_after_ms : backoff_ms(cfg, ++j->deferrals);
        int64_t deadline = j->task->deadline_unix_ms;
        if (deadline && aq_now_unix_ms() + delay > deadline) {
            aq_err x;
            aq_err_set(&x, AQ_EXPIRED, "deadline would pass while deferred %lld ms (%s: %s)",
                       (long long)delay, aq_status_class(st), e.msg);
            job_fail(j, AQ_EXPIRED, &x);
            return;
        }
        job_wait(j, delay, &e);
        return;
    }
    }
}

/* ---- settle and release ---- */

static void job_release(job *j)
{
    aq_pipeline *p = j->p;
    if (j->prev)
        j->prev->next = j->next;
    else
        p->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    p->in_flight--;
    if (j->leader) {
        if (j->fprev)
            j->fprev->fnext = j->fnext;
        else
            j->leader->followers = j->fnext;
        if (j->fnext)
            j->fnext->fprev = j->fprev;
    }
    if (j->leads)
        aq_ptrmap_take(&p->leaders, (void *)(uintptr_t)j->id_hash);
    if (j->timer)
        event_free(j->timer);
    budget_wait_over(j, p);
    /* A call cut off may have reached the provider: it stays charged. */
    if (j->call)
        aq_rl_commit(p->limiter, &j->budget, NULL, NULL, aq_mono_ms(), aq_now_unix_ms());
    aq_llm_call_cancel(j->call);
    aq_llm_response_free(&j->response);
    aq_task_free(j->task);
    aq_buf_free(&j->request);
    aq_buf_free(&j->packed);
    natsMsg_Destroy(j->msg);
    free(j);
    aq_fetcher_release(p->fetcher, 1);
    pipeline_maybe_finish(p);
}

/* The one place a message is acked, terminated or handed back. Deliveries
 * of the same id that waited for this one go the same way. */
static void job_settle(job *j, settle_how how, int64_t nak_delay_ms)
{
    switch (how) {
    case SETTLE_ACK:
        natsMsg_Ack(j->msg, NULL);
        break;
    case SETTLE_TERM:
        natsMsg_Term(j->msg, NULL);
        break;
    case SETTLE_NAK:
        if (nak_delay_ms > 0)
            natsMsg_NakWithDelay(j->msg, nak_delay_ms, NULL);
        else
            natsMsg_Nak(j->msg, NULL);
        break;
    }
    while (j->followers)
        job_settle(j->followers, how, nak_delay_ms);
    job_release(j);
}

/* ---- ownership of long calls ---- */

static void on_progress_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    aq_pipeline *p = arg;
    int64_t now = aq_mono_ms(), every = p->ack_wait_ms / 3;
    for (job *j = p->jobs; j; j = j->next) {
        if (now - j->last_progress_ms >= every) {
            natsMsg_InProgress(j->msg, NULL);
            j->last_progress_ms = now;
        }
    }
}

/* ---- shutdown ---- */

static void pipeline_maybe_finish(aq_pipeline *p)
{
    /* Slots count every message owned, including ones handed to the loop
     * and not started yet: the loop may exit only when all are settled. */
    if (!p->stopping || p->finished || aq_fetcher_in_use(p->fetcher) > 0)
        return;
    p->finished = true;
    natsConnection_FlushTimeout(p->nc, FLUSH_TIMEOUT_MS);
    event_base_loopexit(p->base, NULL);
}

#define STAGE_BIT(s) (1u << (s))

/* Hand back every job in one of `stages` (a bit set). Settling a leader
 * settles its followers too, anywhere in the list: restart after each. */
static void hand_back(aq_pipeline *p, unsigned stages, const char *why)
{
    job *j = p->jobs;
    while (j) {
        if (!(stages & STAGE_BIT(j->stage))) {
            j = j->next;
            continue;
        }
        int64_t delay = 0;
        if (j->stage == STAGE_WAITING) /* keep the backoff it was waiting out */
            delay = j->wake_mono_ms - aq_mono_ms();
        log_job(AQ_LOG_WARN, j, why, NULL);
        job_settle(j, SETTLE_NAK, delay);
        j = p->jobs;
    }
}


static void cut_short(aq_pipeline *p)
{
    p->cut_short = true;
    /* Calls and waits end now; reads and writes have a callback coming, which
     * settles them (write_failed hands back once cut_short is set). */
    hand_back(p, STAGE_BIT(STAGE_QUEUED) | STAGE_BIT(STAGE_FOLLOWING) | STAGE_BIT(STAGE_CALLING) |
                     STAGE_BIT(STAGE_WAITING),
              "shutdown grace over: task handed back");
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cut_short(arg);
}

void aq_pipeline_shutdown(aq_pipeline *p)
{
    if (p->stopping) {
        cut_short(p);
        return;
    }
    p->stopping = true;
    aq_log(AQ_LOG_INFO, "shutting down: no more fetching", AQ_LF_I("in_flight", p->in_flight),
           AQ_LF_I("grace_ms", p->cfg->shutdown_grace_ms));
    aq_fetcher_stop(p->fetcher);
    aq_backstop_stop(p->backstop);
    /* Tasks waiting to retry are not calls in flight: hand them back now,
     * with what is left of their wait, rather than hold them through the grace. */
    hand_back(p, STAGE_BIT(STAGE_WAITING), "shutting down: waiting task handed back");
    struct timeval tv = {p->cfg->shutdown_grace_ms / 1000, (p->cfg->shutdown_grace_ms % 1000) * 1000};
    evtimer_add(p->grace_timer, &tv);
    pipeline_maybe_finish(p);
}

/* ---- set up and tear down ---- */

static void on_conn_event(void *arg, const char *what, const char *detail)
{
    (void)arg;
    aq_log(strcmp(what, "reconnected") == 0 ? AQ_LOG_INFO : AQ_LOG_WARN, "nats connection",
           AQ_LF_S("event", what), AQ_LF_S("detail", detail));
}

static void set_worker_name(aq_pipeline *p, const aq_worker_config *cfg)
{
    if (cfg->worker_name && *cfg->worker_name) {
        snprintf(p->worker_name, sizeof(p->worker_name), "%s", cfg->worker_name);
        return;
    }
    char host[64] = "worker";
    gethostname(host, sizeof(host) - 1);
    snprintf(p->worker_name, sizeof(p->worker_name), "%s-%d", host, (int)getpid());
}

aq_status aq_pipeline_start(struct event_base *base, const aq_worker_config *cfg,
                            aq_pipeline **out, aq_err *err)
{
    aq_status st;
    aq_pipeline *p = calloc(1, sizeof(*p));
    if (!p)
        return aq_err_set(err, AQ_NOMEM, "pipeline: out of memory");
    p->base = base;
    p->cfg = cfg;
    aq_ptrmap_init(&p->leaders);
    /* Per-process jitter: workers started together must not retry together. */
    srandom((unsigned)(aq_now_unix_ms() ^ ((int64_t)getpid() << 16)));
    aq_task_limits_default(&p->limits);
    p->limits.max_payload_bytes = (size_t)cfg->queue.max_msg_size;
    p->limits.max_prompt_bytes = (size_t)cfg->max_prompt_bytes;
    p->limits.max_tokens_cap = (uint32_t)cfg->max_tokens_cap;
#ifdef AQ_TEST_HOOKS
    p->crash_marker = getenv("AGENTQ_TEST_CRASH_MARKER");
#endif
    set_worker_name(p, cfg);
    snprintf(p->results_prefix, sizeof(p->results_prefix), "$KV.%s.", cfg->queue.results_bucket);
    if ((st = aq_list_split(cfg->api_key, "api_key", AQ_WORKER_MAX_API_KEYS, &p->keys, err)) != AQ_OK ||
        (st = aq_list_split(cfg->allowed_models, "allowed_models", AQ_WORKER_MAX_MODELS, &p->models, err)) !=
            AQ_OK)
        goto fail;
    if (p->keys.n == 0) {
        st = aq_err_set(err, AQ_CONFIG, "no API key configured");
        goto fail;
    }
    aq_rl_config rc = {.n_keys = p->keys.n};
    if ((st = aq_rl_limits_parse(cfg->rate_limits, &rc.limits, err)) != AQ_OK ||
        (st = aq_rl_new(&rc, aq_mono_ms(), &p->limiter, err)) != AQ_OK)
        goto fail;

    p->conn_opts.name = p->worker_name;
    p->conn_opts.on_event = on_conn_event;
    if ((st = aq_queue_connect(&cfg->queue, &p->conn_opts, &p->nc, &p->js, err)) != AQ_OK)
        goto fail;
    if ((st = aq_queue_check(p->js, &cfg->queue, err)) != AQ_OK)
        goto fail;
    /* In-progress acks must beat the AckWait the consumer really has. */
    int64_t max_deliver = 0;
    if ((st = aq_queue_consumer_limits(p->js, &cfg->queue, &p->ack_wait_ms, &max_deliver, err)) != AQ_OK)
        goto fail;
    if (p->ack_wait_ms < 300) {
        st = aq_err_set(err, AQ_CONFIG, "consumer %s has AckWait %lld ms: too short to keep calls owned",
                        cfg->queue.consumer, (long long)p->ack_wait_ms);
        goto fail;
    }
    aq_log(AQ_LOG_INFO, "consumer bound", AQ_LF_S("consumer", cfg->queue.consumer),
           AQ_LF_I("ack_wait_ms", p->ack_wait_ms), AQ_LF_I("max_deliver", max_deliver));
    if ((st = aq_mailbox_new(base, &p->mb, err)) != AQ_OK)
        goto fail;
    if ((st = aq_publisher_new(p->nc, p->mb, cfg->store_timeout_ms, &p->pub, err)) != AQ_OK)
        goto fail;
    if ((st = aq_kv_reader_new(p->js, cfg->queue.results_bucket, cfg->store_timeout_ms, p->mb,
                               &p->reader, err)) != AQ_OK)
        goto fail;

    aq_llm_client_config lc = {
        .base_url = cfg->base_url,
        .anthropic_version = cfg->anthropic_version,
        .connect_timeout_ms = cfg->llm_connect_timeout_ms,
        .timeout_ms = cfg->llm_timeout_ms,
        .max_response_bytes = (size_t)cfg->max_response_bytes,
        .max_connections = 0,
        .ca_file = cfg->ca_file && *cfg->ca_file ? cfg->ca_file : NULL,
    };
    if ((st = aq_llm_client_new(base, &lc, &p->llm, err)) != AQ_OK)
        goto fail;

    p->progress_timer = event_new(base, -1, EV_PERSIST, on_progress_timer, p);
    p->grace_timer = evtimer_new(base, on_grace_over, p);
    if (!p->progress_timer || !p->grace_timer) {
        st = aq_err_set(err, AQ_NOMEM, "pipeline: cannot create timers");
        goto fail;
    }
    int64_t every = p->ack_wait_ms / 6;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};
    event_add(p->progress_timer, &tv);

    if ((st = aq_backstop_start(p->js, &cfg->queue, p->worker_name, &p->backstop, err)) != AQ_OK)
        goto fail;
    aq_fetch_opts fo = {
        .slots = (int)cfg->concurrency,
        .max_batch = (int)cfg->fetch_batch,
        .wait_ms = cfg->fetch_wait_ms,
        .deliver = on_fetched,
        .on_error = on_fetch_error,
        .ctx = p,
        .limit = 1, /* careful until the first task shows we were not restarted by one */
    };
    p->careful = true;
    char task_filter[256];
    snprintf(task_filter, sizeof(task_filter), "%s.>", cfg->queue.task_subjects);
    if ((st = aq_fetcher_start(p->js, cfg->queue.task_stream, cfg->queue.consumer, task_filter, &fo,
                               &p->fetcher, err)) != AQ_OK)
        goto fail;
    *out = p;
    return AQ_OK;
fail:
    aq_pipeline_destroy(p);
    return st;
}

void aq_pipeline_get_stats(const aq_pipeline *p, aq_pipeline_stats *out)
{
    __atomic_load(&p->stats.fetched, &out->fetched, __ATOMIC_RELAXED);
    __atomic_load(&p->stats.completed, &out->completed, __ATOMIC_RELAXED);
    __atomic_load(&p->stats.failed, &out->failed, __ATOMIC_RELAXED);
    __atomic_load(&p->stats.retried, &out->retried, __ATOMIC_RELAXED);
    __atomic_load(&p->stats.deferred, &out->deferred, __ATOMIC_RELAXED);
    __atomic_load(&p->stats.dead_lettered, &out->dead_lettered, __ATOMIC_RELAXED);
    __atomic_load(&p->stats.already_done, &out->already_done, __ATOMIC_RELAXED);
    __atomic_load(&p->stats.coalesced, &out->coalesced, __ATOMIC_RELAXED);
    __atomic_load(&p->stats.budget_waits, &out->budget_waits, __ATOMIC_RELAXED);
    out->in_flight = p->in_flight;
}

void aq_pipeline_destroy(aq_pipeline *p)
{
    if (!p)
        return;
    aq_fetcher_stop(p->fetcher);
    aq_backstop_destroy(p->backstop);
    /* The reader thread may be writing into a job: stop it before any job
     * is freed (reads not completed are dropped with it). */
    aq_kv_reader_destroy(p->reader);
    /* Anything still owned goes back to the stream for redelivery. */
    p->stopping = p->finished = true; /* releasing must not try to leave the loop */
    while (p->jobs)
        job_settle(p->jobs, SETTLE_NAK, 0);
    aq_fetcher_destroy(p->fetcher);
    if (p->nc)
        natsConnection_FlushTimeout(p->nc, FLUSH_TIMEOUT_MS);
    /* Close first: no publish acknowledgement or connection callback may
     * arrive after this, so what they point at can be freed. */
    aq_queue_disconnect(p->nc, p->js);
    aq_publisher_destroy(p->pub);
    aq_llm_client_destroy(p->llm);
    if (p->progress_timer)
        event_free(p->progress_timer);
    if (p->grace_timer)
        event_free(p->grace_timer);
    aq_mailbox_destroy(p->mb);
    aq_ptrmap_free(&p->leaders);
    aq_rl_destroy(p->limiter);
    aq_list_free(&p->keys);
    aq_list_free(&p->models);
    free(p);
}
