//! A small JSON-RPC client for the DSP node: what `dsp claim` and `dsp credits` need.
//!
//! HTTP only, through the node's own JSON-RPC stack (`jsonrpsee`). Reads use the standard
//! Substrate methods and the node's `dsp_*` methods; the one write is `author_submitExtrinsic`.

use super::extrinsic::{Lifetime, RuntimeInfo};
use dsp_primitives::{EpochIndex, Hash32, StreamId};
use jsonrpsee_core::{client::ClientT, params::ArrayParams, rpc_params};
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use serde::{de::DeserializeOwned, Deserialize};
use sp_crypto_hashing::{blake2_128, twox_128};
use std::time::{Duration, Instant};

/// A chain RPC call failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
	/// The URL is not a usable `http://` endpoint.
	#[error("bad RPC URL {url:?}: {reason}")]
	BadUrl {
		/// The URL given.
		url: String,
		/// Why it cannot be used.
		reason: String,
	},
	/// The node could not be reached or answered with an error. For `author_submitExtrinsic`
	/// the extrinsic may or may not have reached the pool: check the account's nonce.
	#[error("{method}: {source}")]
	Rpc {
		/// The method called.
		method: &'static str,
		/// What went wrong.
		source: jsonrpsee_core::ClientError,
	},
	/// The node answered something this client cannot read.
	#[error("{method}: unexpected answer: {reason}")]
	BadAnswer {
		/// The method called.
		method: &'static str,
		/// What is wrong with it.
		reason: String,
	},
	/// The extrinsic was not included before the deadline (it may still be).
	#[error("extrinsic with nonce {nonce} not included within {waited:?}")]
	NotIncluded {
		/// The extrinsic's nonce.
		nonce: u32,
		/// How long we waited.
		waited: Duration,
	},
}

/// An account's credits (`dsp_credits`) and what the chain paid for one (stream, epoch,
/// viewer, seeder) (`dsp_claimState`): the node's own RPC types.
pub use dsp_primitives::rpc_types::{ClaimState, Credits};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeVersion {
	spec_name: String,
	spec_version: u32,
	transaction_version: u32,
}

/// JSON-RPC client of one DSP node.
pub struct ChainClient {
	client: HttpClient,
}

/// `0x`-prefixed lowercase hex.
pub fn hex_0x(bytes: &[u8]) -> String {
	format!("0x{}", hex::encode(bytes))
}

fn parse_hash(method: &'static str, value: &str) -> Result<Hash32, ChainError> {
	let bad = |reason: String| ChainError::BadAnswer { method, reason };
	let bytes = hex::decode(value.trim_start_matches("0x")).map_err(|e| bad(e.to_string()))?;
	bytes.try_into().map_err(|b: Vec<u8>| bad(format!("{} bytes, expected 32", b.len())))
}

impl ChainClient {
	/// A client of the node at `url` (`http://host:port`, the node's `--rpc-port`).
	pub fn new(url: &str) -> Result<Self, ChainError> {
		if !url.starts_with("http://") {
			return Err(ChainError::BadUrl {
				url: url.into(),
				reason: "only http:// is supported (use the node's RPC port)".into(),
			});
		}
		let client = HttpClientBuilder::default()
			.request_timeout(Duration::from_secs(30))
			.build(url)
			.map_err(|e| ChainError::BadUrl { url: url.into(), reason: e.to_string() })?;
		Ok(Self { client })
	}

	/// Calls any method with positional parameters (for the `dsp_*` reads not wrapped here).
	pub async fn request<R: DeserializeOwned>(
		&self,
		method: &'static str,
		params: Vec<serde_json::Value>,
	) -> Result<R, ChainError> {
		let mut array = ArrayParams::new();
		for p in params {
			array.insert(p).map_err(|e| ChainError::BadAnswer { method, reason: e.to_string() })?;
		}
		self.call(method, array).await
	}

	async fn call<R: DeserializeOwned>(
		&self,
		method: &'static str,
		params: ArrayParams,
	) -> Result<R, ChainError> {
		self.client
			.request(method, params)
			.await
			.map_err(|source| ChainError::Rpc { method, source })
	}

