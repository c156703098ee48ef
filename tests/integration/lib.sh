# Shared by the integration tests: start real servers on free ports in a
# temporary directory, and clean everything up on exit.
#
# Needs: AQ_BIN (the build tree's directory holding cmd/*), nats-server, jq.
set -euo pipefail

: "${AQ_BIN:?AQ_BIN must point at the build directory}"
# Workers serve /metrics only where a test asks (--metrics_port=...): the
# default port, 9090, would clash between workers and between tests.
export AGENTQ_METRICS_PORT=0
AGENTQ="$AQ_BIN/cmd/agentq/agentq"
WORKER="$AQ_BIN/cmd/agentq-worker/agentq-worker"
SIM="$AQ_BIN/cmd/agentq-sim/agentq-sim"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)

T=$(mktemp -d "${TMPDIR:-/tmp}/agentq-it.XXXXXX")
PIDS=()

# Our own children only: a pid that exited long ago may belong to another
# test's process by now (tests run side by side), and must not be signalled.
ours() { [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]; }

cleanup() {
    local rc=$?
    # Everything but nats-server first: a worker stopped while NATS is still
    # up drains and exits at once; stopped together, it spent seconds trying
    # to reconnect (3-8 s of every test).
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "${NATS_PID:-}" ] || { ours "$pid" && kill -TERM "$pid" 2>/dev/null || true; }
    done
    for pid in "${PIDS[@]}"; do [ "$pid" = "${NATS_PID:-}" ] || wait "$pid" 2>/dev/null || true; done
    if [ -n "${NATS_PID:-}" ]; then
        ours "$NATS_PID" && kill -TERM "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ]; then
        echo "--- test failed (rc=$rc); logs in $T:" >&2
        for f in "$T"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 30 "$f" >&2; }; done
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "# $*"; }

# Poll a command until it succeeds (up to $1 seconds).
wait_until() {
    local secs=$1; shift
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}

# nats-server with JetStream on a random port; max_payload raised so the
# stream's own size limit (not the connection's) is what refuses big tasks.
# NATS_AUTH, when set, is the server's authorization block on one line (the
# credential tests change it with sed), e.g. 'authorization { token: "t" }'.
start_nats() {
    mkdir -p "$T/js"
    cat > "$T/nats.conf" <<CONF
listen: 127.0.0.1:-1
max_payload: 8MB
jetstream { store_dir: "$T/js" }
${NATS_AUTH:-}
CONF
    "$NATS_SERVER" -c "$T/nats.conf" > "$T/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    wait_until 10 grep -q "Server is ready" "$T/nats.log" || fail "nats-server did not start"
    local port
    port=$(sed -n 's/.*Listening for client connections on [0-9.]*:\([0-9]*\).*/\1/p' "$T/nats.log" | head -1)
    export AGENTQ_NATS_URL="nats://127.0.0.1:$port"
    NATS_PORT=$port
    wait_until 10 bash -c "echo > /dev/tcp/127.0.0.1/$port" || fail "nats-server does not accept connections"
}

# Restart nats-server on the same port and store (for restart tests).
restart_nats() {
    kill -TERM "$NATS_PID"; wait "$NATS_PID" 2>/dev/null || true
    sed -i "s#listen: .*#listen: 127.0.0.1:$NATS_PORT#" "$T/nats.conf"
    "$NATS_SERVER" -c "$T/nats.conf" >> "$T/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
}

# The simulator on a random port; extra options pass through.
start_sim() {
    rm -f "$T/sim.port"
    "$SIM" --listen=127.0.0.1:0 --port_file="$T/sim.port" --threads=1 "$@" > "$T/sim.log" 2>&1 &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
    wait_until 10 test -s "$T/sim.port" || fail "agentq-sim did not start"
    SIM_URL="http://127.0.0.1:$(cat "$T/sim.port")"
    export AGENTQ_BASE_URL="$SIM_URL"
    export ANTHROPIC_API_KEY=sim-test-key
}

sim_stats() { curl -sf "$SIM_URL/sim/stats"; }

