//! Tests of the [`Scheduler`](super::Scheduler).

use super::*;

type S = Scheduler<u32>;

fn drain(s: &mut S, now: Millis) -> Vec<ChunkRequest<u32>> {
	std::iter::from_fn(|| s.poll_request(now)).collect()
}

fn events(s: &mut S) -> Vec<SchedulerEvent<u32>> {
	std::iter::from_fn(|| s.poll_event()).collect()
}

/// Two segments of two 1000-byte chunks, 2 s each; peers announce what is given.
fn setup(peers: &[(u32, u64)]) -> S {
	let mut s = S::new(SchedulerConfig::default(), 0, 0);
	s.handle_header(0, 0, 2000, vec![1000, 1000]).unwrap();
	s.handle_header(0, 1, 2000, vec![1000, 1000]).unwrap();
	for &(p, seq) in peers {
		assert!(s.handle_peer_joined(p));
		s.handle_have(p, seq, &ChunkSet::full(2)).unwrap();
	}
	s
}

#[test]
fn urgent_window_falls_back_to_node_works() {
	let mut s = setup(&[(7, 1)]);
	let first = drain(&mut s, 0);
	// Segment 0 is due at 1000 (startup), inside the urgent window: node. Segment 1 (due
	// 3000) only from the peer that holds it.
	assert_eq!(first.iter().filter(|r| r.seq == 0 && r.source == Source::Node).count(), 2);
	assert_eq!(first.iter().filter(|r| r.seq == 1 && r.source == Source::Peer(7)).count(), 2);
	for i in 0..2 {
		s.handle_chunk(100, Source::Node, 0, i, 1000).unwrap();
	}
	assert!(events(&mut s)
		.contains(&SchedulerEvent::Play(PlayEvent::Started { seq: 0, startup_ms: 100 })));
	// The peer never answers. Segment 1 is now due at 2100, urgent from 600.
	let mut now = 100;
	let mut node_asks = vec![];
	let mut cancels = 0;
	while node_asks.len() < 2 {
		now = s.poll_timeout().expect("something is pending");
		assert!(now <= 2100, "fell back too late");
		s.handle_timeout(now);
		for r in drain(&mut s, now) {
			if r.source == Source::Node {
				assert_eq!(r.seq, 1);
				node_asks.push(now);
			}
		}
		cancels += std::iter::from_fn(|| s.poll_cancel()).filter(|c| c.peer == 7).count();
	}
	assert!(
		node_asks.iter().all(|&t| t >= 600),
		"node asked before the urgent window: {node_asks:?}"
	);
	assert!(cancels >= 2, "the silent peer's requests were withdrawn");
	for i in 0..2 {
		assert_eq!(s.handle_chunk(now + 50, Source::Node, 1, i, 1000), Ok(ChunkOutcome::Stored));
	}
	s.handle_timeout(4099);
	assert_eq!(s.play_stats(4099).stalls, 0, "segment 1 came in time");
	// Segment 1 ends at 4100; the stream has no segment 2, so a stall begins there.
	s.handle_timeout(4100);
	let st = s.play_stats(4100);
	assert_eq!((st.segments_played, st.stalled_ms), (2, 0));
	assert_eq!(s.stats().bytes_from_node, 4000);
	assert!(s.stats().peer_timeouts >= 2);
}

#[test]
fn slow_peer_request_reissued_elsewhere_works() {
	let mut s = setup(&[(1, 1), (2, 1)]);
	let reqs = drain(&mut s, 0);
	let to_peers: Vec<_> = reqs.iter().filter(|r| r.seq == 1).collect();
	// Equal estimates: one chunk each, spread over both peers' pipelines.
	assert_eq!(to_peers.len(), 2);
	let slow = to_peers[0];
	let Source::Peer(slow_peer) = slow.source else { panic!("peer request") };
	let other = if slow_peer == 1 { 2 } else { 1 };
	// The other request is answered at once; the slow one never.
	for r in &to_peers[1..] {
		let Source::Peer(p) = r.source else { panic!() };
		s.handle_chunk(40, Source::Peer(p), 1, r.index, 1000).unwrap();
	}
	let t = s.poll_timeout().unwrap();
	// A 1000-byte chunk is expected in ~10 ms: the shortest timeout applies.
	assert_eq!(t, SchedulerConfig::default().min_timeout_ms);
	s.handle_timeout(t);
	let again = drain(&mut s, t);
	assert_eq!(again.len(), 1);
	assert_eq!(
		(again[0].seq, again[0].index, again[0].source),
		(1, slow.index, Source::Peer(other))
	);
	assert_eq!(s.poll_cancel(), Some(Cancel { peer: slow_peer, seq: 1, index: slow.index }));
	// The slow peer's answer arriving late is a duplicate once the other delivered.
	s.handle_chunk(t + 10, Source::Peer(other), 1, slow.index, 1000).unwrap();
	assert_eq!(
		s.handle_chunk(t + 20, Source::Peer(slow_peer), 1, slow.index, 1000),
		Ok(ChunkOutcome::Duplicate)
	);
	assert_eq!(s.stats().peer_timeouts, 1);
}

