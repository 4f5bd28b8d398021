//! The streamer node as tracker, sans-IO: issues viewer passes to viewers admitted in P2P mode
//! and hands each a bounded list of other peers of the stream's swarm.
//!
//! Which members a joining viewer is told of is decided by [`super::mesh::Mesh`], the same
//! neighbour policy the simulator runs (uniformly random members that are not full, bounded
//! degrees); this module adds passes, peer addresses and the node's own seed.
//!
//! Call [`Tracker::handle_join`] for every `Join` whose proof of key possession verified (the
//! direct protocol's message 16), [`Tracker::renew`] while that session stays joined, and
//! [`Tracker::handle_leave`] when it ends. Joins and renewals decide a pass ([`PassToSign`]);
//! the caller signs it ([`PassToSign::sign`]) after releasing the tracker, so that the
//! signatures of many sessions (all of them renew at an epoch change) are not made one after
//! another under the tracker's lock. Time is the caller's [`Millis`]; the epoch comes
//! from the caller ([`Tracker::set_epoch`]), which follows the chain (or the command line).
//!
//! Rules (see `PROTOCOL.md`, "Tracker"):
//! - A pass covers only what its session could have consumed so far plus one renewal period
//!   ([`super::pass_policy::pass_units`]); it is renewed while the session stays joined.
//! - Entries are bound to the session that proved the viewer key: at most one per viewer key
//!   and stream (the same key joining again replaces its own entry), removed when the session
//!   ends. A peer id listed for one key is never replaced by, or evicted for, another key.
//! - Listed addresses carry the session's own IP ([`super::join::bind_addrs`]).
//! - A full swarm lists no newcomer: a joiner then gets its pass and peers but is not handed
//!   out. Nothing is ever evicted for a newcomer, so Sybil joins cannot push honest members
//!   out; they can only fill free places, bounded per address by [`AddressLimits`].

use super::{
	join::bind_addrs,
	mesh::{Mesh, MeshConfig},
	pass_policy::{
		pass_units, slack_permille, AddressLimitError, AddressLimits, AddressLimitsConfig,
	},
};
use crate::{
	clock::{millis, Millis},
	protocol::{ErrorCode, PeerInfo},
};
use dsp_primitives::{EpochIndex, Hash32, PublicKey, Signed, StreamId, ViewerPass};
use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

/// Settings of a [`Tracker`].
#[derive(Clone, Debug)]
pub struct TrackerConfig {
	/// Chain the passes are for.
	pub genesis_hash: Hash32,
	/// Epoch written into new passes.
	pub epoch: EpochIndex,
	/// A pass covers the time its session has been joined in the epoch plus this period, and
	/// is renewed every half of it. Default 120 s: a session that leaves holds at most two
	/// minutes' worth, and renewals stay rare (one small message a minute).
	pub pass_period: Duration,
	/// Factor on the measured bitrate in a pass (bitrate changes, retransmissions, receipts
	/// lagging). Default 1.5.
	pub pass_slack: f64,
	/// Most P2P sessions joined at once from one address (IPv4, or IPv6 /64). Default 16:
	/// a household or a small NAT fits, a Sybil farm on one address does not.
	pub max_sessions_per_address: u32,
	/// Most new passes (joins) per address and minute; renewals do not count. Default 30:
	/// a whole NAT reconnecting fits, a client cycling sessions to collect passes does not.
	pub max_new_passes_per_address: u32,
	/// Most peers returned per `Joined`. Default 16 (libtorrent and p2p-media-loader use similar
	/// numbers: enough to find seeders, few enough to keep the answer small).
	pub max_peers_returned: usize,
	/// A member already handed out to this many others (or told of them) is not handed out
	/// again until some of them leave ([`MeshConfig::max_neighbours`]). Default 40.
	pub max_neighbours: usize,
	/// Most members listed per stream; beyond it joiners are not listed (none is evicted for
	/// them). Default 1024, about 300 bytes each.
	pub max_peers_per_stream: usize,
	/// Most streams with a swarm. Default 256 (the server's `max_streams_tracked`).
	pub max_streams: usize,
}

