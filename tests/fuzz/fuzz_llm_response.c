/* Fuzz target: what the provider (or anything between us and it) answers.
 * Input: byte 0 picks an HTTP status, the rest is the body. The body goes to
 * aq_llm_response_parse (the 200 path) and, with the status, to
 * aq_llm_error_classify (every other status).
 *
 * Invariants beyond "no crash, no leak, no UB":
 *  - parse: `out` is written only on success; the text is NUL-terminated at
 *    text_len, which is at most the body length; every text block lies
 *    inside the text, every tool_use block has an id, a name and an input
 *    that is a JSON object; the blocks survive the trip to ContentBlocks and
 *    back (what the pipeline stores and the response cache restores);
 *  - classify: returns the status it stores and the status the documented
 *    table gives for the HTTP code;
 *  - every error message (both functions) is valid UTF-8 without control
 *    characters or an unredacted Anthropic key: it goes to logs, DLQ headers
 *    and the Result's error, a proto3 string that other languages refuse to
 *    decode when it is not UTF-8. */
#include "fuzz.h"

#include <string.h>

#include <jansson.h>

#include "core/text.h"
#include "llm/llm_response.h"

static const long http_statuses[] = {
    200, 201, 204, 301, 400, 401, 402, 403, 404, 408, 409, 413, 418, 422,
    429, 500, 502, 503, 504, 529, 599, 0,   -1,  600, 999, 100,
};
#define N_STATUSES (sizeof(http_statuses) / sizeof(http_statuses[0]))

static int key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

static void check_message(const aq_err *err)
{
    size_t n = strnlen(err->msg, sizeof(err->msg));
    FUZZ_CHECK(n < sizeof(err->msg));
    FUZZ_CHECK_ERR(aq_utf8_valid(err->msg, n), err);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)err->msg[i];
        FUZZ_CHECK_ERR(c >= 0x20 && c != 0x7f, err);
    }
    for (const char *p = err->msg; (p = strstr(p, "sk-ant-")) != NULL; p++)
        FUZZ_CHECK_ERR(!key_char((unsigned char)p[7]), err);
}

static aq_status expected_class(long code, aq_status got)
{
    switch (code) {
    case 400: return AQ_HTTP_BAD_REQUEST;
    case 401: return AQ_HTTP_UNAUTHORIZED;
    case 402: return AQ_HTTP_BILLING;
    case 403: return AQ_HTTP_FORBIDDEN;
    case 404: return AQ_HTTP_NOT_FOUND;
    case 408: return AQ_HTTP_TIMEOUT;
    case 409: return AQ_HTTP_CONFLICT;
    case 413: return AQ_HTTP_TOO_LARGE;
    case 429: return AQ_HTTP_RATE_LIMITED;
    case 529: return AQ_HTTP_OVERLOADED;
    default: break;
    }
    if (code >= 500 && code <= 599) /* overloaded_error in the body may say OVERLOADED */
        return got == AQ_HTTP_OVERLOADED ? AQ_HTTP_OVERLOADED : AQ_HTTP_SERVER_ERROR;
    return AQ_HTTP_UNEXPECTED;
}

static void check_blocks(const aq_llm_response *r)
{
    uint32_t tool_uses = 0;
    for (size_t i = 0; i < r->n_blocks; i++) {
        const aq_llm_block *b = &r->blocks[i];
        if (b->type == AQ_LLM_BLOCK_TEXT) {
            FUZZ_CHECK(b->text_len > 0 && b->text_off + b->text_len <= r->text_len);
            continue;
        }
        FUZZ_CHECK(b->type == AQ_LLM_BLOCK_TOOL_USE);
        FUZZ_CHECK(b->id && *b->id && b->name && *b->name && b->input_json);
        /* the next step's request parses it the same way (llm_request.c) */
        json_t *in = json_loads(b->input_json, JSON_ALLOW_NUL, NULL);
        FUZZ_CHECK(json_is_object(in));
        json_decref(in);
        tool_uses++;
    }
    FUZZ_CHECK(tool_uses == r->n_tool_use);
    aq_llm_content c;
    aq_err err;
    if (aq_llm_response_content(r, &c, &err) != AQ_OK)
        return; /* out of memory only */
    FUZZ_CHECK(c.n_blocks == r->n_blocks);
    aq_llm_response back;
    memset(&back, 0, sizeof(back));
    if (aq_llm_response_set_content(&back, c.blocks, c.n_blocks, &err) == AQ_OK) {
        FUZZ_CHECK(back.n_tool_use == r->n_tool_use);
        /* text without NULs comes back as it was */
        if (strlen(r->text) == r->text_len)
            FUZZ_CHECK(strcmp(back.text, r->text) == 0);
    }
    aq_llm_response_free(&back);
    aq_llm_content_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    long code = http_statuses[data[0] % N_STATUSES];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    aq_err err;

    /* A 200 body. */
    aq_llm_response r, zero;
    memset(&r, 0, sizeof(r));
    memset(&zero, 0, sizeof(zero));
    aq_err_clear(&err);
    aq_status st = aq_llm_response_parse(body, len, &r, &err);
    if (st == AQ_OK) {
        FUZZ_CHECK(r.text != NULL);
        FUZZ_CHECK(r.text_len <= len);
        FUZZ_CHECK(r.text[r.text_len] == '\0');
        FUZZ_CHECK(strlen(r.text) <= r.text_len);
        check_blocks(&r);
        aq_llm_response_free(&r);
    } else {
        FUZZ_CHECK(st == AQ_LLM_BAD_RESPONSE || st == AQ_NOMEM);
        FUZZ_CHECK(err.status == st);
        FUZZ_CHECK(memcmp(&r, &zero, sizeof(r)) == 0);
        check_message(&err);
    }

    /* Any other status. */
    aq_err_clear(&err);
    st = aq_llm_error_classify(code, body, len, &err);
    FUZZ_CHECK(err.status == st);
    FUZZ_CHECK(st == expected_class(code, st));
    check_message(&err);
    return 0;
}
