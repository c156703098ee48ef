#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "task/task_codec.h"

/* A valid task whose pieces tests can change; every string is borrowed. */
typedef struct tfix {
    Agentq__V1__Task task;
    Agentq__V1__Message m[3];
    Agentq__V1__Message *mp[3];
    char *stops[2];
    Agentq__V1__Task__MetadataEntry md[2];
    Agentq__V1__Task__MetadataEntry *mdp[2];
    aq_task_limits lim;
} tfix;

static void fix_init(tfix *f, bool with_messages)
{
    memset(f, 0, sizeof(*f));
    agentq__v1__task__init(&f->task);
    aq_task_limits_default(&f->lim);
    Agentq__V1__Task *t = &f->task;
    t->id = "task-1_a=b.c";
    t->type = "summarize";
    t->tenant = "acme";
    t->model = "claude-sonnet-4-5";
    t->system = "You are terse.";
    t->max_tokens = 512;
    t->temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE;
    t->temperature = 0.25f;
    f->stops[0] = "STOP";
    f->stops[1] = "\n\nHuman:";
    t->n_stop_sequences = 2;
    t->stop_sequences = f->stops;
    for (int i = 0; i < 2; i++) {
        agentq__v1__task__metadata_entry__init(&f->md[i]);
        f->mdp[i] = &f->md[i];
    }
    f->md[0].key = "source";
    f->md[0].value = "unit";
    f->md[1].key = "trace";
    f->md[1].value = "abc123";
    t->n_metadata = 2;
    t->metadata = f->mdp;
    t->deadline_unix_ms = 1900000000000LL;
    t->created_unix_ms = 1700000000000LL;
    t->cache_policy = AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN;
    t->allow_fallback = true;
    if (with_messages) {
        static const char *const roles[] = {"user", "assistant", "user"};
        static const char *const contents[] = {"Hi", "Hello! How can I help?", "Summarize \xc3\xa9t\xc3\xa9"};
        for (int i = 0; i < 3; i++) {
            agentq__v1__message__init(&f->m[i]);
            f->m[i].role = (char *)roles[i];
            f->m[i].content = (char *)contents[i];
            f->mp[i] = &f->m[i];
        }
        t->n_messages = 3;
        t->messages = f->mp;
    } else {
        t->prompt = "Summarize this: \xe2\x82\xac 100";
    }
}

static void expect_invalid(const tfix *f, aq_status want, const char *needle)
{
    aq_err err;
    aq_err_clear(&err);
    aq_status st = aq_task_validate(&f->task, &f->lim, &err);
    if (st != want)
        fail_msg("validate returned %s (%s), want %s", aq_status_class(st), err.msg,
                 aq_status_class(want));
    assert_int_equal(err.status, want);
    if (needle && !strstr(err.msg, needle))
        fail_msg("error '%s' does not mention '%s'", err.msg, needle);
}

/* ---- ids, types, UTF-8 ---- */

static void test_id_valid_table(void **state)
{
    (void)state;
    char max_id[AQ_TASK_ID_MAX + 2];
    memset(max_id, 'a', sizeof(max_id));
    max_id[AQ_TASK_ID_MAX] = '\0';
    assert_true(aq_task_id_valid(max_id));
    max_id[AQ_TASK_ID_MAX] = 'a';
    max_id[AQ_TASK_ID_MAX + 1] = '\0';
    assert_false(aq_task_id_valid(max_id));

    const char *good[] = {"a", "0", "task-1", "A_b=c-d", "a.b", "a.b.c", "x=", "-", "_", "="};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!aq_task_id_valid(good[i]))
            fail_msg("id '%s' rejected", good[i]);
    const char *bad[] = {"",    ".",     "..",     ".a",    "a.",   "a..b",  "a b",
                         " a",  "a/b",   "a*",     "a>",    "a\tb", "a\nb",  "caf\xc3\xa9",
                         "a:b", "a,b",   "a$b",    "a\\b",  "a+b",  "\xe2\x82\xac"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (aq_task_id_valid(bad[i]))
            fail_msg("id '%s' accepted", bad[i]);
    assert_false(aq_task_id_valid(NULL));
}

static void test_type_valid_table(void **state)
{
    (void)state;
    char max_t[AQ_TASK_TYPE_MAX + 2];
    memset(max_t, 'T', sizeof(max_t));
    max_t[AQ_TASK_TYPE_MAX] = '\0';
    assert_true(aq_task_type_valid(max_t));
    max_t[AQ_TASK_TYPE_MAX] = 'T';
    max_t[AQ_TASK_TYPE_MAX + 1] = '\0';
    assert_false(aq_task_type_valid(max_t));

    const char *good[] = {"a", "summarize", "Code_Review-2", "-", "_", "0"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!aq_task_type_valid(good[i]))
            fail_msg("type '%s' rejected", good[i]);
    /* No '.', which would add a subject token, and no wildcards. */
    const char *bad[] = {"",    ".",   "..",   "a.b",  ".a",   "a.",  "a b", "a/b",
                         "*",   ">",   "a*",   "a>",   "a=b",  "t\xc3\xa9", "a\tb", " "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (aq_task_type_valid(bad[i]))
            fail_msg("type '%s' accepted", bad[i]);
    assert_false(aq_task_type_valid(NULL));
}

static void test_utf8_table(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len; /* 0: strlen */
        bool ok;
        const char *what;
    } cases[] = {
        {"", 0, true, "empty"},
        {"plain ascii", 0, true, "ascii"},
        {"\x00", 1, true, "NUL is valid UTF-8"},
        {"\xc2\x80", 0, true, "U+0080 (2 bytes, smallest)"},
        {"\xc3\xa9", 0, true, "e acute"},
        {"\xdf\xbf", 0, true, "U+07FF (2 bytes, largest)"},
        {"\xe0\xa0\x80", 0, true, "U+0800 (3 bytes, smallest)"},
        {"\xe2\x82\xac", 0, true, "euro sign"},
        {"\xed\x9f\xbf", 0, true, "U+D7FF (before surrogates)"},
        {"\xee\x80\x80", 0, true, "U+E000 (after surrogates)"},
        {"\xef\xbf\xbf", 0, true, "U+FFFF"},
        {"\xf0\x90\x80\x80", 0, true, "U+10000 (4 bytes, smallest)"},
        {"\xf0\x9f\x98\x80", 0, true, "emoji"},
        {"\xf4\x8f\xbf\xbf", 0, true, "U+10FFFF (largest)"},
        {"a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80!", 0, true, "mixed"},
        {"\xc0\x80", 0, false, "overlong NUL"},
        {"\xc0\xaf", 0, false, "overlong '/'"},
        {"\xc1\xbf", 0, false, "overlong 2-byte"},
        {"\xe0\x80\xaf", 0, false, "overlong 3-byte"},
        {"\xe0\x9f\xbf", 0, false, "overlong U+07FF in 3 bytes"},
        {"\xf0\x80\x80\xaf", 0, false, "overlong 4-byte"},
        {"\xf0\x8f\xbf\xbf", 0, false, "overlong U+FFFF in 4 bytes"},
        {"\xed\xa0\x80", 0, false, "high surrogate U+D800"},
        {"\xed\xbf\xbf", 0, false, "low surrogate U+DFFF"},
        {"\xed\xa0\xbd\xed\xb8\x80", 0, false, "CESU-8 surrogate pair"},
        {"\xf4\x90\x80\x80", 0, false, "U+110000"},
        {"\xf5\x80\x80\x80", 0, false, "lead byte F5"},
        {"\xf7\xbf\xbf\xbf", 0, false, "lead byte F7"},
        {"\xf8\x88\x80\x80\x80", 0, false, "5-byte form"},
        {"\xfc\x84\x80\x80\x80\x80", 0, false, "6-byte form"},
        {"\xfe", 0, false, "FE"},
        {"\xff", 0, false, "FF"},
        {"\x80", 0, false, "lone continuation"},
        {"a\xbf", 0, false, "continuation after ascii"},
        {"\xc3", 0, false, "truncated 2-byte"},
        {"\xe2\x82", 0, false, "truncated 3-byte"},
        {"\xe2", 0, false, "truncated 3-byte (1 of 3)"},
        {"\xf0\x9f\x98", 0, false, "truncated 4-byte"},
        {"\xc3" "a", 0, false, "bad continuation"},
        {"\xe2\x28\xa1", 0, false, "bad 2nd byte"},
        {"\xe2\x82\x28", 0, false, "bad 3rd byte"},
        {"\xf0\x9f\x98\x28", 0, false, "bad 4th byte"},
        {"ok\xc3\xa9\xc3", 0, false, "truncated at the end"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].s);
        if (aq_utf8_valid(cases[i].s, len) != cases[i].ok)
            fail_msg("utf8 case '%s': want %s", cases[i].what, cases[i].ok ? "valid" : "invalid");
    }
    /* The length bounds the check: a valid prefix of an invalid string. */
    assert_true(aq_utf8_valid("ab\xff", 2));
    /* A sequence cut by the length (not by NUL) is truncated. */
    assert_false(aq_utf8_valid("\xe2\x82\xac", 2));
}