/// Default [`TrackerConfig::pass_period`].
pub const DEFAULT_PASS_PERIOD: Duration = Duration::from_secs(120);
/// Default [`TrackerConfig::pass_slack`].
pub const DEFAULT_PASS_SLACK: f64 = 1.5;
/// Default [`TrackerConfig::max_sessions_per_address`].
pub const DEFAULT_MAX_SESSIONS_PER_ADDRESS: u32 = 16;
/// Default [`TrackerConfig::max_new_passes_per_address`].
pub const DEFAULT_MAX_NEW_PASSES_PER_ADDRESS: u32 = 30;

impl TrackerConfig {
	/// Defaults for `genesis_hash` and `epoch`.
	pub fn new(genesis_hash: Hash32, epoch: EpochIndex) -> Self {
		Self {
			genesis_hash,
			epoch,
			pass_period: DEFAULT_PASS_PERIOD,
			pass_slack: DEFAULT_PASS_SLACK,
			max_sessions_per_address: DEFAULT_MAX_SESSIONS_PER_ADDRESS,
			max_new_passes_per_address: DEFAULT_MAX_NEW_PASSES_PER_ADDRESS,
			max_peers_returned: 16,
			max_neighbours: MeshConfig::default().max_neighbours,
			max_peers_per_stream: 1024,
			max_streams: 256,
		}
	}
}

/// What a server needs to admit viewers in P2P mode: the pass-signing key and the tracker's
/// settings.
#[derive(Clone)]
pub struct PassSigning {
	/// Key that signs passes (one of the origin's authorised pass signers).
	pub signer: sp_core::sr25519::Pair,
	/// Tracker settings.
	pub tracker: TrackerConfig,
}

impl std::fmt::Debug for PassSigning {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.debug_struct("PassSigning")
			.field("signer", &sp_core::Pair::public(&self.signer))
			.field("tracker", &self.tracker)
			.finish()
	}
}

/// A join was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrackerError {
	/// `max_streams` swarms exist already.
	#[error("too many streams with a swarm")]
	TooManyStreams,
	/// The session's address is at one of its limits.
	#[error("{0}")]
	Address(#[from] AddressLimitError),
	/// The session joined already.
	#[error("session joined already")]
	AlreadyJoined,
}

impl TrackerError {
	/// The error code the `Join` is answered with.
	pub fn code(&self) -> ErrorCode {
		match self {
			TrackerError::TooManyStreams => ErrorCode::UnknownStream,
			TrackerError::Address(_) => ErrorCode::Full,
			TrackerError::AlreadyJoined => ErrorCode::UnexpectedMessage,
		}
	}
}

/// A `Join` as the tracker takes it, its proof already verified.
#[derive(Clone, Debug)]
pub struct JoinRequest {
	/// The server's id of the session (unique while the server runs).
	pub session: u64,
	/// The IP the session comes from.
	pub remote: IpAddr,
	/// Stream.
	pub stream: StreamId,
	/// The viewer key the session proved it holds.
	pub viewer: PublicKey,
	/// The peer entry as announced.
	pub peer: PeerInfo,
	/// The stream's bitrate now, bytes per second ([`crate::server::LiveWindow::bitrate`]).
	pub bitrate: u64,
}

/// A pass the tracker issued, to be signed with [`PassToSign::sign`] once the tracker is
/// released: each sr25519 signature made under a shared tracker's lock would hold up every
/// other session's join and renewal behind it. What the pass counts toward (the session, the
/// address limits, the counters) is accounted when the tracker issues it.
#[derive(Clone)]
pub struct PassToSign {
	/// The pass.
	pub payload: ViewerPass,
	signer: Arc<sp_core::sr25519::Pair>,
}

