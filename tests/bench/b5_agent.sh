#!/usr/bin/env bash
# B5 — agent runs. 2,000 runs in flight (agent_max_runs 2,000, concurrency
# 2,000), each of 5 steps (4 tool steps of B5_PARALLEL calls, then the
# answer); the simulator answers after 200 ms, the tools after 50 ms
# (tests/support/tool_recorder, which replies after its delay without
# blocking, two instances in one queue group). A run's ideal duration is
# 5 x 200 ms + 4 x 50 ms = 1.2 s, so the ideal rate is 2,000 / 1.2 s.
# The worker is started idle (its RSS then is the baseline), N = 3 x 2,000
# tasks are published at once, and the run is timed from the start of
# publishing to the last result stored (three waves: the ideal time is
# exactly N / ideal rate).
# Figures: runs/s against the ideal; worker CPU per step; (peak RSS - idle
# RSS) / runs in flight; KV writes and bytes per step, counted by a core NATS
# subscriber on $KV.agentq-runs.> (every checkpoint write is published there)
# and checked against agentq_agent_checkpoints_total.
# Goals (issue 13): >= 0.8 of ideal; <= 2 KV writes per step; < 64 KB of worker
# memory per run in flight.
#
#   AQ_BIN=build tests/bench/b5_agent.sh
source "$(dirname "$0")/bench_lib.sh"

IN_FLIGHT=${B5_IN_FLIGHT:-2000}
N=${B5_N:-$((3 * IN_FLIGHT))}
PARALLEL=${B5_PARALLEL:-2}
LATENCY_MS=200
TOOL_MS=50
STEPS=5
SIM_THREADS=${B5_SIM_THREADS:-2}
TOOL_SERVICES=${B5_TOOL_SERVICES:-2}
GOAL_RATIO=0.8
GOAL_WRITES=2
GOAL_KB=64
RECORDER="$AQ_BIN/tests/support/tool_recorder"
[ -x "$RECORDER" ] || fail "$RECORDER not built (cmake --build $AQ_BIN --target tool_recorder)"

echo "== B5 agent runs: N=$N runs of $STEPS steps ($PARALLEL tool calls a tool step), $IN_FLIGHT in flight, simulator $LATENCY_MS ms, tools $TOOL_MS ms"
nofile=$(raise_nofile 65536)
[ "$nofile" -ge $((IN_FLIGHT + 1000)) ] || fail "open-file limit $nofile < $((IN_FLIGHT + 1000))"

fresh_nats
summary
[ "$S_max_ack_pending" -ge "$IN_FLIGHT" ] || fail "consumer max_ack_pending $S_max_ack_pending < $IN_FLIGHT"
bench_sim --latency="$LATENCY_MS" --threads="$SIM_THREADS" "${SIM_NO_LIMITS[@]}"
TOOL_PIDS=()
for i in $(seq 1 "$TOOL_SERVICES"); do
    tap=()
    [ "$i" -eq 1 ] && tap=(--tap '$KV.agentq-runs.>' --tap-file "$T/tap")
    show "tool_recorder --url $AGENTQ_NATS_URL --delay $TOOL_MS ${tap[*]}"
    "$RECORDER" --url "$AGENTQ_NATS_URL" --delay "$TOOL_MS" "${tap[@]}" > "$T/tools-$i.log" 2>&1 &
    TOOL_PIDS+=($!)
    PIDS+=($!)
    wait_until 10 grep -q '^ready' "$T/tools-$i.log" || fail "tool service $i did not start"
done
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bench_worker b5 --concurrency="$IN_FLIGHT" --agent_max_runs="$IN_FLIGHT" --log_level=warn \
    --metrics_port="$MPORT" --metrics_bind=127.0.0.1 --tool_timeout=30s \
    --rate_limits=sonnet:rpm=1000000000,itpm=1000000000,otpm=1000000000
