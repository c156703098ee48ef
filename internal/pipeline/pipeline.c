#include "pipeline.h"

#include <event2/event.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "core/mailbox.h"
#include "llm/llm_client.h"
#include "llm/llm_request.h"
#include "llm/llm_response.h"
#include "queue/queue_conn.h"
#include "queue/queue_fetch.h"
#include "queue/queue_publish.h"
#include "queue/queue_setup.h"
#include "task/task_codec.h"

#define REQUEST_BODY_SLACK (64 * 1024) /* JSON framing around the prompt */
#define STORE_RETRY_MIN_MS 250
#define STORE_RETRY_MAX_MS 5000
#define FLUSH_TIMEOUT_MS 2000

typedef enum job_stage {
    STAGE_QUEUED,  /* handed to the loop, not started */
    STAGE_CALLING, /* LLM call in flight */
    STAGE_STORING, /* result or dead letter being written */
} job_stage;

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

    const char *model;
    aq_buf request;
    aq_llm_call *call;
    uint64_t llm_latency_ms;
    int64_t retry_after_ms; /* the provider's retry-after, -1 when absent */
    char request_id[128];

    /* outcome */
    aq_status outcome;
    aq_err outcome_err;
    long http_status;
    aq_llm_response response;
    bool have_response;

    aq_buf packed;  /* the Result being stored */
    struct event *retry_timer;
    int store_tries;
    void (*retry_fn)(struct job *);
} job;

struct aq_pipeline {
    struct event_base *base;
    const aq_worker_config *cfg;
    aq_task_limits limits;
    natsConnection *nc;
    jsCtx *js;
    kvStore *results;
    aq_mailbox *mb;
    aq_publisher *pub;
    aq_llm_client *llm;
    aq_fetcher *fetcher;
    aq_queue_conn_opts conn_opts;
    struct event *progress_timer;
    struct event *grace_timer;

    char worker_name[128];
    char results_prefix[256]; /* "$KV.<bucket>." */
    aq_list keys;
    size_t next_key;
    aq_list models; /* allowed; empty allows any */

    job *jobs; /* in flight, owned by the loop */
    size_t in_flight;
    bool stopping, cut_short, finished;
    aq_pipeline_stats stats; /* updated with atomics (fetcher and loop threads) */
};

static void job_start(void *arg);
static void job_dispose(job *j, aq_status st, const aq_err *err);
static void job_complete(job *j);
static void job_dead_letter(job *j, aq_status st, const aq_err *err);
static void job_release(job *j);
static void pipeline_maybe_finish(aq_pipeline *p);

#define STAT_ADD(p, field) __atomic_fetch_add(&(p)->stats.field, 1, __ATOMIC_RELAXED)

/* ---- logging helpers (the pipeline logs; the libraries do not) ---- */

static void log_job(aq_log_level lvl, const job *j, const char *msg, const aq_err *err)
{
    const Agentq__V1__Task *t = j->task;
    aq_log(lvl, msg, AQ_LF_S("id", t ? t->id : ""), AQ_LF_S("type", t ? t->type : ""),
           AQ_LF_S("tenant", t ? t->tenant : ""), AQ_LF_I("attempt", j->delivered),
           AQ_LF_I("stream_seq", j->stream_seq),
           AQ_LF_S("class", err ? aq_status_class(err->status) : ""),
           AQ_LF_S("error", err ? err->msg : ""));
}

/* ---- fetch (fetcher thread) ---- */

/* A redelivered task may already have been finished by a worker that died
 * before its ack: answer from the stored Result instead of calling again. */
