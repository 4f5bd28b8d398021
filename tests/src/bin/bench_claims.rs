//! Benchmark: how many receipts the chain verifies and settles per block, in a real run.
//!
//!     bash scripts/bench-claims.sh [--profile release|dev] [RECEIPTS]   (default 5000)
//!
//! (`--help` of the script says which node it builds; `DSP_NODE_BIN` measures a given one.)
//!
//! Starts `dsp-node --dev` (manual seal: a block as soon as transactions are ready, each block
//! filled up to the runtime's weight limit), builds `RECEIPTS` (pass, receipt) pairs of distinct
//! viewers for the genesis demo stream 0 (pass signer: Alice, the demo origin), splits them into
//! claims of at most `MaxClaimBatch` items from five seeders (Bob … Ferdie), submits them all at
//! once and follows the blocks that include them. For every such block it prints the receipts
//! paid, the normal-class weight used and the node's own authoring time ("Prepared block for
//! proposing ... ms" in its log); then the fullest block against the named alternative, the
//! benchmarked weight of `claim(n)`: how many receipts that weight admits per block, and the
//! measured authoring time per receipt against the benchmarked time per receipt.
//!
//! The node binary is `$DSP_NODE_BIN` or the `dsp-node` next to this executable.

use codec::{Decode, Encode};
use dsp_integration_tests::*;
use dsp_primitives::{ClaimItem, Receipt, Signed, ViewerPass};
use dsp_runtime::{Runtime, RuntimeBlockWeights, RuntimeCall, RuntimeEvent};
use frame_support::{
	dispatch::{DispatchClass, PerDispatchClass},
	traits::Get,
};
use pallet_dsp::{Call as DspCall, WeightInfo};
use serde_json::json;
use sp_core::{Pair, H256};
use std::time::{Duration, Instant};

/// Price per unit of the genesis demo stream 0 (runtime genesis preset).
const DEMO_PRICE: u128 = dsp_runtime::genesis_config_presets::DEMO_STREAM_PRICE_PER_UNIT;
/// Units each receipt acknowledges.
const UNITS: u64 = 100;
/// Seeders that submit the claims (dev accounts endowed at genesis).
const SEEDERS: [&str; 5] = ["//Bob", "//Charlie", "//Dave", "//Eve", "//Ferdie"];
/// Block time the goal is stated for.
const BLOCK_TIME_MS: f64 = 6000.0;
/// Receipts one 6 s block must settle (issue 11).
const GOAL_PER_BLOCK: usize = 4000;

