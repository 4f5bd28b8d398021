//! What the sessions of one server share: the stream table and its live windows, the
//! admission and tracker state, the seeding of each stream's swarm, the memory budgets
//! ([`MemoryConfig`]: streams per origin, window and partial-segment bytes), and the counters
//! behind [`super::ServerStats`].

use super::{ServeConfig, SessionsByTransport};
#[cfg(doc)]
use crate::server::MemoryConfig;
use crate::{
	clock::{Clock, Millis},
	net::vod::Recorder,
	p2p::{seeding::SeedRotation, serving::ChunkSource, tracker::Tracker},
	protocol::{ErrorCode, Role, ServerAddrs, Transport},
	segment::Segment,
	server::{
		Admission, BroadcastMark, ByteBudget, Inserted, LiveWindow, LookupBudget, PartialBudget,
		PerAddress, RedirectList, Stale, StreamTable,
	},
};
use bytes::Bytes;
use dsp_primitives::{
	AdmissionMode, EpochIndex, PublicKey, SegmentHeader, Signed, StreamEnd, StreamId,
};
use parking_lot::{Mutex, MutexGuard};
use std::{
	collections::{BTreeMap, HashMap},
	sync::{
		atomic::{AtomicBool, AtomicU64, Ordering},
		Arc,
	},
	time::Duration,
};
use tokio::sync::watch;
use tracing::info;

/// Counters behind [`SessionsByTransport`], indexed `[mode][transport]` (direct 0, P2P 1;
/// TCP 0, QUIC 1).
#[derive(Default)]
pub(super) struct SessionCounters([[AtomicU64; 2]; 2]);

impl SessionCounters {
	/// The count of open `mode` sessions over `transport`.
	pub(super) fn slot(&self, mode: AdmissionMode, transport: Transport) -> &AtomicU64 {
		let m = usize::from(mode == AdmissionMode::P2p);
		let t = usize::from(transport == Transport::Quic);
		&self.0[m][t]
	}

	pub(super) fn snapshot(&self) -> SessionsByTransport {
		let get = |m: usize, t: usize| self.0[m][t].load(Ordering::Relaxed);
		SessionsByTransport {
			direct_tcp: get(0, 0),
			direct_quic: get(0, 1),
			p2p_tcp: get(1, 0),
			p2p_quic: get(1, 1),
		}
	}
}

/// One stream's live window, shared by its publisher and viewer sessions.
pub(super) struct StreamSlot {
	pub(super) window: Mutex<LiveWindow>,
	/// Bumped on every change of the window; sessions wait on it instead of polling.
	pub(super) changed: watch::Sender<u64>,
	/// The table let go of this slot: its viewers are closed, its publisher opens a new one.
	pub(super) freed: AtomicBool,
	/// Which P2P session gets which chunk of each new segment pushed.
	seeding: Mutex<Seeding>,
	/// The server's budget of window bytes, which this window's segments are part of until
	/// they are evicted or the slot is dropped.
	budget: Arc<ByteBudget>,
	/// The origin this stream counts against ([`MemoryConfig::max_streams_per_origin`]), once
	/// a publisher opened or took it over; `None` while only viewers wait for it.
	origin: Mutex<Option<PublicKey>>,
}

impl Drop for StreamSlot {
	fn drop(&mut self) {
		self.budget.release(self.window.get_mut().usage().1);
	}
}

/// The node's seeding of one stream's swarm: the rotation over its P2P sessions and, for the
/// segments in the window, which chunks each session is pushed. Decided once per segment when
/// it is stored (before sessions are woken), so every session reads the same assignment.
/// Memory: at most `keep` segments, one small vector per seeded session each.
pub(super) struct Seeding {
	pub(super) rotation: SeedRotation<u64>,
	/// Sequence → session → chunk indices pushed to it.
	assigned: BTreeMap<u64, HashMap<u64, Vec<u32>>>,
	keep: usize,
}

