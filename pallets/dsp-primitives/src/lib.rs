//! # DSP primitives
//!
//! The types that the chain (`pallet-dsp`, the runtime API, the node's RPC) and the data plane
//! (streamer worker, publisher, viewer) must agree on byte for byte. Everything here is
//! `no_std`, SCALE-encoded, and carries no logic that needs a client or a socket.
//!
//! ## Signed payloads
//!
//! Three payloads are signed off chain and checked by someone else later:
//!
//! | payload | signed by | checked by |
//! |---|---|---|
//! | [`SegmentHeader`] | the origin's signing key | every viewer, before storing, playing or forwarding a chunk |
//! | [`ViewerPass`] | a pass signer the origin authorised (a streamer node key) | the pallet, when a seeder claims |
//! | [`Receipt`] | the viewer | the seeder (to decide whether to keep serving) and the pallet |
//!
//! Each signature covers `SCALE((domain_tag, payload))`, and every payload carries the chain's
//! genesis hash, so a signature made for one purpose or one chain is worthless for any other.
//! All signatures are sr25519: the keys are the same kind Substrate accounts use, so a viewer's
//! key is also an account that can hold credits.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

use alloc::vec::Vec;
use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;
pub use sp_arithmetic::Perbill;
pub use sp_core::sr25519::{Public as PublicKey, Signature};

#[cfg(feature = "std")]
pub mod rpc_types;

/// Identifies a stream on chain and on the wire. Assigned by the pallet, counting up from 0.
pub type StreamId = u64;
/// Index of a credit epoch: `block_number / EpochLength`.
pub type EpochIndex = u32;
/// Amount of relayed data, in [`UNIT_BYTES`] units. Prices on chain are per unit.
pub type Units = u64;
/// A 32-byte hash: genesis hashes and chunk hashes (blake2-256).
pub type Hash32 = [u8; 32];
/// Raw bytes of an account id (`AccountId32`): what a receipt names as its seeder.
pub type AccountBytes = [u8; 32];

/// Bytes in one credit unit. One KiB keeps `u64` unit counters far from overflow while being
/// fine-grained enough that rounding never matters to a seeder.
pub const UNIT_BYTES: u64 = 1024;

/// Most streamers one `streamers` read (runtime API, `dsp_streamers`) returns: 256 records of
/// at most four endpoints each (about 130 KiB with the DSP runtime's 128-byte endpoints), so a
/// read stays bounded however many streamers register; callers page on.
pub const MAX_STREAMERS_PAGE: u32 = 256;

/// Domain tags: the first field of every signed message.
pub mod domain {
	/// Tag of [`super::SegmentHeader`] signatures.
	pub const SEGMENT_HEADER: &[u8] = b"dsp/segment-header/v1";
	/// Tag of [`super::ViewerPass`] signatures.
	pub const VIEWER_PASS: &[u8] = b"dsp/viewer-pass/v1";
	/// Tag of [`super::Receipt`] signatures.
	pub const RECEIPT: &[u8] = b"dsp/receipt/v1";
	/// Tag of [`super::StreamEnd`] signatures.
	pub const STREAM_END: &[u8] = b"dsp/stream-end/v1";
	/// Tag of [`super::PublishChallenge`] signatures (a publisher's proof that it holds the
	/// stream's origin key).
	pub const PUBLISH: &[u8] = b"dsp/publish/v1";
	/// Tag of a P2P viewer's proof of key possession in `Join` (signed by the viewer key over
	/// the genesis hash, the session's `Welcome` challenge, the stream and the peer entry).
	pub const JOIN: &[u8] = b"dsp/join/v1";
}

/// A payload that is signed off chain under a domain tag.
pub trait Signable: Encode {
	/// Domain tag that prefixes the signed message.
	const DOMAIN: &'static [u8];

	/// The exact bytes that are signed and verified: `SCALE((DOMAIN, self))`. The tag is
	/// length-prefixed by SCALE, so no tag can be a prefix of another message.
	fn signing_payload(&self) -> Vec<u8> {
		(Self::DOMAIN, self).encode()
	}

