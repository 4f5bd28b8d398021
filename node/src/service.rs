//! The Substrate service of `dsp-node`: client, database, transaction pool, network, RPC and
//! block production.
//!
//! Two ways of making blocks, chosen by the chain spec's chain type:
//!
//! - **Development** chains (`--dev`, `--chain dev`): manual seal. A block is sealed and
//!   finalized at once for every transaction that enters the pool, and at the latest
//!   `--dev-block-time` after the previous block. `engine_createBlock` / `engine_finalizeBlock`
//!   remain available over RPC for tests that want to drive the chain themselves.
//! - Every other chain: Aura (6 s slots) with GRANDPA finality, as validator networks run.

use std::{sync::Arc, time::Duration};

use dsp_runtime::{apis::RuntimeApi, opaque::Block, Hash};
use futures::{channel::mpsc, FutureExt, SinkExt, Stream, StreamExt};
use sc_client_api::{Backend, BlockBackend, BlockchainEvents};
use sc_consensus_aura::{ImportQueueParams, SlotProportion, StartAuraParams};
use sc_consensus_grandpa::SharedVoterState;
use sc_consensus_manual_seal::{
	consensus::aura::AuraConsensusDataProvider, EngineCommand, ManualSealParams,
};
use sc_service::{
	error::Error as ServiceError, ChainType, Configuration, TaskManager, WarpSyncConfig,
};
use sc_telemetry::{Telemetry, TelemetryWorker};
use sc_transaction_pool_api::{OffchainTransactionPoolFactory, TransactionPool};
use sp_consensus_aura::sr25519::{AuthorityPair as AuraPair, AuthoritySignature as AuraSignature};
use sp_runtime::traits::Block as BlockT;

/// The client: native access to the chain, runtime executed as wasm.
pub(crate) type FullClient = sc_service::TFullClient<
	Block,
	RuntimeApi,
	sc_executor::WasmExecutor<sp_io::SubstrateHostFunctions>,
>;
type FullBackend = sc_service::TFullBackend<Block>;
type FullSelectChain = sc_consensus::LongestChain<FullBackend, Block>;
type FullPool = sc_transaction_pool::TransactionPoolHandle<Block, FullClient>;
type GrandpaBlockImport =
	sc_consensus_grandpa::GrandpaBlockImport<FullBackend, Block, FullClient, FullSelectChain>;
type GrandpaLink = sc_consensus_grandpa::LinkHalf<Block, FullClient, FullSelectChain>;

/// Blocks between two GRANDPA justifications that are imported and generated.
const GRANDPA_JUSTIFICATION_PERIOD: u32 = 512;

/// How this node makes blocks.
pub enum Consensus {
	/// Development chain: blocks sealed on demand and finalized at once.
	ManualSeal,
	/// Validator network: Aura authoring behind a GRANDPA block import.
	AuraGrandpa { block_import: GrandpaBlockImport, link: GrandpaLink },
}

/// Whether a chain is sealed on demand (development chains) rather than by Aura + GRANDPA.
pub fn uses_manual_seal(chain_spec: &dyn sc_service::ChainSpec) -> bool {
	chain_spec.chain_type() == ChainType::Development
}

/// What chain operations (import, export, revert, …) and the full node share.
pub type Service = sc_service::PartialComponents<
	FullClient,
	FullBackend,
	FullSelectChain,
	sc_consensus::DefaultImportQueue<Block>,
	FullPool,
	(Consensus, Option<Telemetry>),
>;

