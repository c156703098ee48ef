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

static const char *const models[] = {"claude-haiku-4-5", "claude-sonnet-4-6"};
static const aq_sim_limits limits = {64000, models, 2};

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
        {"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":10,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", AQ_INVALID_ARG, "stream"},
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
             "{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"prefill\"}]}",
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
