//! Embeds the version (`SUBSTRATE_CLI_IMPL_VERSION`: crate version + git commit) that
//! `dsp-node --version` prints and the node reports to telemetry.

use substrate_build_script_utils::{generate_cargo_keys, rerun_if_git_head_changed};

fn main() {
	generate_cargo_keys();
	rerun_if_git_head_changed();
}
