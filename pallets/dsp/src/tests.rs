//! Unit tests of every call: success and every error path.

use crate::{mock::*, pallet::*, ClaimRejection, Error, Event, HoldReason, PendingWithdrawal};
use dsp_primitives::{
	CapacitySettings, ClaimItem, EndpointsView, Perbill, Receipt, Signable, Signed,
};
use frame_support::traits::Get;
use frame_support::{
	assert_noop, assert_ok,
	traits::fungible::{Inspect, InspectHold},
	weights::Weight,
};
use sp_core::Pair;
use sp_runtime::{AccountId32, BuildStorage, DispatchError};

fn signed(name: &str) -> RuntimeOrigin {
	RuntimeOrigin::signed(account(name))
}

fn held(reason: HoldReason, name: &str) -> Balance {
	Balances::balance_on_hold(&reason.into(), &account(name))
}

fn free(name: &str) -> Balance {
	Balances::balance(&account(name))
}

fn endpoints(tcp: &str) -> EndpointsView {
	EndpointsView {
		tcp: tcp.as_bytes().to_vec(),
		quic: b"127.0.0.1:7001".to_vec(),
		p2p: b"/ip4/127.0.0.1/udp/7002/quic-v1".to_vec(),
		rpc: b"ws://127.0.0.1:9944".to_vec(),
	}
}

fn settings(max_streams: u32, percent: u32) -> CapacitySettings {
	CapacitySettings { max_streams, streaming_rate: Perbill::from_percent(percent) }
}

fn last_event() -> RuntimeEvent {
	System::events().pop().expect("an event").event
}

fn dsp_events() -> Vec<Event<Test>> {
	System::events()
		.into_iter()
		.filter_map(|r| match r.event {
			RuntimeEvent::Dsp(e) => Some(e),
			_ => None,
		})
		.collect()
}

fn rejections() -> Vec<(u32, ClaimRejection)> {
	dsp_events()
		.into_iter()
		.filter_map(|e| match e {
			Event::ClaimItemRejected { index, reason, .. } => Some((index, reason)),
			_ => None,
		})
		.collect()
}

/// "Origin" registered with "Issuer" as pass signer and one stream (id 0) whose epoch budget
/// is `budget`, funded with enough for every claimable epoch: `(CLAIM_WINDOW + 1) * budget`,
/// all of it committed (the origin's escrow is then empty). `budget` 0: no funding, budget 1.
fn origin_with_stream(price: Balance, cap: u64, budget: Balance) -> u64 {
	assert_ok!(Dsp::register_origin(
		signed("Origin"),
		key("Origin").public(),
		vec![key("Issuer").public()],
		b"demo".to_vec()
	));
	assert_ok!(Dsp::create_stream(signed("Origin"), 500, price, cap, budget.max(1)));
	let stream = NextStreamId::<Test>::get() - 1;
	if budget > 0 {
		let commitment = budget * (CLAIM_WINDOW as Balance + 1);
		assert_ok!(Dsp::fund_escrow(signed("Origin"), commitment));
		assert_ok!(Dsp::fund_stream(signed("Origin"), stream, commitment));
	}
	stream
}

/// What the stream's budget for `epoch` has left to pay.
fn epoch_left(stream: u64, epoch: u32) -> Balance {
	Streams::<Test>::get(stream).unwrap().escrow.left_for(epoch)
}

/// Everything committed to streams and not paid out yet.
fn committed_total() -> Balance {
	Streams::<Test>::iter().map(|(_, s)| s.escrow.total()).sum()
}

fn claim_one(seeder: &str, viewer: &str, stream: u64, max_units: u64, units: u64) {
	let item = item(&key("Issuer"), &key(viewer), &account(seeder), stream, 0, max_units, units);
	assert_ok!(Dsp::claim(signed(seeder), vec![item]));
}

// ---------------------------------------------------------------------------------------------
// Origins

#[test]
fn register_origin_works() {
	new_test_ext().execute_with(|| {
		assert_ok!(Dsp::register_origin(
			signed("Origin"),
			key("Origin").public(),
			vec![key("Issuer").public(), key("Issuer2").public()],
			b"demo".to_vec()
		));
		let info = Origins::<Test>::get(account("Origin")).unwrap();
		assert_eq!(info.signing_key, key("Origin").public());
		assert_eq!(info.pass_signers.len(), 2);
		assert_eq!(info.deposit, ORIGIN_DEPOSIT);
		assert_eq!(held(HoldReason::Deposit, "Origin"), ORIGIN_DEPOSIT);
		assert_eq!(free("Origin"), ENDOWMENT - ORIGIN_DEPOSIT);
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::OriginRegistered { origin: account("Origin") })
		);
	});
}

#[test]
fn register_origin_fails_when_already_registered() {
	new_test_ext().execute_with(|| {
		assert_ok!(Dsp::register_origin(signed("Origin"), key("Origin").public(), vec![], vec![]));
		assert_noop!(
			Dsp::register_origin(signed("Origin"), key("Origin").public(), vec![], vec![]),
			Error::<Test>::OriginAlreadyRegistered
		);
	});
}

#[test]
fn register_origin_fails_with_bad_arguments() {
	new_test_ext().execute_with(|| {
		let too_many: Vec<_> =
			(0..=MAX_PASS_SIGNERS).map(|i| key(&format!("S{i}")).public()).collect();
		assert_noop!(
			Dsp::register_origin(signed("Origin"), key("Origin").public(), too_many, vec![]),
			Error::<Test>::TooManyPassSigners
		);
		let dup = vec![key("A").public(), key("A").public()];
		assert_noop!(
			Dsp::register_origin(signed("Origin"), key("Origin").public(), dup, vec![]),
			Error::<Test>::DuplicatePassSigner
		);
		assert_noop!(
			Dsp::register_origin(
				signed("Origin"),
				key("Origin").public(),
				vec![],
				vec![0; MAX_METADATA_LEN as usize + 1]
			),
			Error::<Test>::MetadataTooLong
		);
		assert_noop!(
			Dsp::register_origin(signed("Poor"), key("Poor").public(), vec![], vec![]),
			Error::<Test>::InsufficientBalance
		);
		assert_noop!(
			Dsp::register_origin(RuntimeOrigin::root(), key("Origin").public(), vec![], vec![]),
			DispatchError::BadOrigin
		);
	});
}

