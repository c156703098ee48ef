#include "llm_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/buf.h"
#include "core/clock.h"
#include "llm_internal.h"
#include "llm_sse.h"

/* Distinct API keys whose header lists are kept for reuse (most processes
 * use one or a few keys); calls with other keys get a list of their own. */
#define KEY_CACHE_MAX 8
#define API_KEY_MAX 512
#define REQUEST_ID_MAX 96
#define RETRY_AFTER_MAX_MS (24LL * 3600 * 1000)

/* One header list per API key: x-api-key plus the constant headers, built
 * once and shared by every call with that key. */
typedef struct key_entry {
    struct key_entry *next;
    char *key;
    struct curl_slist *hdrs;
    size_t refs;
    int cached;   /* in c->keys; else freed when refs drops to 0 */
} key_entry;

/* One curl multi handle with its own connection cache, timer and calls
 * (see llm_client.h for why there are several). */
typedef struct shard {
    struct aq_llm_client *c;
    CURLM *multi;
    struct event *timer;
    size_t in_flight;
} shard;

/* One per socket curl asks us to watch (not per call: calls multiplexed on
 * one HTTP/2 connection share it). */
typedef struct sock_ctx {
    struct sock_ctx *prev, *next;
    shard *sh;
    struct event *ev;
    curl_socket_t fd;
} sock_ctx;

struct aq_llm_call {
    struct aq_llm_call *prev, *next;
    struct aq_llm_client *c;
    shard *sh;
    CURL *easy;
    key_entry *key;
    aq_llm_done_fn done;
    void *ctx;
    aq_buf body;
    int64_t start_us;
    int64_t retry_after_ms;      /* from retry-after-ms */
    int64_t retry_after_s_ms;    /* from retry-after */
    aq_llm_ratelimit rl;
    unsigned sends;              /* times the request was sent (see prereq_cb) */
    unsigned max_sends;          /* 0 = no bound */
    unsigned withheld : 1;       /* a re-send past max_sends was refused */
    unsigned stream : 1;         /* asked for a streamed answer */
    unsigned is_sse : 1;         /* the answer is text/event-stream */
    unsigned sse_failed : 1;     /* the parser refused the stream (its status says why) */
    unsigned idle_out : 1;       /* a streamed call went idle_timeout without a byte */
    int64_t idle_since_us;       /* when the bytes moved last (streamed calls) */
    curl_off_t idle_bytes;       /* bytes up and down at idle_since_us */
    aq_llm_sse *sse;             /* set at the first byte of a 200 text/event-stream answer */
    int64_t first_delta_us;      /* 0 until the first content_block_delta */
    int64_t timeout_ms;          /* this call's whole-call limit */
    unsigned too_big : 1;
    unsigned nomem : 1;
    unsigned in_done : 1;
    char request_id[REQUEST_ID_MAX];
    char errbuf[CURL_ERROR_SIZE];
};

struct aq_llm_client {
    struct event_base *base;
    CURLSH *share;
    shard *shards[AQ_LLM_MAX_SHARDS];
    size_t n_shards;
    size_t max_shards;       /* AQ_LLM_MAX_SHARDS, fewer when max_connections is set */
    size_t shard_calls;
    long max_connections;    /* over all shards; 0 unlimited */
    char *url;
    char *version_hdr;
    char *ca_file;
    int64_t connect_timeout_ms;
    int64_t timeout_ms;
    int64_t idle_timeout_ms;
    int64_t stream_timeout_ms;
    size_t max_response_bytes;
    long recv_buffer_bytes;
    int is_https;
    size_t in_flight;
    aq_llm_call *calls;
    sock_ctx *socks;
    key_entry *keys;
    size_t n_keys;
    int dispatching;
    int destroy_pending;
};

/* ---- process-wide init -------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

aq_status aq_llm_global_init(aq_err *err)
{
    pthread_once(&global_once, global_init_once);
    if (global_rc != CURLE_OK)
        return aq_err_set(err, AQ_IO, "curl_global_init failed: %s", curl_easy_strerror(global_rc));
    return AQ_OK;
}

void aq_llm_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ---- small helpers ------------------------------------------------------ */

static void scrub_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void key_entry_free(key_entry *k)
{
    if (!k)
        return;
    for (struct curl_slist *l = k->hdrs; l; l = l->next)
        if (l->data)
            explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(k->hdrs);
    scrub_free(k->key);
    free(k);
}

static int key_is_valid(const char *key)
{
    size_t n = 0;
    if (!key || !key[0])
        return 0;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++, n++)
        if (*p < 0x21 || *p > 0x7e || n >= API_KEY_MAX)
            return 0;
    return 1;
}

