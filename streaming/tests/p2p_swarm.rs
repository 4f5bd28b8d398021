//! Real libp2p swarms on loopback (QUIC and TCP): chunks arrive byte-identical and verified
//! against the origin-signed header; a peer serving a corrupted chunk is banned on its first
//! one while another keeps delivering; bad input (no pass, oversized, malformed, over-limit,
//! flooding, oversized responses) gets refusals or disconnects, never a panic, and an honest
//! viewer of the same seeder is served throughout.

mod common;

use bytes::Bytes;
use codec::{Decode, Encode};
use common::{init_logs, origin, RawSession, TEST_TIMEOUT};
use dsp_primitives::{ClaimItem, Hash32, Receipt, SegmentHeader, Signed, StreamId, ViewerPass};
use dsp_streaming::{
	net::p2p::{P2pConfig, P2pError, P2pNode},
	p2p::{
		receipts::{BookConfig, LedgerConfig, PassSigners, ReceiptBook, SeederLedger},
		serving::{ChunkSource, ServingConfig},
		wire::{HaveSegment, RefusalCode, Request, Response, WireLimits, PROTOCOL_NAME},
	},
	segment::{verify_header, Segment, SegmentLimits},
};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{
	multiaddr::Protocol, request_response, swarm::SwarmEvent, Multiaddr, PeerId, StreamProtocol,
};
use sp_core::Pair;
use std::{collections::HashMap, io, sync::Arc, time::Duration};

const GENESIS: Hash32 = [0; 32];
const STREAM: StreamId = 4;

fn pair(s: &str) -> sp_core::sr25519::Pair {
	sp_core::sr25519::Pair::from_string(s, None).unwrap()
}

/// A node's store: verified segments, optionally serving corrupted chunk bytes (a malicious
/// peer with a genuine header).
struct Store {
	segments: HashMap<u64, Segment>,
	corrupt: bool,
}

impl ChunkSource for Store {
	fn header(&self, stream: StreamId, sequence: u64) -> Option<Signed<SegmentHeader>> {
		(stream == STREAM).then(|| self.segments.get(&sequence).map(|s| s.header.clone()))?
	}
	fn chunk(&self, stream: StreamId, sequence: u64, index: u32) -> Option<Bytes> {
		if stream != STREAM {
			return None;
		}
		let c = self.segments.get(&sequence)?.chunks.get(index as usize)?.clone();
		if !self.corrupt {
			return Some(c);
		}
		let mut bad = c.to_vec();
		bad[0] ^= 0xff;
		Some(bad.into())
	}
}

