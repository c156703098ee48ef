/* internal/trace: sampling decisions, attribute and event bounds, the queue
 * bound, the configuration rows, and the OTLP/JSON encoding of spans
 * compared field by field with what the OTLP JSON mapping says. The export
 * over HTTP is tests/integration/trace_export.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "trace/trace.h"
#include "trace/trace_int.h"

typedef struct cfg_holder {
    aq_trace_config trace;
} cfg_holder;

static const aq_option opts[] = {
    AQ_TRACE_OPTIONS(cfg_holder, trace),
    AQ_OPTIONS_END,
};

/* The defaults, with an endpoint and the given ratio. */
static void config(cfg_holder *h, double ratio, int64_t queue)
{
    aq_err err;
    memset(h, 0, sizeof(*h));
    assert_int_equal(aq_config_load(opts, h, 0, NULL, NULL, &err), AQ_OK);
    assert_int_equal(aq_config_set(opts, h, "trace_endpoint", "http://127.0.0.1:1/", "test", &err),
                     AQ_OK);
    h->trace.sample_ratio = ratio;
    h->trace.queue_size = queue;
    if (h->trace.batch_size > queue)
        h->trace.batch_size = queue;
}

/* A tracer without its exporter thread: ended spans stay queued. */
static aq_tracer *tracer(double ratio, int64_t queue)
{
    cfg_holder h;
    aq_tracer *t = NULL;
    aq_err err;
    config(&h, ratio, queue);
    aq_trace_resource res = {"worker-1", "0.1.0"};
    assert_int_equal(aq_tracer_new_ex(&h.trace, &res, NULL, false, &t, &err), AQ_OK);
    assert_non_null(t);
    aq_config_free(opts, &h);
    return t;
}

static void drain(aq_tracer *t)
{
    aq_span_rec *r[64];
    size_t n;
    while ((n = aq_tracer_take(t, r, 64)) > 0)
        for (size_t i = 0; i < n; i++)
            aq_span_rec_free(r[i]);
}

static aq_trace_context remote_parent(bool sampled)
{
    aq_trace_context c;
    const char *tp = sampled ? "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                             : "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    assert_int_equal(aq_traceparent_parse(tp, strlen(tp), &c), AQ_OK);
    return c;
}

static void test_tracing_off(void **state)
{
    (void)state;
    cfg_holder h;
    aq_tracer *t = (aq_tracer *)1;
    aq_err err;
    memset(&h, 0, sizeof(h));
    assert_int_equal(aq_config_load(opts, &h, 0, NULL, NULL, &err), AQ_OK);
    assert_false(aq_trace_config_enabled(&h.trace)); /* off by default */
    assert_int_equal(aq_tracer_new(&h.trace, NULL, &t, &err), AQ_OK);
    assert_null(t);
    aq_config_free(opts, &h);

    /* a parent passes through unchanged; nothing is recorded */
    aq_trace_context p = remote_parent(true);
    aq_span s;
    aq_span_start(NULL, &s, "task", AQ_SPAN_CONSUMER, &p, NULL, 0);
    assert_false(aq_span_recording(&s));
    assert_memory_equal(&s.ctx, &p, sizeof(p));
    aq_span_set_str(&s, "k", "v");
    aq_span_add_event(&s, "e", 0, NULL, 0);
    aq_span_set_status(&s, AQ_SPAN_STATUS_ERROR, "x");
    aq_span_end(&s, 0);
    aq_span_start(NULL, &s, "task", AQ_SPAN_CONSUMER, NULL, NULL, 0);
    assert_false(s.ctx.valid);
    aq_tracer_stats st;
    aq_tracer_stats_get(NULL, &st);
    assert_int_equal(st.spans_exported + st.spans_dropped, 0);
    assert_false(aq_tracer_capture_content(NULL));
    assert_int_equal(aq_tracer_flush(NULL, 10), AQ_OK);
    assert_int_equal(aq_tracer_shutdown(NULL, 10), AQ_OK);
    aq_tracer_destroy(NULL);
}

