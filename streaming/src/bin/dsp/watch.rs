//! `dsp watch`: a viewer with transport switching and a local HLS gateway, its streamers given
//! with `--server` or found on the chain; with `--p2p`, a P2P viewer when the server admits it
//! in P2P mode.

use crate::{
	args::{hex32, pair_from_secret, public_key, verification, TransportArg},
	watch_stats::{now_unix_ms, write_p2p, DirectStats},
};
use anyhow::{anyhow, bail, Context};
use dsp_primitives::StreamId;
use dsp_streaming::{
	chain::{client::ChainClient, discovery},
	net::{
		p2p::P2pConfig,
		p2p_watch::{self, P2pWatchConfig, P2pWatchError},
		tls::ServerVerification,
		watch::{self, ServerAddr, WatchConfig},
		Endpoint,
	},
	p2p::{
		p2p_identity_seed,
		receipts::{LedgerConfig, PassSigners},
		upload::UploadConfig,
	},
	protocol::{ServerAddrs, Start},
	viewer::{Transport, TransportPolicy, ViewerConfig},
};
use sp_core::Pair;
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tracing::{info, warn};

#[derive(clap::Args)]
pub struct Args {
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
	/// Also write every segment played to `<dir>/<stream>/<broadcast>/<sequence>.ts` (direct and
	/// P2P mode; one directory per broadcast, so a restarted stream never overwrites the
	/// earlier one). Each file is fsynced before its rename. Nothing is deleted: the recording
	/// grows for as long as the viewer runs.
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
	/// with (also this viewer's account as a seeder). Default: a fresh random key. Unsafe as
	/// an argument: every local user can read it in the process list; prefer
	/// --viewer-seed-file or the environment variable.
	#[arg(long, value_name = "SURI", env = "DSP_VIEWER_SEED", hide_env_values = true)]
	viewer_seed: Option<String>,
	/// P2P: file whose first line is the viewer seed (keep it readable by this user only).
	#[arg(long, value_name = "PATH")]
	viewer_seed_file: Option<PathBuf>,
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
	/// Write a machine-readable summary of what the player saw to this file (JSON, rewritten
	/// every second and when the viewer stops on Ctrl-C/SIGINT): startup, stalls and rebuffer
	/// ratio of a real-time player model, gaps, duplicates, transport switches, and each
	/// segment's arrival time (Unix ms). Off by default: the network lab
	/// (`scripts/netlab.sh`) uses it.
	#[arg(long, value_name = "FILE")]
	stats_json: Option<PathBuf>,
}

pub async fn run(mut a: Args) -> anyhow::Result<()> {
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
	let Some(path) = a.stats_json.clone() else {
		let handle = watch::start(config, None).await?;
		if let Some(url) = &handle.gateway_url {
			println!("{url}");
		}
		// The viewer runs (and keeps the gateway up after the stream ends) until interrupted.
		tokio::signal::ctrl_c().await?;
		let stats = handle.stop().await;
		info!(?stats, "stopped");
		return Ok(());
	};
	let mut summary = DirectStats::new(path);
	// The viewer waits for this receiver (it is the player): drained in the loop below.
	let (tx, mut events) = tokio::sync::mpsc::channel(64);
	let handle = watch::start(config, Some(tx)).await?;
	if let Some(url) = &handle.gateway_url {
		println!("{url}");
	}
	let mut tick = tokio::time::interval(Duration::from_secs(1));
	loop {
		tokio::select! {
			_ = tokio::signal::ctrl_c() => break,
			Some(ev) = events.recv() => summary.handle(&ev),
			_ = tick.tick() => summary.write(None),
		}
	}
	// Stop the viewer while still draining its events (it may be waiting on this channel).
	let stop = handle.stop();
	tokio::pin!(stop);
	let stats = loop {
		tokio::select! {
			s = &mut stop => break s,
			Some(ev) = events.recv() => summary.handle(&ev),
		}
	};
	while let Ok(ev) = events.try_recv() {
		summary.handle(&ev);
	}
	summary.write(Some(&stats));
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
async fn watch_p2p(a: &Args, direct: &WatchConfig) -> anyhow::Result<()> {
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
	let viewer = match pair_from_secret(
		a.viewer_seed.as_deref(),
		a.viewer_seed_file.as_ref(),
		"--viewer-seed",
	)? {
		Some(pair) => pair,
		None => sp_core::sr25519::Pair::generate().0,
	};
	let signers = PassSigners {
		default: a.pass_signer.iter().map(|k| public_key(k)).collect::<Result<_, _>>()?,
		..Default::default()
	};
	let genesis = direct.core.genesis_hash;
	let ledger = LedgerConfig::new(genesis, viewer.public().0, signers);
	// The libp2p identity follows from the viewer key, like the seed's from the pass key.
	let secret = p2p_identity_seed(&viewer);
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
		config.record_dir = a.record.clone();
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
	let started_unix_ms = now_unix_ms();
	let mut summary_tick = tokio::time::interval(Duration::from_secs(1));
	loop {
		tokio::select! {
			_ = tokio::signal::ctrl_c() => break,
			_ = summary_tick.tick(), if a.stats_json.is_some() => {
				if let Some(path) = &a.stats_json {
					write_p2p(path, started_unix_ms, &handle.stats());
				}
			},
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
	if let Some(path) = &a.stats_json {
		write_p2p(path, started_unix_ms, &stats);
	}
	info!(?stats, "stopped");
	Ok(())
}

#[cfg(test)]
mod tests {
	use super::*;
	use clap::Parser;

	#[derive(Parser)]
	struct Cli {
		#[command(flatten)]
		args: Args,
	}

	/// `--record` with `--p2p` is taken (the P2P viewer records as the direct one does; it was
	/// refused while it did not).
	#[test]
	fn p2p_with_record_is_taken() {
		let dir = tempfile::tempdir().unwrap();
		let record = dir.path().display().to_string();
		let parsed = Cli::try_parse_from([
			"dsp",
			"--stream",
			"1",
			"--origin-key",
			"00",
			"--server",
			"tcp://127.0.0.1:1",
			"--p2p",
			"--pass-signer",
			"00",
			"--record",
			&record,
		]);
		let args = parsed.expect("--p2p with --record parses").args;
		assert!(args.p2p);
		assert_eq!(args.record.as_deref(), Some(dir.path()));
	}
}
