//! [`SessionDriver`]: the event loop of one connection, moving frames, window changes and
//! timers between the socket, the shared windows and the sans-IO cores ([`ServerSession`] for
//! the protocol, [`SessionControl`] for the driver's own decisions).

use super::{
	accept::write_loop,
	control::{JoinStream, SessionControl},
	shared::{Shared, StreamSlot},
};
use crate::{
	net::{read_frame, vod::VodStream, FrameSink, ReadError},
	protocol::{encode_frame, ErrorCode, FrameDecoder, Message, PeerInfo, Role, Transport},
	segment::Segment,
	server::{Inserted, ServerSession, SessionEvent},
};
use bytes::Bytes;
use dsp_primitives::{PublicKey, Signed, StreamEnd, StreamId};
use std::{
	net::SocketAddr,
	sync::{atomic::Ordering, Arc},
	time::Duration,
};
use tokio::{
	io::AsyncRead,
	sync::{mpsc, watch},
	task::JoinHandle,
};
use tracing::{debug, info, warn};

/// Segments taken from a window per lookup.
const LOOKUP_BATCH: usize = 8;

/// Frames in flight between the session and its writer task. The session's own queue is the
/// real buffer; this only lets the writer run while the session reads.
const WRITER_CHANNEL: usize = 16;

/// Runs one connection until it closes; returns the writer if it ended cleanly (for a graceful
/// shutdown of the socket).
pub(super) async fn run_session<R, W>(
	shared: Arc<Shared>,
	peer: SocketAddr,
	transport: Transport,
	reader: R,
	writer: W,
	shutdown: watch::Receiver<bool>,
) -> Option<W>
where
	R: AsyncRead + Unpin + Send + 'static,
	W: FrameSink,
{
	let (tx, rx) = mpsc::channel::<Bytes>(WRITER_CHANNEL);
	let writer_task = tokio::spawn(write_loop(writer, rx, shared.config.write_stall_timeout));
	SessionDriver::new(shared, peer, transport, writer_task).run(reader, tx, shutdown).await
}

/// One connection's driver: the cores, the window it reads or writes, and the writer task.
pub(super) struct SessionDriver<W> {
	shared: Arc<Shared>,
	peer: SocketAddr,
	/// The seeding rotation's id of this session.
	session_id: u64,
	core: ServerSession,
	control: SessionControl,
	dec: FrameDecoder,
	/// The window of the stream, once the session has one.
	slot: Option<Arc<StreamSlot>>,
	/// Changes of `slot`'s window.
	changed: Option<watch::Receiver<u64>>,
	/// The recording served on demand, if the stream is not live here.
	vod: Option<VodStream>,
	writer_task: JoinHandle<Option<W>>,
	/// What the writer task returned, once it ended.
	writer_done: Option<Option<W>>,
}

impl<W: FrameSink> SessionDriver<W> {
	/// A new connection from `peer`, whose frames `writer_task` writes.
	pub(super) fn new(
		shared: Arc<Shared>,
		peer: SocketAddr,
		transport: Transport,
		writer_task: JoinHandle<Option<W>>,
	) -> Self {
		shared.connections.fetch_add(1, Ordering::Relaxed);
		let session_id = shared.next_session.fetch_add(1, Ordering::Relaxed);
		let cfg = &shared.config;
		let core = ServerSession::new(shared.now(), cfg.session.clone());
		let dec = FrameDecoder::new(cfg.session.max_frame_len);
		Self {
			peer,
			session_id,
			core,
			control: SessionControl::new(transport),
			dec,
			slot: None,
			changed: None,
			vod: None,
			writer_task,
			writer_done: None,
			shared,
		}
	}

