//! Adaptive bitrate: which rendition of a stream's ladder the viewer fetches for each segment.
//! Sans-IO: it reads no clock and owns no socket; the viewer (or the simulator,
//! [`super::abr_sim`]) feeds it downloads and the playout buffer and asks it per sequence number.
//!
//! # The rules
//!
//! - **Throughput** (dash.js `ThroughputRule`, hls.js `EwmaBandWidthEstimator`): the throughput
//!   estimate is the minimum of a fast and a slow exponentially weighted moving average of the
//!   per-segment throughput, so that it falls fast and rises slowly ([`ThroughputEstimator`]).
//!   The rule takes the highest rendition whose bitrate is at most `safety_factor` (0.9, dash.js
//!   `bandwidthSafetyFactor`) times the estimate, or `up_factor` (0.7, hls.js
//!   `abrBandWidthUpFactor`) times the estimate for a rendition above the current one. A buffer
//!   guard (hls.js `maxStarvationDelay`, dash.js `InsufficientBufferRule`) then steps down while
//!   the predicted fetch time would leave less than `buffer_reserve` in the buffer; with an
//!   empty buffer (start, stall) that is the lowest rendition.
//! - **BOLA** (Spiteri, Urgaonkar, Sitaraman, "BOLA: Near-Optimal Bitrate Adaptation for Online
//!   Videos", INFOCOM 2016; as in dash.js `BolaRule`): utility `ln(bitrate)`, parameters `Vp`
//!   and `gp` chosen so that the lowest rendition wins at `bola_min_buffer` and the highest at the
//!   BOLA buffer target; the rendition maximising `(Vp (u + gp) - buffer) / bitrate` is taken,
//!   and (BOLA-O) an up-switch is capped at what the throughput allows, but not below the current
//!   rendition.
//! - **Dynamic** (dash.js `DYNAMIC`, the default): BOLA once the buffer reaches
//!   `bola_stable_buffer`, the throughput rule again when it falls below half of it. A live
//!   viewer a few segments behind the live edge never holds that much, so in live it is the
//!   throughput rule; a viewer far behind live (a replay) gets BOLA's stability.
//!
//! Samples are weighted by `max(transfer time, play time)`, not by transfer time alone as hls.js
//! does: at the live edge a fast link fetches a 2 s segment in a fraction of a second, and
//! weighting by transfer time would make the estimate rise several times slower on a good link
//! than it falls on a bad one (minutes to get back to the top after a dip); a slow transfer still
//! weighs more than its play time, so a drop is seen at once.
//!
//! # Driving an [`AbrController`]
//!
//! 1. [`AbrController::new`] with the stream's [`Ladder`].
//! 2. After each complete segment, [`AbrController::handle_download`].
//! 3. Before each decision, [`AbrController::handle_buffer`] with the playout buffer (media time
//!    ready to play), and [`AbrController::handle_link_change`] when the path changed (another
//!    transport or server).
//! 4. [`AbrController::decide`] for the next sequence to fetch, in ascending order. A decision
//!    is per sequence number and never changes: asking again for a sequence gives the same
//!    rendition, so a reconnect that asks again cannot fetch one sequence in two renditions.
//!    Renditions therefore change only at segment boundaries.
//! 5. Drain [`AbrController::poll_switch`] for logs.
//!
//! Memory: at most [`MAX_RENDITIONS`] renditions and [`DECISIONS_KEPT`] decisions.

use crate::clock::{millis, Millis};
use std::{collections::VecDeque, time::Duration};

/// Most renditions in a ladder: real ladders have 3 to 6; bounds the per-decision work.
pub const MAX_RENDITIONS: usize = 8;

/// Decisions remembered for asking again: more than the viewer's `max_pending` (8) segments plus
/// the segments in flight on two connections during a switch.
pub const DECISIONS_KEPT: usize = 32;

/// One rendition of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendition {
	/// Its name (`360p`, `720p`...), what `--rendition NAME` names.
	pub name: String,
	/// Its bitrate, bit/s (what it costs on the link, container included).
	pub bitrate: u64,
}

impl Rendition {
	/// A rendition `name` of `bitrate` bit/s.
	pub fn new(name: impl Into<String>, bitrate: u64) -> Self {
		Self { name: name.into(), bitrate }
	}
}

