/* `agentq status`: one screen for the whole fleet. Every worker publishes a
 * snapshot (internal/fleet) on `<status_subject>.<worker>` every
 * status_interval; this command listens on `<status_subject>.>` for a little
 * more than one interval, keeps the newest snapshot of every worker
 * instance, and prints them with the queue as the server sees it (the same
 * probe as `agentq stats`).
 *
 * Fleet figures are combined like this (README "Fleet status"):
 *   throughput, in flight, owned, concurrency, counters, cost: sums;
 *   p50: the workers' p50s weighted by what each completed in the window (an
 *        estimate: percentiles do not add up exactly);
 *   p99: the largest p99 of any worker (an upper bound, never an optimistic
 *        figure);
 *   429 share: 429s / calls over all workers' windows (exact);
 *   cache hit rate: hits / (hits + misses) since each worker started;
 *   budget left: per tenant the lowest figure any worker reports (budgets
 *        are fleet-wide and the lowest is the least stale).
 * A worker counts as gone when nothing arrived from it for three of its
 * intervals (by this machine's clock, so skew between hosts hides nobody),
 * or at once when its last snapshot says `stopping`.
 */
#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "core/clock.h"
#include "core/text.h"
#include "fleet/fleet_snapshot.h"
#include "queue/queue_conn.h"

#define STATUS_INSTANCES_MAX 1024 /* worker instances tracked (3 KiB each) */
#define STATUS_TENANTS_MAX 256    /* budgets shown, merged over all workers */
#define STATUS_STALE_INTERVALS 3  /* silent this many intervals: gone */
#define STATUS_EXTRA_WAIT_MS 1000 /* listen an interval and this much */
#define STATUS_POLL_MS 200        /* how often a blocked read looks at Ctrl-C */
#define STATUS_NAME_COL_MAX 24    /* worker names wider than this are cut in the table */
#define URL_SHOWN_MAX 512

typedef struct status_config {
    aq_queue_config queue;
    char *status_subject;
    int64_t status_interval_ms;
    int64_t wait_ms;
    bool json;
    bool watch;
} status_config;

const aq_option cli_status_options[] = {
    AQ_QUEUE_OPTIONS(status_config, queue),
    {"status_subject", "AGENTQ_STATUS_SUBJECT", AQ_OPT_SUBJECT, AQ_FLEET_DEFAULT_SUBJECT, 0, 0,
     offsetof(status_config, status_subject),
     "subject prefix the workers publish status snapshots on (<prefix>.<worker>)"},
    {"status_interval", "AGENTQ_STATUS_INTERVAL", AQ_OPT_DURATION, AQ_FLEET_DEFAULT_INTERVAL,
     1000, 3600000,
     offsetof(status_config, status_interval_ms),
     "how often the workers publish: sets the default --wait and the --watch refresh"},
    {"wait", NULL, AQ_OPT_DURATION, "0", 0, 600000, offsetof(status_config, wait_ms),
     "listen for snapshots this long (0: status_interval + 1s; ends early once every worker "
     "heard from has reported twice)"},
    {"json", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(status_config, json),
     "print one JSON object (with --watch: one a line)"},
    {"watch", NULL, AQ_OPT_BOOL, "false", 0, 0, offsetof(status_config, watch),
     "refresh every INTERVAL (the argument after --watch; default status_interval) until Ctrl-C"},
    AQ_OPTIONS_END,
};

#define USAGE "agentq status [--json] [--watch [INTERVAL]] [--wait DURATION]"

/* One worker process: its name, pid and start time (a restarted worker is a
 * new instance; the old one drops out when it stops or goes silent). */
typedef struct instance {
    aq_fleet_snapshot snap;
    int64_t received_ms; /* this machine's unix ms when the newest snapshot arrived */
    int heard;           /* snapshots in the current listening round */
} instance;

typedef struct fleet {
    instance *v;
    size_t n, alloc;
    int64_t ignored;                     /* snapshots that did not decode (e.g. another version) */
    int64_t overflow;                    /* instances not tracked: over STATUS_INSTANCES_MAX */
    char last_ignored[AQ_ERR_MAX + 256]; /* "<subject>: <why>" */
} fleet;

