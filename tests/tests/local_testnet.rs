//! `--chain local`: two validator processes (alice, bob) that author with Aura and finalize
//! with GRANDPA across processes.

use dsp_integration_tests::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn two_validators_finalize_blocks_together() {
	let alice_port = free_port();
	let alice = Node::start(&[
		"--chain",
		"local",
		"--alice",
		"--validator",
		"--port",
		&alice_port.to_string(),
		"--no-prometheus",
		"--no-mdns",
	]);
	let peer_id = alice.call("system_localPeerId", json!([]));
	let bootnode = format!("/ip4/127.0.0.1/tcp/{alice_port}/p2p/{}", peer_id.as_str().unwrap());
	let bob = Node::start(&[
		"--chain",
		"local",
		"--bob",
		"--validator",
		"--port",
		&free_port().to_string(),
		"--no-prometheus",
		"--no-mdns",
		"--bootnodes",
		&bootnode,
	]);

	// GRANDPA needs both votes (2 of 2): finality past genesis proves they talk to each other.
	for node in [&alice, &bob] {
		node.wait_for("GRANDPA finality beyond block 2", Duration::from_secs(240), || {
			(node.finalized_number() >= 3).then_some(())
		});
	}
	// Both agree on the finalized chain.
	let n = alice.finalized_number().min(bob.finalized_number());
	assert_eq!(alice.block_hash(n), bob.block_hash(n));
	let peers = alice.call("system_health", json!([]));
	assert!(peers["peers"].as_u64().unwrap() >= 1, "{peers}");
	// Blocks were authored by both validators (Aura round robin).
	assert!(alice.best_number() >= 3);
}
