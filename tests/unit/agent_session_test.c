/* Sessions, the pure part (internal/session/session.h): the window of history
 * sent to the model (token budget respected, starts with a user turn, never
 * separates a tool_result from its tool_use), adding turns (idempotent by task
 * id, oldest dropped past the byte cap), the codec's caps, and the keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_config.h"
#include "session/session.h"

#define NOW 1700000000000LL

/* A history: user text, then (assistant tool_use, user tool_result) pairs,
 * then an assistant text; all strings borrowed. */
typedef struct hist {
    Agentq__V1__Message m[64];
    Agentq__V1__ContentBlock b[64];
    Agentq__V1__ToolUseBlock u[64];
    Agentq__V1__ToolResultBlock r[64];
    Agentq__V1__ContentBlock *bp[64];
    Agentq__V1__Message *mp[64];
    size_t n;
} hist;

static hist H;

static void msg_text(const char *role, const char *text)
{
    size_t i = H.n++;
    agentq__v1__message__init(&H.m[i]);
    H.m[i].role = (char *)role;
    H.m[i].content = (char *)text;
    H.mp[i] = &H.m[i];
}

static void msg_tool_use(const char *id, const char *input)
{
    size_t i = H.n++;
    agentq__v1__message__init(&H.m[i]);
    agentq__v1__content_block__init(&H.b[i]);
    agentq__v1__tool_use_block__init(&H.u[i]);
    H.u[i].id = (char *)id;
    H.u[i].name = "search";
    H.u[i].input_json = (char *)input;
    H.b[i].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
    H.b[i].tool_use = &H.u[i];
    H.bp[i] = &H.b[i];
    H.m[i].role = "assistant";
    H.m[i].blocks = &H.bp[i];
    H.m[i].n_blocks = 1;
    H.mp[i] = &H.m[i];
}

static void msg_tool_result(const char *id)
{
    size_t i = H.n++;
    agentq__v1__message__init(&H.m[i]);
    agentq__v1__content_block__init(&H.b[i]);
    agentq__v1__tool_result_block__init(&H.r[i]);
    H.r[i].tool_use_id = (char *)id;
    H.b[i].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT;
    H.b[i].tool_result = &H.r[i];
    H.bp[i] = &H.b[i];
    H.m[i].role = "user";
    H.m[i].blocks = &H.bp[i];
    H.m[i].n_blocks = 1;
    H.mp[i] = &H.m[i];
}

static bool is_tool_result(const Agentq__V1__Message *m)
{
    return m->n_blocks && m->blocks[0]->block_case == AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT;
}

static void check_window(size_t n, int64_t budget)
{
    const Agentq__V1__Message *const *msgs = (const Agentq__V1__Message *const *)H.mp;
    size_t start = aq_session_window(msgs, n, budget);
    int64_t total = 0;
    for (size_t i = start; i < n; i++)
        total += aq_session_message_tokens(msgs[i]);
    assert_true(total <= budget);
    if (start < n) {
        assert_string_equal(msgs[start]->role, "user");
        assert_false(is_tool_result(msgs[start])); /* its tool_use is not cut off */
    }
    /* the largest window: starting one clean message earlier would not fit */
    for (size_t i = start; i-- > 0;) {
        if (strcmp(msgs[i]->role, "user") == 0 && !is_tool_result(msgs[i])) {
            int64_t more = 0;
            for (size_t k = i; k < n; k++)
                more += aq_session_message_tokens(msgs[k]);
            assert_true(more > budget);
            break;
        }
    }
}

static void test_window(void **state)
{
    (void)state;
    memset(&H, 0, sizeof(H));
    msg_text("user", "12345678");                 /* 2 tokens */
    msg_tool_use("t1", "{\"q\":\"aaaa\"}");       /* search + input: 18 bytes -> 5 */
    msg_tool_result("t1");                        /* 0 */
    msg_text("assistant", "answer one here!");    /* 4 */
    msg_text("user", "second question.");         /* 4 */
    msg_tool_use("t2", "{}");                     /* 8 bytes -> 2 */
    msg_tool_result("t2");
    msg_tool_use("t3", "{}");
    msg_tool_result("t3");
    msg_text("assistant", "done");                /* 1 */
    assert_int_equal(aq_session_message_tokens(&H.m[0]), 2);
    assert_int_equal(aq_session_message_tokens(&H.m[1]), 5);
    for (int64_t budget = 0; budget < 30; budget++)
        check_window(H.n, budget);
    /* the whole history fits: all of it */
    assert_int_equal(aq_session_window((const Agentq__V1__Message *const *)H.mp, H.n, 1000), 0);
    /* budget for the newest turns only: never starts inside a tool pair */
    size_t start = aq_session_window((const Agentq__V1__Message *const *)H.mp, H.n, 9);
    assert_int_equal(start, 4);
    /* nothing fits */
    assert_int_equal(aq_session_window((const Agentq__V1__Message *const *)H.mp, H.n, 0), H.n);
    /* a history of tool pairs only after the first user turn: the window is
     * all or nothing */
    memset(&H, 0, sizeof(H));
    msg_text("user", "go");
    for (int i = 0; i < 10; i++) {
        msg_tool_use("t", "{}");
        msg_tool_result("t");
    }
    assert_int_equal(aq_session_window((const Agentq__V1__Message *const *)H.mp, H.n, 15), H.n);
    assert_int_equal(aq_session_window((const Agentq__V1__Message *const *)H.mp, H.n, 100), 0);
}

