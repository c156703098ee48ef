#!/usr/bin/env bash
# internal/trace's OTLP/HTTP export, checked by a receiver that decodes with
# the OpenTelemetry project's own package (tests/integration/otlp_receiver:
# @opentelemetry/otlp-transformer's ExportTraceServiceRequest, pinned in its
# package-lock.json, installed under the build tree), driven by
# tests/support/trace_emit:
#   - a task's spans form one tree under the publisher's trace id, with the
#     parent ids, GenAI attributes, retry/deferral events, the resource and
#     the collector's auth headers; the receiver answers 503 twice first
#     (Retry-After: 1) and no span is lost;
#   - 503 twice with no Retry-After (the exponential backoff): 300 spans in
#     batches of 100 all arrive;
#   - a publisher that did not sample: nothing is sent; a malformed
#     traceparent: a new trace;
#   - a collector that is down: emitting 5000 spans returns quickly and the
#     dropped counter counts what the bounded queue could not keep;
#   - a 400 is not retried; a partial success's rejected spans count as dropped;
#   - a collector that never answers: the shutdown's timeout (1 s) cuts the
#     request off (its own timeout is 10 s).
# The pipeline does not emit spans yet: this tests the library.
source "$(dirname "$0")/lib.sh"

command -v node > /dev/null || { echo "SKIP: node not installed (scripts/setup.sh --test)"; exit 77; }
command -v npm > /dev/null || { echo "SKIP: npm not installed"; exit 77; }

RECEIVER_SRC="$AQ_SRC/tests/integration/otlp_receiver"
EMIT="$AQ_BIN/tests/support/trace_emit"
[ -x "$EMIT" ] || fail "no $EMIT (build the tests)"

# The pinned OpenTelemetry packages, once per build tree (npm ci from the lock).
NPM_DIR="$AQ_BIN/tests/otel-npm"
if ! cmp -s "$RECEIVER_SRC/package-lock.json" "$NPM_DIR/package-lock.json" ||
   [ ! -d "$NPM_DIR/node_modules/@opentelemetry/otlp-transformer" ]; then
    note "installing the OpenTelemetry test packages into $NPM_DIR"
    rm -rf "$NPM_DIR"
    mkdir -p "$NPM_DIR"
    cp "$RECEIVER_SRC/package.json" "$RECEIVER_SRC/package-lock.json" "$NPM_DIR/"
    (cd "$NPM_DIR" && npm ci --no-audit --no-fund --ignore-scripts > "$T/npm.log" 2>&1) ||
        { cat "$T/npm.log" >&2; rm -rf "$NPM_DIR"; fail "npm ci of the OpenTelemetry packages failed"; }
fi

# start_receiver NAME [receiver options]: RECV_URL, RECV_PID; files $T/NAME.*
start_receiver() {
    local name=$1; shift
    : > "$T/$name.spans"; : > "$T/$name.req"
    node "$RECEIVER_SRC/receiver.js" --node-modules "$NPM_DIR/node_modules" \
        --port-file "$T/$name.port" --out "$T/$name.spans" --log "$T/$name.req" "$@" \
        > "$T/receiver-$name.log" 2>&1 &
    RECV_PID=$!
    PIDS+=("$RECV_PID")
    wait_until 20 test -s "$T/$name.port" || fail "receiver $name did not start"
    RECV_URL="http://127.0.0.1:$(cat "$T/$name.port")"
}
stop_receiver() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}
no_errors() {
    ! grep -q '"error"' "$1" || { grep '"error"' "$1" | head -3 >&2; fail "the receiver refused a body (see above)"; }
}
# jqs FILE EXPR: EXPR over the spans of FILE (an array) is true
jqs() { jq -s -e "$2" "$1" > /dev/null || { echo "spans: $(cat "$1")" >&2; fail "$3"; }; }

TID=4bf92f3577b34da6a3ce929d0e0e4736
PSID=00f067aa0ba902b7

# ---- one task's tree under the publisher's trace, through two 503s ----
note "a task's span tree under the publisher's traceparent (the collector answers 503 twice first)"
start_receiver tree --fail 2 --fail-status 503 --retry-after 1
out=$("$EMIT" --trace_endpoint="$RECV_URL/" --trace_batch_delay=100ms \
      --trace_headers='authorization=Bearer%20s3cret-token, x-tenant=acme' \
      tree --traceparent="00-$TID-$PSID-01" --tracestate="congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
echo "$out" > "$T/tree.out"
S="$T/tree.spans"
no_errors "$S"
echo "$out" | jq -e '.exported == 4 and .dropped == 0 and .failures == 2 and .flush == "ok"' > /dev/null ||
    fail "tree: expected 4 exported, 0 dropped, 2 failed requests: $out"
jq -s -e 'length == 3 and (map(.status) == [503, 503, 200]) and all(.url == "/v1/traces"
          and .method == "POST" and .contentType == "application/json"
          and .authorization == "Bearer s3cret-token" and .xTenant == "acme"
          and (.userAgent | startswith("agentq-worker/0.1.0-test ")))' "$T/tree.req" > /dev/null ||
    fail "tree: requests were not 503, 503, 200 with the auth headers: $(cat "$T/tree.req")"
