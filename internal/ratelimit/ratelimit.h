/* Client-side rate limiting of Messages API calls, per (API key, model class):
 * token buckets for requests, input tokens and output tokens per minute, kept
 * in step with the provider's anthropic-ratelimit-* headers so that a fleet of
 * workers sharing a key stays under the key's limits without talking to each
 * other.
 *
 * Pure logic: no I/O, no clock (every function takes the time from the
 * caller: `now_ms` is monotonic milliseconds, e.g. aq_mono_ms(); `now_unix_ms`
 * is wall-clock Unix milliseconds, aq_now_unix_ms(), used only to read the
 * headers' reset times), no logging, no allocation after aq_rl_new.
 *
 * Single-threaded: every function must be called on one thread (the worker's
 * loop thread). There is no locking.
 *
 * The module never sees an API key: keys are an index (the caller's order)
 * and a label chosen so that it is not the key ("key-1" by default).
 *
 * Life of a call:
 *
 *   aq_rl_reservation r = AQ_RL_RESERVATION_INIT;     // kept in the job, stable address
 *   int64_t wait;
 *   if (aq_rl_acquire(rl, aq_rl_model_class(model), est_input, max_tokens,
 *                     aq_mono_ms(), &r, &wait) == AQ_RL_WAIT)
 *       -> try again in `wait` ms (do not fetch more work meanwhile)
 *   aq_llm_call_start with keys[r.key] ...
 *       failed, or the job is dropped before the call starts: aq_rl_release(rl, &r, now)
 *   in the completion callback:
 *       aq_rl_finish(rl, &r, call_result, parsed_usage_or_NULL, aq_mono_ms(), aq_now_unix_ms());
 *   (or aq_rl_commit / aq_rl_release / aq_rl_rate_limited directly)
 *   a cancelled call (aq_llm_call_cancel, e.g. at shutdown) may have reached
 *   the provider: aq_rl_commit(rl, &r, NULL, NULL, ...) keeps it charged.
 *
 * ---- The model ----
 *
 * Units. A limit L is per minute; a bucket refills continuously at L/60000
 * per ms up to its capacity. Levels are integers in 1/60000 of a unit, so a
 * limit refills exactly L of them per ms: no floating point, no drift at
 * full share, and (128-bit intermediates, clamped results) no overflow
 * within the caps below, however long the gap between two calls.
 *
 * Costs. A call costs 1 request, its estimated input tokens and max_tokens
 * output tokens, charged at acquire. At the end the charge is corrected to
 * what the provider counts: input = usage.input_tokens +
 * usage.cache_creation_input_tokens (cache-read tokens do not count toward
 * the input-tokens-per-minute limit of current models), output =
 * usage.output_tokens (the rest of max_tokens is refunded). That is also what
 * the provider does (OTPM is charged from max_tokens at the start and
 * corrected at the end). Which outcomes count as "reached the provider":
 * see aq_rl_finish.
 *
 * Limits. A configured limit (aq_rl_limits_parse) of 0 means "learn it": the
 * dimension has no local limit until a response carries its -limit header,
 * which then becomes the limit. A configured limit is kept when a header
 * reports a higher one (the operator may keep capacity for someone else) and
 * lowered to the reported one when the header is lower (the provider is the
 * truth). A configured dimension starts full, at share 1.
 *
 * Probing. While a (key, class) has a dimension with no known limit and no
 * answer with headers has come back on it, it takes AQ_RL_PROBE_CALLS call
 * at a time (acquire answers WAIT, AQ_RL_PROBE_WAIT_MS, meanwhile): without
 * it a worker that starts with hundreds of tasks sends them all before the
 * first answer says what the key allows, and draws a burst of 429s. Any
 * answer with headers ends the probing, even one without rate-limit values
 * (so a provider or proxy that sends none costs one round trip, not
 * throughput); a release or a call without an answer does not.
 *
 * A limit learned from the headers starts at share AQ_RL_INITIAL_SHARE_PPM
 * (one half): workers that start together all learn that the bucket is full,
 * and each must not take all of it. A worker alone measures others = 0 at
 * the end of the first window and takes the rest then (see the floor below).
 *
 * What the provider counts, and when (the model the headers are read with).
 * The provider charges a call when it arrives: 1 request, its input tokens
 * and max_tokens output tokens; at the end the output is corrected to the
 * real count (the reference, /work/shared/reference/anthropic-messages-api.md,
 * and agentq-sim, which does exactly this). Calls in flight are therefore in
 * the provider's remaining once they have arrived. When the headers are
 * written is not documented: agentq-sim writes them when it answers (a 429:
 * when it refuses); a provider may write them when the call arrives, so on a
 * long call they may be as old as the call. The rules below hold for both.
 *
 * Headers: a ceiling and a floor. Each response's headers re-synchronise the
 * (key, class) it was sent with, per dimension. With `after` = the units this
 * worker was granted on it after the answered call (finished, refused and
 * released ones included):
 *
 *   ceiling = share x (remaining - slack - unseen), unseen = min(young, after)
 *   floor   = share x (remaining - slack - after)
 *
 * the level is lowered to the ceiling, then raised to the floor (capped at
 * the capacity). `slack` is AQ_RL_TOKEN_REMAINING_SLACK for token dimensions
 * (token -remaining values are rounded to the nearest thousand: the real
 * value may be 500 lower) and 0 for requests. `young` is what this worker
 * has in flight from calls granted less than `visibility_ms` ago
 * (aq_rl_config): they may not have arrived, so they may not be in the
 * remaining. But the answered call had arrived, and so had every call sent
 * before it: only calls granted after it can be missing, hence the min.
 * (Young alone counted a whole burst twice: 256 calls granted in one
 * millisecond were all "young" when the first answers came, the level went
 * to -165k input tokens with the provider's bucket holding 60k.) Older calls
 * are not subtracted again: subtracting every call in flight would count
 * long calls twice and starve a worker that keeps many calls in flight.
 * The floor: whatever the headers' age, the provider had `remaining` then,
 * and since then at most `after` of this worker's calls were charged, so
 * share x that is certainly this worker's. It is what brings the level back
 * after something pushed it too low (an early answer of a burst, a halved
 * share, a share that grew); without it the level only came back at the
 * refill rate while the provider's bucket sat full. No floor where the
 * operator configured less than the provider's limit: the provider's
 * remaining says nothing about that budget. In a burst the first answers
 * lower the level (many calls after them) and the last ones raise it.
 *
 * Share: the fleet without talking. The ceiling alone does not keep a fleet
 * under the limit: between two headers every worker would refill at the full
 * L/60000 per ms, and N workers would admit N times what the provider
 * refills, for as long as they run. So every bucket also estimates this
 * worker's share of the key and refills, and holds at most, share x L. The
 * estimate: a shadow bucket models the provider's bucket as if this worker
 * were alone (full rate, capped at L, charged and corrected with this
 * worker's calls); at each header, shadow - (remaining - unseen) is what the
 * others took since the previous header, and the shadow is reset to the
 * provider's value (the sums telescope, so timing and rounding errors do not
 * accumulate). Over a window of at least share_window_ms and a minimum sample
 * (AQ_RL_SHARE_MIN_REQUESTS or _TOKENS; not needed when the provider is at
 * least half full; at most AQ_RL_SHARE_MAX_WINDOW_MS):
 *
 *   share = own / (own + others), at least AQ_RL_MIN_SHARE_PPM
 *
 * The shares of the workers on one key sum to 1, so together they refill at
 * the provider's rate, in one window and without oscillation. A worker alone
 * measures others = 0 and keeps share 1 (the shadow is capped like the
 * provider's bucket, so capacity nobody used is not mistaken for someone
 * else's use). A worker whose neighbours leave room sees its share grow every
 * window. Two keys of one organisation share its limit: each sees the
 * other's traffic as "others" and they split it. A 429 halves the share (at
 * most once per window) until the next measurement.
 *
 * Known limit of this: a fleet that goes from light load (the provider's
 * bucket full, every worker's share measured as 1) to full load at once
 * bursts up to one bucket per worker before the first answers come back,
 * and gets 429s for the excess once; the 429 pauses, the halving and the next
 * window bring it under the limit within seconds (tests: fleet simulation).
 * Likewise more than two workers that start at the same moment and learn
 * the limits together take half a bucket each at first (configured limits:
 * a whole bucket each).
 *
 * Reset times. The -reset headers (already parsed by the LLM client into Unix
 * ms; -1 when absent) say when the provider's bucket is full again. When the
 * rate that implies, (limit - remaining) / (reset - now), is half the
 * nominal one or less (a provider that refills in steps, e.g. fixed
 * windows), the refill is capped at it until that time, so the local bucket
 * is not full before the provider's. Absent, in the past, further than
 * AQ_RL_RESET_HORIZON_MS, without the caller's wall clock, or close to
 * nominal (a continuously refilling provider: remaining values are rounded
 * and reset times may be whole seconds): nominal refill.
 *
 * 429. aq_rl_rate_limited pauses the (key, class) until now + retry-after
 * (default_pause_ms when absent; at most AQ_RL_MAX_PAUSE_MS) and refunds the
 * call (the provider did not count it). Acquire skips paused keys.
 *
 * Calls larger than a bucket. A call whose cost in some dimension exceeds
 * the bucket's capacity can never be afforded by waiting; it is admitted when
 * that bucket is full (the level goes negative and later calls wait for the
 * debt to be repaid). The provider decides whether such a call goes through.
 */
