//! Segments: cutting a media segment into chunks, signing its header, and verifying a segment
//! chunk by chunk as it arrives. Sans-IO.

use crate::protocol::{encode_frame, Chunk, ErrorCode, Message, MAX_CHUNK_SIZE};
use bytes::Bytes;
use dsp_primitives::{Hash32, PublicKey, SegmentHeader, Signed, StreamEnd, StreamId};
use sp_crypto_hashing::blake2_256;

/// Default chunk size: 64 KiB, the top of DESIGN.md's 16–64 KiB range; a 2 s segment at
/// 500 kbit/s is two chunks.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;

/// Default largest segment accepted, in bytes (16 MiB: 2 s at 64 Mbit/s).
pub const DEFAULT_MAX_SEGMENT_LEN: u32 = 16 * 1024 * 1024;

/// Shortest play time a segment may declare, in milliseconds. A zero or near-zero duration
/// (a segment cut without timestamps) breaks HLS players and the viewer's goodput measure.
pub const MIN_SEGMENT_DURATION_MS: u32 = 10;

/// Longest play time a segment may declare, in milliseconds (a minute).
pub const MAX_SEGMENT_DURATION_MS: u32 = 60_000;

/// The play time a publisher declares for a segment that lasted `duration_ms`: clamped to
/// [`MIN_SEGMENT_DURATION_MS`]`..=`[`MAX_SEGMENT_DURATION_MS`], which every receiver accepts.
pub fn clamp_duration_ms(duration_ms: u32) -> u32 {
	duration_ms.clamp(MIN_SEGMENT_DURATION_MS, MAX_SEGMENT_DURATION_MS)
}

/// Limits applied to every received segment header.
#[derive(Clone, Debug)]
pub struct SegmentLimits {
	/// Largest `byte_len` accepted. Default [`DEFAULT_MAX_SEGMENT_LEN`]. Worst case memory of one
	/// segment being assembled.
	pub max_segment_len: u32,
	/// Smallest `duration_ms` accepted. Default [`MIN_SEGMENT_DURATION_MS`].
	pub min_duration_ms: u32,
	/// Largest `duration_ms` accepted. Default [`MAX_SEGMENT_DURATION_MS`].
	pub max_duration_ms: u32,
}

impl Default for SegmentLimits {
	fn default() -> Self {
		Self {
			max_segment_len: DEFAULT_MAX_SEGMENT_LEN,
			min_duration_ms: MIN_SEGMENT_DURATION_MS,
			max_duration_ms: MAX_SEGMENT_DURATION_MS,
		}
	}
}

/// A segment failed verification. The sender of it is not trustworthy: close the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
	/// The header's signature does not verify against the stream's origin key.
	#[error("segment {sequence}: bad header signature")]
	BadSignature {
		/// Sequence number claimed by the header.
		sequence: u64,
	},
	/// The header names another chain.
	#[error("segment {sequence}: header is for another chain")]
	WrongGenesis {
		/// Sequence number claimed by the header.
		sequence: u64,
	},
	/// The header names another stream than the connection's.
	#[error("segment {sequence}: header is for stream {got}, expected {expected}")]
	WrongStream {
		/// Sequence number claimed by the header.
		sequence: u64,
		/// Stream in the header.
		got: StreamId,
		/// Stream of the connection.
		expected: StreamId,
	},
	/// The header is inconsistent or breaks a limit.
	#[error("segment {sequence}: bad header: {reason}")]
	BadHeader {
		/// Sequence number claimed by the header.
		sequence: u64,
		/// Which check failed.
		reason: &'static str,
	},
	/// A chunk arrived for another segment or out of order.
	#[error("segment {sequence}: unexpected chunk {index} (expected {expected})")]
	UnexpectedChunk {
		/// Segment being assembled.
		sequence: u64,
		/// Chunk index received.
		index: u32,
		/// Chunk index expected.
		expected: u32,
	},
	/// A chunk arrived without a header before it.
	#[error("chunk without a segment header")]
	ChunkWithoutHeader,
	/// A chunk's hash or length does not match the header.
	#[error("segment {sequence}: chunk {index} does not match its hash or length")]
	BadChunk {
		/// Segment being assembled.
		sequence: u64,
		/// Chunk index.
		index: u32,
	},
	/// A new header arrived before the previous segment's chunks were complete.
	#[error("segment {sequence}: incomplete when the next header arrived")]
	Incomplete {
		/// The incomplete segment.
		sequence: u64,
	},
}

