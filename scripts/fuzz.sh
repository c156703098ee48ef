#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz (clang, -DAQ_FUZZ=ON, in build-fuzz)
# and run each for SECONDS (default 60) on a scratch copy of its seed corpus.
#   usage: scripts/fuzz.sh [SECONDS] [TARGET...]      (targets: default all)
# Environment: FUZZ_BUILD_DIR (build-fuzz), FUZZ_RSS_MB (2048),
#              FUZZ_TIMEOUT (10, seconds per input), FUZZ_ARGS (extra libFuzzer flags).
# Nothing is written into the repository: the corpus a run grows, its log and
# any reproducer stay under $FUZZ_BUILD_DIR/fuzz-run/<target>/ (replaced by the
# next run). Exits 1 if any target found a crash, leak, timeout or OOM, and
# says which and where the reproducer is.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-60}
[ $# -gt 0 ] && shift
case $DURATION in # (libFuzzer reads -max_total_time=0 as "no limit")
    '' | *[!0-9]* | 0) echo "usage: scripts/fuzz.sh [SECONDS>0] [TARGET...]" >&2; exit 2 ;;
esac
ALL_TARGETS=(task_decode llm_response llm_sse config sim_request run_checkpoint trace_context tool)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    [ -d "tests/fuzz/corpus/$t" ] || { echo "fuzz: unknown target '$t' (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
done

BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
RSS_MB=${FUZZ_RSS_MB:-2048}
TIMEOUT=${FUZZ_TIMEOUT:-10}

# clang + libFuzzer (libclang-rt-14-dev) and the build dependencies, if missing.
scripts/setup.sh --fuzz --deps-only

echo "== fuzz: configure and build $BUILD_DIR (clang, -DAQ_FUZZ=ON)"
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAQ_FUZZ=ON -DAQ_WERROR=ON > /dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${TARGETS[@]/#/fuzz_}" > "$BUILD_DIR/fuzz-build.log" 2>&1 || {
    tail -50 "$BUILD_DIR/fuzz-build.log"
    echo "fuzz: build failed (log: $BUILD_DIR/fuzz-build.log)" >&2
    exit 1
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
SYMBOLIZER=$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)
[ -n "$SYMBOLIZER" ] && export ASAN_SYMBOLIZER_PATH=$SYMBOLIZER

failed=()
summary=()
for t in "${TARGETS[@]}"; do
    bin=$BUILD_DIR/tests/fuzz/fuzz_$t
    work=$BUILD_DIR/fuzz-run/$t
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp tests/fuzz/corpus/"$t"/* "$work/corpus/"
    dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=("-dict=tests/fuzz/$t.dict")
    echo "== fuzz: $t for ${DURATION}s (log: $work/fuzz.log)"
    rc=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$bin" -max_total_time="$DURATION" -rss_limit_mb="$RSS_MB" -timeout="$TIMEOUT" \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${dict[@]}" ${FUZZ_ARGS:-} \
        "$work/corpus" > "$work/fuzz.log" 2>&1 || rc=$?
    stats=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$work/fuzz.log" | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/fuzz.log" | tail -1)
    cov=$(echo "$stats" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    corp=$(echo "$stats" | sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p')
    line="$t: ${execs:-?} runs, ${speed:-?} exec/s, cov ${cov:-?}, corpus ${corp:-?}"
    artifacts=$(find "$work/artifacts" -type f | sort)
    if [ "$rc" -ne 0 ] || [ -n "$artifacts" ]; then
        # "SUMMARY: libFuzzer: timeout", "SUMMARY: AddressSanitizer: heap-buffer-overflow ...",
        # "SUMMARY: AddressSanitizer: 24 byte(s) leaked ..." (a leak), ...; a target's own
        # invariant says which.
        kind=$(grep -a -m1 -oE 'SUMMARY: [A-Za-z]+: .*' "$work/fuzz.log" || true)
        why=$(grep -a -m1 -oE '[^ ]*:[0-9]+: (invariant violated|runtime error): .*' "$work/fuzz.log" || true)
        [ -n "$why" ] && kind="${kind:+$kind; }$why"
        echo "---- $t: last lines of $work/fuzz.log"
        grep -avE '^#[0-9]+ ' "$work/fuzz.log" | tail -40
        echo "----"
        echo "fuzz: $t FAILED (exit $rc): ${kind:-see the log}" >&2
        for a in $artifacts; do
            echo "fuzz:   reproducer: $a   (replay: $bin $a)" >&2
        done
        failed+=("$t")
        line="$line  FAILED: ${kind:-exit $rc}"
    fi
    summary+=("$line")
done

echo "== fuzz summary (${DURATION}s each)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (reproducers under $BUILD_DIR/fuzz-run/<target>/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crash, leak or timeout"
