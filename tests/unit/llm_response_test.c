#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "llm/llm_response.h"

#define OK_USAGE "\"usage\":{\"input_tokens\":12,\"output_tokens\":34," \
                 "\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":7}"

static aq_status parse(const char *body, aq_llm_response *r, aq_err *err)
{
    memset(r, 0, sizeof(*r));
    aq_err_clear(err);
    return aq_llm_response_parse(body, strlen(body), r, err);
}

static void expect_bad(const char *body, const char *msg_part)
{
    aq_llm_response r;
    aq_err err;
    aq_status st = parse(body, &r, &err);
    if (st != AQ_LLM_BAD_RESPONSE)
        fail_msg("body %s: status %s, want bad_response", body, aq_status_class(st));
    assert_int_equal(err.status, AQ_LLM_BAD_RESPONSE);
    if (msg_part && !strstr(err.msg, msg_part))
        fail_msg("body %s: message \"%s\" lacks \"%s\"", body, err.msg, msg_part);
    /* out untouched on failure */
    assert_null(r.id);
    assert_null(r.text);
}

static void test_full_response(void **state)
{
    (void)state;
    const char *body =
        "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
        "\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}],"
        "\"stop_reason\":\"end_turn\",\"stop_sequence\":null," OK_USAGE "}";
    aq_llm_response r;
    aq_err err;
    assert_int_equal(parse(body, &r, &err), AQ_OK);
    assert_string_equal(r.id, "msg_01");
    assert_string_equal(r.model, "claude-x");
    assert_string_equal(r.text, "Hello");
    assert_int_equal(r.text_len, 5);
    assert_string_equal(r.stop_reason, "end_turn");
    assert_null(r.stop_sequence);
    assert_int_equal(r.usage.input_tokens, 12);
    assert_int_equal(r.usage.output_tokens, 34);
    assert_int_equal(r.usage.cache_creation_input_tokens, 5);
    assert_int_equal(r.usage.cache_read_input_tokens, 7);
    assert_int_equal(r.n_tool_use, 0);
    aq_llm_response_free(&r);
    assert_null(r.text);
    aq_llm_response_free(&r);   /* twice is fine */
    aq_llm_response_free(NULL);
}

static void test_every_stop_reason(void **state)
{
    (void)state;
    const char *reasons[] = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn",
                             "refusal", "model_context_window_exceeded",
                             "some_future_reason"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"t\"}],"
                 "\"stop_reason\":\"%s\",\"stop_sequence\":%s," OK_USAGE "}",
                 reasons[i], strcmp(reasons[i], "stop_sequence") == 0 ? "\"END\"" : "null");
        aq_llm_response r;
        aq_err err;
        assert_int_equal(parse(body, &r, &err), AQ_OK);
        assert_string_equal(r.stop_reason, reasons[i]);
        if (strcmp(reasons[i], "stop_sequence") == 0)
            assert_string_equal(r.stop_sequence, "END");
        else
            assert_null(r.stop_sequence);
        aq_llm_response_free(&r);
    }
    /* a null stop_reason (only in streaming, but harmless) */
    aq_llm_response r;
    aq_err err;
    assert_int_equal(parse("{\"content\":[],\"stop_reason\":null," OK_USAGE "}", &r, &err), AQ_OK);
    assert_null(r.stop_reason);
    assert_string_equal(r.text, "");
    assert_null(r.id);
    aq_llm_response_free(&r);
}

