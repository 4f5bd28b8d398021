//! The server driver: TCP and QUIC listeners, one task per connection running a
//! [`ServerSession`], and the live windows shared by all sessions.

use super::p2p::{P2pConfig, P2pNode};
use super::{read_frame, tls, FrameSink, ReadError};
use crate::{
	p2p::{
		seeding::{SeedConfig, SeedRotation},
		serving::ChunkSource,
		tracker::{PassSigning, Tracker},
	},
	protocol::{encode_frame, ErrorCode, FrameDecoder, Message},
	segment::Segment,
	server::{
		Admission, AdmissionStats, Inserted, LiveWindow, ServerSession, SessionConfig,
		SessionEvent, WindowConfig,
	},
};
use bytes::Bytes;
use dsp_primitives::{CapacitySettings, Hash32, SegmentHeader, Signed, StreamId};
use std::{
	collections::{BTreeMap, HashMap},
	io,
	net::SocketAddr,
	sync::{
		atomic::{AtomicU64, Ordering},
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
	/// Most streams tracked at once (each holds a window). Default 256.
	pub max_streams_tracked: usize,
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
			max_streams_tracked: 256,
			write_stall_timeout: Duration::from_secs(10),
			quic_idle_timeout: Duration::from_secs(10),
			udp_buffer: tls::DEFAULT_UDP_BUFFER,
			p2p: None,
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
	/// Of `bytes_sent`, bytes queued to viewers admitted in P2P mode: headers, seeded chunks
	/// and urgent `Fetch` answers (the node's egress to the swarm).
	pub bytes_sent_p2p: u64,
}

struct StreamSlot {
	window: Mutex<LiveWindow>,
	/// Bumped on every change of the window; sessions wait on it instead of polling.
	changed: watch::Sender<u64>,
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
	streams: Mutex<HashMap<StreamId, Arc<StreamSlot>>>,
	admission: Mutex<Admission>,
	tracker: Option<Mutex<Tracker>>,
	connections: AtomicU64,
	closed_with_error: AtomicU64,
	segments_stored: AtomicU64,
	bytes_sent: AtomicU64,
	bytes_sent_p2p: AtomicU64,
	/// Session ids (the seeding rotation's member ids).
	next_session: AtomicU64,
}

impl Shared {
	fn stream(&self, id: StreamId) -> Option<Arc<StreamSlot>> {
		let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
		if let Some(s) = streams.get(&id) {
			return Some(s.clone());
		}
		if streams.len() >= self.config.max_streams_tracked {
			return None;
		}
		let slot = Arc::new(StreamSlot {
			window: Mutex::new(LiveWindow::new(self.config.window.clone())),
			changed: watch::channel(0).0,
			seeding: Mutex::new(Seeding {
				rotation: SeedRotation::new(self.config.seeding.clone()),
				assigned: BTreeMap::new(),
				keep: self.config.window.max_segments,
			}),
		});
		streams.insert(id, slot.clone());
		Some(slot)
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
		let slot = self.0.streams.lock().unwrap_or_else(|e| e.into_inner()).get(&stream)?.clone();
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
		let shared = Arc::new(Shared {
			admission: Mutex::new(Admission::new(config.capacity).with_p2p(config.p2p.is_some())),
			tracker: config.p2p.clone().map(|p| Mutex::new(Tracker::new(p.tracker, p.signer))),
			streams: Mutex::new(HashMap::new()),
			connections: AtomicU64::new(0),
			closed_with_error: AtomicU64::new(0),
			segments_stored: AtomicU64::new(0),
			bytes_sent: AtomicU64::new(0),
			bytes_sent_p2p: AtomicU64::new(0),
			next_session: AtomicU64::new(0),
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
		let identity = tls::ServerIdentity::self_signed()?;
		let mut tasks = Vec::new();
		let mut tcp_addr = None;
		if let Some(addr) = shared.config.tcp {
			let listener = TcpListener::bind(addr).await?;
			tcp_addr = Some(listener.local_addr()?);
			tasks.push(tokio::spawn(accept_tcp(
				listener,
				shared.clone(),
				permits.clone(),
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
			bytes_sent_p2p: s.bytes_sent_p2p.load(Ordering::Relaxed),
		}
	}

	/// Applies new capacity settings without restart.
	pub fn set_capacity(&self, settings: CapacitySettings) {
		self.shared.admission.lock().unwrap_or_else(|e| e.into_inner()).set_settings(settings);
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

async fn refuse<W: AsyncWrite + Unpin>(mut w: W, peer: SocketAddr) {
	warn!(%peer, "refused: max_connections reached");
	let frame = encode_frame(&Message::error(ErrorCode::Full, "too many connections"));
	let _ = tokio::time::timeout(Duration::from_secs(1), w.write_all(&frame)).await;
	let _ = w.shutdown().await;
}

async fn accept_tcp(
	listener: TcpListener,
	shared: Arc<Shared>,
	permits: Arc<Semaphore>,
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
			tokio::spawn(refuse(sock, peer));
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
	mut shutdown: watch::Receiver<bool>,
) {
	loop {
		let incoming = tokio::select! {
			i = endpoint.accept() => match i { Some(i) => i, None => return },
			_ = shutdown.changed() => return,
		};
		let Ok(permit) = permits.clone().try_acquire_owned() else {
			warn!(peer = %incoming.remote_address(), "refused: max_connections reached");
			incoming.refuse();
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
	let mut role = "unknown";
	let mut stream_id = None;
	let mut writer_done = None;
	let mut last_bytes_sent = 0;
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
					core.handle_admission(Instant::now(), r);
				}
				SessionEvent::JoinRequest { stream, viewer, peer: info } => {
					role = "p2p";
					stream_id = Some(stream);
					let peer_id = info.peer_id.clone();
					let r = match (shared.stream(stream), &shared.tracker) {
						(Some(s), Some(t)) => {
							slot = Some(s);
							let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
							t.handle_join(stream, viewer, info)
								.map_err(|e| (ErrorCode::UnknownStream, e.to_string()))
						}
						_ => Err((ErrorCode::UnknownStream, "too many streams tracked".into())),
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
				SessionEvent::Subscribed(id) | SessionEvent::Publishing(id) => {
					if matches!(ev, SessionEvent::Publishing(_)) {
						role = "publisher";
					}
					stream_id = Some(id);
					match shared.stream(id) {
						Some(s) => {
							changed = Some(s.changed.subscribe());
							slot = Some(s);
						}
						None => core.close(ErrorCode::UnknownStream, "too many streams tracked"),
					}
					info!(%peer, transport, role, stream = id, "session started");
				}
				SessionEvent::SegmentReceived(seg) => {
					let seq = seg.sequence();
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
						}
						debug!(%peer, stream = ?stream_id, seq, outcome = ?r, "segment from publisher");
					}
				}
				SessionEvent::End(end) => {
					let (stream, next_sequence) = (end.payload.stream, end.payload.next_sequence);
					if let Some(s) = &slot {
						s.update(|w| w.end(end));
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
		let sent = core.stats().bytes_sent;
		shared.bytes_sent.fetch_add(sent - last_bytes_sent, Ordering::Relaxed);
		if core.is_p2p() {
			shared.bytes_sent_p2p.fetch_add(sent - last_bytes_sent, Ordering::Relaxed);
		}
		last_bytes_sent = sent;

		if (core.is_closed() || peer_closed) && !core.has_transmit() {
			break;
		}
		if writer_done.is_some() || writer_gone {
			break;
		}
		let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
		let wants = core.wants_segments().is_some();
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
			r = async { changed.as_mut().expect("guarded; qed").changed().await }, if changed.is_some() && wants => {
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
