//! [`Driver`]: the P2P viewer's event loop, moving messages and timers between the direct
//! connection, the libp2p node and the sans-IO cores.

use super::*;

/// A neighbour: a peer we presented our pass to (or are presenting it to).
struct Neighbour {
	/// Our pass was accepted: it may be asked for chunks.
	ready: bool,
	/// Its latest announcement (applied once it is ready and segments are known).
	last_have: Option<Vec<HaveSegment>>,
}

/// A neighbour's answer: peer, broadcast of the header it was checked against, sequence, index.
type FetchDone = (PeerId, u64, u64, u32, Result<Bytes, P2pError>);

enum ControlDone {
	Pass(PeerId, Result<Response, P2pError>),
	Other(PeerId, &'static str, Result<Response, P2pError>),
}

pub(super) struct Driver {
	config: P2pWatchConfig,
	node: Arc<P2pNode>,
	me: PeerId,
	pass: Signed<ViewerPass>,
	/// The cores' millisecond clock (tokio's, as the timers).
	clock: Clock,
	/// When to plan playback (pick the first segment), until the scheduler exists.
	start_at: Option<Instant>,
	out: mpsc::Sender<Bytes>,
	store: Arc<Store>,
	scheduler: Option<Scheduler<PeerId>>,
	neighbours: HashMap<PeerId, Neighbour>,
	/// Seeders received from: account → peer (for receipts). Bounded by the book's
	/// `max_seeders`.
	seeders: BTreeMap<AccountBytes, PeerId>,
	book: ReceiptBook,
	buffer: SegmentBuffer,
	/// Complete segments after the first one, until the first one reaches the buffer (which
	/// starts at whatever it gets first).
	held_back: BTreeMap<u64, Segment>,
	start_seq: Option<u64>,
	/// The first segment of the broadcast followed (`start_seq`) has not reached the buffer.
	awaiting_start: bool,
	playlist: Arc<Mutex<Playlist>>,
	recorder: Option<PlayRecorder>,
	delivered: VecDeque<Delivered>,
	fetches: FuturesUnordered<BoxFuture<'static, FetchDone>>,
	control: FuturesUnordered<BoxFuture<'static, ControlDone>>,
	have_dirty: bool,
	stats: P2pWatchStats,
	last_duration: u32,
	/// Time of the stalls that ended, ms (the scheduler's `stalled_ms` includes an ongoing one).
	closed_stall_ms: u64,
	/// The broadcast of the headers received: an older one is ignored, a newer one starts a
	/// new swarm state ([`Driver::begin_broadcast`]), since the swarm's chunks are numbered per
	/// broadcast.
	broadcast: Option<u64>,
}

impl Driver {
	pub(super) fn new(
		config: P2pWatchConfig,
		node: Arc<P2pNode>,
		pass: Signed<ViewerPass>,
		out: mpsc::Sender<Bytes>,
		store: Arc<Store>,
		playlist: Arc<Mutex<Playlist>>,
		recorder: Option<PlayRecorder>,
	) -> Self {
		let book = ReceiptBook::new(
			crate::p2p::receipts::BookConfig {
				genesis_hash: config.genesis_hash,
				stream: config.stream,
				max_seeders: crate::p2p::receipts::DEFAULT_MAX_SEEDERS,
			},
			config.viewer.clone(),
		);
		let clock = Clock::new();
		let stats = P2pWatchStats { pass_max_units: pass.payload.max_units, ..Default::default() };
		Driver {
			start_at: Some(clock.instant(0) + config.start_delay),
			clock,
			me: node.peer_id,
			buffer: SegmentBuffer::new(config.max_pending_segments),
			config,
			node,
			pass,
			out,
			store,
			scheduler: None,
			neighbours: HashMap::new(),
			seeders: BTreeMap::new(),
			book,
			held_back: BTreeMap::new(),
			start_seq: None,
			awaiting_start: true,
			playlist,
			recorder,
			delivered: VecDeque::new(),
			fetches: FuturesUnordered::new(),
			control: FuturesUnordered::new(),
			have_dirty: false,
			stats,
			last_duration: 2000,
			closed_stall_ms: 0,
			broadcast: None,
		}
	}

