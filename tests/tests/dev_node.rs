//! `dsp-node --dev` end to end: signed extrinsics over RPC, events, storage and `dsp_*` RPC.

use codec::Decode;
use dsp_integration_tests::*;
use dsp_primitives::{
	CapacitySettings, ClaimItem, ClaimRejection, EndpointsView, Perbill, Receipt, Signed,
	ViewerPass,
};
use dsp_runtime::{Runtime, RuntimeCall};
use pallet_dsp::{Call as DspCall, Event as DspEvent};
use serde_json::json;
use sp_core::{Encode, Pair};
use sp_crypto_hashing::blake2_128;
use std::time::Duration;

const UNIT: u128 = 1_000_000_000_000;

fn dsp(call: DspCall<Runtime>) -> RuntimeCall {
	RuntimeCall::Dsp(call)
}

#[test]
fn genesis_demo_state_is_readable_over_dsp_rpc() {
	let node = dev_node();
	let alice = address(&pair("//Alice"));

	let settings = node.call("dsp_defaultSettings", json!([]));
	assert_eq!(settings["maxStreams"], 2000, "{settings}");
	assert_eq!(node.call("dsp_p2pThreshold", json!([alice])), json!(2000));

	let origin = node.call("dsp_origin", json!([alice]));
	assert_eq!(origin["escrow"].as_f64().unwrap(), (100_000 * UNIT) as f64, "{origin}");
	assert_eq!(origin["openStreams"], 1, "{origin}");

	let stream = node.call("dsp_stream", json!([0]));
	assert_eq!(stream["bitrateKbps"], 500, "{stream}");
	assert_eq!(stream["open"], true);
	// The demo stream has a funded commitment, so its streamers may issue passes.
	assert_eq!(stream["passesOpen"], true, "{stream}");
	assert_eq!(stream["committed"].as_f64().unwrap(), (50_000 * UNIT) as f64, "{stream}");
	assert!(node.call("dsp_stream", json!([424242])).is_null());

	let streamers = node.call("dsp_streamers", json!([]));
	assert_eq!(streamers.as_array().map(Vec::len), Some(1), "{streamers}");
	assert_eq!(node.call("dsp_currentEpoch", json!([])), json!(0));
}

