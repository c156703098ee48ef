/* Rate-limit state of the simulator, per API key: what the
 * anthropic-ratelimit-* headers report. Today a fixed one-minute window of
 * counts per key (nothing is refused because of it); the place where real
 * token buckets (refilling continuously, OTPM charged from max_tokens at the
 * start and corrected at the end) will live.
 *
 * Keys are never stored or shown: a slot holds a 64-bit XXH3 of the key for
 * lookup and the first 8 hex characters of its SHA-256 for display.
 * Thread-safe. */
#ifndef AQ_SIM_SIM_RATELIMIT_H
#define AQ_SIM_SIM_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define AQ_SIM_RL_MAX_KEYS 4096      /* distinct keys tracked; more share one "overflow" slot */
#define AQ_SIM_RL_WINDOW_MS 60000
#define AQ_SIM_KEY_ID_LEN 8          /* hex characters of SHA-256 shown for a key */

typedef struct aq_sim_rl_limits {
    int64_t requests_per_min;
    int64_t input_tokens_per_min;
    int64_t output_tokens_per_min;
} aq_sim_rl_limits;

/* What one key has left; token values are rounded to the nearest thousand. */
typedef struct aq_sim_rl_view {
    int64_t requests_limit, requests_remaining;
    int64_t input_limit, input_remaining;
    int64_t output_limit, output_remaining;
    int64_t tokens_limit, tokens_remaining;
    int64_t reset_unix_ms; /* when the window ends and the budget is full again */
} aq_sim_rl_view;

typedef struct aq_sim_ratelimit aq_sim_ratelimit;

aq_status aq_sim_ratelimit_new(const aq_sim_rl_limits *limits, aq_sim_ratelimit **out, aq_err *err);
void aq_sim_ratelimit_destroy(aq_sim_ratelimit *rl);

/* Count one request of `key` with its tokens; fill `view` (may be NULL). */
void aq_sim_ratelimit_charge(aq_sim_ratelimit *rl, const char *key, size_t key_len,
                             int64_t input_tokens, int64_t output_tokens, int64_t now_unix_ms,
                             aq_sim_rl_view *view);

/* Every key seen since start: its id (AQ_SIM_KEY_ID_LEN hex chars, or "overflow")
 * and its request count since the last reset. */
typedef void (*aq_sim_rl_key_fn)(const char *key_id, uint64_t requests, void *arg);
void aq_sim_ratelimit_foreach(aq_sim_ratelimit *rl, aq_sim_rl_key_fn fn, void *arg);

/* Zero every count and window (keys stay known). */
void aq_sim_ratelimit_reset(aq_sim_ratelimit *rl);

/* The id shown for a key: first AQ_SIM_KEY_ID_LEN hex chars of its SHA-256. */
void aq_sim_key_id(const char *key, size_t key_len, char out[AQ_SIM_KEY_ID_LEN + 1]);

#endif
