#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "task/task_json.h"

#define NOW_MS 1700000000000LL

static const char *const FULL_TASK =
    "{\"id\": \"job-42.a\", \"type\": \"summarize\", \"tenant\": \"acme\","
    " \"model\": \"claude-sonnet-4-5\", \"system\": \"Be brief.\","
    " \"messages\": [{\"role\": \"user\", \"content\": \"Hi \\u00e9\"},"
    "                {\"role\": \"assistant\", \"content\": \"Hello\"},"
    "                {\"role\": \"user\", \"content\": \"Summarize\"}],"
    " \"max_tokens\": 700, \"temperature\": 0.5,"
    " \"stop_sequences\": [\"END\", \"###\"],"
    " \"metadata\": {\"source\": \"test\", \"trace\": \"t-1\"},"
    " \"deadline_unix_ms\": 1900000000000, \"created_unix_ms\": 1600000000000,"
    " \"cache_policy\": \"refresh\", \"allow_fallback\": true}";

typedef struct jfix {
    aq_task_limits lim;
    aq_buf out;
    aq_task_ref ref;
    aq_err err;
} jfix;

static int setup(void **state)
{
    jfix *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    aq_task_limits_default(&f->lim);
    aq_buf_init(&f->out, 8u << 20);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    jfix *f = *state;
    aq_buf_free(&f->out);
    free(f);
    return 0;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!j)
        fail_msg("test JSON does not parse: %s: %s", jerr.text, text);
    return j;
}

static aq_status pack_text(jfix *f, const char *text)
{
    json_t *j = parse(text);
    aq_err_clear(&f->err);
    aq_status st = aq_task_json_pack(j, &f->lim, NOW_MS, &f->out, &f->ref, &f->err);
    json_decref(j);
    return st;
}

static Agentq__V1__Task *unpack_out(jfix *f)
{
    Agentq__V1__Task *t = NULL;
    aq_err err;
    assert_int_equal(aq_task_unpack(f->out.data, f->out.len, &f->lim, &t, &err), AQ_OK);
    assert_int_equal(aq_task_validate(t, &f->lim, &err), AQ_OK);
    return t;
}

static void expect_error(jfix *f, const char *text, aq_status want, const char *needle)
{
    aq_status st = pack_text(f, text);
    if (st != want)
        fail_msg("%s: got %s (%s), want %s", text, aq_status_class(st), f->err.msg,
                 aq_status_class(want));
    assert_int_equal(f->err.status, want);
    if (needle && !strstr(f->err.msg, needle))
        fail_msg("%s: error '%s' does not mention '%s'", text, f->err.msg, needle);
}

