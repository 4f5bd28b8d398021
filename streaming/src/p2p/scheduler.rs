//! [`Scheduler`]: what one P2P viewer fetches next, and from whom. Deadlines come from the
//! player model it owns, [`Playout`] (in [`super::playout`], re-exported here).
//!
//! # Windows
//!
//! Each segment has a *deadline*: the time its playback must start (all of a segment is needed
//! then: the player gets whole segments over HLS). Relative to `now`:
//!
//! ```text
//!  now        now + urgent_window                     now + lookahead
//!   |---- urgent: node ----|----------- peers, earliest deadline first, rarest first ---------|
//! ```
//!
//! - A missing chunk inside the *urgent window* that is not already on its way comes from the
//!   node. A chunk asked from a peer must arrive `node_margin` before its deadline; a request
//!   still open then times out and the chunk goes to the node.
//! - Everything further ahead, up to the *lookahead*, comes from peers only: segments in
//!   deadline order, inside a segment the chunk fewest neighbours hold first (so the swarm spreads
//!   different chunks of a segment from different seeds), each from the neighbour expected to
//!   deliver first given its measured throughput and what is already queued to it. A request that
//!   takes longer than its adaptive timeout (a multiple of the expected time, bounded) is
//!   withdrawn ([`Scheduler::poll_cancel`]), the peer's estimate is halved, and the chunk is
//!   asked elsewhere.
//!
//! # Call order
//!
//! 1. [`Scheduler::new`] with the first sequence to play (the shell picks it, a few segments
//!    behind the live edge).
//! 2. Feed inputs: verified headers ([`Scheduler::handle_header`]), neighbours' announcements
//!    ([`Scheduler::handle_have`], [`Scheduler::handle_have_chunk`]), neighbours coming and going,
//!    verified chunks ([`Scheduler::handle_chunk`]), chunks that failed verification
//!    ([`Scheduler::handle_bad_chunk`]: the peer is banned), refusals
//!    ([`Scheduler::handle_request_failed`]), the real player's position
//!    ([`Scheduler::handle_playhead`], optional), the origin restarting the stream
//!    ([`Scheduler::handle_new_broadcast`]: what was tracked of the old broadcast is forgotten).
//! 3. After any input, send every [`Scheduler::poll_request`] and [`Scheduler::poll_cancel`],
//!    act on every [`Scheduler::poll_event`].
//! 4. Call [`Scheduler::handle_timeout`] at [`Scheduler::poll_timeout`], then step 3 again.
//!
//! Memory: at most `max_tracked_segments` segments (a bitfield and three small arrays per chunk),
//! `max_peers` neighbours with a bitfield per tracked segment each, `max_banned` banned ids.

mod config;

pub use super::playout::{PlayEvent, PlayStats, Playout};
use super::{
	chunkset::{ChunkSet, MAX_CHUNKS},
	Millis, Source,
};
pub use config::SchedulerConfig;
use dsp_primitives::SegmentHeader;
use std::{
	collections::{BTreeMap, BTreeSet, VecDeque},
	fmt::Debug,
	hash::Hash,
};
use thiserror::Error;

/// Bad input to the scheduler. Nothing was stored; the caller decides whether the sender broke
/// the protocol (a peer's chunk that does not fit the header is as bad as a bad hash).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SchedulerError {
	/// No header is known for this segment (not announced yet, or long played).
	#[error("segment {seq} unknown")]
	UnknownSegment {
		/// Segment.
		seq: u64,
	},
	/// The chunk index is past the header's chunk count.
	#[error("chunk {index} of segment {seq} out of range")]
	IndexOutOfRange {
		/// Segment.
		seq: u64,
		/// Index given.
		index: u32,
	},
	/// The chunk length is not the header's.
	#[error("chunk {index} of segment {seq}: {got} bytes, header says {expected}")]
	LengthMismatch {
		/// Segment.
		seq: u64,
		/// Chunk.
		index: u32,
		/// Length given.
		got: u32,
		/// Length in the header.
		expected: u32,
	},
	/// A header with no chunks or more than [`MAX_CHUNKS`].
	#[error("segment {seq}: {count} chunks")]
	BadChunkCount {
		/// Segment.
		seq: u64,
		/// Chunk count given.
		count: usize,
	},
	/// A header further ahead than `max_tracked_segments` allows; ask again later.
	#[error("segment {seq} too far ahead")]
	TooFarAhead {
		/// Segment.
		seq: u64,
	},
	/// An announcement whose chunk count is not the header's.
	#[error("have for segment {seq}: {got} chunks, header says {expected}")]
	HaveMismatch {
		/// Segment.
		seq: u64,
		/// Count announced.
		got: usize,
		/// Count in the header.
		expected: usize,
	},
}

