#!/usr/bin/env bash
# The project's test command (README, .ci/run): set up, build the plugin components the tests load, then
# build and run every test in the workspace. `cargo test` builds the `sluice` binary the integration tests
# start (gateway/ has integration tests, so cargo builds its bin target) with the same feature set as the
# tests, so no separate `cargo build` is needed (one would build it a second time under other features).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/build-plugins.sh ]; then
    bash scripts/build-plugins.sh
fi
cargo test --workspace --no-fail-fast