static bool already_settled(aq_pipeline *p, job *j)
{
    kvEntry *e = NULL;
    if (kvStore_Get(&e, p->results, j->task->id) != NATS_OK)
        return false;
    Agentq__V1__Result *r = NULL;
    bool done = false;
    if (aq_result_unpack(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &r, NULL) == AQ_OK) {
        if (r->status == AGENTQ__V1__STATUS__STATUS_COMPLETED) {
            natsMsg_Ack(j->msg, NULL);
            done = true;
        } else if (r->status == AGENTQ__V1__STATUS__STATUS_FAILED) {
            /* FAILED is written after the dead letter: that is in the DLQ. */
            natsMsg_Term(j->msg, NULL);
            done = true;
        }
    }
    aq_result_free(r);
    kvEntry_Destroy(e);
    return done;
}

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

    /* Decode and validate here, off the loop thread. */
    j->decode_status = aq_task_unpack(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                                      &p->limits, &j->task, &j->decode_err);
    if (j->decode_status == AQ_OK)
        j->decode_status = aq_task_validate(j->task, &p->limits, &j->decode_err);

    if (j->delivered > 1 && j->task && aq_task_id_valid(j->task->id) && already_settled(p, j)) {
        STAT_ADD(p, already_done);
        aq_task_free(j->task);
        natsMsg_Destroy(msg);
        free(j);
        aq_fetcher_release(p->fetcher, 1);
        return;
    }
    aq_mailbox_post(p->mb, &j->node, job_start, j);
}

static void on_fetch_error(void *ctx, const aq_err *err)
{
    (void)ctx;
    aq_log(AQ_LOG_WARN, "fetch failed; backing off", AQ_LF_S("error", err->msg));
}

/* ---- admit, route, call (loop thread) ---- */

static bool model_allowed(const aq_pipeline *p, const char *model)
{
    return p->models.n == 0 || aq_list_contains(&p->models, model);
}

static const char *next_api_key(aq_pipeline *p)
{
    const char *k = p->keys.items[p->next_key];
    p->next_key = (p->next_key + 1) % p->keys.n;
    return k;
}

static void on_llm_done(void *ctx, const aq_llm_call_result *res);

static void job_start(void *arg)
{
    job *j = arg;
    aq_pipeline *p = j->p;
    aq_err err;
    aq_status st;

    j->next = p->jobs;
    if (p->jobs)
        p->jobs->prev = j;
    p->jobs = j;
    p->in_flight++;
    j->started_unix_ms = aq_now_unix_ms();
    j->last_progress_ms = aq_mono_ms();

    if (j->decode_status != AQ_OK) {
        job_dispose(j, j->decode_status, &j->decode_err);
        return;
    }
    const Agentq__V1__Task *t = j->task;
    if (t->deadline_unix_ms && j->started_unix_ms > t->deadline_unix_ms) {
        aq_err_set(&err, AQ_EXPIRED, "deadline passed %lld ms before the task started",
                   (long long)(j->started_unix_ms - t->deadline_unix_ms));
        job_dispose(j, AQ_EXPIRED, &err);
        return;
    }
    j->model = *t->model ? t->model : p->cfg->default_model;
    if (!model_allowed(p, j->model)) {
        aq_err_set(&err, AQ_MODEL_NOT_ALLOWED, "model \"%s\" is not in allowed_models", j->model);
        job_dispose(j, AQ_MODEL_NOT_ALLOWED, &err);
        return;
    }
    uint32_t max_tokens = t->max_tokens ? t->max_tokens : (uint32_t)p->cfg->default_max_tokens;
    if ((st = aq_llm_request_build(t, j->model, max_tokens, &j->request, &err)) != AQ_OK) {
        job_dispose(j, st, &err);
        return;
    }
    j->stage = STAGE_CALLING;
    st = aq_llm_call_start(p->llm, next_api_key(p), j->request.data, j->request.len, 0,
                           on_llm_done, j, &j->call, &err);
    if (st != AQ_OK) {
        j->stage = STAGE_QUEUED;
        job_dispose(j, st, &err);
    }
}

/* ---- classify (loop thread) ---- */

