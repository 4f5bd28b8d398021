//! The server driver: TCP and QUIC listeners, one task per connection running a
//! [`ServerSession`], the live windows shared by all sessions (in a [`StreamTable`] that frees
//! ended and idle streams), and optionally the recorder and the on-demand source of
//! [`super::vod`].
//!
//! - `accept`: the listeners, refusals beyond `max_connections`, the writer task.
//! - `driver`: `SessionDriver`, the event loop of one connection.
//! - `control`: the decisions that loop makes, sans-IO (admission and join outcomes,
//!   reopening a freed window, when a session is done, byte counting).
//! - `shared`: the stream table, windows, seeding and counters the sessions share.
//! - `limits`: the per-address limits as guards the connection tasks hold.

mod accept;
mod control;
mod driver;
mod limits;
mod shared;

use self::{
	accept::{accept_quic, accept_tcp, MAX_PENDING_REFUSALS},
	shared::{Shared, WindowSource, SWEEP_INTERVAL},
};
use super::{
	p2p::{P2pConfig, P2pNode},
	tls,
	vod::{Recorder, Retention},
};
#[cfg(doc)]
use crate::server::{ServerSession, StreamTable};
use crate::{
	p2p::{seeding::SeedConfig, tracker::PassSigning},
	protocol::ServerAddrs,
	server::{
		AdmissionStats, LookupBudgetConfig, MemoryConfig, PerAddressConfig, SessionConfig,
		StreamTableConfig, WindowConfig, DEFAULT_MAX_P2P_SESSIONS,
	},
};
use dsp_primitives::{CapacitySettings, EpochIndex, Hash32};
use std::{
	io,
	net::SocketAddr,
	path::PathBuf,
	sync::{atomic::Ordering, Arc},
	time::Duration,
};
use tokio::{
	net::TcpListener,
	sync::{watch, Semaphore},
	task::JoinHandle,
};
use tracing::{info, warn};

/// Settings of a running server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
	/// TCP listen address; `None` for no TCP. Default `127.0.0.1:0`.
	pub tcp: Option<SocketAddr>,
	/// QUIC (UDP) listen address; `None` for no QUIC. Default `127.0.0.1:0`.
	pub quic: Option<SocketAddr>,
	/// Per-session limits, origin keys and genesis hash.
	pub session: SessionConfig,
	/// Live window limits, per stream.
	pub window: WindowConfig,
	/// Capacity rule for viewers (`max_streams`, `r`).
	pub capacity: CapacitySettings,
	/// Most connections open at once, viewers, publishers and not-yet-identified clients
	/// together; further ones are refused with `Full`. Default 4096.
	pub max_connections: usize,
	/// What one client address may hold (sessions, handshakes in flight, streams without
	/// data), so that one address cannot take `max_connections` or the waiting stream slots
	/// for itself. Connections beyond it are refused with `Full` (no redirect).
	pub per_address: PerAddressConfig,
	/// Lookups of unknown stream ids per client address (when a stream's key is looked up in
	/// `session.origin_keys.directory`, as inside `dsp-node`): beyond it the stream is reported
	/// unknown without a lookup. See [`crate::server::LookupBudget`].
	pub lookup_budget: LookupBudgetConfig,
	/// Streams held at once, and when ended or idle ones are freed.
	pub streams: StreamTableConfig,
	/// Records every segment and end the server stores to `<dir>/<stream>/` (see
	/// [`super::vod`]). Default none.
	pub record_dir: Option<PathBuf>,
	/// Serves recordings under this directory on demand to viewers of streams that are not
	/// live here. Default none.
	pub vod_dir: Option<PathBuf>,
	/// A write that makes no progress for this long closes the session (a client that does
	/// not read). Default 10 s.
	pub write_stall_timeout: Duration,
	/// QUIC idle timeout (the transport's own, below the protocol's). Default 10 s.
	pub quic_idle_timeout: Duration,
	/// UDP send and receive buffer asked for the QUIC socket. Default
	/// [`tls::DEFAULT_UDP_BUFFER`] (4 MiB, capped by the kernel).
	pub udp_buffer: usize,
	/// Pass signing for P2P admission. `None` (default): viewers the capacity rule puts in
	/// P2P mode are refused with `Full`.
	pub p2p: Option<PassSigning>,
	/// Most viewers admitted in P2P mode at once; further ones are refused with `Full` (and
	/// redirected, see [`RunningServer::set_redirect`]). Default
	/// [`DEFAULT_MAX_P2P_SESSIONS`] (10 000): each costs a header feed, seeded chunks and a
	/// tracker entry.
	pub max_p2p_sessions: u32,
	/// Seed the swarm: a libp2p node that serves the live windows over `/dsp/p2p/1` to viewers
	/// holding passes, and is the first peer every `Joined` lists. Used only with `p2p`.
	/// Default `None`.
	pub p2p_seed: Option<P2pConfig>,
	/// How many P2P viewers each new chunk is pushed to (the node's seeding rotation).
	pub seeding: SeedConfig,

	// Memory and disk bounds (issue 12).
	/// Totals beyond one stream: streams per origin, bytes of all live windows and of all
	/// segments being assembled. With the defaults the server holds at most
	/// [`MemoryConfig::worst_case_bytes`] (1.25 GiB) of media.
	pub memory: MemoryConfig,
	/// What the recorder keeps under `record_dir` (default 10 GiB, 7 days).
	pub record_retention: Retention,
}

