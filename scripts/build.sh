#!/usr/bin/env bash
# The one build of the workspace: the node, the `dsp` command and every test target, with one
# profile (dev, hot crypto/wasm crates optimised). `scripts/dev.sh` and `scripts/test.sh` both run
# exactly this, so features unify the same way and neither recompiles what the other built
# (with different package sets cargo would build some crates twice, with other features).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# substrate-wasm-builder finds the workspace by walking up from OUT_DIR; with a target dir
# outside the repository it must be told where the workspace is.
export WASM_BUILD_WORKSPACE_HINT="$root"
cargo build --locked --workspace --bins --tests "$@"
