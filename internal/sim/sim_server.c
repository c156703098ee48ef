/* The HTTP side of the simulator: N worker threads, each with its own
 * event_base and evhttp, sharing one port through SO_REUSEPORT sockets (the
 * kernel spreads connections over them). A worker never blocks: latency is an
 * evtimer per pending request.
 *
 * Every connection that sent a request has a sim_conn (found through a
 * per-worker map keyed by the evhttp_connection, freed by evhttp's close
 * callback). It holds the one request evhttp lets a connection have pending,
 * its latency timer, and a read watch that notices a client giving up while we
 * hold its request (evhttp itself stops reading while a request is pending). */
#include "sim.h"

#include "core/list.h"
#include "core/ptrmap.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* struct event embedded in sim_conn */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "sim_random.h"
#include "sim_ratelimit.h"
#include "sim_request.h"
#include "sim_stats.h"
#include "sim_stream.h"

#define SIM_MAX_HEADERS_BYTES (64 * 1024) /* request line + headers of one request */
#define SIM_LISTEN_BACKLOG 65535
#define SIM_IDLE_TIMEOUT_S 120            /* evhttp read/write timeout per connection (a stream that
                                           * makes progress is not cut by it, however long) */
#define SIM_TEXT_CAP ((size_t)AQ_SIM_MAX_OUTPUT_TOKENS * 4 + 4096)
#define SIM_OUT_CAP (SIM_TEXT_CAP * 6 + 65536) /* escaped text (<= 6x) + the rest */
#define SIM_MAX_LIST_ITEMS 4096           /* entries in the keys / models options */
#define SIM_ID_LEN 32                     /* "req_" + 24 hex + NUL, rounded up */
#define SIM_PROMPT_CACHE_SLOTS 4096       /* cached prompt prefixes (direct-mapped: a clash evicts) */
#define SIM_STREAM_FLUSH_BYTES (256 * 1024) /* events gathered before they go to the connection */
#define SIM_STREAM_CHUNK_TOKENS 16        /* tokens per delta when streaming as fast as possible */
#define SIM_STREAM_TICKS_PER_S 50         /* paced streams: deltas per second at most */
#define SIM_CUT_WAIT_MS 10                /* a cut waits for what was sent to leave, this often */
#define SIM_CUT_WAIT_TRIES 500
#define SIM_MODELS_MAX_LIMIT 1000         /* GET /v1/models?limit= */
#define SIM_MODELS_DEFAULT_LIMIT 20
#define SIM_BODY_SLACK (1024 * 1024)      /* over max_body_bytes still read, to answer 413 in JSON */

typedef enum pend_action { ACT_REPLY, ACT_DROP, ACT_STALL, ACT_STREAM } pend_action;

/* What happens halfway through a stream. */
typedef enum stream_fault { SF_NONE, SF_ERROR, SF_CUT } stream_fault;

/* What a valid request is answered with, in the order of fault_cum. */
typedef enum sim_fault {
    F_429, F_500, F_504, F_529, F_DROP, F_STALL, F_BAD_JSON, F_TRUNCATED, F_HUGE,
    N_FAULTS,
    F_NONE = N_FAULTS,
} sim_fault;

typedef struct sim_worker sim_worker;

/* An answer on its way: what it is counted as, and the rate-limit charge it
 * settles when it is sent (or when the request ends without it). */
typedef struct sim_reply {
    int code;
    int64_t stat_input, stat_output; /* tokens for the counters (proper 200s only) */
    aq_sim_rl_ticket ticket;         /* admitted requests: settled exactly once */
    int64_t settle_output;           /* the output the charge is corrected to on reply */
} sim_reply;

typedef struct sim_conn {
    sim_worker *w;
    struct evhttp_connection *evcon;
    struct evhttp_request *pending; /* our answer is due (latency) or never (stall) */
    pend_action action;
    sim_reply reply;                /* of the pending request */
    int fd;
    struct event timer; /* latency, or stall_max; a stream's pace */
    struct event watch; /* EOF from the client while pending */
    /* A streamed answer (ACT_STREAM): pending stays set until it ends. */
    aq_sim_stream *stream;
    stream_fault sfault;
    bool stream_started, cutting;
    int cut_tries;
    int64_t next_ping_ms;
} sim_conn;

struct sim_worker {
    aq_sim_server *srv;
    size_t idx;
    struct event_base *base;
    struct evhttp *http;
    int listen_fd; /* owned here until evhttp takes it */
    int wake_fd;   /* eventfd: stop */
    struct event *wake_ev;
    pthread_t thread;
    bool started;
    aq_sim_rng rng;
    aq_buf text, out; /* reused by every request of this worker */
    struct evbuffer *chunk; /* a stream's events on their way to evhttp */
    uint64_t seq;
    aq_ptrmap conns; /* evhttp_connection* -> sim_conn* */
};

struct aq_sim_server {
    size_t n_workers;
    sim_worker *workers;
    int port;
    aq_sim_limits limits;
    aq_list models;
    aq_list keys;
    aq_list versions;
    aq_sim_output_range out_range;
    aq_sim_tool_opts tool_opts;
    aq_sim_latency latency;
    double fault_cum[N_FAULTS]; /* cumulative shares, in sim_fault order */
    int64_t retry_after_s, stall_max_ms, max_body, huge_bytes;
    int64_t stream_rate, stream_ping_ms;
    double stream_error_share, stream_cut_share;
    uint32_t nonce;
    aq_sim_stats *stats;
    aq_sim_ratelimit *rl;
    bool running;
    /* Prompt caching: which marked prefixes are cached, shared by the
     * threads (a repeat may land on another one), until when. */
    pthread_mutex_t pc_lock;
    uint64_t pc_hash[SIM_PROMPT_CACHE_SLOTS];
    int64_t pc_until_ms[SIM_PROMPT_CACHE_SLOTS];
};

/* The tokens of the longest listed prefix that is cached (0: none); a hit's
 * ttl restarts, and every marked prefix is cached from now for its ttl (the
 * provider does both). */
static int64_t prompt_cache_apply(aq_sim_server *srv, const aq_sim_answer *a)
{
    int64_t now = aq_mono_ms(), best = 0;
    pthread_mutex_lock(&srv->pc_lock);
    for (size_t i = 0; i < a->n_cache_points; i++) {
        const aq_sim_cache_point *p = &a->cache_points[i];
        size_t slot = (size_t)(p->hash % SIM_PROMPT_CACHE_SLOTS);
        if (srv->pc_hash[slot] == p->hash && srv->pc_until_ms[slot] > now) {
            if (p->tokens > best)
                best = p->tokens;
            srv->pc_until_ms[slot] = now + p->ttl_ms;
        }
    }
    for (size_t i = 0; i < a->n_cache_points; i++) {
        const aq_sim_cache_point *p = &a->cache_points[i];
        size_t slot = (size_t)(p->hash % SIM_PROMPT_CACHE_SLOTS);
        if (p->mark && (srv->pc_hash[slot] != p->hash || srv->pc_until_ms[slot] < now + p->ttl_ms)) {
            srv->pc_hash[slot] = p->hash;
            srv->pc_until_ms[slot] = now + p->ttl_ms;
        }
    }
    pthread_mutex_unlock(&srv->pc_lock);
    return best;
}

static void prompt_cache_reset(aq_sim_server *srv)
{
    pthread_mutex_lock(&srv->pc_lock);
    memset(srv->pc_hash, 0, sizeof(srv->pc_hash));
    memset(srv->pc_until_ms, 0, sizeof(srv->pc_until_ms));
    pthread_mutex_unlock(&srv->pc_lock);
}


