/* agentq-sim, the pure parts: request validation, the deterministic answer,
 * token counting, cuts, latency sampling, rate-limit key ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim_random.h"
#include "sim/sim_request.h"
#include "sim/sim_tools.h"

static const char *const models[] = {"claude-haiku-4-5", "claude-sonnet-4-6"};
static const aq_sim_limits limits = {64000, models, 2, false};

#define TEXT_CAP (1024 * 1024)

static aq_status parse(const char *body, aq_sim_request *r, aq_err *err)
{
    return aq_sim_parse_request(body, strlen(body), &limits, r, err);
}

/* Build the answer of `body` with output range [lo, hi]; text into *text (caller frees). */
static aq_sim_answer answer(const char *body, uint32_t lo, uint32_t hi, char **text)
{
    aq_sim_request r = {0};
    aq_sim_answer a = {0};
    aq_err err = {0};
    aq_buf b;
    aq_buf_init(&b, TEXT_CAP);
    assert_int_equal(parse(body, &r, &err), AQ_OK);
    assert_int_equal(aq_sim_answer_build(&r, (aq_sim_output_range){lo, hi}, NULL, &b, &a, &err), AQ_OK);
    *text = strdup(b.data);
    if (a.stop_sequence.ptr) {
        /* the answer points into the request: keep a copy before freeing it */
        static char seq[256];
        snprintf(seq, sizeof(seq), "%.*s", (int)a.stop_sequence.len, a.stop_sequence.ptr);
        a.stop_sequence.ptr = seq;
    }
    aq_buf_free(&b);
    aq_sim_request_free(&r);
    return a;
}

typedef struct bad_case {
    const char *body;
    aq_status status;
    const char *message_part;
} bad_case;

static void test_parse_rejects_every_error_case(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"{bad json", AQ_INVALID_ARG, "not valid JSON"},
        {"", AQ_INVALID_ARG, "not valid JSON"},
        {"[1,2]", AQ_INVALID_ARG, "not valid JSON"},
        {"{\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "model: Field required"},
        {"{\"model\":7,\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "model:"},
        {"{\"model\":\"\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "model:"},
        {"{\"model\":\"claude-haiku-4-5\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "max_tokens: Field required"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":\"10\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "max_tokens: Input should be a valid integer"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "max_tokens: Input should be a valid integer"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "greater than or equal to 1"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":64001,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "64001 > 64000"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10}", AQ_INVALID_ARG, "messages: Field required"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":{}}", AQ_INVALID_ARG, "messages: Input should be a valid list"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[]}", AQ_INVALID_ARG, "at least one message"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[\"hi\"]}", AQ_INVALID_ARG, "messages.0: Input should be a valid dictionary"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "messages.0.role"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"content\":\"x\"}]}", AQ_INVALID_ARG, "messages.0.role"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "first message must use the \"user\" role"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\"}]}", AQ_INVALID_ARG, "messages.0.content: Field required"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":5}]}", AQ_INVALID_ARG, "messages.0.content: Input should be"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"image\"}]}]}", AQ_INVALID_ARG, "messages.1.content.0.source: Field required"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"thinking\"}]}]}", AQ_INVALID_ARG, "messages.0.content.0.type: Input tag 'thinking'"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", AQ_INVALID_ARG, "messages.0.content.0.text: Field required"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":[7]}]}", AQ_INVALID_ARG, "messages.0.content.0: Input should be a valid dictionary"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"system\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "system: Input should be"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"system\":[{\"type\":\"text\",\"text\":1}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "system.0.text"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"temperature\":\"hot\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "temperature: Input should be a valid number"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"temperature\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "temperature: Input should be between 0 and 1"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"temperature\":-0.1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "temperature"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"stop_sequences\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "stop_sequences: Input should be a valid list"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"stop_sequences\":[\"a\",3],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "stop_sequences.1"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"stop_sequences\":[\"\"],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "stop_sequences.0"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"metadata\":\"u\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "metadata: Input should be a valid dictionary"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"metadata\":{\"user_id\":5},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "metadata.user_id"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"stream\":\"yes\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "stream: Input should be a valid boolean"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"foo\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "foo: Extra inputs are not permitted"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y \"}]}", AQ_INVALID_ARG, "final assistant content cannot end with trailing whitespace"},
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"tools\":[{\"name\":\"t\",\"input_schema\":{\"type\":\"object\"},\"color\":1}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.custom.color: Extra inputs are not permitted"},
        {"{\"model\":\"claude-nope-1\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_NOT_FOUND, "model: claude-nope-1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_sim_request r = {0};
        aq_err err = {0};
        aq_status st = parse(cases[i].body, &r, &err);
        if (st != cases[i].status || !strstr(err.msg, cases[i].message_part))
            fail_msg("case %zu (%s): status %s, message '%s', wanted '%s'", i, cases[i].body,
                     aq_status_class(st), err.msg, cases[i].message_part);
        assert_null(r.doc); /* nothing to free on failure */
    }
}

static void test_error_statuses(void **state)
{
    (void)state;
    const char *type = NULL;
    assert_int_equal(aq_sim_error_http_status(AQ_INVALID_ARG, &type), 400);
    assert_string_equal(type, "invalid_request_error");
    assert_int_equal(aq_sim_error_http_status(AQ_NOT_FOUND, &type), 404);
    assert_string_equal(type, "not_found_error");
    assert_int_equal(aq_sim_error_http_status(AQ_TOO_BIG, &type), 413);
    assert_string_equal(type, "request_too_large");

    aq_buf b;
    aq_buf_init(&b, 4096);
    assert_int_equal(aq_sim_render_error(&b, "invalid_request_error", "bad \"x\"\n", "req_1"), AQ_OK);
    json_t *doc = json_loads(b.data, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "error");
    json_t *e = json_object_get(doc, "error");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "bad \"x\"\n");
    assert_string_equal(json_string_value(json_object_get(doc, "request_id")), "req_1");
    json_decref(doc);
    aq_buf_free(&b);
}

/* Found by fuzzing (tests/fuzz/fuzz_sim_request): jansson's error text for a
 * bad \u escape quotes the first byte of the multi-byte character after it,
 * so the 400 body carried invalid UTF-8 and was not JSON. */
static void test_error_body_is_json_whatever_the_message(void **state)
{
    (void)state;
    aq_sim_request r = {0};
    aq_err err = {0};
    const char *type = NULL;
    aq_buf b;
    aq_buf_init(&b, 4096);
    aq_status st = parse("{\"model\":\"\\ud83\xc3\xa9\"}", &r, &err);
    assert_int_equal(st, AQ_INVALID_ARG);
    assert_int_equal(aq_sim_error_http_status(st, &type), 400);
    assert_int_equal(aq_sim_render_error(&b, type, err.msg, "req_1"), AQ_OK);
    json_t *doc = json_loadb(b.data, b.len, 0, NULL);
    assert_non_null(doc);
    json_decref(doc);

    /* Any invalid byte becomes U+FFFD; valid UTF-8 is kept. */
    aq_buf_reset(&b);
    assert_int_equal(aq_sim_render_error(&b, type, "bad \xff\xc3 caf\xc3\xa9", "req_2"), AQ_OK);
    doc = json_loadb(b.data, b.len, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "error"), "message")),
                        "bad \xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9");
    json_decref(doc);
    aq_buf_free(&b);
}

static void test_parse_valid_request(void **state)
{
    (void)state;
    const char *body =
        "{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":100,\"temperature\":0.5,"
        "\"system\":[{\"type\":\"text\",\"text\":\"be brief\"},{\"type\":\"text\",\"text\":\"!\"}],"
        "\"stop_sequences\":[\"END\"],\"metadata\":{\"user_id\":\"u-1\"},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]}";
    aq_sim_request r = {0};
    aq_err err = {0};
    assert_int_equal(parse(body, &r, &err), AQ_OK);
    assert_int_equal(r.max_tokens, 100);
    assert_true(r.has_temperature);
    assert_true(r.temperature == 0.5);
    assert_int_equal(r.n_system_blocks, 2);
    assert_int_equal(r.n_messages, 3);
    assert_int_equal(r.n_blocks, 6);
    assert_true(r.messages[1].assistant);
    assert_int_equal(r.messages[2].n_blocks, 2);
    assert_int_equal(r.n_stop, 1);
    assert_true(r.has_user_id);
    assert_memory_equal(r.model.ptr, "claude-sonnet-4-6", r.model.len);
    /* system "be brief!" 9 bytes -> 3; messages: 4+2, 4+1, 4+1 */
    assert_int_equal(aq_sim_input_tokens(&r), 3 + 6 + 5 + 5);
    aq_sim_request_free(&r);
    aq_sim_request_free(&r); /* twice: a freed request is zeroed */
    aq_sim_request_free(NULL);
}

