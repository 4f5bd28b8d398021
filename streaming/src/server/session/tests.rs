//! Tests of [`super::ServerSession`], alone and with the window it is fed from.

use super::*;
use crate::protocol::{FrameDecoder, LENGTH_PREFIX};
use crate::server::{
	test_util::{origin, seg, streamer},
	LiveWindow, WindowConfig,
};
use sp_core::Pair;

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

/// `Publish` for `stream` with the origin's proof for this session's challenge.
fn publish(s: &ServerSession, stream: StreamId) -> Message {
	let proof = crate::protocol::publish_proof(&origin(), [0; 32], *s.challenge(), stream);
	Message::Publish { stream, proof }
}

fn end(next_sequence: u64) -> Signed<StreamEnd> {
	Signed::sign(
		StreamEnd { genesis_hash: [0; 32], stream: 1, broadcast: 0, next_sequence },
		&origin(),
	)
}

fn viewer(now: Millis, start: Start) -> ServerSession {
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
			challenge: self.challenge,
			purpose_deadline: None,
			fetch: None,
		}
	}
}

#[test]
fn viewer_gets_live_segments_in_order_then_end() {
	let now: Millis = 0;
	let mut window = LiveWindow::new(WindowConfig::default());
	for i in 0..5 {
		window.insert(seg(i)).unwrap();
	}
	let mut s = viewer(now, Start::Live { back: 1 });
	let (stream, from) = s.wants_segments().unwrap();
	assert_eq!((stream, from), (1, 0));
	s.handle_segments(now, window.lookup(from, 8));
	let msgs = sent(&mut s);
	let seqs: Vec<u64> = msgs
		.iter()
		.filter_map(|m| if let Message::Header(h) = m { Some(h.payload.sequence) } else { None })
		.collect();
	assert_eq!(seqs, vec![3, 4]);
	assert_eq!(s.wants_segments(), Some((1, 5)));
	window.insert(seg(5)).unwrap();
	let the_end = end(6);
	window.end(the_end.clone()).unwrap();
	s.handle_segments(now, window.lookup(5, 8));
	let msgs = sent(&mut s);
	// Forwarded exactly as the origin signed it (sr25519 signatures are randomised).
	assert_eq!(msgs.last(), Some(&Message::End(the_end)));
	assert_eq!(s.wants_segments(), None);
}

#[test]
fn viewer_starting_at_a_sequence_gets_the_oldest_held_if_it_is_gone() {
	let now: Millis = 0;
	let mut window = LiveWindow::new(WindowConfig { max_segments: 3, max_bytes: usize::MAX });
	for i in 0..10 {
		window.insert(seg(i)).unwrap();
	}
	let mut s = viewer(now, Start::At(2));
	s.handle_segments(now, window.lookup(0, 8));
	assert_eq!(s.wants_segments(), Some((1, 10)));
}

#[test]
fn lagging_viewer_is_closed_as_slow_consumer() {
	let now: Millis = 0;
	let mut window = LiveWindow::new(WindowConfig { max_segments: 2, max_bytes: usize::MAX });
	let mut s = viewer(now, Start::At(0));
	s.handle_segments(now, window.lookup(0, 8));
	for i in 0..5 {
		window.insert(seg(i)).unwrap();
	}
	s.handle_segments(now, window.lookup(0, 8));
	assert_eq!(closed_with(&mut s), ErrorCode::SlowConsumer);
}

