//! Memory pressure by registered origins (issue 12, item 4): each origin publishes to more
//! streams than it may hold, fills each window with large segments, then announces one more
//! segment of the largest size and sends half its chunks, and holds the session with pings;
//! a closed session comes back with a newer broadcast. Before the bounds one origin could make
//! a server hold 256 × 64 MiB of windows plus 4,096 × 16 MiB of partial segments; now the
//! server holds at most its stated worst case (1 GiB of windows + 256 MiB partial by default).

use super::{count_refusal, hold, Answer, AttackCounters, AttackTarget, RawConn};
use crate::{
	protocol::{encode_frame, publish_proof, Message, Role},
	segment::{Segment, DEFAULT_MAX_SEGMENT_LEN},
};
use bytes::Bytes;
use dsp_primitives::StreamId;
use std::{
	sync::{atomic::Ordering, Arc},
	time::Duration,
};
use tokio::sync::watch;

/// The attacking origins and their streams.
#[derive(Clone)]
pub struct MemoryAttack {
	/// Each origin's key and the streams registered to it.
	pub origins: Vec<(sp_core::sr25519::Pair, Vec<StreamId>)>,
	/// What each session sends.
	pub plan: MemoryPlan,
}

/// What one attacking publisher session sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
	/// Bytes of each full segment.
	pub segment_len: usize,
	/// Full segments per session (enough to fill a window).
	pub full_segments: u64,
	/// Bytes the last segment's header announces (the server reserves them).
	pub partial_len: usize,
	/// Chunks of it sent (never all).
	pub partial_chunks: usize,
	/// Chunk size.
	pub chunk_size: u32,
}

impl MemoryPlan {
	/// A plan that fills a window of `window_bytes` with segments of `segment_len` (one more
	/// than fits, so the window evicts), then leaves a `max_segment_len` segment half sent.
	pub fn new(window_bytes: usize, segment_len: usize, max_segment_len: usize) -> MemoryPlan {
		let segment_len = segment_len.clamp(1, max_segment_len);
		let chunk_size = crate::protocol::MAX_CHUNK_SIZE;
		let chunks = max_segment_len.div_ceil(chunk_size as usize);
		MemoryPlan {
			segment_len,
			full_segments: (window_bytes / segment_len) as u64 + 1,
			partial_len: max_segment_len,
			partial_chunks: chunks / 2,
			chunk_size,
		}
	}
}

impl Default for MemoryPlan {
	/// The server defaults: 64 MiB windows, 16 MiB segments at most; 8 MiB full segments.
	fn default() -> Self {
		MemoryPlan::new(64 << 20, 8 << 20, DEFAULT_MAX_SEGMENT_LEN as usize)
	}
}

/// Runs one publisher per stream of every origin until `stop`, from the attacker addresses in
/// turn.
pub async fn run(
	target: AttackTarget,
	attack: MemoryAttack,
	c: Arc<AttackCounters>,
	stop: watch::Receiver<bool>,
) {
	let slots: Vec<(Arc<sp_core::sr25519::Pair>, StreamId)> = attack
		.origins
		.iter()
		.flat_map(|(pair, streams)| {
			let pair = Arc::new(pair.clone());
			streams.iter().map(move |s| (pair.clone(), *s))
		})
		.collect();
	let (target, slots) = (Arc::new(target), Arc::new(slots));
	let plan = attack.plan;
	let data = Bytes::from(vec![0xa5; plan.segment_len.max(plan.partial_len)]);
	let retry = target.retry;
	super::run_slots(slots.len(), retry, stop, move |i| {
		let (target, slots, c, data) = (target.clone(), slots.clone(), c.clone(), data.clone());
		async move {
			let Some((pair, stream)) = slots.get(i).cloned() else { return };
			one(&target, i, &pair, stream, plan, data, &c).await
		}
	})
	.await;
}

