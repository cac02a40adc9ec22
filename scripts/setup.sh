#!/usr/bin/env bash
# Makes a fresh Debian machine able to build and test Sluice. Idempotent: a second run is quick.
#  - Debian packages the test suite starts for real (none beyond the toolchain yet: etcd/redis join
#    here when the scale-out features land);
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
apt_install curl ca-certificates

if [ -f scripts/wasm-toolchain.sh ]; then
    bash scripts/wasm-toolchain.sh
fi
echo "setup: ok"
