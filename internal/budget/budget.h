/* Daily spending budgets per tenant (and optionally per tenant and task
 * type), shared by the whole fleet through a JetStream KV bucket.
 *
 * ---- The model ----
 *
 * Money is integer micro-dollars (1 USD = 1,000,000) everywhere: no floating
 * point, no rounding drift. A budget day is a UTC day; it resets at 00:00 UTC.
 *
 * One key per (day, budget) in the bucket (default "agentq-budgets") holds
 * the fleet's *allocated* total for that budget and day, as JSON:
 *
 *   <YYYYMMDD>.alloc.<tenant>[.<type>] =
 *     {"limit": L, "allocated": A, "holders": {"<instance>": n, ...}}
 *
 * A worker never spends what the key has not allocated to it. It leases an
 * allowance from the key in chunks with compare-and-set (read, add, write
 * expecting the revision it read; retry with the new revision on conflict),
 * spends the lease locally (no round trip per task), and gives back what it
 * has not used: when a reservation was refused, when the lease sat idle, at
 * day end and at shutdown. Since A <= L is checked under compare-and-set,
 * the fleet's spending can never pass L (except by a call whose real cost
 * exceeded the upper bound it reserved, which is charged as debt). A worker
 * that crashes loses its unused lease for the day: the fleet then under-
 * spends by at most one lease, never over-spends.
 *
 * Lease size (aq_budget_lease_size): a chunk (default 1% of the limit) while
 * plenty is left, shrinking to remaining / (2 x workers holding leases of
 * that key today) near the end, but never less than what the reservations
 * waiting right now need. Together with giving back unused leases on
 * refusal, the fleet stops within one reservation's upper bound of the limit.
 *
 * Fleet-wide "cost today" for every tenant, budgeted or not, does not go
 * through compare-and-set: each worker process puts its own cumulative
 * figures for the day into its own key every flush period,
 *
 *   <YYYYMMDD>.spent.<instance> = {"<tenant>": micro, ...}
 *
 * (one writer per key, so a plain put, no read, no conflict), and
 * aq_budget_read_day sums the instances. A crash loses at most one flush
 * period of the crashed worker's figures (the budget keys are unaffected).
 *
 * Tenants and types without a configured budget never touch a budget key:
 * their reservations are granted on the spot, without I/O.
 *
 * ---- Threads ----
 *
 * nats.c 3.4.1 offers only synchronous KV calls, so every KV round trip runs
 * on a thread of this module; completions come back on the loop thread
 * through a mailbox. Every public function except aq_budget_bucket_ensure,
 * aq_budget_read_day and the pure helpers must be called on the loop thread
 * of the event_base given to aq_budget_new.
 *
 * ---- Life of a call (pipeline) ----
 *
 *   aq_budget_reservation r = AQ_BUDGET_RESERVATION_INIT;   // in the job
 *   switch (aq_budget_reserve(b, tenant, type, upper_bound_micro, done, job, &r)) {
 *   case AQ_BUDGET_GRANTED:  go on to the call
 *   case AQ_BUDGET_PENDING:  wait: done(&r, job) runs later on the loop thread
 *                            with r.verdict GRANTED, EXCEEDED or UNAVAILABLE
 *   case AQ_BUDGET_EXCEEDED: defer until r.reset_unix_ms or fail "budget_exceeded"
 *   case AQ_BUDGET_UNAVAILABLE: the bucket cannot be reached (r.status): retry later
 *   }
 *   after the call:           aq_budget_settle(b, &r, real_cost_micro)
 *   no call made after all:   aq_budget_settle(b, &r, 0)
 *   job dropped while PENDING: aq_budget_cancel(b, &r)
 */
#ifndef AQ_BUDGET_BUDGET_H
#define AQ_BUDGET_BUDGET_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "budget/budget_config.h" /* AQ_BUDGET_DEFAULT_BUCKET */
#include "core/mailbox.h"
#include "core/status.h"

struct event_base;

