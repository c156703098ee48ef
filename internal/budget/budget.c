/* The worker's budget client: local leases, reservations, settlements and
 * housekeeping, all on the loop thread; KV round trips go to budget_kv.c's
 * thread and come back through the mailbox. See budget.h for the model. */
#include "budget_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/clock.h"
#include "core/text.h"

#define DEFAULT_FLUSH_MS 2000
#define DEFAULT_IDLE_RETURN_MS 10000
#define DEFAULT_KV_TIMEOUT_MS 2000
#define DEFAULT_SHUTDOWN_MS 2000
#define DEF_BUCKETS 1024   /* hash buckets of the configured budgets */
#define SPENT_BUCKETS 1024 /* hash buckets of one day's spent figures */
/* A refusal seen less than this long ago answers EXCEEDED without asking
 * the bucket again, so a burst of tasks of a spent tenant costs no round
 * trips; after it the bucket is asked (others may have given leases back). */
#define RECHECK_MS 1000

typedef struct budget_def {
    char tenant[AQ_BUDGET_NAME_MAX + 1];
    char type[AQ_BUDGET_NAME_MAX + 1];
    int64_t limit, chunk;
    struct day_budget *cur; /* today's state, or NULL before first use */
    struct budget_def *hnext;
} budget_def;

/* One configured budget on one UTC day. */
typedef struct day_budget {
    aq_budget *b;
    budget_def *def;
    int64_t day;
    int64_t local;          /* unused lease held here; negative = debt */
    int64_t in_flight;      /* reserved by granted reservations not settled yet */
    int64_t seen_allocated; /* the fleet's allocated at the last exchange; -1 never */
    int64_t seen_ms;        /* when (monotonic) */
    int64_t refused_ms;     /* last refusal by the bucket (monotonic); 0 none */
    int64_t last_use_ms;
    unsigned refs;          /* reservations that point here */
    bool exhausted;         /* refused since the last grant: give unused back */
    bool op_busy;
    kv_op op;
    aq_budget_reservation *wait_head, *wait_tail;
    struct day_budget *next_live;
} day_budget;

typedef struct spent_entry {
    char *tenant;
    int64_t micro;
    struct spent_entry *hnext;
} spent_entry;

/* One UTC day's real costs of this instance, per tenant. */
typedef struct spent_table {
    aq_budget *b;
    int64_t day;
    spent_entry *buckets[SPENT_BUCKETS];
    size_t n;
    spent_entry *other;
    unsigned refs;
    bool dirty, op_busy;
    kv_op op;
    struct spent_table *next_live;
} spent_table;

struct aq_budget {
    struct event_base *base;
    aq_mailbox *mb;
    kv_thread *kv;
    struct event *tick;
    char instance[AQ_BUDGET_INSTANCE_MAX];
    budget_def *defs;
    size_t n_defs;
    budget_def *def_buckets[DEF_BUCKETS];
    int64_t flush_ms, idle_return_ms, shutdown_ms;
    int64_t (*now_unix_ms)(void *);
    void *clock_arg;
    int64_t today;
    day_budget *live;     /* every day_budget still alive */
    spent_table *spent;   /* today's */
    spent_table *old_spent; /* earlier days still flushing or referenced */
    aq_budget_stats stats;
    bool destroying;
};

static int64_t now_unix(const aq_budget *b)
{
    return b->now_unix_ms ? b->now_unix_ms(b->clock_arg) : aq_now_unix_ms();
}

/* Hash of "tenant\0type"; both at most AQ_BUDGET_NAME_MAX bytes. */
static uint64_t hash2(const char *a, size_t la, const char *c, size_t lc)
{
    char buf[2 * AQ_BUDGET_NAME_MAX + 1];
    memcpy(buf, a, la);
    buf[la] = '\0';
    memcpy(buf + la + 1, c, lc);
    return XXH3_64bits(buf, la + 1 + lc);
}

