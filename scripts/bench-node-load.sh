#!/usr/bin/env bash
# Benchmark: the streaming load of `dsp load` against the worker inside `dsp-node --dev` (chain
# running), and whether blocks keep their time under it.
#
#   bash scripts/bench-node-load.sh [VIEWERS] [SECONDS] [tcp|udp]     (defaults 2000 60 tcp)
#
# Builds release binaries, starts `dsp-node --dev --no-demo` (blocks every 1 s when idle),
# samples the best block number every 100 ms over JSON-RPC for 20 s idle and then during the
# load, runs `dsp load --target-*` against the node's worker (stream 0, signed with //Alice for
# the dev chain), and prints the load tool's figures plus the block intervals (median, p95, max)
# idle and under load. Needs ports 7000/7001/9944 free.
set -euo pipefail
viewers=${1:-2000}
secs=${2:-60}
transport=${3:-tcp}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export WASM_BUILD_WORKSPACE_HINT="$root"
cargo build --locked --release -p dsp-node -p dsp-streaming
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work=$(mktemp -d)
ulimit -n 65536 || true
"$bin/dsp-node" --dev --no-demo --tmp --no-prometheus >"$work/node.log" 2>&1 &
node=$!
trap 'kill $node $sampler 2>/dev/null || true; rm -rf "$work"' EXIT
rpc() { curl -s -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" http://127.0.0.1:9944; }
for _ in $(seq 60); do rpc system_health '[]' >/dev/null 2>&1 && break; sleep 1; done
genesis=$(rpc chain_getBlockHash '[0]' | sed 's/.*"result":"\([^"]*\)".*/\1/')
# Block sampler: "<unix ms> <best number>" lines.
(while true; do
	n=$(rpc chain_getHeader '[]' | sed 's/.*"number":"\(0x[0-9a-f]*\)".*/\1/')
	echo "$(date +%s%3N) $((n))"
	sleep 0.1
done) >"$work/blocks" &
sampler=$!
sleep 20
idle_end=$(date +%s%3N)
"$bin/dsp" load --viewers "$viewers" --duration-secs "$secs" --transport "$transport" \
	--target-tcp 127.0.0.1:7000 --target-quic 127.0.0.1:7001 --target-pid "$node" \
	--stream 0 --origin-seed //Alice --genesis "$genesis"
load_end=$(date +%s%3N)
kill $sampler
# Block intervals: time between the first samples that saw each new block.
python3 - "$work/blocks" "$idle_end" "$load_end" <<'PY'
import sys, statistics
path, idle_end, load_end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
first = {}
for line in open(path):
    t, n = line.split()
    first.setdefault(int(n), int(t))
blocks = sorted(first.items())
def intervals(lo, hi):
    xs = [b[1] - a[1] for a, b in zip(blocks, blocks[1:]) if lo <= a[1] and b[1] <= hi]
    return xs
for name, lo, hi in [("idle", 0, idle_end), ("load", idle_end, load_end)]:
    xs = sorted(intervals(lo, hi))
    if not xs:
        print(f"[blocks] {name}: no blocks"); continue
    p95 = xs[min(len(xs) - 1, int(len(xs) * 0.95))]
    print(f"[blocks] {name}: blocks={len(xs)} median_ms={statistics.median(xs):.0f} p95_ms={p95} max_ms={xs[-1]}")
PY
