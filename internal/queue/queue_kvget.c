#include "queue_kvget.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "queue/queue_conn.h"
#include "queue/queue_setup.h"

#define BUCKET_MAX 128
/* "$KV." + bucket + "." + key */
#define KV_SUBJECT_MAX (4 + BUCKET_MAX + 1 + AQ_KV_KEY_MAX)
/* {"last_by_subj":"<subject>"} */
#define BODY_MAX (KV_SUBJECT_MAX + 32)
/* The inbox ("<nats_inbox_prefix>." + a 22-character NUID) plus ".<token>". */
#define INBOX_MAX AQ_QUEUE_INBOX_MAX
#define REPLY_MAX (INBOX_MAX + 24)
/* Messages the subscription may hold before nats.c drops them as a slow
 * consumer: every in-flight answer plus some late ones. The callback only
 * hands over, so the queue stays short. */
#define PENDING_MSGS_MIN 65536

/* An in-flight slot. The slot table is the map from reply token to request:
 * the token is (generation << 32 | index), so the lookup is an index and a
 * generation check, and an answer that comes after its request timed out
 * (the slot has moved on) is recognised and dropped. */
typedef enum slot_state { SLOT_FREE, SLOT_SENT, SLOT_POSTED } slot_state;

typedef struct slot {
    aq_kv_getter *kg;
    uint32_t index;
    /* guarded by kg->lock (the nats.c thread reads them) */
    uint32_t gen;
    slot_state state;
    struct slot *prev, *next; /* the sent FIFO or the posted list */
    natsMsg *reply;           /* the answer, once posted */
    /* loop thread */
    aq_kv_read *r;
    int64_t deadline_ms;
    struct slot *free_next;
    aq_mailbox_node node;
} slot;

typedef struct slot_list {
    slot *head, *tail;
} slot_list;

struct aq_kv_getter {
    natsConnection *nc;
    aq_mailbox *mb;
    struct event *timer; /* fires at the oldest sent request's deadline */
    natsSubscription *sub;
    aq_kv_getter_config cfg;
    char bucket[BUCKET_MAX + 1];
    char direct_subject[64 + BUCKET_MAX];
    char inbox[INBOX_MAX];

    /* loop thread */
    slot *slots;
    slot *free_slots;
    size_t in_flight;
    aq_kv_read *wait_head, *wait_tail; /* linked through r->next */
    size_t queued;
    aq_kv_getter_stats stats;

    pthread_mutex_t lock;
    pthread_cond_t closed_cond;
    bool lock_init;
    /* guarded by lock */
    slot_list sent;   /* in send order, which is deadline order */
    slot_list posted; /* answered, handed to the mailbox, not run yet */
    bool sub_closed;  /* nats.c's on-complete ran: no callback will follow */
};

static void list_append(slot_list *l, slot *s)
{
    s->next = NULL;
    s->prev = l->tail;
    if (l->tail)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
}

static void list_unlink(slot_list *l, slot *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    s->prev = s->next = NULL;
}

/* Under the lock: the slot's token no longer matches anything. */
static void slot_retire(slot *s)
{
    s->state = SLOT_FREE;
    s->gen++;
}

/* Loop thread, after slot_retire. */
static void slot_release(aq_kv_getter *kg, slot *s)
{
    s->r = NULL;
    s->free_next = kg->free_slots;
    kg->free_slots = s;
    kg->in_flight--;
}

/* The KV key rules (nats.c's and the servers'): no wildcard, no space, no
 * empty token. They also keep the key safe to put into the JSON body and the
 * subject as it is. */
static bool valid_key(const char *key, size_t len)
{
    if (len == 0 || len > AQ_KV_KEY_MAX || key[0] == '.' || key[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '/' || c == '_' || c == '=' || c == '.'))
            return false;
        if (c == '.' && key[i + 1] == '.')
            return false;
    }
    return true;
}

