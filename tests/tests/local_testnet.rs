//! `--chain local`: two validator processes (alice, bob) that author with Aura and finalize
//! with GRANDPA across processes, and are both streamers: the origin publishes to both, and a
//! viewer can be served by either.

use bytes::Bytes;
use dsp_integration_tests::{viewer::Viewer, *};
use dsp_primitives::{AdmissionMode, Signed, StreamEnd};
use dsp_streaming::{
	net::{
		publish::{PublishConfig, Publisher},
		Endpoint,
	},
	segment::Segment,
	viewer::Transport,
};
use serde_json::json;
use std::{sync::Arc, time::Duration};

#[test]
fn two_validators_finalize_together_and_either_serves_a_viewer() {
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

	// Both validators run a streaming worker as registered streamers.
	let genesis: [u8; 32] = alice.block_hash(0).into();
	let mut workers = Vec::new();
	for node in [&alice, &bob] {
		let load = node.call("dsp_liveLoad", json!([]));
		assert_eq!(
			(load["running"].as_bool(), load["registered"].as_bool()),
			(Some(true), Some(true)),
			"{load}"
		);
		workers.push(load["tcp"].as_str().expect("tcp").parse().expect("address"));
	}
	// The demo origin (Alice) publishes three segments of stream 0 to both.
	let origin = pair("//Alice");
	let reports = tokio::runtime::Runtime::new().unwrap().block_on(async {
		let servers =
			workers.iter().map(|&addr| Endpoint { transport: Transport::Tcp, addr }).collect();
		let mut config = PublishConfig::new(0, servers);
		config.genesis_hash = genesis;
		let publisher = Publisher::start(config).expect("publisher");
		for seq in 0..3u64 {
			let media = Bytes::from(vec![seq as u8; 100_000]);
			publisher.push(Arc::new(Segment::build(&origin, genesis, 0, seq, 2000, media, 65_536)));
		}
		let end = StreamEnd { genesis_hash: genesis, stream: 0, next_sequence: 3 };
		publisher.finish(Signed::sign(end, &origin), Duration::from_secs(30)).await
	});
	assert_eq!(reports.len(), 2);
	assert!(reports.iter().all(|r| r.complete && r.acked == 3), "{reports:?}");
	// A viewer gets verified segments from either streamer.
	for addr in &workers {
		let mut viewer = Viewer::connect(&addr.to_string(), genesis);
		assert_eq!(viewer.mode, AdmissionMode::Direct);
		viewer.subscribe();
		assert_eq!((viewer.segment(), viewer.segment()), (1, 2), "from {addr}");
	}
}
