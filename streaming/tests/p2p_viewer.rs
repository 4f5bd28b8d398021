//! The P2P viewer driver over real sockets on loopback: a `dsp serve` (in process) admitting every
//! viewer in P2P mode, a paced publisher, and several P2P viewers, each a real libp2p node plus a
//! direct connection. Segments arrive byte-identical and in order, most of some viewer's bytes
//! come from peers; a peer serving corrupted chunks is banned on its first one and the victim
//! still plays every segment.

mod common;

use bytes::Bytes;
use common::{init_logs, media, origin, wait_until, TEST_TIMEOUT};
use dsp_primitives::{
	AdmissionMode, CapacitySettings, Hash32, Perbill, SegmentHeader, Signed, StreamEnd, StreamId,
};
use dsp_streaming::{
	net::{
		p2p::{P2pConfig, P2pNode},
		p2p_watch::{self, P2pWatchConfig, P2pWatchStats},
		publish::{PublishConfig, Publisher},
		serve::{RunningServer, ServeConfig},
		watch::WatchEvent,
		Endpoint,
	},
	p2p::{
		join::sign_join,
		receipts::{LedgerConfig, PassSigners},
		scheduler::SchedulerConfig,
		seeding::SeedConfig,
		serving::{ChunkSource, ServingEvent},
		tracker::{PassSigning, TrackerConfig},
		wire::{HaveSegment, Request, Response},
	},
	protocol::{Message, Role, PROTOCOL_VERSION},
	segment::Segment,
	viewer::Transport,
};
use sp_core::Pair;
use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};
use tokio::sync::mpsc;

const GENESIS: Hash32 = [0; 32];
const STREAM: StreamId = 9;
/// Segment length and duration: 3 chunks of at most 16 KiB, half a second each (the scheduler
/// is scaled to match, so a test runs in seconds).
const LEN: usize = 40_000;
const SEGMENT_MS: u32 = 500;

fn pair(s: &str) -> sp_core::sr25519::Pair {
	sp_core::sr25519::Pair::from_string(s, None).unwrap()
}

fn segment(seq: u64) -> Segment {
	Segment::build(&origin(), GENESIS, STREAM, 0, seq, SEGMENT_MS, media(seq, LEN), 16 * 1024)
}

fn signers() -> PassSigners {
	PassSigners { default: vec![pair("//PassSigner").public()], per_stream: HashMap::new() }
}

/// A server that admits every viewer in P2P mode and pushes each new chunk to one of them.
async fn server() -> RunningServer {
	let mut cfg: ServeConfig = common::serve_config();
	cfg.capacity = CapacitySettings { max_streams: 100, streaming_rate: Perbill::one() };
	let mut tracker = TrackerConfig::new(GENESIS, 0);
	// Renewed every second: the viewers of a test of seconds get several.
	tracker.pass_period = Duration::from_secs(2);
	cfg.p2p = Some(PassSigning { signer: pair("//PassSigner"), tracker });
	cfg.seeding = SeedConfig { peers_per_seed: 32, min_seeds: 1, max_seeds: 4 };
	common::server(cfg).await
}

fn tcp(s: &RunningServer) -> Endpoint {
	Endpoint { transport: Transport::Tcp, addr: s.tcp_addr.unwrap() }
}

/// Publishes segments `0..count`, one per segment duration, then ends the stream.
async fn publish(to: Endpoint, count: u64) {
	let publisher =
		Publisher::start(PublishConfig::new(STREAM, vec![to], origin())).expect("publisher");
	for seq in 0..count {
		publisher.push(Arc::new(segment(seq)));
		// Pacing, as a live origin: the viewers' schedulers fetch ahead of a live edge that
		// moves one segment per segment duration.
		tokio::time::sleep(Duration::from_millis(SEGMENT_MS as u64)).await;
	}
	let end =
		StreamEnd { genesis_hash: GENESIS, stream: STREAM, broadcast: 0, next_sequence: count };
	for r in publisher.finish(Signed::sign(end, &origin()), Duration::from_secs(30)).await {
		assert!(r.complete, "publisher did not finish: {r:?}");
	}
}

/// Segments the server holds before the viewers join, so they start a few behind the edge.
const BACKLOG: u64 = 4;

/// Waits until the server stored the first [`BACKLOG`] segments.
async fn backlog(server: &RunningServer) {
	wait_until("a backlog to start from", || server.stats().segments_stored >= BACKLOG).await;
}

