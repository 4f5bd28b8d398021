//! [`SeedRotation`]: the node's choice of which P2P viewers get each new chunk pushed to them.
//!
//! The swarm can only trade what somebody has, and at first only the node has a new chunk. The
//! node pushes every new chunk to a few viewers (the *seeds* of that chunk) and lets the swarm
//! spread it; a viewer that is not a seed fetches it from a neighbour, and from the node only when
//! its urgent window says no peer made it in time. With `peers_per_seed = 32`, about 1/32 of the
//! swarm gets each chunk from the node, which is then also the node's share of the bytes the swarm
//! receives. Seeds are the members seeded least so far, so the extra download is spread evenly
//! over everybody: after `k` chunks, any two members' seed counts differ by at most one
//! (members who joined later start at the current minimum, not at zero, so they are not flooded).

use std::collections::{BTreeMap, BTreeSet};

/// How many seeds each chunk gets.
#[derive(Clone, Debug)]
pub struct SeedConfig {
	/// One seed per this many swarm members. Default 32: about the neighbour count of a viewer,
	/// so a typical viewer has one neighbour holding each new chunk fresh from the node.
	pub peers_per_seed: u32,
	/// Fewest seeds per chunk while the swarm has that many members. Default 2, so one seed
	/// leaving does not leave a chunk to the node alone.
	pub min_seeds: u32,
	/// Most seeds per chunk: bounds the node's push work per chunk. Default 256.
	pub max_seeds: u32,
}

impl Default for SeedConfig {
	fn default() -> Self {
		Self { peers_per_seed: 32, min_seeds: 2, max_seeds: 256 }
	}
}

/// Fair rotation of seeds over the members of one stream's swarm.
#[derive(Clone, Debug)]
pub struct SeedRotation<P> {
	config: SeedConfig,
	/// Member → (times seeded, join order).
	members: BTreeMap<P, (u64, u64)>,
	/// (times seeded, join order, member): the first entries are the next seeds.
	order: BTreeSet<(u64, u64, P)>,
	joins: u64,
}

impl<P: Copy + Ord> SeedRotation<P> {
	/// An empty swarm.
	pub fn new(config: SeedConfig) -> Self {
		Self { config, members: BTreeMap::new(), order: BTreeSet::new(), joins: 0 }
	}

	/// Members in the swarm.
	pub fn len(&self) -> usize {
		self.members.len()
	}

	/// Whether the swarm is empty.
	pub fn is_empty(&self) -> bool {
		self.members.is_empty()
	}

	/// Times `peer` was chosen as a seed.
	pub fn seeded(&self, peer: P) -> Option<u64> {
		self.members.get(&peer).map(|m| m.0)
	}

	/// A viewer joined the swarm (admitted in P2P mode). It starts at the current least seed
	/// count, so it takes its turn next without catching up on what it missed.
	pub fn handle_peer_joined(&mut self, peer: P) {
		if self.members.contains_key(&peer) {
			return;
		}
		let count = self.order.first().map_or(0, |f| f.0);
		self.joins += 1;
		self.members.insert(peer, (count, self.joins));
		self.order.insert((count, self.joins, peer));
	}

	/// A viewer left the swarm (or was banned).
	pub fn handle_peer_left(&mut self, peer: P) {
		if let Some((count, join)) = self.members.remove(&peer) {
			self.order.remove(&(count, join, peer));
		}
	}

	/// Seeds per chunk for the current swarm size: `ceil(len / peers_per_seed)` within
	/// `[min_seeds, max_seeds]`, and never more than the swarm.
	pub fn fanout(&self) -> usize {
		let n = self.members.len() as u64;
		let per = self.config.peers_per_seed.max(1) as u64;
		let want = n
			.div_ceil(per)
			.clamp(self.config.min_seeds as u64, self.config.max_seeds.max(1) as u64);
		want.min(n) as usize
	}

	/// The seeds of the next new chunk: the [`SeedRotation::fanout`] members seeded least so far
	/// (earliest joined first among equals). Their counts go up by one.
	pub fn next_seeds(&mut self) -> Vec<P> {
		let k = self.fanout();
		let mut chosen = Vec::with_capacity(k);
		for _ in 0..k {
			let Some((count, join, peer)) = self.order.pop_first() else { break };
			chosen.push((count + 1, join, peer));
		}
		for &(count, join, peer) in &chosen {
			self.order.insert((count, join, peer));
			self.members.insert(peer, (count, join));
		}
		chosen.into_iter().map(|c| c.2).collect()
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn fanout_follows_swarm_size_works() {
		let mut r = SeedRotation::new(SeedConfig::default());
		assert_eq!(r.fanout(), 0);
		r.handle_peer_joined(1u32);
		assert_eq!(r.fanout(), 1, "never more seeds than members");
		for p in 2..=100 {
			r.handle_peer_joined(p);
		}
		assert_eq!(r.fanout(), 4, "ceil(100 / 32)");
		let mut big = SeedRotation::new(SeedConfig {
			peers_per_seed: 1,
			max_seeds: 10,
			..Default::default()
		});
		for p in 0..100u32 {
			big.handle_peer_joined(p);
		}
		assert_eq!(big.fanout(), 10);
	}

	#[test]
	fn seeding_rotation_is_fair_works() {
		let mut r =
			SeedRotation::new(SeedConfig { peers_per_seed: 10, min_seeds: 1, max_seeds: 100 });
		for p in 0..50u32 {
			r.handle_peer_joined(p);
		}
		// 5 seeds per chunk, 50 members: every 10 chunks everybody is seeded once, and
		// consecutive chunks go to different members.
		let mut last: Vec<u32> = vec![];
		for chunk in 0..37 {
			let seeds = r.next_seeds();
			assert_eq!(seeds.len(), 5);
			assert!(seeds.iter().all(|s| !last.contains(s)), "chunk {chunk} reuses a seed");
			last = seeds;
			let counts: Vec<u64> = (0..50).map(|p| r.seeded(p).unwrap()).collect();
			let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
			assert!(max - min <= 1, "unfair after chunk {chunk}: {min}..{max}");
		}
		assert_eq!((0..50).map(|p| r.seeded(p).unwrap()).sum::<u64>(), 37 * 5);
	}

	#[test]
	fn joiners_and_leavers_keep_rotation_fair_works() {
		let mut r =
			SeedRotation::new(SeedConfig { peers_per_seed: 4, min_seeds: 1, max_seeds: 100 });
		for p in 0..8u32 {
			r.handle_peer_joined(p);
		}
		for _ in 0..20 {
			r.next_seeds();
		}
		// A late joiner starts at the current minimum: it is not seeded 20 times in a row.
		r.handle_peer_joined(100);
		r.handle_peer_left(3);
		assert_eq!(r.seeded(3), None);
		for _ in 0..8 {
			let seeds = r.next_seeds();
			assert!(!seeds.contains(&3), "a member that left is never seeded");
		}
		let counts: Vec<u64> = r.members.values().map(|m| m.0).collect();
		assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
		assert_eq!(r.len(), 8);
	}
}
