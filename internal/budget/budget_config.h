/* The budget bucket's options, shared by the worker (which leases from and
 * writes to the bucket) and `agentq init` (which creates it): one
 * definition, so the two cannot disagree on names or defaults. */
#ifndef AQ_BUDGET_BUDGET_CONFIG_H
#define AQ_BUDGET_BUDGET_CONFIG_H

#include <stddef.h>

#include "core/config.h"

#define AQ_BUDGET_DEFAULT_BUCKET "agentq-budgets"

/* Rows for a struct T with `char *bucket_field` and `int64_t ttl_field`. The
 * TTL is at least a day and an hour: a budget key that expired during its
 * own day would start that day's spending over from zero. */
#define AQ_BUDGET_BUCKET_OPTIONS(T, bucket_field, ttl_field)                                     \
    {"budget_bucket", "AGENTQ_BUDGET_BUCKET", AQ_OPT_BUCKET, AQ_BUDGET_DEFAULT_BUCKET, 0, 0,      \
     offsetof(T, bucket_field),                                                                  \
     "KV bucket of the daily budgets and the fleet's spent figures (agentq init creates it)"},   \
    {"budget_ttl", "AGENTQ_BUDGET_TTL", AQ_OPT_DURATION, "72h", 90000000, 31536000000.0,          \
     offsetof(T, ttl_field),                                                                     \
     "how long a day's budget keys and spent figures are kept (the bucket's TTL, set by agentq init)"}

#endif