static bool valid_bucket(const char *b)
{
    size_t len = strlen(b);
    if (len == 0 || len > BUCKET_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* ---- completion (loop thread) ---- */

static void run_done(void *arg)
{
    aq_kv_read *r = arg;
    r->done(r);
}

/* A read that ends before it is sent: handed back through the mailbox so
 * that `done` never runs inside aq_kv_getter_get. */
static void complete_early(aq_kv_getter *kg, aq_kv_read *r)
{
    kg->stats.completed++;
    kg->stats.errors++;
    aq_mailbox_post(kg->mb, &r->node, run_done, r);
}

static void decode_answer(aq_kv_getter *kg, aq_kv_read *r, natsMsg *msg)
{
    const char *v = NULL;
    r->msg = NULL;
    r->revision = 0;
    r->deleted = false;
    if (natsMsg_IsNoResponders(msg)) {
        r->status = aq_err_set(&r->err, AQ_NATS,
                               "no responder for a direct get on %s (run `agentq init`)",
                               kg->direct_subject);
        goto out;
    }
    if (natsMsgHeader_Get(msg, "Status", &v) == NATS_OK && v) {
        if (strcmp(v, "404") == 0) {
            r->status = aq_err_set(&r->err, AQ_NOT_FOUND, "no entry for %s", r->key);
        } else {
            const char *desc = NULL;
            natsMsgHeader_Get(msg, "Description", &desc);
            r->status = aq_err_set(&r->err, AQ_NATS, "direct get of %s in %s: status %s %s",
                                   r->key, kg->bucket, v, desc ? desc : "");
        }
        goto out;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long seq = 0;
    if (natsMsgHeader_Get(msg, "Nats-Sequence", &v) == NATS_OK && v)
        seq = strtoull(v, &end, 10);
    if (!v || errno || end == v || *end || seq == 0) {
        r->status = aq_err_set(&r->err, AQ_NATS, "direct get of %s in %s: answer without a sequence",
                               r->key, kg->bucket);
        goto out;
    }
    /* The answer must be for the key asked: "$KV.<bucket>.<key>". */
    size_t blen = strlen(kg->bucket);
    if (natsMsgHeader_Get(msg, "Nats-Subject", &v) != NATS_OK || !v || strncmp(v, "$KV.", 4) != 0 ||
        strncmp(v + 4, kg->bucket, blen) != 0 || v[4 + blen] != '.' ||
        strcmp(v + 5 + blen, r->key) != 0) {
        r->status = aq_err_set(&r->err, AQ_NATS, "direct get of %s in %s: answer for another subject",
                               r->key, kg->bucket);
        goto out;
    }
    if ((size_t)natsMsg_GetDataLength(msg) > kg->cfg.max_value_bytes) {
        r->status = aq_err_set(&r->err, AQ_TOO_BIG, "value of %s is %d bytes, cap %zu", r->key,
                               natsMsg_GetDataLength(msg), kg->cfg.max_value_bytes);
        goto out;
    }
    r->status = AQ_OK;
    r->revision = (uint64_t)seq;
    r->deleted = natsMsgHeader_Get(msg, "KV-Operation", &v) == NATS_OK && v &&
                 (strcmp(v, "DEL") == 0 || strcmp(v, "PURGE") == 0);
    r->msg = msg;
    msg = NULL;
out:
    natsMsg_Destroy(msg);
}

static void pump(aq_kv_getter *kg);

/* An answer handed over by on_answer. */
static void on_answer_posted(void *arg)
{
    slot *s = arg;
    aq_kv_getter *kg = s->kg;
    pthread_mutex_lock(&kg->lock);
    list_unlink(&kg->posted, s);
    natsMsg *msg = s->reply;
    s->reply = NULL;
    slot_retire(s);
    pthread_mutex_unlock(&kg->lock);
    aq_kv_read *r = s->r;
    slot_release(kg, s);
    decode_answer(kg, r, msg);
    kg->stats.completed++;
    if (r->status != AQ_OK && r->status != AQ_NOT_FOUND)
        kg->stats.errors++;
    pump(kg); /* the freed slot goes to the oldest waiting read first */
    r->done(r);
}

/* nats.c's delivery thread: find the request by its token and hand the
 * answer to the loop. Nothing else happens here. */
static void on_answer(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    aq_kv_getter *kg = closure;
    const char *subj = natsMsg_GetSubject(msg);
    const char *dot = subj ? strrchr(subj, '.') : NULL;
    char *end = NULL;
    errno = 0;
    unsigned long long token = dot ? strtoull(dot + 1, &end, 10) : 0;
    slot *s = NULL;
    if (dot && !errno && end != dot + 1 && !*end) {
        uint32_t index = (uint32_t)(token & 0xffffffffu), gen = (uint32_t)(token >> 32);
        pthread_mutex_lock(&kg->lock);
        if (index < (uint32_t)kg->cfg.max_in_flight) {
            s = &kg->slots[index];
            if (s->state == SLOT_SENT && s->gen == gen) {
                list_unlink(&kg->sent, s);
                list_append(&kg->posted, s);
                s->state = SLOT_POSTED;
                s->reply = msg;
                msg = NULL;
            } else {
                s = NULL; /* late (timed out) or stray */
            }
        }
        pthread_mutex_unlock(&kg->lock);
    }
    /* Outside the lock: destroy waits for this callback to return before
     * it frees the slot, and only on_answer_posted retires a posted slot. */
    if (s)
        aq_mailbox_post(kg->mb, &s->node, on_answer_posted, s);
    natsMsg_Destroy(msg);
}

static void on_sub_complete(void *closure)
{
    aq_kv_getter *kg = closure;
    pthread_mutex_lock(&kg->lock);
    kg->sub_closed = true;
    pthread_cond_broadcast(&kg->closed_cond);
    pthread_mutex_unlock(&kg->lock);
}

/* ---- timeouts (loop thread) ---- */

static void arm_timer(aq_kv_getter *kg, int64_t delay_ms)
{
    if (delay_ms < 1)
        delay_ms = 1;
    struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
                         .tv_usec = (suseconds_t)((delay_ms % 1000) * 1000)};
    evtimer_add(kg->timer, &tv);
}

/* Requests are sent with one timeout, so the sent FIFO is in deadline
 * order: expire from its head, then sleep until the new head's deadline. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    aq_kv_getter *kg = arg;
    int64_t now = aq_mono_ms(), next_deadline = -1;
    slot *expired = NULL;
    pthread_mutex_lock(&kg->lock);
    while (kg->sent.head && kg->sent.head->deadline_ms <= now) {
        slot *s = kg->sent.head;
        list_unlink(&kg->sent, s);
        slot_retire(s);
        s->free_next = expired;
        expired = s;
    }
    if (kg->sent.head)
        next_deadline = kg->sent.head->deadline_ms;
    pthread_mutex_unlock(&kg->lock);
    if (next_deadline >= 0)
        arm_timer(kg, next_deadline - now);

    aq_kv_read *done_head = NULL, **done_tail = &done_head;
    while (expired) {
        slot *s = expired;
        expired = s->free_next;
        aq_kv_read *r = s->r;
        slot_release(kg, s);
        r->status = aq_err_set(&r->err, AQ_TIMEOUT, "no answer for %s from %s within %lld ms",
                               r->key, kg->direct_subject, (long long)kg->cfg.timeout_ms);
        r->next = NULL;
        *done_tail = r;
        done_tail = &r->next;
        kg->stats.completed++;
        kg->stats.timeouts++;
    }
    pump(kg);
    while (done_head) {
        aq_kv_read *r = done_head;
        done_head = r->next; /* read first: done may reuse r */
        r->done(r);
    }
}

