#include "pipeline.h"
#include "pipeline_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "llm/llm_request.h"
#include "pipeline/keeper.h"
#include "queue/queue_setup.h"
#include "tool/tool_schema.h"

#define FLUSH_TIMEOUT_MS 2000
/* A task delivered this often without being settled may be what crashes
 * workers: see on_fetched. A worker that merely died (OOM, node loss) makes
 * its tasks' second delivery, which stays on the fast path. */
#define SUSPECT_DELIVERIES 3

/* ---- fetch (fetcher thread) ---- */

static void job_admit(void *arg);

/* A payload refused before it was decoded (it does not decode, or a string
 * in it holds a NUL) still has an id when its Nats-Msg-Id is one, as
 * publishers are told to set it: the dead letter names it and a FAILED
 * result is stored under it, so a client waiting on that id gets an answer.
 * (A Nats-Msg-Id naming another task cannot overwrite that task's COMPLETED
 * result: result writes are compare-and-set and keep COMPLETED ones.) */
static void answer_under_msg_id(job *j)
{
    const char *id = NULL;
    if (natsMsgHeader_Get(j->msg, "Nats-Msg-Id", &id) == NATS_OK && aq_task_id_valid(id))
        aq_task_new_stub(id, &j->task, NULL);
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
    /* The cap admits the body of any valid task, however its JSON escapes
     * (up to 6 x max_prompt_bytes); memory grows only with the body. */
    aq_buf_init(&j->request, p->request_body_cap);
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
    if (j->decode_status == AQ_OK)
        j->decode_status = aq_task_check_subject(j->task, natsMsg_GetSubject(msg),
                                                 p->cfg->queue.task_subjects, &j->decode_err);
    if (!j->task)
        answer_under_msg_id(j);
    aq_mailbox_post(p->mb, &j->node, job_admit, j);
}

static void on_fetch_error(void *ctx, const aq_err *err)
{
    (void)ctx;
    aq_log(AQ_LOG_WARN, "fetch failed; backing off", AQ_LF_S("error", err->msg));
}

/* ---- admit (loop thread) ---- */

/* A redelivered task may already have been finished by a worker that died
 * before its ack: answer from the stored Result instead of calling again. */
static void on_redelivery_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    stored_state s = aq_job_read_stored(j, rd);
    j->result_rev = rd->status == AQ_OK ? rd->revision : 0;
    aq_kv_read_clear(rd);
    j->stage = STAGE_QUEUED;
    if (s == STORED_COMPLETED) {
        STAT_ADD(j->p, already_done);
        aq_wm_task_settled(j->p->wm, job_type(j), AQ_WM_ALREADY_DONE, -1);
        aq_job_log(AQ_LOG_INFO, j, "redelivered task already completed: acked without a call", NULL);
        aq_job_settle(j, SETTLE_ACK, 0);
        return;
    }
    if (s == STORED_FAILED_HERE) {
        /* The FAILED result is written after the dead letter: that is done. */
        STAT_ADD(j->p, already_done);
        aq_wm_task_settled(j->p->wm, job_type(j), AQ_WM_ALREADY_DONE, -1);
        aq_job_settle(j, SETTLE_TERM, 0);
        return;
    }
    /* No usable answer (or the read failed): go on; the compare-and-set
     * write is what keeps a COMPLETED result from being overwritten. */
    aq_job_begin(j);
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
    aq_wm_set_in_progress(p->wm, (int64_t)p->in_flight);
    j->started_unix_ms = aq_now_unix_ms();
    j->last_progress_ms = aq_mono_ms();

    if (j->decode_status != AQ_OK) {
        aq_job_fail(j, j->decode_status, &j->decode_err);
        return;
    }
    /* A redelivered session task goes through its run instead: it may
     * still hold the session's lease (a crash after its Result was stored),
     * which the run takes back and releases; its checkpoint makes that
     * cheap (no model call, the turn already appended, the Result kept). */
    if (j->delivered > 1 && aq_job_has_valid_id(j) &&
        !(j->task->session_id && *j->task->session_id)) {
        j->stage = STAGE_CHECKING;
        aq_job_read(j, p->results_get, j->task->id, on_redelivery_read);
        return;
    }
    aq_job_begin(j);
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

