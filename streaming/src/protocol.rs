//! The wire protocol: versioned, length-prefixed SCALE frames, identical over TCP and over one
//! QUIC bidirectional stream. `PROTOCOL.md` next to this crate is the normative description;
//! this module is its implementation.
//!
//! A frame is `u32 little-endian body length` followed by the body, which is the SCALE encoding
//! of one [`Message`]. The first body byte is therefore the message type (the enum index).
//!
//! Everything here is sans-IO: [`FrameDecoder`] is fed bytes and yields frames, [`encode_frame`]
//! turns a message into bytes. No socket, no clock.

use bytes::{Buf, Bytes, BytesMut};
use codec::{Decode, Encode};
use dsp_primitives::{
	AdmissionMode, Hash32, PublicKey, PublishChallenge, SegmentHeader, Signature, Signed,
	StreamEnd, StreamId, ViewerPass,
};

/// Protocol version spoken by this implementation. A peer announcing another version is refused
/// with [`ErrorCode::UnsupportedVersion`]. Version 4 made the protocol hold against attackers
/// (a per-session challenge in `Welcome` that publishers and P2P viewers sign, among others);
/// see the changelog in `PROTOCOL.md`.
pub const PROTOCOL_VERSION: u16 = 4;

/// Bytes of the random challenge a server sends in `Welcome`.
pub const CHALLENGE_LEN: usize = 32;

/// ALPN identifier of the protocol over QUIC.
pub const ALPN: &[u8] = b"dsp/1";

/// Bytes of the length prefix in front of every frame body.
pub const LENGTH_PREFIX: usize = 4;

/// Default largest frame body accepted, in bytes (256 KiB). It must hold one chunk (at most
/// [`MAX_CHUNK_SIZE`]) plus its 25-byte message header, and one segment header with its chunk
/// hashes (32 bytes each: 256 KiB allows ~8000 chunks). A reader holds at most one frame of
/// this size per connection.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 256 * 1024;

/// Largest chunk size a segment header may declare (128 KiB).
pub const MAX_CHUNK_SIZE: u32 = 128 * 1024;

/// Who opens a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode)]
pub enum Role {
	/// Receives segments of one stream.
	#[codec(index = 0)]
	Viewer,
	/// Pushes signed segments of one stream (the origin's publish client).
	#[codec(index = 1)]
	Publisher,
}

/// A direct transport. SCALE-encoded with fixed indices (it travels in [`Message::Switched`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Transport {
	/// QUIC over UDP.
	#[codec(index = 0)]
	Quic,
	/// TCP.
	#[codec(index = 1)]
	Tcp,
}

impl Transport {
	/// The other one.
	pub fn other(self) -> Self {
		match self {
			Transport::Quic => Transport::Tcp,
			Transport::Tcp => Transport::Quic,
		}
	}
}

impl std::fmt::Display for Transport {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str(match self {
			Transport::Quic => "quic",
			Transport::Tcp => "tcp",
		})
	}
}

/// Where a subscription starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode)]
pub enum Start {
	/// At the live edge: `back` segments before the newest one held (`back = 0`: the newest;
	/// if none is held yet, the first one to arrive).
	#[codec(index = 0)]
	Live {
		/// How many segments before the newest to start at.
		back: u32,
	},
	/// At this sequence number (or the oldest one still held, if it is gone).
	#[codec(index = 1)]
	At(u64),
}

/// One chunk of a segment. `data` is a slice of the received frame (zero copy).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct Chunk {
	/// Stream of the segment.
	pub stream: StreamId,
	/// Sequence number of the segment.
	pub sequence: u64,
	/// Index of the chunk in the segment header's `chunk_hashes`.
	pub index: u32,
	/// The chunk bytes.
	pub data: Bytes,
}

