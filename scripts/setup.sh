#!/usr/bin/env bash
# Install what agentq needs from Debian 12 (only what is missing), then
# configure and build.
#   usage: scripts/setup.sh [--test] [--fuzz] [--deps-only] [BUILD_DIR] [CMAKE_ARGS...]
#   --test       also install what the test suite uses (jq, curl, Go for the interop test,
#                an HTTP/2 server and openssl for the TLS test; Node and npm for the
#                trace export and SDK conformance tests unless a node is installed
#                already, e.g. from NodeSource)
#   --fuzz       also install clang and libFuzzer (scripts/fuzz.sh)
#   --deps-only  install, do not configure or build
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PKGS=(build-essential cmake pkg-config
            libnats-dev nats-server libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler
            libxxhash-dev libssl-dev libevent-dev libjansson-dev libcmocka-dev
            libvalijson-dev nlohmann-json3-dev)
TEST_PKGS=(jq curl procps python3-prometheus-client nghttp2-server openssl
           golang-go golang-github-nats-io-go-nats-dev golang-google-protobuf-dev protobuf-compiler
           golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev
           golang-github-xeipuuv-gojsonschema-dev python3-yaml yamllint)
FUZZ_PKGS=(clang libclang-rt-14-dev)

want=("${BUILD_PKGS[@]}")
deps_only=0
while [ $# -gt 0 ]; do
    case $1 in
        --test) want+=("${TEST_PKGS[@]}")
                # Debian's nodejs + npm, unless a node is there (NodeSource's nodejs
                # bundles npm and conflicts with Debian's npm package).
                command -v node >/dev/null 2>&1 || want+=(nodejs npm) ;;
        --fuzz) want+=("${FUZZ_PKGS[@]}") ;;
        --deps-only) deps_only=1 ;;
        *) break ;;
    esac
    shift
done
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

[ "$deps_only" -eq 1 ] && exit 0

BUILD_DIR=${1:-build}
[ $# -gt 0 ] && shift
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" > /dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