static void test_pack_every_field(void **state)
{
    jfix *f = *state;
    assert_int_equal(pack_text(f, FULL_TASK), AQ_OK);
    assert_string_equal(f->ref.id, "job-42.a");
    assert_string_equal(f->ref.type, "summarize");
    Agentq__V1__Task *t = unpack_out(f);
    assert_string_equal(t->id, "job-42.a");
    assert_string_equal(t->type, "summarize");
    assert_string_equal(t->tenant, "acme");
    assert_string_equal(t->model, "claude-sonnet-4-5");
    assert_string_equal(t->system, "Be brief.");
    assert_string_equal(t->prompt, "");
    assert_int_equal(t->n_messages, 3);
    assert_string_equal(t->messages[0]->role, "user");
    assert_string_equal(t->messages[0]->content, "Hi \xc3\xa9");
    assert_string_equal(t->messages[1]->role, "assistant");
    assert_string_equal(t->messages[1]->content, "Hello");
    assert_string_equal(t->messages[2]->content, "Summarize");
    assert_int_equal(t->max_tokens, 700);
    assert_int_equal(t->temperature_presence_case,
                     AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE);
    assert_true(t->temperature == 0.5f);
    assert_int_equal(t->n_stop_sequences, 2);
    assert_string_equal(t->stop_sequences[0], "END");
    assert_string_equal(t->stop_sequences[1], "###");
    assert_int_equal(t->n_metadata, 2);
    /* Map order is not part of the contract: look both up. */
    int seen = 0;
    for (size_t i = 0; i < t->n_metadata; i++) {
        if (strcmp(t->metadata[i]->key, "source") == 0) {
            assert_string_equal(t->metadata[i]->value, "test");
            seen |= 1;
        } else if (strcmp(t->metadata[i]->key, "trace") == 0) {
            assert_string_equal(t->metadata[i]->value, "t-1");
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    assert_int_equal(t->deadline_unix_ms, 1900000000000LL);
    assert_int_equal(t->created_unix_ms, 1600000000000LL);
    assert_int_equal(t->cache_policy, AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH);
    assert_true(t->allow_fallback);
    aq_task_free(t);
}

static void test_pack_minimal_prompt_defaults(void **state)
{
    jfix *f = *state;
    assert_int_equal(pack_text(f, "{\"id\":\"t1\",\"type\":\"chat\",\"prompt\":\"hello\"}"), AQ_OK);
    Agentq__V1__Task *t = unpack_out(f);
    assert_string_equal(t->prompt, "hello");
    assert_int_equal(t->n_messages, 0);
    assert_int_equal(t->max_tokens, 0);
    assert_int_equal(t->temperature_presence_case,
                     AGENTQ__V1__TASK__TEMPERATURE_PRESENCE__NOT_SET);
    assert_int_equal(t->deadline_unix_ms, 0);
    /* created_unix_ms defaults to now. */
    assert_int_equal(t->created_unix_ms, NOW_MS);
    assert_int_equal(t->cache_policy, AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED);
    assert_false(t->allow_fallback);
    aq_task_free(t);

    /* null temperature means "not set"; empty arrays and objects are fine. */
    assert_int_equal(pack_text(f, "{\"id\":\"t2\",\"type\":\"chat\",\"prompt\":\"x\","
                                  "\"temperature\":null,\"stop_sequences\":[],\"metadata\":{},"
                                  "\"messages\":[]}"),
                     AQ_OK);
    t = unpack_out(f);
    assert_int_equal(t->temperature_presence_case,
                     AGENTQ__V1__TASK__TEMPERATURE_PRESENCE__NOT_SET);
    assert_int_equal(t->n_stop_sequences, 0);
    assert_int_equal(t->n_metadata, 0);
    aq_task_free(t);

    /* An integer temperature is a number too; 0 is "set to zero". */
    assert_int_equal(pack_text(f, "{\"id\":\"t3\",\"type\":\"chat\",\"prompt\":\"x\","
                                  "\"temperature\":0}"),
                     AQ_OK);
    t = unpack_out(f);
    assert_int_equal(t->temperature_presence_case,
                     AGENTQ__V1__TASK__TEMPERATURE_PRESENCE_TEMPERATURE);
    assert_true(t->temperature == 0.0f);
    aq_task_free(t);
}

static void test_unknown_fields(void **state)
{
    jfix *f = *state;
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"priority\":1}",
                 AQ_TASK_INVALID, "unknown field \"priority\"");
    /* Field names are exact (the .proto names). */
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"maxTokens\":5}",
                 AQ_TASK_INVALID, "maxTokens");
    expect_error(f, "{\"ID\":\"t1\",\"type\":\"c\",\"prompt\":\"p\"}", AQ_TASK_INVALID,
                 "\"ID\"");
    /* In a nested message. */
    expect_error(f,
                 "{\"id\":\"t1\",\"type\":\"c\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"x\",\"name\":\"bob\"}]}",
                 AQ_TASK_INVALID, "messages[0]: unknown field \"name\"");
}

