/* Agent runs in the pipeline (loop thread): a task with tools (or with a
 * session_id: a conversation continued, tools or not) is a run of steps, model call -> tool calls -> model call ..., its state checkpointed
 * in the KV bucket agentq-runs (internal/agent) so that a redelivery resumes
 * where the last delivery stopped.
 *
 *   aq_job_begin -> aq_agent_begin: read the checkpoint (runs getter)
 *     absent: a new run; present: resume from it
 *   advance: aq_run_next says what comes next
 *     CALL_MODEL / CALL_FINAL  aq_job_step: the single call's own path (route
 *                              per step, response cache for deterministic
 *                              steps, spending budget, rate budget, retries
 *                              and 429/529 deferrals in place), with the
 *                              step's request (aq_agent_build_request)
 *       -> aq_agent_answered: aq_run_apply_answer, save, then advance
 *     DISPATCH_TOOLS           each input checked against its tool's schema
 *                              (a violation is an is_error result, never
 *                              dispatched), the others dispatched at once
 *                              (internal/tool) with the idempotency key;
 *                              each result recorded; the batch complete:
 *                              save, then advance
 *     DONE                     aq_job_complete: the Result (from the run),
 *                              compare-and-set, ack
 *     FAIL                     aq_job_fail: dead letter + FAILED Result
 *
 * A task with session_id first takes the session's lease (one task of a
 * session at a time: a task that finds it held waits here, still owned,
 * trying again with a backoff), and a new run starts from the session's
 * history (the newest turns within session_context_tokens). When the run is
 * DONE its turn is appended to the history (compare-and-set, idempotent by
 * task id) before the Result is stored; the lease is released once the task
 * is acked or terminated (a hand-back keeps it: the redelivery, the same
 * task id, takes it back at once). The lease is renewed after a step when
 * half its TTL has passed.
 *
 * Every save is a compare-and-set on the checkpoint's revision, and nothing
 * goes on before its acknowledgement: a step whose answer (or tool results)
 * is stored is never asked (or run) again. A save that finds another
 * revision (another delivery advanced the run) reloads and goes on from
 * what is stored; a save that was not confirmed is sent again with the same
 * revision (if the first one landed, the second conflicts and the reload
 * finds it).
 *
 * Tool calls keep the task owned (the pipeline's progress timer sends
 * in-progress acks for every job). A run whose job goes away while its
 * calls are out (shutdown hand-back, a permanent failure of one call) leaves
 * its agent state behind until the last call's completion frees it. */
#include "pipeline_job.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_config.h"
#include "agent/agent_event.h"
#include "agent/agent_run.h"
#include "agent/agent_store.h"
#include "core/clock.h"
#include "session/session.h"
#include "tool/tool_dispatch.h"
#include "tool/tool_schema.h"

#define SAVE_RETRY_MIN_MS 250
#define SAVE_RETRY_MAX_MS 5000
#define MAX_RELOADS 10 /* conflicts in a row, then hand the task back */

struct job_agent;

/* One tool call of the batch in flight. */
typedef struct tool_slot {
    aq_tool_call call; /* first: done(call) finds its slot */
    struct job_agent *a;
    char *tool_use_id;
    char *name; /* the call's `name` (the run's copy changes as results come in) */
    char key[AQ_RUN_IDEMPOTENCY_KEY_MAX];
} tool_slot;

typedef struct job_agent {
    job *j;       /* NULL once the job is gone (tool calls still out) */
    aq_run *run;  /* NULL until loaded or made */
    uint64_t rev; /* the checkpoint's revision (0: none written) */
    aq_run_limits lim;
    /* the model call of the current step */
    Agentq__V1__Message *const *messages;
    size_t n_messages;
    bool final_call;
    /* the tool batch in flight */
    tool_slot *slots;
    size_t n_slots, n_out;
    bool batch_open; /* results are still wanted */
    aq_tool_schema **schemas; /* one per task tool, compiled when first needed */
    size_t n_schemas;
    int save_tries, reloads;
    /* the session (task->session_id), else has_session false */
    bool has_session, lease_held;
    char history_key[AQ_KV_KEY_MAX + 1], lease_key[AQ_KV_KEY_MAX + 1];
    uint64_t lease_rev;
    int64_t lease_expires_unix_ms;
    uint32_t lease_waits;
} job_agent;

static void advance(job *j);
static void load(job *j);
static void save(job *j);
static void lease_acquire(job *j);
static void release_lease(aq_pipeline *p, job_agent *a, const char *session_id);
static void lend_slot(job *j);

/* ---- set up and tear down ---- */

aq_status aq_agent_start(aq_pipeline *p, aq_err *err)
{
    const aq_worker_config *cfg = p->cfg;
    aq_status st;
    int reads = cfg->concurrency < AQ_KV_GETTER_MAX_IN_FLIGHT ? (int)cfg->concurrency
                                                               : AQ_KV_GETTER_MAX_IN_FLIGHT;
    aq_kv_getter_config gc = {cfg->store_timeout_ms, reads, (size_t)cfg->runs_max_bytes};
    st = aq_kv_getter_new(p->nc, p->js, cfg->runs_bucket, &gc, p->base, p->mb, &p->runs_get, err);
    if (st == AQ_NOT_FOUND) {
        /* A deployment set up before agent runs existed still runs its
         * single calls; a task with tools then fails, saying why. */
        aq_log(AQ_LOG_WARN, "runs bucket missing: tasks with tools will fail (run `agentq init`)",
               AQ_LF_S("bucket", cfg->runs_bucket));
        p->runs_get = NULL;
    } else if (st != AQ_OK) {
        return aq_err_prefix(err, "runs bucket");
    }
    aq_kv_getter_config sgc = {cfg->store_timeout_ms, reads, (size_t)cfg->session_max_bytes};
    st = aq_kv_getter_new(p->nc, p->js, cfg->session_bucket, &sgc, p->base, p->mb, &p->session_get,
                          err);
    if (st == AQ_NOT_FOUND) {
        aq_log(AQ_LOG_WARN, "sessions bucket missing: tasks with a session_id will fail (run `agentq init`)",
               AQ_LF_S("bucket", cfg->session_bucket));
        p->session_get = NULL;
    } else if (st != AQ_OK) {
        return aq_err_prefix(err, "sessions bucket");
    }
    if ((st = aq_tool_dispatcher_new(p->nc, &cfg->tool, p->base, p->mb, &p->tools, err)) != AQ_OK)
        return aq_err_prefix(err, "tool calls");
    /* A checkpoint the server would refuse (over its max_payload, headers
     * included) fails its run at once (too_large) instead of being retried. */
    int64_t max_payload = natsConnection_GetMaxPayload(p->nc);
    p->runs_save_cap = (size_t)cfg->runs_max_bytes;
    if (max_payload > 4096 && (size_t)(max_payload - 4096) < p->runs_save_cap)
        p->runs_save_cap = (size_t)(max_payload - 4096);
    return AQ_OK;
}

