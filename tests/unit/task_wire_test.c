/* task_wire: NUL bytes inside string fields are found and named by their
 * path before protobuf-c decodes (and cuts) them; malformed and too deeply
 * nested payloads are refused. Payloads with a NUL cannot be made with
 * protobuf-c (it packs C strings), so the tests write the few bytes by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "task/task_codec.h"
#include "task/task_wire.h"

typedef struct pb {
    uint8_t b[4096];
    size_t n;
} pb;

static void put_varint(pb *p, uint64_t v)
{
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        p->b[p->n++] = byte | (v ? 0x80 : 0);
    } while (v);
}

/* A length-delimited field (string, bytes or message). */
static void put_bytes(pb *p, uint32_t field, const void *data, size_t len)
{
    put_varint(p, (uint64_t)field << 3 | 2);
    put_varint(p, len);
    memcpy(p->b + p->n, data, len);
    p->n += len;
}

static void put_str(pb *p, uint32_t field, const char *s, size_t len) { put_bytes(p, field, s, len); }

static aq_status find(const pb *p, int *found, aq_wire_nul *nul, aq_err *err)
{
    return aq_wire_scan(&agentq__v1__task__descriptor, p->b, p->n, found, nul, err);
}

static void test_clean_task_has_no_nul(void **state)
{
    (void)state;
    pb p = {.n = 0};
    put_str(&p, 1, "t1", 2);
    put_str(&p, 2, "summarize", 9);
    put_str(&p, 6, "a prompt", 8);
    put_varint(&p, 8 << 3); /* max_tokens: a varint, not a string */
    put_varint(&p, 300);
    int found = -1;
    aq_wire_nul nul;
    aq_err err;
    assert_int_equal(find(&p, &found, &nul, &err), AQ_OK);
    assert_int_equal(found, 0);
}

static void test_nul_in_id_is_named(void **state)
{
    (void)state;
    pb p = {.n = 0};
    put_str(&p, 1, "X\0tail", 6);
    put_str(&p, 2, "t", 1);
    int found = 0;
    aq_wire_nul nul;
    aq_err err;
    assert_int_equal(find(&p, &found, &nul, &err), AQ_OK);
    assert_int_equal(found, 1);
    assert_string_equal(nul.path, "id");
    assert_int_equal(nul.offset, 1);
    assert_int_equal(nul.length, 6);
    assert_int_equal(nul.depth, 0);
    assert_int_equal(nul.field_no, 1);
}

/* Repeated fields get their index, nested messages their path. */
static void test_nul_in_nested_repeated_fields(void **state)
{
    (void)state;
    pb m0 = {.n = 0}, m1 = {.n = 0}, p = {.n = 0};
    put_str(&m0, 1, "user", 4);
    put_str(&m0, 2, "fine", 4);
    put_str(&m1, 1, "assistant", 9);
    put_str(&m1, 2, "bad\0", 4);
    put_str(&p, 1, "t1", 2);
    put_bytes(&p, 7, m0.b, m0.n);
    put_bytes(&p, 7, m1.b, m1.n);
    int found = 0;
    aq_wire_nul nul;
    aq_err err;
    assert_int_equal(find(&p, &found, &nul, &err), AQ_OK);
    assert_int_equal(found, 1);
    assert_string_equal(nul.path, "messages[1].content");
    assert_int_equal(nul.offset, 3);
    assert_int_equal(nul.depth, 1);

    /* map<string,string> entries are messages too */
    pb e0 = {.n = 0}, e1 = {.n = 0}, q = {.n = 0};
    put_str(&e0, 1, "a", 1);
    put_str(&e0, 2, "1", 1);
    put_str(&e1, 1, "b", 1);
    put_str(&e1, 2, "x\0y", 3);
    put_bytes(&q, 11, e0.b, e0.n);
    put_bytes(&q, 11, e1.b, e1.n);
    assert_int_equal(find(&q, &found, &nul, &err), AQ_OK);
    assert_string_equal(nul.path, "metadata[1].value");

    /* repeated strings */
    pb r = {.n = 0};
    put_str(&r, 10, "ok", 2);
    put_str(&r, 10, "\0", 1);
    assert_int_equal(find(&r, &found, &nul, &err), AQ_OK);
    assert_string_equal(nul.path, "stop_sequences[1]");
}

/* Fields added later (content blocks) are covered without naming them. */
static void test_nul_in_content_block(void **state)
{
    (void)state;
    pb text = {.n = 0}, block = {.n = 0}, msg = {.n = 0}, p = {.n = 0};
    put_str(&text, 1, "hi\0", 3);           /* TextBlock.text */
    put_bytes(&block, 1, text.b, text.n);   /* ContentBlock.text */
    put_str(&msg, 1, "user", 4);
    put_bytes(&msg, 3, block.b, block.n);   /* Message.blocks */
    put_bytes(&p, 7, msg.b, msg.n);
    int found = 0;
    aq_wire_nul nul;
    aq_err err;
    assert_int_equal(find(&p, &found, &nul, &err), AQ_OK);
    assert_int_equal(found, 1);
    assert_string_equal(nul.path, "messages[0].blocks[0].text.text");
    assert_int_equal(nul.depth, 3);
}

/* bytes fields may hold anything. */
static void test_nul_in_bytes_field_is_fine(void **state)
{
    (void)state;
    pb src = {.n = 0}, img = {.n = 0}, block = {.n = 0}, msg = {.n = 0}, p = {.n = 0};
    put_str(&src, 1, "image/png", 9);
    put_bytes(&src, 2, "\x89PNG\0\0\0", 7); /* MediaSource.data */
    put_bytes(&img, 1, src.b, src.n);
    put_bytes(&block, 2, img.b, img.n);
    put_str(&msg, 1, "user", 4);
    put_bytes(&msg, 3, block.b, block.n);
    put_bytes(&p, 7, msg.b, msg.n);
    int found = -1;
    aq_wire_nul nul;
    aq_err err;
    assert_int_equal(find(&p, &found, &nul, &err), AQ_OK);
    assert_int_equal(found, 0);
}