static key_entry *key_entry_new(const aq_llm_client *c, const char *key)
{
    key_entry *k = calloc(1, sizeof(*k));
    aq_buf line;
    int ok = 0;
    aq_buf_init(&line, API_KEY_MAX + 32);
    if (!k)
        goto out;
    if (!(k->key = strdup(key)))
        goto out;
    if (aq_buf_append_str(&line, "x-api-key: ") != AQ_OK || aq_buf_append_str(&line, key) != AQ_OK)
        goto out;
    static const char *const fixed[] = {"content-type: application/json",
                                        "accept: application/json",
                                        "Expect:"}; /* no 100-continue round trip */
    struct curl_slist *l = curl_slist_append(NULL, line.data);
    if (!l)
        goto out;
    k->hdrs = l;
    if (!(l = curl_slist_append(k->hdrs, c->version_hdr)))
        goto out;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (!(l = curl_slist_append(k->hdrs, fixed[i])))
            goto out;
    ok = 1;
out:
    if (line.data)
        explicit_bzero(line.data, line.len);
    aq_buf_free(&line);
    if (!ok) {
        key_entry_free(k);
        return NULL;
    }
    return k;
}

/* A header list for `key`, with a reference taken. */
static key_entry *key_acquire(aq_llm_client *c, const char *key)
{
    key_entry **pp, *k;
    for (pp = &c->keys; (k = *pp) != NULL; pp = &k->next) {
        if (strcmp(k->key, key) == 0) {
            *pp = k->next;   /* move to front */
            k->next = c->keys;
            c->keys = k;
            k->refs++;
            return k;
        }
    }
    if (c->n_keys >= KEY_CACHE_MAX) {
        /* evict the least recently used idle entry, if any */
        key_entry **victim = NULL;
        for (pp = &c->keys; *pp; pp = &(*pp)->next)
            if ((*pp)->refs == 0)
                victim = pp;
        if (victim) {
            k = *victim;
            *victim = k->next;
            c->n_keys--;
            key_entry_free(k);
        }
    }
    if (!(k = key_entry_new(c, key)))
        return NULL;
    k->refs = 1;
    if (c->n_keys < KEY_CACHE_MAX) {
        k->cached = 1;
        k->next = c->keys;
        c->keys = k;
        c->n_keys++;
    }
    return k;
}

static void key_release(key_entry *k)
{
    if (k && --k->refs == 0 && !k->cached)
        key_entry_free(k);
}

static void ratelimit_init(aq_llm_ratelimit *rl)
{
    rl->requests_limit = rl->requests_remaining = -1;
    rl->input_limit = rl->input_remaining = -1;
    rl->output_limit = rl->output_remaining = -1;
    rl->requests_reset_unix_ms = rl->input_reset_unix_ms = rl->output_reset_unix_ms = -1;
}

/* A non-negative decimal integer, the whole of s[0..n); -1 otherwise. */
static int64_t parse_nonneg(const char *s, size_t n)
{
    int64_t v = 0;
    if (n == 0 || n > 18)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* RFC 3339 "2025-01-02T03:04:05[.123][Z|+01:00]" -> Unix ms; -1 if it does not parse. */
static int64_t parse_rfc3339_ms(const char *s, size_t n)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, ms = 0;
    size_t i = 19;
    memset(&tm, 0, sizeof(tm));
    if (n < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (s[i] == '.') {
        int scale = 100, nd = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, nd++) {
            ms += (s[i] - '0') * scale;
            scale /= 10;
        }
        if (nd == 0)
            return -1;
    }
    int64_t off_s = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 <= n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh, om;
        if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off_s = (int64_t)oh * 3600 + om * 60;
        if (s[i] == '-')
            off_s = -off_s;
        i += 6;
    } else {
        return -1;
    }
    if (i != n)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return ((int64_t)t - off_s) * 1000 + ms;
}

/* Seconds or milliseconds as a decimal (retry-after may be "1.5"); -1 if not. */
static int64_t parse_delay_ms(const char *s, size_t n, double scale_to_ms)
{
    char tmp[32];
    char *end;
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (!((tmp[0] >= '0' && tmp[0] <= '9') || tmp[0] == '.'))
        return -1;
    errno = 0;
    double v = strtod(tmp, &end);
    if (errno || *end != '\0' || !isfinite(v) || v < 0)
        return -1;
    v *= scale_to_ms;
    if (v > (double)RETRY_AFTER_MAX_MS)
        v = (double)RETRY_AFTER_MAX_MS;
    return (int64_t)llround(v);
}

/* ---- curl callbacks ----------------------------------------------------- */

/* A 200 text/event-stream answer: parsed as it comes. The caps: one event
 * at most 1 MiB (or the body cap when smaller), one block and the whole
 * answer's text and tool inputs at most max_response_bytes. */
