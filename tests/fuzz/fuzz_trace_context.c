/* Fuzz target: the W3C trace-context parsers (internal/trace/trace_context.h).
 * Input: byte 0 picks what the rest is
 *   0: a traceparent value (aq_traceparent_parse);
 *   1: a tracestate value (aq_tracestate_parse);
 *   2: both, as NATS message headers: traceparent up to the first '\n', the
 *      rest tracestate values separated by '\n' (aq_trace_context_from_msg).
 *
 * Invariants: a parsed traceparent has non-zero ids, formats as 55
 * lower-case characters and parses back to the same ids and sampled flag; a
 * refused one leaves the output untouched. A parsed tracestate holds at most
 * AQ_TRACESTATE_MAX bytes and AQ_TRACESTATE_MAX_MEMBERS members, and parses
 * back to itself (normalising is idempotent); a refused one is empty. */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "trace/trace_context.h"

static void check_context(const aq_trace_context *c)
{
    static const uint8_t zero[AQ_TRACE_ID_SIZE];
    char out[AQ_TRACEPARENT_LEN + 1];
    aq_trace_context back;
    FUZZ_CHECK(c->valid);
    FUZZ_CHECK(memcmp(c->trace_id, zero, AQ_TRACE_ID_SIZE) != 0);
    FUZZ_CHECK(memcmp(c->span_id, zero, AQ_SPAN_ID_SIZE) != 0);
    FUZZ_CHECK(aq_traceparent_format(c, out, sizeof(out)) == AQ_OK);
    FUZZ_CHECK(strlen(out) == AQ_TRACEPARENT_LEN);
    for (size_t i = 0; i < AQ_TRACEPARENT_LEN; i++)
        FUZZ_CHECK((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f') ||
                   out[i] == '-');
    FUZZ_CHECK(aq_traceparent_parse(out, strlen(out), &back) == AQ_OK);
    FUZZ_CHECK(memcmp(back.trace_id, c->trace_id, AQ_TRACE_ID_SIZE) == 0);
    FUZZ_CHECK(memcmp(back.span_id, c->span_id, AQ_SPAN_ID_SIZE) == 0);
    FUZZ_CHECK(aq_trace_context_sampled(&back) == aq_trace_context_sampled(c));
}

static void check_state(const aq_tracestate *ts)
{
    size_t members = ts->len ? 1 : 0;
    FUZZ_CHECK(ts->len <= AQ_TRACESTATE_MAX);
    FUZZ_CHECK(strlen(ts->text) == ts->len);
    for (size_t i = 0; i < ts->len; i++)
        members += ts->text[i] == ',';
    FUZZ_CHECK(members <= AQ_TRACESTATE_MAX_MEMBERS);
    aq_tracestate back;
    FUZZ_CHECK(aq_tracestate_parse(ts->text, ts->len, &back) == AQ_OK);
    FUZZ_CHECK(back.len == ts->len && memcmp(back.text, ts->text, ts->len) == 0);
}

static void via_headers(const char *s, size_t len)
{
    static bool opened;
    if (!opened) {
        FUZZ_CHECK(nats_Open(-1) == NATS_OK);
        opened = true;
    }
    /* header values are C strings: the input up to its first NUL */
    char *buf = strndup(s, len);
    FUZZ_CHECK(buf != NULL);
    natsMsg *m = NULL;
    FUZZ_CHECK(natsMsg_Create(&m, "agentq.tasks.fuzz", NULL, "x", 1) == NATS_OK);
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    natsMsgHeader_Set(m, "traceparent", buf);
    for (char *p = nl ? nl + 1 : NULL; p;) {
        char *next = strchr(p, '\n');
        if (next)
            *next++ = '\0';
        natsMsgHeader_Add(m, "tracestate", p);
        p = next;
    }
    aq_trace_context c;
    aq_tracestate ts;
    aq_status st = aq_trace_context_from_msg(m, &c, &ts);
    if (st == AQ_OK) {
        check_context(&c);
        check_state(&ts);
        natsMsg *out = NULL;
        aq_err err;
        FUZZ_CHECK(natsMsg_Create(&out, "agentq.tools.fuzz", NULL, "x", 1) == NATS_OK);
        FUZZ_CHECK_ERR(aq_trace_context_to_msg(out, &c, &ts, &err) == AQ_OK, &err);
        aq_trace_context c2;
        aq_tracestate ts2;
        FUZZ_CHECK(aq_trace_context_from_msg(out, &c2, &ts2) == AQ_OK);
        FUZZ_CHECK(memcmp(c2.trace_id, c.trace_id, AQ_TRACE_ID_SIZE) == 0);
        FUZZ_CHECK(ts2.len == ts.len && memcmp(ts2.text, ts.text, ts.len) == 0);
        natsMsg_Destroy(out);
    } else {
        FUZZ_CHECK(st == AQ_INVALID_ARG || st == AQ_NOT_FOUND);
        FUZZ_CHECK(!c.valid && ts.len == 0);
    }
    natsMsg_Destroy(m);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 3) {
    case 0: {
        aq_trace_context c, before;
        memset(&c, 0xa5, sizeof(c));
        before = c;
        if (aq_traceparent_parse(s, len, &c) == AQ_OK)
            check_context(&c);
        else
            FUZZ_CHECK(memcmp(&c, &before, sizeof(c)) == 0);
        break;
    }
    case 1: {
        aq_tracestate ts;
        aq_status st = aq_tracestate_parse(s, len, &ts);
        if (st == AQ_OK)
            check_state(&ts);
        else
            FUZZ_CHECK(ts.len == 0 && ts.text[0] == '\0');
        break;
    }
    default:
        via_headers(s, len);
        break;
    }
    return 0;
}
