#!/usr/bin/env bash
# The test command: installs what is missing, builds the node and every test with one profile
# (dev, with hot crypto/wasm crates optimised), then runs all tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
# substrate-wasm-builder finds the workspace by walking up from OUT_DIR; with a target dir
# outside the repository it must be told where the workspace is.
export WASM_BUILD_WORKSPACE_HINT="$root"

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "format check"
cargo fmt --all -- --check

step "no RocksDB in the dependency tree"
if cargo tree --locked -i librocksdb-sys >/dev/null 2>&1; then
	echo "librocksdb-sys is a dependency: something enabled sc-cli/sc-service default features" >&2
	exit 1
fi

step "build node and tests"
bash scripts/build.sh

step "tests"
cargo test --locked --workspace

step "network lab, short scenario (rate step + UDP blackhole; skips without root/netns)"
bash scripts/netlab.sh ci

step "pallet benchmarks, run as tests"
cargo test --locked -p pallet-dsp --features runtime-benchmarks benchmarking

step "done"
