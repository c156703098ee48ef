#include "metrics_http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The exposition of the worker's families is a few hundred KiB at most
 * (bounded label caps); the buffer keeps its memory between scrapes. */
#define RENDER_CAP AQ_METRICS_EXPOSITION_MAX

struct aq_metrics_http {
    struct evhttp *http;
    aq_metrics *registry;
    aq_metrics_ready_fn ready;
    void *ready_arg;
    int port;
    aq_buf out;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *content_type, const char *body, size_t len)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Type", content_type);
    evhttp_add_header(oh, "Cache-Control", "no-store");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* libevent 2.1 would send the body after a HEAD answer, and the
         * client would read it as the next answer: headers only. */
        char n[24];
        snprintf(n, sizeof(n), "%zu", len);
        evhttp_add_header(oh, "Content-Length", n);
    } else {
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    }
    evhttp_send_reply(req, code, reason, NULL);
}

static void reply_plain(struct evhttp_request *req, int code, const char *reason, const char *body)
{
    reply_text(req, code, reason, "text/plain; charset=utf-8", body, strlen(body));
}

static void serve_metrics(aq_metrics_http *h, struct evhttp_request *req)
{
    aq_err err;
    aq_buf_reset(&h->out);
    if (aq_metrics_render(h->registry, &h->out, &err) != AQ_OK) {
        char body[AQ_ERR_MAX + 2];
        snprintf(body, sizeof(body), "%s\n", err.msg);
        reply_plain(req, 500, "Internal Server Error", body);
        return;
    }
    reply_text(req, 200, "OK", AQ_METRICS_CONTENT_TYPE, h->out.data ? h->out.data : "",
               h->out.len);
    /* A scrape of an unusually large registry should not pin that much
     * memory until the next one. */
    if (h->out.alloc > 4u * 1024 * 1024) {
        aq_buf_free(&h->out);
        aq_buf_init(&h->out, RENDER_CAP);
    }
}

static void serve_ready(aq_metrics_http *h, struct evhttp_request *req)
{
    const char *why = NULL;
    if (!h->ready || h->ready(h->ready_arg, &why)) {
        reply_plain(req, 200, "OK", "ready\n");
        return;
    }
    char body[AQ_METRICS_WHY_MAX + 16];
    snprintf(body, sizeof(body), "not ready: %.*s\n", AQ_METRICS_WHY_MAX,
             why && *why ? why : "unknown");
    reply_plain(req, 503, "Service Unavailable", body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    aq_metrics_http *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!path)
        path = "";
    bool known = strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0 ||
                 strcmp(path, "/readyz") == 0;
    if (!known) {
        reply_plain(req, 404, "Not Found", "not found (try /metrics, /healthz, /readyz)\n");
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_plain(req, 405, "Method Not Allowed", "method not allowed\n");
        return;
    }
    if (strcmp(path, "/metrics") == 0)
        serve_metrics(h, req);
    else if (strcmp(path, "/healthz") == 0)
        reply_plain(req, 200, "OK", "ok\n");
    else
        serve_ready(h, req);
}

aq_status aq_metrics_http_start(struct event_base *base, const aq_metrics_http_opts *opts,
                                aq_metrics_http **out, aq_err *err)
{
    aq_status st = AQ_OK;
    const char *bind = opts->bind && *opts->bind ? opts->bind : "0.0.0.0";
    aq_metrics_http *h = calloc(1, sizeof(*h));
    if (!h)
        return aq_err_set(err, AQ_NOMEM, "metrics server: out of memory");
    h->registry = opts->registry;
    h->ready = opts->ready;
    h->ready_arg = opts->ready_arg;
    aq_buf_init(&h->out, RENDER_CAP);
    if (opts->port < 0 || opts->port > 65535) {
        st = aq_err_set(err, AQ_INVALID_ARG, "metrics server: port %d out of range", opts->port);
        goto out;
    }
    if (!(h->http = evhttp_new(base))) {
        st = aq_err_set(err, AQ_NOMEM, "metrics server: cannot create the HTTP server");
        goto out;
    }
    evhttp_set_max_headers_size(h->http, AQ_METRICS_HTTP_HEADERS_MAX);
    evhttp_set_max_body_size(h->http, AQ_METRICS_HTTP_BODY_MAX);
    evhttp_set_timeout(h->http, AQ_METRICS_HTTP_TIMEOUT_S);
    /* Every method reaches on_request, which answers 405 itself (evhttp
     * would answer 501 for a method it was not told about). */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(h->http, on_request, h);
    errno = 0;
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(h->http, bind, (ev_uint16_t)opts->port);
    if (!bs) {
        int e = errno;
        st = aq_err_set(err, AQ_IO, "cannot listen on %s:%d: %s", bind, opts->port,
                        e ? strerror(e) : "bad address");
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    h->port = opts->port;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *out = h;
    h = NULL;
out:
    aq_metrics_http_destroy(h);
    return st;
}

int aq_metrics_http_port(const aq_metrics_http *h)
{
    return h ? h->port : 0;
}

void aq_metrics_http_destroy(aq_metrics_http *h)
{
    if (!h)
        return;
    if (h->http)
        evhttp_free(h->http);
    aq_buf_free(&h->out);
    free(h);
}
