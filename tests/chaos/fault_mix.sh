#!/usr/bin/env bash
# Provider faults mixed: 20% 429 (retry-after 1 s), 5% 529, 5% 500 and 2%
# connections dropped without an answer. The worker retries in place:
#   * deferrals (429, 529) never dead-letter a task;
#   * retryable failures (500, dropped connection) dead-letter a task only after
#     max_attempts (default 5) of them. Deferrals aside, a call fails
#     retryably with odds 0.07 / (0.07 + 0.68) = 0.093, so five in a row before
#     a success has odds 0.093^5 = 7e-6 per task: 0 dead letters expected for
#     1,000 tasks (and any dead letter must be of a retryable class);
#   * every call is counted once: the sum of the results' attempts equals the
#     simulator's request count (no worker is killed here, so nothing else calls).
source "$(dirname "$0")/chaos_lib.sh"
N=${N:-1000}

start_nats
start_sim "${SIM_NO_LIMITS[@]}" --fault_429=0.2 --fault_529=0.05 --fault_500=0.05 --fault_drop=0.02 --retry_after=1 --seed=11
agentq init > /dev/null
make_tasks "$N" fm > "$T/tasks.jsonl"
ids_of "$T/tasks.jsonl" > "$T/ids.txt"
agentq submit --file "$T/tasks.jsonl" --quiet 2> "$T/submit.log"
start_worker --retry_base=50ms --retry_max=500ms
W=$WORKER_PID

wait_for_ids 90 "$T/ids.txt"
expect_stream_drained 20
kill -0 "$W" 2>/dev/null || fail "the worker exited"
stats=$(sim_stats)
by_status=$(jq -c '.by_status' <<< "$stats")
# Every dead letter, if any, is for retryable failures, never for deferrals.
deferral_dl=$(dlq_dump | jq -s '[.[] | select(.headers["Agentq-Error-Class"] == "rate_limited" or .headers["Agentq-Error-Class"] == "overloaded")] | length')
chaos_verdict fault_mix "sim: 20% 429, 5% 529, 5% 500, 2% dropped connections" "$T/ids.txt"
note "simulator: $by_status, dropped $(jq .dropped <<< "$stats")"
[ "$deferral_dl" -eq 0 ] || fail "$deferral_dl tasks dead-lettered for deferrals (429/529)"
[ "$CHAOS_DEAD" -eq 0 ] || fail "$CHAOS_DEAD tasks dead-lettered (expected 0 with max_attempts 5): classes in $T/verdict.json"
if [ "$CHAOS_ATTEMPTS" -ne "$CHAOS_CALLS" ]; then
    # Diagnosis: dropped connections the worker never saw as a failed call.
    dropped=$(jq .dropped <<< "$stats")
    seen=$(grep -h '"class":"connection_error"' "$T"/worker-*.log | grep -cE '"msg":"task (will be retried|dead-lettered)"' || true)
    fail "results record $CHAOS_ATTEMPTS attempts, the simulator saw $CHAOS_CALLS calls ($((CHAOS_CALLS - CHAOS_ATTEMPTS)) uncounted);" \
         "the simulator dropped $dropped connections and the worker saw $seen of them as a failed call:" \
         "$((dropped - seen)) requests were sent again without the worker counting a call" \
         "(libcurl re-sends a request whose reused keep-alive connection closes before any answer)"
fi
retried=$(jq -s 'map(select(.attempts > 1)) | length' "$T/results.jsonl")
[ "$retried" -gt 0 ] || fail "no task needed a second call: faults not injected?"
[ "$(jq '.by_status["429"] // 0' <<< "$stats")" -gt 0 ] || fail "no 429 answered: faults not injected?"
note "$retried tasks needed more than one call; most calls for one task: $(jq -s 'map(.attempts) | max' "$T/results.jsonl")"
