#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/list.h"

static void test_split_trims_and_skips_empty(void **state)
{
    (void)state;
    aq_list l;
    assert_int_equal(aq_list_split(" a, b ,,\tc ", "x", 8, &l, NULL), AQ_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0], "a");
    assert_string_equal(l.items[1], "b");
    assert_string_equal(l.items[2], "c");
    assert_true(aq_list_contains(&l, "b"));
    assert_false(aq_list_contains(&l, "d"));
    aq_list_free(&l);
}

static void test_empty_and_null(void **state)
{
    (void)state;
    aq_list l;
    assert_int_equal(aq_list_split(NULL, "x", 8, &l, NULL), AQ_OK);
    assert_int_equal(l.n, 0);
    assert_false(aq_list_contains(&l, "a"));
    aq_list_free(&l);
    assert_int_equal(aq_list_split(" , ", "x", 8, &l, NULL), AQ_OK);
    assert_int_equal(l.n, 0);
    aq_list_free(&l);
}

/* Over the cap is an error naming the option, never a silent cut. */
static void test_over_cap_is_an_error(void **state)
{
    (void)state;
    aq_list l;
    aq_err err;
    assert_int_equal(aq_list_split("a,b", "api_key", 2, &l, &err), AQ_OK);
    aq_list_free(&l);
    assert_int_equal(aq_list_split("a,b,c", "api_key", 2, &l, &err), AQ_CONFIG);
    assert_string_equal(err.msg, "api_key: more than 2 entries");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_trims_and_skips_empty),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_over_cap_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