static size_t write_sse(aq_llm_call *call, const char *ptr, size_t n)
{
    aq_err err;
    if (!call->sse) {
        size_t cap = call->body.cap;
        aq_llm_sse_limits lim = {cap < AQ_LLM_SSE_DEFAULT_EVENT_MAX ? cap : AQ_LLM_SSE_DEFAULT_EVENT_MAX,
                                 cap, cap};
        if (aq_llm_sse_new(&lim, &call->sse, &err) != AQ_OK) {
            call->nomem = 1;
            return 0;
        }
    }
    if (aq_llm_sse_feed(call->sse, ptr, n, &err) != AQ_OK) {
        call->sse_failed = 1;
        return 0; /* aborts the transfer; call_complete reports the parser's status */
    }
    if (call->first_delta_us == 0 && aq_llm_sse_deltas(call->sse) > 0)
        call->first_delta_us = aq_mono_us();
    return n;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
    aq_llm_call *call = userp;
    size_t n = size * nmemb;
    if (call->is_sse) {
        long code = 0;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200)
            return write_sse(call, ptr, n);
    }
    aq_status st = aq_buf_append(&call->body, ptr, n);
    if (st == AQ_OK)
        return n;
    if (st == AQ_TOO_BIG)
        call->too_big = 1;
    else
        call->nomem = 1;
    return 0;   /* aborts the transfer with CURLE_WRITE_ERROR */
}

static int hdr_is(const char *name, size_t nlen, const char *want)
{
    return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

static void ratelimit_header(aq_llm_ratelimit *rl, const char *name, size_t nlen, const char *v,
                             size_t vlen)
{
    static const char pfx[] = "anthropic-ratelimit-";
    const size_t plen = sizeof(pfx) - 1;
    if (nlen <= plen || strncasecmp(name, pfx, plen) != 0)
        return;
    name += plen;
    nlen -= plen;
    struct {
        const char *suffix;
        int64_t *field;
        int is_time;
    } map[] = {
        {"requests-limit", &rl->requests_limit, 0},
        {"requests-remaining", &rl->requests_remaining, 0},
        {"requests-reset", &rl->requests_reset_unix_ms, 1},
        {"input-tokens-limit", &rl->input_limit, 0},
        {"input-tokens-remaining", &rl->input_remaining, 0},
        {"input-tokens-reset", &rl->input_reset_unix_ms, 1},
        {"output-tokens-limit", &rl->output_limit, 0},
        {"output-tokens-remaining", &rl->output_remaining, 0},
        {"output-tokens-reset", &rl->output_reset_unix_ms, 1},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (hdr_is(name, nlen, map[i].suffix)) {
            *map[i].field = map[i].is_time ? parse_rfc3339_ms(v, vlen) : parse_nonneg(v, vlen);
            return;
        }
    }
}

static size_t header_cb(char *buf, size_t size, size_t nmemb, void *userp)
{
    aq_llm_call *call = userp;
    size_t n = size * nmemb;

    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response (after a 1xx): forget what the previous one said */
        call->is_sse = 0;
        call->request_id[0] = '\0';
        call->retry_after_ms = call->retry_after_s_ms = -1;
        ratelimit_init(&call->rl);
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon)
        return n;
    const char *name = buf;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1;
    const char *end = buf + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);

    if (hdr_is(name, nlen, "request-id")) {
        size_t o = 0;
        for (size_t i = 0; i < vlen && o + 1 < sizeof(call->request_id); i++)
            if (v[i] > 0x20 && v[i] < 0x7f)
                call->request_id[o++] = v[i];
        call->request_id[o] = '\0';
    } else if (hdr_is(name, nlen, "retry-after-ms")) {
        call->retry_after_ms = parse_delay_ms(v, vlen, 1.0);
    } else if (hdr_is(name, nlen, "retry-after")) {
        int64_t ms = parse_delay_ms(v, vlen, 1000.0);
        if (ms < 0 && vlen > 0 && vlen < 64) {
            char date[64];
            memcpy(date, v, vlen);
            date[vlen] = '\0';
            time_t t = curl_getdate(date, NULL);
            if (t != (time_t)-1) {
                ms = (int64_t)t * 1000 - aq_now_unix_ms();
                if (ms < 0)
                    ms = 0;
                if (ms > RETRY_AFTER_MAX_MS)
                    ms = RETRY_AFTER_MAX_MS;
            }
        }
        call->retry_after_s_ms = ms;
    } else if (hdr_is(name, nlen, "content-type")) {
        static const char sse[] = "text/event-stream";
        call->is_sse = call->stream && vlen >= sizeof(sse) - 1 &&
                       strncasecmp(v, sse, sizeof(sse) - 1) == 0;
    } else if (hdr_is(name, nlen, "content-length")) {
        int64_t cl = parse_nonneg(v, vlen);
        if (cl > 0 && (uint64_t)cl > call->body.cap) {
            call->too_big = 1;
            return 0;   /* refuse before reading a byte of it */
        }
    } else if (nlen > 20) {
        ratelimit_header(&call->rl, name, nlen, v, vlen);
    }
    return n;
}

/* Streamed calls: libcurl calls this as the transfer moves and, while it is
 * below the low-speed limit, about once a second; no byte either way for
 * idle_timeout aborts the call (reported as AQ_HTTP_TIMEOUT). */
