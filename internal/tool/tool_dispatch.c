/* Tool calls over NATS request/reply (tool_dispatch.h).
 *
 * Every attempt gets a token (a counter, never reused) and the reply
 * subject <inbox>.<token>; the token map (under `lock`) is the only thing
 * nats.c's thread and the loop share. Whoever takes an attempt's token out
 * of the map owns its ending: the reply callback (then the reply goes
 * through the mailbox) or the attempt's timer (a timeout). */
#include "tool_dispatch.h"

#include "queue/queue_conn.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/clock.h"
#include "core/ptrmap.h"
#include "core/text.h"
#include "tool/tool_schema.h"

#define NAME_MAX_LEN 64
#define SUBJECT_MAX 256
#define OVERRIDES_MAX 256
#define INBOX_MAX AQ_QUEUE_INBOX_MAX /* under the connection's nats_inbox_prefix */
#define REPLY_MAX (INBOX_MAX + 24)
#define RETRY_BASE_MS 100
#define RETRY_MAX_MS 2000
/* Replies the subscription may hold before nats.c drops them as a slow
 * consumer: the callback only hands over, so the queue stays short. */
#define PENDING_MSGS 65536

typedef struct override {
    char name[NAME_MAX_LEN + 1];
    char subject[SUBJECT_MAX + 1];
} override;

typedef enum call_state {
    CALL_SENT,    /* waiting for the reply or the timer */
    CALL_POSTED,  /* the reply is in the mailbox */
    CALL_BACKOFF, /* waiting to retry */
} call_state;

struct aq_tool_inflight {
    aq_tool_dispatcher *d;
    aq_tool_call *call;
    struct aq_tool_inflight *prev, *next; /* d->active (loop thread) */
    char subject[SUBJECT_MAX + 1];
    char name[NAME_MAX_LEN + 1];
    char *input;
    size_t input_len;
    char *key, *task_id, *tenant;
    int64_t started_ms;
    struct event *timer;
    call_state state;  /* loop thread, except SENT -> POSTED under lock */
    uint64_t token;
    natsMsg *reply;    /* when POSTED */
    aq_mailbox_node node;
    aq_status last_status; /* why the last attempt failed */
    aq_tool_outcome last_outcome;
};

typedef struct aq_tool_inflight inflight;

struct aq_tool_dispatcher {
    natsConnection *nc;
    struct event_base *base;
    aq_mailbox *mb;
    natsSubscription *sub;
    char inbox[INBOX_MAX];
    char prefix[SUBJECT_MAX + 1];
    override *overrides;
    size_t n_overrides;
    int64_t timeout_ms;
    uint32_t max_attempts;
    size_t max_reply_bytes;

    /* loop thread */
    inflight *active;
    aq_tool_dispatcher_stats stats;
    uint64_t rng;

    pthread_mutex_t lock;
    pthread_cond_t closed_cond;
    bool lock_init;
    /* guarded by lock */
    aq_ptrmap tokens;   /* token -> inflight, while SENT */
    uint64_t next_token;
    bool sub_closed;
};

/* ---- configuration ---- */

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool aq_tool_name_valid(const char *name)
{
    return name && valid_name(name, strnlen(name, NAME_MAX_LEN + 1));
}

/* A subject to publish on: printable ASCII tokens separated by single
 * dots, no wildcard token, nothing empty. */
static bool valid_subject(const char *s, size_t len)
{
    if (len == 0 || len > SUBJECT_MAX || s[0] == '.' || s[len - 1] == '.')
        return false;
    size_t tok = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (tok == 0)
                return false;
            if (tok == 1 && (s[i - 1] == '*' || s[i - 1] == '>'))
                return false;
            tok = 0;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f)
            return false;
        tok++;
    }
    return true;
}

