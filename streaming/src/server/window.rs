//! The live window of one stream: its recent segments, bounded in count and bytes, and its end.

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
	use crate::server::test_util::seg;

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
		w.insert(seg(0));
		w.insert(seg(1));
		assert_eq!(w.bitrate(), 500);
	}
}
