/* internal/trace/trace_context: traceparent and tracestate as the W3C Trace
 * Context spec has them; every malformed form is refused (and leaves the
 * output untouched), never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace_context.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"
#define GOOD "00-" TID "-" SID "-01"

static aq_status parse(const char *s, aq_trace_context *c)
{
    return aq_traceparent_parse(s, s ? strlen(s) : 0, c);
}

static void test_traceparent_good(void **state)
{
    (void)state;
    aq_trace_context c;
    char out[AQ_TRACEPARENT_LEN + 1];
    assert_int_equal(parse(GOOD, &c), AQ_OK);
    assert_true(c.valid);
    assert_true(c.remote);
    assert_true(aq_trace_context_sampled(&c));
    assert_int_equal(c.trace_id[0], 0x4b);
    assert_int_equal(c.trace_id[15], 0x36);
    assert_int_equal(c.span_id[0], 0x00);
    assert_int_equal(c.span_id[7], 0xb7);
    assert_int_equal(aq_traceparent_format(&c, out, sizeof(out)), AQ_OK);
    assert_string_equal(out, GOOD);

    /* not sampled */
    assert_int_equal(parse("00-" TID "-" SID "-00", &c), AQ_OK);
    assert_false(aq_trace_context_sampled(&c));
    /* unknown flags are read, and zeroed when passed on */
    assert_int_equal(parse("00-" TID "-" SID "-09", &c), AQ_OK);
    assert_int_equal(c.flags, 0x09);
    assert_true(aq_trace_context_sampled(&c));
    assert_int_equal(aq_traceparent_format(&c, out, sizeof(out)), AQ_OK);
    assert_string_equal(out, GOOD);
    /* surrounding blanks (a header's optional whitespace) */
    assert_int_equal(parse(" \t" GOOD "  ", &c), AQ_OK);
    /* future versions: the first four fields, more after a '-' */
    assert_int_equal(parse("01-" TID "-" SID "-01", &c), AQ_OK);
    assert_int_equal(parse("cc-" TID "-" SID "-01-what-the-future-will-be-like", &c), AQ_OK);
    assert_true(aq_trace_context_sampled(&c));
    assert_int_equal(aq_traceparent_format(&c, out, sizeof(out)), AQ_OK);
    assert_string_equal(out, GOOD); /* passed on as version 00 */
}

static void test_traceparent_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "00",
        "00-" TID "-" SID "-0",                     /* 54 characters */
        "00-" TID "-" SID "-01-",                   /* version 00 is exactly 55 */
        "00-" TID "-" SID "-011",
        "00-" TID "-" SID "-01 x",
        "ff-" TID "-" SID "-01",                    /* version ff is invalid */
        "FF-" TID "-" SID "-01",
        "0g-" TID "-" SID "-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01", /* upper case */
        "00-" TID "-00F067AA0BA902B7-01",
        "00-" TID "-" SID "-0A",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-" SID "-01",
        "00-" TID "-00f067aa0ba902bz-01",
        "00-" TID "-" SID "-0z",
        "00-00000000000000000000000000000000-" SID "-01", /* all-zero ids */
        "00-" TID "-0000000000000000-01",
        "00_" TID "-" SID "-01",                   /* separators */
        "00-" TID "_" SID "-01",
        "00-" TID "-" SID "_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", /* field lengths */
        "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
        "00--" TID SID "-01",
        "cc-" TID "-" SID "-01.what",             /* a future version's extra needs '-' */
        "cc-" TID "-" SID,
        "-00-" TID "-" SID "-01",
        "00-" TID "-" SID "-01\n",                 /* only blanks are trimmed */
        "00 -" TID "-" SID "-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        aq_trace_context c;
        memset(&c, 0x77, sizeof(c));
        if (parse(bad[i], &c) != AQ_INVALID_ARG)
            fail_msg("accepted: \"%s\"", bad[i]);
        assert_int_equal(c.trace_id[0], 0x77); /* untouched */
    }
    aq_trace_context c;
    assert_int_equal(aq_traceparent_parse(NULL, 55, &c), AQ_INVALID_ARG);
    /* a NUL inside: the length is what counts */
    char withnul[] = GOOD;
    withnul[10] = '\0';
    assert_int_equal(aq_traceparent_parse(withnul, sizeof(withnul) - 1, &c), AQ_INVALID_ARG);
    /* formatting an invalid context, or into too small a buffer */
    char out[AQ_TRACEPARENT_LEN + 1];
    aq_trace_context none = {0};
    assert_int_equal(aq_traceparent_format(&none, out, sizeof(out)), AQ_INVALID_ARG);
    assert_int_equal(parse(GOOD, &c), AQ_OK);
    assert_int_equal(aq_traceparent_format(&c, out, AQ_TRACEPARENT_LEN), AQ_INVALID_ARG);
}

