#!/usr/bin/env bash
# The worker's provider calls spread over many curl multi handles: with
# --llm_shard_calls=4 and 64 tasks in flight, 16 handles share one event
# loop. Every task completes with its own answer, calls really overlap
# across handles, and no handle opens more connections than it has calls.
source "$(dirname "$0")/lib.sh"
N=${N:-1000}
CONC=64

start_nats
start_sim --latency=200
agentq init > /dev/null
start_worker --concurrency=$CONC --llm_shard_calls=4

make_tasks "$N" shard > "$T/tasks.jsonl"
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")
agentq wait --timeout=120s "${ids[@]}" > "$T/results.jsonl" || fail "not every task completed"

completed=$(jq -r 'select(.status == "STATUS_COMPLETED") | .id' "$T/results.jsonl" | wc -l)
[ "$completed" -eq "$N" ] || fail "$completed of $N COMPLETED"
wrong=$(jq -r '. as $r | select(($r.output | startswith("echo: prompt \($r.id | sub("shard-"; "shard ")) |")) | not) | .id' \
        "$T/results.jsonl" | head -5)
[ -z "$wrong" ] || fail "outputs do not match their prompts: $wrong"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters: $(stat_of dead_letters)"

sim_stats > "$T/sim_stats.json"
calls=$(jq '.requests_total' "$T/sim_stats.json")
peak=$(jq '.peak_concurrent_requests' "$T/sim_stats.json")
peak_conns=$(jq '.peak_connections' "$T/sim_stats.json")
[ "$calls" -eq "$N" ] || fail "the simulator saw $calls calls for $N tasks"
# One handle holds at most 4 calls: more than 4 at once means several ran together.
[ "$peak" -gt 16 ] || fail "at most $peak calls at once: the calls did not spread over the handles"
# (+1: the connection of the stats request itself)
[ "$peak_conns" -le $((CONC + 1)) ] || fail "$peak_conns connections open at once for $CONC calls in flight"
printf 'llm_shards: %d tasks over 16 multi handles, peak %d calls / %d connections at once\n' \
    "$N" "$peak" "$peak_conns"