static void on_llm_done(void *ctx, const aq_llm_call_result *res)
{
    job *j = ctx;
    aq_err err;
    aq_status st;
    j->call = NULL;
    j->llm_latency_ms = (uint64_t)(res->latency_us / 1000);
    j->http_status = res->http_status;
    j->retry_after_ms = res->retry_after_ms;
    snprintf(j->request_id, sizeof(j->request_id), "%s", res->request_id ? res->request_id : "");

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
    if ((st = aq_llm_response_parse(res->body, res->body_len, &j->response, &err)) != AQ_OK) {
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
    r->attempts = (uint32_t)j->delivered;
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

static void store_result(job *j);

static void schedule_retry(job *j, void (*fn)(job *))
{
    int64_t ms = STORE_RETRY_MIN_MS << (j->store_tries < 5 ? j->store_tries : 5);
    if (ms > STORE_RETRY_MAX_MS)
        ms = STORE_RETRY_MAX_MS;
    j->store_tries++;
    j->retry_fn = fn;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(j->retry_timer, &tv);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job *j = arg;
    j->retry_fn(j);
}

/* A write could not be confirmed: try again while we still own the message;
 * when shutting down hard, hand it back for redelivery instead. */
static bool write_failed(job *j, const aq_err *err, void (*again)(job *))
{
    aq_pipeline *p = j->p;
    log_job(AQ_LOG_WARN, j, "write not confirmed; retrying", err);
    if (p->cut_short) {
        natsMsg_Nak(j->msg, NULL);
        job_release(j);
        return false;
    }
    if (!j->retry_timer && !(j->retry_timer = evtimer_new(p->base, on_retry_timer, j))) {
        natsMsg_Nak(j->msg, NULL);
        job_release(j);
        return false;
    }
    schedule_retry(j, again);
    return true;
}

static void on_result_stored(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)seq;
    job *j = ctx;
    if (st != AQ_OK) {
        write_failed(j, err, store_result);
        return;
    }
    /* The Result is durable: only now may the task leave the stream. */
    if (j->outcome == AQ_OK) {
        natsMsg_Ack(j->msg, NULL);
        STAT_ADD(j->p, completed);
        log_job(AQ_LOG_DEBUG, j, "task completed", NULL);
    } else {
        natsMsg_Term(j->msg, NULL);
        STAT_ADD(j->p, failed);
    }
    job_release(j);
}

static void store_result(job *j)
{
    aq_pipeline *p = j->p;
    Agentq__V1__Result r;
    Agentq__V1__Usage u;
    Agentq__V1__Error e;
    aq_err err;
    char subject[512];
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
            job_dead_letter(j, AQ_TOO_BIG, &err);
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
    if (aq_publisher_send(p->pub, m, NULL, on_result_stored, j, &err) != AQ_OK)
        write_failed(j, &err, store_result);
}

static void job_complete(job *j)
{
    j->outcome = AQ_OK;
    store_result(j);
}

/* ---- dead letters ---- */

static void publish_dead_letter(job *j);

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
    if (j->task && aq_task_id_valid(j->task->id)) {
        j->store_tries = 0;
        store_result(j);
        return;
    }
    natsMsg_Term(j->msg, NULL);
    STAT_ADD(j->p, failed);
    job_release(j);
}

static void publish_dead_letter(job *j)
{
    aq_pipeline *p = j->p;
    const aq_queue_config *q = &p->cfg->queue;
    char subject[512], num[32], msg_id[256];
    natsMsg *m = NULL;
    aq_err err;

    j->stage = STAGE_STORING;
    const char *type = j->task && aq_task_type_valid(j->task->type) ? j->task->type : "_invalid";
    snprintf(subject, sizeof(subject), "%s.%s", q->dlq_subjects, type);
    if (natsMsg_Create(&m, subject, NULL, natsMsg_GetData(j->msg),
                       natsMsg_GetDataLength(j->msg)) != NATS_OK) {
        aq_err_set(&err, AQ_NOMEM, "cannot create the dead letter");
        write_failed(j, &err, publish_dead_letter);
        return;
    }
    natsMsgHeader_Set(m, "Agentq-Error-Class", aq_status_class(j->outcome));
    natsMsgHeader_Set(m, "Agentq-Error", j->outcome_err.msg);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)j->delivered);
    natsMsgHeader_Set(m, "Agentq-Attempts", num);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)j->stream_seq);
    natsMsgHeader_Set(m, "Agentq-Stream-Seq", num);
    snprintf(num, sizeof(num), "%lld", (long long)aq_now_unix_ms());
    natsMsgHeader_Set(m, "Agentq-Failed-At", num);
    if (j->task && aq_task_id_valid(j->task->id))
        natsMsgHeader_Set(m, "Agentq-Task-Id", j->task->id);
    natsMsgHeader_Set(m, "Agentq-Worker", p->worker_name);
    /* One dead letter per original message, even if this publish repeats. */
    snprintf(msg_id, sizeof(msg_id), "%s-%llu", q->task_stream, (unsigned long long)j->stream_seq);
    if (aq_publisher_send(p->pub, m, msg_id, on_dead_letter_stored, j, &err) != AQ_OK)
        write_failed(j, &err, publish_dead_letter);
}