/// A stream's renditions, lowest bitrate first; a rendition is known by its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ladder {
	renditions: Vec<Rendition>,
}

impl Ladder {
	/// The ladder of `renditions` (in any order), checked: at least one, at most
	/// [`MAX_RENDITIONS`], names and bitrates unique, no bitrate 0.
	pub fn new(mut renditions: Vec<Rendition>) -> Result<Self, AbrError> {
		if renditions.is_empty() {
			return Err(AbrError::EmptyLadder);
		}
		if renditions.len() > MAX_RENDITIONS {
			return Err(AbrError::TooManyRenditions {
				count: renditions.len(),
				max: MAX_RENDITIONS,
			});
		}
		if let Some(r) = renditions.iter().find(|r| r.bitrate == 0) {
			return Err(AbrError::ZeroBitrate(r.name.clone()));
		}
		renditions.sort_by_key(|r| r.bitrate);
		for (i, r) in renditions.iter().enumerate() {
			if renditions[..i].iter().any(|o| o.name == r.name) {
				return Err(AbrError::DuplicateName(r.name.clone()));
			}
			if i > 0 && renditions[i - 1].bitrate == r.bitrate {
				return Err(AbrError::DuplicateBitrate(
					renditions[i - 1].name.clone(),
					r.name.clone(),
				));
			}
		}
		Ok(Self { renditions })
	}

	/// The renditions, lowest bitrate first.
	pub fn renditions(&self) -> &[Rendition] {
		&self.renditions
	}

	/// How many renditions (at least one).
	pub fn len(&self) -> usize {
		self.renditions.len()
	}

	/// Always `false`: a ladder has at least one rendition.
	pub fn is_empty(&self) -> bool {
		self.renditions.is_empty()
	}

	/// The index of the highest rendition.
	pub fn top(&self) -> usize {
		self.renditions.len() - 1
	}

	/// The index of the rendition called `name`.
	pub fn position(&self, name: &str) -> Option<usize> {
		self.renditions.iter().position(|r| r.name == name)
	}

	/// Rendition `index`, clamped to the top one.
	pub fn get(&self, index: usize) -> &Rendition {
		&self.renditions[index.min(self.top())]
	}

	fn bitrate(&self, index: usize) -> f64 {
		self.get(index).bitrate as f64
	}
}

/// Why a ladder, a pin or a decision was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AbrError {
	/// A ladder needs at least one rendition.
	#[error("the ladder has no rendition")]
	EmptyLadder,
	/// More renditions than [`MAX_RENDITIONS`].
	#[error("the ladder has {count} renditions, at most {max} are allowed")]
	TooManyRenditions {
		/// Renditions given.
		count: usize,
		/// The limit.
		max: usize,
	},
	/// Two renditions share a name.
	#[error("rendition {0:?} appears twice")]
	DuplicateName(String),
	/// Two renditions share a bitrate, so neither is better than the other.
	#[error("renditions {0:?} and {1:?} have the same bitrate")]
	DuplicateBitrate(String, String),
	/// A rendition of bitrate 0.
	#[error("rendition {0:?} has bitrate 0")]
	ZeroBitrate(String),
	/// No rendition of that name in the ladder.
	#[error("no rendition named {0:?}")]
	UnknownRendition(String),
	/// The sequence was decided so long ago that the decision is forgotten: fetching it now
	/// would be fetching something already played. Nothing was decided.
	#[error("sequence {sequence} is older than the oldest decision kept ({oldest})")]
	TooOld {
		/// Sequence asked for.
		sequence: u64,
		/// Oldest sequence still answered.
		oldest: u64,
	},
}

/// Which rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbrStrategy {
	/// The throughput rule with its buffer guard, always.
	Throughput,
	/// BOLA, always.
	Bola,
	/// BOLA with a full buffer, the throughput rule otherwise (dash.js `DYNAMIC`).
	Dynamic,
}

