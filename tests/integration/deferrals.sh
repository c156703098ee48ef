#!/usr/bin/env bash
# Waiting is not failing:
# 1. long calls stay owned: calls of 5 s under a 2 s AckWait are never
#    redelivered (in-progress acks), each task is called once;
# 2. a 429 storm (70% of calls) with MaxDeliver at its minimum (2) delays
#    tasks but dead-letters none: deferrals wait inside the delivery;
# 3. a task's deadline bounds its deferrals: past it, it is dead-lettered
#    as `expired`.
source "$(dirname "$0")/lib.sh"

start_nats
agentq init --ack_wait=2s --max_deliver=2 > /dev/null

note "1: 20 calls of 5 s under a 2 s AckWait"
start_sim --latency=5000
start_worker --retry_base=100ms --retry_max=1s
make_tasks 20 long > "$T/long.jsonl"
agentq submit --file "$T/long.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/long.jsonl")
agentq wait --timeout=60s "${ids[@]}" > "$T/long.out" || fail "long calls did not complete"
calls=$(sim_stats | jq '.requests_total')
[ "$calls" -eq 20 ] || fail "20 tasks made $calls calls: a long call was redelivered"
[ "$(stat_of redelivered)" = 0 ] || fail "redelivered: $(stat_of redelivered)"
kill -TERM "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true

note "2: a 429 storm with max_deliver=2"
start_sim --fault_429=0.7 --retry_after=1 --seed=3
# The worker keeps its base_url: the new simulator has a new port.
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true
start_worker --retry_base=100ms --retry_max=1s
make_tasks 40 storm > "$T/storm.jsonl"
agentq submit --file "$T/storm.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/storm.jsonl")
agentq wait --timeout=120s "${ids[@]}" > "$T/storm.out" || fail "storm tasks did not all complete"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters after a 429 storm: $(stat_of dead_letters)"
stats=$(sim_stats)
calls=$(jq '.requests_total' <<< "$stats")
deferred=$(jq '.by_status["429"] // 0' <<< "$stats")
[ "$deferred" -gt 40 ] || fail "only $deferred 429s: the storm was not injected"
attempts=$(jq -s 'map(.attempts) | add' "$T/storm.out")
[ "$attempts" -eq "$calls" ] || fail "results record $attempts attempts, the simulator saw $calls calls"
most=$(jq -s 'map(.attempts) | max' "$T/storm.out")

note "3: a deadline 3 s away, every call answered 429"
kill -TERM "$SIM_PID" "$WORKER_PID"; wait "$SIM_PID" "$WORKER_PID" 2>/dev/null || true
start_sim --fault_429=1 --retry_after=1
start_worker --retry_base=100ms --retry_max=1s
agentq submit --id=late-1 --type=it --prompt="in time?" --deadline=3s --quiet
agentq wait --timeout=30s late-1 > "$T/late.out" && fail "late-1 did not fail"
check "$T/late.out" late-1 '.status == "STATUS_FAILED" and .error.class == "expired"' ||
    fail "late-1: $(cat "$T/late.out")"
wait_until 10 stat_is dead_letters 1 || fail "late-1 not dead-lettered"
echo "deferrals: 20 calls of 5 s under a 2 s AckWait, 0 redelivered; 40 tasks through $deferred 429s" \
     "(up to $most attempts each) with max_deliver=2, 0 dead-lettered; a deadline ended a deferral as expired"
