/* budget_fleet: drives internal/budget against a real nats-server, as a
 * worker would, for tests/integration/budget.sh.
 *
 *   budget_fleet init     --url U [--bucket B]
 *   budget_fleet run      --url U --budgets S --tenant T [--type Y] --max-cost MICRO
 *                         [--concurrency N] [--seed N] [--name N] [--quiet-ms MS]
 *                         [--lease MICRO] [--flush-ms MS] [--max-ms MS]
 *   budget_fleet conflict --url U
 *   budget_fleet read     --url U [--bucket B]
 *
 * run: N tasks in flight, each reserves a random upper bound in [1, max-cost],
 * holds it 0..hold-ms (3) ms, settles a random real cost in [bound/2, bound], and goes
 * again; after a refusal it probes with the full max-cost every 50 ms. It
 * stops once every slot has been refused continuously for quiet-ms (or after
 * max-ms), destroys the client (which gives leases back) and prints one JSON
 * line: settled total, answers, the client's stats, and how many answers
 * were UNAVAILABLE and GRANTED after an UNAVAILABLE (the outage test).
 *
 * conflict: two clients on two connections; A leases twice, B leases (A's
 * cached revision is now stale), A leases again: its optimistic write must lose
 * once, re-read and win; the key's allocated must be the sum of the leases.
 *
 * read: the day report as JSON lines. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget/budget.h"
#include "core/clock.h"

#define MAX_SLOTS 64

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

static long long num(int argc, char **argv, const char *name, long long def)
{
    const char *s = opt(argc, argv, name, NULL);
    if (!s)
        return def;
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno || *e || e == s) {
        fprintf(stderr, "bad %s '%s'\n", name, s);
        exit(2);
    }
    return v;
}

static natsConnection *connect_to(const char *url)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    if (natsOptions_Create(&o) != NATS_OK || natsOptions_SetURL(o, url) != NATS_OK ||
        natsOptions_SetMaxReconnect(o, -1) != NATS_OK ||
        natsOptions_SetReconnectWait(o, 100) != NATS_OK ||
        natsOptions_SetRetryOnFailedConnect(o, true, NULL, NULL) != NATS_OK ||
        natsConnection_Connect(&nc, o) != NATS_OK) {
        fprintf(stderr, "cannot connect to %s\n", url);
        exit(1);
    }
    natsOptions_Destroy(o);
    return nc;
}

/* ---- run ---- */

typedef struct runner runner;

typedef struct slot {
    runner *rn;
    aq_budget_reservation r;
    struct event *timer;
    bool probing;
    int64_t refused_since; /* mono ms of the first refusal in a row; 0 = not refused */
    int64_t bound;
    bool done;
} slot;

struct runner {
    struct event_base *base;
    aq_budget *b;
    const char *tenant, *type;
    int64_t max_cost, quiet_ms, deadline, hold_ms;
    uint64_t rng;
    slot slots[MAX_SLOTS];
    int n, finished;
    int64_t settled, granted, exceeded, unavailable, granted_after_unavailable;
    bool saw_unavailable;
};

static uint64_t rnd(runner *rn)
{
    /* xorshift64*: repeatable per seed */
    rn->rng ^= rn->rng >> 12;
    rn->rng ^= rn->rng << 25;
    rn->rng ^= rn->rng >> 27;
    return rn->rng * 2685821657736338717ULL;
}

static void slot_next(slot *s);

static void slot_wait(slot *s, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(s->timer, &tv);
}

static void slot_answer(slot *s)
{
    runner *rn = s->rn;
    int64_t now = aq_mono_ms();
    switch (s->r.verdict) {
    case AQ_BUDGET_GRANTED:
        rn->granted++;
        if (rn->saw_unavailable)
            rn->granted_after_unavailable++;
        s->refused_since = 0;
        s->probing = false;
        slot_wait(s, (int64_t)(rnd(rn) % (uint64_t)(rn->hold_ms + 1))); /* the "call" */
        return;
    case AQ_BUDGET_EXCEEDED:
        rn->exceeded++;
        if (!s->refused_since)
            s->refused_since = now;
        s->probing = true;
        break;
    case AQ_BUDGET_UNAVAILABLE:
        rn->unavailable++;
        rn->saw_unavailable = true;
        s->refused_since = 0;
        break;
    case AQ_BUDGET_PENDING:
        return;
    }
    if ((s->refused_since && now - s->refused_since >= rn->quiet_ms) || now >= rn->deadline) {
        s->done = true;
        if (++rn->finished == rn->n)
            event_base_loopbreak(rn->base);
        return;
    }
    slot_wait(s, s->r.verdict == AQ_BUDGET_UNAVAILABLE ? 200 : 50);
}