	/// Runs the loop on its own task until the stream ends, it fails or the returned stop
	/// fires; then `teardown` (the server connection, the gateway) and the node's shutdown.
	pub(super) fn spawn(
		mut self,
		inbound: mpsc::Receiver<Inbound>,
		node_events: mpsc::Receiver<ServingEvent<PeerId>>,
		events: Option<mpsc::Sender<WatchEvent>>,
		teardown: impl FnOnce() + Send + 'static,
	) -> (
		JoinHandle<Result<P2pWatchStats, P2pWatchError>>,
		watch::Receiver<P2pWatchStats>,
		oneshot::Sender<()>,
	) {
		let (stats_tx, stats) = watch::channel(P2pWatchStats::default());
		let (stop_tx, stop_rx) = oneshot::channel();
		let task = tokio::spawn(async move {
			let r = self.run(inbound, node_events, stop_rx, events, &stats_tx).await;
			teardown();
			self.shutdown().await;
			r.map(|()| *stats_tx.borrow())
		});
		(task, stats, stop_tx)
	}

	/// Stops the libp2p node. The requests still open go first: each holds a clone of the node
	/// and may hold a place in its command queue.
	async fn shutdown(self) {
		let Driver { node, fetches, control, .. } = self;
		drop((fetches, control));
		// Fails only while a ban is still being sent; the node stops when that finishes.
		if let Ok(node) = Arc::try_unwrap(node) {
			node.shutdown().await;
		}
	}

	fn now(&self) -> Millis {
		self.clock.now()
	}

	fn epoch(&self) -> dsp_primitives::EpochIndex {
		self.pass.payload.epoch
	}

	/// The loop. Its body never awaits the node: the node's requests are futures polled in the
	/// `select!`, next to the pings and the stop signal, so a node that is slow to answer
	/// delays only what waits for it (see [`super::p2p::P2pNode::latest_stats`]). The awaits
	/// besides are the recording of a delivered segment and `events`: a consumer that does not
	/// drain it holds the viewer (backpressure, as in [`crate::net::watch`]).
	async fn run(
		&mut self,
		mut inbound: mpsc::Receiver<Inbound>,
		mut node_events: mpsc::Receiver<ServingEvent<PeerId>>,
		mut stop: oneshot::Receiver<()>,
		events: Option<mpsc::Sender<WatchEvent>>,
		stats_tx: &watch::Sender<P2pWatchStats>,
	) -> Result<(), P2pWatchError> {
		let mut have_tick = tokio::time::interval(self.config.have_interval);
		let mut receipt_tick = tokio::time::interval(self.config.receipt_interval);
		let mut ping = tokio::time::interval(self.config.keepalive_interval);
		let mut nonce = 0u64;
		let result = loop {
			self.pump();
			while let Some(d) = self.delivered.pop_front() {
				deliver(&self.playlist, self.recorder.as_ref(), &d).await;
				if let Some(ev) = &events {
					let transport = Some(self.config.server.transport);
					let _ = ev.send(WatchEvent::delivered(&d, transport)).await;
				}
			}
			if self.buffer.is_ended() && !self.stats.ended {
				self.stats.ended = true;
				self.playlist.lock().end();
				info!("stream ended; all segments delivered");
				if let Some(ev) = &events {
					let _ = ev.send(WatchEvent::Ended).await;
				}
				break Ok(());
			}
			let timeout = self.next_timeout();
			tokio::select! {
				m = inbound.recv() => match m {
					Some(Ok(m)) => if let Err(e) = self.handle_message(m) {
						let frame = encode_frame(&Message::error(ErrorCode::BadChunk, e.to_string()));
						let _ = self.out.try_send(frame);
						break Err(e);
					},
					Some(Err(e)) => break Err(e),
					None => break Err(P2pWatchError::Connection("reader stopped".into())),
				},
				ev = node_events.recv() => match ev {
					Some(ev) => self.handle_serving_event(ev),
					None => break Err(P2pWatchError::P2p(P2pError::Stopped)),
				},
				Some(done) = self.fetches.next(), if !self.fetches.is_empty() => {
					if let Err(e) = self.handle_fetch_done(done) {
						break Err(e);
					}
				},
				Some(done) = self.control.next(), if !self.control.is_empty() => self.handle_control_done(done),
				_ = async { tokio::time::sleep_until(timeout.expect("guarded; qed")).await }, if timeout.is_some() => {
					self.handle_timeout();
				},
				_ = have_tick.tick() => self.announce(),
				_ = receipt_tick.tick() => {
					self.send_receipts();
					self.publish_stats(stats_tx);
				},
				_ = ping.tick() => {
					nonce += 1;
					let _ = self.out.try_send(encode_frame(&Message::Ping(nonce)));
				},
				_ = &mut stop => break Ok(()),
			}
		};
		self.send_receipts();
		self.publish_stats(stats_tx);
		result
	}