typedef struct budget_total {
    char tenant[AQ_FLEET_TENANT_MAX + 1];
    int64_t remaining_micro_usd;
} budget_total;

/* What the screen and the JSON show about the fleet. -1 / negative: unknown. */
typedef struct totals {
    size_t workers;
    int64_t in_flight, owned, concurrency;
    double completed_per_s;
    int64_t p50_ms, p99_ms;
    double share_429, cache_hit_rate; /* < 0: no data */
    aq_fleet_counters counters;
    char cost_day[11];
    int64_t cost_today_micro_usd;
    budget_total budgets[STATUS_TENANTS_MAX];
    size_t n_budgets;
    size_t budgets_left_off;
    int64_t pending_trend_per_min;
    bool have_trend;
} totals;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- the table of instances ---- */

static bool same_instance(const aq_fleet_snapshot *a, const aq_fleet_snapshot *b)
{
    return a->pid == b->pid && a->started_ms == b->started_ms && strcmp(a->worker, b->worker) == 0;
}

static void fleet_remove(fleet *f, size_t i)
{
    f->v[i] = f->v[--f->n];
}

static void fleet_add(fleet *f, const aq_fleet_snapshot *s, int64_t now_ms)
{
    size_t i;
    for (i = 0; i < f->n && !same_instance(&f->v[i].snap, s); i++)
        ;
    if (s->stopping) {
        if (i < f->n)
            fleet_remove(f, i);
        return;
    }
    if (i == f->n) {
        if (f->n == STATUS_INSTANCES_MAX) {
            f->overflow++;
            return;
        }
        if (f->n == f->alloc) {
            size_t na = f->alloc ? f->alloc * 2 : 16;
            instance *nv = realloc(f->v, na * sizeof(*nv));
            if (!nv) {
                f->overflow++;
                return;
            }
            f->v = nv;
            f->alloc = na;
        }
        f->v[f->n++].heard = 0;
    }
    /* A late packet must not replace a newer snapshot of the same instance. */
    if (f->v[i].heard > 0 && f->v[i].snap.sent_ms > s->sent_ms)
        return;
    f->v[i].snap = *s;
    f->v[i].received_ms = now_ms;
    f->v[i].heard++;
}

static void fleet_expire(fleet *f, int64_t now_ms, int64_t default_interval_ms)
{
    for (size_t i = 0; i < f->n;) {
        int64_t iv = f->v[i].snap.interval_ms > 0 ? f->v[i].snap.interval_ms : default_interval_ms;
        if (now_ms - f->v[i].received_ms > STATUS_STALE_INTERVALS * iv)
            fleet_remove(f, i);
        else
            i++;
    }
}

static bool fleet_heard_all_twice(const fleet *f)
{
    if (f->n == 0)
        return false;
    for (size_t i = 0; i < f->n; i++)
        if (f->v[i].heard < 2)
            return false;
    return true;
}

static int by_name(const void *a, const void *b)
{
    const aq_fleet_snapshot *x = &((const instance *)a)->snap, *y = &((const instance *)b)->snap;
    int c = strcmp(x->worker, y->worker);
    if (c == 0)
        c = x->pid < y->pid ? -1 : x->pid > y->pid;
    return c;
}

/* Read snapshots until `until_mono_ms` (or, with `early`, until every
 * instance heard from has reported twice: by then every worker that
 * publishes at the same interval has reported at least once), or Ctrl-C. */
