#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm_response.h"
#include "llm/llm_sse.h"

/* One event as the API writes it. */
#define EV(name, json) "event: " name "\ndata: " json "\n\n"

/* Recorded from agentq-sim ("stream": true and not, the same request; the
 * non-streamed body's id set to the streamed one's). */
static const char TEXT_STREAM[] =
    EV("message_start",
       "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_b3ed1f090000000000000002\",\"type\":"
       "\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],\"stop_"
       "reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":7,\"output_tokens\":1,"
       "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}}")
    EV("ping", "{\"type\":\"ping\"}")
    EV("content_block_start",
       "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
       "\"text\":\"\"}}")
    EV("content_block_delta",
       "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
       "\"echo: hello there | romeo knoll alpha dune meadow forest oscar l\"}}")
    EV("content_block_delta",
       "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
       "\"ima forest fjord upland summit lantern summit glacier gr\"}}")
    EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
    EV("message_delta",
       "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
       "\"usage\":{\"input_tokens\":7,\"output_tokens\":30,\"cache_creation_input_tokens\":0,"
       "\"cache_read_input_tokens\":0}}")
    EV("message_stop", "{\"type\":\"message_stop\"}");

static const char TEXT_BODY[] =
    "{\"id\":\"msg_b3ed1f090000000000000002\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-haiku-4-5\",\"content\":[{\"type\":\"text\",\"text\":\"echo: hello there "
    "| romeo knoll alpha dune meadow forest oscar lima forest fjord upland summit lantern summit "
    "glacier gr\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_"
    "tokens\":7,\"output_tokens\":30,\"cache_creation_input_tokens\":0,\"cache_read_input_"
    "tokens\":0}}";

/* A tool_use answer; the input comes in three partial_json pieces that cut
 * a key and a string. */
static const char TOOL_STREAM[] =
    EV("message_start",
       "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_b3ed1f09000000000000000a\",\"type\":"
       "\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],\"stop_"
       "reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":37,\"output_tokens\":1,"
       "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}}")
    EV("ping", "{\"type\":\"ping\"}")
    EV("content_block_start",
       "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
       "\"text\":\"\"}}")
    EV("content_block_delta",
       "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
       "\"Step 1: calling get_weather.\"}}")
    EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
    EV("content_block_start",
       "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
       "\"id\":\"toolu_019460004b1e9d47df0000\",\"name\":\"get_weather\",\"input\":{}}}")
    EV("content_block_delta",
       "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
       "\"partial_json\":\"{\\\"ci\"}}")
    EV("content_block_delta",
       "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
       "\"partial_json\":\"ty\\\":\\\"city-\"}}")
    EV("content_block_delta",
       "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
       "\"partial_json\":\"a510\\\"}\"}}")
    EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":1}")
    EV("message_delta",
       "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":"
       "null},\"usage\":{\"input_tokens\":37,\"output_tokens\":15,\"cache_creation_input_tokens\":"
       "0,\"cache_read_input_tokens\":0}}")
    EV("message_stop", "{\"type\":\"message_stop\"}");

static const char TOOL_BODY[] =
    "{\"id\":\"msg_b3ed1f09000000000000000a\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-haiku-4-5\",\"content\":[{\"type\":\"text\",\"text\":\"Step 1: calling "
    "get_weather.\"},{\"type\":\"tool_use\",\"id\":\"toolu_019460004b1e9d47df0000\",\"name\":"
    "\"get_weather\",\"input\":{\"city\":\"city-a510\"}}],\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":37,\"output_tokens\":15,\"cache_creation_"
    "input_tokens\":0,\"cache_read_input_tokens\":0}}";

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void assert_same_response(const aq_llm_response *a, const aq_llm_response *b)
{
    assert_true(str_eq(a->id, b->id));
    assert_true(str_eq(a->model, b->model));
    assert_true(str_eq(a->stop_reason, b->stop_reason));
    assert_true(str_eq(a->stop_sequence, b->stop_sequence));
    assert_int_equal(a->text_len, b->text_len);
    assert_memory_equal(a->text, b->text, a->text_len);
    assert_memory_equal(&a->usage, &b->usage, sizeof(a->usage));
    assert_int_equal(a->n_tool_use, b->n_tool_use);
    assert_int_equal(a->n_blocks, b->n_blocks);
    for (size_t i = 0; i < a->n_blocks; i++) {
        const aq_llm_block *x = &a->blocks[i], *y = &b->blocks[i];
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->text_off, y->text_off);
        assert_int_equal(x->text_len, y->text_len);
        assert_true(str_eq(x->id, y->id));
        assert_true(str_eq(x->name, y->name));
        assert_true(str_eq(x->input_json, y->input_json));
    }
}

