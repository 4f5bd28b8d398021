//! What signature checks remote peers can make a serving node do, sans-IO: a verification
//! budget per peer and in total ([`VerifyBudget`], token buckets on the [`Millis`] clock), and
//! a cache of passes that verified ([`PassCache`]), so that a pass shown again costs nothing.
//!
//! Every sr25519 verification a peer triggers (a pass's peer binding, the pass signature, the
//! two signatures of a receipt) is paid from both buckets before it is made; a request the
//! buckets cannot pay is refused without verifying anything. With the defaults the node makes
//! at most [`DEFAULT_TOTAL_VERIFY_PER_SEC`] verifications per second sustained, whatever the
//! number of peers or peer ids, plus one burst of [`DEFAULT_TOTAL_VERIFY_BURST`].
//!
//! Memory: the cache holds at most `max_cached_passes` entries of about 80 bytes (a hash, an
//! epoch and the map and queue overhead): 1.3 MiB at the default 16 384.

use super::{upload::UploadCap, Millis};
use codec::Encode;
use dsp_primitives::{EpochIndex, Hash32, Signed, ViewerPass};
use std::collections::{HashMap, VecDeque};

/// Default [`VerifyConfig::per_peer_per_sec`]: 4. An honest peer sends one receipt a second
/// (two verifications) and shows a pass per stream and connection, renewed now and then.
pub const DEFAULT_PEER_VERIFY_PER_SEC: u64 = 4;
/// Default [`VerifyConfig::per_peer_burst`]: 16, passes for the 4 streams a peer may hold at
/// once (8) with room for the receipts that follow.
pub const DEFAULT_PEER_VERIFY_BURST: u64 = 16;
/// Default [`VerifyConfig::total_per_sec`]: 1024, the per-peer rate of 256 connected peers
/// (libp2p's default `max_established`). About 0.1 s of one core per second at ~100 us per
/// sr25519 verification on a small server core.
pub const DEFAULT_TOTAL_VERIFY_PER_SEC: u64 = 1024;
/// Default [`VerifyConfig::total_burst`]: 2048, two seconds of the total rate (a seed that
/// restarts and sees its peers come back at once).
pub const DEFAULT_TOTAL_VERIFY_BURST: u64 = 2048;
/// Default [`VerifyConfig::max_cached_passes`]: 16 384.
pub const DEFAULT_MAX_CACHED_PASSES: usize = 16_384;

/// Limits on signature verifications triggered by remote peers.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
	/// Verifications one peer may trigger per second, sustained. Default
	/// [`DEFAULT_PEER_VERIFY_PER_SEC`].
	pub per_peer_per_sec: u64,
	/// Verifications one peer may trigger at once. Default [`DEFAULT_PEER_VERIFY_BURST`].
	pub per_peer_burst: u64,
	/// Verifications all peers together may trigger per second, sustained: new peer ids are
	/// free, so this is what bounds the CPU an attacker can take. Default
	/// [`DEFAULT_TOTAL_VERIFY_PER_SEC`].
	pub total_per_sec: u64,
	/// Verifications all peers together may trigger at once. Default
	/// [`DEFAULT_TOTAL_VERIFY_BURST`].
	pub total_burst: u64,
	/// Passes remembered as verified (and held in the ledger); the oldest is forgotten beyond
	/// it, which only costs a verification again. Default [`DEFAULT_MAX_CACHED_PASSES`].
	pub max_cached_passes: usize,
}

impl Default for VerifyConfig {
	fn default() -> Self {
		Self {
			per_peer_per_sec: DEFAULT_PEER_VERIFY_PER_SEC,
			per_peer_burst: DEFAULT_PEER_VERIFY_BURST,
			total_per_sec: DEFAULT_TOTAL_VERIFY_PER_SEC,
			total_burst: DEFAULT_TOTAL_VERIFY_BURST,
			max_cached_passes: DEFAULT_MAX_CACHED_PASSES,
		}
	}
}

/// Which budget could not pay for a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverBudget {
	/// The peer's own: it asks too much (counted toward its flood ban).
	Peer,
	/// The node's total: many peers ask at once (not the requester's fault).
	Total,
}

/// The node-wide verification budget; each peer's own bucket lives with the peer's state
/// ([`VerifyBudget::peer_bucket`]).
#[derive(Clone, Debug)]
pub struct VerifyBudget {
	config: VerifyConfig,
	total: UploadCap,
	/// Verifications paid for since start (tests and logs).
	spent: u64,
}

impl VerifyBudget {
	/// A full budget at `now`.
	pub fn new(now: Millis, config: VerifyConfig) -> Self {
		let total = UploadCap::new(now, config.total_per_sec, config.total_burst);
		Self { config, total, spent: 0 }
	}

