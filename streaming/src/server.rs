//! Server side, sans-IO: the per-connection session state machine, the admission rule, and the
//! live window of recent segments.
//!
//! # Driving a [`ServerSession`]
//!
//! 1. Feed every received frame body to [`ServerSession::handle_frame`] (or a read error to
//!    [`ServerSession::handle_read_error`]).
//! 2. Drain [`ServerSession::poll_event`]: answer `AdmissionRequest` with
//!    [`ServerSession::handle_admission`], `JoinRequest` (P2P mode) with
//!    [`ServerSession::handle_joined`], `FetchRequest` with [`ServerSession::handle_fetch`];
//!    store `SegmentReceived`, record `End`, count `Switched`, log `Closed`. A refused viewer
//!    can be sent elsewhere: answer with [`ServerSession::handle_admission_or_redirect`] and
//!    the next entries of a [`RedirectList`].
//!    On `Publishing`, open the stream's window ([`StreamTable::open`]) and answer with
//!    [`ServerSession::handle_publish_ready`] (or close the session if the table refuses).
//! 3. While [`ServerSession::wants_segments`] returns `Some((stream, from))`, look the stream up
//!    ([`LiveWindow::lookup`], or a recording) and pass the result to
//!    [`ServerSession::handle_segments`]; call it again whenever the stream's window changes.
//! 4. Send every frame from [`ServerSession::poll_transmit`], in order.
//! 5. Call [`ServerSession::handle_timeout`] at [`ServerSession::poll_timeout`].
//! 6. Once [`ServerSession::is_closed`] and nothing is left to transmit, close the connection.

use crate::{
	protocol::{
		decode_body, encode_frame, ErrorCode, FrameError, Message, PeerInfo, Role, ServerAddrs,
		Start, Transport, DEFAULT_MAX_FRAME_LEN, MAX_JOINED_PEERS, MAX_REDIRECT_SERVERS,
		PROTOCOL_VERSION,
	},
	segment::{Assembled, Assembler, Segment, SegmentLimits},
};
use bytes::Bytes;
use dsp_primitives::{
	AdmissionMode, CapacitySettings, Hash32, PublicKey, Signed, StreamEnd, StreamId, ViewerPass,
};
use std::{
	collections::{HashMap, VecDeque},
	sync::Arc,
	time::{Duration, Instant},
};

/// Where the server learns streams' origin keys when they are not fixed at start: the node
/// implements it over the chain's registry (open streams and their signing keys, as of the
/// latest finalized block), so streams registered or closed while the server runs take effect
/// without restart. Called when a session names a stream; implementations should cache.
pub trait StreamDirectory: Send + Sync + std::fmt::Debug {
	/// The key that must sign `stream`'s headers, or `None` if the stream is unknown or closed.
	fn origin_key(&self, stream: StreamId) -> Option<PublicKey>;
}

/// Which origin key signs which stream: fixed keys (given on the command line) first, then the
/// [`StreamDirectory`] if there is one.
#[derive(Clone, Debug, Default)]
pub struct OriginKeys {
	/// Key for streams not listed in `per_stream`.
	pub default: Option<PublicKey>,
	/// Keys of individual streams.
	pub per_stream: HashMap<StreamId, PublicKey>,
	/// Asked for streams neither `per_stream` nor `default` covers.
	pub directory: Option<Arc<dyn StreamDirectory>>,
}

impl OriginKeys {
	/// The key that must sign `stream`'s headers.
	pub fn get(&self, stream: StreamId) -> Option<PublicKey> {
		self.per_stream
			.get(&stream)
			.copied()
			.or(self.default)
			.or_else(|| self.directory.as_ref().and_then(|d| d.origin_key(stream)))
	}
}

/// Limits and settings of one session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
	/// Genesis hash the server's streams are registered on. Default all zeros (standalone).
	pub genesis_hash: Hash32,
	/// Largest frame body accepted. Default [`DEFAULT_MAX_FRAME_LEN`] (256 KiB).
	pub max_frame_len: u32,
	/// A client must send `Hello` within this time. Default 5 s.
	pub hello_timeout: Duration,
	/// A client that sends nothing (not even `Ping`) for this long is closed. Default 30 s.
	pub idle_timeout: Duration,
	/// Segments are taken from the window only while fewer than this many bytes wait to be
	/// sent. The queue holds references to frames shared by all sessions, so per-session memory
	/// is a few pointers; what this bounds is how far a session runs ahead of its socket.
	/// Default 1 MiB.
	pub max_send_queue_bytes: usize,
	/// Limits on received segment headers (publishers).
	pub segment_limits: SegmentLimits,
	/// An on-demand stream (a recording) is sent no further ahead of real time than this,
	/// counted in play time from the session's first segment: a recording reaches the viewer at
	/// its own pace, as a live stream does, so the viewer's buffer and playlist hold seconds of
	/// it, not all of it, and the server reads the disk as it plays. Default 10 s.
	pub on_demand_lead: Duration,
	/// Origin keys of the streams this server accepts.
	pub origin_keys: Arc<OriginKeys>,
	/// Headers of this many segments before the live edge go to a P2P viewer when it has
	/// joined (it picks its first segment among them, a few behind the edge). Default 8: 16 s
	/// of 2 s segments, a few hundred bytes each.
	pub p2p_header_backlog: u64,
}

impl Default for SessionConfig {
	fn default() -> Self {
		Self {
			genesis_hash: [0; 32],
			max_frame_len: DEFAULT_MAX_FRAME_LEN,
			hello_timeout: Duration::from_secs(5),
			idle_timeout: Duration::from_secs(30),
			max_send_queue_bytes: 1024 * 1024,
			segment_limits: SegmentLimits::default(),
			on_demand_lead: Duration::from_secs(10),
			origin_keys: Arc::new(OriginKeys::default()),
			p2p_header_backlog: 8,
		}
	}
}

/// What the window holds from a sequence number on.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
	/// Segments with a sequence of at least the one asked for, in order.
	pub segments: Vec<Arc<Segment>>,
	/// Oldest sequence held, if any.
	pub oldest: Option<u64>,
	/// Newest sequence held, if any.
	pub newest: Option<u64>,
	/// One past the newest sequence held (0 if the stream never had a segment).
	pub next_sequence: u64,
	/// Once the publisher ended the stream: the sequence it ended before, and the origin-signed
	/// `End` frame to forward as is.
	pub ended: Option<(u64, Bytes)>,
	/// A recording served on demand rather than a live window: it has no live edge, so
	/// `Start::Live` starts at its oldest segment.
	pub on_demand: bool,
}

/// Limits of a live window.
#[derive(Clone, Debug)]
pub struct WindowConfig {
	/// Most segments held per stream. Default 30 (one minute of 2 s segments).
	pub max_segments: usize,
	/// Most media bytes held per stream. Default 64 MiB. The newest segment is always held.
	pub max_bytes: usize,
}

impl Default for WindowConfig {
	fn default() -> Self {
		Self { max_segments: 30, max_bytes: 64 * 1024 * 1024 }
	}
}

/// What inserting a segment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
	/// Stored as the newest segment.
	Stored,
	/// Not newer than the newest held: already seen (a publisher resending after a reconnect).
	Duplicate,
}

/// The recent segments of one live stream. Append-only: a segment is stored only if it is newer
/// than every segment seen; older ones are duplicates of what was already accepted (or fell out).
#[derive(Debug, Default)]
pub struct LiveWindow {
	config: WindowConfig,
	segments: VecDeque<Arc<Segment>>,
	bytes: usize,
	next_sequence: u64,
	ended: Option<(u64, Bytes)>,
}

impl LiveWindow {
	/// An empty window.
	pub fn new(config: WindowConfig) -> Self {
		Self { config, ..Default::default() }
	}

	/// Adds a verified segment.
	pub fn insert(&mut self, segment: Arc<Segment>) -> Inserted {
		let seq = segment.sequence();
		if seq < self.next_sequence {
			return Inserted::Duplicate;
		}
		self.ended = None;
		self.next_sequence = seq + 1;
		self.bytes += segment.byte_len();
		self.segments.push_back(segment);
		while self.segments.len() > 1
			&& (self.segments.len() > self.config.max_segments
				|| self.bytes > self.config.max_bytes)
		{
			let old = self.segments.pop_front().expect("len > 1; qed");
			self.bytes -= old.byte_len();
		}
		Inserted::Stored
	}

	/// Marks the stream ended, with the origin's signed (already verified) end.
	pub fn end(&mut self, end: Signed<StreamEnd>) {
		let next_sequence = self.next_sequence.max(end.payload.next_sequence);
		self.ended = Some((next_sequence, encode_frame(&Message::End(end))));
	}

	/// Up to `max` segments from `from` on.
	pub fn lookup(&self, from: u64, max: usize) -> Lookup {
		let start = self.segments.partition_point(|s| s.sequence() < from);
		Lookup {
			segments: self.segments.iter().skip(start).take(max).cloned().collect(),
			oldest: self.segments.front().map(|s| s.sequence()),
			newest: self.segments.back().map(|s| s.sequence()),
			next_sequence: self.next_sequence,
			ended: self.ended.clone(),
			on_demand: false,
		}
	}

	/// The next sequence this window stores: one past the newest segment seen, or where the
	/// stream ended if that is later. What a (re)connecting publisher is told to continue from.
	pub fn next_sequence(&self) -> u64 {
		match &self.ended {
			Some((end, _)) => self.next_sequence.max(*end),
			None => self.next_sequence,
		}
	}

	/// Segments and media bytes held.
	pub fn usage(&self) -> (usize, usize) {
		(self.segments.len(), self.bytes)
	}
}

