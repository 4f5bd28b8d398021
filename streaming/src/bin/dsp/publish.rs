//! `dsp publish`: MPEG-TS (stdin or a file) cut at key frames, or an HLS muxer's directory,
//! signed as segments and pushed to one or more servers; a restarted publisher continues where
//! the servers are. The loops themselves are the library's
//! ([`dsp_streaming::net::publish::publish_ts`], [`dsp_streaming::net::hls_ingest`]).

use crate::args::{hex32, pair_from_secret, verification};
use anyhow::{anyhow, bail, Context};
use dsp_primitives::{Hash32, StreamId};
use dsp_streaming::{
	net::{
		hls_ingest::follow_hls_dir,
		publish::{new_broadcast_id, publish_ts, PublishConfig, Publisher, Resume, SegmentSigner},
		Endpoint,
	},
	segment::DEFAULT_CHUNK_SIZE,
	ts::TsConfig,
};
use std::{path::PathBuf, time::Duration};
use tracing::info;

#[derive(clap::Args)]
pub struct Args {
	/// Stream id.
	#[arg(long)]
	stream: StreamId,
	/// MPEG-TS input: `-` for stdin or a file path. Cut into segments at key frames.
	#[arg(long, default_value = "-")]
	input: String,
	/// Instead of MPEG-TS input, follow a directory written by ffmpeg's HLS muxer (e.g.
	/// `ffmpeg ... -f hls -hls_time 2 -hls_list_size 0 DIR/index.m3u8`, also with
	/// `-hls_flags delete_segments`): each new segment in its playlist is signed and pushed
	/// byte for byte with its #EXTINF duration, in playlist order; #EXT-X-ENDLIST ends the
	/// stream. Waits for the playlist to appear.
	#[arg(long, value_name = "DIR", conflicts_with = "input")]
	hls_dir: Option<PathBuf>,
	/// The playlist file in --hls-dir (default: the only *.m3u8 file there).
	#[arg(long, value_name = "NAME", requires = "hls_dir")]
	hls_playlist: Option<String>,
	/// Milliseconds between two reads of the --hls-dir playlist (a new segment is published at
	/// most this long after the muxer listed it).
	#[arg(long, default_value_t = 200, requires = "hls_dir")]
	hls_poll_ms: u64,
	/// Server endpoint, `tcp://host:port` or `quic://host:port`. Repeatable.
	#[arg(long, required = true)]
	server: Vec<Endpoint>,
	/// Origin seed (secret URI) that signs segment headers, e.g. `//Alice`. Unsafe as an
	/// argument: every local user can read it in the process list; prefer --origin-seed-file
	/// or the environment variable.
	#[arg(
		long,
		value_name = "SURI",
		env = "DSP_ORIGIN_SEED",
		hide_env_values = true,
		required_unless_present = "origin_seed_file"
	)]
	origin_seed: Option<String>,
	/// File whose first line is the origin seed (keep it readable by this user only).
	#[arg(long, value_name = "PATH")]
	origin_seed_file: Option<PathBuf>,
	/// Genesis hash (hex).
	#[arg(long, default_value = "00")]
	genesis: String,
	/// Chunk size in bytes.
	#[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
	chunk_size: u32,
	/// Shortest segment in milliseconds (cut at the first key frame after it; MPEG-TS input).
	#[arg(long, default_value_t = 2000)]
	target_duration_ms: u32,
	/// Sequence number of the first segment: a number, or `auto` to continue where the servers
	/// are (each answers `Publish` with the broadcast it holds, if it has not ended, and the
	/// next sequence it stores of it). `auto` is what a restarted publisher needs: it continues
	/// the servers' broadcast (or, when they hold none, starts a new one at 0); starting again
	/// at 0 would only resend segments the servers already hold.
	#[arg(long, default_value = "auto")]
	start_seq: StartSeq,
	/// The broadcast id to sign segments with (ms since the Unix epoch when the broadcast
	/// started, as the servers log it). Default: with `--start-seq auto`, the servers' current
	/// broadcast, else a new one (now). A newer broadcast replaces the servers' older one; an
	/// older one is refused.
	#[arg(long, value_name = "ID")]
	broadcast: Option<u64>,
	/// Seconds `--start-seq auto` waits for every server's answer (then takes the highest
	/// plausible one received; fails if none answered).
	#[arg(long, default_value_t = 10)]
	resume_timeout_secs: u64,
	/// Also write every published segment to `<dir>/<sequence>.ts`.
	#[arg(long)]
	record: Option<PathBuf>,
	/// blake2-256 (hex) of the QUIC servers' certificate; without it QUIC certificates are
	/// not checked (segments are signed either way).
	#[arg(long)]
	quic_fingerprint: Option<String>,
	/// Seconds to wait at the end for servers to acknowledge everything.
	#[arg(long, default_value_t = 30)]
	finish_timeout_secs: u64,
}

/// `--start-seq`: a number or `auto`.
#[derive(Clone, Copy, Debug)]
enum StartSeq {
	Auto,
	At(u64),
}