	/// A full bucket for a peer first seen at `now`.
	pub fn peer_bucket(&self, now: Millis) -> UploadCap {
		UploadCap::new(now, self.config.per_peer_per_sec, self.config.per_peer_burst)
	}

	/// Pays for `n` verifications from `peer`'s bucket and the total, or from neither (but
	/// for a zero rate, where a bucket that never refills may keep the peer's share).
	pub fn try_take(
		&mut self,
		now: Millis,
		peer: &mut UploadCap,
		n: u64,
	) -> Result<(), OverBudget> {
		if peer.ready_at(now, n) > now {
			return Err(OverBudget::Peer);
		}
		if !self.total.try_take(now, n) {
			return Err(OverBudget::Total);
		}
		if !peer.try_take(now, n) {
			return Err(OverBudget::Peer);
		}
		self.spent += n;
		Ok(())
	}

	/// Verifications paid for since start.
	pub fn spent(&self) -> u64 {
		self.spent
	}

	/// The settings.
	pub fn config(&self) -> &VerifyConfig {
		&self.config
	}
}

/// The cache key of a pass: blake2-256 of the whole signed pass (payload and signature), so
/// that a valid signature attached to another payload is not a hit.
pub fn pass_hash(pass: &Signed<ViewerPass>) -> Hash32 {
	sp_crypto_hashing::blake2_256(&pass.encode())
}

/// Passes that verified and whose ledger entry exists, by [`pass_hash`], oldest first. The
/// owner removes the entries of the epochs it prunes from the ledger
/// ([`PassCache::prune_before`]), so a hit means the ledger holds an entry for the pass.
#[derive(Clone, Debug, Default)]
pub struct PassCache {
	max: usize,
	epochs: HashMap<Hash32, EpochIndex>,
	order: VecDeque<Hash32>,
}

impl PassCache {
	/// An empty cache of at most `max` passes.
	pub fn new(max: usize) -> Self {
		Self { max, ..Default::default() }
	}

	/// Whether the pass with `hash` verified (and is in the ledger).
	pub fn contains(&self, hash: &Hash32) -> bool {
		self.epochs.contains_key(hash)
	}

	/// Remembers that the pass with `hash`, for `epoch`, verified.
	pub fn insert(&mut self, hash: Hash32, epoch: EpochIndex) {
		if self.max == 0 || self.epochs.insert(hash, epoch).is_some() {
			return;
		}
		self.order.push_back(hash);
		while self.order.len() > self.max {
			if let Some(old) = self.order.pop_front() {
				self.epochs.remove(&old);
			}
		}
	}

	/// Forgets the passes of epochs before `epoch`.
	pub fn prune_before(&mut self, epoch: EpochIndex) {
		self.epochs.retain(|_, e| *e >= epoch);
		let epochs = &self.epochs;
		self.order.retain(|h| epochs.contains_key(h));
	}

	/// Passes held.
	pub fn len(&self) -> usize {
		self.epochs.len()
	}

	/// Whether none is held.
	pub fn is_empty(&self) -> bool {
		self.epochs.is_empty()
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn the_total_budget_bounds_every_peer_together() {
		let cfg = VerifyConfig {
			per_peer_per_sec: 2,
			per_peer_burst: 4,
			total_per_sec: 10,
			total_burst: 10,
			..Default::default()
		};
		let mut b = VerifyBudget::new(0, cfg);
		// Fresh peers each bring a full bucket, yet all of them share the total of 10.
		let mut paid = 0;
		for _ in 0..20 {
			let mut p = b.peer_bucket(0);
			paid += usize::from(b.try_take(0, &mut p, 2).is_ok());
		}
		assert_eq!(paid, 5);
		assert_eq!(b.spent(), 10);
		let mut p = b.peer_bucket(0);
		assert_eq!(b.try_take(0, &mut p, 1), Err(OverBudget::Total));
		// One second later the total refilled; a single peer is held to its own bucket.
		let mut p = b.peer_bucket(1000);
		assert_eq!(b.try_take(1000, &mut p, 4), Ok(()));
		assert_eq!(b.try_take(1000, &mut p, 1), Err(OverBudget::Peer));
		assert_eq!(b.spent(), 14);
	}

	#[test]
	fn the_pass_cache_is_bounded_and_pruned_by_epoch() {
		let mut c = PassCache::new(2);
		c.insert([1; 32], 5);
		c.insert([2; 32], 6);
		c.insert([3; 32], 7);
		assert!(!c.contains(&[1; 32]) && c.contains(&[2; 32]) && c.contains(&[3; 32]));
		c.prune_before(7);
		assert_eq!(c.len(), 1);
		assert!(c.contains(&[3; 32]));
	}
}
