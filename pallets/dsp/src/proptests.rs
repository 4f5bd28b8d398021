//! Property tests of the credit system (issue 11): random sequences of calls by an honest and
//! a malicious origin, honest and colluding seeders, viewers and streamers, with the chain's
//! invariants checked after every step:
//!
//! 1. nothing is minted or burnt (total issuance constant), and the pallet account holds
//!    exactly the existential deposit, the unwithdrawn credits and the stream commitments;
//! 2. no origin is over-debited: its free and held balances, its streams' commitments and what
//!    claims paid out of them add up to what it started with;
//! 3. no unit is paid twice: per (epoch, stream, viewer, seeder), units paid equal the chain's
//!    bookkeeping and never exceed the highest receipt the viewer signed;
//! 4. per (stream, epoch), the payout is at most the stream's `epoch_budget`, and all paid out
//!    of an origin is at most the sum over its streams of `epoch_budget` times the epochs
//!    since the stream's creation;
//! 5. every honest claim made within the window for served traffic is paid in full, where
//!    "served" means what an honest streamer admitted: passes issued only while the stream's
//!    `passes_open` view was true, within the epoch budget and the per-viewer cap.
//!
//! Cases: [`CASES`] sequences of up to [`MAX_STEPS`] calls (under a minute in a debug build).

use crate::{mock::*, pallet::*, ClaimRejection, Event, HoldReason};
use dsp_primitives::{ClaimItem, EpochIndex, PublicKey, Receipt, Signed, StreamId, Units};
use frame_support::traits::fungible::{Inspect, InspectHold};
use proptest::prelude::*;
use sp_core::{sr25519, Pair};
use std::collections::{BTreeMap, HashMap};

/// Random call sequences per run; with [`MAX_STEPS`] they take about 30 s in a debug build.
const CASES: u32 = 48;
/// Longest call sequence.
const MAX_STEPS: usize = 40;

/// Origins: 0 honest, 1 malicious.
const ORIGINS: [&str; 2] = ["Origin", "Origin2"];
/// Pass-signer keys each origin may authorise (MaxPassSigners = 3 at a time).
const SIGNER_POOL: [[&str; 4]; 2] = [["H0", "H1", "H2", "H3"], ["E0", "E1", "E2", "E3"]];
/// Honest seeders, and the malicious origin's colluding seeder account.
const HONEST_SEEDERS: [&str; 2] = ["Seeder", "Streamer"];
const SOCK_SEEDER: &str = "Seeder2";
/// Viewer keys of honest viewers.
const VIEWERS: [&str; 3] = ["V0", "V1", "V2"];

/// Prices, caps and budgets at the edges and in between.
const PRICES: [Balance; 5] = [0, 1, 7, 1_000, 1_000_000_000_000];
const CAPS: [Units; 4] = [1, 10, 1_000_000, Units::MAX];
const BUDGETS: [Balance; 5] = [1, 100, 5_000, 200_000, Balance::MAX];

#[derive(Clone, Debug)]
enum Action {
	CreateStream {
		origin: usize,
		price: usize,
		cap: usize,
		budget: usize,
	},
	FundEscrow {
		origin: usize,
		amount: Balance,
	},
	FundStream {
		origin: usize,
		stream: usize,
		amount: Balance,
	},
	RequestWithdrawal {
		origin: usize,
		amount: Balance,
	},
	WithdrawEscrow {
		origin: usize,
	},
	CloseStream {
		origin: usize,
		stream: usize,
	},
	ReleaseStream {
		origin: usize,
		stream: usize,
	},
	Rotate {
		origin: usize,
		signers: Vec<usize>,
	},
	/// An honest streamer admits traffic: `seeder` relays `units` to `viewer` on `stream`.
	Serve {
		stream: usize,
		viewer: usize,
		seeder: usize,
		units: Units,
	},
	/// An honest seeder claims every receipt it holds (duplicated items included).
	HonestClaim {
		seeder: usize,
		duplicate: bool,
	},
	/// The malicious origin pays its colluding seeder with a pass it signs itself.
	SelfClaim {
		stream: usize,
		units: Units,
	},
	/// Forged, replayed or misdirected items by the colluding seeder.
	BadClaim {
		stream: usize,
		kind: u8,
	},
	WithdrawCredits {
		seeder: usize,
	},
	Advance {
		blocks: u64,
	},
}

