#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agentq/v1/task.pb-c.h"
#include "core/buf.h"
#include "llm/llm_request.h"

#define MODEL "claude-sonnet-4-5"

/* Build and parse back; the caller decrefs. */
static json_t *build_ok(const Agentq__V1__Task *t, uint32_t max_tokens)
{
    aq_buf b;
    aq_err err;
    aq_buf_init(&b, 1 << 20);
    aq_err_clear(&err);
    assert_int_equal(aq_llm_request_build(t, MODEL, max_tokens, &b, &err), AQ_OK);
    assert_non_null(b.data);
    assert_int_equal(strlen(b.data), b.len);
    json_error_t jerr;
    json_t *root = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(root);
    aq_buf_free(&b);
    return root;
}

static void test_prompt_shorthand(void **state)
{
    (void)state;
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.prompt = (char *)"Say hi";
    json_t *root = build_ok(&t, 256);

    assert_string_equal(json_string_value(json_object_get(root, "model")), MODEL);
    assert_int_equal(json_integer_value(json_object_get(root, "max_tokens")), 256);
    json_t *msgs = json_object_get(root, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(json_string_value(json_object_get(m, "role")), "user");
    assert_string_equal(json_string_value(json_object_get(m, "content")), "Say hi");
    /* nothing optional was set */
    assert_null(json_object_get(root, "system"));
    assert_null(json_object_get(root, "temperature"));
    assert_null(json_object_get(root, "stop_sequences"));
    assert_null(json_object_get(root, "metadata"));
    assert_int_equal(json_object_size(root), 3);
    json_decref(root);
}

static void test_messages_in_order_with_system(void **state)
{
    (void)state;
    Agentq__V1__Message m1, m2, m3;
    agentq__v1__message__init(&m1);
    agentq__v1__message__init(&m2);
    agentq__v1__message__init(&m3);
    m1.role = (char *)"user";
    m1.content = (char *)"What is 2+2?";
    m2.role = (char *)"assistant";
    m2.content = (char *)"4";
    m3.role = (char *)"user";
    m3.content = (char *)"And \"3+3\"?\n\u00e9\u4e16";
    Agentq__V1__Message *ms[] = {&m1, &m2, &m3};
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.system = (char *)"You are terse.";
    t.n_messages = 3;
    t.messages = ms;
    t.prompt = (char *)"";

    json_t *root = build_ok(&t, 1024);
    assert_string_equal(json_string_value(json_object_get(root, "system")), "You are terse.");
    json_t *msgs = json_object_get(root, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(msgs, i);
        assert_string_equal(json_string_value(json_object_get(m, "role")), ms[i]->role);
        assert_string_equal(json_string_value(json_object_get(m, "content")), ms[i]->content);
    }
    json_decref(root);
}

static void test_temperature_present_and_absent(void **state)
{
    (void)state;
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.prompt = (char *)"x";

    /* absent: the oneof is unset even though the float is 0 */
    json_t *root = build_ok(&t, 10);
    assert_null(json_object_get(root, "temperature"));
    json_decref(root);

    /* present and zero: sent as 0 */
    t.temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
    t.temperature = 0.0f;
    root = build_ok(&t, 10);
    assert_true(json_is_number(json_object_get(root, "temperature")));
    assert_true(json_number_value(json_object_get(root, "temperature")) == 0.0);
    json_decref(root);

    /* 0.7f is sent as 0.7, not 0.699999988079071 */
    t.temperature = 0.7f;
    aq_buf b;
    aq_buf_init(&b, 4096);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, &b, NULL), AQ_OK);
    assert_non_null(strstr(b.data, "\"temperature\":0.7"));
    assert_null(strstr(b.data, "0.69999"));
    aq_buf_free(&b);

    t.temperature = 1.0f;
    root = build_ok(&t, 10);
    assert_true(json_number_value(json_object_get(root, "temperature")) == 1.0);
    json_decref(root);
}

static void test_stop_sequences_and_metadata(void **state)
{
    (void)state;
    char *stops[] = {(char *)"\n\nHuman:", (char *)"END"};
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.prompt = (char *)"x";
    t.n_stop_sequences = 2;
    t.stop_sequences = stops;
    t.tenant = (char *)"tenant-42";

    json_t *root = build_ok(&t, 10);
    json_t *ss = json_object_get(root, "stop_sequences");
    assert_int_equal(json_array_size(ss), 2);
    assert_string_equal(json_string_value(json_array_get(ss, 0)), "\n\nHuman:");
    assert_string_equal(json_string_value(json_array_get(ss, 1)), "END");
    json_t *meta = json_object_get(root, "metadata");
    assert_true(json_is_object(meta));
    assert_int_equal(json_object_size(meta), 1);
    assert_string_equal(json_string_value(json_object_get(meta, "user_id")), "tenant-42");
    json_decref(root);
}