/* "name=subject;name2=subject2" into `out` (may be NULL: check only). */
static aq_status parse_overrides(const char *text, override *out, size_t *n, aq_err *err)
{
    size_t count = 0;
    const char *p = text ? text : "";
    while (*p) {
        const char *end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (b < e) {
            const char *eq = memchr(b, '=', (size_t)(e - b));
            if (!eq)
                return aq_err_set(err, AQ_CONFIG, "tool_subjects: \"%.*s\" is not name=subject",
                                  (int)(e - b), b);
            const char *ne = eq, *vb = eq + 1;
            while (ne > b && (ne[-1] == ' ' || ne[-1] == '\t'))
                ne--;
            while (vb < e && (*vb == ' ' || *vb == '\t'))
                vb++;
            if (!valid_name(b, (size_t)(ne - b)))
                return aq_err_set(err, AQ_CONFIG,
                                  "tool_subjects: \"%.*s\" is not a tool name (^[a-zA-Z0-9_-]{1,64}$)",
                                  (int)(ne - b), b);
            if (!valid_subject(vb, (size_t)(e - vb)))
                return aq_err_set(err, AQ_CONFIG,
                                  "tool_subjects: \"%.*s\" (tool %.*s) is not a NATS subject without wildcards",
                                  (int)(e - vb), vb, (int)(ne - b), b);
            if (count == OVERRIDES_MAX)
                return aq_err_set(err, AQ_CONFIG, "tool_subjects: more than %d tools",
                                  OVERRIDES_MAX);
            if (out) {
                for (size_t i = 0; i < count; i++)
                    if (strlen(out[i].name) == (size_t)(ne - b) &&
                        memcmp(out[i].name, b, (size_t)(ne - b)) == 0)
                        return aq_err_set(err, AQ_CONFIG, "tool_subjects: tool %.*s appears twice",
                                          (int)(ne - b), b);
                snprintf(out[count].name, sizeof(out[count].name), "%.*s", (int)(ne - b), b);
                snprintf(out[count].subject, sizeof(out[count].subject), "%.*s", (int)(e - vb), vb);
            }
            count++;
        }
        p = *end ? end + 1 : end;
    }
    *n = count;
    return AQ_OK;
}

aq_status aq_tool_config_check(const aq_tool_config *cfg, aq_err *err)
{
    aq_status st = AQ_OK;
    override *tmp = NULL;
    size_t n = 0;
    const char *prefix = cfg->subject_prefix ? cfg->subject_prefix : "";
    if (!valid_subject(prefix, strlen(prefix)) || strlen(prefix) > SUBJECT_MAX - NAME_MAX_LEN - 1) {
        st = aq_err_set(err, AQ_CONFIG,
                        "tool_subject_prefix: \"%s\" is not a NATS subject without wildcards (at most %d characters)",
                        prefix, SUBJECT_MAX - NAME_MAX_LEN - 1);
        goto out;
    }
    const char *fa = cfg->failure_action ? cfg->failure_action : "";
    if (strcmp(fa, "model") != 0 && strcmp(fa, "fail") != 0) {
        st = aq_err_set(err, AQ_CONFIG, "tool_failure_action: \"%s\" (model or fail)", fa);
        goto out;
    }
    if (cfg->timeout_ms <= 0 || cfg->max_attempts < 1 || cfg->max_reply_bytes < 1) {
        st = aq_err_set(err, AQ_CONFIG, "tool_timeout, tool_max_attempts and tool_max_reply_bytes must be positive");
        goto out;
    }
    tmp = calloc(OVERRIDES_MAX, sizeof(*tmp));
    if (!tmp) {
        st = aq_err_set(err, AQ_NOMEM, "tool_subjects: out of memory");
        goto out;
    }
    st = parse_overrides(cfg->subjects, tmp, &n, err);
out:
    free(tmp);
    return st;
}

bool aq_tool_config_fails_run(const aq_tool_config *cfg)
{
    return cfg->failure_action && strcmp(cfg->failure_action, "fail") == 0;
}