#[test]
fn update_origin_works() {
	new_test_ext().execute_with(|| {
		origin_with_stream(1, 100, 0);
		assert_ok!(Dsp::update_origin(
			signed("Origin"),
			Some(key("NewKey").public()),
			Some(vec![key("Issuer2").public()]),
			None
		));
		let info = Origins::<Test>::get(account("Origin")).unwrap();
		assert_eq!(info.signing_key, key("NewKey").public());
		assert_eq!(info.pass_signers.into_inner(), vec![key("Issuer2").public()]);
		assert_eq!(info.metadata.into_inner(), b"demo".to_vec());
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::OriginUpdated { origin: account("Origin") })
		);
	});
}

#[test]
fn update_origin_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Dsp::update_origin(signed("Origin"), None, None, None),
			Error::<Test>::OriginNotRegistered
		);
		assert_ok!(Dsp::register_origin(signed("Origin"), key("Origin").public(), vec![], vec![]));
		assert_noop!(
			Dsp::update_origin(signed("Origin"), None, None, Some(vec![1; 17])),
			Error::<Test>::MetadataTooLong
		);
		assert_noop!(
			Dsp::update_origin(
				signed("Origin"),
				None,
				Some(vec![key("A").public(), key("A").public()]),
				None
			),
			Error::<Test>::DuplicatePassSigner
		);
		assert_ok!(Dsp::retire_origin(signed("Origin")));
		assert_noop!(
			Dsp::update_origin(signed("Origin"), None, None, None),
			Error::<Test>::OriginRetired
		);
	});
}

#[test]
fn retire_origin_works_and_schedules_full_withdrawal() {
	new_test_ext().execute_with(|| {
		origin_with_stream(1, 100, 0);
		assert_ok!(Dsp::fund_escrow(signed("Origin"), 1_000));
		assert_ok!(Dsp::close_stream(signed("Origin"), 0));
		assert_ok!(Dsp::retire_origin(signed("Origin")));
		let unlocks_at = 1 + Dsp::escrow_lock_period();
		assert_eq!(unlocks_at, 1 + (CLAIM_WINDOW as u64 + 1) * EPOCH_LENGTH + ESCROW_FREEZE);
		let info = Origins::<Test>::get(account("Origin")).unwrap();
		assert_eq!(info.retired_at, Some(1));
		assert_eq!(
			info.pending_withdrawal,
			Some(PendingWithdrawal { amount: 1_000, requested_epoch: 0, unlocks_at })
		);
		assert_eq!(held(HoldReason::Deposit, "Origin"), 0);
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::OriginRetired {
				origin: account("Origin"),
				escrow_unlocks_at: unlocks_at
			})
		);
		// New business is refused; the escrow comes back after the lock and the record goes.
		assert_noop!(Dsp::fund_escrow(signed("Origin"), 1), Error::<Test>::OriginRetired);
		assert_noop!(
			Dsp::create_stream(signed("Origin"), 1, 1, 1, 1),
			Error::<Test>::OriginRetired
		);
		run_to_block(unlocks_at);
		assert_ok!(Dsp::withdraw_escrow(signed("Origin")));
		assert!(Origins::<Test>::get(account("Origin")).is_none());
		assert_eq!(free("Origin"), ENDOWMENT);
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::OriginRemoved { origin: account("Origin") })
		);
	});
}

#[test]
fn retire_origin_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(Dsp::retire_origin(signed("Origin")), Error::<Test>::OriginNotRegistered);
		origin_with_stream(1, 100, 0);
		assert_noop!(Dsp::retire_origin(signed("Origin")), Error::<Test>::OriginHasOpenStreams);
		assert_ok!(Dsp::close_stream(signed("Origin"), 0));
		assert_ok!(Dsp::retire_origin(signed("Origin")));
		assert_noop!(Dsp::retire_origin(signed("Origin")), Error::<Test>::OriginRetired);
	});
}

#[test]
fn fund_escrow_works() {
	new_test_ext().execute_with(|| {
		origin_with_stream(1, 100, 0);
		assert_ok!(Dsp::fund_escrow(signed("Origin"), 500));
		assert_ok!(Dsp::fund_escrow(signed("Origin"), 250));
		assert_eq!(Dsp::escrow_of(&account("Origin")), 750);
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::EscrowFunded {
				origin: account("Origin"),
				amount: 250,
				escrow: 750
			})
		);
	});
}

#[test]
fn fund_escrow_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(Dsp::fund_escrow(signed("Origin"), 5), Error::<Test>::OriginNotRegistered);
		origin_with_stream(1, 100, 0);
		assert_noop!(Dsp::fund_escrow(signed("Origin"), 0), Error::<Test>::ZeroAmount);
		assert_noop!(
			Dsp::fund_escrow(signed("Origin"), ENDOWMENT),
			Error::<Test>::InsufficientBalance
		);
	});
}

