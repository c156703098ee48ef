#!/usr/bin/env bash
# `agentq dlq`: list, show, replay and purge dead letters made by a real worker.
source "$(dirname "$0")/lib.sh"

# A core-NATS publish of raw bytes (no client library needed): the task stream
# stores it like any other, and the worker dead-letters it as undecodable.
raw_publish() {
    local subject=$1 payload=$2 line
    exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT"
    read -r -t 5 line <&3 || fail "no INFO from nats-server"
    printf 'CONNECT {"verbose":false,"pedantic":false}\r\nPUB %s %d\r\n%s\r\nPING\r\n' \
        "$subject" "${#payload}" "$payload" >&3
    read -r -t 5 line <&3 || fail "no PONG from nats-server"
    exec 3<&- 3>&-
    case "$line" in PONG*) ;; *) fail "raw publish: $line" ;; esac
}

# expect_rc WANT CMD...: run CMD (stdout to $T/out, stderr to $T/err), check its exit code.
expect_rc() {
    local want=$1 rc=0; shift
    "$@" > "$T/out" 2> "$T/err" || rc=$?
    [ "$rc" -eq "$want" ] || fail "$* exited $rc, want $want; stdout: $(head -c 2000 "$T/out"); stderr: $(cat "$T/err")"
}
lines() { grep -c . "$1" || true; }
dlq_count() { stat_of dead_letters; }

export LC_ALL=C
start_nats
start_sim
agentq init > /dev/null

# --- usage errors need no server state
expect_rc 0 agentq dlq --help
grep -q "replay" "$T/out" || fail "dlq --help does not list replay"
for sub in ls show replay purge; do
    expect_rc 0 agentq dlq "$sub" --help
    grep -q "scan_max" "$T/out" || fail "dlq $sub --help lists no options"
done
expect_rc 2 agentq dlq
expect_rc 2 agentq dlq frobnicate
expect_rc 2 agentq dlq ls --type 'a.b'
expect_rc 2 agentq dlq ls extra-arg
expect_rc 2 agentq dlq replay
expect_rc 2 agentq dlq replay 1 --all
expect_rc 2 agentq dlq replay 1 --type it
expect_rc 2 agentq dlq show
expect_rc 0 agentq dlq ls
grep -q "no dead letters" "$T/out" || fail "empty ls: $(cat "$T/out")"
expect_rc 3 agentq dlq ls --dlq_stream=NO_SUCH_STREAM
grep -q "not found" "$T/err" || fail "missing stream: $(cat "$T/err")"

# --- dead letters of three types and four classes, on the first delivery:
# model_not_allowed (type it), prompt_too_large (type big), and under _invalid
# undecodable_task (garbage bytes) and invalid_task (a Task whose type is not valid).
start_worker --allowed_models=claude-haiku-4-5 --default_model=claude-haiku-4-5 \
    --max_prompt_bytes=64
W1=$WORKER_PID
for id in dl-m1 dl-m2 777; do
    agentq submit --id="$id" --type=it --model=claude-sonnet-4-5 --prompt="hello $id" --quiet
done
agentq submit --id=dl-big --type=big --prompt="$(printf 'x%.0s' $(seq 200))" --quiet
raw_publish agentq.tasks.junk "not a protobuf task"
# agentq.v1.Task{id: "dl-inv", type: "bad type", prompt: "hi"}, encoded by hand.
raw_publish agentq.tasks.junk $'\x0a\x06dl-inv\x12\x08bad type\x32\x02hi'
rc=0; agentq wait --timeout=20s dl-m1 dl-m2 777 dl-big dl-inv > "$T/failed.jsonl" || rc=$?
[ "$rc" -eq 1 ] || fail "wait should exit 1 (tasks failed), got $rc"
check "$T/failed.jsonl" dl-m1 '.status == "STATUS_FAILED" and .error.class == "model_not_allowed"' \
    || fail "dl-m1: $(cat "$T/failed.jsonl")"
check "$T/failed.jsonl" dl-big '.error.class == "prompt_too_large"' || fail "dl-big: $(cat "$T/failed.jsonl")"
check "$T/failed.jsonl" dl-inv '.error.class == "invalid_task"' || fail "dl-inv: $(cat "$T/failed.jsonl")"
wait_until 10 stat_is dead_letters 6 || fail "dead letters: $(dlq_count), want 6"
wait_until 10 stat_is tasks_in_stream 0 || fail "task stream not empty"

# --- ls
expect_rc 0 agentq dlq ls
[ "$(lines "$T/out")" -eq 7 ] || fail "ls: want a header and 6 rows: $(cat "$T/out")"
head -1 "$T/out" | grep -q "^SEQ .*FAILED AT.*TYPE.*CLASS.*TASK ID.*ERROR" || fail "ls header: $(head -1 "$T/out")"
grep -Eq '^[0-9]+ +20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +big +prompt_too_large +[0-9]+ +dl-big ' "$T/out" \
    || fail "ls row for dl-big: $(cat "$T/out")"
awk 'length > 120 { exit 1 }' "$T/out" || fail "ls rows are not cut to 120 columns: $(cat "$T/out")"