fn main() {
	let receipts: usize = match std::env::args().nth(1).map(|a| a.parse()) {
		None => 5000,
		Some(Ok(n)) if n > 0 => n,
		Some(_) => {
			eprintln!("usage: bench-claims [RECEIPTS > 0]");
			std::process::exit(2);
		}
	};
	let batch = <<Runtime as pallet_dsp::Config>::MaxClaimBatch as Get<u32>>::get() as usize;
	if receipts > batch * SEEDERS.len() {
		eprintln!(
			"at most {} receipts ({} seeders x {batch})",
			batch * SEEDERS.len(),
			SEEDERS.len()
		);
		std::process::exit(2);
	}
	println!("[claims] starting dsp-node --dev ({})", node_binary().display());
	let node = Node::start(&["--dev", "--no-prometheus", "--dev-block-time", "6000"]);
	let genesis: [u8; 32] = node.block_hash(0).into();
	let epoch = node.call("dsp_currentEpoch", json!([])).as_u64().expect("epoch") as u32;

	let built = Instant::now();
	let alice = pair("//Alice");
	let seeders: Vec<_> = SEEDERS.iter().map(|s| pair(s)).collect();
	let per_seeder = receipts.div_ceil(seeders.len()).min(batch);
	let mut extrinsics = Vec::new();
	let mut left = receipts;
	for (s, seeder) in seeders.iter().enumerate() {
		let n = left.min(per_seeder);
		if n == 0 {
			break;
		}
		left -= n;
		let items: Vec<ClaimItem> = (0..n)
			.map(|i| {
				// Seeded keys: deriving thousands of `//...` paths would dominate the set-up.
				let viewer = sp_core::sr25519::Pair::from_seed(&sp_crypto_hashing::blake2_256(
					format!("dsp bench viewer {s}/{i}").as_bytes(),
				));
				let pass = ViewerPass {
					genesis_hash: genesis,
					stream: 0,
					epoch,
					viewer: viewer.public(),
					max_units: 10_000,
					issuer: alice.public(),
				};
				let receipt = Receipt {
					genesis_hash: genesis,
					stream: 0,
					epoch,
					seeder: seeder.public().0,
					viewer: viewer.public(),
					units: UNITS,
				};
				ClaimItem {
					pass: Signed::sign(pass, &alice),
					receipt: Signed::sign(receipt, &viewer),
				}
			})
			.collect();
		let call = RuntimeCall::Dsp(DspCall::<Runtime>::claim { items });
		extrinsics.push(node.sign(seeder, call).encode());
	}
	let bytes: usize = extrinsics.iter().map(Vec::len).sum();
	println!(
		"[claims] built {receipts} receipts in {} claims ({} KiB) in {:.1} s",
		extrinsics.len(),
		bytes / 1024,
		built.elapsed().as_secs_f64()
	);

	let start_block = node.best_number();
	let submitted = Instant::now();
	for xt in &extrinsics {
		node.call("author_submitExtrinsic", json!([hex_0x(xt)]));
	}
	println!("[claims] submitted in {:.2} s", submitted.elapsed().as_secs_f64());

	// Follow blocks until every receipt is paid (or rejected).
	let mut settled = 0usize;
	let mut rows = Vec::new();
	let mut next = start_block + 1;
	let deadline = Instant::now() + Duration::from_secs(300);
	while settled < receipts {
		assert!(Instant::now() < deadline, "not all receipts settled within 300 s");
		if node.best_number() < next {
			std::thread::sleep(Duration::from_millis(100));
			continue;
		}
		let hash = node.block_hash(next);
		let events = node.events(hash);
		let paid = events
			.iter()
			.filter(|r| matches!(r.event, RuntimeEvent::Dsp(pallet_dsp::Event::Claimed { .. })))
			.count();
		let rejected = events
			.iter()
			.filter(|r| {
				matches!(r.event, RuntimeEvent::Dsp(pallet_dsp::Event::ClaimItemRejected { .. }))
			})
			.count();
		let failed = events
			.iter()
			.filter(|r| {
				matches!(r.event, RuntimeEvent::System(frame_system::Event::ExtrinsicFailed { .. }))
			})
			.count();
		assert_eq!(rejected, 0, "block #{next}: {rejected} items rejected");
		assert_eq!(failed, 0, "block #{next}: {failed} extrinsics failed");
		settled += paid;
		if paid > 0 {
			let normal = block_weight(&node, hash).get(DispatchClass::Normal).ref_time();
			let ms = authoring_ms(&node.log(), next);
			rows.push((next, paid, normal, ms));
		}
		next += 1;
	}

	let max_normal = RuntimeBlockWeights::get()
		.get(DispatchClass::Normal)
		.max_total
		.expect("the runtime limits normal dispatch")
		.ref_time();
	println!("[claims] block | receipts paid | normal weight used | authoring ms");
	for (n, paid, normal, ms) in &rows {
		let ms = ms.map_or("?".to_string(), |m| m.to_string());
		println!(
			"[claims] #{n} | {paid} | {:.1} % | {ms}",
			100.0 * *normal as f64 / max_normal as f64
		);
	}
	// Credits on chain equal the receipts times the price.
	for (s, seeder) in seeders.iter().enumerate().take(extrinsics.len()) {
		let expected = (per_seeder.min(receipts - s * per_seeder)) as u128;
		let credits = node.call("dsp_credits", json!([address(seeder)]));
		let available = credits["available"]
			.as_str()
			.map_or_else(|| credits["available"].as_u64().map(u128::from), |t| t.parse().ok());
		assert_eq!(
			available,
			Some(expected * UNITS as u128 * DEMO_PRICE),
			"credits of {}: {credits}",
			SEEDERS[s]
		);
	}

	let (n, paid, _, ms) = rows.iter().copied().max_by_key(|r| r.1).expect("at least one block");
	let per_item = <Runtime as pallet_dsp::Config>::WeightInfo::claim(2).ref_time()
		- <Runtime as pallet_dsp::Config>::WeightInfo::claim(1).ref_time();
	let base = <Runtime as pallet_dsp::Config>::WeightInfo::claim(0).ref_time();
	let extrinsic_base = RuntimeBlockWeights::get().get(DispatchClass::Normal).base_extrinsic;
	let fits = (max_normal - base - extrinsic_base.ref_time()) / per_item;
	println!(
		"[claims] benchmarked weight of claim: {:.1} us per receipt (DB reads/writes included); \
		 the normal class ({:.0} ms) admits {fits} receipts per block",
		per_item as f64 / 1e6,
		max_normal as f64 / 1e9
	);
	println!(
		"[claims] fullest block #{n}: {paid} receipts verified and settled (goal >= \
		 {GOAL_PER_BLOCK} per 6 s block: {})",
		if paid >= GOAL_PER_BLOCK { "met" } else { "NOT met" }
	);
	if let Some(ms) = ms {
		let measured_us = ms as f64 * 1000.0 / paid as f64;
		println!(
			"[claims] authoring it took {ms} ms ({:.1} % of a 6 s block): {measured_us:.1} us per \
			 receipt measured vs {:.1} us benchmarked (ratio {:.2}); at the measured rate one \
			 6 s block's 2 s of compute settles {:.0} receipts",
			100.0 * ms as f64 / BLOCK_TIME_MS,
			per_item as f64 / 1e6,
			measured_us / (per_item as f64 / 1e6),
			2.0e6 / measured_us
		);
	} else {
		println!("[claims] (the node log did not show this block's authoring time)");
	}
}

/// `System::BlockWeight` at `at`.
fn block_weight(node: &Node, at: H256) -> PerDispatchClass<frame_support::weights::Weight> {
	let raw = node.storage(&storage_key(b"System", b"BlockWeight"), Some(at)).expect("BlockWeight");
	Decode::decode(&mut &raw[..]).expect("PerDispatchClass<Weight>")
}

/// The proposer's "Prepared block for proposing at N (T ms)" for block `number`.
fn authoring_ms(log: &str, number: u32) -> Option<u64> {
	let needle = format!("Prepared block for proposing at {number} (");
	let line = log.lines().rev().find(|l| l.contains(&needle))?;
	let rest = line.split(&needle).nth(1)?;
	rest.split(" ms").next()?.trim().parse().ok()
}
