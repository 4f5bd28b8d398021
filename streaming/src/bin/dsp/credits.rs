//! `dsp credits`: an account's credits on chain and, with `--ledger`, the claims `dsp claim
//! --submit` made from that ledger.

use crate::{args::hex32, claim::ClaimRecord};
use anyhow::{anyhow, Context};
use dsp_streaming::chain::client::ChainClient;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
	/// Account (hex public key or SS58).
	#[arg(long)]
	account: String,
	/// JSON-RPC URL of a DSP node.
	#[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9944")]
	chain: String,
	/// A seeder ledger directory: also list the claims `dsp claim --submit` made from it.
	#[arg(long)]
	ledger: Option<PathBuf>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
	use sp_core::crypto::Ss58Codec;
	let account = match hex32(&a.account, "account") {
		Ok(bytes) if a.account.trim_start_matches("0x").len() == 64 => bytes,
		_ => sp_core::crypto::AccountId32::from_ss58check(&a.account)
			.map_err(|e| anyhow!("--account is neither 32-byte hex nor SS58: {e:?}"))?
			.into(),
	};
	let client = ChainClient::new(&a.chain)?;
	let c = client.credits(&account).await.with_context(|| format!("reading {}", a.chain))?;
	println!(
		"available {}  earned {}  units {}  items paid {}",
		c.available, c.earned_total, c.units_total, c.items_paid
	);
	if let Some(dir) = &a.ledger {
		let path = dir.join("claims.log");
		let text = match std::fs::read_to_string(&path) {
			Ok(t) => t,
			Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
			Err(e) => return Err(e).with_context(|| path.display().to_string()),
		};
		println!("claims submitted from {}:", dir.display());
		for line in text.lines().filter(|l| !l.trim().is_empty()) {
			match serde_json::from_str::<ClaimRecord>(line) {
				Ok(r) => println!(
					"  {}  {}  {} items  {} receipt units  {} paid",
					r.time, r.extrinsic, r.items, r.receipt_units, r.paid_units
				),
				Err(e) => println!("  (unreadable line: {e})"),
			}
		}
	}
	Ok(())
}
