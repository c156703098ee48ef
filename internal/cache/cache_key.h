/* The response cache's decisions: whether a task may be answered from the
 * cache and stored in it, and the key it is filed under.
 *
 * The key is SHA-256 (OpenSSL EVP) over a canonical encoding of everything
 * that changes the answer, and of the tenant unless the operator shares the
 * cache across tenants (cache keys cross tenants and may be attacked: a
 * collision-resistant hash, not XXH3). The encoding (version 1):
 *
 *   field  = tag(1 byte) length(8 bytes, big-endian) bytes(length)
 *   fields, in this order:
 *     'V' "agentq-cache-key/v1"
 *     'S' ""                         when shared across tenants, else
 *     'T' tenant                     (so tenant "" scoped != shared)
 *     'M' model                      the model after routing (or fallback)
 *     'Y' system                     "" when none (the request omits it then)
 *     'N' 8-byte big-endian count of messages, then per message
 *         'R' role  'C' content      the prompt shorthand is one user
 *                                    message: the request body is the same
 *     'X' max_tokens, 4 bytes big-endian (the effective value sent)
 *     'P' ""  when temperature is absent (the API's default, 1.0), else
 *         4 bytes: the IEEE-754 bits of the float, big-endian, -0 read as 0
 *         (distinct floats are distinct decimals in the request body)
 *     'Q' 8-byte count of stop sequences, then 'Z' each, in order (order can
 *         change which sequence a tie reports)
 *   content blocks: a message with blocks adds, after its 'C' (""),
 *     'K' 8-byte count of blocks, then per block its kind and fields:
 *       't' "" 'C' text
 *       'i' "" then the source     'd' "" 'H' title, then the source
 *           source: 'm' media_type 'D' data (raw bytes) 'L' url
 *       'u' "" 'I' id 'A' name 'J' input_json (as sent: a different spelling
 *           of the same JSON is only a miss)
 *       'r' "" 'I' tool_use_id 'E' is_error (1 byte) 'K' count, then its
 *           content blocks the same way
 *   then, only when the task has tools (the request's "tools"):
 *     'U' 8-byte count of tools, then per tool 'A' name 'G' description
 *         'J' input_schema_json
 *     'O' when the request sends tool_choice: 4-byte type, 'A' name,
 *         'W' disable_parallel_tool_use (1 byte)
 *
 * Every variable part is length-prefixed, so no two different requests have
 * the same encoding (system "ab" + prompt "c" differs from system "a" +
 * prompt "bc"). Content blocks and tools are encoded only when a task has
 * them, with tags no older encoding holds: a task without them keeps its v1
 * key (the cache survives the upgrade) and no task with them shares a key
 * with one without. Other fields added to the request later (top_p, ...) are
 * appended with new tags the same way, or the version is bumped when the
 * meaning of an existing field changes.
 *
 * Left out on purpose, because the model's answer does not depend on them:
 * max_steps, max_tool_calls, ceiling_action and session_id (they shape a run,
 * not one answer: an agent run keys each step by its own conversation),
 * the prompt-caching mark (cache_control only changes billing and latency:
 * the model sees the same tokens), metadata.user_id (the tenant is scoped
 * separately above), the task's metadata map (never sent), ids, deadlines
 * and timestamps.
 */
#ifndef AQ_CACHE_CACHE_KEY_H
#define AQ_CACHE_CACHE_KEY_H

#include <stdbool.h>
#include <stdint.h>

#include "agentq/v1/task.pb-c.h"
#include "core/status.h"
#include "llm/llm_request.h"

#define AQ_CACHE_KEY_HEX 64 /* lowercase hex characters of a key (a valid KV key) */
#define AQ_CACHE_KEY_VERSION "agentq-cache-key/v1"

/* What the cache may do for one task. */
typedef struct aq_cache_plan {
    bool read;  /* look the key up; a hit answers the task */
    bool write; /* store the answer under the key */
} aq_cache_plan;

/* A request is deterministic when it sets temperature and it is 0. */
bool aq_cache_deterministic(const Agentq__V1__Task *task);

/* By the task's cache_policy:
 *   default (UNSPECIFIED): read and write when deterministic, else neither
 *   OPT_IN:                read and write
 *   BYPASS:                neither
 *   REFRESH:               write only (call the model, overwrite the entry)
 * An unknown policy (a task that was not validated) gets neither. */
aq_cache_plan aq_cache_plan_for(const Agentq__V1__Task *task);

/* The key of `task` answered by `model` with `max_tokens` (the effective
 * value, after the worker's default), scoped to task->tenant unless
 * `share_tenants`. `out` gets AQ_CACHE_KEY_HEX lowercase hex characters and
 * a NUL, only on success. AQ_INVALID_ARG for a NULL task, an empty model or
 * max_tokens 0; AQ_NOMEM when OpenSSL fails. */
aq_status aq_cache_key(const Agentq__V1__Task *task, const char *model, uint32_t max_tokens,
                       bool share_tenants, char out[AQ_CACHE_KEY_HEX + 1], aq_err *err);

/* The key of any request's pieces (an agent run's step: its conversation so
 * far), scoped to parts->user_id (the tenant) unless `share_tenants`. The
 * same key as aq_cache_key for a task's own pieces. */
aq_status aq_cache_key_parts(const aq_llm_request_parts *parts, bool share_tenants,
                             char out[AQ_CACHE_KEY_HEX + 1], aq_err *err);

#endif