expect_rc 0 agentq dlq ls --json
cp "$T/out" "$T/all.jsonl"
[ "$(lines "$T/all.jsonl")" -eq 6 ] || fail "ls --json: $(cat "$T/all.jsonl")"
jq -e -s 'all(.[]; (.seq | type) == "number" and (.headers | has("Agentq-Error-Class") and
          has("Agentq-Error") and has("Agentq-Attempts") and has("Agentq-Stream-Seq") and
          has("Agentq-Failed-At") and has("Agentq-Worker") and has("Nats-Msg-Id"))
          and (.failed_at | test("Z$")))' "$T/all.jsonl" > /dev/null \
    || fail "ls --json lacks headers: $(cat "$T/all.jsonl")"
jq -e -s 'map(.seq) == (map(.seq) | sort)' "$T/all.jsonl" > /dev/null || fail "ls not oldest first"
seq_of() { jq -r --arg id "$1" 'select(.headers["Agentq-Task-Id"] == $id) | .seq' "$T/all.jsonl"; }
SEQ_BIG=$(seq_of dl-big)
SEQ_M1=$(seq_of dl-m1)
SEQ_JUNK=$(jq -r 'select(.headers["Agentq-Error-Class"] == "undecodable_task") | .seq' "$T/all.jsonl")
[ -n "$SEQ_BIG" ] && [ -n "$SEQ_M1" ] && [ -n "$SEQ_JUNK" ] || fail "sequences not found: $(cat "$T/all.jsonl")"

expect_rc 0 agentq dlq ls --type it --json
[ "$(lines "$T/out")" -eq 3 ] || fail "ls --type it: $(cat "$T/out")"
jq -e -s 'all(.[]; .type == "it" and .subject == "agentq.dlq.it" and
          .headers["Agentq-Error-Class"] == "model_not_allowed")' "$T/out" > /dev/null \
    || fail "ls --type it: $(cat "$T/out")"
expect_rc 0 agentq dlq ls --class prompt_too_large --json
jq -e -s 'length == 1 and .[0].headers["Agentq-Task-Id"] == "dl-big" and .[0].type == "big"' \
    "$T/out" > /dev/null || fail "ls --class prompt_too_large: $(cat "$T/out")"
expect_rc 0 agentq dlq ls --type _invalid --json
jq -e -s 'length == 2 and all(.[]; .subject == "agentq.dlq._invalid")
          and (map(.headers["Agentq-Error-Class"]) | sort) == ["invalid_task", "undecodable_task"]
          and (map(select(.headers["Agentq-Error-Class"] == "undecodable_task"))[0].headers
               | has("Agentq-Task-Id") | not)' "$T/out" > /dev/null \
    || fail "ls --type _invalid: $(cat "$T/out")"
expect_rc 0 agentq dlq ls --type it --class prompt_too_large --json
[ "$(lines "$T/out")" -eq 0 ] || fail "ls --type it --class prompt_too_large: $(cat "$T/out")"
expect_rc 0 agentq dlq ls --type nosuch
grep -q "no dead letters match" "$T/out" || fail "ls --type nosuch: $(cat "$T/out")"
expect_rc 0 agentq dlq ls --since 1h --json
[ "$(lines "$T/out")" -eq 6 ] || fail "ls --since 1h: $(cat "$T/out")"
sleep 0.2
expect_rc 0 agentq dlq ls --since 100ms --json
[ "$(lines "$T/out")" -eq 0 ] || fail "ls --since 100ms: $(cat "$T/out")"
expect_rc 0 agentq dlq ls --limit 2 --json
[ "$(lines "$T/out")" -eq 2 ] || fail "ls --limit 2: $(cat "$T/out")"
grep -q "more match" "$T/err" || fail "ls --limit 2 does not say more match: $(cat "$T/err")"
expect_rc 0 agentq dlq ls --scan_max 3 --json
[ "$(lines "$T/out")" -eq 3 ] || fail "ls --scan_max 3: $(cat "$T/out")"
grep -q "scan_max" "$T/err" || fail "reaching --scan_max is not reported: $(cat "$T/err")"

# --- show
expect_rc 0 agentq dlq show "$SEQ_BIG"
jq -e --argjson s "$SEQ_BIG" '.seq == $s and .subject == "agentq.dlq.big" and .task.id == "dl-big"
       and .task.type == "big" and (.task.prompt | length) == 200
       and .headers["Agentq-Error-Class"] == "prompt_too_large" and (.headers["Agentq-Attempts"] | test("^[0-9]+$"))
       and (.undecodable | not)' "$T/out" > /dev/null || fail "show $SEQ_BIG: $(cat "$T/out")"
expect_rc 0 agentq dlq show dl-m1
jq -e --argjson s "$SEQ_M1" '.seq == $s and .task.id == "dl-m1" and .task.model == "claude-sonnet-4-5"
       and .headers["Agentq-Task-Id"] == "dl-m1"' "$T/out" > /dev/null || fail "show dl-m1: $(cat "$T/out")"
