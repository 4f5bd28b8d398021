//! The P2P request/response protocol between viewers (`/dsp/p2p/1`): what a peer may ask of
//! another and what it gets back, SCALE-encoded, one request and one response per libp2p
//! substream. `PROTOCOL.md` section 8 is the normative description.
//!
//! A substream carries exactly one request (the requester then closes its writing side) and one
//! response (the responder then closes). There is no length prefix: the message is everything
//! up to the end of the substream, read with `take(max + 1)` so that a peer can never make the
//! reader buffer more than the configured maximum; one byte more than the maximum is
//! [`WireError::TooLarge`].
//!
//! Decoding is strict: trailing bytes, unknown variants and counts above the limits
//! ([`WireLimits`]) are errors. A bad request is answered `Refused{BadRequest}` and counted
//! against the peer (see [`CodecRequest`]); a bad response fails the request.

use bytes::Bytes;
use codec::{Decode, DecodeAll, Encode};
use dsp_primitives::{Receipt, SegmentHeader, Signature, Signed, StreamId, ViewerPass};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::PeerId;
use std::io;

/// libp2p protocol name. A change that old peers would misread gets a new name
/// (`/dsp/p2p/2`), which libp2p negotiates per substream.
pub const PROTOCOL_NAME: &str = "/dsp/p2p/1";

/// One chunk set of one segment in a [`Request::Have`]: the chunks of segment `sequence` that
/// the sender holds (verified) and may serve.
///
/// Bit order: chunk `i` is bit `i % 8` (least significant first) of byte `i / 8`. Bytes past the
/// last one with a set bit may be left out, so an empty `bits` means "none of this segment"; bits
/// past the segment's chunk count are ignored by the receiver.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct HaveSegment {
	/// Segment sequence number.
	pub sequence: u64,
	/// Chunk bitfield, see the type's docs for the bit order.
	pub bits: Vec<u8>,
}

impl HaveSegment {
	/// A bitfield with the given chunk indices set.
	pub fn from_indices(sequence: u64, indices: impl IntoIterator<Item = u32>) -> Self {
		let mut bits = Vec::new();
		for i in indices {
			let byte = (i / 8) as usize;
			if bits.len() <= byte {
				bits.resize(byte + 1, 0);
			}
			bits[byte] |= 1 << (i % 8);
		}
		Self { sequence, bits }
	}

	/// Whether chunk `index` is held.
	pub fn has(&self, index: u32) -> bool {
		self.bits.get((index / 8) as usize).is_some_and(|b| b & (1 << (index % 8)) != 0)
	}
}

/// Domain tag of a pass's peer binding (see [`Request::Pass`]).
pub const PEER_BINDING_DOMAIN: &[u8] = b"dsp/p2p-peer/v1";

/// A peer identity a pass can be bound to: libp2p's [`PeerId`] on the network. The sans-IO
/// cores ([`super::serving::Serving`]) are generic over it, as the scheduler is over its peers.
pub trait PeerIdentity {
	/// The identity's bytes in the pass binding ([`peer_binding_payload`]).
	fn binding_bytes(&self) -> Vec<u8>;
}

impl PeerIdentity for PeerId {
	fn binding_bytes(&self) -> Vec<u8> {
		self.to_bytes()
	}
}

/// The bytes a viewer signs to bind its pass to its libp2p identity:
/// `SCALE(("dsp/p2p-peer/v1", genesis_hash, stream, epoch, peer_id bytes))`.
pub fn peer_binding_payload<P: PeerIdentity + ?Sized>(pass: &ViewerPass, peer: &P) -> Vec<u8> {
	(PEER_BINDING_DOMAIN, pass.genesis_hash, pass.stream, pass.epoch, peer.binding_bytes()).encode()
}

/// Whether `binding` is the pass viewer's signature binding the pass to `peer`.
pub fn verify_peer_binding<P: PeerIdentity + ?Sized>(
	pass: &ViewerPass,
	peer: &P,
	binding: &Signature,
) -> bool {
	use sp_core::Pair as _;
	sp_core::sr25519::Pair::verify(binding, peer_binding_payload(pass, peer), &pass.viewer)
}