static void test_sampling(void **state)
{
    (void)state;
    aq_tracer *t = tracer(1.0, 100000);
    aq_trace_context sampled = remote_parent(true), unsampled = remote_parent(false);
    aq_span s, child;

    /* a new trace at ratio 1: recorded, a root */
    aq_span_start(t, &s, "task", AQ_SPAN_CONSUMER, NULL, NULL, 0);
    assert_true(aq_span_recording(&s));
    assert_true(aq_trace_context_sampled(&s.ctx));
    assert_false(s.ctx.remote);
    assert_false(s.rec->has_parent);
    /* its child: same trace, its own span id, parent = s */
    aq_span_start(t, &child, "chat m", AQ_SPAN_CLIENT, &s.ctx, NULL, 0);
    assert_true(aq_span_recording(&child));
    assert_memory_equal(child.ctx.trace_id, s.ctx.trace_id, AQ_TRACE_ID_SIZE);
    assert_memory_not_equal(child.ctx.span_id, s.ctx.span_id, AQ_SPAN_ID_SIZE);
    assert_memory_equal(child.rec->parent_span_id, s.ctx.span_id, AQ_SPAN_ID_SIZE);
    assert_false(child.rec->parent_remote);
    aq_span_end(&child, 0);
    aq_span_end(&s, 0);
    assert_null(s.rec);
    aq_span_end(&s, 0); /* twice: harmless */

    /* a sampled publisher: recorded under its trace id */
    aq_span_start(t, &s, "task", AQ_SPAN_CONSUMER, &sampled, NULL, 0);
    assert_true(aq_span_recording(&s));
    assert_memory_equal(s.ctx.trace_id, sampled.trace_id, AQ_TRACE_ID_SIZE);
    assert_true(s.rec->parent_remote);
    aq_span_end(&s, 0);

    /* an unsampled publisher: not recorded even at ratio 1, and its
     * children neither; the context still goes on (not sampled) */
    aq_span_start(t, &s, "task", AQ_SPAN_CONSUMER, &unsampled, NULL, 0);
    assert_false(aq_span_recording(&s));
    assert_true(s.ctx.valid);
    assert_false(aq_trace_context_sampled(&s.ctx));
    assert_memory_equal(s.ctx.trace_id, unsampled.trace_id, AQ_TRACE_ID_SIZE);
    assert_memory_not_equal(s.ctx.span_id, unsampled.span_id, AQ_SPAN_ID_SIZE);
    aq_span_start(t, &child, "chat m", AQ_SPAN_CLIENT, &s.ctx, NULL, 0);
    assert_false(aq_span_recording(&child));
    assert_true(child.ctx.valid);
    aq_span_end(&child, 0);
    aq_span_end(&s, 0);

    /* Not recorded costs no allocation (the heap in use does not move;
     * under ASan, whose allocator mallinfo2 does not see, this proves
     * nothing but holds). */
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 1000; i++) {
        aq_span_start(t, &s, "task", AQ_SPAN_CONSUMER, &unsampled, NULL, 0);
        aq_span_start(t, &child, "chat m", AQ_SPAN_CLIENT, &s.ctx, NULL, 0);
        aq_span_set_str(&child, AQ_ATTR_GEN_AI_REQUEST_MODEL, "claude-haiku-4-5");
        aq_span_set_int(&child, AQ_ATTR_GEN_AI_USAGE_INPUT_TOKENS, 10);
        aq_trace_attr a[] = {AQ_TATTR_INT(AQ_ATTR_HTTP_RESPONSE_STATUS_CODE, 429)};
        aq_span_add_event(&child, AQ_EVENT_DEFERRAL, 0, a, 1);
        aq_span_set_status(&child, AQ_SPAN_STATUS_ERROR, "x");
        aq_span_end(&child, 0);
        aq_span_end(&s, 0);
    }
    assert_int_equal(mallinfo2().uordblks, before);

    aq_tracer_stats st;
    aq_tracer_stats_get(t, &st);
    assert_int_equal(st.queued, 3);
    drain(t);
    aq_tracer_destroy(t);

    /* ratio 0: no new trace is recorded, a sampled parent still is */
    t = tracer(0.0, 100000);
    aq_span_start(t, &s, "task", AQ_SPAN_CONSUMER, NULL, NULL, 0);
    assert_false(aq_span_recording(&s));
    assert_true(s.ctx.valid);
    assert_false(aq_trace_context_sampled(&s.ctx));
    aq_span_start(t, &s, "task", AQ_SPAN_CONSUMER, &sampled, NULL, 0);
    assert_true(aq_span_recording(&s));
    aq_span_end(&s, 0);
    drain(t);
    aq_tracer_destroy(t);

    /* ratio 0.25: about a quarter of new traces */
    t = tracer(0.25, 100000);
    int recorded = 0;
    for (int i = 0; i < 8000; i++) {
        aq_span_start(t, &s, "task", AQ_SPAN_CONSUMER, NULL, NULL, 0);
        if (aq_span_recording(&s))
            recorded++;
        assert_int_equal(aq_span_recording(&s), aq_trace_context_sampled(&s.ctx));
        aq_span_end(&s, 0);
    }
    drain(t);
    aq_tracer_destroy(t);
    if (recorded < 1700 || recorded > 2300)
        fail_msg("ratio 0.25 recorded %d of 8000", recorded);
}