#ifndef AQ_RATELIMIT_RATELIMIT_H
#define AQ_RATELIMIT_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "llm/llm_client.h"
#include "llm/llm_response.h"

#define AQ_RL_MAX_KEYS 64                     /* same as the worker's api_key list cap */
#define AQ_RL_LABEL_MAX 16                    /* characters of a key label; an API key is longer */
#define AQ_RL_MAX_LIMIT 1000000000000LL       /* per minute, any dimension (configured or reported) */
#define AQ_RL_MAX_COST 100000000LL            /* per call per dimension; larger estimates are cut */
#define AQ_RL_LIMITS_MAX_LEN 1024             /* characters of a limits string */
#define AQ_RL_MAX_WAIT_MS 60000               /* a WAIT answer is at most this (then ask again) */
#define AQ_RL_DEFAULT_PAUSE_MS 2000           /* after a 429 without retry-after */
#define AQ_RL_MAX_PAUSE_MS 60000              /* retry-after is capped at this */
#define AQ_RL_DEFAULT_VISIBILITY_MS 1000      /* a call younger than this may not be counted by the provider yet */
#define AQ_RL_DEFAULT_SHARE_WINDOW_MS 5000    /* shortest window over which the share is measured */
#define AQ_RL_SHARE_MAX_WINDOW_MS 60000       /* a window closes after this even with a small sample */
#define AQ_RL_SHARE_MIN_REQUESTS 20           /* sample (own + others) for a requests window */
#define AQ_RL_SHARE_MIN_TOKENS 20000          /* sample for a token window (remaining is rounded to 1000) */
#define AQ_RL_MIN_SHARE_PPM 10000             /* 1%: fleets of up to ~100 workers per key */
#define AQ_RL_TOKEN_REMAINING_SLACK 500       /* token -remaining values are rounded to 1000 */
#define AQ_RL_RESET_HORIZON_MS 120000         /* a reset further away than this is ignored */
#define AQ_RL_PROBE_CALLS 1                   /* in flight per (key, class) before the first headers */
#define AQ_RL_PROBE_WAIT_MS 50                /* WAIT answered meanwhile (the answer's time is unknown) */
#define AQ_RL_INITIAL_SHARE_PPM 500000        /* share of a limit just learned, until measured */

