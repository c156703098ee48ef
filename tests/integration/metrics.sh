#!/usr/bin/env bash
# /metrics, /healthz and /readyz of a running worker: N tasks and one
# undecodable task go through; the scrape parses with the Prometheus
# client's own text parser (python3-prometheus-client) and its counters
# match what happened (tasks completed, the simulator's request count, the
# queue drained, one dead letter). /readyz turns 503 once nats-server is
# gone while /healthz stays 200. A taken metrics port is a startup error.
# Every check runs; the failures are listed together at the end.
source "$(dirname "$0")/lib.sh"
N=${N:-200}
PY=/usr/bin/python3 # Debian's, which has python3-prometheus-client

"$PY" -c 'import prometheus_client.parser' 2>/dev/null || {
    echo "SKIP: python3-prometheus-client is not installed (scripts/setup.sh --test)"; exit 77; }

FAILS=()
bad() { echo "FAIL: $*" >&2; FAILS+=("$*"); }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
code_of() { curl -s -o /dev/null -w '%{http_code}' "$METRICS/$1" || true; }
code_is() { [ "$(code_of "$1")" = "$2" ]; }
code_is_not() { [ "$(code_of "$1")" != "$2" ]; }

# The scrape, parsed: one JSON object of the figures the checks need; any
# parse error fails here.
scrape() {
    curl -sf "$METRICS/metrics" > "$T/metrics.txt" || return 1
    "$PY" - "$T/metrics.txt" <<'PY'
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
fams, sums, gauges, nseries = {}, {}, {}, 0
for f in text_string_to_metric_families(text):
    fams[f.name] = f.type
    for s in f.samples:
        nseries += 1
        if f.type == "counter" and s.name.endswith("_total"):
            key = s.name
            if s.name == "agentq_tasks_total":
                key += "." + s.labels.get("outcome", "")
            sums[key] = sums.get(key, 0) + s.value
        elif f.type == "gauge":
            gauges[s.name] = None if math.isnan(s.value) else s.value
        elif f.type == "histogram" and s.name.endswith("_count"):
            sums[s.name] = sums.get(s.name, 0) + s.value
print(json.dumps({"families": fams, "sums": sums, "gauges": gauges, "samples": nseries}))
PY
}
fig() { jq -r "$1" "$T/scrape.json"; } # null: missing, or NaN

start_nats
start_sim
agentq init > /dev/null
PORT=$(free_port)
METRICS="http://127.0.0.1:$PORT"
WORKER_NAME=wm start_worker --concurrency=64 --metrics_port="$PORT" --metrics_bind=127.0.0.1 \
    --shutdown_grace=1s
wait_until 20 code_is readyz 200 || fail "/readyz never 200: $(curl -s "$METRICS/readyz")"
code_is healthz 200 || bad "/healthz is $(code_of healthz) while running"
code_is nope 404 || bad "/nope is $(code_of nope), not 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$METRICS/metrics")" = 405 ] || bad "POST /metrics is not 405"
grep -q "metrics listening.*$PORT" "$T/worker-wm.log" || bad "the log does not name the metrics port"

# A second worker on the same port: a clear startup error, exit 3.
rc=0; "$WORKER" --worker_name=clash --metrics_port="$PORT" --metrics_bind=127.0.0.1 \
    > "$T/clash.log" 2>&1 || rc=$?
[ "$rc" -eq 3 ] || bad "a taken metrics port exits $rc, not 3"
grep -q "metrics_port" "$T/clash.log" && grep -q ":$PORT" "$T/clash.log" ||
    bad "the startup error does not name the metrics port: $(cat "$T/clash.log")"

# --print-metrics: the contract's families, without any connection.
AGENTQ_NATS_URL=nats://127.0.0.1:1 "$WORKER" --print-metrics > "$T/families.txt" ||
    bad "--print-metrics failed"
# The README's metric table documents exactly these families.
awk '{ print $1 }' "$T/families.txt" | sort > "$T/families.names"
sed -n '/^## Metrics and health/,/^## /p' "$AQ_SRC/README.md" | grep -o '^| `agentq_[a-z0-9_]*`' |
    tr -d '|` ' | sort > "$T/readme.names"
[ -s "$T/families.names" ] && [ "$(wc -l < "$T/families.names")" -ge 18 ] ||
    bad "--print-metrics lists only $(wc -l < "$T/families.names") families"
diff "$T/families.names" "$T/readme.names" > "$T/families.diff" ||
    bad "the README's metric table and --print-metrics differ (< binary, > README): $(cat "$T/families.diff")"

make_tasks "$N" m > "$T/tasks.jsonl"
agentq submit --file "$T/tasks.jsonl" --quiet
mapfile -t ids < <(jq -r .id "$T/tasks.jsonl")
agentq wait --timeout=120s "${ids[@]}" > "$T/results.jsonl" || fail "not every task completed"
printf '\xff\xff\xff' > "$T/garbage.bin"
raw_publish --subject agentq.tasks.it --msg-id m-garbage --file "$T/garbage.bin" > /dev/null ||
    fail "cannot publish the undecodable task"
wait_until 20 stat_is dead_letters 1 || bad "the undecodable task was not dead-lettered"
wait_until 10 stat_is tasks_in_stream 0 || bad "task stream not empty"

