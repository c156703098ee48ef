#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "llm/llm_request.h"
#include "route/route.h"

#define RULES                                                                   \
    "cheap: type=classify|extract, max_tokens<=512 -> claude-haiku-4-5;"        \
    "long: input_tokens>=50000 -> claude-sonnet-4-5;"                           \
    "acme: tenant=acme|acme-*, type=sum* -> claude-opus-4-5;"                   \
    "mid: input_tokens>=1000, input_tokens<=2000, max_tokens>=100 -> claude-sonnet-4-6;" \
    "globs: type=*-batch|x*y*z -> claude-haiku-4-5@20251001"

static aq_route *router(const char *rules, const char *allowed, const char *fallback)
{
    aq_route_config cfg = {rules, "claude-sonnet-4-5", allowed, fallback};
    aq_route *r = NULL;
    aq_err err;
    aq_err_clear(&err);
    if (aq_route_new(&cfg, &r, &err) != AQ_OK)
        fail_msg("aq_route_new: %s", err.msg);
    return r;
}

/* The routing table: first match wins, else the default. */
static void test_rules_table(void **state)
{
    (void)state;
    aq_route *r = router(RULES, "", NULL);
    static const struct {
        const char *type, *tenant;
        int64_t input, max_tokens;
        const char *model, *rule;
    } cases[] = {
        /* cheap: both conditions, either type */
        {"classify", "", 10, 512, "claude-haiku-4-5", "cheap"},
        {"extract", "t", 10, 1, "claude-haiku-4-5", "cheap"},
        {"classify", "", 10, 513, "claude-sonnet-4-5", "default"},  /* max_tokens too big */
        {"classify2", "", 10, 100, "claude-sonnet-4-5", "default"}, /* exact, not a prefix */
        {"Classify", "", 10, 100, "claude-sonnet-4-5", "default"},  /* case matters */
        /* long: the boundary is inclusive */
        {"chat", "", 50000, 4096, "claude-sonnet-4-5", "long"},
        {"chat", "", 49999, 4096, "claude-sonnet-4-5", "default"},
        /* first match wins: cheap before long */
        {"classify", "", 90000, 100, "claude-haiku-4-5", "cheap"},
        /* acme: tenant alternatives and globs, with a type glob */
        {"summarize", "acme", 10, 100, "claude-opus-4-5", "acme"},
        {"sum", "acme-eu", 10, 100, "claude-opus-4-5", "acme"},
        {"summarize", "acme-", 10, 100, "claude-opus-4-5", "acme"},
        {"summarize", "acmex", 10, 100, "claude-sonnet-4-5", "default"},
        {"summarize", "", 10, 100, "claude-sonnet-4-5", "default"},
        {"resume", "acme", 10, 100, "claude-sonnet-4-5", "default"},
        /* mid: a range on input_tokens plus max_tokens >= */
        {"chat", "", 1000, 100, "claude-sonnet-4-6", "mid"},
        {"chat", "", 2000, 100, "claude-sonnet-4-6", "mid"},
        {"chat", "", 999, 100, "claude-sonnet-4-5", "default"},
        {"chat", "", 2001, 100, "claude-sonnet-4-5", "default"},
        {"chat", "", 1500, 99, "claude-sonnet-4-5", "default"},
        /* globs: suffix and several stars (backtracking) */
        {"night-batch", "", 1, 1, "claude-haiku-4-5@20251001", "globs"},
        {"-batch", "", 1, 1, "claude-haiku-4-5@20251001", "globs"},
        {"batch", "", 1, 1, "claude-sonnet-4-5", "default"},
        {"xyz", "", 1, 1, "claude-haiku-4-5@20251001", "globs"},
        {"xaayzyzbz", "", 1, 1, "claude-haiku-4-5@20251001", "globs"},
        {"xaayzyzb", "", 1, 1, "claude-sonnet-4-5", "default"},
        /* NULL type and tenant read as "" */
        {NULL, NULL, 1, 1, "claude-sonnet-4-5", "default"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_route_task t = {cases[i].type, cases[i].tenant, "", cases[i].input, cases[i].max_tokens, 1};
        aq_route_choice c = {NULL, NULL};
        aq_err err;
        assert_int_equal(aq_route_choose(r, &t, &c, &err), AQ_OK);
        if (strcmp(c.model, cases[i].model) || strcmp(c.rule, cases[i].rule))
            fail_msg("case %zu (%s/%s/%lld/%lld): %s by %s, want %s by %s", i,
                     cases[i].type ? cases[i].type : "NULL", cases[i].tenant ? cases[i].tenant : "NULL",
                     (long long)cases[i].input, (long long)cases[i].max_tokens, c.model, c.rule,
                     cases[i].model, cases[i].rule);
    }
    aq_route_destroy(r);
}

static void test_catch_all_and_no_rules(void **state)
{
    (void)state;
    aq_route *r = router("small: max_tokens<=10 -> a; rest: -> b", "", NULL);
    aq_route_task t = {"x", "y", NULL, 5, 5, 1};
    aq_route_choice c;
    assert_int_equal(aq_route_choose(r, &t, &c, NULL), AQ_OK);
    assert_string_equal(c.rule, "small");
    t.max_tokens = 11;
    assert_int_equal(aq_route_choose(r, &t, &c, NULL), AQ_OK);
    assert_string_equal(c.rule, "rest");
    assert_string_equal(c.model, "b");
    aq_route_destroy(r);

    r = router(NULL, NULL, NULL);
    assert_int_equal(aq_route_choose(r, &t, &c, NULL), AQ_OK);
    assert_string_equal(c.rule, AQ_ROUTE_RULE_DEFAULT);
    assert_string_equal(c.model, "claude-sonnet-4-5");
    aq_route_destroy(r);
    aq_route_destroy(NULL);
}

/* A task that names a model: the allowlist decides; rules do not apply. */
static void test_explicit_models(void **state)
{
    (void)state;
    static const struct {
        const char *allowed, *model;
        aq_status st;
    } cases[] = {
        {"claude-haiku-4-5, claude-opus-4-5", "claude-opus-4-5", AQ_OK},
        {"claude-haiku-4-5,claude-opus-4-5", "claude-haiku-4-5", AQ_OK},
        {"claude-haiku-4-5,claude-opus-4-5", "claude-sonnet-4-5", AQ_MODEL_NOT_ALLOWED},
        {"claude-haiku-4-5", "claude-haiku-4-5-20251001", AQ_MODEL_NOT_ALLOWED}, /* exact */
        {"claude-haiku-4-5", "claude-haiku", AQ_MODEL_NOT_ALLOWED},
        {"", "anything-at-all", AQ_OK},  /* empty allowlist: any */
        {NULL, "anything-at-all", AQ_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_route *r = router(RULES, cases[i].allowed, NULL);
        aq_route_task t = {"classify", "acme", cases[i].model, 10, 10, 1}; /* would match "cheap" */
        aq_route_choice c = {"unset", "unset"};
        aq_err err;
        aq_err_clear(&err);
        aq_status st = aq_route_choose(r, &t, &c, &err);
        if (st != cases[i].st)
            fail_msg("case %zu: %s (%s)", i, aq_status_class(st), err.msg);
        if (st == AQ_OK) {
            assert_string_equal(c.model, cases[i].model);
            assert_string_equal(c.rule, AQ_ROUTE_RULE_EXPLICIT);
        } else {
            assert_string_equal(c.model, "unset"); /* untouched */
            assert_non_null(strstr(err.msg, cases[i].model));
            assert_non_null(strstr(err.msg, "allowed_models"));
            assert_int_equal(aq_status_disposition(st), AQ_DISP_PERMANENT);
        }
        aq_route_destroy(r);
    }
    /* The model quoted in the error is cut. */
    char huge[600];
    memset(huge, 'x', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    aq_route *r = router("", "a", NULL);
    aq_route_task t = {"x", "", huge, 1, 1, 1};
    aq_route_choice c;
    aq_err err;
    assert_int_equal(aq_route_choose(r, &t, &c, &err), AQ_MODEL_NOT_ALLOWED);
    assert_true(strlen(err.msg) < 200);
    aq_route_destroy(r);
}

static void test_fallback(void **state)
{
    (void)state;
    aq_route *r = router("", "", "claude-haiku-4-5");
    static const struct {
        const char *model;
        bool allows;
        const char *want;
    } cases[] = {
        {"claude-opus-4-5", true, "claude-haiku-4-5"},
        {"claude-opus-4-5", false, NULL},
        {"claude-haiku-4-5", true, NULL}, /* the fallback itself is overloaded */
        {NULL, true, "claude-haiku-4-5"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = aq_route_fallback(r, cases[i].model, cases[i].allows);
        if (cases[i].want)
            assert_string_equal(got, cases[i].want);
        else
            assert_null(got);
    }
    aq_route_destroy(r);
    r = router("", "", "");
    assert_null(aq_route_fallback(r, "claude-opus-4-5", true));
    aq_route_destroy(r);
    assert_null(aq_route_fallback(NULL, "m", true));
}

static void test_rules_introspection(void **state)
{
    (void)state;
    aq_route_rules *rs = NULL;
    assert_int_equal(aq_route_rules_parse(RULES, &rs, NULL), AQ_OK);
    assert_int_equal(aq_route_rules_count(rs), 5);
    assert_string_equal(aq_route_rule_name(rs, 0), "cheap");
    assert_string_equal(aq_route_rule_model(rs, 0), "claude-haiku-4-5");
    assert_string_equal(aq_route_rule_name(rs, 4), "globs");
    assert_null(aq_route_rule_name(rs, 5));
    assert_null(aq_route_rule_model(rs, 5));
    aq_route_task t = {"extract", "", "", 0, 0, 1};
    assert_int_equal(aq_route_rules_match(rs, &t), 0);
    t.type = "nothing";
    assert_int_equal(aq_route_rules_match(rs, &t), -1);
    aq_route_rules_destroy(rs);
    aq_route_rules_destroy(NULL);
    /* Blank strings and odd spacing. */
    assert_int_equal(aq_route_rules_parse(" \t ", &rs, NULL), AQ_OK);
    assert_int_equal(aq_route_rules_count(rs), 0);
    aq_route_rules_destroy(rs);
    assert_int_equal(aq_route_rules_parse("a:type=x->m1;b :  tenant = t1 | t2 ,max_tokens <= 5 ->  m2 ",
                                          &rs, NULL),
                     AQ_OK);
    assert_int_equal(aq_route_rules_count(rs), 2);
    assert_string_equal(aq_route_rule_model(rs, 1), "m2");
    aq_route_task t2 = {"y", "t2", "", 0, 5, 1};
    assert_int_equal(aq_route_rules_match(rs, &t2), 1);
    aq_route_rules_destroy(rs);
    /* A tenant pattern may hold "->"; the model is after the last one. */
    assert_int_equal(aq_route_rules_parse("odd: tenant=a->b -> m", &rs, NULL), AQ_OK);
    aq_route_task t3 = {"y", "a->b", "", 0, 5, 1};
    assert_int_equal(aq_route_rules_match(rs, &t3), 0);
    assert_string_equal(aq_route_rule_model(rs, 0), "m");
    aq_route_rules_destroy(rs);
}

static void test_parse_errors(void **state)
{
    (void)state;
    char many[AQ_ROUTE_MAX_RULES * 24 + 32];
    size_t at = 0;
    for (int i = 0; i <= AQ_ROUTE_MAX_RULES; i++)
        at += (size_t)snprintf(many + at, sizeof(many) - at, "%sr%d: type=t%d -> m", i ? ";" : "", i, i);
    char longs[AQ_ROUTE_RULES_MAX_LEN + 8];
    memset(longs, ' ', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    const struct {
        const char *s, *msg;
    } cases[] = {
        {"cheap type=x -> m", "routes: rule 1, column 1: 'cheap type=x -> m' has no ':'"},
        {": type=x -> m", "rule 1, column 1: no rule name"},
        {"ch eap: type=x -> m", "rule 1, column 3: name 'ch eap' has a character outside"},
        {"default: type=x -> m", "'default' is reserved"},
        {"explicit: -> m", "'explicit' is reserved"},
        {"a: type=x -> m; a: type=y -> n", "rule 2 'a', column 17: rule name 'a' is also rule 1's"},
        {"cheap: type=x", "rule 1 'cheap', column 6: no '->' before the model"},
        {"cheap: type=x ->", "no model after '->'"},
        {"cheap: type=x -> bad model", "model 'bad model' has a character outside"},
        {"cheap: type=x -> m;", "rule 2, column 20: empty rule"},
        {"cheap: type=x -> m;; b: -> n", "rule 2, column 20: empty rule"},
        {"cheap: type=x,, max_tokens<=5 -> m", "rule 1 'cheap', column 15: empty condition"},
        {"cheap: type=x, -> m", "empty condition"},
        {"cheap: kind=x -> m", "rule 1 'cheap', column 8: unknown condition 'kind'"},
        {"cheap: type -> m", "condition 'type' has no =, <= or >="},
        {"cheap: type<=5 -> m", "type takes '=' and patterns, not '<='"},
        {"cheap: max_tokens=5 -> m", "max_tokens takes <= or >= and a number, not '='"},
        {"cheap: max_tokens<5 -> m", "'<' must be '<=' (conditions use <= and >=)"},
        {"cheap: max_tokens>5 -> m", "'>' must be '>='"},
        {"cheap: max_tokens<=abc -> m", "rule 1 'cheap', column 20: max_tokens<=abc: 'abc' is not a whole number"},
        {"cheap: max_tokens<= -> m", "max_tokens<=: no number"},
        {"cheap: max_tokens<=-5 -> m", "'-5' is not a whole number"},
        {"cheap: input_tokens>=999999999999 -> m", "input_tokens>=999999999999: over the cap"},
        {"cheap: max_tokens<=5, max_tokens<=6 -> m", "max_tokens<= given twice"},
        {"cheap: input_tokens>=10, input_tokens<=5 -> m", "input_tokens>=10 and input_tokens<=5 can never both hold"},
        {"cheap: type=x, type=y -> m", "type given twice"},
        {"cheap: tenant=a||b -> m", "tenant: empty pattern"},
        {"cheap: tenant=a|b| -> m", "tenant: empty pattern"},
        {"cheap: tenant= -> m", "tenant: empty pattern"},
        {"cheap: tenant=a b -> m", "tenant: pattern 'a b' has a blank"},
        {"all: -> m; later: type=x -> n", "rule 2 'later', column 12: follows rule 1 'all', which matches every task"},
        {"cheap: type=a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q -> m", "type: more than 16 patterns"},
        /* step */
        {"pick: step=0 -> m", "rule 1 'pick', column 12: step=0: must be at least 1"},
        {"pick: step<=0 -> m", "step<=0: must be at least 1"},
        {"pick: step=x -> m", "rule 1 'pick', column 12: step=x: 'x' is not a whole number"},
        {"pick: step= -> m", "step=: no number"},
        {"pick: step>=-1 -> m", "'-1' is not a whole number"},
        {"pick: step<2 -> m", "'<' must be '<='"},
        {"pick: step>=100001 -> m", "step>=100001: over the cap of 100000"},
        {"pick: step=1, step=2 -> m", "rule 1 'pick', column 20: step=: step has a condition already"},
        {"pick: step>=2, step=3 -> m", "step=: step has a condition already"},
        {"pick: step=1, step<=3 -> m", "step<=: step has a condition already"},
        {"pick: step>=2, step>=3 -> m", "step>= given twice"},
        {"pick: step>=3, step<=2 -> m", "step>=3 and step<=2 can never both hold"},
        {"pick: steps=1 -> m", "unknown condition 'steps' (expected type, tenant, input_tokens, max_tokens or step)"},
        {"all: -> m; pick: step=1 -> n", "rule 2 'pick', column 12: follows rule 1 'all'"},
        {many, "rule 65, column"},
        {longs, "characters, over the cap of 8192"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_route_rules *rs = (aq_route_rules *)0x1;
        aq_err err;
        aq_err_clear(&err);
        aq_status st = aq_route_rules_parse(cases[i].s, &rs, &err);
        if (st != AQ_CONFIG)
            fail_msg("case %zu '%.60s' parsed (%s)", i, cases[i].s, aq_status_class(st));
        assert_true(rs == (aq_route_rules *)0x1);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: error '%s' does not say '%s'", i, err.msg, cases[i].msg);
        if (strncmp(err.msg, "routes: ", 8) != 0)
            fail_msg("case %zu: error '%s' does not name the option", i, err.msg);
    }
}

static void test_router_config_errors(void **state)
{
    (void)state;
    const struct {
        aq_route_config cfg;
        const char *msg;
    } cases[] = {
        {{"", "", "", ""}, "default_model is empty"},
        {{"", NULL, "", ""}, "default_model is empty"},
        {{"", "bad model", "", ""}, "default_model 'bad model' has a character outside"},
        {{"", "m", "", "bad model"}, "fallback_model 'bad model'"},
        {{"x", "m", "", ""}, "routes: rule 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_route *r = (aq_route *)0x1;
        aq_err err;
        aq_err_clear(&err);
        assert_int_equal(aq_route_new(&cases[i].cfg, &r, &err), AQ_CONFIG);
        assert_true(r == (aq_route *)0x1);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: error '%s' does not say '%s'", i, err.msg, cases[i].msg);
    }
}

/* A task's input_tokens (what the pipeline routes on) counts its content
 * blocks and its tools: a big tool schema can move a task to the "long" rule. */
static void test_input_tokens_count_blocks_and_tools(void **state)
{
    (void)state;
    aq_route *r = router(RULES, "", NULL);
    static char schema[200064];
    const char *head = "{\"type\":\"object\",\"description\":\"";
    size_t h = strlen(head);
    memcpy(schema, head, h);
    memset(schema + h, 'x', 200000);
    memcpy(schema + h + 200000, "\"}", 3);
    Agentq__V1__TextBlock tb = AGENTQ__V1__TEXT_BLOCK__INIT;
    tb.text = (char *)"short question";
    Agentq__V1__ContentBlock b = AGENTQ__V1__CONTENT_BLOCK__INIT, *bp = &b;
    b.block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    b.text = &tb;
    Agentq__V1__Message m = AGENTQ__V1__MESSAGE__INIT, *mp = &m;
    m.role = (char *)"user";
    m.blocks = &bp;
    m.n_blocks = 1;
    Agentq__V1__Task t = AGENTQ__V1__TASK__INIT;
    t.type = (char *)"chat";
    t.messages = &mp;
    t.n_messages = 1;
    aq_route_task rt = {"chat", "", NULL, aq_llm_task_input_tokens(&t), 4096, 1};
    aq_route_choice c;
    aq_err err;
    assert_int_equal(rt.input_tokens, 4); /* the block's 14 bytes */
    assert_int_equal(aq_route_choose(r, &rt, &c, &err), AQ_OK);
    assert_string_equal(c.rule, "default");
    Agentq__V1__Tool tool = AGENTQ__V1__TOOL__INIT, *tp = &tool;
    tool.name = (char *)"search";
    tool.input_schema_json = schema;
    t.tools = &tp;
    t.n_tools = 1;
    rt.input_tokens = aq_llm_task_input_tokens(&t);
    assert_true(rt.input_tokens >= 50000);
    assert_int_equal(aq_route_choose(r, &rt, &c, &err), AQ_OK);
    assert_string_equal(c.rule, "long");
    aq_route_destroy(r);
}

/* step: the model step of an agent run (1-based; 0 reads as 1, a single call). */
static void test_step_rules(void **state)
{
    (void)state;
    aq_route *r = router("cls: type=classify, step>=2 -> claude-opus-4-5;"
                         "pick: step=1 -> claude-haiku-4-5;"
                         "mid: step >= 2 , step <= 3 -> claude-sonnet-4-6;"
                         "synth: step>=4 -> claude-opus-4-5",
                         "", NULL);
    static const struct {
        const char *type;
        int64_t step;
        const char *model, *rule;
    } cases[] = {
        {"chat", 0, "claude-haiku-4-5", "pick"}, /* a single call is step 1 */
        {"chat", 1, "claude-haiku-4-5", "pick"},
        {"chat", 2, "claude-sonnet-4-6", "mid"},
        {"chat", 3, "claude-sonnet-4-6", "mid"},
        {"chat", 4, "claude-opus-4-5", "synth"},
        {"chat", 100000, "claude-opus-4-5", "synth"},
        {"classify", 1, "claude-haiku-4-5", "pick"}, /* cls wants step >= 2 */
        {"classify", 2, "claude-opus-4-5", "cls"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_route_task t = {cases[i].type, "", NULL, 10, 100, cases[i].step};
        aq_route_choice c = {NULL, NULL};
        assert_int_equal(aq_route_choose(r, &t, &c, NULL), AQ_OK);
        if (strcmp(c.model, cases[i].model) || strcmp(c.rule, cases[i].rule))
            fail_msg("case %zu (%s, step %lld): %s by %s, want %s by %s", i, cases[i].type,
                     (long long)cases[i].step, c.model, c.rule, cases[i].model, cases[i].rule);
    }
    aq_route_destroy(r);
    /* The brief's pair: the first step cheap, the rest large; step<=N too. */
    r = router("pick: step=1 -> claude-haiku-4-5; synth: step>=2 -> claude-sonnet-4-5", "", NULL);
    aq_route_task t = {"chat", "", NULL, 10, 100, 1};
    aq_route_choice c;
    assert_int_equal(aq_route_choose(r, &t, &c, NULL), AQ_OK);
    assert_string_equal(c.rule, "pick");
    t.step = 2;
    assert_int_equal(aq_route_choose(r, &t, &c, NULL), AQ_OK);
    assert_string_equal(c.rule, "synth");
    t.model = "claude-opus-4-5"; /* a task's own model beats every rule, every step */
    assert_int_equal(aq_route_choose(r, &t, &c, NULL), AQ_OK);
    assert_string_equal(c.rule, AQ_ROUTE_RULE_EXPLICIT);
    aq_route_destroy(r);
    r = router("early: step<=3 -> a", "", NULL);
    aq_route_task u = {"chat", "", NULL, 10, 100, 3};
    assert_int_equal(aq_route_choose(r, &u, &c, NULL), AQ_OK);
    assert_string_equal(c.rule, "early");
    u.step = 4;
    assert_int_equal(aq_route_choose(r, &u, &c, NULL), AQ_OK);
    assert_string_equal(c.rule, AQ_ROUTE_RULE_DEFAULT);
    aq_route_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_table),
        cmocka_unit_test(test_catch_all_and_no_rules),
        cmocka_unit_test(test_explicit_models),
        cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_rules_introspection),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_router_config_errors),
        cmocka_unit_test(test_input_tokens_count_blocks_and_tools),
        cmocka_unit_test(test_step_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