/* ---- sending (loop thread) ---- */

static void pump(aq_kv_getter *kg)
{
    while (kg->wait_head && kg->in_flight < (size_t)kg->cfg.max_in_flight) {
        aq_kv_read *r = kg->wait_head;
        kg->wait_head = r->next;
        if (!kg->wait_head)
            kg->wait_tail = NULL;
        r->next = NULL;
        kg->queued--;

        slot *s = kg->free_slots;
        kg->free_slots = s->free_next;
        s->free_next = NULL;
        s->r = r;
        kg->in_flight++;

        char reply[REPLY_MAX], body[BODY_MAX];
        int blen = snprintf(body, sizeof(body), "{\"last_by_subj\":\"$KV.%s.%s\"}", kg->bucket,
                            r->key);
        pthread_mutex_lock(&kg->lock);
        uint64_t token = (uint64_t)s->gen << 32 | s->index;
        s->state = SLOT_SENT;
        s->deadline_ms = aq_mono_ms() + kg->cfg.timeout_ms;
        list_append(&kg->sent, s);
        pthread_mutex_unlock(&kg->lock);
        snprintf(reply, sizeof(reply), "%s.%" PRIu64, kg->inbox, token);

        /* Registered before the publish: the answer may beat the return. */
        natsStatus ns = natsConnection_PublishRequest(kg->nc, kg->direct_subject, reply, body, blen);
        kg->stats.sent++;
        if (ns != NATS_OK) {
            pthread_mutex_lock(&kg->lock);
            bool ours = s->state == SLOT_SENT;
            if (ours) {
                list_unlink(&kg->sent, s);
                slot_retire(s);
            }
            pthread_mutex_unlock(&kg->lock);
            if (ours) { /* otherwise an answer came after all and is on its way */
                slot_release(kg, s);
                r->status = aq_queue_nats_error(&r->err, ns, 0, "direct get request");
                complete_early(kg, r);
            }
        }
    }
    if (kg->in_flight && !evtimer_pending(kg->timer, NULL))
        arm_timer(kg, kg->cfg.timeout_ms);
}