/// Why a connection is closed. Sent in [`Message::Error`] just before the sender closes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode)]
pub enum ErrorCode {
	/// The frame or message could not be decoded.
	#[codec(index = 0)]
	Malformed,
	/// A frame was longer than the receiver's `max_frame_len`.
	#[codec(index = 1)]
	FrameTooLarge,
	/// The message type byte is not known to the receiver.
	#[codec(index = 2)]
	UnknownMessage,
	/// A known message arrived in a state where it is not allowed.
	#[codec(index = 3)]
	UnexpectedMessage,
	/// The peer speaks another protocol version.
	#[codec(index = 4)]
	UnsupportedVersion,
	/// The peer is on another chain (genesis hash differs).
	#[codec(index = 5)]
	WrongGenesis,
	/// A segment header's signature does not verify against the stream's origin key.
	#[codec(index = 6)]
	BadSignature,
	/// A chunk does not match its hash (or its length) in the segment header.
	#[codec(index = 7)]
	BadChunk,
	/// A segment header breaks a limit or is inconsistent (sizes, chunk count, stream).
	#[codec(index = 8)]
	BadHeader,
	/// No origin key is known for the stream, or too many streams are tracked.
	#[codec(index = 9)]
	UnknownStream,
	/// The server holds no more sessions: connection limit, or the capacity rule would only
	/// admit this viewer in P2P mode, which this server does not offer (no pass-signing key,
	/// `r = 0`, or `max_p2p_sessions` reached). May follow a [`Message::Redirect`].
	#[codec(index = 10)]
	Full,
	/// Nothing was received within the idle timeout (or no hello within the hello timeout).
	#[codec(index = 11)]
	IdleTimeout,
	/// The peer did not read fast enough: its send queue or lag exceeded the limits.
	#[codec(index = 12)]
	SlowConsumer,
	/// The server is shutting down.
	#[codec(index = 13)]
	Shutdown,
	/// A memory bound of the server would be broken: the stream's origin holds its most
	/// streams, or the bytes of partly assembled segments (or of live windows) of all
	/// publishers reached the server's budget. Streams already held keep working; the reason
	/// names the bound.
	#[codec(index = 14)]
	OverBudget,
}

/// Longest libp2p peer id accepted in a [`PeerInfo`], in bytes (an ed25519 `PeerId` is 38;
/// 64 leaves room for other key types with inline keys).
pub const MAX_PEER_ID_LEN: usize = 64;
/// Most addresses in one [`PeerInfo`].
pub const MAX_PEER_ADDRS: usize = 8;
/// Longest address (binary multiaddr) in a [`PeerInfo`], in bytes.
pub const MAX_PEER_ADDR_LEN: usize = 128;
/// Most peers a server puts in one `Joined` (the decoder refuses more).
pub const MAX_JOINED_PEERS: usize = 64;

/// A P2P peer as the tracker hands it out: its libp2p peer id and listen addresses, both in
/// libp2p's binary encodings (`PeerId::to_bytes`, `Multiaddr::to_vec`), opaque to the server.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct PeerInfo {
	/// `PeerId` bytes, at most [`MAX_PEER_ID_LEN`].
	pub peer_id: Vec<u8>,
	/// Multiaddr bytes, at most [`MAX_PEER_ADDRS`] of at most [`MAX_PEER_ADDR_LEN`] each.
	pub addrs: Vec<Vec<u8>>,
}

impl PeerInfo {
	/// Checks the size limits; the reason if one is broken.
	pub fn check(&self) -> Result<(), &'static str> {
		if self.peer_id.is_empty() || self.peer_id.len() > MAX_PEER_ID_LEN {
			return Err("peer_id empty or longer than MAX_PEER_ID_LEN");
		}
		if self.addrs.len() > MAX_PEER_ADDRS {
			return Err("more than MAX_PEER_ADDRS addresses");
		}
		if self.addrs.iter().any(|a| a.is_empty() || a.len() > MAX_PEER_ADDR_LEN) {
			return Err("address empty or longer than MAX_PEER_ADDR_LEN");
		}
		Ok(())
	}
}

/// Most streamers in one [`Message::Redirect`] (the decoder refuses more). Eight spread
/// refused viewers over enough others while keeping the message small (at most ~2 KiB).
pub const MAX_REDIRECT_SERVERS: usize = 8;
/// Longest address text in a [`ServerAddrs`], in bytes: room for a DNS name and a port.
pub const MAX_SERVER_ADDR_LEN: usize = 128;

/// Another streamer of the same chain, as streamers register themselves on chain: `host:port`
/// text per transport (a DNS name or an IP literal, `[..]` around IPv6), resolved by the viewer.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Encode, Decode)]
pub struct ServerAddrs {
	/// TCP endpoint, `host:port`.
	pub tcp: Option<String>,
	/// QUIC endpoint, `host:port`.
	pub quic: Option<String>,
}

