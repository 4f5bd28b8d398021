//! # DSP pallet
//!
//! The on-chain half of the Dynamic Streaming Protocol: who publishes (origins), what is
//! published (streams), who serves it (streamers and their capacity settings), and what viewers
//! who relay to other viewers are owed (credits).
//!
//! ## Overview
//!
//! - **Origins** register a segment-signing key and a bounded set of *pass signers*: keys of
//!   streamer nodes allowed to admit viewers in P2P mode on their behalf. An origin funds an
//!   escrow, a balance held on its own account, and commits parts of it to its streams.
//! - **Streams** belong to an origin and fix, for good, the price per relayed unit, the most
//!   units paid per viewer and epoch, and the most paid per epoch (`epoch_budget`).
//! - **Streamers** announce endpoints and may set their own capacity settings (`max_streams`
//!   and the dynamic streaming rate `r`); otherwise the chain-wide default applies. The P2P
//!   threshold is `floor(max_streams * (1 - r))` ([`CapacitySettings::p2p_threshold`]).
//! - **Credits**: a seeder claims with a batch of (viewer pass, cumulative viewer receipt). The
//!   pallet verifies both signatures, the domain tags and the genesis hash, pays only the increase
//!   over what that seeder already claimed for that viewer and epoch, caps the viewer's total by
//!   the pass and by the stream, and pays out of the stream's budget for that epoch, carved from
//!   the escrow the origin committed to the stream. Nothing is minted. Invalid items are skipped
//!   and reported, not fatal to the batch. The seeder withdraws credits as free balance.
//!
//! Time is counted in *epochs* of [`Config::EpochLength`] blocks. Claims for an epoch are
//! accepted until [`Config::ClaimWindow`] epochs after it; the bookkeeping of older epochs is
//! pruned in bounded steps in `on_idle`. What an origin commits, when it gets it back, what each
//! role can do and what bounds it are below.
//!
//! ## Interface
//!
//! Origins: [`Pallet::register_origin`], [`Pallet::update_origin`], [`Pallet::retire_origin`],
//! [`Pallet::fund_escrow`], [`Pallet::request_escrow_withdrawal`], [`Pallet::withdraw_escrow`],
//! [`Pallet::create_stream`], [`Pallet::fund_stream`], [`Pallet::close_stream`],
//! [`Pallet::release_stream_escrow`].
//!
//! Streamers: [`Pallet::register_streamer`], [`Pallet::update_streamer_endpoints`],
//! [`Pallet::set_streamer_settings`], [`Pallet::unregister_streamer`].
//!
//! Governance: [`Pallet::set_default_settings`].
//!
//! Seeders: [`Pallet::claim`], [`Pallet::withdraw_credits`].
//!
#![doc = include_str!("../CREDITS.md")]
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub use pallet::*;

mod api;
mod claims;
mod escrow;
mod genesis;
mod helpers;
pub mod migrations;
mod origins;
pub mod types;
pub mod weights;

#[cfg(test)]
mod attack_tests;
#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use dsp_primitives::{
	AccountBytes, CapacitySettings, ClaimItem, ClaimRejection, EndpointsView, EpochIndex,
	PublicKey, Signable, Signed, StreamId, Units,
};
pub use types::*;
pub use weights::WeightInfo;

/// Log target of the pallet's log lines.
pub const LOG_TARGET: &str = "runtime::dsp";

#[frame_support::pallet]
pub mod pallet {
	use super::*;
	use alloc::vec::Vec;
	use frame_support::{
		pallet_prelude::*,
		traits::{
			fungible::{Inspect, Mutate, MutateHold},
			tokens::Preservation,
		},
		PalletId,
	};
	use frame_system::pallet_prelude::*;
	use sp_runtime::traits::{Saturating, Zero};

	/// Balance type of the currency that escrows and credits are paid in.
	pub type BalanceOf<T> =
		<<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;
	/// Stored origin record.
	pub type OriginInfoOf<T> = OriginInfo<
		BalanceOf<T>,
		BlockNumberFor<T>,
		<T as Config>::MaxPassSigners,
		<T as Config>::MaxMetadataLen,
	>;
	/// Stored stream record.
	pub type StreamInfoOf<T> = StreamInfo<<T as frame_system::Config>::AccountId, BalanceOf<T>>;
	/// Stored streamer record.
	pub type StreamerInfoOf<T> = StreamerInfo<BalanceOf<T>, <T as Config>::MaxEndpointLen>;