impl SegmentError {
	/// The code sent to the peer before closing.
	pub fn code(&self) -> ErrorCode {
		match self {
			SegmentError::BadSignature { .. } => ErrorCode::BadSignature,
			SegmentError::WrongGenesis { .. } => ErrorCode::WrongGenesis,
			SegmentError::BadChunk { .. } => ErrorCode::BadChunk,
			SegmentError::UnexpectedChunk { .. }
			| SegmentError::ChunkWithoutHeader
			| SegmentError::Incomplete { .. } => ErrorCode::UnexpectedMessage,
			SegmentError::WrongStream { .. } | SegmentError::BadHeader { .. } => {
				ErrorCode::BadHeader
			}
		}
	}
}

/// A complete, verified segment, ready to send: its frames are encoded once and shared (by
/// reference count) by every connection that sends it. Chunk data are slices of the frames.
#[derive(Clone, Debug)]
pub struct Segment {
	/// The signed header.
	pub header: Signed<SegmentHeader>,
	/// The header frame followed by one frame per chunk, length prefixes included.
	pub frames: Vec<Bytes>,
	/// The chunk payloads, in order (slices of `frames`).
	pub chunks: Vec<Bytes>,
}

impl Segment {
	/// Sequence number.
	pub fn sequence(&self) -> u64 {
		self.header.payload.sequence
	}

	/// Stream.
	pub fn stream(&self) -> StreamId {
		self.header.payload.stream
	}

	/// The broadcast it belongs to ([`SegmentHeader::broadcast`]).
	pub fn broadcast(&self) -> u64 {
		self.header.payload.broadcast
	}

	/// Play time in milliseconds.
	pub fn duration_ms(&self) -> u32 {
		self.header.payload.duration_ms
	}

	/// Media bytes.
	pub fn byte_len(&self) -> usize {
		self.header.payload.byte_len as usize
	}

	/// Bytes on the wire (all frames).
	pub fn wire_len(&self) -> usize {
		self.frames.iter().map(Bytes::len).sum()
	}

	/// The media bytes in one buffer (copies; for files and tests).
	pub fn to_vec(&self) -> Vec<u8> {
		let mut v = Vec::with_capacity(self.byte_len());
		for c in &self.chunks {
			v.extend_from_slice(c);
		}
		v
	}

	/// Signs and frames a segment of media bytes (the origin side): segment `sequence` of
	/// broadcast `broadcast` of `stream`. `duration_ms` is clamped with [`clamp_duration_ms`],
	/// so every receiver accepts it.
	// Every argument is a field the origin signs; a struct for them would only rename them.
	#[allow(clippy::too_many_arguments)]
	pub fn build(
		pair: &sp_core::sr25519::Pair,
		genesis_hash: Hash32,
		stream: StreamId,
		broadcast: u64,
		sequence: u64,
		duration_ms: u32,
		data: Bytes,
		chunk_size: u32,
	) -> Segment {
		let chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE);
		let chunks: Vec<Bytes> = (0..data.len())
			.step_by(chunk_size as usize)
			.map(|at| data.slice(at..(at + chunk_size as usize).min(data.len())))
			.collect();
		let header = SegmentHeader {
			genesis_hash,
			stream,
			broadcast,
			sequence,
			duration_ms: clamp_duration_ms(duration_ms),
			byte_len: data.len() as u32,
			chunk_size,
			chunk_hashes: chunks.iter().map(|c| blake2_256(c)).collect(),
		};
		let header = Signed::sign(header, pair);
		let mut frames = Vec::with_capacity(chunks.len() + 1);
		frames.push(encode_frame(&Message::Header(header.clone())));
		for (index, data) in chunks.iter().enumerate() {
			frames.push(encode_frame(&Message::Chunk(Chunk {
				stream,
				sequence,
				index: index as u32,
				data: data.clone(),
			})));
		}
		Segment { header, frames, chunks }
	}
}

