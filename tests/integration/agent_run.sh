#!/usr/bin/env bash
# Agent runs end to end: real nats-server, agentq-sim answering tool use,
# the example C tool service (examples/tool-service-c), the worker's loop.
#   * a 5-step run with two tools and parallel calls: the Result's steps,
#     tool_calls, step_log and content, the transcript in agentq-runs
#     (agentq run show), every idempotency key seen once by the tool service,
#     one model call per step, two checkpoints per step at most;
#   * a schema violation (sim fault_tool_schema) goes back as an is_error
#     result, is counted, and the model repairs the call;
#   * tool timeout, no responders and a bad reply: outcomes recorded, the run
#     still completes with is_error results;
#   * a tool's permanent failure: FAILED (tool_failed), dead-lettered;
#   * both ceiling modes: fail -> DLQ step_limit + FAILED result; final ->
#     COMPLETED with one last call without tools;
#   * kill -9 mid-run, restart: the run resumes from its checkpoint, no stored
#     step is asked again, no stored tool call is run again;
#   * a budget spent mid-run: failed (budget_action=fail), or parked and
#     resumed without repeating a step once the budget is raised (defer).
source "$(dirname "$0")/lib.sh"

PY=$(command -v python3)
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
C_SERVICE="$AQ_BIN/examples/tool-service-c/agentq-example-tool-service"
[ -x "$C_SERVICE" ] || fail "no $C_SERVICE: build the examples"

start_nats
start_sim
agentq init > /dev/null
"$C_SERVICE" --url "$AGENTQ_NATS_URL" --keys "$T/keys" > "$T/service-c.log" 2>&1 &
PIDS+=($!)
wait_until 10 grep -q '^ready' "$T/service-c.log" || fail "the C tool service did not start"
# The slow one: get_weather after 2 s, on its own prefix (tool slow_weather maps to it).
"$C_SERVICE" --url "$AGENTQ_NATS_URL" --prefix slow.tools --delay 2000 > "$T/service-slow.log" 2>&1 &
PIDS+=($!)
wait_until 10 grep -q '^ready' "$T/service-slow.log" || fail "the slow tool service did not start"

MPORT=$(free_port)
start_worker --concurrency=16 --metrics_port="$MPORT" --metrics_bind=127.0.0.1 \
    --tool_timeout=400ms --tool_max_attempts=2 --tool_max_reply_bytes=200 \
    --tool_subjects='slow_weather=slow.tools.get_weather;info_tool=$SRV.INFO'
W=$WORKER_PID
metric() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 == m {print $2}' | head -1; }
wait_until 10 curl -sf "http://127.0.0.1:$MPORT/metrics" || fail "no /metrics"

WEATHER='{"type":"object","properties":{"city":{"type":"string"},"units":{"type":"string","enum":["c","f"]}},"required":["city"]}'
ORDER='{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}'
tool() { jq -nc --arg n "$1" --arg s "$2" '{name: $n, description: "tool \($n)", input_schema_json: $s}'; }
# task ID PROMPT TOOLS_JSON_ARRAY [EXTRA_JSON]: one JSONL task
task() { local extra=${4:-'{}'}; jq -nc --arg id "$1" --arg p "$2" --argjson t "$3" --argjson x "$extra" \
    '{id: $id, type: "agent", prompt: $p, tools: $t, max_tokens: 256} + $x'; }
TWO="[$(tool get_weather "$WEATHER"),$(tool lookup_order "$ORDER")]"
submit() { agentq submit --file "$1" > /dev/null || fail "submit $1"; }
result() { agentq wait --timeout="${2:-30s}" "$1" 2>/dev/null || true; }