/// Settings of an [`AbrController`].
#[derive(Clone, Debug)]
pub struct AbrConfig {
	/// Which rule decides. Default `Dynamic`.
	pub strategy: AbrStrategy,
	/// Half-life of the fast throughput average, in sample weight (seconds). Default 2 s
	/// (Shaka Player's; hls.js uses 3 s): a drop shows within one slow segment.
	pub fast_half_life: Duration,
	/// Half-life of the slow throughput average. Default 5 s (Shaka Player's; hls.js 9 s): with
	/// 2 s segments a recovered link is trusted within about 15 s, inside the 30 s goal of
	/// issue 13, while one fast segment after a dip is not.
	pub slow_half_life: Duration,
	/// Throughput assumed before the first sample, bit/s. Default 500 kbit/s (hls.js
	/// `abrEwmaDefaultEstimate`); the empty buffer at start picks the lowest rendition anyway.
	pub default_estimate: u64,
	/// Share of the estimate a rendition at or below the current one may use. Default 0.9
	/// (dash.js `bandwidthSafetyFactor`).
	pub safety_factor: f64,
	/// Share of the estimate a rendition above the current one may use. Default 0.7 (hls.js
	/// `abrBandWidthUpFactor`): going up needs clearly more than enough.
	pub up_factor: f64,
	/// Buffer that must be left when the next segment has been fetched at the estimated
	/// throughput; the throughput rule steps down until it is. Default 1 s (half a typical
	/// segment: room for the estimate being 30 % too high on a 2 s segment).
	pub buffer_reserve: Duration,
	/// Shortest transfer time a sample is computed with. Default 50 ms (hls.js `minDelayMs`): a
	/// segment that was already buffered by the transport would otherwise claim gigabits.
	pub min_transfer: Duration,
	/// Play time of a segment assumed before the first download. Default 2 s (the publisher's
	/// default segment).
	pub segment_hint: Duration,
	/// BOLA's minimum buffer: below it BOLA takes the lowest rendition. Default 10 s (dash.js
	/// `MINIMUM_BUFFER_S`).
	pub bola_min_buffer: Duration,
	/// BOLA's buffer target grows by this per rendition. Default 2 s (dash.js
	/// `MINIMUM_BUFFER_PER_BITRATE_LEVEL_S`).
	pub bola_buffer_per_level: Duration,
	/// BOLA's buffer target is at least this; `Dynamic` moves to BOLA at this buffer and back
	/// below half of it. Default 12 s (dash.js `stableBufferTime`).
	pub bola_stable_buffer: Duration,
	/// Always this rendition (`--rendition NAME`); `None` chooses. Default `None`.
	pub pinned: Option<String>,
}

impl Default for AbrConfig {
	fn default() -> Self {
		Self {
			strategy: AbrStrategy::Dynamic,
			fast_half_life: Duration::from_secs(2),
			slow_half_life: Duration::from_secs(5),
			default_estimate: 500_000,
			safety_factor: 0.9,
			up_factor: 0.7,
			buffer_reserve: Duration::from_secs(1),
			min_transfer: Duration::from_millis(50),
			segment_hint: Duration::from_secs(2),
			bola_min_buffer: Duration::from_secs(10),
			bola_buffer_per_level: Duration::from_secs(2),
			bola_stable_buffer: Duration::from_secs(12),
			pinned: None,
		}
	}
}

/// An exponentially weighted moving average with a half-life in sample weight, corrected for
/// its zero start (as hls.js and Shaka Player do).
#[derive(Clone, Debug)]
struct Ewma {
	half_life: f64,
	estimate: f64,
	total_weight: f64,
}

impl Ewma {
	fn new(half_life: Duration) -> Self {
		Self { half_life: half_life.as_secs_f64().max(1e-3), estimate: 0.0, total_weight: 0.0 }
	}

	fn sample(&mut self, weight: f64, value: f64) {
		let alpha = 0.5f64.powf(weight / self.half_life);
		self.estimate = value * (1.0 - alpha) + alpha * self.estimate;
		self.total_weight += weight;
	}

	fn get(&self) -> Option<f64> {
		let zero_factor = 1.0 - 0.5f64.powf(self.total_weight / self.half_life);
		(zero_factor > 0.0).then(|| self.estimate / zero_factor)
	}
}

