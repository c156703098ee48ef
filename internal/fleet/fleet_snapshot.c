#include "fleet/fleet_snapshot.h"

#include "core/text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void aq_fleet_snapshot_init(aq_fleet_snapshot *s)
{
    memset(s, 0, sizeof(*s));
    s->v = AQ_FLEET_SNAPSHOT_VERSION;
    s->window.p50_ms = -1;
    s->window.p99_ms = -1;
    s->queue.pending = -1;
    s->queue.ack_pending = -1;
    s->queue.dlq_messages = -1;
    s->queue.pending_60s_ago = -1;
}

/* ---- encoding ---- */

/* One table for the counters, so encoder and decoder cannot drift apart. */
/* clang-format off */
#define COUNTERS(X)                                                                                \
    X(fetched) X(completed) X(failed) X(dead_lettered) X(already_done) X(retried) X(deferred)      \
    X(llm_calls) X(responses_429) X(responses_529) X(cache_hits) X(cache_misses)
/* clang-format on */

/* json_object_set_new that remembers a failure (out of memory). */
static void put(json_t *o, const char *k, json_t *v, bool *ok)
{
    if (!v || json_object_set_new(o, k, v) != 0)
        *ok = false;
}

/* JSON has no NaN or infinity: a worker's bad division must not break the
 * whole snapshot. */
static json_t *real(double d)
{
    return json_real(isfinite(d) ? d : 0.0);
}

json_t *aq_fleet_snapshot_to_json(const aq_fleet_snapshot *s)
{
    bool ok = true;
    json_t *o = json_object(), *c = json_object(), *w = json_object(), *q = json_object(),
           *cost = json_object(), *budgets = json_array();
    if (!o || !c || !w || !q || !cost || !budgets) {
        ok = false;
        goto out;
    }
    put(o, "v", json_integer(s->v), &ok);
    put(o, "worker", json_string(s->worker), &ok);
    put(o, "version", json_string(s->version), &ok);
    put(o, "pid", json_integer(s->pid), &ok);
    put(o, "started_ms", json_integer(s->started_ms), &ok);
    put(o, "sent_ms", json_integer(s->sent_ms), &ok);
    put(o, "interval_ms", json_integer(s->interval_ms), &ok);
    put(o, "stopping", json_boolean(s->stopping), &ok);
    put(o, "concurrency", json_integer(s->concurrency), &ok);
    put(o, "owned", json_integer(s->owned), &ok);
    put(o, "llm_in_flight", json_integer(s->llm_in_flight), &ok);
#define ENC_COUNTER(f) put(c, #f, json_integer(s->counters.f), &ok);
    COUNTERS(ENC_COUNTER)
#undef ENC_COUNTER
    put(w, "seconds", json_integer(AQ_FLEET_WINDOW_S), &ok);
    put(w, "completed", json_integer(s->window.completed), &ok);
    put(w, "completed_per_s", real(s->window.completed_per_s), &ok);
    put(w, "p50_ms", json_integer(s->window.p50_ms), &ok);
    put(w, "p99_ms", json_integer(s->window.p99_ms), &ok);
    put(w, "llm_calls", json_integer(s->window.llm_calls), &ok);
    put(w, "responses_429", json_integer(s->window.responses_429), &ok);
    put(w, "share_429", real(s->window.share_429), &ok);
    put(q, "probed_ms", json_integer(s->queue.probed_ms), &ok);
    put(q, "pending", json_integer(s->queue.pending), &ok);
    put(q, "ack_pending", json_integer(s->queue.ack_pending), &ok);
    put(q, "dlq_messages", json_integer(s->queue.dlq_messages), &ok);
    put(q, "pending_60s_ago", json_integer(s->queue.pending_60s_ago), &ok);
    put(cost, "day", json_string(s->cost_day), &ok);
    put(cost, "today_micro_usd", json_integer(s->cost_today_micro_usd), &ok);
    size_t nb = s->n_budgets < AQ_FLEET_BUDGETS_MAX ? s->n_budgets : AQ_FLEET_BUDGETS_MAX;
    for (size_t i = 0; i < nb && ok; i++) {
        json_t *b = json_pack("{s:s, s:I}", "tenant", s->budgets[i].tenant, "remaining_micro_usd",
                              (json_int_t)s->budgets[i].remaining_micro_usd);
        if (!b || json_array_append_new(budgets, b) != 0)
            ok = false;
    }
    put(cost, "budgets", budgets, &ok);
    budgets = NULL;
    put(o, "counters", c, &ok);
    c = NULL;
    put(o, "window", w, &ok);
    w = NULL;
    put(o, "queue", q, &ok);
    q = NULL;
    put(o, "cost", cost, &ok);
    cost = NULL;
out:
    json_decref(c);
    json_decref(w);
    json_decref(q);
    json_decref(cost);
    json_decref(budgets);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int append_cb(const char *buffer, size_t size, void *data)
{
    return aq_buf_append(data, buffer, size) == AQ_OK ? 0 : -1;
}

aq_status aq_fleet_snapshot_encode(const aq_fleet_snapshot *s, aq_buf *out, aq_err *err)
{
    aq_status st = AQ_OK;
    json_t *o = NULL;
    if (s->worker[0] == '\0') {
        st = aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: empty worker name");
        goto out;
    }
    if (s->n_budgets > AQ_FLEET_BUDGETS_MAX) {
        st = aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: %zu budgets, cap %d", s->n_budgets,
                        AQ_FLEET_BUDGETS_MAX);
        goto out;
    }
    if (!(o = aq_fleet_snapshot_to_json(s))) {
        /* jansson refuses strings that are not UTF-8; allocation is the other cause. */
        st = aq_err_set(err, AQ_INVALID_ARG,
                        "fleet snapshot: cannot encode (a name is not UTF-8, or out of memory)");
        goto out;
    }
    aq_buf_reset(out);
    if (json_dump_callback(o, append_cb, out, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0) {
        st = aq_err_set(err, AQ_TOO_BIG, "fleet snapshot: encoding over the buffer's cap of %zu",
                        out->cap);
        goto out;
    }
    if (out->len > AQ_FLEET_SNAPSHOT_JSON_MAX) {
        st = aq_err_set(err, AQ_TOO_BIG, "fleet snapshot: %zu bytes encoded, cap %d", out->len,
                        AQ_FLEET_SNAPSHOT_JSON_MAX);
        goto out;
    }
out:
    json_decref(o);
    return st;
}

/* ---- decoding ---- */

/* A missing field keeps the value `dst` has; a present one must have the
 * right type and lie within the bounds. */
static aq_status get_int(json_t *obj, const char *key, int64_t *dst, int64_t min, aq_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return AQ_OK;
    if (!json_is_integer(v))
        return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: %s is not an integer", key);
    json_int_t i = json_integer_value(v);
    if (i < min)
        return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: %s is %lld, below %lld", key,
                          (long long)i, (long long)min);
    *dst = (int64_t)i;
    return AQ_OK;
}

