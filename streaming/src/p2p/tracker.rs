//! The streamer node as tracker, sans-IO: issues viewer passes to viewers admitted in P2P mode
//! and hands each a bounded list of other peers of the stream's swarm.
//!
//! Call [`Tracker::handle_join`] for every `Join` (the direct protocol's message 16) and
//! [`Tracker::handle_leave`] when that session ends. No clock: the epoch comes from the caller
//! ([`Tracker::set_epoch`]), which follows the chain (or the command line without one).

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
	/// Per stream: members, oldest first.
	swarms: HashMap<StreamId, VecDeque<PeerInfo>>,
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
		Self { config, signer, bootstrap: None, swarms: HashMap::new() }
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
	/// `max_peers_returned` other members, newest first. A peer id that joins again replaces
	/// its old entry.
	pub fn handle_join(
		&mut self,
		stream: StreamId,
		viewer: PublicKey,
		peer: PeerInfo,
	) -> Result<(Signed<ViewerPass>, Vec<PeerInfo>), TrackerError> {
		if !self.swarms.contains_key(&stream) && self.swarms.len() >= self.config.max_streams {
			return Err(TrackerError::TooManyStreams);
		}
		let swarm = self.swarms.entry(stream).or_default();
		swarm.retain(|p| p.peer_id != peer.peer_id);
		let peers: Vec<PeerInfo> = self
			.bootstrap
			.iter()
			.chain(swarm.iter().rev())
			.take(self.config.max_peers_returned)
			.cloned()
			.collect();
		swarm.push_back(peer);
		while swarm.len() > self.config.max_peers_per_stream {
			swarm.pop_front();
		}
		let pass = ViewerPass {
			genesis_hash: self.config.genesis_hash,
			stream,
			epoch: self.config.epoch,
			viewer,
			max_units: self.config.max_units_per_pass,
			issuer: self.signer(),
		};
		Ok((Signed::sign(pass, &self.signer), peers))
	}

	/// The session of `peer_id` in `stream` ended: it is no longer handed out.
	pub fn handle_leave(&mut self, stream: StreamId, peer_id: &[u8]) {
		if let Some(swarm) = self.swarms.get_mut(&stream) {
			swarm.retain(|p| p.peer_id != peer_id);
			if swarm.is_empty() {
				self.swarms.remove(&stream);
			}
		}
	}

	/// Members of `stream`'s swarm.
	pub fn members(&self, stream: StreamId) -> usize {
		self.swarms.get(&stream).map_or(0, VecDeque::len)
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
			assert_eq!(peers.first(), Some(&peer(n - 1)), "newest first");
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
		assert_eq!(peers, vec![peer(0), peer(6)]);
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
