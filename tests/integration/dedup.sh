#!/usr/bin/env bash
# The same task id published twice reaches the LLM once: the stream drops
# the repeat by its Nats-Msg-Id.
source "$(dirname "$0")/lib.sh"

start_nats
start_sim
agentq init > /dev/null
agentq submit --id=dup-1 --type=it --prompt="once only" --quiet
agentq submit --id=dup-1 --type=it --prompt="once only" --quiet 2> "$T/second.err"
grep -q "duplicate" "$T/second.err" || fail "second submit did not report the duplicate"
[ "$(stat_of tasks_in_stream)" = 1 ] || fail "stream holds $(stat_of tasks_in_stream) tasks"

start_worker
agentq wait --timeout=30s dup-1 > "$T/r.json" || fail "no result"
jq -e '.status == "STATUS_COMPLETED"' "$T/r.json" > /dev/null || fail "not completed"
sleep 1
calls=$(sim_stats | jq '.requests_total')
[ "$calls" -eq 1 ] || fail "the simulator saw $calls calls"
echo "dedup: 2 publishes of one id, 1 task in the stream, $calls LLM call"
