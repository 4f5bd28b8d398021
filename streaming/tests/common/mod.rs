//! Helpers shared by the integration tests: servers on 127.0.0.1 port 0, a paced publisher of
//! random segments, a viewer that collects what it delivers, a UDP relay that can be cut, and
//! [`wait_until`], so that a test waits for what it needs to have happened rather than sleeping.

#![allow(dead_code)]

use bytes::Bytes;
use dsp_primitives::{Signed, StreamEnd};
use dsp_streaming::{
	net::{
		publish::{PublishConfig, Publisher},
		serve::{RunningServer, ServeConfig},
		watch::{self, ServerAddr, WatchConfig, WatchEvent, WatchHandle},
		Endpoint,
	},
	protocol::{encode_frame, FrameDecoder, Message, PeerInfo, Start, CHALLENGE_LEN},
	segment::Segment,
	server::OriginKeys,
	viewer::{Transport, TransportPolicy, ViewerConfig},
};
use sp_core::Pair;
use std::{
	net::SocketAddr,
	sync::{
		atomic::{AtomicBool, Ordering},
		Arc,
	},
	time::Duration,
};
use tokio::{net::UdpSocket, sync::mpsc};

/// Every test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long [`read_to_end`] waits for the server to send or close.
pub const READ_BOUND: Duration = Duration::from_secs(20);

/// How long [`wait_until`] waits for its condition before failing the test.
pub const WAIT_BOUND: Duration = Duration::from_secs(60);

/// How often [`wait_until`] checks its condition.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// Waits until `cond` holds (a server or viewer counter, typically), checking every 20 ms; fails
/// the test, naming `what`, after [`WAIT_BOUND`]. Tests wait on what must have happened with
/// this, not on a guess at how long it takes.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
	let start = tokio::time::Instant::now();
	while !cond() {
		assert!(start.elapsed() < WAIT_BOUND, "timed out waiting for {what}");
		tokio::time::sleep(WAIT_POLL).await;
	}
}

/// Reads until the server closes; returns every message received.
pub async fn read_to_end<R: tokio::io::AsyncReadExt + Unpin>(
	r: &mut R,
) -> Vec<dsp_streaming::protocol::Message> {
	let mut dec = dsp_streaming::protocol::FrameDecoder::new(u32::MAX);
	let mut buf = vec![0u8; 64 * 1024];
	let mut out = Vec::new();
	loop {
		let n = tokio::time::timeout(READ_BOUND, r.read(&mut buf))
			.await
			.expect("server closes the connection")
			.unwrap_or(0);
		if n == 0 {
			return out;
		}
		dec.push(&buf[..n]);
		while let Some(m) = dec.next_message().expect("server sends valid frames") {
			out.push(m);
		}
	}
}

pub fn origin() -> sp_core::sr25519::Pair {
	sp_core::sr25519::Pair::from_string("//TestOrigin", None).unwrap()
}

pub fn init_logs() {
	let _ = tracing_subscriber::fmt()
		.with_env_filter(
			tracing_subscriber::EnvFilter::try_from_default_env()
				.unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
		)
		.with_test_writer()
		.try_init();
}

/// A client that speaks the protocol by hand over TCP: frames out, frames in.
pub struct RawSession {
	sock: tokio::net::TcpStream,
	dec: FrameDecoder,
}

impl RawSession {
	pub async fn connect(to: SocketAddr) -> Self {
		let sock = tokio::net::TcpStream::connect(to).await.unwrap();
		Self { sock, dec: FrameDecoder::new(1 << 20) }
	}

	pub async fn send(&mut self, m: &Message) {
		use tokio::io::AsyncWriteExt;
		self.sock.write_all(&encode_frame(m)).await.unwrap();
	}

	/// The next message; fails the test if none comes within 10 s or the connection closed.
	pub async fn recv(&mut self) -> Message {
		tokio::time::timeout(
			Duration::from_secs(10),
			dsp_streaming::net::read_message(&mut self.sock, &mut self.dec),
		)
		.await
		.expect("server answers")
		.unwrap()
		.expect("connection open")
	}

