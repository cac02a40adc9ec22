#!/usr/bin/env bash
# Builds every Sluice plugin crate to a Wasm component:
#   plugins/ (the guest workspace: built-in plugins and testdata/ fixtures) and examples/*/ plugin crates
#   (a plugin crate is a `cdylib`; library crates such as plugins/support are built but not componentized)
#   -> wasm32-unknown-unknown core modules (cargo, release)
#   -> components via scripts/componentize (the wit-component crate)
#   -> target/plugins/<crate-name>.wasm
#
# Why a script plus a tiny helper binary rather than a build.rs or xtask: guests build for another target
# with their own profile; a build.rs in the gateway would run nested cargo on every host build and contend for
# the target-dir lock, and an xtask would add a host workspace member for what is two cargo calls and a loop.
#
# Env: SLUICE_WASM_ROUTE=rustup|debian (default: from target/wasm-toolchain.env, written by
#      scripts/wasm-toolchain.sh; run that first on a fresh machine), PLUGINS_OUT (default target/plugins).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PLUGINS_OUT:-$ROOT/target/plugins}"
GUEST_TARGET_DIR="$ROOT/target/wasm-guests"
TOOLS_TARGET_DIR="$ROOT/target/tools"
mkdir -p "$OUT"

if [ -z "${SLUICE_WASM_ROUTE:-}" ]; then
  if [ ! -f "$ROOT/target/wasm-toolchain.env" ]; then
    "$ROOT/scripts/wasm-toolchain.sh"
  fi
  # shellcheck disable=SC1091
  . "$ROOT/target/wasm-toolchain.env"
fi

guest_cargo() {
  # $1: manifest dir; builds all its packages for wasm32-unknown-unknown.
  if [ "${SLUICE_WASM_ROUTE:-rustup}" = "debian" ]; then
    (cd "$1" && RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$GUEST_TARGET_DIR" \
      /usr/bin/cargo build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort)
  else
    (cd "$1" && CARGO_TARGET_DIR="$GUEST_TARGET_DIR" cargo build --release --target wasm32-unknown-unknown)
  fi
}

echo "build-plugins: helper" >&2
(cd "$ROOT/scripts/componentize" && CARGO_TARGET_DIR="$TOOLS_TARGET_DIR" cargo build --release --quiet)
COMPONENTIZE="$TOOLS_TARGET_DIR/release/sluice-componentize"

# Crate dirs: plugins/ workspace members that are plugins (a `cdylib` crate-type: a library crate such as
# plugins/support has no core module of its own to componentize), plus each examples/*/ that depends on the SDK.
crates=()
while IFS= read -r manifest; do
  if grep -q '^crate-type *=.*"cdylib"' "$manifest"; then crates+=("$(dirname "$manifest")"); fi
done < <(find "$ROOT/plugins" -mindepth 2 -name Cargo.toml -not -path '*/target/*' | sort)
examples=()
for m in "$ROOT"/examples/*/Cargo.toml; do
  [ -f "$m" ] && grep -q 'sluice-plugin-sdk' "$m" && examples+=("$(dirname "$m")")
done

echo "build-plugins: guests (plugins/ workspace)" >&2
guest_cargo "$ROOT/plugins"
for ex in "${examples[@]}"; do
  echo "build-plugins: guest $(basename "$ex")" >&2
  guest_cargo "$ex"
done

built=0
for dir in "${crates[@]}" "${examples[@]}"; do
  name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)"
  core="$GUEST_TARGET_DIR/wasm32-unknown-unknown/release/${name//-/_}.wasm"
  if [ ! -f "$core" ]; then echo "build-plugins: no core module for $name at $core" >&2; exit 1; fi
  "$COMPONENTIZE" "$core" "$OUT/$name.wasm"
  echo "build-plugins: $OUT/$name.wasm ($(wc -c < "$OUT/$name.wasm") bytes)" >&2
  built=$((built + 1))
done
echo "build-plugins: $built components in $OUT"
