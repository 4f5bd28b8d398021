//! Benchmarks of every call, worst case each. `claim` is linear in the batch size, every item
//! valid and paying (two signature checks, all reads and writes).

use super::*;
use crate::pallet::{BalanceOf, Origins, Pallet as Dsp, RevokedSigners, Streams};
use alloc::{vec, vec::Vec};
use dsp_primitives::{Receipt, ViewerPass};
use frame_benchmarking::v2::*;
use frame_support::traits::{
	fungible::{Inspect, Mutate},
	EnsureOrigin, Get,
};
use frame_system::RawOrigin;
use sp_core::crypto::KeyTypeId;
use sp_runtime::traits::{Bounded, Zero};

const KEY_TYPE: KeyTypeId = KeyTypeId(*b"dspb");

fn new_key() -> PublicKey {
	sp_io::crypto::sr25519_generate(KEY_TYPE, None)
}

fn sign<P: Signable>(payload: P, signer: &PublicKey) -> Signed<P> {
	let signature = sp_io::crypto::sr25519_sign(KEY_TYPE, signer, &payload.signing_payload())
		.expect("key was generated in this keystore");
	Signed { payload, signature }
}

fn funded<T: Config>(name: &'static str, index: u32) -> T::AccountId {
	let who: T::AccountId = account(name, index, 0);
	// Small enough that `MaxClaimBatch` funded origins cannot overflow total issuance.
	let amount = BalanceOf::<T>::max_value() / 65_536u32.into();
	T::Currency::set_balance(&who, amount);
	who
}

fn full_endpoints<T: Config>() -> EndpointsView {
	let len = T::MaxEndpointLen::get() as usize;
	EndpointsView {
		tcp: vec![b'a'; len],
		quic: vec![b'b'; len],
		p2p: vec![b'c'; len],
		rpc: vec![b'd'; len],
	}
}

fn signers<T: Config>() -> Vec<PublicKey> {
	(0..T::MaxPassSigners::get()).map(|i| PublicKey::from_raw([i as u8 + 1; 32])).collect()
}

/// A registered origin with the most pass signers, the longest metadata and an escrow.
fn setup_origin<T: Config>(index: u32, extra_signer: Option<PublicKey>) -> T::AccountId {
	let who = funded::<T>("origin", index);
	let mut pass_signers = signers::<T>();
	if let Some(key) = extra_signer {
		pass_signers.pop();
		pass_signers.push(key);
	}
	let metadata = vec![b'm'; T::MaxMetadataLen::get() as usize];
	Dsp::<T>::register_origin(
		RawOrigin::Signed(who.clone()).into(),
		new_key(),
		pass_signers,
		metadata,
	)
	.expect("origin registers");
	let escrow = T::Currency::balance(&who) / 16u32.into();
	Dsp::<T>::fund_escrow(RawOrigin::Signed(who.clone()).into(), escrow).expect("escrow funds");
	who
}

/// An open stream of `origin` with half its escrow committed and an unlimited epoch budget.
fn setup_stream<T: Config>(origin: &T::AccountId) -> StreamId {
	let signed = || RawOrigin::Signed(origin.clone());
	Dsp::<T>::create_stream(
		signed().into(),
		500,
		1u32.into(),
		u64::MAX,
		BalanceOf::<T>::max_value(),
	)
	.expect("stream created");
	let stream = NextStreamId::<T>::get() - 1;
	let commitment = Dsp::<T>::escrow_of(origin) / 2u32.into();
	Dsp::<T>::fund_stream(signed().into(), stream, commitment).expect("stream funded");
	stream
}