static budget_def *find_def(const aq_budget *b, const char *tenant, const char *type)
{
    size_t lt = strlen(tenant), ly = strlen(type);
    if (lt > AQ_BUDGET_NAME_MAX || ly > AQ_BUDGET_NAME_MAX)
        return NULL; /* no budget can name it */
    for (budget_def *d = b->def_buckets[hash2(tenant, lt, type, ly) % DEF_BUCKETS]; d; d = d->hnext)
        if (strcmp(d->tenant, tenant) == 0 && strcmp(d->type, type) == 0)
            return d;
    return NULL;
}

/* ---- spent figures ---- */

static spent_table *spent_table_new(aq_budget *b, int64_t day)
{
    spent_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->b = b;
    t->day = day;
    t->op.owner = t;
    t->op.instance = b->instance;
    return t;
}

static void spent_table_free(spent_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < SPENT_BUCKETS; i++)
        for (spent_entry *e = t->buckets[i], *n; e; e = n) {
            n = e->hnext;
            free(e->tenant);
            free(e);
        }
    if (t->other) {
        free(t->other->tenant);
        free(t->other);
    }
    free(t->op.put_value);
    kv_op_reset_cache(&t->op);
    free(t);
}

static spent_entry *spent_entry_new(const char *tenant)
{
    spent_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->tenant = strdup(tenant))) {
        free(e);
        return NULL;
    }
    return e;
}

/* The entry for a tenant, made on first use; NULL only when out of memory. */
static spent_entry *spent_lookup(spent_table *t, const char *tenant)
{
    /* JSON keys must be UTF-8: invalid bytes become U+FFFD; long names are cut. */
    char clean[AQ_BUDGET_TENANT_MAX + 1];
    size_t len = strlen(tenant);
    if (len > AQ_BUDGET_TENANT_MAX || !aq_utf8_valid(tenant, len)) {
        aq_utf8_sanitize(tenant, len, clean, sizeof(clean));
        tenant = clean;
    }
    uint64_t h = XXH3_64bits(tenant, strlen(tenant)) % SPENT_BUCKETS;
    for (spent_entry *e = t->buckets[h]; e; e = e->hnext)
        if (strcmp(e->tenant, tenant) == 0)
            return e;
    if (t->n >= AQ_BUDGET_SPENT_TENANTS_MAX) {
        if (!t->other)
            t->other = spent_entry_new(AQ_BUDGET_OTHER_TENANT);
        return t->other;
    }
    spent_entry *e = spent_entry_new(tenant);
    if (!e)
        return NULL;
    e->hnext = t->buckets[h];
    t->buckets[h] = e;
    t->n++;
    return e;
}

static void spent_flush_done(kv_op *op);

/* Fill the table's op with this instance's figures for its day. */
static bool spent_prepare(aq_budget *b, spent_table *t)
{
    json_t *o = json_object();
    if (!o)
        return false;
    for (size_t i = 0; i < SPENT_BUCKETS; i++)
        for (spent_entry *e = t->buckets[i]; e; e = e->hnext)
            json_object_set_new(o, e->tenant, json_integer(e->micro));
    if (t->other)
        json_object_set_new(o, t->other->tenant, json_integer(t->other->micro));
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!text)
        return false;
    char dn[9];
    aq_budget_day_name(t->day, dn);
    snprintf(t->op.key, sizeof(t->op.key), "%s.spent.%s", dn, b->instance);
    free(t->op.put_value);
    t->op.kind = OP_PUT;
    t->op.put_value = text;
    t->op.put_len = strlen(text);
    t->op.complete = spent_flush_done;
    t->dirty = false;
    return true;
}

/* Put this instance's figures for the table's day, if they changed. */
static void spent_flush(aq_budget *b, spent_table *t)
{
    if (!t->dirty || t->op_busy || !spent_prepare(b, t))
        return;
    t->op_busy = true;
    kv_thread_submit(b->kv, &t->op);
}

static void spent_gc(aq_budget *b)
{
    for (spent_table **pp = &b->old_spent; *pp;) {
        spent_table *t = *pp;
        if (t->refs == 0 && !t->dirty && !t->op_busy) {
            *pp = t->next_live;
            spent_table_free(t);
        } else {
            pp = &t->next_live;
        }
    }
}