/* A cache_control mark on system blocks: the prefix up to the last mark is
 * billed as a cache write (the server turns it into a read on a repeat). */
static void test_prompt_cache_prefix(void **state)
{
    (void)state;
    char *text = NULL;
    /* system: 4000 bytes marked (1000 tokens) + 9 bytes unmarked; message "hello" 4+2 */
    char sys[4001];
    memset(sys, 's', 4000);
    sys[4000] = '\0';
    char body[8192];
    snprintf(body, sizeof(body),
             "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":50,"
             "\"system\":[{\"type\":\"text\",\"text\":\"%s\",\"cache_control\":{\"type\":\"ephemeral\"}},"
             "{\"type\":\"text\",\"text\":\"be brief!\"}],"
             "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
             sys);
    aq_sim_request r = {0};
    aq_err err = {0};
    assert_int_equal(parse(body, &r, &err), AQ_OK);
    assert_int_equal(r.n_breakpoints, 1);
    assert_int_equal(r.bp_pos[0], 0);
    assert_int_equal(r.bp_ttl_ms[0], 300000);
    aq_sim_request_free(&r);
    aq_sim_answer a = answer(body, 10, 10, &text);
    free(text);
    /* all: tokens(4009) = 1003 + 6; prefix 1000 */
    assert_int_equal(a.cache_creation_input_tokens, 1000);
    assert_int_equal(a.cache_read_input_tokens, 0);
    assert_int_equal(a.input_tokens, 1003 + 6 - 1000);
    assert_true(a.cache_prefix_hash != 0);
    aq_sim_answer hit = a;
    aq_sim_answer_cache_hit(&hit);
    assert_int_equal(hit.cache_creation_input_tokens, 0);
    assert_int_equal(hit.cache_read_input_tokens, 1000);
    assert_int_equal(hit.input_tokens, a.input_tokens);

    /* The prefix hash depends on the model and the prefix, not on the rest. */
    char body2[8192];
    snprintf(body2, sizeof(body2),
             "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":70,"
             "\"system\":[{\"type\":\"text\",\"text\":\"%s\",\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":\"1h\"}},"
             "{\"type\":\"text\",\"text\":\"other\"}],"
             "\"messages\":[{\"role\":\"user\",\"content\":\"another question\"}]}",
             sys);
    assert_int_equal(parse(body2, &r, &err), AQ_OK);
    assert_int_equal(r.bp_ttl_ms[0], 3600000);
    aq_sim_request_free(&r);
    aq_sim_answer b = answer(body2, 10, 10, &text);
    free(text);
    assert_true(b.cache_prefix_hash == a.cache_prefix_hash);
    snprintf(body2, sizeof(body2),
             "{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":50,"
             "\"system\":[{\"type\":\"text\",\"text\":\"%s\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
             "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
             sys);
    b = answer(body2, 10, 10, &text);
    free(text);
    assert_true(b.cache_prefix_hash != a.cache_prefix_hash);

    /* No mark, or a plain string system: nothing cached. */
    a = answer("{\"model\":\"claude-haiku-4-5\",\"max_tokens\":50,\"system\":\"abc\","
               "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
               10, 10, &text);
    free(text);
    assert_int_equal(a.cache_creation_input_tokens, 0);
    assert_true(a.cache_prefix_hash == 0);
    /* A mark on a message block: the prefix through that block (the whole
     * message here: 4 + 2) is the cached part. */
    a = answer("{\"model\":\"claude-haiku-4-5\",\"max_tokens\":50,"
               "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello\","
               "\"cache_control\":{\"type\":\"ephemeral\"}}]}]}",
               10, 10, &text);
    free(text);
    assert_int_equal(a.cache_creation_input_tokens, 6);
    assert_int_equal(a.input_tokens, 0);

    /* The usage block carries both counts. */
    aq_buf out;
    aq_buf_init(&out, 1 << 20);
    assert_int_equal(parse(body, &r, &err), AQ_OK);
    hit.stop_sequence.ptr = NULL;
    assert_int_equal(aq_sim_render_message(&out, &r, &hit, "x", 1, "msg_1"), AQ_OK);
    json_t *doc = json_loads(out.data, 0, NULL);
    assert_non_null(doc);
    json_t *u = json_object_get(doc, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "cache_creation_input_tokens")), 0);
    assert_int_equal(json_integer_value(json_object_get(u, "cache_read_input_tokens")), 1000);
    assert_int_equal(json_integer_value(json_object_get(u, "input_tokens")), 9);
    json_decref(doc);
    aq_buf_free(&out);
    aq_sim_request_free(&r);

    /* Bad marks are 400s. */
    static const char *const bad[] = {
        "{\"type\":\"persistent\"}", "{}", "\"ephemeral\"", "{\"type\":\"ephemeral\",\"ttl\":\"2h\"}",
        "{\"type\":\"ephemeral\",\"ttl\":5}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body2, sizeof(body2),
                 "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":50,"
                 "\"system\":[{\"type\":\"text\",\"text\":\"x\",\"cache_control\":%s}],"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
                 bad[i]);
        assert_int_equal(parse(body2, &r, &err), AQ_INVALID_ARG);
        assert_non_null(strstr(err.msg, "system.0.cache_control"));
    }
}

static void test_tokens_and_utf8_cut(void **state)
{
    (void)state;
    assert_int_equal(aq_sim_tokens(0), 0);
    assert_int_equal(aq_sim_tokens(1), 1);
    assert_int_equal(aq_sim_tokens(4), 1);
    assert_int_equal(aq_sim_tokens(5), 2);
    assert_int_equal(aq_sim_tokens(400), 100);
    const char *s = "a\xc3\xa9z\xe2\x82\xac"; /* a é z € : 1+2+1+3 bytes */
    assert_int_equal(aq_sim_utf8_cut(s, 7, 0), 0);
    assert_int_equal(aq_sim_utf8_cut(s, 7, 1), 1);
    assert_int_equal(aq_sim_utf8_cut(s, 7, 2), 1); /* inside é */
    assert_int_equal(aq_sim_utf8_cut(s, 7, 3), 3);
    assert_int_equal(aq_sim_utf8_cut(s, 7, 5), 4); /* inside € */
    assert_int_equal(aq_sim_utf8_cut(s, 7, 6), 4);
    assert_int_equal(aq_sim_utf8_cut(s, 7, 7), 7);
    assert_int_equal(aq_sim_utf8_cut(s, 7, 100), 7);
}

#define REQ(prompt, extra) \
    "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":1000," extra "\"messages\":[{\"role\":\"user\",\"content\":\"" prompt "\"}]}"

static void test_answer_is_deterministic(void **state)
{
    (void)state;
    char *t1, *t2, *t3, *t4;
    aq_sim_answer a1 = answer(REQ("What is 2+2?", ""), 40, 40, &t1);
    /* same request, different JSON formatting and key order: same answer */
    aq_sim_answer a2 = answer("{ \"messages\": [ {\"content\":\"What is 2+2?\", \"role\":\"user\"} ],"
                              "  \"max_tokens\": 1000, \"model\": \"claude-haiku-4-5\" }",
                              40, 40, &t2);
    aq_sim_answer a3 = answer(REQ("What is 3+3?", ""), 40, 40, &t3);
    aq_sim_answer a4 = answer(REQ("What is 2+2?", "\"temperature\":0,"), 40, 40, &t4);

    assert_string_equal(t1, t2);
    assert_true(a1.hash == a2.hash);
    assert_true(strncmp(t1, "echo: What is 2+2? | ", 21) == 0);
    assert_true(strncmp(t3, "echo: What is 3+3? | ", 21) == 0);
    assert_string_not_equal(t1 + 21, t3 + 21); /* different filler */
    assert_true(a1.hash != a3.hash);
    assert_true(a1.hash != a4.hash);            /* temperature is part of the request */
    assert_int_equal(strlen(t1), 160);          /* exactly 40 tokens */
    assert_int_equal(a1.output_tokens, 40);
    assert_string_equal(a1.stop_reason, "end_turn");
    assert_null(a1.stop_sequence.ptr);
    assert_int_equal(a1.input_tokens, 4 + 3); /* 12 bytes -> 3, + 4 overhead */
    free(t1);
    free(t2);
    free(t3);
    free(t4);
}

static void test_answer_echoes_last_user_message_capped(void **state)
{
    (void)state;
    char *t;
    char body[2048], prompt[400];
    /* 150 x "é" = 300 bytes: the echo stops at 200 bytes, on a character boundary */
    prompt[0] = '\0';
    for (int i = 0; i < 150; i++)
        strcat(prompt, "\xc3\xa9");
    snprintf(body, sizeof(body),
             "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":1000,\"messages\":["
             "{\"role\":\"user\",\"content\":\"first\"},{\"role\":\"assistant\",\"content\":\"ok\"},"
             "{\"role\":\"user\",\"content\":\"%s\"}]}",
             prompt);
    answer(body, 10, 10, &t);
    assert_true(strncmp(t, "echo: ", 6) == 0);
    assert_memory_equal(t + 6, prompt, 200);
    assert_true(strncmp(t + 206, " | ", 3) == 0);
    /* the echo is longer than the 10-token target: kept whole, no filler */
    assert_int_equal(strlen(t), 209);
    free(t);
}

