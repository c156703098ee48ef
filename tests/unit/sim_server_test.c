/* agentq-sim over real HTTP: the server runs in this process on port 0 (its
 * own worker threads) and libcurl talks to it. Success and error answers,
 * faults (including the bad 200s), latency, the body cap, and the per-key
 * rate limits (429 + retry-after + anthropic-ratelimit-* headers, refill,
 * separate keys, max_tokens reserved then corrected, report-only mode).
 * Issue 16: streaming (the API's SSE sequence, the same content as the plain
 * answer, pacing by libevent timers with many streams at once, error and cut
 * faults), count_tokens, models, Bearer auth, anthropic-version, unknown
 * fields, x-should-retry / retry-after hints, x-sim-fault steering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/config.h"
#include "sim/sim.h"

#define RESP_BODY_CAP (64 * 1024 * 1024) /* fault_huge answers are 16 MiB */
#define RL_HEADERS_MAX 16

typedef struct resp {
    CURLcode rc;
    long code;
    aq_buf body;
    char request_id[64];
    char content_type[64];
    char retry_after[16];
    char should_retry[16];
    char rl_requests_limit[32];
    char rl_tokens_reset[40];
    int n_rl; /* every anthropic-ratelimit-* header */
    char rl_name[RL_HEADERS_MAX][64];
    char rl_value[RL_HEADERS_MAX][40];
} resp;

typedef struct sim {
    aq_sim_config cfg;
    aq_sim_server *srv;
    char base[64];
    CURL *h; /* one handle: keep-alive across requests */
} sim;

static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t len = strlen(name);
    if (n <= len + 1 || strncasecmp(line, name, len) != 0 || line[len] != ':')
        return;
    const char *v = line + len + 1;
    size_t vn = n - len - 1;
    while (vn && (*v == ' '))
        v++, vn--;
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n'))
        vn--;
    snprintf(out, cap, "%.*s", (int)vn, v);
}

static size_t on_header(char *line, size_t size, size_t nitems, void *arg)
{
    resp *r = arg;
    size_t n = size * nitems;
    header_value(line, n, "request-id", r->request_id, sizeof(r->request_id));
    header_value(line, n, "content-type", r->content_type, sizeof(r->content_type));
    header_value(line, n, "retry-after", r->retry_after, sizeof(r->retry_after));
    header_value(line, n, "x-should-retry", r->should_retry, sizeof(r->should_retry));
    header_value(line, n, "anthropic-ratelimit-requests-limit", r->rl_requests_limit, sizeof(r->rl_requests_limit));
    header_value(line, n, "anthropic-ratelimit-tokens-reset", r->rl_tokens_reset, sizeof(r->rl_tokens_reset));
    const char *colon = memchr(line, ':', n);
    if (colon && n > 20 && strncasecmp(line, "anthropic-ratelimit-", 20) == 0 && r->n_rl < RL_HEADERS_MAX) {
        snprintf(r->rl_name[r->n_rl], sizeof(r->rl_name[0]), "%.*s", (int)(colon - line), line);
        header_value(line, n, r->rl_name[r->n_rl], r->rl_value[r->n_rl], sizeof(r->rl_value[0]));
        r->n_rl++;
    }
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    resp *r = arg;
    return aq_buf_append(&r->body, data, size * nmemb) == AQ_OK ? size * nmemb : 0;
}

/* Headers: NULL-terminated list of "name: value" ("name:" removes a default). */
static void http(sim *s, const char *method, const char *path, const char *const *headers,
                 const char *body, long timeout_ms, resp *r)
{
    char url[256];
    struct curl_slist *hl = NULL;
    memset(r, 0, sizeof(*r));
    aq_buf_init(&r->body, RESP_BODY_CAP);
    snprintf(url, sizeof(url), "%s%s", s->base, path);
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_reset(s->h);
    curl_easy_setopt(s->h, CURLOPT_URL, url);
    curl_easy_setopt(s->h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 10000L);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    r->rc = curl_easy_perform(s->h);
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &r->code);
    curl_slist_free_all(hl);
}

static void resp_free(resp *r)
{
    aq_buf_free(&r->body);
}

static const char *const api_headers[] = {"x-api-key: k1", "anthropic-version: 2023-06-01",
                                          "content-type: application/json", NULL};
static const char *const api_headers_k2[] = {"x-api-key: k2", "anthropic-version: 2023-06-01",
                                             "content-type: application/json", NULL};

/* The value of anthropic-ratelimit-<suffix>; fails if absent or repeated. */
static const char *rl_header(const resp *r, const char *suffix)
{
    const char *v = NULL;
    for (int i = 0; i < r->n_rl; i++) {
        if (strcasecmp(r->rl_name[i] + 20, suffix) == 0) {
            if (v)
                fail_msg("anthropic-ratelimit-%s twice", suffix);
            v = r->rl_value[i];
        }
    }
    if (!v)
        fail_msg("no anthropic-ratelimit-%s header (status %ld)", suffix, r->code);
    return v;
}

/* An RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SSZ" as Unix seconds; -1 if not one. */
static int64_t rfc3339_s(const char *v)
{
    struct tm tm = {0};
    int n = 0;
    if (strlen(v) != 20 || sscanf(v, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 20)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* All twelve rate-limit headers, consistent, resets within the next minute. */
static void assert_rl_headers(const resp *r, const char *requests_limit, const char *input_limit,
                              const char *output_limit)
{
    static const char *const dims[] = {"requests", "input-tokens", "output-tokens", "tokens"};
    char name[64];
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(r->n_rl, 12);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "%s-reset", dims[i]);
        int64_t reset = rfc3339_s(rl_header(r, name));
        if (reset < now - 2 || reset > now + 62)
            fail_msg("%s %s is not within the next minute", name, rl_header(r, name));
        snprintf(name, sizeof(name), "%s-remaining", dims[i]);
        long long rem = atoll(rl_header(r, name));
        snprintf(name, sizeof(name), "%s-limit", dims[i]);
        assert_true(rem >= 0 && rem <= atoll(rl_header(r, name)) + 500);
        if (i > 0) /* token counts are rounded to thousands */
            assert_int_equal(rem % 1000, 0);
    }
    assert_string_equal(rl_header(r, "requests-limit"), requests_limit);
    assert_string_equal(rl_header(r, "input-tokens-limit"), input_limit);
    assert_string_equal(rl_header(r, "output-tokens-limit"), output_limit);
    assert_int_equal(atoll(rl_header(r, "tokens-limit")), atoll(input_limit) + atoll(output_limit));
}

/* Start a simulator with the defaults plus "name=value" overrides. */
static sim *sim_start(const char *const *overrides)
{
    sim *s = calloc(1, sizeof(*s));
    aq_err err = {0};
    assert_non_null(s);
    assert_int_equal(aq_config_load(aq_sim_options, &s->cfg, 0, NULL, NULL, &err), AQ_OK);
    assert_int_equal(aq_config_set(aq_sim_options, &s->cfg, "listen", "127.0.0.1:0", "test", &err), AQ_OK);
    assert_int_equal(aq_config_set(aq_sim_options, &s->cfg, "threads", "2", "test", &err), AQ_OK);
    for (size_t i = 0; overrides && overrides[i]; i += 2)
        if (aq_config_set(aq_sim_options, &s->cfg, overrides[i], overrides[i + 1], "test", &err) != AQ_OK)
            fail_msg("%s", err.msg);
    if (aq_sim_server_new(&s->cfg, &s->srv, &err) != AQ_OK || aq_sim_server_start(s->srv, &err) != AQ_OK)
        fail_msg("cannot start the simulator: %s", err.msg);
    assert_true(aq_sim_server_port(s->srv) > 0);
    snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", aq_sim_server_port(s->srv));
    s->h = curl_easy_init();
    assert_non_null(s->h);
    return s;
}

static void sim_stop(sim *s)
{
    curl_easy_cleanup(s->h);
    aq_sim_server_destroy(s->srv);
    aq_config_free(aq_sim_options, &s->cfg);
    free(s);
}