/* ---- unpack ---- */

static void pack_task(const Agentq__V1__Task *t, aq_buf *out)
{
    aq_err err;
    aq_buf_init(out, 8u << 20);
    assert_int_equal(aq_task_pack(t, out, &err), AQ_OK);
}

static void test_unpack_empty_and_garbage(void **state)
{
    (void)state;
    aq_task_limits lim;
    aq_task_limits_default(&lim);
    Agentq__V1__Task *t = (Agentq__V1__Task *)0x1;
    aq_err err;
    assert_int_equal(aq_task_unpack("", 0, &lim, &t, &err), AQ_TASK_DECODE);
    assert_int_equal(err.status, AQ_TASK_DECODE);
    assert_ptr_equal(t, (Agentq__V1__Task *)0x1); /* out untouched on failure */

    static const struct {
        const char *bytes;
        size_t len;
    } garbage[] = {
        {"\xff\xff\xff\xff", 4},                 /* unterminated varint tag */
        {"\x0a\x05" "ab", 4},                    /* id says 5 bytes, has 2 */
        {"\x0a", 1},                             /* tag without length */
        {"\x08\x01", 2},                         /* field 1 (string) as a varint */
        {"\x0a\xff\xff\xff\xff\x0f", 6},         /* huge length */
        {"\x00", 1},                             /* field number 0 */
        {"\x0f\x01", 2},                         /* wire type 7 */
        {"\x3a\x02\x0a\x05", 4},                 /* messages[0] truncated inside */
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        aq_err_clear(&err);
        aq_status st = aq_task_unpack(garbage[i].bytes, garbage[i].len, &lim, &t, &err);
        if (st != AQ_TASK_DECODE)
            fail_msg("garbage case %zu decoded (%s)", i, aq_status_class(st));
        assert_true(strlen(err.msg) > 0);
    }
    /* Text is not a protobuf either. */
    const char *json = "{\"id\":\"t1\",\"type\":\"x\",\"prompt\":\"hi\"}";
    assert_int_equal(aq_task_unpack(json, strlen(json), &lim, &t, &err), AQ_TASK_DECODE);
}

static void test_unpack_truncated(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, true);
    aq_buf b;
    pack_task(&f.task, &b);
    Agentq__V1__Task *t = NULL;
    aq_err err;
    assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_OK);
    aq_task_free(t);
    /* The last field (created_unix_ms, a multi-byte varint) cut short. */
    assert_int_equal(aq_task_unpack(b.data, b.len - 1, &f.lim, &t, &err), AQ_TASK_DECODE);
    /* Cut inside the first field (the id string). */
    assert_int_equal(aq_task_unpack(b.data, 5, &f.lim, &t, &err), AQ_TASK_DECODE);
    /* Every cut that lands inside a length-delimited field fails; some cuts land on
     * a field boundary and decode as a shorter task, which validate then judges. */
    size_t failures = 0;
    for (size_t n = 1; n < b.len; n++) {
        aq_status st = aq_task_unpack(b.data, n, &f.lim, &t, &err);
        if (st == AQ_OK)
            aq_task_free(t);
        else
            failures++;
    }
    assert_true(failures > b.len / 2);
    aq_buf_free(&b);
}

static void test_unpack_size_cap(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    aq_buf b;
    pack_task(&f.task, &b);
    Agentq__V1__Task *t = NULL;
    aq_err err;
    f.lim.max_payload_bytes = b.len;
    assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_OK);
    aq_task_free(t);
    f.lim.max_payload_bytes = b.len - 1;
    t = NULL;
    assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_TOO_BIG);
    assert_int_equal(err.status, AQ_TOO_BIG);
    assert_null(t);
    aq_buf_free(&b);

    /* A payload over the default cap is refused before decoding. */
    aq_task_limits lim;
    aq_task_limits_default(&lim);
    size_t n = lim.max_payload_bytes + 1;
    char *big = calloc(1, n);
    assert_non_null(big);
    assert_int_equal(aq_task_unpack(big, n, &lim, &t, &err), AQ_TOO_BIG);
    free(big);
}

/* ---- validate ---- */

static void test_validate_ok(void **state)
{
    (void)state;
    tfix f;
    aq_err err;
    fix_init(&f, false);
    assert_int_equal(aq_task_validate(&f.task, &f.lim, &err), AQ_OK);
    fix_init(&f, true);
    assert_int_equal(aq_task_validate(&f.task, &f.lim, &err), AQ_OK);
    /* The minimum: id, type and a prompt. */
    Agentq__V1__Task t = AGENTQ__V1__TASK__INIT;
    t.id = "x";
    t.type = "y";
    t.prompt = "p";
    assert_int_equal(aq_task_validate(&t, &f.lim, &err), AQ_OK);
}

static void test_validate_id_and_type(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    f.task.id = "";
    expect_invalid(&f, AQ_TASK_INVALID, "id is missing");
    f.task.id = NULL;
    expect_invalid(&f, AQ_TASK_INVALID, "id is missing");
    f.task.id = "has space";
    expect_invalid(&f, AQ_TASK_INVALID, "id must be");
    f.task.id = "a..b";
    expect_invalid(&f, AQ_TASK_INVALID, "id must be");
    fix_init(&f, false);
    f.task.type = "";
    expect_invalid(&f, AQ_TASK_INVALID, "type must be");
    f.task.type = "a.b";
    expect_invalid(&f, AQ_TASK_INVALID, "type must be");
    f.task.type = "a*";
    expect_invalid(&f, AQ_TASK_INVALID, "type must be");
}

static void test_validate_prompt_and_messages(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, true);
    f.task.prompt = "also a prompt";
    expect_invalid(&f, AQ_TASK_INVALID, "not both");

    fix_init(&f, false);
    f.task.prompt = "";
    expect_invalid(&f, AQ_TASK_INVALID, "no prompt");

    fix_init(&f, true);
    f.m[1].role = "system";
    expect_invalid(&f, AQ_TASK_INVALID, "messages[1].role");
    f.m[1].role = "User"; /* case matters */
    expect_invalid(&f, AQ_TASK_INVALID, "messages[1].role");
    f.m[1].role = "";
    expect_invalid(&f, AQ_TASK_INVALID, "messages[1].role");

    fix_init(&f, true);
    f.m[0].role = "assistant";
    expect_invalid(&f, AQ_TASK_INVALID, "first message");

    fix_init(&f, true);
    f.m[2].content = "";
    expect_invalid(&f, AQ_TASK_INVALID, "messages[2].content is empty");

    /* Too many messages. */
    fix_init(&f, true);
    f.lim.max_messages = 2;
    expect_invalid(&f, AQ_TASK_INVALID, "3 messages");
    f.lim.max_messages = 3;
    expect_invalid(&f, AQ_OK, NULL);
}