#[test]
fn a_peer_that_pings_and_never_reads_is_closed() {
	let now: Millis = 0;
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
	let now: Millis = 0;
	let mut window = LiveWindow::new(WindowConfig::default());
	for i in 0..10 {
		window.insert(seg(i)).unwrap();
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

/// Found by the `session` fuzz target: a publisher that replays one valid signed `End` (any
/// viewer of the stream received it) and never reads grew its send queue without bound, one
/// echoed `End` per `End` sent; unread acks of replayed segments did the same, slower.
#[test]
fn a_publisher_that_sends_ends_or_segments_and_never_reads_is_closed() {
	let now: Millis = 0;
	let the_end = end(8);
	let segment = seg(7);
	for ends in [true, false] {
		let mut cfg = config();
		cfg.max_send_queue_bytes = 1000;
		let mut s = ServerSession::new(now, cfg);
		s.handle_frame(now, body(&hello(Role::Publisher)));
		s.handle_frame(now, body(&publish(&s, 1)));
		// Nobody calls poll_transmit.
		for _ in 0..1000 {
			if ends {
				s.handle_frame(now, body(&Message::End(the_end.clone())));
			} else {
				for f in &segment.frames {
					s.handle_frame(now, f.slice(LENGTH_PREFIX..));
				}
			}
			if s.is_closed() {
				break;
			}
		}
		assert!(s.is_closed(), "publisher still open after 1000 unread answers (ends: {ends})");
		assert_eq!(closed_with(&mut s), ErrorCode::SlowConsumer);
	}
}

#[test]
fn publisher_segments_are_verified_stored_and_acked() {
	let now: Millis = 0;
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Publisher)));
	s.handle_frame(now, body(&publish(&s, 1)));
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
	assert_eq!(got.chunks, segment.chunks);
	// What the window keeps of a chunk is its frame's copy, not also the buffer the frame was
	// read into (which a slice of it would keep alive): each chunk's data lies in its frame.
	for (chunk, frame) in got.chunks.iter().zip(&got.frames[1..]) {
		let (start, end) = (frame.as_ptr() as usize, frame.as_ptr() as usize + frame.len());
		let data = chunk.as_ptr() as usize;
		assert!(start <= data && data + chunk.len() <= end, "chunk data outside its frame");
	}
	assert!(matches!(&events[2], SessionEvent::End(e) if *e == the_end), "{events:?}");
	let msgs = sent(&mut s);
	assert!(matches!(msgs[1], Message::Ack { stream: 1, sequence: 7 }));
	assert_eq!(msgs[2], Message::End(the_end));
}

#[test]
fn an_end_not_signed_by_the_origin_is_refused_and_closes_the_publisher() {
	let now: Millis = 0;
	let mut window = LiveWindow::new(WindowConfig::default());
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Publisher)));
	s.handle_frame(now, body(&publish(&s, 1)));
	// Anybody can say `Publish`; only the origin's key can end the stream.
	let forged =
		Signed::sign(end(3).payload, &sp_core::sr25519::Pair::from_string("//Eve", None).unwrap());
	s.handle_frame(now, body(&Message::End(forged)));
	let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
	assert!(!events.iter().any(|e| matches!(e, SessionEvent::End(_))), "{events:?}");
	assert_eq!(closed_with(&mut s), ErrorCode::BadSignature);
	// An end for another chain does not pass either.
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Publisher)));
	s.handle_frame(now, body(&publish(&s, 1)));
	let mut other_chain = end(3).payload;
	other_chain.genesis_hash = [9; 32];
	s.handle_frame(now, body(&Message::End(Signed::sign(other_chain, &origin()))));
	assert!(s.is_closed());
	assert!(window.lookup(0, 1).ended.is_none());
	window.end(end(3)).unwrap();
	assert!(window.lookup(0, 1).ended.is_some());
}

#[test]
fn publisher_with_bad_signature_is_closed() {
	let now: Millis = 0;
	let mallory = sp_core::sr25519::Pair::from_string("//Mallory", None).unwrap();
	let bad = Segment::build(&mallory, [0; 32], 1, 0, 0, 2000, Bytes::from_static(b"x"), 512);
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Publisher)));
	s.handle_frame(now, body(&publish(&s, 1)));
	s.handle_frame(now, bad.frames[0].slice(LENGTH_PREFIX..));
	assert_eq!(closed_with(&mut s), ErrorCode::BadSignature);
}

#[test]
fn publishing_a_stream_without_an_origin_key_is_refused() {
	let now: Millis = 0;
	let mut s = ServerSession::new(now, SessionConfig::default());
	s.handle_frame(now, body(&hello(Role::Publisher)));
	s.handle_frame(now, body(&publish(&s, 1)));
	assert_eq!(closed_with(&mut s), ErrorCode::UnknownStream);
}

