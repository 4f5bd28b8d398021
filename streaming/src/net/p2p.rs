//! The swarm driver: one tokio task owns the libp2p [`Swarm`] and the sans-IO
//! [`Serving`] core, answers inbound requests from the core, runs outbound requests for the
//! [`P2pNode`] handle, and applies the core's bans to the block list.
//!
//! It only moves messages between libp2p and the core: which peer is served, refused, or banned
//! is decided in [`crate::p2p::serving`].

use crate::{
	clock::Clock,
	net::ledger_file::{ledger_path, write_all_epochs, write_epochs},
	p2p::{
		behaviour::{build_swarm, Behaviour, BehaviourEvent, SwarmLimits},
		receipts::{LedgerConfig, SeederLedger},
		serving::{ChunkSource, FetchError, Serving, ServingConfig, ServingEvent, ServingStats},
		upload::{UploadCap, UploadConfig},
		wire::{CodecRequest, RefusalCode, Request, Response},
		Millis,
	},
	segment::SegmentError,
};
use bytes::Bytes;
use dsp_primitives::{EpochIndex, SegmentHeader};
use futures::StreamExt;
use libp2p::{
	identity::Keypair,
	request_response::{self, OutboundRequestId},
	swarm::SwarmEvent,
	Multiaddr, PeerId, Swarm,
};
use std::{collections::HashMap, io, path::PathBuf, sync::Arc, time::Duration};
use tokio::{
	sync::{mpsc, oneshot, watch},
	task::JoinHandle,
};
use tracing::{debug, info, warn};

/// Settings of a P2P node.
#[derive(Clone)]
pub struct P2pConfig {
	/// ed25519 secret key of the node's libp2p identity (its `PeerId`).
	pub secret: [u8; 32],
	/// Addresses to listen on, e.g. `/ip4/0.0.0.0/udp/0/quic-v1` and `/ip4/0.0.0.0/tcp/0`.
	pub listen: Vec<Multiaddr>,
	/// libp2p limits.
	pub limits: SwarmLimits,
	/// Serving limits.
	pub serving: ServingConfig,
	/// Receipt ledger settings (this node as a seeder).
	pub ledger: LedgerConfig,
	/// Directory of the persisted ledger: loaded (and verified) at start, saved every
	/// `ledger_save_interval` when it changed and when the node is told to. `None` (default):
	/// in memory only.
	pub ledger_dir: Option<PathBuf>,
	/// How often a changed ledger is saved. Default 10 s: a crash loses at most that much
	/// bookkeeping, never a receipt older than it.
	pub ledger_save_interval: Duration,
	/// How long [`P2pNode::start`] waits for its listeners. Default 5 s.
	pub listen_timeout: Duration,
	/// Events buffered for [`P2pNode::next_event`]; beyond it they are dropped and logged.
	/// Default 256.
	pub event_buffer: usize,
	/// Upload cap on chunks served (a viewer's uplink share, [`UploadCap`]); a `GetChunk` over
	/// it is refused `Busy` and the requester asks elsewhere. `None` (default): uncapped, as
	/// for the node's own seed. `max_queued` is not used here: answers are not queued.
	pub upload: Option<UploadConfig>,
}

impl std::fmt::Debug for P2pConfig {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		// The secret key stays out of logs.
		f.debug_struct("P2pConfig")
			.field("listen", &self.listen)
			.field("limits", &self.limits)
			.field("serving", &self.serving)
			.field("ledger", &self.ledger)
			.field("ledger_dir", &self.ledger_dir)
			.finish_non_exhaustive()
	}
}

impl P2pConfig {
	/// Defaults, listening on loopback QUIC and TCP with OS-assigned ports.
	pub fn loopback(secret: [u8; 32], ledger: LedgerConfig) -> Self {
		Self {
			secret,
			listen: vec![
				"/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("valid multiaddr; qed"),
				"/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr; qed"),
			],
			limits: SwarmLimits::default(),
			serving: ServingConfig::default(),
			ledger,
			ledger_dir: None,
			ledger_save_interval: Duration::from_secs(10),
			listen_timeout: Duration::from_secs(5),
			event_buffer: 256,
			upload: None,
		}
	}
}

