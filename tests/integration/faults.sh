#!/usr/bin/env bash
# Provider faults: 20% 429 (with retry-after), 5% 529, 10% 500. Every task
# still completes, none is dead-lettered, and the attempts recorded in the
# results add up to the calls the simulator saw.
source "$(dirname "$0")/lib.sh"
N=${N:-300}

start_nats
start_sim --fault_429=0.2 --fault_529=0.05 --fault_500=0.1 --retry_after=1 --seed=7
agentq init > /dev/null
# 10% 500s with 8 attempts: a task fails 8 times running with odds 1e-8.
start_worker --retry_base=50ms --retry_max=500ms --max_attempts=8
make_tasks "$N" flt > "$T/tasks.jsonl"
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")
agentq wait --timeout=120s "${ids[@]}" > "$T/results.jsonl" || fail "not every task completed"

completed=$(jq -r 'select(.status == "STATUS_COMPLETED") | .id' "$T/results.jsonl" | wc -l)
[ "$completed" -eq "$N" ] || fail "$completed of $N completed"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters: $(stat_of dead_letters)"
stats=$(sim_stats)
calls=$(jq '.requests_total' <<< "$stats")
attempts=$(jq -s 'map(.attempts) | add' "$T/results.jsonl")
[ "$attempts" -eq "$calls" ] || fail "results record $attempts attempts, the simulator saw $calls calls"
retried=$(jq -s 'map(select(.attempts > 1)) | length' "$T/results.jsonl")
[ "$retried" -gt 0 ] || fail "no task was retried: faults not injected?"
echo "faults: $N tasks, $completed completed, 0 dead-lettered; $calls calls" \
     "($(jq -c '.by_status' <<< "$stats")), $retried tasks needed more than one attempt"
