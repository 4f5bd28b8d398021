//! Issue 11's attacks against a real `dsp-node --dev`: fresh viewer keys joining to collect
//! passes for a colluding seeder (attack 1, paid at most the P1 bound); an origin that tries to
//! drain what honest seeders are owed through a stream of its own (attack 2); passes issued
//! after the origin asked for its escrow back (attack 3); and revoking a pass signer right after
//! a full rotation (attack 4).
//!
//! The tests with the worker's demo stream need ffmpeg; `DSP_SKIP_FFMPEG=1` skips them.

use dsp_integration_tests::{
	viewer::{p2p_join, Viewer},
	*,
};
use dsp_primitives::{CapacitySettings, ClaimItem, Perbill, Receipt, Signed, ViewerPass};
use dsp_runtime::{Runtime, RuntimeCall};
use dsp_streaming::{
	p2p::pass_policy::{pass_units, slack_permille},
	protocol::{ErrorCode, Start},
};
use pallet_dsp::{Call as DspCall, Event as DspEvent};
use serde_json::json;
use sp_core::{sr25519, Pair};
use std::{
	sync::{
		atomic::{AtomicBool, AtomicU64, Ordering},
		Arc,
	},
	time::{Duration, Instant},
};

const UNIT: u128 = 1_000_000_000_000;

fn dsp(call: DspCall<Runtime>) -> RuntimeCall {
	RuntimeCall::Dsp(call)
}

fn balance(value: &serde_json::Value) -> u128 {
	value.as_u64().map(u128::from).unwrap_or_else(|| {
		value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("balance {value}"))
	})
}

/// A claim item: `issuer`'s pass for `viewer` on `stream`, and `viewer`'s receipt of `units`
/// for `seeder`.
#[allow(clippy::too_many_arguments)]
fn claim_item(
	genesis: [u8; 32],
	epoch: u32,
	stream: u64,
	issuer: &sr25519::Pair,
	viewer: &sr25519::Pair,
	seeder: &sr25519::Pair,
	max_units: u64,
	units: u64,
) -> ClaimItem {
	let pass = ViewerPass {
		genesis_hash: genesis,
		stream,
		epoch,
		viewer: viewer.public(),
		max_units,
		issuer: issuer.public(),
	};
	let receipt = Receipt {
		genesis_hash: genesis,
		stream,
		epoch,
		seeder: seeder.public().0,
		viewer: viewer.public(),
		units,
	};
	ClaimItem { pass: Signed::sign(pass, issuer), receipt: Signed::sign(receipt, viewer) }
}