impl ServerAddrs {
	/// Checks the size limits: at least one address, each 1..=[`MAX_SERVER_ADDR_LEN`] bytes.
	pub fn check(&self) -> Result<(), &'static str> {
		if self.tcp.is_none() && self.quic.is_none() {
			return Err("no address");
		}
		let bad = |a: &Option<String>| {
			a.as_ref().is_some_and(|a| a.is_empty() || a.len() > MAX_SERVER_ADDR_LEN)
		};
		if bad(&self.tcp) || bad(&self.quic) {
			return Err("address empty or longer than MAX_SERVER_ADDR_LEN");
		}
		Ok(())
	}

	/// The address text for `transport`.
	pub fn get(&self, transport: Transport) -> Option<&str> {
		match transport {
			Transport::Tcp => self.tcp.as_deref(),
			Transport::Quic => self.quic.as_deref(),
		}
	}
}

impl std::fmt::Display for ServerAddrs {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		match (&self.tcp, &self.quic) {
			(Some(t), Some(q)) => write!(f, "tcp://{t} quic://{q}"),
			(Some(t), None) => write!(f, "tcp://{t}"),
			(None, Some(q)) => write!(f, "quic://{q}"),
			(None, None) => f.write_str("(no address)"),
		}
	}
}

/// Every message of the protocol. The enum index is the message type byte on the wire.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub enum Message {
	/// First frame of the client: who it is and which chain it is on.
	#[codec(index = 0)]
	Hello {
		/// [`PROTOCOL_VERSION`] of the client.
		version: u16,
		/// Viewer or publisher.
		role: Role,
		/// Genesis hash of the chain the client's streams are registered on.
		genesis_hash: Hash32,
	},
	/// The server's answer to `Hello`.
	#[codec(index = 1)]
	Welcome {
		/// [`PROTOCOL_VERSION`] of the server.
		version: u16,
		/// How the viewer is served (publishers always get `Direct`).
		mode: AdmissionMode,
		/// Largest frame body the server accepts.
		max_frame_len: u32,
		/// Random bytes fresh for this session. A client proves that it holds a key by signing
		/// them (a publisher the origin key, a P2P viewer its viewer key), so a proof captured
		/// on one connection is worthless on any other.
		challenge: [u8; CHALLENGE_LEN],
	},
	/// Viewer → server: send me the segments of `stream` from `start` on, as they come.
	#[codec(index = 2)]
	Subscribe {
		/// Stream to receive.
		stream: StreamId,
		/// First segment wanted.
		start: Start,
	},
	/// Publisher → server, after `Welcome`: the segments that follow belong to `stream`.
	#[codec(index = 3)]
	Publish {
		/// Stream to publish.
		stream: StreamId,
		/// The stream's origin key signs [`PublishChallenge`] (genesis hash, this session's
		/// `Welcome` challenge, `stream`; see [`publish_proof`]): the server gives a slot only
		/// to a publisher that holds the key, and a proof from another session does not verify.
		proof: Signature,
	},
	/// A signed segment header; its chunks follow in order, each in a `Chunk` frame.
	#[codec(index = 4)]
	Header(Signed<SegmentHeader>),
	/// One chunk of the segment whose header came last.
	#[codec(index = 5)]
	Chunk(Chunk),
	/// Server → publisher: segment `sequence` is stored (or was already held).
	#[codec(index = 6)]
	Ack {
		/// Stream of the segment.
		stream: StreamId,
		/// Its sequence number.
		sequence: u64,
	},
	/// The stream ended: no segment with a sequence of `next_sequence` or more will follow.
	/// Signed by the origin like a header, so that nobody else can end a stream; the server
	/// forwards the publisher's signed message unchanged.
	#[codec(index = 7)]
	End(Signed<StreamEnd>),
	/// Keep-alive and RTT probe; the peer answers `Pong` with the same nonce.
	#[codec(index = 8)]
	Ping(u64),
	/// Answer to `Ping`.
	#[codec(index = 9)]
	Pong(u64),
	/// The sender closes the connection for this reason.
	#[codec(index = 10)]
	Error {
		/// Machine-readable reason.
		code: ErrorCode,
		/// Human-readable detail (UTF-8).
		reason: String,
	},
	/// Server → publisher, the answer to `Publish`: the broadcast the server holds (not ended)
	/// and the next sequence it will store of it (one past the newest it holds; 0 without a
	/// broadcast). A restarted publisher continues that broadcast from here; segments below it
	/// are already held. A publisher of another broadcast starts its own from 0 (a newer one
	/// replaces what the server holds, an older one is refused).
	#[codec(index = 11)]
	Expect {
		/// The stream.
		stream: StreamId,
		/// The broadcast the server holds and that has not ended, if any.
		broadcast: Option<u64>,
		/// Next sequence of that broadcast the server stores.
		next_sequence: u64,
	},
	/// Server → viewer, right before `Error { code: Full }`: the server refuses the viewer for
	/// capacity; these other streamers (of the same chain) may have room. At most
	/// [`MAX_REDIRECT_SERVERS`], each within [`ServerAddrs::check`].
	#[codec(index = 12)]
	Redirect {
		/// Other streamers, the one to try first first.
		servers: Vec<ServerAddrs>,
	},
	/// Viewer → server, right after `Subscribe` on a connection the viewer opened to switch
	/// transport away from `from`. Telemetry only: the server counts it.
	#[codec(index = 13)]
	Switched {
		/// The transport the viewer leaves.
		from: Transport,
	},
	/// Viewer → server, after `Welcome { mode: P2p }`: join the swarm of `stream`.
	#[codec(index = 16)]
	Join {
		/// Stream to watch.
		stream: StreamId,
		/// The viewer's sr25519 key: the pass names it and it signs the receipts.
		viewer: PublicKey,
		/// How other peers reach the viewer.
		peer: PeerInfo,
		/// Proof that the client holds `viewer`: its signature of
		/// `SCALE(("dsp/join/v1", genesis_hash, challenge, stream, peer))` with this session's
		/// `Welcome` challenge ([`crate::p2p::join::sign_join`]). No pass without it.
		proof: Signature,
	},
	/// Server → viewer: the answer to `Join`.
	#[codec(index = 17)]
	Joined {
		/// The viewer's pass for this stream and epoch, signed by the server's pass signer.
		pass: Signed<ViewerPass>,
		/// Other peers of the swarm, newest first, at most [`MAX_JOINED_PEERS`].
		peers: Vec<PeerInfo>,
	},
	/// Viewer → server (P2P mode): send chunk `index` of segment `sequence` now (an urgent gap
	/// no peer filled). Answered with that segment's `Header` and the `Chunk`, or `NotHeld`.
	#[codec(index = 18)]
	Fetch {
		/// Stream (the joined one).
		stream: StreamId,
		/// Segment.
		sequence: u64,
		/// Chunk index.
		index: u32,
	},
	/// Server → viewer: the answer to a `Fetch` for a chunk the server does not hold.
	#[codec(index = 19)]
	NotHeld {
		/// Stream.
		stream: StreamId,
		/// Segment.
		sequence: u64,
		/// Chunk index.
		index: u32,
	},
	/// Server → P2P viewer, while it stays joined: a renewed pass for the joined stream (every
	/// half `pass_period`, and at each epoch change), covering the time joined so far. It
	/// replaces the viewer's pass; the viewer shows it to its seeders.
	#[codec(index = 20)]
	Pass(Signed<ViewerPass>),
}