static void test_output_range(void **state)
{
    (void)state;
    aq_sim_output_range r;
    aq_err err = {0};
    assert_int_equal(aq_sim_output_range_parse("40", &r, &err), AQ_OK);
    assert_int_equal(r.min, 40);
    assert_int_equal(r.max, 40);
    assert_int_equal(aq_sim_output_range_parse("20-200", &r, &err), AQ_OK);
    assert_int_equal(r.min, 20);
    assert_int_equal(r.max, 200);
    assert_int_not_equal(aq_sim_output_range_parse("0", &r, &err), AQ_OK);
    assert_int_not_equal(aq_sim_output_range_parse("200-20", &r, &err), AQ_OK);
    assert_int_not_equal(aq_sim_output_range_parse("20-", &r, &err), AQ_OK);
    assert_int_not_equal(aq_sim_output_range_parse("x", &r, &err), AQ_OK);
    assert_int_not_equal(aq_sim_output_range_parse("-5", &r, &err), AQ_OK);
    assert_int_not_equal(aq_sim_output_range_parse("99999999999", &r, &err), AQ_OK);

    /* a range: every answer's length is in it, and not all the same */
    int lo = 1 << 30, hi = 0;
    for (int i = 0; i < 200; i++) {
        char body[256], *t;
        snprintf(body, sizeof(body), REQ("p%d", ""), i);
        aq_sim_answer a = answer(body, 20, 200, &t);
        assert_true(a.output_tokens >= 20 && a.output_tokens <= 200);
        lo = a.output_tokens < lo ? (int)a.output_tokens : lo;
        hi = a.output_tokens > hi ? (int)a.output_tokens : hi;
        free(t);
    }
    assert_true(hi - lo > 100);
}

static void test_max_tokens_cut(void **state)
{
    (void)state;
    char *t;
    aq_sim_answer a = answer("{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hello world\"}]}",
                             40, 40, &t);
    assert_string_equal(a.stop_reason, "max_tokens");
    assert_int_equal(strlen(t), 20);
    assert_string_equal(t, "echo: hello world | ");
    assert_int_equal(a.output_tokens, 5);
    free(t);

    /* the cut lands inside a multi-byte character: it backs up to its start */
    a = answer("{\"model\":\"claude-haiku-4-5\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\",\"content\":\"ab\xe2\x82\xac\"}]}",
               40, 40, &t);
    assert_string_equal(a.stop_reason, "max_tokens");
    assert_string_equal(t, "echo: ab"); /* 8 bytes; the € (bytes 8..10) is left out */
    assert_int_equal(a.output_tokens, 2);
    free(t);
}

static void test_stop_sequences_cut(void **state)
{
    (void)state;
    char *t;
    /* the earliest occurrence wins, whatever the list order */
    aq_sim_answer a = answer(REQ("one two three", "\"stop_sequences\":[\"three\",\"two\"],"), 40, 40, &t);
    assert_string_equal(a.stop_reason, "stop_sequence");
    assert_string_equal(a.stop_sequence.ptr, "two");
    assert_string_equal(t, "echo: one ");
    assert_int_equal(a.output_tokens, 3);
    free(t);

    a = answer(REQ("hello", "\"stop_sequences\":[\"no such text\"],"), 40, 40, &t);
    assert_string_equal(a.stop_reason, "end_turn");
    assert_null(a.stop_sequence.ptr);
    free(t);

    /* the separator is part of the text too */
    a = answer(REQ("hello", "\"stop_sequences\":[\" | \"],"), 40, 40, &t);
    assert_string_equal(t, "echo: hello");
    free(t);

    /* a stop sequence beyond the max_tokens cut does not apply */
    a = answer("{\"model\":\"claude-haiku-4-5\",\"max_tokens\":2,\"stop_sequences\":[\"world\"],"
               "\"messages\":[{\"role\":\"user\",\"content\":\"hello world\"}]}",
               40, 40, &t);
    assert_string_equal(a.stop_reason, "max_tokens");
    assert_string_equal(t, "echo: he");
    free(t);
}

static void test_render_message_is_valid_json(void **state)
{
    (void)state;
    const char *body = REQ("quote \\\" back\\\\ tab\\t nl\\n ctl\\u0001 \xc3\xa9", "\"stop_sequences\":[\"zz\"],");
    aq_sim_request r = {0};
    aq_sim_answer a;
    aq_err err = {0};
    aq_buf text, out;
    aq_buf_init(&text, TEXT_CAP);
    aq_buf_init(&out, TEXT_CAP);
    assert_int_equal(parse(body, &r, &err), AQ_OK);
    assert_int_equal(aq_sim_answer_build(&r, (aq_sim_output_range){40, 40}, NULL, &text, &a, &err), AQ_OK);
    assert_int_equal(aq_sim_render_message(&out, &r, &a, text.data, text.len, "msg_1"), AQ_OK);
    json_error_t jerr;
    json_t *doc = json_loads(out.data, 0, &jerr);
    if (!doc)
        fail_msg("%s: %s", jerr.text, out.data);
    assert_string_equal(json_string_value(json_object_get(doc, "id")), "msg_1");
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(doc, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(doc, "model")), "claude-haiku-4-5");
    json_t *c0 = json_array_get(json_object_get(doc, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "type")), "text");
    assert_string_equal(json_string_value(json_object_get(c0, "text")), text.data);
    assert_true(strncmp(text.data, "echo: quote \" back\\ tab\t nl\n ctl\x01 \xc3\xa9 | ", 35) == 0);
    assert_string_equal(json_string_value(json_object_get(doc, "stop_reason")), "end_turn");
    assert_true(json_is_null(json_object_get(doc, "stop_sequence")));
    json_t *u = json_object_get(doc, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "input_tokens")), a.input_tokens);
    assert_int_equal(json_integer_value(json_object_get(u, "output_tokens")), 40);
    assert_int_equal(json_integer_value(json_object_get(u, "cache_creation_input_tokens")), 0);
    assert_int_equal(json_integer_value(json_object_get(u, "cache_read_input_tokens")), 0);
    json_decref(doc);
    aq_buf_free(&text);
    aq_buf_free(&out);
    aq_sim_request_free(&r);
}