void aq_agent_stop(aq_pipeline *p)
{
    /* Completes the calls still out (CANCELLED): their orphaned runs go. */
    aq_tool_dispatcher_destroy(p->tools);
    p->tools = NULL;
}

static void agent_free(job_agent *a)
{
    for (size_t i = 0; i < a->n_slots; i++) {
        aq_tool_call_clear(&a->slots[i].call);
        free(a->slots[i].tool_use_id);
        free(a->slots[i].name);
    }
    free(a->slots);
    for (size_t i = 0; i < a->n_schemas; i++)
        aq_tool_schema_destroy(a->schemas[i]);
    free(a->schemas);
    aq_run_free(a->run);
    free(a);
}

void aq_agent_release(job *j)
{
    job_agent *a = j->agent;
    if (!a)
        return;
    j->agent = NULL;
    /* Acked or terminated: the session's next task may run. Handed back:
     * kept, for this task's redelivery. */
    if (a->lease_held && j->settled != SETTLE_NAK)
        release_lease(j->p, a, j->task->session_id);
    j->p->runs_in_flight--;
    if (j->waits_for_slot) {
        j->waits_for_slot = false;
        j->p->slot_waiters--;
    }
    aq_pipeline_update_pause(j->p);
    aq_wm_agent_runs(j->p->wm, (int64_t)j->p->runs_in_flight);
    if (a->n_out > 0) { /* the last completion frees it */
        a->j = NULL;
        a->batch_open = false;
        return;
    }
    agent_free(a);
}

/* ---- helpers ---- */

static void defaults_of(const aq_worker_config *cfg, aq_run_defaults *d)
{
    d->max_steps = cfg->agent_max_steps;
    d->max_steps_cap = cfg->agent_max_steps_cap;
    d->max_tool_calls = cfg->agent_max_tool_calls;
    d->max_tool_calls_cap = cfg->agent_max_tool_calls_cap;
    d->ceiling_final = false;
    aq_agent_ceiling_action_parse(cfg->agent_ceiling_action, &d->ceiling_final);
}

/* The step's request pieces: the task's system, tools and options, the
 * run's conversation; tool_choice none for the final call. */
static void step_parts(const job *j, aq_llm_request_parts *parts)
{
    static const Agentq__V1__ToolChoice none = {
        PROTOBUF_C_MESSAGE_INIT(&agentq__v1__tool_choice__descriptor),
        AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE, (char *)"", false};
    const job_agent *a = j->agent;
    aq_llm_request_parts_from_task(j->task, j->model ? j->model : "", j->max_tokens, parts);
    parts->messages = a->messages;
    parts->n_messages = a->n_messages;
    parts->prompt = NULL;
    if (a->final_call)
        parts->tool_choice = &none;
}

/* Publish the step's event (core NATS, nothing stored; a failure is logged). */
static void publish_event(job *j, uint32_t step)
{
    json_t *ev = aq_agent_step_event(j->agent->run, step);
    aq_err err;
    if (!ev)
        return;
    if (aq_agent_event_publish(j->p->nc, NULL, j->task->id, ev, &err) != AQ_OK)
        aq_job_log(AQ_LOG_DEBUG, j, "step event not published", &err);
    json_decref(ev);
}

/* ---- load ---- */

static void on_history_read(aq_kv_read *rd);

static void on_checkpoint_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    job_agent *a = j->agent;
    aq_pipeline *p = j->p;
    aq_run *run = NULL;
    uint64_t rev = 0;
    aq_err err;
    aq_status st = aq_run_from_read(rd, (size_t)p->cfg->runs_max_bytes, &run, &rev, &err);
    aq_kv_read_clear(rd);
    j->stage = STAGE_QUEUED;
    if (st == AQ_OK) {
        aq_run_free(a->run);
        a->run = run;
        a->rev = rev;
        const Agentq__V1__RunState *s = aq_run_state(run);
        const aq_log_field extra[] = {AQ_LF_S("phase", aq_run_phase_name(s->phase)),
                                      AQ_LF_I("steps", s->n_steps),
                                      AQ_LF_I("revision", (int64_t)rev)};
        aq_job_log_with(AQ_LOG_INFO, j, "agent run resumed from its checkpoint", NULL, extra, 3);
    } else if (st == AQ_NOT_FOUND) {
        a->rev = rev;
        if (!a->run && a->has_session) { /* a new run starts from the session's history */
            j->stage = STAGE_CHECKING;
            aq_job_read(j, p->session_get, a->history_key, on_history_read);
            return;
        }
        if (!a->run && (st = aq_run_new(j->task, NULL, 0, aq_now_unix_ms(), &a->run, &err)) != AQ_OK) {
            if (aq_status_disposition(st) == AQ_DISP_PERMANENT)
                aq_job_fail(j, st, &err);
            else
                aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(p->cfg, 1));
            return;
        }
    } else if (st == AQ_INVALID_ARG || st == AQ_TOO_BIG) {
        /* What is stored is not a run we can go on from: never overwrite it. */
        aq_err_prefix(&err, "checkpoint in %s", p->cfg->runs_bucket);
        aq_job_fail(j, st, &err);
        return;
    } else {
        aq_job_log(AQ_LOG_WARN, j, "checkpoint read failed: trying again", &err);
        if (p->stopping || !aq_job_after(j, aq_job_backoff_ms(p->cfg, ++j->deferrals), load))
            aq_job_settle(j, SETTLE_NAK, 0);
        else
            j->stage = STAGE_WAITING;
        return;
    }
    advance(j);
}

