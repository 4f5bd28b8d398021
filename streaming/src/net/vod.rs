//! Recorded streams on disk: the server's recorder (`dsp serve --record-dir`) and the
//! on-demand source (`dsp serve --vod-dir`).
//!
//! Layout: one directory per stream and broadcast, `<dir>/<stream>/<broadcast>/`, holding one
//! file per segment, `<sequence>.seg`, and the broadcast's end, `end.frame`; the broadcast id is
//! kept, so that broadcasts never mix and the newest one is what is served on demand. A segment file is the segment's wire
//! frames exactly as the origin's publisher sent them (header frame, then one frame per chunk,
//! length prefixes included), so the origin's signatures stay valid and serving a recording needs
//! no key and no re-encoding. `end.frame` is the origin-signed `End` frame. Files are written to
//! a `.tmp` name, fsynced, and renamed (then the directory is fsynced), so neither a reader nor
//! a crash leaves half a segment under its final name.
//!
//! Disk: the recorder keeps the recordings within a [`Retention`] limit (bytes and age,
//! default 10 GiB and 7 days), deleting whole recordings, least recently written first.
//!
//! Memory: an on-demand session holds the list of sequence numbers of its stream (8 bytes per
//! segment: 29 KiB for two hours of 2 s segments) and reads one segment at a time, at most
//! `max_segment_len` plus frame overhead.

use crate::{
	protocol::{decode_body, FrameDecoder, Message, LENGTH_PREFIX},
	segment::Segment,
	server::Lookup,
};
use bytes::Bytes;
use dsp_primitives::StreamId;
use parking_lot::Mutex;
use std::{
	collections::{BTreeSet, HashMap},
	io,
	path::{Path, PathBuf},
	sync::Arc,
	time::{Duration, SystemTime, UNIX_EPOCH},
};
use tracing::{info, warn};

/// File name of a stream's end.
const END_FILE: &str = "end.frame";
/// Extension of segment files.
const SEGMENT_EXT: &str = "seg";

/// The directory of `stream` under `root`.
pub fn stream_dir(root: &Path, stream: StreamId) -> PathBuf {
	root.join(stream.to_string())
}

/// The directory of broadcast `broadcast` of `stream` under `root`.
pub fn broadcast_dir(root: &Path, stream: StreamId, broadcast: u64) -> PathBuf {
	stream_dir(root, stream).join(broadcast.to_string())
}

/// Writes `data` to `path` through a temporary file, fsynced before the rename, and fsyncs the
/// directory after it: once this returns, the file is on disk whole under its name.
async fn write_atomic(path: PathBuf, data: Vec<u8>) -> io::Result<()> {
	use tokio::io::AsyncWriteExt;
	let tmp = path.with_extension("tmp");
	let mut file = tokio::fs::File::create(&tmp).await?;
	file.write_all(&data).await?;
	file.sync_all().await?;
	drop(file);
	tokio::fs::rename(&tmp, &path).await?;
	sync_dir(path.parent().unwrap_or(Path::new("."))).await
}

/// Fsyncs a directory, so that the entries created or renamed in it are on disk.
async fn sync_dir(dir: &Path) -> io::Result<()> {
	tokio::fs::File::open(dir).await?.sync_all().await
}

/// How much the recorder keeps: beyond either limit, whole recordings (stream directories) are
/// deleted, least recently written first; the recording just written to is never deleted.
/// Checked when the recorder starts and after every write.
#[derive(Clone, Debug)]
pub struct Retention {
	/// Most bytes of all recordings together. Default 10 GiB: about 45 hours of a 500 kbit/s
	/// stream, a day of two streams.
	pub max_bytes: u64,
	/// A recording not written to for this long is deleted. Default 7 days.
	pub max_age: Duration,
}

impl Default for Retention {
	fn default() -> Self {
		Self { max_bytes: 10 * 1024 * 1024 * 1024, max_age: Duration::from_secs(7 * 24 * 3600) }
	}
}

/// Bytes and last write of one recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Usage {
	bytes: u64,
	/// Milliseconds since the Unix epoch.
	last_write: u64,
}