impl Seeding {
	/// Decides which sessions are pushed which chunks of the newly stored `segment`.
	pub(super) fn assign(&mut self, segment: &Segment) {
		let mut per_session: HashMap<u64, Vec<u32>> = HashMap::new();
		for index in 0..segment.chunks.len() as u32 {
			for session in self.rotation.next_seeds() {
				per_session.entry(session).or_default().push(index);
			}
		}
		self.assigned.insert(segment.sequence(), per_session);
		while self.assigned.len() > self.keep {
			self.assigned.pop_first();
		}
	}

	/// The chunks of segment `sequence` pushed to `session`.
	pub(super) fn seeded(&self, sequence: u64, session: u64) -> Vec<u32> {
		self.assigned.get(&sequence).and_then(|m| m.get(&session)).cloned().unwrap_or_default()
	}
}

/// What every session and the listeners share.
pub(super) struct Shared {
	pub(super) config: ServeConfig,
	pub(super) streams: Mutex<StreamTable<Arc<StreamSlot>>>,
	pub(super) recorder: Option<Recorder>,
	pub(super) admission: Mutex<Admission>,
	pub(super) tracker: Option<Mutex<Tracker>>,
	/// The credit epoch passes are issued for; joined P2P sessions renew their pass when it
	/// changes.
	pub(super) epoch: watch::Sender<EpochIndex>,
	/// `Join`s whose proof of key possession did not verify.
	pub(super) bad_join_proofs: AtomicU64,
	pub(super) connections: AtomicU64,
	pub(super) closed_with_error: AtomicU64,
	pub(super) segments_stored: AtomicU64,
	pub(super) bytes_sent: AtomicU64,
	pub(super) streams_freed: AtomicU64,
	pub(super) vod_sessions: AtomicU64,
	pub(super) bytes_sent_p2p: AtomicU64,
	pub(super) p2p_media_due: AtomicU64,
	pub(super) p2p_chunk_bytes_sent: AtomicU64,
	pub(super) sessions: SessionCounters,
	/// Session ids (the seeding rotation's member ids).
	pub(super) next_session: AtomicU64,
	/// Other streamers refused viewers are sent to.
	pub(super) redirect: Mutex<RedirectList>,
	pub(super) redirects: AtomicU64,
	/// `Switched` reports, indexed by the reporting connection's transport (TCP 0, QUIC 1).
	pub(super) switches: [AtomicU64; 2],
	/// The clock of the cores (sessions and the stream table): tokio's, so tests can pause it.
	pub(super) clock: Clock,
	/// Bytes of all live windows ([`MemoryConfig::max_window_bytes`]).
	pub(super) window_bytes: Arc<ByteBudget>,
	/// Bytes of segments being assembled by all publishers
	/// ([`MemoryConfig::max_partial_bytes`]).
	pub(super) partial_bytes: PartialBudget,
	/// Streams each origin holds through its publishers. Changed only with the stream table
	/// locked (opening and freeing streams), so the count and the table agree.
	origin_streams: Mutex<HashMap<PublicKey, usize>>,
	/// Publishers refused with `OverBudget` since start.
	pub(super) over_budget: AtomicU64,
	// Admission of the unauthenticated (per-address limits, QUIC address validation).
	/// What each client address holds (see [`super::limits`]).
	pub(super) per_address: Mutex<PerAddress>,
	/// Connections refused by a per-address limit, since start.
	pub(super) refused_per_address: AtomicU64,
	/// Lookups of unknown stream ids each client address may still make (see
	/// [`super::limits::BudgetedDirectory`]).
	pub(super) lookups: Mutex<LookupBudget>,
	/// Lookups refused by [`Self::lookups`], since start.
	pub(super) lookups_refused: AtomicU64,
	/// QUIC Retry packets sent to clients whose address was not validated yet, since start.
	pub(super) quic_retries: AtomicU64,
}

