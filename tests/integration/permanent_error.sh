#!/usr/bin/env bash
# Permanent errors end as a FAILED result plus a dead letter carrying the
# payload, on the first delivery, and the worker carries on.
source "$(dirname "$0")/lib.sh"

start_nats
start_sim
agentq init > /dev/null
# Any model may be named (empty allowlist), so the provider answers 404.
start_worker --allowed_models=
agentq submit --id=perm-404 --type=it --model=claude-no-such-model --prompt="hi" --quiet
agentq submit --id=perm-ok --type=it --prompt="fine" --quiet
rc=0
agentq wait --timeout=30s perm-404 perm-ok > "$T/r.jsonl" || rc=$?
[ "$rc" -eq 1 ] || fail "wait should exit 1 (a task failed), got $rc"

check "$T/r.jsonl" perm-404 '.status == "STATUS_FAILED" and .error.class == "http_404"
       and .error.http_status == 404 and .attempts == 1' \
    || fail "perm-404: $(grep perm-404 "$T/r.jsonl")"
check "$T/r.jsonl" perm-ok '.status == "STATUS_COMPLETED"' \
    || fail "perm-ok did not complete"
wait_until 10 stat_is dead_letters 1 || fail "dead letters: $(stat_of dead_letters)"
wait_until 10 stat_is tasks_in_stream 0 || fail "task stream not empty"

# A model outside the worker's allowlist is refused before any call.
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || fail "worker did not exit 0 on SIGTERM"
start_worker
calls_before=$(sim_stats | jq '.requests_total')
agentq submit --id=perm-model --type=it --model=gpt-4 --prompt="hi" --quiet
rc=0; agentq wait --timeout=30s perm-model > "$T/m.json" || rc=$?
[ "$rc" -eq 1 ] || fail "wait should exit 1, got $rc"
check "$T/m.json" perm-model '.error.class == "model_not_allowed"' || fail "$(cat "$T/m.json")"
[ "$(sim_stats | jq '.requests_total')" -eq "$calls_before" ] || fail "a disallowed model reached the provider"
wait_until 10 stat_is dead_letters 2 || fail "dead letters: $(stat_of dead_letters)"
# A result too large for the bucket fails loudly instead of being cut.
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || fail "worker did not exit 0"
start_sim --output_tokens=2000
start_worker --max_msg_size=4KiB
agentq submit --id=perm-big --type=it --prompt="long answer" --max_tokens=4000 --quiet
rc=0; agentq wait --timeout=30s perm-big > "$T/big.json" || rc=$?
[ "$rc" -eq 1 ] || fail "wait should exit 1, got $rc"
check "$T/big.json" perm-big '.status == "STATUS_FAILED" and .error.class == "too_large"' \
    || fail "$(cat "$T/big.json")"
wait_until 10 stat_is dead_letters 3 || fail "dead letters: $(stat_of dead_letters)"

echo "permanent_error: http_404 and model_not_allowed and too_large all FAILED + dead-lettered, worker unaffected"
