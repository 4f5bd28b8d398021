//! Genesis presets: the `development` chain (one validator, Alice, used by `dsp-node --dev`)
//! and the `local_testnet` chain (validators Alice and Bob, for `--chain local`).
//!
//! Both fund the well-known development accounts (Alice … Ferdie and their `//stash`
//! accounts), make Alice sudo, and seed `pallet-dsp` with a demo origin, one stream and local
//! streamer endpoints, so that a fresh chain can serve and pay for a stream straight away.

use crate::{
	AccountId, AuraConfig, Balance, BalancesConfig, DspConfig, GrandpaConfig, RuntimeGenesisConfig,
	SudoConfig, UNIT,
};
use alloc::{vec, vec::Vec};
use dsp_primitives::{CapacitySettings, EndpointsView, Perbill, PublicKey};
use frame_support::build_struct_json_patch;
use serde_json::Value;
use sp_consensus_aura::sr25519::AuthorityId as AuraId;
use sp_consensus_grandpa::AuthorityId as GrandpaId;
use sp_genesis_builder::{PresetId, DEV_RUNTIME_PRESET, LOCAL_TESTNET_RUNTIME_PRESET};
use sp_keyring::{Ed25519Keyring, Sr25519Keyring};

/// Free balance of every endowed development account.
pub const ENDOWMENT: Balance = 1_000_000 * UNIT;
/// Escrow of the demo origin.
pub const DEMO_ESCROW: Balance = 100_000 * UNIT;
/// Metadata of the demo origin.
pub const DEMO_ORIGIN_METADATA: &[u8] = b"DSP demo origin";
/// Bitrate of the demo stream, kbit/s.
pub const DEMO_STREAM_BITRATE_KBPS: u32 = 500;
/// Price per relayed unit (1 KiB) of the demo stream: 10^-6 DSP.
pub const DEMO_STREAM_PRICE_PER_UNIT: Balance = 1_000_000;
/// Most units paid per viewer and epoch in the demo stream (about 1 GiB).
pub const DEMO_STREAM_VIEWER_CAP: u64 = 1_000_000;
/// Most paid for the demo stream per epoch: 1,000 DSP, 10^9 units (about 1 TiB relayed).
pub const DEMO_STREAM_EPOCH_BUDGET: Balance = 1_000 * UNIT;
/// Escrow committed to the demo stream at genesis, from Alice's free balance (besides
/// [`DEMO_ESCROW`]): the epoch budget for every epoch of the claim window (25) and as many
/// again, so passes stay open for a day of full use without a top-up.
pub const DEMO_STREAM_COMMITMENT: Balance = 50 * DEMO_STREAM_EPOCH_BUDGET;

/// Local endpoints a development streamer announces. `port_offset` keeps several streamers on
/// one machine apart (Alice 0, Bob 100, …).
fn local_endpoints(port_offset: u16, rpc_port: u16) -> EndpointsView {
	let tcp = 7000 + port_offset;
	let quic = 7001 + port_offset;
	let p2p = 7002 + port_offset;
	EndpointsView {
		tcp: alloc::format!("127.0.0.1:{tcp}").into_bytes(),
		quic: alloc::format!("127.0.0.1:{quic}").into_bytes(),
		p2p: alloc::format!("/ip4/127.0.0.1/udp/{p2p}/quic-v1").into_bytes(),
		rpc: alloc::format!("ws://127.0.0.1:{rpc_port}").into_bytes(),
	}
}