static void test_wrong_types(void **state)
{
    jfix *f = *state;
    static const struct {
        const char *field, *value, *needle;
    } cases[] = {
        {"id", "5", "id must be a string"},
        {"type", "true", "type must be a string"},
        {"tenant", "[]", "tenant must be a string"},
        {"model", "{}", "model must be a string"},
        {"system", "1.5", "system must be a string"},
        {"prompt", "null", "prompt must be a string"},
        {"messages", "\"hi\"", "messages must be an array"},
        {"messages", "{}", "messages must be an array"},
        {"messages", "[\"hi\"]", "messages[0] must be an object"},
        {"messages", "[{\"role\":1,\"content\":\"x\"}]", "role must be a string"},
        {"messages", "[{\"role\":\"user\",\"content\":null}]", "content must be a string"},
        {"max_tokens", "\"100\"", "max_tokens must be an integer"},
        {"max_tokens", "1.5", "max_tokens must be an integer"},
        {"max_tokens", "-1", "max_tokens must be an integer"},
        {"max_tokens", "4294967296", "max_tokens must be an integer"},
        {"temperature", "\"hot\"", "temperature must be a number"},
        {"temperature", "true", "temperature must be a number"},
        {"stop_sequences", "\"END\"", "stop_sequences must be an array"},
        {"stop_sequences", "[1]", "stop_sequences[] must be a string"},
        {"stop_sequences", "[\"a\",null]", "stop_sequences[] must be a string"},
        {"metadata", "[]", "metadata must be an object"},
        {"metadata", "{\"k\":1}", "metadata values must be a string"},
        {"metadata", "{\"k\":{\"x\":\"y\"}}", "metadata values must be a string"},
        {"deadline_unix_ms", "\"soon\"", "deadline_unix_ms must be an integer"},
        {"deadline_unix_ms", "-1", "deadline_unix_ms must be an integer"},
        {"deadline_unix_ms", "1.0", "deadline_unix_ms must be an integer"},
        {"created_unix_ms", "-1", "created_unix_ms must be an integer"},
        {"created_unix_ms", "false", "created_unix_ms must be an integer"},
        {"cache_policy", "1", "cache_policy must be"},
        {"cache_policy", "\"always\"", "cache_policy must be"},
        {"cache_policy", "\"OPT-IN\"", "cache_policy must be"},
        {"cache_policy", "null", "cache_policy must be"},
        {"allow_fallback", "1", "allow_fallback must be true or false"},
        {"allow_fallback", "\"yes\"", "allow_fallback must be true or false"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        /* The field under test replaces the one it shadows (JSON keeps the last). */
        snprintf(text, sizeof(text), "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"%s\":%s}",
                 cases[i].field, cases[i].value);
        if (strcmp(cases[i].field, "messages") == 0)
            snprintf(text, sizeof(text), "{\"id\":\"t1\",\"type\":\"c\",\"%s\":%s}",
                     cases[i].field, cases[i].value);
        expect_error(f, text, AQ_TASK_INVALID, cases[i].needle);
    }
}

/* Every policy by its short name and by its protobuf enum name. */
static void test_cache_policy_names(void **state)
{
    jfix *f = *state;
    static const struct {
        const char *json;
        Agentq__V1__CachePolicy want;
    } cases[] = {
        {"default", AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED},
        {"opt-in", AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN},
        {"bypass", AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_BYPASS},
        {"refresh", AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH},
        {"CACHE_POLICY_UNSPECIFIED", AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_UNSPECIFIED},
        {"CACHE_POLICY_OPT_IN", AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_OPT_IN},
        {"CACHE_POLICY_BYPASS", AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_BYPASS},
        {"CACHE_POLICY_REFRESH", AGENTQ__V1__CACHE_POLICY__CACHE_POLICY_REFRESH},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"cache_policy\":\"%s\"}",
                 cases[i].json);
        assert_int_equal(pack_text(f, text), AQ_OK);
        Agentq__V1__Task *t = unpack_out(f);
        assert_int_equal(t->cache_policy, cases[i].want);
        json_t *j = aq_task_to_json(t);
        /* Printed by the short name, which packs back to the same value. */
        assert_string_equal(json_string_value(json_object_get(j, "cache_policy")),
                            aq_task_cache_policy_name(cases[i].want));
        json_decref(j);
        aq_task_free(t);
    }
    assert_string_equal(aq_task_cache_policy_name((Agentq__V1__CachePolicy)99), "unknown");
}

static void test_not_an_object(void **state)
{
    jfix *f = *state;
    expect_error(f, "[1,2]", AQ_TASK_INVALID, "JSON object");
    expect_error(f, "\"task\"", AQ_TASK_INVALID, "JSON object");
}

static void test_nul_in_string(void **state)
{
    jfix *f = *state;
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"a\\u0000b\"}", AQ_TASK_INVALID,
                 "NUL");
    expect_error(f,
                 "{\"id\":\"t1\",\"type\":\"c\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"a\\u0000b\"}]}",
                 AQ_TASK_INVALID, "NUL");
}

