//! Unit tests of the adaptive-bitrate rules ([`super::AbrController`]), and the ladder the
//! simulator's tests share.

use super::*;

/// 360p / 540p / 720p at 500 / 1200 / 2500 kbit/s (given out of order: the ladder sorts).
pub(crate) fn ladder() -> Ladder {
	Ladder::new(vec![
		Rendition::new("720p", 2_500_000),
		Rendition::new("360p", 500_000),
		Rendition::new("540p", 1_200_000),
	])
	.unwrap()
}

fn abr(strategy: AbrStrategy) -> AbrController {
	AbrController::new(AbrConfig { strategy, ..AbrConfig::default() }, ladder()).unwrap()
}

/// A controller that fetched five 2 s segments of the lowest rendition at `rate` bit/s.
fn warmed(strategy: AbrStrategy, rate: u64) -> AbrController {
	let mut c = abr(strategy);
	for s in 0..5 {
		download(&mut c, s, 0, rate);
	}
	c
}

/// A 2 s segment of `rendition` fetched at `rate` bit/s.
fn download(c: &mut AbrController, sequence: u64, rendition: usize, rate: u64) {
	let bytes = c.ladder().get(rendition).bitrate * 2 / 8;
	let transfer = bytes * 8 * 1000 / rate;
	c.handle_download(0, Download { sequence, rendition, bytes, transfer, media: 2000 });
}

#[test]
fn ladder_is_sorted_and_checked() {
	let l = ladder();
	let names: Vec<_> = l.renditions().iter().map(|r| r.name.as_str()).collect();
	assert_eq!(names, ["360p", "540p", "720p"]);
	assert_eq!((l.top(), l.position("540p")), (2, Some(1)));
	assert_eq!(Ladder::new(vec![]), Err(AbrError::EmptyLadder));
	let dup = vec![Rendition::new("a", 1), Rendition::new("a", 2)];
	assert_eq!(Ladder::new(dup), Err(AbrError::DuplicateName("a".into())));
	let same = vec![Rendition::new("a", 5), Rendition::new("b", 5)];
	assert_eq!(Ladder::new(same), Err(AbrError::DuplicateBitrate("a".into(), "b".into())));
	assert_eq!(Ladder::new(vec![Rendition::new("z", 0)]), Err(AbrError::ZeroBitrate("z".into())));
	let many = (1..=9).map(|i| Rendition::new(i.to_string(), i)).collect();
	assert_eq!(Ladder::new(many), Err(AbrError::TooManyRenditions { count: 9, max: 8 }));
}

#[test]
fn estimator_falls_fast_and_rises_slowly() {
	let mut e = ThroughputEstimator::new(&AbrConfig::default());
	assert_eq!(e.estimate(), 500_000);
	// One sample is the estimate (the zero start is corrected for).
	e.sample(1_000_000, 2000, 2000);
	assert_eq!(e.estimate(), 4_000_000);
	for _ in 0..10 {
		e.sample(1_000_000, 2000, 2000);
	}
	// 4 Mbit/s for 22 s, then one slow segment (1 Mbit/s for 4 s): the fast average, and
	// so the estimate, is below the mean of the two already.
	e.sample(500_000, 4000, 2000);
	let dropped = e.estimate();
	assert!(dropped < 2_500_000, "{dropped}");
	// Back at 4 Mbit/s: one fast 2 s segment does not bring the estimate back (the slow
	// average holds it down)...
	e.sample(1_000_000, 2000, 2000);
	assert!(e.estimate() < 3_500_000, "{}", e.estimate());
	// ...but a few do.
	for _ in 0..8 {
		e.sample(1_000_000, 2000, 2000);
	}
	assert!(e.estimate() > 3_800_000, "{}", e.estimate());
	// A transfer of 1 ms counts as 50 ms.
	let mut e = ThroughputEstimator::new(&AbrConfig::default());
	e.sample(1_000, 1, 2000);
	assert_eq!(e.estimate(), 160_000);
}