static void account_op(aq_budget *b, const kv_op *op)
{
    b->stats.round_trips += op->round_trips;
    b->stats.conflicts += op->conflicts;
    b->stats.kv_errors += op->errors;
}

static void spent_flush_done(kv_op *op)
{
    spent_table *t = op->owner;
    aq_budget *b = t->b;
    t->op_busy = false;
    account_op(b, op);
    free(op->put_value);
    op->put_value = NULL;
    if (op->st == AQ_OK)
        b->stats.flushes++;
    else
        t->dirty = true; /* try again at the next tick */
    if (t != b->spent)
        spent_gc(b);
}

/* ---- day budgets ---- */

static void exchange_done(kv_op *op);

static day_budget *day_budget_get(aq_budget *b, budget_def *d)
{
    if (d->cur && d->cur->day == b->today)
        return d->cur;
    day_budget *db = calloc(1, sizeof(*db));
    if (!db)
        return NULL;
    db->b = b;
    db->def = d;
    db->day = b->today;
    db->seen_allocated = -1;
    db->op.owner = db;
    db->op.instance = b->instance;
    db->op.complete = exchange_done;
    db->op.limit = d->limit;
    db->op.chunk = d->chunk;
    aq_budget_key(db->day, d->tenant, d->type, db->op.key, sizeof(db->op.key));
    db->next_live = b->live;
    b->live = db;
    d->cur = db;
    return db;
}

static void day_budget_free(day_budget *db)
{
    kv_op_reset_cache(&db->op);
    free(db);
}

/* Free the day budgets of past days that nothing holds any more. */
static void day_gc(aq_budget *b)
{
    for (day_budget **pp = &b->live; *pp;) {
        day_budget *db = *pp;
        if (db->day != b->today && db->refs == 0 && !db->op_busy && db->local <= 0 &&
            !db->wait_head) {
            *pp = db->next_live;
            if (db->def->cur == db)
                db->def->cur = NULL;
            day_budget_free(db);
        } else {
            pp = &db->next_live;
        }
    }
}

static void start_return(day_budget *db)
{
    if (db->op_busy || db->local <= 0 || db->wait_head)
        return;
    db->op.kind = OP_RETURN;
    db->op.give_back = db->local;
    db->local = 0; /* in transit: not for reservations meanwhile */
    db->op_busy = true;
    db->b->stats.exchanges++;
    kv_thread_submit(db->b->kv, &db->op);
}

static void start_lease(day_budget *db)
{
    if (db->op_busy || !db->wait_head)
        return;
    int64_t want = 0;
    for (aq_budget_reservation *r = db->wait_head; r; r = r->next_)
        want += r->amount_micro;
    db->op.kind = OP_LEASE;
    db->op.need_min = db->wait_head->amount_micro - db->local;
    db->op.want = want - db->local;
    if (db->op.need_min < 1)
        db->op.need_min = 1;
    db->op_busy = true;
    db->b->stats.exchanges++;
    kv_thread_submit(db->b->kv, &db->op);
}

/* ---- reservations ---- */

static void release_parts(aq_budget_reservation *r)
{
    for (int i = 0; i < 2; i++) {
        day_budget *db = r->part_[i].db;
        if (!db)
            continue;
        if (r->part_[i].held) {
            db->local += r->amount_micro;
            db->in_flight -= r->amount_micro;
            r->part_[i].held = false;
        }
        db->refs--;
        r->part_[i].db = NULL;
    }
}

static spent_table *table_of(aq_budget *b, int64_t day)
{
    if (b->spent && b->spent->day == day)
        return b->spent;
    for (spent_table *t = b->old_spent; t; t = t->next_live)
        if (t->day == day)
            return t;
    return NULL;
}

/* The reservation ends without a call (refused, unavailable, cancelled). */
static void finish_unused(aq_budget *b, aq_budget_reservation *r)
{
    release_parts(r);
    spent_table *t = table_of(b, r->day_);
    if (t && r->spent_)
        t->refs--;
    r->spent_ = NULL;
    r->active_ = false;
}

