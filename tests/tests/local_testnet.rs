//! `--chain local`: two validator processes (alice, bob) that author with Aura and finalize
//! with GRANDPA across processes, and are both streamers: the origin publishes to both, a viewer
//! can be served by either, and a streamer that is full with no P2P left redirects viewers to
//! the other one as the chain lists it.

use bytes::Bytes;
use dsp_integration_tests::{viewer::Viewer, *};
use dsp_primitives::{AdmissionMode, CapacitySettings, EndpointsView, Perbill, Signed, StreamEnd};
use dsp_runtime::RuntimeCall;
use dsp_streaming::{
	net::{
		publish::{PublishConfig, Publisher},
		Endpoint,
	},
	protocol::{ErrorCode, ServerAddrs},
	segment::Segment,
	viewer::Transport,
};
use pallet_dsp::Call as DspCall;
use serde_json::json;
use std::{net::SocketAddr, sync::Arc, time::Duration};

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
	let mut quic = Vec::new();
	for node in [&alice, &bob] {
		let load = node.call("dsp_liveLoad", json!([]));
		assert_eq!(
			(load["running"].as_bool(), load["registered"].as_bool()),
			(Some(true), Some(true)),
			"{load}"
		);
		workers.push(load["tcp"].as_str().expect("tcp").parse().expect("address"));
		quic.push(load["quic"].as_str().expect("quic").to_string());
	}
	let (alice_tcp, bob_tcp): (SocketAddr, SocketAddr) = (workers[0], workers[1]);

	// Bob announces where his worker really listens (the tests use OS-assigned ports); Alice
	// takes one direct viewer and no P2P (max_streams 1, r = 0), so she redirects the next one.
	let endpoints = EndpointsView {
		tcp: bob_tcp.to_string().into_bytes(),
		quic: quic[1].clone().into_bytes(),
		p2p: Vec::new(),
		rpc: format!("http://{}", bob.rpc_addr).into_bytes(),
	};
	let call = RuntimeCall::Dsp(DspCall::update_streamer_endpoints { endpoints });
	assert!(succeeded(&bob.submit(&pair("//Bob"), call)));
	let included_by = bob.best_number();
	let settings = CapacitySettings { max_streams: 1, streaming_rate: Perbill::zero() };
	let call = RuntimeCall::Dsp(DspCall::set_streamer_settings { settings: Some(settings) });
	assert!(succeeded(&alice.submit(&pair("//Alice"), call)));
	// The worker applies both at finality: wait until Bob's endpoints are finalized too.
	alice.wait_for("Alice's worker to apply max_streams 1", Duration::from_secs(120), || {
		(alice.live_load()["settings"]["maxStreams"] == 1
			&& alice.finalized_number() >= included_by)
			.then_some(())
	});
	// The demo origin (Alice) publishes three segments of stream 0 to both.
	let origin = pair("//Alice");
	let reports = tokio::runtime::Runtime::new().unwrap().block_on(async {
		let servers =
			workers.iter().map(|&addr| Endpoint { transport: Transport::Tcp, addr }).collect();
		let mut config = PublishConfig::new(0, servers, origin.clone());
		config.genesis_hash = genesis;
		let publisher = Publisher::start(config).expect("publisher");
		for seq in 0..3u64 {
			let media = Bytes::from(vec![seq as u8; 100_000]);
			publisher
				.push(Arc::new(Segment::build(&origin, genesis, 0, 0, seq, 2000, media, 65_536)));
		}
		let end = StreamEnd { genesis_hash: genesis, stream: 0, broadcast: 0, next_sequence: 3 };
		publisher.finish(Signed::sign(end, &origin), Duration::from_secs(30)).await
	});
	assert_eq!(reports.len(), 2);
	assert!(reports.iter().all(|r| r.complete && r.acked == 3), "{reports:?}");
	// A viewer gets verified segments from either streamer; Alice's stays connected.
	let mut viewers = Vec::new();
	for addr in &workers {
		let mut viewer = Viewer::connect(&addr.to_string(), genesis);
		assert_eq!(viewer.mode, AdmissionMode::Direct);
		viewer.subscribe();
		assert_eq!((viewer.segment(), viewer.segment()), (1, 2), "from {addr}");
		viewers.push(viewer);
	}

	// Alice is full with no P2P left: the next viewer is sent Bob's endpoints (read from the
	// chain by Alice's worker), then refused; at Bob it is served.
	let (redirect, refusal) = Viewer::refused(&alice_tcp.to_string(), genesis);
	assert_eq!(refusal, ErrorCode::Full);
	assert_eq!(
		redirect,
		vec![ServerAddrs { tcp: Some(bob_tcp.to_string()), quic: Some(quic[1].clone()) }]
	);
	let target = redirect[0].tcp.as_deref().unwrap();
	let mut redirected = Viewer::connect(target, genesis);
	assert_eq!(redirected.mode, AdmissionMode::Direct);
	redirected.subscribe();
	assert_eq!((redirected.segment(), redirected.segment()), (1, 2));
	let load = alice.live_load();
	assert_eq!(
		(load["redirects"].as_u64(), load["refused"].as_u64()),
		(Some(1), Some(1)),
		"{load}"
	);
	assert_eq!(bob.live_load()["sessions"]["direct"], 2);
}
