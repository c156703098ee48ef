#!/usr/bin/env bash
# Agent runs at the scale of issue 13: N runs of 5 steps (4 tool steps of 2
# parallel calls, then the answer), two workers on one consumer, kill -9 of a
# random worker at random moments (every 1-2.5 s until 95% of the runs are
# done, restarted at once) and one nats-server restart (SIGTERM, down 2 s,
# same port and store) at 40% of the results, until every run is done. Tools are served by tests/support/tool_recorder,
# which records every request: tool, idempotency key, Agentq-Task-Id, input.
#   * every run ends COMPLETED (5 steps, 8 tool calls) or dead-lettered, none lost;
#   * model calls repeated only for calls in flight at a kill or the restart:
#     the simulator's calls minus the steps the Results record is at most
#     (kills + 2) x concurrency;
#   * tool executions repeated only with the same key: a key always comes with
#     the same tool and input, its task id is Agentq-Task-Id, and every
#     (key, tool, input) sent is a tool_use of that task's transcript
#     (key = <task id>:<tool_use id>); every call of a transcript was sent;
#   * every COMPLETED run's transcript is consistent (each tool_result answers
#     the tool_use before it, in order).
# Prints: CHAOS agent: runs=N kills=K nats_restarts=1 completed=C dead_lettered=D
#         lost=0 repeated_model_calls=R repeated_tool_keys=T
#
#   AQ_BIN=build bash tests/chaos/agent_chaos.sh           # CI size: 300 runs
#   N=1000 AQ_BIN=build bash tests/chaos/agent_chaos.sh
source "$(dirname "$0")/chaos_lib.sh"
export LC_ALL=C
N=${N:-300}
CONC=${CONC:-8}
RUNS=${RUNS:-16}          # agent_max_runs per worker
LATENCY=${LATENCY:-150}   # simulator, ms
TOOL_DELAY=${TOOL_DELAY:-20}
ACK_WAIT=${ACK_WAIT:-4s}
NATS_SIG=${NATS_SIG:-TERM}
RECORDER="$AQ_BIN/tests/support/tool_recorder"
[ -x "$RECORDER" ] || fail "no $RECORDER: build the tests"

start_nats
start_sim "${SIM_NO_LIMITS[@]}" --latency="$LATENCY"
agentq init --ack_wait="$ACK_WAIT" > /dev/null
"$RECORDER" --url "$AGENTQ_NATS_URL" --keys "$T/keys" --delay "$TOOL_DELAY" > "$T/tools.log" 2>&1 &
PIDS+=($!)
wait_until 10 grep -q '^ready' "$T/tools.log" || fail "the tool service did not start"

WEATHER='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
ORDER='{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}'
jq -nc --argjson n "$N" --arg w "$WEATHER" --arg o "$ORDER" '
    range($n) | {id: "ac-\(.)", type: "agent", max_tokens: 128,
                 prompt: "[sim tool_steps=4 tool_parallel=2] errand \(.)",
                 tools: [{name: "get_weather", input_schema_json: $w},
                         {name: "lookup_order", input_schema_json: $o}]}' > "$T/tasks.jsonl"
ids_of "$T/tasks.jsonl" > "$T/ids.txt"
agentq submit --file "$T/tasks.jsonl" --quiet 2> "$T/submit.log"

WOPTS=(--concurrency="$CONC" --agent_max_runs="$RUNS" --ack_wait="$ACK_WAIT" --shutdown_grace=5s
       --tool_timeout=2s --tool_max_attempts=10) # attempts outlast the nats-server outage
declare -A WPID
for w in w1 w2; do
    WORKER_NAME=$w start_worker "${WOPTS[@]}"
    WPID[$w]=$WORKER_PID
done

kills=0 restarts=0
while [ "$(stat_of results)" -lt "$N" ]; do
    [ $SECONDS -lt $((CHAOS_END - 45)) ] || fail "not done within the budget: $(agentq stats --json)"
    ms=$((1000 + RANDOM % 1500))
    sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
    at=$(stat_of results)
    [ "$at" -lt "$N" ] || break
    # The last 5% of the runs: no more kills (each one there only waits out AckWait).
    [ "$at" -lt $((N * 95 / 100)) ] || continue
    if [ "$restarts" -eq 0 ] && [ "$at" -ge $((N * 2 / 5)) ]; then
        note "nats-server SIG$NATS_SIG at $at results"
        bounce_nats "$NATS_SIG" 2
        restarts=1
        continue
    fi
    victim=w$((1 + RANDOM % 2))
    kill -KILL "${WPID[$victim]}" 2>/dev/null || fail "worker $victim was not running"
    reap "${WPID[$victim]}"
    kills=$((kills + 1))
    note "kill -9 $victim at $at results"
    WORKER_NAME=$victim start_worker "${WOPTS[@]}"
    WPID[$victim]=$WORKER_PID
done
[ "$restarts" -eq 1 ] || fail "the runs ended before the nats-server restart: make them longer"
[ "$kills" -ge 4 ] || fail "only $kills kills before the runs ended: make them longer"

wait_for_ids 60 "$T/ids.txt"
for w in w1 w2; do kill -0 "${WPID[$w]}" 2>/dev/null || fail "worker $w died by itself"; done
# Lost / both / dead-lettered twice (the task-level invariant).
chaos_verdict agent_chaos "kill -9 x$kills at random (2 workers) + nats-server SIG$NATS_SIG restart, runs of 5 steps" "$T/ids.txt"
[ "$CHAOS_DEAD" -eq 0 ] || fail "$CHAOS_DEAD runs dead-lettered: kills and a restart alone must not dead-letter"
# (An agent run's Result counts the calls of the delivery that settled it, not
# the steps before a redelivery: its duplicate_calls above is not the figure.)

