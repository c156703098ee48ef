/* Spans: the sampling decision, attributes, events, status, end. */
#include "trace_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/text.h"

int64_t aq_trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A copy of at most `cap` bytes of s[0..len), valid UTF-8 (invalid bytes
 * become U+FFFD), cut at a character boundary. */
static char *copy_text(const char *s, size_t len, size_t cap)
{
    if (!s)
        s = "";
    if (len > cap * 3)
        len = cap * 3; /* sanitising grows at most 3x: enough input for cap bytes */
    char *out = malloc(cap + 1);
    if (!out)
        return NULL;
    aq_utf8_sanitize(s, len, out, cap + 1);
    char *shrunk = realloc(out, strlen(out) + 1);
    return shrunk ? shrunk : out;
}

/* The last 56 bits of the trace id, as the W3C "random" trace id bits. */
static uint64_t trace_id_random_bits(const uint8_t *id)
{
    uint64_t r = 0;
    for (int i = 9; i < AQ_TRACE_ID_SIZE; i++)
        r = r << 8 | id[i];
    return r;
}

void aq_span_start(aq_tracer *t, aq_span *s, const char *name, aq_span_kind kind,
                   const aq_trace_context *parent, const aq_tracestate *ts, int64_t start_ns)
{
    bool has_parent = parent && parent->valid;
    s->rec = NULL;
    if (!t) { /* tracing off: the context passes through */
        if (has_parent)
            s->ctx = *parent;
        else
            memset(&s->ctx, 0, sizeof(s->ctx));
        return;
    }
    aq_trace_context c = {0};
    bool sampled;
    if (has_parent) {
        memcpy(c.trace_id, parent->trace_id, AQ_TRACE_ID_SIZE);
        sampled = (parent->flags & AQ_TRACE_FLAG_SAMPLED) != 0;
    } else {
        if (aq_trace_new_trace_id(c.trace_id) != AQ_OK)
            goto none;
        sampled = trace_id_random_bits(c.trace_id) < aq_tracer_threshold(t);
    }
    if (aq_trace_new_span_id(c.span_id) != AQ_OK)
        goto none;
    c.flags = sampled ? AQ_TRACE_FLAG_SAMPLED : 0;
    c.valid = true;
    s->ctx = c;
    if (!sampled)
        return;

    aq_span_rec *r = calloc(1, sizeof(*r));
    if (!r || !(r->name = copy_text(name, name ? strlen(name) : 0, AQ_SPAN_NAME_MAX)) ||
        (ts && ts->len && !(r->tracestate = strndup(ts->text, ts->len)))) {
        aq_span_rec_free(r);
        aq_tracer_count_dropped(t);
        return;
    }
    r->t = t;
    r->ctx = c;
    if (has_parent) {
        memcpy(r->parent_span_id, parent->span_id, AQ_SPAN_ID_SIZE);
        r->has_parent = true;
        r->parent_remote = parent->remote;
    }
    r->kind = kind;
    r->start_ns = start_ns ? start_ns : aq_trace_now_ns();
    s->rec = r;
    return;
none: /* no random ids: nothing to record or pass on */
    memset(&s->ctx, 0, sizeof(s->ctx));
}

static void attr_clear(trace_attr *a)
{
    free(a->key);
    if (a->type == AQ_ATTR_STRING)
        free(a->v.s);
    if (a->type == AQ_ATTR_STRING_ARRAY) {
        for (uint32_t i = 0; i < a->v.sa.n; i++)
            free(a->v.sa.v[i]);
        free(a->v.sa.v);
    }
    memset(a, 0, sizeof(*a));
}

