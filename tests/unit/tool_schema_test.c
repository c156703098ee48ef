/* Tool input validation (tool/tool_schema.h): schemas that are not JSON or
 * not valid draft-07 JSON Schema, each kind of violation's message with its
 * JSON pointer, the caps, and the reply decoder (tool/tool_dispatch.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"
#include "tool/tool_dispatch.h"
#include "tool/tool_schema.h"

#define WEATHER                                                                                  \
    "{\"type\":\"object\",\"properties\":{"                                                      \
    "\"city\":{\"type\":\"string\"},"                                                            \
    "\"units\":{\"enum\":[\"c\",\"f\"]},"                                                        \
    "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":7},"                               \
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":2},"              \
    "\"a/b\":{\"type\":\"boolean\"},"                                                            \
    "\"addr\":{\"type\":\"object\",\"properties\":{\"zip\":{\"type\":\"string\","                 \
    "\"pattern\":\"^[0-9]{5}$\"}},\"required\":[\"zip\"],\"additionalProperties\":false}},"      \
    "\"required\":[\"city\",\"units\"]}"

static aq_tool_schema *compile_ok(const char *text)
{
    aq_tool_schema *s = NULL;
    aq_err err = {0};
    aq_status st = aq_tool_schema_compile(text, strlen(text), &s, &err);
    if (st != AQ_OK)
        fail_msg("compile: %s", err.msg);
    assert_non_null(s);
    return s;
}

/* Compiling fails with `want` and a message containing `needle`. */
static void compile_fails(const char *text, aq_status want, const char *needle)
{
    aq_tool_schema *s = (aq_tool_schema *)0x1;
    aq_err err = {0};
    aq_status st = aq_tool_schema_compile(text, strlen(text), &s, &err);
    if (st != want || !strstr(err.msg, needle))
        fail_msg("schema %s: status %d, message \"%s\" (want %d and \"%s\")", text, st, err.msg,
                 want, needle);
    assert_ptr_equal(s, (aq_tool_schema *)0x1); /* untouched on failure */
    assert_true(aq_utf8_valid(err.msg, strlen(err.msg)));
}

/* Validation gives exactly `want_msg` (NULL: passes). */
static void expect(const aq_tool_schema *s, const char *input, const char *want_msg)
{
    aq_err err = {0};
    aq_status st = aq_tool_schema_validate(s, input, strlen(input), &err);
    if (!want_msg) {
        if (st != AQ_OK)
            fail_msg("input %s: %s", input, err.msg);
        return;
    }
    if (st != AQ_INVALID_ARG || strcmp(err.msg, want_msg) != 0)
        fail_msg("input %s: status %d \"%s\", want \"%s\"", input, st, err.msg, want_msg);
    assert_true(aq_utf8_valid(err.msg, strlen(err.msg)));
}

static void test_valid_inputs(void **state)
{
    (void)state;
    aq_tool_schema *s = compile_ok(WEATHER);
    expect(s, "{\"city\":\"Paris\",\"units\":\"c\"}", NULL);
    expect(s, "{\"city\":\"Paris\",\"units\":\"f\",\"days\":7,\"tags\":[\"a\"],"
              "\"addr\":{\"zip\":\"75001\"}}", NULL);
    expect(s, "  {\"units\":\"c\", \"city\":\"\\u00e9t\\u00e9\"}\n", NULL);
    aq_tool_schema_destroy(s);
    aq_tool_schema_destroy(NULL);
}

