#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_store.h"
#include "core/clock.h"
#include "queue/queue_conn.h"
#include "task/task_codec.h"
#include "task/task_wire.h"

static aq_status nomem(aq_err *err)
{
    return aq_err_set(err, AQ_NOMEM, "session: out of memory");
}

aq_status aq_session_keys(const char *session_id, char *history_key, char *lease_key, aq_err *err)
{
    if (!session_id || !aq_task_id_valid(session_id))
        return aq_err_set(err, AQ_INVALID_ARG, "session id \"%.64s\" is not valid (1 to 128 of "
                          "[A-Za-z0-9_=.-], no leading, trailing or double '.')",
                          session_id ? session_id : "");
    if (history_key)
        snprintf(history_key, AQ_KV_KEY_MAX + 1, "%s%s", session_id, AQ_SESSION_HISTORY_SUFFIX);
    if (lease_key)
        snprintf(lease_key, AQ_KV_KEY_MAX + 1, "%s%s", session_id, AQ_SESSION_LEASE_SUFFIX);
    return AQ_OK;
}

/* ---- history ---- */

aq_status aq_session_decode(const void *data, size_t len, size_t cap, Agentq__V1__Session **out,
                            aq_err *err)
{
    if (len > cap)
        return aq_err_set(err, AQ_TOO_BIG, "session history is %zu bytes, over the cap of %zu",
                          len, cap);
    int has_nul = 0; /* the same wire check as a task's, before protobuf-c */
    aq_wire_nul nul;
    if (aq_wire_scan(&agentq__v1__session__descriptor, data, len, &has_nul, &nul, err) != AQ_OK) {
        aq_err_prefix(err, "session history");
        if (err)
            err->status = AQ_INVALID_ARG;
        return AQ_INVALID_ARG;
    }
    if (has_nul)
        return aq_err_set(err, AQ_INVALID_ARG, "session history: %s holds a NUL byte", nul.path);
    Agentq__V1__Session *s = agentq__v1__session__unpack(NULL, len, data);
    if (!s)
        return aq_err_set(err, AQ_INVALID_ARG, "session history (%zu bytes) does not decode as "
                          "agentq.v1.Session", len);
    *out = s;
    return AQ_OK;
}

aq_status aq_session_encode(const Agentq__V1__Session *s, size_t cap, aq_buf *out, aq_err *err)
{
    size_t n = agentq__v1__session__get_packed_size(s);
    if (n > cap)
        return aq_err_set(err, AQ_TOO_BIG, "session %s is %zu bytes, over the cap of %zu "
                          "(session_max_bytes)", s->session_id, n, cap);
    char *at = NULL;
    aq_buf_reset(out);
    aq_status st = aq_buf_extend(out, n, &at);
    if (st != AQ_OK)
        return aq_err_set(err, st, "session %s: %s", s->session_id, aq_status_text(st));
    agentq__v1__session__pack(s, (uint8_t *)at);
    return AQ_OK;
}

void aq_session_free(Agentq__V1__Session *s)
{
    if (s)
        agentq__v1__session__free_unpacked(s, NULL);
}

aq_status aq_session_messages(const Agentq__V1__Session *s, const Agentq__V1__Message ***out,
                              size_t *n, aq_err *err)
{
    size_t total = 0;
    for (size_t i = 0; s && i < s->n_turns; i++)
        total += s->turns[i]->n_messages;
    const Agentq__V1__Message **a = malloc((total ? total : 1) * sizeof(*a));
    if (!a)
        return nomem(err);
    size_t k = 0;
    for (size_t i = 0; s && i < s->n_turns; i++)
        for (size_t j = 0; j < s->turns[i]->n_messages; j++)
            a[k++] = s->turns[i]->messages[j];
    *out = a;
    *n = total;
    return AQ_OK;
}

static size_t block_bytes(const Agentq__V1__ContentBlock *b)
{
    size_t n = 0;
    const Agentq__V1__MediaSource *src = NULL;
    switch (b->block_case) {
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT:
        n += b->text && b->text->text ? strlen(b->text->text) : 0;
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE:
        src = b->image ? b->image->source : NULL;
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT:
        src = b->document ? b->document->source : NULL;
        n += b->document && b->document->title ? strlen(b->document->title) : 0;
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE:
        if (b->tool_use)
            n += strlen(b->tool_use->name ? b->tool_use->name : "") +
                 strlen(b->tool_use->input_json ? b->tool_use->input_json : "");
        break;
    case AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT:
        for (size_t i = 0; b->tool_result && i < b->tool_result->n_content; i++)
            n += block_bytes(b->tool_result->content[i]);
        break;
    default:
        break;
    }
    if (src)
        n += src->data.len + (src->url ? strlen(src->url) : 0);
    return n;
}

