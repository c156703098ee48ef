#!/usr/bin/env bash
# Sessions: a conversation continued by three tasks of one session_id, two
# of them published at once. One task of a session runs at a time (the
# lease: the other waits inside its delivery), each sees the turns before
# it, no turn is lost or interleaved; agentq session show prints them.
source "$(dirname "$0")/lib.sh"

start_nats
start_sim
agentq init > /dev/null
start_worker --concurrency=8 --session_lease_ttl=30s
W=$WORKER_PID

SCHEMA='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
# No tool service: tool calls end no_responders (is_error results); the run
# goes on all the same. One tool step, then the answer.
task() { jq -nc --arg id "$1" --arg p "$2" --arg s "$SCHEMA" \
    '{id: $id, type: "chat", session_id: "sess-1", prompt: $p, max_tokens: 128,
      tools: [{name: "get_weather", input_schema_json: $s}]}'; }

task s1 '[sim tool_steps=1] First: remember the word APRICOT.' > "$T/s1.jsonl"
agentq submit --file "$T/s1.jsonl" > /dev/null
r1=$(agentq wait --timeout=30s s1) || fail "s1: $r1"
jq -e '.status == "STATUS_COMPLETED" and .session_id == "sess-1" and .steps == 2' <<< "$r1" > /dev/null || fail "s1: $r1"

# Two at once: one waits for the other's lease.
{ task s2 '[sim tool_steps=1] Second: and BANANA.'; task s3 '[sim tool_steps=1] Third: and CHERRY.'; } > "$T/s23.jsonl"
agentq submit --file "$T/s23.jsonl" > /dev/null
r2=$(agentq wait --timeout=60s s2) || fail "s2: $r2"
r3=$(agentq wait --timeout=60s s3) || fail "s3: $r3"
for r in "$r2" "$r3"; do
    jq -e '.status == "STATUS_COMPLETED" and .session_id == "sess-1"' <<< "$r" > /dev/null || fail "s2/s3: $r"
done

agentq session show --json sess-1 > "$T/sess.json" || fail "agentq session show"
# Three turns, s1 first (its prompt, the tool step, the answer); the
# simulator's [sim tool_steps=1] is the conversation's first user message, so
# the later runs, whose conversation starts with s1's turn, answer at once.
jq -e '(.turns | length) == 3 and .turns[0].task_id == "s1"
       and ([.turns[].task_id] | sort) == ["s1","s2","s3"]
       and (.turns[0].messages | length) == 4
       and ([.turns[1:][].messages | length] | all(. >= 2))' "$T/sess.json" > /dev/null ||
    fail "session history: $(head -c 800 "$T/sess.json")"
# Each later run saw the turns before it: its transcript starts with them.
first=$(jq -r '.turns[1].task_id' "$T/sess.json"); second=$(jq -r '.turns[2].task_id' "$T/sess.json")
n0=$(jq '.turns[0].messages | length' "$T/sess.json"); n1=$(jq '.turns[1].messages | length' "$T/sess.json")
agentq run show --json "$first" | jq -e --argjson n "$n0" '.history_messages == $n' > /dev/null ||
    fail "$first did not start from s1's turn: $(agentq run show --json "$first" | jq -c '{history_messages}')"
agentq run show --json "$second" | jq -e --argjson n "$((n0 + n1))" '.history_messages == $n' > /dev/null ||
    fail "$second did not start from both turns before it: $(agentq run show --json "$second" | jq -c '{history_messages}')"
grep -q 'session busy' "$T"/worker-*.log || note "the two tasks did not overlap (no lease wait seen)"
echo "ok - a session continued by three tasks, two at once: 3 turns in order, each run saw the turns before it"

# A task of the session without tools: a one-step run that sees the history too.
jq -nc '{id: "s4", type: "chat", session_id: "sess-1", prompt: "Fourth: no tools.", max_tokens: 64}' > "$T/s4.jsonl"
agentq submit --file "$T/s4.jsonl" > /dev/null
r4=$(agentq wait --timeout=30s s4) || fail "s4: $r4"
jq -e '.status == "STATUS_COMPLETED" and .steps == 1 and .session_id == "sess-1"' <<< "$r4" > /dev/null || fail "s4: $r4"
n2=$(jq '.turns[2].messages | length' "$T/sess.json")
agentq run show --json s4 | jq -e --argjson n "$((n0 + n1 + n2))" '.history_messages == $n' > /dev/null ||
    fail "s4 did not start from the three turns before it"
agentq session show --json sess-1 | jq -e '(.turns | length) == 4 and .turns[3].task_id == "s4"' > /dev/null ||
    fail "s4's turn not appended"
echo "ok - a session task without tools: one step, the history before it, its turn appended"
kill -0 "$W" 2>/dev/null || fail "the worker died"
echo PASS
