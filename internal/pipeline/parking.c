#include "parking.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "queue/queue_conn.h"
#include "queue/queue_scan.h"
#include "queue/queue_setup.h"

#define PARK_PREFIX "Agentq-Parked-"

/* Headers that are not the task's own: the server's (Nats-Msg-Id and the
 * publish expectations belong to one publish) and an earlier parking's. */
static bool header_kept(const char *key)
{
    return strncasecmp(key, "Nats-", 5) != 0 &&
           strncasecmp(key, PARK_PREFIX, sizeof(PARK_PREFIX) - 1) != 0;
}

/* Copies the task's own headers of `from` to `to`. */
static aq_status copy_headers(natsMsg *from, natsMsg *to, aq_err *err)
{
    const char **keys = NULL;
    int n = 0;
    natsStatus s = natsMsgHeader_Keys(from, &keys, &n);
    if (s == NATS_NOT_FOUND)
        return AQ_OK; /* no headers */
    if (s != NATS_OK)
        return aq_err_set(err, AQ_NOMEM, "cannot read the task's headers");
    aq_status st = AQ_OK;
    for (int i = 0; i < n && st == AQ_OK; i++) {
        if (!header_kept(keys[i]))
            continue;
        const char **vals = NULL;
        int nv = 0;
        if (natsMsgHeader_Values(from, keys[i], &vals, &nv) != NATS_OK) {
            st = aq_err_set(err, AQ_NOMEM, "cannot read header %s", keys[i]);
            break;
        }
        for (int v = 0; v < nv; v++)
            if (natsMsgHeader_Add(to, keys[i], vals[v]) != NATS_OK) {
                st = aq_err_set(err, AQ_NOMEM, "cannot copy header %s", keys[i]);
                break;
            }
        free((void *)vals);
    }
    free((void *)keys);
    return st;
}

static const char *header_str(natsMsg *m, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK && v ? v : NULL;
}

static void format_utc(int64_t unix_ms, char *out, size_t n)
{
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, n, "%" PRId64, unix_ms);
}

/* <deferred_subjects>.<tenant>[.<type>], both escaped; false when too long. */
static bool park_subject(const aq_queue_config *q, const char *tenant, const char *type,
                         char *out, size_t n)
{
    char t1[3 * AQ_BUDGET_NAME_MAX + 2], t2[3 * AQ_BUDGET_NAME_MAX + 2];
    if (!aq_budget_escape(tenant ? tenant : "", t1, sizeof(t1)))
        return false;
    bool typed = type && *type;
    if (typed && !aq_budget_escape(type, t2, sizeof(t2)))
        return false;
    int w = snprintf(out, n, "%s.%s%s%s", q->deferred_subjects, t1, typed ? "." : "",
                     typed ? t2 : "");
    return w > 0 && (size_t)w < n;
}

aq_status aq_park_msg(const aq_queue_config *q, natsMsg *orig, const aq_park_info *pi,
                      natsMsg **out, char msg_id[AQ_PARK_MSG_ID_MAX], aq_err *err)
{
    char subject[512], num[32], when[40];
    if (!park_subject(q, pi->tenant, pi->type, subject, sizeof(subject)))
        return aq_err_set(err, AQ_INVALID_ARG, "tenant or type too long to park the task");
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subject, NULL, natsMsg_GetData(orig), natsMsg_GetDataLength(orig)) !=
        NATS_OK)
        return aq_err_set(err, AQ_NOMEM, "cannot create the parked task");
    aq_status st = copy_headers(orig, m, err);
    if (st == AQ_OK) {
        natsStatus s = natsMsgHeader_Set(m, AQ_PARK_H_SUBJECT, natsMsg_GetSubject(orig));
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, AQ_PARK_H_TENANT, pi->tenant ? pi->tenant : "");
        if (s == NATS_OK && pi->type && *pi->type)
            s = natsMsgHeader_Set(m, AQ_PARK_H_TYPE, pi->type);
        snprintf(num, sizeof(num), "%" PRId64, pi->limit_micro);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, AQ_PARK_H_LIMIT, num);
        snprintf(num, sizeof(num), "%" PRId64, aq_budget_day_of(pi->reset_unix_ms - 1));
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, AQ_PARK_H_DAY, num);
        format_utc(pi->reset_unix_ms, when, sizeof(when));
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, AQ_PARK_H_UNTIL, when);
        snprintf(num, sizeof(num), "%" PRIu64, pi->stream_seq);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, AQ_PARK_H_SEQ, num);
        if (s != NATS_OK)
            st = aq_err_set(err, AQ_NOMEM, "cannot set the parked task's headers");
    }
    if (st != AQ_OK) {
        natsMsg_Destroy(m);
        return st;
    }
    /* The task id too: a task stream made anew restarts its sequences. */
    snprintf(msg_id, AQ_PARK_MSG_ID_MAX, "park-%s-%" PRIu64 "-%s", q->task_stream, pi->stream_seq,
             pi->task_id ? pi->task_id : "");
    *out = m;
    return AQ_OK;
}