#[test]
fn escrow_withdrawal_works_only_after_the_lock() {
	new_test_ext().execute_with(|| {
		origin_with_stream(1, 100, 0);
		assert_ok!(Dsp::fund_escrow(signed("Origin"), 1_000));
		assert_ok!(Dsp::request_escrow_withdrawal(signed("Origin"), 600));
		let unlocks_at = 1 + Dsp::escrow_lock_period();
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::EscrowWithdrawalRequested {
				origin: account("Origin"),
				amount: 600,
				unlocks_at
			})
		);
		run_to_block(unlocks_at - 1);
		assert_noop!(Dsp::withdraw_escrow(signed("Origin")), Error::<Test>::WithdrawalLocked);
		run_to_block(unlocks_at);
		let before = free("Origin");
		assert_ok!(Dsp::withdraw_escrow(signed("Origin")));
		assert_eq!(free("Origin"), before + 600);
		assert_eq!(Dsp::escrow_of(&account("Origin")), 400);
		assert!(Origins::<Test>::get(account("Origin")).unwrap().pending_withdrawal.is_none());
		assert_noop!(Dsp::withdraw_escrow(signed("Origin")), Error::<Test>::NoPendingWithdrawal);
	});
}

#[test]
fn a_withdrawal_takes_only_uncommitted_escrow() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(10, 1_000, 1_000);
		assert_ok!(Dsp::fund_escrow(signed("Origin"), 500));
		// Only the uncommitted 500 can be asked for.
		assert_noop!(
			Dsp::request_escrow_withdrawal(signed("Origin"), 501),
			Error::<Test>::InsufficientEscrow
		);
		assert_ok!(Dsp::request_escrow_withdrawal(signed("Origin"), 500));
		// A claim for already-served traffic lands, from the commitment.
		claim_one("Seeder", "Viewer", stream, 1_000, 30);
		assert_eq!(epoch_left(stream, 0), 700);
		assert_eq!(Dsp::escrow_of(&account("Origin")), 500);
		run_to_block(1 + Dsp::escrow_lock_period());
		assert_ok!(Dsp::withdraw_escrow(signed("Origin")));
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::EscrowWithdrawn { origin: account("Origin"), amount: 500 })
		);
		assert_eq!(Dsp::escrow_of(&account("Origin")), 0);
		assert_eq!(committed_total(), 3_000 - 300);
	});
}

#[test]
fn request_escrow_withdrawal_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Dsp::request_escrow_withdrawal(signed("Origin"), 1),
			Error::<Test>::OriginNotRegistered
		);
		origin_with_stream(1, 100, 100);
		assert_noop!(
			Dsp::request_escrow_withdrawal(signed("Origin"), 0),
			Error::<Test>::ZeroAmount
		);
		assert_noop!(
			Dsp::request_escrow_withdrawal(signed("Origin"), 101),
			Error::<Test>::InsufficientEscrow
		);
		assert_noop!(Dsp::withdraw_escrow(signed("Seeder")), Error::<Test>::OriginNotRegistered);
	});
}

// ---------------------------------------------------------------------------------------------
// Streams

#[test]
fn create_stream_works() {
	new_test_ext().execute_with(|| {
		let first = origin_with_stream(7, 100, 0);
		assert_eq!(first, 0);
		assert_ok!(Dsp::create_stream(signed("Origin"), 1_000, 3, 50, 99));
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::StreamCreated { stream: 1, origin: account("Origin") })
		);
		let s = Streams::<Test>::get(1).unwrap();
		assert_eq!(
			(s.bitrate_kbps, s.price_per_unit, s.viewer_cap_per_epoch, s.epoch_budget, s.is_open()),
			(1_000, 3, 50, 99, true)
		);
		assert_eq!(s.escrow.total(), 0);
		assert_eq!(held(HoldReason::Deposit, "Origin"), ORIGIN_DEPOSIT + 2 * STREAM_DEPOSIT);
		assert_eq!(Origins::<Test>::get(account("Origin")).unwrap().open_streams, 2);
	});
}

#[test]
fn create_stream_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Dsp::create_stream(signed("Origin"), 500, 1, 1, 1),
			Error::<Test>::OriginNotRegistered
		);
		origin_with_stream(1, 1, 0);
		for (bitrate, cap, budget) in [(0, 1, 1), (500, 0, 1), (500, 1, 0)] {
			assert_noop!(
				Dsp::create_stream(signed("Origin"), bitrate, 1, cap, budget),
				Error::<Test>::InvalidStreamParameters
			);
		}
		assert_ok!(Dsp::create_stream(signed("Origin"), 500, 1, 1, 1));
		assert_noop!(
			Dsp::create_stream(signed("Origin"), 500, 1, 1, 1),
			Error::<Test>::TooManyStreams
		);
	});
}

#[test]
fn fund_stream_works_and_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(Dsp::fund_stream(signed("Origin"), 0, 1), Error::<Test>::UnknownStream);
		let stream = origin_with_stream(1, 1, 0);
		assert_ok!(Dsp::fund_escrow(signed("Origin"), 1_000));
		let pot = Balances::balance(&Dsp::account_id());
		assert_noop!(Dsp::fund_stream(signed("Origin"), stream, 0), Error::<Test>::ZeroAmount);
		assert_noop!(Dsp::fund_stream(signed("Seeder"), stream, 1), Error::<Test>::NotStreamOwner);
		assert_noop!(
			Dsp::fund_stream(signed("Origin"), stream, 1_001),
			Error::<Test>::InsufficientEscrow
		);
		assert_ok!(Dsp::fund_stream(signed("Origin"), stream, 400));
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::StreamFunded { stream, amount: 400, committed: 400 })
		);
		// The commitment left the origin's escrow for the pallet account.
		assert_eq!(Dsp::escrow_of(&account("Origin")), 600);
		assert_eq!(Balances::balance(&Dsp::account_id()), pot + 400);
		assert_ok!(Dsp::close_stream(signed("Origin"), stream));
		assert_noop!(Dsp::fund_stream(signed("Origin"), stream, 1), Error::<Test>::StreamClosed);
	});
}

