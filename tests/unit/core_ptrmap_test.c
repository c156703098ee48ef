#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/ptrmap.h"

/* Distinct, aligned, never-dereferenced keys (like real object pointers). */
static const void *key_of(size_t i)
{
    return (const void *)(uintptr_t)(0x10000u + i * 16u);
}

static void *val_of(size_t i)
{
    return (void *)(uintptr_t)(0x900000u + i * 8u);
}

static void test_empty_map(void **state)
{
    (void)state;
    aq_ptrmap m;
    aq_ptrmap_init(&m);
    assert_int_equal(aq_ptrmap_len(&m), 0);
    assert_null(aq_ptrmap_take(&m, key_of(1)));
    aq_ptrmap_clear(&m, NULL);
    aq_ptrmap_free(&m);
    aq_ptrmap_free(&m);
}

static void test_put_take_overwrite(void **state)
{
    (void)state;
    aq_ptrmap m;
    aq_ptrmap_init(&m);
    int a, b, c;
    assert_int_equal(aq_ptrmap_put(&m, &a, val_of(1)), AQ_OK);
    assert_int_equal(aq_ptrmap_put(&m, &b, val_of(2)), AQ_OK);
    assert_int_equal(aq_ptrmap_len(&m), 2);
    /* Overwrite keeps the length. */
    assert_int_equal(aq_ptrmap_put(&m, &a, val_of(3)), AQ_OK);
    assert_int_equal(aq_ptrmap_len(&m), 2);
    assert_null(aq_ptrmap_take(&m, &c));
    assert_ptr_equal(aq_ptrmap_take(&m, &a), val_of(3));
    assert_int_equal(aq_ptrmap_len(&m), 1);
    /* Taken once: absent afterwards. */
    assert_null(aq_ptrmap_take(&m, &a));
    assert_ptr_equal(aq_ptrmap_take(&m, &b), val_of(2));
    assert_int_equal(aq_ptrmap_len(&m), 0);
    /* A NULL value is stored like any other (but reads back as NULL). */
    assert_int_equal(aq_ptrmap_put(&m, &c, NULL), AQ_OK);
    assert_int_equal(aq_ptrmap_len(&m), 1);
    assert_null(aq_ptrmap_take(&m, &c));
    assert_int_equal(aq_ptrmap_len(&m), 0);
    aq_ptrmap_free(&m);
}

static void test_many_keys_growth(void **state)
{
    (void)state;
    enum { N = 50000 };
    aq_ptrmap m;
    aq_ptrmap_init(&m);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(aq_ptrmap_put(&m, key_of(i), val_of(i)), AQ_OK);
    assert_int_equal(aq_ptrmap_len(&m), N);
    /* Power of two, load under one half. */
    assert_int_equal(m.cap & (m.cap - 1), 0);
    assert_true(m.cap >= 2 * N);
    /* Overwrite every other one. */
    for (size_t i = 0; i < N; i += 2)
        assert_int_equal(aq_ptrmap_put(&m, key_of(i), val_of(i + 1000000)), AQ_OK);
    assert_int_equal(aq_ptrmap_len(&m), N);
    for (size_t i = 0; i < N; i++) {
        void *want = (i % 2 == 0) ? val_of(i + 1000000) : val_of(i);
        assert_ptr_equal(aq_ptrmap_take(&m, key_of(i)), want);
    }
    assert_int_equal(aq_ptrmap_len(&m), 0);
    for (size_t i = 0; i < N; i++)
        assert_null(aq_ptrmap_take(&m, key_of(i)));
    aq_ptrmap_free(&m);
}

static void test_tombstones_reused(void **state)
{
    (void)state;
    aq_ptrmap m;
    aq_ptrmap_init(&m);
    /* A few long-lived keys, and a stream of short-lived ones. */
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(aq_ptrmap_put(&m, key_of(1000000 + i), val_of(i)), AQ_OK);
    size_t max_cap = 0;
    for (size_t i = 0; i < 100000; i++) {
        assert_int_equal(aq_ptrmap_put(&m, key_of(i), val_of(i)), AQ_OK);
        if (i >= 3) /* keep four in flight */
            assert_ptr_equal(aq_ptrmap_take(&m, key_of(i - 3)), val_of(i - 3));
        assert_true(aq_ptrmap_len(&m) <= 12);
        if (m.cap > max_cap)
            max_cap = m.cap;
        /* Live entries plus tombstones never reach the capacity. */
        assert_true((m.len + m.tombs) * 2 <= m.cap);
    }
    /* The table did not grow with the number of keys ever seen. */
    assert_true(max_cap <= 128);
    for (size_t i = 0; i < 8; i++)
        assert_ptr_equal(aq_ptrmap_take(&m, key_of(1000000 + i)), val_of(i));
    for (size_t i = 100000 - 3; i < 100000; i++)
        assert_ptr_equal(aq_ptrmap_take(&m, key_of(i)), val_of(i));
    assert_int_equal(aq_ptrmap_len(&m), 0);
    aq_ptrmap_free(&m);
}

