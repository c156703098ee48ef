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

# Every value is checked before any connection: with no NATS server to reach
# (a closed port), a bad value is exit 2 naming the option, never "cannot
# connect" (exit 3), and --print-config refuses it too (exit 2, not 0).
NONATS="nats://127.0.0.1:1"
bad_value() { # NAME EXPECTED-TEXT ARGS...: the worker and its --print-config refuse ARGS
    local name=$1 want=$2; shift 2
    expect_exit 2 "$T/bad-$name.out" env ANTHROPIC_API_KEY="$KEY" AGENTQ_NATS_URL="$NONATS" \
        "$WORKER" --nats_timeout=300ms "$@"
    grep -qF -- "$want" "$T/bad-$name.out" || fail "worker $*: $(cat "$T/bad-$name.out")"
    expect_exit 2 "$T/bad-$name-print.out" env ANTHROPIC_API_KEY="$KEY" AGENTQ_NATS_URL="$NONATS" \
        "$WORKER" --print-config "$@"
    grep -qF -- "$want" "$T/bad-$name-print.out" || fail "--print-config $*: $(cat "$T/bad-$name-print.out")"
}
bad_value base_url "base_url (from command line): 'https://api.anthropic.com/v1 x' is not an http(s) URL: it contains a space" \
    "--base_url=https://api.anthropic.com/v1 x"
bad_value base_url_creds "base_url (from command line): 'https://***@proxy' is not an http(s) URL: it must not hold credentials" \
    "--base_url=https://u:urlpw-456@proxy"
bad_value base_url_query "base_url (from command line): 'http://proxy:8080/?a=b' is not an http(s) URL: it must have no query" \
    "--base_url=http://proxy:8080/?a=b"
bad_value nats_url_empty "nats_url (from command line): not a list of NATS server URLs" --nats_url=
bad_value nats_url_garbage "'garbage://::::': the scheme must be nats:// or tls://" "--nats_url=garbage://::::"
bad_value nats_url_port "'nats://127.0.0.1:99999': Port number was not a decimal number between 0 and 65535" \
    "--nats_url=nats://127.0.0.1:4222,nats://127.0.0.1:99999"
bad_value nats_url_ws "'ws://127.0.0.1:8080': WebSocket URLs are not supported" --nats_url=ws://127.0.0.1:8080
bad_value nats_url_host "'nats://***@:4222': No host part in the URL" "--nats_url=nats://u:urlpw-789@:4222"
bad_value task_stream "task_stream (from command line): 'tasks.main' is not a JetStream name" --task_stream=tasks.main
bad_value consumer "consumer (from command line): 'my workers' is not a JetStream name" "--consumer=my workers"
bad_value results_bucket "results_bucket (from command line): 'results.v2' is not a bucket name" --results_bucket=results.v2
bad_value task_subjects "task_subjects (from command line): 'agentq.*' is not a subject prefix" "--task_subjects=agentq.*"
bad_value dlq_overlap "task_subjects 'agentq.tasks' and dlq_subjects 'agentq.tasks.dead' overlap" --dlq_subjects=agentq.tasks.dead
bad_value same_stream "task_stream and dlq_stream are the same stream 'Q'" --task_stream=Q --dlq_stream=Q
bad_value tls_pair "nats_tls_key is set but nats_tls_cert is not" --nats_tls_key=/etc/hostname
bad_value nats_password "nats_password is set but nats_user is not" --nats_password=natspw-123
bad_value log_level "log_level: 'verbose' is not debug, info, warn or error" --log_level=verbose
bad_value metrics_bind "metrics_bind: '0.0.0.0:9090' is not an IP address" "--metrics_bind=0.0.0.0:9090"
bad_value anthropic_version "anthropic_version: 'a b' is not a header value" "--anthropic_version=a b"
bad_value api_key "api_key: key 2 of 2 has a space" "--api_key=$KEY,sk-ant-x y"
bad_value allowed_models "allowed_models: 'claude haiku' is not a model id" "--allowed_models=claude haiku"
bad_value routes "routes" "--routes=cheap: nonsense -> claude-haiku-4-5"
bad_value prices "prices" "--prices=claude-haiku-4-5: in=cheap"
bad_value budgets "budgets" "--budgets=acme=lots"
bad_value status_overlap "status_subject 'agentq.dlq.status' overlaps" --status_subject=agentq.dlq.status
bad_value duration "retry_max (from command line): '5 minutes' is not a duration" "--retry_max=5 minutes"
bad_value typo "unknown option '--concurency' (did you mean '--concurrency'?)" --concurency=4
AGENTQ_CACHE_BUCKET="cache bucket" \
    bad_value cache_bucket "cache_bucket (from AGENTQ_CACHE_BUCKET): 'cache bucket' is not a bucket name"
