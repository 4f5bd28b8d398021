//! [`ServerSession`]: the state machine of one client connection (viewer, P2P viewer or
//! publisher), sans-IO. See the module docs of [`crate::server`] for the call order.

use super::{fetch::FetchGuard, Lookup, OriginKeys};
#[cfg(doc)]
use super::{Admission, LiveWindow, RedirectList, StreamTable};
use crate::{
	clock::{millis, Millis},
	p2p::join::verify_join,
	protocol::{
		decode_body, encode_frame, verify_publish_proof, ErrorCode, FrameError, Message, PeerInfo,
		Role, ServerAddrs, Start, Transport, CHALLENGE_LEN, DEFAULT_MAX_FRAME_LEN,
		MAX_JOINED_PEERS, MAX_REDIRECT_SERVERS, PROTOCOL_VERSION,
	},
	segment::{Assembled, Assembler, Segment, SegmentLimits},
};
use bytes::Bytes;
use dsp_primitives::{AdmissionMode, Hash32, PublicKey, Signed, StreamEnd, StreamId, ViewerPass};
use std::{collections::VecDeque, sync::Arc, time::Duration};

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
	/// After `Welcome`, a viewer must `Subscribe` (or `Join`, in P2P mode) and a publisher
	/// must `Publish` within this time, or it is closed (`IdleTimeout`) whatever else it sends:
	/// `Ping` keeps a session open, not a session that takes no data and publishes none, which
	/// would hold an admission slot and a connection for nothing. Default 10 s: a real client
	/// sends it right after `Welcome`, one round trip later.
	pub setup_timeout: Duration,
	/// A publisher must deliver its first complete segment within this time after `Publish`,
	/// or it is closed (`IdleTimeout`) and the stream slot it opened is freed. Default 20 s:
	/// an encoder's first segment (one target duration, typically 2 to 6 s, plus its start)
	/// comes well within it; a publisher closed early reconnects and loses nothing.
	pub first_segment_timeout: Duration,
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
	/// A P2P viewer may `Fetch` chunks of the newest this many segments whose headers it was
	/// sent (its urgent window is a few seconds behind the live edge); older or unannounced
	/// ones are answered `NotHeld`. Default 8, the header backlog: 16 s of 2 s segments.
	pub p2p_fetch_window: u64,
	/// Play time a P2P viewer may `Fetch` per second of real time, in percent: the node fills
	/// gaps, peers deliver the rest. Default 150 (1.5 times the stream's bitrate: enough to
	/// play from the node alone and catch up), so a P2P session never costs the node more
	/// than that; fetches beyond it are answered `NotHeld`.
	pub p2p_fetch_speed_percent: u32,
	/// Play time a P2P viewer may `Fetch` at once. Default 16 s, the whole fetch window of 2 s
	/// segments (a viewer whose peers all failed at once).
	pub p2p_fetch_burst: Duration,
	/// Fetches answered `NotHeld` for being outside the window or the budget after which the
	/// session is closed (`UnexpectedMessage`). Default 64: an honest viewer asks its peers
	/// after one.
	pub p2p_fetch_max_refused: u32,
}