const char *aq_tool_dispatcher_subject(const aq_tool_dispatcher *d, const char *name, char *buf,
                                       size_t n)
{
    if (!name || !valid_name(name, strlen(name)))
        return NULL;
    for (size_t i = 0; i < d->n_overrides; i++)
        if (strcmp(d->overrides[i].name, name) == 0) {
            snprintf(buf, n, "%s", d->overrides[i].subject);
            return buf;
        }
    snprintf(buf, n, "%s.%s", d->prefix, name);
    return buf;
}

/* ---- completion (loop thread) ---- */

static void inflight_free(inflight *f)
{
    if (!f)
        return;
    if (f->timer)
        event_free(f->timer);
    natsMsg_Destroy(f->reply);
    free(f->input);
    free(f->key);
    free(f->task_id);
    free(f->tenant);
    free(f);
}

/* A text content for a failure the model will read. */
static char *text_content(const char *text)
{
    json_t *s = json_string(text);
    char *dump = s ? json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    return dump;
}

/* Ends the call: fills the outputs and runs done. `content` is taken
 * (NULL: made from err's message). */
static void finish(inflight *f, aq_tool_outcome outcome, bool is_error, char *content)
{
    aq_tool_dispatcher *d = f->d;
    aq_tool_call *call = f->call;
    if (f->prev)
        f->prev->next = f->next;
    else
        d->active = f->next;
    if (f->next)
        f->next->prev = f->prev;
    d->stats.completed++;
    call->outcome = outcome;
    call->is_error = is_error || outcome != AQ_TOOL_OK;
    if (!content) {
        /* aq_err_set cuts at a byte: keep the text valid UTF-8 for JSON. */
        char tmp[AQ_ERR_MAX];
        aq_utf8_sanitize(call->err.msg, strnlen(call->err.msg, sizeof(call->err.msg)), tmp,
                         sizeof(tmp));
        memcpy(call->err.msg, tmp, sizeof(tmp));
        content = text_content(call->err.msg);
    }
    call->content_json = content;
    call->latency_ms = aq_mono_ms() - f->started_ms;
    call->priv = NULL;
    inflight_free(f);
    call->done(call);
}

static void send_attempt(inflight *f);

static void on_backoff(evutil_socket_t fd, short what, void *arg);

/* xorshift64*: jitter only. */
static uint64_t rng_next(aq_tool_dispatcher *d)
{
    d->rng ^= d->rng >> 12;
    d->rng ^= d->rng << 25;
    d->rng ^= d->rng >> 27;
    return d->rng * 2685821657736338717ull;
}

/* The attempt failed with a retryable outcome (timeout, no responders):
 * try again after a jittered backoff, or end the call. */
static void retry_or_finish(inflight *f, aq_tool_outcome outcome)
{
    aq_tool_dispatcher *d = f->d;
    aq_tool_call *call = f->call;
    int64_t now_unix = aq_now_unix_ms();
    int64_t delay = RETRY_BASE_MS << (call->attempts > 5 ? 5 : call->attempts - 1);
    if (delay > RETRY_MAX_MS)
        delay = RETRY_MAX_MS;
    delay = delay / 2 + (int64_t)(rng_next(d) % (uint64_t)(delay / 2 + 1)); /* half jitter */
    bool past_deadline = call->deadline_unix_ms && now_unix + delay >= call->deadline_unix_ms;
    if (call->attempts >= d->max_attempts || past_deadline) {
        const char *what = outcome == AQ_TOOL_TIMEOUT ? "no answer within"
                                                      : "no service listening on";
        if (outcome == AQ_TOOL_TIMEOUT)
            aq_err_set(&call->err, AQ_TIMEOUT,
                       "tool %s: %s %lld ms on %s (%u attempt%s%s)", f->name, what,
                       (long long)d->timeout_ms, f->subject, call->attempts,
                       call->attempts == 1 ? "" : "s", past_deadline ? ", task deadline" : "");
        else
            aq_err_set(&call->err, AQ_NOT_FOUND, "tool %s: %s %s (%u attempt%s%s)", f->name, what,
                       f->subject, call->attempts, call->attempts == 1 ? "" : "s",
                       past_deadline ? ", task deadline" : "");
        finish(f, outcome, true, NULL);
        return;
    }
    d->stats.retries++;
    f->state = CALL_BACKOFF;
    f->last_outcome = outcome;
    event_assign(f->timer, d->base, -1, 0, on_backoff, f);
    struct timeval tv = {.tv_sec = (time_t)(delay / 1000),
                         .tv_usec = (suseconds_t)((delay % 1000) * 1000)};
    evtimer_add(f->timer, &tv);
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_attempt(arg);
}