static void test_latency_sampling_stays_in_range(void **state)
{
    (void)state;
    aq_sim_latency l;
    aq_sim_rng rng;
    aq_err err = {0};
    aq_sim_rng_seed(&rng, 42);

    assert_int_equal(aq_sim_latency_init(&l, "fixed", 250, 0, 0, 0, &err), AQ_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(aq_sim_latency_sample(&l, &rng), 250);

    assert_int_equal(aq_sim_latency_init(&l, "uniform", 100, 300, 0, 0, &err), AQ_OK);
    int64_t lo = 1 << 30, hi = 0;
    for (int i = 0; i < 10000; i++) {
        int64_t v = aq_sim_latency_sample(&l, &rng);
        assert_true(v >= 100 && v <= 300);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    assert_true(lo < 110 && hi > 290);

    /* lognormal: median ~ 200, p99 ~ 1000, never negative, clamped */
    assert_int_equal(aq_sim_latency_init(&l, "lognormal", 0, 5000, 200, 1000, &err), AQ_OK);
    enum { N = 20000 };
    static int64_t v[N];
    for (int i = 0; i < N; i++) {
        v[i] = aq_sim_latency_sample(&l, &rng);
        assert_true(v[i] >= 0 && v[i] <= 5000);
    }
    int below_median = 0, below_p99 = 0;
    for (int i = 0; i < N; i++) {
        below_median += v[i] <= 200;
        below_p99 += v[i] <= 1000;
    }
    assert_true(below_median > N * 0.47 && below_median < N * 0.53);
    assert_true(below_p99 > N * 0.98 && below_p99 < N * 0.995);

    assert_int_not_equal(aq_sim_latency_init(&l, "uniform", 300, 100, 0, 0, &err), AQ_OK);
    assert_int_not_equal(aq_sim_latency_init(&l, "lognormal", 0, 0, 0, 100, &err), AQ_OK);
    assert_int_not_equal(aq_sim_latency_init(&l, "lognormal", 0, 0, 200, 100, &err), AQ_OK);
    assert_int_not_equal(aq_sim_latency_init(&l, "gamma", 0, 0, 0, 0, &err), AQ_OK);

    /* same seed, same sequence */
    aq_sim_rng a, b;
    aq_sim_rng_seed(&a, 7);
    aq_sim_rng_seed(&b, 7);
    for (int i = 0; i < 100; i++)
        assert_true(aq_sim_rng_next(&a) == aq_sim_rng_next(&b));
    for (int i = 0; i < 1000; i++) {
        double u = aq_sim_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
    }
}

/* ------------------------------------------------------------- tool use */

#define HDR "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":1000,"
#define TOOL_W "{\"name\":\"get_weather\",\"description\":\"weather\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":7}},\"required\":[\"city\",\"days\"]}}"
#define TOOL_S "{\"name\":\"search\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}}}}"
#define USE(id) "{\"type\":\"tool_use\",\"id\":\"" id "\",\"name\":\"get_weather\",\"input\":{\"city\":\"x\"}}"
#define RES(id) "{\"type\":\"tool_result\",\"tool_use_id\":\"" id "\",\"content\":\"ok\"}"
#define PNG "iVBORw0KGgo="

static void test_tool_validation_errors(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        /* tools */
        {HDR "\"tools\":{},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools: Input should be a valid list"},
        {HDR "\"tools\":[{\"name\":\"a b\",\"input_schema\":{\"type\":\"object\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'"},
        {HDR "\"tools\":[{\"name\":\"" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" "\",\"input_schema\":{\"type\":\"object\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.custom.name: String should match pattern"},
        {HDR "\"tools\":[{\"input_schema\":{\"type\":\"object\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.custom.name: Field required"},
        {HDR "\"tools\":[{\"name\":\"a\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.custom.input_schema: Field required"},
        {HDR "\"tools\":[{\"name\":\"a\",\"input_schema\":\"{}\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.custom.input_schema: Input should be a valid dictionary"},
        {HDR "\"tools\":[{\"name\":\"a\",\"input_schema\":{\"type\":\"string\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.custom.input_schema.type: Input should be 'object'"},
        {HDR "\"tools\":[" TOOL_S "," TOOL_S "],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools: Tool names must be unique."},
        {HDR "\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.type: server tools"},
        {HDR "\"tools\":[{\"name\":\"a\",\"description\":5,\"input_schema\":{\"type\":\"object\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.custom.description"},
        /* tool_choice */
        {HDR "\"tools\":[" TOOL_S "],\"tool_choice\":{\"type\":\"sometimes\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tool_choice: Input tag 'sometimes' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"},
        {HDR "\"tools\":[" TOOL_S "],\"tool_choice\":{},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tool_choice.type: Field required"},
        {HDR "\"tools\":[" TOOL_S "],\"tool_choice\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tool_choice: Input should be a valid dictionary"},
        {HDR "\"tools\":[" TOOL_S "],\"tool_choice\":{\"type\":\"tool\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tool_choice.tool.name: Field required"},
        {HDR "\"tools\":[" TOOL_S "],\"tool_choice\":{\"type\":\"tool\",\"name\":\"nope\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tool_choice.tool.name: Tool 'nope' not found"},
        {HDR "\"tools\":[" TOOL_S "],\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":1},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tool_choice.auto.disable_parallel_tool_use: Input should be a valid boolean"},
        {HDR "\"tool_choice\":{\"type\":\"any\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tool_choice may only be specified while providing tools."},
        /* tool_use / tool_result pairing */
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":[" USE("toolu_1") "]}]}", AQ_INVALID_ARG, "messages.0.content.0: `tool_use` blocks can only be in `assistant` messages"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" RES("toolu_1") "]}]}", AQ_INVALID_ARG, "messages.1.content.0: `tool_result` blocks can only be in `user` messages"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("toolu_1") "," USE("toolu_2") "]},{\"role\":\"user\",\"content\":\"go on\"}]}", AQ_INVALID_ARG, "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1, toolu_2. Each `tool_use` block must have a corresponding `tool_result` block in the next message."},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("toolu_1") "]}]}", AQ_INVALID_ARG, "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("toolu_1") "]},{\"role\":\"assistant\",\"content\":\"y\"}]}", AQ_INVALID_ARG, "messages.1: `tool_use` ids were found without"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("toolu_1") "," USE("toolu_2") "]},{\"role\":\"user\",\"content\":[" RES("toolu_1") "]}]}", AQ_INVALID_ARG, "messages.2: Did not find 1 `tool_result` block(s) at the beginning of this message. Messages following `tool_use` blocks must begin with a matching number of `tool_result` blocks."},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("toolu_1") "]},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"first\"}," RES("toolu_1") "]}]}", AQ_INVALID_ARG, "messages.2: Did not find 1 `tool_result` block(s) at the beginning of this message"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("toolu_1") "]},{\"role\":\"user\",\"content\":[" RES("toolu_9") "]}]}", AQ_INVALID_ARG, "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":[" RES("toolu_1") "]}]}", AQ_INVALID_ARG, "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1."},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("toolu_1") "]},{\"role\":\"user\",\"content\":[" RES("toolu_1") "," RES("toolu_1") "]}]}", AQ_INVALID_ARG, "messages.2.content.1: more than one `tool_result` block answers"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("toolu_1") "," USE("toolu_1") "]},{\"role\":\"user\",\"content\":[" RES("toolu_1") "]}]}", AQ_INVALID_ARG, "`tool_use` ids must be unique"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"name\":\"a\",\"input\":{}}]}]}", AQ_INVALID_ARG, "messages.1.content.0.id: Field required"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"a\",\"input\":[]}]}]}", AQ_INVALID_ARG, "messages.1.content.0.input: Input should be a valid dictionary"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"a\"}]}]}", AQ_INVALID_ARG, "messages.1.content.0.input: Field required"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("t") "]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"is_error\":\"yes\"}]}]}", AQ_INVALID_ARG, "messages.2.content.0.is_error: Input should be a valid boolean"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":[" USE("t") "]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":\"tool_use\"}]}]}]}", AQ_INVALID_ARG, "messages.2.content.0.content.0.type: Input tag 'tool_use'"},
        /* images and documents */
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/tiff\",\"data\":\"" PNG "\"}}]}]}", AQ_INVALID_ARG, "messages.0.content.0.source.base64.media_type: Input should be 'image/jpeg'"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"not base64!\"}}]}]}", AQ_INVALID_ARG, "messages.0.content.0.source.base64.data: The image data is not valid base64"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"file\"}}]}]}", AQ_INVALID_ARG, "messages.0.content.0.source: Input tag 'file'"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"url\"}}]}]}", AQ_INVALID_ARG, "messages.0.content.0.source.url.url: Field required"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"" PNG "\"}}]}]}", AQ_INVALID_ARG, "messages.0.content.0.source.base64.media_type: Input should be 'application/pdf'"},
        {HDR "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{\"type\":\"text\",\"media_type\":\"text/plain\"}}]}]}", AQ_INVALID_ARG, "messages.0.content.0.source.text.data: Field required"},
        /* cache marks */
        {HDR "\"tools\":[{\"name\":\"a\",\"input_schema\":{\"type\":\"object\"},\"cache_control\":{\"type\":\"ephemeral\"}}],"
             "\"system\":[{\"type\":\"text\",\"text\":\"s\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
             "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"cache_control\":{\"type\":\"ephemeral\"}},"
             "{\"type\":\"text\",\"text\":\"b\",\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"c\",\"cache_control\":{\"type\":\"ephemeral\"}}]}]}",
         AQ_INVALID_ARG, "A maximum of 4 blocks with cache_control may be provided. Found 5."},
        {HDR "\"tools\":[{\"name\":\"a\",\"input_schema\":{\"type\":\"object\"},\"cache_control\":{\"type\":\"forever\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "tools.0.cache_control"},
        /* the directive */
        {HDR "\"tools\":[" TOOL_S "],\"messages\":[{\"role\":\"user\",\"content\":\"[sim tool_steps=x]\"}]}", AQ_INVALID_ARG, "sim directive: 'tool_steps=x'"},
        {HDR "\"tools\":[" TOOL_S "],\"messages\":[{\"role\":\"user\",\"content\":\"[sim tool_parallel=0]\"}]}", AQ_INVALID_ARG, "sim directive"},
        {HDR "\"tools\":[" TOOL_S "],\"messages\":[{\"role\":\"user\",\"content\":\"[sim colour=blue]\"}]}", AQ_INVALID_ARG, "sim directive: 'colour=blue'"},
        {HDR "\"tools\":[" TOOL_S "],\"messages\":[{\"role\":\"user\",\"content\":\"[sim fault_tool_schema=2]\"}]}", AQ_INVALID_ARG, "fault_tool_schema=2 is not in [0, 1]"},
        {HDR "\"tools\":[" TOOL_S "],\"messages\":[{\"role\":\"user\",\"content\":\"[sim tool_steps=1\"}]}", AQ_INVALID_ARG, "without a closing ']'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_sim_request r = {0};
        aq_err err = {0};
        aq_status st = parse(cases[i].body, &r, &err);
        if (st != cases[i].status || !strstr(err.msg, cases[i].message_part))
            fail_msg("case %zu (%s): status %s, message '%s', wanted '%s'", i, cases[i].body,
                     aq_status_class(st), err.msg, cases[i].message_part);
        assert_null(r.doc);
    }
    /* a directive in a request without tools is not read */
    aq_sim_request r = {0};
    aq_err err = {0};
    assert_int_equal(parse(HDR "\"messages\":[{\"role\":\"user\",\"content\":\"[sim colour=blue]\"}]}", &r, &err), AQ_OK);
    aq_sim_request_free(&r);
}

