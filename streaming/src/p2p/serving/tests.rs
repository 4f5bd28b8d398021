//! Tests of the serving core: passes, rate limits, bans, verification budgets, ledger pruning.

use super::*;
use crate::{
	p2p::receipts::{LedgerConfig, PassSigners},
	segment::Segment,
};
use dsp_primitives::{Receipt, ViewerPass};
use libp2p::PeerId;
use sp_core::Pair;

fn pair(s: &str) -> sp_core::sr25519::Pair {
	sp_core::sr25519::Pair::from_string(s, None).unwrap()
}

struct Store(Segment);
impl ChunkSource for Store {
	fn header(&self, stream: StreamId, sequence: u64) -> Option<Signed<SegmentHeader>> {
		(stream == self.0.stream() && sequence == self.0.sequence()).then(|| self.0.header.clone())
	}
	fn chunk(&self, stream: StreamId, sequence: u64, index: u32) -> Option<Bytes> {
		self.header(stream, sequence)?;
		self.0.chunks.get(index as usize).cloned()
	}
}

fn store() -> Store {
	let data = Bytes::from((0..10_000u32).map(|i| i as u8).collect::<Vec<_>>());
	Store(Segment::build(&pair("//Origin"), [0; 32], 1, 0, 0, 2000, data, 4096))
}

fn serving(config: ServingConfig) -> Serving<PeerId> {
	let signers = PassSigners { default: vec![pair("//Issuer").public()], ..Default::default() };
	let mut lc = LedgerConfig::new([0; 32], pair("//Seeder").public().0, signers);
	lc.slack_units = 7;
	Serving::new(config, SeederLedger::new(lc))
}

fn pass(viewer: &str) -> Signed<ViewerPass> {
	let p = ViewerPass {
		genesis_hash: [0; 32],
		stream: 1,
		epoch: 0,
		viewer: pair(viewer).public(),
		max_units: 1000,
		issuer: pair("//Issuer").public(),
	};
	Signed::sign(p, &pair("//Issuer"))
}

/// A distinct peer id per `n` (no randomness in tests).
fn peer(n: u8) -> PeerId {
	libp2p::identity::Keypair::ed25519_from_bytes([n; 32]).unwrap().public().to_peer_id()
}

fn bound(viewer: &str, to: PeerId) -> Request {
	Request::bound_pass(pass(viewer), &pair(viewer), &to)
}

fn get(index: u32) -> Request {
	Request::GetChunk { stream: 1, sequence: 0, index }
}

fn code(r: &Response) -> Option<RefusalCode> {
	match r {
		Response::Refused { code, .. } => Some(*code),
		_ => None,
	}
}

#[test]
fn nothing_is_served_without_a_valid_pass() {
	let (mut s, st, now, me) = (serving(Default::default()), store(), 0, peer(1));
	assert_eq!(code(&s.handle_request(now, me, get(0), &st)), Some(RefusalCode::NoPass));
	let hdr = Request::GetHeader { stream: 1, sequence: 0 };
	assert_eq!(code(&s.handle_request(now, me, hdr.clone(), &st)), Some(RefusalCode::NoPass));
	let Request::Pass { pass: mut forged, binding } = bound("//Viewer", me) else { panic!() };
	forged.payload.max_units = 1_000_000;
	let forged = Request::Pass { pass: forged, binding };
	assert_eq!(code(&s.handle_request(now, me, forged, &st)), Some(RefusalCode::BadPass));
	// A pass bound to another peer (replayed by whoever was shown it).
	let replayed = bound("//Viewer", peer(2));
	assert_eq!(code(&s.handle_request(now, me, replayed, &st)), Some(RefusalCode::BadPass));
	assert!(!s.has_pass(&me, 1));
	assert_eq!(s.handle_request(now, me, bound("//Viewer", me), &st), Response::Ok);
	assert!(s.has_pass(&me, 1) && !s.has_pass(&me, 2) && !s.has_pass(&peer(2), 1));
	assert!(matches!(s.handle_request(now, me, hdr, &st), Response::Header(_)));
	assert_eq!(s.handle_request(now, me, get(1), &st), Response::Chunk(st.0.chunks[1].clone()));
	assert_eq!(code(&s.handle_request(now, me, get(9), &st)), Some(RefusalCode::NotHeld));
	// Another peer is not covered by this peer's pass.
	assert_eq!(code(&s.handle_request(now, peer(2), get(0), &st)), Some(RefusalCode::NoPass));
}