	fn publish_stats(&mut self, tx: &watch::Sender<P2pWatchStats>) {
		let now = self.now();
		if let Some(s) = &self.scheduler {
			self.stats.scheduler = s.stats();
			self.stats.play = s.play_stats(now);
		}
		// Not `stats().await`: that would wait in the command queue behind this loop's own
		// requests, which are not polled meanwhile (the viewer hang at 100 viewers in one
		// process).
		self.stats.served = self.node.latest_stats();
		self.stats.buffer = self.buffer.stats();
		self.stats.neighbours = self.neighbours.values().filter(|n| n.ready).count();
		let mut stats = self.stats;
		// An ongoing stall counts as it stands.
		let ongoing = stats.play.stalled_ms.saturating_sub(self.closed_stall_ms);
		stats.longest_stall_ms = stats.longest_stall_ms.max(ongoing);
		if ongoing > self.last_duration as u64 {
			stats.long_stalls += 1;
		}
		let _ = tx.send(stats);
	}

	fn next_timeout(&self) -> Option<Instant> {
		let sched =
			self.scheduler.as_ref().and_then(|s| s.poll_timeout()).map(|ms| self.clock.instant(ms));
		match (sched, self.start_at) {
			(Some(a), Some(b)) => Some(a.min(b)),
			(a, b) => a.or(b),
		}
	}

	fn handle_timeout(&mut self) {
		let now = self.now();
		if self.start_at.is_some_and(|t| Instant::now() >= t) {
			self.start_at = None;
			self.plan_playback();
		}
		if let Some(s) = &mut self.scheduler {
			s.handle_timeout(now);
		}
	}

	/// Picks the first segment, `start_behind` behind the newest header known, and starts the
	/// scheduler with everything received so far.
	fn plan_playback(&mut self) {
		if self.scheduler.is_some() {
			return;
		}
		let headers = self.store.headers();
		let (Some(first), Some(newest)) = (headers.first(), headers.last()) else {
			// No header yet: the first one plans playback.
			return;
		};
		let newest = newest.payload.sequence;
		let start = newest.saturating_sub(self.config.start_behind).max(first.payload.sequence);
		let now = self.now();
		let mut s = Scheduler::new(self.config.scheduler.clone(), now, start);
		for h in &headers {
			let _ = s.handle_segment_header(now, &h.payload);
		}
		for (seq, index, len) in self.store.held() {
			let _ = s.handle_chunk(now, Source::Node, seq, index, len);
		}
		info!(start, newest, "playback planned");
		self.start_seq = Some(start);
		self.awaiting_start = true;
		self.scheduler = Some(s);
		let ready: Vec<PeerId> =
			self.neighbours.iter().filter(|(_, n)| n.ready).map(|(p, _)| *p).collect();
		for p in ready {
			self.neighbour_ready(p);
		}
	}