/// Why a publisher could not open its stream's window: the code and the reason it is sent.
pub(super) type Refusal = (ErrorCode, String);

/// How often the stream table is checked for ended and idle streams: a stream is freed at most
/// this long after its timeout.
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Shared {
	/// Nothing shared yet: no streams, no sessions, zero counters.
	pub(super) fn new(config: ServeConfig, recorder: Option<Recorder>) -> Self {
		Shared {
			admission: Mutex::new(
				Admission::new(config.capacity)
					.with_p2p(config.p2p.is_some())
					.with_max_p2p_sessions(config.max_p2p_sessions),
			),
			tracker: config.p2p.clone().map(|p| Mutex::new(Tracker::new(p.tracker, p.signer))),
			epoch: watch::channel(config.p2p.as_ref().map_or(0, |p| p.tracker.epoch)).0,
			bad_join_proofs: AtomicU64::new(0),
			streams: Mutex::new(StreamTable::new(config.streams.clone())),
			recorder,
			connections: AtomicU64::new(0),
			closed_with_error: AtomicU64::new(0),
			segments_stored: AtomicU64::new(0),
			bytes_sent: AtomicU64::new(0),
			streams_freed: AtomicU64::new(0),
			vod_sessions: AtomicU64::new(0),
			bytes_sent_p2p: AtomicU64::new(0),
			p2p_media_due: AtomicU64::new(0),
			p2p_chunk_bytes_sent: AtomicU64::new(0),
			sessions: SessionCounters::default(),
			next_session: AtomicU64::new(0),
			redirect: Mutex::new(RedirectList::default()),
			redirects: AtomicU64::new(0),
			switches: Default::default(),
			clock: Clock::new(),
			window_bytes: Arc::new(ByteBudget::new(config.memory.max_window_bytes)),
			partial_bytes: PartialBudget::new(
				config.memory.max_partial_bytes,
				config.memory.max_partial_bytes_per_origin,
			),
			origin_streams: Mutex::new(HashMap::new()),
			over_budget: AtomicU64::new(0),
			per_address: Mutex::new(PerAddress::new(config.per_address.clone())),
			refused_per_address: AtomicU64::new(0),
			lookups: Mutex::new(LookupBudget::new(config.lookup_budget.clone())),
			lookups_refused: AtomicU64::new(0),
			quic_retries: AtomicU64::new(0),
			config,
		}
	}

	/// Now on [`Self::clock`].
	pub(super) fn now(&self) -> Millis {
		self.clock.now()
	}

	/// The stream table, locked.
	pub(super) fn table(&self) -> MutexGuard<'_, StreamTable<Arc<StreamSlot>>> {
		self.streams.lock()
	}

	/// The `Redirect` list for one refused viewer (empty if no other streamer is known), and
	/// counts it.
	pub(super) fn next_redirect(&self) -> Vec<ServerAddrs> {
		let servers = self.redirect.lock().next_redirect();
		if !servers.is_empty() {
			self.redirects.fetch_add(1, Ordering::Relaxed);
		}
		servers
	}

	/// The window of `id`, opened if it has none (see [`StreamTable::open`]), for a viewer.
	pub(super) fn open_stream(&self, id: StreamId, by: Role) -> Result<Arc<StreamSlot>, ErrorCode> {
		let mut table = self.table();
		let r = table.open(self.now(), id, by, |mark| self.new_slot(mark));
		self.release_freed(&mut table);
		r
	}

	/// The window of `id` for its publisher, opened if it has none. The stream counts against
	/// its origin from now on: refused with `OverBudget` if that origin already holds
	/// [`MemoryConfig::max_streams_per_origin`] streams (other than this one).
	pub(super) fn open_published(&self, id: StreamId) -> Result<Arc<StreamSlot>, Refusal> {
		// Before locking the table: with a chain directory this may be a runtime call.
		let Some(origin) = self.config.session.origin_keys.get(id) else {
			return Err((ErrorCode::UnknownStream, format!("no origin key for stream {id}")));
		};
		let mut table = self.table();
		// Expired streams first, so that they do not count against their origin.
		table.handle_timeout(self.now());
		self.release_freed(&mut table);
		let counted = table.get(id).is_some_and(|s| s.origin.lock().is_some());
		let max = self.config.memory.max_streams_per_origin;
		if !counted && self.origin_streams.lock().get(&origin).copied().unwrap_or(0) >= max {
			self.over_budget.fetch_add(1, Ordering::Relaxed);
			return Err((
				ErrorCode::OverBudget,
				format!("the stream's origin holds {max} streams here (max_streams_per_origin)"),
			));
		}
		let slot = table
			.open(self.now(), id, Role::Publisher, |mark| self.new_slot(mark))
			.map_err(|code| (code, "too many streams held".to_owned()))?;
		let mut slot_origin = slot.origin.lock();
		if slot_origin.is_none() {
			*slot_origin = Some(origin);
			*self.origin_streams.lock().entry(origin).or_default() += 1;
		}
		drop(slot_origin);
		self.release_freed(&mut table);
		Ok(slot)
	}

	/// A new stream slot whose window resumes `mark`, what the table remembers of the
	/// stream's newest broadcast.
	fn new_slot(&self, mark: Option<BroadcastMark>) -> Arc<StreamSlot> {
		Arc::new(StreamSlot {
			window: Mutex::new(LiveWindow::resume(self.config.window.clone(), mark)),
			changed: watch::channel(0).0,
			freed: AtomicBool::new(false),
			seeding: Mutex::new(Seeding {
				rotation: SeedRotation::new(self.config.seeding.clone()),
				assigned: BTreeMap::new(),
				keep: self.config.window.max_segments,
			}),
			budget: self.window_bytes.clone(),
			origin: Mutex::new(None),
		})
	}

	/// Frees `id` if it never stored anything and no session holds its slot any more (see
	/// [`StreamTable::release_if_unused`]); a session that held it calls this after letting
	/// its slot go.
	pub(super) fn release_if_unused(&self, id: StreamId) {
		let mut table = self.table();
		table.release_if_unused(id, |slot| Arc::strong_count(slot) == 1);
		self.release_freed(&mut table);
	}

	/// Frees expired streams.
	pub(super) fn sweep(&self) {
		let mut table = self.table();
		table.handle_timeout(self.now());
		self.release_freed(&mut table);
	}

	fn release_freed(&self, table: &mut StreamTable<Arc<StreamSlot>>) {
		while let Some((id, slot)) = table.poll_freed() {
			if let Some(origin) = slot.origin.lock().take() {
				let mut counts = self.origin_streams.lock();
				if let Some(n) = counts.get_mut(&origin) {
					*n = n.saturating_sub(1);
					if *n == 0 {
						counts.remove(&origin);
					}
				}
			}
			slot.freed.store(true, Ordering::Relaxed);
			slot.changed.send_modify(|v| *v += 1);
			self.streams_freed.fetch_add(1, Ordering::Relaxed);
			info!(stream = id, "stream freed (ended or idle)");
		}
	}
}

