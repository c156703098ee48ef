#!/usr/bin/env bash
# The response cache against a real nats-server and the simulator:
#  - a second identical deterministic task is a hit: COMPLETED, cache_hit,
#    cost 0, no usage, the same output, and the simulator saw one call;
#  - another tenant with the same prompt makes its own call (scoped keys),
#    unless the worker shares the cache across tenants;
#  - requests that are not deterministic are not cached; opt-in caches them;
#    bypass always calls; refresh calls and files the new answer;
#  - identical cacheable tasks in flight together make one call;
#  - the hit and miss counters on /metrics match;
#  - a worker whose cache bucket is missing refuses to start, naming
#    `agentq init`.
source "$(dirname "$0")/lib.sh"

calls() { sim_stats | jq .requests_total; }
want_calls() { [ "$(calls)" -eq "$1" ] || fail "$2: simulator saw $(calls) calls, want $1"; }
# submit_wait ID ARGS...: submit one task and wait for its result into $T/ID.json
submit_wait() {
    local id=$1; shift
    agentq submit --id="$id" --quiet "$@" || fail "submit $id"
    agentq wait --timeout=30s "$id" > "$T/$id.json" || fail "$id did not complete: $(cat "$T/$id.json")"
}
is() { jq -e "$2" "$T/$1.json" > /dev/null || fail "$1: want $2; got $(cat "$T/$1.json")"; }

start_nats
start_sim --latency=200ms
agentq init > "$T/init.out" || fail "agentq init"
grep -q "agentq-cache" "$T/init.out" || fail "agentq init did not create the cache bucket: $(cat "$T/init.out")"

# ---- a missing bucket is a clear start-up error
rc=0
"$WORKER" --cache_bucket=no-such-cache > "$T/nobucket.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "worker started without its cache bucket"
grep -q 'cache bucket no-such-cache does not exist: run `agentq init`' "$T/nobucket.log" \
    || fail "no clear error for a missing cache bucket: $(cat "$T/nobucket.log")"

export AGENTQ_METRICS_PORT=0
start_worker --concurrency=64 --metrics_port=0
W=$WORKER_PID

# ---- a deterministic task, then the same again: one call
submit_wait c1 --tenant=acme --type=classify --temperature=0 --prompt="is this spam? buy now"
is c1 '.status == "STATUS_COMPLETED" and (.cache_hit | not) and .cost_micro_usd > 0 and .usage.output_tokens > 0'
want_calls 1 "first task"
submit_wait c2 --tenant=acme --type=classify --temperature=0 --prompt="is this spam? buy now"
is c2 '.status == "STATUS_COMPLETED" and .cache_hit and (.cost_micro_usd // 0) == 0 and .usage == null'
[ "$(jq -r .output "$T/c1.json")" = "$(jq -r .output "$T/c2.json")" ] || fail "a hit must return the cached output"
is c2 '.model != "" and .stop_reason != ""'
want_calls 1 "identical second task"

# ---- another tenant: its own call
submit_wait c3 --tenant=globex --type=classify --temperature=0 --prompt="is this spam? buy now"
is c3 '(.cache_hit | not) and .cost_micro_usd > 0'
want_calls 2 "same prompt, other tenant"

# ---- what changes the answer changes the key
submit_wait c4 --tenant=acme --type=classify --temperature=0 --max_tokens=77 --prompt="is this spam? buy now"
is c4 '.cache_hit | not'
submit_wait c5 --tenant=acme --type=classify --temperature=0 --system="be brief" --prompt="is this spam? buy now"
is c5 '.cache_hit | not'
want_calls 4 "max_tokens and system are part of the key"

# ---- not deterministic: never cached; opt-in: cached
submit_wait n1 --tenant=acme --prompt="write a poem"
submit_wait n2 --tenant=acme --prompt="write a poem"
is n2 '.cache_hit | not'
want_calls 6 "temperature unset is not cached"
submit_wait o1 --tenant=acme --cache=opt-in --prompt="write a haiku"
submit_wait o2 --tenant=acme --cache=opt-in --prompt="write a haiku"
is o2 '.cache_hit'
want_calls 7 "opt-in caches"

