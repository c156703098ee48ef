#!/usr/bin/env bash
# Bad input: every malformed, invalid or oversized task, and every malformed
# provider answer, gets a clear and specific outcome, and the worker neither
# crashes nor stalls.
#
# Each case publishes its bytes with raw_publish (past every check the CLI
# makes) and expects:
#   * exactly one dead letter whose Agentq-Stream-Seq is the task's stream
#     sequence, on agentq.dlq.<type> (agentq.dlq._invalid when the type is
#     unusable), carrying the original bytes, with the expected
#     Agentq-Error-Class, a specific Agentq-Error message and the other
#     Agentq-* headers;
#   * when the task id is valid: Agentq-Task-Id and a FAILED Result with the
#     same class; when it is not: neither (there is no key to store under);
#   * the worker still running.
# A 20 MB task via `agentq submit` is refused before it reaches the stream, and a
# 5 MB one published raw is refused by the stream's own max_msg_size.
# The provider cases (answers that are not JSON, truncated, over
# --max_response_bytes) are retryable: dead-lettered after --max_attempts calls.
# At the end the same worker completes a normal task.
#
# All cases run even when one fails; the failures are listed at the end.
source "$(dirname "$0")/lib.sh"

MAX_ATTEMPTS=3
FAILED=()
ok() { echo "ok   - $1"; }
bad() { echo "FAIL - $1" >&2; FAILED+=("$1"); }

start_nats
start_sim
agentq init > /dev/null
start_worker --max_prompt_bytes=1KiB --max_tokens_cap=4096 \
    --allowed_models=claude-haiku-4-5,claude-sonnet-4-5 --max_response_bytes=64KiB \
    --max_attempts=$MAX_ATTEMPTS --retry_base=50ms --retry_max=200ms --concurrency=16
W=$WORKER_PID

worker_alive() { kill -0 "$W" 2>/dev/null; }

dlq_entries_for_seq() { dlq_dump --payload | jq -c --arg s "$1" 'select(.headers["Agentq-Stream-Seq"] == $s)'; }
dlq_has_seq() { [ -n "$(dlq_entries_for_seq "$1")" ]; }

# expect_dead_letter NAME SEQ FILE CLASS ERROR_REGEX SUBJECT [ID [ATTEMPTS]]
# The checks described at the top, for the task published from FILE at SEQ.
expect_dead_letter() {
    local name=$1 seq=$2 file=$3 class=$4 re=$5 subject=$6 id=${7:-} attempts=${8:-}
    if ! wait_until 30 dlq_has_seq "$seq"; then
        bad "$name: no dead letter for stream seq $seq after 30 s (worker alive: $(worker_alive && echo yes || echo NO))"
        return
    fi
    local e n
    e=$(dlq_entries_for_seq "$seq")
    n=$(wc -l <<< "$e")
    [ "$n" -eq 1 ] || { bad "$name: $n dead letters for stream seq $seq"; return; }
    local got_class got_err
    got_class=$(jq -r '.headers["Agentq-Error-Class"] // ""' <<< "$e")
    got_err=$(jq -r '.headers["Agentq-Error"] // ""' <<< "$e")
    [ "$got_class" = "$class" ] || { bad "$name: class '$got_class', expected '$class' (error: $got_err)"; return; }
    jq -e --arg re "$re" '.headers["Agentq-Error"] | test($re)' <<< "$e" > /dev/null \
        || { bad "$name: Agentq-Error '$got_err' does not match /$re/"; return; }
    [ "$(jq -r .subject <<< "$e")" = "$subject" ] \
        || { bad "$name: dead letter on $(jq -r .subject <<< "$e"), expected $subject"; return; }
    jq -e '.headers | has("Agentq-Attempts") and has("Agentq-Failed-At") and has("Nats-Msg-Id")' <<< "$e" > /dev/null \
        || { bad "$name: headers missing: $(jq -c .headers <<< "$e")"; return; }
    [ "$(jq -r .payload_hex <<< "$e")" = "$(xxd -p "$file" | tr -d '\n')" ] \
        || { bad "$name: the dead letter does not carry the original $(stat -c %s "$file") bytes"; return; }
    if [ -n "$attempts" ]; then
        [ "$(jq -r '.headers["Agentq-Attempts"]' <<< "$e")" = "$attempts" ] \
            || { bad "$name: Agentq-Attempts $(jq -r '.headers["Agentq-Attempts"]' <<< "$e"), expected $attempts"; return; }
    fi
    if [ -n "$id" ]; then
        [ "$(jq -r '.headers["Agentq-Task-Id"] // ""' <<< "$e")" = "$id" ] \
            || { bad "$name: Agentq-Task-Id is '$(jq -r '.headers["Agentq-Task-Id"] // ""' <<< "$e")', expected $id"; return; }
        local r rc=0
        r=$(agentq wait --timeout=10s "$id" 2>&1) || rc=$?
        [ "$rc" -eq 1 ] || { bad "$name: agentq wait $id exited $rc (expected 1, a FAILED result): $r"; return; }
        jq -e --arg c "$class" '.status == "STATUS_FAILED" and .error.class == $c and (.error.message | length > 0)' \
            <<< "$r" > /dev/null || { bad "$name: result $r"; return; }
        if [ -n "$attempts" ]; then
            [ "$(jq -r .attempts <<< "$r")" = "$attempts" ] || { bad "$name: result attempts $(jq -r .attempts <<< "$r"), expected $attempts"; return; }
        fi
    else
        jq -e '.headers | has("Agentq-Task-Id") | not' <<< "$e" > /dev/null \
            || { bad "$name: Agentq-Task-Id set for an invalid id: $(jq -c .headers <<< "$e")"; return; }
    fi
    worker_alive || { bad "$name: the worker died"; return; }
    ok "$name: $class: $got_err"
}