impl std::str::FromStr for StartSeq {
	type Err = String;
	fn from_str(s: &str) -> Result<Self, String> {
		match s {
			"auto" => Ok(StartSeq::Auto),
			n => n.parse().map(StartSeq::At).map_err(|_| format!("{s}: a number or `auto`")),
		}
	}
}

pub async fn run(a: Args) -> anyhow::Result<()> {
	let pair =
		pair_from_secret(a.origin_seed.as_deref(), a.origin_seed_file.as_ref(), "--origin-seed")?
			.ok_or_else(|| anyhow!("no --origin-seed, --origin-seed-file or DSP_ORIGIN_SEED"))?;
	let genesis: Hash32 = hex32(&a.genesis, "genesis")?;
	let mut config = PublishConfig::new(a.stream, a.server.clone(), pair.clone());
	config.genesis_hash = genesis;
	config.verification = verification(&a.quic_fingerprint)?;
	let publisher = Publisher::start(config)?;
	if let Some(dir) = &a.record {
		std::fs::create_dir_all(dir)?;
	}
	let at = match a.start_seq {
		StartSeq::At(n) => {
			Resume { broadcast: a.broadcast.unwrap_or_else(new_broadcast_id), next_sequence: n }
		}
		StartSeq::Auto => {
			let timeout = Duration::from_secs(a.resume_timeout_secs);
			let held = publisher.resume_point(timeout).await.ok_or_else(|| {
				anyhow!("no server said where to continue within {timeout:?}; pass --start-seq N")
			})?;
			let at = match a.broadcast {
				Some(b) if held.broadcast == Some(b) => held.resume_or(b),
				Some(b) => Resume { broadcast: b, next_sequence: 0 },
				None => held.resume_or(new_broadcast_id()),
			};
			info!(
				broadcast = at.broadcast,
				start_seq = at.next_sequence,
				"continuing where the servers are"
			);
			at
		}
	};
	let mut signer = SegmentSigner::new(pair, genesis, a.stream, a.chunk_size, at)
		.record_to(a.record.clone())
		.log_each_segment();
	match &a.hls_dir {
		Some(dir) => {
			let poll = Duration::from_millis(a.hls_poll_ms.max(1));
			follow_hls_dir(dir, a.hls_playlist.as_deref(), poll, &publisher, &mut signer).await?
		}
		None => {
			let input: Box<dyn tokio::io::AsyncRead + Unpin> = if a.input == "-" {
				Box::new(tokio::io::stdin())
			} else {
				Box::new(tokio::fs::File::open(&a.input).await.with_context(|| a.input.clone())?)
			};
			let ts = TsConfig { target_duration_ms: a.target_duration_ms, ..Default::default() };
			publish_ts(input, ts, &publisher, &mut signer).await?
		}
	}
	info!(segments = signer.published(), "input ended");
	let reports = publisher.finish(signer.end(), Duration::from_secs(a.finish_timeout_secs)).await;
	let mut ok = reports.len() == a.server.len();
	for r in &reports {
		println!(
			"{}: acked={} dropped={} refused={} connections={} complete={}",
			r.server, r.acked, r.dropped, r.refused, r.connections, r.complete
		);
		ok &= r.complete && r.dropped == 0 && r.refused == 0;
	}
	if !ok {
		bail!("not every server acknowledged every segment");
	}
	Ok(())
}

#[cfg(test)]
mod tests {
	use super::*;
	use clap::Parser;
	use sp_core::Pair;

	#[derive(Parser)]
	struct Cli {
		#[command(flatten)]
		args: Args,
	}

	const BASE: [&str; 5] = ["dsp", "--stream", "1", "--server", "tcp://127.0.0.1:1"];

	/// The origin seed can come from a file, kept out of the process list.
	#[test]
	fn the_origin_seed_is_read_from_a_file() {
		let dir = tempfile::tempdir().unwrap();
		let path = dir.path().join("origin.seed");
		std::fs::write(&path, "//Alice\n").unwrap();
		let path = path.display().to_string();
		let parsed = Cli::try_parse_from(BASE.iter().copied().chain(["--origin-seed-file", &path]));
		assert!(parsed.is_ok(), "--origin-seed-file is accepted");
		let a = parsed.unwrap().args;
		let pair = pair_from_secret(
			a.origin_seed.as_deref(),
			a.origin_seed_file.as_ref(),
			"--origin-seed",
		);
		assert_eq!(
			pair.unwrap().map(|p| p.public()),
			Some(crate::args::pair_from_seed("//Alice", "x").unwrap().public())
		);
		// Without any of the three forms, the seed is missing (unless the environment has it).
		if std::env::var_os("DSP_ORIGIN_SEED").is_none() {
			assert!(Cli::try_parse_from(BASE).is_err());
		}
		let a =
			Cli::try_parse_from(BASE.iter().copied().chain(["--origin-seed", "//Bob"])).unwrap();
		assert_eq!(a.args.origin_seed.as_deref(), Some("//Bob"), "the argument still works");
	}
}