int64_t aq_session_message_tokens(const Agentq__V1__Message *m)
{
    size_t bytes = m->content ? strlen(m->content) : 0;
    for (size_t i = 0; i < m->n_blocks; i++)
        bytes += block_bytes(m->blocks[i]);
    return (int64_t)(bytes / 4 + (bytes % 4 != 0));
}

static bool clean_start(const Agentq__V1__Message *m)
{
    if (!m->role || strcmp(m->role, "user") != 0)
        return false;
    for (size_t i = 0; i < m->n_blocks; i++)
        if (m->blocks[i]->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT)
            return false;
    return true;
}

size_t aq_session_window(const Agentq__V1__Message *const *msgs, size_t n, int64_t budget_tokens)
{
    int64_t total = 0;
    size_t start = n;
    for (size_t i = n; i-- > 0;) {
        total += aq_session_message_tokens(msgs[i]);
        if (total > budget_tokens)
            break;
        if (clean_start(msgs[i]))
            start = i;
    }
    return start;
}

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

static void *xclone(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    protobuf_c_message_pack(m, buf);
    void *c = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    return c;
}

aq_status aq_session_add_turn(Agentq__V1__Session **sp, const char *session_id, const char *task_id,
                              const Agentq__V1__Message *const *msgs, size_t n, int64_t now,
                              size_t max_bytes, bool *appended, aq_err *err)
{
    Agentq__V1__Session *s = *sp;
    *appended = false;
    if (!s) {
        s = malloc(sizeof(*s));
        if (!s)
            return nomem(err);
        agentq__v1__session__init(s);
        if (!(s->session_id = xstrdup(session_id))) {
            free(s);
            return nomem(err);
        }
        s->created_unix_ms = now;
        *sp = s;
    }
    for (size_t i = 0; i < s->n_turns; i++)
        if (strcmp(s->turns[i]->task_id, task_id) == 0)
            return AQ_OK; /* a redelivery: the turn is in */
    Agentq__V1__SessionTurn *t = malloc(sizeof(*t));
    Agentq__V1__SessionTurn **turns = realloc(s->turns, (s->n_turns + 1) * sizeof(*turns));
    if (turns)
        s->turns = turns;
    if (!t || !turns) {
        free(t);
        return nomem(err);
    }
    agentq__v1__session_turn__init(t);
    t->appended_unix_ms = now;
    t->task_id = xstrdup(task_id);
    t->messages = calloc(n ? n : 1, sizeof(*t->messages));
    s->turns[s->n_turns++] = t; /* owned by s from here: freed with it */
    if (!t->task_id || !t->messages)
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        if (!(t->messages[i] = xclone(&msgs[i]->base)))
            return nomem(err);
        t->n_messages++;
    }
    size_t turn_bytes = agentq__v1__session_turn__get_packed_size(t);
    if (turn_bytes + 64 > max_bytes)
        return aq_err_set(err, AQ_TOO_BIG, "the turn of task %s is %zu bytes: it cannot fit in "
                          "session %s (session_max_bytes %zu)", task_id, turn_bytes, session_id,
                          max_bytes);
    while (s->n_turns > 1 && agentq__v1__session__get_packed_size(s) > max_bytes) {
        agentq__v1__session_turn__free_unpacked(s->turns[0], NULL);
        memmove(s->turns, s->turns + 1, (s->n_turns - 1) * sizeof(*s->turns));
        s->n_turns--;
        s->dropped_turns++;
    }
    s->updated_unix_ms = now;
    *appended = true;
    return AQ_OK;
}

/* ---- store ---- */

/* After a lost compare-and-set: a short random wait, growing, so that writers
 * racing in a loop do not keep colliding (the same writer losing every
 * round). Only the synchronous functions sleep. */
static void backoff(int tries)
{
    int64_t max_us = 1000LL << (tries < 6 ? tries : 6); /* 1 ms .. 64 ms */
    uint64_t x = (uint64_t)aq_mono_us() * 0x9E3779B97F4A7C15ULL;
    usleep((useconds_t)((x >> 33) % (uint64_t)max_us));
}

aq_status aq_session_from_read(const aq_kv_read *rd, size_t cap, Agentq__V1__Session **out,
                               uint64_t *rev, aq_err *err)
{
    if (rd->status == AQ_NOT_FOUND || (rd->status == AQ_OK && rd->deleted)) {
        *rev = rd->revision;
        return aq_err_set(err, AQ_NOT_FOUND, "no session history at %s", rd->key);
    }
    if (rd->status != AQ_OK)
        return aq_err_set(err, rd->status, "%s", rd->err.msg);
    aq_status st = aq_session_decode(natsMsg_GetData(rd->msg),
                                     (size_t)natsMsg_GetDataLength(rd->msg), cap, out, err);
    if (st != AQ_OK)
        return aq_err_prefix(err, "%s", rd->key);
    *rev = rd->revision;
    return AQ_OK;
}

