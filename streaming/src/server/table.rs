//! Which streams hold a window: the bounded table of open streams, opened by publishers and by
//! viewers, freed once ended or idle; and the newest broadcast of each stream, remembered after
//! its window is freed.

use super::BroadcastMark;
use crate::{
	clock::{millis, Millis},
	protocol::{ErrorCode, Role},
};
use dsp_primitives::StreamId;
use std::{
	collections::{HashMap, VecDeque},
	time::Duration,
};

/// Limits of a [`StreamTable`].
#[derive(Clone, Debug)]
pub struct StreamTableConfig {
	/// Most streams with a window at once. Default 256; worst-case memory is this many
	/// windows ([`super::WindowConfig::max_bytes`] each).
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
	/// Streams whose newest broadcast ([`BroadcastMark`]) is remembered after their window is
	/// freed, so that a new window refuses segments and ends of earlier broadcasts (their
	/// origin signatures stay valid forever). Default 4096: at most 270 KiB (8192 buckets of 33 bytes). Only stored,
	/// origin-signed data writes an entry; beyond the bound the entry of the oldest broadcast
	/// is forgotten.
	pub max_remembered: usize,
}

impl Default for StreamTableConfig {
	fn default() -> Self {
		Self {
			max_streams: 256,
			max_waiting: 32,
			idle_timeout: Duration::from_secs(120),
			ended_linger: Duration::from_secs(30),
			max_remembered: 4096,
		}
	}
}

#[derive(Debug)]
struct TableEntry<S> {
	slot: S,
	opened_by: Role,
	/// When the stream was opened or last stored a segment.
	last_activity: Millis,
	has_segments: bool,
	ended_at: Option<Millis>,
}

