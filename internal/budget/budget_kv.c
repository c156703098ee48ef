/* The KV side of budgets: a thread that runs the synchronous round trips
 * (nats.c 3.4.1 has no asynchronous KV calls) and hands each completion back
 * to the loop thread; the bucket's creation; the day report for `agentq
 * status`.
 *
 * Compare-and-set is a JetStream publish to "$KV.<bucket>.<key>" with the
 * header Nats-Expected-Last-Subject-Sequence: the server refuses it with
 * JSStreamWrongLastSequenceErr when the key moved on. That is what
 * kvStore_Update does, but kvStore_Update does not tell a lost race from
 * another error, and the retry loop needs to. */
#include "budget_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue_conn.h"

#define NS_PER_MS 1000000LL

struct kv_thread {
    jsCtx *js;
    aq_mailbox *mb;
    char stream[300];
    char subject_prefix[300]; /* "$KV.<bucket>." */
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    kv_op *head, *tail; /* guarded by lock */
    bool stopping;      /* guarded by lock */
};

static bool stopping(kv_thread *t)
{
    pthread_mutex_lock(&t->lock);
    bool s = t->stopping;
    pthread_mutex_unlock(&t->lock);
    return s;
}

void kv_op_reset_cache(kv_op *op)
{
    json_decref(op->cached);
    op->cached = NULL;
    op->cached_rev = 0;
    op->cached_valid = false;
}

/* ---- one read, one write ---- */

/* The latest value of `key`: *value (new reference; an empty object when the
 * key has none or was deleted) and its revision (0: no entry). */
static aq_status read_key(kv_thread *t, kv_op *op, json_t **value, uint64_t *rev)
{
    char subject[AQ_BUDGET_KEY_MAX + 320];
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    aq_status st = AQ_OK;
    snprintf(subject, sizeof(subject), "%s%s", t->subject_prefix, op->key);
    op->round_trips++;
    natsStatus s = js_GetLastMsg(&m, t->js, t->stream, subject, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        *value = json_object();
        *rev = 0;
        return *value ? AQ_OK : aq_err_set(&op->err, AQ_NOMEM, "budget: out of memory");
    }
    if (s != NATS_OK) {
        op->errors++;
        if (jerr == JSStreamNotFoundErr)
            return aq_err_set(&op->err, AQ_NOT_FOUND,
                              "budget bucket %s does not exist (run `agentq init`)",
                              t->stream + 3);
        return aq_queue_nats_error(&op->err, s, jerr, "reading a budget key");
    }
    const char *kvop = NULL;
    bool deleted = natsMsgHeader_Get(m, "KV-Operation", &kvop) == NATS_OK && kvop &&
                   (strcmp(kvop, "DEL") == 0 || strcmp(kvop, "PURGE") == 0);
    int len = natsMsg_GetDataLength(m);
    json_t *v = NULL;
    if (deleted || len == 0) {
        v = json_object();
    } else if (len > AQ_BUDGET_VALUE_MAX) {
        st = aq_err_set(&op->err, AQ_TOO_BIG, "budget key %s holds %d bytes, cap %d", op->key, len,
                        AQ_BUDGET_VALUE_MAX);
        goto out;
    } else {
        json_error_t je;
        v = json_loadb(natsMsg_GetData(m), (size_t)len, 0, &je);
        if (!v || !json_is_object(v)) {
            json_decref(v);
            v = NULL;
            st = aq_err_set(&op->err, AQ_NATS, "budget key %s does not hold a JSON object", op->key);
            goto out;
        }
    }
    if (!v) {
        st = aq_err_set(&op->err, AQ_NOMEM, "budget: out of memory");
        goto out;
    }
    *value = v;
    *rev = natsMsg_GetSequence(m);
out:
    natsMsg_Destroy(m);
    return st;
}

/* Publish `data` to `key`; with `expect` the write happens only if the key's
 * latest revision is still `rev` (0: the key has no entry), else
 * AQ_WRITE_CONFLICT. *new_rev (may be NULL) = the revision written. */
