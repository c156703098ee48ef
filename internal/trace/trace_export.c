/* The tracer: a bounded queue of ended spans and the exporter thread that
 * sends them in batches to <endpoint>/v1/traces (OTLP/HTTP, JSON).
 *
 * Why a thread of its own and not the pipeline's libevent loop: the export
 * is a blocking libcurl easy transfer with backoff sleeps between retries,
 * and none of that may ever delay a task. On the caller's side an ended
 * span costs one mutex and a pointer store (a signal when the batch fills);
 * the queue is bounded, and past the bound spans are dropped and counted, so
 * a collector that is slow or down is invisible to the pipeline. */
#include "trace_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

struct aq_tracer {
    char *url; /* <endpoint>/v1/traces */
    struct curl_slist *headers;
    char *instance_id, *version;
    uint64_t threshold; /* sample_ratio * 2^56 */
    size_t queue_cap, batch_size;
    int64_t batch_delay_ms;
    bool capture_content;
    trace_retry_policy retry;

    pthread_mutex_t mu;
    pthread_cond_t wake; /* to the exporter: spans, flush or stop */
    pthread_cond_t done; /* to flush waiters: spans settled */
    aq_span_rec **ring;
    size_t head, count;
    uint64_t accepted, settled; /* spans into the queue; of them exported or dropped */
    uint64_t flush_target;      /* export without waiting until settled reaches it */
    bool stop, closed;
    int64_t deadline_mono_ms;   /* when stopping: give up at this time */
    pthread_t thread;
    bool thread_started;
    CURL *curl;               /* the exporter thread's */
    aq_span_rec **batch;      /* the exporter thread's: the batch being sent */
    char *user_agent;
    unsigned short xsubi[3];  /* the exporter thread's jitter (erand48) */

    /* figures (atomics) */
    uint64_t exported, dropped, queue_full, failures;
};

/* ---- figures ---- */

static void add(uint64_t *c, uint64_t n)
{
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

void aq_tracer_count_dropped(aq_tracer *t)
{
    if (t)
        add(&t->dropped, 1);
}

uint64_t aq_tracer_threshold(const aq_tracer *t)
{
    return t->threshold;
}

bool aq_tracer_capture_content(const aq_tracer *t)
{
    return t && t->capture_content;
}

void aq_tracer_stats_get(aq_tracer *t, aq_tracer_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!t)
        return;
    out->spans_exported = get(&t->exported);
    out->spans_dropped = get(&t->dropped);
    out->spans_queue_full = get(&t->queue_full);
    out->export_failures = get(&t->failures);
    pthread_mutex_lock(&t->mu);
    out->queued = t->count;
    pthread_mutex_unlock(&t->mu);
}

/* ---- the queue ---- */

void aq_tracer_enqueue(aq_tracer *t, aq_span_rec *r)
{
    bool full;
    r->enqueued_mono_ms = aq_mono_ms();
    pthread_mutex_lock(&t->mu);
    full = t->closed || t->count == t->queue_cap;
    if (!full) {
        t->ring[(t->head + t->count) % t->queue_cap] = r;
        t->count++;
        t->accepted++;
        /* The exporter sleeps while the queue is empty, and until the batch
         * delay otherwise: wake it for the first span and a full batch. */
        if (t->count == 1 || t->count == t->batch_size)
            pthread_cond_signal(&t->wake);
    }
    pthread_mutex_unlock(&t->mu);
    if (full) {
        add(&t->dropped, 1);
        add(&t->queue_full, 1);
        aq_span_rec_free(r);
    }
}

/* With t->mu held. */
static size_t take_locked(aq_tracer *t, aq_span_rec **out, size_t max)
{
    size_t n = t->count < max ? t->count : max;
    for (size_t i = 0; i < n; i++) {
        out[i] = t->ring[t->head];
        t->head = (t->head + 1) % t->queue_cap;
    }
    t->count -= n;
    return n;
}

size_t aq_tracer_take(aq_tracer *t, aq_span_rec **out, size_t max)
{
    pthread_mutex_lock(&t->mu);
    size_t n = take_locked(t, out, max);
    t->settled += n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

aq_status aq_tracer_encode(const aq_tracer *t, aq_span_rec *const *spans, size_t n, char **json,
                           size_t *len, aq_err *err)
{
    return aq_trace_otlp_encode(t->instance_id, t->version, spans, n, json, len, err);
}

/* ---- one export request ---- */

typedef struct response {
    char *data;
    size_t len;
} response;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    response *r = ud;
    size_t n = size * nmemb, room = AQ_TRACE_RESPONSE_MAX - r->len;
    if (n > room)
        n = room; /* the rest is not read into memory */
    if (n) {
        char *nd = realloc(r->data, r->len + n + 1);
        if (!nd)
            return size * nmemb;
        memcpy(nd + r->len, ptr, n);
        r->len += n;
        nd[r->len] = '\0';
        r->data = nd;
    }
    return size * nmemb;
}

