/* Parked tasks: a spent budget's backlog, out of the consumer's way.
 *
 * With budget_action=defer a task whose tenant's daily budget is spent is
 * copied to the deferred stream (subject <deferred_subjects>.<tenant>, or
 * <deferred_subjects>.<tenant>.<type> when the type's budget refused it;
 * escaped as in the budget keys) and then acked, so it no longer
 * counts against the consumer's max_ack_pending: a spent tenant's backlog,
 * however long, never holds back the other tenants. The copy is the
 * original task bytes with the original headers (less the Nats-* ones) and:
 *
 *   Agentq-Parked-Subject  the subject it came from (it goes back there)
 *   Agentq-Parked-Tenant   the tenant
 *   Agentq-Parked-Type     the type, when the type's budget refused it
 *   Agentq-Parked-Limit    that budget's limit in micro-USD when it refused
 *   Agentq-Parked-Day      the budget day (days since 1970-01-01, UTC)
 *   Agentq-Parked-Until    when that day ends (RFC 3339, for people)
 *   Agentq-Parked-Seq      its sequence in the task stream
 *
 * A parked task is released (moved back to the task stream, then deleted
 * from the deferred stream) by any worker's release pass when its budget
 * day is over, or when that worker's configured limit for the budget that
 * refused it is higher than Agentq-Parked-Limit (the budget was raised).
 * Workers run a pass when aq_park_due says one is due: they check when they
 * start and every 30 s (pipeline/keeper.c).
 *
 * Crash windows (every step is repeatable, none loses the task):
 *   park:    copy published, original not acked yet -> the original is
 *            redelivered and parked again under the same Nats-Msg-Id
 *            ("park-<task stream>-<seq>-<task id>"): the deferred stream drops the
 *            copy within its de-dup window; after it, a second parked copy
 *            runs later as a redelivery would (the stored Result settles it).
 *            Crash before the copy is stored: the original is redelivered.
 *   release: task republished, parked copy not deleted yet -> the next pass
 *            republishes it under the same Nats-Msg-Id ("<deferred
 *            stream>-<seq>-<task stream seq>"): dropped within the task stream's de-dup
 *            window, else a duplicate delivery that finds the Result stored
 *            (or, if both run at once, at most one extra call). Crash before
 *            the republish is stored: the copy is still parked. */
#ifndef AQ_PIPELINE_PARKING_H
#define AQ_PIPELINE_PARKING_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "budget/budget.h"
#include "core/status.h"
#include "queue/queue_config.h"

#define AQ_PARK_H_SUBJECT "Agentq-Parked-Subject"
#define AQ_PARK_H_TENANT "Agentq-Parked-Tenant"
#define AQ_PARK_H_TYPE "Agentq-Parked-Type"
#define AQ_PARK_H_LIMIT "Agentq-Parked-Limit"
#define AQ_PARK_H_DAY "Agentq-Parked-Day"
#define AQ_PARK_H_UNTIL "Agentq-Parked-Until"
#define AQ_PARK_H_SEQ "Agentq-Parked-Seq"
#define AQ_PARK_MSG_ID_MAX 512

typedef struct aq_park_info {
    const char *tenant;
    const char *type;      /* NULL or "": the tenant's own budget refused */
    int64_t limit_micro;   /* of the budget that refused */
    int64_t reset_unix_ms; /* when its day ends */
    uint64_t stream_seq;   /* of the original in the task stream */
    const char *task_id;
} aq_park_info;

/* The parked copy of `orig` (a delivered task) and its Nats-Msg-Id.
 * AQ_INVALID_ARG when the tenant is too long for a subject token (a tenant
 * with a budget never is: AQ_BUDGET_NAME_MAX). */
aq_status aq_park_msg(const aq_queue_config *q, natsMsg *orig, const aq_park_info *pi,
                      natsMsg **out, char msg_id[AQ_PARK_MSG_ID_MAX], aq_err *err);

typedef struct aq_release_report {
    uint64_t examined; /* parked tasks looked at */
    uint64_t released; /* moved back to the task stream */
    uint64_t bad;      /* parked messages without a usable origin (left alone) */
    uint64_t refused;  /* refused by the task stream (left parked) */
    char last_refusal[AQ_ERR_MAX]; /* why, for the last of them */
} aq_release_report;

/* One release pass over the deferred stream (synchronous; for a thread that
 * may block): every parked task whose budget day is before `now_unix_ms`'s,
 * or whose budget `spec` (may be NULL) now sets higher than when it was
 * parked, goes back to the task stream. Stops early when *stop becomes
 * true. AQ_NOT_FOUND when the deferred stream does not exist. */
aq_status aq_park_release(jsCtx *js, const aq_queue_config *q, const aq_budget_spec *spec,
                          int64_t now_unix_ms, const volatile bool *stop, aq_release_report *out,
                          aq_err *err);

/* The deferred stream's state, as aq_park_due saw it. */
typedef struct aq_park_view {
    uint64_t msgs, first_seq, last_seq;
} aq_park_view;

/* Is a release pass due? Cheap, without reading the whole deferred stream:
 * the oldest parked task is from an earlier budget day (its reset came; the
 * fleet may have been down then, or its worker's clock behind), or the last
 * task parked under one of the budgets of `spec` (subject
 * <deferred_subjects>.<tenant>[.<type>]) was refused under a lower limit
 * than `spec`'s (a raised budget, also while workers with the old limit
 * still park tasks). One stream info and 1 + budgets direct gets. */
aq_status aq_park_due(jsCtx *js, const aq_queue_config *q, const aq_budget_spec *spec,
                      int64_t now_unix_ms, aq_park_view *view, bool *due, aq_err *err);

/* The rule: may a task parked on `day` under `parked_limit` go back now? */
bool aq_park_releasable(int64_t parked_day, int64_t parked_limit, int64_t today,
                        int64_t current_limit);

#endif
