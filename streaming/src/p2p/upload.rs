//! The serving side of a viewer: how much it uploads ([`UploadCap`]) and which queued peer
//! request it serves next ([`Uploader`], earliest requester deadline first).
//!
//! Call order for a driver: [`Uploader::handle_request`] for every request a peer sends (answer
//! a refusal with a "reject" so the peer asks elsewhere at once), [`Uploader::handle_cancel`]
//! when a peer withdraws one, then take [`Uploader::poll_serve`] until it returns `None` and send
//! those chunks; wake at [`Uploader::poll_timeout`].

use super::Millis;
use std::collections::BTreeSet;
use thiserror::Error;

/// Default upload cap: 1.5 Mbit/s. A phone on a cellular uplink typically has a few Mbit/s;
/// relaying 1.5 Mbit/s (three times a 500 kbit/s stream, enough to carry one's own share of the
/// swarm with margin) leaves room for the phone's own traffic and keeps a metered plan's cost
/// bounded (about 675 MB per hour of watching, at most).
pub const DEFAULT_UPLOAD_BYTES_PER_SEC: u64 = 1_500_000 / 8;

/// Settings of the serving side.
#[derive(Clone, Debug)]
pub struct UploadConfig {
	/// Sustained upload, bytes per second. Default [`DEFAULT_UPLOAD_BYTES_PER_SEC`]
	/// (1.5 Mbit/s).
	pub bytes_per_sec: u64,
	/// Largest burst, bytes: what may leave at once after an idle spell. Default 64 KiB (a few
	/// chunks: enough to answer a request at once, small against a phone's socket buffers).
	pub burst_bytes: u64,
	/// Most requests queued; a request beyond it is refused (or evicts the queued one with the
	/// latest deadline, if the new one is more urgent). Default 8: at 16 KiB chunks and the
	/// default rate that is 0.7 s of work, about a requester's shortest timeout, so a request
	/// queued is likely served in time and the others are told at once to ask elsewhere (in
	/// the simulator, 16 let 29 % of peer requests time out, 8 let 17 %, other settings
	/// equal). Memory: a few dozen bytes per entry.
	pub max_queued: usize,
}

impl Default for UploadConfig {
	fn default() -> Self {
		Self { bytes_per_sec: DEFAULT_UPLOAD_BYTES_PER_SEC, burst_bytes: 64 * 1024, max_queued: 8 }
	}
}

/// Token bucket: `bytes_per_sec` sustained, `burst_bytes` at most at once. Integer arithmetic
/// in milli-bytes (bytes/s × ms), so a rate of a few bytes per ms loses nothing to rounding.
#[derive(Clone, Debug)]
pub struct UploadCap {
	bytes_per_sec: u64,
	burst_millibytes: u64,
	tokens_millibytes: u64,
	updated: Millis,
}

impl UploadCap {
	/// A full bucket at `now`.
	pub fn new(now: Millis, bytes_per_sec: u64, burst_bytes: u64) -> Self {
		let burst_millibytes = burst_bytes.saturating_mul(1000);
		Self { bytes_per_sec, burst_millibytes, tokens_millibytes: burst_millibytes, updated: now }
	}

	fn refill(&mut self, now: Millis) {
		let elapsed = now.saturating_sub(self.updated);
		self.updated = self.updated.max(now);
		self.tokens_millibytes = self
			.tokens_millibytes
			.saturating_add(elapsed.saturating_mul(self.bytes_per_sec))
			.min(self.burst_millibytes);
	}

	/// Takes `bytes` if the bucket holds them. A chunk larger than the burst is allowed once the
	/// bucket is full, so a small burst setting cannot block a large chunk forever.
	pub fn try_take(&mut self, now: Millis, bytes: u64) -> bool {
		self.refill(now);
		let need = bytes.saturating_mul(1000).min(self.burst_millibytes);
		if self.tokens_millibytes >= need {
			self.tokens_millibytes -= need;
			true
		} else {
			false
		}
	}

	/// Returns `bytes` taken by [`Self::try_take`] and not used (the bucket holds at most its
	/// burst).
	pub fn give_back(&mut self, bytes: u64) {
		self.tokens_millibytes = self
			.tokens_millibytes
			.saturating_add(bytes.saturating_mul(1000))
			.min(self.burst_millibytes);
	}

	/// Whether the bucket is full at `now` (it is then no different from a new one).
	pub fn is_full(&mut self, now: Millis) -> bool {
		self.refill(now);
		self.tokens_millibytes >= self.burst_millibytes
	}

	/// When the bucket last changed: [`UploadCap::is_full`] at this time does not refill it.
	pub fn last_update(&self) -> Millis {
		self.updated
	}

