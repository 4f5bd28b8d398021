//! A small deterministic simulator for [`AbrController`]: one live viewer downloads the segments
//! of a rendition ladder over a link whose rate follows a [`LinkTrace`], and plays them out in
//! real time ([`Playout`], the P2P viewer's player model). It reports what a player would see:
//! startup, stalls and rebuffer ratio, time per rendition, switches and how long after a link
//! change the rendition followed ([`SimReport`]).
//!
//! The model: the origin completes segment `n` at `(n + 1) * segment`; the viewer joins at
//! `join_at`, starts `back` segments behind the newest complete one (as `Start::Live { back }`),
//! fetches one segment at a time, each as soon as the previous one arrived and it exists, over
//! the whole link (the transfer time integrates the trace), and decides the rendition of segment
//! `n + 1` when segment `n` arrived (when the viewer will tell the server, see `ABR.md`).
//! Segments are constant bitrate; there is no RTT. Pure computation on the [`Millis`] clock.

use super::abr::{AbrConfig, AbrController, AbrError, Download, Ladder, RenditionSwitch};
use crate::{
	clock::Millis,
	p2p::playout::{PlayStats, Playout},
};
use std::fmt;

/// Traces with more steps than this are summarised without a line per link change.
const MAX_CHANGES_SHOWN: usize = 8;

/// A link's rate over time: piecewise constant steps `(from, bit/s)`, the first from 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkTrace {
	steps: Vec<(Millis, u64)>,
}

impl LinkTrace {
	/// The trace of `steps` `(from, bit/s)`, sorted by time; a step at 0 of rate 0 is added
	/// if none starts at 0.
	pub fn new(mut steps: Vec<(Millis, u64)>) -> Self {
		steps.sort_by_key(|s| s.0);
		if steps.first().is_none_or(|s| s.0 > 0) {
			steps.insert(0, (0, 0));
		}
		Self { steps }
	}

	/// `rate` with the link down (rate 0) for `outage` every `period`, the first outage at
	/// `first`, until `until`.
	pub fn outages(
		rate: u64,
		first: Millis,
		period: Millis,
		outage: Millis,
		until: Millis,
	) -> Self {
		let mut steps = vec![(0, rate)];
		let mut at = first;
		while at < until && period > 0 {
			steps.push((at, 0));
			steps.push((at + outage, rate));
			at += period;
		}
		Self::new(steps)
	}

	/// `rate` times a factor drawn uniformly in `[low, 1]` for every `slot`, until `until`, then
	/// `rate`: the goodput of a lossy link, which swings with every loss burst. Deterministic for
	/// a `seed`.
	pub fn noisy(rate: u64, low: f64, slot: Millis, until: Millis, seed: u64) -> Self {
		let mut state = seed;
		let mut uniform = move || {
			// Knuth's MMIX linear congruential generator: deterministic and good enough here.
			state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
			(state >> 11) as f64 / (1u64 << 53) as f64
		};
		let mut steps = Vec::new();
		let mut at = 0;
		while at < until && slot > 0 {
			let factor = low + (1.0 - low) * uniform();
			steps.push((at, (rate as f64 * factor) as u64));
			at += slot;
		}
		steps.push((until, rate));
		Self::new(steps)
	}

	/// The steps.
	pub fn steps(&self) -> &[(Millis, u64)] {
		&self.steps
	}

	/// The rate at `at`, bit/s.
	pub fn rate_at(&self, at: Millis) -> u64 {
		self.steps.iter().rev().find(|s| s.0 <= at).map_or(0, |s| s.1)
	}

	/// The mean rate over `[from, to)`, bit/s.
	pub fn mean_rate(&self, from: Millis, to: Millis) -> u64 {
		if to <= from {
			return self.rate_at(from);
		}
		let mut bits = 0.0;
		for (i, &(start, rate)) in self.steps.iter().enumerate() {
			let end = self.steps.get(i + 1).map_or(to, |s| s.0);
			let (a, b) = (start.max(from), end.min(to));
			if b > a {
				bits += rate as f64 * (b - a) as f64;
			}
		}
		(bits / (to - from) as f64) as u64
	}

