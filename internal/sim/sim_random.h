/* Fast per-thread randomness for fault injection and latency (xoshiro256**,
 * seeded through splitmix64), and the latency distributions. Not for
 * anything adversarial. */
#ifndef AQ_SIM_SIM_RANDOM_H
#define AQ_SIM_SIM_RANDOM_H

#include <stdint.h>

#include "core/status.h"

#define AQ_SIM_LATENCY_CAP_MS 3600000 /* no sampled latency exceeds one hour */

typedef struct aq_sim_rng {
    uint64_t s[4];
} aq_sim_rng;

void aq_sim_rng_seed(aq_sim_rng *rng, uint64_t seed);
uint64_t aq_sim_rng_next(aq_sim_rng *rng);
/* Uniform in [0, 1). */
double aq_sim_rng_uniform(aq_sim_rng *rng);

typedef enum aq_sim_latency_kind {
    AQ_SIM_LATENCY_FIXED,
    AQ_SIM_LATENCY_UNIFORM,
    AQ_SIM_LATENCY_LOGNORMAL,
} aq_sim_latency_kind;

typedef struct aq_sim_latency {
    aq_sim_latency_kind kind;
    int64_t ms;        /* fixed value; uniform minimum */
    int64_t max_ms;    /* uniform maximum; lognormal clamp when > 0 */
    int64_t median_ms; /* lognormal */
    int64_t p99_ms;    /* lognormal */
    double mu, sigma;  /* lognormal: ln(median), ln(p99/median)/2.326 */
} aq_sim_latency;

/* dist: "fixed", "uniform" or "lognormal". Checks the parameters. */
aq_status aq_sim_latency_init(aq_sim_latency *l, const char *dist, int64_t ms, int64_t max_ms,
                              int64_t median_ms, int64_t p99_ms, aq_err *err);
/* Milliseconds, in [0, AQ_SIM_LATENCY_CAP_MS]. */
int64_t aq_sim_latency_sample(const aq_sim_latency *l, aq_sim_rng *rng);

#endif