/// What the recordings under a recorder's directory hold, and which to delete under a
/// [`Retention`], sans-IO (times are milliseconds since the Unix epoch).
///
/// Cost: the running total and an ordered index of (last write, stream) make a write
/// O(log n) and an expiry O(log n) per recording it looks at: the recording being written
/// (skipped), the ones it deletes (each deleted once) and the first it keeps. So a stored
/// segment costs O(log n) amortised, whatever the number of recordings.
#[derive(Debug, Default)]
struct RecordingIndex {
	recordings: HashMap<StreamId, Usage>,
	/// The recordings by last write, oldest first.
	by_age: BTreeSet<(u64, StreamId)>,
	total: u64,
	/// Index entries looked at by [`RecordingIndex::expire`] since creation (tests).
	#[cfg_attr(not(test), allow(dead_code))]
	examined: u64,
}

impl RecordingIndex {
	/// `stream`'s recording grew by `added` bytes (replacing `replaced` bytes) at `now`.
	fn record(&mut self, stream: StreamId, added: u64, replaced: u64, now: u64) {
		let u = self.recordings.entry(stream).or_insert(Usage { bytes: 0, last_write: now });
		self.by_age.remove(&(u.last_write, stream));
		let replaced = replaced.min(u.bytes);
		u.bytes = u.bytes - replaced + added;
		u.last_write = u.last_write.max(now);
		self.by_age.insert((u.last_write, stream));
		self.total = self.total - replaced + added;
	}

	/// The recordings to delete at `now` (other than `keep`), taken out of the index: those
	/// older than `max_age`, then the least recently written until the total fits `max_bytes`.
	fn expire(&mut self, now: u64, keep: Option<StreamId>, r: &Retention) -> Vec<StreamId> {
		let max_age = u64::try_from(r.max_age.as_millis()).unwrap_or(u64::MAX);
		let mut doomed = Vec::new();
		loop {
			// The oldest but `keep` (which is in the index once, so at most one is skipped).
			let mut oldest = self.by_age.iter().filter(|(_, id)| Some(*id) != keep);
			let Some(&(last_write, id)) = oldest.next() else { break };
			self.examined += 1 + u64::from(self.by_age.first().is_some_and(|f| f.1 != id));
			if self.total <= r.max_bytes && now.saturating_sub(last_write) <= max_age {
				break;
			}
			self.by_age.remove(&(last_write, id));
			if let Some(u) = self.recordings.remove(&id) {
				self.total -= u.bytes;
			}
			doomed.push(id);
		}
		doomed
	}
}

