#!/usr/bin/env bash
# Daily budgets in the worker's pipeline, shared by a fleet through the
# budget bucket:
#  1. two workers, one tenant's budget worth ~20 tasks, 32 tasks of it and
#     10 of a tenant without a budget, budget_action=defer: the completed
#     tasks of the tenant cost <= the limit and >= the limit minus one task's
#     upper bound; the others are parked in the deferred stream until the
#     budget day resets (out of the task stream: not ack-pending), neither
#     failed nor dead-lettered;
#     the unbudgeted tenant's tasks all complete; the fleet's spent figures
#     in the bucket add up to the results' costs for both tenants;
#     /metrics shows the budget left;
#  2. the same with budget_action=fail: the refused tasks are FAILED with
#     class budget_exceeded and are in the DLQ;
#  3. start-up: a bad budgets string, and budgets without their bucket, are
#     refused with a message naming the problem.
# The budget day is a UTC day: a run across 00:00 UTC would see it reset.
[ $(( $(date -u +%s) % 86400 )) -lt $(( 86400 - 600 )) ] || { echo "skipped: near 00:00 UTC"; exit 77; }
source "$(dirname "$0")/lib.sh"
BF="$AQ_BIN/tests/support/budget_fleet"
[ -x "$BF" ] || fail "budget_fleet not built"


start_nats
agentq init > "$T/init1.out"
grep -q "^kv *agentq-budgets *created" "$T/init1.out" || fail "init did not create the budget bucket: $(cat "$T/init1.out")"
agentq init > "$T/init2.out"
grep -q "^kv *agentq-budgets *updated" "$T/init2.out" || fail "init is not idempotent: $(cat "$T/init2.out")"

# Every answer is 40 output tokens; with max_tokens 40 and prompts (and
# tenant names, sent as metadata) of one length, every task costs the same.
start_sim --output_tokens=40 --latency_ms=300
tasks() { # N TENANT FIRST: JSONL; ids <tenant>-<i>, prompts "prompt <i>" (3 digits)
    jq -nc --argjson n "$1" --arg t "$2" --argjson f "$3" \
        'range($f; $f + $n) | {id: "\($t)-\(.)", type: "it", tenant: $t, prompt: "prompt \(.)", max_tokens: 40}'
}
ids() { seq "$3" $(( $3 + $1 - 1 )) | sed "s/^/$2-/"; }

# ---- calibration: what one task costs, and its upper bound ----
WORKER_NAME=cal start_worker
tasks 1 free 100 | agentq submit --file=- --quiet
agentq wait --timeout=30s free-100 > "$T/cal.json" || fail "calibration task: $(cat "$T/cal.json")"
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || fail "calibration worker did not exit 0"
C=$(jq .cost_micro_usd "$T/cal.json")
[ "$C" -gt 0 ] || fail "calibration task has no cost"
# The worker reserves every request body byte as an input token at the
# dearest input-side price (sonnet: cache write, 3.75 USD/Mtok) plus
# max_tokens of output (15 USD/Mtok). The body is compact JSON like this;
# 32 bytes of slack for anything the worker adds.
body=$(jq -nc '{model: "claude-sonnet-4-5", max_tokens: 40, messages: [{role: "user", content: "prompt 100"}], metadata: {user_id: "acme"}}' | tr -d '\n' | wc -c)
U=$(( ((body + 32) * 375 + 99) / 100 + 40 * 15 ))
LIMIT=$(( 20 * C + C / 2 ))
USD=$(printf '%d.%06d' $((LIMIT / 1000000)) $((LIMIT % 1000000)))
note "one task costs $C micro-USD, reserves at most $U; budget $LIMIT (\$$USD)"

# Tasks of the budgeted tenant: more than the budget covers (~20), so the
# last ones are refused; each refusal is confirmed for a few seconds, so not
# many more.
NT=32
sum_cost() { jq -s '[.[] | select(.status == "STATUS_COMPLETED") | .cost_micro_usd] | add // 0' "$1"; }
count() { jq -s "[.[] | select($2)] | length" "$1"; }

# ---- 1. two workers, defer ----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
COMMON=(--budgets="acme=$USD" --concurrency=4 --budget_flush=200ms --status_interval=1s)
WORKER_NAME=wa start_worker "${COMMON[@]}" --metrics_port="$PORT" --metrics_bind=127.0.0.1
PA=$WORKER_PID
WORKER_NAME=wb start_worker "${COMMON[@]}"
PB=$WORKER_PID
{ tasks $NT acme 100; tasks 10 free 200; } | agentq submit --file=- --quiet
agentq wait --timeout=60s $(ids 10 free 200) > "$T/free.jsonl" || fail "unbudgeted tasks did not all complete"