fn viewer_config(server: Endpoint, n: u8) -> P2pWatchConfig {
	let viewer = pair(&format!("//P2pViewer{n}"));
	let ledger = LedgerConfig::new(GENESIS, viewer.public().0, signers());
	let mut c = P2pWatchConfig::new(
		GENESIS,
		STREAM,
		origin().public(),
		server,
		viewer,
		P2pConfig::loopback([n; 32], ledger),
	);
	// Scaled to half-second segments.
	c.scheduler = SchedulerConfig {
		urgent_window_ms: 400,
		node_margin_ms: 250,
		startup_ms: 500,
		min_timeout_ms: 200,
		max_timeout_ms: 1500,
		..SchedulerConfig::default()
	};
	c.gateway = None;
	c
}

/// What one viewer played: sequences in order with their bytes, and its counters.
struct Played {
	segments: Vec<(u64, bool, Vec<u8>)>,
	stats: P2pWatchStats,
}

impl Played {
	/// Every segment from the first played to `count - 1`, once, in order, byte-identical.
	fn assert_complete(&self, count: u64) {
		let first = self.segments.first().expect("played something").0;
		let seqs: Vec<u64> = self.segments.iter().map(|s| s.0).collect();
		assert_eq!(seqs, (first..count).collect::<Vec<_>>(), "missing or duplicate segments");
		for (seq, discontinuity, data) in &self.segments {
			assert!(!discontinuity, "discontinuity at {seq}");
			assert_eq!(data[..], media(*seq, LEN)[..], "segment {seq} differs");
		}
		assert!(self.stats.ended, "stream end not reached");
	}
}

async fn watch(config: P2pWatchConfig) -> (tokio::task::JoinHandle<Played>, libp2p::PeerId) {
	let (tx, mut rx) = mpsc::channel(64);
	let handle = p2p_watch::start(config, Some(tx)).await.expect("P2P viewer starts");
	let peer = handle.peer_id;
	let task = tokio::spawn(async move {
		let mut segments = Vec::new();
		while let Some(ev) = rx.recv().await {
			match ev {
				WatchEvent::Delivered { sequence, discontinuity, data, .. } => {
					segments.push((sequence, discontinuity, data.concat()))
				}
				WatchEvent::Ended => break,
				WatchEvent::Switched(_) | WatchEvent::ServerChanged(_) => {}
			}
		}
		let stats = handle.join().await.expect("viewer ends cleanly");
		Played { segments, stats }
	});
	(task, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_viewers_play_byte_identical_segments_mostly_from_peers() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		const COUNT: u64 = 24;
		let server = server().await;
		let publisher = tokio::spawn(publish(tcp(&server), COUNT));
		backlog(&server).await;
		let mut viewers = Vec::new();
		for n in 1..=4u8 {
			viewers.push(watch(viewer_config(tcp(&server), n)).await.0);
		}
		assert_eq!(server.stats().admission.p2p, 4);
		publisher.await.unwrap();
		let mut played = Vec::new();
		for v in viewers {
			played.push(v.await.unwrap());
		}
		for (n, p) in played.iter().enumerate() {
			let s = p.stats.scheduler;
			eprintln!(
				"viewer {n}: segments {} from node {} B, from peers {} B, served {} B, bad {} stalls {}",
				p.segments.len(),
				s.bytes_from_node,
				s.bytes_from_peers,
				p.stats.served.bytes_served,
				s.bad_chunks,
				p.stats.play.stalls
			);
			p.assert_complete(COUNT);
			assert_eq!(s.bad_chunks, 0);
		}
		let from_peers: u64 = played.iter().map(|p| p.stats.scheduler.bytes_from_peers).sum();
		let served: u64 = played.iter().map(|p| p.stats.served.bytes_served).sum();
		assert!(from_peers > 0, "nothing came from peers");
		// Viewers served each other (the exact sum can miss what a viewer served after its
		// final counters were taken, at the end of the stream).
		assert!(served > 0);
		assert!(
			played
				.iter()
				.any(|p| p.stats.scheduler.bytes_from_peers > p.stats.scheduler.bytes_from_node),
			"no viewer got most of its bytes from peers"
		);
		// Seeders were paid: receipts went out.
		assert!(played.iter().any(|p| p.stats.receipts_sent > 0));
		// Passes were renewed while the viewers stayed joined, and grew with the time joined.
		assert!(server.stats().passes_renewed > 0);
		for p in &played {
			assert!(p.stats.passes_renewed > 0, "a viewer got no renewed pass");
		}
		// The node's egress to the swarm was counted.
		let stats = server.stats();
		assert!(stats.bytes_sent_p2p > 0 && stats.bytes_sent_p2p <= stats.bytes_sent);
		server.shutdown().await;
	})
	.await
	.expect("test finishes in time");
}

