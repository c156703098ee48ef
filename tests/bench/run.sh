#!/usr/bin/env bash
# Runs the benchmarks B1–B5 against their ceilings and goals, one after the
# other, each on its own nats-server / simulator / worker(s) in a temporary
# directory (started like the integration tests do, and cleaned up), and
# prints each one's table, then all tables together. Not part of ctest.
#
#   tests/bench/run.sh [BUILD_DIR]          (default: build)
#
#   B1 pipeline ceiling   worker vs raw JetStream (js_ceiling), same N,     goal ratio >= 0.3
#                         median of 3 rounds
#   B2 concurrency        10,000 calls in flight against a 2 s simulator     goal >= 0.9 of 5,000/s, < 20 KB/call
#   B3 rate limits        1 and 2 workers sharing one rate-limited key       goal >= 0.9 of the binding limit, <= 1% 429
#   B4 added latency      paced tasks at half the B1 rate, 50 ms simulator,  goal p99 < 10 ms
#                         after a 2 s warm-up
#   B5 agent runs         2,000 runs of 5 steps in flight, simulator 200 ms, goal >= 0.8 of 2,000 / 1.2 s, <= 2 KV writes
#                         tools 50 ms                                        per step, < 64 KB per run in flight
#
# BENCH_ONLY="b1 b4" runs a subset (B4 then uses B4_RATE, default 2,000/s,
# unless B1 ran before it). BENCH_NO_BUILD=1 skips bringing the build up to
# date. The machine is shared: every table compares figures of one run and
# says how much CPU other processes used meanwhile. About 5 minutes.
# Exit status: 0 when every goal is met, 1 when one is missed or a bench fails.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=${1:-$SRC/build}
[ -d "$BUILD" ] || { echo "run.sh: no build directory $BUILD" >&2; exit 2; }
AQ_BIN=$(cd "$BUILD" && pwd)
export AQ_BIN

if [ -z "${BENCH_NO_BUILD:-}" ]; then
    echo "# bringing $AQ_BIN up to date"
    cmake --build "$AQ_BIN" -j2 --target agentq-worker agentq agentq-sim js_ceiling paced_pub results_dump sim_load tool_recorder \
        > /dev/null || { echo "run.sh: build failed" >&2; exit 2; }
fi

OUT=$(mktemp "${TMPDIR:-/tmp}/agentq-bench-out.XXXXXX")
STATE=$(mktemp "${TMPDIR:-/tmp}/agentq-bench-state.XXXXXX")
trap 'rm -f "$OUT" "$STATE"' EXIT
export BENCH_OUT=$OUT BENCH_STATE=$STATE

{
    echo "## agentq benchmarks — $(date -u '+%Y-%m-%d %H:%M:%SZ')"
    echo
    echo "$(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo); nats-server $(nats-server --version 2>/dev/null | sed 's/.* v//');" \
         "libcurl $(curl-config --version 2>/dev/null | sed 's/libcurl //'); build $AQ_BIN"
} | tee -a "$OUT"

rc=0
start=$SECONDS
for b in b1_ceiling b2_concurrency b3_ratelimit b4_latency b5_agent; do
    if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" ${b%%_*} "* ]]; then
        continue
    fi
    echo
    echo "#################### $b"
    t=$SECONDS
    # Worker/simulator log lines (JSON on stderr) are left out of the report.
    bash "$HERE/$b.sh" 2> >(grep -v '^{"ts"' >&2)
    brc=$?
    echo "# $b: $((SECONDS - t)) s, exit $brc"
    if [ "$brc" -ne 0 ]; then
        rc=1
        printf '\n### %s: FAILED (exit %d) — see its output above\n' "$b" "$brc" >> "$OUT"
    fi
done
grep -q '| MISS |' "$OUT" && rc=1

echo
echo "==================== all tables ($((SECONDS - start)) s)"
cat "$OUT"
exit $rc
