#!/usr/bin/env bash
# Routing rules choose the model, every Result carries its exact cost from
# the price table, a 529 moves a task that allows it to the fallback model,
# and a long system prompt is marked for prompt caching (repeats are billed
# as cache reads).
source "$(dirname "$0")/lib.sh"

start_nats
start_sim
agentq init > /dev/null
start_worker --routes="cheap: type=classify|extract, max_tokens<=512 -> claude-haiku-4-5; long: input_tokens>=2000 -> claude-opus-4-5" \
             --prices="claude-opus-4-5: in=5, out=25; my-model: in=2, out=8"
long=$(head -c 9000 /dev/zero | tr '\0' 'x')
agentq submit --id=r-classify --type=classify --prompt="is this spam?" --max_tokens=64 --quiet
agentq submit --id=r-big-classify --type=classify --prompt="is this spam?" --max_tokens=4096 --quiet
agentq submit --id=r-summarize --type=summarize --prompt="summarize this" --quiet
agentq submit --id=r-long --type=summarize --prompt="$long" --quiet
agentq submit --id=r-explicit --type=classify --model=claude-sonnet-4-6 --prompt="hi" --quiet
agentq wait --timeout=30s r-classify r-big-classify r-summarize r-long r-explicit > "$T/r.jsonl" \
    || fail "tasks did not complete: $(cat "$T/r.jsonl")"

check "$T/r.jsonl" r-classify '.model == "claude-haiku-4-5" and .route_rule == "cheap"' \
    || fail "r-classify: $(grep r-classify "$T/r.jsonl")"
check "$T/r.jsonl" r-big-classify '.model == "claude-sonnet-4-5" and .route_rule == "default"' \
    || fail "max_tokens<=512 should not match: $(grep r-big-classify "$T/r.jsonl")"
check "$T/r.jsonl" r-summarize '.model == "claude-sonnet-4-5" and .route_rule == "default"' \
    || fail "r-summarize: $(grep r-summarize "$T/r.jsonl")"
check "$T/r.jsonl" r-long '.model == "claude-opus-4-5" and .route_rule == "long"' \
    || fail "r-long: $(grep r-long "$T/r.jsonl")"
check "$T/r.jsonl" r-explicit '.model == "claude-sonnet-4-6" and .route_rule == "explicit"' \
    || fail "r-explicit: $(grep r-explicit "$T/r.jsonl")"

# Cost in micro-dollars = tokens x USD per million tokens, exactly (these
# prices are whole dollars, so nothing rounds).
price_in='{"claude-haiku-4-5":1,"claude-sonnet-4-5":3,"claude-sonnet-4-6":3,"claude-opus-4-5":5}'
price_out='{"claude-haiku-4-5":5,"claude-sonnet-4-5":15,"claude-sonnet-4-6":15,"claude-opus-4-5":25}'
bad=$(jq -c --argjson pi "$price_in" --argjson po "$price_out" \
      'select(.cost_micro_usd != (.usage.input_tokens * $pi[.model] + .usage.output_tokens * $po[.model]))
       | {id, model, usage, cost_micro_usd}' "$T/r.jsonl")
[ -z "$bad" ] || fail "cost does not match usage x price: $bad"
jq -e -s 'all(.[]; .cost_micro_usd > 0 and .tenant != null)' "$T/r.jsonl" > /dev/null \
    || fail "every result should carry a cost"

# Fallback: half the calls are answered 529. Tasks that allow it move to
# the fallback model; the others wait the overload out on their own model.
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || fail "worker did not exit 0"
start_sim --fault_529=0.5 --seed=7
start_worker --fallback_model=claude-haiku-4-5 --retry_base=50ms --retry_max=200ms
for i in $(seq 1 8); do
    agentq submit --id="fb-$i" --type=t --prompt="p$i" --allow_fallback --quiet
    agentq submit --id="nofb-$i" --type=t --prompt="q$i" --quiet
done
agentq wait --timeout=60s $(printf 'fb-%d ' $(seq 1 8)) $(printf 'nofb-%d ' $(seq 1 8)) > "$T/fb.jsonl" \
    || fail "fallback tasks did not complete"
jq -e -s '[.[] | select(.id | startswith("fb-")) | select(.fallback_used and .model == "claude-haiku-4-5")] | length >= 1' \
    "$T/fb.jsonl" > /dev/null || fail "no task used the fallback: $(cat "$T/fb.jsonl")"
jq -e -s '[.[] | select(.id | startswith("nofb-"))] | all(.[]; (.fallback_used | not) and .model == "claude-sonnet-4-5")' \
    "$T/fb.jsonl" > /dev/null || fail "a task that does not allow it used the fallback"

# Prompt caching: a long system prompt is marked; the repeat reads the cache.
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || fail "worker did not exit 0"
start_sim
start_worker --prompt_cache_min_tokens=1000
sys=$(head -c 8000 /dev/zero | tr '\0' 's')
agentq submit --id=pc-1 --type=t --system="$sys" --prompt="first" --quiet
agentq wait --timeout=30s pc-1 > "$T/pc1.json" || fail "pc-1"
agentq submit --id=pc-2 --type=t --system="$sys" --prompt="second" --quiet
agentq wait --timeout=30s pc-2 > "$T/pc2.json" || fail "pc-2"
check "$T/pc1.json" pc-1 '.usage.cache_creation_input_tokens > 0' || fail "no cache write: $(cat "$T/pc1.json")"
check "$T/pc2.json" pc-2 '.usage.cache_read_input_tokens > 0' || fail "no cache read: $(cat "$T/pc2.json")"
# A cache read is billed at 0.1x input: sonnet 0.3 USD/Mtok.
jq -e '.cost_micro_usd < (.usage.input_tokens + .usage.cache_read_input_tokens) * 3 + .usage.output_tokens * 15' \
    "$T/pc2.json" > /dev/null || fail "cache read billed at full price: $(cat "$T/pc2.json")"

echo "cost_routing: rules, explicit and default routes, exact costs, 529 fallback, prompt caching"