/// A P2P operation failed.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
	/// The peer is banned here: it was not dialled and nothing was sent.
	#[error("peer is banned")]
	Banned,
	/// The request failed in transport (dial failure, timeout, connection closed, unsupported
	/// protocol, a response that did not decode). Whether the peer processed it is unknown.
	#[error("request failed: {0}")]
	Outbound(String),
	/// The peer sent a chunk that does not match the signed header; it is now banned.
	#[error("bad chunk: {0}")]
	BadChunk(SegmentError),
	/// The peer refused, or answered with the wrong kind of response.
	#[error("not served: {0}")]
	NotServed(String),
	/// The driver task has stopped.
	#[error("p2p node stopped")]
	Stopped,
	/// Setting the node up failed.
	#[error("p2p setup: {0}")]
	Setup(String),
}

impl From<FetchError> for P2pError {
	fn from(e: FetchError) -> Self {
		match e {
			FetchError::BadChunk(e) => P2pError::BadChunk(e),
			FetchError::NotServed(s) => P2pError::NotServed(s),
		}
	}
}

enum Command {
	Request {
		peer: PeerId,
		addr: Option<Multiaddr>,
		request: Box<Request>,
		reply: oneshot::Sender<Result<Response, P2pError>>,
	},
	FetchChunk {
		peer: PeerId,
		addr: Option<Multiaddr>,
		header: Box<SegmentHeader>,
		index: u32,
		reply: oneshot::Sender<Result<Bytes, P2pError>>,
	},
	Ban(PeerId, String),
	IsBanned(PeerId, oneshot::Sender<bool>),
	Stats(oneshot::Sender<ServingStats>),
	SaveLedger(PathBuf, oneshot::Sender<io::Result<()>>),
	PruneLedger(EpochIndex, oneshot::Sender<usize>),
	Epoch(EpochIndex),
}

enum Pending {
	Plain(oneshot::Sender<Result<Response, P2pError>>),
	Fetch {
		header: Box<SegmentHeader>,
		index: u32,
		reply: oneshot::Sender<Result<Bytes, P2pError>>,
	},
}

/// Commands queued to the driver. Callers wait on the bounded channel rather than grow it.
///
/// A task that keeps several such calls open at once (a `FuturesUnordered` of requests) must
/// not also await a call outside of them: once the queue is full, freed places go to the
/// waiting calls in order, and a waiting call that is not polled keeps its place without
/// sending, so the outside call can wait forever. [`P2pNode::latest_stats`] needs no place.
const COMMAND_QUEUE: usize = 64;

/// A running P2P node. Dropping it stops the driver, which saves a changed ledger first; call
/// [`P2pNode::shutdown`] to wait for that.
pub struct P2pNode {
	/// The node's libp2p identity.
	pub peer_id: PeerId,
	/// Bound listen addresses (without `/p2p/<id>`).
	pub listen_addrs: Vec<Multiaddr>,
	commands: mpsc::Sender<Command>,
	events: mpsc::Receiver<ServingEvent<PeerId>>,
	/// The serving counters as the driver last published them.
	stats: watch::Receiver<ServingStats>,
	task: JoinHandle<()>,
}