static bool stopping_past_deadline(aq_tracer *t)
{
    if (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE))
        return false;
    return aq_mono_ms() >= __atomic_load_n(&t->deadline_mono_ms, __ATOMIC_ACQUIRE);
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return stopping_past_deadline(ud) ? 1 : 0; /* shutting down: cut the request off */
}

/* partialSuccess.rejectedSpans of a 2xx answer (an int64: a string or a
 * number in JSON); 0 when absent or unreadable. */
static uint64_t rejected_spans(const response *r)
{
    uint64_t n = 0;
    if (!r->data)
        return 0;
    json_t *root = json_loadb(r->data, r->len, 0, NULL);
    json_t *v = json_object_get(json_object_get(root, "partialSuccess"), "rejectedSpans");
    if (json_is_integer(v) && json_integer_value(v) > 0)
        n = (uint64_t)json_integer_value(v);
    else if (json_is_string(v))
        n = strtoull(json_string_value(v), NULL, 10);
    json_decref(root);
    return n;
}

typedef enum { EXPORT_OK, EXPORT_RETRY, EXPORT_DROP } export_result;

static export_result post(aq_tracer *t, CURL *curl, const char *body, size_t len,
                          int64_t *retry_after_ms, uint64_t *rejected)
{
    response resp = {0};
    long code = 0;
    curl_off_t ra = -1;
    export_result res;

    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, t->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, t->user_agent);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)t->retry.request_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)t->retry.request_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");

    *retry_after_ms = -1;
    *rejected = 0;
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        res = EXPORT_RETRY; /* connection refused, reset, timed out: transient */
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
        *rejected = rejected_spans(&resp);
        res = EXPORT_OK;
        goto out;
    }
    /* The OTLP/HTTP spec's retryable answers; Retry-After (seconds or an
     * HTTP date, which libcurl reads for us) is honoured. */
    if (code == 429 || code == 502 || code == 503 || code == 504) {
        if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
            *retry_after_ms = (int64_t)ra * 1000;
        res = EXPORT_RETRY;
        goto out;
    }
    res = EXPORT_DROP; /* 400 and the like: sending it again will not help */
out:
    free(resp.data);
    return res;
}

/* Full jitter on the exponential backoff of attempt `n` (1-based). */
static int64_t backoff_ms(aq_tracer *t, const trace_retry_policy *p, int n)
{
    int64_t cap = p->backoff_base_ms;
    for (int i = 1; i < n && cap < p->backoff_max_ms; i++)
        cap *= 2;
    if (cap > p->backoff_max_ms)
        cap = p->backoff_max_ms;
    /* between cap/2 and cap: waits still grow, retries of many workers spread */
    return cap / 2 + (int64_t)(erand48(t->xsubi) * (double)(cap / 2 + 1));
}

static void timespec_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Sleep up to ms unless stopping makes the wait pointless: false when the
 * batch should be given up (stopping, and the wait ends past the deadline). */
static bool wait_before_retry(aq_tracer *t, int64_t ms)
{
    int64_t wake = aq_mono_ms() + ms;
    bool go_on = true;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        if (t->stop && wake > t->deadline_mono_ms) {
            go_on = false;
            break;
        }
        int64_t left = wake - aq_mono_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        timespec_in(&ts, left);
        pthread_cond_timedwait(&t->wake, &t->mu, &ts);
    }
    pthread_mutex_unlock(&t->mu);
    return go_on;
}

/* Send one batch, retrying as the policy says. Returns the spans the
 * collector accepted; the rest of n were dropped. */
static uint64_t export_batch(aq_tracer *t, CURL *curl, aq_span_rec **spans, size_t n)
{
    char *body = NULL;
    size_t len = 0;
    uint64_t accepted = 0;
    if (!curl || aq_tracer_encode(t, spans, n, &body, &len, NULL) != AQ_OK)
        return 0;
    for (int attempt = 1; attempt <= t->retry.max_attempts; attempt++) {
        int64_t retry_after = -1;
        uint64_t rejected = 0;
        export_result res = post(t, curl, body, len, &retry_after, &rejected);
        if (res == EXPORT_OK) {
            accepted = rejected < n ? n - rejected : 0;
            break;
        }
        add(&t->failures, 1);
        if (res == EXPORT_DROP || attempt == t->retry.max_attempts || stopping_past_deadline(t))
            break;
        int64_t wait = backoff_ms(t, &t->retry, attempt);
        if (retry_after >= 0)
            wait = retry_after < t->retry.retry_after_max_ms ? retry_after : t->retry.retry_after_max_ms;
        if (!wait_before_retry(t, wait))
            break;
    }
    free(body);
    return accepted;
}

