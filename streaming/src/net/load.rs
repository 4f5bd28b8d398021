//! Load generator for `dsp load`: N real viewer sessions (TCP or QUIC) against a server, a
//! publisher feeding it a synthetic stream at a fixed bitrate, and the server's CPU time and
//! memory read from `/proc` (Linux).
//!
//! The load viewers are deliberately lighter than `dsp watch`: they speak the protocol, count
//! bytes and time segment arrivals, but do not verify signatures or hashes (the server's cost,
//! not the client's, is what is measured; verification is covered by the tests).

use super::{publish::Publisher, read_frame, tls, write_frames, Endpoint, ReadError};
use crate::{
	protocol::{encode_frame, FrameDecoder, Message, Role, Start, PROTOCOL_VERSION},
	segment::Segment,
	viewer::Transport,
};
use bytes::Bytes;
use dsp_primitives::{Signed, StreamEnd};
use std::{
	io,
	net::{IpAddr, Ipv4Addr, SocketAddr},
	sync::{
		atomic::{AtomicU64, Ordering},
		Arc,
	},
	time::{Duration, Instant},
};
use tokio::{
	net::{TcpSocket, TcpStream},
	sync::watch,
};

/// Settings of a load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
	/// Server endpoint the viewers use.
	pub server: Endpoint,
	/// Endpoint the publisher uses.
	pub publish_to: Endpoint,
	/// Stream id.
	/// Chain the stream is signed for (all zeros for a standalone `dsp serve`).
	pub genesis_hash: dsp_primitives::Hash32,
	pub stream: u64,
	/// Viewer sessions to open.
	pub viewers: usize,
	/// Stream bitrate in kbit/s.
	pub bitrate_kbps: u32,
	/// Segment duration in milliseconds.
	pub segment_ms: u32,
	/// How long to hold the sessions after all connected.
	pub duration: Duration,
	/// Sessions opened per second while ramping up.
	pub connect_rate: u32,
	/// A segment arriving later than this after the previous one counts as a stall
	/// (default: 1.5 × `segment_ms`).
	pub stall_after: Duration,
	/// Chunk size of the synthetic segments, bytes.
	pub chunk_size: u32,
}

/// Counters shared by the load viewers.
#[derive(Default)]
pub struct LoadCounters {
	/// Sessions that completed the handshake.
	pub connected: AtomicU64,
	/// Sessions that ended before the run was over.
	pub dropped: AtomicU64,
	/// Sessions that could not connect.
	pub failed: AtomicU64,
	/// Bytes received (all frames).
	pub bytes: AtomicU64,
	/// Segments received.
	pub segments: AtomicU64,
	/// Gaps between two segments longer than `stall_after`.
	pub stalls: AtomicU64,
	/// Sessions the server refused or closed before `Welcome` (an `Error` such as `Full`, or
	/// the connection closed): an honest viewer turned away.
	pub refused: AtomicU64,
	/// Segment sequences skipped: a header whose sequence is more than one past the previous
	/// one's (same broadcast). Counts, not time: a viewer the server keeps up with skips none.
	pub skipped: AtomicU64,
	/// Segment headers of another broadcast than the first one the viewer received: content of
	/// an earlier broadcast replayed into this one would show up here.
	pub foreign: AtomicU64,
}

/// CPU time and memory of a process, from `/proc/<pid>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
	/// User + system CPU seconds.
	pub cpu_secs: f64,
	/// Resident set size, bytes.
	pub rss: u64,
	/// Peak resident set size, bytes.
	pub peak_rss: u64,
}