/* ------------------------------------------------------------------ helpers */

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 504: return "Gateway Timeout";
    case 529: return "Overloaded";
    default: return "Error";
    }
}

static void put_hex(char *p, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = hex[v & 15];
        v >>= 4;
    }
}

/* prefix + 8 hex of the process nonce + 2 hex of the worker + 14 hex sequence. */
static void make_id(sim_worker *w, const char *prefix, char out[SIM_ID_LEN])
{
    size_t n = strlen(prefix);
    memcpy(out, prefix, n);
    put_hex(out + n, w->srv->nonce, 8);
    put_hex(out + n + 8, w->idx, 2);
    put_hex(out + n + 10, ++w->seq, 14);
    out[n + 24] = '\0';
}

static void add_header_i64(struct evkeyvalq *h, const char *name, int64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRId64, v);
    evhttp_add_header(h, name, num);
}

/* The anthropic-ratelimit-* headers of a key's buckets, as of now. */
static void add_ratelimit_headers(struct evkeyvalq *h, const aq_sim_rl_state *v)
{
    aq_sim_rl_header hdrs[AQ_SIM_RL_N_HEADERS];
    aq_sim_rl_headers(v, aq_now_unix_ms(), hdrs);
    for (size_t i = 0; i < AQ_SIM_RL_N_HEADERS; i++)
        evhttp_add_header(h, hdrs[i].name, hdrs[i].value);
}

/* x-should-retry on errors as the API sends it (the SDKs obey it): true for
 * 408, 409, 429 and 5xx, false for the other statuses. */
static void send_reply(struct evhttp_request *req, int code)
{
    if (code >= 400)
        evhttp_add_header(evhttp_request_get_output_headers(req), "x-should-retry",
                          code == 408 || code == 409 || code == 429 || code >= 500 ? "true" : "false");
    evhttp_send_reply(req, code, reason_phrase(code), NULL);
}

/* Put w->out as the body, with its content type. */
static void set_body(sim_worker *w, struct evhttp_request *req, const char *content_type)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "content-type", content_type);
    evbuffer_add(evhttp_request_get_output_buffer(req), w->out.data, w->out.len);
}

/* An API error body in w->out. */
static void set_error(sim_worker *w, struct evhttp_request *req, const char *type, const char *msg,
                      const char *rid)
{
    aq_buf_reset(&w->out);
    if (aq_sim_render_error(&w->out, type, msg, rid) != AQ_OK) {
        aq_buf_reset(&w->out);
        aq_buf_append_str(&w->out, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"\"}}");
    }
    set_body(w, req, "application/json");
}

/* Answer a /v1/messages request now (it counts in the status counters). */
static void reply_messages(sim_worker *w, struct evhttp_request *req, int code, int64_t in, int64_t out)
{
    aq_sim_stats_response(w->srv->stats, w->idx, code, in, out);
    send_reply(req, code);
}

/* Send a prepared answer: settle its charge first, so that its headers show
 * the buckets after the correction. */
static void finish_reply(sim_worker *w, struct evhttp_request *req, sim_reply *rep)
{
    if (rep->ticket.key_hash) {
        aq_sim_rl_state view;
        aq_sim_ratelimit_settle(w->srv->rl, &rep->ticket, rep->settle_output, aq_mono_ms(), &view);
        add_ratelimit_headers(evhttp_request_get_output_headers(req), &view);
    }
    reply_messages(w, req, rep->code, rep->stat_input, rep->stat_output);
}

static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    if (strncasecmp(ct, "application/json", 16) != 0)
        return false;
    ct += 16;
    return *ct == '\0' || *ct == ';' || *ct == ' ';
}

/* -------------------------------------------------- pending requests, close */

/* The pending request is over; a charge it still holds is corrected to no
 * output (dropped, stalled, given up by the client, or the server stopping). */
static void conn_end_pending(sim_conn *c)
{
    event_del(&c->timer);
    if (c->fd >= 0)
        event_del(&c->watch);
    if (c->pending) {
        aq_sim_stats_end(c->w->srv->stats);
        c->pending = NULL;
    }
    if (c->reply.ticket.key_hash)
        aq_sim_ratelimit_settle(c->w->srv->rl, &c->reply.ticket, 0, aq_mono_ms(), NULL);
    memset(&c->reply, 0, sizeof(c->reply));
    aq_sim_stream_free(c->stream);
    c->stream = NULL;
    c->stream_started = c->cutting = false;
    c->cut_tries = 0;
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    sim_conn *c = arg;
    struct evhttp_request *req = c->pending;
    conn_end_pending(c);
    /* A request evhttp already detached from the connection is ours to free;
     * one still attached is freed with the connection. */
    if (req && !evhttp_request_get_connection(req))
        evhttp_request_free(req);
    aq_ptrmap_take(&c->w->conns, evcon);
    aq_sim_stats_conn_close(c->w->srv->stats);
    free(c);
}

/* Close the connection without answering; frees c (through on_close). */
static void conn_abort(sim_conn *c)
{
    conn_end_pending(c);
    evhttp_connection_free(c->evcon);
}

/* ---------------------------------------------------------------- streams */

static void timer_in_us(sim_conn *c, int64_t us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    evtimer_add(&c->timer, &tv);
}

/* What the stream gathered in w->out goes to the connection. */
static void stream_flush(sim_worker *w, struct evhttp_request *req)
{
    if (!w->out.len)
        return;
    evbuffer_add(w->chunk, w->out.data, w->out.len);
    evhttp_send_reply_chunk(req, w->chunk); /* drains w->chunk */
    aq_buf_reset(&w->out);
}

/* The stream is over (message_stop, or an error event): settle its charge,
 * count it, and end the chunked reply last (evhttp may free c in it). */
static void stream_end(sim_conn *c, struct evhttp_request *req, bool counted)
{
    sim_worker *w = c->w;
    sim_reply rep = c->reply;
    if (rep.ticket.key_hash)
        aq_sim_ratelimit_settle(w->srv->rl, &rep.ticket, rep.settle_output, aq_mono_ms(), NULL);
    memset(&c->reply, 0, sizeof(c->reply));
    aq_sim_stats_response(w->srv->stats, w->idx, 200, counted ? rep.stat_input : 0, counted ? rep.stat_output : 0);
    conn_end_pending(c);
    evhttp_send_reply_end(req);
}

/* fault_stream_cut: once what was sent has left (or after a while), close
 * the connection before message_stop. The charge is the whole answer's. */
static void stream_cut(sim_conn *c)
{
    sim_worker *w = c->w;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    if (!c->cutting) {
        c->cutting = true;
        aq_sim_stats_fault(w->srv->stats, w->idx, AQ_SIM_FAULT_STREAM_CUT);
        if (c->reply.ticket.key_hash)
            aq_sim_ratelimit_settle(w->srv->rl, &c->reply.ticket, c->reply.settle_output, aq_mono_ms(), NULL);
        memset(&c->reply, 0, sizeof(c->reply));
    }
    if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > 0 && c->cut_tries++ < SIM_CUT_WAIT_TRIES) {
        timer_in_us(c, SIM_CUT_WAIT_MS * 1000);
        return;
    }
    conn_abort(c);
}

/* One step of a streamed answer: the first one sends the headers,
 * message_start and a ping; then events up to the next delta (paced) or all
 * of them (stream_tokens_per_second 0); halfway, the stream fault if any. */
