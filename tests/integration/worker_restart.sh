#!/usr/bin/env bash
# A worker stopped (SIGTERM, then kill -9) and restarted in the middle of a
# run loses nothing: every task ends COMPLETED.
source "$(dirname "$0")/lib.sh"
N=${N:-2000}

start_nats
start_sim --latency=20
agentq init > /dev/null
make_tasks "$N" rs > "$T/tasks.jsonl"
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")

# Short AckWait so that what the killed worker held comes back quickly.
start_worker --concurrency=64 --ack_wait=3s --shutdown_grace=5s
wait_until 30 test "$(stat_of results)" -ge $((N / 5)) || fail "no progress"
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker did not exit 0 on SIGTERM"
note "graceful stop at $(stat_of results) results"

start_worker --concurrency=64
wait_until 30 test "$(stat_of results)" -ge $((N / 2)) || fail "no progress after restart"
kill -KILL "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true
note "kill -9 at $(stat_of results) results"

start_worker --concurrency=64
agentq wait --timeout=120s "${ids[@]}" > "$T/results.jsonl" || fail "tasks lost or not finished"
completed=$(jq -r 'select(.status == "STATUS_COMPLETED") | .id' "$T/results.jsonl" | sort -u | wc -l)
[ "$completed" -eq "$N" ] || fail "$completed of $N completed"
wait_until 15 test "$(stat_of tasks_in_stream)" = 0 || fail "stream not empty"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters after restarts"
calls=$(sim_stats | jq '.requests_total')
echo "worker_restart: $N tasks, $completed completed, 0 lost, $((calls - N)) duplicate LLM calls after SIGTERM + kill -9"