/* The attempt's timer: a timeout, unless the reply got there first. */
static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    inflight *f = arg;
    aq_tool_dispatcher *d = f->d;
    pthread_mutex_lock(&d->lock);
    bool ours = aq_ptrmap_take(&d->tokens, (void *)(uintptr_t)f->token) != NULL;
    pthread_mutex_unlock(&d->lock);
    if (!ours)
        return; /* the reply is in the mailbox: on_reply_posted ends the attempt */
    retry_or_finish(f, AQ_TOOL_TIMEOUT);
}

/* A reply handed over by on_reply. */
static void on_reply_posted(void *arg)
{
    inflight *f = arg;
    aq_tool_dispatcher *d = f->d;
    aq_tool_call *call = f->call;
    natsMsg *msg = f->reply;
    f->reply = NULL;
    evtimer_del(f->timer);
    pthread_mutex_lock(&d->lock);
    f->state = CALL_SENT; /* no longer in the mailbox */
    pthread_mutex_unlock(&d->lock);

    if (natsMsg_IsNoResponders(msg)) {
        natsMsg_Destroy(msg);
        retry_or_finish(f, AQ_TOOL_NO_RESPONDERS);
        return;
    }
    const char *svc_err = NULL, *svc_code = NULL, *status = NULL;
    natsMsgHeader_Get(msg, "Nats-Service-Error", &svc_err);
    natsMsgHeader_Get(msg, "Nats-Service-Error-Code", &svc_code);
    natsMsgHeader_Get(msg, "Status", &status);
    if (status && !natsMsg_GetDataLength(msg)) {
        aq_err_set(&call->err, AQ_INVALID_ARG, "tool %s: bad reply: NATS status %s", f->name,
                   status);
        natsMsg_Destroy(msg);
        finish(f, AQ_TOOL_BAD_REPLY, true, NULL);
        return;
    }
    if (svc_err || svc_code) {
        /* A NATS micro service's error reply: its text is the result. */
        char text[AQ_ERR_MAX];
        snprintf(text, sizeof(text), "%s%s%s", svc_code ? svc_code : "", svc_code ? ": " : "",
                 svc_err ? svc_err : "");
        aq_utf8_sanitize(text, strlen(text), text, sizeof(text));
        aq_err_set(&call->err, AQ_OK, "%s", text);
        natsMsg_Destroy(msg);
        finish(f, AQ_TOOL_ERROR, true, NULL);
        return;
    }
    aq_tool_reply r;
    aq_status st = aq_tool_reply_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                                        d->max_reply_bytes, &r, &call->err);
    natsMsg_Destroy(msg);
    if (st != AQ_OK) { /* out of memory: the content is the message */
        finish(f, AQ_TOOL_BAD_REPLY, true, NULL);
        return;
    }
    if (r.outcome == AQ_TOOL_BAD_REPLY) {
        aq_tool_reply_clear(&r); /* the content says the same, without the tool's name */
        aq_err_prefix(&call->err, "tool %s", f->name);
    }
    finish(f, r.outcome, r.is_error, r.content_json);
}

/* nats.c's delivery thread: find the attempt by its token, hand the reply
 * to the loop. Nothing else happens here. */