/// One session: publish with a valid proof, the full segments, half of the partial one, then
/// pings until the server closes.
async fn one(
	target: &AttackTarget,
	i: usize,
	pair: &sp_core::sr25519::Pair,
	stream: StreamId,
	plan: MemoryPlan,
	data: Bytes,
	c: &Arc<AttackCounters>,
) {
	c.attempts.fetch_add(1, Ordering::Relaxed);
	let Ok(mut conn) = RawConn::connect(target.source(i), target.tcp).await else {
		return count_refusal(c, &Answer::Closed);
	};
	let genesis = target.genesis_hash;
	let challenge = match conn.hello(Role::Publisher, genesis, c).await {
		Answer::Welcome(challenge) => challenge,
		other => return count_refusal(c, &other),
	};
	let proof = publish_proof(pair, genesis, challenge, stream);
	if conn.send(&[encode_frame(&Message::Publish { stream, proof })], c).await.is_err() {
		return count_refusal(c, &Answer::Closed);
	}
	match Answer::of(conn.recv().await) {
		Answer::Other("expect") => {
			c.admitted.fetch_add(1, Ordering::Relaxed);
		}
		other => return count_refusal(c, &other),
	}
	// A newer broadcast than any before it, so the server replaces what it holds of the stream.
	let broadcast = crate::net::publish::new_broadcast_id();
	let _held = c.hold();
	// The writes go on while the server reads; what it answers is read by `hold` afterwards
	// (acks queue in the socket meanwhile, and an early `Error` ends the writes).
	let RawConn { r, mut w, dec } = conn;
	let reader = tokio::spawn({
		let c = c.clone();
		async move {
			let (mut r, mut dec, mut sink) = (r, dec, tokio::io::sink());
			let len = plan.segment_len as u64;
			hold(&mut r, &mut sink, &mut dec, Duration::from_secs(3600), len, &c).await
		}
	});
	let full = data.slice(..plan.segment_len);
	let mut ok = true;
	for seq in 0..plan.full_segments {
		if reader.is_finished() {
			ok = false;
			break;
		}
		let seg = build(pair, genesis, stream, broadcast, seq, full.clone(), plan.chunk_size);
		if crate::net::write_frames(&mut w, &seg.frames, super::ANSWER_TIMEOUT).await.is_err() {
			ok = false;
			break;
		}
		c.bytes_sent.fetch_add(seg.wire_len() as u64, Ordering::Relaxed);
	}
	if ok && !reader.is_finished() {
		let part = data.slice(..plan.partial_len);
		let seq = plan.full_segments;
		let seg = build(pair, genesis, stream, broadcast, seq, part, plan.chunk_size);
		let n = (1 + plan.partial_chunks).min(seg.frames.len());
		if crate::net::write_frames(&mut w, &seg.frames[..n], super::ANSWER_TIMEOUT).await.is_ok() {
			let sent: usize = seg.frames[..n].iter().map(|f| f.len()).sum();
			c.bytes_sent.fetch_add(sent as u64, Ordering::Relaxed);
		}
	}
	// Keep the session (and its half segment) alive with pings until the server closes it.
	let mut ping = tokio::time::interval(Duration::from_secs(10));
	ping.tick().await;
	loop {
		tokio::select! {
			_ = ping.tick() => {
				let f = encode_frame(&Message::Ping(0));
				if crate::net::write_frames(&mut w, &[f], super::ANSWER_TIMEOUT).await.is_err() {
					break;
				}
			},
			_ = wait_finished(&reader) => break,
		}
	}
	let answer = reader.await.unwrap_or(Answer::Closed);
	c.closed_by_server.fetch_add(1, Ordering::Relaxed);
	c.reason(&answer.reason());
}

/// Returns once `task` has finished.
async fn wait_finished<T>(task: &tokio::task::JoinHandle<T>) {
	while !task.is_finished() {
		tokio::time::sleep(Duration::from_millis(200)).await;
	}
}

/// Builds and signs a segment (hashing megabytes on the attacker's runtime: the load tool
/// runs attackers on their own threads).
fn build(
	pair: &sp_core::sr25519::Pair,
	genesis: dsp_primitives::Hash32,
	stream: StreamId,
	broadcast: u64,
	seq: u64,
	data: Bytes,
	chunk_size: u32,
) -> Segment {
	Segment::build(pair, genesis, stream, broadcast, seq, 2000, data, chunk_size)
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn the_default_plan_fills_a_window_and_leaves_a_segment_half_sent() {
		let p = MemoryPlan::default();
		assert_eq!(p.segment_len, 8 << 20);
		// 9 x 8 MiB > 64 MiB: the window must evict.
		assert_eq!(p.full_segments, 9);
		assert_eq!(p.partial_len, 16 << 20);
		let chunks = p.partial_len.div_ceil(p.chunk_size as usize);
		assert!(p.partial_chunks > 0 && p.partial_chunks < chunks);
		// A segment larger than the server takes is cut to its limit.
		assert_eq!(MemoryPlan::new(64, 1 << 30, 1 << 20).segment_len, 1 << 20);
	}
}
