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
	///
	/// Version 2 (spec_version 101, with the per-stream escrow of storage version 1):
	/// `streamers` is paged, and `stream`'s `StreamView` gained `epoch_budget`, `committed`,
	/// `epoch_left` and `passes_open`. A caller that talks to runtimes older than version 2
	/// must check `api_version` first: the version-1 `StreamView` is a prefix of the new one
	/// and does not decode as it.
	#[api_version(2)]
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
		/// All registered streamers (version 1: unbounded; replaced by the paged call).
		#[changed_in(2)]
		fn streamers() -> Vec<StreamerView<AccountId>>;
		/// Registered streamers in storage order, after `start_after` (from the first when
		/// `None`), at most `limit` and never more than `MAX_STREAMERS_PAGE` (256) in one call:
		/// page on with the last account returned until a page comes back short.
		fn streamers(start_after: Option<AccountId>, limit: u32) -> Vec<StreamerView<AccountId>>;
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