static void test_violation_messages(void **state)
{
    (void)state;
    aq_tool_schema *s = compile_ok(WEATHER);
    expect(s, "{\"city\":3,\"units\":\"c\"}", "/city: expected string, got integer");
    expect(s, "{\"city\":null,\"units\":\"c\"}", "/city: expected string, got null");
    expect(s, "{\"city\":\"x\"}", "missing required property \"units\"");
    expect(s, "{\"city\":\"x\",\"units\":\"k\"}", "/units: value is not one of the enum values");
    expect(s, "{\"city\":\"x\",\"units\":\"c\",\"days\":9}",
           "/days: expected number less than or equal to 7");
    expect(s, "{\"city\":\"x\",\"units\":\"c\",\"days\":0}",
           "/days: expected number greater than or equal to 1");
    expect(s, "{\"city\":\"x\",\"units\":\"c\",\"days\":1.5}", "/days: expected integer, got number");
    expect(s, "{\"city\":\"x\",\"units\":\"c\",\"tags\":[\"a\",2]}",
           "/tags/1: expected string, got integer");
    expect(s, "{\"city\":\"x\",\"units\":\"c\",\"a/b\":\"yes\"}",
           "/a~1b: expected boolean, got string");
    expect(s, "{\"city\":\"x\",\"units\":\"c\",\"addr\":{}}", "/addr: missing required property \"zip\"");
    expect(s, "{\"city\":\"x\",\"units\":\"c\",\"addr\":{\"zip\":\"7500\"}}",
           "/addr/zip: failed to match regex specified by 'pattern' constraint");
    expect(s, "[1,2]", "expected object, got array");
    /* several: up to three named, then counted */
    expect(s, "{\"city\":1.5,\"days\":\"x\"}",
           "/city: expected string, got number; /days: expected integer, got string; "
           "missing required property \"units\"");
    expect(s, "{\"city\":1,\"days\":\"x\",\"tags\":[1,2,3]}",
           "/city: expected string, got integer; /days: expected integer, got string; "
           "/tags/0: expected string, got integer; (and 4 more)");
    aq_tool_schema_destroy(s);
}

static void test_input_not_json(void **state)
{
    (void)state;
    aq_tool_schema *s = compile_ok(WEATHER);
    aq_err err = {0};
    const char *in[] = {"{\"city\":", "", "{\"city\":\"\xff\"}", "nan", "{\"a\":1}x"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        assert_int_equal(aq_tool_schema_validate(s, in[i], strlen(in[i]), &err), AQ_INVALID_ARG);
        if (strncmp(err.msg, "input is not JSON: ", 19) != 0)
            fail_msg("%s: %s", in[i], err.msg);
        /* never echoes the input's bad bytes */
        assert_true(aq_utf8_valid(err.msg, strlen(err.msg)));
    }
    aq_tool_schema_destroy(s);
}

static void test_invalid_schemas(void **state)
{
    (void)state;
    compile_fails("not json", AQ_INVALID_ARG, "input_schema is not JSON: parse error at line 1");
    compile_fails("", AQ_INVALID_ARG, "input_schema is not JSON");
    compile_fails("{\"type\":\"strin\"}", AQ_INVALID_ARG,
                  "input_schema is not a valid JSON Schema: /type: value is not one of the enum values");
    compile_fails("{\"type\":\"object\",\"properties\":{\"a\":{\"minimum\":\"x\"}}}", AQ_INVALID_ARG,
                  "input_schema is not a valid JSON Schema: /properties/a/minimum: ");
    compile_fails("{\"required\":[\"a\",\"a\"]}", AQ_INVALID_ARG, "/required: ");
    compile_fails("{\"properties\":{\"a\":{\"pattern\":\"([a-z\"}}}", AQ_INVALID_ARG,
                  "/properties/a/pattern: not a valid regular expression");
    compile_fails("{\"patternProperties\":{\"(\":{}}}", AQ_INVALID_ARG,
                  "/patternProperties/(: not a valid regular expression");
    compile_fails("{\"$ref\":\"http://example.com/s.json\"}", AQ_INVALID_ARG,
                  "input_schema is not a valid JSON Schema: /$ref: only references inside the schema");
    compile_fails("{\"$ref\":\"#/definitions/nope\"}", AQ_INVALID_ARG,
                  "/$ref: reference #/definitions/nope names nothing in the schema");
    compile_fails("42", AQ_INVALID_ARG, "expected one of object boolean, got integer");
    /* references valijson would recurse on forever (found by fuzz_tool:
     * "$ref": "object" overflowed the stack) */
    compile_fails("{\"$ref\":\"object\"}", AQ_INVALID_ARG,
                  "/$ref: only references inside the schema (\"#/...\") are supported");
    compile_fails("{\"$ref\":\"#\"}", AQ_INVALID_ARG,
                  "(root): references loop back here without going into a property or an item");
    compile_fails("{\"allOf\":[{\"$ref\":\"#\"}]}", AQ_INVALID_ARG, "(root): references loop back");
    compile_fails("{\"definitions\":{\"a\":{\"$ref\":\"#/definitions/b\"},\"b\":{\"not\":"
                  "{\"$ref\":\"#/definitions/a\"}}},\"$ref\":\"#/definitions/a\"}",
                  AQ_INVALID_ARG, "/definitions/a: references loop back");
    compile_fails("{\"properties\":{\"a\":{\"$ref\":\"#/properties/a\"}}}", AQ_INVALID_ARG,
                  "/properties/a: references loop back");
    compile_fails("{\"properties\":{\"a\":{\"$id\":\"x\"}}}", AQ_INVALID_ARG,
                  "/properties/a/$id: \"$id\" is supported at the root only");
    aq_tool_schema_destroy(compile_ok("{\"$id\":\"http://example.com/s\",\"properties\":{\"a\":"
                                      "{\"$ref\":\"#/definitions/x\"}},\"definitions\":{\"x\":{}}}"));
    /* "enum" and "default" hold data, not schemas: a "pattern" in them is not compiled */
    aq_tool_schema_destroy(compile_ok("{\"enum\":[{\"pattern\":\"([\"}],\"default\":{\"pattern\":\"(\"}}"));
    aq_tool_schema_destroy(compile_ok("true"));
    aq_tool_schema_destroy(compile_ok("{}"));
}