	/// When `bytes` sent from `start` have arrived; `None` if the link never carries them.
	pub fn transfer_end(&self, start: Millis, bytes: u64) -> Option<Millis> {
		let mut bits = bytes as f64 * 8.0;
		let mut at = start;
		let mut i = self.steps.iter().rposition(|s| s.0 <= start).unwrap_or(0);
		loop {
			let rate = self.steps[i].1 as f64;
			let rest_ms =
				if rate > 0.0 { (bits * 1000.0 / rate).ceil() as Millis } else { Millis::MAX };
			match self.steps.get(i + 1) {
				Some(&(next, _)) if at.saturating_add(rest_ms) > next => {
					bits -= rate * (next - at) as f64 / 1000.0;
					at = next;
					i += 1;
				}
				_ if rate > 0.0 => return Some(at + rest_ms),
				_ => return None,
			}
		}
	}
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
	/// Play time of a segment. Default 2 s.
	pub segment: Millis,
	/// The renditions.
	pub ladder: Ladder,
	/// The controller's settings.
	pub abr: AbrConfig,
	/// Segments behind the newest complete one to start at. Default 2 (`Start::Live`'s).
	pub back: u64,
	/// When the viewer joins. Default 7 s (segments 0 to 2 exist).
	pub join_at: Millis,
	/// When the simulation ends.
	pub until: Millis,
}

impl SimConfig {
	/// Defaults for `ladder`, run until `until`.
	pub fn new(ladder: Ladder, until: Millis) -> Self {
		Self { segment: 2000, ladder, abr: AbrConfig::default(), back: 2, join_at: 7000, until }
	}
}

/// One segment the viewer fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimSegment {
	/// Its sequence.
	pub sequence: u64,
	/// Its rendition.
	pub rendition: usize,
	/// When its rendition was decided.
	pub decided_at: Millis,
	/// When its transfer began.
	pub fetch_start: Millis,
	/// When it was complete.
	pub arrived: Millis,
}

/// What a simulation saw.
#[derive(Clone, Debug)]
pub struct SimReport {
	/// A name for the table.
	pub name: String,
	/// The ladder.
	pub ladder: Ladder,
	/// The link.
	pub trace: LinkTrace,
	/// Every segment fetched, in order.
	pub segments: Vec<SimSegment>,
	/// Every rendition change.
	pub switches: Vec<RenditionSwitch>,
	/// The player's counters at the end.
	pub play: PlayStats,
	/// Play time of a segment.
	pub segment: Millis,
	/// When the viewer joined.
	pub join_at: Millis,
}

/// How the rendition followed one change of the link rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkChange {
	/// When the link changed.
	pub at: Millis,
	/// Its new rate, bit/s.
	pub rate: u64,
	/// Down: segments decided after the change, before the first one whose rendition fits the
	/// new rate (0: the first decision after the change fits). Up: 0.
	pub late_segments: u64,
	/// Down: from the change to the first decision that fits. Up: from the change to the first
	/// decision of the highest rendition that fits. `None`: never within the run.
	pub delay: Option<Millis>,
}

impl SimReport {
	/// Sequences skipped and sequences fetched twice (both must be 0).
	pub fn gaps_and_duplicates(&self) -> (u64, u64) {
		let (mut gaps, mut dups) = (0, 0);
		for w in self.segments.windows(2) {
			let (a, b) = (w[0].sequence, w[1].sequence);
			if b <= a {
				dups += 1;
			} else {
				gaps += b - a - 1;
			}
		}
		(gaps, dups)
	}

	/// Stalled time over stalled plus played time.
	pub fn rebuffer_ratio(&self) -> f64 {
		let total = self.play.played_ms + self.play.stalled_ms;
		if total == 0 {
			return 0.0;
		}
		self.play.stalled_ms as f64 / total as f64
	}

	/// Share of the segments fetched per rendition (lowest first).
	pub fn time_share(&self) -> Vec<f64> {
		let mut counts = vec![0u64; self.ladder.len()];
		for s in &self.segments {
			counts[s.rendition] += 1;
		}
		let total = self.segments.len().max(1) as f64;
		counts.into_iter().map(|c| c as f64 / total).collect()
	}

	/// The highest rendition that fits `rate` (bitrate at most the rate), or the lowest.
	fn fitting(&self, rate: u64) -> usize {
		let r = self.ladder.renditions();
		r.iter().rposition(|x| x.bitrate <= rate).unwrap_or(0)
	}

	/// How the rendition followed each step of the trace after the join.
	pub fn link_changes(&self) -> Vec<LinkChange> {
		let steps = self.trace.steps();
		let mut out = Vec::new();
		for (i, &(at, rate)) in steps.iter().enumerate().skip(1) {
			if at <= self.join_at || rate == steps[i - 1].1 {
				continue;
			}
			let after = self.segments.iter().filter(|s| s.decided_at >= at);
			let change = if rate < steps[i - 1].1 {
				let fits = |s: &&SimSegment| self.ladder.get(s.rendition).bitrate <= rate;
				let late = after.clone().take_while(|s| !fits(s)).count() as u64;
				let delay = after.clone().find(fits).map(|s| s.decided_at - at);
				LinkChange { at, rate, late_segments: late, delay }
			} else {
				let best = self.fitting(rate);
				let delay = after.clone().find(|s| s.rendition >= best).map(|s| s.decided_at - at);
				LinkChange { at, rate, late_segments: 0, delay }
			};
			out.push(change);
		}
		out
	}
}

