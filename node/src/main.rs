//! `dsp-node`: the DSP chain node.

mod chain_spec;
mod cli;
mod command;
mod rpc;
mod service;
mod worker;

fn main() -> sc_cli::Result<()> {
	command::run()
}
