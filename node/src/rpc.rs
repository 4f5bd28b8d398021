//! JSON-RPC methods this node adds to Substrate's standard ones (`chain_*`, `state_*`,
//! `author_*`, `system_*` …, which `sc-service` installs itself).
//!
//! - `system_accountNextIndex` (substrate-frame-rpc-system): nonces that count the pool.
//! - `payment_queryInfo`, `payment_queryFeeDetails`: fee estimates.
//! - `dsp_*` ([`dsp`]): DSP settings, origins, streams, streamers, credits, claims.
//! - `dsp_liveLoad`, `dsp_subscribeLiveLoad` ([`live`]): the streaming worker's live load.
//! - `engine_createBlock`, `engine_finalizeBlock` on development chains (manual seal).

pub mod dsp;
pub mod live;

use std::sync::Arc;

use dsp_runtime::{opaque::Block, AccountId, Balance, BlockNumber, Hash, Nonce};
use futures::channel::mpsc;
use jsonrpsee::RpcModule;
use sc_consensus_manual_seal::{
	rpc::{ManualSeal, ManualSealApiServer},
	EngineCommand,
};
use sc_transaction_pool_api::TransactionPool;
use sp_api::ProvideRuntimeApi;
use sp_block_builder::BlockBuilder;
use sp_blockchain::{Error as BlockChainError, HeaderBackend, HeaderMetadata};

/// What the RPC methods need from the node.
pub struct FullDeps<C, P> {
	/// The client.
	pub client: Arc<C>,
	/// The transaction pool.
	pub pool: Arc<P>,
	/// Command channel of manual seal, on development chains only.
	pub manual_seal: Option<mpsc::Sender<EngineCommand<Hash>>>,
	/// The streaming worker's live state.
	pub worker: crate::worker::handle::WorkerHandle,
}

/// All of the node's own RPC methods, merged into one module.
pub fn create_full<C, P>(
	deps: FullDeps<C, P>,
) -> Result<RpcModule<()>, Box<dyn std::error::Error + Send + Sync>>
where
	C: ProvideRuntimeApi<Block>
		+ HeaderBackend<Block>
		+ HeaderMetadata<Block, Error = BlockChainError>
		+ Send
		+ Sync
		+ 'static,
	C::Api: substrate_frame_rpc_system::AccountNonceApi<Block, AccountId, Nonce>
		+ pallet_transaction_payment_rpc::TransactionPaymentRuntimeApi<Block, Balance>
		+ dsp_runtime_api::DspApi<Block, AccountId, Balance, BlockNumber>
		+ BlockBuilder<Block>,
	P: TransactionPool + 'static,
{
	use dsp::{DspApiServer, DspRpc};
	use live::DspLiveApiServer;
	use pallet_transaction_payment_rpc::{TransactionPayment, TransactionPaymentApiServer};
	use substrate_frame_rpc_system::{System, SystemApiServer};

	let FullDeps { client, pool, manual_seal, worker } = deps;
	let mut module = RpcModule::new(());

	module.merge(System::new(client.clone(), pool).into_rpc())?;
	module.merge(TransactionPayment::new(client.clone()).into_rpc())?;
	module.merge(DspRpc::new(client).into_rpc())?;
	module.merge(live::DspLive::new(worker).into_rpc())?;
	if let Some(commands) = manual_seal {
		module.merge(ManualSeal::new(commands).into_rpc())?;
	}

	Ok(module)
}
