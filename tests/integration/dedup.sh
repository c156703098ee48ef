#!/usr/bin/env bash
# One task id, one answer:
# 1. the same id published twice within the de-dup window reaches the LLM
#    once: the stream drops the repeat by its Nats-Msg-Id;
# 2. two deliveries of one id in flight in one worker make one call (here:
#    published outside the de-dup window, i.e. with distinct message ids);
# 3. a COMPLETED result is never overwritten: a later copy of the task is
#    acked and its answer dropped.
source "$(dirname "$0")/lib.sh"

start_nats
start_sim --latency=1000
agentq init > /dev/null
agentq submit --id=dup-1 --type=it --prompt="once only" --quiet
agentq submit --id=dup-1 --type=it --prompt="once only" --quiet 2> "$T/second.err"
grep -q "duplicate" "$T/second.err" || fail "second submit did not report the duplicate"
[ "$(stat_of tasks_in_stream)" = 1 ] || fail "stream holds $(stat_of tasks_in_stream) tasks"

# 2: two messages for dup-2 (distinct message ids), both in the stream.
pb_task 'id: "dup-2" type: "it" prompt: "first copy"' > "$T/a.bin"
pb_task 'id: "dup-2" type: "it" prompt: "second copy"' > "$T/b.bin"
raw_publish --subject agentq.tasks.it --msg-id dup-2-a --file "$T/a.bin" > /dev/null
raw_publish --subject agentq.tasks.it --msg-id dup-2-b --file "$T/b.bin" > /dev/null
[ "$(stat_of tasks_in_stream)" = 3 ] || fail "stream holds $(stat_of tasks_in_stream) tasks, want 3"

start_worker
agentq wait --timeout=30s dup-1 dup-2 > "$T/r.json" || fail "no result"
check "$T/r.json" dup-1 '.status == "STATUS_COMPLETED"' || fail "dup-1 not completed"
check "$T/r.json" dup-2 '.status == "STATUS_COMPLETED" and (.output | startswith("echo: first copy"))' ||
    fail "dup-2: $(cat "$T/r.json")"
wait_until 10 stat_is tasks_in_stream 0 || fail "the second copy of dup-2 was not settled"
calls=$(sim_stats | jq '.requests_total')
[ "$calls" -eq 2 ] || fail "the simulator saw $calls calls for 2 task ids"

# 3: a late copy of dup-2 with another prompt: called (its id was not in
# flight), but the stored COMPLETED result stays the first one.
pb_task 'id: "dup-2" type: "it" prompt: "late copy"' > "$T/c.bin"
raw_publish --subject agentq.tasks.it --msg-id dup-2-c --file "$T/c.bin" > /dev/null
wait_until 15 stat_is tasks_in_stream 0 || fail "the late copy was not settled"
agentq get dup-2 > "$T/r2.json"
check "$T/r2.json" dup-2 '.output | startswith("echo: first copy")' || fail "overwritten: $(cat "$T/r2.json")"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters: $(stat_of dead_letters)"
echo "dedup: a repeated Nats-Msg-Id dropped by the stream; 2 copies of one id in flight made 1 call;" \
     "a late copy left the COMPLETED result as it was"
