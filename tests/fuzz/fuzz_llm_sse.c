/* Fuzz target: a streamed answer (server-sent events) as the provider, or
 * anything between us and it, sends it. Input: byte 0 picks the caps (bit 0:
 * small caps, so the cap paths are reached) and seeds the split; the rest is
 * the stream.
 *
 * The stream is parsed twice: fed whole, and fed in pieces cut at offsets
 * drawn from the seed (pieces of 0 to 64 bytes, so cuts fall mid-line,
 * between a CR and its LF, mid-event). Invariants beyond "no crash, no leak,
 * no UB":
 *  - both feedings give the same status, the same message and, on success,
 *    the same answer (every field and block);
 *  - a failure is one of the documented statuses, sticky (the finish repeats
 *    the feed's), and its message is valid UTF-8 without control characters
 *    or an unredacted Anthropic key (it reaches logs, DLQ headers, Results);
 *  - an answer: text NUL-terminated at text_len, within the total cap; text
 *    blocks inside the text; tool_use blocks with an id, a name and an input
 *    that is a JSON object; n_tool_use counts them. */
#include "fuzz.h"

#include <string.h>

#include <jansson.h>

#include "core/text.h"
#include "llm/llm_sse.h"

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

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const aq_llm_response *a, const aq_llm_response *b)
{
    FUZZ_CHECK(str_eq(a->id, b->id) && str_eq(a->model, b->model));
    FUZZ_CHECK(str_eq(a->stop_reason, b->stop_reason));
    FUZZ_CHECK(str_eq(a->stop_sequence, b->stop_sequence));
    FUZZ_CHECK(a->text_len == b->text_len && memcmp(a->text, b->text, a->text_len) == 0);
    FUZZ_CHECK(memcmp(&a->usage, &b->usage, sizeof(a->usage)) == 0);
    FUZZ_CHECK(a->n_tool_use == b->n_tool_use && a->n_blocks == b->n_blocks);
    for (size_t i = 0; i < a->n_blocks; i++) {
        const aq_llm_block *x = &a->blocks[i], *y = &b->blocks[i];
        FUZZ_CHECK(x->type == y->type && x->text_off == y->text_off && x->text_len == y->text_len);
        FUZZ_CHECK(str_eq(x->id, y->id) && str_eq(x->name, y->name));
        FUZZ_CHECK(str_eq(x->input_json, y->input_json));
    }
}

static void check_answer(const aq_llm_response *r, const aq_llm_sse_limits *lim)
{
    FUZZ_CHECK(r->text != NULL && r->text[r->text_len] == '\0');
    FUZZ_CHECK(r->text_len <= lim->max_total_bytes);
    uint32_t tool_uses = 0;
    for (size_t i = 0; i < r->n_blocks; i++) {
        const aq_llm_block *b = &r->blocks[i];
        if (b->type == AQ_LLM_BLOCK_TEXT) {
            FUZZ_CHECK(b->text_len > 0 && b->text_off + b->text_len <= r->text_len);
            FUZZ_CHECK(b->text_len <= lim->max_block_bytes);
            continue;
        }
        FUZZ_CHECK(b->type == AQ_LLM_BLOCK_TOOL_USE);
        FUZZ_CHECK(b->id && *b->id && b->name && *b->name && b->input_json);
        json_t *in = json_loads(b->input_json, 0, NULL);
        FUZZ_CHECK(json_is_object(in));
        json_decref(in);
        tool_uses++;
    }
    FUZZ_CHECK(tool_uses == r->n_tool_use);
}

static int known_failure(aq_status st)
{
    switch (st) {
    case AQ_LLM_BAD_RESPONSE: case AQ_LLM_STREAM_CUT: case AQ_LLM_RESPONSE_TOO_BIG:
    case AQ_NOMEM: case AQ_HTTP_OVERLOADED: case AQ_HTTP_RATE_LIMITED:
    case AQ_HTTP_SERVER_ERROR: case AQ_HTTP_BAD_REQUEST: case AQ_HTTP_UNAUTHORIZED:
    case AQ_HTTP_FORBIDDEN: case AQ_HTTP_NOT_FOUND: case AQ_HTTP_TOO_LARGE:
    case AQ_HTTP_BILLING: case AQ_HTTP_TIMEOUT:
        return 1;
    default:
        return 0;
    }
}

/* Parse `s` fed in pieces; seed 0: all at once. */
static aq_status run(const char *s, size_t len, const aq_llm_sse_limits *lim, uint32_t seed,
                     aq_llm_response *out, aq_err *err)
{
    aq_llm_sse *p = NULL;
    memset(out, 0, sizeof(*out));
    aq_err_clear(err);
    if (aq_llm_sse_new(lim, &p, err) != AQ_OK)
        return AQ_NOMEM;
    aq_status st = AQ_OK;
    size_t at = 0;
    while (at < len && st == AQ_OK) {
        size_t n = len - at;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t piece = (seed >> 16) % 65;
            if (piece < n)
                n = piece;
        }
        st = aq_llm_sse_feed(p, s + at, n, err);
        at += n;
    }
    aq_err ferr;
    aq_err_clear(&ferr);
    aq_status fst = aq_llm_sse_finish(p, out, &ferr);
    if (st != AQ_OK) {
        FUZZ_CHECK(fst == st); /* sticky, same message */
        FUZZ_CHECK(strcmp(ferr.msg, err->msg) == 0);
    }
    *err = ferr;
    aq_llm_sse_free(p);
    return fst;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    aq_llm_sse_limits lim = {0, 0, 0};
    if (data[0] & 1)
        lim = (aq_llm_sse_limits){256, 64, 200};
    uint32_t seed = (uint32_t)data[0] * 2654435761u | 1u;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    aq_llm_sse_limits eff = lim;
    if (!eff.max_event_bytes)
        eff.max_event_bytes = AQ_LLM_SSE_DEFAULT_EVENT_MAX;
    if (!eff.max_total_bytes)
        eff.max_total_bytes = AQ_LLM_SSE_DEFAULT_TOTAL_MAX;
    if (!eff.max_block_bytes)
        eff.max_block_bytes = eff.max_total_bytes;

    aq_llm_response a, b;
    aq_err ea, eb;
    aq_status sa = run(s, len, &lim, 0, &a, &ea);
    aq_status sb = run(s, len, &lim, seed, &b, &eb);
    FUZZ_CHECK(sa == sb);
    if (sa == AQ_OK) {
        check_answer(&a, &eff);
        check_same(&a, &b);
    } else {
        FUZZ_CHECK_ERR(known_failure(sa), &ea);
        FUZZ_CHECK(ea.status == sa);
        check_message(&ea);
        if (sa != AQ_NOMEM)
            FUZZ_CHECK_ERR(strcmp(ea.msg, eb.msg) == 0, &ea);
    }
    aq_llm_response_free(&a);
    aq_llm_response_free(&b);
    return 0;
}