impl P2pNode {
	/// Builds the swarm, binds the listeners and starts the driver. `source` answers header and
	/// chunk requests.
	pub async fn start<S>(config: P2pConfig, source: Arc<S>) -> Result<P2pNode, P2pError>
	where
		S: ChunkSource + Send + Sync + 'static,
	{
		let keypair = Keypair::ed25519_from_bytes(config.secret)
			.map_err(|e| P2pError::Setup(format!("secret key: {e}")))?;
		let peer_id = keypair.public().to_peer_id();
		let ledger = match &config.ledger_dir {
			Some(dir) => {
				let ledger = SeederLedger::load(config.ledger.clone(), dir)
					.map_err(|e| P2pError::Setup(format!("ledger in {}: {e}", dir.display())))?;
				if ledger_path(dir).exists() {
					// Written by an older version in one file: now one file per epoch.
					ledger.save(dir).map_err(|e| {
						P2pError::Setup(format!("ledger in {}: {e}", dir.display()))
					})?;
				}
				ledger
			}
			None => SeederLedger::new(config.ledger.clone()),
		};
		let mut swarm = build_swarm(keypair, &config.limits).map_err(P2pError::Setup)?;
		for addr in &config.listen {
			swarm
				.listen_on(addr.clone())
				.map_err(|e| P2pError::Setup(format!("listen on {addr}: {e}")))?;
		}
		let mut listen_addrs = Vec::new();
		let wait = async {
			while listen_addrs.len() < config.listen.len() {
				match swarm.select_next_some().await {
					SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
					SwarmEvent::ListenerError { error, .. } => return Err(error.to_string()),
					SwarmEvent::ListenerClosed { reason: Err(e), .. } => return Err(e.to_string()),
					_ => {}
				}
			}
			Ok(())
		};
		tokio::time::timeout(config.listen_timeout, wait)
			.await
			.map_err(|_| P2pError::Setup("listeners did not come up".into()))?
			.map_err(P2pError::Setup)?;
		info!(%peer_id, addrs = ?listen_addrs, "p2p node listening");
		let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
		let (events_tx, events) = mpsc::channel(config.event_buffer.max(1));
		let clock = Clock::new();
		let upload =
			config.upload.as_ref().map(|u| UploadCap::new(0, u.bytes_per_sec, u.burst_bytes));
		let (stats_tx, stats) = watch::channel(ServingStats::default());
		let driver = Driver {
			swarm,
			upload,
			clock,
			upload_refused: 0,
			serving: Serving::new(config.serving.clone(), ledger),
			source,
			pending: HashMap::new(),
			events: events_tx,
			stats: stats_tx,
			ledger_dir: config.ledger_dir.clone(),
		};
		let task = tokio::spawn(driver.run(rx, config.ledger_save_interval));
		Ok(P2pNode { peer_id, listen_addrs, commands, events, stats, task })
	}

	async fn call<T>(
		&self,
		make: impl FnOnce(oneshot::Sender<T>) -> Command,
	) -> Result<T, P2pError> {
		let (tx, rx) = oneshot::channel();
		self.commands.send(make(tx)).await.map_err(|_| P2pError::Stopped)?;
		rx.await.map_err(|_| P2pError::Stopped)
	}

	/// Sends `request` to `peer` (dialling `addr` if given and not connected) and waits for the
	/// answer.
	pub async fn request(
		&self,
		peer: PeerId,
		addr: Option<Multiaddr>,
		request: Request,
	) -> Result<Response, P2pError> {
		let request = Box::new(request);
		self.call(|reply| Command::Request { peer, addr, request, reply }).await?
	}

	/// Fetches chunk `index` of the segment `header` describes from `peer` and verifies it
	/// against the header (which the caller has verified against the origin key). A bad chunk
	/// bans the peer before this returns.
	pub async fn fetch_chunk(
		&self,
		peer: PeerId,
		addr: Option<Multiaddr>,
		header: SegmentHeader,
		index: u32,
	) -> Result<Bytes, P2pError> {
		let header = Box::new(header);
		self.call(|reply| Command::FetchChunk { peer, addr, header, index, reply }).await?
	}

	/// Bans `peer`: its connections close and it is never dialled or served again.
	pub async fn ban(&self, peer: PeerId, reason: impl Into<String>) -> Result<(), P2pError> {
		self.commands.send(Command::Ban(peer, reason.into())).await.map_err(|_| P2pError::Stopped)
	}

	/// Whether `peer` is banned.
	pub async fn is_banned(&self, peer: PeerId) -> Result<bool, P2pError> {
		self.call(|tx| Command::IsBanned(peer, tx)).await
	}

	/// Serving counters, after every command sent before this one (a round trip through the
	/// command queue: it waits while the queue is full).
	pub async fn stats(&self) -> Result<ServingStats, P2pError> {
		self.call(Command::Stats).await
	}

	/// Serving counters as the driver published them after its latest event or command. Never
	/// waits: for a loop that must stay responsive however busy the node is (see
	/// [`COMMAND_QUEUE`]).
	pub fn latest_stats(&self) -> ServingStats {
		*self.stats.borrow()
	}

	/// Saves the receipt ledger to `dir` (atomically, see [`SeederLedger::save`]).
	pub async fn save_ledger(&self, dir: PathBuf) -> Result<io::Result<()>, P2pError> {
		self.call(|tx| Command::SaveLedger(dir, tx)).await
	}