static void on_done(aq_budget_reservation *r, void *ctx)
{
    (void)r;
    slot_answer(ctx);
}

static void slot_next(slot *s)
{
    runner *rn = s->rn;
    s->bound = s->probing ? rn->max_cost : 1 + (int64_t)(rnd(rn) % (uint64_t)rn->max_cost);
    aq_budget_reserve(rn->b, rn->tenant, rn->type, s->bound, on_done, s, &s->r);
    slot_answer(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    slot *s = arg;
    runner *rn = s->rn;
    if (s->r.active_ && s->r.verdict == AQ_BUDGET_GRANTED) {
        int64_t lo = s->bound / 2;
        int64_t actual = lo + (int64_t)(rnd(rn) % (uint64_t)(s->bound - lo + 1));
        aq_budget_settle(rn->b, &s->r, actual);
        rn->settled += actual;
    }
    if (aq_mono_ms() >= rn->deadline) {
        s->done = true;
        if (++rn->finished == rn->n)
            event_base_loopbreak(rn->base);
        return;
    }
    slot_next(s);
}

static int cmd_run(int argc, char **argv)
{
    runner rn;
    memset(&rn, 0, sizeof(rn));
    aq_err err;
    natsConnection *nc = connect_to(opt(argc, argv, "--url", "nats://127.0.0.1:4222"));
    rn.base = event_base_new();
    aq_budget_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.budgets = opt(argc, argv, "--budgets", "");
    cfg.bucket = opt(argc, argv, "--bucket", NULL);
    cfg.instance = opt(argc, argv, "--name", "fleet");
    cfg.lease_micro = num(argc, argv, "--lease", 0);
    cfg.flush_ms = num(argc, argv, "--flush-ms", 300);
    cfg.idle_return_ms = num(argc, argv, "--idle-ms", 2000);
    cfg.kv_timeout_ms = num(argc, argv, "--kv-timeout-ms", 1000);
    if (aq_budget_new(nc, rn.base, &cfg, &rn.b, &err) != AQ_OK) {
        fprintf(stderr, "aq_budget_new: %s\n", err.msg);
        return 1;
    }
    rn.tenant = opt(argc, argv, "--tenant", "acme");
    rn.type = opt(argc, argv, "--type", "");
    rn.max_cost = num(argc, argv, "--max-cost", 20000);
    rn.quiet_ms = num(argc, argv, "--quiet-ms", 2000);
    rn.hold_ms = num(argc, argv, "--hold-ms", 3);
    rn.deadline = aq_mono_ms() + num(argc, argv, "--max-ms", 120000);
    rn.rng = (uint64_t)num(argc, argv, "--seed", 1) * 0x9E3779B97F4A7C15ULL | 1;
    rn.n = (int)num(argc, argv, "--concurrency", 8);
    if (rn.n < 1 || rn.n > MAX_SLOTS || rn.max_cost < 1)
        return 2;
    for (int i = 0; i < rn.n; i++) {
        rn.slots[i].rn = &rn;
        rn.slots[i].timer = evtimer_new(rn.base, on_timer, &rn.slots[i]);
    }
    for (int i = 0; i < rn.n; i++)
        slot_next(&rn.slots[i]);
    if (rn.finished < rn.n)
        event_base_dispatch(rn.base);
    int64_t t0 = aq_mono_ms();
    aq_budget_stats st;
    aq_budget_stats_get(rn.b, &st);
    for (int i = 0; i < rn.n; i++) /* slots still "calling" when the deadline hit */
        if (rn.slots[i].r.active_)
            aq_budget_cancel(rn.b, &rn.slots[i].r);
    aq_budget_destroy(rn.b);
    int64_t destroy_ms = aq_mono_ms() - t0;
    for (int i = 0; i < rn.n; i++)
        event_free(rn.slots[i].timer);
    printf("{\"settled\":%lld,\"granted\":%lld,\"exceeded\":%lld,\"unavailable\":%lld,"
           "\"granted_after_unavailable\":%lld,\"reservations\":%llu,\"local\":%llu,"
           "\"exchanges\":%llu,\"round_trips\":%llu,\"conflicts\":%llu,\"kv_errors\":%llu,"
           "\"flushes\":%llu,\"destroy_ms\":%lld}\n",
           (long long)rn.settled, (long long)rn.granted, (long long)rn.exceeded,
           (long long)rn.unavailable, (long long)rn.granted_after_unavailable,
           (unsigned long long)st.reservations, (unsigned long long)st.local,
           (unsigned long long)st.exchanges, (unsigned long long)st.round_trips,
           (unsigned long long)st.conflicts, (unsigned long long)st.kv_errors,
           (unsigned long long)st.flushes, (long long)destroy_ms);
    event_base_free(rn.base);
    natsConnection_Destroy(nc);
    return 0;
}

/* ---- conflict ---- */

typedef struct waiter {
    struct event_base *base;
    bool answered;
} waiter;

static void on_wait_done(aq_budget_reservation *r, void *ctx)
{
    (void)r;
    waiter *w = ctx;
    w->answered = true;
    event_base_loopbreak(w->base);
}

/* Reserve and wait for the answer on the loop. */
static aq_budget_verdict reserve_wait(struct event_base *base, aq_budget *b, int64_t amount,
                                      aq_budget_reservation *r)
{
    waiter w = {base, false};
    aq_budget_verdict v = aq_budget_reserve(b, "acme", "", amount, on_wait_done, &w, r);
    if (v != AQ_BUDGET_PENDING)
        return v;
    while (!w.answered)
        event_base_dispatch(base);
    return r->verdict;
}

static int fail(const char *what)
{
    fprintf(stderr, "FAIL: %s\n", what);
    return 1;
}

static int cmd_conflict(int argc, char **argv)
{
    const char *url = opt(argc, argv, "--url", "nats://127.0.0.1:4222");
    natsConnection *nca = connect_to(url), *ncb = connect_to(url);
    struct event_base *base = event_base_new();
    aq_err err;
    aq_budget *a = NULL, *b = NULL;
    aq_budget_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.budgets = "acme=10";        /* $10 */
    cfg.lease_micro = 1000000;      /* $1 a lease */
    cfg.flush_ms = 60000;           /* no housekeeping during the test */
    cfg.idle_return_ms = 600000;
    cfg.instance = "conflict-a";
    if (aq_budget_new(nca, base, &cfg, &a, &err) != AQ_OK)
        return fail(err.msg);
    cfg.instance = "conflict-b";
    if (aq_budget_new(ncb, base, &cfg, &b, &err) != AQ_OK)
        return fail(err.msg);
    aq_budget_reservation r1 = AQ_BUDGET_RESERVATION_INIT, r1b = AQ_BUDGET_RESERVATION_INIT,
                          r2 = AQ_BUDGET_RESERVATION_INIT, r3 = AQ_BUDGET_RESERVATION_INIT;
    /* A leases $1 twice (creates the key, then reads it back and finds its
     * own write the latest: from now on A writes without reading first). */
    if (reserve_wait(base, a, 1000000, &r1) != AQ_BUDGET_GRANTED ||
        reserve_wait(base, a, 1000000, &r1b) != AQ_BUDGET_GRANTED)
        return fail("A's first reservations");
    /* B leases: the key moves on under A's cache. */
    if (reserve_wait(base, b, 1000000, &r2) != AQ_BUDGET_GRANTED)
        return fail("B's reservation");
    aq_budget_stats sa0;
    aq_budget_stats_get(a, &sa0);
    /* A's lease is used up: the next one writes on a stale revision, loses,
     * re-reads and wins. */
    if (reserve_wait(base, a, 500000, &r3) != AQ_BUDGET_GRANTED)
        return fail("A's second reservation");
    aq_budget_stats sa1;
    aq_budget_stats_get(a, &sa1);
    if (sa1.conflicts != sa0.conflicts + 1)
        return fail("A's second exchange did not lose exactly one compare-and-set");
    int64_t ra = 0, rb = 0;
    aq_budget_remaining(a, "acme", NULL, &ra);
    aq_budget_remaining(b, "acme", NULL, &rb);
    /* allocated = 4 leases of $1: A sees $6 left + its unused $0.5. */
    if (ra != 6000000 + 500000)
        return fail("A's remaining is not $6.5");
    aq_budget_settle(a, &r1, 1000000);
    aq_budget_settle(a, &r1b, 1000000);
    aq_budget_settle(b, &r2, 1000000);
    aq_budget_settle(a, &r3, 250000);
    aq_budget_destroy(a);
    aq_budget_destroy(b);
    /* Both gave back: allocated = spent = $3.25. */
    jsCtx *js = NULL;
    aq_budget_day_report rep;
    natsConnection_JetStream(&js, nca, NULL);
    if (aq_budget_read_day(js, NULL, aq_budget_day_of(aq_now_unix_ms()), 5000, &rep, &err) != AQ_OK)
        return fail(err.msg);
    int rc = 1;
    for (size_t i = 0; i < rep.n_rows; i++)
        if (strcmp(rep.rows[i].tenant, "acme") == 0 && !rep.rows[i].type[0]) {
            printf("{\"conflicts\":%llu,\"allocated\":%lld,\"spent\":%lld,\"limit\":%lld,"
                   "\"holders\":%lld,\"remaining_before_settle\":%lld}\n",
                   (unsigned long long)(sa1.conflicts), (long long)rep.rows[i].allocated_micro,
                   (long long)rep.rows[i].spent_micro, (long long)rep.rows[i].limit_micro,
                   (long long)rep.rows[i].holders, (long long)ra);
            rc = rep.rows[i].allocated_micro == 3250000 && rep.rows[i].spent_micro == 3250000 &&
                         rep.rows[i].limit_micro == 10000000
                     ? 0
                     : fail("allocated or spent is not $3.25 after give-back");
        }
    aq_budget_day_report_free(&rep);
    jsCtx_Destroy(js);
    event_base_free(base);
    natsConnection_Destroy(nca);
    natsConnection_Destroy(ncb);
    (void)rb;
    return rc;
}

/* ---- init, read ---- */

static int cmd_init(int argc, char **argv)
{
    natsConnection *nc = connect_to(opt(argc, argv, "--url", "nats://127.0.0.1:4222"));
    jsCtx *js = NULL;
    aq_err err;
    bool created = false;
    natsConnection_JetStream(&js, nc, NULL);
    if (aq_budget_bucket_ensure(js, opt(argc, argv, "--bucket", NULL), 0, 1, &created, &err) !=
            AQ_OK ||
        aq_budget_bucket_check(js, opt(argc, argv, "--bucket", NULL), &err) != AQ_OK)
        return fail(err.msg);
    printf("{\"created\":%s}\n", created ? "true" : "false");
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return 0;
}

static int cmd_read(int argc, char **argv)
{
    natsConnection *nc = connect_to(opt(argc, argv, "--url", "nats://127.0.0.1:4222"));
    jsCtx *js = NULL;
    aq_err err;
    aq_budget_day_report rep;
    natsConnection_JetStream(&js, nc, NULL);
    if (aq_budget_read_day(js, opt(argc, argv, "--bucket", NULL),
                           aq_budget_day_of(aq_now_unix_ms()), 5000, &rep, &err) != AQ_OK)
        return fail(err.msg);
    for (size_t i = 0; i < rep.n_rows; i++) {
        json_t *o = json_pack("{s:s,s:s,s:b,s:I,s:I,s:I,s:I}", "tenant", rep.rows[i].tenant, "type",
                              rep.rows[i].type, "has_budget", rep.rows[i].has_budget, "limit",
                              (json_int_t)rep.rows[i].limit_micro, "allocated",
                              (json_int_t)rep.rows[i].allocated_micro, "holders",
                              (json_int_t)rep.rows[i].holders, "spent",
                              (json_int_t)rep.rows[i].spent_micro);
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    }
    aq_budget_day_report_free(&rep);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: budget_fleet init|run|conflict|read --url URL ...\n");
        return 2;
    }
    evthread_use_pthreads();
    int rc = 2;
    if (strcmp(argv[1], "init") == 0)
        rc = cmd_init(argc, argv);
    else if (strcmp(argv[1], "run") == 0)
        rc = cmd_run(argc, argv);
    else if (strcmp(argv[1], "conflict") == 0)
        rc = cmd_conflict(argc, argv);
    else if (strcmp(argv[1], "read") == 0)
        rc = cmd_read(argc, argv);
    nats_Close();
    return rc;
}