static void test_multiple_blocks_and_tool_use(void **state)
{
    (void)state;
    const char *body =
        "{\"type\":\"message\",\"content\":["
        "{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"x\"},"
        "{\"type\":\"text\",\"text\":\"Part one. \"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\",\"input\":{\"q\":\"x\"}},"
        "{\"type\":\"text\",\"text\":\"Part two.\"},"
        "{\"type\":\"future_block\",\"text\":\"not text\"}],"
        "\"stop_reason\":\"tool_use\"," OK_USAGE "}";
    aq_llm_response r;
    aq_err err;
    assert_int_equal(parse(body, &r, &err), AQ_OK);
    assert_string_equal(r.text, "Part one. Part two.");
    assert_int_equal(r.n_tool_use, 1);
    assert_string_equal(r.stop_reason, "tool_use");
    aq_llm_response_free(&r);

    /* only a tool_use block: empty text */
    assert_int_equal(parse("{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\","
                           "\"input\":{}}]," OK_USAGE "}",
                           &r, &err),
                     AQ_OK);
    assert_string_equal(r.text, "");
    assert_int_equal(r.text_len, 0);
    assert_int_equal(r.n_tool_use, 1);
    aq_llm_response_free(&r);
}

static void test_text_with_nul_and_unicode(void **state)
{
    (void)state;
    aq_llm_response r;
    aq_err err;
    assert_int_equal(parse("{\"content\":[{\"type\":\"text\",\"text\":\"a\\u0000b \\u00e9\"}],"
                           OK_USAGE "}",
                           &r, &err),
                     AQ_OK);
    assert_int_equal(r.text_len, 6);
    assert_memory_equal(r.text, "a\0b \xc3\xa9", 6);
    aq_llm_response_free(&r);
}

static void test_optional_cache_usage(void **state)
{
    (void)state;
    aq_llm_response r;
    aq_err err;
    assert_int_equal(parse("{\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":2,"
                           "\"cache_creation_input_tokens\":null}}",
                           &r, &err),
                     AQ_OK);
    assert_int_equal(r.usage.input_tokens, 1);
    assert_int_equal(r.usage.output_tokens, 2);
    assert_int_equal(r.usage.cache_creation_input_tokens, 0);
    assert_int_equal(r.usage.cache_read_input_tokens, 0);
    aq_llm_response_free(&r);

    /* the largest count that fits */
    assert_int_equal(parse("{\"content\":[],\"usage\":{\"input_tokens\":4294967295,"
                           "\"output_tokens\":0}}",
                           &r, &err),
                     AQ_OK);
    assert_int_equal(r.usage.input_tokens, 4294967295u);
    aq_llm_response_free(&r);
}

static void test_malformed_bodies(void **state)
{
    (void)state;
    aq_llm_response r;
    aq_err err;
    memset(&r, 0, sizeof(r));
    assert_int_equal(aq_llm_response_parse("", 0, &r, &err), AQ_LLM_BAD_RESPONSE);
    assert_non_null(strstr(err.msg, "empty"));
    assert_int_equal(aq_llm_response_parse(NULL, 0, &r, &err), AQ_LLM_BAD_RESPONSE);
    assert_int_equal(aq_llm_response_parse("{}", 2, NULL, &err), AQ_INVALID_ARG);

    expect_bad("not json", "not JSON");
    expect_bad("{\"content\":[", "not JSON");   /* truncated */
    expect_bad("{\"content\":[{\"type\":\"text\",\"text\":\"abc", "not JSON");
    expect_bad("[1,2]", "not a JSON object");
    expect_bad("\"str\"", NULL);
    expect_bad("{\"content\":[]} trailing", "not JSON");
    expect_bad("{\"content\":[],\"content\":[]," OK_USAGE "}", "not JSON");   /* duplicate key */
}

