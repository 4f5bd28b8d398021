//! The P2P-mode viewer driver: a viewer the server admitted in P2P mode (`Welcome{mode: P2p}`)
//! joins the stream's swarm (`Join` → `Joined{pass, peers}`), runs a libp2p [`P2pNode`] with its
//! own key, and fetches chunks as the sans-IO [`Scheduler`] decides: from neighbours over
//! `/dsp/p2p/1`, and from the server (`Fetch` on the direct connection) for urgent gaps.
//!
//! It only moves messages and timers; every decision is made by a core:
//!
//! - [`Scheduler`]: what to ask whom, timeouts, re-issue, bans for bad chunks, the player model
//!   (stalls).
//! - [`crate::p2p::serving::Serving`] (inside [`P2pNode`]): what neighbours may fetch from this
//!   viewer (pass, receipts, rate), the check of every chunk a neighbour sends, bans.
//! - [`crate::p2p::upload::UploadCap`] (inside [`P2pNode`]): the viewer's upload share.
//! - [`ReceiptBook`]: the cumulative receipts this viewer signs for each seeder it received from.
//! - [`SegmentBuffer`] and [`Playlist`]: the same ordering and HLS gateway as `dsp watch` in
//!   direct mode.
//!
//! Nothing unverified is used: headers are checked against the origin key, chunks from the
//! server against their header here, chunks from peers by [`P2pNode::fetch_chunk`], before they
//! are stored, announced, served, counted for a receipt or played.
//!
//! What flows where:
//!
//! ```text
//! server ──Header (every segment), Chunk (seeded to us, or a Fetch answer)──▶ viewer
//! viewer ──Fetch (urgent)──▶ server
//! viewer ◀─Pass, Have, GetChunk, Receipt──▶ neighbours (both ways)
//! ```

use super::{
	hls, open_stream,
	p2p::{P2pConfig, P2pError, P2pNode},
	read_message, tls,
	vod::PlayRecorder,
	watch::{deliver, WatchEvent},
	write_frames, BoxRead, BoxWrite, Endpoint, ReadError,
};
use crate::{
	clock::Clock,
	p2p::{
		chunkset::ChunkSet,
		join::sign_join,
		receipts::ReceiptBook,
		scheduler::{
			ChunkRequest, PlayEvent, PlayStats, Scheduler, SchedulerConfig, SchedulerEvent,
			SchedulerStats,
		},
		serving::{ChunkSource, ServingEvent, ServingStats},
		upload::UploadConfig,
		wire::{HaveSegment, Request, Response, DEFAULT_MAX_HAVE_SEGMENTS},
		Millis, Source,
	},
	protocol::{
		encode_frame, ErrorCode, FrameDecoder, Message, Role, ServerAddrs, PROTOCOL_VERSION,
	},
	segment::{verify_chunk, verify_end, verify_header, Segment, SegmentLimits},
	viewer::{BufferStats, Delivered, Playlist, SegmentBuffer, Transport},
};
use bytes::Bytes;
use dsp_primitives::{
	AccountBytes, AdmissionMode, Hash32, PublicKey, SegmentHeader, Signed, StreamId, ViewerPass,
};
use futures::{future::BoxFuture, stream::FuturesUnordered, StreamExt};
use libp2p::{Multiaddr, PeerId};
use parking_lot::Mutex;
use std::{
	collections::{BTreeMap, HashMap, VecDeque},
	io,
	net::SocketAddr,
	path::PathBuf,
	sync::Arc,
	time::Duration,
};
use tokio::{
	net::TcpListener,
	sync::{mpsc, oneshot, watch},
	task::JoinHandle,
	time::Instant,
};
use tracing::{debug, info, warn};

