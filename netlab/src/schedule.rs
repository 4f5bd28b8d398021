//! The delay schedule of the relay, sans-IO: [`DelaySchedule`] says when a packet (UDP) or a
//! read (TCP) that arrived at `now` leaves the relay, and [`DelayLine`] holds what is waiting.
//! Time is a `u64` millisecond count passed in by the caller; nothing here reads a clock, so
//! the tests drive it step by step.

use std::{cmp::Reverse, collections::BinaryHeap, fmt};

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// Delay added in ONE direction: every item waits `delay_ms` plus a uniform jitter in
/// `[-jitter_ms, +jitter_ms]` (never below 0). A relay applies one profile to each direction,
/// so the round trip grows by twice `delay_ms` on average.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayProfile {
	/// Fixed one-way delay, ms.
	pub delay_ms: u64,
	/// Largest deviation from `delay_ms` either way, ms (uniform).
	pub jitter_ms: u64,
}

/// Whether items may overtake each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
	/// An item never leaves before one that arrived earlier (TCP always: a byte stream must
	/// stay in order). With jitter, an item drawn shorter than its predecessor's waits for it,
	/// so a burst leaves together, as a FIFO link with variable delay would deliver it.
	Keep,
	/// Every item gets its own delay and may overtake earlier ones (UDP by default): what a
	/// path with jitter does to datagrams, and what `netem` jitter does.
	AllowReorder,
}

impl fmt::Display for Order {
	fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
		f.write_str(match self {
			Order::Keep => "keep order",
			Order::AllowReorder => "reordering allowed",
		})
	}
}

/// A small deterministic generator (SplitMix64): the same seed gives the same jitter, so a lab
/// run can be repeated. Not for anything secret.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
	/// A generator starting from `seed`.
	pub fn new(seed: u64) -> Self {
		Self(seed)
	}

	/// The next 64 random bits.
	pub fn next_u64(&mut self) -> u64 {
		self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
		let mut z = self.0;
		z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
		z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
		z ^ (z >> 31)
	}

	/// Uniform in `0..=max` (the modulo bias is negligible for lab-sized `max`).
	pub fn below_or_eq(&mut self, max: u64) -> u64 {
		if max == u64::MAX {
			return self.next_u64();
		}
		self.next_u64() % (max + 1)
	}
}

/// When each item leaves: `arrival + delay ± jitter`, and with [`Order::Keep`] never before the
/// item before it.
#[derive(Clone, Debug)]
pub struct DelaySchedule {
	profile: DelayProfile,
	order: Order,
	rng: SplitMix64,
	/// Latest release handed out (for [`Order::Keep`]).
	last_release: Millis,
}

impl DelaySchedule {
	/// A schedule with `profile` and `order`; `seed` fixes the jitter sequence.
	pub fn new(profile: DelayProfile, order: Order, seed: u64) -> Self {
		Self { profile, order, rng: SplitMix64::new(seed), last_release: 0 }
	}

	/// The delay this schedule adds before ordering: `delay ± jitter`, at least 0.
	fn draw(&mut self) -> Millis {
		let DelayProfile { delay_ms, jitter_ms } = self.profile;
		if jitter_ms == 0 {
			return delay_ms;
		}
		let offset = self.rng.below_or_eq(jitter_ms.saturating_mul(2));
		delay_ms.saturating_add(offset).saturating_sub(jitter_ms)
	}

	/// The release time of an item that arrived at `now`.
	pub fn release_at(&mut self, now: Millis) -> Millis {
		let mut at = now.saturating_add(self.draw());
		if self.order == Order::Keep {
			at = at.max(self.last_release);
		}
		self.last_release = self.last_release.max(at);
		at
	}
}

/// Items waiting for their release time, released in release order (ties in arrival order).
/// Memory: one entry per waiting item; the owner bounds how many it pushes.
#[derive(Debug)]
pub struct DelayLine<T> {
	schedule: DelaySchedule,
	waiting: BinaryHeap<Reverse<Entry<T>>>,
	arrivals: u64,
}

#[derive(Debug)]
struct Entry<T> {
	release: Millis,
	arrival: u64,
	item: T,
}

impl<T> PartialEq for Entry<T> {
	fn eq(&self, other: &Self) -> bool {
		(self.release, self.arrival) == (other.release, other.arrival)
	}
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
	fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
		Some(self.cmp(other))
	}
}
impl<T> Ord for Entry<T> {
	fn cmp(&self, other: &Self) -> std::cmp::Ordering {
		(self.release, self.arrival).cmp(&(other.release, other.arrival))
	}
}

impl<T> DelayLine<T> {
	/// An empty line releasing by `schedule`.
	pub fn new(schedule: DelaySchedule) -> Self {
		Self { schedule, waiting: BinaryHeap::new(), arrivals: 0 }
	}

	/// `item` arrived at `now`; returns its release time.
	pub fn push(&mut self, now: Millis, item: T) -> Millis {
		let release = self.schedule.release_at(now);
		let arrival = self.arrivals;
		self.arrivals += 1;
		self.waiting.push(Reverse(Entry { release, arrival, item }));
		release
	}

