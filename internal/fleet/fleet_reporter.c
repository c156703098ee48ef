#include "fleet/fleet_reporter.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/text.h"

#ifndef AQ_FLEET_AGENTQ_VERSION
#define AQ_FLEET_AGENTQ_VERSION "unknown"
#endif

struct aq_fleet_reporter {
    struct event *timer;
    natsConnection *nc;
    aq_fleet_fill_fn fill;
    void *ctx;
    int64_t interval_ms;
    int64_t started_ms;
    char worker[AQ_FLEET_WORKER_MAX + 1];
    char subject[AQ_FLEET_PREFIX_MAX + 1 + AQ_FLEET_WORKER_MAX + 1];
    aq_buf json;            /* the encoding, reused; capped at the snapshot cap */
    aq_fleet_snapshot snap; /* reused: 3 KiB that need not be on the stack every tick */
    uint64_t published;
    uint64_t failed;
    aq_err last_err;
};

static void publish(aq_fleet_reporter *r, bool stopping)
{
    aq_err err;
    aq_fleet_snapshot *s = &r->snap;
    aq_fleet_snapshot_init(s);
    snprintf(s->version, sizeof(s->version), "%s", AQ_FLEET_AGENTQ_VERSION);
    memcpy(s->worker, r->worker, sizeof(s->worker));
    if (r->fill)
        r->fill(r->ctx, s);
    /* Identity is the reporter's, whatever the callback did. */
    if (s->version[0] == '\0')
        snprintf(s->version, sizeof(s->version), "%s", AQ_FLEET_AGENTQ_VERSION);
    s->v = AQ_FLEET_SNAPSHOT_VERSION;
    memcpy(s->worker, r->worker, sizeof(s->worker));
    s->pid = (int64_t)getpid();
    s->started_ms = r->started_ms;
    s->interval_ms = r->interval_ms;
    s->sent_ms = aq_now_unix_ms();
    s->stopping = stopping;
    if (aq_fleet_snapshot_encode(s, &r->json, &err) != AQ_OK) {
        r->failed++;
        r->last_err = err;
        return;
    }
    natsStatus ns = natsConnection_Publish(r->nc, r->subject, r->json.data, (int)r->json.len);
    if (ns != NATS_OK) {
        r->failed++;
        aq_err_set(&r->last_err, AQ_NATS, "publishing the fleet snapshot on %s: %s", r->subject,
                   natsStatus_GetText(ns));
        return;
    }
    r->published++;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    aq_fleet_reporter *r = arg;
    publish(r, false);
    struct timeval tv = {.tv_sec = r->interval_ms / 1000,
                         .tv_usec = (suseconds_t)(r->interval_ms % 1000) * 1000};
    evtimer_add(r->timer, &tv);
}

aq_status aq_fleet_reporter_start(struct event_base *base, natsConnection *nc,
                                  const char *subject_prefix, const char *worker,
                                  int64_t interval_ms, aq_fleet_fill_fn fill, void *ctx,
                                  aq_fleet_reporter **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_fleet_reporter *r = NULL;
    char token[AQ_FLEET_WORKER_MAX + 1];
    if (!base || !nc || !fill) {
        st = aq_err_set(err, AQ_INVALID_ARG,
                        "fleet reporter: no event base, connection or fill function");
        goto out;
    }
    if (!aq_fleet_prefix_valid(subject_prefix)) {
        st = aq_err_set(err, AQ_CONFIG,
                        "status subject '%.*s' is not a subject prefix (dot-separated tokens, no "
                        "wildcards or spaces, at most %d bytes)",
                        AQ_FLEET_PREFIX_MAX, subject_prefix ? subject_prefix : "",
                        AQ_FLEET_PREFIX_MAX);
        goto out;
    }
    if (!worker || !*worker || strlen(worker) > AQ_FLEET_WORKER_MAX ||
        !aq_utf8_valid(worker, strlen(worker))) {
        st = aq_err_set(err, AQ_CONFIG,
                        "fleet reporter: the worker name must be 1 to %d bytes of UTF-8",
                        AQ_FLEET_WORKER_MAX);
        goto out;
    }
    if (interval_ms < AQ_FLEET_INTERVAL_MIN_MS) {
        st = aq_err_set(err, AQ_CONFIG, "status interval %lldms is below %dms",
                        (long long)interval_ms, AQ_FLEET_INTERVAL_MIN_MS);
        goto out;
    }
    if ((st = aq_fleet_subject_token(worker, token, sizeof(token), err)) != AQ_OK)
        goto out;
    if (!(r = calloc(1, sizeof(*r)))) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    r->nc = nc;
    r->fill = fill;
    r->ctx = ctx;
    r->interval_ms = interval_ms;
    r->started_ms = aq_now_unix_ms();
    snprintf(r->worker, sizeof(r->worker), "%s", worker);
    snprintf(r->subject, sizeof(r->subject), "%s.%s", subject_prefix, token);
    aq_buf_init(&r->json, AQ_FLEET_SNAPSHOT_JSON_MAX);
    if (!(r->timer = evtimer_new(base, on_tick, r))) {
        st = aq_err_set(err, AQ_NOMEM, "fleet reporter: cannot create the timer");
        goto out;
    }
    /* The first snapshot at once: a new worker shows up in `agentq status`
     * without waiting an interval. */
    struct timeval now = {0, 0};
    if (evtimer_add(r->timer, &now) != 0) {
        st = aq_err_set(err, AQ_IO, "fleet reporter: cannot arm the timer");
        goto out;
    }
    *out = r;
    r = NULL;
out:
    if (r) {
        if (r->timer)
            event_free(r->timer);
        aq_buf_free(&r->json);
        free(r);
    }
    return st;
}

void aq_fleet_reporter_stats(const aq_fleet_reporter *r, uint64_t *published, uint64_t *failed,
                             aq_err *last_err)
{
    if (published)
        *published = r->published;
    if (failed)
        *failed = r->failed;
    if (last_err)
        *last_err = r->last_err;
}

void aq_fleet_reporter_destroy(aq_fleet_reporter *r)
{
    if (!r)
        return;
    event_free(r->timer); /* also removes it from the loop */
    publish(r, true);
    /* Best effort: a worker that is shutting down while NATS is away must not
     * wait long for a status line. */
    natsConnection_FlushTimeout(r->nc, AQ_FLEET_FINAL_FLUSH_MS);
    aq_buf_free(&r->json);
    free(r);
}
