#!/usr/bin/env bash
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Runs the libFuzzer targets in fuzz/ (cargo-fuzz on the nightly toolchain), each for
# SECONDS_PER_TARGET (default 60) one after another, and prints per target the executions, the
# corpus size and any crash (its input file and panic message). Exit status 1 if a target
# crashed. Targets: frames p2p_wire claim_item ledger ts hls session (default: all). A crash
# input replays with `fuzz/target/<host>/release/<target> <file>`.
#
# The fuzz crate has its own workspace and target dir (fuzz/target, about 2.5 GB; the first
# build takes ~5 min on 2 cores), so nothing here touches the main build. Corpora grow in
# fuzz/corpus/<target>, crash inputs land in fuzz/artifacts/<target>, logs in fuzz/logs; all
# three are gitignored.
#
# Without nightly or cargo-fuzz it runs the same harnesses briefly on stable instead, as the
# normal test run does: cargo test -p dsp-streaming --lib fuzz::
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frames p2p_wire claim_item ledger ts hls session)

if ! rustup run nightly rustc --version >/dev/null 2>&1 || ! cargo fuzz --version >/dev/null 2>&1; then
	echo "nightly or cargo-fuzz missing (rustup toolchain install nightly --profile minimal;" >&2
	echo "cargo install cargo-fuzz): running the harnesses briefly on stable instead" >&2
	exec cargo test -p dsp-streaming --lib fuzz::
fi

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir="$root/fuzz/target"
echo "== building the fuzz targets (nightly, release with debug assertions)"
(cd fuzz && cargo +nightly fuzz build --target-dir "$target_dir")

mkdir -p fuzz/logs
failed=0
printf '\n%-12s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
	bin="$target_dir/$host/release/$t"
	mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
	log="fuzz/logs/$t.log"
	status=0
	"$bin" "fuzz/corpus/$t" -max_total_time="$seconds" -print_final_stats=1 -max_len=4096 \
		-rss_limit_mb=2048 -timeout=10 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || status=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
	if [ "$status" -eq 0 ]; then
		result=ok
	else
		failed=1
		artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
		result="CRASH ${artifact:-(see $log)}"
	fi
	printf '%-12s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
	if [ "$status" -ne 0 ]; then
		grep -m1 -A2 "panicked at" "$log" | sed 's/^/    /' || tail -5 "$log" | sed 's/^/    /'
	fi
done
exit "$failed"
