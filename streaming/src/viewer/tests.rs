//! Tests of [`ViewerCore`], and the helpers the tests of the other viewer files share.

use super::*;
use crate::{
	protocol::{decode_body, LENGTH_PREFIX},
	segment::Segment,
};
use sp_core::Pair;

use dsp_primitives::{Signed, StreamEnd};

pub(super) fn origin() -> sp_core::sr25519::Pair {
	sp_core::sr25519::Pair::from_string("//Origin", None).unwrap()
}

pub(super) fn seg(seq: u64) -> Segment {
	seg_of(0, seq)
}

/// Segment `seq` of broadcast `broadcast`.
pub(super) fn seg_of(broadcast: u64, seq: u64) -> Segment {
	let data = Bytes::from(vec![seq as u8; 3000]);
	Segment::build(&origin(), [0; 32], 1, broadcast, seq, 2000, data, 1024)
}

pub(super) fn secs(s: u64) -> Duration {
	Duration::from_secs(s)
}

/// (sequence, discontinuity) of everything `poll` hands out.
pub(super) fn in_order(poll: impl FnMut() -> Option<Delivered>) -> Vec<(u64, bool)> {
	std::iter::from_fn(poll).map(|d| (d.segment.sequence(), d.discontinuity)).collect()
}

/// Feeds a segment's frames to a viewer connection.
fn feed(v: &mut ViewerCore, now: Millis, conn: ConnId, s: &Segment) {
	for f in &s.frames {
		v.handle_message(now, conn, decode_body(f.slice(LENGTH_PREFIX..)).unwrap());
	}
}

fn welcome() -> Message {
	Message::Welcome {
		version: crate::protocol::PROTOCOL_VERSION,
		mode: dsp_primitives::AdmissionMode::Direct,
		max_frame_len: 1 << 20,
		challenge: [0; crate::protocol::CHALLENGE_LEN],
	}
}

/// Connection 1 (QUIC, welcomed) delivers segments 0 and 1, then the viewer is forced to
/// TCP: connection 2 subscribes at 2. Returns segments `0..count`.
fn deliver_two_then_force_tcp(v: &mut ViewerCore, t0: Millis, count: u64) -> Vec<Segment> {
	v.handle_message(t0, 1, welcome());
	let segs: Vec<_> = (0..count).map(seg).collect();
	feed(v, t0, 1, &segs[0]);
	feed(v, t0, 1, &segs[1]);
	v.force_transport(t0, Transport::Tcp);
	assert_eq!(
		v.poll_action(),
		Some(ViewerAction::Connect {
			conn: 2,
			server: 0,
			transport: Transport::Tcp,
			start: Start::At(2),
			switched_from: Some(Transport::Quic),
		})
	);
	segs
}

#[test]
fn viewer_switch_resubscribes_at_the_next_needed_segment() {
	let t0: Millis = 0;
	let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
	v.start(t0);
	assert_eq!(
		v.poll_action(),
		Some(ViewerAction::Connect {
			conn: 1,
			server: 0,
			transport: Transport::Quic,
			start: Start::Live { back: 2 },
			switched_from: None,
		})
	);
	let segs = deliver_two_then_force_tcp(&mut v, t0, 6);
	// Overlap: both deliver 2; the old one is closed after the new one's first segment.
	feed(&mut v, t0, 1, &segs[2]);
	v.handle_message(t0, 2, welcome());
	feed(&mut v, t0, 2, &segs[2]);
	assert!(matches!(v.poll_action(), Some(ViewerAction::Close { conn: 1, .. })));
	feed(&mut v, t0, 2, &segs[3]);
	let got: Vec<u64> =
		std::iter::from_fn(|| v.poll_delivered()).map(|d| d.segment.sequence()).collect();
	assert_eq!(got, vec![0, 1, 2, 3]);
	assert_eq!(v.stats().buffer.duplicates, 1);
}

