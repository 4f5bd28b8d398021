#!/usr/bin/env bash
# Benchmark: the streaming load of `dsp load` against the worker inside `dsp-node` with its chain
# running, and whether blocks keep their time under it.
#
#   bash scripts/bench-node-load.sh [VIEWERS] [SECONDS] [tcp|udp] [dev|local]
#                                   (defaults 2000 60 tcp dev)
#
# dev:   `dsp-node --dev --no-demo`: manual seal, a block every second when idle.
# local: `--chain local`, Alice and Bob as two validator processes (Aura, 6 s slots, GRANDPA);
#        the load goes to Alice's worker, both nodes and the load share the machine.
#
# Builds release binaries, samples the (first) node's best and finalized block numbers every
# 100 ms over JSON-RPC, idle (20 s for dev, 60 s for local) and then during the load, runs
# `dsp load --target-*` against the node's worker (stream 0, signed with //Alice, the genesis
# demo origin), and prints the load tool's figures plus the block intervals (median, p95, max)
# and the finality lag, idle and under load. Needs ports 7000/7001, 9944/9945 and 30333/30334
# free.
set -euo pipefail
viewers=${1:-2000}
secs=${2:-60}
transport=${3:-tcp}
chain=${4:-dev}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export WASM_BUILD_WORKSPACE_HINT="$root"
cargo build --locked --release -p dsp-node -p dsp-streaming
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work=$(mktemp -d)
ulimit -n 65536 2>/dev/null || true
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
rpc() { curl -s -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}" "http://127.0.0.1:$1"; }
wait_rpc() { for _ in $(seq 120); do rpc "$1" system_health '[]' >/dev/null 2>&1 && return; sleep 1; done; echo "node on $1 did not start" >&2; exit 1; }
# Every load viewer comes from 127.0.0.1: lift the worker's per-address limits (which exist
# to stop one address from taking the whole server) for this benchmark.
loopback_limits=(--stream-max-sessions-per-address 100000 --stream-max-handshakes-per-address 100000)
case "$chain" in
dev)
	idle_secs=20
	"$bin/dsp-node" --dev --no-demo --tmp --no-prometheus "${loopback_limits[@]}" >"$work/node.log" 2>&1 &
	node=$!
	pids+=("$node")
	wait_rpc 9944
	;;
local)
	idle_secs=60
	"$bin/dsp-node" --chain local --alice --validator --tmp --no-prometheus --no-mdns \
		"${loopback_limits[@]}" --port 30333 --rpc-port 9944 >"$work/alice.log" 2>&1 &
	node=$!
	pids+=("$node")
	wait_rpc 9944
	peer=$(rpc 9944 system_localPeerId '[]' | sed 's/.*"result":"\([^"]*\)".*/\1/')
	"$bin/dsp-node" --chain local --bob --validator --tmp --no-prometheus --no-mdns \
		--port 30334 --rpc-port 9945 --bootnodes "/ip4/127.0.0.1/tcp/30333/p2p/$peer" \
		>"$work/bob.log" 2>&1 &
	pids+=("$!")
	wait_rpc 9945
	# Wait for GRANDPA (needs both) before measuring.
	for _ in $(seq 120); do
		f=$(rpc 9944 chain_getFinalizedHead '[]' | sed 's/.*"result":"\([^"]*\)".*/\1/')
		n=$(rpc 9944 chain_getHeader "[\"$f\"]" | sed 's/.*"number":"\(0x[0-9a-f]*\)".*/\1/')
		[ $((n)) -ge 2 ] && break
		sleep 2
	done
	;;
*)
	echo "chain must be dev or local" >&2
	exit 2
	;;
esac
genesis=$(rpc 9944 chain_getBlockHash '[0]' | sed 's/.*"result":"\([^"]*\)".*/\1/')
# Sampler: "<unix ms> <best number> <finalized number>" lines.
(while true; do
	b=$(rpc 9944 chain_getHeader '[]' | sed 's/.*"number":"\(0x[0-9a-f]*\)".*/\1/')
	f=$(rpc 9944 chain_getFinalizedHead '[]' | sed 's/.*"result":"\([^"]*\)".*/\1/')
	n=$(rpc 9944 chain_getHeader "[\"$f\"]" | sed 's/.*"number":"\(0x[0-9a-f]*\)".*/\1/')
	echo "$(date +%s%3N) $((b)) $((n))"
	sleep 0.1
done) >"$work/blocks" &
pids+=("$!")
sleep "$idle_secs"
idle_end=$(date +%s%3N)
"$bin/dsp" load --viewers "$viewers" --duration-secs "$secs" --transport "$transport" \
	--target-tcp 127.0.0.1:7000 --target-quic 127.0.0.1:7001 --target-pid "$node" \
	--stream 0 --origin-seed //Alice --genesis "$genesis"
load_end=$(date +%s%3N)
# Block intervals (time between the first samples that saw each new best block) and finality
# lag (best minus finalized, per sample).
python3 - "$work/blocks" "$idle_end" "$load_end" "$chain" <<'PY'
import sys, statistics
path, idle_end, load_end, chain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
samples = [tuple(map(int, l.split())) for l in open(path) if len(l.split()) == 3]
first = {}
for t, best, _ in samples:
    first.setdefault(best, t)
blocks = sorted(first.items())
def pct(xs, q):
    return xs[min(len(xs) - 1, int(len(xs) * q))]
for name, lo, hi in [("idle", 0, idle_end), ("load", idle_end, load_end)]:
    xs = sorted(b[1] - a[1] for a, b in zip(blocks, blocks[1:]) if lo <= a[1] and b[1] <= hi)
    lag = sorted(b - f for t, b, f in samples if lo <= t <= hi)
    if not xs:
        print(f"[blocks] {chain} {name}: no blocks"); continue
    print(f"[blocks] {chain} {name}: blocks={len(xs)} interval median_ms={statistics.median(xs):.0f} "
          f"p95_ms={pct(xs, 0.95)} max_ms={xs[-1]} finality_lag_blocks median={statistics.median(lag):.0f} max={lag[-1]}")
PY
