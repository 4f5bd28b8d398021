//! The peer-side serving state machine, sans-IO: which peers showed a valid pass for which
//! stream, per-peer request rate limits (flooding), bans, the seeder's receipt ledger, and the
//! check of every chunk received from a peer.
//!
//! # Driving a [`Serving`]
//!
//! 1. For every inbound request call [`Serving::handle_request`] and send back the response it
//!    returns (it is always an answer; refusals are [`Response::Refused`]).
//! 2. For every inbound substream that failed to decode (oversized, malformed) call
//!    [`Serving::handle_bad_input`].
//! 3. For every response to a `GetChunk` this peer sent, call [`Serving::handle_chunk_response`]:
//!    it verifies the chunk against the origin-signed header before anything uses it.
//! 4. Drain [`Serving::poll_event`]: on [`ServingEvent::Ban`] block the peer and close its
//!    connections; `Have` goes to the download scheduler.
//! 5. Call [`Serving::handle_disconnected`] when a peer's last connection closed.
//! 6. Call [`Serving::handle_epoch`] when the chain's credit epoch changes: the ledger forgets
//!    epochs past the claim window then. Save the epochs [`Serving::take_changed_epochs`]
//!    names (see [`crate::net::ledger_file`]).
//!
//! # What a peer can make this node verify
//!
//! Every sr25519 verification a request triggers (a pass: its peer binding and, unless the
//! pass is in the [`PassCache`], its signature; a receipt: the pass and receipt signatures) is
//! paid from the peer's and the node's [`VerifyBudget`] first; the cheap checks (epoch, chain,
//! issuer) come before it. A failed verification, a pass for another chain or from an issuer
//! that is not authorised count as bad input ([`ServingConfig::max_bad_input`]); a peer that
//! keeps asking over its own budget is banned as a flooder. With the defaults the node
//! verifies at most `total_per_sec` = 1024 signatures per second (plus a burst of 2048),
//! however many peer ids ask; one peer id gets at most `per_peer_burst` = 16 at once, and at
//! most 6 failed ones (3 bad inputs, 2 verifications each) before its ban.
//!
//! # Ledger size
//!
//! The ledger holds passes of the last `claim_window_epochs` + 1 epochs (older ones cannot be
//! claimed any more and are pruned at each epoch change) and at most `max_entries` entries:
//! when it is full, the oldest epoch is evicted for a pass of a newer one, so honest viewers
//! are refused at most until the next epoch. About 380 bytes per entry on disk and 450 in
//! memory: 65 536 entries are 25 MiB on disk.
//!
//! Time only comes in through `now` arguments, on the `u64` millisecond clock of the rest of
//! `p2p` ([`Millis`]); nothing here reads a clock. Peers are any [`PeerIdentity`] (libp2p's
//! `PeerId` in the swarm), as the scheduler's are generic.

use super::{
	receipts::{ReceiptError, SeederLedger},
	upload::UploadCap,
	verify_guard::{pass_hash, OverBudget, PassCache, VerifyBudget, VerifyConfig},
	wire::{verify_peer_binding, HaveSegment, PeerIdentity, RefusalCode, Request, Response},
	Millis,
};
use crate::segment::{verify_chunk, SegmentError};
use bytes::Bytes;
use dsp_primitives::{
	EpochIndex, Hash32, PublicKey, SegmentHeader, Signature, Signed, StreamId, ViewerPass,
};
use std::{
	collections::{BTreeSet, HashMap, HashSet, VecDeque},
	fmt::Debug,
	hash::Hash,
	time::Duration,
};

/// Where served headers and chunks come from (the viewer's verified store, or a node's window).
pub trait ChunkSource {
	/// The signed header of `stream`'s segment `sequence`, if held.
	fn header(&self, stream: StreamId, sequence: u64) -> Option<Signed<SegmentHeader>>;
	/// Chunk `index` of that segment, if held (and verified when it was stored).
	fn chunk(&self, stream: StreamId, sequence: u64, index: u32) -> Option<Bytes>;
}