/// Chunk lengths of a segment of `byte_len` bytes cut into `chunk_size` chunks (the last one
/// shorter).
pub fn chunk_lens(byte_len: u32, chunk_size: u32) -> Vec<u32> {
	let chunk_size = chunk_size.max(1);
	let n = byte_len.div_ceil(chunk_size);
	(0..n).map(|i| if i + 1 < n { chunk_size } else { byte_len - i * chunk_size }).collect()
}

/// What to ask for: chunk `index` of segment `seq` from `source`, needed by `deadline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRequest<P> {
	/// Who to ask.
	pub source: Source<P>,
	/// Segment.
	pub seq: u64,
	/// Chunk index.
	pub index: u32,
	/// Chunk length (from the header).
	pub len: u32,
	/// When the segment must play; a serving peer orders its queue by it and drops the
	/// request past it.
	pub deadline: Millis,
}

/// A request to withdraw (it timed out, or the chunk came from elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancel<P> {
	/// Peer that was asked.
	pub peer: P,
	/// Segment.
	pub seq: u64,
	/// Chunk index.
	pub index: u32,
}

/// What a [`Scheduler`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulerEvent<P> {
	/// Every chunk of `seq` is held: the segment can be handed to the player.
	SegmentComplete {
		/// Segment.
		seq: u64,
	},
	/// The player model moved.
	Play(PlayEvent),
	/// `peer` sent a chunk that failed verification and is banned for this stream: close the
	/// connection and never accept it again.
	PeerBanned(P),
}

/// What [`Scheduler::handle_chunk`] did with a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
	/// New: store it and announce it to the neighbours.
	Stored,
	/// Already held: drop it.
	Duplicate,
	/// Its segment was played and forgotten: drop it.
	Stale,
}

/// Counters of one viewer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
	/// Requests sent to the node.
	pub node_requests: u64,
	/// Requests sent to peers.
	pub peer_requests: u64,
	/// New chunk bytes from the node (requested or pushed as a seed).
	pub bytes_from_node: u64,
	/// New chunk bytes from peers.
	pub bytes_from_peers: u64,
	/// Chunks pushed by the node without a request (this viewer was a seed).
	pub seeded_chunks: u64,
	/// Chunks received twice (bytes wasted).
	pub duplicate_bytes: u64,
	/// Peer requests that timed out and were asked elsewhere.
	pub peer_timeouts: u64,
	/// Node requests that timed out and were asked again.
	pub node_timeouts: u64,
	/// Peer requests refused by the peer.
	pub refusals: u64,
	/// Chunks that failed verification.
	pub bad_chunks: u64,
	/// Peers banned.
	pub banned: u64,
	/// Segments complete.
	pub segments_complete: u64,
	/// Announcements ignored (unknown segment, wrong size, banned or unknown peer).
	pub haves_ignored: u64,
}

#[derive(Clone, Copy, Debug)]
struct InFlight<P> {
	source: Source<P>,
	sent: Millis,
	timeout_at: Millis,
}

#[derive(Clone, Debug)]
struct Seg<P> {
	duration_ms: u32,
	lens: Vec<u32>,
	have: ChunkSet,
	/// Neighbours announcing each chunk.
	avail: Vec<u16>,
	inflight: Vec<Option<InFlight<P>>>,
}

#[derive(Clone, Debug)]
struct Peer {
	haves: BTreeMap<u64, ChunkSet>,
	inflight: usize,
	inflight_bytes: u64,
	/// Effective throughput (bytes over request-to-arrival time, so latency and the peer's
	/// queue are in it), bytes/s.
	rate: u64,
	busy_until: Millis,
}

/// The chunk scheduler of one P2P viewer of one stream (see the module docs).
#[derive(Debug)]
pub struct Scheduler<P> {
	config: SchedulerConfig,
	playout: Playout,
	segments: BTreeMap<u64, Seg<P>>,
	peers: BTreeMap<P, Peer>,
	banned: BTreeSet<P>,
	banned_order: VecDeque<P>,
	node_inflight: usize,
	peer_inflight: usize,
	last_duration: u32,
	now: Millis,
	events: VecDeque<SchedulerEvent<P>>,
	cancels: VecDeque<Cancel<P>>,
	stats: SchedulerStats,
}

