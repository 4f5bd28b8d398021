//! Following a directory written by an HLS muxer (ffmpeg `-f hls`), sans-IO: the driver reads
//! the playlist file now and then and feeds its text to [`HlsFollower::handle_playlist`]; the
//! follower hands out every media segment once, in playlist order, with
//! [`HlsFollower::poll_entry`], and says when the playlist ended (`#EXT-X-ENDLIST`).
//!
//! Segments are identified by their media sequence number (`#EXT-X-MEDIA-SEQUENCE` plus their
//! position in the list), not by file name, so a sliding playlist (`-hls_list_size N`, with or
//! without `-hls_flags delete_segments`) is followed as well as a growing one
//! (`-hls_list_size 0`). Segments that slid out of the list before the follower saw them are
//! counted as missed, never reordered.
//!
//! A segment URI must name a file inside the playlist's directory ([`check_uri`]; the driver
//! also resolves links): the publisher signs and pushes what it names, so a playlist that named
//! `/home/me/.ssh/id_ed25519` or `../secret` would publish any file the publisher can read.

use crate::segment::clamp_duration_ms;
use std::{
	collections::VecDeque,
	path::{Component, Path},
};

/// Why a playlist URI is not a file inside the playlist's directory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
	/// Empty, or with a NUL byte.
	#[error("empty or not a file name")]
	Empty,
	/// A URL (`scheme:...`): only files next to the playlist are published.
	#[error("a URL, not a file in the playlist's directory")]
	Scheme,
	/// An absolute path.
	#[error("an absolute path, not a file in the playlist's directory")]
	Absolute,
	/// A `..` component (or another that leaves the directory).
	#[error("a path that leaves the playlist's directory")]
	Escapes,
}

/// Checks that `uri` names a file inside the playlist's directory: a relative path without a
/// scheme and without `..`, returned as a path to join to the directory. The driver must still
/// resolve links (a file in the directory may link elsewhere).
pub fn check_uri(uri: &str) -> Result<&Path, UriError> {
	if uri.is_empty() || uri.contains('\0') {
		return Err(UriError::Empty);
	}
	// RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":". A one-letter scheme
	// is refused too (`c:` on Windows is no file name here either).
	if let Some((scheme, _)) = uri.split_once(':') {
		let mut chars = scheme.chars();
		if chars.next().is_some_and(|c| c.is_ascii_alphabetic())
			&& chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
		{
			return Err(UriError::Scheme);
		}
	}
	let path = Path::new(uri);
	for c in path.components() {
		match c {
			Component::Normal(_) | Component::CurDir => {}
			Component::RootDir | Component::Prefix(_) => return Err(UriError::Absolute),
			Component::ParentDir => return Err(UriError::Escapes),
		}
	}
	Ok(path)
}

/// Largest playlist text accepted, in bytes (4 MiB: about 100 000 entries, over two days of
/// 2 s segments in a `-hls_list_size 0` playlist). The driver reads at most this much.
pub const MAX_PLAYLIST_BYTES: usize = 4 * 1024 * 1024;

/// One media segment to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsEntry {
	/// Media sequence number in the playlist.
	pub media_sequence: u64,
	/// URI as written in the playlist (relative to the playlist's directory for ffmpeg).
	pub uri: String,
	/// `#EXTINF` duration in milliseconds, clamped to the segment duration limits
	/// ([`clamp_duration_ms`]).
	pub duration_ms: u32,
}

/// The playlist text could not be used. The driver logs it and reads the file again at the
/// next poll: a muxer that rewrites the file in place can be caught half way.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaylistError {
	/// The text does not start with `#EXTM3U`.
	#[error("not an m3u8 playlist (no #EXTM3U)")]
	NotAPlaylist,
	/// The text is longer than [`MAX_PLAYLIST_BYTES`].
	#[error("playlist longer than {MAX_PLAYLIST_BYTES} bytes")]
	TooLong,
	/// A tag has a value that does not parse.
	#[error("bad {tag} value {value:?}")]
	BadTag {
		/// The tag.
		tag: &'static str,
		/// Its value.
		value: String,
	},
	/// A master playlist (variant streams), which names no media segments.
	#[error("a master playlist: point --hls-dir at one variant's media playlist")]
	MasterPlaylist,
}

/// Counters of a follower.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowerStats {
	/// Playlist texts accepted.
	pub playlists: u64,
	/// Entries handed out.
	pub entries: u64,
	/// Media sequence numbers that left the playlist before the follower saw them.
	pub missed: u64,
}

/// Hands out the media segments of a playlist that is rewritten as it grows.
#[derive(Debug, Default)]
pub struct HlsFollower {
	/// Next media sequence number to hand out; `None` before the first playlist.
	next: Option<u64>,
	ready: VecDeque<HlsEntry>,
	ended: bool,
	stats: FollowerStats,
}

impl HlsFollower {
	/// A follower that starts with the first segment of the first playlist it is given.
	pub fn new() -> Self {
		Self::default()
	}

	/// Counters.
	pub fn stats(&self) -> FollowerStats {
		self.stats
	}