/* A whole conversation with every block kind: accepted, and counted. */
static void test_tool_conversation_tokens(void **state)
{
    (void)state;
    /* 4000 base64 bytes = 3000 decoded = 4 media tokens; a URL image: 1600 */
    char b64[4001];
    memset(b64, 'A', 4000);
    b64[4000] = '\0';
    char body[16384];
    snprintf(body, sizeof(body),
             HDR "\"tools\":[" TOOL_S "],\"tool_choice\":{\"type\":\"none\"},"
             "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},"
             "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"%s\"}},"
             "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://example.com/a.png\"}},"
             "{\"type\":\"document\",\"source\":{\"type\":\"text\",\"media_type\":\"text/plain\",\"data\":\"12345678\"}}]},"
             "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"},"
             "{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"search\",\"input\":{\"q\":\"x\"}},"
             "{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"search\",\"input\":{}}]},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_b\",\"content\":\"bbbb\"},"
             "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_a\",\"is_error\":true,"
             "\"content\":[{\"type\":\"text\",\"text\":\"aa\"},{\"type\":\"text\",\"text\":\"aa\"}]},"
             "{\"type\":\"text\",\"text\":\"thanks\"}]}]}",
             b64);
    aq_sim_request r = {0};
    aq_err err = {0};
    if (parse(body, &r, &err) != AQ_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(r.n_tools, 1);
    assert_int_equal(r.tool_choice, AQ_SIM_CHOICE_NONE);
    assert_true(r.has_tool_result);
    assert_int_equal(r.n_tool_use, 2);
    assert_int_equal(r.info[1].kind, AQ_SIM_BLOCK_IMAGE);
    assert_int_equal(r.info[1].media_tokens, 4);
    assert_int_equal(r.info[2].media_tokens, AQ_SIM_URL_MEDIA_TOKENS);
    assert_int_equal(r.info[3].kind, AQ_SIM_BLOCK_DOCUMENT);
    assert_true(r.info[8].is_error);
    assert_int_equal(r.blocks[8].len, 4); /* "aa" + "aa" */
    /* tools: "search" + {"properties":{"q":{"type":"string"}},"type":"object"} */
    size_t tool_bytes = 6 + strlen("{\"properties\":{\"q\":{\"type\":\"string\"}},\"type\":\"object\"}");
    /* message 0: look(4) + doc(8) = 12 bytes -> 3, + 4 + 1600 media
     * message 1: ok(2) + "search {\"q\":\"x\"}"(16) + "search {}"(9) = 27 -> 7
     * message 2: bbbb(4) + aaaa(4) + thanks(6) = 14 -> 4 */
    int64_t want = aq_sim_tokens(tool_bytes) + (4 + 3 + 1604) + (4 + 7) + (4 + 4);
    assert_int_equal(aq_sim_input_tokens(&r), want);

    /* tool_choice none: a text answer that echoes the results, in order, with their tool's name */
    aq_sim_answer a;
    aq_buf t;
    aq_buf_init(&t, TEXT_CAP);
    static const aq_sim_tool_opts o = {2, 1, true, 0};
    assert_int_equal(aq_sim_answer_build(&r, (aq_sim_output_range){10, 10}, &o, &t, &a, &err), AQ_OK);
    assert_string_equal(a.stop_reason, "end_turn");
    assert_int_equal(a.n_calls, 0);
    assert_string_equal(t.data, "echo: Tool results: search: bbbb; search (error): aaaa thanks | ");
    assert_int_equal(a.input_tokens, want);
    aq_sim_answer_free(&a);
    aq_buf_free(&t);
    aq_sim_request_free(&r);
}

static json_t *gen_for(const char *schema, uint64_t seed)
{
    json_t *s = json_loads(schema, 0, NULL);
    assert_non_null(s);
    json_t *v = aq_sim_tools_gen(s, seed);
    assert_non_null(v);
    json_decref(s);
    return v;
}

static void test_schema_input_generation(void **state)
{
    (void)state;
    json_t *v = gen_for("{\"type\":\"object\",\"properties\":{"
                        "\"s\":{\"type\":\"string\"},"
                        "\"i\":{\"type\":\"integer\",\"minimum\":500,\"maximum\":510},"
                        "\"j\":{\"type\":\"integer\",\"exclusiveMaximum\":0},"
                        "\"k\":{\"type\":\"integer\",\"minimum\":3,\"multipleOf\":7},"
                        "\"n\":{\"type\":\"number\",\"exclusiveMinimum\":1.0,\"exclusiveMaximum\":1.25},"
                        "\"b\":{\"type\":\"boolean\"},"
                        "\"z\":{\"type\":\"null\"},"
                        "\"e\":{\"enum\":[\"red\",\"green\"]},"
                        "\"c\":{\"const\":42},"
                        "\"o\":{\"type\":\"object\",\"properties\":{\"deep\":{\"type\":\"string\",\"minLength\":12},"
                        "\"skip\":{\"type\":\"string\"}},\"required\":[\"deep\"]},"
                        "\"a\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":3},"
                        "\"a0\":{\"type\":\"array\",\"maxItems\":0},"
                        "\"t\":{\"type\":[\"null\",\"string\"],\"maxLength\":3},"
                        "\"f\":{\"type\":\"string\",\"format\":\"date-time\"},"
                        "\"u\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}"
                        "}}",
                        7);
    assert_true(json_is_string(json_object_get(v, "s")));
    assert_true(strncmp(json_string_value(json_object_get(v, "s")), "s-", 2) == 0);
    json_int_t i = json_integer_value(json_object_get(v, "i"));
    assert_true(json_is_integer(json_object_get(v, "i")) && i >= 500 && i <= 510);
    assert_true(json_integer_value(json_object_get(v, "j")) < 0);
    json_int_t k = json_integer_value(json_object_get(v, "k"));
    assert_true(k >= 3 && k % 7 == 0);
    double n = json_real_value(json_object_get(v, "n"));
    assert_true(json_is_real(json_object_get(v, "n")) && n > 1.0 && n < 1.25);
    assert_true(json_is_true(json_object_get(v, "b")));
    assert_true(json_is_null(json_object_get(v, "z")));
    assert_string_equal(json_string_value(json_object_get(v, "e")), "red");
    assert_int_equal(json_integer_value(json_object_get(v, "c")), 42);
    json_t *o = json_object_get(v, "o");
    assert_int_equal(json_object_size(o), 1); /* only the required one */
    assert_true(json_string_length(json_object_get(o, "deep")) >= 12);
    json_t *a = json_object_get(v, "a");
    assert_int_equal(json_array_size(a), 3);
    for (size_t x = 0; x < 3; x++)
        assert_true(json_is_integer(json_array_get(a, x)));
    assert_int_equal(json_array_size(json_object_get(v, "a0")), 0);
    assert_true(json_is_string(json_object_get(v, "t")) && json_string_length(json_object_get(v, "t")) <= 3);
    assert_string_equal(json_string_value(json_object_get(v, "f")), "2026-01-02T03:04:05Z");
    assert_true(json_is_integer(json_object_get(v, "u")));
    /* deterministic */
    json_t *v2 = gen_for("{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\"}}}", 7);
    json_t *v3 = gen_for("{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\"}}}", 7);
    assert_true(json_equal(v2, v3));
    json_decref(v2);
    json_decref(v3);
    json_decref(v);
    char *dump;

    /* extreme bounds: values stay finite and within the integer range */
    v = gen_for("{\"type\":\"object\",\"properties\":{"
                "\"i\":{\"type\":\"integer\",\"minimum\":1e300},"
                "\"i2\":{\"type\":\"integer\",\"maximum\":-5,\"multipleOf\":1e300},"
                "\"n\":{\"type\":\"number\",\"multipleOf\":1e-320},"
                "\"n2\":{\"type\":\"number\",\"minimum\":1e308,\"maximum\":1.7e308}}}",
                5);
    assert_true(json_is_integer(json_object_get(v, "i")));
    assert_true(json_is_integer(json_object_get(v, "i2")));
    assert_true(json_is_real(json_object_get(v, "n")));
    assert_true(json_is_real(json_object_get(v, "n2")));
    dump = json_dumps(v, JSON_COMPACT);
    assert_non_null(dump);
    free(dump);
    json_decref(v);

    /* a hostile schema stays bounded */
    v = gen_for("{\"type\":\"array\",\"minItems\":1000000,\"items\":{\"type\":\"array\",\"minItems\":1000,"
                "\"items\":{\"type\":\"array\",\"minItems\":1000,\"items\":{\"type\":\"string\",\"minLength\":100000000}}}}",
                1);
    dump = json_dumps(v, JSON_COMPACT);
    assert_non_null(dump);
    assert_true(strlen(dump) < 64 * 1024 * 1024);
    free(dump);
    json_decref(v);

    /* spoiling: drop a required property, else a wrong type */
    json_t *s = json_loads("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}},"
                           "\"required\":[\"city\",\"days\"]}", 0, NULL);
    v = aq_sim_tools_gen(s, 3);
    assert_true(aq_sim_tools_spoil(s, v));
    assert_null(json_object_get(v, "city"));
    json_decref(v);
    json_decref(s);
    s = json_loads("{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}}}", 0, NULL);
    v = aq_sim_tools_gen(s, 3);
    assert_true(aq_sim_tools_spoil(s, v));
    assert_true(json_is_integer(json_object_get(v, "q")));
    json_decref(v);
    json_decref(s);
    s = json_loads("{\"type\":\"object\"}", 0, NULL);
    v = aq_sim_tools_gen(s, 3);
    assert_false(aq_sim_tools_spoil(s, v));
    json_decref(v);
    json_decref(s);
}

