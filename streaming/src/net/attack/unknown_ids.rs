//! Unknown stream ids (issue 12, item 6): sessions from every attacker address name stream ids
//! nobody registered, viewers with `Subscribe` and publishers with `Publish`, as fast as the
//! server answers. In a node each unknown id once cost a chain read inside the session task;
//! what is measured here is that the server refuses them at once and holds nothing for them.

use super::{count_refusal, Answer, AttackCounters, AttackTarget, RawConn};
use crate::protocol::{encode_frame, Message, Role, Start};
use dsp_primitives::{Signature, StreamId};
use std::sync::{atomic::Ordering, Arc};
use tokio::sync::watch;

/// Attempts in flight per attacker address: the server's default handshakes-in-flight limit.
pub const SLOTS_PER_ADDRESS: usize = 8;

/// The first id the attacker names: far above anything `dsp load` registers.
pub const FIRST_ID: StreamId = 1 << 40;

/// The request attempt `n` sends: a fresh unknown id each time, as a viewer (even `n`) or a
/// publisher (odd `n`, with a junk proof: the id is refused before the proof is looked at).
pub fn request(n: u64) -> (Role, Message) {
	let stream = FIRST_ID + n;
	if n % 2 == 0 {
		(Role::Viewer, Message::Subscribe { stream, start: Start::Live { back: 0 } })
	} else {
		let proof = Signature::from_raw([0; 64]);
		(Role::Publisher, Message::Publish { stream, proof })
	}
}

/// Floods until `stop` from every address of `target.sources`.
pub async fn run(target: AttackTarget, c: Arc<AttackCounters>, stop: watch::Receiver<bool>) {
	let slots = SLOTS_PER_ADDRESS * target.sources.len().max(1);
	let target = Arc::new(target);
	let retry = target.retry;
	super::run_slots(slots, retry, stop, move |i| {
		let (target, c) = (target.clone(), c.clone());
		async move {
			let n = c.attempts.fetch_add(1, Ordering::Relaxed);
			let Ok(mut conn) = RawConn::connect(target.source(i), target.tcp).await else {
				return count_refusal(&c, &Answer::Closed);
			};
			let (role, m) = request(n);
			match conn.hello(role, target.genesis_hash, &c).await {
				Answer::Welcome(_) => {}
				other => return count_refusal(&c, &other),
			}
			if conn.send(&[encode_frame(&m)], &c).await.is_err() {
				return count_refusal(&c, &Answer::Closed);
			}
			match Answer::of(conn.recv().await) {
				// Anything but a refusal (a `Expect`, a segment) means the id was taken.
				a @ (Answer::Refused(_) | Answer::Closed) => count_refusal(&c, &a),
				_ => {
					c.admitted.fetch_add(1, Ordering::Relaxed);
				}
			}
		}
	})
	.await;
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn ids_are_fresh_and_roles_alternate() {
		let (r0, m0) = request(0);
		let (r1, m1) = request(1);
		assert_eq!(r0, Role::Viewer);
		assert_eq!(r1, Role::Publisher);
		assert!(matches!(m0, Message::Subscribe { stream, .. } if stream == FIRST_ID));
		assert!(matches!(m1, Message::Publish { stream, .. } if stream == FIRST_ID + 1));
	}
}
