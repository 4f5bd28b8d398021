//! The publisher driver: one task per streamer endpoint, each with its own
//! [`PublishQueue`], reconnecting with backoff and resending what was not acknowledged.
//! [`Publisher::resume_point`] tells a restarted publisher where the servers want it to
//! continue (their `Expect`).
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
	/// Per server: the `next_sequence` of its first `Expect`, once it arrived.
	expects: Vec<watch::Receiver<Option<u64>>>,
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

	/// Where to number the first segment: the highest `next_sequence` the servers announced
	/// (each server holds everything below its own). Waits until every server answered or
	/// `timeout` passed; `None` if none answered, when the caller must choose itself.
	pub async fn resume_point(&self, timeout: Duration) -> Option<u64> {
		let deadline = tokio::time::Instant::now() + timeout;
		for rx in &self.expects {
			let mut rx = rx.clone();
			let _ = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
		}
		self.expects.iter().filter_map(|rx| *rx.borrow()).max()
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
	chunk_size: u32,
	record_dir: Option<PathBuf>,
	log_segments: bool,
	first: u64,
	next: u64,
}

impl SegmentSigner {
	/// Signs `stream` on `genesis_hash` with the origin key `pair`, cutting segments into
	/// `chunk_size` chunks and numbering them from `first_sequence`.
	pub fn new(
		pair: sp_core::sr25519::Pair,
		genesis_hash: Hash32,
		stream: StreamId,
		chunk_size: u32,
		first_sequence: u64,
	) -> Self {
		Self {
			pair,
			genesis_hash,
			stream,
			chunk_size,
			record_dir: None,
			log_segments: false,
			first: first_sequence,
			next: first_sequence,
		}
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
	/// Fails only when the recording cannot be written (nothing is published then).
	pub fn push(&mut self, publisher: &Publisher, data: Bytes, duration_ms: u32) -> io::Result<()> {
		let seq = self.next;
		if let Some(dir) = &self.record_dir {
			std::fs::write(dir.join(format!("{seq}.ts")), &data)?;
		}
		let bytes = data.len();
		let seg = Segment::build(
			&self.pair,
			self.genesis_hash,
			self.stream,
			seq,
			duration_ms,
			data,
			self.chunk_size,
		);
		if self.log_segments {
			info!(seq, bytes, duration_ms = seg.duration_ms(), "segment published");
		}
		publisher.push(Arc::new(seg));
		self.next += 1;
		Ok(())
	}

	/// The origin-signed end of the stream after the segments published so far.
	pub fn end(&self) -> Signed<StreamEnd> {
		let end = StreamEnd {
			genesis_hash: self.genesis_hash,
			stream: self.stream,
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
	expect: watch::Sender<Option<u64>>,
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
	expect: &watch::Sender<Option<u64>>,
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
	let next_sequence = match answer().await? {
		Message::Expect { next_sequence, .. } => next_sequence,
		other => return Err(io::Error::other(format!("expected expect, got {}", other.kind()))),
	};
	expect.send_if_modified(|e| e.is_none() && e.insert(next_sequence) == &next_sequence);
	q.handle_connected(max_frame_len, next_sequence);
	info!(%server, backlog = q.backlog(), next_sequence, "publishing");
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
