#!/usr/bin/env bash
# `agentq status`: the fleet's snapshots (published on agentq.status.<worker>
# through the real reporter, internal/fleet) combined with the queue as the
# server sees it. Part 1 uses fake workers with known figures
# (tests/support/fleet_publish) on a real nats-server; part 2 checks a real
# agentq-worker (AQ_STATUS_REAL_WORKER=0 skips it).
source "$(dirname "$0")/lib.sh"

FLEET_PUBLISH="$AQ_BIN/tests/support/fleet_publish"
AQ_STATUS_REAL_WORKER=${AQ_STATUS_REAL_WORKER:-1}

# expect_rc WANT CMD...: run CMD (stdout to $T/out, stderr to $T/err), check its exit code.
expect_rc() {
    local want=$1 rc=0; shift
    "$@" > "$T/out" 2> "$T/err" || rc=$?
    [ "$rc" -eq "$want" ] || fail "$* exited $rc, want $want; stdout: $(head -c 2000 "$T/out"); stderr: $(cat "$T/err")"
}
# jqt EXPR: EXPR holds for the JSON in $T/out.
jqt() { jq -e "$1" "$T/out" > /dev/null || fail "status JSON: want $1; got $(cat "$T/out")"; }

# A fake worker publishing every second; its pid in FAKE_PID.
fake_worker() {
    local name=$1 figures=$2
    "$FLEET_PUBLISH" --worker "$name" --interval 1000 --figures "$figures" \
        >> "$T/fake-$name.log" 2>&1 &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
}

export LC_ALL=C
start_nats
agentq init > /dev/null

# --- usage and connection errors
expect_rc 0 agentq status --help
grep -q "status_subject" "$T/out" || fail "status --help lists no status_subject"
expect_rc 2 agentq status extra-arg
expect_rc 2 agentq status --status_subject 'agentq.*'
expect_rc 2 agentq status --status_subject 'agentq..status'
expect_rc 2 agentq status --watch 10ms
expect_rc 2 agentq status --status_interval 10ms
expect_rc 3 agentq status --task_stream NO_SUCH_STREAM --wait 1s
expect_rc 3 agentq status --nats_url nats://127.0.0.1:1 --nats_timeout 500ms --wait 1s

# --- a queue with known numbers: 4 tasks waiting, 1 dead letter
for i in 1 2 3 4; do agentq submit --id "st-$i" --type it --prompt "p $i" --quiet; done
raw_publish --subject agentq.dlq.it --hex 00 > /dev/null

# --- no workers: the queue part, "no workers reporting", exit 0, quickly
expect_rc 0 agentq status --wait 1s
grep -q "^queue *pending 4 .*dead letters 1" "$T/out" || fail "queue line: $(cat "$T/out")"
grep -q "no workers reporting" "$T/out" || fail "no 'no workers reporting': $(cat "$T/out")"
expect_rc 0 agentq status --wait 1s --json
jqt '.queue.pending == 4 and .queue.dead_letters == 1 and .queue.tasks_in_stream == 4'
jqt '.fleet.workers == 0 and .workers == [] and .fleet.p50_ms == null and .fleet.p99_ms == null'
jqt '.queue.pending_trend_per_min == null and .stream == "AGENTQ_TASKS" and .consumer == "agentq-workers"'
# The URL is shown without credentials.
expect_rc 0 agentq status --wait 200ms --json --nats_url "nats://someone:s3cret@${AGENTQ_NATS_URL#nats://}"
grep -q "s3cret" "$T/out" && fail "the password is shown: $(cat "$T/out")"

# --- two fake workers with known figures
F1='{"v":1,"worker":"x","sent_ms":1,"concurrency":8,"owned":3,"llm_in_flight":2,
 "counters":{"completed":100,"failed":2,"dead_lettered":1,"cache_hits":30,"cache_misses":70,"llm_calls":110,"responses_429":10},
 "window":{"completed":60,"completed_per_s":1.0,"p50_ms":500,"p99_ms":2000,"llm_calls":100,"responses_429":10,"share_429":0.1},
 "queue":{"probed_ms":1000,"pending":50,"ack_pending":3,"dlq_messages":0,"pending_60s_ago":80},
 "cost":{"day":"2030-01-01","today_micro_usd":1500000,"budgets":[{"tenant":"acme","remaining_micro_usd":9000000}]}}'