impl<P: Copy + Eq + Hash + Ord + Debug> Scheduler<P> {
	/// A viewer that joined at `now` and will start playback with segment `start_seq`.
	pub fn new(config: SchedulerConfig, now: Millis, start_seq: u64) -> Self {
		let playout = Playout::new(now, start_seq, config.startup_ms);
		Self {
			config,
			playout,
			segments: BTreeMap::new(),
			peers: BTreeMap::new(),
			banned: BTreeSet::new(),
			banned_order: VecDeque::new(),
			node_inflight: 0,
			peer_inflight: 0,
			last_duration: 2000,
			now,
			events: VecDeque::new(),
			cancels: VecDeque::new(),
			stats: SchedulerStats::default(),
		}
	}

	/// Counters.
	pub fn stats(&self) -> SchedulerStats {
		self.stats
	}

	/// Playback counters, an ongoing stall counted up to `now`.
	pub fn play_stats(&self, now: Millis) -> PlayStats {
		self.playout.stats(now.max(self.now))
	}

	/// The chunks held of `seq`, if it is tracked (what to announce, what can be served).
	pub fn have(&self, seq: u64) -> Option<&ChunkSet> {
		self.segments.get(&seq).map(|s| &s.have)
	}

	/// Whether chunk `index` of `seq` is held (a peer asks for it).
	pub fn holds(&self, seq: u64, index: u32) -> bool {
		self.segments.get(&seq).is_some_and(|s| s.have.contains(index as usize))
	}

	/// Tracked segments with what is held of each, oldest first (the announcement for a new
	/// neighbour).
	pub fn haves(&self) -> impl Iterator<Item = (u64, &ChunkSet)> {
		self.segments.iter().map(|(&seq, s)| (seq, &s.have))
	}

	/// Whether `peer` is banned.
	pub fn is_banned(&self, peer: P) -> bool {
		self.banned.contains(&peer)
	}

	/// Neighbours tracked.
	pub fn peer_count(&self) -> usize {
		self.peers.len()
	}

	/// The first segment the player still needs.
	pub fn next_needed(&self) -> u64 {
		self.playout.next_needed()
	}

	/// A verified header: segment `seq` plays for `duration_ms` and has chunks of `lens` bytes.
	/// Segments before the playhead are ignored.
	pub fn handle_header(
		&mut self,
		now: Millis,
		seq: u64,
		duration_ms: u32,
		lens: Vec<u32>,
	) -> Result<(), SchedulerError> {
		self.now = self.now.max(now);
		if lens.is_empty() || lens.len() > MAX_CHUNKS {
			return Err(SchedulerError::BadChunkCount { seq, count: lens.len() });
		}
		if seq < self.playout.next_needed() || self.segments.contains_key(&seq) {
			return Ok(());
		}
		self.forget_played();
		if self.segments.len() >= self.config.max_tracked_segments {
			// Make room by dropping the oldest played segment; never an unplayed one.
			let oldest = *self.segments.keys().next().expect("full map is not empty");
			if oldest >= self.playout.next_needed() || oldest > seq {
				return Err(SchedulerError::TooFarAhead { seq });
			}
			self.forget_segment(oldest);
		}
		let count = lens.len();
		let mut avail = vec![0u16; count];
		for peer in self.peers.values() {
			if let Some(h) = peer.haves.get(&seq).filter(|h| h.chunk_count() == count) {
				for i in h.iter() {
					avail[i] = avail[i].saturating_add(1);
				}
			}
		}
		self.last_duration = duration_ms;
		self.segments.insert(
			seq,
			Seg {
				duration_ms,
				have: ChunkSet::new(count),
				avail,
				inflight: vec![None; count],
				lens,
			},
		);
		Ok(())
	}