	/// Whether the playlist ended (`#EXT-X-ENDLIST`) and every entry was handed out.
	pub fn is_ended(&self) -> bool {
		self.ended && self.ready.is_empty()
	}

	/// The next segment to publish.
	pub fn poll_entry(&mut self) -> Option<HlsEntry> {
		let e = self.ready.pop_front()?;
		self.stats.entries += 1;
		Some(e)
	}

	/// The current text of the playlist. A last line without its newline is ignored (the
	/// muxer may be writing it); it is taken at the next call.
	pub fn handle_playlist(&mut self, text: &str) -> Result<(), PlaylistError> {
		if text.len() > MAX_PLAYLIST_BYTES {
			return Err(PlaylistError::TooLong);
		}
		if !text.starts_with("#EXTM3U") {
			return Err(PlaylistError::NotAPlaylist);
		}
		let complete = match text.rfind('\n') {
			Some(at) => &text[..=at],
			None => "",
		};
		let mut media_sequence = 0u64;
		let mut duration: Option<u32> = None;
		let mut entries = Vec::new();
		let mut ended = false;
		for line in complete.lines().map(str::trim) {
			if line.is_empty() {
				continue;
			}
			if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
				media_sequence = v.trim().parse().map_err(|_| PlaylistError::BadTag {
					tag: "#EXT-X-MEDIA-SEQUENCE",
					value: v.into(),
				})?;
			} else if let Some(v) = line.strip_prefix("#EXTINF:") {
				let secs = v.split(',').next().unwrap_or_default().trim();
				let secs: f64 = secs
					.parse()
					.ok()
					.filter(|s: &f64| s.is_finite() && *s >= 0.0)
					.ok_or_else(|| PlaylistError::BadTag { tag: "#EXTINF", value: v.into() })?;
				duration =
					Some(clamp_duration_ms((secs * 1000.0).round().min(u32::MAX as f64) as u32));
			} else if line == "#EXT-X-ENDLIST" {
				ended = true;
			} else if line.starts_with("#EXT-X-STREAM-INF") {
				return Err(PlaylistError::MasterPlaylist);
			} else if !line.starts_with('#') {
				// A URI: the segment the last #EXTINF described. `u64::MAX` is never a media
				// sequence number here, so that one past the last handed out always exists.
				let msn = media_sequence
					.checked_add(entries.len() as u64)
					.filter(|msn| *msn < u64::MAX)
					.ok_or_else(|| PlaylistError::BadTag {
						tag: "#EXT-X-MEDIA-SEQUENCE",
						value: format!("{media_sequence} (with {} entries)", entries.len() + 1),
					})?;
				entries.push(HlsEntry {
					media_sequence: msn,
					uri: line.to_string(),
					duration_ms: duration.take().unwrap_or(clamp_duration_ms(0)),
				});
			}
		}
		self.stats.playlists += 1;
		let next = *self.next.get_or_insert(media_sequence);
		if media_sequence > next {
			// Slid out of the list (deleted) before we saw them.
			self.stats.missed += media_sequence - next;
		}
		let mut next = next.max(media_sequence);
		for e in entries {
			if e.media_sequence >= next {
				next = e.media_sequence + 1;
				self.ready.push_back(e);
			}
		}
		self.next = Some(next);
		self.ended |= ended;
		Ok(())
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn playlist(first: u64, count: u64, ended: bool) -> String {
		let mut s = format!(
			"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
		);
		for i in first..first + count {
			s.push_str(&format!("#EXTINF:2.002000,\nout{i}.ts\n"));
		}
		if ended {
			s.push_str("#EXT-X-ENDLIST\n");
		}
		s
	}

	fn drain(f: &mut HlsFollower) -> Vec<u64> {
		std::iter::from_fn(|| f.poll_entry()).map(|e| e.media_sequence).collect()
	}

	#[test]
	fn a_growing_playlist_yields_each_segment_once_in_order() {
		let mut f = HlsFollower::new();
		f.handle_playlist(&playlist(0, 2, false)).unwrap();
		let first = f.poll_entry().unwrap();
		assert_eq!(first, HlsEntry { media_sequence: 0, uri: "out0.ts".into(), duration_ms: 2002 });
		assert_eq!(drain(&mut f), vec![1]);
		// The same text again, then a longer one: only the new entries.
		f.handle_playlist(&playlist(0, 2, false)).unwrap();
		assert!(drain(&mut f).is_empty());
		f.handle_playlist(&playlist(0, 5, false)).unwrap();
		assert_eq!(drain(&mut f), vec![2, 3, 4]);
		assert!(!f.is_ended());
		f.handle_playlist(&playlist(0, 6, true)).unwrap();
		assert!(!f.is_ended(), "ended only once every entry was taken");
		assert_eq!(drain(&mut f), vec![5]);
		assert!(f.is_ended());
		assert_eq!(f.stats(), FollowerStats { playlists: 4, entries: 6, missed: 0 });
	}

