/* sim_load: a load generator for agentq-sim (or anything that speaks
 * POST /v1/messages). T threads, each with its own libevent loop, hold C
 * keep-alive connections in total (evhttp client) and send N requests, one in
 * flight per connection. Prints requests/s, latency percentiles, errors by
 * kind and status, the client's own CPU per request, and the simulator's
 * /sim/stats peaks.
 *
 * agentq-sim enforces its rate limits per API key (rl_requests etc., 4,000
 * requests a minute by default), so a throughput run either spreads its
 * requests over many keys (--keys N: "<key>-0" ... "<key>-N-1", round robin)
 * or runs the simulator with --rl_enforce=false. 429s are counted, and make
 * the exit status 1 like every other error.
 *
 *   sim_load --port 8090 -c 256 -n 200000 -t 1 --keys 100
 *   sim_load --port-file /tmp/sim.port -c 10000 -n 10000 --timeout 30 --keys 100
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/clock.h"

#define LOAD_MAX_THREADS 64
#define LOAD_STATS_BODY_MAX (1024 * 1024) /* /sim/stats answer cap */
#define LOAD_PROMPT_MAX 4096
#define LOAD_MAX_KEYS 1000000

typedef struct load_opts {
    const char *host;
    int port;
    long conns, requests, threads, timeout_s, max_tokens, keys;
    const char *key, *model, *prompt;
    bool reset;
} load_opts;

typedef struct load_thread load_thread;

typedef struct load_conn {
    load_thread *t;
    struct evhttp_connection *evcon;
    int64_t start_us;
} load_conn;

struct load_thread {
    const load_opts *o;
    size_t idx;
    pthread_t tid;
    struct event_base *base;
    load_conn *conns;
    long nconns;
    long share, issued, done;
    long ok, failed_conn, by_status[6]; /* 2xx 4xx 429 5xx 529 other */
    uint32_t *lat_us;
    long nlat;
    char body[LOAD_PROMPT_MAX + 512];
    char key[600];
};

static int64_t now_us(void)
{
    return aq_mono_us();
}

static void issue(load_conn *c);

