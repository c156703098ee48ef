/* The agent run's state and step state machine (internal/agent/agent_run.h):
 * a 5-step run with parallel tools and results arriving out of order, crash
 * and resume from a decoded checkpoint, both ceiling modes at max_steps,
 * max_tool_calls and the deadline, the codec's caps, and misuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_event.h"
#include "agent/agent_json.h"
#include "agent/agent_run.h"

#define CAP (1024 * 1024)
#define NOW 1700000000000LL

/* ---- building answers (every string borrowed; blocks on the stack) ---- */

typedef struct answer {
    Agentq__V1__ContentBlock b[80];
    Agentq__V1__TextBlock t[80];
    Agentq__V1__ToolUseBlock u[80];
    Agentq__V1__ContentBlock *bp[80];
    char ids[80][32];
    size_t n;
    aq_run_answer a;
} answer;

static void answer_init(answer *x, const char *stop_reason)
{
    memset(x, 0, sizeof(*x));
    x->a.stop_reason = stop_reason;
    x->a.model = "claude-test";
    x->a.route_rule = "default";
    x->a.input_tokens = 100;
    x->a.output_tokens = 10;
    x->a.cache_read_input_tokens = 5;
    x->a.cost_micro_usd = 1000;
    x->a.latency_ms = 200;
    x->a.content = x->bp;
}

static void add_text(answer *x, const char *text)
{
    size_t i = x->n++;
    agentq__v1__content_block__init(&x->b[i]);
    agentq__v1__text_block__init(&x->t[i]);
    x->t[i].text = (char *)text;
    x->b[i].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    x->b[i].text = &x->t[i];
    x->bp[i] = &x->b[i];
    x->a.n_content = x->n;
}

static void add_tool_use(answer *x, const char *id, const char *name)
{
    size_t i = x->n++;
    snprintf(x->ids[i], sizeof(x->ids[i]), "%s", id);
    agentq__v1__content_block__init(&x->b[i]);
    agentq__v1__tool_use_block__init(&x->u[i]);
    x->u[i].id = x->ids[i];
    x->u[i].name = (char *)name;
    x->u[i].input_json = "{\"q\":\"x\"}";
    x->b[i].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
    x->b[i].tool_use = &x->u[i];
    x->bp[i] = &x->b[i];
    x->a.n_content = x->n;
}

static Agentq__V1__Task task_of(const char *id)
{
    Agentq__V1__Task t = AGENTQ__V1__TASK__INIT;
    t.id = (char *)id;
    t.type = "agent";
    t.prompt = "Find the answer.";
    return t;
}

static aq_run_limits limits(uint32_t steps, uint32_t calls, bool final)
{
    aq_run_limits l = {steps, calls, 0, final};
    return l;
}

static void result_for(aq_run *r, const char *id, const char *text, int64_t now)
{
    aq_err err;
    aq_run_tool_result res = {.tool_use_id = id, .text = text, .outcome = "ok", .latency_ms = 7,
                              .attempts = 1};
    assert_int_equal(aq_run_apply_tool_result(r, &res, now, &err), AQ_OK);
}

static aq_run *roundtrip(aq_run *r)
{
    aq_buf b;
    aq_err err;
    aq_run *out = NULL;
    aq_buf_init(&b, CAP);
    assert_int_equal(aq_run_encode(r, CAP, &b, &err), AQ_OK);
    assert_int_equal(aq_run_decode(b.data, b.len, CAP, &out, &err), AQ_OK);
    /* decoding then encoding again gives the same bytes */
    aq_buf b2;
    aq_buf_init(&b2, CAP);
    assert_int_equal(aq_run_encode(out, CAP, &b2, &err), AQ_OK);
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);
    aq_buf_free(&b);
    aq_buf_free(&b2);
    aq_run_free(r);
    return out;
}

/* The tool_result blocks of message m, in order, must answer `ids`. */
static void assert_results(const Agentq__V1__Message *m, const char *const *ids, size_t n)
{
    assert_string_equal(m->role, "user");
    assert_true(m->n_blocks >= n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(m->blocks[i]->block_case, AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT);
        assert_string_equal(m->blocks[i]->tool_result->tool_use_id, ids[i]);
    }
}