impl PassToSign {
	/// The pass, signed with the tracker's key.
	pub fn sign(self) -> Signed<ViewerPass> {
		Signed::sign(self.payload, &self.signer)
	}
}

impl std::fmt::Debug for PassToSign {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		// The signing key stays out of logs (the payload names its public key).
		f.debug_struct("PassToSign").field("payload", &self.payload).finish_non_exhaustive()
	}
}

impl PartialEq for PassToSign {
	fn eq(&self, other: &Self) -> bool {
		self.payload == other.payload
	}
}

impl Eq for PassToSign {}

/// What a joined session gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
	/// Its pass (the payload names the signer as `issuer`).
	pub pass: PassToSign,
	/// Peers to connect to, the node's own seed first.
	pub peers: Vec<PeerInfo>,
	/// Whether it is handed out to others (see the module docs for when it is not).
	pub listed: bool,
}

/// Counters of a [`Tracker`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
	/// New passes signed (one per successful join).
	pub passes_issued: u64,
	/// Renewed passes signed.
	pub passes_renewed: u64,
	/// Joins refused for the address's limits.
	pub joins_refused: u64,
	/// Joins answered but not listed (peer id held by another key, no usable address, swarm
	/// full).
	pub joins_unlisted: u64,
}

/// Passes and swarm membership. See the module docs.
pub struct Tracker {
	config: TrackerConfig,
	signer: Arc<sp_core::sr25519::Pair>,
	/// The node's own swarm peer, listed first in every `Joined`.
	bootstrap: Option<PeerInfo>,
	/// Per stream: the swarm.
	swarms: HashMap<StreamId, Swarm>,
	/// Joined sessions, by session id.
	sessions: HashMap<u64, Session>,
	limits: AddressLimits,
	/// When the current epoch started (0 until the first change).
	epoch_started: Millis,
	stats: TrackerStats,
}

/// A joined session.
struct Session {
	stream: StreamId,
	viewer: PublicKey,
	remote: IpAddr,
	joined_at: Millis,
}

/// One stream's swarm: the neighbour policy over member (session) ids, and what each stands
/// for. Memory: per member its `PeerInfo` and the ids it was given or given to (bounded by
/// `max_neighbours` each).
struct Swarm {
	mesh: Mesh<u64>,
	members: HashMap<u64, Member>,
	by_peer: HashMap<Vec<u8>, u64>,
	by_viewer: HashMap<[u8; 32], u64>,
}

struct Member {
	info: PeerInfo,
	viewer: [u8; 32],
	/// Members this one was told of, and members told of this one.
	edges: Vec<u64>,
}

impl Swarm {
	fn new(config: &TrackerConfig, stream: StreamId) -> Self {
		let mesh = MeshConfig {
			neighbours: config.max_peers_returned,
			max_neighbours: config.max_neighbours,
		};
		Self {
			// Seeded by the stream id: reproducible, and different per stream.
			mesh: Mesh::new(mesh, stream ^ 0x7472_6163_6b65_7273),
			members: HashMap::new(),
			by_peer: HashMap::new(),
			by_viewer: HashMap::new(),
		}
	}

	/// `session` joins with `viewer` as `info`: the members it is told of, and whether it is
	/// listed itself (see the module docs).
	fn join(
		&mut self,
		session: u64,
		viewer: &PublicKey,
		info: PeerInfo,
		max_members: usize,
	) -> (Vec<PeerInfo>, bool) {
		// Only the holder of the key could prove it: its new session replaces its old entry.
		if let Some(old) = self.by_viewer.get(&viewer.0).copied() {
			self.leave(old);
		}
		let listed = !self.by_peer.contains_key(&info.peer_id)
			&& !info.addrs.is_empty()
			&& self.members.len() < max_members;
		let chosen = self.mesh.join(session);
		let peers = chosen.iter().filter_map(|c| self.members.get(c)).map(|m| m.info.clone());
		let peers = peers.collect();
		if !listed {
			// Told of others, but never handed out: its edges are not kept.
			self.mesh.leave(session);
			for c in chosen {
				self.mesh.edge_closed(session, c);
			}
			return (peers, false);
		}
		for c in &chosen {
			if let Some(m) = self.members.get_mut(c) {
				m.edges.push(session);
			}
		}
		self.by_peer.insert(info.peer_id.clone(), session);
		self.by_viewer.insert(viewer.0, session);
		self.members.insert(session, Member { info, viewer: viewer.0, edges: chosen });
		(peers, true)
	}