/// Checks a header against the expected chain, stream, origin key and limits. Signature last:
/// it is the expensive check.
pub fn verify_header(
	header: &Signed<SegmentHeader>,
	genesis_hash: &Hash32,
	stream: StreamId,
	origin: &PublicKey,
	limits: &SegmentLimits,
) -> Result<(), SegmentError> {
	let h = &header.payload;
	let sequence = h.sequence;
	let bad = |reason| Err(SegmentError::BadHeader { sequence, reason });
	if &h.genesis_hash != genesis_hash {
		return Err(SegmentError::WrongGenesis { sequence });
	}
	if h.stream != stream {
		return Err(SegmentError::WrongStream { sequence, got: h.stream, expected: stream });
	}
	if h.byte_len == 0 {
		return bad("empty segment");
	}
	if sequence == u64::MAX {
		// Windows and buffers count `sequence + 1`; the last value would overflow.
		return bad("sequence u64::MAX is reserved");
	}
	if h.byte_len > limits.max_segment_len {
		return bad("byte_len above max_segment_len");
	}
	if h.duration_ms > limits.max_duration_ms {
		return bad("duration_ms above max_duration_ms");
	}
	if h.duration_ms < limits.min_duration_ms {
		return bad("duration_ms below min_duration_ms");
	}
	if h.chunk_size == 0 || h.chunk_size > MAX_CHUNK_SIZE {
		return bad("chunk_size out of range");
	}
	if h.chunk_hashes.len() as u64 != (h.byte_len as u64).div_ceil(h.chunk_size as u64) {
		return bad("chunk count does not match byte_len / chunk_size");
	}
	if !header.verify(origin) {
		return Err(SegmentError::BadSignature { sequence });
	}
	Ok(())
}

/// Checks an origin-signed end of stream: chain, stream and signature.
pub fn verify_end(
	end: &Signed<StreamEnd>,
	genesis_hash: &Hash32,
	stream: StreamId,
	origin: &PublicKey,
) -> Result<(), SegmentError> {
	let sequence = end.payload.next_sequence;
	if &end.payload.genesis_hash != genesis_hash {
		return Err(SegmentError::WrongGenesis { sequence });
	}
	if end.payload.stream != stream {
		return Err(SegmentError::WrongStream {
			sequence,
			got: end.payload.stream,
			expected: stream,
		});
	}
	if !end.verify(origin) {
		return Err(SegmentError::BadSignature { sequence });
	}
	Ok(())
}

/// Length of chunk `index` of a (validated) header.
fn chunk_len(h: &SegmentHeader, index: u32) -> usize {
	let start = index as u64 * h.chunk_size as u64;
	(h.byte_len as u64).saturating_sub(start).min(h.chunk_size as u64) as usize
}

/// Checks one chunk on its own against a (verified) header: index in range, length, and
/// blake2-256 hash. This is what lets a chunk from an untrusted P2P peer be stored, played or
/// forwarded without the rest of its segment.
pub fn verify_chunk(h: &SegmentHeader, index: u32, data: &[u8]) -> Result<(), SegmentError> {
	let bad = Err(SegmentError::BadChunk { sequence: h.sequence, index });
	let Some(hash) = h.chunk_hashes.get(index as usize) else { return bad };
	if data.len() != chunk_len(h, index) || &blake2_256(data) != hash {
		return bad;
	}
	Ok(())
}

/// What the assembler made of one frame.
// `Complete` is 200 bytes and returned once per segment, then moved into an event or an `Arc`:
// boxing it would add an allocation per segment to save a copy of a few words per chunk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Assembled {
	/// Accepted; the segment is not complete yet.
	Progress,
	/// The segment is complete and every chunk verified.
	Complete(Segment),
}

/// Verifies and assembles segments arriving as `Header, Chunk 0, Chunk 1, …` on one connection.
/// Keeps the received frames so that a server can forward them without re-encoding.
///
/// Memory: one segment in progress, at most `limits.max_segment_len` plus frame overhead.
#[derive(Debug)]
pub struct Assembler {
	genesis_hash: Hash32,
	stream: StreamId,
	origin: PublicKey,
	limits: SegmentLimits,
	current: Option<InProgress>,
}

#[derive(Debug)]
struct InProgress {
	header: Signed<SegmentHeader>,
	frames: Vec<Bytes>,
	chunks: Vec<Bytes>,
}

impl Assembler {
	/// An assembler for `stream` on chain `genesis_hash`, signed by `origin`.
	pub fn new(
		genesis_hash: Hash32,
		stream: StreamId,
		origin: PublicKey,
		limits: SegmentLimits,
	) -> Self {
		Self { genesis_hash, stream, origin, limits, current: None }
	}

	/// Whether a segment is in progress.
	pub fn in_progress(&self) -> Option<u64> {
		self.current.as_ref().map(|c| c.header.payload.sequence)
	}

	/// The `byte_len` announced by the header of the segment in progress, 0 between segments:
	/// what this assembler will hold once the segment is complete.
	pub fn in_progress_bytes(&self) -> usize {
		self.current.as_ref().map_or(0, |c| c.header.payload.byte_len as usize)
	}

	/// The origin key this stream's segments are checked against.
	pub fn origin(&self) -> &PublicKey {
		&self.origin
	}