	#[test]
	fn a_sliding_playlist_is_followed_by_media_sequence_and_misses_are_counted() {
		let mut f = HlsFollower::new();
		f.handle_playlist(&playlist(0, 3, false)).unwrap();
		assert_eq!(drain(&mut f), vec![0, 1, 2]);
		// delete_segments with a list of 3: 0 and 1 left the list.
		f.handle_playlist(&playlist(2, 3, false)).unwrap();
		assert_eq!(drain(&mut f), vec![3, 4]);
		// The follower was slow: 5..=7 slid out unseen.
		f.handle_playlist(&playlist(8, 3, false)).unwrap();
		assert_eq!(drain(&mut f), vec![8, 9, 10]);
		assert_eq!(f.stats().missed, 3);
	}

	#[test]
	fn a_half_written_playlist_is_taken_up_to_its_last_complete_line() {
		let mut f = HlsFollower::new();
		let full = playlist(0, 3, true);
		// Cut inside the last URI: the entry is not taken, nor is the end.
		let cut = &full[..full.find("out2.ts").unwrap() + 4];
		f.handle_playlist(cut).unwrap();
		assert_eq!(drain(&mut f), vec![0, 1]);
		assert!(!f.is_ended());
		f.handle_playlist(&full).unwrap();
		assert_eq!(drain(&mut f), vec![2]);
		assert!(f.is_ended());
	}

	#[test]
	fn bad_playlists_are_errors_not_panics() {
		let mut f = HlsFollower::new();
		assert_eq!(f.handle_playlist(""), Err(PlaylistError::NotAPlaylist));
		assert_eq!(f.handle_playlist("<html>\n"), Err(PlaylistError::NotAPlaylist));
		assert!(matches!(
			f.handle_playlist("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:x\n"),
			Err(PlaylistError::BadTag { .. })
		));
		assert!(matches!(
			f.handle_playlist("#EXTM3U\n#EXTINF:-1,\na.ts\n"),
			Err(PlaylistError::BadTag { .. })
		));
		assert_eq!(
			f.handle_playlist("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"),
			Err(PlaylistError::MasterPlaylist)
		);
		assert_eq!(
			f.handle_playlist(&"#EXTM3U\n".repeat(MAX_PLAYLIST_BYTES / 8 + 1)),
			Err(PlaylistError::TooLong)
		);
		// Nothing was handed out and the follower still works.
		f.handle_playlist(&playlist(4, 1, false)).unwrap();
		assert_eq!(drain(&mut f), vec![4]);
	}

	/// Found by the `hls` fuzz target: a media sequence near `u64::MAX` overflowed
	/// `media_sequence + position` (a panic in debug builds, numbers wrapping to 0 in release).
	#[test]
	fn media_sequence_at_the_top_of_u64_is_refused_without_panicking() {
		let mut f = HlsFollower::new();
		let top = format!(
			"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n",
			u64::MAX - 1
		);
		assert!(matches!(f.handle_playlist(&top), Err(PlaylistError::BadTag { .. })));
		let last = format!("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXTINF:2,\na.ts\n", u64::MAX);
		assert!(matches!(f.handle_playlist(&last), Err(PlaylistError::BadTag { .. })));
		assert!(drain(&mut f).is_empty());
		// The largest usable: one entry at u64::MAX - 1, handed out once.
		let edge = format!("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXTINF:2,\na.ts\n", u64::MAX - 1);
		f.handle_playlist(&edge).unwrap();
		f.handle_playlist(&edge).unwrap();
		assert_eq!(drain(&mut f), vec![u64::MAX - 1]);
	}

	#[test]
	fn durations_are_clamped() {
		let mut f = HlsFollower::new();
		f.handle_playlist("#EXTM3U\n#EXTINF:0.0,\na.ts\n#EXTINF:3600,\nb.ts\n").unwrap();
		let d: Vec<u32> = std::iter::from_fn(|| f.poll_entry()).map(|e| e.duration_ms).collect();
		assert_eq!(d, vec![clamp_duration_ms(0), clamp_duration_ms(u32::MAX)]);
		assert!(d[0] > 0 && d[1] < 3_600_000);
	}

	#[test]
	fn only_relative_uris_inside_the_directory_are_accepted() {
		assert_eq!(check_uri("out0.ts"), Ok(Path::new("out0.ts")));
		assert_eq!(check_uri("./sub/out0.ts"), Ok(Path::new("./sub/out0.ts")));
		assert_eq!(check_uri("/etc/passwd"), Err(UriError::Absolute));
		assert_eq!(check_uri("../x.ts"), Err(UriError::Escapes));
		assert_eq!(check_uri("a/../../x.ts"), Err(UriError::Escapes));
		assert_eq!(check_uri("a/.."), Err(UriError::Escapes));
		assert_eq!(check_uri("file:///etc/passwd"), Err(UriError::Scheme));
		assert_eq!(check_uri("http://h/x.ts"), Err(UriError::Scheme));
		assert_eq!(check_uri(""), Err(UriError::Empty));
		assert_eq!(check_uri("a\0b"), Err(UriError::Empty));
	}
}