static void test_put_after_take_same_key(void **state)
{
    (void)state;
    aq_ptrmap m;
    aq_ptrmap_init(&m);
    for (int round = 0; round < 1000; round++) {
        assert_int_equal(aq_ptrmap_put(&m, key_of(7), val_of((size_t)round)), AQ_OK);
        assert_int_equal(aq_ptrmap_len(&m), 1);
        assert_ptr_equal(aq_ptrmap_take(&m, key_of(7)), val_of((size_t)round));
        assert_int_equal(aq_ptrmap_len(&m), 0);
    }
    aq_ptrmap_free(&m);
}

static int g_cleared;
static uintptr_t g_cleared_sum;

static void on_clear(void *v)
{
    g_cleared++;
    g_cleared_sum += (uintptr_t)v;
}

static void test_clear_with_callback(void **state)
{
    (void)state;
    aq_ptrmap m;
    aq_ptrmap_init(&m);
    uintptr_t want = 0;
    for (size_t i = 0; i < 300; i++) {
        assert_int_equal(aq_ptrmap_put(&m, key_of(i), val_of(i)), AQ_OK);
        want += (uintptr_t)val_of(i);
    }
    /* Taken ones (tombstones) are not passed to the callback. */
    for (size_t i = 0; i < 300; i += 3) {
        aq_ptrmap_take(&m, key_of(i));
        want -= (uintptr_t)val_of(i);
    }
    g_cleared = 0;
    g_cleared_sum = 0;
    aq_ptrmap_clear(&m, on_clear);
    assert_int_equal(g_cleared, 200);
    assert_int_equal(g_cleared_sum, want);
    assert_int_equal(aq_ptrmap_len(&m), 0);
    assert_null(aq_ptrmap_take(&m, key_of(1)));
    /* Usable after clear. */
    assert_int_equal(aq_ptrmap_put(&m, key_of(1), val_of(1)), AQ_OK);
    assert_int_equal(aq_ptrmap_len(&m), 1);
    aq_ptrmap_clear(&m, NULL);
    assert_int_equal(aq_ptrmap_len(&m), 0);
}

static void test_clear_frees_owned_values(void **state)
{
    (void)state;
    aq_ptrmap m;
    aq_ptrmap_init(&m);
    for (size_t i = 0; i < 100; i++) {
        char *v = malloc(32);
        assert_non_null(v);
        assert_int_equal(aq_ptrmap_put(&m, key_of(i), v), AQ_OK);
    }
    aq_ptrmap_clear(&m, free); /* ASan reports a leak if any is missed */
    assert_int_equal(aq_ptrmap_len(&m), 0);
}

static void test_get_does_not_remove(void **state)
{
    (void)state;
    aq_ptrmap m;
    aq_ptrmap_init(&m);
    int a, b;
    assert_null(aq_ptrmap_get(&m, &a));
    assert_int_equal(aq_ptrmap_put(&m, &a, &b), AQ_OK);
    assert_ptr_equal(aq_ptrmap_get(&m, &a), &b);
    assert_ptr_equal(aq_ptrmap_get(&m, &a), &b);
    assert_int_equal(aq_ptrmap_len(&m), 1);
    assert_ptr_equal(aq_ptrmap_take(&m, &a), &b);
    assert_null(aq_ptrmap_get(&m, &a));
    aq_ptrmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_does_not_remove),
        cmocka_unit_test(test_empty_map),
        cmocka_unit_test(test_put_take_overwrite),
        cmocka_unit_test(test_many_keys_growth),
        cmocka_unit_test(test_tombstones_reused),
        cmocka_unit_test(test_put_after_take_same_key),
        cmocka_unit_test(test_clear_with_callback),
        cmocka_unit_test(test_clear_frees_owned_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
