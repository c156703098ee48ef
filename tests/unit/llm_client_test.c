/* The LLM client against a real HTTP server: a libevent evhttp server on
 * 127.0.0.1:<ephemeral> in the same event_base as the client. The request
 * body names what the server does ("ok", "429", "hang", ...). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "llm/llm_client.h"
#include "llm/llm_response.h"

/* Split so that secret scanners do not flag this fake key. */
#define KEY "sk-ant-" "api03-TESTKEY-do-not-leak-0123456789"

/* ---- the server ---------------------------------------------------------- */

typedef struct server {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int requests;
    int key_mismatches;
    unsigned char peer_ports[65536 / 8]; /* client ports seen: one per connection */
    int connections;
    char last_key[128];
    char last_version[64];
    char last_ctype[64];
    char last_path[64];
    char last_method[8];
    void *stalled; /* an "sse-stall" answer, held until server_stop */
} server;

static const char OK_BODY[] =
    "{\"id\":\"msg_test\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-test\","
    "\"content\":[{\"type\":\"text\",\"text\":\"pong\"}],\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}";

static void copy_hdr(char *dst, size_t n, struct evkeyvalq *h, const char *name)
{
    const char *v = evhttp_find_header(h, name);
    snprintf(dst, n, "%s", v ? v : "");
}

static void reply(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "content-type", "application/json");
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static void drop_connection(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evhttp_connection_free(arg);
}

/* ---- streamed answers: "sse-<kind>" bodies ----
 * A 200 text/event-stream answer sent one piece every 20 ms (pieces cut
 * mid-event), then: "sse-ok" ends it, "sse-error" sends an overloaded_error
 * event, "sse-cut" closes the connection before message_stop, "sse-stall"
 * stops after message_start and holds the connection. */
#define SEV(name, json) "event: " name "\ndata: " json "\n\n"
static const char *const SSE_PIECES[] = {
    SEV("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"model\":"
                         "\"claude-test\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}")
    SEV("ping", "{\"type\":\"ping\"}") "event: content_block_start\ndata: {\"type\":",
    "\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    SEV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                               "\"text_delta\",\"text\":\"Hello\"}}"),
    SEV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                               "\"text_delta\",\"text\":\" world\"}}") "event: content_bl",
    "ock_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n"
    SEV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
                         "\"usage\":{\"output_tokens\":2}}")
    SEV("message_stop", "{\"type\":\"message_stop\"}"),
};
#define N_SSE_PIECES (sizeof(SSE_PIECES) / sizeof(SSE_PIECES[0]))

typedef struct sse_job {
    server *s;
    struct evhttp_request *req;
    struct event *timer;
    char kind[128];
    size_t next;
} sse_job;

static void sse_send(struct evhttp_request *req, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    evhttp_send_reply_chunk(req, b);
    evbuffer_free(b);
}

static void sse_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sse_job *j = arg;
    size_t i = j->next++;
    int last = 0;
    if (strcmp(j->kind, "stall") == 0 && i == 1) {
        j->s->stalled = j; /* the connection stays open, silent */
        return;
    }
    if (strcmp(j->kind, "error") == 0 && i == 2) {
        sse_send(j->req, SEV("error", "{\"type\":\"error\",\"error\":{\"type\":"
                                      "\"overloaded_error\",\"message\":\"Overloaded\"}}"));
        evhttp_send_reply_end(j->req);
        last = 1;
    } else if (strcmp(j->kind, "cut") == 0 && i == 2) {
        evhttp_connection_free(evhttp_request_get_connection(j->req));
        last = 1;
    } else {
        sse_send(j->req, SSE_PIECES[i]);
        if (i + 1 == N_SSE_PIECES) {
            evhttp_send_reply_end(j->req);
            last = 1;
        }
    }
    if (last) {
        event_free(j->timer);
        free(j);
        return;
    }
    struct timeval tv = {0, 20000};
    evtimer_add(j->timer, &tv);
}

