//! Signed `pallet-dsp` extrinsics, built without the runtime crate.
//!
//! The viewer tool must stay light (a 1 GB device), so it does not link the runtime or a
//! metadata-driven client. Instead it encodes the few calls it needs for the one runtime it
//! talks to, and refuses to sign for any other: [`RuntimeInfo::check`] compares the node's
//! `specName` and `transactionVersion` with the values this encoding was written for. The
//! runtime bumps `transaction_version` whenever call indices or extension data change, so a
//! mismatch is caught before anything is signed. `tests/` cross-checks these bytes against the
//! runtime's own `UncheckedExtrinsic`.

use codec::{Compact, Encode};
use dsp_primitives::{ClaimItem, Hash32};
use sp_core::{sr25519, Pair};
use sp_crypto_hashing::blake2_256;

/// `spec_name` of the DSP runtime.
pub const SPEC_NAME: &str = "dsp";
/// `transaction_version` whose call indices and extensions this module encodes. Version 2
/// changed `create_stream` (an epoch budget) and added `fund_stream` and
/// `release_stream_escrow`; `claim` and `withdraw_credits`, the calls encoded here, did not
/// change.
pub const TRANSACTION_VERSION: u32 = 2;
/// Index of `pallet-dsp` in the runtime.
pub const DSP_PALLET_INDEX: u8 = 7;
/// Call index of `pallet_dsp::claim`.
pub const CLAIM_CALL_INDEX: u8 = 13;
/// Call index of `pallet_dsp::withdraw_credits`.
pub const WITHDRAW_CREDITS_CALL_INDEX: u8 = 14;

/// Extrinsic format version 4, signed (`0b1000_0000 | 4`).
const SIGNED_V4: u8 = 0x84;
/// `MultiAddress::Id`.
const ADDRESS_ID: u8 = 0;
/// `MultiSignature::Sr25519`.
const SIGNATURE_SR25519: u8 = 1;
/// `Era::Immortal`.
const ERA_IMMORTAL: u8 = 0;
/// Longest mortal period [`Lifetime::mortal`] takes: up to it the era's phase is exact (longer
/// periods are quantised by `sp_runtime`, which would move the birth block off the one signed).
pub const MAX_MORTAL_PERIOD: u64 = 4096;
/// `CheckMetadataHash` mode `Disabled`.
const METADATA_HASH_DISABLED: u8 = 0;
/// Signing payloads longer than this are hashed first (as `sp_runtime` does).
const MAX_UNHASHED_PAYLOAD: usize = 256;

/// What the node says about its runtime (`state_getRuntimeVersion`, `chain_getBlockHash(0)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeInfo {
	/// `specName`.
	pub spec_name: String,
	/// `specVersion`: signed into every extrinsic.
	pub spec_version: u32,
	/// `transactionVersion`: must equal [`TRANSACTION_VERSION`].
	pub transaction_version: u32,
	/// Hash of block 0: signed into every extrinsic (and every pass and receipt).
	pub genesis_hash: Hash32,
}

/// The node runs a runtime this tool cannot sign for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeMismatch {
	/// Another chain's runtime.
	#[error("the node runs runtime {0:?}, not {SPEC_NAME:?}")]
	SpecName(String),
	/// Calls or extensions changed since this tool was built.
	#[error(
		"the node's runtime has transaction_version {0}, this dsp tool encodes version \
		 {TRANSACTION_VERSION}: upgrade the tool"
	)]
	TransactionVersion(u32),
}

impl RuntimeInfo {
	/// Refuses runtimes whose extrinsic format this module does not know.
	pub fn check(&self) -> Result<(), RuntimeMismatch> {
		if self.spec_name != SPEC_NAME {
			return Err(RuntimeMismatch::SpecName(self.spec_name.clone()));
		}
		if self.transaction_version != TRANSACTION_VERSION {
			return Err(RuntimeMismatch::TransactionVersion(self.transaction_version));
		}
		Ok(())
	}
}

/// How long a signed extrinsic stays valid (its `CheckEra` extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
	/// Valid until its nonce is used. One that leaves the pool unincluded stays valid, so
	/// anybody who kept it can still submit it later: prefer [`Lifetime::mortal`].
	Immortal,
	/// Valid in the `period` blocks from block number `birth`, whose hash is signed in (so it
	/// is valid on that fork only).
	Mortal {
		/// Blocks it lives: a power of two in 4..=[`MAX_MORTAL_PERIOD`].
		period: u64,
		/// Number of the block it is born at.
		birth: u64,
		/// Hash of that block.
		birth_hash: Hash32,
	},
}

impl Lifetime {
	/// Valid for about `period` blocks (rounded up to a power of two, then kept within
	/// 4..=[`MAX_MORTAL_PERIOD`]) from block `birth` (use a finalized block: the extrinsic is
	/// then valid on every fork that follows it).
	pub fn mortal(period: u64, birth: u64, birth_hash: Hash32) -> Self {
		let period = period.checked_next_power_of_two().unwrap_or(MAX_MORTAL_PERIOD);
		Lifetime::Mortal { period: period.clamp(4, MAX_MORTAL_PERIOD), birth, birth_hash }
	}

