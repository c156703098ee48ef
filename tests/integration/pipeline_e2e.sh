#!/usr/bin/env bash
# 1,000 tasks in, 1,000 COMPLETED results out whose outputs are the
# simulator's answers to their prompts; the stream empty, the DLQ empty.
source "$(dirname "$0")/lib.sh"
N=${N:-1000}

start_nats
start_sim
agentq init > /dev/null
start_worker --concurrency=256

make_tasks "$N" e2e > "$T/tasks.jsonl"
start=$(date +%s.%N)
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")
agentq wait --timeout=120s "${ids[@]}" > "$T/results.jsonl" || fail "not every task completed"
end=$(date +%s.%N)

completed=$(jq -r 'select(.status == "STATUS_COMPLETED") | .id' "$T/results.jsonl" | wc -l)
[ "$completed" -eq "$N" ] || fail "$completed of $N COMPLETED"
# Every output is the simulator's answer to that task's own prompt.
wrong=$(jq -r '. as $r | select(($r.output | startswith("echo: prompt \($r.id | sub("e2e-"; "e2e ")) |")) | not) | .id' \
        "$T/results.jsonl" | head -5)
[ -z "$wrong" ] || fail "outputs do not match their prompts: $wrong"
jq -s -e 'all(.usage.input_tokens > 0 and .usage.output_tokens > 0 and .model != "" and .worker != "")' \
    "$T/results.jsonl" > /dev/null || fail "usage, model or worker missing"

wait_until 10 stat_is tasks_in_stream 0 || fail "task stream not empty: $(agentq stats --json)"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters: $(stat_of dead_letters)"
calls=$(sim_stats | jq '.requests_total')
[ "$calls" -eq "$N" ] || fail "the simulator saw $calls calls for $N tasks"

# The README's C publisher example, built with the project, works as written.
"$AQ_BIN/examples/c-publisher/agentq-example-publish" "$AGENTQ_NATS_URL" c-example-1 "hello from C" \
    > "$T/c-example.out" || fail "C example: $(cat "$T/c-example.out")"
grep -q "^completed: echo: hello from C |" "$T/c-example.out" || fail "C example: $(cat "$T/c-example.out")"

rate=$(awk -v n="$N" -v a="$start" -v b="$end" 'BEGIN { print n / (b - a) }')
printf 'pipeline_e2e: %d tasks, %d completed, %d LLM calls, %.0f tasks/s (submit to last result)\n' \
    "$N" "$completed" "$calls" "$rate"