static void sse_start(server *s, struct evhttp_request *req, const char *kind)
{
    sse_job *j = calloc(1, sizeof(*j));
    j->s = s;
    j->req = req;
    snprintf(j->kind, sizeof(j->kind), "%s", kind);
    j->timer = evtimer_new(s->base, sse_step, j);
    evhttp_add_header(evhttp_request_get_output_headers(req), "content-type",
                      "text/event-stream; charset=utf-8");
    evhttp_send_reply_start(req, 200, "OK");
    struct timeval now = {0, 0};
    evtimer_add(j->timer, &now);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    server *s = arg;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *outh = evhttp_request_get_output_headers(req);
    struct evbuffer *ib = evhttp_request_get_input_buffer(req);
    char mode[128] = "";
    size_t n = evbuffer_get_length(ib);
    if (n >= sizeof(mode))
        n = sizeof(mode) - 1;
    evbuffer_copyout(ib, mode, n);
    mode[n] = '\0';

    s->requests++;
    char *peer = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
    if (!(s->peer_ports[port / 8] & (1u << (port % 8)))) {
        s->peer_ports[port / 8] |= (unsigned char)(1u << (port % 8));
        s->connections++;
    }
    copy_hdr(s->last_key, sizeof(s->last_key), in, "x-api-key");
    copy_hdr(s->last_version, sizeof(s->last_version), in, "anthropic-version");
    copy_hdr(s->last_ctype, sizeof(s->last_ctype), in, "content-type");
    snprintf(s->last_path, sizeof(s->last_path), "%s", evhttp_request_get_uri(req));
    snprintf(s->last_method, sizeof(s->last_method), "%s",
             evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "other");

    evhttp_add_header(outh, "request-id", "req_test_1");
    if (strcmp(mode, "ok") == 0) {
        evhttp_add_header(outh, "anthropic-ratelimit-requests-limit", "50");
        evhttp_add_header(outh, "anthropic-ratelimit-requests-remaining", "49");
        evhttp_add_header(outh, "anthropic-ratelimit-requests-reset", "2025-01-02T03:04:05Z");
        evhttp_add_header(outh, "anthropic-ratelimit-input-tokens-limit", "40000");
        evhttp_add_header(outh, "anthropic-ratelimit-input-tokens-remaining", "39000");
        evhttp_add_header(outh, "anthropic-ratelimit-input-tokens-reset",
                          "2025-01-02T04:04:05.250+01:00");
        evhttp_add_header(outh, "Anthropic-RateLimit-Output-Tokens-Limit", "8000");
        evhttp_add_header(outh, "anthropic-ratelimit-output-tokens-remaining", "garbage");
        reply(req, 200, OK_BODY);
    } else if (strncmp(mode, "multi:", 6) == 0) {
        /* "multi:<n>" sent with key "sk-test-<n % 12>" */
        int i = atoi(mode + 6);
        char want[64];
        snprintf(want, sizeof(want), "sk-test-%d", i % 12);
        if (strcmp(want, s->last_key) != 0)
            s->key_mismatches++;
        reply(req, 200, OK_BODY);
    } else if (strcmp(mode, "429") == 0) {
        evhttp_add_header(outh, "retry-after", "7");
        reply(req, 429, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                        "\"message\":\"Number of requests has exceeded your rate limit\"},"
                        "\"request_id\":\"req_test_1\"}");
    } else if (strcmp(mode, "429ms") == 0) {
        evhttp_add_header(outh, "retry-after", "2");
        evhttp_add_header(outh, "retry-after-ms", "1500");
        reply(req, 429, "{}");
    } else if (strcmp(mode, "529") == 0) {
        reply(req, 529, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                        "\"message\":\"Overloaded\"}}");
    } else if (strcmp(mode, "echokey") == 0) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
                 "\"message\":\"invalid x-api-key %s\"}}",
                 s->last_key);
        reply(req, 401, body);
    } else if (strcmp(mode, "big") == 0 || strcmp(mode, "bigchunked") == 0) {
        size_t big = 64 * 1024;
        char *p = malloc(big);
        memset(p, 'x', big);
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, p, big);
        if (strcmp(mode, "big") == 0) {
            evhttp_send_reply(req, 200, "OK", b);
        } else {
            evhttp_send_reply_start(req, 200, "OK");
            evhttp_send_reply_chunk(req, b);
            evhttp_send_reply_end(req);
        }
        evbuffer_free(b);
        free(p);
    } else if (strcmp(mode, "drop") == 0) {
        /* close the connection without an answer; from a timer, as freeing
         * it inside evhttp's request callback is not safe */
        struct timeval now = {0, 0};
        event_base_once(s->base, -1, EV_TIMEOUT, drop_connection,
                        evhttp_request_get_connection(req), &now);
    } else if (strncmp(mode, "sse-", 4) == 0) {
        sse_start(s, req, mode + 4);
    } else if (strcmp(mode, "hang") == 0) {
        /* never answer; the client times out or cancels */
    } else {
        reply(req, 400, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                        "\"message\":\"unknown test mode\"}}");
    }
}

static void server_start(server *s, struct event_base *base)
{
    memset(s, 0, sizeof(*s));
    s->base = base;
    s->http = evhttp_new(base);
    assert_non_null(s->http);
    evhttp_set_gencb(s->http, on_request, s);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    assert_non_null(bs);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &sl), 0);
    s->port = ntohs(sin.sin_port);
}

