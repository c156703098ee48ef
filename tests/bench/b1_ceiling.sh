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
# B1_ROUNDS rounds (default 3) of (a) then (b); the table gives the medians
# and every round's ratio: on this shared machine one pair alone moved
# between 0.16 and 0.26 within an hour.
#
#   AQ_BIN=build tests/bench/b1_ceiling.sh        (B1_N=50000, B1_ROUNDS=3 by default)
source "$(dirname "$0")/bench_lib.sh"

N=${B1_N:-50000}
PROMPT_BYTES=100       # task payload ~120 B
MAX_TOKENS=256       # > the answer: not cut short
OUTPUT_TOKENS=100      # answer text 400 B: a stored Result of ~500 B
RESULT_BYTES=500
GOAL=0.3

ROUNDS=${B1_ROUNDS:-3}
echo "== B1 pipeline ceiling: N=$N tasks, $ROUNDS rounds (ceiling, then worker)"

# (a) the raw JetStream ceiling; sets c_rate, c_cpu, c_bytes
measure_ceiling() {
    fresh_nats
    run "$JS_CEILING" --url "$AGENTQ_NATS_URL" -n "$N" --batch 256 --result-bytes "$RESULT_BYTES" \
        --prompt-bytes "$PROMPT_BYTES" | tee "$T/ceiling.out"
    c_rate=$(kv "$T/ceiling.out" rate)
    c_cpu=$(kv "$T/ceiling.out" cpu_us_per_msg)
    summary
    c_bytes=$((S_bytes / S_results))
}

# (b) the worker; sets w_rate, w_steady, w_acked_rate, w_cpu, w_secs, w_hwm, w_bytes, w_stored,
# w_calls, w_ok
measure_worker() {
    fresh_nats
    run "$PACED_PUB" --url "$AGENTQ_NATS_URL" --count "$N" --rate 0 --id-prefix w \
        --prompt-bytes "$PROMPT_BYTES" --max-tokens "$MAX_TOKENS" | tee "$T/pub.out"
    bench_sim "${SIM_NO_LIMITS[@]}" --output_tokens="$OUTPUT_TOKENS"
    local t0 cpu_us
    t0=$(now_us)
    bench_worker b1 --concurrency=256 --fetch_batch=256 --log_level=warn
    wait_results "$N" 300 || echo "note: only $S_results of $N results after 300 s"
    cpu_us=$(proc_cpu_us "$WORKER_PID")
    w_hwm=$(proc_kb "$WORKER_PID" VmHWM)
    summary
    w_stored=$S_results
    w_bytes=$((S_bytes / (S_results > 0 ? S_results : 1)))
    stop_worker "$WORKER_PID"
    sim_stats > "$T/sim_stats.json"
    w_calls=$(jq '.requests_total' "$T/sim_stats.json")
    w_ok=$(jq '.by_status["200"] // 0' "$T/sim_stats.json")
    stop_sim
    w_secs=$(calc "($S_last_stored_us - $t0) / 1e6")
    w_rate=$(calc "$w_stored / $w_secs")
    w_acked_rate=$(calc "$w_stored / (($S_ack_floor_us - $t0) / 1e6)")
    w_steady=$(calc "($w_stored - 1) / (($S_last_stored_us - $S_first_stored_us + 1) / 1e6)")
    w_cpu=$(calc "$cpu_us / ($w_stored > 0 ? $w_stored : 1)")
    [ "$w_calls" -eq "$N" ] && [ "$w_ok" -eq "$N" ] || echo "note: the simulator saw $w_calls calls ($w_ok answered 200) for $N tasks"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The machine is shared and its speed drifts within minutes: each round
# measures the ceiling and the worker back to back, and the table gives the
# medians, with every round's ratio beside them.
noise_begin
C_RATE=() C_CPU=() W_RATE=() W_STEADY=() W_ACKED=() W_CPU=() RATIOS=()
all_ok=1
for ((r = 1; r <= ROUNDS; r++)); do
    measure_ceiling
    measure_worker
    C_RATE+=("$c_rate"); C_CPU+=("$c_cpu"); W_RATE+=("$w_rate"); W_STEADY+=("$w_steady")
    W_ACKED+=("$w_acked_rate"); W_CPU+=("$w_cpu"); RATIOS+=("$(fmt "$(calc "$w_rate / $c_rate")" 2)")
    [ "$w_stored" -eq "$N" ] && [ "$w_calls" -eq "$N" ] && [ "$w_ok" -eq "$N" ] || all_ok=0
    echo "round $r: worker $(fmt "$w_rate")/s, ceiling $(fmt "$c_rate")/s, ratio ${RATIOS[-1]}"
done
noise=$(noise_end)
ceiling=$(median "${C_RATE[@]}")
ceiling_cpu=$(median "${C_CPU[@]}")
rate=$(median "${W_RATE[@]}")
steady=$(median "${W_STEADY[@]}")
acked=$(median "${W_ACKED[@]}")
cpu_per=$(median "${W_CPU[@]}")
ratio=$(calc "$rate / $ceiling")
# Handed to B4 (run.sh): half of this is its publishing rate.
if [ -n "${BENCH_STATE:-}" ]; then echo "B1_WORKER_RATE=$(fmt "$rate")" >> "$BENCH_STATE"; fi

table_begin "B1 — pipeline ceiling (N=$N, zero-latency simulator, 1 worker, concurrency 256, fetch batch 256; median of $ROUNDS rounds)"
row "worker throughput, worker start → last result stored (tasks/s)" "$(fmt "$rate")" \
    "js_ceiling $(fmt "$ceiling") msgs/s" "$(fmt "$ratio" 2)" "≥ $GOAL" "$(verdict "$ratio" ge "$GOAL")"
row "each round's ratio (worker / the ceiling measured just before it)" "${RATIOS[*]}" "—" "—" "—" "info"
row "worker throughput, worker start → last task acked (consumer ack floor time)" "$(fmt "$acked")" \
    "js_ceiling $(fmt "$ceiling") msgs/s" "$(fmt "$(calc "$acked / $ceiling")" 2)" "—" "info"
row "worker throughput, first → last result stored (tasks/s)" "$(fmt "$steady")" \
    "js_ceiling $(fmt "$ceiling") msgs/s" "$(fmt "$(calc "$steady / $ceiling")" 2)" "—" "info"
row "worker CPU per task (µs, utime+stime over its life)" "$(fmt "$cpu_per" 1)" \
    "js_ceiling $(fmt "$ceiling_cpu" 1) µs/msg" "$(fmt "$(calc "$cpu_per / $ceiling_cpu")" 1)" "—" "info"
row "worker wall time (s) / peak RSS (MB), last round" "$(fmt "$w_secs" 2) / $(fmt "$(calc "$w_hwm / 1024")" 1)" "—" "—" "—" "info"
row "stored bytes per result (stream bytes / msgs)" "$w_bytes" "js_ceiling $c_bytes" "—" "—" "info"
row "results stored / simulator calls / answered 200, every round" "$([ "$all_ok" = 1 ] && echo "$N / $N / $N" || echo "short: see the notes above")" "$N tasks" "—" "all = N" \
    "$([ "$all_ok" = 1 ] && echo PASS || echo MISS)"
table_note "- other load during the run: $noise"
table_end