/// Settings of a P2P viewer.
#[derive(Clone)]
pub struct P2pWatchConfig {
	/// Chain the stream is registered on.
	pub genesis_hash: Hash32,
	/// Stream to watch.
	pub stream: StreamId,
	/// The origin key that signs the stream's headers.
	pub origin: PublicKey,
	/// The server (tracker, header feed, urgent fetches).
	pub server: Endpoint,
	/// How the QUIC server certificate is checked (QUIC endpoints only).
	pub verification: tls::ServerVerification,
	/// The viewer's sr25519 key: the pass names it, it binds the pass to the libp2p identity and
	/// signs the receipts; it is also this viewer's account as a seeder.
	pub viewer: sp_core::sr25519::Pair,
	/// The libp2p node: identity, listen addresses, serving limits, upload cap, and the ledger
	/// of what this viewer serves (its `seeder` must be the viewer key's public key, its signers
	/// the stream's authorised pass signers).
	pub p2p: P2pConfig,
	/// The download scheduler.
	pub scheduler: SchedulerConfig,
	/// Limits on received headers.
	pub segment_limits: SegmentLimits,
	/// The first segment played is this many behind the newest header known when playback is
	/// planned, so the swarm has had time to spread it. Default 3 (6 s of 2 s segments: the
	/// node's seeds have reached a few neighbours by then).
	pub start_behind: u64,
	/// How long after `Joined` the viewer waits for the server's header backlog before it
	/// picks its first segment. Default 300 ms (one burst of frames on any working link).
	pub start_delay: Duration,
	/// New chunks are announced to the neighbours at most this often, as the full picture of
	/// the tracked segments. Default 100 ms: well below a chunk's transfer time, and at most 10
	/// `Have` requests per neighbour and second.
	pub have_interval: Duration,
	/// Receipts are signed and sent to every seeder this often (when they cover a new unit).
	/// Default 1 s: a seeder's slack (2 MiB) covers many seconds of a stream.
	pub receipt_interval: Duration,
	/// `Ping` interval on the direct connection. Default 1 s.
	pub keepalive_interval: Duration,
	/// How long connecting, `Welcome` and `Joined` may take. Default 10 s.
	pub connect_timeout: Duration,
	/// Most neighbours (from `Joined`, and peers that announce to us). Default 32.
	pub max_neighbours: usize,
	/// Most control requests (`Pass`, `Have`, `Receipt`) open at once; further announcements
	/// are skipped until some finish (the next one carries the full picture anyway). Default 256.
	pub max_control_inflight: usize,
	/// Segments whose headers and chunks are kept (to play, and to serve neighbours).
	/// Default 24: above the scheduler's 16 tracked segments. Memory: that many segments.
	pub max_stored_segments: usize,
	/// Complete segments held while an earlier one is missing. Default 8.
	pub max_pending_segments: usize,
	/// Largest frame accepted from the server. Default 256 KiB.
	pub max_frame_len: u32,
	/// Frames queued to the direct connection's writer. Default 64.
	pub send_queue: usize,
	/// Where the HLS gateway listens; `None` for none. Default `127.0.0.1:0`.
	pub gateway: Option<SocketAddr>,
	/// Segments in the gateway's playlist. Default 10.
	pub playlist_segments: usize,
	/// Writes every segment handed to the player to `<dir>/<stream>/<broadcast>/<sequence>.ts`
	/// when set, as the direct viewer does ([`PlayRecorder`]). Default none.
	pub record_dir: Option<PathBuf>,
}

impl std::fmt::Debug for P2pWatchConfig {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		// The keys stay out of logs.
		f.debug_struct("P2pWatchConfig")
			.field("stream", &self.stream)
			.field("server", &self.server)
			.field("p2p", &self.p2p)
			.field("scheduler", &self.scheduler)
			.field("start_behind", &self.start_behind)
			.field("record_dir", &self.record_dir)
			.finish_non_exhaustive()
	}
}

impl P2pWatchConfig {
	/// Defaults for the given stream, server, viewer key and libp2p node. A node without an
	/// upload cap gets the default one ([`UploadConfig::default`], 1.5 Mbit/s).
	pub fn new(
		genesis_hash: Hash32,
		stream: StreamId,
		origin: PublicKey,
		server: Endpoint,
		viewer: sp_core::sr25519::Pair,
		mut p2p: P2pConfig,
	) -> Self {
		p2p.upload.get_or_insert_with(UploadConfig::default);
		Self {
			genesis_hash,
			stream,
			origin,
			server,
			verification: tls::ServerVerification::InsecureSkip,
			viewer,
			p2p,
			scheduler: SchedulerConfig::default(),
			segment_limits: SegmentLimits::default(),
			start_behind: 3,
			start_delay: Duration::from_millis(300),
			have_interval: Duration::from_millis(100),
			receipt_interval: Duration::from_secs(1),
			keepalive_interval: Duration::from_secs(1),
			connect_timeout: Duration::from_secs(10),
			max_neighbours: 32,
			max_control_inflight: 256,
			max_stored_segments: 24,
			max_pending_segments: 8,
			max_frame_len: crate::protocol::DEFAULT_MAX_FRAME_LEN,
			send_queue: 64,
			gateway: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
			playlist_segments: 10,
			record_dir: None,
		}
	}
}

