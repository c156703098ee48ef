#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Read every line written so far and parse each as one JSON object. */
static size_t read_lines(FILE *f, json_t **objs, size_t max)
{
    char line[8192];
    size_t n = 0;
    fflush(f);
    rewind(f);
    while (fgets(line, sizeof(line), f)) {
        size_t len = strlen(line);
        assert_true(len > 0);
        assert_int_equal(line[len - 1], '\n');
        line[len - 1] = '\0';
        assert_null(strchr(line, '\n'));
        json_error_t jerr;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
        if (!o)
            fail_msg("not JSON: %s (%s)", line, jerr.text);
        assert_true(json_is_object(o));
        assert_true(n < max);
        objs[n++] = o;
    }
    return n;
}

static void free_objs(json_t **objs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(objs[i]);
}

static int setup(void **state)
{
    FILE *f = tmpfile();
    if (!f)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    aq_log_init("agentq", AQ_LOG_INFO, NULL);
    fclose(*state);
    return 0;
}

static void test_one_object_per_line(void **state)
{
    FILE *f = *state;
    aq_log_init("testprog", AQ_LOG_DEBUG, f);
    aq_log(AQ_LOG_INFO, "task completed", AQ_LF_S("id", "t-1"), AQ_LF_I("attempt", 2));
    aq_log(AQ_LOG_WARN, "no fields");
    aq_log(AQ_LOG_ERROR, "negative", AQ_LF_I("n", -9000000000LL));
    json_t *objs[8];
    size_t n = read_lines(f, objs, 8);
    assert_int_equal(n, 3);

    json_t *o = objs[0];
    assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(o, "prog")), "testprog");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "task completed");
    assert_string_equal(json_string_value(json_object_get(o, "id")), "t-1");
    assert_true(json_is_integer(json_object_get(o, "attempt")));
    assert_int_equal(json_integer_value(json_object_get(o, "attempt")), 2);
    const char *ts = json_string_value(json_object_get(o, "ts"));
    assert_non_null(ts);
    /* 2024-01-02T03:04:05.678Z */
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
    assert_int_equal(json_object_size(o), 6);

    assert_string_equal(json_string_value(json_object_get(objs[1], "level")), "warn");
    assert_int_equal(json_object_size(objs[1]), 4);
    assert_string_equal(json_string_value(json_object_get(objs[2], "level")), "error");
    assert_int_equal(json_integer_value(json_object_get(objs[2], "n")), -9000000000LL);
    free_objs(objs, n);
}

static void test_level_filtering(void **state)
{
    FILE *f = *state;
    aq_log_init("p", AQ_LOG_WARN, f);
    assert_false(aq_log_enabled(AQ_LOG_DEBUG));
    assert_false(aq_log_enabled(AQ_LOG_INFO));
    assert_true(aq_log_enabled(AQ_LOG_WARN));
    assert_true(aq_log_enabled(AQ_LOG_ERROR));
    aq_log(AQ_LOG_DEBUG, "d");
    aq_log(AQ_LOG_INFO, "i");
    aq_log(AQ_LOG_WARN, "w");
    aq_log(AQ_LOG_ERROR, "e");
    aq_log_fields(AQ_LOG_INFO, "direct-filtered", NULL, 0);
    json_t *objs[8];
    size_t n = read_lines(f, objs, 8);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "msg")), "w");
    assert_string_equal(json_string_value(json_object_get(objs[1], "msg")), "e");
    free_objs(objs, n);
}

static void test_debug_level_logs_everything(void **state)
{
    FILE *f = *state;
    aq_log_init("p", AQ_LOG_DEBUG, f);
    aq_log(AQ_LOG_DEBUG, "d");
    aq_log(AQ_LOG_INFO, "i");
    json_t *objs[4];
    size_t n = read_lines(f, objs, 4);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "level")), "debug");
    free_objs(objs, n);
}