	fn leave(&mut self, id: u64) {
		let Some(m) = self.members.remove(&id) else { return };
		self.mesh.leave(id);
		for e in m.edges {
			self.mesh.edge_closed(id, e);
			if let Some(other) = self.members.get_mut(&e) {
				other.edges.retain(|&x| x != id);
			}
		}
		self.by_peer.remove(&m.info.peer_id);
		self.by_viewer.remove(&m.viewer);
	}
}

impl std::fmt::Debug for Tracker {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		// The signing key stays out of logs.
		f.debug_struct("Tracker")
			.field("config", &self.config)
			.field("swarms", &self.swarms.len())
			.field("sessions", &self.sessions.len())
			.finish_non_exhaustive()
	}
}

impl Tracker {
	/// A tracker signing passes with `signer` (a key the origin authorised on chain).
	pub fn new(config: TrackerConfig, signer: sp_core::sr25519::Pair) -> Self {
		let limits = AddressLimits::new(AddressLimitsConfig {
			max_sessions: config.max_sessions_per_address,
			max_new_passes: config.max_new_passes_per_address,
		});
		Self {
			config,
			signer: Arc::new(signer),
			bootstrap: None,
			swarms: HashMap::new(),
			sessions: HashMap::new(),
			limits,
			epoch_started: 0,
			stats: TrackerStats::default(),
		}
	}

	/// The pass signer's public key.
	pub fn signer(&self) -> PublicKey {
		sp_core::Pair::public(&*self.signer)
	}

	/// Settings.
	pub fn config(&self) -> &TrackerConfig {
		&self.config
	}

	/// The node's own swarm peer (it seeds from its live windows): listed first in every
	/// `Joined`, within `max_peers_returned`.
	pub fn set_bootstrap(&mut self, peer: PeerInfo) {
		self.bootstrap = Some(peer);
	}

	/// A new epoch from `now` on: passes issued from now on name it, and count the time
	/// joined from `now`.
	pub fn set_epoch(&mut self, now: Millis, epoch: EpochIndex) {
		if epoch != self.config.epoch {
			self.config.epoch = epoch;
			self.epoch_started = now;
		}
	}

	/// The epoch passes are issued for.
	pub fn epoch(&self) -> EpochIndex {
		self.config.epoch
	}

	/// A session whose `Join` proof verified joins (`req.peer` already size-checked): its pass
	/// (covering one `pass_period`), and up to `max_peers_returned` other members chosen by the
	/// mesh policy, after the node's own seed. Refused when the stream or address limits are
	/// reached.
	pub fn handle_join(&mut self, now: Millis, req: JoinRequest) -> Result<Joined, TrackerError> {
		if self.sessions.contains_key(&req.session) {
			return Err(TrackerError::AlreadyJoined);
		}
		if !self.swarms.contains_key(&req.stream) && self.swarms.len() >= self.config.max_streams {
			return Err(TrackerError::TooManyStreams);
		}
		if let Err(e) = self.limits.check(now, req.remote) {
			self.stats.joins_refused += 1;
			return Err(e.into());
		}
		let info = bind_addrs(&req.peer, req.remote);
		let config = &self.config;
		let swarm = self.swarms.entry(req.stream).or_insert_with(|| Swarm::new(config, req.stream));
		let (chosen, listed) =
			swarm.join(req.session, &req.viewer, info, config.max_peers_per_stream);
		if !listed {
			self.stats.joins_unlisted += 1;
		}
		let peers: Vec<PeerInfo> = self
			.bootstrap
			.iter()
			.cloned()
			.chain(chosen)
			.take(self.config.max_peers_returned)
			.collect();
		self.limits.handle_joined(now, req.remote);
		let session =
			Session { stream: req.stream, viewer: req.viewer, remote: req.remote, joined_at: now };
		let pass = self.pass(now, &session, req.bitrate);
		self.sessions.insert(req.session, session);
		self.stats.passes_issued += 1;
		Ok(Joined { pass, peers, listed })
	}

