//! The local HLS playlist the viewer serves to a player: a sliding window of delivered segments,
//! numbered so that a gap never renumbers a segment the player already saw.

use super::Delivered;
use bytes::Bytes;
use dsp_primitives::StreamId;
use std::{collections::VecDeque, fmt};

/// One entry of the HLS playlist.
#[derive(Clone, Debug)]
struct Entry {
	sequence: u64,
	/// HLS media sequence number: consecutive over the entries ever pushed, so a gap in
	/// stream sequences never renumbers a segment a player already saw.
	media_sequence: u64,
	duration_ms: u32,
	chunks: Vec<Bytes>,
	discontinuity: bool,
}

/// The local HLS playlist: a sliding window of delivered segments.
#[derive(Debug)]
pub struct Playlist {
	stream: StreamId,
	max_segments: usize,
	entries: VecDeque<Entry>,
	next_media_sequence: u64,
	discontinuity_sequence: u64,
	ended: bool,
	last_requested: Option<u64>,
}

impl Playlist {
	/// A playlist of `stream` keeping the last `max_segments` segments.
	pub fn new(stream: StreamId, max_segments: usize) -> Self {
		Self {
			stream,
			max_segments: max_segments.max(3),
			entries: VecDeque::new(),
			next_media_sequence: 0,
			discontinuity_sequence: 0,
			ended: false,
			last_requested: None,
		}
	}

	/// Adds a delivered segment.
	pub fn push(&mut self, d: &Delivered) {
		self.entries.push_back(Entry {
			sequence: d.segment.sequence(),
			media_sequence: self.next_media_sequence,
			duration_ms: d.segment.duration_ms(),
			chunks: d.segment.chunks.clone(),
			discontinuity: d.discontinuity && !self.entries.is_empty(),
		});
		self.next_media_sequence += 1;
		while self.entries.len() > self.max_segments {
			// RFC 8216 6.2.1: removing a discontinuity tag increments the discontinuity
			// sequence.
			if self.entries.pop_front().is_some_and(|old| old.discontinuity) {
				self.discontinuity_sequence += 1;
			}
		}
	}

	/// Marks the stream ended (`#EXT-X-ENDLIST`).
	pub fn end(&mut self) {
		self.ended = true;
	}

	/// The stream this playlist is for.
	pub fn stream(&self) -> StreamId {
		self.stream
	}

	/// The playlist text.
	pub fn render(&self) -> String {
		use fmt::Write;
		let target = self.entries.iter().map(|e| e.duration_ms.div_ceil(1000)).max().unwrap_or(2);
		let mut s = String::new();
		let _ = writeln!(s, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}", target.max(1));
		let first = self.entries.front().map_or(self.next_media_sequence, |e| e.media_sequence);
		let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{first}");
		if self.discontinuity_sequence > 0 {
			let _ = writeln!(s, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
		}
		for e in &self.entries {
			if e.discontinuity {
				s.push_str("#EXT-X-DISCONTINUITY\n");
			}
			let _ = writeln!(
				s,
				"#EXTINF:{}.{:03},\n{}.ts",
				e.duration_ms / 1000,
				e.duration_ms % 1000,
				e.sequence
			);
		}
		if self.ended {
			s.push_str("#EXT-X-ENDLIST\n");
		}
		s
	}

	/// The chunks of segment `sequence`, if still held; records it as the player's position.
	pub fn segment(&mut self, sequence: u64) -> Option<Vec<Bytes>> {
		let e = self.entries.iter().find(|e| e.sequence == sequence)?;
		self.last_requested = Some(self.last_requested.map_or(sequence, |l| l.max(sequence)));
		Some(e.chunks.clone())
	}

	/// Play time held after the last segment the player fetched, in milliseconds.
	pub fn buffered_ms(&self) -> u64 {
		self.entries
			.iter()
			.filter(|e| self.last_requested.is_none_or(|l| e.sequence > l))
			.map(|e| e.duration_ms as u64)
			.sum()
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::viewer::tests::seg;
	use std::collections::HashMap;

	/// Media sequence number of every segment URI in a rendered playlist.
	fn media_sequences(text: &str) -> Vec<(String, u64)> {
		let first = text
			.lines()
			.find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
			.and_then(|n| n.parse::<u64>().ok())
			.expect("media sequence");
		let uris = text.lines().filter(|l| l.ends_with(".ts"));
		uris.zip(first..).map(|(uri, msn)| (uri.to_string(), msn)).collect()
	}

	#[test]
	fn playlist_never_renumbers_a_segment_across_a_gap() {
		let mut p = Playlist::new(1, 3);
		let mut seen: HashMap<String, u64> = HashMap::new();
		for (s, disc) in [(0, false), (1, false), (5, true), (6, false), (7, false), (9, true)] {
			p.push(&Delivered { segment: seg(s), discontinuity: disc });
			for (uri, msn) in media_sequences(&p.render()) {
				// A player identifies segments by media sequence number: once it fetched one,
				// the same number must keep naming the same URI.
				assert_eq!(*seen.entry(uri.clone()).or_insert(msn), msn, "{uri} renumbered");
			}
		}
		// The gap is marked, and the discontinuity tags that slid out are counted.
		let text = p.render();
		assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{text}");
		assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
		assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n9.ts"), "{text}");
	}

	#[test]
	fn playlist_renders_a_sliding_window_with_discontinuities() {
		let mut p = Playlist::new(1, 3);
		for (s, disc) in [(0, false), (1, false), (5, true), (6, false)] {
			p.push(&Delivered { segment: seg(s), discontinuity: disc });
		}
		p.end();
		let text = p.render();
		assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"), "{text}");
		assert!(text.contains("#EXTINF:2.000,\n1.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n5.ts"));
		assert!(text.ends_with("6.ts\n#EXT-X-ENDLIST\n"));
		assert!(p.segment(0).is_none());
		assert_eq!(p.buffered_ms(), 6000);
		assert_eq!(p.segment(5).unwrap().concat(), vec![5u8; 3000]);
		assert_eq!(p.buffered_ms(), 2000);
	}
}