static void collect(natsSubscription *sub, fleet *f, int64_t until_mono_ms, bool early)
{
    for (size_t i = 0; i < f->n; i++)
        f->v[i].heard = 0;
    while (!interrupted) {
        int64_t left = until_mono_ms - aq_mono_ms();
        if (left <= 0 || (early && fleet_heard_all_twice(f)))
            break;
        natsMsg *m = NULL;
        natsStatus s =
            natsSubscription_NextMsg(&m, sub, left < STATUS_POLL_MS ? left : STATUS_POLL_MS);
        if (s != NATS_OK) /* a timeout, or the connection is away: keep listening */
            continue;
        aq_fleet_snapshot snap;
        aq_err err;
        int len = natsMsg_GetDataLength(m);
        if (aq_fleet_snapshot_decode(natsMsg_GetData(m), len > 0 ? (size_t)len : 0, &snap, &err) ==
            AQ_OK) {
            fleet_add(f, &snap, aq_now_unix_ms());
        } else {
            f->ignored++;
            snprintf(f->last_ignored, sizeof(f->last_ignored), "%.200s: %s", natsMsg_GetSubject(m),
                     err.msg);
        }
        natsMsg_Destroy(m);
    }
}

/* ---- combining ---- */

static void add_budget(totals *t, const aq_fleet_budget *b)
{
    for (size_t i = 0; i < t->n_budgets; i++) {
        if (strcmp(t->budgets[i].tenant, b->tenant) == 0) {
            if (b->remaining_micro_usd < t->budgets[i].remaining_micro_usd)
                t->budgets[i].remaining_micro_usd = b->remaining_micro_usd;
            return;
        }
    }
    if (t->n_budgets == STATUS_TENANTS_MAX) {
        t->budgets_left_off++;
        return;
    }
    budget_total *d = &t->budgets[t->n_budgets++];
    memcpy(d->tenant, b->tenant, sizeof(d->tenant));
    d->remaining_micro_usd = b->remaining_micro_usd;
}

static int by_tenant(const void *a, const void *b)
{
    return strcmp(((const budget_total *)a)->tenant, ((const budget_total *)b)->tenant);
}

static void combine(const fleet *f, totals *t)
{
    memset(t, 0, sizeof(*t));
    t->p50_ms = t->p99_ms = -1;
    t->share_429 = t->cache_hit_rate = -1;
    t->workers = f->n;
    double p50_weighted = 0;
    int64_t p50_weight = 0, calls = 0, r429 = 0, newest_probe = 0;
    for (size_t i = 0; i < f->n; i++) {
        const aq_fleet_snapshot *s = &f->v[i].snap;
        t->in_flight += s->llm_in_flight;
        t->owned += s->owned;
        t->concurrency += s->concurrency;
        t->completed_per_s += s->window.completed_per_s;
        if (s->window.p50_ms >= 0 && s->window.completed > 0) {
            p50_weighted += (double)s->window.p50_ms * (double)s->window.completed;
            p50_weight += s->window.completed;
        }
        if (s->window.p99_ms > t->p99_ms)
            t->p99_ms = s->window.p99_ms;
        calls += s->window.llm_calls;
        r429 += s->window.responses_429;
#define SUM(c) t->counters.c += s->counters.c
        SUM(fetched);
        SUM(completed);
        SUM(failed);
        SUM(dead_lettered);
        SUM(already_done);
        SUM(retried);
        SUM(deferred);
        SUM(llm_calls);
        SUM(responses_429);
        SUM(responses_529);
        SUM(cache_hits);
        SUM(cache_misses);
#undef SUM
        if (strcmp(s->cost_day, t->cost_day) > 0)
            memcpy(t->cost_day, s->cost_day, sizeof(t->cost_day));
        for (size_t b = 0; b < s->n_budgets; b++)
            add_budget(t, &s->budgets[b]);
        /* The trend comes from the worker that probed the queue last. */
        if (s->queue.pending >= 0 && s->queue.pending_60s_ago >= 0 &&
            s->queue.probed_ms > newest_probe) {
            newest_probe = s->queue.probed_ms;
            t->pending_trend_per_min = s->queue.pending - s->queue.pending_60s_ago;
            t->have_trend = true;
        }
    }
    /* Cost: the newest UTC day any worker reports (around midnight some
     * have rolled over and some not: the old day's figures are not today's). */
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i].snap.cost_day, t->cost_day) == 0)
            t->cost_today_micro_usd += f->v[i].snap.cost_today_micro_usd;
    if (p50_weight > 0)
        t->p50_ms = (int64_t)(p50_weighted / (double)p50_weight + 0.5);
    if (calls > 0)
        t->share_429 = (double)r429 / (double)calls;
    int64_t lookups = t->counters.cache_hits + t->counters.cache_misses;
    if (lookups > 0)
        t->cache_hit_rate = (double)t->counters.cache_hits / (double)lookups;
    qsort(t->budgets, t->n_budgets, sizeof(t->budgets[0]), by_tenant);
}