	/// A renewed pass for joined `session` at `now`, with the stream's bitrate now: the current
	/// epoch, and units for the time joined in it plus one period. `None` if it is not joined.
	pub fn renew(&mut self, now: Millis, session: u64, bitrate: u64) -> Option<PassToSign> {
		let s = self.sessions.get(&session)?;
		let pass = self.pass(now, s, bitrate);
		self.stats.passes_renewed += 1;
		Some(pass)
	}

	fn pass(&self, now: Millis, s: &Session, bitrate: u64) -> PassToSign {
		let admitted = now.saturating_sub(s.joined_at.max(self.epoch_started));
		let c = &self.config;
		let units =
			pass_units(bitrate, admitted, millis(c.pass_period), slack_permille(c.pass_slack));
		let pass = ViewerPass {
			genesis_hash: c.genesis_hash,
			stream: s.stream,
			epoch: c.epoch,
			viewer: s.viewer,
			max_units: units,
			issuer: self.signer(),
		};
		PassToSign { payload: pass, signer: self.signer.clone() }
	}

	/// Counters.
	pub fn stats(&self) -> TrackerStats {
		self.stats
	}

	/// Viewer passes signed for joins since start (renewals apart, see [`Self::stats`]).
	pub fn passes_issued(&self) -> u64 {
		self.stats.passes_issued
	}

	/// `session` ended: its entry is no longer handed out and its address's count drops.
	pub fn handle_leave(&mut self, now: Millis, session: u64) {
		let Some(s) = self.sessions.remove(&session) else { return };
		self.limits.handle_left(now, s.remote);
		if let Some(swarm) = self.swarms.get_mut(&s.stream) {
			swarm.leave(session);
			if swarm.members.is_empty() {
				self.swarms.remove(&s.stream);
			}
		}
	}