	/// When `bytes` will be available (`now` if they are).
	pub fn ready_at(&mut self, now: Millis, bytes: u64) -> Millis {
		self.refill(now);
		let need = bytes.saturating_mul(1000).min(self.burst_millibytes);
		if self.tokens_millibytes >= need || self.bytes_per_sec == 0 {
			// A zero rate never refills: report "now" and let `try_take` keep refusing.
			return now;
		}
		now + (need - self.tokens_millibytes).div_ceil(self.bytes_per_sec)
	}
}

/// Why a request was not queued. The requester should ask another source.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum UploadRefusal {
	/// The queue is full of requests at least as urgent.
	#[error("upload queue full")]
	QueueFull,
	/// Its deadline has passed already.
	#[error("deadline passed")]
	Expired,
	/// The same request is queued already.
	#[error("duplicate request")]
	Duplicate,
}

/// A request to serve now: send chunk `index` of segment `seq` (`len` bytes) to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Serve<P> {
	/// Requester.
	pub to: P,
	/// Segment.
	pub seq: u64,
	/// Chunk index.
	pub index: u32,
	/// Chunk length.
	pub len: u32,
	/// The requester's deadline.
	pub deadline: Millis,
}

/// Counters of the serving side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadStats {
	/// Chunks handed out to be sent.
	pub served: u64,
	/// Bytes handed out to be sent.
	pub bytes: u64,
	/// Requests refused or evicted because the queue was full.
	pub refused: u64,
	/// Requests dropped because their deadline passed while queued.
	pub expired: u64,
	/// Requests withdrawn by their requester.
	pub cancelled: u64,
}

/// Queued peer requests served earliest deadline first under an [`UploadCap`].
#[derive(Clone, Debug)]
pub struct Uploader<P> {
	config: UploadConfig,
	cap: UploadCap,
	/// Ordered by (deadline, requester, seq, index): the first is the most urgent.
	queue: BTreeSet<(Millis, P, u64, u32, u32)>,
	refused: Vec<Serve<P>>,
	stats: UploadStats,
}

impl<P: Copy + Ord> Uploader<P> {
	/// An idle uploader with a full bucket at `now`.
	pub fn new(now: Millis, config: UploadConfig) -> Self {
		let cap = UploadCap::new(now, config.bytes_per_sec, config.burst_bytes);
		Self {
			config,
			cap,
			queue: BTreeSet::new(),
			refused: Vec::new(),
			stats: UploadStats::default(),
		}
	}

	/// Counters.
	pub fn stats(&self) -> UploadStats {
		self.stats
	}

	/// Requests waiting.
	pub fn queued(&self) -> usize {
		self.queue.len()
	}

	/// Queues a request. When the queue is full the least urgent request (latest deadline) is
	/// dropped if the new one is more urgent; that evicted request is then reported by
	/// [`Uploader::poll_refused`] so its requester can be told.
	pub fn handle_request(&mut self, now: Millis, req: Serve<P>) -> Result<(), UploadRefusal> {
		if req.deadline <= now {
			self.stats.refused += 1;
			return Err(UploadRefusal::Expired);
		}
		let key = (req.deadline, req.to, req.seq, req.index, req.len);
		if self
			.queue
			.iter()
			.any(|&(_, to, seq, index, _)| (to, seq, index) == (req.to, req.seq, req.index))
		{
			return Err(UploadRefusal::Duplicate);
		}
		if self.queue.len() >= self.config.max_queued {
			let last = *self.queue.last().expect("full queue is not empty");
			if last.0 <= req.deadline {
				self.stats.refused += 1;
				return Err(UploadRefusal::QueueFull);
			}
			self.queue.remove(&last);
			self.stats.refused += 1;
			self.refused.push(Serve {
				to: last.1,
				seq: last.2,
				index: last.3,
				len: last.4,
				deadline: last.0,
			});
		}
		self.queue.insert(key);
		Ok(())
	}

	/// The requester withdrew its request (it got the chunk elsewhere or left).
	pub fn handle_cancel(&mut self, from: P, seq: u64, index: u32) {
		let before = self.queue.len();
		self.queue.retain(|&(_, to, s, i, _)| (to, s, i) != (from, seq, index));
		self.stats.cancelled += (before - self.queue.len()) as u64;
	}

	/// The requester went away: drop all its requests.
	pub fn handle_peer_left(&mut self, peer: P) {
		self.queue.retain(|&(_, to, _, _, _)| to != peer);
	}

	/// A request evicted from a full queue; tell its requester to ask elsewhere.
	pub fn poll_refused(&mut self) -> Option<Serve<P>> {
		self.refused.pop()
	}