/// Limits of the serving state machine.
#[derive(Clone, Debug)]
pub struct ServingConfig {
	/// Requests a peer may make per `rate_window`; more are refused with `Busy`. Default 200
	/// (at 64 KiB chunks, 12.5 MiB/s per peer: far above one stream's needs).
	pub max_requests_per_window: u32,
	/// Length of the rate window. Default 1 s.
	pub rate_window: Duration,
	/// Requests refused as `Busy` within one window at which the peer is banned for flooding.
	/// Default 200 (a peer that sends twice the allowed rate).
	pub flood_ban_after: u32,
	/// Undecodable or oversized requests a peer may send before it is banned. Default 3: an
	/// honest peer sends none, but one bad version should not cost a ban at the first byte.
	pub max_bad_input: u32,
	/// Most peers with state (passes, rate counters); further peers are refused `Busy` until
	/// one disconnects. Default 1024, about 200 bytes each.
	pub max_peers: usize,
	/// Most streams one peer may hold passes for. Default 4.
	pub max_passes_per_peer: usize,
	/// Most peers remembered as banned; beyond it the oldest ban is lifted
	/// ([`ServingEvent::Unban`]), so that fresh identities cannot grow the ban list (and
	/// libp2p's block list) without bound. Default 4096.
	pub max_banned: usize,
	/// Passes of this many epochs before the current one are still accepted (a session that
	/// started before an epoch boundary keeps its pass). Default 1. Only applies once the
	/// current epoch is known ([`Serving::handle_epoch`]).
	pub pass_epoch_lag: EpochIndex,
	/// Most disconnected peers whose bad-input count is remembered, so that reconnecting does
	/// not reset it; the oldest is forgotten beyond it. Default 4096, 40 bytes each. The same
	/// bound holds, apart, for the disconnected peers whose verification bucket is remembered
	/// (so that reconnecting does not refill it): about 200 bytes each with libp2p peer ids,
	/// 0.8 MiB at 4096.
	pub max_remembered_strikes: usize,
	/// Signature verifications peers may trigger (per peer and in total) and the cache of
	/// verified passes.
	pub verify: VerifyConfig,
	/// Epochs after an epoch during which its receipts can be claimed (the chain's
	/// `ClaimWindow`): at epoch `e` the ledger forgets epochs before `e - claim_window_epochs`.
	/// Default [`DEFAULT_CLAIM_WINDOW_EPOCHS`].
	pub claim_window_epochs: EpochIndex,
}

/// Default [`ServingConfig::claim_window_epochs`]: 24, the runtime's `ClaimWindow` (a day of
/// one-hour epochs).
pub const DEFAULT_CLAIM_WINDOW_EPOCHS: EpochIndex = 24;

impl Default for ServingConfig {
	fn default() -> Self {
		Self {
			max_requests_per_window: 200,
			rate_window: Duration::from_secs(1),
			flood_ban_after: 200,
			max_bad_input: 3,
			max_peers: 1024,
			max_passes_per_peer: 4,
			max_banned: 4096,
			max_remembered_strikes: 4096,
			pass_epoch_lag: 1,
			verify: VerifyConfig::default(),
			claim_window_epochs: DEFAULT_CLAIM_WINDOW_EPOCHS,
		}
	}
}

/// Something the shell must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServingEvent<P> {
	/// Block `peer` and close its connections; never dial or serve it again.
	Ban {
		/// The peer.
		peer: P,
		/// Why, for logs.
		reason: String,
	},
	/// Unblock `peer`: its ban was the oldest and `max_banned` newer ones exist.
	Unban {
		/// The peer.
		peer: P,
	},
	/// `peer` announced what it holds (for the download scheduler).
	Have {
		/// The peer.
		peer: P,
		/// Stream.
		stream: StreamId,
		/// The viewer key of the pass the peer showed for `stream`: its account as a seeder,
		/// which receipts for what it serves name.
		viewer: PublicKey,
		/// Chunk sets.
		segments: Vec<HaveSegment>,
	},
}

/// A chunk received from a peer was not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
	/// The peer sent a chunk that does not match the signed header: it is banned.
	#[error("bad chunk from peer: {0}")]
	BadChunk(SegmentError),
	/// The peer answered with something else than a chunk (a refusal, or a wrong response type,
	/// which also bans it).
	#[error("peer refused or answered {0}")]
	NotServed(String),
}

/// The pass a peer showed for a stream.
#[derive(Clone, Copy, Debug)]
struct HeldPass {
	viewer: PublicKey,
	epoch: EpochIndex,
	/// [`pass_hash`]: the same pass shown again on the connection is not verified again.
	hash: Hash32,
}

