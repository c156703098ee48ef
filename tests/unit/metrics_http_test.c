/* The /metrics, /healthz, /readyz server over real HTTP: it runs on a
 * libevent loop in a thread of this process (port 0: a free one), libcurl
 * fetches. Answers, methods, unknown paths, request caps, and a taken port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "metrics/metrics.h"
#include "metrics/metrics_http.h"

typedef struct srv {
    struct event_base *base;
    aq_metrics *reg;
    aq_mfamily *counter;
    aq_metrics_http *http;
    pthread_t thread;
    atomic_bool ready;
    atomic_int collects;
    char url[64];
} srv;

typedef struct resp {
    long code;
    aq_buf body;
    char content_type[128];
    char allow[64];
} resp;

static bool ready_cb(void *arg, const char **why)
{
    srv *s = arg;
    if (atomic_load(&s->ready))
        return true;
    *why = "consumer not bound";
    return false;
}

static void collect(void *arg)
{
    srv *s = arg;
    atomic_fetch_add(&s->collects, 1);
}

static void *loop_main(void *arg)
{
    srv *s = arg;
    event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static int setup(void **state)
{
    srv *s = calloc(1, sizeof(*s));
    aq_err err;
    assert_int_equal(evthread_use_pthreads(), 0);
    assert_non_null(s->base = event_base_new());
    assert_int_equal(aq_metrics_new(&s->reg, &err), AQ_OK);
    aq_metric_desc d = {"t_requests_total", "Requests.", AQ_METRIC_COUNTER, 1, {"code"}, {0}, NULL, 0};
    assert_int_equal(aq_metrics_family(s->reg, &d, &s->counter, &err), AQ_OK);
    aq_mfamily_add(s->counter, AQ_LV("200"), 7);
    assert_int_equal(aq_metrics_on_collect(s->reg, collect, s, &err), AQ_OK);
    aq_metrics_http_opts o = {.bind = "127.0.0.1", .port = 0, .registry = s->reg,
                              .ready = ready_cb, .ready_arg = s};
    assert_int_equal(aq_metrics_http_start(s->base, &o, &s->http, &err), AQ_OK);
    assert_true(aq_metrics_http_port(s->http) > 0);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", aq_metrics_http_port(s->http));
    assert_int_equal(pthread_create(&s->thread, NULL, loop_main, s), 0);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    srv *s = *state;
    event_base_loopexit(s->base, NULL);
    pthread_join(s->thread, NULL);
    aq_metrics_http_destroy(s->http);
    aq_metrics_destroy(s->reg);
    event_base_free(s->base);
    free(s);
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    resp *r = arg;
    return aq_buf_append(&r->body, p, size * n) == AQ_OK ? size * n : 0;
}

static void header(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t len = strlen(name);
    if (n <= len + 1 || strncasecmp(line, name, len) != 0 || line[len] != ':')
        return;
    const char *v = line + len + 1;
    size_t vn = n - len - 1;
    while (vn && *v == ' ')
        v++, vn--;
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n'))
        vn--;
    snprintf(out, cap, "%.*s", (int)vn, v);
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
    resp *r = arg;
    header(line, size * n, "content-type", r->content_type, sizeof(r->content_type));
    header(line, size * n, "allow", r->allow, sizeof(r->allow));
    return size * n;
}

/* method NULL: GET. extra_header / body may be NULL. */
static CURLcode fetch(const srv *s, const char *method, const char *path, const char *extra_header,
                      const char *body, resp *r)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", s->url, path);
    memset(r, 0, sizeof(*r));
    aq_buf_init(&r->body, 16 * 1024 * 1024);
    CURL *h = curl_easy_init();
    struct curl_slist *hl = extra_header ? curl_slist_append(NULL, extra_header) : NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    if (hl)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    if (method && strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (method)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return rc;
}

static const char *body_of(const resp *r)
{
    return r->body.data ? r->body.data : "";
}