typedef enum step { STEP_DONE, STEP_WAIT, STEP_EXCEEDED } step;

/* Take what can be taken from the local leases, part by part; queue on the
 * first part that needs a lease (and start the exchange). */
static step advance(aq_budget_reservation *r, int64_t now_ms)
{
    for (unsigned i = r->waiting_; i < 2; i++, r->waiting_ = i) {
        day_budget *db = r->part_[i].db;
        if (!db || r->part_[i].held)
            continue;
        if (!db->wait_head && db->local >= r->amount_micro) {
            db->local -= r->amount_micro;
            db->in_flight += r->amount_micro;
            db->last_use_ms = now_ms;
            r->part_[i].held = true;
            continue;
        }
        /* A recent refusal that still holds: answer without a round trip. */
        if (!db->wait_head && db->refused_ms && now_ms - db->refused_ms < RECHECK_MS &&
            db->local + (db->def->limit - db->seen_allocated) < r->amount_micro) {
            r->exceeded = i == 0 ? "tenant" : "type";
            return STEP_EXCEEDED;
        }
        r->next_ = NULL;
        if (db->wait_tail)
            db->wait_tail->next_ = r;
        else
            db->wait_head = r;
        db->wait_tail = r;
        start_lease(db);
        return STEP_WAIT;
    }
    return STEP_DONE;
}

static void answer(aq_budget *b, aq_budget_reservation *r, aq_budget_verdict v, int64_t day,
                   const kv_op *err_op)
{
    r->verdict = v;
    if (v == AQ_BUDGET_EXCEEDED) {
        b->stats.exceeded++;
        r->reset_unix_ms = aq_budget_day_end_ms(day);
        finish_unused(b, r);
    } else if (v == AQ_BUDGET_UNAVAILABLE) {
        b->stats.unavailable++;
        r->status = err_op ? err_op->st : AQ_SHUTDOWN;
        if (err_op)
            r->err = err_op->err;
        else
            aq_err_set(&r->err, AQ_SHUTDOWN, "budget: shutting down");
        finish_unused(b, r);
    }
}

static void exchange_done(kv_op *op)
{
    day_budget *db = op->owner;
    aq_budget *b = db->b;
    int64_t now_ms = aq_mono_ms();
    db->op_busy = false;
    account_op(b, op);
    if (op->kind == OP_RETURN) {
        if (op->st != AQ_OK)
            db->local += op->give_back; /* not given back: still ours */
        else
            db->local += op->give_back - op->returned;
    } else if (op->st == AQ_OK) {
        db->local += op->granted;
        if (op->granted > 0) {
            db->exhausted = false;
            db->refused_ms = 0;
        } else {
            db->exhausted = true;
            db->refused_ms = now_ms ? now_ms : 1;
        }
    }
    if (op->st == AQ_OK) {
        db->seen_allocated = op->allocated;
        db->seen_ms = now_ms;
    }

    /* Serve the waiters in order; collect the answered ones, call them last
     * (a callback may reserve again). */
    aq_budget_reservation *list = db->wait_head, *done_head = NULL, **done_tail = &done_head;
    db->wait_head = db->wait_tail = NULL;
    int64_t remaining = op->st == AQ_OK ? db->def->limit - op->allocated : 0;
    while (list) {
        aq_budget_reservation *r = list;
        list = r->next_;
        r->next_ = NULL;
        unsigned i = r->waiting_;
        int64_t day = db->day;
        if (db->local >= r->amount_micro && !db->wait_head) {
            db->local -= r->amount_micro;
            db->in_flight += r->amount_micro;
            db->last_use_ms = now_ms;
            r->part_[i].held = true;
            r->waiting_ = i + 1;
            step s = advance(r, now_ms);
            if (s == STEP_WAIT)
                continue; /* queued on its other budget */
            if (s == STEP_DONE)
                r->verdict = AQ_BUDGET_GRANTED;
            else
                answer(b, r, AQ_BUDGET_EXCEEDED, day, NULL);
        } else if (op->st != AQ_OK && op->kind == OP_LEASE) {
            answer(b, r, AQ_BUDGET_UNAVAILABLE, day, op);
        } else if (op->kind == OP_LEASE && db->local + remaining < r->amount_micro) {
            r->exceeded = i == 0 ? "tenant" : "type";
            answer(b, r, AQ_BUDGET_EXCEEDED, day, NULL);
        } else {
            /* Another exchange may cover it (a give-back finished, or the
             * lease was cut to a share): wait on. */
            if (db->wait_tail)
                db->wait_tail->next_ = r;
            else
                db->wait_head = r;
            db->wait_tail = r;
            continue;
        }
        *done_tail = r;
        done_tail = &r->next_;
    }
    start_lease(db);
    if (db->exhausted && !db->op_busy && !b->destroying)
        start_return(db); /* refused: pool what is left here for the others */
    while (done_head) {
        aq_budget_reservation *r = done_head;
        done_head = r->next_;
        r->next_ = NULL;
        if (r->done_)
            r->done_(r, r->ctx_);
    }
}