#[derive(Debug)]
struct PeerState {
	passes: HashMap<StreamId, HeldPass>,
	window_start: Millis,
	requests: u32,
	busy: u32,
	bad_input: u32,
	/// The peer's share of the verification budget.
	verify: UploadCap,
}

/// Counters, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServingStats {
	/// Chunks served.
	pub chunks_served: u64,
	/// Bytes of chunks served.
	pub bytes_served: u64,
	/// Requests refused.
	pub refused: u64,
	/// Peers banned.
	pub bans: u64,
	/// sr25519 verifications made for peers' passes and receipts.
	pub verifications: u64,
	/// Requests refused because a verification budget was spent.
	pub over_verify_budget: u64,
	/// Ledger entries forgotten: past the claim window, or evicted (oldest epoch first) to
	/// make room in a full ledger.
	pub ledger_pruned: u64,
	/// Of those, entries evicted from a full ledger while still claimable.
	pub ledger_evicted: u64,
}

/// The serving state machine of one P2P node. See the module docs for the call order.
#[derive(Debug)]
pub struct Serving<P> {
	config: ServingConfig,
	ledger: SeederLedger,
	/// Epochs whose ledger entries changed since [`Serving::take_changed_epochs`].
	changed_epochs: BTreeSet<EpochIndex>,
	/// The current credit epoch, once known.
	epoch: Option<EpochIndex>,
	/// The newest epoch the ledger was pruned for: the chain's, or without one the newest of
	/// an accepted pass.
	horizon: Option<EpochIndex>,
	budget: VerifyBudget,
	pass_cache: PassCache,
	peers: HashMap<P, PeerState>,
	banned: HashSet<P>,
	ban_order: VecDeque<P>,
	/// Bad-input counts of disconnected peers, oldest first in `strike_order`.
	strikes: HashMap<P, u32>,
	strike_order: VecDeque<P>,
	/// Verification buckets of disconnected peers that were not full, with the generation of
	/// their entry in `bucket_order` (oldest first; entries whose generation no longer
	/// matches are stale). Forgotten once full again, at most `per_peer_burst` /
	/// `per_peer_per_sec` seconds after the peer's last verification (4 s by default), and
	/// beyond `max_remembered_strikes` entries, oldest first.
	buckets: HashMap<P, (UploadCap, u64)>,
	bucket_order: VecDeque<(P, u64)>,
	bucket_generation: u64,
	events: VecDeque<ServingEvent<P>>,
	stats: ServingStats,
}

impl<P: PeerIdentity + Copy + Eq + Hash + Debug> Serving<P> {
	/// A serving core with `ledger` for passes and receipts.
	pub fn new(config: ServingConfig, ledger: SeederLedger) -> Self {
		let budget = VerifyBudget::new(0, config.verify.clone());
		let pass_cache = PassCache::new(config.verify.max_cached_passes);
		Self {
			config,
			ledger,
			changed_epochs: BTreeSet::new(),
			epoch: None,
			horizon: None,
			budget,
			pass_cache,
			peers: HashMap::new(),
			banned: HashSet::new(),
			ban_order: VecDeque::new(),
			strikes: HashMap::new(),
			strike_order: VecDeque::new(),
			buckets: HashMap::new(),
			bucket_order: VecDeque::new(),
			bucket_generation: 0,
			events: VecDeque::new(),
			stats: ServingStats::default(),
		}
	}

	/// The receipt ledger (for saving and claims).
	pub fn ledger(&self) -> &SeederLedger {
		&self.ledger
	}

	/// Forgets ledger entries of epochs before `epoch` (see [`SeederLedger::prune_before`]),
	/// and the cached passes of those epochs; returns how many entries.
	pub fn prune_ledger_before(&mut self, epoch: EpochIndex) -> usize {
		let gone: BTreeSet<EpochIndex> =
			self.ledger.entries().map(|e| e.pass.payload.epoch).filter(|e| *e < epoch).collect();
		let n = self.ledger.prune_before(epoch);
		self.pass_cache.prune_before(epoch);
		self.changed_epochs.extend(gone);
		self.stats.ledger_pruned += n as u64;
		n
	}