#[test]
fn release_stream_escrow_works_only_after_the_last_claim_window() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 100);
		claim_one("Seeder", "Viewer", stream, 1_000, 30);
		assert_noop!(
			Dsp::release_stream_escrow(signed("Origin"), stream),
			Error::<Test>::StreamStillClaimable
		);
		assert_ok!(Dsp::close_stream(signed("Origin"), stream));
		// Claims for the closing epoch are accepted through its window: no release yet.
		run_to_block(EPOCH_LENGTH * (CLAIM_WINDOW as u64 + 1) - 1);
		assert_noop!(
			Dsp::release_stream_escrow(signed("Origin"), stream),
			Error::<Test>::StreamStillClaimable
		);
		claim_one("Seeder", "Viewer", stream, 1_000, 50);
		run_to_block(EPOCH_LENGTH * (CLAIM_WINDOW as u64 + 1));
		assert_noop!(
			Dsp::release_stream_escrow(signed("Seeder"), stream),
			Error::<Test>::NotStreamOwner
		);
		let before = free("Origin");
		assert_ok!(Dsp::release_stream_escrow(signed("Origin"), stream));
		assert_eq!(free("Origin"), before + 300 - 50);
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::StreamEscrowReleased {
				stream,
				origin: account("Origin"),
				amount: 250
			})
		);
		assert_noop!(
			Dsp::release_stream_escrow(signed("Origin"), stream),
			Error::<Test>::ZeroAmount
		);
	});
}

#[test]
fn close_stream_works_and_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(Dsp::close_stream(signed("Origin"), 0), Error::<Test>::UnknownStream);
		let stream = origin_with_stream(1, 1, 0);
		assert_noop!(Dsp::close_stream(signed("Seeder"), stream), Error::<Test>::NotStreamOwner);
		assert_ok!(Dsp::close_stream(signed("Origin"), stream));
		assert_eq!(last_event(), RuntimeEvent::Dsp(Event::StreamClosed { stream }));
		assert!(!Streams::<Test>::get(stream).unwrap().is_open());
		assert_eq!(held(HoldReason::Deposit, "Origin"), ORIGIN_DEPOSIT);
		assert_eq!(Origins::<Test>::get(account("Origin")).unwrap().open_streams, 0);
		assert_noop!(Dsp::close_stream(signed("Origin"), stream), Error::<Test>::StreamClosed);
	});
}

// ---------------------------------------------------------------------------------------------
// Streamers and settings

#[test]
fn register_streamer_works() {
	new_test_ext().execute_with(|| {
		assert_ok!(Dsp::register_streamer(signed("Streamer"), endpoints("127.0.0.1:7000"), None));
		assert_eq!(held(HoldReason::Deposit, "Streamer"), STREAMER_DEPOSIT);
		let view = Dsp::api_streamer(account("Streamer")).unwrap();
		assert_eq!(view.endpoints, endpoints("127.0.0.1:7000"));
		assert!(view.uses_default);
		assert_eq!(view.p2p_threshold, 2000);
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::StreamerRegistered { streamer: account("Streamer") })
		);
	});
}

#[test]
fn register_streamer_fails() {
	new_test_ext().execute_with(|| {
		let long = "x".repeat(MAX_ENDPOINT_LEN as usize + 1);
		assert_noop!(
			Dsp::register_streamer(signed("Streamer"), endpoints(&long), None),
			Error::<Test>::EndpointTooLong
		);
		assert_noop!(
			Dsp::register_streamer(signed("Streamer"), endpoints("a:1"), Some(settings(0, 0))),
			Error::<Test>::InvalidSettings
		);
		assert_noop!(
			Dsp::register_streamer(signed("Poor"), endpoints("a:1"), None),
			Error::<Test>::InsufficientBalance
		);
		assert_ok!(Dsp::register_streamer(signed("Streamer"), endpoints("a:1"), None));
		assert_noop!(
			Dsp::register_streamer(signed("Streamer"), endpoints("a:1"), None),
			Error::<Test>::StreamerAlreadyRegistered
		);
	});
}

#[test]
fn update_streamer_endpoints_works_and_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Dsp::update_streamer_endpoints(signed("Streamer"), endpoints("b:2")),
			Error::<Test>::StreamerNotRegistered
		);
		assert_ok!(Dsp::register_streamer(signed("Streamer"), endpoints("a:1"), None));
		assert_ok!(Dsp::update_streamer_endpoints(signed("Streamer"), endpoints("b:2")));
		assert_eq!(Dsp::api_streamer(account("Streamer")).unwrap().endpoints, endpoints("b:2"));
		assert_noop!(
			Dsp::update_streamer_endpoints(signed("Streamer"), endpoints(&"y".repeat(40))),
			Error::<Test>::EndpointTooLong
		);
	});
}

#[test]
fn set_streamer_settings_works_with_the_specification_table() {
	new_test_ext().execute_with(|| {
		assert_ok!(Dsp::register_streamer(signed("Streamer"), endpoints("a:1"), None));
		for (percent, threshold) in [(0, 2000), (50, 1000), (100, 0)] {
			assert_ok!(Dsp::set_streamer_settings(
				signed("Streamer"),
				Some(settings(2000, percent))
			));
			assert_eq!(Dsp::api_p2p_threshold(account("Streamer")), Some(threshold));
			assert_eq!(
				last_event(),
				RuntimeEvent::Dsp(Event::StreamerSettingsChanged {
					streamer: account("Streamer"),
					settings: Some(settings(2000, percent))
				})
			);
		}
		// Back to the chain-wide default.
		assert_ok!(Dsp::set_streamer_settings(signed("Streamer"), None));
		assert!(Dsp::api_streamer(account("Streamer")).unwrap().uses_default);
		assert_eq!(Dsp::api_p2p_threshold(account("Seeder")), None);
	});
}

#[test]
fn set_streamer_settings_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Dsp::set_streamer_settings(signed("Streamer"), None),
			Error::<Test>::StreamerNotRegistered
		);
		assert_ok!(Dsp::register_streamer(signed("Streamer"), endpoints("a:1"), None));
		assert_noop!(
			Dsp::set_streamer_settings(signed("Streamer"), Some(settings(0, 10))),
			Error::<Test>::InvalidSettings
		);
	});
}

