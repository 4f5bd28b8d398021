//! [`SessionDriver`]: the event loop of one connection, moving frames, window changes and
//! timers between the socket, the shared windows and the sans-IO cores ([`ServerSession`] for
//! the protocol, [`SessionControl`] for the driver's own decisions).

use super::{
	accept::write_loop,
	control::{JoinStream, SessionControl},
	limits::{AddressSession, BudgetedDirectory, WaitingStream},
	shared::{Shared, StoreRefusal, StreamSlot},
};
use crate::{
	net::{read_frame, vod::VodStream, FrameSink, ReadError},
	p2p::tracker::{JoinRequest, PassToSign},
	protocol::{encode_frame, ErrorCode, FrameDecoder, Message, PeerInfo, Role, Transport},
	segment::Segment,
	server::{Inserted, OriginKeys, PartialReservation, ServerSession, SessionEvent},
};
use bytes::Bytes;
use dsp_primitives::{EpochIndex, PublicKey, Signed, StreamEnd, StreamId};
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

/// Runs one connection, counted against its address as `address`, until it closes; returns
/// the writer if it ended cleanly (for a graceful shutdown of the socket).
pub(super) async fn run_session<R, W>(
	shared: Arc<Shared>,
	address: AddressSession,
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
	SessionDriver::new(shared, address, peer, transport, writer_task)
		.run(reader, tx, shutdown)
		.await
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
	/// Changes of the credit epoch, once joined to a swarm (the pass is renewed for it).
	epoch: Option<watch::Receiver<EpochIndex>>,
	/// The recording served on demand, if the stream is not live here.
	vod: Option<VodStream>,
	writer_task: JoinHandle<Option<W>>,
	/// What the writer task returned, once it ended.
	writer_done: Option<Option<W>>,
	/// What this publisher holds of the server's partial-segment budget.
	partial: PartialReservation,
	/// This connection, counted against its address.
	address: AddressSession,
	/// The stream slot this session opened, counted against its address while it has no data.
	waiting: Option<WaitingStream>,
	/// The origin keys as this session looks streams up: lookups paid from its address's
	/// budget ([`BudgetedDirectory`]).
	origin_keys: Arc<OriginKeys>,
}

