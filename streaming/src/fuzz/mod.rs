//! Fuzz harnesses: one `pub fn name(data: &[u8])` per target, each panicking when an invariant
//! breaks. The libFuzzer targets in `fuzz/` (cargo-fuzz, nightly; `scripts/fuzz.sh`) are one line
//! each calling these, and the crate's own tests run every harness briefly
//! ([`run_briefly`], `cargo test -p dsp-streaming --lib fuzz::`), so the harnesses compile and
//! run in CI and a finding stays a test. Compiled only for tests or with the `fuzzing` feature.
//!
//! Inputs are structure-aware: the first bytes pick settings and a mode, and most modes either
//! take the rest as raw bytes or apply it as a mutation script to a valid fixture
//! ([`fixtures`]), so a fuzzer reaches the signature and state checks without a seed corpus.
//! Messages are built from bytes through the decoders, and fixtures by decoding padded
//! encodings, so fields other slices add to the wire types do not break the harnesses.
//!
//! | target | what | invariants |
//! |---|---|---|
//! | [`frames`] | `FrameDecoder` and `decode_body` | same result however the bytes are split; an accepted body re-encodes to the same bytes; the buffer never holds more than one frame |
//! | [`p2p_wire`] | P2P request/response codec | strict decoding is canonical; the async codec agrees with `decode_*`; counts within `WireLimits` |
//! | [`claim_item`] | `ClaimItem` decode, `verify_item` | canonical; a changed item never verifies |
//! | [`ledger`] | `SeederLedger::decode` (the ledger file's bytes) | only fixture entries load; a loaded ledger re-encodes to itself and has no bad claim item |
//! | [`ts`] | `TsSegmenter` | same segments however the input is split; every input byte is a packet or counted as skipped; segments are whole packets within the size limit |
//! | [`hls`] | `HlsFollower` | every entry handed out once, in increasing media sequence, duration clamped; no panic at sequence edges |
//! | [`session`] | `ServerSession` fed random frames, byte streams and valid/replayed segments and ends | one `Closed`, nothing after it; never more queued than `max_send_queue_bytes` plus one unit; a viewer gets headers in increasing order and nothing after `End` |

mod codecs;
pub mod fixtures;
mod input;
mod media;
mod session;
#[cfg(test)]
mod tests;

pub use codecs::{claim_item, frames, ledger, p2p_wire};
pub use input::Input;
pub use media::{hls, ts};
pub use session::session;

/// Every harness by its target name (the names of the binaries in `fuzz/`).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
	("frames", frames),
	("p2p_wire", p2p_wire),
	("claim_item", claim_item),
	("ledger", ledger),
	("ts", ts),
	("hls", hls),
	("session", session),
];

/// Runs `harness` on `iterations` pseudo-random inputs of up to `max_len` bytes, from a fixed
/// seed: the brief, deterministic run the crate's tests do (a real fuzzer runs far longer and
/// learns from coverage). Lengths vary so that every mode of the harness is reached.
pub fn run_briefly(harness: fn(&[u8]), seed: u64, iterations: usize, max_len: usize) {
	use rand::{rngs::SmallRng, Rng, SeedableRng};
	let mut rng = SmallRng::seed_from_u64(seed);
	let mut data = Vec::with_capacity(max_len);
	for _ in 0..iterations {
		let len = rng.random_range(0..=max_len);
		data.clear();
		data.extend((0..len).map(|_| rng.random::<u8>()));
		harness(&data);
	}
}