static void load(job *j)
{
    j->stage = STAGE_CHECKING;
    aq_job_read(j, j->p->runs_get, j->task->id, on_checkpoint_read);
}

void aq_agent_begin(job *j)
{
    aq_pipeline *p = j->p;
    if (!p->runs_get) {
        aq_err e;
        aq_err_set(&e, AQ_CONFIG,
                   "task is an agent run (tools or a session_id) but the runs bucket %s does not exist: run `agentq init`",
                   p->cfg->runs_bucket);
        aq_job_fail(j, AQ_CONFIG, &e);
        return;
    }
    job_agent *a = calloc(1, sizeof(*a));
    if (!a) {
        aq_job_log(AQ_LOG_WARN, j, "out of memory for an agent run: task handed back", NULL);
        aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(p->cfg, 1));
        return;
    }
    a->j = j;
    j->agent = a;
    p->runs_in_flight++;
    aq_pipeline_update_pause(p);
    aq_wm_agent_runs(p->wm, (int64_t)p->runs_in_flight);
    aq_run_defaults d;
    defaults_of(p->cfg, &d);
    aq_run_limits_resolve(j->task, &d, &a->lim);
    const char *sid = j->task->session_id;
    if (sid && *sid) {
        aq_err e;
        aq_status st;
        a->has_session = true;
        if (!p->session_get)
            st = aq_err_set(&e, AQ_CONFIG,
                            "task has a session_id but the sessions bucket %s does not exist: run `agentq init`",
                            p->cfg->session_bucket);
        else
            st = aq_session_keys(sid, a->history_key, a->lease_key, &e);
        if (st != AQ_OK) {
            aq_job_fail(j, st, &e);
            return;
        }
        lease_acquire(j);
        return;
    }
    load(j);
}

/* ---- sessions ---- */

static void lease_try_again(job *j, const char *why, const aq_err *err)
{
    aq_pipeline *p = j->p;
    job_agent *a = j->agent;
    int64_t now = aq_now_unix_ms();
    /* 250 ms doubling to 4 s: the holder's run is a few calls long. */
    int64_t ms = 250LL << (a->lease_waits < 4 ? a->lease_waits : 4);
    a->lease_waits++;
    ms = ms / 2 + random() % (ms / 2 + 1);
    int64_t deadline = j->task->deadline_unix_ms;
    if (deadline && now + ms > deadline) {
        aq_err e;
        aq_err_set(&e, AQ_EXPIRED, "deadline would pass while waiting for the session: %s",
                   err ? err->msg : why);
        aq_job_fail(j, AQ_EXPIRED, &e);
        return;
    }
    if (a->lease_waits == 1 || !err)
        aq_job_log(AQ_LOG_INFO, j, why, err);
    lend_slot(j); /* waiting for another task, not calling: taken again before its first call */
    j->stage = STAGE_WAITING;
    if (p->stopping || !aq_job_after(j, ms, lease_acquire))
        aq_job_settle(j, SETTLE_NAK, ms);
}

static void on_lease_written(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    job *j = ctx;
    job_agent *a = j->agent;
    j->stage = STAGE_QUEUED;
    if (st == AQ_OK) {
        a->lease_held = true;
        a->lease_rev = seq;
        a->lease_waits = 0;
        load(j);
        return;
    }
    if (st == AQ_WRITE_CONFLICT) { /* another task took it first: look again */
        lease_acquire(j);
        return;
    }
    lease_try_again(j, "session lease not written: trying again", err);
}

static void on_lease_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    job_agent *a = j->agent;
    aq_pipeline *p = j->p;
    aq_session_lease busy = {0};
    uint64_t rev = 0;
    aq_err err;
    int64_t now = aq_now_unix_ms();
    aq_status st = aq_session_lease_decide(rd, j->task->id, now, &rev, &busy, &err);
    aq_kv_read_clear(rd);
    j->stage = STAGE_QUEUED;
    if (st == AQ_SESSION_BUSY) {
        char why[300];
        snprintf(why, sizeof(why), "session busy (task %s holds it): waiting", busy.holder_task);
        lease_try_again(j, why, NULL);
        return;
    }
    if (st != AQ_OK) {
        lease_try_again(j, "session lease read failed: trying again", &err);
        return;
    }
    natsMsg *m = NULL;
    if ((st = aq_session_lease_msg(p->cfg->session_bucket, j->task->session_id, j->task->id,
                                   p->worker_name, p->cfg->session_lease_ttl_ms, now, rev, &m,
                                   &a->lease_expires_unix_ms, &err)) != AQ_OK ||
        (st = aq_publisher_send(p->pub, m, NULL, on_lease_written, j, &err)) != AQ_OK) {
        lease_try_again(j, "session lease not written: trying again", &err);
        return;
    }
    j->stage = STAGE_STORING;
}

static void lease_acquire(job *j)
{
    j->stage = STAGE_CHECKING;
    aq_job_read(j, j->p->session_get, j->agent->lease_key, on_lease_read);
}

static void on_lease_released(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)ctx;
    (void)seq;
    if (st != AQ_OK) /* it expires after session_lease_ttl anyway */
        aq_log(AQ_LOG_INFO, "session lease not released", AQ_LF_S("error", err ? err->msg : ""));
}

/* Fire and forget: the job is going away. */
static void release_lease(aq_pipeline *p, job_agent *a, const char *session_id)
{
    natsMsg *m = NULL;
    aq_err err;
    a->lease_held = false;
    if (aq_kv_cas_msg(p->cfg->session_bucket, a->lease_key, NULL, 0, a->lease_rev, &m, &err) != AQ_OK)
        return;
    if (natsMsgHeader_Set(m, "KV-Operation", "DEL") != NATS_OK) {
        natsMsg_Destroy(m);
        return;
    }
    if (aq_publisher_send(p->pub, m, NULL, on_lease_released, NULL, &err) != AQ_OK)
        aq_log(AQ_LOG_INFO, "session lease not released", AQ_LF_S("session", session_id),
               AQ_LF_S("error", err.msg));
}

