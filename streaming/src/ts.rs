//! Cutting an MPEG-TS byte stream into segments at key frames. Sans-IO: feed bytes with
//! [`TsSegmenter::push`], take segments with [`TsSegmenter::poll_segment`], and call
//! [`TsSegmenter::finish`] at end of input.
//!
//! How cuts are found: the PAT names the PMT, the PMT names the elementary streams. The "key"
//! stream is the first video stream (or, with no video, the first stream). A cut is allowed at a
//! TS packet of the key stream that starts a PES packet (payload_unit_start) and, for video, has
//! the adaptation field's random_access_indicator set (ffmpeg's muxer sets it on key frames).
//! A segment is cut at the first such point once it has lasted `target_duration_ms`, measured
//! with the PES presentation timestamps of the key stream. If the PAT/PMT pair was sent just
//! before the key frame (as ffmpeg does), the cut goes before the PAT, so each segment starts
//! with PAT, PMT and a key frame and decodes on its own; otherwise the last PAT and PMT packets
//! are copied to the front of the new segment.

use bytes::{Bytes, BytesMut};

/// TS packet size.
pub const TS_PACKET: usize = 188;
const SYNC: u8 = 0x47;
const PAT_PID: u16 = 0;

/// Segmenter settings.
#[derive(Clone, Debug)]
pub struct TsConfig {
	/// Shortest segment: cut at the first key frame after this much play time. Default 2000 ms.
	pub target_duration_ms: u32,
	/// Longest segment in bytes: cut without a key frame beyond this (logged). Default 8 MiB.
	pub max_segment_len: usize,
}

impl Default for TsConfig {
	fn default() -> Self {
		Self { target_duration_ms: 2000, max_segment_len: 8 * 1024 * 1024 }
	}
}

/// One cut segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsSegment {
	/// The TS packets of the segment.
	pub data: Bytes,
	/// Play time in milliseconds (PTS difference between this cut and the next; for the last
	/// segment, up to the last PTS plus one frame interval).
	pub duration_ms: u32,
	/// Whether the segment was cut without a key frame because it hit `max_segment_len`.
	pub forced: bool,
}

/// Counters for logs.
#[derive(Clone, Debug, Default)]
pub struct TsStats {
	/// Complete TS packets parsed.
	pub packets: u64,
	/// Bytes skipped to find packet sync again.
	pub resync_bytes: u64,
	/// Segments emitted.
	pub segments: u64,
}

/// MPEG-TS to segments, cut at key frames.
#[derive(Debug)]
pub struct TsSegmenter {
	config: TsConfig,
	input: BytesMut,
	current: BytesMut,
	pmt_pid: Option<u16>,
	key_pid: Option<u16>,
	key_is_video: bool,
	last_pat: Option<[u8; TS_PACKET]>,
	last_pmt: Option<[u8; TS_PACKET]>,
	/// Offset in `current` of the most recent PAT, if no key-stream packet came after it.
	pat_offset: Option<usize>,
	seg_start_pts: Option<u64>,
	last_pts: Option<u64>,
	min_frame_interval: Option<u64>,
	ready: std::collections::VecDeque<TsSegment>,
	stats: TsStats,
}

/// Difference of two 33-bit PTS values, modulo wrap-around.
fn pts_delta(from: u64, to: u64) -> u64 {
	to.wrapping_sub(from) & ((1 << 33) - 1)
}

fn pts_to_ms(ticks: u64) -> u32 {
	(ticks / 90).min(u32::MAX as u64) as u32
}

impl TsSegmenter {
	/// A segmenter with `config`.
	pub fn new(config: TsConfig) -> Self {
		Self {
			config,
			input: BytesMut::new(),
			current: BytesMut::new(),
			pmt_pid: None,
			key_pid: None,
			key_is_video: false,
			last_pat: None,
			last_pmt: None,
			pat_offset: None,
			seg_start_pts: None,
			last_pts: None,
			min_frame_interval: None,
			ready: Default::default(),
			stats: Default::default(),
		}
	}

	/// Counters.
	pub fn stats(&self) -> &TsStats {
		&self.stats
	}