	/// Checks an end of stream against this stream's chain and origin key.
	pub fn verify_end(&self, end: &Signed<StreamEnd>) -> Result<(), SegmentError> {
		verify_end(end, &self.genesis_hash, self.stream, &self.origin)
	}

	/// Feeds a header frame. `frame` is the whole frame as received (length prefix included), or
	/// empty if the caller does not need frames kept.
	pub fn handle_header(
		&mut self,
		header: Signed<SegmentHeader>,
		frame: Bytes,
	) -> Result<(), SegmentError> {
		if let Some(c) = &self.current {
			return Err(SegmentError::Incomplete { sequence: c.header.payload.sequence });
		}
		verify_header(&header, &self.genesis_hash, self.stream, &self.origin, &self.limits)?;
		let n = header.payload.chunk_hashes.len();
		let mut frames = Vec::with_capacity(n + 1);
		frames.push(frame);
		self.current = Some(InProgress { header, frames, chunks: Vec::with_capacity(n) });
		Ok(())
	}

	/// Feeds a chunk frame (see [`Self::handle_header`] for `frame`).
	pub fn handle_chunk(&mut self, chunk: Chunk, frame: Bytes) -> Result<Assembled, SegmentError> {
		let Some(cur) = self.current.as_mut() else {
			return Err(SegmentError::ChunkWithoutHeader);
		};
		let h = &cur.header.payload;
		let expected = cur.chunks.len() as u32;
		if chunk.stream != h.stream || chunk.sequence != h.sequence || chunk.index != expected {
			return Err(SegmentError::UnexpectedChunk {
				sequence: h.sequence,
				index: chunk.index,
				expected,
			});
		}
		verify_chunk(h, chunk.index, &chunk.data)?;
		cur.frames.push(frame);
		cur.chunks.push(chunk.data);
		if cur.chunks.len() == h.chunk_hashes.len() {
			let InProgress { header, frames, chunks } =
				self.current.take().expect("checked above; qed");
			return Ok(Assembled::Complete(Segment { header, frames, chunks }));
		}
		Ok(Assembled::Progress)
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::protocol::{decode_body, LENGTH_PREFIX};
	use sp_core::Pair;

	fn origin() -> sp_core::sr25519::Pair {
		sp_core::sr25519::Pair::from_string("//Origin", None).unwrap()
	}

	fn feed(asm: &mut Assembler, seg: &Segment) -> Result<Option<Segment>, SegmentError> {
		let mut done = None;
		for f in &seg.frames {
			match decode_body(f.slice(LENGTH_PREFIX..)).unwrap() {
				Message::Header(h) => asm.handle_header(h, f.clone())?,
				Message::Chunk(c) => {
					if let Assembled::Complete(s) = asm.handle_chunk(c, f.clone())? {
						done = Some(s);
					}
				}
				other => panic!("{other:?}"),
			}
		}
		Ok(done)
	}

	fn assembler() -> Assembler {
		Assembler::new([1; 32], 5, origin().public(), SegmentLimits::default())
	}

	#[test]
	fn built_segment_verifies_and_reassembles_identically() {
		let data = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>());
		let seg = Segment::build(&origin(), [1; 32], 5, 0, 0, 2000, data.clone(), 4096);
		assert_eq!(seg.chunks.len(), 25);
		let out = feed(&mut assembler(), &seg).unwrap().unwrap();
		assert_eq!(out.to_vec(), data.to_vec());
		assert_eq!(out.frames, seg.frames);
	}

	#[test]
	fn bad_signature_is_refused() {
		let other = sp_core::sr25519::Pair::from_string("//Mallory", None).unwrap();
		let seg = Segment::build(&other, [1; 32], 5, 0, 0, 2000, Bytes::from_static(b"x"), 4096);
		assert_eq!(
			feed(&mut assembler(), &seg).unwrap_err(),
			SegmentError::BadSignature { sequence: 0 }
		);
	}

	#[test]
	fn wrong_genesis_and_stream_are_refused() {
		let seg = Segment::build(&origin(), [2; 32], 5, 0, 0, 1, Bytes::from_static(b"x"), 4096);
		assert!(matches!(feed(&mut assembler(), &seg), Err(SegmentError::WrongGenesis { .. })));
		let seg = Segment::build(&origin(), [1; 32], 6, 0, 0, 1, Bytes::from_static(b"x"), 4096);
		assert!(matches!(feed(&mut assembler(), &seg), Err(SegmentError::WrongStream { .. })));
	}