static void job_dead_letter(job *j, aq_status st, const aq_err *err)
{
    j->outcome = st;
    j->outcome_err = *err;
    j->outcome_err.status = st;
    log_job(AQ_LOG_WARN, j, "task dead-lettered", &j->outcome_err);
    publish_dead_letter(j);
}

/* ---- settle: the one place a status becomes ack / retry / dead letter ---- */

static int64_t backoff_ms(const aq_worker_config *cfg, uint64_t attempt)
{
    int64_t ms = cfg->retry_base_ms;
    for (uint64_t i = 1; i < attempt && ms < cfg->retry_max_ms; i++)
        ms *= 2;
    if (ms > cfg->retry_max_ms)
        ms = cfg->retry_max_ms;
    /* Full jitter over the upper half: spreads a burst of retries. */
    return ms / 2 + (int64_t)(random() % (ms / 2 + 1));
}

static void job_retry_later(job *j, aq_status st, const aq_err *err, int64_t delay_ms)
{
    natsMsg_NakWithDelay(j->msg, delay_ms, NULL);
    if (aq_status_disposition(st) == AQ_DISP_DEFER)
        STAT_ADD(j->p, deferred);
    else
        STAT_ADD(j->p, retried);
    log_job(AQ_LOG_INFO, j, "task will be retried", err);
    job_release(j);
}

static void job_dispose(job *j, aq_status st, const aq_err *err)
{
    const aq_worker_config *cfg = j->p->cfg;
    switch (aq_status_disposition(st)) {
    case AQ_DISP_NONE:
        job_complete(j);
        return;
    case AQ_DISP_PERMANENT:
        job_dead_letter(j, st, err);
        return;
    case AQ_DISP_RETRY:
        if (j->delivered >= (uint64_t)cfg->max_attempts) {
            job_dead_letter(j, st, err);
            return;
        }
        job_retry_later(j, st, err, backoff_ms(cfg, j->delivered));
        return;
    case AQ_DISP_DEFER:
        /* The provider said when; otherwise back off. Still to come: keeping
         * deferrals out of MaxDeliver's count (they use up deliveries now). */
        job_retry_later(j, st, err,
                        j->retry_after_ms > 0 ? j->retry_after_ms : backoff_ms(cfg, j->delivered));
        return;
    }
}

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
    if (j->retry_timer)
        event_free(j->retry_timer);
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

/* ---- ownership of long calls ---- */

static void on_progress_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    aq_pipeline *p = arg;
    int64_t now = aq_mono_ms(), every = p->cfg->queue.ack_wait_ms / 3;
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