static void test_validation_errors_surface(void **state)
{
    jfix *f = *state;
    expect_error(f, "{\"id\":\"bad id\",\"type\":\"c\",\"prompt\":\"p\"}", AQ_TASK_INVALID,
                 "id must be");
    expect_error(f, "{\"type\":\"c\",\"prompt\":\"p\"}", AQ_TASK_INVALID, "id is missing");
    expect_error(f, "{\"id\":\"t1\",\"prompt\":\"p\"}", AQ_TASK_INVALID, "type must be");
    expect_error(f, "{\"id\":\"t1\",\"type\":\"a.b\",\"prompt\":\"p\"}", AQ_TASK_INVALID,
                 "type must be");
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\"}", AQ_TASK_INVALID, "no prompt");
    expect_error(f,
                 "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"messages\":[{\"role\":"
                 "\"user\",\"content\":\"x\"}]}",
                 AQ_TASK_INVALID, "not both");
    expect_error(f,
                 "{\"id\":\"t1\",\"type\":\"c\",\"messages\":[{\"role\":\"assistant\","
                 "\"content\":\"x\"}]}",
                 AQ_TASK_INVALID, "first message");
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"messages\":[{\"content\":\"x\"}]}",
                 AQ_TASK_INVALID, "role");
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"temperature\":1.5}",
                 AQ_TASK_INVALID, "temperature");
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"max_tokens\":64001}",
                 AQ_TASK_INVALID, "max_tokens");
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"stop_sequences\":[\"\"]}",
                 AQ_TASK_INVALID, "stop_sequences[0] is empty");
    f->lim.max_prompt_bytes = 4;
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"12345\"}", AQ_PROMPT_TOO_LARGE,
                 NULL);
}

static void test_output_buffer_cap(void **state)
{
    jfix *f = *state;
    aq_buf_free(&f->out);
    aq_buf_init(&f->out, 8);
    expect_error(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"a longer prompt\"}", AQ_TOO_BIG,
                 NULL);
}

static void test_task_to_json(void **state)
{
    jfix *f = *state;
    assert_int_equal(pack_text(f, FULL_TASK), AQ_OK);
    Agentq__V1__Task *t = unpack_out(f);
    json_t *j = aq_task_to_json(t);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "job-42.a");
    assert_string_equal(json_string_value(json_object_get(j, "type")), "summarize");
    assert_string_equal(json_string_value(json_object_get(j, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "claude-sonnet-4-5");
    assert_string_equal(json_string_value(json_object_get(j, "system")), "Be brief.");
    assert_string_equal(json_string_value(json_object_get(j, "prompt")), "");
    json_t *msgs = json_object_get(j, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
                        "user");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "Hi \xc3\xa9");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "role")),
                        "assistant");
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 700);
    assert_true(fabs(json_number_value(json_object_get(j, "temperature")) - 0.5) < 1e-6);
    json_t *stops = json_object_get(j, "stop_sequences");
    assert_int_equal(json_array_size(stops), 2);
    assert_string_equal(json_string_value(json_array_get(stops, 1)), "###");
    json_t *meta = json_object_get(j, "metadata");
    assert_string_equal(json_string_value(json_object_get(meta, "source")), "test");
    assert_string_equal(json_string_value(json_object_get(meta, "trace")), "t-1");
    assert_int_equal(json_integer_value(json_object_get(j, "deadline_unix_ms")), 1900000000000LL);
    assert_int_equal(json_integer_value(json_object_get(j, "created_unix_ms")), 1600000000000LL);
    assert_string_equal(json_string_value(json_object_get(j, "cache_policy")), "refresh");
    assert_true(json_is_true(json_object_get(j, "allow_fallback")));

    /* The JSON view packs back to the same task. */
    aq_buf first;
    aq_buf_init(&first, 1 << 20);
    assert_int_equal(aq_buf_append(&first, f->out.data, f->out.len), AQ_OK);
    aq_task_free(t);
    aq_err_clear(&f->err);
    assert_int_equal(aq_task_json_pack(j, &f->lim, NOW_MS, &f->out, &f->ref, &f->err), AQ_OK);
    t = unpack_out(f);
    json_t *j2 = aq_task_to_json(t);
    assert_true(json_equal(j, j2));
    assert_int_equal(f->out.len, first.len);
    assert_memory_equal(f->out.data, first.data, first.len);
    json_decref(j2);
    json_decref(j);
    aq_task_free(t);
    aq_buf_free(&first);

    /* Without temperature the key is absent; temperature 0 is present. */
    assert_int_equal(pack_text(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\"}"), AQ_OK);
    t = unpack_out(f);
    j = aq_task_to_json(t);
    assert_null(json_object_get(j, "temperature"));
    assert_string_equal(json_string_value(json_object_get(j, "prompt")), "p");
    assert_int_equal(json_array_size(json_object_get(j, "messages")), 0);
    json_decref(j);
    aq_task_free(t);
    assert_int_equal(pack_text(f, "{\"id\":\"t1\",\"type\":\"c\",\"prompt\":\"p\",\"temperature\":0}"),
                     AQ_OK);
    t = unpack_out(f);
    j = aq_task_to_json(t);
    assert_non_null(json_object_get(j, "temperature"));
    assert_true(json_number_value(json_object_get(j, "temperature")) == 0.0);
    json_decref(j);
    aq_task_free(t);
}

