//! How [`Pallet::claim`] checks and pays one claim item ([`Pallet::settle_item`]), and how
//! `on_idle` prunes the claim bookkeeping of epochs whose claim window has closed
//! ([`Pallet::prune_finished_epochs`]).

use crate::*;
use frame_support::pallet_prelude::*;
use sp_runtime::{
	traits::{Saturating, Zero},
	SaturatedConversion,
};

/// What every claim item of one block is checked against, read once per batch.
pub(crate) struct ClaimContext<T: Config> {
	_config: core::marker::PhantomData<T>,
	pub genesis_hash: [u8; 32],
	pub current_epoch: EpochIndex,
	/// Epochs before this one may already be pruned: their receipts could be paid twice.
	pub oldest_unpruned: EpochIndex,
}

impl<T: Config> ClaimContext<T> {
	pub(crate) fn now() -> Self {
		Self {
			_config: core::marker::PhantomData,
			genesis_hash: Pallet::<T>::genesis_hash(),
			current_epoch: Pallet::<T>::current_epoch(),
			oldest_unpruned: NextEpochToPrune::<T>::get(),
		}
	}
}

impl<T: Config> Pallet<T> {
	/// Whether `issuer` may sign passes of `epoch` for this origin: a current signer, or one
	/// removed in `epoch` or later.
	fn is_authorised(
		origin: &T::AccountId,
		info: &OriginInfoOf<T>,
		issuer: &PublicKey,
		epoch: EpochIndex,
	) -> bool {
		info.pass_signers.contains(issuer)
			|| RevokedSigners::<T>::get(origin, issuer).is_some_and(|last| epoch <= last)
	}

	/// The body of [`Pallet::claim`]: settles each item, reporting those it skips.
	pub(crate) fn do_claim(seeder: T::AccountId, items: &[ClaimItem]) {
		let context = ClaimContext::<T>::now();
		let (mut paid_items, mut rejected_items) = (0u32, 0u32);
		let mut total = BalanceOf::<T>::zero();
		for (index, item) in items.iter().enumerate() {
			match Self::settle_item(&seeder, item, &context) {
				Ok(amount) => {
					paid_items += 1;
					total = total.saturating_add(amount);
				}
				Err(reason) => {
					rejected_items += 1;
					Self::deposit_event(Event::ClaimItemRejected {
						seeder: seeder.clone(),
						index: index as u32,
						reason,
					});
				}
			}
		}
		Self::deposit_event(Event::ClaimBatchProcessed {
			seeder,
			paid_items,
			rejected_items,
			amount: total,
		});
	}

	/// Checks one claim item and pays it out of the stream's budget for the pass's epoch
	/// (carving the stream's commitment up to that epoch first, see [`StreamEscrow`]). Writes
	/// no storage unless it returns `Ok`, except the carving, which an item that passed every
	/// check may leave behind even when the epoch's budget then pays nothing. Events:
	/// [`Event::Claimed`] when it pays; and [`Event::EscrowExhausted`] whenever the budget
	/// cannot pay every payable unit, also when it can pay none and the item is then rejected
	/// with [`ClaimRejection::EscrowExhausted`] (so the origin sees every claim its escrow
	/// failed, with the units left unpaid).
	pub(crate) fn settle_item(
		seeder: &T::AccountId,
		item: &ClaimItem,
		ctx: &ClaimContext<T>,
	) -> Result<BalanceOf<T>, ClaimRejection> {
		let (pass, receipt) = (&item.pass.payload, &item.receipt.payload);
		ensure!(
			pass.stream == receipt.stream
				&& pass.epoch == receipt.epoch
				&& pass.viewer == receipt.viewer,
			ClaimRejection::Mismatch
		);
		ensure!(
			pass.genesis_hash == ctx.genesis_hash && receipt.genesis_hash == ctx.genesis_hash,
			ClaimRejection::WrongGenesis
		);
		let seeder_bytes: AccountBytes = seeder.clone().into();
		ensure!(receipt.seeder == seeder_bytes, ClaimRejection::WrongSeeder);
		ensure!(receipt.viewer.0 != seeder_bytes, ClaimRejection::SelfDealing);
		ensure!(
			Self::is_claimable(pass.epoch, ctx.current_epoch) && pass.epoch >= ctx.oldest_unpruned,
			ClaimRejection::OutsideClaimWindow
		);
		let mut stream = Streams::<T>::get(pass.stream).ok_or(ClaimRejection::UnknownStream)?;
		ensure!(
			stream.closed_in_epoch.is_none_or(|closed| pass.epoch <= closed),
			ClaimRejection::StreamClosed
		);
		let origin = Origins::<T>::get(&stream.origin).ok_or(ClaimRejection::UnknownStream)?;
		ensure!(
			Self::is_authorised(&stream.origin, &origin, &pass.issuer, pass.epoch),
			ClaimRejection::UnauthorisedIssuer
		);
		ensure!(Self::verify(&item.pass, &pass.issuer), ClaimRejection::BadPassSignature);
		ensure!(Self::verify(&item.receipt, &receipt.viewer), ClaimRejection::BadReceiptSignature);

		let claim_key = (pass.epoch, pass.stream, receipt.viewer, seeder.clone());
		let already = ClaimedUnits::<T>::get(&claim_key);
		ensure!(receipt.units > already, ClaimRejection::NothingNew);
		let viewer_key = (pass.epoch, pass.stream, receipt.viewer);
		let viewer_total = ViewerEpochUnits::<T>::get(&viewer_key);
		let cap = pass.max_units.min(stream.viewer_cap_per_epoch);
		let payable = (receipt.units - already).min(cap.saturating_sub(viewer_total));
		ensure!(payable > 0, ClaimRejection::CapReached);

		// Pay what the epoch's budget covers; unpaid units stay claimable with the same receipt.
		let price = stream.price_per_unit;
		let window = T::ClaimWindow::get();
		stream.escrow.expire(ctx.current_epoch, window);
		stream.escrow.carve_through(pass.epoch, stream.epoch_budget, ctx.current_epoch, window);
		let units = if price.is_zero() {
			payable
		} else {
			let affordable: u128 = (stream.escrow.left_for(pass.epoch) / price).saturated_into();
			payable.min(affordable.saturated_into())
		};
		if units < payable {
			Self::deposit_event(Event::EscrowExhausted {
				origin: stream.origin.clone(),
				stream: pass.stream,
				unpaid_units: payable - units,
			});
		}
		let amount = price.saturating_mul(units.saturated_into());
		// The budget already sits in the pallet account: paying is bookkeeping only.
		stream.escrow.spend(pass.epoch, amount);
		Streams::<T>::insert(pass.stream, &stream);
		ensure!(units > 0, ClaimRejection::EscrowExhausted);
		ClaimedUnits::<T>::insert(&claim_key, already + units);
		ViewerEpochUnits::<T>::insert(&viewer_key, viewer_total + units);
		Credits::<T>::mutate(seeder, |ledger| {
			ledger.available = ledger.available.saturating_add(amount);
			ledger.earned_total = ledger.earned_total.saturating_add(amount);
			ledger.units_total = ledger.units_total.saturating_add(units);
			ledger.items_paid = ledger.items_paid.saturating_add(1);
		});
		Self::deposit_event(Event::Claimed {
			seeder: seeder.clone(),
			stream: pass.stream,
			epoch: pass.epoch,
			viewer: receipt.viewer,
			units,
			amount,
		});
		Ok(amount)
	}