static json_t *stats(sim *s)
{
    resp r;
    http(s, "GET", "/sim/stats", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    json_t *doc = json_loads(r.body.data, 0, NULL);
    assert_non_null(doc);
    resp_free(&r);
    return doc;
}

static json_int_t stat_int(json_t *doc, const char *name)
{
    return json_integer_value(json_object_get(doc, name));
}

static json_int_t by_status(json_t *doc, const char *code)
{
    return json_integer_value(json_object_get(json_object_get(doc, "by_status"), code));
}

/* doc.<obj>.<name>, e.g. rate_limited.requests */
static json_int_t sub_int(json_t *doc, const char *obj, const char *name)
{
    json_t *o = json_object_get(doc, obj);
    if (!json_is_object(o) || !json_is_integer(json_object_get(o, name)))
        fail_msg("/sim/stats has no integer %s.%s", obj, name);
    return json_integer_value(json_object_get(o, name));
}

static void assert_api_error(resp *r, long code, const char *type, const char *msg_part)
{
    if (r->code != code)
        fail_msg("status %ld, wanted %ld: %s", r->code, code, r->body.data ? r->body.data : "");
    assert_true(strncmp(r->request_id, "req_", 4) == 0);
    assert_string_equal(r->content_type, "application/json");
    json_t *doc = json_loads(r->body.data, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "error");
    json_t *e = json_object_get(doc, "error");
    assert_string_equal(json_string_value(json_object_get(e, "type")), type);
    const char *m = json_string_value(json_object_get(e, "message"));
    if (!m || !strstr(m, msg_part))
        fail_msg("message '%s' lacks '%s'", m ? m : "(none)", msg_part);
    assert_string_equal(json_string_value(json_object_get(doc, "request_id")), r->request_id);
    json_decref(doc);
}

#define HELLO "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}]}"

static void test_http_success_and_errors(void **state)
{
    (void)state;
    static const char *const opts[] = {"keys", "k1,k2", NULL};
    sim *s = sim_start(opts);
    resp r, r2;
    long connects = -1;

    http(s, "POST", "/sim/reset", NULL, "", 0, &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);

    /* success */
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_true(strncmp(r.request_id, "req_", 4) == 0);
    assert_string_equal(r.content_type, "application/json");
    assert_string_equal(r.rl_requests_limit, "4000");
    assert_int_equal(strlen(r.rl_tokens_reset), 20); /* 2026-01-01T00:00:00Z */
    assert_rl_headers(&r, "4000", "2000000", "400000");
    assert_string_equal(rl_header(&r, "requests-remaining"), "3999");
    assert_string_equal(rl_header(&r, "input-tokens-remaining"), "2000000"); /* 1999994, rounded */
    json_t *doc = json_loads(r.body.data, 0, NULL);
    assert_non_null(doc);
    assert_true(strncmp(json_string_value(json_object_get(doc, "id")), "msg_", 4) == 0);
    assert_string_equal(json_string_value(json_object_get(doc, "model")), "claude-haiku-4-5");
    const char *text = json_string_value(json_object_get(json_array_get(json_object_get(doc, "content"), 0), "text"));
    assert_true(strncmp(text, "echo: hi there | ", 17) == 0);
    assert_int_equal(strlen(text), 160);
    assert_string_equal(json_string_value(json_object_get(doc, "stop_reason")), "end_turn");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "usage"), "input_tokens")), 6);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "usage"), "output_tokens")), 40);

    /* same request again: same text, on the same connection */
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r2);
    assert_int_equal(r2.code, 200);
    curl_easy_getinfo(s->h, CURLINFO_NUM_CONNECTS, &connects);
    assert_int_equal(connects, 0);
    json_t *doc2 = json_loads(r2.body.data, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(doc2, "content"), 0), "text")), text);
    assert_string_not_equal(r.request_id, r2.request_id);
    json_decref(doc);
    json_decref(doc2);
    resp_free(&r);
    resp_free(&r2);

    /* 400s */
    http(s, "POST", "/v1/messages", api_headers, "{not json", 0, &r);
    assert_api_error(&r, 400, "invalid_request_error", "not valid JSON");
    assert_rl_headers(&r, "4000", "2000000", "400000"); /* any answer to a known key */
    resp_free(&r);
    http(s, "POST", "/v1/messages", api_headers,
         "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, &r);
    assert_api_error(&r, 400, "invalid_request_error", "max_tokens");
    resp_free(&r);
    static const char *const no_version[] = {"x-api-key: k1", "content-type: application/json", NULL};
    http(s, "POST", "/v1/messages", no_version, HELLO, 0, &r);
    assert_api_error(&r, 400, "invalid_request_error", "anthropic-version");
    resp_free(&r);
    static const char *const text_type[] = {"x-api-key: k1", "anthropic-version: 2023-06-01", "content-type: text/plain", NULL};
    http(s, "POST", "/v1/messages", text_type, HELLO, 0, &r);
    assert_api_error(&r, 400, "invalid_request_error", "content-type");
    resp_free(&r);

    /* 401s */
    static const char *const no_key[] = {"anthropic-version: 2023-06-01", "content-type: application/json", NULL};
    http(s, "POST", "/v1/messages", no_key, HELLO, 0, &r);
    assert_api_error(&r, 401, "authentication_error", "x-api-key");
    resp_free(&r);
    static const char *const bad_key[] = {"x-api-key: k3", "anthropic-version: 2023-06-01", "content-type: application/json", NULL};
    http(s, "POST", "/v1/messages", bad_key, HELLO, 0, &r);
    assert_api_error(&r, 401, "authentication_error", "invalid x-api-key");
    assert_int_equal(r.n_rl, 0);
    resp_free(&r);

    /* 404s */
    http(s, "POST", "/v1/messages", api_headers,
         "{\"model\":\"claude-nope\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, &r);
    assert_api_error(&r, 404, "not_found_error", "model: claude-nope");
    resp_free(&r);
    http(s, "GET", "/v2/nothing", NULL, NULL, 0, &r);
    assert_api_error(&r, 404, "not_found_error", "Not Found");
    resp_free(&r);

    /* 405 */
    http(s, "GET", "/v1/messages", api_headers, NULL, 0, &r);
    assert_api_error(&r, 405, "invalid_request_error", "POST");
    resp_free(&r);

    http(s, "GET", "/healthz", NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body.data, "ok");
    resp_free(&r);

    /* the counters saw all of it; the key appears only as its id */
    doc = stats(s);
    assert_int_equal(stat_int(doc, "requests_total"), 10); /* /v2/nothing is not an API request */
    assert_int_equal(by_status(doc, "200"), 2);
    assert_int_equal(by_status(doc, "400"), 4);
    assert_int_equal(by_status(doc, "401"), 2);
    assert_int_equal(by_status(doc, "404"), 1);
    assert_int_equal(by_status(doc, "405"), 1);
    assert_int_equal(stat_int(doc, "input_tokens_total"), 12);
    assert_int_equal(stat_int(doc, "output_tokens_total"), 80);
    assert_int_equal(stat_int(doc, "concurrent_requests"), 0);
    assert_true(stat_int(doc, "peak_concurrent_requests") >= 1);
    assert_true(stat_int(doc, "connections_open") >= 1);
    assert_true(stat_int(doc, "peak_connections") >= 1);
    /* only the two valid requests were charged; nothing was limited */
    assert_true(json_is_true(json_object_get(doc, "rate_limit_enforced")));
    assert_int_equal(sub_int(doc, "charged", "requests"), 2);
    assert_int_equal(sub_int(doc, "charged", "input_tokens"), 12);
    assert_int_equal(sub_int(doc, "charged", "output_tokens"), 80); /* 2 x 64 reserved, corrected to 2 x 40 */
    assert_int_equal(sub_int(doc, "rate_limited", "requests") + sub_int(doc, "rate_limited", "input_tokens") +
                         sub_int(doc, "rate_limited", "output_tokens") + sub_int(doc, "rate_limited", "keys"),
                     0);
    assert_int_equal(stat_int(doc, "keys_tracked"), 1);
    assert_int_equal(stat_int(doc, "fault_429") + stat_int(doc, "fault_bad_json") +
                         stat_int(doc, "fault_truncated") + stat_int(doc, "fault_huge"),
                     0);
    json_t *keys = json_object_get(doc, "requests_by_key");
    assert_int_equal(json_object_size(keys), 1);
    assert_null(json_object_get(keys, "k1"));
    /* k1 passed authentication 7 times (2 successes, 4 x 400, 1 x 404) */
    json_t *v;
    const char *id;
    json_object_foreach(keys, id, v) {
        assert_int_equal(strlen(id), 8);
        assert_int_equal(json_integer_value(v), 7);
    }
    char *dump = json_dumps(doc, 0);
    assert_null(strstr(dump, "\"k1\""));
    free(dump);
    json_decref(doc);

    http(s, "POST", "/sim/reset", NULL, "", 0, &r);
    resp_free(&r);
    doc = stats(s);
    assert_int_equal(stat_int(doc, "requests_total"), 0);
    assert_int_equal(json_object_size(json_object_get(doc, "by_status")), 0);
    json_decref(doc);
    sim_stop(s);
}

static void test_http_faults_and_latency(void **state)
{
    (void)state;
    resp r;

    /* every request a 429 with retry-after and rate-limit headers */
    static const char *const f429[] = {"fault_429", "1", "retry_after", "7", NULL};
    sim *s = sim_start(f429);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_api_error(&r, 429, "rate_limit_error", "rate limit");
    assert_string_equal(r.retry_after, "7");
    assert_string_equal(r.rl_requests_limit, "4000");
    assert_rl_headers(&r, "4000", "2000000", "400000");
    assert_string_equal(rl_header(&r, "requests-remaining"), "4000"); /* a fault charges nothing */
    resp_free(&r);
    json_t *doc = stats(s);
    assert_int_equal(stat_int(doc, "fault_429"), 1);
    assert_int_equal(sub_int(doc, "rate_limited", "requests"), 0);
    assert_int_equal(sub_int(doc, "charged", "requests"), 0);
    json_decref(doc);
    sim_stop(s);

    static const char *const f529[] = {"fault_529", "1", NULL};
    s = sim_start(f529);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_api_error(&r, 529, "overloaded_error", "Overloaded");
    resp_free(&r);
    /* invalid requests are still 400, faults apply to valid ones */
    http(s, "POST", "/v1/messages", api_headers, "{}", 0, &r);
    assert_int_equal(r.code, 400);
    resp_free(&r);
    sim_stop(s);

    /* latency */
    static const char *const slow[] = {"latency", "300ms", NULL};
    s = sim_start(slow);
    int64_t t0 = aq_mono_ms();
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    int64_t took = aq_mono_ms() - t0;
    assert_int_equal(r.code, 200);
    assert_true(took >= 290 && took < 3000);
    resp_free(&r);
    sim_stop(s);

    /* drop: the connection closes with no answer */
    static const char *const drop[] = {"fault_drop", "1", NULL};
    s = sim_start(drop);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.rc, CURLE_GOT_NOTHING);
    resp_free(&r);
    doc = stats(s);
    assert_int_equal(sub_int(doc, "charged", "output_tokens"), 0); /* no answer: reservation refunded */
    assert_int_equal(stat_int(doc, "dropped"), 1);
    assert_int_equal(stat_int(doc, "concurrent_requests"), 0);
    json_decref(doc);
    sim_stop(s);

    /* stall: never answered; when the client gives up the server lets go too */
    static const char *const stall[] = {"fault_stall", "1", NULL};
    s = sim_start(stall);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 300, &r);
    assert_int_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    resp_free(&r);
    json_int_t concurrent = -1;
    for (int i = 0; i < 100 && concurrent != 0; i++) {
        doc = stats(s);
        assert_int_equal(stat_int(doc, "stalled"), 1);
        concurrent = stat_int(doc, "concurrent_requests");
        json_decref(doc);
        if (concurrent)
            usleep(20000);
    }
    assert_int_equal(concurrent, 0);
    sim_stop(s);

    /* stop with a request still held: no leak, no hang */
    s = sim_start(stall);
    CURLM *m = curl_multi_init();
    CURL *e = curl_easy_init();
    struct curl_slist *hl = NULL;
    char url[128];
    int running = 0;
    snprintf(url, sizeof(url), "%s/v1/messages", s->base);
    for (size_t i = 0; api_headers[i]; i++)
        hl = curl_slist_append(hl, api_headers[i]);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, HELLO);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    curl_multi_add_handle(m, e);
    for (int i = 0; i < 50; i++) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    doc = stats(s);
    assert_int_equal(stat_int(doc, "concurrent_requests"), 1);
    json_decref(doc);
    sim_stop(s);
    curl_multi_remove_handle(m, e);
    curl_easy_cleanup(e);
    curl_multi_cleanup(m);
    curl_slist_free_all(hl);
}

