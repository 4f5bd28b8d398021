//! Attackers for `dsp load --attack` (issue 12): each runs against a live server while honest
//! load viewers watch, and counts what it achieved (sessions held, refusals, bytes accepted), so
//! a load run shows whether an attack costs honest viewers anything and what the server let the
//! attacker have. One module per attack; the decisions (what to send, how to read an answer)
//! are pure functions next to their thin async shell.
//!
//! Every attacker speaks from its own client addresses ([`AttackTarget::sources`], 127.66.0.x
//! in `dsp load`), apart from the honest viewers', so the server's per-address limits apply to
//! it as to a real attacker.

pub mod memory;
pub mod publish_flood;
pub mod replay;
pub mod session_flood;
pub mod slow_handshake;
pub mod unknown_ids;

use crate::{
	net::{load::connect_tcp, read_frame, write_frames, ReadError},
	protocol::{
		decode_body, encode_frame, ErrorCode, FrameDecoder, Message, Role, CHALLENGE_LEN,
		PROTOCOL_VERSION,
	},
};
use dsp_primitives::{Hash32, StreamId};
use parking_lot::Mutex;
use std::{
	collections::BTreeMap,
	fmt, io,
	net::{IpAddr, Ipv4Addr, SocketAddr},
	sync::{
		atomic::{AtomicU64, Ordering},
		Arc,
	},
	time::Duration,
};
use tokio::{
	io::{AsyncRead, AsyncWrite},
	net::tcp::{OwnedReadHalf, OwnedWriteHalf},
	sync::watch,
};

/// The attacks `dsp load --attack` runs (issue 12's list, where it applies to a running
/// server; the variants' docs are the command's help). Tracker Sybils (item 5) are not here:
/// the load tool's P2P harness cannot hold a P2P swarm of 500 viewers next to an attacker on
/// this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum AttackKind {
	/// An anonymous publisher pushes the signed segments and `End` of an earlier broadcast of
	/// the live stream, 4 at once, again after each refusal (item 1; module `replay`).
	Replay,
	/// One address (127.66.0.1) opens --attack-sessions sessions, viewers and publishers,
	/// `Hello` then a `Ping` every 10 s (item 2; `session_flood`).
	SessionFlood,
	/// --attack-sessions connections that never finish their handshake: silent TCP from
	/// 127.66.0.1, QUIC (at most 256) from 127.66.0.2 that never hears the server, as a spoofed
	/// address (items 2 and 7; `slow_handshake`).
	SlowHandshake,
	/// Anonymous `Publish`es for 32 fresh stream ids from --attack-addresses addresses
	/// (item 3; `publish_flood`).
	PublishFlood,
	/// --attack-origins registered origins publish to 10 streams each: windows filled with
	/// 8 MiB segments and a 16 MiB segment left half sent, from --attack-addresses addresses
	/// (item 4; `memory`).
	Memory,
	/// `Subscribe`s and `Publish`es for stream ids nobody registered, from --attack-addresses
	/// addresses, as fast as the server answers (item 6; `unknown_ids`).
	UnknownIds,
}

impl AttackKind {
	/// Every attack, in the order the benchmark runs them.
	pub const ALL: [AttackKind; 6] = [
		AttackKind::Replay,
		AttackKind::SessionFlood,
		AttackKind::SlowHandshake,
		AttackKind::PublishFlood,
		AttackKind::Memory,
		AttackKind::UnknownIds,
	];

	/// The name on the command line and in reports.
	pub fn name(self) -> &'static str {
		match self {
			AttackKind::Replay => "replay",
			AttackKind::SessionFlood => "session-flood",
			AttackKind::SlowHandshake => "slow-handshake",
			AttackKind::PublishFlood => "publish-flood",
			AttackKind::Memory => "memory",
			AttackKind::UnknownIds => "unknown-ids",
		}
	}
}

/// The attacker's addresses: 127.66.0.1, 127.66.0.2, ... (`count` of them).
pub fn attacker_addresses(count: usize) -> Vec<IpAddr> {
	(0..count.max(1))
		.map(|k| Ipv4Addr::new(127, 66, (k / 250) as u8, (k % 250 + 1) as u8).into())
		.collect()
}