static aq_status ts_parse(const char *s, aq_tracestate *ts)
{
    return aq_tracestate_parse(s, strlen(s), ts);
}

static void test_tracestate_good(void **state)
{
    (void)state;
    aq_tracestate ts;
    assert_int_equal(ts_parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", &ts), AQ_OK);
    assert_string_equal(ts.text, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    assert_int_equal(ts.len, strlen(ts.text));
    /* optional whitespace and empty members go */
    assert_int_equal(ts_parse(" a=1 ,, \t,b=2\t, ", &ts), AQ_OK);
    assert_string_equal(ts.text, "a=1,b=2");
    assert_int_equal(ts_parse("", &ts), AQ_OK);
    assert_int_equal(ts.len, 0);
    assert_int_equal(ts_parse(" , ", &ts), AQ_OK);
    assert_int_equal(ts.len, 0);
    /* multi-tenant keys, values with inner spaces and odd printable chars */
    assert_int_equal(ts_parse("t1@vendor=x,0tenant@v_1=a b!~,k/_-*9=/", &ts), AQ_OK);
    assert_string_equal(ts.text, "t1@vendor=x,0tenant@v_1=a b!~,k/_-*9=/");
}

static void test_tracestate_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Rojo=1",         /* upper-case key */
        "1abc=1",         /* a simple key starts with a letter */
        "a",              /* no '=' */
        "=1",
        "a=",             /* empty value */
        "a=b=c",
        "a=1,a=2",        /* a key twice */
        "@v=1",
        "t@=1",
        "t@V=1",
        "t@1v=1",
        "t@abcdefghijklmno=1", /* system id over 14 */
        "a=x\x01y",
        "a=\x7f",
        "a=é",
        "a=1;b=2",
        "a b=1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        aq_tracestate ts;
        memset(&ts, 0x55, sizeof(ts));
        if (ts_parse(bad[i], &ts) != AQ_INVALID_ARG)
            fail_msg("accepted: \"%s\"", bad[i]);
        assert_int_equal(ts.len, 0);
        assert_string_equal(ts.text, "");
    }
    /* a 257-character value, a 257-character key */
    char big[600];
    memset(big, 'v', sizeof(big));
    memcpy(big, "k=", 2);
    big[2 + 257] = '\0';
    aq_tracestate ts;
    assert_int_equal(ts_parse(big, &ts), AQ_INVALID_ARG);
    big[2 + 256] = '\0';
    assert_int_equal(ts_parse(big, &ts), AQ_OK);
    memset(big, 'k', 257);
    strcpy(big + 257, "=1");
    assert_int_equal(ts_parse(big, &ts), AQ_INVALID_ARG);
    /* over the input bound */
    size_t n = AQ_TRACESTATE_INPUT_MAX + 1;
    char *huge = malloc(n + 1);
    assert_non_null(huge);
    memset(huge, ',', n);
    huge[n] = '\0';
    assert_int_equal(aq_tracestate_parse(huge, n, &ts), AQ_INVALID_ARG);
    free(huge);
    assert_int_equal(aq_tracestate_parse(NULL, 0, &ts), AQ_INVALID_ARG);
}

