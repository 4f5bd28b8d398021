//! The streamer node as tracker, sans-IO: issues viewer passes to viewers admitted in P2P mode
//! and hands each a bounded list of other peers of the stream's swarm.
//!
//! Which members a joining viewer is told of is decided by [`super::mesh::Mesh`], the same
//! neighbour policy the simulator runs (uniformly random members that are not full, bounded
//! degrees); this module adds passes, peer addresses and the node's own seed.
//!
//! Call [`Tracker::handle_join`] for every `Join` (the direct protocol's message 16) and
//! [`Tracker::handle_leave`] when that session ends. No clock: the epoch comes from the caller
//! ([`Tracker::set_epoch`]), which follows the chain (or the command line without one).

use super::mesh::{Mesh, MeshConfig};
use crate::protocol::PeerInfo;
use dsp_primitives::{EpochIndex, Hash32, PublicKey, Signed, StreamId, Units, ViewerPass};
use std::collections::{HashMap, VecDeque};

/// Settings of a [`Tracker`].
#[derive(Clone, Debug)]
pub struct TrackerConfig {
	/// Chain the passes are for.
	pub genesis_hash: Hash32,
	/// Epoch written into new passes.
	pub epoch: EpochIndex,
	/// `max_units` of each pass: most units paid for one viewer in one epoch over all seeders.
	/// Default 4 194 304 (4 GiB: a day at about 400 kbit/s).
	pub max_units_per_pass: Units,
	/// Most peers returned per `Joined`. Default 16 (libtorrent and p2p-media-loader use similar
	/// numbers: enough to find seeders, few enough to keep the answer small).
	pub max_peers_returned: usize,
	/// A member already handed out to this many others (or told of them) is not handed out
	/// again until some of them leave ([`MeshConfig::max_neighbours`]). Default 40.
	pub max_neighbours: usize,
	/// Most peers remembered per stream; the oldest are forgotten beyond it. Default 1024,
	/// about 300 bytes each.
	pub max_peers_per_stream: usize,
	/// Most streams with a swarm. Default 256 (the server's `max_streams_tracked`).
	pub max_streams: usize,
}

impl TrackerConfig {
	/// Defaults for `genesis_hash` and `epoch`.
	pub fn new(genesis_hash: Hash32, epoch: EpochIndex) -> Self {
		Self {
			genesis_hash,
			epoch,
			max_units_per_pass: 4 * 1024 * 1024,
			max_peers_returned: 16,
			max_neighbours: MeshConfig::default().max_neighbours,
			max_peers_per_stream: 1024,
			max_streams: 256,
		}
	}
}

/// What a server needs to admit viewers in P2P mode: the pass-signing key and the tracker's
/// settings.
#[derive(Clone)]
pub struct PassSigning {
	/// Key that signs passes (one of the origin's authorised pass signers).
	pub signer: sp_core::sr25519::Pair,
	/// Tracker settings.
	pub tracker: TrackerConfig,
}

impl std::fmt::Debug for PassSigning {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.debug_struct("PassSigning")
			.field("signer", &sp_core::Pair::public(&self.signer))
			.field("tracker", &self.tracker)
			.finish()
	}
}

/// A join was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrackerError {
	/// `max_streams` swarms exist already.
	#[error("too many streams with a swarm")]
	TooManyStreams,
}

/// Passes and swarm membership. See the module docs.
pub struct Tracker {
	config: TrackerConfig,
	signer: sp_core::sr25519::Pair,
	/// The node's own swarm peer, listed first in every `Joined`.
	bootstrap: Option<PeerInfo>,
	/// Per stream: the swarm.
	swarms: HashMap<StreamId, Swarm>,
	/// Passes signed since start (for live load and metrics).
	passes_issued: u64,
}

/// One stream's swarm: the neighbour policy over member ids, and what each id stands for.
/// Memory: per member its `PeerInfo` and the ids it was given or given to (bounded by
/// `max_neighbours` each).
struct Swarm {
	mesh: Mesh<u64>,
	members: HashMap<u64, Member>,
	by_peer: HashMap<Vec<u8>, u64>,
	/// Member ids, oldest first (the oldest go when `max_peers_per_stream` is reached).
	order: VecDeque<u64>,
	next_id: u64,
}

struct Member {
	info: PeerInfo,
	/// Members this one was told of, and members told of this one.
	edges: Vec<u64>,
}

