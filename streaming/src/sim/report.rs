//! [`RunReport`]: the figures of one simulation run, and how they print.

use super::{SimConfig, Tally};
use crate::server::AdmissionStats;
use std::{fmt, time::Duration};

/// Figures of one run. Byte figures count the measurement window (after the ramp); playback
/// figures count every session, ramp included.
#[derive(Clone, Debug)]
pub struct RunReport {
	/// Viewers watching at once.
	pub viewers: u32,
	/// `r`.
	pub rate: f64,
	/// `max_streams`.
	pub max_streams: u32,
	/// `floor(max_streams * (1 - r))`.
	pub p2p_threshold: u32,
	/// Direct sessions open at the end.
	pub direct_end: u32,
	/// Most direct sessions open at once.
	pub direct_max: u32,
	/// P2P sessions open at the end.
	pub p2p_end: u32,
	/// Viewers refused (r = 0 at `max_streams`, or the P2P session cap).
	pub refused: u64,
	/// New media bytes received by viewers.
	pub delivered_bytes: u64,
	/// Of those, from other viewers.
	pub p2p_bytes: u64,
	/// Everything the node sent: media to direct viewers, seeding pushes, urgent chunks, headers.
	pub node_egress_bytes: u64,
	/// Of that, headers to P2P viewers.
	pub header_bytes: u64,
	/// Length of the measurement window, ms.
	pub window_ms: u64,
	/// Stalled time over played plus stalled time.
	pub rebuffer_ratio: f64,
	/// Stalls begun.
	pub stalls: u64,
	/// Median startup (join to first frame), ms.
	pub startup_p50_ms: u64,
	/// 95th percentile startup, ms.
	pub startup_p95_ms: u64,
	/// Longest startup, ms.
	pub startup_max_ms: u64,
	/// Sessions that started playing.
	pub started: u64,
	/// Mode switches of a running session (admission fixes the mode for the session, so 0).
	pub switches: u64,
	/// Requests P2P viewers sent to the node (urgent window), in the window.
	pub urgent_node_requests: u64,
	/// Requests sent to peers, in the window.
	pub peer_requests: u64,
	/// Chunks pushed to seeds.
	pub seeded_chunks: u64,
	/// Peer requests that timed out.
	pub peer_timeouts: u64,
	/// Peers banned (by any viewer).
	pub bans: u64,
	/// Invariant: requests sent to a peer the requester had banned (must be 0).
	pub requests_to_banned: u64,
	/// Invariant: segments played without every chunk (must be 0).
	pub incomplete_played: u64,
	/// Segments played to their end.
	pub segments_played: u64,
	/// Sessions begun and ended.
	pub joins: u64,
	/// Sessions ended by churn.
	pub leaves: u64,
	/// Duplicate chunk bytes received.
	pub duplicate_bytes: u64,
	/// Events processed.
	pub events: u64,
	/// Wall time of the run.
	pub wall: Duration,
}

impl RunReport {
	/// Share of delivered bytes that came from peers.
	pub fn p2p_share(&self) -> f64 {
		ratio(self.p2p_bytes, self.delivered_bytes)
	}

	/// Node egress over delivered bytes.
	pub fn node_share(&self) -> f64 {
		ratio(self.node_egress_bytes, self.delivered_bytes)
	}

	/// Average node egress over the window, Mbit/s.
	pub fn node_mbps(&self) -> f64 {
		self.node_egress_bytes as f64 * 8.0 / 1000.0 / self.window_ms.max(1) as f64
	}
}

fn ratio(a: u64, b: u64) -> f64 {
	if b == 0 {
		0.0
	} else {
		a as f64 / b as f64
	}
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
	if sorted.is_empty() {
		return 0;
	}
	let i = ((sorted.len() - 1) as f64 * p).round() as usize;
	sorted[i]
}

