//! The one clock of every sans-IO core ([`crate::server`], [`crate::viewer`], [`crate::p2p`],
//! and [`crate::sim`] that runs them): a `u64` count of milliseconds, passed in by the driver,
//! never read by a core. [`Clock`] is the drivers' side: tokio's clock, so that tests
//! on paused time drive the cores too.

use std::time::Duration;

/// Milliseconds on the driver's monotonic clock; the driver chooses the origin (a [`Clock`]
/// starts at 0, the simulator at 0 too). One clock for every sans-IO core.
pub type Millis = u64;

/// `d` in whole milliseconds (truncated), saturating at `Millis::MAX`: how a `Duration` of a
/// public config is added to a [`Millis`].
pub fn millis(d: Duration) -> Millis {
	Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A driver's clock: milliseconds since it was made, on tokio's clock (the same as the wall
/// clock unless a test paused time).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
	start: tokio::time::Instant,
}

impl Clock {
	/// A clock whose origin (`0`) is now.
	pub fn new() -> Self {
		Self { start: tokio::time::Instant::now() }
	}

	/// Milliseconds since the origin, truncated.
	pub fn now(&self) -> Millis {
		millis(self.start.elapsed())
	}

	/// The instant of `at` on tokio's clock, for a timer (the first instant at which
	/// [`Self::now`] returns `at`).
	/// Saturates at 30 years from the origin (tokio's own "far future").
	pub fn instant(&self, at: Millis) -> tokio::time::Instant {
		let far = Duration::from_secs(86_400 * 365 * 30);
		self.start + Duration::from_millis(at).min(far)
	}
}

impl Default for Clock {
	fn default() -> Self {
		Self::new()
	}
}