	/// The next chunk to send, if the cap allows it now. Requests whose deadline passed are
	/// dropped on the way: the requester has asked elsewhere by then.
	pub fn poll_serve(&mut self, now: Millis) -> Option<Serve<P>> {
		while let Some(&first) = self.queue.first() {
			let (deadline, to, seq, index, len) = first;
			if deadline <= now {
				self.queue.remove(&first);
				self.stats.expired += 1;
				continue;
			}
			if !self.cap.try_take(now, len as u64) {
				return None;
			}
			self.queue.remove(&first);
			self.stats.served += 1;
			self.stats.bytes += len as u64;
			return Some(Serve { to, seq, index, len, deadline });
		}
		None
	}

	/// When [`Uploader::poll_serve`] may return something new (`None` when the queue is empty).
	pub fn poll_timeout(&mut self, now: Millis) -> Option<Millis> {
		let &(_, _, _, _, len) = self.queue.first()?;
		Some(self.cap.ready_at(now, len as u64).max(now + 1))
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn req(to: u32, seq: u64, index: u32, deadline: Millis) -> Serve<u32> {
		Serve { to, seq, index, len: 10_000, deadline }
	}

	#[test]
	fn token_bucket_caps_rate_works() {
		// 10 kB/s, 10 kB burst: two 10 kB chunks need one second between them.
		let mut cap = UploadCap::new(0, 10_000, 10_000);
		assert!(cap.try_take(0, 10_000));
		assert!(!cap.try_take(500, 10_000));
		assert_eq!(cap.ready_at(500, 10_000), 1000);
		assert!(cap.try_take(1000, 10_000));
		// Idle time refills no further than the burst.
		assert!(cap.try_take(100_000, 10_000));
		assert!(!cap.try_take(100_000, 1));
	}

	#[test]
	fn upload_cap_limits_bytes_over_time_works() {
		// Over 10 simulated seconds, a 10 kB/s cap with a 10 kB burst serves at most
		// 10 kB + 10 s × 10 kB/s, however many requests are queued.
		let config = UploadConfig { bytes_per_sec: 10_000, burst_bytes: 10_000, max_queued: 1000 };
		let mut up = Uploader::new(0, config);
		for i in 0..100 {
			up.handle_request(0, req(1, 0, i, 1_000_000)).unwrap();
		}
		let mut now = 0;
		let mut served = 0u64;
		while now <= 10_000 {
			while let Some(s) = up.poll_serve(now) {
				served += s.len as u64;
			}
			now = up.poll_timeout(now).unwrap();
		}
		assert_eq!(served, 110_000);
		assert_eq!(up.stats().served, 11);
	}

	#[test]
	fn earliest_deadline_served_first_works() {
		let mut up = Uploader::new(
			0,
			UploadConfig { bytes_per_sec: 1, burst_bytes: 1_000_000, ..Default::default() },
		);
		up.handle_request(0, req(1, 5, 0, 900)).unwrap();
		up.handle_request(0, req(2, 3, 1, 300)).unwrap();
		up.handle_request(0, req(3, 4, 0, 600)).unwrap();
		let order: Vec<u32> = std::iter::from_fn(|| up.poll_serve(1)).map(|s| s.to).collect();
		assert_eq!(order, vec![2, 3, 1]);
	}

	#[test]
	fn full_queue_evicts_least_urgent_and_expired_dropped_works() {
		let config = UploadConfig { bytes_per_sec: 1, burst_bytes: 1, max_queued: 2 };
		let mut up = Uploader::new(0, config);
		assert_eq!(up.handle_request(10, req(1, 0, 0, 5)), Err(UploadRefusal::Expired));
		up.handle_request(10, req(1, 0, 0, 500)).unwrap();
		up.handle_request(10, req(2, 0, 0, 400)).unwrap();
		assert_eq!(up.handle_request(10, req(2, 0, 0, 400)), Err(UploadRefusal::Duplicate));
		assert_eq!(up.handle_request(10, req(3, 0, 0, 600)), Err(UploadRefusal::QueueFull));
		up.handle_request(10, req(4, 0, 0, 100)).unwrap();
		assert_eq!(up.poll_refused().map(|s| s.to), Some(1));
		// The bucket starts full: the most urgent request (4) goes first, request 2 stays.
		assert_eq!(up.poll_serve(10).map(|s| s.to), Some(4));
		assert_eq!(up.poll_serve(10), None);
		assert_eq!(up.queued(), 1);
		up.handle_cancel(2, 0, 0);
		assert_eq!(up.queued(), 0);
		assert_eq!(up.stats().cancelled, 1);
	}
}