#[test]
fn unregister_streamer_works_and_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Dsp::unregister_streamer(signed("Streamer")),
			Error::<Test>::StreamerNotRegistered
		);
		assert_ok!(Dsp::register_streamer(signed("Streamer"), endpoints("a:1"), None));
		assert_ok!(Dsp::unregister_streamer(signed("Streamer")));
		assert_eq!(held(HoldReason::Deposit, "Streamer"), 0);
		assert_eq!(free("Streamer"), ENDOWMENT);
		assert!(Dsp::api_streamer(account("Streamer")).is_none());
	});
}

#[test]
fn streamers_are_read_in_bounded_pages() {
	new_test_ext().execute_with(|| {
		for name in ["Streamer", "Seeder", "Seeder2"] {
			assert_ok!(Dsp::register_streamer(signed(name), endpoints("a:1"), None));
		}
		let first = Dsp::api_streamers(None, 2);
		assert_eq!(first.len(), 2);
		let rest = Dsp::api_streamers(Some(first[1].account.clone()), 2);
		assert_eq!(rest.len(), 1, "a short page: the last one");
		let mut all: Vec<_> = first.iter().chain(&rest).map(|s| s.account.clone()).collect();
		all.sort();
		all.dedup();
		assert_eq!(all.len(), 3);
		// A limit above the page size is cut to it.
		assert_eq!(Dsp::api_streamers(None, u32::MAX).len(), 3);
	});
}

#[test]
fn set_default_settings_works_and_streamers_follow_it() {
	new_test_ext().execute_with(|| {
		assert_ok!(Dsp::register_streamer(signed("Streamer"), endpoints("a:1"), None));
		assert_ok!(Dsp::set_default_settings(RuntimeOrigin::root(), settings(2000, 50)));
		assert_eq!(Dsp::api_default_settings(), settings(2000, 50));
		assert_eq!(Dsp::api_p2p_threshold(account("Streamer")), Some(1000));
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::DefaultSettingsChanged { settings: settings(2000, 50) })
		);
	});
}

#[test]
fn set_default_settings_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(
			Dsp::set_default_settings(signed("Origin"), settings(10, 0)),
			DispatchError::BadOrigin
		);
		assert_noop!(
			Dsp::set_default_settings(RuntimeOrigin::root(), settings(0, 0)),
			Error::<Test>::InvalidSettings
		);
	});
}

// ---------------------------------------------------------------------------------------------
// Claims

#[test]
fn claim_works_and_moves_escrow_to_credits_without_minting() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(3, 1_000, 10_000);
		let issuance = Balances::total_issuance();
		let pot_before = Balances::balance(&Dsp::account_id());
		claim_one("Seeder", "Viewer", stream, 500, 40);

		// The epoch's budget paid it; the money was already in the pallet account.
		assert_eq!(epoch_left(stream, 0), 10_000 - 120);
		assert_eq!(committed_total(), 3 * 10_000 - 120);
		assert_eq!(Balances::balance(&Dsp::account_id()), pot_before);
		assert_eq!(Balances::total_issuance(), issuance);
		let credits = Dsp::api_credits(account("Seeder"));
		assert_eq!(
			(credits.available, credits.earned_total, credits.units_total, credits.items_paid),
			(120, 120, 40, 1)
		);
		let state = Dsp::api_claim_state(stream, 0, key("Viewer").public(), account("Seeder"));
		assert_eq!(
			(state.claimed_units, state.viewer_epoch_units, state.claimable),
			(40, 40, true)
		);
		System::assert_has_event(RuntimeEvent::Dsp(Event::Claimed {
			seeder: account("Seeder"),
			stream,
			epoch: 0,
			viewer: key("Viewer").public(),
			units: 40,
			amount: 120,
		}));
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::ClaimBatchProcessed {
				seeder: account("Seeder"),
				paid_items: 1,
				rejected_items: 0,
				amount: 120
			})
		);
	});
}

#[test]
fn claim_pays_only_the_increase_and_rejects_replays() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		claim_one("Seeder", "Viewer", stream, 500, 40);
		claim_one("Seeder", "Viewer", stream, 500, 100);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 100);
		// The same receipt again, and an older one: nothing new.
		claim_one("Seeder", "Viewer", stream, 500, 100);
		claim_one("Seeder", "Viewer", stream, 500, 40);
		assert_eq!(
			rejections(),
			vec![(0, ClaimRejection::NothingNew), (0, ClaimRejection::NothingNew)]
		);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 100);
		assert_eq!(epoch_left(stream, 0), 10_000 - 100);
	});
}

/// Claims `item` for "Seeder" and returns the single rejection reason; asserts nothing paid.
fn rejected(item: ClaimItem) -> ClaimRejection {
	let committed = committed_total();
	assert_ok!(Dsp::claim(signed("Seeder"), vec![item]));
	assert_eq!(committed_total(), committed, "a rejected item paid something");
	let all = rejections();
	let (index, reason) = *all.last().expect("a rejection");
	assert_eq!(index, 0);
	reason
}

#[test]
fn claim_rejects_forged_pass_signature() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		let mut it = item(&key("Issuer"), &key("Viewer"), &account("Seeder"), stream, 0, 500, 10);
		// Signed by someone else while naming the authorised issuer.
		it.pass = Signed::sign(it.pass.payload.clone(), &key("Mallory"));
		assert_eq!(rejected(it.clone()), ClaimRejection::BadPassSignature);
		// A valid signature over different content does not transfer either.
		let mut bigger = it.pass.payload.clone();
		bigger.max_units = 1;
		let sig = Signed::sign(bigger, &key("Issuer")).signature;
		it.pass.signature = sig;
		assert_eq!(rejected(it), ClaimRejection::BadPassSignature);
	});
}

#[test]
fn claim_rejects_pass_of_unauthorised_issuer() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		let it = item(&key("Mallory"), &key("Viewer"), &account("Seeder"), stream, 0, 500, 10);
		assert_eq!(rejected(it), ClaimRejection::UnauthorisedIssuer);
	});
}

