#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

static void test_init_is_empty(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, 0);
    assert_int_equal(b.cap, 100);
    aq_buf_free(&b);
    aq_buf_free(&b); /* twice is harmless */
}

static void test_append_and_nul_termination(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 1024);
    assert_int_equal(aq_buf_append(&b, "hello", 5), AQ_OK);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "hello");
    assert_int_equal(aq_buf_append_str(&b, ", world"), AQ_OK);
    assert_int_equal(b.len, 12);
    assert_string_equal(b.data, "hello, world");
    assert_int_equal(b.data[b.len], '\0');
    /* Binary bytes, including NUL, are kept; len counts them. */
    assert_int_equal(aq_buf_append(&b, "a\0b", 3), AQ_OK);
    assert_int_equal(b.len, 15);
    assert_memory_equal(b.data + 12, "a\0b", 3);
    assert_int_equal(b.data[15], '\0');
    aq_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_append_zero_bytes(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 10);
    assert_int_equal(aq_buf_append(&b, "", 0), AQ_OK);
    assert_int_equal(b.len, 0);
    assert_non_null(b.data); /* an empty but terminated string */
    assert_string_equal(b.data, "");
    aq_buf_free(&b);
}

static void test_cap_exactly_reached(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 10);
    assert_int_equal(aq_buf_append(&b, "01234", 5), AQ_OK);
    assert_int_equal(aq_buf_append(&b, "56789", 5), AQ_OK);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    assert_true(b.alloc >= 11);
    /* One more byte is over. */
    assert_int_equal(aq_buf_append(&b, "x", 1), AQ_TOO_BIG);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    /* Zero bytes still fit at the cap. */
    assert_int_equal(aq_buf_append(&b, "", 0), AQ_OK);
    aq_buf_free(&b);
}

static void test_cap_exceeded_leaves_content(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 8);
    assert_int_equal(aq_buf_append_str(&b, "abc"), AQ_OK);
    assert_int_equal(aq_buf_append_str(&b, "defghi"), AQ_TOO_BIG);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    char *at = NULL;
    assert_int_equal(aq_buf_extend(&b, 6, &at), AQ_TOO_BIG);
    assert_null(at);
    assert_int_equal(aq_buf_printf(&b, "%s", "123456"), AQ_TOO_BIG);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    /* A huge n must not overflow the cap check. */
    assert_int_equal(aq_buf_append(&b, "x", SIZE_MAX), AQ_TOO_BIG);
    assert_int_equal(aq_buf_append(&b, "x", SIZE_MAX - 2), AQ_TOO_BIG);
    assert_int_equal(b.len, 3);
    aq_buf_free(&b);
}

static void test_cap_zero(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 0);
    assert_int_equal(aq_buf_append(&b, "x", 1), AQ_TOO_BIG);
    assert_int_equal(aq_buf_append(&b, "", 0), AQ_OK);
    assert_int_equal(b.len, 0);
    aq_buf_free(&b);
}

static void test_growth_many_appends(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 1 << 20);
    char expect[10001];
    for (int i = 0; i < 10000; i++) {
        char c = (char)('a' + i % 26);
        expect[i] = c;
        assert_int_equal(aq_buf_append(&b, &c, 1), AQ_OK);
    }
    expect[10000] = '\0';
    assert_int_equal(b.len, 10000);
    assert_string_equal(b.data, expect);
    assert_true(b.alloc <= (1u << 20) + 1);
    aq_buf_free(&b);
}

static void test_alloc_never_exceeds_cap_plus_one(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 300); /* growth would double 256 -> 512 */
    char chunk[300];
    memset(chunk, 'z', sizeof(chunk));
    assert_int_equal(aq_buf_append(&b, chunk, 200), AQ_OK);
    assert_int_equal(aq_buf_append(&b, chunk, 100), AQ_OK);
    assert_int_equal(b.len, 300);
    assert_true(b.alloc <= 301);
    assert_int_equal(b.data[300], '\0');
    aq_buf_free(&b);
}