static void server_stop(server *s)
{
    if (s->stalled) {
        sse_job *j = s->stalled;
        event_free(j->timer);
        free(j);
        s->stalled = NULL;
    }
    if (s->http)
        evhttp_free(s->http);
    s->http = NULL;
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct got {
    int calls;
    aq_status transport;
    long http_status;
    char *body;
    size_t body_len;
    char request_id[128];
    int64_t retry_after_ms;
    aq_llm_ratelimit rl;
    char error[600];
    int64_t latency_us;
    unsigned sends;
    int streamed;
    int have_response;
    char text[64];
    uint32_t output_tokens;
    int64_t ttft_us;
    double tps;
} got;

typedef struct fix {
    struct event_base *base;
    server srv;
    aq_llm_client *client;
    char url[64];
    int done_total;       /* every callback of the test */
    int in_start;         /* set while inside aq_llm_call_start */
    int reentrant;        /* a callback ran inside aq_llm_call_start */
    unsigned max_sends;   /* what start() passes */
} fix;

static fix *F;

static void on_done(void *ctx, const aq_llm_call_result *res)
{
    got *g = ctx;
    if (F->in_start)
        F->reentrant++;
    F->done_total++;
    g->calls++;
    g->transport = res->transport;
    g->http_status = res->http_status;
    free(g->body);
    g->body = malloc(res->body_len + 1);
    memcpy(g->body, res->body, res->body_len + 1);
    g->body_len = res->body_len;
    snprintf(g->request_id, sizeof(g->request_id), "%s", res->request_id);
    g->retry_after_ms = res->retry_after_ms;
    g->rl = res->ratelimit;
    snprintf(g->error, sizeof(g->error), "%s", res->error);
    g->latency_us = res->latency_us;
    g->sends = res->sends;
    g->streamed = res->streamed;
    g->have_response = res->response != NULL;
    if (res->response) {
        snprintf(g->text, sizeof(g->text), "%s", res->response->text);
        g->output_tokens = res->response->usage.output_tokens;
    }
    g->ttft_us = res->ttft_us;
    g->tps = res->output_tokens_per_s;
}

static void got_free(got *g)
{
    free(g->body);
    g->body = NULL;
}

static aq_llm_client_config default_cfg(fix *f)
{
    aq_llm_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.base_url = f->url;
    cfg.anthropic_version = "2023-06-01";
    cfg.connect_timeout_ms = 2000;
    cfg.timeout_ms = 5000;
    cfg.max_response_bytes = 16 * 1024;
    return cfg;
}

static int setup(void **state)
{
    fix *f = calloc(1, sizeof(*f));
    assert_int_equal(aq_llm_global_init(NULL), AQ_OK);
    f->base = event_base_new();
    server_start(&f->srv, f->base);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/", f->srv.port);
    aq_llm_client_config cfg = default_cfg(f);
    aq_err err;
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &f->client, &err), AQ_OK);
    F = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    aq_llm_client_destroy(f->client);
    server_stop(&f->srv);
    event_base_free(f->base);
    assert_int_equal(f->reentrant, 0);
    free(f);
    F = NULL;
    return 0;
}