	/// The epochs whose entries changed (a pass, receipt or served chunk, or pruned) since the
	/// last call: the shell saves them then, and only them.
	pub fn take_changed_epochs(&mut self) -> BTreeSet<EpochIndex> {
		std::mem::take(&mut self.changed_epochs)
	}

	/// `epochs` must be saved again (the last save failed).
	pub fn mark_epochs_changed(&mut self, epochs: impl IntoIterator<Item = EpochIndex>) {
		self.changed_epochs.extend(epochs);
	}

	/// Moves the pruning horizon to `epoch` (never back): entries of epochs that can no longer
	/// be claimed there are forgotten.
	fn advance_horizon(&mut self, epoch: EpochIndex) {
		if self.horizon.is_some_and(|h| h >= epoch) {
			return;
		}
		self.horizon = Some(epoch);
		self.prune_ledger_before(epoch.saturating_sub(self.config.claim_window_epochs));
	}

	/// A full ledger refused a pass of `epoch`: forgets its oldest epoch if that is older.
	/// Whether room was made.
	fn evict_oldest_epoch_before(&mut self, epoch: EpochIndex) -> bool {
		match self.ledger.entries().map(|e| e.pass.payload.epoch).min() {
			Some(oldest) if oldest < epoch => {
				let n = self.prune_ledger_before(oldest + 1);
				self.stats.ledger_evicted += n as u64;
				tracing::warn!(epoch = oldest, entries = n, "ledger full: oldest epoch evicted");
				true
			}
			_ => false,
		}
	}

	/// Counters.
	pub fn stats(&self) -> ServingStats {
		self.stats
	}

	/// The current credit epoch (from the chain). Passes for a future epoch, or older than
	/// `pass_epoch_lag` epochs, are refused from now on; passes already shown stay valid for
	/// their connection. Ledger entries of epochs before `epoch - claim_window_epochs` (no
	/// longer claimable) are forgotten.
	pub fn handle_epoch(&mut self, epoch: EpochIndex) {
		self.epoch = Some(epoch);
		self.advance_horizon(epoch);
	}

	/// Whether `peer` is banned.
	pub fn is_banned(&self, peer: &P) -> bool {
		self.banned.contains(peer)
	}

	/// Whether `peer` showed a valid pass for `stream` (and is not banned): only such a peer's
	/// requests may take from an upload budget.
	pub fn has_pass(&self, peer: &P, stream: StreamId) -> bool {
		!self.is_banned(peer)
			&& self.peers.get(peer).is_some_and(|p| p.passes.contains_key(&stream))
	}

	/// Bans `peer` (idempotent) and tells the shell to block it.
	pub fn ban(&mut self, peer: P, reason: impl Into<String>) {
		if !self.banned.insert(peer) {
			return;
		}
		self.ban_order.push_back(peer);
		if self.ban_order.len() > self.config.max_banned {
			if let Some(old) = self.ban_order.pop_front() {
				self.banned.remove(&old);
				self.events.push_back(ServingEvent::Unban { peer: old });
			}
		}
		self.peers.remove(&peer);
		self.stats.bans += 1;
		self.events.push_back(ServingEvent::Ban { peer, reason: reason.into() });
	}

	/// The next event for the shell.
	pub fn poll_event(&mut self) -> Option<ServingEvent<P>> {
		self.events.pop_front()
	}

	/// `peer`'s last connection closed: forget its passes and rate counters (not its ban, not
	/// its bad-input count and not what is left of its verification budget, which
	/// reconnecting must not reset).
	pub fn handle_disconnected(&mut self, peer: &P) {
		let Some(mut state) = self.peers.remove(peer) else { return };
		let last = state.verify.last_update();
		if !state.verify.is_full(last) {
			self.bucket_generation += 1;
			self.buckets.insert(*peer, (state.verify, self.bucket_generation));
			self.bucket_order.push_back((*peer, self.bucket_generation));
			while self.bucket_order.len() > self.config.max_remembered_strikes {
				self.forget_oldest_bucket();
			}
		}
		if state.bad_input > 0 {
			if self.strikes.insert(*peer, state.bad_input).is_none() {
				self.strike_order.push_back(*peer);
			}
			while self.strikes.len() > self.config.max_remembered_strikes {
				let Some(old) = self.strike_order.pop_front() else { break };
				self.strikes.remove(&old);
			}
		}
	}

