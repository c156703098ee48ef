#include "sim_random.h"

#include <math.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void aq_sim_rng_seed(aq_sim_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t aq_sim_rng_next(aq_sim_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double aq_sim_rng_uniform(aq_sim_rng *rng)
{
    return (double)(aq_sim_rng_next(rng) >> 11) * 0x1.0p-53;
}

aq_status aq_sim_latency_init(aq_sim_latency *l, const char *dist, int64_t ms, int64_t max_ms,
                              int64_t median_ms, int64_t p99_ms, aq_err *err)
{
    aq_sim_latency v = {.ms = ms, .max_ms = max_ms, .median_ms = median_ms, .p99_ms = p99_ms};
    if (ms < 0 || max_ms < 0 || median_ms < 0 || p99_ms < 0 || ms > AQ_SIM_LATENCY_CAP_MS ||
        max_ms > AQ_SIM_LATENCY_CAP_MS || p99_ms > AQ_SIM_LATENCY_CAP_MS)
        return aq_err_set(err, AQ_CONFIG, "latency values must be in [0, %d] ms", AQ_SIM_LATENCY_CAP_MS);
    if (!dist || !*dist || strcmp(dist, "fixed") == 0) {
        v.kind = AQ_SIM_LATENCY_FIXED;
    } else if (strcmp(dist, "uniform") == 0) {
        v.kind = AQ_SIM_LATENCY_UNIFORM;
        if (max_ms < ms)
            return aq_err_set(err, AQ_CONFIG,
                              "latency_dist=uniform needs latency_max_ms (%lld) >= latency_ms (%lld)",
                              (long long)max_ms, (long long)ms);
    } else if (strcmp(dist, "lognormal") == 0) {
        v.kind = AQ_SIM_LATENCY_LOGNORMAL;
        if (median_ms <= 0 || p99_ms < median_ms)
            return aq_err_set(err, AQ_CONFIG,
                              "latency_dist=lognormal needs 0 < latency_median_ms (%lld) <= latency_p99_ms (%lld)",
                              (long long)median_ms, (long long)p99_ms);
        v.mu = log((double)median_ms);
        v.sigma = log((double)p99_ms / (double)median_ms) / 2.326;
    } else {
        return aq_err_set(err, AQ_CONFIG, "latency_dist: '%s' is not fixed, uniform or lognormal", dist);
    }
    *l = v;
    return AQ_OK;
}

int64_t aq_sim_latency_sample(const aq_sim_latency *l, aq_sim_rng *rng)
{
    double v;
    switch (l->kind) {
    case AQ_SIM_LATENCY_UNIFORM:
        return l->ms + (int64_t)(aq_sim_rng_next(rng) % (uint64_t)(l->max_ms - l->ms + 1));
    case AQ_SIM_LATENCY_LOGNORMAL: {
        /* Box-Muller; u1 in (0, 1] so the log is finite. */
        double u1 = 1.0 - aq_sim_rng_uniform(rng), u2 = aq_sim_rng_uniform(rng);
        double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        v = exp(l->mu + l->sigma * z);
        double cap = l->max_ms > 0 ? (double)l->max_ms : (double)AQ_SIM_LATENCY_CAP_MS;
        if (!(v <= cap))
            v = cap;
        return (int64_t)llround(v);
    }
    case AQ_SIM_LATENCY_FIXED:
    default:
        return l->ms;
    }
}