static void on_lease_renewed(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    job *j = ctx;
    job_agent *a = j->agent;
    j->stage = STAGE_QUEUED;
    if (st == AQ_OK) {
        a->lease_rev = seq;
    } else {
        /* Taken over (we were presumed dead) or not confirmed: go on; the
         * history append is still compare-and-set. */
        aq_job_log(AQ_LOG_WARN, j, "session lease not renewed", err);
        if (st == AQ_WRITE_CONFLICT)
            a->lease_held = false;
    }
    advance(j);
}

/* After a step: renew the lease once half its TTL is gone. True when a
 * renewal went out (its completion goes on with advance). */
static bool maybe_renew(job *j)
{
    job_agent *a = j->agent;
    aq_pipeline *p = j->p;
    int64_t now = aq_now_unix_ms();
    aq_err err;
    natsMsg *m = NULL;
    if (!a->lease_held || now < a->lease_expires_unix_ms - p->cfg->session_lease_ttl_ms / 2)
        return false;
    if (aq_session_lease_msg(p->cfg->session_bucket, j->task->session_id, j->task->id,
                             p->worker_name, p->cfg->session_lease_ttl_ms, now, a->lease_rev, &m,
                             &a->lease_expires_unix_ms, &err) != AQ_OK ||
        aq_publisher_send(p->pub, m, NULL, on_lease_renewed, j, &err) != AQ_OK)
        return false;
    j->stage = STAGE_STORING;
    return true;
}

static void on_history_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    job_agent *a = j->agent;
    aq_pipeline *p = j->p;
    Agentq__V1__Session *s = NULL;
    uint64_t rev = 0;
    aq_err err;
    aq_status st = aq_session_from_read(rd, (size_t)p->cfg->session_max_bytes, &s, &rev, &err);
    aq_kv_read_clear(rd);
    j->stage = STAGE_QUEUED;
    if (st != AQ_OK && st != AQ_NOT_FOUND) {
        if (st == AQ_INVALID_ARG || st == AQ_TOO_BIG) {
            aq_err_prefix(&err, "session %s", j->task->session_id);
            aq_job_fail(j, st, &err);
        } else {
            aq_job_log(AQ_LOG_WARN, j, "session history read failed: trying again", &err);
            if (p->stopping || !aq_job_after(j, aq_job_backoff_ms(p->cfg, ++j->deferrals), load))
                aq_job_settle(j, SETTLE_NAK, 0);
            else
                j->stage = STAGE_WAITING;
        }
        return;
    }
    const Agentq__V1__Message **msgs = NULL;
    size_t n = 0, from = 0;
    if ((st = aq_session_messages(s, &msgs, &n, &err)) == AQ_OK) {
        from = aq_session_window((const Agentq__V1__Message *const *)msgs, n,
                                 p->cfg->session_context_tokens);
        st = aq_run_new(j->task, (const Agentq__V1__Message *const *)msgs + from, n - from,
                        aq_now_unix_ms(), &a->run, &err);
    }
    free(msgs);
    aq_session_free(s);
    if (st != AQ_OK) {
        if (aq_status_disposition(st) == AQ_DISP_PERMANENT)
            aq_job_fail(j, st, &err);
        else
            aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(p->cfg, 1));
        return;
    }
    const aq_log_field extra[] = {AQ_LF_I("history_messages", (int64_t)(n - from)),
                                  AQ_LF_I("history_dropped", (int64_t)from)};
    aq_job_log_with(AQ_LOG_DEBUG, j, "agent run starts from its session's history", NULL, extra, 2);
    advance(j);
}

static void append_turn(job *j);

static void on_turn_written(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)seq;
    job *j = ctx;
    job_agent *a = j->agent;
    j->stage = STAGE_QUEUED;
    if (st == AQ_OK) {
        aq_job_complete(j);
        return;
    }
    if (st == AQ_WRITE_CONFLICT && ++a->reloads <= MAX_RELOADS) {
        append_turn(j); /* another writer: read again, add again */
        return;
    }
    aq_job_log(AQ_LOG_WARN, j, "session turn not appended: trying again", err);
    if (j->p->cut_short || !aq_job_after(j, SAVE_RETRY_MAX_MS, append_turn))
        aq_job_settle(j, SETTLE_NAK, 0);
    else
        j->stage = STAGE_STORING;
}

static void on_turn_history_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    job_agent *a = j->agent;
    aq_pipeline *p = j->p;
    Agentq__V1__Session *s = NULL;
    uint64_t rev = 0;
    aq_err err;
    bool appended = false;
    aq_buf out;
    natsMsg *m = NULL;
    aq_status st = aq_session_from_read(rd, (size_t)p->cfg->session_max_bytes, &s, &rev, &err);
    aq_kv_read_clear(rd);
    j->stage = STAGE_QUEUED;
    aq_buf_init(&out, (size_t)p->cfg->session_max_bytes + 65536);
    if (st == AQ_OK || st == AQ_NOT_FOUND) {
        size_t n = 0;
        Agentq__V1__Message *const *turn = aq_run_turn(a->run, &n);
        st = aq_session_add_turn(&s, j->task->session_id, j->task->id,
                                 (const Agentq__V1__Message *const *)turn, n, aq_now_unix_ms(),
                                 (size_t)p->cfg->session_max_bytes, &appended, &err);
    }
    if (st == AQ_OK && !appended) { /* a redelivery: the turn is there already */
        aq_session_free(s);
        aq_buf_free(&out);
        aq_job_complete(j);
        return;
    }
    if (st == AQ_OK)
        st = aq_session_encode(s, (size_t)p->cfg->session_max_bytes + 65536, &out, &err);
    if (st == AQ_OK)
        st = aq_kv_cas_msg(p->cfg->session_bucket, a->history_key, out.data, out.len, rev, &m, &err);
    if (st == AQ_OK && (st = aq_publisher_send(p->pub, m, NULL, on_turn_written, j, &err)) == AQ_OK)
        j->stage = STAGE_STORING;
    aq_session_free(s);
    aq_buf_free(&out);
    if (st == AQ_OK)
        return;
    if (aq_status_disposition(st) == AQ_DISP_PERMANENT) {
        aq_err_prefix(&err, "session %s: the turn cannot be appended", j->task->session_id);
        aq_job_fail(j, st, &err);
        return;
    }
    on_turn_written(j, st, 0, &err);
}

