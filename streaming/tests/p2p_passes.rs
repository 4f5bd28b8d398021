//! Viewer passes must be earned (issue 11, property P1): against a real server over TCP, a
//! `Join` without a valid proof of the viewer key gets no pass, and a client that joins and
//! leaves at once, again and again from one address, gets few passes worth one period each.

mod common;

use common::{init_logs, wait_until, RawSession, TEST_TIMEOUT};
use dsp_primitives::{AdmissionMode, CapacitySettings, Hash32, Perbill, Signature, UNIT_BYTES};
use dsp_streaming::{
	net::serve::{RunningServer, ServeConfig},
	p2p::{
		join::sign_join,
		tracker::{PassSigning, TrackerConfig},
	},
	protocol::{ErrorCode, Message, PeerInfo, Role, CHALLENGE_LEN, PROTOCOL_VERSION},
};
use sp_core::Pair;
use std::time::Duration;

const GENESIS: Hash32 = [0; 32];
const STREAM: u64 = 1;
/// Segments published before the joins: 40 000 bytes per 2 s, 20 000 B/s.
const LEN: usize = 40_000;

fn pair(s: &str) -> sp_core::sr25519::Pair {
	sp_core::sr25519::Pair::from_string(s, None).unwrap()
}

/// A server that admits every viewer in P2P mode, with the default pass rules.
async fn server() -> RunningServer {
	let mut cfg: ServeConfig = common::serve_config();
	cfg.capacity = CapacitySettings { max_streams: 100, streaming_rate: Perbill::one() };
	cfg.p2p =
		Some(PassSigning { signer: pair("//PassSigner"), tracker: TrackerConfig::new(GENESIS, 0) });
	let server = common::server(cfg).await;
	common::publish(vec![common::tcp(&server)], STREAM, 3, LEN, Duration::ZERO).await;
	server
}

/// A new session admitted in P2P mode, and its challenge.
async fn p2p_session(server: &RunningServer) -> (RawSession, [u8; CHALLENGE_LEN]) {
	let mut s = RawSession::connect(server.tcp_addr.unwrap()).await;
	s.send(&Message::Hello {
		version: PROTOCOL_VERSION,
		role: Role::Viewer,
		genesis_hash: GENESIS,
	})
	.await;
	let Message::Welcome { mode: AdmissionMode::P2p, challenge, .. } = s.recv().await else {
		panic!("no P2P welcome")
	};
	(s, challenge)
}

fn peer(n: u8) -> PeerInfo {
	let addr: libp2p::Multiaddr =
		format!("/ip4/127.0.0.1/tcp/{}", 20_000 + n as u16).parse().unwrap();
	PeerInfo { peer_id: vec![n; 38], addrs: vec![addr.to_vec()] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_for_a_key_the_client_does_not_hold_gets_no_pass_and_is_counted() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		let server = server().await;
		let victim = pair("//Victim").public();
		// Signed by the attacker's own key, naming the victim's.
		let (mut s, challenge) = p2p_session(&server).await;
		let proof = sign_join(&pair("//Mallory"), &GENESIS, &challenge, STREAM, &peer(1));
		s.send(&Message::Join { stream: STREAM, viewer: victim, peer: peer(1), proof }).await;
		let m = s.recv().await;
		assert!(matches!(m, Message::Error { code: ErrorCode::BadSignature, .. }), "{m:?}");
		// A proof of the right key replayed from another session.
		let (mut other, _) = p2p_session(&server).await;
		let proof = sign_join(&pair("//Victim"), &GENESIS, &challenge, STREAM, &peer(1));
		other.send(&Message::Join { stream: STREAM, viewer: victim, peer: peer(1), proof }).await;
		let m = other.recv().await;
		assert!(matches!(m, Message::Error { code: ErrorCode::BadSignature, .. }), "{m:?}");
		// No signature at all.
		let (mut third, _) = p2p_session(&server).await;
		let proof = Signature::from_raw([0; 64]);
		third.send(&Message::Join { stream: STREAM, viewer: victim, peer: peer(1), proof }).await;
		let m = third.recv().await;
		assert!(matches!(m, Message::Error { code: ErrorCode::BadSignature, .. }), "{m:?}");
		wait_until("three bad proofs counted", || server.stats().bad_join_proofs == 3).await;
		assert_eq!(server.stats().passes_issued, 0);
		server.shutdown().await;
	})
	.await
	.expect("test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_joins_that_leave_at_once_from_one_address_get_thirty_passes_of_one_period() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		let server = server().await;
		// 20 000 B/s for one 120 s period, slack 1.5.
		let bound = (20_000u64 * 120 * 3 / 2).div_ceil(UNIT_BYTES);
		let (mut passes, mut refused) = (Vec::new(), Vec::new());
		for n in 0..40u8 {
			let (mut s, challenge) = p2p_session(&server).await;
			let viewer = pair(&format!("//Sybil{n}"));
			match s.join(&challenge, GENESIS, STREAM, &viewer, peer(n)).await {
				Message::Joined { pass, .. } => passes.push(pass.payload.max_units),
				Message::Error { code, reason } => refused.push((code, reason)),
				other => panic!("{other:?}"),
			}
			// Leaves at once; the next one comes once the server saw it go.
			drop(s);
			wait_until("the session is gone", || server.stats().admission.p2p == 0).await;
		}
		let stats = server.stats();
		eprintln!(
			"passes {} (units each <= {bound}: {passes:?}), refused {}, first refusal {:?}",
			stats.passes_issued,
			refused.len(),
			refused.first()
		);
		assert_eq!(passes.len(), 30);
		assert!(passes.iter().all(|&u| u > 0 && u <= bound), "{passes:?}");
		assert_eq!(refused.len(), 10);
		assert!(refused
			.iter()
			.all(|(code, reason)| *code == ErrorCode::Full && reason.contains("new passes")));
		assert_eq!((stats.passes_issued, stats.joins_refused), (30, 10));
		server.shutdown().await;
	})
	.await
	.expect("test finishes in time");
}
