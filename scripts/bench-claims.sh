#!/usr/bin/env bash
# Benchmark: receipts the chain verifies and settles per block, in a real run against
# `dsp-node --dev`, compared with the benchmarked weight of `claim` (see
# tests/src/bin/bench_claims.rs for what it does and prints).
#
# Usage: bash scripts/bench-claims.sh [--profile release|dev] [RECEIPTS]
#        bash scripts/bench-claims.sh --help
#
#   RECEIPTS           (pass, receipt) pairs to claim; default 5000, at most 5 x MaxClaimBatch.
#   --profile release  (default) build and measure `cargo build --locked --release -p dsp-node`.
#   --profile dev      build and measure `cargo build --locked -p dsp-node`, the profile the test
#                      suite builds the node with (no second, release build of the node on a
#                      shared machine). The runtime is wasm compiled in release either way, and
#                      the dev profile builds the host crypto crates at opt-level 3 (Cargo.toml),
#                      so a claim's signature checks run at release speed in both.
#   DSP_NODE_BIN=path  measure that node binary and build no node (overrides --profile).
#
# The client side (key derivation, signing) always builds with the test profile: only the
# node's figures are measured.
set -euo pipefail
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
profile=release
receipts=5000
while [ $# -gt 0 ]; do
	case "$1" in
	-h | --help) usage; exit 0 ;;
	--profile)
		[ $# -ge 2 ] || { usage >&2; exit 2; }
		profile=$2
		shift 2
		;;
	--profile=*) profile=${1#--profile=}; shift ;;
	[0-9]*) receipts=$1; shift ;;
	*) usage >&2; exit 2 ;;
	esac
done
case "$profile" in
release | dev) ;;
*) echo "--profile must be release or dev, not $profile" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export WASM_BUILD_WORKSPACE_HINT="$root"
target="${CARGO_TARGET_DIR:-$root/target}"
if [ -n "${DSP_NODE_BIN:-}" ]; then
	[ -x "$DSP_NODE_BIN" ] || { echo "DSP_NODE_BIN=$DSP_NODE_BIN is not executable" >&2; exit 2; }
	echo "[claims] node: $DSP_NODE_BIN (DSP_NODE_BIN, not built here)"
elif [ "$profile" = release ]; then
	cargo build --locked --release -p dsp-node
	export DSP_NODE_BIN="$target/release/dsp-node"
	echo "[claims] node: release profile ($DSP_NODE_BIN)"
else
	cargo build --locked -p dsp-node
	export DSP_NODE_BIN="$target/debug/dsp-node"
	echo "[claims] node: dev (test) profile ($DSP_NODE_BIN); wasm runtime in release"
fi
cargo run --locked -p dsp-integration-tests --bin bench-claims -- "$receipts"
