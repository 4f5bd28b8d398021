//! [`LookupBudget`]: how many lookups of unknown stream ids one client address may make the
//! server run, sans-IO (time as [`Millis`]).
//!
//! A session names a stream; when its origin key is not fixed at start, the server asks its
//! [`super::StreamDirectory`] (inside `dsp-node`: the chain's registry, a runtime call of
//! 0.2 to 0.8 ms in a debug build). The node's `UnknownStreams` cache makes most unknown ids
//! free, but not all (closed streams beyond those it remembers, one check per new block), and
//! while one session names one stream and is closed when it is unknown, one address can open
//! session after session, each with a fresh id. So each address has a token bucket: a lookup
//! takes a token before it runs and gives it back if it found an open stream (their keys are
//! cached per block, and honest viewers behind one NAT name the same few streams), so only
//! lookups of unknown (or closed) ids are paid. A lookup the bucket cannot pay is not run: the
//! stream is reported unknown, as it is for an unknown id (`Error { UnknownStream }`).
//!
//! Call order: [`LookupBudget::try_take`] before a lookup for an address (do not look up if it
//! fails), and [`LookupBudget::give_back`] once the lookup found an open stream.
//!
//! Memory: one entry of about 64 bytes per address with tokens spent, at most
//! [`LookupBudgetConfig::max_addresses`] (default 16 384: about 1 MiB). A full bucket is the
//! same as none, so full ones are dropped first when the map is full; beyond that the least
//! recently charged entry goes (that address starts again with a full bucket: an attacker with
//! that many addresses has that many buckets anyway).

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
}

impl LookupBudget {
	/// Every address with a full bucket.
	pub fn new(mut config: LookupBudgetConfig) -> Self {
		config.burst = config.burst.max(1);
		config.max_addresses = config.max_addresses.max(1);
		Self { config, buckets: HashMap::new() }
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
			self.make_room(now);
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

	/// The lookup a token was taken for found an open stream: the token goes back.
	pub fn give_back(&mut self, now: Millis, ip: IpAddr) {
		let key = AddressKey::of(ip);
		if let Some(b) = self.buckets.get_mut(&key) {
			b.tokens.give_back(UNITS_PER_LOOKUP);
			if b.tokens.is_full(now) {
				self.buckets.remove(&key);
			}
		}
	}

	/// Addresses remembered now.
	pub fn addresses(&self) -> usize {
		self.buckets.len()
	}

	/// Room for one more address: full buckets go first, then the least recently charged.
	fn make_room(&mut self, now: Millis) {
		if self.buckets.len() < self.config.max_addresses {
			return;
		}
		self.buckets.retain(|_, b| !b.tokens.is_full(now));
		if self.buckets.len() >= self.config.max_addresses {
			let oldest = self.buckets.iter().min_by_key(|(_, b)| b.charged).map(|(k, _)| *k);
			if let Some(k) = oldest {
				self.buckets.remove(&k);
			}
		}
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
	fn lookups_of_open_streams_cost_nothing_works() {
		let mut b = LookupBudget::new(LookupBudgetConfig { burst: 2, ..Default::default() });
		let nat = ip("10.0.0.9");
		for _ in 0..100 {
			assert!(b.try_take(0, nat));
			b.give_back(0, nat);
		}
		assert_eq!(b.addresses(), 0, "a full bucket is not kept");
		assert!(b.try_take(0, nat) && b.try_take(0, nat));
	}

	#[test]
	fn the_map_is_bounded_works() {
		let config = LookupBudgetConfig { per_minute: 60, burst: 1, max_addresses: 3 };
		let mut b = LookupBudget::new(config);
		for n in 0..10u8 {
			assert!(b.try_take(n as Millis, IpAddr::from([10, 0, 0, n])));
			assert!(b.addresses() <= 3);
		}
		// The most recently charged are kept: 10.0.0.9 still has no token.
		assert!(!b.try_take(10, ip("10.0.0.9")));
	}
}
