//! `dsp load --p2p`: every load viewer a real P2P viewer (the `dsp watch --p2p` driver in
//! process), plus `dsp watch --p2p` children to measure and to kill; prints the P2P share of
//! the delivered bytes, the node's egress, stalls, and one viewer process's RSS and CPU.

use super::{load_config, spawn_server, Args};
use crate::args::pair_from_seed;
use anyhow::{bail, Context};
use dsp_streaming::{
	net::{
		load::{self, P2pTotals},
		p2p::P2pConfig,
		p2p_watch::{self, P2pWatchConfig},
	},
	p2p::{
		p2p_identity_seed,
		receipts::{LedgerConfig, PassSigners},
	},
};
use sp_core::Pair;
use std::{
	sync::Arc,
	time::{Duration, Instant},
};
use tracing::warn;

/// `dsp load --p2p`: see [`Args::p2p`].
pub async fn run(a: Args) -> anyhow::Result<()> {
	use std::process::{Command as Proc, Stdio};
	if !(0.0..1.0).contains(&a.kill_seeders) {
		bail!("--kill-seeders must be in [0, 1)");
	}
	let origin = pair_from_seed("//LoadOrigin", "seed")?;
	let signer_seed = "//LoadPassSigner";
	let signer = pair_from_seed(signer_seed, "seed")?.public();
	let exe = std::env::current_exe()?;
	let key = hex::encode(origin.public().0);
	let (mut child, tcp, quic) =
		spawn_server(&a, &key, &["--rate", "1", "--pass-seed", signer_seed])?;
	let server = match a.transport {
		crate::args::TransportArg::Udp => quic,
		_ => tcp,
	};
	let server_pid = child.id();
	let chunk_kib = a.chunk_kib.unwrap_or(16);
	let config = Arc::new(load_config(&a, tcp, server, chunk_kib * 1024)?);
	let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
	let feeder = {
		let config = config.clone();
		let origin = origin.clone();
		tokio::spawn(async move { load::feed(&config, origin, stop_rx).await })
	};
	// A backlog for the first viewers to start from.
	tokio::time::sleep(Duration::from_millis(a.segment_ms as u64 * 4)).await;
	let signers = PassSigners { default: vec![signer], ..Default::default() };
	let pause = Duration::from_secs_f64(1.0 / config.connect_rate as f64);
	let spawn_watch = |seed: &str| {
		Proc::new(&exe)
			.args(["watch", "--stream", "1", "--server", &server.to_string()])
			.args(["--origin-key", &hex::encode(origin.public().0)])
			.args(["--p2p", "--pass-signer", &hex::encode(signer.0), "--viewer-seed", seed])
			.args(["--status-interval-secs", "0", "--p2p-listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
			.env("RUST_LOG", "warn")
			.stdout(Stdio::null())
			.spawn()
			.context("starting dsp watch --p2p")
	};
	// The viewers to kill are `dsp watch --p2p` processes, killed with SIGKILL like a crashed
	// device (no goodbye on any connection). They join first: every later viewer can be told
	// of them, so they are the most used seeders.
	let kill = ((a.viewers as f64) * a.kill_seeders).round() as usize;
	let mut victims = Vec::with_capacity(kill);
	for i in 0..kill {
		victims.push(spawn_watch(&format!("//LoadKill{i}"))?);
		tokio::time::sleep(pause).await;
	}
	if kill > 0 {
		// Process start and join.
		tokio::time::sleep(Duration::from_secs(1)).await;
	}
	let mut viewers = Vec::with_capacity(a.viewers - kill);
	for i in kill..a.viewers {
		let viewer = pair_from_seed(&format!("//LoadViewer{i}"), "seed")?;
		let secret = p2p_identity_seed(&viewer);
		let ledger = LedgerConfig::new([0; 32], viewer.public().0, signers.clone());
		let mut p2p = P2pConfig::loopback(secret, ledger);
		// One transport per viewer keeps the file descriptors and tasks down.
		p2p.listen.truncate(1);
		let mut c = P2pWatchConfig::new([0; 32], 1, origin.public(), server, viewer, p2p);
		c.gateway = None;
		match p2p_watch::start(c, None).await {
			Ok(h) => viewers.push(Some(h)),
			Err(e) => warn!(viewer = i, error = %e, "p2p viewer failed to start"),
		}
		tokio::time::sleep(pause).await;
	}
	let joined = viewers.len();
	// One more `dsp watch --p2p` child in the same swarm: a real viewer process to measure.
	let mut watch_child = spawn_watch("//LoadWatch")?;
	let watch_pid = watch_child.id();
	let totals = |v: &[Option<dsp_streaming::net::p2p_watch::P2pWatchHandle>]| {
		let stats: Vec<_> = v.iter().flatten().map(|h| h.stats()).collect();
		P2pTotals::of(stats.iter())
	};
	// Warm-up: startup and the first announcements.
	tokio::time::sleep(Duration::from_millis(a.segment_ms as u64 * 4)).await;
	let me = std::process::id();
	let sample = |pid| load::sample_process(pid).unwrap_or_default();
	let (s0, w0, c0, t0, at0) =
		(sample(server_pid), sample(watch_pid), sample(me), totals(&viewers), Instant::now());
	let phase = if kill > 0 { a.duration_secs / 2 } else { a.duration_secs };
	tokio::time::sleep(Duration::from_secs(phase.max(1))).await;
	let (s1, w1, c1, t1, at1) =
		(sample(server_pid), sample(watch_pid), sample(me), totals(&viewers), Instant::now());
	let secs = (at1 - at0).as_secs_f64();
	println!(
		"[dsp-p2p] viewers={} ({joined} in process, {kill} `dsp watch --p2p` processes to kill, 1 measured process) bitrate_kbps={} segment_ms={} chunk_kib={chunk_kib} transport={}",
		joined + kill + 1, a.bitrate_kbps, a.segment_ms, server.transport
	);
	let line = |name: &str, t_a: &P2pTotals, t_b: &P2pTotals, secs: f64| {
		let mbps = |b: u64| b as f64 * 8.0 / 1e6 / secs;
		println!(
			"[dsp-p2p] {name}: secs={secs:.1} viewers={} p2p_share={:.1}% node_egress_mbps={:.2} delivered_mbps={:.2} segments={} neighbours_avg={:.1}",
			t_b.viewers,
			t_b.p2p_share_since(t_a),
			mbps(t_b.server_bytes.saturating_sub(t_a.server_bytes)),
			mbps(
				(t_b.from_node + t_b.from_peers)
					.saturating_sub(t_a.from_node + t_a.from_peers)
			),
			t_b.segments.saturating_sub(t_a.segments),
			t_b.neighbours as f64 / t_b.viewers.max(1) as f64,
		);
	};
	line(if kill > 0 { "before_kill" } else { "steady" }, &t0, &t1, secs);
	println!(
		"[dsp-p2p] server cpu_secs={:.2} ({:.2} cores) rss_mib={:.1}; load process ({} viewers) cpu={:.2} cores",
		s1.cpu_secs - s0.cpu_secs,
		(s1.cpu_secs - s0.cpu_secs) / secs,
		s1.rss as f64 / 1048576.0,
		joined,
		(c1.cpu_secs - c0.cpu_secs) / secs,
	);
	println!(
		"[dsp-p2p] one `dsp watch --p2p` process: rss_mib={:.1} peak_rss_mib={:.1} cpu={:.3} cores",
		w1.rss as f64 / 1048576.0,
		w1.peak_rss as f64 / 1048576.0,
		(w1.cpu_secs - w0.cpu_secs) / secs,
	);
	if kill > 0 {
		for v in &mut victims {
			// SIGKILL.
			let _ = v.kill();
			let _ = v.wait();
		}
		println!(
			"[dsp-p2p] killed {kill} of {} viewers with SIGKILL (--kill-seeders {})",
			joined + kill + 1,
			a.kill_seeders
		);
		tokio::time::sleep(Duration::from_secs(a.recover_secs)).await;
		let (t2, at2) = (totals(&viewers), Instant::now());
		tokio::time::sleep(Duration::from_secs(phase.max(1))).await;
		let (t3, at3) = (totals(&viewers), Instant::now());
		line("after_recovery", &t2, &t3, (at3 - at2).as_secs_f64());
		println!(
			"[dsp-p2p] in-process viewers from the kill to the end: stalls={} stalls_longer_than_a_segment={}",
			t3.stalls.saturating_sub(t1.stalls),
			t3.long_stalls.saturating_sub(t1.long_stalls),
		);
	}
	let end = totals(&viewers);
	println!(
		"[dsp-p2p] in-process viewers, whole run: stalls={} stalls_longer_than_a_segment={} longest_stall_ms={} bad_chunks={} segments={}",
		end.stalls, end.long_stalls, end.longest_stall_ms, end.bad_chunks, end.segments
	);
	let _ = stop_tx.send(true);
	let ended = futures::future::join_all(viewers.into_iter().flatten().map(|h| h.stop())).await;
	let failed: Vec<String> =
		ended.into_iter().filter_map(|r| r.err()).map(|e| e.to_string()).collect();
	println!("[dsp-p2p] in-process viewers that failed before the end: {}", failed.len());
	for e in failed.iter().take(5) {
		println!("[dsp-p2p]   {e}");
	}
	let _ = feeder.await;
	let _ = watch_child.kill();
	let _ = watch_child.wait();
	let _ = child.kill();
	let _ = child.wait();
	Ok(())
}
