//! The segment buffer: orders complete segments from any number of connections into one
//! sequence that the player gets once and in order (see [`super`] for when a gap is declared).
//! It follows one broadcast: anything of an older one is dropped (never played again), and a
//! newer one (the origin restarted) is continued from its first segment received, marked as a
//! discontinuity.

use super::ConnId;
use crate::segment::Segment;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A segment handed to the player.
#[derive(Clone, Debug)]
pub struct Delivered {
	/// The verified segment.
	pub segment: Segment,
	/// Whether segments before it were skipped (a gap; HLS `EXT-X-DISCONTINUITY`).
	pub discontinuity: bool,
}

/// Counters of the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferStats {
	/// Segments handed to the player.
	pub delivered: u64,
	/// Copies dropped because the player already had (or was about to get) that sequence.
	pub duplicates: u64,
	/// Sequence numbers skipped because no connection could deliver them any more.
	pub skipped: u64,
	/// Segments and ends dropped because they belong to an older broadcast than one already
	/// received.
	pub stale: u64,
}

/// Orders complete segments from any number of connections into one sequence without gaps or
/// duplicates (see the [`viewer`](super) module docs for when a gap is declared).
///
/// Memory: at most `max_pending` complete segments waiting for an earlier one.
#[derive(Debug)]
pub struct SegmentBuffer {
	next: Option<u64>,
	pending: BTreeMap<u64, Segment>,
	/// Per open connection: one past the highest sequence it delivered (or `u64::MAX` once it
	/// sent `End`).
	progress: HashMap<ConnId, Option<u64>>,
	max_pending: usize,
	end: Option<u64>,
	ready: VecDeque<Delivered>,
	last_delivered: Option<u64>,
	/// The broadcast followed.
	broadcast: Option<u64>,
	/// A newer broadcast began: its first segment handed out is a discontinuity.
	broadcast_changed: bool,
	stats: BufferStats,
}

impl SegmentBuffer {
	/// A buffer holding at most `max_pending` out-of-order segments.
	pub fn new(max_pending: usize) -> Self {
		Self {
			next: None,
			pending: BTreeMap::new(),
			progress: HashMap::new(),
			max_pending: max_pending.max(1),
			end: None,
			ready: VecDeque::new(),
			last_delivered: None,
			broadcast: None,
			broadcast_changed: false,
			stats: BufferStats::default(),
		}
	}

	/// The first sequence the player still needs (`None` before the first segment).
	pub fn next_needed(&self) -> Option<u64> {
		self.next
	}

	/// Counters.
	pub fn stats(&self) -> BufferStats {
		self.stats
	}

	/// Whether the stream ended and everything before its end was handed out.
	pub fn is_ended(&self) -> bool {
		matches!((self.end, self.next), (Some(e), Some(n)) if n >= e)
			|| (self.end.is_some() && self.next.is_none() && self.pending.is_empty())
	}

	/// A connection opened.
	pub fn handle_opened(&mut self, conn: ConnId) {
		self.progress.insert(conn, None);
	}

	/// A connection closed.
	pub fn handle_closed(&mut self, conn: ConnId) {
		self.progress.remove(&conn);
		self.settle();
	}

	/// Follows `broadcast`; `false` when it is older than the one followed (drop what came).
	fn follow(&mut self, broadcast: u64) -> bool {
		match self.broadcast {
			Some(current) if broadcast < current => {
				self.stats.stale += 1;
				return false;
			}
			Some(current) if broadcast > current => {
				// What is pending, the end and every connection's progress were of the old one.
				self.pending.clear();
				self.next = None;
				self.end = None;
				self.progress.values_mut().for_each(|p| *p = None);
				self.broadcast_changed = self.last_delivered.is_some();
			}
			_ => {}
		}
		self.broadcast = Some(broadcast);
		true
	}

	/// `conn` delivered a complete, verified segment.
	pub fn handle_segment(&mut self, conn: ConnId, segment: Segment) {
		if !self.follow(segment.broadcast()) {
			return;
		}
		let seq = segment.sequence();
		if let Some(p) = self.progress.get_mut(&conn) {
			*p = Some(p.map_or(seq + 1, |p| p.max(seq + 1)));
		}
		let next = *self.next.get_or_insert(seq);
		if seq < next || self.pending.contains_key(&seq) {
			self.stats.duplicates += 1;
		} else {
			self.pending.insert(seq, segment);
		}
		self.settle();
	}

	/// `conn` reported the end of broadcast `broadcast` before `next_sequence`.
	pub fn handle_end(&mut self, conn: ConnId, broadcast: u64, next_sequence: u64) {
		if !self.follow(broadcast) {
			return;
		}
		self.end = Some(next_sequence);
		self.progress.insert(conn, Some(u64::MAX));
		self.settle();
	}

