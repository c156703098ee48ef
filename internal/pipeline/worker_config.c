#include "worker_config.h"

#include "budget/budget.h"
#include "budget/budget_config.h"
#include "cache/cache_config.h"
#include "core/list.h"
#include "core/log.h"
#include "core/text.h"
#include "cost/cost.h"
#include "agent/agent_config.h"
#include "fleet/fleet_snapshot.h"
#include "ratelimit/ratelimit.h"
#include "route/route.h"
#include "tool/tool_config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <string.h>

/* The name main.c puts in results and logs (it keeps 127 bytes). */
#define AQ_WORKER_NAME_MAX 127


/* A header value: printable ASCII without spaces (the API key and the
 * anthropic-version header; libcurl would send a CR or LF as it is). */
static bool header_token_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return false;
    return true;
}

static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < ' ' || *p == 0x7f)
            return true;
    return false;
}

/* The characters route.c allows in a model id. */
static bool model_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > AQ_ROUTE_MODEL_MAX)
        return false;
    for (const unsigned char *p = (const unsigned char *)m; *p; p++)
        if (!(isalnum(*p) || strchr("_-.@/:", *p)))
            return false;
    return true;
}

/* A numeric IPv4 or IPv6 address, or a host name of letters, digits, '-'
 * and '.' (what getaddrinfo resolves when the metrics port binds). */
static bool bind_address_ok(const char *s)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1)
        return true;
    size_t n = strlen(s);
    if (n == 0 || n > 253 || s[0] == '-' || s[0] == '.')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (!(isalnum(*p) || *p == '-' || *p == '.'))
            return false;
    return true;
}

static aq_status check_lists(const aq_worker_config *cfg, aq_err *err)
{
    aq_list l;
    aq_status st = aq_list_split(cfg->api_key, "api_key", AQ_WORKER_MAX_API_KEYS, &l, err);
    if (st != AQ_OK)
        return st;
    for (size_t i = 0; i < l.n && st == AQ_OK; i++)
        if (!header_token_ok(l.items[i], 1024)) /* never echoed: a secret */
            st = aq_err_set(err, AQ_CONFIG,
                            "api_key: key %zu of %zu has a space or a control or non-ASCII "
                            "character, or is over 1024 bytes",
                            i + 1, l.n);
    aq_list_free(&l);
    if (st != AQ_OK)
        return st;
    if ((st = aq_list_split(cfg->allowed_models, "allowed_models", AQ_WORKER_MAX_MODELS, &l,
                            err)) != AQ_OK)
        return st;
    for (size_t i = 0; i < l.n && st == AQ_OK; i++)
        if (!model_ok(l.items[i]))
            st = aq_err_set(err, AQ_CONFIG,
                            "allowed_models: '%.*s' is not a model id (1-%d of "
                            "[A-Za-z0-9._@/:-])",
                            AQ_ROUTE_MODEL_MAX, l.items[i], AQ_ROUTE_MODEL_MAX);
    bool refused = st == AQ_OK && l.n > 0 && !aq_list_contains(&l, cfg->default_model);
    aq_list_free(&l);
    if (refused)
        return aq_err_set(err, AQ_CONFIG,
                          "default_model \"%s\" is not in allowed_models: every task without a "
                          "model would be refused",
                          cfg->default_model);
    return st;
}

