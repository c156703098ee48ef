/* An agent run's state and its step state machine: pure logic, no I/O.
 *
 * A run is a task with tools: the worker calls the model, runs the tools it
 * asks for, calls it again, ... until the model answers without tools or a
 * ceiling is reached. Everything the loop needs to resume after a crash is in
 * one protobuf message, agentq.v1.RunState (schemas/agentq/v1/run.proto),
 * which the pipeline checkpoints in the KV bucket agentq-runs (agent_store.h)
 * after every model answer and every batch of tool results.
 *
 * Driving a run from an event loop (the pipeline), one delivery:
 *
 *   load the checkpoint (agent_store.h)  -> absent: aq_run_new(task, history)
 *   loop:
 *     aq_run_next(run, limits, now, &act)
 *       CALL_MODEL     call the model with act.messages (tools per the task);
 *                      aq_run_apply_answer(); save; publish the step event
 *       DISPATCH_TOOLS for each act.calls[i] (results not known yet): validate
 *                      its input, dispatch it with aq_run_idempotency_key();
 *                      aq_run_apply_tool_result() as each comes back (any
 *                      order). When the batch is complete (aq_run_phase() is
 *                      no longer TOOLS_PENDING) save.
 *       CALL_FINAL     as CALL_MODEL, with tool_choice none (tools still
 *                      sent: the conversation holds tool blocks)
 *       DONE / FAIL    aq_run_fill_result(); store the Result; settle
 *
 * The transition table (every phase change happens in agent_run.c through
 * `go`, and only along a row of its `transitions[]`, which this copies):
 *
 *   phase          event         condition                          -> phase
 *   NEED_MODEL     next          deadline passed, fail              -> FAILED
 *   NEED_MODEL     next          deadline passed, final             -> NEED_FINAL
 *   NEED_MODEL     next          steps >= max_steps, fail           -> FAILED
 *   NEED_MODEL     next          steps >= max_steps, final          -> NEED_FINAL
 *   NEED_MODEL     answer        no tool_use                        -> DONE
 *   NEED_MODEL     answer        tool_use at max_steps, fail        -> FAILED
 *   NEED_MODEL     answer        more tool_use than left, fail      -> FAILED
 *   NEED_MODEL     answer        tool_use                           -> TOOLS_PENDING
 *   TOOLS_PENDING  next          deadline passed, fail              -> FAILED
 *   TOOLS_PENDING  batch done    a ceiling was reached (final)      -> NEED_FINAL
 *   TOOLS_PENDING  batch done    otherwise                          -> NEED_MODEL
 *   NEED_FINAL     answer        (its tool_use blocks are dropped)  -> DONE
 *   NEED_MODEL, TOOLS_PENDING, NEED_FINAL, FAILED
 *                  aq_run_fail                                      -> FAILED
 *
 * "batch done" is the last missing tool result (aq_run_apply_tool_result),
 * or, in TOOLS_PENDING past the deadline with `final`, aq_run_next giving
 * every call not dispatched yet its "not run" result (outcome "ceiling").
 * An answer whose calls are all beyond max_tool_calls (with `final`) is an
 * answer and a batch done in one call.
 *
 * Ceilings. `fail`: the run ends FAILED, class step_limit, as soon as the
 * model asks for a tool call it may not make (at step max_steps, or more calls
 * than max_tool_calls leaves), nothing of that answer is dispatched; the
 * transcript is kept. `final`: the calls within max_tool_calls still run
 * (calls beyond it are not dispatched: each gets an is_error tool_result
 * "not run: ..." and the outcome "ceiling", so the conversation stays valid),
 * then one last model call with tool_choice none and a user text asking for
 * the final answer, recorded with final_at_ceiling. So a run makes at most
 * max_steps model calls with `fail`, max_steps + 1 with `final`, and at most
 * max_tool_calls dispatches. The deadline is checked before every model call
 * and every dispatch; with `final` the final call is made even past it (one
 * bounded call is what `final` promises).
 *
 * Idempotency: every tool call carries aq_run_idempotency_key(), derived only
 * from the task id and the model's tool_use id, both stored in the checkpoint:
 * a call repeated after a crash or redelivery has the same key.
 *
 * Errors: AQ_INVALID_ARG and AQ_NOT_FOUND (misuse, unknown ids) are found
 * before anything changes. After AQ_NOMEM the run may be half-changed: drop
 * it and reload the last checkpoint (the same decision comes out again).
 *
 * An aq_run is not thread-safe; pointers handed out (act.messages, act.calls,
 * aq_run_state) stay valid until the next call that changes the run. */
