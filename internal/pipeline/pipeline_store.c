#include "pipeline_job.h"

#include <stdio.h>

#include "core/clock.h"
#include "pipeline/dead_letter.h"

#define STORE_RETRY_MIN_MS 250
#define STORE_RETRY_MAX_MS 5000
#define MAX_WRITE_CONFLICTS 10 /* then hand the task back rather than fight */

static void publish_dead_letter(job *j);

/* ---- store, then settle (loop thread) ---- */

static void fill_result(const job *j, Agentq__V1__Result *r, Agentq__V1__Usage *u,
                        Agentq__V1__Error *e, aq_llm_content *content)
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
    r->time_to_first_token_us = j->ttft_us;
    r->output_tokens_per_second = j->output_tps;
    int64_t since = t->created_unix_ms ? t->created_unix_ms : j->published_unix_ms;
    r->queue_latency_ms = since && j->started_unix_ms > since ? (uint64_t)(j->started_unix_ms - since) : 0;
    r->completed_unix_ms = aq_now_unix_ms();
    r->request_id = (char *)j->request_id;
    r->worker = (char *)p->worker_name;
    r->tenant = t->tenant;
    r->route_rule = (char *)(j->route_rule ? j->route_rule : "");
    r->fallback_used = j->fallback_used;
    r->cost_micro_usd = j->cost_micro_usd;
    r->cost_unknown = j->cost_unknown;
    r->cache_hit = j->cache_hit;
    if (j->have_response) {
        r->output = j->response.text ? j->response.text : (char *)"";
        r->stop_reason = j->response.stop_reason ? j->response.stop_reason : (char *)"";
        if (j->response.model)
            r->model = j->response.model;
        /* The answer's blocks when it is more than text. (A task with
         * tools is an agent run: aq_agent_fill_result fills its Result.) A
         * failed conversion leaves content empty, `output` still holds the
         * text. */
        if ((t->n_tools > 0 || j->response.n_tool_use > 0) &&
            aq_llm_response_content(&j->response, content, NULL) == AQ_OK) {
            r->content = content->blocks;
            r->n_content = content->n_blocks;
        }
    }
    if (j->have_response && !j->cache_hit) { /* a hit billed nothing: no usage */
        agentq__v1__usage__init(u);
        u->input_tokens = j->response.usage.input_tokens;
        u->output_tokens = j->response.usage.output_tokens;
        u->cache_creation_input_tokens = j->response.usage.cache_creation_input_tokens;
        u->cache_read_input_tokens = j->response.usage.cache_read_input_tokens;
        r->usage = u;
    }
    if (j->outcome != AQ_OK) {
        agentq__v1__error__init(e);
        e->class_ = (char *)aq_status_class(j->outcome);
        e->message = (char *)j->outcome_err.msg;
        e->http_status = (int32_t)(j->http_status >= 400 ? j->http_status : 0);
        r->error = e;
    }
    if (j->agent) /* an agent run: its answer, sums and steps */
        aq_agent_fill_result((job *)j, r, u);
}

/* A write could not be confirmed: try again while we still own the message;
 * when shutting down hard, hand it back for redelivery instead. */
static void write_failed(job *j, const aq_err *err, void (*again)(job *))
{
    aq_job_log(AQ_LOG_WARN, j, "write not confirmed; retrying", err);
    if (j->p->cut_short) {
        aq_job_settle(j, SETTLE_NAK, 0);
        return;
    }
    int64_t ms = STORE_RETRY_MIN_MS << (j->store_tries < 5 ? j->store_tries : 5);
    if (ms > STORE_RETRY_MAX_MS)
        ms = STORE_RETRY_MAX_MS;
    j->store_tries++;
    j->stage = STAGE_STORING; /* the timer comes back to it */
    if (!aq_job_after(j, ms, again))
        aq_job_settle(j, SETTLE_NAK, 0);
}

/* Our compare-and-set lost: someone wrote the key since we looked. */
static void on_conflict_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    if (rd->status != AQ_OK && rd->status != AQ_NOT_FOUND) {
        aq_err e = rd->err;
        aq_kv_read_clear(rd);
        write_failed(j, &e, aq_job_store_result);
        return;
    }
    stored_state s = aq_job_read_stored(j, rd);
    j->result_rev = rd->status == AQ_OK ? rd->revision : 0;
    aq_kv_read_clear(rd);
    if (s == STORED_COMPLETED) {
        /* Never overwrite a COMPLETED result nor count its cost twice. */
        STAT_ADD(j->p, already_done);
        aq_wm_task_settled(j->p->wm, job_type(j), AQ_WM_ALREADY_DONE, -1);
        aq_job_log(AQ_LOG_INFO, j, "task already completed elsewhere: result kept", NULL);
        aq_job_settle(j, j->outcome == AQ_OK ? SETTLE_ACK : SETTLE_TERM, 0);
        return;
    }
    aq_job_store_result(j);
}