static void test_add_turn(void **state)
{
    (void)state;
    memset(&H, 0, sizeof(H));
    msg_text("user", "question");
    msg_text("assistant", "answer");
    const Agentq__V1__Message *const *msgs = (const Agentq__V1__Message *const *)H.mp;
    Agentq__V1__Session *s = NULL;
    aq_err err;
    bool appended = false;
    assert_int_equal(aq_session_add_turn(&s, "s1", "task-1", msgs, 2, NOW, 1 << 20, &appended, &err),
                     AQ_OK);
    assert_true(appended);
    assert_int_equal(aq_session_add_turn(&s, "s1", "task-1", msgs, 2, NOW, 1 << 20, &appended, &err),
                     AQ_OK);
    assert_false(appended); /* a redelivery appends nothing */
    assert_int_equal(aq_session_add_turn(&s, "s1", "task-2", msgs, 2, NOW, 1 << 20, &appended, &err),
                     AQ_OK);
    assert_true(appended);
    assert_int_equal(s->n_turns, 2);
    const Agentq__V1__Message **all = NULL;
    size_t n = 0;
    assert_int_equal(aq_session_messages(s, &all, &n, &err), AQ_OK);
    assert_int_equal(n, 4);
    assert_string_equal(all[3]->content, "answer");
    free(all);

    /* codec */
    aq_buf b;
    aq_buf_init(&b, 1 << 20);
    assert_int_equal(aq_session_encode(s, 1 << 20, &b, &err), AQ_OK);
    Agentq__V1__Session *d = NULL;
    assert_int_equal(aq_session_decode(b.data, b.len, b.len - 1, &d, &err), AQ_TOO_BIG);
    assert_int_equal(aq_session_decode(b.data, b.len, b.len, &d, &err), AQ_OK);
    assert_int_equal(d->n_turns, 2);
    assert_string_equal(d->turns[1]->task_id, "task-2");
    assert_int_equal(aq_session_encode(d, 10, &b, &err), AQ_TOO_BIG);
    assert_int_equal(aq_session_decode("\xff\xff", 2, 100, &d, &err), AQ_INVALID_ARG);
    aq_session_free(d);
    aq_buf_free(&b);

    /* the byte cap: the oldest turns go, counted */
    size_t one = agentq__v1__session__get_packed_size(s) / 2;
    for (int i = 3; i <= 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "task-%d", i);
        assert_int_equal(aq_session_add_turn(&s, "s1", id, msgs, 2, NOW, one * 4, &appended, &err),
                         AQ_OK);
        assert_true(agentq__v1__session__get_packed_size(s) <= one * 4);
    }
    assert_true(s->dropped_turns > 0);
    assert_string_equal(s->turns[s->n_turns - 1]->task_id, "task-10");
    assert_int_equal(s->n_turns + s->dropped_turns, 10);
    /* a turn that alone is over the cap */
    assert_int_equal(aq_session_add_turn(&s, "s1", "task-big", msgs, 2, NOW, 20, &appended, &err),
                     AQ_TOO_BIG);
    aq_session_free(s);
}

static void test_keys(void **state)
{
    (void)state;
    char h[AQ_KV_KEY_MAX + 1], l[AQ_KV_KEY_MAX + 1];
    aq_err err;
    assert_int_equal(aq_session_keys("chat-42", h, l, &err), AQ_OK);
    assert_string_equal(h, "chat-42.history");
    assert_string_equal(l, "chat-42.lease");
    assert_int_equal(aq_session_keys("bad id", h, l, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_session_keys(".x", h, l, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_session_keys("", h, l, &err), AQ_INVALID_ARG);
}

/* The option rows of agent_config.h compile, load their defaults, and
 * enforce their bounds (the worker's rows are not in a table of its own yet). */
typedef struct agent_cfg {
    char *runs_bucket, *session_bucket, *ceiling;
    int64_t runs_ttl, runs_max, session_ttl, session_max, context_tokens, lease_ttl;
    int64_t steps, steps_cap, calls, calls_cap;
} agent_cfg;

static const aq_option agent_opts[] = {
    AQ_AGENT_RUNS_OPTIONS(agent_cfg, runs_bucket, runs_ttl, runs_max),
    AQ_AGENT_SESSION_OPTIONS(agent_cfg, session_bucket, session_ttl, session_max),
    AQ_AGENT_SESSION_WORKER_OPTIONS(agent_cfg, context_tokens, lease_ttl),
    AQ_AGENT_LIMIT_OPTIONS(agent_cfg, steps, steps_cap, calls, calls_cap, ceiling),
    AQ_OPTIONS_END,
};

static void test_config_rows(void **state)
{
    (void)state;
    agent_cfg c;
    aq_err err;
    aq_config_cli cli;
    memset(&c, 0, sizeof(c));
    char *argv[] = {"test", "--agent_max_steps=7", NULL};
    assert_int_equal(aq_config_load(agent_opts, &c, 2, argv, &cli, &err), AQ_OK);
    assert_string_equal(c.runs_bucket, "agentq-runs");
    assert_string_equal(c.session_bucket, "agentq-sessions");
    assert_int_equal(c.runs_ttl, 7LL * 24 * 3600 * 1000);
    assert_int_equal(c.session_ttl, 30LL * 24 * 3600 * 1000);
    assert_int_equal(c.runs_max, 1 << 20);
    assert_int_equal(c.context_tokens, 50000);
    assert_int_equal(c.lease_ttl, 300000);
    assert_int_equal(c.steps, 7);
    assert_int_equal(c.steps_cap, 100);
    bool final = true;
    assert_true(aq_agent_ceiling_action_parse(c.ceiling, &final));
    assert_false(final);
    assert_true(aq_agent_ceiling_action_parse("final", &final));
    assert_true(final);
    assert_false(aq_agent_ceiling_action_parse("maybe", &final));
    assert_int_equal(aq_config_set(agent_opts, &c, "runs_max_bytes", "1KiB", "test", &err),
                     AQ_CONFIG);
    aq_config_free(agent_opts, &c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_add_turn),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_config_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