/* ---- output ---- */

static json_t *opt_int(bool known, int64_t v)
{
    return known ? json_integer(v) : json_null();
}

static json_t *opt_real(double v)
{
    return v >= 0 ? json_real(v) : json_null();
}

/* The whole screen as JSON (field names documented in the README). */
static json_t *status_json(const status_config *cfg, const char *url, int64_t now_ms,
                           int64_t listened_ms, const cli_queue_info *qi, const char *queue_error,
                           const fleet *f, const totals *t)
{
    json_t *o = json_object(), *q = NULL, *fl = NULL, *c = NULL, *budgets = NULL, *workers = NULL;
    bool ok = o != NULL;
    if (!ok)
        goto out;
    ok = json_object_set_new(o, "time_ms", json_integer(now_ms)) == 0 &&
         json_object_set_new(o, "nats_url", json_string(url)) == 0 &&
         json_object_set_new(o, "stream", json_string(cfg->queue.task_stream)) == 0 &&
         json_object_set_new(o, "consumer", json_string(cfg->queue.consumer)) == 0 &&
         json_object_set_new(o, "status_subject", json_string(cfg->status_subject)) == 0 &&
         json_object_set_new(o, "listened_ms", json_integer(listened_ms)) == 0;
    if (queue_error) {
        q = json_pack("{s:s}", "error", queue_error);
    } else if ((q = cli_queue_info_json(qi))) {
        ok = ok && json_object_set_new(q, "pending_trend_per_min",
                                       opt_int(t->have_trend, t->pending_trend_per_min)) == 0;
    }
    c = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "fetched",
        (json_int_t)t->counters.fetched, "completed", (json_int_t)t->counters.completed, "failed",
        (json_int_t)t->counters.failed, "dead_lettered", (json_int_t)t->counters.dead_lettered,
        "already_done", (json_int_t)t->counters.already_done, "retried",
        (json_int_t)t->counters.retried, "deferred", (json_int_t)t->counters.deferred, "llm_calls",
        (json_int_t)t->counters.llm_calls, "responses_429", (json_int_t)t->counters.responses_429,
        "responses_529", (json_int_t)t->counters.responses_529, "cache_hits",
        (json_int_t)t->counters.cache_hits, "cache_misses", (json_int_t)t->counters.cache_misses);
    budgets = json_array();
    for (size_t i = 0; budgets && i < t->n_budgets; i++)
        ok = ok && json_array_append_new(
                       budgets, json_pack("{s:s, s:I}", "tenant", t->budgets[i].tenant,
                                          "remaining_micro_usd",
                                          (json_int_t)t->budgets[i].remaining_micro_usd)) == 0;
    fl = json_pack("{s:I, s:I, s:I, s:I, s:f, s:o, s:o, s:o, s:o, s:s?, s:I, s:O, s:I, s:O}",
                   "workers", (json_int_t)t->workers, "in_flight", (json_int_t)t->in_flight,
                   "owned", (json_int_t)t->owned, "concurrency", (json_int_t)t->concurrency,
                   "completed_per_s", t->completed_per_s, "p50_ms",
                   opt_int(t->p50_ms >= 0, t->p50_ms), "p99_ms", opt_int(t->p99_ms >= 0, t->p99_ms),
                   "share_429", opt_real(t->share_429), "cache_hit_rate",
                   opt_real(t->cache_hit_rate), "cost_day", t->cost_day[0] ? t->cost_day : NULL,
                   "cost_today_micro_usd", (json_int_t)t->cost_today_micro_usd, "budgets", budgets,
                   "budgets_left_off", (json_int_t)t->budgets_left_off, "counters", c);
    workers = json_array();
    for (size_t i = 0; workers && i < f->n; i++) {
        json_t *w = aq_fleet_snapshot_to_json(&f->v[i].snap);
        ok = ok && w &&
             json_object_set_new(w, "age_ms", json_integer(now_ms - f->v[i].received_ms)) == 0;
        ok = ok && json_array_append_new(workers, w) == 0;
        if (!ok)
            break;
    }
    ok = ok && q && fl && workers;
    ok = ok && json_object_set(o, "queue", q) == 0 && json_object_set(o, "fleet", fl) == 0 &&
         json_object_set(o, "workers", workers) == 0 &&
         json_object_set_new(o, "ignored_snapshots", json_integer(f->ignored)) == 0 &&
         json_object_set_new(o, "untracked_workers", json_integer(f->overflow)) == 0;
