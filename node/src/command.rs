//! Dispatches the command line: runs the node or a maintenance subcommand.

use std::time::Duration;

use dsp_runtime::opaque::Block;
use sc_cli::SubstrateCli;
use sc_service::{ChainType, PartialComponents};

use crate::{
	chain_spec,
	cli::{Cli, Subcommand},
	service,
};

impl SubstrateCli for Cli {
	fn impl_name() -> String {
		"DSP Node".into()
	}

	fn impl_version() -> String {
		env!("SUBSTRATE_CLI_IMPL_VERSION").into()
	}

	fn description() -> String {
		"DSP node: the Substrate chain of the Dynamic Streaming Protocol.\n\n\
		 Without a subcommand the node runs. `--dev` starts a throw-away single-node development \
		 chain: Alice is validator, sudo, demo origin and demo streamer; state lives in a \
		 temporary directory unless `--base-path` is given; a block is sealed (and finalized) for \
		 every new transaction and at least every `--dev-block-time` milliseconds; \
		 `engine_createBlock` seals one on request. Every other chain (`--chain local`, or a \
		 chain-spec JSON file) runs Aura block production (6 s slots) with GRANDPA finality, e.g. \
		 `dsp-node --chain local --alice` and `dsp-node --chain local --bob` on one machine.\n\n\
		 JSON-RPC (default ws/http port 9944) offers Substrate's standard methods plus `dsp_*` \
		 (settings, origins, streams, streamers, credits, claims)."
			.into()
	}

	fn author() -> String {
		env!("CARGO_PKG_AUTHORS").into()
	}

	fn support_url() -> String {
		"https://example.invalid/dsp/issues".into()
	}

	fn copyright_start_year() -> i32 {
		2026
	}

	fn load_spec(&self, id: &str) -> Result<Box<dyn sc_service::ChainSpec>, String> {
		chain_spec::load(id)
	}
}

/// Parses the command line and runs what it asks for.
pub fn run() -> sc_cli::Result<()> {
	let cli = Cli::from_args();

	match &cli.subcommand {
		Some(Subcommand::Key(cmd)) => cmd.run(&cli),
		Some(Subcommand::BuildSpec(cmd)) => {
			let runner = cli.create_runner(cmd)?;
			runner.sync_run(|config| cmd.run(config.chain_spec, config.network))
		}
		Some(Subcommand::ExportChainSpec(cmd)) => {
			let chain_spec = cli.load_spec(&cmd.chain)?;
			cmd.run(chain_spec)
		}
		Some(Subcommand::CheckBlock(cmd)) => {
			let runner = cli.create_runner(cmd)?;
			runner.async_run(|config| {
				let PartialComponents { client, task_manager, import_queue, .. } =
					service::new_partial(&config)?;
				Ok((cmd.run(client, import_queue), task_manager))
			})
		}
		Some(Subcommand::ExportBlocks(cmd)) => {
			let runner = cli.create_runner(cmd)?;
			runner.async_run(|config| {
				let PartialComponents { client, task_manager, .. } = service::new_partial(&config)?;
				Ok((cmd.run(client, config.database), task_manager))
			})
		}
		Some(Subcommand::ExportState(cmd)) => {
			let runner = cli.create_runner(cmd)?;
			runner.async_run(|config| {
				let PartialComponents { client, task_manager, .. } = service::new_partial(&config)?;
				Ok((cmd.run(client, config.chain_spec), task_manager))
			})
		}
		Some(Subcommand::ImportBlocks(cmd)) => {
			let runner = cli.create_runner(cmd)?;
			runner.async_run(|config| {
				let PartialComponents { client, task_manager, import_queue, .. } =
					service::new_partial(&config)?;
				Ok((cmd.run(client, import_queue), task_manager))
			})
		}
		Some(Subcommand::PurgeChain(cmd)) => {
			let runner = cli.create_runner(cmd)?;
			runner.sync_run(|config| cmd.run(config.database))
		}
		Some(Subcommand::Revert(cmd)) => {
			let runner = cli.create_runner(cmd)?;
			runner.async_run(|config| {
				let PartialComponents { client, task_manager, backend, .. } =
					service::new_partial(&config)?;
				// GRANDPA keeps its authority-set history in aux storage; roll it back too.
				let aux_revert = Box::new(|client, _, blocks| {
					sc_consensus_grandpa::revert(client, blocks)?;
					Ok(())
				});
				Ok((cmd.run(client, backend, Some(aux_revert)), task_manager))
			})
		}
		Some(Subcommand::ChainInfo(cmd)) => {
			let runner = cli.create_runner(cmd)?;
			runner.sync_run(|config| cmd.run::<Block>(&config))
		}
		None => {
			let mut run = cli.run.base.clone();
			// Sc-cli refuses to start an authority without a persisted network key, so that a
			// validator of a real network keeps its peer id. On throw-away development and local
			// test chains a fresh key (stored in the base path) is what one wants.
			let shared = &run.shared_params;
			let chain_type = cli.load_spec(&shared.chain_id(shared.is_dev()))?.chain_type();
			if matches!(chain_type, ChainType::Development | ChainType::Local) {
				run.network_params.node_key_params.unsafe_force_node_key_generation = true;
			}
			let runner = cli.create_runner(&run)?;
			let dev_block_time = Duration::from_millis(cli.run.dev_block_time);
			runner.run_node_until_exit(|config| async move {
				match config.network.network_backend {
					sc_network::config::NetworkBackendType::Libp2p => {
						service::new_full::<
							sc_network::NetworkWorker<
								Block,
								<Block as sp_runtime::traits::Block>::Hash,
							>,
						>(config, dev_block_time, cli.run.worker.clone())
						.map_err(sc_cli::Error::Service)
					}
					sc_network::config::NetworkBackendType::Litep2p => {
						service::new_full::<sc_network::Litep2pNetworkBackend>(
							config,
							dev_block_time,
							cli.run.worker.clone(),
						)
						.map_err(sc_cli::Error::Service)
					}
				}
			})
		}
	}
}