static int xferinfo_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    aq_llm_call *call = clientp;
    int64_t now = aq_mono_us();
    if (call->idle_since_us == 0 || dlnow + ulnow != call->idle_bytes) {
        call->idle_bytes = dlnow + ulnow;
        call->idle_since_us = now;
        return 0;
    }
    if (now - call->idle_since_us >= call->c->idle_timeout_ms * 1000) {
        call->idle_out = 1;
        return 1; /* CURLE_ABORTED_BY_CALLBACK */
    }
    return 0;
}

/* ---- completion --------------------------------------------------------- */

static void call_unlink(aq_llm_call *call)
{
    aq_llm_client *c = call->c;
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
    c->in_flight--;
    call->sh->in_flight--;
}

static void call_free(aq_llm_call *call)
{
    if (call->easy)
        curl_easy_cleanup(call->easy);
    key_release(call->key);
    aq_buf_free(&call->body);
    aq_llm_sse_free(call->sse);
    free(call);
}

static void client_free(aq_llm_client *c);

static void call_complete(aq_llm_call *call, CURLcode rc)
{
    aq_llm_call_result res;
    aq_llm_response resp;
    char errtext[CURL_ERROR_SIZE + AQ_ERR_MAX + 64];
    long code = 0;
    int64_t end_us = aq_mono_us();

    memset(&res, 0, sizeof(res));
    memset(&resp, 0, sizeof(resp));
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
    res.http_status = code;
    res.ttft_us = call->first_delta_us ? call->first_delta_us - call->start_us : -1;
    errtext[0] = '\0';

    if (call->is_sse && code == 200 && !call->sse && !call->nomem)
        write_sse(call, "", 0); /* a 200 stream that closed before its first byte */
    if (call->stream && (call->idle_out || (call->sse && rc == CURLE_OPERATION_TIMEDOUT))) {
        /* a streamed call that stopped moving: idle (no byte for
         * idle_timeout) or over its whole-call limit */
        int64_t ms = (end_us - call->start_us) / 1000;
        res.streamed = call->sse != NULL;
        res.transport = AQ_HTTP_TIMEOUT;
        if (call->idle_out || ms + 1000 < call->timeout_ms)
            snprintf(errtext, sizeof(errtext),
                     "the %s stalled: no byte for %lld ms (llm_idle_timeout) after %llu events, "
                     "%lld ms into the call",
                     call->sse ? "stream" : "call", (long long)call->c->idle_timeout_ms,
                     (unsigned long long)aq_llm_sse_events(call->sse), (long long)ms);
        else
            snprintf(errtext, sizeof(errtext),
                     "the stream was still going after %lld ms (the call's limit)", (long long)ms);
    } else if (call->sse && !call->too_big && !call->nomem) {
        /* the stream ended (or the parser refused it, or the connection
         * broke): the parser says what came of it */
        aq_err perr;
        res.streamed = 1;
        res.transport = aq_llm_sse_finish(call->sse, &resp, &perr);
        if (res.transport == AQ_OK) {
            res.response = &resp;
            double secs = (double)(end_us - call->first_delta_us) / 1e6;
            if (call->first_delta_us && aq_llm_sse_deltas(call->sse) >= 2 && secs > 0)
                res.output_tokens_per_s = resp.usage.output_tokens / secs;
        } else if (rc != CURLE_OK && !call->sse_failed) {
            const char *raw = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);
            char clean[CURL_ERROR_SIZE + 16];
            aq_llm_sanitize(clean, sizeof(clean), raw, strnlen(raw, CURL_ERROR_SIZE),
                            CURL_ERROR_SIZE, call->key ? call->key->key : NULL);
            snprintf(errtext, sizeof(errtext), "%s (curl error %d: %s)", perr.msg, (int)rc, clean);
        } else {
            snprintf(errtext, sizeof(errtext), "%s", perr.msg);
        }
    } else if (rc == CURLE_OK) {
        res.transport = AQ_OK;
    } else if (call->too_big) {
        res.transport = AQ_LLM_RESPONSE_TOO_BIG;
        snprintf(errtext, sizeof(errtext), "response body over the %zu-byte cap", call->body.cap);
    } else if (call->nomem) {
        res.transport = AQ_NOMEM;
        snprintf(errtext, sizeof(errtext), "out of memory storing the response body");
    } else if (call->withheld) {
        res.transport = AQ_HTTP_CONNECT;
        snprintf(errtext, sizeof(errtext),
                 "the connection closed before an answer; the request was sent %u time%s, "
                 "the most allowed, and is not sent again",
                 call->sends, call->sends == 1 ? "" : "s");
    } else {
        res.transport = rc == CURLE_OPERATION_TIMEDOUT ? AQ_HTTP_TIMEOUT : AQ_HTTP_CONNECT;
        const char *raw = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);
        char clean[CURL_ERROR_SIZE + 16];
        aq_llm_sanitize(clean, sizeof(clean), raw, strnlen(raw, CURL_ERROR_SIZE), CURL_ERROR_SIZE,
                        call->key ? call->key->key : NULL);
        snprintf(errtext, sizeof(errtext), "curl error %d: %s", (int)rc, clean);
    }

    res.body = call->body.data ? call->body.data : "";
    res.body_len = call->body.len;
    if (call->body.data && (code < 200 || code > 299))
        aq_llm_redact_inplace(call->body.data, call->body.len, call->key ? call->key->key : NULL);
    res.request_id = call->request_id;
    res.retry_after_ms = call->retry_after_ms >= 0 ? call->retry_after_ms : call->retry_after_s_ms;
    res.ratelimit = call->rl;
    res.error = errtext;
    res.latency_us = end_us - call->start_us;
    res.sends = call->sends;

    /* Give the connection back to the cache before the callback, which may
     * start new calls. */
    curl_multi_remove_handle(call->sh->multi, call->easy);
    call_unlink(call);
    call->in_done = 1;
    call->done(call->ctx, &res);
    aq_llm_response_free(&resp);
    call_free(call);
}