static void test_result_to_json(void **state)
{
    jfix *f = *state;
    Agentq__V1__Result r = AGENTQ__V1__RESULT__INIT;
    Agentq__V1__Usage u = AGENTQ__V1__USAGE__INIT;
    Agentq__V1__Error e = AGENTQ__V1__ERROR__INIT;
    r.id = "job-1";
    r.status = AGENTQ__V1__STATUS__STATUS_FAILED;
    r.type = "summarize";
    r.output = "text \"quoted\"\n";
    r.stop_reason = "end_turn";
    r.model = "claude-haiku-4-5";
    u.input_tokens = 100;
    u.output_tokens = 200;
    u.cache_creation_input_tokens = 3;
    u.cache_read_input_tokens = 4000000000u;
    r.usage = &u;
    r.attempts = 2;
    r.llm_latency_ms = 1500;
    r.queue_latency_ms = 25;
    r.time_to_first_token_us = 250000;
    r.output_tokens_per_second = 42.5f;
    e.class_ = "http_400";
    e.message = "bad request";
    e.http_status = 400;
    r.error = &e;
    r.completed_unix_ms = 1700000000999LL;
    r.request_id = "req_1";
    r.worker = "w-1";
    r.tenant = "acme";
    r.route_rule = "cheap";
    r.cache_hit = 1;
    r.fallback_used = 1;
    r.cost_micro_usd = 123456789012ULL;

    /* Through the wire first, as `agentq get` sees it. */
    aq_buf_reset(&f->out);
    assert_int_equal(aq_result_pack(&r, &f->out, &f->err), AQ_OK);
    Agentq__V1__Result *got = NULL;
    assert_int_equal(aq_result_unpack(f->out.data, f->out.len, &got, &f->err), AQ_OK);
    json_t *j = aq_result_to_json(got);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "job-1");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "STATUS_FAILED");
    assert_string_equal(json_string_value(json_object_get(j, "type")), "summarize");
    assert_string_equal(json_string_value(json_object_get(j, "output")), "text \"quoted\"\n");
    assert_string_equal(json_string_value(json_object_get(j, "stop_reason")), "end_turn");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "claude-haiku-4-5");
    json_t *ju = json_object_get(j, "usage");
    assert_non_null(ju);
    assert_int_equal(json_integer_value(json_object_get(ju, "input_tokens")), 100);
    assert_int_equal(json_integer_value(json_object_get(ju, "output_tokens")), 200);
    assert_int_equal(json_integer_value(json_object_get(ju, "cache_creation_input_tokens")), 3);
    assert_int_equal(json_integer_value(json_object_get(ju, "cache_read_input_tokens")),
                     4000000000LL);
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "llm_latency_ms")), 1500);
    assert_int_equal(json_integer_value(json_object_get(j, "queue_latency_ms")), 25);
    assert_int_equal(json_integer_value(json_object_get(j, "time_to_first_token_us")), 250000);
    assert_true(json_real_value(json_object_get(j, "output_tokens_per_second")) == 42.5);
    json_t *je = json_object_get(j, "error");
    assert_non_null(je);
    assert_string_equal(json_string_value(json_object_get(je, "class")), "http_400");
    assert_string_equal(json_string_value(json_object_get(je, "message")), "bad request");
    assert_int_equal(json_integer_value(json_object_get(je, "http_status")), 400);
    assert_int_equal(json_integer_value(json_object_get(j, "completed_unix_ms")),
                     1700000000999LL);
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req_1");
    assert_string_equal(json_string_value(json_object_get(j, "worker")), "w-1");
    assert_string_equal(json_string_value(json_object_get(j, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(j, "route_rule")), "cheap");
    assert_true(json_is_true(json_object_get(j, "cache_hit")));
    assert_true(json_is_true(json_object_get(j, "fallback_used")));
    assert_int_equal(json_integer_value(json_object_get(j, "cost_micro_usd")), 123456789012LL);
    assert_null(json_object_get(j, "cost_unknown")); /* only when set */
    json_decref(j);
    aq_result_free(got);

    /* A completed result without usage or error has neither key. */
    r.status = AGENTQ__V1__STATUS__STATUS_COMPLETED;
    r.usage = NULL;
    r.error = NULL;
    j = aq_result_to_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "STATUS_COMPLETED");
    assert_null(json_object_get(j, "usage"));
    assert_null(json_object_get(j, "error"));
    r.cost_unknown = 1;
    r.cost_micro_usd = 0;
    json_decref(j);
    j = aq_result_to_json(&r);
    assert_true(json_is_true(json_object_get(j, "cost_unknown")));
    assert_int_equal(json_integer_value(json_object_get(j, "cost_micro_usd")), 0);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    free(text);
    json_decref(j);
}