static aq_status get_real(json_t *obj, const char *key, double *dst, double min, double max,
                          aq_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return AQ_OK;
    if (!json_is_number(v))
        return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: %s is not a number", key);
    double d = json_number_value(v);
    if (!(d >= min && d <= max))
        return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: %s is out of range", key);
    *dst = d;
    return AQ_OK;
}

static aq_status get_str(json_t *obj, const char *key, char *dst, size_t cap, aq_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return AQ_OK;
    if (!json_is_string(v))
        return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: %s is not a string", key);
    size_t n = json_string_length(v);
    if (n > cap)
        return aq_err_set(err, AQ_TOO_BIG, "fleet snapshot: %s is %zu bytes, cap %zu", key, n, cap);
    /* A NUL inside would silently cut the name: jansson only lets one through
     * with JSON_ALLOW_NUL, which we do not pass; checked anyway. */
    if (strlen(json_string_value(v)) != n)
        return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: %s contains NUL", key);
    memcpy(dst, json_string_value(v), n + 1);
    return AQ_OK;
}

/* A missing sub-object reads as an empty one. */
static aq_status get_obj(json_t *obj, const char *key, json_t **dst, aq_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (v && !json_is_object(v))
        return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: %s is not an object", key);
    *dst = v;
    return AQ_OK;
}

/* Shorthand inside decode: every step may fail the same way. */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        if ((st = (expr)) != AQ_OK)                                                                \
            goto out;                                                                              \
    } while (0)

static aq_status decode_budgets(json_t *arr, aq_fleet_snapshot *s, aq_err *err)
{
    if (!arr)
        return AQ_OK;
    if (!json_is_array(arr))
        return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: cost.budgets is not an array");
    if (json_array_size(arr) > AQ_FLEET_BUDGETS_MAX)
        return aq_err_set(err, AQ_TOO_BIG, "fleet snapshot: %zu budgets, cap %d",
                          json_array_size(arr), AQ_FLEET_BUDGETS_MAX);
    aq_status st = AQ_OK;
    size_t i;
    json_t *b;
    json_array_foreach(arr, i, b) {
        if (!json_is_object(b))
            return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: budget %zu is not an object",
                              i);
        aq_fleet_budget *d = &s->budgets[i];
        TRY(get_str(b, "tenant", d->tenant, AQ_FLEET_TENANT_MAX, err));
        TRY(get_int(b, "remaining_micro_usd", &d->remaining_micro_usd, INT64_MIN, err));
        if (d->tenant[0] == '\0')
            return aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: budget %zu has no tenant", i);
    }
    s->n_budgets = json_array_size(arr);
out:
    return st;
}