/// Reads CPU time and memory of `pid` (Linux only; `None` elsewhere or if it is gone).
pub fn sample_process(pid: u32) -> Option<ProcSample> {
	let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
	// Fields after the parenthesised command name; utime and stime are the 14th and 15th.
	let rest = stat.rsplit_once(')')?.1;
	let fields: Vec<&str> = rest.split_whitespace().collect();
	let utime: f64 = fields.get(11)?.parse().ok()?;
	let stime: f64 = fields.get(12)?.parse().ok()?;
	// USER_HZ is 100 on every Linux architecture we run on.
	let cpu_secs = (utime + stime) / 100.0;
	let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
	let kb = |key: &str| -> u64 {
		status
			.lines()
			.find(|l| l.starts_with(key))
			.and_then(|l| l.split_whitespace().nth(1))
			.and_then(|v| v.parse().ok())
			.unwrap_or(0)
			* 1024
	};
	Some(ProcSample { cpu_secs, rss: kb("VmRSS:"), peak_rss: kb("VmHWM:") })
}

/// Publishes a synthetic stream (random bytes, signed) at `bitrate_kbps` until `stop`.
pub async fn feed(
	config: &LoadConfig,
	pair: sp_core::sr25519::Pair,
	mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
	let mut publish =
		super::publish::PublishConfig::new(config.stream, vec![config.publish_to], pair.clone());
	publish.genesis_hash = config.genesis_hash;
	let publisher = Publisher::start(publish)?;
	let len = (config.bitrate_kbps as u64 * config.segment_ms as u64 / 8) as usize;
	let mut tick = tokio::time::interval(Duration::from_millis(config.segment_ms as u64));
	let mut seq = 0u64;
	let broadcast = super::publish::new_broadcast_id();
	let mut x = 0x2545_f491_4f6c_dd1du64;
	loop {
		tokio::select! {
			_ = tick.tick() => {},
			_ = stop.changed() => break,
		}
		let data: Vec<u8> = (0..len)
			.map(|_| {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				x as u8
			})
			.collect();
		let seg = Segment::build(
			&pair,
			config.genesis_hash,
			config.stream,
			broadcast,
			seq,
			config.segment_ms,
			Bytes::from(data),
			config.chunk_size,
		);
		publisher.push(Arc::new(seg));
		seq += 1;
	}
	let end = StreamEnd {
		genesis_hash: config.genesis_hash,
		stream: config.stream,
		broadcast,
		next_sequence: seq,
	};
	publisher.finish(Signed::sign(end, &pair), Duration::from_secs(5)).await;
	Ok(())
}

