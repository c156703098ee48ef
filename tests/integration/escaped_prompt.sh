#!/usr/bin/env bash
# A prompt the prompt cap admits never fails on the size of its request body,
# however much JSON escaping makes that grow ('"' and '\' take 2 bytes, a
# control character 6: \u00XX). With the default max_prompt_bytes (1 MiB):
#   * 600,000 '"' (a 1.2 MB body) completes: it used to fail at once as
#     too_large, "request body is over the 1114112-byte cap";
#   * 1 MiB of control characters, the cap exactly (a 6 MiB body), completes;
#   * one byte over the cap is still refused, as prompt_too_large.
# The simulator takes each body and counts every byte of the prompt.
source "$(dirname "$0")/lib.sh"

start_nats
start_sim
agentq init > /dev/null
start_worker --max_attempts=2 --retry_base=50ms --retry_max=100ms
W=$WORKER_PID

# submit_fill ID N CHAR: a task whose prompt is N copies of CHAR (an octal
# escape for tr), sent on stdin (too long for an argument); prints the result.
submit_fill() {
    head -c "$2" /dev/zero | tr '\0' "$3" \
        | agentq submit --id "$1" --type it --max_tokens 16 --wait --timeout 60s 2> "$T/$1.err" \
        | tail -n 1 || true
}

expect_completed() {
    local id=$1 n=$2 r
    r=$(submit_fill "$id" "$n" "$3")
    jq -e '.status == "STATUS_COMPLETED" and .attempts == 1' <<< "$r" > /dev/null \
        || fail "$id ($n bytes): $(jq -c '{status, attempts, error}' <<< "$r" 2>/dev/null || echo "$r") $(cat "$T/$id.err")"
    # The simulator answered from the whole prompt: ceil(n/4) input tokens
    # (plus a few per message).
    jq -e --argjson min $(((n + 3) / 4)) '.usage.input_tokens >= $min' <<< "$r" > /dev/null \
        || fail "$id: input tokens $(jq -c .usage <<< "$r"), expected at least $(((n + 3) / 4))"
    note "$id: $n bytes completed, $(jq .usage.input_tokens <<< "$r") input tokens"
}

expect_completed esc-quotes 600000 '\042'
expect_completed esc-control 1048576 '\001'

r=$(submit_fill esc-over 1048577 '\001')
jq -e '.status == "STATUS_FAILED" and .error.class == "prompt_too_large"' <<< "$r" > /dev/null \
    || fail "esc-over: $(jq -c '{status, error}' <<< "$r" 2>/dev/null || echo "$r")"

stats=$(sim_stats)
[ "$(jq '.by_status["200"] // 0' <<< "$stats")" -eq 2 ] || fail "simulator: $(jq -c .by_status <<< "$stats"), expected two 200s"
[ "$(jq .requests_total <<< "$stats")" -eq 2 ] || fail "simulator saw $(jq .requests_total <<< "$stats") requests, expected 2"
kill -0 "$W" 2>/dev/null || fail "the worker exited"
echo "escaped_prompt: 600,000 '\"' and 1 MiB of control characters completed; 1 MiB + 1 refused as prompt_too_large"
