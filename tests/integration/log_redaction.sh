#!/usr/bin/env bash
# Logs of a full run, with credentials everywhere they can be given: every
# worker log line is one JSON object, every line about a task names its id,
# type, tenant, attempt and stream sequence, and no API key, NATS password,
# NATS token or URL credential appears in any log, CLI output, result or
# /metrics scrape (nats-server's own log and config are not ours).
#
# The run: nats-server with a user and password (a token later), the
# simulator accepting only one API key and answering some calls 429, 529 and
# 500, a worker at log_level=debug with the key in the environment, the NATS
# credentials in its URL and a user and password in its base_url; tasks that
# complete, fall back, are retried, name a model not allowed, do not decode;
# a SIGTERM while calls are in flight and a second worker given everything as
# flags; a worker with a wrong API key (401s); starts with a wrong password,
# a wrong token; the CLI's init, submit, get, wait, stats, status and dlq
# with the credentials in flags, the environment and a config file.
source "$(dirname "$0")/lib.sh"

export LC_ALL=C
rand() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
KEY_TAIL=$(rand)
KEY="sk-ant-api03-REDACTME-$KEY_TAIL"
WRONG_KEY="sk-ant-api03-WRONGKEY-$(rand)"
PASS="pw-$(rand)"
WRONG_PASS="pw-$(rand)"
TOKEN="tok-$(rand)"
WRONG_TOKEN="tok-$(rand)"
PROXY_PASS="proxypw-$(rand)"
NUSER=aquser

