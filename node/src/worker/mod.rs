//! The streaming worker inside `dsp-node` (DESIGN.md section 7): the data plane's server
//! (`dsp_streaming::net::serve`) run on the service's task manager and steered by the chain.
//!
//! - **Identity**: the node's streaming key ([`keys`]) is its streamer account on chain and
//!   signs the viewer passes it issues in P2P mode.
//! - **Settings**: at every finalized block the worker reads its streamer record
//!   ([`registry::read_settings`]) and applies a change of `max_streams` or `r` to new
//!   admissions at once (open sessions stay), and moves pass issuing to the current epoch.
//!   The same epoch change prunes the swarm seed's receipt ledger: epochs more than the claim
//!   window (`ServingConfig::claim_window_epochs`, by default the runtime's `ClaimWindow` of 24)
//!   behind are forgotten, since nobody can claim them any more.
//! - **Streams**: origin keys come from the chain's stream registry
//!   ([`registry::ChainRegistry`]) as of the latest finalized block; closed streams are refused.
//! - **Redirects**: a viewer the worker cannot admit (direct sessions at the threshold and no
//!   P2P left: `r` = 0, or the P2P cap) is sent the other registered streamers' endpoints
//!   ([`registry::redirect_targets`], refreshed at every finalized block) before `Full`.
//! - **Live load**: [`WorkerHandle`] ([`handle`]) is what the `dsp_liveLoad` RPC and the
//!   Prometheus gauges read.
//! - **Demo**: on development chains, [`demo`] feeds the genesis demo stream from ffmpeg.
//!
//! The worker takes any client with the DSP runtime API ([`WorkerClient`]); it does not name
//! the service's client type, so `service` depends on the worker and not the reverse.

pub mod demo;
pub mod error;
pub mod handle;
pub mod keys;
pub mod registry;

pub use error::WorkerError;
pub use handle::WorkerHandle;

use dsp_primitives::{CapacitySettings, EpochIndex};
use dsp_runtime::{opaque::Block, AccountId};
use dsp_streaming::{
	net::{
		p2p::P2pConfig,
		serve::{RunningServer, ServeConfig, ServerStats},
	},
	p2p::{
		receipts::{LedgerConfig, PassSigners},
		tracker::{PassSigning, TrackerConfig},
		verify_guard::{DEFAULT_PEER_VERIFY_PER_SEC, DEFAULT_TOTAL_VERIFY_PER_SEC},
	},
	server::OriginKeys,
};
use futures::StreamExt;
use registry::{ChainRegistry, ChainSettings, ChainView};
use sc_client_api::{BlockchainEvents, HeaderBackend};
use sp_core::Pair;
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use substrate_prometheus_endpoint::{
	register, Gauge, GaugeVec, Opts, PrometheusError, Registry, F64, U64,
};

/// Log target of every worker log line (the node's `-l dsp-worker=debug` selects them).
pub const LOG_TARGET: &str = "dsp-worker";

/// What the worker needs of the node's client: the chain reads of [`ChainView`], the chain's
/// info (genesis, finalized block) and finality notifications. Every client with the DSP
/// runtime API has it.
pub trait WorkerClient: ChainView + HeaderBackend<Block> + BlockchainEvents<Block> {}

impl<C: ChainView + HeaderBackend<Block> + BlockchainEvents<Block>> WorkerClient for C {}

/// Stream id of the genesis demo stream on development chains.
const DEMO_STREAM: u64 = 0;

