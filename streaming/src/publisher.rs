//! Publisher side, sans-IO: the queue of segments one streamer endpoint has not yet
//! acknowledged, so that a reconnect resends exactly what may have been lost.
//!
//! # Driving a [`PublishQueue`]
//!
//! Per server connection: after the server's `Welcome`, our `Publish` and the server's
//! `Expect`, call [`PublishQueue::handle_connected`]; send what [`PublishQueue::poll_transmit`]
//! returns; feed `Ack` and `End` from the server to [`PublishQueue::handle_ack`] and
//! [`PublishQueue::handle_end_confirmed`]; when the server closes with an error, give its code
//! to [`PublishQueue::handle_refused`]; on any failure call
//! [`PublishQueue::handle_disconnected`] and reconnect. Log what [`PublishQueue::poll_refused`]
//! returns. New segments go in with [`PublishQueue::push`] at any time, connected or not.
//!
//! A segment the server refuses as malformed (`BadHeader`, `FrameTooLarge`) would be refused
//! again after every reconnect, so it is dropped instead: the server processes a connection's
//! segments in order and sends every ack before its `Error`, so the refused segment is the
//! oldest one not acknowledged.

use crate::{
	protocol::{encode_frame, ErrorCode, Message},
	segment::Segment,
};
use bytes::Bytes;
use dsp_primitives::{Signed, StreamEnd, StreamId};
use std::{collections::VecDeque, sync::Arc};

/// Limits of a [`PublishQueue`].
#[derive(Clone, Debug)]
pub struct QueueConfig {
	/// Most unacknowledged segments kept for resending. Beyond it the oldest is dropped (and
	/// counted): a live stream cannot wait for a server forever. Default 150 (5 min of 2 s
	/// segments); worst-case memory is this many segments.
	pub max_backlog: usize,
	/// Most segments sent and not yet acknowledged on one connection. Default 8.
	pub max_inflight: usize,
}

impl Default for QueueConfig {
	fn default() -> Self {
		Self { max_backlog: 150, max_inflight: 8 }
	}
}

/// Unacknowledged segments for one server.
#[derive(Debug)]
pub struct PublishQueue {
	stream: StreamId,
	config: QueueConfig,
	unacked: VecDeque<Arc<Segment>>,
	/// How many of `unacked` were sent on the current connection.
	sent: usize,
	connected: bool,
	end: Option<Signed<StreamEnd>>,
	end_sent: bool,
	end_confirmed: bool,
	dropped: u64,
	acked: u64,
	/// Largest frame the connected server accepts (from its `Welcome`).
	max_frame_len: u32,
	refused: VecDeque<Refused>,
	refused_count: u64,
}

/// A segment dropped because the server cannot take it; it would be refused after every
/// reconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
	/// Its sequence.
	pub sequence: u64,
	/// Why.
	pub reason: String,
}

impl PublishQueue {
	/// An empty queue for `stream`.
	pub fn new(stream: StreamId, config: QueueConfig) -> Self {
		Self {
			stream,
			config,
			unacked: VecDeque::new(),
			sent: 0,
			connected: false,
			end: None,
			end_sent: false,
			end_confirmed: false,
			dropped: 0,
			acked: 0,
			max_frame_len: u32::MAX,
			refused: VecDeque::new(),
			refused_count: 0,
		}
	}

	/// Adds a new segment.
	pub fn push(&mut self, segment: Arc<Segment>) {
		self.unacked.push_back(segment);
		while self.unacked.len() > self.config.max_backlog {
			self.unacked.pop_front();
			self.sent = self.sent.saturating_sub(1);
			self.dropped += 1;
		}
	}

	/// No segment with a sequence of `end.next_sequence` or more will follow; `end` is signed
	/// by the origin.
	pub fn finish(&mut self, end: Signed<StreamEnd>) {
		debug_assert_eq!(end.payload.stream, self.stream, "end of another stream");
		self.end = Some(end);
	}

	/// A connection is ready: the server accepts frames up to `max_frame_len` (its `Welcome`)
	/// and, holding `broadcast`, stores from `next_sequence` on (its `Expect`). If that is this
	/// queue's broadcast, segments below `next_sequence` are already held there and count as
	/// acknowledged; everything else unacknowledged goes again.
	pub fn handle_connected(
		&mut self,
		max_frame_len: u32,
		broadcast: Option<u64>,
		next_sequence: u64,
	) {
		self.connected = true;
		self.sent = 0;
		self.end_sent = false;
		self.max_frame_len = max_frame_len;
		if next_sequence > 0 && broadcast.is_some() && broadcast == self.broadcast() {
			self.handle_ack(next_sequence - 1);
		}
	}

