#!/usr/bin/env bash
# Install what agentq needs from Debian 12 (only what is missing), then
# configure and build.   usage: scripts/setup.sh [--test] [BUILD_DIR] [CMAKE_ARGS...]
#   --test      also install what the test suite uses (jq, curl, Go for the interop test)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PKGS=(build-essential cmake pkg-config
            libnats-dev nats-server libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler
            libxxhash-dev libssl-dev libevent-dev libjansson-dev libcmocka-dev)
TEST_PKGS=(jq curl procps
           golang-go golang-github-nats-io-go-nats-dev golang-google-protobuf-dev protobuf-compiler)

want=("${BUILD_PKGS[@]}")
if [ "${1:-}" = "--test" ]; then
    want+=("${TEST_PKGS[@]}")
    shift
fi
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

BUILD_DIR=${1:-build}
[ $# -gt 0 ] && shift
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" > /dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