/// Command-line options of the streaming worker.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerOptions {
	/// Run the chain only, without the streaming worker.
	#[arg(long)]
	pub no_streaming: bool,

	/// TCP listen address of the streaming worker. Default: the TCP endpoint this node's
	/// streamer account registered on chain.
	#[arg(long, value_name = "ADDR")]
	pub stream_tcp: Option<SocketAddr>,

	/// QUIC (UDP) listen address of the streaming worker. Default: the registered QUIC endpoint.
	#[arg(long, value_name = "ADDR")]
	pub stream_quic: Option<SocketAddr>,

	/// libp2p listen address of the worker's swarm seed for viewers in P2P mode, e.g.
	/// `/ip4/0.0.0.0/udp/7002/quic-v1`. Default: the registered P2P endpoint; `none` turns the
	/// seed off (P2P viewers then only fetch urgent chunks from the worker).
	#[arg(long, value_name = "MULTIADDR")]
	pub stream_p2p: Option<String>,

	/// The streaming key (hex sr25519 public key) when the keystore holds several of key type
	/// `dsps`.
	#[arg(long, value_name = "HEX")]
	pub streamer_key: Option<String>,

	/// Development chains: do not publish the ffmpeg test pattern as demo stream 0.
	#[arg(long)]
	pub no_demo: bool,

	/// A viewer pass covers the stream's measured bitrate times (the time its P2P session has
	/// been joined in the epoch + this period) times --pass-slack, and is renewed every half
	/// period while the session stays joined (the chain also caps by the stream's per-viewer
	/// cap). 120 s: a client that joins and leaves at once holds at most two minutes' worth.
	#[arg(long, value_name = "SECS", default_value_t = 120)]
	pub pass_period_secs: u64,

	/// Factor on the measured bitrate in every viewer pass (bitrate changes, receipts lagging).
	#[arg(long, value_name = "FACTOR", default_value_t = 1.5)]
	pub pass_slack: f64,

	/// Most P2P sessions joined at once from one address (IPv4, or IPv6 /64); further joins are
	/// refused as full. 16: a household or small NAT fits, a Sybil farm on one address does not.
	#[arg(long, value_name = "N", default_value_t = 16)]
	pub stream_p2p_max_sessions_per_address: u32,

	/// Most new viewer passes (joins) per address and minute; renewals do not count. 30: a
	/// NAT's viewers reconnecting fit, a client cycling sessions to collect passes does not.
	#[arg(long, value_name = "N", default_value_t = 30)]
	pub stream_p2p_max_passes_per_minute: u32,

	/// Most concurrent connections to the worker (viewers and publishers).
	#[arg(long, value_name = "N", default_value_t = 4096)]
	pub stream_max_connections: usize,

	/// Most sessions open at once from one client address (IPv6: per /64), over TCP and QUIC,
	/// viewers and publishers together. 32 leaves room for many viewers behind one NAT, yet one
	/// address cannot take --stream-max-connections.
	#[arg(long, value_name = "N", default_value_t = 32)]
	pub stream_max_sessions_per_address: usize,

	/// Most connections from one client address that have not completed hello/welcome yet.
	#[arg(long, value_name = "N", default_value_t = 8)]
	pub stream_max_handshakes_per_address: usize,

	/// Most stream slots without data (a publish before its first segment, a subscribe to a
	/// stream nobody publishes yet) opened from one client address.
	#[arg(long, value_name = "N", default_value_t = 4)]
	pub stream_max_waiting_streams_per_address: usize,

	/// Lookups of unknown stream ids (runtime calls) one client address (IPv6: per /64) may
	/// make per minute, sustained; beyond it a session naming an unknown stream is told so
	/// without a lookup. Lookups that find an open stream cost nothing. 60: a mistyped id or a
	/// NAT's viewers of a stream that just closed stay far below it, a flood of fresh ids from
	/// one address costs at most one runtime call a second.
	#[arg(long, value_name = "N", default_value_t = 60)]
	pub stream_max_lookups_per_minute_per_address: u64,

	/// Lookups of unknown stream ids one client address may make at once (then
	/// --stream-max-lookups-per-minute-per-address applies).
	#[arg(long, value_name = "N", default_value_t = 16)]
	pub stream_lookup_burst_per_address: u64,

	/// Streams whose newest broadcast is remembered after their window is freed, so that the
	/// origin-signed segments and end of an earlier broadcast cannot be replayed into a new
	/// window. 4096 (at most 270 KiB); beyond it the oldest broadcast is forgotten.
	#[arg(long, value_name = "N", default_value_t = 4096)]
	pub stream_max_remembered_broadcasts: usize,

	/// Signature verifications (passes, receipts) all swarm peers together may make the
	/// worker's P2P seed do per second (with --stream-p2p); a burst of twice as many. Peer ids
	/// are free, so this bounds the CPU a flood can take: about 0.1 s of a core per second at
	/// the default 1024 (the per-peer rate of 256 connected peers).
	#[arg(long, value_name = "N", default_value_t = DEFAULT_TOTAL_VERIFY_PER_SEC)]
	pub stream_p2p_verify_per_sec: u64,

	/// Signature verifications one swarm peer may make the P2P seed do per second; a burst of
	/// four times as many. 4: an honest peer sends one receipt a second (two verifications)
	/// and shows a pass now and then.
	#[arg(long, value_name = "N", default_value_t = DEFAULT_PEER_VERIFY_PER_SEC)]
	pub stream_p2p_verify_per_peer_per_sec: u64,

	/// Most inbound swarm connections to the P2P seed from one IP address (IPv6: per /64;
	/// loopback is not limited). 16: peer ids are free, addresses are not; room for viewers
	/// behind one NAT.
	#[arg(long, value_name = "N", default_value_t = 16)]
	pub stream_p2p_max_per_ip: u32,

	/// Seconds after welcome within which a viewer must subscribe or join and a publisher must
	/// publish, or it is closed whatever it pings.
	#[arg(long, value_name = "SECS", default_value_t = 10)]
	pub stream_setup_timeout_secs: u64,

	/// Seconds after publish within which a publisher must deliver its first segment, or it is
	/// closed and the stream slot it opened freed (it reconnects and loses nothing).
	#[arg(long, value_name = "SECS", default_value_t = 20)]
	pub stream_first_segment_timeout_secs: u64,

	/// Most viewers admitted in P2P mode at once; beyond it (and once direct sessions reach the
	/// P2P threshold) viewers are redirected to other registered streamers.
	#[arg(long, value_name = "N", default_value_t = dsp_streaming::server::DEFAULT_MAX_P2P_SESSIONS)]
	pub stream_max_p2p_sessions: u32,

	/// Memory bounds (`--stream-window-mib`, `--stream-max-*`).
	#[clap(flatten)]
	pub memory: crate::cli::StreamMemoryOptions,
}

