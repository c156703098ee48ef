/* Fuzz target: run checkpoints and session histories, the bytes a worker
 * reads back from the KV buckets agentq-runs and agentq-sessions (written by
 * agentq, but anyone with access to the bucket can put anything there).
 * aq_run_decode, then the state machine driven from whatever decoded for a
 * few actions (answers with a tool call, results for every dispatched call),
 * the JSON view, the Result; aq_session_decode and the context window.
 *
 * Invariants beyond "no crash, no leak, no UB":
 *  - a decoded run encodes again and decodes to the same bytes;
 *  - aq_run_next always gives an action; after every result of a dispatch
 *    the batch is over (the phase is no longer TOOLS_PENDING);
 *  - a finished run fills a Result that packs;
 *  - the window of a decoded session fits its budget and starts with a user
 *    turn without tool_result blocks. */
#include "fuzz.h"

#include <jansson.h>
#include <string.h>

#include "agent/agent_json.h"
#include "agent/agent_run.h"
#include "session/session.h"

#define CAP (1 << 20)

static void drive(aq_run *r, bool final)
{
    aq_err err;
    aq_run_limits lim = {3, 4, 0, final};
    for (int i = 0; i < 8; i++) {
        aq_run_action act;
        aq_status st = aq_run_next(r, &lim, 1000, &act, &err);
        FUZZ_CHECK_ERR(st == AQ_OK, &err);
        if (act.kind == AQ_RUN_CALL_MODEL || act.kind == AQ_RUN_CALL_FINAL) {
            char id[16];
            snprintf(id, sizeof(id), "fz%d", i);
            Agentq__V1__ContentBlock b = AGENTQ__V1__CONTENT_BLOCK__INIT;
            Agentq__V1__ToolUseBlock u = AGENTQ__V1__TOOL_USE_BLOCK__INIT;
            Agentq__V1__ContentBlock *bp[1] = {&b};
            u.id = id;
            u.name = "t";
            u.input_json = "{}";
            b.block_case = AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_USE;
            b.tool_use = &u;
            aq_run_answer a = {.content = bp, .n_content = 1, .stop_reason = "tool_use",
                               .model = "m", .input_tokens = 1};
            st = aq_run_apply_answer(r, &lim, &a, 1000, &err);
            FUZZ_CHECK_ERR(st == AQ_OK, &err);
        } else if (act.kind == AQ_RUN_DISPATCH_TOOLS) {
            size_t n = act.n_calls;
            char *ids[AQ_RUN_MAX_CALLS_PER_TURN]; /* whole: a crafted id may be long */
            for (size_t k = 0; k < n; k++)
                FUZZ_CHECK((ids[k] = strdup(act.calls[k]->id)) != NULL);
            for (size_t k = 0; k < n; k++) {
                aq_run_tool_result res = {.tool_use_id = ids[k], .text = "r", .outcome = "ok"};
                st = aq_run_apply_tool_result(r, &res, 1000, &err);
                /* duplicate ids in a crafted checkpoint: the first takes it */
                FUZZ_CHECK_ERR(st == AQ_OK || st == AQ_INVALID_ARG, &err);
            }
            for (size_t k = 0; k < n; k++)
                free(ids[k]);
            /* every call had a result, unless the checkpoint held more calls
             * than one dispatch lists */
            size_t undone = 0;
            const Agentq__V1__RunState *s = aq_run_state(r);
            for (size_t k = 0; k < s->n_pending; k++)
                undone += !s->pending[k]->done;
            FUZZ_CHECK(aq_run_phase(r) != AGENTQ__V1__RUN_PHASE__RUN_PHASE_TOOLS_PENDING ||
                       undone > 0);
        } else {
            Agentq__V1__Result res = AGENTQ__V1__RESULT__INIT;
            Agentq__V1__Usage u;
            st = aq_run_fill_result(r, &res, &u, &err);
            FUZZ_CHECK_ERR(st == AQ_OK, &err);
            uint8_t *buf = malloc(agentq__v1__result__get_packed_size(&res) + 1);
            FUZZ_CHECK(buf);
            agentq__v1__result__pack(&res, buf);
            free(buf);
            break;
        }
    }
}

static void run_input(const uint8_t *data, size_t size)
{
    aq_run *r = NULL, *r2 = NULL;
    aq_err err;
    if (aq_run_decode(data, size, CAP, &r, &err) != AQ_OK)
        return;
    aq_buf a, b;
    aq_buf_init(&a, 4 * CAP);
    aq_buf_init(&b, 4 * CAP);
    aq_status st = aq_run_encode(r, 4 * CAP, &a, &err);
    FUZZ_CHECK_ERR(st == AQ_OK, &err);
    st = aq_run_decode(a.data, a.len, 4 * CAP, &r2, &err);
    FUZZ_CHECK_ERR(st == AQ_OK, &err);
    st = aq_run_encode(r2, 4 * CAP, &b, &err);
    FUZZ_CHECK_ERR(st == AQ_OK, &err);
    FUZZ_CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    json_decref(aq_agent_run_json(aq_run_state(r)));
    drive(r, size & 1);
    drive(r2, !(size & 1));
    aq_buf_free(&a);
    aq_buf_free(&b);
    aq_run_free(r);
    aq_run_free(r2);
}

static void session_input(const uint8_t *data, size_t size)
{
    Agentq__V1__Session *s = NULL;
    aq_err err;
    if (aq_session_decode(data, size, CAP, &s, &err) != AQ_OK)
        return;
    const Agentq__V1__Message **msgs = NULL;
    size_t n = 0;
    if (aq_session_messages(s, &msgs, &n, &err) == AQ_OK) {
        int64_t budget = (int64_t)(size % 64);
        size_t start = aq_session_window(msgs, n, budget);
        int64_t total = 0;
        for (size_t i = start; i < n; i++)
            total += aq_session_message_tokens(msgs[i]);
        FUZZ_CHECK(start <= n && total <= budget);
        if (start < n) {
            FUZZ_CHECK(strcmp(msgs[start]->role, "user") == 0);
            for (size_t k = 0; k < msgs[start]->n_blocks; k++)
                FUZZ_CHECK(msgs[start]->blocks[k]->block_case !=
                           AGENTQ__V1__CONTENT_BLOCK__BLOCK_TOOL_RESULT);
        }
        free(msgs);
    }
    aq_session_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_input(data, size);
    session_input(data, size);
    return 0;
}