static void test_validate_prompt_cap(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    size_t total = strlen(f.task.system) + strlen(f.task.prompt);
    f.lim.max_prompt_bytes = total;
    expect_invalid(&f, AQ_OK, NULL);
    f.lim.max_prompt_bytes = total - 1;
    expect_invalid(&f, AQ_PROMPT_TOO_LARGE, "over the cap");

    /* system + every message's content counts. */
    fix_init(&f, true);
    total = strlen(f.task.system);
    for (int i = 0; i < 3; i++)
        total += strlen(f.m[i].content);
    f.lim.max_prompt_bytes = total;
    expect_invalid(&f, AQ_OK, NULL);
    f.lim.max_prompt_bytes = total - 1;
    expect_invalid(&f, AQ_PROMPT_TOO_LARGE, NULL);

    /* The default cap (1 MiB). */
    fix_init(&f, false);
    size_t n = f.lim.max_prompt_bytes + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'p', n);
    big[n] = '\0';
    f.task.system = "";
    f.task.prompt = big;
    expect_invalid(&f, AQ_PROMPT_TOO_LARGE, NULL);
    big[n - 1] = '\0';
    expect_invalid(&f, AQ_OK, NULL);
    free(big);
}

static void test_validate_max_tokens_temperature(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    f.task.max_tokens = f.lim.max_tokens_cap;
    expect_invalid(&f, AQ_OK, NULL);
    f.task.max_tokens = f.lim.max_tokens_cap + 1;
    expect_invalid(&f, AQ_TASK_INVALID, "max_tokens");
    f.task.max_tokens = UINT32_MAX;
    expect_invalid(&f, AQ_TASK_INVALID, "max_tokens");
    f.task.max_tokens = 0; /* worker default */
    expect_invalid(&f, AQ_OK, NULL);

    const float good[] = {0.0f, 0.5f, 1.0f};
    for (size_t i = 0; i < 3; i++) {
        f.task.temperature = good[i];
        expect_invalid(&f, AQ_OK, NULL);
    }
    const float bad[] = {-0.001f, 1.001f, 2.0f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f.task.temperature = bad[i];
        expect_invalid(&f, AQ_TASK_INVALID, "temperature");
    }
    /* Out-of-range bits do not matter when temperature is absent. */
    f.task.temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE__NOT_SET;
    f.task.temperature = 5.0f;
    expect_invalid(&f, AQ_OK, NULL);
}

static void test_validate_stop_sequences(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    char *many[17];
    for (int i = 0; i < 17; i++)
        many[i] = "s";
    f.task.stop_sequences = many;
    f.task.n_stop_sequences = 16;
    expect_invalid(&f, AQ_OK, NULL);
    f.task.n_stop_sequences = 17;
    expect_invalid(&f, AQ_TASK_INVALID, "17 stop_sequences");

    fix_init(&f, false);
    f.stops[1] = "";
    expect_invalid(&f, AQ_TASK_INVALID, "stop_sequences[1] is empty");

    fix_init(&f, false);
    char *long_stop = malloc(f.lim.max_field_bytes + 2);
    memset(long_stop, 's', f.lim.max_field_bytes + 1);
    long_stop[f.lim.max_field_bytes + 1] = '\0';
    f.stops[0] = long_stop;
    expect_invalid(&f, AQ_TASK_INVALID, "stop_sequences");
    long_stop[f.lim.max_field_bytes] = '\0';
    expect_invalid(&f, AQ_OK, NULL);
    free(long_stop);
}

static void test_validate_metadata_caps(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    f.lim.max_metadata = 1;
    expect_invalid(&f, AQ_TASK_INVALID, "2 metadata entries");
    f.lim.max_metadata = 2;
    expect_invalid(&f, AQ_OK, NULL);

    char *big = malloc(f.lim.max_field_bytes + 2);
    memset(big, 'k', f.lim.max_field_bytes + 1);
    big[f.lim.max_field_bytes + 1] = '\0';
    f.md[1].key = big;
    expect_invalid(&f, AQ_TASK_INVALID, "metadata key");
    f.md[1].key = "k";
    f.md[1].value = big;
    expect_invalid(&f, AQ_TASK_INVALID, "metadata value");
    big[f.lim.max_field_bytes] = '\0';
    expect_invalid(&f, AQ_OK, NULL);
    free(big);

    /* tenant and model have the same cap. */
    fix_init(&f, false);
    big = malloc(f.lim.max_field_bytes + 2);
    memset(big, 't', f.lim.max_field_bytes + 1);
    big[f.lim.max_field_bytes + 1] = '\0';
    f.task.tenant = big;
    expect_invalid(&f, AQ_TASK_INVALID, "tenant");
    f.task.tenant = "acme";
    f.task.model = big;
    expect_invalid(&f, AQ_TASK_INVALID, "model");
    free(big);
}

static void test_validate_utf8_every_field(void **state)
{
    (void)state;
    static const char bad[] = "ok\xed\xa0\x80"; /* a surrogate */
    tfix f;

    fix_init(&f, false);
    f.task.tenant = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "tenant is not valid UTF-8");

    fix_init(&f, false);
    f.task.model = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "model is not valid UTF-8");

    fix_init(&f, false);
    f.task.system = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "UTF-8");

    fix_init(&f, false);
    f.task.prompt = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "UTF-8");

    fix_init(&f, true);
    f.m[1].content = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "messages[1].content is not valid UTF-8");

    fix_init(&f, true);
    f.m[0].role = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "role");

    fix_init(&f, false);
    f.stops[1] = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "stop_sequences is not valid UTF-8");

    fix_init(&f, false);
    f.md[0].key = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "metadata key is not valid UTF-8");

    fix_init(&f, false);
    f.md[1].value = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "metadata value is not valid UTF-8");

    /* The id and type cannot hold non-ASCII at all. */
    fix_init(&f, false);
    f.task.id = (char *)bad;
    expect_invalid(&f, AQ_TASK_INVALID, "id must be");
}

static void test_validate_timestamps(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    f.task.deadline_unix_ms = -1;
    expect_invalid(&f, AQ_TASK_INVALID, "deadline_unix_ms");
    f.task.deadline_unix_ms = 0; /* none */
    expect_invalid(&f, AQ_OK, NULL);
    f.task.created_unix_ms = -5;
    expect_invalid(&f, AQ_TASK_INVALID, "created_unix_ms");
    f.task.created_unix_ms = 0;
    expect_invalid(&f, AQ_OK, NULL);
}

/* A decoded task is validated like a built one. */
static void test_unpack_then_validate(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    f.task.prompt = "\xc0\xaf"; /* protobuf-c does not check strings */
    aq_buf b;
    pack_task(&f.task, &b);
    Agentq__V1__Task *t = NULL;
    aq_err err;
    assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_OK);
    assert_int_equal(aq_task_validate(t, &f.lim, &err), AQ_TASK_INVALID);
    aq_task_free(t);
    aq_buf_free(&b);
    aq_task_free(NULL);
}

/* ---- round trips ---- */

