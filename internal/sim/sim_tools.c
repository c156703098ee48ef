#include "sim_tools.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct gen_ctx {
    size_t nodes; /* values generated so far */
    size_t bytes; /* string bytes generated so far */
} gen_ctx;

static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

bool aq_sim_tool_name_valid(const char *s, size_t len)
{
    if (len < 1 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

/* The schema's type: its "type" (a list: the first that is not "null"), else
 * inferred. */
static const char *schema_type(json_t *schema)
{
    json_t *t = json_object_get(schema, "type");
    if (json_is_string(t))
        return json_string_value(t);
    if (json_is_array(t)) {
        const char *first = NULL;
        for (size_t i = 0; i < json_array_size(t); i++) {
            const char *v = json_string_value(json_array_get(t, i));
            if (!v)
                continue;
            if (strcmp(v, "null") != 0)
                return v;
            if (!first)
                first = v;
        }
        if (first)
            return first;
    }
    if (json_object_get(schema, "properties") || json_object_get(schema, "required"))
        return "object";
    if (json_object_get(schema, "items"))
        return "array";
    return "string";
}

/* A numeric keyword, or false when absent / not a number. */
static bool num_kw(json_t *schema, const char *kw, double *out)
{
    json_t *v = json_object_get(schema, kw);
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return isfinite(*out);
}

/* The bounds of a numeric schema: draft 6+ (exclusiveMinimum a number) and
 * draft 4 (a boolean beside minimum). */
typedef struct bounds {
    bool has_lo, has_hi, lo_excl, hi_excl;
    double lo, hi;
} bounds;

static bounds get_bounds(json_t *schema)
{
    bounds b = {0};
    double v;
    if (num_kw(schema, "minimum", &v)) {
        b.has_lo = true;
        b.lo = v;
        b.lo_excl = json_is_true(json_object_get(schema, "exclusiveMinimum"));
    }
    if (num_kw(schema, "exclusiveMinimum", &v) && (!b.has_lo || v >= b.lo)) {
        b.has_lo = b.lo_excl = true;
        b.lo = v;
    }
    if (num_kw(schema, "maximum", &v)) {
        b.has_hi = true;
        b.hi = v;
        b.hi_excl = json_is_true(json_object_get(schema, "exclusiveMaximum"));
    }
    if (num_kw(schema, "exclusiveMaximum", &v) && (!b.has_hi || v <= b.hi)) {
        b.has_hi = b.hi_excl = true;
        b.hi = v;
    }
    return b;
}

#define INT_LIMIT 9007199254740992.0 /* 2^53: integers a double holds exactly */

static json_t *gen_integer(json_t *schema, uint64_t seed)
{
    bounds b = get_bounds(schema);
    double lo = -INT_LIMIT, hi = INT_LIMIT, m = 0;
    if (b.has_lo)
        lo = b.lo_excl ? floor(b.lo) + 1 : ceil(b.lo);
    if (b.has_hi)
        hi = b.hi_excl ? ceil(b.hi) - 1 : floor(b.hi);
    lo = fmin(fmax(lo, -INT_LIMIT), INT_LIMIT);
    hi = fmin(fmax(hi, -INT_LIMIT), INT_LIMIT);
    double v = (double)(1 + seed % 100);
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi > lo ? hi : lo;
    if (num_kw(schema, "multipleOf", &m) && m >= 1 && m == floor(m)) {
        double up = ceil(v / m) * m;
        double down = floor(v / m) * m;
        if (up <= hi)
            v = up;
        else if (down >= -INT_LIMIT)
            v = down;
    }
    v = fmin(fmax(v, -INT_LIMIT), INT_LIMIT); /* the cast below must be defined */
    return json_integer((json_int_t)v);
}

static json_t *gen_number(json_t *schema, uint64_t seed)
{
    bounds b = get_bounds(schema);
    double v = (double)(1 + seed % 100) + 0.5, m = 0;
    bool below = b.has_lo && (b.lo_excl ? v <= b.lo : v < b.lo);
    bool above = b.has_hi && (b.hi_excl ? v >= b.hi : v > b.hi);
    if (below || above) {
        if (b.has_lo && b.has_hi)
            v = (b.lo + b.hi) / 2;
        else if (b.has_lo)
            v = b.lo + (b.lo_excl ? 0.5 : 0);
        else
            v = b.hi - (b.hi_excl ? 0.5 : 0);
    }
    if (num_kw(schema, "multipleOf", &m) && m > 0) {
        double up = ceil(v / m) * m;
        v = (!b.has_hi || up < b.hi || (!b.hi_excl && up == b.hi)) ? up : floor(v / m) * m;
    }
    if (!isfinite(v)) /* extreme bounds or multipleOf: JSON has no infinity */
        v = b.has_lo ? b.lo : b.has_hi ? b.hi : 1.5;
    return json_real(v);
}

static json_t *gen_string(json_t *schema, uint64_t seed, const char *hint, gen_ctx *g)
{
    static const struct {
        const char *format, *value;
    } formats[] = {
        {"date-time", "2026-01-02T03:04:05Z"}, {"date", "2026-01-02"},       {"time", "03:04:05Z"},
        {"email", "sim@example.com"},         {"uri", "https://example.com/sim"},
        {"url", "https://example.com/sim"},   {"uuid", "00000000-0000-4000-8000-000000000000"},
        {"ipv4", "192.0.2.1"},                {"hostname", "sim.example.com"},
    };
    char buf[AQ_SIM_GEN_MAX_STRING + 1];
    const char *format = json_string_value(json_object_get(schema, "format"));
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; format && i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (strcmp(format, formats[i].format) == 0) {
            n = (size_t)snprintf(buf, sizeof(buf), "%s", formats[i].value);
            break;
        }
    }
    if (n == 0) {
        int w = snprintf(buf, 80, "%.60s-%04x", hint ? hint : "value", (unsigned)(seed & 0xffff));
        n = w > 0 ? (size_t)w : 0;
        if (n >= 80)
            n = 79;
        /* the hint is a property name: keep it ASCII so any cut below is a boundary */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)buf[i] >= 0x80 || (unsigned char)buf[i] < 0x20)
                buf[i] = '_';
    }
    double minl = 0, maxl = 0;
    if (num_kw(schema, "minLength", &minl) && minl > (double)n && g->bytes < AQ_SIM_GEN_MAX_BYTES) {
        size_t want = minl > AQ_SIM_GEN_MAX_STRING ? AQ_SIM_GEN_MAX_STRING : (size_t)minl;
        memset(buf + n, 'x', want - n);
        n = want;
    }
    if (num_kw(schema, "maxLength", &maxl) && maxl >= 0 && (double)n > maxl)
        n = (size_t)maxl;
    g->bytes += n;
    return json_stringn(buf, n);
}

