//! Harnesses of the decoders: direct-protocol frames, the P2P codec, claim items and the
//! seeder's ledger bytes. See the table in the module docs of [`crate::fuzz`].

use super::{
	fixtures::{body, fixtures, GENESIS},
	Input,
};
use crate::{
	p2p::{
		receipts::{verify_item, SeederLedger},
		wire::{verify_peer_binding, P2pCodec, RefusalCode, Request, Response, WireLimits},
	},
	protocol::{decode_body, encode_frame, FrameDecoder, FrameError, Message, LENGTH_PREFIX},
};
use bytes::Bytes;
use codec::{DecodeAll, Encode};
use dsp_primitives::ClaimItem;

/// Raw bytes, or (mode 1) one of `bases` changed by a mutation script.
fn raw_or_mutated(input: &mut Input, bases: &[Vec<u8>]) -> Vec<u8> {
	if input.u8() % 4 == 0 || bases.is_empty() {
		return input.rest().to_vec();
	}
	let base = &bases[input.index(bases.len())];
	input.mutate(base)
}

/// What a connection's decoder made of a byte stream: the messages (with their bodies) up to
/// the first error, and the error or the end-of-stream verdict.
type Decoded = (Vec<(Bytes, Result<Message, FrameError>)>, Result<(), FrameError>);

fn decode_stream<'a>(max: u32, pieces: impl Iterator<Item = &'a [u8]>) -> Decoded {
	let mut dec = FrameDecoder::new(max);
	let mut out = Vec::new();
	for piece in pieces {
		dec.push(piece);
		loop {
			match dec.next_frame() {
				Ok(Some(body)) => {
					assert!(!body.is_empty() && body.len() <= max as usize, "frame over max");
					let msg = decode_body(body.clone());
					let failed = msg.is_err();
					out.push((body, msg));
					if failed {
						return (out, Ok(()));
					}
				}
				Ok(None) => break,
				Err(e) => return (out, Err(e)),
			}
		}
		// Only an incomplete frame stays buffered, and never one over the limit.
		assert!(dec.buffer().len() <= LENGTH_PREFIX + max as usize, "decoder buffered too much");
	}
	let fin = dec.finish();
	(out, fin)
}

/// The direct protocol's frame decoder and message bodies. Invariants: the same messages and
/// errors whether the bytes arrive at once or in pieces; an accepted body is the canonical
/// encoding of its message (it re-encodes to the same bytes, so nobody can make two frames that
/// mean one message); frames stay within `max_frame_len`.
pub fn frames(data: &[u8]) {
	let mut input = Input::new(data);
	let max = match input.u8() % 4 {
		0 => crate::protocol::DEFAULT_MAX_FRAME_LEN,
		1 => u32::from(input.u8()),
		2 => u32::from(input.u16()),
		_ => u32::MAX,
	};
	let piece = usize::from(input.u8() % 32) + 1;
	let bases: Vec<Vec<u8>> = {
		let f = fixtures();
		let mut frames: Vec<Vec<u8>> =
			f.messages.iter().map(|m| encode_frame(m).to_vec()).collect();
		frames.extend(f.segments.iter().take(3).map(|s| s.segment.frames.concat()));
		frames.extend(
			f.ends.iter().take(1).map(|(e, _)| encode_frame(&Message::End(e.clone())).to_vec()),
		);
		frames
	};
	let stream = raw_or_mutated(&mut input, &bases);

	let whole = decode_stream(max, std::iter::once(&stream[..]));
	let split = decode_stream(max, stream.chunks(piece));
	assert_eq!(whole, split, "result depends on how the bytes were split");
	for (body, msg) in &whole.0 {
		match msg {
			Ok(m) => {
				assert_eq!(&encode_frame(m)[LENGTH_PREFIX..], &body[..], "non-canonical body");
				let _ = m.kind();
			}
			Err(e) => {
				let _ = (e.code(), e.to_string());
			}
		}
	}
	// The same bytes as one body.
	if let Ok(m) = decode_body(Bytes::from(stream.clone())) {
		assert_eq!(body(&m)[..], stream[..], "non-canonical body");
	}
}

