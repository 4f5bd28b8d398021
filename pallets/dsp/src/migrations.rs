//! Storage migrations of `pallet-dsp`. Wire [`v1::MigrateV0ToV1`] into the runtime's
//! `Executive` migrations; it runs once, when the stored version is 0.

/// Version 0 → 1: stream commitments and epoch budgets, revocations in their own map.
pub mod v1 {
	use crate::{
		pallet::{Config, Origins, Pallet, RevocationExpiry, RevokedSigners, Streams},
		BalanceOf, OriginInfo, PendingWithdrawal, StreamEscrow, StreamInfo,
	};
	use codec::{Decode, Encode, MaxEncodedLen};
	use dsp_primitives::{EpochIndex, PublicKey, Units};
	use frame_support::{
		migrations::VersionedMigration,
		traits::{Get, UncheckedOnRuntimeUpgrade},
		weights::Weight,
		BoundedVec,
	};
	use frame_system::pallet_prelude::BlockNumberFor;
	use scale_info::TypeInfo;
	use sp_runtime::traits::Bounded;

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
	/// - Streams created before version 1 never stated an epoch budget: they get an unlimited
	///   one and an empty commitment. They pay only what their origin commits to them with
	///   `fund_stream`, and without the per-epoch guarantee; origins should close them and
	///   create new streams.
	pub struct InnerMigrateV0ToV1<T>(core::marker::PhantomData<T>);

	impl<T: Config> UncheckedOnRuntimeUpgrade for InnerMigrateV0ToV1<T> {
		fn on_runtime_upgrade() -> Weight {
			let (mut reads, mut writes) = (0u64, 0u64);
			let current = Pallet::<T>::current_epoch();
			Origins::<T>::translate::<OldOriginInfo<T>, _>(|who, old| {
				reads += 1;
				writes += 1;
				for (key, last) in old.revoked_signers.iter() {
					RevokedSigners::<T>::insert(&who, key, *last);
					RevocationExpiry::<T>::insert((*last, &who, key), ());
					writes += 2;
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
			Streams::<T>::translate::<OldStreamInfo<T::AccountId, BalanceOf<T>>, _>(|_, old| {
				reads += 1;
				writes += 1;
				Some(StreamInfo {
					origin: old.origin,
					bitrate_kbps: old.bitrate_kbps,
					price_per_unit: old.price_per_unit,
					viewer_cap_per_epoch: old.viewer_cap_per_epoch,
					closed_in_epoch: old.closed_in_epoch,
					deposit: old.deposit,
					epoch_budget: BalanceOf::<T>::max_value(),
					escrow: StreamEscrow::starting_at(0),
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
		storage::unhashed,
		traits::{GetStorageVersion, OnRuntimeUpgrade, StorageVersion},
	};
	use sp_core::Pair;

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
			assert_eq!(stream.epoch_budget, Balance::max_value());
			assert_eq!(stream.escrow.total(), 0);
			// Run again: versioned, so it is a no-op.
			MigrateV0ToV1::<Test>::on_runtime_upgrade();
			assert!(Origins::<Test>::get(&who).is_some() && Streams::<Test>::get(4).is_some());
			assert_eq!(RevokedSigners::<Test>::iter().count(), 1);
		});
	}
}