/// A valid item for a fresh viewer of `stream` in the current epoch: 1000 units for `seeder`,
/// the pass signed by `issuer` (a key of this keystore).
fn paying_item<T: Config>(issuer: PublicKey, stream: StreamId, seeder: &T::AccountId) -> ClaimItem {
	let genesis_hash = Dsp::<T>::genesis_hash();
	let epoch = Dsp::<T>::current_epoch();
	let viewer = new_key();
	let pass = ViewerPass { genesis_hash, stream, epoch, viewer, max_units: 1_000, issuer };
	let seeder: AccountBytes = seeder.clone().into();
	let receipt = Receipt { genesis_hash, stream, epoch, seeder, viewer, units: 1_000 };
	ClaimItem { pass: sign(pass, &issuer), receipt: sign(receipt, &viewer) }
}

#[benchmarks]
mod benchmarks {
	use super::*;

	#[benchmark]
	fn register_origin() {
		let who = funded::<T>("origin", 0);
		let metadata = vec![b'm'; T::MaxMetadataLen::get() as usize];
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), new_key(), signers::<T>(), metadata);
		assert!(Origins::<T>::contains_key(&who));
	}

	#[benchmark]
	fn update_origin() {
		// Worst case: every signer replaced, so every old key is revoked.
		let who = setup_origin::<T>(0, None);
		let metadata = vec![b'n'; T::MaxMetadataLen::get() as usize];
		let new_signers: Vec<PublicKey> = (0..T::MaxPassSigners::get())
			.map(|i| PublicKey::from_raw([i as u8 + 101; 32]))
			.collect();
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), Some(new_key()), Some(new_signers), Some(metadata));
		assert_eq!(Origins::<T>::get(&who).unwrap().metadata[0], b'n');
		assert!(RevokedSigners::<T>::contains_key(&who, PublicKey::from_raw([1; 32])));
	}

	#[benchmark]
	fn retire_origin() {
		let who = setup_origin::<T>(0, None);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()));
		assert!(Origins::<T>::get(&who).unwrap().retired_at.is_some());
	}

	#[benchmark]
	fn fund_escrow() {
		let who = setup_origin::<T>(0, None);
		let before = Dsp::<T>::escrow_of(&who);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), 1_000u32.into());
		assert!(Dsp::<T>::escrow_of(&who) > before);
	}

	#[benchmark]
	fn request_escrow_withdrawal() {
		let who = setup_origin::<T>(0, None);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), 1_000u32.into());
		assert!(Origins::<T>::get(&who).unwrap().pending_withdrawal.is_some());
	}

	#[benchmark]
	fn withdraw_escrow() {
		// Worst case: a retired origin whose record is removed.
		let who = setup_origin::<T>(0, None);
		Dsp::<T>::retire_origin(RawOrigin::Signed(who.clone()).into()).expect("retires");
		let unlocks = frame_system::Pallet::<T>::block_number() + Dsp::<T>::escrow_lock_period();
		frame_system::Pallet::<T>::set_block_number(unlocks);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()));
		assert!(!Origins::<T>::contains_key(&who));
	}

	#[benchmark]
	fn create_stream() {
		let who = setup_origin::<T>(0, None);
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), 500, 1u32.into(), 1_000, 1_000u32.into());
		assert!(Streams::<T>::contains_key(0));
	}

	#[benchmark]
	fn fund_stream() {
		let who = setup_origin::<T>(0, None);
		let stream = setup_stream::<T>(&who);
		let before = Streams::<T>::get(stream).unwrap().escrow.total();
		#[extrinsic_call]
		_(RawOrigin::Signed(who), stream, 1_000u32.into());
		assert!(Streams::<T>::get(stream).unwrap().escrow.total() > before);
	}

	#[benchmark]
	fn release_stream_escrow() {
		let who = setup_origin::<T>(0, None);
		let stream = setup_stream::<T>(&who);
		Dsp::<T>::close_stream(RawOrigin::Signed(who.clone()).into(), stream).expect("closes");
		let after_window =
			frame_system::Pallet::<T>::block_number() + Dsp::<T>::escrow_lock_period();
		frame_system::Pallet::<T>::set_block_number(after_window);
		#[extrinsic_call]
		_(RawOrigin::Signed(who), stream);
		assert!(Streams::<T>::get(stream).unwrap().escrow.total().is_zero());
	}

	#[benchmark]
	fn close_stream() {
		let who = setup_origin::<T>(0, None);
		let stream = setup_stream::<T>(&who);
		#[extrinsic_call]
		_(RawOrigin::Signed(who), stream);
		assert!(!Streams::<T>::get(stream).unwrap().is_open());
	}

	#[benchmark]
	fn register_streamer() {
		let who = funded::<T>("streamer", 0);
		let settings = CapacitySettings::spec_default();
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), full_endpoints::<T>(), Some(settings));
		assert!(Streamers::<T>::contains_key(&who));
	}

	#[benchmark]
	fn update_streamer_endpoints() {
		let who = funded::<T>("streamer", 0);
		Dsp::<T>::register_streamer(
			RawOrigin::Signed(who.clone()).into(),
			Default::default(),
			None,
		)
		.expect("registers");
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), full_endpoints::<T>());
		assert!(!Streamers::<T>::get(&who).unwrap().endpoints.tcp.is_empty());
	}

	#[benchmark]
	fn set_streamer_settings() {
		let who = funded::<T>("streamer", 0);
		Dsp::<T>::register_streamer(
			RawOrigin::Signed(who.clone()).into(),
			Default::default(),
			None,
		)
		.expect("registers");
		let settings = CapacitySettings::spec_default();
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()), Some(settings));
		assert!(Streamers::<T>::get(&who).unwrap().settings.is_some());
	}

	#[benchmark]
	fn unregister_streamer() {
		let who = funded::<T>("streamer", 0);
		Dsp::<T>::register_streamer(
			RawOrigin::Signed(who.clone()).into(),
			Default::default(),
			None,
		)
		.expect("registers");
		#[extrinsic_call]
		_(RawOrigin::Signed(who.clone()));
		assert!(!Streamers::<T>::contains_key(&who));
	}

	#[benchmark]
	fn set_default_settings() -> Result<(), BenchmarkError> {
		let origin =
			T::SettingsOrigin::try_successful_origin().map_err(|_| BenchmarkError::Weightless)?;
		let settings = CapacitySettings { max_streams: 10, streaming_rate: Default::default() };
		#[extrinsic_call]
		_(origin as T::RuntimeOrigin, settings);
		assert_eq!(DefaultSettings::<T>::get(), settings);
		Ok(())
	}

	#[benchmark]
	fn claim(n: Linear<1, { T::MaxClaimBatch::get() }>) {
		// Worst case: every item of a different origin and stream (no cached reads), each
		// paying, each issuer the last of the most pass signers.
		let issuer = new_key();
		let seeder = funded::<T>("seeder", 0);
		let items: Vec<ClaimItem> = (0..n)
			.map(|i| {
				let origin = setup_origin::<T>(i, Some(issuer));
				paying_item::<T>(issuer, setup_stream::<T>(&origin), &seeder)
			})
			.collect();
		#[extrinsic_call]
		_(RawOrigin::Signed(seeder.clone()), items);
		assert_eq!(Credits::<T>::get(&seeder).items_paid, n);
	}

	#[benchmark]
	fn withdraw_credits() {
		let issuer = new_key();
		let origin = setup_origin::<T>(0, Some(issuer));
		let seeder = funded::<T>("seeder", 0);
		let item = paying_item::<T>(issuer, setup_stream::<T>(&origin), &seeder);
		Dsp::<T>::claim(RawOrigin::Signed(seeder.clone()).into(), vec![item]).expect("claims");
		assert!(!Credits::<T>::get(&seeder).available.is_zero());
		#[extrinsic_call]
		_(RawOrigin::Signed(seeder.clone()), None);
		assert!(Credits::<T>::get(&seeder).available.is_zero());
	}

	impl_benchmark_test_suite!(Dsp, crate::mock::new_test_ext(), crate::mock::Test);
}