#[test]
fn viewer_rejects_bad_data_and_moves_on() {
	let t0: Millis = 0;
	let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
	v.start(t0);
	v.poll_action();
	v.handle_message(t0, 1, welcome());
	let mallory = sp_core::sr25519::Pair::from_string("//Mallory", None).unwrap();
	let bad = Segment::build(&mallory, [0; 32], 1, 0, 0, 2000, Bytes::from_static(b"x"), 1024);
	feed(&mut v, t0, 1, &bad);
	assert_eq!(
		v.poll_action(),
		Some(ViewerAction::Close {
			conn: 1,
			code: Some(ErrorCode::BadSignature),
			reason: "segment 0: bad header signature".into()
		})
	);
	assert!(matches!(
		v.poll_action(),
		Some(ViewerAction::Connect { conn: 2, transport: Transport::Tcp, .. })
	));
	assert_eq!(v.stats().rejected_connections, 1);
}

#[test]
fn viewer_closes_its_connections_once_the_stream_ended() {
	let t0: Millis = 0;
	let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
	v.start(t0);
	v.poll_action();
	v.handle_message(t0, 1, welcome());
	feed(&mut v, t0, 1, &seg(0));
	let end = StreamEnd { genesis_hash: [0; 32], stream: 1, broadcast: 0, next_sequence: 1 };
	// A forged end is bad input: that connection is dropped and the stream goes on.
	let forged =
		Signed::sign(end.clone(), &sp_core::sr25519::Pair::from_string("//Eve", None).unwrap());
	v.handle_message(t0, 1, Message::End(forged));
	assert!(!v.is_ended());
	assert_eq!(v.stats().rejected_connections, 1);
	while v.poll_action().is_some() {}
	v.handle_message(t0, 2, welcome());
	feed(&mut v, t0, 2, &seg(0));
	v.handle_message(t0, 2, Message::End(Signed::sign(end, &origin())));
	assert!(v.is_ended());
	assert!(matches!(v.poll_action(), Some(ViewerAction::Close { conn: 2, .. })));
	// The connection's end is not a failure: no reconnect.
	v.handle_closed(t0, 2, "closed".into());
	assert_eq!(v.poll_action(), None);
	assert_eq!(v.poll_timeout(), None);
}

#[test]
fn switch_completes_only_when_the_new_connection_has_the_next_needed_segment() {
	let t0: Millis = 0;
	let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
	v.start(t0);
	v.poll_action();
	let segs = deliver_two_then_force_tcp(&mut v, t0, 7);
	v.handle_message(t0, 2, welcome());
	// The new connection's server skipped ahead to 4 while 2 and 3 are still in flight on
	// the old connection: closing it now would lose them.
	feed(&mut v, t0, 2, &segs[4]);
	assert_eq!(v.poll_action(), None, "old connection closed before it delivered 2 and 3");
	assert_eq!(v.transport(), Some(Transport::Quic));
	feed(&mut v, t0, 1, &segs[2]);
	feed(&mut v, t0, 1, &segs[3]);
	assert_eq!(v.poll_action(), None);
	// Now the new connection delivers the next segment the player needs: switch done.
	feed(&mut v, t0, 2, &segs[5]);
	assert!(matches!(v.poll_action(), Some(ViewerAction::Close { conn: 1, .. })));
	assert_eq!(v.transport(), Some(Transport::Tcp));
	feed(&mut v, t0, 2, &segs[6]);
	assert_eq!(sequences(&mut v), (0..7).map(|s| (s, false)).collect::<Vec<_>>());
	assert_eq!(v.stats().buffer.skipped, 0);
}

fn server(n: u8) -> ServerAddrs {
	ServerAddrs { tcp: Some(format!("10.0.0.{n}:7700")), quic: Some(format!("10.0.0.{n}:7701")) }
}

/// A viewer over TCP only (no transport fallback in the way) knowing `servers`.
fn tcp_viewer(servers: Vec<ServerAddrs>) -> ViewerCore {
	let mut c = ViewerConfig::new(1, origin().public());
	c.start = Start::At(0);
	c.controller.policy = TransportPolicy::Only(Transport::Tcp);
	c.servers = servers;
	ViewerCore::new(c)
}

/// The connects among the pending actions: (conn, server, start).
fn connects_to(v: &mut ViewerCore) -> Vec<(ConnId, usize, Start)> {
	std::iter::from_fn(|| v.poll_action())
		.filter_map(|a| match a {
			ViewerAction::Connect { conn, server, start, .. } => Some((conn, server, start)),
			ViewerAction::Close { .. } => None,
		})
		.collect()
}