static void test_malformed_and_deep_payloads_refused(void **state)
{
    (void)state;
    int found;
    aq_wire_nul nul;
    aq_err err;
    pb p = {.n = 0};
    put_varint(&p, 1 << 3 | 2);
    put_varint(&p, 100); /* says 100 bytes follow; none do */
    assert_int_equal(find(&p, &found, &nul, &err), AQ_TASK_DECODE);
    assert_non_null(strstr(err.msg, "does not decode as agentq.v1.Task: length past the end"));

    pb g = {.n = 0};
    put_varint(&g, 1 << 3 | 3); /* a group: protobuf-c does not take them */
    assert_int_equal(find(&g, &found, &nul, &err), AQ_TASK_DECODE);
    assert_non_null(strstr(err.msg, "unsupported wire type at byte 0"));

    pb z = {.n = 0};
    put_varint(&z, 0 << 3 | 0); /* field number 0 */
    put_varint(&z, 1);
    assert_int_equal(find(&z, &found, &nul, &err), AQ_TASK_DECODE);

    /* tool_result { content { tool_result { content { ... } } } }, 40 deep */
    pb in = {.n = 0}, tmp;
    put_str(&in, 1, "leaf", 4);                 /* TextBlock */
    pb blk = {.n = 0};
    put_bytes(&blk, 1, in.b, in.n);             /* ContentBlock{text} */
    for (int i = 0; i < 40; i++) {
        pb tr = {.n = 0};
        put_str(&tr, 1, "t", 1);
        put_bytes(&tr, 2, blk.b, blk.n);        /* ToolResultBlock.content */
        tmp.n = 0;
        put_bytes(&tmp, 5, tr.b, tr.n);         /* ContentBlock{tool_result} */
        blk = tmp;
    }
    pb msg = {.n = 0}, top = {.n = 0};
    put_str(&msg, 1, "user", 4);
    put_bytes(&msg, 3, blk.b, blk.n);
    put_bytes(&top, 7, msg.b, msg.n);
    assert_int_equal(find(&top, &found, &nul, &err), AQ_TASK_DECODE);
    assert_non_null(strstr(err.msg, "nested deeper than the limit"));
}

/* The codec: a NUL refuses the task as invalid, naming the field, and hands
 * nothing over (the cut strings may not be used). */
static void test_unpack_refuses_nul(void **state)
{
    (void)state;
    aq_task_limits lim;
    aq_task_limits_default(&lim);
    pb p = {.n = 0};
    put_str(&p, 1, "t1", 2);
    put_str(&p, 2, "x", 1);
    put_str(&p, 6, "before\0after", 12);
    Agentq__V1__Task *t = NULL;
    aq_err err;
    assert_int_equal(aq_task_unpack(p.b, p.n, &lim, &t, &err), AQ_TASK_INVALID);
    assert_null(t);
    assert_string_equal(err.msg, "prompt contains a NUL byte (U+0000) at byte 6 of 12: refused "
                                 "rather than cut short");

    pb ok = {.n = 0};
    put_str(&ok, 1, "t1", 2);
    put_str(&ok, 2, "x", 1);
    put_str(&ok, 6, "fine", 4);
    assert_int_equal(aq_task_unpack(ok.b, ok.n, &lim, &t, &err), AQ_OK);
    assert_string_equal(t->prompt, "fine");
    aq_task_free(t);
}

static void test_subject_must_name_the_type(void **state)
{
    (void)state;
    Agentq__V1__Task t;
    agentq__v1__task__init(&t);
    t.type = (char *)"summarize";
    aq_err err;
    assert_int_equal(aq_task_check_subject(&t, "agentq.tasks.summarize", "agentq.tasks", &err), AQ_OK);
    assert_int_equal(aq_task_check_subject(&t, "agentq.tasks.classify", "agentq.tasks", &err),
                     AQ_TASK_INVALID);
    assert_non_null(strstr(err.msg, "type \"summarize\" does not match the subject agentq.tasks.classify"));
    assert_int_equal(aq_task_check_subject(&t, "agentq.tasks.summarize.x", "agentq.tasks", &err),
                     AQ_TASK_INVALID);
    assert_int_equal(aq_task_check_subject(&t, "agentq.tasksX.summarize", "agentq.tasks", &err),
                     AQ_TASK_INVALID);
    assert_int_equal(aq_task_check_subject(&t, "other.summarize", "agentq.tasks", &err), AQ_TASK_INVALID);
}

static void test_stub_carries_the_id(void **state)
{
    (void)state;
    Agentq__V1__Task *t = NULL;
    assert_int_equal(aq_task_new_stub("order-42", &t, NULL), AQ_OK);
    assert_string_equal(t->id, "order-42");
    assert_string_equal(t->type, "");
    assert_string_equal(t->tenant, "");
    aq_task_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_task_has_no_nul),
        cmocka_unit_test(test_nul_in_id_is_named),
        cmocka_unit_test(test_nul_in_nested_repeated_fields),
        cmocka_unit_test(test_nul_in_content_block),
        cmocka_unit_test(test_nul_in_bytes_field_is_fine),
        cmocka_unit_test(test_malformed_and_deep_payloads_refused),
        cmocka_unit_test(test_unpack_refuses_nul),
        cmocka_unit_test(test_subject_must_name_the_type),
        cmocka_unit_test(test_stub_carries_the_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