/// A genesis patch: only the fields given here, the rest take the pallets' defaults.
fn genesis(
	authorities: Vec<(AuraId, GrandpaId)>,
	endowed: Vec<AccountId>,
	root: AccountId,
	streamers: Vec<(AccountId, EndpointsView)>,
) -> Value {
	let alice = Sr25519Keyring::Alice;
	let alice_key: PublicKey = alice.public();
	// Every streamer node signs passes with its own key (its account's key, the node's `dsps`
	// key on dev chains), so the demo origin authorises each of them.
	let pass_signers: Vec<PublicKey> = streamers
		.iter()
		.map(|(account, _)| PublicKey::from_raw(*<AccountId as AsRef<[u8; 32]>>::as_ref(account)))
		.collect();
	build_struct_json_patch!(RuntimeGenesisConfig {
		balances: BalancesConfig {
			balances: endowed
				.iter()
				.cloned()
				.map(|account| (account, ENDOWMENT))
				.collect::<Vec<_>>(),
		},
		aura: AuraConfig {
			authorities: authorities.iter().map(|(aura, _)| aura.clone()).collect::<Vec<_>>(),
		},
		grandpa: GrandpaConfig {
			authorities: authorities
				.iter()
				.map(|(_, grandpa)| (grandpa.clone(), 1))
				.collect::<Vec<_>>(),
		},
		sudo: SudoConfig { key: Some(root) },
		dsp: DspConfig {
			default_settings: CapacitySettings {
				max_streams: 2000,
				streaming_rate: Perbill::zero()
			},
			origins: vec![(
				alice.to_account_id(),
				alice_key,
				pass_signers,
				DEMO_ESCROW,
				DEMO_ORIGIN_METADATA.to_vec(),
			)],
			streams: vec![(
				alice.to_account_id(),
				DEMO_STREAM_BITRATE_KBPS,
				DEMO_STREAM_PRICE_PER_UNIT,
				DEMO_STREAM_VIEWER_CAP,
				DEMO_STREAM_EPOCH_BUDGET,
				DEMO_STREAM_COMMITMENT,
			)],
			streamers: streamers
				.into_iter()
				.map(|(account, endpoints)| (account, endpoints, None))
				.collect::<Vec<_>>(),
		},
	})
}

/// Aura (sr25519) and GRANDPA (ed25519) keys of a well-known development validator: the
/// keys `//Alice`, `//Bob`, … derive for each scheme (what `--alice` puts in the keystore).
fn authority_keys(aura: Sr25519Keyring, grandpa: Ed25519Keyring) -> (AuraId, GrandpaId) {
	(aura.public().into(), grandpa.public().into())
}

/// All twelve well-known development accounts (Alice … Ferdie and their `//stash` accounts).
fn dev_accounts() -> Vec<AccountId> {
	Sr25519Keyring::well_known().map(|k| k.to_account_id()).collect()
}

/// `development`: Alice alone produces and finalizes blocks and is the demo streamer.
pub fn development_config_genesis() -> Value {
	genesis(
		vec![authority_keys(Sr25519Keyring::Alice, Ed25519Keyring::Alice)],
		dev_accounts(),
		Sr25519Keyring::Alice.to_account_id(),
		vec![(Sr25519Keyring::Alice.to_account_id(), local_endpoints(0, 9944))],
	)
}

/// `local_testnet`: Alice and Bob validate; both are streamers (Bob's ports offset by 100,
/// his RPC on 9945) and both sign passes for the demo origin.
pub fn local_config_genesis() -> Value {
	genesis(
		vec![
			authority_keys(Sr25519Keyring::Alice, Ed25519Keyring::Alice),
			authority_keys(Sr25519Keyring::Bob, Ed25519Keyring::Bob),
		],
		dev_accounts(),
		Sr25519Keyring::Alice.to_account_id(),
		vec![
			(Sr25519Keyring::Alice.to_account_id(), local_endpoints(0, 9944)),
			(Sr25519Keyring::Bob.to_account_id(), local_endpoints(100, 9945)),
		],
	)
}

/// The JSON patch of a named preset, or `None` for an unknown name.
pub fn get_preset(id: &PresetId) -> Option<Vec<u8>> {
	let patch = match id.as_ref() {
		DEV_RUNTIME_PRESET => development_config_genesis(),
		LOCAL_TESTNET_RUNTIME_PRESET => local_config_genesis(),
		_ => return None,
	};
	Some(
		serde_json::to_string(&patch)
			.expect("serialization to json is expected to work. qed.")
			.into_bytes(),
	)
}

/// Names of the presets this runtime provides.
pub fn preset_names() -> Vec<PresetId> {
	vec![PresetId::from(DEV_RUNTIME_PRESET), PresetId::from(LOCAL_TESTNET_RUNTIME_PRESET)]
}