/// Regenerates `src/weights.rs` from the benchmarks above, run natively against the mock
/// runtime on the same tracking database backend the node's bencher uses
/// (`sc_client_db::BenchmarkingState`), with `RocksDbWeight` for each counted read and write:
///
/// ```text
/// cargo test -p pallet-dsp --release --features runtime-benchmarks -- --ignored generate_weights
/// ```
///
/// Each benchmark runs `STEPS` component values × `REPEAT` repeats; base and slope come from
/// the same least-squares fit frame-benchmarking-cli uses. Proof size is not measured here (a
/// solochain block has no PoV limit), so it is 0 in the output.
#[cfg(test)]
mod weight_generator {
	use crate::mock::{genesis_storage, new_test_ext, Test};
	use alloc::{format, string::String, vec::Vec};
	use frame_benchmarking::{
		Analysis, BenchmarkParameter, BenchmarkResult, BenchmarkSelector, Benchmarking,
	};
	use sc_client_db::BenchmarkingState;
	use sp_externalities::Extensions;
	use sp_keystore::{testing::MemoryKeystore, KeystoreExt};
	use sp_runtime::traits::BlakeTwo256;
	use sp_state_machine::{Ext, OverlayedChanges};
	use sp_storage::TrackedStorageKey;

	const STEPS: u32 = 10;
	const REPEAT: u32 = 5;