static void test_appends_to_existing_content(void **state)
{
    (void)state;
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.prompt = (char *)"x";
    aq_buf b;
    aq_buf_init(&b, 4096);
    assert_int_equal(aq_buf_append_str(&b, "PREFIX"), AQ_OK);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, &b, NULL), AQ_OK);
    assert_memory_equal(b.data, "PREFIX{", 7);
    aq_buf_free(&b);
}

static void test_cap_exceeded_leaves_buffer(void **state)
{
    (void)state;
    char big[2048];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.prompt = big;

    aq_buf b;
    aq_err err;
    aq_buf_init(&b, 1024);
    assert_int_equal(aq_buf_append_str(&b, "keep"), AQ_OK);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, &b, &err), AQ_TOO_BIG);
    assert_int_equal(err.status, AQ_TOO_BIG);
    assert_non_null(strstr(err.msg, "cap"));
    assert_non_null(strstr(err.msg, "1024"));
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    aq_buf_free(&b);

    /* the same body fits under a larger cap */
    aq_buf_init(&b, 4096);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, &b, &err), AQ_OK);
    aq_buf_free(&b);

    /* a cap of zero: nothing fits */
    aq_buf_init(&b, 0);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, &b, &err), AQ_TOO_BIG);
    assert_int_equal(b.len, 0);
    aq_buf_free(&b);
}

static void test_invalid_inputs(void **state)
{
    (void)state;
    Agentq__V1__Task t;
    aq_buf b;
    aq_err err;
    agentq__v1__task__init(&t);
    aq_buf_init(&b, 4096);

    /* neither prompt nor messages */
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, &b, &err), AQ_TASK_INVALID);
    t.prompt = (char *)"x";
    assert_int_equal(aq_llm_request_build(&t, "", 10, &b, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_llm_request_build(&t, NULL, 10, &b, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 0, &b, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_llm_request_build(NULL, MODEL, 10, &b, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, NULL, &err), AQ_INVALID_ARG);

    /* invalid UTF-8 is named, not sent */
    t.prompt = (char *)"bad \xff\xfe bytes";
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, &b, &err), AQ_TASK_INVALID);
    assert_non_null(strstr(err.msg, "prompt"));
    t.prompt = (char *)"x";
    t.tenant = (char *)"\xc3";
    assert_int_equal(aq_llm_request_build(&t, MODEL, 10, &b, &err), AQ_TASK_INVALID);
    assert_non_null(strstr(err.msg, "tenant"));
    assert_int_equal(b.len, 0);
    aq_buf_free(&b);
}