static void stream_tick(sim_conn *c)
{
    sim_worker *w = c->w;
    aq_sim_server *srv = w->srv;
    struct evhttp_request *req = c->pending;
    int64_t tokens = 0, now = aq_mono_ms();
    bool done = false;
    aq_status st = AQ_OK;

    if (c->cutting) {
        stream_cut(c);
        return;
    }
    aq_buf_reset(&w->out);
    if (!c->stream_started) {
        c->stream_started = true;
        evhttp_send_reply_start(req, 200, "OK");
        st = aq_sim_stream_next(c->stream, &w->out, &tokens, &done);
        if (st == AQ_OK)
            st = aq_sim_stream_ping(&w->out);
        c->next_ping_ms = now + srv->stream_ping_ms;
    }
    while (st == AQ_OK && !done) {
        if (c->sfault != SF_NONE && aq_sim_stream_past_half(c->stream)) {
            if (c->sfault == SF_CUT) {
                stream_flush(w, req);
                stream_cut(c);
                return;
            }
            aq_sim_stats_fault(srv->stats, w->idx, AQ_SIM_FAULT_STREAM_ERROR);
            if (aq_sim_stream_error(&w->out, "overloaded_error", "Overloaded") == AQ_OK)
                stream_flush(w, req);
            stream_end(c, req, false);
            return;
        }
        if (srv->stream_ping_ms > 0 && now >= c->next_ping_ms) {
            st = aq_sim_stream_ping(&w->out);
            c->next_ping_ms = now + srv->stream_ping_ms;
            continue;
        }
        st = aq_sim_stream_next(c->stream, &w->out, &tokens, &done);
        if (tokens > 0 && srv->stream_rate > 0)
            break;
        if (w->out.len >= SIM_STREAM_FLUSH_BYTES)
            stream_flush(w, req);
    }
    stream_flush(w, req);
    if (st != AQ_OK) { /* out of memory: the stream is cut */
        conn_abort(c);
        return;
    }
    if (done) {
        stream_end(c, req, true);
        return;
    }
    timer_in_us(c, tokens * 1000000 / srv->stream_rate);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    sim_conn *c = arg;
    struct evhttp_request *req = c->pending;
    (void)fd;
    (void)what;
    if (!req)
        return;
    switch (c->action) {
    case ACT_REPLY: {
        sim_reply rep = c->reply;
        memset(&c->reply, 0, sizeof(c->reply)); /* the charge goes with the answer */
        conn_end_pending(c);
        finish_reply(c->w, req, &rep);
        break;
    }
    case ACT_DROP:
        aq_sim_stats_dropped(c->w->srv->stats, c->w->idx);
        conn_abort(c);
        break;
    case ACT_STALL: /* held for stall_max: let it go */
        conn_abort(c);
        break;
    case ACT_STREAM:
        stream_tick(c);
        break;
    }
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    sim_conn *c = arg;
    char ch;
    (void)what;
    ssize_t n = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return; /* the client sent more (pipelining): stop watching; the timer still ends it */
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(&c->watch, NULL);
        return;
    }
    conn_abort(c); /* EOF or reset: the client gave up */
}

static void pend(sim_conn *c, struct evhttp_request *req, pend_action a, const sim_reply *rep,
                 int64_t delay_ms)
{
    struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)((delay_ms % 1000) * 1000)};
    c->pending = req;
    c->action = a;
    c->reply = *rep;
    evtimer_add(&c->timer, &tv);
    if (c->fd >= 0)
        event_add(&c->watch, NULL);
}

static sim_conn *conn_get(sim_worker *w, struct evhttp_connection *evcon)
{
    sim_conn *c = aq_ptrmap_get(&w->conns, evcon);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
        c->w = w;
        c->evcon = evcon;
        c->fd = (int)bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
        evtimer_assign(&c->timer, w->base, on_timer, c);
        if (c->fd >= 0)
            event_assign(&c->watch, w->base, c->fd, EV_READ, on_watch, c);
        if (aq_ptrmap_put(&w->conns, evcon, c) != AQ_OK) {
            free(c);
            return NULL;
        }
        aq_sim_stats_conn_open(w->srv->stats);
    }
    /* Set on every request: cheap, and right even if evhttp reused an address. */
    evhttp_connection_set_closecb(evcon, on_close, c);
    return c;
}

/* ------------------------------------------------------------ the handlers */

#define BAD_JSON_BODY \
    "<html><body><h1>agentq-sim fault_bad_json</h1><p>a 200 answer that is not JSON</p></body></html>\n"
#define HUGE_FILLER "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "

static sim_fault pick_fault(const aq_sim_server *srv, double u)
{
    for (int i = 0; i < N_FAULTS; i++)
        if (u < srv->fault_cum[i])
            return (sim_fault)i;
    return F_NONE;
}