	#[test]
	fn tampered_chunk_is_refused() {
		let seg =
			Segment::build(&origin(), [1; 32], 5, 0, 0, 1, Bytes::from(vec![1u8; 10_000]), 4096);
		let mut asm = assembler();
		let Message::Header(h) = decode_body(seg.frames[0].slice(4..)).unwrap() else { panic!() };
		asm.handle_header(h, Bytes::new()).unwrap();
		let mut data = seg.chunks[0].to_vec();
		data[17] ^= 1;
		let chunk = Chunk { stream: 5, sequence: 0, index: 0, data: Bytes::from(data) };
		assert_eq!(
			asm.handle_chunk(chunk, Bytes::new()).unwrap_err(),
			SegmentError::BadChunk { sequence: 0, index: 0 }
		);
	}

	#[test]
	fn truncated_chunk_with_right_prefix_is_refused() {
		let seg =
			Segment::build(&origin(), [1; 32], 5, 0, 0, 1, Bytes::from(vec![1u8; 10_000]), 4096);
		let mut asm = assembler();
		let Message::Header(h) = decode_body(seg.frames[0].slice(4..)).unwrap() else { panic!() };
		asm.handle_header(h, Bytes::new()).unwrap();
		let chunk = Chunk { stream: 5, sequence: 0, index: 0, data: seg.chunks[0].slice(..4095) };
		assert!(matches!(
			asm.handle_chunk(chunk, Bytes::new()),
			Err(SegmentError::BadChunk { .. })
		));
	}

	#[test]
	fn out_of_order_and_orphan_chunks_are_refused() {
		let mut asm = assembler();
		let c = Chunk { stream: 5, sequence: 0, index: 0, data: Bytes::from_static(b"x") };
		assert_eq!(
			asm.handle_chunk(c.clone(), Bytes::new()).unwrap_err(),
			SegmentError::ChunkWithoutHeader
		);
		let seg =
			Segment::build(&origin(), [1; 32], 5, 0, 0, 1, Bytes::from(vec![1u8; 10_000]), 4096);
		let Message::Header(h) = decode_body(seg.frames[0].slice(4..)).unwrap() else { panic!() };
		asm.handle_header(h.clone(), Bytes::new()).unwrap();
		let c1 = Chunk { index: 1, ..c };
		assert!(matches!(
			asm.handle_chunk(c1, Bytes::new()),
			Err(SegmentError::UnexpectedChunk { expected: 0, .. })
		));
		assert!(matches!(
			asm.handle_header(h, Bytes::new()),
			Err(SegmentError::Incomplete { sequence: 0 })
		));
	}

	#[test]
	fn inconsistent_headers_are_refused_before_signature_check() {
		let pair = origin();
		let limits = SegmentLimits::default();
		let base = SegmentHeader {
			genesis_hash: [1; 32],
			stream: 5,
			broadcast: 0,
			sequence: 1,
			duration_ms: 2000,
			byte_len: 10,
			chunk_size: 4,
			chunk_hashes: vec![[0; 32]; 3],
		};
		let check = |h: SegmentHeader| {
			verify_header(&Signed::sign(h, &pair), &[1; 32], 5, &pair.public(), &limits)
		};
		assert_eq!(check(base.clone()), Ok(()));
		let cases = [
			SegmentHeader { byte_len: 0, chunk_hashes: vec![], ..base.clone() },
			SegmentHeader { chunk_size: 0, ..base.clone() },
			SegmentHeader { chunk_size: MAX_CHUNK_SIZE + 1, ..base.clone() },
			SegmentHeader { chunk_hashes: vec![[0; 32]; 2], ..base.clone() },
			SegmentHeader { byte_len: DEFAULT_MAX_SEGMENT_LEN + 1, ..base.clone() },
			SegmentHeader { duration_ms: 60_001, ..base.clone() },
			SegmentHeader { duration_ms: 0, ..base.clone() },
			SegmentHeader { duration_ms: MIN_SEGMENT_DURATION_MS - 1, ..base.clone() },
			SegmentHeader { sequence: u64::MAX, ..base.clone() },
		];
		for h in cases {
			assert!(matches!(check(h), Err(SegmentError::BadHeader { .. })));
		}
	}

	#[test]
	fn built_segments_declare_a_clamped_duration_that_receivers_accept() {
		for (asked, declared) in
			[(0, MIN_SEGMENT_DURATION_MS), (2000, 2000), (u32::MAX, MAX_SEGMENT_DURATION_MS)]
		{
			let seg =
				Segment::build(&origin(), [1; 32], 5, 0, 0, asked, Bytes::from_static(b"x"), 64);
			assert_eq!(seg.duration_ms(), declared);
			assert!(feed(&mut assembler(), &seg).unwrap().is_some());
		}
	}
}