#[test]
fn protocol_violations_close_with_a_clear_code() {
	let now: Millis = 0;
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
	];
	for (msgs, code) in cases {
		let mut s = ServerSession::new(now, config());
		for m in &msgs {
			s.handle_frame(now, body(m));
		}
		assert_eq!(closed_with(&mut s), code, "{msgs:?}");
	}
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Publisher)));
	s.handle_frame(now, body(&publish(&s, 1)));
	s.handle_frame(now, body(&Message::Ack { stream: 1, sequence: 0 }));
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage, "ack from a publisher");
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, Bytes::from_static(&[42, 1, 2]));
	assert_eq!(closed_with(&mut s), ErrorCode::UnknownMessage);
	let mut s = ServerSession::new(now, config());
	s.handle_read_error(now, FrameError::TooLarge { len: 10, max: 1 });
	assert_eq!(closed_with(&mut s), ErrorCode::FrameTooLarge);
}

#[test]
fn silent_clients_time_out() {
	let now: Millis = 0;
	let mut s = ServerSession::new(now, config());
	assert_eq!(s.poll_timeout(), Some(now + 5_000));
	s.handle_timeout(now + 4_000);
	assert!(!s.is_closed());
	s.handle_timeout(now + 5_000);
	assert_eq!(closed_with(&mut s), ErrorCode::IdleTimeout);

	let mut s = viewer(now, Start::At(0));
	let later = now + 20_000;
	s.handle_frame(later, body(&Message::Ping(3)));
	assert!(matches!(sent(&mut s)[..], [Message::Pong(3)]));
	s.handle_timeout(now + 31_000);
	assert!(!s.is_closed());
	s.handle_timeout(later + 30_000);
	assert_eq!(closed_with(&mut s), ErrorCode::IdleTimeout);
}

fn p2p_viewer(now: Millis) -> ServerSession {
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Viewer)));
	assert!(matches!(s.poll_event(), Some(SessionEvent::AdmissionRequest)));
	s.handle_admission(now, Ok(AdmissionMode::P2p));
	assert!(matches!(sent(&mut s)[..], [Message::Welcome { mode: AdmissionMode::P2p, .. }]));
	assert!(s.is_p2p() && s.is_viewer());
	s
}

/// A P2P viewer that joined stream 1 as viewer key 1 and got its pass (frames read).
fn joined_p2p_viewer(now: Millis) -> ServerSession {
	let mut s = p2p_viewer(now);
	s.handle_frame(now, body(&join(&s, 1)));
	let _ = s.poll_event();
	s.handle_joined(now, Ok((pass(), vec![])), RENEW);
	let _ = sent(&mut s);
	s
}

fn peer_info(n: u8) -> PeerInfo {
	PeerInfo { peer_id: vec![n; 38], addrs: vec![vec![n; 10]] }
}

fn viewer_key(n: u8) -> sp_core::sr25519::Pair {
	sp_core::sr25519::Pair::from_string(&format!("//Viewer{n}"), None).unwrap()
}

/// Viewer `n`'s `Join` for stream 1, with its proof over `s`'s challenge.
fn join(s: &ServerSession, n: u8) -> Message {
	let (key, peer) = (viewer_key(n), peer_info(n));
	let proof = crate::p2p::join::sign_join(&key, &[0; 32], s.challenge(), 1, &peer);
	Message::Join { stream: 1, viewer: key.public(), peer, proof }
}

