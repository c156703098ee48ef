/* Model routing: which model answers a task.
 *
 *   1. The task names a model: that model, if the allowlist (allowed_models)
 *      has it or is empty; else AQ_MODEL_NOT_ALLOWED (permanent). Rule
 *      "explicit".
 *   2. Otherwise the first routing rule whose conditions all hold. Rule: its
 *      name.
 *   3. Otherwise the default model. Rule "default".
 *
 * A fallback model (optional) stands in when the chosen model is overloaded
 * (HTTP 529) and the task allows it (Task.allow_fallback).
 *
 * Pure logic: no I/O, no logging. A router is immutable after aq_route_new
 * and may be used from any thread.
 */
#ifndef AQ_ROUTE_ROUTE_H
#define AQ_ROUTE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define AQ_ROUTE_MAX_RULES 64
#define AQ_ROUTE_NAME_MAX 64            /* characters of a rule name */
#define AQ_ROUTE_MODEL_MAX 128          /* characters of a model id */
#define AQ_ROUTE_PATTERN_MAX 128        /* characters of one type/tenant pattern */
#define AQ_ROUTE_MAX_PATTERNS 16        /* alternatives in one type= or tenant= condition */
#define AQ_ROUTE_RULES_MAX_LEN 8192     /* characters of a routes string */
#define AQ_ROUTE_MAX_ALLOWED 64         /* models in allowed_models (as the worker's cap) */
#define AQ_ROUTE_MAX_TOKENS_VALUE 100000000LL /* bound of a token threshold */
#define AQ_ROUTE_MAX_STEP_VALUE 100000LL        /* bound of a step threshold (agent_max_steps_cap's) */

/* Rule names the router reports that a configured rule may not take. */
#define AQ_ROUTE_RULE_EXPLICIT "explicit"
#define AQ_ROUTE_RULE_DEFAULT "default"

/* ---- The rules ---- */

typedef struct aq_route_rules aq_route_rules;

/* Parse a routes string. Grammar (spaces and tabs allowed around every token):
 *
 *   routes  = "" | rule *( ";" rule )
 *   rule    = name ":" [ cond *( "," cond ) ] "->" model
 *   name    = 1..64 of [A-Za-z0-9_-], unique, not "explicit" or "default"
 *   cond    = ( "type" | "tenant" ) "=" pattern *( "|" pattern )
 *           | ( "input_tokens" | "max_tokens" ) ( "<=" | ">=" ) digits
 *           | "step" ( "=" | "<=" | ">=" ) digits      (digits >= 1)
 *   pattern = 1..128 characters other than blanks and , ; | = ; "*" matches
 *             any run of characters (also none); everything else is literal
 *   model   = 1..128 of [A-Za-z0-9._@/:-]
 *
 * e.g. "cheap: type=classify|extract, max_tokens<=512 -> claude-haiku-4-5;
 *       long: input_tokens>=50000 -> claude-sonnet-4-5;
 *       acme: tenant=acme-* -> claude-opus-4-5"
 *
 * A rule matches when every condition holds: the task type (tenant) matches
 * one of the patterns, the estimated input tokens (max_tokens: the task's,
 * or the worker's default when it sets none) are <= or >= the number, the
 * model step (1-based: a single call is step 1, an agent run's steps are
 * 1, 2, ...) is = (exactly), <= or >= the number. A rule
 * without conditions matches every task (a catch-all); a rule after it could
 * never match and is an error. A field may have one condition, or for the
 * numbers one "<=" and one ">=" (a range, which must not be empty; step=N is
 * the range N..N and takes no other step condition). At most
 * AQ_ROUTE_MAX_RULES rules; at most AQ_ROUTE_RULES_MAX_LEN characters.
 * NULL or blank: no rules.
 *
 * Errors are AQ_CONFIG and name the rule (its number and name) and the
 * column (1-based, in the whole string) of the offending part, e.g.
 *   "routes: rule 1 'cheap', column 21: max_tokens<=abc: 'abc' is not a whole number"
 * `out` is written only on success. */
aq_status aq_route_rules_parse(const char *s, aq_route_rules **out, aq_err *err);
void aq_route_rules_destroy(aq_route_rules *rules); /* accepts NULL */
size_t aq_route_rules_count(const aq_route_rules *rules);

/* What the rules look at. */
typedef struct aq_route_task {
    const char *type;     /* NULL reads as "" */
    const char *tenant;   /* NULL reads as "" */
    const char *model;    /* the task's model: NULL or "" lets the router choose */
    int64_t input_tokens; /* estimate: aq_llm_task_input_tokens (llm/llm_request.h) */
    int64_t max_tokens;   /* effective: the task's, or the worker's default */
    int64_t step;         /* 1-based model step of an agent run; 0 reads as 1 (a single call) */
} aq_route_task;

/* The first matching rule: its index, or -1 when none matches. */
int aq_route_rules_match(const aq_route_rules *rules, const aq_route_task *task);
/* Name and target model of rule `i` (NULL past the end). */
const char *aq_route_rule_name(const aq_route_rules *rules, size_t i);
const char *aq_route_rule_model(const aq_route_rules *rules, size_t i);

/* ---- The router ---- */

typedef struct aq_route_config {
    const char *rules;          /* routes string (above); NULL or "" = none */
    const char *default_model;  /* required */
    const char *allowed_models; /* comma-separated models tasks may name; NULL or "" = any */
    const char *fallback_model; /* NULL or "" = no fallback */
} aq_route_config;

typedef struct aq_route aq_route;

/* AQ_CONFIG for bad rules, an empty or malformed default or fallback model,
 * or a bad allowed_models list; AQ_NOMEM. `out` is written only on success. */
aq_status aq_route_new(const aq_route_config *cfg, aq_route **out, aq_err *err);
void aq_route_destroy(aq_route *r); /* accepts NULL */

typedef struct aq_route_choice {
    const char *model; /* the task's own string (explicit) or the router's (valid while it lives) */
    const char *rule;  /* a rule name, AQ_ROUTE_RULE_EXPLICIT or AQ_ROUTE_RULE_DEFAULT */
} aq_route_choice;

/* Choose the model (see the top of this file). AQ_MODEL_NOT_ALLOWED (the
 * message names the model, cut to AQ_ROUTE_MODEL_MAX characters) when the
 * task names a model the allowlist does not have. `out` is written only on
 * success. */
aq_status aq_route_choose(const aq_route *r, const aq_route_task *task, aq_route_choice *out,
                          aq_err *err);

/* The model to use instead of `model` after a 529: the fallback model when
 * one is configured, the task allows it and it is not `model` itself; else
 * NULL (keep deferring as usual). */
const char *aq_route_fallback(const aq_route *r, const char *model, bool task_allows);

#endif