/// Limits of a [`StreamTable`].
#[derive(Clone, Debug)]
pub struct StreamTableConfig {
	/// Most streams with a window at once. Default 256; worst-case memory is this many
	/// windows ([`WindowConfig::max_bytes`] each).
	pub max_streams: usize,
	/// Most of them that hold no segment yet, counted apart for the two ways to open one:
	/// announced by a publisher that has not delivered a segment, and waited for by viewers of
	/// a stream that has an origin key. Default 32 each. Anybody can say `Publish` or
	/// `Subscribe`, so this is what bounds slots held for nothing; counting them apart keeps
	/// viewers that wait for streams nobody publishes from locking publishers out.
	pub max_waiting: usize,
	/// A stream that stored nothing (no segment, no end) for this long is freed, and the
	/// sessions still on it are closed (`UnknownStream`; viewers reconnect, a publisher that
	/// comes back gets a new window). This is also how long a viewer waits for a stream that
	/// nobody publishes. Default 120 s.
	pub idle_timeout: Duration,
	/// An ended stream is freed this long after its end, time for its viewers to catch up.
	/// Default 30 s.
	pub ended_linger: Duration,
}

impl Default for StreamTableConfig {
	fn default() -> Self {
		Self {
			max_streams: 256,
			max_waiting: 32,
			idle_timeout: Duration::from_secs(120),
			ended_linger: Duration::from_secs(30),
		}
	}
}

#[derive(Debug)]
struct TableEntry<S> {
	slot: S,
	opened_by: Role,
	/// When the stream was opened or last stored a segment.
	last_activity: Instant,
	has_segments: bool,
	ended_at: Option<Instant>,
}

impl<S> TableEntry<S> {
	fn expires_at(&self, config: &StreamTableConfig) -> Instant {
		match self.ended_at {
			Some(at) => at + config.ended_linger,
			None => self.last_activity + config.idle_timeout,
		}
	}
}

/// Which streams hold a window (`S`, the driver's slot), sans-IO: opened by publishers and by
/// viewers of streams with an origin key, bounded in number, freed once ended or idle.
///
/// Call order: [`Self::open`] on `Publish` / `Subscribe`; [`Self::handle_segment`] and
/// [`Self::handle_end`] when a window stores something; [`Self::handle_timeout`] at
/// [`Self::poll_timeout`]; then close the sessions of every slot from [`Self::poll_freed`].
#[derive(Debug)]
pub struct StreamTable<S> {
	config: StreamTableConfig,
	entries: HashMap<StreamId, TableEntry<S>>,
	freed: VecDeque<(StreamId, S)>,
}

impl<S: Clone> StreamTable<S> {
	/// An empty table.
	pub fn new(config: StreamTableConfig) -> Self {
		Self { config, entries: HashMap::new(), freed: VecDeque::new() }
	}

	/// The slot of `stream`, if it has one.
	pub fn get(&self, stream: StreamId) -> Option<S> {
		self.entries.get(&stream).map(|e| e.slot.clone())
	}

	/// Streams held, and how many of them hold no segment yet.
	pub fn usage(&self) -> (usize, usize) {
		let waiting = self.entries.values().filter(|e| !e.has_segments).count();
		(self.entries.len(), waiting)
	}

	/// The slot of `stream` for a session of role `by`, made with `make` if it has none. The
	/// caller has checked that the stream has an origin key. Refused with
	/// [`ErrorCode::UnknownStream`] when `max_streams` streams, or `max_waiting` streams opened
	/// by the same role and without a segment, are held (after freeing expired ones).
	pub fn open(
		&mut self,
		now: Instant,
		stream: StreamId,
		by: Role,
		make: impl FnOnce() -> S,
	) -> Result<S, ErrorCode> {
		if let Some(s) = self.get(stream) {
			return Ok(s);
		}
		self.handle_timeout(now);
		let waiting =
			self.entries.values().filter(|e| !e.has_segments && e.opened_by == by).count();
		if self.entries.len() >= self.config.max_streams || waiting >= self.config.max_waiting {
			return Err(ErrorCode::UnknownStream);
		}
		let slot = make();
		self.entries.insert(
			stream,
			TableEntry {
				slot: slot.clone(),
				opened_by: by,
				last_activity: now,
				has_segments: false,
				ended_at: None,
			},
		);
		Ok(slot)
	}

	/// `stream`'s window stored a segment.
	pub fn handle_segment(&mut self, now: Instant, stream: StreamId) {
		if let Some(e) = self.entries.get_mut(&stream) {
			e.last_activity = now;
			e.has_segments = true;
			e.ended_at = None;
		}
	}

	/// `stream`'s publisher ended it.
	pub fn handle_end(&mut self, now: Instant, stream: StreamId) {
		if let Some(e) = self.entries.get_mut(&stream) {
			e.last_activity = now;
			e.ended_at = Some(now);
		}
	}

	/// When the next stream expires.
	pub fn poll_timeout(&self) -> Option<Instant> {
		self.entries.values().map(|e| e.expires_at(&self.config)).min()
	}

	/// Frees every stream that expired by `now`.
	pub fn handle_timeout(&mut self, now: Instant) {
		let config = &self.config;
		let expired: Vec<StreamId> = self
			.entries
			.iter()
			.filter(|(_, e)| now >= e.expires_at(config))
			.map(|(id, _)| *id)
			.collect();
		for id in expired {
			if let Some(e) = self.entries.remove(&id) {
				self.freed.push_back((id, e.slot));
			}
		}
	}

	/// A freed stream whose sessions must be closed.
	pub fn poll_freed(&mut self) -> Option<(StreamId, S)> {
		self.freed.pop_front()
	}
}

/// Default of [`Admission::with_max_p2p_sessions`]: P2P sessions cost the node a header feed,
/// seeded chunks and urgent fetches each (a few KiB/s apiece, far less than a direct session),
/// and a tracker entry; 10 000 of them is a few tens of Mbit/s of egress and a few MiB of state.
pub const DEFAULT_MAX_P2P_SESSIONS: u32 = 10_000;

/// The capacity rule applied to live sessions (DESIGN.md section 2).
///
/// Below `p2p_threshold = floor(max_streams * (1 - r))` direct sessions a viewer is admitted
/// directly. At or above it the rule puts it in P2P mode, which is admitted only if the server
/// can issue passes ([`Self::with_p2p`]), `r > 0` ("r = 0 means no P2P": a streamer that shares
/// nothing of its capacity with a swarm is simply full at `max_streams`), and fewer than
/// `max_p2p_sessions` P2P sessions are open; otherwise the viewer is refused with
/// [`ErrorCode::Full`].
#[derive(Clone, Debug)]
pub struct Admission {
	settings: CapacitySettings,
	p2p_enabled: bool,
	max_p2p_sessions: u32,
	direct: u32,
	p2p: u32,
	refused: u64,
}

/// Sessions per mode, for logs and RPC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
	/// Direct (TCP or QUIC) viewer sessions open.
	pub direct: u32,
	/// P2P sessions open (tracker sessions of viewers admitted in P2P mode).
	pub p2p: u32,
	/// Viewers refused since start.
	pub refused: u64,
}

impl Admission {
	/// Admission under `settings`, without P2P (see [`Self::with_p2p`]), at most
	/// [`DEFAULT_MAX_P2P_SESSIONS`] P2P sessions.
	pub fn new(settings: CapacitySettings) -> Self {
		Self {
			settings,
			p2p_enabled: false,
			max_p2p_sessions: DEFAULT_MAX_P2P_SESSIONS,
			direct: 0,
			p2p: 0,
			refused: 0,
		}
	}

	/// Whether viewers the rule puts in P2P mode are admitted (the server can issue passes) or
	/// refused with [`ErrorCode::Full`].
	pub fn with_p2p(mut self, enabled: bool) -> Self {
		self.p2p_enabled = enabled;
		self
	}

	/// Most P2P sessions open at once; further P2P admissions are refused with
	/// [`ErrorCode::Full`].
	pub fn with_max_p2p_sessions(mut self, max: u32) -> Self {
		self.max_p2p_sessions = max;
		self
	}

	/// Applies new settings; open sessions are kept.
	pub fn set_settings(&mut self, settings: CapacitySettings) {
		self.settings = settings;
	}

	/// Decides for a new viewer (see the type's docs for when P2P mode is refused).
	pub fn try_admit(&mut self) -> Result<AdmissionMode, ErrorCode> {
		match self.settings.admit(self.direct) {
			AdmissionMode::Direct => {
				self.direct += 1;
				Ok(AdmissionMode::Direct)
			}
			AdmissionMode::P2p
				if self.p2p_enabled
					&& !self.settings.streaming_rate.is_zero()
					&& self.p2p < self.max_p2p_sessions =>
			{
				self.p2p += 1;
				Ok(AdmissionMode::P2p)
			}
			AdmissionMode::P2p => {
				self.refused += 1;
				Err(ErrorCode::Full)
			}
		}
	}

	/// A session admitted in `mode` ended.
	pub fn release(&mut self, mode: AdmissionMode) {
		match mode {
			AdmissionMode::Direct => self.direct = self.direct.saturating_sub(1),
			AdmissionMode::P2p => self.p2p = self.p2p.saturating_sub(1),
		}
	}

	/// Current counts.
	pub fn stats(&self) -> AdmissionStats {
		AdmissionStats { direct: self.direct, p2p: self.p2p, refused: self.refused }
	}
}

/// The other streamers a full server sends refused viewers to, sans-IO. The node replaces the
/// list at every finalized block ([`Self::set`]); each refusal takes up to
/// [`MAX_REDIRECT_SERVERS`] of them, starting one further along the list than the previous
/// refusal, so that refused viewers (who try the first entry first) spread over all of them.
#[derive(Clone, Debug, Default)]
pub struct RedirectList {
	servers: Vec<ServerAddrs>,
	next: usize,
}

impl RedirectList {
	/// Replaces the list. Entries beyond the wire limits ([`ServerAddrs::check`]) are left out
	/// (a viewer would refuse the whole message) and returned for logging. The rotation goes
	/// on where it was: the list is set at every block, and restarting at its head each time
	/// would favour the first entries.
	pub fn set(&mut self, servers: Vec<ServerAddrs>) -> Vec<ServerAddrs> {
		let (ok, bad): (Vec<_>, Vec<_>) = servers.into_iter().partition(|s| s.check().is_ok());
		self.servers = ok;
		bad
	}

	/// Streamers known.
	pub fn len(&self) -> usize {
		self.servers.len()
	}

	/// Whether no other streamer is known.
	pub fn is_empty(&self) -> bool {
		self.servers.is_empty()
	}