	/// The current credit epoch (from the chain): passes far from it are refused from now on.
	pub async fn set_epoch(&self, epoch: EpochIndex) -> Result<(), P2pError> {
		self.commands.send(Command::Epoch(epoch)).await.map_err(|_| P2pError::Stopped)
	}

	/// Forgets ledger entries of epochs before `epoch` (claimed, or past their claim window);
	/// returns how many.
	pub async fn prune_ledger(&self, epoch: EpochIndex) -> Result<usize, P2pError> {
		self.call(|tx| Command::PruneLedger(epoch, tx)).await
	}

	/// Stops the driver: closes every connection and saves a changed ledger to `ledger_dir`.
	pub async fn shutdown(self) {
		let P2pNode { commands, task, .. } = self;
		drop(commands);
		let _ = task.await;
	}

	/// How peers reach this node, as the tracker hands it out.
	pub fn peer_info(&self) -> crate::protocol::PeerInfo {
		crate::protocol::PeerInfo {
			peer_id: self.peer_id.to_bytes(),
			addrs: self
				.listen_addrs
				.iter()
				.take(crate::protocol::MAX_PEER_ADDRS)
				.map(|a| a.to_vec())
				.collect(),
		}
	}

	/// The next event of the serving core (bans, `Have` announcements).
	pub async fn next_event(&mut self) -> Option<ServingEvent<PeerId>> {
		self.events.recv().await
	}

	/// Takes the event stream out of the node, so that the node can be shared (`Arc`) by
	/// concurrent requests while one task reads its events. [`P2pNode::next_event`] returns
	/// `None` afterwards.
	pub fn take_events(&mut self) -> mpsc::Receiver<ServingEvent<PeerId>> {
		std::mem::replace(&mut self.events, mpsc::channel(1).1)
	}
}

struct Driver<S> {
	swarm: Swarm<Behaviour>,
	upload: Option<UploadCap>,
	/// The millisecond clock of the serving core and the upload cap.
	clock: Clock,
	upload_refused: u64,
	serving: Serving<PeerId>,
	source: Arc<S>,
	pending: HashMap<OutboundRequestId, Pending>,
	events: mpsc::Sender<ServingEvent<PeerId>>,
	stats: watch::Sender<ServingStats>,
	ledger_dir: Option<PathBuf>,
}

