//! What a P2P viewer may `Fetch` from the node, sans-IO: only what its urgent window needs.
//!
//! A P2P session is cheaper than a direct one because its peers deliver most of the media; a
//! viewer that fetched everything from the node would be a direct session that bypasses
//! `max_streams`. So a fetch must name a segment among the newest
//! [`SessionConfig::p2p_fetch_window`] whose header the session was sent, and the chunks
//! fetched are paid from a token bucket counted in play time: a chunk of `c` bytes of a segment
//! of `b` bytes lasting `d` ms costs `c * d / b` ms, and the bucket refills at
//! [`SessionConfig::p2p_fetch_speed_percent`] of real time, up to
//! [`SessionConfig::p2p_fetch_burst`]. A fetch outside either is answered `NotHeld` (the
//! viewer asks its peers); [`SessionConfig::p2p_fetch_max_refused`] of them close the session.
//!
//! With the defaults a P2P session takes at most 1.5 times the stream's bitrate from the node
//! through `Fetch` (plus 16 s of play time at once), on top of the chunks the node seeds to it.

use super::SessionConfig;
use crate::{clock::Millis, p2p::upload::UploadCap, segment::Segment};

/// The fetch budget of one P2P session.
#[derive(Clone, Debug)]
pub struct FetchGuard {
	/// Play time, in microseconds.
	bucket: UploadCap,
	refused: u32,
}

impl FetchGuard {
	/// A full budget at `now`.
	pub fn new(now: Millis, config: &SessionConfig) -> Self {
		let per_sec = u64::from(config.p2p_fetch_speed_percent) * 10_000;
		let burst = u64::try_from(config.p2p_fetch_burst.as_micros()).unwrap_or(u64::MAX);
		Self { bucket: UploadCap::new(now, per_sec, burst), refused: 0 }
	}

	/// Whether `sequence` is among the `window` newest segments whose header was sent (`next`
	/// is the sequence of the next header to send, `None` before any).
	pub fn in_window(next: Option<u64>, sequence: u64, window: u64) -> bool {
		next.is_some_and(|next| sequence < next && sequence.saturating_add(window) >= next)
	}

	/// Takes the play time of chunk `index` of `segment` from the budget, if it holds it.
	pub fn try_take(&mut self, now: Millis, segment: &Segment, index: u32) -> bool {
		let Some(chunk) = segment.chunks.get(index as usize) else { return true };
		let micros = (chunk.len() as u64)
			.saturating_mul(u64::from(segment.duration_ms()))
			.saturating_mul(1000)
			/ (segment.byte_len() as u64).max(1);
		self.bucket.try_take(now, micros)
	}

	/// Counts a refused fetch; whether the session has now been refused too often.
	pub fn refuse(&mut self, config: &SessionConfig) -> bool {
		self.refused += 1;
		self.refused >= config.p2p_fetch_max_refused
	}

	/// Fetches refused so far.
	pub fn refused(&self) -> u32 {
		self.refused
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::server::test_util::seg;

	#[test]
	fn the_window_is_the_newest_headers_sent() {
		assert!(!FetchGuard::in_window(None, 0, 8));
		assert!(FetchGuard::in_window(Some(10), 9, 8));
		assert!(FetchGuard::in_window(Some(10), 2, 8));
		assert!(!FetchGuard::in_window(Some(10), 1, 8));
		assert!(!FetchGuard::in_window(Some(10), 10, 8));
	}

	#[test]
	fn the_budget_is_play_time_at_the_configured_speed() {
		let config = SessionConfig {
			p2p_fetch_speed_percent: 100,
			p2p_fetch_burst: std::time::Duration::from_millis(2000),
			..Default::default()
		};
		let mut g = FetchGuard::new(0, &config);
		let s = seg(0);
		let all =
			|g: &mut FetchGuard, now| (0..s.chunks.len() as u32).all(|i| g.try_take(now, &s, i));
		// The burst holds one segment's play time, not two; a segment's time later, one more.
		assert!(all(&mut g, 0));
		assert!(!g.try_take(0, &s, 0));
		assert!(all(&mut g, u64::from(s.duration_ms())));
		assert!(!g.try_take(u64::from(s.duration_ms()), &s, 0));
	}
}