/* ---- Model classes ---- */

typedef enum aq_rl_class {
    AQ_RL_HAIKU = 0,
    AQ_RL_SONNET,
    AQ_RL_OPUS,
    AQ_RL_OTHER,
    AQ_RL_CLASS_COUNT
} aq_rl_class;

/* The class of a model id: the first "-", ".", "@", ":", "/" or "_"
 * separated word of the id that is "haiku", "sonnet" or "opus" (ASCII case
 * ignored), else AQ_RL_OTHER. "claude-sonnet-4-5", "claude-3-5-haiku-20241022",
 * "anthropic.claude-3-opus-20240229-v1:0" and "claude-opus-4-1@20250805" have
 * a class; "claude-instant-1", "gpt-4o", "" and NULL are "other". A fixed
 * small set, not the id itself: model ids come from tasks, and a class is a
 * metrics label and a table row, so the set must stay bounded. */
aq_rl_class aq_rl_model_class(const char *model);
/* "haiku", "sonnet", "opus", "other"; "other" for an out-of-range value. */
const char *aq_rl_class_name(aq_rl_class cls);

typedef enum aq_rl_dim {
    AQ_RL_REQUESTS = 0,
    AQ_RL_INPUT_TOKENS,
    AQ_RL_OUTPUT_TOKENS,
    AQ_RL_DIM_COUNT
} aq_rl_dim;