/* Feed `s` in pieces cut at the offsets in `cuts` (ascending, n_cuts of
 * them) and finish. */
static aq_status feed_cuts(const char *s, size_t len, const size_t *cuts, size_t n_cuts,
                           const aq_llm_sse_limits *lim, aq_llm_response *out, aq_err *err)
{
    aq_llm_sse *p = NULL;
    aq_status st = aq_llm_sse_new(lim, &p, err);
    assert_int_equal(st, AQ_OK);
    size_t at = 0;
    for (size_t i = 0; i <= n_cuts && st == AQ_OK; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        st = aq_llm_sse_feed(p, s + at, end - at, err);
        at = end;
    }
    aq_status fst = aq_llm_sse_finish(p, out, err);
    if (st != AQ_OK)
        assert_int_equal(fst, st); /* sticky */
    aq_llm_sse_free(p);
    return fst;
}

static aq_status feed_all(const char *s, const aq_llm_sse_limits *lim, aq_llm_response *out,
                          aq_err *err)
{
    memset(out, 0, sizeof(*out));
    return feed_cuts(s, strlen(s), NULL, 0, lim, out, err);
}

/* The stream split in two at every offset, and byte by byte, gives the
 * non-streamed answer. */
static void check_every_split(const char *stream, const char *body)
{
    aq_llm_response want, got;
    aq_err err;
    size_t len = strlen(stream);
    assert_int_equal(aq_llm_response_parse(body, strlen(body), &want, &err), AQ_OK);
    for (size_t cut = 0; cut <= len; cut++) {
        memset(&got, 0, sizeof(got));
        aq_status st = feed_cuts(stream, len, &cut, 1, NULL, &got, &err);
        if (st != AQ_OK)
            fail_msg("split at %zu: %s", cut, err.msg);
        assert_same_response(&got, &want);
        aq_llm_response_free(&got);
    }
    size_t *cuts = malloc(len * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    assert_int_equal(feed_cuts(stream, len, cuts, len - 1, NULL, &got, &err), AQ_OK);
    assert_same_response(&got, &want);
    aq_llm_response_free(&got);
    free(cuts);
    aq_llm_response_free(&want);
}

static void test_text_every_split(void **state)
{
    (void)state;
    check_every_split(TEXT_STREAM, TEXT_BODY);
}

static void test_tool_use_every_split(void **state)
{
    (void)state;
    check_every_split(TOOL_STREAM, TOOL_BODY);
    aq_llm_response r;
    aq_err err;
    assert_int_equal(feed_all(TOOL_STREAM, NULL, &r, &err), AQ_OK);
    assert_int_equal(r.n_blocks, 2);
    assert_int_equal(r.blocks[1].type, AQ_LLM_BLOCK_TOOL_USE);
    assert_string_equal(r.blocks[1].input_json, "{\"city\":\"city-a510\"}");
    assert_string_equal(r.stop_reason, "tool_use");
    aq_llm_response_free(&r);
}

/* s with every "\n" replaced by `eol`. */
static char *with_eol(const char *s, const char *eol)
{
    size_t n = 0, el = strlen(eol);
    for (const char *c = s; *c; c++)
        n += *c == '\n' ? el : 1;
    char *o = malloc(n + 1), *w = o;
    assert_non_null(o);
    for (const char *c = s; *c; c++) {
        if (*c == '\n') {
            memcpy(w, eol, el);
            w += el;
        } else {
            *w++ = *c;
        }
    }
    *w = '\0';
    return o;
}

static void test_crlf_and_cr(void **state)
{
    (void)state;
    char *crlf = with_eol(TOOL_STREAM, "\r\n"), *cr = with_eol(TOOL_STREAM, "\r");
    check_every_split(crlf, TOOL_BODY); /* every split: also between CR and LF */
    check_every_split(cr, TOOL_BODY);
    free(crlf);
    free(cr);
}

/* Comments, id/retry/unknown fields, no space after the colon, data over
 * several lines, an event with no `event:` line (typed by its data), ping
 * and unknown events anywhere. */
static void test_sse_syntax_and_ignored_events(void **state)
{
    (void)state;
    static const char s[] =
        ": a comment\n"
        "retry: 1000\n"
        "\n"
        "id: 7\n"
        "event:message_start\n"
        "data:{\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"x\",\n"
        "data: \"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n"
        "foo: bar\n"
        "\n"
        EV("ping", "{\"type\":\"ping\"}")
        EV("future_event", "{\"type\":\"future_event\",\"whatever\":[1,2]}")
        EV("future_event", "not even JSON is looked at? no: it is parsed")
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"He\"}}\n\n"
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"llo\"}}")
        EV("ping", "{\"type\":\"ping\"}")
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}")
        EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
        EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}")
        EV("message_stop", "{\"type\":\"message_stop\"}")
        "garbage after the end is ignored\n\n";
    aq_llm_response r;
    aq_err err;
    /* an unknown event's data must still be JSON: this stream fails there */
    assert_int_equal(feed_all(s, NULL, &r, &err), AQ_LLM_BAD_RESPONSE);
    assert_non_null(strstr(err.msg, "future_event"));

    /* without the non-JSON unknown event it parses */
    char *ok = strdup(s);
    char *bad = strstr(ok, "event: future_event\ndata: not");
    char *end = strstr(bad, "\n\n") + 2;
    memmove(bad, end, strlen(end) + 1);
    assert_int_equal(feed_all(ok, NULL, &r, &err), AQ_OK);
    assert_string_equal(r.id, "m1");
    assert_string_equal(r.text, "Hello");
    assert_int_equal(r.n_blocks, 1);
    assert_int_equal(r.usage.input_tokens, 3);
    assert_int_equal(r.usage.output_tokens, 9);
    assert_string_equal(r.stop_reason, "end_turn");
    aq_llm_response_free(&r);
    free(ok);
}