TASK=$(echo "$out" | jq -r .task_span_id)
jqs "$S" 'length == 4 and all(.traceId == "'$TID'")' "tree: not 4 spans under the publisher's trace id"
jqs "$S" 'map(.spanId) | unique | length == 4' "tree: span ids repeat"
# one tree: the task is the only span whose parent is not among them, and its parent is the publisher's
jqs "$S" '(map(.spanId)) as $ids | map(select(.parentSpanId as $p | $ids | index($p) | not))
          | length == 1 and .[0].spanId == "'$TASK'" and .[0].parentSpanId == "'$PSID'"' \
    "tree: the task span is not the one root under the publisher's span"
jqs "$S" 'map(select(.spanId != "'$TASK'")) | all(.parentSpanId == "'$TASK'")' \
    "tree: cache, chat and tool spans are not children of the task span"
jqs "$S" 'all(.traceState == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")' "tree: tracestate not carried"
jqs "$S" 'all(.resource == {"service.name": "agentq-worker", "service.instance.id": "trace-emit-1",
                          "service.version": "0.1.0-test"} and .scope.name == "agentq")' "tree: resource or scope"
jqs "$S" 'all((.startTimeUnixNano | tonumber) > 1.6e18 and (.endTimeUnixNano | tonumber) >= (.startTimeUnixNano | tonumber))' \
    "tree: timestamps"
jqs "$S" 'map(select(.spanId == "'$TASK'"))[0] | .name == "process agentq.tasks.chat" and .kind == 5
          and .flags == 769 and .attributes["messaging.system"] == "nats"
          and .attributes["messaging.destination.name"] == "agentq.tasks.chat"
          and .attributes["messaging.operation.type"] == "process"
          and .attributes["agentq.task.id"] == "task-1" and .attributes["agentq.tenant"] == "acme"
          and .attributes["agentq.delivery_count"] == 1 and .attributes["agentq.outcome"] == "completed"' \
    "tree: the task (consumer) span's kind, flags or attributes"
jqs "$S" 'map(select(.name == "agentq.cache lookup"))[0] | .kind == 1 and .attributes["agentq.cache.hit"] == false and .flags == 257' \
    "tree: the cache lookup span"