	/// Runtime name and versions, and the genesis hash.
	pub async fn runtime_info(&self) -> Result<RuntimeInfo, ChainError> {
		let version: RuntimeVersion = self.call("state_getRuntimeVersion", rpc_params![]).await?;
		let genesis: String = self.call("chain_getBlockHash", rpc_params![0]).await?;
		Ok(RuntimeInfo {
			spec_name: version.spec_name,
			spec_version: version.spec_version,
			transaction_version: version.transaction_version,
			genesis_hash: parse_hash("chain_getBlockHash", &genesis)?,
		})
	}

	/// The next nonce to sign with: the node's `system_accountNextIndex`, which also counts
	/// the account's extrinsics waiting in the pool.
	pub async fn next_nonce(&self, account: &[u8; 32]) -> Result<u32, ChainError> {
		use sp_core::crypto::{AccountId32, Ss58Codec};
		// This method only takes SS58 addresses.
		let address = AccountId32::from(*account).to_ss58check();
		self.call("system_accountNextIndex", rpc_params![address]).await
	}

	/// The account's nonce in the best block's state (not counting the transaction pool).
	pub async fn account_nonce(&self, account: &[u8; 32]) -> Result<u32, ChainError> {
		// System::Account is a Blake2_128Concat map; AccountInfo starts with the nonce (u32).
		let key = [&twox_128(b"System")[..], &twox_128(b"Account"), &blake2_128(account), account]
			.concat();
		let value: Option<String> =
			self.call("state_getStorage", rpc_params![hex_0x(&key)]).await?;
		let Some(value) = value else { return Ok(0) };
		let bytes = hex::decode(value.trim_start_matches("0x")).map_err(|e| {
			ChainError::BadAnswer { method: "state_getStorage", reason: e.to_string() }
		})?;
		let nonce = bytes.get(..4).ok_or_else(|| ChainError::BadAnswer {
			method: "state_getStorage",
			reason: "AccountInfo shorter than a nonce".into(),
		})?;
		Ok(u32::from_le_bytes(nonce.try_into().expect("4 bytes")))
	}

	/// A [`Lifetime::mortal`] of `period` blocks born at the latest finalized block.
	pub async fn mortal_lifetime(&self, period: u64) -> Result<Lifetime, ChainError> {
		#[derive(Deserialize)]
		struct Header {
			number: String,
		}
		let hash: String = self.call("chain_getFinalizedHead", rpc_params![]).await?;
		let header: Header = self.call("chain_getHeader", rpc_params![&hash]).await?;
		let number =
			u64::from_str_radix(header.number.trim_start_matches("0x"), 16).map_err(|e| {
				ChainError::BadAnswer { method: "chain_getHeader", reason: e.to_string() }
			})?;
		Ok(Lifetime::mortal(period, number, parse_hash("chain_getFinalizedHead", &hash)?))
	}

	/// Submits a signed extrinsic; returns its hash. Not yet included when this returns.
	pub async fn submit(&self, extrinsic: &[u8]) -> Result<String, ChainError> {
		self.call("author_submitExtrinsic", rpc_params![hex_0x(extrinsic)]).await
	}

	/// Waits until the account's nonce in the best block passes `nonce`, i.e. until the
	/// extrinsic signed with `nonce` is in a block.
	pub async fn wait_included(
		&self,
		account: &[u8; 32],
		nonce: u32,
		timeout: Duration,
	) -> Result<(), ChainError> {
		let start = Instant::now();
		loop {
			if self.account_nonce(account).await? > nonce {
				return Ok(());
			}
			if start.elapsed() >= timeout {
				return Err(ChainError::NotIncluded { nonce, waited: start.elapsed() });
			}
			tokio::time::sleep(Duration::from_millis(200)).await;
		}
	}

	/// An account's credits.
	pub async fn credits(&self, account: &[u8; 32]) -> Result<Credits, ChainError> {
		self.call("dsp_credits", rpc_params![hex_0x(account)]).await
	}

	/// What was paid for one (stream, epoch, viewer, seeder).
	pub async fn claim_state(
		&self,
		stream: StreamId,
		epoch: EpochIndex,
		viewer: &[u8; 32],
		seeder: &[u8; 32],
	) -> Result<ClaimState, ChainError> {
		self.call("dsp_claimState", rpc_params![stream, epoch, hex_0x(viewer), hex_0x(seeder)])
			.await
	}

	/// The chain's current credit epoch.
	pub async fn current_epoch(&self) -> Result<EpochIndex, ChainError> {
		self.call("dsp_currentEpoch", rpc_params![]).await
	}
}
