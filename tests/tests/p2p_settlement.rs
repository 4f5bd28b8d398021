//! Issue 5's end-to-end case: `dsp-node --dev` with its worker and ffmpeg demo stream, capacity
//! max_streams 10 and r = 0.5, and 20 viewers: 5 are served directly and 15 are admitted in P2P
//! mode (read from `dsp_liveLoad`). The P2P viewers are real libp2p nodes that fetch from each
//! other, sign receipts and keep seeder ledgers; every seeder then claims on chain with the
//! `dsp` tool's extrinsics. The credits paid equal the receipts' units times the stream's price,
//! and the origin's escrow is debited by exactly that.
//!
//! Needs ffmpeg for the demo stream (the test setup installs it); `DSP_SKIP_FFMPEG=1` skips.

use dsp_integration_tests::{viewer::Viewer, *};
use dsp_primitives::{AdmissionMode, CapacitySettings, Perbill};
use dsp_runtime::{Runtime, RuntimeCall};
use dsp_streaming::{
	chain::{
		client::ChainClient,
		extrinsic::{claim_call, signed_extrinsic},
	},
	net::{
		p2p::P2pConfig,
		p2p_watch::{self, P2pWatchConfig},
		Endpoint,
	},
	p2p::receipts::{LedgerConfig, PassSigners, SeederLedger},
	viewer::Transport,
};
use pallet_dsp::Call as DspCall;
use serde_json::json;
use sp_core::Pair;
use sp_runtime::MultiAddress;
use std::{
	sync::{
		atomic::{AtomicBool, AtomicU64, Ordering},
		Arc,
	},
	time::Duration,
};

/// Price per unit of the genesis demo stream 0.
const DEMO_PRICE: u128 = 1_000_000;
const DIRECT: usize = 5;
const P2P: usize = 15;
/// Segments every viewer plays before the counters are compared: 30 s of the demo stream (2 s
/// segments), enough for the node's estimate of the P2P share and the viewers' own count to
/// agree.
const WATCH_SEGMENTS: u64 = 15;
/// How long the viewers may take to play [`WATCH_SEGMENTS`]: six times real time, for a loaded
/// machine running debug builds.
const WATCH_BOUND: Duration = Duration::from_secs(180);