#define START_EV                                                                              \
    EV("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\"," \
                        "\"usage\":{\"input_tokens\":10,\"output_tokens\":1,"                 \
                        "\"cache_read_input_tokens\":4}}}")
#define TEXT_START(i)                                                                        \
    EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":" #i              \
                              ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")
#define TEXT_DELTA(i, t)                                                                     \
    EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":" #i              \
                              ",\"delta\":{\"type\":\"text_delta\",\"text\":\"" t "\"}}")
#define STOP(i) EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":" #i "}")
#define END_EV                                                                               \
    EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","  \
                        "\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}")          \
    EV("message_stop", "{\"type\":\"message_stop\"}")

/* message_delta usage is cumulative: each counter present replaces the one
 * so far; absent ones keep message_start's. A thinking block and its deltas
 * are skipped; an empty text block is not kept. */
static void test_usage_and_skipped_blocks(void **state)
{
    (void)state;
    static const char s[] =
        START_EV
        EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}")
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}")
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"abc\"}}")
        STOP(0)
        TEXT_START(1) STOP(1)
        TEXT_START(2) TEXT_DELTA(2, "a") TEXT_DELTA(2, "b") STOP(2)
        EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\"},\"usage\":{\"output_tokens\":3}}")
        EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":7,\"input_tokens\":11}}")
        EV("message_stop", "{\"type\":\"message_stop\"}");
    aq_llm_response r;
    aq_err err;
    assert_int_equal(feed_all(s, NULL, &r, &err), AQ_OK);
    assert_int_equal(r.n_blocks, 1);
    assert_string_equal(r.text, "ab");
    assert_int_equal(r.usage.input_tokens, 11);
    assert_int_equal(r.usage.output_tokens, 7);
    assert_int_equal(r.usage.cache_read_input_tokens, 4);
    assert_string_equal(r.stop_reason, "stop_sequence");
    assert_string_equal(r.stop_sequence, "END");
    aq_llm_response_free(&r);
}