/* ---- tests ---- */

static void test_five_steps_parallel_out_of_order(void **state)
{
    (void)state;
    Agentq__V1__Task t = task_of("run-5");
    aq_run_limits lim = limits(10, 20, false);
    aq_run *r = NULL;
    aq_err err;
    aq_run_action act;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    for (int step = 1; step <= 4; step++) {
        assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
        assert_int_equal(act.kind, AQ_RUN_CALL_MODEL);
        assert_int_equal(act.step, step);
        assert_int_equal(act.n_messages, 1 + (size_t)(step - 1) * 2);
        assert_false(act.tools_disabled);
        answer x;
        char id1[32], id2[32];
        snprintf(id1, sizeof(id1), "toolu_%d_a", step);
        snprintf(id2, sizeof(id2), "toolu_%d_b", step);
        answer_init(&x, "tool_use");
        add_text(&x, "Let me look.");
        add_tool_use(&x, id1, "search");
        add_tool_use(&x, id2, "fetch");
        assert_int_equal(aq_run_apply_answer(r, &lim, &x.a, NOW, &err), AQ_OK);
        assert_int_equal(aq_run_phase(r), AGENTQ__V1__RUN_PHASE__RUN_PHASE_TOOLS_PENDING);
        r = roundtrip(r); /* the checkpoint after the answer */
        assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
        assert_int_equal(act.kind, AQ_RUN_DISPATCH_TOOLS);
        assert_int_equal(act.n_calls, 2);
        assert_string_equal(act.calls[0]->id, id1);
        assert_string_equal(act.calls[0]->name, "search");
        assert_string_equal(act.calls[0]->input_json, "{\"q\":\"x\"}");
        assert_string_equal(act.calls[1]->id, id2);
        /* out of order: the second call answers first */
        result_for(r, id2, "result b", NOW);
        assert_int_equal(aq_run_phase(r), AGENTQ__V1__RUN_PHASE__RUN_PHASE_TOOLS_PENDING);
        result_for(r, id1, "result a", NOW);
        assert_int_equal(aq_run_phase(r), AGENTQ__V1__RUN_PHASE__RUN_PHASE_NEED_MODEL);
        const Agentq__V1__RunState *s = aq_run_state(r);
        const char *ids[2] = {id1, id2};
        /* ONE user message, results in the order of the tool_use blocks */
        assert_results(s->conversation[s->n_conversation - 1], ids, 2);
        assert_int_equal(s->conversation[s->n_conversation - 1]->n_blocks, 2);
        assert_string_equal(s->conversation[s->n_conversation - 1]->blocks[0]->tool_result
                                ->content[0]->text->text, "result a");
        assert_int_equal(s->steps[step - 1]->n_tool_calls, 2);
        assert_string_equal(s->steps[step - 1]->tool_calls[0]->id, id1);
        assert_string_equal(s->steps[step - 1]->tool_calls[0]->outcome, "ok");
        json_t *ev = aq_agent_step_event(r, (uint32_t)step);
        assert_non_null(ev);
        assert_int_equal(json_array_size(json_object_get(ev, "tool_calls")), 2);
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(ev, "tool_calls"), 1), "name")),
                            "fetch");
        json_decref(ev);
        r = roundtrip(r); /* the checkpoint after the batch */
    }
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_CALL_MODEL);
    assert_int_equal(act.step, 5);
    answer x;
    answer_init(&x, "end_turn");
    add_text(&x, "The answer is 42.");
    assert_int_equal(aq_run_apply_answer(r, &lim, &x.a, NOW + 5, &err), AQ_OK);
    r = roundtrip(r);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_DONE);

    Agentq__V1__Result res = AGENTQ__V1__RESULT__INIT;
    Agentq__V1__Usage u;
    assert_int_equal(aq_run_fill_result(r, &res, &u, &err), AQ_OK);
    assert_int_equal(res.status, AGENTQ__V1__STATUS__STATUS_COMPLETED);
    assert_string_equal(res.output, "The answer is 42.");
    assert_string_equal(res.stop_reason, "end_turn");
    assert_int_equal(res.steps, 5);
    assert_int_equal(res.tool_calls, 8);
    assert_int_equal(res.n_step_log, 5);
    assert_int_equal(res.usage->input_tokens, 500);
    assert_int_equal(res.usage->cache_read_input_tokens, 25);
    assert_int_equal(res.cost_micro_usd, 5000);
    assert_int_equal(res.llm_latency_ms, 1000);
    assert_string_equal(res.transcript_key, "run-5");
    assert_int_equal(res.n_content, 1);
    assert_null(res.error);
    /* the whole Result packs */
    uint8_t *buf = malloc(agentq__v1__result__get_packed_size(&res));
    agentq__v1__result__pack(&res, buf);
    free(buf);
    const Agentq__V1__RunState *s = aq_run_state(r);
    assert_int_equal(s->n_conversation, 1 + 4 * 2 + 1);
    assert_int_equal(s->n_pending, 0);
    json_t *j = aq_agent_run_json(s);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "conversation")), 10);
    json_decref(j);
    aq_run_free(r);
}

