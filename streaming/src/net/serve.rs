//! The server driver: TCP and QUIC listeners, one task per connection running a
//! [`ServerSession`], the live windows shared by all sessions (in a [`StreamTable`] that frees
//! ended and idle streams), and optionally the recorder and the on-demand source of
//! [`super::vod`].

use super::p2p::{P2pConfig, P2pNode};
use super::{
	read_frame, tls,
	vod::{Recorder, VodStream},
	FrameSink, ReadError,
};
use crate::{
	p2p::{
		seeding::{SeedConfig, SeedRotation},
		serving::ChunkSource,
		tracker::{PassSigning, Tracker},
	},
	protocol::{encode_frame, ErrorCode, FrameDecoder, Message, Role, ServerAddrs, Transport},
	segment::Segment,
	server::{
		Admission, AdmissionStats, Inserted, LiveWindow, RedirectList, ServerSession,
		SessionConfig, SessionEvent, StreamTable, StreamTableConfig, WindowConfig,
		DEFAULT_MAX_P2P_SESSIONS,
	},
};
use bytes::Bytes;
use dsp_primitives::{
	AdmissionMode, CapacitySettings, EpochIndex, Hash32, SegmentHeader, Signed, StreamId,
};
use std::{
	collections::{BTreeMap, HashMap},
	io,
	net::SocketAddr,
	path::PathBuf,
	sync::{
		atomic::{AtomicBool, AtomicU64, Ordering},
		Arc, Mutex,
	},
	time::{Duration, Instant},
};
use tokio::{
	io::{AsyncRead, AsyncWrite, AsyncWriteExt},
	net::{TcpListener, TcpStream},
	sync::{mpsc, watch, Semaphore},
	task::JoinHandle,
};
use tracing::{debug, info, warn};

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
	/// Viewer passes signed since start (P2P admissions).
	pub passes_issued: u64,
	/// Refusals as full that carried a `Redirect` to other streamers, since start: viewers
	/// refused by the capacity rule or the P2P cap, and TCP connections beyond
	/// `max_connections` (refused before they say whether they are viewers).
	pub redirects: u64,
	/// Connections viewers opened to switch transport (`Switched`), since start.
	pub switches: SwitchCounts,
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

/// Open viewer sessions per admission mode and transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionsByTransport {
	/// Direct sessions over TCP.
	pub direct_tcp: u64,
	/// Direct sessions over QUIC.
	pub direct_quic: u64,
	/// P2P-mode sessions (tracker, header feed, urgent fetches) over TCP.
	pub p2p_tcp: u64,
	/// P2P-mode sessions over QUIC.
	pub p2p_quic: u64,
}

/// Counters behind [`SessionsByTransport`], indexed `[mode][transport]` (direct 0, P2P 1;
/// TCP 0, QUIC 1).
#[derive(Default)]
struct SessionCounters([[AtomicU64; 2]; 2]);

impl SessionCounters {
	fn slot(&self, mode: AdmissionMode, transport: &str) -> &AtomicU64 {
		let m = usize::from(mode == AdmissionMode::P2p);
		let t = usize::from(transport == "quic");
		&self.0[m][t]
	}

	fn snapshot(&self) -> SessionsByTransport {
		let get = |m: usize, t: usize| self.0[m][t].load(Ordering::Relaxed);
		SessionsByTransport {
			direct_tcp: get(0, 0),
			direct_quic: get(0, 1),
			p2p_tcp: get(1, 0),
			p2p_quic: get(1, 1),
		}
	}
}

struct StreamSlot {
	window: Mutex<LiveWindow>,
	/// Bumped on every change of the window; sessions wait on it instead of polling.
	changed: watch::Sender<u64>,
	/// The table let go of this slot: its viewers are closed, its publisher opens a new one.
	freed: AtomicBool,
	/// Which P2P session gets which chunk of each new segment pushed.
	seeding: Mutex<Seeding>,
}

/// The node's seeding of one stream's swarm: the rotation over its P2P sessions and, for the
/// segments in the window, which chunks each session is pushed. Decided once per segment when
/// it is stored (before sessions are woken), so every session reads the same assignment.
/// Memory: at most `keep` segments, one small vector per seeded session each.
struct Seeding {
	rotation: SeedRotation<u64>,
	/// Sequence → session → chunk indices pushed to it.
	assigned: BTreeMap<u64, HashMap<u64, Vec<u32>>>,
	keep: usize,
}