	/// Most bookkeeping entries `on_idle` removes in one block, whatever weight is left: keeps
	/// one idle block's proof size small even on an empty chain.
	pub const MAX_PRUNE_PER_BLOCK: u32 = 2_000;

	/// The in-code storage version. Raise it, with a migration, when a stored layout changes.
	/// Version 1: per-stream committed escrow and epoch budgets, revocations in their own map
	/// ([`crate::migrations::v1`]).
	pub const STORAGE_VERSION: StorageVersion = StorageVersion::new(1);

	#[pallet::pallet]
	#[pallet::storage_version(STORAGE_VERSION)]
	pub struct Pallet<T>(_);

	#[pallet::config]
	pub trait Config:
		frame_system::Config<AccountId: From<AccountBytes> + Into<AccountBytes>>
	{
		/// Currency of escrows, deposits and credits.
		type Currency: Inspect<Self::AccountId>
			+ Mutate<Self::AccountId>
			+ MutateHold<Self::AccountId, Reason = Self::RuntimeHoldReason>;

		/// The overarching hold reason.
		type RuntimeHoldReason: From<HoldReason>;

		/// Who may change the chain-wide default capacity settings.
		type SettingsOrigin: EnsureOrigin<Self::RuntimeOrigin>;

		/// Id of the pallet account that holds earned, not yet withdrawn credits and the escrow
		/// origins committed to their streams.
		#[pallet::constant]
		type PalletId: Get<PalletId>;

		/// Blocks per credit epoch.
		#[pallet::constant]
		type EpochLength: Get<BlockNumberFor<Self>>;

		/// Epochs after an epoch during which its receipts can still be claimed.
		#[pallet::constant]
		type ClaimWindow: Get<EpochIndex>;

		/// Extra blocks, beyond the claim window, before a requested escrow withdrawal executes.
		#[pallet::constant]
		type EscrowFreeze: Get<BlockNumberFor<Self>>;

		/// Deposit held while an origin is registered.
		#[pallet::constant]
		type OriginDeposit: Get<BalanceOf<Self>>;

		/// Deposit held on the origin while a stream is open.
		#[pallet::constant]
		type StreamDeposit: Get<BalanceOf<Self>>;

		/// Deposit held while a streamer is registered.
		#[pallet::constant]
		type StreamerDeposit: Get<BalanceOf<Self>>;

		/// Most pass signers an origin may authorise.
		#[pallet::constant]
		type MaxPassSigners: Get<u32>;

		/// Most bytes of origin metadata.
		#[pallet::constant]
		type MaxMetadataLen: Get<u32>;

		/// Most bytes of one streamer endpoint.
		#[pallet::constant]
		type MaxEndpointLen: Get<u32>;

		/// Most items in one claim.
		#[pallet::constant]
		type MaxClaimBatch: Get<u32>;

		/// Most open streams per origin.
		#[pallet::constant]
		type MaxStreamsPerOrigin: Get<u32>;

		/// Weights of this pallet's calls.
		type WeightInfo: WeightInfo;
	}

	/// Why this pallet holds funds.
	#[pallet::composite_enum]
	pub enum HoldReason {
		/// An origin's escrow, from which credits are paid.
		#[codec(index = 0)]
		Escrow,
		/// A registration deposit (origin, stream or streamer).
		#[codec(index = 1)]
		Deposit,
	}

	/// Registered origins.
	#[pallet::storage]
	pub type Origins<T: Config> = StorageMap<_, Blake2_128Concat, T::AccountId, OriginInfoOf<T>>;

	/// Registered streams, open and closed.
	#[pallet::storage]
	pub type Streams<T: Config> = StorageMap<_, Twox64Concat, StreamId, StreamInfoOf<T>>;

	/// Id the next stream gets.
	#[pallet::storage]
	pub type NextStreamId<T: Config> = StorageValue<_, StreamId, ValueQuery>;

	/// Registered streamers.
	#[pallet::storage]
	pub type Streamers<T: Config> =
		StorageMap<_, Blake2_128Concat, T::AccountId, StreamerInfoOf<T>>;

	/// Capacity settings of streamers that have none of their own.
	#[pallet::storage]
	pub type DefaultSettings<T: Config> =
		StorageValue<_, CapacitySettings, ValueQuery, DefaultCapacity>;