	/// The broadcast of what waits to be sent (one publisher publishes one broadcast), if
	/// anything does.
	pub fn broadcast(&self) -> Option<u64> {
		match self.unacked.front() {
			Some(seg) => Some(seg.broadcast()),
			None => self.end.as_ref().map(|e| e.payload.broadcast),
		}
	}

	/// The server closed the connection with `code`. A malformed segment (`BadHeader`,
	/// `FrameTooLarge`) is the oldest unacknowledged one sent on this connection: it is dropped
	/// (see [`Self::poll_refused`]) instead of being resent forever. Other codes are about the
	/// connection or the key, not one segment, and drop nothing.
	pub fn handle_refused(&mut self, code: ErrorCode, reason: &str) {
		if !matches!(code, ErrorCode::BadHeader | ErrorCode::FrameTooLarge) || self.sent == 0 {
			return;
		}
		if let Some(seg) = self.unacked.pop_front() {
			self.sent -= 1;
			self.refuse(seg.sequence(), format!("server refused it: {code:?}: {reason}"));
		}
	}

	fn refuse(&mut self, sequence: u64, reason: String) {
		self.refused_count += 1;
		self.refused.push_back(Refused { sequence, reason });
	}

	/// A segment dropped as refused, for the log.
	pub fn poll_refused(&mut self) -> Option<Refused> {
		self.refused.pop_front()
	}

	/// Segments dropped as refused.
	pub fn refused(&self) -> u64 {
		self.refused_count
	}

	/// The connection is gone.
	pub fn handle_disconnected(&mut self) {
		self.connected = false;
		self.sent = 0;
		self.end_sent = false;
	}

	/// The server stored (or already held) `sequence`: it and everything before it are done.
	pub fn handle_ack(&mut self, sequence: u64) {
		while self.unacked.front().is_some_and(|s| s.sequence() <= sequence) {
			self.unacked.pop_front();
			self.sent = self.sent.saturating_sub(1);
			self.acked += 1;
		}
	}

	/// The server echoed `End`.
	pub fn handle_end_confirmed(&mut self) {
		if self.end_sent {
			self.end_confirmed = true;
		}
	}

	/// Frames to send next (one segment, or the `End`), if any may be sent now.
	pub fn poll_transmit(&mut self) -> Option<Vec<Bytes>> {
		if !self.connected {
			return None;
		}
		while self.sent < self.unacked.len() && self.sent < self.config.max_inflight {
			let seg = &self.unacked[self.sent];
			let largest = seg.frames.iter().map(|f| f.len() - crate::protocol::LENGTH_PREFIX).max();
			if largest.is_some_and(|l| l > self.max_frame_len as usize) {
				// The server would close with FrameTooLarge: do not send it at all.
				let seg = self.unacked.remove(self.sent).expect("index checked; qed");
				let reason =
					format!("a frame exceeds the server's max_frame_len {}", self.max_frame_len);
				self.refuse(seg.sequence(), reason);
				continue;
			}
			self.sent += 1;
			return Some(seg.frames.clone());
		}
		if let Some(end) = &self.end {
			if !self.end_sent && self.unacked.is_empty() {
				self.end_sent = true;
				return Some(vec![encode_frame(&Message::End(end.clone()))]);
			}
		}
		None
	}

	/// Whether everything was acknowledged and the end confirmed.
	pub fn is_done(&self) -> bool {
		self.end_confirmed && self.unacked.is_empty()
	}

	/// Segments dropped from a full backlog.
	pub fn dropped(&self) -> u64 {
		self.dropped
	}

	/// Segments acknowledged.
	pub fn acked(&self) -> u64 {
		self.acked
	}