# Files are checked at start, before connecting; not by --print-config (a
# config file may be checked where its paths do not exist).
expect_exit 2 "$T/creds.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER" --nats_url="$NONATS" \
    --nats_creds="$T/no-such.creds"
grep -qF "nats_creds: cannot read '$T/no-such.creds': No such file or directory" "$T/creds.out" || fail "$(cat "$T/creds.out")"
expect_exit 2 "$T/ca.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER" --nats_url="$NONATS" --ca_file="$T"
grep -qF "ca_file: '$T' is not a regular file" "$T/ca.out" || fail "$(cat "$T/ca.out")"
"$WORKER" --print-config --nats_creds="$T/no-such.creds" > /dev/null || fail "--print-config checks files"
# The CLI: the same checks, the same exit code, before connecting.
expect_exit 2 "$T/cli-url.out" "$AGENTQ" stats --nats_url="garbage://::::"
grep -qF "agentq stats: nats_url (from command line): not a list of NATS server URLs" "$T/cli-url.out" || fail "$(cat "$T/cli-url.out")"
expect_exit 2 "$T/cli-url-print.out" "$AGENTQ" stats --print-config --nats_url=
grep -qF "nats_url (from command line)" "$T/cli-url-print.out" || fail "$(cat "$T/cli-url-print.out")"
expect_exit 2 "$T/cli-bucket.out" "$AGENTQ" get --nats_url="$NONATS" --results_bucket=a/b some-id
grep -qF "results_bucket (from command line): 'a/b' is not a bucket name" "$T/cli-bucket.out" || fail "$(cat "$T/cli-bucket.out")"
expect_exit 2 "$T/cli-status.out" "$AGENTQ" status --nats_url="$NONATS" --status_subject='agentq.>'
grep -qF "status_subject (from command line): 'agentq.>' is not a subject prefix" "$T/cli-status.out" || fail "$(cat "$T/cli-status.out")"
expect_exit 2 "$T/cli-tls.out" "$AGENTQ" dlq ls --nats_url="$NONATS" --nats_tls_cert=/etc/hostname
grep -qF "nats_tls_cert is set but nats_tls_key is not" "$T/cli-tls.out" || fail "$(cat "$T/cli-tls.out")"
expect_exit 2 "$T/cli-creds.out" "$AGENTQ" init --nats_url="$NONATS" --nats_creds="$T/no-such.creds"
grep -qF "nats_creds: cannot read" "$T/cli-creds.out" || fail "$(cat "$T/cli-creds.out")"
# agentq submit's and agentq dev's own flags, before connecting too.
cli_bad() { # NAME EXPECTED-TEXT ARGS...
    local name=$1 want=$2; shift 2
    expect_exit 2 "$T/cli-$name.out" "$AGENTQ" "$@"
    grep -qF -- "$want" "$T/cli-$name.out" || fail "agentq $*: $(cat "$T/cli-$name.out")"
}
cli_bad submit-type "agentq submit: --type 'a.b' is not a task type" submit --nats_url="$NONATS" --type=a.b --prompt=x
cli_bad submit-cache "agentq submit: --cache 'sometimes' is not default, opt-in, bypass or refresh" \
    submit --nats_url="$NONATS" --cache=sometimes --prompt=x
cli_bad submit-file "agentq submit: cannot open $T/no-such.jsonl: No such file or directory" \
    submit --nats_url="$NONATS" --file="$T/no-such.jsonl"
