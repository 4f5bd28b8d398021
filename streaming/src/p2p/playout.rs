//! [`Playout`]: the player model that turns segment completions into play deadlines, stalls and
//! startup time. Sans-IO on the `u64` millisecond clock ([`Millis`]): the P2P viewer's
//! [`super::scheduler::Scheduler`] and the simulator each own one.

use super::Millis;
use std::collections::{BTreeMap, VecDeque};

/// What a [`Playout`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayEvent {
	/// Playback began with `seq`, `startup_ms` after joining.
	Started {
		/// First segment played.
		seq: u64,
		/// Join to first frame.
		startup_ms: u64,
	},
	/// Segment `seq` played to its end.
	Played {
		/// Segment.
		seq: u64,
	},
	/// Playback stopped: `seq` is due and not complete.
	StallStarted {
		/// Segment waited for.
		seq: u64,
	},
	/// Playback went on with `seq` after `stalled_ms`.
	StallEnded {
		/// Segment that arrived.
		seq: u64,
		/// Length of the stall.
		stalled_ms: u64,
	},
}

/// Playback counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayStats {
	/// Join to first frame, once started.
	pub startup_ms: Option<u64>,
	/// Media time played.
	pub played_ms: u64,
	/// Time stalled after the start (ongoing stall included up to the last input).
	pub stalled_ms: u64,
	/// Stalls begun.
	pub stalls: u64,
	/// Segments played to their end.
	pub segments_played: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PlayState {
	/// Before the first segment is complete.
	Waiting,
	/// Playing `seq` (`duration` ms long) until `until`.
	Playing { seq: u64, until: Millis, duration: u32 },
	/// `next` is due since `since` and not complete.
	Stalled { next: u64, since: Millis },
}

/// Model of the player: plays segments back to back in real time from `start_seq`, stalls when
/// the next one is not complete, and reports when each segment is due.
///
/// Call order: [`Playout::handle_complete`] when a segment is complete, [`Playout::handle_timeout`]
/// at [`Playout::poll_timeout`], drain [`Playout::poll_event`]. Memory: one entry per complete
/// segment not yet played (bounded by what the owner tracks).
#[derive(Clone, Debug)]
pub struct Playout {
	joined_at: Millis,
	start_seq: u64,
	startup_ms: u64,
	state: PlayState,
	/// Complete segments not played yet: sequence → duration.
	ready: BTreeMap<u64, u32>,
	events: VecDeque<PlayEvent>,
	stats: PlayStats,
}

impl Playout {
	/// A player that joined at `joined_at`, will start with `start_seq`, and wants it by
	/// `joined_at + startup_ms`.
	pub fn new(joined_at: Millis, start_seq: u64, startup_ms: u64) -> Self {
		Self {
			joined_at,
			start_seq,
			startup_ms,
			state: PlayState::Waiting,
			ready: BTreeMap::new(),
			events: VecDeque::new(),
			stats: PlayStats::default(),
		}
	}

	/// The stream restarted as a new broadcast: wait for `start_seq` as at a join at `now`,
	/// forgetting the segments ready of the old one. A stall going on ends now; the counters
	/// go on (the startup time stays the first one's).
	pub fn restart(&mut self, now: Millis, start_seq: u64) {
		self.advance(now);
		if let PlayState::Stalled { next, since } = self.state {
			let stalled_ms = now.saturating_sub(since);
			self.stats.stalled_ms += stalled_ms;
			self.events.push_back(PlayEvent::StallEnded { seq: next, stalled_ms });
		}
		self.joined_at = now;
		self.start_seq = start_seq;
		self.state = PlayState::Waiting;
		self.ready.clear();
	}

	/// The first segment not yet playing or played.
	pub fn next_needed(&self) -> u64 {
		match self.state {
			PlayState::Waiting => self.start_seq,
			PlayState::Playing { seq, .. } => seq + 1,
			PlayState::Stalled { next, .. } => next,
		}
	}

	/// Whether playback has started.
	pub fn started(&self) -> bool {
		self.state != PlayState::Waiting
	}

	/// `(seq, at)`: segment `seq` (= [`Playout::next_needed`]) is due at `at`; later segments
	/// follow by their durations. A due time before `now` means overdue.
	pub fn due(&self, now: Millis) -> (u64, Millis) {
		match self.state {
			PlayState::Waiting => (self.start_seq, self.joined_at + self.startup_ms),
			PlayState::Playing { seq, until, .. } => (seq + 1, until),
			PlayState::Stalled { next, .. } => (next, now),
		}
	}

	/// Play time ready at `now`: the rest of the segment playing and the complete segments
	/// that follow it without a hole (what an adaptive-bitrate rule calls the buffer level).
	/// Call after feeding everything up to `now`; 0 while waiting or stalled.
	pub fn buffered(&self, now: Millis) -> Millis {
		let PlayState::Playing { seq, until, .. } = self.state else { return 0 };
		let mut level = until.saturating_sub(now);
		let mut next = seq + 1;
		while let Some(d) = self.ready.get(&next) {
			level += *d as Millis;
			next += 1;
		}
		level
	}