static void test_task_round_trip(void **state)
{
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        tfix f;
        fix_init(&f, variant == 1);
        aq_buf b;
        pack_task(&f.task, &b);
        Agentq__V1__Task *t = NULL;
        aq_err err;
        assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_OK);
        assert_int_equal(aq_task_validate(t, &f.lim, &err), AQ_OK);
        assert_string_equal(t->id, f.task.id);
        assert_string_equal(t->type, f.task.type);
        assert_string_equal(t->tenant, f.task.tenant);
        assert_string_equal(t->model, f.task.model);
        assert_string_equal(t->system, f.task.system);
        assert_string_equal(t->prompt, f.task.prompt ? f.task.prompt : "");
        assert_int_equal(t->n_messages, f.task.n_messages);
        for (size_t i = 0; i < t->n_messages; i++) {
            assert_string_equal(t->messages[i]->role, f.m[i].role);
            assert_string_equal(t->messages[i]->content, f.m[i].content);
        }
        assert_int_equal(t->max_tokens, 512);
        assert_int_equal(t->temperature_presence_case,
                         AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE);
        assert_true(t->temperature == 0.25f);
        assert_int_equal(t->n_stop_sequences, 2);
        assert_string_equal(t->stop_sequences[0], "STOP");
        assert_string_equal(t->stop_sequences[1], "\n\nHuman:");
        assert_int_equal(t->n_metadata, 2);
        assert_string_equal(t->metadata[0]->key, "source");
        assert_string_equal(t->metadata[0]->value, "unit");
        assert_string_equal(t->metadata[1]->key, "trace");
        assert_string_equal(t->metadata[1]->value, "abc123");
        assert_int_equal(t->deadline_unix_ms, 1900000000000LL);
        assert_int_equal(t->created_unix_ms, 1700000000000LL);
        assert_int_equal(t->cache_policy, AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN);
        assert_true(t->allow_fallback);
        aq_task_free(t);
        aq_buf_free(&b);
    }
}

static void test_temperature_zero_is_present(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    f.task.temperature = 0.0f; /* explicit 0 differs from "not set" */
    aq_buf b;
    pack_task(&f.task, &b);
    Agentq__V1__Task *t = NULL;
    aq_err err;
    assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_OK);
    assert_int_equal(t->temperature_presence_case,
                     AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE);
    assert_true(t->temperature == 0.0f);
    aq_task_free(t);
    aq_buf_free(&b);

    f.task.temperature_presence_case = AGENTQ__V1__TASK__TEMPERATURE_PRESENCE__NOT_SET;
    pack_task(&f.task, &b);
    assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_OK);
    assert_int_equal(t->temperature_presence_case,
                     AGENTQ__V1__TASK__TEMPERATURE_PRESENCE__NOT_SET);
    aq_task_free(t);
    aq_buf_free(&b);
}

/* Every known policy validates; a number from a newer publisher does not. */
static void test_validate_cache_policy(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    aq_err err;
    for (int p = 0; p <= 3; p++) {
        f.task.cache_policy = (Agentq__V1__CachePolicy)p;
        assert_int_equal(aq_task_validate(&f.task, &f.lim, &err), AQ_OK);
    }
    f.task.cache_policy = (Agentq__V1__CachePolicy)4;
    expect_invalid(&f, AQ_TASK_INVALID, "cache_policy 4 is unknown");

    /* Through the wire: the open enum keeps the unknown number. */
    aq_buf b;
    pack_task(&f.task, &b);
    Agentq__V1__Task *t = NULL;
    assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_OK);
    assert_int_equal(aq_task_validate(t, &f.lim, &err), AQ_TASK_INVALID);
    aq_task_free(t);
    aq_buf_free(&b);

    Agentq__V1__CachePolicy got = AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_BYPASS;
    assert_true(aq_task_cache_policy_parse("default", &got));
    assert_int_equal(got, AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED);
    assert_true(aq_task_cache_policy_parse("opt-in", &got));
    assert_int_equal(got, AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN);
    assert_true(aq_task_cache_policy_parse("CACHE_POLICY_REFRESH", &got));
    assert_int_equal(got, AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH);
    assert_false(aq_task_cache_policy_parse("opt_in", &got));
    assert_false(aq_task_cache_policy_parse("", &got));
    assert_false(aq_task_cache_policy_parse(NULL, &got));
    assert_int_equal(got, AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH); /* untouched */
    assert_string_equal(aq_task_cache_policy_name(AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_BYPASS),
                        "bypass");
}

static void test_pack_over_buffer_cap(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, true);
    aq_buf b;
    aq_buf_init(&b, 10);
    aq_err err;
    assert_int_equal(aq_task_pack(&f.task, &b, &err), AQ_TOO_BIG);
    assert_int_equal(err.status, AQ_TOO_BIG);
    assert_non_null(strstr(err.msg, "cap of 10"));
    aq_buf_free(&b);

    /* Packing into a used buffer replaces its content. */
    aq_buf_init(&b, 1 << 20);
    assert_int_equal(aq_buf_append_str(&b, "old junk"), AQ_OK);
    assert_int_equal(aq_task_pack(&f.task, &b, &err), AQ_OK);
    Agentq__V1__Task *t = NULL;
    assert_int_equal(aq_task_unpack(b.data, b.len, &f.lim, &t, &err), AQ_OK);
    assert_string_equal(t->id, f.task.id);
    aq_task_free(t);
    aq_buf_free(&b);
}

static void test_result_round_trip(void **state)
{
    (void)state;
    Agentq__V1__Result r = AGENTQ__V1__RESULT__INIT;
    Agentq__V1__Usage u = AGENTQ__V1__USAGE__INIT;
    Agentq__V1__Error e = AGENTQ__V1__ERROR__INIT;
    r.id = "task-1";
    r.status = AGENTQ__V1__STATUS__STATUS_FAILED;
    r.output = "partial \xe2\x82\xac output";
    r.stop_reason = "max_tokens";
    r.model = "claude-sonnet-4-5";
    u.input_tokens = 11;
    u.output_tokens = 22;
    u.cache_creation_input_tokens = 33;
    u.cache_read_input_tokens = 44;
    r.usage = &u;
    r.attempts = 3;
    r.llm_latency_ms = 1234;
    r.queue_latency_ms = 5678;
    e.class_ = "rate_limited";
    e.message = "provider rate limit (429)";
    e.http_status = 429;
    r.error = &e;
    r.completed_unix_ms = 1700000000123LL;
    r.request_id = "req_abc";
    r.worker = "host-42";
    r.type = "summarize";
    r.cache_hit = 1;
    r.cost_micro_usd = 18446744073709551615ULL;
    r.route_rule = "long";
    r.tenant = "acme";
    r.cost_unknown = 1;
    r.fallback_used = 1;

    aq_buf b;
    aq_buf_init(&b, 1 << 20);
    aq_err err;
    assert_int_equal(aq_result_pack(&r, &b, &err), AQ_OK);
    Agentq__V1__Result *got = NULL;
    assert_int_equal(aq_result_unpack(b.data, b.len, &got, &err), AQ_OK);
    assert_string_equal(got->id, "task-1");
    assert_int_equal(got->status, AGENTQ__V1__STATUS__STATUS_FAILED);
    assert_string_equal(got->output, r.output);
    assert_string_equal(got->stop_reason, "max_tokens");
    assert_string_equal(got->model, "claude-sonnet-4-5");
    assert_non_null(got->usage);
    assert_int_equal(got->usage->input_tokens, 11);
    assert_int_equal(got->usage->output_tokens, 22);
    assert_int_equal(got->usage->cache_creation_input_tokens, 33);
    assert_int_equal(got->usage->cache_read_input_tokens, 44);
    assert_int_equal(got->attempts, 3);
    assert_int_equal(got->llm_latency_ms, 1234);
    assert_int_equal(got->queue_latency_ms, 5678);
    assert_non_null(got->error);
    assert_string_equal(got->error->class_, "rate_limited");
    assert_string_equal(got->error->message, "provider rate limit (429)");
    assert_int_equal(got->error->http_status, 429);
    assert_int_equal(got->completed_unix_ms, 1700000000123LL);
    assert_string_equal(got->request_id, "req_abc");
    assert_string_equal(got->worker, "host-42");
    assert_string_equal(got->type, "summarize");
    assert_true(got->cache_hit);
    assert_true(got->cost_micro_usd == 18446744073709551615ULL);
    assert_string_equal(got->route_rule, "long");
    assert_string_equal(got->tenant, "acme");
    assert_true(got->cost_unknown);
    assert_true(got->fallback_used);
    aq_result_free(got);

    /* Garbage is not a Result. */
    got = NULL;
    assert_int_equal(aq_result_unpack("\xff\xff\xff", 3, &got, &err), AQ_TASK_DECODE);
    assert_null(got);
    aq_result_free(NULL);

    /* A Result without usage or error round-trips with both absent. */
    r.usage = NULL;
    r.error = NULL;
    r.status = AGENTQ__V1__STATUS__STATUS_COMPLETED;
    assert_int_equal(aq_result_pack(&r, &b, &err), AQ_OK);
    assert_int_equal(aq_result_unpack(b.data, b.len, &got, &err), AQ_OK);
    assert_null(got->usage);
    assert_null(got->error);
    assert_int_equal(got->status, AGENTQ__V1__STATUS__STATUS_COMPLETED);
    aq_result_free(got);
    aq_buf_free(&b);
}