	/// The specification's default: 2000 direct sessions, `r = 0`.
	#[pallet::type_value]
	pub fn DefaultCapacity() -> CapacitySettings {
		CapacitySettings::spec_default()
	}

	/// Units already paid to a seeder for a viewer: (epoch, stream, viewer, seeder) → units.
	#[pallet::storage]
	pub type ClaimedUnits<T: Config> = StorageNMap<
		_,
		(
			NMapKey<Twox64Concat, EpochIndex>,
			NMapKey<Twox64Concat, StreamId>,
			NMapKey<Blake2_128Concat, PublicKey>,
			NMapKey<Blake2_128Concat, T::AccountId>,
		),
		Units,
		ValueQuery,
	>;

	/// Units already paid for a viewer over all seeders: (epoch, stream, viewer) → units.
	#[pallet::storage]
	pub type ViewerEpochUnits<T: Config> = StorageNMap<
		_,
		(
			NMapKey<Twox64Concat, EpochIndex>,
			NMapKey<Twox64Concat, StreamId>,
			NMapKey<Blake2_128Concat, PublicKey>,
		),
		Units,
		ValueQuery,
	>;

	/// Oldest epoch whose claim bookkeeping may still exist.
	#[pallet::storage]
	pub type NextEpochToPrune<T: Config> = StorageValue<_, EpochIndex, ValueQuery>;

	/// Pass signers an origin removed: (origin, key) → the last epoch whose passes by that key
	/// are still paid (the epoch it was removed in). Removed when that epoch is pruned, or when
	/// the origin authorises the key again.
	#[pallet::storage]
	pub type RevokedSigners<T: Config> = StorageDoubleMap<
		_,
		Blake2_128Concat,
		T::AccountId,
		Blake2_128Concat,
		PublicKey,
		EpochIndex,
	>;

	/// When each revocation expires: (epoch, origin, key), pruned with the epoch's claim
	/// bookkeeping, so that [`RevokedSigners`] holds only revocations that still matter.
	#[pallet::storage]
	pub type RevocationExpiry<T: Config> = StorageNMap<
		_,
		(
			NMapKey<Twox64Concat, EpochIndex>,
			NMapKey<Blake2_128Concat, T::AccountId>,
			NMapKey<Blake2_128Concat, PublicKey>,
		),
		(),
	>;

	/// Credits of each seeder.
	#[pallet::storage]
	pub type Credits<T: Config> =
		StorageMap<_, Blake2_128Concat, T::AccountId, CreditLedger<BalanceOf<T>>, ValueQuery>;

	#[pallet::event]
	#[pallet::generate_deposit(pub(super) fn deposit_event)]
	pub enum Event<T: Config> {
		/// An origin registered.
		OriginRegistered { origin: T::AccountId },
		/// An origin changed its keys or metadata.
		OriginUpdated { origin: T::AccountId },
		/// An origin retired; its remaining escrow unlocks at `escrow_unlocks_at`.
		OriginRetired { origin: T::AccountId, escrow_unlocks_at: BlockNumberFor<T> },
		/// A retired origin withdrew all its escrow and its record was removed.
		OriginRemoved { origin: T::AccountId },
		/// An origin added to its escrow.
		EscrowFunded { origin: T::AccountId, amount: BalanceOf<T>, escrow: BalanceOf<T> },
		/// An origin asked to withdraw escrow; it may execute from `unlocks_at`.
		EscrowWithdrawalRequested {
			origin: T::AccountId,
			amount: BalanceOf<T>,
			unlocks_at: BlockNumberFor<T>,
		},
		/// Escrow returned to the origin's free balance.
		EscrowWithdrawn { origin: T::AccountId, amount: BalanceOf<T> },
		/// A stream was created.
		StreamCreated { stream: StreamId, origin: T::AccountId },
		/// A stream was closed.
		StreamClosed { stream: StreamId },
		/// An origin committed `amount` of its escrow to a stream; `committed` is the stream's
		/// whole commitment now.
		StreamFunded { stream: StreamId, amount: BalanceOf<T>, committed: BalanceOf<T> },
		/// A closed stream's remaining commitment went back to its origin's free balance.
		StreamEscrowReleased { stream: StreamId, origin: T::AccountId, amount: BalanceOf<T> },
		/// An origin removed a pass signer; its passes up to `last_paid_epoch` stay payable.
		PassSignerRevoked { origin: T::AccountId, key: PublicKey, last_paid_epoch: EpochIndex },
		/// A streamer registered.
		StreamerRegistered { streamer: T::AccountId },
		/// A streamer changed its endpoints.
		StreamerEndpointsUpdated { streamer: T::AccountId },
		/// A streamer changed its capacity settings (`None`: follows the default).
		StreamerSettingsChanged { streamer: T::AccountId, settings: Option<CapacitySettings> },
		/// A streamer unregistered.
		StreamerUnregistered { streamer: T::AccountId },
		/// The chain-wide default capacity settings changed.
		DefaultSettingsChanged { settings: CapacitySettings },
		/// A claim item paid a seeder.
		Claimed {
			seeder: T::AccountId,
			stream: StreamId,
			epoch: EpochIndex,
			viewer: PublicKey,
			units: Units,
			amount: BalanceOf<T>,
		},
		/// A claim item was skipped; `index` is its position in the batch.
		ClaimItemRejected { seeder: T::AccountId, index: u32, reason: ClaimRejection },
		/// The stream's budget for the claimed epoch could not pay a claim in full;
		/// `unpaid_units` stay claimable should the epoch's budget still allow it.
		EscrowExhausted { origin: T::AccountId, stream: StreamId, unpaid_units: Units },
		/// A claim batch was processed.
		ClaimBatchProcessed {
			seeder: T::AccountId,
			paid_items: u32,
			rejected_items: u32,
			amount: BalanceOf<T>,
		},
		/// Credits were withdrawn to the seeder's free balance.
		CreditsWithdrawn { account: T::AccountId, amount: BalanceOf<T> },
		/// All claim bookkeeping of `epoch` was removed.
		EpochPruned { epoch: EpochIndex },
	}