#[test]
fn claim_rejects_forged_receipt_signature() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		let mut it = item(&key("Issuer"), &key("Viewer"), &account("Seeder"), stream, 0, 500, 10);
		it.receipt = Signed::sign(it.receipt.payload.clone(), &key("Seeder"));
		assert_eq!(rejected(it), ClaimRejection::BadReceiptSignature);
	});
}

#[test]
fn claim_rejects_wrong_genesis_hash() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		let viewer = key("Viewer");
		let mut pass = sign_pass(&key("Issuer"), stream, 0, &viewer, 500).payload;
		pass.genesis_hash = [0xAB; 32];
		let mut receipt = sign_receipt(&viewer, stream, 0, &account("Seeder"), 10).payload;
		receipt.genesis_hash = [0xAB; 32];
		let it = ClaimItem {
			pass: Signed::sign(pass, &key("Issuer")),
			receipt: Signed::sign(receipt, &viewer),
		};
		assert_eq!(rejected(it), ClaimRejection::WrongGenesis);
	});
}

#[test]
fn claim_rejects_wrong_domain_tag() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		let viewer = key("Viewer");
		let good = item(&key("Issuer"), &viewer, &account("Seeder"), stream, 0, 500, 10);
		// The same pass fields signed under the receipt's domain tag.
		let wrong_tag = (<Receipt as Signable>::DOMAIN, &good.pass.payload)
			.using_encoded(|m| key("Issuer").sign(m));
		let mut it = good.clone();
		it.pass.signature = wrong_tag;
		assert_eq!(rejected(it), ClaimRejection::BadPassSignature);
		// And the receipt signed without any tag.
		let mut it = good;
		it.receipt.signature = key("Viewer").sign(&codec::Encode::encode(&it.receipt.payload));
		assert_eq!(rejected(it), ClaimRejection::BadReceiptSignature);
	});
}

use codec::Encode as _;

#[test]
fn claim_caps_a_second_seeder_by_the_viewers_epoch_total() {
	new_test_ext().execute_with(|| {
		// Stream cap 100 units per viewer and epoch; the pass allows 500.
		let stream = origin_with_stream(1, 100, 10_000);
		claim_one("Seeder", "Viewer", stream, 500, 70);
		claim_one("Seeder2", "Viewer", stream, 500, 70);
		assert_eq!(Dsp::api_credits(account("Seeder2")).units_total, 30);
		let state = Dsp::api_claim_state(stream, 0, key("Viewer").public(), account("Seeder2"));
		assert_eq!(state.viewer_epoch_units, 100);
		// Any further receipt for this viewer pays nothing.
		let it = item(&key("Issuer"), &key("Viewer"), &account("Seeder"), stream, 0, 500, 90);
		assert_eq!(rejected(it), ClaimRejection::CapReached);
	});
}

#[test]
fn claim_caps_by_the_pass() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		claim_one("Seeder", "Viewer", stream, 25, 70);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 25);
	});
}

#[test]
fn claim_rejects_self_dealing_wrong_seeder_and_mismatch() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		// The seeder's own key as the viewer.
		let it = item(&key("Issuer"), &key("Seeder"), &account("Seeder"), stream, 0, 500, 10);
		assert_eq!(rejected(it), ClaimRejection::SelfDealing);
		// A receipt made out to another seeder.
		let it = item(&key("Issuer"), &key("Viewer"), &account("Seeder2"), stream, 0, 500, 10);
		assert_eq!(rejected(it), ClaimRejection::WrongSeeder);
		// Pass and receipt of different viewers.
		let mut it = item(&key("Issuer"), &key("Viewer"), &account("Seeder"), stream, 0, 500, 10);
		it.receipt = sign_receipt(&key("Viewer2"), stream, 0, &account("Seeder"), 10);
		assert_eq!(rejected(it), ClaimRejection::Mismatch);
		// A stream that does not exist.
		let it = item(&key("Issuer"), &key("Viewer"), &account("Seeder"), 99, 0, 500, 10);
		assert_eq!(rejected(it), ClaimRejection::UnknownStream);
	});
}

#[test]
fn claim_rejects_epochs_outside_the_window() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		// Epoch 1 has not started.
		let it = item(&key("Issuer"), &key("Viewer"), &account("Seeder"), stream, 1, 500, 10);
		assert_eq!(rejected(it), ClaimRejection::OutsideClaimWindow);
		// Last block of epoch 0 + CLAIM_WINDOW: still accepted.
		run_to_block(EPOCH_LENGTH * (CLAIM_WINDOW as u64 + 1) - 1);
		claim_one("Seeder", "Viewer", stream, 500, 10);
		// First block after the window: refused.
		run_to_block(EPOCH_LENGTH * (CLAIM_WINDOW as u64 + 1));
		let it = item(&key("Issuer"), &key("Viewer"), &account("Seeder"), stream, 0, 500, 20);
		assert_eq!(rejected(it), ClaimRejection::OutsideClaimWindow);
	});
}

#[test]
fn claim_pays_what_is_left_of_the_epoch_budget() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(10, 1_000, 250);
		claim_one("Seeder", "Viewer", stream, 1_000, 40);
		// The epoch's 250 pays 25 units of 40.
		assert_eq!(epoch_left(stream, 0), 0);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 25);
		System::assert_has_event(RuntimeEvent::Dsp(Event::EscrowExhausted {
			origin: account("Origin"),
			stream,
			unpaid_units: 15,
		}));
		// Nothing left this epoch: the item is rejected, whatever the origin commits now.
		let it = item(&key("Issuer"), &key("Viewer"), &account("Seeder"), stream, 0, 1_000, 40);
		assert_eq!(rejected(it), ClaimRejection::EscrowExhausted);
		// The next epoch has its own budget.
		run_to_block(EPOCH_LENGTH);
		claim_one_at("Seeder", "Viewer", stream, 1, 20);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 45);
		assert_eq!(epoch_left(stream, 1), 50);
	});
}

