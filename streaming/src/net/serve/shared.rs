//! What the sessions of one server share: the stream table and its live windows, the
//! admission and tracker state, the seeding of each stream's swarm, and the counters behind
//! [`super::ServerStats`].

use super::{ServeConfig, SessionsByTransport};
use crate::{
	clock::{Clock, Millis},
	net::vod::Recorder,
	p2p::{seeding::SeedRotation, serving::ChunkSource, tracker::Tracker},
	protocol::{ErrorCode, Role, ServerAddrs, Transport},
	segment::Segment,
	server::{Admission, LiveWindow, RedirectList, StreamTable},
};
use bytes::Bytes;
use dsp_primitives::{AdmissionMode, SegmentHeader, Signed, StreamId};
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
}

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

	/// The window of `id`, opened if it has none (see [`StreamTable::open`]).
	pub(super) fn open_stream(&self, id: StreamId, by: Role) -> Result<Arc<StreamSlot>, ErrorCode> {
		let mut table = self.table();
		let r = table.open(self.now(), id, by, |mark| {
			Arc::new(StreamSlot {
				window: Mutex::new(LiveWindow::resume(self.config.window.clone(), mark)),
				changed: watch::channel(0).0,
				freed: AtomicBool::new(false),
				seeding: Mutex::new(Seeding {
					rotation: SeedRotation::new(self.config.seeding.clone()),
					assigned: BTreeMap::new(),
					keep: self.config.window.max_segments,
				}),
			})
		});
		self.release_freed(&mut table);
		r
	}

	/// Frees expired streams.
	pub(super) fn sweep(&self) {
		let mut table = self.table();
		table.handle_timeout(self.now());
		self.release_freed(&mut table);
	}

	fn release_freed(&self, table: &mut StreamTable<Arc<StreamSlot>>) {
		while let Some((id, slot)) = table.poll_freed() {
			slot.freed.store(true, Ordering::Relaxed);
			slot.changed.send_modify(|v| *v += 1);
			self.streams_freed.fetch_add(1, Ordering::Relaxed);
			info!(stream = id, "stream freed (ended or idle)");
		}
	}
}

impl StreamSlot {
	/// Changes the window and wakes the sessions waiting on it.
	pub(super) fn update<R>(&self, f: impl FnOnce(&mut LiveWindow) -> R) -> R {
		let r = f(&mut self.window.lock());
		self.changed.send_modify(|v| *v += 1);
		r
	}

	/// The stream's seeding, locked.
	pub(super) fn seeding(&self) -> MutexGuard<'_, Seeding> {
		self.seeding.lock()
	}
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
