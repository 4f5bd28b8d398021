//! `dsp key`: the sr25519 public key of a seed, what `dsp serve` and `dsp watch` take as
//! `--origin-key`.

use crate::args::pair_from_seed;
use sp_core::Pair;

#[derive(clap::Args)]
pub struct Args {
	/// Seed, e.g. `//Alice` or a 0x-prefixed hex seed.
	#[arg(long)]
	seed: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
	let pair = pair_from_seed(&a.seed, "seed")?;
	println!("{}", hex::encode(pair.public().0));
	Ok(())
}