impl<W: FrameSink> SessionDriver<W> {
	/// A new connection from `peer`, whose frames `writer_task` writes.
	pub(super) fn new(
		shared: Arc<Shared>,
		address: AddressSession,
		peer: SocketAddr,
		transport: Transport,
		writer_task: JoinHandle<Option<W>>,
	) -> Self {
		shared.connections.fetch_add(1, Ordering::Relaxed);
		let session_id = shared.next_session.fetch_add(1, Ordering::Relaxed);
		let cfg = &shared.config;
		let origin_keys = BudgetedDirectory::wrap(&shared, &cfg.session.origin_keys, peer.ip());
		let mut session = cfg.session.clone();
		session.origin_keys = origin_keys.clone();
		let core = ServerSession::new(shared.now(), session);
		let dec = FrameDecoder::new(cfg.session.max_frame_len);
		Self {
			peer,
			session_id,
			core,
			control: SessionControl::new(transport),
			dec,
			slot: None,
			changed: None,
			epoch: None,
			vod: None,
			writer_task,
			writer_done: None,
			partial: PartialReservation::default(),
			address,
			waiting: None,
			origin_keys,
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
			if !self.core.in_handshake() {
				self.address.handshake_done();
			}
			self.check_waiting();
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
			let epoch = self.epoch.as_mut();
			let joined = epoch.is_some();
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
				r = async { epoch.expect("guarded; qed").changed().await }, if joined => {
					match r {
						Ok(()) => self.renew_pass(),
						Err(_) => self.epoch = None,
					}
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
		let SessionDriver {
			shared,
			control,
			slot,
			writer_task,
			writer_done,
			session_id,
			mut partial,
			address,
			waiting,
			..
		} = self;
		partial.release(&shared.partial_bytes);
		drop((address, waiting));
		if let Some(mode) = control.admitted() {
			shared.admission.lock().release(mode);
			shared.sessions.slot(mode, control.transport()).fetch_sub(1, Ordering::Relaxed);
		}
		if let (Some(_), Some(t)) = (control.joined(), &shared.tracker) {
			t.lock().handle_leave(shared.now(), session_id);
			if let Some(s) = &slot {
				s.seeding().rotation.handle_peer_left(session_id);
			}
		}
		drop(slot);
		if let Some(stream) = control.stream() {
			// This session let its slot go: if nobody else holds it and it never had data,
			// free it now rather than at the stream idle timeout.
			shared.release_if_unused(stream);
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
			SessionEvent::BadJoinProof => {
				self.shared.bad_join_proofs.fetch_add(1, Ordering::Relaxed);
			}
			SessionEvent::PassDue { .. } => self.renew_pass(),
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
		let known = self.origin_keys.get(stream).is_some();
		let opened = known.then(|| self.open_stream(stream, Role::Viewer));
		let found = match &opened {
			None => JoinStream::Unknown,
			Some(Err((code, _))) => JoinStream::Refused(*code),
			Some(Ok(_)) if !self.origin_keys.passes_open(stream) => JoinStream::Unpaid,
			Some(Ok(_)) => JoinStream::Held,
		};
		let shared = self.shared.clone();
		let now = shared.now();
		let mut renew_every = Duration::ZERO;
		let r = SessionControl::admit_join(stream, found, shared.tracker.as_ref()).and_then(|t| {
			self.slot = opened.and_then(Result::ok);
			let bitrate = self.slot.as_ref().map_or(0, |s| s.window.lock().bitrate());
			let (session, remote) = (self.session_id, self.peer.ip());
			let req = JoinRequest { session, remote, stream, viewer, peer: info, bitrate };
			let mut t = t.lock();
			renew_every = t.config().pass_period / 2;
			t.handle_join(now, req).map_err(SessionControl::tracker_refusal)
		});
		// Signed with the tracker released (its lock is shared by every session).
		let r = r.map(|j| (j.pass.sign(), j.peers, j.listed));
		if let (Ok((pass, peers, listed)), Some(s)) = (&r, &self.slot) {
			info!(peer = %self.peer, stream, peers = peers.len(), listed, max_units = pass.payload.max_units, session_id = self.session_id, "p2p viewer joined");
			self.control.handle_joined(stream);
			// Headers and seeded chunks follow the window from now on.
			s.seeding().rotation.handle_peer_joined(self.session_id);
			self.changed = Some(s.changed.subscribe());
			self.epoch = Some(self.shared.epoch.subscribe());
		}
		if let Err((code, reason)) = &r {
			info!(peer = %self.peer, stream, ?code, %reason, "p2p join refused");
		}
		self.core.handle_joined(now, r.map(|(pass, peers, _)| (pass, peers)), renew_every);
	}

	/// A renewed pass for the joined viewer (due, or a new epoch): the time joined so far at
	/// the stream's bitrate now.
	fn renew_pass(&mut self) {
		let (Some(t), Some(s)) = (&self.shared.tracker, &self.slot) else { return };
		let Some(stream) = self.control.joined() else { return };
		if !self.shared.config.session.origin_keys.passes_open(stream) {
			// Passes issued so far stay valid; no more that could not be paid.
			debug!(peer = %self.peer, stream, "pass not renewed: the stream's passes are closed");
			return;
		}
		let bitrate = s.window.lock().bitrate();
		let now = self.shared.now();
		let pass = t.lock().renew(now, self.session_id, bitrate);
		// Signed with the tracker released: at an epoch change every session renews at once.
		if let Some(pass) = pass.map(PassToSign::sign) {
			debug!(peer = %self.peer, epoch = pass.payload.epoch, max_units = pass.payload.max_units, "pass renewed");
			self.core.handle_pass(now, pass);
		}
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
			match live.map_or_else(|| self.open_stream(id, Role::Viewer), Ok) {
				Ok(s) => {
					self.changed = Some(s.changed.subscribe());
					self.slot = Some(s);
					info!(%peer, %transport, %role, stream = id, "session started");
				}
				Err((code, why)) => self.core.close(code, why),
			}
		}
	}

	fn handle_publishing(&mut self, id: StreamId) {
		self.control.handle_publishing(id);
		let (peer, transport, role) = (self.peer, self.control.transport(), self.control.role());
		match self.open_stream(id, Role::Publisher) {
			Ok(s) => {
				let (broadcast, next_sequence) = s.window.lock().held();
				self.core.handle_publish_ready(self.shared.now(), broadcast, next_sequence);
				self.changed = Some(s.changed.subscribe());
				self.slot = Some(s);
				info!(%peer, %transport, %role, stream = id, ?broadcast, next_sequence, "session started");
			}
			Err((code, why)) => self.core.close(code, why),
		}
	}

	async fn handle_segment_received(&mut self, seg: Segment) {
		let (id, seq) = (seg.stream(), seg.sequence());
		let freed = self.slot.as_ref().is_some_and(|s| s.freed.load(Ordering::Relaxed));
		if self.control.must_reopen_window(freed) {
			// Freed while this publisher was silent: continue in a new window.
			match self.open_stream(id, Role::Publisher) {
				Ok(s) => {
					self.changed = Some(s.changed.subscribe());
					self.slot = Some(s);
				}
				Err((code, why)) => {
					self.core.close(code, why);
					self.slot = None;
				}
			}
		}
		let Some(s) = &self.slot else { return };
		let seg = Arc::new(seg);
		let (r, mark) = match s.store(&seg) {
			Ok(r) => r,
			Err(StoreRefusal::OverBudget(reason)) => {
				self.shared.over_budget.fetch_add(1, Ordering::Relaxed);
				return self.core.close(ErrorCode::OverBudget, reason);
			}
			Err(StoreRefusal::Stale(stale)) => {
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
			match s.end(end) {
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

	/// The slot of stream `id`: the one held, or a new one opened for this session (`by`),
	/// counted against the session's address while it has no data.
	fn open_stream(
		&mut self,
		id: StreamId,
		by: Role,
	) -> Result<Arc<StreamSlot>, (ErrorCode, String)> {
		// A slot this session creates counts against its address until it has data.
		let waiting = match self.shared.table().get(id) {
			Some(_) => None,
			None => Some(
				WaitingStream::try_new(&self.shared, self.address.ip())
					.map_err(|why| (ErrorCode::UnknownStream, why.to_string()))?,
			),
		};
		let slot = match by {
			// A publisher's stream also counts against its origin's memory bounds.
			Role::Publisher => self.shared.open_published(id)?,
			Role::Viewer => self
				.shared
				.open_stream(id, by)
				.map_err(|code| (code, "too many streams held".to_string()))?,
		};
		if waiting.is_some() {
			self.waiting = waiting;
		}
		Ok(slot)
	}

	/// Stops counting the slot this session opened against its address once it has data
	/// (or was freed, or let go).
	fn check_waiting(&mut self) {
		if self.waiting.is_none() {
			return;
		}
		let waits = self
			.slot
			.as_ref()
			.is_some_and(|s| !s.freed.load(Ordering::Relaxed) && s.window.lock().usage().0 == 0);
		if !waits {
			self.waiting = None;
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
			Ok(Some(body)) => {
				self.core.handle_frame(now, body);
				self.reserve_partial();
			}
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

	/// Holds what the publisher now assembles of the server's partial-segment budget: reserved
	/// once a header announced its `byte_len`, before any of its chunks is read; given back
	/// when the segment completes. A header that does not fit that budget, or the window
	/// budget even if its own window gave up all its segments, closes the publisher.
	fn reserve_partial(&mut self) {
		let assembling = self.core.assembling_bytes();
		if assembling > 0 && self.partial.held() == 0 {
			if let Some(Err(reason)) = self.slot.as_ref().map(|s| s.check_room(assembling)) {
				self.shared.over_budget.fetch_add(1, Ordering::Relaxed);
				return self.core.close(ErrorCode::OverBudget, reason);
			}
		}
		let Some(origin) = self.core.publishing_origin() else {
			// Not (or no longer: closed) a publisher: nothing is assembled, nothing is held.
			return self.partial.release(&self.shared.partial_bytes);
		};
		if let Err(refused) = self.partial.sync(&self.shared.partial_bytes, &origin, assembling) {
			self.shared.over_budget.fetch_add(1, Ordering::Relaxed);
			self.core.close(ErrorCode::OverBudget, refused.to_string());
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
		let address = AddressSession::try_open(shared, peer.ip()).unwrap();
		let task = tokio::spawn(run_session(
			shared.clone(),
			address,
			peer,
			Transport::Tcp,
			r,
			Sink(w),
			shutdown,
		));
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

	#[tokio::test(start_paused = true)]
	async fn a_joined_p2p_viewer_gets_renewed_passes_and_its_seeder_claims_with_the_largest() {
		use crate::{
			p2p::{
				join::sign_join,
				receipts::{LedgerConfig, PassSigners, SeederLedger},
				tracker::{PassSigning, TrackerConfig},
			},
			server::{
				test_util::{origin, seg},
				OriginKeys,
			},
		};
		use dsp_primitives::{CapacitySettings, Perbill, Receipt};
		use sp_core::Pair;

		let signer = sp_core::sr25519::Pair::from_string("//PassSigner", None).unwrap();
		let mut cfg = ServeConfig::default();
		cfg.capacity = CapacitySettings { max_streams: 10, streaming_rate: Perbill::one() };
		cfg.p2p =
			Some(PassSigning { signer: signer.clone(), tracker: TrackerConfig::new([0; 32], 0) });
		cfg.session.origin_keys =
			Arc::new(OriginKeys { default: Some(origin().public()), ..Default::default() });
		// Kept alive without pings: the test is about renewals.
		cfg.session.idle_timeout = Duration::from_secs(3600);
		let shared = Arc::new(Shared::new(cfg, None));
		// Stream 1 plays 1000 bytes per 2 s segment: 500 B/s.
		let slot = shared.open_stream(1, Role::Publisher).unwrap();
		for i in 0..3 {
			slot.update(|w| w.insert(seg(i))).unwrap();
		}

		let ((mut r, mut w, _stop), _task) = start(&shared);
		let mut dec = FrameDecoder::new(u32::MAX);
		let hello =
			Message::Hello { version: PROTOCOL_VERSION, role: Role::Viewer, genesis_hash: [0; 32] };
		w.write_all(&encode_frame(&hello)).await.unwrap();
		let Message::Welcome { mode: AdmissionMode::P2p, challenge, .. } =
			next_message(&mut r, &mut dec).await
		else {
			panic!("no P2P welcome")
		};
		let viewer = sp_core::sr25519::Pair::from_string("//Viewer", None).unwrap();
		let peer = PeerInfo { peer_id: vec![1; 38], addrs: vec![] };
		let proof = sign_join(&viewer, &[0; 32], &challenge, 1, &peer);
		let join = Message::Join { stream: 1, viewer: viewer.public(), peer, proof };
		w.write_all(&encode_frame(&join)).await.unwrap();
		let Message::Joined { pass: first, .. } = next_message(&mut r, &mut dec).await else {
			panic!("no Joined")
		};
		// ceil(500 B/s * 120 s * 1.5 / 1024): one period, nothing admitted yet.
		assert_eq!(first.payload.max_units, 88);
		/// The next `Pass`; the header feed comes in between.
		async fn next_pass(
			r: &mut ReadHalf<DuplexStream>,
			dec: &mut FrameDecoder,
		) -> Signed<dsp_primitives::ViewerPass> {
			loop {
				if let Message::Pass(p) = next_message(r, dec).await {
					return p;
				}
			}
		}
		let started = tokio::time::Instant::now();
		let renewed = next_pass(&mut r, &mut dec).await;
		assert!(started.elapsed() >= Duration::from_secs(60), "half a period later");
		// One more minute admitted: ceil(500 * 180 * 1.5 / 1024).
		assert_eq!((renewed.payload.epoch, renewed.payload.max_units), (0, 132));
		// A new epoch: a pass for it at once, counting from its start.
		shared.tracker.as_ref().unwrap().lock().set_epoch(shared.now(), 1);
		shared.epoch.send_replace(1);
		let next_epoch = next_pass(&mut r, &mut dec).await;
		assert_eq!((next_epoch.payload.epoch, next_epoch.payload.max_units), (1, 88));
		let stats = shared.tracker.as_ref().unwrap().lock().stats();
		assert_eq!((stats.passes_issued, stats.passes_renewed), (1, 2));

		// The seeder the viewer receives from is shown both passes of epoch 0 and claims with
		// the largest, whatever the order.
		let signers = PassSigners { default: vec![signer.public()], ..Default::default() };
		let seeder = [9; 32];
		let mut ledger = SeederLedger::new(LedgerConfig::new([0; 32], seeder, signers));
		ledger.handle_pass(renewed.clone()).unwrap();
		ledger.handle_pass(first).unwrap();
		let receipt = Receipt {
			genesis_hash: [0; 32],
			stream: 1,
			epoch: 0,
			viewer: viewer.public(),
			seeder,
			units: 100,
		};
		ledger.handle_receipt(Signed::sign(receipt, &viewer)).unwrap();
		let (batches, _) = ledger.claim_batches(10);
		assert_eq!(batches[0][0].pass, renewed);
	}
}