/// Builds client, backend, transaction pool and the import queue that fits the chain.
pub fn new_partial(config: &Configuration) -> Result<Service, ServiceError> {
	let telemetry = config
		.telemetry_endpoints
		.clone()
		.filter(|x| !x.is_empty())
		.map(|endpoints| -> Result<_, sc_telemetry::Error> {
			let worker = TelemetryWorker::new(16)?;
			let telemetry = worker.handle().new_telemetry(endpoints);
			Ok((worker, telemetry))
		})
		.transpose()?;

	let executor = sc_service::new_wasm_executor::<sp_io::SubstrateHostFunctions>(&config.executor);
	let (client, backend, keystore_container, task_manager) =
		sc_service::new_full_parts::<Block, RuntimeApi, _>(
			config,
			telemetry.as_ref().map(|(_, telemetry)| telemetry.handle()),
			executor,
			Default::default(),
		)?;
	let client = Arc::new(client);

	let telemetry = telemetry.map(|(worker, telemetry)| {
		task_manager.spawn_handle().spawn("telemetry", None, worker.run());
		telemetry
	});

	let select_chain = sc_consensus::LongestChain::new(backend.clone());

	let transaction_pool = Arc::from(
		sc_transaction_pool::Builder::new(
			task_manager.spawn_essential_handle(),
			client.clone(),
			config.role.is_authority().into(),
		)
		.with_options(config.transaction_pool.clone())
		.with_prometheus(config.prometheus_registry())
		.build(),
	);

	let (import_queue, consensus) = if uses_manual_seal(&*config.chain_spec) {
		let import_queue = sc_consensus_manual_seal::import_queue(
			Box::new(client.clone()),
			&task_manager.spawn_essential_handle(),
			config.prometheus_registry(),
		);
		(import_queue, Consensus::ManualSeal)
	} else {
		let (block_import, link) = sc_consensus_grandpa::block_import(
			client.clone(),
			GRANDPA_JUSTIFICATION_PERIOD,
			&client,
			select_chain.clone(),
			telemetry.as_ref().map(|x| x.handle()),
		)?;

		let cidp_client = client.clone();
		let import_queue =
			sc_consensus_aura::import_queue::<AuraPair, _, _, _, _, _>(ImportQueueParams {
				block_import: block_import.clone(),
				justification_import: Some(Box::new(block_import.clone())),
				client: client.clone(),
				create_inherent_data_providers: move |parent_hash, _| {
					let cidp_client = cidp_client.clone();
					async move {
						let slot_duration = sc_consensus_aura::standalone::slot_duration_at(
							&*cidp_client,
							parent_hash,
						)?;
						let timestamp = sp_timestamp::InherentDataProvider::from_system_time();
						let slot =
							sp_consensus_aura::inherents::InherentDataProvider::from_timestamp_and_slot_duration(
								*timestamp,
								slot_duration,
							);
						Ok((slot, timestamp))
					}
				},
				spawner: &task_manager.spawn_essential_handle(),
				registry: config.prometheus_registry(),
				check_for_equivocation: Default::default(),
				telemetry: telemetry.as_ref().map(|x| x.handle()),
				compatibility_mode: Default::default(),
			})?;
		(import_queue, Consensus::AuraGrandpa { block_import, link })
	};

	Ok(sc_service::PartialComponents {
		client,
		backend,
		task_manager,
		import_queue,
		keystore_container,
		select_chain,
		transaction_pool,
		other: (consensus, telemetry),
	})
}

