#!/usr/bin/env bash
# The production path to the provider: HTTPS with certificate verification
# and HTTP/2 multiplexing, which the simulator (plain HTTP/1.1) never takes.
# A real HTTP/2 server (nghttpd, from Debian's nghttp2-server) serves a
# Messages API answer over TLS with a certificate made here:
#  - a worker given another CA refuses the server: the task is not answered,
#    the log names the certificate, and the task completes later (no loss);
#  - a worker given the right CA (ca_file) completes every task, over h2, with
#    64 calls in flight multiplexed on a handful of connections (HTTP/1.1
#    would need 64).
source "$(dirname "$0")/lib.sh"
N=${N:-300}
CONC=64

for tool in nghttpd openssl python3; do
    command -v "$tool" > /dev/null || fail "$tool not installed (scripts/setup.sh --test installs it)"
done

# A certificate for 127.0.0.1, and an unrelated one for the wrong-CA case.
cert() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/$1.key" -out "$T/$1.pem" 2> /dev/null \
        || fail "openssl could not make a certificate"
}
cert provider
cert stranger

# The answer every call gets (the server is a static file server).
mkdir -p "$T/www/v1"
TEXT="multiplexed over TLS"
jq -nc --arg t "$TEXT" '{id: "msg_tls", type: "message", role: "assistant", model: "claude-sonnet-4-5",
    content: [{type: "text", text: $t}], stop_reason: "end_turn", stop_sequence: null,
    usage: {input_tokens: 12, output_tokens: 4}}' > "$T/www/v1/messages"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nghttpd -v -a 127.0.0.1 -d "$T/www" "$PORT" "$T/provider.key" "$T/provider.pem" > "$T/nghttpd.log" 2>&1 &
PIDS+=("$!")
wait_until 10 bash -c "echo > /dev/tcp/127.0.0.1/$PORT" || fail "nghttpd did not start"
export AGENTQ_BASE_URL="https://127.0.0.1:$PORT"
export ANTHROPIC_API_KEY=sk-ant-tls-test-key

start_nats
agentq init > /dev/null

# 1. The wrong CA: verification fails, nothing is answered, nothing is lost.
agentq submit --id tls-first --prompt "first" --type tls > /dev/null
WORKER_NAME=wrong-ca start_worker --concurrency=$CONC --ca_file="$T/stranger.pem"
wait_until 30 grep -q '"id":"tls-first"' "$T/worker-wrong-ca.log" || fail "no log line about the refused server"
refusal=$(grep -h '"id":"tls-first"' "$T/worker-wrong-ca.log" | head -1)
grep -q '"class":"connection_error"' <<< "$refusal" && grep -qi 'certificate' <<< "$refusal" ||
    fail "the refusal is not a connection error naming the certificate: $refusal"
grep -q 'negotiated protocol' "$T/nghttpd.log" && fail "a TLS handshake completed with the wrong CA"
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2> /dev/null || true   # hands the task back
[ "$(agentq get tls-first 2> /dev/null | jq -r .status)" = STATUS_COMPLETED ] &&
    fail "a task was answered through a server the CA does not vouch for"
note "wrong CA refused: $(grep -o 'curl error [^"]*' <<< "$refusal")"

# 2. The right CA: every task, over HTTP/2, multiplexed.
WORKER_NAME=right-ca start_worker --concurrency=$CONC --ca_file="$T/provider.pem"
make_tasks "$N" tls tls > "$T/tasks.jsonl"
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")
agentq wait --timeout=120s tls-first "${ids[@]}" > "$T/results.jsonl" || fail "not every task completed"
completed=$(jq -r 'select(.status == "STATUS_COMPLETED" and .output == "'"$TEXT"'") | .id' "$T/results.jsonl" | wc -l)
[ "$completed" -eq $((N + 1)) ] || fail "$completed of $((N + 1)) COMPLETED with the server's answer"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters: $(stat_of dead_letters)"

requests=$(grep -c ':method: POST' "$T/nghttpd.log" || true)
h2=$(grep -c 'negotiated protocol: h2' "$T/nghttpd.log" || true)
# the connections that carried calls (others: the readiness probe, the refused handshakes)
conns=$(grep ':method: POST' "$T/nghttpd.log" | grep -o '^\[id=[0-9]*\]' | sort -u | wc -l)
[ "$requests" -eq $((N + 1)) ] || fail "the server saw $requests calls for $((N + 1)) tasks"
[ "$h2" -ge 1 ] && [ "$h2" -eq "$conns" ] || fail "$h2 TLS handshakes negotiated h2 for $conns connections with calls"
# Calls really overlapped: most streams open at once (a request's headers
# open one; the answer's DATA frame with END_STREAM closes it).
peak=$(awk '/:method: POST/ { if (++open > peak) peak = open }
            /send DATA frame/ { getline next_line; if (next_line ~ /END_STREAM/) open-- }
            END { print peak + 0 }' "$T/nghttpd.log")
[ "$peak" -ge 8 ] || fail "at most $peak calls at once: the calls did not overlap"
# HTTP/1.1 would need one connection per call in flight.
[ "$conns" -le 4 ] || fail "$conns connections for $peak calls at once: not multiplexed"
grep -q 'x-api-key: sk-ant-tls-test-key' "$T/nghttpd.log" || fail "the API key did not reach the server"
printf 'llm_tls_h2: %d tasks over HTTPS, %d calls on %d HTTP/2 connection(s), up to %d at once\n' \
    $((N + 1)) "$requests" "$conns" "$peak"
