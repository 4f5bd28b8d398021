#!/usr/bin/env bash
# Installs what building, running and testing DSP needs. Idempotent: installs only what is
# missing, so it is cheap to run before every build.
#   - protoc (sc-network's build script needs it)
#   - ffmpeg (the demo stream and the streaming end-to-end tests)
#   - the Rust wasm target and rust-src (the runtime is also built to wasm)
#   - Node.js + npm and tests/js dependencies (the polkadot.js third-party client test)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

sudo_cmd=()
[ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]} (apt)"
	"${sudo_cmd[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32v1-none; then
	echo "setup: adding rust target wasm32v1-none"
	rustup target add wasm32v1-none
fi
if ! rustup component list --installed | grep -q '^rust-src'; then
	echo "setup: adding rust-src"
	rustup component add rust-src
fi

if [ ! -d "$root/tests/js/node_modules" ] || [ "$root/tests/js/package-lock.json" -nt "$root/tests/js/node_modules" ]; then
	echo "setup: installing tests/js dependencies (npm ci)"
	(cd "$root/tests/js" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
fi