/// A P2P viewer failed.
#[derive(Debug, thiserror::Error)]
pub enum P2pWatchError {
	/// Connecting to the server failed or timed out; nothing was exchanged.
	#[error("connect: {0}")]
	Connect(io::Error),
	/// The server admitted this viewer in direct mode: use the direct driver
	/// ([`crate::net::watch`]). The connection is closed.
	#[error("admitted in direct mode")]
	Direct,
	/// The server refused or closed the session (`Full`, `UnknownStream`, shutdown, …).
	#[error("server closed: {0:?}: {1}")]
	Closed(ErrorCode, String),
	/// The server is full and named other streamers (`Redirect`, before its `Error { Full }`):
	/// try them, the first first. The connection is closed.
	#[error("server full; redirected to {} other streamers", .0.len())]
	Redirected(Vec<ServerAddrs>),
	/// The server broke the protocol or sent data that failed verification (a header not
	/// signed by the origin, a chunk that does not match its header). The connection is closed
	/// with an error frame.
	#[error("bad data from server: {0}")]
	Protocol(String),
	/// The recording directory (`record_dir`) could not be created; nothing was started.
	#[error("record directory: {0}")]
	Record(io::Error),
	/// The connection to the server failed (read or write error, closed without a reason).
	#[error("connection: {0}")]
	Connection(String),
	/// The libp2p node failed to start or stopped.
	#[error(transparent)]
	P2p(#[from] P2pError),
}

/// Counters of a P2P viewer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct P2pWatchStats {
	/// Download scheduler counters: bytes from the node and from peers, timeouts, bans.
	pub scheduler: SchedulerStats,
	/// Player model: startup, stalls, time played.
	pub play: PlayStats,
	/// Stalls longer than one segment duration (an ongoing one counted too).
	pub long_stalls: u64,
	/// The longest stall, ms (an ongoing one up to now).
	pub longest_stall_ms: u64,
	/// Segments handed to the player, gaps, duplicates.
	pub buffer: BufferStats,
	/// What this viewer served to neighbours.
	pub served: ServingStats,
	/// Neighbours with a pass accepted.
	pub neighbours: usize,
	/// Receipts signed and sent.
	pub receipts_sent: u64,
	/// Renewed passes received from the server (each shown to the neighbours).
	pub passes_renewed: u64,
	/// `max_units` of the pass held now.
	pub pass_max_units: u64,
	/// Bytes of headers and chunks the server sent on the direct connection (seeded chunks,
	/// urgent fetches, duplicates included): the node's egress to this viewer.
	pub server_bytes: u64,
	/// Newer broadcasts of the stream followed (the origin restarted it): each began a new
	/// swarm state, nothing of the older broadcast kept.
	pub new_broadcasts: u64,
	/// Whether the stream ended and every segment was handed to the player.
	pub ended: bool,
}

/// A running P2P viewer.
pub struct P2pWatchHandle {
	/// URL of the gateway's playlist, if the gateway runs.
	pub gateway_url: Option<String>,
	/// The viewer's libp2p identity.
	pub peer_id: PeerId,
	/// The pass the server issued.
	pub pass: Signed<ViewerPass>,
	stats: watch::Receiver<P2pWatchStats>,
	stop: Option<oneshot::Sender<()>>,
	task: JoinHandle<Result<P2pWatchStats, P2pWatchError>>,
}

impl P2pWatchHandle {
	/// The latest counters (updated at every receipt interval and at the end).
	pub fn stats(&self) -> P2pWatchStats {
		*self.stats.borrow()
	}

