//! A stock client (polkadot.js, tests/js) reads every pallet-dsp storage item, calls the runtime
//! API and submits a signed claim against a real `dsp-node --dev`, from metadata alone.

use dsp_integration_tests::*;
use std::{path::Path, process::Command, time::Duration};

#[test]
fn polkadot_js_reads_storage_and_submits_a_claim() {
	let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
	assert!(
		js.join("node_modules/@polkadot/api").exists(),
		"tests/js dependencies are missing: run `bash scripts/setup.sh`"
	);
	let node = Node::start(&["--dev", "--port", &free_port().to_string(), "--no-prometheus"]);
	node.wait_for("block #1", Duration::from_secs(60), || (node.best_number() >= 1).then_some(()));

	let out = Command::new("node")
		.current_dir(&js)
		.args(["third_party_client.mjs", &format!("ws://{}", node.rpc_addr)])
		.output()
		.expect("node (Node.js) runs");
	let stdout = String::from_utf8_lossy(&out.stdout);
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert!(
		out.status.success() && stdout.contains("third-party client: OK"),
		"polkadot.js client failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nnode log:\n{}",
		tail(&node.log(), 30)
	);
}