	/// Drops the oldest entry of `bucket_order`, and its bucket unless the entry is stale.
	fn forget_oldest_bucket(&mut self) {
		let Some((p, generation)) = self.bucket_order.pop_front() else { return };
		if self.buckets.get(&p).is_some_and(|(_, g)| *g == generation) {
			self.buckets.remove(&p);
		}
	}

	/// Forgets the remembered buckets, oldest first, that are stale or full again at `now`.
	fn prune_buckets(&mut self, now: Millis) {
		while let Some(&(p, generation)) = self.bucket_order.front() {
			let spent = match self.buckets.get_mut(&p) {
				Some((bucket, g)) if *g == generation => !bucket.is_full(now),
				_ => false,
			};
			if spent {
				break;
			}
			self.forget_oldest_bucket();
		}
	}

	/// Disconnected peers whose spent verification bucket is remembered.
	pub fn remembered_buckets(&self) -> usize {
		self.buckets.len()
	}

	/// Starts state for `peer` (restoring its remembered bad-input count and verification
	/// bucket) unless `max_peers` are tracked already; whether `peer` now has state.
	fn track(&mut self, now: Millis, peer: P) -> bool {
		if self.peers.contains_key(&peer) {
			return true;
		}
		if self.peers.len() >= self.config.max_peers {
			return false;
		}
		self.prune_buckets(now);
		let verify = match self.buckets.remove(&peer) {
			Some((bucket, _)) => bucket,
			None => self.budget.peer_bucket(now),
		};
		let bad_input = self.strikes.remove(&peer).unwrap_or(0);
		let state = PeerState {
			passes: HashMap::new(),
			window_start: now,
			requests: 0,
			busy: 0,
			bad_input,
			verify,
		};
		self.peers.insert(peer, state);
		true
	}

	/// An inbound request from `peer` could not be read (oversized, malformed, over a count
	/// limit). Bans after `max_bad_input` of them.
	pub fn handle_bad_input(&mut self, now: Millis, peer: P, what: &str) {
		if !self.track(now, peer) {
			// Too many peers to keep count: ban on the spot rather than forget.
			return self.ban(peer, format!("bad input while at max_peers: {what}"));
		}
		let state = self.peers.get_mut(&peer).expect("tracked above; qed");
		state.bad_input += 1;
		let count = state.bad_input;
		if count >= self.config.max_bad_input {
			self.ban(peer, format!("{count} bad inputs, last: {what}"));
		}
	}

	fn refuse(&mut self, code: RefusalCode, reason: impl Into<String>) -> Response {
		self.stats.refused += 1;
		Response::refused(code, reason)
	}