/// A malicious peer's store: genuine headers, every chunk corrupted.
struct Corrupt;

impl ChunkSource for Corrupt {
	fn header(&self, stream: StreamId, sequence: u64) -> Option<Signed<SegmentHeader>> {
		(stream == STREAM).then(|| segment(sequence).header)
	}
	fn chunk(&self, stream: StreamId, sequence: u64, index: u32) -> Option<Bytes> {
		let mut c = segment(sequence).chunks.get(index as usize)?.to_vec();
		(stream == STREAM).then(|| {
			c[0] ^= 0xff;
			c.into()
		})
	}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_corrupted_chunks_is_banned_at_once_and_playback_completes() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		const COUNT: u64 = 20;
		let server = server().await;
		let publisher = tokio::spawn(publish(tcp(&server), COUNT));
		backlog(&server).await;

		// The attacker joins first (so the victim is told of it) with a genuine pass.
		let mallory = pair("//Mallory");
		let ledger = LedgerConfig::new(GENESIS, mallory.public().0, signers());
		let mut bad =
			P2pNode::start(P2pConfig::loopback([66; 32], ledger), Arc::new(Corrupt)).await.unwrap();
		let mut events = bad.take_events();
		let mut session = tokio::net::TcpStream::connect(server.tcp_addr.unwrap()).await.unwrap();
		let mut dec = dsp_streaming::protocol::FrameDecoder::new(1 << 20);
		let hello =
			Message::Hello { version: PROTOCOL_VERSION, role: Role::Viewer, genesis_hash: GENESIS };
		let write = |frames: Vec<Message>| {
			let frames: Vec<Bytes> =
				frames.iter().map(dsp_streaming::protocol::encode_frame).collect();
			frames
		};
		dsp_streaming::net::write_frames(&mut session, &write(vec![hello]), Duration::from_secs(5))
			.await
			.unwrap();
		let read = dsp_streaming::net::read_message;
		let Some(Message::Welcome { mode: AdmissionMode::P2p, challenge, .. }) =
			read(&mut session, &mut dec).await.unwrap()
		else {
			panic!("no P2P welcome")
		};
		// A genuine join: the attacker holds its own key.
		let peer = bad.peer_info();
		let proof = sign_join(&mallory, &GENESIS, &challenge, STREAM, &peer);
		let join = Message::Join { stream: STREAM, viewer: mallory.public(), peer, proof };
		dsp_streaming::net::write_frames(&mut session, &write(vec![join]), Duration::from_secs(5))
			.await
			.unwrap();
		let Some(Message::Joined { pass, .. }) = read(&mut session, &mut dec).await.unwrap() else {
			panic!("no Joined")
		};
		// Keep reading the node's feed (headers, seeded chunks) so the session stays healthy.
		let drain =
			tokio::spawn(
				async move { while let Ok(Some(_)) = read(&mut session, &mut dec).await {} },
			);

