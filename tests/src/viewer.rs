//! A minimal viewer of a node's streaming worker: the direct protocol over TCP, every segment of
//! demo stream 0 verified against Alice's signature (the genesis demo origin); and
//! [`p2p_join`], a viewer admitted in P2P mode asking for a pass as a client would.

use crate::pair;
use dsp_primitives::{AdmissionMode, SegmentHeader, Signed, StreamId, ViewerPass};
use dsp_streaming::{
	protocol::{
		encode_frame, ErrorCode, FrameDecoder, Message, PeerInfo, Role, ServerAddrs, Start,
		PROTOCOL_VERSION,
	},
	segment::{Assembled, Assembler, SegmentLimits},
};
use sp_core::Pair;
use std::{
	io::{Read, Write},
	net::TcpStream,
	time::Duration,
};

/// What [`Viewer::media`] read.
enum Media {
	/// A segment header.
	Header(SegmentHeader),
	/// The last chunk of the segment with this sequence.
	Complete(u64),
}

/// A viewer speaking the direct protocol over TCP, verifying every segment.
pub struct Viewer {
	socket: TcpStream,
	decoder: FrameDecoder,
	/// How the worker admitted this viewer.
	pub mode: AdmissionMode,
	assembler: Assembler,
}

impl Viewer {
	/// Connects and says hello; the worker's `Welcome` sets [`Viewer::mode`].
	pub fn connect(addr: &str, genesis: [u8; 32]) -> Viewer {
		let socket = hello(addr, genesis);
		let alice = pair("//Alice").public();
		let assembler = Assembler::new(genesis, 0, alice, SegmentLimits::default());
		let mut v = Viewer {
			socket,
			decoder: FrameDecoder::new(1 << 20),
			mode: AdmissionMode::Direct,
			assembler,
		};
		match v.next() {
			Message::Welcome { mode, .. } => v.mode = mode,
			other => panic!("expected Welcome, got {other:?}"),
		}
		v
	}

	/// Connects to a worker expected to refuse the viewer: returns the streamers it redirects
	/// to (empty without a `Redirect`) and the refusal's error code, read until it closes.
	pub fn refused(addr: &str, genesis: [u8; 32]) -> (Vec<ServerAddrs>, ErrorCode) {
		let mut socket = hello(addr, genesis);
		let mut decoder = FrameDecoder::new(1 << 20);
		let mut redirect = Vec::new();
		let mut buf = [0u8; 64 * 1024];
		loop {
			match decoder.next_message().expect("well-formed frames") {
				Some(Message::Redirect { servers }) => redirect = servers,
				Some(Message::Error { code, .. }) => return (redirect, code),
				Some(other) => panic!("expected a refusal, got {other:?}"),
				None => {
					let n = socket.read(&mut buf).expect("worker answers");
					assert!(n > 0, "worker closed without an Error");
					decoder.push(&buf[..n]);
				}
			}
		}
	}

	/// The next message.
	pub fn next(&mut self) -> Message {
		loop {
			if let Some(m) = self.decoder.next_message().expect("well-formed frames") {
				return m;
			}
			let mut buf = [0u8; 64 * 1024];
			let n = self.socket.read(&mut buf).expect("worker keeps sending");
			assert!(n > 0, "worker closed the connection");
			self.decoder.push(&buf[..n]);
		}
	}

	/// Subscribes to stream 0 from `start`.
	pub fn subscribe_from(&mut self, start: Start) {
		let sub = Message::Subscribe { stream: 0, start };
		self.socket.write_all(&encode_frame(&sub)).unwrap();
	}

	/// The next segment header (its signature is checked; its chunks, as they come, by
	/// [`Viewer::segment`] or later calls): the sizes a caller reads here.
	pub fn header(&mut self) -> SegmentHeader {
		loop {
			if let Media::Header(h) = self.media() {
				return h;
			}
		}
	}

