//! Valid inputs the harnesses start from or replay: signed segments of two broadcasts of one
//! stream and their ends (the replay corpus: old segments and ends, sequences 0 and the largest
//! ones), canned client messages, P2P requests, claim items and a ledger. Built once per
//! process, from fixed keys.
//!
//! Payloads whose shape other work may extend (messages, `StreamEnd`, passes, receipts) are made
//! by decoding their known leading fields followed by zero padding, so an added field becomes a
//! zero instead of a compile error here; `fuzz::tests::fixtures_are_valid` says when a fixture
//! stopped verifying.

use crate::{
	p2p::{
		receipts::{LedgerConfig, PassSigners, SeederLedger},
		wire::{HaveSegment, RefusalCode, Request, Response},
	},
	protocol::{
		encode_frame, Message, PeerInfo, Role, ServerAddrs, Start, Transport, PROTOCOL_VERSION,
	},
	segment::Segment,
	server::OriginKeys,
};
use bytes::Bytes;
use codec::{Decode, Encode};
use dsp_primitives::{ClaimItem, Hash32, Receipt, Signed, StreamEnd, StreamId, ViewerPass};
use sp_core::{sr25519::Pair, Pair as _};
use std::{
	collections::HashMap,
	sync::{Arc, OnceLock},
};

/// Genesis hash of every fixture.
pub const GENESIS: Hash32 = [7; 32];
/// The stream the session harness publishes and watches, signed by [`Fixtures::origin`].
pub const STREAM: StreamId = 1;
/// A second stream with its own origin key.
pub const OTHER_STREAM: StreamId = 2;
/// A stream without an origin key.
pub const UNKNOWN_STREAM: StreamId = 99;
/// Chunk size of the fixture segments: small, so that a segment has several chunks.
pub const CHUNK: u32 = 128;

/// A fixture segment and whether [`STREAM`]'s session accepts it (right chain, stream and key,
/// sequence below `u64::MAX`).
#[derive(Clone, Debug)]
pub struct FixtureSegment {
	/// The segment, frames included.
	pub segment: Arc<Segment>,
	/// Whether it verifies for [`STREAM`].
	pub valid: bool,
}

/// Everything the harnesses replay. See the module docs.
pub struct Fixtures {
	/// Origin key of [`STREAM`].
	pub origin: Pair,
	/// The viewer key of the fixture `Join`s.
	pub viewer: Pair,
	/// Origin keys the sessions use.
	pub origin_keys: Arc<OriginKeys>,
	/// Broadcasts A and B of [`STREAM`] (sequences 0..=3 each, different bytes), a multi-chunk
	/// segment, sequence edges, and segments signed for another key, chain or stream.
	pub segments: Vec<FixtureSegment>,
	/// Signed ends, as `(end, valid for STREAM)`: next sequences 0, 2, 4, the largest two, and
	/// ends with another key, chain or stream.
	pub ends: Vec<(Signed<StreamEnd>, bool)>,
	/// Client messages: hellos, subscribes with sequence edges, publishes, joins, fetches,
	/// pings, and server messages a client must not send.
	pub messages: Vec<Message>,
	/// A pass to answer joins with (the session does not check it; all zeros).
	pub join_pass: Option<Signed<ViewerPass>>,
	/// Streamers to redirect refused viewers to.
	pub redirect: Vec<ServerAddrs>,
	/// Encoded P2P requests and responses.
	pub p2p: Vec<Vec<u8>>,
	/// Valid claim items for [`Self::ledger_config`]'s seeder.
	pub claim_items: Vec<ClaimItem>,
	/// The seeder ledger's settings.
	pub ledger_config: LedgerConfig,
	/// A saved ledger holding the claim items' passes and receipts, and a pass without receipt.
	pub ledger_bytes: Vec<u8>,
	/// Every pass in [`Self::ledger_bytes`].
	pub ledger_passes: Vec<Signed<ViewerPass>>,
}

/// The fixtures, built at first use.
pub fn fixtures() -> &'static Fixtures {
	static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
	FIXTURES.get_or_init(build)
}

/// `fields` followed by zeros, decoded as `T` (see the module docs).
pub fn padded<T: Decode>(fields: impl Encode) -> Option<T> {
	let mut bytes = fields.encode();
	bytes.extend([0u8; 256]);
	T::decode(&mut &bytes[..]).ok()
}

/// A message of type `kind` with these leading fields, re-encoded canonically.
fn message(kind: u8, fields: impl Encode) -> Option<Message> {
	padded::<Message>((kind, fields))
}

