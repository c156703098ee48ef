#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
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
    aq_task_limits text_only = lim; /* no blocks, tools or media */
    text_only.max_blocks = text_only.max_tools = text_only.max_media_bytes = 0;
    size_t cap = aq_llm_request_body_cap(&text_only);
    assert_true(cap >= 6 * lim.max_prompt_bytes);
    assert_true(cap < 7 * lim.max_prompt_bytes);
    /* media travel base64-encoded, 4 bytes for 3 */
    assert_true(aq_llm_request_body_cap(&lim) >= cap + lim.max_media_bytes / 3 * 4);
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

/* ---- content blocks, tools, breakpoints ---- */

/* Bodies of old-style tasks (no blocks, no tools), byte for byte as before
 * content blocks existed: the single-call path must not change. */
static void test_old_bodies_unchanged(void **state)
{
    (void)state;
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    char *stops[] = {(char *)"END", (char *)"\n\nH:"};
    t.system = (char *)"Be \"terse\".\n";
    t.prompt = (char *)"Say hi \xc3\xa9";
    t.temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
    t.temperature = 0.7f;
    t.n_stop_sequences = 2;
    t.stop_sequences = stops;
    t.tenant = (char *)"acme";
    aq_buf b;
    aq_buf_init(&b, 1 << 20);
    assert_int_equal(aq_llm_request_build(&t, MODEL, 256, &b, NULL), AQ_OK);
    assert_string_equal(b.data,
                        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":256,\"system\":\"Be "
                        "\\\"terse\\\".\\n\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hi "
                        "\xc3\xa9\"}],\"temperature\":0.7,\"stop_sequences\":[\"END\",\"\\n\\nH:\"],"
                        "\"metadata\":{\"user_id\":\"acme\"}}");
    Agentq__V1__Message m1, m2;
    agentq__v1__message__init(&m1);
    agentq__v1__message__init(&m2);
    m1.role = (char *)"user";
    m1.content = (char *)"Q";
    m2.role = (char *)"assistant";
    m2.content = (char *)"A";
    Agentq__V1__Message *ms[] = {&m1, &m2};
    t.prompt = (char *)"";
    t.n_messages = 2;
    t.messages = ms;
    aq_llm_request_opts o = {.prompt_cache_min_tokens = 1};
    aq_buf_reset(&b);
    assert_int_equal(aq_llm_request_build_opts(&t, "claude-haiku-4-5", 10, &o, &b, NULL), AQ_OK);
    assert_string_equal(
        b.data, "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"system\":[{\"text\":\"Be "
                "\\\"terse\\\".\\n\",\"type\":\"text\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
                "\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\","
                "\"content\":\"A\"}],\"temperature\":0.7,\"stop_sequences\":[\"END\",\"\\n\\nH:\"],"
                "\"metadata\":{\"user_id\":\"acme\"}}");
    /* streaming adds "stream":true last and changes nothing else */
    o.stream = true;
    aq_buf_reset(&b);
    assert_int_equal(aq_llm_request_build_opts(&t, "claude-haiku-4-5", 10, &o, &b, NULL), AQ_OK);
    assert_string_equal(
        b.data, "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"system\":[{\"text\":\"Be "
                "\\\"terse\\\".\\n\",\"type\":\"text\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
                "\"messages\":[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\","
                "\"content\":\"A\"}],\"temperature\":0.7,\"stop_sequences\":[\"END\",\"\\n\\nH:\"],"
                "\"metadata\":{\"user_id\":\"acme\"},\"stream\":true}");
    aq_buf_free(&b);
}

typedef struct conv {
    Agentq__V1__Task task;
    Agentq__V1__Message m[3];
    Agentq__V1__Message *mp[3];
    Agentq__V1__ContentBlock b[9];
    Agentq__V1__ContentBlock *m0[4], *m1[2], *m2[2], *rc[1];
    Agentq__V1__TextBlock tb[4];
    Agentq__V1__ImageBlock ib;
    Agentq__V1__DocumentBlock db[2];
    Agentq__V1__MediaSource src[3];
    Agentq__V1__ToolUseBlock ub;
    Agentq__V1__ToolResultBlock rb;
    Agentq__V1__Tool tools[2];
    Agentq__V1__Tool *tp[2];
    Agentq__V1__ToolChoice tc;
} conv;

static void text_block(Agentq__V1__ContentBlock *b, Agentq__V1__TextBlock *tb, const char *s)
{
    agentq__v1__content_block__init(b);
    agentq__v1__text_block__init(tb);
    tb->text = (char *)s;
    b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    b->text = tb;
}