/* "requests", "input_tokens", "output_tokens". */
const char *aq_rl_dim_name(aq_rl_dim dim);

/* ---- Configured limits ---- */

/* Per minute; 0 = not configured: learn it from the response headers. */
typedef struct aq_rl_limits {
    int64_t per_min[AQ_RL_CLASS_COUNT][AQ_RL_DIM_COUNT];
} aq_rl_limits;

/* The default when the configuration string is empty: nothing configured,
 * every limit is learned from the headers. */
#define AQ_RL_DEFAULT_LIMITS ""

/* Parse a limits string. Grammar (spaces and tabs allowed around every token):
 *
 *   limits  = "" | entry *( ";" entry )
 *   entry   = class ":" setting *( "," setting )
 *   class   = "haiku" | "sonnet" | "opus" | "other"
 *   setting = ( "rpm" | "itpm" | "otpm" ) "=" digits     ; 0 .. AQ_RL_MAX_LIMIT
 *
 * e.g. "sonnet:rpm=4000,itpm=2000000,otpm=400000;haiku:rpm=4000,itpm=4000000,otpm=800000".
 * rpm = requests, itpm = input tokens, otpm = output tokens per minute. A
 * class or setting left out, or set to 0, is learned from the headers. NULL
 * or blank: AQ_RL_DEFAULT_LIMITS. Strict: an empty entry (";;", a trailing
 * ";"), a missing ":" or "=", an unknown class or setting, a class or a
 * setting given twice, a class without settings, a value that is not plain
 * decimal digits or is over the cap, and a string longer than
 * AQ_RL_LIMITS_MAX_LEN are AQ_CONFIG with a message naming the culprit.
 * `out` is written only on success. */
aq_status aq_rl_limits_parse(const char *s, aq_rl_limits *out, aq_err *err);

/* ---- The limiter ---- */

typedef struct aq_rl_config {
    aq_rl_limits limits;       /* applies to every key */
    size_t n_keys;             /* 1 .. AQ_RL_MAX_KEYS */
    const char *const *labels; /* n_keys labels, or NULL for "key-1" .. "key-N". A label is
                                  1..AQ_RL_LABEL_MAX of [A-Za-z0-9._-] and must not start
                                  with "sk-" (it would look like a key); e.g. "key-1" or
                                  "...abcd"-style suffixes made by the caller: "k1-abcd" */
    int64_t default_pause_ms;  /* 0: AQ_RL_DEFAULT_PAUSE_MS; else 1 .. AQ_RL_MAX_PAUSE_MS */
    int64_t visibility_ms;     /* 0: AQ_RL_DEFAULT_VISIBILITY_MS; else 1 .. 60000 */
    int64_t share_window_ms;   /* 0: AQ_RL_DEFAULT_SHARE_WINDOW_MS; else 100 .. 60000 */
} aq_rl_config;

typedef struct aq_rl aq_rl;

