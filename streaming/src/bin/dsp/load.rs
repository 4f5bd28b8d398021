//! `dsp load`: the load benchmark. Starts a `dsp serve` child (or loads a running server), feeds
//! it a synthetic stream, holds N viewer sessions and prints sessions held, stalls, goodput and
//! the server's CPU time and RSS. Its P2P harness is [`p2p`], the nginx comparison [`nginx`],
//! the attackers run beside the honest viewers [`attack`].

mod attack;
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
	/// Spread the viewers over client addresses, this many per address (127.10.x.y: Linux
	/// takes any 127/8 address as a source without configuration). 0: every viewer from one
	/// address, and a `dsp serve` child gets its per-address limits lifted. Above 0 the child
	/// keeps ALL its default limits (16 fits the default 32 sessions per address) and knows
	/// its streams by `--stream-key` (see --attack), so the run shows what honest viewers get
	/// from a server configured as in production.
	#[arg(long, default_value_t = 0)]
	viewers_per_address: usize,
	/// Run this attacker against the `dsp serve` child while the viewers watch (needs
	/// --viewers-per-address); it starts --attack-lead-secs before them and stops with the
	/// measurement, then prints what it achieved.
	#[arg(long, value_enum, requires = "viewers_per_address", conflicts_with_all = ["target_tcp", "p2p"])]
	attack: Option<dsp_streaming::net::attack::AttackKind>,
	/// Sessions (connections) the session-flood and slow-handshake attackers try to hold. 4096:
	/// the attacker, and the server's default --max-connections.
	#[arg(long, default_value_t = 4096)]
	attack_sessions: usize,
	/// Client addresses of the publish-flood, memory and unknown-ids attackers (127.66.0.x).
	/// 4: a few, as a small botnet or one host with a few addresses.
	#[arg(long, default_value_t = 4)]
	attack_addresses: usize,
	/// Registered origins of the memory attack (10 streams each); 3 ask for more than the
	/// server's total window budget.
	#[arg(long, default_value_t = 3)]
	attack_origins: usize,
	/// Seconds the attacker runs before the honest viewers connect, so they meet a server the
	/// attacker already holds what it can of.
	#[arg(long, default_value_t = 5)]
	attack_lead_secs: u64,
	/// Milliseconds an attacker's slot waits after a refusal or a closed session before it
	/// tries again. 1000: every slot keeps trying, without the attacker burning the shared
	/// CPU on connects alone.
	#[arg(long, default_value_t = 1000)]
	attack_retry_ms: u64,
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
	let (mut child, tcp, quic, server_pid) = match (a.target_tcp, a.target_quic, a.target_pid) {
		(Some(tcp), Some(quic), Some(pid)) => {
			let tcp = Endpoint { transport: Transport::Tcp, addr: tcp };
			let quic = Endpoint { transport: Transport::Quic, addr: quic };
			(None, tcp, quic, pid)
		}
		_ => {
			let (child, tcp, quic) = spawn_server(&a, &key, &[])?;
			let pid = child.id();
			(Some(child), tcp, quic, pid)
		}
	};
	let server = if matches!(a.transport, TransportArg::Udp) { quic } else { tcp };
	let chunk_size = a.chunk_kib.unwrap_or(DEFAULT_CHUNK_SIZE / 1024) * 1024;
	let config = Arc::new(load_config(&a, tcp, server, chunk_size)?);
	let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
	let feeder = {
		let config = config.clone();
		let stop = stop_rx.clone();
		tokio::spawn(async move { load::feed(&config, pair, stop).await })
	};
	let attacker = match a.attack {
		Some(kind) => {
			let running = attack::start(
				kind,
				&a,
				tcp.addr,
				quic.addr,
				config.genesis_hash,
				&pair_for_attack(&a)?,
			)?;
			tokio::time::sleep(Duration::from_secs(a.attack_lead_secs)).await;
			Some(running)
		}
		None => None,
	};
	let counters = Arc::new(LoadCounters::default());
	let per = a.viewers_per_address;
	let sources: Vec<std::net::IpAddr> =
		(0..a.viewers.div_ceil(per.max(1))).map(|k| load::viewer_address(k * per, per)).collect();
	// One QUIC endpoint per client address (or per 100 viewers from one address).
	let quic_clients = match (server.transport, per) {
		(Transport::Quic, 0) => load::quic_clients(a.viewers, 100)?,
		(Transport::Quic, _) => load::quic_clients_at(&sources)?,
		(Transport::Tcp, _) => Vec::new(),
	};
	let ramp_start = std::time::Instant::now();
	let mut tasks = Vec::with_capacity(a.viewers);
	let pause = Duration::from_secs_f64(1.0 / config.connect_rate as f64);
	for i in 0..a.viewers {
		// Round robin over the addresses, so no address has many handshakes at once.
		let k = if per > 0 { i % sources.len() } else { i / 100 };
		let q = quic_clients.get(k).cloned();
		let source = (per > 0).then(|| sources[k]);
		tasks.push(tokio::spawn(load::viewer(
			config.clone(),
			q,
			source,
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
	// A real publisher starting a new stream meanwhile (clean and attacked runs alike).
	let fresh = match per {
		0 => None,
		_ => Some(attack::fresh_publish(&a, tcp, config.genesis_hash, &pair_for_attack(&a)?).await),
	};
	let m = measure(&counters, config.duration, || load::sample_process(server_pid)).await;
	let attacked = attacker.map(attack::RunningAttack::stop);
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
	if per > 0 {
		summary(&a, &m, fresh, attacked);
	}
	if a.compare_nginx {
		let nginx = nginx::run(&a).await?;
		if nginx > 0.0 {
			println!("ratio_dsp_to_nginx_gbit_per_cpu_sec={:.2}", dsp / nginx);
		}
	}
	Ok(())
}

/// The origin key that signed the earlier broadcast the replay attacker recorded.
fn pair_for_attack(a: &Args) -> anyhow::Result<sp_core::sr25519::Pair> {
	pair_from_secret(Some(&a.origin_seed), a.origin_seed_file.as_ref(), "--origin-seed")?
		.ok_or_else(|| anyhow!("no --origin-seed"))
}

/// One line for `scripts/bench-attacks.sh`: the honest viewers' figures, the server's peak RSS
/// against the stated memory bound, and what the attacker achieved.
fn summary(
	a: &Args,
	m: &Measured,
	fresh: Option<bool>,
	attacked: Option<(
		dsp_streaming::net::attack::AttackKind,
		dsp_streaming::net::attack::AttackReport,
	)>,
) {
	let bound = dsp_streaming::server::MemoryConfig::default().worst_case_bytes();
	let (name, report) = match attacked {
		Some((kind, r)) => (kind.name(), r.to_string()),
		None => ("none", "-".to_string()),
	};
	println!(
		"[summary] attack={name} viewers={} held={} refused={} failed={} dropped={} stalls={} \
		 skipped={} foreign={} segments={} expected_segments={} fresh_publish={} peak_rss_mib={:.0} bound_mib={} \
		 attacker: {report}",
		a.viewers,
		m.connected.saturating_sub(m.dropped),
		m.refused,
		m.failed,
		m.dropped,
		m.stalls_total,
		m.skipped,
		m.foreign,
		m.segments,
		a.viewers as u64 * (m.elapsed * 1000.0) as u64 / a.segment_ms.max(1) as u64,
		match fresh {
			Some(true) => "ok",
			Some(false) => "refused",
			None => "-",
		},
		m.peak_rss as f64 / 1048576.0,
		bound >> 20,
	);
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

/// Starts the `dsp serve` child of a load run (loopback, `extra` arguments); returns it with
/// its TCP and QUIC endpoints. With viewers from one address: capacity for every viewer, also
/// from that address, a window of 10 segments, every stream signed by `origin_key`. With
/// `--viewers-per-address`: every limit at its default, the streams of [`attack`] by their keys.
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
	let limits: Vec<String> = if a.viewers_per_address > 0 {
		attack::stream_key_args(a, origin_key)?
	} else {
		[
			"--origin-key",
			origin_key,
			"--max-streams",
			&capacity,
			"--max-connections",
			&capacity,
			"--window",
			"10",
			// Every viewer of a load run connects from the same loopback address.
			"--max-sessions-per-address",
			&capacity,
			"--max-handshakes-per-address",
			&capacity,
		]
		.map(String::from)
		.to_vec()
	};
	let mut child = Proc::new(std::env::current_exe()?)
		.args(["serve", "--tcp", "127.0.0.1:0", "--quic", "127.0.0.1:0"])
		.args(&limits)
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
	// Keep reading what it prints: a closed pipe would kill it at its next line (SIGPIPE).
	std::thread::spawn(move || lines.for_each(drop));
	Ok((child, tcp, quic))
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
	refused: u64,
	skipped: u64,
	foreign: u64,
	/// Stalls since the viewers connected (the window's `stalls` counts only those that began
	/// in it: a viewer stuck since before the window shows here).
	stalls_total: u64,
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
		refused: counters.refused.load(Ordering::Relaxed),
		skipped: counters.skipped.load(Ordering::Relaxed),
		foreign: counters.foreign.load(Ordering::Relaxed),
		stalls_total: counters.stalls.load(Ordering::Relaxed),
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
		"[{name}] sessions_held={} failed={} refused={} dropped={} stalls={} segments_received={} skipped={} foreign={}",
		m.connected.saturating_sub(m.dropped),
		m.failed,
		m.refused,
		m.dropped,
		m.stalls,
		m.segments,
		m.skipped,
		m.foreign
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