static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    aq_tool_dispatcher *d = closure;
    const char *subj = natsMsg_GetSubject(msg);
    const char *dot = subj ? strrchr(subj, '.') : NULL;
    char *end = NULL;
    errno = 0;
    unsigned long long token = dot ? strtoull(dot + 1, &end, 10) : 0;
    inflight *f = NULL;
    if (dot && !errno && end != dot + 1 && !*end && token >= 2) {
        pthread_mutex_lock(&d->lock);
        f = aq_ptrmap_take(&d->tokens, (void *)(uintptr_t)token);
        if (f) {
            f->state = CALL_POSTED;
            f->reply = msg;
            msg = NULL;
        }
        pthread_mutex_unlock(&d->lock);
    }
    if (f)
        aq_mailbox_post(d->mb, &f->node, on_reply_posted, f);
    natsMsg_Destroy(msg); /* late (timed out), stray, or a second reply */
}

static void on_sub_complete(void *closure)
{
    aq_tool_dispatcher *d = closure;
    pthread_mutex_lock(&d->lock);
    d->sub_closed = true;
    pthread_cond_broadcast(&d->closed_cond);
    pthread_mutex_unlock(&d->lock);
}

/* ---- sending (loop thread) ---- */

static natsStatus build_msg(inflight *f, const char *reply, int64_t attempt_deadline, natsMsg **out)
{
    natsMsg *m = NULL;
    char num[32];
    natsStatus s = natsMsg_Create(&m, f->subject, reply, f->input, (int)f->input_len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Agentq-Idempotency-Key", f->key);
    if (s == NATS_OK && f->task_id)
        s = natsMsgHeader_Set(m, "Agentq-Task-Id", f->task_id);
    if (s == NATS_OK && f->tenant)
        s = natsMsgHeader_Set(m, "Agentq-Tenant", f->tenant);
    if (s == NATS_OK && f->call->step) {
        snprintf(num, sizeof(num), "%" PRIu32, f->call->step);
        s = natsMsgHeader_Set(m, "Agentq-Step", num);
    }
    if (s == NATS_OK) {
        snprintf(num, sizeof(num), "%" PRId64, attempt_deadline);
        s = natsMsgHeader_Set(m, "Agentq-Deadline", num);
    }
    if (s == NATS_OK)
        *out = m;
    else
        natsMsg_Destroy(m);
    return s;
}

static void send_attempt(inflight *f)
{
    aq_tool_dispatcher *d = f->d;
    aq_tool_call *call = f->call;
    int64_t now_unix = aq_now_unix_ms();
    int64_t wait = d->timeout_ms;
    if (call->deadline_unix_ms) {
        if (call->deadline_unix_ms <= now_unix) {
            aq_err_set(&call->err, AQ_TIMEOUT, "tool %s: the task's deadline passed (%u attempt%s)",
                       f->name, call->attempts, call->attempts == 1 ? "" : "s");
            finish(f, AQ_TOOL_TIMEOUT, true, NULL);
            return;
        }
        if (call->deadline_unix_ms - now_unix < wait)
            wait = call->deadline_unix_ms - now_unix;
    }
    call->attempts++;
    d->stats.requests++;

    pthread_mutex_lock(&d->lock);
    f->token = d->next_token++;
    f->state = CALL_SENT;
    aq_status pst = aq_ptrmap_put(&d->tokens, (void *)(uintptr_t)f->token, f);
    pthread_mutex_unlock(&d->lock);
    if (pst != AQ_OK) {
        aq_err_set(&call->err, AQ_NOMEM, "tool %s: out of memory", f->name);
        finish(f, AQ_TOOL_TIMEOUT, true, NULL);
        return;
    }
    char reply[REPLY_MAX];
    snprintf(reply, sizeof(reply), "%s.%" PRIu64, d->inbox, f->token);
    event_assign(f->timer, d->base, -1, 0, on_timeout, f);
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000),
                         .tv_usec = (suseconds_t)((wait % 1000) * 1000)};
    evtimer_add(f->timer, &tv);

    /* Registered before the publish: the reply may beat the return. */
    natsMsg *m = NULL;
    natsStatus s = build_msg(f, reply, now_unix + wait, &m);
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(d->nc, m);
    natsMsg_Destroy(m);
    if (s != NATS_OK) {
        /* Not sent (connection closed, payload over the server's max):
         * the timer ends the attempt as a timeout, and retries apply. */
        aq_err_set(&call->err, AQ_NATS, "tool %s: request not sent: %s", f->name,
                   natsStatus_GetText(s));
    }
}