aq_status aq_fleet_snapshot_decode(const char *json, size_t len, aq_fleet_snapshot *out,
                                   aq_err *err)
{
    aq_status st = AQ_OK;
    json_t *root = NULL, *c, *w, *q, *cost;
    json_error_t jerr;
    aq_fleet_snapshot s; /* decoded here, copied to *out only on success */
    aq_fleet_snapshot_init(&s);
    s.v = 0;
    if (len > AQ_FLEET_SNAPSHOT_JSON_MAX) {
        st = aq_err_set(err, AQ_TOO_BIG, "fleet snapshot: %zu bytes, cap %d", len,
                        AQ_FLEET_SNAPSHOT_JSON_MAX);
        goto out;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        st = aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: not JSON: %s", jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: not a JSON object");
        goto out;
    }
    int64_t v = 0;
    TRY(get_int(root, "v", &v, 0, err));
    if (v != AQ_FLEET_SNAPSHOT_VERSION) {
        st = v == 0 ? aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: no version (v)")
                    : aq_err_set(err, AQ_INVALID_ARG,
                                 "fleet snapshot: version %lld, this reader knows %d", (long long)v,
                                 AQ_FLEET_SNAPSHOT_VERSION);
        goto out;
    }
    s.v = (int)v;
    TRY(get_str(root, "worker", s.worker, AQ_FLEET_WORKER_MAX, err));
    if (s.worker[0] == '\0') {
        st = aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: no worker name");
        goto out;
    }
    TRY(get_str(root, "version", s.version, AQ_FLEET_VERSION_MAX, err));
    TRY(get_int(root, "pid", &s.pid, 0, err));
    TRY(get_int(root, "started_ms", &s.started_ms, 0, err));
    TRY(get_int(root, "sent_ms", &s.sent_ms, 0, err));
    if (s.sent_ms <= 0) {
        st = aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: no sent_ms");
        goto out;
    }
    TRY(get_int(root, "interval_ms", &s.interval_ms, 0, err));
    json_t *stopping = json_object_get(root, "stopping");
    if (stopping && !json_is_boolean(stopping)) {
        st = aq_err_set(err, AQ_INVALID_ARG, "fleet snapshot: stopping is not a boolean");
        goto out;
    }
    s.stopping = json_is_true(stopping);
    TRY(get_int(root, "concurrency", &s.concurrency, 0, err));
    TRY(get_int(root, "owned", &s.owned, 0, err));
    TRY(get_int(root, "llm_in_flight", &s.llm_in_flight, 0, err));

    TRY(get_obj(root, "counters", &c, err));
#define DEC_COUNTER(f) TRY(get_int(c, #f, &s.counters.f, 0, err));
    if (c) {
        COUNTERS(DEC_COUNTER)
    }
#undef DEC_COUNTER

    TRY(get_obj(root, "window", &w, err));
    if (w) {
        TRY(get_int(w, "completed", &s.window.completed, 0, err));
        TRY(get_real(w, "completed_per_s", &s.window.completed_per_s, 0, 1e12, err));
        TRY(get_int(w, "p50_ms", &s.window.p50_ms, -1, err));
        TRY(get_int(w, "p99_ms", &s.window.p99_ms, -1, err));
        TRY(get_int(w, "llm_calls", &s.window.llm_calls, 0, err));
        TRY(get_int(w, "responses_429", &s.window.responses_429, 0, err));
        TRY(get_real(w, "share_429", &s.window.share_429, 0, 1, err));
    }

    TRY(get_obj(root, "queue", &q, err));
    if (q) {
        TRY(get_int(q, "probed_ms", &s.queue.probed_ms, 0, err));
        TRY(get_int(q, "pending", &s.queue.pending, -1, err));
        TRY(get_int(q, "ack_pending", &s.queue.ack_pending, -1, err));
        TRY(get_int(q, "dlq_messages", &s.queue.dlq_messages, -1, err));
        TRY(get_int(q, "pending_60s_ago", &s.queue.pending_60s_ago, -1, err));
    }

    TRY(get_obj(root, "cost", &cost, err));
    if (cost) {
        TRY(get_str(cost, "day", s.cost_day, sizeof(s.cost_day) - 1, err));
        TRY(get_int(cost, "today_micro_usd", &s.cost_today_micro_usd, 0, err));
        TRY(decode_budgets(json_object_get(cost, "budgets"), &s, err));
    }
    *out = s;
out:
    json_decref(root);
    return st;
}

/* ---- subjects ---- */

static bool token_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

aq_status aq_fleet_subject_token(const char *worker, char *out, size_t n, aq_err *err)
{
    if (!worker || !*worker)
        return aq_err_set(err, AQ_INVALID_ARG, "empty worker name");
    if (n == 0)
        return aq_err_set(err, AQ_INVALID_ARG, "no room for the subject token");
    size_t i = 0;
    for (; worker[i] && i < AQ_FLEET_WORKER_MAX && i + 1 < n; i++)
        out[i] = token_char((unsigned char)worker[i]) ? worker[i] : '_';
    out[i] = '\0';
    return AQ_OK;
}

bool aq_fleet_prefix_valid(const char *prefix)
{
    return aq_subject_prefix_valid(prefix, AQ_FLEET_PREFIX_MAX);
}
