#!/usr/bin/env bash
# Agent runs under kill -9: two workers on one consumer, runs of 5 steps (4
# tool steps of 2 parallel calls, then the answer) against the example C tool
# service, which records every idempotency key it is sent; kill -9 one worker
# (alternating) every 2-3 s and restart it, until every run is done.
#   * every run ends COMPLETED (5 steps, 8 tool calls) or dead-lettered, none lost;
#   * model calls repeated only for calls in flight at a kill: the simulator's
#     calls minus the steps the Results record is at most kills x concurrency;
#   * tool executions repeated only with the same key: every key is
#     <task id>:<tool_use id> of a call in a COMPLETED run's transcript, and
#     keys sent more than once are at most the calls a killed worker can have
#     had out: kills x (agent_max_runs + one fetch of concurrency) x 2;
#   * every COMPLETED run's transcript is consistent (each tool_result answers
#     the tool_use before it, in order).
source "$(dirname "$0")/chaos_lib.sh"
N=${N:-60}
CONC=${CONC:-8}
RUNS=${RUNS:-16}       # agent_max_runs: runs a worker owns, tools running or not
ACK_WAIT=${ACK_WAIT:-5s}
C_SERVICE="$AQ_BIN/examples/tool-service-c/agentq-example-tool-service"
[ -x "$C_SERVICE" ] || fail "no $C_SERVICE: build the examples"

start_nats
start_sim "${SIM_NO_LIMITS[@]}" --latency=200
agentq init --ack_wait="$ACK_WAIT" > /dev/null
"$C_SERVICE" --url "$AGENTQ_NATS_URL" --keys "$T/keys" --delay 20 > "$T/service.log" 2>&1 &
PIDS+=($!)
wait_until 10 grep -q '^ready' "$T/service.log" || fail "the tool service did not start"

WEATHER='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
ORDER='{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}'
jq -nc --argjson n "$N" --arg w "$WEATHER" --arg o "$ORDER" '
    range($n) | {id: "ak-\(.)", type: "agent", max_tokens: 128,
                 prompt: "[sim tool_steps=4 tool_parallel=2] errand \(.)",
                 tools: [{name: "get_weather", input_schema_json: $w},
                         {name: "lookup_order", input_schema_json: $o}]}' > "$T/tasks.jsonl"
ids_of "$T/tasks.jsonl" > "$T/ids.txt"
agentq submit --file "$T/tasks.jsonl" --quiet 2> "$T/submit.log"

WOPTS=(--concurrency="$CONC" --agent_max_runs="$RUNS" --ack_wait="$ACK_WAIT" --shutdown_grace=5s
       --tool_timeout=3s)
declare -A WPID
for w in w1 w2; do
    WORKER_NAME=$w start_worker "${WOPTS[@]}"
    WPID[$w]=$WORKER_PID
done

kills=0
victim=w1
while [ "$(stat_of results)" -lt "$N" ]; do
    [ $SECONDS -lt $((CHAOS_END - 45)) ] || fail "not done within the budget: $(agentq stats --json)"
    sleep "2.$((RANDOM % 10))"
    [ "$(stat_of results)" -lt "$N" ] || break
    kill -KILL "${WPID[$victim]}" 2>/dev/null || fail "worker $victim was not running"
    reap "${WPID[$victim]}"
    kills=$((kills + 1))
    note "kill -9 $victim at $(stat_of results) results"
    WORKER_NAME=$victim start_worker "${WOPTS[@]}"
    WPID[$victim]=$WORKER_PID
    [ "$victim" = w1 ] && victim=w2 || victim=w1
done
[ "$kills" -ge 2 ] || fail "only $kills kills before the runs ended: make them longer"

wait_for_ids 60 "$T/ids.txt"
for w in w1 w2; do kill -0 "${WPID[$w]}" 2>/dev/null || fail "worker $w died by itself"; done
# Lost / both / dead-lettered twice (the task-level invariant).
chaos_verdict agent_kill9 "kill -9 x$kills (2 workers, every 2-3 s), runs of 5 steps" "$T/ids.txt"
[ "$CHAOS_DEAD" -eq 0 ] || fail "$CHAOS_DEAD runs dead-lettered: kills alone must not dead-letter"

# Model calls: the simulator's against the steps the Results record.
steps=$(jq -s '[.[] | select(.status == "STATUS_COMPLETED") | .steps] | add' "$T/results.jsonl")
jq -s -e 'all(.[]; .status != "STATUS_COMPLETED" or (.steps == 5 and .tool_calls == 8))' "$T/results.jsonl" > /dev/null ||
    fail "a COMPLETED run without 5 steps and 8 tool calls: $(jq -c 'select(.steps != 5 or .tool_calls != 8) | {id, steps, tool_calls}' "$T/results.jsonl" | head -3)"
repeated_calls=$((CHAOS_CALLS - steps))
[ "$repeated_calls" -ge 0 ] || fail "the simulator saw $CHAOS_CALLS calls for $steps recorded steps"
[ "$repeated_calls" -le $((kills * CONC)) ] ||
    fail "$repeated_calls model calls repeated, more than the $((kills * CONC)) in flight at $kills kills"

# Tool keys: each a call of a transcript; repeats only with the same key.
for id in $(cat "$T/ids.txt"); do agentq run show --json "$id"; done > "$T/runs.jsonl" || fail "agentq run show"
jq -r '.task_id as $t | .conversation[] | select(.role == "assistant") | .content[]? |
       select(.type == "tool_use") | "\($t):\(.id)"' "$T/runs.jsonl" | sort -u > "$T/calls.txt"
awk '{print $2}' "$T/keys" | sort > "$T/sent.txt"
[ "$(wc -l < "$T/calls.txt")" -eq $((N * 8)) ] || fail "$(wc -l < "$T/calls.txt") tool calls in the transcripts, not $((N * 8))"
unknown=$(sort -u "$T/sent.txt" | comm -23 - "$T/calls.txt" | wc -l)
never=$(sort -u "$T/sent.txt" | comm -13 - "$T/calls.txt" | wc -l)
repeated_keys=$(uniq -d "$T/sent.txt" | wc -l)
[ "$unknown" -eq 0 ] || fail "$unknown keys sent that no transcript holds (a call run under another key)"
[ "$never" -eq 0 ] || fail "$never tool calls of the transcripts were never sent"
[ "$repeated_keys" -le $((kills * (RUNS + CONC) * 2)) ] ||
    fail "$repeated_keys keys sent more than once, more than the calls in flight at $kills kills"
# Transcripts: each tool_result answers the tool_use before it, in order.
jq -e -s 'all(.[]; . as $r | [$r.conversation | to_entries[] | select(.value.role == "assistant") | .key] |
          all(. as $i | ($r.conversation[$i].content // [] | map(select(.type == "tool_use") | .id))
              == (($r.conversation[$i + 1].content // []) | map(select(.type == "tool_result") | .tool_use_id))))' \
    "$T/runs.jsonl" > /dev/null || fail "a transcript whose tool_results do not answer its tool_uses"

echo "CHAOS agent_kill9 figures: runs=$N kills=$kills lost=0 model_calls=$CHAOS_CALLS steps=$steps repeated_model_calls=$repeated_calls tool_requests=$(wc -l < "$T/sent.txt") tool_calls=$((N * 8)) repeated_tool_keys=$repeated_keys"