/* Configured dimensions start full at `now_ms`. AQ_CONFIG for a bad key
 * count, label (the message gives the label's index, never its text), limit
 * or duration; AQ_NOMEM. `out` is written only on success. */
aq_status aq_rl_new(const aq_rl_config *cfg, int64_t now_ms, aq_rl **out, aq_err *err);
/* Accepts NULL. Reservations still in flight must not be finished afterwards. */
void aq_rl_destroy(aq_rl *rl);

/* What an acquire grants. Caller-owned memory, kept at the same address
 * until it is finished (commit, release, rate_limited or finish): the limiter
 * links it into its list of calls in flight. Finishing a zeroed
 * (AQ_RL_RESERVATION_INIT) or already finished reservation, or one of another
 * limiter, does nothing, so a job can finish its reservation on every path
 * without tracking whether it holds one. */
typedef struct aq_rl_reservation {
    /* read-only for the caller */
    uint32_t key;                   /* index of the key to call with */
    aq_rl_class cls;
    int64_t cost[AQ_RL_DIM_COUNT];  /* charged: 1, input estimate, max_tokens (after the caps) */
    int64_t acquired_ms;
    /* private */
    struct aq_rl_reservation *prev_, *next_;
    const aq_rl *owner_;
    unsigned counted_;              /* bit per dimension: charge counted in the share measurement */
    uint64_t mark_[AQ_RL_DIM_COUNT]; /* units granted on its (key, class) up to and including it */
    bool in_flight_, young_;
} aq_rl_reservation;

#define AQ_RL_RESERVATION_INIT {0}

typedef enum aq_rl_verdict {
    AQ_RL_GRANTED = 0, /* `res` filled: call with keys[res->key] */
    AQ_RL_WAIT,        /* nothing affordable now: ask again in *wait_ms (1 .. AQ_RL_MAX_WAIT_MS) */
} aq_rl_verdict;

/* Reserve one call of class `cls` (out of range: AQ_RL_OTHER) with
 * `input_estimate` input tokens and `max_tokens` output tokens (negative: 0;
 * over AQ_RL_MAX_COST: the cap). Among the keys that are not paused and can
 * afford the cost now in every dimension with a known limit, the one with the
 * most headroom is chosen:
 *
 *   headroom(key) = min over known dimensions of (available - cost) / limit
 *
 * the fraction of the key's per-minute limit still free for this worker
 * after the call, in the dimension that is tightest. The minimum, because the
 * tightest dimension is the one that answers 429 first; divided by the limit,
 * so dimensions and keys of different sizes compare (a key with ten times the
 * limit takes ten times the traffic before it is as full). A key with no
 * known limit yet has headroom 1 (and is tried, which teaches its limits;
 * one probe call at a time until it answers, see Probing above).
 * Ties go to the lowest index.
 *
 * `res` is any memory (it need not be initialised; it is overwritten on
 * GRANTED) except a reservation still in flight, which must be finished
 * first: the limiter's list of calls in flight goes through it.
 *
 * GRANTED: `res` is filled and linked, `*wait_ms` (may be NULL) = 0.
 * WAIT: `res` untouched; `*wait_ms` = time until the soonest key (its pause
 * over and every dimension refilled enough, or full for a call larger than
 * the bucket) can afford the call, at least 1, at most AQ_RL_MAX_WAIT_MS;
 * AQ_RL_PROBE_WAIT_MS for a key waiting for its probe's answer.
 * The time is exact for the current state; other grants or headers in the
 * meantime can change it, so the caller simply asks again. */
aq_rl_verdict aq_rl_acquire(aq_rl *rl, aq_rl_class cls, int64_t input_estimate, int64_t max_tokens,
                            int64_t now_ms, aq_rl_reservation *res, int64_t *wait_ms);

/* The call reached the provider and was answered. `usage` NULL (an answer
 * whose usage is unknown, or a call that may have run without an answer):
 * the reservation stays charged as it is. Else input is corrected to
 * usage->input_tokens + usage->cache_creation_input_tokens (cache_read is
 * not counted) and output to usage->output_tokens. Then `hdr` (may be NULL)
 * re-synchronises the key's buckets (see the top of this file). */
