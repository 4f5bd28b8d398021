//! `dsp_*` JSON-RPC methods: read `pallet-dsp` through the `DspApi` runtime API, so dApps get
//! settings, origins, streams, streamers and credits without decoding storage.
//!
//! Conventions, the same for every method:
//!
//! - `at` (optional, last) is a block hash; without it the best block is read.
//! - Accounts and keys are accepted as SS58 strings or `0x`-prefixed 32-byte hex, and returned
//!   as SS58 (generic prefix 42).
//! - Balances are JSON integers in the smallest unit (10^-12 DSP). They can exceed 2^53, so
//!   JavaScript clients that need them exact should use a big-number JSON parser (or read them
//!   with polkadot.js through the runtime API). Byte strings (endpoints, metadata) are UTF-8
//!   text, metadata also as `0x` hex.
//! - A bad parameter is error [`INVALID_PARAMS`]; a failed runtime call (unknown block, …) is
//!   error [`RUNTIME_ERROR`]. Neither ever takes the node down.
//!
//! To add a method that reports the streaming worker's live load, give [`DspRpc`] a handle to
//! the worker's shared state next to `client`, declare the method in [`DspApiServer`], and pass
//! the handle in from `crate::rpc::create_full`.

use std::{marker::PhantomData, sync::Arc};

use dsp_primitives::EndpointsView;
use dsp_runtime::{AccountId, Balance, BlockNumber};
use dsp_runtime_api::{
	CapacitySettings, DspApi as DspRuntimeApi, EpochIndex, OriginView, PublicKey, StreamId,
	StreamView, StreamerView,
};
use jsonrpsee::{core::RpcResult, proc_macros::rpc, types::ErrorObjectOwned};
use serde::{Deserialize, Serialize};
use sp_api::ProvideRuntimeApi;
use sp_blockchain::HeaderBackend;
use sp_core::crypto::{AccountId32, Ss58Codec};
use sp_runtime::traits::Block as BlockT;

/// Credits of an account, and claim bookkeeping: the same types the `dsp` CLI reads them with.
pub use dsp_primitives::rpc_types::{ClaimState, Credits};

/// Error code of a malformed or out-of-range parameter (JSON-RPC "invalid params").
pub const INVALID_PARAMS: i32 = -32602;
/// Error code of a runtime API call that failed, e.g. at an unknown or pruned block.
pub const RUNTIME_ERROR: i32 = -32000;

/// Capacity settings of a streamer (or the chain-wide default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
	/// Most direct (TCP/QUIC) sessions.
	pub max_streams: u32,
	/// Dynamic streaming rate `r` in [0, 1].
	pub streaming_rate: f64,
	/// `r` exactly, in parts per billion.
	pub streaming_rate_perbill: u32,
	/// Direct sessions from which new viewers go P2P: `floor(max_streams * (1 - r))`.
	pub p2p_threshold: u32,
}

impl From<CapacitySettings> for Settings {
	fn from(s: CapacitySettings) -> Self {
		let parts = s.streaming_rate.deconstruct();
		Self {
			max_streams: s.max_streams,
			streaming_rate: f64::from(parts) / 1_000_000_000.0,
			streaming_rate_perbill: parts,
			p2p_threshold: s.p2p_threshold(),
		}
	}
}

/// Endpoints a streamer announces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoints {
	/// TCP `host:port`.
	pub tcp: String,
	/// QUIC (UDP) `host:port`.
	pub quic: String,
	/// libp2p multiaddr.
	pub p2p: String,
	/// JSON-RPC URL.
	pub rpc: String,
}

impl From<EndpointsView> for Endpoints {
	fn from(e: EndpointsView) -> Self {
		Self { tcp: text(&e.tcp), quic: text(&e.quic), p2p: text(&e.p2p), rpc: text(&e.rpc) }
	}
}

/// A registered streamer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Streamer {
	/// Operator account (SS58).
	pub account: String,
	/// Announced endpoints.
	pub endpoints: Endpoints,
	/// Settings in force.
	pub settings: Settings,
	/// Whether `settings` is the chain-wide default.
	pub uses_default: bool,
	/// P2P threshold of `settings`.
	pub p2p_threshold: u32,
}