/// Everything [`start`] needs from the service.
pub struct WorkerParams<C> {
	/// The client.
	pub client: Arc<C>,
	/// The keystore holding the streaming key.
	pub keystore: Arc<sc_keystore::LocalKeystore>,
	/// Options from the command line.
	pub options: WorkerOptions,
	/// The dev seed (`--dev`, `--alice`, …): inserted as streaming key if the keystore has none.
	pub dev_key_seed: Option<String>,
	/// Development chain: publish the ffmpeg demo stream (origin key: the dev seed).
	pub demo: bool,
	/// Where the swarm seed keeps its receipt ledger.
	pub ledger_dir: PathBuf,
	/// Prometheus registry, if metrics are on.
	pub prometheus: Option<Registry>,
	/// Shared with RPC.
	pub handle: WorkerHandle,
}

/// Decides whether the worker runs and prepares it; the returned future runs it (spawn it as
/// an essential task: it only ends on a fatal error, such as a listen address in use).
/// `Ok(None)`: the worker is off (said in the log).
pub fn start<C: WorkerClient>(
	params: WorkerParams<C>,
) -> Result<Option<impl std::future::Future<Output = ()> + Send + 'static>, WorkerError> {
	let WorkerParams {
		client,
		keystore,
		options,
		dev_key_seed,
		demo,
		ledger_dir,
		prometheus,
		handle,
	} = params;
	if options.no_streaming {
		log::info!(target: LOG_TARGET, "streaming worker off (--no-streaming)");
		return Ok(None);
	}
	if let Some(seed) = &dev_key_seed {
		keys::insert_dev_key(&keystore, seed)?;
	}
	let wanted = match &options.streamer_key {
		Some(hex_key) => Some(parse_public(hex_key)?),
		None => None,
	};
	let pair = match keys::streaming_pair(&keystore, wanted) {
		Ok(pair) => pair,
		Err(keys::KeyError::Missing) => {
			log::warn!(target: LOG_TARGET, "streaming worker off: {}", keys::KeyError::Missing);
			return Ok(None);
		}
		Err(e) => return Err(e.into()),
	};
	let account = AccountId::from(pair.public());
	let info = client.info();
	let genesis_hash: [u8; 32] = info.genesis_hash.into();
	let chain = registry::read_settings(&*client, info.finalized_hash, &account)
		.map_err(WorkerError::StreamerRecord)?;
	// Usually the listen addresses are known now (options or the registered endpoints): then
	// a bad option stops the node at once. A node that is still syncing, or whose account is
	// not registered yet, waits for its record instead of stopping.
	let ready = match listen_addrs(&options, &chain) {
		(None, None) => {
			log::warn!(
				target: LOG_TARGET,
				"streaming worker waiting: {}",
				no_address_reason(&account, &chain, info.finalized_number)
			);
			None
		}
		addrs => {
			let config = serve_config(&client, &pair, &options, &chain, addrs, &ledger_dir)?;
			Some((chain, config))
		}
	};

	let metrics = match &prometheus {
		Some(registry) => Some(Metrics::register(registry)?),
		None => None,
	};
	handle.set_streamer(account.clone());
	let demo = dev_key_seed
		.filter(|_| demo && !options.no_demo)
		.and_then(|seed| sp_core::sr25519::Pair::from_string(&seed, None).ok());

	Ok(Some(async move {
		let (chain, config) = match ready {
			Some(ready) => ready,
			None => {
				let Some(chain) = wait_for_listen_addrs(&*client, &account, &options).await else {
					return;
				};
				let addrs = listen_addrs(&options, &chain);
				match serve_config(&client, &pair, &options, &chain, addrs, &ledger_dir) {
					Ok(config) => (chain, config),
					Err(e) => {
						log::error!(target: LOG_TARGET, "streaming worker cannot start: {e}");
						return;
					}
				}
			}
		};
		if !chain.registered {
			log::warn!(
				target: LOG_TARGET,
				"account {account} is not a registered streamer: using the chain's default \
				 settings, and viewers will not find this node in the registry"
			);
		}
		handle.set_chain(chain.clone());
		let server = match RunningServer::start(config).await {
			Ok(s) => Arc::new(s),
			Err(e) => {
				log::error!(target: LOG_TARGET, "streaming worker cannot start: {e}");
				return;
			}
		};
		log::info!(
			target: LOG_TARGET,
			"streaming worker up: streamer {account}, tcp {:?}, quic {:?}, QUIC fingerprint {}, \
			 max_streams {}, r {:?} (P2P from {} direct sessions), epoch {}",
			server.tcp_addr,
			server.quic_addr,
			hex::encode(server.fingerprint),
			chain.capacity.max_streams,
			chain.capacity.streaming_rate,
			chain.capacity.p2p_threshold(),
			chain.epoch,
		);
		if let Some(node) = server.p2p_node() {
			for addr in &node.listen_addrs {
				log::info!(target: LOG_TARGET, "swarm seed: {addr}/p2p/{}", node.peer_id);
			}
		}
		match registry::redirect_targets(&*client, client.info().finalized_hash, &account) {
			Ok(targets) => server.set_redirect(targets),
			Err(e) => log::warn!(target: LOG_TARGET, "reading streamers: {e}"),
		}
		handle.set_server(server.clone());
		// The demo publishes to the bound address (the configured port may be 0).
		if let (Some(origin), Some(tcp)) = (demo, server.tcp_addr) {
			// Video gets the stream's registered bitrate minus the 64 kbit/s of audio.
			let bitrate = registry::stream_bitrate(&*client, DEMO_STREAM)
				.unwrap_or(500)
				.saturating_sub(64)
				.max(100);
			tokio::spawn(demo::run(demo::DemoConfig {
				stream: DEMO_STREAM,
				origin,
				genesis_hash,
				server: tcp,
				video_kbps: bitrate,
			}));
		}
		follow_chain(client, server, account, chain, handle, metrics).await;
	}))
}

