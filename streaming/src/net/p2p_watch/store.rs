//! [`Store`]: the verified segments a P2P viewer plays and serves to its neighbours.

use super::*;

/// Verified headers and chunks of the recent segments of one broadcast: what is played and what
/// is served to neighbours. Bounded to `max_segments` segments (the oldest go first). A header
/// of a newer broadcast empties it (sequence numbers may repeat across broadcasts, with other
/// chunks); headers of an older one and chunks checked against one are refused.
pub(super) struct Store {
	stream: StreamId,
	max_segments: usize,
	inner: Mutex<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
	/// The broadcast held (of the newest header seen).
	broadcast: Option<u64>,
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
	/// once the store is full, and so is a header of an older broadcast; one of a newer
	/// broadcast replaces everything held.
	pub(super) fn insert_header(&self, header: Signed<SegmentHeader>) -> bool {
		let mut s = self.lock();
		let broadcast = header.payload.broadcast;
		match s.broadcast {
			Some(held) if broadcast < held => return false,
			Some(held) if broadcast > held => s.segments.clear(),
			_ => {}
		}
		s.broadcast = Some(broadcast);
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

	/// A chunk verified against segment `seq` of broadcast `broadcast`; whether it was stored.
	/// Refused when the header held for `seq` is of another broadcast (the chunk was asked for
	/// before the origin restarted the stream and answered after).
	pub(super) fn insert_chunk(&self, broadcast: u64, seq: u64, index: u32, data: Bytes) -> bool {
		let mut s = self.lock();
		let Some((header, chunks)) = s.segments.get_mut(&seq) else { return false };
		if header.payload.broadcast != broadcast {
			return false;
		}
		match chunks.get_mut(index as usize) {
			Some(slot) => {
				slot.get_or_insert(data);
				true
			}
			None => false,
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

#[cfg(test)]
mod tests {
	use super::*;
	use sp_core::Pair as _;

	fn segment(broadcast: u64, seq: u64, fill: u8) -> Segment {
		let origin = sp_core::sr25519::Pair::from_string("//Origin", None).expect("seed");
		let data = Bytes::from(vec![fill; 100]);
		Segment::build(&origin, [0; 32], 1, broadcast, seq, 2000, data, 64)
	}

	/// The origin restarts the stream with the same sequence numbers: the new broadcast's
	/// header empties the store, a chunk of the old broadcast answered late is not stored into
	/// the new one, and the old broadcast's headers are refused from then on.
	#[test]
	fn a_new_broadcast_takes_no_chunk_of_the_old_one() {
		let store = Store::new(1, 8);
		let (old, new) = (segment(5, 3, 0xaa), segment(6, 3, 0xbb));
		assert!(store.insert_header(old.header.clone()));
		assert!(store.insert_chunk(5, 3, 0, old.chunks[0].clone()));
		assert!(store.insert_header(new.header.clone()));
		assert_eq!(store.held(), Vec::new(), "the old broadcast's chunks are gone");
		// A request for chunk 1 of the old segment 3, answered (and verified against the old
		// header) after the switch.
		assert!(!store.insert_chunk(5, 3, 1, old.chunks[1].clone()));
		assert!(!store.insert_header(old.header.clone()));
		for (i, c) in new.chunks.iter().enumerate() {
			assert!(store.insert_chunk(6, 3, i as u32, c.clone()));
		}
		let played = store.segment(3).expect("complete");
		assert_eq!(played.to_vec(), new.to_vec());
		assert_eq!(ChunkSource::header(&store, 1, 3).map(|h| h.payload.broadcast), Some(6));
	}
}