#[test]
fn earliest_deadline_then_rarest_first_works() {
	let config = SchedulerConfig {
		max_inflight_per_peer: 100,
		max_inflight_peers: 100,
		..Default::default()
	};
	let mut s = S::new(config, 0, 0);
	// Segment 0 is complete (from the node), so the order concerns segments 1 and 2.
	for seq in 0..3 {
		s.handle_header(0, seq, 2000, vec![1000; 3]).unwrap();
	}
	for i in 0..3 {
		s.handle_chunk(0, Source::Node, 0, i, 1000).unwrap();
	}
	for p in 1..=3u32 {
		s.handle_peer_joined(p);
		s.handle_have(p, 2, &ChunkSet::full(3)).unwrap();
	}
	// Segment 1: chunk 2 held by one peer, chunk 0 by two, chunk 1 by three.
	for (p, idx) in [(1, 0), (2, 0), (1, 1), (2, 1), (3, 1), (3, 2)] {
		s.handle_have_chunk(p, 1, idx);
	}
	let order: Vec<(u64, u32)> = drain(&mut s, 0).iter().map(|r| (r.seq, r.index)).collect();
	assert_eq!(order, vec![(1, 2), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]);
}

#[test]
fn banned_peer_never_asked_again_works() {
	let mut s = setup(&[(5, 1), (6, 1)]);
	let reqs = drain(&mut s, 0);
	assert!(reqs.iter().any(|r| r.source == Source::Peer(5)));
	s.handle_bad_chunk(10, 5, 1, 0);
	assert!(events(&mut s).contains(&SchedulerEvent::PeerBanned(5)));
	assert!(s.is_banned(5));
	assert!(!s.handle_peer_joined(5), "a banned peer cannot come back");
	s.handle_have(5, 1, &ChunkSet::full(2)).unwrap();
	let mut now = 10;
	for _ in 0..200 {
		for r in drain(&mut s, now) {
			assert_ne!(r.source, Source::Peer(5));
		}
		let Some(t) = s.poll_timeout() else { break };
		now = t;
		s.handle_timeout(now);
	}
	assert_eq!(s.stats().banned, 1);
	assert_eq!(s.stats().bad_chunks, 1);
}

#[test]
fn bad_chunk_input_fails() {
	let mut s = setup(&[]);
	assert_eq!(
		s.handle_chunk(0, Source::Node, 0, 0, 999),
		Err(SchedulerError::LengthMismatch { seq: 0, index: 0, got: 999, expected: 1000 })
	);
	assert_eq!(
		s.handle_chunk(0, Source::Node, 0, 2, 1000),
		Err(SchedulerError::IndexOutOfRange { seq: 0, index: 2 })
	);
	assert_eq!(
		s.handle_chunk(0, Source::Node, 9, 0, 1000),
		Err(SchedulerError::UnknownSegment { seq: 9 })
	);
	assert_eq!(
		s.handle_header(0, 3, 2000, vec![]),
		Err(SchedulerError::BadChunkCount { seq: 3, count: 0 })
	);
	s.handle_peer_joined(1);
	assert_eq!(
		s.handle_have(1, 0, &ChunkSet::full(5)),
		Err(SchedulerError::HaveMismatch { seq: 0, got: 5, expected: 2 })
	);
	// Nothing was stored.
	assert_eq!(s.have(0).unwrap().held(), 0);
	let far = SchedulerConfig { max_tracked_segments: 2, ..Default::default() };
	let mut s = S::new(far, 0, 0);
	s.handle_header(0, 0, 2000, vec![10]).unwrap();
	s.handle_header(0, 1, 2000, vec![10]).unwrap();
	assert_eq!(s.handle_header(0, 2, 2000, vec![10]), Err(SchedulerError::TooFarAhead { seq: 2 }));
}

/// The origin restarts the stream with the same sequence numbers: what was tracked, announced
/// and asked of the old broadcast is forgotten, a late answer for an old segment is refused,
/// the new broadcast is scheduled afresh from its start, and bans and counters stay.
#[test]
fn new_broadcast_forgets_the_old_one_works() {
	let mut s = setup(&[(5, 1), (6, 1)]);
	let reqs = drain(&mut s, 0);
	assert!(reqs.iter().any(|r| r.seq == 1 && r.source != Source::Node));
	s.handle_bad_chunk(10, 5, 1, 0);
	for i in 0..2 {
		s.handle_chunk(20, Source::Node, 0, i, 1000).unwrap();
	}
	s.handle_new_broadcast(100, 0);
	let ev = events(&mut s);
	assert!(ev.contains(&SchedulerEvent::PeerBanned(5)), "{ev:?}");
	assert!(
		!ev.iter().any(|e| matches!(e, SchedulerEvent::SegmentComplete { .. })),
		"the old segment 0 is not handed on: {ev:?}"
	);
	assert_eq!(s.haves().count(), 0);
	assert_eq!(s.next_needed(), 0);
	assert!(s.is_banned(5));
	assert!(matches!(
		s.handle_chunk(110, Source::Peer(6), 1, 0, 1000),
		Err(SchedulerError::UnknownSegment { seq: 1 })
	));
	// The new segment 0, of other chunks: peer 6's announcement was of the old one, so the
	// node is asked (urgent).
	s.handle_header(120, 0, 2000, vec![500, 500]).unwrap();
	let reqs = drain(&mut s, 120);
	assert_eq!(reqs.len(), 2, "{reqs:?}");
	assert!(reqs.iter().all(|r| r.source == Source::Node && r.seq == 0 && r.len == 500));
	for i in 0..2 {
		assert_eq!(s.handle_chunk(130, Source::Node, 0, i, 500), Ok(ChunkOutcome::Stored));
	}
	assert!(events(&mut s).contains(&SchedulerEvent::SegmentComplete { seq: 0 }));
	assert_eq!((s.stats().banned, s.stats().bytes_from_node), (1, 3000));
}
