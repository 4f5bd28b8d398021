//! Stream commitments: [`Pallet::fund_stream`] moves escrow into a stream's commitment in the
//! pallet account, [`Pallet::release_stream_escrow`] pays what is left of it back once the
//! stream is closed and its last claim window is over. How claims carve and spend it is in
//! [`StreamEscrow`] and `claims.rs`.

use crate::*;
use frame_support::{
	pallet_prelude::*,
	traits::{
		fungible::{Mutate, MutateHold},
		tokens::{Fortitude, Precision, Preservation, Restriction},
	},
};
use sp_runtime::traits::{Saturating, Zero};

impl<T: Config> Pallet<T> {
	/// The body of [`Pallet::fund_stream`].
	pub(crate) fn do_fund_stream(
		who: T::AccountId,
		stream: StreamId,
		amount: BalanceOf<T>,
	) -> DispatchResult {
		ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
		let mut info = Streams::<T>::get(stream).ok_or(Error::<T>::UnknownStream)?;
		ensure!(info.origin == who, Error::<T>::NotStreamOwner);
		ensure!(info.is_open(), Error::<T>::StreamClosed);
		ensure!(amount <= Self::escrow_of(&who), Error::<T>::InsufficientEscrow);

		T::Currency::transfer_on_hold(
			&HoldReason::Escrow.into(),
			&who,
			&Self::account_id(),
			amount,
			Precision::Exact,
			Restriction::Free,
			Fortitude::Polite,
		)?;
		info.escrow.pool = info.escrow.pool.saturating_add(amount);
		let committed = info.escrow.total();
		Streams::<T>::insert(stream, info);
		Self::deposit_event(Event::StreamFunded { stream, amount, committed });
		Ok(())
	}

	/// The body of [`Pallet::release_stream_escrow`].
	pub(crate) fn do_release_stream_escrow(who: T::AccountId, stream: StreamId) -> DispatchResult {
		let mut info = Streams::<T>::get(stream).ok_or(Error::<T>::UnknownStream)?;
		ensure!(info.origin == who, Error::<T>::NotStreamOwner);
		let closed = info.closed_in_epoch.ok_or(Error::<T>::StreamStillClaimable)?;
		let current = Self::current_epoch();
		ensure!(
			current > closed.saturating_add(T::ClaimWindow::get()),
			Error::<T>::StreamStillClaimable
		);
		let amount = info.escrow.total();
		ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);

		T::Currency::transfer(&Self::account_id(), &who, amount, Preservation::Preserve)?;
		info.escrow = StreamEscrow::starting_at(current);
		Streams::<T>::insert(stream, info);
		Self::deposit_event(Event::StreamEscrowReleased { stream, origin: who, amount });
		Ok(())
	}
}
