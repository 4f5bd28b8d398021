//! `dsp watch --stats-json FILE`: a machine-readable summary of what the viewer's player saw,
//! rewritten every second (write + rename, so a reader never sees half a file) and once more
//! when the viewer stops. The network lab (`scripts/netlab.sh`) reads it.
//!
//! Direct mode feeds every delivered segment into the same player model the P2P viewer and the
//! simulator use ([`Playout`]: back-to-back real-time playout from the first segment, a stall
//! whenever the next one is not there when the previous one ends), so stalls, rebuffer ratio and
//! startup are counted where a player sees them. Each segment's arrival (Unix ms) is listed so
//! that the lab can compute the end-to-end latency against the publisher's cut times.

use dsp_streaming::{
	clock::{Clock, Millis},
	net::{p2p_watch::P2pWatchStats, watch::WatchEvent},
	p2p::playout::{PlayEvent, Playout},
	viewer::{Switch, Transport, ViewerStats},
};
use serde_json::{json, Value};
use std::{
	path::{Path, PathBuf},
	time::{SystemTime, UNIX_EPOCH},
};
use tracing::warn;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
	SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Writes `value` to `path` through a temporary file and a rename; a failure is logged, never
/// fatal (the viewer keeps playing).
fn write_atomic(path: &Path, value: &Value) {
	let tmp = path.with_extension("json.tmp");
	let text = value.to_string();
	if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
		warn!(path = %path.display(), error = %e, "could not write --stats-json");
	}
}

/// What a direct viewer's player saw. Memory: one small entry per delivered segment and per
/// switch (about 40 bytes each: a day of 2 s segments is under 2 MiB).
pub struct DirectStats {
	path: PathBuf,
	clock: Clock,
	started_unix_ms: u64,
	playout: Option<Playout>,
	/// `(sequence, arrival Unix ms, transport)` per delivered segment.
	delivered: Vec<(u64, u64, Option<Transport>)>,
	last_seq: Option<u64>,
	/// Segments delivered with sequences skipped before them.
	gaps: u64,
	/// Sequence numbers skipped in total.
	skipped: u64,
	/// Segments delivered at or below a sequence already delivered.
	duplicates: u64,
	switches: Vec<(u64, Switch)>,
	/// `(start Unix ms, length ms)` of every stall that ended.
	stall_log: Vec<(u64, u64)>,
	transport: Option<Transport>,
	ended: bool,
}

impl DirectStats {
	/// A summary written to `path`; the viewer joined now.
	pub fn new(path: PathBuf) -> Self {
		Self {
			path,
			clock: Clock::new(),
			started_unix_ms: unix_ms(),
			playout: None,
			delivered: Vec::new(),
			last_seq: None,
			gaps: 0,
			skipped: 0,
			duplicates: 0,
			switches: Vec::new(),
			stall_log: Vec::new(),
			transport: None,
			ended: false,
		}
	}

	/// One event of the viewer.
	pub fn handle(&mut self, event: &WatchEvent) {
		let now = self.clock.now();
		match event {
			WatchEvent::Delivered { sequence, transport, duration_ms, .. } => {
				let seq = *sequence;
				self.delivered.push((seq, unix_ms(), *transport));
				self.transport = *transport;
				match self.last_seq {
					Some(last) if seq <= last => self.duplicates += 1,
					Some(last) if seq > last + 1 => {
						self.gaps += 1;
						self.skipped += seq - last - 1;
					}
					_ => {}
				}
				self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
				// The player starts with the first segment it gets; startup counts from the join.
				let playout = self.playout.get_or_insert_with(|| Playout::new(0, seq, 0));
				playout.handle_complete(now, seq, *duration_ms);
				self.drain_play_events();
			}
			WatchEvent::Switched(s) => {
				self.switches.push((unix_ms(), s.clone()));
				self.transport = Some(s.to);
			}
			WatchEvent::ServerChanged(_) => {}
			WatchEvent::Ended => self.ended = true,
		}
	}

	/// Logs the stalls the player model reports as they end.
	fn drain_play_events(&mut self) {
		let Some(p) = &mut self.playout else { return };
		while let Some(e) = p.poll_event() {
			if let PlayEvent::StallEnded { stalled_ms, .. } = e {
				self.stall_log.push((unix_ms().saturating_sub(stalled_ms), stalled_ms));
			}
		}
	}

