//! The [`ServerSession`] harness: one session driven as `net::serve`'s driver drives it (events
//! answered right after each input, then fed from a live window while it wants segments), by a
//! program read from the input: raw frame bodies, raw byte streams through a
//! [`FrameDecoder`], canned client messages, whole or partial segments of two broadcasts and
//! their ends (the replay corpus of [`super::fixtures`]), window inserts and ends, admission
//! and join answers, time steps, reads by the peer, and closes.
//!
//! Invariants checked after every step:
//! - exactly one `Closed` event, matching `is_closed`; after it no event, no frame, no timer
//!   and no wish for segments;
//! - between two reads by the peer, the session queues at most `max_send_queue_bytes` plus one
//!   unit of work (a segment with its `End`, a fetch answer, an error with its redirect);
//! - every frame it sends decodes; `Welcome` at most once; nothing after `Error`;
//! - a direct viewer gets headers in strictly increasing sequence, each chunk after its
//!   header in order, and no media after `End`;
//! - a publisher's segments and ends are reported only when they verify for its stream, and
//!   every `Ack` names a segment it delivered.

use super::{
	fixtures::{body, fixtures, FixtureSegment, Fixtures, GENESIS, STREAM},
	Input,
};
use crate::{
	clock::Millis,
	p2p::join::sign_join,
	protocol::{
		publish_proof, ErrorCode, FrameDecoder, Message, LENGTH_PREFIX, MAX_REDIRECT_SERVERS,
	},
	segment::{verify_end, verify_header, Segment, SegmentLimits},
	server::{LiveWindow, ServerSession, SessionConfig, SessionEvent, WindowConfig},
};
use bytes::Bytes;
use dsp_primitives::AdmissionMode;
use sp_core::Pair as _;
use std::{collections::HashSet, sync::Arc, time::Duration};

/// Most steps of one program: long enough for a broadcast, short enough for many runs.
const MAX_STEPS: usize = 256;
/// Segments per window lookup (the driver uses a larger batch; small reaches the repeat path).
const LOOKUP_BATCH: usize = 2;
/// Most lookups in one feed: more means the session keeps asking without taking anything.
const MAX_LOOKUPS: usize = 64;

/// Runs one program. See the module docs.
pub fn session(data: &[u8]) {
	let mut input = Input::new(data);
	let mut h = Harness::new(&mut input);
	for _ in 0..MAX_STEPS {
		if input.is_empty() {
			break;
		}
		h.step(&mut input);
		h.after_step(&mut input);
	}
	h.read_all();
}

/// What the peer has read of the session's frames, and what it may still get.
#[derive(Default)]
struct Peer {
	welcome_seen: bool,
	error_seen: bool,
	end_seen: bool,
	last_header: Option<u64>,
	/// Sequence and next chunk index of the header last received.
	chunk: Option<(u64, u32)>,
}

struct Harness {
	f: &'static Fixtures,
	session: ServerSession,
	config: SessionConfig,
	window: LiveWindow,
	on_demand: bool,
	now: Millis,
	decoder: Option<FrameDecoder>,
	closed: bool,
	/// Steps run since `Closed` was seen (the queue was read out when it was).
	flushed: bool,
	publishing: Option<u64>,
	delivered: HashSet<u64>,
	viewer_direct: bool,
	peer: Peer,
	/// Most bytes one unit of work may add past `max_send_queue_bytes`.
	slack: usize,
	/// Chunk indices the node seeds to a P2P viewer with every header.
	seed_chunks: Vec<u32>,
	/// The last frame body handed to the session, for floods.
	last_frame: Option<Bytes>,
}