/// TCP and QUIC listen addresses: the options', else the endpoints registered on chain.
fn listen_addrs(
	options: &WorkerOptions,
	chain: &ChainSettings,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
	let registered = |field: fn(&dsp_primitives::EndpointsView) -> &Vec<u8>| {
		chain.endpoints.as_ref().and_then(|e| std::str::from_utf8(field(e)).ok()?.parse().ok())
	};
	(
		options.stream_tcp.or_else(|| registered(|e| &e.tcp)),
		options.stream_quic.or_else(|| registered(|e| &e.quic)),
	)
}

fn no_address_reason(account: &AccountId, chain: &ChainSettings, block: u32) -> String {
	format!(
		"no listen address: account {account} is {} at finalized block #{block} (still \
		 syncing?). Register endpoints (dsp.registerStreamer), or pass \
		 --stream-tcp/--stream-quic, or run with --no-streaming; the worker starts as soon as a \
		 finalized block has them",
		if chain.registered { "a streamer without usable endpoints" } else { "not a streamer" }
	)
}

/// Follows finalized blocks until the node's streamer record gives a listen address; `None`
/// if the node shuts down first. Repeats its warning every minute.
async fn wait_for_listen_addrs<C: WorkerClient>(
	client: &C,
	account: &AccountId,
	options: &WorkerOptions,
) -> Option<ChainSettings> {
	let mut finalized = client.finality_notification_stream();
	let mut warned = std::time::Instant::now();
	loop {
		let n = finalized.next().await?;
		match registry::read_settings(client, n.hash, account) {
			Ok(chain) if listen_addrs(options, &chain) != (None, None) => {
				log::info!(target: LOG_TARGET, "streamer record found at finalized block #{}", n.header.number);
				return Some(chain);
			}
			Ok(chain) if warned.elapsed() >= Duration::from_secs(60) => {
				warned = std::time::Instant::now();
				log::warn!(
					target: LOG_TARGET,
					"streaming worker waiting: {}",
					no_address_reason(account, &chain, n.header.number)
				);
			}
			Ok(_) => {}
			Err(e) => log::warn!(target: LOG_TARGET, "reading settings at {}: {e}", n.hash),
		}
	}
}

