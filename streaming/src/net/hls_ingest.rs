//! The driver of [`crate::hls_ingest`]: follows a directory written by an HLS muxer (ffmpeg
//! `-f hls`), reading its playlist every poll interval, and publishes each new segment's file
//! byte for byte through a [`SegmentSigner`]. Every decision (which segments are new, which were
//! missed, when the playlist ended) is the sans-IO [`HlsFollower`]'s; this module only reads
//! files, bounded by [`MAX_PLAYLIST_BYTES`] and [`DEFAULT_MAX_SEGMENT_LEN`].

use super::publish::{Publisher, SegmentSigner};
use crate::{
	hls_ingest::{HlsFollower, MAX_PLAYLIST_BYTES},
	segment::DEFAULT_MAX_SEGMENT_LEN,
};
use bytes::Bytes;
use std::{
	io,
	path::{Path, PathBuf},
	time::Duration,
};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

/// Following an HLS directory failed; the segments published before stay published.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
	/// The directory could not be listed (while looking for the playlist).
	#[error("{}", .dir.display())]
	ListDir {
		/// The directory.
		dir: PathBuf,
		/// Why.
		#[source]
		source: io::Error,
	},
	/// No playlist was named and the directory holds several `*.m3u8` files.
	#[error("several playlists in {}: choose one with --hls-playlist", .0.display())]
	SeveralPlaylists(PathBuf),
	/// The playlist is longer than [`MAX_PLAYLIST_BYTES`].
	#[error("{}: playlist longer than {MAX_PLAYLIST_BYTES} bytes", .0.display())]
	PlaylistTooLong(PathBuf),
	/// A segment's recording could not be written (that segment was not published).
	#[error(transparent)]
	Record(io::Error),
}

/// The playlist to follow in `dir`: `name`, or the only `*.m3u8` file there (`None` while there
/// is none yet).
pub fn find_playlist(dir: &Path, name: Option<&str>) -> Result<Option<PathBuf>, FollowError> {
	if let Some(n) = name {
		let p = dir.join(n);
		return Ok(p.exists().then_some(p));
	}
	let list_err = |source| FollowError::ListDir { dir: dir.to_path_buf(), source };
	let mut found = Vec::new();
	for e in std::fs::read_dir(dir).map_err(list_err)? {
		let p = e.map_err(list_err)?.path();
		if p.extension().is_some_and(|x| x == "m3u8") {
			found.push(p);
		}
	}
	match found.len() {
		0 | 1 => Ok(found.pop()),
		_ => Err(FollowError::SeveralPlaylists(dir.to_path_buf())),
	}
}

/// Reads at most `max` bytes of `path`; `None` if it is longer.
async fn read_capped(path: &Path, max: usize) -> io::Result<Option<Vec<u8>>> {
	let file = tokio::fs::File::open(path).await?;
	let mut data = Vec::new();
	file.take(max as u64 + 1).read_to_end(&mut data).await?;
	Ok((data.len() <= max).then_some(data))
}

/// Follows the HLS muxer's directory `dir` until its playlist ends (`#EXT-X-ENDLIST`): the
/// playlist `playlist` (or the only `*.m3u8` file there, waited for until it appears), read
/// every `poll`; each new segment is signed and pushed with its `#EXTINF` duration, in
/// playlist order. Segments that are listed but unreadable (deleted by `delete_segments`
/// first), empty or above the segment size limit are skipped and counted.
pub async fn follow_hls_dir(
	dir: &Path,
	playlist_name: Option<&str>,
	poll: Duration,
	publisher: &Publisher,
	signer: &mut SegmentSigner,
) -> Result<(), FollowError> {
	let mut follower = HlsFollower::new();
	let mut tick = tokio::time::interval(poll);
	tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
	let mut playlist = None;
	let mut missing = 0u64;
	let mut waiting_logged = false;
	while !follower.is_ended() {
		tick.tick().await;
		if playlist.is_none() {
			playlist = find_playlist(dir, playlist_name)?;
			if playlist.is_none() {
				if !waiting_logged {
					info!(dir = %dir.display(), "waiting for the HLS playlist to appear");
					waiting_logged = true;
				}
				continue;
			}
		}
		let Some(path) = playlist.as_ref() else { continue };
		let text = match read_capped(path, MAX_PLAYLIST_BYTES).await {
			Ok(Some(t)) => String::from_utf8_lossy(&t).into_owned(),
			Ok(None) => return Err(FollowError::PlaylistTooLong(path.clone())),
			Err(e) => {
				warn!(path = %path.display(), error = %e, "could not read the playlist; will retry");
				continue;
			}
		};
		if let Err(e) = follower.handle_playlist(&text) {
			warn!(path = %path.display(), error = %e, "playlist not usable; will read it again");
			continue;
		}
		while let Some(entry) = follower.poll_entry() {
			let file = dir.join(&entry.uri);
			match read_capped(&file, DEFAULT_MAX_SEGMENT_LEN as usize).await {
				Ok(Some(data)) if !data.is_empty() => signer
					.push(publisher, Bytes::from(data), entry.duration_ms)
					.map_err(FollowError::Record)?,
				Ok(_) => {
					missing += 1;
					warn!(file = %file.display(), missing, "segment empty or above the segment size limit; skipped");
				}
				Err(e) => {
					// Deleted (delete_segments) before we got to it.
					missing += 1;
					warn!(file = %file.display(), error = %e, missing, "segment listed but not readable; skipped");
				}
			}
		}
	}
	let stats = follower.stats();
	info!(
		playlists = stats.playlists,
		segments = stats.entries,
		missed = stats.missed + missing,
		"HLS playlist ended"
	);
	Ok(())
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn the_playlist_is_the_named_one_or_the_only_one() {
		let dir = tempfile::tempdir().unwrap();
		let d = dir.path();
		assert!(find_playlist(d, None).unwrap().is_none());
		assert!(find_playlist(d, Some("index.m3u8")).unwrap().is_none());
		std::fs::write(d.join("0.ts"), b"").unwrap();
		std::fs::write(d.join("index.m3u8"), b"#EXTM3U\n").unwrap();
		assert_eq!(find_playlist(d, None).unwrap(), Some(d.join("index.m3u8")));
		std::fs::write(d.join("other.m3u8"), b"#EXTM3U\n").unwrap();
		assert!(matches!(find_playlist(d, None), Err(FollowError::SeveralPlaylists(_))));
		assert_eq!(find_playlist(d, Some("other.m3u8")).unwrap(), Some(d.join("other.m3u8")));
		assert!(matches!(
			find_playlist(&d.join("missing"), None),
			Err(FollowError::ListDir { .. })
		));
	}
}
