/* Fuzz target: the simulator's request parsing (aq_sim_parse_request), which
 * reads every POST /v1/messages body, then what the server does with a parsed
 * request: the deterministic answer and its rendering, or the error body.
 * Input: the request body.
 *
 * Invariants beyond "no crash, no leak, no UB":
 *  - with a list of known models the status is the one without the list,
 *    except that an unknown model turns success into AQ_NOT_FOUND (a
 *    malformed request is a 400 whatever its model);
 *  - the answer text is valid UTF-8 within max_tokens, and the rendered
 *    message parses with the worker's own parser (aq_llm_response_parse) to
 *    the same text, stop reason, stop sequence, token counts and number of
 *    tool_use blocks;
 *  - tool_use answers (stop_reason "tool_use" exactly when there are calls)
 *    name tools of the request, with ids unique in the answer and an object
 *    input; input + cache tokens add up to aq_sim_input_tokens;
 *  - an error body is JSON that aq_llm_error_classify reads as the same
 *    HTTP class;
 *  - the answer streamed (aq_sim_stream, as for "stream": true) is the API's
 *    event sequence, each data line JSON, and its deltas add up to the same
 *    text, tool inputs and usage as the rendered message;
 *  - the body read as a count_tokens body parses or fails cleanly. */
#include "fuzz.h"

#include <jansson.h>
#include <string.h>

#include "core/text.h"
#include "llm/llm_response.h"
#include "sim/sim_request.h"
#include "sim/sim_stream.h"

#define TEXT_CAP (300 * 4 + 4096)
#define OUT_CAP (TEXT_CAP * 6 + 65536)

/* Replay the stream of answer a (built again: the stream takes its calls)
 * and compare it with the rendered message doc. */
static void check_stream(const aq_sim_request *r, aq_sim_output_range range, const aq_sim_tool_opts *topts,
                         json_t *doc)
{
    aq_sim_answer a;
    aq_buf text, ev;
    aq_err err;
    aq_sim_stream *st = NULL;
    aq_err_clear(&err);
    aq_buf_init(&text, TEXT_CAP);
    aq_buf_init(&ev, OUT_CAP);
    FUZZ_CHECK(aq_sim_answer_build(r, range, topts, &text, &a, &err) == AQ_OK);
    FUZZ_CHECK(aq_sim_stream_new(r, &a, text.data, text.len, "msg_fuzz", 3, &st, &err) == AQ_OK);
    aq_sim_answer_free(&a);
    json_t *content = json_array(), *start = NULL, *mdelta = NULL;
    size_t n_events = 0;
    bool done = false;
    int phase = 0; /* 0 start, 1 blocks, 2 message_delta seen */
    while (!done) {
        int64_t tokens;
        aq_buf_reset(&ev);
        FUZZ_CHECK(aq_sim_stream_next(st, &ev, &tokens, &done) == AQ_OK);
        FUZZ_CHECK(++n_events < 100000);
        FUZZ_CHECK(ev.len > 14 && memcmp(ev.data, "event: ", 7) == 0);
        const char *data = strstr(ev.data, "\ndata: ");
        FUZZ_CHECK(data && ev.data[ev.len - 1] == '\n' && ev.data[ev.len - 2] == '\n');
        json_t *j = json_loadb(data + 7, ev.len - (size_t)(data + 7 - ev.data) - 2, 0, NULL);
        FUZZ_CHECK(j != NULL);
        const char *type = json_string_value(json_object_get(j, "type"));
        FUZZ_CHECK(type && strncmp(ev.data + 7, type, strlen(type)) == 0);
        if (strcmp(type, "message_start") == 0) {
            FUZZ_CHECK(phase == 0 && n_events == 1);
            start = json_incref(json_object_get(j, "message"));
            phase = 1;
        } else if (strcmp(type, "content_block_start") == 0) {
            FUZZ_CHECK(phase == 1 && json_integer_value(json_object_get(j, "index")) == (json_int_t)json_array_size(content));
            json_array_append(content, json_object_get(j, "content_block"));
        } else if (strcmp(type, "content_block_delta") == 0) {
            size_t i = (size_t)json_integer_value(json_object_get(j, "index"));
            FUZZ_CHECK(phase == 1 && i + 1 == json_array_size(content));
            json_t *b = json_array_get(content, i), *d = json_object_get(j, "delta");
            const char *dt = json_string_value(json_object_get(d, "type"));
            const char *key = strcmp(dt, "text_delta") == 0 ? "text" : "partial_json";
            json_t *piece = json_object_get(d, key);
            json_t *have = json_object_get(b, key);
            aq_buf cat;
            aq_buf_init(&cat, OUT_CAP);
            if (have)
                aq_buf_append(&cat, json_string_value(have), json_string_length(have));
            aq_buf_append(&cat, json_string_value(piece), json_string_length(piece));
            json_object_set_new(b, key, json_stringn(cat.data ? cat.data : "", cat.len));
            aq_buf_free(&cat);
        } else if (strcmp(type, "content_block_stop") == 0) {
            json_t *b = json_array_get(content, (size_t)json_integer_value(json_object_get(j, "index")));
            json_t *pj = json_object_get(b, "partial_json");
            if (pj) { /* a tool_use block: its input is the parsed pieces */
                json_t *in = json_loads(json_string_value(pj), 0, NULL);
                FUZZ_CHECK(in != NULL);
                json_object_set_new(b, "input", in);
                json_object_del(b, "partial_json");
            }
        } else if (strcmp(type, "message_delta") == 0) {
            FUZZ_CHECK(phase == 1);
            mdelta = json_incref(j);
            phase = 2;
        } else {
            FUZZ_CHECK(strcmp(type, "message_stop") == 0 && phase == 2 && done);
        }
        json_decref(j);
    }
    FUZZ_CHECK(json_equal(content, json_object_get(doc, "content")));
    FUZZ_CHECK(json_equal(json_object_get(json_object_get(mdelta, "delta"), "stop_reason"),
                          json_object_get(doc, "stop_reason")));
    FUZZ_CHECK(json_equal(json_object_get(json_object_get(mdelta, "delta"), "stop_sequence"),
                          json_object_get(doc, "stop_sequence")));
    FUZZ_CHECK(json_equal(json_object_get(mdelta, "usage"), json_object_get(doc, "usage")));
    FUZZ_CHECK(json_equal(json_object_get(start, "model"), json_object_get(doc, "model")));
    json_decref(start);
    json_decref(mdelta);
    json_decref(content);
    aq_sim_stream_free(st);
    aq_buf_free(&text);
    aq_buf_free(&ev);
}

