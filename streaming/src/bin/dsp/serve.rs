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
		vod::Retention,
		watch::ServerAddr,
		Endpoint,
	},
	p2p::{
		p2p_identity_seed,
		receipts::{LedgerConfig, PassSigners},
		serving::DEFAULT_CLAIM_WINDOW_EPOCHS,
		tracker::{PassSigning, TrackerConfig},
		verify_guard::DEFAULT_TOTAL_VERIFY_PER_SEC,
	},
	server::{LookupBudgetConfig, MemoryConfig, OriginKeys, PerAddressConfig, StreamTableConfig},
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
	/// A viewer pass covers the stream's measured bitrate times (the time its P2P session has
	/// been joined in the epoch + this period) times --pass-slack, and is renewed every half
	/// period while the session stays joined. 120 s: a client that joins and leaves at once
	/// holds at most two minutes' worth; renewals stay one small message a minute.
	#[arg(long, default_value_t = 120)]
	pass_period_secs: u64,
	/// Factor on the measured bitrate in every pass (bitrate changes, receipts lagging).
	#[arg(long, default_value_t = 1.5)]
	pass_slack: f64,
	/// Most P2P sessions joined at once from one address (IPv4, or IPv6 /64); further `Join`s
	/// are refused as full. 16: a household or small NAT fits, a Sybil farm on one address not.
	#[arg(long, default_value_t = 16)]
	p2p_max_sessions_per_address: u32,
	/// Most new viewer passes (joins) per address and minute; renewals do not count. 30: a
	/// NAT's viewers reconnecting fit, a client cycling sessions to collect passes does not.
	#[arg(long, default_value_t = 30)]
	p2p_max_passes_per_minute: u32,
	/// libp2p listen address of the node's swarm seed (serves its live windows to pass holders;
	/// listed first to every P2P viewer), e.g. `/ip4/0.0.0.0/udp/7701/quic-v1` and
	/// `/ip4/0.0.0.0/tcp/7701`. Repeatable; none: no seed. Needs `--pass-seed`.
	#[arg(long)]
	p2p_listen: Vec<String>,
	/// Directory of the seed's receipt ledger (what `dsp claim --ledger` reads): one file per
	/// epoch, only the changed epochs rewritten.
	#[arg(long)]
	ledger: Option<PathBuf>,
	/// Epochs after an epoch during which its receipts can be claimed (the chain's
	/// `ClaimWindow`, 24 in the runtime): at each epoch change the seed's ledger forgets the
	/// epochs before it, which nobody can claim any more.
	#[arg(long, default_value_t = DEFAULT_CLAIM_WINDOW_EPOCHS)]
	claim_window_epochs: u32,
	/// Signature verifications (passes, receipts) all swarm peers together may make the seed do
	/// per second; a burst of twice as many. New peer ids are free, so this bounds the CPU a
	/// flood can take (about 0.1 s of a core per second at the default 1024).
	#[arg(long, default_value_t = DEFAULT_TOTAL_VERIFY_PER_SEC)]
	p2p_verify_per_sec: u64,
	/// Most inbound swarm connections from one IP address (loopback is not limited); 16
	/// leaves room for viewers behind one NAT.
	#[arg(long, default_value_t = 16)]
	p2p_max_per_ip: u32,
	/// A P2P viewer may `Fetch` chunks of this many newest segments it was announced (its
	/// urgent window); older or unannounced ones are answered `NotHeld`.
	#[arg(long, default_value_t = 8)]
	p2p_fetch_window: u64,
	/// Play time a P2P viewer may `Fetch` from the node per second of real time, in percent
	/// of the stream's bitrate (peers deliver the rest); 150 lets it play from the node alone
	/// and catch up, so a P2P session never costs more than 1.5 direct ones. 64 fetches
	/// refused for either limit close the session.
	#[arg(long, default_value_t = 150)]
	p2p_fetch_speed_percent: u32,
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
	/// Seconds after `Welcome` within which a viewer must subscribe (or join, in P2P mode) and a
	/// publisher must publish, or it is closed whatever it pings: a session that takes no data
	/// and publishes nothing holds a connection for nothing. A real client does it at once.
	#[arg(long, default_value_t = 10)]
	setup_timeout_secs: u64,
	/// Seconds after `Publish` within which a publisher must deliver its first segment, or it
	/// is closed and the stream slot it opened freed (it reconnects and loses nothing). Well
	/// above an encoder's first segment (one target duration, 2 to 6 s, plus its start).
	#[arg(long, default_value_t = 20)]
	first_segment_timeout_secs: u64,
	/// Most sessions open at once from one client address (IPv6: per /64), over TCP and QUIC,
	/// viewers and publishers together; further connections are refused as full. 32 leaves room
	/// for many viewers behind one NAT, yet one address cannot take --max-connections.
	#[arg(long, default_value_t = 32)]
	max_sessions_per_address: usize,
	/// Most connections from one client address that have not completed hello/welcome yet. An
	/// honest client completes it in a round trip or two.
	#[arg(long, default_value_t = 8)]
	max_handshakes_per_address: usize,
	/// Most stream slots without data (a publish before its first segment, a subscribe to a
	/// stream nobody publishes yet) opened from one client address, so that one address cannot
	/// take --max-waiting-streams.
	#[arg(long, default_value_t = 4)]
	max_waiting_streams_per_address: usize,
	/// Lookups of unknown stream ids one client address (IPv6: per /64) may make per minute,
	/// sustained; beyond it a session naming a stream that needs a lookup is told the stream
	/// is unknown. Lookups that find an open stream cost nothing. Applies to streams whose key
	/// is looked up (inside dsp-node: on the chain); `dsp serve` fixes its keys at start. 60:
	/// a mistyped id or a NAT's viewers of a stream that just closed stay far below it.
	#[arg(long, default_value_t = 60)]
	max_lookups_per_minute_per_address: u64,
	/// Lookups of unknown stream ids one client address may make at once (then
	/// --max-lookups-per-minute-per-address applies).
	#[arg(long, default_value_t = 16)]
	lookup_burst_per_address: u64,
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
	/// DIR/<stream>/<broadcast>/<sequence>.seg and DIR/<stream>/<broadcast>/end.frame (serve
	/// them later with --vod-dir).
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

	/// Memory and disk bounds.
	#[clap(flatten)]
	memory: MemoryArgs,
}

