//! Storage types of `pallet-dsp`. Views for the runtime API live in `dsp-primitives`.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use dsp_primitives::{CapacitySettings, EndpointsView, EpochIndex, PublicKey, Units};
use frame_support::{
	traits::Get, BoundedVec, CloneNoBound, DebugNoBound, EqNoBound, PartialEqNoBound,
};
use scale_info::TypeInfo;

/// A registered origin (content provider). Its escrow is not stored here: it is the balance
/// held on the origin's account under [`crate::HoldReason::Escrow`].
#[derive(
	CloneNoBound, PartialEqNoBound, EqNoBound, DebugNoBound, Encode, Decode, TypeInfo, MaxEncodedLen,
)]
#[scale_info(skip_type_params(MaxSigners, MaxMeta))]
pub struct OriginInfo<Balance, BlockNumber, MaxSigners: Get<u32>, MaxMeta: Get<u32>>
where
	Balance: Clone + PartialEq + Eq + core::fmt::Debug,
	BlockNumber: Clone + PartialEq + Eq + core::fmt::Debug,
{
	/// Key that signs segment headers.
	pub signing_key: PublicKey,
	/// Keys of streamer nodes allowed to sign viewer passes for this origin's streams.
	pub pass_signers: BoundedVec<PublicKey, MaxSigners>,
	/// Signers removed by the origin, each with the last epoch its passes are still paid for:
	/// removing a signer must not void passes it already issued. Dropped once that epoch's
	/// claim window has closed.
	pub revoked_signers: BoundedVec<(PublicKey, EpochIndex), MaxSigners>,
	/// Free-form metadata (name, URL).
	pub metadata: BoundedVec<u8, MaxMeta>,
	/// Registration deposit held on the origin's account.
	pub deposit: Balance,
	/// Streams of this origin that are still open.
	pub open_streams: u32,
	/// A requested escrow withdrawal.
	pub pending_withdrawal: Option<PendingWithdrawal<Balance, BlockNumber>>,
	/// Block at which the origin retired, if it did.
	pub retired_at: Option<BlockNumber>,
}

/// An escrow withdrawal an origin asked for.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo, MaxEncodedLen)]
pub struct PendingWithdrawal<Balance, BlockNumber> {
	/// Amount asked for. From the request on, claims for passes of later epochs can only draw
	/// on the escrow above this amount, so the withdrawal never takes money owed for traffic
	/// served after the request.
	pub amount: Balance,
	/// Epoch in which the withdrawal was requested.
	pub requested_epoch: EpochIndex,
	/// First block at which it may execute. A non-retired origin must execute it within one
	/// epoch from then, or ask again.
	pub unlocks_at: BlockNumber,
}

/// A registered stream. Closed streams stay so that claims for served traffic still settle.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo, MaxEncodedLen)]
pub struct StreamInfo<AccountId, Balance> {
	/// Account of the origin that owns the stream.
	pub origin: AccountId,
	/// Nominal bitrate in kbit/s.
	pub bitrate_kbps: u32,
	/// Credit paid per relayed unit (`dsp_primitives::UNIT_BYTES`).
	pub price_per_unit: Balance,
	/// Most units paid per viewer and epoch, over all seeders.
	pub viewer_cap_per_epoch: Units,
	/// Epoch in which the stream was closed; passes of later epochs are not paid.
	pub closed_in_epoch: Option<EpochIndex>,
	/// Deposit held on the origin's account while the stream is open.
	pub deposit: Balance,
}

impl<AccountId, Balance> StreamInfo<AccountId, Balance> {
	/// Whether the stream still accepts viewers.
	pub fn is_open(&self) -> bool {
		self.closed_in_epoch.is_none()
	}
}

/// Endpoints a streamer announces, each bounded by `MaxEndpointLen`.
#[derive(
	CloneNoBound,
	PartialEqNoBound,
	EqNoBound,
	DebugNoBound,
	Encode,
	Decode,
	DecodeWithMemTracking,
	TypeInfo,
	MaxEncodedLen,
)]
#[scale_info(skip_type_params(MaxLen))]
pub struct Endpoints<MaxLen: Get<u32>> {
	/// TCP address, `host:port`.
	pub tcp: BoundedVec<u8, MaxLen>,
	/// QUIC (UDP) address, `host:port`.
	pub quic: BoundedVec<u8, MaxLen>,
	/// libp2p multiaddr for the P2P swarm.
	pub p2p: BoundedVec<u8, MaxLen>,
	/// JSON-RPC URL of the node.
	pub rpc: BoundedVec<u8, MaxLen>,
}

impl<MaxLen: Get<u32>> Endpoints<MaxLen> {
	/// Bounds an unbounded view; `None` if any field is longer than `MaxLen`.
	pub fn try_from_view(view: EndpointsView) -> Option<Self> {
		Some(Self {
			tcp: view.tcp.try_into().ok()?,
			quic: view.quic.try_into().ok()?,
			p2p: view.p2p.try_into().ok()?,
			rpc: view.rpc.try_into().ok()?,
		})
	}

	/// The unbounded view the runtime API returns.
	pub fn to_view(&self) -> EndpointsView {
		EndpointsView {
			tcp: self.tcp.to_vec(),
			quic: self.quic.to_vec(),
			p2p: self.p2p.to_vec(),
			rpc: self.rpc.to_vec(),
		}
	}
}

/// A registered streamer (node operator).
#[derive(
	CloneNoBound, PartialEqNoBound, EqNoBound, DebugNoBound, Encode, Decode, TypeInfo, MaxEncodedLen,
)]
#[scale_info(skip_type_params(MaxLen))]
pub struct StreamerInfo<Balance, MaxLen: Get<u32>>
where
	Balance: Clone + PartialEq + Eq + core::fmt::Debug,
{
	/// Announced endpoints.
	pub endpoints: Endpoints<MaxLen>,
	/// Own capacity settings; `None` follows the chain-wide default.
	pub settings: Option<CapacitySettings>,
	/// Registration deposit held on the streamer's account.
	pub deposit: Balance,
}

/// Credits of one account. The balance itself sits in the pallet's account until withdrawn.
#[derive(Clone, PartialEq, Eq, Debug, Default, Encode, Decode, TypeInfo, MaxEncodedLen)]
pub struct CreditLedger<Balance> {
	/// Earned and not yet withdrawn.
	pub available: Balance,
	/// Earned in total.
	pub earned_total: Balance,
	/// Units paid in total.
	pub units_total: Units,
	/// Claim items that paid something.
	pub items_paid: u32,
}