#[test]
fn an_origin_draining_its_escrow_through_its_own_stream_takes_nothing_from_honest_seeders() {
	let node = dev_node();
	let (bob, issuer, eve, dave) =
		(pair("//Bob"), pair("//Charlie"), pair("//Eve"), pair("//Dave"));
	let price = 1_000_000u128;
	let genesis: [u8; 32] = node.block_hash(0).into();
	let epoch = node.call("dsp_currentEpoch", json!([])).as_u64().unwrap() as u32;

	// Bob: an origin with an honest stream 1, budget 10 DSP per epoch, 250 DSP committed.
	must_succeed(
		&node,
		&bob,
		dsp(DspCall::register_origin {
			signing_key: bob.public(),
			pass_signers: vec![issuer.public()],
			metadata: b"bob tv".to_vec(),
		}),
	);
	must_succeed(&node, &bob, dsp(DspCall::fund_escrow { amount: 1_000 * UNIT }));
	must_succeed(
		&node,
		&bob,
		dsp(DspCall::create_stream {
			bitrate_kbps: 800,
			price_per_unit: price,
			viewer_cap_per_epoch: 10_000,
			epoch_budget: 10 * UNIT,
		}),
	);
	must_succeed(&node, &bob, dsp(DspCall::fund_stream { stream: 1, amount: 250 * UNIT }));
	// Eve relayed 3,000 units of stream 1 to a viewer and has not claimed yet.
	let viewer = pair("//Viewer1");
	let honest = claim_item(genesis, epoch, 1, &issuer, &viewer, &eve, 5_000, 3_000);

	// The attack: stream 2 priced at Bob's whole remaining escrow with cap 1, a pass Bob's
	// signer issues to a viewer key Bob holds, a 1-unit receipt to Bob's second account Dave.
	let rest = 750 * UNIT;
	must_succeed(
		&node,
		&bob,
		dsp(DspCall::create_stream {
			bitrate_kbps: 800,
			price_per_unit: rest,
			viewer_cap_per_epoch: 1,
			epoch_budget: rest,
		}),
	);
	must_succeed(&node, &bob, dsp(DspCall::fund_stream { stream: 2, amount: rest }));
	let sock = pair("//Sock");
	let own = claim_item(genesis, epoch, 2, &issuer, &sock, &dave, 1, 1);
	must_succeed(&node, &dave, dsp(DspCall::claim { items: vec![own] }));
	// Then it asks for the rest of its escrow: nothing uncommitted is left to ask for.
	let events = node.submit(&bob, dsp(DspCall::request_escrow_withdrawal { amount: 1 }));
	let expected: sp_runtime::DispatchError =
		pallet_dsp::Error::<Runtime>::InsufficientEscrow.into();
	assert_eq!(dispatch_error(&events), Some(expected), "{events:?}");

	// Bob paid himself only what he committed to his own stream.
	let dave_credits = node.call("dsp_credits", json!([address(&dave)]));
	assert_eq!(balance(&dave_credits["available"]), rest, "{dave_credits}");
	let honest_stream = node.call("dsp_stream", json!([1]));
	assert_eq!(balance(&honest_stream["committed"]), 250 * UNIT, "{honest_stream}");

	// Eve is paid in full, out of stream 1's commitment.
	let events = must_succeed(&node, &eve, dsp(DspCall::claim { items: vec![honest] }));
	let eve_account: sp_runtime::AccountId32 = eve.public().into();
	assert_eq!(
		events.last(),
		Some(&DspEvent::ClaimBatchProcessed {
			seeder: eve_account,
			paid_items: 1,
			rejected_items: 0,
			amount: 3_000 * price,
		})
	);
	let honest_stream = node.call("dsp_stream", json!([1]));
	assert_eq!(balance(&honest_stream["committed"]), 250 * UNIT - 3_000 * price);
	eprintln!(
		"attack 2: the origin's self-claim took {rest} from its own stream, 0 from stream 1; \
		 the honest seeder was paid {} in full",
		3_000 * price
	);
}

#[test]
fn removing_a_pass_signer_right_after_a_full_rotation_works() {
	let node = dev_node();
	let bob = pair("//Bob");
	let max =
		<<Runtime as pallet_dsp::Config>::MaxPassSigners as frame_support::traits::Get<u32>>::get();
	let keys = |round: &str| -> Vec<sr25519::Pair> {
		(0..max).map(|i| pair(&format!("//Signer/{round}/{i}"))).collect()
	};
	let publics = |pairs: &[sr25519::Pair]| pairs.iter().map(|p| p.public()).collect::<Vec<_>>();
	let (first, second) = (keys("a"), keys("b"));
	must_succeed(
		&node,
		&bob,
		dsp(DspCall::register_origin {
			signing_key: bob.public(),
			pass_signers: publics(&first),
			metadata: vec![],
		}),
	);
	must_succeed(&node, &bob, dsp(DspCall::fund_escrow { amount: 100 * UNIT }));
	must_succeed(
		&node,
		&bob,
		dsp(DspCall::create_stream {
			bitrate_kbps: 800,
			price_per_unit: 1_000_000,
			viewer_cap_per_epoch: 10_000,
			epoch_budget: UNIT,
		}),
	);
	must_succeed(&node, &bob, dsp(DspCall::fund_stream { stream: 1, amount: 25 * UNIT }));
	// A full rotation: every signer replaced (all MaxPassSigners revoked at once).
	let update = |signers: Vec<sp_core::sr25519::Public>| {
		dsp(DspCall::update_origin {
			signing_key: None,
			pass_signers: Some(signers),
			metadata: None,
		})
	};
	must_succeed(&node, &bob, update(publics(&second)));
	// One of the new keys is compromised: removing it succeeds at once.
	let compromised = &second[0];
	let events = must_succeed(&node, &bob, update(publics(&second[1..])));
	let epoch = node.call("dsp_currentEpoch", json!([])).as_u64().unwrap() as u32;
	assert!(
		events.iter().any(|e| matches!(
			e,
			DspEvent::PassSignerRevoked { key, last_paid_epoch, .. }
				if *key == compromised.public() && *last_paid_epoch == epoch
		)),
		"{events:?}"
	);
	let origin = node.call("dsp_origin", json!([address(&bob)]));
	assert_eq!(origin["passSigners"].as_array().map(Vec::len), Some(max as usize - 1));
	// Its passes of this epoch are still paid.
	let genesis: [u8; 32] = node.block_hash(0).into();
	let eve = pair("//Eve");
	let it = claim_item(genesis, epoch, 1, compromised, &pair("//Viewer1"), &eve, 100, 100);
	let events = must_succeed(&node, &eve, dsp(DspCall::claim { items: vec![it] }));
	assert!(
		matches!(events.last(), Some(DspEvent::ClaimBatchProcessed { paid_items: 1, .. })),
		"{events:?}"
	);
}

