/* The worker's observability endpoints on one evhttp server, served by the
 * loop that owns the registry (so a scrape reads the metrics on their own
 * thread, without locks):
 *
 *   GET /metrics   the registry in the text exposition format 0.0.4
 *   GET /healthz   200 "ok": answered by the event loop, so an answer at all
 *                  means the loop is alive
 *   GET /readyz    200 "ready", or 503 "not ready: <why>" from the callback
 *
 * HEAD is answered like GET (without a body); other methods get 405 with
 * Allow, other paths 404. Requests are small: headers and bodies are capped
 * and a slow client is dropped after a timeout. */
#ifndef AQ_METRICS_HTTP_H
#define AQ_METRICS_HTTP_H

#include <stdbool.h>

#include "core/status.h"
#include "metrics/metrics.h"

struct event_base;

#define AQ_METRICS_HTTP_HEADERS_MAX 8192 /* bytes of request line + headers */
#define AQ_METRICS_HTTP_BODY_MAX 1024    /* bytes of a request body (none is expected) */
#define AQ_METRICS_HTTP_TIMEOUT_S 10     /* to read a request / write a response */
#define AQ_METRICS_WHY_MAX 200           /* bytes of a readiness reason */

/* Readiness, asked on the loop thread for every /readyz. Return true when
 * ready; otherwise set *why (static or owned by the callee, short, no
 * secrets) to say what is missing. */
typedef bool (*aq_metrics_ready_fn)(void *arg, const char **why);

typedef struct aq_metrics_http_opts {
    const char *bind;          /* address to listen on; NULL: "0.0.0.0" */
    int port;                  /* 1..65535; 0: any free port (see aq_metrics_http_port) */
    aq_metrics *registry;      /* not owned; must outlive the server */
    aq_metrics_ready_fn ready; /* NULL: always ready */
    void *ready_arg;
} aq_metrics_http_opts;

typedef struct aq_metrics_http aq_metrics_http;

/* Bind and start serving on `base` (requests are handled when the loop
 * runs). A bind failure is AQ_IO naming the address and port. */
aq_status aq_metrics_http_start(struct event_base *base, const aq_metrics_http_opts *opts,
                                aq_metrics_http **out, aq_err *err);
/* The port actually bound (the chosen one when opts.port was 0). */
int aq_metrics_http_port(const aq_metrics_http *h);
/* Stop listening and free; connections still open are closed. Call on the
 * loop thread (or after the loop has exited). Accepts NULL. */
void aq_metrics_http_destroy(aq_metrics_http *h);

#endif