static void check_answer(const aq_sim_request *r)
{
    static const aq_sim_output_range range = {1, 300};
    static const aq_sim_tool_opts topts = {2, 2, true, 0.5};
    aq_sim_answer a;
    aq_buf text, out;
    aq_err err;
    aq_err_clear(&err);
    aq_buf_init(&text, TEXT_CAP);
    aq_buf_init(&out, OUT_CAP);

    aq_status st = aq_sim_answer_build(r, range, &topts, &text, &a, &err);
    FUZZ_CHECK_ERR(st == AQ_OK, &err);
    FUZZ_CHECK(text.data != NULL || (text.len == 0 && a.n_calls > 0)); /* calls without a text block */
    FUZZ_CHECK(text.len == 0 || aq_utf8_valid(text.data, text.len));
    FUZZ_CHECK(aq_sim_tokens(text.len) <= r->max_tokens);
    FUZZ_CHECK(a.output_tokens <= r->max_tokens);
    if (a.n_calls == 0)
        FUZZ_CHECK(a.output_tokens == aq_sim_tokens(text.len));
    FUZZ_CHECK((a.n_calls > 0) == (strcmp(a.stop_reason, "tool_use") == 0));
    FUZZ_CHECK(a.n_calls == 0 || (r->n_tools > 0 && r->tool_choice != AQ_SIM_CHOICE_NONE));
    FUZZ_CHECK(a.input_tokens >= 0 && a.input_tokens + a.cache_creation_input_tokens +
                                              a.cache_read_input_tokens == aq_sim_input_tokens(r));

    st = aq_sim_render_message(&out, r, &a, text.data, text.len, "msg_fuzz");
    FUZZ_CHECK(st == AQ_OK);

    aq_llm_response resp;
    st = aq_llm_response_parse(out.data, out.len, &resp, &err);
    FUZZ_CHECK_ERR(st == AQ_OK, &err);
    FUZZ_CHECK(resp.text_len == text.len && (text.len == 0 || memcmp(resp.text, text.data, text.len) == 0));
    FUZZ_CHECK(resp.stop_reason && strcmp(resp.stop_reason, a.stop_reason) == 0);
    if (a.stop_sequence.ptr)
        FUZZ_CHECK(resp.stop_sequence && strlen(resp.stop_sequence) == a.stop_sequence.len &&
                   memcmp(resp.stop_sequence, a.stop_sequence.ptr, a.stop_sequence.len) == 0);
    else
        FUZZ_CHECK(resp.stop_sequence == NULL);
    FUZZ_CHECK(resp.model && strlen(resp.model) == r->model.len &&
               memcmp(resp.model, r->model.ptr, r->model.len) == 0);
    FUZZ_CHECK(resp.usage.input_tokens == (uint64_t)a.input_tokens);
    FUZZ_CHECK(resp.usage.output_tokens == (uint64_t)a.output_tokens);
    FUZZ_CHECK(resp.n_tool_use == a.n_calls);
    aq_llm_response_free(&resp);

    json_t *doc = json_loadb(out.data, out.len, 0, NULL);
    FUZZ_CHECK(doc != NULL);
    json_t *content = json_object_get(doc, "content");
    size_t n_uses = 0;
    for (size_t i = 0; i < json_array_size(content); i++) {
        json_t *b = json_array_get(content, i);
        if (strcmp(json_string_value(json_object_get(b, "type")), "tool_use") != 0)
            continue;
        const char *id = json_string_value(json_object_get(b, "id"));
        json_t *name = json_object_get(b, "name");
        FUZZ_CHECK(id && strlen(id) == AQ_SIM_TOOL_ID_LEN && json_is_object(json_object_get(b, "input")));
        bool known = false;
        for (size_t t = 0; t < r->n_tools; t++)
            known = known || (r->tools[t].name.len == json_string_length(name) &&
                              memcmp(r->tools[t].name.ptr, json_string_value(name), json_string_length(name)) == 0);
        FUZZ_CHECK(known);
        for (size_t j = 0; j < i; j++) {
            const char *other = json_string_value(json_object_get(json_array_get(content, j), "id"));
            FUZZ_CHECK(!other || strcmp(id, other) != 0);
        }
        n_uses++;
    }
    FUZZ_CHECK(n_uses == a.n_calls);
    check_stream(r, range, &topts, doc);
    json_decref(doc);
    aq_sim_answer_free(&a);
    aq_buf_free(&text);
    aq_buf_free(&out);
}