static void test_printf(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 4096);
    assert_int_equal(aq_buf_printf(&b, "%d-%s", 42, "x"), AQ_OK);
    assert_string_equal(b.data, "42-x");
    assert_int_equal(b.len, 4);
    assert_int_equal(aq_buf_printf(&b, " %05.1f", 3.14159), AQ_OK);
    assert_string_equal(b.data, "42-x 003.1");
    assert_int_equal(b.len, strlen("42-x 003.1"));
    /* Empty output is fine. */
    assert_int_equal(aq_buf_printf(&b, "%s", ""), AQ_OK);
    assert_int_equal(b.len, 10);
    /* A long formatted string that forces growth. */
    char big[1000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(aq_buf_printf(&b, "[%s]", big), AQ_OK);
    assert_int_equal(b.len, 10 + 1001);
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    aq_buf_free(&b);
}

static void test_printf_exact_cap(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 5);
    assert_int_equal(aq_buf_printf(&b, "%d", 12345), AQ_OK);
    assert_string_equal(b.data, "12345");
    assert_int_equal(aq_buf_printf(&b, "%d", 6), AQ_TOO_BIG);
    assert_string_equal(b.data, "12345");
    assert_int_equal(b.len, 5);
    aq_buf_free(&b);
}

static void test_extend(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 64);
    assert_int_equal(aq_buf_append_str(&b, "ab"), AQ_OK);
    char *at = NULL;
    assert_int_equal(aq_buf_extend(&b, 3, &at), AQ_OK);
    assert_ptr_equal(at, b.data + 2);
    memcpy(at, "cde", 3);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "abcde");
    assert_int_equal(aq_buf_extend(&b, 0, &at), AQ_OK);
    assert_ptr_equal(at, b.data + 5);
    assert_int_equal(b.len, 5);
    /* Extend to exactly the cap. */
    assert_int_equal(aq_buf_extend(&b, 59, &at), AQ_OK);
    memset(at, 'x', 59);
    assert_int_equal(b.len, 64);
    assert_int_equal(b.data[64], '\0');
    assert_int_equal(aq_buf_extend(&b, 1, &at), AQ_TOO_BIG);
    aq_buf_free(&b);
}

static void test_reset_keeps_memory(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 100);
    aq_buf_reset(&b); /* on an empty buffer */
    assert_int_equal(b.len, 0);
    assert_int_equal(aq_buf_append_str(&b, "something"), AQ_OK);
    char *data = b.data;
    size_t alloc = b.alloc;
    aq_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.alloc, alloc);
    assert_string_equal(b.data, "");
    /* The cap applies afresh after a reset. */
    char full[100];
    memset(full, 'f', sizeof(full));
    assert_int_equal(aq_buf_append(&b, full, 100), AQ_OK);
    assert_int_equal(b.len, 100);
    aq_buf_free(&b);
}

static void test_take(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 100);
    assert_int_equal(aq_buf_append_str(&b, "owned"), AQ_OK);
    size_t len = 0;
    char *p = aq_buf_take(&b, &len);
    assert_non_null(p);
    assert_int_equal(len, 5);
    assert_string_equal(p, "owned");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.alloc, 0);
    free(p);
    /* The buffer is usable again, with the same cap. */
    assert_int_equal(aq_buf_append_str(&b, "again"), AQ_OK);
    p = aq_buf_take(&b, NULL);
    assert_string_equal(p, "again");
    free(p);
    /* Taking an empty buffer gives NULL and 0. */
    len = 99;
    assert_null(aq_buf_take(&b, &len));
    assert_int_equal(len, 0);
    aq_buf_free(&b);
}

static void test_reuse_after_free(void **state)
{
    (void)state;
    aq_buf b;
    aq_buf_init(&b, 16);
    assert_int_equal(aq_buf_append_str(&b, "0123456789abcdef"), AQ_OK);
    aq_buf_free(&b);
    aq_buf_init(&b, 4);
    assert_int_equal(aq_buf_append_str(&b, "abcd"), AQ_OK);
    assert_int_equal(aq_buf_append_str(&b, "e"), AQ_TOO_BIG);
    aq_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_append_and_nul_termination),
        cmocka_unit_test(test_append_zero_bytes),
        cmocka_unit_test(test_cap_exactly_reached),
        cmocka_unit_test(test_cap_exceeded_leaves_content),
        cmocka_unit_test(test_cap_zero),
        cmocka_unit_test(test_growth_many_appends),
        cmocka_unit_test(test_alloc_never_exceeds_cap_plus_one),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_printf_exact_cap),
        cmocka_unit_test(test_extend),
        cmocka_unit_test(test_reset_keeps_memory),
        cmocka_unit_test(test_take),
        cmocka_unit_test(test_reuse_after_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