# Model calls: the simulator's against the steps the Results record.
steps=$(jq -s '[.[] | select(.status == "STATUS_COMPLETED") | .steps] | add' "$T/results.jsonl")
jq -s -e 'all(.[]; .status != "STATUS_COMPLETED" or (.steps == 5 and .tool_calls == 8))' "$T/results.jsonl" > /dev/null ||
    fail "a COMPLETED run without 5 steps and 8 tool calls: $(jq -c 'select(.steps != 5 or .tool_calls != 8) | {id, steps, tool_calls}' "$T/results.jsonl" | head -3)"
# Every tool call answered by the service (none given up on as a timeout or no responders).
jq -s -e 'all(.[]; .status != "STATUS_COMPLETED" or ([.step_log[].tool_calls[]?.outcome] | all(. == "ok")))' "$T/results.jsonl" > /dev/null ||
    fail "a tool call not answered: $(jq -c '{id, o: [.step_log[].tool_calls[]? | select(.outcome != "ok") | .outcome]} | select(.o | length > 0)' "$T/results.jsonl" | head -3)"
repeated_calls=$((CHAOS_CALLS - steps))
model_bound=$(((kills + 2) * CONC))
[ "$repeated_calls" -ge 0 ] || fail "the simulator saw $CHAOS_CALLS calls for $steps recorded steps"
[ "$repeated_calls" -le "$model_bound" ] ||
    fail "$repeated_calls model calls repeated, more than the $model_bound in flight at $kills kills and a restart"

# Tool keys. Sent: "<tool> <key> <task id> <input>" per request.
for id in $(cat "$T/ids.txt"); do agentq run show --json "$id"; done > "$T/runs.jsonl" || fail "agentq run show"
jq -r 'def sorted: walk(if type == "object" then to_entries | sort_by(.key) | from_entries else . end);
       .task_id as $t | .conversation[] | select(.role == "assistant") | .content[]? |
       select(.type == "tool_use") | "\($t):\(.id) \(.name) \(.input | sorted | tojson)"' "$T/runs.jsonl" \
    | sort -u > "$T/calls.sorted"
awk '{ t = $3; k = $2; if (index(k, t ":") != 1) bad++ } END { print bad + 0 }' "$T/keys" > "$T/bad_task"
[ "$(cat "$T/bad_task")" -eq 0 ] || fail "$(cat "$T/bad_task") requests whose key is not <Agentq-Task-Id>:<tool_use id>"
# key tool input, one line per request
sed -E 's/^([^ ]+) ([^ ]+) ([^ ]+) (.*)$/\2 \1 \4/' "$T/keys" > "$T/sent.txt"
[ -s "$T/sent.txt" ] || fail "the tool service recorded nothing"
sort -u "$T/sent.txt" > "$T/sent.uniq"
shared=$(awk '{print $1}' "$T/sent.uniq" | uniq -d | wc -l)
[ "$shared" -eq 0 ] || fail "$shared keys sent with two different tools or inputs: $(awk '{print $1}' "$T/sent.uniq" | uniq -d | head -3)"
unknown=$(comm -23 "$T/sent.uniq" "$T/calls.sorted" | wc -l)
never=$(comm -13 "$T/sent.uniq" "$T/calls.sorted" | wc -l)
[ "$(wc -l < "$T/calls.sorted")" -eq $((N * 8)) ] || fail "$(wc -l < "$T/calls.sorted") tool calls in the transcripts, not $((N * 8))"
[ "$unknown" -eq 0 ] || fail "$unknown (key, tool, input) sent that no transcript holds, e.g. $(comm -23 "$T/sent.uniq" "$T/calls.sorted" | head -2)"
[ "$never" -eq 0 ] || fail "$never tool calls of the transcripts were never sent"
requests=$(wc -l < "$T/sent.txt")
repeated_keys=$(awk '{print $1}' "$T/sent.txt" | sort | uniq -d | wc -l)
key_bound=$(((kills + 2) * (RUNS + CONC) * 2))
[ "$repeated_keys" -le "$key_bound" ] ||
    fail "$repeated_keys keys sent more than once, more than the $key_bound calls in flight at $kills kills and a restart"
# Transcripts: each tool_result answers the tool_use before it, in order.
jq -e -s 'all(.[]; . as $r | [$r.conversation | to_entries[] | select(.value.role == "assistant") | .key] |
          all(. as $i | ($r.conversation[$i].content // [] | map(select(.type == "tool_use") | .id))
              == (($r.conversation[$i + 1].content // []) | map(select(.type == "tool_result") | .tool_use_id))))' \
    "$T/runs.jsonl" > /dev/null || fail "a transcript whose tool_results do not answer its tool_uses"

note "model calls $CHAOS_CALLS for $steps steps (bound on repeats $model_bound); tool requests $requests for $((N * 8)) calls (bound on repeated keys $key_bound); $SECONDS s"
echo "CHAOS agent: runs=$N kills=$kills nats_restarts=$restarts completed=$CHAOS_COMPLETED dead_lettered=$CHAOS_DEAD lost=0 repeated_model_calls=$repeated_calls repeated_tool_keys=$repeated_keys"