# case_raw NAME FILE CLASS ERROR_REGEX DLQ_SUBJECT [ID]: publish FILE's bytes to
# agentq.tasks.it (no Nats-Msg-Id: some ids here are not valid ones), expect.
case_raw() {
    local name=$1 file=$2 seq
    if ! seq=$(raw_publish --subject agentq.tasks.it --file "$file" 2> "$T/pub.err"); then
        bad "$name: the stream refused the publish: $(cat "$T/pub.err")"
        return
    fi
    expect_dead_letter "$name" "$seq" "$file" "$3" "$4" "$5" "${6:-}"
}

# case_raw_as NAME MSG_ID SUBJECT FILE CLASS ERROR_REGEX DLQ_SUBJECT [ID]: FILE's
# bytes with a Nats-Msg-Id, on another subject: a publisher that set the header.
case_raw_as() {
    local name=$1 msgid=$2 subject=$3 file=$4 seq
    if ! seq=$(raw_publish --subject "$subject" --msg-id "$msgid" --file "$file" 2> "$T/pub.err"); then
        bad "$name: the stream refused the publish: $(cat "$T/pub.err")"
        return
    fi
    expect_dead_letter "$name" "$seq" "$file" "$5" "$6" "$7" "${8:-}"
}

# case_pb NAME TEXT CLASS ERROR_REGEX DLQ_SUBJECT [ID]: the same for a Task in protobuf text format.
case_pb() {
    local name=$1 file="$T/case-$RANDOM.bin"
    pb_task "$2" > "$file" 2> /dev/null || { bad "$name: protoc could not encode: $2"; return; }
    case_raw "$name" "$file" "$3" "$4" "$5" "${6:-}"
}

# ---- undecodable payloads ----
printf '\xff\xfe\xfd\x00 this is not a protobuf' > "$T/garbage.bin"
case_raw garbage "$T/garbage.bin" undecodable_task 'does not decode as agentq.v1.Task' agentq.dlq._invalid

pb_task 'id: "bi-trunc" type: "it" prompt: "a prompt that is cut off in the middle of its text"' > "$T/full.bin"
head -c $(( $(stat -c %s "$T/full.bin") / 2 + 3 )) "$T/full.bin" > "$T/trunc.bin"
case_raw truncated_protobuf "$T/trunc.bin" undecodable_task 'does not decode as agentq.v1.Task' agentq.dlq._invalid

: > "$T/empty.bin"
case_raw empty_payload "$T/empty.bin" undecodable_task 'empty payload' agentq.dlq._invalid

# ---- ids: no result can be stored, only the dead letter ----
case_pb missing_id 'type: "it" prompt: "hi"' invalid_task 'id is missing' agentq.dlq.it
case_pb invalid_id_dots 'id: "..bad" type: "it" prompt: "hi"' invalid_task '^id must be' agentq.dlq.it
case_pb invalid_id_too_long "id: \"$(printf 'x%.0s' {1..129})\" type: \"it\" prompt: \"hi\"" \
    invalid_task '^id must be 1-128' agentq.dlq.it