static void test_idempotency_key(void **state)
{
    (void)state;
    char key[AQ_RUN_IDEMPOTENCY_KEY_MAX];
    aq_err err;
    assert_int_equal(aq_run_idempotency_key("task-1", "toolu_01", key, sizeof(key), &err), AQ_OK);
    assert_string_equal(key, "task-1:toolu_01");
    char small[8];
    assert_int_equal(aq_run_idempotency_key("task-1", "toolu_01", small, sizeof(small), &err),
                     AQ_TOO_BIG);
}

/* A crash mid-batch: the checkpoint says which calls have results; the
 * delivery that resumes dispatches only the others, with the same keys. */
static void test_crash_resume(void **state)
{
    (void)state;
    Agentq__V1__Task t = task_of("run-crash");
    aq_run_limits lim = limits(5, 10, false);
    aq_run *r = NULL;
    aq_err err;
    aq_run_action act;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    answer x;
    answer_init(&x, "tool_use");
    add_tool_use(&x, "toolu_a", "t1");
    add_tool_use(&x, "toolu_b", "t2");
    add_tool_use(&x, "toolu_c", "t3");
    assert_int_equal(aq_run_apply_answer(r, &lim, &x.a, NOW, &err), AQ_OK);
    aq_buf after_answer;
    aq_buf_init(&after_answer, CAP);
    assert_int_equal(aq_run_encode(r, CAP, &after_answer, &err), AQ_OK);
    result_for(r, "toolu_b", "b done", NOW);
    aq_buf mid;
    aq_buf_init(&mid, CAP);
    assert_int_equal(aq_run_encode(r, CAP, &mid, &err), AQ_OK);
    aq_run_free(r); /* kill -9 */

    /* resume from the checkpoint written after the answer: all three again,
     * no model call */
    assert_int_equal(aq_run_decode(after_answer.data, after_answer.len, CAP, &r, &err), AQ_OK);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_DISPATCH_TOOLS);
    assert_int_equal(act.n_calls, 3);
    aq_run_free(r);

    /* resume from a checkpoint with one result: only the two others */
    assert_int_equal(aq_run_decode(mid.data, mid.len, CAP, &r, &err), AQ_OK);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_DISPATCH_TOOLS);
    assert_int_equal(act.n_calls, 2);
    assert_string_equal(act.calls[0]->id, "toolu_a");
    assert_string_equal(act.calls[1]->id, "toolu_c");
    char key[AQ_RUN_IDEMPOTENCY_KEY_MAX];
    assert_int_equal(aq_run_idempotency_key(aq_run_state(r)->task_id, act.calls[1]->id, key,
                                            sizeof(key), &err), AQ_OK);
    assert_string_equal(key, "run-crash:toolu_c");
    /* a late duplicate of b's result is ignored */
    result_for(r, "toolu_b", "b again", NOW);
    result_for(r, "toolu_c", "c done", NOW);
    result_for(r, "toolu_a", "a done", NOW);
    const Agentq__V1__RunState *s = aq_run_state(r);
    const char *ids[3] = {"toolu_a", "toolu_b", "toolu_c"};
    assert_results(s->conversation[s->n_conversation - 1], ids, 3);
    assert_string_equal(s->conversation[s->n_conversation - 1]->blocks[1]->tool_result->content[0]
                            ->text->text, "b done");
    assert_int_equal(s->tool_calls, 3); /* counted once, at the answer */
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_CALL_MODEL);
    assert_int_equal(act.step, 2); /* the stored answer is not asked for again */
    aq_run_free(r);
    aq_buf_free(&after_answer);
    aq_buf_free(&mid);
}