	/// Feeds input bytes.
	pub fn push(&mut self, data: &[u8]) {
		self.input.extend_from_slice(data);
		loop {
			// Find sync: a 0x47 byte (and, when enough is buffered, another one 188 later).
			let Some(pos) = self.input.iter().position(|&b| b == SYNC) else {
				self.stats.resync_bytes += self.input.len() as u64;
				self.input.clear();
				return;
			};
			if pos > 0 {
				self.stats.resync_bytes += pos as u64;
				let _ = self.input.split_to(pos);
			}
			// Wait for the next packet's sync byte too, so a stray 0x47 is not taken for a packet.
			if self.input.len() <= TS_PACKET {
				return;
			}
			if self.input[TS_PACKET] != SYNC {
				// False sync byte: skip it.
				self.stats.resync_bytes += 1;
				let _ = self.input.split_to(1);
				continue;
			}
			let packet = self.input.split_to(TS_PACKET);
			self.handle_packet(&packet);
		}
	}

	/// End of input: emits the last partial segment.
	pub fn finish(&mut self) {
		if self.input.len() == TS_PACKET && self.input[0] == SYNC {
			let packet = self.input.split_to(TS_PACKET);
			self.handle_packet(&packet);
		}
		self.stats.resync_bytes += self.input.len() as u64;
		self.input.clear();
		if !self.current.is_empty() {
			let duration = match (self.seg_start_pts, self.last_pts) {
				(Some(s), Some(l)) => pts_delta(s, l) + self.min_frame_interval.unwrap_or(0),
				_ => 0,
			};
			self.emit(pts_to_ms(duration), false);
		}
	}

	/// The next complete segment.
	pub fn poll_segment(&mut self) -> Option<TsSegment> {
		self.ready.pop_front()
	}

	fn emit(&mut self, duration_ms: u32, forced: bool) {
		let data = std::mem::take(&mut self.current).freeze();
		self.stats.segments += 1;
		self.ready.push_back(TsSegment { data, duration_ms, forced });
	}

	fn handle_packet(&mut self, p: &[u8]) {
		self.stats.packets += 1;
		let pusi = p[1] & 0x40 != 0;
		let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
		let afc = (p[3] >> 4) & 0x3;
		let mut payload_at = 4;
		let mut random_access = false;
		if afc & 0x2 != 0 {
			let af_len = p[4] as usize;
			if af_len > 0 {
				random_access = p[5] & 0x40 != 0;
			}
			payload_at = 5 + af_len;
		}
		let payload = if afc & 0x1 != 0 && payload_at < TS_PACKET { &p[payload_at..] } else { &[] };

		if pid == PAT_PID && pusi {
			self.parse_pat(payload);
			let mut copy = [0; TS_PACKET];
			copy.copy_from_slice(p);
			self.last_pat = Some(copy);
			if self.pat_offset.is_none() {
				self.pat_offset = Some(self.current.len());
			}
		} else if Some(pid) == self.pmt_pid && pusi {
			self.parse_pmt(payload);
			let mut copy = [0; TS_PACKET];
			copy.copy_from_slice(p);
			self.last_pmt = Some(copy);
		} else if Some(pid) == self.key_pid && pusi {
			let pts = parse_pes_pts(payload);
			if let (Some(last), Some(pts)) = (self.last_pts, pts) {
				let d = pts_delta(last, pts);
				if d > 0 && d < 90_000 {
					self.min_frame_interval = Some(self.min_frame_interval.map_or(d, |m| m.min(d)));
				}
			}
			let key = random_access || !self.key_is_video;
			if key {
				if let (Some(start), Some(pts)) = (self.seg_start_pts, pts) {
					let elapsed = pts_to_ms(pts_delta(start, pts));
					if elapsed >= self.config.target_duration_ms {
						self.cut(elapsed);
					}
				}
				if self.seg_start_pts.is_none() {
					self.seg_start_pts = pts;
				}
			}
			if pts.is_some() {
				self.last_pts = pts;
			}
		}
		if Some(pid) == self.key_pid {
			// Tables seen before this packet no longer directly precede a cut point.
			self.pat_offset = None;
		}
		self.current.extend_from_slice(p);
		if self.current.len() >= self.config.max_segment_len {
			let duration = match (self.seg_start_pts, self.last_pts) {
				(Some(s), Some(l)) => pts_to_ms(pts_delta(s, l)),
				_ => 0,
			};
			self.pat_offset = None;
			self.emit(duration, true);
			self.seg_start_pts = self.last_pts;
		}
	}