impl Default for SessionConfig {
	fn default() -> Self {
		Self {
			genesis_hash: [0; 32],
			max_frame_len: DEFAULT_MAX_FRAME_LEN,
			hello_timeout: Duration::from_secs(5),
			idle_timeout: Duration::from_secs(30),
			setup_timeout: Duration::from_secs(10),
			first_segment_timeout: Duration::from_secs(20),
			max_send_queue_bytes: 1024 * 1024,
			segment_limits: SegmentLimits::default(),
			on_demand_lead: Duration::from_secs(10),
			origin_keys: Arc::new(OriginKeys::default()),
			p2p_header_backlog: 8,
			p2p_fetch_window: 8,
			p2p_fetch_speed_percent: 150,
			p2p_fetch_burst: Duration::from_secs(16),
			p2p_fetch_max_refused: 64,
		}
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
	/// A P2P viewer asked to join `stream`'s swarm and proved it holds `viewer` (its `Join`
	/// proof verified against this session's challenge): issue a pass and peers, then call
	/// [`ServerSession::handle_joined`].
	JoinRequest {
		/// Stream.
		stream: StreamId,
		/// The viewer's key.
		viewer: PublicKey,
		/// How peers reach it.
		peer: PeerInfo,
	},
	/// A `Join` whose proof of key possession did not verify: the session is closed (a
	/// `Closed` follows). Count it.
	BadJoinProof,
	/// A joined P2P viewer's pass is due for renewal (every half pass period): sign a new one
	/// and call [`ServerSession::handle_pass`].
	PassDue {
		/// The joined stream.
		stream: StreamId,
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
		deadline: Millis,
	},
	AwaitAdmission,
	Viewer(Option<Subscription>),
	/// Admitted in P2P mode.
	P2p(P2pState),
	/// Said `Hello` as a publisher: `None` before `Publish`. On an error its queued acks still
	/// go out before the `Error`, so it knows which segment was refused.
	Publisher(Option<(StreamId, Box<Assembler>)>),
	Closed,
}

/// Where a viewer admitted in P2P mode is.
#[derive(Debug)]
enum P2pState {
	/// Before `Join`.
	AwaitJoin,
	/// Asked to join this stream; `Joined` not sent yet.
	Joining(StreamId),
	/// `Joined` sent: fed every header of the stream.
	Joined(HeaderFeed),
}

/// The header feed of a joined P2P viewer.
#[derive(Debug)]
struct HeaderFeed {
	stream: StreamId,
	/// The broadcast fed so far (see [`Subscription::broadcast`]).
	broadcast: Option<u64>,
	/// The next header to send; `None` until the first lookup.
	next: Option<u64>,
	/// `End` was sent.
	end_sent: bool,
	/// When the pass is renewed next.
	renew_at: Millis,
	/// The pass is renewed this often.
	renew_every: Millis,
}

#[derive(Debug)]
struct Subscription {
	stream: StreamId,
	start: Start,
	/// Next sequence to send; `None` until the start is resolved against the window.
	next: Option<u64>,
	end_sent: bool,
	/// On demand: when the first segment was queued, and the play time queued since (ms).
	on_demand_clock: Option<(Millis, Millis)>,
	/// On demand: the next segment waits until then (`on_demand_lead` ahead of real time).
	paused_until: Option<Millis>,
	/// `Switched` was received (it is allowed once, after `Subscribe`).
	switched: bool,
	/// The broadcast sent so far; a newer one in the window is continued from its oldest
	/// segment held (the viewer sees a discontinuity), an older one never comes back.
	broadcast: Option<u64>,
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
	last_recv: Millis,
	queue: VecDeque<Bytes>,
	queued_bytes: usize,
	events: VecDeque<SessionEvent>,
	stats: SessionStats,
	/// Sent in `Welcome`; what a publisher's or P2P viewer's proof of key possession signs.
	challenge: [u8; CHALLENGE_LEN],
	/// The session is closed at this time unless it starts to take data or to publish by then
	/// ([`SessionConfig::setup_timeout`], [`SessionConfig::first_segment_timeout`]), and why.
	purpose_deadline: Option<(Millis, &'static str)>,
	/// P2P mode: what the viewer may still `Fetch`; made at the first fetch.
	fetch: Option<FetchGuard>,
}

impl ServerSession {
	/// A new connection at `now`.
	pub fn new(now: Millis, config: SessionConfig) -> Self {
		let deadline = now.saturating_add(millis(config.hello_timeout));
		Self {
			config,
			state: State::AwaitHello { deadline },
			last_recv: now,
			queue: VecDeque::new(),
			queued_bytes: 0,
			events: VecDeque::new(),
			stats: SessionStats::default(),
			// A CSPRNG (the OS-seeded thread RNG): the challenge must be unpredictable, or a
			// proof could be signed before the session exists.
			challenge: rand::random(),
			purpose_deadline: None,
			fetch: None,
		}
	}

