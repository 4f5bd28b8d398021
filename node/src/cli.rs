//! Command line of `dsp-node`.

/// Default idle block interval of the development chain, in milliseconds.
pub const DEFAULT_DEV_BLOCK_TIME_MS: u64 = 1_000;

/// DSP node: a Substrate chain node for the Dynamic Streaming Protocol.
///
/// Without a subcommand it runs the node. `--dev` starts a throw-away single-node development
/// chain (Alice is validator, sudo and demo streamer; state in a temporary directory unless
/// `--base-path` is given) that seals a block for every new transaction and at least every
/// `--dev-block-time` milliseconds. Any other chain (`--chain local`, or a chain-spec JSON file)
/// runs Aura block production (6 s slots) with GRANDPA finality.
#[derive(Debug, clap::Parser)]
#[command(
	propagate_version = true,
	args_conflicts_with_subcommands = true,
	subcommand_negates_reqs = true
)]
pub struct Cli {
	/// Maintenance subcommand; without one, the node runs.
	#[command(subcommand)]
	pub subcommand: Option<Subcommand>,

	/// Options of the running node.
	#[clap(flatten)]
	pub run: DspRunCmd,
}

/// Options of the running node: Substrate's standard ones plus DSP's own.
#[derive(Debug, Clone, clap::Args)]
pub struct DspRunCmd {
	/// Substrate's standard node options.
	#[clap(flatten)]
	pub base: sc_cli::RunCmd,

	/// Development chains only: longest time, in milliseconds, between two blocks while no
	/// transaction arrives. New transactions are sealed into a block at once; this interval only
	/// keeps block numbers (and thus DSP epochs) advancing on an idle chain.
	///
	/// Every sealed block advances chain time by one 6 s Aura slot, so on an idle development
	/// chain the timestamp runs ahead of the wall clock. DSP logic counts blocks, not time.
	#[arg(long, value_name = "MS", default_value_t = DEFAULT_DEV_BLOCK_TIME_MS,
		value_parser = clap::value_parser!(u64).range(10..))]
	pub dev_block_time: u64,

	/// The streaming worker.
	#[clap(flatten)]
	pub worker: crate::worker::WorkerOptions,
}

/// Memory bounds of the streaming worker (`--stream-*`), flattened into the worker's options.
/// With the defaults the worker holds at most 1.25 GiB of media: 1 GiB of live windows and
/// 256 MiB of segments being assembled.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamMemoryOptions {
	/// MiB of media the worker holds per live stream (its window); the oldest segments go
	/// first. Default 64: 30 two-second segments of a stream up to about 8 Mbit/s.
	#[arg(long, value_name = "MIB", default_value_t = 64)]
	pub stream_window_mib: usize,

	/// Most streams one origin holds on this worker through its publishers; one more is
	/// refused (`OverBudget`). Default 8: any registered origin may publish here, and must not
	/// take every window for itself.
	#[arg(long, value_name = "N", default_value_t = 8)]
	pub stream_max_streams_per_origin: usize,

	/// MiB of media held in all live windows together. A segment that does not fit takes room
	/// from its own window's oldest segments, else its publisher is refused (`OverBudget`).
	/// Default 1024.
	#[arg(long, value_name = "MIB", default_value_t = 1024)]
	pub stream_max_window_mib: usize,

	/// MiB of segments announced and not complete yet, all publishers together (each holds
	/// one segment of at most 16 MiB); a header beyond it is refused (`OverBudget`). Default
	/// 256: 16 publishers mid-way through a 16 MiB segment.
	#[arg(long, value_name = "MIB", default_value_t = 256)]
	pub stream_max_partial_mib: usize,

	/// MiB of `--stream-max-partial-mib` the publishers of one origin hold together; a header
	/// beyond it is refused (`OverBudget`). Default 32: two 16 MiB segments; a few origins
	/// leaving segments half sent cannot hold the whole total (eight are needed).
	#[arg(long, value_name = "MIB", default_value_t = 32)]
	pub stream_max_partial_mib_per_origin: usize,
}

impl StreamMemoryOptions {
	/// Writes these bounds into the worker's server configuration.
	pub fn apply(&self, config: &mut dsp_streaming::net::serve::ServeConfig) {
		const MIB: usize = 1024 * 1024;
		config.window.max_bytes = self.stream_window_mib.saturating_mul(MIB);
		config.memory = dsp_streaming::server::MemoryConfig {
			max_streams_per_origin: self.stream_max_streams_per_origin,
			max_window_bytes: self.stream_max_window_mib.saturating_mul(MIB),
			max_partial_bytes: self.stream_max_partial_mib.saturating_mul(MIB),
			max_partial_bytes_per_origin: self
				.stream_max_partial_mib_per_origin
				.saturating_mul(MIB),
		};
	}
}