static void test_refs_and_combinators(void **state)
{
    (void)state;
    aq_tool_schema *s = compile_ok(
        "{\"definitions\":{\"n\":{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":"
        "\"#/definitions/n\"},\"v\":{\"type\":\"integer\"}}}},\"$ref\":\"#/definitions/n\"}");
    expect(s, "{\"next\":{\"next\":{\"v\":1}}}", NULL);
    expect(s, "{\"next\":{\"next\":{\"next\":3}}}", "/next/next/next: expected object, got integer");
    aq_tool_schema_destroy(s);
    s = compile_ok("{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}");
    expect(s, "\"a\"", NULL);
    expect(s, "7", NULL);
    aq_err err = {0};
    assert_int_equal(aq_tool_schema_validate(s, "true", 4, &err), AQ_INVALID_ARG);
    if (!strstr(err.msg, "failed to validate against"))
        fail_msg("%s", err.msg);
    aq_tool_schema_destroy(s);
}

static void test_caps(void **state)
{
    (void)state;
    aq_err err = {0};
    aq_tool_schema *out = NULL;
    /* schema size */
    size_t big = AQ_TOOL_SCHEMA_MAX_BYTES + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, ' ', big);
    text[0] = '{';
    text[big - 1] = '}';
    text[big] = '\0';
    assert_int_equal(aq_tool_schema_compile(text, big, &out, &err), AQ_TOO_BIG);
    assert_non_null(strstr(err.msg, "cap"));
    free(text);

    /* depth: of a schema, and of an input */
    char deep[512] = "";
    for (int i = 0; i < AQ_TOOL_SCHEMA_MAX_DEPTH + 2; i++)
        strcat(deep, "[");
    assert_int_equal(aq_tool_schema_compile(deep, strlen(deep), &out, &err), AQ_TOO_BIG);
    assert_non_null(strstr(err.msg, "nests deeper than 64 levels"));
    aq_tool_schema *s = compile_ok("{}");
    assert_int_equal(aq_tool_schema_validate(s, deep, strlen(deep), &err), AQ_TOO_BIG);
    assert_string_equal(err.msg, "input nests deeper than 64 levels");
    char ok_deep[512] = "";
    for (int i = 0; i < AQ_TOOL_SCHEMA_MAX_DEPTH; i++)
        strcat(ok_deep, "[");
    for (int i = 0; i < AQ_TOOL_SCHEMA_MAX_DEPTH; i++)
        strcat(ok_deep, "]");
    expect(s, ok_deep, NULL);

    /* input size */
    size_t n = AQ_TOOL_INPUT_MAX_BYTES + 1;
    char *in = malloc(n);
    assert_non_null(in);
    memset(in, ' ', n);
    in[0] = '1';
    assert_int_equal(aq_tool_schema_validate(s, in, n, &err), AQ_TOO_BIG);
    assert_non_null(strstr(err.msg, "input is 1048577 bytes, cap 1048576"));
    aq_tool_schema_destroy(s);

    /* strings under a pattern: std::regex recurses per character, so a
     * long one is refused instead of overflowing the stack */
    s = compile_ok("{\"properties\":{\"s\":{\"type\":\"string\",\"pattern\":\"^(a|b)*$\"}}}");
    size_t len = 100000;
    char *long_in = malloc(len + 16);
    assert_non_null(long_in);
    strcpy(long_in, "{\"s\":\"");
    memset(long_in + 6, 'a', len);
    strcpy(long_in + 6 + len, "\"}");
    assert_int_equal(aq_tool_schema_validate(s, long_in, strlen(long_in), &err), AQ_INVALID_ARG);
    assert_string_equal(err.msg, "/s: string of 100000 characters, longer than the 1000 a schema "
                                 "with patterns or formats can check");
    strcpy(long_in + 6 + AQ_TOOL_REGEX_MAX_CHARS, "\"}");
    expect(s, long_in, NULL);
    aq_tool_schema_destroy(s);
    /* without patterns, long strings are fine */
    s = compile_ok("{\"properties\":{\"s\":{\"type\":\"string\"}}}");
    strcpy(long_in + 6 + len, "\"}");
    memset(long_in + 6 + AQ_TOOL_REGEX_MAX_CHARS, 'a', len - AQ_TOOL_REGEX_MAX_CHARS);
    expect(s, long_in, NULL);
    aq_tool_schema_destroy(s);
    free(long_in);
    free(in);
}