#define AQ_BUDGET_DEFAULT_TTL_MS (3LL * 86400 * 1000) /* keys of a day live 3 days */
#define AQ_BUDGET_MICRO 1000000LL                     /* micro-dollars per dollar */
#define AQ_BUDGET_MAX_LIMIT (1000000LL * AQ_BUDGET_MICRO) /* $1,000,000 per budget per day */
#define AQ_BUDGET_MAX_COST (10000LL * AQ_BUDGET_MICRO)    /* one call; larger is cut to this */
#define AQ_BUDGET_SPEC_MAX_LEN 16384    /* characters of the budgets string */
#define AQ_BUDGET_MAX_BUDGETS 512       /* entries in the budgets string */
#define AQ_BUDGET_NAME_MAX 64           /* bytes of a tenant or type named in a budget */
#define AQ_BUDGET_TENANT_MAX 256        /* bytes of a tenant in the spent figures (longer: cut) */
#define AQ_BUDGET_SPENT_TENANTS_MAX 4096 /* tenants counted apart per worker per day; the rest
                                           are counted under AQ_BUDGET_OTHER_TENANT */
#define AQ_BUDGET_OTHER_TENANT "*other*"
#define AQ_BUDGET_MAX_HOLDERS 256       /* instances named in one budget key (more still lease,
                                           they are just counted as one) */
#define AQ_BUDGET_VALUE_MAX (64 * 1024) /* a budget key's value as read (bigger: refused) */
#define AQ_BUDGET_SPENT_VALUE_MAX (512 * 1024) /* one instance's spent figures as read */
#define AQ_BUDGET_KEY_MAX 512           /* bytes of a key we build */
#define AQ_BUDGET_INSTANCE_MAX 80       /* bytes of an instance id */
#define AQ_BUDGET_CAS_TRIES 16          /* compare-and-set attempts per exchange */
#define AQ_BUDGET_LEASE_DIVISOR 100     /* default lease: limit / 100 */

/* ---- The budgets string (pure) ---- */

/* Grammar (spaces and tabs allowed around every token):
 *
 *   budgets = "" | entry *( ( "," | ";" ) entry )
 *   entry   = tenant [ "/" type ] "=" usd
 *   usd     = digits [ "." 1*6digits ]     ; 0 .. AQ_BUDGET_MAX_LIMIT micro-dollars
 *
 * e.g. "acme=25.00,globex=5;acme/summarize=2": USD per UTC day. A tenant or
 * type is 1..AQ_BUDGET_NAME_MAX bytes, none of them space, control, ",",
 * ";", "/", "=". "acme/summarize=2" limits acme's summarize tasks to $2 a
 * day inside acme's $25: a task of that tenant and type must fit both. A
 * budget of 0 refuses every task of that tenant (or type). Strict: an empty
 * entry, an entry given twice, a bad amount (more than 6 decimals, a sign,
 * an exponent, over the cap), more than AQ_BUDGET_MAX_BUDGETS entries or
 * AQ_BUDGET_SPEC_MAX_LEN characters are AQ_CONFIG naming the culprit. */
typedef struct aq_budget_spec aq_budget_spec;

aq_status aq_budget_spec_parse(const char *s, aq_budget_spec **out, aq_err *err);
void aq_budget_spec_free(aq_budget_spec *spec);
size_t aq_budget_spec_count(const aq_budget_spec *spec);
/* Entry i in the order written: tenant, type ("" = every type), limit. */
bool aq_budget_spec_entry(const aq_budget_spec *spec, size_t i, const char **tenant,
                          const char **type, int64_t *limit_micro);
/* The limit configured for exactly (tenant, type), type "" = the tenant's
 * own budget; -1 when there is none. */
int64_t aq_budget_spec_limit(const aq_budget_spec *spec, const char *tenant, const char *type);

/* "12.345678" -> 12345678. The `usd` rule above. */
aq_status aq_budget_parse_usd(const char *s, int64_t *micro_out);
/* 12345678 -> "12.345678" (always 6 decimals; negative values keep the sign). */
void aq_budget_format_usd(int64_t micro, char *out, size_t n);