#[test]
fn passes_outside_the_current_epochs_are_refused_once_the_epoch_is_known() {
	let (mut s, st, now) = (serving(Default::default()), store(), 0);
	// Unknown epoch (no chain followed): any epoch is accepted.
	assert_eq!(s.handle_request(now, peer(1), bound("//Viewer", peer(1)), &st), Response::Ok);
	// The test pass is for epoch 0: fine at epochs 0 and 1 (lag 1), not at 2.
	s.handle_epoch(1);
	assert_eq!(s.handle_request(now, peer(2), bound("//Viewer", peer(2)), &st), Response::Ok);
	s.handle_epoch(2);
	let r = s.handle_request(now, peer(3), bound("//Viewer", peer(3)), &st);
	assert_eq!(code(&r), Some(RefusalCode::BadPass));
	// A pass for a future epoch is refused too.
	let mut future = pass("//Viewer");
	future.payload.epoch = 3;
	let future = Signed::sign(future.payload, &pair("//Issuer"));
	let r = s.handle_request(
		now,
		peer(4),
		Request::bound_pass(future, &pair("//Viewer"), &peer(4)),
		&st,
	);
	assert_eq!(code(&r), Some(RefusalCode::BadPass));
}

#[test]
fn receipts_behind_cut_service_until_a_new_receipt() {
	let (mut s, st, now, me) = (serving(Default::default()), store(), 0, peer(3));
	s.handle_request(now, me, bound("//Viewer", me), &st);
	// Slack 7 units: two 4 KiB chunks (8 units) use it up, the third is refused.
	assert!(matches!(s.handle_request(now, me, get(0), &st), Response::Chunk(_)));
	assert!(matches!(s.handle_request(now, me, get(1), &st), Response::Chunk(_)));
	assert_eq!(code(&s.handle_request(now, me, get(2), &st)), Some(RefusalCode::ReceiptsBehind));
	let r = Receipt {
		genesis_hash: [0; 32],
		stream: 1,
		epoch: 0,
		seeder: pair("//Seeder").public().0,
		viewer: pair("//Viewer").public(),
		units: 8,
	};
	let signed = Signed::sign(r.clone(), &pair("//Viewer"));
	assert_eq!(s.handle_request(now, me, Request::Receipt(signed), &st), Response::Ok);
	assert!(matches!(s.handle_request(now, me, get(2), &st), Response::Chunk(_)));
	// A receipt going backwards is dishonest: ban.
	let back = Signed::sign(Receipt { units: 2, ..r }, &pair("//Viewer"));
	assert_eq!(
		code(&s.handle_request(now, me, Request::Receipt(back), &st)),
		Some(RefusalCode::Banned)
	);
	assert!(matches!(s.poll_event(), Some(ServingEvent::Ban { .. })));
	assert_eq!(code(&s.handle_request(now, me, get(0), &st)), Some(RefusalCode::Banned));
}

/// A seeder serves no more than the viewer's pass can be paid for (the chain pays at most its
/// `max_units`): a chunk that would take the bytes served beyond it is refused with `NoPass`,
/// and served once a renewed pass with more units is presented. Failed before the fix: the
/// second chunk was served, unpayable.
#[test]
fn a_chunk_beyond_the_passs_max_units_is_refused_until_a_renewed_pass() {
	let (mut s, st, now, me) = (serving(Default::default()), store(), 0, peer(3));
	let bind = |units| {
		let p = ViewerPass { max_units: units, ..pass("//Viewer").payload };
		Request::bound_pass(Signed::sign(p, &pair("//Issuer")), &pair("//Viewer"), &me)
	};
	// 6 units (6 KiB), within the slack of 7: one 4 KiB chunk fits, a second would reach 8.
	assert_eq!(s.handle_request(now, me, bind(6), &st), Response::Ok);
	assert!(matches!(s.handle_request(now, me, get(0), &st), Response::Chunk(_)));
	let r = s.handle_request(now, me, get(1), &st);
	assert!(
		matches!(&r, Response::Refused { code: RefusalCode::NoPass, reason } if reason.contains("max_units")),
		"{:?}",
		code(&r)
	);
	// A renewed pass with more units lets service resume.
	assert_eq!(s.handle_request(now, me, bind(100), &st), Response::Ok);
	assert!(matches!(s.handle_request(now, me, get(1), &st), Response::Chunk(_)));
}