/// Memory and disk bounds of `dsp serve`. With the defaults a server holds at most 1.25 GiB
/// of media: 1 GiB of live windows and 256 MiB of segments being assembled.
#[derive(clap::Args)]
pub struct MemoryArgs {
	/// MiB of media held per live stream (its window); the oldest segments go first. Default
	/// 64: 30 two-second segments of a stream up to about 8 Mbit/s.
	#[arg(long, value_name = "MIB", default_value_t = 64)]
	window_mib: usize,
	/// Most streams one origin holds here through its publishers; one more is refused with
	/// `OverBudget`. Default 8: any registered origin may publish, and must not take every
	/// window for itself.
	#[arg(long, default_value_t = 8)]
	max_streams_per_origin: usize,
	/// MiB of media held in all live windows together. A segment that does not fit takes room
	/// from its own window's oldest segments, else its publisher is refused with `OverBudget`.
	/// Default 1024.
	#[arg(long, value_name = "MIB", default_value_t = 1024)]
	max_window_mib: usize,
	/// MiB of segments announced and not complete yet, all publishers together (each holds
	/// one segment of at most 16 MiB); a header beyond it is refused with `OverBudget`.
	/// Default 256: 16 publishers mid-way through a 16 MiB segment.
	#[arg(long, value_name = "MIB", default_value_t = 256)]
	max_partial_mib: usize,
	/// MiB of --max-partial-mib the publishers of one origin hold together; a header beyond
	/// it is refused with `OverBudget`. Default 32: two 16 MiB segments; a few origins leaving
	/// segments half sent cannot hold the whole total (eight are needed).
	#[arg(long, value_name = "MIB", default_value_t = 32)]
	max_partial_mib_per_origin: usize,
	/// With --record-dir: MiB of recordings kept; beyond it whole recordings are deleted,
	/// least recently written first (never the one being written). Default 10240 (10 GiB).
	#[arg(long, value_name = "MIB", default_value_t = 10 * 1024)]
	record_max_mib: u64,
	/// With --record-dir: hours a recording is kept after its last write. Default 168 (7 days).
	#[arg(long, value_name = "HOURS", default_value_t = 7 * 24)]
	record_max_age_hours: u64,
}

