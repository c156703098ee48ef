#!/usr/bin/env bash
# Tight provider limits: the simulator allows 600 requests a minute for the
# key (a bucket of 600, refilled at 10 a second). 800 tasks: the worker must
# learn the limit from the headers, wait for budget instead of calling into
# 429s, and finish every task with none dead-lettered and at most 1% of calls
# answered 429.
source "$(dirname "$0")/lib.sh"
N=800

start_nats
start_sim --rl_requests=600 --rl_input_tokens=10000000 --rl_output_tokens=10000000
agentq init > /dev/null
start_worker
make_tasks "$N" rl > "$T/tasks.jsonl"
start=$SECONDS
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")
agentq wait --timeout=120s "${ids[@]}" > "$T/results.jsonl" || fail "not every task completed"
secs=$((SECONDS - start))
completed=$(jq -r 'select(.status == "STATUS_COMPLETED") | .id' "$T/results.jsonl" | wc -l)
[ "$completed" -eq "$N" ] || fail "$completed of $N completed"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters: $(stat_of dead_letters)"
stats=$(sim_stats)
calls=$(jq '.requests_total' <<< "$stats")
limited=$(jq '.by_status["429"] // 0' <<< "$stats")
[ $((limited * 100)) -le "$calls" ] || fail "$limited of $calls calls answered 429 (over 1%)"
# 600 at once, then 10 a second: the 200 beyond the bucket need about 20 s.
[ "$secs" -ge 15 ] || fail "done in $secs s: the limit was not enforced?"
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true
waits=$(grep -h '"worker stopped"' "$T"/worker-*.log | jq '.budget_waits')
[ "$waits" -gt 0 ] || fail "no call waited for budget"
echo "ratelimit: $N tasks under 600 requests/min in $secs s, $calls calls, $limited answered 429," \
     "$waits waits for budget, 0 dead-lettered"