F2='{"v":1,"worker":"x","sent_ms":1,"concurrency":16,"owned":5,"llm_in_flight":4,
 "counters":{"completed":300,"failed":1,"cache_hits":10,"cache_misses":90,"llm_calls":320},
 "window":{"completed":180,"completed_per_s":3.0,"p50_ms":700,"p99_ms":3000,"llm_calls":300,"responses_429":0,"share_429":0},
 "queue":{"probed_ms":2000,"pending":40,"ack_pending":5,"dlq_messages":0,"pending_60s_ago":100},
 "cost":{"day":"2030-01-01","today_micro_usd":2500000,"budgets":[{"tenant":"acme","remaining_micro_usd":8000000},{"tenant":"beta","remaining_micro_usd":-5}]}}'
fake_worker fake-one "$F1"; P1=$FAKE_PID
fake_worker "fake two.b" "$F2"; P2=$FAKE_PID

start=$SECONDS
expect_rc 0 agentq status --json --status_interval 1s
[ $((SECONDS - start)) -le 4 ] || fail "status took $((SECONDS - start))s with a 1s interval"
jqt '.fleet.workers == 2 and (.workers | map(.worker)) == ["fake two.b", "fake-one"]'
jqt '.fleet.in_flight == 6 and .fleet.owned == 8 and .fleet.concurrency == 24'
jqt '.fleet.completed_per_s == 4 and .fleet.p50_ms == 650 and .fleet.p99_ms == 3000'
jqt '.fleet.share_429 == 0.025 and .fleet.cache_hit_rate == 0.2'
jqt '.fleet.cost_day == "2030-01-01" and .fleet.cost_today_micro_usd == 4000000'
jqt '.fleet.budgets == [{"tenant":"acme","remaining_micro_usd":8000000},{"tenant":"beta","remaining_micro_usd":-5}]'
jqt '.fleet.counters.completed == 400 and .fleet.counters.failed == 3 and .fleet.counters.dead_lettered == 1'
jqt '.queue.pending_trend_per_min == -60'
# The queue part is the server's, not the workers' (they claim 40-50 pending).
jqt '.queue.pending == 4 and .queue.dead_letters == 1 and .queue.ack_pending == 0'
agentq stats --json > "$T/stats.json"
jq -e --slurpfile s "$T/stats.json" '.queue | del(.pending_trend_per_min) == $s[0]' "$T/out" > /dev/null \
    || fail "status queue differs from stats: $(jq -c .queue "$T/out") vs $(cat "$T/stats.json")"
jqt '[.workers[] | .interval_ms == 1000 and .pid > 0 and .version != "" and .age_ms >= 0 and .stopping == false] | all'
jqt '(.workers[] | select(.worker == "fake-one") | .window.p99_ms) == 2000'

# The screen.
expect_rc 0 agentq status --status_interval 1s
grep -q "^agentq status  nats://127.0.0.1:$NATS_PORT  stream AGENTQ_TASKS  consumer agentq-workers" "$T/out" \
    || fail "header: $(head -1 "$T/out")"
grep -q "^queue *pending 4 (-60/min)  ack-pending 0  redelivered 0  dead letters 1" "$T/out" || fail "queue: $(cat "$T/out")"
grep -q "^fleet *2 workers  in flight 6 / owned 8 / concurrency 24" "$T/out" || fail "fleet: $(cat "$T/out")"
grep -q "throughput 4.00 tasks/s  p50 650 ms  p99 3000 ms" "$T/out" || fail "latency: $(cat "$T/out")"
grep -q "cost today \$4.0000 (2030-01-01 UTC)  budget left: acme \$8.0000, beta -\$0.000005" "$T/out" \
    || fail "cost: $(cat "$T/out")"
grep -q "^WORKER .*IN FLIGHT" "$T/out" || fail "no table: $(cat "$T/out")"
grep -Eq "^fake-one +$P1 +[0-9]+s +2 +3 +8 +1.00 +500 +2000 +10.0% +30.0% +100 +2 +\\\$1.5000" "$T/out" \
    || fail "row of fake-one: $(cat "$T/out")"
[ "$(grep -c "^fake" "$T/out")" -eq 2 ] || fail "want 2 worker rows: $(cat "$T/out")"

# A snapshot of another version (or garbage) is counted and ignored.
"$AGENTQ" status --json --status_interval 1s --wait 2s > "$T/out" 2> "$T/err" &
SP=$!
sleep 0.5
"$FLEET_PUBLISH" --worker future --raw '{"v":2,"worker":"future","sent_ms":1}'
"$FLEET_PUBLISH" --worker junk --raw 'not json at all'
wait "$SP" || fail "status with junk snapshots failed: $(cat "$T/err")"
jqt '.ignored_snapshots == 2 and .fleet.workers == 2'

