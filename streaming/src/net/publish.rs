//! The publisher driver: one task per streamer endpoint, each with its own
//! [`PublishQueue`], reconnecting with backoff and resending what was not acknowledged.
//! [`Publisher::resume_point`] tells a restarted publisher where the servers want it to
//! continue (their `Expect`: the broadcast they hold and its next sequence), ignoring answers
//! that cannot be true ([`choose_resume`]).
//!
//! [`SegmentSigner`] signs and numbers media for a publisher, and [`publish_ts`] feeds it
//! MPEG-TS (stdin, a file, an encoder's pipe): the read -> cut -> sign -> publish loop that
//! `dsp publish` and the node's demo stream share.

use super::{read_message, tls, write_frames, BoxRead, BoxWrite, Endpoint, ReadError};
use crate::{
	protocol::{
		encode_frame, publish_proof, FrameDecoder, Message, Role, DEFAULT_MAX_FRAME_LEN,
		PROTOCOL_VERSION,
	},
	publisher::{PublishQueue, QueueConfig},
	segment::Segment,
	ts::{TsConfig, TsSegmenter},
	viewer::Transport,
};
use bytes::Bytes;
use dsp_primitives::{Hash32, Signed, StreamEnd, StreamId};
use std::{io, path::PathBuf, sync::Arc, time::Duration};
use tokio::{
	io::{AsyncRead, AsyncReadExt},
	sync::{mpsc, watch},
	task::JoinHandle,
};
use tracing::{info, warn};

/// Largest `next_sequence` a server's `Expect` may name: 2^48 segments of at least 10 ms are
/// 89,000 years of stream, so an answer beyond it is a lie or a bug, and numbering from it
/// would run out of sequence numbers.
pub const MAX_EXPECT_SEQUENCE: u64 = 1 << 48;

/// How far one server's `Expect` may be ahead of the (lower) median of all answers for the same
/// broadcast before it is ignored: 100,000 segments, 55 hours of 2 s segments, more than an
/// honest server can gain on the others while they were cut off from this publisher.
pub const MAX_EXPECT_LEAD: u64 = 100_000;

/// How far in the future (by this publisher's clock) a server's broadcast id may lie: one hour
/// of clock difference between the machine of an earlier publisher and this one. A broadcast id
/// is a start time, so a later one cannot have been signed by an honest origin yet.
pub const MAX_BROADCAST_SKEW_MS: u64 = 3_600_000;

