/* The Anthropic Messages API over HTTP: many calls in flight on ONE libevent
 * loop, through curl's multi_socket API (curl tells us which sockets and
 * which timeout to watch; libevent watches them; no thread per request, no
 * polling).
 *
 * Every function here must be called on the loop thread (the thread running
 * the event_base). Completion callbacks run on that thread, from a libevent
 * callback, never from inside aq_llm_call_start.
 *
 * Connections are reused across calls (the multi's connection cache), HTTP/2
 * is negotiated over TLS and calls are multiplexed on it, DNS answers and TLS
 * sessions are shared by every call of a client.
 *
 * Calls are spread over several curl multi handles ("shards"), each with its
 * own connection cache: libcurl 7.88 walks every connection of a multi when
 * it looks for one to reuse and again in curl_multi_remove_handle, which is
 * O(connections) per call and, with HTTP/1.1 and thousands of calls in
 * flight, O(n^2) overall. A call goes to the first shard with fewer than
 * `shard_calls` calls in flight and a new shard opens only when all are that
 * full, so below `shard_calls` there is one multi (HTTP/2 multiplexing and
 * reuse unchanged) and a connection freed in a shard is reused by the next
 * call placed there.
 *
 * The API key is sent in a header and is never copied into an error text, a
 * result or a log: it is redacted from curl's error text and from non-2xx
 * response bodies before they reach the callback.
 */
#ifndef AQ_LLM_CLIENT_H
#define AQ_LLM_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "llm_response.h"

struct event_base;

/* curl_global_init(CURL_GLOBAL_DEFAULT), once per process (safe to call more
 * than once, from any thread; later calls return the first result). The
 * program must call it before it creates threads or the first client:
 * libraries do not initialise process-wide state behind the program's back. */
aq_status aq_llm_global_init(aq_err *err);
/* curl_global_cleanup(), at exit, after every client is destroyed. */
void aq_llm_global_cleanup(void);

#define AQ_LLM_DEFAULT_VERSION "2023-06-01"
#define AQ_LLM_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define AQ_LLM_DEFAULT_TIMEOUT_MS 600000
#define AQ_LLM_DEFAULT_MAX_RESPONSE_BYTES (8u * 1024 * 1024)
#define AQ_LLM_DEFAULT_RECV_BUFFER_BYTES 4096
#define AQ_LLM_DEFAULT_SHARD_CALLS 500
#define AQ_LLM_DEFAULT_IDLE_TIMEOUT_MS 60000
#define AQ_LLM_DEFAULT_STREAM_TIMEOUT_MS 3600000
#define AQ_LLM_MAX_SHARDS 256

typedef struct aq_llm_client_config {
    const char *base_url;          /* "https://api.anthropic.com" or "http://127.0.0.1:8090" */
    const char *anthropic_version; /* NULL: AQ_LLM_DEFAULT_VERSION */
    int64_t connect_timeout_ms;    /* 0: AQ_LLM_DEFAULT_CONNECT_TIMEOUT_MS */
    int64_t timeout_ms;            /* whole call; 0: AQ_LLM_DEFAULT_TIMEOUT_MS */
    size_t max_response_bytes;     /* body cap; 0: AQ_LLM_DEFAULT_MAX_RESPONSE_BYTES */
    long max_connections;          /* connections open at once over all shards (split
                                      between them), 0 = unlimited; the calls beyond
                                      it queue inside curl. Unlimited still keeps up
                                      to shard_calls idle connections per shard, so
                                      a dip in calls in flight closes none. */
    const char *ca_file;           /* optional CA bundle; TLS verification always on */
    long recv_buffer_bytes;        /* curl's per-call receive buffer (1024..524288);
                                      0: AQ_LLM_DEFAULT_RECV_BUFFER_BYTES. Small keeps
                                      per-call memory low with many calls in flight. */
    long shard_calls;              /* calls in flight per curl multi handle before the
                                      next one opens (1..1000000); 0:
                                      AQ_LLM_DEFAULT_SHARD_CALLS. At most
                                      AQ_LLM_MAX_SHARDS open; past that the least
                                      busy takes the call. */
    int64_t idle_timeout_ms;       /* streamed calls: fail (AQ_HTTP_TIMEOUT) after this
                                      long without a byte (pings count), checked to the
                                      second; 0: AQ_LLM_DEFAULT_IDLE_TIMEOUT_MS */
    int64_t stream_timeout_ms;     /* streamed calls: whole call; 0:
                                      AQ_LLM_DEFAULT_STREAM_TIMEOUT_MS */
} aq_llm_client_config;

/* -1 where the header is absent or does not parse. */
typedef struct aq_llm_ratelimit {
    int64_t requests_limit, requests_remaining;
    int64_t input_limit, input_remaining;
    int64_t output_limit, output_remaining;
    int64_t requests_reset_unix_ms, input_reset_unix_ms, output_reset_unix_ms; /* RFC 3339 */
} aq_llm_ratelimit;