/* The run is DONE: its turn goes into the session's history, then the Result. */
static void append_turn(job *j)
{
    j->stage = STAGE_CHECKING;
    aq_job_read(j, j->p->session_get, j->agent->history_key, on_turn_history_read);
}

/* ---- save ---- */

static void save_again(job *j) { save(j); }

static void on_saved(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    job *j = ctx;
    job_agent *a = j->agent;
    aq_pipeline *p = j->p;
    j->stage = STAGE_QUEUED;
    if (st == AQ_OK) {
        a->rev = seq;
        a->save_tries = 0;
        a->reloads = 0;
        aq_wm_agent_checkpoint(p->wm);
        const Agentq__V1__RunState *s = aq_run_state(a->run);
        /* A step's event once its tools are over (or it asked for none). */
        if (s->phase != AGENTQ__V1__RUN_PHASE__RUN_PHASE_TOOLS_PENDING && s->n_steps > 0)
            publish_event(j, (uint32_t)s->n_steps);
        if (!maybe_renew(j))
            advance(j);
        return;
    }
    if (st == AQ_WRITE_CONFLICT) {
        if (++a->reloads > MAX_RELOADS) {
            aq_job_log(AQ_LOG_WARN, j, "checkpoint keeps changing under this run: task handed back", err);
            aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(p->cfg, 1));
            return;
        }
        aq_job_log(AQ_LOG_INFO, j, "another delivery advanced this run: reloading its checkpoint", err);
        load(j);
        return;
    }
    aq_job_log(AQ_LOG_WARN, j, "checkpoint write not confirmed; retrying", err);
    if (p->cut_short) {
        aq_job_settle(j, SETTLE_NAK, 0);
        return;
    }
    int64_t ms = SAVE_RETRY_MIN_MS << (a->save_tries < 5 ? a->save_tries : 5);
    a->save_tries++;
    j->stage = STAGE_STORING;
    if (!aq_job_after(j, ms < SAVE_RETRY_MAX_MS ? ms : SAVE_RETRY_MAX_MS, save_again))
        aq_job_settle(j, SETTLE_NAK, 0);
}

static void save(job *j)
{
    job_agent *a = j->agent;
    aq_pipeline *p = j->p;
    aq_err err;
    j->stage = STAGE_STORING;
    aq_status st = aq_run_save_async(p->pub, p->cfg->runs_bucket, a->run, a->rev,
                                     p->runs_save_cap, on_saved, j, &err);
    if (st == AQ_OK)
        return;
    if (st == AQ_TOO_BIG) {
        aq_err_prefix(&err, "checkpoint over runs_max_bytes (or the server's max_payload)");
        aq_job_fail(j, AQ_TOO_BIG, &err);
        return;
    }
    on_saved(j, st, 0, &err);
}

/* ---- model calls ---- */

aq_status aq_agent_build_request(job *j, const aq_llm_request_opts *base, aq_err *err)
{
    aq_llm_request_parts parts;
    aq_llm_request_opts opts = *base;
    step_parts(j, &parts);
    /* Incremental prompt caching (agent_prompt_cache): tools + system, and
     * the conversation up to the last message (this step's entry) and to the
     * previous user message (the last step's entry, read back now). */
    if (j->p->cfg->agent_prompt_cache)
        opts.cache_breakpoints = AQ_LLM_CACHE_TOOLS | AQ_LLM_CACHE_SYSTEM |
                                 AQ_LLM_CACHE_LAST_MESSAGE | AQ_LLM_CACHE_PREV_USER;
    return aq_llm_request_build_parts(&parts, &opts, &j->request, err);
}

bool aq_agent_cache_key(job *j, aq_err *err)
{
    aq_llm_request_parts parts;
    step_parts(j, &parts);
    return aq_cache_key_parts(&parts, j->p->cfg->cache_share_tenants, j->cache_key, err) == AQ_OK;
}

static void call_model(job *j, const aq_run_action *act)
{
    job_agent *a = j->agent;
    aq_llm_request_parts parts;
    a->messages = act->messages;
    a->n_messages = act->n_messages;
    a->final_call = act->kind == AQ_RUN_CALL_FINAL;
    /* A step is a call of its own: its retries, deferrals and cache state. */
    j->failures = j->deferrals = 0;
    j->spend_asks = 0;
    j->retry_after_ms = -1;
    j->cache_hit = j->cache_stored = false;
    j->model = NULL;
    step_parts(j, &parts);
    aq_job_step(j, aq_llm_request_input_tokens(&parts), act->step);
}

/* A step's answer, filed in the response cache (like a task's Result). */
static void cache_answer(job *j)
{
    Agentq__V1__Result r;
    aq_llm_content content = {0};
    aq_err err;
    if (!j->cache.write || j->cache_hit || j->fallback_used)
        return;
    agentq__v1__result__init(&r);
    r.id = j->task->id;
    r.type = j->task->type;
    r.status = AGENTQ__V1__STATUS__STATUS_COMPLETED;
    r.model = j->response.model ? j->response.model : (char *)j->model;
    r.output = j->response.text ? j->response.text : (char *)"";
    r.stop_reason = j->response.stop_reason ? j->response.stop_reason : (char *)"";
    r.request_id = j->request_id;
    r.tenant = j->task->tenant;
    if (aq_llm_response_content(&j->response, &content, &err) == AQ_OK) {
        r.content = content.blocks;
        r.n_content = content.n_blocks;
    }
    if (aq_result_pack(&r, &j->packed, &err) == AQ_OK)
        aq_job_cache_store(j);
    aq_llm_content_free(&content);
}

