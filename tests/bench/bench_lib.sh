# shellcheck shell=bash
# Shared by the benchmarks (tests/bench/b*.sh): the integration tests' way of
# starting real servers on free ports in a temporary directory (lib.sh, which
# also cleans up on exit), plus measuring and reporting helpers.
#
# Needs: AQ_BIN (a build tree with the tests built), nats-server, jq, curl.
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../integration/lib.sh
source "$BENCH_DIR/../integration/lib.sh"

PACED_PUB="$AQ_BIN/tests/bench/paced_pub"
JS_CEILING="$AQ_BIN/tests/bench/js_ceiling"
RESULTS_DUMP="$AQ_BIN/tests/bench/results_dump"
for tool in "$PACED_PUB" "$JS_CEILING" "$RESULTS_DUMP" "$AGENTQ" "$WORKER" "$SIM"; do
    [ -x "$tool" ] || fail "$tool not built (cmake --build $AQ_BIN)"
done
CLK_TCK=$(getconf CLK_TCK)

# Print a command as it is run (tools started by lib.sh print their own line).
show() { printf '  $ %s\n' "$*" >&2; }
run() { show "$@"; "$@"; }

# A fresh nats-server (empty store) and the JetStream objects, default config.
fresh_nats() {
    if [ -n "${NATS_PID:-}" ]; then
        kill -TERM "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
        rm -rf "$T/js"
    fi
    start_nats
    show "nats-server -c $T/nats.conf   # $AGENTQ_NATS_URL, JetStream file store in $T/js"
    show "agentq init $*"
    "$AGENTQ" init "$@" > /dev/null
}

# Throughput runs: nothing refused, and headers that report limits no run can
# reach. (rl_enforce=false alone still reports the default 4,000 requests a
# minute in the headers, and the worker's limiter rightly keeps to that.)
SIM_NO_LIMITS=(--rl_enforce=false --rl_requests=1000000000000 --rl_input_tokens=1000000000000
               --rl_output_tokens=1000000000000)

bench_sim() {
    show "agentq-sim --listen=127.0.0.1:0 --threads=1 $*"
    start_sim "$@"
}

stop_sim() {
    kill -TERM "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
}

# bench_worker NAME [options]: a worker in the background, pid in WORKER_PID.
bench_worker() {
    local name=$1; shift
    show "AGENTQ_NATS_URL=$AGENTQ_NATS_URL AGENTQ_BASE_URL=$AGENTQ_BASE_URL ANTHROPIC_API_KEY=*** agentq-worker --worker_name=$name $*"
    WORKER_NAME=$name start_worker "$@"
}

# stop_worker PID: SIGTERM, wait for it to exit.
stop_worker() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# results_dump --summary as shell variables S_<key> (S_results, S_last_stored_us, ...).
summary() {
    local line kv
    line=$("$RESULTS_DUMP" --url "$AGENTQ_NATS_URL" --summary) || return 1
    for kv in $line; do
        printf -v "S_${kv%%=*}" '%s' "${kv#*=}"
    done
}

# wait_results N SECS: until the results bucket holds N values.
wait_results() {
    local n=$1 end=$((SECONDS + $2))
    while :; do
        summary && [ "$S_results" -ge "$n" ] && return 0
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}

# wait_ready SECS: until some worker has a pull request waiting on the consumer.
wait_ready() {
    local end=$((SECONDS + $1))
    until summary && [ "$S_waiting_pulls" -ge 1 ]; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}

now_us() { date +%s%6N; }

# CPU (user + system) of a live process in microseconds, from /proc/PID/stat
# (fields 14 and 15, in clock ticks); the command name may hold spaces, so
# the fields are counted after its closing parenthesis.
proc_cpu_us() {
    local rest
    rest=$(sed 's/^.*) //' "/proc/$1/stat")
    awk -v tck="$CLK_TCK" '{ printf "%d\n", ($12 + $13) * 1000000 / tck }' <<< "$rest"
}

# proc_kb PID FIELD: VmRSS, VmHWM, ... in kB from /proc/PID/status.
proc_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# key=value parsing of a tool's summary line: kv FILE KEY
kv() { tr ' ' '\n' < "$1" | sed -n "s/^$2=//p" | tail -1; }

# Floating-point arithmetic: calc EXPR
calc() { awk "BEGIN { printf \"%.6g\n\", $1 }"; }
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { printf "%.*f\n", d, v }'; }

# verdict VALUE OP LIMIT (OP: ge le lt gt): PASS or MISS.
verdict() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        ok = (op == "ge" && v >= l) || (op == "le" && v <= l) || (op == "lt" && v < l) || (op == "gt" && v > l)
        print (ok ? "PASS" : "MISS") }'
}

# ---- other tenants: the machine is shared; say how busy it was ----
# CPU ticks per pid of every process outside this session ("pid ticks comm").
_others_cpu() {
    # cat, not awk FILES: a process may exit between the glob and the read.
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v sid="$(ps -o sid= -p $$ | tr -d ' ')" '{
        i = 0; for (k = length($0); k > 0; k--) if (substr($0, k, 2) == ") ") { i = k; break }
        if (!i) next
        split(substr($0, i + 2), f, " ")
        if (f[4] == sid) next
        c = substr($0, index($0, "(") + 1, i - index($0, "(") - 1); gsub(/ /, "_", c)
        print $1, f[12] + f[13], c }' || true
}
noise_begin() { _others_cpu > "$T/noise0"; NOISE_T0=$(now_us); }
# Average cores used by other processes since noise_begin, and the busiest.
noise_end() {
    _others_cpu > "$T/noise1"
    awk -v tck="$CLK_TCK" -v secs="$(calc "($(now_us) - $NOISE_T0) / 1e6")" '
        NR == FNR { a[$1] = $2; next }
        { d = $2 - ($1 in a ? a[$1] : 0); if (d > 0) { tot += d; by[$3] += d } }
        END { n = 0; for (c in by) top[++n] = c
              for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (by[top[j]] > by[top[i]]) { t = top[i]; top[i] = top[j]; top[j] = t }
              s = ""; for (i = 1; i <= n && i <= 2; i++) s = s sprintf("%s%s %.2f", i > 1 ? ", " : "", top[i], by[top[i]] / tck / secs)
              printf "%.2f cores (%s)\n", tot / tck / secs, s }' "$T/noise0" "$T/noise1"
}

# BENCH_KEEP_DIR=DIR keeps a bench's raw data (e.g. B4's per-task latencies).
keep_files() {
    if [ -n "${BENCH_KEEP_DIR:-}" ]; then
        mkdir -p "$BENCH_KEEP_DIR" && cp "$@" "$BENCH_KEEP_DIR/"
    fi
}

# ---- the report: one markdown table per benchmark, printed and kept ----
TABLE="$T/table.md"
table_begin() {
    {
        echo
        echo "### $1"
        echo
        echo "| figure | measured | reference (same run) | ratio | goal | result |"
        echo "|---|---|---|---|---|---|"
    } > "$TABLE"
}
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@" >> "$TABLE"; }
table_note() { printf '\n%s\n' "$*" >> "$TABLE"; }
table_end() {
    cat "$TABLE"
    if [ -n "${BENCH_OUT:-}" ]; then cat "$TABLE" >> "$BENCH_OUT"; fi
}

# Raise the open-file limit as far as the hard limit allows (B2's 10,000
# connections need one descriptor each in the worker and in the simulator).
raise_nofile() {
    local want=$1 hard
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
        ulimit -n "$hard"
    else
        ulimit -n "$want"
    fi
    ulimit -n
}