/// What a peer asks of another peer. The first request on a connection must be `Pass`: nothing
/// else is served to a peer that has not shown a valid viewer pass for the stream.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub enum Request {
	/// The requester's viewer pass for one stream, signed by a pass signer the origin authorised,
	/// and bound to the requester's libp2p identity by the pass's viewer key: without the
	/// binding, a seeder shown the pass could replay it to other seeders and use up the viewer's
	/// receipt slack there. Answered `Ok` (or `Refused{BadPass}`). Build it with
	/// [`Request::bound_pass`].
	#[codec(index = 0)]
	Pass {
		/// The pass.
		pass: Signed<ViewerPass>,
		/// sr25519 signature by `pass.viewer` over [`peer_binding_payload`] for the requester.
		binding: Signature,
	},
	/// The origin-signed header of a segment. Answered `Header` or `Refused{NotHeld}`.
	#[codec(index = 1)]
	GetHeader {
		/// Stream.
		stream: StreamId,
		/// Segment sequence number.
		sequence: u64,
	},
	/// One chunk of a segment. Answered `Chunk` or `Refused`.
	#[codec(index = 2)]
	GetChunk {
		/// Stream.
		stream: StreamId,
		/// Segment sequence number.
		sequence: u64,
		/// Chunk index in the header's `chunk_hashes`.
		index: u32,
	},
	/// What the requester holds: at most [`WireLimits::max_have_segments`] segments, each
	/// bitfield at most [`WireLimits::max_have_bits_bytes`]. Answered `Ok`.
	#[codec(index = 3)]
	Have {
		/// Stream.
		stream: StreamId,
		/// Chunk sets, one per segment.
		segments: Vec<HaveSegment>,
	},
	/// The requester's latest cumulative receipt for the responder (the responder is the
	/// seeder). Answered `Ok` or `Refused{BadReceipt}`.
	#[codec(index = 4)]
	Receipt(Signed<Receipt>),
}

impl Request {
	/// A `Pass` request for a node whose libp2p identity is `peer`, bound by `viewer` (the key
	/// the pass names).
	pub fn bound_pass(
		pass: Signed<ViewerPass>,
		viewer: &sp_core::sr25519::Pair,
		peer: &impl PeerIdentity,
	) -> Self {
		use sp_core::Pair as _;
		let binding = viewer.sign(&peer_binding_payload(&pass.payload, peer));
		Request::Pass { pass, binding }
	}

	/// Short name for logs.
	pub fn kind(&self) -> &'static str {
		match self {
			Request::Pass { .. } => "pass",
			Request::GetHeader { .. } => "get_header",
			Request::GetChunk { .. } => "get_chunk",
			Request::Have { .. } => "have",
			Request::Receipt(_) => "receipt",
		}
	}

	/// The stream the request is about.
	pub fn stream(&self) -> StreamId {
		match self {
			Request::Pass { pass, .. } => pass.payload.stream,
			Request::GetHeader { stream, .. }
			| Request::GetChunk { stream, .. }
			| Request::Have { stream, .. } => *stream,
			Request::Receipt(r) => r.payload.stream,
		}
	}
}

/// Why a request was refused. The substream closes after the answer; whether the connection
/// stays open is up to the responder (it closes and bans on `Banned`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode)]
pub enum RefusalCode {
	/// No valid pass for this stream was presented on this connection.
	#[codec(index = 0)]
	NoPass,
	/// The pass does not verify: signature, issuer not authorised, other chain, or expired epoch.
	#[codec(index = 1)]
	BadPass,
	/// The responder does not hold that header or chunk (any more).
	#[codec(index = 2)]
	NotHeld,
	/// The requester's receipts lag the data served by more than the responder's slack.
	#[codec(index = 3)]
	ReceiptsBehind,
	/// Too many requests: the per-peer rate limit or the upload capacity is exhausted.
	#[codec(index = 4)]
	Busy,
	/// The requester is banned (bad chunks or abuse); the connection closes.
	#[codec(index = 5)]
	Banned,
	/// The receipt does not verify or does not match the pass (signature, seeder, viewer, units
	/// going down).
	#[codec(index = 6)]
	BadReceipt,
	/// A request within the size limit but breaking a count limit or the protocol's rules.
	#[codec(index = 7)]
	BadRequest,
}