	/// The origin restarted the stream as a newer broadcast, whose first segment to play is
	/// `start_seq`: every segment, announcement and open request of the old broadcast is
	/// forgotten (its sequence numbers may come again with other chunks; answers still on their
	/// way must be dropped by the caller, which knows their broadcast), and the player model
	/// waits for `start_seq` as at a join at `now`. Neighbours, bans and counters stay.
	pub fn handle_new_broadcast(&mut self, now: Millis, start_seq: u64) {
		self.now = self.now.max(now);
		self.segments.clear();
		for p in self.peers.values_mut() {
			p.haves.clear();
			p.inflight = 0;
			p.inflight_bytes = 0;
		}
		self.node_inflight = 0;
		self.peer_inflight = 0;
		self.cancels.clear();
		self.events.retain(|e| !matches!(e, SchedulerEvent::SegmentComplete { .. }));
		self.playout.restart(self.now, start_seq);
	}

	/// A verified origin-signed header (convenience for [`Scheduler::handle_header`]).
	pub fn handle_segment_header(
		&mut self,
		now: Millis,
		header: &SegmentHeader,
	) -> Result<(), SchedulerError> {
		let lens = chunk_lens(header.byte_len, header.chunk_size);
		self.handle_header(now, header.sequence, header.duration_ms, lens)
	}

	/// A neighbour connected. Returns false (and ignores it) if it is banned or the neighbour
	/// table is full.
	pub fn handle_peer_joined(&mut self, peer: P) -> bool {
		if self.banned.contains(&peer) || self.peers.contains_key(&peer) {
			return false;
		}
		if self.peers.len() >= self.config.max_peers {
			return false;
		}
		self.peers.insert(
			peer,
			Peer {
				haves: BTreeMap::new(),
				inflight: 0,
				inflight_bytes: 0,
				rate: self.config.initial_peer_bytes_per_sec,
				busy_until: 0,
			},
		);
		true
	}

	/// A neighbour disconnected: its announcements and open requests are forgotten (those
	/// chunks will be asked elsewhere).
	pub fn handle_peer_left(&mut self, peer: P) {
		let Some(p) = self.peers.remove(&peer) else { return };
		self.drop_peer_state(peer, p);
	}

	fn drop_peer_state(&mut self, peer: P, p: Peer) {
		for (seq, h) in &p.haves {
			if let Some(seg) =
				self.segments.get_mut(seq).filter(|s| s.have.chunk_count() == h.chunk_count())
			{
				for i in h.iter() {
					seg.avail[i] = seg.avail[i].saturating_sub(1);
				}
			}
		}
		for seg in self.segments.values_mut() {
			for slot in seg.inflight.iter_mut() {
				if matches!(slot, Some(f) if f.source == Source::Peer(peer)) {
					*slot = None;
					self.peer_inflight -= 1;
				}
			}
		}
	}

	fn have_window(&self, seq: u64) -> bool {
		let low = self.playout.next_needed().saturating_sub(self.config.keep_played_segments);
		seq >= low && seq < low + self.config.max_tracked_segments as u64
	}

	/// `peer` announces the chunks of `seq` it holds (added to what it announced before).
	pub fn handle_have(&mut self, peer: P, seq: u64, set: &ChunkSet) -> Result<(), SchedulerError> {
		if !self.have_window(seq) || !self.peers.contains_key(&peer) {
			self.stats.haves_ignored += 1;
			return Ok(());
		}
		if let Some(seg) = self.segments.get(&seq) {
			if seg.have.chunk_count() != set.chunk_count() {
				self.stats.haves_ignored += 1;
				return Err(SchedulerError::HaveMismatch {
					seq,
					got: set.chunk_count(),
					expected: seg.have.chunk_count(),
				});
			}
		}
		let p = self.peers.get_mut(&peer).expect("checked above");
		let entry = p.haves.entry(seq).or_insert_with(|| ChunkSet::new(set.chunk_count()));
		if entry.chunk_count() != set.chunk_count() {
			*entry = ChunkSet::new(set.chunk_count());
		}
		let new = entry.union_new(set);
		if let Some(seg) = self.segments.get_mut(&seq) {
			for i in new {
				seg.avail[i] = seg.avail[i].saturating_add(1);
			}
		}
		Ok(())
	}

	/// `peer` announces one more chunk of `seq`. Needs the header: announcements of unknown
	/// segments are ignored (the node sends headers before any peer can hold the chunks).
	pub fn handle_have_chunk(&mut self, peer: P, seq: u64, index: u32) {
		let Some(seg) = self.segments.get_mut(&seq) else {
			self.stats.haves_ignored += 1;
			return;
		};
		let Some(p) = self.peers.get_mut(&peer) else {
			self.stats.haves_ignored += 1;
			return;
		};
		let count = seg.have.chunk_count();
		let entry = p.haves.entry(seq).or_insert_with(|| ChunkSet::new(count));
		if entry.chunk_count() == count && entry.insert(index as usize) {
			seg.avail[index as usize] = seg.avail[index as usize].saturating_add(1);
		} else if (index as usize) >= count {
			self.stats.haves_ignored += 1;
		}
	}