impl Seeding {
	fn assign(&mut self, segment: &Segment) {
		let mut per_session: HashMap<u64, Vec<u32>> = HashMap::new();
		for index in 0..segment.chunks.len() as u32 {
			for session in self.rotation.next_seeds() {
				per_session.entry(session).or_default().push(index);
			}
		}
		self.assigned.insert(segment.sequence(), per_session);
		while self.assigned.len() > self.keep {
			self.assigned.pop_first();
		}
	}

	fn seeded(&self, sequence: u64, session: u64) -> Vec<u32> {
		self.assigned.get(&sequence).and_then(|m| m.get(&session)).cloned().unwrap_or_default()
	}
}

struct Shared {
	config: ServeConfig,
	streams: Mutex<StreamTable<Arc<StreamSlot>>>,
	recorder: Option<Recorder>,
	admission: Mutex<Admission>,
	tracker: Option<Mutex<Tracker>>,
	connections: AtomicU64,
	closed_with_error: AtomicU64,
	segments_stored: AtomicU64,
	bytes_sent: AtomicU64,
	streams_freed: AtomicU64,
	vod_sessions: AtomicU64,
	bytes_sent_p2p: AtomicU64,
	p2p_media_due: AtomicU64,
	p2p_chunk_bytes_sent: AtomicU64,
	sessions: SessionCounters,
	/// Session ids (the seeding rotation's member ids).
	next_session: AtomicU64,
	/// Other streamers refused viewers are sent to.
	redirect: Mutex<RedirectList>,
	redirects: AtomicU64,
	/// `Switched` reports, indexed by the reporting connection's transport (TCP 0, QUIC 1).
	switches: [AtomicU64; 2],
}

/// How often the stream table is checked for ended and idle streams: a stream is freed at most
/// this long after its timeout.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Shared {
	fn table(&self) -> std::sync::MutexGuard<'_, StreamTable<Arc<StreamSlot>>> {
		self.streams.lock().unwrap_or_else(|e| e.into_inner())
	}

	/// The `Redirect` list for one refused viewer (empty if no other streamer is known), and
	/// counts it.
	fn next_redirect(&self) -> Vec<ServerAddrs> {
		let servers = self.redirect.lock().unwrap_or_else(|e| e.into_inner()).next_redirect();
		if !servers.is_empty() {
			self.redirects.fetch_add(1, Ordering::Relaxed);
		}
		servers
	}

	/// The window of `id`, opened if it has none (see [`StreamTable::open`]).
	fn open_stream(&self, id: StreamId, by: Role) -> Result<Arc<StreamSlot>, ErrorCode> {
		let mut table = self.table();
		let r = table.open(Instant::now(), id, by, || {
			Arc::new(StreamSlot {
				window: Mutex::new(LiveWindow::new(self.config.window.clone())),
				changed: watch::channel(0).0,
				freed: AtomicBool::new(false),
				seeding: Mutex::new(Seeding {
					rotation: SeedRotation::new(self.config.seeding.clone()),
					assigned: BTreeMap::new(),
					keep: self.config.window.max_segments,
				}),
			})
		});
		self.release_freed(&mut table);
		r
	}

	/// Frees expired streams.
	fn sweep(&self) {
		let mut table = self.table();
		table.handle_timeout(Instant::now());
		self.release_freed(&mut table);
	}

	fn release_freed(&self, table: &mut StreamTable<Arc<StreamSlot>>) {
		while let Some((id, slot)) = table.poll_freed() {
			slot.freed.store(true, Ordering::Relaxed);
			slot.changed.send_modify(|v| *v += 1);
			self.streams_freed.fetch_add(1, Ordering::Relaxed);
			info!(stream = id, "stream freed (ended or idle)");
		}
	}
}

impl StreamSlot {
	fn update<R>(&self, f: impl FnOnce(&mut LiveWindow) -> R) -> R {
		let r = f(&mut self.window.lock().unwrap_or_else(|e| e.into_inner()));
		self.changed.send_modify(|v| *v += 1);
		r
	}

	fn seeding(&self) -> std::sync::MutexGuard<'_, Seeding> {
		self.seeding.lock().unwrap_or_else(|e| e.into_inner())
	}
}

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