static void test_estimates(void **state)
{
    (void)state;
    static const struct {
        size_t bytes;
        int64_t tokens;
    } cases[] = {{0, 0}, {1, 1}, {3, 1}, {4, 1}, {5, 2}, {8, 2}, {9, 3}, {4000, 1000}, {4001, 1001}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(aq_llm_estimate_tokens(cases[i].bytes), cases[i].tokens);
    assert_int_equal(aq_llm_estimate_tokens(SIZE_MAX), (int64_t)(SIZE_MAX / 4 + 1));

    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    assert_int_equal(aq_llm_task_input_tokens(NULL), 0);
    assert_int_equal(aq_llm_task_input_tokens(&t), 0);
    t.system = (char *)"12345";  /* 5 bytes */
    t.prompt = (char *)"123";    /* 3: together 8 -> 2, not ceil(5/4)+ceil(3/4) = 3 */
    assert_int_equal(aq_llm_task_input_tokens(&t), 2);
    Agentq__V1__Message m1, m2;
    agentq__v1__message__init(&m1);
    agentq__v1__message__init(&m2);
    m1.role = (char *)"user";
    m1.content = (char *)"abcd";
    m2.role = (char *)"assistant";
    m2.content = (char *)"e";
    Agentq__V1__Message *ms[] = {&m1, &m2};
    t.prompt = (char *)"";
    t.n_messages = 2;
    t.messages = ms;
    assert_int_equal(aq_llm_task_input_tokens(&t), 3); /* 5 + 4 + 1 = 10 bytes */
}

/* Prompt caching: the system prompt becomes one marked text block at or
 * above the threshold; below it, with 0, or without options: a string. */
static void test_prompt_cache_mark(void **state)
{
    (void)state;
    char system[4001];
    memset(system, 'a', 4000);
    system[4000] = '\0'; /* 1000 estimated tokens */
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.prompt = (char *)"question";
    t.system = system;

    static const struct {
        uint32_t min;
        bool marked;
    } cases[] = {{0, false}, {1, true}, {999, true}, {1000, true}, {1001, false}, {100000, false}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_llm_request_opts opts = {.prompt_cache_min_tokens = cases[i].min};
        assert_int_equal(aq_llm_request_marks_system(&t, &opts), cases[i].marked);
        aq_buf b;
        aq_err err;
        aq_buf_init(&b, 1 << 20);
        assert_int_equal(aq_llm_request_build_opts(&t, MODEL, 64, &opts, &b, &err), AQ_OK);
        json_t *root = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(root);
        json_t *sys = json_object_get(root, "system");
        if (cases[i].marked) {
            /* The shape from the Messages API reference. */
            assert_true(json_is_array(sys));
            assert_int_equal(json_array_size(sys), 1);
            json_t *blk = json_array_get(sys, 0);
            assert_int_equal(json_object_size(blk), 3);
            assert_string_equal(json_string_value(json_object_get(blk, "type")), "text");
            assert_string_equal(json_string_value(json_object_get(blk, "text")), system);
            json_t *cc = json_object_get(blk, "cache_control");
            assert_int_equal(json_object_size(cc), 1);
            assert_string_equal(json_string_value(json_object_get(cc, "type")), "ephemeral");
            assert_non_null(strstr(b.data, "\"cache_control\":{\"type\":\"ephemeral\"}"));
        } else {
            assert_string_equal(json_string_value(sys), system);
            assert_null(strstr(b.data, "cache_control"));
        }
        /* Everything else is as without options. */
        assert_string_equal(json_string_value(json_object_get(root, "model")), MODEL);
        assert_int_equal(json_array_size(json_object_get(root, "messages")), 1);
        json_decref(root);
        aq_buf_free(&b);
    }

    /* No system prompt: nothing to mark, no "system" key. */
    aq_llm_request_opts on = {.prompt_cache_min_tokens = 1};
    t.system = (char *)"";
    assert_false(aq_llm_request_marks_system(&t, &on));
    assert_false(aq_llm_request_marks_system(&t, NULL));
    aq_buf b;
    aq_buf_init(&b, 4096);
    assert_int_equal(aq_llm_request_build_opts(&t, MODEL, 64, &on, &b, NULL), AQ_OK);
    assert_null(strstr(b.data, "system"));

    /* NULL options: byte for byte what aq_llm_request_build writes. */
    t.system = system;
    aq_buf b2;
    aq_buf_init(&b2, 1 << 20);
    aq_buf_reset(&b);
    b.cap = 1 << 20;
    assert_int_equal(aq_llm_request_build_opts(&t, MODEL, 64, NULL, &b, NULL), AQ_OK);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 64, &b2, NULL), AQ_OK);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);

    /* A marked system prompt that is not UTF-8 is named, and the buffer kept. */
    t.system = (char *)"bad \xff";
    aq_err err;
    size_t before = b.len;
    assert_int_equal(aq_llm_request_build_opts(&t, MODEL, 64, &on, &b, &err), AQ_TASK_INVALID);
    assert_non_null(strstr(err.msg, "system"));
    assert_int_equal(b.len, before);
    aq_buf_free(&b);
    aq_buf_free(&b2);
}

/* A string of n copies of c (caller frees). */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Build `t` into a buffer capped at aq_llm_request_body_cap(lim); the body
 * must parse back. Returns its length. */
static size_t build_under_body_cap(const Agentq__V1__Task *t, const char *model,
                                   const aq_task_limits *lim, const aq_llm_request_opts *opts)
{
    aq_err err;
    aq_err_clear(&err);
    assert_int_equal(aq_task_validate(t, lim, &err), AQ_OK);
    aq_buf b;
    aq_buf_init(&b, aq_llm_request_body_cap(lim));
    aq_status st = aq_llm_request_build_opts(t, model, 64000, opts, &b, &err);
    if (st != AQ_OK)
        fail_msg("build under the body cap of %zu: %s", b.cap, err.msg);
    json_error_t jerr;
    json_t *root = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        fail_msg("the body does not parse: %s", jerr.text);
    json_decref(root);
    size_t len = b.len;
    aq_buf_free(&b);
    return len;
}