void aq_pipeline_update_pause(aq_pipeline *p)
{
    bool want = p->waiting_for_budget > 0 || p->slot_waiters > 0 ||
                (p->cfg->agent_max_runs > 0 && p->runs_in_flight >= (size_t)p->cfg->agent_max_runs);
    if (want != p->fetch_paused) {
        p->fetch_paused = want;
        aq_fetcher_pause(p->fetcher, want);
    }
}

/* ---- shutdown ---- */

void aq_pipeline_maybe_finish(aq_pipeline *p)
{
    /* Slots count every message owned, including ones handed to the loop
     * and not started yet: the loop may exit only when all are settled
     * (and runs that gave their slot back while tools ran are jobs). */
    if (!p->stopping || p->finished || aq_fetcher_in_use(p->fetcher) > 0 || p->jobs)
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
        aq_job_log(AQ_LOG_WARN, j, why, NULL);
        aq_job_settle(j, SETTLE_NAK, delay);
        j = p->jobs;
    }
}


static void cut_short(aq_pipeline *p)
{
    p->cut_short = true;
    /* Calls and waits end now; reads and writes have a callback coming, which
     * settles them (write_failed hands back once cut_short is set). */
    hand_back(p, STAGE_BIT(STAGE_QUEUED) | STAGE_BIT(STAGE_FOLLOWING) | STAGE_BIT(STAGE_SHARING) |
                     STAGE_BIT(STAGE_CALLING) | STAGE_BIT(STAGE_WAITING) | STAGE_BIT(STAGE_TOOLS),
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
    /* Agent runs waiting for tools too: their checkpoint holds every step so
     * far, and a call repeated by the next delivery has the same
     * idempotency key. */
    hand_back(p, STAGE_BIT(STAGE_TOOLS), "shutting down: agent run waiting for tools handed back");
    struct timeval tv = {p->cfg->shutdown_grace_ms / 1000, (p->cfg->shutdown_grace_ms % 1000) * 1000};
    evtimer_add(p->grace_timer, &tv);
    aq_pipeline_maybe_finish(p);
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
    aq_ptrmap_init(&p->cache_leaders);
    /* Per-process jitter: workers started together must not retry together. */
    srandom((unsigned)(aq_now_unix_ms() ^ ((int64_t)getpid() << 16)));
    aq_task_limits_default(&p->limits);
    p->limits.max_payload_bytes = (size_t)cfg->queue.max_msg_size;
    p->limits.max_prompt_bytes = (size_t)cfg->max_prompt_bytes;
    p->limits.max_tokens_cap = (uint32_t)cfg->max_tokens_cap;
    p->limits.max_media_bytes = (size_t)cfg->max_media_bytes;
    p->limits.max_tools = (size_t)cfg->agent_max_tools;
    p->limits.max_steps_cap = (uint32_t)cfg->agent_max_steps_cap;
    p->limits.max_tool_calls_cap = (uint32_t)cfg->agent_max_tool_calls_cap;
    p->limits.check_tool_schema = aq_tool_schema_check; /* a tool's schema must compile */
    p->request_body_cap = aq_llm_request_body_cap(&p->limits);
#ifdef AQ_TEST_HOOKS
    p->crash_marker = getenv("AGENTQ_TEST_CRASH_MARKER");
#endif
    set_worker_name(p, cfg);
    snprintf(p->results_prefix, sizeof(p->results_prefix), "$KV.%s.", cfg->queue.results_bucket);
    snprintf(p->cache_prefix, sizeof(p->cache_prefix), "$KV.%s.", cfg->cache_bucket);
    aq_route_config route_cfg = {cfg->routes, cfg->default_model, cfg->allowed_models,
                                 cfg->fallback_model};
    p->request_opts.prompt_cache_min_tokens = (uint32_t)cfg->prompt_cache_min_tokens;
    if ((st = aq_list_split(cfg->api_key, "api_key", AQ_WORKER_MAX_API_KEYS, &p->keys, err)) != AQ_OK ||
        (st = aq_route_new(&route_cfg, &p->router, err)) != AQ_OK ||
        (st = aq_cost_table_parse(cfg->prices, &p->prices, err)) != AQ_OK)
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
    p->max_deliver = max_deliver;
    aq_log(AQ_LOG_INFO, "consumer bound", AQ_LF_S("consumer", cfg->queue.consumer),
           AQ_LF_I("ack_wait_ms", p->ack_wait_ms), AQ_LF_I("max_deliver", max_deliver));
    if ((st = aq_mailbox_new(base, &p->mb, err)) != AQ_OK)
        goto fail;
    if ((st = aq_publisher_new(p->nc, p->mb, cfg->store_timeout_ms, &p->pub, err)) != AQ_OK)
        goto fail;
    /* Each task reads at most one key at a time. */
    int reads = cfg->concurrency < AQ_KV_GETTER_MAX_IN_FLIGHT ? (int)cfg->concurrency
                                                               : AQ_KV_GETTER_MAX_IN_FLIGHT;
    aq_kv_getter_config gc = {cfg->store_timeout_ms, reads, (size_t)cfg->queue.max_msg_size};
    if ((st = aq_kv_getter_new(p->nc, p->js, cfg->queue.results_bucket, &gc, base, p->mb,
                               &p->results_get, err)) != AQ_OK)
        goto fail;
    if ((st = aq_kv_getter_new(p->nc, p->js, cfg->cache_bucket, &gc, base, p->mb, &p->cache_get,
                               err)) != AQ_OK) {
        if (st == AQ_NOT_FOUND)
            aq_err_set(err, AQ_CONFIG, "cache bucket %s does not exist: run `agentq init`",
                       cfg->cache_bucket);
        st = aq_err_prefix(err, "response cache");
        goto fail;
    }
    if ((st = aq_spend_start(p, err)) != AQ_OK)
        goto fail;
    if ((st = aq_agent_start(p, err)) != AQ_OK)
        goto fail;

    aq_llm_client_config lc = {
        .base_url = cfg->base_url,
        .anthropic_version = cfg->anthropic_version,
        .connect_timeout_ms = cfg->llm_connect_timeout_ms,
        .timeout_ms = cfg->llm_timeout_ms,
        .idle_timeout_ms = cfg->llm_idle_timeout_ms,
        .stream_timeout_ms = cfg->llm_stream_timeout_ms,
        .max_response_bytes = (size_t)cfg->max_response_bytes,
        .max_connections = 0,
        .shard_calls = (long)cfg->llm_shard_calls,
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
    /* Parked tasks are released by every worker that can see them, whatever
     * its own budget_action (one switched to fail must not strand them). */
    aq_err perr;
    bool release = aq_queue_stream_exists(p->js, cfg->queue.deferred_stream, "deferred stream",
                                          &perr) == AQ_OK;
    if ((st = aq_keeper_start(p->js, &cfg->queue, p->budgets, release, &p->keeper, err)) != AQ_OK)
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

void aq_pipeline_set_metrics(aq_pipeline *p, aq_worker_metrics *wm)
{
    aq_err err;
    p->wm = wm;
    aq_wm_watch_ratelimit(wm, p->limiter, &err);
    if (p->spend)
        aq_wm_watch_budget(wm, p->spend, &err);
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
    aq_keeper_destroy(p->keeper);
    /* Reads not completed are dropped: no job may hear from them again. */
    aq_kv_getter_destroy(p->results_get);
    aq_kv_getter_destroy(p->cache_get);
    aq_kv_getter_destroy(p->runs_get);
    aq_kv_getter_destroy(p->session_get);
    /* Anything still owned goes back to the stream for redelivery. */
    p->stopping = p->finished = true; /* releasing must not try to leave the loop */
    while (p->jobs)
        aq_job_settle(p->jobs, SETTLE_NAK, 0);
    aq_agent_stop(p); /* tool calls still out complete (cancelled) */
    aq_fetcher_destroy(p->fetcher);
    if (p->nc)
        natsConnection_FlushTimeout(p->nc, FLUSH_TIMEOUT_MS);
    /* Every job is released (reservations settled or cancelled): give the
     * budget leases back and write the spent figures while connected. */
    aq_spend_stop(p);
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
    aq_ptrmap_free(&p->cache_leaders);
    aq_rl_destroy(p->limiter);
    aq_list_free(&p->keys);
    aq_route_destroy(p->router);
    aq_cost_table_destroy(p->prices);
    free(p);
}