static void cut_short(aq_pipeline *p)
{
    p->cut_short = true;
    job *j = p->jobs;
    while (j) {
        job *next = j->next;
        if (j->stage != STAGE_STORING) {
            /* Redeliver now, elsewhere: nothing of this call is kept. */
            natsMsg_Nak(j->msg, NULL);
            log_job(AQ_LOG_WARN, j, "shutdown grace over: task handed back", NULL);
            job_release(j);
        }
        j = next;
    }
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

aq_status aq_pipeline_start(struct event_base *base, const aq_worker_config *cfg,
                            aq_pipeline **out, aq_err *err)
{
    aq_status st;
    aq_pipeline *p = calloc(1, sizeof(*p));
    if (!p)
        return aq_err_set(err, AQ_NOMEM, "pipeline: out of memory");
    p->base = base;
    p->cfg = cfg;
    /* Per-process jitter: workers started together must not retry together. */
    srandom((unsigned)(aq_now_unix_ms() ^ ((int64_t)getpid() << 16)));
    aq_task_limits_default(&p->limits);
    p->limits.max_payload_bytes = (size_t)cfg->queue.max_msg_size;
    p->limits.max_prompt_bytes = (size_t)cfg->max_prompt_bytes;
    p->limits.max_tokens_cap = (uint32_t)cfg->max_tokens_cap;
    if (cfg->worker_name && *cfg->worker_name) {
        snprintf(p->worker_name, sizeof(p->worker_name), "%s", cfg->worker_name);
    } else {
        char host[64] = "worker";
        gethostname(host, sizeof(host) - 1);
        snprintf(p->worker_name, sizeof(p->worker_name), "%s-%d", host, (int)getpid());
    }
    snprintf(p->results_prefix, sizeof(p->results_prefix), "$KV.%s.", cfg->queue.results_bucket);
    if ((st = aq_list_split(cfg->api_key, "api_key", AQ_WORKER_MAX_API_KEYS, &p->keys, err)) != AQ_OK ||
        (st = aq_list_split(cfg->allowed_models, "allowed_models", AQ_WORKER_MAX_MODELS, &p->models, err)) !=
            AQ_OK)
        goto fail;
    if (p->keys.n == 0) {
        st = aq_err_set(err, AQ_CONFIG, "no API key configured");
        goto fail;
    }

    p->conn_opts.name = p->worker_name;
    p->conn_opts.on_event = on_conn_event;
    if ((st = aq_queue_connect(&cfg->queue, &p->conn_opts, &p->nc, &p->js, err)) != AQ_OK)
        goto fail;
    if ((st = aq_queue_check(p->js, &cfg->queue, err)) != AQ_OK)
        goto fail;
    natsStatus s = js_KeyValue(&p->results, p->js, cfg->queue.results_bucket);
    if (s != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "results bucket");
        goto fail;
    }
    if ((st = aq_mailbox_new(base, &p->mb, err)) != AQ_OK)
        goto fail;
    if ((st = aq_publisher_new(p->nc, p->mb, cfg->store_timeout_ms, &p->pub, err)) != AQ_OK)
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
    int64_t every = cfg->queue.ack_wait_ms / 6;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};
    event_add(p->progress_timer, &tv);

    aq_fetch_opts fo = {
        .slots = (int)cfg->concurrency,
        .max_batch = (int)cfg->fetch_batch,
        .wait_ms = cfg->fetch_wait_ms,
        .deliver = on_fetched,
        .on_error = on_fetch_error,
        .ctx = p,
    };
    if ((st = aq_fetcher_start(p->js, &cfg->queue, &fo, &p->fetcher, err)) != AQ_OK)
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
    out->in_flight = p->in_flight;
}

void aq_pipeline_destroy(aq_pipeline *p)
{
    if (!p)
        return;
    aq_fetcher_stop(p->fetcher);
    /* Anything still owned goes back to the stream for redelivery. */
    p->stopping = p->finished = true; /* releasing must not try to leave the loop */
    while (p->jobs) {
        natsMsg_Nak(p->jobs->msg, NULL);
        job_release(p->jobs);
    }
    aq_fetcher_destroy(p->fetcher);
    if (p->nc)
        natsConnection_FlushTimeout(p->nc, FLUSH_TIMEOUT_MS);
    kvStore_Destroy(p->results);
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
    aq_list_free(&p->keys);
    aq_list_free(&p->models);
    free(p);
}