static void on_result_stored(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)seq;
    job *j = ctx;
    if (st == AQ_WRITE_CONFLICT && ++j->conflicts <= MAX_WRITE_CONFLICTS) {
        aq_job_read(j, j->p->results_get, j->task->id, on_conflict_read);
        return;
    }
    if (st != AQ_OK) {
        write_failed(j, err, aq_job_store_result);
        return;
    }
    /* The Result is durable: only now may the task leave the stream. */
    if (j->outcome == AQ_OK) {
        STAT_ADD(j->p, completed);
        aq_wm_task_settled(j->p->wm, job_type(j), AQ_WM_COMPLETED, job_seconds(j));
        aq_job_log(AQ_LOG_DEBUG, j, "task completed", NULL);
        aq_job_settle(j, SETTLE_ACK, 0);
    } else {
        STAT_ADD(j->p, failed);
        aq_wm_task_settled(j->p->wm, job_type(j), j->dead_lettered ? AQ_WM_DEAD_LETTERED : AQ_WM_FAILED,
                           job_seconds(j));
        aq_job_settle(j, SETTLE_TERM, 0);
    }
}

void aq_job_store_result(job *j)
{
    aq_pipeline *p = j->p;
    Agentq__V1__Result r;
    Agentq__V1__Usage u;
    Agentq__V1__Error e;
    aq_err err;
    char subject[512], rev[32];
    natsMsg *m = NULL;
    aq_llm_content content = {0};

    j->stage = STAGE_STORING;
    fill_result(j, &r, &u, &e, &content);
    aq_status packed = aq_result_pack(&r, &j->packed, &err);
    aq_llm_content_free(&content);
    if (packed != AQ_OK) {
        /* Only a huge output can do this. Storing it without its text would
         * be a silent loss: fail the task, loudly, with a small Result. */
        aq_err_prefix(&err, "result for the bucket (max_msg_size)");
        if (j->outcome == AQ_OK) {
            aq_llm_response_free(&j->response);
            j->have_response = false;
            aq_job_fail(j, AQ_TOO_BIG, &err);
            return;
        }
        r.output = (char *)"";
        r.n_content = 0;
        aq_result_pack(&r, &j->packed, &err);
    }
    aq_job_cache_store(j);
    snprintf(subject, sizeof(subject), "%s%s", p->results_prefix, j->task->id);
    if (natsMsg_Create(&m, subject, NULL, j->packed.data, (int)j->packed.len) != NATS_OK) {
        aq_err_set(&err, AQ_NOMEM, "cannot create the result message");
        write_failed(j, &err, aq_job_store_result);
        return;
    }
    /* Compare-and-set: the write succeeds only if the key is as we last saw
     * it (revision 0: no entry). A lost race is resolved in on_conflict_read. */
    snprintf(rev, sizeof(rev), "%llu", (unsigned long long)j->result_rev);
    natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", rev);
    if (aq_publisher_send(p->pub, m, NULL, on_result_stored, j, &err) != AQ_OK)
        write_failed(j, &err, aq_job_store_result);
}

void aq_job_complete(job *j)
{
    j->outcome = AQ_OK;
    j->store_tries = 0;
    aq_job_store_result(j);
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
    j->dead_lettered = true;
    /* A waiting client gets an answer: a FAILED result, when the id allows. */
    if (aq_job_has_valid_id(j)) {
        j->store_tries = 0;
        aq_job_store_result(j);
        return;
    }
    STAT_ADD(j->p, failed);
    aq_wm_task_settled(j->p->wm, job_type(j), AQ_WM_DEAD_LETTERED, -1);
    aq_job_settle(j, SETTLE_TERM, 0);
}

static void publish_dead_letter(job *j)
{
    aq_pipeline *p = j->p;
    aq_dead_letter dl = {
        .payload = natsMsg_GetData(j->msg),
        .payload_len = natsMsg_GetDataLength(j->msg),
        .type = j->task ? j->task->type : NULL,
        .task_id = aq_job_has_valid_id(j) ? j->task->id : NULL,
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
    stored_state s = aq_job_read_stored(j, rd);
    if (rd->status == AQ_OK || rd->status == AQ_NOT_FOUND)
        j->result_rev = rd->status == AQ_OK ? rd->revision : 0;
    aq_kv_read_clear(rd);
    if (s == STORED_COMPLETED) {
        STAT_ADD(j->p, already_done);
        aq_wm_task_settled(j->p->wm, job_type(j), AQ_WM_ALREADY_DONE, -1);
        aq_job_log(AQ_LOG_INFO, j, "task failed here but is already completed: acked", &j->outcome_err);
        aq_job_settle(j, SETTLE_ACK, 0);
        return;
    }
    j->store_tries = 0;
    publish_dead_letter(j);
}

/* Permanent failure: dead letter, then a FAILED result, then Term. */
void aq_job_fail(job *j, aq_status st, const aq_err *err)
{
    j->outcome = st;
    j->outcome_err = *err;
    j->outcome_err.status = st;
    aq_job_log(AQ_LOG_WARN, j, "task dead-lettered", &j->outcome_err);
    if (aq_job_has_valid_id(j)) {
        j->stage = STAGE_CHECKING;
        aq_job_read(j, j->p->results_get, j->task->id, on_fail_read);
        return;
    }
    j->store_tries = 0;
    publish_dead_letter(j);
}