static void check_multi_info(shard *sh)
{
    aq_llm_client *c = sh->c;
    CURLMsg *msg;
    int left;
    c->dispatching++;
    while (!c->destroy_pending && (msg = curl_multi_info_read(sh->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        if (priv)
            call_complete((aq_llm_call *)(void *)priv, rc);
    }
    c->dispatching--;
    if (c->destroy_pending && c->dispatching == 0)
        client_free(c);
}

/* ---- libevent <-> curl multi_socket ------------------------------------- */

static void on_socket_event(evutil_socket_t fd, short kind, void *arg)
{
    shard *sh = arg;
    int running = 0;
    int flags = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(sh->multi, fd, flags, &running);
    check_multi_info(sh);
}

static void on_timer_event(evutil_socket_t fd, short kind, void *arg)
{
    shard *sh = arg;
    int running = 0;
    (void)fd;
    (void)kind;
    curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(sh);
}

static void sock_ctx_free(aq_llm_client *c, sock_ctx *sc)
{
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        c->socks = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    if (sc->ev)
        event_free(sc->ev);
    free(sc);
}

/* CURLMOPT_SOCKETFUNCTION: watch `s` for what curl wants. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    shard *sh = userp;
    aq_llm_client *c = sh->c;
    sock_ctx *sc = socketp;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            curl_multi_assign(sh->multi, s, NULL);
            sock_ctx_free(c, sc);
        }
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!sc) {
        sc = calloc(1, sizeof(*sc));
        if (!sc)
            return -1;
        sc->sh = sh;
        sc->fd = s;
        sc->ev = event_new(c->base, s, kind, on_socket_event, sh);
        if (!sc->ev) {
            free(sc);
            return -1;
        }
        sc->next = c->socks;
        if (c->socks)
            c->socks->prev = sc;
        c->socks = sc;
        curl_multi_assign(sh->multi, s, sc);
    } else {
        event_del(sc->ev);
        event_assign(sc->ev, c->base, s, kind, on_socket_event, sh);
    }
    if (event_add(sc->ev, NULL) != 0)
        return -1;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer for the whole multi. Never act from in
 * here; the libevent timer calls curl back (a 0 timeout fires on the next
 * loop iteration, which keeps completions out of aq_llm_call_start). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    shard *sh = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(sh->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(sh->timer, &tv) == 0 ? 0 : -1;
}

/* ---- shards ------------------------------------------------------------- */

static void shard_free(shard *sh)
{
    if (!sh)
        return;
    aq_llm_client *c = sh->c;
    if (sh->multi)
        curl_multi_cleanup(sh->multi);   /* may still report sockets to remove */
    for (sock_ctx *sc = c->socks, *next; sc; sc = next) {
        next = sc->next;
        if (sc->sh == sh)
            sock_ctx_free(c, sc);
    }
    if (sh->timer)
        event_free(sh->timer);
    free(sh);
}

/* The connection limit of shard `i`: max_connections split as evenly as it
 * goes over the shards it may open (their sum is exactly max_connections). */
static long shard_max_connections(const aq_llm_client *c, size_t i)
{
    if (c->max_connections <= 0)
        return 0;
    long n = (long)c->max_shards;
    return c->max_connections / n + ((long)i < c->max_connections % n ? 1 : 0);
}

/* How many idle connections shard `i` keeps for reuse. libcurl's default is
 * four per transfer in the multi *at the moment a transfer ends*, so each
 * dip in calls in flight (a fetch batch draining, a rate-limit pause) closed
 * keep-alive connections that the next wave then opened again: 11% of B1's
 * calls paid a new TCP connection. A shard never runs more than shard_calls
 * calls at once (unless every shard is full), so that many idle connections
 * is all it can reuse; the shard's share of max_connections (`max_conns`),
 * when set, is a hard limit instead. */
static long shard_idle_connections(const aq_llm_client *c, long max_conns)
{
    return max_conns > 0 ? max_conns : (long)c->shard_calls;
}

static aq_status shard_open(aq_llm_client *c, aq_err *err)
{
    aq_status st = AQ_OK;
    size_t i = c->n_shards;
    long max_conns = shard_max_connections(c, i);
    shard *sh = calloc(1, sizeof(*sh));
    if (!sh)
        return aq_err_set(err, AQ_NOMEM, "out of memory opening a curl multi handle");
    sh->c = c;
    sh->timer = evtimer_new(c->base, on_timer_event, sh);
    sh->multi = curl_multi_init();
    if (!sh->timer || !sh->multi) {
        st = aq_err_set(err, AQ_NOMEM, "cannot create a curl multi handle or its timer");
        goto out;
    }
    CURLMcode mc = CURLM_OK;
    if ((mc = curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, socket_cb)) != CURLM_OK ||
        (mc = curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh)) != CURLM_OK ||
        (mc = curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, timer_cb)) != CURLM_OK ||
        (mc = curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh)) != CURLM_OK ||
        (mc = curl_multi_setopt(sh->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX)) !=
            CURLM_OK ||
        (mc = curl_multi_setopt(sh->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_conns)) !=
            CURLM_OK ||
        (mc = curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS,
                                shard_idle_connections(c, max_conns))) != CURLM_OK) {
        st = aq_err_set(err, AQ_IO, "curl_multi_setopt: %s", curl_multi_strerror(mc));
        goto out;
    }
    c->shards[c->n_shards++] = sh;
    sh = NULL;