	/// The loop: act on the core's events, feed it segments, count, then wait for the next
	/// frame, room in `tx` (the writer task's channel), window change, timer or shutdown.
	pub(super) async fn run<R>(
		mut self,
		mut reader: R,
		tx: mpsc::Sender<Bytes>,
		mut shutdown: watch::Receiver<bool>,
	) -> Option<W>
	where
		R: AsyncRead + Unpin + Send + 'static,
	{
		loop {
			while let Some(ev) = self.core.poll_event() {
				self.handle_event(ev).await;
			}
			self.feed_live();
			self.feed_vod().await;
			let freed = self.slot.as_ref().is_some_and(|s| s.freed.load(Ordering::Relaxed));
			if self.control.must_close_freed(freed) {
				self.core.close(
					ErrorCode::UnknownStream,
					"stream freed: ended, idle or never published",
				);
			}
			self.count();
			if self.control.is_done(self.core.is_closed(), self.core.has_transmit()) {
				break;
			}
			let deadline = self.core.poll_timeout().map(|at| self.shared.clock.instant(at));
			let changed = self.changed.as_mut();
			let watching = changed.is_some();
			tokio::select! {
				r = read_frame(&mut reader, &mut self.dec), if self.control.reading(self.core.is_closed()) => {
					self.handle_read(r);
				},
				permit = tx.reserve(), if self.core.has_transmit() && self.control.writing() => {
					let sent = permit.map(|p| p.send(self.core.poll_transmit().expect("has_transmit; qed")));
					// The writer task ended: the peer is gone or stopped reading.
					if sent.is_err() {
						self.handle_writer_gone();
					}
				},
				// Also while not wanting segments: a freed slot must close its sessions.
				r = async { changed.expect("guarded; qed").changed().await }, if watching => {
					if r.is_err() {
						self.changed = None;
					}
				},
				_ = async { tokio::time::sleep_until(deadline.expect("guarded; qed")).await }, if deadline.is_some() => {
					self.core.handle_timeout(self.shared.now());
				},
				_ = shutdown.changed() => self.core.close(ErrorCode::Shutdown, "server shutting down"),
				r = &mut self.writer_task, if self.writer_done.is_none() => {
					self.writer_done = Some(r.ok().flatten());
					self.handle_writer_gone();
				},
			}
		}
		drop(tx);
		self.finish().await
	}

	/// Releases what the session held (admission slot, swarm membership) and waits for the
	/// writer to flush.
	async fn finish(self) -> Option<W> {
		let SessionDriver { shared, control, slot, writer_task, writer_done, session_id, .. } =
			self;
		if let Some(mode) = control.admitted() {
			shared.admission.lock().release(mode);
			shared.sessions.slot(mode, control.transport()).fetch_sub(1, Ordering::Relaxed);
		}
		if let (Some((stream, peer_id)), Some(t)) = (control.joined(), &shared.tracker) {
			t.lock().handle_leave(*stream, peer_id);
			if let Some(s) = &slot {
				s.seeding().rotation.handle_peer_left(session_id);
			}
		}
		match writer_done {
			Some(w) => w,
			None => tokio::time::timeout(Duration::from_secs(2), writer_task).await.ok()?.ok()?,
		}
	}

	async fn handle_event(&mut self, ev: SessionEvent) {
		match ev {
			SessionEvent::AdmissionRequest => self.handle_admission_request(),
			SessionEvent::Switched { from } => self.handle_switched(from),
			SessionEvent::JoinRequest { stream, viewer, peer } => {
				self.handle_join_request(stream, viewer, peer)
			}
			SessionEvent::FetchRequest { sequence, index, .. } => {
				self.handle_fetch_request(sequence, index)
			}
			SessionEvent::Subscribed(id) => self.handle_subscribed(id).await,
			SessionEvent::Publishing(id) => self.handle_publishing(id),
			SessionEvent::SegmentReceived(seg) => self.handle_segment_received(seg).await,
			SessionEvent::End(end) => self.handle_end(end).await,
			SessionEvent::Closed { code, reason } => self.handle_closed(code, reason),
		}
	}

	fn handle_admission_request(&mut self) {
		let (peer, transport) = (self.peer, self.control.transport());
		let r = self.shared.admission.lock().try_admit();
		self.control.handle_admission(r);
		if let Some(mode) = self.control.admitted() {
			self.shared.sessions.slot(mode, transport).fetch_add(1, Ordering::Relaxed);
		}
		let redirect = match r {
			Ok(_) => Vec::new(),
			Err(_) => self.shared.next_redirect(),
		};
		if !redirect.is_empty() {
			info!(%peer, %transport, first = %redirect[0], servers = redirect.len(), "viewer refused as full; redirected");
		}
		self.core.handle_admission_or_redirect(self.shared.now(), r, redirect);
	}

	fn handle_switched(&mut self, from: Transport) {
		let to = self.control.transport();
		self.shared.switches[usize::from(to == Transport::Quic)].fetch_add(1, Ordering::Relaxed);
		info!(peer = %self.peer, stream = ?self.control.stream(), %from, %to, "viewer switched transport");
	}