impl<S: ChunkSource + Send + Sync + 'static> Driver<S> {
	async fn run(mut self, mut commands: mpsc::Receiver<Command>, save_every: Duration) {
		let mut save = tokio::time::interval(save_every);
		loop {
			tokio::select! {
				ev = self.swarm.select_next_some() => self.handle_swarm_event(ev),
				cmd = commands.recv() => match cmd {
					Some(cmd) => self.handle_command(cmd),
					None => return self.save_ledger().await,
				},
				_ = save.tick(), if self.ledger_dir.is_some() => self.save_ledger().await,
			}
			self.apply_serving_events();
			let now = self.serving.stats();
			self.stats.send_if_modified(|s| std::mem::replace(s, now) != now);
		}
	}

	/// Saves the epochs of the ledger that changed (in practice the current one; see
	/// [`crate::net::ledger_file`]). The files are written on a blocking thread; the swarm
	/// waits meanwhile (a few milliseconds for thousands of entries), which keeps a save and the
	/// next change strictly ordered.
	async fn save_ledger(&mut self) {
		let Some(dir) = self.ledger_dir.clone() else { return };
		let changed = self.serving.take_changed_epochs();
		if changed.is_empty() {
			return;
		}
		let files = self.serving.ledger().encode_epochs(&changed);
		let bytes: usize = files.iter().filter_map(|(_, b)| b.as_ref()).map(Vec::len).sum();
		let write = tokio::task::spawn_blocking(move || write_epochs(&dir, &files));
		match write.await {
			Ok(Ok(())) => debug!(epochs = ?changed, bytes, "ledger saved"),
			Ok(Err(e)) => {
				self.serving.mark_epochs_changed(changed);
				warn!(error = %e, "saving the ledger failed; retrying at the next tick")
			}
			Err(e) => {
				self.serving.mark_epochs_changed(changed);
				warn!(error = %e, "ledger save task failed")
			}
		}
	}

	fn handle_command(&mut self, cmd: Command) {
		match cmd {
			Command::Request { peer, addr, request, reply } => {
				if self.serving.is_banned(&peer) {
					let _ = reply.send(Err(P2pError::Banned));
					return;
				}
				let id = self.send(peer, addr, *request);
				self.pending.insert(id, Pending::Plain(reply));
			}
			Command::FetchChunk { peer, addr, header, index, reply } => {
				if self.serving.is_banned(&peer) {
					let _ = reply.send(Err(P2pError::Banned));
					return;
				}
				let request =
					Request::GetChunk { stream: header.stream, sequence: header.sequence, index };
				let id = self.send(peer, addr, request);
				self.pending.insert(id, Pending::Fetch { header, index, reply });
			}
			Command::Ban(peer, reason) => self.serving.ban(peer, reason),
			Command::IsBanned(peer, tx) => {
				let _ = tx.send(self.serving.is_banned(&peer));
			}
			Command::Stats(tx) => {
				let _ = tx.send(self.serving.stats());
			}
			Command::SaveLedger(dir, tx) => {
				// Encoded here, written off the swarm's task.
				let ledger = self.serving.ledger();
				let files = ledger.encode_epochs(&ledger.epochs());
				tokio::task::spawn_blocking(move || {
					let _ = tx.send(write_all_epochs(&dir, &files));
				});
			}
			Command::Epoch(epoch) => self.serving.handle_epoch(epoch),
			Command::PruneLedger(epoch, tx) => {
				let _ = tx.send(self.serving.prune_ledger_before(epoch));
			}
		}
	}

	fn send(
		&mut self,
		peer: PeerId,
		addr: Option<Multiaddr>,
		request: Request,
	) -> OutboundRequestId {
		if let Some(addr) = addr {
			self.swarm.add_peer_address(peer, addr);
		}
		debug!(%peer, kind = request.kind(), "p2p request");
		self.swarm.behaviour_mut().rr.send_request(&peer, Ok(request))
	}

	fn handle_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
		match ev {
			SwarmEvent::Behaviour(BehaviourEvent::Rr(ev)) => self.handle_rr_event(ev),
			SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
				self.serving.handle_disconnected(&peer_id);
			}
			SwarmEvent::IncomingConnectionError { error, send_back_addr, .. } => {
				debug!(peer = %send_back_addr, %error, "incoming connection refused or failed");
			}
			_ => {}
		}
	}

	/// Milliseconds since the driver started: the clock of the sans-IO cores.
	fn now(&self) -> Millis {
		self.clock.now()
	}

	fn handle_rr_event(&mut self, ev: request_response::Event<CodecRequest, Response>) {
		let now = self.now();
		match ev {
			request_response::Event::Message { peer, message } => match message {
				request_response::Message::Request { request: Err(e), channel, .. } => {
					warn!(%peer, error = %e, "p2p bad request");
					let what = e.to_string();
					self.serving.handle_bad_input(now, peer, &what);
					let response = Response::refused(RefusalCode::BadRequest, what);
					let _ = self.swarm.behaviour_mut().rr.send_response(channel, response);
				}
				request_response::Message::Request { request: Ok(request), channel, .. } => {
					let kind = request.kind();
					if let Some(busy) = self.over_upload_cap(now, &peer, &request) {
						let _ = self.swarm.behaviour_mut().rr.send_response(channel, busy);
						return;
					}
					let response = self.serving.handle_request(now, peer, request, &*self.source);
					if let Response::Refused { code, reason } = &response {
						debug!(%peer, kind, ?code, %reason, "p2p request refused");
					}
					// Fails only if the peer has gone; nothing to do then.
					let _ = self.swarm.behaviour_mut().rr.send_response(channel, response);
				}
				request_response::Message::Response { request_id, response } => {
					match self.pending.remove(&request_id) {
						Some(Pending::Plain(reply)) => {
							let _ = reply.send(Ok(response));
						}
						Some(Pending::Fetch { header, index, reply }) => {
							let r =
								self.serving.handle_chunk_response(peer, &header, index, response);
							let _ = reply.send(r.map_err(P2pError::from));
						}
						None => {}
					}
				}
			},
			request_response::Event::OutboundFailure { peer, request_id, error } => {
				if matches!(&error, request_response::OutboundFailure::Io(e) if e.kind() == io::ErrorKind::InvalidData)
				{
					// The peer's response broke the codec's limits.
					self.serving.handle_bad_input(now, peer, &error.to_string());
				}
				let err = P2pError::Outbound(error.to_string());
				match self.pending.remove(&request_id) {
					Some(Pending::Plain(reply)) => {
						let _ = reply.send(Err(err));
					}
					Some(Pending::Fetch { reply, .. }) => {
						let _ = reply.send(Err(err));
					}
					None => {}
				}
			}
			request_response::Event::InboundFailure { peer, error, .. } => {
				debug!(%peer, %error, "p2p inbound failure");
			}
			request_response::Event::ResponseSent { .. } => {}
		}
	}

	/// `Refused{Busy}` if `request` is a `GetChunk` of a pass holder for a held chunk that the
	/// upload cap cannot take now. Checked before the serving core so that a refused chunk is
	/// not counted as served in the receipt ledger; requests without a pass take nothing.
	fn over_upload_cap(
		&mut self,
		now: Millis,
		peer: &PeerId,
		request: &Request,
	) -> Option<Response> {
		let cap = self.upload.as_mut()?;
		let Request::GetChunk { stream, sequence, index } = *request else { return None };
		if !self.serving.has_pass(peer, stream) {
			return None;
		}
		let len = self.source.chunk(stream, sequence, index)?.len() as u64;
		if cap.try_take(now, len) {
			return None;
		}
		self.upload_refused += 1;
		debug!(refused = self.upload_refused, "upload cap reached: chunk request refused");
		Some(Response::refused(RefusalCode::Busy, "upload cap"))
	}

	fn apply_serving_events(&mut self) {
		while let Some(ev) = self.serving.poll_event() {
			match &ev {
				ServingEvent::Ban { peer, reason } => {
					warn!(%peer, %reason, "p2p peer banned");
					self.swarm.behaviour_mut().blocked.block_peer(*peer);
				}
				ServingEvent::Unban { peer } => {
					debug!(%peer, "p2p ban lifted (ban list full)");
					self.swarm.behaviour_mut().blocked.unblock_peer(*peer);
				}
				ServingEvent::Have { .. } => {}
			}
			if self.events.try_send(ev).is_err() {
				debug!("p2p event buffer full or closed; event dropped");
			}
		}
	}
}

