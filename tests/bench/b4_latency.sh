#!/usr/bin/env bash
# B4 — added latency. A paced publisher sends tasks at a fixed rate (half the
# B1 worker rate of the same run, via run.sh; B4_RATE overrides; alone it
# defaults to 2,000/s) for 20 s, each with created_unix_ms = its publish time;
# the simulator answers after a fixed 50 ms. Per task:
#
#   added = stored − created − 50 ms
#
# created: the publisher's clock read just before the publish, in µs (its log;
# the task carries the same instant in ms). stored: nats-server's timestamp of
# the Result's KV write, in ns, read from the results stream — the moment the
# result became durable and visible to a client. Both are CLOCK_REALTIME of
# this one host, so the difference is exact to the µs; the simulator's 50 ms is
# a floor (its timer fires at or after 50 ms), so `added` is everything the
# system adds: queueing in JetStream, fetch, decode, HTTP overhead, the KV
# write and its acknowledgement. The Result's completed_unix_ms (set by the
# worker just before the write, in ms) gives the formula of the issue and is
# shown too; it leaves out the write and is truncated to the ms.
# Goal: p99 of `added` < 10 ms, after a warm-up at the same rate (B4_WARMUP
# seconds, default 2; see below) that is not measured.
#
#   AQ_BIN=build tests/bench/b4_latency.sh
source "$(dirname "$0")/bench_lib.sh"

LATENCY_MS=50
DURATION=${B4_DURATION:-20}
if [ -z "${B4_RATE:-}" ] && [ -n "${BENCH_STATE:-}" ] && [ -f "$BENCH_STATE" ]; then
    # shellcheck disable=SC1090
    source "$BENCH_STATE"
    [ -n "${B1_WORKER_RATE:-}" ] && B4_RATE=$((B1_WORKER_RATE / 2)) && RATE_FROM="half the B1 worker rate of this run"
fi
RATE=${B4_RATE:-2000}
RATE_FROM=${RATE_FROM:-"B4_RATE or the default"}
CONC=1024
GOAL_MS=10
N=$(awk -v r="$RATE" -v d="$DURATION" 'BEGIN { printf "%d", r * d + 0.5 }')

echo "== B4 added latency: $RATE tasks/s ($RATE_FROM) for $DURATION s, simulator latency $LATENCY_MS ms"
fresh_nats
bench_sim --latency="$LATENCY_MS" "${SIM_NO_LIMITS[@]}" --output_tokens=100
bench_worker b4 --concurrency="$CONC" --log_level=warn
wait_ready 30 || fail "worker not pulling"
# Warm-up, not measured: the same rate for WARMUP s, so that the measured
# tasks meet a worker in its steady state — its keep-alive connections open
# and the key's limits learned from the first answers (until then the limiter
# lets one probe call out at a time: ratelimit.h, Probing). B4_WARMUP=0
# measures from a cold worker; the first second then dominates the p99.
WARMUP=${B4_WARMUP:-2}
NW=0
if [ "$WARMUP" != 0 ]; then
    NW=$(awk -v r="$RATE" -v d="$WARMUP" 'BEGIN { printf "%d", r * d + 0.5 }')
    run "$PACED_PUB" --url "$AGENTQ_NATS_URL" --rate "$RATE" --duration "$WARMUP" --id-prefix warm \
        --max-tokens 256 > /dev/null
    wait_results "$NW" 60 || echo "note: only $S_results of $NW warm-up results after 60 s"
fi
cpu0_us=$(proc_cpu_us "$WORKER_PID")
noise_begin
run "$PACED_PUB" --url "$AGENTQ_NATS_URL" --rate "$RATE" --duration "$DURATION" --id-prefix l \
    --max-tokens 256 --log "$T/created.tsv" | tee "$T/pub.out"