static void free_huge(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* fault_huge: the answer with its text padded past huge_bytes, as the body
 * (handed to evbuffer without a copy). usage.output_tokens counts the padded text. */
static aq_status set_huge_body(sim_worker *w, struct evhttp_request *req, const aq_sim_request *r,
                               const aq_sim_answer *ans, const char *msg_id)
{
    size_t want = (size_t)w->srv->huge_bytes + 1, len = 0;
    aq_buf text, body;
    aq_sim_answer a = *ans;
    aq_status st;
    char *at = NULL, *data;

    aq_buf_init(&text, want + w->text.len);
    aq_buf_init(&body, want + w->text.len * 6 + 65536); /* only the answer's own text needs escapes */
    if ((st = aq_buf_append(&text, w->text.data, w->text.len)) != AQ_OK)
        goto out;
    if (text.len < want) {
        size_t pad = want - text.len;
        if ((st = aq_buf_extend(&text, pad, &at)) != AQ_OK)
            goto out;
        for (size_t i = 0; i < pad; i++)
            at[i] = HUGE_FILLER[i % (sizeof(HUGE_FILLER) - 1)];
    }
    a.output_tokens = aq_sim_tokens(text.len);
    if ((st = aq_sim_render_message(&body, r, &a, text.data, text.len, msg_id)) != AQ_OK)
        goto out;
    data = aq_buf_take(&body, &len);
    if (evbuffer_add_reference(evhttp_request_get_output_buffer(req), data, len, free_huge, NULL) != 0) {
        free(data);
        st = AQ_NOMEM;
        goto out;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "content-type", "application/json");
out:
    aq_buf_free(&text);
    aq_buf_free(&body);
    return st;
}

/* A 200 (or, for a fault answer, a bad 200) for an admitted request; 500 if
 * the simulator cannot build it. The charge is corrected to the answer's
 * output tokens either way: a fault answer costs what the answer it spoils would. */
/* A streamed answer: its events come from c->stream (stream_tick); the
 * body faults (bad JSON, truncated, huge) do not apply to streams. */
static aq_status answer_stream(sim_conn *c, struct evhttp_request *req, const aq_sim_request *r,
                               aq_sim_answer *ans, sim_reply *rep, const char *msg_id, aq_err *err)
{
    sim_worker *w = c->w;
    aq_sim_server *srv = w->srv;
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    int64_t chunk = srv->stream_rate > 0 ? srv->stream_rate / SIM_STREAM_TICKS_PER_S : SIM_STREAM_CHUNK_TOKENS;
    int64_t in = ans->input_tokens, out = ans->output_tokens;
    if (ans->n_calls || r->has_tool_result)
        aq_sim_stats_tools(srv->stats, w->idx, ans->n_calls, r->has_tool_result, ans->n_spoiled);
    aq_status st = aq_sim_stream_new(r, ans, w->text.data, w->text.len, msg_id, chunk, &c->stream, err);
    if (st != AQ_OK)
        return st;
    rep->code = 200;
    rep->settle_output = rep->stat_output = out;
    rep->stat_input = in;
    evhttp_add_header(oh, "content-type", "text/event-stream; charset=utf-8");
    evhttp_add_header(oh, "cache-control", "no-cache");
    return AQ_OK;
}

static void answer(sim_worker *w, sim_conn *c, struct evhttp_request *req, const aq_sim_request *r,
                   sim_fault fault, sim_reply *rep, const char *rid)
{
    aq_sim_server *srv = w->srv;
    aq_sim_answer ans = {0};
    aq_err err = {0};
    char msg_id[SIM_ID_LEN];
    aq_status st;

    if ((st = aq_sim_answer_build(r, srv->out_range, &srv->tool_opts, &w->text, &ans, &err)) == AQ_OK) {
        if (ans.n_cache_points)
            aq_sim_answer_cache_read(&ans, prompt_cache_apply(srv, &ans));
        make_id(w, "msg_", msg_id);
        if (r->stream) {
            st = answer_stream(c, req, r, &ans, rep, msg_id, &err);
            aq_sim_answer_free(&ans);
            if (st != AQ_OK) {
                rep->code = 500;
                set_error(w, req, "api_error", "the simulator could not build its answer", rid);
            }
            return;
        }
        aq_buf_reset(&w->out);
        st = aq_sim_render_message(&w->out, r, &ans, w->text.data, w->text.len, msg_id);
    }
    if (st == AQ_OK && fault == F_HUGE)
        st = set_huge_body(w, req, r, &ans, msg_id);
    if (st != AQ_OK) {
        aq_sim_answer_free(&ans);
        rep->code = 500;
        set_error(w, req, "api_error", "the simulator could not build its answer", rid);
        return;
    }
    rep->code = 200;
    rep->settle_output = ans.output_tokens;
    switch (fault) {
    case F_BAD_JSON:
        aq_sim_stats_fault(srv->stats, w->idx, AQ_SIM_FAULT_BAD_JSON);
        aq_buf_reset(&w->out);
        aq_buf_append_str(&w->out, BAD_JSON_BODY);
        set_body(w, req, "application/json");
        break;
    case F_TRUNCATED:
        /* a prefix of a JSON object is never JSON; cut where a character starts */
        aq_sim_stats_fault(srv->stats, w->idx, AQ_SIM_FAULT_TRUNCATED);
        w->out.len = aq_sim_utf8_cut(w->out.data, w->out.len, w->out.len / 2);
        w->out.data[w->out.len] = '\0'; /* aq_buf keeps its content terminated */
        set_body(w, req, "application/json");
        break;
    case F_HUGE:
        aq_sim_stats_fault(srv->stats, w->idx, AQ_SIM_FAULT_HUGE);
        break;
    default:
        rep->stat_input = ans.input_tokens;
        rep->stat_output = ans.output_tokens;
        if (ans.n_calls || r->has_tool_result)
            aq_sim_stats_tools(srv->stats, w->idx, ans.n_calls, r->has_tool_result, ans.n_spoiled);
        set_body(w, req, "application/json");
        break;
    }
    aq_sim_answer_free(&ans);
}

/* An enforced limit refused the request: 429 with the buckets and when to retry. */
static void set_rate_limited(sim_worker *w, struct evhttp_request *req, const aq_sim_rl_decision *d,
                             const aq_sim_rl_state *view, const char *rid)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    char msg[320];
    if (d->outcome == AQ_SIM_RL_TOO_MANY_KEYS) {
        snprintf(msg, sizeof(msg),
                 "This request would exceed the simulator's limit of %d API keys with rate-limit "
                 "state at once (none is idle); retry later (enforced by agentq-sim)",
                 AQ_SIM_RL_MAX_KEYS);
    } else if (d->never) {
        snprintf(msg, sizeof(msg),
                 "This request needs %" PRId64 " %s, more than the rate limit for this API key of %" PRId64
                 " %s per minute allows at all (enforced by agentq-sim)",
                 d->cost, aq_sim_rl_dim_name(d->limited_by), view->limit[d->limited_by],
                 aq_sim_rl_dim_name(d->limited_by));
    } else {
        snprintf(msg, sizeof(msg),
                 "This request would exceed the rate limit for this API key of %" PRId64
                 " %s per minute (enforced by agentq-sim)",
                 view->limit[d->limited_by], aq_sim_rl_dim_name(d->limited_by));
    }
    add_ratelimit_headers(oh, view);
    add_header_i64(oh, "retry-after", d->retry_after_s);
    set_error(w, req, "rate_limit_error", msg, rid);
}

/* The API key: x-api-key, else Authorization: Bearer <key> (what the
 * official TypeScript SDK sends). NULL when neither is there. */
static const char *api_key(struct evkeyvalq *ih)
{
    const char *key = evhttp_find_header(ih, "x-api-key");
    if (key && *key)
        return key;
    const char *auth = evhttp_find_header(ih, "authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        if (*auth)
            return auth;
    }
    return NULL;
}

/* What every /v1 route checks first, in the API's order: the method, the
 * key, the version, and for a body its content type. false: *code, *etype
 * and msg (a buffer of msg_cap bytes) say how to answer. */
static bool api_check(aq_sim_server *srv, struct evhttp_request *req, enum evhttp_cmd_type want,
                      const char **key, int *code, const char **etype, char *msg, size_t msg_cap)
{
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    const char *version;
    *etype = "invalid_request_error";
    *code = 400;
    *key = NULL;
    if (evhttp_request_get_command(req) != want) {
        *code = 405;
        snprintf(msg, msg_cap, "Method Not Allowed: use %s", want == EVHTTP_REQ_GET ? "GET" : "POST");
        return false;
    }
    *key = api_key(ih);
    if (!*key) {
        *code = 401;
        *etype = "authentication_error";
        snprintf(msg, msg_cap, "x-api-key header is required");
        return false;
    }
    if (srv->keys.n && !aq_list_contains(&srv->keys, *key)) {
        *code = 401;
        *etype = "authentication_error";
        snprintf(msg, msg_cap, "invalid x-api-key");
        *key = NULL;
        return false;
    }
    version = evhttp_find_header(ih, "anthropic-version");
    if (!version) {
        snprintf(msg, msg_cap, "anthropic-version: header is required");
        return false;
    }
    if (srv->versions.n && !aq_list_contains(&srv->versions, version)) {
        snprintf(msg, msg_cap, "anthropic-version: \"%.64s\" is not a valid version", version);
        return false;
    }
    if (want == EVHTTP_REQ_POST && !is_json_type(evhttp_find_header(ih, "content-type"))) {
        snprintf(msg, msg_cap, "content-type: must be application/json");
        return false;
    }
    return true;
}

/* An error answer outside /v1/messages (not in the messages counters). */
static void reply_error(sim_worker *w, struct evhttp_request *req, int code, const char *type, const char *msg,
                        const char *rid)
{
    set_error(w, req, type, msg, rid);
    send_reply(req, code);
}

/* x-sim-fault: steer one valid request to an answer (for tests of clients):
 * an HTTP status, or stream_error / stream_cut for a streamed request. */
typedef struct steer {
    bool set;
    int code;          /* an error status, or 0 */
    sim_fault fault;   /* the fault that answers it (F_NONE: a plain error) */
    stream_fault sfault;
} steer;