/* With t->mu held: should a batch go now? Otherwise *sleep_ms says how long
 * the oldest span may still wait (-1: no span at all). */
static bool batch_ready(aq_tracer *t, int64_t *sleep_ms)
{
    *sleep_ms = -1;
    if (t->count == 0)
        return false;
    if (t->count >= t->batch_size || t->stop || t->settled < t->flush_target)
        return true;
    int64_t due = t->ring[t->head]->enqueued_mono_ms + t->batch_delay_ms - aq_mono_ms();
    if (due <= 0)
        return true;
    *sleep_ms = due;
    return false;
}

static void *exporter_main(void *arg)
{
    aq_tracer *t = arg;
    CURL *curl = t->curl;
    aq_span_rec **batch = t->batch;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        int64_t sleep_ms;
        if (!batch_ready(t, &sleep_ms)) {
            if (t->stop)
                break; /* and the queue is empty */
            if (sleep_ms < 0) {
                pthread_cond_wait(&t->wake, &t->mu);
            } else {
                struct timespec ts;
                timespec_in(&ts, sleep_ms);
                pthread_cond_timedwait(&t->wake, &t->mu, &ts);
            }
            continue;
        }
        if (t->stop && aq_mono_ms() >= t->deadline_mono_ms)
            break; /* out of time: the rest is dropped below */
        size_t n = take_locked(t, batch, t->batch_size);
        pthread_mutex_unlock(&t->mu);
        uint64_t ok = export_batch(t, curl, batch, n);
        add(&t->exported, ok);
        add(&t->dropped, n - ok);
        for (size_t i = 0; i < n; i++)
            aq_span_rec_free(batch[i]);
        pthread_mutex_lock(&t->mu);
        t->settled += n;
        pthread_cond_broadcast(&t->done);
    }
    /* Stopping: what is left is dropped. */
    size_t left = t->count;
    while (t->count > 0) {
        aq_span_rec *r = t->ring[t->head];
        t->head = (t->head + 1) % t->queue_cap;
        t->count--;
        aq_span_rec_free(r);
    }
    t->settled += left;
    add(&t->dropped, left);
    pthread_cond_broadcast(&t->done);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- set-up ---- */

/* "k=v,k2=v2" into `Name: value` lines (values percent-decoded). The
 * messages name the header, never its value. */