# --- --watch: a stopping worker leaves at once, a killed one after 3 intervals
"$AGENTQ" status --json --status_interval 1s --watch 1s > "$T/watch.jsonl" 2> "$T/watch.err" &
WP=$!
PIDS+=("$WP")
wait_until 10 bash -c "[ \$(grep -c . '$T/watch.jsonl') -ge 2 ]" || fail "watch printed: $(cat "$T/watch.jsonl")"
kill -TERM "$P1"; wait "$P1" || fail "fake-one did not stop cleanly: $(cat "$T/fake-fake-one.log")"
forget_pid "$P1"
n=$(grep -c . "$T/watch.jsonl")
# The next refresh (at most ~1s later, some slack for a busy box) has one worker.
wait_until 4 bash -c "[ \$(grep -c . '$T/watch.jsonl') -gt $n ]" || fail "watch stopped refreshing"
wait_until 4 bash -c "tail -1 '$T/watch.jsonl' | jq -e '.fleet.workers == 1' > /dev/null" \
    || fail "stopping worker still listed: $(tail -2 "$T/watch.jsonl")"
tail -1 "$T/watch.jsonl" | jq -e '.workers[0].worker == "fake two.b"' > /dev/null || fail "wrong worker left"
kill -KILL "$P2"; wait "$P2" 2>/dev/null || true
forget_pid "$P2"
killed_at=$SECONDS
wait_until 10 bash -c "tail -1 '$T/watch.jsonl' | jq -e '.fleet.workers == 0' > /dev/null" \
    || fail "killed worker never dropped: $(tail -1 "$T/watch.jsonl")"
[ $((SECONDS - killed_at)) -ge 2 ] || fail "killed worker dropped before 3 intervals"
kill -INT "$WP"; rc=0; wait "$WP" || rc=$?
forget_pid "$WP"
[ "$rc" -eq 0 ] || fail "watch exited $rc on Ctrl-C: $(cat "$T/watch.err")"
jq -e . "$T/watch.jsonl" > /dev/null || fail "watch --json lines are not all JSON"
# Not a terminal: no ANSI escapes.
grep -q $'\033' "$T/watch.jsonl" && fail "escape codes in non-terminal output"

note "fake workers: ok"

# --- part 2: a real worker
if [ "$AQ_STATUS_REAL_WORKER" = 1 ]; then
    start_sim --latency 300ms
    WORKER_NAME=real-w1 start_worker --status_interval=1s --concurrency=4
    W1=$WORKER_PID
    make_tasks 40 rs | agentq submit --file - --quiet > /dev/null
    # During the run: the worker reports, with calls in flight.
    wait_until 20 bash -c "'$AGENTQ' status --json --status_interval 1s | jq -e '.fleet.workers == 1 and .fleet.in_flight > 0' > /dev/null" \
        || fail "no busy worker in status: $("$AGENTQ" status --json --status_interval 1s)"
    expect_rc 0 agentq status --json --status_interval 1s
    jqt '.workers[0].worker == "real-w1" and .workers[0].concurrency == 4 and .workers[0].interval_ms == 1000'
    jqt '.workers[0].version != "" and .workers[0].pid > 0'
    ids=$(for i in $(seq 0 39); do echo "rs-$i"; done)
    # shellcheck disable=SC2086
    agentq wait --timeout 60s $ids > /dev/null || fail "tasks did not complete"
    wait_until 10 bash -c "'$AGENTQ' status --json --status_interval 1s | jq -e '.fleet.counters.completed >= 40 and .fleet.completed_per_s > 0 and .fleet.p50_ms >= 300 and .fleet.p99_ms >= .fleet.p50_ms and .queue.pending == 0' > /dev/null" \
        || fail "completed figures: $("$AGENTQ" status --json --status_interval 1s)"
    # SIGTERM: the stopping snapshot takes it off the screen at once.
    "$AGENTQ" status --json --status_interval 1s --watch 1s > "$T/rw.jsonl" 2>&1 &
    WP=$!
    PIDS+=("$WP")
    wait_until 10 bash -c "tail -1 '$T/rw.jsonl' | jq -e '.fleet.workers == 1' > /dev/null" || fail "watch: $(cat "$T/rw.jsonl")"
    kill -TERM "$W1"; wait "$W1" || fail "worker exit code"
    forget_pid "$W1"
    wait_until 3 bash -c "tail -1 '$T/rw.jsonl' | jq -e '.fleet.workers == 0' > /dev/null" \
        || fail "stopped worker still listed: $(tail -1 "$T/rw.jsonl")"
    kill -INT "$WP"; wait "$WP" || true
    forget_pid "$WP"
    note "real worker: ok"
else
    note "real worker part skipped (AQ_STATUS_REAL_WORKER=0)"
fi
echo "PASS status"
