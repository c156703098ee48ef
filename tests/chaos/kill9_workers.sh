#!/usr/bin/env bash
# Two workers on one consumer; kill -9 one of them (alternating) every 2-3 s and
# restart it, until every task is done. Nothing is lost: what a killed worker
# held comes back after AckWait; a task whose result it had stored is settled
# from the result without a second call.
source "$(dirname "$0")/chaos_lib.sh"
N=${N:-5000}
CONC=${CONC:-32}       # 2 workers x 32 calls of 200 ms: about 300 tasks/s, a run of ~20 s
ACK_WAIT=${ACK_WAIT:-5s}

start_nats
start_sim "${SIM_NO_LIMITS[@]}" --latency=200
agentq init --ack_wait="$ACK_WAIT" > /dev/null
make_tasks "$N" k9 > "$T/tasks.jsonl"
ids_of "$T/tasks.jsonl" > "$T/ids.txt"
agentq submit --file "$T/tasks.jsonl" --quiet 2> "$T/submit.log"

WOPTS=(--concurrency="$CONC" --ack_wait="$ACK_WAIT" --shutdown_grace=5s)
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
[ "$kills" -ge 3 ] || fail "only $kills kills before the run ended: make the run longer"

wait_for_ids 60 "$T/ids.txt"
expect_stream_drained 30
for w in w1 w2; do kill -0 "${WPID[$w]}" 2>/dev/null || fail "worker $w died by itself"; done
# A killed worker loses at most the calls it had in flight.
chaos_verdict kill9_workers "kill -9 x$kills (2 workers, every 2-3 s), 200 ms latency" \
    "$T/ids.txt" $((kills * CONC))
[ "$CHAOS_DEAD" -eq 0 ] || fail "$CHAOS_DEAD tasks dead-lettered: kills alone must not dead-letter"
