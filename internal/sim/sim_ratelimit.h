/* Rate limits of the simulator, per API key, enforced like the real API's:
 * three token buckets per key that refill continuously (requests, input
 * tokens, output tokens per minute). A bucket's capacity is its per-minute
 * limit and it refills at limit/60 per second, fractionally (kept exactly, in
 * units of 1/60000 token: one millisecond of refill is `limit` units).
 *
 * A request is admitted only if every bucket covers it; it then costs one
 * request, its input tokens and max_tokens output tokens at once (a ticket
 * remembers the output reservation). When the request ends, aq_sim_ratelimit_settle
 * corrects the output charge to the real output (refunding max_tokens - real).
 * A request a bucket cannot cover charges nothing; the decision says which
 * limit (the one that must wait longest) and the retry-after in whole seconds
 * (ceil of the wait until that bucket holds enough). With enforcement off the
 * buckets are charged the same way (and may go below zero) but nothing is refused.
 *
 * Keys: at most `max_keys` are tracked at once (AQ_SIM_RL_MAX_KEYS). A key
 * whose buckets are all full and that has no request in flight holds no state
 * (a new key would start the same), so when the table is full such an idle
 * key is reclaimed (its request count moves to the "other" entry of the
 * per-key counts). If no key is idle, the new key is refused:
 * AQ_SIM_RL_TOO_MANY_KEYS, a 429 with a retry-after until the first key goes idle
 * (with enforcement off it passes uncharged).
 *
 * Keys are never stored or shown: an entry holds a 64-bit XXH3 of the key for
 * lookup and the first 8 hex characters of its SHA-256 for display.
 * Thread-safe: one mutex, held for a hash probe and a few additions. Times are
 * monotonic milliseconds passed in by the caller (tests inject them). */
#ifndef AQ_SIM_SIM_RATELIMIT_H
#define AQ_SIM_SIM_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define AQ_SIM_RL_MAX_KEYS 4096          /* keys tracked at once, at most */
#define AQ_SIM_RL_MAX_LIMIT 1000000000000LL /* largest per-minute limit (1e12) */
#define AQ_SIM_RL_WINDOW_MS 60000        /* an empty bucket is full again after this */
#define AQ_SIM_RL_UNITS 60000            /* bucket units per token (or request) */
#define AQ_SIM_KEY_ID_LEN 8              /* hex characters of SHA-256 shown for a key */
#define AQ_SIM_RFC3339_SIZE 21           /* "2026-01-02T03:04:05Z" + NUL */
#define AQ_SIM_RL_N_HEADERS 12

typedef enum aq_sim_rl_dim {
    AQ_SIM_RL_REQUESTS = 0,
    AQ_SIM_RL_INPUT_TOKENS = 1,
    AQ_SIM_RL_OUTPUT_TOKENS = 2,
    AQ_SIM_RL_DIMS = 3,
} aq_sim_rl_dim;

typedef struct aq_sim_rl_limits {
    int64_t requests_per_min;      /* each in [1, AQ_SIM_RL_MAX_LIMIT] */
    int64_t input_tokens_per_min;
    int64_t output_tokens_per_min;
} aq_sim_rl_limits;

typedef struct aq_sim_rl_options {
    bool enforce;                  /* false: charge and report, never refuse */
    size_t max_keys;               /* 0 or more than AQ_SIM_RL_MAX_KEYS: AQ_SIM_RL_MAX_KEYS */
} aq_sim_rl_options;

/* One key's buckets as the headers show them. */
typedef struct aq_sim_rl_state {
    int64_t limit[AQ_SIM_RL_DIMS];
    int64_t remaining[AQ_SIM_RL_DIMS];  /* whole requests / tokens available now, >= 0 */
    int64_t full_in_ms[AQ_SIM_RL_DIMS]; /* until the bucket is full again; 0 = full */
} aq_sim_rl_state;

typedef enum aq_sim_rl_outcome {
    AQ_SIM_RL_ADMITTED = 0,
    AQ_SIM_RL_LIMITED,       /* a bucket cannot cover the request: 429 */
    AQ_SIM_RL_TOO_MANY_KEYS, /* max_keys keys tracked, none idle: 429 */
} aq_sim_rl_outcome;

typedef struct aq_sim_rl_decision {
    aq_sim_rl_outcome outcome;
    aq_sim_rl_dim limited_by; /* LIMITED: the bucket that must wait longest */
    int64_t cost;             /* LIMITED: what the request needs of that bucket */
    bool never;               /* LIMITED: cost exceeds the limit itself */
    int64_t retry_after_s;    /* LIMITED, TOO_MANY_KEYS: >= 1 */
} aq_sim_rl_decision;

/* An admitted request's charge, to settle exactly once. Zeroed = none. */
typedef struct aq_sim_rl_ticket {
    uint64_t key_hash;        /* 0 = no ticket */
    uint64_t epoch;           /* a reset in between voids the correction */
    int64_t output_reserved;
} aq_sim_rl_ticket;

