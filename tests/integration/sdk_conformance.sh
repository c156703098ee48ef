#!/usr/bin/env bash
# Conformance: the official Anthropic TypeScript SDK (@anthropic-ai/sdk,
# pinned in tests/integration/sdk/package.json + package-lock.json) drives
# agentq-sim as it would drive the API, set up as its README says (apiKey and
# baseURL only): messages.create (text, prefill, tool-use round trip),
# messages.stream() with on('text') / finalMessage(), stream: true raw
# iteration, countTokens, models.list / retrieve, every error class the SDK
# maps (400 401 403 404 413 429 500 529) and its own retries honouring
# retry-after / x-should-retry (counted in /sim/stats). See sdk/conformance.mjs.
#
# The SDK is installed with `npm ci` into $AQ_BIN/sdk-node (the build tree),
# once per lock file: offline after the first run. Exit 77 (skip) only when
# node/npm are missing or the registry cannot be reached for that first install.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { echo "SKIP: node/npm not installed"; exit 77; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "SKIP: the SDK needs Node 20 or later (have $(node --version))"; exit 77; }

cache="$AQ_BIN/sdk-node"
stamp="$cache/.lock.sha256"
want=$(sha256sum "$here/sdk/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$cache/node_modules/@anthropic-ai/sdk" ]; then
    rm -rf "$cache"
    mkdir -p "$cache"
    cp "$here/sdk/package.json" "$here/sdk/package-lock.json" "$cache/"
    if ! (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error > "$T/npm.log" 2>&1); then
        if grep -qiE "ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH|network" "$T/npm.log"; then
            echo "SKIP: the npm registry is unreachable for the first install"; tail -3 "$T/npm.log"
            rm -rf "$cache"
            exit 77
        fi
        cat "$T/npm.log" >&2
        fail "npm ci failed"
    fi
    echo "$want" > "$stamp"
fi
cp "$here/sdk/conformance.mjs" "$cache/conformance.mjs"
installed=$(node -p "require('$cache/node_modules/@anthropic-ai/sdk/package.json').version")
[ "$installed" = "1.17.0" ] || fail "installed @anthropic-ai/sdk is $installed, not 1.17.0"
note "@anthropic-ai/sdk $installed, node $(node --version)"

# The main simulator: one accepted key, retry-after 1 s, a 1 MiB body cap.
start_sim --keys=sdk-key --retry_after=1 --max_body_bytes=1MiB
main_url=$SIM_URL
# A second one that answers every valid request 529 (the SDK's retry count).
SIM_529_PORT_FILE="$T/sim529.port"
"$SIM" --listen=127.0.0.1:0 --port_file="$SIM_529_PORT_FILE" --threads=1 --fault_529=1 --retry_after=0 \
    > "$T/sim529.log" 2>&1 &
PIDS+=("$!")
wait_until 10 test -s "$SIM_529_PORT_FILE" || fail "the 529 agentq-sim did not start"

if ! SIM_URL="$main_url" SIM_529_URL="http://127.0.0.1:$(cat "$SIM_529_PORT_FILE")" SIM_KEY=sdk-key \
    timeout 120 node "$cache/conformance.mjs" | tee "$T/conformance.log"; then
    fail "SDK conformance checks failed"
fi
note "$(grep -c '^ok - ' "$T/conformance.log") SDK checks passed"