	fn handle_message(&mut self, m: Message) -> Result<(), P2pWatchError> {
		let now = self.now();
		match m {
			Message::Header(h) => {
				let c = &self.config;
				verify_header(&h, &c.genesis_hash, c.stream, &c.origin, &c.segment_limits)
					.map_err(|e| P2pWatchError::Protocol(e.to_string()))?;
				let b = h.payload.broadcast;
				match self.broadcast {
					Some(old) if b < old => {
						debug!(
							seq = h.payload.sequence,
							broadcast = b,
							"header of an older broadcast ignored"
						);
						return Ok(());
					}
					Some(old) if b > old => self.begin_broadcast(old, &h.payload),
					_ => {}
				}
				self.broadcast = Some(b);
				self.last_duration = h.payload.duration_ms;
				self.stats.server_bytes += codec::Encode::encoded_size(&h) as u64;
				let payload = h.payload.clone();
				if self.store.insert_header(h) {
					match &mut self.scheduler {
						Some(s) => {
							if let Err(e) = s.handle_segment_header(now, &payload) {
								debug!(seq = payload.sequence, error = %e, "header not scheduled");
							}
						}
						None if self.start_at.is_none() => self.plan_playback(),
						None => {}
					}
				}
			}
			Message::Chunk(c) => {
				let Some(h) = self.store.header(c.sequence) else {
					debug!(seq = c.sequence, index = c.index, "chunk of an unknown or old segment");
					return Ok(());
				};
				verify_chunk(&h.payload, c.index, &c.data)
					.map_err(|e| P2pWatchError::Protocol(e.to_string()))?;
				let len = c.data.len() as u32;
				self.stats.server_bytes += codec::Encode::encoded_size(&c) as u64;
				if !self.store.insert_chunk(h.payload.broadcast, c.sequence, c.index, c.data) {
					return Ok(());
				}
				self.have_dirty = true;
				if let Some(s) = &mut self.scheduler {
					if let Err(e) = s.handle_chunk(now, Source::Node, c.sequence, c.index, len) {
						debug!(seq = c.sequence, error = %e, "chunk from the node not scheduled");
					}
				}
			}
			Message::NotHeld { sequence, index, .. } => {
				// The node's window no longer has it; the scheduler's node timeout retries.
				debug!(sequence, index, "node does not hold an urgent chunk");
			}
			Message::End(end) => {
				let c = &self.config;
				verify_end(&end, &c.genesis_hash, c.stream, &c.origin)
					.map_err(|e| P2pWatchError::Protocol(e.to_string()))?;
				self.buffer.handle_end(0, end.payload.broadcast, end.payload.next_sequence);
			}
			Message::Pass(pass) => self.handle_renewed_pass(pass)?,
			Message::Ping(_) | Message::Pong(_) => {}
			Message::Error { code, reason } => return Err(P2pWatchError::Closed(code, reason)),
			other => {
				return Err(P2pWatchError::Protocol(format!(
					"unexpected {} from server",
					other.kind()
				)))
			}
		}
		Ok(())
	}

	/// The origin restarted the stream: `header` is the first one of a newer broadcast than
	/// `old`. The swarm numbers chunks by sequence only, and a new broadcast may number again,
	/// so nothing of the old one may meet the new: the store empties (at `header`), the
	/// scheduler forgets every segment, announcement and request (answers still on their way
	/// are dropped when they come, see [`Driver::handle_fetch_done`]), the neighbours' last
	/// announcements are void, and playback goes on at `header`'s segment, as the direct viewer
	/// does (the buffer marks it a discontinuity).
	fn begin_broadcast(&mut self, old: u64, header: &SegmentHeader) {
		info!(
			old,
			new = header.broadcast,
			seq = header.sequence,
			"the origin restarted the stream: following the new broadcast"
		);
		self.stats.new_broadcasts += 1;
		self.held_back.clear();
		for n in self.neighbours.values_mut() {
			n.last_have = None;
		}
		// What we announced is of the old broadcast: announce the new state (empty so far).
		self.have_dirty = true;
		if let Some(s) = &mut self.scheduler {
			s.handle_new_broadcast(self.clock.now(), header.sequence);
			self.start_seq = Some(header.sequence);
			self.awaiting_start = true;
		}
	}

	/// The server renewed our pass (it covers the time joined so far, or a new epoch): it
	/// replaces ours, and every neighbour is shown it, so the seeders we receive from claim
	/// with it and take our receipts of a new epoch.
	fn handle_renewed_pass(&mut self, pass: Signed<ViewerPass>) -> Result<(), P2pWatchError> {
		let p = &pass.payload;
		if p.viewer != sp_core::Pair::public(&self.config.viewer)
			|| p.stream != self.config.stream
			|| p.genesis_hash != self.config.genesis_hash
		{
			return Err(P2pWatchError::Protocol(
				"renewed pass for another viewer or stream".into(),
			));
		}
		if p.epoch != self.epoch() {
			// What the old epoch's seeders are owed is signed under the old pass's epoch.
			self.send_receipts();
		}
		debug!(epoch = p.epoch, max_units = p.max_units, "pass renewed");
		self.stats.passes_renewed += 1;
		self.stats.pass_max_units = p.max_units;
		self.pass = pass;
		let ready: Vec<PeerId> =
			self.neighbours.iter().filter(|(_, n)| n.ready).map(|(p, _)| *p).collect();
		for peer in ready {
			let request = Request::bound_pass(self.pass.clone(), &self.config.viewer, &self.me);
			self.control_request(peer, "pass", request);
		}
		Ok(())
	}

