#!/usr/bin/env bash
# A publisher in another language (Go: nats.go + protobuf from the .proto
# alone) submits tasks the worker completes, and reads the Results back.
source "$(dirname "$0")/lib.sh"
command -v go > /dev/null || { echo "SKIP: go not installed"; exit 77; }

start_nats
start_sim
agentq init > /dev/null
start_worker
bash "$(dirname "$0")/interop_go.sh" -n 50