/* The attribute `key` of a recorded span (the test fails without it). */
static const trace_attr *find_attr(const aq_span_rec *r, const char *key)
{
    if (!r)
        abort();
    for (uint32_t i = 0; i < r->nattrs; i++)
        if (strcmp(r->attrs[i].key, key) == 0)
            return &r->attrs[i];
    fail_msg("no attribute %s", key);
    abort();
}

static void test_bounds(void **state)
{
    (void)state;
    aq_tracer *t = tracer(1.0, 16);
    aq_span s;
    char name[600];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    aq_span_start(t, &s, name, AQ_SPAN_INTERNAL, NULL, NULL, 0);
    assert_true(aq_span_recording(&s));
    assert_int_equal(strlen(s.rec->name), AQ_SPAN_NAME_MAX);

    /* attributes: at most AQ_SPAN_MAX_ATTRS, then counted */
    for (int i = 0; i < AQ_SPAN_MAX_ATTRS + 6; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        aq_span_set_int(&s, key, i);
    }
    assert_int_equal(s.rec->nattrs, AQ_SPAN_MAX_ATTRS);
    assert_int_equal(s.rec->dropped_attrs, 6);
    /* setting a key again replaces it, even when full */
    aq_span_set_str(&s, "k3", "three");
    const trace_attr *a = find_attr(s.rec, "k3");
    assert_int_equal(a->type, AQ_ATTR_STRING);
    assert_string_equal(a->v.s, "three");
    assert_int_equal(s.rec->nattrs, AQ_SPAN_MAX_ATTRS);
    aq_span_end(&s, 0);

    /* values cut at AQ_SPAN_ATTR_VALUE_MAX on a character boundary, keys at
     * AQ_SPAN_ATTR_KEY_MAX, invalid UTF-8 replaced */
    aq_span_start(t, &s, "v", AQ_SPAN_INTERNAL, NULL, NULL, 0);
    size_t big = AQ_SPAN_ATTR_VALUE_MAX * 2;
    char *v = malloc(big + 1);
    assert_non_null(v);
    for (size_t i = 0; i + 1 < big; i += 2)
        memcpy(v + i, "\xc3\xa9", 2); /* é: a cut in the middle would be invalid */
    v[big] = '\0';
    aq_span_set_str(&s, "long", v + 1); /* starts with a lone continuation byte */
    a = find_attr(s.rec, "long");
    assert_true(strlen(a->v.s) <= AQ_SPAN_ATTR_VALUE_MAX);
    assert_true(strlen(a->v.s) >= AQ_SPAN_ATTR_VALUE_MAX - 3);
    assert_memory_equal(a->v.s, "\xef\xbf\xbd", 3); /* U+FFFD */
    char key[300];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    aq_span_set_bool(&s, key, true);
    aq_span_set_bool(&s, key, false); /* the same (cut) key: replaced */
    assert_int_equal(s.rec->nattrs, 2);
    assert_int_equal(strlen(s.rec->attrs[1].key), AQ_SPAN_ATTR_KEY_MAX);
    assert_false(s.rec->attrs[1].v.b);
    aq_span_set_str(&s, "null", NULL); /* ignored */
    aq_span_set_str(&s, "", "empty key"); /* ignored */
    assert_int_equal(s.rec->nattrs, 2);
    free(v);

    /* events: at most AQ_SPAN_MAX_EVENTS of AQ_SPAN_EVENT_MAX_ATTRS attributes */
    aq_trace_attr ea[AQ_SPAN_EVENT_MAX_ATTRS + 4];
    for (size_t i = 0; i < sizeof(ea) / sizeof(ea[0]); i++)
        ea[i] = AQ_TATTR_INT("n", (int64_t)i);
    for (int i = 0; i < AQ_SPAN_MAX_EVENTS + 3; i++)
        aq_span_add_event(&s, AQ_EVENT_RETRY, 0, ea, sizeof(ea) / sizeof(ea[0]));
    assert_int_equal(s.rec->nevents, AQ_SPAN_MAX_EVENTS);
    assert_int_equal(s.rec->dropped_events, 3);
    assert_int_equal(s.rec->events[0].nattrs, AQ_SPAN_EVENT_MAX_ATTRS);
    assert_int_equal(s.rec->events[0].dropped_attrs, 4);

    /* status: the message only with ERROR, cut at AQ_SPAN_STATUS_MAX */
    aq_span_set_status(&s, AQ_SPAN_STATUS_OK, "ignored");
    assert_null(s.rec->status_msg);
    char msg[2000];
    memset(msg, 'm', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    aq_span_set_status(&s, AQ_SPAN_STATUS_ERROR, msg);
    assert_int_equal(strlen(s.rec->status_msg), AQ_SPAN_STATUS_MAX);
    aq_span_end(&s, 0);
    drain(t);
    aq_tracer_destroy(t);
}

static void test_queue_bound(void **state)
{
    (void)state;
    aq_tracer *t = tracer(1.0, 5);
    aq_span s;
    for (int i = 0; i < 8; i++) {
        aq_span_start(t, &s, "s", AQ_SPAN_INTERNAL, NULL, NULL, 0);
        aq_span_end(&s, 0);
    }
    aq_tracer_stats st;
    aq_tracer_stats_get(t, &st);
    assert_int_equal(st.queued, 5);
    assert_int_equal(st.spans_dropped, 3);
    assert_int_equal(st.spans_queue_full, 3);
    assert_int_equal(st.spans_exported, 0);
    /* no exporter: flushing cannot finish */
    assert_int_equal(aq_tracer_flush(t, 10), AQ_TIMEOUT);
    /* shutdown drops what is left, and everything ended later */
    assert_int_equal(aq_tracer_shutdown(t, 10), AQ_TIMEOUT);
    aq_span_start(t, &s, "late", AQ_SPAN_INTERNAL, NULL, NULL, 0);
    aq_span_end(&s, 0);
    aq_tracer_stats_get(t, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.spans_dropped, 9);
    assert_int_equal(aq_tracer_shutdown(t, 10), AQ_OK); /* idempotent */
    aq_tracer_destroy(t);
}

static json_t *str_attr(const char *k, const char *v)
{
    return json_pack("{s:s, s:{s:s}}", "key", k, "value", "stringValue", v);
}

static void test_otlp_json(void **state)
{
    (void)state;
    aq_tracer *t = tracer(1.0, 16);
    aq_trace_context parent = remote_parent(true);
    aq_tracestate ts;
    assert_int_equal(aq_tracestate_parse("congo=t61,rojo=00f0", 19, &ts), AQ_OK);
    aq_span task, chat;
    aq_span_start(t, &task, "process agentq.tasks.chat", AQ_SPAN_CONSUMER, &parent, &ts,
                  1700000000123456789LL);
    aq_span_set_str(&task, AQ_ATTR_MESSAGING_SYSTEM, "nats");
    aq_span_set_int(&task, AQ_ATTR_DELIVERY_COUNT, 2);
    aq_span_set_double(&task, AQ_ATTR_COST_USD, 0.5);
    aq_span_set_bool(&task, AQ_ATTR_CACHE_HIT, false);
    aq_span_set_int(&task, "big", INT64_MIN);
    aq_span_set_double(&task, "nan", NAN);
    aq_span_set_status(&task, AQ_SPAN_STATUS_ERROR, "provider rate limit");
    aq_span_start(t, &chat, "chat claude-haiku-4-5", AQ_SPAN_CLIENT, &task.ctx, NULL,
                  1700000000200000000LL);
    aq_trace_attr ev[] = {AQ_TATTR_INT(AQ_ATTR_HTTP_RESPONSE_STATUS_CODE, 429),
                          AQ_TATTR_INT(AQ_ATTR_RETRY_AFTER_MS, 2000)};
    aq_span_add_event(&chat, AQ_EVENT_DEFERRAL, 1700000000300000000LL, ev, 2);
    aq_span_add_event(&chat, "bare", 1700000000400000000LL, NULL, 0);
    aq_span_set_status(&chat, AQ_SPAN_STATUS_OK, NULL);
    for (int i = 0; i < AQ_SPAN_MAX_ATTRS + 2; i++) {
        char key[16];
        snprintf(key, sizeof(key), "a%d", i);
        aq_span_set_str(&chat, key, "x");
    }
    for (int i = 0; i < AQ_SPAN_MAX_EVENTS; i++)
        aq_span_add_event(&chat, "more", 1700000000500000000LL, NULL, 0);
    aq_span_end(&chat, 1700000000900000000LL);
    aq_span_end(&task, 1700000001000000000LL);

    aq_span_rec *recs[2];
    assert_int_equal(aq_tracer_take(t, recs, 2), 2);
    char *text = NULL;
    size_t len = 0;
    aq_err err;
    assert_int_equal(aq_tracer_encode(t, recs, 2, &text, &len, &err), AQ_OK);
    assert_int_equal(strlen(text), len);
    json_error_t jerr;
    json_t *got = json_loads(text, 0, &jerr);
    assert_non_null(got);

    char tid[33], task_sid[17], chat_sid[17];
    aq_trace_hex(task.ctx.trace_id, AQ_TRACE_ID_SIZE, tid);
    aq_trace_hex(task.ctx.span_id, AQ_SPAN_ID_SIZE, task_sid);
    aq_trace_hex(chat.ctx.span_id, AQ_SPAN_ID_SIZE, chat_sid);
    assert_string_equal(tid, "4bf92f3577b34da6a3ce929d0e0e4736");

    json_t *chat_attrs = json_array();
    for (int i = 0; i < AQ_SPAN_MAX_ATTRS; i++) {
        char key[16];
        snprintf(key, sizeof(key), "a%d", i);
        json_array_append_new(chat_attrs, str_attr(key, "x"));
    }
    json_t *chat_events = json_pack(
        "[{s:s, s:s, s:[{s:s, s:{s:s}}, {s:s, s:{s:s}}]}, {s:s, s:s}]", "timeUnixNano",
        "1700000000300000000", "name", AQ_EVENT_DEFERRAL, "attributes", "key",
        AQ_ATTR_HTTP_RESPONSE_STATUS_CODE, "value", "intValue", "429", "key",
        AQ_ATTR_RETRY_AFTER_MS, "value", "intValue", "2000", "timeUnixNano",
        "1700000000400000000", "name", "bare");
    for (int i = 0; i < AQ_SPAN_MAX_EVENTS - 2; i++)
        json_array_append_new(chat_events, json_pack("{s:s, s:s}", "timeUnixNano",
                                                     "1700000000500000000", "name", "more"));
    /* Exactly the OTLP JSON mapping: hex ids, int64 as strings, enums as
     * integers, lowerCamelCase, empty and zero fields left out. flags: the
     * sampled bit, 0x100 (is-remote known) and 0x200 (the parent is remote). */
    json_t *want = json_pack(
        "{s:[{s:{s:[o, o, o]}, s:[{s:{s:s, s:s}, s:[o, o]}]}]}", "resourceSpans", "resource",
        "attributes", str_attr("service.name", "agentq-worker"),
        str_attr("service.instance.id", "worker-1"), str_attr("service.version", "0.1.0"),
        "scopeSpans", "scope", "name", "agentq", "version", "0.1.0", "spans",
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:o, s:o, s:i}",
                  "traceId", tid, "spanId", chat_sid, "parentSpanId", task_sid, "name",
                  "chat claude-haiku-4-5", "kind", 3, "startTimeUnixNano", "1700000000200000000",
                  "flags", 0x101, "endTimeUnixNano", "1700000000900000000", "traceState",
                  "congo=t61,rojo=00f0", "attributes", chat_attrs, "events", chat_events,
                  "droppedAttributesCount", 2),
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:i, s:s, s:[o, o, o, o, o, o], s:{s:i, s:s}}",
                  "traceId", tid, "spanId", task_sid, "parentSpanId", "00f067aa0ba902b7",
                  "traceState", "congo=t61,rojo=00f0", "kind", 5, "name",
                  "process agentq.tasks.chat", "startTimeUnixNano", "1700000000123456789",
                  "flags", 0x301, "endTimeUnixNano", "1700000001000000000", "attributes",
                  str_attr("messaging.system", "nats"),
                  json_pack("{s:s, s:{s:s}}", "key", "agentq.delivery_count", "value",
                            "intValue", "2"),
                  json_pack("{s:s, s:{s:f}}", "key", "agentq.cost_usd", "value", "doubleValue",
                            0.5),
                  json_pack("{s:s, s:{s:b}}", "key", "agentq.cache.hit", "value", "boolValue", 0),
                  json_pack("{s:s, s:{s:s}}", "key", "big", "value", "intValue",
                            "-9223372036854775808"),
                  json_pack("{s:s, s:{s:s}}", "key", "nan", "value", "doubleValue", "NaN"),
                  "status", "code", 2, "message", "provider rate limit"));
    assert_non_null(want);
    /* the chat span ended first, so it comes first; it also had 2 events
     * dropped over the bound and its own tracestate (inherited: none given,
     * so the task's is not copied) */
    json_t *chat_got = json_array_get(
        json_object_get(json_array_get(json_object_get(json_array_get(json_object_get(got,
                        "resourceSpans"), 0), "scopeSpans"), 0), "spans"), 0);
    assert_non_null(chat_got);
    json_t *want_chat = json_array_get(
        json_object_get(json_array_get(json_object_get(json_array_get(json_object_get(want,
                        "resourceSpans"), 0), "scopeSpans"), 0), "spans"), 0);
    json_object_del(want_chat, "traceState");
    json_object_set_new(want_chat, "droppedEventsCount", json_integer(2));
    json_object_set_new(want_chat, "status", json_pack("{s:i}", "code", 1));
    if (!json_equal(got, want)) {
        char *a = json_dumps(got, JSON_INDENT(1) | JSON_SORT_KEYS);
        char *b = json_dumps(want, JSON_INDENT(1) | JSON_SORT_KEYS);
        fail_msg("OTLP JSON differs:\n--- got\n%s\n--- want\n%s", a, b);
    }
    json_decref(got);
    json_decref(want);
    free(text);
    aq_span_rec_free(recs[0]);
    aq_span_rec_free(recs[1]);

    /* a root span has no parentSpanId, and is not remote */
    aq_span_start(t, &task, "root", AQ_SPAN_INTERNAL, NULL, NULL, 5);
    const char *reasons[AQ_SPAN_ATTR_ARRAY_MAX + 2];
    for (size_t i = 0; i < AQ_SPAN_ATTR_ARRAY_MAX + 2; i++)
        reasons[i] = i % 2 ? "max_tokens" : "end_turn";
    aq_span_set_str_array(&task, AQ_ATTR_GEN_AI_RESPONSE_FINISH_REASONS, reasons, 2);
    aq_span_set_str_array(&task, "empty", NULL, 0);
    aq_span_set_str_array(&task, "capped", reasons, AQ_SPAN_ATTR_ARRAY_MAX + 2);
    aq_span_end(&task, 7);
    assert_int_equal(aq_tracer_take(t, recs, 2), 1);
    assert_int_equal(aq_tracer_encode(t, recs, 1, &text, &len, &err), AQ_OK);
    got = json_loads(text, 0, &jerr);
    json_t *span = json_array_get(
        json_object_get(json_array_get(json_object_get(json_array_get(json_object_get(got,
                        "resourceSpans"), 0), "scopeSpans"), 0), "spans"), 0);
    assert_null(json_object_get(span, "parentSpanId"));
    json_t *arrays = json_pack(
        "[{s:s, s:{s:{s:[{s:s}, {s:s}]}}}, {s:s, s:{s:{}}}]", "key",
        "gen_ai.response.finish_reasons", "value", "arrayValue", "values", "stringValue",
        "end_turn", "stringValue", "max_tokens", "key", "empty", "value", "arrayValue");
    json_t *got_attrs = json_object_get(span, "attributes");
    assert_int_equal(json_array_size(got_attrs), 3);
    assert_true(json_equal(json_array_get(got_attrs, 0), json_array_get(arrays, 0)));
    assert_true(json_equal(json_array_get(got_attrs, 1), json_array_get(arrays, 1)));
    assert_int_equal(json_array_size(json_object_get(json_object_get(json_object_get(
                         json_array_get(got_attrs, 2), "value"), "arrayValue"), "values")),
                     AQ_SPAN_ATTR_ARRAY_MAX);
    json_decref(arrays);
    assert_null(json_object_get(span, "status"));
    assert_int_equal(json_integer_value(json_object_get(span, "flags")), 0x101);
    assert_string_equal(json_string_value(json_object_get(span, "startTimeUnixNano")), "5");
    assert_int_equal(json_integer_value(json_object_get(span, "kind")), 1);
    json_decref(got);
    free(text);
    aq_span_rec_free(recs[0]);
    aq_tracer_destroy(t);
}

