#!/usr/bin/env bash
# The issue's long answer, by hand (about 36 minutes of wall time, almost no
# CPU): one task with max_tokens 64,000 against a simulator that streams
# 64,000 tokens at LONG_RATE tokens/s (default 30), default worker options.
# Prints the wall time, the Result's attempts and usage, and the simulator's
# request count (one call when streaming works).
#
#   AQ_BIN=build tests/bench/long_answer.sh        (LONG_RATE=30)
source "$(dirname "$0")/../integration/lib.sh"
RATE=${LONG_RATE:-30}
start_nats
start_sim --output_tokens=64000 --stream_tokens_per_second="$RATE" --rl_output_tokens=100000000
agentq init > /dev/null
start_worker
echo '{"id":"long-1","type":"it","prompt":"write a long answer","max_tokens":64000}' > "$T/tasks.jsonl"
t0=$(date +%s.%N)
echo "start $(date -u +%T): 64,000 tokens at $RATE tokens/s"
agentq submit --file "$T/tasks.jsonl" --quiet > /dev/null
agentq wait --timeout=90m long-1 > "$T/results.jsonl" || fail "no result: $(cat "$T/results.jsonl")"
t1=$(date +%s.%N)
echo "end $(date -u +%T): wall $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
jq -c '{status, attempts, llm_latency_ms, time_to_first_token_us, output_tokens_per_second, usage, stop_reason}' "$T/results.jsonl"
sim_stats | jq -c '{requests_total, by_status, output_tokens_total}'