/// The frame body of `msg`, as `FrameDecoder` hands it to a session.
pub fn body(msg: &Message) -> Bytes {
	encode_frame(msg).slice(crate::protocol::LENGTH_PREFIX..)
}

fn key(n: u8) -> Pair {
	Pair::from_seed(&[n; 32])
}

fn segment(
	pair: &Pair,
	genesis: Hash32,
	stream: StreamId,
	broadcast: u64,
	seq: u64,
	fill: u8,
	len: usize,
) -> Arc<Segment> {
	let data = Bytes::from(vec![fill; len]);
	Arc::new(Segment::build(pair, genesis, stream, broadcast, seq, 2000, data, CHUNK))
}

fn end(
	pair: &Pair,
	genesis: Hash32,
	stream: StreamId,
	broadcast: u64,
	next: u64,
) -> Option<Signed<StreamEnd>> {
	padded::<StreamEnd>((genesis, stream, broadcast, next)).map(|e| Signed::sign(e, pair))
}

fn build() -> Fixtures {
	let origin = key(1);
	let other = key(2);
	let origin_keys = Arc::new(OriginKeys {
		per_stream: HashMap::from([(STREAM, origin.public()), (OTHER_STREAM, other.public())]),
		..Default::default()
	});

	let mut segments = Vec::new();
	let mut push = |segment, valid| segments.push(FixtureSegment { segment, valid });
	// Broadcasts A (1) and B (2) of the stream: B's segments replace A's window, A's are then
	// replays.
	for seq in 0..=3 {
		push(segment(&origin, GENESIS, STREAM, 1, seq, 0xa0 + seq as u8, 300), true);
		push(segment(&origin, GENESIS, STREAM, 2, seq, 0xb0 + seq as u8, 200), true);
	}
	push(segment(&origin, GENESIS, STREAM, 2, 4, 0xc4, 1000), true);
	push(segment(&origin, GENESIS, STREAM, 2, u64::MAX - 1, 0xd0, 100), true);
	push(segment(&origin, GENESIS, STREAM, 2, u64::MAX, 0xd1, 100), false);
	push(segment(&other, GENESIS, STREAM, 2, 1, 0xe1, 100), false);
	push(segment(&origin, [8; 32], STREAM, 2, 1, 0xe2, 100), false);
	push(segment(&other, GENESIS, OTHER_STREAM, 2, 0, 0xe3, 100), false);

	let ends = [
		(&origin, GENESIS, STREAM, 1, 2, true),
		(&origin, GENESIS, STREAM, 2, 0, true),
		(&origin, GENESIS, STREAM, 2, 2, true),
		(&origin, GENESIS, STREAM, 2, 4, true),
		(&origin, GENESIS, STREAM, 2, u64::MAX - 1, true),
		(&origin, GENESIS, STREAM, 2, u64::MAX, true),
		(&other, GENESIS, STREAM, 2, 3, false),
		(&origin, [8; 32], STREAM, 2, 3, false),
		(&other, GENESIS, OTHER_STREAM, 2, 1, false),
	]
	.into_iter()
	.filter_map(|(k, g, s, b, n, valid)| Some((end(k, g, s, b, n)?, valid)))
	.collect();

	let peer = PeerInfo { peer_id: vec![1; 38], addrs: vec![vec![4, 127, 0, 0, 1]] };
	let bad_peer = PeerInfo { peer_id: Vec::new(), addrs: vec![Vec::new()] };
	let viewer = key(3);
	let v = PROTOCOL_VERSION;
	let messages = [
		message(0, (v, Role::Viewer, GENESIS)),
		message(0, (v, Role::Publisher, GENESIS)),
		message(0, (v.wrapping_add(1), Role::Viewer, GENESIS)),
		message(0, (v, Role::Publisher, [8u8; 32])),
		message(2, (STREAM, Start::At(0))),
		message(2, (STREAM, Start::At(1))),
		message(2, (STREAM, Start::At(u64::MAX))),
		message(2, (STREAM, Start::At(u64::MAX - 1))),
		message(2, (STREAM, Start::Live { back: 0 })),
		message(2, (STREAM, Start::Live { back: u32::MAX })),
		message(2, (UNKNOWN_STREAM, Start::Live { back: 1 })),
		message(2, (OTHER_STREAM, Start::At(0))),
		message(3, STREAM),
		message(3, OTHER_STREAM),
		message(3, UNKNOWN_STREAM),
		message(13, Transport::Quic),
		message(13, Transport::Tcp),
		message(16, (STREAM, viewer.public(), peer.clone())),
		message(16, (UNKNOWN_STREAM, viewer.public(), peer)),
		message(16, (STREAM, viewer.public(), bad_peer)),
		message(18, (STREAM, 0u64, 0u32)),
		message(18, (STREAM, 1u64, 2u32)),
		message(18, (STREAM, u64::MAX, u32::MAX)),
		message(18, (OTHER_STREAM, 0u64, 0u32)),
		Some(Message::Ping(0)),
		Some(Message::Ping(u64::MAX)),
		Some(Message::Pong(1)),
		message(10, (9u8, "fuzz".to_string())),
		message(6, (STREAM, 0u64)),
		message(11, (STREAM, Some(2u64), u64::MAX)),
		message(1, (v, 0u8, 1024u32)),
		message(19, (STREAM, 0u64, 0u32)),
	]
	.into_iter()
	.flatten()
	.collect();

	let issuer = key(4);
	let signers = PassSigners { default: vec![issuer.public()], per_stream: HashMap::new() };
	let seeder = key(5).public().0;
	let ledger_config = LedgerConfig::new(GENESIS, seeder, signers);
	let pass = |viewer: &Pair, epoch: u32| {
		padded::<ViewerPass>((
			GENESIS,
			STREAM,
			epoch,
			viewer.public(),
			1_000_000u64,
			issuer.public(),
		))
		.map(|p| Signed::sign(p, &issuer))
	};
	let receipt = |viewer: &Pair, epoch: u32, units: u64| {
		padded::<Receipt>((GENESIS, STREAM, epoch, seeder, viewer.public(), units))
			.map(|r| Signed::sign(r, viewer))
	};
	let viewers = [key(6), key(7), key(8)];
	let claim_items: Vec<ClaimItem> = viewers
		.iter()
		.enumerate()
		.filter_map(|(i, v)| {
			let epoch = 3 + i as u32;
			Some(ClaimItem { pass: pass(v, epoch)?, receipt: receipt(v, epoch, 10 + i as u64)? })
		})
		.collect();
	let mut ledger = SeederLedger::new(ledger_config.clone());
	for item in &claim_items {
		let p = &item.pass.payload;
		let _ = ledger.handle_pass(item.pass.clone());
		let _ = ledger.handle_receipt(item.receipt.clone());
		ledger.handle_served(p.stream, &p.viewer, p.epoch, 4096 + u64::from(p.epoch));
	}
	let mut ledger_passes: Vec<_> = claim_items.iter().map(|i| i.pass.clone()).collect();
	if let Some(p) = pass(&key(9), 3) {
		let _ = ledger.handle_pass(p.clone());
		ledger_passes.push(p);
	}
	let ledger_bytes = ledger.encode();

	let join_pass = padded::<Signed<ViewerPass>>(());
	let p2p_peer = libp2p::identity::Keypair::ed25519_from_bytes([1; 32])
		.map(|k| k.public().to_peer_id())
		.ok();
	let mut p2p: Vec<Vec<u8>> = vec![
		Request::GetHeader { stream: STREAM, sequence: 7 }.encode(),
		Request::GetChunk { stream: STREAM, sequence: u64::MAX, index: 3 }.encode(),
		Request::Have {
			stream: STREAM,
			segments: vec![HaveSegment::from_indices(7, [0, 9]), HaveSegment::from_indices(8, [])],
		}
		.encode(),
		Response::Ok.encode(),
		Response::Chunk(Bytes::from_static(b"chunk")).encode(),
		Response::refused(RefusalCode::Busy, "busy").encode(),
	];
	if let (Some(item), Some(peer)) = (claim_items.first(), p2p_peer) {
		p2p.push(Request::bound_pass(item.pass.clone(), &viewers[0], &peer).encode());
		p2p.push(Request::Receipt(item.receipt.clone()).encode());
	}
	if let Some(s) = segments.first() {
		p2p.push(Response::Header(s.segment.header.clone()).encode());
	}

	let redirect = (1..=10u8)
		.map(|n| ServerAddrs { tcp: Some(format!("10.0.0.{n}:7700")), quic: None })
		.collect();
	Fixtures {
		origin,
		viewer,
		origin_keys,
		segments,
		ends,
		messages,
		join_pass,
		redirect,
		p2p,
		claim_items,
		ledger_config,
		ledger_bytes,
		ledger_passes,
	}
}
