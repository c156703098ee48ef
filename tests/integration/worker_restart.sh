#!/usr/bin/env bash
# A worker stopped (SIGTERM, then kill -9) and restarted in the middle of a
# run loses nothing: every task ends COMPLETED.
source "$(dirname "$0")/lib.sh"
N=${N:-2000}

start_nats
# 200 ms calls, 64 at a time: about 320 tasks/s, so the kills land mid-run.
start_sim --latency=200
agentq init > /dev/null
make_tasks "$N" rs > "$T/tasks.jsonl"
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")

# Short AckWait so that what the killed worker held comes back quickly.
start_worker --concurrency=64 --ack_wait=3s --shutdown_grace=5s
wait_until 30 stat_at_least results $((N / 5)) || fail "no progress"
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || fail "worker did not exit 0 on SIGTERM"
at_stop=$(stat_of results)
[ "$at_stop" -lt "$N" ] || fail "the run ended before the stop: nothing was tested"
note "graceful stop at $at_stop results"

start_worker --concurrency=64
wait_until 30 stat_at_least results $((N / 2)) || fail "no progress after restart"
kill -KILL "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true
at_kill=$(stat_of results)
[ "$at_kill" -lt "$N" ] || fail "the run ended before the kill: nothing was tested"
note "kill -9 at $at_kill results"

start_worker --concurrency=64
agentq wait --timeout=120s "${ids[@]}" > "$T/results.jsonl" || fail "tasks lost or not finished"
completed=$(jq -r 'select(.status == "STATUS_COMPLETED") | .id' "$T/results.jsonl" | sort -u | wc -l)
[ "$completed" -eq "$N" ] || fail "$completed of $N completed"
wait_until 15 stat_is tasks_in_stream 0 || fail "stream not empty"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters after restarts"
calls=$(sim_stats | jq '.requests_total')
echo "worker_restart: $N tasks, $completed completed, 0 lost, $((calls - N)) duplicate LLM calls after SIGTERM + kill -9"