static void test_missing_and_wrong_types(void **state)
{
    (void)state;
    expect_bad("{" OK_USAGE "}", "no \"content\"");
    expect_bad("{\"content\":[]}", "no \"usage\"");
    expect_bad("{\"content\":\"hello\"," OK_USAGE "}", "\"content\" is not an array");
    expect_bad("{\"content\":[],\"usage\":[]}", "\"usage\" is not an object");
    expect_bad("{\"content\":[],\"usage\":{\"output_tokens\":1}}", "input_tokens");
    expect_bad("{\"content\":[],\"usage\":{\"input_tokens\":1}}", "output_tokens");
    expect_bad("{\"content\":[],\"usage\":{\"input_tokens\":\"1\",\"output_tokens\":1}}",
               "not an integer");
    expect_bad("{\"content\":[],\"usage\":{\"input_tokens\":1.5,\"output_tokens\":1}}",
               "not an integer");
    expect_bad("{\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":1,"
               "\"cache_read_input_tokens\":true}}",
               "cache_read_input_tokens");
    expect_bad("{\"content\":[1]," OK_USAGE "}", "content[0] is not an object");
    expect_bad("{\"content\":[{\"text\":\"x\"}]," OK_USAGE "}", "content[0] has no string");
    expect_bad("{\"content\":[{\"type\":7}]," OK_USAGE "}", "content[0] has no string");
    expect_bad("{\"content\":[{\"type\":\"text\",\"text\":3}]," OK_USAGE "}",
               "content[0].text is not a string");
    expect_bad("{\"content\":[{\"type\":\"text\"}]," OK_USAGE "}", "content[0].text");
    expect_bad("{\"id\":5,\"content\":[]," OK_USAGE "}", "\"id\" is not a string");
    expect_bad("{\"model\":{},\"content\":[]," OK_USAGE "}", "\"model\"");
    expect_bad("{\"stop_reason\":1,\"content\":[]," OK_USAGE "}", "\"stop_reason\"");
    expect_bad("{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"m\"}}",
               "type is \"error\"");
    expect_bad("{\"type\":3,\"content\":[]," OK_USAGE "}", "\"type\" is not a string");
}

static void test_oversized_values(void **state)
{
    (void)state;
    expect_bad("{\"content\":[],\"usage\":{\"input_tokens\":4294967296,\"output_tokens\":1}}",
               "out of range");
    expect_bad("{\"content\":[],\"usage\":{\"input_tokens\":-1,\"output_tokens\":1}}",
               "out of range");
    expect_bad("{\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":"
               "99999999999999999999999}}",
               NULL);
    expect_bad("{\"content\":[],\"usage\":{\"input_tokens\":1e40,\"output_tokens\":1}}",
               "not an integer");

    /* an id over the field cap */
    size_t n = AQ_LLM_FIELD_MAX + 1;
    char *body = malloc(n + 200);
    assert_non_null(body);
    int off = sprintf(body, "{\"id\":\"");
    memset(body + off, 'x', n);
    sprintf(body + off + n, "\",\"content\":[]," OK_USAGE "}");
    expect_bad(body, "over the");
    free(body);

    /* too many content blocks */
    size_t blocks = AQ_LLM_BLOCKS_MAX + 1;
    body = malloc(blocks * 3 + 200);
    assert_non_null(body);
    off = sprintf(body, "{\"content\":[");
    for (size_t i = 0; i < blocks; i++)
        off += sprintf(body + off, "%s{}", i ? "," : "");
    sprintf(body + off, "]," OK_USAGE "}");
    expect_bad(body, "content blocks");
    free(body);

    /* deep nesting is refused by the parser, not the stack */
    size_t depth = 100000;
    body = malloc(depth + 1);
    assert_non_null(body);
    memset(body, '[', depth);
    body[depth] = '\0';
    expect_bad(body, "not JSON");
    free(body);
}

/* ---- error classification ---------------------------------------------- */

static void expect_class(long code, const char *etype, aq_status want)
{
    char body[256];
    aq_err err;
    snprintf(body, sizeof(body),
             "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"something happened\"},"
             "\"request_id\":\"req_1\"}",
             etype);
    aq_err_clear(&err);
    aq_status st = aq_llm_error_classify(code, body, strlen(body), &err);
    if (st != want)
        fail_msg("HTTP %ld %s: got %s want %s", code, etype, aq_status_class(st),
                 aq_status_class(want));
    assert_int_equal(err.status, want);
    char expect[128];
    snprintf(expect, sizeof(expect), "HTTP %ld %s: something happened", code, etype);
    assert_string_equal(err.msg, expect);
}

