#!/usr/bin/env bash
# Checks the Dockerfile against reality, since no container engine runs on
# the CI machines:
#   * both stages are debian:12-slim; the build stage runs scripts/setup.sh
#     with the flags scripts/test.sh (what CI runs) gives it;
#   * the runtime stage installs no -dev package, runs as a fixed non-root
#     uid, and ships the three binaries;
#   * every shared library the three built binaries need directly (NEEDED)
#     comes from a package the runtime stage installs by name, and every
#     library ldd resolves comes from one of those packages or their
#     dependencies (apt-cache depends --recurse): the image can run them;
#   * .dockerignore keeps build directories out of the build context.
#
#   AQ_BIN=<build dir> tests/docker/check_dockerfile.sh
# Exit: 0 pass, 1 fail, 77 skipped (no dpkg: not Debian).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${AQ_BIN:-$root/build}
df=${AQ_DOCKERFILE:-$root/Dockerfile}
fail=0
bad() { echo "FAIL: $*"; fail=1; }

command -v dpkg >/dev/null || { echo "SKIP: dpkg missing (not Debian)"; exit 77; }
[ -f "$df" ] || { echo "FAIL: no Dockerfile"; exit 1; }

# The Dockerfile with continuation lines joined and comments dropped.
flat=$(sed -e 's/#.*$//' "$df" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' | tr -s ' ')
stages=$(grep -c '^FROM ' <<<"$flat")
[ "$stages" -eq 2 ] || bad "want 2 stages (build, runtime), found $stages"
grep -q '^FROM debian:12-slim AS build' <<<"$flat" || bad "build stage is not debian:12-slim AS build"
runtime=$(awk '/^FROM /{n++} n==2' <<<"$flat")
grep -q '^FROM debian:12-slim *$' <<<"$runtime" || bad "runtime stage is not debian:12-slim"
build=$(awk '/^FROM /{n++} n==1' <<<"$flat")

# The build runs the CI script with CI's flags (scripts/test.sh).
ci_flags=$(grep -o 'scripts/setup.sh --test "\$BUILD_DIR" [^"]*"\$@"' "$root/scripts/test.sh" |
	sed -e 's/.*"\$BUILD_DIR" //' -e 's/ *"\$@"//')
[ -n "$ci_flags" ] || bad "cannot find setup.sh's flags in scripts/test.sh"
grep -q "RUN scripts/setup.sh build $ci_flags" <<<"$build" ||
	bad "build stage does not run 'scripts/setup.sh build $ci_flags' (what CI builds with)"

# Runtime: packages, user, binaries.
pkgs=$(grep -o 'apt-get install [^&]*' <<<"$runtime" | tr ' ' '\n' | grep -v -e '^-' -e '^apt-get$' -e '^install$' -e '^$' | sort -u)
[ -n "$pkgs" ] || bad "runtime stage installs no packages"
if grep -q -- '-dev$' <<<"$pkgs"; then bad "runtime stage installs -dev packages: $(grep -- '-dev$' <<<"$pkgs" | tr '\n' ' ')"; fi
grep -qx ca-certificates <<<"$pkgs" || bad "runtime stage lacks ca-certificates (TLS to the provider and NATS)"
grep -q 'rm -rf /var/lib/apt/lists' <<<"$runtime" || bad "runtime stage keeps the apt lists"
user=$(grep '^USER ' <<<"$runtime" | tail -1 | awk '{print $2}')
uid=${user%%:*}
[[ "$uid" =~ ^[0-9]+$ ]] && [ "$uid" -ne 0 ] || bad "USER '$user' is not a numeric non-root uid (runAsNonRoot needs a number)"
grep -q "useradd .*--uid $uid" <<<"$runtime" || bad "no user with uid $uid created"
grep -q '^COPY --from=build /out/ /usr/local/bin/' <<<"$runtime" || bad "runtime does not copy the binaries from the build stage"
for b in agentq-worker agentq agentq-sim; do
	grep -q "build/cmd/$b/$b" <<<"$build" || bad "build stage does not install $b"
done
grep -q '^ENTRYPOINT \["agentq-worker"\]' <<<"$runtime" || bad "ENTRYPOINT is not agentq-worker"

# Shared libraries of the real binaries.
bins=("$bin/cmd/agentq-worker/agentq-worker" "$bin/cmd/agentq/agentq" "$bin/cmd/agentq-sim/agentq-sim")
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "FAIL: $b not built"; exit 1; }; done

owner() { # the package owning a library file (usrmerge: try /usr too)
	local f r
	f=$1
	r=$(readlink -f "$f")
	for p in "$f" "$r" "/usr$f" "${f#/usr}" "${r#/usr}"; do
		dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1 && return 0
	done
	return 1
}
# Sanitizer builds pull in libasan/libubsan, which the image never ships.
sanitizer='^lib(asan|ubsan|lsan|tsan)\.'

closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
	--no-replaces --no-enhances $pkgs 2>/dev/null | grep -v '^ ' | grep -v '^<' | sed 's/:.*//' | sort -u)

for b in "${bins[@]}"; do
	name=$(basename "$b")
	# Direct needs: each from a package the Dockerfile names.
	for lib in $(readelf -d "$b" | awk '/NEEDED/ {gsub(/[][]/, "", $5); print $5}'); do
		[[ "$lib" =~ $sanitizer ]] && continue
		path=$(ldd "$b" | awk -v l="$lib" '$1 == l {print $3}')
		[ -n "$path" ] || { bad "$name: $lib not found by ldd"; continue; }
		pkg=$(owner "$path") || { bad "$name: no package owns $path"; continue; }
		grep -qx "$pkg" <<<"$pkgs" || bad "$name needs $lib from $pkg, which the runtime stage does not install"
	done
	# Everything ldd loads: from those packages or their dependencies. (In a
	# sanitizer build, what only the sanitizer runtime loads is left out.)
	san_deps=$(ldd "$b" | awk -v re="$sanitizer" '$1 ~ re {print $3}' | xargs -r ldd |
		awk '$2 == "=>" {print $1}' | sort -u)
	while read -r lib path; do
		[[ "$lib" =~ $sanitizer ]] && continue
		grep -qx "$lib" <<<"$san_deps" && ! readelf -d "$b" | grep -q "\[$lib\]" && continue
		pkg=$(owner "$path") || { bad "$name: no package owns $path"; continue; }
		grep -qx "$pkg" <<<"$closure" || bad "$name loads $lib from $pkg, not a dependency of the runtime packages"
	done < <(ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
done

# The build context.
di=$root/.dockerignore
if [ -f "$di" ]; then
	for p in build 'build-*' .git; do grep -qx -- "$p" "$di" || bad ".dockerignore does not exclude $p"; done
else
	bad "no .dockerignore"
fi

if [ "$fail" -ne 0 ]; then exit 1; fi
echo "Dockerfile: 2 debian:12-slim stages, build via 'scripts/setup.sh build $ci_flags', runtime packages:" $pkgs
echo "  user $user; the shared libraries of ${#bins[@]} binaries all come from the runtime packages"
