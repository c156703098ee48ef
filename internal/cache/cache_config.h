/* The response cache's bucket options, shared by the worker (which reads and
 * writes the bucket) and `agentq init` (which creates it): one definition, so
 * the two cannot disagree on names or defaults. */
#ifndef AQ_CACHE_CACHE_CONFIG_H
#define AQ_CACHE_CACHE_CONFIG_H

#include <stddef.h>

#include "core/config.h"

#define AQ_CACHE_DEFAULT_BUCKET "agentq-cache"

/* Rows for a struct T with `char *bucket_field` and `int64_t ttl_field`. */
#define AQ_CACHE_BUCKET_OPTIONS(T, bucket_field, ttl_field)                                      \
    {"cache_bucket", "AGENTQ_CACHE_BUCKET", AQ_OPT_BUCKET, AQ_CACHE_DEFAULT_BUCKET, 0, 0,          \
     offsetof(T, bucket_field), "KV bucket of the response cache"},                               \
    {"cache_ttl", "AGENTQ_CACHE_TTL", AQ_OPT_DURATION, "24h", 1000, 2592000000.0,                 \
     offsetof(T, ttl_field), "how long a cached response is kept (the bucket's TTL, set by agentq init)"}

#endif