impl StreamSlot {
	/// Changes the window and wakes the sessions waiting on it (tests fill windows with it;
	/// the server goes through [`Self::store`] and [`Self::end`], which keep the budget).
	#[cfg(test)]
	pub(super) fn update<R>(&self, f: impl FnOnce(&mut LiveWindow) -> R) -> R {
		let r = f(&mut self.window.lock());
		self.changed.send_modify(|v| *v += 1);
		r
	}

	/// Stores a publisher's verified segment within the server's window budget, assigns its
	/// seeding and wakes the sessions; the outcome and the broadcast the window holds then. A
	/// segment that does not fit takes room from the oldest segments of this window; if it
	/// still does not fit (other streams hold the budget), it is refused as over budget. A
	/// stale segment (of an older broadcast, or after its end) is refused before any room is
	/// made for it, so that a replay evicts nothing.
	pub(super) fn store(
		&self,
		segment: &Arc<Segment>,
	) -> Result<(Inserted, Option<BroadcastMark>), StoreRefusal> {
		let need = segment.byte_len();
		let r = {
			let mut w = self.window.lock();
			w.check(segment).map_err(StoreRefusal::Stale)?;
			// A segment held already (a reconnecting publisher sends it again) takes no room:
			// nothing is evicted for it.
			let mark = w.mark();
			if mark.is_some_and(|m| {
				m.broadcast == segment.broadcast() && segment.sequence() < m.next_sequence
			}) {
				return Ok((Inserted::Duplicate, mark));
			}
			let mut fits = self.budget.try_reserve(need);
			while !fits {
				let Some(freed) = w.evict_oldest() else { break };
				self.budget.release(freed);
				fits = self.budget.try_reserve(need);
			}
			if !fits {
				return Err(StoreRefusal::OverBudget(self.over_window_budget(need)));
			}
			let before = w.usage().1;
			let r = w.insert(segment.clone());
			// The window may have dropped old segments (its own bounds, or a newer broadcast
			// replaced the old one), or nothing was stored (a duplicate): give back what it
			// does not hold.
			self.budget.release((before + need).saturating_sub(w.usage().1));
			if r == Ok(Inserted::Stored) {
				// Before the sessions wake up to the new segment.
				self.seeding().assign(segment);
			}
			r.map(|r| (r, w.mark())).map_err(StoreRefusal::Stale)?
		};
		self.changed.send_modify(|v| *v += 1);
		Ok(r)
	}