/// Where and how hard an attacker attacks.
#[derive(Clone, Debug)]
pub struct AttackTarget {
	/// The server's TCP endpoint.
	pub tcp: SocketAddr,
	/// Its QUIC endpoint (the slow-handshake attack's QUIC half needs it).
	pub quic: Option<SocketAddr>,
	/// The chain the server serves.
	pub genesis_hash: Hash32,
	/// The stream the honest viewers watch.
	pub stream: StreamId,
	/// The attacker's client addresses; single-address attacks use the first.
	pub sources: Vec<IpAddr>,
	/// Sessions (or connections) the attacker tries to hold at once.
	pub sessions: usize,
	/// Pause of one attacker slot after a refusal or a closed session, before it tries again.
	pub retry: Duration,
}

impl AttackTarget {
	/// The source address of attacker slot `i` (round robin over [`Self::sources`]).
	pub fn source(&self, i: usize) -> IpAddr {
		self.sources
			.get(i % self.sources.len().max(1))
			.copied()
			.unwrap_or(Ipv4Addr::LOCALHOST.into())
	}
}

/// What an attacker achieved, counted as it goes (shared by its tasks).
#[derive(Default, Debug)]
pub struct AttackCounters {
	/// Connections (or handshakes, publishes) attempted.
	pub attempts: AtomicU64,
	/// Sessions the server admitted (`Welcome`), or for the flooding publishers what it
	/// accepted beyond `Welcome` (see each attack).
	pub admitted: AtomicU64,
	/// Sessions held now.
	pub held: AtomicU64,
	/// Most sessions held at once.
	pub peak_held: AtomicU64,
	/// Attempts the server refused (an `Error` before the attacker got what it asked for).
	pub refused: AtomicU64,
	/// Admitted sessions the server closed later (timeouts, limits).
	pub closed_by_server: AtomicU64,
	/// Bytes the attacker sent.
	pub bytes_sent: AtomicU64,
	/// Media bytes the server acknowledged (`Ack`) or otherwise took in.
	pub bytes_accepted: AtomicU64,
	/// Segments the server acknowledged.
	pub segments_accepted: AtomicU64,
	/// Why the server refused or closed, by error code ("closed" without one).
	pub reasons: Mutex<BTreeMap<String, u64>>,
}

impl AttackCounters {
	/// Counts one refusal or close for `reason`.
	pub fn reason(&self, reason: &str) {
		*self.reasons.lock().entry(reason.to_string()).or_default() += 1;
	}

	/// Counts a session held until the guard is dropped.
	pub fn hold(self: &Arc<Self>) -> HeldGuard {
		let now = self.held.fetch_add(1, Ordering::Relaxed) + 1;
		self.peak_held.fetch_max(now, Ordering::Relaxed);
		HeldGuard(self.clone())
	}

	/// The counts now.
	pub fn report(&self) -> AttackReport {
		let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
		AttackReport {
			attempts: l(&self.attempts),
			admitted: l(&self.admitted),
			peak_held: l(&self.peak_held),
			refused: l(&self.refused),
			closed_by_server: l(&self.closed_by_server),
			bytes_sent: l(&self.bytes_sent),
			bytes_accepted: l(&self.bytes_accepted),
			segments_accepted: l(&self.segments_accepted),
			reasons: self.reasons.lock().clone(),
		}
	}
}

/// A session counted in [`AttackCounters::held`] while it lives.
pub struct HeldGuard(Arc<AttackCounters>);

impl Drop for HeldGuard {
	fn drop(&mut self) {
		self.0.held.fetch_sub(1, Ordering::Relaxed);
	}
}

/// A snapshot of [`AttackCounters`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttackReport {
	pub attempts: u64,
	pub admitted: u64,
	pub peak_held: u64,
	pub refused: u64,
	pub closed_by_server: u64,
	pub bytes_sent: u64,
	pub bytes_accepted: u64,
	pub segments_accepted: u64,
	pub reasons: BTreeMap<String, u64>,
}

impl fmt::Display for AttackReport {
	fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
		write!(
			f,
			"attempts={} admitted={} peak_held={} refused={} closed_by_server={} bytes_sent={} \
			 bytes_accepted={} segments_accepted={} reasons=",
			self.attempts,
			self.admitted,
			self.peak_held,
			self.refused,
			self.closed_by_server,
			self.bytes_sent,
			self.bytes_accepted,
			self.segments_accepted
		)?;
		let reasons: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{r}:{n}")).collect();
		write!(f, "{}", if reasons.is_empty() { "-".to_string() } else { reasons.join(",") })
	}
}

