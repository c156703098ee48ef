#!/usr/bin/env bash
# B3 — rate limits. The simulator enforces per-minute limits for the one API
# key (token buckets: capacity = the per-minute limit, refilled continuously).
# Tasks of mixed sizes (prompts 400–7600 bytes, max_tokens 64–1024; answers of
# 20–600 tokens, capped by max_tokens) are queued well beyond what the limits
# let through in the run, so the workers always have work. The input-token
# limit is sized to bind (~1,000 input tokens a task: ~300 calls/min of the
# 600 allowed, ~65% of the output-token limit).
#
# A bucket starts full, so the first seconds may burst above the rate: the
# figures are taken over a window (from W0 s after the workers start, for W s)
# from the simulator's /sim/stats `charged` counters. For each dimension the
# window's use is compared with what the limit made available in it: the
# refill (limit x W / 60 s) plus what the bucket held at the window's start,
# read from the rate-limit headers of a probe request that the simulator
# refuses as invalid (400: charges nothing). In a steady state (bucket empty)
# that ratio is rate / limit; it does not credit a bucket left full before the
# window. The share of calls answered 429 counts every call from the start.
# Goals, for one worker and for two sharing the key: the binding dimension
# >= 0.9 of what it made available, <= 1% of calls answered 429. The worker
# learns the limits from the response headers (no worker configuration).
#
#   AQ_BIN=build tests/bench/b3_ratelimit.sh
source "$(dirname "$0")/bench_lib.sh"

N=${B3_N:-900}
W0=${B3_WARMUP:-10}
W=${B3_WINDOW:-45}
RPM=600
ITPM=300000
OTPM=120000
GOAL_RATIO=0.9
GOAL_429=0.01
SIM_OPTS=(--rl_requests="$RPM" --rl_input_tokens="$ITPM" --rl_output_tokens="$OTPM" --output_tokens=20-600
          --latency_dist=uniform --latency_ms=100 --latency_max_ms=500)

echo "== B3 rate limits: $N tasks queued; limits $RPM requests, $ITPM input tokens, $OTPM output tokens a minute"

sleep_until() {
    local s
    s=$(calc "($1 - $(now_us)) / 1e6")
    awk -v s="$s" 'BEGIN { exit !(s > 0) }' && sleep "$s"
    return 0
}

# The key's bucket levels, from the headers of a request refused as invalid.
PROBES=0
probe() {
    PROBES=$((PROBES + 1))
    curl -s -D - -o /dev/null -X POST "$SIM_URL/v1/messages" -H "x-api-key: $ANTHROPIC_API_KEY" \
        -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' \
        -d '{"model":"claude-haiku-4-5","messages":[]}' |
        awk -F': ' 'tolower($1) ~ /^anthropic-ratelimit-(requests|input-tokens|output-tokens)-remaining$/ {
                        sub(/\r$/, "", $2); split($1, a, "-"); printf "%s%s=%s", sep, a[3] == "requests" ? "req" : a[3], $2; sep = " " }'
}

