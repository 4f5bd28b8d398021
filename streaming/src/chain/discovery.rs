//! Finding a streamer without a central balancer: the viewer reads the on-chain registry
//! (`dsp_streamers`, `dsp_stream`), asks each streamer's own node for its live load
//! (`dsp_liveLoad` at the RPC endpoint it registered) and measures the TCP connect time to
//! its streaming endpoint, then ranks them with [`rank`].
//!
//! This file is the sans-IO half: what was measured ([`Candidate`]) and the ranking, unit-tested.
//! The RPC reads and TCP probes are the driver [`super::probe`] ([`discover`], re-exported here).
//!
//! A streamer that is full for direct sessions is not skipped: it may still admit the viewer
//! in P2P mode. It only ranks after every streamer that still has direct capacity.

use super::client::ChainError;
use dsp_primitives::{Hash32, PublicKey, StreamId};
use serde::Deserialize;
use std::{net::SocketAddr, time::Duration};

/// A registered streamer as the registry lists it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredStreamer {
	/// Account (SS58).
	pub account: String,
	/// Announced endpoints.
	pub endpoints: RegisteredEndpoints,
	/// Direct sessions from which new viewers go P2P.
	pub p2p_threshold: u32,
}

/// Endpoints a streamer announced on chain (UTF-8 text as registered).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredEndpoints {
	/// `host:port` of the TCP endpoint.
	pub tcp: String,
	/// `host:port` of the QUIC endpoint.
	pub quic: String,
	/// libp2p multiaddr of the swarm seed.
	pub p2p: String,
	/// JSON-RPC URL of the streamer's node.
	pub rpc: String,
}

/// What the viewer measured of one streamer.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
	/// The registry entry.
	pub streamer: RegisteredStreamer,
	/// Parsed TCP endpoint, if the registered text is an address.
	pub tcp: Option<SocketAddr>,
	/// Parsed QUIC endpoint.
	pub quic: Option<SocketAddr>,
	/// TCP connect time to `tcp`; `None` if unreachable.
	pub rtt: Option<Duration>,
	/// Direct sessions the streamer reports; `None` if its node did not answer.
	pub direct_sessions: Option<u32>,
}

impl Candidate {
	/// Direct sessions it can still take before admitting in P2P mode (unknown load counts as
	/// none taken: an unanswered load query should not bury an otherwise good streamer).
	pub fn direct_room(&self) -> u32 {
		self.streamer.p2p_threshold.saturating_sub(self.direct_sessions.unwrap_or(0))
	}
}

/// Orders candidates best first: streamers with direct room before full ones, those whose
/// node reported its load before those whose load is unknown, then by RTT, then by the larger
/// room. Returns indices into `candidates`; unreachable ones are left out.
pub fn rank(candidates: &[Candidate]) -> Vec<usize> {
	let mut order: Vec<usize> =
		(0..candidates.len()).filter(|&i| candidates[i].rtt.is_some()).collect();
	order.sort_by_key(|&i| {
		let c = &candidates[i];
		let unknown_load = c.direct_sessions.is_none();
		(c.direct_room() == 0, unknown_load, c.rtt, std::cmp::Reverse(c.direct_room()))
	});
	order
}

/// Everything `dsp watch` needs to play a stream, from the chain alone.
#[derive(Clone, Debug)]
pub struct Discovered {
	/// Chain the stream's segments are signed for.
	pub genesis_hash: Hash32,
	/// The stream's origin key.
	pub origin_key: PublicKey,
	/// Whether the chain lets streamers issue P2P passes for the stream now (`dsp_stream`'s
	/// `passesOpen`): its commitment covers the current epoch and its origin is not
	/// withdrawing. When false, a streamer serves the viewer directly or refuses it.
	pub passes_open: bool,
	/// Streamers best first (see [`rank`]).
	pub streamers: Vec<Candidate>,
}

/// Why discovery found nothing to play.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
	/// RPC failure.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// No such stream, or it is closed.
	#[error("stream {0} is not registered or is closed")]
	NoStream(StreamId),
	/// The registry's key is not readable.
	#[error("stream {0}: bad signing key in the registry")]
	BadKey(StreamId),
	/// No registered streamer answered.
	#[error("no registered streamer is reachable ({0} registered)")]
	NoStreamer(usize),
}

pub use super::probe::discover;

#[cfg(test)]
mod tests {
	use super::*;

	fn candidate(threshold: u32, direct: Option<u32>, rtt_ms: Option<u64>) -> Candidate {
		Candidate {
			streamer: RegisteredStreamer {
				account: String::new(),
				endpoints: RegisteredEndpoints {
					tcp: "127.0.0.1:1".into(),
					quic: String::new(),
					p2p: String::new(),
					rpc: String::new(),
				},
				p2p_threshold: threshold,
			},
			tcp: None,
			quic: None,
			rtt: rtt_ms.map(Duration::from_millis),
			direct_sessions: direct,
		}
	}

	#[test]
	fn rank_prefers_room_then_rtt_and_drops_the_unreachable() {
		let c = [
			candidate(10, Some(10), Some(1)), // full: P2P only, however close
			candidate(10, Some(2), Some(30)), // room, far
			candidate(10, Some(9), Some(5)),  // room, near
			candidate(10, Some(0), None),     // unreachable
			candidate(10, None, Some(5)),     // load unknown (its node did not answer): after known
		];
		assert_eq!(rank(&c), vec![2, 1, 4, 0]);
	}

	#[test]
	fn a_full_streamer_is_still_a_candidate_for_p2p() {
		let c = [candidate(0, Some(0), Some(3))];
		assert_eq!(rank(&c), vec![0]);
		assert_eq!(c[0].direct_room(), 0);
	}
}