/// Price per unit of the genesis demo stream 0.
const DEMO_PRICE: u128 = dsp_runtime::genesis_config_presets::DEMO_STREAM_PRICE_PER_UNIT;
/// The worker's pass settings in these tests (its defaults, passed explicitly: the P1 bound
/// below is computed from them).
const PASS_PERIOD_SECS: u64 = 120;
const PASS_SLACK: f64 = 1.5;
const PASSES_PER_MINUTE: u32 = 30;

fn skip() -> bool {
	let skip = std::env::var_os("DSP_SKIP_FFMPEG").is_some();
	if skip {
		eprintln!("DSP_SKIP_FFMPEG set: skipping the demo-stream test");
	}
	skip
}

/// `dsp-node --dev` with its worker and demo stream on loopback, once segments are stored;
/// every new viewer is then admitted in P2P mode (max_streams 10, r = 100 %). Returns the
/// node, the worker's TCP address and the genesis hash.
fn p2p_demo_node(before_p2p: impl FnOnce(&str, [u8; 32])) -> (Node, String, [u8; 32]) {
	let (period, slack) = (PASS_PERIOD_SECS.to_string(), PASS_SLACK.to_string());
	let (passes, port) = (PASSES_PER_MINUTE.to_string(), free_port().to_string());
	let args = [
		&["--dev", "--port", &port, "--no-prometheus"][..],
		&WORKER_ON_LOOPBACK[..],
		&["--pass-period-secs", &period, "--pass-slack", &slack][..],
		&["--stream-p2p-max-passes-per-minute", &passes][..],
	]
	.concat();
	let node = Node::start(&args);
	let load = node.wait_segments(2);
	let tcp = load["tcp"].as_str().expect("worker TCP address").to_string();
	let genesis: [u8; 32] = node.block_hash(0).into();
	before_p2p(&tcp, genesis);
	let settings = CapacitySettings { max_streams: 10, streaming_rate: Perbill::from_percent(100) };
	must_succeed(
		&node,
		&pair("//Alice"),
		dsp(DspCall::set_streamer_settings { settings: Some(settings) }),
	);
	node.wait_for("P2P from the first viewer", Duration::from_secs(30), || {
		(node.live_load()["settings"]["p2pThreshold"] == 0).then_some(())
	});
	(node, tcp, genesis)
}

