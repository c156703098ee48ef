#include "worker_config.h"

#include "budget/budget.h"
#include "budget/budget_config.h"
#include "cache/cache_config.h"
#include "core/list.h"
#include "cost/cost.h"
#include "fleet/fleet_snapshot.h"
#include "ratelimit/ratelimit.h"
#include "route/route.h"

#include <stddef.h>
#include <string.h>

#define W aq_worker_config
#define KNOWN_MODELS                                                                       \
    "claude-haiku-4-5,claude-sonnet-4-5,claude-sonnet-4-6,claude-opus-4-5,claude-opus-4-6," \
    "claude-opus-4-7,claude-opus-4-8"

const aq_option aq_worker_options[] = {
    AQ_QUEUE_OPTIONS(W, queue),
    {"api_key", "ANTHROPIC_API_KEY", AQ_OPT_SECRET, "", 0, 0, offsetof(W, api_key),
     "Anthropic API key(s), comma-separated"},
    /* URLS, not STRING: --print-config must not show a user:password@ given
     * here by mistake (the client refuses it at start, after the print). */
    {"base_url", "AGENTQ_BASE_URL", AQ_OPT_URLS, "https://api.anthropic.com", 0, 0,
     offsetof(W, base_url), "Messages API base URL (the simulator or a proxy can stand in)"},
    {"anthropic_version", "AGENTQ_ANTHROPIC_VERSION", AQ_OPT_STRING, "2023-06-01", 0, 0,
     offsetof(W, anthropic_version), "anthropic-version header"},
    {"ca_file", "AGENTQ_CA_FILE", AQ_OPT_STRING, "", 0, 0, offsetof(W, ca_file),
     "CA bundle for the provider's TLS (default: the system's; verification is always on)"},
    {"default_model", "AGENTQ_DEFAULT_MODEL", AQ_OPT_STRING, "claude-sonnet-4-5", 0, 0,
     offsetof(W, default_model), "model for tasks that name none"},
    {"allowed_models", "AGENTQ_ALLOWED_MODELS", AQ_OPT_STRING, KNOWN_MODELS, 0, 0,
     offsetof(W, allowed_models), "models tasks may name, comma-separated (empty: any)"},
    {"rate_limits", "AGENTQ_RATE_LIMITS", AQ_OPT_STRING, "", 0, 0, offsetof(W, rate_limits),
     "per-minute limits of each API key by model class, e.g. sonnet:rpm=4000,itpm=2000000,otpm=400000;haiku:rpm=4000 (empty or 0: learned from the response headers)"},
    {"routes", "AGENTQ_ROUTES", AQ_OPT_STRING, "", 0, 0, offsetof(W, routes),
     "ordered routing rules for tasks that name no model, first match wins, e.g. cheap: type=classify|extract, max_tokens<=512 -> claude-haiku-4-5; long: input_tokens>=50000 -> claude-sonnet-4-5 (empty: default_model)"},
    {"fallback_model", "AGENTQ_FALLBACK_MODEL", AQ_OPT_STRING, "", 0, 0, offsetof(W, fallback_model),
     "model that answers instead when the chosen one is overloaded (529) and the task sets allow_fallback (empty: none)"},
    {"prices", "AGENTQ_PRICES", AQ_OPT_STRING, "", 0, 0, offsetof(W, prices),
     "model prices over the built-in table, USD per million tokens, e.g. claude-haiku-4-5: in=1, out=5, cache_write=1.25, cache_read=0.1; my-model: in=2, out=8 (cache prices default to 1.25x and 0.1x in)"},
    {"prompt_cache_min_tokens", "AGENTQ_PROMPT_CACHE_MIN_TOKENS", AQ_OPT_INT, "0", 0, 1000000,
     offsetof(W, prompt_cache_min_tokens),
     "mark system prompts of at least this many estimated tokens (bytes/4) with cache_control, so repeats bill at the cache-read price; 0 = off"},
    AQ_CACHE_BUCKET_OPTIONS(W, cache_bucket, cache_ttl_ms),
    {"cache_share_tenants", "AGENTQ_CACHE_SHARE_TENANTS", AQ_OPT_BOOL, "false", 0, 0,
     offsetof(W, cache_share_tenants),
     "one response cache for all tenants (default: a tenant only sees its own cached answers)"},
    {"budgets", "AGENTQ_BUDGETS", AQ_OPT_STRING, "", 0, 0, offsetof(W, budgets),
     "daily spending budgets in USD per UTC day, per tenant and optionally per tenant/type, shared by the fleet, e.g. acme=25,globex=5;acme/summarize=2 (empty: none; the fleet's cost today is still recorded per tenant)"},
    {"budget_action", "AGENTQ_BUDGET_ACTION", AQ_OPT_STRING, "defer", 0, 0,
     offsetof(W, budget_action),
     "a task whose tenant's budget is spent: defer (parked in the deferred stream until the budget day resets at 00:00 UTC or the budget is raised) or fail (dead-lettered with class budget_exceeded)"},
    AQ_BUDGET_BUCKET_OPTIONS(W, budget_bucket, budget_ttl_ms),
    {"budget_flush", "AGENTQ_BUDGET_FLUSH", AQ_OPT_DURATION, "2s", 100, 60000,
     offsetof(W, budget_flush_ms), "how often this worker writes its spent figures and tidies its budget leases"},
    {"budget_idle_return", "AGENTQ_BUDGET_IDLE_RETURN", AQ_OPT_DURATION, "10s", 100, 3600000,
     offsetof(W, budget_idle_return_ms), "a budget lease unused this long is given back to the fleet"},
    {"budget_kv_timeout", "AGENTQ_BUDGET_KV_TIMEOUT", AQ_OPT_DURATION, "2s", 100, 60000,
     offsetof(W, budget_kv_timeout_ms), "one round trip to the budget bucket"},
    {"default_max_tokens", "AGENTQ_DEFAULT_MAX_TOKENS", AQ_OPT_INT, "1024", 1, 1000000,
     offsetof(W, default_max_tokens), "max_tokens for tasks that set none"},
    {"llm_connect_timeout", "AGENTQ_LLM_CONNECT_TIMEOUT", AQ_OPT_DURATION, "10s", 100, 600000,
     offsetof(W, llm_connect_timeout_ms), "timeout to connect to the provider"},
    {"llm_timeout", "AGENTQ_LLM_TIMEOUT", AQ_OPT_DURATION, "10m", 1000, 3600000,
     offsetof(W, llm_timeout_ms), "longest one provider call may take (each call gets 60 s + 50 ms per max_tokens, up to this)"},
    {"llm_shard_calls", "AGENTQ_LLM_SHARD_CALLS", AQ_OPT_INT, "500", 1, 1000000,
     offsetof(W, llm_shard_calls),
     "provider calls per curl multi handle before another opens (libcurl 7.88 walks every connection of a handle on each call)"},
    {"max_response_bytes", "AGENTQ_MAX_RESPONSE_BYTES", AQ_OPT_BYTES, "8MiB", 1024, 1073741824,
     offsetof(W, max_response_bytes), "largest provider response accepted"},
    {"max_prompt_bytes", "AGENTQ_MAX_PROMPT_BYTES", AQ_OPT_BYTES, "1MiB", 16, 33554432,
     offsetof(W, max_prompt_bytes), "largest prompt (system + prompt + messages) accepted"},
    {"max_tokens_cap", "AGENTQ_MAX_TOKENS_CAP", AQ_OPT_INT, "64000", 1, 1000000,
     offsetof(W, max_tokens_cap), "largest max_tokens a task may ask for"},
    {"concurrency", "AGENTQ_CONCURRENCY", AQ_OPT_INT, "256", 1, 100000, offsetof(W, concurrency),
     "tasks owned by this worker at once (LLM calls in flight at most)"},
    {"fetch_batch", "AGENTQ_FETCH_BATCH", AQ_OPT_INT, "256", 1, 10000, offsetof(W, fetch_batch),
     "largest single fetch from the consumer"},
    {"fetch_wait", "AGENTQ_FETCH_WAIT", AQ_OPT_DURATION, "500ms", 10, 60000,
     offsetof(W, fetch_wait_ms), "how long one fetch waits for tasks"},
    {"max_attempts", "AGENTQ_MAX_ATTEMPTS", AQ_OPT_INT, "5", 1, 1000, offsetof(W, max_attempts),
     "calls of a task that may fail (5xx, timeout, connection) before it is dead-lettered; 429/529 do not count"},
    {"retry_base", "AGENTQ_RETRY_BASE", AQ_OPT_DURATION, "1s", 1, 3600000,
     offsetof(W, retry_base_ms), "first retry delay (doubles per attempt, with jitter)"},
    {"retry_max", "AGENTQ_RETRY_MAX", AQ_OPT_DURATION, "60s", 1, 86400000,
     offsetof(W, retry_max_ms), "longest retry delay"},
    {"store_timeout", "AGENTQ_STORE_TIMEOUT", AQ_OPT_DURATION, "10s", 100, 600000,
     offsetof(W, store_timeout_ms), "wait for a result or dead-letter write to be acknowledged"},
    {"shutdown_grace", "AGENTQ_SHUTDOWN_GRACE", AQ_OPT_DURATION, "30s", 0, 86400000,
     offsetof(W, shutdown_grace_ms), "on SIGTERM, how long in-flight calls may finish"},
    {"worker_name", "AGENTQ_WORKER_NAME", AQ_OPT_STRING, "", 0, 0, offsetof(W, worker_name),
     "name recorded in results (default: hostname-pid)"},
    {"log_level", "AGENTQ_LOG_LEVEL", AQ_OPT_STRING, "info", 0, 0, offsetof(W, log_level),
     "debug, info, warn or error"},
    {"metrics_port", "AGENTQ_METRICS_PORT", AQ_OPT_INT, "9090", 0, 65535,
     offsetof(W, metrics_port), "port of /metrics, /healthz and /readyz (0: off)"},
    {"metrics_bind", "AGENTQ_METRICS_BIND", AQ_OPT_STRING, "0.0.0.0", 0, 0,
     offsetof(W, metrics_bind), "address the metrics port listens on"},
    {"metrics_max_tenants", "AGENTQ_METRICS_MAX_TENANTS", AQ_OPT_INT, "100", 1, 100000,
     offsetof(W, metrics_max_tenants),
     "distinct tenant label values in metrics; more are folded into tenant=\"_other\""},
    {"status_subject", "AGENTQ_STATUS_SUBJECT", AQ_OPT_STRING, AQ_FLEET_DEFAULT_SUBJECT, 0, 0,
     offsetof(W, status_subject),
     "subject prefix of the fleet status snapshots (<prefix>.<worker>, read by agentq status)"},
    {"status_interval", "AGENTQ_STATUS_INTERVAL", AQ_OPT_DURATION, AQ_FLEET_DEFAULT_INTERVAL,
     1000, 3600000,
     offsetof(W, status_interval_ms),
     "how often the worker publishes a fleet status snapshot (set agentq status to the same)"},
    AQ_OPTIONS_END,
};