static void run_tool_step(aq_run *r, const aq_run_limits *lim, const char *prefix, int n)
{
    aq_err err;
    answer x;
    answer_init(&x, "tool_use");
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "%s_%d", prefix, i);
        add_tool_use(&x, id, "search");
    }
    assert_int_equal(aq_run_apply_answer(r, lim, &x.a, NOW, &err), AQ_OK);
}

static void test_ceiling_fail_max_steps(void **state)
{
    (void)state;
    Agentq__V1__Task t = task_of("run-fail");
    aq_run_limits lim = limits(2, 10, false);
    aq_run *r = NULL;
    aq_err err;
    aq_run_action act;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    run_tool_step(r, &lim, "s1", 1);
    result_for(r, "s1_0", "ok", NOW);
    run_tool_step(r, &lim, "s2", 2); /* step 2 = max_steps, still calling tools */
    assert_int_equal(aq_run_phase(r), AGENTQ__V1__RUN_PHASE__RUN_PHASE_FAILED);
    r = roundtrip(r);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_FAIL);
    assert_int_equal(act.fail_status, AQ_STEP_LIMIT);
    assert_non_null(strstr(act.fail_message, "max_steps (2)"));
    const Agentq__V1__RunState *s = aq_run_state(r);
    assert_int_equal(s->n_pending, 0); /* nothing of that answer dispatched */
    assert_int_equal(s->tool_calls, 1);
    assert_string_equal(s->ceiling, "max_steps");
    Agentq__V1__Result res = AGENTQ__V1__RESULT__INIT;
    Agentq__V1__Usage u;
    assert_int_equal(aq_run_fill_result(r, &res, &u, &err), AQ_OK);
    assert_int_equal(res.status, AGENTQ__V1__STATUS__STATUS_FAILED);
    assert_string_equal(res.error->class_, "step_limit");
    assert_int_equal(res.steps, 2);
    assert_string_equal(res.transcript_key, "run-fail"); /* the transcript is kept */
    aq_run_free(r);
}

static void test_ceiling_final_max_steps(void **state)
{
    (void)state;
    Agentq__V1__Task t = task_of("run-final");
    aq_run_limits lim = limits(2, 10, true);
    aq_run *r = NULL;
    aq_err err;
    aq_run_action act;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    run_tool_step(r, &lim, "s1", 1);
    result_for(r, "s1_0", "ok", NOW);
    run_tool_step(r, &lim, "s2", 2);
    /* with final, the last step's calls still run */
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_DISPATCH_TOOLS);
    assert_int_equal(act.n_calls, 2);
    result_for(r, "s2_1", "ok", NOW);
    result_for(r, "s2_0", "ok", NOW);
    assert_int_equal(aq_run_phase(r), AGENTQ__V1__RUN_PHASE__RUN_PHASE_NEED_FINAL);
    r = roundtrip(r);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_CALL_FINAL);
    assert_true(act.tools_disabled);
    assert_int_equal(act.step, 3);
    /* the last user turn: the tool results first, then the request */
    const Agentq__V1__Message *last = act.messages[act.n_messages - 1];
    const char *ids[2] = {"s2_0", "s2_1"};
    assert_results(last, ids, 2);
    assert_int_equal(last->n_blocks, 3);
    assert_int_equal(last->blocks[2]->block_case, AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT);
    assert_non_null(strstr(last->blocks[2]->text->text, "max_steps"));
    answer x;
    answer_init(&x, "end_turn");
    add_text(&x, "Final: 7.");
    add_tool_use(&x, "toolu_ignored", "search"); /* tools were disabled: dropped */
    assert_int_equal(aq_run_apply_answer(r, &lim, &x.a, NOW, &err), AQ_OK);
    assert_int_equal(aq_run_phase(r), AGENTQ__V1__RUN_PHASE__RUN_PHASE_DONE);
    const Agentq__V1__RunState *s = aq_run_state(r);
    assert_int_equal(s->n_steps, 3);
    assert_true(s->steps[2]->final_at_ceiling);
    assert_false(s->steps[1]->final_at_ceiling);
    assert_int_equal(s->conversation[s->n_conversation - 1]->n_blocks, 1);
    Agentq__V1__Result res = AGENTQ__V1__RESULT__INIT;
    Agentq__V1__Usage u;
    assert_int_equal(aq_run_fill_result(r, &res, &u, &err), AQ_OK);
    assert_int_equal(res.status, AGENTQ__V1__STATUS__STATUS_COMPLETED);
    assert_string_equal(res.output, "Final: 7.");
    assert_int_equal(res.n_content, 1);
    aq_run_free(r);
}