static aq_status write_key(kv_thread *t, kv_op *op, const char *data, size_t len, bool expect,
                           uint64_t rev, uint64_t *new_rev)
{
    char subject[AQ_BUDGET_KEY_MAX + 320], seq[32];
    natsMsg *m = NULL;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    aq_status st = AQ_OK;
    snprintf(subject, sizeof(subject), "%s%s", t->subject_prefix, op->key);
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
    if (s == NATS_OK && expect) {
        snprintf(seq, sizeof(seq), "%llu", (unsigned long long)rev);
        s = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", seq);
    }
    if (s != NATS_OK) {
        st = aq_queue_nats_error(&op->err, s, 0, "building a budget write");
        goto out;
    }
    op->round_trips++;
    s = js_PublishMsg(&pa, t->js, m, NULL, &jerr);
    if (s != NATS_OK) {
        st = aq_queue_nats_error(&op->err, s, jerr, "writing a budget key");
        if (st != AQ_WRITE_CONFLICT)
            op->errors++;
        goto out;
    }
    if (new_rev)
        *new_rev = pa->Sequence;
out:
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return st;
}

/* ---- the exchange ---- */

static int64_t get_int(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

/* Apply the lease or give-back to `v` (a copy of the current value).
 * false: a lease that the value cannot cover (nothing to write). */
static aq_status apply(kv_op *op, json_t *v, bool *write)
{
    int64_t allocated = get_int(v, "allocated");
    json_t *holders = json_object_get(v, "holders");
    if (!json_is_object(holders)) {
        holders = json_object();
        if (!holders || json_object_set_new(v, "holders", holders) != 0)
            return aq_err_set(&op->err, AQ_NOMEM, "budget: out of memory");
    }
    int64_t mine = get_int(holders, op->instance);
    int64_t others = 0;
    const char *k;
    json_t *hv;
    json_object_foreach(holders, k, hv)
    {
        if (strcmp(k, op->instance) != 0 && json_is_integer(hv) && json_integer_value(hv) > 0)
            others++;
    }
    op->workers = others + 1;
    *write = true;
    if (op->kind == OP_LEASE) {
        int64_t remaining = op->limit - allocated;
        int64_t g = aq_budget_lease_size(remaining, op->need_min, op->want, op->chunk, op->workers);
        op->allocated = allocated;
        if (g <= 0 || g < op->need_min) {
            op->granted = 0;
            *write = false;
            return AQ_OK;
        }
        op->granted = g;
        allocated += g;
        mine += g;
    } else {
        int64_t give = op->give_back < allocated ? op->give_back : allocated;
        op->returned = give;
        allocated -= give;
        mine = mine > give ? mine - give : 0;
    }
    op->allocated = allocated;
    if (json_object_set_new(v, "allocated", json_integer(allocated)) != 0 ||
        json_object_set_new(v, "limit", json_integer(op->limit)) != 0)
        return aq_err_set(&op->err, AQ_NOMEM, "budget: out of memory");
    if (mine == 0)
        json_object_del(holders, op->instance);
    else if (json_object_get(holders, op->instance) || json_object_size(holders) < AQ_BUDGET_MAX_HOLDERS)
        if (json_object_set_new(holders, op->instance, json_integer(mine)) != 0)
            return aq_err_set(&op->err, AQ_NOMEM, "budget: out of memory");
    return AQ_OK;
}

/* Read (unless our last write is still the latest, which the write checks),
 * apply, write expecting the revision; on a lost race read again. */
static void run_exchange(kv_thread *t, kv_op *op)
{
    aq_status st = AQ_OK;
    op->granted = op->returned = 0;
    for (int tries = 0;; tries++) {
        if (tries >= AQ_BUDGET_CAS_TRIES) {
            st = aq_err_set(&op->err, AQ_WRITE_CONFLICT,
                            "budget key %s: %d compare-and-set writes lost in a row", op->key,
                            AQ_BUDGET_CAS_TRIES);
            break;
        }
        if (tries > 0 && stopping(t)) {
            st = aq_err_set(&op->err, AQ_SHUTDOWN, "budget: shutting down");
            break;
        }
        bool fresh = false;
        if (op->cached_valid && !op->optimistic)
            kv_op_reset_cache(op);
        if (!op->cached_valid) {
            json_t *v = NULL;
            uint64_t rev = 0;
            if ((st = read_key(t, op, &v, &rev)) != AQ_OK)
                break;
            json_decref(op->cached);
            op->cached = v;
            op->cached_rev = rev;
            op->cached_valid = true;
            op->optimistic = rev != 0 && rev == op->last_written_rev;
            fresh = true;
        }
        json_t *v = json_deep_copy(op->cached);
        bool write = false;
        if (!v) {
            st = aq_err_set(&op->err, AQ_NOMEM, "budget: out of memory");
            break;
        }
        if ((st = apply(op, v, &write)) != AQ_OK) {
            json_decref(v);
            break;
        }
        if (!write) {
            json_decref(v);
            if (!fresh) { /* refused on what we wrote last: someone may have given back */
                kv_op_reset_cache(op);
                continue;
            }
            break; /* refused on a fresh read: the answer */
        }
        char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text) {
            json_decref(v);
            st = aq_err_set(&op->err, AQ_NOMEM, "budget: out of memory");
            break;
        }
        uint64_t new_rev = 0;
        st = write_key(t, op, text, strlen(text), true, op->cached_rev, &new_rev);
        free(text);
        if (st == AQ_OK) {
            json_decref(op->cached);
            op->cached = v;
            op->cached_rev = new_rev;
            op->last_written_rev = new_rev;
            break;
        }
        json_decref(v);
        kv_op_reset_cache(op);
        if (st != AQ_WRITE_CONFLICT)
            break; /* a write whose answer was lost may have happened: read before the next */
        op->conflicts++;
        aq_err_clear(&op->err);
    }
    if (st != AQ_OK) {
        op->granted = op->returned = 0;
        kv_op_reset_cache(op);
    }
    op->st = st;
}