#[cfg(test)]
impl P2pNode {
	/// A node without a swarm, for tests of what drives it: its driver takes no command for
	/// `stall` (a node starved of CPU, its queue filling up), then answers every request with a
	/// transport failure and every other query with defaults, until the handle is dropped.
	pub(crate) fn stalled(peer_id: PeerId, stall: Duration) -> P2pNode {
		let (commands, mut rx) = mpsc::channel(COMMAND_QUEUE);
		let (events_tx, events) = mpsc::channel(1);
		let (stats_tx, stats) = watch::channel(ServingStats::default());
		let task = tokio::spawn(async move {
			// Open while the node runs, as a real driver's.
			let _open = (events_tx, stats_tx);
			tokio::time::sleep(stall).await;
			while let Some(cmd) = rx.recv().await {
				let failed = || P2pError::Outbound("stalled test node".into());
				match cmd {
					Command::Request { reply, .. } => {
						let _ = reply.send(Err(failed()));
					}
					Command::FetchChunk { reply, .. } => {
						let _ = reply.send(Err(failed()));
					}
					Command::IsBanned(_, tx) => {
						let _ = tx.send(false);
					}
					Command::Stats(tx) => {
						let _ = tx.send(ServingStats::default());
					}
					Command::SaveLedger(_, tx) => {
						let _ = tx.send(Ok(()));
					}
					Command::PruneLedger(_, tx) => {
						let _ = tx.send(0);
					}
					Command::Ban(..) | Command::Epoch(_) => {}
				}
			}
		});
		P2pNode { peer_id, listen_addrs: Vec::new(), commands, events, stats, task }
	}
}
