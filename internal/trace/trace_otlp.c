/* The OTLP/JSON encoding of an ExportTraceServiceRequest (jansson), as the
 * OTLP specification's JSON mapping has it: the proto3 JSON mapping with
 * lowerCamelCase field names, trace and span ids as lower-case hex (not
 * base64), enums (kind, status code) as integers, 64-bit integers
 * (timestamps, intValue) as decimal strings, default values omitted.
 *
 *   {"resourceSpans":[{"resource":{"attributes":[...]},
 *     "scopeSpans":[{"scope":{"name":"agentq","version":V},"spans":[...]}]}]}
 */
#include "trace_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every jansson constructor may return NULL (out of memory, or a string
 * that is not UTF-8, which the setters have already ruled out); the
 * *_new setters steal their argument and fail on NULL. */

static json_t *int_string(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_string(buf);
}

static json_t *hex_id(const uint8_t *b, size_t n)
{
    char buf[2 * AQ_TRACE_ID_SIZE + 1];
    aq_trace_hex(b, n, buf);
    return json_string(buf);
}

/* AnyValue: {"stringValue": s} | {"intValue": "n"} | {"doubleValue": x}
 * | {"boolValue": b} | {"arrayValue": {"values": [...]}}. Non-finite doubles are the strings proto3 JSON uses. */
static json_t *any_value(const trace_attr *a)
{
    json_t *v = json_object();
    int rc = -1;
    if (!v)
        return NULL;
    switch (a->type) {
    case AQ_ATTR_STRING: rc = json_object_set_new(v, "stringValue", json_string(a->v.s)); break;
    case AQ_ATTR_INT: rc = json_object_set_new(v, "intValue", int_string(a->v.i)); break;
    case AQ_ATTR_BOOL: rc = json_object_set_new(v, "boolValue", json_boolean(a->v.b)); break;
    case AQ_ATTR_STRING_ARRAY: { /* {"arrayValue": {"values": [AnyValue...]}} */
        json_t *arr = json_object(), *values = json_array();
        rc = !arr || !values ? -1 : 0;
        for (uint32_t i = 0; rc == 0 && i < a->v.sa.n; i++)
            rc = json_array_append_new(values, json_pack("{s:s}", "stringValue", a->v.sa.v[i]));
        if (rc == 0 && json_array_size(values) > 0) {
            rc = json_object_set_new(arr, "values", values);
            values = NULL;
        }
        json_decref(values);
        if (rc == 0) {
            rc = json_object_set_new(v, "arrayValue", arr);
            arr = NULL;
        }
        json_decref(arr);
        break;
    }
    case AQ_ATTR_DOUBLE:
        if (isnan(a->v.d))
            rc = json_object_set_new(v, "doubleValue", json_string("NaN"));
        else if (isinf(a->v.d))
            rc = json_object_set_new(v, "doubleValue",
                                     json_string(a->v.d > 0 ? "Infinity" : "-Infinity"));
        else
            rc = json_object_set_new(v, "doubleValue", json_real(a->v.d));
        break;
    }
    if (rc != 0) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static json_t *key_value(const char *key, json_t *value)
{
    json_t *kv = json_object();
    if (!kv || !value || json_object_set_new(kv, "key", json_string(key)) != 0 ||
        json_object_set_new(kv, "value", value) != 0) {
        json_decref(kv);
        if (!kv)
            json_decref(value);
        return NULL;
    }
    return kv;
}

static json_t *attributes(const trace_attr *attrs, uint32_t n)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, key_value(attrs[i].key, any_value(&attrs[i]))) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static int set_string_attr(json_t *arr, const char *key, const char *value)
{
    trace_attr a = {.key = (char *)key, .type = AQ_ATTR_STRING, .v.s = (char *)value};
    return json_array_append_new(arr, key_value(key, any_value(&a)));
}

/* Set `name` to `arr` when it has elements (proto3 JSON omits empty lists). */
static int set_list(json_t *obj, const char *name, json_t *arr)
{
    if (!arr)
        return -1;
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return 0;
    }
    return json_object_set_new(obj, name, arr);
}

static int set_count(json_t *obj, const char *name, uint32_t n)
{
    return n ? json_object_set_new(obj, name, json_integer(n)) : 0;
}

static json_t *event_json(const trace_event *e)
{
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "timeUnixNano", int_string(e->time_ns)) != 0 ||
        json_object_set_new(o, "name", json_string(e->name)) != 0 ||
        set_list(o, "attributes", attributes(e->attrs, e->nattrs)) != 0 ||
        set_count(o, "droppedAttributesCount", e->dropped_attrs) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Span.flags: the W3C trace flags in bits 0-7; bit 8 says whether bit 9
 * (the parent is remote) is known. */
