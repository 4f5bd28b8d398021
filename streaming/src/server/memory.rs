//! The server's memory bounds beyond one stream: how many streams one origin may hold, and the
//! byte budgets that live windows and partly assembled segments of all publishers share.
//!
//! A stream's own window is bounded by [`super::WindowConfig`] and one publisher's segment in
//! progress by `SegmentLimits::max_segment_len`; what this adds is the total, so that many
//! streams (or many publishers) cannot add up to more than the node has. Budgets are
//! [`ByteBudget`]s: reserved before the bytes are held, released when they are dropped, and
//! refused (never exceeded) when spent.

use dsp_primitives::PublicKey;
use std::{
	collections::HashMap,
	sync::{
		atomic::{AtomicUsize, Ordering},
		Mutex,
	},
};

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
	/// Most of `max_partial_bytes` the publishers of one origin key hold together; a header
	/// beyond it closes that publisher with `OverBudget` and leaves the rest to other origins.
	/// Default 32 MiB (two segments of the largest size, or about 25 publishers sending 2 s
	/// segments at 5 Mbit/s): without it, the publishers of two registered origins that leave
	/// 16 MiB segments half sent hold the whole total and every other origin's next header is
	/// refused. With the defaults, eight origins are needed to fill the total.
	pub max_partial_bytes_per_origin: usize,
}

impl Default for MemoryConfig {
	fn default() -> Self {
		Self {
			max_streams_per_origin: 8,
			max_window_bytes: 1024 * 1024 * 1024,
			max_partial_bytes: 256 * 1024 * 1024,
			max_partial_bytes_per_origin: 32 * 1024 * 1024,
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

/// The partial-segment budget: a total shared by all publishers ([`MemoryConfig::max_partial_bytes`])
/// and a share per origin key ([`MemoryConfig::max_partial_bytes_per_origin`]), so that the
/// publishers of a few origins cannot hold the whole total and refuse every other origin.
#[derive(Debug)]
pub struct PartialBudget {
	total: ByteBudget,
	per_origin_max: usize,
	/// Bytes held per origin; an origin holding nothing has no entry, so the map has at most
	/// one entry per publisher holding bytes.
	per_origin: Mutex<HashMap<PublicKey, usize>>,
}

/// Why a segment in progress was refused room in the [`PartialBudget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartialRefused {
	/// The origin's publishers hold their share already.
	#[error(
		"segment of {want} bytes does not fit its origin's share of the partial-segment budget \
		 ({held} of {max} bytes held by this origin's publishers; max_partial_bytes_per_origin)"
	)]
	Origin {
		/// Bytes asked for.
		want: usize,
		/// Bytes the origin holds.
		held: usize,
		/// The share.
		max: usize,
	},
	/// All publishers together hold the total.
	#[error(
		"segment of {want} bytes does not fit the partial-segment budget ({held} of {max} bytes \
		 held by other publishers; max_partial_bytes)"
	)]
	Total {
		/// Bytes asked for.
		want: usize,
		/// Bytes held by all publishers.
		held: usize,
		/// The total.
		max: usize,
	},
}

impl PartialBudget {
	/// An empty budget of `total` bytes, at most `per_origin` of them for one origin.
	pub fn new(total: usize, per_origin: usize) -> Self {
		Self {
			total: ByteBudget::new(total),
			per_origin_max: per_origin,
			per_origin: Mutex::default(),
		}
	}

