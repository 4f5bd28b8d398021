#!/usr/bin/env bash
# Benchmark: receipts the chain verifies and settles per block, in a real run against a release
# `dsp-node --dev`, compared with the benchmarked weight of `claim` (see
# tests/src/bin/bench_claims.rs for what it does and prints).
#
#   bash scripts/bench-claims.sh [RECEIPTS]      (default 5000, at most 5 x MaxClaimBatch)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export WASM_BUILD_WORKSPACE_HINT="$root"
cargo build --locked --release -p dsp-node
export DSP_NODE_BIN="${CARGO_TARGET_DIR:-$root/target}/release/dsp-node"
# The client side (key derivation, signing) builds with the test profile: only the node's
# figures are measured.
cargo run --locked -p dsp-integration-tests --bin bench-claims -- "${1:-5000}"
