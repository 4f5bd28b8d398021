//! [`LookupBudget`]: how many lookups of unknown stream ids one client address may make the
//! server run, sans-IO (time as [`Millis`]).
//!
//! A session names a stream; when its origin key is not fixed at start, the server asks its
//! [`super::StreamDirectory`] (inside `dsp-node`: the chain's registry, a runtime call of
//! 0.2 to 0.8 ms in a debug build). The node's `UnknownStreams` cache makes most unknown ids
//! free, but not all (closed streams beyond those it remembers, one check per new block), and
//! while one session names one stream and is closed when it is unknown, one address can open
//! session after session, each with a fresh id. So each address has a token bucket, and every
//! lookup that reads the chain takes a token before it runs, whatever it finds; what the
//! directory's cache answers (open streams of this block, ids `UnknownStreams` knows) is free
//! and never refused (`StreamDirectory::cached_origin_key`), so honest viewers behind one NAT
//! with a flooder still find the streams they watch. A lookup the bucket cannot pay is not
//! run: the stream is reported unknown (`Error { UnknownStream }`).
//!
//! Call order: [`LookupBudget::try_take`] before a lookup that reads for an address (do not
//! look up if it fails).
//!
//! Memory: one entry of about 64 bytes per address with tokens spent, at most
//! [`LookupBudgetConfig::max_addresses`] (default 16 384: about 1 MiB). A full bucket is the
//! same as none, so full ones are dropped (at most one sweep a second) when the map is full;
//! if none is, a new address is refused until one refills: evicting a spent bucket would give
//! its address a fresh burst.

use super::per_address::AddressKey;
use crate::{clock::Millis, p2p::upload::UploadCap};
use std::{collections::HashMap, net::IpAddr};

/// Units of [`UploadCap`] one lookup costs: the bucket counts lookup-seconds, so that a rate
/// per minute refills in whole units per second.
const UNITS_PER_LOOKUP: u64 = 60;

/// The per-address budget for lookups of unknown stream ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupBudgetConfig {
	/// Lookups of unknown stream ids one address (IPv4, or IPv6 /64) may make per minute,
	/// sustained. Default 60: a viewer that mistypes an id, or a NAT's viewers of streams
	/// that just closed, stay far below it; a flood of fresh ids from one address costs the
	/// node at most one lookup a second.
	pub per_minute: u64,
	/// Lookups of unknown stream ids one address may make at once (at least 1). Default 16.
	pub burst: u64,
	/// Addresses whose spent tokens are remembered. Default 16 384 (about 1 MiB).
	pub max_addresses: usize,
}

impl Default for LookupBudgetConfig {
	fn default() -> Self {
		Self { per_minute: 60, burst: 16, max_addresses: 16_384 }
	}
}

#[derive(Clone, Debug)]
struct Bucket {
	tokens: UploadCap,
	/// When a token was last taken.
	charged: Millis,
}

/// The buckets of the addresses that spent tokens. See the module docs.
#[derive(Debug)]
pub struct LookupBudget {
	config: LookupBudgetConfig,
	buckets: HashMap<AddressKey, Bucket>,
	/// When full buckets were last dropped from a full map (one sweep a second at most).
	swept: Option<Millis>,
}

impl LookupBudget {
	/// Every address with a full bucket.
	pub fn new(mut config: LookupBudgetConfig) -> Self {
		config.burst = config.burst.max(1);
		config.max_addresses = config.max_addresses.max(1);
		Self { config, buckets: HashMap::new(), swept: None }
	}

	fn full_bucket(&self, now: Millis) -> Bucket {
		let c = &self.config;
		Bucket {
			tokens: UploadCap::new(now, c.per_minute, c.burst.saturating_mul(UNITS_PER_LOOKUP)),
			charged: now,
		}
	}

	/// Takes a token of `ip`'s bucket for one lookup; `false` (nothing taken) if it has none:
	/// then the lookup must not run.
	pub fn try_take(&mut self, now: Millis, ip: IpAddr) -> bool {
		let key = AddressKey::of(ip);
		if !self.buckets.contains_key(&key) {
			if !self.make_room(now) {
				return false;
			}
			let full = self.full_bucket(now);
			self.buckets.insert(key, full);
		}
		let Some(b) = self.buckets.get_mut(&key) else { return false };
		if b.tokens.try_take(now, UNITS_PER_LOOKUP) {
			b.charged = now;
			true
		} else {
			false
		}
	}

	/// Addresses remembered now.
	pub fn addresses(&self) -> usize {
		self.buckets.len()
	}

	/// Whether there is room for one more address: when the map is full, full buckets are
	/// dropped (at most once a second: a sweep reads every entry); spent ones are kept.
	fn make_room(&mut self, now: Millis) -> bool {
		if self.buckets.len() < self.config.max_addresses {
			return true;
		}
		if self.swept.is_none_or(|at| now.saturating_sub(at) >= 1_000) {
			self.swept = Some(now);
			self.buckets.retain(|_, b| !b.tokens.is_full(now));
		}
		self.buckets.len() < self.config.max_addresses
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn ip(s: &str) -> IpAddr {
		s.parse().unwrap()
	}

	#[test]
	fn unknown_ids_are_paid_per_address_and_refill_works() {
		let config = LookupBudgetConfig { per_minute: 60, burst: 4, max_addresses: 16 };
		let mut b = LookupBudget::new(config);
		let attacker = ip("10.0.0.1");
		// Four unknown ids at once, then nothing until a token refills (one a second).
		for _ in 0..4 {
			assert!(b.try_take(0, attacker));
		}
		assert!(!b.try_take(0, attacker));
		assert!(!b.try_take(999, attacker));
		assert!(b.try_take(1_000, attacker));
		assert!(!b.try_take(1_000, attacker));
		// Another address is not affected; nor is the same /64 spared.
		assert!(b.try_take(1_000, ip("10.0.0.2")));
		for _ in 0..4 {
			assert!(b.try_take(1_000, ip("2001:db8::1")));
		}
		assert!(!b.try_take(1_000, ip("2001:db8::2")), "same /64");
	}

	#[test]
	fn the_map_is_bounded_and_a_spent_bucket_is_never_refilled_by_eviction_works() {
		let config = LookupBudgetConfig { per_minute: 60, burst: 1, max_addresses: 3 };
		let mut b = LookupBudget::new(config);
		for n in 0..3u8 {
			assert!(b.try_take(0, IpAddr::from([10, 0, 0, n])));
		}
		// Full of spent buckets: a new address is refused, nobody is evicted.
		for n in 3..10u8 {
			assert!(!b.try_take(10, IpAddr::from([10, 0, 0, n])));
			assert_eq!(b.addresses(), 3);
		}
		assert!(!b.try_take(10, ip("10.0.0.0")), "still spent: no fresh burst");
		// One second later the buckets are full again, so they make room.
		assert!(b.try_take(1_010, ip("10.0.0.9")));
		assert!(b.addresses() <= 3);
	}
}
