/* The response cache in the pipeline (loop thread).
 *
 * After routing, a task whose cache plan allows reading looks up its key
 * (internal/cache/cache_key.h) in the cache bucket with a pipelined direct
 * get. A hit is answered at once: a COMPLETED Result marked cache_hit, cost
 * 0, no usage (nothing was billed), no rate budget and no call. A miss calls
 * the model; the answer's Result is then filed under the key (a plain
 * JetStream publish, its acknowledgement not awaited by the task).
 *
 * Identical cacheable requests in flight at once make one call: the first
 * one leads (reads the cache, then calls), the others wait here in
 * STAGE_SHARING, still owned, and take the leader's answer as a hit. When the
 * leader goes without an answer (a permanent failure, handed back), the
 * first waiter leads in its place and calls.
 *
 * The cache is an optimisation, never a reason to fail a task: a read that
 * fails or an entry that does not decode is a miss, a put that fails is
 * logged. */
#include "pipeline_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static uint64_t key_hash(const char *key)
{
    uint64_t h = XXH3_64bits(key, strlen(key));
    return h < 2 ? h + 2 : h; /* 0 and 1 are not valid map keys */
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

/* Make `text` (and the rest) the job's answer, served without a call. An
 * answer with blocks (tool_use) takes them too: `text` is then their text. */
static bool take_answer(job *j, const char *text, size_t text_len, const char *model,
                        const char *stop_reason, const char *request_id,
                        Agentq__V1__ContentBlock *const *blocks, size_t n_blocks)
{
    aq_llm_response r = {0};
    r.text = malloc(text_len + 1);
    r.model = dup_or_null(model);
    r.stop_reason = dup_or_null(stop_reason);
    if (!r.text || (model && *model && !r.model) || (stop_reason && *stop_reason && !r.stop_reason)) {
        aq_llm_response_free(&r);
        return false;
    }
    memcpy(r.text, text, text_len);
    r.text[text_len] = '\0';
    r.text_len = text_len;
    if (n_blocks > 0 && aq_llm_response_set_content(&r, blocks, n_blocks, NULL) != AQ_OK) {
        aq_llm_response_free(&r);
        return false;
    }
    aq_llm_response_free(&j->response);
    j->response = r;
    j->have_response = true;
    j->cache_hit = true;
    j->cost_micro_usd = 0;
    j->cost_unknown = false;
    snprintf(j->request_id, sizeof(j->request_id), "%s", request_id ? request_id : "");
    return true;
}

/* The answer is the job's: a single task completes, an agent run goes on. */
static void answered(job *j)
{
    if (j->agent)
        aq_agent_answered(j);
    else
        aq_job_complete(j);
}

static void unlink_sharer(job *w)
{
    job *l = w->sharing_with;
    if (w->sprev)
        w->sprev->snext = w->snext;
    else
        l->sharers = w->snext;
    if (w->snext)
        w->snext->sprev = w->sprev;
    w->sprev = w->snext = NULL;
    w->sharing_with = NULL;
}

/* A waiter that cannot take the leader's answer makes its own call. */
static void call_alone(job *w)
{
    w->stage = STAGE_WAITING;
    if (!aq_job_after(w, 0, aq_job_call))
        aq_job_settle(w, SETTLE_NAK, 0);
}

static void on_cache_read(aq_kv_read *rd)
{
    job *j = rd->ctx;
    aq_pipeline *p = j->p;
    Agentq__V1__Result *r = NULL;
    aq_err err;
    bool hit = false;

    j->stage = STAGE_QUEUED;
    if (rd->status == AQ_OK && !rd->deleted) {
        if (aq_result_unpack(natsMsg_GetData(rd->msg), (size_t)natsMsg_GetDataLength(rd->msg), &r,
                             &err) == AQ_OK &&
            r->status == AGENTQ__V1__STATUS__STATUS_COMPLETED && !r->fallback_used && r->output)
            hit = take_answer(j, r->output, strlen(r->output), r->model, r->stop_reason,
                              r->request_id, r->content, r->n_content);
        else
            aq_job_log(AQ_LOG_WARN, j, "cache entry is not a usable answer: calling the model",
                       r ? NULL : &err);
    } else if (rd->status != AQ_OK && rd->status != AQ_NOT_FOUND) {
        aq_job_log(AQ_LOG_INFO, j, "cache read failed: calling the model", &rd->err);
    }
    aq_result_free(r);
    aq_kv_read_clear(rd);
    if (!hit) {
        aq_wm_cache(p->wm, AQ_WM_CACHE_MISS);
        aq_job_call(j);
        return;
    }
    aq_wm_cache(p->wm, AQ_WM_CACHE_HIT);
    aq_job_log(AQ_LOG_DEBUG, j, "answered from the response cache", NULL);
    aq_job_cache_share(j);
    answered(j);
}

bool aq_job_cache_lookup(job *j)
{
    aq_pipeline *p = j->p;
    aq_err err;

    j->cache = aq_cache_plan_for(j->task);
    if (j->agent) { /* an agent run's step: the key of its conversation so far */
        if ((j->cache.read || j->cache.write) && !aq_agent_cache_key(j, &err)) {
            aq_job_log(AQ_LOG_WARN, j, "no cache key: the response cache is skipped", &err);
            j->cache.read = j->cache.write = false;
        }
    } else if (j->cache.write &&
        aq_cache_key(j->task, j->model, j->max_tokens, p->cfg->cache_share_tenants, j->cache_key,
                     &err) != AQ_OK) {
        aq_job_log(AQ_LOG_WARN, j, "no cache key: the response cache is skipped", &err);
        j->cache.read = j->cache.write = false;
    }
    if (!j->cache.read) { /* not cacheable, bypass, or a refresh (write only) */
        aq_wm_cache(p->wm, AQ_WM_CACHE_BYPASS);
        return false;
    }
    j->cache_hash = key_hash(j->cache_key);
    job *l = aq_ptrmap_get(&p->cache_leaders, (void *)(uintptr_t)j->cache_hash);
    if (l && strcmp(l->cache_key, j->cache_key) == 0) {
        j->sharing_with = l;
        j->snext = l->sharers;
        if (l->sharers)
            l->sharers->sprev = j;
        l->sharers = j;
        j->stage = STAGE_SHARING;
        aq_job_log(AQ_LOG_DEBUG, j, "identical request in flight: sharing its answer", NULL);
        return true;
    }
    if (!l) /* a colliding hash just leads nothing: it reads and calls alone */
        j->cache_leads =
            aq_ptrmap_put(&p->cache_leaders, (void *)(uintptr_t)j->cache_hash, j) == AQ_OK;
    j->stage = STAGE_CHECKING;
    aq_job_read(j, p->cache_get, j->cache_key, on_cache_read);
    return true;
}

void aq_job_cache_share(job *j)
{
    aq_pipeline *p = j->p;
    if (j->cache_leads)
        aq_ptrmap_take(&p->cache_leaders, (void *)(uintptr_t)j->cache_hash);
    j->cache_leads = false;
    job *w;
    aq_llm_content content = {0};
    if (j->sharers && j->response.n_tool_use > 0 &&
        aq_llm_response_content(&j->response, &content, NULL) != AQ_OK)
        content.n_blocks = 0; /* the waiters then call alone */
    while ((w = j->sharers)) {
        unlink_sharer(w);
        w->stage = STAGE_QUEUED;
        /* An answer of the fallback model only for those that allow it. */
        if ((j->fallback_used && !w->task->allow_fallback) ||
            (j->response.n_tool_use > 0 && content.n_blocks == 0) ||
            !take_answer(w, j->response.text ? j->response.text : "", j->response.text_len,
                         j->response.model ? j->response.model : j->model, j->response.stop_reason,
                         j->request_id, content.blocks, content.n_blocks)) {
            call_alone(w);
            continue;
        }
        w->fallback_used = j->fallback_used;
        aq_wm_cache(p->wm, AQ_WM_CACHE_HIT);
        aq_job_log(AQ_LOG_DEBUG, w, "answered by an identical request's call", NULL);
        answered(w);
    }
    aq_llm_content_free(&content);
}

static void on_cache_stored(void *ctx, aq_status st, uint64_t seq, const aq_err *err)
{
    (void)ctx;
    (void)seq;
    if (st != AQ_OK)
        aq_log(AQ_LOG_WARN, "response not cached", AQ_LF_S("error", err ? err->msg : ""));
}

void aq_job_cache_store(job *j)
{
    aq_pipeline *p = j->p;
    char subject[512];
    natsMsg *m = NULL;
    aq_err err;

    /* A fallback answer is not what the key (the routed model) asks for. */
    if (j->outcome != AQ_OK || !j->have_response || !j->cache.write || j->cache_hit ||
        j->cache_stored || j->fallback_used)
        return;
    j->cache_stored = true;
    snprintf(subject, sizeof(subject), "%s%s", p->cache_prefix, j->cache_key);
    if (natsMsg_Create(&m, subject, NULL, j->packed.data, (int)j->packed.len) != NATS_OK) {
        aq_job_log(AQ_LOG_WARN, j, "response not cached: out of memory", NULL);
        return;
    }
    if (aq_publisher_send(p->pub, m, NULL, on_cache_stored, p, &err) != AQ_OK)
        aq_job_log(AQ_LOG_WARN, j, "response not cached", &err);
}

void aq_job_cache_leave(job *j)
{
    aq_pipeline *p = j->p;
    if (j->sharing_with)
        unlink_sharer(j);
    if (j->cache_leads)
        aq_ptrmap_take(&p->cache_leaders, (void *)(uintptr_t)j->cache_hash);
    j->cache_leads = false;
    job *w = j->sharers;
    if (!w)
        return;
    /* The first waiter leads now; the others wait for it instead. */
    unlink_sharer(w);
    w->sharers = j->sharers;
    for (job *o = w->sharers; o; o = o->snext)
        o->sharing_with = w;
    j->sharers = NULL;
    w->cache_leads = aq_ptrmap_put(&p->cache_leaders, (void *)(uintptr_t)w->cache_hash, w) == AQ_OK;
    call_alone(w);
}