/// How the server answered an attacker's first frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
	/// `Welcome`, with the session's challenge.
	Welcome([u8; CHALLENGE_LEN]),
	/// Another message (what it is named).
	Other(&'static str),
	/// An `Error` with this code.
	Refused(ErrorCode),
	/// The connection closed (or failed) without an `Error`.
	Closed,
}

impl Answer {
	/// Classifies what the server sent (`None`: nothing, the connection ended).
	pub fn of(m: Option<Message>) -> Answer {
		match m {
			Some(Message::Welcome { challenge, .. }) => Answer::Welcome(challenge),
			Some(Message::Error { code, .. }) => Answer::Refused(code),
			Some(other) => Answer::Other(other.kind()),
			None => Answer::Closed,
		}
	}

	/// The reason to count for a refusal or close.
	pub fn reason(&self) -> String {
		match self {
			Answer::Refused(code) => format!("{code:?}"),
			Answer::Closed => "closed".into(),
			Answer::Welcome(_) => "welcome".into(),
			Answer::Other(kind) => (*kind).into(),
		}
	}
}

/// An attacker's TCP session: its halves and frame decoder.
pub struct RawConn {
	pub r: OwnedReadHalf,
	pub w: OwnedWriteHalf,
	pub dec: FrameDecoder,
}

/// How long an attacker waits for one answer before it counts the attempt as closed.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

impl RawConn {
	/// A TCP connection to `to` from `source`.
	pub async fn connect(source: IpAddr, to: SocketAddr) -> io::Result<RawConn> {
		let s = tokio::time::timeout(ANSWER_TIMEOUT, connect_tcp(Some(source), to))
			.await
			.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
		let _ = s.set_nodelay(true);
		let (r, w) = s.into_split();
		Ok(RawConn { r, w, dec: FrameDecoder::new(crate::protocol::DEFAULT_MAX_FRAME_LEN) })
	}

	/// Sends `frames`, counting their bytes.
	pub async fn send(&mut self, frames: &[bytes::Bytes], c: &AttackCounters) -> io::Result<()> {
		write_frames(&mut self.w, frames, ANSWER_TIMEOUT).await?;
		let n: usize = frames.iter().map(|f| f.len()).sum();
		c.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
		Ok(())
	}

	/// The next message from the server (`None`: closed, undecodable, or nothing within
	/// [`ANSWER_TIMEOUT`]).
	pub async fn recv(&mut self) -> Option<Message> {
		recv_message(&mut self.r, &mut self.dec, ANSWER_TIMEOUT).await
	}

	/// Sends `Hello` as `role` and returns the server's answer.
	pub async fn hello(&mut self, role: Role, genesis_hash: Hash32, c: &AttackCounters) -> Answer {
		let hello = Message::Hello { version: PROTOCOL_VERSION, role, genesis_hash };
		if self.send(&[encode_frame(&hello)], c).await.is_err() {
			return Answer::Closed;
		}
		Answer::of(self.recv().await)
	}
}

/// The next message on `r`, `None` once it closed, failed or stayed silent for `timeout`.
pub async fn recv_message<R: AsyncRead + Unpin>(
	r: &mut R,
	dec: &mut FrameDecoder,
	timeout: Duration,
) -> Option<Message> {
	match tokio::time::timeout(timeout, read_frame(r, dec)).await {
		Ok(Ok(Some(body))) => decode_body(body).ok(),
		Ok(Ok(None)) | Ok(Err(ReadError::Io(_))) | Ok(Err(ReadError::Frame(_))) | Err(_) => None,
	}
}

/// Counts an attempt's refusal for `answer`.
pub fn count_refusal(c: &AttackCounters, answer: &Answer) {
	c.refused.fetch_add(1, Ordering::Relaxed);
	c.reason(&answer.reason());
}

/// Runs `slot(i)` in `n` tasks, each again and again (a pause of `retry` after each
/// attempt) until `stop`; returns when all have stopped.
pub async fn run_slots<F, Fut>(n: usize, retry: Duration, stop: watch::Receiver<bool>, slot: F)
where
	F: Fn(usize) -> Fut + Send + Sync + 'static,
	Fut: std::future::Future<Output = ()> + Send + 'static,
{
	let slot = Arc::new(slot);
	let tasks: Vec<_> = (0..n)
		.map(|i| {
			let slot = slot.clone();
			let mut stop = stop.clone();
			tokio::spawn(async move {
				while !*stop.borrow() {
					tokio::select! {
						_ = slot(i) => {},
						_ = stop.changed() => return,
					}
					tokio::select! {
						_ = tokio::time::sleep(retry) => {},
						_ = stop.changed() => return,
					}
				}
			})
		})
		.collect();
	for t in tasks {
		let _ = t.await;
	}
}

