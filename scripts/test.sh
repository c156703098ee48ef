#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against a real
# nats-server and the simulator. Builds with warnings as errors first.
#   usage: scripts/test.sh [BUILD_DIR] [CMAKE_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
[ $# -gt 0 ] && shift
scripts/setup.sh --test "$BUILD_DIR" -DAQ_WERROR=ON "$@"
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 600