/// One load viewer: runs until `stop`, counting into `counters`.
///
/// `source`: the local address its TCP socket binds (any 127.x.y.z on Linux without
/// configuration), so that a load run can spread its viewers over many client addresses and
/// load a server with its default per-address limits; `None`: the system's choice. A QUIC
/// viewer's address is its endpoint's ([`quic_clients_at`]).
pub async fn viewer(
	config: Arc<LoadConfig>,
	quic: Option<(quinn::Endpoint, quinn::ClientConfig)>,
	source: Option<IpAddr>,
	counters: Arc<LoadCounters>,
	mut stop: watch::Receiver<bool>,
) {
	let t = Duration::from_secs(10);
	let connected = async {
		let (r, w, conn): (
			Box<dyn tokio::io::AsyncRead + Unpin + Send>,
			Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
			Option<quinn::Connection>,
		) = match config.server.transport {
			Transport::Tcp => {
				let s = connect_tcp(source, config.server.addr).await?;
				let _ = s.set_nodelay(true);
				let (r, w) = s.into_split();
				(Box::new(r), Box::new(w), None)
			}
			Transport::Quic => {
				let (ep, cfg) = quic.as_ref().ok_or_else(|| io::Error::other("no quic"))?;
				let c = ep
					.connect_with(cfg.clone(), config.server.addr, tls::SERVER_NAME)
					.map_err(io::Error::other)?
					.await
					.map_err(io::Error::other)?;
				let (s, r) = c.open_bi().await.map_err(io::Error::other)?;
				(Box::new(r), Box::new(s), Some(c))
			}
		};
		Ok::<_, io::Error>((r, w, conn))
	};
	let Ok(Ok((mut r, mut w, conn))) = tokio::time::timeout(t, connected).await else {
		counters.failed.fetch_add(1, Ordering::Relaxed);
		return;
	};
	let hello = Message::Hello {
		version: PROTOCOL_VERSION,
		role: Role::Viewer,
		genesis_hash: config.genesis_hash,
	};
	let sub = Message::Subscribe { stream: config.stream, start: Start::Live { back: 0 } };
	if write_frames(&mut w, &[encode_frame(&hello), encode_frame(&sub)], t).await.is_err() {
		counters.failed.fetch_add(1, Ordering::Relaxed);
		return;
	}
	let mut dec = FrameDecoder::new(crate::protocol::DEFAULT_MAX_FRAME_LEN);
	let mut ping = tokio::time::interval(Duration::from_secs(5));
	let mut last_segment: Option<Instant> = None;
	let mut welcomed = false;
	let mut seen = SeenSegments::default();
	// A gap that is still open counts as a stall too (once): a viewer that receives nothing
	// at all stalls, even though no late segment ever ends its gap.
	let mut check = tokio::time::interval((config.stall_after / 2).max(Duration::from_millis(50)));
	let mut progress = Instant::now();
	let mut stalled = false;
	loop {
		tokio::select! {
			f = read_frame(&mut r, &mut dec) => match f {
				Ok(Some(body)) => {
					counters.bytes.fetch_add(body.len() as u64 + 4, Ordering::Relaxed);
					match body.first() {
						Some(1) if !welcomed => {
							welcomed = true;
							progress = Instant::now();
							counters.connected.fetch_add(1, Ordering::Relaxed);
						},
						Some(4) => {
							if let Ok(Message::Header(h)) = crate::protocol::decode_body(body.clone()) {
								let (skipped, foreign) =
									seen.handle(h.payload.broadcast, h.payload.sequence);
								counters.skipped.fetch_add(skipped, Ordering::Relaxed);
								counters.foreign.fetch_add(foreign, Ordering::Relaxed);
							}
							let now = Instant::now();
							if stalled {
								// Counted while it lasted.
								stalled = false;
							} else if last_segment.is_some_and(|l| now - l > config.stall_after) {
								counters.stalls.fetch_add(1, Ordering::Relaxed);
							}
							last_segment = Some(now);
							progress = now;
							counters.segments.fetch_add(1, Ordering::Relaxed);
						},
						Some(10) => break,
						_ => {},
					}
				},
				Ok(None) | Err(ReadError::Io(_)) | Err(ReadError::Frame(_)) => break,
			},
			_ = ping.tick() => {
				if write_frames(&mut w, &[encode_frame(&Message::Ping(0))], t).await.is_err() {
					break;
				}
			},
			_ = check.tick() => {
				if welcomed && !stalled && progress.elapsed() > config.stall_after {
					stalled = true;
					counters.stalls.fetch_add(1, Ordering::Relaxed);
				}
			},
			_ = stop.changed() => {
				if let Some(c) = conn {
					c.close(0u32.into(), b"done");
				}
				return;
			},
		}
	}
	if !welcomed {
		counters.refused.fetch_add(1, Ordering::Relaxed);
	} else if !*stop.borrow() {
		counters.dropped.fetch_add(1, Ordering::Relaxed);
	}
}

/// A TCP connection to `to`, from `source` if given.
pub async fn connect_tcp(source: Option<IpAddr>, to: SocketAddr) -> io::Result<TcpStream> {
	let Some(ip) = source else { return TcpStream::connect(to).await };
	let sock = match ip {
		IpAddr::V4(_) => TcpSocket::new_v4()?,
		IpAddr::V6(_) => TcpSocket::new_v6()?,
	};
	sock.bind(SocketAddr::new(ip, 0))?;
	sock.connect(to).await
}