static void expect_fail(const char *s, const aq_llm_sse_limits *lim, aq_status want,
                        const char *msg_part)
{
    aq_llm_response r;
    aq_err err;
    aq_status st = feed_all(s, lim, &r, &err);
    if (st != want)
        fail_msg("status %s (%s), want %s", aq_status_class(st), err.msg, aq_status_class(want));
    if (msg_part && !strstr(err.msg, msg_part))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg_part);
    assert_null(r.text);
}

/* An error event after the 200: overloaded_error is classified like a 529,
 * api_error like a 5xx, others by their type; the feed fails at once and
 * stays failed. */
static void test_error_event(void **state)
{
    (void)state;
    expect_fail(START_EV TEXT_START(0) TEXT_DELTA(0, "par")
                EV("error", "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}"),
                NULL, AQ_HTTP_OVERLOADED, "overloaded_error: Overloaded");
    expect_fail(START_EV EV("error", "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}"),
                NULL, AQ_HTTP_SERVER_ERROR, "api_error: boom");
    expect_fail(START_EV EV("error", "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow\"}}"),
                NULL, AQ_HTTP_RATE_LIMITED, "rate_limit_error");
    expect_fail(START_EV EV("error", "{\"type\":\"error\",\"error\":{\"type\":\"brand_new_error\",\"message\":\"?\"}}"),
                NULL, AQ_HTTP_SERVER_ERROR, "brand_new_error");
    expect_fail(EV("error", "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"sk-ant-api03-abcdef leaked\"}}"),
                NULL, AQ_HTTP_BAD_REQUEST, "sk-ant-[REDACTED]");
    /* an event without an event line is typed by its data */
    expect_fail(START_EV "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n",
                NULL, AQ_HTTP_OVERLOADED, NULL);

    /* sticky: later feeds report the same failure */
    aq_llm_sse *p;
    aq_err err;
    const char *e = EV("error", "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}");
    assert_int_equal(aq_llm_sse_new(NULL, &p, &err), AQ_OK);
    assert_int_equal(aq_llm_sse_feed(p, START_EV, strlen(START_EV), &err), AQ_OK);
    assert_int_equal(aq_llm_sse_feed(p, e, strlen(e), &err), AQ_HTTP_OVERLOADED);
    assert_int_equal(aq_llm_sse_feed(p, END_EV, strlen(END_EV), &err), AQ_HTTP_OVERLOADED);
    assert_non_null(strstr(err.msg, "Overloaded"));
    aq_llm_response r;
    assert_int_equal(aq_llm_sse_finish(p, &r, &err), AQ_HTTP_OVERLOADED);
    aq_llm_sse_free(p);
}

/* Every strict prefix of a good stream (cut anywhere before the blank line
 * that ends message_stop) is a cut stream: AQ_LLM_STREAM_CUT. */
static void test_cut_stream(void **state)
{
    (void)state;
    size_t len = strlen(TOOL_STREAM);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    for (size_t n = 0; n < len - 1; n++) {
        memcpy(buf, TOOL_STREAM, n);
        buf[n] = '\0';
        aq_llm_response r;
        aq_err err;
        aq_status st = feed_all(buf, NULL, &r, &err);
        if (st != AQ_LLM_STREAM_CUT)
            fail_msg("prefix of %zu bytes: %s (%s)", n, aq_status_class(st), err.msg);
        assert_non_null(strstr(err.msg, "before message_stop"));
    }
    free(buf);
    expect_fail(START_EV TEXT_START(0) TEXT_DELTA(0, "x"), NULL, AQ_LLM_STREAM_CUT,
                "inside a content block");
    expect_fail("", NULL, AQ_LLM_STREAM_CUT, "before message_start");
    assert_int_equal(aq_status_disposition(AQ_LLM_STREAM_CUT), AQ_DISP_RETRY);
}

