#!/usr/bin/env bash
# Network lab: `dsp serve` and a publisher in one network namespace, `dsp watch` viewers in
# another, joined by a veth pair whose link is shaped and changed while the stream plays (tbf
# for rate, nftables for loss and blackholes, netlab-relay for delay and jitter: this kernel has
# no netem). Each scenario prints one row of what the viewers' players saw (see
# scripts/netlab-report.py and the README's "Network lab" section).
#
#   scripts/netlab.sh --list          the scenarios
#   scripts/netlab.sh SCENARIO...     run some
#   scripts/netlab.sh all             run every scenario of the baseline matrix
#   scripts/netlab.sh ci              the short CI scenario (rate step + UDP blackhole), with
#                                     assertions; prints SKIP and exits 0 without root/netns
#
# Needs root (namespaces, tc, nft). Builds nothing: build first, e.g.
#   cargo build -p dsp-streaming --bin dsp -p netlab
# Environment: DSP, NETLAB_RELAY (binaries; default $CARGO_TARGET_DIR or target/, debug),
# NETLAB_OUT (results dir; default /tmp/netlab-<time>), NETLAB_KBPS (video bitrate of the
# synthetic source, default 700 => about 800 kbit/s with audio and MPEG-TS overhead).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
DSP=${DSP:-$target/debug/dsp}
RELAY=${NETLAB_RELAY:-$target/debug/netlab-relay}
KBPS=${NETLAB_KBPS:-700}
OUT=${NETLAB_OUT:-/tmp/netlab-$(date -u +%Y%m%d-%H%M%S)}
REPORT="$repo/scripts/netlab-report.py"

# name | seconds the viewers watch | what it does
SCENARIOS=(
	"clean|60|no shaping: the reference"
	"rate-step|140|tbf 4000 kbit/s, 1500 at 30 s, 700 at 60 s, 4000 again at 100 s"
	"loss-3|60|3 % random loss each way (nft numgen)"
	"loss-10|60|10 % random loss each way (nft numgen)"
	"udp-blackhole|110|all UDP dropped from 20 s to 60 s, then restored"
	"outage|100|the whole link drops for 3 s every 30 s (at 30, 60, 90 s)"
	"rtt-80|60|80 ms RTT with ±10 ms jitter per direction, order kept (queueing jitter), through netlab-relay"
	"rtt-80-reorder|60|as rtt-80, but each datagram gets its own jitter, so UDP is reordered (as netem jitter does)"
	"ci|90|short CI run: 4000 -> 1500 kbit/s at 15 s, UDP blackholed 30..60 s; asserts 0 gaps, 0 duplicates, TCP during the blackhole, segments keep coming"
)

list() {
	for s in "${SCENARIOS[@]}"; do
		IFS='|' read -r name secs what <<<"$s"
		printf '%-14s %4ss  %s\n' "$name" "$secs" "$what"
	done
}

die() {
	echo "netlab: $*" >&2
	exit 2
}

[ $# -ge 1 ] || die "usage: $0 --list | all | ci | SCENARIO... (see --list)"
case "$1" in
--list | -l)
	list
	exit 0
	;;
--help | -h)
	sed -n '2,20p' "$0"
	exit 0
	;;
esac

# Root and namespaces: the CI scenario skips (exit 0) without them, the others fail.
skip_or_die() {
	if [ "$*" = "ci" ]; then
		echo "SKIP netlab ci: $REASON"
		exit 0
	fi
	die "$REASON"
}
if [ "$(id -u)" != 0 ]; then
	REASON="not root (network namespaces, tc and nft need root)"
	skip_or_die "$@"
fi

# Tools, installed when missing (Debian packages; idempotent).
need() { # command package
	command -v "$1" >/dev/null 2>&1 && return 0
	echo "netlab: installing $2 for $1"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; } ||
		die "cannot install $2"
}
need ip iproute2
need tc iproute2
need nft nftables
need ffmpeg ffmpeg
need python3 python3
for b in "$DSP" "$RELAY"; do
	[ -x "$b" ] || die "$b missing: cargo build -p dsp-streaming --bin dsp -p netlab"
done
probe=nlp$$
if ! ip netns add "$probe" 2>/dev/null; then
	REASON="cannot create a network namespace"
	skip_or_die "$@"
fi
ip netns del "$probe"

