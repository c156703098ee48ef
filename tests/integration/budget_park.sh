#!/usr/bin/env bash
# A spent tenant's backlog never blocks the other tenants (budget_action=defer
# parks it in the deferred stream, out of the consumer's ack-pending window),
# and raising the budget brings it back without waiting for 00:00 UTC:
#  1. `agentq init` creates the deferred stream, idempotently;
#  2. consumer max_ack_pending 20, tenant `spent` with a budget of $0 and 60
#     tasks (one with a custom header, one with a deadline days away), then
#     20 tasks of tenant `other` published after them: the 20 complete
#     promptly; the 60 are parked (the deferred stream holds 60 copies with
#     their headers, the task stream and the consumer's ack-pending are
#     empty; agentq_parked_tasks says 60), none has a result;
#  3. a worker restarted with the same budget releases nothing;
#  4. a worker restarted with the budget raised releases all 60, which
#     complete under their own ids; the deferred stream ends empty;
#  5. a rolling restart: tasks parked by a worker that still has the lower
#     limit after the raised worker started are released by its periodic
#     check (every 30-37 s), without a restart;
#  6. a task parked on an earlier day is released by a worker without any
#     budget when it starts (the reset came while no worker ran); one parked
#     today under a budget it does not have stays parked.
[ $(( $(date -u +%s) % 86400 )) -lt $(( 86400 - 600 )) ] || { echo "skipped: near 00:00 UTC"; exit 77; }
source "$(dirname "$0")/lib.sh"

start_nats
agentq init --max_ack_pending=20 > "$T/init1.out"
grep -q "^stream *AGENTQ_DEFERRED *created" "$T/init1.out" || fail "init did not create the deferred stream: $(cat "$T/init1.out")"
agentq init --max_ack_pending=20 > "$T/init2.out"
grep -Eq "^stream *AGENTQ_DEFERRED *(created|updated)" "$T/init2.out" || fail "init run twice: $(cat "$T/init2.out")"
start_sim --latency_ms=20

tasks() { # N TENANT: JSONL, ids <tenant>-<i>
    jq -nc --argjson n "$1" --arg t "$2" \
        'range($n) | {id: "\($t)-\(.)", type: "it", tenant: $t, prompt: "prompt \(.)", max_tokens: 40}'
}
ids() { seq 0 $(( $1 - 1 )) | sed "s/^/$2-/"; }
parked() { "$RAW_PUBLISH" --url "$AGENTQ_NATS_URL" --dump-stream AGENTQ_DEFERRED; }
parked_count() { parked | wc -l; }
parked_is() { [ "$(parked_count)" = "$1" ]; }

# ---- 2. the spent tenant's backlog, then another tenant's tasks ----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
WORKER_NAME=w1 start_worker --budgets="spent=0" --concurrency=16 --metrics_port="$PORT" --metrics_bind=127.0.0.1
W=$WORKER_PID
# 57 plain tasks, one with a header of its own, one with a deadline in 3 days.
tasks 58 spent | head -57 | agentq submit --file=- --quiet
pb_task 'id: "spent-57" type: "it" tenant: "spent" prompt: "prompt 57" max_tokens: 40' > "$T/t57.bin"
raw_publish --subject agentq.tasks.it --msg-id spent-57 --header "X-Trace-Id:trace-57" --file "$T/t57.bin" > /dev/null
jq -nc --argjson d $(( ($(date +%s) + 3 * 86400) * 1000 )) \
    '{id: "spent-58", type: "it", tenant: "spent", prompt: "prompt 58", max_tokens: 40, deadline_unix_ms: $d}' \
    | agentq submit --file=- --quiet
tasks 2 spent | tail -1 | sed 's/spent-1"/spent-59"/; s/prompt 1"/prompt 59"/' | agentq submit --file=- --quiet
tasks 20 other | agentq submit --file=- --quiet
start=$SECONDS
agentq wait --timeout=60s $(ids 20 other) > "$T/other.jsonl" \
    || fail "the other tenant's tasks did not complete behind the spent tenant's backlog: $(agentq stats --json)"
note "20 tasks of another tenant completed in $((SECONDS - start)) s behind 60 parked ones (max_ack_pending 20)"
wait_until 60 parked_is 60 || fail "expected 60 parked tasks, the deferred stream has $(parked_count): $(agentq stats --json)"
wait_until 10 stat_is ack_pending 0 || fail "parked tasks still ack-pending: $(agentq stats --json)"
wait_until 10 stat_is tasks_in_stream 0 || fail "parked tasks still in the task stream: $(agentq stats --json)"
[ "$(stat_of pending)" = 0 ] || fail "tasks pending: $(agentq stats --json)"
[ "$(stat_of dead_letters)" = 0 ] || fail "a spent tenant's task was dead-lettered"
rc=0; agentq get $(ids 60 spent) > "$T/none.jsonl" 2>/dev/null || rc=$?
[ "$(jq -s length "$T/none.jsonl")" = 0 ] || fail "a parked task has a result: $(head -1 "$T/none.jsonl")"
parked > "$T/parked.jsonl"
jq -e -s 'all(.[]; .subject == "agentq.deferred.spent"
    and .headers["Agentq-Parked-Tenant"] == "spent" and .headers["Agentq-Parked-Limit"] == "0"
    and .headers["Agentq-Parked-Subject"] == "agentq.tasks.it"
    and (.headers["Agentq-Parked-Until"] | test("^20[0-9-]*T00:00:00Z$"))
    and (.headers["Nats-Msg-Id"] | startswith("park-AGENTQ_TASKS-")))' "$T/parked.jsonl" > /dev/null \
    || fail "parked copies lack their headers: $(head -1 "$T/parked.jsonl")"
