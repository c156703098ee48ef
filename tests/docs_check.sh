#!/usr/bin/env bash
# The README's configuration tables list every option the programs have, with
# the defaults the programs print (scripts/config-table.sh regenerates them).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${AQ_BIN:?}"
missing=0
rows=0
for bin in cmd/agentq-worker/agentq-worker cmd/agentq-sim/agentq-sim; do
    while IFS= read -r row; do
        rows=$((rows + 1))
        grep -qF -- "$row" README.md || { echo "README lacks or differs: $row"; missing=$((missing + 1)); }
    done < <(scripts/config-table.sh "$AQ_BIN/$bin")
done
# Every option the programs print must have produced a row.
want=$(( $("$AQ_BIN/cmd/agentq-worker/agentq-worker" --print-config | wc -l) + \
         $("$AQ_BIN/cmd/agentq-sim/agentq-sim" --print-config | wc -l) ))
[ "$rows" -eq "$want" ] || { echo "FAIL: $rows table rows for $want options (scripts/config-table.sh missed some)"; exit 1; }
[ "$missing" -eq 0 ] || { echo "FAIL: $missing option rows; regenerate with scripts/config-table.sh"; exit 1; }
echo "docs_check: every option of agentq-worker and agentq-sim is in the README"
