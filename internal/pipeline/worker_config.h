/* The worker's configuration: one declarative table (worker_options.c) and
 * its checks (worker_config.c). */
#ifndef AQ_PIPELINE_WORKER_CONFIG_H
#define AQ_PIPELINE_WORKER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "queue/queue_config.h"
#include "tool/tool_config.h"

typedef struct aq_worker_config {
    aq_queue_config queue;
    /* provider */
    char *api_key;            /* secret; comma-separated for several keys */
    char *base_url;
    char *anthropic_version;
    char *ca_file;
    char *default_model;
    char *allowed_models;     /* comma-separated; empty allows any model */
    char *rate_limits;        /* per model class, internal/ratelimit grammar; empty: learned */
    char *routes;             /* routing rules, internal/route grammar; empty: default_model */
    char *fallback_model;     /* answers after a 529 when the task allows; empty: none */
    char *prices;             /* over the built-in price table, internal/cost grammar */
    int64_t prompt_cache_min_tokens; /* mark system prompts this long with cache_control; 0 off */
    /* response cache */
    char *cache_bucket;
    int64_t cache_ttl_ms;
    bool cache_share_tenants;
    /* daily spending budgets (internal/budget) */
    char *budgets;            /* internal/budget grammar; empty: none (spent is still kept) */
    char *budget_action;      /* "defer" or "fail" */
    char *budget_bucket;
    int64_t budget_ttl_ms;    /* the bucket's TTL: agentq init sets it; accepted here so one
                                 config serves both (the chart passes it to the init Job) */
    int64_t budget_flush_ms;
    int64_t budget_idle_return_ms;
    int64_t budget_kv_timeout_ms;
    int64_t default_max_tokens;
    int64_t llm_connect_timeout_ms;
    int64_t llm_timeout_ms;
    int64_t llm_idle_timeout_ms;       /* streamed calls: no byte for this long */
    int64_t llm_stream_timeout_ms;     /* streamed calls: whole call */
    int64_t llm_stream_min_max_tokens; /* stream calls with max_tokens >= this (0: all) */
    int64_t llm_shard_calls;
    int64_t max_response_bytes;
    /* task caps */
    int64_t max_prompt_bytes;
    int64_t max_media_bytes;
    int64_t max_tokens_cap;
    int64_t agent_max_tools;
    int64_t agent_max_steps_cap;
    int64_t agent_max_tool_calls_cap;
    /* agent runs (internal/agent) */
    char *runs_bucket;
    int64_t runs_ttl_ms;      /* the bucket's TTL: agentq init sets it */
    int64_t runs_max_bytes;   /* largest checkpoint */
    int64_t agent_max_steps;  /* defaults of tasks that set none */
    int64_t agent_max_tool_calls;
    char *agent_ceiling_action; /* "fail" or "final" */
    bool agent_prompt_cache;    /* cache_control breakpoints on agent steps */
    int64_t agent_max_runs;   /* runs in flight before the fetcher pauses; 0: no bound */
    /* sessions (internal/session) */
    char *session_bucket;
    int64_t session_ttl_ms;   /* the bucket's TTL: agentq init sets it */
    int64_t session_max_bytes;
    int64_t session_context_tokens;
    int64_t session_lease_ttl_ms;
    /* flow */
    int64_t concurrency;
    int64_t fetch_batch;
    int64_t fetch_wait_ms;
    int64_t max_attempts;
    int64_t retry_base_ms;
    int64_t retry_max_ms;
    int64_t store_timeout_ms;
    int64_t shutdown_grace_ms;
    /* agent runs' tool calls (internal/tool) */
    aq_tool_config tool;
    /* identity and logs */
    char *worker_name;
    char *log_level;
    /* observability: /metrics, /healthz, /readyz */
    int64_t metrics_port;        /* 0: no HTTP server */
    char *metrics_bind;
    int64_t metrics_max_tenants; /* tenant label values before "_other" */
    /* fleet status: snapshots on <status_subject>.<worker> (agentq status) */
    char *status_subject;
    int64_t status_interval_ms;
} aq_worker_config;

/* Caps on the comma-separated lists. */
#define AQ_WORKER_MAX_API_KEYS 64
#define AQ_WORKER_MAX_MODELS 64

extern const aq_option aq_worker_options[];

/* Every value checked (each row's syntax and bounds again, then what one row
 * cannot express: the mini-languages, the queue's cross-checks, models, log
 * level...), without touching the file system or the network: what
 * --print-config checks. */
aq_status aq_worker_config_check(const aq_worker_config *cfg, aq_err *err);
/* aq_worker_config_check, then what the start needs besides: an API key, and
 * the files named (ca_file, nats_creds, nats_tls_*) readable. Before any
 * connection. */
aq_status aq_worker_config_validate(const aq_worker_config *cfg, aq_err *err);

#endif
