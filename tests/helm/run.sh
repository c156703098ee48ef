#!/usr/bin/env bash
# Render tests of the Helm chart (helm itself is not installed): build the
# render harness (tests/helm/render, GOPATH mode, Debian's Go packages, no
# network), then run tests/helm/test_chart.py against the built binaries.
#
#   AQ_BIN=<build dir> [AQ_HELM_WORK=<dir>] tests/helm/run.sh
#
# Needs (Debian 12): golang-go golang-github-masterminds-sprig-dev
# golang-gopkg-yaml.v2-dev golang-github-xeipuuv-gojsonschema-dev python3-yaml
# (scripts/setup.sh --test installs them).
# Exit: 0 pass, 1 fail, 77 skipped (prerequisite missing).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${AQ_BIN:-$root/build}
gocode=${AQ_GOCODE:-/usr/share/gocode}
py=${AQ_PYTHON:-/usr/bin/python3}

command -v go >/dev/null 2>&1 || { echo "SKIP: go not installed"; exit 77; }
for pkg in github.com/Masterminds/sprig gopkg.in/yaml.v2 github.com/xeipuuv/gojsonschema; do
	[ -d "$gocode/src/$pkg" ] || { echo "SKIP: $gocode/src/$pkg missing (scripts/setup.sh --test)"; exit 77; }
done
"$py" -c 'import yaml' 2>/dev/null || { echo "SKIP: $py has no yaml module (apt-get install python3-yaml)"; exit 77; }

work=${AQ_HELM_WORK:-}
if [ -z "$work" ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/aq-helm.XXXXXX")
	trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work=$(cd "$work" && pwd) # GOCACHE must be absolute

export GO111MODULE=off GOPATH="$gocode" GOCACHE="$work/gocache" GOFLAGS= CGO_ENABLED=0
(cd "$here/render" && go build -o "$work/render" .)
exec "$py" "$here/test_chart.py" --render "$work/render" --bin "$bin"