fn action() -> impl Strategy<Value = Action> {
	let origin = 0..2usize;
	let amount = prop_oneof![Just(0u64), 1..1_000u64, 1_000..400_000u64];
	prop_oneof![
		1 => (origin.clone(), 0..PRICES.len(), 0..CAPS.len(), 0..BUDGETS.len())
			.prop_map(|(origin, price, cap, budget)| Action::CreateStream { origin, price, cap, budget }),
		1 => (origin.clone(), amount.clone()).prop_map(|(origin, amount)| Action::FundEscrow { origin, amount }),
		1 => (origin.clone(), 0..4usize, amount.clone())
			.prop_map(|(origin, stream, amount)| Action::FundStream { origin, stream, amount }),
		1 => (origin.clone(), amount).prop_map(|(origin, amount)| Action::RequestWithdrawal { origin, amount }),
		1 => origin.clone().prop_map(|origin| Action::WithdrawEscrow { origin }),
		1 => (origin.clone(), 0..4usize).prop_map(|(origin, stream)| Action::CloseStream { origin, stream }),
		1 => (origin.clone(), 0..4usize).prop_map(|(origin, stream)| Action::ReleaseStream { origin, stream }),
		1 => (origin, proptest::collection::vec(0..4usize, 0..4))
			.prop_map(|(origin, signers)| Action::Rotate { origin, signers }),
		4 => (0..4usize, 0..VIEWERS.len(), 0..HONEST_SEEDERS.len(), prop_oneof![1..50u64, 50..5_000u64])
			.prop_map(|(stream, viewer, seeder, units)| Action::Serve { stream, viewer, seeder, units }),
		3 => (0..HONEST_SEEDERS.len(), any::<bool>())
			.prop_map(|(seeder, duplicate)| Action::HonestClaim { seeder, duplicate }),
		2 => (0..4usize, prop_oneof![Just(1u64), 1..1_000_000u64, Just(Units::MAX)])
			.prop_map(|(stream, units)| Action::SelfClaim { stream, units }),
		1 => (0..4usize, 0..5u8).prop_map(|(stream, kind)| Action::BadClaim { stream, kind }),
		1 => (0..HONEST_SEEDERS.len()).prop_map(|seeder| Action::WithdrawCredits { seeder }),
		2 => prop_oneof![1..3u64, Just(EPOCH_LENGTH), Just(EPOCH_LENGTH * 3)]
			.prop_map(|blocks| Action::Advance { blocks }),
	]
}

/// Key pairs by name, derived once (hard derivation is slow in a debug build).
#[derive(Default)]
struct Keys(HashMap<String, sr25519::Pair>);

impl Keys {
	fn get(&mut self, name: &str) -> sr25519::Pair {
		self.0.entry(name.into()).or_insert_with(|| key(name)).clone()
	}
}

struct StreamModel {
	id: StreamId,
	origin: usize,
	price: Balance,
	cap: Units,
	budget: Balance,
	created: EpochIndex,
}

/// (epoch, stream, viewer, seeder): the key of the chain's `ClaimedUnits`.
type ClaimKey = (EpochIndex, StreamId, PublicKey, AccountId);

#[derive(Default)]
struct Model {
	keys: Keys,
	streams: Vec<StreamModel>,
	/// Current pass signers of each origin, as indexes into `SIGNER_POOL`.
	signers: [Vec<usize>; 2],
	/// What honest streamers admitted per (stream, epoch), in balance, and per viewer, in units.
	served: BTreeMap<(StreamId, EpochIndex), Balance>,
	served_viewer: BTreeMap<(StreamId, EpochIndex, PublicKey), Units>,
	/// The latest honest claim item per claim key, held by its seeder.
	honest: BTreeMap<ClaimKey, ClaimItem>,
	/// The highest receipt any viewer signed per claim key.
	max_signed: BTreeMap<ClaimKey, Units>,
	/// From `Claimed` events.
	paid_units: BTreeMap<ClaimKey, Units>,
	paid_stream_epoch: BTreeMap<(StreamId, EpochIndex), Balance>,
	paid_from: [Balance; 2],
	issuance: Balance,
}