fn full() -> Message {
	Message::error(ErrorCode::Full, "server is full")
}

fn sequences(v: &mut ViewerCore) -> Vec<(u64, bool)> {
	in_order(|| v.poll_delivered())
}

#[test]
fn redirect_moves_to_its_first_target_at_once() {
	let t0: Millis = 0;
	let mut v = tcp_viewer(vec![server(1), server(2)]);
	v.start(t0);
	assert_eq!(connects_to(&mut v), vec![(1, 0, Start::At(0))]);
	// Refused, redirected to 3 (new) then 2 (known).
	v.handle_message(t0, 1, Message::Redirect { servers: vec![server(3), server(2)] });
	// The new target goes right after the current server; the first target is next.
	assert_eq!(v.servers(), &[server(1), server(3), server(2)]);
	assert_eq!(v.current_server(), 1);
	assert_eq!(connects_to(&mut v), vec![(2, 1, Start::At(0))]);
	// The Error that follows the Redirect changes nothing more.
	v.handle_message(t0, 1, full());
	assert_eq!(v.poll_action(), None);
	assert_eq!(
		v.poll_server_change(),
		Some(ServerChange {
			from: server(1),
			to: server(3),
			reason: ServerChangeReason::Redirected
		})
	);
	assert_eq!(v.stats().server_changes, 1);
	// The target plays.
	v.handle_message(t0, 2, welcome());
	feed(&mut v, t0, 2, &seg(0));
	assert_eq!(sequences(&mut v), vec![(0, false)]);
	assert_eq!(v.switches(), &[], "a move is not a transport switch");
}

#[test]
fn redirect_targets_are_bounded_and_only_valid_before_welcome() {
	let t0: Millis = 0;
	let mut c = ViewerConfig::new(1, origin().public());
	c.servers = vec![server(1)];
	c.max_servers = 2;
	let mut v = ViewerCore::new(c);
	v.start(t0);
	v.poll_action();
	v.handle_message(t0, 1, Message::Redirect { servers: vec![server(2), server(3)] });
	assert_eq!(v.servers(), &[server(1), server(2)], "max_servers");
	assert!(matches!(v.poll_action(), Some(ViewerAction::Close { conn: 1, .. })));
	assert!(matches!(v.poll_action(), Some(ViewerAction::Connect { conn: 2, server: 1, .. })));
	// Once welcomed, a Redirect is bad input from that server.
	v.handle_message(t0, 2, welcome());
	v.handle_message(t0, 2, Message::Redirect { servers: vec![server(1)] });
	assert!(matches!(
		v.poll_action(),
		Some(ViewerAction::Close { conn: 2, code: Some(ErrorCode::UnexpectedMessage), .. })
	));
	assert_eq!(v.stats().rejected_connections, 1);
	assert_eq!(v.current_server(), 1);
}

#[test]
fn full_without_redirect_moves_to_the_next_server_after_the_backoff() {
	let t0: Millis = 0;
	let mut v = tcp_viewer(vec![server(1), server(2)]);
	v.start(t0);
	connects_to(&mut v);
	v.handle_message(t0, 1, full());
	assert_eq!(connects_to(&mut v), vec![], "backoff first");
	let at = v.poll_timeout().unwrap();
	assert_eq!(at, t0 + 250);
	v.handle_timeout(at);
	assert_eq!(connects_to(&mut v), vec![(2, 1, Start::At(0))]);
	assert_eq!(v.poll_server_change().unwrap().reason, ServerChangeReason::Full);
	// The last one is full too: around to the first, the backoff doubled.
	v.handle_message(at, 2, full());
	assert_eq!(v.poll_timeout(), Some(at + 500));
	v.handle_timeout(at + 500);
	assert_eq!(connects_to(&mut v), vec![(3, 0, Start::At(0))]);
	assert_eq!(v.stats().server_changes, 2);
}