/* "defer" or "fail" (what the pipeline does with an EXCEEDED answer). */
typedef enum aq_budget_action { AQ_BUDGET_ACTION_DEFER = 0, AQ_BUDGET_ACTION_FAIL } aq_budget_action;
aq_status aq_budget_action_parse(const char *s, aq_budget_action *out, aq_err *err);

/* ---- Days and keys (pure) ---- */

/* The UTC day of a Unix time as days since 1970-01-01 (floor, so times
 * before 1970 work too), its "YYYYMMDD" name, and when it ends (the next
 * 00:00 UTC, Unix ms): the time an EXCEEDED budget resets. */
int64_t aq_budget_day_of(int64_t unix_ms);
void aq_budget_day_name(int64_t day, char out[9]);
int64_t aq_budget_day_end_ms(int64_t day);

/* Key of a budget: "<YYYYMMDD>.alloc.<tenant>[.<type>]"; tenant and type are
 * escaped so any bytes make a valid key token: [A-Za-z0-9_-] as is, every
 * other byte "=XX" (upper-case hex), the empty string "=". false when it
 * does not fit `n`. */
bool aq_budget_key(int64_t day, const char *tenant, const char *type, char *out, size_t n);
/* The escaping of one token alone (a subject token too: parked tasks go to
 * <deferred_subjects>.<escaped tenant>); false when it does not fit `n`. */
bool aq_budget_escape(const char *token, char *out, size_t n);
/* The inverse of the escaping of one token; false for a malformed token. */
bool aq_budget_unescape(const char *token, size_t len, char *out, size_t n);

/* How much to lease from a budget key whose remaining (limit - allocated) is
 * `remaining`, for reservations that need at least `need_min` now (the one
 * first in line) and `want` in all (everything waiting), with a configured
 * chunk `chunk` and `workers` instances (this one included) holding leases
 * of the key:
 *
 *   0 (refused)                    when remaining < need_min
 *   else max(need_min, min(remaining, max(want, min(chunk, remaining / (2 x workers)))))
 *
 * so leases are chunks while the budget is far from spent and shrink with
 * what is left, splitting it between the workers, never below what the
 * waiting reservations need. */
int64_t aq_budget_lease_size(int64_t remaining, int64_t need_min, int64_t want, int64_t chunk,
                             int64_t workers);

/* ---- The bucket ---- */

/* Create the bucket (history 1, TTL `ttl_ms`, 0 = AQ_BUDGET_DEFAULT_TTL_MS),
 * or update an existing one's TTL and replicas. `bucket` NULL or "" = the
 * default. `*created` (may be NULL) tells which. For `agentq init`. */
aq_status aq_budget_bucket_ensure(jsCtx *js, const char *bucket, int64_t ttl_ms, int replicas,
                                  bool *created, aq_err *err);
/* AQ_NOT_FOUND (with a message saying to run `agentq init`) when the bucket
 * does not exist. For the worker's start-up checks. */
aq_status aq_budget_bucket_check(jsCtx *js, const char *bucket, aq_err *err);

/* ---- The fleet's figures for a day (`agentq status`) ---- */

typedef struct aq_budget_row {
    char tenant[AQ_BUDGET_TENANT_MAX + 1];
    char type[AQ_BUDGET_NAME_MAX + 1]; /* "" = the tenant as a whole */
    bool has_budget;                   /* a budget key exists for it today */
    int64_t limit_micro;               /* as last written by a worker; -1 without a budget */
    int64_t allocated_micro;           /* leased to workers (spent + held + in flight) */
    int64_t holders;                   /* instances that leased from it today */
    int64_t spent_micro;               /* real cost flushed by every instance (tenant rows;
                                          -1 on type rows: not tracked per type) */
} aq_budget_row;

typedef struct aq_budget_day_report {
    int64_t day;
    size_t n_rows;
    aq_budget_row *rows; /* sorted by tenant, then type; tenant rows first */
    size_t n_instances;  /* workers that flushed spent figures for the day */
} aq_budget_day_report;

