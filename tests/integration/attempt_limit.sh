#!/usr/bin/env bash
# max_attempts bounds the requests the provider sees for a task in one
# delivery, libcurl's own re-sends included. libcurl sends a request again,
# by itself, when the reused keep-alive connection it went out on closes
# before any answer: the provider may have seen both. Those re-sends used to
# be counted in `attempts` but not against the limit, so with max_attempts=3
# tasks were sent 4 and 5 times. Now each one is a failed attempt, and once
# the limit is reached libcurl is not let send again.
#
# The simulator answers 30% 500 and drops 30% of connections without an
# answer. Tasks go one at a time first, so that the simulator's request count
# says how many requests each task made: per task, that count is at most
# max_attempts and is what the result records as `attempts`. Then a batch in
# parallel: every result's attempts is at most max_attempts and they add up
# to the simulator's count.
source "$(dirname "$0")/lib.sh"
MAX_ATTEMPTS=3
N_ONE=${N_ONE:-40}
N_BATCH=${N_BATCH:-200}

start_nats
start_sim --fault_500=0.3 --fault_drop=0.3 --seed=5
agentq init > /dev/null
start_worker --max_attempts=$MAX_ATTEMPTS --retry_base=10ms --retry_max=50ms --concurrency=32
W=$WORKER_PID

requests() { sim_stats | jq .requests_total; }

over=0 mismatch=0 resent=0 dead=0
for i in $(seq "$N_ONE"); do
    before=$(requests)
    r=$(agentq submit --id "one-$i" --type it --prompt "one at a time $i" --max_tokens 16 \
            --wait --timeout 30s 2> "$T/one-$i.err" | tail -n 1) || true
    calls=$(( $(requests) - before ))
    attempts=$(jq -r '.attempts // "none"' <<< "$r" 2>/dev/null || echo none)
    status=$(jq -r '.status // "none"' <<< "$r" 2>/dev/null || echo none)
    [ "$status" = STATUS_COMPLETED ] || [ "$status" = STATUS_FAILED ] \
        || fail "one-$i: no result: $r $(cat "$T/one-$i.err")"
    [ "$status" = STATUS_FAILED ] && dead=$((dead + 1))
    if [ "$calls" -gt "$MAX_ATTEMPTS" ]; then
        over=$((over + 1))
        echo "one-$i: the simulator saw $calls requests (max_attempts=$MAX_ATTEMPTS), result: $(jq -c '{status, attempts, error}' <<< "$r")" >&2
    fi
    if [ "$attempts" != "$calls" ]; then
        mismatch=$((mismatch + 1))
        echo "one-$i: the result records $attempts attempts, the simulator saw $calls requests" >&2
    fi
done
stats=$(sim_stats)
note "one at a time: $N_ONE tasks, $dead dead-lettered, $(jq .requests_total <<< "$stats") requests ($(jq -c .by_status <<< "$stats"), dropped $(jq .dropped <<< "$stats"))"
[ "$over" -eq 0 ] || fail "$over of $N_ONE tasks were sent more than max_attempts=$MAX_ATTEMPTS times"
[ "$mismatch" -eq 0 ] || fail "$mismatch of $N_ONE results do not record the requests the simulator saw"
[ "$(jq .dropped <<< "$stats")" -gt 0 ] || fail "no connection dropped: faults not injected?"

# The batch, many calls in flight on many kept-alive connections.
base=$(requests)
make_tasks "$N_BATCH" batch > "$T/tasks.jsonl"
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")
agentq wait --timeout=120s "${ids[@]}" > "$T/results.jsonl" || true
[ "$(jq -s length "$T/results.jsonl")" -eq "$N_BATCH" ] || fail "$(jq -s length "$T/results.jsonl") of $N_BATCH results"
most=$(jq -s 'map(.attempts) | max' "$T/results.jsonl")
sum=$(jq -s 'map(.attempts) | add' "$T/results.jsonl")
calls=$(( $(requests) - base ))
note "batch: $N_BATCH tasks, $(jq -s 'map(select(.status == "STATUS_FAILED")) | length' "$T/results.jsonl") dead-lettered, $calls requests, most attempts for one task: $most"
[ "$most" -le "$MAX_ATTEMPTS" ] \
    || fail "batch: $(jq -s --argjson m $MAX_ATTEMPTS 'map(select(.attempts > $m)) | length' "$T/results.jsonl") tasks recorded more than max_attempts=$MAX_ATTEMPTS attempts (most: $most)"
[ "$sum" -eq "$calls" ] || fail "batch: results record $sum attempts, the simulator saw $calls requests"
kill -0 "$W" 2>/dev/null || fail "the worker exited"
echo "attempt_limit: no task sent more than max_attempts=$MAX_ATTEMPTS times; attempts = requests the simulator saw"