	/// Records the origin's verified end of a broadcast; the broadcast the window holds then.
	/// The end of a newer broadcast than the one held replaces the window (its segments go):
	/// their bytes go back to the server's window budget, as in [`Self::store`].
	pub(super) fn end(&self, end: Signed<StreamEnd>) -> Result<Option<BroadcastMark>, Stale> {
		let r = {
			let mut w = self.window.lock();
			let before = w.usage().1;
			let r = w.end(end).map(|()| w.mark());
			self.budget.release(before.saturating_sub(w.usage().1));
			r
		};
		self.changed.send_modify(|v| *v += 1);
		r
	}

	/// Whether a segment of `need` bytes would fit the window budget once this window gave up
	/// all its segments: checked when a header announces it, so that a publisher is refused
	/// before it sends the chunks (and is acked for a segment then not stored). The reason to
	/// refuse it if not.
	pub(super) fn check_room(&self, need: usize) -> Result<(), String> {
		let own = self.window.lock().usage().1;
		let others = self.budget.used().saturating_sub(own);
		match others.checked_add(need) {
			Some(total) if total <= self.budget.max() => Ok(()),
			_ => Err(self.over_window_budget(need)),
		}
	}

	fn over_window_budget(&self, need: usize) -> String {
		format!(
			"segment of {need} bytes does not fit the live-window budget ({} of {} bytes held \
			 by the streams; max_window_bytes)",
			self.budget.used(),
			self.budget.max()
		)
	}

	/// The stream's seeding, locked.
	pub(super) fn seeding(&self) -> MutexGuard<'_, Seeding> {
		self.seeding.lock()
	}
}

/// Why [`StreamSlot::store`] refused a publisher's segment.
#[derive(Debug)]
pub(super) enum StoreRefusal {
	/// The server's window budget is held by other streams (`OverBudget`, with the reason).
	OverBudget(String),
	/// Of an older broadcast than the one held, or after its end.
	Stale(Stale),
}

/// The live windows as the P2P seed's chunk source. Looks streams up without creating any.
pub(super) struct WindowSource(pub(super) Arc<Shared>);