	/// The servers for the next refusal (empty when none are known), rotated by one per call.
	pub fn next_redirect(&mut self) -> Vec<ServerAddrs> {
		let n = self.servers.len();
		if n == 0 {
			return Vec::new();
		}
		let start = self.next % n;
		self.next = (start + 1) % n;
		(0..n.min(MAX_REDIRECT_SERVERS)).map(|i| self.servers[(start + i) % n].clone()).collect()
	}
}

/// Something the driver must act on.
#[derive(Debug)]
pub enum SessionEvent {
	/// A viewer said hello: decide with [`Admission::try_admit`] and call
	/// [`ServerSession::handle_admission`].
	AdmissionRequest,
	/// The viewer subscribed to `stream`: start feeding it with [`ServerSession::handle_segments`].
	Subscribed(StreamId),
	/// The publisher announced `stream`.
	Publishing(StreamId),
	/// A publisher delivered a complete, verified segment: store it.
	SegmentReceived(Segment),
	/// The publisher ended a stream with this origin-signed (and verified) end.
	End(Signed<StreamEnd>),
	/// A P2P viewer asked to join `stream`'s swarm: issue a pass and peers, then call
	/// [`ServerSession::handle_joined`].
	JoinRequest {
		/// Stream.
		stream: StreamId,
		/// The viewer's key.
		viewer: PublicKey,
		/// How peers reach it.
		peer: PeerInfo,
	},
	/// A P2P viewer needs chunk `index` of segment `sequence` of `stream` now: look it up and
	/// call [`ServerSession::handle_fetch`].
	FetchRequest {
		/// Stream.
		stream: StreamId,
		/// Segment.
		sequence: u64,
		/// Chunk index.
		index: u32,
	},
	/// A viewer opened this connection to switch transport away from `from` (telemetry).
	Switched {
		/// The transport it left.
		from: Transport,
	},
	/// The session closed (by us, with `code`, or by the peer when `code` is `None`).
	Closed {
		/// Error sent to the peer, if any.
		code: Option<ErrorCode>,
		/// Why.
		reason: String,
	},
}

#[derive(Debug)]
enum State {
	AwaitHello {
		deadline: Instant,
	},
	AwaitAdmission,
	Viewer(Option<Subscription>),
	/// Admitted in P2P mode: `None` before `Join`, then the joined stream (and whether
	/// `Joined` was sent). The header feed's position is in `ServerSession::p2p_feed`.
	P2p(Option<(StreamId, bool)>),
	Publisher(Option<(StreamId, Box<Assembler>)>),
	Closed,
}

#[derive(Debug)]
struct Subscription {
	stream: StreamId,
	start: Start,
	/// Next sequence to send; `None` until the start is resolved against the window.
	next: Option<u64>,
	end_sent: bool,
	/// On demand: when the first segment was queued, and the play time queued since.
	on_demand_clock: Option<(Instant, Duration)>,
	/// On demand: the next segment waits until then (`on_demand_lead` ahead of real time).
	paused_until: Option<Instant>,
	/// `Switched` was received (it is allowed once, after `Subscribe`).
	switched: bool,
}

/// Counters of one session.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionStats {
	/// Segments queued for sending.
	pub segments_sent: u64,
	/// Bytes queued for sending.
	pub bytes_sent: u64,
	/// Segments received from a publisher.
	pub segments_received: u64,
	/// P2P mode: chunk bytes (wire frames) of every segment whose header was sent, i.e. what
	/// the viewer needs from somewhere to play them.
	pub p2p_media_due: u64,
	/// P2P mode: of that, chunk bytes the server sent itself (seeded chunks, `Fetch` answers).
	pub p2p_chunk_bytes: u64,
}

/// One client connection, viewer or publisher. See the module docs for the call order.
#[derive(Debug)]
pub struct ServerSession {
	config: SessionConfig,
	state: State,
	last_recv: Instant,
	queue: VecDeque<Bytes>,
	queued_bytes: usize,
	events: VecDeque<SessionEvent>,
	stats: SessionStats,
	/// Said `Hello` as a publisher: on an error its queued acks still go out before the
	/// `Error`, so it knows which segment was refused.
	publisher: bool,
	/// P2P mode, after `Joined`: the next header to send (`None` until the first lookup) and
	/// whether `End` was sent.
	p2p_feed: (Option<u64>, bool),
}

impl ServerSession {
	/// A new connection at `now`.
	pub fn new(now: Instant, config: SessionConfig) -> Self {
		let deadline = now + config.hello_timeout;
		Self {
			config,
			state: State::AwaitHello { deadline },
			last_recv: now,
			queue: VecDeque::new(),
			queued_bytes: 0,
			events: VecDeque::new(),
			stats: SessionStats::default(),
			publisher: false,
			p2p_feed: (None, false),
		}
	}

	/// Counters.
	pub fn stats(&self) -> SessionStats {
		self.stats
	}

	/// Whether the session is over (flush [`Self::poll_transmit`], then close).
	pub fn is_closed(&self) -> bool {
		matches!(self.state, State::Closed)
	}

	/// Whether this is an admitted viewer (for releasing its admission slot).
	pub fn is_viewer(&self) -> bool {
		matches!(self.state, State::Viewer(_) | State::P2p(_))
	}

	fn send(&mut self, frame: Bytes) {
		self.queued_bytes += frame.len();
		self.queue.push_back(frame);
	}

	/// Closes with an error frame to the peer.
	pub fn close(&mut self, code: ErrorCode, reason: impl Into<String>) {
		if !self.is_closed() {
			self.fail(code, reason.into());
		}
	}

	fn fail(&mut self, code: ErrorCode, reason: String) {
		self.fail_after(None, code, reason)
	}

	/// Closes with `Error { code, reason }`, preceded by `before` (a `Redirect`) if given.
	fn fail_after(&mut self, before: Option<Message>, code: ErrorCode, reason: String) {
		if !self.publisher {
			// A viewer's queue holds media it will not get now; the error goes first. A
			// publisher's holds acks (a few bytes each), which tell it what was stored.
			self.queue.clear();
			self.queued_bytes = 0;
		}
		if let Some(m) = before {
			self.send(encode_frame(&m));
		}
		self.send(encode_frame(&Message::error(code, reason.clone())));
		self.state = State::Closed;
		self.events.push_back(SessionEvent::Closed { code: Some(code), reason });
	}

	/// The peer closed its side cleanly (end of stream on a frame boundary).
	pub fn handle_peer_closed(&mut self) {
		if self.is_closed() {
			return;
		}
		self.state = State::Closed;
		self.events.push_back(SessionEvent::Closed { code: None, reason: "peer closed".into() });
	}

	/// A frame could not be read.
	pub fn handle_read_error(&mut self, _now: Instant, err: FrameError) {
		self.close(err.code(), err.to_string());
	}

	/// A frame body arrived. `body` is what [`crate::protocol::FrameDecoder`] returned.
	pub fn handle_frame(&mut self, now: Instant, body: Bytes) {
		if self.is_closed() {
			return;
		}
		self.last_recv = now;
		// Keep the whole frame for forwarding: rebuild its prefix in front of the shared body.
		let msg = match decode_body(body.clone()) {
			Ok(m) => m,
			Err(e) => return self.handle_read_error(now, e),
		};
		match msg {
			Message::Ping(n) => {
				// Replies count against the send queue too: a peer that pings and never reads
				// must not grow it without bound.
				if self.queued_bytes >= self.config.max_send_queue_bytes {
					return self.fail(ErrorCode::SlowConsumer, "pings while not reading".into());
				}
				return self.send(encode_frame(&Message::Pong(n)));
			}
			Message::Pong(_) => return,
			Message::Error { code, reason } => {
				self.state = State::Closed;
				self.events.push_back(SessionEvent::Closed {
					code: None,
					reason: format!("peer sent error {code:?}: {reason}"),
				});
				return;
			}
			_ => {}
		}
		let state = std::mem::replace(&mut self.state, State::Closed);
		self.state = match (state, msg) {
			(State::AwaitHello { .. }, Message::Hello { version, role, genesis_hash }) => {
				if version != PROTOCOL_VERSION {
					return self.fail(
						ErrorCode::UnsupportedVersion,
						format!("version {version}, server speaks {PROTOCOL_VERSION}"),
					);
				}
				if genesis_hash != self.config.genesis_hash {
					return self.fail(ErrorCode::WrongGenesis, "client is on another chain".into());
				}
				match role {
					Role::Viewer => {
						self.events.push_back(SessionEvent::AdmissionRequest);
						State::AwaitAdmission
					}
					Role::Publisher => {
						self.publisher = true;
						self.welcome(AdmissionMode::Direct);
						State::Publisher(None)
					}
				}
			}
			(State::Viewer(None), Message::Subscribe { stream, start }) => {
				// Waiting for a stream nobody may publish would hold a slot for nothing.
				if self.config.origin_keys.get(stream).is_none() {
					return self.fail(
						ErrorCode::UnknownStream,
						format!("no origin key for stream {stream}"),
					);
				}
				self.events.push_back(SessionEvent::Subscribed(stream));
				State::Viewer(Some(Subscription {
					stream,
					start,
					next: None,
					end_sent: false,
					on_demand_clock: None,
					paused_until: None,
					switched: false,
				}))
			}
			(State::Viewer(Some(mut sub)), Message::Switched { from }) if !sub.switched => {
				sub.switched = true;
				self.events.push_back(SessionEvent::Switched { from });
				State::Viewer(Some(sub))
			}
			(State::P2p(None), Message::Join { stream, viewer, peer }) => {
				if let Err(why) = peer.check() {
					return self.fail(ErrorCode::Malformed, format!("join: {why}"));
				}
				self.events.push_back(SessionEvent::JoinRequest { stream, viewer, peer });
				State::P2p(Some((stream, false)))
			}
			(State::P2p(Some((joined, true))), Message::Fetch { stream, sequence, index })
				if stream == joined =>
			{
				// Answers count against the send queue: a viewer that fetches and never reads
				// must not grow it without bound.
				if self.queued_bytes >= self.config.max_send_queue_bytes {
					return self.fail(ErrorCode::SlowConsumer, "fetches while not reading".into());
				}
				self.events.push_back(SessionEvent::FetchRequest { stream, sequence, index });
				State::P2p(Some((joined, true)))
			}
			(State::Publisher(None), Message::Publish { stream }) => {
				let Some(key) = self.config.origin_keys.get(stream) else {
					return self.fail(
						ErrorCode::UnknownStream,
						format!("no origin key for stream {stream}"),
					);
				};
				self.events.push_back(SessionEvent::Publishing(stream));
				let asm = Box::new(Assembler::new(
					self.config.genesis_hash,
					stream,
					key,
					self.config.segment_limits.clone(),
				));
				State::Publisher(Some((stream, asm)))
			}
			(State::Publisher(Some((stream, mut asm))), Message::Header(h)) => {
				let frame = prefixed(&body);
				if let Err(e) = asm.handle_header(h, frame) {
					return self.fail(e.code(), e.to_string());
				}
				State::Publisher(Some((stream, asm)))
			}
			(State::Publisher(Some((stream, mut asm))), Message::Chunk(c)) => {
				let frame = prefixed(&body);
				match asm.handle_chunk(c, frame) {
					Err(e) => {
						return self.fail(e.code(), e.to_string());
					}
					Ok(Assembled::Progress) => {}
					Ok(Assembled::Complete(seg)) => {
						self.stats.segments_received += 1;
						let sequence = seg.sequence();
						self.events.push_back(SessionEvent::SegmentReceived(seg));
						self.send(encode_frame(&Message::Ack { stream, sequence }));
					}
				}
				State::Publisher(Some((stream, asm)))
			}
			(State::Publisher(Some((stream, asm))), Message::End(end))
				if end.payload.stream == stream && asm.in_progress().is_none() =>
			{
				// Only the origin may end a stream: anybody can say `Publish`.
				if let Err(e) = asm.verify_end(&end) {
					return self.fail(e.code(), e.to_string());
				}
				// Echoed as the confirmation that the end is recorded.
				self.send(prefixed(&body));
				self.events.push_back(SessionEvent::End(end));
				State::Publisher(Some((stream, asm)))
			}
			(state, msg) => {
				let what = format!("{} not allowed {}", msg.kind(), state_name(&state));
				return self.fail(ErrorCode::UnexpectedMessage, what);
			}
		};
	}