/* Fill `a` from `in` (copies); false when out of memory. */
static bool attr_fill(trace_attr *a, const aq_trace_attr *in, size_t slen)
{
    memset(a, 0, sizeof(*a));
    if (!(a->key = copy_text(in->key, strlen(in->key), AQ_SPAN_ATTR_KEY_MAX)))
        return false;
    a->type = in->type;
    switch (in->type) {
    case AQ_ATTR_STRING:
        if (!(a->v.s = copy_text(in->v.s, slen, AQ_SPAN_ATTR_VALUE_MAX))) {
            free(a->key);
            a->key = NULL;
            return false;
        }
        break;
    case AQ_ATTR_INT: a->v.i = in->v.i; break;
    case AQ_ATTR_DOUBLE: a->v.d = in->v.d; break;
    case AQ_ATTR_BOOL: a->v.b = in->v.b; break;
    case AQ_ATTR_STRING_ARRAY: {
        size_t n = in->v.sa.n < AQ_SPAN_ATTR_ARRAY_MAX ? in->v.sa.n : AQ_SPAN_ATTR_ARRAY_MAX;
        if (n && !(a->v.sa.v = calloc(n, sizeof(char *))))
            goto nomem;
        for (size_t i = 0; i < n; i++) {
            const char *e = in->v.sa.v[i] ? in->v.sa.v[i] : "";
            if (!(a->v.sa.v[i] = copy_text(e, strlen(e), AQ_SPAN_ATTR_VALUE_MAX)))
                goto nomem;
            a->v.sa.n++;
        }
        break;
    }
    }
    return true;
nomem:
    attr_clear(a);
    return false;
}

static void set_attr(aq_span_rec *r, const aq_trace_attr *in, size_t slen)
{
    if (!in->key || !*in->key || (in->type == AQ_ATTR_STRING && !in->v.s) ||
        (in->type == AQ_ATTR_STRING_ARRAY && in->v.sa.n && !in->v.sa.v))
        return;
    size_t klen = strnlen(in->key, AQ_SPAN_ATTR_KEY_MAX); /* as the stored copy is cut */
    for (uint32_t i = 0; i < r->nattrs; i++) { /* a key set again: replaced */
        if (strlen(r->attrs[i].key) == klen && memcmp(r->attrs[i].key, in->key, klen) == 0) {
            trace_attr a;
            if (attr_fill(&a, in, slen)) {
                attr_clear(&r->attrs[i]);
                r->attrs[i] = a;
            }
            return;
        }
    }
    if (r->nattrs >= AQ_SPAN_MAX_ATTRS) {
        r->dropped_attrs++;
        return;
    }
    if (r->nattrs == r->cap_attrs) {
        uint32_t cap = r->cap_attrs ? r->cap_attrs * 2 : 8;
        if (cap > AQ_SPAN_MAX_ATTRS)
            cap = AQ_SPAN_MAX_ATTRS;
        trace_attr *na = realloc(r->attrs, cap * sizeof(*na));
        if (!na) {
            r->dropped_attrs++;
            return;
        }
        r->attrs = na;
        r->cap_attrs = cap;
    }
    if (!attr_fill(&r->attrs[r->nattrs], in, slen)) {
        r->dropped_attrs++;
        return;
    }
    r->nattrs++;
}

void aq_span_set_strn(aq_span *s, const char *key, const char *value, size_t len)
{
    if (!aq_span_recording(s) || !value)
        return;
    aq_trace_attr a = AQ_TATTR_STR(key, value);
    set_attr(s->rec, &a, len);
}

void aq_span_set_str(aq_span *s, const char *key, const char *value)
{
    if (value)
        aq_span_set_strn(s, key, value, strlen(value));
}

void aq_span_set_int(aq_span *s, const char *key, int64_t value)
{
    if (!aq_span_recording(s))
        return;
    aq_trace_attr a = AQ_TATTR_INT(key, value);
    set_attr(s->rec, &a, 0);
}

void aq_span_set_double(aq_span *s, const char *key, double value)
{
    if (!aq_span_recording(s))
        return;
    aq_trace_attr a = AQ_TATTR_DOUBLE(key, value);
    set_attr(s->rec, &a, 0);
}

void aq_span_set_bool(aq_span *s, const char *key, bool value)
{
    if (!aq_span_recording(s))
        return;
    aq_trace_attr a = AQ_TATTR_BOOL(key, value);
    set_attr(s->rec, &a, 0);
}