	/// Genesis hash of the chain this payload was signed for.
	fn genesis_hash(&self) -> &Hash32;
}

/// A payload with its sr25519 signature.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct Signed<T> {
	/// What was signed.
	pub payload: T,
	/// sr25519 signature over [`Signable::signing_payload`].
	pub signature: Signature,
}

#[cfg(feature = "std")]
impl<T: Signable> Signed<T> {
	/// Signs `payload` with `pair`.
	pub fn sign(payload: T, pair: &sp_core::sr25519::Pair) -> Self {
		use sp_core::Pair as _;
		let signature = pair.sign(&payload.signing_payload());
		Self { payload, signature }
	}

	/// Checks the signature against `signer` (native code; the runtime uses the host function).
	pub fn verify(&self, signer: &PublicKey) -> bool {
		use sp_core::Pair as _;
		sp_core::sr25519::Pair::verify(&self.signature, self.payload.signing_payload(), signer)
	}
}

/// Capacity settings of a streamer: how many direct sessions it holds and how early it starts
/// admitting viewers in P2P mode.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct CapacitySettings {
	/// Most direct (TCP or QUIC) sessions the streamer serves at once.
	pub max_streams: u32,
	/// Dynamic streaming rate `r` in [0, 1]: the share of `max_streams` that is handed to P2P.
	pub streaming_rate: Perbill,
}

impl CapacitySettings {
	/// The specification's default: 2000 direct sessions, no P2P.
	pub const fn spec_default() -> Self {
		Self { max_streams: 2000, streaming_rate: Perbill::zero() }
	}

	/// Number of direct sessions from which new viewers are admitted in P2P mode:
	/// `floor(max_streams * (1 - r))`.
	pub fn p2p_threshold(&self) -> u32 {
		(Perbill::one() - self.streaming_rate).mul_floor(self.max_streams)
	}

	/// The admission rule: how a new viewer is admitted when `direct_sessions` are open.
	pub fn admit(&self, direct_sessions: u32) -> AdmissionMode {
		if direct_sessions < self.p2p_threshold() {
			AdmissionMode::Direct
		} else {
			AdmissionMode::P2p
		}
	}
}

impl Default for CapacitySettings {
	fn default() -> Self {
		Self::spec_default()
	}
}

/// How a new viewer is served.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum AdmissionMode {
	/// Served by the streamer over TCP or QUIC.
	Direct,
	/// Fetches chunks from other viewers; the streamer only fills urgent gaps.
	P2p,
}

/// Header of one media segment, signed by the origin. A chunk is verified on its own by
/// hashing it and comparing with `chunk_hashes[index]`.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct SegmentHeader {
	/// Chain the stream is registered on.
	pub genesis_hash: Hash32,
	/// Stream the segment belongs to.
	pub stream: StreamId,
	/// The broadcast the segment belongs to: the publisher's start time of the broadcast, in
	/// milliseconds since the Unix epoch, chosen once per broadcast (a restarted publisher that
	/// continues the same broadcast keeps it). Signed with the rest, so that nothing of one
	/// broadcast can be replayed into another: a newer broadcast replaces an older one.
	pub broadcast: u64,
	/// Position in the broadcast, counting up by one per segment.
	pub sequence: u64,
	/// Play time in milliseconds.
	pub duration_ms: u32,
	/// Total length in bytes.
	pub byte_len: u32,
	/// Length of every chunk but the last, in bytes.
	pub chunk_size: u32,
	/// blake2-256 of each chunk, in order.
	pub chunk_hashes: Vec<Hash32>,
}

impl Signable for SegmentHeader {
	const DOMAIN: &'static [u8] = domain::SEGMENT_HEADER;
	fn genesis_hash(&self) -> &Hash32 {
		&self.genesis_hash
	}
}

/// The origin's statement that a stream ended: no segment with a sequence of `next_sequence`
/// or more will follow. Signed like a header, so that nobody but the origin can end a stream.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct StreamEnd {
	/// Chain the stream is registered on.
	pub genesis_hash: Hash32,
	/// The stream that ended.
	pub stream: StreamId,
	/// The broadcast that ended (see [`SegmentHeader::broadcast`]): an end ends this broadcast
	/// only, never a later one.
	pub broadcast: u64,
	/// One past the last segment of the broadcast.
	pub next_sequence: u64,
}

