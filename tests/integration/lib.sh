# Shared by the integration tests: start real servers on free ports in a
# temporary directory, and clean everything up on exit.
#
# Needs: AQ_BIN (the build tree's directory holding cmd/*), nats-server, jq.
set -euo pipefail

: "${AQ_BIN:?AQ_BIN must point at the build directory}"
AGENTQ="$AQ_BIN/cmd/agentq/agentq"
WORKER="$AQ_BIN/cmd/agentq-worker/agentq-worker"
SIM="$AQ_BIN/cmd/agentq-sim/agentq-sim"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)

T=$(mktemp -d "${TMPDIR:-/tmp}/agentq-it.XXXXXX")
PIDS=()

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
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
start_nats() {
    mkdir -p "$T/js"
    cat > "$T/nats.conf" <<CONF
listen: 127.0.0.1:-1
max_payload: 8MB
jetstream { store_dir: "$T/js" }
CONF
    "$NATS_SERVER" -c "$T/nats.conf" > "$T/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    wait_until 10 grep -q "Server is ready" "$T/nats.log" || fail "nats-server did not start"
    local port
    port=$(sed -n 's/.*Listening for client connections on [0-9.]*:\([0-9]*\).*/\1/p' "$T/nats.log" | head -1)
    export AGENTQ_NATS_URL="nats://127.0.0.1:$port"
    NATS_PORT=$port
    wait_until 10 "$AGENTQ" stats || true
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