out:
    shard_free(sh);
    return st;
}

/* The first shard with room, so calls stay packed in as few multi handles
 * (and connection caches) as their number needs; a new shard when all are
 * full; the least busy once no more may open. */
static aq_status shard_pick(aq_llm_client *c, shard **out, aq_err *err)
{
    aq_status st = AQ_OK;
    shard *least = NULL;
    for (size_t i = 0; i < c->n_shards; i++) {
        shard *sh = c->shards[i];
        if (sh->in_flight < c->shard_calls) {
            *out = sh;
            return AQ_OK;
        }
        if (!least || sh->in_flight < least->in_flight)
            least = sh;
    }
    if (c->n_shards < c->max_shards) {
        if ((st = shard_open(c, err)) != AQ_OK)
            return st;
        least = c->shards[c->n_shards - 1];
    }
    *out = least;
    return AQ_OK;
}

/* ---- client ------------------------------------------------------------- */

static char *dup_concat(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (s) {
        memcpy(s, a, na);
        memcpy(s + na, b, nb + 1);
    }
    return s;
}

static int header_value_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static void client_free(aq_llm_client *c)
{
    while (c->calls) {
        aq_llm_call *call = c->calls;
        curl_multi_remove_handle(call->sh->multi, call->easy);
        call_unlink(call);
        call_free(call);
    }
    for (size_t i = 0; i < c->n_shards; i++)
        shard_free(c->shards[i]);
    if (c->share)
        curl_share_cleanup(c->share);
    while (c->keys) {
        key_entry *k = c->keys;
        c->keys = k->next;
        key_entry_free(k);
    }
    free(c->url);
    free(c->version_hdr);
    free(c->ca_file);
    free(c);
}