	/// Segments waiting for acknowledgement.
	pub fn backlog(&self) -> usize {
		self.unacked.len()
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use sp_core::Pair;

	fn seg(seq: u64) -> Arc<Segment> {
		let pair = sp_core::sr25519::Pair::from_string("//Origin", None).unwrap();
		Arc::new(Segment::build(&pair, [0; 32], 1, 0, seq, 2000, Bytes::from(vec![1u8; 10]), 1024))
	}

	fn seqs(frames: Vec<Bytes>) -> u64 {
		let msg = crate::protocol::decode_body(frames[0].slice(4..)).unwrap();
		match msg {
			Message::Header(h) => h.payload.sequence,
			Message::End(end) => 1000 + end.payload.next_sequence,
			_ => panic!(),
		}
	}

	#[test]
	fn reconnect_resends_exactly_the_unacknowledged_segments() {
		let mut q = PublishQueue::new(1, QueueConfig::default());
		for i in 0..3 {
			q.push(seg(i));
		}
		assert!(q.poll_transmit().is_none());
		q.handle_connected(u32::MAX, Some(0), 0);
		let sent: Vec<u64> = std::iter::from_fn(|| q.poll_transmit()).map(seqs).collect();
		assert_eq!(sent, vec![0, 1, 2]);
		q.handle_ack(0);
		q.handle_disconnected();
		q.push(seg(3));
		q.handle_connected(u32::MAX, Some(0), 0);
		let sent: Vec<u64> = std::iter::from_fn(|| q.poll_transmit()).map(seqs).collect();
		assert_eq!(sent, vec![1, 2, 3]);
		let pair = sp_core::sr25519::Pair::from_string("//Origin", None).unwrap();
		let end = StreamEnd { genesis_hash: [0; 32], stream: 1, broadcast: 0, next_sequence: 4 };
		q.finish(Signed::sign(end, &pair));
		assert!(q.poll_transmit().is_none(), "end waits for every ack");
		q.handle_ack(3);
		assert_eq!(q.poll_transmit().map(seqs), Some(1004));
		assert!(!q.is_done());
		q.handle_end_confirmed();
		assert!(q.is_done());
		assert_eq!(q.acked(), 4);
	}

	#[test]
	fn backlog_and_inflight_are_bounded() {
		let mut q = PublishQueue::new(1, QueueConfig { max_backlog: 3, max_inflight: 2 });
		for i in 0..5 {
			q.push(seg(i));
		}
		assert_eq!((q.backlog(), q.dropped()), (3, 2));
		q.handle_connected(u32::MAX, Some(0), 0);
		let sent: Vec<u64> = std::iter::from_fn(|| q.poll_transmit()).map(seqs).collect();
		assert_eq!(sent, vec![2, 3]);
		q.handle_ack(2);
		assert_eq!(q.poll_transmit().map(seqs), Some(4));
	}

	#[test]
	fn a_segment_refused_as_malformed_is_dropped_not_resent() {
		let mut q = PublishQueue::new(1, QueueConfig::default());
		for i in 0..4 {
			q.push(seg(i));
		}
		q.handle_connected(u32::MAX, Some(0), 0);
		let sent: Vec<u64> = std::iter::from_fn(|| q.poll_transmit()).map(seqs).collect();
		assert_eq!(sent, vec![0, 1, 2, 3]);
		// The server stored 0, then refused 1.
		q.handle_ack(0);
		q.handle_refused(ErrorCode::BadHeader, "segment 1: bad header: duration");
		q.handle_disconnected();
		assert_eq!(q.poll_refused().map(|r| r.sequence), Some(1));
		q.handle_connected(u32::MAX, Some(0), 1);
		let sent: Vec<u64> = std::iter::from_fn(|| q.poll_transmit()).map(seqs).collect();
		assert_eq!(sent, vec![2, 3], "the refused segment was sent again");
		// A connection-level error drops nothing.
		q.handle_refused(ErrorCode::IdleTimeout, "idle");
		q.handle_refused(ErrorCode::BadSignature, "wrong key");
		assert_eq!((q.backlog(), q.refused()), (2, 1));
	}

	#[test]
	fn a_segment_with_a_frame_above_the_servers_limit_is_not_sent() {
		let pair = sp_core::sr25519::Pair::from_string("//Origin", None).unwrap();
		let mut q = PublishQueue::new(1, QueueConfig::default());
		q.push(seg(0));
		q.push(Arc::new(Segment::build(
			&pair,
			[0; 32],
			1,
			0,
			1,
			2000,
			Bytes::from(vec![1u8; 5000]),
			4096,
		)));
		q.push(seg(2));
		q.handle_connected(1000, Some(0), 0);
		let sent: Vec<u64> = std::iter::from_fn(|| q.poll_transmit()).map(seqs).collect();
		assert_eq!(sent, vec![0, 2]);
		assert_eq!(q.poll_refused().map(|r| r.sequence), Some(1));
	}

	#[test]
	fn a_reconnect_skips_what_the_server_already_holds() {
		let mut q = PublishQueue::new(1, QueueConfig::default());
		for i in 0..5 {
			q.push(seg(i));
		}
		// The connection broke before the acks of 0..=2 arrived; the server says it has them.
		q.handle_connected(u32::MAX, Some(0), 3);
		let sent: Vec<u64> = std::iter::from_fn(|| q.poll_transmit()).map(seqs).collect();
		assert_eq!(sent, vec![3, 4]);
		assert_eq!(q.acked(), 3);
	}
}
