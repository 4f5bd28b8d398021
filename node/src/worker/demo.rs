//! The development chain's demo stream: ffmpeg's test pattern, cut into segments, signed with
//! the dev origin's key and published to this node's own worker, so that
//! `dsp watch --stream 0` plays as soon as `dsp-node --dev` is up.

use dsp_primitives::{Hash32, StreamId};
use dsp_streaming::{
	net::{
		publish::{new_broadcast_id, publish_ts, PublishConfig, Publisher, Resume, SegmentSigner},
		Endpoint,
	},
	ts::TsConfig,
	viewer::Transport,
};
use std::{net::SocketAddr, process::Stdio, time::Duration};
use tokio::process::Command;

/// Chunk size of the demo's segments: 16 KiB, so that a 2 s segment of 500 kbit/s is about
/// eight chunks that P2P viewers can fetch from different peers at once.
const DEMO_CHUNK_SIZE: u32 = 16 * 1024;

/// How the demo is fed.
pub struct DemoConfig {
	/// Stream to publish (the genesis demo stream).
	pub stream: StreamId,
	/// The origin's key (the dev seed's).
	pub origin: sp_core::sr25519::Pair,
	/// Chain the segments are signed for.
	pub genesis_hash: Hash32,
	/// The worker's TCP endpoint.
	pub server: SocketAddr,
	/// Video bitrate passed to the encoder, kbit/s (the stream's registered bitrate minus
	/// audio).
	pub video_kbps: u32,
}

/// The ffmpeg command line: a 640x360 test pattern with a tone, 2 s GOPs (one key frame per
/// segment), MPEG-TS on stdout, paced in real time.
fn ffmpeg_args(video_kbps: u32) -> Vec<String> {
	let v = format!("{video_kbps}k");
	[
		"-hide_banner",
		"-loglevel",
		"error",
		"-re",
		"-f",
		"lavfi",
		"-i",
		"testsrc=size=640x360:rate=25",
		"-f",
		"lavfi",
		"-i",
		"sine=frequency=440:sample_rate=48000",
		"-c:v",
		"libx264",
		"-preset",
		"veryfast",
		"-tune",
		"zerolatency",
		"-pix_fmt",
		"yuv420p",
		"-g",
		"50",
		"-keyint_min",
		"50",
		"-sc_threshold",
		"0",
		"-b:v",
		&v,
		"-maxrate",
		&v,
		"-bufsize",
		&v,
		"-c:a",
		"aac",
		"-b:a",
		"64k",
		"-f",
		"mpegts",
		"-",
	]
	.iter()
	.map(|s| s.to_string())
	.collect()
}

/// Runs the demo until the node stops. Returns early (after logging why) if ffmpeg is missing
/// or the publisher cannot start; the node keeps running either way.
pub async fn run(config: DemoConfig) {
	let mut child = match Command::new("ffmpeg")
		.args(ffmpeg_args(config.video_kbps))
		.stdin(Stdio::null())
		.stdout(Stdio::piped())
		.stderr(Stdio::inherit())
		.kill_on_drop(true)
		.spawn()
	{
		Ok(child) => child,
		Err(e) => {
			log::warn!(
				target: super::LOG_TARGET,
				"demo stream {} not started: cannot run ffmpeg ({e}). Install it (apt-get install \
				 ffmpeg) or publish yourself: ffmpeg ... -f mpegts - | dsp publish --stream {} \
				 --input - --server tcp://{} --origin-seed //Alice --genesis 0x{}",
				config.stream,
				config.stream,
				config.server,
				hex::encode(config.genesis_hash),
			);
			return;
		}
	};
	let Some(mut stdout) = child.stdout.take() else { return };
	let mut publish = PublishConfig::new(
		config.stream,
		vec![Endpoint { transport: Transport::Tcp, addr: config.server }],
		config.origin.clone(),
	);
	publish.genesis_hash = config.genesis_hash;
	let publisher = match Publisher::start(publish) {
		Ok(p) => p,
		Err(e) => {
			log::warn!(target: super::LOG_TARGET, "demo publisher failed to start: {e}");
			return;
		}
	};
	// Continue the broadcast the worker holds, after what it holds, and never below the
	// wall-clock sequence: after a node restart the worker holds nothing (windows are in
	// memory), so a new broadcast starts, and viewers that kept running ask for the segment
	// after their last one, which must lie ahead.
	let wall = wall_clock_sequence(std::time::SystemTime::now());
	let at = match publisher.resume_point(Duration::from_secs(10)).await {
		Some(held) => held.resume_or(new_broadcast_id()),
		None => Resume { broadcast: new_broadcast_id(), next_sequence: 0 },
	};
	let at = Resume { next_sequence: at.next_sequence.max(wall), ..at };
	let next = at.next_sequence;
	log::info!(
		target: super::LOG_TARGET,
		"demo stream {}: ffmpeg test pattern → tcp://{} from segment {next}",
		config.stream,
		config.server,
	);
	let mut signer =
		SegmentSigner::new(config.origin, config.genesis_hash, config.stream, DEMO_CHUNK_SIZE, at);
	if let Err(e) = publish_ts(&mut stdout, TsConfig::default(), &publisher, &mut signer).await {
		log::warn!(target: super::LOG_TARGET, "demo stream {}: reading ffmpeg failed: {e}", config.stream);
	}
	let status = child.wait().await;
	log::warn!(target: super::LOG_TARGET, "demo ffmpeg ended ({status:?}); demo stream {} ends", config.stream);
	publisher.finish(signer.end(), Duration::from_secs(5)).await;
}

/// The demo's segment length (ffmpeg cuts a key frame every two seconds).
const DEMO_SEGMENT_MS: u128 = 2_000;

/// Sequence number a demo started at `now` begins with: the count of two-second segments since
/// the Unix epoch. ffmpeg runs in real time (`-re`), so numbering keeps roughly to it, and a
/// demo restarted later starts ahead of every segment it published before.
fn wall_clock_sequence(now: std::time::SystemTime) -> u64 {
	let ms = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
	(ms / DEMO_SEGMENT_MS) as u64
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn a_restarted_demo_numbers_ahead_of_the_old_one() {
		let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
		let first = wall_clock_sequence(t0);
		assert_eq!(first, 900_000_000);
		// Ten segments published, then a restart five seconds later.
		let restarted = wall_clock_sequence(t0 + Duration::from_secs(20 + 5));
		assert!(restarted > first + 10 - 1, "{restarted} after {}", first + 10);
	}

	#[test]
	fn ffmpeg_cuts_a_key_frame_per_two_second_segment_at_the_asked_bitrate() {
		let args = ffmpeg_args(436);
		let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
		assert_eq!(after("-g"), "50"); // 25 fps × 2 s
		assert_eq!(after("-keyint_min"), "50");
		assert_eq!(after("-b:v"), "436k");
		assert_eq!(after("-f"), "lavfi");
		assert_eq!(args.last().unwrap(), "-");
	}
}
