//! What makes a `Join` trustworthy before the tracker lists it or signs a pass: the viewer's
//! proof that it holds the viewer key (a signature over the session's `Welcome` challenge, so a
//! proof is worth one session only), and the peer entry's addresses tied to the IP the session
//! comes from (so an entry can only send other viewers to its own sender).

use crate::protocol::{PeerInfo, CHALLENGE_LEN};
use codec::Encode;
use dsp_primitives::{domain, Hash32, PublicKey, Signature, StreamId};
use libp2p::{multiaddr::Protocol, Multiaddr};
use std::net::IpAddr;

/// The bytes a P2P viewer signs with its viewer key in `Join`:
/// `SCALE(("dsp/join/v1", genesis_hash, challenge, stream, peer))`. The challenge is the one
/// the server sent in this session's `Welcome`; the peer entry is signed too, so nobody on the
/// path can swap the addresses of a proven entry.
pub fn join_payload(
	genesis_hash: &Hash32,
	challenge: &[u8; CHALLENGE_LEN],
	stream: StreamId,
	peer: &PeerInfo,
) -> Vec<u8> {
	(domain::JOIN, genesis_hash, challenge, stream, peer).encode()
}

/// The viewer's proof for `Join` (see [`join_payload`]).
pub fn sign_join(
	viewer: &sp_core::sr25519::Pair,
	genesis_hash: &Hash32,
	challenge: &[u8; CHALLENGE_LEN],
	stream: StreamId,
	peer: &PeerInfo,
) -> Signature {
	sp_core::Pair::sign(viewer, &join_payload(genesis_hash, challenge, stream, peer))
}

/// Whether `proof` is `viewer`'s signature of [`join_payload`].
pub fn verify_join(
	viewer: &PublicKey,
	proof: &Signature,
	genesis_hash: &Hash32,
	challenge: &[u8; CHALLENGE_LEN],
	stream: StreamId,
	peer: &PeerInfo,
) -> bool {
	let payload = join_payload(genesis_hash, challenge, stream, peer);
	<sp_core::sr25519::Pair as sp_core::Pair>::verify(proof, payload, viewer)
}

/// The peer entry the tracker lists for a session from `remote`: each announced address with
/// its IP replaced by `remote` (port and transport protocols kept), duplicates removed.
/// Addresses that do not start with an IP (DNS names, relays) or do not parse are dropped.
///
/// Rewriting rather than refusing: a viewer behind a NAT announces its private listen
/// addresses, which are useless to others anyway; with its public IP (the one the server sees)
/// and its port they reach it through a port-preserving NAT. Either way an entry can only ever
/// point at the IP its own session comes from, so nobody can aim other viewers at a victim.
pub fn bind_addrs(peer: &PeerInfo, remote: IpAddr) -> PeerInfo {
	let remote = remote.to_canonical();
	let mut addrs: Vec<Vec<u8>> = Vec::new();
	for bytes in &peer.addrs {
		let Ok(addr) = Multiaddr::try_from(bytes.clone()) else { continue };
		let mut parts = addr.iter();
		if !matches!(parts.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_))) {
			continue;
		}
		let ip = match remote {
			IpAddr::V4(v4) => Protocol::Ip4(v4),
			IpAddr::V6(v6) => Protocol::Ip6(v6),
		};
		let rebound: Multiaddr = std::iter::once(ip).chain(parts).collect();
		let rebound = rebound.to_vec();
		if !addrs.contains(&rebound) {
			addrs.push(rebound);
		}
	}
	PeerInfo { peer_id: peer.peer_id.clone(), addrs }
}

#[cfg(test)]
mod tests {
	use super::*;
	use sp_core::Pair;

	fn addr(s: &str) -> Vec<u8> {
		s.parse::<Multiaddr>().unwrap().to_vec()
	}

	#[test]
	fn a_proof_holds_for_its_session_stream_and_entry_only() {
		let viewer = sp_core::sr25519::Pair::from_string("//V", None).unwrap();
		let peer = PeerInfo { peer_id: vec![1; 38], addrs: vec![addr("/ip4/1.2.3.4/tcp/5")] };
		let proof = sign_join(&viewer, &[1; 32], &[2; CHALLENGE_LEN], 7, &peer);
		let ok = |key: &PublicKey, g: &Hash32, c: &[u8; CHALLENGE_LEN], s, p: &PeerInfo| {
			verify_join(key, &proof, g, c, s, p)
		};
		assert!(ok(&viewer.public(), &[1; 32], &[2; CHALLENGE_LEN], 7, &peer));
		let other = sp_core::sr25519::Pair::from_string("//W", None).unwrap().public();
		assert!(!ok(&other, &[1; 32], &[2; CHALLENGE_LEN], 7, &peer), "another key");
		assert!(!ok(&viewer.public(), &[0; 32], &[2; CHALLENGE_LEN], 7, &peer), "another chain");
		assert!(!ok(&viewer.public(), &[1; 32], &[3; CHALLENGE_LEN], 7, &peer), "another session");
		assert!(!ok(&viewer.public(), &[1; 32], &[2; CHALLENGE_LEN], 8, &peer), "another stream");
		let moved = PeerInfo { addrs: vec![addr("/ip4/6.6.6.6/tcp/5")], ..peer.clone() };
		assert!(!ok(&viewer.public(), &[1; 32], &[2; CHALLENGE_LEN], 7, &moved), "other addrs");
	}

	#[test]
	fn entries_point_only_at_the_sessions_own_ip() {
		let peer = PeerInfo {
			peer_id: vec![1; 38],
			addrs: vec![
				addr("/ip4/9.9.9.9/udp/4001/quic-v1"),
				addr("/ip4/192.168.1.5/udp/4001/quic-v1"),
				addr("/ip4/5.6.7.8/tcp/4002"),
				addr("/dns4/victim.example/tcp/80"),
				vec![0xff, 0xff],
			],
		};
		let bound = bind_addrs(&peer, "5.6.7.8".parse().unwrap());
		assert_eq!(bound.peer_id, peer.peer_id);
		assert_eq!(
			bound.addrs,
			vec![addr("/ip4/5.6.7.8/udp/4001/quic-v1"), addr("/ip4/5.6.7.8/tcp/4002")]
		);
		// An IPv4 client seen through a dual-stack socket.
		let mapped = bind_addrs(&peer, "::ffff:5.6.7.8".parse().unwrap());
		assert_eq!(mapped.addrs, bound.addrs);
		let v6 = bind_addrs(&peer, "2001:db8::1".parse().unwrap());
		assert_eq!(v6.addrs[0], addr("/ip6/2001:db8::1/udp/4001/quic-v1"));
	}
}
