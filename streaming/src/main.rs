//! `dsp`: the standalone streaming tool (no chain needed).
//!
//! - `dsp serve`: TCP and QUIC streamer with live windows; records streams and serves
//!   recordings on demand.
//! - `dsp publish`: MPEG-TS on stdin (or an HLS muxer's directory) → signed segments → one or
//!   more servers.
//! - `dsp watch`: viewer with transport switching and a local HLS gateway.
//! - `dsp sim`: the P2P simulator (the real scheduler, upload cap, seeding and admission on a
//!   simulated clock and network).
//! - `dsp key`: the public key of a seed (what `serve` and `watch` need as `--origin-key`).
//! - `dsp claim`: verified claim batches from a seeder's receipt ledger.

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use dsp_primitives::{CapacitySettings, Hash32, Perbill, PublicKey, Signed, StreamEnd, StreamId};
use dsp_streaming::{
	chain::{client::ChainClient, discovery},
	net::p2p::P2pConfig,
	net::p2p_watch::{self, P2pWatchConfig, P2pWatchError},
	net::{
		publish::{PublishConfig, Publisher},
		serve::{RunningServer, ServeConfig},
		tls::ServerVerification,
		watch::{self, ServerAddr, WatchConfig},
		Endpoint,
	},
	p2p::{
		receipts::{LedgerConfig, PassSigners},
		tracker::{PassSigning, TrackerConfig},
		upload::UploadConfig,
	},
	protocol::{ServerAddrs, Start},
	segment::{Segment, DEFAULT_CHUNK_SIZE},
	server::{OriginKeys, StreamTableConfig},
	ts::{TsConfig, TsSegmenter},
	viewer::{Transport, TransportPolicy, ViewerConfig},
};
use sp_core::Pair;
use std::{
	net::SocketAddr,
	path::PathBuf,
	sync::Arc,
	time::{Duration, Instant},
};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

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
	Serve(ServeArgs),
	/// Read MPEG-TS and cut it at key frames (or follow an HLS muxer's directory), sign the
	/// segments, push them to servers; a restarted publisher continues where the servers are.
	Publish(PublishArgs),
	/// Watch a stream: verify every segment, serve it on a local HLS gateway.
	Watch(WatchArgs),
	/// Benchmark: start a `dsp serve` child, feed it a synthetic stream, hold N viewer sessions,
	/// and print sessions held, stalls, goodput, and the server's CPU time and RSS.
	Load(LoadArgs),
	/// Time the hot paths (frame encode/decode, chunk hash check, header signature check) with a
	/// plain timing loop and print their rates.
	Bench {
		/// Seconds per measurement.
		#[arg(long, default_value_t = 1.0)]
		secs: f64,
	},
	/// Load a seeder's receipt ledger, verify every (pass, receipt) item as the pallet would,
	/// print a summary and write the SCALE-encoded claim batches (hex, one per line).
	Claim(ClaimArgs),
	/// Show an account's credits on chain (available, earned, units, items paid) and, with
	/// --ledger, the history of claims submitted from that ledger.
	Credits(CreditsArgs),
	/// Simulate N viewers of one stream (direct and P2P per the capacity rule) on a simulated
	/// clock and network, running the real scheduler, upload cap, seed rotation and admission;
	/// print per-run figures and optionally plot node egress and direct sessions vs viewers.
	Sim(SimArgs),
	/// Print the sr25519 public key (hex) of a seed or secret URI.
	Key {
		/// Seed, e.g. `//Alice` or a 0x-prefixed hex seed.
		#[arg(long)]
		seed: String,
	},
}

#[derive(clap::Args)]
struct ServeArgs {
	/// TCP listen address ("none" to disable).
	#[arg(long, default_value = "0.0.0.0:7700")]
	tcp: String,
	/// QUIC (UDP) listen address ("none" to disable).
	#[arg(long, default_value = "0.0.0.0:7700")]
	quic: String,
	/// Origin public key (hex) that signs every stream without its own `--stream-key`.
	#[arg(long)]
	origin_key: Option<String>,
	/// `STREAM=KEY`: origin public key (hex) of one stream. Repeatable.
	#[arg(long)]
	stream_key: Vec<String>,
	/// Genesis hash (hex) of the chain the streams are registered on.
	#[arg(long, default_value = "00")]
	genesis: String,
	/// Most direct viewer sessions (`max_streams`).
	#[arg(long, default_value_t = 2000)]
	max_streams: u32,
	/// Dynamic streaming rate `r` in [0, 1]: the share of `max_streams` handed to P2P. Viewers
	/// beyond `floor(max_streams * (1 - r))` direct sessions are admitted in P2P mode with
	/// `--pass-seed`, refused without it.
	#[arg(long, default_value_t = 0.0)]
	rate: f64,
	/// Seed (secret URI) of the key that signs viewer passes: one of the origin's authorised
	/// pass signers. Enables P2P admission and the tracker.
	#[arg(long)]
	pass_seed: Option<String>,
	/// Credit epoch written into passes (without a chain to follow).
	#[arg(long, default_value_t = 0)]
	epoch: u32,
	/// `max_units` of each pass (1 unit = 1 KiB).
	#[arg(long, default_value_t = 4 * 1024 * 1024)]
	pass_max_units: u64,
	/// libp2p listen address of the node's swarm seed (serves its live windows to pass holders;
	/// listed first to every P2P viewer), e.g. `/ip4/0.0.0.0/udp/7701/quic-v1` and
	/// `/ip4/0.0.0.0/tcp/7701`. Repeatable; none: no seed. Needs `--pass-seed`.
	#[arg(long)]
	p2p_listen: Vec<String>,
	/// Directory of the seed's receipt ledger (what `dsp claim --ledger` reads).
	#[arg(long)]
	ledger: Option<PathBuf>,
	/// Segments kept per live stream.
	#[arg(long, default_value_t = 30)]
	window: usize,
	/// Most connections at once.
	#[arg(long, default_value_t = 4096)]
	max_connections: usize,
	/// Most viewers admitted in P2P mode at once (with --pass-seed); further ones are refused
	/// as full.
	#[arg(long, default_value_t = 10_000)]
	max_p2p_sessions: u32,
	/// Another streamer of the same streams, `tcp://host:port` and/or `quic://host:port`,
	/// grouped like `dsp watch --server`. Repeatable. Viewers refused as full (capacity rule,
	/// P2P cap, max connections over TCP) are sent a `Redirect` to them, rotating.
	#[arg(long, value_name = "ENDPOINT")]
	redirect: Vec<Endpoint>,
	/// Seconds a client may stay silent before it is closed.
	#[arg(long, default_value_t = 30)]
	idle_timeout_secs: u64,
	/// Seconds a new client has to send its hello.
	#[arg(long, default_value_t = 5)]
	hello_timeout_secs: u64,
	/// Seconds a write may make no progress before the client is closed.
	#[arg(long, default_value_t = 10)]
	write_stall_timeout_secs: u64,
	/// Most streams held at once (live windows, including those waited for).
	#[arg(long, default_value_t = 256)]
	max_streams_held: usize,
	/// Most streams held that have no segment yet, counted apart for those announced by a
	/// publisher that sent none and those subscribed to by viewers waiting for a publisher.
	/// Bounds what anonymous clients can hold; waiting viewers cannot lock publishers out.
	#[arg(long, default_value_t = 32)]
	max_waiting_streams: usize,
	/// Seconds after which a stream that stored nothing (no segment, no end) is freed and its
	/// viewers closed; also how long a viewer waits for a stream nobody publishes yet.
	#[arg(long, default_value_t = 120)]
	stream_idle_secs: u64,
	/// Seconds an ended stream stays after its end, for its viewers to catch up.
	#[arg(long, default_value_t = 30)]
	ended_linger_secs: u64,
	/// Record every segment and end this server stores, as the origin-signed wire frames, to
	/// DIR/<stream>/<sequence>.seg and DIR/<stream>/end.frame (serve them later with --vod-dir).
	#[arg(long, value_name = "DIR")]
	record_dir: Option<PathBuf>,
	/// Serve recordings made with --record-dir on demand: a viewer of a stream that is not live
	/// here gets it from DIR/<stream>/ (`--from N` or from the start, then End).
	#[arg(long, value_name = "DIR")]
	vod_dir: Option<PathBuf>,
	/// Seconds of play time an on-demand stream is sent ahead of real time: a recording
	/// reaches the viewer at its own pace, with this much in hand.
	#[arg(long, default_value_t = 10)]
	vod_lead_secs: u64,
}

