#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/status.h"

static void test_every_status_has_class_and_text(void **state)
{
    (void)state;
    for (int i = 0; i < AQ__STATUS_COUNT; i++) {
        const char *cls = aq_status_class((aq_status)i);
        assert_non_null(cls);
        assert_true(strlen(cls) > 0);
        assert_string_not_equal(aq_status_text((aq_status)i), "unknown status");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(cls, aq_status_class((aq_status)j));
    }
    assert_string_equal(aq_status_class(AQ__STATUS_COUNT), "unknown");
}

static void test_dispositions_follow_design(void **state)
{
    (void)state;
    assert_int_equal(aq_status_disposition(AQ_OK), AQ_DISP_NONE);
    assert_int_equal(aq_status_disposition(AQ_HTTP_RATE_LIMITED), AQ_DISP_DEFER);
    assert_int_equal(aq_status_disposition(AQ_HTTP_OVERLOADED), AQ_DISP_DEFER);
    assert_int_equal(aq_status_disposition(AQ_HTTP_SERVER_ERROR), AQ_DISP_RETRY);
    assert_int_equal(aq_status_disposition(AQ_HTTP_TIMEOUT), AQ_DISP_RETRY);
    assert_int_equal(aq_status_disposition(AQ_HTTP_CONNECT), AQ_DISP_RETRY);
    assert_int_equal(aq_status_disposition(AQ_HTTP_BAD_REQUEST), AQ_DISP_PERMANENT);
    assert_int_equal(aq_status_disposition(AQ_HTTP_UNAUTHORIZED), AQ_DISP_PERMANENT);
    assert_int_equal(aq_status_disposition(AQ_HTTP_FORBIDDEN), AQ_DISP_PERMANENT);
    assert_int_equal(aq_status_disposition(AQ_HTTP_NOT_FOUND), AQ_DISP_PERMANENT);
    assert_int_equal(aq_status_disposition(AQ_HTTP_TOO_LARGE), AQ_DISP_PERMANENT);
    assert_int_equal(aq_status_disposition(AQ_TASK_DECODE), AQ_DISP_PERMANENT);
    assert_int_equal(aq_status_disposition(AQ_TASK_INVALID), AQ_DISP_PERMANENT);
    assert_int_equal(aq_status_disposition(AQ_EXPIRED), AQ_DISP_PERMANENT);
}

static void test_err_set_and_prefix(void **state)
{
    (void)state;
    aq_err err;
    aq_err_clear(&err);
    assert_int_equal(aq_err_set(&err, AQ_TOO_BIG, "prompt is %d bytes", 42), AQ_TOO_BIG);
    assert_string_equal(err.msg, "prompt is 42 bytes");
    aq_err_prefix(&err, "task %s", "t1");
    assert_string_equal(err.msg, "task t1: prompt is 42 bytes");
    assert_int_equal(err.status, AQ_TOO_BIG);
    assert_int_equal(aq_err_set(NULL, AQ_IO, "ignored"), AQ_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_status_has_class_and_text),
        cmocka_unit_test(test_dispositions_follow_design),
        cmocka_unit_test(test_err_set_and_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