/// The live windows as the P2P seed's chunk source. Looks streams up without creating any.
struct WindowSource(Arc<Shared>);

impl WindowSource {
	fn segment(&self, stream: StreamId, sequence: u64) -> Option<Arc<Segment>> {
		let slot = self.0.table().get(stream)?;
		let window = slot.window.lock().unwrap_or_else(|e| e.into_inner());
		window.lookup(sequence, 1).segments.into_iter().next().filter(|s| s.sequence() == sequence)
	}
}

impl ChunkSource for WindowSource {
	fn header(&self, stream: StreamId, sequence: u64) -> Option<Signed<SegmentHeader>> {
		Some(self.segment(stream, sequence)?.header.clone())
	}

	fn chunk(&self, stream: StreamId, sequence: u64, index: u32) -> Option<Bytes> {
		self.segment(stream, sequence)?.chunks.get(index as usize).cloned()
	}
}

impl RunningServer {
	/// Binds the listeners and starts accepting.
	pub async fn start(config: ServeConfig) -> io::Result<RunningServer> {
		let recorder = config.record_dir.clone().map(Recorder::new).transpose()?;
		let shared = Arc::new(Shared {
			admission: Mutex::new(
				Admission::new(config.capacity)
					.with_p2p(config.p2p.is_some())
					.with_max_p2p_sessions(config.max_p2p_sessions),
			),
			tracker: config.p2p.clone().map(|p| Mutex::new(Tracker::new(p.tracker, p.signer))),
			streams: Mutex::new(StreamTable::new(config.streams.clone())),
			recorder,
			connections: AtomicU64::new(0),
			closed_with_error: AtomicU64::new(0),
			segments_stored: AtomicU64::new(0),
			bytes_sent: AtomicU64::new(0),
			streams_freed: AtomicU64::new(0),
			vod_sessions: AtomicU64::new(0),
			bytes_sent_p2p: AtomicU64::new(0),
			p2p_media_due: AtomicU64::new(0),
			p2p_chunk_bytes_sent: AtomicU64::new(0),
			sessions: SessionCounters::default(),
			next_session: AtomicU64::new(0),
			redirect: Mutex::new(RedirectList::default()),
			redirects: AtomicU64::new(0),
			switches: Default::default(),
			config,
		});
		let mut p2p = None;
		if let (Some(cfg), Some(tracker)) = (shared.config.p2p_seed.clone(), &shared.tracker) {
			let node = P2pNode::start(cfg, Arc::new(WindowSource(shared.clone())))
				.await
				.map_err(io::Error::other)?;
			tracker.lock().unwrap_or_else(|e| e.into_inner()).set_bootstrap(node.peer_info());
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
		ServerStats {
			admission: s.admission.lock().unwrap_or_else(|e| e.into_inner()).stats(),
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
			passes_issued: s
				.tracker
				.as_ref()
				.map_or(0, |t| t.lock().unwrap_or_else(|e| e.into_inner()).passes_issued()),
			redirects: s.redirects.load(Ordering::Relaxed),
			switches: SwitchCounts {
				to_tcp: s.switches[0].load(Ordering::Relaxed),
				to_quic: s.switches[1].load(Ordering::Relaxed),
			},
		}
	}

	/// Replaces the other streamers that viewers refused as full (capacity rule, P2P cap or
	/// `max_connections`) are redirected to; the node calls it at every finalized block with
	/// the registry's other streamers. An empty list: refusals carry no redirect. Entries over
	/// the wire limits are left out (and logged).
	pub fn set_redirect(&self, servers: Vec<ServerAddrs>) {
		let bad = self.shared.redirect.lock().unwrap_or_else(|e| e.into_inner()).set(servers);
		for s in bad {
			warn!(server = %s, "redirect target over the wire limits; left out");
		}
	}

	/// Applies new capacity settings without restart.
	pub fn set_capacity(&self, settings: CapacitySettings) {
		self.shared.admission.lock().unwrap_or_else(|e| e.into_inner()).set_settings(settings);
	}

	/// Moves pass issuing (and the swarm seed's pass checks) to credit epoch `epoch`; the
	/// node calls it when the chain's epoch changes. Without P2P admission it does nothing.
	pub async fn set_epoch(&self, epoch: EpochIndex) -> io::Result<()> {
		if let Some(tracker) = &self.shared.tracker {
			tracker.lock().unwrap_or_else(|e| e.into_inner()).set_epoch(epoch);
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

async fn sweep(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
	let mut tick = tokio::time::interval(SWEEP_INTERVAL);
	loop {
		tokio::select! {
			_ = tick.tick() => shared.sweep(),
			_ = shutdown.changed() => return,
		}
	}
}

/// Refuses a TCP connection beyond `max_connections` without reading from it: `Redirect` (if
/// other streamers are known) and `Error { Full }`, then close.
/// Connections beyond `max_connections` being told so (`Redirect`, `Full`) at once; beyond
/// this many, further ones are dropped without a word, so a flood costs at most this many
/// small tasks.
const MAX_PENDING_REFUSALS: usize = 64;
/// How long one refusal may take (QUIC handshake, the client's stream, the frames).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `refusal` under a refusal permit, or drops the connection if none is left.
fn spawn_refusal(
	refusals: &Arc<Semaphore>,
	refusal: impl std::future::Future<Output = ()> + Send + 'static,
	peer: SocketAddr,
) {
	let Ok(permit) = refusals.clone().try_acquire_owned() else {
		debug!(%peer, "dropped: max_connections reached and too many refusals under way");
		return;
	};
	tokio::spawn(async move {
		let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refusal).await;
		drop(permit);
	});
}

/// A QUIC client beyond `max_connections`: completes the handshake, waits for its stream and
/// answers on it like [`refuse`] does over TCP.
async fn refuse_quic(incoming: quinn::Incoming, shared: Arc<Shared>) {
	let peer = incoming.remote_address();
	let Ok(conn) = incoming.await else { return };
	let Ok((mut send, _recv)) = conn.accept_bi().await else { return };
	refuse(&mut send, peer, shared).await;
	// Let the frames reach the peer before the connection closes.
	let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
	conn.close(0u32.into(), b"full");
}

async fn refuse<W: AsyncWrite + Unpin>(mut w: W, peer: SocketAddr, shared: Arc<Shared>) {
	let servers = shared.next_redirect();
	warn!(%peer, redirected = servers.len(), "refused: max_connections reached");
	let mut frames = Vec::new();
	if !servers.is_empty() {
		frames.extend_from_slice(&encode_frame(&Message::Redirect { servers }));
	}
	frames
		.extend_from_slice(&encode_frame(&Message::error(ErrorCode::Full, "too many connections")));
	let _ = tokio::time::timeout(Duration::from_secs(1), w.write_all(&frames)).await;
	let _ = w.shutdown().await;
}

async fn accept_tcp(
	listener: TcpListener,
	shared: Arc<Shared>,
	permits: Arc<Semaphore>,
	refusals: Arc<Semaphore>,
	mut shutdown: watch::Receiver<bool>,
) {
	loop {
		let (sock, peer) = tokio::select! {
			r = listener.accept() => match r {
				Ok(x) => x,
				Err(e) => {
					// Out of file descriptors and the like: back off instead of spinning.
					warn!(error = %e, "tcp accept failed");
					tokio::time::sleep(Duration::from_millis(100)).await;
					continue;
				},
			},
			_ = shutdown.changed() => return,
		};
		let Ok(permit) = permits.clone().try_acquire_owned() else {
			spawn_refusal(&refusals, refuse(sock, peer, shared.clone()), peer);
			continue;
		};
		let shared = shared.clone();
		let shutdown = shutdown.clone();
		tokio::spawn(async move {
			let _ = sock.set_nodelay(true);
			let (r, w) = TcpStream::into_split(sock);
			if let Some(mut w) = run_session(shared, peer, "tcp", r, w, shutdown).await {
				let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
			}
			drop(permit);
		});
	}
}

async fn accept_quic(
	endpoint: quinn::Endpoint,
	shared: Arc<Shared>,
	permits: Arc<Semaphore>,
	refusals: Arc<Semaphore>,
	mut shutdown: watch::Receiver<bool>,
) {
	loop {
		let incoming = tokio::select! {
			i = endpoint.accept() => match i { Some(i) => i, None => return },
			_ = shutdown.changed() => return,
		};
		let Ok(permit) = permits.clone().try_acquire_owned() else {
			let peer = incoming.remote_address();
			// Checked before `incoming` is moved into the refusal; should the TCP loop take the
			// last permit in between, the connection is dropped unanswered instead.
			if refusals.available_permits() == 0 {
				debug!(%peer, "refused in the handshake: too many refusals under way");
				incoming.refuse();
			} else {
				spawn_refusal(&refusals, refuse_quic(incoming, shared.clone()), peer);
			}
			continue;
		};
		let shared = shared.clone();
		let shutdown = shutdown.clone();
		tokio::spawn(async move {
			let peer = incoming.remote_address();
			let handshake_timeout = shared.config.session.hello_timeout;
			let conn = match tokio::time::timeout(handshake_timeout, incoming).await {
				Ok(Ok(c)) => c,
				Ok(Err(e)) => return debug!(%peer, error = %e, "quic handshake failed"),
				Err(_) => return debug!(%peer, "quic handshake timed out"),
			};
			let (send, recv) = match tokio::time::timeout(handshake_timeout, conn.accept_bi()).await
			{
				Ok(Ok(s)) => s,
				Ok(Err(e)) => return debug!(%peer, error = %e, "quic stream not opened"),
				Err(_) => {
					shared.closed_with_error.fetch_add(1, Ordering::Relaxed);
					info!(%peer, transport = "quic", code = ?ErrorCode::IdleTimeout, "session closed: no stream within hello_timeout");
					conn.close(1u32.into(), b"no stream");
					return;
				}
			};
			if let Some(mut send) = run_session(shared, peer, "quic", recv, send, shutdown).await {
				let _ = send.finish();
				// Let the last frames (an Error or End) reach the peer before closing.
				let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
			}
			conn.close(0u32.into(), b"done");
			drop(permit);
		});
	}
}

/// Writes frames from `rx` until it closes or a write stalls; returns the writer on a clean end.
async fn write_loop<W: FrameSink>(
	mut w: W,
	mut rx: mpsc::Receiver<Bytes>,
	stall: Duration,
) -> Option<W> {
	while let Some(frame) = rx.recv().await {
		match tokio::time::timeout(stall, w.send_frame(frame)).await {
			Ok(Ok(())) => {}
			Ok(Err(_)) => return None,
			Err(_) => {
				debug!("write stalled");
				return None;
			}
		}
	}
	Some(w)
}

/// Segments taken from a window per lookup.
const LOOKUP_BATCH: usize = 8;

/// Frames in flight between the session and its writer task. The session's own queue is the
/// real buffer; this only lets the writer run while the session reads.
const WRITER_CHANNEL: usize = 16;

async fn run_session<R, W>(
	shared: Arc<Shared>,
	peer: SocketAddr,
	transport: &'static str,
	mut reader: R,
	writer: W,
	mut shutdown: watch::Receiver<bool>,
) -> Option<W>
where
	R: AsyncRead + Unpin + Send + 'static,
	W: FrameSink,
{
	shared.connections.fetch_add(1, Ordering::Relaxed);
	let session_id = shared.next_session.fetch_add(1, Ordering::Relaxed);
	let cfg = &shared.config;
	let (tx, rx) = mpsc::channel::<Bytes>(WRITER_CHANNEL);
	let mut writer_task = tokio::spawn(write_loop(writer, rx, cfg.write_stall_timeout));
	let mut core = ServerSession::new(Instant::now(), cfg.session.clone());
	let mut dec = FrameDecoder::new(cfg.session.max_frame_len);
	let mut slot: Option<Arc<StreamSlot>> = None;
	let mut changed: Option<watch::Receiver<u64>> = None;
	let mut admitted = None;
	let mut joined: Option<(StreamId, Vec<u8>)> = None;
	let mut vod: Option<VodStream> = None;
	// The recording has no more segments and no end: nothing more to look up.
	let mut vod_exhausted = false;
	// Whether this publisher stored a segment yet (an earlier recorded end no longer holds).
	let mut recorded_any = false;
	let mut role = "unknown";
	let mut stream_id = None;
	let mut writer_done = None;
	let mut last_bytes_sent = 0;
	let (mut last_media_due, mut last_chunk_bytes) = (0, 0);
	let mut peer_closed = false;
	let mut writer_gone = false;
	let mut seen_version = u64::MAX;
	let mut starved = true;

	loop {
		while let Some(ev) = core.poll_event() {
			match ev {
				SessionEvent::AdmissionRequest => {
					role = "viewer";
					let r = shared.admission.lock().unwrap_or_else(|e| e.into_inner()).try_admit();
					admitted = r.ok();
					if let Some(mode) = admitted {
						shared.sessions.slot(mode, transport).fetch_add(1, Ordering::Relaxed);
					}
					let redirect = match r {
						Ok(_) => Vec::new(),
						Err(_) => shared.next_redirect(),
					};
					if !redirect.is_empty() {
						info!(%peer, transport, first = %redirect[0], servers = redirect.len(), "viewer refused as full; redirected");
					}
					core.handle_admission_or_redirect(Instant::now(), r, redirect);
				}
				SessionEvent::Switched { from } => {
					let to = if transport == "quic" { Transport::Quic } else { Transport::Tcp };
					shared.switches[usize::from(to == Transport::Quic)]
						.fetch_add(1, Ordering::Relaxed);
					info!(%peer, stream = ?stream_id, %from, %to, "viewer switched transport");
				}
				SessionEvent::JoinRequest { stream, viewer, peer: info } => {
					role = "p2p";
					stream_id = Some(stream);
					let peer_id = info.peer_id.clone();
					// As for `Subscribe`: no slot, swarm or pass for a stream without an origin key.
					let known = cfg.session.origin_keys.get(stream).is_some();
					let live = shared.table().get(stream);
					let opened = match (known, live) {
						(false, _) => Err(ErrorCode::UnknownStream),
						(true, Some(s)) => Ok(s),
						(true, None) => shared.open_stream(stream, Role::Viewer),
					};
					let r = match (opened, &shared.tracker) {
						(Ok(s), Some(t)) => {
							slot = Some(s);
							let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
							t.handle_join(stream, viewer, info)
								.map_err(|e| (ErrorCode::UnknownStream, e.to_string()))
						}
						(Err(ErrorCode::UnknownStream), _) if !known => Err((
							ErrorCode::UnknownStream,
							format!("no origin key for stream {stream}"),
						)),
						(Err(code), _) => Err((code, "too many streams held".into())),
						(_, None) => {
							Err((ErrorCode::UnknownStream, "no P2P on this server".into()))
						}
					};
					if let (Ok((_, peers)), Some(s)) = (&r, &slot) {
						info!(%peer, stream, peers = peers.len(), session_id, "p2p viewer joined");
						joined = Some((stream, peer_id));
						// Headers and seeded chunks follow the window from now on.
						s.seeding().rotation.handle_peer_joined(session_id);
						changed = Some(s.changed.subscribe());
					}
					core.handle_joined(Instant::now(), r);
				}
				SessionEvent::FetchRequest { sequence, index, .. } => {
					let segment = slot.as_ref().and_then(|s| {
						let window = s.window.lock().unwrap_or_else(|e| e.into_inner());
						window.lookup(sequence, 1).segments.into_iter().next()
					});
					debug!(%peer, sequence, index, held = segment.is_some(), "p2p fetch");
					core.handle_fetch(Instant::now(), sequence, index, segment);
				}
				SessionEvent::Subscribed(id) => {
					stream_id = Some(id);
					let live = shared.table().get(id);
					let recorded = match (&live, &cfg.vod_dir) {
						(None, Some(dir)) => {
							match VodStream::open(dir, id, cfg.session.max_frame_len).await {
								Ok(v) => v,
								Err(e) => {
									warn!(%peer, stream = id, error = %e, "recording unusable");
									core.close(
										ErrorCode::UnknownStream,
										format!("recording of stream {id} unusable"),
									);
									None
								}
							}
						}
						_ => None,
					};
					if let Some(v) = recorded {
						shared.vod_sessions.fetch_add(1, Ordering::Relaxed);
						info!(%peer, transport, role, stream = id, segments = v.len(), "on-demand session started");
						vod = Some(v);
					} else if !core.is_closed() {
						// Live, or waiting (bounded) for a publisher of a stream with a key.
						match live.map_or_else(|| shared.open_stream(id, Role::Viewer), Ok) {
							Ok(s) => {
								changed = Some(s.changed.subscribe());
								slot = Some(s);
								info!(%peer, transport, role, stream = id, "session started");
							}
							Err(code) => core.close(code, "too many streams held"),
						}
					}
				}
				SessionEvent::Publishing(id) => {
					role = "publisher";
					stream_id = Some(id);
					match shared.open_stream(id, Role::Publisher) {
						Ok(s) => {
							let next_sequence =
								s.window.lock().unwrap_or_else(|e| e.into_inner()).next_sequence();
							core.handle_publish_ready(Instant::now(), next_sequence);
							changed = Some(s.changed.subscribe());
							slot = Some(s);
							info!(%peer, transport, role, stream = id, next_sequence, "session started");
						}
						Err(code) => core.close(code, "too many streams held"),
					}
				}
				SessionEvent::SegmentReceived(seg) => {
					let (id, seq) = (seg.stream(), seg.sequence());
					if slot.as_ref().is_some_and(|s| s.freed.load(Ordering::Relaxed)) {
						// Freed while this publisher was silent: continue in a new window.
						match shared.open_stream(id, Role::Publisher) {
							Ok(s) => {
								changed = Some(s.changed.subscribe());
								slot = Some(s);
							}
							Err(code) => {
								core.close(code, "too many streams held");
								slot = None;
							}
						}
					}
					if let Some(s) = &slot {
						let seg = Arc::new(seg);
						let r = s.update(|w| {
							let r = w.insert(seg.clone());
							if r == Inserted::Stored {
								// Before the sessions wake up to the new segment.
								s.seeding().assign(&seg);
							}
							r
						});
						if r == Inserted::Stored {
							shared.segments_stored.fetch_add(1, Ordering::Relaxed);
							shared.table().handle_segment(Instant::now(), id);
							if let Some(rec) = &shared.recorder {
								if !recorded_any {
									recorded_any = true;
									if let Err(e) = rec.reopen(id).await {
										warn!(stream = id, error = %e, "could not remove the recorded end");
									}
								}
								if let Err(e) = rec.segment(&seg).await {
									warn!(stream = id, seq, error = %e, "could not record segment");
								}
							}
						}
						debug!(%peer, stream = id, seq, outcome = ?r, "segment from publisher");
					}
				}
				SessionEvent::End(end) => {
					let (stream, next_sequence) = (end.payload.stream, end.payload.next_sequence);
					let frame = encode_frame(&Message::End(end.clone()));
					if let Some(s) = &slot {
						s.update(|w| w.end(end));
						shared.table().handle_end(Instant::now(), stream);
					}
					if let Some(rec) = &shared.recorder {
						if let Err(e) = rec.end(stream, frame).await {
							warn!(stream, error = %e, "could not record the end");
						}
					}
					info!(%peer, stream, next_sequence, "publisher ended stream");
				}
				SessionEvent::Closed { code, reason } => {
					if code.is_some() {
						shared.closed_with_error.fetch_add(1, Ordering::Relaxed);
						warn!(%peer, transport, role, stream = ?stream_id, ?code, %reason, "session closed");
					} else {
						info!(%peer, transport, role, stream = ?stream_id, %reason, "session closed");
					}
				}
			}
		}
		// Look the window up only when it changed or the session drained a full queue; a lookup
		// that filled the batch is repeated at once.
		match (core.wants_segments(), &slot, changed.as_mut()) {
			(Some(_), Some(s), Some(rx)) => {
				let version = *rx.borrow_and_update();
				if version != seen_version || starved {
					seen_version = version;
					starved = false;
					while let Some((_, from)) = core.wants_segments() {
						let lookup = s
							.window
							.lock()
							.unwrap_or_else(|e| e.into_inner())
							.lookup(from, LOOKUP_BATCH);
						let full = lookup.segments.len() == LOOKUP_BATCH;
						if core.is_p2p() {
							let seeding = s.seeding();
							core.handle_p2p_segments(Instant::now(), lookup, |seg| {
								seeding.seeded(seg.sequence(), session_id)
							});
						} else {
							core.handle_segments(Instant::now(), lookup);
						}
						if !full {
							break;
						}
					}
				}
			}
			_ => starved = true,
		}
		if let (Some(v), false) = (&vod, vod_exhausted) {
			// On demand: read one segment per lookup, only while the session takes more.
			while let Some((_, from)) = core.wants_segments() {
				match v.lookup(from).await {
					Ok(lookup) => {
						let got = !lookup.segments.is_empty();
						core.handle_segments(Instant::now(), lookup);
						if !got {
							vod_exhausted = core.wants_segments().is_some();
							break;
						}
					}
					Err(e) => {
						warn!(%peer, stream = ?stream_id, error = %e, "recording unreadable");
						core.close(ErrorCode::UnknownStream, "recording unreadable");
						break;
					}
				}
			}
		}
		if matches!(role, "viewer" | "p2p")
			&& slot.as_ref().is_some_and(|s| s.freed.load(Ordering::Relaxed))
		{
			core.close(ErrorCode::UnknownStream, "stream freed: ended, idle or never published");
		}
		let stats = core.stats();
		let sent = stats.bytes_sent;
		shared.bytes_sent.fetch_add(sent - last_bytes_sent, Ordering::Relaxed);
		if core.is_p2p() {
			shared.bytes_sent_p2p.fetch_add(sent - last_bytes_sent, Ordering::Relaxed);
			shared.p2p_media_due.fetch_add(stats.p2p_media_due - last_media_due, Ordering::Relaxed);
			shared
				.p2p_chunk_bytes_sent
				.fetch_add(stats.p2p_chunk_bytes - last_chunk_bytes, Ordering::Relaxed);
			(last_media_due, last_chunk_bytes) = (stats.p2p_media_due, stats.p2p_chunk_bytes);
		}
		last_bytes_sent = sent;

		if (core.is_closed() || peer_closed) && !core.has_transmit() {
			break;
		}
		if writer_done.is_some() || writer_gone {
			break;
		}
		let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
		tokio::select! {
			r = read_frame(&mut reader, &mut dec), if !core.is_closed() && !peer_closed => {
				let now = Instant::now();
				match r {
					Ok(Some(body)) => core.handle_frame(now, body),
					Ok(None) => {
						peer_closed = true;
						core.handle_peer_closed();
					},
					Err(ReadError::Frame(e)) => core.handle_read_error(now, e),
					Err(ReadError::Io(e)) => {
						debug!(%peer, error = %e, "read failed");
						peer_closed = true;
						core.handle_peer_closed();
					},
				}
			},
			permit = tx.reserve(), if core.has_transmit() && !writer_gone => match permit {
				Ok(p) => p.send(core.poll_transmit().expect("has_transmit; qed")),
				// The writer task ended: the peer is gone or stopped reading.
				Err(_) => {
					writer_gone = true;
					if !core.is_closed() && !peer_closed {
						core.close(ErrorCode::SlowConsumer, "write failed or stalled for write_stall_timeout");
					}
				},
			},
			// Also while not wanting segments: a freed slot must close its sessions.
			r = async { changed.as_mut().expect("guarded; qed").changed().await }, if changed.is_some() => {
				if r.is_err() {
					changed = None;
				}
			},
			_ = async { tokio::time::sleep_until(deadline.expect("guarded; qed")).await }, if deadline.is_some() => {
				core.handle_timeout(Instant::now());
			},
			_ = shutdown.changed() => core.close(ErrorCode::Shutdown, "server shutting down"),
			r = &mut writer_task, if writer_done.is_none() => {
				writer_done = Some(r.ok().flatten());
				if !core.is_closed() && !peer_closed {
					core.close(ErrorCode::SlowConsumer, "write failed or stalled for write_stall_timeout");
				}
			},
		}
	}
	drop(tx);
	if let Some(mode) = admitted {
		shared.admission.lock().unwrap_or_else(|e| e.into_inner()).release(mode);
		shared.sessions.slot(mode, transport).fetch_sub(1, Ordering::Relaxed);
	}
	if let (Some((stream, peer_id)), Some(t)) = (joined, &shared.tracker) {
		t.lock().unwrap_or_else(|e| e.into_inner()).handle_leave(stream, &peer_id);
		if let Some(s) = &slot {
			s.seeding().rotation.handle_peer_left(session_id);
		}
	}
	match writer_done {
		Some(w) => w,
		None => tokio::time::timeout(Duration::from_secs(2), writer_task).await.ok()?.ok()?,
	}
}
