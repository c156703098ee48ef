# agentq image: agentq-worker (entrypoint), agentq (CLI) and agentq-sim.
#   docker build -t agentq:0.1.0 .
# The build stage runs scripts/setup.sh, the script CI runs (.ci/run ->
# scripts/test.sh -> scripts/setup.sh --test), with the same -Werror flag:
# the image ships what CI tests. tests/docker/check_dockerfile.sh checks this
# file against the built binaries (every shared library they load comes from
# a package the runtime stage installs) and is part of the test suite.

FROM debian:12-slim AS build
WORKDIR /src
COPY . .
# setup.sh apt-installs the -dev packages, configures and builds into build/.
RUN scripts/setup.sh build -DAQ_WERROR=ON \
 && ctest --test-dir build -L unit --output-on-failure \
 && install -D -m 0755 -t /out \
        build/cmd/agentq-worker/agentq-worker build/cmd/agentq/agentq build/cmd/agentq-sim/agentq-sim

FROM debian:12-slim
# Only the shared libraries the binaries load (no -dev packages, no compiler).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        libc6 \
        libcurl4 \
        libevent-2.1-7 \
        libevent-pthreads-2.1-7 \
        libgcc-s1 \
        libjansson4 \
        libnats3.4 \
        libprotobuf-c1 \
        libssl3 \
        libstdc++6 \
        libxxhash0 \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid/gid, so Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 agentq \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin agentq
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
# /metrics, /healthz and /readyz of agentq-worker (metrics_port).
EXPOSE 9090
ENTRYPOINT ["agentq-worker"]
