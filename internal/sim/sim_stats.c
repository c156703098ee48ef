#include "sim_stats.h"

#include <jansson.h>
#include <limits.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* Statuses the simulator sends, each with its own counter; anything else is "other". */
static const int tracked_status[] = {200, 400, 401, 403, 404, 405, 408, 409, 413, 429, 500, 504, 529};
#define N_TRACKED (sizeof(tracked_status) / sizeof(tracked_status[0]))
#define SLOT_OTHER N_TRACKED

typedef struct thread_counters {
    alignas(64) _Atomic uint64_t requests;
    _Atomic uint64_t by_status[N_TRACKED + 1];
    _Atomic uint64_t dropped, stalled, input_tokens, output_tokens;
    _Atomic uint64_t faults[AQ_SIM_N_FAULTS];
    _Atomic uint64_t tool_use_blocks, tool_result_requests, tool_inputs_spoiled;
} thread_counters;

static const char *const fault_names[AQ_SIM_N_FAULTS] = {"fault_429",         "fault_bad_json",
                                                         "fault_truncated",   "fault_huge",
                                                         "fault_stream_error", "fault_stream_cut"};

struct aq_sim_stats {
    size_t n_threads;
    thread_counters *threads;
    alignas(64) _Atomic int64_t concurrent;
    _Atomic int64_t peak_concurrent;
    alignas(64) _Atomic int64_t connections;
    _Atomic int64_t peak_connections;
};

aq_status aq_sim_stats_new(size_t n_threads, aq_sim_stats **out, aq_err *err)
{
    aq_sim_stats *s = aligned_alloc(64, sizeof(*s));
    thread_counters *t = aligned_alloc(64, n_threads * sizeof(*t));
    if (!s || !t) {
        free(s);
        free(t);
        return aq_err_set(err, AQ_NOMEM, "out of memory for counters");
    }
    s->n_threads = n_threads;
    s->threads = t;
    for (size_t i = 0; i < n_threads; i++) {
        atomic_init(&t[i].requests, 0);
        for (size_t j = 0; j <= N_TRACKED; j++)
            atomic_init(&t[i].by_status[j], 0);
        atomic_init(&t[i].dropped, 0);
        atomic_init(&t[i].stalled, 0);
        atomic_init(&t[i].input_tokens, 0);
        atomic_init(&t[i].output_tokens, 0);
        for (size_t j = 0; j < AQ_SIM_N_FAULTS; j++)
            atomic_init(&t[i].faults[j], 0);
        atomic_init(&t[i].tool_use_blocks, 0);
        atomic_init(&t[i].tool_result_requests, 0);
        atomic_init(&t[i].tool_inputs_spoiled, 0);
    }
    atomic_init(&s->concurrent, 0);
    atomic_init(&s->peak_concurrent, 0);
    atomic_init(&s->connections, 0);
    atomic_init(&s->peak_connections, 0);
    *out = s;
    return AQ_OK;
}

void aq_sim_stats_destroy(aq_sim_stats *s)
{
    if (!s)
        return;
    free(s->threads);
    free(s);
}

static void add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

void aq_sim_stats_request(aq_sim_stats *s, size_t thread)
{
    add(&s->threads[thread].requests, 1);
}

void aq_sim_stats_response(aq_sim_stats *s, size_t thread, int http_status, int64_t input_tokens,
                           int64_t output_tokens)
{
    thread_counters *t = &s->threads[thread];
    size_t slot = SLOT_OTHER;
    for (size_t i = 0; i < N_TRACKED; i++) {
        if (tracked_status[i] == http_status) {
            slot = i;
            break;
        }
    }
    add(&t->by_status[slot], 1);
    if (input_tokens > 0)
        add(&t->input_tokens, (uint64_t)input_tokens);
    if (output_tokens > 0)
        add(&t->output_tokens, (uint64_t)output_tokens);
}

void aq_sim_stats_dropped(aq_sim_stats *s, size_t thread)
{
    add(&s->threads[thread].dropped, 1);
}

void aq_sim_stats_tools(aq_sim_stats *s, size_t thread, uint64_t tool_use_blocks, bool had_tool_result,
                        uint64_t spoiled)
{
    thread_counters *t = &s->threads[thread];
    if (tool_use_blocks)
        add(&t->tool_use_blocks, tool_use_blocks);
    if (had_tool_result)
        add(&t->tool_result_requests, 1);
    if (spoiled)
        add(&t->tool_inputs_spoiled, spoiled);
}

