#include "sim_ratelimit.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct rl_slot {
    alignas(64) _Atomic uint64_t tag; /* 0 = free, else XXH3(key) | 1 */
    _Atomic int ready;                /* key_id is filled */
    char key_id[AQ_SIM_KEY_ID_LEN + 1];
    _Atomic uint64_t requests;        /* since the last reset, for /sim/stats */
    pthread_mutex_t lock;             /* guards the window */
    int64_t window_start_ms;
    int64_t win_requests, win_input, win_output;
} rl_slot;

struct aq_sim_ratelimit {
    aq_sim_rl_limits limits;
    rl_slot slots[AQ_SIM_RL_MAX_KEYS];
    rl_slot overflow;
};

void aq_sim_key_id(const char *key, size_t key_len, char out[AQ_SIM_KEY_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(key, key_len, md, &md_len, EVP_sha256(), NULL) || md_len < AQ_SIM_KEY_ID_LEN / 2) {
        memcpy(out, "unknown!", AQ_SIM_KEY_ID_LEN);
    } else {
        for (int i = 0; i < AQ_SIM_KEY_ID_LEN / 2; i++) {
            out[2 * i] = hex[md[i] >> 4];
            out[2 * i + 1] = hex[md[i] & 15];
        }
    }
    out[AQ_SIM_KEY_ID_LEN] = '\0';
}

static void slot_init(rl_slot *s)
{
    atomic_init(&s->tag, 0);
    atomic_init(&s->ready, 0);
    atomic_init(&s->requests, 0);
    pthread_mutex_init(&s->lock, NULL);
    s->key_id[0] = '\0';
    s->window_start_ms = 0;
    s->win_requests = s->win_input = s->win_output = 0;
}

aq_status aq_sim_ratelimit_new(const aq_sim_rl_limits *limits, aq_sim_ratelimit **out, aq_err *err)
{
    aq_sim_ratelimit *rl = aligned_alloc(64, sizeof(*rl));
    if (!rl)
        return aq_err_set(err, AQ_NOMEM, "out of memory for rate-limit state");
    rl->limits = *limits;
    for (size_t i = 0; i < AQ_SIM_RL_MAX_KEYS; i++)
        slot_init(&rl->slots[i]);
    slot_init(&rl->overflow);
    memcpy(rl->overflow.key_id, "overflow", 9);
    atomic_store(&rl->overflow.tag, 1);
    atomic_store(&rl->overflow.ready, 1);
    *out = rl;
    return AQ_OK;
}

void aq_sim_ratelimit_destroy(aq_sim_ratelimit *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < AQ_SIM_RL_MAX_KEYS; i++)
        pthread_mutex_destroy(&rl->slots[i].lock);
    pthread_mutex_destroy(&rl->overflow.lock);
    free(rl);
}

static rl_slot *find_slot(aq_sim_ratelimit *rl, const char *key, size_t key_len)
{
    uint64_t h = XXH3_64bits(key, key_len) | 1;
    for (size_t probe = 0; probe < AQ_SIM_RL_MAX_KEYS; probe++) {
        rl_slot *s = &rl->slots[(h + probe) & (AQ_SIM_RL_MAX_KEYS - 1)];
        uint64_t t = atomic_load_explicit(&s->tag, memory_order_acquire);
        if (t == 0) {
            uint64_t expect = 0;
            if (atomic_compare_exchange_strong(&s->tag, &expect, h)) {
                aq_sim_key_id(key, key_len, s->key_id);
                atomic_store_explicit(&s->ready, 1, memory_order_release);
                return s;
            }
            t = expect;
        }
        if (t == h)
            return s;
    }
    return &rl->overflow;
}

static int64_t remaining(int64_t limit, int64_t used, int round)
{
    int64_t r = limit - used;
    if (r < 0)
        r = 0;
    if (round)
        r = (r + 500) / 1000 * 1000;
    return r;
}

void aq_sim_ratelimit_charge(aq_sim_ratelimit *rl, const char *key, size_t key_len,
                             int64_t input_tokens, int64_t output_tokens, int64_t now_unix_ms,
                             aq_sim_rl_view *view)
{
    rl_slot *s = find_slot(rl, key, key_len);
    int64_t req, in, outp, start;

    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->lock);
    if (now_unix_ms - s->window_start_ms >= AQ_SIM_RL_WINDOW_MS || now_unix_ms < s->window_start_ms) {
        s->window_start_ms = now_unix_ms;
        s->win_requests = s->win_input = s->win_output = 0;
    }
    req = ++s->win_requests;
    in = (s->win_input += input_tokens);
    outp = (s->win_output += output_tokens);
    start = s->window_start_ms;
    pthread_mutex_unlock(&s->lock);

    if (!view)
        return;
    const aq_sim_rl_limits *l = &rl->limits;
    view->requests_limit = l->requests_per_min;
    view->requests_remaining = remaining(l->requests_per_min, req, 0);
    view->input_limit = l->input_tokens_per_min;
    view->input_remaining = remaining(l->input_tokens_per_min, in, 1);
    view->output_limit = l->output_tokens_per_min;
    view->output_remaining = remaining(l->output_tokens_per_min, outp, 1);
    view->tokens_limit = l->input_tokens_per_min + l->output_tokens_per_min;
    view->tokens_remaining = remaining(view->tokens_limit, in + outp, 1);
    view->reset_unix_ms = start + AQ_SIM_RL_WINDOW_MS;
}

void aq_sim_ratelimit_foreach(aq_sim_ratelimit *rl, aq_sim_rl_key_fn fn, void *arg)
{
    for (size_t i = 0; i < AQ_SIM_RL_MAX_KEYS; i++) {
        rl_slot *s = &rl->slots[i];
        if (atomic_load_explicit(&s->ready, memory_order_acquire))
            fn(s->key_id, atomic_load_explicit(&s->requests, memory_order_relaxed), arg);
    }
    uint64_t n = atomic_load_explicit(&rl->overflow.requests, memory_order_relaxed);
    if (n)
        fn(rl->overflow.key_id, n, arg);
}

static void slot_reset(rl_slot *s)
{
    atomic_store_explicit(&s->requests, 0, memory_order_relaxed);
    pthread_mutex_lock(&s->lock);
    s->window_start_ms = 0;
    s->win_requests = s->win_input = s->win_output = 0;
    pthread_mutex_unlock(&s->lock);
}

void aq_sim_ratelimit_reset(aq_sim_ratelimit *rl)
{
    for (size_t i = 0; i < AQ_SIM_RL_MAX_KEYS; i++)
        if (atomic_load_explicit(&rl->slots[i].tag, memory_order_acquire))
            slot_reset(&rl->slots[i]);
    slot_reset(&rl->overflow);
}
