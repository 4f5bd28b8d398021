//! The live window of one stream: the recent segments of one broadcast, bounded in count and
//! bytes, and its end. Segments and ends of an older broadcast are refused: a newer broadcast
//! (the origin restarted) replaces the one held.

use crate::{
	protocol::{encode_frame, Message},
	segment::Segment,
};
use bytes::Bytes;
use dsp_primitives::{Signed, StreamEnd};
use std::{collections::VecDeque, sync::Arc};

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
	/// The broadcast the segments belong to, if any is held. A session that was fed an older
	/// one continues with this one from its start (a discontinuity).
	pub broadcast: Option<u64>,
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

/// Where a stream's newest broadcast is: what a window keeps, and what the
/// [`super::StreamTable`] remembers after the window is freed, so that a new window refuses
/// what a freed one would have refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BroadcastMark {
	/// The newest broadcast stored.
	pub broadcast: u64,
	/// One past its newest segment, or where it ended if that is later.
	pub next_sequence: u64,
	/// Whether its origin ended it: no segment of it is stored any more.
	pub ended: bool,
}

/// A segment or end refused by a window: it cannot belong to the stream as it is now (a
/// replay of something the origin signed earlier). The sender is closed with this reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
	/// Of an older broadcast than the one held.
	#[error("{what} of broadcast {got} is from an older broadcast than {held}, the one this server holds: a replay of an earlier broadcast is refused")]
	OlderBroadcast {
		/// `segment N` or `end`.
		what: String,
		/// Its broadcast.
		got: u64,
		/// The broadcast held.
		held: u64,
	},
	/// A segment at or after the end of its broadcast.
	#[error(
		"segment {sequence} of broadcast {broadcast}, which its origin ended before {end}: refused"
	)]
	AfterEnd {
		/// Its sequence.
		sequence: u64,
		/// Its broadcast.
		broadcast: u64,
		/// Where the broadcast ended.
		end: u64,
	},
}

/// What inserting a segment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
	/// Stored as the newest segment.
	Stored,
	/// Not newer than the newest held of its broadcast: already seen (a publisher resending
	/// after a reconnect). Not stored.
	Duplicate,
}

/// The recent segments of one broadcast of a live stream. Append-only within a broadcast: a
/// segment is stored only if it is newer than every segment seen of it; older ones are
/// duplicates of what was already accepted (or fell out). A newer broadcast replaces the
/// window's content; anything of an older one is refused ([`Stale`]).
#[derive(Debug, Default)]
pub struct LiveWindow {
	config: WindowConfig,
	segments: VecDeque<Arc<Segment>>,
	bytes: usize,
	next_sequence: u64,
	ended: Option<(u64, Bytes)>,
	/// The broadcast held, and whether its origin ended it.
	broadcast: Option<u64>,
	broadcast_ended: bool,
}

impl LiveWindow {
	/// An empty window.
	pub fn new(config: WindowConfig) -> Self {
		Self { config, ..Default::default() }
	}

	/// An empty window for a stream whose newest broadcast was `mark` (remembered after its
	/// window was freed): it refuses what that window would have refused.
	pub fn resume(config: WindowConfig, mark: Option<BroadcastMark>) -> Self {
		let mut w = Self::new(config);
		if let Some(m) = mark {
			w.broadcast = Some(m.broadcast);
			w.broadcast_ended = m.ended;
			w.next_sequence = m.next_sequence;
		}
		w
	}

	/// Makes `broadcast` the one held: refused if older; a newer one empties the window.
	fn enter(&mut self, broadcast: u64, what: impl FnOnce() -> String) -> Result<(), Stale> {
		match self.broadcast {
			Some(held) if broadcast < held => {
				Err(Stale::OlderBroadcast { what: what(), got: broadcast, held })
			}
			Some(held) if broadcast == held => Ok(()),
			_ => {
				self.segments.clear();
				self.bytes = 0;
				self.next_sequence = 0;
				self.ended = None;
				self.broadcast = Some(broadcast);
				self.broadcast_ended = false;
				Ok(())
			}
		}
	}

	/// Whether [`Self::insert`] would refuse `segment` as stale, changing nothing: checked
	/// before room is made for it, so that a replayed segment evicts nothing.
	pub fn check(&self, segment: &Segment) -> Result<(), Stale> {
		let (broadcast, seq) = (segment.broadcast(), segment.sequence());
		match self.broadcast {
			Some(held) if broadcast < held => {
				Err(Stale::OlderBroadcast { what: format!("segment {seq}"), got: broadcast, held })
			}
			Some(held)
				if broadcast == held && self.broadcast_ended && seq >= self.next_sequence() =>
			{
				Err(Stale::AfterEnd { sequence: seq, broadcast, end: self.next_sequence() })
			}
			_ => Ok(()),
		}
	}