bool aq_park_releasable(int64_t parked_day, int64_t parked_limit, int64_t today,
                        int64_t current_limit)
{
    if (parked_day < today)
        return true; /* its day is over: a new day's budget */
    /* Raised. A budget this worker does not know (-1) tells nothing: the
     * task waits for a worker that has it, or for the reset. */
    return current_limit >= 0 && current_limit > parked_limit;
}

static bool header_int(natsMsg *m, const char *key, int64_t *out)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || !v || !*v)
        return false;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = x;
    return true;
}

/* Back to the task stream under a Nats-Msg-Id of its own (the task's id as
 * Nats-Msg-Id would be dropped as a duplicate of the original within the
 * de-dup window), then out of the deferred stream. */
static aq_status release_one(jsCtx *js, const aq_queue_config *q, natsMsg *parked, uint64_t seq,
                             const char *subject, bool *refused, aq_err *err)
{
    *refused = false;
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subject, NULL, natsMsg_GetData(parked), natsMsg_GetDataLength(parked)) !=
        NATS_OK)
        return aq_err_set(err, AQ_NOMEM, "cannot create the released task");
    aq_status st = copy_headers(parked, m, err);
    char msg_id[AQ_PARK_MSG_ID_MAX];
    const char *from = header_str(parked, AQ_PARK_H_SEQ);
    snprintf(msg_id, sizeof(msg_id), "%s-%" PRIu64 "-%s", q->deferred_stream, seq,
             from ? from : "");
    if (st == AQ_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msg_id;
        po.MaxWait = q->nats_timeout_ms;
        jsErrCode jerr = 0;
        natsStatus s = js_PublishMsg(NULL, js, m, &po, &jerr);
        if (s != NATS_OK) {
            st = aq_queue_nats_error(err, s, jerr, "releasing a parked task");
            *refused = jerr != 0; /* the task stream said no to this one */
        }
    }
    natsMsg_Destroy(m);
    if (st != AQ_OK)
        return st;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = q->nats_timeout_ms;
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteMsg(js, q->deferred_stream, seq, &jo, &jerr);
    if (s == NATS_OK || s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr ||
        jerr == JSStreamMsgDeleteFailed)
        return AQ_OK; /* another worker released it at the same time */
    return aq_queue_nats_error(err, s, jerr, "removing a released task from the deferred stream");
}

/* Should the parked message `m` go back now? */
static bool parked_releasable(natsMsg *m, const aq_budget_spec *spec, int64_t today)
{
    int64_t day = 0, limit = 0;
    const char *tenant = header_str(m, AQ_PARK_H_TENANT);
    const char *type = header_str(m, AQ_PARK_H_TYPE);
    if (!tenant || !header_int(m, AQ_PARK_H_DAY, &day) || !header_int(m, AQ_PARK_H_LIMIT, &limit))
        return false;
    int64_t now_limit = spec ? aq_budget_spec_limit(spec, tenant, type ? type : "") : -1;
    return aq_park_releasable(day, limit, today, now_limit);
}