	/// Drains the scheduler: requests go out, events are acted on.
	fn pump(&mut self) {
		let now = self.now();
		let Some(s) = self.scheduler.as_mut() else { return };
		let mut requests = Vec::new();
		while let Some(r) = s.poll_request(now) {
			requests.push(r);
		}
		// libp2p request-response cannot withdraw a request; a late answer is stored if still
		// needed and counted as a duplicate otherwise.
		while s.poll_cancel().is_some() {}
		let mut events = Vec::new();
		while let Some(e) = s.poll_event() {
			events.push(e);
		}
		for r in requests {
			self.issue(r);
		}
		for e in events {
			match e {
				SchedulerEvent::SegmentComplete { seq } => self.complete(seq),
				SchedulerEvent::Play(p) => self.handle_play(p),
				SchedulerEvent::PeerBanned(p) => {
					self.neighbours.remove(&p);
					let node = self.node.clone();
					tokio::spawn(async move {
						let _ = node.ban(p, "bad chunk").await;
					});
				}
			}
		}
	}

	fn handle_play(&mut self, p: PlayEvent) {
		match p {
			PlayEvent::Started { seq, startup_ms } => info!(seq, startup_ms, "playback started"),
			PlayEvent::StallStarted { seq } => warn!(seq, "stall: segment not complete when due"),
			PlayEvent::StallEnded { seq, stalled_ms } => {
				self.closed_stall_ms += stalled_ms;
				self.stats.longest_stall_ms = self.stats.longest_stall_ms.max(stalled_ms);
				if stalled_ms > self.last_duration as u64 {
					self.stats.long_stalls += 1;
				}
				info!(seq, stalled_ms, "stall ended");
			}
			PlayEvent::Played { .. } => {}
		}
	}

	fn complete(&mut self, seq: u64) {
		let Some(start) = self.start_seq.filter(|&s| seq >= s) else { return };
		let Some(segment) = self.store.segment(seq) else { return };
		if self.awaiting_start && seq != start {
			// The buffer starts a broadcast at the first segment it gets: later ones wait for
			// the first (unless it never comes within `max_pending_segments`).
			self.held_back.insert(seq, segment);
			if self.held_back.len() <= self.config.max_pending_segments {
				return;
			}
		} else {
			self.buffer.handle_segment(0, segment);
		}
		self.awaiting_start = false;
		for (_, s) in std::mem::take(&mut self.held_back) {
			self.buffer.handle_segment(0, s);
		}
		while let Some(d) = self.buffer.poll_delivered() {
			self.delivered.push_back(d);
		}
	}

	fn issue(&mut self, r: ChunkRequest<PeerId>) {
		match r.source {
			Source::Node => {
				let fetch =
					Message::Fetch { stream: self.config.stream, sequence: r.seq, index: r.index };
				if self.out.try_send(encode_frame(&fetch)).is_err() {
					// The node's timeout asks again.
					debug!(seq = r.seq, index = r.index, "send queue full: fetch dropped");
				}
			}
			Source::Peer(p) => {
				let Some(h) = self.store.header(r.seq) else { return };
				let node = self.node.clone();
				let (broadcast, seq, index) = (h.payload.broadcast, r.seq, r.index);
				self.fetches.push(Box::pin(async move {
					let res = node.fetch_chunk(p, None, h.payload, index).await;
					(p, broadcast, seq, index, res)
				}));
			}
		}
	}