static void test_result_status_name(void **state)
{
    (void)state;
    assert_string_equal(aq_result_status_name(AGENTQ__V1__STATUS__STATUS_COMPLETED),
                        "STATUS_COMPLETED");
    assert_string_equal(aq_result_status_name(AGENTQ__V1__STATUS__STATUS_FAILED),
                        "STATUS_FAILED");
    assert_string_equal(aq_result_status_name(AGENTQ__V1__STATUS__STATUS_UNSPECIFIED),
                        "STATUS_UNSPECIFIED");
    assert_string_equal(aq_result_status_name((Agentq__V1__Status)99), "STATUS_UNSPECIFIED");
}

static void test_limits_default(void **state)
{
    (void)state;
    aq_task_limits lim;
    aq_task_limits_default(&lim);
    assert_int_equal(lim.max_payload_bytes, 4u << 20);
    assert_int_equal(lim.max_prompt_bytes, 1u << 20);
    assert_int_equal(lim.max_tokens_cap, 64000);
    assert_int_equal(lim.max_stop_sequences, 16);
    assert_int_equal(lim.max_metadata, 64);
    assert_true(lim.max_messages > 0);
    assert_true(lim.max_field_bytes > 0);
}

/* ---- content blocks, tools (agent runs) ---- */

/* A conversation with tool use on top of tfix: a user turn with text and an
 * image, an assistant turn with text and two tool_use blocks, a user turn
 * answering both and adding a document; two tools. Every piece is reachable
 * so a test can break exactly one rule. */
typedef struct afix {
    tfix f;
    Agentq__V1__Message m[3];
    Agentq__V1__Message *mp[4];
    Agentq__V1__ContentBlock b[12];
    Agentq__V1__ContentBlock *m0[2], *m1[3], *m2[3], *rc0[1], *rc1[1];
    Agentq__V1__TextBlock tb[5];
    Agentq__V1__ImageBlock ib;
    Agentq__V1__DocumentBlock db;
    Agentq__V1__MediaSource src[2];
    Agentq__V1__ToolUseBlock ub[2];
    Agentq__V1__ToolResultBlock rb[2];
    Agentq__V1__Tool tools[3];
    Agentq__V1__Tool *tp[3];
    Agentq__V1__ToolChoice tc;
} afix;

static const uint8_t PNG[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0};

static void set_text(Agentq__V1__ContentBlock *b, Agentq__V1__TextBlock *tb, const char *text)
{
    agentq__v1__content_block__init(b);
    agentq__v1__text_block__init(tb);
    tb->text = (char *)text;
    b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    b->text = tb;
}

static void afix_init(afix *a)
{
    memset(a, 0, sizeof(*a));
    fix_init(&a->f, false);
    Agentq__V1__Task *t = &a->f.task;
    t->prompt = "";
    for (int i = 0; i < 3; i++) {
        agentq__v1__message__init(&a->m[i]);
        a->mp[i] = &a->m[i];
    }
    /* messages[0]: user, text + image */
    a->m[0].role = "user";
    set_text(&a->b[0], &a->tb[0], "What is the weather in Paris? Here is the sky.");
    agentq__v1__content_block__init(&a->b[1]);
    agentq__v1__image_block__init(&a->ib);
    agentq__v1__media_source__init(&a->src[0]);
    a->src[0].media_type = "image/png";
    a->src[0].data.data = (uint8_t *)PNG;
    a->src[0].data.len = sizeof(PNG);
    a->ib.source = &a->src[0];
    a->b[1].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_IMAGE;
    a->b[1].image = &a->ib;
    a->m0[0] = &a->b[0];
    a->m0[1] = &a->b[1];
    a->m[0].n_blocks = 2;
    a->m[0].blocks = a->m0;
    /* messages[1]: assistant, text + two tool_use */
    a->m[1].role = "assistant";
    set_text(&a->b[2], &a->tb[1], "Let me check.");
    static const char *const ids[] = {"toolu_1", "toolu_2"};
    static const char *const names[] = {"get_weather", "get_time"};
    static const char *const inputs[] = {"{\"city\":\"Paris\"}", "{\"tz\": \"Europe/Paris\"}"};
    for (int k = 0; k < 2; k++) {
        Agentq__V1__ContentBlock *b = &a->b[3 + k];
        agentq__v1__content_block__init(b);
        agentq__v1__tool_use_block__init(&a->ub[k]);
        a->ub[k].id = (char *)ids[k];
        a->ub[k].name = (char *)names[k];
        a->ub[k].input_json = (char *)inputs[k];
        b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
        b->tool_use = &a->ub[k];
    }
    a->m1[0] = &a->b[2];
    a->m1[1] = &a->b[3];
    a->m1[2] = &a->b[4];
    a->m[1].n_blocks = 3;
    a->m[1].blocks = a->m1;
    /* messages[2]: user, two tool_result + a document */
    a->m[2].role = "user";
    set_text(&a->b[5], &a->tb[2], "18C, clear");
    set_text(&a->b[6], &a->tb[3], "14:00");
    a->rc0[0] = &a->b[5];
    a->rc1[0] = &a->b[6];
    for (int k = 0; k < 2; k++) {
        Agentq__V1__ContentBlock *b = &a->b[7 + k];
        agentq__v1__content_block__init(b);
        agentq__v1__tool_result_block__init(&a->rb[k]);
        a->rb[k].tool_use_id = (char *)ids[k];
        a->rb[k].n_content = 1;
        a->rb[k].content = k == 0 ? a->rc0 : a->rc1;
        b->block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT;
        b->tool_result = &a->rb[k];
    }
    agentq__v1__content_block__init(&a->b[9]);
    agentq__v1__document_block__init(&a->db);
    agentq__v1__media_source__init(&a->src[1]);
    a->src[1].url = "https://example.com/report.pdf";
    a->db.source = &a->src[1];
    a->db.title = "Report";
    a->b[9].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_DOCUMENT;
    a->b[9].document = &a->db;
    a->m2[0] = &a->b[7];
    a->m2[1] = &a->b[8];
    a->m2[2] = &a->b[9];
    a->m[2].n_blocks = 3;
    a->m[2].blocks = a->m2;
    t->n_messages = 3;
    t->messages = a->mp;
    /* tools */
    for (int k = 0; k < 3; k++) {
        agentq__v1__tool__init(&a->tools[k]);
        a->tp[k] = &a->tools[k];
    }
    a->tools[0].name = "get_weather";
    a->tools[0].description = "Current weather of a city";
    a->tools[0].input_schema_json =
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}";
    a->tools[1].name = "get_time";
    a->tools[1].input_schema_json = "{\"type\": \"object\"}";
    a->tools[2].name = "spare-tool_3";
    a->tools[2].input_schema_json = "{\"type\":\"object\",\"properties\":{}}";
    t->n_tools = 3;
    t->tools = a->tp;
    agentq__v1__tool_choice__init(&a->tc);
}

