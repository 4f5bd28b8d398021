//! Storage types of `pallet-dsp`. Views for the runtime API live in `dsp-primitives`.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use dsp_primitives::{CapacitySettings, EndpointsView, EpochIndex, PublicKey, Units};
use frame_support::{
	traits::{ConstU32, Get},
	BoundedVec, CloneNoBound, DebugNoBound, EqNoBound, PartialEqNoBound,
};
use scale_info::TypeInfo;
use sp_runtime::traits::{AtLeast32BitUnsigned, Zero};

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
	/// Keys of streamer nodes allowed to sign viewer passes for this origin's streams. Keys
	/// removed from here are kept in [`crate::RevokedSigners`] until their claim window closes.
	pub pass_signers: BoundedVec<PublicKey, MaxSigners>,
	/// Epoch of the last change of `pass_signers` that added keys, and how many keys were added
	/// in that epoch: at most `MaxPassSigners` per epoch, which bounds the revocations an origin
	/// can have at once (see the crate docs) without ever refusing a removal.
	pub signers_added: (EpochIndex, u32),
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
	/// Most paid for the stream per epoch, over all viewers and seeders. Fixed at creation.
	pub epoch_budget: Balance,
	/// The escrow committed to this stream and how it is carved into epochs.
	pub escrow: StreamEscrow<Balance>,
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

/// Most epochs a stream keeps a carved budget for: every claimable epoch (`ClaimWindow + 1`)
/// must fit, which `integrity_test` checks. 64 x 36 bytes keeps a stream record small.
pub const MAX_CARVED_EPOCHS: u32 = 64;

/// The budget carved for one epoch of a stream.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, TypeInfo, MaxEncodedLen)]
pub struct CarvedEpoch<Balance> {
	/// The epoch.
	pub epoch: EpochIndex,
	/// What was carved for it: `min(epoch_budget, pool)` when it was carved.
	pub carved: Balance,
	/// What is left to pay for it.
	pub left: Balance,
}

/// The escrow an origin committed to one stream, held in the pallet account.
///
/// Epochs are carved in order: before anything is paid for epoch `E`, every claimable epoch
/// before `E` not yet carved gets `min(epoch_budget, pool)` from the pool, then `E` does. So a
/// claim for a later epoch can never take what an earlier, still claimable epoch is owed.
/// What an epoch leaves unpaid returns to the pool once its claim window has closed.
#[derive(Clone, PartialEq, Eq, Debug, Default, Encode, Decode, TypeInfo, MaxEncodedLen)]
pub struct StreamEscrow<Balance> {
	/// Committed and not yet carved for any epoch.
	pub pool: Balance,
	/// First epoch not yet carved; epochs before it get nothing more from the pool.
	pub next_epoch: EpochIndex,
	/// Budgets of carved epochs that may still be claimable, oldest first.
	pub carved: BoundedVec<CarvedEpoch<Balance>, ConstU32<MAX_CARVED_EPOCHS>>,
}

impl<Balance: AtLeast32BitUnsigned + Copy> StreamEscrow<Balance> {
	/// An empty escrow whose first carved epoch will be `epoch`.
	pub fn starting_at(epoch: EpochIndex) -> Self {
		Self { pool: Zero::zero(), next_epoch: epoch, carved: Default::default() }
	}

	/// Everything committed: the pool and what carved epochs have left.
	pub fn total(&self) -> Balance {
		self.carved.iter().fold(self.pool, |sum, c| sum.saturating_add(c.left))
	}

	/// Returns to the pool what epochs whose claim window closed before `current` left unpaid.
	pub fn expire(&mut self, current: EpochIndex, window: EpochIndex) {
		let mut back = Balance::zero();
		self.carved.retain(|c| {
			let open = c.epoch.saturating_add(window) >= current;
			if !open {
				back = back.saturating_add(c.left);
			}
			open
		});
		self.pool = self.pool.saturating_add(back);
	}

	/// Carves, in order, every epoch from `next_epoch` through `epoch` that is still claimable
	/// in `current` (older ones can no longer be paid, so they get nothing).
	pub fn carve_through(
		&mut self,
		epoch: EpochIndex,
		budget: Balance,
		current: EpochIndex,
		window: EpochIndex,
	) {
		let first = self.next_epoch.max(current.saturating_sub(window));
		for e in first..=epoch {
			let carved = budget.min(self.pool);
			self.pool = self.pool.saturating_sub(carved);
			// Cannot overflow: only claimable epochs are kept, and `integrity_test` checks
			// that all of them fit. Were it to, the budget stays in the pool.
			if self.carved.try_push(CarvedEpoch { epoch: e, carved, left: carved }).is_err() {
				self.pool = self.pool.saturating_add(carved);
			}
		}
		self.next_epoch = self.next_epoch.max(epoch.saturating_add(1));
	}

	/// The carved budget of `epoch`, if it was carved and is still kept.
	pub fn carved_epoch(&self, epoch: EpochIndex) -> Option<&CarvedEpoch<Balance>> {
		self.carved.iter().find(|c| c.epoch == epoch)
	}

	/// What is left to pay for `epoch`.
	pub fn left_for(&self, epoch: EpochIndex) -> Balance {
		self.carved_epoch(epoch).map_or_else(Zero::zero, |c| c.left)
	}

	/// Pays `amount` (at most [`Self::left_for`]) out of `epoch`'s budget.
	pub fn spend(&mut self, epoch: EpochIndex, amount: Balance) {
		if let Some(c) = self.carved.iter_mut().find(|c| c.epoch == epoch) {
			c.left = c.left.saturating_sub(amount);
		}
	}
}
