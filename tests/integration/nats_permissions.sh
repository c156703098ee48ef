#!/usr/bin/env bash
# The NATS permissions of examples/nats-permissions.conf (the README's), as
# printed, against a nats-server that enforces them; with PERM_TLS=1
# (nats_permissions_tls.sh) the same over TLS with client certificates
# (server `verify: true`, made here with openssl):
#  1. the whole pipeline works under them: `agentq init` as the admin, a
#     worker with the response cache and budgets, `agentq submit --wait`
#     (a cache miss, then a hit), `submit` + `wait`, `get`, a dead letter in
#     `agentq dlq ls`, `agentq status`; the server logged no violation;
#  2. every program's replies come to its own inbox (nats_inbox_prefix), and
#     a publisher can read neither the worker's nor the admin's inbox, the
#     DLQ, the response cache, the task stream (as its consumer) nor the
#     fleet status, and cannot delete or overwrite anything; a worker cannot
#     read the publisher's inbox;
#  3. refusals name their subject: a publisher's `agentq dlq ls` and a
#     worker run as the publisher say 'permission denied for publish to
#     "<subject>"' (not "Timeout"); a worker denied the budget reads logs
#     each refusal with the subject;
#  4. (TLS) a client without a certificate, or with one from another CA,
#     is refused.
source "$(dirname "$0")/lib.sh"
PROBE="$AQ_BIN/tests/support/nats_probe"
[ -x "$PROBE" ] || fail "nats_probe not built"
command -v openssl > /dev/null || fail "openssl not installed"

cp "$AQ_SRC/examples/nats-permissions.conf" "$T/nats-permissions.conf"
# The README shows this very file (its first code block after "NATS permissions").
awk '/^\*\*NATS permissions\.\*\*/ {p = 1} p && /^```$/ {if (in_block) exit; in_block = 1; next}
     in_block {print}' "$AQ_SRC/README.md" > "$T/readme-permissions.conf"
cmp -s "$T/readme-permissions.conf" "$T/nats-permissions.conf" \
    || fail "the README's permissions differ from examples/nats-permissions.conf: $(diff "$T/readme-permissions.conf" "$T/nats-permissions.conf" | head)"
# nats-server reads $ADMIN_PW... from its environment and parses the value
# as a configuration value: letters only (a leading digit reads as a number).
pw() { openssl rand -hex 16 | tr 0-9 g-p; }
ADMIN_PW=$(pw) WORKER_PW=$(pw) PUB_PW=$(pw)
export ADMIN_PW WORKER_PW PUB_PW
NATS_AUTH='include "nats-permissions.conf"'

if [ "${PERM_TLS:-0}" = 1 ]; then
    # A CA, the server's certificate for 127.0.0.1, a client certificate;
    # and a stranger CA with a client certificate of its own.
    ca() {
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
            -keyout "$T/$1.key" -out "$T/$1.pem" 2> /dev/null || fail "openssl: CA $1"
    }
    signed() { # NAME CA EXT
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$T/$1.key" \
            -out "$T/$1.csr" 2> /dev/null || fail "openssl: key $1"
        printf '%s\n' "$3" > "$T/$1.ext"
        openssl x509 -req -in "$T/$1.csr" -CA "$T/$2.pem" -CAkey "$T/$2.key" -CAcreateserial \
            -days 2 -extfile "$T/$1.ext" -out "$T/$1.pem" 2> /dev/null || fail "openssl: sign $1"
    }
    ca test-ca
    ca stranger-ca
    signed server test-ca "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
    signed client test-ca "extendedKeyUsage=clientAuth"
    signed stranger stranger-ca "extendedKeyUsage=clientAuth"
    NATS_AUTH="$NATS_AUTH
tls {
  cert_file: \"$T/server.pem\"
  key_file: \"$T/server.key\"
  ca_file: \"$T/test-ca.pem\"
  verify: true
  timeout: 3
}"
fi

start_nats
if [ "${PERM_TLS:-0}" = 1 ]; then
    export AGENTQ_NATS_URL="tls://127.0.0.1:$NATS_PORT"
    export AGENTQ_NATS_TLS_CA="$T/test-ca.pem"
    export AGENTQ_NATS_TLS_CERT="$T/client.pem" AGENTQ_NATS_TLS_KEY="$T/client.key"
fi
start_sim --latency=50ms

