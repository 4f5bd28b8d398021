//! [`Input`]: a fuzzer's bytes read as numbers, choices and mutation scripts. Reading past the
//! end yields zeros, so every input is a complete (if short) program for a harness.

/// The fuzzer's bytes, consumed from the front.
#[derive(Debug)]
pub struct Input<'a> {
	data: &'a [u8],
}

impl<'a> Input<'a> {
	/// Reads `data`.
	pub fn new(data: &'a [u8]) -> Self {
		Self { data }
	}

	/// Whether every byte was consumed.
	pub fn is_empty(&self) -> bool {
		self.data.is_empty()
	}

	/// Up to `n` bytes (fewer at the end).
	pub fn bytes(&mut self, n: usize) -> &'a [u8] {
		let (head, tail) = self.data.split_at(n.min(self.data.len()));
		self.data = tail;
		head
	}

	/// A length read from the input (at most `max`), then that many bytes (fewer at the end).
	pub fn bytes_upto(&mut self, max: usize) -> &'a [u8] {
		let n = usize::from(self.u16()) % (max + 1);
		self.bytes(n)
	}

	/// Everything left.
	pub fn rest(&mut self) -> &'a [u8] {
		std::mem::take(&mut self.data)
	}

	/// One byte (0 at the end).
	pub fn u8(&mut self) -> u8 {
		self.bytes(1).first().copied().unwrap_or(0)
	}

	/// Two bytes, little endian.
	pub fn u16(&mut self) -> u16 {
		u16::from(self.u8()) | u16::from(self.u8()) << 8
	}

	/// Four bytes, little endian.
	pub fn u32(&mut self) -> u32 {
		u32::from(self.u16()) | u32::from(self.u16()) << 16
	}

	/// Eight bytes, little endian.
	pub fn u64(&mut self) -> u64 {
		u64::from(self.u32()) | u64::from(self.u32()) << 32
	}

	/// A bit.
	pub fn bool(&mut self) -> bool {
		self.u8() & 1 == 1
	}

	/// An index below `len` (0 if `len` is 0).
	pub fn index(&mut self, len: usize) -> usize {
		if len == 0 {
			0
		} else {
			usize::from(self.u16()) % len
		}
	}

	/// A number that is an edge case more often than not: 0, 1, 2, the largest values, a `u32`
	/// bound, or any `u64`.
	pub fn edge_u64(&mut self) -> u64 {
		match self.u8() % 8 {
			0 => 0,
			1 => 1,
			2 => 2,
			3 => u64::MAX,
			4 => u64::MAX - 1,
			5 => u64::from(u32::MAX),
			6 => u64::from(self.u8()),
			_ => self.u64(),
		}
	}

	/// `base` changed by a short script read from the input: byte flips, cuts, insertions and
	/// overwrites with edge values (SCALE lengths and numbers are what decoders trip over).
	pub fn mutate(&mut self, base: &[u8]) -> Vec<u8> {
		let mut out = base.to_vec();
		for _ in 0..self.u8() % 8 {
			let at = self.index(out.len() + 1);
			match self.u8() % 5 {
				0 if at < out.len() => out[at] ^= self.u8().max(1),
				1 => out.truncate(at),
				2 => {
					let n = usize::from(self.u8() % 16);
					let ins = self.bytes(n).to_vec();
					out.splice(at..at, ins);
				}
				3 => {
					let v = self.edge_u64().to_le_bytes();
					let n = 1 << (self.u8() % 4);
					for (i, b) in v.iter().take(n).enumerate() {
						if let Some(o) = out.get_mut(at + i) {
							*o = *b;
						}
					}
				}
				_ => {
					// A SCALE compact length claiming far more than follows.
					let big = codec::Encode::encode(&codec::Compact(self.u32()));
					out.splice(at..at, big);
				}
			}
		}
		out
	}
}