aq_status aq_tool_call_start(aq_tool_dispatcher *d, aq_tool_call *call, aq_err *err)
{
    aq_status st = AQ_OK;
    inflight *f = NULL;
    if (!call || !call->done || !call->name || !valid_name(call->name, strlen(call->name)) ||
        !call->idempotency_key || !*call->idempotency_key || (!call->input && call->input_len)) {
        st = aq_err_set(err, AQ_INVALID_ARG,
                        "tool call: needs a tool name (^[a-zA-Z0-9_-]{1,64}$), an idempotency key and done");
        goto out;
    }
    if (call->input_len > AQ_TOOL_INPUT_MAX_BYTES) {
        st = aq_err_set(err, AQ_INVALID_ARG, "tool %s: input is %zu bytes, cap %u", call->name,
                        call->input_len, AQ_TOOL_INPUT_MAX_BYTES);
        goto out;
    }
    f = calloc(1, sizeof(*f));
    if (!f) {
        st = aq_err_set(err, AQ_NOMEM, "tool call: out of memory");
        goto out;
    }
    f->d = d;
    f->call = call;
    snprintf(f->name, sizeof(f->name), "%s", call->name);
    aq_tool_dispatcher_subject(d, call->name, f->subject, sizeof(f->subject));
    f->input = malloc(call->input_len + 1);
    f->key = strdup(call->idempotency_key);
    f->task_id = call->task_id ? strdup(call->task_id) : NULL;
    f->tenant = call->tenant ? strdup(call->tenant) : NULL;
    f->timer = evtimer_new(d->base, on_timeout, f);
    if (!f->input || !f->key || (call->task_id && !f->task_id) || (call->tenant && !f->tenant) ||
        !f->timer) {
        st = aq_err_set(err, AQ_NOMEM, "tool call: out of memory");
        goto out;
    }
    if (call->input_len)
        memcpy(f->input, call->input, call->input_len);
    f->input[call->input_len] = '\0';
    f->input_len = call->input_len;
    f->started_ms = aq_mono_ms();

    call->outcome = AQ_TOOL_OK;
    call->is_error = false;
    call->content_json = NULL;
    call->attempts = 0;
    call->latency_ms = 0;
    aq_err_clear(&call->err);
    call->priv = f;
    f->next = d->active;
    if (d->active)
        d->active->prev = f;
    d->active = f;
    d->stats.started++;
    /* The first attempt goes out on the loop's next turn, so that done
     * never runs inside this function (a task deadline may have passed). */
    event_assign(f->timer, d->base, -1, 0, on_backoff, f);
    event_active(f->timer, EV_TIMEOUT, 0);
    f = NULL;
out:
    inflight_free(f);
    return st;
}

void aq_tool_call_clear(aq_tool_call *call)
{
    if (!call)
        return;
    free(call->content_json);
    call->content_json = NULL;
}

void aq_tool_dispatcher_stats_get(const aq_tool_dispatcher *d, aq_tool_dispatcher_stats *out)
{
    *out = d->stats;
    out->in_flight = 0;
    for (const inflight *f = d->active; f; f = f->next)
        out->in_flight++;
}

/* ---- lifetime ---- */