#[test]
fn flooding_is_refused_then_banned_and_the_window_resets() {
	let cfg =
		ServingConfig { max_requests_per_window: 5, flood_ban_after: 3, ..Default::default() };
	let (mut s, st, t0) = (serving(cfg), store(), 0);
	let (flooder, calm) = (peer(4), peer(5));
	for _ in 0..5 {
		s.handle_request(t0, calm, get(0), &st);
	}
	// A new window: the calm peer may go on.
	let t1 = t0 + 1000;
	assert_eq!(code(&s.handle_request(t1, calm, get(0), &st)), Some(RefusalCode::NoPass));

	for _ in 0..5 {
		assert_eq!(code(&s.handle_request(t0, flooder, get(0), &st)), Some(RefusalCode::NoPass));
	}
	assert_eq!(code(&s.handle_request(t0, flooder, get(0), &st)), Some(RefusalCode::Busy));
	assert_eq!(code(&s.handle_request(t0, flooder, get(0), &st)), Some(RefusalCode::Busy));
	assert_eq!(code(&s.handle_request(t0, flooder, get(0), &st)), Some(RefusalCode::Banned));
	assert_eq!(
		s.poll_event(),
		Some(ServingEvent::Ban {
			peer: flooder,
			reason: "flooding: request rate far above max_requests_per_window".into()
		})
	);
	assert!(s.is_banned(&flooder) && !s.is_banned(&calm));
	assert_eq!(code(&s.handle_request(t1, calm, get(0), &st)), Some(RefusalCode::NoPass));
}

#[test]
fn bad_input_bans_after_the_limit_and_peer_state_is_bounded() {
	let cfg = ServingConfig { max_peers: 2, ..Default::default() };
	let (mut s, st, now) = (serving(cfg), store(), 0);
	let bad = peer(6);
	s.handle_bad_input(now, bad, "oversized");
	// Reconnecting does not reset the count.
	s.handle_disconnected(&bad);
	s.handle_bad_input(now, bad, "malformed");
	assert!(!s.is_banned(&bad));
	s.handle_bad_input(now, bad, "malformed");
	assert!(s.is_banned(&bad));
	s.handle_request(now, peer(7), get(0), &st);
	s.handle_request(now, peer(8), get(0), &st);
	assert_eq!(code(&s.handle_request(now, peer(9), get(0), &st)), Some(RefusalCode::Busy));
}

#[test]
fn the_ban_list_is_bounded_and_lifts_the_oldest_ban() {
	let cfg = ServingConfig { max_banned: 2, ..Default::default() };
	let mut s = serving(cfg);
	for n in 1..=3 {
		s.ban(peer(n), "test");
	}
	let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
	assert_eq!(events.len(), 4);
	assert!(events.contains(&ServingEvent::Unban { peer: peer(1) }), "{events:?}");
	assert!(!s.is_banned(&peer(1)) && s.is_banned(&peer(2)) && s.is_banned(&peer(3)));
}

#[test]
fn a_bad_chunk_bans_its_sender_at_once() {
	let (mut s, st) = (serving(Default::default()), store());
	let (good, evil) = (peer(10), peer(11));
	let h = &st.0.header.payload;
	let ok = s.handle_chunk_response(good, h, 1, Response::Chunk(st.0.chunks[1].clone()));
	assert_eq!(ok, Ok(st.0.chunks[1].clone()));
	let mut corrupt = st.0.chunks[1].to_vec();
	corrupt[0] ^= 1;
	let err = s.handle_chunk_response(evil, h, 1, Response::Chunk(corrupt.into())).unwrap_err();
	assert!(matches!(err, FetchError::BadChunk(SegmentError::BadChunk { sequence: 0, index: 1 })));
	assert!(s.is_banned(&evil) && !s.is_banned(&good));
	// Right bytes for another index, or an index past the end, are bad chunks too.
	let other = peer(12);
	assert!(s.handle_chunk_response(other, h, 0, Response::Chunk(st.0.chunks[2].clone())).is_err());
	assert!(s.handle_chunk_response(peer(13), h, 99, Response::Chunk(Bytes::new())).is_err());
	assert!(s.is_banned(&other));
	// A refusal is not a ban.
	let refused = Response::refused(RefusalCode::Busy, "later");
	assert!(s.handle_chunk_response(good, h, 1, refused).is_err());
	assert!(!s.is_banned(&good));
}

