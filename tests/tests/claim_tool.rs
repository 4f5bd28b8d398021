//! The `dsp` tool's chain client against a real `dsp-node --dev`: its hand-encoded `claim` and
//! `withdraw_credits` extrinsics decode as the runtime's own, are accepted, and pay exactly.

use codec::{Decode, Encode};
use dsp_integration_tests::*;
use dsp_primitives::{ClaimItem, Receipt, Signed, ViewerPass};
use dsp_runtime::{RuntimeCall, UncheckedExtrinsic};
use dsp_streaming::chain::{
	client::{ChainClient, ChainError},
	extrinsic::{claim_call, signed_extrinsic, withdraw_credits_call, Lifetime},
};
use dsp_streaming::p2p::receipts::{LedgerConfig, PassSigners, SeederLedger};
use pallet_dsp::Call as DspCall;
use sp_core::Pair;
use std::{process::Command, time::Duration};

/// Price per unit of the genesis demo stream 0 (runtime genesis preset).
const DEMO_PRICE: u128 = 1_000_000;

/// A (pass, receipt) pair for demo stream 0: Alice (its origin and pass signer) admitted
/// `viewer`, which signs that `seeder` delivered `units` to it.
fn demo_item(
	genesis_hash: [u8; 32],
	epoch: u32,
	seeder: [u8; 32],
	viewer: &sp_core::sr25519::Pair,
	units: u64,
) -> ClaimItem {
	let alice = pair("//Alice");
	let pass = ViewerPass {
		genesis_hash,
		stream: 0,
		epoch,
		viewer: viewer.public(),
		max_units: 10_000,
		issuer: alice.public(),
	};
	let receipt =
		Receipt { genesis_hash, stream: 0, epoch, seeder, viewer: viewer.public(), units };
	ClaimItem { pass: Signed::sign(pass, &alice), receipt: Signed::sign(receipt, viewer) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsp_tool_claims_and_withdraws_credits_on_a_dev_node() {
	let node = Node::start(&["--dev", "--port", &free_port().to_string(), "--no-prometheus"]);
	let client = ChainClient::new(&format!("http://{}", node.rpc_addr)).unwrap();
	let runtime = client.runtime_info().await.expect("runtime info");
	runtime.check().expect("the tool knows this runtime");
	let epoch = client.current_epoch().await.unwrap();

	// Alice (genesis origin and pass signer of stream 0) admitted two viewers; Ferdie seeded them.
	let ferdie = pair("//Ferdie");
	let seeder: [u8; 32] = ferdie.public().0;
	let item = |viewer: &sp_core::sr25519::Pair, units: u64| {
		demo_item(runtime.genesis_hash, epoch, seeder, viewer, units)
	};
	let (v1, v2) = (pair("//Viewer1"), pair("//Viewer2"));
	let items = vec![item(&v1, 300), item(&v2, 200)];

	let nonce = client.account_nonce(&seeder).await.unwrap();
	// Mortal: born at the finalized head, valid for 64 blocks on its fork.
	let lifetime = client.mortal_lifetime(64).await.unwrap();
	assert!(matches!(lifetime, Lifetime::Mortal { period: 64, .. }), "{lifetime:?}");
	let xt = signed_extrinsic(&ferdie, &claim_call(&items), nonce, &runtime, lifetime);
	// The bytes are the runtime's own extrinsic type, carrying exactly this call.
	let decoded = UncheckedExtrinsic::decode(&mut &xt[..]).expect("decodes as the runtime's type");
	assert_eq!(decoded.function, RuntimeCall::Dsp(DspCall::claim { items: items.clone() }));
	// Its era is sp_runtime's own for that period and birth block.
	let sp_runtime::generic::Preamble::Signed(_, _, extension) = &decoded.preamble else {
		panic!("a signed extrinsic")
	};
	let Lifetime::Mortal { birth, .. } = lifetime else { unreachable!("checked above") };
	assert_eq!(extension.4.encode(), sp_runtime::generic::Era::mortal(64, birth).encode());

	client.submit(&xt).await.expect("claim accepted by the pool");
	client.wait_included(&seeder, nonce, Duration::from_secs(30)).await.expect("included");
	let credits = client.credits(&seeder).await.unwrap();
	assert_eq!(credits.units_total, 500);
	assert_eq!(credits.items_paid, 2);
	assert_eq!(credits.available, 500 * DEMO_PRICE);
	let state = client.claim_state(0, epoch, &v1.public().0, &seeder).await.unwrap();
	assert_eq!(state.claimed_units, 300);

	// Withdraw part of it.
	let nonce = client.account_nonce(&seeder).await.unwrap();
	let call = withdraw_credits_call(Some(100 * DEMO_PRICE));
	let xt = signed_extrinsic(&ferdie, &call, nonce, &runtime, Lifetime::Immortal);
	client.submit(&xt).await.unwrap();
	client.wait_included(&seeder, nonce, Duration::from_secs(30)).await.unwrap();
	let credits = client.credits(&seeder).await.unwrap();
	assert_eq!(credits.available, 400 * DEMO_PRICE);
	assert_eq!(credits.earned_total, 500 * DEMO_PRICE);

	// A stale nonce is refused by the node with a clear RPC error, and nothing is paid.
	let stale = signed_extrinsic(&ferdie, &claim_call(&items), 0, &runtime, Lifetime::Immortal);
	match client.submit(&stale).await {
		Err(ChainError::Rpc { method: "author_submitExtrinsic", source }) => {
			assert!(source.to_string().contains("outdated"), "{source}")
		}
		other => panic!("stale nonce accepted: {other:?}"),
	}
	assert_eq!(client.credits(&seeder).await.unwrap().units_total, 500);

	// A wrong URL scheme is refused before any I/O.
	assert!(matches!(ChainClient::new("ws://127.0.0.1:1"), Err(ChainError::BadUrl { .. })));
}

/// Runs the `dsp` tool; returns stdout, panicking with stderr on failure.
fn dsp(args: &[&str]) -> String {
	let out = Command::new(dsp_binary()).args(args).output().expect("dsp runs");
	assert!(out.status.success(), "dsp {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
	String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsp_claim_submits_a_seeder_ledger_and_dsp_credits_shows_the_history() {
	let node = Node::start(&["--dev", "--port", &free_port().to_string(), "--no-prometheus"]);
	let url = format!("http://{}", node.rpc_addr);
	let client = ChainClient::new(&url).unwrap();
	let runtime = client.runtime_info().await.unwrap();
	let epoch = client.current_epoch().await.unwrap();
	let (alice, ferdie) = (pair("//Alice"), pair("//Ferdie"));
	let seeder = ferdie.public().0;

	// Ferdie's ledger, as a swarm seeder keeps it: a pass and a receipt per viewer.
	let signers = PassSigners { default: vec![alice.public()], ..Default::default() };
	let mut ledger = SeederLedger::new(LedgerConfig::new(runtime.genesis_hash, seeder, signers));
	for (viewer, units) in [(pair("//Viewer1"), 300u64), (pair("//Viewer2"), 200)] {
		let item = demo_item(runtime.genesis_hash, epoch, seeder, &viewer, units);
		ledger.handle_pass(item.pass).unwrap();
		ledger.handle_receipt(item.receipt).unwrap();
	}
	let dir = tempfile::tempdir().unwrap();
	ledger.save(dir.path()).unwrap();
	let ledger_dir = dir.path().to_str().unwrap();
	let claim = [
		"claim",
		"--ledger",
		ledger_dir,
		"--seeder",
		&hex::encode(seeder),
		"--pass-signer",
		&hex::encode(alice.public().0),
		"--submit",
		"--seeder-seed",
		"//Ferdie",
		"--chain",
		&url,
	];
	let out = dsp(&claim);
	assert!(out.contains("2 items, 500 receipt units, 500 units paid"), "{out}");
	assert_eq!(client.credits(&seeder).await.unwrap().available, 500 * DEMO_PRICE);

	// The same receipts again pay nothing, and the tool says so.
	let out = dsp(&claim);
	assert!(out.contains("2 items, 500 receipt units, 0 units paid"), "{out}");
	assert_eq!(client.credits(&seeder).await.unwrap().units_total, 500);

	let out = dsp(&[
		"credits",
		"--account",
		&hex::encode(seeder),
		"--chain",
		&url,
		"--ledger",
		ledger_dir,
	]);
	assert!(out.contains(&format!("available {}", 500 * DEMO_PRICE)), "{out}");
	assert!(out.contains("units 500  items paid 2"), "{out}");
	assert_eq!(out.matches("2 items  500 receipt units").count(), 2, "{out}");

	// A seed that is not the seeder's is refused before anything is sent.
	let mut wrong = claim;
	wrong[9] = "//Eve";
	let out = Command::new(dsp_binary()).args(wrong).output().unwrap();
	assert!(!out.status.success());
	assert!(String::from_utf8_lossy(&out.stderr).contains("does not belong to --seeder"));
}