#[test]
fn claim_skips_invalid_items_in_a_mixed_batch() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(2, 1_000, 10_000);
		let seeder = account("Seeder");
		let mut forged = item(&key("Issuer"), &key("V2"), &seeder, stream, 0, 500, 10);
		forged.receipt = Signed::sign(forged.receipt.payload.clone(), &key("Mallory"));
		let batch = vec![
			item(&key("Issuer"), &key("V1"), &seeder, stream, 0, 500, 10),
			forged,
			item(&key("Mallory"), &key("V3"), &seeder, stream, 0, 500, 10),
			item(&key("Issuer"), &key("V4"), &seeder, stream, 0, 500, 5),
		];
		assert_ok!(Dsp::claim(signed("Seeder"), batch));
		assert_eq!(
			rejections(),
			vec![(1, ClaimRejection::BadReceiptSignature), (2, ClaimRejection::UnauthorisedIssuer)]
		);
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::ClaimBatchProcessed {
				seeder,
				paid_items: 2,
				rejected_items: 2,
				amount: 30
			})
		);
	});
}

#[test]
fn claim_fails_on_empty_or_oversized_batches() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		assert_noop!(Dsp::claim(signed("Seeder"), vec![]), Error::<Test>::EmptyBatch);
		let batch: Vec<_> = (0..=MAX_CLAIM_BATCH)
			.map(|i| {
				item(&key("Issuer"), &key(&format!("V{i}")), &account("Seeder"), stream, 0, 5, 5)
			})
			.collect();
		assert_noop!(Dsp::claim(signed("Seeder"), batch), Error::<Test>::BatchTooLarge);
	});
}

#[test]
fn claim_settles_closed_streams_within_the_window() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		assert_ok!(Dsp::close_stream(signed("Origin"), stream));
		claim_one("Seeder", "Viewer", stream, 500, 10);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 10);
	});
}

#[test]
fn withdraw_credits_works_and_fails() {
	new_test_ext().execute_with(|| {
		assert_noop!(Dsp::withdraw_credits(signed("Seeder"), None), Error::<Test>::ZeroAmount);
		let stream = origin_with_stream(5, 1_000, 10_000);
		claim_one("Seeder", "Viewer", stream, 500, 20);
		assert_noop!(
			Dsp::withdraw_credits(signed("Seeder"), Some(101)),
			Error::<Test>::InsufficientCredits
		);
		let before = free("Seeder");
		assert_ok!(Dsp::withdraw_credits(signed("Seeder"), Some(40)));
		assert_eq!(free("Seeder"), before + 40);
		assert_ok!(Dsp::withdraw_credits(signed("Seeder"), None));
		assert_eq!(free("Seeder"), before + 100);
		let c = Dsp::api_credits(account("Seeder"));
		assert_eq!((c.available, c.earned_total), (0, 100));
		assert_eq!(
			last_event(),
			RuntimeEvent::Dsp(Event::CreditsWithdrawn { account: account("Seeder"), amount: 60 })
		);
		// The pot keeps its existential deposit and the stream commitments.
		assert_eq!(Balances::balance(&Dsp::account_id()), 1 + committed_total());
	});
}

// ---------------------------------------------------------------------------------------------
// Pruning

fn bookkeeping_entries(epoch: u32) -> usize {
	ClaimedUnits::<Test>::iter_prefix((epoch,)).count()
		+ ViewerEpochUnits::<Test>::iter_prefix((epoch,)).count()
}

#[test]
fn finished_epochs_are_pruned_in_bounded_steps() {
	let mut ext = new_test_ext();
	ext.execute_with(|| {
		let stream = origin_with_stream(1, 1_000, 10_000);
		for v in 0..4 {
			claim_one("Seeder", &format!("V{v}"), stream, 500, 10);
		}
		assert_eq!(bookkeeping_entries(0), 8);
		// While claimable, nothing is pruned.
		run_to_block(EPOCH_LENGTH * (CLAIM_WINDOW as u64 + 1) - 1);
		assert_eq!(bookkeeping_entries(0), 8);
	});
	// Removal limits count keys in the backend, as on a real chain, not in the overlay.
	ext.commit_all().unwrap();
	ext.execute_with(|| {
		// Once the window closed, a small budget removes a few entries per block.
		System::set_block_number(EPOCH_LENGTH * (CLAIM_WINDOW as u64 + 1));
		let db = <<Test as frame_system::Config>::DbWeight as Get<
			frame_support::weights::RuntimeDbWeight,
		>>::get();
		let three_items = db.reads(2) + (db.reads(1) + db.writes(1)) * 3;
		let used = Dsp::prune_finished_epochs(three_items);
		assert!(used.all_lte(three_items + db.writes(1)));
		assert_eq!(bookkeeping_entries(0), 5);
		assert_eq!(NextEpochToPrune::<Test>::get(), 0);
		// Too little weight for one item: nothing happens.
		assert_eq!(Dsp::prune_finished_epochs(Weight::from_parts(1, 1)), Weight::zero());
		assert_eq!(bookkeeping_entries(0), 5);

		Dsp::prune_finished_epochs(Weight::MAX);
		assert_eq!(bookkeeping_entries(0), 0);
		assert_eq!(NextEpochToPrune::<Test>::get(), 1);
		System::assert_has_event(RuntimeEvent::Dsp(Event::EpochPruned { epoch: 0 }));
		// Credits are not bookkeeping: they stay.
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 40);
	});
}

