#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cache/cache_key.h"

/* A task built from plain fields, rebuilt for every variant. */
typedef struct spec {
    const char *tenant, *system, *prompt;
    const char *roles[4], *contents[4];
    size_t n_messages;
    bool has_temp;
    float temp;
    const char *stops[4];
    size_t n_stops;
    /* fields that must not change the key */
    const char *id, *type;
    int64_t deadline;
    Agentq__V1__CachePolicy policy;
    bool allow_fallback;
    const char *meta_value;
} spec;

typedef struct built {
    Agentq__V1__Task t;
    Agentq__V1__Message m[4], *mp[4];
    char *stops[4];
    Agentq__V1__Task__MetadataEntry md, *mdp[1];
} built;

static void build(built *b, const spec *s)
{
    memset(b, 0, sizeof(*b));
    agentq__v1__task__init(&b->t);
    b->t.id = (char *)(s->id ? s->id : "t-1");
    b->t.type = (char *)(s->type ? s->type : "chat");
    b->t.tenant = (char *)(s->tenant ? s->tenant : "");
    b->t.system = (char *)(s->system ? s->system : "");
    b->t.prompt = (char *)(s->prompt ? s->prompt : "");
    for (size_t i = 0; i < s->n_messages; i++) {
        agentq__v1__message__init(&b->m[i]);
        b->m[i].role = (char *)s->roles[i];
        b->m[i].content = (char *)s->contents[i];
        b->mp[i] = &b->m[i];
    }
    b->t.n_messages = s->n_messages;
    b->t.messages = s->n_messages ? b->mp : NULL;
    if (s->has_temp) {
        b->t.temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
        b->t.temperature = s->temp;
    }
    for (size_t i = 0; i < s->n_stops; i++)
        b->stops[i] = (char *)s->stops[i];
    b->t.n_stop_sequences = s->n_stops;
    b->t.stop_sequences = s->n_stops ? b->stops : NULL;
    b->t.deadline_unix_ms = s->deadline;
    b->t.cache_policy = s->policy;
    b->t.allow_fallback = s->allow_fallback;
    if (s->meta_value) {
        agentq__v1__task__metadata_entry__init(&b->md);
        b->md.key = (char *)"trace";
        b->md.value = (char *)s->meta_value;
        b->mdp[0] = &b->md;
        b->t.n_metadata = 1;
        b->t.metadata = b->mdp;
    }
}