	/// A neighbour's answer. One asked for before the origin restarted the stream is of the
	/// old broadcast (checked against its header): the seeder is owed its receipt, but nothing
	/// of it is stored or scheduled, and its failure says nothing of the neighbour now.
	fn handle_fetch_done(
		&mut self,
		(peer, broadcast, seq, index, r): FetchDone,
	) -> Result<(), P2pWatchError> {
		let now = self.now();
		let current = self.broadcast == Some(broadcast);
		if !current {
			debug!(%peer, broadcast, seq, index, "answer of an older broadcast: not stored");
		}
		let Some(s) = self.scheduler.as_mut() else { return Ok(()) };
		match r {
			Ok(data) => {
				let len = data.len() as u32;
				if current && self.store.insert_chunk(broadcast, seq, index, data) {
					self.have_dirty = true;
					if let Err(e) = s.handle_chunk(now, Source::Peer(peer), seq, index, len) {
						debug!(%peer, seq, index, error = %e, "chunk from a peer not scheduled");
					}
				}
				// Verified data a seeder served: it is owed a receipt.
				if let Some((&account, _)) = self.seeders.iter().find(|(_, p)| **p == peer) {
					let _ = self.book.handle_received(account, self.pass.payload.epoch, len as u64);
				}
			}
			Err(e @ (P2pError::Stopped | P2pError::Setup(_))) => return Err(e.into()),
			Err(_) if !current => {}
			Err(P2pError::BadChunk(e)) => {
				warn!(%peer, seq, index, error = %e, "peer sent a bad chunk: banned");
				s.handle_bad_chunk(now, peer, seq, index);
			}
			Err(P2pError::NotServed(why)) => {
				debug!(%peer, seq, index, %why, "peer did not serve");
				s.handle_request_failed(now, peer, seq, index);
			}
			Err(e @ (P2pError::Outbound(_) | P2pError::Banned)) => {
				debug!(%peer, error = %e, "neighbour unreachable: dropped");
				self.drop_neighbour(peer);
			}
		}
		Ok(())
	}

	fn drop_neighbour(&mut self, peer: PeerId) {
		if let Some(s) = &mut self.scheduler {
			s.handle_peer_left(peer);
		}
		self.neighbours.remove(&peer);
	}

	pub(super) fn add_neighbour(&mut self, peer: PeerId, addr: Option<Multiaddr>) {
		if peer == self.me
			|| self.neighbours.contains_key(&peer)
			|| self.neighbours.len() >= self.config.max_neighbours
			|| self.scheduler.as_ref().is_some_and(|s| s.is_banned(peer))
		{
			return;
		}
		self.neighbours.insert(peer, Neighbour { ready: false, last_have: None });
		let request = Request::bound_pass(self.pass.clone(), &self.config.viewer, &self.me);
		let node = self.node.clone();
		self.control.push(Box::pin(async move {
			ControlDone::Pass(peer, node.request(peer, addr, request).await)
		}));
	}

	fn handle_control_done(&mut self, done: ControlDone) {
		match done {
			ControlDone::Pass(peer, Ok(Response::Ok)) => {
				if let Some(n) = self.neighbours.get_mut(&peer) {
					n.ready = true;
					self.neighbour_ready(peer);
				}
			}
			ControlDone::Pass(peer, r) => {
				debug!(%peer, answer = ?r.map(|r| r.kind()), "pass not accepted: not a neighbour");
				self.neighbours.remove(&peer);
			}
			ControlDone::Other(peer, kind, Ok(Response::Refused { code, reason })) => {
				debug!(%peer, kind, ?code, %reason, "request refused");
			}
			ControlDone::Other(_, _, Ok(_)) => {}
			ControlDone::Other(peer, kind, Err(e)) => {
				// The neighbour is gone (closed, unreachable or banned): what it announced
				// is void and its open requests go elsewhere.
				debug!(%peer, kind, error = %e, "request failed: neighbour dropped");
				self.drop_neighbour(peer);
			}
		}
	}

	/// Our pass was accepted by `peer`: schedule it, tell it what we hold, apply what it told us.
	fn neighbour_ready(&mut self, peer: PeerId) {
		let Some(s) = self.scheduler.as_mut() else { return };
		s.handle_peer_joined(peer);
		let have = self.have_request();
		self.control_request(peer, "have", have);
		if let Some(have) = self.neighbours.get(&peer).and_then(|n| n.last_have.clone()) {
			self.apply_have(peer, &have);
		}
	}