# The probe runs every 5 s: wait for the drained queue and the dead letter.
dlq_seen() { scrape > "$T/scrape.json" && [ "$(fig '.gauges.agentq_dlq_messages')" = 1 ] &&
             [ "$(fig '.gauges.agentq_queue_ack_pending')" = 0 ]; }
wait_until 20 dlq_seen || bad "agentq_dlq_messages / agentq_queue_ack_pending did not reach 1 / 0"
scrape > "$T/scrape.json" || fail "/metrics does not parse as Prometheus text: $(head -c 2000 "$T/metrics.txt")"
calls=$(sim_stats | jq '.requests_total')

while read -r name type _; do
    [ "$(jq -r --arg n "${name%_total}" '.families[$n] // empty' "$T/scrape.json")" = "$type" ] ||
        bad "family $name ($type) missing from the scrape"
done < "$T/families.txt"
completed=$(fig '.sums["agentq_tasks_total.completed"]')
dead=$(fig '.sums["agentq_tasks_total.dead_lettered"]')
responses=$(fig '.sums.agentq_llm_responses_total')
llm_count=$(fig '.sums.agentq_llm_request_duration_seconds_count')
task_count=$(fig '.sums.agentq_task_duration_seconds_count')
[ "${completed%.0}" = "$N" ] || bad "agentq_tasks_total{outcome=\"completed\"} sums to $completed, not $N"
[ "${dead%.0}" = 1 ] || bad "agentq_tasks_total{outcome=\"dead_lettered\"} sums to $dead, not 1"
[ "${responses%.0}" = "$calls" ] || bad "agentq_llm_responses_total sums to $responses; the simulator saw $calls requests"
[ "${llm_count%.0}" = "$calls" ] || bad "agentq_llm_request_duration_seconds_count sums to $llm_count, not $calls"
[ "${task_count%.0}" -ge "$N" ] 2>/dev/null || bad "agentq_task_duration_seconds_count sums to $task_count, under $N"
[ "$(fig '.gauges.agentq_queue_pending')" = 0 ] || bad "agentq_queue_pending is $(fig '.gauges.agentq_queue_pending'), not 0"
[ "$(fig '.gauges.agentq_tasks_in_progress')" = 0 ] || bad "agentq_tasks_in_progress is $(fig '.gauges.agentq_tasks_in_progress'), not 0"
[ "$(fig '.gauges.agentq_build_info')" = 1 ] || bad "agentq_build_info is not 1"
grep -q '^agentq_build_info{version="[^"]*",worker="wm"} 1$' "$T/metrics.txt" || bad "agentq_build_info lacks the worker name"
grep -q "sim-test-key" "$T/metrics.txt" && bad "the API key appears in /metrics"

# The probe's figures while a backlog drains: slow answers keep the worker's
# 64 slots busy (ack-pending) and the rest of the tasks waiting (pending).
restart_sim --latency=6000
make_tasks 100 slow > "$T/slow.jsonl"
agentq submit --file "$T/slow.jsonl" --quiet
backlog_seen() { scrape > "$T/scrape.json" && [ "$(fig '.gauges.agentq_queue_pending')" != null ] &&
                 [ "$(fig '.gauges.agentq_queue_pending')" -gt 0 ] &&
                 [ "$(fig '.gauges.agentq_queue_ack_pending')" -gt 0 ]; }
wait_until 6 backlog_seen ||
    bad "no backlog in the queue gauges while 100 slow tasks drain: pending $(fig '.gauges.agentq_queue_pending'), ack_pending $(fig '.gauges.agentq_queue_ack_pending')"
[ "$(fig '.gauges.agentq_queue_pending')" -le 100 ] && [ "$(fig '.gauges.agentq_queue_ack_pending')" -le 64 ] ||
    bad "queue gauges out of range: pending $(fig '.gauges.agentq_queue_pending'), ack_pending $(fig '.gauges.agentq_queue_ack_pending')"
mapfile -t slow_ids < <(jq -r .id "$T/slow.jsonl")
agentq wait --timeout=60s "${slow_ids[@]}" > /dev/null || bad "the slow tasks did not complete"
drained() { scrape > "$T/scrape.json" && [ "$(fig '.gauges.agentq_queue_pending')" = 0 ] &&
            [ "$(fig '.gauges.agentq_queue_ack_pending')" = 0 ]; }
wait_until 10 drained || bad "the queue gauges did not return to 0 after the backlog drained"

# nats-server gone: not ready (within the probe's connection check), still alive.
kill -TERM "$NATS_PID"; wait "$NATS_PID" 2>/dev/null || true
forget_pid "$NATS_PID"
wait_until 10 code_is_not readyz 200 || bad "/readyz still 200 with nats-server stopped"
curl -s "$METRICS/readyz" | grep -q "^not ready: " || bad "/readyz gives no reason: $(curl -s "$METRICS/readyz")"
code_is healthz 200 || bad "/healthz is $(code_of healthz) while NATS is down"
curl -sf "$METRICS/metrics" > /dev/null || bad "/metrics not served while NATS is down"

kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true
forget_pid "$WORKER_PID"

if [ ${#FAILS[@]} -gt 0 ]; then
    printf 'metrics: %d check(s) failed:\n' "${#FAILS[@]}" >&2
    printf '  - %s\n' "${FAILS[@]}" >&2
    exit 1
fi
printf 'metrics: %d tasks, %d LLM calls, %s samples scraped and parsed\n' "$N" "$calls" "$(fig .samples)"