/// The P2P request/response codec. Invariants: strict decoding is canonical; the async codec
/// (bounded read, then decode) agrees with `decode_request` / `decode_response`; decoded
/// messages respect the count limits; `Response::refused` always stays within them.
pub fn p2p_wire(data: &[u8]) {
	use libp2p::request_response::Codec as _;
	let mut input = Input::new(data);
	let limits = if input.bool() {
		WireLimits::default()
	} else {
		WireLimits {
			max_request_len: usize::from(input.u8()) * 64,
			max_response_len: usize::from(input.u8()) * 64,
			max_have_segments: usize::from(input.u8() % 8),
			max_have_bits_bytes: usize::from(input.u8() % 8),
			max_reason_len: usize::from(input.u8()),
		}
	};
	let reason = String::from_utf8_lossy(input.bytes_upto(255)).into_owned();
	let refused = Response::refused(RefusalCode::Busy, reason);
	assert!(WireLimits::default().decode_response(&refused.encode()).is_ok(), "refused too long");

	let bytes = raw_or_mutated(&mut input, &fixtures().p2p);
	let request = limits.decode_request(&bytes);
	if let Ok(r) = &request {
		assert_eq!(r.encode(), bytes, "non-canonical request");
		let _ = (r.kind(), r.stream());
		match r {
			Request::Have { segments, .. } => {
				assert!(segments.len() <= limits.max_have_segments);
				for s in segments {
					assert!(s.bits.len() <= limits.max_have_bits_bytes);
					for i in 0..s.bits.len() as u32 * 8 + 8 {
						let bit = s.bits.get(i as usize / 8).is_some_and(|b| b >> (i % 8) & 1 == 1);
						assert_eq!(s.has(i), bit);
					}
				}
			}
			Request::Pass { pass, binding } => {
				if let Ok(k) = libp2p::identity::Keypair::ed25519_from_bytes([1; 32]) {
					let _ = verify_peer_binding(&pass.payload, &k.public().to_peer_id(), binding);
				}
			}
			_ => {}
		}
	}
	let response = limits.decode_response(&bytes);
	if let Ok(r) = &response {
		assert_eq!(r.encode(), bytes, "non-canonical response");
		if let Response::Refused { reason, .. } = r {
			assert!(reason.len() <= limits.max_reason_len);
		}
		let _ = r.kind();
	}

	let mut codec = P2pCodec { limits };
	let proto = libp2p::StreamProtocol::new(crate::p2p::wire::PROTOCOL_NAME);
	futures::executor::block_on(async {
		let read = codec.read_request(&proto, &mut futures::io::Cursor::new(&bytes[..])).await;
		assert_eq!(read.ok(), Some(request), "codec and decode_request disagree");
		let read = codec.read_response(&proto, &mut futures::io::Cursor::new(&bytes[..])).await;
		assert_eq!(read.ok(), response.ok(), "codec and decode_response disagree");
	});
}

/// Claim items as a seeder submits them. Invariants: decoding is canonical, and an item that
/// `verify_item` (the pallet's stateless checks, in its order) accepts is one of the fixtures
/// unchanged: no change to a signed pass or receipt, signature bytes included, still verifies.
pub fn claim_item(data: &[u8]) {
	let mut input = Input::new(data);
	let f = fixtures();
	let bases: Vec<Vec<u8>> = f.claim_items.iter().map(Encode::encode).collect();
	let bytes = raw_or_mutated(&mut input, &bases);
	let Ok(item) = ClaimItem::decode_all(&mut &bytes[..]) else { return };
	assert_eq!(item.encode(), bytes, "non-canonical claim item");
	let c = &f.ledger_config;
	if verify_item(&item, &GENESIS, &c.seeder, &c.signers).is_ok() {
		assert!(f.claim_items.contains(&item), "a changed claim item verifies: {item:?}");
	}
	if item.pass.verify(&item.pass.payload.issuer) {
		assert!(f.claim_items.iter().any(|i| i.pass == item.pass), "a changed pass verifies");
	}
	if item.receipt.verify(&item.receipt.payload.viewer) {
		assert!(
			f.claim_items.iter().any(|i| i.receipt == item.receipt),
			"a changed receipt verifies"
		);
	}
}

/// The seeder's ledger as loaded from `ledger.scale` (`SeederLedger::load` reads the file and
/// calls this decoder). Invariants: only entries whose pass and receipt are fixtures load; a
/// loaded ledger saves to bytes that load to the same entries; its claim batches hold every
/// entry with a receipt and nothing fails re-verification; it respects `max_entries`.
pub fn ledger(data: &[u8]) {
	let mut input = Input::new(data);
	let f = fixtures();
	let mut config = f.ledger_config.clone();
	if input.bool() {
		config.max_entries = usize::from(input.u8() % 4);
	}
	let max_items = usize::from(input.u8());
	let bytes = raw_or_mutated(&mut input, std::slice::from_ref(&f.ledger_bytes));
	let ledger = match SeederLedger::decode(config.clone(), &bytes) {
		Ok(l) => l,
		Err(e) => {
			let _ = e.to_string();
			return;
		}
	};
	let entries: Vec<_> = ledger.entries().cloned().collect();
	assert!(entries.len() <= config.max_entries, "ledger over max_entries");
	for e in &entries {
		assert!(f.ledger_passes.contains(&e.pass), "a changed pass loaded");
		if let Some(r) = &e.receipt {
			assert!(f.claim_items.iter().any(|i| &i.receipt == r), "a changed receipt loaded");
		}
		let p = &e.pass.payload;
		let _ = ledger.may_serve(p.stream, &p.viewer, p.epoch);
	}
	let again = SeederLedger::decode(config, &ledger.encode())
		.map(|l| l.entries().cloned().collect::<Vec<_>>());
	assert_eq!(again.ok().as_ref(), Some(&entries), "a loaded ledger does not reload");
	let (batches, bad) = ledger.claim_batches(max_items);
	assert!(bad.is_empty(), "a loaded ledger holds items that fail verification");
	let with_receipt = entries.iter().filter(|e| e.receipt.is_some()).count();
	assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), with_receipt);
	assert!(batches.iter().all(|b| b.len() <= max_items.max(1)));
}
