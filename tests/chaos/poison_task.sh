#!/usr/bin/env bash
# A poison task: one that kills the worker on every delivery (the test build's
# crash marker: AGENTQ_TEST_CRASH_MARKER makes the worker abort() when it
# starts a task whose prompt contains the marker). The consumer allows 3
# deliveries; a supervisor loop restarts the worker each time it dies. After
# the 3rd crash the server's MAX_DELIVERIES advisory makes a worker move the
# task to the DLQ (class max_deliveries) with a FAILED result, and remove it
# from the task stream; the 200 other tasks complete.
#
# The worker runs with --concurrency=1 so that the only task it holds when it
# crashes is the poison one: with more, the tasks fetched with it and not yet
# settled are redelivered with it and use up deliveries too.
source "$(dirname "$0")/chaos_lib.sh"
N=${N:-200}
MAX_DELIVER=3
ACK_WAIT=2s
MARKER="poison-marker-$RANDOM$RANDOM"

start_nats
start_sim "${SIM_NO_LIMITS[@]}"
agentq init --max_deliver=$MAX_DELIVER --ack_wait=$ACK_WAIT > /dev/null
make_tasks "$N" pt > "$T/normal.jsonl"
{
    head -n $((N / 2)) "$T/normal.jsonl"
    jq -nc --arg m "$MARKER" '{id: "pt-poison", type: "it", prompt: "this task crashes the worker: \($m)", max_tokens: 64}'
    tail -n +$((N / 2 + 1)) "$T/normal.jsonl"
} > "$T/tasks.jsonl"
ids_of "$T/tasks.jsonl" > "$T/ids.txt"
agentq submit --file "$T/tasks.jsonl" --quiet 2> "$T/submit.log"

# The supervisor: restarts the worker whenever it exits, until $T/stop exists
# (or this script is gone, or the budget is spent); records each exit status
# in $T/exits.txt.
(
    wp=
    trap '[ -n "$wp" ] && kill -TERM "$wp" 2>/dev/null; [ -n "$wp" ] && wait "$wp"; exit 0' TERM
    while [ ! -e "$T/stop" ] && kill -0 $$ 2>/dev/null && [ $SECONDS -lt $CHAOS_END ]; do
        AGENTQ_TEST_CRASH_MARKER=$MARKER "$WORKER" --worker_name=wp --concurrency=1 \
            --ack_wait=$ACK_WAIT >> "$T/worker-wp.log" 2>&1 &
        wp=$!
        rc=0; wait "$wp" || rc=$?
        wp=
        echo "$rc" >> "$T/exits.txt"
        sleep 0.2
    done
) &
SUP=$!
PIDS+=("$SUP")

wait_for_ids 90 "$T/ids.txt"
expect_stream_drained 20
touch "$T/stop"
kill -TERM "$SUP"; reap "$SUP"

crashes=$(grep -cx 134 "$T/exits.txt" || true)   # 128 + SIGABRT
others=$(grep -vcx 134 "$T/exits.txt" || true)
note "worker exits: $crashes abort(), $others other ($(sort "$T/exits.txt" | uniq -c | tr '\n' ' '))"
chaos_verdict poison_task "poison task aborting the worker on each delivery (crash marker), max_deliver=$MAX_DELIVER, x$crashes crashes" \
    "$T/ids.txt" 0

[ "$crashes" -eq "$MAX_DELIVER" ] || fail "the worker crashed $crashes times, expected $MAX_DELIVER (one per delivery)"
[ "$others" -eq 0 ] || fail "the worker exited $others times without a crash: $(cat "$T/exits.txt" | tr '\n' ' ')"
[ "$CHAOS_COMPLETED" -eq "$N" ] || fail "$CHAOS_COMPLETED of the $N normal tasks completed"
[ "$CHAOS_DEAD" -eq 1 ] || fail "$CHAOS_DEAD tasks dead-lettered, expected only the poison one"
check "$T/results.jsonl" pt-poison '.status == "STATUS_FAILED" and .error.class == "max_deliveries"' \
    || fail "poison result: $(grep pt-poison "$T/results.jsonl")"
dl=$(jq -c 'select(.headers["Agentq-Task-Id"] == "pt-poison")' "$T/dlq.jsonl")
jq -e --arg n "$MAX_DELIVER" '.headers["Agentq-Error-Class"] == "max_deliveries" and .headers["Agentq-Attempts"] == $n
       and (.headers["Agentq-Error"] | length > 0) and .subject == "agentq.dlq.it"' <<< "$dl" > /dev/null \
    || fail "poison dead letter: $dl"
note "poison dead letter: $(jq -c '.headers | {"Agentq-Error-Class", "Agentq-Error", "Agentq-Attempts"}' <<< "$dl")"