/* ---- day roll-over and housekeeping ---- */

static void roll_day(aq_budget *b)
{
    int64_t day = aq_budget_day_of(now_unix(b));
    if (day == b->today && b->spent)
        return;
    if (b->spent) {
        b->spent->next_live = b->old_spent;
        b->old_spent = b->spent;
        spent_flush(b, b->old_spent); /* its last figures */
    }
    b->today = day;
    b->spent = spent_table_new(b, day);
    /* Yesterday's unused leases are worth nothing today; give them back so
     * the day's figures are right. */
    for (day_budget *db = b->live; db; db = db->next_live)
        if (db->day != day)
            start_return(db);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    aq_budget *b = arg;
    int64_t now_ms = aq_mono_ms();
    roll_day(b);
    for (day_budget *db = b->live; db; db = db->next_live) {
        bool idle = now_ms - db->last_use_ms >= b->idle_return_ms;
        if (db->exhausted || idle || db->day != b->today)
            start_return(db);
    }
    if (b->spent)
        spent_flush(b, b->spent);
    for (spent_table *t = b->old_spent; t; t = t->next_live)
        spent_flush(b, t);
    day_gc(b);
    spent_gc(b);
}

/* ---- public ---- */

aq_budget_verdict aq_budget_reserve(aq_budget *b, const char *tenant, const char *type,
                                    int64_t upper_bound_micro, aq_budget_done_fn done, void *ctx,
                                    aq_budget_reservation *r)
{
    if (!tenant)
        tenant = "";
    if (!type)
        type = "";
    roll_day(b);
    memset(r, 0, sizeof(*r));
    r->owner_ = b;
    r->done_ = done;
    r->ctx_ = ctx;
    r->active_ = true;
    r->day_ = b->today;
    r->amount_micro = upper_bound_micro < 0 ? 0
                      : upper_bound_micro > AQ_BUDGET_MAX_COST ? AQ_BUDGET_MAX_COST
                                                               : upper_bound_micro;
    b->stats.reservations++;
    int64_t day = b->today;
    spent_table *t = b->spent;
    r->spent_ = t ? spent_lookup(t, tenant) : NULL;
    if (r->spent_)
        t->refs++;
    budget_def *dt = b->n_defs ? find_def(b, tenant, "") : NULL;
    budget_def *dty = b->n_defs && *type ? find_def(b, tenant, type) : NULL;
    if (!dt && !dty) {
        b->stats.unbudgeted++;
        r->verdict = AQ_BUDGET_GRANTED;
        return AQ_BUDGET_GRANTED;
    }
    r->part_[0].db = dt ? day_budget_get(b, dt) : NULL;
    r->part_[1].db = dty ? day_budget_get(b, dty) : NULL;
    if ((dt && !r->part_[0].db) || (dty && !r->part_[1].db)) {
        kv_op oom = {.st = AQ_NOMEM};
        aq_err_set(&oom.err, AQ_NOMEM, "budget: out of memory");
        r->part_[0].db = r->part_[1].db = NULL;
        answer(b, r, AQ_BUDGET_UNAVAILABLE, day, &oom);
        return AQ_BUDGET_UNAVAILABLE;
    }
    for (int i = 0; i < 2; i++)
        if (r->part_[i].db)
            r->part_[i].db->refs++;
    step s = advance(r, aq_mono_ms());
    if (s == STEP_DONE) {
        b->stats.local++;
        r->verdict = AQ_BUDGET_GRANTED;
        return AQ_BUDGET_GRANTED;
    }
    if (s == STEP_EXCEEDED) {
        b->stats.local++;
        answer(b, r, AQ_BUDGET_EXCEEDED, day, NULL);
        return AQ_BUDGET_EXCEEDED;
    }
    r->verdict = AQ_BUDGET_PENDING;
    return AQ_BUDGET_PENDING;
}