# Everything that must never be printed: the secrets, a prefix of each random
# part (a truncated leak is still a leak), and the words a dumped request
# header would bring along.
PATTERNS="$T/patterns.txt"
{
    for s in "$KEY" "$WRONG_KEY" "$PASS" "$WRONG_PASS" "$TOKEN" "$WRONG_TOKEN" "$PROXY_PASS"; do
        echo "$s"
        r=${s#*-}; r=${r##*-}
        echo "${r:0:10}"
    done
    echo "${KEY:0:12}"
    echo "REDACTME"
    echo "WRONGKEY"
    echo "Bearer "
    echo "x-api-key:"
    echo "Authorization: "
    echo "$NUSER:"
} > "$PATTERNS"
# leaks FILE...: the lines of FILEs holding any pattern (file:line:text).
leaks() { grep -H -n -i -F -f "$PATTERNS" "$@" || true; }

# A test that cannot fail is a defect: the scan must find a planted key, a
# key prefix and URL credentials, and the field check must flag a task line
# without its fields and a line that is not JSON.
mkdir -p "$T/sanity"
echo "{\"msg\":\"x\",\"error\":\"bad key ${KEY:0:14}\"}" > "$T/sanity/a.out"
echo "nats://$NUSER:$PASS@127.0.0.1:4222" > "$T/sanity/b.out"
echo 'nothing to see here' > "$T/sanity/c.out"
[ "$(leaks "$T"/sanity/*.out | cut -d: -f1 | sort -u | wc -l)" -eq 2 ] ||
    fail "sanity: the leak scan does not find planted secrets: $(leaks "$T"/sanity/*.out)"

# bad_lines FILE: worker log lines that are not one JSON object, or that name
# a task (an "id" field) without its type, tenant, attempt (the backstop,
# which makes no calls, says delivery) and stream_seq.
bad_lines() {
    jq -R -c --arg f "${1##*/}" '
        (try fromjson catch null) as $o
        | if ($o | type) != "object" then {file: $f, not_json: .}
          elif ($o | has("id")) then
              ([ "type", "tenant", "stream_seq" ] - ($o | keys)
               + (if ($o | has("attempt") or has("delivery")) then [] else ["attempt"] end)) as $m
              | if ($m | length) > 0 then {file: $f, missing: $m, line: $o} else empty end
          else empty end' "$1"
}
printf '%s\n' '{"msg":"task completed","id":"a","type":"t","tenant":"","attempt":1,"stream_seq":3}' \
    '{"msg":"task x","id":"a","type":"t"}' 'plain text' '{"msg":"worker started"}' > "$T/sanity/w.log"
[ "$(bad_lines "$T/sanity/w.log" | wc -l)" -eq 2 ] ||
    fail "sanity: the field check does not flag bad lines: $(bad_lines "$T/sanity/w.log")"

# ---- the run
NATS_AUTH="authorization { user: $NUSER, password: \"$PASS\" }" start_nats
NATS_HOSTPORT="127.0.0.1:$NATS_PORT"
WURL="nats://$NUSER:$PASS@$NATS_HOSTPORT"
start_sim --keys="$KEY" --fault_429=0.1 --fault_529=0.15 --fault_500=0.1 --retry_after=1 \
    --latency_dist=uniform --latency_ms=20 --latency_max_ms=300 --log_level=debug --seed=11
export ANTHROPIC_API_KEY="$KEY"
# The CLI's credentials come from the environment unless a command says otherwise.
export AGENTQ_NATS_USER=$NUSER AGENTQ_NATS_PASSWORD="$PASS"

# cli NAME ARGS...: the CLI with its stdout and stderr kept as cli-NAME.log.
cli() { local n=$1; shift; "$AGENTQ" "$@" >> "$T/cli-$n.log" 2>&1; }
cli init init || fail "agentq init with user and password: $(cat "$T/cli-init.log")"
rc=0; AGENTQ_NATS_PASSWORD='' cli noauth stats || rc=$?
[ "$rc" -eq 3 ] || fail "the server does not ask for credentials (stats without them exited $rc)"

METRICS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
scrape() { curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" > "$T/metrics-$1.txt"; }
W_COMMON=(--log_level=debug --retry_base=50ms --retry_max=300ms --max_attempts=10
          --fallback_model=claude-haiku-4-5 --shutdown_grace=100ms)
"$WORKER" --print-config --nats_url="$WURL" --nats_token="$TOKEN" \
    > "$T/worker-print-config.log" 2>&1 || fail "worker --print-config"
# (a base_url with credentials is refused, by --print-config too: below)
grep -q '^api_key *= *<redacted>' "$T/worker-print-config.log" &&
    grep -q '^nats_token *= *<redacted>' "$T/worker-print-config.log" ||
    fail "--print-config does not redact: $(grep 'api_key\|token\|url' "$T/worker-print-config.log")"
AGENTQ_NATS_USER='' AGENTQ_NATS_PASSWORD='' WORKER_NAME=wa start_worker "${W_COMMON[@]}" --nats_url="$WURL" \
    --metrics_port="$METRICS_PORT" --metrics_bind=127.0.0.1 --concurrency=32
WA=$WORKER_PID

# Tasks that complete (some after retries, deferrals or a fallback), from two
# tenants; a model not allowed; bytes that do not decode.
jq -nc 'range(60) | {id: "ok-\(.)", type: (if . % 3 == 0 then "classify" else "summarize" end),
        tenant: "tenant-\(. % 2)", prompt: "prompt \(.)", max_tokens: 64,
        allow_fallback: (. % 3 != 0)}' > "$T/ok.jsonl"
cli submit submit --file "$T/ok.jsonl" --quiet || fail "submit: $(cat "$T/cli-submit.log")"
for i in 1 2; do
    cli submit submit --id="badmodel-$i" --type=it --tenant=acme --model=claude-nope --prompt=hi --quiet
done
printf '\xff\xfe\x00garbage' > "$T/garbage.bin"
"$RAW_PUBLISH" --url "$WURL" --subject agentq.tasks.it --msg-id garbage-1 --file "$T/garbage.bin" \
    > "$T/cli-raw.log" 2>&1 || fail "raw publish with credentials in the URL: $(cat "$T/cli-raw.log")"
wait_until 20 curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" || fail "no /metrics"
scrape 1
mapfile -t ok_ids < <(jq -r .id "$T/ok.jsonl")
cli wait wait --timeout=40s "${ok_ids[@]}" || fail "the first tasks did not complete: $(tail -5 "$T/cli-wait.log")"
wait_until 15 stat_is dead_letters 3 || fail "dead letters: $(stat_of dead_letters), want 3"
scrape 2

# SIGTERM with calls in flight (grace 100 ms: some are cut short and handed
# back), then a second worker given the key and NATS credentials as flags.
jq -nc 'range(60) | {id: "rs-\(.)", type: "extract", tenant: "tenant-\(. % 3)",
        prompt: "restart \(.)", max_tokens: 64}' > "$T/rs.jsonl"