impl fmt::Display for SimReport {
	fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
		let (gaps, dups) = self.gaps_and_duplicates();
		let share: Vec<String> = self
			.ladder
			.renditions()
			.iter()
			.zip(self.time_share())
			.map(|(r, s)| format!("{} {:.0} %", r.name, s * 100.0))
			.collect();
		writeln!(
			f,
			"{:<26} startup {} ms, stalls {} ({} ms, rebuffer {:.2} %), segments {}, gaps {gaps}, \
			 duplicates {dups}, switches {}, time share: {}",
			self.name,
			self.play.startup_ms.unwrap_or(0),
			self.play.stalls,
			self.play.stalled_ms,
			self.rebuffer_ratio() * 100.0,
			self.segments.len(),
			self.switches.len(),
			share.join(" / "),
		)?;
		// A noisy trace changes every slot: per change lines would say nothing.
		if self.trace.steps().len() > MAX_CHANGES_SHOWN {
			return Ok(());
		}
		for c in self.link_changes() {
			let delay = c.delay.map_or("never".to_string(), |d| format!("{:.1} s", d as f64 / 1e3));
			writeln!(
				f,
				"{:<26}   link -> {} kbit/s at {:.0} s: switched after {delay}, {} segments late",
				"",
				c.rate / 1000,
				c.at as f64 / 1e3,
				c.late_segments,
			)?;
		}
		Ok(())
	}
}

