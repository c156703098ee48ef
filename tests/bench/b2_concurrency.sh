#!/usr/bin/env bash
# B2 — concurrency. The simulator answers after a fixed 2 s; one worker with
# concurrency 10,000 gets 60,000 tasks. Ideal: 10,000 / 2 s = 5,000 tasks/s.
# The worker is started on an empty stream and left idle (its RSS then is the
# baseline); the tasks are then published as fast as the server takes them,
# and the run is timed from the start of publishing to the last result stored
# (the results stream's own timestamp).
# Goals: throughput >= 0.9 x ideal; (peak RSS - idle RSS) / 10,000 < 20 KB.
# The open-file limit is raised as far as the hard limit allows (the worker
# and the simulator each hold one descriptor per connection); the consumer's
# max_ack_pending (agentq init default 20,000) must be >= the concurrency. A
# minimal client (sim_load) against the same simulator gives the environment's
# own ceiling in the same run.
# The worker is told the key's limits (B2_WORKER_LIMITS; the simulator's, not
# enforced): with none it learns them from the first answer, one probe call at
# a time (see ratelimit.h, Probing), which costs one simulator latency (2 s of
# a ~14 s run) before the first wave starts. B3 measures that path;
# B2_WORKER_LIMITS= (empty) measures B2 with it.
#
#   AQ_BIN=build tests/bench/b2_concurrency.sh
source "$(dirname "$0")/bench_lib.sh"

N=${B2_N:-60000}
CONC=${B2_CONCURRENCY:-10000}
LATENCY_MS=2000
SIM_THREADS=${B2_SIM_THREADS:-2}
GOAL_RATIO=0.9
GOAL_KB=20
WORKER_LIMITS=${B2_WORKER_LIMITS-sonnet:rpm=1000000000,itpm=1000000000,otpm=1000000000}

echo "== B2 concurrency: N=$N tasks, worker concurrency $CONC, simulator latency $LATENCY_MS ms"
nofile=$(raise_nofile 65536)
echo "  open-file limit: $nofile (hard limit $(ulimit -Hn))"
[ "$nofile" -ge $((CONC + 1000)) ] || fail "open-file limit $nofile < $((CONC + 1000)): cannot hold $CONC connections"

fresh_nats
summary
[ "$S_max_ack_pending" -ge "$CONC" ] || fail "consumer max_ack_pending $S_max_ack_pending < $CONC"
bench_sim --latency="$LATENCY_MS" --threads="$SIM_THREADS" "${SIM_NO_LIMITS[@]}"
bench_worker b2 --concurrency="$CONC" --log_level=warn ${WORKER_LIMITS:+--rate_limits="$WORKER_LIMITS"}
wait_ready 30 || fail "worker not pulling"
sleep 1
idle_kb=$(proc_kb "$WORKER_PID" VmRSS)
noise_begin
t0=$(now_us)
run "$PACED_PUB" --url "$AGENTQ_NATS_URL" --count "$N" --rate 0 --id-prefix c | tee "$T/pub.out"
wait_results "$N" 180 || echo "note: only $S_results of $N results after 180 s"
hwm_kb=$(proc_kb "$WORKER_PID" VmHWM)
cpu_us=$(proc_cpu_us "$WORKER_PID")
summary
end=$S_last_stored_us
stored=$S_results
noise=$(noise_end)
stop_worker "$WORKER_PID"
sim_stats > "$T/sim_stats.json"
peak=$(jq '.peak_concurrent_requests' "$T/sim_stats.json")
peak_conns=$(jq '.peak_connections' "$T/sim_stats.json")
calls=$(jq '.requests_total' "$T/sim_stats.json")
# The environment's own ceiling in this run: a minimal client (sim_load, an
# evhttp loop per thread, no JetStream) with the same connections and calls.
run "$AQ_BIN/tests/bench/sim_load" --port "${SIM_URL##*:}" -c "$CONC" -n "$N" -t 2 --timeout 60 > "$T/sim_load.out" || true
head -3 "$T/sim_load.out"
load_rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' "$T/sim_load.out")

ideal=$(calc "$CONC * 1000 / $LATENCY_MS")
secs=$(calc "($end - $t0) / 1e6")
rate=$(calc "$stored / $secs")
ratio=$(calc "$rate / $ideal")
per_call=$(calc "($hwm_kb - $idle_kb) / $CONC")

table_begin "B2 — concurrency (N=$N, simulator latency ${LATENCY_MS} ms, $SIM_THREADS sim threads, worker concurrency $CONC)"
row "throughput, publish start → last result stored (tasks/s)" "$(fmt "$rate")" \
    "ideal $(fmt "$ideal") ($CONC / ${LATENCY_MS} ms)" "$(fmt "$ratio" 2)" "≥ $GOAL_RATIO" "$(verdict "$ratio" ge "$GOAL_RATIO")"
row "RSS per in-flight call (KB) = (peak − idle) / $CONC" "$(fmt "$per_call" 1)" \
    "peak $(fmt "$(calc "$hwm_kb / 1024")" 1) MB, idle $(fmt "$(calc "$idle_kb / 1024")" 1) MB" "—" "< $GOAL_KB KB" \
    "$(verdict "$per_call" lt "$GOAL_KB")"
row "minimal client against the same simulator (sim_load -c $CONC -n $N, tasks/s)" "$(fmt "${load_rps:-0}")" \
    "ideal $(fmt "$ideal")" "$(fmt "$(calc "${load_rps:-0} / $ideal")" 2)" "—" "info"
row "worker throughput vs that minimal client" "$(fmt "$rate")" "sim_load $(fmt "${load_rps:-0}")" \
    "$(fmt "$(calc "$rate / (${load_rps:-0} > 0 ? ${load_rps:-0} : 1)")" 2)" "—" "info"
row "simulator peak concurrent requests / connections" "$peak / $peak_conns" "$CONC" \
    "$(fmt "$(calc "$peak / $CONC")" 2)" "—" "info"
row "wall time (s) / simulator calls / worker CPU per task (µs)" \
    "$(fmt "$secs" 2) / $calls / $(fmt "$(calc "$cpu_us / ($stored > 0 ? $stored : 1)")" 1)" "ideal $(fmt "$(calc "$N / $ideal")" 1) s" "—" "—" "info"
row "results stored" "$stored" "$N tasks" "—" "= N" "$([ "$stored" -eq "$N" ] && echo PASS || echo MISS)"
table_note "- worker rate limits: ${WORKER_LIMITS:-none configured (learned from the first answer: one probe call first)}"
table_note "- open-file limit of the worker and the simulator: $nofile (raised to the hard limit $(ulimit -Hn); each needs one per connection). Other load during the run: $noise"
table_end