	fn clear_inflight(&mut self, seq: u64, index: usize) -> Option<InFlight<P>> {
		let seg = self.segments.get_mut(&seq)?;
		let f = seg.inflight[index].take()?;
		let len = seg.lens[index] as u64;
		match f.source {
			Source::Node => self.node_inflight -= 1,
			Source::Peer(p) => {
				self.peer_inflight -= 1;
				if let Some(peer) = self.peers.get_mut(&p) {
					peer.inflight -= 1;
					peer.inflight_bytes -= len;
				}
			}
		}
		Some(f)
	}

	/// A chunk arrived from `source` and passed verification against its header.
	pub fn handle_chunk(
		&mut self,
		now: Millis,
		source: Source<P>,
		seq: u64,
		index: u32,
		len: u32,
	) -> Result<ChunkOutcome, SchedulerError> {
		self.now = self.now.max(now);
		let Some(seg) = self.segments.get(&seq) else {
			if seq < self.playout.next_needed() {
				return Ok(ChunkOutcome::Stale);
			}
			return Err(SchedulerError::UnknownSegment { seq });
		};
		let i = index as usize;
		if i >= seg.lens.len() {
			return Err(SchedulerError::IndexOutOfRange { seq, index });
		}
		if seg.lens[i] != len {
			return Err(SchedulerError::LengthMismatch {
				seq,
				index,
				got: len,
				expected: seg.lens[i],
			});
		}
		let requested = self.clear_inflight(seq, i);
		match requested {
			Some(f) if f.source == source => {
				if let Source::Peer(p) = source {
					if let Some(peer) = self.peers.get_mut(&p) {
						let elapsed = now.saturating_sub(f.sent).max(1);
						let sample = len as u64 * 1000 / elapsed;
						// EWMA with weight 1/4: follows a peer's load within a few chunks.
						peer.rate = (peer.rate * 3 + sample) / 4;
						peer.rate = peer.rate.max(self.config.min_peer_bytes_per_sec);
					}
				}
			}
			Some(f) => {
				// Came from elsewhere first: withdraw the other request.
				if let Source::Peer(p) = f.source {
					self.cancels.push_back(Cancel { peer: p, seq, index });
				}
			}
			None => {}
		}
		let seg = self.segments.get_mut(&seq).expect("checked above");
		if !seg.have.insert(i) {
			self.stats.duplicate_bytes += len as u64;
			return Ok(ChunkOutcome::Duplicate);
		}
		match source {
			Source::Node => {
				self.stats.bytes_from_node += len as u64;
				if requested.is_none() {
					self.stats.seeded_chunks += 1;
				}
			}
			Source::Peer(_) => self.stats.bytes_from_peers += len as u64,
		}
		if seg.have.is_full() {
			let duration = seg.duration_ms;
			self.stats.segments_complete += 1;
			self.events.push_back(SchedulerEvent::SegmentComplete { seq });
			self.playout.handle_complete(now, seq, duration);
			self.drain_playout();
		}
		Ok(ChunkOutcome::Stored)
	}

	/// A chunk from `peer` failed verification (hash or length): it is dropped, the peer is
	/// banned for this stream and its open requests go elsewhere.
	pub fn handle_bad_chunk(&mut self, now: Millis, peer: P, seq: u64, index: u32) {
		self.now = self.now.max(now);
		self.stats.bad_chunks += 1;
		if let Some(seg) = self.segments.get(&seq) {
			if (index as usize) < seg.lens.len() {
				let _ = self.clear_inflight(seq, index as usize);
			}
		}
		self.ban(peer);
	}

	fn ban(&mut self, peer: P) {
		if let Some(p) = self.peers.remove(&peer) {
			self.drop_peer_state(peer, p);
		}
		if self.banned.insert(peer) {
			self.stats.banned += 1;
			self.banned_order.push_back(peer);
			if self.banned_order.len() > self.config.max_banned {
				if let Some(old) = self.banned_order.pop_front() {
					self.banned.remove(&old);
				}
			}
			// Debug, not warn: the shell that closes the connection logs it once per peer.
			tracing::debug!(?peer, "peer sent a bad chunk: banned");
			self.events.push_back(SchedulerEvent::PeerBanned(peer));
		}
	}