/// Writes a `Ping` every `every` and reads until the server closes: returns why it closed
/// (the `Error` code, or [`Answer::Closed`]). Acks the server sends are counted as accepted
/// `segment_len` bytes each. For a session the attacker holds as long as it can.
pub async fn hold<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
	r: &mut R,
	w: &mut W,
	dec: &mut FrameDecoder,
	every: Duration,
	segment_len: u64,
	c: &AttackCounters,
) -> Answer {
	let mut ping = tokio::time::interval(every);
	ping.tick().await;
	loop {
		tokio::select! {
			f = read_frame(r, dec) => match f {
				Ok(Some(body)) => match decode_body(body) {
					Ok(Message::Error { code, .. }) => return Answer::Refused(code),
					Ok(Message::Ack { .. }) => {
						c.segments_accepted.fetch_add(1, Ordering::Relaxed);
						c.bytes_accepted.fetch_add(segment_len, Ordering::Relaxed);
					},
					Ok(_) => {},
					Err(_) => return Answer::Closed,
				},
				_ => return Answer::Closed,
			},
			_ = ping.tick() => {
				let f = encode_frame(&Message::Ping(0));
				if write_frames(w, std::slice::from_ref(&f), ANSWER_TIMEOUT).await.is_err() {
					return Answer::Closed;
				}
				c.bytes_sent.fetch_add(f.len() as u64, Ordering::Relaxed);
			},
		}
	}
}

/// What an attack needs beyond [`AttackTarget`].
pub enum Attack {
	/// See [`replay`].
	Replay(replay::Captured),
	/// See [`session_flood`].
	SessionFlood,
	/// See [`slow_handshake`].
	SlowHandshake,
	/// See [`publish_flood`]: the fresh (registered, not live) stream ids to publish.
	PublishFlood(Vec<StreamId>),
	/// See [`memory`].
	Memory(memory::MemoryAttack),
	/// See [`unknown_ids`].
	UnknownIds,
}

/// Runs `attack` against `target` until `stop`, counting into `c`.
pub async fn run(
	attack: Attack,
	target: AttackTarget,
	c: Arc<AttackCounters>,
	stop: watch::Receiver<bool>,
) {
	match attack {
		Attack::Replay(captured) => replay::run(target, captured, c, stop).await,
		Attack::SessionFlood => session_flood::run(target, c, stop).await,
		Attack::SlowHandshake => slow_handshake::run(target, c, stop).await,
		Attack::PublishFlood(ids) => publish_flood::run(target, ids, c, stop).await,
		Attack::Memory(m) => memory::run(target, m, c, stop).await,
		Attack::UnknownIds => unknown_ids::run(target, c, stop).await,
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn answers_are_classified() {
		let w = Message::Welcome {
			version: PROTOCOL_VERSION,
			mode: dsp_primitives::AdmissionMode::Direct,
			max_frame_len: 1,
			challenge: [7; CHALLENGE_LEN],
		};
		assert_eq!(Answer::of(Some(w)), Answer::Welcome([7; CHALLENGE_LEN]));
		let full = Answer::of(Some(Message::error(ErrorCode::Full, "x")));
		assert_eq!(full, Answer::Refused(ErrorCode::Full));
		assert_eq!(full.reason(), "Full");
		assert_eq!(Answer::of(None).reason(), "closed");
		assert_eq!(Answer::of(Some(Message::Pong(1))), Answer::Other("pong"));
	}

	#[test]
	fn attacker_addresses_are_distinct_loopback() {
		let a = attacker_addresses(300);
		assert_eq!(a.len(), 300);
		assert!(a.iter().all(|ip| ip.is_loopback()));
		let set: std::collections::BTreeSet<_> = a.iter().collect();
		assert_eq!(set.len(), 300);
	}

	#[test]
	fn counters_track_the_peak_held() {
		let c = Arc::new(AttackCounters::default());
		let a = c.hold();
		let b = c.hold();
		drop(a);
		let _d = c.hold();
		drop(b);
		let r = c.report();
		assert_eq!(r.peak_held, 2);
		assert_eq!(c.held.load(Ordering::Relaxed), 1);
	}
}