aq_status aq_worker_config_check(const aq_worker_config *cfg, aq_err *err)
{
    aq_status st;
    if ((st = aq_config_check(aq_worker_options, cfg, err)) != AQ_OK ||
        (st = aq_queue_config_validate(&cfg->queue, err)) != AQ_OK)
        return st;
    if (cfg->retry_base_ms > cfg->retry_max_ms)
        return aq_err_set(err, AQ_CONFIG, "retry_base (%lldms) is larger than retry_max (%lldms)",
                          (long long)cfg->retry_base_ms, (long long)cfg->retry_max_ms);
    if (cfg->default_max_tokens > cfg->max_tokens_cap)
        return aq_err_set(err, AQ_CONFIG, "default_max_tokens (%lld) is over max_tokens_cap (%lld)",
                          (long long)cfg->default_max_tokens, (long long)cfg->max_tokens_cap);
    if (!header_token_ok(cfg->anthropic_version, 64))
        return aq_err_set(err, AQ_CONFIG,
                          "anthropic_version: '%.64s' is not a header value (1-64 printable "
                          "characters, no spaces)",
                          cfg->anthropic_version);
    if ((st = check_lists(cfg, err)) != AQ_OK)
        return st;
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
    /* Snapshots published under the task or dead-letter prefix would be
     * stored in that stream. */
    if (aq_queue_subjects_overlap(cfg->status_subject, cfg->queue.task_subjects) ||
        aq_queue_subjects_overlap(cfg->status_subject, cfg->queue.dlq_subjects))
        return aq_err_set(err, AQ_CONFIG,
                          "status_subject '%s' overlaps task_subjects '%s' or dlq_subjects '%s': "
                          "status snapshots would be stored in the stream",
                          cfg->status_subject, cfg->queue.task_subjects, cfg->queue.dlq_subjects);
    aq_budget_spec *spec = NULL;
    if ((st = aq_budget_spec_parse(cfg->budgets, &spec, err)) != AQ_OK)
        return st; /* the message names budgets and the entry */
    aq_budget_spec_free(spec);
    aq_budget_action action;
    if ((st = aq_budget_action_parse(cfg->budget_action, &action, err)) != AQ_OK)
        return aq_err_set(err, AQ_CONFIG, "budget_action: '%s' is not defer or fail",
                          cfg->budget_action ? cfg->budget_action : "");
    bool final;
    if (!aq_agent_ceiling_action_parse(cfg->agent_ceiling_action, &final))
        return aq_err_set(err, AQ_CONFIG, "agent_ceiling_action: '%s' is not fail or final",
                          cfg->agent_ceiling_action ? cfg->agent_ceiling_action : "");
    if (cfg->agent_max_steps > cfg->agent_max_steps_cap ||
        cfg->agent_max_tool_calls > cfg->agent_max_tool_calls_cap)
        return aq_err_set(err, AQ_CONFIG,
                          "agent_max_steps (%lld) and agent_max_tool_calls (%lld) must not exceed "
                          "agent_max_steps_cap (%lld) and agent_max_tool_calls_cap (%lld)",
                          (long long)cfg->agent_max_steps, (long long)cfg->agent_max_tool_calls,
                          (long long)cfg->agent_max_steps_cap,
                          (long long)cfg->agent_max_tool_calls_cap);
    aq_log_level level;
    if (aq_log_level_parse(cfg->log_level, &level) != AQ_OK)
        return aq_err_set(err, AQ_CONFIG, "log_level: '%s' is not debug, info, warn or error",
                          cfg->log_level ? cfg->log_level : "");
    if (!bind_address_ok(cfg->metrics_bind))
        return aq_err_set(err, AQ_CONFIG,
                          "metrics_bind: '%.253s' is not an IP address or a host name",
                          cfg->metrics_bind);
    if (cfg->worker_name && (strlen(cfg->worker_name) > AQ_WORKER_NAME_MAX ||
                             !aq_utf8_valid(cfg->worker_name, strlen(cfg->worker_name)) ||
                             has_control(cfg->worker_name)))
        return aq_err_set(err, AQ_CONFIG,
                          "worker_name: not a name (at most %d bytes of UTF-8, no control "
                          "characters)",
                          AQ_WORKER_NAME_MAX);
    return AQ_OK;
}

aq_status aq_worker_config_validate(const aq_worker_config *cfg, aq_err *err)
{
    aq_status st;
    if ((st = aq_worker_config_check(cfg, err)) != AQ_OK)
        return st;
    if (!cfg->api_key || !*cfg->api_key)
        return aq_err_set(err, AQ_CONFIG,
                          "no API key: set ANTHROPIC_API_KEY (or --api_key, or api_key in the "
                          "config file)");
    return aq_config_check_files(aq_worker_options, cfg, err);
}