/* A request with its own max_tokens. */
static void hello_max_tokens(char *buf, size_t cap, long max_tokens)
{
    snprintf(buf, cap,
             "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":%ld,\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}]}",
             max_tokens);
}

static void test_http_rate_limits_requests(void **state)
{
    (void)state;
    /* 60 a minute: a bucket of 60 that refills one per second */
    static const char *const tight[] = {"rl_requests", "60", "rl_input_tokens", "100000",
                                        "rl_output_tokens", "100000", NULL};
    sim *s = sim_start(tight);
    resp r;
    int ok = 0, limited = 0;

    for (int i = 0; i < 200 && !limited; i++) {
        http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
        if (r.code == 200)
            ok++;
        else if (r.code == 429)
            limited = 1;
        else
            fail_msg("status %ld", r.code);
        if (!limited)
            resp_free(&r);
    }
    assert_true(limited);
    assert_true(ok >= 60 && ok < 70); /* the bucket, plus what refilled meanwhile */
    assert_api_error(&r, 429, "rate_limit_error", "rate limit for this API key of 60 requests per minute");
    assert_string_equal(r.retry_after, "1"); /* less than a second to the next request */
    assert_rl_headers(&r, "60", "100000", "100000");
    assert_string_equal(rl_header(&r, "requests-remaining"), "0");
    resp_free(&r);

    /* another key has its own buckets */
    http(s, "POST", "/v1/messages", api_headers_k2, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(rl_header(&r, "requests-remaining"), "59");
    resp_free(&r);

    json_t *doc = stats(s);
    assert_int_equal(sub_int(doc, "rate_limited", "requests"), 1);
    assert_int_equal(sub_int(doc, "rate_limited", "input_tokens"), 0);
    assert_int_equal(by_status(doc, "429"), 1);
    assert_int_equal(stat_int(doc, "fault_429"), 0);
    assert_int_equal(sub_int(doc, "charged", "requests"), ok + 1); /* the 429 charged nothing */
    assert_int_equal(stat_int(doc, "keys_tracked"), 2);
    assert_int_equal(json_object_size(json_object_get(doc, "requests_by_key")), 2);
    json_decref(doc);

    /* after the retry-after, the key passes again */
    usleep(1100 * 1000);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(rl_header(&r, "requests-remaining"), "0");
    resp_free(&r);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.code, 429);
    resp_free(&r);

    /* /sim/reset fills the buckets again */
    http(s, "POST", "/sim/reset", NULL, "", 0, &r);
    resp_free(&r);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(rl_header(&r, "requests-remaining"), "59");
    resp_free(&r);
    doc = stats(s);
    assert_int_equal(sub_int(doc, "rate_limited", "requests"), 0);
    assert_int_equal(sub_int(doc, "charged", "requests"), 1);
    json_decref(doc);
    sim_stop(s);
}