		let (victim, victim_id) = watch(viewer_config(tcp(&server), 1)).await;
		// Once the victim shows up, claim every chunk of every segment, again and again.
		let bad = Arc::new(bad);
		let claimer = {
			let bad = bad.clone();
			tokio::spawn(async move {
				let Some(ServingEvent::Have { peer, .. }) = events.recv().await else { return };
				assert_eq!(peer, victim_id);
				let shown = Request::bound_pass(pass, &mallory, &bad.peer_id);
				assert_eq!(bad.request(peer, None, shown).await.unwrap(), Response::Ok);
				let all: Vec<HaveSegment> =
					(0..COUNT).map(|s| HaveSegment::from_indices(s, 0..3)).collect();
				loop {
					let have = Request::Have { stream: STREAM, segments: all.clone() };
					if bad.request(peer, None, have).await.ok() != Some(Response::Ok) {
						// Banned: refused, or the connection is closed and not accepted again.
						return;
					}
					// Pacing of the attack, not an ordering: claim again and again until
					// banned, whatever the victim is doing at the time.
					tokio::time::sleep(Duration::from_millis(100)).await;
				}
			})
		};
		publisher.await.unwrap();
		let played = victim.await.unwrap();
		played.assert_complete(COUNT);
		let s = played.stats.scheduler;
		assert!(s.bad_chunks >= 1, "the corrupted chunk was never asked for");
		assert_eq!(s.banned, 1);
		// Banned on the first bad chunk: no more was asked of it than was in flight then.
		let served = bad.stats().await.unwrap().chunks_served;
		assert!(
			served <= SchedulerConfig::default().max_inflight_per_peer as u64,
			"served {served}"
		);
		// A corrupted chunk still on its way when the connection was closed never arrives.
		assert!(s.bad_chunks <= served);
		claimer.await.unwrap();
		drain.abort();
		server.shutdown().await;
	})
	.await
	.expect("test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_admitted_directly_is_told_so_and_a_full_server_is_a_clear_error() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		// No pass signing: the capacity rule admits directly.
		let direct = common::server(common::serve_config()).await;
		let r = p2p_watch::start(viewer_config(tcp(&direct), 1), None).await;
		assert!(matches!(r, Err(p2p_watch::P2pWatchError::Direct)), "{:?}", r.err());
		direct.shutdown().await;
		// A server with no room at all: refused with `Full`, not a hang or a panic.
		let mut cfg = common::serve_config();
		cfg.capacity = CapacitySettings { max_streams: 0, streaming_rate: Perbill::zero() };
		let full = common::server(cfg).await;
		let r = p2p_watch::start(viewer_config(tcp(&full), 2), None).await;
		assert!(
			matches!(
				r,
				Err(p2p_watch::P2pWatchError::Closed(dsp_streaming::protocol::ErrorCode::Full, _))
			),
			"{:?}",
			r.err()
		);
		// The same server knowing another streamer names it before refusing.
		let other =
			dsp_streaming::protocol::ServerAddrs { tcp: Some("127.0.0.1:9".into()), quic: None };
		full.set_redirect(vec![other.clone()]);
		let r = p2p_watch::start(viewer_config(tcp(&full), 3), None).await;
		assert!(
			matches!(&r, Err(p2p_watch::P2pWatchError::Redirected(s)) if *s == vec![other]),
			"{:?}",
			r.err()
		);
		assert_eq!(full.stats().redirects, 1);
		full.shutdown().await;
	})
	.await
	.expect("test finishes in time");
}

/// The broadcast the origin restarts the stream as in the test of a new broadcast.
const NEW_BROADCAST: u64 = 1;

/// Segment `seq` of the new broadcast, with media that differs from the old one's.
fn new_segment(seq: u64) -> Segment {
	let data = media(1_000 + seq, LEN);
	Segment::build(&origin(), GENESIS, STREAM, NEW_BROADCAST, seq, SEGMENT_MS, data, 16 * 1024)
}