/// Attack 1: a client joins again and again with fresh viewer keys (each with a valid proof of
/// possession), leaves at once and has a colluding seeder claim every pass in full. The chain
/// pays at most the P1 bound over the sessions the worker admitted, and an honest seeder whose
/// viewer stayed joined is paid in full alongside.
#[test]
fn fresh_viewer_keys_joining_for_a_colluding_seeder_are_paid_at_most_the_p1_bound() {
	if skip() {
		return;
	}
	// A direct viewer reads every segment header from the oldest held on: the largest
	// bytes-per-second of any segment bounds the bitrate the worker measures over its window.
	let max_rate = Arc::new(AtomicU64::new(0));
	let headers = Arc::new(AtomicU64::new(0));
	let stop = Arc::new(AtomicBool::new(false));
	let mut reader = None;
	let (node, tcp, genesis) = p2p_demo_node(|tcp, genesis| {
		let mut direct = Viewer::connect(tcp, genesis);
		direct.subscribe_from(Start::At(0));
		let (max_rate, headers, stop) = (max_rate.clone(), headers.clone(), stop.clone());
		reader = Some(std::thread::spawn(move || {
			while !stop.load(Ordering::Relaxed) {
				let h = direct.header();
				if h.duration_ms > 0 {
					let rate = u64::from(h.byte_len) * 1000 / u64::from(h.duration_ms);
					max_rate.fetch_max(rate, Ordering::Relaxed);
				}
				headers.fetch_add(1, Ordering::Relaxed);
			}
		}));
	});
	let (alice, eve, dave) = (pair("//Alice"), pair("//Eve"), pair("//Dave"));

	// An honest P2P viewer joins first and stays joined through the attack.
	let honest_key = pair("//HonestViewer");
	let honest_joined = Instant::now();
	let (honest_session, answer) = p2p_join(&tcp, genesis, 0, &honest_key);
	let honest_pass = answer.expect("the honest viewer gets a pass");
	assert_eq!(honest_pass.payload.issuer, alice.public());

	// The attack: 40 joins with fresh keys from the same address, each left at once.
	const JOINS: usize = 40;
	let mut passes = Vec::new();
	let mut admitted_ms = Vec::new();
	let mut refused = Vec::new();
	let attack = Instant::now();
	for i in 0..JOINS {
		let key = pair(&format!("//Sybil/{i}"));
		let sent = Instant::now();
		let (session, answer) = p2p_join(&tcp, genesis, 0, &key);
		drop(session);
		match answer {
			Ok(pass) => {
				assert_eq!(pass.payload.viewer, key.public());
				passes.push((key, pass));
				admitted_ms.push(sent.elapsed().as_millis() as u64);
			}
			Err((code, reason)) => refused.push((code, reason)),
		}
	}
	let honest_ms = honest_joined.elapsed().as_millis() as u64;
	drop(honest_session);
	// New passes per address and minute are limited (the honest viewer's counts too), when
	// the joins all fit in one minute, as they do unless the machine is very slow.
	if attack.elapsed() < Duration::from_secs(60) {
		assert!(passes.len() < PASSES_PER_MINUTE as usize, "{} passes", passes.len());
	}
	assert_eq!(passes.len() + refused.len(), JOINS);
	for (code, reason) in &refused {
		assert_eq!(*code, ErrorCode::Full, "{reason}");
	}

	// The colluding seeder Dave claims every pass in full.
	let epoch = passes[0].1.payload.epoch;
	let items: Vec<ClaimItem> = passes
		.iter()
		.map(|(key, pass)| ClaimItem {
			pass: pass.clone(),
			receipt: Signed::sign(
				Receipt {
					genesis_hash: genesis,
					stream: 0,
					epoch,
					seeder: dave.public().0,
					viewer: key.public(),
					units: pass.payload.max_units,
				},
				key,
			),
		})
		.collect();
	let events = must_succeed(&node, &dave, dsp(DspCall::claim { items }));
	let paid_units: u64 = events
		.iter()
		.filter_map(|e| match e {
			DspEvent::Claimed { units, .. } => Some(*units),
			_ => None,
		})
		.sum();
	let dave_credits = node.call("dsp_credits", json!([address(&dave)]));
	assert_eq!(balance(&dave_credits["available"]), u128::from(paid_units) * DEMO_PRICE);

	// The honest seeder Eve relayed half of what the honest viewer's pass covers.
	let honest_units = honest_pass.payload.max_units / 2;
	assert!(honest_units > 0, "the worker measured the stream's bitrate");
	let honest = ClaimItem {
		pass: honest_pass.clone(),
		receipt: Signed::sign(
			Receipt {
				genesis_hash: genesis,
				stream: 0,
				epoch: honest_pass.payload.epoch,
				seeder: eve.public().0,
				viewer: honest_key.public(),
				units: honest_units,
			},
			&honest_key,
		),
	};
	let events = must_succeed(&node, &eve, dsp(DspCall::claim { items: vec![honest] }));
	assert!(
		matches!(events.last(), Some(DspEvent::ClaimBatchProcessed { paid_items: 1, rejected_items: 0, amount, .. })
			if *amount == u128::from(honest_units) * DEMO_PRICE),
		"{events:?}"
	);

	// Every segment the worker held during the attack has been read by the direct viewer once
	// two more headers came after it.
	let seen = headers.load(Ordering::Relaxed);
	node.wait_for("two more segment headers", Duration::from_secs(60), || {
		(headers.load(Ordering::Relaxed) >= seen + 2).then_some(())
	});
	stop.store(true, Ordering::Relaxed);
	let bitrate = max_rate.load(Ordering::Relaxed);
	let (period_ms, slack) = (PASS_PERIOD_SECS * 1000, slack_permille(PASS_SLACK));
	let bound: u64 = admitted_ms.iter().map(|ms| pass_units(bitrate, *ms, period_ms, slack)).sum();
	eprintln!(
		"attack 1: {JOINS} joins with fresh keys -> {} passes ({} refused: {:?}); colluding seeder \
		 paid {paid_units} units ({} planck). P1 bound = sum over admitted sessions of \
		 ceil(bitrate * (admitted + {PASS_PERIOD_SECS} s) * {PASS_SLACK} / 1024) with bitrate <= \
		 {bitrate} B/s = {bound} units ({} planck); honest seeder paid {honest_units} units of \
		 {honest_units} in full (its viewer joined {honest_ms} ms)",
		passes.len(),
		refused.len(),
		refused.first().map(|r| &r.1),
		u128::from(paid_units) * DEMO_PRICE,
		u128::from(bound) * DEMO_PRICE,
	);
	assert!(paid_units > 0, "the passes the worker issued are payable");
	assert!(paid_units <= bound, "paid {paid_units} units over the P1 bound {bound}");
	if let Some(reader) = reader {
		// The reader stops after its next header (one segment).
		reader.join().expect("direct viewer read without error");
	}
}