/* The final call answered with nothing but a tool_use (tools were
 * disabled): the run is DONE with no content, and no empty assistant turn.
 * (Found by the run_checkpoint fuzz target: the dropped turn was used after
 * it was freed.) */
static void test_final_answer_only_tool_use(void **state)
{
    (void)state;
    Agentq__V1__Task t = task_of("run-final-empty");
    aq_run_limits lim = limits(1, 10, true);
    aq_run *r = NULL;
    aq_err err;
    aq_run_action act;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    run_tool_step(r, &lim, "s1", 1);
    result_for(r, "s1_0", "ok", NOW);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_CALL_FINAL);
    size_t before = act.n_messages;
    answer x;
    answer_init(&x, "tool_use");
    add_tool_use(&x, "toolu_again", "search");
    assert_int_equal(aq_run_apply_answer(r, &lim, &x.a, NOW, &err), AQ_OK);
    assert_int_equal(aq_run_phase(r), AGENTQ__V1__RUN_PHASE__RUN_PHASE_DONE);
    assert_int_equal(aq_run_state(r)->n_conversation, before);
    assert_int_equal(aq_run_state(r)->n_final_content, 0);
    Agentq__V1__Result res = AGENTQ__V1__RESULT__INIT;
    Agentq__V1__Usage u;
    assert_int_equal(aq_run_fill_result(r, &res, &u, &err), AQ_OK);
    assert_string_equal(res.output, "");
    aq_run_free(r);
}

static void test_max_tool_calls(void **state)
{
    (void)state;
    Agentq__V1__Task t = task_of("run-calls");
    aq_err err;
    aq_run_action act;
    /* final: the calls within the ceiling run, the rest get "not run" */
    aq_run_limits lim = limits(10, 3, true);
    aq_run *r = NULL;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    run_tool_step(r, &lim, "a", 2);
    result_for(r, "a_0", "ok", NOW);
    result_for(r, "a_1", "ok", NOW);
    run_tool_step(r, &lim, "b", 2);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_DISPATCH_TOOLS);
    assert_int_equal(act.n_calls, 1);
    assert_string_equal(act.calls[0]->id, "b_0");
    result_for(r, "b_0", "ok", NOW);
    const Agentq__V1__RunState *s = aq_run_state(r);
    assert_int_equal(s->tool_calls, 3);
    const Agentq__V1__Message *last = s->conversation[s->n_conversation - 1];
    const char *ids[2] = {"b_0", "b_1"};
    assert_results(last, ids, 2); /* every tool_use answered */
    assert_true(last->blocks[1]->tool_result->is_error);
    assert_non_null(strstr(last->blocks[1]->tool_result->content[0]->text->text, "max_tool_calls"));
    assert_string_equal(s->steps[1]->tool_calls[1]->outcome, "ceiling");
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_CALL_FINAL);
    assert_string_equal(aq_run_state(r)->ceiling, "max_tool_calls");
    aq_run_free(r);

    /* fail: an answer asking for more than is left ends the run */
    lim = limits(10, 3, false);
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    run_tool_step(r, &lim, "a", 3); /* exactly the ceiling: fine */
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "a_%d", i);
        result_for(r, id, "ok", NOW);
    }
    assert_int_equal(aq_run_phase(r), AGENTQ__V1__RUN_PHASE__RUN_PHASE_NEED_MODEL);
    run_tool_step(r, &lim, "b", 1);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_FAIL);
    assert_non_null(strstr(act.fail_message, "max_tool_calls (3)"));
    aq_run_free(r);

    /* more tool_use blocks in one answer than a turn may dispatch */
    lim = limits(10, 1000, false);
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    run_tool_step(r, &lim, "m", AQ_RUN_MAX_CALLS_PER_TURN + 3);
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.n_calls, AQ_RUN_MAX_CALLS_PER_TURN);
    assert_int_equal(aq_run_state(r)->tool_calls, AQ_RUN_MAX_CALLS_PER_TURN);
    aq_run_free(r);
}