# The tenant's tasks settle: completed, or parked until the reset.
acme_done() { agentq get $(ids $NT acme 100) 2>/dev/null | jq -s length; }
parked_count() { "$RAW_PUBLISH" --url "$AGENTQ_NATS_URL" --dump-stream AGENTQ_DEFERRED | wc -l; }
settled() {
    local done pend
    done=$(acme_done); pend=$(parked_count)
    [ "$(stat_of pending)" = 0 ] && [ "$(stat_of ack_pending)" = 0 ] &&
        [ $((done + pend)) = "$NT" ] && [ "$done" -lt "$NT" ]
}
wait_until 60 settled || fail "acme tasks did not settle: $(agentq stats --json)"
sleep 2 # nothing more may complete: the rest wait for the reset
agentq get $(ids $NT acme 100) > "$T/acme.jsonl" 2>/dev/null || true
n=$(count "$T/acme.jsonl" '.status == "STATUS_COMPLETED"')
spent=$(sum_cost "$T/acme.jsonl")
pend=$(parked_count)
note "defer: $n of $NT completed, cost $spent of $LIMIT (gap $((LIMIT - spent)), bound $U); $pend parked"
[ "$(count "$T/acme.jsonl" '.status != "STATUS_COMPLETED"')" = 0 ] || fail "a deferred task has a FAILED result"
[ "$spent" -le "$LIMIT" ] || fail "over-spent: $spent > $LIMIT"
[ "$spent" -ge $((LIMIT - U)) ] || fail "stopped too early: $spent < $LIMIT - $U"
[ "$pend" = $((NT - n)) ] || fail "deferred tasks are not parked: $pend != $((NT - n))"
[ "$(stat_of dead_letters)" = 0 ] || fail "deferred tasks were dead-lettered"
[ "$(stat_of tasks_in_stream)" = 0 ] || fail "the deferred tasks are still in the task stream"
workers=$(cat "$T/acme.jsonl" "$T/free.jsonl" | jq -s '[.[].worker] | unique | length')
[ "$workers" = 2 ] || fail "expected both workers to complete tasks, saw $workers"
grep -q '"daily budget spent: task parked until it resets or is raised"' "$T"/worker-w[ab].log \
    || fail "no deferral logged"
grep -q "daily budget of tenant acme (\$$USD) spent; resets at 20[0-9-]*T00:00:00Z" "$T"/worker-w[ab].log \
    || fail "the deferral does not say which budget and when it resets"
curl -sf "http://127.0.0.1:$PORT/metrics" > "$T/metrics.txt" || fail "no /metrics"
grep -q '^agentq_budget_remaining_usd{tenant="acme"} ' "$T/metrics.txt" \
    || fail "no budget gauge: $(grep budget "$T/metrics.txt")"
lim=$(sed -n 's/^agentq_budget_limit_usd{tenant="acme"} //p' "$T/metrics.txt")
awk -v l="$lim" -v u="$USD" 'BEGIN { exit !(l != "" && l == u + 0) }' \
    || fail "budget limit gauge '$lim', want $USD: $(grep budget "$T/metrics.txt")"
left=$(sed -n 's/^agentq_budget_remaining_usd{tenant="acme"} //p' "$T/metrics.txt")
awk -v l="$left" -v u="$U" 'BEGIN { exit !(l >= 0 && l * 1e6 < u) }' \
    || fail "budget left $left USD, expected under one task's bound"
grep -q '^agentq_llm_deferrals_total{reason="budget"} [1-9]' "$T/metrics.txt" \
    || fail "budget deferrals not counted: $(grep deferrals "$T/metrics.txt")"

# agentq status shows what is left of the budget and the fleet's cost today.
wait_until 10 bash -c "'$AGENTQ' status --json --status_interval 1s | jq -e '.fleet.workers == 2 and (.fleet.budgets | length) == 1' > /dev/null" \
    || fail "agentq status shows no budget: $("$AGENTQ" status --json --status_interval 1s)"
"$AGENTQ" status --json --status_interval 1s > "$T/status.json"
jq -e --argjson u "$U" '.fleet.budgets[0].tenant == "acme" and .fleet.budgets[0].remaining_micro_usd >= 0
    and .fleet.budgets[0].remaining_micro_usd < $u and .fleet.cost_today_micro_usd > 0' "$T/status.json" > /dev/null \
    || fail "status budget figures: $(jq -c .fleet "$T/status.json")"