/// The origin restarts the stream as a newer broadcast while P2P viewers watch (its first
/// publisher goes away without an `End`; the new one numbers on, as `--start-seq auto` does
/// while the window is held): the viewers continue onto the new broadcast as a direct viewer
/// does, with a discontinuity, every segment of it byte-identical to the new broadcast's and
/// no chunk of the old one in it. Before, each viewer ended with `NewBroadcast`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_viewers_continue_onto_a_new_broadcast() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		const OLD_COUNT: u64 = 8;
		const END: u64 = 16;
		let server = server().await;
		let old =
			Publisher::start(PublishConfig::new(STREAM, vec![tcp(&server)], origin())).unwrap();
		for seq in 0..BACKLOG {
			old.push(Arc::new(segment(seq)));
			tokio::time::sleep(Duration::from_millis(SEGMENT_MS as u64)).await;
		}
		backlog(&server).await;
		// Viewer 1 records: one directory per broadcast, nothing overwritten.
		let dir = tempfile::tempdir().unwrap();
		let mut viewers = Vec::new();
		for n in 1..=2u8 {
			let mut config = viewer_config(tcp(&server), n);
			if n == 1 {
				config.record_dir = Some(dir.path().to_path_buf());
			}
			viewers.push(watch(config).await.0);
		}
		for seq in BACKLOG..OLD_COUNT {
			old.push(Arc::new(segment(seq)));
			tokio::time::sleep(Duration::from_millis(SEGMENT_MS as u64)).await;
		}
		wait_until("the old broadcast stored", || server.stats().segments_stored >= OLD_COUNT)
			.await;
		// The origin crashes: no `End`.
		old.abort();
		let new =
			Publisher::start(PublishConfig::new(STREAM, vec![tcp(&server)], origin())).unwrap();
		for seq in OLD_COUNT..END {
			new.push(Arc::new(new_segment(seq)));
			tokio::time::sleep(Duration::from_millis(SEGMENT_MS as u64)).await;
		}
		let end = StreamEnd {
			genesis_hash: GENESIS,
			stream: STREAM,
			broadcast: NEW_BROADCAST,
			next_sequence: END,
		};
		for r in new.finish(Signed::sign(end, &origin()), Duration::from_secs(30)).await {
			assert!(r.complete, "publisher did not finish: {r:?}");
		}
		for (n, v) in viewers.into_iter().enumerate() {
			let played = v.await.unwrap();
			let seqs: Vec<u64> = played.segments.iter().map(|s| s.0).collect();
			assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order: {seqs:?}");
			let new_part: Vec<u64> = seqs.iter().copied().filter(|&s| s >= OLD_COUNT).collect();
			assert_eq!(new_part, (OLD_COUNT..END).collect::<Vec<_>>(), "the new broadcast, whole");
			for (seq, discontinuity, data) in &played.segments {
				let expected = if *seq < OLD_COUNT {
					segment(*seq).to_vec()
				} else {
					new_segment(*seq).to_vec()
				};
				assert_eq!(data[..], expected[..], "segment {seq} is not its broadcast's");
				assert_eq!(*discontinuity, *seq == OLD_COUNT, "discontinuity at {seq}");
			}
			assert!(played.stats.ended, "the new broadcast's end was not reached");
			assert_eq!(played.stats.scheduler.bad_chunks, 0);
			assert_eq!(played.stats.new_broadcasts, 1);
			if n == 0 {
				let broadcast_of = |seq| if seq < OLD_COUNT { 0 } else { NEW_BROADCAST };
				assert_eq!(recorded(dir.path()), as_recorded(&played, broadcast_of));
			}
		}
		server.shutdown().await;
	})
	.await
	.expect("test finishes in time");
}

/// Every file of a viewer's recording under `dir`: (broadcast, sequence, bytes), in order.
fn recorded(dir: &Path) -> Vec<(u64, u64, Vec<u8>)> {
	let mut out = Vec::new();
	for b in std::fs::read_dir(dir.join(STREAM.to_string())).unwrap() {
		let b = b.unwrap();
		let broadcast: u64 = b.file_name().to_str().unwrap().parse().unwrap();
		for f in std::fs::read_dir(b.path()).unwrap() {
			let f = f.unwrap();
			let name = f.file_name().into_string().unwrap();
			let seq: u64 = name.strip_suffix(".ts").expect("only .ts files").parse().unwrap();
			out.push((broadcast, seq, std::fs::read(f.path()).unwrap()));
		}
	}
	out.sort();
	out
}

/// What a recording of `played` must hold, each segment in its broadcast's directory.
fn as_recorded(played: &Played, broadcast_of: impl Fn(u64) -> u64) -> Vec<(u64, u64, Vec<u8>)> {
	played.segments.iter().map(|(seq, _, data)| (broadcast_of(*seq), *seq, data.clone())).collect()
}

/// `dsp watch --p2p --record DIR`: a P2P viewer's recording holds exactly the segments it
/// played, byte for byte, at `DIR/<stream>/<broadcast>/<sequence>.ts`, as a direct viewer's
/// does. Before, the P2P viewer could not record (the CLI refused `--record` with `--p2p`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p2p_viewer_records_the_segments_it_played() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		const COUNT: u64 = 10;
		let server = server().await;
		let publisher = tokio::spawn(publish(tcp(&server), COUNT));
		backlog(&server).await;
		let dir = tempfile::tempdir().unwrap();
		let mut config = viewer_config(tcp(&server), 1);
		config.record_dir = Some(dir.path().join("rec"));
		let (viewer, _) = watch(config).await;
		publisher.await.unwrap();
		let played = viewer.await.unwrap();
		played.assert_complete(COUNT);
		assert_eq!(recorded(&dir.path().join("rec")), as_recorded(&played, |_| 0));
		server.shutdown().await;
	})
	.await
	.expect("test finishes in time");
}
