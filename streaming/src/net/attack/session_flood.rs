//! The session flood (issue 12, item 2): one address opens [`AttackTarget::sessions`]
//! sessions (4,096 in the benchmark), each `Hello` then a `Ping` every 10 s and nothing else,
//! half as viewers and half as publishers (a publisher's `Hello` once escaped admission). A slot
//! whose session is refused or closed tries again after [`AttackTarget::retry`]. Before the
//! fixes every viewer got `Full` while these sessions lived; now the address holds at most its
//! per-address share and each session at most the setup timeout.

use super::{count_refusal, hold, Answer, AttackCounters, AttackTarget, RawConn};
use crate::protocol::Role;
use std::{
	sync::{atomic::Ordering, Arc},
	time::Duration,
};
use tokio::sync::watch;

/// How often a flooding session pings: often enough for the idle timeout (30 s), as the issue's
/// attacker did.
pub const PING_EVERY: Duration = Duration::from_secs(10);

/// The role of flooding slot `i`: viewers and publishers alternate.
pub fn role_of(i: usize) -> Role {
	if i % 2 == 0 {
		Role::Viewer
	} else {
		Role::Publisher
	}
}

/// Runs the flood until `stop`, all sessions from `target.sources[0]`.
pub async fn run(target: AttackTarget, c: Arc<AttackCounters>, stop: watch::Receiver<bool>) {
	let target = Arc::new(target);
	let (n, retry) = (target.sessions, target.retry);
	super::run_slots(n, retry, stop, move |i| {
		let (target, c) = (target.clone(), c.clone());
		async move { one(&target, i, &c).await }
	})
	.await;
}

/// One session of slot `i`: hello, then ping until the server closes it.
async fn one(target: &AttackTarget, i: usize, c: &Arc<AttackCounters>) {
	c.attempts.fetch_add(1, Ordering::Relaxed);
	let Ok(mut conn) = RawConn::connect(target.source(0), target.tcp).await else {
		count_refusal(c, &Answer::Closed);
		return;
	};
	match conn.hello(role_of(i), target.genesis_hash, c).await {
		Answer::Welcome(_) => {
			c.admitted.fetch_add(1, Ordering::Relaxed);
			let _held = c.hold();
			let why = hold(&mut conn.r, &mut conn.w, &mut conn.dec, PING_EVERY, 0, c).await;
			c.closed_by_server.fetch_add(1, Ordering::Relaxed);
			c.reason(&why.reason());
		}
		other => count_refusal(c, &other),
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn viewers_and_publishers_alternate() {
		assert_eq!(role_of(0), Role::Viewer);
		assert_eq!(role_of(1), Role::Publisher);
		assert_eq!((0..4096).filter(|i| role_of(*i) == Role::Publisher).count(), 2048);
	}
}