/// What the demo stream 0 still has committed: claims are paid out of it.
fn escrow(node: &Node) -> u128 {
	let stream = node.call("dsp_stream", json!([0]));
	stream["committed"].as_u64().map(u128::from).unwrap_or_else(|| {
		stream["committed"].as_str().and_then(|s| s.parse().ok()).expect("committed")
	})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_direct_fifteen_p2p_viewers_and_seeders_are_paid_exactly_their_receipts() {
	if std::env::var_os("DSP_SKIP_FFMPEG").is_some() {
		eprintln!("DSP_SKIP_FFMPEG set: skipping");
		return;
	}
	let port = free_port().to_string();
	let node = Node::start(
		&[&["--dev", "--port", &port, "--no-prometheus"], &WORKER_ON_LOOPBACK[..]].concat(),
	);
	let load = node.wait_segments(2);
	let tcp: std::net::SocketAddr = load["tcp"].as_str().unwrap().parse().unwrap();
	let url = format!("http://{}", node.rpc_addr);
	let chain = ChainClient::new(&url).unwrap();
	let runtime = chain.runtime_info().await.unwrap();
	let genesis = runtime.genesis_hash;
	let alice = pair("//Alice");

	// max_streams 10, r = 0.5: P2P from 5 direct sessions. Fund the 15 P2P viewers' accounts so
	// that, as seeders, they can pay for their claim extrinsics.
	let settings = CapacitySettings { max_streams: 10, streaming_rate: Perbill::from_percent(50) };
	let call =
		RuntimeCall::Dsp(DspCall::<Runtime>::set_streamer_settings { settings: Some(settings) });
	assert!(succeeded(&node.submit(&alice, call)));
	let viewers: Vec<sp_core::sr25519::Pair> =
		(0..P2P).map(|i| pair(&format!("//SwarmViewer{i}"))).collect();
	for v in &viewers {
		let call = RuntimeCall::Balances(pallet_balances::Call::<Runtime>::transfer_keep_alive {
			dest: MultiAddress::Id(v.public().into()),
			value: 1_000_000_000_000,
		});
		assert!(succeeded(&node.submit(&alice, call)));
	}
	node.wait_for("new settings at the worker", Duration::from_secs(30), || {
		(node.live_load()["settings"]["p2pThreshold"] == 5).then_some(())
	});
	let escrow_before = escrow(&node);

	// Five direct viewers, each reading on its own thread.
	let stop = Arc::new(AtomicBool::new(false));
	let mut direct = Vec::new();
	let mut direct_played = Vec::new();
	for _ in 0..DIRECT {
		let mut v = Viewer::connect(&tcp.to_string(), genesis);
		assert_eq!(v.mode, AdmissionMode::Direct);
		v.subscribe();
		let stop = stop.clone();
		let played = Arc::new(AtomicU64::new(0));
		direct_played.push(played.clone());
		direct.push(std::thread::spawn(move || {
			while !stop.load(Ordering::Relaxed) {
				v.segment();
				played.fetch_add(1, Ordering::Relaxed);
			}
			played.load(Ordering::Relaxed)
		}));
	}

	// Fifteen P2P viewers: real libp2p nodes on loopback with seeder ledgers on disk.
	let signers = PassSigners { default: vec![alice.public()], ..Default::default() };
	let dirs: Vec<tempfile::TempDir> = (0..P2P).map(|_| tempfile::tempdir().unwrap()).collect();
	let mut swarm = Vec::new();
	for (i, v) in viewers.iter().enumerate() {
		let ledger = LedgerConfig::new(genesis, v.public().0, signers.clone());
		let mut p2p = P2pConfig::loopback([i as u8 + 1; 32], ledger);
		p2p.ledger_dir = Some(dirs[i].path().to_path_buf());
		let mut config = P2pWatchConfig::new(
			genesis,
			0,
			alice.public(),
			Endpoint { transport: Transport::Tcp, addr: tcp },
			v.clone(),
			p2p,
		);
		config.gateway = None;
		let handle = p2p_watch::start(config, None).await.expect("admitted in P2P mode");
		assert_eq!(handle.pass.payload.issuer, alice.public(), "the node's dsps key signs passes");
		swarm.push(handle);
	}
	let load = node.live_load();
	assert_eq!(load["sessions"], json!({"direct": DIRECT, "p2p": P2P}), "{load}");
	assert_eq!(
		load["sessionsByTransport"],
		json!({"directTcp": DIRECT, "directQuic": 0, "p2pTcp": P2P, "p2pQuic": 0}),
		"{load}"
	);
	assert_eq!(load["passesIssued"], P2P, "{load}");

	// All 20 watch until each has played its share and seeders were sent receipts to claim.
	// The P2P viewers' counters are updated every second (the receipt interval). The wait
	// blocks this thread: `block_in_place` hands the runtime's other tasks (the P2P viewers)
	// to another one meanwhile.
	let watched = || {
		let direct_done = direct_played.iter().all(|p| p.load(Ordering::Relaxed) >= WATCH_SEGMENTS);
		let swarm: Vec<_> = swarm.iter().map(|h| h.stats()).collect();
		let p2p_done = swarm.iter().all(|s| s.play.segments_played >= WATCH_SEGMENTS);
		let receipts_sent = swarm.iter().any(|s| s.receipts_sent > 0);
		(direct_done && p2p_done && receipts_sent).then_some(())
	};
	tokio::task::block_in_place(|| {
		node.wait_for("every viewer to play, and receipts sent", WATCH_BOUND, watched)
	});

	// The node's estimate of the P2P share (media announced to P2P viewers that it did not
	// send them), read while they play, against what the viewers themselves counted.
	let node_share = node.live_load()["p2pShare"].as_f64().expect("P2P viewers got segments");
	let (mut from_peers, mut from_node) = (0, 0);
	for handle in swarm {
		let stats = handle.stop().await.expect("P2P viewer ran without error");
		assert!(stats.play.segments_played >= 5, "a P2P viewer played too little: {stats:?}");
		from_peers += stats.scheduler.bytes_from_peers;
		from_node += stats.scheduler.bytes_from_node;
	}
	let viewer_share = from_peers as f64 / (from_peers + from_node).max(1) as f64;
	eprintln!("P2P share: node estimate {node_share:.3}, viewers' count {viewer_share:.3}");
	assert!(node_share > 0.0 && node_share <= 1.0, "{node_share}");
	assert!((node_share - viewer_share).abs() < 0.1, "node {node_share} viewers {viewer_share}");
	stop.store(true, Ordering::Relaxed);
	for t in direct {
		assert!(t.join().expect("direct viewer") >= 5);
	}
	assert!(from_peers > 0, "no P2P viewer got anything from a peer");

	// Every seeder claims what its ledger holds.
	let mut paid_units = 0u64;
	for (v, dir) in viewers.iter().zip(&dirs) {
		let ledger = LedgerConfig::new(genesis, v.public().0, signers.clone());
		let ledger = SeederLedger::load(ledger, dir.path()).expect("ledger saved at shutdown");
		let (batches, rejected) = ledger.claim_batches(1024);
		assert!(rejected.is_empty(), "{rejected:?}");
		for batch in batches.into_iter().filter(|b| !b.is_empty()) {
			let units: u64 = batch.iter().map(|i| i.receipt.payload.units).sum();
			let account = v.public().0;
			let nonce = chain.account_nonce(&account).await.unwrap();
			let lifetime = chain.mortal_lifetime(64).await.unwrap();
			let xt = signed_extrinsic(v, &claim_call(&batch), nonce, &runtime, lifetime);
			chain.submit(&xt).await.unwrap();
			chain.wait_included(&account, nonce, Duration::from_secs(30)).await.unwrap();
			let credits = chain.credits(&account).await.unwrap();
			assert_eq!(credits.units_total, units, "seeder paid for exactly its receipts");
			assert_eq!(credits.available, units as u128 * DEMO_PRICE);
			paid_units += units;
		}
	}
	assert!(paid_units > 0, "no receipts were claimed");
	assert_eq!(escrow_before - escrow(&node), paid_units as u128 * DEMO_PRICE);
	eprintln!(
		"{P2P} P2P viewers got {from_peers} bytes from peers; seeders were paid {paid_units} units"
	);
}
