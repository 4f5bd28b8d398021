//! `dsp claim`: verifies a seeder's receipt ledger as the pallet would and writes the claim
//! batches, or submits them as signed `claim` extrinsics and logs what they paid to
//! `<ledger>/claims.log` (what `dsp credits --ledger` reads).

use crate::args::{hex32, pair_from_secret, public_key};
use anyhow::{anyhow, bail, Context};
use dsp_primitives::StreamId;
use dsp_streaming::chain::client::ChainClient;
use sp_core::Pair;
use std::{path::PathBuf, time::Duration};
use tracing::warn;

#[derive(clap::Args)]
pub struct Args {
	/// Ledger directory (holds `ledger.scale`).
	#[arg(long)]
	ledger: PathBuf,
	/// The seeder's account (hex public key): what its receipts must name.
	#[arg(long)]
	seeder: String,
	/// Authorised pass signer key (hex). Repeatable.
	#[arg(long, required = true)]
	pass_signer: Vec<String>,
	/// Genesis hash (hex).
	#[arg(long, default_value = "00")]
	genesis: String,
	/// Most items per batch (the runtime's `MaxClaimBatch` is 1024).
	#[arg(long, default_value_t = 1024)]
	max: usize,
	/// Write the batches here (hex of `SCALE(Vec<ClaimItem>)`, one batch per line) instead of
	/// stdout.
	#[arg(long)]
	out: Option<PathBuf>,
	/// Submit each batch to the chain as a signed `claim` extrinsic (signed with
	/// --seeder-seed), wait for it to be in a block, print what was paid, and append it to
	/// `<ledger>/claims.log` (what `dsp credits --ledger` shows).
	#[arg(long)]
	submit: bool,
	/// The seeder's secret (e.g. `//Bob` or a 0x seed): signs the claim extrinsics; its public
	/// key must be --seeder. Unsafe as an argument: every local user can read it in the process
	/// list; prefer --seeder-seed-file or the environment variable.
	#[arg(long, value_name = "SURI", env = "DSP_SEEDER_SEED", hide_env_values = true)]
	seeder_seed: Option<String>,
	/// File whose first line is the seeder's secret (keep it readable by this user only).
	#[arg(long, value_name = "PATH")]
	seeder_seed_file: Option<PathBuf>,
	/// JSON-RPC URL of a DSP node (for --submit; --genesis defaults to its genesis hash).
	#[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9944")]
	chain: String,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
	use codec::Encode;
	use dsp_streaming::p2p::receipts::{LedgerConfig, PassSigners, SeederLedger};
	let signers = a.pass_signer.iter().map(|k| public_key(k)).collect::<Result<Vec<_>, _>>()?;
	let chain = if a.submit { Some(ChainClient::new(&a.chain)?) } else { None };
	let runtime = match &chain {
		Some(c) => Some(c.runtime_info().await.with_context(|| format!("reading {}", a.chain))?),
		None => None,
	};
	let genesis = match (&runtime, hex32(&a.genesis, "genesis")?) {
		(Some(r), g) if g == [0; 32] => r.genesis_hash,
		(Some(r), g) if g != r.genesis_hash => bail!("--genesis is not the chain's genesis hash"),
		(_, g) => g,
	};
	let config = LedgerConfig::new(
		genesis,
		hex32(&a.seeder, "seeder")?,
		PassSigners { default: signers, per_stream: Default::default() },
	);
	let ledger = SeederLedger::load(config, &a.ledger)?;
	let (batches, rejected) = ledger.claim_batches(a.max.max(1));
	for (item, why) in &rejected {
		let r = &item.receipt.payload;
		warn!(stream = r.stream, epoch = r.epoch, viewer = %hex::encode(r.viewer.0), ?why, "item skipped");
	}
	let mut per: std::collections::BTreeMap<(StreamId, u32), (usize, u64)> = Default::default();
	for item in batches.iter().flatten() {
		let r = &item.receipt.payload;
		let e = per.entry((r.stream, r.epoch)).or_default();
		e.0 += 1;
		e.1 += r.units;
	}
	println!(
		"items {} in {} batches, {} skipped",
		per.values().map(|v| v.0).sum::<usize>(),
		batches.len(),
		rejected.len()
	);
	for ((stream, epoch), (items, units)) in &per {
		println!("stream {stream} epoch {epoch}: {items} items, {units} units");
	}
	if let (Some(client), Some(runtime)) = (chain, runtime) {
		let signer = pair_from_secret(
			a.seeder_seed.as_deref(),
			a.seeder_seed_file.as_ref(),
			"--seeder-seed",
		)?
		.ok_or_else(|| {
			anyhow!("--submit needs --seeder-seed-file, DSP_SEEDER_SEED or --seeder-seed")
		})?;
		if signer.public().0 != hex32(&a.seeder, "seeder")? {
			bail!("--seeder-seed does not belong to --seeder");
		}
		for batch in &batches {
			submit_claim(&client, &runtime, &signer, batch, &a.ledger).await?;
		}
		return Ok(());
	}
	let text: String = batches.iter().map(|b| hex::encode(b.encode()) + "\n").collect();
	match &a.out {
		Some(path) => {
			std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
		}
		None => print!("{text}"),
	}
	Ok(())
}

