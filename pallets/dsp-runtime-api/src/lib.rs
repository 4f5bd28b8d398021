//! # DSP runtime API
//!
//! What the node's streaming worker, the `dsp_*` JSON-RPC methods and dApps read from the
//! runtime, so that nobody has to decode `pallet-dsp` storage by hand. Every method is a pure
//! read at a given block.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

use alloc::vec::Vec;
use codec::Codec;
pub use dsp_primitives::{
	CapacitySettings, ClaimStateView, CreditsView, EpochIndex, OriginView, PublicKey, StreamId,
	StreamView, StreamerView,
};

sp_api::decl_runtime_apis! {
	/// Read access to `pallet-dsp`.
	pub trait DspApi<AccountId, Balance, BlockNumber>
	where
		AccountId: Codec,
		Balance: Codec,
		BlockNumber: Codec,
	{
		/// Chain-wide default capacity settings (used by streamers without their own).
		fn default_settings() -> CapacitySettings;
		/// A streamer's registration and the settings in force for it.
		fn streamer(account: AccountId) -> Option<StreamerView<AccountId>>;
		/// All registered streamers (bounded by what fits in storage; for discovery).
		fn streamers() -> Vec<StreamerView<AccountId>>;
		/// `floor(max_streams * (1 - r))` for a streamer, or `None` if it is not registered.
		fn p2p_threshold(account: AccountId) -> Option<u32>;
		/// A registered origin with its escrow.
		fn origin(account: AccountId) -> Option<OriginView<AccountId, Balance, BlockNumber>>;
		/// A registered stream.
		fn stream(id: StreamId) -> Option<StreamView<AccountId, Balance>>;
		/// Credits of an account.
		fn credits(account: AccountId) -> CreditsView<Balance>;
		/// Claim bookkeeping for one (stream, epoch, viewer, seeder).
		fn claim_state(stream: StreamId, epoch: EpochIndex, viewer: PublicKey, seeder: AccountId) -> ClaimStateView;
		/// Epoch of the current block.
		fn current_epoch() -> EpochIndex;
	}
}