void aq_agent_answered(job *j)
{
    job_agent *a = j->agent;
    aq_llm_content content = {0};
    aq_err err;
    aq_status st;

    aq_job_cache_share(j); /* identical steps in flight take this answer too */
    cache_answer(j);
    if ((st = aq_llm_response_content(&j->response, &content, &err)) == AQ_OK) {
        const aq_llm_usage *u = &j->response.usage;
        aq_run_answer ans = {
            .content = content.blocks,
            .n_content = content.n_blocks,
            .stop_reason = j->response.stop_reason ? j->response.stop_reason : "",
            .model = j->response.model ? j->response.model : j->model,
            .route_rule = j->route_rule ? j->route_rule : "",
            .input_tokens = u->input_tokens,
            .output_tokens = u->output_tokens,
            .cache_creation_input_tokens = u->cache_creation_input_tokens,
            .cache_read_input_tokens = u->cache_read_input_tokens,
            .cost_micro_usd = j->cost_micro_usd,
            .cost_unknown = j->cost_unknown,
            .latency_ms = j->cache_hit ? 0 : j->llm_latency_ms,
            .cache_hit = j->cache_hit,
        };
        st = aq_run_apply_answer(a->run, &a->lim, &ans, aq_now_unix_ms(), &err);
    }
    aq_llm_content_free(&content);
    aq_llm_response_free(&j->response);
    j->have_response = false;
    a->messages = NULL;
    a->n_messages = 0;
    if (st != AQ_OK) {
        /* Out of memory: the run may be half-changed; the checkpoint is not
         * (a redelivery asks this step again). Anything else is a bug. */
        if (aq_status_disposition(st) == AQ_DISP_PERMANENT) {
            aq_job_fail(j, st, &err);
            return;
        }
        aq_job_log(AQ_LOG_WARN, j, "cannot record the answer: task handed back", &err);
        aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(j->p->cfg, 1));
        return;
    }
    save(j);
}

/* ---- slots ----
 *
 * `concurrency` bounds the fetcher's slots, so the model calls in flight.
 * A run gives its slot back while its tools run (a tool may take minutes),
 * or while it waits for its session's lease, and takes one again before its
 * next model call; while runs wait for one the fetcher is paused, so the
 * freed slots go to them first. agent_max_runs bounds the runs in flight
 * (the fetcher pauses at it). */

static void lend_slot(job *j)
{
    aq_pipeline *p = j->p;
    if (j->slot_lent)
        return;
    j->slot_lent = true;
    aq_fetcher_release(p->fetcher, 1);
    if (p->slot_waiters)
        aq_agent_slot_freed(p);
}

/* True when the job holds a slot (again); false: it waits for one. */
static bool take_slot(job *j)
{
    aq_pipeline *p = j->p;
    if (!j->slot_lent)
        return true;
    if (!j->waits_for_slot && aq_fetcher_try_take(p->fetcher)) {
        j->slot_lent = false;
        return true;
    }
    if (!j->waits_for_slot) {
        j->waits_for_slot = true;
        p->slot_waiters++;
        aq_pipeline_update_pause(p);
    }
    j->stage = STAGE_WAITING; /* a shutdown hands it back */
    j->wake_mono_ms = aq_mono_ms();
    return false;
}

void aq_agent_slot_freed(aq_pipeline *p)
{
    for (job *w = p->jobs; w && p->slot_waiters; w = w->next) {
        if (!w->waits_for_slot)
            continue;
        if (!aq_fetcher_try_take(p->fetcher))
            return;
        w->waits_for_slot = false;
        w->slot_lent = false;
        p->slot_waiters--;
        aq_pipeline_update_pause(p);
        if (!aq_job_after(w, 0, advance)) {
            aq_job_settle(w, SETTLE_NAK, 0);
            return; /* the list changed */
        }
    }
}

/* ---- tool calls ---- */

static const aq_tool_schema *schema_of(job *j, const char *name, aq_err *err)
{
    job_agent *a = j->agent;
    const Agentq__V1__Task *t = j->task;
    if (!a->schemas) {
        if (!(a->schemas = calloc(t->n_tools, sizeof(*a->schemas)))) {
            aq_err_set(err, AQ_NOMEM, "out of memory");
            return NULL;
        }
        a->n_schemas = t->n_tools;
    }
    for (size_t i = 0; i < t->n_tools; i++) {
        if (strcmp(t->tools[i]->name, name) != 0)
            continue;
        const char *js = t->tools[i]->input_schema_json ? t->tools[i]->input_schema_json : "";
        if (!a->schemas[i] &&
            aq_tool_schema_compile(js, strlen(js), &a->schemas[i], err) != AQ_OK)
            return NULL;
        return a->schemas[i];
    }
    aq_err_set(err, AQ_NOT_FOUND, "tool %s is not one of the task's tools", name);
    return NULL;
}

/* A tool's content (a JSON string, or an array of blocks) as the result:
 * text blocks become text; other blocks (images, documents) are passed as
 * their JSON text. `blocks`/`store` are released by free_content. */
typedef struct tool_content {
    json_t *root;
    Agentq__V1__ContentBlock **blocks;
    Agentq__V1__ContentBlock *block_mem;
    Agentq__V1__TextBlock *text_mem;
    char **dumps;
    size_t n;
} tool_content;

static void free_content(tool_content *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->dumps ? c->dumps[i] : NULL);
    free(c->dumps);
    free(c->blocks);
    free(c->block_mem);
    free(c->text_mem);
    json_decref(c->root);
    memset(c, 0, sizeof(*c));
}