scenario() {
    local nw=$1 i
    local -a pids=()
    fresh_nats
    run "$PACED_PUB" --url "$AGENTQ_NATS_URL" --count "$N" --rate 0 --id-prefix "r$nw" \
        --prompt-bytes 400-7600 --max-tokens 64-1024 | tee "$T/pub-$nw.out"
    if [ -n "${SIM_PID:-}" ]; then stop_sim; fi
    bench_sim "${SIM_OPTS[@]}"
    PROBES=0
    noise_begin
    local t0 t1 t2 lv1 lv2
    t0=$(now_us)
    for i in $(seq 1 "$nw"); do
        bench_worker "b3-$nw-$i" --log_level=warn
        pids+=("$WORKER_PID")
    done
    sleep_until $((t0 + W0 * 1000000))
    t1=$(now_us); sim_stats > "$T/s1-$nw.json"; lv1=$(probe)
    sleep_until $((t0 + (W0 + W) * 1000000))
    t2=$(now_us); sim_stats > "$T/s2-$nw.json"; lv2=$(probe)
    summary
    local pending=$S_pending results=$S_results noise
    noise=$(noise_end)
    for i in "${pids[@]}"; do stop_worker "$i"; done

    # Per dimension, over the window: what was charged, and what the limit
    # made available (the refill over the window plus what the bucket held
    # at its start). used / available is the goal's ratio: it is the rate /
    # limit of a steady state, and it does not credit a bucket left full
    # before the window (a token bucket lets that burst through).
    local label="$nw worker" d lim lv used avail per ratio best=-1 best_dim=input_tokens
    [ "$nw" -gt 1 ] && label+=s
    local -A used_of=() avail_of=() rate_of=() ratio_of=() level_of=()
    for kv in $lv1; do level_of[${kv%%=*}]=${kv#*=}; done
    for d in input_tokens requests output_tokens; do
        case $d in
        requests) lim=$RPM; lv=${level_of[req]:-0} ;;
        input_tokens) lim=$ITPM; lv=${level_of[input]:-0} ;;
        output_tokens) lim=$OTPM; lv=${level_of[output]:-0} ;;
        esac
        used=$(( $(jq ".charged.$d" "$T/s2-$nw.json") - $(jq ".charged.$d" "$T/s1-$nw.json") ))
        avail=$(calc "$lim * ($t2 - $t1) / 60e6 + $lv")
        per=$(calc "$used * 60e6 / ($t2 - $t1)")
        ratio=$(calc "$used / $avail")
        used_of[$d]=$used; avail_of[$d]="$(fmt "$avail") (refill at $lim/min + $lv in the bucket)"
        rate_of[$d]=$per; ratio_of[$d]=$ratio
        # The binding dimension is the one that used most of what it had (by
        # design, and on a tie such as a run with no calls at all: input tokens).
        if awk -v a="$ratio" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$ratio; best_dim=$d; fi
    done
    for d in input_tokens requests output_tokens; do
        if [ "$d" = "$best_dim" ]; then
            row "$label: $d used, window ${W0}–$((W0 + W)) s — binding" "${used_of[$d]} ($(fmt "${rate_of[$d]}")/min)" \
                "${avail_of[$d]}" "$(fmt "${ratio_of[$d]}" 2)" "≥ $GOAL_RATIO" "$(verdict "${ratio_of[$d]}" ge "$GOAL_RATIO")"
        else
            row "$label: $d used, window" "${used_of[$d]} ($(fmt "${rate_of[$d]}")/min)" "${avail_of[$d]}" \
                "$(fmt "${ratio_of[$d]}" 2)" "—" "info"
        fi
    done
    local n429 calls share w429 wcalls wshare
    n429=$(jq '.by_status["429"] // 0' "$T/s2-$nw.json")
    calls=$(( $(jq '.requests_total' "$T/s2-$nw.json") - 1 ))   # minus the first probe
    share=$(calc "$n429 / ($calls > 0 ? $calls : 1)")
    w429=$(( n429 - $(jq '.by_status["429"] // 0' "$T/s1-$nw.json") ))
    wcalls=$(( calls - $(jq '.requests_total' "$T/s1-$nw.json") ))
    wshare=$(calc "$w429 / ($wcalls > 0 ? $wcalls : 1)")
    row "$label: calls answered 429, 0–$((W0 + W)) s" "$n429 of $calls ($(fmt "$(calc "$share * 100")" 1)%)" "—" \
        "—" "≤ $(fmt "$(calc "$GOAL_429 * 100")" 0)%" "$(verdict "$share" le "$GOAL_429")"
    row "$label: calls answered 429, window only" "$w429 of $wcalls ($(fmt "$(calc "$wshare * 100")" 1)%)" "—" "—" "—" "info"
    NOTES+=("$label: bucket levels (rate-limit headers) at window start [$lv1], end [$lv2]; results stored $results, tasks still queued $pending$([ "$pending" -gt 0 ] || echo ' (BACKLOG RAN OUT: rates understate the limiter)'); other load: $noise")
}

NOTES=()
table_begin "B3 — rate limits (limits/min: $RPM requests, $ITPM input, $OTPM output tokens; latency 100–500 ms; $N mixed tasks)"
scenario 1
scenario 2
for n in "${NOTES[@]}"; do table_note "- $n"; done
table_end
