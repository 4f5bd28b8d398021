//! Anonymous `Publish` flood (issue 12, item 3): sessions from every attacker address send
//! `Publish` for fresh stream ids (registered, nobody live on them) with a proof signed by
//! the attacker's own key, and leave. Before the proof 32 of them locked real publishers of new
//! streams out for 120 s; now a `Publish` whose proof does not verify is refused before
//! anything is held for it.

use super::{count_refusal, Answer, AttackCounters, AttackTarget, RawConn};
use crate::protocol::{encode_frame, publish_proof, Message, Role};
use dsp_primitives::StreamId;
use sp_core::Pair;
use std::sync::{atomic::Ordering, Arc};
use tokio::sync::watch;

/// Attempts in flight per attacker address: the server's default handshakes-in-flight limit.
pub const SLOTS_PER_ADDRESS: usize = 8;

/// The stream id attempt `n` of slot `i` publishes: round robin over `ids`, so every fresh id
/// is tried by every slot.
pub fn id_for(ids: &[StreamId], i: usize, n: u64) -> Option<StreamId> {
	if ids.is_empty() {
		return None;
	}
	ids.get((i as u64).wrapping_add(n) as usize % ids.len()).copied()
}

/// Floods until `stop` from every address of `target.sources`.
pub async fn run(
	target: AttackTarget,
	ids: Vec<StreamId>,
	c: Arc<AttackCounters>,
	stop: watch::Receiver<bool>,
) {
	let slots = SLOTS_PER_ADDRESS * target.sources.len().max(1);
	let (target, ids) = (Arc::new(target), Arc::new(ids));
	let retry = target.retry;
	let attacker = Arc::new(sp_core::sr25519::Pair::from_seed(&[0x66; 32]));
	super::run_slots(slots, retry, stop, move |i| {
		let (target, ids, c, attacker) = (target.clone(), ids.clone(), c.clone(), attacker.clone());
		async move {
			let n = c.attempts.fetch_add(1, Ordering::Relaxed);
			let Some(stream) = id_for(&ids, i, n) else { return };
			one(&target, i, stream, &attacker, &c).await
		}
	})
	.await;
}

/// One anonymous `Publish` from slot `i`'s address: the proof is over this session's challenge
/// (so only the key is wrong), then the server's answer.
async fn one(
	target: &AttackTarget,
	i: usize,
	stream: StreamId,
	attacker: &sp_core::sr25519::Pair,
	c: &Arc<AttackCounters>,
) {
	let Ok(mut conn) = RawConn::connect(target.source(i), target.tcp).await else {
		count_refusal(c, &Answer::Closed);
		return;
	};
	let challenge = match conn.hello(Role::Publisher, target.genesis_hash, c).await {
		Answer::Welcome(challenge) => challenge,
		other => return count_refusal(c, &other),
	};
	let proof = publish_proof(attacker, target.genesis_hash, challenge, stream);
	if conn.send(&[encode_frame(&Message::Publish { stream, proof })], c).await.is_err() {
		return count_refusal(c, &Answer::Closed);
	}
	match Answer::of(conn.recv().await) {
		// `Expect`: the server took the publish (what the fix forbids).
		Answer::Other("expect") => {
			c.admitted.fetch_add(1, Ordering::Relaxed);
		}
		other => count_refusal(c, &other),
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn every_fresh_id_is_tried() {
		let ids = [10, 11, 12];
		let got: std::collections::BTreeSet<_> =
			(0..3).filter_map(|n| id_for(&ids, 5, n)).collect();
		assert_eq!(got.len(), 3);
		assert_eq!(id_for(&[], 0, 0), None);
	}
}