static void content_of(const aq_tool_call *call, aq_run_tool_result *res, tool_content *c)
{
    memset(c, 0, sizeof(*c));
    res->text = call->content_json ? call->content_json : "";
    if (!call->content_json)
        return;
    c->root = json_loads(call->content_json, JSON_DECODE_ANY, NULL);
    if (json_is_string(c->root)) {
        res->text = json_string_value(c->root);
        return;
    }
    size_t n = json_array_size(c->root);
    if (!json_is_array(c->root) || n == 0)
        return;
    c->blocks = calloc(n, sizeof(*c->blocks));
    c->block_mem = calloc(n, sizeof(*c->block_mem));
    c->text_mem = calloc(n, sizeof(*c->text_mem));
    c->dumps = calloc(n, sizeof(*c->dumps));
    if (!c->blocks || !c->block_mem || !c->text_mem || !c->dumps) {
        free_content(c);
        return; /* the JSON text as it is */
    }
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(c->root, i);
        const char *type = json_string_value(json_object_get(b, "type"));
        const char *text = json_string_value(json_object_get(b, "text"));
        agentq__v1__content_block__init(&c->block_mem[i]);
        agentq__v1__text_block__init(&c->text_mem[i]);
        if (!(type && strcmp(type, "text") == 0 && text))
            text = c->dumps[i] = json_dumps(b, JSON_COMPACT);
        c->text_mem[i].text = (char *)(text ? text : "");
        c->block_mem[i].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
        c->block_mem[i].text = &c->text_mem[i];
        c->blocks[i] = &c->block_mem[i];
    }
    res->content = c->blocks;
    res->n_content = n;
}

/* The batch is complete (or the run failed): save, then go on. */
static void batch_over(job *j)
{
    job_agent *a = j->agent;
    a->batch_open = false;
    if (a->n_out == 0) {
        for (size_t i = 0; i < a->n_slots; i++) {
            free(a->slots[i].tool_use_id);
            free(a->slots[i].name);
        }
        free(a->slots);
        a->slots = NULL;
        a->n_slots = 0;
    }
    save(j);
}

/* Record one result; true when the batch is over (complete, or the run
 * failed). */
static bool record(job *j, const aq_run_tool_result *res, bool fail_run, const char *why)
{
    job_agent *a = j->agent;
    aq_err err;
    int64_t now = aq_now_unix_ms();
    aq_status st = aq_run_apply_tool_result(a->run, res, now, &err);
    if (st != AQ_OK) {
        aq_job_log(AQ_LOG_WARN, j, "tool result not recorded", &err);
        return false;
    }
    if (fail_run) {
        char msg[600];
        snprintf(msg, sizeof(msg), "tool call %s failed: %s", res->tool_use_id, why);
        if (aq_run_fail(a->run, AQ_TOOL_FAILED, msg, now, &err) != AQ_OK)
            aq_job_log(AQ_LOG_WARN, j, "run not failed", &err);
        return true;
    }
    return aq_run_phase(a->run) != AGENTQ__V1__RUN_PHASE__RUN_PHASE_TOOLS_PENDING;
}

static void on_tool_done(aq_tool_call *call)
{
    tool_slot *s = (tool_slot *)call;
    job_agent *a = s->a;
    a->n_out--;
    if (!a->j || !a->batch_open) { /* nobody wants it any more */
        aq_tool_call_clear(call);
        if (!a->j && a->n_out == 0)
            agent_free(a);
        return;
    }
    job *j = a->j;
    aq_pipeline *p = j->p;
    const char *outcome = aq_tool_outcome_name(call->outcome);
    aq_wm_tool_call(p->wm, s->name, outcome, call->latency_ms / 1000.0);
    bool fail_run = call->outcome == AQ_TOOL_PERMANENT_FAILURE ||
                    ((call->outcome == AQ_TOOL_TIMEOUT || call->outcome == AQ_TOOL_NO_RESPONDERS) &&
                     aq_tool_config_fails_run(&p->cfg->tool));
    if (call->outcome != AQ_TOOL_OK && call->outcome != AQ_TOOL_ERROR) {
        const aq_log_field extra[] = {AQ_LF_S("tool", s->name),
                                      AQ_LF_S("outcome", outcome),
                                      AQ_LF_I("attempts", call->attempts)};
        aq_job_log_with(AQ_LOG_INFO, j, "tool call failed", &call->err, extra, 3);
    }
    aq_run_tool_result res = {
        .tool_use_id = s->tool_use_id,
        .is_error = call->is_error,
        .outcome = outcome,
        .latency_ms = call->latency_ms > 0 ? (uint64_t)call->latency_ms : 0,
        .attempts = call->attempts,
    };
    tool_content c;
    content_of(call, &res, &c);
    bool over = record(j, &res, fail_run, call->err.msg[0] ? call->err.msg : outcome);
    free_content(&c);
    aq_tool_call_clear(call);
    if (over)
        batch_over(j);
}