static void test_error_statuses(void **state)
{
    (void)state;
    expect_class(400, "invalid_request_error", AQ_HTTP_BAD_REQUEST);
    expect_class(401, "authentication_error", AQ_HTTP_UNAUTHORIZED);
    expect_class(402, "billing_error", AQ_HTTP_BILLING);
    expect_class(403, "permission_error", AQ_HTTP_FORBIDDEN);
    expect_class(404, "not_found_error", AQ_HTTP_NOT_FOUND);
    expect_class(408, "timeout_error", AQ_HTTP_TIMEOUT);
    expect_class(409, "conflict_error", AQ_HTTP_CONFLICT);
    expect_class(413, "request_too_large", AQ_HTTP_TOO_LARGE);
    expect_class(429, "rate_limit_error", AQ_HTTP_RATE_LIMITED);
    expect_class(500, "api_error", AQ_HTTP_SERVER_ERROR);
    expect_class(502, "api_error", AQ_HTTP_SERVER_ERROR);
    expect_class(503, "api_error", AQ_HTTP_SERVER_ERROR);
    expect_class(504, "timeout_error", AQ_HTTP_SERVER_ERROR);
    expect_class(507, "api_error", AQ_HTTP_SERVER_ERROR);
    expect_class(529, "overloaded_error", AQ_HTTP_OVERLOADED);
    expect_class(503, "overloaded_error", AQ_HTTP_OVERLOADED);
    expect_class(418, "teapot_error", AQ_HTTP_UNEXPECTED);
    expect_class(422, "invalid_request_error", AQ_HTTP_UNEXPECTED);
    expect_class(301, "x", AQ_HTTP_UNEXPECTED);
    expect_class(200, "x", AQ_HTTP_UNEXPECTED);
    expect_class(0, "x", AQ_HTTP_UNEXPECTED);
    expect_class(600, "x", AQ_HTTP_UNEXPECTED);
}

static void test_error_bodies_not_json_or_empty(void **state)
{
    (void)state;
    aq_err err;
    assert_int_equal(aq_llm_error_classify(502, NULL, 0, &err), AQ_HTTP_SERVER_ERROR);
    assert_string_equal(err.msg, "HTTP 502 (empty body)");
    assert_int_equal(aq_llm_error_classify(429, "", 0, &err), AQ_HTTP_RATE_LIMITED);
    assert_string_equal(err.msg, "HTTP 429 (empty body)");

    const char *html = "<html>\r\n<body>Bad Gateway</body>\n</html>";
    assert_int_equal(aq_llm_error_classify(502, html, strlen(html), &err), AQ_HTTP_SERVER_ERROR);
    assert_string_equal(err.msg, "HTTP 502: <html>  <body>Bad Gateway</body> </html>");

    /* JSON, but not the error shape */
    assert_int_equal(aq_llm_error_classify(500, "[1]", 3, &err), AQ_HTTP_SERVER_ERROR);
    assert_string_equal(err.msg, "HTTP 500: [1]");
    const char *no_msg = "{\"type\":\"error\",\"error\":{\"type\":\"api_error\"}}";
    assert_int_equal(aq_llm_error_classify(500, no_msg, strlen(no_msg), &err),
                     AQ_HTTP_SERVER_ERROR);
    assert_string_equal(err.msg, "HTTP 500 api_error");
    const char *wrong = "{\"error\":{\"type\":5,\"message\":[]}}";
    assert_int_equal(aq_llm_error_classify(400, wrong, strlen(wrong), &err), AQ_HTTP_BAD_REQUEST);
    assert_string_equal(err.msg, "HTTP 400 (error body without type or message)");
    /* a NULL err is fine */
    assert_int_equal(aq_llm_error_classify(529, NULL, 0, NULL), AQ_HTTP_OVERLOADED);
}

