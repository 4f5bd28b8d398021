//! The server's memory bounds beyond one stream: how many streams one origin may hold, and the
//! byte budgets that live windows and partly assembled segments of all publishers share.
//!
//! A stream's own window is bounded by [`super::WindowConfig`] and one publisher's segment in
//! progress by `SegmentLimits::max_segment_len`; what this adds is the total, so that many
//! streams (or many publishers) cannot add up to more than the node has. Budgets are
//! [`ByteBudget`]s: reserved before the bytes are held, released when they are dropped, and
//! refused (never exceeded) when spent.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Memory bounds shared by all streams and publishers of one server.
///
/// Worst case media memory with the defaults: `max_window_bytes + max_partial_bytes` =
/// 1 GiB + 256 MiB (see [`Self::worst_case_bytes`]).
#[derive(Clone, Debug)]
pub struct MemoryConfig {
	/// Most streams one origin key holds a window for through its publishers; one more is
	/// refused with `OverBudget`. Default 8: an origin broadcasts a few streams at once, and
	/// any registered origin can publish, so one of them must not take the server's
	/// `max_streams` (256) windows for itself.
	pub max_streams_per_origin: usize,
	/// Most media bytes held in all live windows together. A segment that does not fit first
	/// takes room from the oldest segments of its own window; if that is not enough (the
	/// other streams hold the budget) its publisher is refused with `OverBudget` and the
	/// streams already held keep theirs. Default 1 GiB: 16 full windows of 64 MiB, or 256
	/// streams of 30 two-second segments at 1 Mbit/s.
	pub max_window_bytes: usize,
	/// Most bytes of segments announced by a header and not complete yet, all publishers
	/// together (each holds at most one, of at most `max_segment_len`). Reserved when the
	/// header arrives, released when the segment completes or the session ends; a header that
	/// does not fit closes its publisher with `OverBudget`. Default 256 MiB: 16 publishers in
	/// the middle of a 16 MiB segment, or about 200 sending 2 s segments at 5 Mbit/s.
	pub max_partial_bytes: usize,
}

impl Default for MemoryConfig {
	fn default() -> Self {
		Self {
			max_streams_per_origin: 8,
			max_window_bytes: 1024 * 1024 * 1024,
			max_partial_bytes: 256 * 1024 * 1024,
		}
	}
}

impl MemoryConfig {
	/// Media bytes the server holds at most: every window and every segment in progress
	/// (frames queued to sessions refer to these and are not copies).
	pub fn worst_case_bytes(&self) -> usize {
		self.max_window_bytes.saturating_add(self.max_partial_bytes)
	}
}

/// A byte budget shared by many holders: bytes are reserved before they are held and released
/// when they are dropped; a reservation that does not fit is refused, so the total held never
/// exceeds [`Self::max`].
#[derive(Debug)]
pub struct ByteBudget {
	used: AtomicUsize,
	max: usize,
}

impl ByteBudget {
	/// An empty budget of `max` bytes.
	pub fn new(max: usize) -> Self {
		Self { used: AtomicUsize::new(0), max }
	}

	/// Reserves `n` bytes if they fit.
	pub fn try_reserve(&self, n: usize) -> bool {
		self.used
			.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
				used.checked_add(n).filter(|total| *total <= self.max)
			})
			.is_ok()
	}

	/// Gives back `n` reserved bytes.
	pub fn release(&self, n: usize) {
		// Saturating: a release larger than what is held is a bug, not a reason to wrap.
		let _ = self
			.used
			.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(n)));
	}

	/// Bytes reserved now.
	pub fn used(&self) -> usize {
		self.used.load(Ordering::Acquire)
	}

	/// The budget.
	pub fn max(&self) -> usize {
		self.max
	}
}

/// What one publisher session holds of the partial-segment [`ByteBudget`]: the `byte_len` of
/// the segment it is assembling, or nothing between segments. Sans-IO: the driver calls
/// [`Self::sync`] after every frame with what the session assembles now, and [`Self::release`]
/// when the session ends.
#[derive(Debug, Default)]
pub struct PartialReservation {
	held: usize,
}

impl PartialReservation {
	/// Holds `assembling` bytes (0 between segments): reserves the difference, or gives back
	/// what is no longer needed. `false` (holding nothing) if the budget cannot take it: the
	/// caller closes the publisher.
	#[must_use]
	pub fn sync(&mut self, budget: &ByteBudget, assembling: usize) -> bool {
		if assembling <= self.held {
			budget.release(self.held - assembling);
			self.held = assembling;
			return true;
		}
		if budget.try_reserve(assembling - self.held) {
			self.held = assembling;
			true
		} else {
			self.release(budget);
			false
		}
	}

	/// Gives everything back (the session ended).
	pub fn release(&mut self, budget: &ByteBudget) {
		budget.release(std::mem::take(&mut self.held));
	}

	/// Bytes held.
	pub fn held(&self) -> usize {
		self.held
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn a_budget_is_never_exceeded_and_refusals_hold_nothing() {
		let b = ByteBudget::new(100);
		assert!(b.try_reserve(60));
		assert!(!b.try_reserve(41));
		assert_eq!(b.used(), 60);
		assert!(b.try_reserve(40));
		assert!(!b.try_reserve(1));
		assert!(!b.try_reserve(usize::MAX), "no overflow");
		b.release(100);
		assert_eq!(b.used(), 0);
		b.release(5);
		assert_eq!(b.used(), 0, "saturates");
	}

	#[test]
	fn a_publisher_holds_its_segment_in_progress_until_it_completes_or_leaves() {
		let b = ByteBudget::new(1000);
		let (mut p, mut q) = (PartialReservation::default(), PartialReservation::default());
		assert!(p.sync(&b, 600));
		assert!(!q.sync(&b, 600), "announces more than is left");
		assert_eq!((q.held(), b.used()), (0, 600));
		assert!(q.sync(&b, 400));
		assert!(p.sync(&b, 0), "segment complete");
		assert_eq!(b.used(), 400);
		q.release(&b);
		assert_eq!(b.used(), 0);
		assert_eq!(MemoryConfig::default().worst_case_bytes(), 1280 * 1024 * 1024);
	}
}