impl From<StreamerView<AccountId>> for Streamer {
	fn from(v: StreamerView<AccountId>) -> Self {
		Self {
			account: v.account.to_ss58check(),
			endpoints: v.endpoints.into(),
			settings: v.settings.into(),
			uses_default: v.uses_default,
			p2p_threshold: v.p2p_threshold,
		}
	}
}

/// A pending escrow withdrawal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingWithdrawal {
	/// Amount, smallest unit.
	pub amount: Balance,
	/// First block at which it may execute.
	pub unlocks_at: BlockNumber,
}

/// A registered origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
	/// Origin account (SS58).
	pub account: String,
	/// Segment-signing key (SS58).
	pub signing_key: String,
	/// Authorised pass signers (SS58).
	pub pass_signers: Vec<String>,
	/// Metadata as UTF-8 text (invalid bytes replaced).
	pub metadata: String,
	/// Metadata bytes, `0x` hex.
	pub metadata_hex: String,
	/// Escrow, smallest unit.
	pub escrow: Balance,
	/// Pending escrow withdrawal, if any.
	pub pending_withdrawal: Option<PendingWithdrawal>,
	/// Open streams.
	pub open_streams: u32,
	/// Block of retirement, if retired.
	pub retired_at: Option<BlockNumber>,
}

impl From<OriginView<AccountId, Balance, BlockNumber>> for Origin {
	fn from(v: OriginView<AccountId, Balance, BlockNumber>) -> Self {
		Self {
			account: v.account.to_ss58check(),
			signing_key: v.signing_key.to_ss58check(),
			pass_signers: v.pass_signers.iter().map(|k| k.to_ss58check()).collect(),
			metadata: text(&v.metadata),
			metadata_hex: sp_core::bytes::to_hex(&v.metadata, false),
			escrow: v.escrow,
			pending_withdrawal: v
				.pending_withdrawal
				.map(|(amount, unlocks_at)| PendingWithdrawal { amount, unlocks_at }),
			open_streams: v.open_streams,
			retired_at: v.retired_at,
		}
	}
}

/// A registered stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stream {
	/// Stream id.
	pub id: StreamId,
	/// Owning origin (SS58).
	pub origin: String,
	/// The origin's segment-signing key (SS58).
	pub signing_key: String,
	/// Nominal bitrate, kbit/s.
	pub bitrate_kbps: u32,
	/// Price per relayed unit, smallest unit.
	pub price_per_unit: Balance,
	/// Most units paid per viewer and epoch.
	pub viewer_cap_per_epoch: u64,
	/// Whether the stream accepts viewers.
	pub open: bool,
	/// Most paid for the stream per epoch, smallest unit (fixed at creation).
	pub epoch_budget: Balance,
	/// Escrow committed to the stream and not paid out yet, smallest unit.
	pub committed: Balance,
	/// What the current epoch's budget has left to pay, smallest unit.
	pub epoch_left: Balance,
	/// Whether a streamer may issue passes for the current epoch: open, no pending escrow
	/// withdrawal of its origin, the current epoch's budget carved in full and not spent.
	pub passes_open: bool,
}

impl From<StreamView<AccountId, Balance>> for Stream {
	fn from(v: StreamView<AccountId, Balance>) -> Self {
		Self {
			id: v.id,
			origin: v.origin.to_ss58check(),
			signing_key: v.signing_key.to_ss58check(),
			bitrate_kbps: v.bitrate_kbps,
			price_per_unit: v.price_per_unit,
			viewer_cap_per_epoch: v.viewer_cap_per_epoch,
			open: v.open,
			epoch_budget: v.epoch_budget,
			committed: v.committed,
			epoch_left: v.epoch_left,
			passes_open: v.passes_open,
		}
	}
}

/// The `dsp_*` methods.
#[rpc(client, server, namespace = "dsp")]
pub trait DspApi<BlockHash> {
	/// Chain-wide default capacity settings.
	#[method(name = "defaultSettings", blocking)]
	fn default_settings(&self, at: Option<BlockHash>) -> RpcResult<Settings>;

	/// A streamer by account, or `null`.
	#[method(name = "streamer", blocking)]
	fn streamer(&self, account: String, at: Option<BlockHash>) -> RpcResult<Option<Streamer>>;