	fn welcome(&mut self, mode: AdmissionMode) {
		self.send(encode_frame(&Message::Welcome {
			version: PROTOCOL_VERSION,
			mode,
			max_frame_len: self.config.max_frame_len,
		}));
	}

	/// The answer to [`SessionEvent::Publishing`] once the stream's window is open: tells the
	/// publisher the next sequence the server stores ([`LiveWindow::next_sequence`]).
	pub fn handle_publish_ready(&mut self, _now: Instant, next_sequence: u64) {
		if let State::Publisher(Some((stream, _))) = &self.state {
			let stream = *stream;
			self.send(encode_frame(&Message::Expect { stream, next_sequence }));
		}
	}

	/// The answer to [`SessionEvent::AdmissionRequest`].
	pub fn handle_admission(&mut self, now: Instant, result: Result<AdmissionMode, ErrorCode>) {
		self.handle_admission_or_redirect(now, result, Vec::new())
	}

	/// The answer to [`SessionEvent::AdmissionRequest`]; a refusal with a non-empty `redirect`
	/// (from [`RedirectList::next_redirect`]) sends `Redirect { servers: redirect }` (at most
	/// [`MAX_REDIRECT_SERVERS`]) right before the `Error`.
	pub fn handle_admission_or_redirect(
		&mut self,
		_now: Instant,
		result: Result<AdmissionMode, ErrorCode>,
		mut redirect: Vec<ServerAddrs>,
	) {
		if !matches!(self.state, State::AwaitAdmission) {
			return;
		}
		match result {
			Ok(mode) => {
				self.welcome(mode);
				self.state = match mode {
					AdmissionMode::Direct => State::Viewer(None),
					AdmissionMode::P2p => State::P2p(None),
				};
			}
			Err(code) if redirect.is_empty() => self.close(code, "server is full"),
			Err(code) => {
				redirect.truncate(MAX_REDIRECT_SERVERS);
				let servers = redirect.len();
				self.fail_after(
					Some(Message::Redirect { servers: redirect }),
					code,
					format!("server is full; redirected to {servers} other streamers"),
				);
			}
		}
	}

	/// Whether the viewer was admitted in P2P mode (for releasing its admission slot).
	pub fn is_p2p(&self) -> bool {
		matches!(self.state, State::P2p(_))
	}

	/// The answer to [`SessionEvent::JoinRequest`]: the pass and peers, or why not.
	pub fn handle_joined(
		&mut self,
		_now: Instant,
		result: Result<(Signed<ViewerPass>, Vec<PeerInfo>), (ErrorCode, String)>,
	) {
		let State::P2p(Some((stream, false))) = self.state else { return };
		match result {
			Ok((pass, mut peers)) => {
				peers.truncate(MAX_JOINED_PEERS);
				self.send(encode_frame(&Message::Joined { pass, peers }));
				self.state = State::P2p(Some((stream, true)));
			}
			Err((code, reason)) => self.close(code, reason),
		}
	}

	/// The answer to [`SessionEvent::FetchRequest`]: the segment if the window holds it. Sends
	/// its header and the chunk (shared frames, no copy), or `NotHeld`.
	pub fn handle_fetch(
		&mut self,
		_now: Instant,
		sequence: u64,
		index: u32,
		segment: Option<Arc<Segment>>,
	) {
		let State::P2p(Some((stream, true))) = self.state else { return };
		let frames = segment.as_ref().and_then(|seg| {
			let chunk = seg.frames.get(1 + index as usize)?;
			(seg.sequence() == sequence).then(|| (seg.frames[0].clone(), chunk.clone()))
		});
		match frames {
			Some((header, chunk)) => {
				self.stats.segments_sent += 1;
				self.stats.bytes_sent += (header.len() + chunk.len()) as u64;
				self.stats.p2p_chunk_bytes += chunk.len() as u64;
				self.send(header);
				self.send(chunk);
			}
			None => self.send(encode_frame(&Message::NotHeld { stream, sequence, index })),
		}
	}

	/// `Some((stream, from))` when the session can take more segments of `stream` from sequence
	/// `from` on (see [`LiveWindow::lookup`]).
	/// In P2P mode (after `Joined`) the session takes every segment's header and the chunks
	/// the node seeds to it, through [`Self::handle_p2p_segments`].
	pub fn wants_segments(&self) -> Option<(StreamId, u64)> {
		let room = self.queued_bytes < self.config.max_send_queue_bytes;
		match &self.state {
			State::Viewer(Some(sub)) if !sub.end_sent && sub.paused_until.is_none() && room => {
				Some((sub.stream, sub.next.unwrap_or(0)))
			}
			State::P2p(Some((stream, true))) if !self.p2p_feed.1 && room => {
				Some((*stream, self.p2p_feed.0.unwrap_or(0)))
			}
			_ => None,
		}
	}

	/// P2P mode: queues the header of every segment in `lookup` not sent yet (starting
	/// `p2p_header_backlog` segments behind the live edge at the first call), each followed by
	/// the chunks `seeded` says the node pushes to this viewer (the rotation of
	/// [`crate::p2p::seeding::SeedRotation`], decided by the caller per stream), and `End` once
	/// the stream ended. Headers are never skipped for a slow reader: the send queue limit
	/// stops the lookup instead, and segments that left the window meanwhile are skipped.
	pub fn handle_p2p_segments(
		&mut self,
		_now: Instant,
		lookup: Lookup,
		seeded: impl Fn(&Segment) -> Vec<u32>,
	) {
		if !matches!(self.state, State::P2p(Some((_, true)))) || self.p2p_feed.1 {
			return;
		}
		let backlog = self.config.p2p_header_backlog;
		let mut next = self.p2p_feed.0.unwrap_or_else(|| {
			let start = lookup.next_sequence.saturating_sub(backlog);
			lookup.oldest.map_or(start, |o| start.max(o))
		});
		for seg in &lookup.segments {
			if seg.sequence() < next {
				continue;
			}
			if self.queued_bytes >= self.config.max_send_queue_bytes {
				break;
			}
			next = seg.sequence() + 1;
			self.stats.segments_sent += 1;
			self.stats.bytes_sent += seg.frames[0].len() as u64;
			self.stats.p2p_media_due += (seg.wire_len() - seg.frames[0].len()) as u64;
			self.send(seg.frames[0].clone());
			for index in seeded(seg) {
				if let Some(frame) = seg.frames.get(1 + index as usize) {
					self.stats.bytes_sent += frame.len() as u64;
					self.stats.p2p_chunk_bytes += frame.len() as u64;
					self.send(frame.clone());
				}
			}
		}
		self.p2p_feed.0 = Some(next);
		if let Some((_, end_frame)) = lookup.ended {
			if lookup.newest.is_none_or(|newest| next > newest) {
				self.p2p_feed.1 = true;
				self.send(end_frame);
			}
		}
	}

	/// Queues what `lookup` holds for the subscription (on demand: paced, see
	/// [`SessionConfig::on_demand_lead`]).
	pub fn handle_segments(&mut self, now: Instant, lookup: Lookup) {
		let State::Viewer(Some(sub)) = &mut self.state else { return };
		let next = match sub.next {
			Some(n) => {
				if lookup.oldest.is_some_and(|o| o > n) && !lookup.segments.is_empty() {
					// The window moved past what this viewer still had to receive.
					let oldest = lookup.oldest.unwrap_or_default();
					return self.close(
						ErrorCode::SlowConsumer,
						format!("lagged: needs segment {n}, oldest held is {oldest}"),
					);
				}
				n
			}
			None => match sub.start {
				Start::At(n) => n,
				Start::Live { .. } if lookup.on_demand => lookup.oldest.unwrap_or_default(),
				Start::Live { back } => match lookup.oldest {
					Some(oldest) => {
						lookup.next_sequence.saturating_sub(1 + back as u64).max(oldest)
					}
					None => lookup.next_sequence,
				},
			},
		};
		sub.next = Some(next);
		let mut frames = Vec::new();
		for seg in lookup.segments.iter().filter(|s| s.sequence() >= next) {
			if self.queued_bytes + frames.iter().map(Bytes::len).sum::<usize>()
				>= self.config.max_send_queue_bytes
			{
				break;
			}
			if lookup.on_demand {
				let (started, queued) = sub.on_demand_clock.get_or_insert((now, Duration::ZERO));
				let ahead = queued.saturating_sub(now.saturating_duration_since(*started));
				if ahead > self.config.on_demand_lead {
					sub.paused_until = Some(now + (ahead - self.config.on_demand_lead));
					break;
				}
				*queued += Duration::from_millis(seg.duration_ms() as u64);
			}
			sub.next = Some(seg.sequence() + 1);
			self.stats.segments_sent += 1;
			self.stats.bytes_sent += seg.wire_len() as u64;
			frames.extend(seg.frames.iter().cloned());
		}
		let mut end = None;
		if let Some((_, end_frame)) = lookup.ended {
			// Everything held has been queued: nothing more will come.
			if lookup.newest.is_none_or(|newest| sub.next.is_some_and(|n| n > newest)) {
				sub.end_sent = true;
				end = Some(end_frame);
			}
		}
		for f in frames {
			self.send(f);
		}
		if let Some(end_frame) = end {
			self.send(end_frame);
		}
	}

