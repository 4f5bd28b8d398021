//! Issue 11's chain-side attacks against a real `dsp-node --dev`: an origin that tries to drain
//! what honest seeders are owed through a stream of its own (attack 2), and revoking a pass
//! signer right after a full rotation (attack 4).

use dsp_integration_tests::*;
use dsp_primitives::{ClaimItem, Receipt, Signed, ViewerPass};
use dsp_runtime::{Runtime, RuntimeCall};
use pallet_dsp::{Call as DspCall, Event as DspEvent};
use serde_json::json;
use sp_core::{sr25519, Pair};

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