/// Builds and starts a full node. `dev_block_time` is the idle block interval of development
/// chains (ignored elsewhere).
pub fn new_full<N: sc_network::NetworkBackend<Block, <Block as BlockT>::Hash>>(
	config: Configuration,
	dev_block_time: Duration,
	worker_options: crate::worker::WorkerOptions,
) -> Result<TaskManager, ServiceError> {
	let sc_service::PartialComponents {
		client,
		backend,
		mut task_manager,
		import_queue,
		keystore_container,
		select_chain,
		transaction_pool,
		other: (consensus, mut telemetry),
	} = new_partial(&config)?;

	let mut net_config = sc_network::config::FullNetworkConfiguration::<
		Block,
		<Block as BlockT>::Hash,
		N,
	>::new(&config.network, config.prometheus_registry().cloned());
	let metrics = N::register_notification_metrics(config.prometheus_registry());

	// GRANDPA gossips votes over its own notification protocol, registered before the network
	// starts.
	let grandpa_protocol = match &consensus {
		Consensus::AuraGrandpa { .. } => {
			let genesis_hash = client
				.block_hash(0)
				.ok()
				.flatten()
				.ok_or_else(|| ServiceError::Other("genesis block is missing".into()))?;
			let protocol_name =
				sc_consensus_grandpa::protocol_standard_name(&genesis_hash, &config.chain_spec);
			let (protocol_config, notification_service) =
				sc_consensus_grandpa::grandpa_peers_set_config::<_, N>(
					protocol_name.clone(),
					metrics.clone(),
					net_config.peer_store_handle(),
				);
			net_config.add_notification_protocol(protocol_config);
			Some((protocol_name, notification_service))
		}
		Consensus::ManualSeal => None,
	};

	let warp_sync_config = match &consensus {
		Consensus::AuraGrandpa { link, .. } => Some(WarpSyncConfig::WithProvider(Arc::new(
			sc_consensus_grandpa::warp_proof::NetworkProvider::new(
				backend.clone(),
				link.shared_authority_set().clone(),
				Vec::default(),
			),
		))),
		Consensus::ManualSeal => None,
	};

	let (network, system_rpc_tx, tx_handler_controller, sync_service, _bitswap) =
		sc_service::build_network(sc_service::BuildNetworkParams {
			config: &config,
			net_config,
			client: client.clone(),
			transaction_pool: transaction_pool.clone(),
			spawn_handle: task_manager.spawn_handle(),
			spawn_essential_handle: task_manager.spawn_essential_handle(),
			import_queue,
			block_announce_validator_builder: None,
			warp_sync_config,
			block_relay: None,
			metrics,
			gap_sync_body_policy: None,
		})?;

	if config.offchain_worker.enabled {
		let offchain_workers =
			sc_offchain::OffchainWorkers::new(sc_offchain::OffchainWorkerOptions {
				runtime_api_provider: client.clone(),
				is_validator: config.role.is_authority(),
				keystore: Some(keystore_container.keystore()),
				offchain_db: backend.offchain_storage(),
				transaction_pool: Some(OffchainTransactionPoolFactory::new(
					transaction_pool.clone(),
				)),
				network_provider: Arc::new(network.clone()),
				enable_http_requests: true,
				custom_extensions: |_| vec![],
			})?;
		task_manager.spawn_handle().spawn(
			"offchain-workers-runner",
			"offchain-worker",
			offchain_workers.run(client.clone(), task_manager.spawn_handle()).boxed(),
		);
	}

	let role = config.role;
	let force_authoring = config.force_authoring;
	let name = config.network.node_name.clone();
	let enable_grandpa = !config.disable_grandpa;
	let prometheus_registry = config.prometheus_registry().cloned();

	// Manual seal takes commands from RPC (`engine_*`) and from the dev block driver.
	let manual_seal_commands = match &consensus {
		Consensus::ManualSeal => Some(mpsc::channel::<EngineCommand<Hash>>(1024)),
		Consensus::AuraGrandpa { .. } => None,
	};

	// The streaming worker: started now, steered by finalized blocks (see `crate::worker`).
	let worker = crate::worker::WorkerHandle::default();
	let worker_task = crate::worker::start(crate::worker::WorkerParams {
		client: client.clone(),
		keystore: keystore_container.local_keystore(),
		options: worker_options,
		// Only development chains get the dev seed as streaming key and the demo; `--alice` on
		// other chains still sets `dev_key_seed` (its session keys), and inserts this one too.
		dev_key_seed: config.dev_key_seed.clone(),
		demo: matches!(consensus, Consensus::ManualSeal),
		ledger_dir: config.data_path.join("dsp").join("ledger"),
		prometheus: prometheus_registry.clone(),
		handle: worker.clone(),
	})
	.map_err(|e| ServiceError::Other(e.to_string()))?;
	if let Some(task) = worker_task {
		// Essential: a worker that cannot serve (e.g. its port is taken) stops the node rather
		// than leave a streamer that the chain lists but nobody can reach.
		task_manager.spawn_essential_handle().spawn("dsp-streaming-worker", Some("dsp"), task);
	}

	let rpc_extensions_builder = {
		let client = client.clone();
		let pool = transaction_pool.clone();
		let manual_seal = manual_seal_commands.as_ref().map(|(sender, _)| sender.clone());
		let worker = worker.clone();

		Box::new(move |_| {
			let deps = crate::rpc::FullDeps {
				client: client.clone(),
				pool: pool.clone(),
				manual_seal: manual_seal.clone(),
				worker: worker.clone(),
			};
			crate::rpc::create_full(deps).map_err(Into::into)
		})
	};

	let _rpc_handlers = sc_service::spawn_tasks(sc_service::SpawnTasksParams {
		network: network.clone(),
		client: client.clone(),
		keystore: keystore_container.keystore(),
		task_manager: &mut task_manager,
		transaction_pool: transaction_pool.clone(),
		rpc_builder: rpc_extensions_builder,
		backend,
		system_rpc_tx,
		tx_handler_controller,
		sync_service: sync_service.clone(),
		config,
		telemetry: telemetry.as_mut(),
		tracing_execute_block: None,
	})?;

	let proposer_factory = sc_basic_authorship::ProposerFactory::new(
		task_manager.spawn_handle(),
		client.clone(),
		transaction_pool.clone(),
		prometheus_registry.as_ref(),
		telemetry.as_ref().map(|x| x.handle()),
	);

	match consensus {
		Consensus::ManualSeal => {
			let (seal_sender, seal_commands) =
				manual_seal_commands.expect("created above for manual seal; qed");

			let slot_duration = sc_consensus_aura::slot_duration(&*client)?;
			let cidp_client = client.clone();
			let params = ManualSealParams {
				block_import: client.clone(),
				env: proposer_factory,
				client: client.clone(),
				pool: transaction_pool.clone(),
				select_chain,
				commands_stream: seal_commands,
				// Aura pre-digest, so that the runtime's Aura pallet sees a slot in every block.
				consensus_data_provider: Some(Box::new(
					AuraConsensusDataProvider::new_with_slot_duration(slot_duration),
				)),
				create_inherent_data_providers: move |parent_hash, ()| {
					let client = cidp_client.clone();
					async move {
						let parent = client
							.header(parent_hash)?
							.ok_or_else(|| format!("parent header {parent_hash} not found"))?;
						let parent_slot =
							sc_consensus_aura::find_pre_digest::<Block, AuraSignature>(&parent)
								.map(|slot| *slot)
								.unwrap_or(0);
						let timestamp = dev_timestamp(
							parent_slot,
							slot_duration.as_millis(),
							sp_timestamp::Timestamp::current().as_millis(),
						);
						Ok(sp_timestamp::InherentDataProvider::new(timestamp.into()))
					}
				},
			};
			task_manager.spawn_essential_handle().spawn_blocking(
				"manual-seal",
				Some("block-authoring"),
				sc_consensus_manual_seal::run_manual_seal(params),
			);

			task_manager.spawn_essential_handle().spawn(
				"dev-block-driver",
				Some("block-authoring"),
				dev_block_driver(
					seal_sender,
					transaction_pool.import_notification_stream(),
					client.import_notification_stream(),
					dev_block_time,
				),
			);
			log::info!(
				"🔨 Development chain: a block per transaction, and at least every {} ms",
				dev_block_time.as_millis()
			);
		}

		Consensus::AuraGrandpa { block_import, link } => {
			if role.is_authority() {
				let slot_duration = sc_consensus_aura::slot_duration(&*client)?;
				let aura = sc_consensus_aura::start_aura::<AuraPair, _, _, _, _, _, _, _, _, _, _>(
					StartAuraParams {
						slot_duration,
						client: client.clone(),
						select_chain,
						block_import,
						proposer_factory,
						create_inherent_data_providers: move |_, ()| async move {
							let timestamp = sp_timestamp::InherentDataProvider::from_system_time();
							let slot =
								sp_consensus_aura::inherents::InherentDataProvider::from_timestamp_and_slot_duration(
									*timestamp,
									slot_duration,
								);
							Ok((slot, timestamp))
						},
						force_authoring,
						backoff_authoring_blocks: Option::<()>::None,
						keystore: keystore_container.keystore(),
						sync_oracle: sync_service.clone(),
						justification_sync_link: sync_service.clone(),
						block_proposal_slot_portion: SlotProportion::new(2f32 / 3f32),
						max_block_proposal_slot_portion: None,
						telemetry: telemetry.as_ref().map(|x| x.handle()),
						compatibility_mode: Default::default(),
					},
				)?;
				// Essential: if authoring fails, the node goes down with it.
				task_manager.spawn_essential_handle().spawn_blocking(
					"aura",
					Some("block-authoring"),
					aura,
				);
			}

			if enable_grandpa {
				let (protocol_name, notification_service) =
					grandpa_protocol.expect("registered above for Aura + GRANDPA; qed");
				// Only authorities vote; others follow justifications without a keystore.
				let keystore =
					if role.is_authority() { Some(keystore_container.keystore()) } else { None };
				let grandpa_params = sc_consensus_grandpa::GrandpaParams {
					config: sc_consensus_grandpa::Config {
						gossip_duration: Duration::from_millis(333),
						justification_generation_period: GRANDPA_JUSTIFICATION_PERIOD,
						name: Some(name),
						observer_enabled: false,
						keystore,
						local_role: role,
						telemetry: telemetry.as_ref().map(|x| x.handle()),
						protocol_name,
					},
					link,
					network,
					sync: sync_service,
					notification_service,
					voting_rule: sc_consensus_grandpa::VotingRulesBuilder::default().build(),
					prometheus_registry,
					shared_voter_state: SharedVoterState::empty(),
					telemetry: telemetry.as_ref().map(|x| x.handle()),
					offchain_tx_pool_factory: OffchainTransactionPoolFactory::new(transaction_pool),
				};
				// Essential: a node that stops finalizing must not keep running silently.
				task_manager.spawn_essential_handle().spawn_blocking(
					"grandpa-voter",
					None,
					sc_consensus_grandpa::run_grandpa_voter(grandpa_params)?,
				);
			}
		}
	}

	Ok(task_manager)
}