fn origin_signed(i: usize) -> RuntimeOrigin {
	RuntimeOrigin::signed(account(ORIGINS[i]))
}

impl Model {
	fn new() -> Self {
		let mut m = Model { issuance: Balances::total_issuance(), ..Default::default() };
		for (i, name) in ORIGINS.iter().enumerate() {
			m.signers[i] = vec![0, 1];
			let signers = m.signers[i].iter().map(|s| key(SIGNER_POOL[i][*s]).public()).collect();
			Dsp::register_origin(origin_signed(i), key(name).public(), signers, vec![])
				.expect("registers");
			Dsp::fund_escrow(origin_signed(i), 300_000).expect("funds");
		}
		m
	}

	fn stream_of(&self, origin: usize, n: usize) -> Option<&StreamModel> {
		self.streams.iter().filter(|s| s.origin == origin).nth(n)
	}

	fn sign(
		&mut self,
		issuer: &str,
		viewer: &str,
		seeder: &AccountId,
		stream: StreamId,
		epoch: EpochIndex,
		max_units: Units,
		units: Units,
	) -> ClaimItem {
		let (issuer, viewer) = (self.keys.get(issuer), self.keys.get(viewer));
		let item = item(&issuer, &viewer, seeder, stream, epoch, max_units, units);
		let k = (epoch, stream, viewer.public(), seeder.clone());
		let max = self.max_signed.entry(k).or_default();
		*max = (*max).max(units);
		item
	}

	fn apply(&mut self, action: &Action) {
		let epoch = Dsp::current_epoch();
		match action.clone() {
			Action::CreateStream { origin, price, cap, budget } => {
				let (price, cap, budget) = (PRICES[price], CAPS[cap], BUDGETS[budget]);
				if Dsp::create_stream(origin_signed(origin), 500, price, cap, budget).is_ok() {
					let id = NextStreamId::<Test>::get() - 1;
					self.streams.push(StreamModel {
						id,
						origin,
						price,
						cap,
						budget,
						created: epoch,
					});
					// Commit what every claimable epoch needs, or what the escrow has.
					let need = budget.saturating_mul(CLAIM_WINDOW as Balance + 1);
					let amount = need.min(Dsp::escrow_of(&account(ORIGINS[origin])));
					let _ = Dsp::fund_stream(origin_signed(origin), id, amount);
				}
			}
			Action::FundEscrow { origin, amount } => {
				let _ = Dsp::fund_escrow(origin_signed(origin), amount);
			}
			Action::FundStream { origin, stream, amount } => {
				if let Some(id) = self.stream_of(origin, stream).map(|s| s.id) {
					let _ = Dsp::fund_stream(origin_signed(origin), id, amount);
				}
			}
			Action::RequestWithdrawal { origin, amount } => {
				let _ = Dsp::request_escrow_withdrawal(origin_signed(origin), amount);
			}
			Action::WithdrawEscrow { origin } => {
				let _ = Dsp::withdraw_escrow(origin_signed(origin));
			}
			Action::CloseStream { origin, stream } => {
				if let Some(id) = self.stream_of(origin, stream).map(|s| s.id) {
					let _ = Dsp::close_stream(origin_signed(origin), id);
				}
			}
			Action::ReleaseStream { origin, stream } => {
				if let Some(id) = self.stream_of(origin, stream).map(|s| s.id) {
					let _ = Dsp::release_stream_escrow(origin_signed(origin), id);
				}
			}
			Action::Rotate { origin, mut signers } => {
				signers.sort();
				signers.dedup();
				signers.truncate(MAX_PASS_SIGNERS as usize);
				let keys = signers.iter().map(|s| key(SIGNER_POOL[origin][*s]).public()).collect();
				match Dsp::update_origin(origin_signed(origin), None, Some(keys), None) {
					Ok(()) => self.signers[origin] = signers,
					Err(e) => {
						// Only adding keys may fail; removing never does (P4).
						let added = signers.iter().any(|s| !self.signers[origin].contains(s));
						assert!(added, "a rotation that only removes keys failed: {e:?}");
					}
				}
			}
			Action::Serve { stream, viewer, seeder, units } => {
				self.serve(stream, viewer, seeder, units)
			}
			Action::HonestClaim { seeder, duplicate } => self.honest_claim(seeder, duplicate),
			Action::SelfClaim { stream, units } => {
				let Some(s) = self.stream_of(1, stream) else { return };
				let (id, signer) = (s.id, self.signers[1].first().copied());
				let Some(signer) = signer else { return };
				let sock = account(SOCK_SEEDER);
				let it =
					self.sign(SIGNER_POOL[1][signer], "Sock", &sock, id, epoch, Units::MAX, units);
				let _ = Dsp::claim(RuntimeOrigin::signed(sock), vec![it]);
			}
			Action::BadClaim { stream, kind } => self.bad_claim(stream, kind),
			Action::WithdrawCredits { seeder } => {
				let _ = Dsp::withdraw_credits(
					RuntimeOrigin::signed(account(HONEST_SEEDERS[seeder])),
					None,
				);
			}
			Action::Advance { blocks } => run_to_block(System::block_number() + blocks),
		}
	}