cli submit submit --file "$T/rs.jsonl" --quiet || fail "submit: $(cat "$T/cli-submit.log")"
sleep 0.5
kill -TERM "$WA"; wait "$WA" || fail "worker wa did not exit 0 on SIGTERM"
forget_pid "$WA"
AGENTQ_NATS_USER='' AGENTQ_NATS_PASSWORD='' ANTHROPIC_API_KEY='' WORKER_NAME=wb start_worker \
    "${W_COMMON[@]}" --api_key="$KEY" --nats_url="nats://$NATS_HOSTPORT" --nats_user=$NUSER \
    --nats_password="$PASS"
WB=$WORKER_PID
mapfile -t rs_ids < <(jq -r .id "$T/rs.jsonl")
cli wait wait --timeout=40s "${rs_ids[@]}" || fail "the tasks after the restart did not complete"
kill -TERM "$WB"; wait "$WB" || fail "worker wb did not exit 0"
forget_pid "$WB"

# A wrong API key: the simulator answers 401 and the tasks are dead-lettered.
AGENTQ_NATS_USER='' AGENTQ_NATS_PASSWORD='' WORKER_NAME=wc start_worker "${W_COMMON[@]}" --api_key="$WRONG_KEY" --nats_url="$WURL"
WC=$WORKER_PID
cli submit submit --id=badkey-1 --type=it --tenant=acme --prompt=hi --quiet
rc=0; cli wait wait --timeout=20s badkey-1 || rc=$?
[ "$rc" -eq 1 ] || fail "a task called with a wrong API key: agentq wait exited $rc, want 1 (failed)"
kill -TERM "$WC"; wait "$WC" || fail "worker wc did not exit 0"
forget_pid "$WC"

# Starts that fail on credentials: exit 3, an authorization error, no password.
bad_start() {
    local name=$1 rc=0; shift
    "$WORKER" --worker_name="$name" "$@" > "$T/worker-$name.log" 2>&1 || rc=$?
    [ "$rc" -eq 3 ] || fail "worker $name exited $rc, want 3: $(cat "$T/worker-$name.log")"
    grep -qi "authenticat\|authoriz" "$T/worker-$name.log" || fail "worker $name: no authentication error: $(cat "$T/worker-$name.log")"
}
AGENTQ_NATS_USER='' AGENTQ_NATS_PASSWORD='' bad_start badurl --nats_url="nats://$NUSER:$WRONG_PASS@$NATS_HOSTPORT"
AGENTQ_NATS_USER='' AGENTQ_NATS_PASSWORD='' bad_start badflag --nats_url="nats://$NATS_HOSTPORT" \
    --nats_user=$NUSER --nats_password="$WRONG_PASS"
# Credentials in base_url are refused (sent on every call to whoever serves
# it): a usage error, exit 2, before the log starts (so plain text).
rc=0; "$WORKER" --worker_name=badbase --base_url="http://proxyuser:$PROXY_PASS@${SIM_URL#http://}" \
    > "$T/usage-badbase.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -qF "base_url (from command line): 'http://***@" "$T/usage-badbase.log" ||
    fail "a base_url with credentials: exit $rc, $(cat "$T/usage-badbase.log")"
rc=0; "$WORKER" --print-config --base_url="http://u:$PROXY_PASS@proxy:8080" \
    > "$T/usage-print-badbase.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -qF "'http://***@proxy:8080'" "$T/usage-print-badbase.log" ||
    fail "--print-config with a base_url with credentials: exit $rc, $(cat "$T/usage-print-badbase.log")"
rc=0; AGENTQ_NATS_PASSWORD="$WRONG_PASS" cli badpass stats || rc=$?
[ "$rc" -eq 3 ] || fail "agentq stats with a wrong password exited $rc, want 3"

# The CLI's reading commands, credentials from a config file and the URL too.
printf 'nats_url = nats://%s\nnats_user = %s\nnats_password = %s\n' \
    "$NATS_HOSTPORT" "$NUSER" "$PASS" > "$T/cli.conf"