case_pb id_with_space 'id: "has space" type: "it" prompt: "hi"' invalid_task '^id must be' agentq.dlq.it
case_pb id_with_star 'id: "star*" type: "it" prompt: "hi"' invalid_task '^id must be' agentq.dlq.it
case_pb id_with_gt 'id: "gt>" type: "it" prompt: "hi"' invalid_task '^id must be' agentq.dlq.it
case_pb id_with_slash 'id: "a/b" type: "it" prompt: "hi"' invalid_task '^id must be' agentq.dlq.it
case_pb invalid_type 'id: "bi-type" type: "a.b" prompt: "hi"' invalid_task '^type must be' agentq.dlq._invalid bi-type

# ---- valid ids, invalid tasks: dead letter + FAILED result ----
case_pb prompt_too_large "id: \"bi-prompt\" type: \"it\" prompt: \"$(head -c 2000 /dev/zero | tr '\0' a)\"" \
    prompt_too_large 'prompt is 2000 bytes .*over the cap of 1024' agentq.dlq.it bi-prompt
case_pb max_tokens_over_cap 'id: "bi-maxtok" type: "it" prompt: "hi" max_tokens: 5000' \
    invalid_task 'max_tokens 5000 is over the cap of 4096' agentq.dlq.it bi-maxtok
case_pb no_prompt_no_messages 'id: "bi-noprompt" type: "it"' \
    invalid_task 'no prompt and no messages' agentq.dlq.it bi-noprompt
case_pb prompt_and_messages 'id: "bi-both" type: "it" prompt: "hi" messages { role: "user" content: "x" }' \
    invalid_task 'prompt or messages, not both' agentq.dlq.it bi-both
case_pb invalid_role 'id: "bi-role" type: "it" messages { role: "system" content: "x" }' \
    invalid_task 'messages\[0\]\.role must be' agentq.dlq.it bi-role

# ---- NUL bytes inside strings (legal in proto3; protobuf-c would cut the
# string there): refused naming the field, never read as the cut string ----
# The id "bi-nul\0tail" would read as "bi-nul": published without a
# Nats-Msg-Id, it gets no result at all; the genuine bi-nul published after it
# is answered with its own prompt (before the fix the first one's COMPLETED
# result was stored under bi-nul and kept).
pb_task 'id: "bi-nul\0tail" type: "it" prompt: "the impostor"' > "$T/nul-id.bin"
case_raw nul_in_id "$T/nul-id.bin" invalid_task '^id contains a NUL byte \(U\+0000\) at byte 6 of 11' agentq.dlq._invalid
seq=$(pb_task 'id: "bi-nul" type: "it" prompt: "the genuine one"' | raw_publish --subject agentq.tasks.it --msg-id bi-nul --stdin)
r=$(agentq wait --timeout=20s bi-nul 2>&1) || true
jq -e --argjson s "$seq" '.status == "STATUS_COMPLETED" and .stream_seq == $s and (.output | startswith("echo: the genuine one"))' \
    <<< "$r" > /dev/null && ok "nul_in_id: the genuine bi-nul got its own answer" \
    || bad "nul_in_id: the genuine bi-nul (seq $seq) got: $r"
# With a Nats-Msg-Id (as publishers are told to set it) the refusal is answered under it.
pb_task 'id: "bi-nulp" type: "it" prompt: "before\0after"' > "$T/nul-prompt.bin"
case_raw_as nul_in_prompt bi-nulp agentq.tasks.it "$T/nul-prompt.bin" invalid_task \
    '^prompt contains a NUL byte \(U\+0000\) at byte 6 of 12' agentq.dlq._invalid bi-nulp
pb_task 'id: "bi-nulm" type: "it" messages { role: "user" content: "q" } messages { role: "assistant" content: "a\0" }' > "$T/nul-msg.bin"
case_raw_as nul_in_message bi-nulm agentq.tasks.it "$T/nul-msg.bin" invalid_task \
    '^messages\[1\]\.content contains a NUL byte' agentq.dlq._invalid bi-nulm
pb_task 'id: "bi-nulmd" type: "it" prompt: "hi" metadata { key: "a" value: "1" } metadata { key: "b" value: "x\0y" }' > "$T/nul-md.bin"
case_raw_as nul_in_metadata bi-nulmd agentq.tasks.it "$T/nul-md.bin" invalid_task \
    '^metadata\[1\]\.value contains a NUL byte' agentq.dlq._invalid bi-nulmd
pb_task 'id: "bi-nulst" type: "it" prompt: "hi" stop_sequences: "ok" stop_sequences: "\0"' > "$T/nul-stop.bin"
case_raw_as nul_in_stop_sequence bi-nulst agentq.tasks.it "$T/nul-stop.bin" invalid_task \
    '^stop_sequences\[1\] contains a NUL byte' agentq.dlq._invalid bi-nulst