fn segment() -> Segment {
	let data: Vec<u8> =
		(0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
	Segment::build(&origin(), GENESIS, STREAM, 0, 7, 2000, Bytes::from(data), 64 * 1024)
}

fn store(corrupt: bool) -> Arc<Store> {
	let s = segment();
	Arc::new(Store { segments: HashMap::from([(s.sequence(), s)]), corrupt })
}

fn signers() -> PassSigners {
	PassSigners { default: vec![pair("//PassSigner").public()], per_stream: HashMap::new() }
}

fn config(secret: u8, seeder: &str) -> P2pConfig {
	P2pConfig::loopback(
		[secret; 32],
		LedgerConfig::new(GENESIS, pair(seeder).public().0, signers()),
	)
}

async fn node(secret: u8, seeder: &str, source: Arc<Store>) -> P2pNode {
	P2pNode::start(config(secret, seeder), source).await.expect("node starts")
}

fn pass(viewer: &str) -> Signed<ViewerPass> {
	let p = ViewerPass {
		genesis_hash: GENESIS,
		stream: STREAM,
		epoch: 0,
		viewer: pair(viewer).public(),
		max_units: 1_000_000,
		issuer: pair("//PassSigner").public(),
	};
	Signed::sign(p, &pair("//PassSigner"))
}

fn addr(n: &P2pNode, quic: bool) -> Multiaddr {
	n.listen_addrs
		.iter()
		.find(|a| a.iter().any(|p| matches!(p, Protocol::QuicV1)) == quic)
		.cloned()
		.expect("listening on both transports")
}

fn refusal(r: Result<Response, P2pError>) -> RefusalCode {
	match r {
		Ok(Response::Refused { code, .. }) => code,
		other => panic!("expected a refusal, got {other:?}"),
	}
}

/// Shows the pass, fetches and verifies the header, then every chunk; returns the bytes.
async fn download(
	v: &P2pNode,
	from: &P2pNode,
	at: Multiaddr,
	viewer: &str,
) -> Result<Vec<u8>, P2pError> {
	let seeder = from.peer_id;
	let pass = Request::bound_pass(pass(viewer), &pair(viewer), &v.peer_id);
	assert_eq!(v.request(seeder, Some(at), pass).await?, Response::Ok);
	let header =
		match v.request(seeder, None, Request::GetHeader { stream: STREAM, sequence: 7 }).await? {
			Response::Header(h) => h,
			other => panic!("expected a header, got {other:?}"),
		};
	verify_header(&header, &GENESIS, STREAM, &origin().public(), &SegmentLimits::default())
		.expect("header verifies");
	let mut out = Vec::new();
	for index in 0..header.payload.chunk_hashes.len() as u32 {
		out.extend_from_slice(&v.fetch_chunk(seeder, None, header.payload.clone(), index).await?);
	}
	Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_delivers_byte_identical_chunks_over_quic_and_tcp() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		let ledger_dir = tempfile::tempdir().unwrap();
		let mut cfg = config(1, "//Seeder");
		cfg.ledger_dir = Some(ledger_dir.path().to_path_buf());
		let seeder = P2pNode::start(cfg, store(false)).await.unwrap();
		let expected = segment().to_vec();
		for (i, quic) in [(0u8, true), (1, false)] {
			let viewer_key = format!("//Viewer{i}");
			let v = node(
				10 + i,
				"//Unused",
				Arc::new(Store { segments: HashMap::new(), corrupt: false }),
			)
			.await;
			let got =
				download(&v, &seeder, addr(&seeder, quic), &viewer_key).await.expect("download");
			assert_eq!(got, expected, "byte-identical over {}", if quic { "QUIC" } else { "TCP" });

			// The viewer signs a cumulative receipt for what it received; the seeder keeps it.
			let mut book = ReceiptBook::new(
				BookConfig { genesis_hash: GENESIS, stream: STREAM, max_seeders: 8 },
				pair(&viewer_key),
			);
			let seeder_account = pair("//Seeder").public().0;
			book.handle_received(seeder_account, 0, got.len() as u64).unwrap();
			let receipt = book.poll_receipt(&seeder_account, 0).unwrap();
			assert_eq!(receipt.payload.units, got.len() as u64 / 1024);
			let r = v.request(seeder.peer_id, None, Request::Receipt(receipt)).await.unwrap();
			assert_eq!(r, Response::Ok);
		}
		let stats = seeder.stats().await.unwrap();
		assert_eq!(stats.chunks_served, 2 * segment().chunks.len() as u64);
		assert_eq!(stats.bans, 0);

		// The ledger the seeder persisted when it stopped reloads with both receipts verified.
		seeder.shutdown().await;
		let dir = ledger_dir;
		let ledger = SeederLedger::load(config(1, "//Seeder").ledger, dir.path()).unwrap();
		let (batches, bad) = ledger.claim_batches(16);
		assert!(bad.is_empty());
		assert_eq!(batches.concat().len(), 2);

		// `dsp claim` verifies the same ledger and writes the batches for the chain.
		let out = dir.path().join("claims.hex");
		let run = std::process::Command::new(env!("CARGO_BIN_EXE_dsp"))
			.args(["claim", "--ledger"])
			.arg(dir.path())
			.args(["--seeder", &hex::encode(pair("//Seeder").public().0)])
			.args(["--pass-signer", &hex::encode(pair("//PassSigner").public().0)])
			.args(["--max", "1", "--out"])
			.arg(&out)
			.output()
			.unwrap();
		assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
		let summary = String::from_utf8(run.stdout).unwrap();
		assert!(summary.contains("items 2 in 2 batches, 0 skipped"), "{summary}");
		let lines = std::fs::read_to_string(&out).unwrap();
		let items: Vec<ClaimItem> = lines
			.lines()
			.flat_map(|l| Vec::<ClaimItem>::decode(&mut &hex::decode(l).unwrap()[..]).unwrap())
			.collect();
		assert_eq!(items, batches.concat());
		// Given another seeder account, the ledger does not verify: an error, no batches.
		let run = std::process::Command::new(env!("CARGO_BIN_EXE_dsp"))
			.args(["claim", "--ledger"])
			.arg(dir.path())
			.args(["--seeder", &hex::encode([3u8; 32])])
			.args(["--pass-signer", &hex::encode(pair("//PassSigner").public().0)])
			.output()
			.unwrap();
		assert!(!run.status.success(), "a ledger that does not verify is an error");
	})
	.await
	.expect("test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_peer_is_banned_on_its_first_bad_chunk_while_a_good_peer_delivers() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		let good = node(2, "//Good", store(false)).await;
		let evil = node(3, "//Evil", store(true)).await;
		let v = node(4, "//Unused", store(false)).await;
		let header = segment().header.payload;

		assert_eq!(
			v.request(
				evil.peer_id,
				Some(addr(&evil, true)),
				Request::bound_pass(pass("//V"), &pair("//V"), &v.peer_id)
			)
			.await
			.unwrap(),
			Response::Ok
		);
		let err = v.fetch_chunk(evil.peer_id, None, header.clone(), 0).await.unwrap_err();
		assert!(matches!(err, P2pError::BadChunk(_)), "{err}");
		assert!(v.is_banned(evil.peer_id).await.unwrap());
		// Never dialled again, even with an address.
		let again = v.fetch_chunk(evil.peer_id, Some(addr(&evil, false)), header.clone(), 1).await;
		assert!(matches!(again, Err(P2pError::Banned)), "{again:?}");
		// And it cannot reach the viewer either: the connection is denied.
		let back = evil
			.request(
				v.peer_id,
				Some(addr(&v, false)),
				Request::GetHeader { stream: STREAM, sequence: 7 },
			)
			.await;
		assert!(matches!(back, Err(P2pError::Outbound(_))), "{back:?}");

		// The good peer delivers everything.
		let got = download(&v, &good, addr(&good, true), "//V").await.unwrap();
		assert_eq!(got, segment().to_vec());
	})
	.await
	.expect("test finishes in time");
}