#[test]
fn estimator_restart_keeps_the_estimate_until_the_next_sample() {
	let mut e = ThroughputEstimator::new(&AbrConfig::default());
	for _ in 0..10 {
		e.sample(1_000_000, 2000, 2000);
	}
	e.restart();
	assert_eq!((e.estimate(), e.samples()), (4_000_000, 0));
	// The new path's first sample replaces the history.
	e.sample(250_000, 2000, 2000);
	assert_eq!(e.estimate(), 1_000_000);
}

#[test]
fn throughput_rule_goes_up_with_margin_and_stays_with_less() {
	let mut c = abr(AbrStrategy::Throughput);
	// Empty buffer at start: the lowest, whatever the estimate.
	assert_eq!(c.decide(0, 0).unwrap().rendition, 0);
	download(&mut c, 0, 0, 3_000_000);
	c.handle_buffer(0, 6000);
	// 3 Mbit/s: 0.7 x 3 = 2.1 < 2.5 so not up to 720p, 540p is fine.
	let d = c.decide(0, 1).unwrap();
	assert_eq!((d.rendition, d.cause), (1, Cause::Throughput));
	// At 720p already, 0.9 x 3 = 2.7 >= 2.5 keeps it.
	let mut c = abr(AbrStrategy::Throughput);
	c.handle_buffer(0, 6000);
	download(&mut c, 0, 0, 4_000_000);
	assert_eq!(c.decide(0, 0).unwrap().rendition, 2);
	for s in 1..4 {
		download(&mut c, s, 2, 3_000_000);
		assert_eq!(c.decide(0, s).unwrap().rendition, 2, "sequence {s}");
	}
	// 1.5 Mbit/s: down to 540p at once.
	download(&mut c, 4, 2, 1_500_000);
	assert_eq!(c.decide(0, 5).unwrap().rendition, 1);
	let s = c.poll_switch().unwrap();
	assert_eq!((s.sequence, s.from, s.to, s.cause), (5, 2, 1, Cause::Throughput));
	assert_eq!(c.switch_count(), 1);
}

#[test]
fn buffer_guard_steps_down_when_the_fetch_would_empty_the_buffer() {
	let mut c = warmed(AbrStrategy::Throughput, 4_000_000);
	// 720p takes 1.25 s at 4 Mbit/s, 540p 0.6 s; with the 1 s reserve, 2 s of buffer only
	// allows 540p.
	c.handle_buffer(0, 2000);
	assert_eq!(
		c.decide(0, 5).unwrap(),
		Decision { sequence: 5, rendition: 1, cause: Cause::Buffer }
	);
	c.handle_buffer(0, 2300);
	assert_eq!(c.decide(0, 6).unwrap().rendition, 2);
	c.handle_buffer(0, 0);
	assert_eq!(c.decide(0, 7).unwrap().rendition, 0);
}

#[test]
fn decisions_are_per_sequence_and_never_change() {
	let mut c = abr(AbrStrategy::Throughput);
	assert_eq!(c.decide(0, 10).unwrap().rendition, 0);
	c.handle_buffer(0, 8000);
	download(&mut c, 10, 0, 10_000_000);
	assert_eq!(c.decide(0, 11).unwrap().rendition, 2);
	// Asked again after the estimate changed: the same answers.
	download(&mut c, 11, 2, 100_000);
	assert_eq!(c.decide(0, 10).unwrap().rendition, 0);
	assert_eq!(c.decide(0, 11).unwrap().rendition, 2);
	// A gap: 12 and 13 were never fetched; 14 is decided fresh, 13 (asked late) gets the
	// rendition in force then.
	assert_eq!(c.decide(0, 14).unwrap().rendition, 0);
	assert_eq!(c.decide(0, 13).unwrap().rendition, 2);
	assert_eq!(c.decide(0, 9), Err(AbrError::TooOld { sequence: 9, oldest: 10 }));
	// Only the last DECISIONS_KEPT are answered.
	for s in 15..15 + DECISIONS_KEPT as u64 {
		c.decide(0, s).unwrap();
	}
	assert!(matches!(c.decide(0, 14), Err(AbrError::TooOld { .. })));
	// A new broadcast starts at 0 again.
	c.restart();
	assert_eq!(c.decide(0, 0).unwrap().sequence, 0);
}