fn pass_at(viewer: &str, epoch: EpochIndex) -> Signed<ViewerPass> {
	Signed::sign(ViewerPass { epoch, ..pass(viewer).payload }, &pair("//Issuer"))
}

fn bound_at(viewer: &str, epoch: EpochIndex, to: PeerId) -> Request {
	Request::bound_pass(pass_at(viewer, epoch), &pair(viewer), &to)
}

/// Attack 5 of issue 11: every `Pass` cost up to two sr25519 verifications, a bad binding was
/// not counted as bad input, and fresh peer ids were free. Now failures ban, a pass shown again
/// costs nothing, and the node's budget bounds what any number of peer ids can make it verify.
#[test]
fn pass_floods_cost_bounded_verifications_and_end_in_bans() {
	let (st, now) = (store(), 0);
	// Bad bindings (a pass bound to another peer), forged passes, passes of another chain or
	// issuer: each peer is banned after `max_bad_input` (3), having cost at most 2 each.
	let mut s = serving(Default::default());
	let forged = |to: PeerId| {
		let Request::Pass { pass: mut p, binding } = bound("//Viewer", to) else { panic!() };
		p.payload.max_units += 1;
		Request::Pass { pass: p, binding }
	};
	let other_chain = |to: PeerId| {
		let p = Signed::sign(
			ViewerPass { genesis_hash: [9; 32], ..pass("//Viewer").payload },
			&pair("//Issuer"),
		);
		Request::bound_pass(p, &pair("//Viewer"), &to)
	};
	let rogue = |to: PeerId| {
		let p = Signed::sign(
			ViewerPass { issuer: pair("//Rogue").public(), ..pass("//Viewer").payload },
			&pair("//Rogue"),
		);
		Request::bound_pass(p, &pair("//Viewer"), &to)
	};
	let attacks: [&dyn Fn(PeerId) -> Request; 4] =
		[&|_| bound("//Viewer", peer(99)), &forged, &other_chain, &rogue];
	for (n, attack) in attacks.iter().enumerate() {
		let flooder = peer(20 + n as u8);
		let before = s.stats().verifications;
		// One request sent again and again (signing a fresh one each time would only make
		// this test slow: sr25519 signing in a debug build).
		let request = attack(flooder);
		for _ in 0..100 {
			s.handle_request(now, flooder, request.clone(), &st);
		}
		assert!(s.is_banned(&flooder), "attack {n}");
		assert!(s.stats().verifications - before <= 6, "attack {n}: {:?}", s.stats());
	}

	// The same valid pass shown again costs nothing; shown by another peer (bound to it), one
	// verification for the binding: the pass signature is cached.
	// (The same bytes: signing again would make another signature, hence another pass.)
	let mut s = serving(Default::default());
	let (p, v) = (pass("//Viewer"), pair("//Viewer"));
	let shown = Request::bound_pass(p.clone(), &v, &peer(1));
	for _ in 0..150 {
		assert_eq!(s.handle_request(now, peer(1), shown.clone(), &st), Response::Ok);
	}
	assert_eq!(s.stats().verifications, 2);
	let shown = Request::bound_pass(p, &v, &peer(2));
	assert_eq!(s.handle_request(now, peer(2), shown, &st), Response::Ok);
	assert_eq!(s.stats().verifications, 3);

	// Fresh peer ids are free, the node's budget is not: 600 peers with bad bindings in a
	// second make it verify at most `total_burst` + `total_per_sec` signatures.
	let verify = VerifyConfig { total_per_sec: 100, total_burst: 100, ..Default::default() };
	let mut s = serving(ServingConfig { verify, max_peers: 2048, ..Default::default() });
	let mut ids = (0..600u32).map(|n| {
		let mut seed = [0u8; 32];
		seed[..4].copy_from_slice(&n.to_le_bytes());
		seed[4] = 1;
		libp2p::identity::Keypair::ed25519_from_bytes(seed).unwrap().public().to_peer_id()
	});
	let misbound = bound("//Viewer", peer(1));
	for t in 0..=10u64 {
		let now = t * 100;
		for p in ids.by_ref().take(60) {
			s.handle_request(now, p, misbound.clone(), &st);
		}
	}
	let stats = s.stats();
	assert!(stats.verifications <= 100 + 100, "{stats:?}");
	assert!(stats.over_verify_budget > 0, "{stats:?}");
	// An honest peer still gets through once the budget refilled.
	let later = 10_000;
	assert_eq!(s.handle_request(later, peer(3), bound("//Viewer", peer(3)), &st), Response::Ok);
}