	#[pallet::error]
	pub enum Error<T> {
		/// The account is already a registered origin.
		OriginAlreadyRegistered,
		/// The account is not a registered origin.
		OriginNotRegistered,
		/// The origin has retired.
		OriginRetired,
		/// The origin still has open streams.
		OriginHasOpenStreams,
		/// More pass signers than `MaxPassSigners`.
		TooManyPassSigners,
		/// More than `MaxPassSigners` new pass signers added in one epoch (removing signers is
		/// never limited).
		TooManyNewSigners,
		/// The same pass signer is listed twice.
		DuplicatePassSigner,
		/// Metadata longer than `MaxMetadataLen`.
		MetadataTooLong,
		/// The amount must be greater than zero.
		ZeroAmount,
		/// The account's free balance cannot cover the deposit or escrow.
		InsufficientBalance,
		/// The escrow is smaller than the requested withdrawal.
		InsufficientEscrow,
		/// No escrow withdrawal was requested.
		NoPendingWithdrawal,
		/// The escrow withdrawal is not unlocked yet.
		WithdrawalLocked,
		/// The escrow withdrawal was not executed within an epoch of unlocking; request again.
		WithdrawalExpired,
		/// The origin already has `MaxStreamsPerOrigin` open streams.
		TooManyStreams,
		/// No stream has this id.
		UnknownStream,
		/// The stream belongs to another origin.
		NotStreamOwner,
		/// The stream is already closed.
		StreamClosed,
		/// Bitrate, per-viewer cap and epoch budget must be greater than zero.
		InvalidStreamParameters,
		/// The stream is open, or claims for its last epoch are still accepted.
		StreamStillClaimable,
		/// The account is already a registered streamer.
		StreamerAlreadyRegistered,
		/// The account is not a registered streamer.
		StreamerNotRegistered,
		/// An endpoint is longer than `MaxEndpointLen`.
		EndpointTooLong,
		/// `max_streams` must be at least 1.
		InvalidSettings,
		/// The claim has no items.
		EmptyBatch,
		/// The claim has more than `MaxClaimBatch` items.
		BatchTooLarge,
		/// The account has fewer credits than it asked to withdraw.
		InsufficientCredits,
	}