#[test]
fn origin_streamer_and_claim_flow_settles_on_chain() {
	let node = dev_node();
	let (bob, dave, eve) = (pair("//Bob"), pair("//Dave"), pair("//Eve"));
	let issuer = pair("//Charlie"); // the streamer node key Bob authorises to sign passes
	let price = 1_000_000u128;

	// Bob becomes an origin with Charlie's node as pass signer, funds escrow, opens a stream.
	let events = must_succeed(
		&node,
		&bob,
		dsp(DspCall::register_origin {
			signing_key: bob.public(),
			pass_signers: vec![issuer.public()],
			metadata: b"bob tv".to_vec(),
		}),
	);
	assert_eq!(events, vec![DspEvent::OriginRegistered { origin: bob.public().into() }]);
	must_succeed(&node, &bob, dsp(DspCall::fund_escrow { amount: 1_000 * UNIT }));
	let events = must_succeed(
		&node,
		&bob,
		dsp(DspCall::create_stream {
			bitrate_kbps: 800,
			price_per_unit: price,
			viewer_cap_per_epoch: 10_000,
			epoch_budget: 10 * UNIT,
		}),
	);
	assert_eq!(events, vec![DspEvent::StreamCreated { stream: 1, origin: bob.public().into() }]);
	must_succeed(&node, &bob, dsp(DspCall::fund_stream { stream: 1, amount: 250 * UNIT }));
	let stream = node.call("dsp_stream", json!([1]));
	assert_eq!(stream["passesOpen"], true, "{stream}");
	assert_eq!(stream["committed"].as_f64().unwrap(), (250 * UNIT) as f64, "{stream}");

	// Storage read back by hand: Dsp::Origins(Bob), Blake2_128Concat.
	let account: sp_runtime::AccountId32 = bob.public().into();
	let key =
		[storage_key(b"Dsp", b"Origins"), blake2_128(account.as_ref()).to_vec(), account.encode()]
			.concat();
	let raw = node.storage(&key, None).expect("origin stored");
	let info = pallet_dsp::OriginInfoOf::<Runtime>::decode(&mut &raw[..]).unwrap();
	assert_eq!(info.signing_key, bob.public());
	assert_eq!(info.pass_signers.into_inner(), vec![issuer.public()]);

	// Dave registers as a streamer and sets r = 0.5.
	let endpoints = EndpointsView {
		tcp: b"127.0.0.1:7100".to_vec(),
		quic: b"127.0.0.1:7101".to_vec(),
		p2p: b"/ip4/127.0.0.1/udp/7102/quic-v1".to_vec(),
		rpc: b"ws://127.0.0.1:9955".to_vec(),
	};
	must_succeed(&node, &dave, dsp(DspCall::register_streamer { endpoints, settings: None }));
	let half = CapacitySettings { max_streams: 2000, streaming_rate: Perbill::from_percent(50) };
	must_succeed(&node, &dave, dsp(DspCall::set_streamer_settings { settings: Some(half) }));
	assert_eq!(node.call("dsp_p2pThreshold", json!([address(&dave)])), json!(1000));
	let view = node.call("dsp_streamer", json!([address(&dave)]));
	assert_eq!(view["usesDefault"], false, "{view}");
	assert_eq!(view["p2pThreshold"], 1000, "{view}");

	// Eve seeded two viewers; a third receipt is forged.
	let genesis: [u8; 32] = node.block_hash(0).into();
	let epoch = node.call("dsp_currentEpoch", json!([])).as_u64().unwrap() as u32;
	let item = |viewer: &sp_core::sr25519::Pair, units: u64| ClaimItem {
		pass: Signed::sign(
			ViewerPass {
				genesis_hash: genesis,
				stream: 1,
				epoch,
				viewer: viewer.public(),
				max_units: 5_000,
				issuer: issuer.public(),
			},
			&issuer,
		),
		receipt: Signed::sign(
			Receipt {
				genesis_hash: genesis,
				stream: 1,
				epoch,
				seeder: sp_runtime::AccountId32::from(eve.public()).into(),
				viewer: viewer.public(),
				units,
			},
			viewer,
		),
	};
	let (v1, v2, v3) = (pair("//Viewer1"), pair("//Viewer2"), pair("//Viewer3"));
	let mut forged = item(&v3, 900);
	forged.receipt = Signed::sign(forged.receipt.payload.clone(), &eve);
	let items = vec![item(&v1, 300), item(&v2, 200), forged];
	let events = must_succeed(&node, &eve, dsp(DspCall::claim { items: items.clone() }));
	let eve_account: sp_runtime::AccountId32 = eve.public().into();
	assert!(events.contains(&DspEvent::ClaimItemRejected {
		seeder: eve_account.clone(),
		index: 2,
		reason: ClaimRejection::BadReceiptSignature,
	}));
	assert_eq!(
		events.last(),
		Some(&DspEvent::ClaimBatchProcessed {
			seeder: eve_account.clone(),
			paid_items: 2,
			rejected_items: 1,
			amount: 500 * price,
		})
	);

	let credits = node.call("dsp_credits", json!([address(&eve)]));
	assert_eq!(credits["available"].as_f64().unwrap(), (500 * price) as f64, "{credits}");
	assert_eq!(credits["unitsTotal"], 500, "{credits}");
	let origin = node.call("dsp_origin", json!([address(&bob)]));
	assert_eq!(origin["escrow"].as_f64().unwrap(), (750 * UNIT) as f64, "{origin}");
	let stream = node.call("dsp_stream", json!([1]));
	assert_eq!(stream["committed"].as_f64().unwrap(), (250 * UNIT - 500 * price) as f64);
	assert_eq!(stream["epochLeft"].as_f64().unwrap(), (10 * UNIT - 500 * price) as f64);
	let state =
		node.call("dsp_claimState", json!([1, epoch, hex_0x(&v1.public().0), address(&eve)]));
	assert_eq!(state["claimedUnits"], 300, "{state}");

	// The same batch again pays nothing.
	let events = must_succeed(&node, &eve, dsp(DspCall::claim { items }));
	assert_eq!(
		events.last(),
		Some(&DspEvent::ClaimBatchProcessed {
			seeder: eve_account.clone(),
			paid_items: 0,
			rejected_items: 3,
			amount: 0,
		})
	);

	// Eve withdraws her credits as free balance.
	let events = must_succeed(&node, &eve, dsp(DspCall::withdraw_credits { amount: None }));
	assert_eq!(
		events,
		vec![DspEvent::CreditsWithdrawn { account: eve_account, amount: 500 * price }]
	);
}