	/// Cuts before the current packet (or before the PAT that immediately precedes it). Right
	/// after a forced cut there is nothing before the cut point: no (empty) segment is emitted.
	fn cut(&mut self, duration_ms: u32) {
		match self.pat_offset.take() {
			// The PAT already starts the segment.
			Some(0) => {}
			Some(at) => {
				let tail = self.current.split_off(at);
				self.emit(duration_ms, false);
				self.current = tail;
			}
			None => {
				if !self.current.is_empty() {
					self.emit(duration_ms, false);
				}
				// Repeat the tables so the new segment decodes on its own.
				if let (Some(pat), Some(pmt)) = (self.last_pat, self.last_pmt) {
					self.current.extend_from_slice(&pat);
					self.current.extend_from_slice(&pmt);
				}
			}
		}
		self.seg_start_pts = None;
	}

	fn parse_pat(&mut self, payload: &[u8]) {
		let Some(section) = psi_section(payload, 0x00) else { return };
		// Program loop: after 5 bytes of header fields, 4 bytes per program, then CRC. A
		// section too short for one entry is malformed input: ignore it.
		if section.len() < 9 {
			return;
		}
		let body = &section[5..section.len().saturating_sub(4).max(5)];
		for entry in body.chunks_exact(4) {
			let program = u16::from_be_bytes([entry[0], entry[1]]);
			let pid = u16::from_be_bytes([entry[2] & 0x1f, entry[3]]);
			if program != 0 {
				self.pmt_pid = Some(pid);
				return;
			}
		}
	}

	fn parse_pmt(&mut self, payload: &[u8]) {
		let Some(section) = psi_section(payload, 0x02) else { return };
		if section.len() < 9 {
			return;
		}
		let info_len = (u16::from_be_bytes([section[7] & 0x0f, section[8]])) as usize;
		let mut at = 9 + info_len;
		let end = section.len().saturating_sub(4);
		let mut first = None;
		while at + 5 <= end {
			let stream_type = section[at];
			let pid = u16::from_be_bytes([section[at + 1] & 0x1f, section[at + 2]]);
			let es_info = (u16::from_be_bytes([section[at + 3] & 0x0f, section[at + 4]])) as usize;
			first.get_or_insert(pid);
			// MPEG-1/2 video, MPEG-4 part 2, H.264, HEVC.
			if matches!(stream_type, 0x01 | 0x02 | 0x10 | 0x1b | 0x24) {
				self.key_pid = Some(pid);
				self.key_is_video = true;
				return;
			}
			at += 5 + es_info;
		}
		if self.key_pid.is_none() {
			self.key_pid = first;
			self.key_is_video = false;
		}
	}
}

/// The PSI section (from table_id through CRC) in a PUSI payload, if its table id matches and
/// it fits in the packet.
fn psi_section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
	let pointer = *payload.first()? as usize;
	let s = payload.get(1 + pointer..)?;
	if *s.first()? != table_id || s.len() < 3 {
		return None;
	}
	let len = (u16::from_be_bytes([s[1] & 0x0f, s[2]])) as usize;
	// table_id + 2 length bytes, then `len` bytes; we return from byte 3 on.
	s.get(3..3 + len)
}

/// PTS of a PES packet starting in `payload`, if present.
fn parse_pes_pts(payload: &[u8]) -> Option<u64> {
	if payload.len() < 14 || payload[..3] != [0, 0, 1] {
		return None;
	}
	let flags = payload[7];
	if flags & 0x80 == 0 {
		return None;
	}
	let b = &payload[9..14];
	Some(
		(((b[0] >> 1) & 0x07) as u64) << 30
			| (b[1] as u64) << 22
			| ((b[2] >> 1) as u64) << 15
			| (b[3] as u64) << 7
			| (b[4] >> 1) as u64,
	)
}