# The three users of the example, each with its own inbox prefix.
as_admin() { AGENTQ_NATS_USER=agentq-admin AGENTQ_NATS_PASSWORD=$ADMIN_PW "$@"; }
as_worker() {
    AGENTQ_NATS_USER=agentq-worker AGENTQ_NATS_PASSWORD=$WORKER_PW \
        AGENTQ_NATS_INBOX_PREFIX=_INBOX_worker "$@"
}
as_pub() {
    AGENTQ_NATS_USER=agentq-publisher AGENTQ_NATS_PASSWORD=$PUB_PW \
        AGENTQ_NATS_INBOX_PREFIX=_INBOX_pub "$@"
}
violations() { grep -c "Violation" "$T/nats.log" || true; }

# ---- 1. the pipeline under the permissions
as_admin "$AGENTQ" init > "$T/init.out" || fail "agentq init as the admin: $(cat "$T/init.out")"
grep -q "agentq-budgets" "$T/init.out" || fail "init made no budget bucket"
WORKER_NAME=w1 as_worker start_worker --budgets="acme=5" --status_interval=1s
W=$WORKER_PID
wait_until 15 grep -q '"worker started"' "$T/worker-w1.log" || fail "worker did not start"

# submit --wait prints the id, then the result.
as_pub "$AGENTQ" submit --id=p1 --tenant=acme --temperature=0 --prompt="is this spam?" --wait \
    --timeout=30s > "$T/p1.out" || fail "submit --wait: $(cat "$T/p1.out")"
grep '^{' "$T/p1.out" > "$T/p1.json"
jq -e '.status == "STATUS_COMPLETED" and (.cache_hit | not) and .cost_micro_usd > 0' "$T/p1.json" \
    > /dev/null || fail "p1: $(cat "$T/p1.json")"
as_pub "$AGENTQ" submit --id=p2 --tenant=acme --temperature=0 --prompt="is this spam?" --wait \
    --timeout=30s > "$T/p2.out" || fail "submit --wait (cache hit): $(cat "$T/p2.out")"
grep '^{' "$T/p2.out" > "$T/p2.json"
jq -e '.status == "STATUS_COMPLETED" and .cache_hit' "$T/p2.json" > /dev/null \
    || fail "p2 is not a cache hit: $(cat "$T/p2.json")"
as_pub "$AGENTQ" submit --id=p3 --tenant=globex --prompt="hello" --quiet || fail "submit p3"
as_pub "$AGENTQ" wait --timeout=30s p3 > "$T/p3.json" || fail "wait p3: $(cat "$T/p3.json")"
jq -e '.status == "STATUS_COMPLETED"' "$T/p3.json" > /dev/null || fail "p3: $(cat "$T/p3.json")"
as_pub "$AGENTQ" get p1 p3 > "$T/get.out" || fail "get: $(cat "$T/get.out")"
[ "$(jq -s 'map(.id) | sort | join(",")' -r "$T/get.out")" = "p1,p3" ] || fail "get: $(cat "$T/get.out")"
as_pub "$AGENTQ" submit --id=p4 --tenant=acme --model=no-such-model --prompt="x" --quiet \
    || fail "submit p4"
as_pub "$AGENTQ" wait --timeout=30s p4 > "$T/p4.json" 2>&1 && fail "p4 did not fail"
jq -e '.status == "STATUS_FAILED"' "$T/p4.json" > /dev/null || fail "p4: $(cat "$T/p4.json")"
wait_until 15 bash -c "AGENTQ_NATS_USER=agentq-admin AGENTQ_NATS_PASSWORD=$ADMIN_PW '$AGENTQ' dlq ls | grep -q ' p4 '" \
    || fail "p4 is not in agentq dlq ls"
wait_until 15 bash -c "AGENTQ_NATS_USER=agentq-admin AGENTQ_NATS_PASSWORD=$ADMIN_PW '$AGENTQ' status | grep -q '^w1 '" \
    || fail "agentq status does not show the worker"
as_admin "$AGENTQ" status > "$T/status.out" || fail "agentq status"
grep -q "budget left: acme" "$T/status.out" || fail "status shows no budget: $(cat "$T/status.out")"
[ "$(violations)" = 0 ] || fail "the pipeline ran into permission violations: $(grep Violation "$T/nats.log")"
! grep -q "permission denied" "$T/worker-w1.log" || fail "the worker was refused something"

