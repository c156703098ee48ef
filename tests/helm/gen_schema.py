#!/usr/bin/env python3
"""Generate helm/agentq/values.schema.json.

The chart's `config:` map takes the worker's options by name and
`simulator.config:` the simulator's. Their names, help and types come from
the binaries themselves, so the schema cannot go stale silently:

  * names, environment variables, defaults and ranges from `--help`;
  * the type of each option by probing: `--print-config --NAME=@@probe`
    fails with "is not an integer / a duration / a size / true or false /
    a number" for typed options; for text options it succeeds and prints the
    value back, "<redacted>" for secrets, credentials-masked for URL lists,
    or is refused (exit 2) for a reason of the option's own (not a URL, not
    a bucket name, not in allowed_models): a string too.

Secrets (api_key, nats_password, nats_token) are left out of `config`:
additionalProperties=false then refuses them, because they belong in a
Secret, never in the ConfigMap. Everything else of the schema is the
hand-written tests/helm/values.schema.in.json.

  usage: gen_schema.py --worker BIN --sim BIN [--check FILE | --out FILE]
  --check FILE  exit 1 with a diff if FILE differs from what would be generated
"""
import argparse
import difflib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TEMPLATE = os.path.join(HERE, "values.schema.in.json")
SCHEMA = os.path.join(ROOT, "helm", "agentq", "values.schema.json")

# Options the chart sets itself from other values (simulator.port).
SIM_CHART_OWNED = {"listen", "port_file"}

PROBE = "@@probe"
# The loader's type hints (internal/core/config.c type_hint()).
HINTS = [
    ("is not an integer", "int"),
    ("is not a duration", "duration"),
    ("is not a size", "bytes"),
    ("is not true or false", "bool"),
    ("is not a number", "double"),
]
DURATION = r"^\s*[0-9]+(\.[0-9]+)?\s*([mM][sS]|[sSmMhH])?\s*$"
BYTES = r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgG][iI]?[bB]?|[bB])?\s*$"

OPT_RE = re.compile(r"^  --(\S+)\s+(.*)$")
ENV_RE = re.compile(r"^\s+env (\S+), default (.*?)(?:, range \[(\S+), (\S+)\])?$")


def run(binary, *args):
    # A clean environment: no AGENTQ_* variable of the caller may interfere.
    env = {"PATH": "/usr/bin:/bin"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    p = subprocess.run([binary, *args], capture_output=True, text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def parse_help(binary):
    rc, out, err = run(binary, "--help")
    lines = (out + err).splitlines()
    opts = []
    for i, line in enumerate(lines):
        m = OPT_RE.match(line)
        if not m or i + 1 >= len(lines):
            continue
        e = ENV_RE.match(lines[i + 1])
        if not e:
            continue  # --config FILE, --print-config
        name, help_text = m.group(1), m.group(2).strip()
        env, default, lo, hi = e.groups()
        opts.append({"name": name, "help": help_text, "env": None if env == "-" else env,
                     "default": None if default == "(none)" else default, "min": lo, "max": hi})
    if not opts:
        sys.exit(f"gen_schema: no options found in `{binary} --help`")
    return opts


def probe_type(binary, name):
    args = [f"--{name}={PROBE}"]
    rc, out, err = run(binary, "--print-config", *args)
    # An option that needs another ("nats_tls_cert is set but nats_tls_key
    # is not"): probe the pair.
    while rc != 0 and len(args) < 4:
        m = re.search(r"is set but (\w+) is not", err)
        if not m:
            break
        args.append(f"--{m.group(1)}={PROBE}")
        rc, out, err = run(binary, "--print-config", *args)
    if rc != 0:
        for hint, kind in HINTS:
            if hint in err:
                return kind
        # Only the numeric and bool types refuse any text as such: a text
        # option may still refuse the probe for a reason of its own (not a
        # URL, not a bucket name, not in allowed_models), a usage error.
        if rc == 2:
            return "string"
        sys.exit(f"gen_schema: cannot tell the type of {name}: {err.strip()}")
    for line in out.splitlines():
        key, _, value = line.partition(" = ")
        if key == name:
            if value == "<redacted>":
                return "secret"
            return "string" if value == PROBE else "urls"
    sys.exit(f"gen_schema: {name} missing from `{binary} --print-config`")


def exact(bound):
    """A %g-printed bound as a number, or None: %g keeps 6 significant
    digits, so a bound printed with all 6 may have been rounded."""
    digits = re.sub(r"[^0-9]", "", bound.split("e")[0]).lstrip("0")
    if len(digits) >= 6:
        return None
    v = float(bound)
    return int(v) if v == int(v) else v


def option_schema(o, kind):
    env = f"env {o['env']}, " if o["env"] else ""
    desc = f"{o['help']} ({env}default {o['default'] or 'none'})"
    s = {"description": desc}
    lo = exact(o["min"]) if o["min"] is not None else None
    hi = exact(o["max"]) if o["max"] is not None else None
    if kind in ("string", "urls"):
        s["type"] = "string"
    elif kind == "bool":
        s["type"] = "boolean"
    elif kind in ("int", "double"):
        s["type"] = "integer" if kind == "int" else "number"
    elif kind == "duration":
        s["type"] = ["integer", "string"]  # a bare number is milliseconds
        s["pattern"] = DURATION
    elif kind == "bytes":
        s["type"] = ["integer", "string"]
        s["pattern"] = BYTES
    # Bounds bind numbers only (a "5m" string is checked by the worker).
    if kind in ("int", "double", "duration", "bytes"):
        if lo is not None:
            s["minimum"] = lo
        if hi is not None:
            s["maximum"] = hi
    return s


def options_schema(binary, skip):
    props = {}
    for o in parse_help(binary):
        kind = probe_type(binary, o["name"])
        if kind == "secret" or o["name"] in skip:
            continue
        props[o["name"]] = option_schema(o, kind)
    return props


def generate(worker, sim):
    with open(TEMPLATE) as f:
        schema = json.load(f)
    schema["$comment"] = ("GENERATED by tests/helm/gen_schema.py from tests/helm/values.schema.in.json "
                          "and the options of `agentq-worker --help` and `agentq-sim --help`. "
                          "Do not edit: edit the .in.json, then run tests/helm/gen_schema.py.")
    schema["properties"]["config"]["properties"] = options_schema(worker, set())
    schema["properties"]["simulator"]["properties"]["config"]["properties"] = \
        options_schema(sim, SIM_CHART_OWNED)
    return json.dumps(schema, indent=2) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--check", metavar="FILE")
    ap.add_argument("--out", metavar="FILE", default=SCHEMA)
    a = ap.parse_args()
    text = generate(a.worker, a.sim)
    if a.check:
        with open(a.check) as f:
            have = f.read()
        if have != text:
            sys.stdout.writelines(difflib.unified_diff(
                have.splitlines(True), text.splitlines(True), a.check, "generated"))
            print(f"\n{a.check} is out of date with the binaries' options. Regenerate it:\n"
                  f"  tests/helm/gen_schema.py --worker {a.worker} --sim {a.sim}\n"
                  "and review values.yaml (config:) and the README's configuration table.",
                  file=sys.stderr)
            return 1
        print(f"{a.check}: up to date ({a.worker}, {a.sim})")
        return 0
    with open(a.out, "w") as f:
        f.write(text)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
