/* agent_checkpoint: write the checkpoint of a finished two-step agent run
 * (step 1 calls two tools in parallel, step 2 answers) to the runs bucket
 * through internal/agent, and append its turn to a session through
 * internal/session: what a worker leaves behind, for the `agentq run show`
 * and `agentq session show` test.
 *
 *   agent_checkpoint TASK_ID [SESSION_ID]     (NATS at $AGENTQ_NATS_URL) */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_config.h"
#include "agent/agent_store.h"
#include "core/clock.h"
#include "session/session.h"

#define CAP (1024 * 1024)

static int die(const char *what, const aq_err *err)
{
    fprintf(stderr, "agent_checkpoint: %s: %s\n", what, err ? err->msg : "");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return fprintf(stderr, "usage: agent_checkpoint TASK_ID [SESSION_ID]\n"), 2;
    const char *url = getenv("AGENTQ_NATS_URL");
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    aq_err err;
    if (natsConnection_ConnectTo(&nc, url ? url : NATS_DEFAULT_URL) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        return die("connect", NULL);
    int64_t now = aq_now_unix_ms();
    Agentq__V1__Task t = AGENTQ__V1__TASK__INIT;
    t.id = argv[1];
    t.prompt = "What is six times seven?";
    t.session_id = argc > 2 ? argv[2] : "";
    aq_run *r = NULL;
    aq_run_limits lim = {10, 10, 0, false};
    if (aq_run_new(&t, NULL, 0, now, &r, &err) != AQ_OK)
        return die("new run", &err);

    Agentq__V1__ContentBlock b[3] = {AGENTQ__V1__CONTENT_BLOCK__INIT, AGENTQ__V1__CONTENT_BLOCK__INIT,
                                     AGENTQ__V1__CONTENT_BLOCK__INIT};
    Agentq__V1__TextBlock text = AGENTQ__V1__TEXT_BLOCK__INIT;
    Agentq__V1__ToolUseBlock u1 = AGENTQ__V1__TOOL_USE_BLOCK__INIT, u2 = AGENTQ__V1__TOOL_USE_BLOCK__INIT;
    Agentq__V1__ContentBlock *bp[3] = {&b[0], &b[1], &b[2]};
    text.text = "Let me compute that.";
    b[0].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TEXT;
    b[0].text = &text;
    u1.id = "toolu_01";
    u1.name = "multiply";
    u1.input_json = "{\"a\":6,\"b\":7}";
    u2.id = "toolu_02";
    u2.name = "search";
    u2.input_json = "{\"q\":\"six times seven\"}";
    b[1].block_case = b[2].block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
    b[1].tool_use = &u1;
    b[2].tool_use = &u2;
    aq_run_answer a = {.content = bp, .n_content = 3, .stop_reason = "tool_use",
                       .model = "claude-haiku-4-5", .route_rule = "first-step",
                       .input_tokens = 120, .output_tokens = 40, .cost_micro_usd = 320,
                       .latency_ms = 210};
    if (aq_run_apply_answer(r, &lim, &a, now, &err) != AQ_OK)
        return die("answer 1", &err);
    aq_run_tool_result r2 = {.tool_use_id = "toolu_02", .text = "42 (web)", .outcome = "ok",
                             .latency_ms = 55, .attempts = 2};
    aq_run_tool_result r1 = {.tool_use_id = "toolu_01", .text = "42", .outcome = "ok",
                             .latency_ms = 12, .attempts = 1};
    if (aq_run_apply_tool_result(r, &r2, now, &err) != AQ_OK ||
        aq_run_apply_tool_result(r, &r1, now, &err) != AQ_OK)
        return die("tool results", &err);
    text.text = "The answer is 42.";
    aq_run_answer a2 = {.content = bp, .n_content = 1, .stop_reason = "end_turn",
                        .model = "claude-sonnet-4-5", .route_rule = "later-steps",
                        .input_tokens = 300, .output_tokens = 12, .cache_read_input_tokens = 100,
                        .cost_micro_usd = 1250, .latency_ms = 640};
    if (aq_run_apply_answer(r, &lim, &a2, now, &err) != AQ_OK)
        return die("answer 2", &err);
    uint64_t rev = 0;
    if (aq_run_save(js, AQ_AGENT_DEFAULT_RUNS_BUCKET, r, 0, CAP, &rev, &err) != AQ_OK)
        return die("save", &err);
    if (argc > 2) {
        size_t n = 0;
        Agentq__V1__Message *const *turn = aq_run_turn(r, &n);
        bool appended = false;
        if (aq_session_append(js, AQ_AGENT_DEFAULT_SESSION_BUCKET, argv[2], argv[1],
                              (const Agentq__V1__Message *const *)turn, n, now, CAP, 5000,
                              &appended, &err) != AQ_OK)
            return die("session append", &err);
    }
    printf("%llu\n", (unsigned long long)rev);
    aq_run_free(r);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return 0;
}