# ---- undecodable, but the Nats-Msg-Id is a valid id: answered under it ----
# max_tokens (field 8, a varint) sent as a length-delimited field (wire type 2).
{ pb_task 'id: "bi-wiretype" type: "it" prompt: "hi"'; printf '\x42\x01\x78'; } > "$T/wiretype.bin"
case_raw_as wrong_wire_type bi-wiretype agentq.tasks.it "$T/wiretype.bin" undecodable_task \
    'does not decode as agentq.v1.Task' agentq.dlq._invalid bi-wiretype
# Content blocks nest (a tool_result holds blocks): 40 levels are refused
# before protobuf-c recurses into them.
nest='text { text: "deep" }'
for _ in $(seq 40); do nest="tool_result { tool_use_id: \"t\" content { $nest } }"; done
pb_task "id: \"bi-deep\" type: \"it\" messages { role: \"user\" blocks { $nest } }" > "$T/deep.bin"
case_raw_as nested_too_deep bi-deep agentq.tasks.it "$T/deep.bin" undecodable_task \
    'nested deeper than the limit' agentq.dlq._invalid bi-deep

# ---- the subject is the type: a task of type "other" on agentq.tasks.it ----
pb_task 'id: "bi-subject" type: "other" prompt: "hi"' > "$T/subject.bin"
case_raw_as type_not_subject bi-subject agentq.tasks.it "$T/subject.bin" invalid_task \
    '^type "other" does not match the subject agentq\.tasks\.it' agentq.dlq.other bi-subject

case_pb invalid_utf8 'id: "bi-utf8" type: "it" prompt: "\377\376"' \
    invalid_task 'not valid UTF-8' agentq.dlq.it bi-utf8
case_pb temperature_out_of_range 'id: "bi-temp" type: "it" prompt: "hi" temperature: 2.5' \
    invalid_task 'temperature must be between 0 and 1' agentq.dlq.it bi-temp
case_pb deadline_passed "id: \"bi-late\" type: \"it\" prompt: \"hi\" deadline_unix_ms: $(( $(date +%s) * 1000 - 60000 ))" \
    expired 'deadline passed' agentq.dlq.it bi-late
calls_before=$(sim_stats | jq .requests_total)
case_pb unknown_model 'id: "bi-model" type: "it" prompt: "hi" model: "gpt-4"' \
    model_not_allowed 'model "gpt-4" is not in allowed_models' agentq.dlq.it bi-model
[ "$(sim_stats | jq .requests_total)" -eq "$calls_before" ] && ok "invalid tasks made no provider call" \
    || bad "invalid tasks reached the provider: $calls_before -> $(sim_stats | jq .requests_total) calls"

# ---- too big for the stream: refused at publish, nothing queued ----
seq_before=$(pb_task 'id: "bi-marker-1" type: "it" prompt: "marker"' | raw_publish --subject agentq.tasks.it --msg-id bi-marker-1 --stdin)
# The error must say which limit refused it, not just that it failed.
LIMIT_RE='max_msg_size|max_payload|max_prompt_bytes|limit|cap'
head -c 20000000 /dev/zero | tr '\0' a > "$T/20mb.txt"
rc=0; agentq submit --id=bi-20mb --type=it < "$T/20mb.txt" > "$T/20mb.out" 2> "$T/20mb.err" || rc=$?
if [ "$rc" -eq 2 ] && grep -qiE "$LIMIT_RE" "$T/20mb.err"; then
    ok "20 MB prompt on stdin: agentq submit exit 2: $(head -1 "$T/20mb.err")"
else
    bad "20 MB prompt on stdin: agentq submit exit $rc (expected 2 and a message naming the limit), stderr: $(head -c 300 "$T/20mb.err")"
fi
jq -nc --rawfile p "$T/20mb.txt" '{id: "bi-20mb-file", type: "it", prompt: $p}' > "$T/20mb.jsonl"
rc=0; agentq submit --file "$T/20mb.jsonl" > "$T/20mbf.out" 2> "$T/20mbf.err" || rc=$?
if [ "$rc" -eq 1 ] && grep -qiE "$LIMIT_RE" "$T/20mbf.err"; then
    ok "20 MB task in a JSONL file: agentq submit exit 1: $(head -1 "$T/20mbf.err")"
else
    bad "20 MB task in a JSONL file: agentq submit exit $rc (expected 1 and a message naming the limit), stderr: $(head -c 300 "$T/20mbf.err")"
fi
head -c 5000000 /dev/zero | tr '\0' a > "$T/5mb.txt"
rc=0; agentq submit --id=bi-5mb-cli --type=it < "$T/5mb.txt" > /dev/null 2> "$T/5mbc.err" || rc=$?
if [ "$rc" -eq 2 ] && grep -qiE "$LIMIT_RE" "$T/5mbc.err"; then
    ok "5 MB prompt on stdin: agentq submit exit 2: $(head -1 "$T/5mbc.err")"
