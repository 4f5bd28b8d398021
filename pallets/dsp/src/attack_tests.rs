//! Tests of issue 11's attacks on the credit system: each reproduces an attack that worked
//! before the fix (revocation blocked after a full rotation; an origin draining the escrow
//! owed to honest seeders through a stream of its own).

use crate::{mock::*, pallet::*, ClaimRejection, Error, Event};
use frame_support::{assert_noop, assert_ok};
use sp_core::Pair;

fn signed(name: &str) -> RuntimeOrigin {
	RuntimeOrigin::signed(account(name))
}

fn signers(names: &[&str]) -> Vec<dsp_primitives::PublicKey> {
	names.iter().map(|n| key(n).public()).collect()
}

fn rejections() -> Vec<ClaimRejection> {
	System::events()
		.into_iter()
		.filter_map(|r| match r.event {
			RuntimeEvent::Dsp(Event::ClaimItemRejected { reason, .. }) => Some(reason),
			_ => None,
		})
		.collect()
}

fn register(signer_names: &[&str]) {
	assert_ok!(Dsp::register_origin(
		signed("Origin"),
		key("Origin").public(),
		signers(signer_names),
		vec![]
	));
}

/// A stream of "Origin" with `budget` per epoch, `commitment` funded and committed.
fn funded_stream(price: Balance, cap: u64, budget: Balance, commitment: Balance) -> u64 {
	assert_ok!(Dsp::create_stream(signed("Origin"), 500, price, cap, budget));
	let stream = NextStreamId::<Test>::get() - 1;
	assert_ok!(Dsp::fund_escrow(signed("Origin"), commitment));
	assert_ok!(Dsp::fund_stream(signed("Origin"), stream, commitment));
	stream
}

#[test]
fn revoking_a_signer_after_a_full_rotation_works() {
	new_test_ext().execute_with(|| {
		register(&["A", "B", "C"]);
		let stream = funded_stream(1, 1_000, 1_000, 3_000);
		// A full rotation: all MaxPassSigners keys replaced in one epoch.
		assert_ok!(Dsp::update_origin(
			signed("Origin"),
			None,
			Some(signers(&["D", "E", "F"])),
			None
		));
		// D turns out compromised: removing it must succeed at once.
		assert_ok!(Dsp::update_origin(signed("Origin"), None, Some(signers(&["E", "F"])), None));
		System::assert_has_event(RuntimeEvent::Dsp(Event::PassSignerRevoked {
			origin: account("Origin"),
			key: key("D").public(),
			last_paid_epoch: 0,
		}));
		// Passes D issued in this epoch are still paid; those of later epochs are not.
		let it = item(&key("D"), &key("V1"), &account("Seeder"), stream, 0, 500, 10);
		assert_ok!(Dsp::claim(signed("Seeder"), vec![it]));
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 10);
		run_to_block(EPOCH_LENGTH);
		let it = item(&key("D"), &key("V2"), &account("Seeder"), stream, 1, 500, 10);
		assert_ok!(Dsp::claim(signed("Seeder"), vec![it]));
		assert_eq!(rejections(), vec![ClaimRejection::UnauthorisedIssuer]);
		// Rotating fully, epoch after epoch, never blocks a removal; and the revocations an
		// origin has at once stay bounded: they are pruned with their epochs.
		for round in 0..(CLAIM_WINDOW + 4) {
			let fresh: Vec<String> =
				(0..MAX_PASS_SIGNERS).map(|i| format!("R{round}/{i}")).collect();
			let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
			assert_ok!(Dsp::update_origin(signed("Origin"), None, Some(signers(&fresh)), None));
			assert_ok!(Dsp::update_origin(
				signed("Origin"),
				None,
				Some(signers(&fresh[1..])),
				None
			));
			let live = RevokedSigners::<Test>::iter_prefix(account("Origin")).count() as u32;
			assert!(live <= MAX_PASS_SIGNERS * (CLAIM_WINDOW + 2), "{live} revocations kept");
			run_to_block(System::block_number() + EPOCH_LENGTH);
		}
	});
}

#[test]
fn adding_signers_is_limited_per_epoch_but_removing_never_is() {
	new_test_ext().execute_with(|| {
		register(&["A"]);
		assert_ok!(Dsp::update_origin(
			signed("Origin"),
			None,
			Some(signers(&["B", "C", "D"])),
			None
		));
		// Three new keys this epoch already: a fourth must wait for the next epoch.
		assert_noop!(
			Dsp::update_origin(signed("Origin"), None, Some(signers(&["B", "C", "E"])), None),
			Error::<Test>::TooManyNewSigners
		);
		assert_ok!(Dsp::update_origin(signed("Origin"), None, Some(signers(&["B"])), None));
		assert_ok!(Dsp::update_origin(signed("Origin"), None, Some(vec![]), None));
		run_to_block(EPOCH_LENGTH);
		assert_ok!(Dsp::update_origin(
			signed("Origin"),
			None,
			Some(signers(&["C", "E", "F"])),
			None
		));
	});
}

#[test]
fn an_origin_cannot_drain_the_escrow_owed_to_honest_seeders() {
	new_test_ext().execute_with(|| {
		register(&["Issuer"]);
		let honest_stream = funded_stream(1, 1_000, 1_000, 3_000);
		// An honest seeder served 1,000 units of stream 0 this epoch and has not claimed yet.
		let honest =
			item(&key("Issuer"), &key("V1"), &account("Seeder"), honest_stream, 0, 1_000, 1_000);

		// The attack: a stream priced at the origin's whole escrow with cap 1, a pass the
		// origin signs for a viewer key it holds, a 1-unit receipt to its own second account,
		// then a withdrawal of everything it can.
		let own_stream = funded_stream(10_000, 1, 10_000, 10_000);
		let own = item(&key("Issuer"), &key("Sock"), &account("Origin2"), own_stream, 0, 1, 1);
		assert_ok!(Dsp::claim(signed("Origin2"), vec![own]));
		// The self-claim took only what the origin had committed to its own stream.
		assert_eq!(Dsp::api_credits(account("Origin2")).available, 10_000);
		assert_eq!(Streams::<Test>::get(own_stream).unwrap().escrow.total(), 0);
		assert_eq!(Streams::<Test>::get(honest_stream).unwrap().escrow.total(), 3_000);
		// Committed escrow cannot be asked back while the stream is open.
		assert_noop!(
			Dsp::request_escrow_withdrawal(signed("Origin"), 1),
			Error::<Test>::InsufficientEscrow
		);
		assert_noop!(
			Dsp::release_stream_escrow(signed("Origin"), honest_stream),
			Error::<Test>::StreamStillClaimable
		);
		assert_ok!(Dsp::close_stream(signed("Origin"), honest_stream));
		assert_noop!(
			Dsp::release_stream_escrow(signed("Origin"), honest_stream),
			Error::<Test>::StreamStillClaimable
		);

		// The honest seeder is paid in full, from stream 0's commitment.
		run_to_block(EPOCH_LENGTH * (CLAIM_WINDOW as u64 + 1) - 1);
		assert_ok!(Dsp::claim(signed("Seeder"), vec![honest]));
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 1_000);
		assert!(rejections().is_empty(), "{:?}", rejections());
		assert_eq!(Streams::<Test>::get(honest_stream).unwrap().escrow.total(), 2_000);
	});
}