static aq_status parse_headers(const char *spec, struct curl_slist **out, aq_err *err)
{
    struct curl_slist *list = NULL, *nl;
    aq_status st = AQ_OK;
    int count = 0;
    const char *p = spec ? spec : "";
    while (*p) {
        const char *e = strchr(p, ',');
        if (!e)
            e = p + strlen(p);
        const char *b = p, *end = e;
        p = *e ? e + 1 : e;
        while (b < end && (*b == ' ' || *b == '\t'))
            b++;
        while (end > b && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (b == end)
            continue;
        const char *eq = memchr(b, '=', (size_t)(end - b));
        if (!eq || eq == b) {
            st = aq_err_set(err, AQ_CONFIG, "trace_headers: entry %d is not key=value", count + 1);
            goto out;
        }
        const char *ke = eq;
        while (ke > b && (ke[-1] == ' ' || ke[-1] == '\t'))
            ke--;
        for (const char *k = b; k < ke; k++) {
            /* an HTTP token (RFC 9110) */
            if (!(k[0] > 0x20 && k[0] < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", k[0]))) {
                st = aq_err_set(err, AQ_CONFIG, "trace_headers: header name '%.*s' is not a token",
                                (int)(ke - b) > 64 ? 64 : (int)(ke - b), b);
                goto out;
            }
        }
        const char *vb = eq + 1;
        while (vb < end && (*vb == ' ' || *vb == '\t'))
            vb++;
        if (++count > AQ_TRACE_MAX_HEADERS) {
            st = aq_err_set(err, AQ_CONFIG, "trace_headers: more than %d headers",
                            AQ_TRACE_MAX_HEADERS);
            goto out;
        }
        int vlen = 0;
        char *value = curl_easy_unescape(NULL, vb, (int)(end - vb), &vlen);
        char *line = NULL;
        bool bad = !value || (size_t)vlen != strlen(value) || strpbrk(value, "\r\n");
        if (!bad && ((size_t)(ke - b) + (size_t)vlen + 3 > AQ_TRACE_HEADER_MAX ||
                     asprintf(&line, "%.*s: %s", (int)(ke - b), b, value) < 0))
            bad = true;
        if (value) {
            memset(value, 0, (size_t)vlen); /* a secret */
            curl_free(value);
        }
        if (bad) {
            free(line);
            st = aq_err_set(err, AQ_CONFIG,
                            "trace_headers: the value of '%.*s' is too long or holds a line break "
                            "or NUL",
                            (int)(ke - b) > 64 ? 64 : (int)(ke - b), b);
            goto out;
        }
        nl = curl_slist_append(list, line);
        memset(line, 0, strlen(line));
        free(line);
        if (!nl) {
            st = aq_err_set(err, AQ_NOMEM, "out of memory");
            goto out;
        }
        list = nl;
    }
    if (out) {
        *out = list;
        list = NULL;
    }
out:
    curl_slist_free_all(list);
    return st;
}

aq_status aq_trace_config_validate(const aq_trace_config *cfg, aq_err *err)
{
    if (!aq_trace_config_enabled(cfg))
        return AQ_OK;
    const char *u = cfg->endpoint;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return aq_err_set(err, AQ_CONFIG, "trace_endpoint must start with http:// or https://");
    const char *host = strstr(u, "://") + 3;
    size_t hlen = strcspn(host, "/?#");
    if (memchr(host, '@', hlen))
        return aq_err_set(err, AQ_CONFIG,
                          "trace_endpoint must not hold credentials (put them in trace_headers)");
    if (hlen == 0)
        return aq_err_set(err, AQ_CONFIG, "trace_endpoint has no host");
    if (strpbrk(u, "?# \t\r\n"))
        return aq_err_set(err, AQ_CONFIG,
                          "trace_endpoint is a base URL: no query, fragment or blanks (/v1/traces is added)");
    if (cfg->batch_size > cfg->queue_size)
        return aq_err_set(err, AQ_CONFIG, "trace_batch_size (%lld) is larger than trace_queue_size (%lld)",
                          (long long)cfg->batch_size, (long long)cfg->queue_size);
    if (!(cfg->sample_ratio >= 0 && cfg->sample_ratio <= 1))
        return aq_err_set(err, AQ_CONFIG, "trace_sample_ratio must be within [0, 1]");
    return parse_headers(cfg->headers, NULL, err);
}

/* libcurl's global set-up, once per process (the LLM client does the same:
 * curl_global_init counts its calls). */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

aq_status aq_tracer_new_ex(const aq_trace_config *cfg, const aq_trace_resource *res,
                           const trace_retry_policy *retry, bool start_thread, aq_tracer **out,
                           aq_err *err)
{
    aq_status st;
    aq_tracer *t = NULL;
    if (!aq_trace_config_enabled(cfg)) {
        *out = NULL;
        return AQ_OK;
    }
    if ((st = aq_trace_config_validate(cfg, err)) != AQ_OK)
        return st;
    if (!(t = calloc(1, sizeof(*t))))
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_cond_init(&t->done, &ca);
    pthread_condattr_destroy(&ca);

    t->queue_cap = (size_t)cfg->queue_size;
    t->batch_size = (size_t)cfg->batch_size;
    t->batch_delay_ms = cfg->batch_delay_ms;
    t->capture_content = cfg->capture_content;
    t->retry = retry ? *retry : AQ_TRACE_DEFAULT_RETRY;
    /* ratio 1 must take every id: 2^56 is above the largest 56-bit value */
    t->threshold = (uint64_t)ldexp(cfg->sample_ratio, 56);

    size_t elen = strlen(cfg->endpoint);
    while (elen > 0 && cfg->endpoint[elen - 1] == '/')
        elen--;
    if (asprintf(&t->url, "%.*s/v1/traces", (int)elen, cfg->endpoint) < 0) {
        t->url = NULL;
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = parse_headers(cfg->headers, &t->headers, err)) != AQ_OK)
        goto fail;
    if (asprintf(&t->user_agent, "agentq-worker/%s (OTLP/HTTP JSON exporter)",
                 res && res->version ? res->version : "unknown") < 0) {
        t->user_agent = NULL; /* asprintf leaves it undefined */
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto fail;
    }
    struct curl_slist *h = curl_slist_append(t->headers, "Content-Type: application/json");
    if (!h || !(t->ring = calloc(t->queue_cap, sizeof(*t->ring))) ||
        !(t->batch = calloc(t->batch_size, sizeof(*t->batch))) ||
        (res && res->instance_id && !(t->instance_id = strdup(res->instance_id))) ||
        (res && res->version && !(t->version = strdup(res->version)))) {
        if (h)
            t->headers = h;
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto fail;
    }
    t->headers = h;
    pthread_once(&curl_once, curl_init_once);
    if (curl_rc != CURLE_OK) {
        st = aq_err_set(err, AQ_IO, "curl_global_init failed: %s", curl_easy_strerror(curl_rc));
        goto fail;
    }
    uint8_t seed[AQ_SPAN_ID_SIZE];
    if (aq_trace_new_span_id(seed) != AQ_OK) /* 8 random bytes; 6 are used */
        memset(seed, 0x5a, sizeof(seed));
    memcpy(t->xsubi, seed, sizeof(t->xsubi));
    if (start_thread && !(t->curl = curl_easy_init())) {
        st = aq_err_set(err, AQ_NOMEM, "cannot make the trace exporter's curl handle");
        goto fail;
    }
    if (start_thread) {
        int rc = pthread_create(&t->thread, NULL, exporter_main, t);
        if (rc != 0) {
            st = aq_err_set(err, AQ_NOMEM, "cannot start the trace exporter thread: %s",
                            strerror(rc));
            goto fail;
        }
        t->thread_started = true;
    }
    *out = t;
    return AQ_OK;
fail:
    aq_tracer_destroy(t);
    return st;
}

aq_status aq_tracer_new(const aq_trace_config *cfg, const aq_trace_resource *res,
                        aq_tracer **out, aq_err *err)
{
    return aq_tracer_new_ex(cfg, res, NULL, true, out, err);
}

aq_status aq_tracer_flush(aq_tracer *t, int64_t timeout_ms)
{
    if (!t)
        return AQ_OK;
    aq_status st = AQ_OK;
    int64_t deadline = aq_mono_ms() + timeout_ms;
    pthread_mutex_lock(&t->mu);
    uint64_t target = t->accepted;
    if (t->flush_target < target)
        t->flush_target = target;
    pthread_cond_signal(&t->wake);
    while (t->settled < target) {
        int64_t left = deadline - aq_mono_ms();
        if (left <= 0 || !t->thread_started) {
            st = AQ_TIMEOUT;
            break;
        }
        struct timespec ts;
        timespec_in(&ts, left);
        pthread_cond_timedwait(&t->done, &t->mu, &ts);
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

aq_status aq_tracer_shutdown(aq_tracer *t, int64_t timeout_ms)
{
    if (!t)
        return AQ_OK;
    uint64_t dropped_before = get(&t->dropped);
    pthread_mutex_lock(&t->mu);
    bool first = !t->closed;
    t->closed = true; /* spans ended from now on are dropped */
    if (first) {
        __atomic_store_n(&t->deadline_mono_ms, aq_mono_ms() + timeout_ms, __ATOMIC_RELEASE);
        __atomic_store_n(&t->stop, true, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&t->wake);
    }
    pthread_mutex_unlock(&t->mu);
    if (!first)
        return AQ_OK;
    if (t->thread_started) {
        pthread_join(t->thread, NULL);
        t->thread_started = false;
    }
    /* Without a thread (tests): the queue is dropped here. */
    pthread_mutex_lock(&t->mu);
    size_t left = t->count;
    while (t->count > 0) {
        aq_span_rec_free(t->ring[t->head]);
        t->head = (t->head + 1) % t->queue_cap;
        t->count--;
    }
    t->settled += left;
    pthread_mutex_unlock(&t->mu);
    add(&t->dropped, left);
    return get(&t->dropped) > dropped_before ? AQ_TIMEOUT : AQ_OK;
}

void aq_tracer_destroy(aq_tracer *t)
{
    if (!t)
        return;
    aq_tracer_shutdown(t, AQ_TRACE_SHUTDOWN_DEFAULT_MS);
    pthread_cond_destroy(&t->wake);
    pthread_cond_destroy(&t->done);
    pthread_mutex_destroy(&t->mu);
    if (t->headers) {
        for (struct curl_slist *h = t->headers; h; h = h->next)
            memset(h->data, 0, strlen(h->data)); /* secrets */
        curl_slist_free_all(t->headers);
    }
    curl_easy_cleanup(t->curl);
    free(t->ring);
    free(t->batch);
    free(t->user_agent);
    free(t->url);
    free(t->instance_id);
    free(t->version);
    free(t);
}