static void test_caps(void **state)
{
    (void)state;
    /* one event's data: the start event is ~130 bytes; a 100-byte cap refuses it */
    aq_llm_sse_limits ev = {100, 0, 0};
    expect_fail(START_EV END_EV, &ev, AQ_LLM_RESPONSE_TOO_BIG, "100-byte event cap");
    /* a long line without end counts too (cut mid-line at the end of a feed) */
    char *longline = malloc(5000);
    memset(longline, 'a', 4999);
    memcpy(longline, "data: ", 6);
    longline[4999] = '\0';
    aq_llm_sse_limits ev2 = {1000, 0, 0};
    expect_fail(longline, &ev2, AQ_LLM_RESPONSE_TOO_BIG, "1000-byte event cap");
    free(longline);
    /* one block: 6 bytes per block, 100 in all */
    aq_llm_sse_limits blk = {0, 6, 100};
    expect_fail(START_EV TEXT_START(0) TEXT_DELTA(0, "abc") TEXT_DELTA(0, "defg") STOP(0) END_EV,
                &blk, AQ_LLM_RESPONSE_TOO_BIG, "6-byte block cap");
    aq_llm_response r;
    aq_err err;
    assert_int_equal(feed_all(START_EV TEXT_START(0) TEXT_DELTA(0, "abc") TEXT_DELTA(0, "def")
                                  STOP(0) TEXT_START(1) TEXT_DELTA(1, "ghijkl") STOP(1) END_EV,
                              &blk, &r, &err),
                     AQ_OK);
    assert_string_equal(r.text, "abcdefghijkl");
    assert_int_equal(r.n_blocks, 2);
    aq_llm_response_free(&r);
    /* the whole answer: 10 bytes over two blocks of 6 */
    aq_llm_sse_limits tot = {0, 6, 10};
    expect_fail(START_EV TEXT_START(0) TEXT_DELTA(0, "abcdef") STOP(0) TEXT_START(1)
                    TEXT_DELTA(1, "ghijk") STOP(1) END_EV,
                &tot, AQ_LLM_RESPONSE_TOO_BIG, "10-byte cap");
    /* tool input pieces count against the block and the total */
    aq_llm_sse_limits tool = {0, 8, 0};
    expect_fail(START_EV
                EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{}}}")
                EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"abcdefgh\\\":1}\"}}"),
                &tool, AQ_LLM_RESPONSE_TOO_BIG, "tool input");
}

/* Out-of-order and malformed events: AQ_LLM_BAD_RESPONSE naming the fault. */
static void test_bad_events(void **state)
{
    (void)state;
    expect_fail(TEXT_START(0), NULL, AQ_LLM_BAD_RESPONSE, "before message_start");
    expect_fail(START_EV START_EV, NULL, AQ_LLM_BAD_RESPONSE, "second message_start");
    expect_fail(START_EV TEXT_START(1), NULL, AQ_LLM_BAD_RESPONSE, "index other than 0");
    expect_fail(START_EV TEXT_START(0) TEXT_START(1), NULL, AQ_LLM_BAD_RESPONSE, "is open");
    expect_fail(START_EV TEXT_DELTA(0, "x"), NULL, AQ_LLM_BAD_RESPONSE, "not open");
    expect_fail(START_EV TEXT_START(0) TEXT_DELTA(1, "x"), NULL, AQ_LLM_BAD_RESPONSE, "not open");
    expect_fail(START_EV STOP(0), NULL, AQ_LLM_BAD_RESPONSE, "not open");
    expect_fail(START_EV TEXT_START(0) EV("message_stop", "{\"type\":\"message_stop\"}"), NULL,
                AQ_LLM_BAD_RESPONSE, "block is open");
    expect_fail(START_EV EV("content_block_delta", "{\"index\":0"), NULL, AQ_LLM_BAD_RESPONSE,
                "not a JSON object");
    expect_fail(START_EV EV("content_block_delta", "[1]"), NULL, AQ_LLM_BAD_RESPONSE,
                "not a JSON object");
    expect_fail(EV("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}"), NULL,
                AQ_LLM_BAD_RESPONSE, "usage");
    expect_fail(EV("message_start", "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":-1,\"output_tokens\":1}}}"),
                NULL, AQ_LLM_BAD_RESPONSE, "input_tokens");
    expect_fail(START_EV EV("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":5}}"),
                NULL, AQ_LLM_BAD_RESPONSE, "stop_reason");
    /* a tool input whose pieces are not a JSON object */
    expect_fail(START_EV
                EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{}}}")
                EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}")
                STOP(0) END_EV,
                NULL, AQ_LLM_BAD_RESPONSE, "not a JSON object");
    expect_fail(START_EV
                EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"name\":\"f\"}}"),
                NULL, AQ_LLM_BAD_RESPONSE, "\"id\"");
    /* a text_delta on a tool_use block */
    expect_fail(START_EV
                EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{}}}")
                TEXT_DELTA(0, "x"),
                NULL, AQ_LLM_BAD_RESPONSE, "not a text block");
}

