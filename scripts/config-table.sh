#!/usr/bin/env bash
# Print a program's option table (from its own --help) as Markdown, so the
# README's tables come from the code.   usage: scripts/config-table.sh BINARY
set -euo pipefail
"$1" --help | awk '
  /^  --[a-z0-9_]+ / && !/--config FILE|--print-config/ {
      name = $1; sub(/^--/, "", name); $1 = ""; help = substr($0, 2); next_is_meta = 1; next }
  next_is_meta && /env / {
      line = $0; sub(/^ +/, "", line)
      env = line; sub(/^env /, "", env); sub(/,.*/, "", env)
      def = line; sub(/.*default /, "", def); sub(/, range.*/, "", def)
      printf "| `%s` | `%s` | `%s` | %s |\n", name, env, def, help
      next_is_meta = 0 }'