	/// The random challenge this session sends (sent) in `Welcome`.
	pub fn challenge(&self) -> &[u8; CHALLENGE_LEN] {
		&self.challenge
	}

	/// Counters.
	pub fn stats(&self) -> SessionStats {
		self.stats
	}

	/// Whether the session is over (flush [`Self::poll_transmit`], then close).
	pub fn is_closed(&self) -> bool {
		matches!(self.state, State::Closed)
	}

	/// Bytes of the segment a publisher is assembling (its header's `byte_len`), 0 if none:
	/// what the driver reserves of the server's partial-segment budget after each frame.
	pub fn assembling_bytes(&self) -> usize {
		match &self.state {
			State::Publisher(Some((_, asm))) => asm.in_progress_bytes(),
			_ => 0,
		}
	}

	/// The origin key a publisher publishes for (proved at `Publish`), `None` before that or
	/// for a viewer: whose share of the partial-segment budget [`Self::assembling_bytes`] is.
	pub fn publishing_origin(&self) -> Option<PublicKey> {
		match &self.state {
			State::Publisher(Some((_, asm))) => Some(*asm.origin()),
			_ => None,
		}
	}

	/// Whether the connection has not completed its handshake yet: no `Hello`, or a viewer's
	/// `Hello` not answered (what per-address limits count as a handshake in flight).
	pub fn in_handshake(&self) -> bool {
		matches!(self.state, State::AwaitHello { .. } | State::AwaitAdmission)
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
		let publisher = matches!(self.state, State::Publisher(_));
		self.fail_as(publisher, before, code, reason)
	}