/// The throughput estimate: the minimum of a fast and a slow moving average of per-segment
/// throughput, each sample weighted by `max(transfer time, play time)` (see the module docs).
#[derive(Clone, Debug)]
pub struct ThroughputEstimator {
	fast: Ewma,
	slow: Ewma,
	/// What [`Self::estimate`] says before the first sample.
	fallback: f64,
	min_transfer: Millis,
	samples: u64,
}

impl ThroughputEstimator {
	/// An estimator with the half-lives of `config`, saying `default_estimate` until sampled.
	pub fn new(config: &AbrConfig) -> Self {
		Self {
			fast: Ewma::new(config.fast_half_life),
			slow: Ewma::new(config.slow_half_life),
			fallback: config.default_estimate as f64,
			min_transfer: millis(config.min_transfer).max(1),
			samples: 0,
		}
	}

	/// `bytes` took `transfer` to arrive and carry `media` of play time.
	pub fn sample(&mut self, bytes: u64, transfer: Millis, media: Millis) {
		let transfer = transfer.max(self.min_transfer);
		let bits_per_s = bytes as f64 * 8.0 * 1000.0 / transfer as f64;
		let weight = transfer.max(media) as f64 / 1000.0;
		self.fast.sample(weight, bits_per_s);
		self.slow.sample(weight, bits_per_s);
		self.samples += 1;
	}

	/// The estimate, bit/s.
	pub fn estimate(&self) -> u64 {
		match (self.fast.get(), self.slow.get()) {
			(Some(f), Some(s)) => f.min(s).round() as u64,
			_ => self.fallback.round() as u64,
		}
	}

	/// Samples taken since the start or the last [`Self::restart`].
	pub fn samples(&self) -> u64 {
		self.samples
	}

	/// The path changed: the estimate stays as it is until the next sample, which then replaces
	/// the whole history (samples of the old path say nothing about the new one).
	pub fn restart(&mut self) {
		self.fallback = self.estimate() as f64;
		self.fast = Ewma::new(Duration::from_secs_f64(self.fast.half_life));
		self.slow = Ewma::new(Duration::from_secs_f64(self.slow.half_life));
		self.samples = 0;
	}
}

/// What made a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
	/// The rendition is pinned.
	Pinned,
	/// The throughput rule.
	Throughput,
	/// The throughput rule's buffer guard stepped down.
	Buffer,
	/// BOLA.
	Bola,
}

/// The rendition of one sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
	/// The sequence.
	pub sequence: u64,
	/// Index in the [`Ladder`].
	pub rendition: usize,
	/// Why.
	pub cause: Cause,
}

/// The rendition changed from one decided sequence to the next, for logs and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenditionSwitch {
	/// When it was decided.
	pub at: Millis,
	/// First sequence of the new rendition.
	pub sequence: u64,
	/// Rendition before.
	pub from: usize,
	/// Rendition after.
	pub to: usize,
	/// Why.
	pub cause: Cause,
	/// The throughput estimate then, bit/s.
	pub estimate: u64,
	/// The playout buffer then.
	pub buffer: Millis,
}

/// BOLA's parameters for a ladder (dash.js `calculateBolaParameters`).
#[derive(Clone, Debug)]
struct Bola {
	/// `ln(bitrate / lowest bitrate) + 1`, per rendition.
	utilities: Vec<f64>,
	vp: f64,
	gp: f64,
}

impl Bola {
	/// `None` for a single rendition (nothing to choose).
	fn new(ladder: &Ladder, config: &AbrConfig) -> Option<Self> {
		if ladder.len() < 2 {
			return None;
		}
		let lowest = ladder.bitrate(0);
		let utilities: Vec<f64> =
			(0..ladder.len()).map(|i| (ladder.bitrate(i) / lowest).ln() + 1.0).collect();
		let min_buffer = config.bola_min_buffer.as_secs_f64().max(0.1);
		let target = config
			.bola_stable_buffer
			.as_secs_f64()
			.max(min_buffer + config.bola_buffer_per_level.as_secs_f64() * ladder.len() as f64);
		let top = utilities[ladder.top()];
		let gp = (top - 1.0) / (target / min_buffer - 1.0).max(1e-3);
		let vp = min_buffer / gp;
		Some(Self { utilities, vp, gp })
	}