impl Signable for StreamEnd {
	const DOMAIN: &'static [u8] = domain::STREAM_END;
	fn genesis_hash(&self) -> &Hash32 {
		&self.genesis_hash
	}
}

/// What a publisher signs with the stream's origin key in its `Publish`: the server's random
/// per-session challenge (from `Welcome`) and the stream. It proves the publisher holds the key
/// before the server gives it anything, and, bound to one session's challenge, it is worthless
/// on any other connection. Never stored or sent: both sides rebuild it.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct PublishChallenge {
	/// Chain the stream is registered on.
	pub genesis_hash: Hash32,
	/// The challenge of the server's `Welcome` on this connection.
	pub challenge: [u8; 32],
	/// The stream to publish.
	pub stream: StreamId,
}

impl Signable for PublishChallenge {
	const DOMAIN: &'static [u8] = domain::PUBLISH;
	fn genesis_hash(&self) -> &Hash32 {
		&self.genesis_hash
	}
}

/// Permission for one viewer to be paid for in one stream and epoch, issued by a streamer node
/// when it admits the viewer in P2P mode. No pass, no pay: this is what stops Sybil viewers.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct ViewerPass {
	/// Chain the pass is valid on.
	pub genesis_hash: Hash32,
	/// Stream the viewer was admitted to.
	pub stream: StreamId,
	/// Epoch the pass is valid for.
	pub epoch: EpochIndex,
	/// The viewer's key; it signs the receipts.
	pub viewer: PublicKey,
	/// Most units that may be paid for this viewer in this epoch, over all seeders.
	pub max_units: Units,
	/// Key that signed the pass; must be one of the origin's authorised pass signers.
	pub issuer: PublicKey,
}

impl Signable for ViewerPass {
	const DOMAIN: &'static [u8] = domain::VIEWER_PASS;
	fn genesis_hash(&self) -> &Hash32 {
		&self.genesis_hash
	}
}

/// A viewer's statement that `seeder` has delivered `units` to it so far in this stream and
/// epoch. Cumulative: a newer receipt replaces an older one, and only the increase is paid.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
	/// Chain the receipt is valid on.
	pub genesis_hash: Hash32,
	/// Stream the data belonged to.
	pub stream: StreamId,
	/// Epoch the data was delivered in.
	pub epoch: EpochIndex,
	/// Account of the seeder that delivered the data (and alone may claim it).
	pub seeder: AccountBytes,
	/// The viewer's key, which signs this receipt.
	pub viewer: PublicKey,
	/// Units delivered by `seeder` to `viewer` in this stream and epoch, in total.
	pub units: Units,
}

impl Signable for Receipt {
	const DOMAIN: &'static [u8] = domain::RECEIPT;
	fn genesis_hash(&self) -> &Hash32 {
		&self.genesis_hash
	}
}

/// One item of a claim: the viewer's pass and the viewer's latest receipt for the claimant.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct ClaimItem {
	/// The viewer's pass, signed by an authorised pass signer.
	pub pass: Signed<ViewerPass>,
	/// The viewer's cumulative receipt for the claimant, signed by the viewer.
	pub receipt: Signed<Receipt>,
}

/// Why a claim item was skipped. Reported in an event; the rest of the batch goes on.
#[derive(
	Clone,
	Copy,
	PartialEq,
	Eq,
	Debug,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum ClaimRejection {
	/// The stream is not registered.
	UnknownStream,
	/// Pass and receipt disagree on stream, epoch or viewer.
	Mismatch,
	/// Pass or receipt was signed for another chain.
	WrongGenesis,
	/// The receipt names another seeder than the claimant.
	WrongSeeder,
	/// The claimant is the viewer itself.
	SelfDealing,
	/// The epoch is in the future or its claim window has closed.
	OutsideClaimWindow,
	/// The pass issuer is not an authorised pass signer of the stream's origin.
	UnauthorisedIssuer,
	/// The pass signature does not verify.
	BadPassSignature,
	/// The receipt signature does not verify.
	BadReceiptSignature,
	/// The receipt does not exceed what was already claimed (a replay or a stale receipt).
	NothingNew,
	/// The viewer's pass or per-epoch cap is already used up.
	CapReached,
	/// The origin's escrow cannot pay a single unit.
	EscrowExhausted,
	/// The pass is for an epoch after the stream was closed.
	StreamClosed,
}