static void start(fix *f, const char *key, const char *body, int64_t timeout_ms, got *g,
                  aq_llm_call **out)
{
    aq_err err;
    f->in_start = 1;
    aq_status st = aq_llm_call_start(f->client, key, body, strlen(body), timeout_ms, f->max_sends, on_done, g,
                                     out, &err);
    f->in_start = 0;
    if (st != AQ_OK)
        fail_msg("aq_llm_call_start: %s", err.msg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Run the loop until `*counter >= want` or `ms` pass; returns the counter. */
static int run_until(fix *f, const int *counter, int want, int64_t ms)
{
    int expired = 0;
    struct event *t = evtimer_new(f->base, on_deadline, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while ((counter == NULL || *counter < want) && !expired)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(t);
    return counter ? *counter : 0;
}

/* ---- tests --------------------------------------------------------------- */

static void test_round_trip_200(void **state)
{
    fix *f = *state;
    got g = {0};
    const char *body = "ok";
    start(f, KEY, body, 0, &g, NULL);
    assert_int_equal(aq_llm_client_in_flight(f->client), 1);
    assert_int_equal(g.calls, 0);   /* never from inside start */
    assert_int_equal(run_until(f, &g.calls, 1, 5000), 1);
    assert_int_equal(aq_llm_client_in_flight(f->client), 0);

    assert_int_equal(g.transport, AQ_OK);
    assert_int_equal(g.http_status, 200);
    assert_string_equal(g.error, "");
    assert_string_equal(g.request_id, "req_test_1");
    assert_int_equal(g.retry_after_ms, -1);
    assert_true(g.latency_us > 0);
    assert_int_equal(g.body_len, strlen(OK_BODY));
    assert_string_equal(g.body, OK_BODY);

    assert_int_equal(g.rl.requests_limit, 50);
    assert_int_equal(g.rl.requests_remaining, 49);
    assert_int_equal(g.rl.requests_reset_unix_ms, 1735787045000LL);
    assert_int_equal(g.rl.input_limit, 40000);
    assert_int_equal(g.rl.input_remaining, 39000);
    assert_int_equal(g.rl.input_reset_unix_ms, 1735787045250LL);   /* +01:00 */
    assert_int_equal(g.rl.output_limit, 8000);                      /* names are case-blind */
    assert_int_equal(g.rl.output_remaining, -1);                    /* "garbage" */
    assert_int_equal(g.rl.output_reset_unix_ms, -1);                /* absent */

    /* what the server saw */
    assert_string_equal(f->srv.last_method, "POST");
    assert_string_equal(f->srv.last_path, "/v1/messages");
    assert_string_equal(f->srv.last_key, KEY);
    assert_string_equal(f->srv.last_version, "2023-06-01");
    assert_string_equal(f->srv.last_ctype, "application/json");

    aq_llm_response r;
    aq_err err;
    assert_int_equal(aq_llm_response_parse(g.body, g.body_len, &r, &err), AQ_OK);
    assert_string_equal(r.text, "pong");
    aq_llm_response_free(&r);

    /* a second call reuses the connection and still works */
    start(f, KEY, body, 0, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 2, 5000), 2);
    assert_int_equal(g.http_status, 200);
    got_free(&g);
}

static void test_429_retry_after(void **state)
{
    fix *f = *state;
    got g = {0};
    start(f, KEY, "429", 0, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 1, 5000), 1);
    assert_int_equal(g.transport, AQ_OK);
    assert_int_equal(g.http_status, 429);
    assert_int_equal(g.retry_after_ms, 7000);
    assert_string_equal(g.request_id, "req_test_1");
    aq_err err;
    assert_int_equal(aq_llm_error_classify(g.http_status, g.body, g.body_len, &err),
                     AQ_HTTP_RATE_LIMITED);
    assert_string_equal(err.msg, "HTTP 429 rate_limit_error: Number of requests has exceeded "
                                 "your rate limit");

    /* retry-after-ms wins over retry-after */
    start(f, KEY, "429ms", 0, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 2, 5000), 2);
    assert_int_equal(g.retry_after_ms, 1500);

    start(f, KEY, "529", 0, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 3, 5000), 3);
    assert_int_equal(g.http_status, 529);
    assert_int_equal(g.retry_after_ms, -1);
    assert_int_equal(aq_llm_error_classify(g.http_status, g.body, g.body_len, NULL),
                     AQ_HTTP_OVERLOADED);
    got_free(&g);
}

static void test_response_too_big(void **state)
{
    fix *f = *state;
    got g = {0};
    /* with a content-length: refused from the headers */
    start(f, KEY, "big", 0, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 1, 5000), 1);
    assert_int_equal(g.transport, AQ_LLM_RESPONSE_TOO_BIG);
    assert_non_null(strstr(g.error, "cap"));
    assert_true(g.body_len <= 16 * 1024);

    /* chunked, no length: refused when the body passes the cap */
    start(f, KEY, "bigchunked", 0, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 2, 5000), 2);
    assert_int_equal(g.transport, AQ_LLM_RESPONSE_TOO_BIG);
    assert_true(g.body_len <= 16 * 1024);

    /* the client is still fine afterwards */
    start(f, KEY, "ok", 0, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 3, 5000), 3);
    assert_int_equal(g.transport, AQ_OK);
    got_free(&g);
}

static void test_timeout(void **state)
{
    fix *f = *state;
    got g = {0};
    int64_t t0 = aq_mono_ms();
    start(f, KEY, "hang", 300, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 1, 5000), 1);
    int64_t took = aq_mono_ms() - t0;
    assert_int_equal(g.transport, AQ_HTTP_TIMEOUT);
    assert_true(took >= 290 && took < 3000);
    assert_true(g.latency_us >= 290000);
    assert_true(strlen(g.error) > 0);
    assert_null(strstr(g.error, KEY));
    assert_null(strstr(g.error, "TESTKEY"));
    got_free(&g);
}

static void test_connect_refused(void **state)
{
    fix *f = *state;
    /* a port that was just bound and closed: nothing listens there */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    close(fd);

    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sin.sin_port));
    aq_llm_client_config cfg = default_cfg(f);
    cfg.base_url = url;
    aq_llm_client *c = NULL;
    aq_err err;
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_OK);

    got g = {0};
    f->in_start = 1;
    assert_int_equal(aq_llm_call_start(c, KEY, "ok", 2, 0, 0, on_done, &g, NULL, &err), AQ_OK);
    f->in_start = 0;
    assert_int_equal(g.calls, 0);
    assert_int_equal(run_until(f, &g.calls, 1, 5000), 1);
    assert_int_equal(g.transport, AQ_HTTP_CONNECT);
    assert_int_equal(g.http_status, 0);
    assert_true(strlen(g.error) > 0);
    assert_null(strstr(g.error, KEY));
    assert_null(strstr(g.error, "TESTKEY"));
    aq_llm_client_destroy(c);
    got_free(&g);
}

