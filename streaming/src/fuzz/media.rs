//! Harnesses of the publisher's media inputs: the MPEG-TS segmenter and the HLS playlist
//! follower. See the table in the module docs of [`crate::fuzz`].

use super::Input;
use crate::{
	hls_ingest::HlsFollower,
	segment::{MAX_SEGMENT_DURATION_MS, MIN_SEGMENT_DURATION_MS},
	ts::{TsConfig, TsSegment, TsSegmenter, TS_PACKET},
};

/// Most TS packets a structured input describes: enough for several segments.
const MAX_PACKETS: usize = 4096;

/// A TS packet: header, an adaptation field (random access flag) sized so that `payload` fills
/// the packet. `payload` is cut to fit.
fn packet(pid: u16, pusi: bool, random_access: bool, payload: &[u8]) -> [u8; TS_PACKET] {
	let payload = &payload[..payload.len().min(TS_PACKET - 6)];
	let mut p = [0xffu8; TS_PACKET];
	p[0] = 0x47;
	p[1] = (u8::from(pusi) << 6) | ((pid >> 8) as u8 & 0x1f);
	p[2] = pid as u8;
	p[3] = 0x30;
	let af_len = TS_PACKET - 5 - payload.len();
	p[4] = af_len as u8;
	p[5] = if random_access { 0x40 } else { 0 };
	p[5 + af_len..].copy_from_slice(payload);
	p
}

/// PES start with a presentation timestamp.
fn pes(pts: u64) -> Vec<u8> {
	vec![
		0,
		0,
		1,
		0xe0,
		0,
		0,
		0x80,
		0x80,
		5,
		0x21 | (((pts >> 30) as u8 & 7) << 1),
		(pts >> 22) as u8,
		((pts >> 15) as u8) << 1 | 1,
		(pts >> 7) as u8,
		(pts as u8) << 1 | 1,
	]
}

/// A TS stream described by the input: PATs, PMTs (video, audio-only, junk), PES starts with
/// timestamps that step, jump and wrap, continuation packets, raw packets and stray bytes.
fn structured_ts(input: &mut Input) -> Vec<u8> {
	let mut out = Vec::new();
	let mut pts: u64 = 0;
	let pids = [0x100u16, 0x101, 0x1000, 0, 0x1fff];
	for _ in 0..MAX_PACKETS {
		if input.is_empty() {
			break;
		}
		let pid = pids[input.index(pids.len())];
		match input.u8() % 8 {
			0 => {
				let pmt = if input.bool() { 0x1000u16 } else { input.u16() & 0x1fff };
				let s = [
					0u8,
					0x00,
					0xb0,
					13,
					0,
					1,
					0xc1,
					0,
					0,
					0,
					1,
					0xe0 | (pmt >> 8) as u8,
					pmt as u8,
					0,
					0,
					0,
					0,
				];
				out.extend(packet(0, true, false, &s));
			}
			1 => {
				let ty = [0x1b, 0x0f, 0x02, input.u8()][input.index(4)];
				let mut s =
					vec![0u8, 0x02, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, input.u8() % 4];
				s.extend([0x0f, 0xe1, 0x01, 0xf0, 0]);
				s.extend([ty, 0xe1, 0x00, 0xf0, input.u8() % 4]);
				s.extend([0, 0, 0, 0]);
				out.extend(packet(0x1000, true, false, &s));
			}
			2 | 3 => {
				pts = match input.u8() % 6 {
					0 => pts.wrapping_add(3600),
					1 => pts.wrapping_add(180_000),
					2 => pts,
					3 => (1 << 33) - 1 - u64::from(input.u8()),
					4 => pts.wrapping_sub(3600),
					_ => input.u64(),
				} & ((1 << 33) - 1);
				out.extend(packet(pid, true, input.bool(), &pes(pts)));
			}
			4 => out.extend(packet(pid, false, false, &[0xaa; 100])),
			5 => {
				let mut p = [0u8; TS_PACKET];
				p.iter_mut().zip(input.bytes(TS_PACKET)).for_each(|(o, b)| *o = *b);
				p[0] = 0x47;
				out.extend(p);
			}
			6 => out.extend(input.bytes_upto(200)),
			_ => out.extend(packet(pid, input.bool(), input.bool(), input.bytes_upto(255))),
		}
	}
	out
}

fn segments_of(
	config: &TsConfig,
	pieces: impl Iterator<Item = impl AsRef<[u8]>>,
) -> (Vec<TsSegment>, u64, u64) {
	let mut s = TsSegmenter::new(config.clone());
	let mut out = Vec::new();
	for piece in pieces {
		s.push(piece.as_ref());
		out.extend(std::iter::from_fn(|| s.poll_segment()));
	}
	s.finish();
	out.extend(std::iter::from_fn(|| s.poll_segment()));
	(out, s.stats().packets, s.stats().resync_bytes)
}

