#!/usr/bin/env bash
# Makes a fresh Debian machine able to build Sluice Wasm plugins (guests).
#
# Route 1 (preferred): rustup's prebuilt std for the wasm targets.
#   wasm32-unknown-unknown  -> core module, componentized by scripts/build-plugins.sh (recommended: ~20 KB,
#                              imports only the sluice:plugin world)
#   wasm32-wasip2           -> optional; std pulls in WASI imports the gateway refuses at upload.
# Route 2 (fallback, when rustup cannot download): Debian's rustc-web + rust-web-src and build std from source
#   with -Zbuild-std. scripts/build-plugins.sh picks this route up by reading SLUICE_WASM_ROUTE=debian from
#   the file this script writes (target/wasm-toolchain.env), or from the environment.
#
# Idempotent; safe to re-run. Prints the route chosen on its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_FILE="$ROOT/target/wasm-toolchain.env"
mkdir -p "$ROOT/target"

have_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }

if command -v rustup >/dev/null 2>&1; then
  for t in wasm32-unknown-unknown wasm32-wasip2; do
    if have_target "$t"; then continue; fi
    echo "wasm-toolchain: rustup target add $t" >&2
    timeout 300 rustup target add "$t" >&2 || echo "wasm-toolchain: rustup could not add $t" >&2
  done
  if have_target wasm32-unknown-unknown; then
    echo "SLUICE_WASM_ROUTE=rustup" > "$ENV_FILE"
    echo "wasm-toolchain: route=rustup (wasm32-unknown-unknown ready)"
    exit 0
  fi
fi

echo "wasm-toolchain: falling back to Debian rustc-web + -Zbuild-std" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq >&2
# lld provides wasm-ld; Debian's versioned package name differs by release, so try the known ones in turn.
$SUDO apt-get install -y -qq rustc-web cargo-web rust-web-src >&2
for lld in lld-22 lld-19 lld-16 lld; do
  if $SUDO apt-get install -y -qq "$lld" >&2; then break; fi
done
command -v wasm-ld >/dev/null 2>&1 || for d in /usr/lib/llvm-*/bin; do
  [ -x "$d/wasm-ld" ] && ln -sf "$d/wasm-ld" /usr/local/bin/wasm-ld && break
done
cat > "$ENV_FILE" <<ENV
SLUICE_WASM_ROUTE=debian
ENV
echo "wasm-toolchain: route=debian (build with: RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort)"