out:
    json_decref(q);
    json_decref(fl);
    json_decref(c);
    json_decref(budgets);
    json_decref(workers);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Micro-dollars as "$12.3456" (exact integer arithmetic; 4 decimals show a
 * cheap model's cost per task, 6 when that would round a non-zero amount to
 * nothing). */
static const char *money(int64_t micro, char *buf, size_t n)
{
    uint64_t a = micro < 0 ? (uint64_t)0 - (uint64_t)micro : (uint64_t)micro;
    const char *sign = micro < 0 ? "-" : "";
    if (a > 0 && a < 100)
        snprintf(buf, n, "%s$0.%06llu", sign, (unsigned long long)a);
    else
        snprintf(buf, n, "%s$%llu.%04llu", sign, (unsigned long long)(a / 1000000),
                 (unsigned long long)(a % 1000000 / 100));
    return buf;
}

static const char *pct(double share, char *buf, size_t n)
{
    if (share < 0)
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.1f%%", share * 100);
    return buf;
}

static const char *num_or_dash(int64_t v, char *buf, size_t n)
{
    if (v < 0)
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%lld", (long long)v);
    return buf;
}

static void print_screen(const status_config *cfg, const char *url, int64_t now_ms,
                         int64_t listened_ms, const cli_queue_info *qi, const char *queue_error,
                         fleet *f, const totals *t)
{
    char when[32], a[64], b[64], c[64], d[64];
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
    printf("agentq status  %s  stream %s  consumer %s  %s\n\n", url, cfg->queue.task_stream,
           cfg->queue.consumer, when);

    if (queue_error) {
        printf("queue    unavailable: %s\n", queue_error);
    } else {
        if (t->have_trend)
            snprintf(a, sizeof(a), " (%+lld/min)", (long long)t->pending_trend_per_min);
        else
            a[0] = '\0';
        printf("queue    pending %lld%s  ack-pending %lld  redelivered %lld  dead letters %lld  "
               "in stream %lld\n",
               (long long)qi->pending, a, (long long)qi->ack_pending, (long long)qi->redelivered,
               (long long)qi->dead_letters, (long long)qi->tasks_in_stream);
    }

    if (f->n == 0) {
        printf("fleet    no workers reporting (listened %.1fs on %s.>)\n",
               (double)listened_ms / 1000, cfg->status_subject);
    } else {
        printf("fleet    %zu worker%s  in flight %lld / owned %lld / concurrency %lld\n",
               t->workers, t->workers == 1 ? "" : "s", (long long)t->in_flight, (long long)t->owned,
               (long long)t->concurrency);
        printf("         throughput %.2f tasks/s  p50 %s ms  p99 %s ms (worst worker)  "
               "429s %s  cache hits %s\n",
               t->completed_per_s, num_or_dash(t->p50_ms, a, sizeof(a)),
               num_or_dash(t->p99_ms, b, sizeof(b)), pct(t->share_429, c, sizeof(c)),
               pct(t->cache_hit_rate, d, sizeof(d)));
        printf("         cost today %s%s%s%s", money(t->cost_today_micro_usd, a, sizeof(a)),
               t->cost_day[0] ? " (" : "", t->cost_day, t->cost_day[0] ? " UTC)" : "");
        if (t->n_budgets > 0) {
            printf("  budget left:");
            for (size_t i = 0; i < t->n_budgets; i++)
                printf("%s %s %s", i ? "," : "", t->budgets[i].tenant,
                       money(t->budgets[i].remaining_micro_usd, b, sizeof(b)));
            if (t->budgets_left_off)
                printf(" (+%zu more)", t->budgets_left_off);
        }
        putchar('\n');
    }
    if (f->ignored)
        printf("         %lld snapshot%s ignored, last: %s\n", (long long)f->ignored,
               f->ignored == 1 ? "" : "s", f->last_ignored);
    if (f->overflow)
        printf("         %lld worker instances over the %d this command tracks\n",
               (long long)f->overflow, STATUS_INSTANCES_MAX);
    if (f->n == 0)
        return;

    int w = 6;
    for (size_t i = 0; i < f->n; i++) {
        int len = (int)strlen(f->v[i].snap.worker);
        if (len > w)
            w = len < STATUS_NAME_COL_MAX ? len : STATUS_NAME_COL_MAX;
    }
    printf("\n%-*s %8s %5s %9s %6s %5s %8s %7s %7s %6s %6s %8s %7s %12s\n", w, "WORKER", "PID",
           "AGE", "IN FLIGHT", "OWNED", "CONC", "TASKS/S", "P50 MS", "P99 MS", "429", "CACHE",
           "DONE", "FAILED", "COST TODAY");
    for (size_t i = 0; i < f->n; i++) {
        const aq_fleet_snapshot *s = &f->v[i].snap;
        int64_t lookups = s->counters.cache_hits + s->counters.cache_misses;
        char age[24], p50[24], p99[24], share[16], cache[16], cost[32];
        snprintf(age, sizeof(age), "%llds", (long long)((now_ms - f->v[i].received_ms) / 1000));
        printf("%-*.*s %8lld %5s %9lld %6lld %5lld %8.2f %7s %7s %6s %6s %8lld %7lld %12s\n", w, w,
               s->worker, (long long)s->pid, age, (long long)s->llm_in_flight, (long long)s->owned,
               (long long)s->concurrency, s->window.completed_per_s,
               num_or_dash(s->window.p50_ms, p50, sizeof(p50)),
               num_or_dash(s->window.p99_ms, p99, sizeof(p99)),
               pct(s->window.llm_calls > 0 ? s->window.share_429 : -1, share, sizeof(share)),
               pct(lookups > 0 ? (double)s->counters.cache_hits / (double)lookups : -1, cache,
                   sizeof(cache)),
               (long long)s->counters.completed, (long long)s->counters.failed,
               money(s->cost_today_micro_usd, cost, sizeof(cost)));
    }
}