static void test_http_rate_limits_tokens(void **state)
{
    (void)state;
    char body[512];
    resp r;

    /* input tokens: HELLO is 6; 30 a minute is 0.5 a second */
    static const char *const in30[] = {"rl_input_tokens", "30", NULL};
    sim *s = sim_start(in30);
    for (int i = 0; i < 5; i++) {
        http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
        assert_int_equal(r.code, 200);
        resp_free(&r);
    }
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_api_error(&r, 429, "rate_limit_error", "of 30 input tokens per minute");
    int ra = atoi(r.retry_after); /* 6 tokens at 0.5/s: 12 s, less what refilled meanwhile */
    assert_true(ra >= 11 && ra <= 12);
    assert_rl_headers(&r, "4000", "30", "400000");
    resp_free(&r);
    /* a prompt larger than the whole bucket can never pass */
    char big[1024];
    snprintf(big, sizeof(big),
             "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"%0400d\"}]}", 7);
    http(s, "POST", "/v1/messages", api_headers_k2, big, 0, &r);
    assert_api_error(&r, 429, "rate_limit_error", "104 input tokens, more than the rate limit");
    resp_free(&r);
    json_t *doc = stats(s);
    assert_int_equal(sub_int(doc, "rate_limited", "input_tokens"), 2);
    assert_int_equal(sub_int(doc, "charged", "input_tokens"), 30);
    json_decref(doc);
    sim_stop(s);

    /* output tokens: max_tokens is reserved while the request runs, then
     * corrected to the real output (40) */
    static const char *const out10k[] = {"rl_output_tokens", "10000", "latency", "500ms", NULL};
    s = sim_start(out10k);
    CURLM *m = curl_multi_init();
    CURL *e = curl_easy_init();
    struct curl_slist *hl = NULL;
    char url[128];
    int running = 0;
    resp ra_resp;
    memset(&ra_resp, 0, sizeof(ra_resp));
    aq_buf_init(&ra_resp.body, RESP_BODY_CAP);
    snprintf(url, sizeof(url), "%s/v1/messages", s->base);
    for (size_t i = 0; api_headers[i]; i++)
        hl = curl_slist_append(hl, api_headers[i]);
    hello_max_tokens(body, sizeof(body), 8000);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &ra_resp);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &ra_resp);
    curl_multi_add_handle(m, e);
    json_int_t charged = 0;
    for (int i = 0; i < 100 && charged == 0; i++) { /* until the first request is admitted */
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
        doc = stats(s);
        charged = sub_int(doc, "charged", "requests");
        json_decref(doc);
    }
    assert_int_equal(charged, 1);
    /* 8000 of 10000 reserved: another 8000 does not fit now (answered at once) */
    char body2[512];
    hello_max_tokens(body2, sizeof(body2), 8000);
    int64_t t0 = aq_mono_ms();
    http(s, "POST", "/v1/messages", api_headers, body2, 0, &r);
    assert_true(aq_mono_ms() - t0 < 400);
    assert_api_error(&r, 429, "rate_limit_error", "of 10000 output tokens per minute");
    assert_true(atoi(r.retry_after) >= 30); /* ~6000 short at 166.7/s */
    assert_string_equal(rl_header(&r, "output-tokens-remaining"), "2000");
    resp_free(&r);
    /* more than the limit itself: never */
    hello_max_tokens(body2, sizeof(body2), 20000);
    http(s, "POST", "/v1/messages", api_headers_k2, body2, 0, &r);
    assert_api_error(&r, 429, "rate_limit_error", "20000 output tokens, more than the rate limit");
    resp_free(&r);
    while (running) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    assert_int_equal(code, 200);
    /* its headers show the bucket after the correction to 40 */
    assert_string_equal(rl_header(&ra_resp, "output-tokens-remaining"), "10000"); /* ~9960+, rounded */
    /* so another 8000 fits again */
    hello_max_tokens(body2, sizeof(body2), 8000);
    http(s, "POST", "/v1/messages", api_headers, body2, 0, &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    doc = stats(s);
    assert_int_equal(sub_int(doc, "charged", "requests"), 2);
    assert_int_equal(sub_int(doc, "charged", "output_tokens"), 80);
    assert_int_equal(sub_int(doc, "rate_limited", "output_tokens"), 2);
    json_decref(doc);
    curl_multi_remove_handle(m, e);
    curl_easy_cleanup(e);
    curl_multi_cleanup(m);
    curl_slist_free_all(hl);
    resp_free(&ra_resp);
    sim_stop(s);

    /* report only: nothing refused, the headers still count down */
    static const char *const report[] = {"rl_requests", "2", "rl_enforce", "false", NULL};
    s = sim_start(report);
    for (int i = 0; i < 4; i++) {
        http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
        assert_int_equal(r.code, 200);
        if (i >= 1)
            assert_string_equal(rl_header(&r, "requests-remaining"), "0"); /* 2 a minute, then in debt */
        resp_free(&r);
    }
    doc = stats(s);
    assert_true(json_is_false(json_object_get(doc, "rate_limit_enforced")));
    assert_int_equal(sub_int(doc, "charged", "requests"), 4);
    assert_int_equal(sub_int(doc, "rate_limited", "requests"), 0);
    json_decref(doc);
    sim_stop(s);
}

static void test_http_bad_responses(void **state)
{
    (void)state;
    resp r;
    curl_off_t clen = -1;

    /* the length of the normal answer to HELLO (ids have a fixed length) */
    sim *s = sim_start(NULL);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    size_t full_len = r.body.len;
    resp_free(&r);
    sim_stop(s);

    static const char *const bad_json[] = {"fault_bad_json", "1", NULL};
    s = sim_start(bad_json);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.content_type, "application/json"); /* it claims to be JSON */
    json_t *doc = json_loads(r.body.data, 0, NULL);
    assert_null(doc);
    assert_true(strncmp(r.body.data, "<html>", 6) == 0);
    assert_rl_headers(&r, "4000", "2000000", "400000");
    resp_free(&r);
    /* invalid requests are still 400 */
    http(s, "POST", "/v1/messages", api_headers, "{}", 0, &r);
    assert_int_equal(r.code, 400);
    resp_free(&r);
    doc = stats(s);
    assert_int_equal(stat_int(doc, "fault_bad_json"), 1);
    assert_int_equal(by_status(doc, "200"), 1);
    assert_int_equal(stat_int(doc, "output_tokens_total"), 0);  /* no usable answer */
    assert_int_equal(sub_int(doc, "charged", "output_tokens"), 40); /* charged like the answer */
    json_decref(doc);
    sim_stop(s);

    static const char *const truncated[] = {"fault_truncated", "1", NULL};
    s = sim_start(truncated);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.rc, CURLE_OK); /* a complete response ... */
    assert_int_equal(r.code, 200);
    curl_easy_getinfo(s->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
    assert_int_equal(clen, (curl_off_t)r.body.len); /* ... whose Content-Length is the cut body */
    assert_true(r.body.len <= full_len / 2 && r.body.len + 4 > full_len / 2);
    assert_true(strncmp(r.body.data, "{\"id\":\"msg_", 11) == 0);
    json_error_t jerr;
    assert_null(json_loads(r.body.data, 0, &jerr));
    resp_free(&r);
    /* the connection is still good for the next request */
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    doc = stats(s);
    assert_int_equal(stat_int(doc, "fault_truncated"), 2);
    json_decref(doc);
    sim_stop(s);

    static const char *const huge[] = {"fault_huge", "1", NULL}; /* huge_bytes: 16MiB by default */
    s = sim_start(huge);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 30000, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_true(r.body.len > 16 * 1024 * 1024);
    doc = json_loadb(r.body.data, r.body.len, 0, &jerr);
    if (!doc)
        fail_msg("fault_huge body is not JSON: %s", jerr.text);
    const char *text = json_string_value(json_object_get(json_array_get(json_object_get(doc, "content"), 0), "text"));
    size_t tlen = strlen(text);
    assert_true(tlen > 16 * 1024 * 1024);
    assert_true(strncmp(text, "echo: hi there | ", 17) == 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "usage"), "output_tokens")),
                     (json_int_t)((tlen + 3) / 4));
    json_decref(doc);
    resp_free(&r);
    doc = stats(s);
    assert_int_equal(stat_int(doc, "fault_huge"), 1);
    json_decref(doc);
    sim_stop(s);

    static const char *const small_huge[] = {"fault_huge", "1", "huge_bytes", "100KiB", NULL};
    s = sim_start(small_huge);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    assert_true(r.body.len > 100 * 1024 && r.body.len < 101 * 1024);
    doc = json_loadb(r.body.data, r.body.len, 0, &jerr);
    assert_non_null(doc);
    json_decref(doc);
    resp_free(&r);
    sim_stop(s);
}

static void test_http_body_cap(void **state)
{
    (void)state;
    static const char *const small[] = {"max_body_bytes", "1KiB", NULL};
    sim *s = sim_start(small);
    resp r;
    char *big = malloc(4096);
    memset(big, 'a', 4095);
    big[4095] = '\0';
    memcpy(big, "{\"x\":\"", 6);
    http(s, "POST", "/v1/messages", api_headers, big, 0, &r);
    assert_int_equal(r.code, 413);
    resp_free(&r);
    free(big);
    /* the server is still fine */
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    sim_stop(s);
}

/* Prompt caching over HTTP: the first call with a marked system prompt is a
 * cache write, the same prefix again a cache read (on a new connection too:
 * the cache is the server's, not a thread's), another model a write again,
 * and /sim/reset forgets. */
static json_int_t usage_of(const resp *r, const char *name)
{
    json_t *doc = json_loads(r->body.data, 0, NULL);
    assert_non_null(doc);
    json_int_t v = json_integer_value(json_object_get(json_object_get(doc, "usage"), name));
    json_decref(doc);
    return v;
}