/// A new broadcast id: now, in milliseconds since the Unix epoch (see
/// [`dsp_primitives::SegmentHeader::broadcast`]).
pub fn new_broadcast_id() -> u64 {
	std::time::SystemTime::now()
		.duration_since(std::time::UNIX_EPOCH)
		.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a server holds of the stream (its `Expect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
	/// The broadcast it holds and that has not ended, if any.
	pub broadcast: Option<u64>,
	/// The next sequence of that broadcast it stores (0 without one).
	pub next_sequence: u64,
}

impl Held {
	/// Where to continue: this broadcast at its next sequence, or, when the servers hold none,
	/// a new broadcast `new_broadcast` from sequence 0.
	pub fn resume_or(self, new_broadcast: u64) -> Resume {
		match self.broadcast {
			Some(broadcast) => Resume { broadcast, next_sequence: self.next_sequence },
			None => Resume { broadcast: new_broadcast, next_sequence: 0 },
		}
	}
}

/// Where a publisher starts numbering: a broadcast and its first sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
	/// The broadcast id the segments are signed with.
	pub broadcast: u64,
	/// The first segment's sequence.
	pub next_sequence: u64,
}

/// Why an `Expect` cannot be true, or `Ok` (`now_ms`: this publisher's clock).
pub fn check_expect(held: &Held, now_ms: u64) -> Result<(), String> {
	if held.next_sequence > MAX_EXPECT_SEQUENCE {
		return Err(format!(
			"next_sequence {} above {MAX_EXPECT_SEQUENCE}: not a sequence a stream reaches",
			held.next_sequence
		));
	}
	if let Some(b) = held.broadcast {
		if b > now_ms.saturating_add(MAX_BROADCAST_SKEW_MS) {
			return Err(format!("broadcast {b} starts after now ({now_ms} ms) plus one hour"));
		}
	}
	Ok(())
}

/// Where the servers' answers say to continue: the newest broadcast among the plausible
/// answers ([`check_expect`]), at the highest `next_sequence` given for it that is at most
/// [`MAX_EXPECT_LEAD`] ahead of the lower median of those answers. One server cannot push the
/// publisher to the end of the sequence space: with two or more servers its answer is outvoted,
/// and alone it is bounded by [`MAX_EXPECT_SEQUENCE`]. Returns the choice (`None` without a
/// plausible answer) and every ignored answer with the reason.
pub fn choose_resume(answers: &[Held], now_ms: u64) -> (Option<Held>, Vec<(Held, String)>) {
	let mut ignored = Vec::new();
	let mut sane = Vec::new();
	for a in answers {
		match check_expect(a, now_ms) {
			Ok(()) => sane.push(*a),
			Err(why) => ignored.push((*a, why)),
		}
	}
	let Some(broadcast) = sane.iter().map(|a| a.broadcast).max() else {
		return (None, ignored);
	};
	let mut nexts: Vec<u64> =
		sane.iter().filter(|a| a.broadcast == broadcast).map(|a| a.next_sequence).collect();
	nexts.sort_unstable();
	let median = nexts[(nexts.len() - 1) / 2];
	let bound = median.saturating_add(MAX_EXPECT_LEAD);
	for &n in nexts.iter().filter(|&&n| n > bound) {
		let why = format!(
			"next_sequence {n} is more than {MAX_EXPECT_LEAD} ahead of the others ({median})"
		);
		ignored.push((Held { broadcast, next_sequence: n }, why));
	}
	let next_sequence = nexts.into_iter().filter(|&n| n <= bound).max().unwrap_or(median);
	(Some(Held { broadcast, next_sequence }), ignored)
}

/// Settings of a publisher.
#[derive(Clone)]
pub struct PublishConfig {
	/// Streamer endpoints to push to.
	pub servers: Vec<Endpoint>,
	/// The stream.
	pub stream: StreamId,
	/// The stream's origin key: signs each connection's `Publish` proof (a server gives a
	/// stream slot only to a publisher that proves it holds the key).
	pub origin: sp_core::sr25519::Pair,
	/// Genesis hash the stream is registered on.
	pub genesis_hash: Hash32,
	/// Backlog and in-flight limits per server.
	pub queue: QueueConfig,
	/// How QUIC server certificates are checked.
	pub verification: tls::ServerVerification,
	/// First reconnect delay, doubled per failure. Default 200 ms.
	pub reconnect_backoff: Duration,
	/// Longest reconnect delay. Default 5 s.
	pub max_reconnect_backoff: Duration,
	/// A write or a `Welcome` that takes longer fails the connection. Default 10 s.
	pub io_timeout: Duration,
}

impl std::fmt::Debug for PublishConfig {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		use sp_core::Pair as _;
		f.debug_struct("PublishConfig")
			.field("servers", &self.servers)
			.field("stream", &self.stream)
			.field("origin", &self.origin.public())
			.field("genesis_hash", &hex::encode(self.genesis_hash))
			.field("queue", &self.queue)
			.finish_non_exhaustive()
	}
}

impl PublishConfig {
	/// Defaults for `stream`, whose origin key is `origin`, on `servers`.
	pub fn new(stream: StreamId, servers: Vec<Endpoint>, origin: sp_core::sr25519::Pair) -> Self {
		Self {
			servers,
			stream,
			origin,
			genesis_hash: [0; 32],
			queue: QueueConfig::default(),
			verification: tls::ServerVerification::InsecureSkip,
			reconnect_backoff: Duration::from_millis(200),
			max_reconnect_backoff: Duration::from_secs(5),
			io_timeout: Duration::from_secs(10),
		}
	}
}

/// What one server task achieved.
#[derive(Clone, Debug)]
pub struct ServerReport {
	/// The endpoint.
	pub server: Endpoint,
	/// Segments acknowledged.
	pub acked: u64,
	/// Segments dropped from a full backlog.
	pub dropped: u64,
	/// Segments dropped because the server refused them as malformed.
	pub refused: u64,
	/// Connections made.
	pub connections: u64,
	/// Whether every segment and the end were acknowledged.
	pub complete: bool,
}

#[derive(Clone)]
enum Cmd {
	Segment(Arc<Segment>),
	Finish(Signed<StreamEnd>),
}

/// A running publisher.
pub struct Publisher {
	senders: Vec<mpsc::UnboundedSender<Cmd>>,
	tasks: Vec<JoinHandle<ServerReport>>,
	/// Per server: its first `Expect`, once it arrived.
	expects: Vec<watch::Receiver<Option<Held>>>,
}

impl Publisher {
	/// Starts one task per server.
	pub fn start(config: PublishConfig) -> io::Result<Publisher> {
		let quic = if config.servers.iter().any(|s| s.transport == Transport::Quic) {
			let endpoint = tls::endpoint(([0, 0, 0, 0], 0).into(), None, tls::DEFAULT_UDP_BUFFER)?;
			let cfg = tls::client_config(
				config.verification,
				Duration::from_secs(10),
				Duration::from_secs(1),
			)?;
			Some((endpoint, cfg))
		} else {
			None
		};
		let config = Arc::new(config);
		let mut senders = Vec::new();
		let mut tasks = Vec::new();
		let mut expects = Vec::new();
		for server in config.servers.clone() {
			// Unbounded on purpose: at most one command per segment (every ~2 s) and the task
			// drains it continuously into its bounded `PublishQueue`, connected or not.
			let (tx, rx) = mpsc::unbounded_channel();
			let (expect_tx, expect_rx) = watch::channel(None);
			senders.push(tx);
			expects.push(expect_rx);
			tasks.push(tokio::spawn(run_server(
				config.clone(),
				server,
				quic.clone(),
				rx,
				expect_tx,
			)));
		}
		Ok(Publisher { senders, tasks, expects })
	}

	/// Where to number the first segment: the newest broadcast the servers hold and the
	/// highest `next_sequence` they announced for it (each server holds everything below its
	/// own), as [`choose_resume`] picks it; implausible answers are logged and ignored. Waits
	/// until every server answered or `timeout` passed; `None` if none answered, when the
	/// caller must choose itself.
	pub async fn resume_point(&self, timeout: Duration) -> Option<Held> {
		let deadline = tokio::time::Instant::now() + timeout;
		for rx in &self.expects {
			let mut rx = rx.clone();
			let _ = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
		}
		let answers: Vec<Held> = self.expects.iter().filter_map(|rx| *rx.borrow()).collect();
		let (chosen, ignored) = choose_resume(&answers, new_broadcast_id());
		for (held, why) in ignored {
			warn!(broadcast = ?held.broadcast, next_sequence = held.next_sequence, %why, "a server's Expect ignored");
		}
		chosen
	}

	/// Queues a signed segment for every server.
	pub fn push(&self, segment: Arc<Segment>) {
		for s in &self.senders {
			let _ = s.send(Cmd::Segment(segment.clone()));
		}
	}

	/// Stops at once without ending the stream, as a crash would: unacknowledged segments are
	/// lost here (the servers keep what they stored).
	pub fn abort(self) {
		for t in self.tasks {
			t.abort();
		}
	}

	/// Ends the stream with the origin-signed `end` and waits (at most `timeout`) until every
	/// server acknowledged everything.
	pub async fn finish(self, end: Signed<StreamEnd>, timeout: Duration) -> Vec<ServerReport> {
		for s in &self.senders {
			let _ = s.send(Cmd::Finish(end.clone()));
		}
		let mut reports = Vec::new();
		let deadline = tokio::time::Instant::now() + timeout;
		for t in self.tasks {
			let abort = t.abort_handle();
			match tokio::time::timeout_at(deadline, t).await {
				Ok(Ok(r)) => reports.push(r),
				_ => abort.abort(),
			}
		}
		reports
	}
}

/// Signs media as segments, numbers them, records them if asked, and hands them to a
/// [`Publisher`]: what every input shares (MPEG-TS with [`publish_ts`], an HLS muxer's
/// directory with [`crate::net::hls_ingest::follow_hls_dir`], the node's demo stream).
pub struct SegmentSigner {
	pair: sp_core::sr25519::Pair,
	genesis_hash: Hash32,
	stream: StreamId,
	broadcast: u64,
	chunk_size: u32,
	record_dir: Option<PathBuf>,
	log_segments: bool,
	first: u64,
	next: u64,
}

impl SegmentSigner {
	/// Signs `stream` on `genesis_hash` with the origin key `pair`, cutting segments into
	/// `chunk_size` chunks, as broadcast `at.broadcast` numbered from `at.next_sequence`.
	pub fn new(
		pair: sp_core::sr25519::Pair,
		genesis_hash: Hash32,
		stream: StreamId,
		chunk_size: u32,
		at: Resume,
	) -> Self {
		Self {
			pair,
			genesis_hash,
			stream,
			broadcast: at.broadcast,
			chunk_size,
			record_dir: None,
			log_segments: false,
			first: at.next_sequence,
			next: at.next_sequence,
		}
	}

	/// The broadcast the segments are signed with.
	pub fn broadcast(&self) -> u64 {
		self.broadcast
	}

	/// Also writes every segment's media to `<dir>/<sequence>.ts` (the directory must exist).
	pub fn record_to(mut self, dir: Option<PathBuf>) -> Self {
		self.record_dir = dir;
		self
	}

	/// Logs every segment published (`info`); off by default, for a publisher that runs inside
	/// a longer-lived process (the node's demo).
	pub fn log_each_segment(mut self) -> Self {
		self.log_segments = true;
		self
	}

	/// The sequence number the next segment gets.
	pub fn next_sequence(&self) -> u64 {
		self.next
	}

	/// Segments published so far.
	pub fn published(&self) -> u64 {
		self.next - self.first
	}

	/// Records `data` if asked, signs it as the next segment and queues it on `publisher`.
	/// Fails when the recording cannot be written, or when the sequence numbers ran out
	/// (`u64::MAX` is reserved: receivers count `sequence + 1`); nothing is published then.
	pub fn push(&mut self, publisher: &Publisher, data: Bytes, duration_ms: u32) -> io::Result<()> {
		let seq = self.next;
		let Some(next) = seq.checked_add(1) else {
			return Err(io::Error::other(format!(
				"sequence numbers of broadcast {} exhausted; start a new broadcast",
				self.broadcast
			)));
		};
		if let Some(dir) = &self.record_dir {
			std::fs::write(dir.join(format!("{seq}.ts")), &data)?;
		}
		let bytes = data.len();
		let seg = Segment::build(
			&self.pair,
			self.genesis_hash,
			self.stream,
			self.broadcast,
			seq,
			duration_ms,
			data,
			self.chunk_size,
		);
		if self.log_segments {
			info!(seq, bytes, duration_ms = seg.duration_ms(), "segment published");
		}
		publisher.push(Arc::new(seg));
		self.next = next;
		Ok(())
	}

	/// The origin-signed end of the stream after the segments published so far.
	pub fn end(&self) -> Signed<StreamEnd> {
		let end = StreamEnd {
			genesis_hash: self.genesis_hash,
			stream: self.stream,
			broadcast: self.broadcast,
			next_sequence: self.next,
		};
		Signed::sign(end, &self.pair)
	}
}

/// Reads MPEG-TS from `input` until it ends, cuts it at key frames ([`TsSegmenter`] with
/// `config`; what is left at the end is the last segment) and publishes every segment through
/// `signer`. Fails when `input` fails or a recording cannot be written.
pub async fn publish_ts<R: AsyncRead + Unpin>(
	mut input: R,
	config: TsConfig,
	publisher: &Publisher,
	signer: &mut SegmentSigner,
) -> io::Result<()> {
	let mut segmenter = TsSegmenter::new(config);
	let mut buf = vec![0u8; 64 * 1024];
	let mut eof = false;
	while !eof {
		let n = input.read(&mut buf).await?;
		if n == 0 {
			segmenter.finish();
			eof = true;
		} else {
			segmenter.push(&buf[..n]);
		}
		while let Some(ts) = segmenter.poll_segment() {
			if ts.forced {
				warn!(
					seq = signer.next_sequence(),
					bytes = ts.data.len(),
					"segment cut without a key frame (max size)"
				);
			}
			signer.push(publisher, ts.data, ts.duration_ms)?;
		}
	}
	let stats = segmenter.stats();
	info!(packets = stats.packets, resync_bytes = stats.resync_bytes, "MPEG-TS input ended");
	Ok(())
}

async fn connect(
	server: Endpoint,
	quic: &Option<(quinn::Endpoint, quinn::ClientConfig)>,
) -> io::Result<(BoxRead, BoxWrite, Option<quinn::Connection>)> {
	super::open_stream(server.transport, server.addr, quic.as_ref().map(|(e, c)| (e, c))).await
}

fn apply(q: &mut PublishQueue, cmd: Cmd) {
	match cmd {
		Cmd::Segment(s) => q.push(s),
		Cmd::Finish(end) => q.finish(end),
	}
}

async fn run_server(
	config: Arc<PublishConfig>,
	server: Endpoint,
	quic: Option<(quinn::Endpoint, quinn::ClientConfig)>,
	mut rx: mpsc::UnboundedReceiver<Cmd>,
	expect: watch::Sender<Option<Held>>,
) -> ServerReport {
	let mut q = PublishQueue::new(config.stream, config.queue.clone());
	let mut connections = 0;
	let mut failures = 0u32;
	let mut input_open = true;
	loop {
		let outcome =
			session(&config, server, &quic, &mut q, &mut rx, &mut input_open, &expect).await;
		q.handle_disconnected();
		while let Some(r) = q.poll_refused() {
			warn!(%server, sequence = r.sequence, reason = %r.reason, refused = q.refused(), "segment dropped: the server cannot take it");
		}
		connections += 1;
		match outcome {
			Ok(true) => break,
			Ok(false) => failures = 0,
			Err(e) => {
				failures += 1;
				warn!(%server, error = %e, backlog = q.backlog(), "publish connection failed; will reconnect");
			}
		}
		if !input_open && q.backlog() == 0 && q.is_done() {
			break;
		}
		let delay = (config.reconnect_backoff * 2u32.pow(failures.min(16)))
			.min(config.max_reconnect_backoff);
		// Keep taking segments while waiting, so none is lost.
		let sleep = tokio::time::sleep(delay);
		tokio::pin!(sleep);
		loop {
			tokio::select! {
				_ = &mut sleep => break,
				c = rx.recv(), if input_open => match c {
					Some(c) => apply(&mut q, c),
					None => input_open = false,
				},
			}
		}
	}
	let report = ServerReport {
		server,
		acked: q.acked(),
		dropped: q.dropped(),
		refused: q.refused(),
		connections,
		complete: q.is_done(),
	};
	info!(%server, acked = report.acked, dropped = report.dropped, refused = report.refused, "publishing finished");
	report
}

/// One connection. `Ok(true)` when everything is acknowledged and the end confirmed.
async fn session(
	config: &PublishConfig,
	server: Endpoint,
	quic: &Option<(quinn::Endpoint, quinn::ClientConfig)>,
	q: &mut PublishQueue,
	rx: &mut mpsc::UnboundedReceiver<Cmd>,
	input_open: &mut bool,
	expect: &watch::Sender<Option<Held>>,
) -> io::Result<bool> {
	let t = config.io_timeout;
	let (mut r, mut w, conn) = tokio::time::timeout(t, connect(server, quic))
		.await
		.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
	let hello = Message::Hello {
		version: PROTOCOL_VERSION,
		role: Role::Publisher,
		genesis_hash: config.genesis_hash,
	};
	write_frames(&mut w, &[encode_frame(&hello)], t).await?;
	let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
	let mut answer = async || {
		let m = tokio::time::timeout(t, read_message(&mut r, &mut dec))
			.await
			.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer from the server"))?;
		match m {
			Ok(Some(Message::Error { code, reason })) => {
				Err(io::Error::other(format!("server refused: {code:?}: {reason}")))
			}
			Ok(Some(m)) => Ok(m),
			Ok(None) => Err(io::Error::other("server closed the connection")),
			Err(e) => Err(io::Error::other(e.to_string())),
		}
	};
	let (max_frame_len, challenge) = match answer().await? {
		Message::Welcome { max_frame_len, challenge, .. } => (max_frame_len, challenge),
		other => return Err(io::Error::other(format!("expected welcome, got {}", other.kind()))),
	};
	let proof = publish_proof(&config.origin, config.genesis_hash, challenge, config.stream);
	let publish = Message::Publish { stream: config.stream, proof };
	write_frames(&mut w, &[encode_frame(&publish)], t).await?;
	let held = match answer().await? {
		Message::Expect { broadcast, next_sequence, .. } => Held { broadcast, next_sequence },
		other => return Err(io::Error::other(format!("expected expect, got {}", other.kind()))),
	};
	// A server that lies about what it holds would make this publisher skip segments or
	// number past the end of the sequence space: not believed, the connection is dropped.
	if let Err(why) = check_expect(&held, new_broadcast_id()) {
		return Err(io::Error::other(format!("implausible Expect ignored: {why}")));
	}
	if let (Some(theirs), Some(ours)) = (held.broadcast, q.broadcast()) {
		if theirs > ours {
			return Err(io::Error::other(format!(
				"the server holds broadcast {theirs}, newer than this publisher's {ours}: \
				 it refuses this broadcast's segments"
			)));
		}
	}
	expect.send_if_modified(|e| e.is_none() && e.insert(held) == &held);
	q.handle_connected(max_frame_len, held.broadcast, held.next_sequence);
	info!(%server, backlog = q.backlog(), broadcast = ?held.broadcast, next_sequence = held.next_sequence, "publishing");
	let mut ping = tokio::time::interval(Duration::from_secs(5));
	let result = loop {
		let mut written = Ok(());
		while let Some(frames) = q.poll_transmit() {
			written = write_frames(&mut w, &frames, t).await;
			if written.is_err() {
				break;
			}
		}
		if let Err(e) = written {
			// The server may have closed on purpose: its acks and `Error` are still readable
			// and say which segment it refused.
			read_leftovers(&mut r, &mut dec, q).await;
			break Err(e);
		}
		if q.is_done() {
			break Ok(true);
		}
		tokio::select! {
			m = read_message(&mut r, &mut dec) => match handle_answer(q, m) {
				Ok(()) => {},
				Err(e) => break Err(e),
			},
			c = rx.recv(), if *input_open => match c {
				Some(c) => apply(q, c),
				None => *input_open = false,
			},
			_ = ping.tick() => {
				if let Err(e) = write_frames(&mut w, &[encode_frame(&Message::Ping(0))], t).await {
					read_leftovers(&mut r, &mut dec, q).await;
					break Err(e);
				}
			},
		}
	};
	drop(w);
	if let Some(c) = conn {
		c.close(0u32.into(), b"done");
	}
	result
}

/// How long a publisher whose write failed keeps reading what the server sent before closing.
const LEFTOVER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Applies one message from the server; `Err` when the connection is over.
fn handle_answer(q: &mut PublishQueue, m: Result<Option<Message>, ReadError>) -> io::Result<()> {
	match m {
		Ok(Some(Message::Ack { sequence, .. })) => q.handle_ack(sequence),
		Ok(Some(Message::End { .. })) => q.handle_end_confirmed(),
		Ok(Some(Message::Pong(_))) => {}
		Ok(Some(Message::Error { code, reason })) => {
			q.handle_refused(code, &reason);
			return Err(io::Error::other(format!("server closed: {code:?}: {reason}")));
		}
		Ok(Some(other)) => return Err(io::Error::other(format!("unexpected {}", other.kind()))),
		Ok(None) => return Err(io::Error::other("server closed the connection")),
		Err(ReadError::Io(e)) => return Err(e),
		Err(ReadError::Frame(e)) => return Err(io::Error::other(e.to_string())),
	}
	Ok(())
}

/// After a failed write: takes the acks and the `Error` the server sent before it closed, for
/// at most [`LEFTOVER_READ_TIMEOUT`].
async fn read_leftovers(r: &mut BoxRead, dec: &mut FrameDecoder, q: &mut PublishQueue) {
	let _ = tokio::time::timeout(LEFTOVER_READ_TIMEOUT, async {
		while handle_answer(q, read_message(r, dec).await).is_ok() {}
	})
	.await;
}

#[cfg(test)]
mod tests {
	use super::*;
	use sp_core::Pair;

	/// A server that answers `Expect { next_sequence: u64::MAX }` must not make the publisher
	/// number past the end of the sequence space: the signer fails instead of overflowing.
	#[tokio::test]
	async fn a_signer_at_the_end_of_the_sequence_space_fails_without_overflow() {
		let publisher = Publisher::start(PublishConfig::new(
			1,
			vec![],
			sp_core::sr25519::Pair::from_seed(&[1; 32]),
		))
		.unwrap();
		let pair = sp_core::sr25519::Pair::from_string("//Origin", None).unwrap();
		let at = Resume { broadcast: 0, next_sequence: u64::MAX - 1 };
		let mut signer = SegmentSigner::new(pair, [0; 32], 1, 1024, at);
		assert!(signer.push(&publisher, Bytes::from_static(b"x"), 2000).is_ok());
		let err = signer.push(&publisher, Bytes::from_static(b"x"), 2000);
		assert!(err.is_err(), "u64::MAX is not a sequence a receiver accepts");
		assert_eq!(signer.published(), 1);
	}

	/// One server answering `u64::MAX`, or a broadcast from the future, is outvoted or
	/// ignored; honest answers decide.
	#[test]
	fn implausible_expects_are_ignored() {
		let now = 10_000_000;
		let held = |b: Option<u64>, n: u64| Held { broadcast: b, next_sequence: n };
		let (chosen, ignored) = choose_resume(&[held(Some(5), 10), held(Some(5), u64::MAX)], now);
		assert_eq!(chosen, Some(held(Some(5), 10)));
		assert_eq!(ignored.len(), 1);
		let (chosen, _) = choose_resume(&[held(Some(5), 10), held(Some(5), 1 << 40)], now);
		assert_eq!(chosen, Some(held(Some(5), 10)), "far ahead of the others");
		let (chosen, _) = choose_resume(&[held(Some(5), 10), held(Some(u64::MAX), 3)], now);
		assert_eq!(chosen, Some(held(Some(5), 10)), "a broadcast from the future");
		let (chosen, _) =
			choose_resume(&[held(None, 0), held(Some(5), 10), held(Some(5), 12)], now);
		assert_eq!(chosen, Some(held(Some(5), 12)), "the newest broadcast, its highest next");
		assert_eq!(choose_resume(&[held(Some(5), u64::MAX)], now).0, None);
		assert_eq!(held(None, 0).resume_or(7), Resume { broadcast: 7, next_sequence: 0 });
	}
}