void aq_budget_settle(aq_budget *b, aq_budget_reservation *r, int64_t actual_micro)
{
    if (!b || !r || !r->active_ || r->owner_ != b || r->verdict != AQ_BUDGET_GRANTED)
        return;
    if (actual_micro < 0)
        actual_micro = 0;
    if (actual_micro > r->amount_micro && (r->part_[0].db || r->part_[1].db))
        b->stats.debt_micro += actual_micro - r->amount_micro;
    for (int i = 0; i < 2; i++) {
        day_budget *db = r->part_[i].db;
        if (!db || !r->part_[i].held)
            continue;
        /* Refund the unused part of the bound; a cost above it is debt,
         * covered by the next lease. */
        db->in_flight -= r->amount_micro;
        db->local += r->amount_micro - actual_micro;
        r->part_[i].held = false;
        db->refs--;
        r->part_[i].db = NULL;
    }
    spent_table *t = table_of(b, r->day_);
    if (r->spent_) {
        r->spent_->micro += actual_micro;
        if (t) {
            if (actual_micro > 0)
                t->dirty = true;
            t->refs--;
        }
    }
    r->spent_ = NULL;
    r->active_ = false;
}

void aq_budget_cancel(aq_budget *b, aq_budget_reservation *r)
{
    if (!b || !r || !r->active_ || r->owner_ != b)
        return;
    if (r->verdict == AQ_BUDGET_GRANTED) {
        aq_budget_settle(b, r, 0);
        return;
    }
    /* PENDING: take it out of the queue it waits in. */
    day_budget *db = r->part_[r->waiting_ < 2 ? r->waiting_ : 1].db;
    if (db) {
        aq_budget_reservation *prev = NULL;
        for (aq_budget_reservation *x = db->wait_head; x; prev = x, x = x->next_) {
            if (x != r)
                continue;
            if (prev)
                prev->next_ = x->next_;
            else
                db->wait_head = x->next_;
            if (db->wait_tail == x)
                db->wait_tail = prev;
            break;
        }
    }
    finish_unused(b, r);
    r->verdict = AQ_BUDGET_UNAVAILABLE;
    r->status = AQ_SHUTDOWN;
}

bool aq_budget_remaining(const aq_budget *b, const char *tenant, const char *type,
                         int64_t *remaining_micro)
{
    budget_def *d = b ? find_def(b, tenant ? tenant : "", type ? type : "") : NULL;
    if (!d)
        return false;
    day_budget *db = d->cur && d->cur->day == b->today ? d->cur : NULL;
    int64_t rem = d->limit;
    if (db && db->seen_allocated >= 0) {
        rem = d->limit - db->seen_allocated + (db->local > 0 ? db->local : 0) +
              (db->op_busy && db->op.kind == OP_RETURN ? db->op.give_back : 0);
        if (rem < 0)
            rem = 0;
    }
    *remaining_micro = rem;
    return true;
}

int64_t aq_budget_in_flight(const aq_budget *b, const char *tenant, const char *type)
{
    budget_def *d = b ? find_def(b, tenant ? tenant : "", type ? type : "") : NULL;
    day_budget *db = d && d->cur && d->cur->day == b->today ? d->cur : NULL;
    return db ? db->in_flight : 0;
}

