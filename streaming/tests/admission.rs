//! Nothing allocated for the unauthenticated (issue 12, items 2, 3 and 7), against a running
//! server on loopback: one address cannot hold more than its share of sessions (a client
//! binds 127.0.0.2 to be another address), sessions that take no data and publish nothing are
//! closed whatever they ping, anonymous `Publish`es hold no stream slot, and a QUIC client
//! takes a connection permit only once it answered the server's Retry.

mod common;

use common::*;
use dsp_primitives::{PublicKey, StreamId};
use dsp_streaming::{
	net::{attack::slow_handshake::one_way_relay, tls},
	protocol::{
		encode_frame, publish_proof, ErrorCode, FrameDecoder, Message, Role, Start, CHALLENGE_LEN,
		PROTOCOL_VERSION,
	},
	server::{OriginKeys, StreamDirectory},
};
use sp_core::Pair;
use std::{
	net::SocketAddr,
	sync::{
		atomic::{AtomicU64, Ordering},
		Arc,
	},
	time::Duration,
};
use tokio::{
	io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
	net::{TcpSocket, TcpStream},
};

/// How long a test waits for one answer of the server.
const ANSWER_BOUND: Duration = Duration::from_secs(20);

/// A TCP connection to `addr` from the loopback address `src` (127.0.0.x: another client
/// address as far as the server can tell).
async fn connect_from(src: [u8; 4], addr: SocketAddr) -> TcpStream {
	let sock = TcpSocket::new_v4().unwrap();
	sock.bind(SocketAddr::from((src, 0))).unwrap();
	sock.connect(addr).await.unwrap()
}

fn hello(role: Role) -> bytes::Bytes {
	encode_frame(&Message::Hello { version: PROTOCOL_VERSION, role, genesis_hash: [0; 32] })
}

/// The next message, `None` once the server closed; fails the test after [`ANSWER_BOUND`].
async fn next<R: AsyncRead + Unpin>(r: &mut R, dec: &mut FrameDecoder) -> Option<Message> {
	let mut buf = [0u8; 4096];
	loop {
		if let Some(m) = dec.next_message().expect("server sends valid frames") {
			return Some(m);
		}
		let n = tokio::time::timeout(ANSWER_BOUND, r.read(&mut buf))
			.await
			.expect("the server answers")
			.unwrap_or(0);
		if n == 0 {
			return None;
		}
		dec.push(&buf[..n]);
	}
}

