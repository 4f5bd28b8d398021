#!/usr/bin/env bash
# Benchmark: honest viewers mixed with attackers (issue 12). Runs `dsp load` (release build)
# with VIEWERS honest viewers of a 500 kbit/s stream, 16 per client address (127.10.x.y), against
# a `dsp serve` child with ALL its default limits, once without an attacker and once per attack
# of `dsp load --attack` (each from its own addresses, 127.66.0.x), and prints one table row per
# run: honest viewers held, stalls, refusals, drops, segments skipped or of another broadcast,
# whether a real publisher could start a new stream meanwhile, the server's peak RSS against
# its stated memory bound, and what the attacker achieved.
#
#   bash scripts/bench-attacks.sh [VIEWERS] [SECONDS] [tcp|udp]   (defaults 500 30 tcp)
#
# Each run: 5 s of attack alone, the honest viewers' ramp, SECONDS measured, teardown (about
# SECONDS + 15 s; bounded by `timeout`). Logs of every run stay in $ATTACK_LOGS if set.
set -euo pipefail
viewers=${1:-500}
secs=${2:-30}
transport=${3:-tcp}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cargo build --locked --release -p dsp-streaming --bin dsp
bin="${CARGO_TARGET_DIR:-$root/target}/release/dsp"
work=${ATTACK_LOGS:-$(mktemp -d)}
mkdir -p "$work"
ulimit -n 65536 2>/dev/null || true
load_pid=
cleanup() {
	# The load run and its `dsp serve` child, by their ids.
	if [ -n "$load_pid" ]; then
		for child in $(ps -o pid= --ppid "$load_pid" 2>/dev/null); do
			kill "$child" 2>/dev/null || true
		done
		kill "$load_pid" 2>/dev/null || true
	fi
	[ -z "${ATTACK_LOGS:-}" ] && rm -rf "$work"
	return 0
}
trap cleanup EXIT
rows=()
for attack in none replay session-flood slow-handshake publish-flood memory unknown-ids; do
	args=()
	[ "$attack" != none ] && args=(--attack "$attack")
	RUST_LOG=error timeout --kill-after=10 $((secs + 90)) "$bin" load --viewers "$viewers" \
		--viewers-per-address 16 --duration-secs "$secs" --transport "$transport" \
		--bitrate-kbps 500 "${args[@]}" >"$work/$attack.log" 2>&1 &
	load_pid=$!
	wait "$load_pid" || echo "run $attack: dsp load exited with $?" >&2
	load_pid=
	line=$(grep '^\[summary\]' "$work/$attack.log" || echo "[summary] attack=$attack failed")
	rows+=("$line")
	echo "$line" >&2
done
printf '%s\n' "${rows[@]}" >"$work/rows"
python3 - "$work/rows" <<'PY'
import sys
print("| run | honest held | stalls | refused | dropped | segments received / expected | skipped / foreign | new stream published | server peak RSS / bound | attacker achieved |")
print("|---|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    head, _, attacker = line.strip().partition(" attacker: ")
    f = dict(kv.split("=", 1) for kv in head.split()[1:] if "=" in kv)
    if "viewers" not in f:
        print(f"| {f.get('attack', '?')} | run failed | | | | | | | | |")
        continue
    a = dict(kv.split("=", 1) for kv in attacker.split() if "=" in kv)
    if a:
        mib = int(a["bytes_accepted"]) / 1048576
        what = (f"{a['attempts']} attempts, {a['admitted']} admitted, peak {a['peak_held']} held, "
                f"{a['refused']} refused, {a['closed_by_server']} closed by server, "
                f"{a['segments_accepted']} segments / {mib:.0f} MiB accepted; {a['reasons']}")
    else:
        what = "-"
    refused = int(f["refused"]) + int(f["failed"])
    print(f"| {f['attack']} | {f['held']} / {f['viewers']} | {f['stalls']} | {refused} | {f['dropped']} | "
          f"{f['segments']} / {f['expected_segments']} | {f['skipped']} / {f['foreign']} | {f['fresh_publish']} | {f['peak_rss_mib']} / {f['bound_mib']} MiB | {what} |")
PY