void aq_rl_commit(aq_rl *rl, aq_rl_reservation *res, const aq_llm_usage *usage,
                  const aq_llm_ratelimit *hdr, int64_t now_ms, int64_t now_unix_ms);

/* The call never reached the provider (it could not connect, aq_llm_call_start
 * failed, or the job was dropped before the call started): refund everything. */
void aq_rl_release(aq_rl *rl, aq_rl_reservation *res, int64_t now_ms);

/* The provider answered 429: refund the call (the provider did not count it),
 * pause the (key, class) until now + retry_after_ms (-1 absent: the
 * configured default pause; capped at AQ_RL_MAX_PAUSE_MS; a later pause
 * already in force is kept), then apply `hdr` (may be NULL). */
void aq_rl_rate_limited(aq_rl *rl, aq_rl_reservation *res, int64_t retry_after_ms,
                        const aq_llm_ratelimit *hdr, int64_t now_ms, int64_t now_unix_ms);

/* Finish a reservation from the LLM client's result, deciding which of the
 * above applies (this is the one place that decides what "reached" means):
 *
 *   transport AQ_OK, 429         -> rate_limited(retry_after_ms, headers)
 *   transport AQ_OK, 2xx         -> commit(usage, headers); pass the parsed usage,
 *                                   or NULL when the body did not parse (kept charged)
 *   transport AQ_OK, other status -> commit(1 request, the input estimate, 0 output,
 *                                   headers): the provider answered an error and
 *                                   generated nothing
 *   AQ_HTTP_CONNECT, no status   -> release: the request was most likely never sent
 *   anything else (timeout, body over the cap, out of memory, or a failure after
 *                    a status line) -> commit(NULL): the call may have run in full;
 *                                   headers are applied when a status arrived
 *
 * `call` NULL: release. */
void aq_rl_finish(aq_rl *rl, aq_rl_reservation *res, const aq_llm_call_result *call,
                  const aq_llm_usage *usage, int64_t now_ms, int64_t now_unix_ms);

/* ---- Introspection (metrics, logs) ---- */

typedef struct aq_rl_dim_stats {
    int64_t limit;              /* effective per-minute limit; 0 = unknown (no local limit,
                                   and available and capacity are 0) */
    bool learned;               /* that limit came from the headers */
    int64_t available;          /* what this worker may still use now (floor; may be negative) */
    int64_t capacity;           /* share x limit: the most this worker's bucket holds */
    int64_t in_flight;          /* reserved by calls not finished yet */
    double share;               /* this worker's estimated share of the key, 0.01 .. 1 */
    int64_t reported_remaining; /* last -remaining header; -1 none yet */
    int64_t reported_reset_unix_ms; /* last -reset header; -1 none */
} aq_rl_dim_stats;

typedef struct aq_rl_stats {
    const char *key_label;      /* valid while the limiter lives */
    const char *class_name;
    int64_t paused_ms;          /* until the 429 pause ends; 0 when not paused */
    uint64_t grants;            /* acquires granted on this key and class */
    uint64_t pauses;            /* 429 answers */
    aq_rl_dim_stats dim[AQ_RL_DIM_COUNT];
} aq_rl_stats;

size_t aq_rl_key_count(const aq_rl *rl);
/* The label of key `key` ("" when out of range). */
const char *aq_rl_key_label(const aq_rl *rl, size_t key);
/* State of one (key, class) as of `now_ms` (does not change the limiter).
 * false when `key` or `cls` is out of range. */
bool aq_rl_stats_get(const aq_rl *rl, size_t key, aq_rl_class cls, int64_t now_ms,
                     aq_rl_stats *out);
/* Acquires of class `cls` answered WAIT. */
uint64_t aq_rl_waits(const aq_rl *rl, aq_rl_class cls);
/* An answer with headers has been applied to (key, cls): its probing is
 * over (see Probing above). false when out of range. */
bool aq_rl_heard(const aq_rl *rl, size_t key, aq_rl_class cls);

#endif