const RENEW: Duration = Duration::from_secs(60);

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
	let now: Millis = 0;
	let mut s = p2p_viewer(now);
	s.handle_frame(now, body(&join(&s, 1)));
	match s.poll_event() {
		Some(SessionEvent::JoinRequest { stream: 1, viewer, peer }) => {
			assert_eq!((viewer, peer), (viewer_key(1).public(), peer_info(1)));
		}
		other => panic!("{other:?}"),
	}
	let pass = pass();
	s.handle_joined(now, Ok((pass.clone(), vec![peer_info(2)])), RENEW);
	assert_eq!(sent(&mut s), vec![Message::Joined { pass, peers: vec![peer_info(2)] }]);
	// Fetches name segments whose headers were sent.
	let mut window = LiveWindow::new(WindowConfig::default());
	for i in 0..5 {
		window.insert(seg(i)).unwrap();
	}
	let (_, from) = s.wants_segments().unwrap();
	s.handle_p2p_segments(now, window.lookup(from, 100), |_| vec![]);
	assert_eq!(sent(&mut s).len(), 5);

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
	let now: Millis = 0;
	let mut s = p2p_viewer(now);
	// No feed before Joined.
	assert_eq!(s.wants_segments(), None);
	s.handle_frame(now, body(&join(&s, 1)));
	let _ = s.poll_event();
	s.handle_joined(now, Ok((pass(), vec![])), RENEW);
	let _ = sent(&mut s);
	let mut window = LiveWindow::new(WindowConfig::default());
	for i in 0..12 {
		window.insert(seg(i)).unwrap();
	}
	let (stream, from) = s.wants_segments().expect("joined sessions take the feed");
	assert_eq!(stream, 1);
	// Seeds: chunk 0 of even segments.
	let seeded = |seg: &Segment| if seg.sequence().is_multiple_of(2) { vec![0] } else { vec![] };
	s.handle_p2p_segments(now, window.lookup(from, 100), seeded);
	let msgs = sent(&mut s);
	// The last `p2p_header_backlog` (8) segments: headers, and the seeded chunks after them.
	let headers: Vec<u64> = msgs
		.iter()
		.filter_map(|m| if let Message::Header(h) = m { Some(h.payload.sequence) } else { None })
		.collect();
	assert_eq!(headers, (4..12).collect::<Vec<_>>());
	let chunks: Vec<(u64, u32)> = msgs
		.iter()
		.filter_map(|m| if let Message::Chunk(c) = m { Some((c.sequence, c.index)) } else { None })
		.collect();
	assert_eq!(chunks, vec![(4, 0), (6, 0), (8, 0), (10, 0)]);
	// Only new segments later, then the end once everything was sent.
	window.insert(seg(12)).unwrap();
	window.end(end(13)).unwrap();
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
	let now: Millis = 0;
	// Fetch before Join; Subscribe in P2P mode; Join from a direct viewer.
	let mut s = p2p_viewer(now);
	s.handle_frame(now, body(&Message::Fetch { stream: 1, sequence: 0, index: 0 }));
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
	let mut s = p2p_viewer(now);
	s.handle_frame(now, body(&Message::Subscribe { stream: 1, start: Start::At(0) }));
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
	let mut s = viewer(now, Start::At(0));
	s.handle_frame(now, body(&join(&s, 1)));
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
	// Fetch while the join is still being answered.
	let mut s = p2p_viewer(now);
	s.handle_frame(now, body(&join(&s, 1)));
	s.handle_frame(now, body(&Message::Fetch { stream: 1, sequence: 0, index: 0 }));
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
	// A peer id past its limit.
	let mut s = p2p_viewer(now);
	let big = Message::Join {
		stream: 1,
		viewer: PublicKey::from_raw([1; 32]),
		peer: PeerInfo { peer_id: vec![0; 65], addrs: vec![] },
		proof: dsp_primitives::Signature::from_raw([0; 64]),
	};
	s.handle_frame(now, body(&big));
	assert_eq!(closed_with(&mut s), ErrorCode::Malformed);
	// The tracker refused.
	let mut s = p2p_viewer(now);
	s.handle_frame(now, body(&join(&s, 1)));
	s.handle_joined(now, Err((ErrorCode::UnknownStream, "too many swarms".into())), RENEW);
	assert_eq!(closed_with(&mut s), ErrorCode::UnknownStream);
}