static void conv_init(conv *c)
{
    memset(c, 0, sizeof(*c));
    agentq__v1__task__init(&c->task);
    for (int i = 0; i < 3; i++) {
        agentq__v1__message__init(&c->m[i]);
        c->mp[i] = &c->m[i];
    }
    for (int i = 0; i < 3; i++)
        agentq__v1__media_source__init(&c->src[i]);
    /* user: text, image (base64), document by URL, plain-text document */
    c->m[0].role = (char *)"user";
    text_block(&c->b[0], &c->tb[0], "Look");
    agentq__v1__content_block__init(&c->b[1]);
    agentq__v1__image_block__init(&c->ib);
    c->src[0].media_type = (char *)"image/png";
    c->src[0].data.data = (uint8_t *)"abc";
    c->src[0].data.len = 3;
    c->ib.source = &c->src[0];
    c->b[1].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE;
    c->b[1].image = &c->ib;
    for (int k = 0; k < 2; k++) {
        agentq__v1__content_block__init(&c->b[2 + k]);
        agentq__v1__document_block__init(&c->db[k]);
        c->db[k].source = &c->src[1 + k];
        c->b[2 + k].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT;
        c->b[2 + k].document = &c->db[k];
    }
    c->src[1].url = (char *)"https://example.com/r.pdf";
    c->db[0].title = (char *)"Report";
    c->src[2].media_type = (char *)"text/plain";
    c->src[2].data.data = (uint8_t *)"hi \"x\"";
    c->src[2].data.len = 6;
    for (int k = 0; k < 4; k++)
        c->m0[k] = &c->b[k];
    c->m[0].n_blocks = 4;
    c->m[0].blocks = c->m0;
    /* assistant: text, tool_use */
    c->m[1].role = (char *)"assistant";
    text_block(&c->b[4], &c->tb[1], "Checking");
    agentq__v1__content_block__init(&c->b[5]);
    agentq__v1__tool_use_block__init(&c->ub);
    c->ub.id = (char *)"toolu_1";
    c->ub.name = (char *)"get_weather";
    c->ub.input_json = (char *)"{ \"city\" : \"Paris\", \"n\": 2, \"x\": [true, null] }";
    c->b[5].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
    c->b[5].tool_use = &c->ub;
    c->m1[0] = &c->b[4];
    c->m1[1] = &c->b[5];
    c->m[1].n_blocks = 2;
    c->m[1].blocks = c->m1;
    /* user: tool_result (is_error), text */
    c->m[2].role = (char *)"user";
    text_block(&c->b[6], &c->tb[2], "18C");
    c->rc[0] = &c->b[6];
    agentq__v1__content_block__init(&c->b[7]);
    agentq__v1__tool_result_block__init(&c->rb);
    c->rb.tool_use_id = (char *)"toolu_1";
    c->rb.content = c->rc;
    c->rb.n_content = 1;
    c->rb.is_error = true;
    c->b[7].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT;
    c->b[7].tool_result = &c->rb;
    text_block(&c->b[8], &c->tb[3], "thanks");
    c->m2[0] = &c->b[7];
    c->m2[1] = &c->b[8];
    c->m[2].n_blocks = 2;
    c->m[2].blocks = c->m2;
    c->task.n_messages = 3;
    c->task.messages = c->mp;
    for (int k = 0; k < 2; k++) {
        agentq__v1__tool__init(&c->tools[k]);
        c->tp[k] = &c->tools[k];
    }
    c->tools[0].name = (char *)"get_weather";
    c->tools[0].description = (char *)"Weather";
    c->tools[0].input_schema_json =
        (char *)"{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}";
    c->tools[1].name = (char *)"noop";
    c->tools[1].input_schema_json = (char *)"{\"type\":\"object\"}";
    c->task.n_tools = 2;
    c->task.tools = c->tp;
    agentq__v1__tool_choice__init(&c->tc);
}

static char *build_str(const Agentq__V1__Task *t, const aq_llm_request_opts *o)
{
    aq_buf b;
    aq_err err;
    aq_buf_init(&b, 1 << 20);
    aq_status st = aq_llm_request_build_opts(t, MODEL, 100, o, &b, &err);
    if (st != AQ_OK)
        fail_msg("build failed: %s", err.msg);
    return b.data; /* the caller frees */
}