static void on_done(struct evhttp_request *req, void *arg)
{
    load_conn *c = arg;
    load_thread *t = c->t;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    int64_t us = now_us() - c->start_us;

    t->done++;
    if (code == 0) {
        t->failed_conn++;
    } else {
        if (code >= 200 && code < 300)
            t->ok++, t->by_status[0]++;
        else if (code == 429)
            t->by_status[2]++;
        else if (code == 529)
            t->by_status[4]++;
        else if (code >= 400 && code < 500)
            t->by_status[1]++;
        else if (code >= 500)
            t->by_status[3]++;
        else
            t->by_status[5]++;
    }
    if (t->nlat < t->share)
        t->lat_us[t->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (t->issued < t->share)
        issue(c);
    else if (t->done >= t->share)
        event_base_loopexit(t->base, NULL);
}

static void issue(load_conn *c)
{
    load_thread *t = c->t;
    const load_opts *o = t->o;
    struct evhttp_request *req = evhttp_request_new(on_done, c);
    char host[300];
    int n;

    t->issued++;
    if (!req) {
        on_done(NULL, c);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    snprintf(host, sizeof(host), "%s:%d", o->host, o->port);
    evhttp_add_header(h, "Host", host);
    if (o->keys > 1) { /* round robin over the keys, across threads */
        snprintf(t->key, sizeof(t->key), "%s-%ld", o->key,
                 (long)(((unsigned long)t->issued * (unsigned long)o->threads + t->idx) % (unsigned long)o->keys));
        evhttp_add_header(h, "x-api-key", t->key);
    } else {
        evhttp_add_header(h, "x-api-key", o->key);
    }
    evhttp_add_header(h, "anthropic-version", "2023-06-01");
    evhttp_add_header(h, "content-type", "application/json");
    n = snprintf(t->body, sizeof(t->body),
                 "{\"model\":\"%s\",\"max_tokens\":%ld,\"messages\":[{\"role\":\"user\",\"content\":"
                 "\"%s %zu-%ld\"}]}",
                 o->model, o->max_tokens, o->prompt, t->idx, t->issued);
    evbuffer_add(evhttp_request_get_output_buffer(req), t->body, (size_t)n);
    c->start_us = now_us();
    if (evhttp_make_request(c->evcon, req, EVHTTP_REQ_POST, "/v1/messages") != 0)
        on_done(NULL, c); /* evhttp freed req */
}

static void *thread_main(void *arg)
{
    load_thread *t = arg;
    for (long i = 0; i < t->nconns && t->issued < t->share; i++)
        issue(&t->conns[i]);
    if (t->share > 0)
        event_base_dispatch(t->base);
    return NULL;
}

typedef struct simple_ctx {
    struct event_base *base;
    struct evbuffer *body;
    int code;
} simple_ctx;

static void simple_done(struct evhttp_request *req, void *arg)
{
    simple_ctx *ctx = arg;
    if (req) {
        ctx->code = evhttp_request_get_response_code(req);
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        if (evbuffer_get_length(in) <= LOAD_STATS_BODY_MAX)
            evbuffer_add_buffer(ctx->body, in);
    }
    event_base_loopexit(ctx->base, NULL);
}

/* One request on a fresh loop; the body (capped) is returned, or NULL. */
static char *simple_request(const load_opts *o, enum evhttp_cmd_type cmd, const char *path)
{
    simple_ctx ctx = {event_base_new(), evbuffer_new(), 0};
    struct evhttp_connection *evcon = NULL;
    struct evhttp_request *req;
    char *result = NULL;

    if (!ctx.base || !ctx.body)
        goto out;
    evcon = evhttp_connection_base_new(ctx.base, NULL, o->host, (unsigned short)o->port);
    if (!evcon)
        goto out;
    evhttp_connection_set_timeout(evcon, 10);
    req = evhttp_request_new(simple_done, &ctx);
    if (!req)
        goto out;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", o->host);
    if (evhttp_make_request(evcon, req, cmd, path) != 0)
        goto out;
    event_base_dispatch(ctx.base);
    if (ctx.code == 200) {
        size_t len = evbuffer_get_length(ctx.body);
        if ((result = malloc(len + 1)) != NULL) {
            evbuffer_remove(ctx.body, result, len);
            result[len] = '\0';
        }
    }
out:
    if (evcon)
        evhttp_connection_free(evcon);
    if (ctx.body)
        evbuffer_free(ctx.body);
    if (ctx.base)
        event_base_free(ctx.base);
    return result;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: sim_load [--host H] (--port P | --port-file F) [-c CONNS] [-n REQUESTS] [-t THREADS]\n"
            "                [--timeout S] [--key K] [--keys N] [--model M] [--prompt TEXT] [--max-tokens N]\n"
            "                [--no-reset]\n"
            "  --keys N   spread the requests over N API keys K-0 ... K-(N-1) (agentq-sim limits each key)\n");
}

static long parse_long(const char *s, const char *what)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || *e || e == s || v < 0) {
        fprintf(stderr, "sim_load: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    load_opts o = {.host = "127.0.0.1", .port = 8090, .conns = 256, .requests = 100000,
                   .threads = 1, .timeout_s = 60, .max_tokens = 1024, .keys = 1, .key = "sk-load-test",
                   .model = "claude-haiku-4-5", .prompt = "load test request", .reset = true};
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},       {"port", required_argument, NULL, 'p'},
        {"port-file", required_argument, NULL, 'P'},  {"conns", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'n'},   {"threads", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, 'T'},    {"key", required_argument, NULL, 'k'},
        {"model", required_argument, NULL, 'm'},      {"prompt", required_argument, NULL, 'r'},
        {"max-tokens", required_argument, NULL, 'x'}, {"no-reset", no_argument, NULL, 'R'},
        {"keys", required_argument, NULL, 'K'},       {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:n:t:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H': o.host = optarg; break;
        case 'p': o.port = (int)parse_long(optarg, "port"); break;
        case 'P': {
            FILE *f = fopen(optarg, "r");
            if (!f || fscanf(f, "%d", &o.port) != 1) {
                fprintf(stderr, "sim_load: cannot read a port from %s\n", optarg);
                return 2;
            }
            fclose(f);
            break;
        }
        case 'c': o.conns = parse_long(optarg, "conns"); break;
        case 'n': o.requests = parse_long(optarg, "requests"); break;
        case 't': o.threads = parse_long(optarg, "threads"); break;
        case 'T': o.timeout_s = parse_long(optarg, "timeout"); break;
        case 'k': o.key = optarg; break;
        case 'K': o.keys = parse_long(optarg, "keys"); break;
        case 'm': o.model = optarg; break;
        case 'r': o.prompt = optarg; break;
        case 'x': o.max_tokens = parse_long(optarg, "max-tokens"); break;
        case 'R': o.reset = false; break;
        default: usage(); return ch == 'h' ? 0 : 2;
        }
    }
    if (o.threads < 1 || o.threads > LOAD_MAX_THREADS || o.conns < 1 || strlen(o.prompt) > LOAD_PROMPT_MAX ||
        o.keys < 1 || o.keys > LOAD_MAX_KEYS || strlen(o.key) > 512) {
        usage();
        return 2;
    }
    if (o.conns < o.threads)
        o.threads = o.conns;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (long)rl.rlim_cur < o.conns + 64)
        fprintf(stderr, "sim_load: warning: open-file limit %ld < %ld connections (ulimit -n)\n",
                (long)rl.rlim_cur, o.conns);

    if (o.reset) {
        char *r = simple_request(&o, EVHTTP_REQ_POST, "/sim/reset");
        if (!r)
            fprintf(stderr, "sim_load: POST /sim/reset failed (not agentq-sim?)\n");
        free(r);
    }

    load_thread *ts = calloc((size_t)o.threads, sizeof(*ts));
    if (!ts)
        return 1;
    for (long i = 0; i < o.threads; i++) {
        load_thread *t = &ts[i];
        t->o = &o;
        t->idx = (size_t)i;
        t->nconns = o.conns / o.threads + (i < o.conns % o.threads);
        t->share = o.requests / o.threads + (i < o.requests % o.threads);
        t->base = event_base_new();
        t->conns = calloc((size_t)t->nconns, sizeof(*t->conns));
        t->lat_us = malloc(((size_t)t->share + 1) * sizeof(*t->lat_us));
        if (!t->base || !t->conns || !t->lat_us)
            return 1;
        for (long j = 0; j < t->nconns; j++) {
            load_conn *c = &t->conns[j];
            c->t = t;
            c->evcon = evhttp_connection_base_new(t->base, NULL, o.host, (unsigned short)o.port);
            if (!c->evcon)
                return 1;
            evhttp_connection_set_timeout(c->evcon, (int)o.timeout_s);
            evhttp_connection_set_retries(c->evcon, 0);
        }
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    int64_t t0 = now_us();
    for (long i = 0; i < o.threads; i++)
        pthread_create(&ts[i].tid, NULL, thread_main, &ts[i]);
    for (long i = 0; i < o.threads; i++)
        pthread_join(ts[i].tid, NULL);
    int64_t elapsed = now_us() - t0;
    getrusage(RUSAGE_SELF, &ru1);

    long done = 0, ok = 0, conn_err = 0, by[6] = {0}, nlat = 0;
    for (long i = 0; i < o.threads; i++) {
        done += ts[i].done;
        ok += ts[i].ok;
        conn_err += ts[i].failed_conn;
        for (int k = 0; k < 6; k++)
            by[k] += ts[i].by_status[k];
        nlat += ts[i].nlat;
    }
    uint32_t *lat = malloc(((size_t)nlat + 1) * sizeof(*lat));
    long at = 0;
    for (long i = 0; lat && i < o.threads; i++) {
        memcpy(lat + at, ts[i].lat_us, (size_t)ts[i].nlat * sizeof(*lat));
        at += ts[i].nlat;
    }
    if (lat)
        qsort(lat, (size_t)nlat, sizeof(*lat), cmp_u32);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    double secs = (double)elapsed / 1e6;
    printf("requests=%ld ok=%ld errors=%ld (connection/timeout=%ld 4xx=%ld 429=%ld 5xx=%ld 529=%ld other=%ld)\n",
           done, ok, done - ok, conn_err, by[1], by[2], by[3], by[4], by[5]);
    printf("conns=%ld threads=%ld elapsed_s=%.3f rps=%.0f\n", o.conns, o.threads, secs,
           secs > 0 ? (double)done / secs : 0.0);
    if (lat)
        printf("latency_ms p50=%.3f p90=%.3f p99=%.3f max=%.3f\n", pct(lat, nlat, 0.50),
               pct(lat, nlat, 0.90), pct(lat, nlat, 0.99), nlat ? lat[nlat - 1] / 1000.0 : 0.0);
    printf("client_cpu_s=%.3f client_cpu_us_per_request=%.2f\n", cpu, done ? cpu * 1e6 / (double)done : 0.0);

    char *stats = simple_request(&o, EVHTTP_REQ_GET, "/sim/stats");
    if (stats) {
        json_t *doc = json_loads(stats, 0, NULL);
        if (doc) {
            printf("sim peak_connections=%" JSON_INTEGER_FORMAT " peak_concurrent_requests=%" JSON_INTEGER_FORMAT
                   " requests_total=%" JSON_INTEGER_FORMAT "\n",
                   json_integer_value(json_object_get(doc, "peak_connections")),
                   json_integer_value(json_object_get(doc, "peak_concurrent_requests")),
                   json_integer_value(json_object_get(doc, "requests_total")));
            json_decref(doc);
        }
        printf("sim stats: %s\n", stats);
        free(stats);
    } else {
        printf("sim stats: unavailable\n");
    }

    for (long i = 0; i < o.threads; i++) {
        for (long j = 0; j < ts[i].nconns; j++)
            evhttp_connection_free(ts[i].conns[j].evcon);
        free(ts[i].conns);
        free(ts[i].lat_us);
        event_base_free(ts[i].base);
    }
    free(ts);
    free(lat);
    return conn_err == 0 && ok == done ? 0 : 1;
}