aq_status aq_llm_client_new(struct event_base *base, const aq_llm_client_config *cfg,
                            aq_llm_client **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_llm_client *c = NULL;

    if (!base || !cfg || !out)
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_client_new: NULL argument");
    const char *bu = cfg->base_url;
    if (!bu || (strncasecmp(bu, "http://", 7) != 0 && strncasecmp(bu, "https://", 8) != 0))
        return aq_err_set(err, AQ_CONFIG, "llm base_url must start with http:// or https://");
    if (!header_value_ok(bu) || strchr(bu, ' ') || strchr(bu, '@'))
        return aq_err_set(err, AQ_CONFIG,
                          "llm base_url has spaces, control characters or credentials");
    const char *ver = cfg->anthropic_version ? cfg->anthropic_version : AQ_LLM_DEFAULT_VERSION;
    if (!ver[0] || !header_value_ok(ver))
        return aq_err_set(err, AQ_CONFIG, "anthropic_version is empty or has control characters");
    if (cfg->connect_timeout_ms < 0 || cfg->timeout_ms < 0 || cfg->max_connections < 0 ||
        cfg->idle_timeout_ms < 0 || cfg->stream_timeout_ms < 0)
        return aq_err_set(err, AQ_CONFIG, "llm timeouts and max_connections must not be negative");
    if (cfg->shard_calls < 0 || cfg->shard_calls > 1000000)
        return aq_err_set(err, AQ_CONFIG, "llm shard_calls must be in [1, 1000000] (0: default)");
    if (cfg->recv_buffer_bytes != 0 &&
        (cfg->recv_buffer_bytes < 1024 || cfg->recv_buffer_bytes > CURL_MAX_READ_SIZE))
        return aq_err_set(err, AQ_CONFIG, "llm recv_buffer_bytes must be in [1024, %d]",
                          CURL_MAX_READ_SIZE);

    c = calloc(1, sizeof(*c));
    if (!c)
        return aq_err_set(err, AQ_NOMEM, "out of memory creating the LLM client");
    c->base = base;
    c->is_https = strncasecmp(bu, "https://", 8) == 0;
    c->connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : AQ_LLM_DEFAULT_CONNECT_TIMEOUT_MS;
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : AQ_LLM_DEFAULT_TIMEOUT_MS;
    c->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : AQ_LLM_DEFAULT_IDLE_TIMEOUT_MS;
    c->stream_timeout_ms =
        cfg->stream_timeout_ms ? cfg->stream_timeout_ms : AQ_LLM_DEFAULT_STREAM_TIMEOUT_MS;
    c->max_response_bytes =
        cfg->max_response_bytes ? cfg->max_response_bytes : AQ_LLM_DEFAULT_MAX_RESPONSE_BYTES;
    c->recv_buffer_bytes =
        cfg->recv_buffer_bytes ? cfg->recv_buffer_bytes : AQ_LLM_DEFAULT_RECV_BUFFER_BYTES;
    c->shard_calls = cfg->shard_calls ? (size_t)cfg->shard_calls : AQ_LLM_DEFAULT_SHARD_CALLS;
    c->max_connections = cfg->max_connections;
    c->max_shards = AQ_LLM_MAX_SHARDS;
    if (c->max_connections > 0) {
        /* enough shards that each gets at most shard_calls connections */
        size_t need = (size_t)(c->max_connections - 1) / c->shard_calls + 1;
        if (need < c->max_shards)
            c->max_shards = need;
    }

    size_t blen = strlen(bu);
    while (blen > 0 && bu[blen - 1] == '/')
        blen--;
    char *trimmed = strndup(bu, blen);
    c->url = trimmed ? dup_concat(trimmed, "/v1/messages") : NULL;
    free(trimmed);
    c->version_hdr = dup_concat("anthropic-version: ", ver);
    if (cfg->ca_file && cfg->ca_file[0])
        c->ca_file = strdup(cfg->ca_file);
    if (!c->url || !c->version_hdr || (cfg->ca_file && cfg->ca_file[0] && !c->ca_file)) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory creating the LLM client");
        goto out;
    }

    c->share = curl_share_init();
    if (!c->share) {
        st = aq_err_set(err, AQ_NOMEM, "cannot create the curl share handle");
        goto out;
    }
    /* One DNS cache and one TLS session cache for every call. The share is
     * only ever touched from the loop thread, so it needs no lock functions. */
    if (curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        st = aq_err_set(err, AQ_IO, "curl refuses to share DNS and TLS sessions");
        goto out;
    }
    /* the first shard now, so that a client curl refuses fails here */
    if ((st = shard_open(c, err)) != AQ_OK)
        goto out;
    *out = c;
    c = NULL;
out:
    if (c)
        client_free(c);
    return st;
}

/* Called each time the request is about to go out on a connection. libcurl
 * re-sends a request by itself when the reused keep-alive connection it
 * went out on dies before any answer: the provider may have seen both, so
 * they are counted as calls, not hidden, and past max_sends the re-send is
 * refused (the transfer then fails with CURLE_ABORTED_BY_CALLBACK). */
static int prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    aq_llm_call *call = clientp;
    if (call->max_sends && call->sends >= call->max_sends) {
        call->withheld = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    call->sends++;
    return CURL_PREREQFUNC_OK;
}

static aq_status easy_setup(aq_llm_client *c, aq_llm_call *call, const char *body, size_t len,
                            int64_t timeout_ms, aq_err *err)
{
    CURL *e = call->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                         \
    do {                                                      \
        if ((rc = curl_easy_setopt(e, opt, val)) != CURLE_OK) \
            goto fail;                                        \
    } while (0)
    SET(CURLOPT_PRIVATE, call);
    SET(CURLOPT_URL, c->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_HTTPHEADER, call->key->hdrs);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    SET(CURLOPT_POSTFIELDS, body);   /* borrowed, not copied */
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, call);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, call);
    SET(CURLOPT_ERRORBUFFER, call->errbuf);
    SET(CURLOPT_PREREQFUNCTION, prereq_cb);
    SET(CURLOPT_PREREQDATA, call);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    if (call->stream) {
        /* The idle timeout: no byte for idle_timeout (xferinfo_cb; the
         * provider's pings keep a slow answer alive). The low-speed limit
         * makes libcurl look (and call xferinfo_cb) about once a second
         * while the transfer is quiet, and is a backstop: under 1 byte/s
         * (averaged over ~5 s) for idle_timeout + 10 s. */
        SET(CURLOPT_NOPROGRESS, 0L);
        SET(CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
        SET(CURLOPT_XFERINFODATA, call);
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, (long)((c->idle_timeout_ms + 999) / 1000 + 10));
    }
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (c->is_https)
        SET(CURLOPT_PIPEWAIT, 1L);   /* wait to multiplex on a connection being set up */
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_SHARE, c->share);
    SET(CURLOPT_BUFFERSIZE, c->recv_buffer_bytes);
    /* bodies over 64 KiB are sent through an upload buffer: the smallest */
    SET(CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file)
        SET(CURLOPT_CAINFO, c->ca_file);
    SET(CURLOPT_USERAGENT, "agentq/0.1");