	fn control_request(&mut self, peer: PeerId, kind: &'static str, request: Request) {
		if self.control.len() >= self.config.max_control_inflight {
			debug!(%peer, kind, "too many control requests open: skipped");
			return;
		}
		let node = self.node.clone();
		self.control.push(Box::pin(async move {
			ControlDone::Other(peer, kind, node.request(peer, None, request).await)
		}));
	}

	fn handle_serving_event(&mut self, ev: ServingEvent<PeerId>) {
		match ev {
			ServingEvent::Have { peer, stream, viewer, segments }
				if stream == self.config.stream =>
			{
				if self.seeders.len() < crate::p2p::receipts::DEFAULT_MAX_SEEDERS {
					self.seeders.insert(viewer.0, peer);
				}
				if !self.neighbours.contains_key(&peer) {
					// A peer that announces to us is one we can fetch from once it has our pass.
					self.add_neighbour(peer, None);
				}
				let Some(n) = self.neighbours.get_mut(&peer) else { return };
				n.last_have = Some(segments.clone());
				if n.ready {
					self.apply_have(peer, &segments);
				}
			}
			ServingEvent::Have { .. } => {}
			ServingEvent::Ban { peer, .. } => self.drop_neighbour(peer),
			ServingEvent::Unban { .. } => {}
		}
	}

	fn apply_have(&mut self, peer: PeerId, segments: &[HaveSegment]) {
		let Some(s) = self.scheduler.as_mut() else { return };
		for hs in segments {
			let Some(count) = self.store.chunk_count(hs.sequence) else { continue };
			let mut set = ChunkSet::new(count);
			for i in 0..count {
				if hs.has(i as u32) {
					set.insert(i);
				}
			}
			if let Err(e) = s.handle_have(peer, hs.sequence, &set) {
				debug!(%peer, error = %e, "announcement ignored");
			}
		}
	}

	/// What we hold of the tracked segments, newest last, within the wire limit.
	fn have_request(&self) -> Request {
		let mut segments: Vec<HaveSegment> = self
			.scheduler
			.iter()
			.flat_map(|s| s.haves())
			.filter(|(_, set)| set.held() > 0)
			.map(|(seq, set)| HaveSegment::from_indices(seq, set.iter().map(|i| i as u32)))
			.collect();
		let excess = segments.len().saturating_sub(DEFAULT_MAX_HAVE_SEGMENTS);
		segments.drain(..excess);
		Request::Have { stream: self.config.stream, segments }
	}

	fn announce(&mut self) {
		if !self.have_dirty || self.scheduler.is_none() {
			return;
		}
		self.have_dirty = false;
		let ready: Vec<PeerId> =
			self.neighbours.iter().filter(|(_, n)| n.ready).map(|(p, _)| *p).collect();
		let have = self.have_request();
		for p in ready {
			self.control_request(p, "have", have.clone());
		}
	}

