//! Every harness run briefly on deterministic pseudo-random inputs (the CI part of fuzzing; long
//! runs are `scripts/fuzz.sh`), and the fixtures checked to still be what the harnesses assume.

use super::{fixtures::*, run_briefly, TARGETS};
use crate::p2p::receipts::{verify_item, SeederLedger};

/// Inputs per harness in the test run: a few seconds for all of them in a debug build.
const ITERATIONS: usize = 1000;

#[test]
fn fixtures_are_valid() {
	let f = fixtures();
	assert_eq!(f.messages.len(), 32, "a canned message no longer decodes");
	assert_eq!(f.ends.len(), 9, "a fixture end no longer decodes");
	assert!(f.join_pass.is_some());
	assert_eq!(f.claim_items.len(), 3);
	let c = &f.ledger_config;
	for item in &f.claim_items {
		assert_eq!(verify_item(item, &GENESIS, &c.seeder, &c.signers), Ok(()));
	}
	let ledger = SeederLedger::decode(c.clone(), &f.ledger_bytes).expect("fixture ledger loads");
	assert_eq!(ledger.entries().count(), 4);
	assert_eq!(f.p2p.len(), 9);
}

#[test]
fn every_harness_runs_briefly() {
	for (i, (name, harness)) in TARGETS.iter().enumerate() {
		println!("fuzz target {name}: {ITERATIONS} inputs");
		run_briefly(*harness, i as u64, ITERATIONS, 2048);
	}
}