/// A viewer from `src` that says hello; its connection and the server's answer.
async fn viewer_hello(src: [u8; 4], addr: SocketAddr) -> (TcpStream, Option<Message>) {
	let mut s = connect_from(src, addr).await;
	s.write_all(&hello(Role::Viewer)).await.unwrap();
	let mut dec = FrameDecoder::new(u32::MAX);
	let m = next(&mut s, &mut dec).await;
	(s, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_refused_beyond_its_sessions_and_another_is_admitted() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		// Room for 48 connections in all: without a per-address limit, one address takes it.
		config.max_connections = 48;
		let server = server(config).await;
		let addr = server.tcp_addr.unwrap();
		let mut held = Vec::new();
		let (mut welcomed, mut refused) = (0, 0);
		for _ in 0..48 {
			let (s, m) = viewer_hello([127, 0, 0, 1], addr).await;
			match m {
				Some(Message::Welcome { .. }) => welcomed += 1,
				Some(Message::Error { code: ErrorCode::Full, .. }) => refused += 1,
				other => panic!("unexpected answer {other:?}"),
			}
			held.push(s);
		}
		let (_other, m) = viewer_hello([127, 0, 0, 2], addr).await;
		assert!(
			matches!(m, Some(Message::Welcome { .. })),
			"a viewer from another address is admitted: {m:?}"
		);
		assert_eq!(welcomed, 32, "the default per-address limit");
		assert_eq!(refused, 16);
		assert_eq!(server.stats().refused_per_address, 16);
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}

/// Says hello as `role`, takes `Welcome`, then only pings (every 100 ms) and reads; returns
/// the error the server closed with.
async fn ping_only(addr: SocketAddr, role: Role) -> Option<(ErrorCode, String)> {
	let s = connect_from([127, 0, 0, 1], addr).await;
	let (mut r, mut w) = s.into_split();
	w.write_all(&hello(role)).await.unwrap();
	let mut dec = FrameDecoder::new(u32::MAX);
	assert!(matches!(next(&mut r, &mut dec).await, Some(Message::Welcome { .. })));
	let pinger = tokio::spawn(async move {
		for n in 0.. {
			if w.write_all(&encode_frame(&Message::Ping(n))).await.is_err() {
				return;
			}
			tokio::time::sleep(Duration::from_millis(100)).await;
		}
	});
	let mut error = None;
	loop {
		match next(&mut r, &mut dec).await {
			Some(Message::Pong(_)) => {}
			Some(Message::Error { code, reason }) => error = Some((code, reason)),
			Some(other) => panic!("unexpected {other:?}"),
			None => break,
		}
	}
	pinger.abort();
	error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_only_ping_are_closed() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		config.session.setup_timeout = Duration::from_millis(500);
		config.session.first_segment_timeout = Duration::from_millis(500);
		let server = server(config).await;
		let addr = server.tcp_addr.unwrap();
		for role in [Role::Viewer, Role::Publisher] {
			let err = ping_only(addr, role).await;
			assert!(
				matches!(err, Some((ErrorCode::IdleTimeout, _))),
				"{role:?} that only pings: {err:?}"
			);
		}
		// The origin's publisher that publishes and then only pings: closed too, and the slot
		// it opened is freed with it (not held for the stream idle timeout).
		let (mut s, mut dec, _) =
			publisher_session(addr, 5, |c| publish_proof(&origin(), [0; 32], c, 5)).await;
		assert!(matches!(next(&mut s, &mut dec).await, Some(Message::Expect { .. })));
		assert_eq!(server.stats().streams_held, 1);
		loop {
			let _ = s.write_all(&encode_frame(&Message::Ping(0))).await;
			match next(&mut s, &mut dec).await {
				Some(Message::Pong(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
				Some(Message::Error { code, .. }) => {
					assert_eq!(code, ErrorCode::IdleTimeout);
					break;
				}
				other => panic!("unexpected {other:?}"),
			}
		}
		wait_until("the slot without data is freed", || server.stats().streams_held == 0).await;
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_publishes_for_fresh_ids_do_not_lock_out_a_real_publisher() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let server = server(serve_config()).await;
		let addr = server.tcp_addr.unwrap();
		// As many as the table lets wait for data (its default), each for a fresh id, each
		// from a client that leaves at once.
		// Each signs the session's real challenge, with a key of its own.
		let eve = sp_core::sr25519::Pair::from_string("//Eve", None).unwrap();
		for i in 0..32u64 {
			let stream = 1000 + i;
			let (mut s, mut dec, _) =
				publisher_session(addr, stream, |c| publish_proof(&eve, [0; 32], c, stream)).await;
			let m = next(&mut s, &mut dec).await;
			assert!(
				matches!(m, Some(Message::Error { code: ErrorCode::BadSignature, .. })),
				"{m:?}"
			);
		}
		assert_eq!(server.stats().streams_held, 0, "nothing held for them");
		// The origin publishes a new stream: it gets a slot, every segment is stored.
		publish(vec![tcp(&server)], 7, 3, 1000, Duration::from_millis(10)).await;
		assert_eq!(server.stats().segments_stored, 3);
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}

/// A publisher from 127.0.0.1 that says hello, takes `Welcome` and sends `Publish` for
/// `stream` with `proof(challenge)`; its connection, decoder and the challenge.
async fn publisher_session(
	addr: SocketAddr,
	stream: u64,
	proof: impl FnOnce([u8; CHALLENGE_LEN]) -> dsp_primitives::Signature,
) -> (TcpStream, FrameDecoder, [u8; CHALLENGE_LEN]) {
	let mut s = connect_from([127, 0, 0, 1], addr).await;
	s.write_all(&hello(Role::Publisher)).await.unwrap();
	let mut dec = FrameDecoder::new(u32::MAX);
	let Some(Message::Welcome { challenge, .. }) = next(&mut s, &mut dec).await else {
		panic!("no welcome")
	};
	let publish = Message::Publish { stream, proof: proof(challenge) };
	s.write_all(&encode_frame(&publish)).await.unwrap();
	(s, dec, challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_proof_replayed_on_another_session_is_refused() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let server = server(serve_config()).await;
		let addr = server.tcp_addr.unwrap();
		// The origin's own session, whose `Publish` an attacker captured.
		let mut captured = None;
		let (mut real, mut dec, _) = publisher_session(addr, 3, |c| {
			let proof = publish_proof(&origin(), [0; 32], c, 3);
			captured = Some(proof);
			proof
		})
		.await;
		assert!(matches!(next(&mut real, &mut dec).await, Some(Message::Expect { .. })));
		let captured = captured.unwrap();
		// Replayed on a session of its own, for the same stream and for a fresh one.
		for stream in [3, 4] {
			let (mut s, mut dec, _) = publisher_session(addr, stream, |_| captured).await;
			let m = next(&mut s, &mut dec).await;
			assert!(
				matches!(m, Some(Message::Error { code: ErrorCode::BadSignature, .. })),
				"replayed proof for stream {stream}: {m:?}"
			);
			assert_eq!(next(&mut s, &mut dec).await, None, "and closed");
		}
		drop(real);
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_clients_that_cannot_receive_hold_no_permit() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		config.max_connections = 2;
		let server = server(config).await;
		let quic_addr = server.quic_addr.unwrap();
		let client_cfg = tls::client_config(
			tls::ServerVerification::InsecureSkip,
			Duration::from_secs(10),
			Duration::from_secs(1),
		)
		.unwrap();
		// Two clients whose Initials reach the server and whose answers never come back.
		let mut relays = Vec::new();
		let mut attempts = Vec::new();
		for _ in 0..2 {
			let relay = one_way_relay([127, 0, 0, 1].into(), quic_addr).await.unwrap();
			let ep = tls::endpoint(([127, 0, 0, 1], 0).into(), None, 1 << 20).unwrap();
			let connecting = ep.connect_with(client_cfg.clone(), relay.0, tls::SERVER_NAME);
			attempts.push((ep, tokio::spawn(async move { connecting.unwrap().await.is_ok() })));
			relays.push(relay);
		}
		for (_, answers_dropped) in &relays {
			let dropped = answers_dropped.clone();
			wait_until("the server answered the spoofed client", || {
				dropped.load(Ordering::Relaxed) > 0
			})
			.await;
		}
		// An honest client still gets in.
		let ep = tls::endpoint(([127, 0, 0, 1], 0).into(), None, 1 << 20).unwrap();
		let conn = ep
			.connect_with(client_cfg.clone(), quic_addr, tls::SERVER_NAME)
			.unwrap()
			.await
			.expect("an honest QUIC client connects");
		let (mut send, mut recv) = conn.open_bi().await.unwrap();
		send.write_all(&hello(Role::Viewer)).await.unwrap();
		let mut dec = FrameDecoder::new(u32::MAX);
		let m = next(&mut recv, &mut dec).await;
		assert!(matches!(m, Some(Message::Welcome { .. })), "honest QUIC viewer: {m:?}");
		assert!(
			server.stats().quic_retries >= 3,
			"every client was sent a Retry: {:?}",
			server.stats().quic_retries
		);
		conn.close(0u32.into(), b"done");
		for (_ep, attempt) in attempts {
			attempt.abort();
		}
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}

/// The chain registry as a running node has it, reduced to what the test needs: stream 1 is
/// open (signed by the origin), every other id unknown, and every lookup counted (each would
/// be a runtime call).
#[derive(Debug, Default)]
struct CountingDirectory(AtomicU64);

impl StreamDirectory for CountingDirectory {
	fn origin_key(&self, stream: StreamId) -> Option<PublicKey> {
		self.0.fetch_add(1, Ordering::Relaxed);
		(stream == 1).then(|| origin().public())
	}

	/// Stream 1 is in the registry's cache (as an open stream is after its first lookup in
	/// a block); other ids need a read.
	fn cached_origin_key(&self, stream: StreamId) -> Option<Option<PublicKey>> {
		(stream == 1).then(|| Some(origin().public()))
	}
}

/// A viewer from `src` that subscribes to `stream`; the server's first answer after
/// `Welcome` (`None` if it closed without one).
async fn subscribe_from(src: [u8; 4], addr: SocketAddr, stream: StreamId) -> Option<Message> {
	let (mut s, m) = viewer_hello(src, addr).await;
	assert!(matches!(m, Some(Message::Welcome { .. })), "{m:?}");
	let subscribe = Message::Subscribe { stream, start: Start::Live { back: 0 } };
	s.write_all(&encode_frame(&subscribe)).await.unwrap();
	next(&mut s, &mut FrameDecoder::new(u32::MAX)).await
}

/// Issue 12, attack 6: one address opening session after session, each `Subscribe` naming a
/// fresh unknown id, made the server run a directory lookup (a runtime call in the node) for
/// every one: 100 here. With the per-address lookup budget (a burst of 16, then one a second)
/// at most the burst and the refill run, every session is still told `UnknownStream`, and
/// another address's lookups still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_unknown_ids_from_one_address_cost_a_bounded_number_of_lookups() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let directory = Arc::new(CountingDirectory::default());
		let mut config = serve_config();
		config.session.origin_keys =
			Arc::new(OriginKeys { directory: Some(directory.clone()), ..Default::default() });
		let server = server(config).await;
		let addr = server.tcp_addr.unwrap();
		let started = std::time::Instant::now();
		for id in 0..100 {
			let m = subscribe_from([127, 0, 0, 1], addr, 1_000 + id).await;
			assert!(
				matches!(m, Some(Message::Error { code: ErrorCode::UnknownStream, .. })),
				"{m:?}"
			);
		}
		let lookups = directory.0.load(Ordering::Relaxed);
		// The burst, and one a second refilled while the test ran.
		let bound = 16 + started.elapsed().as_secs() + 1;
		assert!(lookups <= bound, "{lookups} lookups for 100 unknown ids (bound {bound})");
		// Another address has its own budget: its lookup runs.
		let m = subscribe_from([127, 0, 0, 2], addr, 5_000).await;
		assert!(matches!(m, Some(Message::Error { code: ErrorCode::UnknownStream, .. })), "{m:?}");
		assert_eq!(directory.0.load(Ordering::Relaxed), lookups + 1);
		// The spent address (a NAT shared with the flooder) still finds the open stream the
		// cache knows: nothing is charged or refused, and the session is not told
		// `UnknownStream` (the `Pong` comes after the server handled the `Subscribe`).
		let refused = server.stats().lookups_refused;
		let (mut s, m) = viewer_hello([127, 0, 0, 1], addr).await;
		assert!(matches!(m, Some(Message::Welcome { .. })), "{m:?}");
		let subscribe = Message::Subscribe { stream: 1, start: Start::Live { back: 0 } };
		s.write_all(&encode_frame(&subscribe)).await.unwrap();
		s.write_all(&encode_frame(&Message::Ping(7))).await.unwrap();
		let mut dec = FrameDecoder::new(u32::MAX);
		loop {
			match next(&mut s, &mut dec).await {
				Some(Message::Pong(7)) => break,
				Some(Message::Error { code, reason }) => {
					panic!("open stream refused: {code:?} {reason}")
				}
				Some(_) => {}
				None => panic!("closed before the Pong"),
			}
		}
		assert_eq!(server.stats().lookups_refused, refused);
		assert_eq!(directory.0.load(Ordering::Relaxed), lookups + 1);
		server.shutdown().await;
	})
	.await
	.expect("test timed out");
}