# ---- 2. nobody reads what is not theirs
probe() { "$PROBE" --wait 300 "$@"; }
# want OUTPUT_FILE LINE...: each line is in the probe's output
want() {
    local f=$1; shift
    for line in "$@"; do grep -qxF "$line" "$f" || fail "want '$line'; the probe said: $(cat "$f")"; done
}
# The publisher: its own inbox and a result by id (the probe sees a grant) ...
as_pub probe 'sub:_INBOX_pub.>' 'req:$JS.API.DIRECT.GET.KV_agentq-results.$KV.agentq-results.p1' \
    > "$T/pub-own.out" || fail "probe: $(cat "$T/pub-own.out")"
want "$T/pub-own.out" 'sub _INBOX_pub.> allowed 0'
grep -q '^req $JS.API.DIRECT.GET.KV_agentq-results.$KV.agentq-results.p1 answered ' "$T/pub-own.out" \
    || fail "a publisher cannot read a result: $(cat "$T/pub-own.out")"
# ... and nothing else: others' inboxes, the DLQ, the cache, the task
# consumer, the fleet status; no deletes, purges or overwrites.
DENY=('sub:_INBOX_worker.>' 'sub:_INBOX.>' 'sub:>' 'sub:agentq.tasks.>' 'sub:agentq.dlq.>' \
    'sub:$KV.agentq-cache.>' 'sub:$KV.agentq-budgets.>' 'sub:agentq.status.>' \
    'req:$JS.API.STREAM.MSG.GET.AGENTQ_DLQ:{"seq":1}' \
    'req:$JS.API.DIRECT.GET.AGENTQ_DLQ:{"seq":1}' \
    'req:$JS.API.CONSUMER.CREATE.AGENTQ_DLQ' \
    'req:$JS.API.STREAM.MSG.GET.KV_agentq-cache:{"seq":1}' \
    'req:$JS.API.DIRECT.GET.KV_agentq-cache:{"seq":1}' \
    'req:$JS.API.STREAM.MSG.GET.AGENTQ_TASKS:{"seq":1}' \
    'req:$JS.API.CONSUMER.MSG.NEXT.AGENTQ_TASKS.agentq-workers:{"batch":1}' \
    'req:$JS.API.CONSUMER.CREATE.AGENTQ_TASKS' \
    'req:$JS.API.CONSUMER.CREATE.KV_agentq-results' \
    'req:$JS.API.CONSUMER.DELETE.KV_agentq-results.x' \
    'req:$JS.API.CONSUMER.DELETE.AGENTQ_TASKS.agentq-workers' \
    'req:$JS.API.STREAM.DELETE.AGENTQ_TASKS' 'req:$JS.API.STREAM.PURGE.AGENTQ_DLQ' \
    'req:$JS.API.STREAM.MSG.DELETE.KV_agentq-results:{"seq":1}' \
    'req:$JS.API.STREAM.DELETE.KV_agentq-results' \
    'pub:$KV.agentq-results.p1' 'pub:$KV.agentq-cache.x' 'pub:agentq.dlq.default' \
    'pub:_INBOX_worker.x')