	fn send_receipts(&mut self) {
		let epoch = self.epoch();
		let seeders: Vec<(AccountBytes, PeerId)> =
			self.seeders.iter().map(|(a, p)| (*a, *p)).collect();
		for (account, peer) in seeders {
			if let Some(r) = self.book.poll_receipt(&account, epoch) {
				self.stats.receipts_sent += 1;
				self.control_request(peer, "receipt", Request::Receipt(r));
			}
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::p2p::receipts::{LedgerConfig, PassSigners};
	use sp_core::Pair as _;

	/// How long the test node takes no command.
	const STALL: Duration = Duration::from_secs(5);

	/// A viewer loop whose node takes no command for [`STALL`] and then fails every request,
	/// started with 200 announcements open (over three times the node's command queue). The
	/// test plays the server: it reads the frames the viewer sends and holds the inbound queue.
	struct Stalled {
		task: JoinHandle<Result<P2pWatchStats, P2pWatchError>>,
		stats: watch::Receiver<P2pWatchStats>,
		stop: oneshot::Sender<()>,
		out: mpsc::Receiver<Bytes>,
		_inbound: mpsc::Sender<Inbound>,
	}

	fn stalled_viewer() -> Stalled {
		let origin = sp_core::sr25519::Pair::from_string("//Origin", None).expect("seed");
		let viewer = sp_core::sr25519::Pair::from_string("//Viewer", None).expect("seed");
		let ledger = LedgerConfig::new([0; 32], viewer.public().0, PassSigners::default());
		// Never connected to.
		let server =
			Endpoint { transport: Transport::Tcp, addr: SocketAddr::from(([127, 0, 0, 1], 9)) };
		let p2p = P2pConfig::loopback([1; 32], ledger);
		let mut config =
			P2pWatchConfig::new([0; 32], 1, origin.public(), server, viewer.clone(), p2p);
		config.gateway = None;
		let pass = ViewerPass {
			genesis_hash: [0; 32],
			stream: 1,
			epoch: 0,
			viewer: viewer.public(),
			max_units: 1_000,
			issuer: origin.public(),
		};
		let mut node = P2pNode::stalled(PeerId::random(), STALL);
		let node_events = node.take_events();
		let (out, out_rx) = mpsc::channel(config.send_queue);
		let store = Arc::new(Store::new(1, 4));
		let playlist = Arc::new(Mutex::new(Playlist::new(1, 4)));
		let mut driver = Driver::new(
			config,
			Arc::new(node),
			Signed::sign(pass, &origin),
			out,
			store,
			playlist,
			None,
		);
		let have = Request::Have { stream: 1, segments: Vec::new() };
		for _ in 0..200 {
			driver.control_request(PeerId::random(), "have", have.clone());
		}
		let (inbound_tx, inbound) = mpsc::channel(1);
		let (task, stats, stop) = driver.spawn(inbound, node_events, None, || {});
		Stalled { task, stats, stop, out: out_rx, _inbound: inbound_tx }
	}

	/// The frames the viewer sent since the last call.
	fn sent(out: &mut mpsc::Receiver<Bytes>) -> Vec<Bytes> {
		std::iter::from_fn(|| out.try_recv().ok()).collect()
	}

	fn pings(nonces: std::ops::RangeInclusive<u64>) -> Vec<Bytes> {
		nonces.map(|n| encode_frame(&Message::Ping(n))).collect()
	}

	async fn stop(v: Stalled) -> Result<P2pWatchStats, P2pWatchError> {
		let _ = v.stop.send(());
		tokio::time::timeout(Duration::from_secs(60), v.task)
			.await
			.expect("stop returns within a minute (simulated)")
			.expect("viewer task")
	}

	/// The hang of `dsp load --p2p --viewers 100`: with its command queue full, the node gave
	/// freed places to the loop's own open requests, which the loop did not poll while it
	/// awaited the node's counters behind them; the loop never ran again (no pings, so the
	/// server closed the session as idle; no stop).
	#[tokio::test(start_paused = true)]
	async fn a_stalled_node_delays_neither_pings_nor_stop() {
		let mut v = stalled_viewer();
		// The node takes nothing: a ping at 0, 1, 2, 3 and 4 s all the same.
		tokio::time::sleep(STALL - Duration::from_millis(500)).await;
		assert_eq!(sent(&mut v.out), pings(1..=5));
		// It runs again and fails every request: each is handled, and the pings go on.
		tokio::time::sleep(Duration::from_secs(3)).await;
		assert_eq!(sent(&mut v.out), pings(6..=8));
		assert_eq!(v.stats.borrow().neighbours, 0);
		let stats = stop(v).await.expect("stopped cleanly");
		assert_eq!(stats.buffer.delivered, 0);
	}

	/// Stop while the node still takes nothing and requests wait for places in its queue: the
	/// viewer ends once the node has drained what was queued.
	#[tokio::test(start_paused = true)]
	async fn stop_during_a_node_stall_returns() {
		let mut v = stalled_viewer();
		// Between ticks, so that which task wakes first does not matter.
		tokio::time::sleep(Duration::from_millis(2_500)).await;
		assert_eq!(sent(&mut v.out), pings(1..=3));
		let started = Instant::now();
		stop(v).await.expect("stopped cleanly");
		// The node's shutdown waits for the node; nothing waits for more.
		assert!(Instant::now() - started <= STALL, "{:?}", Instant::now() - started);
	}
}