/* A scripted agent loop over aq_sim_* (the server adds only caching). */
typedef struct run {
    json_t *req;
    aq_sim_tool_opts opts;
    aq_sim_answer a;   /* of the last turn (calls freed) */
    json_t *msg;       /* the last rendered message */
    char text[4096];
} run;

static void run_init(run *x, const char *tools_and_choice, const char *prompt)
{
    char body[8192];
    memset(x, 0, sizeof(*x));
    snprintf(body, sizeof(body), HDR "%s\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}", tools_and_choice,
             prompt);
    x->req = json_loads(body, 0, NULL);
    assert_non_null(x->req);
    x->opts = (aq_sim_tool_opts){2, 1, true, 0};
}

/* One model call: the answer's message in x->msg. */
static void run_call(run *x)
{
    char *body = json_dumps(x->req, JSON_COMPACT);
    aq_sim_request r = {0};
    aq_err err = {0};
    aq_buf t, out;
    aq_buf_init(&t, TEXT_CAP);
    aq_buf_init(&out, TEXT_CAP);
    if (parse(body, &r, &err) != AQ_OK)
        fail_msg("%s: %s", err.msg, body);
    assert_int_equal(aq_sim_answer_build(&r, (aq_sim_output_range){10, 10}, &x->opts, &t, &x->a, &err), AQ_OK);
    assert_int_equal(aq_sim_render_message(&out, &r, &x->a, t.data, t.len, "msg_t"), AQ_OK);
    json_decref(x->msg);
    x->msg = json_loads(out.data, 0, NULL);
    assert_non_null(x->msg);
    /* usage: output tokens = text + each call's name + " " + input */
    size_t bytes = t.len;
    for (size_t i = 0; i < x->a.n_calls; i++)
        bytes += x->a.calls[i].name.len + 1 + x->a.calls[i].input_len;
    assert_int_equal(json_integer_value(json_object_get(json_object_get(x->msg, "usage"), "output_tokens")),
                     aq_sim_tokens(bytes));
    snprintf(x->text, sizeof(x->text), "%s", t.data);
    aq_sim_answer_free(&x->a);
    aq_buf_free(&t);
    aq_buf_free(&out);
    aq_sim_request_free(&r);
    free(body);
}

static const char *stop_of(run *x)
{
    return json_string_value(json_object_get(x->msg, "stop_reason"));
}

static size_t n_uses(run *x)
{
    size_t n = 0;
    json_t *c = json_object_get(x->msg, "content");
    for (size_t i = 0; i < json_array_size(c); i++)
        n += strcmp(json_string_value(json_object_get(json_array_get(c, i), "type")), "tool_use") == 0;
    return n;
}

static json_t *use_at(run *x, size_t k)
{
    json_t *c = json_object_get(x->msg, "content");
    for (size_t i = 0; i < json_array_size(c); i++) {
        json_t *b = json_array_get(c, i);
        if (strcmp(json_string_value(json_object_get(b, "type")), "tool_use") == 0 && k-- == 0)
            return b;
    }
    fail_msg("no tool_use %zu", k);
    return NULL;
}

/* The weather tool's input is valid: city a string, days an integer in [1, 7]. */
static bool weather_valid(json_t *in)
{
    json_t *d = json_object_get(in, "days");
    return json_is_string(json_object_get(in, "city")) && json_is_integer(d) && json_integer_value(d) >= 1 &&
           json_integer_value(d) <= 7;
}

/* Append the answer and one tool_result per call ("result N of NAME"); a
 * weather input that is invalid gets an is_error result, as a worker that
 * validates inputs sends. Returns how many were errors. */
static size_t run_reply(run *x)
{
    json_t *msgs = json_object_get(x->req, "messages");
    json_t *content = json_deep_copy(json_object_get(x->msg, "content"));
    json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "assistant", "content", content));
    json_t *results = json_array();
    size_t errors = 0;
    for (size_t k = 0; k < n_uses(x); k++) {
        json_t *u = use_at(x, k);
        const char *name = json_string_value(json_object_get(u, "name"));
        bool bad = strcmp(name, "get_weather") == 0 && !weather_valid(json_object_get(u, "input"));
        char text[128];
        snprintf(text, sizeof(text), bad ? "input does not match the schema" : "result %zu of %s", k, name);
        errors += bad;
        json_array_append_new(results, json_pack("{s:s, s:s, s:s, s:b}", "type", "tool_result", "tool_use_id",
                                                 json_string_value(json_object_get(u, "id")), "content", text,
                                                 "is_error", bad));
    }
    json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "user", "content", results));
    return errors;
}

static void run_free(run *x)
{
    json_decref(x->req);
    json_decref(x->msg);
}

static void test_tool_steps_and_parallel(void **state)
{
    (void)state;
    run x;
    run_init(&x, "\"tools\":[" TOOL_W "," TOOL_S "],", "plan a trip");
    x.opts.steps = 3;
    x.opts.parallel = 2;
    char seen[16][64];
    size_t n_seen = 0;
    for (int step = 0; step < 3; step++) {
        run_call(&x);
        assert_string_equal(stop_of(&x), "tool_use");
        assert_int_equal(n_uses(&x), 2);
        /* round-robin over the tools */
        assert_string_equal(json_string_value(json_object_get(use_at(&x, 0), "name")), "get_weather");
        assert_string_equal(json_string_value(json_object_get(use_at(&x, 1), "name")), "search");
        /* the text block first, then the calls */
        json_t *c0 = json_array_get(json_object_get(x.msg, "content"), 0);
        assert_string_equal(json_string_value(json_object_get(c0, "type")), "text");
        char want[64];
        snprintf(want, sizeof(want), "Step %d: calling get_weather, search.", step + 1);
        assert_string_equal(json_string_value(json_object_get(c0, "text")), want);
        assert_true(weather_valid(json_object_get(use_at(&x, 0), "input")));
        for (size_t k = 0; k < 2; k++) { /* ids unique over the run */
            const char *id = json_string_value(json_object_get(use_at(&x, k), "id"));
            assert_int_equal(strlen(id), AQ_SIM_TOOL_ID_LEN);
            assert_true(strncmp(id, "toolu_01", 8) == 0);
            for (size_t s = 0; s < n_seen; s++)
                assert_string_not_equal(seen[s], id);
            snprintf(seen[n_seen++], sizeof(seen[0]), "%s", id);
        }
        assert_int_equal(run_reply(&x), 0);
    }
    run_call(&x);
    assert_string_equal(stop_of(&x), "end_turn");
    assert_int_equal(n_uses(&x), 0);
    assert_true(strncmp(x.text, "echo: Tool results: get_weather: result 0 of get_weather; search: result 1 of search | ",
                        88) == 0);
    /* deterministic: the same conversation gets the same answer */
    char again[4096];
    snprintf(again, sizeof(again), "%s", x.text);
    run_call(&x);
    assert_string_equal(again, x.text);
    run_free(&x);

    /* three tools, one call per step: the round-robin goes on over steps */
    run_init(&x, "\"tools\":[" TOOL_W "," TOOL_S ",{\"name\":\"third\",\"input_schema\":{\"type\":\"object\"}}],",
             "go");
    x.opts.steps = 4;
    static const char *const order[] = {"get_weather", "search", "third", "get_weather"};
    for (int step = 0; step < 4; step++) {
        run_call(&x);
        assert_int_equal(n_uses(&x), 1);
        assert_string_equal(json_string_value(json_object_get(use_at(&x, 0), "name")), order[step]);
        run_reply(&x);
    }
    run_call(&x);
    assert_string_equal(stop_of(&x), "end_turn");
    run_free(&x);

    /* tool_text off: only the calls; tool_steps 0: end_turn at once */
    run_init(&x, "\"tools\":[" TOOL_S "],", "hi");
    x.opts.text = false;
    run_call(&x);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(x.msg, "content"), 0), "type")),
                        "tool_use");
    x.opts.steps = 0;
    run_call(&x);
    assert_string_equal(stop_of(&x), "end_turn");
    run_free(&x);

    /* max_tokens too small for the calls: no call, stop_reason max_tokens */
    run_init(&x, "\"tools\":[" TOOL_W "],", "hi");
    json_object_set_new(x.req, "max_tokens", json_integer(3));
    run_call(&x);
    assert_string_equal(stop_of(&x), "max_tokens");
    assert_int_equal(n_uses(&x), 0);
    assert_string_equal(x.text, "Step 1: call");
    run_free(&x);
}