#ifndef AQ_AGENT_AGENT_RUN_H
#define AQ_AGENT_AGENT_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentq/v1/result.pb-c.h"
#include "agentq/v1/run.pb-c.h"
#include "agentq/v1/task.pb-c.h"
#include "core/buf.h"
#include "core/status.h"

typedef struct aq_run aq_run;

/* Tool calls dispatched from one assistant turn at most; a turn with more
 * tool_use blocks gets an is_error tool_result ("not run", outcome
 * "ceiling") for the ones past it. */
#define AQ_RUN_MAX_CALLS_PER_TURN 64

/* The run's ceilings, resolved from the task and the worker's configuration
 * (aq_run_limits_resolve). */
typedef struct aq_run_limits {
    uint32_t max_steps;       /* model calls, >= 1 */
    uint32_t max_tool_calls;  /* dispatched tool calls */
    int64_t deadline_unix_ms; /* 0: none */
    bool ceiling_final;       /* CEILING_ACTION_FINAL, else fail */
} aq_run_limits;

/* The worker's defaults and caps (agent_config.h has their option rows). */
typedef struct aq_run_defaults {
    int64_t max_steps, max_steps_cap;
    int64_t max_tool_calls, max_tool_calls_cap;
    bool ceiling_final; /* agent_ceiling_action = final */
} aq_run_defaults;

/* 0 in the task means the default; a value above the cap is the cap. */
void aq_run_limits_resolve(const Agentq__V1__Task *task, const aq_run_defaults *d,
                           aq_run_limits *out);

/* A new run of `task`: the conversation is `history` (copied; the session's
 * messages already cut to the context budget, may be NULL with n_history 0),
 * then the task's messages (or its prompt as one user message). */
aq_status aq_run_new(const Agentq__V1__Task *task, const Agentq__V1__Message *const *history,
                     size_t n_history, int64_t now_unix_ms, aq_run **out, aq_err *err);
void aq_run_free(aq_run *r); /* accepts NULL */

/* The checkpoint codec. Encoding a state over `cap` bytes, or decoding more
 * than `cap` bytes, is AQ_TOO_BIG naming both sizes; bytes that are not a
 * RunState, or one of an unknown version or without a task id, are
 * AQ_INVALID_ARG. `out` is an initialized buffer whose content is replaced. */
aq_status aq_run_encode(const aq_run *r, size_t cap, aq_buf *out, aq_err *err);
aq_status aq_run_decode(const void *data, size_t len, size_t cap, aq_run **out, aq_err *err);

/* Read-only view of the state (for the CLI, events, tests). */
const Agentq__V1__RunState *aq_run_state(const aq_run *r);
Agentq__V1__RunPhase aq_run_phase(const aq_run *r);
/* "need_model", "tools_pending", "need_final", "done", "failed", "unknown". */
const char *aq_run_phase_name(Agentq__V1__RunPhase ph);

/* What this task adds to its session: the conversation after the history
 * (the task's messages, then the run's turns); n via *n. */
Agentq__V1__Message *const *aq_run_turn(const aq_run *r, size_t *n);

/* ---- the next action ---- */

typedef enum aq_run_action_kind {
    AQ_RUN_CALL_MODEL,
    AQ_RUN_DISPATCH_TOOLS,
    AQ_RUN_CALL_FINAL,
    AQ_RUN_DONE,
    AQ_RUN_FAIL,
} aq_run_action_kind;

typedef struct aq_run_action {
    aq_run_action_kind kind;
    /* CALL_MODEL, CALL_FINAL: the conversation to send and the 1-based step
     * this call will be. CALL_FINAL: tool_choice must be none. */
    Agentq__V1__Message *const *messages;
    size_t n_messages;
    uint32_t step;
    bool tools_disabled;
    /* DISPATCH_TOOLS: the calls still without a result, in the order of the
     * model's tool_use blocks (id, name, input_json). */
    const Agentq__V1__PendingToolCall *calls[AQ_RUN_MAX_CALLS_PER_TURN];
    size_t n_calls;
    /* FAIL: the status (class) and message of the Result. */
    aq_status fail_status;
    const char *fail_message;
} aq_run_action;

