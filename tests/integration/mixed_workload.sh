#!/usr/bin/env bash
# Issue 5's figure: a mixed workload through a worker with the response cache
# and a routing rule, against the same workload sent uncached to the default
# model. 300 tasks in three waves: short classify/extract tasks (routed to
# haiku) and longer summarize tasks (sonnet), 30% of them exact repeats of an
# earlier wave's task (some from another tenant, some not deterministic). Each
# wave waits for the one before, so a repeat arrives after its first answer is
# stored.
#
# From the results: cache hit rate (hits / tasks), share routed to haiku
# (tasks answered by haiku / tasks), cost (sum of cost_micro_usd); from the
# simulator: calls, which must be tasks - hits. Then the same tasks (new ids),
# every one with cache_policy bypass, through a fresh worker with no routes.
# One line for the closing note:
#   MIXED tasks=N cache_hit_rate=... routed_cheap_share=... cost_usd=... uncached_default_cost_usd=... ratio=...
# and the bounds: hits > 0, no hit where none is possible (another tenant's
# first ask, a task that is not deterministic), cost < uncached cost.
source "$(dirname "$0")/lib.sh"
export LC_ALL=C
PY=/usr/bin/python3
ROUTES='cheap: type=classify|extract, max_tokens<=512 -> claude-haiku-4-5'

# The workload, deterministic (seed 5): wave, key (the same key = the same
# task content), tenant, type, prompt, max_tokens, temperature, and whether a
# cache hit is possible (deterministic, and the same tenant asked in an
# earlier wave).
"$PY" - "$T/workload.jsonl" <<'PY'
import json, random, sys
rnd = random.Random(5)
words = ("invoice refund shipping delay account password billing upgrade cancel "
         "order damaged warranty login error crash slow feature request price "
         "discount contract renewal support outage latency report").split()
def text(nbytes):
    out = []
    while sum(len(w) + 1 for w in out) < nbytes:
        out.append(rnd.choice(words))
    return " ".join(out)
tenants = ["tenant-a", "tenant-b", "tenant-c"]
def new_task(n):
    r = rnd.random()
    if r < 0.4:
        t = dict(type="classify", prompt="Classify this ticket: " + text(rnd.randint(200, 600)),
                 max_tokens=rnd.choice([16, 32, 64]), temperature=0.0)
    elif r < 0.6:
        t = dict(type="extract", prompt="Extract the fields: " + text(rnd.randint(1000, 3000)),
                 max_tokens=rnd.choice([256, 512]), temperature=0.0)
    else:
        t = dict(type="summarize", prompt="Summarize: " + text(rnd.randint(2000, 8000)),
                 max_tokens=rnd.choice([512, 1024]),
                 temperature=0.0 if rnd.random() < 0.75 else 0.7)
    t["tenant"] = rnd.choice(tenants)
    t["key"] = "k%d" % n
    return t
waves = [(110, 0), (65, 35), (35, 55)]  # (new, repeats): 300 tasks, 90 repeats
seen, asked, out, n = [], set(), [], 0
for w, (new, reps) in enumerate(waves):
    wave = []
    for _ in range(new):
        wave.append(new_task(n)); n += 1
    in_wave = set()
    for i in range(reps):
        while True:  # one identity once a wave: two could run side by side
            base = dict(rnd.choice(seen))
            if i % 6 == 0:  # the same question from another tenant
                base["tenant"] = rnd.choice([x for x in tenants if x != base["tenant"]])
            if (base["key"], base["tenant"]) not in in_wave:
                break
        in_wave.add((base["key"], base["tenant"]))
        wave.append(base)
    rnd.shuffle(wave)
    for t in wave:
        ident = (t["key"], t["tenant"])
        t = dict(t, wave=w + 1, hit_possible=t["temperature"] == 0.0 and ident in asked)
        out.append(t)
    # only identities of earlier waves count as stored
    for t in out:
        if t["wave"] == w + 1:
            asked.add((t["key"], t["tenant"]))
            seen.append({k: t[k] for k in ("key", "tenant", "type", "prompt", "max_tokens", "temperature")})
with open(sys.argv[1], "w") as f:
    for t in out:
        f.write(json.dumps(t) + "\n")
PY
N=$(wc -l < "$T/workload.jsonl")
possible=$(jq -s 'map(select(.hit_possible)) | length' "$T/workload.jsonl")
repeats=$(jq -s 'group_by(.key) | map(length - 1) | add' "$T/workload.jsonl")

