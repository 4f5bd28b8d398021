//! [`Store`]: the verified segments a P2P viewer plays and serves to its neighbours.

use super::*;

/// Verified headers and chunks of the recent segments: what is played and what is served to
/// neighbours. Bounded to `max_segments` segments (the oldest go first).
pub(super) struct Store {
	stream: StreamId,
	max_segments: usize,
	inner: Mutex<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
	segments: BTreeMap<u64, (Signed<SegmentHeader>, Vec<Option<Bytes>>)>,
}

impl Store {
	pub(super) fn new(stream: StreamId, max_segments: usize) -> Self {
		Self { stream, max_segments: max_segments.max(1), inner: Mutex::default() }
	}

	fn lock(&self) -> parking_lot::MutexGuard<'_, StoreInner> {
		self.inner.lock()
	}

	/// A verified header; whether it was new. Older segments than every held one are refused
	/// once the store is full.
	pub(super) fn insert_header(&self, header: Signed<SegmentHeader>) -> bool {
		let mut s = self.lock();
		let seq = header.payload.sequence;
		if s.segments.contains_key(&seq) {
			return false;
		}
		if s.segments.len() >= self.max_segments
			&& s.segments.first_key_value().is_some_and(|(&first, _)| first > seq)
		{
			return false;
		}
		let n = header.payload.chunk_hashes.len();
		s.segments.insert(seq, (header, vec![None; n]));
		while s.segments.len() > self.max_segments {
			s.segments.pop_first();
		}
		true
	}

	pub(super) fn header(&self, seq: u64) -> Option<Signed<SegmentHeader>> {
		self.lock().segments.get(&seq).map(|(h, _)| h.clone())
	}

	pub(super) fn chunk_count(&self, seq: u64) -> Option<usize> {
		self.lock().segments.get(&seq).map(|(_, c)| c.len())
	}

	/// A verified chunk.
	pub(super) fn insert_chunk(&self, seq: u64, index: u32, data: Bytes) {
		if let Some(slot) =
			self.lock().segments.get_mut(&seq).and_then(|(_, c)| c.get_mut(index as usize))
		{
			slot.get_or_insert(data);
		}
	}

	/// Every chunk held, for a scheduler that starts late.
	pub(super) fn held(&self) -> Vec<(u64, u32, u32)> {
		let s = self.lock();
		let mut out = Vec::new();
		for (&seq, (_, chunks)) in &s.segments {
			for (i, c) in chunks.iter().enumerate() {
				if let Some(c) = c {
					out.push((seq, i as u32, c.len() as u32));
				}
			}
		}
		out
	}

	pub(super) fn headers(&self) -> Vec<Signed<SegmentHeader>> {
		self.lock().segments.values().map(|(h, _)| h.clone()).collect()
	}

	/// The whole segment, if every chunk is held.
	pub(super) fn segment(&self, seq: u64) -> Option<Segment> {
		let s = self.lock();
		let (header, chunks) = s.segments.get(&seq)?;
		let chunks: Option<Vec<Bytes>> = chunks.iter().cloned().collect();
		// Not framed again: the player needs the chunks only.
		Some(Segment { header: header.clone(), frames: Vec::new(), chunks: chunks? })
	}
}

impl ChunkSource for Store {
	fn header(&self, stream: StreamId, sequence: u64) -> Option<Signed<SegmentHeader>> {
		(stream == self.stream).then(|| Store::header(self, sequence)).flatten()
	}

	fn chunk(&self, stream: StreamId, sequence: u64, index: u32) -> Option<Bytes> {
		if stream != self.stream {
			return None;
		}
		self.lock().segments.get(&sequence)?.1.get(index as usize)?.clone()
	}
}