/* A prompt the prompt cap admits never fails on the body's size, however
 * much JSON escaping makes it grow: '"' and '\' are 2 bytes, a control
 * character 6 (\u00XX). The cap was max_prompt_bytes + 64 KiB: a prompt of
 * 600,000 '"' (57% of the default cap) failed with "request body is over
 * the 1114112-byte cap". */
static void test_body_cap_admits_worst_escapes(void **state)
{
    (void)state;
    aq_task_limits lim;
    aq_task_limits_default(&lim);

    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.id = (char *)"esc-1";
    t.type = (char *)"it";

    const char fill[] = {'"', '\\', '\x01', '\x1f', '\n'};
    const size_t per_byte[] = {2, 2, 6, 6, 2};
    for (size_t i = 0; i < sizeof(fill); i++) {
        char *prompt = repeat(fill[i], lim.max_prompt_bytes);
        t.prompt = prompt;
        size_t len = build_under_body_cap(&t, MODEL, &lim, NULL);
        assert_true(len >= per_byte[i] * lim.max_prompt_bytes);
        free(prompt);
    }
    t.prompt = (char *)"";
    /* The cap is within reach of the worst case (a cap, not a reservation:
     * aq_buf allocates as the body grows). */
    size_t cap = aq_llm_request_body_cap(&lim);
    assert_true(cap >= 6 * lim.max_prompt_bytes);
    assert_true(cap < 7 * lim.max_prompt_bytes);
    assert_int_equal(aq_llm_request_body_cap(NULL), 0);

    /* Everything at its cap and escaped at worst: a task-named model,
     * system (marked for prompt caching, the longer form), max_messages
     * messages sharing the prompt bytes, every stop sequence, the tenant,
     * temperature. */
    size_t n_msgs = lim.max_messages;
    size_t sys_len = lim.max_prompt_bytes / 2;
    size_t content_len = (lim.max_prompt_bytes - sys_len) / n_msgs;
    char *sys = repeat('\x01', sys_len);
    char *content = repeat('\x01', content_len);
    char *field = repeat('\x01', lim.max_field_bytes);
    Agentq__V1__Message *msgs = calloc(n_msgs, sizeof(*msgs));
    Agentq__V1__Message **mp = calloc(n_msgs, sizeof(*mp));
    char **stops = calloc(lim.max_stop_sequences, sizeof(*stops));
    assert_non_null(msgs);
    assert_non_null(mp);
    assert_non_null(stops);
    for (size_t i = 0; i < n_msgs; i++) {
        agentq__v1__message__init(&msgs[i]);
        msgs[i].role = (char *)(i % 2 == 0 ? "user" : "assistant");
        msgs[i].content = content;
        mp[i] = &msgs[i];
    }
    for (size_t i = 0; i < lim.max_stop_sequences; i++)
        stops[i] = field;
    t.system = sys;
    t.n_messages = n_msgs;
    t.messages = mp;
    t.n_stop_sequences = lim.max_stop_sequences;
    t.stop_sequences = stops;
    t.tenant = field;
    t.model = field;
    t.temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
    t.temperature = 1.0e-7f;
    aq_llm_request_opts cache_on = {.prompt_cache_min_tokens = 1};
    size_t len = build_under_body_cap(&t, field, &lim, &cache_on);
    assert_true(len >= 6 * (lim.max_prompt_bytes - lim.max_prompt_bytes % n_msgs));
    free(stops);
    free(mp);
    free(msgs);
    free(field);
    free(content);
    free(sys);

    /* A smaller prompt cap: a smaller body cap, same rule. */
    lim.max_prompt_bytes = 1024;
    t = (Agentq__V1__Task)AGENTQ__V1__TASK__INIT;
    t.id = (char *)"esc-2";
    t.type = (char *)"it";
    t.prompt = repeat('\x01', 1024);
    build_under_body_cap(&t, MODEL, &lim, NULL);
    free(t.prompt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_shorthand),
        cmocka_unit_test(test_messages_in_order_with_system),
        cmocka_unit_test(test_temperature_present_and_absent),
        cmocka_unit_test(test_stop_sequences_and_metadata),
        cmocka_unit_test(test_appends_to_existing_content),
        cmocka_unit_test(test_cap_exceeded_leaves_buffer),
        cmocka_unit_test(test_invalid_inputs),
        cmocka_unit_test(test_estimates),
        cmocka_unit_test(test_prompt_cache_mark),
        cmocka_unit_test(test_body_cap_admits_worst_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