/* ---- replies ---- */

static void reply_is(const char *body, size_t len, aq_tool_outcome outcome, bool is_error,
                     const char *content)
{
    aq_tool_reply r;
    aq_err err = {0};
    assert_int_equal(aq_tool_reply_decode(body, len, 1024, &r, &err), AQ_OK);
    if (r.outcome != outcome || r.is_error != is_error || strcmp(r.content_json, content) != 0)
        fail_msg("reply %.*s: %s %d %s (want %s %d %s)", (int)len, body,
                 aq_tool_outcome_name(r.outcome), r.is_error, r.content_json,
                 aq_tool_outcome_name(outcome), is_error, content);
    aq_tool_reply_clear(&r);
}

static void test_replies(void **state)
{
    (void)state;
#define R(s) s, sizeof(s) - 1
    reply_is(R("{\"content\":\"21 C\"}"), AQ_TOOL_OK, false, "\"21 C\"");
    reply_is(R("{\"content\":\"no such city\",\"is_error\":true}"), AQ_TOOL_ERROR, true,
             "\"no such city\"");
    reply_is(R("{\"content\":\"account closed\",\"permanent\":true}"), AQ_TOOL_PERMANENT_FAILURE,
             true, "\"account closed\"");
    reply_is(R("{\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image\",\"source\":"
               "{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AA==\"}}]}"),
             AQ_TOOL_OK, false,
             "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image\",\"source\":{\"type\":"
             "\"base64\",\"media_type\":\"image/png\",\"data\":\"AA==\"}}]");
    /* plain text, and JSON that is not the envelope: the text as it is */
    reply_is(R("sunny, 21 C"), AQ_TOOL_OK, false, "\"sunny, 21 C\"");
    reply_is(R("{\"temp\":21}"), AQ_TOOL_OK, false, "\"{\\\"temp\\\":21}\"");
    reply_is(R(""), AQ_TOOL_OK, false, "\"\"");
    /* bad replies */
    reply_is(R("\xff\xfe"), AQ_TOOL_BAD_REPLY, true, "\"bad tool reply: not valid UTF-8\"");
    /* found by fuzz_tool: a NUL made content that does not decode again */
    reply_is(R("{\"do\0\0\0nte:\"21 C\"}"), AQ_TOOL_BAD_REPLY, true,
             "\"bad tool reply: contains a NUL byte\"");
    reply_is(R("{\"content\":3}"), AQ_TOOL_BAD_REPLY, true,
             "\"bad tool reply: content must be a string or an array of blocks\"");
    reply_is(R("{\"content\":\"x\",\"is_error\":\"yes\"}"), AQ_TOOL_BAD_REPLY, true,
             "\"bad tool reply: is_error and permanent must be booleans\"");
    reply_is(R("{\"content\":[{\"type\":\"tool_use\"}]}"), AQ_TOOL_BAD_REPLY, true,
             "\"bad tool reply: content[0] has type \\\"tool_use\\\" (text, image or document)\"");
    reply_is(R("{\"content\":[{\"type\":\"text\"}]}"), AQ_TOOL_BAD_REPLY, true,
             "\"bad tool reply: content[0] (text) has no string text\"");
    char big[2000];
    memset(big, 'x', sizeof(big));
    reply_is(big, sizeof(big), AQ_TOOL_BAD_REPLY, true,
             "\"bad tool reply: 2000 bytes, over the cap of 1024\"");
#undef R
    assert_string_equal(aq_tool_outcome_name(AQ_TOOL_NO_RESPONDERS), "no_responders");
    assert_string_equal(aq_tool_outcome_name(AQ_TOOL_SCHEMA_VIOLATION), "schema_violation");
    assert_string_equal(aq_tool_outcome_name(AQ_TOOL_PERMANENT_FAILURE), "permanent_failure");
}