	/// Counters, with an ongoing stall counted up to `now`.
	pub fn stats(&self, now: Millis) -> PlayStats {
		let mut s = self.stats;
		if let PlayState::Stalled { since, .. } = self.state {
			s.stalled_ms += now.saturating_sub(since);
		}
		s
	}

	/// Segment `seq` of `duration_ms` is complete and verified.
	pub fn handle_complete(&mut self, now: Millis, seq: u64, duration_ms: u32) {
		// Settle what happened up to `now` first: a segment completing after its due time
		// must not hide the stall before it.
		self.advance(now);
		if seq >= self.next_needed() {
			self.ready.insert(seq, duration_ms);
		}
		self.advance(now);
	}

	/// The real player reports it is playing `seq` with `remaining_ms` of it left: the model
	/// follows it (a paused or slower player moves deadlines later).
	pub fn handle_playhead(&mut self, now: Millis, seq: u64, remaining_ms: u64) {
		if !self.started() {
			self.stats.startup_ms = Some(now.saturating_sub(self.joined_at));
		}
		self.ready.retain(|&s, _| s > seq);
		let duration = remaining_ms.min(u32::MAX as u64) as u32;
		self.state = PlayState::Playing { seq, until: now + remaining_ms, duration };
	}

	/// Time passed.
	pub fn handle_timeout(&mut self, now: Millis) {
		self.advance(now);
	}

	fn advance(&mut self, now: Millis) {
		loop {
			match self.state {
				PlayState::Waiting => {
					let Some(d) = self.ready.remove(&self.start_seq) else { return };
					let startup_ms = now.saturating_sub(self.joined_at);
					// After a restart (a new broadcast) the first startup is the one counted.
					self.stats.startup_ms.get_or_insert(startup_ms);
					self.events.push_back(PlayEvent::Started { seq: self.start_seq, startup_ms });
					self.state = PlayState::Playing {
						seq: self.start_seq,
						until: now + d as u64,
						duration: d,
					};
				}
				PlayState::Playing { seq, until, duration } => {
					if now < until {
						return;
					}
					self.stats.segments_played += 1;
					self.stats.played_ms += duration as u64;
					self.events.push_back(PlayEvent::Played { seq });
					let next = seq + 1;
					if let Some(d) = self.ready.remove(&next) {
						// Back to back from the boundary, not from `now`: no drift.
						self.state =
							PlayState::Playing { seq: next, until: until + d as u64, duration: d };
					} else {
						self.stats.stalls += 1;
						self.events.push_back(PlayEvent::StallStarted { seq: next });
						self.state = PlayState::Stalled { next, since: until };
					}
				}
				PlayState::Stalled { next, since } => {
					let Some(d) = self.ready.remove(&next) else { return };
					let stalled_ms = now.saturating_sub(since);
					self.stats.stalled_ms += stalled_ms;
					self.events.push_back(PlayEvent::StallEnded { seq: next, stalled_ms });
					self.state =
						PlayState::Playing { seq: next, until: now + d as u64, duration: d };
				}
			}
		}
	}

	/// When the current segment ends (`None` unless playing).
	pub fn poll_timeout(&self) -> Option<Millis> {
		match self.state {
			PlayState::Playing { until, .. } => Some(until),
			_ => None,
		}
	}

	/// The next thing that happened.
	pub fn poll_event(&mut self) -> Option<PlayEvent> {
		self.events.pop_front()
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn playout_counts_stalls_works() {
		let mut p = Playout::new(0, 10, 1000);
		p.handle_complete(300, 10, 2000);
		assert_eq!(p.poll_event(), Some(PlayEvent::Started { seq: 10, startup_ms: 300 }));
		assert_eq!(p.due(300), (11, 2300));
		p.handle_complete(1000, 11, 2000);
		// 12 completes 500 ms after 11 ends (at 4300).
		p.handle_complete(4800, 12, 2000);
		let ev: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
		assert_eq!(
			ev,
			vec![
				PlayEvent::Played { seq: 10 },
				PlayEvent::Played { seq: 11 },
				PlayEvent::StallStarted { seq: 12 },
				PlayEvent::StallEnded { seq: 12, stalled_ms: 500 },
			]
		);
		assert_eq!(p.buffered(4800), 2000);
		p.handle_complete(4900, 14, 2000);
		assert_eq!(p.buffered(5000), 1800, "14 is not contiguous: not buffered");
		// Segment 12 ends at 6800 and there is no 13: a second stall begins, 100 ms long at 6900.
		p.handle_timeout(6800);
		let st = p.stats(6900);
		assert_eq!((st.played_ms, st.stalled_ms, st.stalls, st.segments_played), (6000, 600, 2, 3));
	}
}