	/// `peer` refused a request (queue full, or it does not hold the chunk): ask elsewhere, and
	/// leave it alone for `busy_backoff_ms`.
	pub fn handle_request_failed(&mut self, now: Millis, peer: P, seq: u64, index: u32) {
		self.now = self.now.max(now);
		let ours = self
			.segments
			.get(&seq)
			.and_then(|s| s.inflight.get(index as usize).copied().flatten())
			.is_some_and(|f| f.source == Source::Peer(peer));
		if !ours {
			return;
		}
		let _ = self.clear_inflight(seq, index as usize);
		self.stats.refusals += 1;
		if let Some(p) = self.peers.get_mut(&peer) {
			p.busy_until = now + self.config.busy_backoff_ms;
		}
	}

	/// The real player is at segment `seq` with `remaining_ms` of it left.
	pub fn handle_playhead(&mut self, now: Millis, seq: u64, remaining_ms: u64) {
		self.now = self.now.max(now);
		self.playout.handle_playhead(now, seq, remaining_ms);
		self.drain_playout();
	}

	/// Time passed: play on, time out slow requests.
	pub fn handle_timeout(&mut self, now: Millis) {
		self.now = self.now.max(now);
		self.playout.handle_timeout(now);
		self.drain_playout();
		let mut expired = Vec::new();
		for (&seq, seg) in &self.segments {
			for (i, f) in seg.inflight.iter().enumerate() {
				if let Some(f) = f.filter(|f| f.timeout_at <= now) {
					expired.push((seq, i, f.source));
				}
			}
		}
		for (seq, i, source) in expired {
			let _ = self.clear_inflight(seq, i);
			match source {
				Source::Node => self.stats.node_timeouts += 1,
				Source::Peer(p) => {
					self.stats.peer_timeouts += 1;
					self.cancels.push_back(Cancel { peer: p, seq, index: i as u32 });
					if let Some(peer) = self.peers.get_mut(&p) {
						peer.rate = (peer.rate / 2).max(self.config.min_peer_bytes_per_sec);
					}
				}
			}
		}
		self.forget_played();
	}

	fn drain_playout(&mut self) {
		while let Some(e) = self.playout.poll_event() {
			self.events.push_back(SchedulerEvent::Play(e));
		}
	}

	fn forget_segment(&mut self, seq: u64) {
		let count = self.segments.get(&seq).map(|s| s.lens.len()).unwrap_or(0);
		for i in 0..count {
			let _ = self.clear_inflight(seq, i);
		}
		self.segments.remove(&seq);
	}

	/// Drops segments played more than `keep_played_segments` ago, and announcements outside
	/// the window.
	fn forget_played(&mut self) {
		let low = self.playout.next_needed().saturating_sub(self.config.keep_played_segments);
		while let Some((&seq, _)) = self.segments.first_key_value() {
			if seq >= low {
				break;
			}
			self.forget_segment(seq);
		}
		let high = low + self.config.max_tracked_segments as u64;
		for p in self.peers.values_mut() {
			p.haves.retain(|&s, _| s >= low && s < high);
		}
	}

	/// Deadlines of the tracked segments not yet played, ascending.
	fn deadlines(&self, now: Millis) -> Vec<(u64, Millis)> {
		let (mut seq, mut at) = self.playout.due(now);
		let mut out = Vec::new();
		for (&s, seg) in self.segments.range(seq..) {
			// Segments missing between known ones are assumed as long as the last one known.
			while seq < s {
				at += self.last_duration as u64;
				seq += 1;
			}
			out.push((s, at));
			at += seg.duration_ms as u64;
			seq += 1;
		}
		out
	}