static void test_http_prompt_cache(void **state)
{
    (void)state;
    sim *s = sim_start(NULL);
    static char body[8192], sys[4001];
    memset(sys, 'p', 4000); /* 1000 tokens */
    sys[4000] = '\0';
    static const char *const fmt =
        "{\"model\":\"%s\",\"max_tokens\":64,\"system\":[{\"type\":\"text\",\"text\":\"%s\","
        "\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}";
    static const struct {
        const char *model, *question;
        bool new_connection, reset_first;
        json_int_t creation, read;
    } steps[] = {
        {"claude-haiku-4-5", "hi there", false, false, 1000, 0},
        {"claude-haiku-4-5", "hi there", false, false, 0, 1000},
        {"claude-haiku-4-5", "something else", true, false, 0, 1000}, /* same prefix */
        {"claude-sonnet-4-6", "hi there", false, false, 1000, 0},     /* per model */
        {"claude-haiku-4-5", "hi there", false, true, 1000, 0},       /* reset forgets */
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        resp r;
        if (steps[i].reset_first) {
            http(s, "POST", "/sim/reset", NULL, "", 0, &r);
            assert_int_equal(r.code, 200);
            resp_free(&r);
        }
        if (steps[i].new_connection) {
            curl_easy_cleanup(s->h);
            s->h = curl_easy_init();
        }
        snprintf(body, sizeof(body), fmt, steps[i].model, sys, steps[i].question);
        http(s, "POST", "/v1/messages", api_headers, body, 0, &r);
        if (r.code != 200)
            fail_msg("step %zu: %ld %s", i, r.code, r.body.data ? r.body.data : "");
        json_int_t c = usage_of(&r, "cache_creation_input_tokens");
        json_int_t rd = usage_of(&r, "cache_read_input_tokens");
        if (c != steps[i].creation || rd != steps[i].read)
            fail_msg("step %zu: creation %lld read %lld", i, (long long)c, (long long)rd);
        /* the message: 4 overhead + tokens(question) */
        assert_int_equal(usage_of(&r, "input_tokens"),
                         4 + ((json_int_t)strlen(steps[i].question) + 3) / 4);
        resp_free(&r);
    }
    /* Without a mark: never cached. */
    for (int i = 0; i < 2; i++) {
        resp r;
        http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
        assert_int_equal(r.code, 200);
        assert_int_equal(usage_of(&r, "cache_creation_input_tokens"), 0);
        assert_int_equal(usage_of(&r, "cache_read_input_tokens"), 0);
        resp_free(&r);
    }
    sim_stop(s);
}

/* ------------------------------------------------------------- tool use */

#define W_SCHEMA "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}},\"required\":[\"city\",\"days\"]}"

static json_t *post_json(sim *s, json_t *req, long want_code)
{
    char *body = json_dumps(req, JSON_COMPACT);
    resp r;
    http(s, "POST", "/v1/messages", api_headers, body, 0, &r);
    if (r.code != want_code)
        fail_msg("status %ld, wanted %ld: %s", r.code, want_code, r.body.data ? r.body.data : "");
    json_t *doc = json_loads(r.body.data, 0, NULL);
    assert_non_null(doc);
    free(body);
    resp_free(&r);
    return doc;
}

static json_int_t usage_json(json_t *doc, const char *name)
{
    return json_integer_value(json_object_get(json_object_get(doc, "usage"), name));
}

/* The mark moves to the last block of the last message. */
static void move_mark(json_t *msgs)
{
    static json_t *cc;
    size_t i;
    json_t *m, *b;
    json_array_foreach(msgs, i, m) {
        size_t j;
        json_array_foreach(json_object_get(m, "content"), j, b)
            json_object_del(b, "cache_control");
    }
    json_t *c = json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "content");
    cc = json_pack("{s:s}", "type", "ephemeral");
    json_object_set_new(json_array_get(c, json_array_size(c) - 1), "cache_control", cc);
}

/* An agent loop over HTTP: 2 steps of 2 parallel calls, then end_turn that
 * echoes the results; tools + system marked, the third mark moving to the
 * last message each step. Each step reads the previous step's whole prompt
 * from the cache (the 20-block lookback finds it) and writes only the new
 * part; the counters see the calls and the results. */
static void test_http_tool_run_and_cache_breakpoints(void **state)
{
    (void)state;
    static const char *const opts[] = {"tool_steps", "2", "tool_parallel", "2", NULL};
    sim *s = sim_start(opts);
    char sys[4001];
    memset(sys, 's', 4000); /* 1000 tokens */
    sys[4000] = '\0';
    json_t *req = json_pack("{s:s, s:i, s:[{s:s, s:s, s:{s:s}}], s:[{s:s, s:s, s:o}, {s:s, s:o, s:{s:s}}], s:[{s:s, s:[{s:s, s:s}]}]}",
                            "model", "claude-haiku-4-5", "max_tokens", 1000,
                            "system", "type", "text", "text", sys, "cache_control", "type", "ephemeral",
                            "tools", "name", "get_weather", "description", "weather", "input_schema",
                            json_loads(W_SCHEMA, 0, NULL), "name", "search", "input_schema",
                            json_pack("{s:s}", "type", "object"), "cache_control", "type", "ephemeral",
                            "messages", "role", "user", "content", "type", "text", "text", "plan a trip");
    assert_non_null(req);
    json_t *msgs = json_object_get(req, "messages");
    json_int_t prev_total = 0;
    json_t *doc = NULL;
    for (int step = 0; step < 3; step++) {
        move_mark(msgs);
        json_decref(doc);
        doc = post_json(s, req, 200);
        json_int_t in = usage_json(doc, "input_tokens"), cw = usage_json(doc, "cache_creation_input_tokens");
        json_int_t cr = usage_json(doc, "cache_read_input_tokens"), total = in + cw + cr;
        if (in != 0 || cr != prev_total || cw != total - prev_total)
            fail_msg("step %d: input %lld, write %lld, read %lld (previous prompt %lld)", step, (long long)in,
                     (long long)cw, (long long)cr, (long long)prev_total);
        assert_true(total > 1000);
        prev_total = total;
        const char *stop = json_string_value(json_object_get(doc, "stop_reason"));
        if (step == 2) {
            assert_string_equal(stop, "end_turn");
            const char *text = json_string_value(json_object_get(json_array_get(json_object_get(doc, "content"), 0), "text"));
            assert_non_null(strstr(text, "Tool results: get_weather: sunny in get_weather; search: sunny in search"));
            break;
        }
        assert_string_equal(stop, "tool_use");
        json_t *content = json_object_get(doc, "content");
        json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "assistant", "content", content));
        json_t *results = json_array();
        size_t i;
        json_t *b;
        json_array_foreach(content, i, b) {
            if (strcmp(json_string_value(json_object_get(b, "type")), "tool_use") != 0)
                continue;
            char text[64];
            snprintf(text, sizeof(text), "sunny in %s", json_string_value(json_object_get(b, "name")));
            json_array_append_new(results, json_pack("{s:s, s:s, s:s}", "type", "tool_result", "tool_use_id",
                                                     json_string_value(json_object_get(b, "id")), "content", text));
        }
        assert_int_equal(json_array_size(results), 2);
        json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "user", "content", results));
    }
    json_decref(doc);

    /* the same last request again: all of it read */
    doc = post_json(s, req, 200);
    assert_int_equal(usage_json(doc, "cache_read_input_tokens"), prev_total);
    assert_int_equal(usage_json(doc, "cache_creation_input_tokens"), 0);
    json_decref(doc);

    json_t *st = stats(s);
    assert_int_equal(stat_int(st, "tool_use_blocks_total"), 4);
    assert_int_equal(stat_int(st, "tool_result_requests_total"), 3);
    assert_int_equal(stat_int(st, "tool_inputs_spoiled_total"), 0);
    json_decref(st);

    /* the API's 400 for a tool_use left unanswered, over HTTP */
    json_array_remove(msgs, json_array_size(msgs) - 1);
    resp r;
    char *body = json_dumps(req, JSON_COMPACT);
    http(s, "POST", "/v1/messages", api_headers, body, 0, &r);
    assert_api_error(&r, 400, "invalid_request_error", "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_01");
    resp_free(&r);
    free(body);
    json_decref(req);
    sim_stop(s);
}