static void run_op(kv_thread *t, kv_op *op)
{
    op->round_trips = op->conflicts = op->errors = 0;
    aq_err_clear(&op->err);
    if (op->kind == OP_PUT)
        op->st = write_key(t, op, op->put_value, op->put_len, false, 0, NULL);
    else
        run_exchange(t, op);
}

static void op_complete(void *arg)
{
    kv_op *op = arg;
    op->complete(op);
}

static void *thread_main(void *arg)
{
    kv_thread *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        while (!t->stopping && !t->head)
            pthread_cond_wait(&t->cond, &t->lock);
        if (t->stopping) {
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        kv_op *op = t->head;
        t->head = op->next;
        if (!t->head)
            t->tail = NULL;
        pthread_mutex_unlock(&t->lock);
        run_op(t, op);
        pthread_mutex_lock(&t->lock);
        op->ran = true;
        pthread_mutex_unlock(&t->lock);
        aq_mailbox_post(t->mb, &op->node, op_complete, op);
    }
}

aq_status kv_thread_new(natsConnection *nc, const char *bucket, int64_t timeout_ms, aq_mailbox *mb,
                        kv_thread **out, aq_err *err)
{
    aq_status st = AQ_OK;
    kv_thread *t = calloc(1, sizeof(*t));
    if (!t)
        return aq_err_set(err, AQ_NOMEM, "budget: out of memory");
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    t->mb = mb;
    snprintf(t->stream, sizeof(t->stream), "KV_%s", bucket);
    snprintf(t->subject_prefix, sizeof(t->subject_prefix), "$KV.%s.", bucket);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = timeout_ms;
    natsStatus s = natsConnection_JetStream(&t->js, nc, &jo);
    if (s != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "budget: JetStream context");
        goto out;
    }
    if (pthread_create(&t->thread, NULL, thread_main, t) != 0) {
        st = aq_err_set(err, AQ_NOMEM, "budget: cannot start the KV thread");
        goto out;
    }
    t->running = true;
out:
    if (st != AQ_OK) {
        kv_thread_free(t);
        return st;
    }
    *out = t;
    return AQ_OK;
}