# ---- 1. five steps, two tools, two calls a step ----
note "5-step run"
before=$(sim_stats | jq .requests_total)
task run5 '[sim tool_steps=4 tool_parallel=2] Plan a trip: weather and my order.' "$TWO" > "$T/run5.jsonl"
submit "$T/run5.jsonl"
r=$(result run5)
jq -e '.status == "STATUS_COMPLETED" and .steps == 5 and .tool_calls == 8 and .stop_reason == "end_turn"
       and (.step_log | length) == 5 and ([.step_log[] | select(.model | length > 0)] | length) == 5
       and ([.step_log[0:4][] | .tool_calls | length] == [2,2,2,2])
       and ([.step_log[].tool_calls[]? | .outcome] | all(. == "ok"))
       and (.content | length) >= 1 and (.output | test("Tool results"))
       and .transcript_key == "run5" and .usage.output_tokens > 0 and .cost_micro_usd > 0' <<< "$r" > /dev/null ||
    fail "5-step run: $r"
calls=$(( $(sim_stats | jq .requests_total) - before ))
[ "$calls" -eq 5 ] || fail "5-step run made $calls model calls, not 5"
# The service writes "<tool> <key>" per request it gets.
keys=$(awk '$2 ~ /^run5:/' "$T/keys" | wc -l)
uniq_keys=$(awk '$2 ~ /^run5:/ {print $2}' "$T/keys" | sort -u | wc -l)
[ "$keys" -eq 8 ] && [ "$uniq_keys" -eq 8 ] || fail "tool service saw $keys keys ($uniq_keys distinct) for run5, not 8 once each"
agentq run show --json run5 > "$T/run5.json" || fail "agentq run show run5"
jq -e '.phase == "done" and (.steps | length) == 5 and (.conversation | length) == 10' "$T/run5.json" > /dev/null ||
    fail "run5 transcript: $(head -c 600 "$T/run5.json")"
