//! Memory bounds against a running server: one origin cannot hold more streams than
//! `max_streams_per_origin`, and a publisher that announces a segment beyond the
//! partial-segment budget, or stores one beyond the live-window budget, is refused. Streams
//! already held keep working.

mod common;

use bytes::Bytes;
use common::*;
use dsp_streaming::protocol::{
	encode_frame, publish_proof, ErrorCode, FrameDecoder, Message, Role, CHALLENGE_LEN,
	PROTOCOL_VERSION,
};
use tokio::{
	io::{AsyncReadExt, AsyncWriteExt},
	net::TcpStream,
};

/// A raw client connection and its frame decoder.
struct Conn {
	stream: TcpStream,
	dec: FrameDecoder,
}

impl Conn {
	async fn publisher(addr: std::net::SocketAddr, stream: u64) -> Conn {
		let mut conn = Conn {
			stream: TcpStream::connect(addr).await.unwrap(),
			dec: FrameDecoder::new(u32::MAX),
		};
		let hello = Message::Hello {
			version: PROTOCOL_VERSION,
			role: Role::Publisher,
			genesis_hash: [0; 32],
		};
		conn.send(&encode_frame(&hello)).await;
		let challenge = conn.welcome_challenge().await;
		let proof = publish_proof(&origin(), [0; 32], challenge, stream);
		conn.send(&encode_frame(&Message::Publish { stream, proof })).await;
		conn
	}

	/// Reads up to the server's `Welcome` and returns its challenge (what `Publish` signs).
	async fn welcome_challenge(&mut self) -> [u8; CHALLENGE_LEN] {
		let mut buf = vec![0u8; 64 * 1024];
		loop {
			if let Some(Message::Welcome { challenge, .. }) = self.dec.next_message().unwrap() {
				return challenge;
			}
			let n = tokio::time::timeout(READ_BOUND, self.stream.read(&mut buf))
				.await
				.expect("the server answers")
				.unwrap();
			assert!(n > 0, "closed before Welcome");
			self.dec.push(&buf[..n]);
		}
	}

	async fn send(&mut self, frame: &Bytes) {
		self.stream.write_all(frame).await.unwrap();
	}

	/// The next message other than `Welcome`; `None` once the server closed.
	async fn next(&mut self) -> Option<Message> {
		let mut buf = vec![0u8; 64 * 1024];
		loop {
			while let Some(m) = self.dec.next_message().unwrap() {
				if !matches!(m, Message::Welcome { .. }) {
					return Some(m);
				}
			}
			let n = tokio::time::timeout(READ_BOUND, self.stream.read(&mut buf))
				.await
				.expect("the server answers")
				.unwrap_or(0);
			if n == 0 {
				return None;
			}
			self.dec.push(&buf[..n]);
		}
	}
}