/* ---- agent runs: content blocks, tools ---- */

static const char *const AGENT_TASK =
    "{\"id\": \"run-1\", \"type\": \"agent\", \"tenant\": \"acme\","
    " \"created_unix_ms\": 1600000000000,"
    " \"messages\": ["
    "  {\"role\": \"user\", \"blocks\": ["
    "    {\"text\": {\"text\": \"Weather in the picture's city?\"}},"
    "    {\"image\": {\"source\": {\"media_type\": \"image/png\", \"data\": \"iVBORw0KGgo=\"}}},"
    "    {\"document\": {\"source\": {\"url\": \"https://example.com/r.pdf\"}, \"title\": \"R\"}}]},"
    "  {\"role\": \"assistant\", \"blocks\": ["
    "    {\"tool_use\": {\"id\": \"toolu_1\", \"name\": \"get_weather\","
    "                    \"input_json\": \"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
    "  {\"role\": \"user\", \"blocks\": ["
    "    {\"tool_result\": {\"tool_use_id\": \"toolu_1\", \"is_error\": true,"
    "                       \"content\": [{\"text\": {\"text\": \"timeout\"}}]}}]}],"
    " \"tools\": [{\"name\": \"get_weather\", \"description\": \"Weather\","
    "              \"input_schema_json\": \"{\\\"type\\\":\\\"object\\\"}\"},"
    "             {\"name\": \"noop\", \"input_schema_json\": \"{\\\"type\\\":\\\"object\\\"}\"}],"
    " \"tool_choice\": {\"type\": \"tool\", \"name\": \"noop\", \"disable_parallel_tool_use\": true},"
    " \"max_steps\": 12, \"max_tool_calls\": 30, \"ceiling_action\": \"final\","
    " \"session_id\": \"sess-9\"}";

static void test_pack_agent_task(void **state)
{
    jfix *f = *state;
    assert_int_equal(pack_text(f, AGENT_TASK), AQ_OK);
    Agentq__V1__Task *t = unpack_out(f);
    assert_int_equal(t->n_messages, 3);
    Agentq__V1__ContentBlock **b0 = t->messages[0]->blocks;
    assert_int_equal(t->messages[0]->n_blocks, 3);
    assert_string_equal(b0[0]->text->text, "Weather in the picture's city?");
    /* base64 decoded to the raw bytes (the PNG signature) */
    assert_int_equal(b0[1]->image->source->data.len, 8);
    assert_memory_equal(b0[1]->image->source->data.data, "\x89PNG\r\n\x1a\n", 8);
    assert_string_equal(b0[2]->document->source->url, "https://example.com/r.pdf");
    assert_string_equal(b0[2]->document->title, "R");
    assert_string_equal(t->messages[1]->blocks[0]->tool_use->input_json, "{\"city\":\"Paris\"}");
    Agentq__V1__ToolResultBlock *rb = t->messages[2]->blocks[0]->tool_result;
    assert_string_equal(rb->tool_use_id, "toolu_1");
    assert_true(rb->is_error);
    assert_string_equal(rb->content[0]->text->text, "timeout");
    assert_int_equal(t->n_tools, 2);
    assert_string_equal(t->tools[1]->name, "noop");
    assert_int_equal(t->tool_choice->type, AGENTQ__V1__TOOL_CHOICE_TYPE__TOOL_CHOICE_TYPE_TOOL);
    assert_true(t->tool_choice->disable_parallel_tool_use);
    assert_int_equal(t->max_steps, 12);
    assert_int_equal(t->max_tool_calls, 30);
    assert_int_equal(t->ceiling_action, AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FINAL);
    assert_string_equal(t->session_id, "sess-9");

    /* The JSON view packs back to the same bytes. */
    json_t *j = aq_task_to_json(t);
    assert_non_null(j);
    json_t *img = json_object_get(json_array_get(json_object_get(json_array_get(
                                                                     json_object_get(j, "messages"), 0),
                                                                 "blocks"),
                                                 1),
                                  "image");
    assert_string_equal(json_string_value(json_object_get(json_object_get(img, "source"), "data")),
                        "iVBORw0KGgo=");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "tool_choice"), "type")),
                        "tool");
    assert_string_equal(json_string_value(json_object_get(j, "ceiling_action")), "final");
    aq_buf again;
    aq_buf_init(&again, 1 << 20);
    aq_task_ref ref;
    aq_err err;
    assert_int_equal(aq_task_json_pack(j, &f->lim, NOW_MS, &again, &ref, &err), AQ_OK);
    assert_int_equal(again.len, f->out.len);
    assert_memory_equal(again.data, f->out.data, f->out.len);
    aq_buf_free(&again);
    json_decref(j);
    aq_task_free(t);

    /* the protobuf enum names are accepted too */
    assert_int_equal(pack_text(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\","
                                  "\"tools\":[{\"name\":\"t\",\"input_schema_json\":\"{\\\"type\\\":\\\"object\\\"}\"}],"
                                  "\"tool_choice\":{\"type\":\"TOOL_CHOICE_TYPE_ANY\"},"
                                  "\"ceiling_action\":\"CEILING_ACTION_FAIL\"}"),
                     AQ_OK);
}