	/// The next item due at or before `now`, if any.
	pub fn poll_ready(&mut self, now: Millis) -> Option<T> {
		if self.waiting.peek()?.0.release > now {
			return None;
		}
		self.waiting.pop().map(|Reverse(e)| e.item)
	}

	/// When the next item is due (`None` when empty): the caller's timer.
	pub fn poll_timeout(&self) -> Option<Millis> {
		self.waiting.peek().map(|Reverse(e)| e.release)
	}

	/// Items waiting.
	pub fn len(&self) -> usize {
		self.waiting.len()
	}

	/// Whether nothing is waiting.
	pub fn is_empty(&self) -> bool {
		self.waiting.is_empty()
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn profile(delay_ms: u64, jitter_ms: u64) -> DelayProfile {
		DelayProfile { delay_ms, jitter_ms }
	}

	#[test]
	fn without_jitter_every_item_waits_exactly_the_delay() {
		let mut s = DelaySchedule::new(profile(40, 0), Order::AllowReorder, 1);
		for now in [0, 5, 5, 100, 1000] {
			assert_eq!(s.release_at(now), now + 40);
		}
	}

	#[test]
	fn jitter_stays_within_its_bounds_and_covers_them() {
		let mut s = DelaySchedule::new(profile(40, 10), Order::AllowReorder, 7);
		let delays: Vec<u64> = (0..10_000).map(|i| s.release_at(i * 100) - i * 100).collect();
		assert!(delays.iter().all(|d| (30..=50).contains(d)), "delay ± jitter");
		assert_eq!(delays.iter().min(), Some(&30));
		assert_eq!(delays.iter().max(), Some(&50));
		let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
		assert!((mean - 40.0).abs() < 0.5, "uniform around the delay: mean {mean}");
	}

	#[test]
	fn jitter_larger_than_the_delay_never_goes_below_zero() {
		let mut s = DelaySchedule::new(profile(5, 20), Order::AllowReorder, 3);
		for i in 0..1000 {
			let now = 1000 + i;
			let at = s.release_at(now);
			assert!(at >= now && at <= now + 25);
		}
	}

	#[test]
	fn keep_order_never_releases_an_item_before_an_earlier_one() {
		let mut s = DelaySchedule::new(profile(40, 30), Order::Keep, 11);
		let mut last = 0;
		let mut held_back = 0;
		for now in 0..5000 {
			let at = s.release_at(now);
			assert!(at >= last, "in order");
			assert!(at >= now + 10, "never less than delay - jitter");
			assert!(at <= (now + 70).max(last), "at most delay + jitter, or with the item before");
			held_back += u64::from(at == last);
			last = at;
		}
		assert!(held_back > 0, "some items waited for their predecessor");
	}

	#[test]
	fn allow_reorder_lets_items_overtake() {
		let mut s = DelaySchedule::new(profile(40, 30), Order::AllowReorder, 11);
		let releases: Vec<u64> = (0..1000).map(|now| s.release_at(now)).collect();
		assert!(releases.windows(2).any(|w| w[1] < w[0]), "jitter reorders datagrams");
	}

	#[test]
	fn the_same_seed_gives_the_same_schedule() {
		let run = |seed| {
			let mut s = DelaySchedule::new(profile(40, 20), Order::AllowReorder, seed);
			(0..100).map(|i| s.release_at(i)).collect::<Vec<_>>()
		};
		assert_eq!(run(5), run(5));
		assert_ne!(run(5), run(6));
	}

	#[test]
	fn a_delay_line_releases_nothing_early_and_everything_in_release_order() {
		let mut line = DelayLine::new(DelaySchedule::new(profile(40, 20), Order::AllowReorder, 2));
		let mut due = Vec::new();
		for i in 0..200u64 {
			due.push((line.push(i, i), i));
		}
		due.sort();
		let mut out = Vec::new();
		for now in 0..400 {
			while let Some(item) = line.poll_ready(now) {
				let release = due.iter().find(|(_, x)| *x == item).map(|(r, _)| *r);
				assert!(release.is_some_and(|r| r <= now), "never before its release");
				out.push(item);
			}
			if let Some(t) = line.poll_timeout() {
				assert!(t > now, "the timer points past what was released");
			}
		}
		assert!(line.is_empty());
		assert_eq!(out, due.iter().map(|(_, i)| *i).collect::<Vec<_>>(), "release order");
	}

	#[test]
	fn a_keep_order_delay_line_is_fifo() {
		let mut line = DelayLine::new(DelaySchedule::new(profile(40, 35), Order::Keep, 9));
		for i in 0..500u64 {
			line.push(i / 3, i);
		}
		assert_eq!(line.len(), 500);
		let mut out = Vec::new();
		let mut now = 0;
		while !line.is_empty() {
			now = line.poll_timeout().unwrap_or(now);
			while let Some(i) = line.poll_ready(now) {
				out.push(i);
			}
		}
		assert_eq!(out, (0..500).collect::<Vec<_>>());
	}
}