	/// Stops the viewer (closing its connections) and returns its counters.
	pub async fn stop(mut self) -> Result<P2pWatchStats, P2pWatchError> {
		if let Some(s) = self.stop.take() {
			let _ = s.send(());
		}
		self.join().await
	}

	/// Waits until the viewer ends: the stream ended and was played to its end, or it failed.
	pub async fn join(self) -> Result<P2pWatchStats, P2pWatchError> {
		match self.task.await {
			Ok(r) => r,
			Err(e) => Err(P2pWatchError::Connection(format!("viewer task: {e}"))),
		}
	}
}

async fn connect(
	config: &P2pWatchConfig,
) -> io::Result<(BoxRead, BoxWrite, Option<(quinn::Endpoint, quinn::Connection)>)> {
	let (transport, addr) = (config.server.transport, config.server.addr);
	match transport {
		Transport::Tcp => {
			let (r, w, _) = open_stream(transport, addr, None).await?;
			Ok((r, w, None))
		}
		Transport::Quic => {
			let (endpoint, cfg) =
				super::quic_client(addr, config.verification, config.keepalive_interval)?;
			let (r, w, conn) = open_stream(transport, addr, Some((&endpoint, &cfg))).await?;
			Ok((r, w, conn.map(|c| (endpoint, c))))
		}
	}
}

async fn expect_message(
	r: &mut BoxRead,
	dec: &mut FrameDecoder,
	timeout: Duration,
) -> Result<Message, P2pWatchError> {
	match tokio::time::timeout(timeout, read_message(r, dec)).await {
		Err(_) => Err(P2pWatchError::Connection("server did not answer in time".into())),
		Ok(Ok(Some(Message::Error { code, reason }))) => Err(P2pWatchError::Closed(code, reason)),
		Ok(Ok(Some(m))) => Ok(m),
		Ok(Ok(None)) => Err(P2pWatchError::Connection("server closed the connection".into())),
		Ok(Err(ReadError::Frame(e))) => Err(P2pWatchError::Protocol(e.to_string())),
		Ok(Err(ReadError::Io(e))) => Err(P2pWatchError::Connection(e.to_string())),
	}
}