#[test]
fn pinned_rendition_is_always_chosen() {
	let config = AbrConfig { pinned: Some("720p".into()), ..AbrConfig::default() };
	let mut c = AbrController::new(config, ladder()).unwrap();
	download(&mut c, 0, 2, 100_000);
	assert_eq!(
		c.decide(0, 0).unwrap(),
		Decision { sequence: 0, rendition: 2, cause: Cause::Pinned }
	);
	assert_eq!(c.pin("1080p"), Err(AbrError::UnknownRendition("1080p".into())));
	c.pin("360p").unwrap();
	assert_eq!(c.decide(0, 1).unwrap().rendition, 0);
	c.unpin();
	c.handle_buffer(0, 8000);
	for s in 1..12 {
		download(&mut c, s, 0, 2_000_000);
	}
	assert_eq!(
		c.decide(0, 2).unwrap(),
		Decision { sequence: 2, rendition: 1, cause: Cause::Throughput }
	);
	let bad = AbrConfig { pinned: Some("4k".into()), ..AbrConfig::default() };
	assert_eq!(
		AbrController::new(bad, ladder()).err(),
		Some(AbrError::UnknownRendition("4k".into()))
	);
}

#[test]
fn bola_follows_the_buffer_and_is_capped_by_throughput_going_up() {
	let mut c = warmed(AbrStrategy::Bola, 20_000_000);
	// Below BOLA's minimum buffer (10 s): the lowest.
	c.handle_buffer(0, 9_000);
	assert_eq!(c.decide(0, 0).unwrap(), Decision { sequence: 0, rendition: 0, cause: Cause::Bola });
	// At its target (max(12, 10 + 2 x 3) = 16 s): the highest.
	c.handle_buffer(0, 16_000);
	assert_eq!(c.decide(0, 1).unwrap().rendition, 2);
	// In between: in between, and going down is not capped.
	c.handle_buffer(0, 13_000);
	assert_eq!(c.decide(0, 2).unwrap().rendition, 1);
	// BOLA-O: a full buffer on a slow link goes up only as far as the throughput allows.
	let mut c = warmed(AbrStrategy::Bola, 1_500_000);
	c.handle_buffer(0, 20_000);
	assert_eq!(c.decide(0, 0).unwrap().rendition, 0);
	assert_eq!(c.decide(0, 1).unwrap().rendition, 0);
	for s in 5..12 {
		download(&mut c, s, 0, 2_000_000);
	}
	assert_eq!(c.decide(0, 2).unwrap().rendition, 1);
}

#[test]
fn dynamic_uses_bola_only_with_a_stable_buffer() {
	let mut c = warmed(AbrStrategy::Dynamic, 20_000_000);
	c.handle_buffer(0, 6_000);
	assert_eq!(c.decide(0, 0).unwrap().cause, Cause::Throughput);
	c.handle_buffer(0, 12_000);
	assert_eq!(c.decide(0, 1).unwrap().cause, Cause::Bola);
	// Hysteresis: BOLA until the buffer falls below half the stable buffer.
	c.handle_buffer(0, 7_000);
	assert_eq!(c.decide(0, 2).unwrap().cause, Cause::Bola);
	c.handle_buffer(0, 5_000);
	assert_eq!(c.decide(0, 3).unwrap().cause, Cause::Throughput);
}

#[test]
fn link_change_lets_the_next_sample_decide() {
	let mut c = abr(AbrStrategy::Throughput);
	c.handle_buffer(0, 8000);
	for s in 0..10 {
		download(&mut c, s, 2, 4_000_000);
	}
	assert_eq!(c.decide(0, 10).unwrap().rendition, 2);
	c.handle_link_change(0);
	assert_eq!(c.decide(0, 11).unwrap().rendition, 2);
	// One segment over the new path at 1 Mbit/s is the whole estimate: 360p.
	download(&mut c, 11, 2, 1_000_000);
	assert_eq!(c.estimate(), 1_000_000);
	assert_eq!(c.decide(0, 12).unwrap().rendition, 0);
}