cli_bad submit-id "agentq submit: id must be 1-128 characters" submit --nats_url="$NONATS" "--id=a b" --prompt=x
cli_bad dev-latency "agentq dev: sim_latency 'fixed:10ms' is not lognormal:MEDIAN:P99 or fixed:MS" \
    dev --nats_port=0 --sim_latency=fixed:10ms
# A NUL byte in a config file is named as such, not as a long line.
printf 'concurrency = 5\nworker_name = a\000b\n' > "$T/nul.conf"
expect_exit 2 "$T/nul.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER" --config "$T/nul.conf" --print-config
grep -qF "$T/nul.conf:2: line 2 contains a NUL byte" "$T/nul.out" || fail "$(cat "$T/nul.out")"

# One config file for the worker and the CLI: the CLI skips the worker's
# options (and its subcommands each other's); an option nobody has is still
# refused, with a hint.
printf '%s\n' "nats_url = $NONATS" "task_stream = SHARED_TASKS" "concurrency = 7" \
    "base_url = http://127.0.0.1:9" "status_subject = agentq.fleet" > "$T/shared.conf"
env ANTHROPIC_API_KEY="$KEY" "$WORKER" --config "$T/shared.conf" --print-config > "$T/shared-worker.out" ||
    fail "worker refuses the shared file"
grep -q "^concurrency = 7$" "$T/shared-worker.out" && grep -q "^task_stream = SHARED_TASKS$" "$T/shared-worker.out" ||
    fail "worker: $(cat "$T/shared-worker.out")"
for cmd in stats init status "dlq ls" get; do
    # shellcheck disable=SC2086
    "$AGENTQ" $cmd --config "$T/shared.conf" --print-config > "$T/shared-cli.out" 2>&1 ||
        fail "agentq $cmd refuses the shared file: $(cat "$T/shared-cli.out")"
    grep -q "^task_stream = SHARED_TASKS$" "$T/shared-cli.out" || fail "agentq $cmd: $(cat "$T/shared-cli.out")"
    ! grep -q "^concurrency" "$T/shared-cli.out" || fail "agentq $cmd took the worker's concurrency"
done
"$AGENTQ" status --config "$T/shared.conf" --print-config | grep -q "^status_subject = agentq.fleet$" ||
    fail "agentq status lost status_subject"
echo "timeout = 90s" >> "$T/shared.conf" # agentq get's; neither stats nor the worker has it
"$AGENTQ" stats --config "$T/shared.conf" --print-config > /dev/null || fail "agentq stats refuses get's timeout"
"$AGENTQ" get --config "$T/shared.conf" --print-config | grep -q "^timeout = 90000ms$" || fail "agentq get lost its timeout"
echo "concurrancy = 5" >> "$T/shared.conf"
expect_exit 2 "$T/shared-typo.out" "$AGENTQ" stats --config "$T/shared.conf" --print-config
grep -qF "unknown option 'concurrancy' (from $T/shared.conf:7; did you mean 'concurrency'?)" "$T/shared-typo.out" ||
    fail "$(cat "$T/shared-typo.out")"

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
grep -qF "status_subject (from AGENTQ_STATUS_SUBJECT): 'agentq.>' is not a subject prefix" "$T/status.out" || fail "$(cat "$T/status.out")"
echo "concurrency = 5" > "$T/bad.conf"; echo "no_such_option = 1" >> "$T/bad.conf"
expect_exit 2 "$T/file.out" env ANTHROPIC_API_KEY="$KEY" "$WORKER" --config "$T/bad.conf"
grep -q "unknown option 'no_such_option' (from $T/bad.conf:2)" "$T/file.out" || fail "$(cat "$T/file.out")"

# Secrets: not in --print-config, not in connection errors.
ANTHROPIC_API_KEY="$KEY" AGENTQ_NATS_USER=carol AGENTQ_NATS_PASSWORD=natspw-123 \
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
echo "startup_errors: missing objects named, bad values of every kind refused before connecting (exit 2, also by --print-config), a NUL byte named, one config file shared by the worker and the CLI, no secret in any output"