/// Timestamp of the next development block. Timestamps sit on slot boundaries and advance by at
/// least one Aura slot per block (the runtime requires a new slot per block), and follow the
/// wall clock whenever blocks come slower than one per slot.
fn dev_timestamp(parent_slot: u64, slot_ms: u64, now_ms: u64) -> u64 {
	let slot_ms = slot_ms.max(1);
	let slot = (now_ms / slot_ms).max(parent_slot.saturating_add(1));
	slot.saturating_mul(slot_ms)
}

/// Why the dev block driver asks for a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SealTrigger {
	/// Node start: the fork-aware transaction pool serves transactions only once it has seen
	/// a block after genesis.
	Startup,
	/// A transaction entered the pool.
	Transaction,
	/// No block for the idle interval.
	Idle,
}

/// Drives manual seal on a development chain: a block (finalized at once) as soon as
/// transactions arrive, and an empty one whenever the chain has been idle for `idle`. One seal
/// request is in flight at a time; transactions that arrive meanwhile share the next block.
async fn dev_block_driver(
	mut seal: mpsc::Sender<EngineCommand<Hash>>,
	mut transactions: impl Stream<Item = Hash> + Unpin,
	mut imported: impl Stream + Unpin,
	idle: Duration,
) {
	let mut trigger = Some(SealTrigger::Startup);
	loop {
		if let Some(why) = trigger.take() {
			let (sender, result) = futures::channel::oneshot::channel();
			let command = EngineCommand::SealNewBlock {
				create_empty: why != SealTrigger::Transaction,
				finalize: true,
				parent_hash: None,
				sender: Some(sender),
			};
			if seal.send(command).await.is_err() {
				log::debug!(target: "dsp::dev", "manual seal stopped; block driver exits");
				return;
			}
			match result.await {
				Ok(Ok(block)) => {
					log::debug!(target: "dsp::dev", "sealed {:?} ({why:?})", block.hash)
				}
				// The transaction already went into the previous block.
				Ok(Err(sc_consensus_manual_seal::Error::EmptyTransactionPool)) => {}
				Ok(Err(e)) => log::warn!(target: "dsp::dev", "sealing a block failed: {e}"),
				Err(_) => return,
			}
		}

		tokio::select! {
			tx = transactions.next() => {
				if tx.is_none() {
					return;
				}
				// Take every notification already queued: they all fit in one block.
				while let Some(Some(_)) = transactions.next().now_or_never() {}
				trigger = Some(SealTrigger::Transaction);
			},
			block = imported.next() => {
				if block.is_none() {
					return;
				}
				// A block arrived (ours or via RPC): the idle interval starts again.
			},
			_ = tokio::time::sleep(idle) => trigger = Some(SealTrigger::Idle),
		}
	}
}

#[cfg(test)]
mod tests {
	use super::dev_timestamp;

	#[test]
	fn dev_timestamps_follow_the_clock_when_blocks_are_slow() {
		// Parent in slot 10, clock in slot 20: the next block takes slot 20.
		assert_eq!(dev_timestamp(10, 6_000, 20 * 6_000 + 1_234), 20 * 6_000);
	}

	#[test]
	fn dev_timestamps_advance_a_slot_per_block_when_blocks_are_fast() {
		// Clock still in the parent's slot (or behind it): the next slot.
		assert_eq!(dev_timestamp(10, 6_000, 10 * 6_000 + 5), 11 * 6_000);
		assert_eq!(dev_timestamp(10, 6_000, 0), 11 * 6_000);
	}
}