/// Now, in milliseconds since the Unix epoch.
fn unix_millis(t: SystemTime) -> u64 {
	t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Records the segments and ends of the streams a server stores, within a [`Retention`].
#[derive(Clone, Debug)]
pub struct Recorder {
	root: PathBuf,
	retention: Retention,
	index: Arc<Mutex<RecordingIndex>>,
}

impl Recorder {
	/// A recorder writing under `root` (created if missing), keeping what it finds there and
	/// writes within `retention` (recordings already beyond it are deleted now).
	pub fn new(root: PathBuf, retention: Retention) -> io::Result<Self> {
		std::fs::create_dir_all(&root)?;
		let mut index = RecordingIndex::default();
		for entry in std::fs::read_dir(&root)? {
			let entry = entry?;
			let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<StreamId>().ok())
			else {
				continue;
			};
			if !entry.file_type()?.is_dir() {
				continue;
			}
			// A stream's files are in one directory per broadcast (and, written before
			// broadcasts, directly in the stream's directory).
			let (mut bytes, mut last_write) = (0, 0);
			for file in std::fs::read_dir(entry.path())? {
				let file = file?;
				let files = if file.file_type()?.is_dir() {
					std::fs::read_dir(file.path())?.collect::<io::Result<Vec<_>>>()?
				} else {
					vec![file]
				};
				for f in files {
					let meta = f.metadata()?;
					bytes += meta.len();
					last_write = last_write.max(meta.modified().map_or(0, unix_millis));
				}
			}
			index.record(id, bytes, 0, last_write);
		}
		let doomed = index.expire(unix_millis(SystemTime::now()), None, &retention);
		for id in doomed {
			info!(stream = id, "recording deleted (beyond the retention limit)");
			std::fs::remove_dir_all(stream_dir(&root, id))?;
		}
		Ok(Self { root, retention, index: Arc::new(Mutex::new(index)) })
	}

	/// Bytes of all recordings, as the recorder counts them.
	pub fn total_bytes(&self) -> u64 {
		self.index.lock().total
	}

	/// Writes a stored segment's frames to `<root>/<stream>/<broadcast>/<sequence>.seg`, then
	/// deletes what is beyond the retention limit.
	pub async fn segment(&self, segment: &Segment) -> io::Result<()> {
		let data: Vec<u8> = segment.frames.iter().flat_map(|f| f.iter().copied()).collect();
		let name = format!("{}.{SEGMENT_EXT}", segment.sequence());
		self.write(segment.stream(), segment.broadcast(), &name, data).await
	}

	/// Writes `<root>/<stream>/<broadcast>/<name>` and applies the retention limit (which
	/// counts and deletes whole streams, all their broadcasts).
	async fn write(
		&self,
		stream: StreamId,
		broadcast: u64,
		name: &str,
		data: Vec<u8>,
	) -> io::Result<()> {
		let dir = broadcast_dir(&self.root, stream, broadcast);
		if tokio::fs::metadata(&dir).await.is_err() {
			tokio::fs::create_dir_all(&dir).await?;
			// The new directories' entries, on disk before files in them are.
			sync_dir(&self.root).await?;
			sync_dir(&stream_dir(&self.root, stream)).await?;
		}
		let path = dir.join(name);
		let replaced = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
		let added = data.len() as u64;
		write_atomic(path, data).await?;
		let doomed = {
			let now = unix_millis(SystemTime::now());
			let mut index = self.index.lock();
			index.record(stream, added, replaced, now);
			index.expire(now, Some(stream), &self.retention)
		};
		for id in doomed {
			info!(stream = id, "recording deleted (beyond the retention limit)");
			if let Err(e) = tokio::fs::remove_dir_all(stream_dir(&self.root, id)).await {
				warn!(stream = id, error = %e, "could not delete a recording");
			}
		}
		Ok(())
	}

	/// The stream goes on after an earlier end: removes `end.frame` so that an on-demand viewer
	/// is not told it ended early.
	pub async fn reopen(&self, stream: StreamId, broadcast: u64) -> io::Result<()> {
		let path = broadcast_dir(&self.root, stream, broadcast).join(END_FILE);
		match tokio::fs::remove_file(path).await {
			Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
			_ => Ok(()),
		}
	}

	/// Writes the origin-signed `End` frame of broadcast `broadcast` of `stream`.
	pub async fn end(&self, stream: StreamId, broadcast: u64, end_frame: Bytes) -> io::Result<()> {
		self.write(stream, broadcast, END_FILE, end_frame.to_vec()).await
	}
}

/// File extension of a viewer's recorded segments: the media itself (MPEG-TS), playable as is.
const PLAYED_EXT: &str = "ts";

/// What a viewer played (`dsp watch --record DIR`, direct and P2P mode alike): every segment
/// handed to the player, as its media, at `<dir>/<stream>/<broadcast>/<sequence>.ts` (the
/// server's layout, so a restarted stream, which numbers again, never overwrites the earlier
/// broadcast's files). Each file is written through a temporary name, fsynced, and renamed.
///
/// No retention limit: the viewer records the one stream its user asked for, for as long as it
/// runs (unlike a server's [`Recorder`], which records every stream it stores for anyone).
#[derive(Clone, Debug)]
pub struct PlayRecorder {
	root: PathBuf,
}

impl PlayRecorder {
	/// A recorder writing under `root` (created if missing).
	pub fn new(root: PathBuf) -> io::Result<Self> {
		std::fs::create_dir_all(&root)?;
		Ok(Self { root })
	}

	/// Where segment `sequence` of broadcast `broadcast` of `stream` is written.
	pub fn path(&self, stream: StreamId, broadcast: u64, sequence: u64) -> PathBuf {
		broadcast_dir(&self.root, stream, broadcast).join(format!("{sequence}.{PLAYED_EXT}"))
	}

	/// Writes a played segment's media. A failure is logged, not returned: the viewer plays on.
	pub async fn segment(&self, segment: &Segment) {
		let path = self.path(segment.stream(), segment.broadcast(), segment.sequence());
		let written = async {
			if let Some(dir) = path.parent() {
				tokio::fs::create_dir_all(dir).await?;
			}
			write_atomic(path.clone(), segment.to_vec()).await
		};
		if let Err(e) = written.await {
			warn!(path = %path.display(), error = %e, "could not record segment");
		}
	}
}