/// A request-response codec that writes and reads raw bytes: a misbehaving client.
#[derive(Clone, Default)]
struct RawCodec;

#[async_trait::async_trait]
impl request_response::Codec for RawCodec {
	type Protocol = StreamProtocol;
	type Request = Vec<u8>;
	type Response = Vec<u8>;
	async fn read_request<T: AsyncRead + Unpin + Send>(
		&mut self,
		_: &StreamProtocol,
		io: &mut T,
	) -> io::Result<Vec<u8>> {
		let mut v = Vec::new();
		io.take(1 << 20).read_to_end(&mut v).await?;
		Ok(v)
	}
	async fn read_response<T: AsyncRead + Unpin + Send>(
		&mut self,
		p: &StreamProtocol,
		io: &mut T,
	) -> io::Result<Vec<u8>> {
		self.read_request(p, io).await
	}
	async fn write_request<T: AsyncWrite + Unpin + Send>(
		&mut self,
		_: &StreamProtocol,
		io: &mut T,
		r: Vec<u8>,
	) -> io::Result<()> {
		io.write_all(&r).await
	}
	async fn write_response<T: AsyncWrite + Unpin + Send>(
		&mut self,
		p: &StreamProtocol,
		io: &mut T,
		r: Vec<u8>,
	) -> io::Result<()> {
		self.write_request(p, io, r).await
	}
}