static void key_of(const spec *s, const char *model, uint32_t max_tokens, bool share, char *out)
{
    built b;
    aq_err err;
    build(&b, s);
    aq_err_clear(&err);
    if (aq_cache_key(&b.t, model, max_tokens, share, out, &err) != AQ_OK)
        fail_msg("aq_cache_key: %s", err.msg);
    assert_int_equal(strlen(out), AQ_CACHE_KEY_HEX);
    for (size_t i = 0; i < AQ_CACHE_KEY_HEX; i++)
        assert_true((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f'));
}

#define MODEL "claude-haiku-4-5"
static const spec BASE = {
    .tenant = "acme", .system = "Be brief.", .prompt = "Say hi", .has_temp = true, .temp = 0.0f,
    .stops = {"END"}, .n_stops = 1,
};

/* The encoding is the documented one (cache_key.h): this value was computed
 * independently from that description (Python hashlib). A change here
 * invalidates every cache entry: bump AQ_CACHE_KEY_VERSION with it. */
static void test_golden_key(void **state)
{
    (void)state;
    char k[AQ_CACHE_KEY_HEX + 1];
    key_of(&BASE, MODEL, 256, false, k);
    assert_string_equal(k, "6459acf47d23f3e0c063498e56dbcfaa7df61d95613d26d7ad63869e16808f47");
}

/* Every field that changes the answer changes the key. */
static void test_every_field_changes_the_key(void **state)
{
    (void)state;
    char base[AQ_CACHE_KEY_HEX + 1], k[AQ_CACHE_KEY_HEX + 1];
    key_of(&BASE, MODEL, 256, false, base);

    spec v[16];
    size_t n = 0;
    v[n] = BASE, v[n++].tenant = "acme2";
    v[n] = BASE, v[n++].tenant = "";
    v[n] = BASE, v[n++].system = "Be brief!";
    v[n] = BASE, v[n++].system = "";
    v[n] = BASE, v[n++].prompt = "Say hi.";
    v[n] = BASE, v[n].prompt = "", v[n].n_messages = 1, v[n].roles[0] = "user",
    v[n++].contents[0] = "Say ho";
    v[n] = BASE, v[n].prompt = "", v[n].n_messages = 3, v[n].roles[0] = "user",
    v[n].contents[0] = "Say hi", v[n].roles[1] = "assistant", v[n].contents[1] = "hi",
    v[n].roles[2] = "user", v[n++].contents[2] = "again";
    v[n] = BASE, v[n++].has_temp = false;   /* absent (API default 1.0) != 0 */
    v[n] = BASE, v[n++].temp = 0.5f;
    v[n] = BASE, v[n++].temp = 1e-7f;       /* any other float */
    v[n] = BASE, v[n++].n_stops = 0;
    v[n] = BASE, v[n++].stops[0] = "STOP";
    v[n] = BASE, v[n].n_stops = 2, v[n++].stops[1] = "###";
    for (size_t i = 0; i < n; i++) {
        key_of(&v[i], MODEL, 256, false, k);
        if (!strcmp(k, base))
            fail_msg("variant %zu has the base key", i);
        for (size_t j = 0; j < i; j++) {
            char k2[AQ_CACHE_KEY_HEX + 1];
            key_of(&v[j], MODEL, 256, false, k2);
            if (!strcmp(k, k2))
                fail_msg("variants %zu and %zu share a key", j, i);
        }
    }
    /* The routed model and max_tokens. */
    key_of(&BASE, "claude-sonnet-4-5", 256, false, k);
    assert_string_not_equal(k, base);
    key_of(&BASE, MODEL, 257, false, k);
    assert_string_not_equal(k, base);
    /* The role of a message. */
    spec a = BASE, b = BASE;
    a.prompt = b.prompt = "";
    a.n_messages = b.n_messages = 2;
    a.roles[0] = b.roles[0] = "user";
    a.contents[0] = b.contents[0] = "x";
    a.roles[1] = "assistant", b.roles[1] = "user";
    a.contents[1] = b.contents[1] = "y";
    char ka[AQ_CACHE_KEY_HEX + 1], kb[AQ_CACHE_KEY_HEX + 1];
    key_of(&a, MODEL, 256, false, ka);
    key_of(&b, MODEL, 256, false, kb);
    assert_string_not_equal(ka, kb);
    /* The order of stop sequences. */
    a = BASE, b = BASE;
    a.n_stops = b.n_stops = 2;
    a.stops[0] = b.stops[1] = "A";
    a.stops[1] = b.stops[0] = "B";
    key_of(&a, MODEL, 256, false, ka);
    key_of(&b, MODEL, 256, false, kb);
    assert_string_not_equal(ka, kb);
}

/* What does not change the answer does not change the key. */
static void test_irrelevant_fields_keep_the_key(void **state)
{
    (void)state;
    char base[AQ_CACHE_KEY_HEX + 1], k[AQ_CACHE_KEY_HEX + 1];
    key_of(&BASE, MODEL, 256, false, base);
    spec v[8];
    size_t n = 0;
    v[n] = BASE, v[n++].id = "another-id";
    v[n] = BASE, v[n++].type = "other-type";
    v[n] = BASE, v[n++].deadline = 1900000000000LL;
    v[n] = BASE, v[n++].policy = AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH;
    v[n] = BASE, v[n++].allow_fallback = true;
    v[n] = BASE, v[n++].meta_value = "trace-1";
    v[n] = BASE, v[n++].temp = -0.0f; /* -0 is 0 */
    for (size_t i = 0; i < n; i++) {
        key_of(&v[i], MODEL, 256, false, k);
        if (strcmp(k, base))
            fail_msg("variant %zu changed the key", i);
    }
}

/* The prompt shorthand is one user message in the request body: same key. */
static void test_prompt_equals_one_user_message(void **state)
{
    (void)state;
    char a[AQ_CACHE_KEY_HEX + 1], b[AQ_CACHE_KEY_HEX + 1];
    spec m = BASE;
    m.prompt = "";
    m.n_messages = 1;
    m.roles[0] = "user";
    m.contents[0] = "Say hi";
    key_of(&BASE, MODEL, 256, false, a);
    key_of(&m, MODEL, 256, false, b);
    assert_string_equal(a, b);
    /* ... but not one assistant message. */
    m.roles[0] = "assistant";
    key_of(&m, MODEL, 256, false, b);
    assert_string_not_equal(a, b);
}

/* Length prefixes: moving bytes between adjacent fields changes the key. */
static void test_no_ambiguity(void **state)
{
    (void)state;
    char a[AQ_CACHE_KEY_HEX + 1], b[AQ_CACHE_KEY_HEX + 1];
    spec x = BASE, y = BASE;
    x.system = "ab", x.prompt = "c";
    y.system = "a", y.prompt = "bc";
    key_of(&x, MODEL, 256, false, a);
    key_of(&y, MODEL, 256, false, b);
    assert_string_not_equal(a, b);

    /* message contents */
    x = BASE, y = BASE;
    x.prompt = y.prompt = "";
    x.n_messages = y.n_messages = 3;
    x.roles[0] = y.roles[0] = x.roles[2] = y.roles[2] = "user";
    x.roles[1] = y.roles[1] = "assistant";
    x.contents[0] = "ab", x.contents[1] = "c", x.contents[2] = "d";
    y.contents[0] = "a", y.contents[1] = "bc", y.contents[2] = "d";
    key_of(&x, MODEL, 256, false, a);
    key_of(&y, MODEL, 256, false, b);
    assert_string_not_equal(a, b);

    /* stop sequences: ["ab"] vs ["a", "b"] */
    x = BASE, y = BASE;
    x.n_stops = 1, x.stops[0] = "ab";
    y.n_stops = 2, y.stops[0] = "a", y.stops[1] = "b";
    key_of(&x, MODEL, 256, false, a);
    key_of(&y, MODEL, 256, false, b);
    assert_string_not_equal(a, b);

    /* tenant vs model: tenant "a" model "bc" vs tenant "ab" model "c" */
    x = BASE, y = BASE;
    x.tenant = "a", y.tenant = "ab";
    key_of(&x, "bc", 256, false, a);
    key_of(&y, "c", 256, false, b);
    assert_string_not_equal(a, b);

    /* system text that looks like an encoded field */
    x = BASE, y = BASE;
    x.system = "";
    y.system = "Y";
    key_of(&x, MODEL, 256, false, a);
    key_of(&y, MODEL, 256, false, b);
    assert_string_not_equal(a, b);
}

static void test_tenant_scope_and_sharing(void **state)
{
    (void)state;
    char a[AQ_CACHE_KEY_HEX + 1], b[AQ_CACHE_KEY_HEX + 1], c[AQ_CACHE_KEY_HEX + 1];
    spec x = BASE, y = BASE, z = BASE;
    x.tenant = "acme", y.tenant = "globex", z.tenant = "";
    /* scoped: every tenant its own key */
    key_of(&x, MODEL, 256, false, a);
    key_of(&y, MODEL, 256, false, b);
    assert_string_not_equal(a, b);
    /* shared: one key for all */
    key_of(&x, MODEL, 256, true, a);
    key_of(&y, MODEL, 256, true, b);
    key_of(&z, MODEL, 256, true, c);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    /* shared differs from scoped, even for the empty tenant */
    key_of(&z, MODEL, 256, false, b);
    assert_string_not_equal(a, b);
}

static void test_plan(void **state)
{
    (void)state;
    static const struct {
        Agentq__V1__CachePolicy policy;
        bool has_temp;
        float temp;
        bool read, write, det;
    } cases[] = {
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED, true, 0.0f, true, true, true},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED, true, -0.0f, true, true, true},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED, true, 0.3f, false, false, false},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED, false, 0.0f, false, false, false},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN, true, 0.9f, true, true, false},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN, false, 0.0f, true, true, false},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN, true, 0.0f, true, true, true},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_BYPASS, true, 0.0f, false, false, true},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_BYPASS, true, 0.5f, false, false, false},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH, true, 0.0f, false, true, true},
        {AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH, false, 0.0f, false, true, false},
        {(Agentq__V1__CachePolicy)9, true, 0.0f, false, false, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        spec s = BASE;
        s.policy = cases[i].policy;
        s.has_temp = cases[i].has_temp;
        s.temp = cases[i].temp;
        built b;
        build(&b, &s);
        aq_cache_plan p = aq_cache_plan_for(&b.t);
        if (p.read != cases[i].read || p.write != cases[i].write ||
            aq_cache_deterministic(&b.t) != cases[i].det)
            fail_msg("case %zu: read %d write %d det %d", i, p.read, p.write,
                     aq_cache_deterministic(&b.t));
    }
}

