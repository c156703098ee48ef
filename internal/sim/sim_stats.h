/* Counters behind GET /sim/stats. Per-thread blocks (one cache line each,
 * written by their own thread with relaxed atomics) summed on read; the few
 * process-wide gauges (concurrency, connections and their peaks) are shared
 * atomics. Thread-safe. */
#ifndef AQ_SIM_SIM_STATS_H
#define AQ_SIM_SIM_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "sim_ratelimit.h"

typedef struct aq_sim_stats aq_sim_stats;

aq_status aq_sim_stats_new(size_t n_threads, aq_sim_stats **out, aq_err *err);
void aq_sim_stats_destroy(aq_sim_stats *s);

/* A POST /v1/messages arrived (requests_total). */
void aq_sim_stats_request(aq_sim_stats *s, size_t thread);
/* A response was sent with this status; tokens only for 200s. */
void aq_sim_stats_response(aq_sim_stats *s, size_t thread, int http_status, int64_t input_tokens,
                           int64_t output_tokens);
void aq_sim_stats_dropped(aq_sim_stats *s, size_t thread);
/* Answers chosen by a fault share (besides drop and stall). */
typedef enum aq_sim_fault {
    AQ_SIM_FAULT_429,       /* fault_429: a random 429, not an enforced limit */
    AQ_SIM_FAULT_BAD_JSON,  /* a 200 whose body is not JSON */
    AQ_SIM_FAULT_TRUNCATED, /* a 200 whose JSON body is cut short */
    AQ_SIM_FAULT_HUGE,      /* a 200 with a text longer than huge_bytes */
    AQ_SIM_FAULT_STREAM_ERROR, /* a stream ended halfway by an error event */
    AQ_SIM_FAULT_STREAM_CUT,   /* a stream whose connection was closed halfway */
    AQ_SIM_N_FAULTS,
} aq_sim_fault;
void aq_sim_stats_fault(aq_sim_stats *s, size_t thread, aq_sim_fault f);
/* A proper 200 answered these tool_use blocks (of which `spoiled` had an
 * input made to violate its schema by fault_tool_schema); had_tool_result:
 * the request carried at least one tool_result block. */
void aq_sim_stats_tools(aq_sim_stats *s, size_t thread, uint64_t tool_use_blocks, bool had_tool_result,
                        uint64_t spoiled);
void aq_sim_stats_stalled(aq_sim_stats *s, size_t thread);
/* Requests in flight (validated, not yet answered or given up). */
void aq_sim_stats_begin(aq_sim_stats *s);
void aq_sim_stats_end(aq_sim_stats *s);
void aq_sim_stats_conn_open(aq_sim_stats *s);
void aq_sim_stats_conn_close(aq_sim_stats *s);

/* The /sim/stats document (caller frees); rl (may be NULL) adds the requests
 * per key id and the rate-limit counters. */
aq_status aq_sim_stats_json(aq_sim_stats *s, aq_sim_ratelimit *rl, char **out, aq_err *err);
/* Zero the counters; peaks restart from the current gauges. */
void aq_sim_stats_reset(aq_sim_stats *s);

#endif