	/// [`Self::fail_after`] for a session that is a `publisher` or not, for
	/// [`Self::handle_frame`], which has taken the state out to match on it.
	fn fail_as(
		&mut self,
		publisher: bool,
		before: Option<Message>,
		code: ErrorCode,
		reason: String,
	) {
		if !publisher {
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
	pub fn handle_read_error(&mut self, _now: Millis, err: FrameError) {
		self.close(err.code(), err.to_string());
	}

	/// A frame body arrived. `body` is what [`crate::protocol::FrameDecoder`] returned.
	pub fn handle_frame(&mut self, now: Millis, body: Bytes) {
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
		let publisher = matches!(state, State::Publisher(_));
		self.state = match (state, msg) {
			(State::AwaitHello { .. }, Message::Hello { version, role, genesis_hash }) => {
				if version != PROTOCOL_VERSION {
					return self.fail_as(
						publisher,
						None,
						ErrorCode::UnsupportedVersion,
						format!("version {version}, server speaks {PROTOCOL_VERSION}"),
					);
				}
				if genesis_hash != self.config.genesis_hash {
					return self.fail_as(
						publisher,
						None,
						ErrorCode::WrongGenesis,
						"client is on another chain".into(),
					);
				}
				match role {
					Role::Viewer => {
						self.events.push_back(SessionEvent::AdmissionRequest);
						State::AwaitAdmission
					}
					Role::Publisher => {
						self.welcome(now, AdmissionMode::Direct);
						State::Publisher(None)
					}
				}
			}
			(State::Viewer(None), Message::Subscribe { stream, start }) => {
				// Waiting for a stream nobody may publish would hold a slot for nothing.
				if self.config.origin_keys.get(stream).is_none() {
					return self.fail_as(
						publisher,
						None,
						ErrorCode::UnknownStream,
						format!("no origin key for stream {stream}"),
					);
				}
				self.events.push_back(SessionEvent::Subscribed(stream));
				self.purpose_deadline = None;
				State::Viewer(Some(Subscription {
					stream,
					start,
					next: None,
					end_sent: false,
					on_demand_clock: None,
					paused_until: None,
					switched: false,
					broadcast: None,
				}))
			}
			(State::Viewer(Some(mut sub)), Message::Switched { from }) if !sub.switched => {
				sub.switched = true;
				self.events.push_back(SessionEvent::Switched { from });
				State::Viewer(Some(sub))
			}
			(State::P2p(P2pState::AwaitJoin), Message::Join { stream, viewer, peer, proof }) => {
				if let Err(why) = peer.check() {
					return self.fail_as(
						publisher,
						None,
						ErrorCode::Malformed,
						format!("join: {why}"),
					);
				}
				let (genesis, challenge) = (&self.config.genesis_hash, &self.challenge);
				if !verify_join(&viewer, &proof, genesis, challenge, stream, &peer) {
					self.events.push_back(SessionEvent::BadJoinProof);
					return self.fail_as(
						publisher,
						None,
						ErrorCode::BadSignature,
						"join: the proof does not verify against the viewer key and this \
						 session's challenge"
							.into(),
					);
				}
				self.events.push_back(SessionEvent::JoinRequest { stream, viewer, peer });
				self.purpose_deadline = None;
				State::P2p(P2pState::Joining(stream))
			}
			(State::P2p(P2pState::Joined(feed)), Message::Fetch { stream, sequence, index })
				if stream == feed.stream =>
			{
				// Answers count against the send queue: a viewer that fetches and never reads
				// must not grow it without bound.
				if self.queued_bytes >= self.config.max_send_queue_bytes {
					return self.fail_as(
						publisher,
						None,
						ErrorCode::SlowConsumer,
						"fetches while not reading".into(),
					);
				}
				if !FetchGuard::in_window(feed.next, sequence, self.config.p2p_fetch_window) {
					if let Some(why) = self.refuse_fetch(now, stream, sequence, index) {
						return self.fail_as(publisher, None, ErrorCode::UnexpectedMessage, why);
					}
					self.state = State::P2p(P2pState::Joined(feed));
					return;
				}
				self.events.push_back(SessionEvent::FetchRequest { stream, sequence, index });
				State::P2p(P2pState::Joined(feed))
			}
			(State::Publisher(None), Message::Publish { stream, proof }) => {
				let Some(key) = self.config.origin_keys.get(stream) else {
					return self.fail_as(
						publisher,
						None,
						ErrorCode::UnknownStream,
						format!("no origin key for stream {stream}"),
					);
				};
				// Before anything is held for it: anybody can say `Publish`.
				let genesis = self.config.genesis_hash;
				if !verify_publish_proof(&key, genesis, self.challenge, stream, &proof) {
					return self.fail_as(
						publisher,
						None,
						ErrorCode::BadSignature,
						format!(
							"publish proof for stream {stream} does not verify against its \
							 origin key and this session's challenge"
						),
					);
				}
				self.purpose_deadline = Some((
					now.saturating_add(millis(self.config.first_segment_timeout)),
					"no segment within first_segment_timeout of publish",
				));
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
					return self.fail_as(publisher, None, e.code(), e.to_string());
				}
				State::Publisher(Some((stream, asm)))
			}
			(State::Publisher(Some((stream, mut asm))), Message::Chunk(mut c)) => {
				let frame = prefixed(&body);
				c.data = data_in_frame(&body, &frame, &c.data);
				match asm.handle_chunk(c, frame) {
					Err(e) => {
						return self.fail_as(publisher, None, e.code(), e.to_string());
					}
					Ok(Assembled::Progress) => {}
					Ok(Assembled::Complete(seg)) => {
						self.stats.segments_received += 1;
						self.purpose_deadline = None;
						let sequence = seg.sequence();
						self.events.push_back(SessionEvent::SegmentReceived(seg));
						// Acks count against the send queue: a publisher replaying segments
						// and never reading must not grow it without bound.
						if self.queued_bytes >= self.config.max_send_queue_bytes {
							let why = "segments while not reading acks".into();
							return self.fail_as(publisher, None, ErrorCode::SlowConsumer, why);
						}
						self.send(encode_frame(&Message::Ack { stream, sequence }));
					}
				}
				State::Publisher(Some((stream, asm)))
			}
			(State::Publisher(Some((stream, asm))), Message::End(end))
				if end.payload.stream == stream && asm.in_progress().is_none() =>
			{
				// The echo counts against the send queue: a replayed `End` sent again and again
				// by a publisher that never reads must not grow it without bound.
				if self.queued_bytes >= self.config.max_send_queue_bytes {
					let why = "ends while not reading".into();
					return self.fail_as(publisher, None, ErrorCode::SlowConsumer, why);
				}
				// Only the origin may end a stream: anybody can say `Publish`.
				if let Err(e) = asm.verify_end(&end) {
					return self.fail_as(publisher, None, e.code(), e.to_string());
				}
				// Echoed as the confirmation that the end is recorded.
				self.send(prefixed(&body));
				self.events.push_back(SessionEvent::End(end));
				State::Publisher(Some((stream, asm)))
			}
			(state, msg) => {
				let what = format!("{} not allowed {}", msg.kind(), state_name(&state));
				return self.fail_as(publisher, None, ErrorCode::UnexpectedMessage, what);
			}
		};
	}

	fn welcome(&mut self, now: Millis, mode: AdmissionMode) {
		self.purpose_deadline = Some((
			now.saturating_add(millis(self.config.setup_timeout)),
			"no subscribe, join or publish within setup_timeout of welcome",
		));
		self.send(encode_frame(&Message::Welcome {
			version: PROTOCOL_VERSION,
			mode,
			max_frame_len: self.config.max_frame_len,
			challenge: self.challenge,
		}));
	}

	/// The answer to [`SessionEvent::Publishing`] once the stream's window is open: tells the
	/// publisher the broadcast the server holds and its next sequence ([`LiveWindow::held`]).
	pub fn handle_publish_ready(
		&mut self,
		_now: Millis,
		broadcast: Option<u64>,
		next_sequence: u64,
	) {
		if let State::Publisher(Some((stream, _))) = &self.state {
			let stream = *stream;
			self.send(encode_frame(&Message::Expect { stream, broadcast, next_sequence }));
		}
	}

	/// The answer to [`SessionEvent::AdmissionRequest`].
	pub fn handle_admission(&mut self, now: Millis, result: Result<AdmissionMode, ErrorCode>) {
		self.handle_admission_or_redirect(now, result, Vec::new())
	}

	/// The answer to [`SessionEvent::AdmissionRequest`]; a refusal with a non-empty `redirect`
	/// (from [`RedirectList::next_redirect`]) sends `Redirect { servers: redirect }` (at most
	/// [`MAX_REDIRECT_SERVERS`]) right before the `Error`.
	pub fn handle_admission_or_redirect(
		&mut self,
		now: Millis,
		result: Result<AdmissionMode, ErrorCode>,
		mut redirect: Vec<ServerAddrs>,
	) {
		if !matches!(self.state, State::AwaitAdmission) {
			return;
		}
		match result {
			Ok(mode) => {
				self.welcome(now, mode);
				self.state = match mode {
					AdmissionMode::Direct => State::Viewer(None),
					AdmissionMode::P2p => State::P2p(P2pState::AwaitJoin),
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

	/// The answer to [`SessionEvent::JoinRequest`]: the pass and peers, or why not. The pass
	/// is renewed ([`SessionEvent::PassDue`]) every `renew_every` from now on.
	pub fn handle_joined(
		&mut self,
		now: Millis,
		result: Result<(Signed<ViewerPass>, Vec<PeerInfo>), (ErrorCode, String)>,
		renew_every: Duration,
	) {
		let State::P2p(P2pState::Joining(stream)) = self.state else { return };
		match result {
			Ok((pass, mut peers)) => {
				peers.truncate(MAX_JOINED_PEERS);
				self.send(encode_frame(&Message::Joined { pass, peers }));
				let renew_every = millis(renew_every).max(1);
				let renew_at = now.saturating_add(renew_every);
				let feed = HeaderFeed {
					stream,
					broadcast: None,
					next: None,
					end_sent: false,
					renew_at,
					renew_every,
				};
				self.state = State::P2p(P2pState::Joined(feed));
			}
			Err((code, reason)) => self.close(code, reason),
		}
	}

	/// A renewed pass for the joined viewer (the answer to [`SessionEvent::PassDue`], or a new
	/// epoch): sends it as `Pass`; the next renewal is due `renew_every` from now.
	pub fn handle_pass(&mut self, now: Millis, pass: Signed<ViewerPass>) {
		let State::P2p(P2pState::Joined(feed)) = &mut self.state else { return };
		feed.renew_at = now.saturating_add(feed.renew_every);
		self.send(encode_frame(&Message::Pass(pass)));
	}

	/// Answers a fetch with `NotHeld` and counts it against the viewer (see
	/// [`super::fetch`]); the reason to close the session with when it was refused too often.
	fn refuse_fetch(
		&mut self,
		now: Millis,
		stream: StreamId,
		sequence: u64,
		index: u32,
	) -> Option<String> {
		self.send(encode_frame(&Message::NotHeld { stream, sequence, index }));
		let guard = self.fetch.get_or_insert_with(|| FetchGuard::new(now, &self.config));
		guard.refuse(&self.config).then(|| {
			format!(
				"{} fetches outside the urgent window or over the fetch budget",
				guard.refused()
			)
		})
	}

	/// The answer to [`SessionEvent::FetchRequest`]: the segment if the window holds it and the
	/// session's fetch budget covers the chunk ([`super::fetch`]). Sends its header and the
	/// chunk (shared frames, no copy), or `NotHeld`.
	pub fn handle_fetch(
		&mut self,
		now: Millis,
		sequence: u64,
		index: u32,
		segment: Option<Arc<Segment>>,
	) {
		let State::P2p(P2pState::Joined(HeaderFeed { stream, .. })) = self.state else { return };
		let frames = segment.as_ref().and_then(|seg| {
			let chunk = seg.frames.get(1 + index as usize)?;
			(seg.sequence() == sequence).then(|| (seg.frames[0].clone(), chunk.clone()))
		});
		let held = segment.as_ref().is_some_and(|seg| seg.sequence() == sequence);
		if held && frames.is_none() {
			// A chunk past the segment's last: the viewer has the header, so an honest one
			// never asks for it. Counted like any refused fetch, or it would be a free flood.
			if let Some(why) = self.refuse_fetch(now, stream, sequence, index) {
				self.close(ErrorCode::UnexpectedMessage, why);
			}
			return;
		}
		if let (Some(seg), Some(_)) = (&segment, &frames) {
			let guard = self.fetch.get_or_insert_with(|| FetchGuard::new(now, &self.config));
			if !guard.try_take(now, seg, index) {
				if let Some(why) = self.refuse_fetch(now, stream, sequence, index) {
					self.close(ErrorCode::UnexpectedMessage, why);
				}
				return;
			}
		}
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
			State::P2p(P2pState::Joined(feed)) if !feed.end_sent && room => {
				Some((feed.stream, feed.next.unwrap_or(0)))
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
		_now: Millis,
		lookup: Lookup,
		seeded: impl Fn(&Segment) -> Vec<u32>,
	) {
		let sent_up_to = match &mut self.state {
			State::P2p(P2pState::Joined(feed)) if !feed.end_sent => {
				if newer_broadcast(&mut feed.broadcast, &lookup) {
					feed.next = lookup.oldest;
				}
				feed.next
			}
			_ => return,
		};
		let backlog = self.config.p2p_header_backlog;
		let mut next = sent_up_to.unwrap_or_else(|| {
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
		let end = lookup.ended.filter(|_| lookup.newest.is_none_or(|newest| next > newest));
		if let State::P2p(P2pState::Joined(feed)) = &mut self.state {
			feed.next = Some(next);
			feed.end_sent = end.is_some();
		}
		if let Some((_, end_frame)) = end {
			self.send(end_frame);
		}
	}

	/// Queues what `lookup` holds for the subscription (on demand: paced, see
	/// [`SessionConfig::on_demand_lead`]).
	pub fn handle_segments(&mut self, now: Millis, lookup: Lookup) {
		let State::Viewer(Some(sub)) = &mut self.state else { return };
		if newer_broadcast(&mut sub.broadcast, &lookup) && sub.next.is_some() {
			// The origin restarted: continue with the new broadcast from its oldest segment.
			sub.next = lookup.oldest;
		}
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
				let (started, queued) = sub.on_demand_clock.get_or_insert((now, 0));
				let ahead = queued.saturating_sub(now.saturating_sub(*started));
				let lead = millis(self.config.on_demand_lead);
				if ahead > lead {
					sub.paused_until = Some(now.saturating_add(ahead - lead));
					break;
				}
				*queued = queued.saturating_add(u64::from(seg.duration_ms()));
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

	/// When the session is closed as idle unless a frame arrives.
	fn idle_deadline(&self) -> Millis {
		self.last_recv.saturating_add(millis(self.config.idle_timeout))
	}

	/// When [`Self::handle_timeout`] must be called next.
	pub fn poll_timeout(&self) -> Option<Millis> {
		let at = match &self.state {
			State::AwaitHello { deadline } => *deadline,
			State::Closed => return None,
			State::Viewer(Some(Subscription { paused_until: Some(at), .. })) => {
				(*at).min(self.idle_deadline())
			}
			State::P2p(P2pState::Joined(feed)) => feed.renew_at.min(self.idle_deadline()),
			_ => self.idle_deadline(),
		};
		Some(self.purpose_deadline.map_or(at, |(purpose, _)| purpose.min(at)))
	}

	/// Time passed.
	pub fn handle_timeout(&mut self, now: Millis) {
		if let State::Viewer(Some(sub)) = &mut self.state {
			if sub.paused_until.is_some_and(|at| now >= at) {
				sub.paused_until = None;
			}
		}
		if let Some((at, why)) = self.purpose_deadline {
			if now >= at && !self.is_closed() {
				self.purpose_deadline = None;
				return self.close(ErrorCode::IdleTimeout, why);
			}
		}
		if let State::P2p(P2pState::Joined(feed)) = &mut self.state {
			if now >= feed.renew_at {
				// Not again until answered (or one more period passed).
				feed.renew_at = now.saturating_add(feed.renew_every);
				self.events.push_back(SessionEvent::PassDue { stream: feed.stream });
			}
		}
		match self.state {
			State::AwaitHello { deadline } if now >= deadline => {
				self.close(ErrorCode::IdleTimeout, "no hello within hello_timeout")
			}
			State::Closed | State::AwaitHello { .. } => {}
			_ if now >= self.idle_deadline() => {
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
		State::P2p(P2pState::AwaitJoin) => "before join",
		State::P2p(P2pState::Joining(_)) => "while joining",
		State::P2p(P2pState::Joined(_)) => "after join",
		State::Publisher(None) => "before publish",
		State::Publisher(Some(_)) => "while publishing",
		State::Closed => "after close",
	}
}

/// Whether `lookup` holds a newer broadcast than the one a session was fed (`fed`, updated).
fn newer_broadcast(fed: &mut Option<u64>, lookup: &Lookup) -> bool {
	match (*fed, lookup.broadcast) {
		(Some(old), Some(new)) if new > old => {
			*fed = Some(new);
			true
		}
		(None, Some(new)) => {
			*fed = Some(new);
			false
		}
		_ => false,
	}
}

/// `data`, decoded as a slice of `body` (the read buffer), as the same bytes of `frame` (the
/// exact-size copy [`prefixed`] made): the window then keeps one allocation per chunk. A slice
/// of the read buffer would keep that whole buffer alive next to the copy, up to three times
/// the media bytes the memory budgets count.
fn data_in_frame(body: &Bytes, frame: &Bytes, data: &Bytes) -> Bytes {
	let start = (data.as_ptr() as usize).checked_sub(body.as_ptr() as usize);
	match start {
		Some(start) if start.saturating_add(data.len()) <= body.len() => {
			let start = start + crate::protocol::LENGTH_PREFIX;
			frame.slice(start..start + data.len())
		}
		_ => Bytes::copy_from_slice(data),
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
mod tests;