static void test_agent_json_errors(void **state)
{
    jfix *f = *state;
#define TASK_WITH(msgs) "{\"id\":\"a\",\"type\":\"b\",\"messages\":[{\"role\":\"user\",\"blocks\":[" msgs "]}]}"
    expect_error(f, TASK_WITH("{\"picture\":{}}"), AQ_TASK_INVALID,
                 "messages[0].blocks[0]: unknown block \"picture\"");
    expect_error(f, TASK_WITH("{\"text\":{\"text\":\"a\"},\"image\":{}}"), AQ_TASK_INVALID,
                 "messages[0].blocks[0] must be an object with one of");
    expect_error(f, TASK_WITH("{\"text\":\"a\"}"), AQ_TASK_INVALID, "messages[0].blocks[0].text must be an object");
    expect_error(f, TASK_WITH("{\"text\":{\"txt\":\"a\"}}"), AQ_TASK_INVALID, "unknown field \"txt\"");
    expect_error(f, TASK_WITH("{\"image\":{\"source\":{\"media_type\":\"image/png\",\"data\":\"abc\"}}}"),
                 AQ_TASK_INVALID, "messages[0].blocks[0].image.source.data is not base64");
    expect_error(f, TASK_WITH("{\"image\":{\"source\":{\"media_type\":\"image/png\",\"data\":\"a!c=\"}}}"),
                 AQ_TASK_INVALID, "image.source.data is not base64");
    expect_error(f, TASK_WITH("{\"image\":{\"source\":{\"media_type\":\"image/png\",\"data\":7}}}"),
                 AQ_TASK_INVALID, "image.source.data must be a base64 string");
    expect_error(f, TASK_WITH("{\"tool_result\":{\"tool_use_id\":\"x\",\"content\":[{\"tool_result\":"
                              "{\"tool_use_id\":\"y\",\"content\":[]}}]}}"),
                 AQ_TASK_INVALID, "nest too deep");
    expect_error(f, TASK_WITH("{\"tool_result\":{\"tool_use_id\":\"x\",\"is_error\":1}}"),
                 AQ_TASK_INVALID, "tool_result.is_error must be true or false");
    /* the validator's messages come through, with their paths */
    expect_error(f, TASK_WITH("{\"image\":{\"source\":{\"media_type\":\"image/bmp\",\"data\":\"YWJj\"}}}"),
                 AQ_TASK_INVALID, "messages[0].blocks[0].image.source.media_type \"image/bmp\"");
    expect_error(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\",\"tools\":[{\"name\":\"a b\"}]}",
                 AQ_TASK_INVALID, "tools[0].name must match");
    expect_error(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\",\"tools\":[{\"nam\":\"x\"}]}",
                 AQ_TASK_INVALID, "tools[0]: unknown field \"nam\"");
    expect_error(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\",\"tool_choice\":{\"type\":\"required\"}}",
                 AQ_TASK_INVALID, "tool_choice.type must be");
    expect_error(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\",\"tool_choice\":{\"type\":\"any\"}}",
                 AQ_TASK_INVALID, "tool_choice.type any needs tools");
    expect_error(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\",\"ceiling_action\":\"stop\"}",
                 AQ_TASK_INVALID, "ceiling_action must be");
    expect_error(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\",\"max_steps\":-1}", AQ_TASK_INVALID,
                 "max_steps must be an integer");
    expect_error(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\",\"max_steps\":1000}", AQ_TASK_INVALID,
                 "max_steps 1000 is over the cap");
    expect_error(f, "{\"id\":\"a\",\"type\":\"b\",\"prompt\":\"p\",\"session_id\":\"a b\"}", AQ_TASK_INVALID,
                 "session_id must be");
#undef TASK_WITH
}

