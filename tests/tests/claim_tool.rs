//! The `dsp` tool's chain client against a real `dsp-node --dev`: its hand-encoded `claim` and
//! `withdraw_credits` extrinsics decode as the runtime's own, are accepted, and pay exactly.

use codec::Decode;
use dsp_integration_tests::*;
use dsp_primitives::{ClaimItem, Receipt, Signed, ViewerPass};
use dsp_runtime::{RuntimeCall, UncheckedExtrinsic};
use dsp_streaming::chain::{
	client::{ChainClient, ChainError},
	extrinsic::{claim_call, signed_extrinsic, withdraw_credits_call},
};
use pallet_dsp::Call as DspCall;
use sp_core::Pair;
use std::time::Duration;

/// Price per unit of the genesis demo stream 0 (runtime genesis preset).
const DEMO_PRICE: u128 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsp_tool_claims_and_withdraws_credits_on_a_dev_node() {
	let node = Node::start(&["--dev", "--port", &free_port().to_string(), "--no-prometheus"]);
	let client = ChainClient::new(&format!("http://{}", node.rpc_addr)).unwrap();
	let runtime = client.runtime_info().await.expect("runtime info");
	runtime.check().expect("the tool knows this runtime");
	let epoch = client.current_epoch().await.unwrap();

	// Alice (genesis origin and pass signer of stream 0) admitted two viewers; Ferdie seeded them.
	let (alice, ferdie) = (pair("//Alice"), pair("//Ferdie"));
	let seeder: [u8; 32] = ferdie.public().0;
	let item = |viewer: &sp_core::sr25519::Pair, units: u64| ClaimItem {
		pass: Signed::sign(
			ViewerPass {
				genesis_hash: runtime.genesis_hash,
				stream: 0,
				epoch,
				viewer: viewer.public(),
				max_units: 10_000,
				issuer: alice.public(),
			},
			&alice,
		),
		receipt: Signed::sign(
			Receipt {
				genesis_hash: runtime.genesis_hash,
				stream: 0,
				epoch,
				seeder,
				viewer: viewer.public(),
				units,
			},
			viewer,
		),
	};
	let (v1, v2) = (pair("//Viewer1"), pair("//Viewer2"));
	let items = vec![item(&v1, 300), item(&v2, 200)];

	let nonce = client.account_nonce(&seeder).await.unwrap();
	let xt = signed_extrinsic(&ferdie, &claim_call(&items), nonce, &runtime);
	// The bytes are the runtime's own extrinsic type, carrying exactly this call.
	let decoded = UncheckedExtrinsic::decode(&mut &xt[..]).expect("decodes as the runtime's type");
	assert_eq!(decoded.function, RuntimeCall::Dsp(DspCall::claim { items: items.clone() }));

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
	let xt =
		signed_extrinsic(&ferdie, &withdraw_credits_call(Some(100 * DEMO_PRICE)), nonce, &runtime);
	client.submit(&xt).await.unwrap();
	client.wait_included(&seeder, nonce, Duration::from_secs(30)).await.unwrap();
	let credits = client.credits(&seeder).await.unwrap();
	assert_eq!(credits.available, 400 * DEMO_PRICE);
	assert_eq!(credits.earned_total, 500 * DEMO_PRICE);

	// A stale nonce is refused by the node with a clear RPC error, and nothing is paid.
	let stale = signed_extrinsic(&ferdie, &claim_call(&items), 0, &runtime);
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