	/// Rewrites the file; `final_stats` is the viewer's own count once it stopped.
	pub fn write(&mut self, final_stats: Option<&ViewerStats>) {
		let now: Millis = self.clock.now();
		if let Some(p) = &mut self.playout {
			p.handle_timeout(now);
		}
		self.drain_play_events();
		let play = self.playout.as_ref().map(|p| p.stats(now)).unwrap_or_default();
		let watched = play.played_ms + play.stalled_ms;
		let name = |t: &Option<Transport>| t.map(|t| t.to_string());
		let mut v = json!({
			"mode": "direct",
			"started_unix_ms": self.started_unix_ms,
			"written_unix_ms": unix_ms(),
			"startup_ms": play.startup_ms,
			"segments": self.delivered.len(),
			"first_seq": self.delivered.first().map(|d| d.0),
			"last_seq": self.last_seq,
			"played_ms": play.played_ms,
			"stalls": play.stalls,
			"stalled_ms": play.stalled_ms,
			"rebuffer_ratio": if watched > 0 { play.stalled_ms as f64 / watched as f64 } else { 0.0 },
			"gaps": self.gaps,
			"skipped": self.skipped,
			"duplicates": self.duplicates,
			"transport": name(&self.transport),
			"switches": self.switches.iter().map(|(at, s)| json!({
				"unix_ms": at,
				"from": s.from.to_string(),
				"to": s.to.to_string(),
				"reason": format!("{:?}", s.reason),
			})).collect::<Vec<_>>(),
			"stall_log": self.stall_log.iter().map(|(at, ms)| json!([at, ms])).collect::<Vec<_>>(),
			"delivered": self.delivered.iter().map(|(seq, at, t)| json!([seq, at, name(t)])).collect::<Vec<_>>(),
			"ended": self.ended,
		});
		if let Some(s) = final_stats {
			v["viewer"] = json!({
				"delivered": s.buffer.delivered,
				"skipped": s.buffer.skipped,
				"duplicates_dropped": s.buffer.duplicates,
				"server_changes": s.server_changes,
			});
		}
		write_atomic(&self.path, &v);
	}
}

/// `--stats-json` of a P2P viewer: its own player model's counters and where the bytes came
/// from.
pub fn write_p2p(path: &Path, started_unix_ms: u64, s: &P2pWatchStats) {
	let watched = s.play.played_ms + s.play.stalled_ms;
	let peers = s.scheduler.bytes_from_peers;
	let node = s.scheduler.bytes_from_node;
	let v = json!({
		"mode": "p2p",
		"started_unix_ms": started_unix_ms,
		"written_unix_ms": unix_ms(),
		"startup_ms": s.play.startup_ms,
		"segments": s.buffer.delivered,
		"played_ms": s.play.played_ms,
		"stalls": s.play.stalls,
		"stalled_ms": s.play.stalled_ms,
		"rebuffer_ratio": if watched > 0 { s.play.stalled_ms as f64 / watched as f64 } else { 0.0 },
		"gaps": s.buffer.skipped,
		"skipped": s.buffer.skipped,
		"duplicates_dropped": s.buffer.duplicates,
		"bytes_from_peers": peers,
		"bytes_from_node": node,
		"p2p_share": if peers + node > 0 { peers as f64 / (peers + node) as f64 } else { 0.0 },
		"neighbours": s.neighbours,
		"ended": s.ended,
	});
	write_atomic(path, &v);
}

/// Milliseconds since the Unix epoch, for the P2P summary's start.
pub fn now_unix_ms() -> u64 {
	unix_ms()
}

#[cfg(test)]
mod tests {
	use super::*;
	use dsp_streaming::viewer::SwitchReason;

	fn delivered(sequence: u64, transport: Transport) -> WatchEvent {
		WatchEvent::Delivered {
			sequence,
			discontinuity: false,
			data: Vec::new(),
			duration_ms: 2000,
			transport: Some(transport),
		}
	}

	/// The summary counts what the player got: a skipped sequence is a gap, a sequence at or
	/// below one already delivered a duplicate; switches and arrivals are listed.
	#[test]
	fn the_summary_counts_gaps_duplicates_and_switches() {
		let dir = tempfile::tempdir().unwrap();
		let path = dir.path().join("stats.json");
		let mut s = DirectStats::new(path.clone());
		s.write(None);
		let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
		assert_eq!(v["segments"], 0);
		assert!(v["startup_ms"].is_null(), "no startup before the first segment");

		for seq in [5, 6] {
			s.handle(&delivered(seq, Transport::Quic));
		}
		s.handle(&WatchEvent::Switched(Switch {
			from: Transport::Quic,
			to: Transport::Tcp,
			reason: SwitchReason::Stalled,
		}));
		for seq in [9, 9, 10] {
			s.handle(&delivered(seq, Transport::Tcp));
		}
		s.write(None);
		let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
		assert_eq!(v["segments"], 5);
		assert_eq!((v["first_seq"].as_u64(), v["last_seq"].as_u64()), (Some(5), Some(10)));
		assert_eq!((v["gaps"].as_u64(), v["skipped"].as_u64()), (Some(1), Some(2)), "7 and 8");
		assert_eq!(v["duplicates"], 1);
		assert_eq!(v["transport"], "tcp");
		assert_eq!(v["switches"][0]["to"], "tcp");
		assert_eq!(v["delivered"][2][0], 9);
		assert_eq!(v["delivered"][2][2], "tcp");
		assert!(v["startup_ms"].is_u64(), "started with the first segment");
		assert!(v["viewer"].is_null(), "the viewer's own counts only once it stopped");
	}
}