	/// Sends `Join` for `stream` as `viewer` with its proof over `challenge` (this session's
	/// `Welcome`); returns the answer (`Joined`, or the `Error`).
	pub async fn join(
		&mut self,
		challenge: &[u8; CHALLENGE_LEN],
		genesis: [u8; 32],
		stream: u64,
		viewer: &sp_core::sr25519::Pair,
		peer: PeerInfo,
	) -> Message {
		let proof = dsp_streaming::p2p::join::sign_join(viewer, &genesis, challenge, stream, &peer);
		self.send(&Message::Join { stream, viewer: viewer.public(), peer, proof }).await;
		self.recv().await
	}
}

pub fn serve_config() -> ServeConfig {
	let mut c = ServeConfig::default();
	c.session.origin_keys =
		Arc::new(OriginKeys { default: Some(origin().public()), ..Default::default() });
	c.window.max_segments = 64;
	c
}

pub async fn server(config: ServeConfig) -> RunningServer {
	RunningServer::start(config).await.expect("server starts")
}

/// Deterministic pseudo-random media bytes for segment `seq` (xorshift).
pub fn media(seq: u64, len: usize) -> Bytes {
	let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
	Bytes::from(
		(0..len)
			.map(|_| {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				x as u8
			})
			.collect::<Vec<_>>(),
	)
}

pub fn segment(stream: u64, seq: u64, len: usize) -> Segment {
	Segment::build(&origin(), [0; 32], stream, 0, seq, 2000, media(seq, len), 16 * 1024)
}

/// Publishes `count` segments of `len` bytes to `servers`, one every `pace`, then ends the
/// stream and waits for every server to acknowledge.
pub async fn publish(servers: Vec<Endpoint>, stream: u64, count: u64, len: usize, pace: Duration) {
	let publisher =
		Publisher::start(PublishConfig::new(stream, servers, origin())).expect("publisher");
	for seq in 0..count {
		publisher.push(Arc::new(segment(stream, seq, len)));
		// Pacing, as a live origin: what the tests exercise (viewers following the live edge,
		// windows moving on) needs segments spread over time.
		tokio::time::sleep(pace).await;
	}
	let end = StreamEnd { genesis_hash: [0; 32], stream, broadcast: 0, next_sequence: count };
	let reports = publisher.finish(Signed::sign(end, &origin()), Duration::from_secs(30)).await;
	for r in reports {
		assert!(r.complete, "publisher did not finish: {r:?}");
		assert_eq!(r.dropped, 0);
	}
}

pub fn tcp(s: &RunningServer) -> Endpoint {
	Endpoint { transport: Transport::Tcp, addr: s.tcp_addr.unwrap() }
}

pub fn quic(s: &RunningServer) -> Endpoint {
	Endpoint { transport: Transport::Quic, addr: s.quic_addr.unwrap() }
}

pub fn viewer_config(
	stream: u64,
	tcp: Option<SocketAddr>,
	quic: Option<SocketAddr>,
	policy: TransportPolicy,
) -> WatchConfig {
	let mut core = ViewerConfig::new(stream, origin().public());
	core.start = Start::At(0);
	core.controller.policy = policy;
	let mut c = WatchConfig::new(core);
	c.servers = vec![ServerAddr { tcp, quic }];
	c.gateway = None;
	c
}

/// What a viewer delivered, in order.
#[derive(Debug, Default)]
pub struct Received {
	pub segments: Vec<(u64, bool, Vec<u8>, Option<Transport>)>,
	pub switches: Vec<dsp_streaming::viewer::Switch>,
	pub server_changes: Vec<dsp_streaming::viewer::ServerChange>,
	pub ended: bool,
	/// The viewer's counters when it stopped.
	pub stats: dsp_streaming::viewer::ViewerStats,
}

impl Received {
	pub fn sequences(&self) -> Vec<u64> {
		self.segments.iter().map(|s| s.0).collect()
	}