#[test]
fn genesis_builds_registrations() {
	let mut storage = frame_system::GenesisConfig::<Test>::default().build_storage().unwrap();
	pallet_balances::GenesisConfig::<Test> {
		balances: vec![(account("Origin"), ENDOWMENT)],
		..Default::default()
	}
	.assimilate_storage(&mut storage)
	.unwrap();
	crate::GenesisConfig::<Test> {
		default_settings: settings(10, 50),
		origins: vec![(
			account("Origin"),
			key("Origin").public(),
			vec![key("Issuer").public()],
			5_000,
			b"genesis".to_vec(),
		)],
		streams: vec![(account("Origin"), 500, 7, 1_000, 70, 2_100)],
		streamers: vec![(account("Origin"), endpoints("127.0.0.1:7000"), None)],
	}
	.assimilate_storage(&mut storage)
	.unwrap();
	sp_io::TestExternalities::new(storage).execute_with(|| {
		assert_eq!(Dsp::escrow_of(&account("Origin")), 5_000);
		assert_eq!(Dsp::api_stream(0).unwrap().price_per_unit, 7);
		assert_eq!(Dsp::api_stream(0).unwrap().signing_key, key("Origin").public());
		let view = Dsp::api_stream(0).unwrap();
		assert_eq!((view.epoch_budget, view.committed, view.epoch_left), (70, 2_100, 70));
		assert!(view.passes_open);
		assert_eq!(Dsp::api_p2p_threshold(account("Origin")), Some(5));
		assert_eq!(Dsp::api_origin(account("Origin")).unwrap().open_streams, 1);
		assert_eq!(Dsp::api_streamers(None, 10).len(), 1);
		assert!(Balances::balance(&Dsp::account_id()) >= 1);
	});
}

#[test]
fn accounts_are_the_raw_sr25519_keys() {
	// Receipts name seeders by raw account bytes; viewers are raw sr25519 keys.
	let who: AccountId32 = key("Seeder").public().into();
	let bytes: [u8; 32] = who.into();
	assert_eq!(bytes, key("Seeder").public().0);
}

// ---------------------------------------------------------------------------------------------
// Rules that keep an origin from escaping payment

#[test]
fn a_withdrawal_not_executed_within_an_epoch_of_unlocking_expires() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 10_000, 1_000);
		assert_ok!(Dsp::fund_escrow(signed("Origin"), 1_000));
		assert_ok!(Dsp::request_escrow_withdrawal(signed("Origin"), 1_000));
		let unlocks_at = 1 + Dsp::escrow_lock_period();
		run_to_block(unlocks_at + EPOCH_LENGTH + 1);
		// An armed request cannot wait for a better moment and then execute.
		assert_noop!(Dsp::withdraw_escrow(signed("Origin")), Error::<Test>::WithdrawalExpired);
		// Claims never depended on it: the stream's budget pays.
		let epoch = Dsp::current_epoch();
		let it = item(&key("Issuer"), &key("V1"), &account("Seeder"), stream, epoch, 500, 300);
		assert_ok!(Dsp::claim(signed("Seeder"), vec![it]));
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 300);
		// A new request starts a new wait.
		assert_ok!(Dsp::request_escrow_withdrawal(signed("Origin"), 700));
		assert_noop!(Dsp::withdraw_escrow(signed("Origin")), Error::<Test>::WithdrawalLocked);
	});
}

#[test]
fn a_removed_pass_signer_still_pays_for_passes_it_issued() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 10_000, 10_000);
		assert_ok!(Dsp::update_origin(
			signed("Origin"),
			None,
			Some(vec![key("Issuer2").public()]),
			None
		));
		assert_eq!(RevokedSigners::<Test>::get(account("Origin"), key("Issuer").public()), Some(0));
		// Its passes of the epoch it was removed in are still paid.
		claim_one("Seeder", "V1", stream, 500, 10);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 10);
		// Not those of later epochs.
		run_to_block(EPOCH_LENGTH);
		let it = item(&key("Issuer"), &key("V2"), &account("Seeder"), stream, 1, 500, 10);
		assert_eq!(rejected(it), ClaimRejection::UnauthorisedIssuer);
		// Re-authorising it lifts the revocation.
		assert_ok!(Dsp::update_origin(
			signed("Origin"),
			None,
			Some(vec![key("Issuer").public(), key("Issuer2").public()]),
			None
		));
		assert!(!RevokedSigners::<Test>::contains_key(account("Origin"), key("Issuer").public()));
		claim_one_at("Seeder", "V2", stream, 1, 10);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 20);
	});
}

fn claim_one_at(seeder: &str, viewer: &str, stream: u64, epoch: u32, units: u64) {
	let it = item(&key("Issuer"), &key(viewer), &account(seeder), stream, epoch, 500, units);
	assert_ok!(Dsp::claim(signed(seeder), vec![it]));
}

#[test]
fn a_closed_stream_pays_only_for_epochs_up_to_its_closing() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 10_000, 10_000);
		assert_ok!(Dsp::close_stream(signed("Origin"), stream));
		run_to_block(EPOCH_LENGTH);
		let it = item(&key("Issuer"), &key("V1"), &account("Seeder"), stream, 1, 500, 10);
		assert_eq!(rejected(it), ClaimRejection::StreamClosed);
		claim_one_at("Seeder", "V1", stream, 0, 10);
		assert_eq!(Dsp::api_credits(account("Seeder")).units_total, 10);
	});
}

#[test]
fn receipts_of_pruned_epochs_are_refused_even_inside_the_window() {
	new_test_ext().execute_with(|| {
		let stream = origin_with_stream(1, 10_000, 10_000);
		claim_one("Seeder", "V1", stream, 500, 10);
		// As if a runtime upgrade had widened the window after epoch 0 was pruned: its
		// bookkeeping is gone, so paying it again must be impossible.
		run_to_block(EPOCH_LENGTH);
		NextEpochToPrune::<Test>::put(1);
		let it = item(&key("Issuer"), &key("V1"), &account("Seeder"), stream, 0, 500, 20);
		assert_eq!(rejected(it), ClaimRejection::OutsideClaimWindow);
	});
}