void aq_span_set_str_array(aq_span *s, const char *key, const char *const *values, size_t n)
{
    if (!aq_span_recording(s))
        return;
    aq_trace_attr a = AQ_TATTR_STRS(key, values, n);
    set_attr(s->rec, &a, 0);
}

void aq_span_set_attrs(aq_span *s, const aq_trace_attr *attrs, size_t n)
{
    if (!aq_span_recording(s))
        return;
    for (size_t i = 0; i < n; i++)
        set_attr(s->rec, &attrs[i],
                 attrs[i].type == AQ_ATTR_STRING && attrs[i].v.s ? strlen(attrs[i].v.s) : 0);
}

void aq_span_add_event(aq_span *s, const char *name, int64_t ts_ns, const aq_trace_attr *attrs,
                       size_t n)
{
    if (!aq_span_recording(s))
        return;
    aq_span_rec *r = s->rec;
    if (r->nevents >= AQ_SPAN_MAX_EVENTS) {
        r->dropped_events++;
        return;
    }
    if (r->nevents == r->cap_events) {
        uint32_t cap = r->cap_events ? r->cap_events * 2 : 4;
        if (cap > AQ_SPAN_MAX_EVENTS)
            cap = AQ_SPAN_MAX_EVENTS;
        trace_event *ne = realloc(r->events, cap * sizeof(*ne));
        if (!ne) {
            r->dropped_events++;
            return;
        }
        r->events = ne;
        r->cap_events = cap;
    }
    trace_event *e = &r->events[r->nevents];
    memset(e, 0, sizeof(*e));
    e->time_ns = ts_ns ? ts_ns : aq_trace_now_ns();
    size_t keep = n < AQ_SPAN_EVENT_MAX_ATTRS ? n : AQ_SPAN_EVENT_MAX_ATTRS;
    if (!(e->name = copy_text(name, name ? strlen(name) : 0, AQ_SPAN_NAME_MAX)) ||
        (keep && !(e->attrs = calloc(keep, sizeof(*e->attrs))))) {
        free(e->name);
        r->dropped_events++;
        return;
    }
    e->dropped_attrs = (uint32_t)(n - keep);
    for (size_t i = 0; i < keep; i++) {
        const aq_trace_attr *in = &attrs[i];
        if (!in->key || !*in->key || (in->type == AQ_ATTR_STRING && !in->v.s) ||
            (in->type == AQ_ATTR_STRING_ARRAY && in->v.sa.n && !in->v.sa.v) ||
            !attr_fill(&e->attrs[e->nattrs], in, in->type == AQ_ATTR_STRING ? strlen(in->v.s) : 0))
            e->dropped_attrs++;
        else
            e->nattrs++;
    }
    r->nevents++;
}

void aq_span_set_status(aq_span *s, aq_span_status code, const char *message)
{
    if (!aq_span_recording(s))
        return;
    aq_span_rec *r = s->rec;
    free(r->status_msg);
    r->status_msg = NULL;
    r->status = code;
    if (code == AQ_SPAN_STATUS_ERROR && message && *message)
        r->status_msg = copy_text(message, strlen(message), AQ_SPAN_STATUS_MAX);
}

void aq_span_end(aq_span *s, int64_t end_ns)
{
    if (!aq_span_recording(s))
        return;
    aq_span_rec *r = s->rec;
    s->rec = NULL;
    r->end_ns = end_ns ? end_ns : aq_trace_now_ns();
    if (r->end_ns < r->start_ns)
        r->end_ns = r->start_ns;
    aq_tracer_enqueue(r->t, r);
}

void aq_span_rec_free(aq_span_rec *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->nattrs; i++)
        attr_clear(&r->attrs[i]);
    free(r->attrs);
    for (uint32_t i = 0; i < r->nevents; i++) {
        for (uint32_t k = 0; k < r->events[i].nattrs; k++)
            attr_clear(&r->events[i].attrs[k]);
        free(r->events[i].attrs);
        free(r->events[i].name);
    }
    free(r->events);
    free(r->name);
    free(r->tracestate);
    free(r->status_msg);
    free(r);
}
