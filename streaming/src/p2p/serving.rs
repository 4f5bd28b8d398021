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
//!
//! Time only comes in through `now` arguments, on the `u64` millisecond clock of the rest of
//! `p2p` ([`Millis`]); nothing here reads a clock. Peers are any [`PeerIdentity`] (libp2p's
//! `PeerId` in the swarm), as the scheduler's are generic.

use super::{
	receipts::{ReceiptError, SeederLedger},
	wire::{verify_peer_binding, HaveSegment, PeerIdentity, RefusalCode, Request, Response},
	Millis,
};
use crate::segment::{verify_chunk, SegmentError};
use bytes::Bytes;
use dsp_primitives::{EpochIndex, PublicKey, SegmentHeader, Signed, StreamId};
use std::{
	collections::{HashMap, HashSet, VecDeque},
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
	/// not reset it; the oldest is forgotten beyond it. Default 4096, 40 bytes each.
	pub max_remembered_strikes: usize,
}

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

#[derive(Debug)]
struct PeerState {
	/// Stream → (viewer key, epoch) of the pass this peer showed.
	passes: HashMap<StreamId, (PublicKey, EpochIndex)>,
	window_start: Millis,
	requests: u32,
	busy: u32,
	bad_input: u32,
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
}

/// The serving state machine of one P2P node. See the module docs for the call order.
#[derive(Debug)]
pub struct Serving<P> {
	config: ServingConfig,
	ledger: SeederLedger,
	/// Whether the ledger changed since [`Serving::take_ledger_changed`] was last called.
	ledger_changed: bool,
	/// The current credit epoch, once known.
	epoch: Option<EpochIndex>,
	peers: HashMap<P, PeerState>,
	banned: HashSet<P>,
	ban_order: VecDeque<P>,
	/// Bad-input counts of disconnected peers, oldest first in `strike_order`.
	strikes: HashMap<P, u32>,
	strike_order: VecDeque<P>,
	events: VecDeque<ServingEvent<P>>,
	stats: ServingStats,
}

impl<P: PeerIdentity + Copy + Eq + Hash + Debug> Serving<P> {
	/// A serving core with `ledger` for passes and receipts.
	pub fn new(config: ServingConfig, ledger: SeederLedger) -> Self {
		Self {
			config,
			ledger,
			ledger_changed: false,
			epoch: None,
			peers: HashMap::new(),
			banned: HashSet::new(),
			ban_order: VecDeque::new(),
			strikes: HashMap::new(),
			strike_order: VecDeque::new(),
			events: VecDeque::new(),
			stats: ServingStats::default(),
		}
	}

	/// The receipt ledger (for saving and claims).
	pub fn ledger(&self) -> &SeederLedger {
		&self.ledger
	}

	/// Forgets ledger entries of epochs before `epoch` (see [`SeederLedger::prune_before`]).
	pub fn prune_ledger_before(&mut self, epoch: EpochIndex) -> usize {
		let n = self.ledger.prune_before(epoch);
		self.ledger_changed |= n > 0;
		n
	}

	/// Whether the ledger changed (a pass, receipt or served chunk) since the last call: the
	/// shell saves it then.
	pub fn take_ledger_changed(&mut self) -> bool {
		std::mem::take(&mut self.ledger_changed)
	}

	/// The ledger must be saved again (the last save failed).
	pub fn mark_ledger_changed(&mut self) {
		self.ledger_changed = true;
	}

	/// Counters.
	pub fn stats(&self) -> ServingStats {
		self.stats
	}