	fn handle_join_request(&mut self, stream: StreamId, viewer: PublicKey, info: PeerInfo) {
		self.control.handle_join_request(stream);
		let peer_id = info.peer_id.clone();
		let known = self.shared.config.session.origin_keys.get(stream).is_some();
		let opened = match known {
			false => None,
			true => Some(match self.shared.table().get(stream) {
				Some(s) => Ok(s),
				None => self.shared.open_stream(stream, Role::Viewer),
			}),
		};
		let found = match &opened {
			None => JoinStream::Unknown,
			Some(Err(code)) => JoinStream::Refused(*code),
			Some(Ok(_)) => JoinStream::Held,
		};
		let shared = self.shared.clone();
		let r = SessionControl::admit_join(stream, found, shared.tracker.as_ref()).and_then(|t| {
			self.slot = opened.and_then(Result::ok);
			t.lock().handle_join(stream, viewer, info).map_err(SessionControl::tracker_refusal)
		});
		if let (Ok((_, peers)), Some(s)) = (&r, &self.slot) {
			info!(peer = %self.peer, stream, peers = peers.len(), session_id = self.session_id, "p2p viewer joined");
			self.control.handle_joined(stream, peer_id);
			// Headers and seeded chunks follow the window from now on.
			s.seeding().rotation.handle_peer_joined(self.session_id);
			self.changed = Some(s.changed.subscribe());
		}
		self.core.handle_joined(self.shared.now(), r);
	}

	fn handle_fetch_request(&mut self, sequence: u64, index: u32) {
		let segment = self
			.slot
			.as_ref()
			.and_then(|s| s.window.lock().lookup(sequence, 1).segments.into_iter().next());
		debug!(peer = %self.peer, sequence, index, held = segment.is_some(), "p2p fetch");
		self.core.handle_fetch(self.shared.now(), sequence, index, segment);
	}

	async fn handle_subscribed(&mut self, id: StreamId) {
		let (peer, transport, role) = (self.peer, self.control.transport(), self.control.role());
		self.control.handle_subscribed(id);
		let cfg = &self.shared.config;
		let live = self.shared.table().get(id);
		let recorded = match (&live, &cfg.vod_dir) {
			(None, Some(dir)) => match VodStream::open(dir, id, cfg.session.max_frame_len).await {
				Ok(v) => v,
				Err(e) => {
					warn!(%peer, stream = id, error = %e, "recording unusable");
					self.core.close(
						ErrorCode::UnknownStream,
						format!("recording of stream {id} unusable"),
					);
					None
				}
			},
			_ => None,
		};
		if let Some(v) = recorded {
			self.shared.vod_sessions.fetch_add(1, Ordering::Relaxed);
			info!(%peer, %transport, %role, stream = id, segments = v.len(), "on-demand session started");
			self.vod = Some(v);
		} else if !self.core.is_closed() {
			// Live, or waiting (bounded) for a publisher of a stream with a key.
			match live.map_or_else(|| self.shared.open_stream(id, Role::Viewer), Ok) {
				Ok(s) => {
					self.changed = Some(s.changed.subscribe());
					self.slot = Some(s);
					info!(%peer, %transport, %role, stream = id, "session started");
				}
				Err(code) => self.core.close(code, "too many streams held"),
			}
		}
	}

	fn handle_publishing(&mut self, id: StreamId) {
		self.control.handle_publishing(id);
		let (peer, transport, role) = (self.peer, self.control.transport(), self.control.role());
		match self.shared.open_stream(id, Role::Publisher) {
			Ok(s) => {
				let (broadcast, next_sequence) = s.window.lock().held();
				self.core.handle_publish_ready(self.shared.now(), broadcast, next_sequence);
				self.changed = Some(s.changed.subscribe());
				self.slot = Some(s);
				info!(%peer, %transport, %role, stream = id, ?broadcast, next_sequence, "session started");
			}
			Err(code) => self.core.close(code, "too many streams held"),
		}
	}

	async fn handle_segment_received(&mut self, seg: Segment) {
		let (id, seq) = (seg.stream(), seg.sequence());
		let freed = self.slot.as_ref().is_some_and(|s| s.freed.load(Ordering::Relaxed));
		if self.control.must_reopen_window(freed) {
			// Freed while this publisher was silent: continue in a new window.
			match self.shared.open_stream(id, Role::Publisher) {
				Ok(s) => {
					self.changed = Some(s.changed.subscribe());
					self.slot = Some(s);
				}
				Err(code) => {
					self.core.close(code, "too many streams held");
					self.slot = None;
				}
			}
		}
		let Some(s) = &self.slot else { return };
		let seg = Arc::new(seg);
		let (r, mark) = s.update(|w| {
			let r = w.insert(seg.clone());
			if r == Ok(Inserted::Stored) {
				// Before the sessions wake up to the new segment.
				s.seeding().assign(&seg);
			}
			(r, w.mark())
		});
		let r = match r {
			Ok(r) => r,
			Err(stale) => {
				warn!(peer = %self.peer, stream = id, seq, broadcast = seg.broadcast(), reason = %stale, "stale segment refused");
				return self.core.close(ErrorCode::UnexpectedMessage, stale.to_string());
			}
		};
		if r == Inserted::Stored {
			self.shared.segments_stored.fetch_add(1, Ordering::Relaxed);
			self.shared.table().handle_segment(self.shared.now(), id, mark);
			if let Some(rec) = &self.shared.recorder {
				if self.control.handle_stored() {
					if let Err(e) = rec.reopen(id, seg.broadcast()).await {
						warn!(stream = id, error = %e, "could not remove the recorded end");
					}
				}
				if let Err(e) = rec.segment(&seg).await {
					warn!(stream = id, seq, error = %e, "could not record segment");
				}
			}
		}
		debug!(peer = %self.peer, stream = id, seq, outcome = ?r, "segment from publisher");
	}