/// The MPEG-TS segmenter. Invariants: the same segments however the input is split; every input
/// byte is part of a parsed packet or counted as skipped; segments are non-empty, whole packets
/// (each starting with the sync byte) and within `max_segment_len` (plus one packet and the two
/// repeated tables); the stats count the segments.
pub fn ts(data: &[u8]) {
	let mut input = Input::new(data);
	let config = TsConfig {
		target_duration_ms: match input.u8() % 3 {
			0 => 2000,
			1 => u32::from(input.u8()),
			_ => input.u32(),
		},
		max_segment_len: match input.u8() % 3 {
			0 => 8 * 1024 * 1024,
			1 => usize::from(input.u8()) * TS_PACKET,
			_ => usize::from(input.u16()),
		},
	};
	let piece = usize::from(input.u16() % 1024) + 1;
	let stream = if input.bool() { input.rest().to_vec() } else { structured_ts(&mut input) };

	let (whole, packets, skipped) = segments_of(&config, std::iter::once(&stream));
	let (split, ..) = segments_of(&config, stream.chunks(piece));
	assert_eq!(whole, split, "segments depend on how the input was split");
	assert_eq!(packets * TS_PACKET as u64 + skipped, stream.len() as u64, "bytes lost or invented");
	let bound = (config.max_segment_len + TS_PACKET - 1).max(3 * TS_PACKET);
	let mut total = 0;
	for s in &whole {
		assert!(!s.data.is_empty(), "empty segment");
		assert_eq!(s.data.len() % TS_PACKET, 0, "segment of partial packets");
		assert!(s.data.chunks(TS_PACKET).all(|p| p[0] == 0x47), "packet without sync byte");
		assert!(s.data.len() <= bound, "segment of {} bytes over {bound}", s.data.len());
		total += s.data.len();
	}
	// Segments hold every packet, plus PAT and PMT pairs repeated at cuts.
	let packet_bytes = packets as usize * TS_PACKET;
	assert!(total >= packet_bytes && (total - packet_bytes) % (2 * TS_PACKET) == 0);
}

/// A playlist text described by the input: media sequence edges, durations that do not parse or
/// are out of range, URIs, end and master tags, a missing last newline.
fn structured_playlist(input: &mut Input) -> String {
	let mut s = String::new();
	if input.u8() % 8 != 0 {
		s.push_str("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n");
	}
	if input.u8() % 4 != 0 {
		s.push_str(&format!("#EXT-X-MEDIA-SEQUENCE:{}\n", input.edge_u64()));
	}
	for i in 0..input.u8() % 16 {
		let duration = match input.u8() % 8 {
			0 => "-1".to_string(),
			1 => "nan".into(),
			2 => "1e308".into(),
			3 => "0".into(),
			4 => "inf".into(),
			_ => format!("{}.{:03}", input.u8(), input.u16() % 1000),
		};
		s.push_str(&format!("#EXTINF:{duration},\nseg{i}.ts\n"));
	}
	match input.u8() % 8 {
		0 => s.push_str("#EXT-X-ENDLIST\n"),
		1 => s.push_str("#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"),
		2 => s.push_str("#EXTINF:2.0,\npartial.ts"),
		_ => {}
	}
	s
}

/// The HLS follower (`dsp publish --hls-dir`) fed a series of playlist texts. Invariants: no
/// panic; every entry handed out once, in strictly increasing media sequence over all texts;
/// durations clamped to the segment limits; the stats count what was handed out.
pub fn hls(data: &[u8]) {
	let mut input = Input::new(data);
	let mut follower = HlsFollower::new();
	let mut last: Option<u64> = None;
	let mut handed = 0u64;
	for _ in 0..input.u8() % 8 + 1 {
		let text = if input.u8() % 4 == 0 {
			let n = usize::from(input.u16() % 4096);
			String::from_utf8_lossy(input.bytes(n)).into_owned()
		} else {
			structured_playlist(&mut input)
		};
		if let Err(e) = follower.handle_playlist(&text) {
			let _ = e.to_string();
		}
		while let Some(e) = follower.poll_entry() {
			assert!(last.is_none_or(|l| e.media_sequence > l), "entry out of order or repeated");
			assert!((MIN_SEGMENT_DURATION_MS..=MAX_SEGMENT_DURATION_MS).contains(&e.duration_ms));
			last = Some(e.media_sequence);
			handed += 1;
		}
		let _ = follower.is_ended();
	}
	assert_eq!(follower.stats().entries, handed);
}