static const struct {
    int code;
    const char *type;
    sim_fault fault;
} steer_codes[] = {
    {400, "invalid_request_error", F_NONE}, {401, "authentication_error", F_NONE},
    {403, "permission_error", F_NONE},      {404, "not_found_error", F_NONE},
    {408, "timeout_error", F_NONE},         {409, "conflict_error", F_NONE},
    {413, "request_too_large", F_NONE},     {429, "rate_limit_error", F_429},
    {500, "api_error", F_500},              {504, "timeout_error", F_504},
    {529, "overloaded_error", F_529},
};
#define N_STEER (sizeof(steer_codes) / sizeof(steer_codes[0]))

static bool parse_steer(const char *v, steer *out)
{
    memset(out, 0, sizeof(*out));
    out->fault = F_NONE;
    if (!v)
        return true;
    out->set = true;
    if (strcmp(v, "stream_error") == 0 || strcmp(v, "stream_cut") == 0) {
        out->sfault = v[7] == 'e' ? SF_ERROR : SF_CUT;
        return true;
    }
    if (strcmp(v, "none") == 0)
        return true;
    for (size_t i = 0; i < N_STEER; i++) {
        char num[8];
        snprintf(num, sizeof(num), "%d", steer_codes[i].code);
        if (strcmp(v, num) == 0) {
            out->code = steer_codes[i].code;
            out->fault = steer_codes[i].fault;
            return true;
        }
    }
    return false;
}