static aq_status read_key(jsCtx *js, const char *bucket, const char *key, int64_t timeout_ms,
                          aq_kv_read *rd)
{
    memset(rd, 0, sizeof(*rd));
    snprintf(rd->key, sizeof(rd->key), "%s", key);
    aq_kv_read_now(js, bucket, key, timeout_ms, rd);
    return rd->status;
}

aq_status aq_session_load(jsCtx *js, const char *bucket, const char *session_id, int64_t timeout_ms,
                          size_t cap, Agentq__V1__Session **out, uint64_t *rev, aq_err *err)
{
    char key[AQ_KV_KEY_MAX + 1];
    aq_kv_read rd;
    aq_status st = aq_session_keys(session_id, key, NULL, err);
    if (st != AQ_OK)
        return st;
    read_key(js, bucket, key, timeout_ms, &rd);
    st = aq_session_from_read(&rd, cap, out, rev, err);
    aq_kv_read_clear(&rd);
    return st;
}

aq_status aq_session_append(jsCtx *js, const char *bucket, const char *session_id,
                            const char *task_id, const Agentq__V1__Message *const *msgs, size_t n,
                            int64_t now, size_t max_bytes, int64_t timeout_ms, bool *appended,
                            aq_err *err)
{
    char key[AQ_KV_KEY_MAX + 1];
    aq_status st = aq_session_keys(session_id, key, NULL, err);
    if (st != AQ_OK)
        return st;
    aq_buf b;
    aq_buf_init(&b, max_bytes);
    for (int tries = 0; tries < AQ_SESSION_CAS_TRIES; tries++) {
        Agentq__V1__Session *s = NULL;
        uint64_t rev = 0;
        natsMsg *m = NULL;
        /* Read a little past the cap: a history written under a larger cap
         * is trimmed by this append, not refused. */
        st = aq_session_load(js, bucket, session_id, timeout_ms, max_bytes * 2, &s, &rev, err);
        if (st == AQ_NOT_FOUND)
            st = AQ_OK;
        if (st == AQ_OK)
            st = aq_session_add_turn(&s, session_id, task_id, msgs, n, now, max_bytes, appended,
                                     err);
        if (st == AQ_OK && !*appended) {
            aq_session_free(s);
            break;
        }
        if (st == AQ_OK)
            st = aq_session_encode(s, max_bytes, &b, err);
        aq_session_free(s);
        if (st == AQ_OK)
            st = aq_kv_cas_msg(bucket, key, b.data, b.len, rev, &m, err);
        if (st == AQ_OK)
            st = aq_kv_cas_publish(js, m, NULL, err);
        if (st != AQ_WRITE_CONFLICT)
            break;
        backoff(tries);
    }
    if (st != AQ_OK)
        *appended = false;
    aq_buf_free(&b);
    if (st == AQ_WRITE_CONFLICT)
        aq_err_prefix(err, "session %s: %d compare-and-set writes lost in a row", session_id,
                      AQ_SESSION_CAS_TRIES);
    return st;
}

/* ---- lease ---- */

aq_status aq_session_lease_msg(const char *bucket, const char *session_id, const char *task_id,
                               const char *holder, int64_t ttl_ms, int64_t now, uint64_t rev,
                               natsMsg **out, int64_t *expires_unix_ms, aq_err *err)
{
    char key[AQ_KV_KEY_MAX + 1];
    aq_status st = aq_session_keys(session_id, NULL, key, err);
    if (st != AQ_OK)
        return st;
    Agentq__V1__SessionLease v = AGENTQ__V1__SESSION_LEASE__INIT;
    uint8_t buf[512];
    v.task_id = (char *)task_id;
    v.holder = (char *)(holder ? holder : "");
    v.acquired_unix_ms = now;
    v.expires_unix_ms = now + ttl_ms;
    size_t n = agentq__v1__session_lease__get_packed_size(&v);
    if (n > sizeof(buf))
        return aq_err_set(err, AQ_INVALID_ARG, "lease value of %zu bytes", n);
    agentq__v1__session_lease__pack(&v, buf);
    if ((st = aq_kv_cas_msg(bucket, key, buf, n, rev, out, err)) == AQ_OK && expires_unix_ms)
        *expires_unix_ms = v.expires_unix_ms;
    return st;
}

