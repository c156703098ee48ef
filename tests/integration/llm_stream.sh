#!/usr/bin/env bash
# The worker streams (issue 16), against agentq-sim's server-sent events:
# 1. the same answers streamed and not: N text tasks and a tool_use task go
#    through a worker that never streams, then the same requests through one
#    that always does; outputs, content blocks, stop reasons and usage are
#    identical; the streamed results carry time_to_first_token_us, and the
#    streaming worker's time-to-first-token and tokens/s histograms count
#    its calls;
# 2. an overloaded_error event after the 200 (fault_stream_error=1) is
#    handled like a 529: deferred, no failure counted; with the fault off
#    (simulator restarted on its port) every task completes;
# 3. a stream closed before message_stop (fault_stream_cut=1) is retried,
#    then dead-lettered after max_attempts with class stream_cut;
# 4. a provider that sends nothing for 10 s (latency=10s: its time to first
#    byte) fails after llm_idle_timeout (2 s) as llm_timeout, retried, then
#    dead-lettered: caught long before any whole-call limit (a stream that
#    stalls after message_start: unit.llm_client_test, test_stream_idle_timeout);
# 5. a long answer, 2,000 tokens at 200 tokens/s (10 s), completes in ONE
#    call with llm_timeout=5s: a streamed call is bounded by the idle
#    timeout and llm_stream_timeout, not by llm_timeout.
source "$(dirname "$0")/lib.sh"
N=${N:-20}
PY=/usr/bin/python3
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric_sum() { # NAME: the sum of a family's samples (0 when absent)
    curl -sf "$METRICS/metrics" | awk -v n="$1" '$1 ~ "^"n"({|$)" {s += $2} END {print s + 0}'
}
stop_worker() { kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; forget_pid "$WORKER_PID"; }

start_nats
start_sim --output_tokens=60 --seed=5
agentq init > /dev/null