impl<S> TableEntry<S> {
	fn expires_at(&self, config: &StreamTableConfig) -> Millis {
		match self.ended_at {
			Some(at) => at.saturating_add(millis(config.ended_linger)),
			None => self.last_activity.saturating_add(millis(config.idle_timeout)),
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
	/// The newest broadcast per stream, at most `max_remembered`.
	remembered: HashMap<StreamId, BroadcastMark>,
}

impl<S: Clone> StreamTable<S> {
	/// An empty table.
	pub fn new(config: StreamTableConfig) -> Self {
		Self { config, entries: HashMap::new(), freed: VecDeque::new(), remembered: HashMap::new() }
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

	/// The slot of `stream` for a session of role `by`, made with `make` if it has none (given
	/// the stream's remembered newest broadcast, for [`super::LiveWindow::resume`]). The
	/// caller has checked that the stream has an origin key. Refused with
	/// [`ErrorCode::UnknownStream`] when `max_streams` streams, or `max_waiting` streams opened
	/// by the same role and without a segment, are held (after freeing expired ones).
	pub fn open(
		&mut self,
		now: Millis,
		stream: StreamId,
		by: Role,
		make: impl FnOnce(Option<BroadcastMark>) -> S,
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
		let slot = make(self.remembered.get(&stream).copied());
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

	/// `stream`'s window stored a segment; its broadcast is now `mark`.
	pub fn handle_segment(&mut self, now: Millis, stream: StreamId, mark: Option<BroadcastMark>) {
		if let Some(e) = self.entries.get_mut(&stream) {
			e.last_activity = now;
			e.has_segments = true;
			e.ended_at = None;
		}
		self.remember(stream, mark);
	}

	/// `stream`'s publisher ended it; its broadcast is now `mark`.
	pub fn handle_end(&mut self, now: Millis, stream: StreamId, mark: Option<BroadcastMark>) {
		if let Some(e) = self.entries.get_mut(&stream) {
			e.last_activity = now;
			e.ended_at = Some(now);
		}
		self.remember(stream, mark);
	}

	/// The newest broadcast of `stream` this table remembers.
	pub fn remembered(&self, stream: StreamId) -> Option<BroadcastMark> {
		self.remembered.get(&stream).copied()
	}

	fn remember(&mut self, stream: StreamId, mark: Option<BroadcastMark>) {
		let Some(mark) = mark else { return };
		if !self.remembered.contains_key(&stream)
			&& self.remembered.len() >= self.config.max_remembered
		{
			// Only origins write entries (a stored segment or end), so churn is bounded by
			// the streams they publish; the oldest broadcast is the least likely to matter.
			let oldest = self.remembered.iter().min_by_key(|(_, m)| m.broadcast).map(|(id, _)| *id);
			if let Some(id) = oldest {
				self.remembered.remove(&id);
			}
		}
		if self.config.max_remembered > 0 {
			self.remembered.insert(stream, mark);
		}
	}

	/// Frees `stream` at once if it never stored anything (no segment, no end) and `unused`
	/// says no session holds its slot any more: a stream slot opened by a publisher that left
	/// (or viewers that all left) before any data is not held for the idle timeout, which is
	/// meant for streams that had data. Returns whether it was freed (see [`Self::poll_freed`]).
	pub fn release_if_unused(&mut self, stream: StreamId, unused: impl FnOnce(&S) -> bool) -> bool {
		let empty = self
			.entries
			.get(&stream)
			.is_some_and(|e| !e.has_segments && e.ended_at.is_none() && unused(&e.slot));
		if let Some(e) = empty.then(|| self.entries.remove(&stream)).flatten() {
			self.freed.push_back((stream, e.slot));
		}
		empty
	}

	/// When the next stream expires.
	pub fn poll_timeout(&self) -> Option<Millis> {
		self.entries.values().map(|e| e.expires_at(&self.config)).min()
	}

	/// Frees every stream that expired by `now`.
	pub fn handle_timeout(&mut self, now: Millis) {
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

#[cfg(test)]
mod tests {
	use super::*;

	fn table(max_streams: usize, max_waiting: usize) -> StreamTable<u32> {
		StreamTable::new(StreamTableConfig {
			max_streams,
			max_waiting,
			idle_timeout: Duration::from_secs(100),
			ended_linger: Duration::from_secs(10),
			max_remembered: 2,
		})
	}

	#[test]
	fn stream_slots_are_bounded_and_waiting_ones_more_so() {
		let now: Millis = 0;
		let mut t = table(4, 2);
		assert_eq!(t.open(now, 1, Role::Viewer, |_| 1), Ok(1));
		assert_eq!(t.open(now, 2, Role::Viewer, |_| 2), Ok(2));
		// Two streams waited for: a third is refused.
		assert_eq!(t.open(now, 3, Role::Viewer, |_| 3), Err(ErrorCode::UnknownStream));
		// An open stream is found again, not made twice, whoever asks.
		assert_eq!(t.open(now, 1, Role::Publisher, |_| 99), Ok(1));
		t.handle_segment(now, 1, None);
		assert_eq!(t.open(now, 3, Role::Viewer, |_| 3), Ok(3));
		assert_eq!(t.usage(), (3, 2));
		// Viewers waiting for nothing do not lock a publisher out.
		assert_eq!(t.open(now, 4, Role::Publisher, |_| 4), Ok(4));
		t.handle_segment(now, 2, None);
		assert_eq!(
			t.open(now, 5, Role::Publisher, |_| 5),
			Err(ErrorCode::UnknownStream),
			"max_streams"
		);
	}

	#[test]
	fn ended_and_idle_streams_are_freed() {
		let t0: Millis = 0;
		let s = |secs: u64| secs * 1000;
		let mut t = table(8, 8);
		for id in 1..=3 {
			t.open(t0, id, Role::Publisher, |_| id as u32).unwrap();
			t.handle_segment(t0, id, None);
		}
		t.handle_end(t0 + s(5), 1, None);
		// Stream 2 keeps getting segments; stream 3 has no publisher any more.
		for i in 1..=20 {
			t.handle_segment(t0 + s(i * 10), 2, None);
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
		t.handle_end(t0 + s(200), 2, None);
		t.handle_segment(t0 + s(201), 2, None);
		t.handle_timeout(t0 + s(211));
		assert_eq!(t.get(2), Some(2));
	}

	#[test]
	fn a_slot_without_data_is_released_when_unused_and_one_with_data_is_kept() {
		let t0: Millis = 0;
		let mut t = table(8, 1);
		t.open(t0, 1, Role::Publisher, |_| 1).unwrap();
		assert_eq!(t.open(t0, 2, Role::Publisher, |_| 2), Err(ErrorCode::UnknownStream));
		assert!(!t.release_if_unused(1, |_| false), "still held by a session");
		assert!(t.release_if_unused(1, |_| true));
		assert_eq!(t.poll_freed(), Some((1, 1)));
		assert_eq!(t.open(t0, 2, Role::Publisher, |_| 2), Ok(2), "the waiting slot is free");
		t.handle_segment(t0, 2, None);
		assert!(!t.release_if_unused(2, |_| true), "a stream with data keeps its window");
		t.open(t0, 3, Role::Publisher, |_| 3).unwrap();
		t.handle_end(t0, 3, None);
		assert!(!t.release_if_unused(3, |_| true), "an end is data too");
		assert!(!t.release_if_unused(9, |_| true), "unknown stream");
		assert_eq!(t.usage(), (2, 1));
	}

	#[test]
	fn a_full_table_frees_expired_streams_before_refusing() {
		let t0: Millis = 0;
		let mut t = table(1, 1);
		t.open(t0, 1, Role::Viewer, |_| 1).unwrap();
		assert_eq!(t.open(t0, 2, Role::Viewer, |_| 2), Err(ErrorCode::UnknownStream));
		// Nothing stored for the idle timeout: the slot goes to the next stream.
		assert_eq!(t.open(t0 + 100_000, 2, Role::Viewer, |_| 2), Ok(2));
		assert_eq!(t.poll_freed(), Some((1, 1)));
	}

	/// A freed stream's newest broadcast is handed to the window made for it again; the memory
	/// is bounded, forgetting the oldest broadcast first.
	#[test]
	fn the_newest_broadcast_outlives_the_window_within_a_bound() {
		let mark = |b: u64| Some(BroadcastMark { broadcast: b, next_sequence: 4, ended: true });
		let mut t = table(8, 8);
		t.open(0, 1, Role::Publisher, |m| {
			assert_eq!(m, None);
			1
		})
		.unwrap();
		t.handle_segment(0, 1, mark(10));
		t.handle_end(0, 1, mark(10));
		t.handle_timeout(100_000);
		assert_eq!(t.poll_freed(), Some((1, 1)));
		t.open(100_000, 1, Role::Publisher, |m| {
			assert_eq!(m, mark(10), "remembered after the window was freed");
			1
		})
		.unwrap();
		// Two more streams: the bound (2) forgets the oldest broadcast.
		t.handle_segment(0, 2, mark(30));
		t.handle_segment(0, 3, mark(20));
		assert_eq!(t.remembered(1), None);
		assert_eq!(t.remembered(2), mark(30));
		assert_eq!(t.remembered(3), mark(20));
	}
}
