#!/usr/bin/env bash
# nats-server restarted twice in the middle of a run (same store directory and
# port): once cleanly (SIGTERM), once crashed (SIGKILL), each time down ~2 s.
# The worker keeps running, reconnects, and finishes; no task is lost, and
# the task stream ends empty (the sweep removes settled tasks the SIGKILL
# brought back behind the ack floor).
source "$(dirname "$0")/chaos_lib.sh"
N=${N:-3000}
CONC=${CONC:-32}   # 32 calls of 100 ms: about 300 tasks/s, a run of ~10 s plus the outages
ACK_WAIT=${ACK_WAIT:-5s}

start_nats
start_sim "${SIM_NO_LIMITS[@]}" --latency=100
agentq init --ack_wait="$ACK_WAIT" > /dev/null
make_tasks "$N" nr > "$T/tasks.jsonl"
ids_of "$T/tasks.jsonl" > "$T/ids.txt"
agentq submit --file "$T/tasks.jsonl" --quiet 2> "$T/submit.log"

WORKER_NAME=w1 start_worker --concurrency="$CONC" --ack_wait="$ACK_WAIT"
W=$WORKER_PID
wlog=$T/worker-w1.log

wait_until "$(within 30)" stat_at_least results $((N / 4)) || fail "no progress before the first restart"
at=$(stat_of results)
[ "$at" -lt "$N" ] || fail "the run ended before the restart: nothing was tested"
note "nats-server SIGTERM at $at results"
bounce_nats TERM 2
kill -0 "$W" 2>/dev/null || fail "the worker exited while nats-server was down"

wait_until "$(within 30)" stat_at_least results $((N * 2 / 3)) || fail "no progress after the first restart: $(agentq stats --json 2>&1)"
at=$(stat_of results)
[ "$at" -lt "$N" ] || fail "the run ended before the second restart: nothing was tested"
note "nats-server SIGKILL at $at results"
bounce_nats KILL 2
kill -0 "$W" 2>/dev/null || fail "the worker exited while nats-server was down"

wait_for_ids 60 "$T/ids.txt"
# Tasks acked before the SIGKILL can come back from the server's file store
# behind the consumer's ack floor, never to be delivered again ("ghosts"):
# the worker's sweep (every 15 s) removes those whose result is stored, so
# the stream must drain completely.
wait_until "$(within 30)" _consumer_idle || fail "the consumer still has work: $(agentq stats --json)"
if ! wait_until "$(within 40)" stat_is tasks_in_stream 0; then
    expect_stream_drained 5 # names what is left and whether it is settled
    fail "$STREAM_LEFTOVERS messages left in the task stream after the sweep"
fi
swept=$(grep '"sweep: settled tasks left behind the ack floor removed"' "$wlog" \
    | grep -o '"deleted":[0-9]*' | cut -d: -f2 | awk '{s += $1} END {print s + 0}')
note "ghosts swept: ${swept:-0}"
kill -0 "$W" 2>/dev/null || fail "the worker exited"
reconnects=$(grep -c '"event":"reconnected"' "$wlog" || true)
[ "$reconnects" -ge 2 ] || fail "the worker logged $reconnects reconnections, expected 2"
# Each outage can cut off at most the calls in flight (CONC) plus the
# redelivery of what the worker held unsettled when nats-server came back.
chaos_verdict nats_restart "nats-server SIGTERM + SIGKILL restarts, down 2 s each, 100 ms latency" \
    "$T/ids.txt" $((2 * 2 * CONC))
[ "$CHAOS_DEAD" -eq 0 ] || fail "$CHAOS_DEAD tasks dead-lettered: restarts alone must not dead-letter"
kill -TERM "$W"; wait "$W" || fail "the worker did not exit 0 on SIGTERM after the restarts"
forget_pid "$W"