aq_status aq_session_lease_decide(const aq_kv_read *rd, const char *task_id, int64_t now,
                                  uint64_t *rev, aq_session_lease *busy, aq_err *err)
{
    if (rd->status != AQ_OK && rd->status != AQ_NOT_FOUND)
        return aq_err_set(err, rd->status, "session lease: %s", rd->err.msg);
    *rev = rd->revision;
    if (rd->status == AQ_NOT_FOUND || rd->deleted)
        return AQ_OK;
    Agentq__V1__SessionLease *v = agentq__v1__session_lease__unpack(
        NULL, (size_t)natsMsg_GetDataLength(rd->msg), (const uint8_t *)natsMsg_GetData(rd->msg));
    /* An undecodable lease would block the session forever: taken over. */
    aq_status st = AQ_OK;
    if (v && strcmp(v->task_id, task_id) != 0 && v->expires_unix_ms > now) {
        memset(busy, 0, sizeof(*busy));
        snprintf(busy->holder_task, sizeof(busy->holder_task), "%s", v->task_id);
        busy->expires_unix_ms = v->expires_unix_ms;
        st = aq_err_set(err, AQ_SESSION_BUSY, "%s is held by task %s for %lld ms more", rd->key,
                        v->task_id, (long long)(v->expires_unix_ms - now));
    }
    if (v)
        agentq__v1__session_lease__free_unpacked(v, NULL);
    return st;
}

static aq_status write_lease(jsCtx *js, const char *bucket, const char *session_id,
                             const char *task_id, const char *holder, int64_t ttl_ms, int64_t now,
                             uint64_t rev, aq_session_lease *l, aq_err *err)
{
    natsMsg *m = NULL;
    uint64_t new_rev = 0;
    int64_t expires = 0;
    aq_status st = aq_session_lease_msg(bucket, session_id, task_id, holder, ttl_ms, now, rev, &m,
                                        &expires, err);
    if (st == AQ_OK)
        st = aq_kv_cas_publish(js, m, &new_rev, err);
    if (st == AQ_OK) {
        l->revision = new_rev;
        l->expires_unix_ms = expires;
        snprintf(l->holder_task, sizeof(l->holder_task), "%s", task_id);
    }
    return st;
}

aq_status aq_session_lease_acquire(jsCtx *js, const char *bucket, const char *session_id,
                                   const char *task_id, const char *holder, int64_t ttl_ms,
                                   int64_t now, int64_t timeout_ms, aq_session_lease *l,
                                   aq_err *err)
{
    char key[AQ_KV_KEY_MAX + 1];
    aq_status st = aq_session_keys(session_id, NULL, key, err);
    if (st != AQ_OK)
        return st;
    memset(l, 0, sizeof(*l));
    for (int tries = 0; tries < AQ_SESSION_CAS_TRIES; tries++) {
        aq_kv_read rd;
        uint64_t rev = 0;
        read_key(js, bucket, key, timeout_ms, &rd);
        st = aq_session_lease_decide(&rd, task_id, now, &rev, l, err);
        aq_kv_read_clear(&rd);
        if (st != AQ_OK)
            return st;
        st = write_lease(js, bucket, session_id, task_id, holder, ttl_ms, now, rev, l, err);
        if (st != AQ_WRITE_CONFLICT)
            return st;
        backoff(tries);
    }
    return aq_err_set(err, AQ_WRITE_CONFLICT, "session %s lease: %d compare-and-set writes lost "
                      "in a row", session_id, AQ_SESSION_CAS_TRIES);
}

aq_status aq_session_lease_renew(jsCtx *js, const char *bucket, const char *session_id,
                                 const char *task_id, const char *holder, int64_t ttl_ms,
                                 int64_t now, aq_session_lease *l, aq_err *err)
{
    char key[AQ_KV_KEY_MAX + 1];
    aq_status st = aq_session_keys(session_id, NULL, key, err);
    if (st != AQ_OK)
        return st;
    st = write_lease(js, bucket, session_id, task_id, holder, ttl_ms, now, l->revision, l, err);
    if (st == AQ_WRITE_CONFLICT)
        aq_err_prefix(err, "session %s: the lease was taken over", session_id);
    return st;
}

aq_status aq_session_lease_release(jsCtx *js, const char *bucket, const char *session_id,
                                   const aq_session_lease *l, aq_err *err)
{
    char key[AQ_KV_KEY_MAX + 1];
    aq_status st = aq_session_keys(session_id, NULL, key, err);
    if (st != AQ_OK)
        return st;
    natsMsg *m = NULL;
    if ((st = aq_kv_cas_msg(bucket, key, NULL, 0, l->revision, &m, err)) != AQ_OK)
        return st;
    if (natsMsgHeader_Set(m, "KV-Operation", "DEL") != NATS_OK) {
        natsMsg_Destroy(m);
        return aq_err_set(err, AQ_NOMEM, "session lease release: out of memory");
    }
    st = aq_kv_cas_publish(js, m, NULL, err);
    if (st == AQ_WRITE_CONFLICT)
        aq_err_prefix(err, "session %s: the lease was taken over before its release", session_id);
    return st;
}