/* One refresh: probe the queue, combine, print. Returns CLI_OK, or
 * CLI_CONNECT when the queue cannot be read and `must_probe`. */
static int show(const status_config *cfg, const char *url, jsCtx *js, fleet *f, int64_t listened_ms,
                bool must_probe, bool clear)
{
    cli_queue_info qi;
    aq_err err;
    const char *queue_error = NULL;
    totals *t = NULL;
    int rc = CLI_OK;
    memset(&qi, 0, sizeof(qi));
    if (cli_queue_probe(js, &cfg->queue, &qi, &err) != AQ_OK) {
        if (must_probe) {
            cli_error("status", "%s", err.msg);
            rc = CLI_CONNECT;
            goto out;
        }
        queue_error = err.msg;
    }
    int64_t now_ms = aq_now_unix_ms();
    fleet_expire(f, now_ms, cfg->status_interval_ms);
    if (f->n > 1) /* f->v is NULL until a first worker: qsort must not see it */
        qsort(f->v, f->n, sizeof(f->v[0]), by_name);
    if (!(t = malloc(sizeof(*t)))) {
        cli_error("status", "out of memory");
        rc = CLI_ERROR;
        goto out;
    }
    combine(f, t);
    if (cfg->json) {
        json_t *o = status_json(cfg, url, now_ms, listened_ms, &qi, queue_error, f, t);
        if (!o) {
            cli_error("status", "out of memory");
            rc = CLI_ERROR;
            goto out;
        }
        json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
    } else {
        if (clear)
            fputs("\033[H\033[2J", stdout);
        print_screen(cfg, url, now_ms, listened_ms, &qi, queue_error, f, t);
    }
    fflush(stdout);
out:
    free(t);
    return rc;
}

