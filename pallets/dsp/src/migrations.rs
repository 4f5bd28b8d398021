//! Storage migrations of `pallet-dsp`. Wire [`v1::MigrateV0ToV1`] into the runtime's
//! `Executive` migrations; it runs once, when the stored version is 0.

/// Version 0 → 1: stream commitments and epoch budgets, revocations in their own map.
pub mod v1 {
	use crate::{
		pallet::{Config, Origins, Pallet, RevocationExpiry, RevokedSigners, Streams},
		BalanceOf, HoldReason, OriginInfo, PendingWithdrawal, StreamEscrow, StreamInfo, LOG_TARGET,
	};
	use alloc::collections::BTreeMap;
	use codec::{Decode, Encode, MaxEncodedLen};
	use dsp_primitives::{EpochIndex, PublicKey, Units};
	use frame_support::{
		migrations::VersionedMigration,
		storage::unhashed,
		traits::{
			fungible::MutateHold,
			tokens::{Fortitude, Precision, Restriction},
			Get, UncheckedOnRuntimeUpgrade,
		},
		weights::Weight,
		BoundedVec,
	};
	use frame_system::pallet_prelude::BlockNumberFor;
	use scale_info::TypeInfo;
	use sp_runtime::traits::{One, Saturating, Zero};

	/// The version 0 layout of an origin record.
	#[derive(Encode, Decode, TypeInfo, MaxEncodedLen)]
	#[scale_info(skip_type_params(T))]
	pub struct OldOriginInfo<T: Config> {
		/// Key that signs segment headers.
		pub signing_key: PublicKey,
		/// Current pass signers.
		pub pass_signers: BoundedVec<PublicKey, T::MaxPassSigners>,
		/// Removed signers with the last epoch their passes are paid for.
		pub revoked_signers: BoundedVec<(PublicKey, EpochIndex), T::MaxPassSigners>,
		/// Metadata.
		pub metadata: BoundedVec<u8, T::MaxMetadataLen>,
		/// Registration deposit.
		pub deposit: BalanceOf<T>,
		/// Open streams.
		pub open_streams: u32,
		/// A requested escrow withdrawal.
		pub pending_withdrawal: Option<PendingWithdrawal<BalanceOf<T>, BlockNumberFor<T>>>,
		/// Block of retirement.
		pub retired_at: Option<BlockNumberFor<T>>,
	}

	/// The version 0 layout of a stream record.
	#[derive(Encode, Decode, TypeInfo, MaxEncodedLen)]
	pub struct OldStreamInfo<AccountId, Balance> {
		/// Owning origin.
		pub origin: AccountId,
		/// Bitrate, kbit/s.
		pub bitrate_kbps: u32,
		/// Price per unit.
		pub price_per_unit: Balance,
		/// Units paid per viewer and epoch.
		pub viewer_cap_per_epoch: Units,
		/// Epoch of closing.
		pub closed_in_epoch: Option<EpochIndex>,
		/// Stream deposit.
		pub deposit: Balance,
	}

	/// Rewrites origins and streams into the version 1 layout, unversioned (see
	/// [`MigrateV0ToV1`]).
	///
	/// - Each origin's revoked signers move to [`RevokedSigners`] with their expiry, unchanged.
	/// - Version 0 paid every claim out of the origin's escrow. Version 1 pays only out of stream
	///   commitments, so the origin's escrow (less a pending withdrawal's amount) moves into
	///   the commitments of its streams that are still claimable (open, or closed less than a
	///   claim window ago), in equal shares: traffic served before the upgrade stays payable.
	/// - Such a stream's epoch budget is its share over the claimable epochs,
	///   `max(1, share / (ClaimWindow + 1))`, and its carving starts at the oldest claimable
	///   epoch: every epoch still claimable at the upgrade gets an equal part, instead of the
	///   first one claimed taking all. What an epoch leaves unpaid returns to the pool when its
	///   window closes and pays later epochs.
	/// - A stream that gets nothing (its origin had no escrow, or it is no longer claimable)
	///   gets an epoch budget of 0: it pays nothing and issues no passes
	///   (`StreamView::passes_open` is false). A version 0 stream never stated a budget, so
	///   none can be made up for it: its origin closes it and creates a new stream.
	pub struct InnerMigrateV0ToV1<T>(core::marker::PhantomData<T>);

