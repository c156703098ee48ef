#!/usr/bin/env bash
# `agentq init` makes the runs and sessions buckets; `agentq run show` and
# `agentq session show` (text and --json) print a checkpoint and a session
# written through internal/agent and internal/session (tests/support/agent_checkpoint).
source "$(dirname "$0")/lib.sh"
CKPT="$AQ_BIN/tests/support/agent_checkpoint"

start_nats
"$AGENTQ" init > "$T/init.out" 2>&1 || fail "agentq init: $(cat "$T/init.out")"
grep -Eq '^kv +agentq-runs +created' "$T/init.out" || fail "init did not create agentq-runs: $(cat "$T/init.out")"
grep -Eq '^kv +agentq-sessions +created' "$T/init.out" || fail "init did not create agentq-sessions"
"$AGENTQ" init --runs_ttl=24h > "$T/init2.out" 2>&1 || fail "second agentq init"
grep -Eq '^kv +agentq-runs +updated' "$T/init2.out" || fail "a second init did not update agentq-runs"

rc=0; "$AGENTQ" run show run-1 > "$T/none.out" 2>&1 || rc=$?
[ "$rc" -eq 4 ] || fail "run show of a missing run: exit $rc, want 4"
grep -q "no run run-1" "$T/none.out" || fail "missing run message: $(cat "$T/none.out")"
rc=0; "$AGENTQ" run show 'bad id' > /dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "run show of an invalid id: exit $rc, want 2"
rc=0; "$AGENTQ" session show chat-1 > /dev/null 2>&1 || rc=$?
[ "$rc" -eq 4 ] || fail "session show of a missing session: exit $rc, want 4"

"$CKPT" run-1 chat-1 > "$T/ckpt.out" || fail "agent_checkpoint"

"$AGENTQ" run show run-1 > "$T/show.out" || fail "run show"
for want in "run run-1  done  steps 2  tool calls 2" \
            "step 1  claude-haiku-4-5 (first-step)" \
            "step 2  claude-sonnet-4-5 (later-steps)" \
            "tool multiply toolu_01  ok  12 ms  1 attempt" \
            "tool search toolu_02  ok  55 ms  2 attempts" \
            "-> tool_use multiply toolu_01" \
            "<- tool_result toolu_02" \
            "The answer is 42." \
            "session chat-1"; do
    grep -qF -- "$want" "$T/show.out" || fail "run show lacks '$want':
$(cat "$T/show.out")"
done

"$AGENTQ" run show --json run-1 > "$T/show.json" || fail "run show --json"
jq -e '.phase == "done" and .steps == 2 and .tool_calls == 2
       and .usage.input_tokens == 420 and .cost_micro_usd == 1570
       and (.step_log | length) == 2 and (.step_log[0].tool_calls | length) == 2
       and .step_log[0].tool_calls[1].attempts == 2
       and .step_log[1].model == "claude-sonnet-4-5"
       and (.conversation | length) == 4
       and .conversation[1].content[1].type == "tool_use"
       and .conversation[1].content[1].input.a == 6
       and .conversation[2].content[0].type == "tool_result"
       and .conversation[2].content[0].tool_use_id == "toolu_01"
       and .content[0].text == "The answer is 42."
       and .revision > 0' "$T/show.json" >/dev/null || fail "run show --json: $(cat "$T/show.json")"

"$AGENTQ" session show chat-1 > "$T/session.out" || fail "session show"
grep -qF "session chat-1  turns 1" "$T/session.out" || fail "session show: $(cat "$T/session.out")"
grep -qF "turn 1  task run-1" "$T/session.out" || fail "session show turn: $(cat "$T/session.out")"
"$AGENTQ" session show --json chat-1 > "$T/session.json" || fail "session show --json"
jq -e '.session_id == "chat-1" and (.turns | length) == 1 and .turns[0].task_id == "run-1"
       and (.turns[0].messages | length) == 4
       and .turns[0].messages[0].content == "What is six times seven?"' "$T/session.json" >/dev/null \
    || fail "session show --json: $(cat "$T/session.json")"
echo "agent_cli: ok"