void kv_thread_submit(kv_thread *t, kv_op *op)
{
    op->next = NULL;
    op->ran = false;
    pthread_mutex_lock(&t->lock);
    if (t->tail)
        t->tail->next = op;
    else
        t->head = op;
    t->tail = op;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

bool kv_op_ran(kv_thread *t, kv_op *op)
{
    pthread_mutex_lock(&t->lock);
    bool r = op->ran;
    pthread_mutex_unlock(&t->lock);
    return r;
}

void kv_thread_stop(kv_thread *t)
{
    if (!t || !t->running)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    t->running = false;
    t->head = t->tail = NULL;
    /* Give-backs at shutdown run on the caller's thread: let them retry. */
    t->stopping = false;
}

void kv_thread_run_now(kv_thread *t, kv_op *op)
{
    run_op(t, op);
    op->ran = true;
}

void kv_thread_free(kv_thread *t)
{
    if (!t)
        return;
    kv_thread_stop(t);
    jsCtx_Destroy(t->js);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- the bucket ---- */

static const char *bucket_name(const char *bucket)
{
    return bucket && *bucket ? bucket : AQ_BUDGET_DEFAULT_BUCKET;
}

aq_status aq_budget_bucket_ensure(jsCtx *js, const char *bucket, int64_t ttl_ms, int replicas,
                                  bool *created, aq_err *err)
{
    bucket = bucket_name(bucket);
    if (ttl_ms <= 0)
        ttl_ms = AQ_BUDGET_DEFAULT_TTL_MS;
    if (replicas < 1)
        replicas = 1;
    /* Look first: creating a bucket that exists with the same settings
     * also succeeds, and would not tell which happened. */
    char stream[300];
    snprintf(stream, sizeof(stream), "KV_%s", bucket);
    jsStreamInfo *si = NULL, *si2 = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
        return aq_queue_nats_error(err, s, jerr, "budget bucket");
    if (s != NATS_OK) {
        kvStore *kv = NULL;
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = bucket;
        kc.Description = "agentq: daily budgets (leases) and spent figures";
        kc.History = 1;
        kc.TTL = ttl_ms * NS_PER_MS; /* nanoseconds, despite the name */
        kc.StorageType = js_FileStorage;
        kc.Replicas = replicas;
        kc.MaxValueSize = AQ_BUDGET_SPENT_VALUE_MAX;
        s = js_CreateKeyValue(&kv, js, &kc);
        kvStore_Destroy(kv);
        if (s != NATS_OK)
            return aq_queue_nats_error(err, s, 0, "budget bucket");
        if (created)
            *created = true;
        return AQ_OK;
    }
    /* nats.c 3.4.1 has no bucket update: update the stream behind it. */
    si->Config->MaxAge = ttl_ms * NS_PER_MS;
    si->Config->Replicas = replicas;
    si->Config->MaxMsgSize = AQ_BUDGET_SPENT_VALUE_MAX;
    s = js_UpdateStream(&si2, js, si->Config, NULL, &jerr);
    jsStreamInfo_Destroy(si2);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK)
        return aq_queue_nats_error(err, s, jerr, "budget bucket update");
    if (created)
        *created = false;
    return AQ_OK;
}

aq_status aq_budget_bucket_check(jsCtx *js, const char *bucket, aq_err *err)
{
    char stream[300];
    bucket = bucket_name(bucket);
    snprintf(stream, sizeof(stream), "KV_%s", bucket);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK)
        return AQ_OK;
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
        return aq_err_set(err, AQ_NOT_FOUND, "budget bucket %s does not exist (run `agentq init`)",
                          bucket);
    return aq_queue_nats_error(err, s, jerr, "budget bucket");
}

/* ---- the day report ---- */

#define REPORT_MAX_ROWS 1000000 /* contributions read for one day */

typedef struct report_acc {
    aq_budget_row *rows;
    size_t n, cap;
} report_acc;

static aq_budget_row *acc_add(report_acc *a, const char *tenant, const char *type)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        if (cap > REPORT_MAX_ROWS)
            return NULL;
        aq_budget_row *r = realloc(a->rows, cap * sizeof(*r));
        if (!r)
            return NULL;
        a->rows = r;
        a->cap = cap;
    }
    aq_budget_row *r = &a->rows[a->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
    snprintf(r->type, sizeof(r->type), "%s", type);
    r->limit_micro = -1;
    return r;
}

static int row_cmp(const void *x, const void *y)
{
    const aq_budget_row *a = x, *b = y;
    int c = strcmp(a->tenant, b->tenant);
    return c ? c : strcmp(a->type, b->type);
}

/* One "<day>.alloc.<tenant>[.<type>]" entry. */
static bool add_alloc(report_acc *a, const char *rest, const char *data, int len)
{
    char tenant[AQ_BUDGET_TENANT_MAX + 1], type[AQ_BUDGET_NAME_MAX + 1];
    const char *dot = strchr(rest, '.');
    size_t tl = dot ? (size_t)(dot - rest) : strlen(rest);
    type[0] = '\0';
    if (!aq_budget_unescape(rest, tl, tenant, sizeof(tenant)))
        return true; /* not ours: skip */
    if (dot && !aq_budget_unescape(dot + 1, strlen(dot + 1), type, sizeof(type)))
        return true;
    json_error_t je;
    json_t *v = len > 0 && len <= AQ_BUDGET_VALUE_MAX ? json_loadb(data, (size_t)len, 0, &je) : NULL;
    aq_budget_row *r = acc_add(a, tenant, type);
    if (!r) {
        json_decref(v);
        return false;
    }
    r->has_budget = true;
    r->spent_micro = type[0] ? -1 : 0;
    if (json_is_object(v)) {
        json_t *l = json_object_get(v, "limit");
        r->limit_micro = json_is_integer(l) ? (int64_t)json_integer_value(l) : -1;
        r->allocated_micro = get_int(v, "allocated");
        json_t *h = json_object_get(v, "holders");
        r->holders = json_is_object(h) ? (int64_t)json_object_size(h) : 0;
    }
    json_decref(v);
    return true;
}