void aq_kv_getter_get(aq_kv_getter *kg, aq_kv_read *r, const char *key, aq_kv_read_fn done,
                      void *ctx)
{
    memset(r, 0, sizeof(*r));
    r->done = done;
    r->ctx = ctx;
    size_t len = strnlen(key, AQ_KV_KEY_MAX + 1);
    if (!valid_key(key, len)) {
        r->status = aq_err_set(&r->err, AQ_INVALID_ARG,
                               "not a valid KV key (1..%d of [-/_=.a-zA-Z0-9])", AQ_KV_KEY_MAX);
        complete_early(kg, r);
        return;
    }
    memcpy(r->key, key, len + 1);
    if (kg->wait_tail)
        kg->wait_tail->next = r;
    else
        kg->wait_head = r;
    kg->wait_tail = r;
    kg->queued++;
    pump(kg);
}

void aq_kv_getter_stats_get(const aq_kv_getter *kg, aq_kv_getter_stats *out)
{
    *out = kg->stats;
    out->in_flight = kg->in_flight;
    out->queued = kg->queued;
}

/* ---- lifetime ---- */

/* Direct get needs AllowDirect on the bucket's stream: without it the server
 * never answers and every read would time out, so say so at start. */
static aq_status check_bucket(jsCtx *js, const char *bucket, aq_err *err)
{
    char stream[BUCKET_MAX + 8];
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    aq_status st = AQ_OK;
    aq_queue_kv_stream(bucket, stream, sizeof(stream));
    natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        st = aq_err_set(err, AQ_NOT_FOUND, "KV bucket %s does not exist: run `agentq init`", bucket);
        goto out;
    }
    if (s != NATS_OK) {
        st = aq_queue_nats_error(err, s, jerr, "KV bucket stream info");
        goto out;
    }
    if (!si->Config || !si->Config->AllowDirect) {
        st = aq_err_set(err, AQ_CONFIG,
                        "KV bucket %s has no direct get (AllowDirect is off): run `agentq init`",
                        bucket);
        goto out;
    }
out:
    jsStreamInfo_Destroy(si);
    return st;
}