else
    bad "5 MB prompt on stdin: agentq submit exit $rc (expected 2 and a message naming the limit), stderr: $(head -c 300 "$T/5mbc.err")"
fi
# 5 MB: under the server's max_payload (8MB), over the stream's max_msg_size (4MiB).
pb_task "id: \"bi-5mb\" type: \"it\" prompt: \"$(head -c 5000000 /dev/zero | tr '\0' a)\"" > "$T/5mb.bin"
rc=0; raw_publish --subject agentq.tasks.it --msg-id bi-5mb --file "$T/5mb.bin" > /dev/null 2> "$T/5mb.err" || rc=$?
if [ "$rc" -eq 1 ] && grep -q 'message size exceeds maximum allowed' "$T/5mb.err"; then
    ok "5 MB task published raw: refused by the stream: $(cat "$T/5mb.err")"
else
    bad "5 MB task published raw: exit $rc, $(cat "$T/5mb.err")"
fi
seq_after=$(pb_task 'id: "bi-marker-2" type: "it" prompt: "marker"' | raw_publish --subject agentq.tasks.it --msg-id bi-marker-2 --stdin)
[ "$seq_after" -eq $((seq_before + 1)) ] && ok "nothing of the oversized tasks reached the stream" \
    || bad "stream sequence went from $seq_before to $seq_after: something oversized was stored"
agentq wait --timeout=20s bi-marker-1 bi-marker-2 > /dev/null || bad "marker tasks did not complete"
rc=0; agentq get bi-20mb bi-20mb-file bi-5mb-cli bi-5mb > /dev/null 2>&1 || rc=$?
[ "$rc" -eq 4 ] || bad "a result exists for an oversized task (agentq get exit $rc)"

# ---- provider answers: retryable, dead-lettered after max_attempts calls ----
# case_provider NAME SIM_OPTION CLASS ERROR_REGEX: restart the simulator (same
# port, the worker keeps running) answering every request with the fault.
case_provider() {
    local name=$1 opt=$2 class=$3 re=$4 id="bi-$1" seq
    local help
    help=$("$SIM" --help 2>&1 || true)   # not piped into grep -q: SIGPIPE + pipefail
    if ! grep -q -- "--${opt%%=*}" <<< "$help"; then
        bad "$name: the simulator has no --${opt%%=*} option"
        return
    fi
    restart_sim "--$opt" "${@:5}"
    pb_task "id: \"$id\" type: \"it\" prompt: \"provider fault $name\"" > "$T/$id.bin"
    seq=$(raw_publish --subject agentq.tasks.it --msg-id "$id" --file "$T/$id.bin") || { bad "$name: publish failed"; return; }
    expect_dead_letter "$name" "$seq" "$T/$id.bin" "$class" "$re" agentq.dlq.it "$id" "$MAX_ATTEMPTS"
    local calls
    calls=$(sim_stats | jq .requests_total)
    [ "$calls" -eq "$MAX_ATTEMPTS" ] || bad "$name: the simulator saw $calls calls, expected $MAX_ATTEMPTS"
}
case_provider response_not_json fault_bad_json=1 bad_response 'not JSON'
case_provider response_truncated fault_truncated=1 bad_response 'JSON'
case_provider response_too_large fault_huge=1 response_too_large 'over the [0-9]+-byte cap' --huge_bytes=1MiB

# ---- after all of it: the same worker, alive, completes a normal task ----
restart_sim
if worker_alive; then
    r=$(agentq submit --id=bi-normal --type=it --prompt="a normal task after the bad ones" --quiet --wait --timeout=30s) \
        && jq -e '.status == "STATUS_COMPLETED" and (.output | startswith("echo: a normal task"))' <<< "$r" > /dev/null \
        && ok "the worker survived everything and completed a normal task" \
        || bad "normal task after the bad inputs: $r"
else
    bad "the worker is not running at the end"
fi
wait_until 10 stat_is tasks_in_stream 0 || bad "task stream not empty: $(agentq stats --json)"
kill -TERM "$W"
wait "$W" || bad "the worker did not exit 0 on SIGTERM"
forget_pid "$W"

if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "bad_input: ${#FAILED[@]} case(s) failed:" >&2
    printf '  %s\n' "${FAILED[@]}" >&2
    exit 1
fi
echo "bad_input: every bad input dead-lettered with its class and reason; oversized tasks refused at publish; worker alive"