# The fleet's figures: written by both workers (the last ones at shutdown).
kill -TERM "$PA" "$PB"
wait "$PA" || fail "worker wa did not exit 0"
wait "$PB" || fail "worker wb did not exit 0"
"$BF" read --url "$AGENTQ_NATS_URL" > "$T/day.jsonl"
row() { jq -c "select(.tenant == \"$1\" and .type == \"\")" "$T/day.jsonl"; }
note "bucket: acme $(row acme) free $(row free)"
[ "$(row acme | jq .spent)" = "$spent" ] || fail "acme spent in the bucket != the results' cost $spent"
[ "$(row acme | jq .limit)" = "$LIMIT" ] || fail "acme limit in the bucket"
[ "$(row acme | jq .allocated)" = "$spent" ] || fail "leases not all given back: allocated != spent"
free_cost=$(( $(sum_cost "$T/free.jsonl") + C ))
[ "$(row free | jq .spent)" = "$free_cost" ] || fail "unbudgeted tenant's spent != $free_cost"
[ "$(row free | jq .has_budget)" = false ] || fail "free shows a budget"

# ---- 2. two workers, fail ----
WORKER_NAME=wc start_worker --budgets="gone=$USD" --budget_action=fail --concurrency=4
PC=$WORKER_PID
WORKER_NAME=wd start_worker --budgets="gone=$USD" --budget_action=fail --concurrency=4
PD=$WORKER_PID
tasks $NT gone 100 | agentq submit --file=- --quiet
rc=0; agentq wait --timeout=60s $(ids $NT gone 100) > "$T/gone.jsonl" || rc=$?
[ "$rc" = 1 ] || fail "agentq wait exited $rc (expected 1: some FAILED results)"
n=$(count "$T/gone.jsonl" '.status == "STATUS_COMPLETED"')
nf=$(count "$T/gone.jsonl" '.status == "STATUS_FAILED" and .error.class == "budget_exceeded" and (.error.message | test("^daily budget of tenant gone \\(\\$'"$USD"'\\) spent; resets at ")) and .cost_micro_usd == 0')
spent=$(sum_cost "$T/gone.jsonl")
note "fail: $n completed, $nf failed budget_exceeded, cost $spent of $LIMIT (gap $((LIMIT - spent)))"
[ $((n + nf)) = "$NT" ] || fail "not every task completed or failed budget_exceeded: $(jq -c 'select(.status != "STATUS_COMPLETED") | .error' "$T/gone.jsonl" | sort | uniq -c)"
[ "$spent" -le "$LIMIT" ] || fail "over-spent: $spent > $LIMIT"
[ "$spent" -ge $((LIMIT - U)) ] || fail "stopped too early: $spent < $LIMIT - $U"
wait_until 10 stat_is dead_letters "$nf" || fail "DLQ holds $(stat_of dead_letters), expected $nf"
agentq dlq ls --class=budget_exceeded --json > "$T/dlq.jsonl"
[ "$(jq -s length "$T/dlq.jsonl")" = "$nf" ] || fail "dlq ls --class=budget_exceeded: $(jq -s length "$T/dlq.jsonl") != $nf"
# The tasks deferred in part 1 are still parked, not failed nor released by
# these workers (they have no budget for acme: nothing says it was raised).
[ "$(parked_count)" = "$pend" ] || fail "parked tasks left the deferred stream"
kill -TERM "$PC" "$PD"
wait "$PC" || fail "worker wc did not exit 0"
wait "$PD" || fail "worker wd did not exit 0"

# ---- 3. start-up errors ----
rc=0; "$WORKER" --budgets="acme=5,globex=1;acme=2.5" > "$T/bad.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "bad budgets: exit $rc"
grep -q "budgets: entry 3: acme is given twice" "$T/bad.out" || fail "bad budgets: $(cat "$T/bad.out")"
rc=0; "$WORKER" --budgets="acme=5" --budget_action=later > "$T/act.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "bad budget_action: exit $rc"
grep -q "budget_action: 'later' is not defer or fail" "$T/act.out" || fail "bad action: $(cat "$T/act.out")"
rc=0; "$WORKER" --budgets="acme=5" --budget_bucket=nosuch > "$T/nob.out" 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "missing bucket: exit $rc"
grep -q "budgets: budget bucket nosuch does not exist (run \`agentq init\`)" "$T/nob.out" \
    || fail "missing bucket: $(cat "$T/nob.out")"
# Without budgets the bucket only records spending: a missing one is a warning.
WORKER_NAME=nob start_worker --budget_bucket=nosuch
wait_until 10 grep -q "budget bucket missing" "$T/worker-nob.log" || fail "no warning without the bucket"
agentq submit --id=nob-1 --type=it --prompt="hi" --quiet --wait --timeout=30s > /dev/null \
    || fail "a worker without the budget bucket does not run tasks"

echo "budget_worker: defer and fail both stop within one task's bound of the limit across two workers; spent figures match"