#undef SET
    return AQ_OK;
fail:
    return aq_err_set(err, AQ_IO, "curl_easy_setopt: %s", curl_easy_strerror(rc));
}

aq_status aq_llm_call_start(aq_llm_client *c, const char *api_key, const char *body, size_t len,
                            int64_t timeout_ms, unsigned max_sends, aq_llm_done_fn done, void *ctx,
                            aq_llm_call **out, aq_err *err)
{
    aq_llm_call_opts o = {timeout_ms, max_sends, 0};
    return aq_llm_call_start_opts(c, api_key, body, len, &o, done, ctx, out, err);
}

aq_status aq_llm_call_start_opts(aq_llm_client *c, const char *api_key, const char *body,
                                 size_t len, const aq_llm_call_opts *opts, aq_llm_done_fn done,
                                 void *ctx, aq_llm_call **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_llm_call *call = NULL;
    aq_llm_call_opts none = {0, 0, 0};
    if (!opts)
        opts = &none;
    int64_t timeout_ms = opts->timeout_ms;

    if (!c || !done || (!body && len > 0))
        return aq_err_set(err, AQ_INVALID_ARG, "aq_llm_call_start: NULL client, callback or body");
    if (c->destroy_pending)
        return aq_err_set(err, AQ_SHUTDOWN, "the LLM client is being destroyed");
    if (!key_is_valid(api_key))
        return aq_err_set(err, AQ_INVALID_ARG,
                          "API key is empty, too long or has characters not allowed in a header");
    if (timeout_ms < 0)
        return aq_err_set(err, AQ_INVALID_ARG, "call timeout must not be negative");

    call = calloc(1, sizeof(*call));
    if (!call)
        return aq_err_set(err, AQ_NOMEM, "out of memory starting an LLM call");
    call->c = c;
    call->done = done;
    call->ctx = ctx;
    call->retry_after_ms = call->retry_after_s_ms = -1;
    call->max_sends = opts->max_sends;
    call->stream = opts->stream ? 1 : 0;
    call->timeout_ms = timeout_ms ? timeout_ms : call->stream ? c->stream_timeout_ms : c->timeout_ms;
    ratelimit_init(&call->rl);
    aq_buf_init(&call->body, c->max_response_bytes);

    if (!(call->key = key_acquire(c, api_key))) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory building request headers");
        goto out;
    }
    if (!(call->easy = curl_easy_init())) {
        st = aq_err_set(err, AQ_NOMEM, "curl_easy_init failed");
        goto out;
    }
    if ((st = easy_setup(c, call, body ? body : "", len, call->timeout_ms, err)) != AQ_OK)
        goto out;

    shard *sh = NULL;
    if ((st = shard_pick(c, &sh, err)) != AQ_OK)
        goto out;
    call->start_us = aq_mono_us();
    CURLMcode mc = curl_multi_add_handle(sh->multi, call->easy);
    if (mc != CURLM_OK) {
        st = aq_err_set(err, mc == CURLM_OUT_OF_MEMORY ? AQ_NOMEM : AQ_IO,
                        "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        goto out;
    }
    call->sh = sh;
    sh->in_flight++;
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    c->in_flight++;
    if (out)
        *out = call;
    call = NULL;
out:
    if (call)
        call_free(call);
    return st;
}

void aq_llm_call_cancel(aq_llm_call *call)
{
    if (!call || call->in_done)
        return;
    curl_multi_remove_handle(call->sh->multi, call->easy);
    call_unlink(call);
    call_free(call);
}

size_t aq_llm_client_in_flight(const aq_llm_client *c)
{
    return c ? c->in_flight : 0;
}

size_t aq_llm_client_shards(const aq_llm_client *c)
{
    return c ? c->n_shards : 0;
}

void aq_llm_client_destroy(aq_llm_client *c)
{
    if (!c)
        return;
    if (c->dispatching > 0) {
        /* called from a done callback: finish once the dispatch loop unwinds */
        while (c->calls) {
            aq_llm_call *call = c->calls;
            curl_multi_remove_handle(call->sh->multi, call->easy);
            call_unlink(call);
            call_free(call);
        }
        c->destroy_pending = 1;
        return;
    }
    client_free(c);
}