	impl<T: Config> UncheckedOnRuntimeUpgrade for InnerMigrateV0ToV1<T> {
		fn on_runtime_upgrade() -> Weight {
			let (mut reads, mut writes) = (0u64, 0u64);
			let current = Pallet::<T>::current_epoch();
			let window = T::ClaimWindow::get();
			let oldest_claimable = current.saturating_sub(window);
			let claimable = |s: &OldStreamInfo<T::AccountId, BalanceOf<T>>| {
				s.closed_in_epoch.is_none_or(|closed| closed.saturating_add(window) >= current)
			};
			// Per origin: what it commits, and to how many streams (read before any rewrite).
			let mut shares: BTreeMap<T::AccountId, (BalanceOf<T>, u32)> = BTreeMap::new();
			for id in Streams::<T>::iter_keys() {
				reads += 1;
				let key = Streams::<T>::hashed_key_for(id);
				let Some(old) = unhashed::get::<OldStreamInfo<T::AccountId, BalanceOf<T>>>(&key)
				else {
					continue;
				};
				if claimable(&old) {
					shares.entry(old.origin.clone()).or_insert((Zero::zero(), 0)).1 += 1;
				}
			}
			Origins::<T>::translate::<OldOriginInfo<T>, _>(|who, old| {
				reads += 2;
				writes += 1;
				for (key, last) in old.revoked_signers.iter() {
					RevokedSigners::<T>::insert(&who, key, *last);
					RevocationExpiry::<T>::insert((*last, &who, key), ());
					writes += 2;
				}
				if let Some(share) = shares.get_mut(&who) {
					let pending =
						old.pending_withdrawal.as_ref().map_or(Zero::zero(), |p| p.amount);
					share.0 = Pallet::<T>::escrow_of(&who).saturating_sub(pending);
				}
				Some(OriginInfo {
					signing_key: old.signing_key,
					pass_signers: old.pass_signers,
					signers_added: (current, 0),
					metadata: old.metadata,
					deposit: old.deposit,
					open_streams: old.open_streams,
					pending_withdrawal: old.pending_withdrawal,
					retired_at: old.retired_at,
				})
			});
			let pallet_account = Pallet::<T>::account_id();
			Streams::<T>::translate::<OldStreamInfo<T::AccountId, BalanceOf<T>>, _>(|id, old| {
				reads += 1;
				writes += 1;
				let mut commitment = BalanceOf::<T>::zero();
				if claimable(&old) {
					if let Some((escrow, streams)) = shares.get_mut(&old.origin) {
						// Equal shares; the last stream of the origin takes the remainder.
						let share = if *streams <= 1 {
							*escrow
						} else {
							*escrow / BalanceOf::<T>::from(*streams)
						};
						*streams = streams.saturating_sub(1);
						if !share.is_zero() {
							writes += 3;
							match T::Currency::transfer_on_hold(
								&HoldReason::Escrow.into(),
								&old.origin,
								&pallet_account,
								share,
								Precision::Exact,
								Restriction::Free,
								Fortitude::Polite,
							) {
								Ok(_) => {
									*escrow = escrow.saturating_sub(share);
									commitment = share;
								}
								Err(e) => log::error!(
									target: LOG_TARGET,
									"v0 -> v1: committing {share:?} of {:?}'s escrow to stream {id}: {e:?}",
									old.origin
								),
							}
						}
					}
				}
				let (epoch_budget, escrow) = if commitment.is_zero() {
					(Zero::zero(), StreamEscrow::starting_at(current))
				} else {
					let epochs: BalanceOf<T> = window.saturating_add(1).into();
					let mut escrow = StreamEscrow::starting_at(oldest_claimable);
					escrow.pool = commitment;
					((commitment / epochs).max(One::one()), escrow)
				};
				Some(StreamInfo {
					origin: old.origin,
					bitrate_kbps: old.bitrate_kbps,
					price_per_unit: old.price_per_unit,
					viewer_cap_per_epoch: old.viewer_cap_per_epoch,
					closed_in_epoch: old.closed_in_epoch,
					deposit: old.deposit,
					epoch_budget,
					escrow,
				})
			});
			T::DbWeight::get().reads_writes(reads, writes)
		}
	}