static void expect_ok(afix *a)
{
    aq_err err;
    aq_err_clear(&err);
    aq_status st = aq_task_validate(&a->f.task, &a->f.lim, &err);
    if (st != AQ_OK)
        fail_msg("validate failed: %s", err.msg);
}

static void test_blocks_valid(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    expect_ok(&a);
    /* tool_result content may be empty; is_error is free; text may follow */
    a.rb[1].n_content = 0;
    a.rb[1].is_error = true;
    expect_ok(&a);
    /* a document with data: PDF, or text/plain (UTF-8) */
    a.src[1].url = "";
    a.src[1].media_type = "text/plain";
    a.src[1].data.data = (uint8_t *)"plain \xc3\xa9";
    a.src[1].data.len = 8;
    expect_ok(&a);
    a.src[1].media_type = "application/pdf";
    a.src[1].data.data = (uint8_t *)"%PDF\xff";
    a.src[1].data.len = 5;
    expect_ok(&a);
    /* an image by URL; every allowed image type */
    static const char *const types[] = {"image/jpeg", "image/png", "image/gif", "image/webp"};
    for (size_t i = 0; i < 4; i++) {
        a.src[0].media_type = (char *)types[i];
        expect_ok(&a);
    }
    a.src[0].data.len = 0;
    a.src[0].media_type = "";
    a.src[0].url = "http://example.com/sky.png";
    expect_ok(&a);
    /* a conversation that ends with the tool results (an agent run's shape) */
    a.f.task.n_messages = 3;
    a.m[2].n_blocks = 2;
    expect_ok(&a);
}

static void test_blocks_message_shape(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    a.m[0].content = "both";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[0]: set content or blocks, not both");
    afix_init(&a);
    a.m[0].n_blocks = 0;
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[0].content is empty");
    afix_init(&a);
    agentq__v1__content_block__init(&a.b[0]); /* no kind set */
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[0].blocks[0] is empty");
    afix_init(&a);
    a.tb[0].text = "";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[0].blocks[0].text.text is empty");
    afix_init(&a);
    a.tb[1].text = "bad \xff";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[0].text.text is not valid UTF-8");
    afix_init(&a);
    a.tb[3].text = "bad \xc3";
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[2].blocks[1].tool_result.content[0].text.text is not valid UTF-8");
    afix_init(&a);
    a.f.lim.max_blocks = 9; /* the fixture has 10, nested ones included */
    expect_invalid(&a.f, AQ_TASK_INVALID, "more than 9 content blocks");
    a.f.lim.max_blocks = 10;
    expect_ok(&a);
}

static void test_blocks_roles(void **state)
{
    (void)state;
    afix a;
    /* tool_use in a user turn */
    afix_init(&a);
    a.m0[1] = &a.b[3];
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[0].blocks[1].tool_use is only allowed in assistant messages");
    /* tool_result in an assistant turn */
    afix_init(&a);
    a.m1[0] = &a.b[7];
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[1].blocks[0].tool_result is only allowed in user messages");
    /* images and documents: user turns only */
    afix_init(&a);
    a.m1[0] = &a.b[1];
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[0].image is only allowed in user");
    afix_init(&a);
    a.m1[0] = &a.b[9];
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[0].document is only allowed");
    /* tool_result content: text, image or document only (bounds the nesting) */
    afix_init(&a);
    a.rc0[0] = &a.b[8];
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[2].blocks[0].tool_result.content[0] must be a text, image or document");
    afix_init(&a);
    a.rc0[0] = &a.b[3];
    expect_invalid(&a.f, AQ_TASK_INVALID, "must be a text, image or document");
    /* an image inside a tool_result is fine */
    afix_init(&a);
    a.rc0[0] = &a.b[1];
    expect_ok(&a);
}

static void test_blocks_tool_pairing(void **state)
{
    (void)state;
    afix a;
    /* a tool_result after another block */
    afix_init(&a);
    a.m2[0] = &a.b[9];
    a.m2[1] = &a.b[7];
    a.m2[2] = &a.b[8];
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[2].blocks[1].tool_result must come before any other block");
    /* an answer to an id the previous message does not have */
    afix_init(&a);
    a.rb[1].tool_use_id = "toolu_9";
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[2].blocks[1].tool_result.tool_use_id \"toolu_9\" answers no tool_use "
                   "of messages[1]");
    /* every tool_use answered: drop the second result */
    afix_init(&a);
    a.m2[1] = &a.b[9];
    a.m[2].n_blocks = 2;
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[1].blocks[2].tool_use \"toolu_2\" is not answered");
    /* the conversation may not end on unanswered tool_use */
    afix_init(&a);
    a.f.task.n_messages = 2;
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[1].tool_use \"toolu_1\" is not answered");
    /* the same id answered twice */
    afix_init(&a);
    a.rb[1].tool_use_id = "toolu_1";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tool_use_id \"toolu_1\" repeats blocks[0]");
    /* two tool_use with one id */
    afix_init(&a);
    a.ub[1].id = "toolu_1";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[2].tool_use.id \"toolu_1\" repeats");
    /* a tool_result in the first message answers nothing */
    afix_init(&a);
    a.m0[0] = &a.b[7];
    expect_invalid(&a.f, AQ_TASK_INVALID, "answers no tool_use: it is in the first message");
    /* a tool_result whose previous message is a user message */
    afix_init(&a);
    a.m[1].role = "user";
    a.m1[1] = &a.b[0];
    a.m1[2] = &a.b[0];
    expect_invalid(&a.f, AQ_TASK_INVALID, "answers no tool_use of messages[1]");
    /* tool blocks need tools (the API's rule) */
    afix_init(&a);
    a.f.task.n_tools = 0;
    expect_invalid(&a.f, AQ_TASK_INVALID, "defines no tools");
}

static void test_blocks_tool_use_fields(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    a.ub[0].id = "";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[1].tool_use.id must be");
    a.ub[0].id = "toolu 1";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[1].tool_use.id must be");
    afix_init(&a);
    a.ub[1].name = "get.time";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[2].tool_use.name must match");
    afix_init(&a);
    a.ub[0].input_json = "[1,2]";
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[1].blocks[1].tool_use.input_json is not a JSON object");
    a.ub[0].input_json = "{\"city\":";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[1].blocks[1].tool_use.input_json is not JSON");
    a.ub[0].input_json = "";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tool_use.input_json is not JSON");
    a.ub[0].input_json = "{\"a\":1,\"a\":2}";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tool_use.input_json is not JSON");
    afix_init(&a);
    a.rb[0].tool_use_id = "";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[2].blocks[0].tool_result.tool_use_id must be");
}