static void dispatch(job *j, const aq_run_action *act)
{
    job_agent *a = j->agent;
    aq_pipeline *p = j->p;
    const Agentq__V1__Task *t = j->task;
    size_t n = act->n_calls;
    aq_err err;
    /* Copy what the calls need first: recording a result changes the run
     * (and act's pointers with it). */
    char **bad = calloc(n, sizeof(*bad)); /* a call not dispatched: why */
    const char **bad_outcome = calloc(n, sizeof(*bad_outcome));
    bool copied = (a->slots = calloc(n, sizeof(*a->slots))) != NULL;
    a->n_slots = copied ? n : 0;
    for (size_t i = 0; copied && i < n; i++) {
        a->slots[i].a = a;
        a->slots[i].tool_use_id = strdup(act->calls[i]->id);
        a->slots[i].name = strdup(act->calls[i]->name);
        copied = a->slots[i].tool_use_id && a->slots[i].name;
    }
    if (!bad || !bad_outcome || !copied) {
        free(bad);
        free(bad_outcome);
        a->batch_open = false; /* nothing out: batch_over's clean-up, without the save */
        for (size_t i = 0; i < a->n_slots; i++) {
            free(a->slots[i].tool_use_id);
            free(a->slots[i].name);
        }
        free(a->slots);
        a->slots = NULL;
        a->n_slots = 0;
        aq_job_log(AQ_LOG_WARN, j, "out of memory for tool calls: task handed back", NULL);
        aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(p->cfg, 1));
        return;
    }
    a->batch_open = true;
    j->stage = STAGE_TOOLS;
    uint32_t step = (uint32_t)aq_run_state(a->run)->n_steps;
    for (size_t i = 0; i < n; i++) {
        const Agentq__V1__PendingToolCall *pc = act->calls[i];
        tool_slot *s = &a->slots[i];
        if (aq_run_idempotency_key(t->id, pc->id, s->key, sizeof(s->key), &err) != AQ_OK) {
            bad[i] = strdup(err.msg);
            bad_outcome[i] = "error";
            continue;
        }
        const char *input = pc->input_json ? pc->input_json : "{}";
        const aq_tool_schema *schema = schema_of(j, pc->name, &err);
        if (!schema) {
            bad[i] = strdup(err.msg);
            bad_outcome[i] = "error";
            continue;
        }
        if (aq_tool_schema_validate(schema, input, strlen(input), &err) != AQ_OK) {
            char msg[AQ_ERR_MAX + 128];
            snprintf(msg, sizeof(msg), "input does not match the input_schema of %s: %s", pc->name,
                     err.msg);
            bad[i] = strdup(msg);
            bad_outcome[i] = "schema_violation";
            aq_wm_tool_schema_violation(p->wm, pc->name);
            aq_wm_tool_call(p->wm, pc->name, "schema_violation", -1);
            continue;
        }
        aq_tool_call *c = &s->call;
        c->name = s->name;
        c->input = input;
        c->input_len = strlen(input);
        c->idempotency_key = s->key;
        c->task_id = t->id;
        c->tenant = t->tenant && *t->tenant ? t->tenant : NULL; /* an empty header breaks readers */
        c->step = step;
        c->deadline_unix_ms = t->deadline_unix_ms;
        c->done = on_tool_done;
        c->ctx = s;
        if (aq_tool_call_start(p->tools, c, &err) != AQ_OK) {
            bad[i] = strdup(err.msg);
            bad_outcome[i] = "error";
            continue;
        }
        a->n_out++;
    }
    /* The calls not dispatched answer the model at once. */
    bool over = false;
    for (size_t i = 0; i < n && !over; i++) {
        if (!bad_outcome[i])
            continue;
        aq_run_tool_result res = {
            .tool_use_id = a->slots[i].tool_use_id,
            .text = bad[i] ? bad[i] : "not run",
            .is_error = true,
            .outcome = bad_outcome[i],
        };
        over = record(j, &res, false, NULL);
    }
    for (size_t i = 0; i < n; i++)
        free(bad[i]);
    free(bad);
    free(bad_outcome);
    if (over) {
        batch_over(j);
        return;
    }
    if (a->n_out > 0) /* no model-call slot while the tools run */
        lend_slot(j);
}

/* ---- the loop ---- */

static void run_ended(job *j)
{
    const Agentq__V1__RunState *s = aq_run_state(j->agent->run);
    const char *ceiling = NULL;
    if (s->ceiling && *s->ceiling)
        ceiling = s->phase == AGENTQ__V1__RUN_PHASE__RUN_PHASE_DONE ? "final" : "fail";
    aq_wm_agent_run_ended(j->p->wm, (uint32_t)s->n_steps, s->tool_calls, ceiling);
}

static void advance(job *j)
{
    job_agent *a = j->agent;
    aq_run_action act;
    aq_err err;
    if (aq_run_next(a->run, &a->lim, aq_now_unix_ms(), &act, &err) != AQ_OK) {
        aq_job_log(AQ_LOG_WARN, j, "agent run cannot go on: task handed back", &err);
        aq_job_settle(j, SETTLE_NAK, aq_job_backoff_ms(j->p->cfg, 1));
        return;
    }
    switch (act.kind) {
    case AQ_RUN_CALL_MODEL:
    case AQ_RUN_CALL_FINAL:
        if (j->p->stopping) { /* everything so far is in the checkpoint */
            aq_job_log(AQ_LOG_INFO, j, "shutting down: agent run handed back between steps", NULL);
            aq_job_settle(j, SETTLE_NAK, 0);
            return;
        }
        if (!take_slot(j)) /* aq_agent_slot_freed comes back here */
            return;
        call_model(j, &act);
        return;
    case AQ_RUN_DISPATCH_TOOLS:
        if (j->p->stopping) {
            aq_job_log(AQ_LOG_INFO, j, "shutting down: agent run handed back before its tools", NULL);
            aq_job_settle(j, SETTLE_NAK, 0);
            return;
        }
        dispatch(j, &act);
        return;
    case AQ_RUN_DONE:
        run_ended(j);
        if (a->has_session) {
            a->reloads = 0;
            append_turn(j);
            return;
        }
        aq_job_complete(j);
        return;
    case AQ_RUN_FAIL:
        run_ended(j);
        aq_err_set(&err, act.fail_status, "%s", act.fail_message ? act.fail_message : "agent run failed");
        aq_job_fail(j, act.fail_status, &err);
        return;
    }
}

/* ---- the Result ---- */

bool aq_agent_fill_result(job *j, Agentq__V1__Result *r, Agentq__V1__Usage *u)
{
    job_agent *a = j->agent;
    aq_err err;
    if (!a || !a->run)
        return false;
    Agentq__V1__RunPhase ph = aq_run_phase(a->run);
    if (j->outcome != AQ_OK && ph != AGENTQ__V1__RUN_PHASE__RUN_PHASE_FAILED &&
        aq_run_fail(a->run, j->outcome, j->outcome_err.msg, aq_now_unix_ms(), &err) != AQ_OK)
        return false;
    Agentq__V1__Error *job_error = r->error;
    if (aq_run_fill_result(a->run, r, u, &err) != AQ_OK)
        return false;
    if (j->outcome != AQ_OK) { /* the job's failure is the Result's */
        r->status = AGENTQ__V1__STATUS__STATUS_FAILED;
        if (job_error)
            r->error = job_error;
    }
    /* From the cache only when every step was. */
    const Agentq__V1__RunState *s = aq_run_state(a->run);
    bool all_hits = s->n_steps > 0;
    for (size_t i = 0; i < s->n_steps && all_hits; i++)
        all_hits = s->steps[i]->cache_hit;
    r->cache_hit = all_hits;
    return true;
}