	#[pallet::genesis_config]
	#[derive(frame_support::DefaultNoBound)]
	pub struct GenesisConfig<T: Config> {
		/// Chain-wide default capacity settings.
		pub default_settings: CapacitySettings,
		/// Origins: (account, signing key, pass signers, escrow, metadata). No deposit is taken.
		pub origins: Vec<(T::AccountId, PublicKey, Vec<PublicKey>, BalanceOf<T>, Vec<u8>)>,
		/// Streams, given ids 0, 1, … in order: (origin, bitrate kbit/s, price per unit, cap,
		/// epoch budget, commitment). The commitment is taken from the origin's free balance.
		pub streams: Vec<(T::AccountId, u32, BalanceOf<T>, Units, BalanceOf<T>, BalanceOf<T>)>,
		/// Streamers: (account, endpoints, own settings). No deposit is taken.
		pub streamers: Vec<(T::AccountId, EndpointsView, Option<CapacitySettings>)>,
	}

	#[pallet::genesis_build]
	impl<T: Config> BuildGenesisConfig for GenesisConfig<T> {
		fn build(&self) {
			self.write_storage();
		}
	}

	#[pallet::hooks]
	impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
		fn on_idle(_n: BlockNumberFor<T>, remaining_weight: Weight) -> Weight {
			Self::prune_finished_epochs(remaining_weight)
		}