/* A tool_use block with no delta keeps its initial input. */
static void test_tool_initial_input(void **state)
{
    (void)state;
    aq_llm_response r;
    aq_err err;
    assert_int_equal(
        feed_all(START_EV
                 EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{\"q\":1}}}")
                 STOP(0)
                 EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"g\"}}")
                 STOP(1) END_EV,
                 NULL, &r, &err),
        AQ_OK);
    assert_int_equal(r.n_tool_use, 2);
    assert_string_equal(r.blocks[0].input_json, "{\"q\":1}");
    assert_string_equal(r.blocks[1].input_json, "{}");
    assert_string_equal(r.text, "");
    aq_llm_response_free(&r);
}

/* The counters the client reads for time to first token. */
static void test_counters(void **state)
{
    (void)state;
    aq_llm_sse *p;
    aq_err err;
    assert_int_equal(aq_llm_sse_new(NULL, &p, &err), AQ_OK);
    const char *a = START_EV TEXT_START(0);
    assert_int_equal(aq_llm_sse_feed(p, a, strlen(a), &err), AQ_OK);
    assert_int_equal(aq_llm_sse_deltas(p), 0);
    const char *b = TEXT_DELTA(0, "x");
    assert_int_equal(aq_llm_sse_feed(p, b, strlen(b) - 1, &err), AQ_OK); /* not yet dispatched */
    assert_int_equal(aq_llm_sse_deltas(p), 0);
    assert_int_equal(aq_llm_sse_feed(p, "\n", 1, &err), AQ_OK);
    assert_int_equal(aq_llm_sse_deltas(p), 1);
    assert_int_equal(aq_llm_sse_events(p), 3);
    assert_false(aq_llm_sse_complete(p));
    const char *c = STOP(0) END_EV;
    assert_int_equal(aq_llm_sse_feed(p, c, strlen(c), &err), AQ_OK);
    assert_true(aq_llm_sse_complete(p));
    aq_llm_response r;
    assert_int_equal(aq_llm_sse_finish(p, &r, &err), AQ_OK);
    assert_int_equal(aq_llm_sse_finish(p, &r, &err), AQ_INVALID_ARG); /* moved out */
    aq_llm_response_free(&r);
    aq_llm_sse_free(p);
    aq_llm_sse_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_every_split),
        cmocka_unit_test(test_tool_use_every_split),
        cmocka_unit_test(test_crlf_and_cr),
        cmocka_unit_test(test_sse_syntax_and_ignored_events),
        cmocka_unit_test(test_usage_and_skipped_blocks),
        cmocka_unit_test(test_error_event),
        cmocka_unit_test(test_cut_stream),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_bad_events),
        cmocka_unit_test(test_tool_initial_input),
        cmocka_unit_test(test_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