/// Attack 3: once the origin's withdrawal request is in a finalized block, the worker issues
/// no new pass: the next P2P viewer is refused `Full` with the reason (it moves on to other
/// streamers, which may serve it directly), instead of getting a pass that may not be paid.
#[test]
fn a_withdrawal_request_stops_pass_issuance_within_one_finalized_block() {
	if skip() {
		return;
	}
	let (node, tcp, genesis) = p2p_demo_node(|_, _| {});
	let alice = pair("//Alice");
	let (_before, answer) = p2p_join(&tcp, genesis, 0, &pair("//Before"));
	answer.expect("a pass while the origin's escrow covers it");

	must_succeed(&node, &alice, dsp(DspCall::fund_escrow { amount: UNIT }));
	must_succeed(&node, &alice, dsp(DspCall::request_escrow_withdrawal { amount: UNIT }));
	// `submit` returned once the block holding the request was imported: it is at or below
	// the best block now.
	let requested_by = node.best_number();
	let finalized = node.wait_for("the request finalized", Duration::from_secs(60), || {
		let f = node.finalized_number();
		(f >= requested_by).then_some(f)
	});
	let stream = node.call("dsp_stream", json!([0]));
	assert_eq!(stream["passesOpen"], false, "{stream}");
	let (_after, answer) = p2p_join(&tcp, genesis, 0, &pair("//After"));
	match answer {
		Err((ErrorCode::Full, reason)) => {
			assert!(reason.contains("no passes for stream 0"), "{reason}");
			eprintln!(
				"withdrawal requested by block #{requested_by}, finalized #{finalized}: the next \
				 P2P viewer was refused Full: {reason}"
			);
		}
		other => panic!("expected Full after the withdrawal request, got {other:?}"),
	}
}