	/// Answers one request from `peer`.
	pub fn handle_request(
		&mut self,
		now: Millis,
		peer: P,
		request: Request,
		source: &impl ChunkSource,
	) -> Response {
		if self.banned.contains(&peer) {
			return self.refuse(RefusalCode::Banned, "banned");
		}
		if !self.track(now, peer) {
			return self.refuse(RefusalCode::Busy, "too many peers");
		}
		let cfg = &self.config;
		let state = self.peers.get_mut(&peer).expect("inserted above; qed");
		if now.saturating_sub(state.window_start) >= crate::clock::millis(cfg.rate_window) {
			state.window_start = now;
			state.requests = 0;
			state.busy = 0;
		}
		state.requests += 1;
		if state.requests > cfg.max_requests_per_window {
			state.busy += 1;
			if state.busy >= cfg.flood_ban_after {
				self.ban(peer, "flooding: request rate far above max_requests_per_window");
				return self.refuse(RefusalCode::Banned, "flooding");
			}
			return self.refuse(RefusalCode::Busy, "request rate above max_requests_per_window");
		}
		let stream = request.stream();
		let pass = state.passes.get(&stream).map(|h| (h.viewer, h.epoch));
		let passes_full = state.passes.len() >= cfg.max_passes_per_peer;
		match (request, pass) {
			(Request::Pass { pass, binding }, _) => {
				self.handle_pass(now, peer, pass, binding, passes_full)
			}
			(_, None) => self.refuse(RefusalCode::NoPass, format!("no pass for stream {stream}")),
			(Request::GetHeader { sequence, .. }, Some(_)) => match source.header(stream, sequence)
			{
				Some(h) => Response::Header(h),
				None => self.refuse(RefusalCode::NotHeld, format!("segment {sequence}")),
			},
			(Request::GetChunk { sequence, index, .. }, Some((viewer, epoch))) => {
				if !self.ledger.may_serve(stream, &viewer, epoch) {
					return self
						.refuse(RefusalCode::ReceiptsBehind, "receipts lag beyond the slack");
				}
				match source.chunk(stream, sequence, index) {
					// Beyond the pass's max_units the chain pays nothing: not served.
					Some(data)
						if data.len() as u64 > self.ledger.pass_room(stream, &viewer, epoch) =>
					{
						self.refuse(
							RefusalCode::NoPass,
							"the pass's max_units are served: present a renewed pass",
						)
					}
					Some(data) => {
						self.ledger.handle_served(stream, &viewer, epoch, data.len() as u64);
						self.changed_epochs.insert(epoch);
						self.stats.chunks_served += 1;
						self.stats.bytes_served += data.len() as u64;
						Response::Chunk(data)
					}
					None => self.refuse(RefusalCode::NotHeld, format!("chunk {sequence}/{index}")),
				}
			}
			(Request::Have { segments, .. }, Some((viewer, _))) => {
				self.events.push_back(ServingEvent::Have { peer, stream, viewer, segments });
				Response::Ok
			}
			(Request::Receipt(r), Some((viewer, _))) => {
				if r.payload.viewer != viewer {
					return self.refuse(RefusalCode::BadReceipt, "receipt for another viewer");
				}
				// The pass and the receipt signature.
				if let Some(refused) = self.pay_verifications(now, peer, 2) {
					return refused;
				}
				let epoch = r.payload.epoch;
				let result = self.ledger.handle_receipt(r);
				self.stats.verifications += match &result {
					Ok(_)
					| Err(
						ReceiptError::BadReceiptSignature | ReceiptError::UnitsDecreased { .. },
					) => 2,
					Err(ReceiptError::Rejected(
						dsp_primitives::ClaimRejection::BadPassSignature,
					)) => 1,
					Err(_) => 0,
				};
				match result {
					Ok(_) => {
						self.changed_epochs.insert(epoch);
						Response::Ok
					}
					Err(
						e @ (ReceiptError::BadReceiptSignature
						| ReceiptError::UnitsDecreased { .. }),
					) => {
						// Forged or rolled-back receipts are dishonest, not a mistake.
						let reason = e.to_string();
						self.ban(peer, format!("receipt: {reason}"));
						self.refuse(RefusalCode::Banned, reason)
					}
					Err(e) => self.refuse(RefusalCode::BadReceipt, e.to_string()),
				}
			}
		}
	}

	/// Pays `n` verifications for `peer` (tracked) from its budget and the node's, or the
	/// refusal to send. Asking over its own budget counts toward the peer's flood ban.
	fn pay_verifications(&mut self, now: Millis, peer: P, n: u64) -> Option<Response> {
		let state = self.peers.get_mut(&peer)?;
		let over = match self.budget.try_take(now, &mut state.verify, n) {
			Ok(()) => return None,
			Err(over) => over,
		};
		self.stats.over_verify_budget += 1;
		if over == OverBudget::Total {
			return Some(self.refuse(RefusalCode::Busy, "node's signature verification budget"));
		}
		state.busy += 1;
		if state.busy >= self.config.flood_ban_after {
			self.ban(peer, "flooding: signature verifications far above the peer's budget");
			return Some(self.refuse(RefusalCode::Banned, "flooding"));
		}
		Some(self.refuse(RefusalCode::Busy, "peer's signature verification budget"))
	}

	/// A pass that failed a check only a dishonest or broken peer fails: counted as bad input.
	fn bad_pass(&mut self, now: Millis, peer: P, why: String) -> Response {
		self.handle_bad_input(now, peer, &format!("pass: {why}"));
		let code = if self.is_banned(&peer) { RefusalCode::Banned } else { RefusalCode::BadPass };
		self.refuse(code, why)
	}