#define SPAN_FLAGS_HAS_IS_REMOTE 0x100
#define SPAN_FLAGS_IS_REMOTE 0x200

static json_t *span_json(const aq_span_rec *r)
{
    json_t *o = json_object(), *events = json_array();
    if (!o || !events)
        goto fail;
    uint32_t flags = (r->ctx.flags & AQ_TRACE_FLAG_SAMPLED) | SPAN_FLAGS_HAS_IS_REMOTE |
                     (r->has_parent && r->parent_remote ? SPAN_FLAGS_IS_REMOTE : 0);
    if (json_object_set_new(o, "traceId", hex_id(r->ctx.trace_id, AQ_TRACE_ID_SIZE)) != 0 ||
        json_object_set_new(o, "spanId", hex_id(r->ctx.span_id, AQ_SPAN_ID_SIZE)) != 0)
        goto fail;
    if (r->tracestate && json_object_set_new(o, "traceState", json_string(r->tracestate)) != 0)
        goto fail;
    if (r->has_parent &&
        json_object_set_new(o, "parentSpanId", hex_id(r->parent_span_id, AQ_SPAN_ID_SIZE)) != 0)
        goto fail;
    if (json_object_set_new(o, "flags", json_integer(flags)) != 0 ||
        json_object_set_new(o, "name", json_string(r->name)) != 0 ||
        json_object_set_new(o, "kind", json_integer(r->kind)) != 0 ||
        json_object_set_new(o, "startTimeUnixNano", int_string(r->start_ns)) != 0 ||
        json_object_set_new(o, "endTimeUnixNano", int_string(r->end_ns)) != 0 ||
        set_list(o, "attributes", attributes(r->attrs, r->nattrs)) != 0 ||
        set_count(o, "droppedAttributesCount", r->dropped_attrs) != 0)
        goto fail;
    for (uint32_t i = 0; i < r->nevents; i++)
        if (json_array_append_new(events, event_json(&r->events[i])) != 0)
            goto fail;
    int rc = set_list(o, "events", events);
    events = NULL;
    if (rc != 0 || set_count(o, "droppedEventsCount", r->dropped_events) != 0)
        goto fail;
    if (r->status != AQ_SPAN_STATUS_UNSET) {
        json_t *st = json_object();
        if (!st || json_object_set_new(o, "status", st) != 0 ||
            (r->status_msg && json_object_set_new(st, "message", json_string(r->status_msg)) != 0) ||
            json_object_set_new(st, "code", json_integer(r->status)) != 0)
            goto fail;
    }
    return o;
fail:
    json_decref(events);
    json_decref(o);
    return NULL;
}

aq_status aq_trace_otlp_encode(const char *instance_id, const char *version,
                               aq_span_rec *const *spans, size_t n, char **json, size_t *len,
                               aq_err *err)
{
    aq_status st = AQ_NOMEM;
    json_t *root = NULL, *spans_arr = NULL, *res_attrs = NULL;
    char *text = NULL;

    if (!(res_attrs = json_array()) ||
        set_string_attr(res_attrs, "service.name", AQ_TRACE_SERVICE_NAME) != 0 ||
        (instance_id && set_string_attr(res_attrs, "service.instance.id", instance_id) != 0) ||
        (version && set_string_attr(res_attrs, "service.version", version) != 0))
        goto out;
    if (!(spans_arr = json_array()))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(spans_arr, span_json(spans[i])) != 0)
            goto out;
    json_t *scope = version ? json_pack("{s:s, s:s}", "name", AQ_TRACE_SCOPE_NAME, "version", version)
                            : json_pack("{s:s}", "name", AQ_TRACE_SCOPE_NAME);
    root = json_pack("{s:[{s:{s:o}, s:[{s:o, s:o}]}]}", "resourceSpans", "resource", "attributes",
                     res_attrs, "scopeSpans", "scope", scope, "spans", spans_arr);
    res_attrs = spans_arr = NULL; /* json_pack's "o" took them, even on failure */
    if (!root || !(text = json_dumps(root, JSON_COMPACT)))
        goto out;
    *len = strlen(text);
    *json = text;
    st = AQ_OK;
out:
    json_decref(root);
    json_decref(res_attrs);
    json_decref(spans_arr);
    if (st != AQ_OK)
        aq_err_set(err, st, "out of memory encoding %zu spans", n);
    return st;
}