	/// Checks an off-chain signature with the runtime's sr25519 host function.
	fn verify<P: Signable>(signed: &Signed<P>, signer: &PublicKey) -> bool {
		sp_io::crypto::sr25519_verify(&signed.signature, &signed.payload.signing_payload(), signer)
	}

	/// Removes claim bookkeeping and expired revocations of epochs whose claim window has
	/// closed, within `remaining_weight` and [`MAX_PRUNE_PER_BLOCK`]. Returns the weight used.
	pub(crate) fn prune_finished_epochs(remaining_weight: Weight) -> Weight {
		let db = T::DbWeight::get();
		let base = db.reads(2);
		let per_item = db.writes(1).saturating_add(db.reads(1));
		if remaining_weight.any_lt(base.saturating_add(per_item)) {
			return Weight::zero();
		}
		let epoch = NextEpochToPrune::<T>::get();
		let current = Self::current_epoch();
		if Self::is_claimable(epoch, current) || epoch > current {
			return db.reads(1);
		}
		let budget = remaining_weight
			.saturating_sub(base)
			.checked_div_per_component(&per_item)
			.unwrap_or(0)
			.min(MAX_PRUNE_PER_BLOCK as u64) as u32;
		// Each map is cleared in its own call: a second call on the same prefix in the same
		// block could see keys the first one already removed.
		let claimed = ClaimedUnits::<T>::clear_prefix((epoch,), budget, None);
		let mut used = claimed.loops;
		let mut done = claimed.maybe_cursor.is_none();
		if done && used < budget {
			let totals = ViewerEpochUnits::<T>::clear_prefix((epoch,), budget - used, None);
			used += totals.loops;
			done = totals.maybe_cursor.is_none();
		} else {
			done = false;
		}
		if done && used + 2 < budget {
			// A revocation costs two items: its expiry entry and the revocation itself.
			let most = (budget - used) / 2;
			let expired: alloc::vec::Vec<(T::AccountId, PublicKey)> =
				RevocationExpiry::<T>::iter_key_prefix((epoch,)).take(most as usize).collect();
			for (origin, key) in &expired {
				RevocationExpiry::<T>::remove((epoch, origin, key));
				// Unless the key was authorised again and removed later (a newer expiry).
				if RevokedSigners::<T>::get(origin, key) == Some(epoch) {
					RevokedSigners::<T>::remove(origin, key);
				}
			}
			used += 2 * expired.len() as u32 + 1;
			done = (expired.len() as u32) < most;
		} else {
			done = false;
		}
		if done {
			NextEpochToPrune::<T>::put(epoch.saturating_add(1));
			Self::deposit_event(Event::EpochPruned { epoch });
		}
		base.saturating_add(per_item.saturating_mul(used.max(1) as u64))
			.saturating_add(db.writes(1))
	}
}