as_pub probe "${DENY[@]}" > "$T/pub-deny.out" || fail "probe: $(cat "$T/pub-deny.out")"
n=$(grep -c . "$T/pub-deny.out")
[ "$n" = ${#DENY[@]} ] || fail "the probe ran $n of ${#DENY[@]} actions: $(cat "$T/pub-deny.out")"
grep -v ' denied$' "$T/pub-deny.out" && fail "a publisher may do the above"
# The worker cannot read the publisher's inbox either.
as_worker probe 'sub:_INBOX_pub.>' 'sub:_INBOX.>' > "$T/worker-deny.out" || fail "probe (worker)"
want "$T/worker-deny.out" 'sub _INBOX_pub.> denied' 'sub _INBOX.> denied'
# Everything still works after the probes.
[ "$(as_admin "$AGENTQ" stats --json | jq -r .dead_letters)" = 1 ] || fail "the DLQ changed"
as_pub "$AGENTQ" get p1 > /dev/null || fail "p1 is gone"

# ---- 3. refusals name their subject
rc=0
as_pub "$AGENTQ" dlq ls --nats_timeout=1s > "$T/pub-dlq.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a publisher listed the DLQ"
grep -q 'permission denied for publish to "$JS.API.STREAM.INFO.AGENTQ_DLQ"' "$T/pub-dlq.out" \
    || fail "no subject in the publisher's dlq error: $(cat "$T/pub-dlq.out")"
grep -q "Timeout" "$T/pub-dlq.out" && fail "the refusal reads as a timeout: $(cat "$T/pub-dlq.out")"
rc=0
as_pub "$WORKER" --worker_name=impostor --nats_timeout=1s > "$T/impostor.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a worker ran with the publisher's permissions"
[ "$rc" -lt 128 ] || fail "the worker crashed at exit (rc $rc)"
grep -q 'permission denied for publish to \\"$JS.API.STREAM.INFO.AGENTQ_TASKS\\"' "$T/impostor.log" \
    || fail "no subject in the worker's start-up error: $(cat "$T/impostor.log")"

# A worker without the budget reads and the fleet status: each refusal is
# logged with its subject.
kill -TERM "$W"; wait "$W" || fail "worker did not exit 0"
forget_pid "$W"
# The publisher loses the results as they are stored.
sed -i 's/"\$JS.API.STREAM.MSG.GET.KV_agentq-budgets",//; s/, "agentq.status.>"//
        s/^\( *\)"\$KV.agentq-results.>" \]/\1"_INBOX_pub.none" ]/' "$T/nats-permissions.conf"
grep -q 'MSG.GET.KV_agentq-budgets\|"agentq.status.>"\|"$KV.agentq-results.>" ]' \
    "$T/nats-permissions.conf" && fail "sed did not remove the grants"
restart_nats
wait_until 10 bash -c "[ \$(grep -c 'Server is ready' '$T/nats.log') -ge 2 ]" || fail "no restart"
WORKER_NAME=w2 as_worker start_worker --budgets="acme=5" --nats_timeout=1s --status_interval=1s
wait_until 15 grep -q '"worker started"' "$T/worker-w2.log" || fail "worker w2 did not start"
as_pub "$AGENTQ" submit --id=b1 --tenant=acme --prompt="budgeted" --quiet || fail "submit b1"
wait_until 20 grep -q 'permission denied for publish to \\"$JS.API.STREAM.MSG.GET.KV_agentq-budgets\\"' \
    "$T/worker-w2.log" || fail "the worker did not log the refused budget read: $(tail -5 "$T/worker-w2.log")"
wait_until 10 grep -q 'permission denied for publish to \\"agentq.status.w2\\"' "$T/worker-w2.log" \
    || fail "the worker did not log the refused status publish: $(tail -5 "$T/worker-w2.log")"
rc=0
as_pub "$AGENTQ" wait --timeout=20s p1 > "$T/wait-denied.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "wait without the results subscription succeeded"
grep -q 'permission denied for subscription to "$KV.agentq-results.>"' "$T/wait-denied.out" \
    || fail "wait does not name the refused subscription: $(cat "$T/wait-denied.out")"

# ---- 4. TLS: a certificate is required, and from our CA
if [ "${PERM_TLS:-0}" = 1 ]; then
    handshakes=$(grep -c "TLS handshake error" "$T/nats.log" || true)
    rc=0
    AGENTQ_NATS_TLS_CERT= AGENTQ_NATS_TLS_KEY= as_admin "$AGENTQ" status --nats_timeout=2s \
        > "$T/nocert.out" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] || fail "a client without a certificate was let in"
    grep -q "cannot connect to NATS" "$T/nocert.out" || fail "no cert: $(cat "$T/nocert.out")"
    rc=0
    AGENTQ_NATS_TLS_CERT="$T/stranger.pem" AGENTQ_NATS_TLS_KEY="$T/stranger.key" \
        as_admin "$AGENTQ" status --nats_timeout=2s > "$T/stranger.out" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] || fail "a client certificate from another CA was accepted"
    grep -q "cannot connect to NATS" "$T/stranger.out" || fail "stranger: $(cat "$T/stranger.out")"
    note "no certificate: $(cat "$T/nocert.out")"
    note "another CA's certificate: $(cat "$T/stranger.out")"
    [ "$(grep -c "TLS handshake error" "$T/nats.log")" -ge $((handshakes + 2)) ] \
        || fail "the server saw no failed TLS handshakes"
    grep "TLS handshake error" "$T/nats.log" | tail -2 | sed "s/^/# /"
fi
note "pass"