/// The `proof` of a [`Message::Publish`] for `stream` on the session whose `Welcome` carried
/// `challenge`, signed with the stream's origin key `origin`.
pub fn publish_proof(
	origin: &sp_core::sr25519::Pair,
	genesis_hash: Hash32,
	challenge: [u8; CHALLENGE_LEN],
	stream: StreamId,
) -> Signature {
	Signed::sign(PublishChallenge { genesis_hash, challenge, stream }, origin).signature
}

/// Whether `proof` is [`publish_proof`] for this session (`challenge`) and `stream` by the
/// holder of `origin_key`.
pub fn verify_publish_proof(
	origin_key: &PublicKey,
	genesis_hash: Hash32,
	challenge: [u8; CHALLENGE_LEN],
	stream: StreamId,
	proof: &Signature,
) -> bool {
	let payload = PublishChallenge { genesis_hash, challenge, stream };
	Signed { payload, signature: *proof }.verify(origin_key)
}

/// Whether `kind` is a message type byte defined by this version: 0..=13 for the direct
/// protocol (14 and 15 are reserved for it), 16..=20 for the P2P tracker (16..=23 are reserved
/// for it).
fn is_known_type(kind: u8) -> bool {
	kind <= 13 || (16..=20).contains(&kind)
}

impl Message {
	/// Short name for logs.
	pub fn kind(&self) -> &'static str {
		match self {
			Message::Hello { .. } => "hello",
			Message::Welcome { .. } => "welcome",
			Message::Subscribe { .. } => "subscribe",
			Message::Publish { .. } => "publish",
			Message::Header(_) => "header",
			Message::Chunk(_) => "chunk",
			Message::Ack { .. } => "ack",
			Message::End(_) => "end",
			Message::Ping(_) => "ping",
			Message::Pong(_) => "pong",
			Message::Error { .. } => "error",
			Message::Expect { .. } => "expect",
			Message::Redirect { .. } => "redirect",
			Message::Switched { .. } => "switched",
			Message::Join { .. } => "join",
			Message::Joined { .. } => "joined",
			Message::Fetch { .. } => "fetch",
			Message::NotHeld { .. } => "not_held",
			Message::Pass(_) => "pass",
		}
	}

	/// An `Error` message.
	pub fn error(code: ErrorCode, reason: impl Into<String>) -> Self {
		Message::Error { code, reason: reason.into() }
	}
}