int64_t aq_budget_spent_today(const aq_budget *b, const char *tenant)
{
    if (!b || !b->spent)
        return 0;
    const spent_table *t = b->spent;
    const char *k = tenant ? tenant : "";
    uint64_t h = XXH3_64bits(k, strlen(k)) % SPENT_BUCKETS;
    for (spent_entry *e = t->buckets[h]; e; e = e->hnext)
        if (strcmp(e->tenant, k) == 0)
            return e->micro;
    return 0;
}

void aq_budget_each(const aq_budget *b, aq_budget_each_fn fn, void *arg)
{
    for (size_t i = 0; b && i < b->n_defs; i++) {
        int64_t rem = 0;
        aq_budget_remaining(b, b->defs[i].tenant, b->defs[i].type, &rem);
        fn(arg, b->defs[i].tenant, b->defs[i].type, b->defs[i].limit, rem);
    }
}

void aq_budget_stats_get(const aq_budget *b, aq_budget_stats *out)
{
    *out = b->stats;
}

const char *aq_budget_instance(const aq_budget *b)
{
    return b->instance;
}

/* "<name>-<16 hex>": the name cut to key-safe characters, and a random
 * suffix so two processes never share a holder entry or a spent key. */
static void make_instance(const char *name, char *out, size_t n)
{
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint64_t)aq_mono_us() ^ ((uint64_t)getpid() << 32);
    char clean[48];
    size_t o = 0;
    for (const char *p = name && *name ? name : "worker"; *p && o + 1 < sizeof(clean); p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        clean[o++] = ok ? c : '_';
    }
    clean[o] = '\0';
    snprintf(out, n, "%s-%016llx", clean, (unsigned long long)rnd);
}

aq_status aq_budget_new(natsConnection *nc, struct event_base *base, const aq_budget_config *cfg,
                        aq_budget **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_budget_spec *spec = NULL;
    aq_budget *b = calloc(1, sizeof(*b));
    if (!b)
        return aq_err_set(err, AQ_NOMEM, "budget: out of memory");
    b->base = base;
    b->flush_ms = cfg->flush_ms > 0 ? cfg->flush_ms : DEFAULT_FLUSH_MS;
    b->idle_return_ms = cfg->idle_return_ms > 0 ? cfg->idle_return_ms : DEFAULT_IDLE_RETURN_MS;
    b->shutdown_ms = cfg->shutdown_ms > 0 ? cfg->shutdown_ms : DEFAULT_SHUTDOWN_MS;
    b->now_unix_ms = cfg->now_unix_ms;
    b->clock_arg = cfg->clock_arg;
    if (cfg->lease_micro < 0 || cfg->lease_micro > AQ_BUDGET_MAX_LIMIT) {
        st = aq_err_set(err, AQ_CONFIG, "budget lease out of range");
        goto out;
    }
    make_instance(cfg->instance, b->instance, sizeof(b->instance));
    if ((st = aq_budget_spec_parse(cfg->budgets, &spec, err)) != AQ_OK)
        goto out;
    b->n_defs = aq_budget_spec_count(spec);
    if (b->n_defs && !(b->defs = calloc(b->n_defs, sizeof(*b->defs)))) {
        st = aq_err_set(err, AQ_NOMEM, "budget: out of memory");
        goto out;
    }
    for (size_t i = 0; i < b->n_defs; i++) {
        const char *tenant, *type;
        int64_t limit;
        aq_budget_spec_entry(spec, i, &tenant, &type, &limit);
        budget_def *d = &b->defs[i];
        snprintf(d->tenant, sizeof(d->tenant), "%s", tenant);
        snprintf(d->type, sizeof(d->type), "%s", type);
        d->limit = limit;
        d->chunk = cfg->lease_micro > 0 ? cfg->lease_micro : limit / AQ_BUDGET_LEASE_DIVISOR;
        if (d->chunk < 1)
            d->chunk = 1;
        uint64_t h = hash2(d->tenant, strlen(d->tenant), d->type, strlen(d->type)) % DEF_BUCKETS;
        d->hnext = b->def_buckets[h];
        b->def_buckets[h] = d;
    }
    if ((st = aq_mailbox_new(base, &b->mb, err)) != AQ_OK)
        goto out;
    int64_t kv_timeout = cfg->kv_timeout_ms > 0 ? cfg->kv_timeout_ms : DEFAULT_KV_TIMEOUT_MS;
    const char *bucket = cfg->bucket && *cfg->bucket ? cfg->bucket : AQ_BUDGET_DEFAULT_BUCKET;
    if ((st = kv_thread_new(nc, bucket, kv_timeout, b->mb, &b->kv, err)) != AQ_OK)
        goto out;
    b->tick = event_new(base, -1, EV_PERSIST, on_tick, b);
    struct timeval tv = {(time_t)(b->flush_ms / 1000), (suseconds_t)(b->flush_ms % 1000) * 1000};
    if (!b->tick || event_add(b->tick, &tv) != 0) {
        st = aq_err_set(err, AQ_NOMEM, "budget: cannot add the housekeeping timer");
        goto out;
    }
    roll_day(b);
    if (!b->spent) {
        st = aq_err_set(err, AQ_NOMEM, "budget: out of memory");
        goto out;
    }
out:
    aq_budget_spec_free(spec);
    if (st != AQ_OK) {
        aq_budget_destroy(b);
        return st;
    }
    *out = b;
    return AQ_OK;
}