/// One line of `<ledger>/claims.log`: a claim extrinsic and what it paid.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ClaimRecord {
	/// Unix time of inclusion, seconds.
	pub time: u64,
	/// Extrinsic hash.
	pub extrinsic: String,
	/// Items in the batch.
	pub items: usize,
	/// Units the receipts state (cumulative).
	pub receipt_units: u64,
	/// Units the chain paid for this batch (increase of what is claimed).
	pub paid_units: u64,
}

/// Units the chain has paid `seeder` for the (stream, epoch, viewer) of every item.
async fn claimed_units(
	client: &ChainClient,
	batch: &[dsp_primitives::ClaimItem],
	seeder: &[u8; 32],
) -> anyhow::Result<u64> {
	let mut total = 0;
	for item in batch {
		let r = &item.receipt.payload;
		total += client.claim_state(r.stream, r.epoch, &r.viewer.0, seeder).await?.claimed_units;
	}
	Ok(total)
}

/// Submits one batch, waits for its block, and records what it paid.
async fn submit_claim(
	client: &ChainClient,
	runtime: &dsp_streaming::chain::extrinsic::RuntimeInfo,
	signer: &sp_core::sr25519::Pair,
	batch: &[dsp_primitives::ClaimItem],
	ledger: &std::path::Path,
) -> anyhow::Result<()> {
	use dsp_streaming::chain::extrinsic::{claim_call, signed_extrinsic};
	/// Blocks a claim stays valid: unincluded by then, it is dead, and the next `dsp claim`
	/// signs the receipts again (the ledger keeps them).
	const CLAIM_LIFETIME_BLOCKS: u64 = 64;
	runtime.check()?;
	let seeder = signer.public().0;
	let before = claimed_units(client, batch, &seeder).await?;
	// What is still unpaid by the receipts (0 when the same receipts were claimed before).
	let claimable: u64 =
		batch.iter().map(|i| i.receipt.payload.units).sum::<u64>().saturating_sub(before);
	let nonce = client.next_nonce(&seeder).await?;
	let lifetime = client.mortal_lifetime(CLAIM_LIFETIME_BLOCKS).await?;
	let xt = signed_extrinsic(signer, &claim_call(batch), nonce, runtime, lifetime);
	let hash = client.submit(&xt).await?;
	client.wait_included(&seeder, nonce, Duration::from_secs(60)).await?;
	let after = claimed_units(client, batch, &seeder).await?;
	let record = ClaimRecord {
		time: std::time::SystemTime::now()
			.duration_since(std::time::UNIX_EPOCH)
			.map_or(0, |d| d.as_secs()),
		extrinsic: hash,
		items: batch.len(),
		receipt_units: batch.iter().map(|i| i.receipt.payload.units).sum(),
		paid_units: after.saturating_sub(before),
	};
	println!(
		"claim {}: {} items, {} receipt units, {} units paid",
		record.extrinsic, record.items, record.receipt_units, record.paid_units
	);
	use std::io::Write;
	let mut log = std::fs::OpenOptions::new()
		.create(true)
		.append(true)
		.open(ledger.join("claims.log"))
		.context("opening claims.log")?;
	writeln!(log, "{}", serde_json::to_string(&record)?)?;
	if record.paid_units == 0 && claimable > 0 {
		bail!(
			"the claim was included but paid nothing of {claimable} unpaid units: the extrinsic \
			 failed or every item was rejected (see the node's Dsp events for extrinsic {})",
			record.extrinsic
		);
	}
	Ok(())
}