/// A recording is unusable.
#[derive(Debug, thiserror::Error)]
pub enum VodError {
	/// Reading the disk failed.
	#[error("reading the recording failed: {0}")]
	Io(#[from] io::Error),
	/// A file does not hold what its name says (damaged or not written by a recorder).
	#[error("{path}: {reason}")]
	Damaged {
		/// The file.
		path: PathBuf,
		/// What is wrong.
		reason: String,
	},
}

/// Rebuilds a [`Segment`] from the frames of a segment file. Checks the structure (one header
/// frame, then its chunks in order, naming its stream and sequence); the signature and hashes
/// were verified when the segment was recorded, and every viewer verifies them again.
pub fn parse_segment_file(data: Bytes, max_frame_len: u32) -> Result<Segment, String> {
	let mut dec = FrameDecoder::new(max_frame_len);
	dec.push(&data);
	let mut frames = Vec::new();
	let mut offset = 0usize;
	let mut header = None;
	let mut chunks = Vec::new();
	while let Some(body) = dec.next_frame().map_err(|e| e.to_string())? {
		let len = LENGTH_PREFIX + body.len();
		// Share the file buffer instead of keeping the decoder's copy.
		let frame = data.slice(offset..offset + len);
		offset += len;
		match decode_body(frame.slice(LENGTH_PREFIX..)).map_err(|e| e.to_string())? {
			Message::Header(h) if header.is_none() => header = Some(h),
			Message::Chunk(c) => {
				let h = header.as_ref().ok_or("chunk before the header")?;
				if c.stream != h.payload.stream
					|| c.sequence != h.payload.sequence
					|| c.index as usize != chunks.len()
				{
					return Err(format!("chunk {} out of place", c.index));
				}
				chunks.push(c.data);
			}
			other => return Err(format!("unexpected {} frame", other.kind())),
		}
		frames.push(frame);
	}
	dec.finish().map_err(|e| e.to_string())?;
	let header = header.ok_or("no header")?;
	if chunks.len() != header.payload.chunk_hashes.len() {
		return Err(format!(
			"{} chunks, header lists {}",
			chunks.len(),
			header.payload.chunk_hashes.len()
		));
	}
	Ok(Segment { header, frames, chunks })
}

/// A recorded stream served on demand.
#[derive(Debug)]
pub struct VodStream {
	dir: PathBuf,
	/// The broadcast recorded there.
	broadcast: u64,
	/// Sequence numbers on disk, ascending.
	sequences: Vec<u64>,
	ended: Option<(u64, Bytes)>,
	max_frame_len: u32,
}

impl VodStream {
	/// The recording of the newest broadcast of `stream` under `root` that has at least one
	/// segment, if there is one.
	pub async fn open(
		root: &Path,
		stream: StreamId,
		max_frame_len: u32,
	) -> Result<Option<VodStream>, VodError> {
		let mut entries = match tokio::fs::read_dir(stream_dir(root, stream)).await {
			Ok(e) => e,
			Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
			Err(e) => return Err(e.into()),
		};
		let mut broadcasts = Vec::new();
		while let Some(e) = entries.next_entry().await? {
			if let Some(b) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
				broadcasts.push(b);
			}
		}
		broadcasts.sort_unstable();
		for broadcast in broadcasts.into_iter().rev() {
			let dir = broadcast_dir(root, stream, broadcast);
			if let Some(v) = Self::open_broadcast(dir, stream, broadcast, max_frame_len).await? {
				return Ok(Some(v));
			}
		}
		Ok(None)
	}

	/// The recording of one broadcast in `dir`, if it has a segment.
	async fn open_broadcast(
		dir: PathBuf,
		stream: StreamId,
		broadcast: u64,
		max_frame_len: u32,
	) -> Result<Option<VodStream>, VodError> {
		let mut entries = match tokio::fs::read_dir(&dir).await {
			Ok(e) => e,
			Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
			Err(e) => return Err(e.into()),
		};
		let mut sequences = Vec::new();
		while let Some(e) = entries.next_entry().await? {
			let path = e.path();
			if path.extension().is_some_and(|x| x == SEGMENT_EXT) {
				if let Some(seq) = path.file_stem().and_then(|s| s.to_str()?.parse().ok()) {
					sequences.push(seq);
				}
			}
		}
		if sequences.is_empty() {
			return Ok(None);
		}
		sequences.sort_unstable();
		let end_path = dir.join(END_FILE);
		let ended = match tokio::fs::read(&end_path).await {
			Ok(data) => {
				let damaged = |reason: String| VodError::Damaged { path: end_path.clone(), reason };
				let frame = Bytes::from(data);
				if frame.len() <= LENGTH_PREFIX {
					return Err(damaged("too short".into()));
				}
				match decode_body(frame.slice(LENGTH_PREFIX..)) {
					Ok(Message::End(end))
						if end.payload.stream == stream && end.payload.broadcast == broadcast =>
					{
						Some((end.payload.next_sequence, frame))
					}
					Ok(other) => return Err(damaged(format!("holds a {} frame", other.kind()))),
					Err(e) => return Err(damaged(e.to_string())),
				}
			}
			Err(e) if e.kind() == io::ErrorKind::NotFound => None,
			Err(e) => return Err(e.into()),
		};
		Ok(Some(VodStream { dir, broadcast, sequences, ended, max_frame_len }))
	}

