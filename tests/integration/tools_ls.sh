#!/usr/bin/env bash
# Tool services: the C example (nats.c, the services protocol by hand) and
# the Go example (nats.go's micro package) serve their tools; `agentq tools
# call` calls them as the worker does (headers, idempotency key, outcomes),
# and `agentq tools ls` discovers both with their endpoints and stats.
source "$(dirname "$0")/lib.sh"
command -v go > /dev/null || { echo "SKIP: go not installed"; exit 77; }
gocode=${AQ_GOCODE:-/usr/share/gocode}
[ -d "$gocode/src/github.com/nats-io/nats.go/micro" ] ||
    { echo "SKIP: nats.go micro missing (apt-get install golang-github-nats-io-go-nats-dev)"; exit 77; }

root=$(cd "$(dirname "$0")/../.." && pwd)
C_SERVICE="$AQ_BIN/examples/tool-service-c/agentq-example-tool-service"

note "building examples/tool-service-go offline (GOPATH mode)"
mkdir -p "$T/gopath/src"
(cd "$root/examples/tool-service-go" &&
    GO111MODULE=off GOPATH="$T/gopath:$gocode" GOCACHE="${GOCACHE:-$T/gocache}" GOFLAGS= \
        CGO_ENABLED=0 go build -o "$T/tool-service-go" .) || fail "cannot build the Go tool service"

start_nats
"$C_SERVICE" --url "$AGENTQ_NATS_URL" --keys "$T/keys" > "$T/service-c.log" 2>&1 &
PIDS+=($!)
C_PID=$!
"$T/tool-service-go" -url "$AGENTQ_NATS_URL" -keys "$T/keys" > "$T/service-go.log" 2>&1 &
PIDS+=($!)
GO_PID=$!
wait_until 10 grep -q '^ready' "$T/service-c.log" || fail "the C tool service did not start"
wait_until 10 grep -q '^ready' "$T/service-go.log" || fail "the Go tool service did not start"

# call TOOL INPUT [options]: the JSON line; the exit code in $call_rc
call() { call_rc=0; out=$(agentq tools call "$@") || call_rc=$?; echo "$out"; }
field() { jq -r "$1" <<<"$out"; }

note "calls"
call get_weather '{"city":"Paris","units":"c"}' --key t1:toolu_w --task_id t1 --tenant acme > /dev/null
[ "$call_rc" = 0 ] && [ "$(field .outcome)" = ok ] && [ "$(field .content)" = "Paris: 20 C, sunny" ] ||
    fail "get_weather: $out"
call lookup_order '{"order_id":"A-1001"}' --key t1:toolu_o1 > /dev/null
[ "$(field .outcome)" = ok ] && [ "$(field '.content[0].text')" = "order A-1001: shipped, 2 items" ] ||
    fail "lookup_order: $out"
call lookup_order '{"order_id":"closed-7"}' --key t1:toolu_o2 > /dev/null
[ "$call_rc" = 1 ] && [ "$(field .outcome)" = permanent_failure ] && [ "$(field .is_error)" = true ] ||
    fail "lookup_order closed: $out"
call convert_currency '{"amount":10,"from":"EUR","to":"USD"}' --key t1:toolu_c1 > /dev/null
[ "$(field .outcome)" = ok ] && [ "$(field .content)" = "10.00 EUR = 10.80 USD" ] ||
    fail "convert_currency: $out"
call convert_currency '{"amount":10,"from":"EUR","to":"XXX"}' --key t1:toolu_c2 > /dev/null
[ "$(field .outcome)" = error ] && [ "$(field .content)" = '400: unknown currency "EUR" or "XXX"' ] ||
    fail "convert_currency micro error: $out"
call get_time '{"zone":"UTC"}' --key t1:toolu_t > /dev/null
[ "$(field .outcome)" = ok ] && [[ "$(field .content)" == 20*Z ]] || fail "get_time: $out"
# an input that violates the schema is never dispatched
call get_weather '{"city":3}' --key t1:toolu_bad \
    --schema '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}' > /dev/null