#[derive(clap::Args)]
struct ClaimArgs {
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
	#[arg(long, requires = "seeder_seed")]
	submit: bool,
	/// The seeder's secret (e.g. `//Bob` or a 0x seed): signs the claim extrinsics; its public
	/// key must be --seeder.
	#[arg(long, value_name = "SURI")]
	seeder_seed: Option<String>,
	/// JSON-RPC URL of a DSP node (for --submit; --genesis defaults to its genesis hash).
	#[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9944")]
	chain: String,
}

#[derive(clap::Args)]
struct CreditsArgs {
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

#[derive(clap::Args)]
struct PublishArgs {
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
	/// Origin seed (secret URI) that signs segment headers, e.g. `//Alice`.
	#[arg(long)]
	origin_seed: String,
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
	/// are (each answers `Publish` with the next sequence it stores: one past the newest segment
	/// it holds, 0 for a stream it never had). `auto` is what a restarted publisher needs:
	/// starting again at 0 would only resend segments the servers already hold.
	#[arg(long, default_value = "auto")]
	start_seq: StartSeq,
	/// Seconds `--start-seq auto` waits for every server's answer (then takes the highest one
	/// received; fails if none answered).
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

#[derive(clap::Args)]
struct LoadArgs {
	/// Viewer sessions.
	#[arg(long, default_value_t = 100)]
	viewers: usize,
	/// Transport of the viewers.
	#[arg(long, value_enum, default_value = "tcp")]
	transport: TransportArg,
	/// Stream bitrate, kbit/s.
	#[arg(long, default_value_t = 500)]
	bitrate_kbps: u32,
	/// Segment duration, ms.
	#[arg(long, default_value_t = 2000)]
	segment_ms: u32,
	/// Seconds to hold the sessions once all are connected.
	#[arg(long, default_value_t = 60)]
	duration_secs: u64,
	/// Sessions opened per second while ramping up.
	#[arg(long, default_value_t = 500)]
	connect_rate: u32,
	/// Afterwards, run the same number of HLS-style HTTP clients against nginx serving
	/// segments of the same size, and print DSP's throughput per CPU-second as a ratio to it.
	#[arg(long)]
	compare_nginx: bool,
	/// Chunk size, KiB. Default 64 (16 with `--p2p`: more pieces to trade).
	#[arg(long)]
	chunk_kib: Option<u32>,
	/// P2P mode: the `dsp serve` child admits every viewer in P2P mode (`--rate 1
	/// --pass-seed`), and every load viewer is a real P2P viewer (the `dsp watch --p2p`
	/// driver: libp2p node + direct connection). Prints the P2P share of the delivered bytes,
	/// the node's egress and stalls, and the RSS and CPU of one `dsp watch --p2p` child.
	#[arg(long)]
	p2p: bool,
	/// P2P: share of the viewers (e.g. 0.3) run as `dsp watch --p2p` processes that join first
	/// and are killed with SIGKILL halfway through; the figures of the other viewers are then
	/// printed before the kill and after `--recover-secs`.
	#[arg(long, default_value_t = 0.0)]
	kill_seeders: f64,
	/// P2P: seconds after the kill before the second measurement.
	#[arg(long, default_value_t = 10)]
	recover_secs: u64,
	/// Load a server that is already running instead of a `dsp serve` child, e.g. the worker
	/// of `dsp-node --dev --no-demo`: its TCP endpoint (the synthetic stream is published
	/// there). Needs --target-pid, --origin-seed and --genesis for that server's chain.
	#[arg(long, value_name = "ADDR", requires_all = ["target_pid", "target_quic"], conflicts_with = "p2p")]
	target_tcp: Option<SocketAddr>,
	/// QUIC endpoint of the --target-tcp server.
	#[arg(long, value_name = "ADDR", requires = "target_tcp")]
	target_quic: Option<SocketAddr>,
	/// PID of the --target-tcp server, whose CPU time and RSS are reported.
	#[arg(long, value_name = "PID", requires = "target_tcp")]
	target_pid: Option<u32>,
	/// Stream to publish and watch.
	#[arg(long, default_value_t = 1)]
	stream: StreamId,
	/// Secret of the stream's origin key (the target must know its public key, e.g. from the
	/// chain's registry: `//Alice` for stream 0 of a dev chain).
	#[arg(long, value_name = "SURI", default_value = "//LoadOrigin")]
	origin_seed: String,
	/// Genesis hash of the target's chain (hex; zeros for a standalone server).
	#[arg(long, default_value = "00")]
	genesis: String,
}

#[derive(clap::Args)]
struct SimArgs {
	/// Viewers watching at once.
	#[arg(long, default_value_t = 2000)]
	viewers: u32,
	/// `max_streams` of the streamer.
	#[arg(long, default_value_t = 2000)]
	max_streams: u32,
	/// Dynamic streaming rate(s) `r` in [0, 1]: repeat the flag or give a list (`0,0.5,1`).
	#[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = vec![0.0, 0.5, 1.0])]
	rate: Vec<f64>,
	/// Stream bitrate, kbit/s.
	#[arg(long, default_value_t = 500)]
	bitrate_kbps: u32,
	/// Segment duration, ms.
	#[arg(long, default_value_t = 2000)]
	segment_ms: u32,
	/// Chunk size, KiB.
	#[arg(long, default_value_t = 16)]
	chunk_kib: u32,
	/// Viewer upload cap as a multiple of the bitrate.
	#[arg(long, default_value_t = 1.5)]
	upload_cap_x: f64,
	/// Share of the viewers leaving (replaced by new ones) per minute, e.g. 0.1 for 10 %.
	#[arg(long, default_value_t = 0.1)]
	churn_per_min: f64,
	/// Simulated seconds, ramp included.
	#[arg(long, default_value_t = 60)]
	duration_secs: u64,
	/// The viewers join evenly over this many seconds; byte figures are measured after it.
	#[arg(long, default_value_t = 20)]
	ramp_secs: u64,
	/// One-way latency of every link, ms.
	#[arg(long, default_value_t = 50)]
	latency_ms: u64,
	/// Packet loss probability (each lost packet delays its message by a retransmission).
	#[arg(long, default_value_t = 0.0)]
	loss: f64,
	/// Seed of every random choice (same seed, same figures).
	#[arg(long, default_value_t = 1)]
	seed: u64,
	/// Viewers' physical uplink, kbit/s.
	#[arg(long, default_value_t = 5000)]
	viewer_up_kbps: u64,
	/// Viewers' downlink, kbit/s.
	#[arg(long, default_value_t = 20000)]
	viewer_down_kbps: u64,
	/// The node's uplink, Mbit/s.
	#[arg(long, default_value_t = 1000)]
	node_up_mbps: u64,
	/// A joining viewer starts this many segments behind the newest.
	#[arg(long, default_value_t = 3)]
	live_back: u64,
	/// Share of P2P viewers sending corrupt chunks (exercises verification and bans).
	#[arg(long, default_value_t = 0.0)]
	bad_peers: f64,
	/// Write an SVG plot of node egress and direct sessions against the number of viewers
	/// (one line per rate) to this file.
	#[arg(long)]
	plot: Option<PathBuf>,
	/// Viewer counts for the plot (runs at `--viewers` are reused).
	#[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = vec![500, 1000, 1500, 2000, 2500, 3000])]
	plot_viewers: Vec<u32>,
	/// Runs at once (each is single-threaded).
	#[arg(long, default_value_t = 2)]
	jobs: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
	/// QUIC first, TCP when UDP is blocked or worse.
	Auto,
	/// TCP only.
	Tcp,
	/// QUIC (UDP) only.
	Udp,
}

#[derive(clap::Args)]
struct WatchArgs {
	/// Stream id.
	#[arg(long)]
	stream: StreamId,
	/// Find everything else on this DSP node's chain (JSON-RPC URL): the stream's origin key,
	/// the genesis hash, and the reachable registered streamers ranked best first (direct room
	/// first, then lowest TCP connect time, load read from each streamer's own node); the
	/// viewer starts with the best and fails over down the list. Used when no --server is given.
	#[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9944")]
	chain: String,
	/// Server endpoint, `tcp://host:port` and/or `quic://host:port`. Repeatable for several
	/// streamers, most preferred first: an endpoint of a transport the current streamer
	/// already has starts the next one (`--server tcp://a:1 --server quic://a:2 --server
	/// tcp://b:1` is a with TCP and QUIC, then b with TCP). The viewer moves to the next one
	/// when its streamer is full or fails repeatedly, and follows the streamers' redirects.
	/// Without it, the streamers are found on the chain (--chain).
	#[arg(long, requires = "origin_key")]
	server: Vec<Endpoint>,
	/// Origin public key (hex) that signs the stream (with --server; read from the chain
	/// otherwise).
	#[arg(long, requires = "server")]
	origin_key: Option<String>,
	/// Genesis hash (hex) (with --server; read from the chain otherwise).
	#[arg(long, default_value = "00")]
	genesis: String,
	/// Transport choice.
	#[arg(long, value_enum, default_value = "auto")]
	transport: TransportArg,
	/// Start at this sequence number instead of the live edge.
	#[arg(long)]
	from: Option<u64>,
	/// Start this many segments before the newest one (live edge).
	#[arg(long, default_value_t = 2)]
	live_back: u32,
	/// HLS gateway address (loopback).
	#[arg(long, default_value = "127.0.0.1:0")]
	gateway: SocketAddr,
	/// Segments kept in the gateway's playlist.
	#[arg(long, default_value_t = 10)]
	playlist_segments: usize,
	/// Also write every delivered segment to `<dir>/<sequence>.ts`.
	#[arg(long)]
	record: Option<PathBuf>,
	/// blake2-256 (hex) of the server's QUIC certificate (printed by `dsp serve`); without it
	/// the certificate is not checked (segments are verified by signature either way).
	#[arg(long)]
	quic_fingerprint: Option<String>,
	/// Seconds between status lines (0: none).
	#[arg(long, default_value_t = 1)]
	status_interval_secs: u64,
	/// Offer P2P mode: if the server admits this viewer in P2P mode, join the stream's swarm
	/// (pass, peers, chunks from peers, urgent gaps from the server) with the first `--server`
	/// of the chosen transport; if it admits it directly, watch in direct mode.
	#[arg(long)]
	p2p: bool,
	/// P2P: seed (secret URI) of the viewer key that the pass names and receipts are signed
	/// with (also this viewer's account as a seeder). Default: a fresh random key.
	#[arg(long)]
	viewer_seed: Option<String>,
	/// P2P: authorised pass signer (hex public key) whose passes neighbours must show.
	/// Repeatable; required with `--p2p`.
	#[arg(long)]
	pass_signer: Vec<String>,
	/// P2P: libp2p listen address. Repeatable. Default: QUIC and TCP on 127.0.0.1, OS ports.
	#[arg(long)]
	p2p_listen: Vec<String>,
	/// P2P: upload cap for serving neighbours, kbit/s.
	#[arg(long, default_value_t = 1500)]
	upload_kbps: u64,
}

fn hex32(s: &str, what: &str) -> anyhow::Result<[u8; 32]> {
	let s = s.trim_start_matches("0x");
	if s == "00" || s.is_empty() {
		return Ok([0; 32]);
	}
	let v = hex::decode(s).with_context(|| format!("{what}: not hex"))?;
	v.try_into().map_err(|_| anyhow!("{what}: expected 32 bytes"))
}

fn public_key(s: &str) -> anyhow::Result<PublicKey> {
	Ok(PublicKey::from_raw(hex32(s, "origin key")?))
}

fn verification(fp: &Option<String>) -> anyhow::Result<ServerVerification> {
	Ok(match fp {
		Some(f) => ServerVerification::Fingerprint(hex32(f, "quic fingerprint")?),
		None => ServerVerification::InsecureSkip,
	})
}

fn addr_or_none(s: &str) -> anyhow::Result<Option<SocketAddr>> {
	if s == "none" {
		return Ok(None);
	}
	Ok(Some(s.parse().with_context(|| format!("bad address {s}"))?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
	tracing_subscriber::fmt()
		.with_writer(std::io::stderr)
		.with_env_filter(
			tracing_subscriber::EnvFilter::try_from_default_env()
				.unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
		)
		.init();
	match Cli::parse().command {
		Command::Serve(a) => serve(a).await,
		Command::Publish(a) => publish(a).await,
		Command::Watch(a) => watch(a).await,
		Command::Load(a) => load(a).await,
		Command::Sim(a) => sim(a),
		Command::Bench { secs } => {
			bench(Duration::from_secs_f64(secs));
			Ok(())
		}
		Command::Claim(a) => claim(a).await,
		Command::Credits(a) => credits(a).await,
		Command::Key { seed } => {
			let pair = sp_core::sr25519::Pair::from_string(&seed, None)
				.map_err(|e| anyhow!("bad seed: {e:?}"))?;
			println!("{}", hex::encode(pair.public().0));
			Ok(())
		}
	}
}

fn sim(a: SimArgs) -> anyhow::Result<()> {
	use dsp_streaming::sim::{self, report::RunReport, SimConfig};
	if a.rate.iter().any(|r| !(0.0..=1.0).contains(r)) {
		bail!("--rate must be in [0, 1]");
	}
	if !(0.0..1.0).contains(&a.loss) || !(0.0..=1.0).contains(&a.bad_peers) {
		bail!("--loss must be in [0, 1) and --bad-peers in [0, 1]");
	}
	if a.viewers == 0 || a.segment_ms == 0 || a.bitrate_kbps == 0 || a.duration_secs <= a.ramp_secs
	{
		bail!("need viewers, segment and bitrate > 0 and --duration-secs > --ramp-secs");
	}
	let base = SimConfig {
		viewers: a.viewers,
		max_streams: a.max_streams,
		bitrate_kbps: a.bitrate_kbps,
		segment_ms: a.segment_ms,
		chunk_kib: a.chunk_kib,
		upload_cap_x: a.upload_cap_x,
		churn_per_min: a.churn_per_min,
		duration_secs: a.duration_secs,
		ramp_secs: a.ramp_secs,
		latency_ms: a.latency_ms,
		loss: a.loss,
		seed: a.seed,
		viewer_up_kbps: a.viewer_up_kbps,
		viewer_down_kbps: a.viewer_down_kbps,
		node_up_mbps: a.node_up_mbps,
		live_back: a.live_back,
		bad_peers: a.bad_peers,
		..Default::default()
	};
	// The main runs first (printed), then the extra viewer counts the plot needs.
	let mut jobs: Vec<SimConfig> =
		a.rate.iter().map(|&rate| SimConfig { rate, ..base.clone() }).collect();
	if a.plot.is_some() {
		for &rate in &a.rate {
			for &viewers in a.plot_viewers.iter().filter(|&&v| v != a.viewers && v > 0) {
				jobs.push(SimConfig { rate, viewers, ..base.clone() });
			}
		}
	}
	let main_runs = a.rate.len();
	let wall = std::time::Instant::now();
	let next = std::sync::atomic::AtomicUsize::new(0);
	let results: std::sync::Mutex<Vec<Option<RunReport>>> =
		std::sync::Mutex::new(vec![None; jobs.len()]);
	std::thread::scope(|s| {
		for _ in 0..a.jobs.max(1) {
			s.spawn(|| loop {
				let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
				let Some(cfg) = jobs.get(i) else { break };
				let report = sim::run(cfg.clone());
				if i < main_runs {
					println!("{report}");
				} else {
					info!(
						rate = cfg.rate,
						viewers = cfg.viewers,
						node_mbps = report.node_mbps(),
						"plot point"
					);
				}
				results.lock().expect("no panic while held")[i] = Some(report);
			});
		}
	});
	let results: Vec<RunReport> =
		results.into_inner().expect("no panic while held").into_iter().flatten().collect();
	if let Some(path) = &a.plot {
		sim::plot::draw(path, &results)?;
		println!("plot written to {}", path.display());
	}
	println!("{} runs in {:.1} s wall", results.len(), wall.elapsed().as_secs_f64());
	Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
	let mut keys = OriginKeys::default();
	if let Some(k) = &a.origin_key {
		keys.default = Some(public_key(k)?);
	}
	for s in &a.stream_key {
		let (id, key) =
			s.split_once('=').ok_or_else(|| anyhow!("--stream-key wants STREAM=KEY"))?;
		keys.per_stream.insert(id.parse().context("stream id")?, public_key(key)?);
	}
	if keys.default.is_none() && keys.per_stream.is_empty() {
		warn!("no --origin-key or --stream-key: publishers will be refused");
	}
	if !(0.0..=1.0).contains(&a.rate) {
		bail!("--rate must be in [0, 1]");
	}
	let mut config = ServeConfig {
		tcp: addr_or_none(&a.tcp)?,
		quic: addr_or_none(&a.quic)?,
		capacity: CapacitySettings {
			max_streams: a.max_streams,
			streaming_rate: Perbill::from_parts((a.rate * 1e9).round() as u32),
		},
		max_connections: a.max_connections,
		max_p2p_sessions: a.max_p2p_sessions,
		write_stall_timeout: Duration::from_secs(a.write_stall_timeout_secs),
		streams: StreamTableConfig {
			max_streams: a.max_streams_held,
			max_waiting: a.max_waiting_streams,
			idle_timeout: Duration::from_secs(a.stream_idle_secs),
			ended_linger: Duration::from_secs(a.ended_linger_secs),
		},
		record_dir: a.record_dir,
		vod_dir: a.vod_dir,
		..Default::default()
	};
	config.window.max_segments = a.window.max(1);
	config.session.genesis_hash = hex32(&a.genesis, "genesis")?;
	config.session.origin_keys = Arc::new(keys);
	config.session.idle_timeout = Duration::from_secs(a.idle_timeout_secs);
	config.session.hello_timeout = Duration::from_secs(a.hello_timeout_secs);
	config.session.on_demand_lead = Duration::from_secs(a.vod_lead_secs);
	if let Some(seed) = &a.pass_seed {
		let signer = sp_core::sr25519::Pair::from_string(seed, None)
			.map_err(|e| anyhow!("bad --pass-seed: {e:?}"))?;
		let mut tracker = TrackerConfig::new(config.session.genesis_hash, a.epoch);
		tracker.max_units_per_pass = a.pass_max_units;
		tracker.max_streams = config.streams.max_streams;
		info!(signer = %hex::encode(signer.public().0), "p2p admission on: issuing viewer passes");
		if !a.p2p_listen.is_empty() {
			// The libp2p identity is derived from the pass key, so it is stable across restarts.
			let secret = sp_crypto_hashing::blake2_256(&codec::Encode::encode(&(
				b"dsp/p2p-identity".as_slice(),
				signer.to_raw_vec(),
			)));
			let signers = PassSigners { default: vec![signer.public()], ..Default::default() };
			let ledger = LedgerConfig::new(config.session.genesis_hash, signer.public().0, signers);
			let mut seed = P2pConfig::loopback(secret, ledger);
			seed.listen = a
				.p2p_listen
				.iter()
				.map(|m| m.parse().with_context(|| format!("bad --p2p-listen {m}")))
				.collect::<Result<_, _>>()?;
			seed.ledger_dir = a.ledger.clone();
			config.p2p_seed = Some(seed);
		}
		config.p2p = Some(PassSigning { signer, tracker });
	} else if !a.p2p_listen.is_empty() {
		bail!("--p2p-listen needs --pass-seed");
	}
	let server = RunningServer::start(config).await?;
	server.set_redirect(ServerAddr::group(&a.redirect).iter().map(ServerAddr::to_text).collect());
	if let Some(t) = server.tcp_addr {
		println!("tcp://{t}");
	}
	if let Some(q) = server.quic_addr {
		println!("quic://{q}");
	}
	println!("fingerprint {}", hex::encode(server.fingerprint));
	if let Some(node) = server.p2p_node() {
		for addr in &node.listen_addrs {
			println!("p2p {addr}/p2p/{}", node.peer_id);
		}
	}
	let mut tick = tokio::time::interval(Duration::from_secs(10));
	loop {
		tokio::select! {
			_ = tokio::signal::ctrl_c() => break,
			_ = tick.tick() => {
				let s = server.stats();
				info!(
					direct = s.admission.direct,
					p2p = s.admission.p2p,
					refused = s.admission.refused,
					connections = s.connections,
					closed_with_error = s.closed_with_error,
					segments_stored = s.segments_stored,
					streams_held = s.streams_held,
					streams_freed = s.streams_freed,
					vod_sessions = s.vod_sessions,
					mbytes_sent = s.bytes_sent / 1_000_000,
					"server stats"
				);
			},
		}
	}
	server.shutdown().await;
	Ok(())
}

async fn claim(a: ClaimArgs) -> anyhow::Result<()> {
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
		let seed = a.seeder_seed.as_deref().expect("clap: --submit requires --seeder-seed");
		let signer = sp_core::sr25519::Pair::from_string(seed, None)
			.map_err(|e| anyhow!("bad --seeder-seed: {e:?}"))?;
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
struct ClaimRecord {
	/// Unix time of inclusion, seconds.
	time: u64,
	/// Extrinsic hash.
	extrinsic: String,
	/// Items in the batch.
	items: usize,
	/// Units the receipts state (cumulative).
	receipt_units: u64,
	/// Units the chain paid for this batch (increase of what is claimed).
	paid_units: u64,
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

async fn credits(a: CreditsArgs) -> anyhow::Result<()> {
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

/// Signs media as segments, numbers them, records them if asked, and hands them to the
/// publisher: what the MPEG-TS and the HLS-directory inputs share.
struct Signer {
	pair: sp_core::sr25519::Pair,
	genesis: Hash32,
	stream: StreamId,
	chunk_size: u32,
	record: Option<PathBuf>,
	first: u64,
	next: u64,
}

impl Signer {
	fn push(&mut self, publisher: &Publisher, data: Bytes, duration_ms: u32) -> anyhow::Result<()> {
		let seq = self.next;
		if let Some(dir) = &self.record {
			std::fs::write(dir.join(format!("{seq}.ts")), &data)?;
		}
		let bytes = data.len();
		let seg = Segment::build(
			&self.pair,
			self.genesis,
			self.stream,
			seq,
			duration_ms,
			data,
			self.chunk_size,
		);
		info!(seq, bytes, duration_ms = seg.duration_ms(), "segment published");
		publisher.push(Arc::new(seg));
		self.next += 1;
		Ok(())
	}

	fn end(&self) -> Signed<StreamEnd> {
		let end =
			StreamEnd { genesis_hash: self.genesis, stream: self.stream, next_sequence: self.next };
		Signed::sign(end, &self.pair)
	}
}

async fn publish(a: PublishArgs) -> anyhow::Result<()> {
	let pair = sp_core::sr25519::Pair::from_string(&a.origin_seed, None)
		.map_err(|e| anyhow!("bad --origin-seed: {e:?}"))?;
	let genesis: Hash32 = hex32(&a.genesis, "genesis")?;
	let mut config = PublishConfig::new(a.stream, a.server.clone());
	config.genesis_hash = genesis;
	config.verification = verification(&a.quic_fingerprint)?;
	let publisher = Publisher::start(config)?;
	if let Some(dir) = &a.record {
		std::fs::create_dir_all(dir)?;
	}
	let first = match a.start_seq {
		StartSeq::At(n) => n,
		StartSeq::Auto => {
			let timeout = Duration::from_secs(a.resume_timeout_secs);
			let n = publisher.resume_point(timeout).await.ok_or_else(|| {
				anyhow!("no server said where to continue within {timeout:?}; pass --start-seq N")
			})?;
			info!(start_seq = n, "continuing where the servers are");
			n
		}
	};
	let mut signer = Signer {
		pair,
		genesis,
		stream: a.stream,
		chunk_size: a.chunk_size,
		record: a.record.clone(),
		first,
		next: first,
	};
	match &a.hls_dir {
		Some(dir) => follow_hls_dir(&a, dir, &publisher, &mut signer).await?,
		None => read_ts(&a, &publisher, &mut signer).await?,
	}
	info!(segments = signer.next - signer.first, "input ended");
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

/// MPEG-TS from stdin or a file, cut at key frames.
async fn read_ts(
	a: &PublishArgs,
	publisher: &Publisher,
	signer: &mut Signer,
) -> anyhow::Result<()> {
	let mut input: Box<dyn tokio::io::AsyncRead + Unpin> = if a.input == "-" {
		Box::new(tokio::io::stdin())
	} else {
		Box::new(tokio::fs::File::open(&a.input).await.with_context(|| a.input.clone())?)
	};
	let mut segmenter = TsSegmenter::new(TsConfig {
		target_duration_ms: a.target_duration_ms,
		..Default::default()
	});
	let mut buf = vec![0u8; 64 * 1024];
	let mut eof = false;
	while !eof {
		let n = input.read(&mut buf).await?;
		if n == 0 {
			segmenter.finish();
			eof = true;
		} else {
			segmenter.push(&buf[..n]);
		}
		while let Some(ts) = segmenter.poll_segment() {
			if ts.forced {
				warn!(
					seq = signer.next,
					bytes = ts.data.len(),
					"segment cut without a key frame (max size)"
				);
			}
			signer.push(publisher, ts.data, ts.duration_ms)?;
		}
	}
	let stats = segmenter.stats();
	info!(packets = stats.packets, resync_bytes = stats.resync_bytes, "MPEG-TS input ended");
	Ok(())
}

/// The playlist to follow in `dir`: `name`, or the only `*.m3u8` file there (`None` while there
/// is none yet).
fn find_playlist(dir: &std::path::Path, name: &Option<String>) -> anyhow::Result<Option<PathBuf>> {
	if let Some(n) = name {
		let p = dir.join(n);
		return Ok(p.exists().then_some(p));
	}
	let mut found = Vec::new();
	for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
		let p = e?.path();
		if p.extension().is_some_and(|x| x == "m3u8") {
			found.push(p);
		}
	}
	match found.len() {
		0 | 1 => Ok(found.pop()),
		_ => bail!("several playlists in {}: choose one with --hls-playlist", dir.display()),
	}
}

/// Reads at most `max` bytes of `path`; `None` if it is longer.
async fn read_capped(path: &std::path::Path, max: usize) -> std::io::Result<Option<Vec<u8>>> {
	let file = tokio::fs::File::open(path).await?;
	let mut data = Vec::new();
	file.take(max as u64 + 1).read_to_end(&mut data).await?;
	Ok((data.len() <= max).then_some(data))
}

/// Follows an HLS muxer's directory until its playlist ends.
async fn follow_hls_dir(
	a: &PublishArgs,
	dir: &std::path::Path,
	publisher: &Publisher,
	signer: &mut Signer,
) -> anyhow::Result<()> {
	use dsp_streaming::{
		hls_ingest::{HlsFollower, MAX_PLAYLIST_BYTES},
		segment::DEFAULT_MAX_SEGMENT_LEN,
	};
	let mut follower = HlsFollower::new();
	let mut tick = tokio::time::interval(Duration::from_millis(a.hls_poll_ms.max(1)));
	tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
	let mut playlist = None;
	let mut missing = 0u64;
	let mut waiting_logged = false;
	while !follower.is_ended() {
		tick.tick().await;
		if playlist.is_none() {
			playlist = find_playlist(dir, &a.hls_playlist)?;
			if playlist.is_none() {
				if !waiting_logged {
					info!(dir = %dir.display(), "waiting for the HLS playlist to appear");
					waiting_logged = true;
				}
				continue;
			}
		}
		let path = playlist.as_ref().expect("set above; qed");
		let text = match read_capped(path, MAX_PLAYLIST_BYTES).await {
			Ok(Some(t)) => String::from_utf8_lossy(&t).into_owned(),
			Ok(None) => {
				bail!("{}: playlist longer than {MAX_PLAYLIST_BYTES} bytes", path.display())
			}
			Err(e) => {
				warn!(path = %path.display(), error = %e, "could not read the playlist; will retry");
				continue;
			}
		};
		if let Err(e) = follower.handle_playlist(&text) {
			warn!(path = %path.display(), error = %e, "playlist not usable; will read it again");
			continue;
		}
		while let Some(entry) = follower.poll_entry() {
			let file = dir.join(&entry.uri);
			match read_capped(&file, DEFAULT_MAX_SEGMENT_LEN as usize).await {
				Ok(Some(data)) if !data.is_empty() => {
					signer.push(publisher, Bytes::from(data), entry.duration_ms)?
				}
				Ok(_) => {
					missing += 1;
					warn!(file = %file.display(), missing, "segment empty or above the segment size limit; skipped");
				}
				Err(e) => {
					// Deleted (delete_segments) before we got to it.
					missing += 1;
					warn!(file = %file.display(), error = %e, missing, "segment listed but not readable; skipped");
				}
			}
		}
	}
	let stats = follower.stats();
	info!(
		playlists = stats.playlists,
		segments = stats.entries,
		missed = stats.missed + missing,
		"HLS playlist ended"
	);
	Ok(())
}

async fn watch(mut a: WatchArgs) -> anyhow::Result<()> {
	let (origin_key, genesis_hash) = match &a.origin_key {
		Some(key) if !a.server.is_empty() => (public_key(key)?, hex32(&a.genesis, "genesis")?),
		_ => {
			let client = ChainClient::new(&a.chain)?;
			let found = discovery::discover(&client, a.stream).await.with_context(|| {
				format!("finding stream {} on the chain at {}", a.stream, a.chain)
			})?;
			let best = &found.streamers[0];
			info!(
				streamer = %best.streamer.account,
				rtt = ?best.rtt,
				direct_sessions = ?best.direct_sessions,
				p2p_threshold = best.streamer.p2p_threshold,
				candidates = found.streamers.len(),
				"streamers found in the chain's registry; starting with the best"
			);
			// Every reachable streamer, best first: the viewer fails over down the list.
			a.server = found
				.streamers
				.iter()
				.flat_map(|c| {
					[
						c.tcp.map(|addr| Endpoint { transport: Transport::Tcp, addr }),
						c.quic.map(|addr| Endpoint { transport: Transport::Quic, addr }),
					]
				})
				.flatten()
				.collect();
			(found.origin_key, found.genesis_hash)
		}
	};
	let mut core = ViewerConfig::new(a.stream, origin_key);
	core.genesis_hash = genesis_hash;
	core.start = match a.from {
		Some(n) => Start::At(n),
		None => Start::Live { back: a.live_back },
	};
	core.controller.policy = match a.transport {
		TransportArg::Auto => TransportPolicy::Auto,
		TransportArg::Tcp => TransportPolicy::Only(Transport::Tcp),
		TransportArg::Udp => TransportPolicy::Only(Transport::Quic),
	};
	let mut config = WatchConfig::new(core);
	config.servers = ServerAddr::group(&a.server);
	config.verification = verification(&a.quic_fingerprint)?;
	if config.verification == ServerVerification::InsecureSkip
		&& config.servers.iter().any(|s| s.quic.is_some())
	{
		warn!("no --quic-fingerprint: the QUIC server certificate is not checked (segments still are)");
	}
	config.gateway = Some(a.gateway);
	config.playlist_segments = a.playlist_segments;
	config.record_dir = a.record.clone();
	config.status_interval =
		(a.status_interval_secs > 0).then(|| Duration::from_secs(a.status_interval_secs));
	if a.p2p {
		match watch_p2p(&a, &config).await {
			Err(e) if matches!(e.downcast_ref(), Some(P2pWatchError::Direct)) => {
				info!("admitted in direct mode: watching directly");
			}
			other => return other,
		}
	}
	let handle = watch::start(config, None).await?;
	if let Some(url) = &handle.gateway_url {
		println!("{url}");
	}
	// The viewer runs (and keeps the gateway up after the stream ends) until interrupted.
	tokio::signal::ctrl_c().await?;
	let stats = handle.stop().await;
	info!(?stats, "stopped");
	Ok(())
}

/// Redirects `dsp watch --p2p` follows before giving up: enough to pass a few full streamers,
/// few enough that two servers naming each other cannot keep it busy.
const MAX_P2P_REDIRECT_HOPS: u32 = 4;

/// The first redirect target with an address for `transport` that resolves.
async fn redirect_target(
	servers: &[ServerAddrs],
	transport: Transport,
) -> anyhow::Result<Endpoint> {
	for s in servers {
		let Some(text) = s.get(transport) else { continue };
		match tokio::net::lookup_host(text).await.map(|mut a| a.next()) {
			Ok(Some(addr)) => return Ok(Endpoint { transport, addr }),
			Ok(None) | Err(_) => warn!(target = text, "redirect target does not resolve; skipped"),
		}
	}
	bail!("server full; no redirect target reachable over {transport}")
}

/// `dsp watch --p2p` when the server admits the viewer in P2P mode; `P2pWatchError::Direct`
/// when it admits it directly.
async fn watch_p2p(a: &WatchArgs, direct: &WatchConfig) -> anyhow::Result<()> {
	let server = a
		.server
		.iter()
		.find(|s| match a.transport {
			TransportArg::Udp => s.transport == Transport::Quic,
			TransportArg::Tcp => s.transport == Transport::Tcp,
			TransportArg::Auto => true,
		})
		.copied()
		.ok_or_else(|| anyhow!("no --server for the chosen transport"))?;
	if a.pass_signer.is_empty() {
		bail!("--p2p needs --pass-signer (the stream's authorised pass signers)");
	}
	let viewer = match &a.viewer_seed {
		Some(seed) => sp_core::sr25519::Pair::from_string(seed, None)
			.map_err(|e| anyhow!("bad --viewer-seed: {e:?}"))?,
		None => sp_core::sr25519::Pair::generate().0,
	};
	let signers = PassSigners {
		default: a.pass_signer.iter().map(|k| public_key(k)).collect::<Result<_, _>>()?,
		..Default::default()
	};
	let genesis = direct.core.genesis_hash;
	let ledger = LedgerConfig::new(genesis, viewer.public().0, signers);
	// The libp2p identity follows from the viewer key, like the seed's from the pass key.
	let secret = sp_crypto_hashing::blake2_256(&codec::Encode::encode(&(
		b"dsp/p2p-identity".as_slice(),
		viewer.to_raw_vec(),
	)));
	let mut p2p = P2pConfig::loopback(secret, ledger);
	if !a.p2p_listen.is_empty() {
		p2p.listen = a
			.p2p_listen
			.iter()
			.map(|m| m.parse().with_context(|| format!("bad --p2p-listen {m}")))
			.collect::<Result<_, _>>()?;
	}
	p2p.upload =
		Some(UploadConfig { bytes_per_sec: a.upload_kbps * 1000 / 8, ..UploadConfig::default() });
	// A full server may name other streamers: follow its redirect, a few hops at most.
	let mut server = server;
	let mut hops = 0;
	let handle = loop {
		let mut config = P2pWatchConfig::new(
			genesis,
			a.stream,
			direct.core.origin,
			server,
			viewer.clone(),
			p2p.clone(),
		);
		config.verification = direct.verification;
		config.gateway = Some(a.gateway);
		config.playlist_segments = a.playlist_segments;
		match p2p_watch::start(config, None).await {
			Err(P2pWatchError::Redirected(servers)) if hops < MAX_P2P_REDIRECT_HOPS => {
				hops += 1;
				let next = redirect_target(&servers, server.transport).await?;
				info!(from = %server, to = %next, hops, "server full; following its redirect");
				server = next;
			}
			r => break r?,
		}
	};
	println!("p2p {}", handle.peer_id);
	if let Some(url) = &handle.gateway_url {
		println!("{url}");
	}
	let mut status = tokio::time::interval(Duration::from_secs(a.status_interval_secs.max(1)));
	loop {
		tokio::select! {
			_ = tokio::signal::ctrl_c() => break,
			_ = status.tick(), if a.status_interval_secs > 0 => {
				let s = handle.stats();
				eprintln!(
					"[dsp watch p2p] segments={} neighbours={} from_peers={}B from_node={}B served={}B stalls={} long_stalls={} bans={}",
					s.buffer.delivered,
					s.neighbours,
					s.scheduler.bytes_from_peers,
					s.scheduler.bytes_from_node,
					s.served.bytes_served,
					s.play.stalls,
					s.long_stalls,
					s.scheduler.banned,
				);
			},
		}
	}
	let stats = handle.stop().await?;
	info!(?stats, "stopped");
	Ok(())
}

async fn load(a: LoadArgs) -> anyhow::Result<()> {
	if a.p2p {
		return load_p2p(a).await;
	}
	use dsp_streaming::net::load::{self, LoadCounters};
	use std::sync::atomic::Ordering;
	let pair = sp_core::sr25519::Pair::from_string(&a.origin_seed, None)
		.map_err(|e| anyhow!("bad --origin-seed: {e:?}"))?;
	let key = hex::encode(pair.public().0);
	let (mut child, tcp, server, server_pid) = match (a.target_tcp, a.target_quic, a.target_pid) {
		(Some(tcp), Some(quic), Some(pid)) => {
			let tcp = Endpoint { transport: Transport::Tcp, addr: tcp };
			let quic = Endpoint { transport: Transport::Quic, addr: quic };
			let server = if matches!(a.transport, TransportArg::Udp) { quic } else { tcp };
			(None, tcp, server, pid)
		}
		_ => {
			let (child, tcp, server) = spawn_server(&a, &key, &[])?;
			let pid = child.id();
			(Some(child), tcp, server, pid)
		}
	};
	let chunk_size = a.chunk_kib.unwrap_or(DEFAULT_CHUNK_SIZE / 1024) * 1024;
	let config = Arc::new(load_config(&a, tcp, server, chunk_size)?);
	let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
	let feeder = {
		let config = config.clone();
		let stop = stop_rx.clone();
		tokio::spawn(async move { load::feed(&config, pair, stop).await })
	};
	let counters = Arc::new(LoadCounters::default());
	let quic_clients = match server.transport {
		Transport::Quic => load::quic_clients(a.viewers, 100)?,
		Transport::Tcp => Vec::new(),
	};
	let ramp_start = std::time::Instant::now();
	let mut tasks = Vec::with_capacity(a.viewers);
	let pause = Duration::from_secs_f64(1.0 / config.connect_rate as f64);
	for i in 0..a.viewers {
		let q = quic_clients.get(i / 100).cloned();
		tasks.push(tokio::spawn(load::viewer(
			config.clone(),
			q,
			counters.clone(),
			stop_rx.clone(),
		)));
		tokio::time::sleep(pause).await;
	}
	while (counters.connected.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed))
		< a.viewers as u64
	{
		if ramp_start.elapsed() > Duration::from_secs(120) {
			warn!("not every viewer connected within 120 s");
			break;
		}
		tokio::time::sleep(Duration::from_millis(100)).await;
	}
	// One segment interval so every session has started receiving.
	tokio::time::sleep(Duration::from_millis(a.segment_ms as u64)).await;
	let m = measure(&counters, config.duration, || load::sample_process(server_pid)).await;
	let _ = stop_tx.send(true);
	for t in tasks {
		let _ = t.await;
	}
	let _ = feeder.await;
	if let Some(child) = child.as_mut() {
		let _ = child.kill();
		let _ = child.wait();
	}
	let name = match server.transport {
		Transport::Tcp => "dsp-tcp",
		Transport::Quic => "dsp-quic",
	};
	let dsp = report(name, &a, &m);
	if a.compare_nginx {
		let nginx = nginx_load(&a).await?;
		if nginx > 0.0 {
			println!("ratio_dsp_to_nginx_gbit_per_cpu_sec={:.2}", dsp / nginx);
		}
	}
	Ok(())
}

/// The load run's settings from the command line: stream 1, published over `tcp`, watched at
/// `server`.
fn load_config(
	a: &LoadArgs,
	tcp: Endpoint,
	server: Endpoint,
	chunk_size: u32,
) -> anyhow::Result<dsp_streaming::net::load::LoadConfig> {
	Ok(dsp_streaming::net::load::LoadConfig {
		server,
		publish_to: tcp,
		genesis_hash: hex32(&a.genesis, "genesis")?,
		stream: a.stream,
		viewers: a.viewers,
		bitrate_kbps: a.bitrate_kbps,
		segment_ms: a.segment_ms,
		duration: Duration::from_secs(a.duration_secs),
		connect_rate: a.connect_rate.max(1),
		stall_after: Duration::from_millis(a.segment_ms as u64 * 3 / 2),
		chunk_size,
	})
}

/// Starts the `dsp serve` child of a load run (loopback, capacity for every viewer, a window of
/// 10 segments, `extra` arguments); returns it with its TCP endpoint and the viewers' endpoint.
fn spawn_server(
	a: &LoadArgs,
	origin_key: &str,
	extra: &[&str],
) -> anyhow::Result<(std::process::Child, Endpoint, Endpoint)> {
	use std::{
		io::BufRead,
		process::{Command as Proc, Stdio},
	};
	let capacity = (a.viewers + 64).to_string();
	let mut child = Proc::new(std::env::current_exe()?)
		.args(["serve", "--tcp", "127.0.0.1:0", "--quic", "127.0.0.1:0"])
		.args(["--origin-key", origin_key])
		.args(["--max-streams", &capacity, "--max-connections", &capacity, "--window", "10"])
		.args(extra)
		.env("RUST_LOG", "warn")
		.stdout(Stdio::piped())
		.spawn()
		.context("starting dsp serve")?;
	let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped; qed")).lines();
	let mut next = || -> anyhow::Result<String> {
		lines.next().ok_or_else(|| anyhow!("dsp serve exited"))?.map_err(Into::into)
	};
	let tcp: Endpoint = next()?.parse().map_err(|e: String| anyhow!(e))?;
	let quic: Endpoint = next()?.parse().map_err(|e: String| anyhow!(e))?;
	let server = match a.transport {
		TransportArg::Udp => quic,
		_ => tcp,
	};
	// Keep reading what it prints: a closed pipe would kill it at its next line (SIGPIPE).
	std::thread::spawn(move || lines.for_each(drop));
	Ok((child, tcp, server))
}

/// `dsp load --p2p`: see [`LoadArgs::p2p`].
async fn load_p2p(a: LoadArgs) -> anyhow::Result<()> {
	use dsp_streaming::net::load::{self, P2pTotals};
	use std::process::{Command as Proc, Stdio};
	if !(0.0..1.0).contains(&a.kill_seeders) {
		bail!("--kill-seeders must be in [0, 1)");
	}
	let origin = sp_core::sr25519::Pair::from_string("//LoadOrigin", None)
		.map_err(|e| anyhow!("seed: {e:?}"))?;
	let signer_seed = "//LoadPassSigner";
	let signer = sp_core::sr25519::Pair::from_string(signer_seed, None)
		.map_err(|e| anyhow!("seed: {e:?}"))?
		.public();
	let exe = std::env::current_exe()?;
	let key = hex::encode(origin.public().0);
	let (mut child, tcp, server) =
		spawn_server(&a, &key, &["--rate", "1", "--pass-seed", signer_seed])?;
	let server_pid = child.id();
	let chunk_kib = a.chunk_kib.unwrap_or(16);
	let config = Arc::new(load_config(&a, tcp, server, chunk_kib * 1024)?);
	let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
	let feeder = {
		let config = config.clone();
		let origin = origin.clone();
		tokio::spawn(async move { load::feed(&config, origin, stop_rx).await })
	};
	// A backlog for the first viewers to start from.
	tokio::time::sleep(Duration::from_millis(a.segment_ms as u64 * 4)).await;
	let signers = PassSigners { default: vec![signer], ..Default::default() };
	let pause = Duration::from_secs_f64(1.0 / config.connect_rate as f64);
	let spawn_watch = |seed: &str| {
		Proc::new(&exe)
			.args(["watch", "--stream", "1", "--server", &server.to_string()])
			.args(["--origin-key", &hex::encode(origin.public().0)])
			.args(["--p2p", "--pass-signer", &hex::encode(signer.0), "--viewer-seed", seed])
			.args(["--status-interval-secs", "0", "--p2p-listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
			.env("RUST_LOG", "warn")
			.stdout(Stdio::null())
			.spawn()
			.context("starting dsp watch --p2p")
	};
	// The viewers to kill are `dsp watch --p2p` processes, killed with SIGKILL like a crashed
	// device (no goodbye on any connection). They join first: every later viewer can be told
	// of them, so they are the most used seeders.
	let kill = ((a.viewers as f64) * a.kill_seeders).round() as usize;
	let mut victims = Vec::with_capacity(kill);
	for i in 0..kill {
		victims.push(spawn_watch(&format!("//LoadKill{i}"))?);
		tokio::time::sleep(pause).await;
	}
	if kill > 0 {
		// Process start and join.
		tokio::time::sleep(Duration::from_secs(1)).await;
	}
	let mut viewers = Vec::with_capacity(a.viewers - kill);
	for i in kill..a.viewers {
		let viewer = sp_core::sr25519::Pair::from_string(&format!("//LoadViewer{i}"), None)
			.map_err(|e| anyhow!("seed: {e:?}"))?;
		let secret = sp_crypto_hashing::blake2_256(&codec::Encode::encode(&(
			b"dsp/p2p-identity".as_slice(),
			viewer.to_raw_vec(),
		)));
		let ledger = LedgerConfig::new([0; 32], viewer.public().0, signers.clone());
		let mut p2p = P2pConfig::loopback(secret, ledger);
		// One transport per viewer keeps the file descriptors and tasks down.
		p2p.listen.truncate(1);
		let mut c = P2pWatchConfig::new([0; 32], 1, origin.public(), server, viewer, p2p);
		c.gateway = None;
		match p2p_watch::start(c, None).await {
			Ok(h) => viewers.push(Some(h)),
			Err(e) => warn!(viewer = i, error = %e, "p2p viewer failed to start"),
		}
		tokio::time::sleep(pause).await;
	}
	let joined = viewers.len();
	// One more `dsp watch --p2p` child in the same swarm: a real viewer process to measure.
	let mut watch_child = spawn_watch("//LoadWatch")?;
	let watch_pid = watch_child.id();
	let totals = |v: &[Option<dsp_streaming::net::p2p_watch::P2pWatchHandle>]| {
		let stats: Vec<_> = v.iter().flatten().map(|h| h.stats()).collect();
		P2pTotals::of(stats.iter())
	};
	// Warm-up: startup and the first announcements.
	tokio::time::sleep(Duration::from_millis(a.segment_ms as u64 * 4)).await;
	let me = std::process::id();
	let sample = |pid| load::sample_process(pid).unwrap_or_default();
	let (s0, w0, c0, t0, at0) =
		(sample(server_pid), sample(watch_pid), sample(me), totals(&viewers), Instant::now());
	let phase = if kill > 0 { a.duration_secs / 2 } else { a.duration_secs };
	tokio::time::sleep(Duration::from_secs(phase.max(1))).await;
	let (s1, w1, c1, t1, at1) =
		(sample(server_pid), sample(watch_pid), sample(me), totals(&viewers), Instant::now());
	let secs = (at1 - at0).as_secs_f64();
	println!(
		"[dsp-p2p] viewers={} ({joined} in process, {kill} `dsp watch --p2p` processes to kill, 1 measured process) bitrate_kbps={} segment_ms={} chunk_kib={chunk_kib} transport={}",
		joined + kill + 1, a.bitrate_kbps, a.segment_ms, server.transport
	);
	let line = |name: &str, t_a: &P2pTotals, t_b: &P2pTotals, secs: f64| {
		let mbps = |b: u64| b as f64 * 8.0 / 1e6 / secs;
		println!(
			"[dsp-p2p] {name}: secs={secs:.1} viewers={} p2p_share={:.1}% node_egress_mbps={:.2} delivered_mbps={:.2} segments={} neighbours_avg={:.1}",
			t_b.viewers,
			t_b.p2p_share_since(t_a),
			mbps(t_b.server_bytes.saturating_sub(t_a.server_bytes)),
			mbps(
				(t_b.from_node + t_b.from_peers)
					.saturating_sub(t_a.from_node + t_a.from_peers)
			),
			t_b.segments.saturating_sub(t_a.segments),
			t_b.neighbours as f64 / t_b.viewers.max(1) as f64,
		);
	};
	line(if kill > 0 { "before_kill" } else { "steady" }, &t0, &t1, secs);
	println!(
		"[dsp-p2p] server cpu_secs={:.2} ({:.2} cores) rss_mib={:.1}; load process ({} viewers) cpu={:.2} cores",
		s1.cpu_secs - s0.cpu_secs,
		(s1.cpu_secs - s0.cpu_secs) / secs,
		s1.rss as f64 / 1048576.0,
		joined,
		(c1.cpu_secs - c0.cpu_secs) / secs,
	);
	println!(
		"[dsp-p2p] one `dsp watch --p2p` process: rss_mib={:.1} peak_rss_mib={:.1} cpu={:.3} cores",
		w1.rss as f64 / 1048576.0,
		w1.peak_rss as f64 / 1048576.0,
		(w1.cpu_secs - w0.cpu_secs) / secs,
	);
	if kill > 0 {
		for v in &mut victims {
			// SIGKILL.
			let _ = v.kill();
			let _ = v.wait();
		}
		println!(
			"[dsp-p2p] killed {kill} of {} viewers with SIGKILL (--kill-seeders {})",
			joined + kill + 1,
			a.kill_seeders
		);
		tokio::time::sleep(Duration::from_secs(a.recover_secs)).await;
		let (t2, at2) = (totals(&viewers), Instant::now());
		tokio::time::sleep(Duration::from_secs(phase.max(1))).await;
		let (t3, at3) = (totals(&viewers), Instant::now());
		line("after_recovery", &t2, &t3, (at3 - at2).as_secs_f64());
		println!(
			"[dsp-p2p] in-process viewers from the kill to the end: stalls={} stalls_longer_than_a_segment={}",
			t3.stalls.saturating_sub(t1.stalls),
			t3.long_stalls.saturating_sub(t1.long_stalls),
		);
	}
	let end = totals(&viewers);
	println!(
		"[dsp-p2p] in-process viewers, whole run: stalls={} stalls_longer_than_a_segment={} longest_stall_ms={} bad_chunks={} segments={}",
		end.stalls, end.long_stalls, end.longest_stall_ms, end.bad_chunks, end.segments
	);
	let _ = stop_tx.send(true);
	let ended = futures::future::join_all(viewers.into_iter().flatten().map(|h| h.stop())).await;
	let failed: Vec<String> =
		ended.into_iter().filter_map(|r| r.err()).map(|e| e.to_string()).collect();
	println!("[dsp-p2p] in-process viewers that failed before the end: {}", failed.len());
	for e in failed.iter().take(5) {
		println!("[dsp-p2p]   {e}");
	}
	let _ = feeder.await;
	let _ = watch_child.kill();
	let _ = watch_child.wait();
	let _ = child.kill();
	let _ = child.wait();
	Ok(())
}

/// What one measured window saw.
struct Measured {
	elapsed: f64,
	bytes: u64,
	stalls: u64,
	segments: u64,
	connected: u64,
	failed: u64,
	dropped: u64,
	cpu_secs: f64,
	client_cpu_secs: f64,
	rss: u64,
	peak_rss: u64,
}

async fn measure(
	counters: &dsp_streaming::net::load::LoadCounters,
	duration: Duration,
	sample: impl Fn() -> Option<dsp_streaming::net::load::ProcSample>,
) -> Measured {
	use std::sync::atomic::Ordering;
	let s0 = sample().unwrap_or_default();
	let me = std::process::id();
	let c0 = dsp_streaming::net::load::sample_process(me).unwrap_or_default();
	let (b0, st0, seg0) = (
		counters.bytes.load(Ordering::Relaxed),
		counters.stalls.load(Ordering::Relaxed),
		counters.segments.load(Ordering::Relaxed),
	);
	let t0 = std::time::Instant::now();
	let mut peak_rss = s0.rss;
	while t0.elapsed() < duration {
		tokio::time::sleep(Duration::from_secs(1)).await;
		if let Some(s) = sample() {
			peak_rss = peak_rss.max(s.rss);
		}
	}
	let s1 = sample().unwrap_or_default();
	let c1 = dsp_streaming::net::load::sample_process(me).unwrap_or_default();
	Measured {
		elapsed: t0.elapsed().as_secs_f64(),
		bytes: counters.bytes.load(Ordering::Relaxed) - b0,
		stalls: counters.stalls.load(Ordering::Relaxed) - st0,
		segments: counters.segments.load(Ordering::Relaxed) - seg0,
		connected: counters.connected.load(Ordering::Relaxed),
		failed: counters.failed.load(Ordering::Relaxed),
		dropped: counters.dropped.load(Ordering::Relaxed),
		cpu_secs: s1.cpu_secs - s0.cpu_secs,
		client_cpu_secs: c1.cpu_secs - c0.cpu_secs,
		rss: s1.rss,
		peak_rss: peak_rss.max(s1.peak_rss),
	}
}

/// Prints a report; returns Gbit per server CPU-second.
fn report(name: &str, a: &LoadArgs, m: &Measured) -> f64 {
	let gbit = m.bytes as f64 * 8.0 / 1e9;
	let per_cpu = if m.cpu_secs > 0.0 { gbit / m.cpu_secs } else { 0.0 };
	println!(
		"[{name}] viewers={} bitrate_kbps={} window_secs={:.1}",
		a.viewers, a.bitrate_kbps, m.elapsed
	);
	println!(
		"[{name}] sessions_held={} failed={} dropped={} stalls={} segments_received={}",
		m.connected.saturating_sub(m.dropped),
		m.failed,
		m.dropped,
		m.stalls,
		m.segments
	);
	println!(
		"[{name}] goodput_gbps={:.3} expected_gbps={:.3}",
		gbit / m.elapsed,
		a.viewers as f64 * a.bitrate_kbps as f64 / 1e6
	);
	println!(
		"[{name}] server_cpu_secs={:.2} server_cores={:.2} gbit_per_cpu_sec={per_cpu:.3}",
		m.cpu_secs,
		m.cpu_secs / m.elapsed
	);
	println!(
		"[{name}] server_rss_mib={:.1} server_peak_rss_mib={:.1} load_client_cores={:.2}",
		m.rss as f64 / 1048576.0,
		m.peak_rss as f64 / 1048576.0,
		m.client_cpu_secs / m.elapsed
	);
	per_cpu
}

/// nginx serving segments of the same size to the same number of HLS-style clients.
async fn nginx_load(a: &LoadArgs) -> anyhow::Result<f64> {
	use dsp_streaming::net::load::{self, LoadCounters};
	use std::process::{Command as Proc, Stdio};
	let dir = std::env::temp_dir().join(format!("dsp-nginx-{}", std::process::id()));
	let www = dir.join("www/seg");
	std::fs::create_dir_all(&www)?;
	std::fs::create_dir_all(dir.join("tmp"))?;
	let len = (a.bitrate_kbps as u64 * a.segment_ms as u64 / 8) as usize;
	let count = 10;
	for i in 0..count {
		let data: Vec<u8> = (0..len).map(|j| (j as u64 * 31 + i as u64) as u8).collect();
		std::fs::write(www.join(format!("{i}.ts")), data)?;
	}
	// nginx workers may run as another user: make the tree readable.
	for p in [dir.clone(), dir.join("www"), www.clone()] {
		use std::os::unix::fs::PermissionsExt;
		std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
	}
	let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
	let d = dir.display();
	let conf = format!(
		"worker_processes auto;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
		 events {{ worker_connections {}; }}\n\
		 http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000; \
		 keepalive_timeout 120s; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; \
		 fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp; \
		 server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
		a.viewers + 64
	);
	let conf_path = dir.join("nginx.conf");
	std::fs::write(&conf_path, conf)?;
	let mut child = Proc::new("nginx")
		.arg("-p")
		.arg(&dir)
		.arg("-c")
		.arg(&conf_path)
		.args(["-g", "daemon off;"])
		.stderr(Stdio::null())
		.spawn()
		.context("starting nginx")?;
	let master = child.id();
	let addr: SocketAddr = ([127, 0, 0, 1], port).into();
	let started = std::time::Instant::now();
	while tokio::net::TcpStream::connect(addr).await.is_err() {
		if started.elapsed() > Duration::from_secs(10) {
			let _ = child.kill();
			bail!("nginx did not start (see {d}/error.log)");
		}
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
	let counters = Arc::new(LoadCounters::default());
	let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
	let mut tasks = Vec::new();
	let pause = Duration::from_secs_f64(1.0 / a.connect_rate.max(1) as f64);
	for i in 0..a.viewers {
		let phase = Duration::from_millis(a.segment_ms as u64 * i as u64 / a.viewers.max(1) as u64);
		tasks.push(tokio::spawn(load::http_viewer(
			addr,
			count,
			a.segment_ms,
			phase,
			counters.clone(),
			stop_rx.clone(),
		)));
		tokio::time::sleep(pause).await;
	}
	tokio::time::sleep(Duration::from_millis(a.segment_ms as u64 * 2)).await;
	let m = measure(&counters, Duration::from_secs(a.duration_secs), || {
		load::sample_process_tree(master)
	})
	.await;
	let _ = stop_tx.send(true);
	for t in tasks {
		let _ = t.await;
	}
	let _ = Proc::new("nginx")
		.arg("-p")
		.arg(&dir)
		.arg("-c")
		.arg(&conf_path)
		.args(["-s", "stop"])
		.stderr(Stdio::null())
		.status();
	let _ = child.wait();
	let _ = std::fs::remove_dir_all(&dir);
	Ok(report("nginx", a, &m))
}

/// Runs `f` repeatedly for `time`; returns operations per second.
fn rate(time: Duration, mut f: impl FnMut()) -> f64 {
	let start = std::time::Instant::now();
	let mut n = 0u64;
	while start.elapsed() < time {
		for _ in 0..16 {
			f();
		}
		n += 16;
	}
	n as f64 / start.elapsed().as_secs_f64()
}

fn bench(time: Duration) {
	use dsp_streaming::{
		protocol::{decode_body, encode_frame, Chunk, Message, LENGTH_PREFIX},
		segment::{verify_header, SegmentLimits},
	};
	use std::hint::black_box;
	let pair = sp_core::sr25519::Pair::from_string("//Bench", None).expect("valid seed; qed");
	let chunk = Bytes::from(vec![7u8; DEFAULT_CHUNK_SIZE as usize]);
	let msg = Message::Chunk(Chunk { stream: 1, sequence: 2, index: 0, data: chunk.clone() });
	let frame = encode_frame(&msg);
	let body = frame.slice(LENGTH_PREFIX..);
	let mib = DEFAULT_CHUNK_SIZE as f64 / 1048576.0;

	let r = rate(time, || {
		black_box(encode_frame(black_box(&msg)));
	});
	println!("frame_encode_64k: {r:.0}/s ({:.0} MiB/s)", r * mib);
	let r = rate(time, || {
		black_box(decode_body(black_box(body.clone())).ok());
	});
	println!("frame_decode_64k (zero copy): {r:.0}/s ({:.0} MiB/s)", r * mib);
	let hash = sp_crypto_hashing::blake2_256(&chunk);
	let r = rate(time, || {
		black_box(sp_crypto_hashing::blake2_256(black_box(&chunk)) == hash);
	});
	println!("chunk_hash_verify_64k: {r:.0}/s ({:.0} MiB/s)", r * mib);
	// A 2 s segment at 500 kbit/s: 125 000 bytes, two chunks.
	let seg = Segment::build(
		&pair,
		[0; 32],
		1,
		0,
		2000,
		Bytes::from(vec![1u8; 125_000]),
		DEFAULT_CHUNK_SIZE,
	);
	let limits = SegmentLimits::default();
	let public = pair.public();
	let r = rate(time, || {
		black_box(verify_header(black_box(&seg.header), &[0; 32], 1, &public, &limits).is_ok());
	});
	println!("header_signature_verify: {r:.0}/s");
	let data = Bytes::from(vec![1u8; 125_000]);
	let r = rate(time, || {
		black_box(Segment::build(&pair, [0; 32], 1, 0, 2000, data.clone(), DEFAULT_CHUNK_SIZE));
	});
	println!("segment_build_and_sign_125k: {r:.0}/s");
}