static void test_key_redacted_from_error_body(void **state)
{
    fix *f = *state;
    got g = {0};
    start(f, KEY, "echokey", 0, &g, NULL);
    assert_int_equal(run_until(f, &g.calls, 1, 5000), 1);
    assert_int_equal(g.http_status, 401);
    assert_string_equal(f->srv.last_key, KEY);   /* the server did get it */
    assert_null(strstr(g.body, KEY));
    assert_non_null(strstr(g.body, "invalid x-api-key ****"));
    aq_err err;
    assert_int_equal(aq_llm_error_classify(g.http_status, g.body, g.body_len, &err),
                     AQ_HTTP_UNAUTHORIZED);
    assert_null(strstr(err.msg, "TESTKEY"));
    got_free(&g);
}

static void cancel_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    aq_llm_call_cancel(arg);
}

static void test_cancel(void **state)
{
    fix *f = *state;
    got g1 = {0}, g2 = {0}, g3 = {0};
    aq_llm_call *c1 = NULL, *c2 = NULL, *c3 = NULL;

    /* cancelled at once, before the loop ran */
    start(f, KEY, "ok", 0, &g1, &c1);
    aq_llm_call_cancel(c1);
    /* cancelled while the server sits on it */
    start(f, KEY, "hang", 0, &g2, &c2);
    struct event *t = evtimer_new(f->base, cancel_cb, c2);
    /* a call that completes normally next to them */
    start(f, KEY, "ok", 0, &g3, &c3);
    assert_int_equal(aq_llm_client_in_flight(f->client), 2);

    struct timeval tv = {0, 100 * 1000};
    evtimer_add(t, &tv);
    assert_int_equal(run_until(f, &g3.calls, 1, 5000), 1);
    run_until(f, NULL, 0, 200);   /* the cancel timer has fired by now */
    event_free(t);

    assert_int_equal(g1.calls, 0);
    assert_int_equal(g2.calls, 0);
    assert_int_equal(g3.calls, 1);
    assert_int_equal(g3.transport, AQ_OK);
    assert_int_equal(aq_llm_client_in_flight(f->client), 0);
    aq_llm_call_cancel(NULL);
    got_free(&g3);
}

typedef struct many {
    int done;
    int ok;
    got g;
} many;

static void on_many(void *ctx, const aq_llm_call_result *res)
{
    many *m = ctx;
    if (F->in_start)
        F->reentrant++;
    m->done++;
    if (res->transport == AQ_OK && res->http_status == 200 &&
        res->body_len == strlen(OK_BODY))
        m->ok++;
}

/* Replace the fixture's client by one with these bounds. */
static void renew_client(fix *f, long shard_calls, long max_connections)
{
    aq_llm_client_destroy(f->client);
    aq_llm_client_config cfg = default_cfg(f);
    cfg.shard_calls = shard_calls;
    cfg.max_connections = max_connections;
    aq_err err;
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &f->client, &err), AQ_OK);
}

static void test_200_in_flight(void **state)
{
    fix *f = *state;
    renew_client(f, 0, 32);   /* the calls beyond 32 connections queue inside curl */
    aq_err err;

    enum { N = 200 };
    static char bodies[N][32];
    many m = {0};
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "sk-test-%d", i % 12);   /* more keys than the cache holds */
        snprintf(bodies[i], sizeof(bodies[i]), "multi:%d", i);
        f->in_start = 1;
        assert_int_equal(aq_llm_call_start(f->client, key, bodies[i], strlen(bodies[i]), 0,
                                           0, on_many, &m, NULL, &err),
                         AQ_OK);
        f->in_start = 0;
    }
    assert_int_equal(aq_llm_client_in_flight(f->client), N);
    assert_int_equal(m.done, 0);
    int64_t t0 = aq_mono_ms();
    assert_int_equal(run_until(f, &m.done, N, 20000), N);
    assert_int_equal(m.ok, N);
    assert_int_equal(f->srv.key_mismatches, 0);
    assert_int_equal(f->srv.requests, N);
    assert_true(f->srv.connections <= 32);
    assert_int_equal(aq_llm_client_in_flight(f->client), 0);
    assert_int_equal(aq_llm_client_shards(f->client), 1);   /* 200 < the default shard size */
    print_message("200 calls in %lld ms\n", (long long)(aq_mono_ms() - t0));
}

/* Start n "ok" calls at once; run until they are all done. */
static void run_round(fix *f, int n, many *m)
{
    aq_err err;
    int want = m->done + n;
    for (int i = 0; i < n; i++) {
        f->in_start = 1;
        assert_int_equal(aq_llm_call_start(f->client, KEY, "ok", 2, 0, 0, on_many, m, NULL, &err),
                         AQ_OK);
        f->in_start = 0;
    }
    assert_int_equal(run_until(f, &m->done, want, 20000), want);
}

