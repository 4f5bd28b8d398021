//! # P2P mode: the sans-IO cores
//!
//! When a streamer's direct sessions reach `floor(max_streams * (1 - r))`
//! ([`dsp_primitives::CapacitySettings::admit`]), new viewers are admitted in P2P mode. How it
//! works end to end:
//!
//! 1. **Joining.** The node's tracker ([`mesh::Mesh`]) gives the new viewer a bounded list of
//!    other P2P viewers of the stream; it connects to them (its *neighbours*) and to the node.
//!    The viewer picks its first segment a few segments behind the live edge, so the swarm has
//!    had time to spread it.
//! 2. **Headers from the node.** The node sends every P2P viewer each origin-signed segment
//!    header (a few hundred bytes). The viewer verifies it (`segment::verify_header`) before
//!    anything else: from then on every chunk is checked on its own against the header's hash,
//!    whoever sends it.
//! 3. **Seeding.** The node pushes each new chunk to a few viewers, a rotating set chosen by
//!    [`seeding::SeedRotation`] (about one per 32 members), so the swarm has the data without the
//!    node serving everybody.
//! 4. **Announcing.** A viewer that stores a verified chunk announces it to its neighbours ("have",
//!    a [`chunkset::ChunkSet`] per segment, or one chunk at a time).
//! 5. **Fetching.** Each viewer's [`scheduler::Scheduler`] decides what to ask whom: chunks
//!    due soon (the urgent window) from the node when no peer delivered in time, everything
//!    further ahead from neighbours, earliest deadline first and rarest first, with adaptive
//!    per-request timeouts, a slow peer's request asked elsewhere. Deadlines come from the
//!    player model, [`playout::Playout`].
//! 6. **Serving.** A viewer serves its neighbours' requests earliest requester-deadline first,
//!    under an upload cap ([`upload::Uploader`], [`upload::UploadCap`]; 1.5 Mbit/s by default,
//!    what a phone can spare).
//! 7. **Authenticity.** A chunk that fails its hash check is never stored, played or forwarded;
//!    [`scheduler::Scheduler::handle_bad_chunk`] bans its sender for the stream.
//!
//! The networked half:
//!
//! - [`wire`]: the `/dsp/p2p/1` request/response messages and their codec, with hard limits.
//! - [`serving`]: the sans-IO serving state machine (passes, rate limits, bans, chunk checks).
//! - [`receipts`]: the viewer's receipt book, the seeder's ledger, claim batches.
//! - [`tracker`]: the streamer node as tracker: passes and bounded peer lists.
//! - [`join`]: a `Join`'s proof of key possession and the binding of its addresses to its IP.
//! - [`pass_policy`]: what a pass is worth and per-address limits on sessions and new passes.
//! - [`behaviour`]: the libp2p `NetworkBehaviour` (request-response, connection limits, block
//!   list) and the transports (QUIC, TCP + noise + yamux); its async driver is
//!   [`crate::net::p2p`].
//!
//! Everything here but [`behaviour`] is sans-IO: time is a `u64` millisecond clock ([`Millis`]) passed in by the
//! caller, so the same cores run under the libp2p shell and under the simulator
//! (`crate::sim`, `dsp sim`) with a simulated clock.

pub mod behaviour;
pub mod chunkset;
pub mod ip_limit;
pub mod join;
pub mod mesh;
pub mod pass_policy;
pub mod playout;
pub mod receipts;
pub mod scheduler;
pub mod seeding;
pub mod serving;
pub mod tracker;
pub mod upload;
pub mod verify_guard;
pub mod wire;

pub use crate::clock::Millis;

/// Where a chunk comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source<P> {
	/// The streamer node (urgent fetches and seeding pushes).
	Node,
	/// Another viewer.
	Peer(P),
}

/// Domain of the libp2p identity derivation ([`p2p_identity_seed`]): keeps the identity's
/// secret apart from every other hash of the same key.
pub const P2P_IDENTITY_DOMAIN: &[u8] = b"dsp/p2p-identity";

/// The ed25519 secret of the libp2p identity (its `PeerId`) that goes with the sr25519 key
/// `pair`: `blake2_256(SCALE((P2P_IDENTITY_DOMAIN, raw secret of pair)))`. Derived rather than
/// random, so a node's seed (from its pass key) and a viewer (from its viewer key) keep their
/// `PeerId` across restarts.
pub fn p2p_identity_seed(pair: &sp_core::sr25519::Pair) -> [u8; 32] {
	use sp_core::Pair;
	sp_crypto_hashing::blake2_256(&codec::Encode::encode(&(P2P_IDENTITY_DOMAIN, pair.to_raw_vec())))
}

#[cfg(test)]
mod tests {
	use sp_core::Pair;

	#[test]
	fn the_p2p_identity_of_a_key_never_changes() {
		// Peers and operators know a node by its `PeerId`: the derivation must not drift.
		let alice = sp_core::sr25519::Pair::from_string("//Alice", None).unwrap();
		let secret = super::p2p_identity_seed(&alice);
		let key = libp2p::identity::Keypair::ed25519_from_bytes(secret).unwrap();
		assert_eq!(
			key.public().to_peer_id().to_string(),
			"12D3KooWHn8RSmGYMNuG1Qv5EdQtTETxutzjCUXXGFd1rfN56X33"
		);
	}
}