	/// The next request to send, if any (call until `None` after every input).
	pub fn poll_request(&mut self, now: Millis) -> Option<ChunkRequest<P>> {
		self.now = self.now.max(now);
		let c = &self.config;
		for (seq, deadline) in self.deadlines(now) {
			if deadline > now + c.lookahead_ms {
				break;
			}
			let seg = &self.segments[&seq];
			if seg.have.is_full() {
				continue;
			}
			let urgent = deadline <= now + c.urgent_window_ms;
			let mut missing: Vec<usize> = (0..seg.lens.len())
				.filter(|&i| !seg.have.contains(i) && seg.inflight[i].is_none())
				.collect();
			if missing.is_empty() {
				continue;
			}
			if urgent {
				if self.node_inflight >= c.max_inflight_node {
					continue;
				}
				let i = missing[0];
				return Some(self.issue(now, Source::Node, seq, i, deadline));
			}
			if self.peer_inflight >= c.max_inflight_peers {
				continue;
			}
			// Rarest first among the chunks of this segment; index order among equals.
			missing.sort_by_key(|&i| (seg.avail[i], i));
			for i in missing {
				if seg.avail[i] == 0 {
					continue;
				}
				if let Some(peer) = self.best_peer(now, seq, i, deadline) {
					return Some(self.issue(now, Source::Peer(peer), seq, i, deadline));
				}
			}
		}
		None
	}

	/// The neighbour expected to deliver chunk `i` of `seq` first, if one can before the
	/// chunk would have to go to the node.
	fn best_peer(&self, now: Millis, seq: u64, i: usize, deadline: Millis) -> Option<P> {
		let c = &self.config;
		let len = self.segments[&seq].lens[i] as u64;
		let latest = deadline.saturating_sub(c.node_margin_ms);
		self.peers
			.iter()
			.filter(|(_, p)| {
				p.inflight < c.max_inflight_per_peer
					&& p.busy_until <= now
					&& p.haves.get(&seq).is_some_and(|h| h.contains(i))
			})
			.map(|(&id, p)| (now + (p.inflight_bytes + len) * 1000 / p.rate.max(1), p.inflight, id))
			.filter(|&(eta, _, _)| eta <= latest)
			.min()
			.map(|(_, _, id)| id)
	}

	fn issue(
		&mut self,
		now: Millis,
		source: Source<P>,
		seq: u64,
		i: usize,
		deadline: Millis,
	) -> ChunkRequest<P> {
		let c = &self.config;
		let len = self.segments[&seq].lens[i];
		let timeout_at = match source {
			Source::Node => {
				self.node_inflight += 1;
				self.stats.node_requests += 1;
				now + c.max_timeout_ms
			}
			Source::Peer(p) => {
				let peer = self.peers.get_mut(&p).expect("chosen among peers");
				let expected = (peer.inflight_bytes + len as u64) * 1000 / peer.rate.max(1);
				let timeout =
					(expected * c.timeout_multiplier).clamp(c.min_timeout_ms, c.max_timeout_ms);
				peer.inflight += 1;
				peer.inflight_bytes += len as u64;
				self.peer_inflight += 1;
				self.stats.peer_requests += 1;
				// Never wait past the point where the node could still deliver in time.
				(now + timeout)
					.min(deadline.saturating_sub(c.node_margin_ms).max(now + c.min_timeout_ms))
			}
		};
		let seg = self.segments.get_mut(&seq).expect("tracked");
		seg.inflight[i] = Some(InFlight { source, sent: now, timeout_at });
		ChunkRequest { source, seq, index: i as u32, len, deadline }
	}

	/// A request to withdraw from a peer.
	pub fn poll_cancel(&mut self) -> Option<Cancel<P>> {
		self.cancels.pop_front()
	}

	/// The next thing that happened.
	pub fn poll_event(&mut self) -> Option<SchedulerEvent<P>> {
		self.events.pop_front()
	}

	/// When to call [`Scheduler::handle_timeout`] (and poll again) at the latest: the end of the
	/// segment playing, the first request timeout, or when a waiting chunk enters the urgent
	/// window or a segment enters the lookahead.
	pub fn poll_timeout(&self) -> Option<Millis> {
		let c = &self.config;
		let now = self.now;
		let mut t = self.playout.poll_timeout();
		let mut consider = |x: Millis| {
			if x > now {
				t = Some(t.map_or(x, |t: Millis| t.min(x)));
			}
		};
		for seg in self.segments.values() {
			for f in seg.inflight.iter().flatten() {
				consider(f.timeout_at);
			}
		}
		for p in self.peers.values() {
			consider(p.busy_until);
		}
		for (seq, deadline) in self.deadlines(now) {
			let seg = &self.segments[&seq];
			if seg.have.is_full() {
				continue;
			}
			consider(deadline.saturating_sub(c.urgent_window_ms));
			consider(deadline.saturating_sub(c.lookahead_ms));
		}
		t
	}
}

#[cfg(test)]
mod tests;