static void test_shards(void **state)
{
    fix *f = *state;
    renew_client(f, 4, 0);
    assert_int_equal(aq_llm_client_shards(f->client), 1);

    /* a few calls stay in the first shard */
    many m = {0};
    run_round(f, 3, &m);
    assert_int_equal(aq_llm_client_shards(f->client), 1);
    assert_int_equal(f->srv.connections, 3);

    /* 40 at once: 10 shards of 4 */
    run_round(f, 40, &m);
    assert_int_equal(aq_llm_client_shards(f->client), 10);
    assert_int_equal(m.ok, 43);
    /* the first shard reused its 3 connections and opened 1 */
    assert_int_equal(f->srv.connections, 40);

    /* again: every shard reuses its own connections, none is opened */
    run_round(f, 40, &m);
    assert_int_equal(aq_llm_client_shards(f->client), 10);
    assert_int_equal(m.ok, 83);
    assert_int_equal(f->srv.requests, 83);
    assert_int_equal(f->srv.connections, 40);
    assert_int_equal(aq_llm_client_in_flight(f->client), 0);
    assert_int_equal(f->reentrant, 0);
}

/* Keep-alive connections survive a dip in calls in flight. libcurl's own
 * cache limit is four per transfer in the multi when a transfer ends, so the
 * last calls of a round closed their connections and the next round opened
 * them again (11% of B1's calls paid a new connection). */
static void test_connections_kept_across_a_dip(void **state)
{
    fix *f = *state;
    renew_client(f, 0, 0);   /* the worker's defaults: one shard, no connection limit */
    many m = {0};
    run_round(f, 64, &m);
    int opened = f->srv.connections;
    assert_true(opened >= 1 && opened <= 64);
    run_round(f, 1, &m);     /* the dip: one call in flight */
    run_round(f, 64, &m);
    run_round(f, 64, &m);
    assert_int_equal(m.ok, 193);
    assert_int_equal(f->srv.requests, 193);
    print_message("193 calls in rounds of 64, 1, 64, 64 over %d connections\n",
                  f->srv.connections);
    assert_int_equal(f->srv.connections, opened);
}

/* max_connections is split between the shards: never more open in all. */
static void test_shards_max_connections(void **state)
{
    fix *f = *state;
    renew_client(f, 4, 10);   /* 3 shards: 4 + 3 + 3 connections */
    many m = {0};
    run_round(f, 60, &m);
    assert_int_equal(m.ok, 60);
    assert_int_equal(f->srv.requests, 60);
    assert_int_equal(aq_llm_client_shards(f->client), 3);
    assert_true(f->srv.connections <= 10);
    print_message("60 calls over %d connections\n", f->srv.connections);
}

/* Cancel and destroy reach calls in every shard (ASan checks the rest). */
static void test_shards_cancel_destroy(void **state)
{
    fix *f = *state;
    renew_client(f, 2, 0);
    got g[9];
    aq_llm_call *calls[9];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < 9; i++)
        start(f, KEY, i == 8 ? "ok" : "hang", 0, &g[i], &calls[i]);
    assert_int_equal(aq_llm_client_shards(f->client), 5);
    aq_llm_call_cancel(calls[5]);   /* in the third shard */
    assert_int_equal(aq_llm_client_in_flight(f->client), 8);
    assert_int_equal(run_until(f, &g[8].calls, 1, 5000), 1);   /* the last shard's "ok" */
    assert_int_equal(g[8].http_status, 200);
    run_until(f, NULL, 0, 100);   /* the hanging ones reached the server */
    assert_int_equal(aq_llm_client_in_flight(f->client), 7);
    /* a freed slot in the third shard takes the next call */
    start(f, KEY, "ok", 0, &g[5], NULL);
    assert_int_equal(aq_llm_client_shards(f->client), 5);
    assert_int_equal(run_until(f, &g[5].calls, 1, 5000), 1);
    aq_llm_client_destroy(f->client);
    f->client = NULL;
    run_until(f, NULL, 0, 100);
    assert_int_equal(f->done_total, 2);
    for (int i = 0; i < 9; i++)
        got_free(&g[i]);
}

static void test_destroy_with_calls_in_flight(void **state)
{
    fix *f = *state;
    got g[5];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < 5; i++)
        start(f, KEY, i % 2 ? "hang" : "ok", 0, &g[i], NULL);
    assert_int_equal(aq_llm_client_in_flight(f->client), 5);
    /* the "ok" ones complete, the "hang" ones wait */
    assert_int_equal(run_until(f, &f->done_total, 3, 5000), 3);
    assert_int_equal(aq_llm_client_in_flight(f->client), 2);
    aq_llm_client_destroy(f->client);
    f->client = NULL;
    run_until(f, NULL, 0, 200);
    assert_int_equal(f->done_total, 3);   /* no callback for the cancelled ones */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(g[i].calls, i % 2 ? 0 : 1);
        got_free(&g[i]);
    }
}

typedef struct destroyer {
    fix *f;
    int calls;
} destroyer;

