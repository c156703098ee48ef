/* agentq-sim: an Anthropic-compatible HTTP simulator (POST /v1/messages) for
 * tests, demos and load tests. N worker threads, each with its own libevent
 * loop and evhttp, share one port through SO_REUSEPORT sockets.
 *
 * Routes: POST /v1/messages (also "stream": true: server-sent events, see
 * sim_stream.h), POST /v1/messages/count_tokens, GET /v1/models,
 * GET /v1/models/{id}, GET /sim/stats, POST /sim/reset, GET /healthz.
 * The answer is a pure function of the request (see sim_request.h); latency,
 * faults and the per-key rate limits (sim_ratelimit.h) are configured by the
 * options below. */
#ifndef AQ_SIM_SIM_H
#define AQ_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/status.h"

#define AQ_SIM_MAX_THREADS 256

/* Filled by aq_config_load(aq_sim_options, ...); freed by aq_config_free. */
typedef struct aq_sim_config {
    char *listen;              /* host:port; port 0 = any free port */
    int64_t threads;           /* 0 = one per CPU */
    char *latency_dist;        /* fixed | uniform | lognormal */
    int64_t latency;           /* ms; shorthand for the fixed latency when latency_ms is 0 */
    int64_t latency_ms;        /* fixed value / uniform minimum */
    int64_t latency_max_ms;    /* uniform maximum; lognormal clamp */
    int64_t latency_median_ms; /* lognormal */
    int64_t latency_p99_ms;    /* lognormal */
    char *output_tokens;       /* "40" or "20-200" */
    double fault_429, fault_500, fault_504, fault_529, fault_drop, fault_stall;
    double fault_bad_json, fault_truncated, fault_huge; /* 200s with a bad body */
    int64_t tool_steps;        /* tool_use steps before end_turn (tool_choice auto) */
    int64_t tool_parallel;     /* tool_use blocks per step */
    bool tool_text;            /* a text block before the tool_use blocks */
    double fault_tool_schema;  /* share of tool inputs made to violate their schema */
    int64_t stall_max;         /* ms a stalled request is held at most */
    int64_t huge_bytes;        /* fault_huge answers have a text longer than this */
    int64_t retry_after;       /* seconds, on fault_429 and 529 answers */
    int64_t stream_tokens_per_second; /* streamed answers' pace; 0 = as fast as possible */
    int64_t stream_ping_interval;     /* ms between ping events; 0 = only the first */
    double fault_stream_error;        /* share of streams ended by an error event halfway */
    double fault_stream_cut;          /* share of streams whose connection is closed halfway */
    char *api_versions;        /* comma-separated anthropic-version values accepted */
    char *keys;                /* comma-separated accepted API keys; empty = any */
    char *models;              /* comma-separated known model ids; empty = any */
    int64_t max_body_bytes;
    int64_t max_tokens_cap;
    int64_t rl_requests;       /* per minute and API key, enforced and reported */
    int64_t rl_input_tokens;
    int64_t rl_output_tokens;
    bool rl_enforce;           /* false: only reported in anthropic-ratelimit-* */
    int64_t seed;
    char *log_level;
    char *port_file;           /* written with the chosen port once listening */
} aq_sim_config;

extern const aq_option aq_sim_options[];

typedef struct aq_sim_server aq_sim_server;

/* Validate cfg (copied; cfg may be freed afterwards) and bind the listening
 * sockets; nothing runs until aq_sim_server_start. */
aq_status aq_sim_server_new(const aq_sim_config *cfg, aq_sim_server **out, aq_err *err);
/* The bound port (the chosen one when the config said 0) and thread count. */
int aq_sim_server_port(const aq_sim_server *srv);
int aq_sim_server_threads(const aq_sim_server *srv);
/* Start the worker threads; returns once they run. */
aq_status aq_sim_server_start(aq_sim_server *srv, aq_err *err);
/* Stop accepting, close every connection, join the threads. Idempotent. */
void aq_sim_server_stop(aq_sim_server *srv);
/* Stops first if needed. Accepts NULL. */
void aq_sim_server_destroy(aq_sim_server *srv);

/* Raise RLIMIT_NOFILE's soft limit to the hard limit; *limit gets the result. */
aq_status aq_sim_raise_nofile(uint64_t *limit, aq_err *err);

#endif