/// A frame could not be read or decoded. The connection cannot continue after any of these: the
/// byte stream is no longer known to be aligned on frame boundaries.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
	/// The length prefix announced more than the allowed maximum.
	#[error("frame of {len} bytes exceeds max_frame_len {max}")]
	TooLarge {
		/// Announced body length.
		len: u32,
		/// Allowed maximum.
		max: u32,
	},
	/// A frame with an empty body (no message type).
	#[error("empty frame")]
	Empty,
	/// The type byte is not a message of this protocol version.
	#[error("unknown message type {0}")]
	UnknownMessage(u8),
	/// The body does not decode as the message its type byte names, or has trailing bytes.
	#[error("malformed {kind} message: {detail}")]
	Malformed {
		/// Message type byte.
		kind: u8,
		/// Decoder detail.
		detail: String,
	},
	/// The peer closed in the middle of a frame.
	#[error("connection closed inside a frame ({buffered} bytes buffered)")]
	Truncated {
		/// Bytes of the incomplete frame that were received.
		buffered: usize,
	},
}

impl FrameError {
	/// The error code to send to the peer before closing.
	pub fn code(&self) -> ErrorCode {
		match self {
			FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
			FrameError::UnknownMessage(_) => ErrorCode::UnknownMessage,
			FrameError::Empty | FrameError::Malformed { .. } | FrameError::Truncated { .. } => {
				ErrorCode::Malformed
			}
		}
	}
}

/// Encodes `msg` as one frame (length prefix + SCALE body).
pub fn encode_frame(msg: &Message) -> Bytes {
	let mut out = Vec::with_capacity(LENGTH_PREFIX + msg.size_hint());
	out.extend_from_slice(&[0; LENGTH_PREFIX]);
	msg.encode_to(&mut out);
	let body_len = (out.len() - LENGTH_PREFIX) as u32;
	out[..LENGTH_PREFIX].copy_from_slice(&body_len.to_le_bytes());
	Bytes::from(out)
}

/// Decodes one frame body (without the length prefix). `Bytes` fields of the message are
/// slices of `body`, not copies.
pub fn decode_body(body: Bytes) -> Result<Message, FrameError> {
	let Some(&kind) = body.first() else { return Err(FrameError::Empty) };
	if !is_known_type(kind) {
		return Err(FrameError::UnknownMessage(kind));
	}
	let total = body.len();
	// Decode, then re-measure: SCALE has no framing of its own, so trailing bytes would be
	// silently ignored otherwise.
	let msg: Message = codec::decode_from_bytes(body)
		.map_err(|e| FrameError::Malformed { kind, detail: e.to_string() })?;
	if let Message::Joined { peers, .. } = &msg {
		if peers.len() > MAX_JOINED_PEERS || peers.iter().any(|p| p.check().is_err()) {
			return Err(FrameError::Malformed { kind, detail: "peer list over its limits".into() });
		}
	}
	if let Message::Redirect { servers } = &msg {
		if servers.len() > MAX_REDIRECT_SERVERS || servers.iter().any(|s| s.check().is_err()) {
			return Err(FrameError::Malformed {
				kind,
				detail: "server list over its limits".into(),
			});
		}
	}
	if msg.encoded_size() != total {
		return Err(FrameError::Malformed {
			kind,
			detail: format!("{} trailing bytes", total.saturating_sub(msg.encoded_size())),
		});
	}
	Ok(msg)
}

/// Splits a byte stream into frames. Sans-IO: the driver reads into [`FrameDecoder::buffer`]
/// and then calls [`FrameDecoder::next_frame`] until it returns `Ok(None)`.
///
/// Memory: the buffer holds at most one incomplete frame (`max_frame_len + 4` bytes) plus
/// whatever one read added; a length prefix above `max_frame_len` is refused as soon as its four
/// bytes are in, before any of the body is buffered.
#[derive(Debug)]
pub struct FrameDecoder {
	buf: BytesMut,
	max_frame_len: u32,
}