static void test_tool_directive(void **state)
{
    (void)state;
    run x;
    run_init(&x, "\"tools\":[" TOOL_W "," TOOL_S "],", "book it [sim tool_steps=5 tool_parallel=3 tool_text=0] please");
    x.opts = (aq_sim_tool_opts){1, 1, true, 0}; /* the directive wins */
    for (int step = 0; step < 5; step++) {
        run_call(&x);
        assert_string_equal(stop_of(&x), "tool_use");
        assert_int_equal(n_uses(&x), 3);
        assert_int_equal(json_array_size(json_object_get(x.msg, "content")), 3); /* no text */
        run_reply(&x);
    }
    run_call(&x);
    assert_string_equal(stop_of(&x), "end_turn");
    assert_non_null(strstr(x.text, "Tool results: "));
    run_free(&x);
}

static void test_tool_choice_variants(void **state)
{
    (void)state;
    run x;
    /* any: a tool call every turn, even after tool_steps */
    run_init(&x, "\"tools\":[" TOOL_W "," TOOL_S "],\"tool_choice\":{\"type\":\"any\"},", "x");
    x.opts.steps = 1;
    for (int step = 0; step < 4; step++) {
        run_call(&x);
        assert_string_equal(stop_of(&x), "tool_use");
        run_reply(&x);
    }
    run_free(&x);
    /* tool: always the named one, parallel calls included */
    run_init(&x, "\"tools\":[" TOOL_W "," TOOL_S "],\"tool_choice\":{\"type\":\"tool\",\"name\":\"search\"},", "x");
    x.opts.parallel = 2;
    for (int step = 0; step < 3; step++) {
        run_call(&x);
        assert_string_equal(stop_of(&x), "tool_use");
        assert_int_equal(n_uses(&x), 2);
        assert_string_equal(json_string_value(json_object_get(use_at(&x, 0), "name")), "search");
        assert_string_equal(json_string_value(json_object_get(use_at(&x, 1), "name")), "search");
        run_reply(&x);
    }
    run_free(&x);
    /* none: never a call */
    run_init(&x, "\"tools\":[" TOOL_W "],\"tool_choice\":{\"type\":\"none\"},", "x");
    run_call(&x);
    assert_string_equal(stop_of(&x), "end_turn");
    assert_true(strncmp(x.text, "echo: x | ", 10) == 0);
    run_free(&x);
    /* disable_parallel_tool_use: one call per turn */
    run_init(&x, "\"tools\":[" TOOL_W "," TOOL_S "],\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":true},",
             "x");
    x.opts.parallel = 4;
    run_call(&x);
    assert_int_equal(n_uses(&x), 1);
    run_free(&x);
}

/* fault_tool_schema 1: every first input is spoiled (the weather tool has
 * required properties); the worker's is_error result gets a corrected call,
 * which does not count as a step, and the run ends normally. */
static void test_tool_fault_and_repair(void **state)
{
    (void)state;
    run x;
    run_init(&x, "\"tools\":[" TOOL_W "],", "weather [sim fault_tool_schema=1]");
    x.opts.steps = 2;
    size_t errors = 0, repairs = 0, calls = 0;
    for (int turn = 0; turn < 10; turn++) {
        run_call(&x);
        if (strcmp(stop_of(&x), "end_turn") == 0)
            break;
        calls++;
        const char *id = json_string_value(json_object_get(use_at(&x, 0), "id"));
        bool valid = weather_valid(json_object_get(use_at(&x, 0), "input"));
        if (strncmp(id, "toolu_03", 8) == 0) {
            repairs++;
            assert_true(valid);
            assert_non_null(strstr(x.text, "Retrying with a corrected input: get_weather."));
        } else {
            assert_false(valid);
            assert_true(strncmp(id, "toolu_02", 8) == 0);
        }
        errors += run_reply(&x);
    }
    assert_string_equal(stop_of(&x), "end_turn");
    assert_int_equal(calls, 4); /* 2 steps, each spoiled then repaired */
    assert_int_equal(errors, 2);
    assert_int_equal(repairs, 2);
    assert_non_null(strstr(x.text, "Tool results: get_weather: result 0 of get_weather"));
    run_free(&x);

    /* a share: deterministic per request (same conversation, same spoils) */
    size_t spoiled[2] = {0, 0};
    for (int round = 0; round < 2; round++) {
        run_init(&x, "\"tools\":[" TOOL_W "],", "weather [sim fault_tool_schema=0.5 tool_parallel=8 tool_steps=1]");
        run_call(&x);
        for (size_t k = 0; k < n_uses(&x); k++)
            spoiled[round] += !weather_valid(json_object_get(use_at(&x, k), "input"));
        run_free(&x);
    }
    assert_int_equal(spoiled[0], spoiled[1]);
    assert_true(spoiled[0] > 0 && spoiled[0] < 8);
    /* an errored result of a call that was not spoiled is not retried */
    run_init(&x, "\"tools\":[" TOOL_S "],", "x [sim tool_steps=1]");
    run_call(&x);
    json_t *msgs = json_object_get(x.req, "messages");
    json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "assistant", "content", json_object_get(x.msg, "content")));
    json_array_append_new(msgs, json_pack("{s:s, s:[{s:s, s:s, s:s, s:b}]}", "role", "user", "content", "type",
                                          "tool_result", "tool_use_id",
                                          json_string_value(json_object_get(use_at(&x, 0), "id")), "content",
                                          "timeout", "is_error", 1));
    run_call(&x);
    assert_string_equal(stop_of(&x), "end_turn");
    assert_non_null(strstr(x.text, "search (error): timeout"));
    run_free(&x);
}

/* Cache marks: the prefix of each mark, in tools -> system -> messages
 * order, and the 20-block lookback (the server's part is in sim_server_test). */