static void check_error_body(const aq_err *perr)
{
    const char *type;
    if (perr->status == AQ_NOMEM)
        return;
    int code = aq_sim_error_http_status(perr->status, &type);
    aq_buf out;
    aq_err err;
    aq_buf_init(&out, 64 * 1024);
    FUZZ_CHECK(aq_sim_render_error(&out, type, perr->msg, "req_fuzz") == AQ_OK);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    FUZZ_CHECK_ERR(j != NULL, perr);
    json_decref(j);
    aq_status st = aq_llm_error_classify(code, out.data, out.len, &err);
    FUZZ_CHECK(st == (code == 400 ? AQ_HTTP_BAD_REQUEST : AQ_HTTP_NOT_FOUND));
    aq_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const models[] = {"claude-sonnet-4-5", "claude-haiku-4-5"};
    const aq_sim_limits any = {AQ_SIM_DEFAULT_MAX_TOKENS_CAP, NULL, 0, false};
    const aq_sim_limits known = {AQ_SIM_DEFAULT_MAX_TOKENS_CAP, models, 2, false};
    const aq_sim_limits count = {AQ_SIM_DEFAULT_MAX_TOKENS_CAP, NULL, 0, true};
    const char *body = (const char *)data;
    aq_sim_request r;
    aq_err err, err_known;
    aq_err_clear(&err);
    aq_err_clear(&err_known);

    memset(&r, 0, sizeof(r));
    aq_status st_count = aq_sim_parse_request(body, size, &count, &r, &err);
    FUZZ_CHECK(st_count == AQ_OK || st_count == AQ_INVALID_ARG || st_count == AQ_NOMEM);
    if (st_count == AQ_OK) {
        FUZZ_CHECK(!r.stream && aq_sim_input_tokens(&r) >= 0);
        aq_sim_request_free(&r);
    } else {
        check_error_body(&err);
    }
    aq_err_clear(&err);

    memset(&r, 0, sizeof(r));
    aq_status st_known = aq_sim_parse_request(body, size, &known, &r, &err_known);
    if (st_known == AQ_OK)
        aq_sim_request_free(&r);

    memset(&r, 0, sizeof(r));
    aq_status st = aq_sim_parse_request(body, size, &any, &r, &err);
    FUZZ_CHECK(st == AQ_OK || st == AQ_INVALID_ARG || st == AQ_NOMEM);
    FUZZ_CHECK(st_known == st || (st == AQ_OK && st_known == AQ_NOT_FOUND));
    if (st != AQ_OK) {
        FUZZ_CHECK(err.status == st);
        check_error_body(&err);
        return 0;
    }
    if (st_known == AQ_NOT_FOUND)
        check_error_body(&err_known);

    FUZZ_CHECK(r.doc != NULL && r.n_messages >= 1 && r.max_tokens >= 1);
    FUZZ_CHECK(r.n_system_blocks <= r.n_blocks);
    check_answer(&r);
    aq_sim_request_free(&r);
    return 0;
}