/// Maintenance subcommands.
#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Subcommand {
	/// Key management: generate, inspect and insert keys into the keystore.
	#[command(subcommand)]
	Key(sc_cli::KeySubcommand),

	/// Print a chain specification as JSON (`--chain dev|local|<file>`, `--raw` for the
	/// genesis storage form that all nodes of one network must share).
	BuildSpec(sc_cli::BuildSpecCmd),

	/// Export a chain specification, like `build-spec`, without a node key or default bootnode.
	ExportChainSpec(sc_cli::ExportChainSpecCmd),

	/// Validate blocks.
	CheckBlock(sc_cli::CheckBlockCmd),

	/// Export blocks.
	ExportBlocks(sc_cli::ExportBlocksCmd),

	/// Export the state of a given block into a chain spec.
	ExportState(sc_cli::ExportStateCmd),

	/// Import blocks.
	ImportBlocks(sc_cli::ImportBlocksCmd),

	/// Remove the whole chain.
	PurgeChain(sc_cli::PurgeChainCmd),

	/// Revert the chain to a previous state.
	Revert(sc_cli::RevertCmd),

	/// Database metadata: best, finalized and genesis block.
	ChainInfo(sc_cli::ChainInfoCmd),
}

#[cfg(test)]
mod tests {
	use super::*;
	use clap::CommandFactory;
	use sc_cli::SubstrateCli;

	fn parse(args: &[&str]) -> clap::error::Result<Cli> {
		<Cli as SubstrateCli>::try_from_iter(args.iter().copied())
	}

	#[test]
	fn command_line_definition_is_consistent() {
		Cli::setup_command(Cli::command()).debug_assert();
	}

	#[test]
	fn dev_block_time_defaults_to_one_second() {
		assert_eq!(parse(&["dsp-node", "--dev"]).unwrap().run.dev_block_time, 1_000);
		let cli = parse(&["dsp-node", "--dev", "--dev-block-time", "250"]).unwrap();
		assert_eq!(cli.run.dev_block_time, 250);
		assert!(parse(&["dsp-node", "--dev-block-time", "0"]).is_err());
	}

	#[test]
	fn stream_memory_bounds_have_stated_defaults() {
		let cli = parse(&["dsp-node", "--dev", "--stream-max-partial-mib", "64"]).unwrap();
		let mut config = dsp_streaming::net::serve::ServeConfig::default();
		cli.run.worker.memory.apply(&mut config);
		let defaults = dsp_streaming::server::MemoryConfig::default();
		assert_eq!(config.memory.max_partial_bytes, 64 * 1024 * 1024);
		assert_eq!(config.memory.max_window_bytes, defaults.max_window_bytes);
		assert_eq!(config.memory.max_streams_per_origin, defaults.max_streams_per_origin);
		assert_eq!(config.window.max_bytes, 64 * 1024 * 1024);
	}

	/// The guards an operator may tune (issue 12) have flags, with the library's defaults.
	#[test]
	fn stream_guard_flags_have_stated_defaults() {
		let w = parse(&["dsp-node", "--dev"]).unwrap().run.worker;
		let lookups = dsp_streaming::server::LookupBudgetConfig::default();
		assert_eq!(w.stream_max_lookups_per_minute_per_address, lookups.per_minute);
		assert_eq!(w.stream_lookup_burst_per_address, lookups.burst);
		let streams = dsp_streaming::server::StreamTableConfig::default();
		assert_eq!(w.stream_max_remembered_broadcasts, streams.max_remembered);
		let verify = dsp_streaming::p2p::verify_guard::VerifyConfig::default();
		assert_eq!(w.stream_p2p_verify_per_sec, verify.total_per_sec);
		assert_eq!(w.stream_p2p_verify_per_peer_per_sec, verify.per_peer_per_sec);
		assert_eq!(w.stream_p2p_verify_per_sec * 2, verify.total_burst);
		assert_eq!(w.stream_p2p_verify_per_peer_per_sec * 4, verify.per_peer_burst);
		let limits = dsp_streaming::p2p::behaviour::SwarmLimits::default();
		assert_eq!(w.stream_p2p_max_per_ip, limits.max_established_per_ip);
		let w = parse(&["dsp-node", "--dev", "--stream-lookup-burst-per-address", "3"]).unwrap();
		assert_eq!(w.run.worker.stream_lookup_burst_per_address, 3);
	}
}