static void test_error_message_truncated_and_cleaned(void **state)
{
    (void)state;
    /* a 5000-byte provider message is cut to ~300 bytes, never mid-UTF-8 */
    size_t n = 5000;
    char *body = malloc(n + 200);
    assert_non_null(body);
    int off = sprintf(body, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                            "\"message\":\"");
    for (size_t i = 0; i < n; i += 2)
        memcpy(body + off + i, "\xc3\xa9", 2);   /* é */
    sprintf(body + off + n, "\"}}");
    aq_err err;
    assert_int_equal(aq_llm_error_classify(400, body, strlen(body), &err), AQ_HTTP_BAD_REQUEST);
    size_t len = strlen(err.msg);
    assert_true(len < 400);
    assert_true(len > 250);
    assert_string_equal(err.msg + len - 3, "...");
    /* the byte before "..." ends a complete é */
    assert_int_equal((unsigned char)err.msg[len - 4], 0xa9);
    assert_int_equal((unsigned char)err.msg[len - 5], 0xc3);
    free(body);

    /* a non-JSON body is cut too */
    char raw[2000];
    memset(raw, 'z', sizeof(raw));
    assert_int_equal(aq_llm_error_classify(503, raw, sizeof(raw), &err), AQ_HTTP_SERVER_ERROR);
    assert_true(strlen(err.msg) < 400);

    /* control characters are blanked, key-shaped tokens redacted */
    const char *leak = "{\"error\":{\"type\":\"authentication_error\",\"message\":"
                       "\"bad key sk-ant-api03-SECRETSECRET\\u0007\\nend\"}}";
    assert_int_equal(aq_llm_error_classify(401, leak, strlen(leak), &err), AQ_HTTP_UNAUTHORIZED);
    assert_null(strstr(err.msg, "SECRETSECRET"));
    assert_string_equal(err.msg,
                        "HTTP 401 authentication_error: bad key sk-ant-[REDACTED]  end");
    /* raw bytes that are not UTF-8 do not pass through */
    const char *bin = "\xff\xfe\x01 oops";
    assert_int_equal(aq_llm_error_classify(500, bin, strlen(bin), &err), AQ_HTTP_SERVER_ERROR);
    assert_string_equal(err.msg, "HTTP 500: ??  oops");
}

/* Found by fuzzing (tests/fuzz/fuzz_llm_response): "not JSON" quoted
 * jansson's error text, which quotes the body near the error as is, so a
 * control character or the first byte of a UTF-8 character reached the
 * message, and from it logs, DLQ headers and the Result's error (a proto3
 * string, which must be UTF-8). */
static void test_not_json_message_is_clean_utf8(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "\x0f",                           /* a control character */
        "{\"content\":\"\\ud83\xc3\xa9\"}", /* a bad escape, then a 2-byte character */
        "{\"content\":\"\x01\"}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        aq_llm_response r;
        aq_err err;
        assert_int_equal(parse(bodies[i], &r, &err), AQ_LLM_BAD_RESPONSE);
        assert_non_null(strstr(err.msg, "not JSON"));
        for (const unsigned char *p = (const unsigned char *)err.msg; *p; p++)
            if (*p < 0x20 || *p >= 0x7f) /* these bodies give ASCII messages once cleaned */
                fail_msg("body %zu: message \"%s\" has byte 0x%02x", i, err.msg, *p);
    }
}

/* ---- content blocks ---- */