/// Runs one viewer over `trace` as `config` says.
pub fn simulate(name: &str, config: &SimConfig, trace: &LinkTrace) -> Result<SimReport, AbrError> {
	let mut abr = AbrController::new(config.abr.clone(), config.ladder.clone())?;
	let seg = config.segment.max(1);
	let newest = (config.join_at / seg).saturating_sub(1);
	let start = newest.saturating_sub(config.back);
	let mut play = Playout::new(config.join_at, start, seg);
	let mut segments = Vec::new();
	let mut switches = Vec::new();
	let (mut now, mut sequence) = (config.join_at, start);
	while now < config.until {
		play.handle_timeout(now);
		abr.handle_buffer(now, play.buffered(now));
		let decision = abr.decide(now, sequence)?;
		switches.extend(std::iter::from_fn(|| abr.poll_switch()));
		let fetch_start = now.max((sequence + 1) * seg);
		let bytes = config.ladder.get(decision.rendition).bitrate * seg / 8000;
		let Some(arrived) = trace.transfer_end(fetch_start, bytes) else { break };
		abr.handle_download(
			arrived,
			Download {
				sequence,
				rendition: decision.rendition,
				bytes,
				transfer: arrived - fetch_start,
				media: seg,
			},
		);
		play.handle_complete(arrived, sequence, seg as u32);
		segments.push(SimSegment {
			sequence,
			rendition: decision.rendition,
			decided_at: now,
			fetch_start,
			arrived,
		});
		now = arrived;
		sequence += 1;
	}
	play.handle_timeout(now);
	Ok(SimReport {
		name: name.to_string(),
		ladder: config.ladder.clone(),
		trace: trace.clone(),
		segments,
		switches,
		play: play.stats(now),
		segment: seg,
		join_at: config.join_at,
	})
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::viewer::abr::{tests::ladder, AbrStrategy, Cause};

	const S: Millis = 1000;

	/// The default controller, the throughput rule alone, and the top rendition pinned (what a
	/// single-bitrate stream does), over `trace`; printed (`--nocapture`).
	fn run_all(name: &str, trace: &LinkTrace, until: Millis) -> SimReport {
		let config = SimConfig::new(ladder(), until);
		let report = simulate(&format!("{name} (dynamic)"), &config, trace).unwrap();
		print!("{report}");
		let mut throughput = config.clone();
		throughput.abr.strategy = AbrStrategy::Throughput;
		print!("{}", simulate(&format!("{name} (throughput)"), &throughput, trace).unwrap());
		let mut pinned = config.clone();
		pinned.abr.pinned = Some("720p".into());
		print!("{}", simulate(&format!("{name} (720p pinned)"), &pinned, trace).unwrap());
		report
	}

	#[test]
	fn link_trace_integrates_the_rate() {
		let t = LinkTrace::new(vec![(0, 1_000_000), (1000, 0), (2000, 2_000_000)]);
		// 125 000 bytes = 1 Mbit: 1 s at 1 Mbit/s.
		assert_eq!(t.transfer_end(0, 125_000), Some(1000));
		// Half before the outage, half after it at 2 Mbit/s.
		assert_eq!(t.transfer_end(500, 125_000), Some(2250));
		assert_eq!(t.mean_rate(0, 4000), 1_250_000);
		assert_eq!(LinkTrace::new(vec![(0, 0)]).transfer_end(0, 1), None);
		let o = LinkTrace::outages(4_000_000, 10 * S, 30 * S, 3 * S, 100 * S);
		assert_eq!(
			(o.rate_at(9 * S), o.rate_at(11 * S), o.rate_at(13 * S)),
			(4_000_000, 0, 4_000_000)
		);
		assert_eq!(o.rate_at(41 * S), 0);
	}

	/// Issue 13's rate steps, 4000 -> 1500 -> 700 -> 4000 kbit/s, a minute each: no stall, no
	/// gap, no duplicate; down within 2 segments of each drop; back on top within 30 s.
	#[test]
	fn rate_steps_switch_down_fast_and_recover_without_stalls() {
		let trace = LinkTrace::new(vec![
			(0, 4_000_000),
			(60 * S, 1_500_000),
			(120 * S, 700_000),
			(180 * S, 4_000_000),
		]);
		let r = run_all("rate steps", &trace, 240 * S);
		assert_eq!(r.gaps_and_duplicates(), (0, 0));
		assert_eq!(r.play.stalls, 0, "{r}");
		let changes = r.link_changes();
		assert_eq!(changes.len(), 3);
		for down in &changes[..2] {
			assert!(down.late_segments <= 1, "{down:?}");
		}
		let up = changes[2];
		assert!(up.delay.is_some_and(|d| d <= 30 * S), "{up:?}");
		// On top for most of the first and the last minute.
		let top = r.segments.iter().filter(|s| s.rendition == 2).count();
		assert!(top >= 40, "{top} segments on top");
	}

	/// A lossy link's goodput, swinging between 10 % and 100 % of 3 Mbit/s every half second:
	/// no stall, and the renditions played fit the mean rate.
	#[test]
	fn noisy_link_plays_without_stalls_at_a_rendition_that_fits() {
		let until = 300 * S;
		let trace = LinkTrace::noisy(3_000_000, 0.1, 500, until, 13);
		let mean = trace.mean_rate(0, until);
		let r = run_all("noisy (mean 1.65 Mbit/s)", &trace, until);
		assert_eq!(r.gaps_and_duplicates(), (0, 0));
		assert_eq!(r.play.stalls, 0, "{r}");
		let fits: f64 = r
			.ladder
			.renditions()
			.iter()
			.zip(r.time_share())
			.filter(|(x, _)| x.bitrate <= mean)
			.map(|(_, s)| s)
			.sum();
		assert!(fits >= 0.9, "only {fits} of the time at renditions below {mean} bit/s");
	}

	/// A 4 Mbit/s link down for 3 s every 30 s: no gap or duplicate, and back on top between
	/// outages.
	#[test]
	fn outages_every_30_s_keep_the_sequence_whole() {
		let until = 300 * S;
		let trace = LinkTrace::outages(4_000_000, 20 * S, 30 * S, 3 * S, until);
		let r = run_all("3 s outage every 30 s", &trace, until);
		assert_eq!(r.gaps_and_duplicates(), (0, 0));
		assert_eq!(r.play.stalls, 0, "{r}");
		assert!(r.time_share()[2] >= 0.5, "{r}");
	}

	/// A viewer 30 s behind live (a replay) holds more than BOLA's stable buffer, so the
	/// default (dynamic) strategy hands over to BOLA, and still plays the rate steps through.
	#[test]
	fn replay_far_behind_live_uses_bola_through_rate_steps() {
		let trace = LinkTrace::new(vec![
			(0, 4_000_000),
			(90 * S, 1_500_000),
			(150 * S, 700_000),
			(210 * S, 4_000_000),
		]);
		let mut config = SimConfig::new(ladder(), 300 * S);
		config.join_at = 40 * S;
		config.back = 15;
		let r = simulate("replay 30 s behind (dynamic)", &config, &trace).unwrap();
		print!("{r}");
		assert_eq!(r.gaps_and_duplicates(), (0, 0));
		assert_eq!(r.play.stalls, 0, "{r}");
		assert!(r.switches.iter().any(|s| s.cause == Cause::Bola), "{:?}", r.switches);
		config.abr.strategy = AbrStrategy::Throughput;
		print!("{}", simulate("replay 30 s behind (throughput)", &config, &trace).unwrap());
	}
}
