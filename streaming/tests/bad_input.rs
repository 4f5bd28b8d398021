//! Bad input against a running server while two good viewers stream: garbage, truncated and
//! oversized frames, unknown message types, bad signatures and chunk hashes, a client that
//! sends nothing and one that reads nothing. Each is closed with a clear error (and logged);
//! the good viewers get every segment exactly once, with no gap and no transport change.

mod common;

use bytes::Bytes;
use common::*;
use dsp_streaming::{
	protocol::{encode_frame, publish_proof, ErrorCode, Message, Role, Start, PROTOCOL_VERSION},
	segment::Segment,
	viewer::{Transport, TransportPolicy},
};
use sp_core::Pair;
use std::{net::SocketAddr, time::Duration};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const STREAM: u64 = 9;
const COUNT: u64 = 60;
// 60 × 256 KiB = 15 MiB: far more than the kernel buffers of a client that never reads.
const LEN: usize = 256 * 1024;
fn last_error(msgs: &[Message]) -> Option<ErrorCode> {
	match msgs.last() {
		Some(Message::Error { code, .. }) => Some(*code),
		_ => None,
	}
}

async fn send_raw(addr: SocketAddr, bytes: &[u8], close_write: bool) -> Vec<Message> {
	let mut s = TcpStream::connect(addr).await.unwrap();
	s.write_all(bytes).await.unwrap();
	if close_write {
		s.shutdown().await.unwrap();
	}
	read_to_end(&mut s).await
}

fn hello(role: Role) -> Bytes {
	encode_frame(&Message::Hello { version: PROTOCOL_VERSION, role, genesis_hash: [0; 32] })
}

