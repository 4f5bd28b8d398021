//! A minimal viewer of a node's streaming worker: the direct protocol over TCP, every segment of
//! demo stream 0 verified against Alice's signature (the genesis demo origin).

use crate::pair;
use dsp_primitives::AdmissionMode;
use dsp_streaming::{
	protocol::{
		encode_frame, ErrorCode, FrameDecoder, Message, Role, ServerAddrs, Start, PROTOCOL_VERSION,
	},
	segment::{Assembled, Assembler, SegmentLimits},
};
use sp_core::Pair;
use std::{
	io::{Read, Write},
	net::TcpStream,
	time::Duration,
};

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
		let mut socket = TcpStream::connect(addr).expect("worker accepts TCP");
		socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
		let hello =
			Message::Hello { version: PROTOCOL_VERSION, role: Role::Viewer, genesis_hash: genesis };
		socket.write_all(&encode_frame(&hello)).unwrap();
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
		let mut socket = TcpStream::connect(addr).expect("worker accepts TCP");
		socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
		let hello =
			Message::Hello { version: PROTOCOL_VERSION, role: Role::Viewer, genesis_hash: genesis };
		socket.write_all(&encode_frame(&hello)).unwrap();
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

	/// Subscribes to stream 0 one segment behind the live edge.
	pub fn subscribe(&mut self) {
		let sub = Message::Subscribe { stream: 0, start: Start::Live { back: 1 } };
		self.socket.write_all(&encode_frame(&sub)).unwrap();
	}

	/// The next complete segment's sequence, every chunk verified against Alice's signature.
	/// Sends a `Ping` first: the worker closes viewers that send nothing for its idle timeout.
	pub fn segment(&mut self) -> u64 {
		self.socket.write_all(&encode_frame(&Message::Ping(0))).expect("worker reachable");
		loop {
			match self.next() {
				Message::Header(h) => {
					self.assembler.handle_header(h, Default::default()).expect("signed by Alice")
				}
				Message::Chunk(c) => {
					if let Assembled::Complete(s) =
						self.assembler.handle_chunk(c, Default::default()).expect("chunk verifies")
					{
						return s.sequence();
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