static void test_deadline(void **state)
{
    (void)state;
    Agentq__V1__Task t = task_of("run-late");
    aq_err err;
    aq_run_action act;
    aq_run *r = NULL;
    aq_run_limits lim = limits(10, 10, false);
    lim.deadline_unix_ms = NOW + 1000;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    assert_int_equal(aq_run_next(r, &lim, NOW + 999, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_CALL_MODEL);
    run_tool_step(r, &lim, "a", 2);
    assert_int_equal(aq_run_next(r, &lim, NOW + 1000, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_FAIL);
    assert_int_equal(act.fail_status, AQ_STEP_LIMIT);
    assert_non_null(strstr(act.fail_message, "deadline"));
    aq_run_free(r);

    /* final: calls not dispatched yet are not run; one last call */
    lim.ceiling_final = true;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    run_tool_step(r, &lim, "a", 2);
    result_for(r, "a_1", "ok", NOW);
    assert_int_equal(aq_run_next(r, &lim, NOW + 5000, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_CALL_FINAL);
    const Agentq__V1__Message *last = act.messages[act.n_messages - 1];
    const char *ids[2] = {"a_0", "a_1"};
    assert_results(last, ids, 2);
    assert_true(last->blocks[0]->tool_result->is_error);
    assert_false(last->blocks[1]->tool_result->is_error);
    assert_string_equal(aq_run_state(r)->ceiling, "deadline");
    aq_run_free(r);

    /* final from NEED_MODEL: the prompt task's text becomes a block */
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    assert_int_equal(aq_run_next(r, &lim, NOW + 5000, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_CALL_FINAL);
    assert_int_equal(act.n_messages, 1);
    assert_int_equal(act.messages[0]->n_blocks, 2);
    assert_string_equal(act.messages[0]->blocks[0]->text->text, "Find the answer.");
    assert_string_equal(act.messages[0]->content, "");
    aq_run_free(r);
}

static void test_new_with_history(void **state)
{
    (void)state;
    Agentq__V1__Message h1 = AGENTQ__V1__MESSAGE__INIT, h2 = AGENTQ__V1__MESSAGE__INIT;
    Agentq__V1__Message m1 = AGENTQ__V1__MESSAGE__INIT;
    h1.role = "user";
    h1.content = "earlier question";
    h2.role = "assistant";
    h2.content = "earlier answer";
    m1.role = "user";
    m1.content = "new question";
    const Agentq__V1__Message *hist[2] = {&h1, &h2};
    Agentq__V1__Message *msgs[1] = {&m1};
    Agentq__V1__Task t = task_of("run-h");
    t.prompt = "";
    t.messages = msgs;
    t.n_messages = 1;
    t.session_id = "sess-1";
    aq_run *r = NULL;
    aq_err err;
    assert_int_equal(aq_run_new(&t, hist, 2, NOW, &r, &err), AQ_OK);
    r = roundtrip(r);
    const Agentq__V1__RunState *s = aq_run_state(r);
    assert_int_equal(s->n_conversation, 3);
    assert_int_equal(s->history_messages, 2);
    assert_int_equal(s->own_from, 3);
    assert_string_equal(s->conversation[2]->content, "new question");
    assert_string_equal(s->session_id, "sess-1");
    size_t n_turn = 0;
    Agentq__V1__Message *const *turn = aq_run_turn(r, &n_turn);
    assert_int_equal(n_turn, 1); /* what goes to the session: not the history again */
    assert_string_equal(turn[0]->content, "new question");
    aq_run_free(r);

    /* limits from the task and the worker's defaults */
    aq_run_defaults d = {25, 100, 50, 200, false};
    aq_run_limits lim;
    t.max_steps = 500;
    t.ceiling_action = AGENTQ__V1__CEILING_ACTION__CEILING_ACTION_FINAL;
    aq_run_limits_resolve(&t, &d, &lim);
    assert_int_equal(lim.max_steps, 100);
    assert_int_equal(lim.max_tool_calls, 50);
    assert_true(lim.ceiling_final);
}

static void test_codec_caps_and_misuse(void **state)
{
    (void)state;
    Agentq__V1__Task t = task_of("run-codec");
    aq_run *r = NULL, *r2 = NULL;
    aq_err err;
    aq_buf b;
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    aq_buf_init(&b, CAP);
    assert_int_equal(aq_run_encode(r, 10, &b, &err), AQ_TOO_BIG);
    assert_non_null(strstr(err.msg, "runs_max_bytes"));
    assert_int_equal(aq_run_encode(r, CAP, &b, &err), AQ_OK);
    assert_int_equal(aq_run_decode(b.data, b.len, b.len - 1, &r2, &err), AQ_TOO_BIG);
    assert_int_equal(aq_run_decode("\xff\xff\xff", 3, CAP, &r2, &err), AQ_INVALID_ARG);
    assert_int_equal(aq_run_decode("", 0, CAP, &r2, &err), AQ_INVALID_ARG); /* no task id */
    aq_buf_free(&b);

    aq_run_limits lim = limits(5, 5, false);
    aq_run_tool_result res = {.tool_use_id = "nope", .outcome = "ok"};
    assert_int_equal(aq_run_apply_tool_result(r, &res, NOW, &err), AQ_INVALID_ARG);
    run_tool_step(r, &lim, "a", 1);
    assert_int_equal(aq_run_apply_tool_result(r, &res, NOW, &err), AQ_NOT_FOUND);
    answer x;
    answer_init(&x, "end_turn");
    add_text(&x, "hi");
    assert_int_equal(aq_run_apply_answer(r, &lim, &x.a, NOW, &err), AQ_INVALID_ARG);
    Agentq__V1__Result rr = AGENTQ__V1__RESULT__INIT;
    Agentq__V1__Usage u;
    assert_int_equal(aq_run_fill_result(r, &rr, &u, &err), AQ_INVALID_ARG);
    /* a schema violation is counted; a permanent failure ends the run */
    aq_run_tool_result sv = {.tool_use_id = "a_0", .text = "input.q: expected string",
                             .is_error = true, .outcome = "schema_violation"};
    assert_int_equal(aq_run_apply_tool_result(r, &sv, NOW, &err), AQ_OK);
    assert_int_equal(aq_run_state(r)->schema_violations, 1);
    assert_int_equal(aq_run_fail(r, AQ_HTTP_BAD_REQUEST, "the tool said no", NOW, &err), AQ_OK);
    aq_run_action act;
    assert_int_equal(aq_run_next(r, &lim, NOW, &act, &err), AQ_OK);
    assert_int_equal(act.kind, AQ_RUN_FAIL);
    assert_int_equal(act.fail_status, AQ_HTTP_BAD_REQUEST);
    assert_string_equal(act.fail_message, "the tool said no");
    aq_run_free(r);

    /* a tool_use without an id is refused */
    assert_int_equal(aq_run_new(&t, NULL, 0, NOW, &r, &err), AQ_OK);
    answer_init(&x, "tool_use");
    add_tool_use(&x, "", "search");
    assert_int_equal(aq_run_apply_answer(r, &lim, &x.a, NOW, &err), AQ_INVALID_ARG);
    aq_run_free(r);
    Agentq__V1__Task bad = task_of("");
    assert_int_equal(aq_run_new(&bad, NULL, 0, NOW, &r, &err), AQ_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_five_steps_parallel_out_of_order),
        cmocka_unit_test(test_idempotency_key),
        cmocka_unit_test(test_crash_resume),
        cmocka_unit_test(test_ceiling_fail_max_steps),
        cmocka_unit_test(test_ceiling_final_max_steps),
        cmocka_unit_test(test_final_answer_only_tool_use),
        cmocka_unit_test(test_max_tool_calls),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_new_with_history),
        cmocka_unit_test(test_codec_caps_and_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