static void test_blocks_media(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    a.ib.source = NULL;
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[0].blocks[1].image.source is missing");
    afix_init(&a);
    a.src[0].url = "https://example.com/x.png";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[0].blocks[1].image.source: set data or url, not both");
    afix_init(&a);
    a.src[0].data.len = 0;
    expect_invalid(&a.f, AQ_TASK_INVALID, "image.source has neither data nor url");
    afix_init(&a);
    a.src[0].media_type = "";
    expect_invalid(&a.f, AQ_TASK_INVALID, "image.source.media_type is required with data");
    a.src[0].media_type = "image/bmp";
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "messages[0].blocks[1].image.source.media_type \"image/bmp\" is not image/jpeg");
    a.src[0].media_type = "application/pdf"; /* a document type on an image */
    expect_invalid(&a.f, AQ_TASK_INVALID, "is not image/jpeg, image/png, image/gif or image/webp");
    afix_init(&a);
    a.src[1].url = "ftp://example.com/r.pdf";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[2].blocks[2].document.source.url must be");
    a.src[1].url = "https://example.com/a b.pdf";
    expect_invalid(&a.f, AQ_TASK_INVALID, "document.source.url must be");
    a.src[1].url = "https://";
    expect_invalid(&a.f, AQ_TASK_INVALID, "document.source.url must be");
    afix_init(&a);
    a.src[1].url = "";
    a.src[1].media_type = "image/png"; /* an image type on a document */
    a.src[1].data.data = (uint8_t *)"x";
    a.src[1].data.len = 1;
    expect_invalid(&a.f, AQ_TASK_INVALID, "is not application/pdf or text/plain");
    a.src[1].media_type = "text/plain";
    a.src[1].data.data = (uint8_t *)"\xff";
    expect_invalid(&a.f, AQ_TASK_INVALID, "document.source.data is text/plain but not valid UTF-8");
    afix_init(&a);
    a.db.title = "bad \xff";
    expect_invalid(&a.f, AQ_TASK_INVALID, "messages[2].blocks[2].document.title is not valid UTF-8");
}

static void test_blocks_count_against_caps(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    /* media: the image's bytes against max_media_bytes */
    a.f.lim.max_media_bytes = sizeof(PNG);
    expect_ok(&a);
    a.f.lim.max_media_bytes = sizeof(PNG) - 1;
    expect_invalid(&a.f, AQ_PROMPT_TOO_LARGE, "media is 10 bytes");
    /* prompt bytes: everything a publisher sends as text */
    afix_init(&a);
    size_t total = strlen(a.f.task.system);
    for (int i = 0; i < 4; i++)
        total += strlen(a.tb[i].text);
    for (int k = 0; k < 2; k++)
        total += strlen(a.ub[k].name) + strlen(a.ub[k].input_json);
    total += strlen(a.db.title);
    for (int k = 0; k < 3; k++)
        total += strlen(a.tools[k].name) + strlen(a.tools[k].description) +
                 strlen(a.tools[k].input_schema_json);
    a.f.lim.max_prompt_bytes = total;
    expect_ok(&a);
    a.f.lim.max_prompt_bytes = total - 1;
    expect_invalid(&a.f, AQ_PROMPT_TOO_LARGE, "over the cap");
}

static void test_tools_rules(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    a.tools[2].name = "bad name";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[2].name must match ^[a-zA-Z0-9_-]{1,64}$");
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    a.tools[2].name = long_name;
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[2].name must match");
    long_name[64] = '\0';
    expect_ok(&a);
    a.tools[2].name = "";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[2].name must match");
    a.tools[2].name = "get_weather";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[2].name \"get_weather\" repeats tools[0]");
    afix_init(&a);
    a.f.lim.max_tools = 2;
    expect_invalid(&a.f, AQ_TASK_INVALID, "3 tools, over the cap of 2");
    afix_init(&a);
    a.tools[1].input_schema_json = "";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[1].input_schema_json is empty");
    a.tools[1].input_schema_json = "{\"type\":";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[1].input_schema_json is not JSON");
    a.tools[1].input_schema_json = "\"object\"";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[1].input_schema_json is not a JSON object");
    a.tools[1].input_schema_json = "{\"type\":\"string\"}";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[1].input_schema_json must have \"type\": \"object\"");
    a.tools[1].input_schema_json = "{\"properties\":{}}";
    expect_invalid(&a.f, AQ_TASK_INVALID, "must have \"type\": \"object\"");
    afix_init(&a);
    a.f.lim.max_tool_schema_bytes = strlen(a.tools[0].input_schema_json) - 1;
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[0].input_schema_json is");
    afix_init(&a);
    a.tools[0].description = "bad \xff";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tools[0].description is not valid UTF-8");
    /* tools without any tool blocks in the messages: a plain prompt */
    afix_init(&a);
    tfix f;
    fix_init(&f, false);
    f.task.n_tools = 1;
    f.task.tools = a.tp;
    aq_err err;
    assert_int_equal(aq_task_validate(&f.task, &f.lim, &err), AQ_OK);
}

/* The hook internal/tool's JSON Schema validator plugs into. */
static int schema_checks;
static aq_status refuse_minimum(const char *schema, aq_err *err)
{
    schema_checks++;
    if (strstr(schema, "minimum"))
        return aq_err_set(err, AQ_TASK_INVALID, "/properties/n/minimum must be a number");
    return AQ_OK;
}

static void test_tools_schema_hook(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    a.f.lim.check_tool_schema = refuse_minimum;
    schema_checks = 0;
    expect_ok(&a);
    assert_int_equal(schema_checks, 3);
    a.tools[1].input_schema_json = "{\"type\":\"object\",\"properties\":{\"n\":{\"minimum\":\"x\"}}}";
    expect_invalid(&a.f, AQ_TASK_INVALID,
                   "tools[1].input_schema_json: /properties/n/minimum must be a number");
}

static void test_tool_choice_rules(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    a.f.task.tool_choice = &a.tc;
    expect_ok(&a); /* auto */
    a.tc.disable_parallel_tool_use = true;
    expect_ok(&a);
    a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY;
    expect_ok(&a);
    a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE;
    expect_ok(&a);
    a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL;
    expect_invalid(&a.f, AQ_TASK_INVALID, "tool_choice.name is required with type tool");
    a.tc.name = "get_time";
    expect_ok(&a);
    a.tc.name = "no_such_tool";
    expect_invalid(&a.f, AQ_TASK_INVALID, "tool_choice.name must be one of the task's tools");
    a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY;
    expect_invalid(&a.f, AQ_TASK_INVALID, "tool_choice.name is only for type tool (type is any)");
    a.tc.name = "";
    a.tc.type = (Agentq__V1__ToolChoiceType)7;
    expect_invalid(&a.f, AQ_TASK_INVALID, "tool_choice.type 7 is unknown");
    /* any / tool need tools */
    tfix f;
    fix_init(&f, false);
    f.task.tool_choice = &a.tc;
    a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_ANY;
    expect_invalid(&f, AQ_TASK_INVALID, "tool_choice.type any needs tools: the task has none");
    a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL;
    a.tc.name = "x";
    expect_invalid(&f, AQ_TASK_INVALID, "tool_choice.type tool needs tools");
}

static void test_agent_run_fields(void **state)
{
    (void)state;
    tfix f;
    fix_init(&f, false);
    aq_err err;
    f.task.ceiling_action = AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FINAL;
    f.task.session_id = "sess-1_a=b.c";
    f.task.max_steps = f.lim.max_steps_cap;
    f.task.max_tool_calls = f.lim.max_tool_calls_cap;
    assert_int_equal(aq_task_validate(&f.task, &f.lim, &err), AQ_OK);
    f.task.ceiling_action = (Agentq__V1__CeilingAction)3;
    expect_invalid(&f, AQ_TASK_INVALID, "ceiling_action 3 is unknown");
    f.task.ceiling_action = AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FAIL;
    f.task.session_id = "a..b";
    expect_invalid(&f, AQ_TASK_INVALID, "session_id must be 1-128 characters");
    f.task.session_id = "has space";
    expect_invalid(&f, AQ_TASK_INVALID, "session_id must be");
    f.task.session_id = "";
    f.task.max_steps = f.lim.max_steps_cap + 1;
    expect_invalid(&f, AQ_TASK_INVALID, "max_steps 101 is over the cap of 100");
    f.task.max_steps = 0;
    f.task.max_tool_calls = f.lim.max_tool_calls_cap + 1;
    expect_invalid(&f, AQ_TASK_INVALID, "max_tool_calls 1001 is over the cap of 1000");
}