aq_status aq_worker_config_validate(const aq_worker_config *cfg, aq_err *err)
{
    if (cfg->retry_base_ms > cfg->retry_max_ms)
        return aq_err_set(err, AQ_CONFIG, "retry_base (%lldms) is larger than retry_max (%lldms)",
                          (long long)cfg->retry_base_ms, (long long)cfg->retry_max_ms);
    if (cfg->default_max_tokens > cfg->max_tokens_cap)
        return aq_err_set(err, AQ_CONFIG, "default_max_tokens (%lld) is over max_tokens_cap (%lld)",
                          (long long)cfg->default_max_tokens, (long long)cfg->max_tokens_cap);
    if (strncmp(cfg->base_url, "http://", 7) != 0 && strncmp(cfg->base_url, "https://", 8) != 0)
        return aq_err_set(err, AQ_CONFIG, "base_url must start with http:// or https://");
    aq_list models;
    aq_status st = aq_list_split(cfg->allowed_models, "allowed_models", AQ_WORKER_MAX_MODELS,
                                 &models, err);
    if (st != AQ_OK)
        return st;
    bool refused = models.n > 0 && !aq_list_contains(&models, cfg->default_model);
    aq_list_free(&models);
    if (refused)
        return aq_err_set(err, AQ_CONFIG,
                          "default_model \"%s\" is not in allowed_models: every task without a "
                          "model would be refused",
                          cfg->default_model);
    aq_rl_limits limits;
    if ((st = aq_rl_limits_parse(cfg->rate_limits, &limits, err)) != AQ_OK)
        return aq_err_prefix(err, "rate_limits");
    aq_cost_table *prices = NULL;
    if ((st = aq_cost_table_parse(cfg->prices, &prices, err)) != AQ_OK)
        return aq_err_prefix(err, "prices");
    aq_cost_table_destroy(prices);
    aq_route *router = NULL;
    aq_route_config rc = {cfg->routes, cfg->default_model, cfg->allowed_models, cfg->fallback_model};
    if ((st = aq_route_new(&rc, &router, err)) != AQ_OK)
        return aq_err_prefix(err, "routes");
    aq_route_destroy(router);
    /* The same check as `agentq status`: a prefix that one of them refuses
     * would leave the screen empty without an error. */
    if (!aq_fleet_prefix_valid(cfg->status_subject))
        return aq_err_set(err, AQ_CONFIG,
                          "status_subject '%.*s' is not a subject prefix (dot-separated tokens, "
                          "no wildcards or spaces, at most %d bytes)",
                          AQ_FLEET_PREFIX_MAX, cfg->status_subject ? cfg->status_subject : "",
                          AQ_FLEET_PREFIX_MAX);
    aq_budget_spec *spec = NULL;
    if ((st = aq_budget_spec_parse(cfg->budgets, &spec, err)) != AQ_OK)
        return st; /* the message names budgets and the entry */
    aq_budget_spec_free(spec);
    aq_budget_action action;
    if ((st = aq_budget_action_parse(cfg->budget_action, &action, err)) != AQ_OK)
        return aq_err_set(err, AQ_CONFIG, "budget_action: '%s' is not defer or fail",
                          cfg->budget_action ? cfg->budget_action : "");
    if (!cfg->api_key || !*cfg->api_key)
        return aq_err_set(err, AQ_CONFIG,
                          "no API key: set ANTHROPIC_API_KEY (or --api_key, or api_key in the "
                          "config file)");
    return AQ_OK;
}