/* Counters since the last reset, for /sim/stats. */
typedef struct aq_sim_rl_totals {
    uint64_t limited[AQ_SIM_RL_DIMS]; /* 429s, by the limit that refused */
    uint64_t limited_keys;            /* 429s because of the key cap */
    uint64_t charged_requests;
    uint64_t charged_input_tokens;
    int64_t charged_output_tokens;    /* net of corrections */
    uint64_t keys_tracked;            /* now */
    uint64_t keys_reclaimed;
} aq_sim_rl_totals;

typedef struct aq_sim_ratelimit aq_sim_ratelimit;

/* opts NULL: enforce, AQ_SIM_RL_MAX_KEYS keys. */
aq_status aq_sim_ratelimit_create(const aq_sim_rl_limits *limits, const aq_sim_rl_options *opts,
                                  aq_sim_ratelimit **out, aq_err *err);
/* Enforcing, AQ_SIM_RL_MAX_KEYS keys. */
aq_status aq_sim_ratelimit_new(const aq_sim_rl_limits *limits, aq_sim_ratelimit **out, aq_err *err);
void aq_sim_ratelimit_destroy(aq_sim_ratelimit *rl);

/* Admit or refuse one request of `key` costing 1 request, input_tokens and
 * max_output_tokens (reserved). Counts the request for the key either way.
 * Admitted: *ticket is set. view (may be NULL): the buckets after the decision. */
void aq_sim_ratelimit_admit(aq_sim_ratelimit *rl, const char *key, size_t key_len,
                            int64_t input_tokens, int64_t max_output_tokens, int64_t now_ms,
                            aq_sim_rl_ticket *ticket, aq_sim_rl_decision *decision,
                            aq_sim_rl_state *view);

/* The request of `ticket` ended with output_tokens of output (0 when it
 * failed, was dropped or abandoned): correct the output charge, release the
 * ticket (zeroed). view (may be NULL): the key's buckets after it. A zeroed
 * ticket only fills view with full buckets. */
void aq_sim_ratelimit_settle(aq_sim_ratelimit *rl, aq_sim_rl_ticket *ticket, int64_t output_tokens,
                             int64_t now_ms, aq_sim_rl_state *view);

/* Count one request of `key` that is not charged (invalid, or answered by a
 * fault); view (may be NULL) gets its buckets. */
void aq_sim_ratelimit_observe(aq_sim_ratelimit *rl, const char *key, size_t key_len, int64_t now_ms,
                              aq_sim_rl_state *view);

/* Every key tracked: its id (AQ_SIM_KEY_ID_LEN hex chars) and its request
 * count since the last reset; then "other" (keys reclaimed or refused) if non-zero.
 * fn runs outside the lock (under it only if a copy cannot be allocated). */
typedef void (*aq_sim_rl_key_fn)(const char *key_id, uint64_t requests, void *arg);
void aq_sim_ratelimit_foreach(aq_sim_ratelimit *rl, aq_sim_rl_key_fn fn, void *arg);

void aq_sim_ratelimit_totals(aq_sim_ratelimit *rl, aq_sim_rl_totals *out);
bool aq_sim_ratelimit_enforced(const aq_sim_ratelimit *rl);

/* Refill every bucket, zero every count (keys stay tracked; requests in
 * flight keep their reservation uncorrected). */
void aq_sim_ratelimit_reset(aq_sim_ratelimit *rl);

/* The id shown for a key: first AQ_SIM_KEY_ID_LEN hex chars of its SHA-256. */
void aq_sim_key_id(const char *key, size_t key_len, char out[AQ_SIM_KEY_ID_LEN + 1]);

/* ------------------------------------------------------------- the headers */

/* Token counts in the -remaining headers: rounded to the nearest thousand
 * (halves up), as the API documents. */
int64_t aq_sim_rl_round_thousands(int64_t v);
/* RFC 3339 UTC with seconds, rounded up to the next whole second. */
void aq_sim_rfc3339(int64_t unix_ms, char out[AQ_SIM_RFC3339_SIZE]);
/* Whole seconds to wait for wait_ms: ceil(wait_ms / 1000), at least 1. */
int64_t aq_sim_rl_retry_after_s(int64_t wait_ms);

typedef struct aq_sim_rl_header {
    const char *name;
    char value[32];
} aq_sim_rl_header;

/* The AQ_SIM_RL_N_HEADERS anthropic-ratelimit-* headers for view at now_unix_ms:
 * requests-, input-tokens-, output-tokens- and tokens- (combined: limit =
 * input + output, remaining = rounded sum, reset = the later one), each
 * -limit, -remaining, -reset. */
void aq_sim_rl_headers(const aq_sim_rl_state *view, int64_t now_unix_ms,
                       aq_sim_rl_header out[AQ_SIM_RL_N_HEADERS]);

/* "requests", "input tokens", "output tokens". */
const char *aq_sim_rl_dim_name(aq_sim_rl_dim d);

#endif