#[test]
fn bad_input_gets_precise_errors_and_the_node_survives() {
	let mut node = dev_node();
	let ferdie = pair("//Ferdie");

	// Oversized argument: a precise pallet error, nothing stored.
	let events = node.submit(
		&ferdie,
		dsp(DspCall::register_origin {
			signing_key: ferdie.public(),
			pass_signers: vec![],
			metadata: vec![0; 10_000],
		}),
	);
	let expected: sp_runtime::DispatchError = pallet_dsp::Error::<Runtime>::MetadataTooLong.into();
	assert_eq!(dispatch_error(&events), Some(expected), "{events:?}");
	assert!(node.call("dsp_origin", json!([address(&ferdie)])).is_null());

	// Root-only call from a plain account.
	let events = node.submit(
		&ferdie,
		dsp(DspCall::set_default_settings { settings: CapacitySettings::spec_default() }),
	);
	assert_eq!(dispatch_error(&events), Some(sp_runtime::DispatchError::BadOrigin));

	// Garbage extrinsic bytes are refused by the pool with an RPC error.
	let err = node.rpc("author_submitExtrinsic", json!(["0xdeadbeef"])).unwrap_err();
	assert!(err["code"].is_i64(), "{err}");

	// Bad RPC parameters: JSON-RPC errors, never a crash.
	for (method, params) in [
		("dsp_origin", json!(["not-an-address"])),
		("dsp_credits", json!(["0x1234"])),
		("dsp_stream", json!(["seven"])),
		("dsp_claimState", json!([1, 0, "0xzz", address(&ferdie)])),
		("dsp_streamer", json!([])),
	] {
		let err = node.rpc(method, params.clone()).expect_err(method);
		assert!(err["code"].is_i64() && err["message"].is_string(), "{method} {params}: {err}");
	}
	assert!(node.is_running());
	let before = node.best_number();
	node.wait_for("a new block after bad input", Duration::from_secs(30), || {
		(node.best_number() > before).then_some(())
	});
}

#[test]
fn prometheus_exports_substrate_metrics() {
	let port = free_port();
	let node = Node::start(&[
		"--dev",
		"--port",
		&free_port().to_string(),
		"--prometheus-port",
		&port.to_string(),
	]);
	node.wait_for("block #1", Duration::from_secs(60), || (node.best_number() >= 1).then_some(()));
	let metrics = http_get(&format!("127.0.0.1:{port}"), "/metrics");
	assert!(metrics.contains("substrate_block_height"), "{}", tail(&metrics, 20));
}

#[test]
fn build_spec_works_for_dev_and_local() {
	for chain in ["dev", "local"] {
		let out = std::process::Command::new(node_binary())
			.args(["build-spec", "--chain", chain])
			.output()
			.expect("build-spec runs");
		assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
		let spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON spec");
		assert!(spec["genesis"].is_object(), "{chain}: no genesis");
		assert_eq!(spec["properties"]["tokenSymbol"], "DSP");
	}
}