/* ---- configuration ---- */

static void config_is(const char *prefix, const char *subjects, const char *action,
                      const char *needle)
{
    aq_tool_config c = {.subject_prefix = (char *)prefix, .subjects = (char *)subjects,
                        .timeout_ms = 1000, .max_attempts = 3, .max_reply_bytes = 1024,
                        .failure_action = (char *)action};
    aq_err err = {0};
    aq_status st = aq_tool_config_check(&c, &err);
    if (!needle) {
        if (st != AQ_OK)
            fail_msg("%s / %s: %s", prefix, subjects, err.msg);
        return;
    }
    if (st != AQ_CONFIG || !strstr(err.msg, needle))
        fail_msg("%s / %s: %d %s (want \"%s\")", prefix, subjects, st, err.msg, needle);
}

static void test_config(void **state)
{
    (void)state;
    config_is("agentq.tools", "", "model", NULL);
    config_is("agentq.tools", " get_weather = weather.v2.get ; lookup_order=orders.lookup;", "fail",
              NULL);
    config_is("agentq.*", "", "model", "tool_subject_prefix");
    config_is("agentq..tools", "", "model", "tool_subject_prefix");
    config_is("", "", "model", "tool_subject_prefix");
    config_is("agentq.tools", "", "maybe", "tool_failure_action: \"maybe\" (model or fail)");
    config_is("agentq.tools", "get_weather", "model", "is not name=subject");
    config_is("agentq.tools", "get.weather=a.b", "model", "is not a tool name");
    config_is("agentq.tools", "get_weather=a.>", "model", "is not a NATS subject without wildcards");
    config_is("agentq.tools", "get_weather=a b", "model", "is not a NATS subject without wildcards");
    config_is("agentq.tools", "a=x.y;a=x.z", "model", "tool a appears twice");
    assert_true(aq_tool_name_valid("get_weather-2"));
    assert_true(aq_tool_name_valid("a234567890123456789012345678901234567890123456789012345678901234"));
    assert_false(aq_tool_name_valid("a2345678901234567890123456789012345678901234567890123456789012345"));
    assert_false(aq_tool_name_valid(""));
    assert_false(aq_tool_name_valid("get.weather"));
    assert_false(aq_tool_name_valid("get weather"));
    assert_false(aq_tool_name_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_inputs),
        cmocka_unit_test(test_violation_messages),
        cmocka_unit_test(test_input_not_json),
        cmocka_unit_test(test_invalid_schemas),
        cmocka_unit_test(test_refs_and_combinators),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