#[cfg(test)]
pub(crate) mod tests {
	use super::*;

	/// A TS packet with optional adaptation field and payload (padded with stuffing).
	fn packet(pid: u16, pusi: bool, random_access: bool, payload: &[u8]) -> [u8; TS_PACKET] {
		let mut p = [0xffu8; TS_PACKET];
		p[0] = SYNC;
		p[1] = ((pusi as u8) << 6) | ((pid >> 8) as u8 & 0x1f);
		p[2] = pid as u8;
		// Always an adaptation field, sized so the payload fills the rest of the packet.
		let af_len = TS_PACKET - 5 - payload.len();
		p[3] = 0x30;
		p[4] = af_len as u8;
		if af_len > 0 {
			p[5] = if random_access { 0x40 } else { 0x00 };
		}
		p[5 + af_len..].copy_from_slice(payload);
		p
	}

	fn pat(pmt_pid: u16) -> [u8; TS_PACKET] {
		let mut s = vec![0u8, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1];
		s.push(0xe0 | (pmt_pid >> 8) as u8);
		s.push(pmt_pid as u8);
		s.extend([0, 0, 0, 0]);
		packet(0, true, false, &s)
	}

	fn pmt(video_pid: u16, audio_pid: u16) -> [u8; TS_PACKET] {
		let mut s = vec![0u8, 0x02, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0];
		s.extend([0x0f, 0xe0 | (audio_pid >> 8) as u8, audio_pid as u8, 0xf0, 0]);
		s.extend([0x1b, 0xe0 | (video_pid >> 8) as u8, video_pid as u8, 0xf0, 0]);
		s.extend([0, 0, 0, 0]);
		packet(0x1000, true, false, &s)
	}