	/// The current credit epoch (from the chain). Passes for a future epoch, or older than
	/// `pass_epoch_lag` epochs, are refused from now on; passes already shown stay valid for
	/// their connection.
	pub fn handle_epoch(&mut self, epoch: EpochIndex) {
		self.epoch = Some(epoch);
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

	/// `peer`'s last connection closed: forget its passes and rate counters (not its ban, and
	/// not its bad-input count, which reconnecting must not reset).
	pub fn handle_disconnected(&mut self, peer: &P) {
		let Some(state) = self.peers.remove(peer) else { return };
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

	/// Starts state for `peer` (restoring its remembered bad-input count) unless `max_peers`
	/// are tracked already; whether `peer` now has state.
	fn track(&mut self, now: Millis, peer: P) -> bool {
		if self.peers.contains_key(&peer) {
			return true;
		}
		if self.peers.len() >= self.config.max_peers {
			return false;
		}
		let bad_input = self.strikes.remove(&peer).unwrap_or(0);
		let state = PeerState {
			passes: HashMap::new(),
			window_start: now,
			requests: 0,
			busy: 0,
			bad_input,
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
		let pass = state.passes.get(&stream).copied();
		let passes_full = state.passes.len() >= cfg.max_passes_per_peer;
		match (request, pass) {
			(Request::Pass { pass: p, binding }, _) => {
				let (viewer, epoch) = (p.payload.viewer, p.payload.epoch);
				if pass.is_none() && passes_full {
					return self.refuse(RefusalCode::Busy, "passes for too many streams");
				}
				if !verify_peer_binding(&p.payload, &peer, &binding) {
					return self.refuse(RefusalCode::BadPass, "pass not bound to this peer");
				}
				if let Some(now_epoch) = self.epoch {
					let lag = self.config.pass_epoch_lag;
					if epoch > now_epoch || epoch.saturating_add(lag) < now_epoch {
						let why = format!("pass for epoch {epoch}, current epoch {now_epoch}");
						return self.refuse(RefusalCode::BadPass, why);
					}
				}
				match self.ledger.handle_pass(p) {
					Ok(()) => {
						self.ledger_changed = true;
						if let Some(state) = self.peers.get_mut(&peer) {
							state.passes.insert(stream, (viewer, epoch));
						}
						Response::Ok
					}
					Err(e) => self.refuse(RefusalCode::BadPass, e.to_string()),
				}
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
					Some(data) => {
						self.ledger.handle_served(stream, &viewer, epoch, data.len() as u64);
						self.ledger_changed = true;
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
				match self.ledger.handle_receipt(r) {
					Ok(_) => {
						self.ledger_changed = true;
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
mod tests {
	use super::*;
	use crate::{
		p2p::receipts::{LedgerConfig, PassSigners},
		segment::Segment,
	};
	use dsp_primitives::{Receipt, ViewerPass};
	use libp2p::PeerId;
	use sp_core::Pair;

	fn pair(s: &str) -> sp_core::sr25519::Pair {
		sp_core::sr25519::Pair::from_string(s, None).unwrap()
	}

	struct Store(Segment);
	impl ChunkSource for Store {
		fn header(&self, stream: StreamId, sequence: u64) -> Option<Signed<SegmentHeader>> {
			(stream == self.0.stream() && sequence == self.0.sequence())
				.then(|| self.0.header.clone())
		}
		fn chunk(&self, stream: StreamId, sequence: u64, index: u32) -> Option<Bytes> {
			self.header(stream, sequence)?;
			self.0.chunks.get(index as usize).cloned()
		}
	}

	fn store() -> Store {
		let data = Bytes::from((0..10_000u32).map(|i| i as u8).collect::<Vec<_>>());
		Store(Segment::build(&pair("//Origin"), [0; 32], 1, 0, 0, 2000, data, 4096))
	}

	fn serving(config: ServingConfig) -> Serving<PeerId> {
		let signers =
			PassSigners { default: vec![pair("//Issuer").public()], ..Default::default() };
		let mut lc = LedgerConfig::new([0; 32], pair("//Seeder").public().0, signers);
		lc.slack_units = 7;
		Serving::new(config, SeederLedger::new(lc))
	}

	fn pass(viewer: &str) -> Signed<ViewerPass> {
		let p = ViewerPass {
			genesis_hash: [0; 32],
			stream: 1,
			epoch: 0,
			viewer: pair(viewer).public(),
			max_units: 1000,
			issuer: pair("//Issuer").public(),
		};
		Signed::sign(p, &pair("//Issuer"))
	}

	/// A distinct peer id per `n` (no randomness in tests).
	fn peer(n: u8) -> PeerId {
		libp2p::identity::Keypair::ed25519_from_bytes([n; 32]).unwrap().public().to_peer_id()
	}

	fn bound(viewer: &str, to: PeerId) -> Request {
		Request::bound_pass(pass(viewer), &pair(viewer), &to)
	}

	fn get(index: u32) -> Request {
		Request::GetChunk { stream: 1, sequence: 0, index }
	}

	fn code(r: &Response) -> Option<RefusalCode> {
		match r {
			Response::Refused { code, .. } => Some(*code),
			_ => None,
		}
	}

	#[test]
	fn nothing_is_served_without_a_valid_pass() {
		let (mut s, st, now, me) = (serving(Default::default()), store(), 0, peer(1));
		assert_eq!(code(&s.handle_request(now, me, get(0), &st)), Some(RefusalCode::NoPass));
		let hdr = Request::GetHeader { stream: 1, sequence: 0 };
		assert_eq!(code(&s.handle_request(now, me, hdr.clone(), &st)), Some(RefusalCode::NoPass));
		let Request::Pass { pass: mut forged, binding } = bound("//Viewer", me) else { panic!() };
		forged.payload.max_units = 1_000_000;
		let forged = Request::Pass { pass: forged, binding };
		assert_eq!(code(&s.handle_request(now, me, forged, &st)), Some(RefusalCode::BadPass));
		// A pass bound to another peer (replayed by whoever was shown it).
		let replayed = bound("//Viewer", peer(2));
		assert_eq!(code(&s.handle_request(now, me, replayed, &st)), Some(RefusalCode::BadPass));
		assert!(!s.has_pass(&me, 1));
		assert_eq!(s.handle_request(now, me, bound("//Viewer", me), &st), Response::Ok);
		assert!(s.has_pass(&me, 1) && !s.has_pass(&me, 2) && !s.has_pass(&peer(2), 1));
		assert!(matches!(s.handle_request(now, me, hdr, &st), Response::Header(_)));
		assert_eq!(s.handle_request(now, me, get(1), &st), Response::Chunk(st.0.chunks[1].clone()));
		assert_eq!(code(&s.handle_request(now, me, get(9), &st)), Some(RefusalCode::NotHeld));
		// Another peer is not covered by this peer's pass.
		assert_eq!(code(&s.handle_request(now, peer(2), get(0), &st)), Some(RefusalCode::NoPass));
	}

	#[test]
	fn passes_outside_the_current_epochs_are_refused_once_the_epoch_is_known() {
		let (mut s, st, now) = (serving(Default::default()), store(), 0);
		// Unknown epoch (no chain followed): any epoch is accepted.
		assert_eq!(s.handle_request(now, peer(1), bound("//Viewer", peer(1)), &st), Response::Ok);
		// The test pass is for epoch 0: fine at epochs 0 and 1 (lag 1), not at 2.
		s.handle_epoch(1);
		assert_eq!(s.handle_request(now, peer(2), bound("//Viewer", peer(2)), &st), Response::Ok);
		s.handle_epoch(2);
		let r = s.handle_request(now, peer(3), bound("//Viewer", peer(3)), &st);
		assert_eq!(code(&r), Some(RefusalCode::BadPass));
		// A pass for a future epoch is refused too.
		let mut future = pass("//Viewer");
		future.payload.epoch = 3;
		let future = Signed::sign(future.payload, &pair("//Issuer"));
		let r = s.handle_request(
			now,
			peer(4),
			Request::bound_pass(future, &pair("//Viewer"), &peer(4)),
			&st,
		);
		assert_eq!(code(&r), Some(RefusalCode::BadPass));
	}

	#[test]
	fn receipts_behind_cut_service_until_a_new_receipt() {
		let (mut s, st, now, me) = (serving(Default::default()), store(), 0, peer(3));
		s.handle_request(now, me, bound("//Viewer", me), &st);
		// Slack 7 units: two 4 KiB chunks (8 units) use it up, the third is refused.
		assert!(matches!(s.handle_request(now, me, get(0), &st), Response::Chunk(_)));
		assert!(matches!(s.handle_request(now, me, get(1), &st), Response::Chunk(_)));
		assert_eq!(
			code(&s.handle_request(now, me, get(2), &st)),
			Some(RefusalCode::ReceiptsBehind)
		);
		let r = Receipt {
			genesis_hash: [0; 32],
			stream: 1,
			epoch: 0,
			seeder: pair("//Seeder").public().0,
			viewer: pair("//Viewer").public(),
			units: 8,
		};
		let signed = Signed::sign(r.clone(), &pair("//Viewer"));
		assert_eq!(s.handle_request(now, me, Request::Receipt(signed), &st), Response::Ok);
		assert!(matches!(s.handle_request(now, me, get(2), &st), Response::Chunk(_)));
		// A receipt going backwards is dishonest: ban.
		let back = Signed::sign(Receipt { units: 2, ..r }, &pair("//Viewer"));
		assert_eq!(
			code(&s.handle_request(now, me, Request::Receipt(back), &st)),
			Some(RefusalCode::Banned)
		);
		assert!(matches!(s.poll_event(), Some(ServingEvent::Ban { .. })));
		assert_eq!(code(&s.handle_request(now, me, get(0), &st)), Some(RefusalCode::Banned));
	}

	#[test]
	fn flooding_is_refused_then_banned_and_the_window_resets() {
		let cfg =
			ServingConfig { max_requests_per_window: 5, flood_ban_after: 3, ..Default::default() };
		let (mut s, st, t0) = (serving(cfg), store(), 0);
		let (flooder, calm) = (peer(4), peer(5));
		for _ in 0..5 {
			s.handle_request(t0, calm, get(0), &st);
		}
		// A new window: the calm peer may go on.
		let t1 = t0 + 1000;
		assert_eq!(code(&s.handle_request(t1, calm, get(0), &st)), Some(RefusalCode::NoPass));

		for _ in 0..5 {
			assert_eq!(
				code(&s.handle_request(t0, flooder, get(0), &st)),
				Some(RefusalCode::NoPass)
			);
		}
		assert_eq!(code(&s.handle_request(t0, flooder, get(0), &st)), Some(RefusalCode::Busy));
		assert_eq!(code(&s.handle_request(t0, flooder, get(0), &st)), Some(RefusalCode::Busy));
		assert_eq!(code(&s.handle_request(t0, flooder, get(0), &st)), Some(RefusalCode::Banned));
		assert_eq!(
			s.poll_event(),
			Some(ServingEvent::Ban {
				peer: flooder,
				reason: "flooding: request rate far above max_requests_per_window".into()
			})
		);
		assert!(s.is_banned(&flooder) && !s.is_banned(&calm));
		assert_eq!(code(&s.handle_request(t1, calm, get(0), &st)), Some(RefusalCode::NoPass));
	}

	#[test]
	fn bad_input_bans_after_the_limit_and_peer_state_is_bounded() {
		let cfg = ServingConfig { max_peers: 2, ..Default::default() };
		let (mut s, st, now) = (serving(cfg), store(), 0);
		let bad = peer(6);
		s.handle_bad_input(now, bad, "oversized");
		// Reconnecting does not reset the count.
		s.handle_disconnected(&bad);
		s.handle_bad_input(now, bad, "malformed");
		assert!(!s.is_banned(&bad));
		s.handle_bad_input(now, bad, "malformed");
		assert!(s.is_banned(&bad));
		s.handle_request(now, peer(7), get(0), &st);
		s.handle_request(now, peer(8), get(0), &st);
		assert_eq!(code(&s.handle_request(now, peer(9), get(0), &st)), Some(RefusalCode::Busy));
	}

	#[test]
	fn the_ban_list_is_bounded_and_lifts_the_oldest_ban() {
		let cfg = ServingConfig { max_banned: 2, ..Default::default() };
		let mut s = serving(cfg);
		for n in 1..=3 {
			s.ban(peer(n), "test");
		}
		let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
		assert_eq!(events.len(), 4);
		assert!(events.contains(&ServingEvent::Unban { peer: peer(1) }), "{events:?}");
		assert!(!s.is_banned(&peer(1)) && s.is_banned(&peer(2)) && s.is_banned(&peer(3)));
	}

	#[test]
	fn a_bad_chunk_bans_its_sender_at_once() {
		let (mut s, st) = (serving(Default::default()), store());
		let (good, evil) = (peer(10), peer(11));
		let h = &st.0.header.payload;
		let ok = s.handle_chunk_response(good, h, 1, Response::Chunk(st.0.chunks[1].clone()));
		assert_eq!(ok, Ok(st.0.chunks[1].clone()));
		let mut corrupt = st.0.chunks[1].to_vec();
		corrupt[0] ^= 1;
		let err = s.handle_chunk_response(evil, h, 1, Response::Chunk(corrupt.into())).unwrap_err();
		assert!(matches!(
			err,
			FetchError::BadChunk(SegmentError::BadChunk { sequence: 0, index: 1 })
		));
		assert!(s.is_banned(&evil) && !s.is_banned(&good));
		// Right bytes for another index, or an index past the end, are bad chunks too.
		let other = peer(12);
		assert!(s
			.handle_chunk_response(other, h, 0, Response::Chunk(st.0.chunks[2].clone()))
			.is_err());
		assert!(s.handle_chunk_response(peer(13), h, 99, Response::Chunk(Bytes::new())).is_err());
		assert!(s.is_banned(&other));
		// A refusal is not a ban.
		let refused = Response::refused(RefusalCode::Busy, "later");
		assert!(s.handle_chunk_response(good, h, 1, refused).is_err());
		assert!(!s.is_banned(&good));
	}
}
