#!/usr/bin/env bash
# Agent runs routed per step: routes with a step condition send a run's
# first step to one model and its later steps to another; the Result's
# step_log names each step's model and route_rule. A single call is step 1;
# a task that names a model keeps it on every step.
source "$(dirname "$0")/lib.sh"

C_SERVICE="$AQ_BIN/examples/tool-service-c/agentq-example-tool-service"
[ -x "$C_SERVICE" ] || fail "no $C_SERVICE: build the examples"

start_nats
start_sim
agentq init > /dev/null
"$C_SERVICE" --url "$AGENTQ_NATS_URL" > "$T/service-c.log" 2>&1 &
PIDS+=($!)
wait_until 10 grep -q '^ready' "$T/service-c.log" || fail "the C tool service did not start"

# A bad step rule stops the worker at startup, naming the rule.
if "$WORKER" --routes='pick: step=0 -> claude-haiku-4-5' > "$T/bad.out" 2>&1; then
    fail "a worker started with step=0"
fi
grep -q "rule 1 'pick'.*step=0: must be at least 1" "$T/bad.out" ||
    fail "step=0: $(cat "$T/bad.out")"
echo "ok - a bad step rule: the worker refuses to start, naming the rule"

start_worker --concurrency=4 --default_model=claude-opus-4-5 \
    --routes='pick: step=1 -> claude-haiku-4-5; synth: step>=2 -> claude-sonnet-4-5'

WEATHER='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
TOOLS=$(jq -nc --arg s "$WEATHER" '[{name: "get_weather", description: "weather of a city", input_schema_json: $s}]')
task() { local extra=${3:-'{}'}; jq -nc --arg id "$1" --arg p "$2" --argjson t "$TOOLS" --argjson x "$extra" \
    '{id: $id, type: "agent", prompt: $p, tools: $t, max_tokens: 256} + $x'; }
{ task route3 '[sim tool_steps=2 tool_parallel=1] Weather in Oslo, then in Bergen.'
  task named3 '[sim tool_steps=2 tool_parallel=1] Weather in Oslo, then in Bergen.' '{"model": "claude-haiku-4-5"}'
  jq -nc '{id: "single1", type: "it", prompt: "A plain call.", max_tokens: 64}'; } > "$T/tasks.jsonl"
agentq submit --file "$T/tasks.jsonl" > /dev/null || fail "submit"

r=$(agentq wait --timeout=30s route3 2>/dev/null || true)
jq -e '.status == "STATUS_COMPLETED" and .steps == 3 and (.step_log | length) == 3
       and ([.step_log[] | .model] == ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-sonnet-4-5"])
       and ([.step_log[] | .route_rule] == ["pick", "synth", "synth"])' <<< "$r" > /dev/null ||
    fail "route3: $(jq -c '{status, steps, step_log: [.step_log[]? | {model, route_rule}]}' <<< "$r")"
note "route3 step_log: $(jq -c '[.step_log[] | "\(.route_rule) -> \(.model)"]' <<< "$r")"
echo "ok - a 3-step run: step 1 on claude-haiku-4-5 (pick), steps 2-3 on claude-sonnet-4-5 (synth)"

r=$(agentq wait --timeout=30s named3 2>/dev/null || true)
jq -e '.status == "STATUS_COMPLETED" and .steps == 3
       and ([.step_log[] | .model] | all(. == "claude-haiku-4-5"))
       and ([.step_log[] | .route_rule] | all(. == "explicit"))' <<< "$r" > /dev/null ||
    fail "named3: $(jq -c '{status, steps, step_log: [.step_log[]? | {model, route_rule}]}' <<< "$r")"
echo "ok - a run that names its model keeps it on every step (explicit)"

r=$(agentq wait --timeout=30s single1 2>/dev/null || true)
jq -e '.status == "STATUS_COMPLETED" and .model == "claude-haiku-4-5" and .route_rule == "pick"' <<< "$r" > /dev/null ||
    fail "single1: $(jq -c '{status, model, route_rule}' <<< "$r")"
echo "ok - a single call is step 1"

kill -0 "$WORKER_PID" 2>/dev/null || fail "the worker died"
echo "PASS"