/// A peer that keeps asking over its own verification budget is banned as a flooder.
#[test]
fn a_peer_over_its_verification_budget_is_refused_then_banned() {
	let verify = VerifyConfig { per_peer_per_sec: 1, per_peer_burst: 2, ..Default::default() };
	let cfg = ServingConfig { verify, flood_ban_after: 5, ..Default::default() };
	let (mut s, st, now, me) = (serving(cfg), store(), 0, peer(4));
	// Distinct valid passes (new viewers) cost 2 each: the first is paid, then refusals.
	assert_eq!(s.handle_request(now, me, bound("//V0", me), &st), Response::Ok);
	for n in 1..5 {
		let r = s.handle_request(now, me, bound_at(&format!("//V{n}"), 0, me), &st);
		assert_eq!(code(&r), Some(RefusalCode::Busy));
	}
	let r = s.handle_request(now, me, bound("//V9", me), &st);
	assert_eq!(code(&r), Some(RefusalCode::Banned));
	assert!(s.is_banned(&me));
	assert_eq!(s.stats().verifications, 2);
}

fn serving_with_entries(config: ServingConfig, max_entries: usize) -> Serving<PeerId> {
	let signers = PassSigners { default: vec![pair("//Issuer").public()], ..Default::default() };
	let mut lc = LedgerConfig::new([0; 32], pair("//Seeder").public().0, signers);
	lc.max_entries = max_entries;
	Serving::new(config, SeederLedger::new(lc))
}

fn ledger_epochs(s: &Serving<PeerId>) -> Vec<EpochIndex> {
	let mut e: Vec<_> = s.ledger().entries().map(|e| e.pass.payload.epoch).collect();
	e.sort();
	e.dedup();
	e
}

/// Attack 7 of issue 11: the seed ledger was never pruned. At every epoch change it now forgets
/// the epochs that can no longer be claimed (the claim window, 24 epochs by default).
#[test]
fn the_ledger_forgets_epochs_past_the_claim_window() {
	let (mut s, st) = (serving(Default::default()), store());
	for (n, epoch) in [0, 10, 20, 24, 25, 30].into_iter().enumerate() {
		s.handle_epoch(epoch);
		let me = peer(30 + n as u8);
		assert_eq!(s.handle_request(0, me, bound_at("//Viewer", epoch, me), &st), Response::Ok);
	}
	// At epoch 30, epochs 6..=30 are claimable.
	assert_eq!(ledger_epochs(&s), vec![10, 20, 24, 25, 30]);
	assert_eq!(s.stats().ledger_pruned, 1);
	assert_eq!(s.stats().ledger_evicted, 0);
	// The files of the epochs pruned are to be removed, those of the epochs added written.
	assert!(s.take_changed_epochs().contains(&0));
	// Without a chain to follow, the newest accepted pass moves the horizon.
	let mut s = serving(ServingConfig { claim_window_epochs: 2, ..Default::default() });
	for (n, epoch) in [0, 1, 2, 3].into_iter().enumerate() {
		let me = peer(40 + n as u8);
		assert_eq!(s.handle_request(0, me, bound_at("//Viewer", epoch, me), &st), Response::Ok);
	}
	assert_eq!(ledger_epochs(&s), vec![1, 2, 3]);
}

