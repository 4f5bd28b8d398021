//! # DSP runtime
//!
//! The state transition function of the DSP chain: a solochain with Aura block production,
//! GRANDPA finality, balances, transaction fees, sudo and `pallet-dsp` (origins, streams,
//! streamers with their capacity settings, escrow and bandwidth credits).
//!
//! Accounts are `AccountId32` derived from `MultiSignature` signers, so polkadot.js, subxt and
//! every other stock Substrate client can sign transactions for it with the standard
//! transaction extensions. Amounts use 12 decimals: [`UNIT`] = 10^12.
//!
//! The node reads `pallet-dsp` through [`dsp_runtime_api::DspApi`], implemented in [`apis`];
//! genesis presets for `development` and `local_testnet` live in [`genesis_config_presets`].

#![cfg_attr(not(feature = "std"), no_std)]
// `construct_runtime`-style macros expand deeply.
#![recursion_limit = "256"]

// `WASM_BINARY` and `WASM_BINARY_BLOATY`, produced by `build.rs`.
#[cfg(feature = "std")]
include!(concat!(env!("OUT_DIR"), "/wasm_binary.rs"));

extern crate alloc;

pub mod apis;
pub mod genesis_config_presets;

use alloc::{borrow::Cow, vec::Vec};
use frame_support::{
	derive_impl,
	dispatch::DispatchClass,
	parameter_types,
	traits::{ConstBool, ConstU128, ConstU32, ConstU64, ConstU8, VariantCountOf},
	weights::{
		constants::{ParityDbWeight, WEIGHT_REF_TIME_PER_SECOND},
		IdentityFee, Weight,
	},
	PalletId,
};
use frame_system::{
	limits::{BlockLength, BlockWeights},
	EnsureRoot,
};
use pallet_transaction_payment::{ConstFeeMultiplier, FungibleAdapter, Multiplier};
use sp_consensus_aura::sr25519::AuthorityId as AuraId;
use sp_runtime::{
	generic, impl_opaque_keys,
	traits::{BlakeTwo256, IdentifyAccount, One, Verify},
	MultiAddress, MultiSignature, Perbill,
};
use sp_version::RuntimeVersion;

pub use frame_system::Call as SystemCall;
pub use pallet_balances::Call as BalancesCall;
pub use pallet_dsp::Call as DspCall;
pub use pallet_timestamp::Call as TimestampCall;
#[cfg(any(feature = "std", test))]
pub use sp_runtime::BuildStorage;

// ---------------------------------------------------------------------------------------------
// Primitive types
// ---------------------------------------------------------------------------------------------

/// Block number: `u32` lasts 800 years at 6 s blocks.
pub type BlockNumber = u32;
/// Transaction signature: sr25519, ed25519 or ecdsa, as stock wallets produce.
pub type Signature = MultiSignature;
/// An account: the 32-byte public key (or its hash, for ecdsa) of a [`Signature`] signer.
pub type AccountId = <<Signature as Verify>::Signer as IdentifyAccount>::AccountId;
/// An amount of the native token, in its smallest unit (10^-12 DSP).
pub type Balance = u128;
/// Number of transactions an account has sent.
pub type Nonce = u32;
/// Block and state hash.
pub type Hash = sp_core::H256;

/// One DSP token: 10^12 of the smallest unit (the token has 12 decimals).
pub const UNIT: Balance = 1_000_000_000_000;
/// 10^-3 DSP.
pub const MILLI_UNIT: Balance = UNIT / 1_000;
/// Smallest balance an account may hold: 0.001 DSP.
pub const EXISTENTIAL_DEPOSIT: Balance = MILLI_UNIT;

/// Target block time of validator networks (Aura slot). `--dev` seals blocks on demand instead.
pub const MILLISECS_PER_BLOCK: u64 = 6_000;
/// Aura slot duration. It cannot change once the chain runs.
pub const SLOT_DURATION: u64 = MILLISECS_PER_BLOCK;
/// Blocks per minute at the target block time.
pub const MINUTES: BlockNumber = 60_000 / (MILLISECS_PER_BLOCK as BlockNumber);
/// Blocks per hour at the target block time.
pub const HOURS: BlockNumber = MINUTES * 60;
/// Blocks per day at the target block time.
pub const DAYS: BlockNumber = HOURS * 24;

/// Types the node needs without knowing the runtime's call and extension types: it handles
/// extrinsics as opaque bytes so it keeps syncing across runtime upgrades.
pub mod opaque {
	use super::*;

	pub use sp_runtime::OpaqueExtrinsic as UncheckedExtrinsic;

	/// Block header.
	pub type Header = generic::Header<BlockNumber, BlakeTwo256>;
	/// Block with opaque extrinsics.
	pub type Block = generic::Block<Header, UncheckedExtrinsic>;
	/// Block identifier.
	pub type BlockId = generic::BlockId<Block>;

	impl_opaque_keys! {
		/// Session keys of a validator: Aura (block production) and GRANDPA (finality).
		pub struct SessionKeys {
			pub aura: Aura,
			pub grandpa: Grandpa,
		}
	}
}