static void test_escaping(void **state)
{
    FILE *f = *state;
    aq_log_init("p", AQ_LOG_INFO, f);
    const char *nasty = "say \"hi\"\nnext line\r\ttab \\ back\x01\x1f end";
    aq_log(AQ_LOG_INFO, "line1\nline2 \"quoted\"", AQ_LF_S("v", nasty),
           AQ_LF_S("unicode", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    json_t *objs[4];
    size_t n = read_lines(f, objs, 4);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(objs[0], "msg")),
                        "line1\nline2 \"quoted\"");
    assert_string_equal(json_string_value(json_object_get(objs[0], "v")), nasty);
    assert_string_equal(json_string_value(json_object_get(objs[0], "unicode")),
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    free_objs(objs, n);

    /* The raw line is pure ASCII with control characters escaped. */
    char line[4096];
    rewind(f);
    assert_non_null(fgets(line, sizeof(line), f));
    for (const unsigned char *p = (const unsigned char *)line; *p && *p != '\n'; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    assert_non_null(strstr(line, "\\u0001"));
    assert_non_null(strstr(line, "\\\"hi\\\""));
}

static void test_null_string_and_skipped_keys(void **state)
{
    FILE *f = *state;
    aq_log_init("p", AQ_LOG_INFO, f);
    const char *nothing = NULL;
    aq_log(AQ_LOG_INFO, "m", AQ_LF_S("empty", nothing));
    aq_log_field fields[] = {{NULL, "skipped", 0}, {"k", NULL, 5}};
    aq_log_fields(AQ_LOG_INFO, "direct", fields, 2);
    json_t *objs[4];
    size_t n = read_lines(f, objs, 4);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(objs[0], "empty")), "");
    assert_int_equal(json_object_size(objs[1]), 5);
    assert_int_equal(json_integer_value(json_object_get(objs[1], "k")), 5);
    free_objs(objs, n);
}

/* A value that is not valid UTF-8 is kept, with U+FFFD for the bad bytes,
 * rather than silently dropped: those bytes are what one needs to debug. */
static void test_invalid_utf8_field_kept(void **state)
{
    FILE *f = *state;
    aq_log_init("p", AQ_LOG_INFO, f);
    aq_log(AQ_LOG_INFO, "bad \xff msg", AQ_LF_S("body", "ab\xc3\x28zz"));
    json_t *objs[4];
    size_t n = read_lines(f, objs, 4);
    assert_int_equal(n, 1);
    bool has_msg = json_is_string(json_object_get(objs[0], "msg"));
    bool has_body = json_is_string(json_object_get(objs[0], "body"));
    free_objs(objs, n);
    assert_true(has_msg);
    assert_true(has_body);
}

static void test_level_parse(void **state)
{
    (void)state;
    aq_log_level l = AQ_LOG_ERROR;
    assert_int_equal(aq_log_level_parse("debug", &l), AQ_OK);
    assert_int_equal(l, AQ_LOG_DEBUG);
    assert_int_equal(aq_log_level_parse("INFO", &l), AQ_OK);
    assert_int_equal(l, AQ_LOG_INFO);
    assert_int_equal(aq_log_level_parse("warn", &l), AQ_OK);
    assert_int_equal(l, AQ_LOG_WARN);
    assert_int_equal(aq_log_level_parse("Error", &l), AQ_OK);
    assert_int_equal(l, AQ_LOG_ERROR);
    assert_int_equal(aq_log_level_parse("warning", &l), AQ_INVALID_ARG);
    assert_int_equal(aq_log_level_parse("", &l), AQ_INVALID_ARG);
    assert_int_equal(aq_log_level_parse("trace", &l), AQ_INVALID_ARG);
    assert_int_equal(l, AQ_LOG_ERROR);
}

enum { LOG_THREADS = 4, LOG_PER_THREAD = 200 };

static void *log_thread(void *arg)
{
    long id = (long)(intptr_t)arg;
    for (int i = 0; i < LOG_PER_THREAD; i++)
        aq_log(AQ_LOG_INFO, "from thread", AQ_LF_I("thread", id), AQ_LF_I("i", i),
               AQ_LF_S("pad", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
    return NULL;
}

static void test_concurrent_lines_do_not_interleave(void **state)
{
    FILE *f = *state;
    aq_log_init("p", AQ_LOG_INFO, f);
    pthread_t th[LOG_THREADS];
    for (long t = 0; t < LOG_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, log_thread, (void *)(intptr_t)t), 0);
    for (int t = 0; t < LOG_THREADS; t++)
        pthread_join(th[t], NULL);
    json_t **objs = calloc(LOG_THREADS * LOG_PER_THREAD, sizeof(*objs));
    size_t n = read_lines(f, objs, LOG_THREADS * LOG_PER_THREAD);
    assert_int_equal(n, LOG_THREADS * LOG_PER_THREAD);
    free_objs(objs, n);
    free(objs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_object_per_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_level_logs_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_string_and_skipped_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_field_kept, setup, teardown),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test_setup_teardown(test_concurrent_lines_do_not_interleave, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