	async fn handle_end(&mut self, end: Signed<StreamEnd>) {
		let (stream, broadcast, next_sequence) =
			(end.payload.stream, end.payload.broadcast, end.payload.next_sequence);
		let frame = encode_frame(&Message::End(end.clone()));
		if let Some(s) = &self.slot {
			match s.update(|w| w.end(end).map(|()| w.mark())) {
				Ok(mark) => self.shared.table().handle_end(self.shared.now(), stream, mark),
				Err(stale) => {
					warn!(peer = %self.peer, stream, broadcast, reason = %stale, "stale end refused");
					return self.core.close(ErrorCode::UnexpectedMessage, stale.to_string());
				}
			}
		}
		if let Some(rec) = &self.shared.recorder {
			if let Err(e) = rec.end(stream, broadcast, frame).await {
				warn!(stream, error = %e, "could not record the end");
			}
		}
		info!(peer = %self.peer, stream, next_sequence, "publisher ended stream");
	}

	fn handle_closed(&mut self, code: Option<ErrorCode>, reason: String) {
		let (peer, transport, role) = (self.peer, self.control.transport(), self.control.role());
		let stream = self.control.stream();
		if code.is_some() {
			self.shared.closed_with_error.fetch_add(1, Ordering::Relaxed);
			warn!(%peer, %transport, %role, ?stream, ?code, %reason, "session closed");
		} else {
			info!(%peer, %transport, %role, ?stream, %reason, "session closed");
		}
	}

	/// Feeds the session from its live window: only when the window changed or the session
	/// drained a full queue; a lookup that filled the batch is repeated at once.
	fn feed_live(&mut self) {
		let (Some(_), Some(s), Some(rx)) =
			(self.core.wants_segments(), &self.slot, self.changed.as_mut())
		else {
			return self.control.handle_no_lookup();
		};
		if !self.control.should_look_up(*rx.borrow_and_update()) {
			return;
		}
		while let Some((_, from)) = self.core.wants_segments() {
			let lookup = s.window.lock().lookup(from, LOOKUP_BATCH);
			let full = lookup.segments.len() == LOOKUP_BATCH;
			if self.core.is_p2p() {
				let seeding = s.seeding();
				let session_id = self.session_id;
				self.core.handle_p2p_segments(self.shared.now(), lookup, |seg| {
					seeding.seeded(seg.sequence(), session_id)
				});
			} else {
				self.core.handle_segments(self.shared.now(), lookup);
			}
			if !full {
				break;
			}
		}
	}

	/// On demand: reads one segment of the recording per lookup, only while the session takes
	/// more.
	async fn feed_vod(&mut self) {
		let Some(v) = &self.vod else { return };
		if !self.control.vod_open() {
			return;
		}
		while let Some((_, from)) = self.core.wants_segments() {
			match v.lookup(from).await {
				Ok(lookup) => {
					let got = !lookup.segments.is_empty();
					self.core.handle_segments(self.shared.now(), lookup);
					let wants_more = self.core.wants_segments().is_some();
					if !self.control.handle_vod_lookup(got, wants_more) {
						break;
					}
				}
				Err(e) => {
					let stream = self.control.stream();
					warn!(peer = %self.peer, ?stream, error = %e, "recording unreadable");
					self.core.close(ErrorCode::UnknownStream, "recording unreadable");
					break;
				}
			}
		}
	}

	/// Adds what the session queued since the last call to the server's counters.
	fn count(&mut self) {
		let d = self.control.take_counts(self.core.stats(), self.core.is_p2p());
		let s = &self.shared;
		// Nothing to add in most turns of the loop: spare the shared counters' cache lines.
		for (counter, delta) in [
			(&s.bytes_sent, d.bytes_sent),
			(&s.bytes_sent_p2p, d.bytes_sent_p2p),
			(&s.p2p_media_due, d.p2p_media_due),
			(&s.p2p_chunk_bytes_sent, d.p2p_chunk_bytes),
		] {
			if delta > 0 {
				counter.fetch_add(delta, Ordering::Relaxed);
			}
		}
	}