static void on_done_destroy(void *ctx, const aq_llm_call_result *res)
{
    destroyer *d = ctx;
    (void)res;
    d->calls++;
    aq_llm_client_destroy(d->f->client);   /* allowed from a callback */
    d->f->client = NULL;
}

static void test_destroy_from_callback(void **state)
{
    fix *f = *state;
    destroyer d = {f, 0};
    got other = {0};
    aq_err err;
    assert_int_equal(aq_llm_call_start(f->client, KEY, "ok", 2, 0, 0, on_done_destroy, &d, NULL,
                                       &err),
                     AQ_OK);
    start(f, KEY, "hang", 0, &other, NULL);
    assert_int_equal(run_until(f, &d.calls, 1, 5000), 1);
    run_until(f, NULL, 0, 100);
    assert_int_equal(d.calls, 1);
    assert_int_equal(other.calls, 0);
}

/* libcurl sends a request again by itself when the reused keep-alive
 * connection it went out on closes before any answer (a fresh connection
 * that does so is not retried). Every send is counted, and max_sends bounds
 * them: the re-send past it is refused, and the call fails saying so. */
static void test_resends_counted_and_bounded(void **state)
{
    fix *f = *state;
    got g;
    memset(&g, 0, sizeof(g));
    int want = 0;
    struct {
        unsigned max_sends, sends;
        int requests;
    } cases[] = {
        {0, 2, 2}, /* unbounded: the re-send goes out (and is dropped too) */
        {3, 2, 2}, /* a bound not reached changes nothing */
        {1, 1, 1}, /* the re-send is refused: the server sees one request */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* a kept-alive connection for the next call to reuse */
        f->max_sends = 0;
        start(f, KEY, "ok", 0, &g, NULL);
        want++;
        assert_int_equal(run_until(f, &g.calls, want, 3000), want);
        assert_int_equal(g.http_status, 200);
        assert_int_equal(g.sends, 1);

        int before = f->srv.requests;
        f->max_sends = cases[i].max_sends;
        start(f, KEY, "drop", 0, &g, NULL);
        want++;
        assert_int_equal(run_until(f, &g.calls, want, 3000), want);
        assert_int_equal(g.transport, AQ_HTTP_CONNECT);
        assert_int_equal(g.sends, cases[i].sends);
        assert_int_equal(f->srv.requests - before, cases[i].requests);
        if (cases[i].max_sends == 1)
            assert_non_null(strstr(g.error, "sent 1 time, the most allowed, and is not sent again"));
        else
            assert_null(strstr(g.error, "not sent again"));
    }
    /* max_sends 1 on an answered call: nothing refused */
    f->max_sends = 1;
    start(f, KEY, "ok", 0, &g, NULL);
    want++;
    assert_int_equal(run_until(f, &g.calls, want, 3000), want);
    assert_int_equal(g.http_status, 200);
    assert_int_equal(g.sends, 1);
    got_free(&g);
}

static void start_stream(fix *f, aq_llm_client *c, const char *body, got *g)
{
    aq_err err;
    aq_llm_call_opts o = {0, 0, 1};
    if (aq_llm_call_start_opts(c ? c : f->client, KEY, body, strlen(body), &o, on_done, g, NULL,
                               &err) != AQ_OK)
        fail_msg("aq_llm_call_start_opts: %s", err.msg);
}

/* A streamed answer, cut in pieces mid-event and with a CRLF event, is
 * parsed as it comes: the response, time to first token, tokens/s. */
static void test_stream_ok(void **state)
{
    fix *f = *state;
    got g = {0};
    start_stream(f, NULL, "sse-ok", &g);
    assert_int_equal(run_until(f, &g.calls, 1, 5000), 1);
    if (g.transport != AQ_OK)
        fail_msg("transport %s: %s", aq_status_class(g.transport), g.error);
    assert_int_equal(g.http_status, 200);
    assert_true(g.streamed);
    assert_true(g.have_response);
    assert_string_equal(g.text, "Hello world");
    assert_int_equal(g.output_tokens, 2);
    assert_int_equal(g.body_len, 0);
    /* the first delta comes with the 2nd piece, 20 ms in */
    if (g.ttft_us < 15000 || g.ttft_us >= g.latency_us)
        fail_msg("ttft %lld us, latency %lld us", (long long)g.ttft_us, (long long)g.latency_us);
    assert_true(g.tps > 0);
    /* not streamed: the same body comes whole, unparsed */
    got h = {0};
    start(f, KEY, "sse-ok", 0, &h, NULL);
    assert_int_equal(run_until(f, &h.calls, 1, 5000), 1);
    assert_int_equal(h.transport, AQ_OK);
    assert_false(h.streamed);
    assert_false(h.have_response);
    assert_non_null(strstr(h.body, "message_stop"));
    assert_int_equal(h.ttft_us, -1);
    /* streamed but answered with JSON (or an error status): the body as before */
    got k = {0};
    start_stream(f, NULL, "ok", &k);
    assert_int_equal(run_until(f, &k.calls, 1, 5000), 1);
    assert_int_equal(k.transport, AQ_OK);
    assert_false(k.have_response);
    assert_non_null(strstr(k.body, "pong"));
    got e = {0};
    start_stream(f, NULL, "529", &e);
    assert_int_equal(run_until(f, &e.calls, 1, 5000), 1);
    assert_int_equal(e.http_status, 529);
    assert_non_null(strstr(e.body, "overloaded_error"));
    got_free(&g);
    got_free(&h);
    got_free(&k);
    got_free(&e);
}