static void handle_messages(sim_worker *w, sim_conn *c, struct evhttp_request *req, const char *rid)
{
    aq_sim_server *srv = w->srv;
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    aq_sim_request r = {0};
    aq_sim_rl_state view;
    aq_sim_rl_decision dec;
    sim_reply rep = {0};
    aq_err err = {0};
    const char *etype = "invalid_request_error", *msg = NULL, *key = NULL;
    char msgbuf[160];
    size_t key_len = 0;
    int code = 400;
    steer sv;
    aq_status st;

    aq_sim_stats_request(srv->stats, w->idx);
    if (!api_check(srv, req, EVHTTP_REQ_POST, &key, &code, &etype, msgbuf, sizeof(msgbuf))) {
        msg = msgbuf;
        if (!key)
            goto fail_unauth;
        key_len = strlen(key);
        goto fail;
    }
    key_len = strlen(key);
    if (!parse_steer(evhttp_find_header(ih, "x-sim-fault"), &sv)) {
        msg = "x-sim-fault: not one of 400, 401, 403, 404, 408, 409, 413, 429, 500, 504, 529, "
              "stream_error, stream_cut, none";
        goto fail;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if ((int64_t)len > srv->max_body) {
        code = 413;
        etype = "request_too_large";
        msg = "Request exceeds the maximum allowed number of bytes";
        goto fail;
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (!body) {
        code = 500;
        etype = "api_error";
        msg = "out of memory";
        goto fail;
    }
    if ((st = aq_sim_parse_request(body, len, &srv->limits, &r, &err)) != AQ_OK) {
        code = aq_sim_error_http_status(st, &etype);
        msg = err.msg;
        goto fail;
    }

    /* A valid request: fault, rate limits, answer, latency. */
    sim_fault fault = F_NONE;
    if (sv.set && sv.code && sv.fault == F_NONE) { /* a steered error without a fault of its own */
        aq_sim_request_free(&r);
        code = sv.code;
        for (size_t i = 0; i < N_STEER; i++)
            if (steer_codes[i].code == code)
                etype = steer_codes[i].type;
        snprintf(msgbuf, sizeof(msgbuf), "%s (simulated by agentq-sim: x-sim-fault)", reason_phrase(code));
        msg = msgbuf;
        goto fail;
    }
    aq_sim_stats_begin(srv->stats);
    fault = sv.set ? sv.fault : pick_fault(srv, aq_sim_rng_uniform(&w->rng));
    c->sfault = SF_NONE;
    if (r.stream) {
        if (sv.set) {
            c->sfault = sv.sfault;
        } else if (srv->stream_error_share > 0 || srv->stream_cut_share > 0) {
            double u = aq_sim_rng_uniform(&w->rng);
            c->sfault = u < srv->stream_error_share                            ? SF_ERROR
                        : u < srv->stream_error_share + srv->stream_cut_share ? SF_CUT
                                                                               : SF_NONE;
        }
    }
    pend_action action = ACT_REPLY;
    if (fault == F_429) { /* a random 429: charges nothing, like an enforced one */
        aq_sim_stats_fault(srv->stats, w->idx, AQ_SIM_FAULT_429);
        aq_sim_ratelimit_observe(srv->rl, key, key_len, aq_mono_ms(), &view);
        add_ratelimit_headers(oh, &view);
        add_header_i64(oh, "retry-after", srv->retry_after_s);
        set_error(w, req, "rate_limit_error",
                  "This request would exceed your rate limit (simulated by agentq-sim)", rid);
        rep.code = 429;
    } else {
        aq_sim_ratelimit_admit(srv->rl, key, key_len, aq_sim_input_tokens(&r), r.max_tokens,
                               aq_mono_ms(), &rep.ticket, &dec, &view);
        if (dec.outcome != AQ_SIM_RL_ADMITTED) { /* refused at once, no latency */
            aq_sim_request_free(&r);
            set_rate_limited(w, req, &dec, &view, rid);
            aq_sim_stats_end(srv->stats);
            reply_messages(w, req, 429, 0, 0);
            return;
        }
        switch (fault) {
        case F_500:
            rep.code = 500;
            set_error(w, req, "api_error", "Internal server error (simulated by agentq-sim)", rid);
            break;
        case F_504:
            rep.code = 504;
            set_error(w, req, "timeout_error", "Request timed out (simulated by agentq-sim)", rid);
            break;
        case F_529:
            rep.code = 529;
            add_header_i64(oh, "retry-after", srv->retry_after_s);
            set_error(w, req, "overloaded_error", "Overloaded (simulated by agentq-sim)", rid);
            break;
        case F_DROP:
            action = ACT_DROP;
            break;
        case F_STALL:
            action = ACT_STALL;
            break;
        default:
            answer(w, c, req, &r, fault, &rep, rid);
            if (c->stream) {
                add_ratelimit_headers(oh, &view);
                action = ACT_STREAM;
            }
            break;
        }
    }
    aq_sim_request_free(&r);

    if (action == ACT_STALL) {
        aq_sim_stats_stalled(srv->stats, w->idx);
        pend(c, req, ACT_STALL, &rep, srv->stall_max_ms);
        return;
    }
    int64_t delay = aq_sim_latency_sample(&srv->latency, &w->rng);
    if (action == ACT_REPLY && delay == 0) {
        aq_sim_stats_end(srv->stats);
        finish_reply(w, req, &rep);
        return;
    }
    /* A drop always goes through the timer: freeing the connection from inside
     * evhttp's request callback is not safe; a stream too (a cut frees it). */
    pend(c, req, action, &rep, delay);
    return;

fail:
    aq_sim_ratelimit_observe(srv->rl, key, key_len, aq_mono_ms(), &view);
    add_ratelimit_headers(oh, &view);
fail_unauth:
    set_error(w, req, etype, msg, rid);
    reply_messages(w, req, code, 0, 0);
}

/* POST /v1/messages/count_tokens: {"input_tokens": N}, N counted as the
 * answers count it (input + cache creation + cache read tokens). */
static void handle_count_tokens(sim_worker *w, struct evhttp_request *req, const char *rid)
{
    aq_sim_server *srv = w->srv;
    aq_sim_limits lim = srv->limits;
    aq_sim_request r = {0};
    aq_err err = {0};
    const char *etype, *key;
    char msg[160];
    int code;
    if (!api_check(srv, req, EVHTTP_REQ_POST, &key, &code, &etype, msg, sizeof(msg))) {
        reply_error(w, req, code, etype, msg, rid);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (!body) {
        reply_error(w, req, 500, "api_error", "out of memory", rid);
        return;
    }
    lim.count_tokens = true;
    aq_status st = aq_sim_parse_request(body, len, &lim, &r, &err);
    if (st != AQ_OK) {
        code = aq_sim_error_http_status(st, &etype);
        reply_error(w, req, code, etype, err.msg, rid);
        return;
    }
    aq_buf_reset(&w->out);
    aq_buf_printf(&w->out, "{\"input_tokens\":%" PRId64 "}", aq_sim_input_tokens(&r));
    aq_sim_request_free(&r);
    set_body(w, req, "application/json");
    send_reply(req, 200);
}

/* "claude-sonnet-4-5" -> "Claude Sonnet 4.5": words capitalised, numbers
 * that follow a number joined by a dot. */
static void display_name(const char *id, char *out, size_t cap)
{
    size_t n = 0;
    bool prev_num = false, first = true;
    const char *p = id;
    while (*p && n + 2 < cap) {
        size_t len = strcspn(p, "-");
        bool num = len > 0 && strspn(p, "0123456789") == len;
        if (!first)
            out[n++] = num && prev_num ? '.' : ' ';
        for (size_t i = 0; i < len && n + 1 < cap; i++)
            out[n++] = (char)(i == 0 && !num && p[i] >= 'a' && p[i] <= 'z' ? p[i] - 'a' + 'A' : p[i]);
        prev_num = num;
        first = false;
        p += len;
        if (*p == '-')
            p++;
    }
    out[n < cap ? n : cap - 1] = '\0';
}

static json_t *model_json(const char *id)
{
    char name[AQ_SIM_MAX_MODEL_BYTES + 1];
    display_name(id, name, sizeof(name));
    return json_pack("{s:s,s:s,s:s,s:s}", "type", "model", "id", id, "display_name", name, "created_at",
                     "2025-01-01T00:00:00Z");
}

static void reply_json(sim_worker *w, struct evhttp_request *req, json_t *doc, const char *rid)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        reply_error(w, req, 500, "api_error", "out of memory", rid);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "content-type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), text, strlen(text));
    free(text);
    send_reply(req, 200);
}

/* GET /v1/models[?limit=&after_id=&before_id=] and GET /v1/models/{id}: the
 * known models (the models option), in its order. */
static void handle_models(sim_worker *w, struct evhttp_request *req, const char *uri, size_t plen,
                          const char *rid)
{
    aq_sim_server *srv = w->srv;
    const aq_list *m = &srv->models;
    const char *etype, *key;
    char msg[320];
    int code;
    if (!api_check(srv, req, EVHTTP_REQ_GET, &key, &code, &etype, msg, sizeof(msg))) {
        reply_error(w, req, code, etype, msg, rid);
        return;
    }
    if (plen > 11) { /* /v1/models/{id} */
        char id[AQ_SIM_MAX_MODEL_BYTES + 1], raw[3 * AQ_SIM_MAX_MODEL_BYTES + 1];
        char *dec = NULL;
        if (plen - 11 < sizeof(raw)) {
            memcpy(raw, uri + 11, plen - 11);
            raw[plen - 11] = '\0';
            dec = evhttp_uridecode(raw, 0, NULL);
        }
        size_t idlen = dec ? strlen(dec) : 0;
        bool ok = dec && idlen > 0 && idlen <= AQ_SIM_MAX_MODEL_BYTES && !memchr(dec, '/', idlen);
        if (ok) {
            memcpy(id, dec, idlen);
            id[idlen] = '\0';
        }
        free(dec);
        if (!ok || !aq_list_contains(m, id)) {
            snprintf(msg, sizeof(msg), "model: %.256s", ok ? id : "");
            reply_error(w, req, 404, "not_found_error", msg, rid);
            return;
        }
        reply_json(w, req, model_json(id), rid);
        return;
    }
    struct evkeyvalq q;
    const char *query = strchr(uri, '?');
    long limit = SIM_MODELS_DEFAULT_LIMIT;
    TAILQ_INIT(&q);
    if (query && evhttp_parse_query_str(query + 1, &q) != 0) {
        reply_error(w, req, 400, "invalid_request_error", "the query string is malformed", rid);
        return;
    }
    const char *lim_s = evhttp_find_header(&q, "limit");
    const char *after = evhttp_find_header(&q, "after_id"), *before = evhttp_find_header(&q, "before_id");
    if (lim_s) {
        char *e = NULL;
        errno = 0;
        limit = strtol(lim_s, &e, 10);
        if (errno || e == lim_s || *e || limit < 1 || limit > SIM_MODELS_MAX_LIMIT) {
            evhttp_clear_headers(&q);
            reply_error(w, req, 400, "invalid_request_error",
                        "limit: Input should be greater than or equal to 1 and less than or equal to 1000", rid);
            return;
        }
    }
    /* [from, to) of the list: after after_id, or the limit before before_id */
    size_t from = 0, to = m->n;
    for (size_t i = 0; after && i < m->n; i++)
        if (strcmp(m->items[i], after) == 0)
            from = i + 1;
    for (size_t i = 0; before && i < m->n; i++)
        if (strcmp(m->items[i], before) == 0)
            to = i;
    if (from > to)
        from = to;
    bool more;
    if (before && !after) {
        more = to - from > (size_t)limit;
        if (more)
            from = to - (size_t)limit;
    } else {
        more = to - from > (size_t)limit;
        if (more)
            to = from + (size_t)limit;
    }
    evhttp_clear_headers(&q);
    json_t *data = json_array();
    for (size_t i = from; data && i < to; i++)
        if (json_array_append_new(data, model_json(m->items[i])) != 0) {
            json_decref(data);
            data = NULL;
        }
    json_t *doc = data ? json_pack("{s:o,s:b,s:s?,s:s?}", "data", data, "has_more", more, "first_id",
                                   from < to ? m->items[from] : NULL, "last_id", from < to ? m->items[to - 1] : NULL)
                       : NULL;
    reply_json(w, req, doc, rid);
}

static bool path_is(const char *uri, size_t len, const char *path)
{
    return strlen(path) == len && memcmp(uri, path, len) == 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    sim_worker *w = arg;
    aq_sim_server *srv = w->srv;
    char rid[SIM_ID_LEN];
    const char *uri = evhttp_request_get_uri(req);
    size_t plen = strcspn(uri, "?#");
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    sim_conn *c = conn_get(w, evhttp_request_get_connection(req));

    make_id(w, "req_", rid);
    evhttp_add_header(evhttp_request_get_output_headers(req), "request-id", rid);
    if (!c) {
        set_error(w, req, "api_error", "out of memory", rid);
        send_reply(req, 500);
        return;
    }
    if (path_is(uri, plen, "/v1/messages")) {
        handle_messages(w, c, req, rid);
        return;
    }
    if (path_is(uri, plen, "/v1/messages/count_tokens")) {
        handle_count_tokens(w, req, rid);
        return;
    }
    if (path_is(uri, plen, "/v1/models") || (plen > 11 && strncmp(uri, "/v1/models/", 11) == 0)) {
        handle_models(w, req, uri, plen, rid);
        return;
    }
    if (path_is(uri, plen, "/healthz") && (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)) {
        aq_buf_reset(&w->out);
        aq_buf_append_str(&w->out, "ok");
        set_body(w, req, "text/plain");
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    if (path_is(uri, plen, "/sim/stats") && cmd == EVHTTP_REQ_GET) {
        char *doc = NULL;
        aq_err err = {0};
        if (aq_sim_stats_json(srv->stats, srv->rl, &doc, &err) != AQ_OK) {
            set_error(w, req, "api_error", err.msg, rid);
            send_reply(req, 500);
            return;
        }
        evhttp_add_header(evhttp_request_get_output_headers(req), "content-type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), doc, strlen(doc));
        free(doc);
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    if (path_is(uri, plen, "/sim/reset") && cmd == EVHTTP_REQ_POST) {
        aq_sim_stats_reset(srv->stats);
        aq_sim_ratelimit_reset(srv->rl);
        prompt_cache_reset(srv);
        aq_buf_reset(&w->out);
        aq_buf_append_str(&w->out, "{\"ok\":true}");
        set_body(w, req, "application/json");
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    if (path_is(uri, plen, "/healthz") || path_is(uri, plen, "/sim/stats") ||
        path_is(uri, plen, "/sim/reset")) {
        set_error(w, req, "invalid_request_error", "Method Not Allowed", rid);
        send_reply(req, 405);
        return;
    }
    set_error(w, req, "not_found_error", "Not Found", rid);
    send_reply(req, 404);
}

/* ------------------------------------------------------------- lifecycle */

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    sim_worker *w = arg;
    uint64_t v;
    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
        /* nothing to do: stopping anyway */
    }
    event_base_loopbreak(w->base);
}

static void *worker_main(void *arg)
{
    sim_worker *w = arg;
    sigset_t set;
    /* A write to a closed connection must fail with EPIPE, not kill the
     * process; and stop signals belong to whoever started the server. */
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    event_base_dispatch(w->base);
    return NULL;
}

static aq_status parse_listen(const char *listen_addr, struct sockaddr_storage *ss, socklen_t *sslen,
                              aq_err *err)
{
    char host[256];
    const char *colon = listen_addr ? strrchr(listen_addr, ':') : NULL;
    struct addrinfo hints = {0}, *res = NULL;
    int rc;

    if (!colon || (size_t)(colon - listen_addr) >= sizeof(host))
        return aq_err_set(err, AQ_CONFIG, "listen: '%s' is not host:port", listen_addr ? listen_addr : "");
    memcpy(host, listen_addr, (size_t)(colon - listen_addr));
    host[colon - listen_addr] = '\0';
    char *h = host;
    if (h[0] == '[') { /* [::1]:8090 */
        h++;
        char *e = strchr(h, ']');
        if (e)
            *e = '\0';
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(*h && strcmp(h, "*") != 0 ? h : NULL, colon + 1, &hints, &res);
    if (rc != 0 || !res)
        return aq_err_set(err, AQ_CONFIG, "listen: '%s': %s", listen_addr, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return AQ_OK;
}

static aq_status open_listener(struct sockaddr_storage *ss, socklen_t sslen, int *out, aq_err *err)
{
    int one = 1, e;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return aq_err_set(err, AQ_IO, "socket: %s", strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)ss, sslen) < 0 || listen(fd, SIM_LISTEN_BACKLOG) < 0) {
        e = errno;
        close(fd);
        return aq_err_set(err, AQ_IO, "cannot listen: %s", strerror(e));
    }
    *out = fd;
    return AQ_OK;
}

static aq_status worker_init(aq_sim_server *srv, sim_worker *w, size_t idx, int listen_fd,
                             uint64_t seed, aq_err *err)
{
    struct event_config *ec = event_config_new();
    w->srv = srv;
    w->idx = idx;
    w->listen_fd = listen_fd;
    w->wake_fd = -1;
    aq_sim_rng_seed(&w->rng, seed ^ (0x9E3779B97F4A7C15ull * (idx + 1)));
    aq_buf_init(&w->text, SIM_TEXT_CAP);
    aq_buf_init(&w->out, SIM_OUT_CAP);
    w->chunk = evbuffer_new();
    if (!ec || !w->chunk)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK); /* one thread per base */
    /* The latency timers to the microsecond (timerfd), not rounded up to the
     * next millisecond by epoll_wait, and counted from the request's arrival,
     * not from the start of a busy loop iteration (the cached time, which
     * made a loaded simulator answer early): the benchmarks subtract the
     * configured latency as a floor, so either error would be misread as
     * the worker's. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    event_config_set_flag(ec, EVENT_BASE_FLAG_NO_CACHE_TIME);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base)
        return aq_err_set(err, AQ_IO, "event_base_new failed");
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0)
        return aq_err_set(err, AQ_IO, "eventfd: %s", strerror(errno));
    w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w);
    if (!w->wake_ev || event_add(w->wake_ev, NULL) < 0)
        return aq_err_set(err, AQ_IO, "cannot watch the stop event");
    w->http = evhttp_new(w->base);
    if (!w->http)
        return aq_err_set(err, AQ_NOMEM, "evhttp_new failed");
    evhttp_set_gencb(w->http, on_request, w);
    evhttp_set_max_headers_size(w->http, SIM_MAX_HEADERS_BYTES);
    /* evhttp refuses a larger body with a bare 413 before we see it; up to
     * SIM_BODY_SLACK more reaches the handler, which answers the API's 413. */
    evhttp_set_max_body_size(w->http, srv->max_body + SIM_BODY_SLACK);
    evhttp_set_timeout(w->http, SIM_IDLE_TIMEOUT_S);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    if (!evhttp_accept_socket_with_handle(w->http, listen_fd))
        return aq_err_set(err, AQ_IO, "evhttp cannot accept on the listening socket");
    w->listen_fd = -1; /* evhttp owns it now */
    return AQ_OK;
}

static void worker_free(sim_worker *w)
{
    if (w->http)
        evhttp_free(w->http); /* closes every connection: on_close frees each sim_conn */
    aq_ptrmap_clear(&w->conns, free); /* defensive: none should be left */
    if (w->wake_ev)
        event_free(w->wake_ev);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    if (w->base)
        event_base_free(w->base);
    aq_buf_free(&w->text);
    aq_buf_free(&w->out);
    if (w->chunk)
        evbuffer_free(w->chunk);
}

aq_status aq_sim_server_new(const aq_sim_config *cfg, aq_sim_server **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_sim_server *srv = calloc(1, sizeof(*srv));
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int64_t lat_ms;

    if (!srv)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    pthread_mutex_init(&srv->pc_lock, NULL); /* default attributes: cannot fail on Linux */
    if ((st = aq_sim_output_range_parse(cfg->output_tokens, &srv->out_range, err)) != AQ_OK)
        goto out;
    srv->tool_opts = (aq_sim_tool_opts){cfg->tool_steps, cfg->tool_parallel, cfg->tool_text,
                                        cfg->fault_tool_schema};
    if (!(cfg->fault_tool_schema >= 0 && cfg->fault_tool_schema <= 1) || cfg->tool_steps < 0 ||
        cfg->tool_steps > AQ_SIM_MAX_TOOL_STEPS || cfg->tool_parallel < 1 ||
        cfg->tool_parallel > AQ_SIM_MAX_TOOL_PARALLEL) {
        st = aq_err_set(err, AQ_CONFIG, "tool_steps, tool_parallel or fault_tool_schema out of range");
        goto out;
    }
    lat_ms = cfg->latency_ms ? cfg->latency_ms : cfg->latency;
    if ((st = aq_sim_latency_init(&srv->latency, cfg->latency_dist, lat_ms, cfg->latency_max_ms,
                                  cfg->latency_median_ms, cfg->latency_p99_ms, err)) != AQ_OK)
        goto out;
    const double rates[N_FAULTS] = {cfg->fault_429,  cfg->fault_500,      cfg->fault_504,
                                    cfg->fault_529,  cfg->fault_drop,     cfg->fault_stall,
                                    cfg->fault_bad_json, cfg->fault_truncated, cfg->fault_huge};
    double sum = 0;
    for (int i = 0; i < N_FAULTS; i++) {
        if (!(rates[i] >= 0 && rates[i] <= 1)) {
            st = aq_err_set(err, AQ_CONFIG, "fault rates must be in [0, 1]");
            goto out;
        }
        sum += rates[i];
        srv->fault_cum[i] = sum;
    }
    if (sum > 1.0 + 1e-9) {
        st = aq_err_set(err, AQ_CONFIG, "fault rates add up to %g, more than 1", sum);
        goto out;
    }
    if (!(cfg->fault_stream_error >= 0 && cfg->fault_stream_cut >= 0 &&
          cfg->fault_stream_error + cfg->fault_stream_cut <= 1.0 + 1e-9) ||
        cfg->stream_tokens_per_second < 0 || cfg->stream_ping_interval < 0) {
        st = aq_err_set(err, AQ_CONFIG,
                        "fault_stream_error + fault_stream_cut must be in [0, 1]; stream options not negative");
        goto out;
    }
    srv->stream_error_share = cfg->fault_stream_error;
    srv->stream_cut_share = cfg->fault_stream_cut;
    srv->stream_rate = cfg->stream_tokens_per_second;
    srv->stream_ping_ms = cfg->stream_ping_interval;
    if ((st = aq_list_split(cfg->models, "models", SIM_MAX_LIST_ITEMS, &srv->models, err)) != AQ_OK ||
        (st = aq_list_split(cfg->keys, "keys", SIM_MAX_LIST_ITEMS, &srv->keys, err)) != AQ_OK ||
        (st = aq_list_split(cfg->api_versions, "api_versions", SIM_MAX_LIST_ITEMS, &srv->versions, err)) != AQ_OK)
        goto out;
    srv->limits.max_tokens_cap = cfg->max_tokens_cap > 0 ? cfg->max_tokens_cap : AQ_SIM_DEFAULT_MAX_TOKENS_CAP;
    srv->limits.models = srv->models.items;
    srv->limits.n_models = srv->models.n;
    srv->retry_after_s = cfg->retry_after;
    srv->stall_max_ms = cfg->stall_max > 0 ? cfg->stall_max : 600000;
    srv->max_body = cfg->max_body_bytes > 0 ? cfg->max_body_bytes : 32 * 1024 * 1024;
    srv->huge_bytes = cfg->huge_bytes > 0 ? cfg->huge_bytes : 16 * 1024 * 1024;
    uint64_t nonce_src = (uint64_t)aq_mono_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)srv;
    aq_sim_rng nr;
    aq_sim_rng_seed(&nr, nonce_src);
    srv->nonce = (uint32_t)aq_sim_rng_next(&nr);

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    srv->n_workers = cfg->threads > 0 ? (size_t)cfg->threads : (size_t)(ncpu > 0 ? ncpu : 1);
    if (srv->n_workers > AQ_SIM_MAX_THREADS)
        srv->n_workers = AQ_SIM_MAX_THREADS;

    aq_sim_rl_limits rl = {cfg->rl_requests, cfg->rl_input_tokens, cfg->rl_output_tokens};
    aq_sim_rl_options rlo = {.enforce = cfg->rl_enforce, .max_keys = AQ_SIM_RL_MAX_KEYS};
    if ((st = aq_sim_ratelimit_create(&rl, &rlo, &srv->rl, err)) != AQ_OK ||
        (st = aq_sim_stats_new(srv->n_workers, &srv->stats, err)) != AQ_OK)
        goto out;

    if ((st = parse_listen(cfg->listen, &ss, &sslen, err)) != AQ_OK)
        goto out;
    srv->workers = calloc(srv->n_workers, sizeof(*srv->workers));
    if (!srv->workers) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < srv->n_workers; i++) {
        srv->workers[i].wake_fd = srv->workers[i].listen_fd = -1;
    }
    for (size_t i = 0; i < srv->n_workers; i++) {
        int fd = -1;
        if ((st = open_listener(&ss, sslen, &fd, err)) != AQ_OK) {
            aq_err_prefix(err, "%s", cfg->listen);
            goto out;
        }
        if (i == 0) { /* port 0: every other socket joins the port the first one got */
            struct sockaddr_storage got;
            socklen_t glen = sizeof(got);
            getsockname(fd, (struct sockaddr *)&got, &glen);
            in_port_t port = got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                       : ((struct sockaddr_in *)&got)->sin_port;
            if (ss.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&ss)->sin6_port = port;
            else
                ((struct sockaddr_in *)&ss)->sin_port = port;
            srv->port = ntohs(port);
        }
        /* From here the worker owns fd (worker_free closes it). */
        if ((st = worker_init(srv, &srv->workers[i], i, fd, (uint64_t)cfg->seed, err)) != AQ_OK)
            goto out;
    }
    *out = srv;
    srv = NULL;
out:
    aq_sim_server_destroy(srv);
    return st;
}

int aq_sim_server_port(const aq_sim_server *srv)
{
    return srv->port;
}

int aq_sim_server_threads(const aq_sim_server *srv)
{
    return (int)srv->n_workers;
}

aq_status aq_sim_server_start(aq_sim_server *srv, aq_err *err)
{
    for (size_t i = 0; i < srv->n_workers; i++) {
        sim_worker *w = &srv->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            aq_sim_server_stop(srv);
            return aq_err_set(err, AQ_IO, "pthread_create: %s", strerror(rc));
        }
        w->started = true;
        char name[16];
        snprintf(name, sizeof(name), "sim-%u", (unsigned)(i % 1000));
        pthread_setname_np(w->thread, name);
    }
    srv->running = true;
    return AQ_OK;
}