impl Swarm {
	fn new(config: &TrackerConfig, stream: StreamId) -> Self {
		let mesh = MeshConfig {
			neighbours: config.max_peers_returned,
			max_neighbours: config.max_neighbours,
		};
		Self {
			// Seeded by the stream id: reproducible, and different per stream.
			mesh: Mesh::new(mesh, stream ^ 0x7472_6163_6b65_7273),
			members: HashMap::new(),
			by_peer: HashMap::new(),
			order: VecDeque::new(),
			next_id: 0,
		}
	}

	fn join(&mut self, info: PeerInfo) -> Vec<PeerInfo> {
		if let Some(old) = self.by_peer.get(&info.peer_id).copied() {
			self.leave(old);
		}
		let id = self.next_id;
		self.next_id += 1;
		let chosen = self.mesh.join(id);
		for c in &chosen {
			if let Some(m) = self.members.get_mut(c) {
				m.edges.push(id);
			}
		}
		let peers = chosen.iter().filter_map(|c| self.members.get(c)).map(|m| m.info.clone());
		let peers = peers.collect();
		self.by_peer.insert(info.peer_id.clone(), id);
		self.members.insert(id, Member { info, edges: chosen });
		self.order.push_back(id);
		peers
	}

	fn leave(&mut self, id: u64) {
		let Some(m) = self.members.remove(&id) else { return };
		self.mesh.leave(id);
		for e in m.edges {
			self.mesh.edge_closed(id, e);
			if let Some(other) = self.members.get_mut(&e) {
				other.edges.retain(|&x| x != id);
			}
		}
		self.by_peer.remove(&m.info.peer_id);
		self.order.retain(|&x| x != id);
	}
}

impl std::fmt::Debug for Tracker {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		// The signing key stays out of logs.
		f.debug_struct("Tracker")
			.field("config", &self.config)
			.field("swarms", &self.swarms.len())
			.finish_non_exhaustive()
	}
}

impl Tracker {
	/// A tracker signing passes with `signer` (a key the origin authorised on chain).
	pub fn new(config: TrackerConfig, signer: sp_core::sr25519::Pair) -> Self {
		Self { config, signer, bootstrap: None, swarms: HashMap::new(), passes_issued: 0 }
	}

	/// The pass signer's public key.
	pub fn signer(&self) -> PublicKey {
		sp_core::Pair::public(&self.signer)
	}

	/// The node's own swarm peer (it seeds from its live windows): listed first in every
	/// `Joined`, within `max_peers_returned`.
	pub fn set_bootstrap(&mut self, peer: PeerInfo) {
		self.bootstrap = Some(peer);
	}

	/// A new epoch: passes issued from now on name it.
	pub fn set_epoch(&mut self, epoch: EpochIndex) {
		self.config.epoch = epoch;
	}

	/// `viewer` joins `stream`'s swarm as `peer` (already size-checked): its pass, and up to
	/// `max_peers_returned` other members chosen by the mesh policy, after the node's own seed.
	/// A peer id that joins again replaces its old entry.
	pub fn handle_join(
		&mut self,
		stream: StreamId,
		viewer: PublicKey,
		peer: PeerInfo,
	) -> Result<(Signed<ViewerPass>, Vec<PeerInfo>), TrackerError> {
		if !self.swarms.contains_key(&stream) && self.swarms.len() >= self.config.max_streams {
			return Err(TrackerError::TooManyStreams);
		}
		let config = &self.config;
		let swarm = self.swarms.entry(stream).or_insert_with(|| Swarm::new(config, stream));
		let chosen = swarm.join(peer);
		while swarm.members.len() > self.config.max_peers_per_stream {
			let Some(oldest) = swarm.order.front().copied() else { break };
			swarm.leave(oldest);
		}
		let peers: Vec<PeerInfo> = self
			.bootstrap
			.iter()
			.cloned()
			.chain(chosen)
			.take(self.config.max_peers_returned)
			.collect();
		let pass = ViewerPass {
			genesis_hash: self.config.genesis_hash,
			stream,
			epoch: self.config.epoch,
			viewer,
			max_units: self.config.max_units_per_pass,
			issuer: self.signer(),
		};
		self.passes_issued += 1;
		Ok((Signed::sign(pass, &self.signer), peers))
	}

	/// Viewer passes signed since start.
	pub fn passes_issued(&self) -> u64 {
		self.passes_issued
	}

	/// The session of `peer_id` in `stream` ended: it is no longer handed out.
	pub fn handle_leave(&mut self, stream: StreamId, peer_id: &[u8]) {
		if let Some(swarm) = self.swarms.get_mut(&stream) {
			if let Some(id) = swarm.by_peer.get(peer_id).copied() {
				swarm.leave(id);
			}
			if swarm.members.is_empty() {
				self.swarms.remove(&stream);
			}
		}
	}