/// The server's configuration for `chain` as read at start (capacity, epoch, endpoints).
fn serve_config<C: WorkerClient>(
	client: &Arc<C>,
	pair: &sp_core::sr25519::Pair,
	options: &WorkerOptions,
	chain: &ChainSettings,
	(tcp, quic): (Option<SocketAddr>, Option<SocketAddr>),
	ledger_dir: &std::path::Path,
) -> Result<ServeConfig, WorkerError> {
	let registered_p2p = chain
		.endpoints
		.as_ref()
		.and_then(|e| std::str::from_utf8(&e.p2p).ok())
		.filter(|s| !s.is_empty())
		.map(str::to_owned);
	let p2p_listen = match options.stream_p2p.as_deref() {
		Some("none") => None,
		Some(m) => Some(m.to_owned()),
		None => registered_p2p,
	};
	let genesis_hash: [u8; 32] = client.info().genesis_hash.into();
	let mut config = ServeConfig { tcp, quic, capacity: chain.capacity, ..Default::default() };
	config.max_connections = options.stream_max_connections;
	config.per_address = dsp_streaming::server::PerAddressConfig {
		max_sessions: options.stream_max_sessions_per_address,
		max_handshakes: options.stream_max_handshakes_per_address,
		max_waiting_streams: options.stream_max_waiting_streams_per_address,
	};
	config.lookup_budget = dsp_streaming::server::LookupBudgetConfig {
		per_minute: options.stream_max_lookups_per_minute_per_address,
		burst: options.stream_lookup_burst_per_address,
		..Default::default()
	};
	config.session.setup_timeout = Duration::from_secs(options.stream_setup_timeout_secs);
	config.session.first_segment_timeout =
		Duration::from_secs(options.stream_first_segment_timeout_secs);
	config.max_p2p_sessions = options.stream_max_p2p_sessions;
	options.memory.apply(&mut config);
	config.streams.max_remembered = options.stream_max_remembered_broadcasts;
	config.session.genesis_hash = genesis_hash;
	config.session.origin_keys = Arc::new(OriginKeys {
		directory: Some(Arc::new(ChainRegistry::new(client.clone()))),
		..Default::default()
	});
	let mut tracker = TrackerConfig::new(genesis_hash, chain.epoch);
	tracker.pass_period = std::time::Duration::from_secs(options.pass_period_secs.max(1));
	tracker.pass_slack = options.pass_slack;
	tracker.max_sessions_per_address = options.stream_p2p_max_sessions_per_address;
	tracker.max_new_passes_per_address = options.stream_p2p_max_passes_per_minute;
	tracker.max_streams = config.streams.max_streams;
	if let Some(listen) = &p2p_listen {
		let secret = dsp_streaming::p2p::p2p_identity_seed(&pair);
		let signers = PassSigners { default: vec![pair.public()], ..Default::default() };
		let ledger = LedgerConfig::new(genesis_hash, pair.public().0, signers);
		let mut seed = P2pConfig::loopback(secret, ledger);
		seed.listen = vec![listen.parse().map_err(|e| WorkerError::BadP2pListen {
			address: listen.clone(),
			reason: format!("{e}"),
		})?];
		seed.ledger_dir = Some(ledger_dir.to_path_buf());
		let verify = &mut seed.serving.verify;
		verify.total_per_sec = options.stream_p2p_verify_per_sec;
		verify.total_burst = options.stream_p2p_verify_per_sec.saturating_mul(2);
		verify.per_peer_per_sec = options.stream_p2p_verify_per_peer_per_sec;
		verify.per_peer_burst = options.stream_p2p_verify_per_peer_per_sec.saturating_mul(4);
		seed.limits.max_established_per_ip = options.stream_p2p_max_per_ip;
		config.p2p_seed = Some(seed);
	}
	config.p2p = Some(PassSigning { signer: pair.clone(), tracker });
	Ok(config)
}