static void test_enum_names(void **state)
{
    (void)state;
    Agentq__V1__ToolChoiceType tc;
    Agentq__V1__CeilingAction ca;
    assert_string_equal(aq_task_tool_choice_name(AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_UNSPECIFIED), "auto");
    assert_string_equal(aq_task_tool_choice_name((Agentq__V1__ToolChoiceType)9), "unknown");
    assert_true(aq_task_tool_choice_parse("tool", &tc));
    assert_int_equal(tc, AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL);
    assert_true(aq_task_tool_choice_parse("TOOL_CHOICE_TYPE_NONE", &tc));
    assert_int_equal(tc, AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_NONE);
    assert_false(aq_task_tool_choice_parse("required", &tc));
    assert_string_equal(aq_task_ceiling_action_name(AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FINAL), "final");
    assert_true(aq_task_ceiling_action_parse("CEILING_ACTION_FAIL", &ca));
    assert_int_equal(ca, AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FAIL);
    assert_false(aq_task_ceiling_action_parse("stop", &ca));
    assert_true(aq_task_tool_name_valid("a-Z_0"));
    assert_false(aq_task_tool_name_valid("a=b"));
    assert_false(aq_task_tool_name_valid(NULL));
}

/* The wire round trip of a conversation with every block kind. */
static void test_blocks_round_trip(void **state)
{
    (void)state;
    afix a;
    afix_init(&a);
    a.f.task.tool_choice = &a.tc;
    a.tc.type = AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL;
    a.tc.name = "get_time";
    aq_buf b;
    aq_err err;
    aq_buf_init(&b, 1 << 20);
    assert_int_equal(aq_task_pack(&a.f.task, &b, &err), AQ_OK);
    Agentq__V1__Task *t = NULL;
    assert_int_equal(aq_task_unpack(b.data, b.len, &a.f.lim, &t, &err), AQ_OK);
    assert_int_equal(aq_task_validate(t, &a.f.lim, &err), AQ_OK);
    assert_int_equal(t->messages[0]->blocks[1]->image->source->data.len, sizeof(PNG));
    assert_memory_equal(t->messages[0]->blocks[1]->image->source->data.data, PNG, sizeof(PNG));
    assert_string_equal(t->messages[2]->blocks[1]->tool_result->content[0]->text->text, "14:00");
    assert_string_equal(t->tool_choice->name, "get_time");
    aq_task_free(t);
    aq_buf_free(&b);
}

/* ContentBlock nests through tool_result.content: protobuf-c unpacks that
 * recursively without a limit (100,000 levels, under 1 MB, overflow an 8 MB
 * stack). The wire walk finds the depth without recursing past its bound. */
static size_t put_varint(uint8_t *p, size_t v)
{
    size_t h = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        p[h++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return h;
}

/* buf[0..len) becomes one length-delimited field with key `key`. */
static size_t wrap(uint8_t *buf, size_t len, size_t key, uint8_t *tmp)
{
    size_t h = put_varint(tmp, key);
    h += put_varint(tmp + h, len);
    memmove(buf + h, buf, len);
    memcpy(buf, tmp, h);
    return len + h;
}

static void test_nesting_depth(void **state)
{
    (void)state;
    const size_t levels = 2000;
    uint8_t *buf = malloc(1 << 20), tmp[16];
    assert_non_null(buf);
    size_t len = 0;
    /* Inside out: ContentBlock{tool_result(5): ToolResultBlock{content(2): ...}} */
    for (size_t i = 0; i < levels; i++) {
        len = wrap(buf, len, 2 << 3 | 2, tmp);
        len = wrap(buf, len, 5 << 3 | 2, tmp);
    }
    /* As a Result's content: refused by aq_result_unpack, no crash. */
    size_t rlen = len;
    uint8_t *rbuf = malloc(rlen + 16);
    assert_non_null(rbuf);
    memcpy(rbuf, buf, rlen);
    rlen = wrap(rbuf, rlen, 22 << 3 | 2, tmp); /* Result.content */
    Agentq__V1__Result *res = NULL;
    aq_err rerr;
    assert_int_equal(aq_result_unpack(rbuf, rlen, &res, &rerr), AQ_TASK_DECODE);
    assert_non_null(strstr(rerr.msg, "nested deeper than the limit"));
    assert_null(res);
    free(rbuf);
    len = wrap(buf, len, 3 << 3 | 2, tmp);  /* Message.blocks */
    len = wrap(buf, len, 7 << 3 | 2, tmp);  /* Task.messages */
    aq_task_limits lim;
    aq_task_limits_default(&lim);
    Agentq__V1__Task *t = NULL;
    assert_int_equal(aq_task_unpack(buf, len, &lim, &t, &rerr), AQ_TASK_DECODE);
    assert_non_null(strstr(rerr.msg, "nested deeper than the limit"));
    assert_null(t);
    free(buf);

    /* Every real task is far from the bound: the fixture's conversation. */
    afix a;
    afix_init(&a);
    aq_buf b;
    aq_err err;
    aq_buf_init(&b, 1 << 20);
    assert_int_equal(aq_task_pack(&a.f.task, &b, &err), AQ_OK);
    assert_int_equal(aq_task_unpack(b.data, b.len, &lim, &t, &err), AQ_OK);
    aq_task_free(t);
    aq_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_valid_table),
        cmocka_unit_test(test_type_valid_table),
        cmocka_unit_test(test_utf8_table),
        cmocka_unit_test(test_unpack_empty_and_garbage),
        cmocka_unit_test(test_unpack_truncated),
        cmocka_unit_test(test_unpack_size_cap),
        cmocka_unit_test(test_validate_ok),
        cmocka_unit_test(test_validate_id_and_type),
        cmocka_unit_test(test_validate_prompt_and_messages),
        cmocka_unit_test(test_validate_prompt_cap),
        cmocka_unit_test(test_validate_max_tokens_temperature),
        cmocka_unit_test(test_validate_stop_sequences),
        cmocka_unit_test(test_validate_metadata_caps),
        cmocka_unit_test(test_validate_utf8_every_field),
        cmocka_unit_test(test_validate_cache_policy),
        cmocka_unit_test(test_validate_timestamps),
        cmocka_unit_test(test_unpack_then_validate),
        cmocka_unit_test(test_task_round_trip),
        cmocka_unit_test(test_temperature_zero_is_present),
        cmocka_unit_test(test_pack_over_buffer_cap),
        cmocka_unit_test(test_result_round_trip),
        cmocka_unit_test(test_result_status_name),
        cmocka_unit_test(test_limits_default),
        cmocka_unit_test(test_blocks_valid),
        cmocka_unit_test(test_blocks_message_shape),
        cmocka_unit_test(test_blocks_roles),
        cmocka_unit_test(test_blocks_tool_pairing),
        cmocka_unit_test(test_blocks_tool_use_fields),
        cmocka_unit_test(test_blocks_media),
        cmocka_unit_test(test_blocks_count_against_caps),
        cmocka_unit_test(test_tools_rules),
        cmocka_unit_test(test_tools_schema_hook),
        cmocka_unit_test(test_tool_choice_rules),
        cmocka_unit_test(test_agent_run_fields),
        cmocka_unit_test(test_enum_names),
        cmocka_unit_test(test_blocks_round_trip),
        cmocka_unit_test(test_nesting_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