impl Harness {
	fn new(input: &mut Input) -> Self {
		let f = fixtures();
		let config = SessionConfig {
			genesis_hash: GENESIS,
			max_send_queue_bytes: match input.u8() % 4 {
				0 => 1024 * 1024,
				1 => 0,
				_ => usize::from(input.u16() % 8192),
			},
			hello_timeout: Duration::from_millis(u64::from(input.u16())),
			idle_timeout: Duration::from_millis(u64::from(input.u16()) * 10),
			on_demand_lead: Duration::from_millis(u64::from(input.u16())),
			p2p_header_backlog: input.edge_u64(),
			origin_keys: f.origin_keys.clone(),
			segment_limits: SegmentLimits::default(),
			..Default::default()
		};
		let window = LiveWindow::new(WindowConfig {
			max_segments: usize::from(input.u8() % 5),
			max_bytes: if input.bool() { 64 * 1024 * 1024 } else { usize::from(input.u16()) },
		});
		let now = match input.u8() % 4 {
			0 => 0,
			1 => u64::MAX - u64::from(input.u16()),
			_ => u64::from(input.u32()),
		};
		let largest = f.segments.iter().map(|s| s.segment.wire_len()).max().unwrap_or(0);
		let end_frame = f.ends.iter().map(|(e, _)| body(&Message::End(e.clone())).len()).max();
		Self {
			f,
			session: ServerSession::new(now, config.clone()),
			config,
			window,
			on_demand: false,
			now,
			decoder: Some(FrameDecoder::new(crate::protocol::DEFAULT_MAX_FRAME_LEN)),
			closed: false,
			flushed: false,
			publishing: None,
			delivered: HashSet::new(),
			viewer_direct: false,
			peer: Peer::default(),
			// A segment and its end (`Welcome`, `Joined`, `Redirect` and `Error` are once per
			// session and not counted).
			slack: largest + end_frame.unwrap_or(0) + LENGTH_PREFIX,
			seed_chunks: Vec::new(),
			last_frame: None,
		}
	}