	/// The rendition with the best score at `buffer` seconds (the higher one on a tie).
	fn choose(&self, ladder: &Ladder, buffer: f64) -> usize {
		let mut best = (0, f64::MIN);
		for (i, u) in self.utilities.iter().enumerate() {
			let score = (self.vp * (u + self.gp) - buffer) / ladder.bitrate(i);
			if score >= best.1 {
				best = (i, score);
			}
		}
		best.0
	}
}

/// Chooses the rendition of each segment of one viewer session. Deterministic: it reads no
/// clock. See the module docs for the call order.
#[derive(Debug)]
pub struct AbrController {
	config: AbrConfig,
	ladder: Ladder,
	estimator: ThroughputEstimator,
	bola: Option<Bola>,
	pinned: Option<usize>,
	/// The playout buffer last reported.
	buffer: Millis,
	/// Play time of the last segment downloaded (predicts the next one's).
	segment: Millis,
	/// `Dynamic`: BOLA decides (the buffer reached `bola_stable_buffer`).
	using_bola: bool,
	/// The last decisions, ascending, at most [`DECISIONS_KEPT`].
	decisions: VecDeque<Decision>,
	/// The rendition of the last decision.
	current: Option<usize>,
	switches: VecDeque<RenditionSwitch>,
	switch_count: u64,
}

impl AbrController {
	/// A controller for `ladder`; fails if `config.pinned` names no rendition of it.
	pub fn new(config: AbrConfig, ladder: Ladder) -> Result<Self, AbrError> {
		let pinned = match &config.pinned {
			Some(name) => Some(
				ladder.position(name).ok_or_else(|| AbrError::UnknownRendition(name.clone()))?,
			),
			None => None,
		};
		Ok(Self {
			estimator: ThroughputEstimator::new(&config),
			bola: Bola::new(&ladder, &config),
			pinned,
			buffer: 0,
			segment: millis(config.segment_hint),
			using_bola: false,
			decisions: VecDeque::new(),
			current: None,
			switches: VecDeque::new(),
			switch_count: 0,
			config,
			ladder,
		})
	}

	/// The ladder.
	pub fn ladder(&self) -> &Ladder {
		&self.ladder
	}

	/// The throughput estimate, bit/s.
	pub fn estimate(&self) -> u64 {
		self.estimator.estimate()
	}

	/// The rendition of the last decision.
	pub fn current(&self) -> Option<usize> {
		self.current
	}

	/// Rendition changes decided so far.
	pub fn switch_count(&self) -> u64 {
		self.switch_count
	}

	/// Segment `sequence` of `rendition` arrived: `bytes` in `transfer` (first byte to last),
	/// carrying `media` of play time. Segments that came from a cache or a peer swarm say nothing
	/// about the link and should not be reported.
	pub fn handle_download(&mut self, _now: Millis, download: Download) {
		self.estimator.sample(download.bytes, download.transfer, download.media);
		if download.media > 0 {
			self.segment = download.media;
		}
	}

	/// The playout buffer holds `level` of play time.
	pub fn handle_buffer(&mut self, _now: Millis, level: Millis) {
		self.buffer = level;
	}

	/// The path changed (another transport, server or network): see
	/// [`ThroughputEstimator::restart`].
	pub fn handle_link_change(&mut self, _now: Millis) {
		self.estimator.restart();
	}

	/// Always fetch `name` from the next decision on (`--rendition NAME`).
	pub fn pin(&mut self, name: &str) -> Result<(), AbrError> {
		let index =
			self.ladder.position(name).ok_or_else(|| AbrError::UnknownRendition(name.into()))?;
		self.pinned = Some(index);
		Ok(())
	}

	/// Choose again from the next decision on.
	pub fn unpin(&mut self) {
		self.pinned = None;
	}

	/// A new broadcast began (the origin restarted, its sequence numbers start again): the
	/// decisions are forgotten, the estimate and the current rendition kept.
	pub fn restart(&mut self) {
		self.decisions.clear();
	}