/// Connects, joins the swarm and starts the viewer. `events`, when given, receives every
/// segment handed to the player, like [`crate::net::watch::start`]'s; it must be drained (the
/// viewer waits for it, and takes neither pings nor stop meanwhile).
pub async fn start(
	config: P2pWatchConfig,
	events: Option<mpsc::Sender<WatchEvent>>,
) -> Result<P2pWatchHandle, P2pWatchError> {
	let recorder = config
		.record_dir
		.clone()
		.map(PlayRecorder::new)
		.transpose()
		.map_err(P2pWatchError::Record)?;
	let t = config.connect_timeout;
	let (mut r, mut w, quic) = tokio::time::timeout(t, connect(&config))
		.await
		.map_err(|_| P2pWatchError::Connect(io::ErrorKind::TimedOut.into()))?
		.map_err(P2pWatchError::Connect)?;
	let hello = Message::Hello {
		version: PROTOCOL_VERSION,
		role: Role::Viewer,
		genesis_hash: config.genesis_hash,
	};
	write_frames(&mut w, &[encode_frame(&hello)], t)
		.await
		.map_err(|e| P2pWatchError::Connection(e.to_string()))?;
	let mut dec = FrameDecoder::new(config.max_frame_len);
	let challenge = match expect_message(&mut r, &mut dec, t).await? {
		Message::Welcome { mode: AdmissionMode::P2p, challenge, .. } => challenge,
		Message::Welcome { mode: AdmissionMode::Direct, .. } => return Err(P2pWatchError::Direct),
		Message::Redirect { servers } => return Err(P2pWatchError::Redirected(servers)),
		other => return Err(P2pWatchError::Protocol(format!("{} before welcome", other.kind()))),
	};
	let store = Arc::new(Store::new(config.stream, config.max_stored_segments));
	let mut node = P2pNode::start(config.p2p.clone(), store.clone()).await?;
	let node_events = node.take_events();
	let node = Arc::new(node);
	let me = node.peer_id;
	let peer = node.peer_info();
	// Proves to the server that we hold the viewer key, for this session only.
	let proof = sign_join(&config.viewer, &config.genesis_hash, &challenge, config.stream, &peer);
	let join = Message::Join {
		stream: config.stream,
		viewer: sp_core::Pair::public(&config.viewer),
		peer,
		proof,
	};
	write_frames(&mut w, &[encode_frame(&join)], t)
		.await
		.map_err(|e| P2pWatchError::Connection(e.to_string()))?;
	let (pass, peers) = match expect_message(&mut r, &mut dec, t).await? {
		Message::Joined { pass, peers } => (pass, peers),
		other => {
			return Err(P2pWatchError::Protocol(format!("{} instead of joined", other.kind())))
		}
	};
	if pass.payload.viewer != sp_core::Pair::public(&config.viewer)
		|| pass.payload.stream != config.stream
	{
		return Err(P2pWatchError::Protocol("pass for another viewer or stream".into()));
	}
	info!(%me, stream = config.stream, peers = peers.len(), epoch = pass.payload.epoch, "joined the swarm");

	let playlist = Arc::new(Mutex::new(Playlist::new(config.stream, config.playlist_segments)));
	let (gateway_shutdown, gateway_rx) = watch::channel(false);
	let mut gateway_url = None;
	if let Some(addr) = config.gateway {
		let listener = TcpListener::bind(addr).await.map_err(P2pWatchError::Connect)?;
		gateway_url = Some(hls::playlist_url(
			listener.local_addr().map_err(P2pWatchError::Connect)?,
			config.stream,
		));
		tokio::spawn(hls::serve(listener, playlist.clone(), gateway_rx));
	}

	let (out, out_rx) = mpsc::channel::<Bytes>(config.send_queue.max(1));
	let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
	let writer = tokio::spawn(write_loop(w, out_rx, config.keepalive_interval * 5));
	let reader = tokio::spawn(read_loop(r, dec, inbound_tx));
	let mut driver = Driver::new(config, node, pass.clone(), out, store, playlist, recorder);
	for p in peers {
		let Ok(peer) = PeerId::from_bytes(&p.peer_id) else { continue };
		let addr = p.addrs.iter().find_map(|a| Multiaddr::try_from(a.clone()).ok());
		driver.add_neighbour(peer, addr);
	}
	let (task, stats, stop) = driver.spawn(inbound, node_events, events, move || {
		let _ = gateway_shutdown.send(true);
		reader.abort();
		writer.abort();
		if let Some((endpoint, conn)) = quic {
			conn.close(0u32.into(), b"viewer done");
			endpoint.close(0u32.into(), b"viewer done");
		}
	});
	Ok(P2pWatchHandle { gateway_url, peer_id: me, pass, stats, stop: Some(stop), task })
}

async fn write_loop(
	mut w: BoxWrite,
	mut rx: mpsc::Receiver<Bytes>,
	stall: Duration,
) -> io::Result<()> {
	while let Some(frame) = rx.recv().await {
		write_frames(&mut w, &[frame], stall).await?;
	}
	Ok(())
}

/// Messages read from the server and not yet handled. Bounded: the reader waits (and stops
/// reading its socket) while the viewer is busy; 256 frames is about two segments of 16 KiB
/// chunks.
const INBOUND_QUEUE: usize = 256;

/// What the reader task passes on: a message, or why the connection ended.
type Inbound = Result<Message, P2pWatchError>;

async fn read_loop(mut r: BoxRead, mut dec: FrameDecoder, tx: mpsc::Sender<Inbound>) {
	loop {
		let m = match read_message(&mut r, &mut dec).await {
			Ok(Some(m)) => Ok(m),
			Ok(None) => Err(P2pWatchError::Connection("server closed the connection".into())),
			Err(ReadError::Frame(e)) => Err(P2pWatchError::Protocol(e.to_string())),
			Err(ReadError::Io(e)) => Err(P2pWatchError::Connection(e.to_string())),
		};
		let last = m.is_err();
		if tx.send(m).await.is_err() || last {
			return;
		}
	}
}

mod driver;
mod store;

use driver::Driver;
use store::Store;