	/// An honest streamer of the honest origin admits `units` of traffic, if the chain says
	/// passes are open and the epoch's budget and the viewer's cap leave room (P3).
	fn serve(&mut self, stream: usize, viewer: usize, seeder: usize, units: Units) {
		let Some(s) = self.stream_of(0, stream) else { return };
		let (id, price, cap, budget) = (s.id, s.price, s.cap, s.budget);
		let Some(signer) = self.signers[0].first().copied() else { return };
		let view = Dsp::api_stream(id).expect("a stream");
		if !view.passes_open {
			return;
		}
		let epoch = Dsp::current_epoch();
		let viewer_key = self.keys.get(VIEWERS[viewer]).public();
		let served = self.served.get(&(id, epoch)).copied().unwrap_or(0);
		let room =
			if price == 0 { units } else { (budget.saturating_sub(served) / price).min(units) };
		let viewer_total = self.served_viewer.get(&(id, epoch, viewer_key)).copied().unwrap_or(0);
		let units = room.min(cap.saturating_sub(viewer_total));
		if units == 0 {
			return;
		}
		self.served.insert((id, epoch), served + units * price);
		self.served_viewer.insert((id, epoch, viewer_key), viewer_total + units);
		let seeder_account = account(HONEST_SEEDERS[seeder]);
		let k: ClaimKey = (epoch, id, viewer_key, seeder_account.clone());
		let cumulative = self.max_signed.get(&k).copied().unwrap_or(0) + units;
		let it = self.sign(
			SIGNER_POOL[0][signer],
			VIEWERS[viewer],
			&seeder_account,
			id,
			epoch,
			Units::MAX,
			cumulative,
		);
		self.honest.insert(k, it);
	}

	fn honest_claim(&mut self, seeder: usize, duplicate: bool) {
		let who = account(HONEST_SEEDERS[seeder]);
		let current = Dsp::current_epoch();
		let oldest = NextEpochToPrune::<Test>::get();
		let mine: Vec<(ClaimKey, ClaimItem)> = self
			.honest
			.iter()
			.filter(|(k, _)| k.3 == who && Dsp::is_claimable(k.0, current) && k.0 >= oldest)
			.map(|(k, v)| (k.clone(), v.clone()))
			.collect();
		for chunk in mine.chunks(MAX_CLAIM_BATCH as usize / 2) {
			let mut items: Vec<ClaimItem> = chunk.iter().map(|(_, it)| it.clone()).collect();
			if duplicate {
				items.extend(items.clone());
			}
			frame_support::assert_ok!(Dsp::claim(RuntimeOrigin::signed(who.clone()), items));
			for (k, it) in chunk {
				assert_eq!(
					ClaimedUnits::<Test>::get(k),
					it.receipt.payload.units,
					"an honest claim within the window was not paid in full: {k:?}"
				);
			}
		}
	}

