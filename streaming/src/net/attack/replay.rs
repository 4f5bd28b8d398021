//! Replay of an earlier broadcast (issue 12, item 1): an anonymous publisher sends `Publish`
//! for the live stream with the proof of an old session, then the origin-signed segments and
//! `End` of an earlier broadcast of the same stream, numbered from 0 like the live one. Before
//! broadcast identity the viewers played the old segments and stopped at the old `End`; now
//! the proof is bound to the session's challenge and every segment and end to its broadcast.
//!
//! [`Captured`] is what the attacker recorded of that earlier broadcast: any viewer of it could
//! have, since the server forwards the origin's signed frames unchanged. `dsp load` makes it
//! with the origin key for a broadcast an hour older than the live one.

use super::{count_refusal, hold, Answer, AttackCounters, AttackTarget, RawConn};
use crate::{
	protocol::{encode_frame, publish_proof, Message, Role, CHALLENGE_LEN},
	segment::Segment,
};
use bytes::Bytes;
use dsp_primitives::{Hash32, Signature, Signed, StreamEnd, StreamId};
use std::{
	sync::{atomic::Ordering, Arc},
	time::Duration,
};
use tokio::sync::watch;

/// An earlier broadcast as a viewer recorded it, and the `Publish` proof of its publisher's
/// session.
#[derive(Clone)]
pub struct Captured {
	/// The stream.
	pub stream: StreamId,
	/// The proof its publisher sent (valid for that session's challenge only).
	pub proof: Signature,
	/// Its segments' frames (header and chunks), in order.
	pub segments: Vec<Segment>,
	/// Its signed `End`.
	pub end: Signed<StreamEnd>,
}

impl Captured {
	/// The recording of broadcast `broadcast` of `stream`: `count` segments of `len` bytes,
	/// its end, and its publisher's proof over a challenge of that old session, all signed by
	/// the origin `pair` as it signed them then.
	pub fn earlier_broadcast(
		pair: &sp_core::sr25519::Pair,
		genesis_hash: Hash32,
		stream: StreamId,
		broadcast: u64,
		count: u64,
		len: usize,
	) -> Captured {
		let data = Bytes::from(vec![0x5a; len]);
		let segments = (0..count)
			.map(|seq| {
				Segment::build(
					pair,
					genesis_hash,
					stream,
					broadcast,
					seq,
					2000,
					data.clone(),
					16 * 1024,
				)
			})
			.collect();
		let end = StreamEnd { genesis_hash, stream, broadcast, next_sequence: count };
		let proof = publish_proof(pair, genesis_hash, [0x33; CHALLENGE_LEN], stream);
		Captured { stream, proof, segments, end: Signed::sign(end, pair) }
	}

	/// What the attacker sends after `Welcome`: `Publish` with the old proof, every old segment
	/// (header and chunks), the old `End`.
	pub fn script(&self) -> Vec<Bytes> {
		let mut frames =
			vec![encode_frame(&Message::Publish { stream: self.stream, proof: self.proof })];
		for s in &self.segments {
			frames.extend(s.frames.iter().cloned());
		}
		frames.push(encode_frame(&Message::End(self.end.clone())));
		frames
	}

	/// Media bytes of one segment.
	fn segment_len(&self) -> u64 {
		self.segments.first().map_or(0, |s| s.chunks.iter().map(|c| c.len() as u64).sum())
	}
}

/// Slots replaying at once: a few, as the attack needs no volume.
pub const SLOTS: usize = 4;

/// Replays `captured` again and again from `target.sources[0]` until `stop`.
pub async fn run(
	target: AttackTarget,
	captured: Captured,
	c: Arc<AttackCounters>,
	stop: watch::Receiver<bool>,
) {
	let (target, captured) = (Arc::new(target), Arc::new(captured));
	let retry = target.retry;
	super::run_slots(SLOTS, retry, stop, move |_| {
		let (target, captured, c) = (target.clone(), captured.clone(), c.clone());
		async move { one(&target, &captured, &c).await }
	})
	.await;
}

/// One replay: hello as a publisher, the script, then read until the server closes. Every
/// `Ack` counts as a segment accepted; the close as a refusal.
async fn one(target: &AttackTarget, captured: &Captured, c: &Arc<AttackCounters>) {
	c.attempts.fetch_add(1, Ordering::Relaxed);
	let Ok(mut conn) = RawConn::connect(target.source(0), target.tcp).await else {
		count_refusal(c, &Answer::Closed);
		return;
	};
	match conn.hello(Role::Publisher, target.genesis_hash, c).await {
		Answer::Welcome(_) => {
			// The writes may fail once the server refused and closed: what it answered counts.
			let _ = conn.send(&captured.script(), c).await;
			let why = hold(
				&mut conn.r,
				&mut conn.w,
				&mut conn.dec,
				Duration::from_secs(10),
				captured.segment_len(),
				c,
			)
			.await;
			count_refusal(c, &why);
		}
		other => count_refusal(c, &other),
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use sp_core::Pair;

	#[test]
	fn the_script_is_publish_then_segments_then_end() {
		let pair = sp_core::sr25519::Pair::from_string("//Old", None).unwrap();
		let c = Captured::earlier_broadcast(&pair, [1; 32], 5, 1_000, 3, 40_000);
		let frames = c.script();
		let kinds: Vec<&str> = frames
			.iter()
			.map(|f| crate::protocol::decode_body(f.slice(4..)).unwrap().kind())
			.collect();
		assert_eq!(kinds.first(), Some(&"publish"));
		assert_eq!(kinds.last(), Some(&"end"));
		assert_eq!(kinds.iter().filter(|k| **k == "header").count(), 3);
		// 40,000 bytes in 16 KiB chunks: 3 chunks per segment.
		assert_eq!(kinds.iter().filter(|k| **k == "chunk").count(), 9);
		assert_eq!(c.segment_len(), 40_000);
		assert!(c.segments.iter().all(|s| s.header.payload.broadcast == 1_000));
	}
}