/// Applies every finalized block's settings and epoch; refreshes the metrics every second.
async fn follow_chain<C: WorkerClient>(
	client: Arc<C>,
	server: Arc<RunningServer>,
	account: AccountId,
	mut applied: ChainSettings,
	handle: WorkerHandle,
	metrics: Option<Metrics>,
) {
	let mut finalized = client.finality_notification_stream();
	let mut tick = tokio::time::interval(Duration::from_secs(1));
	loop {
		tokio::select! {
			n = finalized.next() => {
				let Some(n) = n else { return };
				match registry::read_settings(&*client, n.hash, &account) {
					Ok(now) => {
						applied = apply(&server, &applied, now).await;
						handle.set_chain(applied.clone());
					}
					Err(e) => log::warn!(target: LOG_TARGET, "reading settings at {}: {e}", n.hash),
				}
				match registry::redirect_targets(&*client, n.hash, &account) {
					Ok(targets) => server.set_redirect(targets),
					Err(e) => log::warn!(target: LOG_TARGET, "reading streamers at {}: {e}", n.hash),
				}
			}
			_ = tick.tick() => {
				if let Some(m) = &metrics {
					m.update(&server.stats(), &applied.capacity, applied.epoch);
				}
			}
		}
	}
}

/// Applies what changed between two finalized blocks; returns what is now in force (an epoch
/// change that failed stays pending, so the next block retries it).
async fn apply(
	server: &RunningServer,
	before: &ChainSettings,
	now: ChainSettings,
) -> ChainSettings {
	if now.capacity != before.capacity {
		server.set_capacity(now.capacity);
		log::info!(
			target: LOG_TARGET,
			"capacity settings applied: max_streams {}, r {:?}, P2P from {} direct sessions",
			now.capacity.max_streams,
			now.capacity.streaming_rate,
			now.capacity.p2p_threshold(),
		);
	}
	if now.epoch != before.epoch {
		if let Err(e) = server.set_epoch(now.epoch).await {
			log::warn!(target: LOG_TARGET, "moving to epoch {} (retried next block): {e}", now.epoch);
			return ChainSettings { epoch: before.epoch, ..now };
		}
		log::info!(
			target: LOG_TARGET,
			"credit epoch {}: passes name it from now on; the seed ledger forgot epochs past the \
			 claim window",
			now.epoch
		);
	}
	now
}

fn parse_public(hex_key: &str) -> Result<sp_core::sr25519::Public, WorkerError> {
	let bytes = hex::decode(hex_key.trim_start_matches("0x"))
		.map_err(|e| WorkerError::BadStreamerKey(format!("bad hex ({e})")))?;
	let raw: [u8; 32] = bytes
		.try_into()
		.map_err(|_| WorkerError::BadStreamerKey("expected 32 bytes".to_string()))?;
	Ok(sp_core::sr25519::Public::from_raw(raw))
}

