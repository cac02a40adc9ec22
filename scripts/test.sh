#!/usr/bin/env bash
# The project's test command (README, .ci/run): set up, build the binary and the plugin components the
# tests load, then run every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/build-plugins.sh ]; then
    bash scripts/build-plugins.sh
fi
cargo build -p sluice --bins
cargo test --workspace --no-fail-fast