/* fault_tool_schema from the configuration: counted, and repaired. */
static void test_http_tool_schema_fault(void **state)
{
    (void)state;
    static const char *const opts[] = {"tool_steps", "1", "fault_tool_schema", "1", "tool_text", "false", NULL};
    sim *s = sim_start(opts);
    json_t *req = json_pack("{s:s, s:i, s:[{s:s, s:o}], s:[{s:s, s:s}]}", "model", "claude-haiku-4-5",
                            "max_tokens", 500, "tools", "name", "get_weather", "input_schema",
                            json_loads(W_SCHEMA, 0, NULL), "messages", "role", "user", "content", "weather?");
    json_t *msgs = json_object_get(req, "messages");
    json_t *doc = post_json(s, req, 200);
    json_t *use = json_array_get(json_object_get(doc, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(use, "type")), "tool_use");
    assert_null(json_object_get(json_object_get(use, "input"), "city")); /* the first required one dropped */
    json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "assistant", "content", json_object_get(doc, "content")));
    json_array_append_new(msgs, json_pack("{s:s, s:[{s:s, s:s, s:s, s:b}]}", "role", "user", "content", "type",
                                          "tool_result", "tool_use_id", json_string_value(json_object_get(use, "id")),
                                          "content", "city: required", "is_error", 1));
    json_decref(doc);
    doc = post_json(s, req, 200);
    use = json_array_get(json_object_get(doc, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "stop_reason")), "tool_use");
    assert_true(json_is_string(json_object_get(json_object_get(use, "input"), "city")));
    assert_true(json_is_integer(json_object_get(json_object_get(use, "input"), "days")));
    json_decref(doc);
    json_t *st = stats(s);
    assert_int_equal(stat_int(st, "tool_use_blocks_total"), 2);
    assert_int_equal(stat_int(st, "tool_inputs_spoiled_total"), 1);
    json_decref(st);
    json_decref(req);
    sim_stop(s);
}


/* ------------------------------------------------------------ issue 16 */

#define MAX_EVENTS 4096

/* A streamed body: the event names in order, and the message they build
 * (as the SDK builds it: deltas appended, partial_json parsed at the block's
 * stop, message_delta's stop and usage). Fails on anything malformed. */
typedef struct sse {
    size_t n;
    char type[MAX_EVENTS][24];
    json_t *message;
    bool error_event; /* an "error" event came */
    json_t *error;
} sse;

static void sse_parse(const char *body, size_t len, sse *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *sep = strstr(p, "\n\n");
        assert_non_null(sep);
        char name[24];
        const char *nl = memchr(p, '\n', (size_t)(sep - p));
        assert_non_null(nl);
        assert_true(strncmp(p, "event: ", 7) == 0 && nl - p - 7 < (long)sizeof(name));
        snprintf(name, sizeof(name), "%.*s", (int)(nl - p - 7), p + 7);
        assert_true(strncmp(nl + 1, "data: ", 6) == 0);
        json_t *d = json_loadb(nl + 7, (size_t)(sep - nl - 7), 0, NULL);
        if (!d)
            fail_msg("event %s: data is not JSON: %.*s", name, (int)(sep - nl - 7), nl + 7);
        assert_string_equal(json_string_value(json_object_get(d, "type")), name);
        assert_true(out->n < MAX_EVENTS);
        snprintf(out->type[out->n++], sizeof(out->type[0]), "%s", name);
        json_t *content = out->message ? json_object_get(out->message, "content") : NULL;
        if (strcmp(name, "message_start") == 0) {
            out->message = json_deep_copy(json_object_get(d, "message"));
        } else if (strcmp(name, "content_block_start") == 0) {
            assert_int_equal(json_integer_value(json_object_get(d, "index")), json_array_size(content));
            json_array_append(content, json_object_get(d, "content_block"));
        } else if (strcmp(name, "content_block_delta") == 0) {
            json_t *b = json_array_get(content, (size_t)json_integer_value(json_object_get(d, "index")));
            json_t *delta = json_object_get(d, "delta");
            const char *key = json_object_get(delta, "text") ? "text" : "partial_json";
            const char *have = json_string_value(json_object_get(b, key));
            char *cat = NULL;
            assert_true(asprintf(&cat, "%s%s", have ? have : "", json_string_value(json_object_get(delta, key))) > 0);
            json_object_set_new(b, key, json_string(cat));
            free(cat);
        } else if (strcmp(name, "content_block_stop") == 0) {
            json_t *b = json_array_get(content, (size_t)json_integer_value(json_object_get(d, "index")));
            json_t *pj = json_object_get(b, "partial_json");
            if (pj) {
                json_t *in = json_loads(json_string_value(pj), 0, NULL);
                assert_non_null(in);
                json_object_set_new(b, "input", in);
                json_object_del(b, "partial_json");
            }
        } else if (strcmp(name, "message_delta") == 0) {
            json_t *delta = json_object_get(d, "delta");
            json_object_set(out->message, "stop_reason", json_object_get(delta, "stop_reason"));
            json_object_set(out->message, "stop_sequence", json_object_get(delta, "stop_sequence"));
            json_object_set(out->message, "usage", json_object_get(d, "usage"));
        } else if (strcmp(name, "error") == 0) {
            out->error_event = true;
            out->error = json_incref(d);
        }
        json_decref(d);
        p = sep + 2;
    }
}

static void sse_free(sse *e)
{
    json_decref(e->message);
    json_decref(e->error);
}

/* The event names without repeated deltas and pings: the API's shape. */
static void sse_shape(const sse *e, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->type[i], "ping") == 0)
            continue;
        if (i && strcmp(e->type[i], "content_block_delta") == 0 && strcmp(e->type[i - 1], "content_block_delta") == 0)
            continue;
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? " " : "", e->type[i]);
    }
}

static char *with_stream(const char *body)
{
    char *b = NULL;
    assert_true(asprintf(&b, "{\"stream\":true,%s", body + 1) > 0);
    return b;
}

/* Streamed and plain answers of the same request: the same message (ids apart). */
static void assert_stream_matches(sim *s, const char *body, const char *shape)
{
    resp plain, st;
    sse e;
    char got[1024];
    char *sb = with_stream(body);
    http(s, "POST", "/v1/messages", api_headers, body, 0, &plain);
    assert_int_equal(plain.code, 200);
    http(s, "POST", "/v1/messages", api_headers, sb, 0, &st);
    assert_int_equal(st.code, 200);
    assert_string_equal(st.content_type, "text/event-stream; charset=utf-8");
    assert_true(st.request_id[0] != '\0');
    sse_parse(st.body.data, st.body.len, &e);
    sse_shape(&e, got, sizeof(got));
    assert_string_equal(got, shape);
    assert_string_equal(e.type[1], "ping"); /* right after message_start */
    json_t *want = json_loads(plain.body.data, 0, NULL);
    assert_non_null(want);
    json_object_del(want, "id");
    json_object_del(e.message, "id");
    if (!json_equal(want, e.message)) {
        char *a = json_dumps(want, JSON_COMPACT), *b = json_dumps(e.message, JSON_COMPACT);
        fail_msg("streamed message differs:\n plain  %s\n stream %s", a, b);
    }
    json_decref(want);
    sse_free(&e);
    resp_free(&plain);
    resp_free(&st);
    free(sb);
}

