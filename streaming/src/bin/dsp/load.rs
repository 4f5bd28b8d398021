//! `dsp load`: the load benchmark. Starts a `dsp serve` child (or loads a running server), feeds
//! it a synthetic stream, holds N viewer sessions and prints sessions held, stalls, goodput and
//! the server's CPU time and RSS. Its P2P harness is [`p2p`], the nginx comparison [`nginx`].

mod nginx;
mod p2p;

use crate::args::{hex32, pair_from_secret, TransportArg};
use anyhow::{anyhow, Context};
use dsp_primitives::StreamId;
use dsp_streaming::{
	net::{
		load::{self, LoadConfig, LoadCounters, ProcSample},
		Endpoint,
	},
	segment::DEFAULT_CHUNK_SIZE,
	viewer::Transport,
};
use sp_core::Pair;
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use tracing::warn;

#[derive(clap::Args)]
pub struct Args {
	/// Viewer sessions.
	#[arg(long, default_value_t = 100)]
	viewers: usize,
	/// Transport of the viewers.
	#[arg(long, value_enum, default_value = "tcp")]
	transport: TransportArg,
	/// Stream bitrate, kbit/s.
	#[arg(long, default_value_t = 500)]
	bitrate_kbps: u32,
	/// Segment duration, ms.
	#[arg(long, default_value_t = 2000)]
	segment_ms: u32,
	/// Seconds to hold the sessions once all are connected.
	#[arg(long, default_value_t = 60)]
	duration_secs: u64,
	/// Sessions opened per second while ramping up.
	#[arg(long, default_value_t = 500)]
	connect_rate: u32,
	/// Afterwards, run the same number of HLS-style HTTP clients against nginx serving
	/// segments of the same size, and print DSP's throughput per CPU-second as a ratio to it.
	#[arg(long)]
	compare_nginx: bool,
	/// Chunk size, KiB. Default 64 (16 with `--p2p`: more pieces to trade).
	#[arg(long)]
	chunk_kib: Option<u32>,
	/// P2P mode: the `dsp serve` child admits every viewer in P2P mode (`--rate 1
	/// --pass-seed`), and every load viewer is a real P2P viewer (the `dsp watch --p2p`
	/// driver: libp2p node + direct connection). Prints the P2P share of the delivered bytes,
	/// the node's egress and stalls, and the RSS and CPU of one `dsp watch --p2p` child.
	#[arg(long)]
	p2p: bool,
	/// P2P: share of the viewers (e.g. 0.3) run as `dsp watch --p2p` processes that join first
	/// and are killed with SIGKILL halfway through; the figures of the other viewers are then
	/// printed before the kill and after `--recover-secs`.
	#[arg(long, default_value_t = 0.0)]
	kill_seeders: f64,
	/// P2P: seconds after the kill before the second measurement.
	#[arg(long, default_value_t = 10)]
	recover_secs: u64,
	/// Load a server that is already running instead of a `dsp serve` child, e.g. the worker
	/// of `dsp-node --dev --no-demo`: its TCP endpoint (the synthetic stream is published
	/// there). Needs --target-pid, --origin-seed and --genesis for that server's chain.
	#[arg(long, value_name = "ADDR", requires_all = ["target_pid", "target_quic"], conflicts_with = "p2p")]
	target_tcp: Option<SocketAddr>,
	/// QUIC endpoint of the --target-tcp server.
	#[arg(long, value_name = "ADDR", requires = "target_tcp")]
	target_quic: Option<SocketAddr>,
	/// PID of the --target-tcp server, whose CPU time and RSS are reported.
	#[arg(long, value_name = "PID", requires = "target_tcp")]
	target_pid: Option<u32>,
	/// Stream to publish and watch.
	#[arg(long, default_value_t = 1)]
	stream: StreamId,
	/// Secret of the stream's origin key (the target must know its public key, e.g. from the
	/// chain's registry: `//Alice` for stream 0 of a dev chain).
	/// Unsafe as an argument for a real key: every local user can read it in the process list;
	/// prefer --origin-seed-file or the environment variable.
	#[arg(
		long,
		value_name = "SURI",
		default_value = "//LoadOrigin",
		env = "DSP_ORIGIN_SEED",
		hide_env_values = true
	)]
	origin_seed: String,
	/// File whose first line is the origin seed (keep it readable by this user only).
	#[arg(long, value_name = "PATH")]
	origin_seed_file: Option<PathBuf>,
	/// Genesis hash of the target's chain (hex; zeros for a standalone server).
	#[arg(long, default_value = "00")]
	genesis: String,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
	if a.p2p {
		return p2p::run(a).await;
	}
	use std::sync::atomic::Ordering;
	let pair =
		pair_from_secret(Some(&a.origin_seed), a.origin_seed_file.as_ref(), "--origin-seed")?
			.ok_or_else(|| anyhow::anyhow!("no --origin-seed"))?;
	let key = hex::encode(pair.public().0);
	let (mut child, tcp, server, server_pid) = match (a.target_tcp, a.target_quic, a.target_pid) {
		(Some(tcp), Some(quic), Some(pid)) => {
			let tcp = Endpoint { transport: Transport::Tcp, addr: tcp };
			let quic = Endpoint { transport: Transport::Quic, addr: quic };
			let server = if matches!(a.transport, TransportArg::Udp) { quic } else { tcp };
			(None, tcp, server, pid)
		}
		_ => {
			let (child, tcp, server) = spawn_server(&a, &key, &[])?;
			let pid = child.id();
			(Some(child), tcp, server, pid)
		}
	};
	let chunk_size = a.chunk_kib.unwrap_or(DEFAULT_CHUNK_SIZE / 1024) * 1024;
	let config = Arc::new(load_config(&a, tcp, server, chunk_size)?);
	let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
	let feeder = {
		let config = config.clone();
		let stop = stop_rx.clone();
		tokio::spawn(async move { load::feed(&config, pair, stop).await })
	};
	let counters = Arc::new(LoadCounters::default());
	let quic_clients = match server.transport {
		Transport::Quic => load::quic_clients(a.viewers, 100)?,
		Transport::Tcp => Vec::new(),
	};
	let ramp_start = std::time::Instant::now();
	let mut tasks = Vec::with_capacity(a.viewers);
	let pause = Duration::from_secs_f64(1.0 / config.connect_rate as f64);
	for i in 0..a.viewers {
		let q = quic_clients.get(i / 100).cloned();
		tasks.push(tokio::spawn(load::viewer(
			config.clone(),
			q,
			counters.clone(),
			stop_rx.clone(),
		)));
		tokio::time::sleep(pause).await;
	}
	while (counters.connected.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed))
		< a.viewers as u64
	{
		if ramp_start.elapsed() > Duration::from_secs(120) {
			warn!("not every viewer connected within 120 s");
			break;
		}
		tokio::time::sleep(Duration::from_millis(100)).await;
	}
	// One segment interval so every session has started receiving.
	tokio::time::sleep(Duration::from_millis(a.segment_ms as u64)).await;
	let m = measure(&counters, config.duration, || load::sample_process(server_pid)).await;
	let _ = stop_tx.send(true);
	for t in tasks {
		let _ = t.await;
	}
	let _ = feeder.await;
	if let Some(child) = child.as_mut() {
		let _ = child.kill();
		let _ = child.wait();
	}
	let name = match server.transport {
		Transport::Tcp => "dsp-tcp",
		Transport::Quic => "dsp-quic",
	};
	let dsp = report(name, &a, &m);
	if a.compare_nginx {
		let nginx = nginx::run(&a).await?;
		if nginx > 0.0 {
			println!("ratio_dsp_to_nginx_gbit_per_cpu_sec={:.2}", dsp / nginx);
		}
	}
	Ok(())
}