/// Sends raw `bytes` as a `/dsp/p2p/1` request from a fresh identity; returns the outcome.
async fn raw_request(
	to: PeerId,
	at: Multiaddr,
	secret: u8,
	bytes: Vec<u8>,
) -> Result<Vec<u8>, String> {
	let key = libp2p::identity::Keypair::ed25519_from_bytes([secret; 32]).unwrap();
	let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
		.with_tokio()
		.with_tcp(Default::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
		.unwrap()
		.with_behaviour(|_| {
			request_response::Behaviour::with_codec(
				RawCodec,
				[(StreamProtocol::new(PROTOCOL_NAME), request_response::ProtocolSupport::Outbound)],
				request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
			)
		})
		.unwrap()
		.build();
	swarm.add_peer_address(to, at);
	swarm.behaviour_mut().send_request(&to, bytes);
	loop {
		match swarm.select_next_some().await {
			SwarmEvent::Behaviour(request_response::Event::Message {
				message: request_response::Message::Response { response, .. },
				..
			}) if response.is_empty() => return Err("substream closed without a response".into()),
			SwarmEvent::Behaviour(request_response::Event::Message {
				message: request_response::Message::Response { response, .. },
				..
			}) => return Ok(response),
			SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
				return Err(error.to_string())
			}
			_ => {}
		}
	}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_or_disconnected_and_other_peers_are_unaffected() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		let mut cfg = config(5, "//Seeder");
		cfg.serving = ServingConfig {
			max_requests_per_window: 20,
			flood_ban_after: 10,
			max_bad_input: 2,
			rate_window: Duration::from_secs(3600),
			..Default::default()
		};
		let seeder = P2pNode::start(cfg, store(false)).await.unwrap();
		let tcp = addr(&seeder, false);
		let empty = || Arc::new(Store { segments: HashMap::new(), corrupt: false });

		// No pass: refused, connection kept.
		let nopass = node(20, "//Unused", empty()).await;
		let get = Request::GetChunk { stream: STREAM, sequence: 7, index: 0 };
		assert_eq!(
			refusal(nopass.request(seeder.peer_id, Some(tcp.clone()), get.clone()).await),
			RefusalCode::NoPass
		);
		assert_eq!(
			refusal(
				nopass
					.request(
						seeder.peer_id,
						None,
						Request::GetHeader { stream: STREAM, sequence: 7 }
					)
					.await
			),
			RefusalCode::NoPass
		);
		// A pass for another stream does not count.
		let mut other = pass("//NoPass");
		other.payload.stream = STREAM + 1;
		let other = Signed::sign(other.payload, &pair("//PassSigner"));
		let other = Request::bound_pass(other, &pair("//NoPass"), &nopass.peer_id);
		assert_eq!(nopass.request(seeder.peer_id, None, other).await.unwrap(), Response::Ok);
		assert_eq!(
			refusal(nopass.request(seeder.peer_id, None, get.clone()).await),
			RefusalCode::NoPass
		);
		// A forged pass, and a genuine one bound to another peer (a replay): bad input each, so
		// with `max_bad_input` 2 the second bans their sender (a peer of its own here).
		let cheat = node(26, "//Unused", empty()).await;
		let mut forged = pass("//NoPass");
		forged.payload.max_units = u64::MAX;
		let forged = Request::bound_pass(forged, &pair("//NoPass"), &cheat.peer_id);
		assert_eq!(
			refusal(cheat.request(seeder.peer_id, Some(tcp.clone()), forged).await),
			RefusalCode::BadPass
		);
		let replayed = Request::bound_pass(pass("//NoPass"), &pair("//NoPass"), &seeder.peer_id);
		match cheat.request(seeder.peer_id, None, replayed).await {
			// The ban closes the connection, maybe before the answer leaves.
			Ok(Response::Refused { code: RefusalCode::Banned, .. })
			| Err(P2pError::Outbound(_)) => {}
			other => panic!("expected a ban for a second bad pass, got {other:?}"),
		}
		assert!(seeder.is_banned(cheat.peer_id).await.unwrap());

		// Malformed and oversized requests: `Refused{BadRequest}` (or, once the sender is banned,
		// a closed connection); the second one bans the sender.
		let bad_request = |r: Result<Vec<u8>, String>| match r {
			Ok(bytes) => matches!(
				WireLimits::default().decode_response(&bytes),
				Ok(Response::Refused { code: RefusalCode::BadRequest, .. })
			),
			Err(_) => true,
		};
		let r = raw_request(seeder.peer_id, tcp.clone(), 21, vec![0xff, 1, 2, 3]).await;
		assert!(r.is_ok() && bad_request(r.clone()), "malformed request: {r:?}");
		let r = raw_request(seeder.peer_id, tcp.clone(), 21, vec![0u8; 20 * 1024]).await;
		assert!(bad_request(r.clone()), "oversized request: {r:?}");
		let raw_peer =
			libp2p::identity::Keypair::ed25519_from_bytes([21; 32]).unwrap().public().to_peer_id();
		assert!(seeder.is_banned(raw_peer).await.unwrap());
		// Banned: its next connection is denied.
		let r = raw_request(
			seeder.peer_id,
			tcp.clone(),
			21,
			Request::GetHeader { stream: STREAM, sequence: 7 }.encode(),
		)
		.await;
		assert!(r.is_err(), "banned peer got an answer: {r:?}");
		// A well-formed request, but over a count limit (too many segments in `Have`).
		let have = Request::Have {
			stream: STREAM,
			segments: (0..100).map(|s| HaveSegment::from_indices(s, [0])).collect(),
		};
		assert_eq!(
			refusal(nopass.request(seeder.peer_id, None, have).await),
			RefusalCode::BadRequest
		);

		// Flooding: 60 requests at once against a limit of 20 per window.
		let flooder = Arc::new(node(22, "//Unused", empty()).await);
		let first = flooder.request(seeder.peer_id, Some(tcp.clone()), get.clone()).await;
		assert_eq!(refusal(first), RefusalCode::NoPass);
		let mut tasks = Vec::new();
		for _ in 0..60 {
			let (f, get, to) = (flooder.clone(), get.clone(), seeder.peer_id);
			tasks.push(tokio::spawn(async move { f.request(to, None, get).await }));
		}
		// The first 20 in the window are answered (`NoPass`); the rest are refused `Busy` until
		// the flooder is banned, whose connection then closes (answers still in flight are lost).
		let mut answered_no_pass = 0;
		for t in tasks {
			match t.await.unwrap() {
				Ok(Response::Refused { code: RefusalCode::NoPass, .. }) => answered_no_pass += 1,
				Ok(Response::Refused { code: RefusalCode::Busy | RefusalCode::Banned, .. })
				| Err(P2pError::Outbound(_)) => {}
				other => panic!("unexpected answer to a flood request: {other:?}"),
			}
		}
		assert!(answered_no_pass <= 19, "{answered_no_pass} requests served within a limit of 20");
		assert!(seeder.is_banned(flooder.peer_id).await.unwrap(), "flooder banned");
		let r = flooder.request(seeder.peer_id, Some(tcp.clone()), get.clone()).await;
		assert!(matches!(r, Err(P2pError::Outbound(_))), "banned flooder reconnected: {r:?}");

		// An oversized response (a viewer with a small response limit): an error, no panic.
		let mut small = config(23, "//Unused");
		small.limits.wire.max_response_len = 1024;
		let small = P2pNode::start(small, empty()).await.unwrap();
		assert_eq!(
			small
				.request(
					seeder.peer_id,
					Some(tcp.clone()),
					Request::bound_pass(pass("//Small"), &pair("//Small"), &small.peer_id)
				)
				.await
				.unwrap(),
			Response::Ok
		);
		let r = small.fetch_chunk(seeder.peer_id, None, segment().header.payload, 0).await;
		assert!(matches!(r, Err(P2pError::Outbound(_))), "{r:?}");

		// Through all of this an honest viewer is served in full, on both transports.
		let honest = node(24, "//Unused", empty()).await;
		let got = download(&honest, &seeder, addr(&seeder, true), "//Honest").await.unwrap();
		assert_eq!(got, segment().to_vec());
		let receipt = Receipt {
			genesis_hash: GENESIS,
			stream: STREAM,
			epoch: 0,
			seeder: pair("//Seeder").public().0,
			viewer: pair("//Honest").public(),
			units: 10,
		};
		// A receipt signed by someone else is a forgery: the sender is banned (the `Banned`
		// answer races with the closing connection).
		let forged = Signed::sign(receipt.clone(), &pair("//Mallory"));
		let r = honest.request(seeder.peer_id, None, Request::Receipt(forged)).await;
		assert!(
			matches!(
				r,
				Ok(Response::Refused { code: RefusalCode::Banned, .. })
					| Err(P2pError::Outbound(_))
			),
			"{r:?}"
		);
		assert!(seeder.is_banned(honest.peer_id).await.unwrap());
		let honest2 = node(25, "//Unused", empty()).await;
		let got = download(&honest2, &seeder, tcp, "//Honest2").await.unwrap();
		assert_eq!(got, segment().to_vec());
	})
	.await
	.expect("test finishes in time");
}

