//! How [`Pallet::claim`] checks and pays one claim item ([`Pallet::settle_item`]), and how
//! `on_idle` prunes the claim bookkeeping of epochs whose claim window has closed
//! ([`Pallet::prune_finished_epochs`]).

use crate::*;
use frame_support::{
	pallet_prelude::*,
	traits::{
		fungible::MutateHold,
		tokens::{Fortitude, Precision, Restriction},
	},
};
use frame_system::pallet_prelude::*;
use sp_runtime::{
	traits::{Saturating, Zero},
	SaturatedConversion,
};

/// What every claim item of one block is checked against, read once per batch.
pub(crate) struct ClaimContext<T: Config> {
	pub genesis_hash: [u8; 32],
	pub now: BlockNumberFor<T>,
	pub current_epoch: EpochIndex,
	/// Epochs before this one may already be pruned: their receipts could be paid twice.
	pub oldest_unpruned: EpochIndex,
}

impl<T: Config> ClaimContext<T> {
	pub(crate) fn now() -> Self {
		Self {
			genesis_hash: Pallet::<T>::genesis_hash(),
			now: frame_system::Pallet::<T>::block_number(),
			current_epoch: Pallet::<T>::current_epoch(),
			oldest_unpruned: NextEpochToPrune::<T>::get(),
		}
	}
}

impl<T: Config> Pallet<T> {
	/// Whether `issuer` may sign passes of `epoch` for this origin.
	fn is_authorised(info: &OriginInfoOf<T>, issuer: &PublicKey, epoch: EpochIndex) -> bool {
		info.pass_signers.contains(issuer)
			|| info.revoked_signers.iter().any(|(key, last)| key == issuer && epoch <= *last)
	}

	/// Escrow that claims for passes of `epoch` may draw on: all of it, less a live pending
	/// withdrawal requested before that epoch.
	fn escrow_for_epoch(
		origin: &T::AccountId,
		info: &OriginInfoOf<T>,
		epoch: EpochIndex,
		now: BlockNumberFor<T>,
	) -> BalanceOf<T> {
		let escrow = Self::escrow_of(origin);
		match &info.pending_withdrawal {
			Some(p) if epoch > p.requested_epoch && Self::withdrawal_is_live(info, now) => {
				escrow.saturating_sub(p.amount)
			}
			_ => escrow,
		}
	}

	/// Checks one claim item and pays it. Writes no storage unless it returns `Ok`. Events:
	/// [`Event::Claimed`] when it pays; and [`Event::EscrowExhausted`] whenever the escrow
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
		let stream = Streams::<T>::get(pass.stream).ok_or(ClaimRejection::UnknownStream)?;
		ensure!(
			stream.closed_in_epoch.is_none_or(|closed| pass.epoch <= closed),
			ClaimRejection::StreamClosed
		);
		let origin = Origins::<T>::get(&stream.origin).ok_or(ClaimRejection::UnknownStream)?;
		ensure!(
			Self::is_authorised(&origin, &pass.issuer, pass.epoch),
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

		// Pay what the escrow covers; unpaid units stay claimable with the same receipt.
		let price = stream.price_per_unit;
		let escrow = Self::escrow_for_epoch(&stream.origin, &origin, pass.epoch, ctx.now);
		let units = if price.is_zero() {
			payable
		} else {
			let affordable: u128 = (escrow / price).saturated_into();
			payable.min(affordable.saturated_into())
		};
		if units < payable {
			Self::deposit_event(Event::EscrowExhausted {
				origin: stream.origin.clone(),
				stream: pass.stream,
				unpaid_units: payable - units,
			});
		}
		ensure!(units > 0, ClaimRejection::EscrowExhausted);
		let amount = price.saturating_mul(units.saturated_into());

		if !amount.is_zero() {
			T::Currency::transfer_on_hold(
				&HoldReason::Escrow.into(),
				&stream.origin,
				&Self::account_id(),
				amount,
				Precision::Exact,
				Restriction::Free,
				Fortitude::Polite,
			)
			.map_err(|e| {
				log::warn!(target: LOG_TARGET, "escrow transfer failed: {:?}", e);
				ClaimRejection::EscrowExhausted
			})?;
		}
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

	/// Removes claim bookkeeping of epochs whose claim window has closed, within
	/// `remaining_weight` and [`MAX_PRUNE_PER_BLOCK`]. Returns the weight used.
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
		if done {
			NextEpochToPrune::<T>::put(epoch.saturating_add(1));
			Self::deposit_event(Event::EpochPruned { epoch });
		}
		base.saturating_add(per_item.saturating_mul(used.max(1) as u64))
			.saturating_add(db.writes(1))
	}
}