static json_t *gen(json_t *schema, uint64_t seed, const char *hint, int depth, gen_ctx *g);

static json_t *gen_object(json_t *schema, uint64_t seed, int depth, gen_ctx *g)
{
    json_t *obj = json_object();
    json_t *props = json_object_get(schema, "properties");
    json_t *req = json_object_get(schema, "required");
    if (!obj)
        return NULL;
    if (json_is_array(req)) {
        for (size_t i = 0; i < json_array_size(req); i++) {
            const char *name = json_string_value(json_array_get(req, i));
            if (!name || json_object_get(obj, name))
                continue;
            json_t *v = gen(json_object_get(props, name), mix(seed + i), name, depth + 1, g);
            if (!v || json_object_set_new(obj, name, v) != 0)
                goto fail;
        }
    } else if (json_is_object(props)) {
        const char *name;
        json_t *sub;
        size_t i = 0;
        json_object_foreach(props, name, sub) {
            json_t *v = gen(sub, mix(seed + i++), name, depth + 1, g);
            if (!v || json_object_set_new(obj, name, v) != 0)
                goto fail;
        }
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static json_t *gen_array(json_t *schema, uint64_t seed, const char *hint, int depth, gen_ctx *g)
{
    json_t *arr = json_array();
    json_t *items = json_object_get(schema, "items");
    double minv = 1, maxv = -1;
    if (!arr)
        return NULL;
    num_kw(schema, "minItems", &minv);
    if (minv < 1)
        minv = 1;
    size_t n = minv > AQ_SIM_GEN_MAX_ITEMS ? AQ_SIM_GEN_MAX_ITEMS : (size_t)minv;
    if (num_kw(schema, "maxItems", &maxv) && maxv >= 0 && (double)n > maxv)
        n = (size_t)maxv;
    for (size_t i = 0; i < n; i++) {
        /* a tuple (draft 4 "items": [...]) or prefixItems: each position its schema */
        json_t *s = json_is_array(items) ? json_array_get(items, i) : items;
        if (!s)
            s = json_array_get(json_object_get(schema, "prefixItems"), i);
        json_t *v = gen(s, mix(seed + i), hint, depth + 1, g);
        if (!v || json_array_append_new(arr, v) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *gen(json_t *schema, uint64_t seed, const char *hint, int depth, gen_ctx *g)
{
    if (++g->nodes > AQ_SIM_GEN_MAX_NODES || depth > AQ_SIM_GEN_MAX_DEPTH)
        return json_null();
    if (!json_is_object(schema)) /* true, {} or absent: anything goes */
        return gen_string(NULL, seed, hint, g);
    json_t *v = json_object_get(schema, "const");
    if (v)
        return json_deep_copy(v);
    v = json_object_get(schema, "enum");
    if (json_is_array(v) && json_array_size(v) > 0)
        return json_deep_copy(json_array_get(v, 0));
    static const char *const alts[] = {"anyOf", "oneOf", "allOf"};
    for (size_t i = 0; i < 3; i++) {
        v = json_object_get(schema, alts[i]);
        if (json_is_array(v) && json_array_size(v) > 0 && !json_object_get(schema, "type"))
            return gen(json_array_get(v, 0), seed, hint, depth + 1, g);
    }
    const char *type = schema_type(schema);
    if (strcmp(type, "object") == 0)
        return gen_object(schema, seed, depth, g);
    if (strcmp(type, "array") == 0)
        return gen_array(schema, seed, hint, depth, g);
    if (strcmp(type, "integer") == 0)
        return gen_integer(schema, seed);
    if (strcmp(type, "number") == 0)
        return gen_number(schema, seed);
    if (strcmp(type, "boolean") == 0)
        return json_true();
    if (strcmp(type, "null") == 0)
        return json_null();
    return gen_string(schema, seed, hint, g);
}

json_t *aq_sim_tools_gen(json_t *schema, uint64_t seed)
{
    gen_ctx g = {0};
    return gen(schema, seed, "value", 0, &g);
}

/* A value whose JSON type is not `type`. */
static json_t *wrong_value(const char *type)
{
    if (strcmp(type, "string") == 0)
        return json_integer(12345);
    return json_string("sim-wrong-type");
}

bool aq_sim_tools_spoil(json_t *schema, json_t *value)
{
    json_t *req = json_object_get(schema, "required");
    json_t *props = json_object_get(schema, "properties");
    if (!json_is_object(value))
        return false;
    for (size_t i = 0; json_is_array(req) && i < json_array_size(req); i++) {
        const char *name = json_string_value(json_array_get(req, i));
        if (name && json_object_get(value, name)) {
            json_object_del(value, name);
            return true;
        }
    }
    const char *name;
    json_t *sub;
    json_object_foreach(props, name, sub) {
        json_t *t = json_object_get(sub, "type");
        if (!json_is_string(t))
            continue;
        json_t *w = wrong_value(json_string_value(t));
        if (!w || json_object_set_new(value, name, w) != 0)
            return false;
        return true;
    }
    return false;
}
