#!/usr/bin/env bash
# Incremental prompt caching in agent runs, measured: the same 10-step run
# (9 tool steps, one call each, a long system prompt and long tool
# descriptions) with agent_prompt_cache=false, then with the default (true).
# Cached: step 1 writes tools + system + the prompt, steps 2-10 read the run
# so far at the cache-read price (0.1x input) and write only the new turn
# (1.25x); uncached: every step pays the whole prompt at the input price.
# Prints CACHING: steps=10 cost_cached=... cost_uncached=... ratio=...
source "$(dirname "$0")/lib.sh"

C_SERVICE="$AQ_BIN/examples/tool-service-c/agentq-example-tool-service"
[ -x "$C_SERVICE" ] || fail "no $C_SERVICE: build the examples"

start_nats
start_sim
agentq init > /dev/null
"$C_SERVICE" --url "$AGENTQ_NATS_URL" > "$T/service-c.log" 2>&1 &
PIDS+=($!)
wait_until 10 grep -q '^ready' "$T/service-c.log" || fail "the C tool service did not start"

# ~2,000 tokens of system prompt, ~1,000 of tool descriptions (bytes/4).
SYSTEM=$(for i in $(seq 1 100); do printf 'Rule %03d: answer travel questions with care, cite the tool you used. ' "$i"; done)
DESC=$(for i in $(seq 1 60); do printf 'Returns the current weather of a city (%02d). ' "$i"; done)
WEATHER='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
task() { jq -nc --arg id "$1" --arg sys "$SYSTEM" --arg d "$DESC" --arg s "$WEATHER" \
    '{id: $id, type: "agent", system: $sys, max_tokens: 256, max_steps: 12,
      prompt: "[sim tool_steps=9 tool_parallel=1] The weather in ten cities, one at a time.",
      tools: [{name: "get_weather", description: $d, input_schema_json: $s}]}'; }

# run ID WORKER_OPTIONS...: one run on a worker of its own; its Result in $T/ID.result.
run() {
    local id=$1; shift
    start_worker --concurrency=4 "$@"
    local w=$WORKER_PID
    task "$id" > "$T/$id.jsonl"
    agentq submit --file "$T/$id.jsonl" > /dev/null 2>&1 || fail "submit $id"
    agentq wait --timeout=60s "$id" > "$T/$id.result" 2>/dev/null || true
    kill -TERM "$w"; wait "$w" 2>/dev/null || true; forget_pid "$w"
}
# Uncached first: the simulator's cache (per model) is then empty for the
# cached run, whose first step must write.
run uncached1 --agent_prompt_cache=false
run cached1
unc=$(cat "$T/uncached1.result")
cac=$(cat "$T/cached1.result")

summary() { jq -c '{status, steps, cost_micro_usd, usage,
                    per_step: [.step_log[] | [.usage.input_tokens // 0, .usage.cache_creation_input_tokens // 0,
                                               .usage.cache_read_input_tokens // 0]]}' <<< "$1"; }
note "uncached: $(summary "$unc")"
note "cached:   $(summary "$cac")"
for r in "$unc" "$cac"; do
    jq -e '.status == "STATUS_COMPLETED" and .steps == 10 and .tool_calls == 9 and (.step_log | length) == 10
           and .model == "claude-sonnet-4-5" and .cost_micro_usd > 0' <<< "$r" > /dev/null ||
        fail "not a 10-step run: $(summary "$r")"
done
jq -e '[.step_log[] | (.usage.cache_read_input_tokens // 0) + (.usage.cache_creation_input_tokens // 0)] | all(. == 0)' \
    <<< "$unc" > /dev/null || fail "agent_prompt_cache=false: cache tokens billed: $(summary "$unc")"
echo "ok - agent_prompt_cache=false: no cache writes or reads on any step"
# Cached: step 1 writes the prefix (tools + system + prompt, ~2,400 tokens) and reads
# nothing; steps 2-10 each read at least that prefix and more than the last.
jq -e '.step_log as $s
       | ($s[0].usage.cache_creation_input_tokens // 0) >= 2000 and ($s[0].usage.cache_read_input_tokens // 0) == 0
         and ([$s[1:][] | (.usage.cache_read_input_tokens // 0) >= 2000] | all)
         and ([range(2; 10) | ($s[.].usage.cache_read_input_tokens // 0) > ($s[. - 1].usage.cache_read_input_tokens // 0)] | all)
         and ((.usage.cache_read_input_tokens // 0) > 0)' <<< "$cac" > /dev/null ||
    fail "cached run: step 1 does not write or steps 2-10 do not read: $(summary "$cac")"
echo "ok - agent_prompt_cache=true: step 1 writes the prefix, steps 2-10 read the run so far"
# Same conversation, same tokens either way: what moved is the price.
tot() { jq '.usage | (.input_tokens // 0) + (.cache_creation_input_tokens // 0) + (.cache_read_input_tokens // 0)' <<< "$1"; }
[ "$(tot "$unc")" -eq "$(tot "$cac")" ] || fail "prompt tokens differ: uncached $(tot "$unc"), cached $(tot "$cac")"
c=$(jq .cost_micro_usd <<< "$cac"); u=$(jq .cost_micro_usd <<< "$unc")
[ "$c" -lt "$u" ] || fail "the cached run cost $c micro-USD, not less than the uncached $u"
ratio=$(jq -n --argjson c "$c" --argjson u "$u" '$c / $u * 1000 | round / 1000')
echo "CACHING: steps=10 cost_cached=\$$(jq -n "$c / 1e6") cost_uncached=\$$(jq -n "$u / 1e6") ratio=$ratio"
echo "ok - the cached run costs less ($c vs $u micro-USD)"
echo "PASS"