	/// The rendition to fetch `sequence` in. A sequence decided before gets the same answer
	/// (while among the last [`DECISIONS_KEPT`]); a sequence older than the last decided one and
	/// not decided (skipped) gets the rendition of the decision before it; one older than every
	/// decision kept is refused. Sequences after the last decided may skip some (a gap).
	pub fn decide(&mut self, now: Millis, sequence: u64) -> Result<Decision, AbrError> {
		if self.decisions.back().is_some_and(|d| sequence <= d.sequence) {
			let oldest = self.decisions.front().map_or(sequence, |d| d.sequence);
			if sequence < oldest {
				return Err(AbrError::TooOld { sequence, oldest });
			}
			let before = self.decisions.iter().rev().find(|d| d.sequence <= sequence);
			let d = before.copied().ok_or(AbrError::TooOld { sequence, oldest })?;
			return Ok(Decision { sequence, ..d });
		}
		let (rendition, cause) = self.choose();
		if let Some(from) = self.current.filter(|f| *f != rendition) {
			self.switch_count += 1;
			self.switches.push_back(RenditionSwitch {
				at: now,
				sequence,
				from,
				to: rendition,
				cause,
				estimate: self.estimate(),
				buffer: self.buffer,
			});
			if self.switches.len() > DECISIONS_KEPT {
				self.switches.pop_front();
			}
		}
		self.current = Some(rendition);
		let decision = Decision { sequence, rendition, cause };
		self.decisions.push_back(decision);
		if self.decisions.len() > DECISIONS_KEPT {
			self.decisions.pop_front();
		}
		Ok(decision)
	}

	/// A rendition change decided since the last call (the last [`DECISIONS_KEPT`] are kept).
	pub fn poll_switch(&mut self) -> Option<RenditionSwitch> {
		self.switches.pop_front()
	}

	fn choose(&mut self) -> (usize, Cause) {
		if let Some(p) = self.pinned {
			return (p, Cause::Pinned);
		}
		let stable = millis(self.config.bola_stable_buffer);
		match self.config.strategy {
			AbrStrategy::Throughput => self.throughput_choice(),
			AbrStrategy::Bola => (self.bola_choice(), Cause::Bola),
			AbrStrategy::Dynamic => {
				self.using_bola =
					if self.using_bola { self.buffer >= stable / 2 } else { self.buffer >= stable };
				if self.using_bola {
					(self.bola_choice(), Cause::Bola)
				} else {
					self.throughput_choice()
				}
			}
		}
	}

	/// The highest rendition the estimate allows (with the safety factors), ignoring the
	/// buffer.
	fn throughput_cap(&self) -> usize {
		let estimate = self.estimate() as f64;
		let current = self.current.unwrap_or(0);
		let mut best = 0;
		for i in 0..self.ladder.len() {
			let factor =
				if i > current { self.config.up_factor } else { self.config.safety_factor };
			if self.ladder.bitrate(i) <= estimate * factor {
				best = i;
			}
		}
		best
	}

	/// The throughput rule, then the buffer guard.
	fn throughput_choice(&self) -> (usize, Cause) {
		let mut choice = self.throughput_cap();
		let estimate = (self.estimate() as f64).max(1.0);
		let reserve = millis(self.config.buffer_reserve);
		let fetch_ms =
			|i: usize| (self.ladder.bitrate(i) * self.segment as f64 / estimate).ceil() as Millis;
		let mut cause = Cause::Throughput;
		while choice > 0 && fetch_ms(choice).saturating_add(reserve) > self.buffer {
			choice -= 1;
			cause = Cause::Buffer;
		}
		(choice, cause)
	}

	/// BOLA at the current buffer, with BOLA-O's cap on going up.
	fn bola_choice(&self) -> usize {
		let Some(bola) = &self.bola else { return 0 };
		let choice = bola.choose(&self.ladder, self.buffer as f64 / 1000.0);
		let current = self.current.unwrap_or(0);
		if choice > current {
			// BOLA-O: above what the throughput allows only if already there.
			let cap = self.throughput_cap();
			if choice > cap {
				return cap.max(current);
			}
		}
		choice
	}
}

/// A complete segment, as [`AbrController::handle_download`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Download {
	/// Its sequence.
	pub sequence: u64,
	/// Its rendition (index in the ladder).
	pub rendition: usize,
	/// Its size on the wire, bytes.
	pub bytes: u64,
	/// First byte to last byte.
	pub transfer: Millis,
	/// Its play time.
	pub media: Millis,
}

#[cfg(test)]
pub(crate) mod tests;