impl Default for ServeConfig {
	fn default() -> Self {
		let local = SocketAddr::from(([127, 0, 0, 1], 0));
		Self {
			tcp: Some(local),
			quic: Some(local),
			session: SessionConfig::default(),
			window: WindowConfig::default(),
			capacity: CapacitySettings::spec_default(),
			max_connections: 4096,
			per_address: PerAddressConfig::default(),
			lookup_budget: LookupBudgetConfig::default(),
			streams: StreamTableConfig::default(),
			record_dir: None,
			vod_dir: None,
			write_stall_timeout: Duration::from_secs(10),
			quic_idle_timeout: Duration::from_secs(10),
			udp_buffer: tls::DEFAULT_UDP_BUFFER,
			p2p: None,
			max_p2p_sessions: DEFAULT_MAX_P2P_SESSIONS,
			p2p_seed: None,
			seeding: SeedConfig::default(),
			memory: MemoryConfig::default(),
			record_retention: Retention::default(),
		}
	}
}

/// Server-wide counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerStats {
	/// Sessions per admission mode.
	pub admission: AdmissionStats,
	/// Connections accepted since start.
	pub connections: u64,
	/// Connections closed with an error code (bad input, timeouts, slow consumers, full).
	pub closed_with_error: u64,
	/// Segments stored from publishers.
	pub segments_stored: u64,
	/// Bytes queued to viewers (both modes).
	pub bytes_sent: u64,
	/// Streams holding a window now.
	pub streams_held: usize,
	/// Streams freed (ended or idle) since start.
	pub streams_freed: u64,
	/// On-demand sessions started since start.
	pub vod_sessions: u64,
	/// Of `bytes_sent`, bytes queued to viewers admitted in P2P mode: headers, seeded chunks
	/// and urgent `Fetch` answers (the node's egress to the swarm).
	pub bytes_sent_p2p: u64,
	/// Chunk bytes of every segment announced to P2P viewers (each viewer counted): what they
	/// need to play. With [`Self::p2p_chunk_bytes_sent`] it gives [`Self::p2p_share`].
	pub p2p_media_due: u64,
	/// Of that, chunk bytes the server sent them itself (seeded chunks and urgent fetches).
	pub p2p_chunk_bytes_sent: u64,
	/// Open viewer sessions per mode and transport.
	pub sessions: SessionsByTransport,
	/// Viewer passes signed for P2P joins since start (renewals apart).
	pub passes_issued: u64,
	/// Renewed passes sent to joined P2P viewers since start.
	pub passes_renewed: u64,
	/// `Join`s refused for their address's limits (sessions at once, new passes a minute).
	pub joins_refused: u64,
	/// `Join`s whose proof of key possession did not verify (each closed the session).
	pub bad_join_proofs: u64,
	/// Refusals as full that carried a `Redirect` to other streamers, since start: viewers
	/// refused by the capacity rule or the P2P cap, and TCP connections beyond
	/// `max_connections` (refused before they say whether they are viewers).
	pub redirects: u64,
	/// Connections viewers opened to switch transport (`Switched`), since start.
	pub switches: SwitchCounts,
	/// Media bytes held in all live windows now (bounded by `memory.max_window_bytes`).
	pub window_bytes: usize,
	/// Bytes of segments being assembled now (bounded by `memory.max_partial_bytes`).
	pub partial_bytes: usize,
	/// Publishers refused with `OverBudget` since start.
	pub refused_over_budget: u64,
	/// Connections refused because their address reached a per-address limit
	/// ([`ServeConfig::per_address`]), since start.
	pub refused_per_address: u64,
	/// Lookups of stream ids refused because their address spent its budget
	/// ([`ServeConfig::lookup_budget`]), since start: each session was told the stream is
	/// unknown.
	pub lookups_refused: u64,
	/// QUIC Retry packets sent, since start: every QUIC client whose address is not
	/// validated yet gets one and takes a connection permit only once it answers it.
	pub quic_retries: u64,
}