/// `m` is the `OverBudget` error naming `bound`.
fn assert_over_budget(m: Option<Message>, bound: &str) {
	assert!(
		matches!(&m, Some(Message::Error { code: ErrorCode::OverBudget, reason }) if reason.contains(bound)),
		"{m:?}"
	);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_origin_cannot_hold_more_than_its_streams() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		// All publishers come from one loopback address: let it hold the streams without data
		// this test needs, so that the bound under test is the origin's.
		config.per_address.max_waiting_streams = 16;
		let server = server(config).await;
		let addr = server.tcp_addr.unwrap();
		let mut held = Vec::new();
		for stream in 0..8 {
			let mut c = Conn::publisher(addr, stream).await;
			let m = c.next().await;
			assert!(matches!(m, Some(Message::Expect { .. })), "stream {stream}: {m:?}");
			held.push(c);
		}
		// One more stream of the same origin: refused, and closed.
		let mut ninth = Conn::publisher(addr, 8).await;
		let m = ninth.next().await;
		assert_over_budget(m, "max_streams_per_origin");
		assert!(ninth.next().await.is_none(), "closed after the error");
		// The streams already held keep working.
		for f in &segment(0, 0, 1000).frames {
			held[0].send(f).await;
		}
		let m = held[0].next().await;
		assert!(matches!(m, Some(Message::Ack { stream: 0, sequence: 0 })), "{m:?}");
		assert_eq!(server.stats().refused_over_budget, 1);
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_beyond_the_partial_budget_is_refused_and_others_go_on() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		config.memory.max_partial_bytes = 100_000;
		let server = server(config).await;
		let addr = server.tcp_addr.unwrap();
		// A publisher in the middle of a 60 000-byte segment holds that much of the budget.
		let mut honest = Conn::publisher(addr, 1).await;
		assert!(matches!(honest.next().await, Some(Message::Expect { .. })));
		let first = segment(1, 0, 60_000);
		honest.send(&first.frames[0]).await;
		wait_until("the header is reserved", || server.stats().partial_bytes == 60_000).await;
		// Another announces 60 000 bytes more: refused at its header, before any chunk.
		let mut greedy = Conn::publisher(addr, 2).await;
		assert!(matches!(greedy.next().await, Some(Message::Expect { .. })));
		greedy.send(&segment(2, 0, 60_000).frames[0]).await;
		let m = greedy.next().await;
		assert_over_budget(m, "max_partial_bytes");
		assert!(greedy.next().await.is_none(), "closed after the error");
		// The honest publisher completes its segment and goes on; its bytes are given back.
		for f in &first.frames[1..] {
			honest.send(f).await;
		}
		assert!(matches!(honest.next().await, Some(Message::Ack { stream: 1, sequence: 0 })));
		assert_eq!(server.stats().partial_bytes, 0);
		for f in &segment(1, 1, 90_000).frames {
			honest.send(f).await;
		}
		assert!(matches!(honest.next().await, Some(Message::Ack { stream: 1, sequence: 1 })));
		// A publisher that leaves mid-segment gives its reservation back.
		let mut leaver = Conn::publisher(addr, 3).await;
		assert!(matches!(leaver.next().await, Some(Message::Expect { .. })));
		leaver.send(&segment(3, 0, 80_000).frames[0]).await;
		wait_until("the header is reserved", || server.stats().partial_bytes == 80_000).await;
		drop(leaver);
		wait_until("the reservation is released", || server.stats().partial_bytes == 0).await;
		assert_eq!(server.stats().refused_over_budget, 1);
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_share_one_budget_and_a_new_stream_cannot_take_it() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		config.memory.max_window_bytes = 100_000;
		let server = server(config).await;
		let addr = server.tcp_addr.unwrap();
		// Stream 1 fills most of the budget; its window gives up its oldest segments for newer.
		let mut first = Conn::publisher(addr, 1).await;
		assert!(matches!(first.next().await, Some(Message::Expect { .. })));
		for seq in 0..5 {
			for f in &segment(1, seq, 30_000).frames {
				first.send(f).await;
			}
			let m = first.next().await;
			assert!(matches!(m, Some(Message::Ack { sequence, .. }) if sequence == seq), "{m:?}");
		}
		let held = server.stats().window_bytes;
		assert_eq!(held, 90_000, "three segments of stream 1 fit");
		// Stream 2's segment does not fit what is left, and its own window is empty: refused
		// at its header, before it sends (and is acked for) the chunks.
		let mut second = Conn::publisher(addr, 2).await;
		assert!(matches!(second.next().await, Some(Message::Expect { .. })));
		second.send(&segment(2, 0, 30_000).frames[0]).await;
		let m = second.next().await;
		assert_over_budget(m, "max_window_bytes");
		// Stream 1 goes on.
		for f in &segment(1, 5, 30_000).frames {
			first.send(f).await;
		}
		assert!(matches!(first.next().await, Some(Message::Ack { sequence: 5, .. })));
		assert_eq!(server.stats().window_bytes, 90_000);
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}