/// Prometheus gauges of the worker, refreshed every second.
struct Metrics {
	sessions: GaugeVec<U64>,
	sessions_by_transport: GaugeVec<U64>,
	passes_issued: Gauge<U64>,
	refused: Gauge<U64>,
	redirects: Gauge<U64>,
	switches: GaugeVec<U64>,
	connections: Gauge<U64>,
	closed_with_error: Gauge<U64>,
	segments_stored: Gauge<U64>,
	bytes_sent: Gauge<U64>,
	bytes_sent_p2p: Gauge<U64>,
	p2p_share: Gauge<F64>,
	max_streams: Gauge<U64>,
	p2p_threshold: Gauge<U64>,
	epoch: Gauge<U64>,
	// What attackers cost and what the guards refused (issue 12).
	passes_renewed: Gauge<U64>,
	joins_refused: Gauge<U64>,
	bad_join_proofs: Gauge<U64>,
	refused_per_address: Gauge<U64>,
	lookups_refused: Gauge<U64>,
	quic_retries: Gauge<U64>,
	refused_over_budget: Gauge<U64>,
	window_bytes: Gauge<U64>,
	partial_bytes: Gauge<U64>,
}

impl Metrics {
	fn register(registry: &Registry) -> Result<Self, PrometheusError> {
		let gauge = |name: &str, help: &str| register(Gauge::new(name, help)?, registry);
		Ok(Self {
			sessions: register(
				GaugeVec::new(
					Opts::new("dsp_streaming_sessions", "Open viewer sessions per admission mode"),
					&["mode"],
				)?,
				registry,
			)?,
			sessions_by_transport: register(
				GaugeVec::new(
					Opts::new(
						"dsp_streaming_sessions_by_transport",
						"Open viewer sessions per admission mode and transport",
					),
					&["mode", "transport"],
				)?,
				registry,
			)?,
			passes_issued: gauge(
				"dsp_streaming_passes_issued_total",
				"Viewer passes signed since start",
			)?,
			refused: gauge("dsp_streaming_refused_total", "Viewers refused since start")?,
			redirects: gauge(
				"dsp_streaming_redirects_total",
				"Refused viewers sent to other registered streamers since start",
			)?,
			switches: register(
				GaugeVec::new(
					Opts::new(
						"dsp_streaming_switches_total",
						"Viewer transport switches since start, by the transport switched to",
					),
					&["to"],
				)?,
				registry,
			)?,
			connections: gauge(
				"dsp_streaming_connections_total",
				"Connections accepted since start",
			)?,
			closed_with_error: gauge(
				"dsp_streaming_closed_with_error_total",
				"Connections closed with an error code since start",
			)?,
			segments_stored: gauge(
				"dsp_streaming_segments_stored_total",
				"Segments stored from publishers since start",
			)?,
			bytes_sent: gauge(
				"dsp_streaming_bytes_sent_total",
				"Bytes queued to viewers since start",
			)?,
			bytes_sent_p2p: gauge(
				"dsp_streaming_bytes_sent_p2p_total",
				"Bytes queued to viewers in P2P mode since start (headers, seeded chunks, fetches)",
			)?,
			p2p_share: register(
				Gauge::new(
					"dsp_streaming_p2p_share",
					"Share of the media announced to P2P viewers that the node did not send them \
					 (from peers); 0 before any",
				)?,
				registry,
			)?,
			max_streams: gauge("dsp_streaming_max_streams", "max_streams in force")?,
			p2p_threshold: gauge(
				"dsp_streaming_p2p_threshold",
				"Direct sessions from which new viewers are admitted in P2P mode",
			)?,
			epoch: gauge("dsp_streaming_epoch", "Credit epoch passes are issued for")?,
			passes_renewed: gauge(
				"dsp_streaming_passes_renewed_total",
				"Viewer passes renewed for sessions that stayed joined, since start",
			)?,
			joins_refused: gauge(
				"dsp_streaming_joins_refused_total",
				"P2P joins refused (per-address limits, new passes per minute), since start",
			)?,
			bad_join_proofs: gauge(
				"dsp_streaming_bad_join_proofs_total",
				"Joins whose proof of the viewer key failed, since start",
			)?,
			refused_per_address: gauge(
				"dsp_streaming_refused_per_address_total",
				"Connections refused by a per-address limit (sessions, handshakes), since start",
			)?,
			lookups_refused: gauge(
				"dsp_streaming_lookups_refused_total",
				"Stream lookups refused: the address spent its budget for unknown ids, since start",
			)?,
			quic_retries: gauge(
				"dsp_streaming_quic_retries_total",
				"QUIC Retry packets sent to validate client addresses, since start",
			)?,
			refused_over_budget: gauge(
				"dsp_streaming_refused_over_budget_total",
				"Publishers refused with OverBudget (memory bounds), since start",
			)?,
			window_bytes: gauge(
				"dsp_streaming_window_bytes",
				"Media bytes held in all live windows now",
			)?,
			partial_bytes: gauge(
				"dsp_streaming_partial_bytes",
				"Bytes of segments being assembled now",
			)?,
		})
	}

