#include "route.h"

#include "core/list.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A piece of the rules' own copy of the configuration string. */
typedef struct span {
    size_t off, len;
} span;

typedef struct bound {
    bool has_le, has_ge;
    bool exact; /* from "=" (step=N): both ends */
    int64_t le, ge;
} bound;

typedef struct pattern_set {
    bool on;
    size_t n;
    span p[AQ_ROUTE_MAX_PATTERNS];
} pattern_set;

typedef struct rule {
    char name[AQ_ROUTE_NAME_MAX + 1];
    char model[AQ_ROUTE_MODEL_MAX + 1];
    pattern_set type, tenant;
    bound input, max_tokens, step;
} rule;

struct aq_route_rules {
    char *mem; /* the configuration string: patterns point into it */
    size_t n;
    rule rules[AQ_ROUTE_MAX_RULES];
};

struct aq_route {
    aq_route_rules *rules;
    char *default_model;
    char *fallback_model; /* NULL: none */
    aq_list allowed;      /* empty: any */
};

/* ---- parsing ---- */

typedef struct parser {
    const char *s;   /* the whole string, for columns */
    size_t k;        /* 1-based number of the rule being parsed */
    const char *name; /* its name once known, else NULL */
    aq_err *err;
} parser;

#define QUOTE_MAX 40
#define QUOTE(b, e) (int)((e) - (b) > QUOTE_MAX ? QUOTE_MAX : (e) - (b)), (b)