[ "$call_rc" = 1 ] && [ "$(field .outcome)" = schema_violation ] && [ "$(field .attempts)" = 0 ] &&
    [ "$(field .content)" = "/city: expected string, got integer" ] || fail "schema violation: $out"
# no service on the subject: retried, then no_responders
call no_such_tool '{}' --tool_max_attempts 2 > /dev/null
[ "$(field .outcome)" = no_responders ] && [ "$(field .attempts)" = 2 ] || fail "no responders: $out"

note "every dispatched call reached its service once, with its key"
sort "$T/keys" > "$T/keys.sorted"
printf '%s\n' "convert_currency t1:toolu_c1" "convert_currency t1:toolu_c2" "get_time t1:toolu_t" \
    "get_weather t1:toolu_w" "lookup_order t1:toolu_o1" "lookup_order t1:toolu_o2" |
    diff - "$T/keys.sorted" || fail "keys seen by the services differ"

note "agentq tools ls --json"
ls_json=$(agentq tools ls --json --wait 500ms)
echo "$ls_json" | jq -c '.services[] | {name, endpoints: [.endpoints[] | {name, subject, tool, num_requests, num_errors}]}'
svc() { jq -c --arg n "$1" '[.services[] | select(.name == $n)]' <<<"$ls_json"; }
[ "$(jq '.services | length' <<<"$ls_json")" = 3 ] || fail "want 3 services"
c=$(svc agentq-example-tools-c)
[ "$(jq -r '.[0].version' <<<"$c")" = 1.0.0 ] || fail "C service version: $c"
[ "$(jq -c '[.[0].endpoints[] | [.name, .subject, .tool, .num_requests, .num_errors]]' <<<"$c")" = \
  '[["get_weather","agentq.tools.get_weather","get_weather",1,0],["lookup_order","agentq.tools.lookup_order","lookup_order",2,1]]' ] ||
    fail "C service endpoints: $c"
[ "$(jq '.[0].endpoints[0].average_processing_time_ns > 0' <<<"$c")" = true ] || fail "no latency: $c"
for tool in convert_currency get_time; do
    g=$(svc "$tool")
    [ "$(jq -c '[.[0].endpoints[] | [.subject, .tool]]' <<<"$g")" = "[[\"agentq.tools.$tool\",\"$tool\"]]" ] ||
        fail "Go service $tool: $g"
done
[ "$(jq '.[0].endpoints[0].num_requests' <<<"$(svc convert_currency)")" = 2 ] || fail "Go stats: $ls_json"

note "agentq tools ls (table)"
table=$(agentq tools ls --wait 500ms)
echo "$table"
grep -Eq '^agentq-example-tools-c +[A-Za-z0-9]+ +1\.0\.0 +lookup_order +agentq\.tools\.lookup_order +2 +1 ' <<<"$table" ||
    fail "table lacks lookup_order"
grep -Eq '^convert_currency +[A-Za-z0-9]+ +1\.0\.0 +convert_currency +agentq\.tools\.convert_currency +2 ' <<<"$table" ||
    fail "table lacks convert_currency"

note "a stopped service is no longer listed; none at all is exit 4"
kill -TERM "$GO_PID"
wait "$GO_PID" 2>/dev/null || true
[ "$(agentq tools ls --json --wait 300ms | jq -c '[.services[].name]')" = '["agentq-example-tools-c"]' ] ||
    fail "the Go services are still listed"
kill -TERM "$C_PID"
wait "$C_PID" 2>/dev/null || true
rc=0
agentq tools ls --wait 200ms > /dev/null 2> "$T/none.err" || rc=$?
[ "$rc" = 4 ] && grep -q 'no service answered' "$T/none.err" || fail "no services: rc $rc, $(cat "$T/none.err")"
echo "PASS: tools_ls"