	fn segment(&self, input: &mut Input) -> &'static FixtureSegment {
		&self.f.segments[input.index(self.f.segments.len())]
	}

	/// Hands a frame body to the session, then answers its events.
	fn frame(&mut self, input: &mut Input, body: Bytes) {
		self.last_frame = Some(body.clone());
		self.session.handle_frame(self.now, body);
		self.answer_events(input);
	}

	/// `Publish` and `Join` carry a proof over this session's challenge: mostly made valid
	/// (with the fixture origin key or viewer key), so that the publisher and P2P paths are
	/// reached, otherwise left as the fixture has it (zeros: refused).
	fn with_proof(&self, input: &mut Input, m: Message) -> Message {
		if input.u8() % 4 == 0 {
			return m;
		}
		let challenge = *self.session.challenge();
		match m {
			Message::Publish { stream, .. } => {
				let proof = publish_proof(&self.f.origin, GENESIS, challenge, stream);
				Message::Publish { stream, proof }
			}
			Message::Join { stream, viewer, peer, .. } if viewer == self.f.viewer.public() => {
				let proof = sign_join(&self.f.viewer, &GENESIS, &challenge, stream, &peer);
				Message::Join { stream, viewer, peer, proof }
			}
			m => m,
		}
	}

	fn step(&mut self, input: &mut Input) {
		match input.u8() % 20 {
			0 => {
				let raw = Bytes::copy_from_slice(input.bytes_upto(255));
				self.frame(input, raw);
			}
			1 | 2 | 3 => {
				let m = self.f.messages[input.index(self.f.messages.len())].clone();
				let m = self.with_proof(input, m);
				self.frame(input, body(&m));
			}
			4 | 5 => {
				// A whole segment, or its first frames, or one frame of it.
				let seg = &self.segment(input).segment;
				let (from, to) = match input.u8() % 3 {
					0 => (0, seg.frames.len()),
					1 => (0, input.index(seg.frames.len() + 1)),
					_ => {
						let i = input.index(seg.frames.len());
						(i, i + 1)
					}
				};
				for frame in &seg.frames[from..to] {
					self.frame(input, frame.slice(LENGTH_PREFIX..));
				}
			}
			6 => {
				let (end, _) = &self.f.ends[input.index(self.f.ends.len())];
				self.frame(input, body(&Message::End(end.clone())));
			}
			7 => self.byte_stream(input),
			8 | 9 => {
				let s = self.segment(input);
				if s.valid {
					let _ = self.window.insert(s.segment.clone());
				}
			}
			10 => {
				let valid: Vec<_> = self.f.ends.iter().filter(|(_, v)| *v).collect();
				if !valid.is_empty() {
					let _ = self.window.end(valid[input.index(valid.len())].0.clone());
				}
			}
			11 | 12 => self.advance(input),
			13 | 14 => self.read_all(),
			15 => match input.u8() % 4 {
				0 => self.session.handle_peer_closed(),
				1 => self.session.close(ErrorCode::Shutdown, "fuzz"),
				2 => self.session.handle_read_error(
					self.now,
					crate::protocol::FrameError::Truncated { buffered: 1 },
				),
				_ => self.session.handle_publish_ready(self.now, None, input.edge_u64()),
			},
			16 => self.on_demand = !self.on_demand,
			18 | 19 => {
				// A flood: the last frame again, up to 256 times, without reading.
				let Some(last) = self.last_frame.clone() else { return };
				for _ in 0..=input.u8() {
					self.frame(input, last.clone());
				}
			}
			_ => {
				self.seed_chunks =
					(0..input.u8() % 4).map(|_| [0, 1, 7, u32::MAX][input.index(4)]).collect();
			}
		}
	}

	/// Bytes as a connection delivers them: through a frame decoder, errors included.
	fn byte_stream(&mut self, input: &mut Input) {
		let Some(mut dec) = self.decoder.take() else { return };
		let n = usize::from(input.u16() % 2048);
		let bytes = if input.bool() {
			input.bytes(n).to_vec()
		} else {
			// Valid frames with a mutation: a stream that starts well and goes wrong.
			let seg = &self.segment(input).segment;
			input.mutate(&seg.frames.concat())
		};
		dec.push(&bytes);
		loop {
			match dec.next_frame() {
				Ok(Some(body)) => self.frame(input, body),
				Ok(None) => break,
				Err(e) => {
					self.session.handle_read_error(self.now, e);
					self.answer_events(input);
					// The driver stops reading after an error.
					return;
				}
			}
		}
		self.decoder = Some(dec);
	}

	fn advance(&mut self, input: &mut Input) {
		let by = match input.u8() % 6 {
			0 => 0,
			1 => 1,
			2 => 5_000,
			3 => 30_000,
			4 => u64::from(input.u32()),
			_ => u64::MAX,
		};
		self.now = self.now.saturating_add(by);
		if input.bool() {
			if let Some(at) = self.session.poll_timeout() {
				self.now = self.now.max(at);
			}
		}
		self.session.handle_timeout(self.now);
		self.answer_events(input);
	}

	/// Answers every event as the driver does, checking what it reports.
	fn answer_events(&mut self, input: &mut Input) {
		while let Some(ev) = self.session.poll_event() {
			assert!(!self.closed, "event after Closed: {ev:?}");
			match ev {
				SessionEvent::AdmissionRequest => {
					let result = match input.u8() % 4 {
						0 | 1 => Ok(AdmissionMode::Direct),
						2 => Ok(AdmissionMode::P2p),
						_ => Err(ErrorCode::Full),
					};
					self.viewer_direct = result == Ok(AdmissionMode::Direct);
					let n = input.index(self.f.redirect.len() + 1);
					let redirect = self.f.redirect[..n].to_vec();
					self.session.handle_admission_or_redirect(self.now, result, redirect);
				}
				SessionEvent::Subscribed(stream) => {
					assert!(self.config.origin_keys.get(stream).is_some(), "subscribed to {stream}")
				}
				SessionEvent::Publishing(stream) => {
					assert!(self.config.origin_keys.get(stream).is_some(), "publishing {stream}");
					self.publishing = Some(stream);
					if input.u8() % 8 == 0 {
						self.session.close(ErrorCode::UnknownStream, "too many streams held");
					} else {
						let (broadcast, next) = self.window.held();
						self.session.handle_publish_ready(self.now, broadcast, next);
					}
				}
				SessionEvent::SegmentReceived(seg) => self.received(seg),
				SessionEvent::End(end) => {
					let stream = self.publishing.expect("End only after Publish");
					let key =
						self.config.origin_keys.get(stream).expect("published stream has a key");
					assert!(verify_end(&end, &GENESIS, stream, &key).is_ok(), "unverified End");
					if stream == STREAM {
						let _ = self.window.end(end);
					}
				}
				SessionEvent::JoinRequest { peer, .. } => {
					assert!(peer.check().is_ok(), "join with a bad peer reported");
					let result = match (&self.f.join_pass, input.u8() % 4) {
						(Some(pass), 0..=2) => {
							let peers = vec![peer; input.index(80)];
							Ok((pass.clone(), peers))
						}
						_ => Err((ErrorCode::Full, "tracker full".to_string())),
					};
					self.session.handle_joined(
						self.now,
						result,
						std::time::Duration::from_secs(60),
					);
				}
				SessionEvent::FetchRequest { sequence, index, .. } => {
					let held = self.window.lookup(sequence, 1).segments.into_iter().next();
					self.session.handle_fetch(self.now, sequence, index, held);
				}
				SessionEvent::Switched { .. } | SessionEvent::BadJoinProof => {}
				SessionEvent::PassDue { .. } => {
					if let Some(pass) = &self.f.join_pass {
						self.session.handle_pass(self.now, pass.clone());
					}
				}
				SessionEvent::Closed { .. } => {
					assert!(self.session.is_closed(), "Closed reported while open");
					self.closed = true;
				}
			}
		}
	}

	fn received(&mut self, seg: Segment) {
		let stream = self.publishing.expect("segments only after Publish");
		assert_eq!(seg.stream(), stream, "segment of another stream");
		let key = self.config.origin_keys.get(stream).expect("published stream has a key");
		let ok = verify_header(&seg.header, &GENESIS, stream, &key, &self.config.segment_limits);
		assert!(ok.is_ok(), "unverified segment reported: {ok:?}");
		assert_eq!(seg.frames.len(), seg.header.payload.chunk_hashes.len() + 1);
		self.delivered.insert(seg.sequence());
		if stream == STREAM {
			let _ = self.window.insert(Arc::new(seg));
		}
	}

	/// The driver's feed: lookups while the session wants segments, a full batch repeated.
	fn feed(&mut self) {
		for _ in 0..MAX_LOOKUPS {
			let Some((stream, from)) = self.session.wants_segments() else { return };
			let mut lookup = if stream == STREAM {
				self.window.lookup(from, LOOKUP_BATCH)
			} else {
				LiveWindow::default().lookup(from, LOOKUP_BATCH)
			};
			lookup.on_demand = self.on_demand;
			let full = lookup.segments.len() == LOOKUP_BATCH;
			if self.session.is_p2p() {
				let seeded = self.seed_chunks.clone();
				self.session.handle_p2p_segments(self.now, lookup, move |_| seeded.clone());
			} else {
				self.session.handle_segments(self.now, lookup);
			}
			if !full {
				return;
			}
		}
		panic!("the session keeps asking for segments it does not take");
	}

	fn after_step(&mut self, input: &mut Input) {
		if self.flushed {
			assert!(self.session.poll_event().is_none(), "event after Closed");
			assert!(!self.session.has_transmit(), "frame queued after Closed was flushed");
		}
		if !self.closed {
			self.feed();
			self.answer_events(input);
		}
		assert_eq!(self.session.is_closed(), self.closed, "is_closed and Closed disagree");
		if self.closed {
			assert!(self.session.poll_timeout().is_none(), "timer after close");
			assert!(self.session.wants_segments().is_none(), "wants segments after close");
			if !self.flushed {
				self.read_all();
				self.flushed = true;
			}
		} else {
			assert!(self.session.poll_timeout().is_some(), "open session without a timer");
		}
	}

	/// The peer reads everything queued: checks the bound and every frame.
	fn read_all(&mut self) {
		let mut bytes = 0;
		while let Some(frame) = self.session.poll_transmit() {
			if !self.check_frame(&frame) {
				bytes += frame.len();
			}
		}
		let bound = self.config.max_send_queue_bytes + self.slack;
		assert!(bytes <= bound, "{bytes} bytes queued, over {bound}");
	}

	/// Checks one frame the peer reads; whether it is one sent once per session.
	fn check_frame(&mut self, frame: &Bytes) -> bool {
		let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
		assert_eq!(len + LENGTH_PREFIX, frame.len(), "bad length prefix");
		let msg = crate::protocol::decode_body(frame.slice(LENGTH_PREFIX..));
		let msg = msg.unwrap_or_else(|e| panic!("server sent an undecodable frame: {e}"));
		let p = &mut self.peer;
		assert!(!p.error_seen, "frame after Error: {}", msg.kind());
		match &msg {
			Message::Welcome { .. } => {
				assert!(!p.welcome_seen, "second Welcome");
				p.welcome_seen = true;
			}
			Message::Error { .. } => p.error_seen = true,
			Message::Redirect { servers } => assert!(servers.len() <= MAX_REDIRECT_SERVERS),
			Message::Ack { sequence, .. } => {
				assert!(self.delivered.contains(sequence), "ack of a segment not delivered")
			}
			Message::End(_) if self.viewer_direct => p.end_seen = true,
			Message::Header(h) if self.viewer_direct => {
				let seq = h.payload.sequence;
				assert!(!p.end_seen, "header after End");
				assert!(
					p.last_header.is_none_or(|l| seq > l),
					"header {seq} after {:?}",
					p.last_header
				);
				p.last_header = Some(seq);
				p.chunk = Some((seq, 0));
			}
			Message::Chunk(c) if self.viewer_direct => {
				assert!(!p.end_seen, "chunk after End");
				assert_eq!(p.chunk, Some((c.sequence, c.index)), "chunk out of order");
				p.chunk = Some((c.sequence, c.index + 1));
			}
			_ => {}
		}
		matches!(
			msg,
			Message::Welcome { .. }
				| Message::Joined { .. }
				| Message::Redirect { .. }
				| Message::Error { .. }
		)
	}
}
