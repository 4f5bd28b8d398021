//! Bodies of the origin and stream calls ([`Pallet::retire_origin`],
//! [`Pallet::request_escrow_withdrawal`], [`Pallet::withdraw_escrow`], [`Pallet::create_stream`],
//! [`Pallet::close_stream`]), split from `lib.rs`, which keeps their declarations and docs.

use crate::*;
use frame_support::pallet_prelude::*;
use sp_runtime::traits::{Saturating, Zero};

impl<T: Config> Pallet<T> {
	/// The body of [`Pallet::retire_origin`].
	pub(crate) fn do_retire_origin(who: T::AccountId) -> DispatchResult {
		let mut info = Origins::<T>::get(&who).ok_or(Error::<T>::OriginNotRegistered)?;
		ensure!(info.retired_at.is_none(), Error::<T>::OriginRetired);
		ensure!(info.open_streams == 0, Error::<T>::OriginHasOpenStreams);

		let now = frame_system::Pallet::<T>::block_number();
		let unlocks_at = now.saturating_add(Self::escrow_lock_period());
		Self::release(HoldReason::Deposit, &who, info.deposit);
		info.deposit = Zero::zero();
		info.retired_at = Some(now);
		info.pending_withdrawal = Some(PendingWithdrawal {
			amount: Self::escrow_of(&who),
			requested_epoch: Self::current_epoch(),
			unlocks_at,
		});
		Origins::<T>::insert(&who, info);
		Self::deposit_event(Event::OriginRetired { origin: who, escrow_unlocks_at: unlocks_at });
		Ok(())
	}

	/// The body of [`Pallet::request_escrow_withdrawal`].
	pub(crate) fn do_request_escrow_withdrawal(
		who: T::AccountId,
		amount: BalanceOf<T>,
	) -> DispatchResult {
		ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
		let mut info = Origins::<T>::get(&who).ok_or(Error::<T>::OriginNotRegistered)?;
		ensure!(info.retired_at.is_none(), Error::<T>::OriginRetired);
		ensure!(amount <= Self::escrow_of(&who), Error::<T>::InsufficientEscrow);

		let unlocks_at =
			frame_system::Pallet::<T>::block_number().saturating_add(Self::escrow_lock_period());
		info.pending_withdrawal =
			Some(PendingWithdrawal { amount, requested_epoch: Self::current_epoch(), unlocks_at });
		Origins::<T>::insert(&who, info);
		Self::deposit_event(Event::EscrowWithdrawalRequested { origin: who, amount, unlocks_at });
		Ok(())
	}

	/// The body of [`Pallet::withdraw_escrow`].
	pub(crate) fn do_withdraw_escrow(who: T::AccountId) -> DispatchResult {
		let mut info = Origins::<T>::get(&who).ok_or(Error::<T>::OriginNotRegistered)?;
		let pending = info.pending_withdrawal.clone().ok_or(Error::<T>::NoPendingWithdrawal)?;
		let now = frame_system::Pallet::<T>::block_number();
		ensure!(now >= pending.unlocks_at, Error::<T>::WithdrawalLocked);
		ensure!(Self::withdrawal_is_live(&info, now), Error::<T>::WithdrawalExpired);

		let released = Self::release(HoldReason::Escrow, &who, pending.amount);
		info.pending_withdrawal = None;
		Self::deposit_event(Event::EscrowWithdrawn { origin: who.clone(), amount: released });
		if info.retired_at.is_some() && Self::escrow_of(&who).is_zero() {
			Origins::<T>::remove(&who);
			Self::deposit_event(Event::OriginRemoved { origin: who });
		} else {
			Origins::<T>::insert(&who, info);
		}
		Ok(())
	}

	/// The body of [`Pallet::create_stream`].
	pub(crate) fn do_create_stream(
		who: T::AccountId,
		bitrate_kbps: u32,
		price_per_unit: BalanceOf<T>,
		viewer_cap_per_epoch: Units,
		epoch_budget: BalanceOf<T>,
	) -> DispatchResult {
		let mut info = Origins::<T>::get(&who).ok_or(Error::<T>::OriginNotRegistered)?;
		ensure!(info.retired_at.is_none(), Error::<T>::OriginRetired);
		ensure!(
			bitrate_kbps > 0 && viewer_cap_per_epoch > 0 && !epoch_budget.is_zero(),
			Error::<T>::InvalidStreamParameters
		);
		ensure!(info.open_streams < T::MaxStreamsPerOrigin::get(), Error::<T>::TooManyStreams);
		let deposit = T::StreamDeposit::get();
		Self::hold(HoldReason::Deposit, &who, deposit)?;

		let stream = NextStreamId::<T>::get();
		NextStreamId::<T>::put(stream.saturating_add(1));
		info.open_streams += 1;
		Origins::<T>::insert(&who, info);
		Streams::<T>::insert(
			stream,
			StreamInfo {
				origin: who.clone(),
				bitrate_kbps,
				price_per_unit,
				viewer_cap_per_epoch,
				closed_in_epoch: None,
				deposit,
				epoch_budget,
				escrow: StreamEscrow::starting_at(Self::current_epoch()),
			},
		);
		Self::deposit_event(Event::StreamCreated { stream, origin: who });
		Ok(())
	}

	/// The body of [`Pallet::close_stream`].
	pub(crate) fn do_close_stream(who: T::AccountId, stream: StreamId) -> DispatchResult {
		let mut info = Streams::<T>::get(stream).ok_or(Error::<T>::UnknownStream)?;
		ensure!(info.origin == who, Error::<T>::NotStreamOwner);
		ensure!(info.is_open(), Error::<T>::StreamClosed);

		Self::release(HoldReason::Deposit, &who, info.deposit);
		Origins::<T>::mutate(&who, |o| {
			if let Some(o) = o {
				o.open_streams = o.open_streams.saturating_sub(1);
			}
		});
		info.closed_in_epoch = Some(Self::current_epoch());
		info.deposit = Zero::zero();
		Streams::<T>::insert(stream, info);
		Self::deposit_event(Event::StreamClosed { stream });
		Ok(())
	}
}
