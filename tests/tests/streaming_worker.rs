//! The streaming worker inside `dsp-node --dev`: the demo stream plays, capacity settings changed
//! by extrinsic reach new admissions within a block without dropping anyone, the live load is
//! visible over `dsp_liveLoad` and Prometheus, and after a kill and restart on the same base
//! path the chain state is there and a running `dsp watch` plays on.
//!
//! Needs ffmpeg for the demo stream (the test setup installs it); `DSP_SKIP_FFMPEG=1` skips.

use dsp_integration_tests::{viewer::Viewer, *};
use dsp_primitives::{AdmissionMode, CapacitySettings, EndpointsView, Perbill};
use dsp_runtime::{Runtime, RuntimeCall};
use pallet_dsp::Call as DspCall;
use serde_json::json;
use sp_core::Pair;
use std::{
	path::Path,
	process::{Child, Command, Stdio},
	sync::Arc,
	time::{Duration, Instant},
};

fn skip() -> bool {
	let skip = std::env::var_os("DSP_SKIP_FFMPEG").is_some();
	if skip {
		eprintln!("DSP_SKIP_FFMPEG set: skipping the demo-stream test");
	}
	skip
}

fn set_settings(node: &Node, max_streams: u32, r_percent: u32) -> u32 {
	let settings =
		CapacitySettings { max_streams, streaming_rate: Perbill::from_percent(r_percent) };
	let call =
		RuntimeCall::Dsp(DspCall::<Runtime>::set_streamer_settings { settings: Some(settings) });
	assert!(succeeded(&node.submit(&pair("//Alice"), call)));
	node.best_number()
}

#[test]
fn dev_node_serves_its_demo_stream_and_applies_new_capacity_within_a_block() {
	if skip() {
		return;
	}
	let metrics_port = free_port().to_string();
	let port = free_port().to_string();
	let node_args = ["--dev", "--port", &port, "--prometheus-port", &metrics_port];
	let node = Node::start(&[&node_args[..], &WORKER_ON_LOOPBACK[..]].concat());
	let load = node.wait_segments(2);
	assert_eq!(load["running"], true, "{load}");
	assert_eq!(load["registered"], true, "{load}");
	assert_eq!(load["settings"]["p2pThreshold"], 2000, "{load}");
	let tcp = load["tcp"].as_str().expect("tcp address").to_string();
	let genesis: [u8; 32] = node.block_hash(0).into();

	// A viewer is served directly and gets verified segments in order.
	let mut first = Viewer::connect(&tcp, genesis);
	assert_eq!(first.mode, AdmissionMode::Direct);
	first.subscribe();
	let a = first.segment();
	let b = first.segment();
	assert_eq!(b, a + 1);
	assert_eq!(node.live_load()["sessions"], json!({"direct": 1, "p2p": 0}));

	// The streamer (Alice) moves to max_streams 2, r = 0.5: threshold 1, so the next viewer is
	// admitted in P2P mode. The worker applies it within one block of inclusion.
	let included = set_settings(&node, 2, 50);
	let applied_at = node.wait_for("new settings at the worker", Duration::from_secs(30), || {
		let load = node.live_load();
		(load["settings"]["maxStreams"] == 2).then(|| node.best_number())
	});
	assert!(applied_at <= included + 1, "applied at #{applied_at}, included at #{included}");
	assert_eq!(node.live_load()["settings"]["p2pThreshold"], 1);
	let second = Viewer::connect(&tcp, genesis);
	assert_eq!(second.mode, AdmissionMode::P2p);
	assert_eq!(node.live_load()["sessions"], json!({"direct": 1, "p2p": 1}));

	// Nobody was dropped: the first viewer's stream goes on without a gap.
	let c = first.segment();
	assert!(c > b, "segment {c} after {b}");

	// The same figures on Prometheus (refreshed every second; Substrate adds a `chain` label).
	let gauge = |metrics: &str, name: &str, label: &str| -> Option<u64> {
		metrics
			.lines()
			.find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
			.and_then(|l| l.rsplit(' ').next()?.parse().ok())
	};
	node.wait_for("worker gauges", Duration::from_secs(10), || {
		let metrics = http_get(&format!("127.0.0.1:{metrics_port}"), "/metrics");
		(gauge(&metrics, "dsp_streaming_sessions", "mode=\"direct\"") == Some(1)
			&& gauge(&metrics, "dsp_streaming_sessions", "mode=\"p2p\"") == Some(1)
			&& gauge(&metrics, "dsp_streaming_p2p_threshold", "chain=") == Some(1))
		.then_some(())
	});
}