# (the environment outranks a config file: these two must be unset, not empty)
env -u AGENTQ_NATS_USER -u AGENTQ_NATS_PASSWORD "$AGENTQ" get --config "$T/cli.conf" \
    ok-0 rs-0 >> "$T/cli-get.log" 2>&1 ||
    fail "agentq get with a config file: $(cat "$T/cli-get.log")"
cli stats stats --json --nats_url="$WURL" || fail "stats: $(cat "$T/cli-stats.log")"
cli stats stats
cli print-config stats --print-config --nats_url="$WURL" --nats_token="$TOKEN"
cli dlq dlq ls || fail "dlq ls: $(cat "$T/cli-dlq.log")"
cli dlq dlq ls --json
cli dlq dlq show --id badmodel-1 || fail "dlq show: $(cat "$T/cli-dlq.log")"
cli status status --wait=1s || true # no worker runs now: the queue figures only

# Token authentication: the same server and store with a token instead.
sed -i "s#^authorization.*#authorization { token: \"$TOKEN\" }#" "$T/nats.conf"
bounce_nats TERM 0
export AGENTQ_NATS_USER='' AGENTQ_NATS_PASSWORD='' AGENTQ_NATS_TOKEN="$TOKEN"
WORKER_NAME=wd start_worker "${W_COMMON[@]}"
WD=$WORKER_PID
for i in 1 2 3; do cli submit submit --id="tok-$i" --type=classify --tenant=acme --prompt="t $i" --quiet; done
cli wait wait --timeout=20s tok-1 tok-2 tok-3 || fail "tasks with token authentication did not complete"
AGENTQ_NATS_TOKEN='' bad_start badtoken --nats_url="nats://$NATS_HOSTPORT" --nats_token="$WRONG_TOKEN"
rc=0; AGENTQ_NATS_TOKEN="$WRONG_TOKEN" cli badtoken stats || rc=$?
[ "$rc" -eq 3 ] || fail "agentq stats with a wrong token exited $rc, want 3"
kill -TERM "$WD"; wait "$WD" || fail "worker wd did not exit 0"
forget_pid "$WD"
kill -TERM "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true
forget_pid "$SIM_PID"

# ---- the checks
# The run did what it should have: failures of each kind were logged.
W_LOGS=("$T"/worker-w[a-d].log)
cat "${W_LOGS[@]}" > "$T/all-workers.txt"
for want in '"task completed"' '"task will be retried"' '"task dead-lettered"' 'fallback model' \
            'shutting down' '"worker stopped"' 'model_not_allowed' 'undecodable_task' 'http_401' 'authentication'; do
    grep -q -- "$want" "$T/all-workers.txt" || fail "no worker logged $want: the run did not cover it"
done
rm "$T/all-workers.txt"

bad=$(for f in "$T"/worker-w[a-d].log; do bad_lines "$f"; done)
[ -z "$bad" ] || fail "worker log lines that are not JSON or lack a task's fields:
$(head -c 4000 <<< "$bad")"
bad=$(bad_lines "$T/sim.log")
[ -z "$bad" ] || fail "simulator log lines that are not JSON: $(head -c 2000 <<< "$bad")"
# The failed starts log JSON too.
for f in "$T"/worker-bad*.log; do
    bad=$(bad_lines "$f")
    [ -z "$bad" ] || fail "$f: $bad"
done

scanned=()
for f in "$T"/*.log "$T"/*.txt "$T"/*.jsonl; do
    case "${f##*/}" in nats.log | patterns.txt) continue ;; esac
    [ -s "$f" ] && scanned+=("$f")
done
found=$(leaks "${scanned[@]}")
[ -z "$found" ] || fail "credentials in the output:
$(head -c 4000 <<< "$found")"
lines=$(cat "${scanned[@]}" | wc -l)
[ "${#scanned[@]}" -ge 20 ] && [ "$lines" -ge 500 ] ||
    fail "only ${#scanned[@]} files, $lines lines scanned: the run did not log enough to be a test"
echo "log_redaction: ${#scanned[@]} files, $lines lines scanned (workers, simulator, CLI, /metrics):" \
     "no credentials; $(cat "${W_LOGS[@]}" | wc -l) worker lines are JSON with every task's fields"