	fn whitelist() -> Vec<TrackedStorageKey> {
		// The per-block bookkeeping of frame-system, as frame-benchmarking-cli whitelists it.
		let system = sp_io::hashing::twox_128(b"System");
		[&b"Number"[..], b"ExecutionPhase", b"EventCount", b"Events"]
			.into_iter()
			.map(|item| {
				let key = [system, sp_io::hashing::twox_128(item)].concat();
				TrackedStorageKey::new(key)
			})
			.collect()
	}

	fn run(name: &[u8], components: &[(BenchmarkParameter, u32, u32)]) -> Vec<BenchmarkResult> {
		let mut points: Vec<Vec<(BenchmarkParameter, u32)>> = Vec::new();
		match components {
			[] => points.push(Vec::new()),
			[(param, low, high)] => {
				for step in 0..STEPS {
					let value = low + (high - low) * step / (STEPS - 1);
					points.push(alloc::vec![(*param, value)]);
				}
			}
			_ => panic!("benchmarks with several components are not supported here"),
		}
		let mut results = Vec::new();
		for point in points {
			// A fresh database per point, with read/write tracking, as the node's bencher has.
			let state = BenchmarkingState::<BlakeTwo256>::new(genesis_storage(), None, false, true)
				.expect("benchmarking state");
			let mut overlay = OverlayedChanges::default();
			let mut extensions = Extensions::default();
			extensions.register(KeystoreExt::new(MemoryKeystore::new()));
			let mut ext = Ext::new(&mut overlay, &state, Some(&mut extensions));
			let mut out = sp_externalities::set_and_run_with_externalities(&mut ext, || {
				frame_system::Pallet::<Test>::set_block_number(1);
				<crate::Pallet<Test> as Benchmarking>::run_benchmark(
					name,
					&point,
					&whitelist(),
					false,
					REPEAT,
				)
			});
			results.append(out.as_mut().expect("benchmark runs"));
		}
		results
	}

	fn term(analysis: &Analysis) -> (u128, Option<u128>) {
		(analysis.base, analysis.slopes.first().copied())
	}

