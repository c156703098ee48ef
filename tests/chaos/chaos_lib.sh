# shellcheck shell=bash
# Shared by the chaos tests: the integration helpers (servers on free ports in
# a temporary directory, logs kept and shown on failure) plus the invariant
# every chaos test ends with.
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

# No core files from the kill -9 / abort() storms.
ulimit -c 0

# Every wait in a chaos test is bounded by the test's budget, so that a test
# that goes wrong fails by itself (cleaning up and showing its logs) before
# ctest's TIMEOUT (170 s) would kill it: `wait_until "$(within 30)" ...` waits
# at most 30 s and never past the budget.
CHAOS_BUDGET=${CHAOS_BUDGET:-150}
CHAOS_END=$((SECONDS + CHAOS_BUDGET))
within() {
    local s=$1 left=$((CHAOS_END - SECONDS))
    [ "$left" -lt "$s" ] && s=$left
    [ "$s" -lt 1 ] && s=1
    echo "$s"
}

# Simulator options that take its per-key rate limits out of the way (not
# enforced, and reported so high that a worker pacing itself on the
# anthropic-ratelimit-* headers does not slow down): the chaos tests inject
# their own faults and must not get 429s they did not ask for.
SIM_NO_LIMITS=(--rl_enforce=false --rl_requests=1000000000 --rl_input_tokens=1000000000000
               --rl_output_tokens=1000000000000)

# wait_for_ids SECS FILE: wait (bounded by the budget) until every id in FILE
# has a result; never fails (the verdict says what is missing).
wait_for_ids() {
    local ids
    mapfile -t ids < "$2"
    "$AGENTQ" wait --timeout="$(within "$1")s" "${ids[@]}" > /dev/null 2>&1 || true
}

# Ids of a JSONL task file, one a line.
ids_of() { jq -r .id "$1"; }

# A process's exit, waited for, never failing the script; then forgotten
# (cleanup must not signal its pid, which may be reused).
reap() { wait "$1" 2>/dev/null || true; forget_pid "$1"; }