aq_status aq_kv_getter_new(natsConnection *nc, jsCtx *js, const char *bucket,
                           const aq_kv_getter_config *cfg, struct event_base *base, aq_mailbox *mb,
                           aq_kv_getter **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_kv_getter *kg = NULL;
    natsStatus s;

    if (!nc || !js || !base || !mb || !bucket || !valid_bucket(bucket)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "KV getter: bad bucket name or missing argument");
        goto out;
    }
    if (cfg->timeout_ms <= 0 || cfg->max_in_flight < 1 ||
        cfg->max_in_flight > AQ_KV_GETTER_MAX_IN_FLIGHT || cfg->max_value_bytes == 0) {
        st = aq_err_set(err, AQ_INVALID_ARG,
                        "KV getter: timeout_ms > 0, max_in_flight 1..%d, max_value_bytes > 0",
                        AQ_KV_GETTER_MAX_IN_FLIGHT);
        goto out;
    }
    if ((st = check_bucket(js, bucket, err)) != AQ_OK)
        goto out;

    kg = calloc(1, sizeof(*kg));
    if (kg)
        kg->slots = calloc((size_t)cfg->max_in_flight, sizeof(slot));
    if (!kg || !kg->slots) {
        st = aq_err_set(err, AQ_NOMEM, "KV getter: out of memory");
        goto out;
    }
    kg->nc = nc;
    kg->mb = mb;
    kg->cfg = *cfg;
    snprintf(kg->bucket, sizeof(kg->bucket), "%s", bucket);
    snprintf(kg->direct_subject, sizeof(kg->direct_subject), "$JS.API.DIRECT.GET.KV_%s", bucket);
    for (int i = cfg->max_in_flight - 1; i >= 0; i--) {
        slot *sl = &kg->slots[i];
        sl->kg = kg;
        sl->index = (uint32_t)i;
        sl->free_next = kg->free_slots;
        kg->free_slots = sl;
    }
    pthread_mutex_init(&kg->lock, NULL);
    pthread_cond_init(&kg->closed_cond, NULL);
    kg->lock_init = true;
    kg->timer = evtimer_new(base, on_timer, kg);
    if (!kg->timer) {
        st = aq_err_set(err, AQ_NOMEM, "KV getter: evtimer_new failed");
        goto out;
    }

    if ((st = aq_queue_inbox_new(nc, kg->inbox, sizeof(kg->inbox), err)) != AQ_OK) {
        aq_err_prefix(err, "KV getter");
        goto out;
    }
    char wildcard[INBOX_MAX + 2];
    snprintf(wildcard, sizeof(wildcard), "%s.*", kg->inbox);
    if ((s = natsConnection_Subscribe(&kg->sub, nc, wildcard, on_answer, kg)) != NATS_OK) {
        kg->sub = NULL;
        st = aq_queue_nats_error(err, s, 0, "KV getter subscription");
        goto out;
    }
    /* on_sub_complete tells destroy that no callback can run any more. */
    if ((s = natsSubscription_SetOnCompleteCB(kg->sub, on_sub_complete, kg)) != NATS_OK) {
        natsSubscription_Unsubscribe(kg->sub); /* closed at once: nothing was sent yet */
        natsSubscription_Destroy(kg->sub);
        kg->sub = NULL;
        st = aq_queue_nats_error(err, s, 0, "KV getter subscription");
        goto out;
    }
    /* Every in-flight answer may sit in the subscription's queue at once;
     * its bytes are bounded by max_in_flight x the server's message size. */
    int pending_msgs = cfg->max_in_flight * 2 > PENDING_MSGS_MIN ? cfg->max_in_flight * 2
                                                                 : PENDING_MSGS_MIN;
    natsSubscription_SetPendingLimits(kg->sub, pending_msgs, -1);
    /* The subscription must be known to the server before the first request. */
    if ((s = natsConnection_Flush(nc)) != NATS_OK) {
        st = aq_queue_nats_error(err, s, 0, "KV getter subscription");
        goto out;
    }
    *out = kg;
    kg = NULL;
out:
    aq_kv_getter_destroy(kg);
    return st;
}

void aq_kv_getter_destroy(aq_kv_getter *kg)
{
    if (!kg)
        return;
    if (kg->sub) {
        /* After the on-complete callback nats.c calls nothing of ours; it
         * also runs when the connection was closed earlier. */
        natsSubscription_Unsubscribe(kg->sub);
        pthread_mutex_lock(&kg->lock);
        while (!kg->sub_closed)
            pthread_cond_wait(&kg->closed_cond, &kg->lock);
        pthread_mutex_unlock(&kg->lock);
        natsSubscription_Destroy(kg->sub);
    }
    /* Answers handed over but not run: their messages are ours. */
    for (slot *s = kg->posted.head; s; s = s->next)
        natsMsg_Destroy(s->reply);
    if (kg->timer)
        event_free(kg->timer);
    if (kg->lock_init) {
        pthread_cond_destroy(&kg->closed_cond);
        pthread_mutex_destroy(&kg->lock);
    }
    free(kg->slots);
    free(kg);
}