/// The client address of viewer `i` when `per_address` viewers share one: 127.10.x.y, a
/// loopback address Linux accepts as a source without configuration, `per_address` viewers
/// each (viewer `i` on address `i / per_address`).
pub fn viewer_address(i: usize, per_address: usize) -> IpAddr {
	let k = i / per_address.max(1);
	Ipv4Addr::new(127, 10, (k / 250) as u8, (k % 250 + 1) as u8).into()
}

/// What a load viewer saw of the segment headers so far: the broadcast it watches (the
/// first one it received) and the newest sequence of it.
#[derive(Default, Debug)]
pub struct SeenSegments {
	broadcast: Option<u64>,
	last: Option<u64>,
}

impl SeenSegments {
	/// A header of `broadcast`, `sequence` arrived: returns the sequences skipped since the
	/// previous one and 1 if it belongs to another broadcast than the first (then it does not
	/// move the viewer's position).
	pub fn handle(&mut self, broadcast: u64, sequence: u64) -> (u64, u64) {
		match self.broadcast {
			Some(b) if b != broadcast => return (0, 1),
			_ => self.broadcast = Some(broadcast),
		}
		let skipped = match self.last {
			Some(last) if sequence > last => sequence - last - 1,
			_ => 0,
		};
		self.last = Some(self.last.map_or(sequence, |l| l.max(sequence)));
		(skipped, 0)
	}
}

/// The QUIC client endpoints for `n` viewers: one endpoint (one UDP socket) per `per_endpoint`
/// viewers, so one socket's receive buffer is not the bottleneck.
pub fn quic_clients(
	n: usize,
	per_endpoint: usize,
) -> io::Result<Vec<(quinn::Endpoint, quinn::ClientConfig)>> {
	let loopback = vec![IpAddr::from(Ipv4Addr::LOCALHOST); n.div_ceil(per_endpoint).max(1)];
	quic_clients_at(&loopback)
}

/// One QUIC client endpoint per address in `sources` (each its own UDP socket bound to it),
/// for viewers spread over client addresses ([`viewer_address`]).
pub fn quic_clients_at(
	sources: &[IpAddr],
) -> io::Result<Vec<(quinn::Endpoint, quinn::ClientConfig)>> {
	let cfg = tls::client_config(
		tls::ServerVerification::InsecureSkip,
		Duration::from_secs(30),
		Duration::from_secs(5),
	)?;
	sources
		.iter()
		.map(|ip| {
			let ep = tls::endpoint(SocketAddr::new(*ip, 0), None, tls::DEFAULT_UDP_BUFFER)?;
			Ok((ep, cfg.clone()))
		})
		.collect()
}

/// An HLS-style HTTP client for the comparison with a plain web server: on one keep-alive
/// connection it fetches `/seg/<i>.ts` once per `segment_ms` (phase-shifted by `phase`),
/// reading each response in full. A response that takes longer than a segment is a stall.
pub async fn http_viewer(
	addr: SocketAddr,
	segments: usize,
	segment_ms: u32,
	phase: Duration,
	counters: Arc<LoadCounters>,
	mut stop: watch::Receiver<bool>,
) {
	use tokio::io::{AsyncReadExt, AsyncWriteExt};
	let Ok(Ok(mut sock)) =
		tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await
	else {
		counters.failed.fetch_add(1, Ordering::Relaxed);
		return;
	};
	let _ = sock.set_nodelay(true);
	counters.connected.fetch_add(1, Ordering::Relaxed);
	let period = Duration::from_millis(segment_ms as u64);
	let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
	let mut buf = vec![0u8; 64 * 1024];
	for i in 0usize.. {
		tokio::select! {
			_ = tick.tick() => {},
			_ = stop.changed() => return,
		}
		let started = Instant::now();
		let req = format!("GET /seg/{}.ts HTTP/1.1\r\nHost: load\r\n\r\n", i % segments.max(1));
		if sock.write_all(req.as_bytes()).await.is_err() {
			break;
		}
		// Head, then exactly Content-Length bytes of body.
		let mut head = Vec::new();
		let (body_start, len) = loop {
			let n = match sock.read(&mut buf).await {
				Ok(0) | Err(_) => {
					counters.dropped.fetch_add(1, Ordering::Relaxed);
					return;
				}
				Ok(n) => n,
			};
			head.extend_from_slice(&buf[..n]);
			if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
				let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
				let len: usize = text
					.lines()
					.find_map(|l| l.strip_prefix("content-length:"))
					.and_then(|v| v.trim().parse().ok())
					.unwrap_or(0);
				break (end + 4, len);
			}
		};
		let mut got = head.len() - body_start;
		while got < len {
			match sock.read(&mut buf).await {
				Ok(0) | Err(_) => {
					counters.dropped.fetch_add(1, Ordering::Relaxed);
					return;
				}
				Ok(n) => got += n,
			}
		}
		counters.bytes.fetch_add((body_start + got) as u64, Ordering::Relaxed);
		counters.segments.fetch_add(1, Ordering::Relaxed);
		if started.elapsed() > period {
			counters.stalls.fetch_add(1, Ordering::Relaxed);
		}
	}
}

