#!/usr/bin/env bash
# Fleet-wide daily budgets (internal/budget) against a real nats-server:
#  1. two clients on two connections (two processes, as two workers) spend
#     one tenant's budget concurrently with random costs until refused: the
#     total settled is <= the limit and >= limit - the largest task cost, and
#     after both gave their leases back the key's allocated = what was spent;
#  2. a tenant and type budget inside a tenant budget: the tighter one stops;
#  3. a tenant without a budget never exchanges with the bucket;
#  4. a compare-and-set write that loses is retried on the new revision;
#  5. nats-server killed mid-way: reservations answer UNAVAILABLE (never
#     EXCEEDED for lack of an answer), nothing over-spends, and reservations
#     are granted again after the restart.
source "$(dirname "$0")/lib.sh"
BF="$AQ_BIN/tests/support/budget_fleet"
[ -x "$BF" ] || fail "budget_fleet not built"

start_nats
U=$AGENTQ_NATS_URL
"$BF" init --url "$U" > /dev/null || fail "bucket init"
"$BF" init --url "$U" | jq -e '.created == false' > /dev/null || fail "bucket init is not idempotent"

row() { "$BF" read --url "$U" | jq -c "select(.tenant == \"$1\" and .type == \"${2:-}\")"; }

# ---- 1. two workers, one budget ----
LIMIT=50000000 MAXC=20000   # $50, tasks up to $0.02
"$BF" run --url "$U" --budgets "fleet=50" --tenant fleet --max-cost $MAXC --seed 1 --name w1 > "$T/w1.json" &
P1=$!
"$BF" run --url "$U" --budgets "fleet=50" --tenant fleet --max-cost $MAXC --seed 2 --name w2 > "$T/w2.json" &
P2=$!
wait $P1 || fail "worker 1 failed"
wait $P2 || fail "worker 2 failed"
s1=$(jq .settled "$T/w1.json"); s2=$(jq .settled "$T/w2.json")
total=$((s1 + s2))
note "two workers: settled $s1 + $s2 = $total of $LIMIT (gap $((LIMIT - total)), max task $MAXC)"
note "worker 1: $(cat "$T/w1.json")"
note "worker 2: $(cat "$T/w2.json")"
[ "$total" -le "$LIMIT" ] || fail "over-spent: $total > $LIMIT"
[ "$total" -ge $((LIMIT - MAXC)) ] || fail "stopped too early: $total < $LIMIT - $MAXC"
[ "$s1" -gt 0 ] && [ "$s2" -gt 0 ] || fail "one worker spent nothing"
r=$(row fleet)
note "key: $r"
[ "$(jq .allocated <<< "$r")" = "$total" ] || fail "allocated after give-back is not the total spent"
[ "$(jq .spent <<< "$r")" = "$total" ] || fail "the spent figures do not add up to the total"
[ "$(jq .holders <<< "$r")" = 2 ] || fail "expected 2 holders"
tasks=$(( $(jq .granted "$T/w1.json") + $(jq .granted "$T/w2.json") ))
rts=$(( $(jq .round_trips "$T/w1.json") + $(jq .round_trips "$T/w2.json") ))
note "KV round trips: $rts for $tasks tasks"

# ---- 2. a type budget inside a tenant budget ----
"$BF" run --url "$U" --budgets "nest=5;nest/sum=1" --tenant nest --type sum --max-cost 10000 \
    --seed 3 --name n1 --quiet-ms 800 > "$T/n1.json" || fail "nested run failed"
ns=$(jq .settled "$T/n1.json")
note "tenant \$5 / type \$1: settled $ns"
[ "$ns" -le 1000000 ] && [ "$ns" -ge $((1000000 - 10000)) ] || fail "type budget not applied: $ns"
[ "$(row nest sum | jq .allocated)" = "$ns" ] || fail "type key allocated != spent"
[ "$(row nest | jq .allocated)" = "$ns" ] || fail "tenant key allocated != spent"

# ---- 3. no budget: no exchange ----
"$BF" run --url "$U" --budgets "fleet=50" --tenant free --max-cost 1000 --seed 4 --name f1 \
    --max-ms 500 > "$T/f1.json" || fail "unbudgeted run failed"
[ "$(jq .exchanges "$T/f1.json")" = 0 ] || fail "an unbudgeted tenant exchanged with the bucket"
[ "$(jq .exceeded "$T/f1.json")" = 0 ] || fail "an unbudgeted tenant was refused"
[ "$(row free | jq .spent)" = "$(jq .settled "$T/f1.json")" ] || fail "unbudgeted spent not flushed"
[ "$(row free | jq .has_budget)" = false ] || fail "unbudgeted tenant shows a budget"

# ---- 4. compare-and-set conflict ----
"$BF" conflict --url "$U" > "$T/conflict.json" || fail "conflict test"
note "conflict: $(cat "$T/conflict.json")"

# ---- 5. NATS outage mid-way ----
OLIMIT=20000000
"$BF" run --url "$U" --budgets "outage=20" --tenant outage --max-cost $MAXC --seed 5 --name o1 \
    --hold-ms 40 --kv-timeout-ms 500 --quiet-ms 1500 --max-ms 60000 > "$T/o1.json" &
PO=$!
sleep 1.5
bounce_nats KILL 3
wait $PO || fail "outage run failed"
note "outage: $(cat "$T/o1.json")"
os=$(jq .settled "$T/o1.json")
[ "$os" -le "$OLIMIT" ] || fail "over-spent across the outage: $os"
[ "$(jq .unavailable "$T/o1.json")" -gt 0 ] || fail "no UNAVAILABLE answer during the outage"
[ "$(jq .granted_after_unavailable "$T/o1.json")" -gt 0 ] || fail "no grant after the restart"
oa=$(row outage | jq .allocated)
note "outage: settled $os, allocated $oa (a write whose answer was lost stays allocated: under-spend)"
[ "$oa" -ge "$os" ] && [ "$oa" -le "$OLIMIT" ] || fail "allocated $oa not in [$os, $OLIMIT]"
echo "PASS"