/// The load run's settings from the command line: stream 1, published over `tcp`, watched at
/// `server`.
fn load_config(
	a: &Args,
	tcp: Endpoint,
	server: Endpoint,
	chunk_size: u32,
) -> anyhow::Result<LoadConfig> {
	Ok(LoadConfig {
		server,
		publish_to: tcp,
		genesis_hash: hex32(&a.genesis, "genesis")?,
		stream: a.stream,
		viewers: a.viewers,
		bitrate_kbps: a.bitrate_kbps,
		segment_ms: a.segment_ms,
		duration: Duration::from_secs(a.duration_secs),
		connect_rate: a.connect_rate.max(1),
		stall_after: Duration::from_millis(a.segment_ms as u64 * 3 / 2),
		chunk_size,
	})
}

/// Starts the `dsp serve` child of a load run (loopback, capacity for every viewer, also from
/// one address, a window of 10 segments, `extra` arguments); returns it with its TCP endpoint and the viewers' endpoint.
fn spawn_server(
	a: &Args,
	origin_key: &str,
	extra: &[&str],
) -> anyhow::Result<(std::process::Child, Endpoint, Endpoint)> {
	use std::{
		io::BufRead,
		process::{Command as Proc, Stdio},
	};
	let capacity = (a.viewers + 64).to_string();
	let mut child = Proc::new(std::env::current_exe()?)
		.args(["serve", "--tcp", "127.0.0.1:0", "--quic", "127.0.0.1:0"])
		.args(["--origin-key", origin_key])
		.args(["--max-streams", &capacity, "--max-connections", &capacity, "--window", "10"])
		// Every viewer of a load run connects from the same loopback address.
		.args(["--max-sessions-per-address", &capacity, "--max-handshakes-per-address", &capacity])
		.args(extra)
		.env("RUST_LOG", "warn")
		.stdout(Stdio::piped())
		.spawn()
		.context("starting dsp serve")?;
	let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped; qed")).lines();
	let mut next = || -> anyhow::Result<String> {
		lines.next().ok_or_else(|| anyhow!("dsp serve exited"))?.map_err(Into::into)
	};
	let tcp: Endpoint = next()?.parse().map_err(|e: String| anyhow!(e))?;
	let quic: Endpoint = next()?.parse().map_err(|e: String| anyhow!(e))?;
	let server = match a.transport {
		TransportArg::Udp => quic,
		_ => tcp,
	};
	// Keep reading what it prints: a closed pipe would kill it at its next line (SIGPIPE).
	std::thread::spawn(move || lines.for_each(drop));
	Ok((child, tcp, server))
}