pub use opaque::SessionKeys;

/// Runtime version. Bump `spec_version` on every change of runtime logic and
/// `transaction_version` whenever call indices or extension data change.
#[sp_version::runtime_version]
pub const VERSION: RuntimeVersion = RuntimeVersion {
	spec_name: Cow::Borrowed("dsp"),
	impl_name: Cow::Borrowed("dsp-runtime"),
	authoring_version: 1,
	spec_version: 101,
	impl_version: 1,
	apis: apis::RUNTIME_API_VERSIONS,
	transaction_version: 2,
	system_version: 1,
};

// ---------------------------------------------------------------------------------------------
// Pallet configuration
// ---------------------------------------------------------------------------------------------

/// Share of block weight and length for normal (user) transactions; the rest is reserved for
/// operational ones.
const NORMAL_DISPATCH_RATIO: Perbill = Perbill::from_percent(75);

parameter_types! {
	pub const BlockHashCount: BlockNumber = 2400;
	pub const Version: RuntimeVersion = VERSION;
	/// 2 s of compute per 6 s block.
	pub RuntimeBlockWeights: BlockWeights = BlockWeights::with_sensible_defaults(
		Weight::from_parts(2u64 * WEIGHT_REF_TIME_PER_SECOND, u64::MAX),
		NORMAL_DISPATCH_RATIO,
	);
	/// 5 MiB blocks, of which normal transactions may fill `NORMAL_DISPATCH_RATIO`.
	pub RuntimeBlockLength: BlockLength = BlockLength::builder()
		.max_length(5 * 1024 * 1024)
		.modify_max_length_for_class(DispatchClass::Normal, |max| {
			*max = NORMAL_DISPATCH_RATIO * *max
		})
		.build();
	/// Generic Substrate address prefix.
	pub const SS58Prefix: u16 = 42;
}

#[derive_impl(frame_system::config_preludes::SolochainDefaultConfig)]
impl frame_system::Config for Runtime {
	type Block = Block;
	type BlockWeights = RuntimeBlockWeights;
	type BlockLength = RuntimeBlockLength;
	type AccountId = AccountId;
	type Nonce = Nonce;
	type Hash = Hash;
	type BlockHashCount = BlockHashCount;
	/// The node stores state in ParityDb (RocksDB is not built).
	type DbWeight = ParityDbWeight;
	type Version = Version;
	type AccountData = pallet_balances::AccountData<Balance>;
	type SS58Prefix = SS58Prefix;
	type MaxConsumers = ConstU32<16>;
}

impl pallet_timestamp::Config for Runtime {
	/// Milliseconds since the Unix epoch.
	type Moment = u64;
	type OnTimestampSet = Aura;
	type MinimumPeriod = ConstU64<{ SLOT_DURATION / 2 }>;
	type WeightInfo = ();
}

impl pallet_aura::Config for Runtime {
	type AuthorityId = AuraId;
	type DisabledValidators = ();
	type MaxAuthorities = ConstU32<32>;
	type AllowMultipleBlocksPerSlot = ConstBool<false>;
	type SlotDuration = pallet_aura::MinimumPeriodTimesTwo<Runtime>;
}

impl pallet_grandpa::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type WeightInfo = ();
	type MaxAuthorities = ConstU32<32>;
	type MaxNominators = ConstU32<0>;
	type MaxSetIdSessionEntries = ConstU64<0>;
	// No session pallet, hence no key-ownership proofs and no equivocation reports.
	type KeyOwnerProof = sp_core::Void;
	type EquivocationReportSystem = ();
}

impl pallet_balances::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type RuntimeHoldReason = RuntimeHoldReason;
	type RuntimeFreezeReason = RuntimeFreezeReason;
	type WeightInfo = pallet_balances::weights::SubstrateWeight<Runtime>;
	type Balance = Balance;
	type DustRemoval = ();
	type ExistentialDeposit = ConstU128<EXISTENTIAL_DEPOSIT>;
	type AccountStore = System;
	type ReserveIdentifier = [u8; 8];
	type FreezeIdentifier = RuntimeFreezeReason;
	type MaxLocks = ConstU32<50>;
	type MaxReserves = ConstU32<0>;
	type MaxFreezes = VariantCountOf<RuntimeFreezeReason>;
	type DoneSlashHandler = ();
}

parameter_types! {
	/// Fees do not follow congestion: a constant multiplier of 1.
	pub FeeMultiplier: Multiplier = Multiplier::one();
}

impl pallet_transaction_payment::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	/// Fees are burned (dropped imbalance).
	type OnChargeTransaction = FungibleAdapter<Balances, ()>;
	type OperationalFeeMultiplier = ConstU8<5>;
	/// One smallest unit per picosecond of reference time: a transfer costs about 0.0002 DSP.
	type WeightToFee = IdentityFee<Balance>;
	type LengthToFee = IdentityFee<Balance>;
	type FeeMultiplierUpdate = ConstFeeMultiplier<FeeMultiplier>;
	type WeightInfo = pallet_transaction_payment::weights::SubstrateWeight<Runtime>;
}