/* After the 200: an error event is the error's class; a connection closed
 * before message_stop is a cut stream. */
static void test_stream_error_and_cut(void **state)
{
    fix *f = *state;
    got g = {0}, h = {0};
    start_stream(f, NULL, "sse-error", &g);
    start_stream(f, NULL, "sse-cut", &h);
    assert_int_equal(run_until(f, &f->done_total, 2, 5000), 2);
    assert_int_equal(g.http_status, 200);
    assert_int_equal(g.transport, AQ_HTTP_OVERLOADED);
    assert_non_null(strstr(g.error, "overloaded_error: Overloaded"));
    assert_false(g.have_response);
    assert_int_equal(h.http_status, 200);
    assert_int_equal(h.transport, AQ_LLM_STREAM_CUT);
    assert_non_null(strstr(h.error, "before message_stop"));
    got_free(&g);
    got_free(&h);
}

/* A stream that goes quiet fails after the idle timeout, long before the
 * call's whole-time limit. */
static void test_stream_idle_timeout(void **state)
{
    fix *f = *state;
    aq_llm_client_config cfg = default_cfg(f);
    cfg.idle_timeout_ms = 1000;
    cfg.stream_timeout_ms = 30000;
    aq_llm_client *c = NULL;
    aq_err err;
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_OK);
    got g = {0};
    int64_t t0 = aq_mono_ms();
    start_stream(f, c, "sse-stall", &g);
    assert_int_equal(run_until(f, &g.calls, 1, 10000), 1);
    int64_t took = aq_mono_ms() - t0;
    assert_int_equal(g.transport, AQ_HTTP_TIMEOUT);
    assert_non_null(strstr(g.error, "llm_idle_timeout"));
    if (took < 1000 || took > 3500)
        fail_msg("idle timeout after %lld ms", (long long)took);
    aq_llm_client_destroy(c);
    got_free(&g);
}

static void test_bad_arguments(void **state)
{
    fix *f = *state;
    aq_err err;
    got g = {0};
    assert_int_equal(aq_llm_call_start(f->client, "", "x", 1, 0, 0, on_done, &g, NULL, &err),
                     AQ_INVALID_ARG);
    assert_int_equal(aq_llm_call_start(f->client, NULL, "x", 1, 0, 0, on_done, &g, NULL, &err),
                     AQ_INVALID_ARG);
    /* header injection through the key is refused, and the key is not echoed */
    assert_int_equal(aq_llm_call_start(f->client, "sk-ant-SECRET\r\nx-evil: 1", "x", 1, 0,
                                       0, on_done, &g, NULL, &err),
                     AQ_INVALID_ARG);
    assert_null(strstr(err.msg, "SECRET"));
    assert_int_equal(aq_llm_call_start(f->client, KEY, "x", 1, 0, 0, NULL, &g, NULL, &err),
                     AQ_INVALID_ARG);
    assert_int_equal(aq_llm_call_start(f->client, KEY, "x", 1, -5, 0, on_done, &g, NULL, &err),
                     AQ_INVALID_ARG);
    assert_int_equal(aq_llm_client_in_flight(f->client), 0);

    aq_llm_client_config cfg = default_cfg(f);
    aq_llm_client *c = NULL;
    cfg.base_url = "ftp://x";
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_CONFIG);
    cfg.base_url = NULL;
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_CONFIG);
    cfg.base_url = "https://user:pw@api.example.com";
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_CONFIG);
    cfg.base_url = f->url;
    cfg.anthropic_version = "2023\r\n";
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_CONFIG);
    cfg.anthropic_version = NULL;
    cfg.recv_buffer_bytes = 10;
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_CONFIG);
    cfg.recv_buffer_bytes = 0;
    cfg.shard_calls = -1;
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_CONFIG);
    cfg.shard_calls = 0;
    cfg.timeout_ms = -1;
    assert_int_equal(aq_llm_client_new(f->base, &cfg, &c, &err), AQ_CONFIG);
    assert_null(c);
    aq_llm_client_destroy(NULL);
    assert_int_equal(aq_llm_client_in_flight(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_redacted_from_error_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_200_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connections_kept_across_a_dip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shards_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shards_cancel_destroy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_calls_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resends_counted_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_error_and_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    aq_llm_global_cleanup();
    return rc;
}