	/// [`InnerMigrateV0ToV1`], run only when the stored version is 0; sets it to 1.
	pub type MigrateV0ToV1<T> = VersionedMigration<
		0,
		1,
		InnerMigrateV0ToV1<T>,
		Pallet<T>,
		<T as frame_system::Config>::DbWeight,
	>;
}

#[cfg(test)]
mod tests {
	use super::v1::{MigrateV0ToV1, OldOriginInfo, OldStreamInfo};
	use crate::{mock::*, pallet::*};
	use frame_support::{
		assert_ok,
		storage::unhashed,
		traits::{fungible::MutateHold, GetStorageVersion, OnRuntimeUpgrade, StorageVersion},
	};
	use sp_core::Pair;

	fn old_origin(pending: Option<Balance>) -> OldOriginInfo<Test> {
		OldOriginInfo::<Test> {
			signing_key: key("Origin").public(),
			pass_signers: vec![key("Issuer").public()].try_into().unwrap(),
			revoked_signers: Default::default(),
			metadata: Default::default(),
			deposit: 0,
			open_streams: 2,
			pending_withdrawal: pending.map(|amount| crate::PendingWithdrawal {
				amount,
				requested_epoch: 0,
				unlocks_at: 1_000,
			}),
			retired_at: None,
		}
	}

	fn old_stream(closed_in_epoch: Option<u32>) -> OldStreamInfo<AccountId, Balance> {
		OldStreamInfo {
			origin: account("Origin"),
			bitrate_kbps: 500,
			price_per_unit: 1,
			viewer_cap_per_epoch: 10_000,
			closed_in_epoch,
			deposit: 0,
		}
	}

	fn claim(seeder: &str, viewer: &str, stream: u64, epoch: u32, units: u64) -> Balance {
		let item =
			item(&key("Issuer"), &key(viewer), &account(seeder), stream, epoch, 10_000, units);
		let before = Credits::<Test>::get(account(seeder)).available;
		assert_ok!(Pallet::<Test>::claim(RuntimeOrigin::signed(account(seeder)), vec![item]));
		Credits::<Test>::get(account(seeder)).available - before
	}