static void test_blocks_and_tools_body(void **state)
{
    (void)state;
    conv c;
    conv_init(&c);
    c.task.tool_choice = &c.tc;
    c.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL;
    c.tc.name = (char *)"get_weather";
    c.tc.disable_parallel_tool_use = true;
    char *body = build_str(&c.task, NULL);
    assert_string_equal(
        body,
        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100,\"messages\":["
        "{\"role\":\"user\",\"content\":["
        "{\"type\":\"text\",\"text\":\"Look\"},"
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"YWJj\"}},"
        "{\"type\":\"document\",\"source\":{\"type\":\"url\",\"url\":\"https://example.com/r.pdf\"},\"title\":\"Report\"},"
        "{\"type\":\"document\",\"source\":{\"type\":\"text\",\"media_type\":\"text/plain\",\"data\":\"hi \\\"x\\\"\"}}]},"
        "{\"role\":\"assistant\",\"content\":["
        "{\"type\":\"text\",\"text\":\"Checking\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\",\"n\":2,\"x\":[true,null]}}]},"
        "{\"role\":\"user\",\"content\":["
        "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":[{\"type\":\"text\",\"text\":\"18C\"}],\"is_error\":true},"
        "{\"type\":\"text\",\"text\":\"thanks\"}]}],"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}},"
        "{\"name\":\"noop\",\"input_schema\":{\"type\":\"object\"}}],"
        "\"tool_choice\":{\"type\":\"tool\",\"name\":\"get_weather\",\"disable_parallel_tool_use\":true}}");
    free(body);
    /* A model's tool input may hold a "\u0000" (the answer's parser keeps
     * it): it goes back in the next step's request as it came. */
    c.ub.input_json = (char *)"{\"city\":\"\\u0000Paris\"}";
    body = build_str(&c.task, NULL);
    assert_non_null(strstr(body, "\"input\":{\"city\":\"\\u0000Paris\"}"));
    free(body);
    /* no content, no is_error: both left out */
    c.rb.n_content = 0;
    c.rb.is_error = false;
    body = build_str(&c.task, NULL);
    assert_non_null(strstr(body, "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\"},"));
    free(body);
}