static aq_status fail(const parser *ps, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static aq_status fail(const parser *ps, const char *at, const char *fmt, ...)
{
    char msg[AQ_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ps->name)
        return aq_err_set(ps->err, AQ_CONFIG, "routes: rule %zu '%s', column %zu: %s", ps->k,
                          ps->name, (size_t)(at - ps->s) + 1, msg);
    return aq_err_set(ps->err, AQ_CONFIG, "routes: rule %zu, column %zu: %s", ps->k,
                      (size_t)(at - ps->s) + 1, msg);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void trim(const char **b, const char **e)
{
    while (*b < *e && is_blank(**b))
        (*b)++;
    while (*e > *b && is_blank((*e)[-1]))
        (*e)--;
}

static const char *find_in(const char *b, const char *e, char c)
{
    const char *p = memchr(b, c, (size_t)(e - b));
    return p ? p : e;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static bool model_char(char c)
{
    return name_char(c) || c == '.' || c == '@' || c == '/' || c == ':';
}

static bool pattern_char(char c)
{
    return !is_blank(c) && c != ',' && c != ';' && c != '|' && c != '=' && c != '\0';
}

static bool span_is(const char *b, const char *e, const char *word)
{
    return (size_t)(e - b) == strlen(word) && memcmp(b, word, (size_t)(e - b)) == 0;
}

static aq_status parse_model(const parser *ps, const char *b, const char *e, char *out)
{
    if (b == e)
        return fail(ps, b, "no model after '->'");
    if (e - b > AQ_ROUTE_MODEL_MAX)
        return fail(ps, b, "model '%.*s...' is longer than %d characters", QUOTE(b, e),
                    AQ_ROUTE_MODEL_MAX);
    for (const char *p = b; p < e; p++)
        if (!model_char(*p))
            return fail(ps, p, "model '%.*s' has a character outside [A-Za-z0-9._@/:-]",
                        QUOTE(b, e));
    memcpy(out, b, (size_t)(e - b));
    out[e - b] = '\0';
    return AQ_OK;
}

static aq_status parse_patterns(const parser *ps, const char *field, const char *b, const char *e,
                                pattern_set *set)
{
    if (set->on)
        return fail(ps, b, "%s given twice", field);
    set->on = true;
    const char *p = b;
    for (;;) {
        const char *ie = find_in(p, e, '|'), *pb = p, *pe = ie;
        trim(&pb, &pe);
        if (pb == pe)
            return fail(ps, pb, "%s: empty pattern", field);
        if (pe - pb > AQ_ROUTE_PATTERN_MAX)
            return fail(ps, pb, "%s: pattern '%.*s...' is longer than %d characters", field,
                        QUOTE(pb, pe), AQ_ROUTE_PATTERN_MAX);
        for (const char *q = pb; q < pe; q++)
            if (!pattern_char(*q))
                return fail(ps, q, "%s: pattern '%.*s' has a blank or one of , ; | =", field,
                            QUOTE(pb, pe));
        if (set->n == AQ_ROUTE_MAX_PATTERNS)
            return fail(ps, pb, "%s: more than %d patterns", field, AQ_ROUTE_MAX_PATTERNS);
        set->p[set->n++] = (span){(size_t)(pb - ps->s), (size_t)(pe - pb)};
        if (ie == e)
            return AQ_OK;
        p = ie + 1;
    }
}

/* "field<=N" (le), "field>=N" (ge) or, for step, "field=N" (both). */
static aq_status parse_bound(const parser *ps, const char *field, bool le, bool ge, const char *b,
                             const char *e, int64_t cap, int64_t min, bound *bd)
{
    const char *op = le && ge ? "=" : le ? "<=" : ">=";
    if (bd->exact || (le && ge && (bd->has_le || bd->has_ge)))
        return fail(ps, b, "%s%s: %s has a condition already (%s=N takes no other)", field, op,
                    field, field);
    if ((le && bd->has_le) || (ge && bd->has_ge))
        return fail(ps, b, "%s%s given twice", field, op);
    if (b == e)
        return fail(ps, b, "%s%s: no number", field, op);
    int64_t v = 0;
    for (const char *p = b; p < e; p++) {
        if (*p < '0' || *p > '9')
            return fail(ps, b, "%s%s%.*s: '%.*s' is not a whole number", field, op, QUOTE(b, e),
                        QUOTE(b, e));
        v = v * 10 + (*p - '0');
        if (v > cap)
            return fail(ps, b, "%s%s%.*s: over the cap of %lld", field, op, QUOTE(b, e),
                        (long long)cap);
    }
    if (v < min)
        return fail(ps, b, "%s%s%.*s: must be at least %lld (steps count from 1)", field, op,
                    QUOTE(b, e), (long long)min);
    if (le) {
        bd->has_le = true;
        bd->le = v;
    }
    if (ge) {
        bd->has_ge = true;
        bd->ge = v;
    }
    bd->exact = le && ge;
    if (bd->has_le && bd->has_ge && bd->ge > bd->le)
        return fail(ps, b, "%s>=%lld and %s<=%lld can never both hold", field, (long long)bd->ge,
                    field, (long long)bd->le);
    return AQ_OK;
}

static aq_status parse_cond(const parser *ps, const char *b, const char *e, rule *r)
{
    const char *op = b;
    while (op < e && *op != '<' && *op != '>' && *op != '=')
        op++;
    const char *nb = b, *ne = op;
    trim(&nb, &ne);
    if (op == e)
        return fail(ps, b, "condition '%.*s' has no =, <= or >=", QUOTE(b, e));
    bool le = *op == '<', ge = *op == '>';
    const char *vb = op + 1;
    if (le || ge) {
        if (vb >= e || *vb != '=')
            return fail(ps, op, "'%c' must be '%c=' (conditions use <= and >=)", *op, *op);
        vb++;
    }
    const char *ve = e;
    trim(&vb, &ve);
    bool pattern_field = span_is(nb, ne, "type") || span_is(nb, ne, "tenant");
    bool step_field = span_is(nb, ne, "step");
    bool number_field = span_is(nb, ne, "input_tokens") || span_is(nb, ne, "max_tokens");
    if (!pattern_field && !number_field && !step_field)
        return fail(ps, nb,
                    "unknown condition '%.*s' (expected type, tenant, input_tokens, max_tokens "
                    "or step)",
                    QUOTE(nb, ne));
    if (pattern_field) {
        if (le || ge)
            return fail(ps, op, "%.*s takes '=' and patterns, not '%c='", QUOTE(nb, ne), *op);
        bool type = span_is(nb, ne, "type");
        return parse_patterns(ps, type ? "type" : "tenant", vb, ve, type ? &r->type : &r->tenant);
    }
    if (step_field)
        return parse_bound(ps, "step", le || !ge, ge || !le, vb, ve, AQ_ROUTE_MAX_STEP_VALUE, 1,
                           &r->step);
    if (!le && !ge)
        return fail(ps, op, "%.*s takes <= or >= and a number, not '='", QUOTE(nb, ne));
    bool input = span_is(nb, ne, "input_tokens");
    return parse_bound(ps, input ? "input_tokens" : "max_tokens", le, ge, vb, ve,
                       AQ_ROUTE_MAX_TOKENS_VALUE, 0, input ? &r->input : &r->max_tokens);
}

static bool catch_all(const rule *r)
{
    return !r->type.on && !r->tenant.on && !r->input.has_le && !r->input.has_ge &&
           !r->max_tokens.has_le && !r->max_tokens.has_ge && !r->step.has_le && !r->step.has_ge;
}

static aq_status parse_rule(aq_route_rules *rs, parser *ps, const char *b, const char *e)
{
    rule *r = &rs->rules[rs->n];
    memset(r, 0, sizeof(*r));
    const char *colon = find_in(b, e, ':');
    if (colon == e)
        return fail(ps, b, "'%.*s' has no ':' after the rule name (expected name: conditions -> model)",
                    QUOTE(b, e));
    const char *nb = b, *ne = colon;
    trim(&nb, &ne);
    if (nb == ne)
        return fail(ps, b, "no rule name before ':'");
    if (ne - nb > AQ_ROUTE_NAME_MAX)
        return fail(ps, nb, "name '%.*s...' is longer than %d characters", QUOTE(nb, ne),
                    AQ_ROUTE_NAME_MAX);
    for (const char *p = nb; p < ne; p++)
        if (!name_char(*p))
            return fail(ps, p, "name '%.*s' has a character outside [A-Za-z0-9_-]", QUOTE(nb, ne));
    memcpy(r->name, nb, (size_t)(ne - nb));
    r->name[ne - nb] = '\0';
    ps->name = r->name;
    if (!strcmp(r->name, AQ_ROUTE_RULE_EXPLICIT) || !strcmp(r->name, AQ_ROUTE_RULE_DEFAULT))
        return fail(ps, nb, "'%s' is reserved (results name explicit and default choices so)",
                    r->name);
    for (size_t i = 0; i < rs->n; i++)
        if (!strcmp(rs->rules[i].name, r->name))
            return fail(ps, nb, "rule name '%s' is also rule %zu's", r->name, i + 1);

    /* The model has no '>': the last "->" is the arrow. */
    const char *arrow = NULL;
    for (const char *p = colon + 1; p + 1 < e; p++)
        if (p[0] == '-' && p[1] == '>')
            arrow = p;
    if (!arrow)
        return fail(ps, colon, "no '->' before the model (expected name: conditions -> model)");
    const char *mb = arrow + 2, *me = e;
    trim(&mb, &me);
    aq_status st = parse_model(ps, mb, me, r->model);
    if (st != AQ_OK)
        return st;

    const char *cb = colon + 1, *ce = arrow;
    trim(&cb, &ce);
    for (const char *p = cb; cb < ce;) {
        const char *ie = find_in(p, ce, ','), *ib = p, *iend = ie;
        trim(&ib, &iend);
        if (ib == iend)
            return fail(ps, ib, "empty condition");
        if ((st = parse_cond(ps, ib, iend, r)) != AQ_OK)
            return st;
        if (ie == ce)
            break;
        p = ie + 1;
    }
    for (size_t i = 0; i < rs->n; i++)
        if (catch_all(&rs->rules[i]))
            return fail(ps, nb, "follows rule %zu '%s', which matches every task: it can never match",
                        i + 1, rs->rules[i].name);
    rs->n++;
    return AQ_OK;
}

aq_status aq_route_rules_parse(const char *s, aq_route_rules **out, aq_err *err)
{
    aq_status st = AQ_OK;
    aq_route_rules *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    size_t len = s ? strlen(s) : 0;
    if (len > AQ_ROUTE_RULES_MAX_LEN) {
        st = aq_err_set(err, AQ_CONFIG, "routes: %zu characters, over the cap of %d", len,
                        AQ_ROUTE_RULES_MAX_LEN);
        goto out;
    }
    if (!(rs->mem = strdup(s ? s : ""))) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    const char *b = rs->mem, *e = rs->mem + len;
    trim(&b, &e);
    if (b == e)
        goto done;
    parser ps = {rs->mem, 0, NULL, err};
    for (const char *p = rs->mem;;) {
        const char *end = find_in(p, rs->mem + len, ';'), *tb = p, *te = end;
        trim(&tb, &te);
        ps.k++;
        ps.name = NULL;
        if (tb == te) {
            st = fail(&ps, tb, "empty rule (';;' or a ';' at the end)");
            goto out;
        }
        if (rs->n == AQ_ROUTE_MAX_RULES) {
            st = fail(&ps, tb, "more than %d rules", AQ_ROUTE_MAX_RULES);
            goto out;
        }
        if ((st = parse_rule(rs, &ps, tb, te)) != AQ_OK)
            goto out;
        if (end == rs->mem + len)
            break;
        p = end + 1;
    }
done:
    *out = rs;
    rs = NULL;
out:
    aq_route_rules_destroy(rs);
    return st;
}

void aq_route_rules_destroy(aq_route_rules *rules)
{
    if (!rules)
        return;
    free(rules->mem);
    free(rules);
}

size_t aq_route_rules_count(const aq_route_rules *rules)
{
    return rules ? rules->n : 0;
}

const char *aq_route_rule_name(const aq_route_rules *rules, size_t i)
{
    return rules && i < rules->n ? rules->rules[i].name : NULL;
}

const char *aq_route_rule_model(const aq_route_rules *rules, size_t i)
{
    return rules && i < rules->n ? rules->rules[i].model : NULL;
}

/* ---- matching ---- */

/* `*` matches any run; iterative, with one backtrack point (the last star):
 * linear in practice, O(n x m) at worst, no recursion. */
static bool glob(const char *pat, size_t plen, const char *s)
{
    size_t pi = 0, star = (size_t)-1;
    const char *mark = NULL;
    while (*s) {
        if (pi < plen && pat[pi] == '*') {
            star = pi++;
            mark = s;
        } else if (pi < plen && pat[pi] == *s) {
            pi++;
            s++;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            s = ++mark;
        } else {
            return false;
        }
    }
    while (pi < plen && pat[pi] == '*')
        pi++;
    return pi == plen;
}

static bool set_matches(const aq_route_rules *rs, const pattern_set *set, const char *v)
{
    if (!set->on)
        return true;
    for (size_t i = 0; i < set->n; i++)
        if (glob(rs->mem + set->p[i].off, set->p[i].len, v ? v : ""))
            return true;
    return false;
}

static bool bound_holds(const bound *b, int64_t v)
{
    return (!b->has_le || v <= b->le) && (!b->has_ge || v >= b->ge);
}

int aq_route_rules_match(const aq_route_rules *rules, const aq_route_task *t)
{
    for (size_t i = 0; rules && i < rules->n; i++) {
        const rule *r = &rules->rules[i];
        if (set_matches(rules, &r->type, t->type) && set_matches(rules, &r->tenant, t->tenant) &&
            bound_holds(&r->input, t->input_tokens) && bound_holds(&r->max_tokens, t->max_tokens) &&
            bound_holds(&r->step, t->step > 0 ? t->step : 1))
            return (int)i;
    }
    return -1;
}

/* ---- the router ---- */

static aq_status check_model(const char *what, const char *m, aq_err *err)
{
    size_t n = m ? strlen(m) : 0;
    if (n == 0)
        return aq_err_set(err, AQ_CONFIG, "%s is empty", what);
    if (n > AQ_ROUTE_MODEL_MAX)
        return aq_err_set(err, AQ_CONFIG, "%s is longer than %d characters", what, AQ_ROUTE_MODEL_MAX);
    for (size_t i = 0; i < n; i++)
        if (!model_char(m[i]))
            return aq_err_set(err, AQ_CONFIG, "%s '%s' has a character outside [A-Za-z0-9._@/:-]",
                              what, m);
    return AQ_OK;
}

aq_status aq_route_new(const aq_route_config *cfg, aq_route **out, aq_err *err)
{
    aq_status st;
    aq_route *r = calloc(1, sizeof(*r));
    if (!r)
        return aq_err_set(err, AQ_NOMEM, "out of memory");
    if ((st = check_model("default_model", cfg->default_model, err)) != AQ_OK)
        goto out;
    if (cfg->fallback_model && *cfg->fallback_model &&
        (st = check_model("fallback_model", cfg->fallback_model, err)) != AQ_OK)
        goto out;
    if ((st = aq_route_rules_parse(cfg->rules, &r->rules, err)) != AQ_OK)
        goto out;
    if ((st = aq_list_split(cfg->allowed_models, "allowed_models", AQ_ROUTE_MAX_ALLOWED,
                            &r->allowed, err)) != AQ_OK)
        goto out;
    r->default_model = strdup(cfg->default_model);
    r->fallback_model = cfg->fallback_model && *cfg->fallback_model ? strdup(cfg->fallback_model) : NULL;
    if (!r->default_model || (cfg->fallback_model && *cfg->fallback_model && !r->fallback_model)) {
        st = aq_err_set(err, AQ_NOMEM, "out of memory");
        goto out;
    }
    *out = r;
    r = NULL;
out:
    aq_route_destroy(r);
    return st;
}

void aq_route_destroy(aq_route *r)
{
    if (!r)
        return;
    aq_route_rules_destroy(r->rules);
    free(r->default_model);
    free(r->fallback_model);
    aq_list_free(&r->allowed);
    free(r);
}

aq_status aq_route_choose(const aq_route *r, const aq_route_task *t, aq_route_choice *out,
                          aq_err *err)
{
    if (t->model && *t->model) {
        if (r->allowed.n > 0 && !aq_list_contains(&r->allowed, t->model))
            return aq_err_set(err, AQ_MODEL_NOT_ALLOWED, "model \"%.*s\" is not in allowed_models",
                              AQ_ROUTE_MODEL_MAX, t->model);
        *out = (aq_route_choice){t->model, AQ_ROUTE_RULE_EXPLICIT};
        return AQ_OK;
    }
    int i = aq_route_rules_match(r->rules, t);
    if (i >= 0)
        *out = (aq_route_choice){r->rules->rules[i].model, r->rules->rules[i].name};
    else
        *out = (aq_route_choice){r->default_model, AQ_ROUTE_RULE_DEFAULT};
    return AQ_OK;
}

const char *aq_route_fallback(const aq_route *r, const char *model, bool task_allows)
{
    if (!r || !task_allows || !r->fallback_model || (model && !strcmp(model, r->fallback_model)))
        return NULL;
    return r->fallback_model;
}
