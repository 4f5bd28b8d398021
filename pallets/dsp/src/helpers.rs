//! Helpers of the calls: the pallet account, epochs and the claim window, escrow and
//! deposit holds, pass-signer rotation and settings checks. Split from `lib.rs`, which keeps
//! the pallet's declarations and calls; all are methods of [`Pallet`].

use crate::*;
use alloc::vec::Vec;
use frame_support::{
	pallet_prelude::*,
	traits::{
		fungible::{InspectHold, MutateHold},
		tokens::Precision,
	},
};
use frame_system::pallet_prelude::*;
use sp_runtime::{
	traits::{AccountIdConversion, Saturating, UniqueSaturatedInto, Zero},
	SaturatedConversion,
};

impl<T: Config> Pallet<T> {
	/// Account that holds credits until their owners withdraw them.
	pub fn account_id() -> T::AccountId {
		T::PalletId::get().into_account_truncating()
	}

	/// Escrow of an origin: its balance held under [`HoldReason::Escrow`].
	pub fn escrow_of(who: &T::AccountId) -> BalanceOf<T> {
		T::Currency::balance_on_hold(&HoldReason::Escrow.into(), who)
	}

	/// Epoch of the current block.
	pub fn current_epoch() -> EpochIndex {
		let now = frame_system::Pallet::<T>::block_number();
		(now / T::EpochLength::get()).saturated_into()
	}

	/// Genesis hash as raw bytes, as signed payloads carry it.
	pub fn genesis_hash() -> [u8; 32] {
		let hash = frame_system::BlockHash::<T>::get(BlockNumberFor::<T>::zero());
		let mut out = [0u8; 32];
		let bytes = hash.as_ref();
		if bytes.len() == 32 {
			out.copy_from_slice(bytes);
		}
		out
	}

	/// Whether receipts of `epoch` are accepted while the chain is in `current`.
	pub fn is_claimable(epoch: EpochIndex, current: EpochIndex) -> bool {
		epoch <= current && current <= epoch.saturating_add(T::ClaimWindow::get())
	}

	/// Blocks between an escrow withdrawal request and its execution: the longest time a
	/// pass issued now can still be claimed, plus the freeze.
	pub fn escrow_lock_period() -> BlockNumberFor<T> {
		let window_epochs: BlockNumberFor<T> =
			T::ClaimWindow::get().saturating_add(1).unique_saturated_into();
		window_epochs.saturating_mul(T::EpochLength::get()).saturating_add(T::EscrowFreeze::get())
	}

	/// Settings in force for a streamer record.
	pub fn effective_settings(info: &StreamerInfoOf<T>) -> CapacitySettings {
		info.settings.unwrap_or_else(DefaultSettings::<T>::get)
	}

	pub(crate) fn bounded_signers(
		signers: Vec<PublicKey>,
	) -> Result<BoundedVec<PublicKey, T::MaxPassSigners>, Error<T>> {
		// Length first: sorting an oversized list would be work nobody paid for.
		let bounded: BoundedVec<_, _> =
			signers.try_into().map_err(|_| Error::<T>::TooManyPassSigners)?;
		let mut sorted = bounded.to_vec();
		sorted.sort();
		sorted.dedup();
		ensure!(sorted.len() == bounded.len(), Error::<T>::DuplicatePassSigner);
		Ok(bounded)
	}

	/// Replaces an origin's pass signers. Each removed key is revoked with the current epoch
	/// as the last one its passes are paid for (removing a signer must not void passes it
	/// already issued), kept in [`RevokedSigners`] until that epoch is pruned. A removal never
	/// fails; adding keys is limited to `MaxPassSigners` new keys per epoch, so an origin has
	/// at most `MaxPassSigners * (ClaimWindow + 2)` revocations at once.
	pub(crate) fn rotate_signers(
		who: &T::AccountId,
		info: &mut OriginInfoOf<T>,
		new: BoundedVec<PublicKey, T::MaxPassSigners>,
	) -> DispatchResult {
		let current = Self::current_epoch();
		let added = new.iter().filter(|k| !info.pass_signers.contains(k)).count() as u32;
		if added > 0 {
			let (epoch, count) = info.signers_added;
			let total = if epoch == current { count.saturating_add(added) } else { added };
			ensure!(total <= T::MaxPassSigners::get(), Error::<T>::TooManyNewSigners);
			info.signers_added = (current, total);
		}
		for key in new.iter().filter(|k| !info.pass_signers.contains(k)) {
			// Authorised again: its passes of every epoch are paid.
			RevokedSigners::<T>::remove(who, key);
		}
		for key in info.pass_signers.iter().filter(|k| !new.contains(k)) {
			RevokedSigners::<T>::insert(who, key, current);
			RevocationExpiry::<T>::insert((current, who, key), ());
			Self::deposit_event(Event::PassSignerRevoked {
				origin: who.clone(),
				key: *key,
				last_paid_epoch: current,
			});
		}
		info.pass_signers = new;
		Ok(())
	}

	/// Whether a pending withdrawal still binds: until it executes, and for a non-retired
	/// origin no longer than one epoch after it unlocked.
	pub(crate) fn withdrawal_is_live(info: &OriginInfoOf<T>, now: BlockNumberFor<T>) -> bool {
		info.pending_withdrawal.as_ref().is_some_and(|p| {
			info.retired_at.is_some() || now <= p.unlocks_at.saturating_add(T::EpochLength::get())
		})
	}

	pub(crate) fn ensure_valid_settings(settings: &CapacitySettings) -> DispatchResult {
		ensure!(settings.max_streams > 0, Error::<T>::InvalidSettings);
		Ok(())
	}

	pub(crate) fn hold(
		reason: HoldReason,
		who: &T::AccountId,
		amount: BalanceOf<T>,
	) -> DispatchResult {
		if amount.is_zero() {
			return Ok(());
		}
		T::Currency::hold(&reason.into(), who, amount)
			.map_err(|_| Error::<T>::InsufficientBalance.into())
	}

	/// Releases up to `amount`; returns what was released.
	pub(crate) fn release(
		reason: HoldReason,
		who: &T::AccountId,
		amount: BalanceOf<T>,
	) -> BalanceOf<T> {
		if amount.is_zero() {
			return amount;
		}
		T::Currency::release(&reason.into(), who, amount, Precision::BestEffort).unwrap_or_else(
			|e| {
				log::error!(target: LOG_TARGET, "release of {:?} failed: {:?}", amount, e);
				Zero::zero()
			},
		)
	}
}