/// The answer to a [`Request`].
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub enum Response {
	/// Accepted (`Pass`, `Have`, `Receipt`).
	#[codec(index = 0)]
	Ok,
	/// The header asked for.
	#[codec(index = 1)]
	Header(Signed<SegmentHeader>),
	/// The chunk bytes asked for (verify against the header before use).
	#[codec(index = 2)]
	Chunk(Bytes),
	/// Not served, and why.
	#[codec(index = 3)]
	Refused {
		/// Machine-readable reason.
		code: RefusalCode,
		/// Human-readable detail, at most [`WireLimits::max_reason_len`] bytes.
		reason: String,
	},
}

impl Response {
	/// A refusal, with `reason` cut to [`DEFAULT_MAX_REASON_LEN`] bytes on a character boundary.
	pub fn refused(code: RefusalCode, reason: impl Into<String>) -> Self {
		let mut reason = reason.into();
		if reason.len() > DEFAULT_MAX_REASON_LEN {
			let mut cut = DEFAULT_MAX_REASON_LEN;
			while !reason.is_char_boundary(cut) {
				cut -= 1;
			}
			reason.truncate(cut);
		}
		Response::Refused { code, reason }
	}

	/// Short name for logs.
	pub fn kind(&self) -> &'static str {
		match self {
			Response::Ok => "ok",
			Response::Header(_) => "header",
			Response::Chunk(_) => "chunk",
			Response::Refused { .. } => "refused",
		}
	}
}

/// Default [`WireLimits::max_request_len`]: 16 KiB. The largest legitimate request is a full
/// `Have`: 64 segments × (8 + 2 + 128) bytes ≈ 9 KiB.
pub const DEFAULT_MAX_REQUEST_LEN: usize = 16 * 1024;
/// Default [`WireLimits::max_response_len`]: 256 KiB, the direct protocol's frame limit. The
/// largest legitimate response is a header of a 16 MiB segment in 2 KiB chunks (8192 hashes).
pub const DEFAULT_MAX_RESPONSE_LEN: usize = crate::protocol::DEFAULT_MAX_FRAME_LEN as usize;
/// Default [`WireLimits::max_have_segments`]: 64 segments, two minutes of 2 s segments.
pub const DEFAULT_MAX_HAVE_SEGMENTS: usize = 64;
/// Default [`WireLimits::max_have_bits_bytes`]: 128 bytes, 1024 chunks (a 64 MiB segment in
/// 64 KiB chunks).
pub const DEFAULT_MAX_HAVE_BITS_BYTES: usize = 128;
/// Default [`WireLimits::max_reason_len`]: 256 bytes.
pub const DEFAULT_MAX_REASON_LEN: usize = 256;

/// Hard limits of the codec. Worst-case memory per substream being read is the larger of the two
/// lengths; libp2p's `max_concurrent_streams` bounds how many are read at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireLimits {
	/// Largest request accepted, in bytes. Default [`DEFAULT_MAX_REQUEST_LEN`] (16 KiB).
	pub max_request_len: usize,
	/// Largest response accepted, in bytes. Default [`DEFAULT_MAX_RESPONSE_LEN`] (256 KiB).
	pub max_response_len: usize,
	/// Most segments in one `Have`. Default [`DEFAULT_MAX_HAVE_SEGMENTS`] (64).
	pub max_have_segments: usize,
	/// Longest bitfield in one `Have` segment, in bytes. Default [`DEFAULT_MAX_HAVE_BITS_BYTES`].
	pub max_have_bits_bytes: usize,
	/// Longest refusal reason, in bytes. Default [`DEFAULT_MAX_REASON_LEN`] (256).
	pub max_reason_len: usize,
}

