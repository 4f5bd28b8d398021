//! [`ChunkSet`]: which chunks of one segment a peer holds, as a bitfield.
//!
//! A peer announces what it holds with these bytes ("have"), so they are sized by the segment's
//! chunk count (one bit per chunk, `ceil(count / 8)` bytes) and a decoder refuses anything that
//! does not fit the header it already verified: a set is never larger than the header says.

use thiserror::Error;

/// Why bytes received as a chunk set were refused. The sender broke the protocol; nothing was
/// stored.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ChunkSetError {
	/// The chunk count is above the receiver's bound (the header's count or
	/// [`MAX_CHUNKS`]).
	#[error("{count} chunks, at most {max} allowed")]
	TooManyChunks {
		/// Count claimed.
		count: usize,
		/// Bound in force.
		max: usize,
	},
	/// The byte length is not `ceil(count / 8)`.
	#[error("{got} bytes for {count} chunks, expected {expected}")]
	WrongLength {
		/// Chunk count the set was decoded for.
		count: usize,
		/// Bytes received.
		got: usize,
		/// Bytes expected.
		expected: usize,
	},
	/// A bit past the last chunk is set.
	#[error("bit set past chunk {count}")]
	BitPastEnd {
		/// Chunk count the set was decoded for.
		count: usize,
	},
}

/// Most chunks in one segment: a 16 MiB segment (`max_segment_len`) cut into 1 KiB chunks.
/// Bounds the memory of one set at 2 KiB.
pub const MAX_CHUNKS: usize = 16 * 1024;

/// The chunks of one segment held, one bit per chunk index.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChunkSet {
	bits: Vec<u64>,
	count: usize,
	held: usize,
}

impl ChunkSet {
	/// An empty set for a segment of `count` chunks (clamped to [`MAX_CHUNKS`]).
	pub fn new(count: usize) -> Self {
		let count = count.min(MAX_CHUNKS);
		Self { bits: vec![0; count.div_ceil(64)], count, held: 0 }
	}

	/// A set holding all `count` chunks.
	pub fn full(count: usize) -> Self {
		let mut s = Self::new(count);
		for i in 0..s.count {
			s.insert(i);
		}
		s
	}

	/// Chunks in the segment.
	pub fn chunk_count(&self) -> usize {
		self.count
	}

	/// Chunks held.
	pub fn held(&self) -> usize {
		self.held
	}

	/// Whether every chunk is held.
	pub fn is_full(&self) -> bool {
		self.held == self.count
	}

	/// Whether chunk `index` is held (false past the end).
	pub fn contains(&self, index: usize) -> bool {
		index < self.count && self.bits[index / 64] & (1 << (index % 64)) != 0
	}

	/// Marks chunk `index` held; returns whether it was new (false past the end).
	pub fn insert(&mut self, index: usize) -> bool {
		if index >= self.count || self.contains(index) {
			return false;
		}
		self.bits[index / 64] |= 1 << (index % 64);
		self.held += 1;
		true
	}

	/// Marks chunk `index` missing again (a chunk found bad); returns whether it was held.
	pub fn remove(&mut self, index: usize) -> bool {
		if !self.contains(index) {
			return false;
		}
		self.bits[index / 64] &= !(1 << (index % 64));
		self.held -= 1;
		true
	}

	/// Indices held, ascending.
	pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
		(0..self.count).filter(|&i| self.contains(i))
	}

	/// The announcement bytes: bit `i % 8` of byte `i / 8` is chunk `i`.
	pub fn to_bytes(&self) -> Vec<u8> {
		let mut out = vec![0u8; self.count.div_ceil(8)];
		for i in self.iter() {
			out[i / 8] |= 1 << (i % 8);
		}
		out
	}

	/// Decodes announcement bytes for a segment of `count` chunks, as the verified header says.
	pub fn from_bytes(count: usize, bytes: &[u8]) -> Result<Self, ChunkSetError> {
		if count > MAX_CHUNKS {
			return Err(ChunkSetError::TooManyChunks { count, max: MAX_CHUNKS });
		}
		let expected = count.div_ceil(8);
		if bytes.len() != expected {
			return Err(ChunkSetError::WrongLength { count, got: bytes.len(), expected });
		}
		let mut set = Self::new(count);
		for (byte_index, &b) in bytes.iter().enumerate() {
			for bit in 0..8 {
				if b & (1 << bit) == 0 {
					continue;
				}
				let i = byte_index * 8 + bit;
				if i >= count {
					return Err(ChunkSetError::BitPastEnd { count });
				}
				set.insert(i);
			}
		}
		Ok(set)
	}

	/// Adds every chunk of `other` (same segment); returns the indices that were new here.
	pub fn union_new(&mut self, other: &ChunkSet) -> Vec<usize> {
		other.iter().filter(|&i| self.insert(i)).collect()
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn bytes_round_trip_works() {
		let mut s = ChunkSet::new(11);
		for i in [0, 3, 8, 10] {
			assert!(s.insert(i));
		}
		assert!(!s.insert(3));
		assert!(!s.insert(11));
		let b = s.to_bytes();
		assert_eq!(b, vec![0b0000_1001, 0b0000_0101]);
		let d = ChunkSet::from_bytes(11, &b).unwrap();
		assert_eq!(d, s);
		assert_eq!(d.held(), 4);
		assert_eq!(d.iter().collect::<Vec<_>>(), vec![0, 3, 8, 10]);
	}

	#[test]
	fn bad_bytes_fail() {
		assert_eq!(
			ChunkSet::from_bytes(9, &[0xff]),
			Err(ChunkSetError::WrongLength { count: 9, got: 1, expected: 2 })
		);
		assert_eq!(
			ChunkSet::from_bytes(9, &[0xff, 0x02]),
			Err(ChunkSetError::BitPastEnd { count: 9 })
		);
		assert_eq!(
			ChunkSet::from_bytes(MAX_CHUNKS + 1, &[]),
			Err(ChunkSetError::TooManyChunks { count: MAX_CHUNKS + 1, max: MAX_CHUNKS })
		);
	}

	#[test]
	fn full_union_and_remove_work() {
		let full = ChunkSet::full(70);
		assert!(full.is_full());
		let mut s = ChunkSet::new(70);
		s.insert(65);
		assert_eq!(s.union_new(&full).len(), 69);
		assert!(s.is_full());
		assert!(s.remove(65));
		assert!(!s.remove(65));
		assert!(!s.is_full());
	}
}