void aq_sim_server_stop(aq_sim_server *srv)
{
    if (!srv || !srv->workers)
        return;
    for (size_t i = 0; i < srv->n_workers; i++) {
        sim_worker *w = &srv->workers[i];
        uint64_t one = 1;
        if (w->started && write(w->wake_fd, &one, sizeof(one)) < 0) {
            /* an eventfd write fails only on overflow: a stop is pending anyway */
        }
    }
    for (size_t i = 0; i < srv->n_workers; i++) {
        sim_worker *w = &srv->workers[i];
        if (w->started) {
            pthread_join(w->thread, NULL);
            w->started = false;
        }
    }
    srv->running = false;
}

void aq_sim_server_destroy(aq_sim_server *srv)
{
    if (!srv)
        return;
    aq_sim_server_stop(srv);
    for (size_t i = 0; srv->workers && i < srv->n_workers; i++)
        worker_free(&srv->workers[i]);
    free(srv->workers);
    aq_sim_stats_destroy(srv->stats);
    aq_sim_ratelimit_destroy(srv->rl);
    aq_list_free(&srv->models);
    aq_list_free(&srv->keys);
    aq_list_free(&srv->versions);
    pthread_mutex_destroy(&srv->pc_lock);
    free(srv);
}

aq_status aq_sim_raise_nofile(uint64_t *limit, aq_err *err)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return aq_err_set(err, AQ_IO, "getrlimit: %s", strerror(errno));
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            return aq_err_set(err, AQ_IO, "setrlimit: %s", strerror(errno));
    }
    if (limit)
        *limit = (uint64_t)rl.rlim_cur;
    return AQ_OK;
}