jq -e -s 'map(select(.headers["X-Trace-Id"] == "trace-57")) | length == 1' "$T/parked.jsonl" > /dev/null \
    || fail "the task's own header was not kept: $(grep trace "$T/parked.jsonl")"
grep -q '"daily budget spent: task parked until it resets or is raised"' "$T/worker-w1.log" || fail "no parking logged"
gauge_is() { curl -sf "http://127.0.0.1:$PORT/metrics" | grep -qx "agentq_parked_tasks $1"; }
wait_until 15 gauge_is 60 || fail "agentq_parked_tasks: $(curl -sf "http://127.0.0.1:$PORT/metrics" | grep parked)"
kill -TERM "$W"; wait "$W" || fail "worker w1 did not exit 0"; forget_pid "$W"

# ---- 3. the same budget again: nothing released ----
WORKER_NAME=w2 start_worker --budgets="spent=0"
W=$WORKER_PID
wait_until 10 grep -q '"consumer bound"' "$T/worker-w2.log" || fail "worker w2 did not start"
sleep 2
[ "$(parked_count)" = 60 ] || fail "a worker with the same budget released parked tasks: $(parked_count) left"
kill -TERM "$W"; wait "$W" || fail "worker w2 did not exit 0"; forget_pid "$W"

# ---- 4. raised: back without waiting for midnight ----
WORKER_NAME=w3 start_worker --budgets="spent=100"
W=$WORKER_PID
agentq wait --timeout=60s $(ids 60 spent) > "$T/spent.jsonl" || fail "released tasks did not complete: $(agentq stats --json)"
[ "$(jq -s 'map(select(.status == "STATUS_COMPLETED" and .tenant == "spent")) | length' "$T/spent.jsonl")" = 60 ] \
    || fail "not every released task completed"
wait_until 10 parked_is 0 || fail "released tasks left in the deferred stream: $(parked_count)"
wait_until 10 stat_is tasks_in_stream 0 || fail "released tasks left in the task stream: $(agentq stats --json)"
grep -q '"parked tasks released"' "$T/worker-w3.log" || fail "no release logged"
note "raised budget: $(grep -o '"released":[0-9]*' "$T/worker-w3.log" | head -1) at start, 60 completed"
# ---- 5. parked by a worker with a lower limit while one with a higher limit
#         runs (a rolling restart): its periodic check brings them back ----
WORKER_NAME=w4 start_worker --budgets="spent=100"
W4=$WORKER_PID
wait_until 10 grep -q '"consumer bound"' "$T/worker-w4.log" || fail "worker w4 did not start"
sleep 1 # past its pass at start
kill -STOP "$W4"
kill -TERM "$W"; wait "$W" || fail "worker w3 did not exit 0"; forget_pid "$W"
WORKER_NAME=w5 start_worker --budgets="spent=0"
W5=$WORKER_PID
jq -nc 'range(5) | {id: "late-\(.)", type: "it", tenant: "spent", prompt: "late \(.)", max_tokens: 40}' \
    | agentq submit --file=- --quiet
wait_until 60 parked_is 5 || fail "the old worker did not park 5 tasks: $(parked_count)"
kill -TERM "$W5"; wait "$W5" || fail "worker w5 did not exit 0"; forget_pid "$W5"
kill -CONT "$W4"
start=$SECONDS
agentq wait --timeout=60s $(ids 5 late) > "$T/late.jsonl" \
    || fail "tasks parked under a lower limit were not released by the running worker with a higher one"
note "parked by a worker with a lower limit: released by a running worker's check within $((SECONDS - start)) s"
wait_until 10 parked_is 0 || fail "left in the deferred stream: $(parked_count)"
kill -TERM "$W4"; wait "$W4" || fail "worker w4 did not exit 0"; forget_pid "$W4"

# ---- 6. parked yesterday (a reset the fleet was down for): a worker with
#         no budget at all releases it when it starts ----
today=$(( $(date -u +%s) / 86400 ))
pb_task 'id: "yday-1" type: "it" tenant: "yday" prompt: "from yesterday" max_tokens: 40' > "$T/yday.bin"
raw_publish --subject agentq.deferred.yday --msg-id park-test-yday-1 --header "Agentq-Parked-Subject:agentq.tasks.it" \
    --header "Agentq-Parked-Tenant:yday" --header "Agentq-Parked-Limit:0" \
    --header "Agentq-Parked-Day:$((today - 1))" --header "Agentq-Parked-Seq:1" --file "$T/yday.bin" > /dev/null
# and one parked today under a budget no worker here has: it stays.
pb_task 'id: "tday-1" type: "it" tenant: "tday" prompt: "from today" max_tokens: 40' > "$T/tday.bin"
raw_publish --subject agentq.deferred.tday --msg-id park-test-tday-1 --header "Agentq-Parked-Subject:agentq.tasks.it" \
    --header "Agentq-Parked-Tenant:tday" --header "Agentq-Parked-Limit:0" \
    --header "Agentq-Parked-Day:$today" --header "Agentq-Parked-Seq:2" --file "$T/tday.bin" > /dev/null
WORKER_NAME=w6 start_worker
agentq wait --timeout=30s yday-1 > "$T/yday.json" || fail "a task parked yesterday was not released: $(cat "$T/yday.json")"
wait_until 10 parked_is 1 || fail "expected only today's task left parked: $(parked_count)"
[ "$(parked | jq -r .subject)" = agentq.deferred.tday ] || fail "the wrong task was released"
echo "PASS"