# tasks RUN WAVE [extra jq]: the wave's tasks as agentq JSONL, ids RUN-<line>.
tasks() {
    jq -c --arg run "$1" --argjson wave "$2" "select(.wave == \$wave)
        | {id: \"\(\$run)-\(input_line_number)\", type, tenant, prompt, max_tokens, temperature} ${3:-}" \
        "$T/workload.jsonl"
}
# run_waves RUN [extra jq]: submit each wave, wait for all of its results.
run_waves() {
    local w
    for w in 1 2 3; do
        tasks "$1" "$w" "${2:-}" > "$T/$1-w$w.jsonl"
        agentq submit --file "$T/$1-w$w.jsonl" --quiet || fail "submit $1 wave $w"
        mapfile -t ids < <(jq -r .id "$T/$1-w$w.jsonl")
        agentq wait --timeout=60s "${ids[@]}" >> "$T/$1-results.jsonl" ||
            fail "$1 wave $w: not every task completed"
        sleep 0.3 # a cache entry written just after its result is in place
    done
}
sim_calls() { sim_stats | jq '.requests_total'; }

start_nats
start_sim --output_tokens=20-400
agentq init > /dev/null

# ---- run 1: cache and routes
WORKER_NAME=mixed start_worker --routes="$ROUTES" --default_model=claude-sonnet-4-5
run_waves mixed
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || fail "worker mixed did not exit 0"
forget_pid "$WORKER_PID"
calls=$(sim_calls)
R="$T/mixed-results.jsonl"
[ "$(jq -s 'map(select(.status == "STATUS_COMPLETED")) | length' "$R")" -eq "$N" ] ||
    fail "not every task completed: $(jq -c 'select(.status != "STATUS_COMPLETED")' "$R" | head -3)"
hits=$(jq -s 'map(select(.cache_hit)) | length' "$R")
cheap=$(jq -s 'map(select(.model == "claude-haiku-4-5")) | length' "$R")
cost=$(jq -s 'map(.cost_micro_usd // 0) | add' "$R")
# Hits where none is possible: another tenant's first ask, or not deterministic.
line() { sed -n "${1}p" "$T/workload.jsonl"; }
bad_hits=$(jq -r 'select(.cache_hit) | .id' "$R" | while read -r id; do
    line "${id##*-}" | jq -c --arg id "$id" 'select(.hit_possible | not) | {id: $id, key, tenant, temperature}'
done)

# ---- run 2: the same tasks, new ids, uncached, default model only
curl -sf -X POST "$SIM_URL/sim/reset" > /dev/null || fail "cannot reset the simulator's stats"
WORKER_NAME=plain start_worker --default_model=claude-sonnet-4-5
run_waves plain '+ {cache_policy: "bypass"}'
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || fail "worker plain did not exit 0"
forget_pid "$WORKER_PID"
plain_calls=$(sim_calls)
P="$T/plain-results.jsonl"
[ "$(jq -s 'map(select(.status == "STATUS_COMPLETED")) | length' "$P")" -eq "$N" ] ||
    fail "uncached run: not every task completed"
plain_cost=$(jq -s 'map(.cost_micro_usd // 0) | add' "$P")
plain_hits=$(jq -s 'map(select(.cache_hit)) | length' "$P")
plain_other=$(jq -s 'map(select(.model != "claude-sonnet-4-5")) | length' "$P")

fmt() { awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { printf "%.*f", d, (b == 0 ? 0 : a / b) }'; }
echo "MIXED tasks=$N cache_hit_rate=$(fmt "$hits" "$N" 3) routed_cheap_share=$(fmt "$cheap" "$N" 3)" \
     "cost_usd=$(fmt "$cost" 1000000 4) uncached_default_cost_usd=$(fmt "$plain_cost" 1000000 4)" \
     "ratio=$(fmt "$cost" "$plain_cost" 3)"
echo "# repeats=$repeats hits_possible=$possible hits=$hits sim_calls=$calls" \
     "uncached_sim_calls=$plain_calls"

# ---- the bounds (after the line, so a failing run still reports its figures)
[ "$plain_hits" -eq 0 ] || fail "cache_policy bypass: $plain_hits cache hits"
[ "$plain_other" -eq 0 ] || fail "no routes: $plain_other tasks not on the default model"
[ "$plain_calls" -eq "$N" ] || fail "uncached run: the simulator saw $plain_calls calls for $N tasks"
[ -z "$bad_hits" ] || fail "cache hits where none is possible: $(head -c 2000 <<< "$bad_hits")"
[ "$calls" -eq $((N - hits)) ] ||
    fail "the simulator saw $calls calls; tasks - cache hits = $((N - hits))"
[ "$cheap" -gt 0 ] || fail "no task was routed to claude-haiku-4-5"
[ "$hits" -gt 0 ] || fail "no cache hit in $N tasks ($possible were possible): is the response cache wired in?"
[ $((hits * 10)) -ge $((possible * 9)) ] ||
    fail "$hits cache hits of $possible possible (under 90%): repeats missed the cache"
[ "$cost" -lt "$plain_cost" ] || fail "cost $cost micro-USD is not under the uncached $plain_cost"
echo "mixed_workload: $N tasks, $hits cache hits of $possible possible, $cheap on haiku," \
     "cost $cost vs $plain_cost micro-USD uncached"