#[test]
fn a_join_without_a_valid_proof_of_the_viewer_key_gets_no_pass() {
	let now: Millis = 0;
	let other = p2p_viewer(now);
	let forged = |s: &ServerSession| {
		let Message::Join { stream, viewer, peer, proof } = join(s, 1) else { unreachable!() };
		[
			// Signed by another key than the one named.
			Message::Join { viewer: viewer_key(2).public(), stream, peer: peer.clone(), proof },
			// Signed over another session's challenge (a replayed proof).
			join(&other, 1),
			// For another stream.
			Message::Join { stream: 2, viewer, peer: peer.clone(), proof },
			// Over other addresses than those sent.
			Message::Join { stream, viewer, peer: peer_info(9), proof },
			// No signature at all.
			Message::Join {
				stream,
				viewer,
				peer,
				proof: dsp_primitives::Signature::from_raw([0; 64]),
			},
		]
	};
	for i in 0..5 {
		let mut s = p2p_viewer(now);
		let join = forged(&s)[i].clone();
		s.handle_frame(now, body(&join));
		assert!(matches!(s.poll_event(), Some(SessionEvent::BadJoinProof)), "case {i}");
		assert!(matches!(
			s.poll_event(),
			Some(SessionEvent::Closed { code: Some(ErrorCode::BadSignature), .. })
		));
		assert!(matches!(sent(&mut s)[..], [Message::Error { code: ErrorCode::BadSignature, .. }]));
		// Nothing the tracker could answer: the session is closed.
		s.handle_joined(now, Ok((pass(), vec![])), RENEW);
		assert!(sent(&mut s).is_empty(), "case {i}");
	}
}

#[test]
fn a_joined_viewers_pass_is_renewed_every_period_while_it_stays() {
	let now: Millis = 0;
	let mut s = joined_p2p_viewer(now);
	assert_eq!(s.poll_timeout(), Some(30_000), "the idle timeout comes first");
	// Pings keep it alive; the renewal comes due after 60 s.
	for t in [25_000, 50_000] {
		s.handle_frame(t, body(&Message::Ping(1)));
		s.handle_timeout(t);
	}
	let _ = sent(&mut s);
	assert!(s.poll_event().is_none());
	assert_eq!(s.poll_timeout(), Some(60_000));
	s.handle_timeout(60_000);
	assert!(matches!(s.poll_event(), Some(SessionEvent::PassDue { stream: 1 })));
	// Asked once, not at every later timer.
	s.handle_timeout(60_001);
	assert!(s.poll_event().is_none());
	let mut renewed = pass();
	renewed.payload.max_units = 50;
	s.handle_pass(60_002, renewed.clone());
	assert_eq!(sent(&mut s), vec![Message::Pass(renewed.clone())]);
	assert_eq!(s.poll_timeout(), Some(80_000), "idle first again; renewal at 120 002");
	// A session that closed gets no pass.
	s.close(ErrorCode::Shutdown, "bye");
	let _ = sent(&mut s);
	s.handle_pass(120_002, renewed);
	assert!(sent(&mut s).is_empty());
}

#[test]
fn refused_viewer_gets_the_redirect_then_full() {
	let now: Millis = 0;
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Viewer)));
	assert!(matches!(s.poll_event(), Some(SessionEvent::AdmissionRequest)));
	let servers: Vec<ServerAddrs> = (1..=12).map(streamer).collect();
	s.handle_admission_or_redirect(now, Err(ErrorCode::Full), servers.clone());
	assert!(s.is_closed());
	let msgs = sent(&mut s);
	assert_eq!(msgs.len(), 2, "{msgs:?}");
	assert_eq!(msgs[0], Message::Redirect { servers: servers[..MAX_REDIRECT_SERVERS].to_vec() });
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
	let now: Millis = 0;
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
	let now: Millis = 0;
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
	s.handle_frame(now, body(&publish(&s, 1)));
	s.handle_frame(now, switched.clone());
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
	let mut s = p2p_viewer(now);
	s.handle_frame(now, switched);
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
	assert!(
		!std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, SessionEvent::Switched { .. })),
		"nothing counted"
	);
}

#[test]
fn subscribing_to_a_stream_without_origin_key_is_refused() {
	let now: Millis = 0;
	let mut s = ServerSession::new(now, SessionConfig::default());
	s.handle_frame(now, body(&hello(Role::Viewer)));
	s.handle_admission(now, Ok(AdmissionMode::Direct));
	s.handle_frame(now, body(&Message::Subscribe { stream: 1, start: Start::At(0) }));
	assert!(
		!std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, SessionEvent::Subscribed(_)))
	);
	assert_eq!(closed_with(&mut s), ErrorCode::UnknownStream);
}