static void test_tracestate_truncation(void **state)
{
    (void)state;
    char in[4096], want[1024];
    aq_tracestate ts;
    /* 33 members: the last goes */
    in[0] = want[0] = '\0';
    for (int i = 0; i < 33; i++) {
        char m[16];
        snprintf(m, sizeof(m), "%sk%d=%d", i ? "," : "", i, i);
        strcat(in, m);
        if (i < 32)
            strcat(want, m);
    }
    assert_int_equal(ts_parse(in, &ts), AQ_OK);
    assert_string_equal(ts.text, want);
    /* over 512 bytes: members over 128 bytes go first, then from the end */
    char v200[201], v100[101];
    memset(v200, 'x', 200);
    v200[200] = '\0';
    memset(v100, 'y', 100);
    v100[100] = '\0';
    snprintf(in, sizeof(in), "a=%s,big=%s,b=%s,c=%s,d=%s,e=%s,f=%s", v100, v200, v100, v100,
             v100, v100, v100);
    assert_int_equal(ts_parse(in, &ts), AQ_OK);
    /* without big: 6 members of 102-103 bytes = 620 > 512; f, then e go */
    snprintf(want, sizeof(want), "a=%s,b=%s,c=%s,d=%s", v100, v100, v100, v100);
    assert_string_equal(ts.text, want);
    assert_true(ts.len <= AQ_TRACESTATE_MAX);
    /* too many members to read at all */
    in[0] = '\0';
    for (int i = 0; i < 300; i++) {
        char m[16];
        snprintf(m, sizeof(m), "%sk%d=1", i ? "," : "", i);
        strcat(in, m);
    }
    assert_int_equal(ts_parse(in, &ts), AQ_INVALID_ARG);
}

static void test_ids(void **state)
{
    (void)state;
    uint8_t a[AQ_TRACE_ID_SIZE], b[AQ_TRACE_ID_SIZE], s[AQ_SPAN_ID_SIZE];
    static const uint8_t zero[AQ_TRACE_ID_SIZE];
    assert_int_equal(aq_trace_new_trace_id(a), AQ_OK);
    assert_int_equal(aq_trace_new_trace_id(b), AQ_OK);
    assert_int_equal(aq_trace_new_span_id(s), AQ_OK);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_memory_not_equal(s, zero, sizeof(s));
    char hex[2 * AQ_TRACE_ID_SIZE + 1];
    const uint8_t bytes[] = {0x00, 0x0f, 0xa0, 0xff};
    aq_trace_hex(bytes, sizeof(bytes), hex);
    assert_string_equal(hex, "000fa0ff");
}

static natsMsg *new_msg(void)
{
    natsMsg *m = NULL;
    assert_int_equal(natsMsg_Create(&m, "agentq.tasks.it", NULL, "x", 1), NATS_OK);
    return m;
}