impl pallet_sudo::Config for Runtime {
	type RuntimeEvent = RuntimeEvent;
	type RuntimeCall = RuntimeCall;
	type WeightInfo = pallet_sudo::weights::SubstrateWeight<Runtime>;
}

parameter_types! {
	/// Account that holds earned credits until seeders withdraw them.
	pub const DspPalletId: PalletId = PalletId(*b"dsp/cred");
}

impl pallet_dsp::Config for Runtime {
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type SettingsOrigin = EnsureRoot<AccountId>;
	type PalletId = DspPalletId;
	/// One hour at 6 s blocks.
	type EpochLength = ConstU32<600>;
	/// Claims for an epoch stay open for 24 epochs (a day at 6 s blocks).
	type ClaimWindow = ConstU32<24>;
	type EscrowFreeze = ConstU32<600>;
	type OriginDeposit = ConstU128<{ 10 * UNIT }>;
	type StreamDeposit = ConstU128<{ UNIT }>;
	type StreamerDeposit = ConstU128<{ 10 * UNIT }>;
	type MaxPassSigners = ConstU32<16>;
	type MaxMetadataLen = ConstU32<256>;
	type MaxEndpointLen = ConstU32<128>;
	type MaxClaimBatch = ConstU32<1024>;
	type MaxStreamsPerOrigin = ConstU32<64>;
	type WeightInfo = pallet_dsp::weights::SubstrateWeight<Runtime>;
}

// ---------------------------------------------------------------------------------------------
// Runtime composition
// ---------------------------------------------------------------------------------------------

#[frame_support::runtime]
mod runtime {
	#[runtime::runtime]
	#[runtime::derive(
		RuntimeCall,
		RuntimeEvent,
		RuntimeError,
		RuntimeOrigin,
		RuntimeFreezeReason,
		RuntimeHoldReason,
		RuntimeSlashReason,
		RuntimeLockId,
		RuntimeTask,
		RuntimeViewFunction
	)]
	pub struct Runtime;

	#[runtime::pallet_index(0)]
	pub type System = frame_system;

	#[runtime::pallet_index(1)]
	pub type Timestamp = pallet_timestamp;

	#[runtime::pallet_index(2)]
	pub type Aura = pallet_aura;

	#[runtime::pallet_index(3)]
	pub type Grandpa = pallet_grandpa;

	#[runtime::pallet_index(4)]
	pub type Balances = pallet_balances;

	#[runtime::pallet_index(5)]
	pub type TransactionPayment = pallet_transaction_payment;

	#[runtime::pallet_index(6)]
	pub type Sudo = pallet_sudo;

	// After Balances: its genesis holds escrow from balances that must already exist.
	#[runtime::pallet_index(7)]
	pub type Dsp = pallet_dsp;
}

/// How a transaction names its sender: an `AccountId` (or index, which this runtime lacks).
pub type Address = MultiAddress<AccountId, ()>;
/// Block header.
pub type Header = generic::Header<BlockNumber, BlakeTwo256>;
/// Block with typed extrinsics.
pub type Block = generic::Block<Header, UncheckedExtrinsic>;

/// Transaction extensions, in the order (and with the data) stock clients expect.
pub type TxExtension = (
	frame_system::CheckNonZeroSender<Runtime>,
	frame_system::CheckSpecVersion<Runtime>,
	frame_system::CheckTxVersion<Runtime>,
	frame_system::CheckGenesis<Runtime>,
	frame_system::CheckEra<Runtime>,
	frame_system::CheckNonce<Runtime>,
	frame_system::CheckWeight<Runtime>,
	pallet_transaction_payment::ChargeTransactionPayment<Runtime>,
	frame_metadata_hash_extension::CheckMetadataHash<Runtime>,
);

/// Extrinsic as it travels on the wire and in blocks.
pub type UncheckedExtrinsic =
	generic::UncheckedExtrinsic<Address, RuntimeCall, Signature, TxExtension>;
/// What a sender signs.
pub type SignedPayload = generic::SignedPayload<RuntimeCall, TxExtension>;

/// Migrations to run on the next runtime upgrade, besides the pallets' own. Each is versioned:
/// it runs only while the pallet's stored version is the one it migrates from.
#[allow(unused_parens)]
type Migrations = (pallet_dsp::migrations::v1::MigrateV0ToV1<Runtime>,);

/// Dispatches blocks and extrinsics to the pallets.
pub type Executive = frame_executive::Executive<
	Runtime,
	Block,
	frame_system::ChainContext<Runtime>,
	Runtime,
	AllPalletsWithSystem,
	Migrations,
>;

#[cfg(feature = "runtime-benchmarks")]
impl frame_system_benchmarking::Config for Runtime {}

#[cfg(feature = "runtime-benchmarks")]
mod benches {
	frame_benchmarking::define_benchmarks!(
		[frame_system, SystemBench::<Runtime>]
		[pallet_balances, Balances]
		[pallet_timestamp, Timestamp]
		[pallet_sudo, Sudo]
		[pallet_dsp, Dsp]
	);
}