	fn handle_read(&mut self, r: Result<Option<Bytes>, ReadError>) {
		let now = self.shared.now();
		match r {
			Ok(Some(body)) => self.core.handle_frame(now, body),
			Ok(None) => {
				self.core.handle_peer_closed();
			}
			Err(ReadError::Frame(e)) => self.core.handle_read_error(now, e),
			Err(ReadError::Io(e)) => {
				debug!(peer = %self.peer, error = %e, "read failed");
				self.core.handle_peer_closed();
			}
		}
	}

	/// The writer task ended or its channel closed: the peer is gone or stopped reading.
	fn handle_writer_gone(&mut self) {
		if self.control.handle_writer_gone(self.core.is_closed()) {
			self.core
				.close(ErrorCode::SlowConsumer, "write failed or stalled for write_stall_timeout");
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::{
		net::serve::ServeConfig,
		protocol::{decode_body, PROTOCOL_VERSION},
	};
	use dsp_primitives::AdmissionMode;
	use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

	struct Sink(WriteHalf<DuplexStream>);

	impl FrameSink for Sink {
		async fn send_frame(&mut self, frame: Bytes) -> std::io::Result<()> {
			self.0.write_all(&frame).await
		}
	}

	type Client = (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>, watch::Sender<bool>);

	/// A session on an in-memory connection: the client's halves, the server's shutdown signal
	/// (a session whose sender is gone shuts down) and the session's task.
	fn start(shared: &Arc<Shared>) -> (Client, JoinHandle<Option<Sink>>) {
		let (client, server) = tokio::io::duplex(64 * 1024);
		let (r, w) = tokio::io::split(server);
		let (stop, shutdown) = watch::channel(false);
		let peer = SocketAddr::from(([127, 0, 0, 1], 1));
		let task =
			tokio::spawn(run_session(shared.clone(), peer, Transport::Tcp, r, Sink(w), shutdown));
		let (cr, cw) = tokio::io::split(client);
		((cr, cw, stop), task)
	}

	async fn next_message(r: &mut ReadHalf<DuplexStream>, dec: &mut FrameDecoder) -> Message {
		let body = read_frame(r, dec).await.unwrap().expect("a frame");
		decode_body(body).unwrap()
	}

	#[tokio::test(start_paused = true)]
	async fn a_client_that_never_says_hello_is_closed_at_the_hello_timeout() {
		let shared = Arc::new(Shared::new(ServeConfig::default(), None));
		let hello_timeout = shared.config.session.hello_timeout;
		let started = tokio::time::Instant::now();
		let ((mut r, _w, _stop), task) = start(&shared);
		let mut dec = FrameDecoder::new(u32::MAX);
		let m = next_message(&mut r, &mut dec).await;
		assert!(matches!(m, Message::Error { code: ErrorCode::IdleTimeout, .. }), "{m:?}");
		assert!(started.elapsed() >= hello_timeout);
		assert!(task.await.unwrap().is_some(), "the writer ended cleanly");
		assert_eq!(shared.closed_with_error.load(Ordering::Relaxed), 1);
		assert_eq!(shared.connections.load(Ordering::Relaxed), 1);
	}

	#[tokio::test(start_paused = true)]
	async fn an_admitted_viewer_holds_its_slot_until_it_leaves() {
		let shared = Arc::new(Shared::new(ServeConfig::default(), None));
		let ((mut r, mut w, _stop), task) = start(&shared);
		let hello = Message::Hello {
			version: PROTOCOL_VERSION,
			role: Role::Viewer,
			genesis_hash: shared.config.session.genesis_hash,
		};
		w.write_all(&encode_frame(&hello)).await.unwrap();
		let mut dec = FrameDecoder::new(u32::MAX);
		let m = next_message(&mut r, &mut dec).await;
		assert!(matches!(m, Message::Welcome { mode: AdmissionMode::Direct, .. }), "{m:?}");
		assert_eq!(shared.admission.lock().stats().direct, 1);
		assert_eq!(shared.sessions.snapshot().direct_tcp, 1);
		drop((r, w));
		task.await.unwrap();
		assert_eq!(shared.admission.lock().stats().direct, 0);
		assert_eq!(shared.sessions.snapshot().direct_tcp, 0);
		assert_eq!(shared.closed_with_error.load(Ordering::Relaxed), 0, "the peer closed");
	}
}
