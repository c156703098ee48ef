#!/usr/bin/env bash
# Start-up failures are clear, specific, and never show a credential.
source "$(dirname "$0")/lib.sh"
KEY="sk-ant-test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

expect_exit() { # CODE OUTFILE CMD... : run CMD, expect exit CODE, keep stderr+stdout
    local want=$1 out=$2; shift 2
    local rc=0
    "$@" > "$out" 2>&1 || rc=$?
    [ "$rc" -eq "$want" ] || fail "$* exited $rc, expected $want: $(cat "$out")"
}

start_nats
# JetStream objects missing: the worker names each one and says what to run.
expect_exit 3 "$T/missing.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER"
grep -q "missing JetStream objects: stream AGENTQ_TASKS, dead-letter stream AGENTQ_DLQ, results bucket agentq-results, advisory stream AGENTQ_ADVISORIES, consumer agentq-workers, consumer agentq-backstop (run \`agentq init\`)" \
    "$T/missing.out" || fail "unclear: $(cat "$T/missing.out")"
# That exit path once freed state nats.c still called back into (1 crash in
# about 6 starts): repeat it.
for i in $(seq 20); do
    expect_exit 3 "$T/missing.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER"
done

# Bad configuration: exit 2 and a message naming the option and the source.
expect_exit 2 "$T/conc.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER" --concurrency=0
grep -q "concurrency (from command line): 0 is out of range" "$T/conc.out" || fail "$(cat "$T/conc.out")"
expect_exit 2 "$T/wait.out" env ANTHROPIC_API_KEY="$KEY" AGENTQ_ACK_WAIT=banana "$WORKER"
grep -q "ack_wait (from AGENTQ_ACK_WAIT): 'banana' is not a duration" "$T/wait.out" || fail "$(cat "$T/wait.out")"
expect_exit 2 "$T/nokey.out" env -u ANTHROPIC_API_KEY "$WORKER"
grep -q "no API key: set ANTHROPIC_API_KEY" "$T/nokey.out" || fail "$(cat "$T/nokey.out")"
expect_exit 2 "$T/status.out" env ANTHROPIC_API_KEY="$KEY" AGENTQ_STATUS_SUBJECT='agentq.>' "$WORKER"
grep -q "status_subject 'agentq.>' is not a subject prefix" "$T/status.out" || fail "$(cat "$T/status.out")"
echo "concurrency = 5" > "$T/bad.conf"; echo "no_such_option = 1" >> "$T/bad.conf"
expect_exit 2 "$T/file.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER" --config "$T/bad.conf"
grep -q "unknown option 'no_such_option' (from $T/bad.conf:2)" "$T/file.out" || fail "$(cat "$T/file.out")"

# Secrets: not in --print-config, not in connection errors.
ANTHROPIC_API_KEY="$KEY" AGENTQ_NATS_PASSWORD=natspw-123 \
    "$WORKER" --nats_url="nats://alice:urlpw-456@127.0.0.1:1,nats://bob:urlpw-789@127.0.0.1:2" \
    --print-config > "$T/print.out"
grep -q "^api_key = <redacted>$" "$T/print.out" || fail "api_key not redacted"
grep -q "^nats_url = nats://\*\*\*@127.0.0.1:1,nats://\*\*\*@127.0.0.1:2$" "$T/print.out" || fail "$(grep nats_url "$T/print.out")"
expect_exit 3 "$T/conn.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER" \
    --nats_url="nats://alice:urlpw-456@127.0.0.1:1" --nats_timeout=500ms
grep -q "cannot connect to NATS at nats://\*\*\*@127.0.0.1:1" "$T/conn.out" || fail "$(cat "$T/conn.out")"
for f in "$T"/*.out; do
    for secret in "$KEY" natspw-123 urlpw-456 urlpw-789; do
        ! grep -qF "$secret" "$f" || fail "$f shows a secret"
    done
done
echo "startup_errors: missing objects named, 4 bad configurations explained, no secret in any output"
