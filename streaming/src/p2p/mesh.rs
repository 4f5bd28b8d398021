//! [`Mesh`]: the node's choice of neighbours for a viewer joining a swarm.
//!
//! A joining viewer gets up to `neighbours` members of the swarm picked uniformly at random (a
//! random graph spreads chunks in a logarithmic number of hops and has no hot spot), skipping
//! members that already have `max_neighbours` connections. The random source is seeded by the
//! caller, so a simulation is reproducible.

use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::collections::BTreeMap;

/// Neighbour bounds.
#[derive(Clone, Debug)]
pub struct MeshConfig {
	/// Neighbours handed to a joining viewer. Default 24.
	pub neighbours: usize,
	/// Most neighbours a member keeps; one that has them is not handed out. Default 40 (the
	/// scheduler tracks up to 64). Memory per member: one entry per neighbour.
	pub max_neighbours: usize,
}

impl Default for MeshConfig {
	fn default() -> Self {
		Self { neighbours: 24, max_neighbours: 40 }
	}
}

/// Members of one stream's swarm and their neighbour counts.
#[derive(Clone, Debug)]
pub struct Mesh<P> {
	config: MeshConfig,
	members: Vec<P>,
	degree: BTreeMap<P, usize>,
	rng: SmallRng,
}

impl<P: Copy + Ord> Mesh<P> {
	/// An empty swarm; `seed` makes the choices reproducible.
	pub fn new(config: MeshConfig, seed: u64) -> Self {
		Self {
			config,
			members: Vec::new(),
			degree: BTreeMap::new(),
			rng: SmallRng::seed_from_u64(seed),
		}
	}

	/// Members.
	pub fn len(&self) -> usize {
		self.members.len()
	}

	/// Whether the swarm is empty.
	pub fn is_empty(&self) -> bool {
		self.members.is_empty()
	}

	/// Up to `want` random members that are not full and pass `ok`; their degrees go up.
	fn pick(&mut self, want: usize, ok: impl Fn(P) -> bool) -> Vec<P> {
		let mut chosen = Vec::with_capacity(want);
		// Bounded tries: a swarm whose members are all full gives fewer neighbours.
		let mut tries = want * 4 + 8;
		while chosen.len() < want && tries > 0 && !self.members.is_empty() {
			tries -= 1;
			let candidate = self.members[self.rng.random_range(0..self.members.len())];
			if chosen.contains(&candidate)
				|| !ok(candidate)
				|| self.degree[&candidate] >= self.config.max_neighbours
			{
				continue;
			}
			chosen.push(candidate);
		}
		for c in &chosen {
			*self.degree.get_mut(c).expect("member") += 1;
		}
		chosen
	}

	/// `peer` joins: returns the members it should connect to (and adds it, with their edges
	/// counted on both sides).
	pub fn join(&mut self, peer: P) -> Vec<P> {
		if self.degree.contains_key(&peer) {
			return Vec::new();
		}
		let want = self.config.neighbours.min(self.members.len());
		let chosen = self.pick(want, |_| true);
		self.members.push(peer);
		self.degree.insert(peer, chosen.len());
		chosen
	}

	/// `peer` asks for more neighbours (some left): up to `want` members not in `exclude`.
	pub fn more(&mut self, peer: P, want: usize, exclude: &[P]) -> Vec<P> {
		if !self.degree.contains_key(&peer) {
			return Vec::new();
		}
		let chosen = self.pick(want, |c| c != peer && !exclude.contains(&c));
		*self.degree.get_mut(&peer).expect("member") += chosen.len();
		chosen
	}

	/// An edge between `a` and `b` closed (one of them left or dropped the other).
	pub fn edge_closed(&mut self, a: P, b: P) {
		for p in [a, b] {
			if let Some(d) = self.degree.get_mut(&p) {
				*d = d.saturating_sub(1);
			}
		}
	}

	/// `peer` left the swarm. The caller closes its edges with [`Mesh::edge_closed`].
	pub fn leave(&mut self, peer: P) {
		if self.degree.remove(&peer).is_some() {
			if let Some(pos) = self.members.iter().position(|&m| m == peer) {
				self.members.swap_remove(pos);
			}
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn neighbours_bounded_works() {
		let mut t = Mesh::new(MeshConfig { neighbours: 5, max_neighbours: 6 }, 7);
		assert!(t.join(0u32).is_empty());
		let mut edges = Vec::new();
		for p in 1..200u32 {
			let n = t.join(p);
			assert!(n.len() <= 5);
			assert!(!n.contains(&p));
			edges.extend(n.iter().map(|&q| (p, q)));
		}
		assert!(t.degree.values().all(|&d| d <= 6), "max_neighbours holds");
		let before = t.degree[&3];
		t.leave(3);
		for &(a, b) in edges.iter().filter(|e| e.0 == 3 || e.1 == 3) {
			t.edge_closed(a, b);
		}
		assert_eq!(t.len(), 199);
		assert!(before > 0);
		let more = t.more(4, 3, &[]);
		assert!(more.iter().all(|&m| m != 3 && m != 4));
	}
}