impl Default for WireLimits {
	fn default() -> Self {
		Self {
			max_request_len: DEFAULT_MAX_REQUEST_LEN,
			max_response_len: DEFAULT_MAX_RESPONSE_LEN,
			max_have_segments: DEFAULT_MAX_HAVE_SEGMENTS,
			max_have_bits_bytes: DEFAULT_MAX_HAVE_BITS_BYTES,
			max_reason_len: DEFAULT_MAX_REASON_LEN,
		}
	}
}

/// A P2P message could not be read. The substream is dropped without an answer; what the peer
/// sent is unknown beyond the error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
	/// More bytes than the limit arrived (only `limit + 1` were read).
	#[error("message exceeds {max} bytes")]
	TooLarge {
		/// The limit.
		max: usize,
	},
	/// The substream ended without a single byte.
	#[error("empty message")]
	Empty,
	/// The bytes do not decode, or decode with bytes left over.
	#[error("malformed {what}: {detail}")]
	Malformed {
		/// `request` or `response`.
		what: &'static str,
		/// Decoder detail.
		detail: String,
	},
	/// The message decodes but breaks a count limit.
	#[error("{0}")]
	OverLimit(&'static str),
}

impl From<WireError> for io::Error {
	fn from(e: WireError) -> io::Error {
		io::Error::new(io::ErrorKind::InvalidData, e)
	}
}

impl WireLimits {
	/// Decodes a request, strictly (see the module docs).
	pub fn decode_request(&self, bytes: &[u8]) -> Result<Request, WireError> {
		let req: Request = decode_all(bytes, self.max_request_len, "request")?;
		if let Request::Have { segments, .. } = &req {
			if segments.len() > self.max_have_segments {
				return Err(WireError::OverLimit("have: more segments than max_have_segments"));
			}
			if segments.iter().any(|s| s.bits.len() > self.max_have_bits_bytes) {
				return Err(WireError::OverLimit("have: bitfield longer than max_have_bits_bytes"));
			}
		}
		Ok(req)
	}

	/// Decodes a response, strictly (see the module docs).
	pub fn decode_response(&self, bytes: &[u8]) -> Result<Response, WireError> {
		let res: Response = decode_all(bytes, self.max_response_len, "response")?;
		if let Response::Refused { reason, .. } = &res {
			if reason.len() > self.max_reason_len {
				return Err(WireError::OverLimit("refusal reason longer than max_reason_len"));
			}
		}
		Ok(res)
	}
}

fn decode_all<T: Decode>(bytes: &[u8], max: usize, what: &'static str) -> Result<T, WireError> {
	if bytes.len() > max {
		return Err(WireError::TooLarge { max });
	}
	if bytes.is_empty() {
		return Err(WireError::Empty);
	}
	// `decode_all` fails on trailing bytes: SCALE has no framing of its own.
	T::decode_all(&mut &bytes[..]).map_err(|e| WireError::Malformed { what, detail: e.to_string() })
}

/// Reads the whole substream, at most `max + 1` bytes. The outer error is the transport's;
/// the inner one is [`WireError::TooLarge`].
async fn read_bounded<T: AsyncRead + Unpin + Send>(
	io: &mut T,
	max: usize,
) -> io::Result<Result<Vec<u8>, WireError>> {
	let mut buf = Vec::new();
	io.take(max as u64 + 1).read_to_end(&mut buf).await?;
	if buf.len() > max {
		return Ok(Err(WireError::TooLarge { max }));
	}
	Ok(Ok(buf))
}

/// A request as the codec carries it: `Err` when the bytes that arrived were not a valid request.
///
/// libp2p 0.54's request-response drops a substream whose `read_request` fails without telling
/// the behaviour, so the codec hands bad input up as a value instead: the serving core can then
/// answer `Refused{BadRequest}`, count it against the peer, and ban repeat offenders. Sending an
/// `Err` is refused locally with `InvalidInput`.
pub type CodecRequest = Result<Request, WireError>;