/// CPU time and memory of a process and its direct children (nginx master and workers).
pub fn sample_process_tree(pid: u32) -> Option<ProcSample> {
	let mut total = sample_process(pid)?;
	for entry in std::fs::read_dir("/proc").ok()?.flatten() {
		let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
		let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
		let ppid = stat
			.rsplit_once(')')
			.and_then(|(_, rest)| rest.split_whitespace().nth(1))
			.and_then(|p| p.parse::<u32>().ok());
		if ppid == Some(pid) {
			if let Some(s) = sample_process(child) {
				total.cpu_secs += s.cpu_secs;
				total.rss += s.rss;
				total.peak_rss += s.peak_rss;
			}
		}
	}
	Some(total)
}

/// Sums of the counters of a set of P2P viewers (`dsp load --p2p`).
#[derive(Clone, Copy, Debug, Default)]
pub struct P2pTotals {
	/// Viewers summed.
	pub viewers: u64,
	/// Chunk bytes stored from the node (seeded or fetched).
	pub from_node: u64,
	/// Chunk bytes stored from peers.
	pub from_peers: u64,
	/// Bytes the server sent the viewers on their direct connections (headers included).
	pub server_bytes: u64,
	/// Segments handed to the players.
	pub segments: u64,
	/// Stalls of the player model.
	pub stalls: u64,
	/// Stalls longer than one segment.
	pub long_stalls: u64,
	/// Longest stall, ms.
	pub longest_stall_ms: u64,
	/// Neighbours with a pass accepted.
	pub neighbours: u64,
	/// Chunks that failed verification.
	pub bad_chunks: u64,
}

impl P2pTotals {
	/// Sums `stats`.
	pub fn of<'a>(stats: impl IntoIterator<Item = &'a super::p2p_watch::P2pWatchStats>) -> Self {
		let mut t = P2pTotals::default();
		for s in stats {
			t.viewers += 1;
			t.from_node += s.scheduler.bytes_from_node;
			t.from_peers += s.scheduler.bytes_from_peers;
			t.server_bytes += s.server_bytes;
			t.segments += s.buffer.delivered;
			t.stalls += s.play.stalls;
			t.long_stalls += s.long_stalls;
			t.longest_stall_ms = t.longest_stall_ms.max(s.longest_stall_ms);
			t.neighbours += s.neighbours as u64;
			t.bad_chunks += s.scheduler.bad_chunks;
		}
		t
	}

	/// The share of chunk bytes that came from peers between `earlier` and `self`, percent.
	pub fn p2p_share_since(&self, earlier: &P2pTotals) -> f64 {
		let peers = self.from_peers.saturating_sub(earlier.from_peers) as f64;
		let node = self.from_node.saturating_sub(earlier.from_node) as f64;
		if peers + node > 0.0 {
			100.0 * peers / (peers + node)
		} else {
			0.0
		}
	}
}