/* Read every key of `day` (aq_budget_day_of) with a watch, waiting at most
 * `timeout_ms` for the whole set. Synchronous: for the CLI or a thread that
 * may block. Budget left for a tenant row = limit - spent (approximate: the
 * spent figures lag by a flush period); never allocated more than limit. */
aq_status aq_budget_read_day(jsCtx *js, const char *bucket, int64_t day, int64_t timeout_ms,
                             aq_budget_day_report *out, aq_err *err);
void aq_budget_day_report_free(aq_budget_day_report *r);

/* ---- The worker's budget client ---- */

typedef struct aq_budget_config {
    const char *budgets;     /* the budgets string; NULL or "" = no budgets (spent is still kept) */
    const char *bucket;      /* NULL or "" = AQ_BUDGET_DEFAULT_BUCKET */
    const char *instance;    /* worker name; a random suffix makes it unique per process */
    int64_t lease_micro;     /* 0: each budget's limit / AQ_BUDGET_LEASE_DIVISOR (at least 1) */
    int64_t flush_ms;        /* spent flush and lease housekeeping period; 0: 2000 */
    int64_t idle_return_ms;  /* a lease unused this long is given back; 0: 10000 */
    int64_t kv_timeout_ms;   /* one KV round trip; 0: 2000 */
    int64_t shutdown_ms;     /* aq_budget_destroy's bound for giving leases back; 0: 2000 */
    /* Tests only: the wall clock (NULL = aq_now_unix_ms). */
    int64_t (*now_unix_ms)(void *arg);
    void *clock_arg;
} aq_budget_config;

typedef struct aq_budget aq_budget;

/* Copies what it needs of `cfg` (parses cfg->budgets: AQ_CONFIG). Makes its
 * own JetStream context on `nc` and its own thread; does no I/O here (the
 * bucket is bound on first use, so a worker starts while NATS is down).
 * `base` must have been created after evthread_use_pthreads(). */
aq_status aq_budget_new(natsConnection *nc, struct event_base *base, const aq_budget_config *cfg,
                        aq_budget **out, aq_err *err);

/* Stops the housekeeping, gives every unused lease back and flushes the
 * spent figures, waiting at most cfg->shutdown_ms in all, then stops the
 * thread. Reservations still held are counted as spent (never returned:
 * their calls may have run); PENDING ones are dropped without a callback.
 * Call on the loop thread (the loop need not be running). Accepts NULL. */
void aq_budget_destroy(aq_budget *b);

typedef enum aq_budget_verdict {
    AQ_BUDGET_GRANTED = 0, /* reserved: make the call, then settle */
    AQ_BUDGET_PENDING,     /* waiting for a lease: the callback will answer */
    AQ_BUDGET_EXCEEDED,    /* the day's budget cannot cover the call: reset_unix_ms */
    AQ_BUDGET_UNAVAILABLE, /* the bucket could not be reached or written: status, err;
                              nothing reserved, nothing spent: try again later */
} aq_budget_verdict;

typedef struct aq_budget_reservation aq_budget_reservation;
/* Runs on the loop thread when a PENDING reservation is answered. */
typedef void (*aq_budget_done_fn)(aq_budget_reservation *r, void *ctx);

/* Caller-owned, at a stable address from aq_budget_reserve until it is
 * settled or cancelled (usually embedded in the job). */
struct aq_budget_reservation {
    /* read-only for the caller */
    aq_budget_verdict verdict;
    aq_status status;       /* UNAVAILABLE: AQ_NATS, AQ_TIMEOUT, AQ_WRITE_CONFLICT, AQ_SHUTDOWN */
    aq_err err;             /* UNAVAILABLE: why (never a credential) */
    int64_t reset_unix_ms;  /* EXCEEDED: when the budget day ends (next 00:00 UTC) */
    const char *exceeded;   /* EXCEEDED: "tenant" or "type": which budget refused */
    int64_t amount_micro;   /* the upper bound reserved */
    /* private */
    struct aq_budget_part {
        struct day_budget *db;
        bool held;
    } part_[2];
    struct spent_entry *spent_;
    struct aq_budget_reservation *next_; /* in a budget's queue of waiters */
    aq_budget_done_fn done_;
    void *ctx_;
    const aq_budget *owner_;
    int64_t day_;
    unsigned waiting_;      /* parts still waiting for a lease */
    bool active_;
};