# every tool_result answers the tool_use before it, in order
jq -e '[.conversation | to_entries[] | select(.value.role == "assistant") | .key] as $a
       | [ $a[] as $i | (.conversation[$i].content // [] | map(select(.type == "tool_use") | .id))
           == ((.conversation[$i + 1].content // []) | map(select(.type == "tool_result") | .tool_use_id)) ]
       | all' "$T/run5.json" > /dev/null || fail "run5 transcript: tool_results do not answer their tool_use"
ckpt=$(metric agentq_agent_checkpoints_total)
note "5-step run: 5 model calls, 8 tool calls (keys once each), $ckpt checkpoint writes"
[ "${ckpt%.*}" -le 10 ] || fail "$ckpt checkpoint writes for 5 steps (at most 2 a step)"
echo "ok - 5-step run with parallel tool calls"

# ---- 1b. agentq watch: the step events live, then the Result ----
note "watch"
agentq watch --timeout=30s watch1 > "$T/watch.out" 2> "$T/watch.err" &
WATCH=$!
sleep 0.5 # subscribed (events published before are not stored)
task watch1 '[sim tool_steps=2] Weather twice.' "[$(tool get_weather "$WEATHER")]" > "$T/watch.jsonl"
submit "$T/watch.jsonl"
wait "$WATCH" || fail "agentq watch: exit $? $(cat "$T/watch.err")"
jq -s -e 'length == 4 and ([.[0:3][] | .step] == [1,2,3]) and .[0].task_id == "watch1"
          and .[0].tool_calls[0].name == "get_weather" and .[0].tool_calls[0].outcome == "ok"
          and .[2].phase == "done" and .[3].status == "STATUS_COMPLETED" and .[3].steps == 3' \
    "$T/watch.out" > /dev/null || fail "agentq watch: $(cat "$T/watch.out")"
echo "ok - agentq watch: one event per step, then the Result"

# ---- 2. schema violation repaired ----
note "schema violation"
task fix1 '[sim tool_steps=1 tool_parallel=1 fault_tool_schema=1] Weather in Oslo?' "[$(tool get_weather "$WEATHER")]" > "$T/fix.jsonl"
submit "$T/fix.jsonl"
r=$(result fix1)
jq -e '.status == "STATUS_COMPLETED"
       and ([.step_log[].tool_calls[]? | .outcome] | index("schema_violation")) != null
       and ([.step_log[].tool_calls[]? | .outcome] | index("ok")) != null' <<< "$r" > /dev/null ||
    fail "schema violation not repaired: $r"
agentq run show --json fix1 | jq -e '.schema_violations >= 1' > /dev/null || fail "schema violation not counted in the run"
[ "$(metric 'agentq_tool_schema_violations_total{tool="get_weather"}')" -ge 1 ] 2>/dev/null ||
    fail "agentq_tool_schema_violations_total not counted"
echo "ok - schema violation: is_error result, counted, repaired"

# ---- 3. timeout, no responders, a bad reply: is_error results, the run completes ----
# info_tool is mapped to $SRV.INFO: the service's INFO answer is over tool_max_reply_bytes.
note "tool faults"
task faults '[sim tool_steps=1 tool_parallel=4] Use all four.' \
    "[$(tool slow_weather "$WEATHER"),$(tool nobody_home "$ORDER"),$(tool get_weather "$WEATHER"),$(tool info_tool "$ORDER")]" > "$T/faults.jsonl"
submit "$T/faults.jsonl"
r=$(result faults)
jq -e '.status == "STATUS_COMPLETED" and .steps == 2
       and ([.step_log[0].tool_calls[] | {(.name): .outcome}] | add)
           == {"slow_weather": "timeout", "nobody_home": "no_responders", "get_weather": "ok", "info_tool": "bad_reply"}
       and ([.step_log[0].tool_calls[] | select(.name == "slow_weather" or .name == "nobody_home") | .attempts] | all(. == 2))' <<< "$r" > /dev/null ||
    fail "tool faults: $r"
agentq run show --json faults | jq -e '[.conversation[2].content[] | select(.type == "tool_result") | .is_error == true] == [true, true, false, true]' > /dev/null ||
    fail "tool faults: the results are not is_error: $(agentq run show --json faults | jq -c '.conversation[2]')"
echo "ok - tool timeout, no responders and a bad reply: is_error results, the run completes"

# ---- 4. a tool's permanent failure ends the run FAILED (DLQ) ----
note "permanent failure"
# The simulator takes an enum's first value: the order id is a closed one.
CLOSED='{"type":"object","properties":{"order_id":{"type":"string","enum":["closed-7"]}},"required":["order_id"]}'
task perm1 '[sim tool_steps=2] Look up my order.' "[$(tool lookup_order "$CLOSED")]" > "$T/perm.jsonl"
submit "$T/perm.jsonl"
r=$(result perm1)
jq -e '.status == "STATUS_FAILED" and .error.class == "tool_failed" and .steps == 1
       and .step_log[0].tool_calls[0].outcome == "permanent_failure"' <<< "$r" > /dev/null ||
    fail "permanent failure: $r"
wait_until 20 bash -c "'$RAW_PUBLISH' --url '$AGENTQ_NATS_URL' --dump-stream AGENTQ_DLQ | jq -e 'select(.headers[\"Agentq-Error-Class\"] == \"tool_failed\")' > /dev/null" ||
    fail "permanent failure: no tool_failed dead letter"
echo "ok - a tool's permanent failure: FAILED (tool_failed), dead-lettered"

# ---- 5. ceilings ----
note "ceilings"
task cfail '[sim tool_steps=5] Go on and on.' "[$(tool get_weather "$WEATHER")]" '{"max_steps": 2, "ceiling_action": "fail"}' > "$T/ceil.jsonl"
task cfinal '[sim tool_steps=5] Go on and on.' "[$(tool get_weather "$WEATHER")]" '{"max_steps": 2, "ceiling_action": "final"}' >> "$T/ceil.jsonl"
submit "$T/ceil.jsonl"
r=$(result cfail)
jq -e '.status == "STATUS_FAILED" and .error.class == "step_limit" and .steps == 2' <<< "$r" > /dev/null ||
    fail "ceiling fail: $r"
wait_until 20 bash -c "'$RAW_PUBLISH' --url '$AGENTQ_NATS_URL' --dump-stream AGENTQ_DLQ | jq -e 'select(.headers[\"Agentq-Error-Class\"] == \"step_limit\")' > /dev/null" ||
    fail "ceiling fail: no step_limit dead letter"
r=$(result cfinal)
jq -e '.status == "STATUS_COMPLETED" and .steps == 3 and (.step_log[-1].final_at_ceiling == true)' <<< "$r" > /dev/null ||
    fail "ceiling final: $r"
[ "$(metric 'agentq_agent_runs_at_ceiling_total{action="fail"}')" -ge 1 ] 2>/dev/null &&
    [ "$(metric 'agentq_agent_runs_at_ceiling_total{action="final"}')" -ge 1 ] 2>/dev/null ||
    fail "runs at a ceiling not counted"
echo "ok - ceilings: fail (DLQ step_limit, FAILED) and final (one last call, COMPLETED)"

# ---- 6. kill -9 mid-run, restart: resume from the checkpoint ----
note "kill -9 mid-run"
kill -TERM "$W"; wait "$W" 2>/dev/null || true; forget_pid "$W"
# Slow tools (1.5 s a call) so that the kill lands mid-run.
"$C_SERVICE" --url "$AGENTQ_NATS_URL" --prefix crash.tools --delay 1500 --keys "$T/crash-keys" > "$T/service-crash.log" 2>&1 &
PIDS+=($!)
wait_until 10 grep -q '^ready' "$T/service-crash.log" || fail "the crash tool service did not start"
start_worker --concurrency=4 --tool_subject_prefix=crash.tools --tool_timeout=10s
W=$WORKER_PID
before=$(sim_stats | jq .requests_total)
task crash1 '[sim tool_steps=4 tool_parallel=2] Slow steps.' "$TWO" > "$T/crash.jsonl"
submit "$T/crash.jsonl"
# Wait until two steps are checkpointed, then kill -9.
steps_done() { [ "$(agentq run show --json crash1 2>/dev/null | jq '.steps | length')" -ge "$1" ]; }
wait_until 30 steps_done 2 || fail "crash1 did not reach step 2"
kill -KILL "$W"; wait "$W" 2>/dev/null || true; forget_pid "$W"
stored=$(agentq run show --json crash1 | jq '.steps | length')
note "killed with $stored steps stored"
start_worker --concurrency=4 --tool_subject_prefix=crash.tools --tool_timeout=10s
W=$WORKER_PID
# The redelivery comes after AckWait (30 s by default in agentq init).
r=$(result crash1 90s)
jq -e '.status == "STATUS_COMPLETED" and .steps == 5 and .tool_calls == 8' <<< "$r" > /dev/null ||
    fail "crash1 after restart: $r"
calls=$(( $(sim_stats | jq .requests_total) - before ))
# Only a model call in flight at the kill may repeat.
[ "$calls" -le 6 ] || fail "crash1: $calls model calls for 5 steps"
dup=$(awk '{print $2}' "$T/crash-keys" | sort | uniq -d | wc -l)
total=$(wc -l < "$T/crash-keys")
# A repeated tool key is one that was in flight at the kill (two calls a step).
[ "$dup" -le 2 ] || fail "crash1: $dup tool keys repeated: $(awk '{print $2}' "$T/crash-keys" | sort | uniq -d)"
note "kill -9: $calls model calls for 5 steps, $total tool requests for 8 calls, $dup keys repeated (in flight at the kill)"
echo "ok - kill -9 mid-run: resumed from the checkpoint"

# ---- 7. SIGTERM while a run waits for its tools: handed back at once ----
note "shutdown while tools run"
before=$(sim_stats | jq .requests_total)
task term1 '[sim tool_steps=3 tool_parallel=2] Slow steps.' "$TWO" > "$T/term.jsonl"
submit "$T/term.jsonl"
in_tools() { agentq run show --json term1 2>/dev/null | jq -e '.phase == "tools_pending"' > /dev/null; }
wait_until 30 in_tools || fail "term1 never waited for its tools"
t0=$SECONDS
kill -TERM "$W"; wait "$W" 2>/dev/null || true; forget_pid "$W"
stop_s=$((SECONDS - t0))
[ "$stop_s" -le 5 ] || fail "the worker took $stop_s s to stop with a run waiting for tools (grace not needed)"
grep -q 'agent run waiting for tools handed back' "$T"/worker-*.log || fail "no hand-back logged"
start_worker --concurrency=4 --tool_subject_prefix=crash.tools --tool_timeout=10s
W=$WORKER_PID
r=$(result term1 60s)
jq -e '.status == "STATUS_COMPLETED" and .steps == 4 and .tool_calls == 6' <<< "$r" > /dev/null ||
    fail "term1 after the hand-back: $r"
calls=$(( $(sim_stats | jq .requests_total) - before ))
[ "$calls" -eq 4 ] || fail "term1: $calls model calls for 4 steps (a stored answer was asked again)"
note "shutdown: stopped in $stop_s s; $calls model calls for 4 steps"
echo "ok - shutdown hands back a run waiting for its tools; it resumes without repeating a model call"

# ---- 7b. a run waiting for its tools holds no model-call slot ----
# concurrency=1, two runs of two tool steps each (their tools on two
# services, 1.5 s and 2 s a call: each service answers one request at a
# time), and a plain task, all at once. Runs that kept their slot while
# their tools ran would go one after the other (>= 7 s); they overlap
# instead, and the plain task does not wait for them.
note "slots"
kill -TERM "$W"; wait "$W" 2>/dev/null || true; forget_pid "$W"
start_worker --concurrency=1 --tool_timeout=10s \
    --tool_subjects='w1=crash.tools.get_weather;w2=slow.tools.get_weather'
W=$WORKER_PID
{ task slot1 '[sim tool_steps=2] Slow one.' "[$(tool w1 "$WEATHER")]"
  task slot2 '[sim tool_steps=2] Slow two.' "[$(tool w2 "$WEATHER")]"
  jq -nc '{id: "plain1", type: "it", prompt: "A plain task.", max_tokens: 64}'; } > "$T/slots.jsonl"
t0=$(date +%s%N)
submit "$T/slots.jsonl"
r=$(result plain1 30s)
plain_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
jq -e '.status == "STATUS_COMPLETED"' <<< "$r" > /dev/null || fail "plain1: $r"
for id in slot1 slot2; do
    r=$(result $id 30s)
    jq -e '.status == "STATUS_COMPLETED" and .steps == 3' <<< "$r" > /dev/null || fail "$id: $r"
done
runs_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
note "slots: plain task done after $plain_ms ms, both runs (2 tool steps of 1.5 s, 2 of 2 s) after $runs_ms ms with concurrency 1"
[ "$plain_ms" -lt 2500 ] || fail "the plain task waited $plain_ms ms behind runs waiting for tools"
[ "$runs_ms" -lt 6000 ] || fail "two runs took $runs_ms ms with concurrency 1: they held their slot while their tools ran"
echo "ok - runs waiting for tools hold no model-call slot (concurrency=1: runs overlap, a plain task goes through)"

# ---- 8. a tenant's budget runs out mid-run (budget_action=fail) ----
note "budget mid-run"
kill -TERM "$W"; wait "$W" 2>/dev/null || true; forget_pid "$W"
start_worker --concurrency=4 --budgets='poor=0.012' --budget_action=fail
W=$WORKER_PID
task bud1 '[sim tool_steps=25] A long errand.' "$TWO" '{"tenant": "poor", "max_steps": 30}' > "$T/bud.jsonl"
submit "$T/bud.jsonl"
r=$(result bud1 90s)
jq -e '.status == "STATUS_FAILED" and .error.class == "budget_exceeded" and .steps >= 2 and .steps < 26
       and (.step_log | length) == .steps and .cost_micro_usd > 0 and .cost_micro_usd <= 12000' <<< "$r" > /dev/null ||
    fail "budget mid-run: $(jq -c '{status, error, steps, cost_micro_usd}' <<< "$r")"
agentq run show --json bud1 | jq -e --argjson n "$(jq .steps <<< "$r")" '.steps == $n' > /dev/null ||
    fail "budget mid-run: the checkpoint does not hold the steps made"
wait_until 20 bash -c "'$RAW_PUBLISH' --url '$AGENTQ_NATS_URL' --dump-stream AGENTQ_DLQ | jq -e 'select(.headers[\"Agentq-Error-Class\"] == \"budget_exceeded\")' > /dev/null" ||
    fail "budget mid-run: no budget_exceeded dead letter"
note "budget mid-run: FAILED after $(jq .steps <<< "$r") steps, \$$(jq '.cost_micro_usd / 1e6' <<< "$r") of \$0.012"
echo "ok - a budget spent mid-run: FAILED budget_exceeded with its steps and transcript, dead-lettered"

# ---- 8b. the same with budget_action=defer: the task is parked with its
# checkpoint; a worker with a raised budget releases it and the run resumes
# where it stopped: no step asked again ----
note "budget mid-run, deferred"
kill -TERM "$W"; wait "$W" 2>/dev/null || true; forget_pid "$W"
start_worker --concurrency=4 --budgets='poor2=0.012' --budget_action=defer
W=$WORKER_PID
calls0=$(sim_stats | jq .requests_total)
task bud2 '[sim tool_steps=25] A long errand.' "$TWO" '{"tenant": "poor2", "max_steps": 30}' > "$T/bud2.jsonl"
submit "$T/bud2.jsonl"
parked() { "$RAW_PUBLISH" --url "$AGENTQ_NATS_URL" --dump-stream AGENTQ_DEFERRED | jq -e 'select(.headers["Agentq-Parked-Tenant"] == "poor2")' > /dev/null; }
wait_until 90 parked || fail "budget deferred: the run was not parked: $(agentq run show --json bud2 2>&1 | head -c 300)"
steps1=$(agentq run show --json bud2 | jq .steps)
calls1=$(sim_stats | jq .requests_total)
[ "$steps1" -ge 2 ] && [ "$((calls1 - calls0))" = "$steps1" ] ||
    fail "budget deferred: $steps1 steps in the checkpoint, $((calls1 - calls0)) calls when parked"
agentq get bud2 > /dev/null 2>&1 && fail "budget deferred: a Result exists for the parked run"
kill -TERM "$W"; wait "$W" 2>/dev/null || true; forget_pid "$W"
start_worker --concurrency=4 --budgets='poor2=5' --budget_action=defer   # the budget raised
W=$WORKER_PID
r=$(result bud2 120s)
calls2=$(sim_stats | jq .requests_total)
jq -e '.status == "STATUS_COMPLETED" and .steps == 26 and (.step_log | length) == 26' <<< "$r" > /dev/null ||
    fail "budget deferred: after the raise: $(jq -c '{status, error, steps}' <<< "$r")"
[ "$((calls2 - calls0))" = 26 ] ||
    fail "budget deferred: $((calls2 - calls0)) model calls for 26 steps (a step was asked again)"
note "budget deferred: parked after $steps1 steps, released by the raise, completed with 26 steps in 26 calls"
echo "ok - a budget spent mid-run (defer): parked with its checkpoint, resumed after the raise without repeating a step"

# ---- 9. a transcript over runs_max_bytes: FAILED too_large, not retried ----
note "checkpoint cap"
kill -TERM "$W"; wait "$W" 2>/dev/null || true; forget_pid "$W"
start_worker --runs_max_bytes=4096
W=$WORKER_PID
task big1 '[sim tool_steps=8 tool_parallel=3] A long transcript.' "$TWO" > "$T/big.jsonl"
submit "$T/big.jsonl"
r=$(result big1 60s)
jq -e '.status == "STATUS_FAILED" and .error.class == "too_large" and (.error.message | test("runs_max_bytes"))' <<< "$r" > /dev/null ||
    fail "checkpoint cap: $(jq -c '{status, error, steps}' <<< "$r")"
echo "ok - a checkpoint over runs_max_bytes fails its run (too_large)"

kill -0 "$W" 2>/dev/null || fail "the worker died"
echo "PASS"