/* After the thread stopped: take in what it finished but the loop never saw. */
static void settle_op_after_stop(aq_budget *b, day_budget *db)
{
    if (!db->op_busy)
        return;
    db->op_busy = false;
    kv_op *op = &db->op;
    if (kv_op_ran(b->kv, op)) {
        account_op(b, op);
        if (op->kind == OP_RETURN)
            db->local += op->st == AQ_OK ? op->give_back - op->returned : op->give_back;
        else if (op->st == AQ_OK)
            db->local += op->granted;
    } else if (op->kind == OP_RETURN) {
        db->local += op->give_back;
    }
}

void aq_budget_destroy(aq_budget *b)
{
    if (!b)
        return;
    b->destroying = true;
    if (b->tick)
        event_free(b->tick);
    int64_t deadline = aq_mono_ms() + b->shutdown_ms;
    if (b->kv) {
        kv_thread_stop(b->kv);
        /* Give back every unused lease, then the last spent figures, here
         * and now, within the bound. */
        for (day_budget *db = b->live; db; db = db->next_live) {
            settle_op_after_stop(b, db);
            db->wait_head = db->wait_tail = NULL; /* PENDING ones are dropped */
            if (db->local <= 0 || aq_mono_ms() >= deadline)
                continue;
            db->op.kind = OP_RETURN;
            db->op.give_back = db->local;
            b->stats.exchanges++;
            kv_thread_run_now(b->kv, &db->op);
            account_op(b, &db->op);
            if (db->op.st == AQ_OK)
                db->local -= db->op.returned;
        }
        if (b->spent) {
            b->spent->next_live = b->old_spent;
            b->old_spent = b->spent;
            b->spent = NULL;
        }
        for (spent_table *t = b->old_spent; t; t = t->next_live) {
            if (t->op_busy && !kv_op_ran(b->kv, &t->op))
                t->dirty = true;
            t->op_busy = false;
            if (!t->dirty || aq_mono_ms() >= deadline || !spent_prepare(b, t))
                continue;
            kv_thread_run_now(b->kv, &t->op);
            account_op(b, &t->op);
            if (t->op.st == AQ_OK)
                b->stats.flushes++;
        }
    }
    kv_thread_free(b->kv);
    aq_mailbox_destroy(b->mb);
    for (day_budget *db = b->live, *n; db; db = n) {
        n = db->next_live;
        day_budget_free(db);
    }
    spent_table_free(b->spent);
    for (spent_table *t = b->old_spent, *n; t; t = n) {
        n = t->next_live;
        spent_table_free(t);
    }
    free(b->defs);
    free(b);
}
