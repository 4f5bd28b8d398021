//! Recorded streams on disk: the server's recorder (`dsp serve --record-dir`) and the
//! on-demand source (`dsp serve --vod-dir`).
//!
//! Layout: one directory per stream and broadcast, `<dir>/<stream>/<broadcast>/`, holding one
//! file per segment, `<sequence>.seg`, and the broadcast's end, `end.frame`; the broadcast id is
//! kept, so that broadcasts never mix and the newest one is what is served on demand. A segment file is the segment's wire
//! frames exactly as the origin's publisher sent them (header frame, then one frame per chunk,
//! length prefixes included), so the origin's signatures stay valid and serving a recording needs
//! no key and no re-encoding. `end.frame` is the origin-signed `End` frame. Files are written to
//! a `.tmp` name and renamed, so a reader never sees half a segment.
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
use std::{
	io,
	path::{Path, PathBuf},
	sync::Arc,
};

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

/// Writes `data` to `path` through a temporary file and a rename.
async fn write_atomic(path: PathBuf, data: Vec<u8>) -> io::Result<()> {
	let tmp = path.with_extension("tmp");
	tokio::fs::write(&tmp, data).await?;
	tokio::fs::rename(&tmp, &path).await
}

/// Records the segments and ends of the streams a server stores.
#[derive(Clone, Debug)]
pub struct Recorder {
	root: PathBuf,
}

impl Recorder {
	/// A recorder writing under `root` (created if missing).
	pub fn new(root: PathBuf) -> io::Result<Self> {
		std::fs::create_dir_all(&root)?;
		Ok(Self { root })
	}

	/// Writes a stored segment's frames to `<root>/<stream>/<broadcast>/<sequence>.seg`.
	pub async fn segment(&self, segment: &Segment) -> io::Result<()> {
		let dir = broadcast_dir(&self.root, segment.stream(), segment.broadcast());
		tokio::fs::create_dir_all(&dir).await?;
		let data = segment.frames.iter().flat_map(|f| f.iter().copied()).collect();
		write_atomic(dir.join(format!("{}.{SEGMENT_EXT}", segment.sequence())), data).await
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
		let dir = broadcast_dir(&self.root, stream, broadcast);
		tokio::fs::create_dir_all(&dir).await?;
		write_atomic(dir.join(END_FILE), end_frame.to_vec()).await
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
		let rec = Recorder::new(dir.path().to_path_buf()).unwrap();
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