static void test_blocks_kept_in_order(void **state)
{
    (void)state;
    const char *body =
        "{\"type\":\"message\",\"content\":["
        "{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"x\"},"
        "{\"type\":\"text\",\"text\":\"I will look.\"},"
        "{\"type\":\"text\",\"text\":\"\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\","
        "\"input\":{ \"city\" : \"Paris\", \"days\": [1, 2.5], \"deep\": {\"a\": null}}},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"get_time\",\"input\":{}}],"
        "\"stop_reason\":\"tool_use\"," OK_USAGE "}";
    aq_llm_response r;
    aq_err err;
    assert_int_equal(parse(body, &r, &err), AQ_OK);
    assert_int_equal(r.n_tool_use, 2);
    assert_int_equal(r.n_blocks, 3); /* thinking and the empty text are not kept */
    assert_int_equal(r.blocks[0].type, AQ_LLM_BLOCK_TEXT);
    assert_int_equal(r.blocks[0].text_off, 0);
    assert_int_equal(r.blocks[0].text_len, 12);
    assert_int_equal(r.blocks[1].type, AQ_LLM_BLOCK_TOOL_USE);
    assert_string_equal(r.blocks[1].id, "toolu_1");
    assert_string_equal(r.blocks[1].name, "get_weather");
    /* re-encoded compactly, key order kept */
    assert_string_equal(r.blocks[1].input_json,
                        "{\"city\":\"Paris\",\"days\":[1,2.5],\"deep\":{\"a\":null}}");
    assert_string_equal(r.blocks[2].input_json, "{}");

    /* as agentq.v1.ContentBlock */
    aq_llm_content c;
    assert_int_equal(aq_llm_response_content(&r, &c, &err), AQ_OK);
    assert_int_equal(c.n_blocks, 3);
    assert_int_equal(c.blocks[0]->block_case, AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT);
    assert_string_equal(c.blocks[0]->text->text, "I will look.");
    assert_int_equal(c.blocks[1]->block_case, AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE);
    assert_string_equal(c.blocks[1]->tool_use->id, "toolu_1");
    assert_string_equal(c.blocks[2]->tool_use->name, "get_time");
    /* packable as a Message (the agent loop's assistant turn) */
    Agentq__V1__Message m = AGENTQ__V1__MESSAGE__INIT;
    m.role = (char *)"assistant";
    m.blocks = c.blocks;
    m.n_blocks = c.n_blocks;
    size_t n = agentq__v1__message__get_packed_size(&m);
    uint8_t *buf = malloc(n);
    agentq__v1__message__pack(&m, buf);
    Agentq__V1__Message *back = agentq__v1__message__unpack(NULL, n, buf);
    assert_non_null(back);
    assert_string_equal(back->blocks[1]->tool_use->input_json, r.blocks[1].input_json);
    agentq__v1__message__free_unpacked(back, NULL);
    free(buf);

    /* and back (a cached answer) */
    aq_llm_response r2 = {0};
    assert_int_equal(aq_llm_response_set_content(&r2, c.blocks, c.n_blocks, &err), AQ_OK);
    assert_string_equal(r2.text, "I will look.");
    assert_int_equal(r2.n_blocks, 3);
    assert_int_equal(r2.n_tool_use, 2);
    assert_string_equal(r2.blocks[2].id, "toolu_2");
    aq_llm_content_free(&c);
    aq_llm_response_free(&r);
    aq_llm_response_free(&r2);
}

static void test_content_of_text_answers(void **state)
{
    (void)state;
    aq_llm_response r;
    aq_err err;
    aq_llm_content c;
    /* one text block: borrowed, no copy */
    assert_int_equal(parse("{\"content\":[{\"type\":\"text\",\"text\":\"hello\"}]," OK_USAGE "}", &r,
                           &err),
                     AQ_OK);
    assert_int_equal(aq_llm_response_content(&r, &c, &err), AQ_OK);
    assert_int_equal(c.n_blocks, 1);
    assert_ptr_equal(c.blocks[0]->text->text, r.text);
    aq_llm_content_free(&c);
    aq_llm_response_free(&r);
    /* several: each its own string, output their concatenation */
    assert_int_equal(parse("{\"content\":[{\"type\":\"text\",\"text\":\"ab\"},{\"type\":\"text\","
                           "\"text\":\"cd\"}]," OK_USAGE "}",
                           &r, &err),
                     AQ_OK);
    assert_string_equal(r.text, "abcd");
    assert_int_equal(aq_llm_response_content(&r, &c, &err), AQ_OK);
    assert_string_equal(c.blocks[0]->text->text, "ab");
    assert_string_equal(c.blocks[1]->text->text, "cd");
    aq_llm_content_free(&c);
    aq_llm_response_free(&r);
    /* no content at all */
    assert_int_equal(parse("{\"content\":[]," OK_USAGE "}", &r, &err), AQ_OK);
    assert_int_equal(r.n_blocks, 0);
    assert_int_equal(aq_llm_response_content(&r, &c, &err), AQ_OK);
    assert_int_equal(c.n_blocks, 0);
    assert_null(c.blocks);
    aq_llm_content_free(&c);
    aq_llm_content_free(NULL);
    aq_llm_response_free(&r);
}