aq_status aq_tool_dispatcher_new(natsConnection *nc, const aq_tool_config *cfg,
                                 struct event_base *base, aq_mailbox *mb,
                                 aq_tool_dispatcher **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_tool_dispatcher *d = NULL;
    natsStatus s;

    if (!nc || !cfg || !base || !mb) {
        st = aq_err_set(err, AQ_INVALID_ARG, "tool dispatcher: missing argument");
        goto out;
    }
    if ((st = aq_tool_config_check(cfg, err)) != AQ_OK)
        goto out;
    d = calloc(1, sizeof(*d));
    if (d)
        d->overrides = calloc(OVERRIDES_MAX, sizeof(override));
    if (!d || !d->overrides) {
        st = aq_err_set(err, AQ_NOMEM, "tool dispatcher: out of memory");
        goto out;
    }
    d->nc = nc;
    d->base = base;
    d->mb = mb;
    snprintf(d->prefix, sizeof(d->prefix), "%s", cfg->subject_prefix);
    if ((st = parse_overrides(cfg->subjects, d->overrides, &d->n_overrides, err)) != AQ_OK)
        goto out;
    d->timeout_ms = cfg->timeout_ms;
    d->max_attempts = (uint32_t)cfg->max_attempts;
    d->max_reply_bytes = (size_t)cfg->max_reply_bytes;
    d->rng = (uint64_t)aq_mono_us() | 1;
    d->next_token = 2; /* the ptrmap refuses keys 0 and 1 */
    aq_ptrmap_init(&d->tokens);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->closed_cond, NULL);
    d->lock_init = true;

    /* Under nats_inbox_prefix: a worker may subscribe to its own inbox only. */
    if ((st = aq_queue_inbox_new(nc, d->inbox, sizeof(d->inbox), err)) != AQ_OK) {
        aq_err_prefix(err, "tool dispatcher inbox");
        goto out;
    }
    char wildcard[INBOX_MAX + 2];
    snprintf(wildcard, sizeof(wildcard), "%s.*", d->inbox);
    if ((s = natsConnection_Subscribe(&d->sub, nc, wildcard, on_reply, d)) != NATS_OK) {
        d->sub = NULL;
        st = aq_err_set(err, AQ_NATS, "tool dispatcher subscription: %s", natsStatus_GetText(s));
        goto out;
    }
    if ((s = natsSubscription_SetOnCompleteCB(d->sub, on_sub_complete, d)) != NATS_OK) {
        natsSubscription_Unsubscribe(d->sub);
        natsSubscription_Destroy(d->sub);
        d->sub = NULL;
        st = aq_err_set(err, AQ_NATS, "tool dispatcher subscription: %s", natsStatus_GetText(s));
        goto out;
    }
    natsSubscription_SetPendingLimits(d->sub, PENDING_MSGS, -1);
    /* The subscription must be known to the server before the first request. */
    if ((s = natsConnection_Flush(nc)) != NATS_OK) {
        st = aq_err_set(err, AQ_NATS, "tool dispatcher subscription: %s", natsStatus_GetText(s));
        goto out;
    }
    *out = d;
    d = NULL;
out:
    aq_tool_dispatcher_destroy(d);
    return st;
}

void aq_tool_dispatcher_destroy(aq_tool_dispatcher *d)
{
    if (!d)
        return;
    if (d->sub) {
        /* After the on-complete callback nats.c calls nothing of ours; it
         * also runs when the connection was closed earlier. */
        natsSubscription_Unsubscribe(d->sub);
        pthread_mutex_lock(&d->lock);
        while (!d->sub_closed)
            pthread_cond_wait(&d->closed_cond, &d->lock);
        pthread_mutex_unlock(&d->lock);
        natsSubscription_Destroy(d->sub);
    }
    while (d->active) {
        inflight *f = d->active;
        aq_err_set(&f->call->err, AQ_SHUTDOWN, "tool %s: cancelled (shutting down)", f->name);
        finish(f, AQ_TOOL_CANCELLED, true, NULL);
    }
    if (d->lock_init) {
        aq_ptrmap_free(&d->tokens);
        pthread_cond_destroy(&d->closed_cond);
        pthread_mutex_destroy(&d->lock);
    }
    free(d->overrides);
    free(d);
}