metric() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 == m {print $2}' | head -1; }
wait_ready 30 || fail "worker not pulling"
wait_until 10 metric agentq_agent_runs_in_flight || fail "no /metrics on $MPORT"
sleep 1
idle_kb=$(proc_kb "$WORKER_PID" VmRSS)
cpu0=$(proc_cpu_us "$WORKER_PID")
sim_cpu0=$(proc_cpu_us "$SIM_PID"); nats_cpu0=$(proc_cpu_us "$NATS_PID")
tool_cpu0=0; for p in "${TOOL_PIDS[@]}"; do tool_cpu0=$((tool_cpu0 + $(proc_cpu_us "$p"))); done
wait_until 5 test -s "$T/tap" || fail "no tap counts"
tap0_msgs=$(kv "$T/tap" msgs); tap0_bytes=$(kv "$T/tap" bytes)

WEATHER='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
ORDER='{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}'
jq -nc --argjson n "$N" --argjson p "$PARALLEL" --arg w "$WEATHER" --arg o "$ORDER" '
    range($n) | {id: "b5-\(.)", type: "agent", max_tokens: 128,
                 prompt: "[sim tool_steps=4 tool_parallel=\($p)] errand \(.)",
                 tools: [{name: "get_weather", input_schema_json: $w},
                         {name: "lookup_order", input_schema_json: $o}]}' > "$T/tasks.jsonl"
noise_begin
t0=$(now_us)
run "$AGENTQ" submit --file "$T/tasks.jsonl" --quiet
peak_runs=0
end_wait=$((SECONDS + 300))
while :; do
    summary && [ "$S_results" -ge "$N" ] && break
    [ $SECONDS -lt $end_wait ] || { echo "note: only $S_results of $N results after 300 s"; break; }
    r=$(metric agentq_agent_runs_in_flight || echo 0)
    r=${r%.*}
    [ "${r:-0}" -gt "$peak_runs" ] && peak_runs=$r
    sleep 0.5
done
hwm_kb=$(proc_kb "$WORKER_PID" VmHWM)
cpu_us=$(( $(proc_cpu_us "$WORKER_PID") - cpu0 ))
sim_cpu=$(( $(proc_cpu_us "$SIM_PID") - sim_cpu0 )); nats_cpu=$(( $(proc_cpu_us "$NATS_PID") - nats_cpu0 ))
tool_cpu=0; for p in "${TOOL_PIDS[@]}"; do tool_cpu=$((tool_cpu + $(proc_cpu_us "$p"))); done
tool_cpu=$((tool_cpu - tool_cpu0))
summary
end=$S_last_stored_us
stored=$S_results
noise=$(noise_end)
sleep 0.5 # the tap file is rewritten every 200 ms
tap_msgs=$(( $(kv "$T/tap" msgs) - tap0_msgs )); tap_bytes=$(( $(kv "$T/tap" bytes) - tap0_bytes ))
ckpts=$(metric agentq_agent_checkpoints_total || echo 0)
stop_worker "$WORKER_PID"
calls=$(sim_stats | jq .requests_total)
# A sample of the Results: their steps and the latencies the worker measured.
mapfile -t sample < <(jq -r .id "$T/tasks.jsonl" | awk -v n="$N" 'NR % int(n / 200 > 1 ? n / 200 : 1) == 0')
"$AGENTQ" get "${sample[@]}" > "$T/sample.jsonl" 2> /dev/null || true
jq -s '{n: length,
        completed: map(select(.status == "STATUS_COMPLETED" and .steps == 5)) | length,
        model_ms: ([.[].step_log[]?.latency_ms | tonumber] | add / length),
        tool_ms: ([.[].step_log[]?.tool_calls[]?.latency_ms | tonumber] | add / length)}' \
    "$T/sample.jsonl" > "$T/sample.json"

ideal_run_s=$(calc "($STEPS * $LATENCY_MS + ($STEPS - 1) * $TOOL_MS) / 1000")
ideal=$(calc "$IN_FLIGHT / $ideal_run_s")
secs=$(calc "($end - $t0) / 1e6")
rate=$(calc "$stored / $secs")
ratio=$(calc "$rate / $ideal")
steps=$((stored * STEPS))
per_run_kb=$(calc "($hwm_kb - $idle_kb) / $IN_FLIGHT")
writes_per_step=$(calc "$tap_msgs / $steps")
bytes_per_step=$(calc "$tap_bytes / $steps")
ckpt_bytes=$(calc "$tap_bytes / ($tap_msgs > 0 ? $tap_msgs : 1)")