static void test_stop_reasons_of_agents(void **state)
{
    (void)state;
    static const char *const reasons[] = {"tool_use", "pause_turn", "refusal", "end_turn"};
    for (size_t i = 0; i < 4; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"stop_reason\":\"%s\"," OK_USAGE "}",
                 reasons[i]);
        aq_llm_response r;
        aq_err err;
        assert_int_equal(parse(body, &r, &err), AQ_OK);
        assert_string_equal(r.stop_reason, reasons[i]);
        aq_llm_response_free(&r);
    }
}

static void test_malformed_tool_use(void **state)
{
    (void)state;
    expect_bad("{\"content\":[{\"type\":\"tool_use\",\"name\":\"n\",\"input\":{}}]," OK_USAGE "}",
               "content[0] (tool_use) has no string \"id\"");
    expect_bad("{\"content\":[{\"type\":\"tool_use\",\"id\":\"\",\"name\":\"n\",\"input\":{}}]," OK_USAGE "}",
               "has no string \"id\"");
    expect_bad("{\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"tool_use\",\"id\":\"t\","
               "\"name\":7,\"input\":{}}]," OK_USAGE "}",
               "content[1] (tool_use) has no string \"name\"");
    expect_bad("{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\"}]," OK_USAGE "}",
               "content[0] (tool_use) \"input\" is not an object");
    expect_bad("{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":[1]}]," OK_USAGE "}",
               "\"input\" is not an object");
    /* over the caps */
    size_t big = AQ_LLM_TOOL_INPUT_MAX + 64;
    char *body = malloc(big + 256);
    int n = snprintf(body, 256, "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{\"a\":\"");
    memset(body + n, 'x', big);
    snprintf(body + n + big, 256, "\"}}]," OK_USAGE "}");
    expect_bad(body, "input is over the");
    free(body);
    aq_buf many;
    aq_buf_init(&many, 1 << 20);
    aq_buf_append_str(&many, "{\"content\":[");
    for (unsigned i = 0; i <= AQ_LLM_TOOL_USES_MAX; i++)
        aq_buf_printf(&many, "%s{\"type\":\"tool_use\",\"id\":\"t%u\",\"name\":\"n\",\"input\":{}}",
                      i ? "," : "", i);
    aq_buf_append_str(&many, "]," OK_USAGE "}");
    expect_bad(many.data, "tool_use blocks (the cap)");
    aq_buf_free(&many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_response),
        cmocka_unit_test(test_every_stop_reason),
        cmocka_unit_test(test_multiple_blocks_and_tool_use),
        cmocka_unit_test(test_text_with_nul_and_unicode),
        cmocka_unit_test(test_optional_cache_usage),
        cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_missing_and_wrong_types),
        cmocka_unit_test(test_oversized_values),
        cmocka_unit_test(test_error_statuses),
        cmocka_unit_test(test_error_bodies_not_json_or_empty),
        cmocka_unit_test(test_error_message_truncated_and_cleaned),
        cmocka_unit_test(test_not_json_message_is_clean_utf8),
        cmocka_unit_test(test_blocks_kept_in_order),
        cmocka_unit_test(test_content_of_text_answers),
        cmocka_unit_test(test_stop_reasons_of_agents),
        cmocka_unit_test(test_malformed_tool_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