NS_S=nlS$$ # server side: dsp serve + publisher
NS_V=nlV$$ # viewer side: dsp watch (and the relay)
DEV_S=nlS$$
DEV_V=nlV$$
IP_S=10.77.0.1
IP_V=10.77.0.2
PORT=7700
KEY=$("$DSP" key --seed //Alice)
PIDS=()
mkdir -p "$OUT"

S() { ip netns exec "$NS_S" "$@"; }
V() { ip netns exec "$NS_V" "$@"; }
now_ms() { date +%s%3N; }

# `spawn S|V cmd...`: starts cmd in that namespace in its own process group (setsid), and
# remembers the group's id so that teardown ends exactly it.
spawn() {
	local ns=$NS_V
	[ "$1" = S ] && ns=$NS_S
	shift
	setsid ip netns exec "$ns" "$@" &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
	disown "$LAST_PID" # no "Killed" job notices at teardown
}

teardown() {
	local p
	for p in "${PIDS[@]}"; do kill -INT -- "-$p" 2>/dev/null || true; done
	sleep 1
	for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
	PIDS=()
	ip netns del "$NS_S" 2>/dev/null || true
	ip netns del "$NS_V" 2>/dev/null || true
}
on_exit() {
	teardown
	if [ -n "${WATCHDOG:-}" ]; then
		pkill -P "$WATCHDOG" 2>/dev/null || true # its sleep
		kill "$WATCHDOG" 2>/dev/null || true
	fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

setup() {
	ip netns add "$NS_S"
	ip netns add "$NS_V"
	ip link add "$DEV_S" type veth peer name "$DEV_V"
	ip link set "$DEV_S" netns "$NS_S"
	ip link set "$DEV_V" netns "$NS_V"
	S ip addr add "$IP_S/24" dev "$DEV_S"
	V ip addr add "$IP_V/24" dev "$DEV_V"
	S ip link set lo up
	V ip link set lo up
	S ip link set "$DEV_S" up
	V ip link set "$DEV_V" up
	# One nft table on the viewer side: `in` is the downstream, `out` the upstream.
	V nft -f - <<-EOF
		table inet netlab {
			chain in { type filter hook input priority 0; policy accept; }
			chain out { type filter hook output priority 0; policy accept; }
		}
	EOF
}

# Link profile changes; each is logged with its Unix ms time in $RUN/events.
event() { echo "$(now_ms) $*" >>"$RUN/events"; }
rate() { # kbit/s both ways, or "off"
	local side dev
	for side in S V; do
		[ $side = S ] && dev=$DEV_S || dev=$DEV_V
		if [ "$1" = off ]; then
			$side tc qdisc del dev "$dev" root 2>/dev/null || true
		else
			# 300 ms of queue at the rate, 16 KiB bursts: a home router's shaper, not netem.
			$side tc qdisc replace dev "$dev" root tbf rate "${1}kbit" burst 16kb latency 300ms
		fi
	done
	event "rate $1"
}
filter() { # nft statement for both chains ("" clears), and a label
	V nft flush chain inet netlab in
	V nft flush chain inet netlab out
	if [ -n "$1" ]; then
		V nft add rule inet netlab in iifname "$DEV_V" "$1"
		V nft add rule inet netlab out oifname "$DEV_V" "$1"
	fi
	event "$2"
}
loss() { filter "numgen random mod 100 < $1 drop" "loss $1%"; }
udp_blackhole() { filter "meta l4proto udp drop" "udp blackhole"; }
link_down() { filter "drop" "link down"; }
clear_filter() { filter "" "${1:-filter clear}"; }

start_origin() { # extra `dsp serve` args...
	spawn S "$DSP" serve --tcp "$IP_S:$PORT" --quic "$IP_S:$PORT" --origin-key "$KEY" \
		--max-sessions-per-address 64 --max-handshakes-per-address 64 "$@" \
		>"$RUN/serve.out" 2>"$RUN/serve.log"
	local i
	for i in $(seq 100); do
		FP=$(sed -n 's/^fingerprint //p' "$RUN/serve.out")
		[ -n "$FP" ] && break
		sleep 0.1
	done
	[ -n "$FP" ] || die "dsp serve did not start (see $RUN/serve.log)"
	# The synthetic source: test pattern + tone, x264 CBR at $KBPS, 2 s GOP, in real time.
	# The publisher records each segment as it cuts it: the file's mtime is the cut time.
	spawn S bash -c "exec ffmpeg -nostdin -loglevel error -re -f lavfi -i testsrc2=size=640x360:rate=25 \
		-f lavfi -i sine=frequency=440:sample_rate=48000 -c:v libx264 -preset ultrafast -g 50 \
		-keyint_min 50 -sc_threshold 0 -b:v ${KBPS}k -minrate ${KBPS}k -maxrate ${KBPS}k \
		-bufsize ${KBPS}k -x264-params nal-hrd=cbr -c:a aac -b:a 64k -f mpegts - 2>'$RUN/ffmpeg.log' \
		| '$DSP' publish --stream 1 --input - --server tcp://$IP_S:$PORT \
		--origin-seed //Alice --record '$RUN/published' 2>'$RUN/publish.log'"
	for i in $(seq 300); do
		[ -e "$RUN/published/2.ts" ] && return 0
		sleep 0.1
	done
	die "no segment published within 30 s (see $RUN/publish.log, $RUN/ffmpeg.log)"
}

watch_direct() { # name server-host:port, extra args...
	local name=$1 addr=$2
	shift 2
	spawn V "$DSP" watch --stream 1 --server "tcp://$addr" --server "quic://$addr" \
		--origin-key "$KEY" --quic-fingerprint "$FP" --stats-json "$RUN/$name.json" "$@" \
		>"$RUN/$name.out" 2>"$RUN/$name.log"
}

stop_viewers() { # the viewers get SIGINT and write their final summary
	local p
	for p in "${VIEWERS[@]}"; do kill -INT -- "-$p" 2>/dev/null || true; done
	for p in "${VIEWERS[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
	done
}

T0=0
at() { # seconds since the viewers started
	local wait_ms=$((T0 + $1 * 1000 - $(now_ms)))
	[ $wait_ms -gt 0 ] && sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
	return 0
}

run() { # scenario
	local name=$1 secs
	secs=$(printf '%s\n' "${SCENARIOS[@]}" | awk -F'|' -v n="$name" '$1 == n { print $2 }')
	[ -n "$secs" ] || die "unknown scenario $name (see --list)"
	RUN="$OUT/$name"
	rm -rf "$RUN"
	mkdir -p "$RUN/published"
	echo "== $name ($secs s of watching; files in $RUN)"
	setup
	start_origin
	VIEWERS=()
	local addr="$IP_S:$PORT"
	case $name in
	loss-3) loss 3 ;;
	loss-10) loss 10 ;;
	rate-step) rate 4000 ;;
	ci) rate 4000 ;;
	rtt-80 | rtt-80-reorder)
		local order=(--udp-keep-order)
		[ "$name" = rtt-80-reorder ] && order=()
		spawn V "$RELAY" --listen 127.0.0.1:17700 --target "$IP_S:$PORT" \
			--one-way-delay-ms 40 --one-way-jitter-ms 10 "${order[@]}" 2>"$RUN/relay.log"
		addr=127.0.0.1:17700
		event "rtt 80 ms"
		;;
	esac
	sleep 0.3
	T0=$(now_ms)
	echo "$T0 viewers start" >>"$RUN/events"
	watch_direct viewer "$addr"
	VIEWERS+=("$LAST_PID")
	case $name in
	rate-step)
		at 30 && rate 1500
		at 60 && rate 700
		at 100 && rate 4000
		;;
	udp-blackhole)
		at 20 && udp_blackhole
		at 60 && clear_filter "udp restored"
		;;
	outage)
		for t in 30 60 90; do
			at $t && link_down
			at $((t + 3)) && clear_filter "link up"
		done
		;;
	ci)
		at 15 && rate 1500
		at 30 && udp_blackhole
		at 60 && clear_filter "udp restored"
		;;
	esac
	at "$secs"
	stop_viewers
	echo "$(now_ms) viewers stopped" >>"$RUN/events"
	teardown
	local check=()
	[ "$name" = ci ] && check=(--check-ci)
	python3 "$REPORT" --scenario "$name" --run "$RUN" --table "$OUT/results.md" "${check[@]}"
}

# A watchdog bounds the whole run (every scenario's length plus 60 s of setup each).
budget=0
names=("$@")
[ "$1" = all ] && names=(clean rate-step loss-3 loss-10 udp-blackhole outage rtt-80 rtt-80-reorder)
for n in "${names[@]}"; do
	s=$(printf '%s\n' "${SCENARIOS[@]}" | awk -F'|' -v n="$n" '$1 == n { print $2 }')
	[ -n "$s" ] || die "unknown scenario $n (see --list)"
	budget=$((budget + s + 60))
done
(
	sleep "$budget"
	echo "netlab: over the time budget of $budget s; stopping" >&2
	kill -TERM $$
) &
WATCHDOG=$!

for n in "${names[@]}"; do
	run "$n"
done
echo
echo "results: $OUT/results.md"
cat "$OUT/results.md"