static void test_tool_choice_bodies(void **state)
{
    (void)state;
    conv c;
    conv_init(&c);
    static const struct {
        Agentq__V1__ToolChoiceType type;
        bool disable;
        const char *want; /* NULL: no tool_choice */
    } cases[] = {
        {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_UNSPECIFIED, false, NULL},
        {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_UNSPECIFIED, true,
         "\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":true}}"},
        {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY, false, "\"tool_choice\":{\"type\":\"any\"}}"},
        {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY, true,
         "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true}}"},
        {AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE, true, "\"tool_choice\":{\"type\":\"none\"}}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c.task.tool_choice = &c.tc;
        c.tc.type = cases[i].type;
        c.tc.disable_parallel_tool_use = cases[i].disable;
        char *body = build_str(&c.task, NULL);
        if (cases[i].want) {
            size_t n = strlen(body), w = strlen(cases[i].want);
            assert_true(n > w);
            assert_string_equal(body + n - w, cases[i].want);
        } else {
            assert_null(strstr(body, "tool_choice"));
        }
        free(body);
    }
    c.task.tool_choice = NULL;
    char *body = build_str(&c.task, NULL);
    assert_null(strstr(body, "tool_choice"));
    free(body);
    /* without tools, neither tools nor tool_choice is sent */
    c.task.tool_choice = &c.tc;
    c.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE;
    c.task.n_tools = 0;
    body = build_str(&c.task, NULL);
    assert_null(strstr(body, "tool_choice"));
    assert_null(strstr(body, "\"tools\""));
    free(body);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* The agent loop's breakpoints: last tool, system, last block of the last
 * message and of the previous user message: four, the API's maximum. */
static void test_cache_breakpoints(void **state)
{
    (void)state;
    conv c;
    conv_init(&c);
    c.task.system = (char *)"sys";
    aq_llm_request_opts o = {.cache_breakpoints = AQ_LLM_CACHE_TOOLS | AQ_LLM_CACHE_SYSTEM |
                                                  AQ_LLM_CACHE_LAST_MESSAGE | AQ_LLM_CACHE_PREV_USER};
    aq_llm_request_parts p;
    aq_llm_request_parts_from_task(&c.task, MODEL, 100, &p);
    assert_int_equal(aq_llm_request_cache_marks(&p, &o), 0xf);
    char *body = build_str(&c.task, &o);
    assert_int_equal(count(body, "\"cache_control\":{\"type\":\"ephemeral\"}"), 4);
    assert_non_null(strstr(body, "\"system\":[{\"text\":\"sys\",\"type\":\"text\",\"cache_control\":{\"type\":\"ephemeral\"}}]"));
    /* messages[0] is the previous user message: its last block */
    assert_non_null(strstr(body, "\"data\":\"hi \\\"x\\\"\"},\"cache_control\":{\"type\":\"ephemeral\"}}]}"));
    assert_non_null(strstr(body, "{\"type\":\"text\",\"text\":\"thanks\",\"cache_control\":{\"type\":\"ephemeral\"}}]}"));
    assert_non_null(strstr(body, "\"input_schema\":{\"type\":\"object\"},\"cache_control\":{\"type\":\"ephemeral\"}}]"));
    /* the first tool is not marked */
    assert_null(strstr(body, "\"string\"}}},\"cache_control\""));
    free(body);

    /* plain-string messages: a marked one becomes a text block */
    Agentq__V1__Message a, b2;
    agentq__v1__message__init(&a);
    agentq__v1__message__init(&b2);
    a.role = (char *)"user";
    a.content = (char *)"one";
    b2.role = (char *)"assistant";
    b2.content = (char *)"two";
    Agentq__V1__Message *ms[] = {&a, &b2, &a};
    c.task.messages = ms;
    c.task.n_messages = 3;
    c.task.n_tools = 0;
    body = build_str(&c.task, &o);
    assert_string_equal(
        body, "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100,\"system\":[{\"text\":\"sys\","
              "\"type\":\"text\",\"cache_control\":{\"type\":\"ephemeral\"}}],\"messages\":["
              "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\",\"cache_control\":{\"type\":\"ephemeral\"}}]},"
              "{\"role\":\"assistant\",\"content\":\"two\"},"
              "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\",\"cache_control\":{\"type\":\"ephemeral\"}}]}]}");
    free(body);

    /* the prompt shorthand: one message, PREV_USER finds none */
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.prompt = (char *)"hi";
    aq_llm_request_parts_from_task(&t, MODEL, 100, &p);
    assert_int_equal(aq_llm_request_cache_marks(&p, &o), AQ_LLM_CACHE_LAST_MESSAGE);
    body = build_str(&t, &o);
    assert_string_equal(body, "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":100,\"messages\":[{\"role\":"
                              "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\",\"cache_control\":"
                              "{\"type\":\"ephemeral\"}}]}]}");
    free(body);
    /* no flags: no marks at all */
    aq_llm_request_opts none = {0};
    assert_int_equal(aq_llm_request_cache_marks(&p, &none), 0);
}

/* The agent loop builds from its own conversation, not the task's. */
static void test_build_parts(void **state)
{
    (void)state;
    conv c;
    conv_init(&c);
    aq_llm_request_parts p;
    aq_llm_request_parts_from_task(&c.task, MODEL, 100, &p);
    Agentq__V1__Message *grown[] = {c.mp[0], c.mp[1], c.mp[2], c.mp[1], c.mp[2]};
    c.ub.id = (char *)"toolu_1"; /* the same ids again: the builder does not check pairing */
    p.messages = grown;
    p.n_messages = 5;
    p.tool_choice = &c.tc;
    c.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE;
    aq_buf b;
    aq_err err;
    aq_buf_init(&b, 1 << 20);
    assert_int_equal(aq_llm_request_build_parts(&p, NULL, &b, &err), AQ_OK);
    json_t *root = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "messages")), 5);
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "tool_choice"), "type")),
                        "none");
    json_decref(root);
    /* the task wrapper and the parts give the same body */
    aq_buf b2;
    aq_buf_init(&b2, 1 << 20);
    p.messages = c.mp;
    p.n_messages = 3;
    p.tool_choice = NULL;
    aq_buf_reset(&b);
    assert_int_equal(aq_llm_request_build_parts(&p, NULL, &b, &err), AQ_OK);
    assert_int_equal(aq_llm_request_build(&c.task, MODEL, 100, &b2, &err), AQ_OK);
    assert_string_equal(b.data, b2.data);
    aq_buf_free(&b);
    aq_buf_free(&b2);
}