	/// Registered streamers in storage order: after `start_after` (an account; from the
	/// first when absent), at most `limit` (default and maximum 256). Page on with the last
	/// account returned until a page comes back shorter than asked.
	#[method(name = "streamers", blocking)]
	fn streamers(
		&self,
		start_after: Option<String>,
		limit: Option<u32>,
		at: Option<BlockHash>,
	) -> RpcResult<Vec<Streamer>>;

	/// P2P threshold of a streamer, or `null` if it is not registered.
	#[method(name = "p2pThreshold", blocking)]
	fn p2p_threshold(&self, account: String, at: Option<BlockHash>) -> RpcResult<Option<u32>>;

	/// An origin by account, or `null`.
	#[method(name = "origin", blocking)]
	fn origin(&self, account: String, at: Option<BlockHash>) -> RpcResult<Option<Origin>>;

	/// A stream by id, or `null`.
	#[method(name = "stream", blocking)]
	fn stream(&self, id: StreamId, at: Option<BlockHash>) -> RpcResult<Option<Stream>>;

	/// Credits of an account (zero for unknown accounts).
	#[method(name = "credits", blocking)]
	fn credits(&self, account: String, at: Option<BlockHash>) -> RpcResult<Credits>;

	/// Claim bookkeeping for one stream, epoch, viewer key and seeder account.
	#[method(name = "claimState", blocking)]
	fn claim_state(
		&self,
		stream: StreamId,
		epoch: EpochIndex,
		viewer: String,
		seeder: String,
		at: Option<BlockHash>,
	) -> RpcResult<ClaimState>;

	/// Credit epoch of the block read.
	#[method(name = "currentEpoch", blocking)]
	fn current_epoch(&self, at: Option<BlockHash>) -> RpcResult<EpochIndex>;
}

/// Implements [`DspApiServer`] with the runtime API of a client.
pub struct DspRpc<C, Block> {
	client: Arc<C>,
	_block: PhantomData<Block>,
}

impl<C, Block> DspRpc<C, Block> {
	/// Serves `dsp_*` from `client`.
	pub fn new(client: Arc<C>) -> Self {
		Self { client, _block: PhantomData }
	}
}

impl<C, Block> DspRpc<C, Block>
where
	Block: BlockT,
	C: ProvideRuntimeApi<Block> + HeaderBackend<Block> + Send + Sync + 'static,
	C::Api: DspRuntimeApi<Block, AccountId, Balance, BlockNumber>,
{
	/// Runs `call` against the runtime API at `at` (the best block by default).
	fn read<R>(
		&self,
		at: Option<Block::Hash>,
		call: impl FnOnce(&C::Api, Block::Hash) -> Result<R, sp_api::ApiError>,
	) -> RpcResult<R> {
		let at = at.unwrap_or_else(|| self.client.info().best_hash);
		let api = self.client.runtime_api();
		call(&api, at).map_err(|e| {
			ErrorObjectOwned::owned(RUNTIME_ERROR, "Runtime API call failed", Some(format!("{e}")))
		})
	}
}

