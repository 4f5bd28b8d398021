//! [`SchedulerConfig`]: every limit of the [`Scheduler`](super::Scheduler), with its default,
//! its unit and why it has that value.

/// Settings of a [`Scheduler`](super::Scheduler).
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
	/// Chunks whose segment is due within this many ms and not on their way come from the node.
	/// Default 1500 ms: the node answers within a round trip plus one chunk's transfer, a few
	/// hundred ms on a phone link, with room for a second try.
	pub urgent_window_ms: u64,
	/// A peer request must deliver at least this long before the chunk's deadline; otherwise it
	/// times out then and the chunk goes to the node. Default 800 ms (node round trip and
	/// transfer, with margin).
	pub node_margin_ms: u64,
	/// Segments due further ahead than this are not fetched yet. Default 12 s: every segment a
	/// live viewer a few segments behind the edge can know of.
	pub lookahead_ms: u64,
	/// Deadline of the first segment, counted from [`Scheduler::new`](super::Scheduler::new). Default 1000 ms: the
	/// first segment goes to the node at once (it is inside the urgent window), so startup is a
	/// round trip plus one segment's transfer.
	pub startup_ms: u64,
	/// Requests open to one peer. Default 2: keeps the peer's queue short (so its own
	/// earliest-deadline-first order decides) while hiding one round trip.
	pub max_inflight_per_peer: usize,
	/// Requests open to peers in total. Default 16.
	pub max_inflight_peers: usize,
	/// Requests open to the node. Default 16 (a whole 2 s segment of 16 KiB chunks at 500 kbit/s).
	pub max_inflight_node: usize,
	/// Shortest peer request timeout. Default 600 ms: a round trip plus a 16 KiB chunk at a
	/// busy neighbour's share of its upload cap (with 300 ms and a multiplier of 3, 17 % of
	/// peer requests timed out in the simulator, against 12 %; a timed-out request is often
	/// served anyway, which wastes upload).
	pub min_timeout_ms: u64,
	/// Longest request timeout (also the node's). Default 4000 ms.
	pub max_timeout_ms: u64,
	/// Timeout as a multiple of the expected transfer time. Default 4.
	pub timeout_multiplier: u64,
	/// Throughput assumed for a neighbour not measured yet, bytes/s. Default 93 750
	/// (750 kbit/s: half the default upload cap, since a neighbour serves others too).
	pub initial_peer_bytes_per_sec: u64,
	/// Lowest throughput estimate, bytes/s: a slow peer is still tried for chunks due far
	/// ahead, which is how it can recover. Default 4 000.
	pub min_peer_bytes_per_sec: u64,
	/// A peer that refused a request is not asked again for this long. Default 250 ms.
	pub busy_backoff_ms: u64,
	/// Segments tracked (already played ones kept for neighbours included). Default 16.
	pub max_tracked_segments: usize,
	/// Played segments kept so neighbours behind us can still fetch them. Default 4.
	pub keep_played_segments: u64,
	/// Neighbours tracked; more are refused. Default 64.
	pub max_peers: usize,
	/// Banned ids remembered (oldest forgotten first). Default 1024.
	pub max_banned: usize,
}

impl Default for SchedulerConfig {
	fn default() -> Self {
		Self {
			urgent_window_ms: 1500,
			node_margin_ms: 800,
			lookahead_ms: 12_000,
			startup_ms: 1000,
			max_inflight_per_peer: 2,
			max_inflight_peers: 16,
			max_inflight_node: 16,
			min_timeout_ms: 600,
			max_timeout_ms: 4000,
			timeout_multiplier: 4,
			initial_peer_bytes_per_sec: 93_750,
			min_peer_bytes_per_sec: 4_000,
			busy_backoff_ms: 250,
			max_tracked_segments: 16,
			keep_played_segments: 4,
			max_peers: 64,
			max_banned: 1024,
		}
	}
}