void aq_sim_stats_stalled(aq_sim_stats *s, size_t thread)
{
    add(&s->threads[thread].stalled, 1);
}

void aq_sim_stats_fault(aq_sim_stats *s, size_t thread, aq_sim_fault f)
{
    if (f >= 0 && f < AQ_SIM_N_FAULTS)
        add(&s->threads[thread].faults[f], 1);
}

static void gauge_up(_Atomic int64_t *g, _Atomic int64_t *peak)
{
    int64_t now = atomic_fetch_add_explicit(g, 1, memory_order_relaxed) + 1;
    int64_t p = atomic_load_explicit(peak, memory_order_relaxed);
    while (now > p && !atomic_compare_exchange_weak_explicit(peak, &p, now, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

void aq_sim_stats_begin(aq_sim_stats *s)
{
    gauge_up(&s->concurrent, &s->peak_concurrent);
}

void aq_sim_stats_end(aq_sim_stats *s)
{
    atomic_fetch_sub_explicit(&s->concurrent, 1, memory_order_relaxed);
}

void aq_sim_stats_conn_open(aq_sim_stats *s)
{
    gauge_up(&s->connections, &s->peak_connections);
}

void aq_sim_stats_conn_close(aq_sim_stats *s)
{
    atomic_fetch_sub_explicit(&s->connections, 1, memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

typedef struct stats_snapshot {
    uint64_t requests_total, dropped, stalled, input_tokens_total, output_tokens_total;
    uint64_t faults[AQ_SIM_N_FAULTS];
    uint64_t tool_use_blocks, tool_result_requests, tool_inputs_spoiled;
    int64_t concurrent_requests, peak_concurrent_requests, connections_open, peak_connections;
} stats_snapshot;

static void stats_read(aq_sim_stats *s, stats_snapshot *out)
{
    stats_snapshot v = {0};
    for (size_t i = 0; i < s->n_threads; i++) {
        thread_counters *t = &s->threads[i];
        v.requests_total += get(&t->requests);
        v.dropped += get(&t->dropped);
        v.stalled += get(&t->stalled);
        v.input_tokens_total += get(&t->input_tokens);
        v.output_tokens_total += get(&t->output_tokens);
        for (size_t j = 0; j < AQ_SIM_N_FAULTS; j++)
            v.faults[j] += get(&t->faults[j]);
        v.tool_use_blocks += get(&t->tool_use_blocks);
        v.tool_result_requests += get(&t->tool_result_requests);
        v.tool_inputs_spoiled += get(&t->tool_inputs_spoiled);
    }
    v.concurrent_requests = atomic_load_explicit(&s->concurrent, memory_order_relaxed);
    v.peak_concurrent_requests = atomic_load_explicit(&s->peak_concurrent, memory_order_relaxed);
    v.connections_open = atomic_load_explicit(&s->connections, memory_order_relaxed);
    v.peak_connections = atomic_load_explicit(&s->peak_connections, memory_order_relaxed);
    *out = v;
}

static void add_key(const char *key_id, uint64_t requests, void *arg)
{
    json_object_set_new((json_t *)arg, key_id, json_integer((json_int_t)requests));
}

static json_t *u64(uint64_t v)
{
    return json_integer(v > (uint64_t)LLONG_MAX ? (json_int_t)LLONG_MAX : (json_int_t)v);
}

/* The rate limiter's part: 429s by limit, what was charged, keys. */
static aq_status add_ratelimit(json_t *doc, aq_sim_ratelimit *rl, json_t *by_key, aq_err *err)
{
    aq_sim_rl_totals t;
    json_t *limited = json_object(), *charged = json_object();
    aq_status st = AQ_OK;

    if (!limited || !charged) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    aq_sim_ratelimit_foreach(rl, add_key, by_key);
    aq_sim_ratelimit_totals(rl, &t);
    json_object_set_new(limited, "requests", u64(t.limited[AQ_SIM_RL_REQUESTS]));
    json_object_set_new(limited, "input_tokens", u64(t.limited[AQ_SIM_RL_INPUT_TOKENS]));
    json_object_set_new(limited, "output_tokens", u64(t.limited[AQ_SIM_RL_OUTPUT_TOKENS]));
    json_object_set_new(limited, "keys", u64(t.limited_keys));
    json_object_set_new(charged, "requests", u64(t.charged_requests));
    json_object_set_new(charged, "input_tokens", u64(t.charged_input_tokens));
    json_object_set_new(charged, "output_tokens", json_integer(t.charged_output_tokens));
    json_object_set_new(doc, "rate_limit_enforced", json_boolean(aq_sim_ratelimit_enforced(rl)));
    json_object_set(doc, "rate_limited", limited);
    json_object_set(doc, "charged", charged);
    json_object_set_new(doc, "keys_tracked", u64(t.keys_tracked));
    json_object_set_new(doc, "keys_reclaimed", u64(t.keys_reclaimed));
out:
    json_decref(limited);
    json_decref(charged);
    return st;
}

aq_status aq_sim_stats_json(aq_sim_stats *s, aq_sim_ratelimit *rl, char **out, aq_err *err)
{
    aq_status st = AQ_OK;
    stats_snapshot v;
    json_t *doc = json_object(), *by_status = json_object(), *by_key = json_object();
    char *text = NULL;

    if (!doc || !by_status || !by_key) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    stats_read(s, &v);
    for (size_t j = 0; j <= N_TRACKED; j++) {
        uint64_t n = 0;
        for (size_t i = 0; i < s->n_threads; i++)
            n += get(&s->threads[i].by_status[j]);
        if (!n)
            continue;
        char code[16];
        if (j == SLOT_OTHER)
            snprintf(code, sizeof(code), "other");
        else
            snprintf(code, sizeof(code), "%d", tracked_status[j]);
        json_object_set_new(by_status, code, u64(n));
    }
    json_object_set_new(doc, "requests_total", u64(v.requests_total));
    json_object_set(doc, "by_status", by_status);
    json_object_set_new(doc, "dropped", u64(v.dropped));
    json_object_set_new(doc, "stalled", u64(v.stalled));
    for (size_t j = 0; j < AQ_SIM_N_FAULTS; j++)
        json_object_set_new(doc, fault_names[j], u64(v.faults[j]));
    json_object_set_new(doc, "input_tokens_total", u64(v.input_tokens_total));
    json_object_set_new(doc, "output_tokens_total", u64(v.output_tokens_total));
    json_object_set_new(doc, "tool_use_blocks_total", u64(v.tool_use_blocks));
    json_object_set_new(doc, "tool_result_requests_total", u64(v.tool_result_requests));
    json_object_set_new(doc, "tool_inputs_spoiled_total", u64(v.tool_inputs_spoiled));
    json_object_set_new(doc, "concurrent_requests", json_integer(v.concurrent_requests));
    json_object_set_new(doc, "peak_concurrent_requests", json_integer(v.peak_concurrent_requests));
    json_object_set_new(doc, "connections_open", json_integer(v.connections_open));
    json_object_set_new(doc, "peak_connections", json_integer(v.peak_connections));
    if (rl && (st = add_ratelimit(doc, rl, by_key, err)) != AQ_OK)
        goto out;
    json_object_set(doc, "requests_by_key", by_key);
    text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    *out = text;
out:
    json_decref(by_key);
    json_decref(by_status);
    json_decref(doc);
    return st;
}

void aq_sim_stats_reset(aq_sim_stats *s)
{
    for (size_t i = 0; i < s->n_threads; i++) {
        thread_counters *t = &s->threads[i];
        atomic_store_explicit(&t->requests, 0, memory_order_relaxed);
        for (size_t j = 0; j <= N_TRACKED; j++)
            atomic_store_explicit(&t->by_status[j], 0, memory_order_relaxed);
        atomic_store_explicit(&t->dropped, 0, memory_order_relaxed);
        atomic_store_explicit(&t->stalled, 0, memory_order_relaxed);
        atomic_store_explicit(&t->input_tokens, 0, memory_order_relaxed);
        atomic_store_explicit(&t->output_tokens, 0, memory_order_relaxed);
        for (size_t j = 0; j < AQ_SIM_N_FAULTS; j++)
            atomic_store_explicit(&t->faults[j], 0, memory_order_relaxed);
        atomic_store_explicit(&t->tool_use_blocks, 0, memory_order_relaxed);
        atomic_store_explicit(&t->tool_result_requests, 0, memory_order_relaxed);
        atomic_store_explicit(&t->tool_inputs_spoiled, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&s->peak_concurrent, atomic_load(&s->concurrent), memory_order_relaxed);
    atomic_store_explicit(&s->peak_connections, atomic_load(&s->connections), memory_order_relaxed);
}