static void test_errors(void **state)
{
    (void)state;
    built b;
    build(&b, &BASE);
    char out[AQ_CACHE_KEY_HEX + 1] = "untouched";
    aq_err err;
    assert_int_equal(aq_cache_key(NULL, MODEL, 1, false, out, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_cache_key(&b.t, "", 1, false, out, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_cache_key(&b.t, NULL, 1, false, out, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_cache_key(&b.t, MODEL, 0, false, out, &err), AQ_INVALID_ARG);
    assert_string_equal(out, "untouched");
    assert_int_equal(aq_cache_key(&b.t, MODEL, 1, false, NULL, &err), AQ_INVALID_ARG);
}

/* ---- content blocks and tools ---- */

typedef struct agent_task {
    Agentq__V1__Task t;
    Agentq__V1__Message m[3], *mp[3];
    Agentq__V1__ContentBlock b[5], *m0[2], *m1[1], *m2[1], *rc[1];
    Agentq__V1__TextBlock tb[2];
    Agentq__V1__ImageBlock ib;
    Agentq__V1__MediaSource src;
    Agentq__V1__ToolUseBlock ub;
    Agentq__V1__ToolResultBlock rb;
    Agentq__V1__Tool tools[2], *tp[2];
    Agentq__V1__ToolChoice tc;
} agent_task;

static void agent_task_init(agent_task *a)
{
    memset(a, 0, sizeof(*a));
    agentq__v1__task__init(&a->t);
    a->t.id = "t-1";
    a->t.type = "agent";
    a->t.tenant = "acme";
    a->t.temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
    for (int i = 0; i < 3; i++) {
        agentq__v1__message__init(&a->m[i]);
        a->mp[i] = &a->m[i];
    }
    for (int i = 0; i < 5; i++)
        agentq__v1__content_block__init(&a->b[i]);
    for (int i = 0; i < 2; i++) {
        agentq__v1__text_block__init(&a->tb[i]);
        agentq__v1__tool__init(&a->tools[i]);
        a->tp[i] = &a->tools[i];
    }
    agentq__v1__image_block__init(&a->ib);
    agentq__v1__media_source__init(&a->src);
    agentq__v1__tool_use_block__init(&a->ub);
    agentq__v1__tool_result_block__init(&a->rb);
    agentq__v1__tool_choice__init(&a->tc);
    a->m[0].role = "user";
    a->tb[0].text = "Weather here?";
    a->b[0].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    a->b[0].text = &a->tb[0];
    a->src.media_type = "image/png";
    a->src.data.data = (uint8_t *)"png!";
    a->src.data.len = 4;
    a->ib.source = &a->src;
    a->b[1].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE;
    a->b[1].image = &a->ib;
    a->m0[0] = &a->b[0];
    a->m0[1] = &a->b[1];
    a->m[0].blocks = a->m0;
    a->m[0].n_blocks = 2;
    a->m[1].role = "assistant";
    a->ub.id = "toolu_1";
    a->ub.name = "get_weather";
    a->ub.input_json = "{\"city\":\"Paris\"}";
    a->b[2].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
    a->b[2].tool_use = &a->ub;
    a->m1[0] = &a->b[2];
    a->m[1].blocks = a->m1;
    a->m[1].n_blocks = 1;
    a->m[2].role = "user";
    a->tb[1].text = "18C";
    a->b[3].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    a->b[3].text = &a->tb[1];
    a->rc[0] = &a->b[3];
    a->rb.tool_use_id = "toolu_1";
    a->rb.content = a->rc;
    a->rb.n_content = 1;
    a->b[4].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT;
    a->b[4].tool_result = &a->rb;
    a->m2[0] = &a->b[4];
    a->m[2].blocks = a->m2;
    a->m[2].n_blocks = 1;
    a->t.messages = a->mp;
    a->t.n_messages = 3;
    a->tools[0].name = "get_weather";
    a->tools[0].description = "Weather of a city";
    a->tools[0].input_schema_json = "{\"type\":\"object\"}";
    a->tools[1].name = "get_time";
    a->tools[1].input_schema_json = "{\"type\":\"object\"}";
    a->t.tools = a->tp;
    a->t.n_tools = 2;
}

static void agent_key(const agent_task *a, char *out)
{
    aq_err err;
    if (aq_cache_key(&a->t, MODEL, 256, false, out, &err) != AQ_OK)
        fail_msg("aq_cache_key: %s", err.msg);
}

/* Tasks that differ only in their tools, tool_choice or a block field have
 * different keys; fields that do not change the request keep it. */
static void test_blocks_and_tools_change_the_key(void **state)
{
    (void)state;
    agent_task a;
    char base[AQ_CACHE_KEY_HEX + 1], k[AQ_CACHE_KEY_HEX + 1];
    agent_task_init(&a);
    agent_key(&a, base);
    agent_key(&a, k);
    assert_string_equal(k, base);

#define CHANGED(stmt)                                                                              \
    do {                                                                                           \
        agent_task_init(&a);                                                                       \
        stmt;                                                                                      \
        agent_key(&a, k);                                                                          \
        if (strcmp(k, base) == 0)                                                                  \
            fail_msg("key unchanged by: %s", #stmt);                                               \
    } while (0)
    CHANGED(a.t.n_tools = 1);                                  /* one tool fewer */
    CHANGED(a.t.n_tools = 0);                                  /* no tools at all */
    CHANGED(a.tools[1].name = "get_date");
    CHANGED(a.tools[0].description = "Weather");
    CHANGED(a.tools[1].input_schema_json = "{\"type\":\"object\",\"required\":[]}");
    CHANGED((a.t.tool_choice = &a.tc, a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY));
    CHANGED((a.t.tool_choice = &a.tc, a.tc.disable_parallel_tool_use = true));
    CHANGED((a.t.tool_choice = &a.tc, a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL,
             a.tc.name = "get_time"));
    CHANGED(a.tb[0].text = "Weather there?");
    CHANGED(a.src.data.len = 3);
    CHANGED(a.src.media_type = "image/gif");
    CHANGED((a.src.data.len = 0, a.src.url = "https://example.com/p.png"));
    CHANGED(a.ub.input_json = "{\"city\":\"Lyon\"}");
    CHANGED(a.ub.id = "toolu_2");
    CHANGED(a.rb.is_error = true);
    CHANGED(a.rb.n_content = 0);
    CHANGED(a.tb[1].text = "19C");
    CHANGED(a.m[0].n_blocks = 1);                              /* the image dropped */
    CHANGED((a.m0[0] = &a.b[1], a.m0[1] = &a.b[0]));            /* block order */
#undef CHANGED

    /* auto without options is what no tool_choice sends: the same key */
    agent_task_init(&a);
    a.t.tool_choice = &a.tc;
    agent_key(&a, k);
    assert_string_equal(k, base);
    /* run settings shape a run, not an answer */
    a.t.max_steps = 7;
    a.t.max_tool_calls = 9;
    a.t.ceiling_action = AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FINAL;
    a.t.session_id = "s-1";
    agent_key(&a, k);
    assert_string_equal(k, base);

    /* text as a block is not the same request as text as a string */
    spec s = BASE;
    char plain[AQ_CACHE_KEY_HEX + 1];
    s.prompt = NULL;
    s.roles[0] = "user";
    s.contents[0] = "Weather here?";
    s.n_messages = 1;
    s.n_stops = 0;
    key_of(&s, MODEL, 256, false, plain);
    agent_task_init(&a);
    a.t.system = "Be brief.";
    a.t.n_messages = 1;
    a.m[0].n_blocks = 1;
    a.t.n_tools = 0;
    agent_key(&a, k);
    assert_string_not_equal(k, plain);
}

/* The key of a request's pieces (an agent step) is the task's key. */
static void test_key_of_parts(void **state)
{
    (void)state;
    agent_task a;
    agent_task_init(&a);
    char k1[AQ_CACHE_KEY_HEX + 1], k2[AQ_CACHE_KEY_HEX + 1];
    agent_key(&a, k1);
    aq_llm_request_parts p;
    aq_llm_request_parts_from_task(&a.t, MODEL, 256, &p);
    aq_err err;
    assert_int_equal(aq_cache_key_parts(&p, false, k2, &err), AQ_OK);
    assert_string_equal(k1, k2);
    /* a grown conversation: another key */
    p.n_messages = 1;
    assert_int_equal(aq_cache_key_parts(&p, false, k2, &err), AQ_OK);
    assert_string_not_equal(k1, k2);
    assert_int_equal(aq_cache_key_parts(NULL, false, k2, &err), AQ_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_key),
        cmocka_unit_test(test_every_field_changes_the_key),
        cmocka_unit_test(test_irrelevant_fields_keep_the_key),
        cmocka_unit_test(test_prompt_equals_one_user_message),
        cmocka_unit_test(test_no_ambiguity),
        cmocka_unit_test(test_tenant_scope_and_sharing),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_blocks_and_tools_change_the_key),
        cmocka_unit_test(test_key_of_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