	fn pes(pid: u16, key: bool, pts: u64) -> [u8; TS_PACKET] {
		let mut s = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5];
		s.push(0x21 | (((pts >> 30) as u8 & 7) << 1));
		s.push((pts >> 22) as u8);
		s.push(((pts >> 15) as u8) << 1 | 1);
		s.push((pts >> 7) as u8);
		s.push((pts as u8) << 1 | 1);
		s.extend([0u8; 20]);
		packet(pid, true, key, &s)
	}

	/// `seconds` of synthetic TS at 25 fps, key frame every `gop` frames, PAT+PMT before each
	/// key frame, one audio packet per frame.
	pub(crate) fn synthetic_ts(seconds: u32, gop: u32) -> Vec<u8> {
		let mut out = Vec::new();
		for frame in 0..seconds * 25 {
			let key = frame % gop == 0;
			let pts = 90_000 + frame as u64 * 3600;
			if key {
				out.extend(pat(0x1000));
				out.extend(pmt(0x100, 0x101));
			}
			out.extend(pes(0x100, key, pts));
			out.extend(packet(0x100, false, false, &[0xaa; 100]));
			out.extend(pes(0x101, false, pts));
		}
		out
	}

	fn segments_of(input: &[u8], step: usize) -> Vec<TsSegment> {
		let mut s = TsSegmenter::new(TsConfig::default());
		for piece in input.chunks(step) {
			s.push(piece);
		}
		s.finish();
		std::iter::from_fn(|| s.poll_segment()).collect()
	}

	#[test]
	fn cuts_at_key_frames_before_the_pat() {
		let input = synthetic_ts(10, 50);
		let segs = segments_of(&input, 1000);
		assert_eq!(segs.len(), 5);
		for s in &segs {
			assert_eq!(s.duration_ms, 2000);
			assert_eq!(s.data[..TS_PACKET], pat(0x1000));
			assert!(!s.forced);
		}
		let joined: Vec<u8> = segs.iter().flat_map(|s| s.data.to_vec()).collect();
		assert_eq!(joined, input);
	}

	#[test]
	fn short_gops_are_merged_up_to_the_target_duration() {
		// Key frame every 0.6 s: cuts at 2.4 s.
		let segs = segments_of(&synthetic_ts(12, 15), 4096);
		assert_eq!(segs[0].duration_ms, 2400);
		assert_eq!(segs.len(), 5);
	}

	#[test]
	fn garbage_before_and_between_packets_is_skipped() {
		let mut input = b"garbage\x47\x47 more".to_vec();
		let ts = synthetic_ts(4, 50);
		input.extend(&ts);
		let segs = segments_of(&input, 7);
		let joined: Vec<u8> = segs.iter().flat_map(|s| s.data.to_vec()).collect();
		assert_eq!(joined, ts);
		assert_eq!(segs.len(), 2);

		// Junk in the middle costs at most the packet in front of it, never a panic.
		let mut input = ts[..TS_PACKET * 10].to_vec();
		input.extend(b"\x00\x01junk\x47");
		input.extend(&ts[TS_PACKET * 10..]);
		let segs = segments_of(&input, 5);
		let total: usize = segs.iter().map(|s| s.data.len()).sum();
		assert!(total >= ts.len() - TS_PACKET && total.is_multiple_of(TS_PACKET));
	}

	#[test]
	fn tables_are_repeated_when_the_key_frame_has_none_before_it() {
		let mut input = Vec::new();
		input.extend(pat(0x1000));
		input.extend(pmt(0x100, 0x101));
		for frame in 0..100u64 {
			input.extend(pes(0x100, frame % 50 == 0, frame * 3600));
		}
		let segs = segments_of(&input, 188);
		assert_eq!(segs.len(), 2);
		assert_eq!(segs[1].data[..TS_PACKET], pat(0x1000));
		assert_eq!(segs[1].data.len(), (2 + 50) * TS_PACKET);
	}

	#[test]
	fn oversized_segment_is_forced() {
		let mut s =
			TsSegmenter::new(TsConfig { target_duration_ms: 2000, max_segment_len: 10 * 188 });
		s.push(&synthetic_ts(1, 1000));
		let seg = s.poll_segment().unwrap();
		assert!(seg.forced);
		assert_eq!(seg.data.len(), 10 * 188);
	}

	/// Found by the `ts` fuzz target (in 3 s): a key frame due for a cut right after a
	/// forced cut (with or without a PAT between them) emitted an empty segment, which the
	/// publisher would sign and every server refuse as `BadHeader`.
	#[test]
	fn a_cut_right_after_a_forced_cut_emits_no_empty_segment() {
		let config = TsConfig { target_duration_ms: 40, max_segment_len: 3 * TS_PACKET };
		let mut empty = Vec::new();
		for pat_between in [true, false] {
			let mut input = Vec::new();
			input.extend(pat(0x1000));
			input.extend(pmt(0x100, 0x101));
			input.extend(pes(0x100, true, 90_000));
			// Forced cut here (3 packets); the next key frame is due for a cut.
			if pat_between {
				input.extend(pat(0x1000));
			}
			input.extend(pes(0x100, true, 93_600));
			let mut s = TsSegmenter::new(config.clone());
			s.push(&input);
			s.finish();
			let segs: Vec<_> = std::iter::from_fn(|| s.poll_segment()).collect();
			if segs.iter().any(|s| s.data.is_empty()) {
				empty.push(pat_between);
			}
			assert!(segs.iter().all(|s| s.data.len() % TS_PACKET == 0));
		}
		assert!(empty.is_empty(), "empty segments with a PAT between the cuts: {empty:?}");
	}

	#[test]
	fn malformed_tables_are_ignored_without_panicking() {
		// PAT and PMT whose section lengths (0..=8) are too short for one entry, then a valid
		// stream: the bad tables are skipped and the stream still cuts.
		let mut input = Vec::new();
		for len in 0..=8u8 {
			input.extend(packet(0, true, false, &[0, 0x00, 0xb0, len, 0, 1, 0xc1, 0, 0]));
			input.extend(packet(0x1000, true, false, &[0, 0x02, 0xb0, len, 0, 1, 0xc1, 0, 0]));
		}
		input.extend(synthetic_ts(4, 50));
		assert_eq!(segments_of(&input, 1000).len(), 2);
	}
}