/// A publisher that sends `frames` (a possibly tampered segment) after a proper handshake
/// (`Hello`, the server's `Welcome`, `Publish` with the origin's proof for its challenge).
async fn publish_frames(addr: SocketAddr, frames: Vec<Bytes>) -> Vec<Message> {
	let mut s = TcpStream::connect(addr).await.unwrap();
	s.write_all(&hello(Role::Publisher)).await.unwrap();
	let mut dec = dsp_streaming::protocol::FrameDecoder::new(u32::MAX);
	let challenge = loop {
		let mut buf = [0u8; 1024];
		let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await.unwrap();
		assert!(n > 0, "server closed before welcome");
		dec.push(&buf[..n]);
		if let Some(Message::Welcome { challenge, .. }) = dec.next_message().unwrap() {
			break challenge;
		}
	};
	let proof = publish_proof(&origin(), [0; 32], challenge, STREAM);
	let mut bytes = encode_frame(&Message::Publish { stream: STREAM, proof }).to_vec();
	for f in frames {
		bytes.extend_from_slice(&f);
	}
	s.write_all(&bytes).await.unwrap();
	read_to_end(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_clients_are_closed_and_good_viewers_keep_streaming() {
	tokio::time::timeout(Duration::from_secs(180), async {
		init_logs();
		let mut config = serve_config();
		config.session.hello_timeout = Duration::from_millis(500);
		config.write_stall_timeout = Duration::from_secs(1);
		config.window.max_segments = 8;
		let server = server(config).await;
		let addr = server.tcp_addr.unwrap();

		// Two good viewers, one per transport.
		let good_tcp = tokio::spawn(watch_until_end(
			viewer_config(
				STREAM,
				server.tcp_addr,
				server.quic_addr,
				TransportPolicy::Only(Transport::Tcp),
			),
			|_, _| None,
		));
		let good_quic = tokio::spawn(watch_until_end(
			viewer_config(STREAM, server.tcp_addr, server.quic_addr, TransportPolicy::Auto),
			|_, _| None,
		));

		// A client that subscribes and then never reads.
		let mut never_reads = TcpStream::connect(addr).await.unwrap();
		let mut sub = hello(Role::Viewer).to_vec();
		sub.extend_from_slice(&encode_frame(&Message::Subscribe {
			stream: STREAM,
			start: Start::At(0),
		}));
		never_reads.write_all(&sub).await.unwrap();

		// A client that connects and sends nothing.
		let silent = tokio::spawn(async move {
			let mut s = TcpStream::connect(addr).await.unwrap();
			read_to_end(&mut s).await
		});

		// The three viewers are admitted before the stream starts: the TCP one and the one that
		// never reads on TCP, the `Auto` one on QUIC (where it plays throughout, as asserted at
		// the end). Each sends its `Subscribe` in the same write as its `Hello`, and the window
		// holds 8 segments: each gets segment 0.
		wait_until("the three viewers admitted", || {
			let s = server.stats().sessions;
			s.direct_tcp == 2 && s.direct_quic == 1
		})
		.await;
		let publisher = tokio::spawn(publish(
			vec![tcp(&server)],
			STREAM,
			COUNT,
			LEN,
			Duration::from_millis(30),
		));

		// Garbage: plain text announces an absurd frame length.
		let msgs = send_raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
		assert_eq!(last_error(&msgs), Some(ErrorCode::FrameTooLarge));

		// Oversized frame: a valid-looking prefix above max_frame_len.
		let mut big = (10u32 * 1024 * 1024).to_le_bytes().to_vec();
		big.extend_from_slice(&[0; 64]);
		let msgs = send_raw(addr, &big, false).await;
		assert_eq!(last_error(&msgs), Some(ErrorCode::FrameTooLarge));

		// Unknown message type.
		let msgs = send_raw(addr, &[3, 0, 0, 0, 99, 1, 2], false).await;
		assert_eq!(last_error(&msgs), Some(ErrorCode::UnknownMessage));

		// Malformed body of a known type (a Hello with an invalid role).
		let msgs = send_raw(addr, &[4, 0, 0, 0, 0, 1, 0, 7], false).await;
		assert_eq!(last_error(&msgs), Some(ErrorCode::Malformed));

		// Truncated: half a Hello, then the client closes its side.
		let h = hello(Role::Viewer);
		let msgs = send_raw(addr, &h[..h.len() / 2], true).await;
		assert_eq!(last_error(&msgs), Some(ErrorCode::Malformed));

		// A segment signed by the wrong key.
		let mallory = sp_core::sr25519::Pair::from_string("//Mallory", None).unwrap();
		let forged = Segment::build(&mallory, [0; 32], STREAM, 0, 1000, 2000, media(1, 1000), 512);
		let msgs = publish_frames(addr, forged.frames.clone()).await;
		assert_eq!(last_error(&msgs), Some(ErrorCode::BadSignature));

		// A properly signed header with a tampered chunk.
		let seg = segment(STREAM, 1000, 40_000);
		let mut chunk = seg.frames[1].to_vec();
		let last = chunk.len() - 1;
		chunk[last] ^= 0xff;
		let msgs = publish_frames(addr, vec![seg.frames[0].clone(), Bytes::from(chunk)]).await;
		assert_eq!(last_error(&msgs), Some(ErrorCode::BadChunk));

		// A QUIC client sending garbage on its stream.
		{
			let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
			let cfg = dsp_streaming::net::tls::client_config(
				dsp_streaming::net::tls::ServerVerification::Fingerprint(server.fingerprint),
				Duration::from_secs(10),
				Duration::from_secs(1),
			)
			.unwrap();
			let conn = endpoint
				.connect_with(cfg, server.quic_addr.unwrap(), dsp_streaming::net::tls::SERVER_NAME)
				.unwrap()
				.await
				.unwrap();
			let (mut send, mut recv) = conn.open_bi().await.unwrap();
			send.write_all(&[1, 0, 0, 0, 0xee]).await.unwrap();
			let msgs = read_to_end(&mut recv).await;
			assert_eq!(last_error(&msgs), Some(ErrorCode::UnknownMessage));
			endpoint.close(0u32.into(), b"");
		}

		let silent = silent.await.unwrap();
		assert_eq!(last_error(&silent), Some(ErrorCode::IdleTimeout));

		publisher.await.unwrap();
		let tcp_got = good_tcp.await.unwrap();
		let quic_got = good_quic.await.unwrap();
		tcp_got.assert_complete(COUNT, LEN);
		quic_got.assert_complete(COUNT, LEN);
		assert!(quic_got.switches.is_empty(), "{:?}", quic_got.switches);
		assert!(quic_got.segments.iter().all(|s| s.3 == Some(Transport::Quic)));

		// The client that never reads is closed (write stall or lag) without anyone reading it:
		// wait for the server to count it, then read what was buffered up to the close.
		let expected_errors = 10;
		wait_until("the server to close 10 sessions with an error", || {
			server.stats().closed_with_error >= expected_errors
		})
		.await;
		let msgs = read_to_end(&mut never_reads).await;
		let headers = msgs.iter().filter(|m| matches!(m, Message::Header(_))).count();
		assert!(
			(headers as u64) < COUNT,
			"the non-reading client was cut off ({headers} of {COUNT} segments buffered)"
		);
		assert_eq!(server.stats().closed_with_error, expected_errors);
		server.shutdown().await;
	})
	.await
	.unwrap();
}