	fn bad_claim(&mut self, stream: usize, kind: u8) {
		let sock = account(SOCK_SEEDER);
		let epoch = Dsp::current_epoch();
		let Some(s) = self.stream_of(0, stream) else { return };
		let id = s.id;
		let before = ClaimedUnits::<Test>::iter().count();
		let it = match kind {
			// A pass by the malicious origin's signer for the honest origin's stream.
			0 => self.sign(SIGNER_POOL[1][0], "Sock", &sock, id, epoch, 1_000, 1_000),
			// A pass naming an honest signer, signed by another key.
			1 => {
				let mut it = self.sign(SIGNER_POOL[0][0], "Sock", &sock, id, epoch, 1_000, 1_000);
				let evil = self.keys.get("Mallory");
				it.pass = Signed::sign(it.pass.payload.clone(), &evil);
				it
			}
			// An honest item replayed by another seeder.
			2 => match self.honest.values().next() {
				Some(it) => it.clone(),
				None => return,
			},
			// A receipt that names the seeder but is signed by someone else.
			3 => {
				let mut it = self.sign(SIGNER_POOL[0][0], "V0", &sock, id, epoch, 1_000, 1_000);
				let evil = self.keys.get("Mallory");
				it.receipt = Signed::sign(it.receipt.payload.clone(), &evil);
				it
			}
			// Signed for another chain.
			_ => {
				let mut it = self.sign(SIGNER_POOL[0][0], "Sock", &sock, id, epoch, 1_000, 1_000);
				let issuer = self.keys.get(SIGNER_POOL[0][0]);
				let mut pass = it.pass.payload.clone();
				pass.genesis_hash = [9; 32];
				it.pass = Signed::sign(pass, &issuer);
				let viewer = self.keys.get("Sock");
				let receipt = Receipt { genesis_hash: [9; 32], ..it.receipt.payload.clone() };
				it.receipt = Signed::sign(receipt, &viewer);
				it
			}
		};
		frame_support::assert_ok!(Dsp::claim(RuntimeOrigin::signed(sock), vec![it]));
		let paid = System::events()
			.iter()
			.any(|r| matches!(r.event, RuntimeEvent::Dsp(Event::Claimed { .. })));
		assert!(!paid, "a bad claim of kind {kind} paid");
		assert_eq!(ClaimedUnits::<Test>::iter().count(), before);
		let rejected = System::events().iter().any(|r| {
			matches!(
				r.event,
				RuntimeEvent::Dsp(Event::ClaimItemRejected {
					reason: ClaimRejection::UnauthorisedIssuer
						| ClaimRejection::BadPassSignature
						| ClaimRejection::BadReceiptSignature
						| ClaimRejection::WrongSeeder
						| ClaimRejection::WrongGenesis
						| ClaimRejection::OutsideClaimWindow
						| ClaimRejection::StreamClosed,
					..
				})
			)
		});
		assert!(rejected, "a bad claim of kind {kind} was not rejected");
	}

	/// Books this step's `Claimed` events.
	fn record_payments(&mut self) {
		for record in System::events() {
			if let RuntimeEvent::Dsp(Event::Claimed {
				seeder,
				stream,
				epoch,
				viewer,
				units,
				amount,
			}) = record.event
			{
				*self.paid_units.entry((epoch, stream, viewer, seeder)).or_default() += units;
				*self.paid_stream_epoch.entry((stream, epoch)).or_default() += amount;
				let origin = self.streams.iter().find(|s| s.id == stream).expect("known").origin;
				self.paid_from[origin] += amount;
			}
		}
	}