#define AQ_BUDGET_RESERVATION_INIT {0}

/* Reserve `upper_bound_micro` (negative: 0; over AQ_BUDGET_MAX_COST: the
 * cap) for one call of `tenant` (NULL = "") and `type` (NULL = "") today.
 * Answers at once (GRANTED, EXCEEDED, UNAVAILABLE; `done` is not called)
 * or PENDING (`done` is called later, exactly once, unless cancelled).
 * `r` must not be an active reservation. */
aq_budget_verdict aq_budget_reserve(aq_budget *b, const char *tenant, const char *type,
                                    int64_t upper_bound_micro, aq_budget_done_fn done, void *ctx,
                                    aq_budget_reservation *r);

/* The call is over and cost `actual_micro` (0 when it was never made): the
 * difference to the upper bound goes back to the local lease (a real cost
 * above the bound is taken from it as debt), and the real cost is added to
 * the tenant's spent figure for the day the reservation was made. Settling
 * a zeroed, inactive or PENDING reservation does nothing (PENDING: use
 * aq_budget_cancel). */
void aq_budget_settle(aq_budget *b, aq_budget_reservation *r, int64_t actual_micro);

/* Drop a PENDING reservation (its callback will not run), or release a
 * GRANTED one like aq_budget_settle(b, r, 0). Inactive: nothing. */
void aq_budget_cancel(aq_budget *b, aq_budget_reservation *r);

/* What this worker knows is left today of the budget of (tenant, type)
 * (type NULL or "" = the tenant's own budget): limit - the fleet's allocated
 * as of this worker's last exchange with the key + this worker's unused
 * lease. The leases other workers hold are counted as spent until they give
 * them back. false when there is no such budget. For metrics and status. */
bool aq_budget_remaining(const aq_budget *b, const char *tenant, const char *type,
                         int64_t *remaining_micro);
/* What this worker's granted, unsettled reservations hold of the budget of
 * (tenant, type) today (type NULL or "" = the tenant's own budget): the
 * bounds reserved for its calls in flight. An EXCEEDED answer while this is
 * above 0 may turn into a grant once they settle below their bounds (the
 * refund goes to the local lease), so the caller may ask again then rather
 * than give up for the day. 0 when there is no such budget. */
int64_t aq_budget_in_flight(const aq_budget *b, const char *tenant, const char *type);
/* This worker's real cost today for a tenant (every tenant, budgeted or not). */
int64_t aq_budget_spent_today(const aq_budget *b, const char *tenant);

typedef struct aq_budget_stats {
    uint64_t reservations;   /* aq_budget_reserve calls */
    uint64_t unbudgeted;     /* of those, for tenants/types without a budget (no I/O) */
    uint64_t local;          /* of those, answered from the local lease at once */
    uint64_t exceeded;       /* EXCEEDED answers */
    uint64_t unavailable;    /* UNAVAILABLE answers */
    uint64_t exchanges;      /* lease or give-back exchanges with a budget key */
    uint64_t round_trips;    /* KV requests (reads, writes; spent flushes included) */
    uint64_t conflicts;      /* compare-and-set writes that lost and were retried */
    uint64_t kv_errors;      /* KV requests that failed */
    uint64_t flushes;        /* spent figures written */
    int64_t debt_micro;      /* real costs above their reserved bound, in all */
} aq_budget_stats;

void aq_budget_stats_get(const aq_budget *b, aq_budget_stats *out);
/* This process's instance id (worker name + random suffix). */
const char *aq_budget_instance(const aq_budget *b);

/* Iterate the configured budgets (for metrics): fn(tenant, type, limit,
 * remaining) for each, on today's figures. */
typedef void (*aq_budget_each_fn)(void *arg, const char *tenant, const char *type,
                                  int64_t limit_micro, int64_t remaining_micro);
void aq_budget_each(const aq_budget *b, aq_budget_each_fn fn, void *arg);

#endif
