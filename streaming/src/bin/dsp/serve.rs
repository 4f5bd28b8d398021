//! `dsp serve`: a streamer with TCP and QUIC listeners and live windows; with `--pass-seed` it
//! admits viewers in P2P mode and runs a swarm seed; optionally records what publishers push
//! and serves recordings on demand.

use crate::args::{addr_or_none, hex32, pair_from_secret, public_key};
use anyhow::{anyhow, bail, Context};
use dsp_primitives::{CapacitySettings, Perbill};
use dsp_streaming::{
	net::{
		p2p::P2pConfig,
		serve::{RunningServer, ServeConfig},
		watch::ServerAddr,
		Endpoint,
	},
	p2p::{
		p2p_identity_seed,
		receipts::{LedgerConfig, PassSigners},
		tracker::{PassSigning, TrackerConfig},
	},
	server::{OriginKeys, StreamTableConfig},
};
use sp_core::Pair;
use std::{path::PathBuf, sync::Arc, time::Duration};
use tracing::{info, warn};

#[derive(clap::Args)]
pub struct Args {
	/// TCP listen address ("none" to disable).
	#[arg(long, default_value = "0.0.0.0:7700")]
	tcp: String,
	/// QUIC (UDP) listen address ("none" to disable).
	#[arg(long, default_value = "0.0.0.0:7700")]
	quic: String,
	/// Origin public key (hex) that signs every stream without its own `--stream-key`.
	#[arg(long)]
	origin_key: Option<String>,
	/// `STREAM=KEY`: origin public key (hex) of one stream. Repeatable.
	#[arg(long)]
	stream_key: Vec<String>,
	/// Genesis hash (hex) of the chain the streams are registered on.
	#[arg(long, default_value = "00")]
	genesis: String,
	/// Most direct viewer sessions (`max_streams`).
	#[arg(long, default_value_t = 2000)]
	max_streams: u32,
	/// Dynamic streaming rate `r` in [0, 1]: the share of `max_streams` handed to P2P. Viewers
	/// beyond `floor(max_streams * (1 - r))` direct sessions are admitted in P2P mode with
	/// `--pass-seed`, refused without it.
	#[arg(long, default_value_t = 0.0)]
	rate: f64,
	/// Seed (secret URI) of the key that signs viewer passes: one of the origin's authorised
	/// pass signers. Enables P2P admission and the tracker. Unsafe as an argument: every local
	/// user can read it in the process list; prefer --pass-seed-file or the environment
	/// variable.
	#[arg(long, value_name = "SURI", env = "DSP_PASS_SEED", hide_env_values = true)]
	pass_seed: Option<String>,
	/// File whose first line is the pass seed (keep it readable by this user only).
	#[arg(long, value_name = "PATH")]
	pass_seed_file: Option<PathBuf>,
	/// Credit epoch written into passes (without a chain to follow).
	#[arg(long, default_value_t = 0)]
	epoch: u32,
	/// `max_units` of each pass (1 unit = 1 KiB).
	#[arg(long, default_value_t = 4 * 1024 * 1024)]
	pass_max_units: u64,
	/// libp2p listen address of the node's swarm seed (serves its live windows to pass holders;
	/// listed first to every P2P viewer), e.g. `/ip4/0.0.0.0/udp/7701/quic-v1` and
	/// `/ip4/0.0.0.0/tcp/7701`. Repeatable; none: no seed. Needs `--pass-seed`.
	#[arg(long)]
	p2p_listen: Vec<String>,
	/// Directory of the seed's receipt ledger (what `dsp claim --ledger` reads).
	#[arg(long)]
	ledger: Option<PathBuf>,
	/// Segments kept per live stream.
	#[arg(long, default_value_t = 30)]
	window: usize,
	/// Most connections at once.
	#[arg(long, default_value_t = 4096)]
	max_connections: usize,
	/// Most viewers admitted in P2P mode at once (with --pass-seed); further ones are refused
	/// as full.
	#[arg(long, default_value_t = 10_000)]
	max_p2p_sessions: u32,
	/// Another streamer of the same streams, `tcp://host:port` and/or `quic://host:port`,
	/// grouped like `dsp watch --server`. Repeatable. Viewers refused as full (capacity rule,
	/// P2P cap, max connections over TCP) are sent a `Redirect` to them, rotating.
	#[arg(long, value_name = "ENDPOINT")]
	redirect: Vec<Endpoint>,
	/// Seconds a client may stay silent before it is closed.
	#[arg(long, default_value_t = 30)]
	idle_timeout_secs: u64,
	/// Seconds a new client has to send its hello.
	#[arg(long, default_value_t = 5)]
	hello_timeout_secs: u64,
	/// Seconds a write may make no progress before the client is closed.
	#[arg(long, default_value_t = 10)]
	write_stall_timeout_secs: u64,
	/// Most streams held at once (live windows, including those waited for).
	#[arg(long, default_value_t = 256)]
	max_streams_held: usize,
	/// Most streams held that have no segment yet, counted apart for those announced by a
	/// publisher that sent none and those subscribed to by viewers waiting for a publisher.
	/// Bounds what anonymous clients can hold; waiting viewers cannot lock publishers out.
	#[arg(long, default_value_t = 32)]
	max_waiting_streams: usize,
	/// Seconds after which a stream that stored nothing (no segment, no end) is freed and its
	/// viewers closed; also how long a viewer waits for a stream nobody publishes yet.
	#[arg(long, default_value_t = 120)]
	stream_idle_secs: u64,
	/// Seconds an ended stream stays after its end, for its viewers to catch up.
	#[arg(long, default_value_t = 30)]
	ended_linger_secs: u64,
	/// Streams whose newest broadcast is remembered after their window is freed, so that the
	/// origin-signed segments and end of an earlier broadcast cannot be replayed into a new
	/// window. Default 4096 (at most 270 KiB); beyond it the oldest broadcast is forgotten.
	#[arg(long, default_value_t = 4096)]
	max_remembered_broadcasts: usize,
	/// Record every segment and end this server stores, as the origin-signed wire frames, to
	/// DIR/<stream>/<sequence>.seg and DIR/<stream>/end.frame (serve them later with --vod-dir).
	#[arg(long, value_name = "DIR")]
	record_dir: Option<PathBuf>,
	/// Serve recordings made with --record-dir on demand: a viewer of a stream that is not live
	/// here gets it from DIR/<stream>/ (`--from N` or from the start, then End).
	#[arg(long, value_name = "DIR")]
	vod_dir: Option<PathBuf>,
	/// Seconds of play time an on-demand stream is sent ahead of real time: a recording
	/// reaches the viewer at its own pace, with this much in hand.
	#[arg(long, default_value_t = 10)]
	vod_lead_secs: u64,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
	let mut keys = OriginKeys::default();
	if let Some(k) = &a.origin_key {
		keys.default = Some(public_key(k)?);
	}
	for s in &a.stream_key {
		let (id, key) =
			s.split_once('=').ok_or_else(|| anyhow!("--stream-key wants STREAM=KEY"))?;
		keys.per_stream.insert(id.parse().context("stream id")?, public_key(key)?);
	}
	if keys.default.is_none() && keys.per_stream.is_empty() {
		warn!("no --origin-key or --stream-key: publishers will be refused");
	}
	if !(0.0..=1.0).contains(&a.rate) {
		bail!("--rate must be in [0, 1]");
	}
	let mut config = ServeConfig {
		tcp: addr_or_none(&a.tcp)?,
		quic: addr_or_none(&a.quic)?,
		capacity: CapacitySettings {
			max_streams: a.max_streams,
			streaming_rate: Perbill::from_parts((a.rate * 1e9).round() as u32),
		},
		max_connections: a.max_connections,
		max_p2p_sessions: a.max_p2p_sessions,
		write_stall_timeout: Duration::from_secs(a.write_stall_timeout_secs),
		streams: StreamTableConfig {
			max_streams: a.max_streams_held,
			max_waiting: a.max_waiting_streams,
			idle_timeout: Duration::from_secs(a.stream_idle_secs),
			ended_linger: Duration::from_secs(a.ended_linger_secs),
			max_remembered: a.max_remembered_broadcasts,
		},
		record_dir: a.record_dir,
		vod_dir: a.vod_dir,
		..Default::default()
	};
	config.window.max_segments = a.window.max(1);
	config.session.genesis_hash = hex32(&a.genesis, "genesis")?;
	config.session.origin_keys = Arc::new(keys);
	config.session.idle_timeout = Duration::from_secs(a.idle_timeout_secs);
	config.session.hello_timeout = Duration::from_secs(a.hello_timeout_secs);
	config.session.on_demand_lead = Duration::from_secs(a.vod_lead_secs);
	if let Some(signer) =
		pair_from_secret(a.pass_seed.as_deref(), a.pass_seed_file.as_ref(), "--pass-seed")?
	{
		let mut tracker = TrackerConfig::new(config.session.genesis_hash, a.epoch);
		tracker.max_units_per_pass = a.pass_max_units;
		tracker.max_streams = config.streams.max_streams;
		info!(signer = %hex::encode(signer.public().0), "p2p admission on: issuing viewer passes");
		if !a.p2p_listen.is_empty() {
			// The libp2p identity is derived from the pass key, so it is stable across restarts.
			let secret = p2p_identity_seed(&signer);
			let signers = PassSigners { default: vec![signer.public()], ..Default::default() };
			let ledger = LedgerConfig::new(config.session.genesis_hash, signer.public().0, signers);
			let mut seed = P2pConfig::loopback(secret, ledger);
			seed.listen = a
				.p2p_listen
				.iter()
				.map(|m| m.parse().with_context(|| format!("bad --p2p-listen {m}")))
				.collect::<Result<_, _>>()?;
			seed.ledger_dir = a.ledger.clone();
			config.p2p_seed = Some(seed);
		}
		config.p2p = Some(PassSigning { signer, tracker });
	} else if !a.p2p_listen.is_empty() {
		bail!("--p2p-listen needs --pass-seed");
	}
	let server = RunningServer::start(config).await?;
	server.set_redirect(ServerAddr::group(&a.redirect).iter().map(ServerAddr::to_text).collect());
	if let Some(t) = server.tcp_addr {
		println!("tcp://{t}");
	}
	if let Some(q) = server.quic_addr {
		println!("quic://{q}");
	}
	println!("fingerprint {}", hex::encode(server.fingerprint));
	if let Some(node) = server.p2p_node() {
		for addr in &node.listen_addrs {
			println!("p2p {addr}/p2p/{}", node.peer_id);
		}
	}
	let mut tick = tokio::time::interval(Duration::from_secs(10));
	loop {
		tokio::select! {
			_ = tokio::signal::ctrl_c() => break,
			_ = tick.tick() => {
				let s = server.stats();
				info!(
					direct = s.admission.direct,
					p2p = s.admission.p2p,
					refused = s.admission.refused,
					connections = s.connections,
					closed_with_error = s.closed_with_error,
					segments_stored = s.segments_stored,
					streams_held = s.streams_held,
					streams_freed = s.streams_freed,
					vod_sessions = s.vod_sessions,
					mbytes_sent = s.bytes_sent / 1_000_000,
					"server stats"
				);
			},
		}
	}
	server.shutdown().await;
	Ok(())
}
