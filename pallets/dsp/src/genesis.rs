//! The genesis build of `pallet-dsp`: the chain spec's default settings, origins, streams and
//! streamers written to storage, without deposits. A malformed chain spec panics here, while
//! the genesis state is built, never in a block.

use crate::*;
use frame_support::traits::{
	fungible::{Inspect, Mutate, MutateHold},
	tokens::Preservation,
};
use sp_runtime::traits::Zero;

impl<T: Config> GenesisConfig<T> {
	/// Checks the configuration and writes it to storage (see [`GenesisConfig`]'s fields).
	pub(crate) fn write_storage(&self) {
		assert!(self.default_settings.max_streams > 0, "default max_streams must be > 0");
		DefaultSettings::<T>::put(self.default_settings);

		// The credit pot must exist before the first claim moves funds into it.
		let pot = Pallet::<T>::account_id();
		if T::Currency::total_balance(&pot).is_zero() {
			let _ = T::Currency::mint_into(&pot, T::Currency::minimum_balance());
		}

		for (account, signing_key, signers, escrow, metadata) in &self.origins {
			assert!(!Origins::<T>::contains_key(account), "origin listed twice in genesis");
			let pass_signers = Pallet::<T>::bounded_signers(signers.clone())
				.expect("genesis pass signers within MaxPassSigners and unique");
			let metadata = metadata.clone().try_into().expect("genesis metadata too long");
			if !escrow.is_zero() {
				T::Currency::hold(&HoldReason::Escrow.into(), account, *escrow)
					.expect("genesis origin can fund its escrow");
			}
			Origins::<T>::insert(
				account,
				OriginInfo {
					signing_key: *signing_key,
					pass_signers,
					signers_added: (0, 0),
					metadata,
					deposit: Zero::zero(),
					open_streams: 0,
					pending_withdrawal: None,
					retired_at: None,
				},
			);
		}

		for (origin, bitrate_kbps, price_per_unit, cap, epoch_budget, committed) in &self.streams {
			assert!(
				*bitrate_kbps > 0 && *cap > 0 && !epoch_budget.is_zero(),
				"genesis stream parameters must be > 0"
			);
			Origins::<T>::mutate(origin, |info| {
				let info = info.as_mut().expect("genesis stream of an unregistered origin");
				info.open_streams += 1;
			});
			let id = NextStreamId::<T>::mutate(|next| {
				let id = *next;
				*next += 1;
				id
			});
			Streams::<T>::insert(
				id,
				StreamInfo {
					origin: origin.clone(),
					bitrate_kbps: *bitrate_kbps,
					price_per_unit: *price_per_unit,
					viewer_cap_per_epoch: *cap,
					closed_in_epoch: None,
					deposit: Zero::zero(),
					epoch_budget: *epoch_budget,
					escrow: StreamEscrow { pool: *committed, ..StreamEscrow::starting_at(0) },
				},
			);
			if !committed.is_zero() {
				T::Currency::transfer(origin, &pot, *committed, Preservation::Preserve)
					.expect("genesis origin can fund its stream commitment");
			}
		}

		for (account, endpoints, settings) in &self.streamers {
			let endpoints = Endpoints::try_from_view(endpoints.clone())
				.expect("genesis endpoint within MaxEndpointLen");
			if let Some(s) = settings {
				assert!(s.max_streams > 0, "genesis streamer max_streams must be > 0");
			}
			Streamers::<T>::insert(
				account,
				StreamerInfo { endpoints, settings: *settings, deposit: Zero::zero() },
			);
		}
	}
}