/* What to do next. May change the phase (a ceiling reached by the deadline
 * or by limits lower than when the run started): the same decision is
 * derived again from the last checkpoint after a crash, so the caller need
 * not save before acting on it. */
aq_status aq_run_next(aq_run *r, const aq_run_limits *lim, int64_t now_unix_ms,
                      aq_run_action *act, aq_err *err);

/* ---- outcomes ---- */

/* A model answer (CALL_MODEL or CALL_FINAL). `content` is copied. */
typedef struct aq_run_answer {
    Agentq__V1__ContentBlock *const *content;
    size_t n_content;
    const char *stop_reason;
    const char *model;
    const char *route_rule;
    uint32_t input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens;
    uint64_t cost_micro_usd;
    bool cost_unknown;
    uint64_t latency_ms;
    bool cache_hit;
} aq_run_answer;

/* Appends the assistant turn and the step record, sums usage and cost, and
 * sets the pending tool calls from its tool_use blocks (see the ceilings
 * above). AQ_INVALID_ARG when no model call was due (phase not NEED_MODEL or
 * NEED_FINAL) or a tool_use block has no id. */
aq_status aq_run_apply_answer(aq_run *r, const aq_run_limits *lim, const aq_run_answer *a,
                              int64_t now_unix_ms, aq_err *err);

/* One tool call's result, by tool_use id. */
typedef struct aq_run_tool_result {
    const char *tool_use_id;
    /* The result content (copied); or, with n_content 0, `text` (may be NULL:
     * no content). */
    Agentq__V1__ContentBlock *const *content;
    size_t n_content;
    const char *text;
    bool is_error;
    /* ToolCallRecord.outcome: "ok", "error", "schema_violation", "timeout",
     * "no_responders", "bad_reply", "permanent_failure". */
    const char *outcome;
    uint64_t latency_ms;
    uint32_t attempts;
} aq_run_tool_result;

/* Records the result. A result for a call that already has one is ignored
 * (AQ_OK: a redelivered or late answer); an id that is not pending is
 * AQ_NOT_FOUND. With the last missing result the batch is complete: ONE user
 * message is appended whose content starts with a tool_result for every
 * tool_use of the assistant turn, in their order, and the step record gets
 * the tool call records. A "permanent_failure" is only recorded: the caller
 * then ends the run with aq_run_fail. */
aq_status aq_run_apply_tool_result(aq_run *r, const aq_run_tool_result *res, int64_t now_unix_ms,
                                   aq_err *err);

/* Ends the run FAILED with this status's class and message (a tool's
 * permanent failure, a budget the run may not exceed, ...). */
aq_status aq_run_fail(aq_run *r, aq_status st, const char *message, int64_t now_unix_ms,
                      aq_err *err);

/* Fills the run's part of a Result from a finished run (DONE or FAILED,
 * else AQ_INVALID_ARG): status, output (the final text), content,
 * stop_reason, model, usage and cost (sums), steps, tool_calls, step_log,
 * transcript_key (the task id: the checkpoint's key), session_id,
 * llm_latency_ms, error. Pointers borrow from the run (and `usage` from
 * `usage_mem`): keep both alive while `res` is used, do not free `res`'s
 * fields. The caller sets the rest (id, type, worker, ...). */
aq_status aq_run_fill_result(aq_run *r, Agentq__V1__Result *res, Agentq__V1__Usage *usage_mem,
                             aq_err *err);

/* "<task id>:<tool_use id>": the Agentq-Idempotency-Key of a tool call.
 * Stable across redeliveries and crashes (both parts are in the
 * checkpoint). AQ_TOO_BIG when it does not fit `n`. */
#define AQ_RUN_IDEMPOTENCY_KEY_MAX 512
aq_status aq_run_idempotency_key(const char *task_id, const char *tool_use_id, char *out, size_t n,
                                 aq_err *err);

/* The text asked of the model at a ceiling with action final. */
#define AQ_RUN_FINAL_PROMPT                                                                      \
    "This run has reached its limit (%s). Do not call any tools. Answer now with your final "  \
    "answer, from what you have so far."

#endif