static void test_metrics(void **state)
{
    srv *s = *state;
    resp r;
    assert_int_equal(fetch(s, NULL, "/metrics", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.content_type, AQ_METRICS_CONTENT_TYPE);
    assert_string_equal(body_of(&r), "# HELP t_requests_total Requests.\n"
                                     "# TYPE t_requests_total counter\n"
                                     "t_requests_total{code=\"200\"} 7\n");
    assert_int_equal(atomic_load(&s->collects), 1);
    aq_buf_free(&r.body);
    /* A query string does not change the path. */
    assert_int_equal(fetch(s, NULL, "/metrics?name[]=x", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_int_equal(atomic_load(&s->collects), 2);
    aq_buf_free(&r.body);
    /* HEAD: the headers only. */
    assert_int_equal(fetch(s, "HEAD", "/metrics", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_int_equal(r.body.len, 0);
    aq_buf_free(&r.body);
}

static void test_health_and_ready(void **state)
{
    srv *s = *state;
    resp r;
    assert_int_equal(fetch(s, NULL, "/healthz", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_string_equal(body_of(&r), "ok\n");
    aq_buf_free(&r.body);
    atomic_store(&s->ready, false);
    assert_int_equal(fetch(s, NULL, "/readyz", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 503);
    assert_string_equal(body_of(&r), "not ready: consumer not bound\n");
    aq_buf_free(&r.body);
    atomic_store(&s->ready, true);
    assert_int_equal(fetch(s, NULL, "/readyz", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_string_equal(body_of(&r), "ready\n");
    aq_buf_free(&r.body);
}

static void test_methods_paths_and_caps(void **state)
{
    srv *s = *state;
    resp r;
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        assert_int_equal(fetch(s, methods[i], "/metrics", NULL, NULL, &r), CURLE_OK);
        assert_int_equal(r.code, 405);
        assert_string_equal(r.allow, "GET, HEAD");
        aq_buf_free(&r.body);
    }
    assert_int_equal(fetch(s, NULL, "/", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 404);
    aq_buf_free(&r.body);
    assert_int_equal(fetch(s, NULL, "/metricsx", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 404);
    aq_buf_free(&r.body);
    /* Over the header cap: refused (evhttp answers 4xx or closes). */
    char *big = malloc(AQ_METRICS_HTTP_HEADERS_MAX + 64);
    strcpy(big, "X-Big: ");
    memset(big + 7, 'a', AQ_METRICS_HTTP_HEADERS_MAX);
    big[AQ_METRICS_HTTP_HEADERS_MAX + 7] = '\0';
    CURLcode rc = fetch(s, NULL, "/metrics", big, NULL, &r);
    assert_true(rc != CURLE_OK || r.code >= 400);
    aq_buf_free(&r.body);
    /* Over the body cap. */
    memset(big, 'b', AQ_METRICS_HTTP_BODY_MAX + 10);
    big[AQ_METRICS_HTTP_BODY_MAX + 10] = '\0';
    rc = fetch(s, "POST", "/metrics", NULL, big, &r);
    assert_true(rc != CURLE_OK || r.code >= 400);
    aq_buf_free(&r.body);
    free(big);
    /* Still serving. */
    assert_int_equal(fetch(s, NULL, "/healthz", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.code, 200);
    aq_buf_free(&r.body);
}

/* HEAD then GET on one connection: HEAD's answer has no body, so the GET's
 * answer that follows is read intact. */
static void test_head_keeps_the_connection_in_step(void **state)
{
    srv *s = *state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)aq_metrics_http_port(s->http))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char *req = "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    const char *first = strstr(buf, "HTTP/1.1 200");
    assert_non_null(first);
    const char *second = strstr(first + 1, "HTTP/1.1 200");
    assert_non_null(second);
    /* The only body is the GET's, at the very end. */
    const char *body = strstr(buf, "\r\n\r\nok\n");
    assert_non_null(body);
    if (body <= second)
        fail_msg("HEAD answered with a body:\n%s", buf);
    assert_string_equal(body + 4, "ok\n");
}

static void test_port_taken(void **state)
{
    srv *s = *state;
    struct event_base *base = event_base_new();
    aq_metrics_http *h = NULL;
    aq_err err;
    char want[64];
    int port = aq_metrics_http_port(s->http);
    aq_metrics_http_opts o = {.bind = "127.0.0.1", .port = port, .registry = s->reg};
    assert_int_equal(aq_metrics_http_start(base, &o, &h, &err), AQ_IO);
    assert_null(h);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_non_null(strstr(err.msg, want));
    assert_non_null(strstr(err.msg, "in use"));
    o.port = 70000;
    assert_int_equal(aq_metrics_http_start(base, &o, &h, &err), AQ_INVALID_ARG);
    o.port = 0;
    o.bind = "not an address";
    assert_int_equal(aq_metrics_http_start(base, &o, &h, &err), AQ_IO);
    aq_metrics_http_destroy(NULL);
    event_base_free(base);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_and_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_methods_paths_and_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_keeps_the_connection_in_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_taken, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