/// The `libp2p::request_response::Codec` of `/dsp/p2p/1`, enforcing [`WireLimits`].
#[derive(Clone, Debug, Default)]
pub struct P2pCodec {
	/// Limits applied to everything read.
	pub limits: WireLimits,
}

#[async_trait::async_trait]
impl libp2p::request_response::Codec for P2pCodec {
	type Protocol = libp2p::StreamProtocol;
	type Request = CodecRequest;
	type Response = Response;

	async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<CodecRequest>
	where
		T: AsyncRead + Unpin + Send,
	{
		let bytes = read_bounded(io, self.limits.max_request_len).await?;
		Ok(bytes.and_then(|b| self.limits.decode_request(&b)))
	}

	async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Response>
	where
		T: AsyncRead + Unpin + Send,
	{
		let bytes = read_bounded(io, self.limits.max_response_len).await??;
		Ok(self.limits.decode_response(&bytes)?)
	}

	async fn write_request<T>(
		&mut self,
		_: &Self::Protocol,
		io: &mut T,
		req: CodecRequest,
	) -> io::Result<()>
	where
		T: AsyncWrite + Unpin + Send,
	{
		match req {
			Ok(req) => io.write_all(&req.encode()).await,
			Err(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
		}
	}

	async fn write_response<T>(
		&mut self,
		_: &Self::Protocol,
		io: &mut T,
		res: Response,
	) -> io::Result<()>
	where
		T: AsyncWrite + Unpin + Send,
	{
		io.write_all(&res.encode()).await
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use dsp_primitives::PublicKey;
	use libp2p::request_response::Codec as _;
	use sp_core::Pair;

	fn pair(s: &str) -> sp_core::sr25519::Pair {
		sp_core::sr25519::Pair::from_string(s, None).unwrap()
	}

	fn all_requests() -> Vec<Request> {
		let viewer = pair("//Viewer");
		let pass = ViewerPass {
			genesis_hash: [1; 32],
			stream: 2,
			epoch: 3,
			viewer: viewer.public(),
			max_units: 10,
			issuer: PublicKey::from_raw([9; 32]),
		};
		let receipt = Receipt {
			genesis_hash: [1; 32],
			stream: 2,
			epoch: 3,
			seeder: [4; 32],
			viewer: viewer.public(),
			units: 5,
		};
		vec![
			Request::bound_pass(
				Signed::sign(pass, &pair("//Issuer")),
				&viewer,
				&libp2p::identity::Keypair::ed25519_from_bytes([1; 32])
					.unwrap()
					.public()
					.to_peer_id(),
			),
			Request::GetHeader { stream: 2, sequence: 7 },
			Request::GetChunk { stream: 2, sequence: 7, index: 3 },
			Request::Have {
				stream: 2,
				segments: vec![
					HaveSegment::from_indices(7, [0, 9]),
					HaveSegment::from_indices(8, []),
				],
			},
			Request::Receipt(Signed::sign(receipt, &viewer)),
		]
	}

	#[test]
	fn requests_and_responses_round_trip() {
		let limits = WireLimits::default();
		for r in all_requests() {
			assert_eq!(limits.decode_request(&r.encode()).unwrap(), r);
		}
		for r in [
			Response::Ok,
			Response::Chunk(Bytes::from_static(b"abc")),
			Response::refused(RefusalCode::NoPass, "show a pass first"),
		] {
			assert_eq!(limits.decode_response(&r.encode()).unwrap(), r);
		}
	}

	#[test]
	fn pass_binding_names_one_peer_and_needs_the_viewer_key() {
		let peer = |n: u8| {
			libp2p::identity::Keypair::ed25519_from_bytes([n; 32]).unwrap().public().to_peer_id()
		};
		let Request::Pass { pass, binding } = all_requests().remove(0) else { panic!() };
		assert!(verify_peer_binding(&pass.payload, &peer(1), &binding));
		assert!(!verify_peer_binding(&pass.payload, &peer(2), &binding));
		let Request::Pass { binding: by_other, .. } =
			Request::bound_pass(pass.clone(), &pair("//Other"), &peer(1))
		else {
			panic!()
		};
		assert!(!verify_peer_binding(&pass.payload, &peer(1), &by_other));
	}

	#[test]
	fn have_bit_order_is_lsb_first() {
		let h = HaveSegment::from_indices(1, [0, 9, 15]);
		assert_eq!(h.bits, vec![0b0000_0001, 0b1000_0010]);
		assert!(h.has(0) && h.has(9) && h.has(15));
		assert!(!h.has(1) && !h.has(16) && !h.has(1000));
	}

	#[test]
	fn strict_decoding_refuses_trailing_unknown_empty_and_over_limit() {
		let limits = WireLimits::default();
		let mut bytes = Request::GetHeader { stream: 1, sequence: 2 }.encode();
		bytes.push(0);
		assert!(matches!(limits.decode_request(&bytes), Err(WireError::Malformed { .. })));
		assert!(matches!(limits.decode_request(&[200]), Err(WireError::Malformed { .. })));
		assert_eq!(limits.decode_request(&[]), Err(WireError::Empty));
		// A vector length claiming far more items than bytes follow.
		let mut lying = vec![3u8];
		lying.extend(1u64.encode());
		lying.extend(codec::Compact(1_000_000u32).encode());
		assert!(matches!(limits.decode_request(&lying), Err(WireError::Malformed { .. })));

		let many = Request::Have {
			stream: 1,
			segments: (0..65).map(|s| HaveSegment::from_indices(s, [0])).collect(),
		};
		assert!(matches!(limits.decode_request(&many.encode()), Err(WireError::OverLimit(_))));
		let wide =
			Request::Have { stream: 1, segments: vec![HaveSegment::from_indices(0, [1100])] };
		assert!(matches!(limits.decode_request(&wide.encode()), Err(WireError::OverLimit(_))));
		let long = Response::Refused { code: RefusalCode::Busy, reason: "x".repeat(300) };
		assert!(matches!(limits.decode_response(&long.encode()), Err(WireError::OverLimit(_))));
		// `refused` cuts long reasons so that an honest responder stays within the limit.
		let cut = Response::refused(RefusalCode::Busy, "é".repeat(300));
		assert!(limits.decode_response(&cut.encode()).is_ok());
	}

	#[test]
	fn codec_reads_at_most_limit_plus_one_byte() {
		futures::executor::block_on(async {
			let mut codec = P2pCodec {
				limits: WireLimits {
					max_request_len: 100,
					max_response_len: 100,
					..Default::default()
				},
			};
			let proto = libp2p::StreamProtocol::new(PROTOCOL_NAME);
			// 10 MB of zeros: refused after reading 101 bytes.
			let big = vec![0u8; 10_000_000];
			let mut reader = futures::io::Cursor::new(&big[..]);
			let got = codec.read_request(&proto, &mut reader).await.unwrap();
			assert_eq!(got, Err(WireError::TooLarge { max: 100 }));
			assert_eq!(reader.position(), 101);
			let mut reader = futures::io::Cursor::new(&big[..]);
			let err = codec.read_response(&proto, &mut reader).await.unwrap_err();
			assert_eq!(err.kind(), io::ErrorKind::InvalidData);
			assert_eq!(reader.position(), 101);
			// Garbage is handed up as a value, for the serving core to answer and count.
			let mut reader = futures::io::Cursor::new(vec![0xff, 1, 2]);
			let got = codec.read_request(&proto, &mut reader).await.unwrap();
			assert!(matches!(got, Err(WireError::Malformed { .. })));

			// A request written by the codec reads back.
			let mut out = Vec::new();
			let req = Request::GetChunk { stream: 1, sequence: 2, index: 3 };
			codec.write_request(&proto, &mut out, Ok(req.clone())).await.unwrap();
			let got = codec.read_request(&proto, &mut futures::io::Cursor::new(out)).await.unwrap();
			assert_eq!(got, Ok(req));
			let mut out = Vec::new();
			assert!(codec.write_request(&proto, &mut out, Err(WireError::Empty)).await.is_err());
			assert!(out.is_empty());
		});
	}
}