expect_rc 0 agentq dlq show --id 777
jq -e '.task.id == "777"' "$T/out" > /dev/null || fail "show --id 777: $(cat "$T/out")"
expect_rc 4 agentq dlq show 777          # all digits: a sequence, and there is no 777th entry
grep -q "no dead letter with sequence 777" "$T/err" || fail "show 777: $(cat "$T/err")"
expect_rc 4 agentq dlq show --id no-such-task
grep -q "no dead letter for task id no-such-task" "$T/err" || fail "show --id: $(cat "$T/err")"
expect_rc 0 agentq dlq show "$SEQ_JUNK"
jq -e '.undecodable == true and (.task | not) and .type == "_invalid"
       and (.payload_base64 | @base64d) == "not a protobuf task"' "$T/out" > /dev/null \
    || fail "show undecodable: $(cat "$T/out")"

# --- replay: refused for what cannot work
expect_rc 1 agentq dlq replay "$SEQ_JUNK"
grep -q "cannot be replayed" "$T/err" || fail "replay of junk: $(cat "$T/err")"
grep -q "replayed 0, skipped 1" "$T/out" || fail "replay summary: $(cat "$T/out")"
expect_rc 1 agentq dlq replay dl-inv   # decodes, but its type is not valid
grep -q "no valid type" "$T/err" || fail "replay of dl-inv: $(cat "$T/err")"
expect_rc 1 agentq dlq replay --all --type _invalid
grep -q "replayed 0, skipped 2" "$T/out" || fail "replay --all --type _invalid: $(cat "$T/out")"
expect_rc 4 agentq dlq replay 99999
[ "$(dlq_count)" -eq 6 ] || fail "refused replays changed the DLQ: $(dlq_count)"

# --- replay one entry, with no worker running: the stale FAILED result goes
# first, the task is queued again, the entry leaves the DLQ.
kill -TERM "$W1"; wait "$W1" || fail "worker did not exit 0"
expect_rc 0 agentq dlq replay dl-m1
grep -q "replayed 1, skipped 0" "$T/out" || fail "replay dl-m1: $(cat "$T/out")"
expect_rc 4 agentq get dl-m1
[ "$(stat_of tasks_in_stream)" -eq 1 ] || fail "replayed task not queued: $(stat_of tasks_in_stream)"
[ "$(dlq_count)" -eq 5 ] || fail "DLQ still holds the replayed entry: $(dlq_count)"
expect_rc 4 agentq dlq show --id dl-m1
expect_rc 4 agentq dlq show "$SEQ_M1"

# A worker that allows the model finishes it.
start_worker
expect_rc 0 agentq wait --timeout=20s dl-m1
jq -e '.id == "dl-m1" and .status == "STATUS_COMPLETED"' "$T/out" > /dev/null \
    || fail "replayed dl-m1: $(cat "$T/out")"

# --- replay --all by class: the other two model_not_allowed entries.
expect_rc 0 agentq dlq replay --all --class model_not_allowed
grep -q "replayed 2, skipped 0" "$T/out" || fail "replay --all: $(cat "$T/out")"
expect_rc 0 agentq wait --timeout=20s dl-m2 777
[ "$(jq -s 'map(select(.status == "STATUS_COMPLETED")) | length' "$T/out")" -eq 2 ] \
    || fail "replayed dl-m2 777: $(cat "$T/out")"
[ "$(dlq_count)" -eq 3 ] || fail "DLQ after replay --all: $(dlq_count)"

# --- purge
expect_rc 2 agentq dlq purge < /dev/null
grep -q -- "--yes" "$T/err" || fail "purge refusal does not mention --yes: $(cat "$T/err")"
[ "$(dlq_count)" -eq 3 ] || fail "a refused purge removed entries"
expect_rc 0 agentq dlq purge --type nosuch --yes
grep -q "no dead letters to purge" "$T/out" || fail "purge nothing: $(cat "$T/out")"
expect_rc 0 agentq dlq purge --type big --yes < /dev/null
grep -q "purged 1 dead letters" "$T/out" || fail "purge --type big: $(cat "$T/out")"
[ "$(dlq_count)" -eq 2 ] || fail "DLQ after purge --type big: $(dlq_count)"
expect_rc 0 agentq dlq purge --class model_not_allowed --yes
grep -q "no dead letters to purge" "$T/out" || fail "purge of a class with none: $(cat "$T/out")"
expect_rc 0 agentq dlq purge --class undecodable_task --yes < /dev/null
grep -q "purged 1 dead letters" "$T/out" || fail "purge --class: $(cat "$T/out")"
[ "$(dlq_count)" -eq 1 ] || fail "DLQ after purge --class: $(dlq_count)"
expect_rc 0 agentq dlq purge --yes
grep -q "purged 1 dead letters" "$T/out" || fail "purge everything: $(cat "$T/out")"

[ "$(dlq_count)" -eq 0 ] || fail "DLQ not empty at the end: $(dlq_count)"
expect_rc 0 agentq dlq ls --json
[ "$(lines "$T/out")" -eq 0 ] || fail "ls of an empty DLQ: $(cat "$T/out")"

echo "dlq_cli: ls (filters, json, limit, scan cap), show (seq, id, undecodable), replay (one, --all, refusals), purge (refusal, --type, --class) all behave"