	fn origins(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, usize>> {
		// A panic while the map is locked leaves it consistent (each update is one statement).
		self.per_origin.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
	}

	/// Reserves `n` more bytes for a publisher of `origin`, if both the origin's share and
	/// the total take them.
	pub fn try_reserve(&self, origin: &PublicKey, n: usize) -> Result<(), PartialRefused> {
		let mut origins = self.origins();
		let held = origins.get(origin).copied().unwrap_or(0);
		if held.saturating_add(n) > self.per_origin_max {
			return Err(PartialRefused::Origin { want: n, held, max: self.per_origin_max });
		}
		if !self.total.try_reserve(n) {
			let (held, max) = (self.total.used(), self.total.max());
			return Err(PartialRefused::Total { want: n, held, max });
		}
		*origins.entry(*origin).or_default() += n;
		Ok(())
	}

	/// Gives back `n` bytes reserved for `origin`.
	pub fn release(&self, origin: &PublicKey, n: usize) {
		if n == 0 {
			return;
		}
		let mut origins = self.origins();
		if let Some(held) = origins.get_mut(origin) {
			*held = held.saturating_sub(n);
			if *held == 0 {
				origins.remove(origin);
			}
		}
		self.total.release(n);
	}

	/// Bytes held by all publishers.
	pub fn used(&self) -> usize {
		self.total.used()
	}

	/// Bytes held by the publishers of `origin`.
	pub fn used_by(&self, origin: &PublicKey) -> usize {
		self.origins().get(origin).copied().unwrap_or(0)
	}
}

/// What one publisher session holds of the [`PartialBudget`]: the `byte_len` of the segment
/// it is assembling, or nothing between segments. Sans-IO: the driver calls [`Self::sync`]
/// after every frame with what the session assembles now, and [`Self::release`] when the
/// session ends.
#[derive(Debug, Default)]
pub struct PartialReservation {
	held: usize,
	origin: Option<PublicKey>,
}

impl PartialReservation {
	/// Holds `assembling` bytes (0 between segments) for a publisher of `origin`: reserves the
	/// difference, or gives back what is no longer needed. On a refusal it holds nothing and
	/// the caller closes the publisher with the reason.
	pub fn sync(
		&mut self,
		budget: &PartialBudget,
		origin: &PublicKey,
		assembling: usize,
	) -> Result<(), PartialRefused> {
		if self.origin.is_some_and(|o| o != *origin) {
			// A session publishes for one origin; never mix two origins' accounts.
			self.release(budget);
		}
		if assembling <= self.held {
			budget.release(origin, self.held - assembling);
			self.held = assembling;
			return Ok(());
		}
		match budget.try_reserve(origin, assembling - self.held) {
			Ok(()) => {
				self.held = assembling;
				self.origin = Some(*origin);
				Ok(())
			}
			Err(refused) => {
				self.release(budget);
				Err(refused)
			}
		}
	}

	/// Gives everything back (the session ended).
	pub fn release(&mut self, budget: &PartialBudget) {
		if let Some(origin) = self.origin.take() {
			budget.release(&origin, std::mem::take(&mut self.held));
		}
		self.held = 0;
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

	fn key(n: u8) -> PublicKey {
		PublicKey::from_raw([n; 32])
	}

	#[test]
	fn a_publisher_holds_its_segment_in_progress_until_it_completes_or_leaves() {
		let (a, b_key) = (key(1), key(2));
		let b = PartialBudget::new(1000, 1000);
		let (mut p, mut q) = (PartialReservation::default(), PartialReservation::default());
		assert!(p.sync(&b, &a, 600).is_ok());
		assert!(
			matches!(q.sync(&b, &b_key, 600), Err(PartialRefused::Total { held: 600, .. })),
			"announces more than is left"
		);
		assert_eq!((q.held(), b.used()), (0, 600));
		assert!(q.sync(&b, &b_key, 400).is_ok());
		assert!(p.sync(&b, &a, 0).is_ok(), "segment complete");
		assert_eq!((b.used(), b.used_by(&a)), (400, 0));
		q.release(&b);
		assert_eq!((b.used(), b.used_by(&b_key)), (0, 0));
		assert_eq!(MemoryConfig::default().worst_case_bytes(), 1280 * 1024 * 1024);
	}

	/// The memory attack of `dsp load --attack memory`: the publishers of two origins leave
	/// segments half sent. Each origin holds at most its share, so a third origin's segment
	/// still finds room in the total.
	#[test]
	fn the_publishers_of_a_few_origins_cannot_hold_the_whole_partial_budget() {
		let (a, b_key, c) = (key(1), key(2), key(3));
		let b = PartialBudget::new(1000, 300);
		let mut attackers: Vec<PartialReservation> = Vec::new();
		for origin in [a, b_key] {
			for _ in 0..10 {
				let mut r = PartialReservation::default();
				if r.sync(&b, &origin, 160).is_ok() {
					attackers.push(r);
				}
			}
		}
		assert_eq!(attackers.len(), 2, "one 160-byte segment per origin fits its 300-byte share");
		assert_eq!((b.used_by(&a), b.used_by(&b_key)), (160, 160));
		let mut r = PartialReservation::default();
		assert_eq!(
			r.sync(&b, &a, 160),
			Err(PartialRefused::Origin { want: 160, held: 160, max: 300 })
		);
		let mut honest = PartialReservation::default();
		assert!(honest.sync(&b, &c, 125).is_ok(), "another origin's segment still fits");
		for mut a in attackers {
			a.release(&b);
		}
		honest.release(&b);
		assert_eq!((b.used(), b.used_by(&a), b.used_by(&c)), (0, 0, 0));
	}
}