SCHEMA='input_schema_json: "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}"'
tasks() { # PREFIX: N text tasks and one with a tool, the prompts the same for every prefix
    jq -nc --argjson n "$N" --arg p "$1" \
        'range($n) | {id: "\($p)-\(.)", type: "st", prompt: "same prompt \(.)", max_tokens: 256}' \
        > "$T/$1.jsonl"
    agentq submit --file "$T/$1.jsonl" --quiet > /dev/null
    pb_task "id: \"$1-tool\" type: \"st\" max_tokens: 256
             tools { name: \"get_weather\" description: \"Weather of a city\" $SCHEMA }
             messages { role: \"user\" content: \"Weather in Paris?\" }" \
        | raw_publish --subject agentq.tasks.st --msg-id "$1-tool" --stdin > /dev/null
    mapfile -t IDS < <(jq -r .id "$T/$1.jsonl"); IDS+=("$1-tool")
}

note "1: the same answers streamed and not"
PORT=$(free_port); METRICS="http://127.0.0.1:$PORT"
# The tool task is an agent run: without cache marks, so that the second run
# (the simulator remembers prefixes) bills the same tokens as the first.
start_worker --llm_stream_min_max_tokens=1000000 --agent_prompt_cache=false --metrics_port="$PORT" --metrics_bind=127.0.0.1
tasks plain
agentq wait --timeout=60s "${IDS[@]}" > "$T/plain.out" || fail "non-streamed tasks did not complete"
[ "$(metric_sum agentq_llm_time_to_first_token_seconds_count)" = 0 ] || fail "the non-streaming worker streamed"
stop_worker
PORT=$(free_port); METRICS="http://127.0.0.1:$PORT"
start_worker --llm_stream_min_max_tokens=0 --agent_prompt_cache=false --metrics_port="$PORT" --metrics_bind=127.0.0.1
tasks strm
agentq wait --timeout=60s "${IDS[@]}" > "$T/strm.out" || fail "streamed tasks did not complete"
norm() { jq -c '{k: (.id | sub("^[a-z]+-"; "")), status, output, content, stop_reason, usage, attempts, cache_hit}' "$1" | sort; }
diff <(norm "$T/plain.out") <(norm "$T/strm.out") > "$T/diff.txt" || { cat "$T/diff.txt" >&2; fail "streamed answers differ from non-streamed ones"; }
# The run's first step was a streamed tool_use answer (its input from input_json_delta).
jq -e 'select(.id == "strm-tool") | .steps >= 2 and .step_log[0].stop_reason == "tool_use" and .tool_calls >= 1' \
    "$T/strm.out" > /dev/null || fail "the streamed tool_use answer: $(jq -c 'select(.id == "strm-tool")' "$T/strm.out")"
jq -s -e 'all(.time_to_first_token_us > 0)' "$T/strm.out" > /dev/null || fail "streamed results without time_to_first_token_us"
jq -s -e 'all(has("time_to_first_token_us") | not)' "$T/plain.out" > /dev/null || fail "non-streamed results with time_to_first_token_us"
ttft=$(metric_sum agentq_llm_time_to_first_token_seconds_count)
tps=$(metric_sum agentq_llm_output_tokens_per_second_count)
calls=$((N + $(jq -s '.[] | select(.id == "strm-tool") | .steps' "$T/strm.out"))) # one per text task, one per step of the run
[ "$ttft" = "$calls" ] || fail "time-to-first-token observations: $ttft, want $calls (one per streamed call)"
[ "$tps" -ge 1 ] || fail "no output tokens/s observation"
note "   $((N + 1)) tasks ($calls calls): identical answers; TTFT observed $ttft times, tokens/s $tps times"

note "2: an overloaded_error event mid-stream is a 529"
restart_sim --output_tokens=60 --fault_stream_error=1
make_tasks 5 se st > "$T/se.jsonl"
agentq submit --file "$T/se.jsonl" --quiet > /dev/null
mapfile -t ids < <(jq -r .id "$T/se.jsonl")
wait_until 30 bash -c "[ \$(curl -sf $METRICS/metrics | awk '/^agentq_llm_deferrals_total.*overloaded/ {s+=\$2} END {print s+0}') -ge 5 ]" \
    || fail "no overloaded deferrals after stream error events"
[ "$(sim_stats | jq .fault_stream_error)" -ge 5 ] || fail "the simulator sent no error events: $(sim_stats)"
retries=$(metric_sum agentq_llm_retries_total)
restart_sim --output_tokens=60
agentq wait --timeout=60s "${ids[@]}" > "$T/se.out" || fail "tasks deferred by stream errors did not complete"
jq -s -e 'all(.status == "STATUS_COMPLETED")' "$T/se.out" > /dev/null || fail "not all completed: $(cat "$T/se.out")"
[ "$(stat_of dead_letters)" = 0 ] || fail "dead letters after stream error events"
note "   deferred as overloaded, then completed (retries counted meanwhile: $retries)"

note "3: a cut stream is retried, then dead-lettered as stream_cut"
stop_worker
restart_sim --output_tokens=60 --fault_stream_cut=1
start_worker --llm_stream_min_max_tokens=0 --max_attempts=3 --retry_base=50ms --retry_max=200ms
make_tasks 2 cut st > "$T/cut.jsonl"
agentq submit --file "$T/cut.jsonl" --quiet > /dev/null
rc=0; agentq wait --timeout=60s cut-0 cut-1 > "$T/cut.out" || rc=$?
jq -s -e 'length == 2 and all(.status == "STATUS_FAILED" and .error.class == "stream_cut" and .attempts == 3
          and (.error.message | test("before message_stop")))' "$T/cut.out" > /dev/null \
    || fail "cut streams: $(cat "$T/cut.out")"
[ "$(sim_stats | jq .requests_total)" = 6 ] || fail "cut streams: $(sim_stats | jq .requests_total) calls, want 6"
note "   $(jq -r .error.message "$T/cut.out" | head -1)"

note "4: a silent provider fails after llm_idle_timeout"
stop_worker
restart_sim --output_tokens=40 --latency=10000
start_worker --llm_stream_min_max_tokens=0 --llm_idle_timeout=2s --max_attempts=2 --retry_base=50ms --retry_max=200ms
make_tasks 1 idle st > "$T/idle.jsonl"
agentq submit --file "$T/idle.jsonl" --quiet > /dev/null
t0=$SECONDS
rc=0; agentq wait --timeout=60s idle-0 > "$T/idle.out" || rc=$?
took=$((SECONDS - t0))
jq -e '.status == "STATUS_FAILED" and .error.class == "llm_timeout" and .attempts == 2
       and (.error.message | test("llm_idle_timeout"))' "$T/idle.out" > /dev/null \
    || fail "idle stream: $(cat "$T/idle.out")"
[ "$took" -lt 20 ] || fail "two idle timeouts of 2 s took $took s"
note "   2 attempts in $took s: $(jq -r .error.message "$T/idle.out")"

note "5: a 2,000-token answer at 200 tokens/s under llm_timeout=5s: one call"
stop_worker
restart_sim --output_tokens=2000 --stream_tokens_per_second=200
start_worker --llm_stream_min_max_tokens=0 --llm_timeout=5s --llm_idle_timeout=3s --max_attempts=1
echo '{"id":"long-0","type":"st","prompt":"a long answer","max_tokens":2000}' > "$T/long.jsonl"
agentq submit --file "$T/long.jsonl" --quiet > /dev/null
t0=$SECONDS
agentq wait --timeout=60s long-0 > "$T/long.out" || fail "the long answer: $(cat "$T/long.out")"
took=$((SECONDS - t0))
jq -e '.status == "STATUS_COMPLETED" and .attempts == 1 and .usage.output_tokens == 2000 and .llm_latency_ms > 5000' \
    "$T/long.out" > /dev/null || fail "the long answer: $(jq -c 'del(.output)' "$T/long.out")"
[ "$(sim_stats | jq .requests_total)" = 1 ] || fail "the long answer took $(sim_stats | jq .requests_total) calls"
echo "llm_stream: same answers streamed and not ($((N + 1)) tasks), stream errors deferred then completed," \
     "cut streams dead-lettered as stream_cut, idle streams cut after 2 s," \
     "2,000 tokens in one call of $(jq .llm_latency_ms "$T/long.out") ms under llm_timeout=5s"