/// A raw TCP viewer session: sends `msgs`, returns the next `n` messages from the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_admits_p2p_viewers_with_passes_and_peers_seeds_the_swarm_and_fills_gaps() {
	use dsp_primitives::{AdmissionMode, CapacitySettings, Perbill};
	use dsp_streaming::{
		p2p::{
			receipts::verify_pass,
			tracker::{PassSigning, TrackerConfig},
		},
		protocol::{Message, PeerInfo, Role, PROTOCOL_VERSION},
		segment::verify_chunk,
	};
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		let mut cfg = common::serve_config();
		// r = 1: every viewer is admitted in P2P mode.
		cfg.capacity = CapacitySettings { max_streams: 10, streaming_rate: Perbill::one() };
		cfg.p2p = Some(PassSigning {
			signer: pair("//PassSigner"),
			tracker: TrackerConfig::new(GENESIS, 3),
		});
		// The node seeds the swarm from its live windows; passes it issued are valid there.
		cfg.p2p_seed = Some(config(40, "//PassSigner"));
		let server = common::server(cfg).await;
		let seed = server.p2p_node().expect("seed runs");
		common::publish(vec![common::tcp(&server)], STREAM, 3, 40_000, Duration::ZERO).await;

		let empty = || Arc::new(Store { segments: HashMap::new(), corrupt: false });
		let nodes = [node(41, "//Unused", empty()).await, node(42, "//Unused", empty()).await];
		let info = |n: u8| nodes[n as usize - 1].peer_info();
		let mut viewers = Vec::new();
		let mut passes = Vec::new();
		for n in 1..=2u8 {
			let mut v = RawSession::connect(server.tcp_addr.unwrap()).await;
			v.send(&Message::Hello {
				version: PROTOCOL_VERSION,
				role: Role::Viewer,
				genesis_hash: GENESIS,
			})
			.await;
			let Message::Welcome { mode: AdmissionMode::P2p, challenge, .. } = v.recv().await
			else {
				panic!("no P2P welcome")
			};
			let viewer = pair(&format!("//P2pViewer{n}"));
			let key = viewer.public();
			let Message::Joined { pass, peers } =
				v.join(&challenge, GENESIS, STREAM, &viewer, info(n)).await
			else {
				panic!("no Joined")
			};
			// Then the header feed: every held segment's header (none seeded: they were stored
			// before anyone joined), and the end of the stream.
			for seq in 0..3 {
				let Message::Header(h) = v.recv().await else { panic!("no header") };
				assert_eq!(h.payload.sequence, seq);
			}
			assert!(matches!(v.recv().await, Message::End(_)));
			// The pass verifies as a seeder (and the pallet) checks it.
			assert_eq!(verify_pass(&pass, &GENESIS, &signers()), Ok(()));
			assert_eq!(
				(pass.payload.stream, pass.payload.epoch, pass.payload.viewer),
				(STREAM, 3, key)
			);
			// The node's seed first; the second viewer learns of the first; nobody of itself.
			let expected: Vec<PeerInfo> =
				std::iter::once(seed.peer_info()).chain((1..n).rev().map(info)).collect();
			assert_eq!(peers, expected);
			viewers.push(v);
			passes.push(pass);
		}
		assert_eq!(server.stats().admission.p2p, 2);
		assert_eq!(server.stats().admission.direct, 0);

		// An urgent gap: the node sends the header and the chunk, verifiable on their own.
		let v = &mut viewers[1];
		v.send(&Message::Fetch { stream: STREAM, sequence: 1, index: 2 }).await;
		let Message::Header(h) = v.recv().await else { panic!("no header") };
		verify_header(&h, &GENESIS, STREAM, &origin().public(), &SegmentLimits::default()).unwrap();
		let Message::Chunk(c) = v.recv().await else { panic!("no chunk") };
		assert_eq!((c.sequence, c.index), (1, 2));
		verify_chunk(&h.payload, c.index, &c.data).unwrap();
		v.send(&Message::Fetch { stream: STREAM, sequence: 99, index: 0 }).await;
		assert_eq!(v.recv().await, Message::NotHeld { stream: STREAM, sequence: 99, index: 0 });
		// A fetch for a stream it did not join closes the session with a clear error.
		v.send(&Message::Fetch { stream: STREAM + 1, sequence: 1, index: 0 }).await;
		assert!(matches!(
			v.recv().await,
			Message::Error { code: dsp_streaming::protocol::ErrorCode::UnexpectedMessage, .. }
		));

		// The pass opens the node's swarm seed: the first viewer downloads a whole segment over
		// libp2p, verified, from the peer the tracker listed first.
		let seed_peer = libp2p::PeerId::from_bytes(&seed.peer_info().peer_id).unwrap();
		let seed_addr = Multiaddr::try_from(seed.peer_info().addrs[0].clone()).unwrap();
		let v1 = &nodes[0];
		let bound = Request::bound_pass(passes[0].clone(), &pair("//P2pViewer1"), &v1.peer_id);
		assert_eq!(v1.request(seed_peer, Some(seed_addr), bound).await.unwrap(), Response::Ok);
		let Response::Header(h) = v1
			.request(seed_peer, None, Request::GetHeader { stream: STREAM, sequence: 2 })
			.await
			.unwrap()
		else {
			panic!("no header from the seed")
		};
		verify_header(&h, &GENESIS, STREAM, &origin().public(), &SegmentLimits::default()).unwrap();
		let mut got = Vec::new();
		for index in 0..h.payload.chunk_hashes.len() as u32 {
			got.extend_from_slice(
				&v1.fetch_chunk(seed_peer, None, h.payload.clone(), index).await.unwrap(),
			);
		}
		assert_eq!(got, common::segment(STREAM, 2, 40_000).to_vec());
		// The second viewer's pass, presented by the first viewer, is refused: its binding names
		// the second viewer's peer id.
		let stolen =
			Request::bound_pass(passes[1].clone(), &pair("//P2pViewer2"), &nodes[1].peer_id);
		assert_eq!(refusal(v1.request(seed_peer, None, stolen).await), RefusalCode::BadPass);
		drop(viewers);
		server.shutdown().await;
	})
	.await
	.expect("test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_that_stops_signing_is_cut_off_after_the_slack_and_resumes_with_a_receipt() {
	init_logs();
	tokio::time::timeout(TEST_TIMEOUT, async {
		// Slack of 100 units (100 KiB): two 64 KiB chunks (128 units) exceed it.
		let mut cfg = config(30, "//Seeder");
		cfg.ledger.slack_units = 100;
		let seeder = P2pNode::start(cfg, store(false)).await.unwrap();
		let v = node(31, "//Unused", store(false)).await;
		let at = Some(addr(&seeder, true));
		assert_eq!(
			v.request(
				seeder.peer_id,
				at,
				Request::bound_pass(pass("//Signer"), &pair("//Signer"), &v.peer_id)
			)
			.await
			.unwrap(),
			Response::Ok
		);
		let header = segment().header.payload;
		let mut book = ReceiptBook::new(
			BookConfig { genesis_hash: GENESIS, stream: STREAM, max_seeders: 8 },
			pair("//Signer"),
		);
		let seeder_account = pair("//Seeder").public().0;
		for index in 0..2 {
			let chunk = v.fetch_chunk(seeder.peer_id, None, header.clone(), index).await.unwrap();
			book.handle_received(seeder_account, 0, chunk.len() as u64).unwrap();
		}
		// No receipt sent: the third chunk is refused, and stays refused.
		for _ in 0..2 {
			let r = v.fetch_chunk(seeder.peer_id, None, header.clone(), 2).await;
			assert!(
				matches!(&r, Err(P2pError::NotServed(s)) if s.contains("ReceiptsBehind")),
				"{r:?}"
			);
		}
		// A receipt for what arrived resumes the service.
		let receipt = book.poll_receipt(&seeder_account, 0).unwrap();
		assert_eq!(receipt.payload.units, 128);
		assert_eq!(
			v.request(seeder.peer_id, None, Request::Receipt(receipt)).await.unwrap(),
			Response::Ok
		);
		let chunk = v.fetch_chunk(seeder.peer_id, None, header.clone(), 2).await.unwrap();
		assert_eq!(chunk, segment().chunks[2]);
		// Refusals for lagging receipts are not a ban.
		assert!(!seeder.is_banned(v.peer_id).await.unwrap());
		assert!(!v.is_banned(seeder.peer_id).await.unwrap());
		// Saved on demand: the latest receipt and everything served (three chunks).
		let dir = tempfile::tempdir().unwrap();
		seeder.save_ledger(dir.path().to_path_buf()).await.unwrap().unwrap();
		let ledger = SeederLedger::load(config(30, "//Seeder").ledger, dir.path()).unwrap();
		let entry = ledger.entries().next().unwrap();
		assert_eq!(entry.receipt.as_ref().map(|r| r.payload.units), Some(128));
		let served: usize = segment().chunks[..3].iter().map(|c| c.len()).sum();
		assert_eq!(entry.served_bytes, served as u64);
	})
	.await
	.expect("test finishes in time");
}
