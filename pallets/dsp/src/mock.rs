//! Test runtime: system, balances and the DSP pallet, with real sr25519 accounts.

use crate as pallet_dsp;
use dsp_primitives::{
	CapacitySettings, ClaimItem, EpochIndex, Receipt, Signed, StreamId, Units, ViewerPass,
};
use frame_support::{
	derive_impl, parameter_types,
	traits::{ConstU32, ConstU64, Hooks},
	PalletId,
};
use sp_core::{sr25519, Pair};
use sp_keystore::{testing::MemoryKeystore, KeystoreExt};
use sp_runtime::{traits::IdentityLookup, AccountId32, BuildStorage};

pub type AccountId = AccountId32;
pub type Balance = u64;
type Block = frame_system::mocking::MockBlock<Test>;

frame_support::construct_runtime!(
	pub enum Test {
		System: frame_system,
		Balances: pallet_balances,
		Dsp: pallet_dsp,
	}
);

#[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
impl frame_system::Config for Test {
	type Block = Block;
	type AccountId = AccountId;
	type Lookup = IdentityLookup<AccountId>;
	type AccountData = pallet_balances::AccountData<Balance>;
	type DbWeight = frame_support::weights::constants::RocksDbWeight;
}

#[derive_impl(pallet_balances::config_preludes::TestDefaultConfig)]
impl pallet_balances::Config for Test {
	type Balance = Balance;
	type AccountStore = System;
	type ExistentialDeposit = ConstU64<1>;
	type RuntimeHoldReason = RuntimeHoldReason;
}

pub const EPOCH_LENGTH: u64 = 10;
pub const CLAIM_WINDOW: EpochIndex = 2;
pub const ESCROW_FREEZE: u64 = 5;
pub const ORIGIN_DEPOSIT: Balance = 100;
pub const STREAM_DEPOSIT: Balance = 10;
pub const STREAMER_DEPOSIT: Balance = 50;
pub const MAX_PASS_SIGNERS: u32 = 3;
pub const MAX_METADATA_LEN: u32 = 16;
pub const MAX_ENDPOINT_LEN: u32 = 32;
pub const MAX_CLAIM_BATCH: u32 = 8;
pub const MAX_STREAMS_PER_ORIGIN: u32 = 2;

parameter_types! {
	pub const DspPalletId: PalletId = PalletId(*b"dsp/cred");
}

impl pallet_dsp::Config for Test {
	type Currency = Balances;
	type RuntimeHoldReason = RuntimeHoldReason;
	type SettingsOrigin = frame_system::EnsureRoot<AccountId>;
	type PalletId = DspPalletId;
	type EpochLength = ConstU64<EPOCH_LENGTH>;
	type ClaimWindow = ConstU32<CLAIM_WINDOW>;
	type EscrowFreeze = ConstU64<ESCROW_FREEZE>;
	type OriginDeposit = ConstU64<ORIGIN_DEPOSIT>;
	type StreamDeposit = ConstU64<STREAM_DEPOSIT>;
	type StreamerDeposit = ConstU64<STREAMER_DEPOSIT>;
	type MaxPassSigners = ConstU32<MAX_PASS_SIGNERS>;
	type MaxMetadataLen = ConstU32<MAX_METADATA_LEN>;
	type MaxEndpointLen = ConstU32<MAX_ENDPOINT_LEN>;
	type MaxClaimBatch = ConstU32<MAX_CLAIM_BATCH>;
	type MaxStreamsPerOrigin = ConstU32<MAX_STREAMS_PER_ORIGIN>;
	type WeightInfo = ();
}

/// A deterministic sr25519 key pair from a name, e.g. `key("Origin")` = `//Origin`.
pub fn key(name: &str) -> sr25519::Pair {
	sr25519::Pair::from_string(&format!("//{name}"), None).expect("valid derivation path")
}

/// The account of a key pair.
pub fn account(name: &str) -> AccountId {
	key(name).public().into()
}

/// Free balance every named test account starts with.
pub const ENDOWMENT: Balance = 1_000_000;
/// Accounts endowed at genesis.
pub const ENDOWED: [&str; 6] = ["Origin", "Origin2", "Seeder", "Seeder2", "Streamer", "Poor"];

/// Genesis storage of the test runtime.
pub fn genesis_storage() -> sp_runtime::Storage {
	let mut storage = frame_system::GenesisConfig::<Test>::default().build_storage().unwrap();
	pallet_balances::GenesisConfig::<Test> {
		balances: ENDOWED
			.iter()
			.map(|n| (account(n), if *n == "Poor" { 20 } else { ENDOWMENT }))
			.collect(),
		..Default::default()
	}
	.assimilate_storage(&mut storage)
	.unwrap();
	pallet_dsp::GenesisConfig::<Test> {
		default_settings: CapacitySettings::spec_default(),
		..Default::default()
	}
	.assimilate_storage(&mut storage)
	.unwrap();
	storage
}

pub fn new_test_ext() -> sp_io::TestExternalities {
	let mut ext = sp_io::TestExternalities::new(genesis_storage());
	ext.register_extension(KeystoreExt::new(MemoryKeystore::new()));
	ext.execute_with(|| System::set_block_number(1));
	ext
}

/// Advances to block `n`, running `on_idle` with the whole block's weight on each block.
pub fn run_to_block(n: u64) {
	while System::block_number() < n {
		let next = System::block_number() + 1;
		System::set_block_number(next);
		Dsp::on_idle(next, frame_support::weights::Weight::MAX);
	}
}

pub fn genesis_hash() -> [u8; 32] {
	Dsp::genesis_hash()
}

pub fn sign_pass(
	issuer: &sr25519::Pair,
	stream: StreamId,
	epoch: EpochIndex,
	viewer: &sr25519::Pair,
	max_units: Units,
) -> Signed<ViewerPass> {
	Signed::sign(
		ViewerPass {
			genesis_hash: genesis_hash(),
			stream,
			epoch,
			viewer: viewer.public(),
			max_units,
			issuer: issuer.public(),
		},
		issuer,
	)
}

pub fn sign_receipt(
	viewer: &sr25519::Pair,
	stream: StreamId,
	epoch: EpochIndex,
	seeder: &AccountId,
	units: Units,
) -> Signed<Receipt> {
	Signed::sign(
		Receipt {
			genesis_hash: genesis_hash(),
			stream,
			epoch,
			seeder: seeder.clone().into(),
			viewer: viewer.public(),
			units,
		},
		viewer,
	)
}

/// A valid item: pass by `issuer` with `max_units`, receipt by `viewer` for `seeder`.
pub fn item(
	issuer: &sr25519::Pair,
	viewer: &sr25519::Pair,
	seeder: &AccountId,
	stream: StreamId,
	epoch: EpochIndex,
	max_units: Units,
	units: Units,
) -> ClaimItem {
	ClaimItem {
		pass: sign_pass(issuer, stream, epoch, viewer, max_units),
		receipt: sign_receipt(viewer, stream, epoch, seeder, units),
	}
}