	/// The next frame to send.
	pub fn poll_transmit(&mut self) -> Option<Bytes> {
		let f = self.queue.pop_front()?;
		self.queued_bytes -= f.len();
		Some(f)
	}

	/// Whether a frame waits to be sent.
	pub fn has_transmit(&self) -> bool {
		!self.queue.is_empty()
	}

	/// The next thing the driver must act on.
	pub fn poll_event(&mut self) -> Option<SessionEvent> {
		self.events.pop_front()
	}

	/// When [`Self::handle_timeout`] must be called next.
	pub fn poll_timeout(&self) -> Option<Instant> {
		match &self.state {
			State::AwaitHello { deadline } => Some(*deadline),
			State::Closed => None,
			State::Viewer(Some(Subscription { paused_until: Some(at), .. })) => {
				Some((*at).min(self.last_recv + self.config.idle_timeout))
			}
			_ => Some(self.last_recv + self.config.idle_timeout),
		}
	}

	/// Time passed.
	pub fn handle_timeout(&mut self, now: Instant) {
		if let State::Viewer(Some(sub)) = &mut self.state {
			if sub.paused_until.is_some_and(|at| now >= at) {
				sub.paused_until = None;
			}
		}
		match self.state {
			State::AwaitHello { deadline } if now >= deadline => {
				self.close(ErrorCode::IdleTimeout, "no hello within hello_timeout")
			}
			State::Closed | State::AwaitHello { .. } => {}
			_ if now >= self.last_recv + self.config.idle_timeout => {
				self.close(ErrorCode::IdleTimeout, "nothing received within idle_timeout")
			}
			_ => {}
		}
	}
}

fn state_name(state: &State) -> &'static str {
	match state {
		State::AwaitHello { .. } => "before hello",
		State::AwaitAdmission => "while awaiting admission",
		State::Viewer(None) => "before subscribe",
		State::Viewer(Some(Subscription { switched: true, .. })) => "after switched",
		State::Viewer(Some(_)) => "after subscribe",
		State::P2p(None) => "before join",
		State::P2p(Some((_, false))) => "while joining",
		State::P2p(Some((_, true))) => "after join",
		State::Publisher(None) => "before publish",
		State::Publisher(Some(_)) => "while publishing",
		State::Closed => "after close",
	}
}