/// A full ledger refused every pass forever. It now evicts its oldest epoch for a pass of a
/// newer one; passes of the epoch that filled it wait for the next epoch.
#[test]
fn a_full_ledger_evicts_its_oldest_epoch_for_a_newer_pass() {
	let (mut s, st) = (serving_with_entries(Default::default(), 2), store());
	s.handle_epoch(0);
	for (n, v) in ["//A", "//B"].into_iter().enumerate() {
		let me = peer(50 + n as u8);
		assert_eq!(s.handle_request(0, me, bound_at(v, 0, me), &st), Response::Ok);
	}
	s.handle_epoch(1);
	let c = peer(52);
	assert_eq!(s.handle_request(0, c, bound_at("//C", 1, c), &st), Response::Ok);
	assert_eq!(ledger_epochs(&s), vec![1]);
	assert_eq!(s.stats().ledger_evicted, 2);
	let d = peer(53);
	assert_eq!(s.handle_request(0, d, bound_at("//D", 1, d), &st), Response::Ok);
	let e = peer(54);
	let r = s.handle_request(0, e, bound_at("//E", 1, e), &st);
	assert_eq!(code(&r), Some(RefusalCode::Busy));
	assert!(!s.is_banned(&e));
	s.handle_epoch(2);
	assert_eq!(s.handle_request(0, e, bound_at("//E", 2, e), &st), Response::Ok);
	assert_eq!(ledger_epochs(&s), vec![2]);
}

/// Review defect: a peer's verification budget was forgotten with its connection, so a peer
/// reconnecting after every pass got a fresh burst each time. A remembered bucket keeps a
/// reconnect loop at `per_peer_burst` + `per_peer_per_sec` x the time it runs.
#[test]
fn reconnecting_does_not_refill_a_peers_verification_budget() {
	let verify = VerifyConfig { per_peer_per_sec: 1, per_peer_burst: 2, ..Default::default() };
	let cfg = ServingConfig { verify, flood_ban_after: 1000, ..Default::default() };
	let (mut s, st, me) = (serving(cfg), store(), peer(5));
	// Distinct valid passes (2 verifications each), one per connection, 8 connections in 2 s.
	let mut accepted = 0;
	for n in 0..8u64 {
		let now = n * 250;
		let r = s.handle_request(now, me, bound(&format!("//R{n}"), me), &st);
		accepted += u64::from(r == Response::Ok);
		s.handle_disconnected(&me);
	}
	// The burst (2) plus 1 a second for the 1.75 s the loop ran: 3 verifications, one pass.
	assert!(s.stats().verifications <= 2 + 2, "{:?}", s.stats());
	assert_eq!(accepted, 1, "{:?}", s.stats());
	// Once the bucket refilled the peer is served again.
	let r = s.handle_request(10_000, me, bound("//R9", me), &st);
	assert_eq!(r, Response::Ok);
}

/// The remembered verification buckets are bounded in number (`max_remembered_strikes`) and
/// forgotten once full again.
#[test]
fn remembered_verification_buckets_are_bounded() {
	let verify = VerifyConfig { per_peer_per_sec: 1, per_peer_burst: 2, ..Default::default() };
	let cfg = ServingConfig { verify, max_remembered_strikes: 3, ..Default::default() };
	let (mut s, st) = (serving(cfg), store());
	let misbound = bound("//Viewer", peer(99));
	// Each peer spends 2 verifications on a pass bound to another peer, then leaves.
	for n in 0..6u8 {
		s.handle_request(0, peer(n), misbound.clone(), &st);
		s.handle_disconnected(&peer(n));
	}
	assert_eq!(s.remembered_buckets(), 3);
	// A peer that leaves with a full bucket is not remembered.
	s.handle_request(0, peer(50), get(0), &st);
	s.handle_disconnected(&peer(50));
	assert_eq!(s.remembered_buckets(), 3);
	// Two seconds later they are full again: the next connection forgets them.
	s.handle_request(2_000, peer(60), get(0), &st);
	assert_eq!(s.remembered_buckets(), 0);
}