static void test_config(void **state)
{
    (void)state;
    cfg_holder h;
    aq_err err;
    memset(&h, 0, sizeof(h));
    assert_int_equal(aq_config_load(opts, &h, 0, NULL, NULL, &err), AQ_OK);
    assert_string_equal(h.trace.endpoint, "");
    assert_true(h.trace.sample_ratio == 1.0);
    assert_int_equal(h.trace.queue_size, 2048);
    assert_int_equal(h.trace.batch_size, 512);
    assert_int_equal(h.trace.batch_delay_ms, 5000);
    assert_false(h.trace.capture_content);
    assert_int_equal(aq_trace_config_validate(&h.trace, &err), AQ_OK); /* off */

    /* bounds of the table */
    assert_int_equal(aq_config_set(opts, &h, "trace_sample_ratio", "1.5", "t", &err), AQ_CONFIG);
    assert_int_equal(aq_config_set(opts, &h, "trace_queue_size", "0", "t", &err), AQ_CONFIG);

    static const struct {
        const char *endpoint, *headers, *want;
    } bad[] = {
        {"ftp://collector", "", "must start with http"},
        {"http://user:pw@collector:4318", "", "credentials"},
        {"http://", "", "no host"},
        {"http://c:4318/?x=1", "", "base URL"},
        {"http://c:4318", "novalue", "entry 1 is not key=value"},
        {"http://c:4318", "a=1,=2", "entry 2 is not key=value"},
        {"http://c:4318", "bad name=secret-value", "not a token"},
        {"http://c:4318", "x-key=abc%0d%0aInjected: secret-value", "line break"},
        {"http://c:4318", "x-key=abc%00secret-value", "line break or NUL"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(aq_config_set(opts, &h, "trace_endpoint", bad[i].endpoint, "t", &err), AQ_OK);
        assert_int_equal(aq_config_set(opts, &h, "trace_headers", bad[i].headers, "t", &err), AQ_OK);
        assert_int_equal(aq_trace_config_validate(&h.trace, &err), AQ_CONFIG);
        if (!strstr(err.msg, bad[i].want))
            fail_msg("case %zu: '%s' does not say '%s'", i, err.msg, bad[i].want);
        assert_null(strstr(err.msg, "secret-value")); /* never the value */
        aq_tracer *t = (aq_tracer *)1;
        assert_int_equal(aq_tracer_new(&h.trace, NULL, &t, &err), AQ_CONFIG);
    }
    char many[2048] = "";
    for (int i = 0; i <= AQ_TRACE_MAX_HEADERS; i++) {
        char one[32];
        snprintf(one, sizeof(one), "%sh%d=v", i ? "," : "", i);
        strcat(many, one);
    }
    assert_int_equal(aq_config_set(opts, &h, "trace_endpoint", "https://c:4318/otlp/", "t", &err), AQ_OK);
    assert_int_equal(aq_config_set(opts, &h, "trace_headers", many, "t", &err), AQ_OK);
    assert_int_equal(aq_trace_config_validate(&h.trace, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "more than"));
    assert_int_equal(aq_config_set(opts, &h, "trace_headers",
                                   " authorization = Bearer%20secret-value , x-b=2,, ", "t", &err),
                     AQ_OK);
    assert_int_equal(aq_trace_config_validate(&h.trace, &err), AQ_OK);
    h.trace.batch_size = h.trace.queue_size + 1;
    assert_int_equal(aq_trace_config_validate(&h.trace, &err), AQ_CONFIG);
    assert_non_null(strstr(err.msg, "trace_batch_size"));
    h.trace.batch_size = 512;

    /* --print-config: the headers are a secret */
    char *out = NULL;
    size_t olen = 0;
    FILE *f = open_memstream(&out, &olen);
    aq_config_print(opts, &h, f);
    fclose(f);
    assert_null(strstr(out, "secret-value"));
    assert_non_null(strstr(out, "trace_headers = <redacted>"));
    assert_non_null(strstr(out, "trace_endpoint = https://c:4318/otlp/"));
    free(out);

    /* a tracer with a thread, started and stopped with nothing to send */
    aq_tracer *t = NULL;
    assert_int_equal(aq_tracer_new(&h.trace, NULL, &t, &err), AQ_OK);
    assert_non_null(t);
    assert_int_equal(aq_tracer_flush(t, 1000), AQ_OK);
    assert_int_equal(aq_tracer_shutdown(t, 1000), AQ_OK);
    aq_tracer_destroy(t);
    aq_config_free(opts, &h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tracing_off),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_otlp_json),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
