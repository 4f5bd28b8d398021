//! The driver of [`crate::hls_ingest`]: follows a directory written by an HLS muxer (ffmpeg
//! `-f hls`), reading its playlist every poll interval, and publishes each new segment's file
//! byte for byte through a [`SegmentSigner`]. Every decision (which segments are new, which were
//! missed, when the playlist ended) is the sans-IO [`HlsFollower`]'s; this module only reads
//! files, bounded by [`MAX_PLAYLIST_BYTES`] and [`DEFAULT_MAX_SEGMENT_LEN`].

use super::publish::{Publisher, SegmentSigner};
use crate::{
	hls_ingest::{check_uri, HlsFollower, MAX_PLAYLIST_BYTES},
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
			let file = match segment_path(dir, &entry.uri).await {
				Ok(f) => f,
				Err(why) => {
					missing += 1;
					warn!(uri = %entry.uri, %why, missing, "segment URI refused: not a file in the playlist's directory; skipped");
					continue;
				}
			};
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

/// The file `uri` names in `dir`, if it is inside `dir` once links are resolved
/// ([`check_uri`] first, then both canonicalized).
async fn segment_path(dir: &Path, uri: &str) -> Result<PathBuf, String> {
	let relative = check_uri(uri).map_err(|e| e.to_string())?;
	let file = dir.join(relative);
	let real_dir =
		tokio::fs::canonicalize(dir).await.map_err(|e| format!("{}: {e}", dir.display()))?;
	// A file that does not exist (deleted by `delete_segments`) is reported by the read.
	match tokio::fs::canonicalize(&file).await {
		Ok(real) if real.starts_with(&real_dir) => Ok(real),
		Ok(real) => Err(format!("resolves to {}, outside {}", real.display(), real_dir.display())),
		Err(_) => Ok(file),
	}
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

	/// A playlist that names files outside its directory (absolute, `..`, a URL, a symlink out)
	/// publishes none of them; the segment inside is published.
	#[tokio::test]
	async fn playlist_uris_outside_the_directory_are_not_published() {
		let secret_dir = tempfile::tempdir().unwrap();
		let secret = secret_dir.path().join("secret.key");
		std::fs::write(&secret, b"do not publish").unwrap();
		let dir = tempfile::tempdir().unwrap();
		let d = dir.path().join("hls");
		std::fs::create_dir(&d).unwrap();
		std::fs::write(dir.path().join("up.ts"), b"outside").unwrap();
		std::os::unix::fs::symlink(&secret, d.join("link.ts")).unwrap();
		std::fs::write(d.join("ok.ts"), b"inside").unwrap();
		let uris = [
			secret.display().to_string(),
			"../up.ts".to_string(),
			"sub/../../up.ts".to_string(),
			format!("file://{}", secret.display()),
			"link.ts".to_string(),
			"ok.ts".to_string(),
		];
		let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n");
		for u in &uris {
			text.push_str(&format!("#EXTINF:2.0,\n{u}\n"));
		}
		text.push_str("#EXT-X-ENDLIST\n");
		std::fs::write(d.join("index.m3u8"), text).unwrap();
		let pair =
			<sp_core::sr25519::Pair as sp_core::Pair>::from_string("//Origin", None).unwrap();
		let config = super::super::publish::PublishConfig::new(1, vec![], pair.clone());
		let publisher = Publisher::start(config).unwrap();
		let at = super::super::publish::Resume { broadcast: 0, next_sequence: 0 };
		let mut signer = SegmentSigner::new(pair, [0; 32], 1, 1024, at);
		follow_hls_dir(&d, None, Duration::from_millis(1), &publisher, &mut signer).await.unwrap();
		assert_eq!(signer.published(), 1, "only ok.ts is inside the directory");
	}
}