	/// Adds a verified segment; refused if it is of an older broadcast, or at or after the end
	/// of its own.
	pub fn insert(&mut self, segment: Arc<Segment>) -> Result<Inserted, Stale> {
		let (broadcast, seq) = (segment.broadcast(), segment.sequence());
		self.enter(broadcast, || format!("segment {seq}"))?;
		if seq < self.next_sequence() {
			return Ok(Inserted::Duplicate);
		}
		if self.broadcast_ended {
			return Err(Stale::AfterEnd { sequence: seq, broadcast, end: self.next_sequence() });
		}
		// Verified headers never carry u64::MAX (`verify_header`), so this cannot saturate.
		self.next_sequence = seq.saturating_add(1);
		self.bytes += segment.byte_len();
		self.segments.push_back(segment);
		while self.segments.len() > 1
			&& (self.segments.len() > self.config.max_segments
				|| self.bytes > self.config.max_bytes)
		{
			let old = self.segments.pop_front().expect("len > 1; qed");
			self.bytes -= old.byte_len();
		}
		Ok(Inserted::Stored)
	}

	/// Marks the broadcast ended, with the origin's signed (already verified) end; refused if
	/// it ends an older broadcast than the one held.
	pub fn end(&mut self, end: Signed<StreamEnd>) -> Result<(), Stale> {
		self.enter(end.payload.broadcast, || "end".to_string())?;
		let next_sequence = self.next_sequence.max(end.payload.next_sequence);
		self.broadcast_ended = true;
		self.ended = Some((next_sequence, encode_frame(&Message::End(end))));
		Ok(())
	}

	/// The broadcast held and where it is, if any (for the [`super::StreamTable`]).
	pub fn mark(&self) -> Option<BroadcastMark> {
		Some(BroadcastMark {
			broadcast: self.broadcast?,
			next_sequence: self.next_sequence(),
			ended: self.broadcast_ended,
		})
	}

	/// What `Expect` tells a publisher: the broadcast held if it has not ended, and its next
	/// sequence (`(None, 0)` otherwise: a publisher starts a new broadcast).
	pub fn held(&self) -> (Option<u64>, u64) {
		match self.mark() {
			Some(m) if !m.ended => (Some(m.broadcast), m.next_sequence),
			_ => (None, 0),
		}
	}