	/// Subscribes to stream 0 one segment behind the live edge.
	pub fn subscribe(&mut self) {
		let sub = Message::Subscribe { stream: 0, start: Start::Live { back: 1 } };
		self.socket.write_all(&encode_frame(&sub)).unwrap();
	}

	/// The next complete segment's sequence, every chunk verified against Alice's signature.
	pub fn segment(&mut self) -> u64 {
		loop {
			if let Media::Complete(sequence) = self.media() {
				return sequence;
			}
		}
	}

	/// Reads until a segment header or a segment's last chunk, every one verified against
	/// Alice's signature, answering pings. Sends a `Ping` first: the worker closes viewers that
	/// send nothing for its idle timeout.
	fn media(&mut self) -> Media {
		self.socket.write_all(&encode_frame(&Message::Ping(0))).expect("worker reachable");
		loop {
			match self.next() {
				Message::Header(h) => {
					let header = h.payload.clone();
					self.assembler.handle_header(h, Default::default()).expect("signed by Alice");
					return Media::Header(header);
				}
				Message::Chunk(c) => {
					if let Assembled::Complete(s) =
						self.assembler.handle_chunk(c, Default::default()).expect("chunk verifies")
					{
						return Media::Complete(s.sequence());
					}
				}
				Message::Ping(n) => {
					self.socket.write_all(&encode_frame(&Message::Pong(n))).unwrap()
				}
				Message::Pong(_) => {}
				other => panic!("unexpected {other:?}"),
			}
		}
	}
}

/// Connects to the worker at `addr` and says hello as a viewer (30 s read timeout).
fn hello(addr: &str, genesis: [u8; 32]) -> TcpStream {
	let mut socket = TcpStream::connect(addr).expect("worker accepts TCP");
	socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
	let hello =
		Message::Hello { version: PROTOCOL_VERSION, role: Role::Viewer, genesis_hash: genesis };
	socket.write_all(&encode_frame(&hello)).unwrap();
	socket
}

/// What a worker answered a P2P `Join`: the pass, or the refusal's code and reason.
pub type JoinAnswer = Result<Signed<ViewerPass>, (ErrorCode, String)>;

/// Connects to the worker at `addr`, expects to be admitted in P2P mode and sends a `Join` for
/// `stream` as `key`, with the proof of possession over this session's challenge. Returns the
/// open connection (the session stays joined while it is held) and the answer.
pub fn p2p_join(
	addr: &str,
	genesis: [u8; 32],
	stream: StreamId,
	key: &sp_core::sr25519::Pair,
) -> (TcpStream, JoinAnswer) {
	let mut socket = hello(addr, genesis);
	let mut decoder = FrameDecoder::new(1 << 20);
	let mut read = |socket: &mut TcpStream| loop {
		if let Some(m) = decoder.next_message().expect("well-formed frames") {
			return m;
		}
		let mut buf = [0u8; 64 * 1024];
		let n = socket.read(&mut buf).expect("worker answers");
		assert!(n > 0, "worker closed the connection");
		decoder.push(&buf[..n]);
	};
	let challenge = match read(&mut socket) {
		Message::Welcome { mode: AdmissionMode::P2p, challenge, .. } => challenge,
		other => panic!("expected Welcome in P2P mode, got {other:?}"),
	};
	// A peer id of the key's own bytes: unique per key, like a libp2p identity.
	let peer = PeerInfo { peer_id: key.public().0.to_vec(), addrs: vec![] };
	let proof = dsp_streaming::p2p::join::sign_join(key, &genesis, &challenge, stream, &peer);
	let join = Message::Join { stream, viewer: key.public(), peer, proof };
	socket.write_all(&encode_frame(&join)).unwrap();
	loop {
		match read(&mut socket) {
			Message::Joined { pass, .. } => return (socket, Ok(pass)),
			Message::Error { code, reason } => return (socket, Err((code, reason))),
			// Headers of the window may come first; a pass answers the Join.
			_ => {}
		}
	}
}