#[test]
fn publisher_is_told_where_to_continue() {
	let now: Millis = 0;
	let mut window = LiveWindow::new(WindowConfig::default());
	assert_eq!(window.next_sequence(), 0);
	for i in 0..3 {
		window.insert(seg(i)).unwrap();
	}
	assert_eq!(window.next_sequence(), 3);
	let (broadcast, next_sequence) = window.held();
	window.end(end(5)).unwrap();
	assert_eq!(window.next_sequence(), 5);
	assert_eq!(window.held(), (None, 0), "an ended broadcast is not continued");
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Publisher)));
	s.handle_frame(now, body(&publish(&s, 1)));
	s.handle_publish_ready(now, broadcast, next_sequence);
	let msgs = sent(&mut s);
	assert_eq!(msgs[1], Message::Expect { stream: 1, broadcast: Some(0), next_sequence: 3 });
}

#[test]
fn a_refused_publisher_still_gets_the_acks_queued_before_the_error() {
	let now: Millis = 0;
	let mut s = ServerSession::new(now, config());
	s.handle_frame(now, body(&hello(Role::Publisher)));
	s.handle_frame(now, body(&publish(&s, 1)));
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
	let now: Millis = 0;
	let mut window = LiveWindow::new(WindowConfig::default());
	for i in 3..8 {
		window.insert(seg(i)).unwrap();
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
	let t0: Millis = 0;
	let mut window = LiveWindow::new(WindowConfig::default());
	for i in 0..10 {
		window.insert(seg(i)).unwrap();
	}
	let mut cfg = config();
	cfg.on_demand_lead = Duration::from_secs(5);
	let mut s = ServerSession::new(t0, cfg);
	s.handle_frame(t0, body(&hello(Role::Viewer)));
	s.handle_admission(t0, Ok(AdmissionMode::Direct));
	s.handle_frame(t0, body(&Message::Subscribe { stream: 1, start: Start::At(0) }));
	sent(&mut s);
	let feed = |s: &mut ServerSession, now: Millis| {
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
	assert_eq!(s.poll_timeout(), Some(t0 + 1_000));
	s.handle_timeout(t0 + 999);
	feed(&mut s, t0 + 999);
	assert_eq!(s.stats().segments_sent, 3);
	s.handle_timeout(t0 + 1_000);
	feed(&mut s, t0 + 1_000);
	assert_eq!(s.stats().segments_sent, 4);
	assert_eq!(s.poll_timeout(), Some(t0 + 3_000));
	// Then one segment per 2 s of play time, to the end and its End.
	let mut now = t0 + 1_000;
	let mut steps = 0;
	while s.stats().segments_sent < 10 {
		now = s.poll_timeout().unwrap();
		s.handle_timeout(now);
		feed(&mut s, now);
		steps += 1;
		assert!(steps < 20, "no progress");
	}
	assert_eq!(now, t0 + 13_000);
}

#[test]
fn a_publish_without_a_valid_proof_is_refused_before_anything_is_held() {
	let now: Millis = 0;
	let eve = sp_core::sr25519::Pair::from_string("//Eve", None).unwrap();
	let other_session = ServerSession::new(now, config());
	let Message::Publish { proof: replayed, .. } = publish(&other_session, 1) else {
		unreachable!()
	};
	for what in ["another key", "another session's challenge (replayed)", "another stream"] {
		let mut s = ServerSession::new(now, config());
		s.handle_frame(now, body(&hello(Role::Publisher)));
		let proof = match what {
			"another key" => crate::protocol::publish_proof(&eve, [0; 32], *s.challenge(), 1),
			"another stream" => {
				crate::protocol::publish_proof(&origin(), [0; 32], *s.challenge(), 2)
			}
			_ => replayed,
		};
		s.handle_frame(now, body(&Message::Publish { stream: 1, proof }));
		let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
		assert!(
			!events.iter().any(|e| matches!(e, SessionEvent::Publishing(_))),
			"{what}: {events:?}"
		);
		assert_eq!(closed_with(&mut s), ErrorCode::BadSignature, "{what}");
	}
}

#[test]
fn sessions_that_take_no_data_and_publish_nothing_are_closed_whatever_they_ping() {
	let t0: Millis = 0;
	let cfg = config();
	let setup = millis(cfg.setup_timeout);
	let first = millis(cfg.first_segment_timeout);
	// Pings every second until `until` (or the close), firing timers as a driver would.
	let pings = |s: &mut ServerSession, until: Millis| {
		let mut now = t0;
		while now < until && !s.is_closed() {
			s.handle_frame(now, body(&Message::Ping(1)));
			now += 1000;
			if s.poll_timeout().is_some_and(|at| at <= now) {
				s.handle_timeout(now);
			}
		}
	};
	// A viewer that never subscribes.
	let mut s = ServerSession::new(t0, config());
	s.handle_frame(t0, body(&hello(Role::Viewer)));
	s.handle_admission(t0, Ok(AdmissionMode::Direct));
	assert!(s.poll_timeout().is_some_and(|at| at <= t0 + setup));
	pings(&mut s, t0 + setup + 2000);
	assert_eq!(closed_with(&mut s), ErrorCode::IdleTimeout, "viewer without subscribe");
	// A P2P viewer that never joins.
	let mut s = ServerSession::new(t0, config());
	s.handle_frame(t0, body(&hello(Role::Viewer)));
	s.handle_admission(t0, Ok(AdmissionMode::P2p));
	pings(&mut s, t0 + setup + 2000);
	assert_eq!(closed_with(&mut s), ErrorCode::IdleTimeout, "p2p viewer without join");
	// A publisher that never says `Publish`, and one that sends no segment after it.
	let mut s = ServerSession::new(t0, config());
	s.handle_frame(t0, body(&hello(Role::Publisher)));
	pings(&mut s, t0 + setup + 2000);
	assert_eq!(closed_with(&mut s), ErrorCode::IdleTimeout, "publisher without publish");
	let mut s = ServerSession::new(t0, config());
	s.handle_frame(t0, body(&hello(Role::Publisher)));
	s.handle_frame(t0, body(&publish(&s, 1)));
	assert!(s.poll_timeout().is_some_and(|at| at <= t0 + first));
	pings(&mut s, t0 + first + 2000);
	assert_eq!(closed_with(&mut s), ErrorCode::IdleTimeout, "publisher without a segment");
	// A publisher that delivered a segment, and a subscribed viewer that takes nothing for
	// now (a stalled reader of a live stream): neither is closed by these timeouts.
	let mut p = ServerSession::new(t0, config());
	p.handle_frame(t0, body(&hello(Role::Publisher)));
	p.handle_frame(t0, body(&publish(&p, 1)));
	for f in &seg(0).frames {
		p.handle_frame(t0, f.slice(LENGTH_PREFIX..));
	}
	let mut v = viewer(t0, Start::Live { back: 0 });
	let later = t0 + setup.max(first) + 5000;
	pings(&mut p, later);
	pings(&mut v, later);
	assert!(!p.is_closed() && !v.is_closed());
}

/// Attack 6 of issue 11: a P2P session pulled every chunk of the window from the node (and so
/// the whole stream, past `max_streams`). Only the newest headers' segments are served, within
/// the session's play-time budget; the rest is `NotHeld`, and a session that keeps asking is
/// closed.
#[test]
fn a_p2p_viewer_fetches_only_what_its_urgent_window_needs() {
	let now: Millis = 0;
	let mut s = joined_p2p_viewer(now);
	let mut window = LiveWindow::new(WindowConfig { max_segments: 30, ..Default::default() });
	for i in 0..30 {
		window.insert(seg(i)).unwrap();
	}
	let (_, from) = s.wants_segments().unwrap();
	s.handle_p2p_segments(now, window.lookup(from, 100), |_| vec![]);
	let _ = sent(&mut s);
	let fetch_all = |s: &mut ServerSession| {
		let mut served = Vec::new();
		for seq in 0..30u64 {
			for index in 0..2 {
				s.handle_frame(now, body(&Message::Fetch { stream: 1, sequence: seq, index }));
				if let Some(SessionEvent::FetchRequest { sequence, index, .. }) = s.poll_event() {
					let segment = window.lookup(sequence, 1).segments.into_iter().next();
					s.handle_fetch(now, sequence, index, segment);
				}
				if s.is_closed() {
					// The error frame stays queued for `closed_with`.
					return served;
				}
				for m in sent(s) {
					if let Message::Chunk(c) = m {
						served.push((c.sequence, c.index));
					}
				}
			}
		}
		served
	};
	// The window is the newest 8 headers sent (22..30), two chunks each, 16 s of play time:
	// exactly the burst.
	let served = fetch_all(&mut s);
	let expected: Vec<(u64, u32)> = (22..30).flat_map(|q| [(q, 0), (q, 1)]).collect();
	assert_eq!(served, expected);
	assert!(!s.is_closed());
	// Asking again at once: nothing left in the budget, and the refusals close the session.
	assert!(fetch_all(&mut s).is_empty());
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
}

/// The origin restarted the stream as a newer broadcast: a viewer fed the old one continues
/// with the new one from its oldest segment, and never gets the old one again.
#[test]
fn a_viewer_continues_with_a_newer_broadcast() {
	let now: Millis = 0;
	let seg_of = |broadcast: u64, seq: u64| {
		let data = Bytes::from(vec![seq as u8; 100]);
		Arc::new(Segment::build(&origin(), [0; 32], 1, broadcast, seq, 2000, data, 512))
	};
	let headers = |msgs: Vec<Message>| -> Vec<(u64, u64)> {
		msgs.iter()
			.filter_map(|m| match m {
				Message::Header(h) => Some((h.payload.broadcast, h.payload.sequence)),
				_ => None,
			})
			.collect()
	};
	let mut window = LiveWindow::new(WindowConfig::default());
	for i in 0..3 {
		window.insert(seg_of(5, i)).unwrap();
	}
	let mut s = viewer(now, Start::At(0));
	s.handle_segments(now, window.lookup(0, 8));
	assert_eq!(headers(sent(&mut s)), vec![(5, 0), (5, 1), (5, 2)]);
	window.insert(seg_of(6, 0)).unwrap();
	let (_, from) = s.wants_segments().unwrap();
	s.handle_segments(now, window.lookup(from, 8));
	window.insert(seg_of(6, 1)).unwrap();
	let (_, from) = s.wants_segments().unwrap();
	assert_eq!(from, 0, "continues the new broadcast from its oldest segment");
	s.handle_segments(now, window.lookup(from, 8));
	assert_eq!(headers(sent(&mut s)), vec![(6, 0), (6, 1)]);
	assert!(window.insert(seg_of(5, 3)).is_err(), "the old broadcast is refused");
}

/// A `Fetch` for a chunk past a held segment's last is refused and counted like the others
/// (it was answered `NotHeld` for free, forever: a flood of window locks and lookups).
#[test]
fn fetches_past_a_segments_last_chunk_count_as_refused() {
	let now: Millis = 0;
	let mut s = joined_p2p_viewer(now);
	let mut window = LiveWindow::new(WindowConfig::default());
	window.insert(seg(0)).unwrap();
	let (_, from) = s.wants_segments().unwrap();
	s.handle_p2p_segments(now, window.lookup(from, 8), |_| vec![]);
	let _ = sent(&mut s);
	for _ in 0..=config().p2p_fetch_max_refused {
		s.handle_frame(now, body(&Message::Fetch { stream: 1, sequence: 0, index: u32::MAX }));
		if let Some(SessionEvent::FetchRequest { sequence, index, .. }) = s.poll_event() {
			let segment = window.lookup(sequence, 1).segments.into_iter().next();
			s.handle_fetch(now, sequence, index, segment);
		}
		if s.is_closed() {
			break;
		}
		assert!(matches!(sent(&mut s)[..], [Message::NotHeld { .. }]));
	}
	assert_eq!(closed_with(&mut s), ErrorCode::UnexpectedMessage);
}