typedef struct aq_llm_call_result {
    aq_status transport;     /* AQ_OK when an HTTP response arrived, else AQ_HTTP_TIMEOUT,
                                AQ_HTTP_CONNECT (also other transport failures),
                                AQ_LLM_RESPONSE_TOO_BIG, or AQ_NOMEM (the body could
                                not be stored); all retryable */
    long http_status;        /* 0 when no status line arrived */
    const char *body;        /* NUL-terminated; "" when none. A non-2xx body has the
                                API key redacted (overwritten with '*'). */
    size_t body_len;
    const char *request_id;  /* the request-id header, "" when absent */
    int64_t retry_after_ms;  /* -1 absent; from retry-after-ms, else retry-after
                                (seconds or an HTTP date) */
    aq_llm_ratelimit ratelimit;
    const char *error;       /* transport error text, "" on AQ_OK; never holds the key */
    int64_t latency_us;      /* from aq_llm_call_start to completion */
    unsigned sends;          /* times the request went out: 0 when it never did, 2+ when
                                libcurl re-sent it after a reused connection died (each
                                send but the last then ended without an answer);
                                never more than the call's max_sends */
    /* ---- streamed calls (aq_llm_call_opts.stream) ----
     * A 200 answer with content-type text/event-stream is parsed as it
     * arrives (llm_sse.h) and `body` is "". A stream that fails after the 200
     * ends with http_status 200 and transport set to its status: an error
     * event's class (overloaded_error: AQ_HTTP_OVERLOADED, as a 529),
     * AQ_LLM_STREAM_CUT (closed before message_stop), AQ_LLM_BAD_RESPONSE,
     * AQ_LLM_RESPONSE_TOO_BIG (over a cap), AQ_HTTP_TIMEOUT (idle or whole-call
     * timeout, the message says which). */
    int streamed;            /* 1: the answer came as server-sent events */
    aq_llm_response *response; /* streamed, transport AQ_OK: the parsed answer. The
                                callback may take it (copy *response, then memset it
                                to 0); else it is freed after the callback. NULL
                                otherwise: parse `body` (aq_llm_response_parse). */
    int64_t ttft_us;         /* streamed: start to the first content_block_delta; -1 none */
    double output_tokens_per_s; /* streamed, complete, 2+ deltas: output_tokens over
                                the time from the first delta to the end; 0 otherwise */
} aq_llm_call_result;        /* every pointer is valid only during the callback */

typedef void (*aq_llm_done_fn)(void *ctx, const aq_llm_call_result *res);

typedef struct aq_llm_client aq_llm_client;
typedef struct aq_llm_call aq_llm_call;

/* The client uses `base` (which must outlive it) for every call.
 * AQ_CONFIG for a bad base_url or bound, AQ_NOMEM, AQ_IO when curl refuses. */
aq_status aq_llm_client_new(struct event_base *base, const aq_llm_client_config *cfg,
                            aq_llm_client **out, aq_err *err);

/* POST {base_url}/v1/messages with x-api-key, anthropic-version and
 * content-type: application/json. `body` is borrowed: the caller keeps it
 * alive until `done` runs or the call is cancelled. `timeout_ms` 0 means the
 * configured default. `max_sends` bounds the times the request goes out
 * (0 = no bound beyond libcurl's own): libcurl sends it again by itself when
 * the reused keep-alive connection it went out on closes before any answer,
 * and the provider may have seen every send; once `max_sends` are made, the
 * next is refused and the call ends AQ_HTTP_CONNECT ("... not sent
 * again"). `done` is called exactly once, on the loop thread, from
 * a libevent callback, unless the call is cancelled first; the call handle is
 * freed after `done` returns. `out` may be NULL when the caller never cancels.
 * AQ_INVALID_ARG (empty key or one with control characters, NULL done),
 * AQ_NOMEM, AQ_IO (curl refused the transfer), AQ_SHUTDOWN (the client is
 * being destroyed from a callback); no callback follows a failure. */
aq_status aq_llm_call_start(aq_llm_client *c, const char *api_key, const char *body, size_t len,
                            int64_t timeout_ms, unsigned max_sends, aq_llm_done_fn done, void *ctx,
                            aq_llm_call **out, aq_err *err);

/* Per-call options (aq_llm_call_start_opts). */
typedef struct aq_llm_call_opts {
    int64_t timeout_ms;  /* whole call; 0: the configured timeout_ms, or stream_timeout_ms
                            for a streamed call */
    unsigned max_sends;  /* as aq_llm_call_start's */
    int stream;          /* the body asks for "stream": true: a 200 text/event-stream
                            answer is parsed as it arrives, the idle timeout applies
                            (see aq_llm_call_result) */
} aq_llm_call_opts;

/* aq_llm_call_start with options (`opts` NULL: all 0, the same as
 * aq_llm_call_start with timeout 0 and no max_sends). Same errors. */
aq_status aq_llm_call_start_opts(aq_llm_client *c, const char *api_key, const char *body,
                                 size_t len, const aq_llm_call_opts *opts, aq_llm_done_fn done,
                                 void *ctx, aq_llm_call **out, aq_err *err);

/* Abort a call: no callback afterwards; frees the call. Accepts NULL. Inside
 * the call's own `done` callback it is a no-op (the call is freed after it). */
void aq_llm_call_cancel(aq_llm_call *call);

/* Calls started and not yet completed or cancelled. */
size_t aq_llm_client_in_flight(const aq_llm_client *c);

/* curl multi handles opened so far (they stay open until destroy). */
size_t aq_llm_client_shards(const aq_llm_client *c);

/* Cancels every call (no callbacks), closes connections, frees. Accepts
 * NULL. May be called from inside a `done` callback of this client (the
 * memory is released when that callback returns; no further call starts). */
void aq_llm_client_destroy(aq_llm_client *c);

#endif
