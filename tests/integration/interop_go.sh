#!/usr/bin/env bash
# Interop test: a Go publisher built only from schemas/agentq/v1/*.proto and
# the official NATS Go client submits tasks to an already running agentq stack
# (nats-server + agentq-worker + agentq-sim, `agentq init` done) and reads the
# Results back from the KV bucket.
#
#   AGENTQ_NATS_URL=nats://127.0.0.1:14222 tests/integration/interop_go.sh [publisher flags, e.g. -n 50]
#
# Needs (Debian 12): golang-go golang-github-nats-io-go-nats-dev
# golang-google-protobuf-dev protobuf-compiler. Everything is built offline in
# GOPATH mode from /usr/share/gocode. protoc-gen-go is built from
# golang-google-protobuf-dev's source, because /usr/bin/protoc-gen-go may be
# the v1.3 plugin (protoc-gen-go-1-3), which rejects proto3 `optional`.
# Generated code lives in a temp dir and is removed on exit.
# Exit: 0 pass, 1 fail, 77 skipped (prerequisite missing).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
gocode=${AQ_GOCODE:-/usr/share/gocode}

if ! command -v go >/dev/null 2>&1; then
	echo "SKIP: go not installed"
	exit 77
fi
if ! command -v protoc >/dev/null 2>&1; then
	echo "SKIP: protoc not installed (apt-get install protobuf-compiler)"
	exit 77
fi
for pkg in github.com/nats-io/nats.go google.golang.org/protobuf/cmd/protoc-gen-go; do
	if [ ! -d "$gocode/src/$pkg" ]; then
		echo "SKIP: $gocode/src/$pkg missing (apt-get install golang-github-nats-io-go-nats-dev golang-google-protobuf-dev)"
		exit 77
	fi
done

: "${AGENTQ_NATS_URL:?set AGENTQ_NATS_URL to the NATS URL of a running agentq stack}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/aq-interop-go.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

export GO111MODULE=off
export GOPATH="$tmp/gopath:$gocode"
export GOCACHE="${GOCACHE:-$tmp/gocache}"
export GOFLAGS=
export CGO_ENABLED=0

mkdir -p "$tmp/bin" "$tmp/gopath/src"

echo "interop_go: building protoc-gen-go from $gocode"
go build -o "$tmp/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go

echo "interop_go: generating Go code from $root/schemas/agentq/v1"
# go_package in the .proto files is agentq.example/agentqv1, so with the
# default paths=import the code lands in $GOPATH/src/agentq.example/agentqv1.
PATH="$tmp/bin:$PATH" protoc -I "$root/schemas" \
	--go_out="$tmp/gopath/src" \
	"$root"/schemas/agentq/v1/*.proto

echo "interop_go: building go-publisher"
(cd "$root/examples/go-publisher" && go build -o "$tmp/bin/go-publisher" .)

echo "interop_go: running against $AGENTQ_NATS_URL"
"$tmp/bin/go-publisher" -url "$AGENTQ_NATS_URL" "$@"