	#[test]
	#[ignore = "writes src/weights.rs; run in release, see the module docs"]
	fn generate_weights() {
		let mut trait_fns = String::new();
		let mut impl_fns = [String::new(), String::new()];
		let dbs = ["T::DbWeight::get()", "RocksDbWeight::get()"];
		let metadata = new_test_ext()
			.execute_with(|| <crate::Pallet<Test> as Benchmarking>::benchmarks(false));
		for bench in metadata {
			let name = String::from_utf8(bench.name.clone()).unwrap();
			let results = run(&bench.name, &bench.components);
			let analyse = |s| Analysis::min_squares_iqr(&results, s).expect("analysis");
			let (time, time_slope) = term(&analyse(BenchmarkSelector::ExtrinsicTime));
			let (reads, reads_slope) = term(&analyse(BenchmarkSelector::Reads));
			let (writes, writes_slope) = term(&analyse(BenchmarkSelector::Writes));
			let param = bench.components.first().map(|(p, _, _)| format!("{p:?}"));
			let args = param.as_ref().map(|p| format!("{p}: u32")).unwrap_or_default();
			trait_fns += &format!("\tfn {name}({args}) -> Weight;\n");
			for (body, db) in impl_fns.iter_mut().zip(dbs) {
				*body += &format!("\tfn {name}({args}) -> Weight {{\n");
				*body += &format!("\t\tWeight::from_parts({time}, 0)\n");
				if let (Some(p), Some(s)) = (&param, time_slope) {
					*body += &format!(
						"\t\t\t.saturating_add(Weight::from_parts({s}, 0).saturating_mul({p}.into()))\n"
					);
				}
				*body += &format!("\t\t\t.saturating_add({db}.reads({reads}))\n");
				if let (Some(p), Some(s)) = (&param, reads_slope.filter(|s| *s > 0)) {
					*body += &format!(
						"\t\t\t.saturating_add({db}.reads(({s}_u64).saturating_mul({p}.into())))\n"
					);
				}
				*body += &format!("\t\t\t.saturating_add({db}.writes({writes}))\n");
				if let (Some(p), Some(s)) = (&param, writes_slope.filter(|s| *s > 0)) {
					*body += &format!(
						"\t\t\t.saturating_add({db}.writes(({s}_u64).saturating_mul({p}.into())))\n"
					);
				}
				*body += "\t}\n";
			}
			std::println!("{name}: {time} ps + {time_slope:?} ps/item, reads {reads}+{reads_slope:?}, writes {writes}+{writes_slope:?}");
		}
		let file = format!(
			"//! Weights for `pallet_dsp`.\n//!\n//! GENERATED by `benchmarking::weight_generator` (native, BenchmarkingState, {STEPS} \
			 steps x {REPEAT} repeats) on {host}.\n//! Do not edit by hand: run\n//! `cargo test -p pallet-dsp --release --features \
			 runtime-benchmarks -- --ignored generate_weights`.\n//!\n//! Proof sizes are 0: the DSP chain is a solochain, whose blocks have no proof-of-validity \
			 limit\n//! (the runtime's `RuntimeBlockWeights` allow a proof size of `u64::MAX`), so only ref time and database\n//! \
			 accesses are measured. A parachain runtime would have to record proof sizes.\n\n#![allow(unused_parens, unused_imports, missing_docs)]\n\n\
			 use core::marker::PhantomData;\nuse frame_support::{{traits::Get, weights::{{constants::RocksDbWeight, Weight}}}};\n\n\
			 /// Weight functions needed for `pallet_dsp`.\npub trait WeightInfo {{\n{trait_fns}}}\n\n\
			 /// Weights for `pallet_dsp` using the runtime's database weights.\npub struct SubstrateWeight<T>(PhantomData<T>);\n\
			 impl<T: frame_system::Config> WeightInfo for SubstrateWeight<T> {{\n{}}}\n\n\
			 /// For tests: RocksDB database weights.\nimpl WeightInfo for () {{\n{}}}\n",
			impl_fns[0],
			impl_fns[1],
			host = std::env::var("DSP_BENCH_HOST").unwrap_or_else(|_| "an unnamed machine".into()),
		);
		let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/weights.rs");
		std::fs::write(path, file).expect("weights.rs is writable");
		// Format with the repository's rustfmt.toml so that `cargo fmt --check` stays clean.
		let formatted = std::process::Command::new("rustfmt")
			.args(["--edition", "2021", path])
			.status()
			.map(|s| s.success())
			.unwrap_or(false);
		std::println!("wrote {path} (rustfmt: {})", if formatted { "ok" } else { "FAILED" });
	}
}