/// Transport switches reported by viewers (`Switched` after `Subscribe`), by the transport of
/// the connection that reported it: the one switched to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchCounts {
	/// Switches to TCP (away from QUIC).
	pub to_tcp: u64,
	/// Switches to QUIC (away from TCP).
	pub to_quic: u64,
}

impl ServerStats {
	/// Share of the media announced to P2P viewers that the server did not send them itself,
	/// i.e. that came from peers (an upper bound: media a viewer never played counts as from
	/// peers too). `None` before any segment was announced in P2P mode.
	pub fn p2p_share(&self) -> Option<f64> {
		(self.p2p_media_due > 0)
			.then(|| 1.0 - (self.p2p_chunk_bytes_sent as f64 / self.p2p_media_due as f64).min(1.0))
	}
}

/// Open viewer sessions per admission mode and transport: the type `dsp_liveLoad` reports, so
/// the node passes it on as it is.
pub use dsp_primitives::rpc_types::SessionsByTransport;

/// A running server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
	/// Bound TCP address.
	pub tcp_addr: Option<SocketAddr>,
	/// Bound QUIC address.
	pub quic_addr: Option<SocketAddr>,
	/// blake2-256 of the QUIC certificate.
	pub fingerprint: Hash32,
	shared: Arc<Shared>,
	shutdown: watch::Sender<bool>,
	tasks: Vec<JoinHandle<()>>,
	quic: Option<quinn::Endpoint>,
	p2p: Option<P2pNode>,
}

impl RunningServer {
	/// Binds the listeners and starts accepting.
	pub async fn start(config: ServeConfig) -> io::Result<RunningServer> {
		let recorder = match &config.record_dir {
			Some(dir) => Some(Recorder::new(dir.clone(), config.record_retention.clone())?),
			None => None,
		};
		let shared = Arc::new(Shared::new(config, recorder));
		let mut p2p = None;
		if let (Some(cfg), Some(tracker)) = (shared.config.p2p_seed.clone(), &shared.tracker) {
			let node = P2pNode::start(cfg, Arc::new(WindowSource(shared.clone())))
				.await
				.map_err(io::Error::other)?;
			tracker.lock().set_bootstrap(node.peer_info());
			if let Some(p) = &shared.config.p2p {
				node.set_epoch(p.tracker.epoch).await.map_err(io::Error::other)?;
			}
			info!(peer_id = %node.peer_id, addrs = ?node.listen_addrs, "p2p seed listening");
			p2p = Some(node);
		}
		let (shutdown, _) = watch::channel(false);
		let permits = Arc::new(Semaphore::new(shared.config.max_connections));
		let refusals = Arc::new(Semaphore::new(MAX_PENDING_REFUSALS));
		let identity = tls::ServerIdentity::self_signed()?;
		let mut tasks = Vec::new();
		tasks.push(tokio::spawn(sweep(shared.clone(), shutdown.subscribe())));
		let mut tcp_addr = None;
		if let Some(addr) = shared.config.tcp {
			let listener = TcpListener::bind(addr).await?;
			tcp_addr = Some(listener.local_addr()?);
			tasks.push(tokio::spawn(accept_tcp(
				listener,
				shared.clone(),
				permits.clone(),
				refusals.clone(),
				shutdown.subscribe(),
			)));
		}
		let mut quic_addr = None;
		let mut quic = None;
		if let Some(addr) = shared.config.quic {
			let cfg = tls::server_config(&identity, shared.config.quic_idle_timeout)?;
			let endpoint = tls::endpoint(addr, Some(cfg), shared.config.udp_buffer)?;
			quic_addr = Some(endpoint.local_addr()?);
			tasks.push(tokio::spawn(accept_quic(
				endpoint.clone(),
				shared.clone(),
				permits,
				refusals,
				shutdown.subscribe(),
			)));
			quic = Some(endpoint);
		}
		info!(
			tcp = ?tcp_addr,
			quic = ?quic_addr,
			fingerprint = %hex::encode(identity.fingerprint),
			"server listening"
		);
		Ok(RunningServer {
			tcp_addr,
			quic_addr,
			fingerprint: identity.fingerprint,
			shared,
			shutdown,
			tasks,
			quic,
			p2p,
		})
	}

