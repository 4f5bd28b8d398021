//! `dsp`: the standalone streaming tool (no chain needed).
//!
//! - `dsp serve`: TCP and QUIC streamer with live windows; records streams and serves
//!   recordings on demand.
//! - `dsp publish`: MPEG-TS on stdin (or an HLS muxer's directory) → signed segments → one or
//!   more servers.
//! - `dsp watch`: viewer with transport switching and a local HLS gateway.
//! - `dsp load`: the load benchmark (direct viewers, P2P viewers, nginx for comparison).
//! - `dsp sim`: the P2P simulator (the real scheduler, upload cap, seeding and admission on a
//!   simulated clock and network).
//! - `dsp key`: the public key of a seed (what `serve` and `watch` need as `--origin-key`).
//! - `dsp claim`: verified claim batches from a seeder's receipt ledger.
//! - `dsp credits`: an account's credits on chain and the claims submitted from a ledger.
//!
//! One module per subcommand, each with its clap `Args` and its `run`; this file only parses
//! the command line, sets up logging and dispatches. Shared parsing helpers are in [`args`].

mod args;
mod claim;
mod credits;
mod key;
mod load;
mod publish;
mod serve;
mod sim;
mod watch;
mod watch_stats;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

#[derive(Parser)]
#[command(name = "dsp", version, about = "DSP streaming: serve, publish and watch live streams")]
struct Cli {
	#[command(subcommand)]
	command: Command,
}

#[derive(Subcommand)]
enum Command {
	/// Run a streamer: TCP and QUIC listeners, live windows, push to subscribers; optionally
	/// record what publishers push and serve recordings on demand.
	Serve(serve::Args),
	/// Read MPEG-TS and cut it at key frames (or follow an HLS muxer's directory), sign the
	/// segments, push them to servers; a restarted publisher continues where the servers are.
	Publish(publish::Args),
	/// Watch a stream: verify every segment, serve it on a local HLS gateway.
	Watch(watch::Args),
	/// Benchmark: start a `dsp serve` child, feed it a synthetic stream, hold N viewer sessions,
	/// and print sessions held, stalls, goodput, and the server's CPU time and RSS.
	Load(load::Args),
	/// Load a seeder's receipt ledger, verify every (pass, receipt) item as the pallet would,
	/// print a summary and write the SCALE-encoded claim batches (hex, one per line).
	Claim(claim::Args),
	/// Show an account's credits on chain (available, earned, units, items paid) and, with
	/// --ledger, the history of claims submitted from that ledger.
	Credits(credits::Args),
	/// Simulate N viewers of one stream (direct and P2P per the capacity rule) on a simulated
	/// clock and network, running the real scheduler, upload cap, seed rotation and admission;
	/// print per-run figures and optionally plot node egress and direct sessions vs viewers.
	Sim(sim::Args),
	/// Print the sr25519 public key (hex) of a seed or secret URI.
	Key(key::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
	tracing_subscriber::fmt()
		.with_writer(std::io::stderr)
		// Colour codes only on a terminal, not in files and CI logs.
		.with_ansi(std::io::stderr().is_terminal())
		.with_env_filter(
			tracing_subscriber::EnvFilter::try_from_default_env()
				.unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
		)
		.init();
	match Cli::parse().command {
		Command::Serve(a) => serve::run(a).await,
		Command::Publish(a) => publish::run(a).await,
		Command::Watch(a) => watch::run(a).await,
		Command::Load(a) => load::run(a).await,
		Command::Sim(a) => sim::run(a),
		Command::Claim(a) => claim::run(a).await,
		Command::Credits(a) => credits::run(a).await,
		Command::Key(a) => key::run(a),
	}
}
