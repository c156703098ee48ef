#!/usr/bin/env bash
# B1's worker half, streamed against not: the worker's CPU per task (utime +
# stime from /proc over its whole life) for B1's tasks (100-byte prompts,
# max_tokens 256, 100-token answers from a zero-latency simulator, which
# streams them in 16-token deltas: 7 deltas, 12 events; B1S_MAX_TOKENS and
# B1S_OUTPUT_TOKENS change the answers), with
# llm_stream_min_max_tokens very large (no call streams) and 0 (every call
# does), alternating, B1S_ROUNDS times each. The measurement behind the
# default of llm_stream_min_max_tokens (README "Streaming").
#
#   AQ_BIN=build tests/bench/b1_stream_cpu.sh     (B1S_N=20000, B1S_ROUNDS=2)
source "$(dirname "$0")/bench_lib.sh"

N=${B1S_N:-20000}
ROUNDS=${B1S_ROUNDS:-2}
MAX_TOKENS=${B1S_MAX_TOKENS:-256}     # B1's
OUTPUT_TOKENS=${B1S_OUTPUT_TOKENS:-100}
echo "== B1 worker CPU per task, streamed or not: N=$N tasks, max_tokens $MAX_TOKENS," \
     "$OUTPUT_TOKENS-token answers, $ROUNDS rounds of (off, on)"

# one_run MIN_MAX_TOKENS: sets r_cpu (us/task), r_rate (tasks/s), r_calls
one_run() {
    fresh_nats
    "$PACED_PUB" --url "$AGENTQ_NATS_URL" --count "$N" --rate 0 --id-prefix w \
        --prompt-bytes 100 --max-tokens "$MAX_TOKENS" > "$T/pub.out"
    bench_sim "${SIM_NO_LIMITS[@]}" --output_tokens="$OUTPUT_TOKENS"
    local t0 cpu_us
    t0=$(now_us)
    bench_worker b1s --concurrency=256 --fetch_batch=256 --log_level=warn \
        --llm_stream_min_max_tokens="$1"
    wait_results "$N" 300 || echo "note: only $S_results of $N results after 300 s"
    cpu_us=$(proc_cpu_us "$WORKER_PID")
    summary
    stop_worker "$WORKER_PID"
    r_calls=$(sim_stats | jq '.requests_total')
    stop_sim
    r_cpu=$(calc "$cpu_us / ($S_results > 0 ? $S_results : 1)")
    r_rate=$(calc "$S_results / (($S_last_stored_us - $t0) / 1e6)")
}

noise_begin
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in off on; do
        [ "$mode" = on ] && min=0 || min=1000000
        one_run "$min"
        printf 'round %d  streaming %-3s  cpu_us_per_task=%s  tasks_per_s=%s  calls=%s\n' \
            "$r" "$mode" "$r_cpu" "$r_rate" "$r_calls" | tee -a "$T/rows.txt"
    done
done
noise_end
awk '{ split($5, a, "="); c[$4] += a[2]; n[$4]++ } END {
    off = c["off"] / n["off"]; on = c["on"] / n["on"];
    printf "mean cpu_us_per_task: off %.1f, on %.1f (%+.1f%%)\n", off, on, (on - off) / off * 100 }' \
    "$T/rows.txt"