static void test_block_errors_named(void **state)
{
    (void)state;
    conv c;
    conv_init(&c);
    aq_buf b;
    aq_err err;
    aq_buf_init(&b, 1 << 20);
    assert_int_equal(aq_buf_append_str(&b, "keep"), AQ_OK);
    c.ub.input_json = (char *)"[1]";
    assert_int_equal(aq_llm_request_build(&c.task, MODEL, 10, &b, &err), AQ_TASK_INVALID);
    assert_string_equal(err.msg, "messages[1].blocks[1].tool_use.input_json is not a JSON object");
    assert_string_equal(b.data, "keep");
    conv_init(&c);
    c.tools[1].input_schema_json = (char *)"nope";
    assert_int_equal(aq_llm_request_build(&c.task, MODEL, 10, &b, &err), AQ_TASK_INVALID);
    assert_string_equal(err.msg, "tools[1].input_schema_json is not a JSON object");
    conv_init(&c);
    c.tb[2].text = (char *)"\xff";
    assert_int_equal(aq_llm_request_build(&c.task, MODEL, 10, &b, &err), AQ_TASK_INVALID);
    assert_non_null(strstr(err.msg, "messages[2].blocks[0].tool_result.content[0].text"));
    conv_init(&c);
    c.src[2].data.data = (uint8_t *)"\xff\xfe";
    c.src[2].data.len = 2;
    assert_int_equal(aq_llm_request_build(&c.task, MODEL, 10, &b, &err), AQ_TASK_INVALID);
    assert_non_null(strstr(err.msg, "messages[0].blocks[3].document.source.data"));
    assert_int_equal(b.len, 4);
    aq_buf_free(&b);
}

/* Base64 of binary media, checked by decoding it back. */
static void test_media_base64(void **state)
{
    (void)state;
    conv c;
    conv_init(&c);
    uint8_t bin[1000];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(i * 7 + 3);
    for (size_t n = 1; n <= 5; n++) { /* every padding case */
        c.src[0].data.data = bin;
        c.src[0].data.len = n == 5 ? sizeof(bin) : n;
        char *body = build_str(&c.task, NULL);
        json_t *root = json_loads(body, 0, NULL);
        json_t *msg0 = json_array_get(json_object_get(root, "messages"), 0);
        json_t *img = json_array_get(json_object_get(msg0, "content"), 1);
        json_t *src = json_object_get(img, "source");
        const char *d = json_string_value(json_object_get(src, "data"));
        assert_non_null(d);
        unsigned char back[1400];
        int w = EVP_DecodeBlock(back, (const unsigned char *)d, (int)strlen(d));
        size_t pad = strlen(d) && d[strlen(d) - 1] == '=' ? (d[strlen(d) - 2] == '=' ? 2 : 1) : 0;
        assert_int_equal((size_t)w - pad, c.src[0].data.len);
        assert_memory_equal(back, bin, c.src[0].data.len);
        json_decref(root);
        free(body);
    }
}

static void test_estimates_blocks_and_tools(void **state)
{
    (void)state;
    conv c;
    conv_init(&c);
    /* text: Look(4) + title Report(6) + Checking(8) + get_weather(11) +
     * input (46) + 18C(3) + thanks(6) + tools: get_weather(11) + Weather(7) +
     * schema(63) + noop(4) + schema(17) */
    size_t bytes = 4 + 6 + 8 + 11 + strlen(c.ub.input_json) + 3 + 6 + 11 + 7 +
                   strlen(c.tools[0].input_schema_json) + 4 + strlen(c.tools[1].input_schema_json);
    /* media: one image (the ceiling), a URL document (the same), 6 bytes of text document */
    int64_t media = AQ_LLM_IMAGE_TOKENS_EST * 2 + 2;
    assert_int_equal(aq_llm_task_input_tokens(&c.task), aq_llm_estimate_tokens(bytes) + media);
    aq_llm_request_parts p;
    aq_llm_request_parts_from_task(&c.task, MODEL, 1, &p);
    assert_int_equal(aq_llm_request_input_tokens(&p), aq_llm_task_input_tokens(&c.task));
    /* tools alone move the estimate: routing sees them */
    c.task.n_tools = 0;
    assert_true(aq_llm_task_input_tokens(&c.task) < aq_llm_estimate_tokens(bytes) + media);
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
        cmocka_unit_test(test_old_bodies_unchanged),
        cmocka_unit_test(test_blocks_and_tools_body),
        cmocka_unit_test(test_tool_choice_bodies),
        cmocka_unit_test(test_cache_breakpoints),
        cmocka_unit_test(test_build_parts),
        cmocka_unit_test(test_block_errors_named),
        cmocka_unit_test(test_media_base64),
        cmocka_unit_test(test_estimates_blocks_and_tools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