static void test_http_stream_sequence_and_content(void **state)
{
    (void)state;
    static const char *const opts[] = {"output_tokens", "300", NULL};
    sim *s = sim_start(opts);
    const char *text_shape = "message_start content_block_start content_block_delta content_block_stop "
                             "message_delta message_stop";
    assert_stream_matches(s, HELLO, text_shape);
    /* cut by max_tokens, and by a stop sequence */
    assert_stream_matches(s, "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                          text_shape);
    assert_stream_matches(s, "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"stop_sequences\":[\" | \"],"
                             "\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9llo \\\"q\\\"\"}]}",
                          text_shape);
    /* tool use: a text block and two tool_use blocks (input_json_delta) */
    const char *tools = "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":400,\"tools\":[{\"name\":\"get_weather\","
                        "\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
                        "\"days\":{\"type\":\"integer\"}},\"required\":[\"city\",\"days\"]}}],\"messages\":[{\"role\":"
                        "\"user\",\"content\":\"weather? [sim tool_parallel=2]\"}]}";
    assert_stream_matches(s, tools,
                          "message_start content_block_start content_block_delta content_block_stop "
                          "content_block_start content_block_delta content_block_stop content_block_start "
                          "content_block_delta content_block_stop message_delta message_stop");
    /* prefill, streamed */
    assert_stream_matches(s, "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\","
                             "\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"echo:\"}]}",
                          text_shape);
    /* the streamed answers count like the others */
    json_t *doc = stats(s);
    assert_int_equal(by_status(doc, "200"), 10);
    json_decref(doc);
    sim_stop(s);
}

/* 300 streams at once on one thread, each paced to about 1 s (40 tokens at
 * 40 tokens/s): together they take about 1 s, not 300 (timers, no sleeps). */
static void test_http_stream_pacing_concurrent(void **state)
{
    (void)state;
    enum { N = 300 };
    static const char *const opts[] = {"threads", "1", "stream_tokens_per_second", "40", "stream_ping_interval",
                                       "200ms", NULL};
    sim *s = sim_start(opts);
    char url[128];
    char *body = with_stream(HELLO);
    CURLM *m = curl_multi_init();
    CURL *h[N];
    resp r[N];
    struct curl_slist *hl = NULL;
    for (size_t i = 0; api_headers[i]; i++)
        hl = curl_slist_append(hl, api_headers[i]);
    snprintf(url, sizeof(url), "%s/v1/messages", s->base);
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        aq_buf_init(&r[i].body, 1 << 20);
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &r[i]);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT_MS, 30000L);
        curl_multi_add_handle(m, h[i]);
    }
    int64_t t0 = aq_mono_ms();
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int64_t took = aq_mono_ms() - t0;
    int ok = 0;
    size_t pings = 0;
    for (int i = 0; i < N; i++) {
        long code = 0;
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &code);
        sse e;
        if (code == 200) {
            sse_parse(r[i].body.data, r[i].body.len, &e);
            ok += strcmp(e.type[e.n - 1], "message_stop") == 0;
            for (size_t k = 0; k < e.n; k++)
                pings += strcmp(e.type[k], "ping") == 0;
            sse_free(&e);
        }
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
        aq_buf_free(&r[i].body);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(hl);
    free(body);
    assert_int_equal(ok, N);
    /* 40 deltas of one token, 25 ms apart: about 1 s each, all at once */
    if (took < 900 || took > 15000)
        fail_msg("%d paced streams took %lld ms", N, (long long)took);
    assert_true(pings >= (size_t)N * 3); /* the first one, and every 200 ms of a 1 s stream */
    sim_stop(s);
}

static void test_http_stream_faults(void **state)
{
    (void)state;
    static const char *const opts[] = {"output_tokens", "200", NULL};
    sim *s = sim_start(opts);
    char *body = with_stream(HELLO);
    const char *err_h[] = {"x-api-key: k1", "anthropic-version: 2023-06-01", "content-type: application/json",
                           "x-sim-fault: stream_error", NULL};
    const char *cut_h[] = {"x-api-key: k1", "anthropic-version: 2023-06-01", "content-type: application/json",
                           "x-sim-fault: stream_cut", NULL};
    resp r;
    sse e;
    /* an error event after the 200, halfway, and no message_stop */
    http(s, "POST", "/v1/messages", err_h, body, 0, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.code, 200);
    sse_parse(r.body.data, r.body.len, &e);
    assert_true(e.error_event);
    assert_string_equal(e.type[e.n - 1], "error");
    assert_string_equal(json_string_value(json_object_get(json_object_get(e.error, "error"), "type")),
                        "overloaded_error");
    const char *partial = json_string_value(json_object_get(json_array_get(json_object_get(e.message, "content"), 0), "text"));
    assert_true(partial && strlen(partial) >= 128 && strlen(partial) < 256); /* about half of max_tokens 64 */
    sse_free(&e);
    resp_free(&r);
    /* a cut: the connection closes before message_stop (curl: a broken chunked body) */
    http(s, "POST", "/v1/messages", cut_h, body, 0, &r);
    assert_int_not_equal(r.rc, CURLE_OK);
    assert_non_null(strstr(r.body.data, "event: message_start"));
    assert_null(strstr(r.body.data, "event: message_stop"));
    resp_free(&r);
    json_t *doc = stats(s);
    assert_int_equal(stat_int(doc, "fault_stream_error"), 1);
    assert_int_equal(stat_int(doc, "fault_stream_cut"), 1);
    json_decref(doc);
    sim_stop(s);
    /* the same as shares of every stream */
    static const char *const shares[] = {"fault_stream_cut", "1", NULL};
    s = sim_start(shares);
    http(s, "POST", "/v1/messages", api_headers, body, 0, &r);
    assert_int_not_equal(r.rc, CURLE_OK);
    resp_free(&r);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r); /* a plain request is not a stream */
    assert_int_equal(r.code, 200);
    resp_free(&r);
    sim_stop(s);
    free(body);
}

static void test_http_count_tokens_and_models(void **state)
{
    (void)state;
    sim *s = sim_start(NULL);
    const char *get_h[] = {"x-api-key: k1", "anthropic-version: 2023-06-01", NULL};
    resp r, a;
    /* count_tokens: the input tokens an answer bills, with tools too */
    const char *tools_body = "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"system\":\"be brief\",\"tools\":[{"
                             "\"name\":\"t\",\"description\":\"d\",\"input_schema\":{\"type\":\"object\"}}],\"messages\":"
                             "[{\"role\":\"user\",\"content\":\"count these words\"}]}";
    http(s, "POST", "/v1/messages", api_headers, tools_body, 0, &a);
    assert_int_equal(a.code, 200);
    json_t *ad = json_loads(a.body.data, 0, NULL);
    json_int_t billed = json_integer_value(json_object_get(json_object_get(ad, "usage"), "input_tokens"));
    json_decref(ad);
    resp_free(&a);
    http(s, "POST", "/v1/messages/count_tokens", api_headers,
         "{\"model\":\"claude-haiku-4-5\",\"system\":\"be brief\",\"tools\":[{\"name\":\"t\",\"description\":\"d\","
         "\"input_schema\":{\"type\":\"object\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"count these words\"}]}",
         0, &r);
    assert_int_equal(r.code, 200);
    assert_true(r.request_id[0] != '\0');
    char want[64];
    snprintf(want, sizeof(want), "{\"input_tokens\":%lld}", (long long)billed);
    assert_string_equal(r.body.data, want);
    resp_free(&r);
    http(s, "POST", "/v1/messages/count_tokens", api_headers, HELLO, 0, &r); /* max_tokens is not a field here */
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body.data, "max_tokens: Extra inputs are not permitted"));
    assert_string_equal(r.should_retry, "false");
    resp_free(&r);
    http(s, "POST", "/v1/messages/count_tokens", NULL, "{}", 0, &r);
    assert_int_equal(r.code, 401);
    resp_free(&r);

    /* models: the list, its pages, one model, an unknown one */
    http(s, "GET", "/v1/models", get_h, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    json_t *doc = json_loads(r.body.data, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(doc, "data")), 7);
    assert_false(json_is_true(json_object_get(doc, "has_more")));
    assert_string_equal(json_string_value(json_object_get(doc, "first_id")), "claude-haiku-4-5");
    assert_string_equal(json_string_value(json_object_get(doc, "last_id")), "claude-opus-4-8");
    json_t *m0 = json_array_get(json_object_get(doc, "data"), 0);
    assert_string_equal(json_string_value(json_object_get(m0, "type")), "model");
    assert_string_equal(json_string_value(json_object_get(m0, "display_name")), "Claude Haiku 4.5");
    assert_non_null(json_string_value(json_object_get(m0, "created_at")));
    json_decref(doc);
    resp_free(&r);
    http(s, "GET", "/v1/models?limit=3&after_id=claude-sonnet-4-5", get_h, NULL, 0, &r);
    doc = json_loads(r.body.data, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(doc, "data")), 3);
    assert_true(json_is_true(json_object_get(doc, "has_more")));
    assert_string_equal(json_string_value(json_object_get(doc, "first_id")), "claude-sonnet-4-6");
    assert_string_equal(json_string_value(json_object_get(doc, "last_id")), "claude-opus-4-6");
    json_decref(doc);
    resp_free(&r);
    http(s, "GET", "/v1/models?limit=2&before_id=claude-sonnet-4-6", get_h, NULL, 0, &r);
    doc = json_loads(r.body.data, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "first_id")), "claude-haiku-4-5");
    assert_string_equal(json_string_value(json_object_get(doc, "last_id")), "claude-sonnet-4-5");
    assert_false(json_is_true(json_object_get(doc, "has_more")));
    json_decref(doc);
    resp_free(&r);
    http(s, "GET", "/v1/models?limit=0", get_h, NULL, 0, &r);
    assert_int_equal(r.code, 400);
    resp_free(&r);
    http(s, "GET", "/v1/models/claude-opus-4-8", get_h, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body.data, "{\"type\":\"model\",\"id\":\"claude-opus-4-8\",\"display_name\":\"Claude Opus 4.8\","
                                     "\"created_at\":\"2025-01-01T00:00:00Z\"}");
    resp_free(&r);
    http(s, "GET", "/v1/models/claude-nope-1", get_h, NULL, 0, &r);
    assert_int_equal(r.code, 404);
    assert_non_null(strstr(r.body.data, "\"type\":\"not_found_error\",\"message\":\"model: claude-nope-1\""));
    assert_string_equal(r.should_retry, "false");
    assert_true(r.request_id[0] != '\0');
    resp_free(&r);
    http(s, "POST", "/v1/models", get_h, "{}", 0, &r);
    assert_int_equal(r.code, 405);
    resp_free(&r);
    sim_stop(s);
}