# chaos_verdict NAME FAULTS IDS_FILE [EXPLAINED_DUPLICATES]
#
# The invariant: every task id ends in exactly one of
#   * a COMPLETED result in the results bucket, or
#   * the DLQ (a dead letter whose Agentq-Task-Id is the id) with a FAILED result;
# none lost (neither), none in both, none dead-lettered twice, no dead letter
# without its FAILED result.
#
# duplicate_calls = (calls the simulator answered or dropped: /sim/stats
# requests_total) - (sum of `attempts` over the results of these tasks).
# A Result's attempts is the number of LLM calls made by the delivery that
# settled the task, including the calls it retried in place for 429/529/5xx, so
# the fault-injected retries are already in the sum and the difference is
# exactly the calls made by deliveries that did not settle their task: calls
# in flight in a worker that was killed, or cut off by a restart, and calls
# made twice because a task was redelivered while still being worked on
# (AckWait expiry). With no kills it must be 0.
# A max_deliveries FAILED result is not written by a delivery (the backstop
# writes it from the server's advisory) and its attempts counts deliveries,
# not calls: it is left out of the sum (its deliveries' calls, if any, count
# as duplicates).
# EXPLAINED_DUPLICATES, when given, is how many of those the injected faults can
# explain at most (e.g. kills x concurrency: a killed worker loses at most the
# calls it had in flight); more fails the test.
#
# Prints one line:
#   CHAOS <name>: tasks=N faults="..." completed=C dead_lettered=D lost=L duplicate_calls=K
# and writes the per-id details to $T/verdict.json (kept on failure).
chaos_verdict() {
    local name=$1 faults=$2 ids_file=$3 explained=${4:-} ids
    mapfile -t ids < "$ids_file"
    # agentq get exits 1 if some failed, 4 if some are missing: both are data here.
    "$AGENTQ" get "${ids[@]}" > "$T/results.jsonl" 2> "$T/get.err" || true
    dlq_dump > "$T/dlq.jsonl" || fail "cannot read the DLQ"
    local calls
    calls=$(sim_stats | jq .requests_total) || fail "cannot read the simulator's stats"
    jq -n --rawfile ids "$ids_file" --slurpfile res "$T/results.jsonl" --slurpfile dlq "$T/dlq.jsonl" '
        ($ids | split("\n") | map(select(length > 0))) as $ids
        | (reduce $res[] as $r ({}; .[$r.id] = $r)) as $R
        | (reduce ($dlq[] | .headers["Agentq-Task-Id"] // empty) as $i ({}; .[$i] += 1)) as $D
        | [$ids[] | {id: ., st: ($R[.].status // "none"), d: ($D[.] // 0), a: (if $R[.].error.class == "max_deliveries" then 0 else ($R[.].attempts // 0) end),
                     cls: ($R[.].error.class // "")}] as $t
        | {tasks: ($t | length),
           completed: ([$t[] | select(.st == "STATUS_COMPLETED")] | length),
           dead_lettered: ([$t[] | select(.d > 0)] | length),
           attempts: ([$t[].a] | add // 0),
           lost: [$t[] | select(.st != "STATUS_COMPLETED" and .d == 0) | .id],
           both: [$t[] | select(.st == "STATUS_COMPLETED" and .d > 0) | .id],
           dead_lettered_twice: [$t[] | select(.d > 1) | .id],
           dead_letter_without_failed_result: [$t[] | select(.d > 0 and .st != "STATUS_FAILED") | .id],
           dead_letter_classes: ([$t[] | select(.d > 0) | .cls] | group_by(.) | map({(.[0]): length}) | add // {})}
    ' > "$T/verdict.json" || fail "cannot compute the verdict"
    local v=$T/verdict.json tasks completed dead lost both twice nofail attempts dup
    tasks=$(jq .tasks "$v"); completed=$(jq .completed "$v"); dead=$(jq .dead_lettered "$v")
    lost=$(jq '.lost | length' "$v"); both=$(jq '.both | length' "$v")
    twice=$(jq '.dead_lettered_twice | length' "$v")
    nofail=$(jq '.dead_letter_without_failed_result | length' "$v")
    attempts=$(jq .attempts "$v")
    dup=$((calls - attempts))
    echo "CHAOS $name: tasks=$tasks faults=\"$faults\" completed=$completed dead_lettered=$dead lost=$lost duplicate_calls=$dup"
    note "simulator calls $calls, sum of attempts $attempts; dead letters by class $(jq -c .dead_letter_classes "$v")"
    local bad=0
    [ "$lost" -eq 0 ] || { echo "FAIL: $lost tasks lost, e.g. $(jq -c '.lost[:10]' "$v")" >&2; bad=1; }
    [ "$both" -eq 0 ] || { echo "FAIL: $both tasks both COMPLETED and dead-lettered, e.g. $(jq -c '.both[:10]' "$v")" >&2; bad=1; }
    [ "$twice" -eq 0 ] || { echo "FAIL: $twice tasks dead-lettered twice, e.g. $(jq -c '.dead_lettered_twice[:10]' "$v")" >&2; bad=1; }
    [ "$nofail" -eq 0 ] || { echo "FAIL: $nofail dead letters without a FAILED result, e.g. $(jq -c '.dead_letter_without_failed_result[:10]' "$v")" >&2; bad=1; }
    [ $((completed + dead)) -eq "$tasks" ] || { echo "FAIL: completed + dead-lettered = $((completed + dead)), not $tasks" >&2; bad=1; }
    if [ "$dup" -lt 0 ]; then
        echo "FAIL: results record $attempts attempts but the simulator saw only $calls calls" >&2; bad=1
    fi
    if [ -n "$explained" ] && [ "$dup" -gt "$explained" ]; then
        echo "FAIL: $dup duplicate calls, more than the $explained the faults can explain" >&2; bad=1
    fi
    CHAOS_DUP=$dup CHAOS_CALLS=$calls CHAOS_ATTEMPTS=$attempts CHAOS_DEAD=$dead CHAOS_COMPLETED=$completed
    [ "$bad" -eq 0 ] || exit 1
}

# The task stream drains: everything acked, terminated or removed. Waits
# up to $1 s (default 20) for the consumer to have nothing pending or
# unacknowledged, then for the stream to be empty. Messages still in the
# stream after that are orphans the consumer will never deliver again (seen
# after nats-server 2.9.10 is killed with SIGKILL: acked work-queue messages
# come back from its file store, behind the consumer's ack floor). They are
# tolerated only when every one of them is a task already settled (COMPLETED
# or dead-lettered); their number is in STREAM_LEFTOVERS.
expect_stream_drained() {
    local secs=${1:-20}
    STREAM_LEFTOVERS=0
    wait_until "$(within "$secs")" _consumer_idle || fail "the consumer still has work: $("$AGENTQ" stats --json)"
    wait_until 5 stat_is tasks_in_stream 0 && return 0
    "$RAW_PUBLISH" --url "$AGENTQ_NATS_URL" --dump-stream AGENTQ_TASKS > "$T/leftovers.jsonl" \
        || fail "cannot read the task stream"
    STREAM_LEFTOVERS=$(wc -l < "$T/leftovers.jsonl")
    local ids
    mapfile -t ids < <(jq -r '.headers["Nats-Msg-Id"] // "?"' "$T/leftovers.jsonl")
    "$AGENTQ" get "${ids[@]}" > "$T/leftover-results.jsonl" 2> /dev/null || true
    local settled
    settled=$(jq -s 'map(select(.status == "STATUS_COMPLETED" or .status == "STATUS_FAILED")) | length' \
        "$T/leftover-results.jsonl")
    note "$STREAM_LEFTOVERS messages left in the task stream, never to be delivered again" \
         "($("$AGENTQ" stats --json)); $settled of them are settled tasks"
    [ "$settled" -eq "$STREAM_LEFTOVERS" ] \
        || fail "$((STREAM_LEFTOVERS - settled)) unsettled tasks stuck in the stream: see $T/leftovers.jsonl"
}
_consumer_idle() {
    local s
    s=$("$AGENTQ" stats --json) || return 1
    jq -e '.pending == 0 and .ack_pending == 0' <<< "$s" > /dev/null
}