	/// Members of `stream`'s swarm.
	pub fn members(&self, stream: StreamId) -> usize {
		self.swarms.get(&stream).map_or(0, |s| s.members.len())
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::p2p::receipts::{verify_pass, PassSigners};
	use sp_core::Pair;

	fn peer(n: u8) -> PeerInfo {
		PeerInfo { peer_id: vec![n; 38], addrs: vec![vec![n; 8]] }
	}

	fn tracker(config: TrackerConfig) -> Tracker {
		Tracker::new(config, sp_core::sr25519::Pair::from_string("//Node", None).unwrap())
	}

	#[test]
	fn passes_verify_like_the_pallet_and_peer_lists_are_bounded_and_exclude_the_joiner() {
		let mut c = TrackerConfig::new([5; 32], 9);
		c.max_peers_returned = 2;
		c.max_peers_per_stream = 3;
		let mut t = tracker(c);
		let viewer = sp_core::sr25519::Pair::from_string("//V", None).unwrap().public();
		let (pass, peers) = t.handle_join(1, viewer, peer(1)).unwrap();
		assert!(peers.is_empty());
		assert_eq!((pass.payload.stream, pass.payload.epoch, pass.payload.viewer), (1, 9, viewer));
		let signers = PassSigners { default: vec![t.signer()], ..Default::default() };
		assert_eq!(verify_pass(&pass, &[5; 32], &signers), Ok(()));
		assert!(pass.verify(&t.signer()));

		for n in 2..=5 {
			let (_, peers) = t.handle_join(1, viewer, peer(n)).unwrap();
			assert!(peers.len() <= 2 && !peers.contains(&peer(n)));
			// Members still in the swarm (at most 3, the oldest forgotten), two when there are.
			assert_eq!(peers.len(), (n as usize - 1).min(2));
			assert!(peers.iter().all(|p| p.peer_id[0] < n && p.peer_id[0] + 3 >= n));
		}
		assert_eq!(t.members(1), 3);
		// Joining again replaces the old entry; leaving removes it.
		t.handle_join(1, viewer, peer(5)).unwrap();
		assert_eq!(t.members(1), 3);
		t.handle_leave(1, &peer(5).peer_id);
		assert_eq!(t.members(1), 2);
		t.set_epoch(10);
		assert_eq!(t.handle_join(1, viewer, peer(6)).unwrap().0.payload.epoch, 10);
		// The node's own peer comes first, within the bound.
		t.set_bootstrap(peer(0));
		let (_, peers) = t.handle_join(1, viewer, peer(7)).unwrap();
		assert_eq!(peers.len(), 2);
		assert_eq!(peers[0], peer(0));
		assert!(peers[1] != peer(7));
		assert_eq!(t.passes_issued(), 8, "one pass per successful join");
	}

	#[test]
	fn members_are_handed_out_to_at_most_max_neighbours_until_others_leave() {
		let mut c = TrackerConfig::new([0; 32], 0);
		c.max_peers_returned = 3;
		c.max_neighbours = 3;
		let mut t = tracker(c);
		let v = PublicKey::from_raw([1; 32]);
		let mut told = HashMap::<u8, usize>::new();
		for n in 1..=20u8 {
			for p in t.handle_join(1, v, peer(n)).unwrap().1 {
				*told.entry(p.peer_id[0]).or_default() += 1;
			}
		}
		// Every member's edges (told of others + told to others) stay within the bound.
		assert!(told.values().all(|&k| k <= 3), "{told:?}");
		// Leaving frees the slots of the members it was linked with.
		for n in 1..=20u8 {
			t.handle_leave(1, &peer(n).peer_id);
		}
		assert_eq!(t.members(1), 0);
		let (_, first) = t.handle_join(1, v, peer(30)).unwrap();
		assert!(first.is_empty());
		assert_eq!(t.handle_join(1, v, peer(31)).unwrap().1, vec![peer(30)]);
	}

	#[test]
	fn streams_are_bounded() {
		let mut c = TrackerConfig::new([0; 32], 0);
		c.max_streams = 1;
		let mut t = tracker(c);
		let v = PublicKey::from_raw([1; 32]);
		t.handle_join(1, v, peer(1)).unwrap();
		assert_eq!(t.handle_join(2, v, peer(2)), Err(TrackerError::TooManyStreams));
		t.handle_leave(1, &peer(1).peer_id);
		t.handle_join(2, v, peer(2)).unwrap();
	}
}