	fn update(&self, stats: &ServerStats, capacity: &CapacitySettings, epoch: EpochIndex) {
		self.sessions.with_label_values(&["direct"]).set(stats.admission.direct.into());
		self.sessions.with_label_values(&["p2p"]).set(stats.admission.p2p.into());
		let by = &stats.sessions;
		for (mode, transport, value) in [
			("direct", "tcp", by.direct_tcp),
			("direct", "quic", by.direct_quic),
			("p2p", "tcp", by.p2p_tcp),
			("p2p", "quic", by.p2p_quic),
		] {
			self.sessions_by_transport.with_label_values(&[mode, transport]).set(value);
		}
		self.passes_issued.set(stats.passes_issued);
		self.refused.set(stats.admission.refused);
		self.redirects.set(stats.redirects);
		self.switches.with_label_values(&["tcp"]).set(stats.switches.to_tcp);
		self.switches.with_label_values(&["quic"]).set(stats.switches.to_quic);
		self.connections.set(stats.connections);
		self.closed_with_error.set(stats.closed_with_error);
		self.segments_stored.set(stats.segments_stored);
		self.bytes_sent.set(stats.bytes_sent);
		self.bytes_sent_p2p.set(stats.bytes_sent_p2p);
		self.p2p_share.set(stats.p2p_share().unwrap_or(0.0));
		self.max_streams.set(capacity.max_streams.into());
		self.p2p_threshold.set(capacity.p2p_threshold().into());
		self.epoch.set(epoch.into());
		self.passes_renewed.set(stats.passes_renewed);
		self.joins_refused.set(stats.joins_refused);
		self.bad_join_proofs.set(stats.bad_join_proofs);
		self.refused_per_address.set(stats.refused_per_address);
		self.lookups_refused.set(stats.lookups_refused);
		self.quic_retries.set(stats.quic_retries);
		self.refused_over_budget.set(stats.refused_over_budget);
		self.window_bytes.set(stats.window_bytes as u64);
		self.partial_bytes.set(stats.partial_bytes as u64);
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	/// The guards' counters reach the node's Prometheus registry under their names, with the
	/// values of the server's counters.
	#[test]
	fn metrics_export_the_guards_counters() {
		let registry = Registry::new();
		let metrics = Metrics::register(&registry).expect("metrics register");
		let stats = ServerStats {
			passes_renewed: 1,
			joins_refused: 2,
			bad_join_proofs: 3,
			refused_per_address: 4,
			lookups_refused: 5,
			quic_retries: 6,
			refused_over_budget: 7,
			window_bytes: 8,
			partial_bytes: 9,
			..Default::default()
		};
		metrics.update(&stats, &CapacitySettings::spec_default(), 0);
		let value = |name: &str| {
			registry
				.gather()
				.iter()
				.find(|f| f.get_name() == name)
				.map(|f| f.get_metric()[0].get_gauge().get_value())
		};
		for (n, name) in [
			"dsp_streaming_passes_renewed_total",
			"dsp_streaming_joins_refused_total",
			"dsp_streaming_bad_join_proofs_total",
			"dsp_streaming_refused_per_address_total",
			"dsp_streaming_lookups_refused_total",
			"dsp_streaming_quic_retries_total",
			"dsp_streaming_refused_over_budget_total",
			"dsp_streaming_window_bytes",
			"dsp_streaming_partial_bytes",
		]
		.iter()
		.enumerate()
		{
			assert_eq!(value(name), Some(n as f64 + 1.0), "{name}");
		}
	}
}