impl<C, Block> DspApiServer<Block::Hash> for DspRpc<C, Block>
where
	Block: BlockT,
	C: ProvideRuntimeApi<Block> + HeaderBackend<Block> + Send + Sync + 'static,
	C::Api: DspRuntimeApi<Block, AccountId, Balance, BlockNumber>,
{
	fn default_settings(&self, at: Option<Block::Hash>) -> RpcResult<Settings> {
		self.read(at, |api, at| api.default_settings(at)).map(Into::into)
	}

	fn streamer(&self, account: String, at: Option<Block::Hash>) -> RpcResult<Option<Streamer>> {
		let account = parse_account("account", &account)?;
		self.read(at, |api, at| api.streamer(at, account)).map(|s| s.map(Into::into))
	}

	fn streamers(
		&self,
		start_after: Option<String>,
		limit: Option<u32>,
		at: Option<Block::Hash>,
	) -> RpcResult<Vec<Streamer>> {
		let start_after = start_after.map(|a| parse_account("startAfter", &a)).transpose()?;
		let limit = limit.unwrap_or(dsp_primitives::MAX_STREAMERS_PAGE);
		self.read(at, |api, at| api.streamers(at, start_after, limit))
			.map(|page| page.into_iter().map(Into::into).collect())
	}

	fn p2p_threshold(&self, account: String, at: Option<Block::Hash>) -> RpcResult<Option<u32>> {
		let account = parse_account("account", &account)?;
		self.read(at, |api, at| api.p2p_threshold(at, account))
	}

	fn origin(&self, account: String, at: Option<Block::Hash>) -> RpcResult<Option<Origin>> {
		let account = parse_account("account", &account)?;
		self.read(at, |api, at| api.origin(at, account)).map(|o| o.map(Into::into))
	}

	fn stream(&self, id: StreamId, at: Option<Block::Hash>) -> RpcResult<Option<Stream>> {
		self.read(at, |api, at| api.stream(at, id)).map(|s| s.map(Into::into))
	}

	fn credits(&self, account: String, at: Option<Block::Hash>) -> RpcResult<Credits> {
		let account = parse_account("account", &account)?;
		self.read(at, |api, at| api.credits(at, account)).map(Into::into)
	}

	fn claim_state(
		&self,
		stream: StreamId,
		epoch: EpochIndex,
		viewer: String,
		seeder: String,
		at: Option<Block::Hash>,
	) -> RpcResult<ClaimState> {
		let viewer = PublicKey::from_raw(parse_32_bytes("viewer", &viewer)?);
		let seeder = parse_account("seeder", &seeder)?;
		self.read(at, |api, at| api.claim_state(at, stream, epoch, viewer, seeder)).map(Into::into)
	}

	fn current_epoch(&self, at: Option<Block::Hash>) -> RpcResult<EpochIndex> {
		self.read(at, |api, at| api.current_epoch(at))
	}
}

/// Byte string as text; invalid UTF-8 is replaced rather than refused.
fn text(bytes: &[u8]) -> String {
	String::from_utf8_lossy(bytes).into_owned()
}

fn invalid_param(name: &str, value: &str, why: &str) -> ErrorObjectOwned {
	ErrorObjectOwned::owned(
		INVALID_PARAMS,
		format!("Invalid parameter `{name}`: {why}"),
		Some(value.chars().take(128).collect::<String>()),
	)
}

/// 32 bytes from an SS58 string (any prefix) or `0x`-prefixed hex.
fn parse_32_bytes(name: &str, value: &str) -> RpcResult<[u8; 32]> {
	let value = value.trim();
	if let Some(hex) = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
		let bytes = sp_core::bytes::from_hex(hex)
			.map_err(|e| invalid_param(name, value, &format!("bad hex ({e})")))?;
		return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
			invalid_param(name, value, &format!("expected 32 bytes, got {}", bytes.len()))
		});
	}
	AccountId32::from_ss58check_with_version(value)
		.map(|(account, _prefix)| account.into())
		.map_err(|e| invalid_param(name, value, &format!("not SS58 or 0x hex ({e:?})")))
}

fn parse_account(name: &str, value: &str) -> RpcResult<AccountId> {
	parse_32_bytes(name, value).map(AccountId::from)
}

#[cfg(test)]
mod tests {
	use super::*;
	use sp_keyring::Sr25519Keyring;

	#[test]
	fn accounts_parse_from_ss58_and_hex() {
		let alice = Sr25519Keyring::Alice.to_account_id();
		assert_eq!(parse_account("a", &alice.to_ss58check()).unwrap(), alice);
		let hex = sp_core::bytes::to_hex(alice.as_ref(), false);
		assert_eq!(parse_account("a", &hex).unwrap(), alice);
		assert_eq!(parse_account("a", &format!("  {hex} ")).unwrap(), alice);
	}

	#[test]
	fn bad_accounts_are_invalid_params_errors() {
		for bad in ["", "0x", "0x1234", "0xzz", "not-an-address", "5GrwvaEF"] {
			let err = parse_account("account", bad).unwrap_err();
			assert_eq!(err.code(), INVALID_PARAMS, "{bad}");
			assert!(err.message().contains("account"), "{bad}");
		}
	}

	#[test]
	fn settings_report_rate_and_threshold() {
		let s: Settings = CapacitySettings {
			max_streams: 2000,
			streaming_rate: sp_runtime::Perbill::from_percent(50),
		}
		.into();
		assert_eq!(s.p2p_threshold, 1000);
		assert_eq!(s.streaming_rate_perbill, 500_000_000);
		assert!((s.streaming_rate - 0.5).abs() < 1e-12);
	}
}
