#!/usr/bin/env bash
# B1 — pipeline ceiling. In one run, on fresh nats-servers of the same kind:
#  (a) js_ceiling: the raw JetStream work of the pipeline (publish N tasks;
#      fetch(256) + pipelined KV put of a result-sized value + ack after the
#      put's ack; no HTTP);
#  (b) one agentq-worker (default concurrency and fetch batch) against a
#      zero-latency simulator, the same N tasks (same bytes) published before
#      it starts; timed from the worker's start to the last result stored
#      (the results stream's own timestamp of its last message).
# Goal: worker tasks/s >= 0.3 x the ceiling. Also the worker's CPU per task
# (utime + stime from /proc over its whole life) beside js_ceiling's.
#
#   AQ_BIN=build tests/bench/b1_ceiling.sh        (B1_N=50000 by default)
source "$(dirname "$0")/bench_lib.sh"

N=${B1_N:-50000}
PROMPT_BYTES=100       # task payload ~120 B
MAX_TOKENS=256       # > the answer: not cut short
OUTPUT_TOKENS=100      # answer text 400 B: a stored Result of ~500 B
RESULT_BYTES=500
GOAL=0.3

echo "== B1 pipeline ceiling: N=$N tasks"

# (a) the raw JetStream ceiling
noise_begin
fresh_nats
run "$JS_CEILING" --url "$AGENTQ_NATS_URL" -n "$N" --batch 256 --result-bytes "$RESULT_BYTES" \
    --prompt-bytes "$PROMPT_BYTES" | tee "$T/ceiling.out"
ceiling=$(kv "$T/ceiling.out" rate)
ceiling_cpu=$(kv "$T/ceiling.out" cpu_us_per_msg)
summary
ceiling_bytes=$((S_bytes / S_results))

# (b) the worker
fresh_nats
run "$PACED_PUB" --url "$AGENTQ_NATS_URL" --count "$N" --rate 0 --id-prefix w \
    --prompt-bytes "$PROMPT_BYTES" --max-tokens "$MAX_TOKENS" | tee "$T/pub.out"
bench_sim "${SIM_NO_LIMITS[@]}" --output_tokens="$OUTPUT_TOKENS"
t0=$(now_us)
bench_worker b1 --concurrency=256 --fetch_batch=256 --log_level=warn
wait_results "$N" 300 || echo "note: only $S_results of $N results after 300 s"
cpu_us=$(proc_cpu_us "$WORKER_PID")
hwm=$(proc_kb "$WORKER_PID" VmHWM)
summary
end=$S_last_stored_us
first=$S_first_stored_us
acked=$S_ack_floor_us
worker_bytes=$((S_bytes / (S_results > 0 ? S_results : 1)))
stored=$S_results
noise=$(noise_end)
stop_worker "$WORKER_PID"
calls=$(sim_stats | jq '.requests_total')
ok=$(sim_stats | jq '.by_status["200"] // 0')

secs=$(calc "($end - $t0) / 1e6")
rate=$(calc "$stored / $secs")
steady=$(calc "($stored - 1) / (($end - $first + 1) / 1e6)")
ratio=$(calc "$rate / $ceiling")
cpu_per=$(calc "$cpu_us / ($stored > 0 ? $stored : 1)")
[ "$calls" -eq "$N" ] && [ "$ok" -eq "$N" ] || echo "note: the simulator saw $calls calls ($ok answered 200) for $N tasks"
# Handed to B4 (run.sh): half of this is its publishing rate.
if [ -n "${BENCH_STATE:-}" ]; then echo "B1_WORKER_RATE=$(fmt "$rate")" >> "$BENCH_STATE"; fi

table_begin "B1 — pipeline ceiling (N=$N, zero-latency simulator, 1 worker, concurrency 256, fetch batch 256)"
row "worker throughput, worker start → last result stored (tasks/s)" "$(fmt "$rate")" \
    "js_ceiling $(fmt "$ceiling") msgs/s" "$(fmt "$ratio" 2)" "≥ $GOAL" "$(verdict "$ratio" ge "$GOAL")"
row "worker throughput, worker start → last task acked (consumer ack floor time)" \
    "$(fmt "$(calc "$stored / (($acked - $t0) / 1e6)")")" "js_ceiling $(fmt "$ceiling") msgs/s" \
    "$(fmt "$(calc "$stored / (($acked - $t0) / 1e6) / $ceiling")" 2)" "—" "info"
row "worker throughput, first → last result stored (tasks/s)" "$(fmt "$steady")" \
    "js_ceiling $(fmt "$ceiling") msgs/s" "$(fmt "$(calc "$steady / $ceiling")" 2)" "—" "info"
row "worker CPU per task (µs, utime+stime over its life)" "$(fmt "$cpu_per" 1)" \
    "js_ceiling $(fmt "$ceiling_cpu" 1) µs/msg" "$(fmt "$(calc "$cpu_per / $ceiling_cpu")" 1)" "—" "info"
row "worker wall time (s) / peak RSS (MB)" "$(fmt "$secs" 2) / $(fmt "$(calc "$hwm / 1024")" 1)" "—" "—" "—" "info"
row "stored bytes per result (stream bytes / msgs)" "$worker_bytes" "js_ceiling $ceiling_bytes" "—" "—" "info"
row "results stored / simulator calls / answered 200" "$stored / $calls / $ok" "$N tasks" "—" "all = N" \
    "$([ "$stored" -eq "$N" ] && [ "$calls" -eq "$N" ] && [ "$ok" -eq "$N" ] && echo PASS || echo MISS)"
table_note "- other load during the run: $noise"
table_end