/// The whole frame (length prefix + body) for a body that the decoder split off its prefix.
/// Copies the body once per received frame; viewers then share this one copy.
fn prefixed(body: &Bytes) -> Bytes {
	let mut v = Vec::with_capacity(4 + body.len());
	v.extend_from_slice(&(body.len() as u32).to_le_bytes());
	v.extend_from_slice(body);
	Bytes::from(v)
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::protocol::{FrameDecoder, LENGTH_PREFIX};
	use sp_core::Pair;

	fn origin() -> sp_core::sr25519::Pair {
		sp_core::sr25519::Pair::from_string("//Origin", None).unwrap()
	}

	fn config() -> SessionConfig {
		let keys = OriginKeys { default: Some(origin().public()), ..Default::default() };
		SessionConfig { origin_keys: Arc::new(keys), ..Default::default() }
	}

	fn body(m: &Message) -> Bytes {
		encode_frame(m).slice(LENGTH_PREFIX..)
	}

	fn sent(s: &mut ServerSession) -> Vec<Message> {
		let mut dec = FrameDecoder::new(u32::MAX);
		while let Some(f) = s.poll_transmit() {
			dec.push(&f);
		}
		std::iter::from_fn(|| dec.next_message().unwrap()).collect()
	}

	fn hello(role: Role) -> Message {
		Message::Hello { version: PROTOCOL_VERSION, role, genesis_hash: [0; 32] }
	}

	fn seg(seq: u64) -> Arc<Segment> {
		Arc::new(Segment::build(
			&origin(),
			[0; 32],
			1,
			seq,
			2000,
			Bytes::from(vec![seq as u8; 1000]),
			512,
		))
	}

	fn end(next_sequence: u64) -> Signed<StreamEnd> {
		Signed::sign(StreamEnd { genesis_hash: [0; 32], stream: 1, next_sequence }, &origin())
	}

	fn viewer(now: Instant, start: Start) -> ServerSession {
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Viewer)));
		assert!(matches!(s.poll_event(), Some(SessionEvent::AdmissionRequest)));
		s.handle_admission(now, Ok(AdmissionMode::Direct));
		s.handle_frame(now, body(&Message::Subscribe { stream: 1, start }));
		assert!(matches!(s.poll_event(), Some(SessionEvent::Subscribed(1))));
		assert!(matches!(sent(&mut s)[..], [Message::Welcome { .. }]));
		s
	}

	fn closed_with(s: &mut ServerSession) -> ErrorCode {
		assert!(s.is_closed());
		match sent(&mut s.clone_queue()).last() {
			Some(Message::Error { code, .. }) => *code,
			other => panic!("no error frame: {other:?}"),
		}
	}

	impl ServerSession {
		fn clone_queue(&self) -> ServerSession {
			ServerSession {
				config: self.config.clone(),
				state: State::Closed,
				last_recv: self.last_recv,
				queue: self.queue.clone(),
				queued_bytes: self.queued_bytes,
				events: VecDeque::new(),
				stats: self.stats,
				publisher: self.publisher,
				p2p_feed: self.p2p_feed,
			}
		}
	}

	#[test]
	fn viewer_gets_live_segments_in_order_then_end() {
		let now = Instant::now();
		let mut window = LiveWindow::new(WindowConfig::default());
		for i in 0..5 {
			window.insert(seg(i));
		}
		let mut s = viewer(now, Start::Live { back: 1 });
		let (stream, from) = s.wants_segments().unwrap();
		assert_eq!((stream, from), (1, 0));
		s.handle_segments(now, window.lookup(from, 8));
		let msgs = sent(&mut s);
		let seqs: Vec<u64> = msgs
			.iter()
			.filter_map(
				|m| if let Message::Header(h) = m { Some(h.payload.sequence) } else { None },
			)
			.collect();
		assert_eq!(seqs, vec![3, 4]);
		assert_eq!(s.wants_segments(), Some((1, 5)));
		window.insert(seg(5));
		let the_end = end(6);
		window.end(the_end.clone());
		s.handle_segments(now, window.lookup(5, 8));
		let msgs = sent(&mut s);
		// Forwarded exactly as the origin signed it (sr25519 signatures are randomised).
		assert_eq!(msgs.last(), Some(&Message::End(the_end)));
		assert_eq!(s.wants_segments(), None);
	}

	#[test]
	fn viewer_starting_at_a_sequence_gets_the_oldest_held_if_it_is_gone() {
		let now = Instant::now();
		let mut window = LiveWindow::new(WindowConfig { max_segments: 3, max_bytes: usize::MAX });
		for i in 0..10 {
			window.insert(seg(i));
		}
		let mut s = viewer(now, Start::At(2));
		s.handle_segments(now, window.lookup(0, 8));
		assert_eq!(s.wants_segments(), Some((1, 10)));
	}

	#[test]
	fn lagging_viewer_is_closed_as_slow_consumer() {
		let now = Instant::now();
		let mut window = LiveWindow::new(WindowConfig { max_segments: 2, max_bytes: usize::MAX });
		let mut s = viewer(now, Start::At(0));
		s.handle_segments(now, window.lookup(0, 8));
		for i in 0..5 {
			window.insert(seg(i));
		}
		s.handle_segments(now, window.lookup(0, 8));
		assert_eq!(closed_with(&mut s), ErrorCode::SlowConsumer);
	}

	#[test]
	fn a_peer_that_pings_and_never_reads_is_closed() {
		let now = Instant::now();
		let mut cfg = config();
		cfg.max_send_queue_bytes = 1000;
		let mut s = ServerSession::new(now, cfg);
		s.handle_frame(now, body(&hello(Role::Viewer)));
		s.handle_admission(now, Ok(AdmissionMode::Direct));
		// Nobody calls poll_transmit: the pongs pile up until the limit closes the session.
		for n in 0..10_000u64 {
			s.handle_frame(now, body(&Message::Ping(n)));
			if s.is_closed() {
				break;
			}
		}
		assert!(s.is_closed(), "session still open after 10 000 unread pings");
		assert_eq!(closed_with(&mut s), ErrorCode::SlowConsumer);
	}

	#[test]
	fn send_queue_limit_stops_taking_segments() {
		let now = Instant::now();
		let mut window = LiveWindow::new(WindowConfig::default());
		for i in 0..10 {
			window.insert(seg(i));
		}
		let mut cfg = config();
		cfg.max_send_queue_bytes = 2500;
		let mut s = ServerSession::new(now, cfg);
		s.handle_frame(now, body(&hello(Role::Viewer)));
		s.handle_admission(now, Ok(AdmissionMode::Direct));
		s.handle_frame(now, body(&Message::Subscribe { stream: 1, start: Start::At(0) }));
		s.handle_segments(now, window.lookup(0, 10));
		assert_eq!(s.stats().segments_sent, 2);
		assert_eq!(s.wants_segments(), None);
		sent(&mut s);
		assert_eq!(s.wants_segments(), Some((1, 2)));
	}

	#[test]
	fn publisher_segments_are_verified_stored_and_acked() {
		let now = Instant::now();
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&Message::Publish { stream: 1 }));
		let segment = seg(7);
		for f in &segment.frames {
			s.handle_frame(now, f.slice(LENGTH_PREFIX..));
		}
		let the_end = end(8);
		s.handle_frame(now, body(&Message::End(the_end.clone())));
		let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
		assert!(matches!(events[0], SessionEvent::Publishing(1)));
		let SessionEvent::SegmentReceived(got) = &events[1] else { panic!("{events:?}") };
		assert_eq!(got.frames, segment.frames);
		assert!(matches!(&events[2], SessionEvent::End(e) if *e == the_end), "{events:?}");
		let msgs = sent(&mut s);
		assert!(matches!(msgs[1], Message::Ack { stream: 1, sequence: 7 }));
		assert_eq!(msgs[2], Message::End(the_end));
	}

	#[test]
	fn an_end_not_signed_by_the_origin_is_refused_and_closes_the_publisher() {
		let now = Instant::now();
		let mut window = LiveWindow::new(WindowConfig::default());
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&Message::Publish { stream: 1 }));
		// Anybody can say `Publish`; only the origin's key can end the stream.
		let forged = Signed::sign(
			end(3).payload,
			&sp_core::sr25519::Pair::from_string("//Eve", None).unwrap(),
		);
		s.handle_frame(now, body(&Message::End(forged)));
		let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
		assert!(!events.iter().any(|e| matches!(e, SessionEvent::End(_))), "{events:?}");
		assert_eq!(closed_with(&mut s), ErrorCode::BadSignature);
		// An end for another chain does not pass either.
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&Message::Publish { stream: 1 }));
		let mut other_chain = end(3).payload;
		other_chain.genesis_hash = [9; 32];
		s.handle_frame(now, body(&Message::End(Signed::sign(other_chain, &origin()))));
		assert!(s.is_closed());
		assert!(window.lookup(0, 1).ended.is_none());
		window.end(end(3));
		assert!(window.lookup(0, 1).ended.is_some());
	}

	#[test]
	fn publisher_with_bad_signature_is_closed() {
		let now = Instant::now();
		let mallory = sp_core::sr25519::Pair::from_string("//Mallory", None).unwrap();
		let bad = Segment::build(&mallory, [0; 32], 1, 0, 2000, Bytes::from_static(b"x"), 512);
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&Message::Publish { stream: 1 }));
		s.handle_frame(now, bad.frames[0].slice(LENGTH_PREFIX..));
		assert_eq!(closed_with(&mut s), ErrorCode::BadSignature);
	}

	#[test]
	fn publishing_a_stream_without_an_origin_key_is_refused() {
		let now = Instant::now();
		let mut s = ServerSession::new(now, SessionConfig::default());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&Message::Publish { stream: 1 }));
		assert_eq!(closed_with(&mut s), ErrorCode::UnknownStream);
	}

	#[test]
	fn protocol_violations_close_with_a_clear_code() {
		let now = Instant::now();
		let cases: Vec<(Vec<Message>, ErrorCode)> = vec![
			(
				vec![Message::Ping(1), Message::Subscribe { stream: 1, start: Start::At(0) }],
				ErrorCode::UnexpectedMessage,
			),
			(
				vec![Message::Hello { version: 99, role: Role::Viewer, genesis_hash: [0; 32] }],
				ErrorCode::UnsupportedVersion,
			),
			(
				vec![Message::Hello {
					version: PROTOCOL_VERSION,
					role: Role::Viewer,
					genesis_hash: [9; 32],
				}],
				ErrorCode::WrongGenesis,
			),
			(
				vec![hello(Role::Publisher), Message::Subscribe { stream: 1, start: Start::At(0) }],
				ErrorCode::UnexpectedMessage,
			),
			(
				vec![
					hello(Role::Publisher),
					Message::Publish { stream: 1 },
					Message::Ack { stream: 1, sequence: 0 },
				],
				ErrorCode::UnexpectedMessage,
			),
		];
		for (msgs, code) in cases {
			let mut s = ServerSession::new(now, config());
			for m in &msgs {
				s.handle_frame(now, body(m));
			}
			assert_eq!(closed_with(&mut s), code, "{msgs:?}");
		}
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, Bytes::from_static(&[42, 1, 2]));
		assert_eq!(closed_with(&mut s), ErrorCode::UnknownMessage);
		let mut s = ServerSession::new(now, config());
		s.handle_read_error(now, FrameError::TooLarge { len: 10, max: 1 });
		assert_eq!(closed_with(&mut s), ErrorCode::FrameTooLarge);
	}

	#[test]
	fn silent_clients_time_out() {
		let now = Instant::now();
		let mut s = ServerSession::new(now, config());
		assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
		s.handle_timeout(now + Duration::from_secs(4));
		assert!(!s.is_closed());
		s.handle_timeout(now + Duration::from_secs(5));
		assert_eq!(closed_with(&mut s), ErrorCode::IdleTimeout);

		let mut s = viewer(now, Start::At(0));
		let later = now + Duration::from_secs(20);
		s.handle_frame(later, body(&Message::Ping(3)));
		assert!(matches!(sent(&mut s)[..], [Message::Pong(3)]));
		s.handle_timeout(now + Duration::from_secs(31));
		assert!(!s.is_closed());
		s.handle_timeout(later + Duration::from_secs(30));
		assert_eq!(closed_with(&mut s), ErrorCode::IdleTimeout);
	}

	#[test]
	fn origin_keys_fall_back_to_the_directory_and_follow_its_changes() {
		#[derive(Debug, Default)]
		struct Registry(std::sync::Mutex<HashMap<StreamId, PublicKey>>);
		impl StreamDirectory for Registry {
			fn origin_key(&self, stream: StreamId) -> Option<PublicKey> {
				self.0.lock().unwrap().get(&stream).copied()
			}
		}
		let registry = Arc::new(Registry::default());
		let fixed = sp_core::sr25519::Pair::from_string("//Fixed", None).unwrap().public();
		let keys = OriginKeys {
			per_stream: HashMap::from([(1, fixed)]),
			directory: Some(registry.clone()),
			..Default::default()
		};
		assert_eq!(keys.get(2), None);
		registry.0.lock().unwrap().insert(2, origin().public());
		assert_eq!(keys.get(2), Some(origin().public()), "a stream registered later is found");
		registry.0.lock().unwrap().insert(1, origin().public());
		assert_eq!(keys.get(1), Some(fixed), "fixed keys win over the directory");
		registry.0.lock().unwrap().remove(&2);
		assert_eq!(keys.get(2), None, "a closed stream is refused again");
	}

	#[test]
	fn admission_applies_the_capacity_rule_and_refuses_p2p() {
		use dsp_primitives::Perbill;
		let mut a = Admission::new(CapacitySettings {
			max_streams: 4,
			streaming_rate: Perbill::from_percent(50),
		});
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.try_admit(), Err(ErrorCode::Full));
		a.release(AdmissionMode::Direct);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		a.set_settings(CapacitySettings { max_streams: 4, streaming_rate: Perbill::zero() });
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.stats(), AdmissionStats { direct: 3, p2p: 0, refused: 1 });
	}

	fn p2p_viewer(now: Instant) -> ServerSession {
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Viewer)));
		assert!(matches!(s.poll_event(), Some(SessionEvent::AdmissionRequest)));
		s.handle_admission(now, Ok(AdmissionMode::P2p));
		assert!(matches!(sent(&mut s)[..], [Message::Welcome { mode: AdmissionMode::P2p, .. }]));
		assert!(s.is_p2p() && s.is_viewer());
		s
	}

	fn peer_info(n: u8) -> PeerInfo {
		PeerInfo { peer_id: vec![n; 38], addrs: vec![vec![n; 10]] }
	}

	fn join(n: u8) -> Message {
		Message::Join { stream: 1, viewer: PublicKey::from_raw([n; 32]), peer: peer_info(n) }
	}

	fn pass() -> Signed<ViewerPass> {
		let p = ViewerPass {
			genesis_hash: [0; 32],
			stream: 1,
			epoch: 0,
			viewer: PublicKey::from_raw([1; 32]),
			max_units: 5,
			issuer: origin().public(),
		};
		Signed::sign(p, &origin())
	}

	#[test]
	fn p2p_viewer_joins_and_fetches_urgent_chunks() {
		let now = Instant::now();
		let mut s = p2p_viewer(now);
		s.handle_frame(now, body(&join(1)));
		match s.poll_event() {
			Some(SessionEvent::JoinRequest { stream: 1, viewer, peer }) => {
				assert_eq!((viewer, peer), (PublicKey::from_raw([1; 32]), peer_info(1)));
			}
			other => panic!("{other:?}"),
		}
		let pass = pass();
		s.handle_joined(now, Ok((pass.clone(), vec![peer_info(2)])));
		assert_eq!(sent(&mut s), vec![Message::Joined { pass, peers: vec![peer_info(2)] }]);

		s.handle_frame(now, body(&Message::Fetch { stream: 1, sequence: 3, index: 1 }));
		assert!(matches!(
			s.poll_event(),
			Some(SessionEvent::FetchRequest { stream: 1, sequence: 3, index: 1 })
		));
		let segment = seg(3);
		s.handle_fetch(now, 3, 1, Some(segment.clone()));
		let msgs = sent(&mut s);
		assert!(matches!(&msgs[..], [Message::Header(h), Message::Chunk(c)]
			if h == &segment.header && c.index == 1 && c.data == segment.chunks[1]));
		s.handle_fetch(now, 4, 0, None);
		s.handle_fetch(now, 3, 9, Some(segment));
		assert_eq!(
			sent(&mut s),
			vec![
				Message::NotHeld { stream: 1, sequence: 4, index: 0 },
				Message::NotHeld { stream: 1, sequence: 3, index: 9 }
			]
		);
		// A fetch for another stream than the joined one closes the session.
		s.handle_frame(now, body(&Message::Fetch { stream: 2, sequence: 0, index: 0 }));
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
	}

	#[test]
	fn p2p_viewer_gets_every_header_from_the_backlog_its_seeded_chunks_and_the_end() {
		let now = Instant::now();
		let mut s = p2p_viewer(now);
		// No feed before Joined.
		assert_eq!(s.wants_segments(), None);
		s.handle_frame(now, body(&join(1)));
		let _ = s.poll_event();
		s.handle_joined(now, Ok((pass(), vec![])));
		let _ = sent(&mut s);
		let mut window = LiveWindow::new(WindowConfig::default());
		for i in 0..12 {
			window.insert(seg(i));
		}
		let (stream, from) = s.wants_segments().expect("joined sessions take the feed");
		assert_eq!(stream, 1);
		// Seeds: chunk 0 of even segments.
		let seeded =
			|seg: &Segment| if seg.sequence().is_multiple_of(2) { vec![0] } else { vec![] };
		s.handle_p2p_segments(now, window.lookup(from, 100), seeded);
		let msgs = sent(&mut s);
		// The last `p2p_header_backlog` (8) segments: headers, and the seeded chunks after them.
		let headers: Vec<u64> = msgs
			.iter()
			.filter_map(
				|m| if let Message::Header(h) = m { Some(h.payload.sequence) } else { None },
			)
			.collect();
		assert_eq!(headers, (4..12).collect::<Vec<_>>());
		let chunks: Vec<(u64, u32)> = msgs
			.iter()
			.filter_map(
				|m| if let Message::Chunk(c) = m { Some((c.sequence, c.index)) } else { None },
			)
			.collect();
		assert_eq!(chunks, vec![(4, 0), (6, 0), (8, 0), (10, 0)]);
		// Only new segments later, then the end once everything was sent.
		window.insert(seg(12));
		window.end(end(13));
		let (_, from) = s.wants_segments().unwrap();
		assert_eq!(from, 12);
		s.handle_p2p_segments(now, window.lookup(from, 100), seeded);
		let msgs = sent(&mut s);
		assert!(matches!(&msgs[..], [Message::Header(h), Message::Chunk(c), Message::End(e)]
			if h.payload.sequence == 12 && c.sequence == 12 && e.payload.next_sequence == 13));
		assert_eq!(s.wants_segments(), None);
		// Direct-mode feeding does nothing to a P2P session.
		s.handle_segments(now, window.lookup(0, 100));
		assert!(sent(&mut s).is_empty());
	}

	#[test]
	fn p2p_messages_out_of_place_or_over_limits_close_the_session() {
		let now = Instant::now();
		// Fetch before Join; Subscribe in P2P mode; Join from a direct viewer.
		let mut s = p2p_viewer(now);
		s.handle_frame(now, body(&Message::Fetch { stream: 1, sequence: 0, index: 0 }));
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
		let mut s = p2p_viewer(now);
		s.handle_frame(now, body(&Message::Subscribe { stream: 1, start: Start::At(0) }));
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
		let mut s = viewer(now, Start::At(0));
		s.handle_frame(now, body(&join(1)));
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
		// Fetch while the join is still being answered.
		let mut s = p2p_viewer(now);
		s.handle_frame(now, body(&join(1)));
		s.handle_frame(now, body(&Message::Fetch { stream: 1, sequence: 0, index: 0 }));
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
		// A peer id past its limit.
		let mut s = p2p_viewer(now);
		let big = Message::Join {
			stream: 1,
			viewer: PublicKey::from_raw([1; 32]),
			peer: PeerInfo { peer_id: vec![0; 65], addrs: vec![] },
		};
		s.handle_frame(now, body(&big));
		assert_eq!(closed_with(&mut s), ErrorCode::Malformed);
		// The tracker refused.
		let mut s = p2p_viewer(now);
		s.handle_frame(now, body(&join(1)));
		s.handle_joined(now, Err((ErrorCode::UnknownStream, "too many swarms".into())));
		assert_eq!(closed_with(&mut s), ErrorCode::UnknownStream);
	}

	#[test]
	fn admission_with_p2p_admits_beyond_the_threshold_and_counts_per_mode() {
		use dsp_primitives::Perbill;
		let settings =
			CapacitySettings { max_streams: 2, streaming_rate: Perbill::from_percent(50) };
		let mut a = Admission::new(settings).with_p2p(true);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
		assert_eq!(a.stats(), AdmissionStats { direct: 1, p2p: 2, refused: 0 });
		a.release(AdmissionMode::P2p);
		a.release(AdmissionMode::Direct);
		assert_eq!(a.stats(), AdmissionStats { direct: 0, p2p: 1, refused: 0 });
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
	}

	/// Admits until refused (at most `limit` tries); the modes admitted, in order.
	fn admit_all(a: &mut Admission, limit: usize) -> Vec<AdmissionMode> {
		std::iter::from_fn(|| a.try_admit().ok()).take(limit).collect()
	}

	#[test]
	fn admission_follows_the_specification_table() {
		use dsp_primitives::Perbill;
		let settings = |rate| CapacitySettings { max_streams: 2000, streaming_rate: rate };
		let count = |modes: &[AdmissionMode], m| modes.iter().filter(|x| **x == m).count();
		// r = 0: 2000 direct, then full even though the server can issue passes.
		let mut a = Admission::new(settings(Perbill::zero())).with_p2p(true);
		let modes = admit_all(&mut a, 5000);
		assert_eq!((count(&modes, AdmissionMode::Direct), modes.len()), (2000, 2000));
		assert_eq!(a.try_admit(), Err(ErrorCode::Full));
		// r = 0.5: 1000 direct, then P2P up to the P2P cap.
		let mut a = Admission::new(settings(Perbill::from_percent(50)))
			.with_p2p(true)
			.with_max_p2p_sessions(3000);
		let modes = admit_all(&mut a, 5000);
		assert!(modes[..1000].iter().all(|m| *m == AdmissionMode::Direct));
		assert_eq!(count(&modes, AdmissionMode::P2p), 3000);
		// r = 1: every viewer in P2P mode.
		let mut a = Admission::new(settings(Perbill::one())).with_p2p(true);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
		assert_eq!(a.stats(), AdmissionStats { direct: 0, p2p: 1, refused: 0 });
	}

	#[test]
	fn r_zero_at_max_streams_is_full_even_with_p2p() {
		use dsp_primitives::Perbill;
		let mut a =
			Admission::new(CapacitySettings { max_streams: 1, streaming_rate: Perbill::zero() })
				.with_p2p(true);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::Direct));
		assert_eq!(a.try_admit(), Err(ErrorCode::Full));
		assert_eq!(a.stats(), AdmissionStats { direct: 1, p2p: 0, refused: 1 });
		// Once r > 0 the same viewer would be admitted in P2P mode.
		a.set_settings(CapacitySettings { max_streams: 1, streaming_rate: Perbill::one() });
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
	}

	#[test]
	fn p2p_admissions_stop_at_the_p2p_cap() {
		use dsp_primitives::Perbill;
		let mut a =
			Admission::new(CapacitySettings { max_streams: 1, streaming_rate: Perbill::one() })
				.with_p2p(true)
				.with_max_p2p_sessions(2);
		assert_eq!(admit_all(&mut a, 10), vec![AdmissionMode::P2p, AdmissionMode::P2p]);
		assert_eq!(a.try_admit(), Err(ErrorCode::Full));
		a.release(AdmissionMode::P2p);
		assert_eq!(a.try_admit(), Ok(AdmissionMode::P2p));
		// `admit_all` stopped at a refusal too.
		assert_eq!(a.stats(), AdmissionStats { direct: 0, p2p: 2, refused: 2 });
	}

	fn streamer(n: u8) -> ServerAddrs {
		ServerAddrs { tcp: Some(format!("10.0.0.{n}:7700")), quic: None }
	}

	#[test]
	fn redirects_rotate_over_the_other_streamers() {
		let mut r = RedirectList::default();
		assert!(r.next_redirect().is_empty());
		let bad = ServerAddrs { tcp: Some("x".repeat(200)), quic: None };
		assert_eq!(r.set(vec![streamer(1), bad.clone(), streamer(2), streamer(3)]), vec![bad]);
		assert_eq!(r.len(), 3);
		let firsts: Vec<ServerAddrs> = (0..4).map(|_| r.next_redirect()[0].clone()).collect();
		assert_eq!(firsts, vec![streamer(1), streamer(2), streamer(3), streamer(1)]);
		assert_eq!(r.next_redirect(), vec![streamer(2), streamer(3), streamer(1)]);
		// A new list (as every block brings) continues the rotation rather than restarting it;
		// at most MAX_REDIRECT_SERVERS per refusal, still rotating over all of them.
		r.set((1..=10).map(streamer).collect());
		let first = r.next_redirect();
		assert_eq!(first.len(), MAX_REDIRECT_SERVERS);
		assert_eq!(first[0], streamer(3));
		assert_eq!(first[7], streamer(10));
		assert_eq!(r.next_redirect()[0], streamer(4));
	}

	#[test]
	fn refused_viewer_gets_the_redirect_then_full() {
		let now = Instant::now();
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Viewer)));
		assert!(matches!(s.poll_event(), Some(SessionEvent::AdmissionRequest)));
		let servers: Vec<ServerAddrs> = (1..=12).map(streamer).collect();
		s.handle_admission_or_redirect(now, Err(ErrorCode::Full), servers.clone());
		assert!(s.is_closed());
		let msgs = sent(&mut s);
		assert_eq!(msgs.len(), 2, "{msgs:?}");
		assert_eq!(
			msgs[0],
			Message::Redirect { servers: servers[..MAX_REDIRECT_SERVERS].to_vec() }
		);
		assert!(matches!(msgs[1], Message::Error { code: ErrorCode::Full, .. }));
		// Without other streamers: only the error.
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Viewer)));
		s.handle_admission_or_redirect(now, Err(ErrorCode::Full), Vec::new());
		assert!(matches!(sent(&mut s)[..], [Message::Error { code: ErrorCode::Full, .. }]));
		// An admitted viewer gets no redirect.
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Viewer)));
		s.handle_admission_or_redirect(now, Ok(AdmissionMode::Direct), servers);
		assert!(matches!(sent(&mut s)[..], [Message::Welcome { .. }]));
	}

	#[test]
	fn switched_after_subscribe_is_reported_once() {
		let now = Instant::now();
		let mut s = viewer(now, Start::At(0));
		s.handle_frame(now, body(&Message::Switched { from: Transport::Quic }));
		assert!(matches!(s.poll_event(), Some(SessionEvent::Switched { from: Transport::Quic })));
		assert!(!s.is_closed());
		// Pings go on as usual; a second Switched is out of place.
		s.handle_frame(now, body(&Message::Ping(1)));
		assert_eq!(sent(&mut s), vec![Message::Pong(1)]);
		s.handle_frame(now, body(&Message::Switched { from: Transport::Tcp }));
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
	}

	#[test]
	fn switched_in_any_other_state_is_unexpected() {
		let now = Instant::now();
		let switched = body(&Message::Switched { from: Transport::Tcp });
		// Before Hello.
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, switched.clone());
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
		// Before Subscribe.
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Viewer)));
		s.handle_admission(now, Ok(AdmissionMode::Direct));
		s.handle_frame(now, switched.clone());
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
		// From a publisher, and in P2P mode.
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&Message::Publish { stream: 1 }));
		s.handle_frame(now, switched.clone());
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
		let mut s = p2p_viewer(now);
		s.handle_frame(now, switched);
		assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
		assert!(
			!std::iter::from_fn(|| s.poll_event())
				.any(|e| matches!(e, SessionEvent::Switched { .. })),
			"nothing counted"
		);
	}

	#[test]
	fn window_is_bounded_and_append_only() {
		let mut w = LiveWindow::new(WindowConfig { max_segments: 3, max_bytes: 2500 });
		assert_eq!(w.insert(seg(0)), Inserted::Stored);
		assert_eq!(w.insert(seg(0)), Inserted::Duplicate);
		for i in 1..5 {
			w.insert(seg(i));
		}
		// 1000 bytes each, max 2500: two held.
		assert_eq!(w.usage(), (2, 2000));
		assert_eq!(w.lookup(0, 10).oldest, Some(3));
		assert_eq!(w.insert(seg(2)), Inserted::Duplicate);
	}

	fn table(max_streams: usize, max_waiting: usize) -> StreamTable<u32> {
		StreamTable::new(StreamTableConfig {
			max_streams,
			max_waiting,
			idle_timeout: Duration::from_secs(100),
			ended_linger: Duration::from_secs(10),
		})
	}

	#[test]
	fn stream_slots_are_bounded_and_waiting_ones_more_so() {
		let now = Instant::now();
		let mut t = table(4, 2);
		assert_eq!(t.open(now, 1, Role::Viewer, || 1), Ok(1));
		assert_eq!(t.open(now, 2, Role::Viewer, || 2), Ok(2));
		// Two streams waited for: a third is refused.
		assert_eq!(t.open(now, 3, Role::Viewer, || 3), Err(ErrorCode::UnknownStream));
		// An open stream is found again, not made twice, whoever asks.
		assert_eq!(t.open(now, 1, Role::Publisher, || 99), Ok(1));
		t.handle_segment(now, 1);
		assert_eq!(t.open(now, 3, Role::Viewer, || 3), Ok(3));
		assert_eq!(t.usage(), (3, 2));
		// Viewers waiting for nothing do not lock a publisher out.
		assert_eq!(t.open(now, 4, Role::Publisher, || 4), Ok(4));
		t.handle_segment(now, 2);
		assert_eq!(
			t.open(now, 5, Role::Publisher, || 5),
			Err(ErrorCode::UnknownStream),
			"max_streams"
		);
	}

	#[test]
	fn ended_and_idle_streams_are_freed() {
		let t0 = Instant::now();
		let s = Duration::from_secs;
		let mut t = table(8, 8);
		for id in 1..=3 {
			t.open(t0, id, Role::Publisher, || id as u32).unwrap();
			t.handle_segment(t0, id);
		}
		t.handle_end(t0 + s(5), 1);
		// Stream 2 keeps getting segments; stream 3 has no publisher any more.
		for i in 1..=20 {
			t.handle_segment(t0 + s(i * 10), 2);
		}
		assert_eq!(t.poll_timeout(), Some(t0 + s(15)));
		t.handle_timeout(t0 + s(14));
		assert_eq!(t.poll_freed(), None);
		t.handle_timeout(t0 + s(15));
		assert_eq!(t.poll_freed(), Some((1, 1)));
		t.handle_timeout(t0 + s(100));
		assert_eq!(t.poll_freed(), Some((3, 3)));
		assert_eq!(t.poll_freed(), None);
		assert_eq!(t.get(2), Some(2));
		// A stream that restarts after its end is not freed at the old end's linger.
		t.handle_end(t0 + s(200), 2);
		t.handle_segment(t0 + s(201), 2);
		t.handle_timeout(t0 + s(211));
		assert_eq!(t.get(2), Some(2));
	}

	#[test]
	fn a_full_table_frees_expired_streams_before_refusing() {
		let t0 = Instant::now();
		let mut t = table(1, 1);
		t.open(t0, 1, Role::Viewer, || 1).unwrap();
		assert_eq!(t.open(t0, 2, Role::Viewer, || 2), Err(ErrorCode::UnknownStream));
		// Nothing stored for the idle timeout: the slot goes to the next stream.
		assert_eq!(t.open(t0 + Duration::from_secs(100), 2, Role::Viewer, || 2), Ok(2));
		assert_eq!(t.poll_freed(), Some((1, 1)));
	}

	#[test]
	fn subscribing_to_a_stream_without_origin_key_is_refused() {
		let now = Instant::now();
		let mut s = ServerSession::new(now, SessionConfig::default());
		s.handle_frame(now, body(&hello(Role::Viewer)));
		s.handle_admission(now, Ok(AdmissionMode::Direct));
		s.handle_frame(now, body(&Message::Subscribe { stream: 1, start: Start::At(0) }));
		assert!(!std::iter::from_fn(|| s.poll_event())
			.any(|e| matches!(e, SessionEvent::Subscribed(_))));
		assert_eq!(closed_with(&mut s), ErrorCode::UnknownStream);
	}

	#[test]
	fn publisher_is_told_where_to_continue() {
		let now = Instant::now();
		let mut window = LiveWindow::new(WindowConfig::default());
		assert_eq!(window.next_sequence(), 0);
		for i in 0..3 {
			window.insert(seg(i));
		}
		assert_eq!(window.next_sequence(), 3);
		window.end(end(5));
		assert_eq!(window.next_sequence(), 5);
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&Message::Publish { stream: 1 }));
		s.handle_publish_ready(now, window.next_sequence());
		let msgs = sent(&mut s);
		assert_eq!(msgs[1], Message::Expect { stream: 1, next_sequence: 5 });
	}

	#[test]
	fn a_refused_publisher_still_gets_the_acks_queued_before_the_error() {
		let now = Instant::now();
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&Message::Publish { stream: 1 }));
		for f in &seg(0).frames {
			s.handle_frame(now, f.slice(LENGTH_PREFIX..));
		}
		let mut bad = seg(1).header.clone();
		bad.payload.duration_ms = 0;
		s.handle_frame(now, body(&Message::Header(bad)));
		let msgs = sent(&mut s);
		assert_eq!(msgs[1], Message::Ack { stream: 1, sequence: 0 });
		assert!(matches!(msgs[2], Message::Error { code: ErrorCode::BadHeader, .. }), "{msgs:?}");
	}

	#[test]
	fn on_demand_live_start_is_the_beginning_of_the_recording() {
		let now = Instant::now();
		let mut window = LiveWindow::new(WindowConfig::default());
		for i in 3..8 {
			window.insert(seg(i));
		}
		let mut s = viewer(now, Start::Live { back: 1 });
		let mut lookup = window.lookup(0, 8);
		lookup.on_demand = true;
		s.handle_segments(now, lookup);
		let first = sent(&mut s).into_iter().find_map(|m| match m {
			Message::Header(h) => Some(h.payload.sequence),
			_ => None,
		});
		assert_eq!(first, Some(3));
	}

	#[test]
	fn on_demand_streams_are_sent_at_most_the_lead_ahead_of_real_time() {
		let t0 = Instant::now();
		let mut window = LiveWindow::new(WindowConfig::default());
		for i in 0..10 {
			window.insert(seg(i));
		}
		let mut cfg = config();
		cfg.on_demand_lead = Duration::from_secs(5);
		let mut s = ServerSession::new(t0, cfg);
		s.handle_frame(t0, body(&hello(Role::Viewer)));
		s.handle_admission(t0, Ok(AdmissionMode::Direct));
		s.handle_frame(t0, body(&Message::Subscribe { stream: 1, start: Start::At(0) }));
		sent(&mut s);
		let feed = |s: &mut ServerSession, now: Instant| {
			while let Some((_, from)) = s.wants_segments() {
				let mut lookup = window.lookup(from, 8);
				if lookup.segments.is_empty() {
					return;
				}
				lookup.on_demand = true;
				s.handle_segments(now, lookup);
				sent(s);
			}
		};
		// 2 s segments, 5 s lead: 0, 1 and 2 at once (6 s queued), 3 once 1 s has passed.
		feed(&mut s, t0);
		assert_eq!(s.stats().segments_sent, 3);
		assert_eq!(s.wants_segments(), None);
		assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(1)));
		s.handle_timeout(t0 + Duration::from_millis(999));
		feed(&mut s, t0 + Duration::from_millis(999));
		assert_eq!(s.stats().segments_sent, 3);
		s.handle_timeout(t0 + Duration::from_secs(1));
		feed(&mut s, t0 + Duration::from_secs(1));
		assert_eq!(s.stats().segments_sent, 4);
		assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(3)));
		// Then one segment per 2 s of play time, to the end and its End.
		let mut now = t0 + Duration::from_secs(1);
		let mut steps = 0;
		while s.stats().segments_sent < 10 {
			now = s.poll_timeout().unwrap();
			s.handle_timeout(now);
			feed(&mut s, now);
			steps += 1;
			assert!(steps < 20, "no progress");
		}
		assert_eq!(now, t0 + Duration::from_secs(13));
	}
}