static void test_http_auth_version_strictness(void **state)
{
    (void)state;
    static const char *const opts[] = {"keys", "good", "retry_after", "3", NULL};
    sim *s = sim_start(opts);
    const char *bearer[] = {"Authorization: Bearer good", "anthropic-version: 2026-10-21",
                            "content-type: application/json", NULL};
    const char *wrong[] = {"Authorization: Bearer bad", "anthropic-version: 2023-06-01",
                           "content-type: application/json", NULL};
    const char *none[] = {"anthropic-version: 2023-06-01", "content-type: application/json", NULL};
    const char *badver[] = {"x-api-key: good", "anthropic-version: 2024-10-22", "content-type: application/json", NULL};
    const char *nover[] = {"x-api-key: good", "content-type: application/json", NULL};
    const char *good[] = {"x-api-key: good", "anthropic-version: 2023-06-01", "content-type: application/json", NULL};
    resp r;
    http(s, "POST", "/v1/messages", bearer, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    http(s, "POST", "/v1/messages", wrong, HELLO, 0, &r);
    assert_int_equal(r.code, 401);
    assert_non_null(strstr(r.body.data, "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}"));
    assert_string_equal(r.should_retry, "false");
    resp_free(&r);
    http(s, "POST", "/v1/messages", none, HELLO, 0, &r);
    assert_int_equal(r.code, 401);
    assert_non_null(strstr(r.body.data, "x-api-key header is required"));
    resp_free(&r);
    http(s, "POST", "/v1/messages", badver, HELLO, 0, &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body.data, "\"invalid_request_error\",\"message\":\"anthropic-version: \\\"2024-10-22\\\" is not a valid version\""));
    resp_free(&r);
    http(s, "POST", "/v1/messages", nover, HELLO, 0, &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body.data, "anthropic-version: header is required"));
    resp_free(&r);
    /* unknown top-level field, unknown tool_choice type, a tool without input_schema */
    http(s, "POST", "/v1/messages", good,
         "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"speling\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         0, &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body.data, "\"message\":\"speling: Extra inputs are not permitted\""));
    resp_free(&r);
    http(s, "POST", "/v1/messages", good,
         "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"tools\":[{\"name\":\"t\",\"input_schema\":{\"type\":\"object\"}}],"
         "\"tool_choice\":{\"type\":\"sometimes\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body.data, "tool_choice: Input tag 'sometimes'"));
    resp_free(&r);
    http(s, "POST", "/v1/messages", good,
         "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"tools\":[{\"name\":\"t\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         0, &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body.data, "tools.0.custom.input_schema: Field required"));
    resp_free(&r);
    /* steered answers: the status, its error type, and the hints */
    static const struct {
        const char *fault;
        long code;
        const char *type, *retry, *retry_after;
    } steer[] = {
        {"403", 403, "permission_error", "false", ""}, {"409", 409, "conflict_error", "true", ""},
        {"413", 413, "request_too_large", "false", ""}, {"429", 429, "rate_limit_error", "true", "3"},
        {"500", 500, "api_error", "true", ""},          {"529", 529, "overloaded_error", "true", "3"},
        {"404", 404, "not_found_error", "false", ""},
    };
    for (size_t i = 0; i < sizeof(steer) / sizeof(steer[0]); i++) {
        char fh[64], want[96];
        snprintf(fh, sizeof(fh), "x-sim-fault: %s", steer[i].fault);
        const char *h[] = {"x-api-key: good", "anthropic-version: 2023-06-01", "content-type: application/json", fh, NULL};
        http(s, "POST", "/v1/messages", h, HELLO, 0, &r);
        assert_int_equal(r.code, steer[i].code);
        snprintf(want, sizeof(want), "\"error\":{\"type\":\"%s\"", steer[i].type);
        if (!strstr(r.body.data, want))
            fail_msg("x-sim-fault %s: %s", steer[i].fault, r.body.data);
        assert_string_equal(r.should_retry, steer[i].retry);
        assert_string_equal(r.retry_after, steer[i].retry_after);
        assert_true(r.request_id[0] != '\0');
        resp_free(&r);
    }
    const char *bad_steer[] = {"x-api-key: good", "anthropic-version: 2023-06-01", "content-type: application/json",
                               "x-sim-fault: 418", NULL};
    http(s, "POST", "/v1/messages", bad_steer, HELLO, 0, &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body.data, "x-sim-fault: not one of"));
    resp_free(&r);
    /* the plain answer carries no hints */
    http(s, "POST", "/v1/messages", good, HELLO, 0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.should_retry, "");
    resp_free(&r);
    sim_stop(s);
    /* a 529 share: retry-after from the option */
    static const char *const f529[] = {"fault_529", "1", "retry_after", "2", NULL};
    s = sim_start(f529);
    http(s, "POST", "/v1/messages", api_headers, HELLO, 0, &r);
    assert_int_equal(r.code, 529);
    assert_string_equal(r.retry_after, "2");
    assert_string_equal(r.should_retry, "true");
    resp_free(&r);
    sim_stop(s);
}

static void test_bad_config_is_refused(void **state)
{
    (void)state;
    aq_sim_config cfg = {0};
    aq_sim_server *srv = NULL;
    aq_err err = {0};
    assert_int_equal(aq_config_load(aq_sim_options, &cfg, 0, NULL, NULL, &err), AQ_OK);
    aq_config_set(aq_sim_options, &cfg, "listen", "127.0.0.1:0", "test", &err);
    aq_config_set(aq_sim_options, &cfg, "fault_500", "0.7", "test", &err);
    aq_config_set(aq_sim_options, &cfg, "fault_529", "0.7", "test", &err);
    assert_int_equal(aq_sim_server_new(&cfg, &srv, &err), AQ_CONFIG);
    assert_null(srv);
    aq_config_set(aq_sim_options, &cfg, "fault_529", "0", "test", &err);
    aq_config_set(aq_sim_options, &cfg, "fault_bad_json", "0.2", "test", &err);
    aq_config_set(aq_sim_options, &cfg, "fault_huge", "0.2", "test", &err);
    assert_int_equal(aq_sim_server_new(&cfg, &srv, &err), AQ_CONFIG); /* 0.7 + 0.2 + 0.2 */
    assert_non_null(strstr(err.msg, "more than 1"));
    aq_config_set(aq_sim_options, &cfg, "fault_500", "0", "test", &err);
    aq_config_set(aq_sim_options, &cfg, "output_tokens", "5-2", "test", &err);
    assert_int_equal(aq_sim_server_new(&cfg, &srv, &err), AQ_CONFIG);
    aq_config_set(aq_sim_options, &cfg, "output_tokens", "40", "test", &err);
    aq_config_set(aq_sim_options, &cfg, "listen", "nonsense", "test", &err);
    assert_int_equal(aq_sim_server_new(&cfg, &srv, &err), AQ_CONFIG);
    aq_sim_server_destroy(NULL);
    aq_config_free(aq_sim_options, &cfg);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_success_and_errors),
        cmocka_unit_test(test_http_faults_and_latency),
        cmocka_unit_test(test_http_rate_limits_requests),
        cmocka_unit_test(test_http_rate_limits_tokens),
        cmocka_unit_test(test_http_bad_responses),
        cmocka_unit_test(test_http_body_cap),
        cmocka_unit_test(test_http_prompt_cache),
        cmocka_unit_test(test_http_tool_run_and_cache_breakpoints),
        cmocka_unit_test(test_http_tool_schema_fault),
        cmocka_unit_test(test_http_stream_sequence_and_content),
        cmocka_unit_test(test_http_stream_pacing_concurrent),
        cmocka_unit_test(test_http_stream_faults),
        cmocka_unit_test(test_http_count_tokens_and_models),
        cmocka_unit_test(test_http_auth_version_strictness),
        cmocka_unit_test(test_bad_config_is_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