# ---- bypass calls even with an entry; refresh calls and replaces it
submit_wait b1 --tenant=acme --type=classify --temperature=0 --cache=bypass --prompt="is this spam? buy now"
is b1 '(.cache_hit | not) and .cost_micro_usd > 0'
submit_wait r1 --tenant=acme --type=classify --temperature=0 --cache=refresh --prompt="is this spam? buy now"
is r1 '.cache_hit | not'
want_calls 9 "bypass and refresh call the model"
submit_wait r2 --tenant=acme --type=classify --temperature=0 --prompt="is this spam? buy now"
is r2 '.cache_hit'
[ "$(jq -r .request_id "$T/r2.json")" = "$(jq -r .request_id "$T/r1.json")" ] \
    || fail "after a refresh the cache should hold the refreshed answer (request ids $(jq -r .request_id "$T/r1.json") vs $(jq -r .request_id "$T/r2.json"))"
want_calls 9 "read after refresh"

# ---- identical requests in flight together: one call
for i in $(seq 1 20); do
    jq -nc --arg i "$i" '{id: "s-\($i)", type: "extract", tenant: "acme", prompt: "extract the date: 26 Nov", temperature: 0, max_tokens: 64}'
done > "$T/same.jsonl"
before=$(calls)
agentq submit --file "$T/same.jsonl" --quiet || fail "submit same"
# shellcheck disable=SC2046
agentq wait --timeout=30s $(printf 's-%d ' $(seq 1 20)) > "$T/same.out" || fail "shared tasks did not complete"
[ "$(calls)" -eq $((before + 1)) ] || fail "20 identical tasks in flight made $(( $(calls) - before )) calls, want 1"
jq -e -s 'length == 20 and all(.[]; .status == "STATUS_COMPLETED") and ([.[] | select(.cache_hit)] | length) == 19' \
    "$T/same.out" > /dev/null || fail "shared answers: $(jq -c '{id, status, cache_hit}' "$T/same.out")"
[ "$(jq -r .output "$T/same.out" | sort -u | wc -l)" -eq 1 ] || fail "shared tasks got different outputs"

kill -TERM "$W"; wait "$W" || fail "worker exit code"
forget_pid "$W"

# ---- shared across tenants
start_worker --cache_share_tenants --metrics_port=0
W=$WORKER_PID
before=$(calls)
submit_wait t1 --tenant=initech --temperature=0 --prompt="translate: bonjour"
submit_wait t2 --tenant=umbrella --temperature=0 --prompt="translate: bonjour"
is t2 '.cache_hit and .tenant == "umbrella"'
[ "$(calls)" -eq $((before + 1)) ] || fail "a shared cache should answer another tenant without a call"
kill -TERM "$W"; wait "$W" || fail "worker exit code"
forget_pid "$W"

# ---- hit and miss counters on /metrics
port=$(( 20000 + RANDOM % 20000 ))
start_worker --metrics_port="$port" --metrics_bind=127.0.0.1
W=$WORKER_PID
wait_until 10 curl -sf "http://127.0.0.1:$port/metrics" -o /dev/null || fail "no /metrics"
submit_wait m1 --tenant=acme --type=classify --temperature=0 --prompt="is this spam? buy now"
submit_wait m2 --tenant=acme --type=classify --temperature=0 --prompt="not in the cache yet $RANDOM"
submit_wait m3 --tenant=acme --prompt="not cacheable"
curl -sf "http://127.0.0.1:$port/metrics" > "$T/metrics.txt" || fail "scrape"
grep -q '^agentq_cache_requests_total{result="hit"} 1$' "$T/metrics.txt" \
    || fail "hit counter: $(grep cache_requests "$T/metrics.txt")"
grep -q '^agentq_cache_requests_total{result="miss"} 1$' "$T/metrics.txt" \
    || fail "miss counter: $(grep cache_requests "$T/metrics.txt")"
grep -q '^agentq_cache_requests_total{result="bypass"} 1$' "$T/metrics.txt" \
    || fail "bypass counter: $(grep cache_requests "$T/metrics.txt")"
echo "PASS"