	/// Counters.
	pub fn stats(&self) -> ServerStats {
		let s = &self.shared;
		let tracker = s.tracker.as_ref().map(|t| t.lock().stats()).unwrap_or_default();
		ServerStats {
			admission: s.admission.lock().stats(),
			connections: s.connections.load(Ordering::Relaxed),
			closed_with_error: s.closed_with_error.load(Ordering::Relaxed),
			segments_stored: s.segments_stored.load(Ordering::Relaxed),
			bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
			streams_held: s.table().usage().0,
			streams_freed: s.streams_freed.load(Ordering::Relaxed),
			vod_sessions: s.vod_sessions.load(Ordering::Relaxed),
			bytes_sent_p2p: s.bytes_sent_p2p.load(Ordering::Relaxed),
			p2p_media_due: s.p2p_media_due.load(Ordering::Relaxed),
			p2p_chunk_bytes_sent: s.p2p_chunk_bytes_sent.load(Ordering::Relaxed),
			sessions: s.sessions.snapshot(),
			passes_issued: tracker.passes_issued,
			passes_renewed: tracker.passes_renewed,
			joins_refused: tracker.joins_refused,
			bad_join_proofs: s.bad_join_proofs.load(Ordering::Relaxed),
			redirects: s.redirects.load(Ordering::Relaxed),
			switches: SwitchCounts {
				to_tcp: s.switches[0].load(Ordering::Relaxed),
				to_quic: s.switches[1].load(Ordering::Relaxed),
			},
			window_bytes: s.window_bytes.used(),
			partial_bytes: s.partial_bytes.used(),
			refused_over_budget: s.over_budget.load(Ordering::Relaxed),
			refused_per_address: s.refused_per_address.load(Ordering::Relaxed),
			lookups_refused: s.lookups_refused.load(Ordering::Relaxed),
			quic_retries: s.quic_retries.load(Ordering::Relaxed),
		}
	}

	/// Replaces the other streamers that viewers refused as full (capacity rule, P2P cap or
	/// `max_connections`) are redirected to; the node calls it at every finalized block with
	/// the registry's other streamers. An empty list: refusals carry no redirect. Entries over
	/// the wire limits are left out (and logged).
	pub fn set_redirect(&self, servers: Vec<ServerAddrs>) {
		let bad = self.shared.redirect.lock().set(servers);
		for s in bad {
			warn!(server = %s, "redirect target over the wire limits; left out");
		}
	}

	/// Applies new capacity settings without restart.
	pub fn set_capacity(&self, settings: CapacitySettings) {
		self.shared.admission.lock().set_settings(settings);
	}

	/// Moves pass issuing (and the swarm seed's pass checks) to credit epoch `epoch`; the
	/// node calls it when the chain's epoch changes. Joined P2P viewers get a pass for it at
	/// once. Without P2P admission it does nothing.
	pub async fn set_epoch(&self, epoch: EpochIndex) -> io::Result<()> {
		if let Some(tracker) = &self.shared.tracker {
			tracker.lock().set_epoch(self.shared.now(), epoch);
			self.shared.epoch.send_replace(epoch);
		}
		if let Some(node) = &self.p2p {
			node.set_epoch(epoch).await.map_err(io::Error::other)?;
		}
		Ok(())
	}

	/// The swarm seed, if the server runs one.
	pub fn p2p_node(&self) -> Option<&P2pNode> {
		self.p2p.as_ref()
	}

	/// Stops accepting, tells every session to close, and waits briefly for them.
	pub async fn shutdown(self) {
		if let Some(node) = self.p2p {
			node.shutdown().await;
		}
		let _ = self.shutdown.send(true);
		for t in self.tasks {
			let _ = t.await;
		}
		if let Some(q) = self.quic {
			q.close(0u32.into(), b"shutdown");
			let _ = tokio::time::timeout(Duration::from_secs(2), q.wait_idle()).await;
		}
	}
}

/// Frees expired streams every [`SWEEP_INTERVAL`] until shutdown.
async fn sweep(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
	let mut tick = tokio::time::interval(SWEEP_INTERVAL);
	loop {
		tokio::select! {
			_ = tick.tick() => shared.sweep(),
			_ = shutdown.changed() => return,
		}
	}
}