	/// Segments recorded.
	pub fn len(&self) -> usize {
		self.sequences.len()
	}

	/// Whether nothing is recorded (never true for an opened stream).
	pub fn is_empty(&self) -> bool {
		self.sequences.is_empty()
	}

	/// What the recording holds from `from` on: the first such segment (read from disk) and the
	/// stream's bounds, as a live window would answer, marked on demand.
	pub async fn lookup(&self, from: u64) -> Result<Lookup, VodError> {
		let at = self.sequences.partition_point(|&s| s < from);
		let mut segments = Vec::new();
		if let Some(&seq) = self.sequences.get(at) {
			let path = self.dir.join(format!("{seq}.{SEGMENT_EXT}"));
			let data = Bytes::from(tokio::fs::read(&path).await?);
			let segment = parse_segment_file(data, self.max_frame_len)
				.map_err(|reason| VodError::Damaged { path: path.clone(), reason })?;
			if segment.sequence() != seq || segment.broadcast() != self.broadcast {
				let reason = "holds another sequence or broadcast".into();
				return Err(VodError::Damaged { path, reason });
			}
			segments.push(Arc::new(segment));
		}
		let newest = self.sequences.last().copied();
		Ok(Lookup {
			segments,
			oldest: self.sequences.first().copied(),
			newest,
			next_sequence: newest.map_or(0, |n| n + 1),
			broadcast: Some(self.broadcast),
			ended: self.ended.clone(),
			on_demand: true,
		})
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::protocol::{encode_frame, DEFAULT_MAX_FRAME_LEN};
	use dsp_primitives::{Signed, StreamEnd};
	use sp_core::Pair;

	fn origin() -> sp_core::sr25519::Pair {
		sp_core::sr25519::Pair::from_string("//Origin", None).unwrap()
	}

	fn seg(seq: u64) -> Segment {
		seg_of(0, seq)
	}

	fn seg_of(broadcast: u64, seq: u64) -> Segment {
		let data = Bytes::from(vec![seq as u8; 3000]);
		Segment::build(&origin(), [0; 32], 5, broadcast, seq, 2000, data, 1024)
	}

	#[tokio::test]
	async fn recorded_segments_and_end_read_back_frame_for_frame() {
		let dir = tempfile::tempdir().unwrap();
		let rec = Recorder::new(dir.path().to_path_buf(), Retention::default()).unwrap();
		let segs: Vec<_> = [3, 4, 6].into_iter().map(seg).collect();
		for s in &segs {
			rec.segment(s).await.unwrap();
		}
		let end = Signed::sign(
			StreamEnd { genesis_hash: [0; 32], stream: 5, broadcast: 0, next_sequence: 7 },
			&origin(),
		);
		let end_frame = encode_frame(&Message::End(end));
		rec.end(5, 0, end_frame.clone()).await.unwrap();
		assert!(VodStream::open(dir.path(), 6, DEFAULT_MAX_FRAME_LEN).await.unwrap().is_none());
		let vod = VodStream::open(dir.path(), 5, DEFAULT_MAX_FRAME_LEN).await.unwrap().unwrap();
		assert_eq!(vod.len(), 3);
		let l = vod.lookup(0).await.unwrap();
		assert_eq!((l.oldest, l.newest, l.next_sequence), (Some(3), Some(6), 7));
		assert!(l.on_demand);
		assert_eq!(l.ended, Some((7, end_frame)));
		assert_eq!(l.segments[0].frames, segs[0].frames);
		assert_eq!(vod.lookup(5).await.unwrap().segments[0].frames, segs[2].frames);
		assert!(vod.lookup(7).await.unwrap().segments.is_empty());
		// The stream went on: the end is gone.
		rec.reopen(5, 0).await.unwrap();
		rec.reopen(5, 0).await.unwrap();
		let vod = VodStream::open(dir.path(), 5, DEFAULT_MAX_FRAME_LEN).await.unwrap().unwrap();
		assert!(vod.lookup(0).await.unwrap().ended.is_none());
		// A newer broadcast is recorded apart and is what is served; the old one is kept.
		let newer = seg_of(9, 0);
		rec.segment(&newer).await.unwrap();
		let vod = VodStream::open(dir.path(), 5, DEFAULT_MAX_FRAME_LEN).await.unwrap().unwrap();
		let l = vod.lookup(0).await.unwrap();
		assert_eq!((l.broadcast, vod.len(), l.ended), (Some(9), 1, None));
		assert_eq!(l.segments[0].frames, newer.frames);
		assert!(broadcast_dir(dir.path(), 5, 0).join("6.seg").exists());
	}

	#[tokio::test]
	async fn recordings_beyond_the_byte_limit_delete_the_oldest_first() {
		let dir = tempfile::tempdir().unwrap();
		let seg_of = |stream: StreamId, seq: u64| {
			let data = Bytes::from(vec![seq as u8; 3000]);
			Segment::build(&origin(), [0; 32], stream, 1, seq, 2000, data, 1024)
		};
		let one = seg_of(1, 0).frames.iter().map(|f| f.len() as u64).sum::<u64>();
		// Room for five segments.
		let retention = Retention { max_bytes: 5 * one, ..Default::default() };
		let rec = Recorder::new(dir.path().to_path_buf(), retention.clone()).unwrap();
		for stream in 1..=3 {
			for seq in 0..2 {
				rec.segment(&seg_of(stream, seq)).await.unwrap();
			}
		}
		// Six segments written: stream 1, the least recently written, is gone whole.
		assert!(!stream_dir(dir.path(), 1).exists());
		assert!(broadcast_dir(dir.path(), 2, 1).join("1.seg").exists());
		assert!(broadcast_dir(dir.path(), 3, 1).join("1.seg").exists());
		assert_eq!(rec.total_bytes(), 4 * one);
		// A rewritten segment is not counted twice.
		rec.segment(&seg_of(3, 1)).await.unwrap();
		assert_eq!(rec.total_bytes(), 4 * one);
		// Stream 3 alone grows past the limit: the others go, it stays while it is written.
		for seq in 2..7 {
			rec.segment(&seg_of(3, seq)).await.unwrap();
		}
		assert!(!stream_dir(dir.path(), 2).exists());
		assert!(broadcast_dir(dir.path(), 3, 1).join("6.seg").exists());
		// A restarted recorder counts what is on disk, and applies a smaller limit at once.
		let (large, small) = (100 * one, one);
		std::fs::create_dir_all(stream_dir(dir.path(), 4)).unwrap();
		let rec =
			Recorder::new(dir.path().to_path_buf(), Retention { max_bytes: large, ..retention })
				.unwrap();
		assert_eq!(rec.total_bytes(), 7 * one);
		drop(rec);
		Recorder::new(
			dir.path().to_path_buf(),
			Retention { max_bytes: small, ..Default::default() },
		)
		.unwrap();
		assert!(!stream_dir(dir.path(), 3).exists());
	}

	#[test]
	fn old_recordings_expire_and_the_one_written_is_kept() {
		let r = Retention { max_bytes: 1000, max_age: Duration::from_secs(10) };
		let mut index = RecordingIndex::default();
		index.record(1, 100, 0, 0);
		index.record(2, 100, 0, 5_000);
		index.record(3, 900, 0, 9_000);
		// 1100 bytes: the least recently written goes.
		assert_eq!(index.expire(9_000, Some(3), &r), vec![1]);
		assert!(index.expire(15_000, Some(3), &r).is_empty(), "2 is 10 s old, not older");
		assert_eq!(index.expire(15_001, None, &r), vec![2]);
		// Older than max_age but being written: kept.
		assert!(index.expire(60_000, Some(3), &r).is_empty());
		assert_eq!(index.total, 900);
	}

	/// The retention policy as it was: sort every recording by last write, delete from the
	/// oldest while over either limit. The index must decide exactly the same.
	fn reference_expire(
		recs: &mut HashMap<StreamId, Usage>,
		now: u64,
		keep: Option<StreamId>,
		r: &Retention,
	) -> Vec<StreamId> {
		let max_age = u64::try_from(r.max_age.as_millis()).unwrap_or(u64::MAX);
		let mut total: u64 = recs.values().map(|u| u.bytes).sum();
		let mut by_age: Vec<(u64, StreamId)> = recs
			.iter()
			.filter(|(id, _)| Some(**id) != keep)
			.map(|(id, u)| (u.last_write, *id))
			.collect();
		by_age.sort_unstable();
		let mut doomed = Vec::new();
		for (last_write, id) in by_age {
			if total <= r.max_bytes && now.saturating_sub(last_write) <= max_age {
				break;
			}
			if let Some(u) = recs.remove(&id) {
				total -= u.bytes;
				doomed.push(id);
			}
		}
		doomed
	}

	/// Review defect: every stored segment sorted all recordings (O(n log n) per segment). Now
	/// a segment looks at O(1) index entries amortised, and deletes what the sort did.
	#[test]
	fn retention_costs_o1_per_segment_and_deletes_what_the_sort_did() {
		use rand::{rngs::SmallRng, Rng, SeedableRng};
		let r = Retention { max_bytes: 450_000, max_age: Duration::from_secs(60) };
		let mut index = RecordingIndex::default();
		// 10 000 recordings of 40 bytes, then 10 000 segments: the last 5 000 delete some.
		for id in 0..10_000 {
			index.record(id, 40, 0, id);
		}
		assert!(index.expire(10_000, None, &r).is_empty());
		let before = index.examined;
		for seq in 0..10_000u64 {
			index.record(20_000 + seq, 10, 0, 10_000 + seq);
			index.expire(10_000 + seq, Some(20_000 + seq), &r);
		}
		let per_segment = (index.examined - before) as f64 / 10_000.0;
		assert!(per_segment <= 3.0, "{per_segment} index entries looked at per segment");

		// The same deletions as the sort, in the same order, on random writes.
		let mut rng = SmallRng::seed_from_u64(7);
		let r = Retention { max_bytes: 5_000, max_age: Duration::from_millis(3_000) };
		let (mut index, mut reference) = (RecordingIndex::default(), HashMap::new());
		let mut now = 0;
		for _ in 0..5_000 {
			now += rng.random_range(0..40);
			let (id, added) = (rng.random_range(0..60), rng.random_range(1..400));
			let replaced = rng.random_range(0..2) * rng.random_range(0..400);
			index.record(id, added, replaced, now);
			let u = reference.entry(id).or_insert(Usage { bytes: 0, last_write: now });
			u.bytes = u.bytes - replaced.min(u.bytes) + added;
			u.last_write = u.last_write.max(now);
			let keep = (rng.random_range(0..4) > 0).then_some(id);
			let got = index.expire(now, keep, &r);
			assert_eq!(got, reference_expire(&mut reference, now, keep, &r), "at {now}");
			assert_eq!(index.total, reference.values().map(|u| u.bytes).sum::<u64>());
		}
	}

	#[tokio::test]
	async fn damaged_files_are_errors_not_panics() {
		let dir = tempfile::tempdir().unwrap();
		let sdir = broadcast_dir(dir.path(), 5, 0);
		std::fs::create_dir_all(&sdir).unwrap();
		let good = seg(1);
		let bytes: Vec<u8> = good.frames.iter().flat_map(|f| f.to_vec()).collect();
		std::fs::write(sdir.join("1.seg"), &bytes[..bytes.len() - 1]).unwrap();
		// Chunks without the header.
		let headless: Vec<u8> = good.frames[1..].iter().flat_map(|f| f.to_vec()).collect();
		std::fs::write(sdir.join("2.seg"), headless).unwrap();
		// A file named after another sequence.
		std::fs::write(sdir.join("3.seg"), &bytes).unwrap();
		let vod = VodStream::open(dir.path(), 5, DEFAULT_MAX_FRAME_LEN).await.unwrap().unwrap();
		for from in 1..=3 {
			assert!(matches!(vod.lookup(from).await, Err(VodError::Damaged { .. })), "{from}");
		}
		std::fs::write(sdir.join(END_FILE), encode_frame(&Message::Ping(1))).unwrap();
		assert!(matches!(
			VodStream::open(dir.path(), 5, DEFAULT_MAX_FRAME_LEN).await,
			Err(VodError::Damaged { .. })
		));
	}
}