wait_results "$((NW + N))" 60 || echo "note: only $((S_results - NW)) of $N results 60 s after the last publish"
stored=$((S_results - NW))
noise=$(noise_end)
cpu_us=$(($(proc_cpu_us "$WORKER_PID") - cpu0_us))
stop_worker "$WORKER_PID"
"$RESULTS_DUMP" --url "$AGENTQ_NATS_URL" > "$T/results.tsv"

# id  added_stored_ms  added_completed_ms  worker_ms (completed − created − llm_latency_ms)  llm_latency_ms
awk -F'\t' -v lat="$LATENCY_MS" '
    NR == FNR { created[$1] = $2; next }
    $2 != "COMPLETED" || $7 != 1 { bad++ }
    $1 ~ /^warm-/ { next }
    !($1 in created) { missing++; next }
    { c = created[$1]
      printf "%.3f\t%.3f\t%.3f\t%d\n", ($3 - c) / 1000 - lat, ($4 * 1000 - c) / 1000 - lat,
             ($4 * 1000 - c) / 1000 - $5, $5 }
    END { if (bad + missing) printf "%d results not COMPLETED in one attempt, %d unknown ids\n", bad, missing > "/dev/stderr" }
' "$T/created.tsv" "$T/results.tsv" > "$T/lat.tsv"
keep_files "$T/created.tsv" "$T/results.tsv" "$T/lat.tsv"
count=$(wc -l < "$T/lat.tsv")
bad=$(awk -F'\t' '$2 != "COMPLETED" || $7 != 1' "$T/results.tsv" | wc -l)
# pct COLUMN P: nearest-rank percentile of a column of lat.tsv
pct() { cut -f"$1" "$T/lat.tsv" | sort -g | awk -v p="$2" '{ v[NR] = $1 } END { i = int(p * NR + 0.999999); if (i < 1) i = 1; print v[i] }'; }

p50=$(pct 1 0.50); p99=$(pct 1 0.99); pmax=$(pct 1 1)
c50=$(pct 2 0.50); c99=$(pct 2 0.99)
w50=$(pct 3 0.50); w99=$(pct 3 0.99)
l50=$(pct 4 0.50); l99=$(pct 4 0.99)
achieved=$(kv "$T/pub.out" rate); lag=$(kv "$T/pub.out" max_lag_ms)

table_begin "B4 — added latency ($count tasks at $RATE/s for $DURATION s after a ${WARMUP} s warm-up, simulator latency $LATENCY_MS ms, worker concurrency $CONC)"
row "added latency p99: stored − created − ${LATENCY_MS} ms (ms)" "$(fmt "$p99" 2)" "p50 $(fmt "$p50" 2), max $(fmt "$pmax" 1)" "—" "< $GOAL_MS ms" "$(verdict "$p99" lt "$GOAL_MS")"
row "same with the Result's completed_unix_ms, p50 / p99 (ms, ms-truncated)" "$(fmt "$c50" 1) / $(fmt "$c99" 1)" "—" "—" "—" "info"
row "worker's own share: completed − created − llm_latency_ms, p50 / p99 (ms)" "$(fmt "$w50" 1) / $(fmt "$w99" 1)" "—" "—" "—" "info"
row "call time seen by the worker (llm_latency_ms), p50 / p99" "$l50 / $l99" "simulator $LATENCY_MS ms" "—" "—" "info"
row "publisher rate achieved (tasks/s) / max lag behind schedule (ms)" "$(fmt "$achieved") / $lag" "target $RATE" "$(fmt "$(calc "$achieved / $RATE")" 2)" "—" "info"
row "worker CPU per task (µs)" "$(fmt "$(calc "$cpu_us / ($stored > 0 ? $stored : 1)")" 1)" "—" "—" "—" "info"
row "results stored (all COMPLETED, 1 call each)" "$stored (bad: $bad)" "$N published" "—" "= N" "$([ "$stored" -eq "$N" ] && [ "$bad" -eq 0 ] && echo PASS || echo MISS)"
table_note "- worker rate limits: none configured (learned from the first answers, during the warm-up). Other load during the run: $noise"
table_end