/// Sequence numbers of the segments a `dsp watch --record` wrote so far, of every broadcast
/// (`<dir>/<stream>/<broadcast>/<sequence>.ts`).
fn recorded(dir: &Path) -> Vec<u64> {
	let entries = |d: &Path| -> Vec<std::path::PathBuf> {
		std::fs::read_dir(d)
			.map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
			.unwrap_or_default()
	};
	let mut seqs: Vec<u64> = entries(dir)
		.iter()
		.flat_map(|stream| entries(stream))
		.flat_map(|broadcast| entries(&broadcast))
		.filter_map(|f| f.file_name()?.to_str()?.strip_suffix(".ts")?.parse().ok())
		.collect();
	seqs.sort_unstable();
	seqs
}

/// Kills the child process when dropped (a failing test leaves nothing behind).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
	fn drop(&mut self) {
		let _ = self.0.kill();
		let _ = self.0.wait();
	}
}

#[test]
fn chain_state_and_the_worker_come_back_after_a_restart_and_a_viewer_plays_on() {
	if skip() {
		return;
	}
	// Fixed worker ports, so that the restarted node is where the viewer left it.
	let (tcp, quic) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
	let args = [
		"--dev",
		"--no-prometheus",
		"--stream-tcp",
		&tcp,
		"--stream-quic",
		&quic,
		"--stream-p2p",
		"none",
	];
	let base = Arc::new(tempfile::tempdir().unwrap());
	let node = Node::start_at(base.clone(), &args);
	node.wait_segments(1);
	set_settings(&node, 10, 50);
	let height = node.best_number();
	let genesis = node.block_hash(0);

	// A real viewer process: `dsp watch` over TCP, recording every segment it plays.
	let record = tempfile::tempdir().unwrap();
	let mut watch = KillOnDrop(
		Command::new(dsp_binary())
			.args(["watch", "--stream", "0", "--server", &format!("tcp://{tcp}")])
			.args(["--origin-key", &hex::encode(pair("//Alice").public().0)])
			.args(["--genesis", &hex::encode(genesis.as_bytes())])
			.args(["--transport", "tcp", "--status-interval-secs", "0"])
			.arg("--record")
			.arg(record.path())
			.stdout(Stdio::null())
			.stderr(Stdio::null())
			.spawn()
			.expect("dsp watch starts"),
	);
	node.wait_for("the viewer to play two segments", Duration::from_secs(60), || {
		(recorded(record.path()).len() >= 2).then_some(())
	});
	let before = *recorded(record.path()).last().unwrap();
	drop(node); // killed

	let started = Instant::now();
	let node = Node::start_at(base, &args);
	assert!(node.best_number() >= height, "chain state lost: #{} < #{height}", node.best_number());
	assert_eq!(node.block_hash(0), genesis);
	let load = node.wait_segments(1);
	assert_eq!(load["settings"]["maxStreams"], 10, "{load}");
	assert_eq!(load["settings"]["p2pThreshold"], 5, "{load}");

	// The same viewer process reconnected by itself and plays what the restarted node serves.
	node.wait_for("the viewer to play on after the restart", Duration::from_secs(90), || {
		let after: Vec<u64> = recorded(record.path()).into_iter().filter(|&s| s > before).collect();
		(after.len() >= 2).then_some(())
	});
	assert!(watch.0.try_wait().unwrap().is_none(), "dsp watch exited");
	assert_eq!(node.live_load()["sessions"]["direct"], 1);
	eprintln!("playback resumed {:?} after the restart", started.elapsed());
}

#[test]
fn an_unregistered_streamer_waits_and_starts_when_it_registers_by_extrinsic() {
	// Charlie holds the streaming key but is no streamer at genesis, and no listen address is
	// given: the node runs its chain and the worker waits for Charlie's record.
	let node = Node::start(&["--dev", "--charlie", "--no-prometheus", "--no-demo"]);
	assert_eq!(node.live_load()["running"], false);
	assert!(node.log().contains("streaming worker waiting"), "{}", tail(&node.log(), 20));

	let (tcp, quic) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
	let endpoints = EndpointsView {
		tcp: tcp.clone().into_bytes(),
		quic: quic.clone().into_bytes(),
		p2p: Vec::new(),
		rpc: format!("http://{}", node.rpc_addr).into_bytes(),
	};
	let call =
		RuntimeCall::Dsp(DspCall::<Runtime>::register_streamer { endpoints, settings: None });
	assert!(succeeded(&node.submit(&pair("//Charlie"), call)));
	let load = node.wait_for("the worker to start", Duration::from_secs(30), || {
		let load = node.live_load();
		(load["running"] == true).then_some(load)
	});
	assert_eq!((load["tcp"].as_str(), load["quic"].as_str()), (Some(&*tcp), Some(&*quic)));
	assert_eq!(load["registered"], true);
	assert_eq!(load["streamer"], address(&pair("//Charlie")));
	// It serves: a viewer is welcomed (stream 0 has no segments here, the admission is enough).
	let viewer = Viewer::connect(&tcp, node.block_hash(0).into());
	assert_eq!(viewer.mode, AdmissionMode::Direct);
}