int cmd_status(int argc, char **argv)
{
    status_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    fleet f;
    memset(&f, 0, sizeof(f));
    cli_queue_info qi;
    aq_err err;
    char url[URL_SHOWN_MAX], subject[AQ_FLEET_PREFIX_MAX + 3];
    int64_t watch_ms = 0;
    int argi, rc = cli_parse(cli_status_options, &cfg, &cfg.queue, argc, argv, USAGE, &argi);
    if (rc >= 0)
        goto out;
    rc = CLI_USAGE;
    if (argi < argc) {
        if (!cfg.watch || argc - argi > 1) {
            cli_error("status", "unexpected argument '%s' (usage: %s)", argv[argi], USAGE);
            goto out;
        }
        if (aq_parse_duration_ms(argv[argi], &watch_ms) != AQ_OK || watch_ms < 1000 ||
            watch_ms > 3600000) {
            cli_error("status", "--watch %s: want an interval from 1s to 1h (e.g. 2s)", argv[argi]);
            goto out;
        }
    }
    if (watch_ms == 0)
        watch_ms = cfg.status_interval_ms;
    if (!aq_fleet_prefix_valid(cfg.status_subject)) {
        cli_error("status",
                  "status_subject '%s' is not a subject prefix (dot-separated tokens, no "
                  "wildcards or spaces, at most %d bytes)",
                  cfg.status_subject, AQ_FLEET_PREFIX_MAX);
        goto out;
    }
    snprintf(subject, sizeof(subject), "%s.>", cfg.status_subject);
    aq_redact_urls(cfg.queue.nats_url, url, sizeof(url));

    if ((rc = cli_connect(&cfg.queue, &nc, &js)) != CLI_OK)
        goto out;
    /* Subscribe first: snapshots that arrive while the queue is probed count. */
    natsStatus s = natsConnection_SubscribeSync(&sub, nc, subject);
    if (s == NATS_OK)
        s = natsConnection_Flush(nc); /* the server has the interest before we start the clock */
    if (s != NATS_OK) {
        cli_error("status", "subscribing to %s: %s", subject, aq_queue_status_text(s));
        rc = CLI_CONNECT;
        goto out;
    }
    /* Fail fast on a missing stream or consumer rather than after listening. */
    if (cli_queue_probe(js, &cfg.queue, &qi, &err) != AQ_OK) {
        cli_error("status", "%s", err.msg);
        rc = CLI_CONNECT;
        goto out;
    }
    if (cfg.watch) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal; /* no SA_RESTART: the wait ends at once */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    int64_t wait_ms = cfg.wait_ms > 0 ? cfg.wait_ms : cfg.status_interval_ms + STATUS_EXTRA_WAIT_MS;
    int64_t t0 = aq_mono_ms();
    collect(sub, &f, t0 + wait_ms, true);
    bool tty = isatty(STDOUT_FILENO);
    if ((rc = show(&cfg, url, js, &f, aq_mono_ms() - t0, true, cfg.watch && tty)) != CLI_OK ||
        !cfg.watch)
        goto out;
    while (!interrupted) {
        t0 = aq_mono_ms();
        collect(sub, &f, t0 + watch_ms, false);
        if (interrupted)
            break;
        /* The queue may be away for a while: say so on the screen, keep watching. */
        if ((rc = show(&cfg, url, js, &f, aq_mono_ms() - t0, false, tty)) != CLI_OK)
            goto out;
    }
    rc = CLI_OK;
out:
    natsSubscription_Destroy(sub);
    aq_queue_disconnect(nc, js);
    free(f.v);
    aq_config_free(cli_status_options, &cfg);
    return rc;
}