	fn check(&self) {
		// 1. Nothing minted or burnt; the pallet account holds exactly what it owes.
		assert_eq!(Balances::total_issuance(), self.issuance);
		let committed: BTreeMap<usize, Balance> =
			self.streams.iter().fold(BTreeMap::new(), |mut m, s| {
				*m.entry(s.origin).or_default() +=
					Streams::<Test>::get(s.id).expect("stream").escrow.total();
				m
			});
		let credits: Balance = Credits::<Test>::iter().map(|(_, c)| c.available).sum();
		let all_committed: Balance = committed.values().sum();
		assert_eq!(Balances::balance(&Dsp::account_id()), 1 + credits + all_committed);
		// 2. No origin over-debited.
		for (i, name) in ORIGINS.iter().enumerate() {
			let who = account(name);
			let held = Balances::balance_on_hold(&HoldReason::Escrow.into(), &who)
				+ Balances::balance_on_hold(&HoldReason::Deposit.into(), &who);
			let total = Balances::balance(&who)
				+ held + committed.get(&i).copied().unwrap_or(0)
				+ self.paid_from[i];
			assert_eq!(total, ENDOWMENT, "origin {name} accounting");
		}
		// 3. No unit paid twice.
		let oldest = NextEpochToPrune::<Test>::get();
		for (k, units) in &self.paid_units {
			assert!(
				*units <= self.max_signed.get(k).copied().unwrap_or(0),
				"paid beyond receipts: {k:?}"
			);
			if k.0 >= oldest {
				assert_eq!(ClaimedUnits::<Test>::get(k), *units, "bookkeeping of {k:?}");
			}
		}
		// 4. Budgets bound every payout.
		let current = Dsp::current_epoch();
		let mut bound = [0 as Balance; 2];
		for s in &self.streams {
			let epochs = (current - s.created + 1) as Balance;
			bound[s.origin] = bound[s.origin].saturating_add(s.budget.saturating_mul(epochs));
		}
		for ((stream, epoch), paid) in &self.paid_stream_epoch {
			let s = self.streams.iter().find(|s| s.id == *stream).expect("known");
			assert!(*paid <= s.budget, "stream {stream} paid {paid} in epoch {epoch}");
		}
		for i in 0..2 {
			assert!(
				self.paid_from[i] <= bound[i],
				"origin {i} paid {} > {}",
				self.paid_from[i],
				bound[i]
			);
		}
	}
}

proptest! {
	#![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

	#[test]
	fn credits_hold_against_random_honest_and_malicious_calls(
		actions in proptest::collection::vec(action(), 1..MAX_STEPS)
	) {
		new_test_ext().execute_with(|| {
			let mut model = Model::new();
			model.check();
			for a in &actions {
				System::reset_events();
				model.apply(a);
				model.record_payments();
				model.check();
			}
		});
	}
}

/// The harness itself pays what it serves: a fixed sequence through the same model, so the
/// property test above cannot pass by never reaching a payment.
#[test]
fn the_model_serves_claims_and_pays_honest_seeders() {
	new_test_ext().execute_with(|| {
		let mut model = Model::new();
		let script = [
			Action::CreateStream { origin: 0, price: 1, cap: 2, budget: 2 },
			Action::CreateStream { origin: 1, price: 1, cap: 3, budget: 2 },
			Action::Serve { stream: 0, viewer: 0, seeder: 0, units: 700 },
			Action::SelfClaim { stream: 0, units: 1_000_000 },
			Action::Serve { stream: 0, viewer: 1, seeder: 1, units: 900 },
			Action::Rotate { origin: 0, signers: vec![2, 3] },
			Action::Advance { blocks: EPOCH_LENGTH },
			Action::Serve { stream: 0, viewer: 0, seeder: 0, units: 300 },
			Action::BadClaim { stream: 0, kind: 2 },
			Action::HonestClaim { seeder: 0, duplicate: true },
			Action::HonestClaim { seeder: 1, duplicate: false },
		];
		for a in &script {
			System::reset_events();
			model.apply(a);
			model.record_payments();
			model.check();
		}
		let honest_paid: Units = model
			.paid_units
			.iter()
			.filter(|(k, _)| HONEST_SEEDERS.iter().any(|s| account(s) == k.3))
			.map(|(_, u)| *u)
			.sum();
		assert_eq!(honest_paid, 700 + 900 + 300);
		assert_eq!(model.paid_from[1], 5_000, "the malicious origin paid itself one epoch budget");
	});
}