	/// Up to `max` segments from `from` on.
	pub fn lookup(&self, from: u64, max: usize) -> Lookup {
		let start = self.segments.partition_point(|s| s.sequence() < from);
		Lookup {
			segments: self.segments.iter().skip(start).take(max).cloned().collect(),
			oldest: self.segments.front().map(|s| s.sequence()),
			newest: self.segments.back().map(|s| s.sequence()),
			next_sequence: self.next_sequence,
			broadcast: self.broadcast,
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

	/// Drops the oldest segment held, to make room under the server's total window budget;
	/// its size in bytes, or `None` if the window holds none. What the window told about
	/// the stream (next sequence, end) stays.
	pub fn evict_oldest(&mut self) -> Option<usize> {
		let old = self.segments.pop_front()?;
		self.bytes -= old.byte_len();
		Some(old.byte_len())
	}

	/// The stream's bitrate as this window measures it, bytes per second: media bytes over play
	/// time of the segments held (at most `max_segments`, so it follows the stream within a
	/// window's length). 0 when the window holds nothing yet (or only zero-length segments):
	/// passes then cover nothing until the next renewal measures again, so a stream that never
	/// publishes can never be paid for.
	pub fn bitrate(&self) -> u64 {
		let bytes: u64 = self.segments.iter().map(|s| s.byte_len() as u64).sum();
		let ms: u64 = self.segments.iter().map(|s| u64::from(s.duration_ms())).sum();
		(bytes.saturating_mul(1000)).checked_div(ms).unwrap_or(0)
	}

	/// Segments and media bytes held.
	pub fn usage(&self) -> (usize, usize) {
		(self.segments.len(), self.bytes)
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::server::test_util::{origin, seg};

	#[test]
	fn window_is_bounded_and_append_only() {
		let mut w = LiveWindow::new(WindowConfig { max_segments: 3, max_bytes: 2500 });
		assert_eq!(w.insert(seg(0)), Ok(Inserted::Stored));
		assert_eq!(w.insert(seg(0)), Ok(Inserted::Duplicate));
		for i in 1..5 {
			w.insert(seg(i)).unwrap();
		}
		// 1000 bytes each, max 2500: two held.
		assert_eq!(w.usage(), (2, 2000));
		assert_eq!(w.lookup(0, 10).oldest, Some(3));
		assert_eq!(w.insert(seg(2)), Ok(Inserted::Duplicate));
		assert_eq!(w.evict_oldest(), Some(1000));
		assert_eq!(w.evict_oldest(), Some(1000));
		assert_eq!(w.evict_oldest(), None);
		assert_eq!((w.usage(), w.next_sequence()), ((0, 0), 5), "the stream's position stays");
	}

	#[test]
	fn bitrate_is_bytes_over_play_time_of_the_segments_held() {
		let mut w = LiveWindow::new(WindowConfig::default());
		assert_eq!(w.bitrate(), 0, "nothing held: nothing measured");
		// 1000 bytes per 2 s segment.
		w.insert(seg(0)).unwrap();
		w.insert(seg(1)).unwrap();
		assert_eq!(w.bitrate(), 500);
	}

	/// Broadcast `b`'s segment `seq` (its media differs per broadcast).
	fn seg_of(b: u64, seq: u64) -> Arc<Segment> {
		let data = bytes::Bytes::from(vec![(b * 16 + seq) as u8; 1000]);
		Arc::new(Segment::build(&origin(), [0; 32], 1, b, seq, 2000, data, 512))
	}

	fn end_of(b: u64, next_sequence: u64) -> Signed<StreamEnd> {
		let end = StreamEnd { genesis_hash: [0; 32], stream: 1, broadcast: b, next_sequence };
		Signed::sign(end, &origin())
	}

	/// The replay of issue 12: broadcast 1 (segments 0..=3 and its end) was freed; in the new
	/// broadcast 2 an anonymous publisher sends the old segment 3 and the old end. Neither
	/// enters: the real segment 2 is stored and nothing ended.
	#[test]
	fn an_old_broadcast_is_not_replayed_into_a_new_one() {
		let config = WindowConfig::default();
		let mut old = LiveWindow::new(config.clone());
		for seq in 0..4 {
			let _ = old.insert(seg_of(1, seq));
		}
		let _ = old.end(end_of(1, 4));
		// Freed; broadcast 2 starts in a new window.
		let mut w = LiveWindow::new(config);
		let _ = w.insert(seg_of(2, 0));
		let _ = w.insert(seg_of(2, 1));
		let _ = w.insert(seg_of(1, 3));
		let _ = w.end(end_of(1, 4));
		let _ = w.insert(seg_of(2, 2));
		let l = w.lookup(0, 10);
		let got: Vec<Vec<u8>> = l.segments.iter().map(|s| s.to_vec()).collect();
		let want: Vec<Vec<u8>> = (0..3).map(|seq| seg_of(2, seq).to_vec()).collect();
		assert_eq!(got, want, "only broadcast 2's segments");
		assert!(l.ended.is_none(), "the old end did not end the new broadcast");
	}

	/// The same replay, refused with a reason that says why; a newer broadcast replaces the
	/// window; a window resumed from a remembered mark refuses what the freed one would have.
	#[test]
	fn stale_broadcasts_are_refused_with_a_reason_and_newer_ones_replace() {
		let mut w = LiveWindow::new(WindowConfig::default());
		w.insert(seg_of(2, 0)).unwrap();
		let err = w.insert(seg_of(1, 3)).unwrap_err();
		assert_eq!(err, Stale::OlderBroadcast { what: "segment 3".into(), got: 1, held: 2 });
		assert!(err.to_string().contains("older broadcast"), "{err}");
		assert!(matches!(w.end(end_of(1, 4)), Err(Stale::OlderBroadcast { .. })));
		assert_eq!(w.held(), (Some(2), 1));
		// The origin restarted: broadcast 3 replaces 2, from its segment 0.
		assert_eq!(w.insert(seg_of(3, 0)), Ok(Inserted::Stored));
		let l = w.lookup(0, 10);
		assert_eq!((l.broadcast, l.oldest, l.next_sequence), (Some(3), Some(0), 1));
		w.end(end_of(3, 1)).unwrap();
		assert_eq!(w.held(), (None, 0), "an ended broadcast is not continued");
		assert!(matches!(w.insert(seg_of(3, 1)), Err(Stale::AfterEnd { .. })));
		// Freed; the table remembered the mark.
		let mark = w.mark();
		assert_eq!(mark, Some(BroadcastMark { broadcast: 3, next_sequence: 1, ended: true }));
		let mut fresh = LiveWindow::resume(WindowConfig::default(), mark);
		assert!(matches!(fresh.insert(seg_of(2, 5)), Err(Stale::OlderBroadcast { .. })));
		assert_eq!(fresh.insert(seg_of(3, 0)), Ok(Inserted::Duplicate));
		assert!(matches!(fresh.insert(seg_of(3, 1)), Err(Stale::AfterEnd { .. })));
		assert_eq!(fresh.insert(seg_of(4, 0)), Ok(Inserted::Stored));
	}
}