	/// Members listed in `stream`'s swarm.
	pub fn members(&self, stream: StreamId) -> usize {
		self.swarms.get(&stream).map_or(0, |s| s.members.len())
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::p2p::receipts::{verify_pass, PassSigners};
	use dsp_primitives::UNIT_BYTES;
	use sp_core::Pair;

	/// The IP every test peer's address names and its session comes from (unless said).
	const HOME: [u8; 4] = [10, 0, 0, 1];

	fn peer(n: u8) -> PeerInfo {
		let addr: libp2p::Multiaddr =
			format!("/ip4/10.0.0.1/tcp/{}", 1000 + n as u16).parse().unwrap();
		PeerInfo { peer_id: vec![n; 38], addrs: vec![addr.to_vec()] }
	}

	fn key(n: u8) -> PublicKey {
		PublicKey::from_raw([n; 32])
	}

	fn tracker(config: TrackerConfig) -> Tracker {
		Tracker::new(config, sp_core::sr25519::Pair::from_string("//Node", None).unwrap())
	}

	/// Session `n` joins stream 1 with viewer key `n` as `peer(n)` from `HOME`.
	fn join(t: &mut Tracker, now: Millis, n: u8) -> Result<Joined, TrackerError> {
		join_as(t, now, n as u64, key(n), peer(n), HOME)
	}

	fn join_as(
		t: &mut Tracker,
		now: Millis,
		session: u64,
		viewer: PublicKey,
		peer: PeerInfo,
		from: [u8; 4],
	) -> Result<Joined, TrackerError> {
		let req = JoinRequest { session, remote: from.into(), stream: 1, viewer, peer, bitrate: 0 };
		t.handle_join(now, req)
	}

	/// A tracker whose limits stay out of the way.
	fn roomy() -> TrackerConfig {
		let mut c = TrackerConfig::new([5; 32], 9);
		c.max_sessions_per_address = 1000;
		c.max_new_passes_per_address = 1000;
		c
	}

	#[test]
	fn passes_verify_like_the_pallet_and_peer_lists_are_bounded_and_exclude_the_joiner() {
		let mut c = roomy();
		c.max_peers_returned = 2;
		c.max_peers_per_stream = 3;
		let mut t = tracker(c);
		let viewer = sp_core::sr25519::Pair::from_string("//V", None).unwrap().public();
		let j = join_as(&mut t, 0, 1, viewer, peer(1), HOME).unwrap();
		assert!(j.peers.is_empty() && j.listed);
		let pass = j.pass.sign();
		assert_eq!((pass.payload.stream, pass.payload.epoch, pass.payload.viewer), (1, 9, viewer));
		let signers = PassSigners { default: vec![t.signer()], ..Default::default() };
		assert_eq!(verify_pass(&pass, &[5; 32], &signers), Ok(()));
		assert!(pass.verify(&t.signer()));

		for n in 2..=5 {
			let j = join(&mut t, 0, n).unwrap();
			assert!(j.peers.len() <= 2 && !j.peers.contains(&peer(n)));
			assert_eq!(j.peers.len(), (n as usize - 1).min(2));
			// The swarm is full after three: later joiners are not listed, nobody is evicted.
			assert_eq!(j.listed, n <= 3);
			assert!(j.peers.iter().all(|p| p.peer_id[0] < 4), "{:?}", j.peers);
		}
		assert_eq!(t.members(1), 3);
		t.handle_leave(0, 3);
		assert_eq!(t.members(1), 2);
		t.set_epoch(0, 10);
		assert_eq!(join(&mut t, 0, 6).unwrap().pass.payload.epoch, 10);
		// The node's own peer comes first, within the bound.
		t.set_bootstrap(peer(0));
		let j = join(&mut t, 0, 7).unwrap();
		assert_eq!(j.peers.len(), 2);
		assert_eq!(j.peers[0], peer(0));
		assert!(j.peers[1] != peer(7));
		assert_eq!(t.passes_issued(), 7, "one pass per successful join");
		assert_eq!(join(&mut t, 0, 7), Err(TrackerError::AlreadyJoined));
	}

	#[test]
	fn members_are_handed_out_to_at_most_max_neighbours_until_others_leave() {
		let mut c = roomy();
		c.max_peers_returned = 3;
		c.max_neighbours = 3;
		let mut t = tracker(c);
		let mut told = HashMap::<u8, usize>::new();
		for n in 1..=20u8 {
			for p in join(&mut t, 0, n).unwrap().peers {
				*told.entry(p.peer_id[0]).or_default() += 1;
			}
		}
		// Every member's edges (told of others + told to others) stay within the bound.
		assert!(told.values().all(|&k| k <= 3), "{told:?}");
		// Leaving frees the slots of the members it was linked with.
		for n in 1..=20u8 {
			t.handle_leave(0, n as u64);
		}
		assert_eq!(t.members(1), 0);
		assert!(join(&mut t, 0, 30).unwrap().peers.is_empty());
		assert_eq!(join(&mut t, 0, 31).unwrap().peers, vec![peer(30)]);
	}

	#[test]
	fn streams_are_bounded() {
		let mut c = roomy();
		c.max_streams = 1;
		let mut t = tracker(c);
		join(&mut t, 0, 1).unwrap();
		let req = |session| JoinRequest {
			session,
			remote: HOME.into(),
			stream: 2,
			viewer: key(2),
			peer: peer(2),
			bitrate: 0,
		};
		assert_eq!(t.handle_join(0, req(2)), Err(TrackerError::TooManyStreams));
		t.handle_leave(0, 1);
		t.handle_join(0, req(3)).unwrap();
	}

	#[test]
	fn a_pass_covers_the_time_joined_in_the_epoch_plus_one_period_and_renews_only_while_joined() {
		let mut t = tracker(roomy());
		let bitrate = 125_000; // 1 Mbit/s
		let req = JoinRequest {
			session: 1,
			remote: HOME.into(),
			stream: 1,
			viewer: key(1),
			peer: peer(1),
			bitrate,
		};
		let first = t.handle_join(1_000, req).unwrap().pass.payload.max_units;
		// ceil(125 000 B/s * 120 s * 1.5 / 1024).
		let period_worth = (bitrate * 120 * 3 / 2).div_ceil(UNIT_BYTES);
		assert_eq!(first, period_worth);
		// A minute later: one more minute's worth.
		let renewed = t.renew(61_000, 1, bitrate).unwrap().payload;
		assert_eq!(renewed.max_units, (bitrate * 180 * 3 / 2).div_ceil(UNIT_BYTES));
		// A new epoch counts from its start.
		t.set_epoch(100_000, 10);
		let next = t.renew(100_000, 1, bitrate).unwrap().payload;
		assert_eq!((next.epoch, next.max_units), (10, period_worth));
		assert_eq!(t.stats().passes_renewed, 2);
		t.handle_leave(120_000, 1);
		assert_eq!(t.renew(121_000, 1, bitrate), None, "a session that left gets no more");
		assert_eq!(t.stats().passes_issued, 1);
	}

	/// Review defect: passes were signed under the tracker's lock, so at an epoch change every
	/// session's renewal signature was made there in turn. Now the tracker issues the pass
	/// (accounted: the session, the address limits, the counters) and it is signed after the
	/// tracker is released; the signed passes are the ones the tracker decided.
	#[test]
	fn issued_passes_are_signed_after_the_tracker_is_released() {
		let tracker = std::sync::Mutex::new(tracker(roomy()));
		let signer = tracker.lock().unwrap().signer();
		let signers = PassSigners { default: vec![signer], ..Default::default() };
		let (bitrate, viewer) = (125_000, key(1));
		let req = JoinRequest {
			session: 1,
			remote: HOME.into(),
			stream: 1,
			viewer,
			peer: peer(1),
			bitrate,
		};
		let issued = tracker.lock().unwrap().handle_join(1_000, req).unwrap().pass;
		let joined = issued.clone().sign();
		assert_eq!(joined.payload, issued.payload);
		assert_eq!(verify_pass(&joined, &[5; 32], &signers), Ok(()));
		// Every session renews at an epoch change: each pass decided under the lock, signed
		// outside it, for the new epoch and what was joined in it.
		tracker.lock().unwrap().set_epoch(100_000, 10);
		let decided = tracker.lock().unwrap().renew(100_000, 1, bitrate);
		let renewed = decided.map(PassToSign::sign).unwrap();
		assert_eq!(verify_pass(&renewed, &[5; 32], &signers), Ok(()));
		let period_worth = (bitrate * 120 * 3 / 2).div_ceil(UNIT_BYTES);
		let p = &renewed.payload;
		assert_eq!((p.epoch, p.viewer, p.stream, p.max_units), (10, viewer, 1, period_worth));
		let t = tracker.lock().unwrap();
		assert_eq!((t.stats().passes_issued, t.stats().passes_renewed), (1, 1));
	}

	#[test]
	fn a_peer_id_held_by_another_key_is_never_replaced_or_evicted() {
		let mut t = tracker(roomy());
		assert!(join(&mut t, 0, 1).unwrap().listed);
		// The attacker reuses the victim's peer id with its own key: answered, not listed.
		let j = join_as(&mut t, 0, 2, key(66), peer(1), [6, 6, 6, 6]).unwrap();
		assert!(!j.listed);
		let third = join(&mut t, 0, 3).unwrap();
		assert_eq!(third.peers, vec![peer(1)], "the victim's entry as it registered it");
		// The attacker leaving does not remove the victim.
		t.handle_leave(0, 2);
		assert_eq!(t.members(1), 2);
		assert_eq!(join(&mut t, 0, 4).unwrap().peers.len(), 2);
		// The victim's own key may replace its entry (a reconnect); its old session's end then
		// leaves the new entry alone.
		assert!(join_as(&mut t, 0, 5, key(1), peer(1), HOME).unwrap().listed);
		t.handle_leave(0, 1);
		assert_eq!(t.members(1), 3, "sessions 3, 4 and the victim's new one");
	}

	#[test]
	fn listed_addresses_carry_the_sessions_own_ip() {
		let mut t = tracker(roomy());
		// An attacker at 6.6.6.6 announces the victim's address.
		let j = join_as(&mut t, 0, 1, key(1), peer(1), [6, 6, 6, 6]).unwrap();
		assert!(j.listed);
		let seen = join(&mut t, 0, 2).unwrap().peers;
		let want: libp2p::Multiaddr = "/ip4/6.6.6.6/tcp/1001".parse().unwrap();
		assert_eq!(seen[0].addrs, vec![want.to_vec()]);
		// No IP address at all: answered, not listed.
		let dns: libp2p::Multiaddr = "/dns4/example.org/tcp/1".parse().unwrap();
		let p = PeerInfo { peer_id: vec![3; 38], addrs: vec![dns.to_vec()] };
		assert!(!join_as(&mut t, 0, 3, key(3), p, HOME).unwrap().listed);
	}

	#[test]
	fn sybils_fill_free_places_only_and_each_address_is_bounded() {
		let mut c = TrackerConfig::new([0; 32], 0);
		c.max_peers_per_stream = 8;
		let mut t = tracker(c);
		for n in 1..=4 {
			assert!(
				join_as(&mut t, 0, n, key(n as u8), peer(n as u8), [1, 1, 1, n as u8])
					.unwrap()
					.listed
			);
		}
		// One address: 16 sessions at most, then refused as full.
		let mut refused = 0;
		for n in 100..140u8 {
			match join_as(&mut t, 0, n as u64, key(n), peer(n), [6, 6, 6, 6]) {
				Ok(_) => {}
				Err(e) => {
					assert_eq!(e, TrackerError::Address(AddressLimitError::TooManySessions(16)));
					assert_eq!(e.code(), ErrorCode::Full);
					refused += 1;
				}
			}
		}
		assert_eq!(refused, 40 - 16);
		// The honest four are all still listed; the Sybils took the four free places only.
		assert_eq!(t.members(1), 8);
		assert!((1..=4).all(|n| t.swarms[&1].members.contains_key(&n)));
		assert_eq!(t.stats().joins_refused, 24);
	}

	#[test]
	fn forty_join_and_leave_cycles_from_one_address_get_thirty_passes_a_minute() {
		let mut t = tracker(TrackerConfig::new([0; 32], 0));
		let bitrate = 125_000;
		let mut passes = Vec::new();
		for n in 0..40u8 {
			let req = JoinRequest {
				session: n as u64,
				remote: HOME.into(),
				stream: 1,
				viewer: key(n),
				peer: peer(n),
				bitrate,
			};
			if let Ok(j) = t.handle_join(n as Millis, req) {
				passes.push(j.pass.payload.max_units);
			}
			t.handle_leave(n as Millis, n as u64);
		}
		assert_eq!(passes.len(), 30);
		// Each is worth one period at the stream's bitrate, times the slack, no more.
		let bound = (bitrate * 120 * 3 / 2).div_ceil(UNIT_BYTES);
		assert!(passes.iter().all(|&u| u <= bound), "{passes:?}");
		assert_eq!(t.stats().joins_refused, 10);
	}
}