impl WindowSource {
	fn segment(&self, stream: StreamId, sequence: u64) -> Option<Arc<Segment>> {
		let slot = self.0.table().get(stream)?;
		let window = slot.window.lock();
		window.lookup(sequence, 1).segments.into_iter().next().filter(|s| s.sequence() == sequence)
	}
}

impl ChunkSource for WindowSource {
	fn header(&self, stream: StreamId, sequence: u64) -> Option<Signed<SegmentHeader>> {
		Some(self.segment(stream, sequence)?.header.clone())
	}

	fn chunk(&self, stream: StreamId, sequence: u64, index: u32) -> Option<Bytes> {
		self.segment(stream, sequence)?.chunks.get(index as usize).cloned()
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::{
		net::serve::ServeConfig,
		server::{test_util::origin, OriginKeys},
	};
	use sp_core::Pair;

	fn refusal(shared: &Shared, stream: StreamId) -> Option<ErrorCode> {
		shared.open_published(stream).err().map(|(code, _)| code)
	}

	#[tokio::test(start_paused = true)]
	async fn an_origin_holds_at_most_its_streams_until_one_is_freed() {
		let mut config = ServeConfig::default();
		config.memory.max_streams_per_origin = 2;
		config.session.origin_keys =
			Arc::new(OriginKeys { default: Some(origin().public()), ..Default::default() });
		let shared = Shared::new(config, None);
		let first = shared.open_published(1).unwrap();
		shared.open_published(2).unwrap();
		assert_eq!(refusal(&shared, 3), Some(ErrorCode::OverBudget));
		let again = shared.open_published(1).unwrap();
		assert!(Arc::ptr_eq(&first, &again), "its own streams are found again");
		// A stream viewers wait for counts once its publisher takes it over.
		shared.open_stream(4, Role::Viewer).unwrap();
		assert_eq!(refusal(&shared, 4), Some(ErrorCode::OverBudget));
		assert_eq!(shared.over_budget.load(Ordering::Relaxed), 2);
		// Idle streams are freed, and no longer count.
		tokio::time::advance(shared.config.streams.idle_timeout).await;
		shared.sweep();
		assert!(shared.open_published(3).is_ok());
		assert!(shared.open_published(4).is_ok());
		assert_eq!(refusal(&shared, 5), Some(ErrorCode::OverBudget));
	}

	/// The end of a newer broadcast empties the window: its bytes go back to the server's
	/// window budget (they leaked before, until restart: an origin could use it up by
	/// repeating full window + newer end), and a segment sent again evicts nothing.
	#[tokio::test(start_paused = true)]
	async fn a_newer_broadcasts_end_gives_the_window_bytes_back() {
		let mut config = ServeConfig::default();
		config.session.origin_keys =
			Arc::new(OriginKeys { default: Some(origin().public()), ..Default::default() });
		let shared = Shared::new(config, None);
		let slot = shared.open_published(1).unwrap();
		let seg = |b: u64, seq: u64| {
			let data = Bytes::from(vec![seq as u8; 1000]);
			Arc::new(Segment::build(&origin(), [0; 32], 1, b, seq, 2000, data, 512))
		};
		for seq in 0..3 {
			assert_eq!(slot.store(&seg(5, seq)).unwrap().0, Inserted::Stored);
		}
		assert_eq!(shared.window_bytes.used(), 3000);
		assert_eq!(slot.store(&seg(5, 1)).unwrap().0, Inserted::Duplicate);
		assert_eq!(shared.window_bytes.used(), 3000);
		let end = StreamEnd { genesis_hash: [0; 32], stream: 1, broadcast: 6, next_sequence: 0 };
		slot.end(Signed::sign(end, &origin())).unwrap();
		assert_eq!(slot.window.lock().usage().1, 0);
		assert_eq!(shared.window_bytes.used(), 0, "nothing left counted for a freed window");
	}
}