	/// The `Era` as `sp_runtime` encodes it: one zero byte for immortal; for mortal, a
	/// little-endian `u16` of `log2(period) - 1` in the low 4 bits and the phase
	/// (`birth % period`) above them.
	fn encode_era(&self) -> Vec<u8> {
		match *self {
			Lifetime::Immortal => vec![ERA_IMMORTAL],
			Lifetime::Mortal { period, birth, .. } => {
				let low = (period.trailing_zeros() as u64 - 1).clamp(1, 15);
				let phase = birth % period;
				((low | (phase << 4)) as u16).encode()
			}
		}
	}

	/// The block hash `CheckEra` signs in: the birth block's, genesis for immortal.
	fn era_hash(&self, genesis_hash: Hash32) -> Hash32 {
		match *self {
			Lifetime::Immortal => genesis_hash,
			Lifetime::Mortal { birth_hash, .. } => birth_hash,
		}
	}
}

/// The encoded call `Dsp::claim { items }`.
pub fn claim_call(items: &[ClaimItem]) -> Vec<u8> {
	let mut call = vec![DSP_PALLET_INDEX, CLAIM_CALL_INDEX];
	items.encode_to(&mut call);
	call
}

/// The encoded call `Dsp::withdraw_credits { amount }` (`None`: everything available).
pub fn withdraw_credits_call(amount: Option<u128>) -> Vec<u8> {
	let mut call = vec![DSP_PALLET_INDEX, WITHDRAW_CREDITS_CALL_INDEX];
	amount.encode_to(&mut call);
	call
}

/// A signed, tip-free extrinsic carrying `call`, valid for `lifetime`, ready for
/// `author_submitExtrinsic`.
///
/// Extension data, in the runtime's order: `CheckNonZeroSender`, `CheckSpecVersion`,
/// `CheckTxVersion`, `CheckGenesis`, `CheckEra`, `CheckNonce`, `CheckWeight`,
/// `ChargeTransactionPayment` (tip 0), `CheckMetadataHash` (disabled).
pub fn signed_extrinsic(
	signer: &sr25519::Pair,
	call: &[u8],
	nonce: u32,
	runtime: &RuntimeInfo,
	lifetime: Lifetime,
) -> Vec<u8> {
	let mut explicit = lifetime.encode_era();
	(Compact(nonce), Compact(0u128), METADATA_HASH_DISABLED).encode_to(&mut explicit);
	let implicit = (
		runtime.spec_version,
		runtime.transaction_version,
		runtime.genesis_hash,
		lifetime.era_hash(runtime.genesis_hash),
		None::<Hash32>, // no metadata hash
	);
	let mut payload = call.to_vec();
	payload.extend_from_slice(&explicit);
	implicit.encode_to(&mut payload);
	let signature = if payload.len() > MAX_UNHASHED_PAYLOAD {
		signer.sign(&blake2_256(&payload))
	} else {
		signer.sign(&payload)
	};

	let mut body = vec![SIGNED_V4, ADDRESS_ID];
	body.extend_from_slice(&signer.public().0);
	body.push(SIGNATURE_SR25519);
	body.extend_from_slice(&signature.0);
	body.extend_from_slice(&explicit);
	body.extend_from_slice(call);
	let mut extrinsic = Compact(body.len() as u32).encode();
	extrinsic.extend_from_slice(&body);
	extrinsic
}

#[cfg(test)]
mod tests {
	use super::*;
	use codec::Decode;

	fn runtime() -> RuntimeInfo {
		RuntimeInfo {
			spec_name: SPEC_NAME.into(),
			spec_version: 100,
			transaction_version: TRANSACTION_VERSION,
			genesis_hash: [7; 32],
		}
	}

	#[test]
	fn check_refuses_other_runtimes() {
		assert_eq!(runtime().check(), Ok(()));
		let other = RuntimeInfo { spec_name: "polkadot".into(), ..runtime() };
		assert_eq!(other.check(), Err(RuntimeMismatch::SpecName("polkadot".into())));
		let next = TRANSACTION_VERSION + 1;
		let newer = RuntimeInfo { transaction_version: next, ..runtime() };
		assert_eq!(newer.check(), Err(RuntimeMismatch::TransactionVersion(next)));
		let older = RuntimeInfo { transaction_version: TRANSACTION_VERSION - 1, ..runtime() };
		assert!(older.check().is_err());
	}