jqs "$S" 'map(select(.name == "chat claude-haiku-4-5"))[0] | .kind == 3
          and .attributes["gen_ai.operation.name"] == "chat" and .attributes["gen_ai.provider.name"] == "anthropic"
          and .attributes["gen_ai.request.model"] == "claude-haiku-4-5" and .attributes["gen_ai.request.max_tokens"] == 256
          and .attributes["gen_ai.response.id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
          and .attributes["gen_ai.response.model"] == "claude-haiku-4-5-20251001"
          and .attributes["gen_ai.response.finish_reasons"] == {"arrayValue": {"values": [{"stringValue": "end_turn"}]}}
          and .attributes["gen_ai.usage.input_tokens"] == 2400 and .attributes["gen_ai.usage.output_tokens"] == 50
          and .attributes["gen_ai.usage.cache_read.input_tokens"] == 2000
          and .attributes["gen_ai.usage.cache_creation.input_tokens"] == 300
          and .attributes["agentq.cost_usd"] == 0.00123 and .status.code == 1
          and (.events | length == 2)
          and .events[0].name == "agentq.retry" and .events[0].attributes["http.response.status_code"] == 503
          and .events[0].attributes["error.type"] == "server_error"
          and .events[1].name == "agentq.deferral" and .events[1].attributes["http.response.status_code"] == 429
          and .events[1].attributes["agentq.retry_after_ms"] == 2000' \
    "tree: the chat span's GenAI attributes or its retry/deferral events"
jqs "$S" 'map(select(.name == "execute_tool get_weather"))[0] | .kind == 1
          and .attributes["gen_ai.operation.name"] == "execute_tool" and .attributes["gen_ai.tool.name"] == "get_weather"
          and .attributes["gen_ai.tool.call.id"] == "toolu_01A09q90qw90lq917835lq9"
          and .attributes["error.type"] == "timeout" and .status == {"code": 2, "message": "tool timed out"}' \
    "tree: the execute_tool span"
grep -q s3cret "$T/tree.out" && fail "the auth header's value was printed"
stop_receiver "$RECV_PID"

# ---- 503 twice (backoff, no Retry-After), several batches: nothing lost ----
note "300 spans in batches of 100 through two 503s without Retry-After"
start_receiver backoff --fail 2 --fail-status 503
out=$("$EMIT" --trace_endpoint="$RECV_URL" --trace_batch_size=100 --trace_queue_size=2048 \
      --trace_batch_delay=50ms flood 300)
no_errors "$T/backoff.spans"
echo "$out" | jq -e '.exported == 300 and .dropped == 0 and .failures == 2' > /dev/null ||
    fail "backoff: expected 300 exported, none dropped: $out"
jqs "$T/backoff.spans" 'length == 300 and (map(.spanId) | unique | length == 300)
                        and (map(.attributes.i) | sort == [range(300)])' "backoff: spans lost or repeated"
jq -s -e 'map(.status) | .[0:2] == [503, 503] and (.[2:] | all(. == 200))' "$T/backoff.req" > /dev/null ||
    fail "backoff: requests $(jq -sc 'map(.status)' "$T/backoff.req")"

# ---- a publisher that did not sample; a malformed traceparent ----
note "an unsampled publisher: nothing sent; a malformed traceparent: a new trace"
start_receiver misc
out=$("$EMIT" --trace_endpoint="$RECV_URL" --trace_batch_delay=50ms tree --traceparent="00-$TID-$PSID-00")
echo "$out" | jq -e '.sampled == false and .exported == 0 and .dropped == 0 and .trace_id == "'$TID'"' > /dev/null ||
    fail "unsampled: $out"
[ ! -s "$T/misc.req" ] || fail "unsampled: something was sent: $(cat "$T/misc.req")"
out=$("$EMIT" --trace_endpoint="$RECV_URL" --trace_batch_delay=50ms tree --traceparent="00-$TID-$PSID-1" 2> "$T/emit.err")
no_errors "$T/misc.spans"
NEW=$(echo "$out" | jq -r .trace_id)
[ "$NEW" != "$TID" ] || fail "malformed traceparent: the trace was continued"
jqs "$T/misc.spans" 'length == 4 and all(.traceId == "'$NEW'")
                     and (map(select(.parentSpanId == null)) | length == 1 and .[0].spanId == "'"$(echo "$out" | jq -r .task_span_id)"'")
                     and (map(select(.parentSpanId == null))[0].flags == 257)' \
    "malformed traceparent: not one new tree rooted at the task span"
grep -q "malformed traceparent" "$T/emit.err" || fail "trace_emit did not notice the malformed traceparent"
DOWN_PORT=${RECV_URL##*:}
stop_receiver "$RECV_PID"

# ---- a collector that is down ----
note "a collector that is down: 5000 spans, queue 100, batch 50"
start=$(date +%s%N)
out=$("$EMIT" --trace_endpoint="http://127.0.0.1:$DOWN_PORT" --trace_queue_size=100 --trace_batch_size=50 \
      --trace_batch_delay=10ms --flush=0 flood 5000)
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
note "emit: $(echo "$out" | jq -c .); whole run ${took_ms} ms"
# Loose bounds, not a benchmark: the emitting loop never waits for the network.
echo "$out" | jq -e '.emit_us < 2000000' > /dev/null || fail "down: emitting 5000 spans took $(echo "$out" | jq .emit_us) us"
# What the queue could not keep is dropped at once: all but the queue (100)
# and at most one batch the exporter had taken (50).
echo "$out" | jq -e '.queue_full_after_emit >= 4850 and .queue_full_after_emit <= 4900' > /dev/null ||
    fail "down: queue_full right after emitting: $out"
echo "$out" | jq -e '.exported == 0 and .dropped == 5000 and .failures >= 1' > /dev/null ||
    fail "down: every span must be counted as dropped: $out"
[ "$took_ms" -lt 8000 ] || fail "down: the run took ${took_ms} ms (shutdown must cut the retries off)"

# ---- answers that are not retried; a partial success ----
note "a 400 drops the batch at once; a partial success counts its rejected spans as dropped"
start_receiver bad --fail 1 --fail-status 400
out=$("$EMIT" --trace_endpoint="$RECV_URL" --trace_batch_delay=10ms tree)
echo "$out" | jq -e '.exported == 0 and .dropped == 4 and .failures == 1' > /dev/null || fail "400: $out"
[ "$(wc -l < "$T/bad.req")" -eq 1 ] || fail "400: the batch was sent again: $(cat "$T/bad.req")"
stop_receiver "$RECV_PID"
start_receiver partial --reject 1
out=$("$EMIT" --trace_endpoint="$RECV_URL" --trace_batch_delay=10ms tree)
echo "$out" | jq -e '.exported == 3 and .dropped == 1 and .failures == 0' > /dev/null || fail "partial success: $out"
stop_receiver "$RECV_PID"

# ---- a collector that takes the request and never answers ----
note "a collector that never answers: shutdown cuts the request off"
start_receiver hang --hang 1
start=$(date +%s%N)
out=$("$EMIT" --trace_endpoint="$RECV_URL" --trace_batch_delay=10ms --flush=0 tree)
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
note "emit: $(echo "$out" | jq -c .); whole run ${took_ms} ms"
echo "$out" | jq -e '.exported == 0 and .dropped == 4 and .failures == 1' > /dev/null ||
    fail "hang: expected the batch dropped after one cut-off request: $out"
[ "$took_ms" -lt 5000 ] || fail "hang: the run took ${took_ms} ms (the shutdown deadline is 1 s)"
wait_until 5 test -s "$T/hang.req" || fail "hang: the receiver saw no request"

echo "PASS: trace_export"
