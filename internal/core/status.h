/* One status type for the whole project, defined once.
 *
 * Every fallible function returns an aq_status. The X-macro table gives each
 * status its enum name, its stable class name (the string that appears in
 * Results, DLQ headers, logs and metrics), how the settle stage disposes of a
 * task that ended with it, and a short description.
 *
 * Only the settle stage turns a status into ack / retry / dead-letter, and it
 * does so through aq_status_disposition(): no other code decides that.
 */
#ifndef AQ_CORE_STATUS_H
#define AQ_CORE_STATUS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum aq_disposition {
    AQ_DISP_NONE = 0,  /* success: nothing to dispose of */
    AQ_DISP_DEFER,     /* provider asked us to wait (429, 529): no failure budget used */
    AQ_DISP_RETRY,     /* transient failure: retry with backoff, bounded attempts */
    AQ_DISP_PERMANENT, /* will never succeed: dead-letter at once */
} aq_disposition;

/*    name                 class                  disposition          description */
#define AQ_STATUS_MAP(X)                                                                     \
    X(OK,                  "ok",                  AQ_DISP_NONE,        "success")            \
    X(NOMEM,               "out_of_memory",       AQ_DISP_RETRY,       "out of memory")      \
    X(INVALID_ARG,         "invalid_argument",    AQ_DISP_PERMANENT,   "invalid argument")   \
    X(CONFIG,              "bad_config",          AQ_DISP_PERMANENT,   "bad configuration")  \
    X(IO,                  "io_error",            AQ_DISP_RETRY,       "I/O error")          \
    X(TOO_BIG,             "too_large",           AQ_DISP_PERMANENT,   "over a size cap")    \
    X(NOT_FOUND,           "not_found",           AQ_DISP_PERMANENT,   "not found")          \
    X(TIMEOUT,             "timeout",             AQ_DISP_RETRY,       "timed out")          \
    X(NATS,                "nats_error",          AQ_DISP_RETRY,       "NATS error")         \
    X(NATS_CONNECT,        "nats_connect",        AQ_DISP_RETRY,       "cannot connect to NATS") \
    X(SHUTDOWN,            "shutdown",            AQ_DISP_RETRY,       "shutting down")      \
    X(WRITE_CONFLICT,      "write_conflict",      AQ_DISP_RETRY,       "stored state changed under a compare-and-set write") \
    /* task input */                                                                         \
    X(TASK_DECODE,         "undecodable_task",    AQ_DISP_PERMANENT,   "task does not decode as agentq.v1.Task") \
    X(TASK_INVALID,        "invalid_task",        AQ_DISP_PERMANENT,   "task is invalid")    \
    X(PROMPT_TOO_LARGE,    "prompt_too_large",    AQ_DISP_PERMANENT,   "prompt over the size cap") \
    X(MODEL_NOT_ALLOWED,   "model_not_allowed",   AQ_DISP_PERMANENT,   "unknown or disallowed model") \
    X(EXPIRED,             "expired",             AQ_DISP_PERMANENT,   "task deadline passed") \
    X(OVER_BUDGET,         "budget_exceeded",     AQ_DISP_PERMANENT,   "the tenant's daily budget is spent") \
    X(STEP_LIMIT,          "step_limit",          AQ_DISP_PERMANENT,   "an agent run reached max_steps, max_tool_calls or its deadline") \
    X(TOOL_FAILED,         "tool_failed",         AQ_DISP_PERMANENT,   "a tool call of an agent run failed permanently") \
    X(SESSION_BUSY,        "session_busy",        AQ_DISP_DEFER,       "another task of the session is running") \
    X(MAX_DELIVERIES,      "max_deliveries",      AQ_DISP_PERMANENT,   "delivered MaxDeliver times without being settled (crashes a worker?)") \
    /* provider answers */                                                                   \
    X(HTTP_RATE_LIMITED,   "rate_limited",        AQ_DISP_DEFER,       "provider rate limit (429)") \
    X(HTTP_OVERLOADED,     "overloaded",          AQ_DISP_DEFER,       "provider overloaded (529)") \
    X(HTTP_SERVER_ERROR,   "server_error",        AQ_DISP_RETRY,       "provider server error (5xx)") \
    X(HTTP_CONFLICT,       "conflict",            AQ_DISP_RETRY,       "provider conflict (409)") \
    X(HTTP_TIMEOUT,        "llm_timeout",         AQ_DISP_RETRY,       "provider call timed out") \
    X(HTTP_CONNECT,        "connection_error",    AQ_DISP_RETRY,       "cannot reach the provider") \
    X(HTTP_BAD_REQUEST,    "http_400",            AQ_DISP_PERMANENT,   "provider rejected the request (400)") \
    X(HTTP_UNAUTHORIZED,   "http_401",            AQ_DISP_PERMANENT,   "provider rejected the API key (401)") \
    X(HTTP_BILLING,        "http_402",            AQ_DISP_PERMANENT,   "provider billing error (402)") \
    X(HTTP_FORBIDDEN,      "http_403",            AQ_DISP_PERMANENT,   "provider denied permission (403)") \
    X(HTTP_NOT_FOUND,      "http_404",            AQ_DISP_PERMANENT,   "provider does not know the model or path (404)") \
    X(HTTP_TOO_LARGE,      "http_413",            AQ_DISP_PERMANENT,   "provider refused the request size (413)") \
    X(HTTP_UNEXPECTED,     "http_unexpected",     AQ_DISP_PERMANENT,   "unexpected provider status") \
    X(LLM_BAD_RESPONSE,    "bad_response",        AQ_DISP_RETRY,       "provider response does not parse") \
    X(LLM_RESPONSE_TOO_BIG,"response_too_large",  AQ_DISP_RETRY,       "provider response over the size cap") \
    X(LLM_STREAM_CUT,      "stream_cut",          AQ_DISP_RETRY,       "provider stream ended before message_stop")

typedef enum aq_status {
#define AQ_X_ENUM(name, cls, disp, desc) AQ_##name,
    AQ_STATUS_MAP(AQ_X_ENUM)
#undef AQ_X_ENUM
    AQ__STATUS_COUNT
} aq_status;

/* The stable class name, e.g. "rate_limited". Never NULL. */
const char *aq_status_class(aq_status st);
/* A short human description. Never NULL. */
const char *aq_status_text(aq_status st);
aq_disposition aq_status_disposition(aq_status st);

/* The error buffer that travels with a status (curl's CURLOPT_ERRORBUFFER
 * idea): libraries fill it, callers log it. Never holds a secret. */
#define AQ_ERR_MAX 512
typedef struct aq_err {
    aq_status status;
    char msg[AQ_ERR_MAX];
} aq_err;

/* Fill `err` (may be NULL) and return `st`, so a failure path reads
 *   return aq_err_set(err, AQ_TOO_BIG, "prompt is %zu bytes, cap %zu", n, cap);
 */
aq_status aq_err_set(aq_err *err, aq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix an existing message: "context: previous message". */
aq_status aq_err_prefix(aq_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void aq_err_clear(aq_err *err);

#endif