	#[test]
	fn withdraw_credits_extrinsic_has_the_v4_layout_and_a_valid_signature() {
		let pair = sr25519::Pair::from_string("//Bob", None).unwrap();
		let call = withdraw_credits_call(Some(5));
		assert_eq!(call, [7, 14, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
		let xt = signed_extrinsic(&pair, &call, 3, &runtime(), Lifetime::Immortal);

		let mut input = &xt[..];
		let len = Compact::<u32>::decode(&mut input).unwrap().0 as usize;
		assert_eq!(len, input.len());
		assert_eq!(input[0], SIGNED_V4);
		assert_eq!(input[1], ADDRESS_ID);
		assert_eq!(&input[2..34], &pair.public().0);
		assert_eq!(input[34], SIGNATURE_SR25519);
		let signature = sr25519::Signature::from_raw(input[35..99].try_into().unwrap());
		let mut rest = &input[99..];
		let explicit = <(u8, Compact<u32>, Compact<u128>, u8)>::decode(&mut rest).unwrap();
		assert_eq!((explicit.0, explicit.1 .0, explicit.2 .0, explicit.3), (0, 3, 0, 0));
		assert_eq!(rest, &call[..]);

		let mut payload = call.clone();
		explicit.encode_to(&mut payload);
		(100u32, TRANSACTION_VERSION, [7u8; 32], [7u8; 32], None::<Hash32>).encode_to(&mut payload);
		assert!(payload.len() <= MAX_UNHASHED_PAYLOAD);
		assert!(sr25519::Pair::verify(&signature, &payload, &pair.public()));
		let mut other_nonce = payload.clone();
		other_nonce[call.len() + 1] = 4 << 2;
		assert!(!sr25519::Pair::verify(&signature, &other_nonce, &pair.public()));
	}

	#[test]
	fn mortal_eras_encode_as_sp_runtime_does() {
		// sp_runtime's own vector for Era::mortal(64, 42); the longest period has 11 (log2 4096
		// minus one) in the low bits.
		let era = |period, birth| Lifetime::mortal(period, birth, [0; 32]).encode_era();
		assert_eq!(era(64, 42), vec![5 + 42 % 16 * 16, 42 / 16]);
		assert_eq!(era(4096, 20000), ((11u64 | ((20000 % 4096) << 4)) as u16).encode());
		// Periods are powers of two within 4..=4096.
		assert_eq!(Lifetime::mortal(50, 7, [1; 32]), Lifetime::mortal(64, 7, [1; 32]));
		assert!(matches!(Lifetime::mortal(1, 0, [0; 32]), Lifetime::Mortal { period: 4, .. }));
		assert!(matches!(
			Lifetime::mortal(u64::MAX, 0, [0; 32]),
			Lifetime::Mortal { period: MAX_MORTAL_PERIOD, .. }
		));
		assert_eq!(Lifetime::Immortal.encode_era(), vec![0]);
	}

	#[test]
	fn a_mortal_extrinsic_signs_its_birth_block() {
		let pair = sr25519::Pair::from_string("//Bob", None).unwrap();
		let call = withdraw_credits_call(None);
		let lifetime = Lifetime::mortal(64, 1000, [9; 32]);
		let xt = signed_extrinsic(&pair, &call, 1, &runtime(), lifetime);
		let mut input = &xt[..];
		Compact::<u32>::decode(&mut input).unwrap();
		let signature = sr25519::Signature::from_raw(input[35..99].try_into().unwrap());
		let mut explicit = lifetime.encode_era();
		assert_eq!(&input[99..101], &explicit[..], "the era follows the signature");
		(Compact(1u32), Compact(0u128), 0u8).encode_to(&mut explicit);
		let signed = |era_block: [u8; 32]| {
			let mut payload = call.clone();
			payload.extend_from_slice(&explicit);
			(100u32, TRANSACTION_VERSION, [7u8; 32], era_block, None::<Hash32>)
				.encode_to(&mut payload);
			sr25519::Pair::verify(&signature, &payload, &pair.public())
		};
		assert!(signed([9; 32]), "signed with the birth block's hash");
		assert!(!signed([7; 32]), "not with genesis, as an immortal one would be");
	}

	#[test]
	fn long_payloads_are_signed_by_hash() {
		let pair = sr25519::Pair::from_string("//Bob", None).unwrap();
		let call = vec![DSP_PALLET_INDEX, CLAIM_CALL_INDEX, 0].repeat(100);
		let xt = signed_extrinsic(&pair, &call, 0, &runtime(), Lifetime::Immortal);
		let signature = sr25519::Signature::from_raw(
			xt[xt.len() - call.len() - 4 - 64..][..64].try_into().unwrap(),
		);
		let mut payload = call.clone();
		(0u8, Compact(0u32), Compact(0u128), 0u8).encode_to(&mut payload);
		(100u32, TRANSACTION_VERSION, [7u8; 32], [7u8; 32], None::<Hash32>).encode_to(&mut payload);
		assert!(sr25519::Pair::verify(&signature, blake2_256(&payload), &pair.public()));
		assert!(!sr25519::Pair::verify(&signature, &payload, &pair.public()));
	}
}