/* One "<day>.spent.<instance>" entry: {"tenant": micro, ...}. */
static bool add_spent(report_acc *a, const char *data, int len)
{
    json_error_t je;
    json_t *v = len > 0 && len <= AQ_BUDGET_SPENT_VALUE_MAX ? json_loadb(data, (size_t)len, 0, &je)
                                                            : NULL;
    const char *k;
    json_t *x;
    bool ok = true;
    if (json_is_object(v)) {
        json_object_foreach(v, k, x)
        {
            if (!json_is_integer(x))
                continue;
            aq_budget_row *r = acc_add(a, k, "");
            if (!r) {
                ok = false;
                break;
            }
            r->spent_micro = (int64_t)json_integer_value(x);
        }
    }
    json_decref(v);
    return ok;
}

aq_status aq_budget_read_day(jsCtx *js, const char *bucket, int64_t day, int64_t timeout_ms,
                             aq_budget_day_report *out, aq_err *err)
{
    aq_status st = AQ_OK;
    kvStore *kv = NULL;
    kvWatcher *w = NULL;
    report_acc a = {0};
    size_t instances = 0;
    char dn[9], filter[32];
    bucket = bucket_name(bucket);
    aq_budget_day_name(day, dn);
    snprintf(filter, sizeof(filter), "%s.>", dn);
    natsStatus s = js_KeyValue(&kv, js, bucket);
    if (s != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "budget bucket");
        if (s == NATS_NOT_FOUND)
            st = aq_err_set(err, AQ_NOT_FOUND, "budget bucket %s does not exist (run `agentq init`)",
                            bucket);
        goto out;
    }
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    wo.IgnoreDeletes = true;
    wo.Timeout = timeout_ms;
    if ((s = kvStore_Watch(&w, kv, filter, &wo)) != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "watching the budget bucket");
        goto out;
    }
    int64_t deadline = nats_Now() + timeout_ms;
    for (;;) {
        int64_t left = deadline - nats_Now();
        kvEntry *e = NULL;
        if (left <= 0 || (s = kvWatcher_Next(&e, w, left)) != NATS_OK) {
            st = aq_queue_nats_error(err, left <= 0 ? NATS_TIMEOUT : s, 0, "reading the budget bucket");
            goto out;
        }
        if (!e)
            break; /* every key's latest value has been delivered */
        const char *key = kvEntry_Key(e);
        const char *data = kvEntry_Value(e);
        int len = kvEntry_ValueLen(e);
        bool ok = true;
        if (strncmp(key + 8, ".alloc.", 7) == 0 && strlen(key) > 15) {
            ok = add_alloc(&a, key + 15, data, len);
        } else if (strncmp(key + 8, ".spent.", 7) == 0) {
            instances++;
            ok = add_spent(&a, data, len);
        }
        kvEntry_Destroy(e);
        if (!ok) {
            st = aq_err_set(err, AQ_TOO_BIG, "budget day %s: over %d rows (or out of memory)", dn,
                            REPORT_MAX_ROWS);
            goto out;
        }
    }
    /* Merge: one row per (tenant, type), spent summed over instances. */
    qsort(a.rows, a.n, sizeof(*a.rows), row_cmp);
    size_t o = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (o > 0 && row_cmp(&a.rows[o - 1], &a.rows[i]) == 0) {
            aq_budget_row *d = &a.rows[o - 1], *x = &a.rows[i];
            if (x->has_budget) {
                d->has_budget = true;
                d->limit_micro = x->limit_micro;
                d->allocated_micro = x->allocated_micro;
                d->holders = x->holders;
            }
            if (x->spent_micro > 0 && d->spent_micro >= 0)
                d->spent_micro += x->spent_micro;
            continue;
        }
        if (o != i)
            a.rows[o] = a.rows[i];
        o++;
    }
    out->day = day;
    out->rows = a.rows;
    out->n_rows = o;
    out->n_instances = instances;
    a.rows = NULL;
out:
    free(a.rows);
    kvWatcher_Destroy(w);
    kvStore_Destroy(kv);
    return st;
}

void aq_budget_day_report_free(aq_budget_day_report *r)
{
    if (!r)
        return;
    free(r->rows);
    r->rows = NULL;
    r->n_rows = 0;
}