/// Endpoints a streamer announces. Free-form text so that new transports need no migration:
/// `host:port` for TCP and QUIC, a multiaddr for P2P, a URL for RPC.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Debug,
	Default,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct EndpointsView {
	/// TCP address, `host:port`.
	pub tcp: Vec<u8>,
	/// QUIC (UDP) address, `host:port`.
	pub quic: Vec<u8>,
	/// libp2p multiaddr for the P2P swarm.
	pub p2p: Vec<u8>,
	/// JSON-RPC URL of the node.
	pub rpc: Vec<u8>,
}

/// A registered origin, as the runtime API reports it.
#[derive(
	Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct OriginView<AccountId, Balance, BlockNumber> {
	/// The origin's account.
	pub account: AccountId,
	/// Key that signs segment headers.
	pub signing_key: PublicKey,
	/// Keys allowed to sign viewer passes for this origin's streams.
	pub pass_signers: Vec<PublicKey>,
	/// Free-form metadata (name, URL).
	pub metadata: Vec<u8>,
	/// Escrow held for paying credits.
	pub escrow: Balance,
	/// A pending escrow withdrawal: amount and the block from which it may be executed.
	pub pending_withdrawal: Option<(Balance, BlockNumber)>,
	/// Number of streams that are still open.
	pub open_streams: u32,
	/// Block at which the origin retired, if it did.
	pub retired_at: Option<BlockNumber>,
}

/// A registered stream, as the runtime API reports it.
#[derive(
	Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct StreamView<AccountId, Balance> {
	/// Stream id.
	pub id: StreamId,
	/// Account of the origin that owns the stream.
	pub origin: AccountId,
	/// The origin's segment signing key (what viewers verify headers against).
	pub signing_key: PublicKey,
	/// Nominal bitrate in kbit/s.
	pub bitrate_kbps: u32,
	/// Credit paid per relayed unit.
	pub price_per_unit: Balance,
	/// Most units paid per viewer and epoch, over all seeders.
	pub viewer_cap_per_epoch: Units,
	/// Whether the stream still accepts viewers.
	pub open: bool,
	/// Most paid for the stream per epoch, over all viewers and seeders (fixed at creation).
	pub epoch_budget: Balance,
	/// Escrow committed to the stream and not yet paid out (its pool and the carved budgets
	/// of claimable epochs).
	pub committed: Balance,
	/// What the current epoch's budget has left to pay, counting the carving the next claim
	/// would do.
	pub epoch_left: Balance,
	/// Whether a streamer may issue passes for the current epoch now: the stream is open, its
	/// origin has no pending escrow withdrawal, and the current epoch's budget was (or will
	/// be) carved in full and is not spent. Passes issued while this is true are paid up to
	/// the epoch budget whatever the origin does later.
	pub passes_open: bool,
}

/// A registered streamer, as the runtime API reports it.
#[derive(
	Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct StreamerView<AccountId> {
	/// The operator's account.
	pub account: AccountId,
	/// Announced endpoints.
	pub endpoints: EndpointsView,
	/// Settings in force: its own, or the chain-wide default.
	pub settings: CapacitySettings,
	/// Whether `settings` is the chain-wide default.
	pub uses_default: bool,
	/// `floor(max_streams * (1 - r))` for `settings`.
	pub p2p_threshold: u32,
}

/// Credits of an account, as the runtime API reports them.
#[derive(
	Clone,
	PartialEq,
	Eq,
	Debug,
	Default,
	Encode,
	Decode,
	TypeInfo,
	serde::Serialize,
	serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct CreditsView<Balance> {
	/// Credits earned and not yet withdrawn.
	pub available: Balance,
	/// Credits earned since the account's first claim.
	pub earned_total: Balance,
	/// Units paid since the account's first claim.
	pub units_total: Units,
	/// Claim items that paid something.
	pub items_paid: u32,
}