	/// Version 0 paid claims out of the origin's escrow. The migration used to leave every
	/// stream with an empty commitment (traffic served before the upgrade unpayable) and an
	/// unlimited budget carved from epoch 0 (the first funding all went to the oldest epoch
	/// claimed). This test failed on that migration.
	#[test]
	fn v0_escrow_moves_into_the_claimable_streams_and_pays_pre_upgrade_traffic_in_every_epoch() {
		new_test_ext().execute_with(|| {
			StorageVersion::new(0).put::<Pallet<Test>>();
			run_to_block(10 * EPOCH_LENGTH);
			let current = Pallet::<Test>::current_epoch();
			let who = account("Origin");
			// 700 held as escrow, 100 of it asked back: 600 is committed, 300 to each of the
			// two claimable streams (0 open, 1 closed in this epoch); stream 2 closed long ago.
			assert_ok!(<Balances as MutateHold<_>>::hold(&HoldReason::Escrow.into(), &who, 700));
			unhashed::put(&Origins::<Test>::hashed_key_for(&who), &old_origin(Some(100)));
			unhashed::put(&Streams::<Test>::hashed_key_for(0), &old_stream(None));
			unhashed::put(&Streams::<Test>::hashed_key_for(1), &old_stream(Some(current)));
			unhashed::put(&Streams::<Test>::hashed_key_for(2), &old_stream(Some(1)));
			let pallet_before = Balances::free_balance(Pallet::<Test>::account_id());

			MigrateV0ToV1::<Test>::on_runtime_upgrade();

			// Post-upgrade checks: the money moved, nothing was created or lost.
			assert_eq!(Pallet::<Test>::escrow_of(&who), 100, "the pending withdrawal stays");
			let epochs = Balance::from(CLAIM_WINDOW + 1);
			for id in [0, 1] {
				let s = Streams::<Test>::get(id).expect("v1 layout");
				assert_eq!(s.escrow.total(), 300, "stream {id}");
				assert_eq!(s.epoch_budget, 300 / epochs, "stream {id}");
			}
			let gone = Streams::<Test>::get(2).expect("v1 layout");
			assert_eq!((gone.escrow.total(), gone.epoch_budget), (0, 0));
			assert_eq!(Balances::free_balance(Pallet::<Test>::account_id()), pallet_before + 600);

			// Traffic of the oldest claimable epoch, served before the upgrade, is paid up to
			// that epoch's share; so is every later epoch: the first claim took only its own.
			let oldest = current - CLAIM_WINDOW;
			assert_eq!(claim("Seeder", "V1", 0, oldest, 150), 100);
			assert_eq!(claim("Seeder", "V2", 0, oldest + 1, 50), 50);
			assert_eq!(claim("Seeder2", "V3", 0, current, 100), 100);
			assert_eq!(claim("Seeder2", "V4", 1, current, 80), 80);
			let s = Streams::<Test>::get(0).unwrap();
			assert_eq!(s.escrow.total(), 300 - 250);
			assert_eq!(s.escrow.left_for(oldest + 1), 50);
		});
	}

	#[test]
	fn v0_records_are_read_back_in_the_v1_layout() {
		new_test_ext().execute_with(|| {
			StorageVersion::new(0).put::<Pallet<Test>>();
			let who = account("Origin");
			let old_origin = OldOriginInfo::<Test> {
				signing_key: key("Origin").public(),
				pass_signers: vec![key("A").public()].try_into().unwrap(),
				revoked_signers: vec![(key("B").public(), 3)].try_into().unwrap(),
				metadata: b"old".to_vec().try_into().unwrap(),
				deposit: 100,
				open_streams: 1,
				pending_withdrawal: None,
				retired_at: None,
			};
			unhashed::put(&Origins::<Test>::hashed_key_for(&who), &old_origin);
			let old_stream = OldStreamInfo {
				origin: who.clone(),
				bitrate_kbps: 500,
				price_per_unit: 7u64,
				viewer_cap_per_epoch: 1_000,
				closed_in_epoch: Some(2),
				deposit: 10u64,
			};
			unhashed::put(&Streams::<Test>::hashed_key_for(4), &old_stream);

			MigrateV0ToV1::<Test>::on_runtime_upgrade();

			assert_eq!(Pallet::<Test>::on_chain_storage_version(), 1);
			let origin = Origins::<Test>::get(&who).expect("origin decodes in the v1 layout");
			assert_eq!(origin.pass_signers.into_inner(), vec![key("A").public()]);
			assert_eq!((origin.deposit, origin.open_streams), (100, 1));
			assert_eq!(RevokedSigners::<Test>::get(&who, key("B").public()), Some(3));
			assert!(RevocationExpiry::<Test>::contains_key((3, &who, key("B").public())));
			let stream = Streams::<Test>::get(4).expect("stream decodes in the v1 layout");
			assert_eq!((stream.price_per_unit, stream.closed_in_epoch), (7, Some(2)));
			// Its origin had no escrow: nothing committed, no budget, no passes.
			assert_eq!(stream.epoch_budget, 0);
			assert_eq!(stream.escrow.total(), 0);
			// Run again: versioned, so it is a no-op.
			MigrateV0ToV1::<Test>::on_runtime_upgrade();
			assert!(Origins::<Test>::get(&who).is_some() && Streams::<Test>::get(4).is_some());
			assert_eq!(RevokedSigners::<Test>::iter().count(), 1);
		});
	}
}
