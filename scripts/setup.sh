#!/usr/bin/env bash
# Makes a fresh Debian machine able to build and test Sluice. Idempotent: a second run is quick.
#  - Debian packages the test suite starts for real: etcd-server and redis-server (the cluster tests run
#    their own processes on ephemeral ports), and protobuf-compiler, which the etcd client needs to build;
#  - the benchmark harness's peers and load tools (nginx, HAProxy, wrk, h2load, openssl), which the test
#    suite's smoke run of bench/run.sh starts;
#  - the wasm targets for plugins (scripts/wasm-toolchain.sh: rustup, falling back to Debian's rustc-web).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    fi
}

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
apt_install curl ca-certificates etcd-server redis-server protobuf-compiler \
    nginx-light haproxy wrk nghttp2-client openssl

# The packages start etcd (:2379), Redis (:6379), nginx (:80) and HAProxy as services where systemd runs;
# the tests and the harness start their own, so stop and disable these rather than leave daemons holding
# well-known ports.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    for service in etcd redis-server nginx haproxy; do
        if systemctl is-enabled --quiet "$service" 2>/dev/null || systemctl is-active --quiet "$service" 2>/dev/null; then
            $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    done
fi

if [ -f scripts/wasm-toolchain.sh ]; then
    bash scripts/wasm-toolchain.sh
fi
echo "setup: ok"