aq_status aq_park_due(jsCtx *js, const aq_queue_config *q, const aq_budget_spec *spec,
                      int64_t now_unix_ms, aq_park_view *view, bool *due, aq_err *err)
{
    *due = false;
    memset(view, 0, sizeof(*view));
    int64_t today = aq_budget_day_of(now_unix_ms);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = q->nats_timeout_ms;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, q->deferred_stream, &jo, &jerr);
    if (s != NATS_OK)
        return aq_queue_nats_error(err, s, jerr, "deferred stream");
    view->msgs = si->State.Msgs;
    view->first_seq = si->State.FirstSeq;
    view->last_seq = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    if (view->msgs == 0)
        return AQ_OK;
    /* The oldest: parked on an earlier day, it may go back (a reset the
     * fleet was down for, or a worker whose clock was behind). */
    natsMsg *m = NULL;
    uint64_t seq = 0;
    aq_err e;
    aq_status st = aq_queue_scan_next(js, q->deferred_stream, view->first_seq, q->nats_timeout_ms,
                                      &m, &seq, &e);
    if (st == AQ_OK) {
        int64_t day = 0;
        *due = header_int(m, AQ_PARK_H_DAY, &day) && day < today;
        natsMsg_Destroy(m);
    } else if (st != AQ_NOT_FOUND) {
        *err = e;
        return st;
    }
    /* The last parked under each of this worker's budgets: under a lower
     * limit than this worker's, it may go back (a raised budget). */
    size_t n = spec ? aq_budget_spec_count(spec) : 0;
    for (size_t i = 0; i < n && !*due; i++) {
        const char *tenant = NULL, *type = NULL;
        int64_t limit = 0;
        char subject[512];
        if (!aq_budget_spec_entry(spec, i, &tenant, &type, &limit) ||
            !park_subject(q, tenant, type, subject, sizeof(subject)))
            continue;
        jsDirectGetMsgOptions dg;
        jsDirectGetMsgOptions_Init(&dg);
        dg.LastBySubject = subject;
        m = NULL;
        s = js_DirectGetMsg(&m, js, q->deferred_stream, &jo, &dg);
        if (s == NATS_NOT_FOUND)
            continue; /* nothing parked under this budget */
        if (s != NATS_OK)
            return aq_queue_nats_error(err, s, 0, "last parked task");
        *due = parked_releasable(m, spec, today);
        natsMsg_Destroy(m);
    }
    return AQ_OK;
}

aq_status aq_park_release(jsCtx *js, const aq_queue_config *q, const aq_budget_spec *spec,
                          int64_t now_unix_ms, const volatile bool *stop, aq_release_report *out,
                          aq_err *err)
{
    aq_release_report r = {0};
    aq_status st = aq_queue_stream_exists(js, q->deferred_stream, "deferred stream", err);
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "%s.", q->task_subjects);
    int64_t today = aq_budget_day_of(now_unix_ms);
    uint64_t next = 1;
    while (st == AQ_OK && !(stop && *stop)) {
        natsMsg *m = NULL;
        uint64_t seq = 0;
        aq_err e;
        aq_status s = aq_queue_scan_next(js, q->deferred_stream, next, q->nats_timeout_ms,
                                         &m, &seq, &e);
        if (s == AQ_NOT_FOUND)
            break; /* the end */
        if (s != AQ_OK) {
            *err = e;
            st = s;
            break;
        }
        next = seq + 1;
        r.examined++;
        const char *subject = header_str(m, AQ_PARK_H_SUBJECT);
        int64_t day = 0, limit = 0;
        if (!subject || strncmp(subject, prefix, strlen(prefix)) != 0 ||
            !header_str(m, AQ_PARK_H_TENANT) || !header_int(m, AQ_PARK_H_DAY, &day) ||
            !header_int(m, AQ_PARK_H_LIMIT, &limit)) {
            r.bad++; /* not parked by a worker: nowhere safe to send it */
        } else if (parked_releasable(m, spec, today)) {
            bool refused = false;
            st = release_one(js, q, m, seq, subject, &refused, err);
            if (st == AQ_OK) {
                r.released++;
            } else if (refused) {
                /* Refused by the task stream (full, or the task with its
                 * headers over max_msg_size): it stays parked and the pass
                 * goes on; the next pass tries it again. */
                r.refused++;
                snprintf(r.last_refusal, sizeof(r.last_refusal), "%s", err->msg);
                st = AQ_OK;
            }
        }
        natsMsg_Destroy(m);
    }
    *out = r;
    return st;
}
