//! criterion benches of the data plane's hot paths, each next to a named alternative measured
//! in the same run (the machines are noisy: read the ratios).
//!
//! ```text
//! cargo bench -p dsp-streaming --bench hot_paths
//! ```
//!
//! - `frame`: encoding a 64 KiB `Chunk` frame; decoding it zero-copy (`decode_body` on `Bytes`)
//!   against decoding by copying out of a slice.
//! - `chunk_hash`: blake2-256 of a 64 KiB chunk (what viewers verify) against SHA-256.
//! - `header_verify`: the origin's sr25519 signature over a 2 s segment header (32 chunk hashes)
//!   against ed25519 over the same bytes.
//! - `segment_build`: what the publisher does per segment: chunk a 2 s segment at 500 kbit/s
//!   (125 000 bytes, two 64 KiB chunks), hash every chunk and sign the header.

use bytes::Bytes;
use codec::{Decode, Encode};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dsp_primitives::{SegmentHeader, Signable, Signed};
use dsp_streaming::{
	protocol::{decode_body, encode_frame, Chunk, Message, LENGTH_PREFIX},
	segment::{Segment, DEFAULT_CHUNK_SIZE},
};
use sp_core::{ed25519, sr25519, Pair};
use std::hint::black_box;

const CHUNK: usize = 64 * 1024;

fn chunk_message() -> Message {
	let data: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
	Message::Chunk(Chunk { stream: 1, sequence: 42, index: 3, data: Bytes::from(data) })
}

fn frame(c: &mut Criterion) {
	let msg = chunk_message();
	let frame = encode_frame(&msg);
	let body = frame.slice(LENGTH_PREFIX..);
	let mut g = c.benchmark_group("frame");
	g.throughput(Throughput::Bytes(frame.len() as u64));
	g.bench_function("encode_64k_chunk", |b| b.iter(|| encode_frame(black_box(&msg))));
	g.bench_function("decode_64k_chunk_zero_copy", |b| {
		b.iter(|| decode_body(black_box(body.clone())).unwrap())
	});
	g.bench_function("decode_64k_chunk_copying", |b| {
		let raw = body.to_vec();
		b.iter(|| {
			// The alternative: SCALE-decode from a slice, which copies the chunk into a Vec.
			let (_tag, stream, sequence, index, data): (u8, u64, u64, u32, Vec<u8>) =
				Decode::decode(&mut black_box(&raw[..])).unwrap();
			(stream, sequence, index, data)
		})
	});
	g.finish();
}

fn chunk_hash(c: &mut Criterion) {
	let data: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
	let mut g = c.benchmark_group("chunk_hash");
	g.throughput(Throughput::Bytes(CHUNK as u64));
	g.bench_function("blake2_256_64k", |b| {
		b.iter(|| sp_crypto_hashing::blake2_256(black_box(&data)))
	});
	g.bench_function("sha2_256_64k", |b| b.iter(|| sp_crypto_hashing::sha2_256(black_box(&data))));
	g.finish();
}

fn header_verify(c: &mut Criterion) {
	let header = SegmentHeader {
		genesis_hash: [7; 32],
		stream: 1,
		broadcast: 0,
		sequence: 42,
		duration_ms: 2000,
		byte_len: 32 * CHUNK as u32,
		chunk_size: CHUNK as u32,
		chunk_hashes: (0..32u8).map(|i| [i; 32]).collect(),
	};
	let message = header.signing_payload();
	let sr = sr25519::Pair::from_string("//Origin", None).unwrap();
	let signed = Signed::sign(header, &sr);
	let ed = ed25519::Pair::from_string("//Origin", None).unwrap();
	let ed_sig = ed.sign(&message);
	let mut g = c.benchmark_group("header_verify");
	g.bench_with_input(BenchmarkId::new("sr25519", message.len()), &signed, |b, s| {
		b.iter(|| assert!(black_box(s).verify(&sr.public())))
	});
	g.bench_with_input(BenchmarkId::new("ed25519", message.len()), &message, |b, m| {
		b.iter(|| assert!(ed25519::Pair::verify(&ed_sig, black_box(m), &ed.public())))
	});
	g.finish();
	let _ = signed.encode();
}

fn segment_build(c: &mut Criterion) {
	let pair = sr25519::Pair::from_string("//Origin", None).unwrap();
	let data = Bytes::from(vec![1u8; 125_000]);
	let mut g = c.benchmark_group("segment_build");
	g.throughput(Throughput::Bytes(data.len() as u64));
	g.bench_function("build_and_sign_125k", |b| {
		b.iter(|| {
			Segment::build(
				&pair,
				[0; 32],
				1,
				0,
				0,
				2000,
				black_box(data.clone()),
				DEFAULT_CHUNK_SIZE,
			)
		})
	});
	g.finish();
}

criterion_group!(benches, frame, chunk_hash, header_verify, segment_build);
criterion_main!(benches);
