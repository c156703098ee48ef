#!/usr/bin/env python3
"""Rewrite the README's option tables from the programs' own --help
(via scripts/config-table.sh).   usage: scripts/update-readme-tables.py BUILD_DIR"""
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
build = Path(sys.argv[1] if len(sys.argv) > 1 else "build")
readme = root / "README.md"
lines = readme.read_text().splitlines()

for heading, binary in (("### agentq-worker", "cmd/agentq-worker/agentq-worker"),
                        ("### agentq-sim", "cmd/agentq-sim/agentq-sim")):
    rows = subprocess.run([str(root / "scripts/config-table.sh"), str(build / binary)],
                          check=True, capture_output=True, text=True).stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(heading))
    sep = next(i for i in range(start, len(lines)) if lines[i].startswith("|---"))
    end = sep + 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[sep + 1:end] = rows

readme.write_text("\n".join(lines) + "\n")