impl FrameDecoder {
	/// Read granularity: how much room is reserved before each read.
	const READ_RESERVE: usize = 16 * 1024;

	/// A decoder refusing bodies longer than `max_frame_len`.
	pub fn new(max_frame_len: u32) -> Self {
		Self { buf: BytesMut::with_capacity(Self::READ_RESERVE), max_frame_len }
	}

	/// The buffer to read into; room for at least one read is reserved.
	pub fn buffer(&mut self) -> &mut BytesMut {
		let want = match self.announced_len() {
			Some(len) => (LENGTH_PREFIX + len as usize).saturating_sub(self.buf.len()),
			None => 0,
		}
		.clamp(Self::READ_RESERVE, 256 * 1024);
		self.buf.reserve(want);
		&mut self.buf
	}

	/// Appends bytes (for tests and for drivers that do not read into [`Self::buffer`]).
	pub fn push(&mut self, data: &[u8]) {
		self.buf.extend_from_slice(data);
	}

	fn announced_len(&self) -> Option<u32> {
		(self.buf.len() >= LENGTH_PREFIX)
			.then(|| u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]))
	}

	/// The next complete frame body, if one is buffered.
	pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
		let Some(len) = self.announced_len() else { return Ok(None) };
		if len > self.max_frame_len {
			return Err(FrameError::TooLarge { len, max: self.max_frame_len });
		}
		if len == 0 {
			return Err(FrameError::Empty);
		}
		let total = LENGTH_PREFIX + len as usize;
		if self.buf.len() < total {
			return Ok(None);
		}
		let mut frame = self.buf.split_to(total);
		frame.advance(LENGTH_PREFIX);
		Ok(Some(frame.freeze()))
	}

	/// The next complete message, if one is buffered.
	pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
		match self.next_frame()? {
			Some(body) => decode_body(body).map(Some),
			None => Ok(None),
		}
	}

	/// Call when the peer closed its sending side: an error if a frame was cut short.
	pub fn finish(&self) -> Result<(), FrameError> {
		if self.buf.is_empty() {
			Ok(())
		} else {
			Err(FrameError::Truncated { buffered: self.buf.len() })
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use sp_core::Pair;

	fn header_msg() -> Message {
		let pair = sp_core::sr25519::Pair::from_string("//Origin", None).unwrap();
		let header = SegmentHeader {
			genesis_hash: [7; 32],
			stream: 3,
			broadcast: 1,
			sequence: 9,
			duration_ms: 2000,
			byte_len: 10,
			chunk_size: 8,
			chunk_hashes: vec![[1; 32], [2; 32]],
		};
		Message::Header(Signed::sign(header, &pair))
	}

	/// A pass of stream 1 for viewer `[3; 32]`, signed by `//Origin`.
	fn test_pass(epoch: u32, max_units: u64) -> Signed<ViewerPass> {
		let origin = sp_core::sr25519::Pair::from_string("//Origin", None).unwrap();
		let pass = ViewerPass {
			genesis_hash: [7; 32],
			stream: 1,
			epoch,
			viewer: PublicKey::from_raw([3; 32]),
			max_units,
			issuer: origin.public(),
		};
		Signed::sign(pass, &origin)
	}

	fn all_messages() -> Vec<Message> {
		vec![
			Message::Hello { version: 1, role: Role::Viewer, genesis_hash: [0; 32] },
			Message::Welcome {
				version: 1,
				mode: AdmissionMode::Direct,
				max_frame_len: 5,
				challenge: [9; CHALLENGE_LEN],
			},
			Message::Subscribe { stream: 1, start: Start::Live { back: 2 } },
			Message::Subscribe { stream: 1, start: Start::At(77) },
			Message::Publish {
				stream: 4,
				proof: publish_proof(
					&sp_core::sr25519::Pair::from_string("//Origin", None).unwrap(),
					[7; 32],
					[9; CHALLENGE_LEN],
					4,
				),
			},
			header_msg(),
			Message::Chunk(Chunk {
				stream: 1,
				sequence: 2,
				index: 3,
				data: Bytes::from_static(b"abc"),
			}),
			Message::Ack { stream: 1, sequence: 2 },
			Message::End(Signed::sign(
				StreamEnd { genesis_hash: [7; 32], stream: 1, broadcast: 0, next_sequence: 5 },
				&sp_core::sr25519::Pair::from_string("//Origin", None).unwrap(),
			)),
			Message::Ping(1),
			Message::Pong(2),
			Message::error(ErrorCode::BadChunk, "nope"),
			Message::Expect { stream: 1, broadcast: Some(7), next_sequence: 42 },
			Message::Join {
				stream: 1,
				viewer: PublicKey::from_raw([3; 32]),
				peer: PeerInfo { peer_id: vec![1; 38], addrs: vec![vec![4, 127, 0, 0, 1]] },
				proof: Signature::from_raw([5; 64]),
			},
			Message::Joined {
				pass: test_pass(0, 9),
				peers: vec![PeerInfo { peer_id: vec![2; 38], addrs: vec![] }],
			},
			Message::Fetch { stream: 1, sequence: 2, index: 3 },
			Message::NotHeld { stream: 1, sequence: 2, index: 3 },
			Message::Pass(test_pass(2, 10)),
			Message::Redirect {
				servers: vec![
					ServerAddrs {
						tcp: Some("streamer-b.example:7700".into()),
						quic: Some("[::1]:7701".into()),
					},
					ServerAddrs { tcp: None, quic: Some("10.0.0.2:7701".into()) },
				],
			},
			Message::Switched { from: Transport::Quic },
			Message::Switched { from: Transport::Tcp },
		]
	}

	#[test]
	fn every_message_round_trips_through_frames() {
		let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
		let msgs = all_messages();
		for m in &msgs {
			dec.push(&encode_frame(m));
		}
		for m in &msgs {
			assert_eq!(dec.next_message().unwrap().as_ref(), Some(m));
		}
		assert_eq!(dec.next_message().unwrap(), None);
		dec.finish().unwrap();
	}

	#[test]
	fn frames_decode_when_fed_one_byte_at_a_time() {
		let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
		let mut out = Vec::new();
		// sr25519 signatures are randomised: encode one set of messages and compare with it.
		let msgs = all_messages();
		for m in msgs.clone() {
			for b in encode_frame(&m).iter() {
				dec.push(&[*b]);
				while let Some(m) = dec.next_message().unwrap() {
					out.push(m);
				}
			}
		}
		assert_eq!(out, msgs);
	}

	#[test]
	fn chunk_data_is_a_slice_of_the_frame() {
		let frame = encode_frame(&Message::Chunk(Chunk {
			stream: 1,
			sequence: 2,
			index: 0,
			data: Bytes::from(vec![9u8; 1000]),
		}));
		let body = frame.slice(LENGTH_PREFIX..);
		let Message::Chunk(c) = decode_body(body.clone()).unwrap() else { panic!() };
		// `slice_ref` panics unless `c.data` points into `body`.
		assert_eq!(body.slice_ref(&c.data).len(), 1000);
	}

	#[test]
	fn oversized_frame_is_refused_before_its_body_arrives() {
		let mut dec = FrameDecoder::new(100);
		dec.push(&101u32.to_le_bytes());
		assert_eq!(dec.next_frame(), Err(FrameError::TooLarge { len: 101, max: 100 }));
		assert_eq!(FrameError::TooLarge { len: 1, max: 0 }.code(), ErrorCode::FrameTooLarge);
	}

	#[test]
	fn empty_unknown_and_garbage_frames_are_errors() {
		let mut dec = FrameDecoder::new(100);
		dec.push(&0u32.to_le_bytes());
		assert_eq!(dec.next_frame(), Err(FrameError::Empty));

		let mut dec = FrameDecoder::new(100);
		dec.push(&[1, 0, 0, 0, 200]);
		assert_eq!(dec.next_message(), Err(FrameError::UnknownMessage(200)));
		// Between the direct and the tracker messages, and past the tracker's.
		for kind in [14u8, 15, 21, 23] {
			assert_eq!(decode_body(Bytes::from(vec![kind])), Err(FrameError::UnknownMessage(kind)));
		}

		// A Hello whose role byte is out of range.
		let mut dec = FrameDecoder::new(100);
		dec.push(&[4, 0, 0, 0, 0, 1, 0, 9]);
		assert!(matches!(dec.next_message(), Err(FrameError::Malformed { kind: 0, .. })));

		// Plain text (an HTTP request) announces a huge first frame.
		let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
		dec.push(b"GET / HTTP/1.1\r\n\r\n");
		assert!(matches!(dec.next_frame(), Err(FrameError::TooLarge { .. })));
	}

	#[test]
	fn joined_peer_lists_over_their_limits_are_malformed() {
		let pass = all_messages()
			.into_iter()
			.find_map(|m| match m {
				Message::Joined { pass, .. } => Some(pass),
				_ => None,
			})
			.expect("all_messages has a Joined");
		let peer = PeerInfo { peer_id: vec![1; 38], addrs: vec![] };
		let too_many =
			Message::Joined { pass: pass.clone(), peers: vec![peer; MAX_JOINED_PEERS + 1] };
		let long_id = Message::Joined {
			pass,
			peers: vec![PeerInfo { peer_id: vec![1; MAX_PEER_ID_LEN + 1], addrs: vec![] }],
		};
		for m in [too_many, long_id] {
			let body = encode_frame(&m).slice(LENGTH_PREFIX..);
			assert!(matches!(decode_body(body), Err(FrameError::Malformed { kind: 17, .. })));
		}
		assert!(PeerInfo { peer_id: vec![1], addrs: vec![vec![]] }.check().is_err());
		assert!(PeerInfo { peer_id: vec![1], addrs: vec![vec![1]; MAX_PEER_ADDRS + 1] }
			.check()
			.is_err());
	}

	#[test]
	fn redirect_and_switched_have_fixed_encodings() {
		// Type byte, then the fields: Transport is one index byte (QUIC 0, TCP 1).
		assert_eq!(Message::Switched { from: Transport::Quic }.encode(), vec![13, 0]);
		assert_eq!(Message::Switched { from: Transport::Tcp }.encode(), vec![13, 1]);
		// One server, TCP only: compact(1), Some, compact(3) "a:1", None.
		let m = Message::Redirect {
			servers: vec![ServerAddrs { tcp: Some("a:1".into()), quic: None }],
		};
		assert_eq!(m.encode(), vec![12, 4, 1, 12, b'a', b':', b'1', 0]);
		// A transport byte out of range is malformed.
		assert!(matches!(
			decode_body(Bytes::from_static(&[13, 2])),
			Err(FrameError::Malformed { kind: 13, .. })
		));
	}

	#[test]
	fn redirect_lists_over_their_limits_are_malformed() {
		let one = ServerAddrs { tcp: Some("10.0.0.1:7700".into()), quic: None };
		let long = "a".repeat(MAX_SERVER_ADDR_LEN + 1);
		let over = [
			vec![one.clone(); MAX_REDIRECT_SERVERS + 1],
			vec![ServerAddrs { tcp: None, quic: Some(long) }],
			vec![ServerAddrs { tcp: Some(String::new()), quic: None }],
			vec![ServerAddrs::default()],
		];
		for servers in over {
			let body = encode_frame(&Message::Redirect { servers }).slice(LENGTH_PREFIX..);
			assert!(matches!(decode_body(body), Err(FrameError::Malformed { kind: 12, .. })));
		}
		// At the limits it decodes.
		let max = ServerAddrs {
			tcp: Some("t".repeat(MAX_SERVER_ADDR_LEN)),
			quic: Some("q".repeat(MAX_SERVER_ADDR_LEN)),
		};
		let m = Message::Redirect { servers: vec![max; MAX_REDIRECT_SERVERS] };
		assert_eq!(decode_body(encode_frame(&m).slice(LENGTH_PREFIX..)), Ok(m));
	}

	#[test]
	fn trailing_bytes_are_malformed() {
		let frame = encode_frame(&Message::Ping(5));
		let mut body = frame[LENGTH_PREFIX..].to_vec();
		body.push(0);
		let err = decode_body(Bytes::from(body)).unwrap_err();
		assert!(matches!(err, FrameError::Malformed { kind: 8, .. }), "{err}");
	}

	#[test]
	fn truncated_frame_is_reported_at_finish() {
		let frame = encode_frame(&Message::Ping(5));
		let mut dec = FrameDecoder::new(100);
		dec.push(&frame[..frame.len() - 1]);
		assert_eq!(dec.next_frame(), Ok(None));
		assert!(matches!(dec.finish(), Err(FrameError::Truncated { .. })));
	}

	#[test]
	fn chunk_length_prefix_beyond_frame_is_malformed() {
		// A chunk message claiming more data than the frame holds.
		let mut body = vec![5u8];
		body.extend(1u64.encode());
		body.extend(2u64.encode());
		body.extend(0u32.encode());
		body.extend(codec::Compact(1000u32).encode());
		body.extend([0u8; 10]);
		assert!(matches!(
			decode_body(Bytes::from(body)),
			Err(FrameError::Malformed { kind: 5, .. })
		));
	}
}