/// What one measured window saw.
struct Measured {
	elapsed: f64,
	bytes: u64,
	stalls: u64,
	segments: u64,
	connected: u64,
	failed: u64,
	dropped: u64,
	cpu_secs: f64,
	client_cpu_secs: f64,
	rss: u64,
	peak_rss: u64,
}

async fn measure(
	counters: &LoadCounters,
	duration: Duration,
	sample: impl Fn() -> Option<ProcSample>,
) -> Measured {
	use std::sync::atomic::Ordering;
	let s0 = sample().unwrap_or_default();
	let me = std::process::id();
	let c0 = load::sample_process(me).unwrap_or_default();
	let (b0, st0, seg0) = (
		counters.bytes.load(Ordering::Relaxed),
		counters.stalls.load(Ordering::Relaxed),
		counters.segments.load(Ordering::Relaxed),
	);
	let t0 = std::time::Instant::now();
	let mut peak_rss = s0.rss;
	while t0.elapsed() < duration {
		tokio::time::sleep(Duration::from_secs(1)).await;
		if let Some(s) = sample() {
			peak_rss = peak_rss.max(s.rss);
		}
	}
	let s1 = sample().unwrap_or_default();
	let c1 = load::sample_process(me).unwrap_or_default();
	Measured {
		elapsed: t0.elapsed().as_secs_f64(),
		bytes: counters.bytes.load(Ordering::Relaxed) - b0,
		stalls: counters.stalls.load(Ordering::Relaxed) - st0,
		segments: counters.segments.load(Ordering::Relaxed) - seg0,
		connected: counters.connected.load(Ordering::Relaxed),
		failed: counters.failed.load(Ordering::Relaxed),
		dropped: counters.dropped.load(Ordering::Relaxed),
		cpu_secs: s1.cpu_secs - s0.cpu_secs,
		client_cpu_secs: c1.cpu_secs - c0.cpu_secs,
		rss: s1.rss,
		peak_rss: peak_rss.max(s1.peak_rss),
	}
}

/// Prints a report; returns Gbit per server CPU-second.
fn report(name: &str, a: &Args, m: &Measured) -> f64 {
	let gbit = m.bytes as f64 * 8.0 / 1e9;
	let per_cpu = if m.cpu_secs > 0.0 { gbit / m.cpu_secs } else { 0.0 };
	println!(
		"[{name}] viewers={} bitrate_kbps={} window_secs={:.1}",
		a.viewers, a.bitrate_kbps, m.elapsed
	);
	println!(
		"[{name}] sessions_held={} failed={} dropped={} stalls={} segments_received={}",
		m.connected.saturating_sub(m.dropped),
		m.failed,
		m.dropped,
		m.stalls,
		m.segments
	);
	println!(
		"[{name}] goodput_gbps={:.3} expected_gbps={:.3}",
		gbit / m.elapsed,
		a.viewers as f64 * a.bitrate_kbps as f64 / 1e6
	);
	println!(
		"[{name}] server_cpu_secs={:.2} server_cores={:.2} gbit_per_cpu_sec={per_cpu:.3}",
		m.cpu_secs,
		m.cpu_secs / m.elapsed
	);
	println!(
		"[{name}] server_rss_mib={:.1} server_peak_rss_mib={:.1} load_client_cores={:.2}",
		m.rss as f64 / 1048576.0,
		m.peak_rss as f64 / 1048576.0,
		m.client_cpu_secs / m.elapsed
	);
	per_cpu
}
