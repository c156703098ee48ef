#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/text.h"

static void expect_redacted(const char *url, const char *want)
{
    char out[512];
    memset(out, 'X', sizeof(out));
    aq_redact_urls(url, out, sizeof(out));
    if (strcmp(out, want) != 0)
        fail_msg("redact(%s) = %s, want %s", url, out, want);
}

static void test_redacts_userinfo(void **state)
{
    (void)state;
    expect_redacted("nats://user:pass@host:4222", "nats://***@host:4222");
    expect_redacted("tls://tok@h", "tls://***@h");
    expect_redacted("nats://s3cr3t-token@nats.internal:4222", "nats://***@nats.internal:4222");
    expect_redacted("nats://user:pass@host:4222/path", "nats://***@host:4222/path");
    expect_redacted("NATS://u:p@HOST", "NATS://***@HOST");
    expect_redacted("nats://:pass@host", "nats://***@host");
    expect_redacted("nats://@host", "nats://***@host");
}

static void test_leaves_plain_urls(void **state)
{
    (void)state;
    expect_redacted("nats://127.0.0.1:4222", "nats://127.0.0.1:4222");
    expect_redacted("tls://nats.example.com:4443", "tls://nats.example.com:4443");
    expect_redacted("nats://host:4222/a@b", "nats://host:4222/a@b"); /* '@' after the path */
    expect_redacted("", "");
    expect_redacted("localhost", "localhost");
}

static void test_no_scheme(void **state)
{
    (void)state;
    expect_redacted("user:pass@host:4222", "***@host:4222");
    expect_redacted("token@host", "***@host");
    expect_redacted("host:4222", "host:4222");
}

static void test_small_output_buffer(void **state)
{
    (void)state;
    char out[12];
    aq_redact_urls("nats://user:supersecretpassword@host:4222", out, sizeof(out));
    assert_int_equal(strlen(out), sizeof(out) - 1);
    assert_null(strstr(out, "super"));
    assert_string_equal(out, "nats://***@");
    char tiny[1] = {'Z'};
    aq_redact_urls("nats://u:p@h", tiny, sizeof(tiny));
    assert_int_equal(tiny[0], '\0');
}

/* The user-info ends at the LAST '@' before the path: a password may hold '@'. */
static void test_password_with_at_sign(void **state)
{
    (void)state;
    char out[256];
    aq_redact_urls("nats://user:p@ss@host:4222", out, sizeof(out));
    assert_null(strstr(out, "ss@"));
    assert_string_equal(out, "nats://***@host:4222");
}

/* nats_url is a comma-separated list: every server's credentials go. */
static void test_url_list(void **state)
{
    (void)state;
    char out[512];
    aq_redact_urls("nats://a:pw1@h1:4222,nats://b:pw2@h2:4222", out, sizeof(out));
    assert_null(strstr(out, "pw1"));
    assert_null(strstr(out, "pw2"));
    assert_string_equal(out, "nats://***@h1:4222,nats://***@h2:4222");
    aq_redact_urls("nats://h1:4222, nats://b:pw2@h2:4222", out, sizeof(out));
    assert_null(strstr(out, "pw2"));
}

static void test_utf8_sanitize(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(aq_utf8_sanitize("ok", 2, out, sizeof(out)), "ok");
    assert_string_equal(aq_utf8_sanitize("a\xff" "b", 3, out, sizeof(out)), "a\xEF\xBF\xBD" "b");
    assert_string_equal(aq_utf8_sanitize("\xC3\xA9", 2, out, sizeof(out)), "\xC3\xA9");
    /* truncated sequence at the end, and a surrogate */
    assert_string_equal(aq_utf8_sanitize("x\xE2\x82", 3, out, sizeof(out)),
                        "x\xEF\xBF\xBD\xEF\xBF\xBD");
    assert_true(aq_utf8_valid(out, strlen(out)));
    assert_false(aq_utf8_valid("\xED\xA0\x80", 3));
    /* never splits a character when the output is short */
    char tiny[4];
    aq_utf8_sanitize("\xC3\xA9\xC3\xA9", 4, tiny, sizeof(tiny));
    assert_string_equal(tiny, "\xC3\xA9");
}

/* The name=value split the prices and rate-limit parsers share. */
static void test_span_setting(void **state)
{
    (void)state;
    static const char *const names[] = {"in", "out", "cache_read"};
    const char *nb = NULL, *ne = NULL, *vb = NULL, *ve = NULL;
    const char *s = " out = 15.5 ";
    assert_int_equal(aq_span_setting(s, s + strlen(s), names, 3, &nb, &ne, &vb, &ve), 1);
    assert_int_equal(ne - nb, 3);
    assert_memory_equal(nb, "out", 3);
    assert_int_equal(ve - vb, 4);
    assert_memory_equal(vb, "15.5", 4);
    s = "cache_read=";
    assert_int_equal(aq_span_setting(s, s + strlen(s), names, 3, &nb, &ne, &vb, &ve), 2);
    assert_ptr_equal(vb, ve); /* no value: the caller says so */
    s = "ou=1"; /* a prefix of a name is not that name */
    assert_int_equal(aq_span_setting(s, s + strlen(s), names, 3, &nb, &ne, &vb, &ve),
                     AQ_SPAN_UNKNOWN_NAME);
    assert_memory_equal(nb, "ou", 2);
    s = "out 1";
    assert_int_equal(aq_span_setting(s, s + strlen(s), names, 3, &nb, &ne, &vb, &ve),
                     AQ_SPAN_NO_EQUALS);
    s = "=5"; /* an empty name is unknown */
    assert_int_equal(aq_span_setting(s, s + strlen(s), names, 3, &nb, &ne, &vb, &ve),
                     AQ_SPAN_UNKNOWN_NAME);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redacts_userinfo),
        cmocka_unit_test(test_utf8_sanitize),
        cmocka_unit_test(test_leaves_plain_urls),
        cmocka_unit_test(test_no_scheme),
        cmocka_unit_test(test_small_output_buffer),
        cmocka_unit_test(test_password_with_at_sign),
        cmocka_unit_test(test_url_list),
        cmocka_unit_test(test_span_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