static void test_agent_result_to_json(void **state)
{
    (void)state;
    Agentq__V1__Result r = AGENTQ__V1__RESULT__INIT;
    r.id = "run-1";
    r.status = AGENTQ__V1__STATUS__STATUS_COMPLETED;
    r.output = "Calling.";
    r.stop_reason = "tool_use";
    Agentq__V1__TextBlock tb = AGENTQ__V1__TEXT_BLOCK__INIT;
    tb.text = "Calling.";
    Agentq__V1__ToolUseBlock ub = AGENTQ__V1__TOOL_USE_BLOCK__INIT;
    ub.id = "toolu_1";
    ub.name = "get_weather";
    ub.input_json = "{\"city\":\"Paris\"}";
    Agentq__V1__ContentBlock b[2] = {AGENTQ__V1__CONTENT_BLOCK__INIT, AGENTQ__V1__CONTENT_BLOCK__INIT};
    b[0].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    b[0].text = &tb;
    b[1].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
    b[1].tool_use = &ub;
    Agentq__V1__ContentBlock *bp[2] = {&b[0], &b[1]};
    r.content = bp;
    r.n_content = 2;
    r.steps = 3;
    r.tool_calls = 2;
    Agentq__V1__ToolCallRecord tc = AGENTQ__V1__TOOL_CALL_RECORD__INIT, *tcp = &tc;
    tc.id = "toolu_1";
    tc.name = "get_weather";
    tc.outcome = "timeout";
    tc.latency_ms = 50;
    tc.attempts = 2;
    Agentq__V1__Usage u = AGENTQ__V1__USAGE__INIT;
    u.input_tokens = 10;
    u.cache_read_input_tokens = 90;
    Agentq__V1__StepRecord s = AGENTQ__V1__STEP_RECORD__INIT, *sp = &s;
    s.step = 1;
    s.model = "claude-haiku-4-5";
    s.usage = &u;
    s.cost_micro_usd = 12;
    s.latency_ms = 200;
    s.stop_reason = "tool_use";
    s.route_rule = "cheap";
    s.final_at_ceiling = 1;
    s.tool_calls = &tcp;
    s.n_tool_calls = 1;
    r.step_log = &sp;
    r.n_step_log = 1;
    r.transcript_key = "run-1";
    r.session_id = "sess-9";
    json_t *j = aq_result_to_json(&r);
    char *text = json_dumps(json_object_get(j, "content"), JSON_COMPACT);
    assert_string_equal(text, "[{\"text\":{\"text\":\"Calling.\"}},{\"tool_use\":{\"id\":\"toolu_1\","
                              "\"name\":\"get_weather\",\"input_json\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]");
    free(text);
    text = json_dumps(json_object_get(j, "step_log"), JSON_COMPACT);
    assert_string_equal(text,
                        "[{\"step\":1,\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":10,"
                        "\"output_tokens\":0,\"cache_creation_input_tokens\":0,"
                        "\"cache_read_input_tokens\":90},\"cost_micro_usd\":12,\"latency_ms\":200,"
                        "\"stop_reason\":\"tool_use\",\"route_rule\":\"cheap\",\"cache_hit\":false,"
                        "\"final_at_ceiling\":true,\"tool_calls\":[{\"id\":\"toolu_1\",\"name\":"
                        "\"get_weather\",\"outcome\":\"timeout\",\"latency_ms\":50,\"attempts\":2}]}]");
    free(text);
    assert_int_equal(json_integer_value(json_object_get(j, "steps")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "tool_calls")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "transcript_key")), "run-1");
    assert_string_equal(json_string_value(json_object_get(j, "session_id")), "sess-9");
    json_decref(j);
    /* a single call's Result prints none of them */
    Agentq__V1__Result plain = AGENTQ__V1__RESULT__INIT;
    j = aq_result_to_json(&plain);
    static const char *const absent[] = {"content", "steps", "tool_calls", "step_log",
                                         "transcript_key", "session_id"};
    for (size_t i = 0; i < 6; i++)
        assert_null(json_object_get(j, absent[i]));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pack_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_minimal_prompt_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_policy_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_an_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_errors_surface, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_buffer_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_to_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_to_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_agent_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_json_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_result_to_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
