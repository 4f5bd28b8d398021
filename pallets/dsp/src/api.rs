//! Implementations behind `dsp_runtime_api::DspApi`: read-only views of the pallet's state.

use crate::{pallet::*, Endpoints};
use alloc::vec::Vec;
use dsp_primitives::{
	CapacitySettings, ClaimStateView, CreditsView, EpochIndex, OriginView, PublicKey, StreamId,
	StreamView, StreamerView, MAX_STREAMERS_PAGE,
};
use frame_support::traits::Get;
use frame_system::pallet_prelude::BlockNumberFor;
use sp_runtime::traits::Zero;

impl<T: Config> Pallet<T> {
	/// Chain-wide default capacity settings.
	pub fn api_default_settings() -> CapacitySettings {
		DefaultSettings::<T>::get()
	}

	/// A streamer's registration and the settings in force for it.
	pub fn api_streamer(account: T::AccountId) -> Option<StreamerView<T::AccountId>> {
		Streamers::<T>::get(&account).map(|info| Self::streamer_view(account, &info))
	}

	/// Registered streamers in storage order after `start_after`, at most `limit` and at most
	/// [`MAX_STREAMERS_PAGE`]: one call reads a bounded number of records however many
	/// streamers register.
	pub fn api_streamers(
		start_after: Option<T::AccountId>,
		limit: u32,
	) -> Vec<StreamerView<T::AccountId>> {
		let limit = limit.min(MAX_STREAMERS_PAGE) as usize;
		let page = match start_after {
			Some(after) => Streamers::<T>::iter_from(Streamers::<T>::hashed_key_for(after)),
			None => Streamers::<T>::iter(),
		};
		page.take(limit).map(|(account, info)| Self::streamer_view(account, &info)).collect()
	}

	/// P2P threshold of a registered streamer.
	pub fn api_p2p_threshold(account: T::AccountId) -> Option<u32> {
		Streamers::<T>::get(&account).map(|info| Self::effective_settings(&info).p2p_threshold())
	}

	/// A registered origin with its escrow.
	pub fn api_origin(
		account: T::AccountId,
	) -> Option<OriginView<T::AccountId, BalanceOf<T>, BlockNumberFor<T>>> {
		let info = Origins::<T>::get(&account)?;
		Some(OriginView {
			escrow: Self::escrow_of(&account),
			account,
			signing_key: info.signing_key,
			pass_signers: info.pass_signers.into_inner(),
			metadata: info.metadata.into_inner(),
			pending_withdrawal: info.pending_withdrawal.map(|p| (p.amount, p.unlocks_at)),
			open_streams: info.open_streams,
			retired_at: info.retired_at,
		})
	}

	/// A registered stream, with its commitment and whether passes may be issued for it now.
	pub fn api_stream(id: StreamId) -> Option<StreamView<T::AccountId, BalanceOf<T>>> {
		let info = Streams::<T>::get(id)?;
		let open = info.is_open();
		let origin = Origins::<T>::get(&info.origin);
		let signing_key =
			origin.as_ref().map(|o| o.signing_key).unwrap_or(PublicKey::from_raw([0; 32]));
		let now = frame_system::Pallet::<T>::block_number();
		let withdrawing = origin.as_ref().is_some_and(|o| Self::withdrawal_is_live(o, now));
		// What the next claim of the current epoch would find, without writing it.
		let current = Self::current_epoch();
		let window = T::ClaimWindow::get();
		let mut escrow = info.escrow.clone();
		escrow.expire(current, window);
		if open {
			escrow.carve_through(current, info.epoch_budget, current, window);
		}
		let this_epoch = escrow.carved_epoch(current);
		let epoch_left = this_epoch.map_or_else(Zero::zero, |c| c.left);
		let full = this_epoch.is_some_and(|c| c.carved == info.epoch_budget);
		Some(StreamView {
			id,
			origin: info.origin,
			signing_key,
			bitrate_kbps: info.bitrate_kbps,
			price_per_unit: info.price_per_unit,
			viewer_cap_per_epoch: info.viewer_cap_per_epoch,
			open,
			epoch_budget: info.epoch_budget,
			committed: info.escrow.total(),
			epoch_left,
			passes_open: open && !withdrawing && full && !epoch_left.is_zero(),
		})
	}

	/// Credits of an account.
	pub fn api_credits(account: T::AccountId) -> CreditsView<BalanceOf<T>> {
		let ledger = Credits::<T>::get(&account);
		CreditsView {
			available: ledger.available,
			earned_total: ledger.earned_total,
			units_total: ledger.units_total,
			items_paid: ledger.items_paid,
		}
	}

	/// Claim bookkeeping for one (stream, epoch, viewer, seeder).
	pub fn api_claim_state(
		stream: StreamId,
		epoch: EpochIndex,
		viewer: PublicKey,
		seeder: T::AccountId,
	) -> ClaimStateView {
		let current_epoch = Self::current_epoch();
		ClaimStateView {
			current_epoch,
			claimable: Self::is_claimable(epoch, current_epoch),
			claimed_units: ClaimedUnits::<T>::get((epoch, stream, viewer, seeder)),
			viewer_epoch_units: ViewerEpochUnits::<T>::get((epoch, stream, viewer)),
		}
	}

	/// Epoch of the current block.
	pub fn api_current_epoch() -> EpochIndex {
		Self::current_epoch()
	}

	fn streamer_view(
		account: T::AccountId,
		info: &StreamerInfoOf<T>,
	) -> StreamerView<T::AccountId> {
		let settings = Self::effective_settings(info);
		StreamerView {
			account,
			endpoints: Endpoints::to_view(&info.endpoints),
			settings,
			uses_default: info.settings.is_none(),
			p2p_threshold: settings.p2p_threshold(),
		}
	}
}
