//! Chain specifications: `dev` and `local` built from the runtime's genesis presets, or any
//! chain-spec JSON file (see `chain-spec/README.md`).

use sc_service::ChainType;
use serde_json::json;

/// Network protocol id: keeps DSP peers apart from other Substrate chains' (the default is
/// "sup").
const PROTOCOL_ID: &str = "dsp";

/// Chain spec of the DSP chain; no client extensions.
pub type ChainSpec = sc_service::GenericChainSpec;

/// Token symbol, decimals and SS58 prefix, as wallets read them from `system_properties`.
fn properties() -> sc_chain_spec::Properties {
	let mut properties = sc_chain_spec::Properties::new();
	properties.insert("tokenSymbol".into(), json!("DSP"));
	properties.insert("tokenDecimals".into(), json!(12));
	properties.insert("ss58Format".into(), json!(42));
	properties
}

fn wasm_binary() -> Result<&'static [u8], String> {
	dsp_runtime::WASM_BINARY.ok_or_else(|| {
		"The runtime wasm was not built (SKIP_WASM_BUILD is set?); rebuild without it.".to_string()
	})
}

/// Single-validator development chain (`--dev`, `--chain dev`): Alice authors, is sudo and
/// the demo origin and streamer. Blocks are sealed on demand (manual seal).
pub fn development_chain_spec() -> Result<ChainSpec, String> {
	Ok(ChainSpec::builder(wasm_binary()?, None)
		.with_name("DSP Development")
		.with_id("dsp_dev")
		.with_chain_type(ChainType::Development)
		.with_protocol_id(PROTOCOL_ID)
		.with_genesis_config_preset_name(sp_genesis_builder::DEV_RUNTIME_PRESET)
		.with_properties(properties())
		.build())
}

/// Two-validator local testnet (`--chain local`): Alice and Bob run Aura and GRANDPA.
pub fn local_chain_spec() -> Result<ChainSpec, String> {
	Ok(ChainSpec::builder(wasm_binary()?, None)
		.with_name("DSP Local Testnet")
		.with_id("dsp_local_testnet")
		.with_chain_type(ChainType::Local)
		.with_protocol_id(PROTOCOL_ID)
		.with_genesis_config_preset_name(sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET)
		.with_properties(properties())
		.build())
}

/// Resolves `--chain`: `dev`, `local` (also the default when nothing is given), or a path to a
/// chain-spec JSON file.
pub fn load(id: &str) -> Result<Box<dyn sc_service::ChainSpec>, String> {
	Ok(match id {
		"dev" => Box::new(development_chain_spec()?),
		"" | "local" => Box::new(local_chain_spec()?),
		path => Box::new(ChainSpec::from_json_file(std::path::PathBuf::from(path))?),
	})
}