	/// Every segment `0..count` exactly once, in order, byte-identical, no discontinuity.
	pub fn assert_complete(&self, count: u64, len: usize) {
		assert_eq!(self.sequences(), (0..count).collect::<Vec<_>>(), "missing or duplicate");
		for (seq, disc, data, _) in &self.segments {
			assert!(!disc, "discontinuity at {seq}");
			assert_eq!(data[..], media(*seq, len)[..], "segment {seq} differs");
		}
		assert!(self.ended);
	}
}

/// Starts a viewer; `on_segment(seq, &handle)` runs after each delivered segment (to force
/// switches or cut the network at a given point).
pub async fn watch_until_end<F>(config: WatchConfig, mut on_segment: F) -> Received
where
	F: FnMut(u64, &WatchHandle) -> Option<Transport>,
{
	let (tx, mut rx) = mpsc::channel(64);
	let handle = watch::start(config, Some(tx)).await.expect("viewer starts");
	let mut got = Received::default();
	while let Some(ev) = rx.recv().await {
		match ev {
			WatchEvent::Delivered { sequence, discontinuity, data, transport, .. } => {
				got.segments.push((sequence, discontinuity, data.concat(), transport));
				if let Some(t) = on_segment(sequence, &handle) {
					handle.force_transport(t).await;
				}
			}
			WatchEvent::Switched(s) => got.switches.push(s),
			WatchEvent::ServerChanged(c) => got.server_changes.push(c),
			WatchEvent::Ended => {
				got.ended = true;
				break;
			}
		}
	}
	got.stats = handle.stop().await;
	got
}

/// A UDP relay between one client and `server`; `blocked` drops every datagram both ways,
/// `delay_ms` holds each one back that long.
pub struct UdpRelay {
	pub addr: SocketAddr,
	pub blocked: Arc<AtomicBool>,
	pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
	task: tokio::task::JoinHandle<()>,
}

/// Sends `data` on `sock` (to `to`, or its connected peer) now or after `delay`.
fn relay_send(sock: &Arc<UdpSocket>, data: &[u8], to: Option<SocketAddr>, delay: u64) {
	let sock = sock.clone();
	let data = data.to_vec();
	let send = async move {
		let _ = match to {
			Some(to) => sock.send_to(&data, to).await,
			None => sock.send(&data).await,
		};
	};
	if delay == 0 {
		tokio::spawn(send);
	} else {
		tokio::spawn(async move {
			// The network delay the relay simulates (what the test asks for), not an ordering.
			tokio::time::sleep(Duration::from_millis(delay)).await;
			send.await
		});
	}
}

impl UdpRelay {
	pub async fn start(server: SocketAddr) -> UdpRelay {
		let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
		let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
		back.connect(server).await.unwrap();
		let addr = front.local_addr().unwrap();
		let blocked = Arc::new(AtomicBool::new(false));
		let b = blocked.clone();
		let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
		let d = delay_ms.clone();
		let task = tokio::spawn(async move {
			let mut client: Option<SocketAddr> = None;
			let mut up = vec![0u8; 65536];
			let mut down = vec![0u8; 65536];
			loop {
				tokio::select! {
					r = front.recv_from(&mut up) => {
						let Ok((n, from)) = r else { return };
						client = Some(from);
						if !b.load(Ordering::Relaxed) {
							relay_send(&back, &up[..n], None, d.load(Ordering::Relaxed));
						}
					},
					r = back.recv(&mut down) => {
						let Ok(n) = r else { continue };
						if let (Some(c), false) = (client, b.load(Ordering::Relaxed)) {
							relay_send(&front, &down[..n], Some(c), d.load(Ordering::Relaxed));
						}
					},
				}
			}
		});
		UdpRelay { addr, blocked, delay_ms, task }
	}

	pub fn block(&self) {
		self.blocked.store(true, Ordering::Relaxed);
	}
}

impl Drop for UdpRelay {
	fn drop(&mut self) {
		self.task.abort();
	}
}