static void test_nats_headers(void **state)
{
    (void)state;
    aq_trace_context c;
    aq_tracestate ts;
    char out[AQ_TRACEPARENT_LEN + 1];

    /* none */
    natsMsg *m = new_msg();
    assert_int_equal(aq_trace_context_from_msg(m, &c, &ts), AQ_NOT_FOUND);
    assert_false(c.valid);
    natsMsg_Destroy(m);
    assert_int_equal(aq_trace_context_from_msg(NULL, &c, &ts), AQ_NOT_FOUND);

    /* good, with two tracestate headers joined */
    m = new_msg();
    assert_int_equal(natsMsgHeader_Set(m, "traceparent", GOOD), NATS_OK);
    assert_int_equal(natsMsgHeader_Add(m, "tracestate", "a=1"), NATS_OK);
    assert_int_equal(natsMsgHeader_Add(m, "tracestate", "b=2 "), NATS_OK);
    assert_int_equal(aq_trace_context_from_msg(m, &c, &ts), AQ_OK);
    assert_true(c.valid);
    assert_string_equal(ts.text, "a=1,b=2");
    assert_int_equal(aq_trace_context_from_msg(m, &c, NULL), AQ_OK);
    natsMsg_Destroy(m);

    /* another spelling of the name */
    m = new_msg();
    assert_int_equal(natsMsgHeader_Set(m, "Traceparent", GOOD), NATS_OK);
    assert_int_equal(natsMsgHeader_Set(m, "TraceState", "x=y"), NATS_OK);
    assert_int_equal(aq_trace_context_from_msg(m, &c, &ts), AQ_OK);
    assert_string_equal(ts.text, "x=y");
    natsMsg_Destroy(m);

    /* malformed traceparent: invalid, tracestate ignored */
    m = new_msg();
    assert_int_equal(natsMsgHeader_Set(m, "traceparent", "00-" TID "-" SID "-1"), NATS_OK);
    assert_int_equal(natsMsgHeader_Set(m, "tracestate", "a=1"), NATS_OK);
    assert_int_equal(aq_trace_context_from_msg(m, &c, &ts), AQ_INVALID_ARG);
    assert_false(c.valid);
    assert_int_equal(ts.len, 0);
    natsMsg_Destroy(m);

    /* two traceparent headers: which one? neither */
    m = new_msg();
    assert_int_equal(natsMsgHeader_Add(m, "traceparent", GOOD), NATS_OK);
    assert_int_equal(natsMsgHeader_Add(m, "traceparent", GOOD), NATS_OK);
    assert_int_equal(aq_trace_context_from_msg(m, &c, &ts), AQ_INVALID_ARG);
    assert_false(c.valid);
    natsMsg_Destroy(m);

    /* a malformed tracestate is dropped, the traceparent stands */
    m = new_msg();
    assert_int_equal(natsMsgHeader_Set(m, "traceparent", GOOD), NATS_OK);
    assert_int_equal(natsMsgHeader_Set(m, "tracestate", "A=1"), NATS_OK);
    assert_int_equal(aq_trace_context_from_msg(m, &c, &ts), AQ_OK);
    assert_true(c.valid);
    assert_int_equal(ts.len, 0);
    natsMsg_Destroy(m);

    /* written, then read back */
    assert_int_equal(parse("00-" TID "-" SID "-00", &c), AQ_OK);
    assert_int_equal(ts_parse("v=1", &ts), AQ_OK);
    m = new_msg();
    aq_err err;
    assert_int_equal(aq_trace_context_to_msg(m, &c, &ts, &err), AQ_OK);
    const char *v = NULL;
    assert_int_equal(natsMsgHeader_Get(m, "traceparent", &v), NATS_OK);
    assert_string_equal(v, "00-" TID "-" SID "-00");
    assert_int_equal(natsMsgHeader_Get(m, "tracestate", &v), NATS_OK);
    assert_string_equal(v, "v=1");
    natsMsg_Destroy(m);
    /* an invalid context writes nothing */
    aq_trace_context none = {0};
    m = new_msg();
    assert_int_equal(aq_trace_context_to_msg(m, &none, NULL, &err), AQ_OK);
    assert_int_equal(natsMsgHeader_Get(m, "traceparent", &v), NATS_NOT_FOUND);
    natsMsg_Destroy(m);
    (void)out;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_good),
        cmocka_unit_test(test_traceparent_malformed),
        cmocka_unit_test(test_tracestate_good),
        cmocka_unit_test(test_tracestate_malformed),
        cmocka_unit_test(test_tracestate_truncation),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_nats_headers),
    };
    if (nats_Open(-1) != NATS_OK) /* natsMsg_Destroy needs the library */
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return rc;
}