# A worker in the background; its pid in WORKER_PID. Options pass through.
start_worker() {
    local name=${WORKER_NAME:-w$RANDOM}
    "$WORKER" --worker_name="$name" "$@" >> "$T/worker-$name.log" 2>&1 &
    WORKER_PID=$!
    PIDS+=("$WORKER_PID")
}

agentq() { "$AGENTQ" "$@"; }

stat_of() { "$AGENTQ" stats --json | jq -r ".$1"; }
# Predicates for wait_until: they read the stats afresh on every poll.
stat_is() { [ "$(stat_of "$1")" = "$2" ]; }
stat_at_least() { [ "$(stat_of "$1")" -ge "$2" ]; }

# N tasks of a type as JSONL: ids <prefix>-<i>, prompt "prompt <prefix> <i>".
make_tasks() {
    local n=$1 prefix=$2 type=${3:-it}
    jq -nc --argjson n "$n" --arg p "$prefix" --arg t "$type" \
        'range($n) | {id: "\($p)-\(.)", type: $t, prompt: "prompt \($p) \(.)", max_tokens: 64}'
}

# check FILE ID EXPR: the one result for ID in the JSON lines of FILE satisfies EXPR.
check() {
    jq -s -e --arg id "$2" "map(select(.id == \$id)) | length == 1 and (.[0] | $3)" "$1" > /dev/null
}

# ---- helpers for the bad-input and chaos tests (appended) ----

AQ_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RAW_PUBLISH="$AQ_BIN/tests/support/raw_publish"

# Drop a reaped process from PIDS, so that cleanup never signals a pid the
# system may have given to another process since (pid_max is 32768 here).
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# raw_publish --subject S [--header K:V]... [--msg-id ID] (--file F | --stdin | --hex H):
# a JetStream publish of arbitrary bytes; prints the stream sequence.
raw_publish() { "$RAW_PUBLISH" --url "$AGENTQ_NATS_URL" "$@"; }

# The dead letters as JSON lines {seq, subject, headers, len[, payload_hex]}.
dlq_dump() { "$RAW_PUBLISH" --url "$AGENTQ_NATS_URL" --dump-stream AGENTQ_DLQ "$@"; }

# Encode an agentq.v1.Task from protobuf text format, to stdout:
#   pb_task 'id: "t1" type: "it" prompt: "hi"' > t1.bin
pb_task() {
    protoc --encode=agentq.v1.Task -I "$AQ_SRC/schemas" "$AQ_SRC/schemas/agentq/v1/task.proto" <<< "$1"
}


# bounce_nats SIGNAL DOWN_SECS: stop nats-server with SIGNAL (TERM: clean
# shutdown; KILL: crash), leave it down DOWN_SECS, start it again on the same
# port and store directory, and wait until it is ready.
bounce_nats() {
    local sig=$1 down=$2 ready
    ready=$(grep -c "Server is ready" "$T/nats.log" || true)
    kill "-$sig" "$NATS_PID"; wait "$NATS_PID" 2>/dev/null || true
    forget_pid "$NATS_PID"
    sleep "$down"
    sed -i "s#listen: .*#listen: 127.0.0.1:$NATS_PORT#" "$T/nats.conf"
    "$NATS_SERVER" -c "$T/nats.conf" >> "$T/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    wait_until 20 _nats_ready_more "$ready" || fail "nats-server did not come back"
}
_nats_ready_more() { [ "$(grep -c 'Server is ready' "$T/nats.log")" -gt "$1" ]; }

# Restart the simulator on the same port with other options: a running
# worker keeps its base_url. Stats start again from zero.
restart_sim() {
    local port=${SIM_URL##*:}
    kill -TERM "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true
    forget_pid "$SIM_PID"
    rm -f "$T/sim.port"
    "$SIM" --listen="127.0.0.1:$port" --port_file="$T/sim.port" --threads=1 "$@" >> "$T/sim.log" 2>&1 &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
    wait_until 10 test -s "$T/sim.port" || fail "agentq-sim did not restart on port $port"
}
