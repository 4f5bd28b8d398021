#!/usr/bin/env bash
# The main job: installs what is missing, builds and starts a single-node development chain
# (`dsp-node --dev`): blocks every second, Alice funded and authorised, JSON-RPC on
# ws://127.0.0.1:9944, state in a temporary directory, and the streaming worker with the ffmpeg
# demo stream 0. Watch it with `target/debug/dsp watch --stream 0`. Extra arguments go to dsp-node.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
# The same build as scripts/test.sh (node, `dsp` and the tests): after one, the other compiles
# nothing.
bash scripts/build.sh
echo "watch the demo stream: ${CARGO_TARGET_DIR:-$root/target}/debug/dsp watch --stream 0"
exec "${CARGO_TARGET_DIR:-$root/target}/debug/dsp-node" --dev "$@"