	/// A `Pass` request from tracked `peer`: cheap checks first, then the verifications it
	/// costs, paid from the budgets (none for a pass the peer showed already, one for a pass
	/// in the cache).
	fn handle_pass(
		&mut self,
		now: Millis,
		peer: P,
		pass: Signed<ViewerPass>,
		binding: Signature,
		passes_full: bool,
	) -> Response {
		let p = &pass.payload;
		let (stream, viewer, epoch) = (p.stream, p.viewer, p.epoch);
		let hash = pass_hash(&pass);
		let held = self.peers.get(&peer).and_then(|s| s.passes.get(&stream)).copied();
		if held.is_some_and(|h| h.hash == hash) {
			// Shown again on this connection: verified already.
			return Response::Ok;
		}
		if held.is_none() && passes_full {
			return self.refuse(RefusalCode::Busy, "passes for too many streams");
		}
		if let Some(now_epoch) = self.epoch {
			let lag = self.config.pass_epoch_lag;
			if epoch > now_epoch || epoch.saturating_add(lag) < now_epoch {
				// An honest viewer's pass can be stale: refused, not counted.
				let why = format!("pass for epoch {epoch}, current epoch {now_epoch}");
				return self.refuse(RefusalCode::BadPass, why);
			}
		}
		let lc = self.ledger.config();
		if p.genesis_hash != lc.genesis_hash {
			return self.bad_pass(now, peer, ReceiptError::WrongGenesis.to_string());
		}
		if !lc.signers.is_authorised(stream, &p.issuer) {
			return self.bad_pass(now, peer, ReceiptError::UnauthorisedIssuer(stream).to_string());
		}
		if p.viewer.0 == lc.seeder {
			return self.bad_pass(now, peer, ReceiptError::SelfDealing.to_string());
		}
		let cached = self.pass_cache.contains(&hash);
		if let Some(refused) = self.pay_verifications(now, peer, if cached { 1 } else { 2 }) {
			return refused;
		}
		self.stats.verifications += 1;
		if !verify_peer_binding(p, &peer, &binding) {
			return self.bad_pass(now, peer, "pass not bound to this peer".into());
		}
		if !cached {
			self.stats.verifications += 1;
			let mut result = self.ledger.handle_pass(pass.clone());
			if matches!(result, Err(ReceiptError::Full(_))) {
				if !self.evict_oldest_epoch_before(epoch) {
					return self.refuse(RefusalCode::Busy, "ledger full with passes of this epoch");
				}
				// Verified again: once per eviction of a whole epoch.
				self.stats.verifications += 1;
				result = self.ledger.handle_pass(pass);
			}
			match result {
				Ok(()) => {}
				Err(e @ ReceiptError::Full(_)) => {
					return self.refuse(RefusalCode::Busy, e.to_string())
				}
				Err(e) => return self.bad_pass(now, peer, e.to_string()),
			}
			self.pass_cache.insert(hash, epoch);
			self.changed_epochs.insert(epoch);
		}
		if let Some(state) = self.peers.get_mut(&peer) {
			state.passes.insert(stream, HeldPass { viewer, epoch, hash });
		}
		if self.epoch.is_none() {
			// No chain followed: the newest pass tells the epoch, for pruning only.
			self.advance_horizon(epoch);
		}
		Response::Ok
	}

	/// The answer of `peer` to this node's `GetChunk` for chunk `index` of `header` (already
	/// verified against the origin key). Returns the chunk only if it matches the signed header;
	/// a peer that sends a bad chunk, or answers a chunk request with a header or `Ok`, is
	/// banned at once.
	pub fn handle_chunk_response(
		&mut self,
		peer: P,
		header: &SegmentHeader,
		index: u32,
		response: Response,
	) -> Result<Bytes, FetchError> {
		match response {
			Response::Chunk(data) => match verify_chunk(header, index, &data) {
				Ok(()) => Ok(data),
				Err(e) => {
					self.ban(peer, e.to_string());
					Err(FetchError::BadChunk(e))
				}
			},
			Response::Refused { code, reason } => {
				Err(FetchError::NotServed(format!("refused {code:?}: {reason}")))
			}
			other => {
				let what = other.kind();
				self.ban(peer, format!("answered a chunk request with {what}"));
				Err(FetchError::NotServed(what.into()))
			}
		}
	}
}

#[cfg(test)]
mod tests;