		fn integrity_test() {
			assert!(!T::EpochLength::get().is_zero(), "EpochLength must be > 0");
			assert!(T::MaxClaimBatch::get() > 0, "MaxClaimBatch must be > 0");
			assert!(
				T::ClaimWindow::get() < MAX_CARVED_EPOCHS,
				"every claimable epoch of a stream must fit in its carved budgets"
			);
		}
	}

	#[pallet::call]
	impl<T: Config> Pallet<T> {
		/// Register the caller as an origin (content provider).
		///
		/// The origin must be signed. Holds [`Config::OriginDeposit`] until the origin retires.
		///
		/// - `signing_key`: key that signs segment headers.
		/// - `pass_signers`: keys allowed to sign viewer passes (at most `MaxPassSigners`, unique).
		/// - `metadata`: free-form description (at most `MaxMetadataLen` bytes).
		///
		/// ## Complexity
		/// - O(S) where S is the number of pass signers (duplicate check on a sorted copy).
		#[pallet::call_index(0)]
		#[pallet::weight(T::WeightInfo::register_origin())]
		pub fn register_origin(
			origin: OriginFor<T>,
			signing_key: PublicKey,
			pass_signers: Vec<PublicKey>,
			metadata: Vec<u8>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			ensure!(!Origins::<T>::contains_key(&who), Error::<T>::OriginAlreadyRegistered);
			let pass_signers = Self::bounded_signers(pass_signers)?;
			let metadata: BoundedVec<_, _> =
				metadata.try_into().map_err(|_| Error::<T>::MetadataTooLong)?;
			let deposit = T::OriginDeposit::get();
			Self::hold(HoldReason::Deposit, &who, deposit)?;

			Origins::<T>::insert(
				&who,
				OriginInfo {
					signing_key,
					pass_signers,
					signers_added: (Self::current_epoch(), 0),
					metadata,
					deposit,
					open_streams: 0,
					pending_withdrawal: None,
					retired_at: None,
				},
			);
			Self::deposit_event(Event::OriginRegistered { origin: who });
			Ok(())
		}

		/// Change an origin's signing key, pass signers or metadata. `None` keeps a field.
		///
		/// Removing a pass signer always succeeds: its passes of the current and earlier epochs
		/// stay payable, those of later epochs are refused. Adding keys is limited to
		/// `MaxPassSigners` new keys per epoch, which bounds the revocations kept at once.
		///
		/// The origin must be signed by a registered, not retired origin.
		///
		/// - `signing_key`: new segment signing key.
		/// - `pass_signers`: new set of pass signers (replaces the old set).
		/// - `metadata`: new metadata.
		///
		/// ## Complexity
		/// - O(S) where S is the number of pass signers; one revocation written per removed key.
		#[pallet::call_index(1)]
		#[pallet::weight(T::WeightInfo::update_origin().saturating_add(
			// Not in the generated weight yet. Worst case, a full set replaced by a full new
			// set: per key a revocation and its expiry written for the removed key and a
			// revocation lifted for the added one, so three writes per key.
			T::DbWeight::get().writes(3 * T::MaxPassSigners::get() as u64)
		))]
		pub fn update_origin(
			origin: OriginFor<T>,
			signing_key: Option<PublicKey>,
			pass_signers: Option<Vec<PublicKey>>,
			metadata: Option<Vec<u8>>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let mut info = Origins::<T>::get(&who).ok_or(Error::<T>::OriginNotRegistered)?;
			ensure!(info.retired_at.is_none(), Error::<T>::OriginRetired);
			let pass_signers = pass_signers.map(Self::bounded_signers).transpose()?;
			let metadata = metadata
				.map(|m| BoundedVec::try_from(m).map_err(|_| Error::<T>::MetadataTooLong))
				.transpose()?;

			if let Some(key) = signing_key {
				info.signing_key = key;
			}
			if let Some(signers) = pass_signers {
				Self::rotate_signers(&who, &mut info, signers)?;
			}
			if let Some(metadata) = metadata {
				info.metadata = metadata;
			}
			Origins::<T>::insert(&who, info);
			Self::deposit_event(Event::OriginUpdated { origin: who });
			Ok(())
		}

		/// Retire an origin: no new streams or escrow; the deposit is returned and the whole
		/// remaining escrow is scheduled for withdrawal after the claim window and the freeze.
		///
		/// The origin must be signed by a registered origin with no open streams.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(2)]
		#[pallet::weight(T::WeightInfo::retire_origin())]
		pub fn retire_origin(origin: OriginFor<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_retire_origin(who)
		}

		/// Add to the caller's escrow (held on its own account).
		///
		/// The origin must be signed by a registered, not retired origin.
		///
		/// - `amount`: balance to move from free to held; greater than zero.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(3)]
		#[pallet::weight(T::WeightInfo::fund_escrow())]
		pub fn fund_escrow(
			origin: OriginFor<T>,
			#[pallet::compact] amount: BalanceOf<T>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
			let info = Origins::<T>::get(&who).ok_or(Error::<T>::OriginNotRegistered)?;
			ensure!(info.retired_at.is_none(), Error::<T>::OriginRetired);
			Self::hold(HoldReason::Escrow, &who, amount)?;
			Self::deposit_event(Event::EscrowFunded {
				origin: who.clone(),
				amount,
				escrow: Self::escrow_of(&who),
			});
			Ok(())
		}

		/// Ask to withdraw (uncommitted) escrow. It executes with [`Pallet::withdraw_escrow`]
		/// once the claim window and the freeze have passed, and within one epoch after that; a
		/// new request replaces a pending one and restarts the wait. Claims are paid only from
		/// stream commitments, never from this escrow, so a withdrawal cannot take what served
		/// traffic is owed; a pending request tells streamers to stop issuing passes
		/// (`StreamView::passes_open`).
		///
		/// The origin must be signed by a registered, not retired origin.
		///
		/// - `amount`: at most the current escrow; greater than zero.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(4)]
		#[pallet::weight(T::WeightInfo::request_escrow_withdrawal())]
		pub fn request_escrow_withdrawal(
			origin: OriginFor<T>,
			#[pallet::compact] amount: BalanceOf<T>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_request_escrow_withdrawal(who, amount)
		}

		/// Execute a requested escrow withdrawal whose lock has passed. Releases the requested
		/// amount, or what is left of the escrow if claims took some of it. A retired origin
		/// whose escrow is then empty is removed.
		///
		/// The origin must be signed by a registered origin.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(5)]
		#[pallet::weight(T::WeightInfo::withdraw_escrow())]
		pub fn withdraw_escrow(origin: OriginFor<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_withdraw_escrow(who)
		}

		/// Create a stream owned by the caller. Holds [`Config::StreamDeposit`] while it is open.
		/// Price, caps and budget never change: claims for served traffic are paid on the terms
		/// the passes were issued under. It pays nothing until funded with
		/// [`Pallet::fund_stream`].
		///
		/// The origin must be signed by a registered, not retired origin with fewer than
		/// `MaxStreamsPerOrigin` open streams.
		///
		/// - `bitrate_kbps`: nominal bitrate in kbit/s, greater than zero.
		/// - `price_per_unit`: credit paid per relayed unit.
		/// - `viewer_cap_per_epoch`: most units paid per viewer and epoch, greater than zero.
		/// - `epoch_budget`: most paid for the stream per epoch, greater than zero.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(6)]
		#[pallet::weight(T::WeightInfo::create_stream())]
		pub fn create_stream(
			origin: OriginFor<T>,
			bitrate_kbps: u32,
			price_per_unit: BalanceOf<T>,
			viewer_cap_per_epoch: Units,
			epoch_budget: BalanceOf<T>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_create_stream(
				who,
				bitrate_kbps,
				price_per_unit,
				viewer_cap_per_epoch,
				epoch_budget,
			)
		}

		/// Close a stream: no new viewers; its deposit is returned. Receipts for traffic already
		/// served stay claimable for the claim window, paid from the stream's commitment, which
		/// returns to the origin with [`Pallet::release_stream_escrow`] after that window.
		///
		/// The origin must be signed by the stream's origin.
		///
		/// - `stream`: the stream to close.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(7)]
		#[pallet::weight(T::WeightInfo::close_stream())]
		pub fn close_stream(origin: OriginFor<T>, stream: StreamId) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_close_stream(who, stream)
		}

		/// Register the caller as a streamer. Holds [`Config::StreamerDeposit`].
		///
		/// The origin must be signed.
		///
		/// - `endpoints`: TCP, QUIC, P2P and RPC endpoints, each at most `MaxEndpointLen` bytes.
		/// - `settings`: own capacity settings, or `None` to follow the chain-wide default.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(8)]
		#[pallet::weight(T::WeightInfo::register_streamer())]
		pub fn register_streamer(
			origin: OriginFor<T>,
			endpoints: EndpointsView,
			settings: Option<CapacitySettings>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			ensure!(!Streamers::<T>::contains_key(&who), Error::<T>::StreamerAlreadyRegistered);
			let endpoints =
				Endpoints::try_from_view(endpoints).ok_or(Error::<T>::EndpointTooLong)?;
			if let Some(s) = &settings {
				Self::ensure_valid_settings(s)?;
			}
			let deposit = T::StreamerDeposit::get();
			Self::hold(HoldReason::Deposit, &who, deposit)?;

			Streamers::<T>::insert(&who, StreamerInfo { endpoints, settings, deposit });
			Self::deposit_event(Event::StreamerRegistered { streamer: who });
			Ok(())
		}

		/// Replace a streamer's endpoints.
		///
		/// The origin must be signed by a registered streamer.
		///
		/// - `endpoints`: the new endpoints, each at most `MaxEndpointLen` bytes.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(9)]
		#[pallet::weight(T::WeightInfo::update_streamer_endpoints())]
		pub fn update_streamer_endpoints(
			origin: OriginFor<T>,
			endpoints: EndpointsView,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let mut info = Streamers::<T>::get(&who).ok_or(Error::<T>::StreamerNotRegistered)?;
			info.endpoints =
				Endpoints::try_from_view(endpoints).ok_or(Error::<T>::EndpointTooLong)?;
			Streamers::<T>::insert(&who, info);
			Self::deposit_event(Event::StreamerEndpointsUpdated { streamer: who });
			Ok(())
		}

		/// Set a streamer's own capacity settings (`max_streams`, dynamic streaming rate `r`),
		/// or `None` to follow the chain-wide default. A running node applies the change to new
		/// admissions without restart.
		///
		/// The origin must be signed by a registered streamer.
		///
		/// - `settings`: the new settings; `max_streams` at least 1.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(10)]
		#[pallet::weight(T::WeightInfo::set_streamer_settings())]
		pub fn set_streamer_settings(
			origin: OriginFor<T>,
			settings: Option<CapacitySettings>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let mut info = Streamers::<T>::get(&who).ok_or(Error::<T>::StreamerNotRegistered)?;
			if let Some(s) = &settings {
				Self::ensure_valid_settings(s)?;
			}
			info.settings = settings;
			Streamers::<T>::insert(&who, info);
			Self::deposit_event(Event::StreamerSettingsChanged { streamer: who, settings });
			Ok(())
		}

		/// Unregister the caller as a streamer and return its deposit.
		///
		/// The origin must be signed by a registered streamer.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(11)]
		#[pallet::weight(T::WeightInfo::unregister_streamer())]
		pub fn unregister_streamer(origin: OriginFor<T>) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let info = Streamers::<T>::take(&who).ok_or(Error::<T>::StreamerNotRegistered)?;
			Self::release(HoldReason::Deposit, &who, info.deposit);
			Self::deposit_event(Event::StreamerUnregistered { streamer: who });
			Ok(())
		}

		/// Set the chain-wide default capacity settings.
		///
		/// The origin must be [`Config::SettingsOrigin`] (root on the DSP runtime).
		///
		/// - `settings`: the new default; `max_streams` at least 1.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(12)]
		#[pallet::weight(T::WeightInfo::set_default_settings())]
		pub fn set_default_settings(
			origin: OriginFor<T>,
			settings: CapacitySettings,
		) -> DispatchResult {
			T::SettingsOrigin::ensure_origin(origin)?;
			Self::ensure_valid_settings(&settings)?;
			DefaultSettings::<T>::put(settings);
			Self::deposit_event(Event::DefaultSettingsChanged { settings });
			Ok(())
		}

		/// Claim credits for data relayed to viewers in P2P mode.
		///
		/// The origin must be signed by the seeder named in every receipt. Each item pairs a
		/// viewer pass with the viewer's latest cumulative receipt for this seeder. Items that
		/// fail a check are skipped with a [`Event::ClaimItemRejected`]; the others are paid from
		/// the stream's origin's escrow into the pallet account and credited to the seeder.
		///
		/// - `items`: 1 to `MaxClaimBatch` (pass, receipt) pairs.
		///
		/// ## Complexity
		/// - O(N) in the number of items; each item verifies two sr25519 signatures.
		#[pallet::call_index(13)]
		#[pallet::weight(T::WeightInfo::claim(items.len().min(u32::MAX as usize) as u32))]
		pub fn claim(origin: OriginFor<T>, items: Vec<ClaimItem>) -> DispatchResult {
			let seeder = ensure_signed(origin)?;
			ensure!(!items.is_empty(), Error::<T>::EmptyBatch);
			ensure!(items.len() <= T::MaxClaimBatch::get() as usize, Error::<T>::BatchTooLarge);

			Self::do_claim(seeder, &items);
			Ok(())
		}

		/// Withdraw earned credits to the caller's free balance.
		///
		/// The origin must be signed.
		///
		/// - `amount`: how much to withdraw, or `None` for everything available.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(14)]
		#[pallet::weight(T::WeightInfo::withdraw_credits())]
		pub fn withdraw_credits(
			origin: OriginFor<T>,
			amount: Option<BalanceOf<T>>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			let mut ledger = Credits::<T>::get(&who);
			let amount = amount.unwrap_or(ledger.available);
			ensure!(!amount.is_zero(), Error::<T>::ZeroAmount);
			ensure!(amount <= ledger.available, Error::<T>::InsufficientCredits);

			T::Currency::transfer(&Self::account_id(), &who, amount, Preservation::Preserve)?;
			ledger.available = ledger.available.saturating_sub(amount);
			Credits::<T>::insert(&who, ledger);
			Self::deposit_event(Event::CreditsWithdrawn { account: who, amount });
			Ok(())
		}

		/// Commit escrow to a stream: claims on the stream are paid only from its commitment,
		/// carved into per-epoch budgets of at most `epoch_budget`, oldest epoch first. The
		/// amount moves from the origin's escrow to the pallet account and comes back only
		/// after the stream is closed and its last epoch's claim window is over
		/// ([`Pallet::release_stream_escrow`]). To keep passes payable for every claimable
		/// epoch, keep at least `(ClaimWindow + 1) * epoch_budget` committed.
		///
		/// The origin must be signed by the stream's origin; the stream must be open.
		///
		/// - `stream`: the stream to fund.
		/// - `amount`: escrow to commit, greater than zero and at most the origin's escrow.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(15)]
		#[pallet::weight(T::WeightInfo::fund_escrow().saturating_add(
			// Not in the generated weights yet: the stream record read and written.
			T::DbWeight::get().reads_writes(1, 1)
		))]
		pub fn fund_stream(
			origin: OriginFor<T>,
			stream: StreamId,
			#[pallet::compact] amount: BalanceOf<T>,
		) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_fund_stream(who, stream, amount)
		}

		/// Return a closed stream's remaining commitment to its origin's free balance, once
		/// claims for the epoch it was closed in are no longer accepted.
		///
		/// The origin must be signed by the stream's origin (retired or not).
		///
		/// - `stream`: a closed stream whose last claim window is over.
		///
		/// ## Complexity
		/// - O(1).
		#[pallet::call_index(16)]
		#[pallet::weight(T::WeightInfo::withdraw_credits().saturating_add(
			// Not in the generated weights yet: the stream record read and written.
			T::DbWeight::get().reads_writes(1, 1)
		))]
		pub fn release_stream_escrow(origin: OriginFor<T>, stream: StreamId) -> DispatchResult {
			let who = ensure_signed(origin)?;
			Self::do_release_stream_escrow(who, stream)
		}
	}
}