	fn settle(&mut self) {
		loop {
			let Some(next) = self.next else { return };
			if let Some(seg) = self.pending.remove(&next) {
				let new_broadcast = std::mem::take(&mut self.broadcast_changed);
				let discontinuity =
					new_broadcast || self.last_delivered.is_some_and(|l| l + 1 != next);
				self.last_delivered = Some(next);
				self.next = Some(next + 1);
				self.stats.delivered += 1;
				self.ready.push_back(Delivered { segment: seg, discontinuity });
				continue;
			}
			let Some((&first, _)) = self.pending.iter().next() else { return };
			// `next` can still come only from a connection that has not delivered past it.
			let unreachable = !self.progress.is_empty()
				&& self.progress.values().all(|p| p.is_some_and(|p| p > next));
			if unreachable || self.pending.len() > self.max_pending {
				self.stats.skipped += first - next;
				self.next = Some(first);
				continue;
			}
			return;
		}
	}

	/// The next segment for the player.
	pub fn poll_delivered(&mut self) -> Option<Delivered> {
		self.ready.pop_front()
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::viewer::tests::{in_order, seg};

	fn delivered(b: &mut SegmentBuffer) -> Vec<(u64, bool)> {
		in_order(|| b.poll_delivered())
	}

	#[test]
	fn buffer_drops_duplicates_from_overlapping_connections() {
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg(10));
		b.handle_segment(1, seg(11));
		b.handle_opened(2);
		// The new connection starts at 12, but the old one delivers 12 first.
		b.handle_segment(1, seg(12));
		b.handle_segment(2, seg(12));
		b.handle_segment(2, seg(13));
		b.handle_closed(1);
		b.handle_segment(2, seg(14));
		assert_eq!(
			delivered(&mut b),
			vec![(10, false), (11, false), (12, false), (13, false), (14, false)]
		);
		assert_eq!(b.stats().duplicates, 1);
		assert_eq!(b.stats().skipped, 0);
	}

	#[test]
	fn buffer_waits_while_any_connection_can_still_deliver() {
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg(0));
		b.handle_opened(2);
		// New connection delivers 2 before the old one delivered 1: hold 2.
		b.handle_segment(2, seg(2));
		assert_eq!(delivered(&mut b), vec![(0, false)]);
		b.handle_segment(1, seg(1));
		assert_eq!(delivered(&mut b), vec![(1, false), (2, false)]);
	}

	#[test]
	fn buffer_skips_only_when_no_connection_can_deliver() {
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg(0));
		b.handle_opened(2);
		b.handle_segment(2, seg(5));
		assert_eq!(delivered(&mut b), vec![(0, false)]);
		// Connection 1 is gone: nobody can deliver 1..=4 any more.
		b.handle_closed(1);
		assert_eq!(delivered(&mut b), vec![(5, true)]);
		assert_eq!(b.stats().skipped, 4);
	}

	#[test]
	fn buffer_bounds_pending_segments() {
		let mut b = SegmentBuffer::new(2);
		b.handle_opened(1);
		b.handle_opened(2);
		b.handle_segment(1, seg(0));
		for s in 2..5 {
			b.handle_segment(2, seg(s));
		}
		let d = delivered(&mut b);
		assert_eq!(d[0], (0, false));
		assert_eq!(d[1], (2, true));
		assert_eq!(d.len(), 4);
	}

	#[test]
	fn buffer_ends_after_the_last_segment() {
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg(0));
		b.handle_end(1, 0, 2);
		assert!(!b.is_ended());
		b.handle_segment(1, seg(1));
		assert!(b.is_ended());
	}

	/// An older broadcast never comes back (neither its segments nor its end); a newer one is
	/// continued from its first segment, as a discontinuity.
	#[test]
	fn buffer_never_goes_back_to_an_older_broadcast() {
		use crate::viewer::tests::seg_of;
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg_of(5, 0));
		b.handle_segment(1, seg_of(5, 1));
		b.handle_segment(1, seg_of(4, 2));
		b.handle_end(1, 4, 2);
		assert!(!b.is_ended());
		b.handle_segment(1, seg_of(5, 2));
		assert_eq!(delivered(&mut b), vec![(0, false), (1, false), (2, false)]);
		// The origin restarted: broadcast 6 from 0.
		b.handle_segment(1, seg_of(6, 0));
		b.handle_segment(1, seg_of(5, 3));
		b.handle_segment(1, seg_of(6, 1));
		b.handle_end(1, 6, 2);
		assert_eq!(delivered(&mut b), vec![(0, true), (1, false)]);
		assert!(b.is_ended());
		assert_eq!(b.stats().stale, 3);
	}
}