static void test_cache_points(void **state)
{
    (void)state;
    char *text = NULL;
    /* tools marked: the tools' tokens; then the system; then a message block */
    aq_sim_answer a = answer(HDR "\"tools\":[{\"name\":\"t\",\"input_schema\":{\"type\":\"object\"},"
                                 "\"cache_control\":{\"type\":\"ephemeral\"}}],\"tool_choice\":{\"type\":\"none\"},"
                                 "\"system\":[{\"type\":\"text\",\"text\":\"12345678\",\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":\"1h\"}}],"
                                 "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"abcd\","
                                 "\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"tail\"}]}]}",
                             10, 10, &text);
    free(text);
    /* tools: "t" + {"type":"object"} = 18 bytes -> 5; system 2; message: 4 + tokens(abcd) = 5; then tail */
    assert_int_equal(a.n_cache_points, 3);
    assert_int_equal(a.cache_points[0].tokens, 5);
    assert_int_equal(a.cache_points[1].tokens, 7);
    assert_int_equal(a.cache_points[1].ttl_ms, 3600000);
    assert_int_equal(a.cache_points[2].tokens, 12);
    assert_true(a.cache_points[0].mark && a.cache_points[1].mark && a.cache_points[2].mark);
    assert_int_equal(a.cache_creation_input_tokens, 12);
    assert_int_equal(a.input_tokens, 5 + 2 + 4 + 2 - 12); /* "abcdtail" is 2 tokens */
    aq_sim_answer_cache_read(&a, 7);
    assert_int_equal(a.cache_read_input_tokens, 7);
    assert_int_equal(a.cache_creation_input_tokens, 5);

    /* one mark at the end of 30 messages: 21 points (the mark and 20 before) */
    char body[8192];
    size_t n = (size_t)snprintf(body, sizeof(body), HDR "\"messages\":[");
    for (int i = 0; i < 30; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s{\"role\":\"%s\",\"content\":[{\"type\":\"text\",\"text\":\"m%02d\"%s}]}",
                              i ? "," : "", i % 2 ? "assistant" : "user", i,
                              i == 28 ? ",\"cache_control\":{\"type\":\"ephemeral\"}" : "");
    snprintf(body + n, sizeof(body) - n, "]}");
    a = answer(body, 10, 10, &text);
    free(text);
    assert_int_equal(a.n_cache_points, 21);
    assert_false(a.cache_points[0].mark);
    assert_true(a.cache_points[20].mark);
    assert_int_equal(a.cache_points[20].tokens, 29 * 5);      /* each message 4 + 1 */
    assert_int_equal(a.cache_points[0].tokens, 9 * 5);        /* messages 0..8 */
    assert_int_equal(a.input_tokens, 5);                     /* the last message */
}

/* Requests without tools answer byte for byte as before tool use existed
 * (the benchmarks compare against these answers): two bodies rendered by the
 * simulator of commit 306fc93. */
static void test_plain_answers_unchanged(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        uint32_t lo, hi;
        const char *want;
    } cases[] = {
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}", 1, 51,
         "{\"id\":\"msg_x\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[{\"type\":"
         "\"text\",\"text\":\"echo: hello | sierra oscar golf cedar alpha summit xenon echo harbor papa willow kilo nectar "
         "november charlie forest\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":6,"
         "\"output_tokens\":29,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}"},
        {"{\"model\":\"claude-sonnet-4-6\",\"max_tokens\":7,\"temperature\":0.3,\"system\":[{\"type\":\"text\",\"text\":"
         "\"sys sys sys sys\",\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"x\"}],\"messages\":"
         "[{\"role\":\"user\",\"content\":\"hello\"},{\"role\":\"assistant\",\"content\":\"hi\"},{\"role\":\"user\","
         "\"content\":[{\"type\":\"text\",\"text\":\"\"},{\"type\":\"text\",\"text\":\"more \\u00e9\"}]}]}", 38, 88,
         "{\"id\":\"msg_x\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\",\"content\":[{\"type\":"
         "\"text\",\"text\":\"echo:  | jasper xray sierra \"}],\"stop_reason\":\"max_tokens\",\"stop_sequence\":null,"
         "\"usage\":{\"input_tokens\":17,\"output_tokens\":7,\"cache_creation_input_tokens\":4,\"cache_read_input_tokens\":0}}"},
    };
    static const aq_sim_tool_opts o = {2, 1, true, 0}; /* as the server passes them */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        aq_sim_request r = {0};
        aq_sim_answer a;
        aq_err err = {0};
        aq_buf t, out;
        aq_buf_init(&t, TEXT_CAP);
        aq_buf_init(&out, TEXT_CAP);
        assert_int_equal(aq_sim_parse_request(cases[i].body, strlen(cases[i].body), NULL, &r, &err), AQ_OK);
        assert_int_equal(aq_sim_answer_build(&r, (aq_sim_output_range){cases[i].lo, cases[i].hi}, &o, &t, &a, &err), AQ_OK);
        assert_int_equal(aq_sim_render_message(&out, &r, &a, t.data, t.len, "msg_x"), AQ_OK);
        assert_string_equal(out.data, cases[i].want);
        aq_sim_answer_free(&a);
        aq_buf_free(&t);
        aq_buf_free(&out);
        aq_sim_request_free(&r);
    }
}

/* Prefill: the answer continues the last (assistant) turn. When it is a
 * prefix of what the request without it gets, prefill + answer = that text;
 * otherwise filler words after a space. No tool use. */
static void test_prefill_continues(void **state)
{
    (void)state;
    char *base, *cont, *other, *tooled;
    aq_sim_answer a0 = answer("{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\","
                              "\"content\":\"hello\"}]}", 30, 30, &base);
    aq_sim_answer a1 = answer("{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\","
                              "\"content\":\"hello\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"
                              "\"echo: \"},{\"type\":\"text\",\"text\":\"hel\"}]}]}", 30, 30, &cont);
    assert_true(strlen(base) == 120 && strncmp(base, "echo: hello | ", 14) == 0);
    assert_string_equal(cont, base + 9);
    assert_int_equal(a1.output_tokens, aq_sim_tokens(strlen(base) - 9));
    assert_int_equal(a1.input_tokens, a0.input_tokens + 4 + 3); /* the prefill is input */
    aq_sim_answer a2 = answer("{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\","
                              "\"content\":\"hello\"},{\"role\":\"assistant\",\"content\":\"Sure\"}]}", 30, 30, &other);
    assert_int_equal(strlen(other), 120);
    assert_true(other[0] == ' ' && other[1] != ' ' && strstr(other, "echo") != other + 1);
    assert_string_equal(a2.stop_reason, "end_turn");
    /* with tools, a prefill is still text (the server's tool options) */
    aq_sim_request r = {0};
    aq_err err = {0};
    aq_buf b;
    aq_sim_answer a3;
    static const aq_sim_tool_opts o = {2, 1, true, 0};
    const char *tb = "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":100,\"tools\":[{\"name\":\"t\",\"input_schema\":"
                     "{\"type\":\"object\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"hello\"},{\"role\":"
                     "\"assistant\",\"content\":\"Let me\"}]}";
    aq_buf_init(&b, TEXT_CAP);
    assert_int_equal(parse(tb, &r, &err), AQ_OK);
    assert_true(r.prefill);
    assert_int_equal(aq_sim_answer_build(&r, (aq_sim_output_range){10, 10}, &o, &b, &a3, &err), AQ_OK);
    assert_int_equal(a3.n_calls, 0);
    tooled = strdup(b.data);
    assert_true(tooled[0] == ' ');
    aq_sim_answer_free(&a3);
    aq_sim_request_free(&r);
    aq_buf_free(&b);
    free(base);
    free(cont);
    free(other);
    free(tooled);
}

/* A count_tokens body: no max_tokens (an unknown field there), no stream. */
static void test_count_tokens_body(void **state)
{
    (void)state;
    aq_sim_limits lim = limits;
    aq_sim_request r = {0};
    aq_err err = {0};
    lim.count_tokens = true;
    const char *ok = "{\"model\":\"claude-haiku-4-5\",\"system\":\"abcd\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
    assert_int_equal(aq_sim_parse_request(ok, strlen(ok), &lim, &r, &err), AQ_OK);
    assert_int_equal(aq_sim_input_tokens(&r), 1 + 4 + 2);
    aq_sim_request_free(&r);
    const char *mt = "{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    assert_int_equal(aq_sim_parse_request(mt, strlen(mt), &lim, &r, &err), AQ_INVALID_ARG);
    assert_string_equal(err.msg, "max_tokens: Extra inputs are not permitted");
    const char *st = "{\"model\":\"claude-haiku-4-5\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    assert_int_equal(aq_sim_parse_request(st, strlen(st), &lim, &r, &err), AQ_INVALID_ARG);
    assert_string_equal(err.msg, "stream: Extra inputs are not permitted");
    const char *unk = "{\"model\":\"claude-nope-1\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    assert_int_equal(aq_sim_parse_request(unk, strlen(unk), &lim, &r, &err), AQ_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rejects_every_error_case),
        cmocka_unit_test(test_error_statuses),
        cmocka_unit_test(test_parse_valid_request),
        cmocka_unit_test(test_prompt_cache_prefix),
        cmocka_unit_test(test_tokens_and_utf8_cut),
        cmocka_unit_test(test_answer_is_deterministic),
        cmocka_unit_test(test_answer_echoes_last_user_message_capped),
        cmocka_unit_test(test_output_range),
        cmocka_unit_test(test_max_tokens_cut),
        cmocka_unit_test(test_stop_sequences_cut),
        cmocka_unit_test(test_render_message_is_valid_json),
        cmocka_unit_test(test_latency_sampling_stays_in_range),
        cmocka_unit_test(test_error_body_is_json_whatever_the_message),
        cmocka_unit_test(test_tool_validation_errors),
        cmocka_unit_test(test_tool_conversation_tokens),
        cmocka_unit_test(test_schema_input_generation),
        cmocka_unit_test(test_tool_steps_and_parallel),
        cmocka_unit_test(test_tool_directive),
        cmocka_unit_test(test_tool_choice_variants),
        cmocka_unit_test(test_tool_fault_and_repair),
        cmocka_unit_test(test_cache_points),
        cmocka_unit_test(test_plain_answers_unchanged),
        cmocka_unit_test(test_prefill_continues),
        cmocka_unit_test(test_count_tokens_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