impl MemoryArgs {
	/// Writes these bounds into `config`.
	fn apply(&self, config: &mut ServeConfig) {
		const MIB: usize = 1024 * 1024;
		config.window.max_bytes = self.window_mib.saturating_mul(MIB);
		config.memory = MemoryConfig {
			max_streams_per_origin: self.max_streams_per_origin,
			max_window_bytes: self.max_window_mib.saturating_mul(MIB),
			max_partial_bytes: self.max_partial_mib.saturating_mul(MIB),
			max_partial_bytes_per_origin: self.max_partial_mib_per_origin.saturating_mul(MIB),
		};
		config.record_retention = Retention {
			max_bytes: self.record_max_mib.saturating_mul(MIB as u64),
			max_age: Duration::from_secs(self.record_max_age_hours.saturating_mul(3600)),
		};
	}
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
		per_address: PerAddressConfig {
			max_sessions: a.max_sessions_per_address,
			max_handshakes: a.max_handshakes_per_address,
			max_waiting_streams: a.max_waiting_streams_per_address,
		},
		lookup_budget: LookupBudgetConfig {
			per_minute: a.max_lookups_per_minute_per_address,
			burst: a.lookup_burst_per_address,
			..LookupBudgetConfig::default()
		},
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
	a.memory.apply(&mut config);
	config.session.genesis_hash = hex32(&a.genesis, "genesis")?;
	config.session.origin_keys = Arc::new(keys);
	config.session.idle_timeout = Duration::from_secs(a.idle_timeout_secs);
	config.session.hello_timeout = Duration::from_secs(a.hello_timeout_secs);
	config.session.setup_timeout = Duration::from_secs(a.setup_timeout_secs);
	config.session.first_segment_timeout = Duration::from_secs(a.first_segment_timeout_secs);
	config.session.on_demand_lead = Duration::from_secs(a.vod_lead_secs);
	config.session.p2p_fetch_window = a.p2p_fetch_window;
	config.session.p2p_fetch_speed_percent = a.p2p_fetch_speed_percent;
	if let Some(signer) =
		pair_from_secret(a.pass_seed.as_deref(), a.pass_seed_file.as_ref(), "--pass-seed")?
	{
		let mut tracker = TrackerConfig::new(config.session.genesis_hash, a.epoch);
		tracker.pass_period = Duration::from_secs(a.pass_period_secs.max(1));
		tracker.pass_slack = a.pass_slack;
		tracker.max_sessions_per_address = a.p2p_max_sessions_per_address;
		tracker.max_new_passes_per_address = a.p2p_max_passes_per_minute;
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
			seed.serving.claim_window_epochs = a.claim_window_epochs;
			seed.serving.verify.total_per_sec = a.p2p_verify_per_sec;
			seed.serving.verify.total_burst = a.p2p_verify_per_sec.saturating_mul(2);
			seed.limits.max_established_per_ip = a.p2p_max_per_ip;
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
					passes_renewed = s.passes_renewed,
					joins_refused = s.joins_refused,
					bad_join_proofs = s.bad_join_proofs,
					refused_per_address = s.refused_per_address,
					lookups_refused = s.lookups_refused,
					quic_retries = s.quic_retries,
					refused_over_budget = s.refused_over_budget,
					window_bytes = s.window_bytes,
					partial_bytes = s.partial_bytes,
					"server stats"
				);
			},
		}
	}
	server.shutdown().await;
	Ok(())
}