table_begin "B5 — agent runs (N=$N runs of $STEPS steps, $PARALLEL tool calls a tool step, $IN_FLIGHT in flight, simulator ${LATENCY_MS} ms, tools ${TOOL_MS} ms)"
row "throughput, publish start → last result stored (runs/s)" "$(fmt "$rate" 1)" \
    "ideal $(fmt "$ideal") ($IN_FLIGHT / ${ideal_run_s} s)" "$(fmt "$ratio" 2)" "≥ $GOAL_RATIO" "$(verdict "$ratio" ge "$GOAL_RATIO")"
row "KV writes per step (\$KV.agentq-runs.> messages / steps)" "$(fmt "$writes_per_step" 2)" \
    "$tap_msgs writes, $steps steps; agentq_agent_checkpoints_total $ckpts" "—" "≤ $GOAL_WRITES" "$(verdict "$writes_per_step" le "$GOAL_WRITES")"
row "KV bytes per step (payload + headers)" "$(fmt "$bytes_per_step")" "$(fmt "$ckpt_bytes") bytes per write" "—" "—" "info"
row "worker RSS per run in flight (KB) = (peak − idle) / $IN_FLIGHT" "$(fmt "$per_run_kb" 1)" \
    "peak $(fmt "$(calc "$hwm_kb / 1024")" 1) MB, idle $(fmt "$(calc "$idle_kb / 1024")" 1) MB; a checkpoint is ≤ $(fmt "$(calc "$ckpt_bytes / 1024")" 1) KB on average" \
    "—" "< $GOAL_KB KB" "$(verdict "$per_run_kb" lt "$GOAL_KB")"
row "worker CPU per step (µs)" "$(fmt "$(calc "$cpu_us / ($steps > 0 ? $steps : 1)")" 1)" \
    "$(fmt "$(calc "$cpu_us / 1e6")" 1) s CPU over $(fmt "$secs" 1) s" "—" "—" "info"
all_cpu=$((cpu_us + sim_cpu + nats_cpu + tool_cpu))
row "CPU per step, whole system: worker + simulator + nats-server + tools (µs)" \
    "$(fmt "$(calc "$all_cpu / ($steps > 0 ? $steps : 1)")" 1)" \
    "$(fmt "$(calc "$cpu_us / $steps")") + $(fmt "$(calc "$sim_cpu / $steps")") + $(fmt "$(calc "$nats_cpu / $steps")") + $(fmt "$(calc "$tool_cpu / $steps")"); $(fmt "$(calc "$all_cpu / 1e6 / $secs")" 2) cores busy" "—" "—" "info"
row "cores the ideal rate needs at this CPU per step" \
    "$(fmt "$(calc "$ideal * $STEPS * $all_cpu / $steps / 1e6")" 2)" "$(nproc) CPUs" "—" "—" "info"
row "runs in flight (agentq_agent_runs_in_flight, peak sampled)" "$peak_runs" "$IN_FLIGHT" \
    "$(fmt "$(calc "$peak_runs / $IN_FLIGHT")" 2)" "—" "info"
row "mean model call / tool call latency in the Results (ms, $(jq .n "$T/sample.json") sampled)" \
    "$(fmt "$(jq .model_ms "$T/sample.json")" 0) / $(fmt "$(jq .tool_ms "$T/sample.json")" 0)" \
    "$LATENCY_MS / $TOOL_MS" "—" "—" "info"
row "tool services' CPU ($TOOL_SERVICES instances, µs per tool call)" \
    "$(fmt "$(calc "$tool_cpu / ($stored * 4 * $PARALLEL > 0 ? $stored * 4 * $PARALLEL : 1)")" 1)" \
    "$(fmt "$(calc "$tool_cpu / 1e6")" 1) s CPU" "—" "—" "info"
row "wall time (s) / simulator calls" "$(fmt "$secs" 2) / $calls" \
    "ideal $(fmt "$(calc "$N / $ideal")" 1) s / $steps steps" "—" "—" "info"
row "results stored" "$stored" "$N runs" "—" "= N" "$([ "$stored" -eq "$N" ] && echo PASS || echo MISS)"
table_note "- sampled Results all COMPLETED with 5 steps: $(jq '.completed == .n' "$T/sample.json"). Other load during the run: $noise"
table_end
