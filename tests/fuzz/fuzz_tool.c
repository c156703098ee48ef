/* Fuzz target: what tool services answer and what tasks and models hand the
 * tool module. Byte 0 picks the path:
 *   even: the rest is a tool reply body -> aq_tool_reply_decode (cap 4 KiB);
 *   odd:  the rest is "SCHEMA\nINPUT" -> aq_tool_schema_compile, then
 *         aq_tool_schema_validate of INPUT when the schema compiled (not
 *         when it has "pattern" or "format": std::regex backtracks without a
 *         step limit, see tool_schema.h, and a slow regex is not a finding).
 *
 * Invariants beyond "no crash, no leak, no UB":
 *  - a decoded reply always has content: JSON (a string or an array), and
 *    outcome BAD_REPLY exactly when the decoder said why in err;
 *  - compile writes `out` only on success;
 *  - every message is valid UTF-8 (it goes back to the model inside JSON). */
#include "fuzz.h"

#include <jansson.h>
#include <string.h>

#include "core/text.h"
#include "tool/tool_dispatch.h"
#include "tool/tool_schema.h"

static void check_message(const aq_err *err)
{
    size_t n = strnlen(err->msg, sizeof(err->msg));
    FUZZ_CHECK(n < sizeof(err->msg));
    FUZZ_CHECK_ERR(aq_utf8_valid(err->msg, n), err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    aq_err err = {0};
    if (data[0] % 2 == 0) {
        aq_tool_reply r;
        if (aq_tool_reply_decode(body, len, 4096, &r, &err) != AQ_OK)
            return 0; /* out of memory */
        FUZZ_CHECK(r.content_json);
        json_error_t jerr;
        json_t *c = json_loads(r.content_json, JSON_DECODE_ANY, &jerr);
        FUZZ_CHECK(json_is_string(c) || json_is_array(c));
        json_decref(c);
        FUZZ_CHECK((r.outcome == AQ_TOOL_BAD_REPLY) == (err.msg[0] != '\0'));
        FUZZ_CHECK(r.is_error == (r.outcome != AQ_TOOL_OK));
        check_message(&err);
        aq_tool_reply_clear(&r);
        return 0;
    }
    const char *nl = memchr(body, '\n', len);
    size_t slen = nl ? (size_t)(nl - body) : len;
    const char *input = nl ? nl + 1 : "";
    size_t ilen = nl ? len - slen - 1 : 0;
    aq_tool_schema *s = (aq_tool_schema *)0x1;
    aq_status st = aq_tool_schema_compile(body, slen, &s, &err);
    if (st != AQ_OK) {
        FUZZ_CHECK(s == (aq_tool_schema *)0x1);
        check_message(&err);
        return 0;
    }
    if (!memmem(body, slen, "pattern", 7) && !memmem(body, slen, "format", 6)) {
        st = aq_tool_schema_validate(s, input, ilen, &err);
        if (st != AQ_OK)
            check_message(&err);
    }
    aq_tool_schema_destroy(s);
    return 0;
}