pub(super) fn build(
	cfg: &SimConfig,
	t: &Tally,
	adm: &AdmissionStats,
	events: u64,
	wall: Duration,
	window_ms: u64,
) -> RunReport {
	let mut startups = t.startups.clone();
	startups.sort_unstable();
	let threshold = dsp_primitives::CapacitySettings {
		max_streams: cfg.max_streams,
		streaming_rate: dsp_primitives::Perbill::from_parts(
			(cfg.rate.clamp(0.0, 1.0) * 1e9).round() as u32,
		),
	}
	.p2p_threshold();
	RunReport {
		viewers: cfg.viewers,
		rate: cfg.rate,
		max_streams: cfg.max_streams,
		p2p_threshold: threshold,
		direct_end: adm.direct,
		direct_max: t.direct_max,
		p2p_end: adm.p2p,
		refused: adm.refused,
		delivered_bytes: t.delivered_bytes,
		p2p_bytes: t.from_peer_bytes,
		node_egress_bytes: t.node_egress_bytes,
		header_bytes: t.header_bytes,
		window_ms,
		rebuffer_ratio: ratio(t.stalled_ms, t.played_ms + t.stalled_ms),
		stalls: t.stalls,
		startup_p50_ms: percentile(&startups, 0.5),
		startup_p95_ms: percentile(&startups, 0.95),
		startup_max_ms: startups.last().copied().unwrap_or(0),
		started: startups.len() as u64,
		switches: 0,
		urgent_node_requests: t.urgent_node_requests,
		peer_requests: t.peer_requests,
		seeded_chunks: t.seeded_chunks,
		peer_timeouts: t.peer_timeouts,
		bans: t.bans,
		requests_to_banned: t.requests_to_banned,
		incomplete_played: t.incomplete_played,
		segments_played: t.segments_played,
		joins: t.joins,
		leaves: t.leaves,
		duplicate_bytes: t.duplicate_bytes,
		events,
		wall,
	}
}

impl fmt::Display for RunReport {
	fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
		writeln!(
			f,
			"r = {:.2}: {} viewers, max_streams {}, threshold {}: direct {} at the end (max {}), p2p {}, refused {}",
			self.rate, self.viewers, self.max_streams, self.p2p_threshold, self.direct_end, self.direct_max, self.p2p_end, self.refused
		)?;
		writeln!(
			f,
			"  delivered {:.1} MB in {:.0} s after the ramp: P2P share {:.2} %, node egress {:.1} MB = {:.2} % of delivered ({:.1} Mbit/s, headers {:.2} MB)",
			self.delivered_bytes as f64 / 1e6,
			self.window_ms as f64 / 1000.0,
			100.0 * self.p2p_share(),
			self.node_egress_bytes as f64 / 1e6,
			100.0 * self.node_share(),
			self.node_mbps(),
			self.header_bytes as f64 / 1e6,
		)?;
		writeln!(
			f,
			"  rebuffer ratio {:.4} % ({} stalls, {} segments played), startup p50 {} ms, p95 {} ms, max {} ms ({} sessions started), switches {}",
			100.0 * self.rebuffer_ratio,
			self.stalls,
			self.segments_played,
			self.startup_p50_ms,
			self.startup_p95_ms,
			self.startup_max_ms,
			self.started,
			self.switches
		)?;
		writeln!(
			f,
			"  requests: {} urgent to the node, {} to peers ({} timed out); {} chunks seeded; duplicates {:.2} MB; joins {}, leaves {}; bans {}",
			self.urgent_node_requests,
			self.peer_requests,
			self.peer_timeouts,
			self.seeded_chunks,
			self.duplicate_bytes as f64 / 1e6,
			self.joins,
			self.leaves,
			self.bans
		)?;
		write!(
			f,
			"  checks: requests to banned peers {}, segments played incomplete {}; {} events in {:.1} s wall",
			self.requests_to_banned,
			self.incomplete_played,
			self.events,
			self.wall.as_secs_f64()
		)
	}
}