#[test]
fn failover_after_repeated_failures_continues_the_sequence_without_gap() {
	let t0: Millis = 0;
	let mut v = tcp_viewer(vec![server(1), server(2)]);
	v.start(t0);
	connects_to(&mut v);
	// Server 1 plays 0..=2, then goes away: losing a connection that delivered is not a
	// failed attempt.
	v.handle_message(t0, 1, welcome());
	for i in 0..3 {
		feed(&mut v, t0, 1, &seg(i));
	}
	v.handle_message(t0, 1, Message::error(ErrorCode::Shutdown, "server shutting down"));
	let mut now = t0;
	let mut tried = Vec::new();
	for _ in 0..3 {
		now = v.poll_timeout().expect("a reconnect is scheduled");
		v.handle_timeout(now);
		let c = connects_to(&mut v);
		assert_eq!(c.len(), 1);
		tried.push((c[0].1, c[0].2));
		// Connection refused.
		v.handle_closed(now, c[0].0, "connect failed: refused".into());
	}
	assert_eq!(tried, vec![(0, Start::At(3)); 3], "server 1, resuming at 3");
	assert_eq!(
		v.poll_server_change(),
		Some(ServerChange {
			from: server(1),
			to: server(2),
			reason: ServerChangeReason::Failover { attempts: 3 }
		})
	);
	// The first attempt at server 2 does not wait for the backoff server 1 earned.
	assert_eq!(v.poll_timeout(), Some(now), "server 2 is tried at once");
	v.handle_timeout(now);
	let c = connects_to(&mut v);
	assert_eq!(c, vec![(5, 1, Start::At(3))]);
	// Server 2 holds the same stream: it sends from 3 on (and a stray copy of 2).
	v.handle_message(now, 5, welcome());
	for i in [2, 3, 4, 5] {
		feed(&mut v, now, 5, &seg(i));
	}
	let got = sequences(&mut v);
	assert_eq!(got, (0..6).map(|s| (s, false)).collect::<Vec<_>>());
	let stats = v.stats();
	assert_eq!((stats.buffer.skipped, stats.buffer.delivered), (0, 6));
	assert_eq!(stats.server_changes, 1);
}

#[test]
fn failed_attempts_are_counted_per_server_and_cleared_by_a_segment() {
	let t0: Millis = 0;
	let mut v = tcp_viewer(vec![server(1), server(2)]);
	v.start(t0);
	connects_to(&mut v);
	// Two failures, then a connection that plays: the count starts again.
	v.handle_closed(t0, 1, "refused".into());
	let mut now = v.poll_timeout().unwrap();
	v.handle_timeout(now);
	v.handle_closed(now, 2, "refused".into());
	now = v.poll_timeout().unwrap();
	v.handle_timeout(now);
	assert_eq!(connects_to(&mut v), vec![(2, 0, Start::At(0)), (3, 0, Start::At(0))]);
	v.handle_message(now, 3, welcome());
	feed(&mut v, now, 3, &seg(0));
	v.handle_closed(now, 3, "reset".into());
	// Two more failures: still below failover_after (3) since the segment.
	for _ in 0..2 {
		now = v.poll_timeout().unwrap();
		v.handle_timeout(now);
		let c = connects_to(&mut v);
		assert_eq!(c[0].1, 0);
		v.handle_closed(now, c[0].0, "refused".into());
	}
	assert_eq!(v.poll_server_change(), None);
	assert_eq!(v.current_server(), 0);
}

#[test]
fn a_switch_connection_tells_the_server_where_it_came_from() {
	let t0: Millis = 0;
	let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
	v.start(t0);
	assert!(matches!(
		v.poll_action(),
		Some(ViewerAction::Connect { switched_from: None, transport: Transport::Quic, .. })
	));
	// QUIC never connects: the fallback connection is a switch away from QUIC.
	v.handle_timeout(t0 + 3_000);
	let actions: Vec<_> = std::iter::from_fn(|| v.poll_action()).collect();
	assert!(matches!(
		actions[..],
		[
			ViewerAction::Close { conn: 1, .. },
			ViewerAction::Connect {
				conn: 2,
				transport: Transport::Tcp,
				switched_from: Some(Transport::Quic),
				..
			}
		]
	));
	// A reconnect over the same transport is not a switch.
	v.handle_message(t0 + 3_000, 2, welcome());
	v.handle_closed(t0 + 4_000, 2, "reset".into());
	v.handle_timeout(v.poll_timeout().unwrap());
	assert!(matches!(
		v.poll_action(),
		Some(ViewerAction::Connect { conn: 3, switched_from: None, .. })
	));
}