/// Claim bookkeeping for one (stream, epoch, viewer, seeder), as the runtime API reports it.
#[derive(
	Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStateView {
	/// Epoch of the current block.
	pub current_epoch: EpochIndex,
	/// Whether claims for the asked epoch are accepted now.
	pub claimable: bool,
	/// Units already paid to this seeder for this viewer.
	pub claimed_units: Units,
	/// Units already paid for this viewer over all seeders.
	pub viewer_epoch_units: Units,
}

#[cfg(test)]
mod tests {
	use super::*;
	use sp_core::Pair;

	fn settings(max_streams: u32, rate: Perbill) -> CapacitySettings {
		CapacitySettings { max_streams, streaming_rate: rate }
	}

	#[test]
	fn p2p_threshold_matches_the_specification_table() {
		assert_eq!(settings(2000, Perbill::zero()).p2p_threshold(), 2000);
		assert_eq!(settings(2000, Perbill::from_percent(50)).p2p_threshold(), 1000);
		assert_eq!(settings(2000, Perbill::one()).p2p_threshold(), 0);
	}

	#[test]
	fn p2p_threshold_rounds_down() {
		// 3 * (1 - 0.5) = 1.5 -> 1; 10 * (1 - 0.333333333) = 6.67 -> 6.
		assert_eq!(settings(3, Perbill::from_percent(50)).p2p_threshold(), 1);
		assert_eq!(settings(10, Perbill::from_parts(333_333_333)).p2p_threshold(), 6);
		assert_eq!(settings(0, Perbill::zero()).p2p_threshold(), 0);
		assert_eq!(settings(u32::MAX, Perbill::zero()).p2p_threshold(), u32::MAX);
	}

	#[test]
	fn admission_switches_to_p2p_at_the_threshold() {
		let s = settings(2000, Perbill::from_percent(50));
		assert_eq!(s.admit(0), AdmissionMode::Direct);
		assert_eq!(s.admit(999), AdmissionMode::Direct);
		assert_eq!(s.admit(1000), AdmissionMode::P2p);
		assert_eq!(settings(2000, Perbill::one()).admit(0), AdmissionMode::P2p);
		assert_eq!(settings(2000, Perbill::zero()).admit(1999), AdmissionMode::Direct);
		assert_eq!(settings(2000, Perbill::zero()).admit(2000), AdmissionMode::P2p);
	}

	fn pass(genesis: Hash32, viewer: PublicKey, issuer: PublicKey) -> ViewerPass {
		ViewerPass { genesis_hash: genesis, stream: 7, epoch: 3, viewer, max_units: 100, issuer }
	}

	#[test]
	fn signatures_verify_and_bind_domain_and_content() {
		let issuer = sp_core::sr25519::Pair::from_string("//Issuer", None).unwrap();
		let viewer = sp_core::sr25519::Pair::from_string("//Viewer", None).unwrap();
		let signed = Signed::sign(pass([1; 32], viewer.public(), issuer.public()), &issuer);
		assert!(signed.verify(&issuer.public()));
		assert!(!signed.verify(&viewer.public()));

		let mut altered = signed.clone();
		altered.payload.max_units = 101;
		assert!(!altered.verify(&issuer.public()));

		// The signature covers the domain tag: the bare payload bytes do not verify.
		assert!(!sp_core::sr25519::Pair::verify(
			&signed.signature,
			signed.payload.encode(),
			&issuer.public()
		));
	}

	#[test]
	fn signing_payload_starts_with_length_prefixed_domain_tag() {
		let viewer = sp_core::sr25519::Pair::from_string("//Viewer", None).unwrap();
		let p = pass([2; 32], viewer.public(), viewer.public());
		let bytes = p.signing_payload();
		let (tag, rest): (Vec<u8>, ViewerPass) = Decode::decode(&mut &bytes[..]).unwrap();
		assert_eq!(tag, domain::VIEWER_PASS);
		assert_eq!(rest, p);
	}
}
