//! Receipts, sans-IO: the viewer's [`ReceiptBook`] (what it received from whom, signed as
//! cumulative receipts) and the seeder's [`SeederLedger`] (passes and latest receipts per viewer,
//! the serve/stop decision, its persisted form as bytes, and claim batches for the chain). The
//! ledger file on disk (atomic save, load) is the driver [`crate::net::ledger_file`].
//!
//! Both sides use the shared primitives ([`Receipt`], [`ViewerPass`], [`Signed`]) and
//! [`Signed::verify`], so what the seeder accepts here is what `pallet-dsp` pays: [`verify_item`]
//! makes the pallet's off-chain checkable tests in the pallet's order and returns the pallet's
//! [`ClaimRejection`].
//!
//! Units are [`UNIT_BYTES`] (1 KiB). A viewer signs `floor(bytes / UNIT_BYTES)`; a seeder counts
//! served units as `ceil(bytes / UNIT_BYTES)` when deciding whether receipts lag, so rounding
//! never cuts an honest viewer off (the slack covers more than one unit).

use codec::{Decode, DecodeAll, Encode};
use dsp_primitives::{
	AccountBytes, ClaimItem, ClaimRejection, EpochIndex, Hash32, PublicKey, Receipt, Signed,
	StreamId, Units, ViewerPass, UNIT_BYTES,
};
use std::{
	collections::{BTreeMap, HashMap},
	io,
};

/// Default [`BookConfig::max_seeders`]: 256 (seeder, epoch) counters per stream.
pub const DEFAULT_MAX_SEEDERS: usize = 256;

/// Limits of a [`ReceiptBook`].
#[derive(Clone, Debug)]
pub struct BookConfig {
	/// Chain the receipts are for.
	pub genesis_hash: Hash32,
	/// Stream the book counts.
	pub stream: StreamId,
	/// Most (seeder, epoch) counters held; data from further seeders is refused
	/// ([`ReceiptError::Full`]) until old epochs are dropped. Default
	/// [`DEFAULT_MAX_SEEDERS`]; 48 bytes each.
	pub max_seeders: usize,
}

/// Receipt bookkeeping failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
	/// The book or ledger is full; nothing was recorded.
	#[error("too many seeders or viewers tracked (limit {0})")]
	Full(usize),
	/// The pass names another chain than the ledger's.
	#[error("pass is for another chain")]
	WrongGenesis,
	/// The pass issuer is not an authorised pass signer for the stream.
	#[error("pass issuer is not an authorised pass signer of stream {0}")]
	UnauthorisedIssuer(StreamId),
	/// The pass signature does not verify against its issuer.
	#[error("pass signature does not verify")]
	BadPassSignature,
	/// No pass is known for the receipt's (stream, viewer, epoch).
	#[error("no pass for this stream, viewer and epoch")]
	NoPass,
	/// The receipt names another seeder than this ledger's.
	#[error("receipt is for another seeder")]
	WrongSeeder,
	/// The receipt's viewer is the seeder itself.
	#[error("receipt signed by the seeder itself")]
	SelfDealing,
	/// The receipt's signature does not verify against the viewer of its pass.
	#[error("receipt signature does not verify")]
	BadReceiptSignature,
	/// The receipt counts fewer units than one already held: cumulative amounts only grow.
	#[error("receipt units {got} below the {held} already held")]
	UnitsDecreased {
		/// Units in the receipt.
		got: Units,
		/// Units of the latest receipt held.
		held: Units,
	},
	/// A claim item failed a check the pallet makes.
	#[error("claim item rejected: {0:?}")]
	Rejected(ClaimRejection),
}

/// The viewer's side: bytes received per (seeder, epoch) of one stream, and signing of the
/// cumulative receipts. Call [`Self::handle_received`] for every verified chunk, then
/// [`Self::poll_receipt`] to get the receipts due.
pub struct ReceiptBook {
	config: BookConfig,
	viewer: sp_core::sr25519::Pair,
	/// Bytes received and units last signed, per (seeder, epoch).
	counters: BTreeMap<(AccountBytes, EpochIndex), (u64, Units)>,
}

impl std::fmt::Debug for ReceiptBook {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		// The signing key stays out of logs.
		f.debug_struct("ReceiptBook")
			.field("config", &self.config)
			.field("counters", &self.counters.len())
			.finish_non_exhaustive()
	}
}

impl ReceiptBook {
	/// A book for `config.stream`, signing with `viewer` (the key its pass names).
	pub fn new(config: BookConfig, viewer: sp_core::sr25519::Pair) -> Self {
		Self { config, viewer, counters: BTreeMap::new() }
	}

	/// `bytes` of verified chunk data arrived from `seeder` in `epoch`. Only verified data may be
	/// counted: a receipt is a promise to pay.
	pub fn handle_received(
		&mut self,
		seeder: AccountBytes,
		epoch: EpochIndex,
		bytes: u64,
	) -> Result<(), ReceiptError> {
		let max = self.config.max_seeders;
		let full = self.counters.len() >= max;
		match self.counters.get_mut(&(seeder, epoch)) {
			Some(c) => c.0 = c.0.saturating_add(bytes),
			None if full => return Err(ReceiptError::Full(max)),
			None => {
				self.counters.insert((seeder, epoch), (bytes, 0));
			}
		}
		Ok(())
	}

	/// The cumulative receipt for `seeder` in `epoch`, if it now covers more whole units than the
	/// last one signed for it. Units never go down.
	pub fn poll_receipt(
		&mut self,
		seeder: &AccountBytes,
		epoch: EpochIndex,
	) -> Option<Signed<Receipt>> {
		let c = self.counters.get_mut(&(*seeder, epoch))?;
		let units = c.0 / UNIT_BYTES;
		if units <= c.1 {
			return None;
		}
		c.1 = units;
		let receipt = Receipt {
			genesis_hash: self.config.genesis_hash,
			stream: self.config.stream,
			epoch,
			seeder: *seeder,
			viewer: sp_core::Pair::public(&self.viewer),
			units,
		};
		Some(Signed::sign(receipt, &self.viewer))
	}

	/// Forgets epochs before `epoch` (their receipts were sent; the seeders keep them).
	pub fn drop_before(&mut self, epoch: EpochIndex) {
		self.counters.retain(|(_, e), _| *e >= epoch);
	}
}

/// Which keys may sign passes for which stream (the origin's authorised pass signers).
#[derive(Clone, Debug, Default)]
pub struct PassSigners {
	/// Signers for streams not in `per_stream`.
	pub default: Vec<PublicKey>,
	/// Signers of individual streams.
	pub per_stream: HashMap<StreamId, Vec<PublicKey>>,
}

impl PassSigners {
	/// Whether `key` may sign passes for `stream`.
	pub fn is_authorised(&self, stream: StreamId, key: &PublicKey) -> bool {
		self.per_stream.get(&stream).unwrap_or(&self.default).contains(key)
	}
}

/// Checks a pass: chain, authorised issuer, signature (the pallet's order).
pub fn verify_pass(
	pass: &Signed<ViewerPass>,
	genesis_hash: &Hash32,
	signers: &PassSigners,
) -> Result<(), ReceiptError> {
	let p = &pass.payload;
	if &p.genesis_hash != genesis_hash {
		return Err(ReceiptError::WrongGenesis);
	}
	if !signers.is_authorised(p.stream, &p.issuer) {
		return Err(ReceiptError::UnauthorisedIssuer(p.stream));
	}
	if !pass.verify(&p.issuer) {
		return Err(ReceiptError::BadPassSignature);
	}
	Ok(())
}

/// The checks `pallet-dsp` makes on a claim item that need no chain state, in the pallet's
/// order, with the pallet's verdicts. What it cannot check here: the claim window, whether the
/// stream exists or closed, and what was already claimed.
pub fn verify_item(
	item: &ClaimItem,
	genesis_hash: &Hash32,
	seeder: &AccountBytes,
	signers: &PassSigners,
) -> Result<(), ClaimRejection> {
	let (pass, receipt) = (&item.pass.payload, &item.receipt.payload);
	if pass.stream != receipt.stream || pass.epoch != receipt.epoch || pass.viewer != receipt.viewer
	{
		return Err(ClaimRejection::Mismatch);
	}
	if &pass.genesis_hash != genesis_hash || &receipt.genesis_hash != genesis_hash {
		return Err(ClaimRejection::WrongGenesis);
	}
	if &receipt.seeder != seeder {
		return Err(ClaimRejection::WrongSeeder);
	}
	if &receipt.viewer.0 == seeder {
		return Err(ClaimRejection::SelfDealing);
	}
	if !signers.is_authorised(pass.stream, &pass.issuer) {
		return Err(ClaimRejection::UnauthorisedIssuer);
	}
	if !item.pass.verify(&pass.issuer) {
		return Err(ClaimRejection::BadPassSignature);
	}
	if !item.receipt.verify(&receipt.viewer) {
		return Err(ClaimRejection::BadReceiptSignature);
	}
	Ok(())
}

/// Default [`LedgerConfig::slack_units`]: 2048 units (2 MiB, about 30 s at 500 kbit/s). A viewer
/// that signs every few chunks stays far inside it; one that stops signing is cut off after at
/// most this much unpaid data.
pub const DEFAULT_SLACK_UNITS: Units = 2048;
/// Default [`LedgerConfig::max_entries`]: 65 536 (stream, viewer, epoch) entries, about 30 MiB.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

/// Settings of a [`SeederLedger`].
#[derive(Clone, Debug)]
pub struct LedgerConfig {
	/// Chain the ledger's passes and receipts are for.
	pub genesis_hash: Hash32,
	/// This seeder's account (what receipts must name).
	pub seeder: AccountBytes,
	/// Authorised pass signers per stream.
	pub signers: PassSigners,
	/// Units served beyond the latest receipt before [`SeederLedger::may_serve`] says no.
	/// Default [`DEFAULT_SLACK_UNITS`].
	pub slack_units: Units,
	/// Most (stream, viewer, epoch) entries; further passes are refused. Default
	/// [`DEFAULT_MAX_ENTRIES`]; about 450 bytes each.
	pub max_entries: usize,
}

impl LedgerConfig {
	/// Defaults for `seeder` on `genesis_hash` with `signers`.
	pub fn new(genesis_hash: Hash32, seeder: AccountBytes, signers: PassSigners) -> Self {
		Self {
			genesis_hash,
			seeder,
			signers,
			slack_units: DEFAULT_SLACK_UNITS,
			max_entries: DEFAULT_MAX_ENTRIES,
		}
	}
}

/// What the ledger holds for one (stream, viewer, epoch). This is also the persisted form.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LedgerEntry {
	/// The viewer's pass.
	pub pass: Signed<ViewerPass>,
	/// The viewer's latest receipt for this seeder, if any.
	pub receipt: Option<Signed<Receipt>>,
	/// Bytes this seeder served the viewer.
	pub served_bytes: u64,
}

impl LedgerEntry {
	fn receipted_units(&self) -> Units {
		self.receipt.as_ref().map_or(0, |r| r.payload.units)
	}
}

/// A receipt was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
	/// It raised the units held for the viewer to this value.
	Advanced(Units),
	/// It repeats the units already held (a resend); nothing changed.
	Unchanged,
}

type EntryKey = (StreamId, [u8; 32], EpochIndex);

fn key_of(stream: StreamId, viewer: &PublicKey, epoch: EpochIndex) -> EntryKey {
	(stream, viewer.0, epoch)
}

/// The seeder's side: passes of the viewers it serves, their latest receipts, and bytes served.
/// Sans-IO but for [`Self::save`] / [`Self::load`], which the shell calls.
#[derive(Debug)]
pub struct SeederLedger {
	config: LedgerConfig,
	entries: BTreeMap<EntryKey, LedgerEntry>,
}

impl SeederLedger {
	/// An empty ledger.
	pub fn new(config: LedgerConfig) -> Self {
		Self { config, entries: BTreeMap::new() }
	}

	/// Settings.
	pub fn config(&self) -> &LedgerConfig {
		&self.config
	}

	/// Entries held, in key order.
	pub fn entries(&self) -> impl Iterator<Item = &LedgerEntry> {
		self.entries.values()
	}

	/// A viewer presented its pass: verify it and start an entry. An existing entry keeps its
	/// receipt and served bytes, and takes the pass if it has more `max_units` than the one
	/// held: passes are renewed while the viewer stays joined, each covering the time joined so
	/// far, and the claim item carries the pass held ([`Self::claim_batches`]).
	pub fn handle_pass(&mut self, pass: Signed<ViewerPass>) -> Result<(), ReceiptError> {
		verify_pass(&pass, &self.config.genesis_hash, &self.config.signers)?;
		let p = &pass.payload;
		if p.viewer.0 == self.config.seeder {
			return Err(ReceiptError::SelfDealing);
		}
		let key = key_of(p.stream, &p.viewer, p.epoch);
		let full = self.entries.len() >= self.config.max_entries;
		match self.entries.get_mut(&key) {
			Some(e) => keep_larger_pass(e, pass),
			None if full => return Err(ReceiptError::Full(self.config.max_entries)),
			None => {
				self.entries.insert(key, LedgerEntry { pass, receipt: None, served_bytes: 0 });
			}
		}
		Ok(())
	}

	/// The pass held for (stream, `viewer`, epoch), if any.
	pub fn pass(
		&self,
		stream: StreamId,
		viewer: &PublicKey,
		epoch: EpochIndex,
	) -> Option<&Signed<ViewerPass>> {
		self.entries.get(&key_of(stream, viewer, epoch)).map(|e| &e.pass)
	}

	/// A viewer sent a receipt: check it exactly as the pallet would (against the stored pass)
	/// and keep it if its units grew.
	pub fn handle_receipt(
		&mut self,
		receipt: Signed<Receipt>,
	) -> Result<ReceiptOutcome, ReceiptError> {
		let r = &receipt.payload;
		let entry = self
			.entries
			.get_mut(&key_of(r.stream, &r.viewer, r.epoch))
			.ok_or(ReceiptError::NoPass)?;
		let item = ClaimItem { pass: entry.pass.clone(), receipt: receipt.clone() };
		verify_item(&item, &self.config.genesis_hash, &self.config.seeder, &self.config.signers)
			.map_err(|e| match e {
				ClaimRejection::WrongGenesis => ReceiptError::WrongGenesis,
				ClaimRejection::WrongSeeder => ReceiptError::WrongSeeder,
				ClaimRejection::SelfDealing => ReceiptError::SelfDealing,
				ClaimRejection::BadReceiptSignature => ReceiptError::BadReceiptSignature,
				other => ReceiptError::Rejected(other),
			})?;
		let held = entry.receipted_units();
		let got = receipt.payload.units;
		if got < held {
			return Err(ReceiptError::UnitsDecreased { got, held });
		}
		if got == held && entry.receipt.is_some() {
			return Ok(ReceiptOutcome::Unchanged);
		}
		entry.receipt = Some(receipt);
		Ok(ReceiptOutcome::Advanced(got))
	}

	/// Forgets every entry of an epoch before `epoch`: call it once their claim window closed
	/// (and after claiming them), or the ledger fills up and refuses new passes.
	pub fn prune_before(&mut self, epoch: EpochIndex) -> usize {
		let before = self.entries.len();
		self.entries.retain(|(_, _, e), _| *e >= epoch);
		before - self.entries.len()
	}

	/// `bytes` were served to `viewer`. Ignored without a pass (nothing is served without one).
	pub fn handle_served(
		&mut self,
		stream: StreamId,
		viewer: &PublicKey,
		epoch: EpochIndex,
		bytes: u64,
	) {
		if let Some(e) = self.entries.get_mut(&key_of(stream, viewer, epoch)) {
			e.served_bytes = e.served_bytes.saturating_add(bytes);
		}
	}

	/// Whether `viewer` may be served more: it has a pass that covers more than was served
	/// ([`Self::pass_room`]), and the units served (rounded up) exceed its latest receipt by at
	/// most `slack_units`.
	pub fn may_serve(&self, stream: StreamId, viewer: &PublicKey, epoch: EpochIndex) -> bool {
		self.pass_room(stream, viewer, epoch) > 0
			&& self.entries.get(&key_of(stream, viewer, epoch)).is_some_and(|e| {
				e.served_bytes.div_ceil(UNIT_BYTES) <= e.receipted_units() + self.config.slack_units
			})
	}

	/// Bytes `viewer` may still be served under the pass held: its `max_units` in bytes less
	/// what was served (0 without a pass). The chain pays at most a pass's `max_units` for a
	/// viewer, so a chunk beyond this is served for nothing; a renewed pass raises it.
	pub fn pass_room(&self, stream: StreamId, viewer: &PublicKey, epoch: EpochIndex) -> u64 {
		self.entries.get(&key_of(stream, viewer, epoch)).map_or(0, |e| {
			e.pass.payload.max_units.saturating_mul(UNIT_BYTES).saturating_sub(e.served_bytes)
		})
	}

	/// Every entry with a receipt as claim items, `max_items` per batch (the pallet's bound),
	/// each re-verified with [`verify_item`]; items that fail are returned apart.
	pub fn claim_batches(
		&self,
		max_items: usize,
	) -> (Vec<Vec<ClaimItem>>, Vec<(ClaimItem, ClaimRejection)>) {
		let mut good = Vec::new();
		let mut bad = Vec::new();
		for e in self.entries.values() {
			let Some(receipt) = &e.receipt else { continue };
			let item = ClaimItem { pass: e.pass.clone(), receipt: receipt.clone() };
			let c = &self.config;
			match verify_item(&item, &c.genesis_hash, &c.seeder, &c.signers) {
				Ok(()) => good.push(item),
				Err(why) => bad.push((item, why)),
			}
		}
		let batches = good.chunks(max_items.max(1)).map(<[ClaimItem]>::to_vec).collect();
		(batches, bad)
	}

	/// The persisted form: SCALE of the entries in key order.
	pub fn encode(&self) -> Vec<u8> {
		self.entries.values().collect::<Vec<_>>().encode()
	}

	/// A ledger from its persisted form ([`Self::encode`]). Every entry is checked again (pass
	/// and receipt, as on arrival): bytes edited by hand or damaged on disk are an error, never
	/// trusted. The file around these bytes is [`crate::net::ledger_file`]'s business.
	pub fn decode(config: LedgerConfig, bytes: &[u8]) -> Result<Self, LoadError> {
		let entries = Vec::<LedgerEntry>::decode_all(&mut &bytes[..])
			.map_err(|e| LoadError::Corrupt(e.to_string()))?;
		let mut ledger = Self::new(config);
		for (i, e) in entries.into_iter().enumerate() {
			let served = e.served_bytes;
			let p = e.pass.payload.clone();
			ledger.handle_pass(e.pass).map_err(|err| LoadError::BadEntry(i, err))?;
			if let Some(r) = e.receipt {
				ledger.handle_receipt(r).map_err(|err| LoadError::BadEntry(i, err))?;
			}
			ledger.handle_served(p.stream, &p.viewer, p.epoch, served);
		}
		Ok(ledger)
	}
}

/// `entry` takes `pass` (same stream, viewer and epoch, verified) if it allows more units than
/// the pass held: the chain pays at most a pass's `max_units`, so the largest is what to claim
/// with. A smaller or equal one (an older renewal arriving late) changes nothing.
fn keep_larger_pass(entry: &mut LedgerEntry, pass: Signed<ViewerPass>) {
	if pass.payload.max_units > entry.pass.payload.max_units {
		entry.pass = pass;
	}
}

/// A ledger could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
	/// The file could not be read (only from the file driver, [`crate::net::ledger_file`]).
	#[error("reading the ledger: {0}")]
	Io(#[from] io::Error),
	/// The file does not decode.
	#[error("ledger file is corrupt: {0}")]
	Corrupt(String),
	/// An entry fails verification.
	#[error("ledger entry {0} does not verify: {1}")]
	BadEntry(usize, ReceiptError),
}

#[cfg(test)]
pub(crate) mod tests {
	use super::*;
	use sp_core::Pair;

	pub(crate) const GENESIS: Hash32 = [7; 32];

	pub(crate) fn pair(s: &str) -> sp_core::sr25519::Pair {
		sp_core::sr25519::Pair::from_string(s, None).unwrap()
	}

	fn seeder() -> AccountBytes {
		pair("//Seeder").public().0
	}

	pub(crate) fn signers() -> PassSigners {
		PassSigners { default: vec![pair("//Issuer").public()], per_stream: HashMap::new() }
	}

	pub(crate) fn pass_for(viewer: &str, epoch: EpochIndex) -> Signed<ViewerPass> {
		let pass = ViewerPass {
			genesis_hash: GENESIS,
			stream: 1,
			epoch,
			viewer: pair(viewer).public(),
			max_units: 1_000_000,
			issuer: pair("//Issuer").public(),
		};
		Signed::sign(pass, &pair("//Issuer"))
	}

	pub(crate) fn ledger() -> SeederLedger {
		SeederLedger::new(LedgerConfig {
			slack_units: 10,
			..LedgerConfig::new(GENESIS, seeder(), signers())
		})
	}

	fn book(viewer: &str) -> ReceiptBook {
		let c = BookConfig { genesis_hash: GENESIS, stream: 1, max_seeders: 4 };
		ReceiptBook::new(c, pair(viewer))
	}

	#[test]
	fn receipts_verify_with_the_pallets_code_and_only_grow() {
		let mut b = book("//Viewer");
		b.handle_received(seeder(), 5, 1500).unwrap();
		let r1 = b.poll_receipt(&seeder(), 5).unwrap();
		assert_eq!(r1.payload.units, 1);
		// Exactly the check the pallet makes: `Signed::verify` against the viewer key.
		assert!(r1.verify(&pair("//Viewer").public()));
		assert!(!r1.verify(&pair("//Other").public()));
		// No new whole unit, no new receipt.
		b.handle_received(seeder(), 5, 100).unwrap();
		assert!(b.poll_receipt(&seeder(), 5).is_none());
		b.handle_received(seeder(), 5, 3000).unwrap();
		let r2 = b.poll_receipt(&seeder(), 5).unwrap();
		assert_eq!(r2.payload.units, 4);

		let mut l = ledger();
		l.handle_pass(pass_for("//Viewer", 5)).unwrap();
		assert_eq!(l.handle_receipt(r1.clone()), Ok(ReceiptOutcome::Advanced(1)));
		assert_eq!(l.handle_receipt(r2.clone()), Ok(ReceiptOutcome::Advanced(4)));
		assert_eq!(l.handle_receipt(r2), Ok(ReceiptOutcome::Unchanged));
		assert_eq!(l.handle_receipt(r1), Err(ReceiptError::UnitsDecreased { got: 1, held: 4 }));
	}

	#[test]
	fn book_is_bounded() {
		let mut b = book("//Viewer");
		for s in 0..4u8 {
			b.handle_received([s; 32], 0, 1).unwrap();
		}
		assert_eq!(b.handle_received([9; 32], 0, 1), Err(ReceiptError::Full(4)));
		b.handle_received([0; 32], 0, 1).unwrap();
		b.drop_before(1);
		b.handle_received([9; 32], 1, 1).unwrap();
	}

	pub(crate) fn receipt(viewer: &str, epoch: EpochIndex, units: Units) -> Receipt {
		Receipt {
			genesis_hash: GENESIS,
			stream: 1,
			epoch,
			seeder: seeder(),
			viewer: pair(viewer).public(),
			units,
		}
	}

	#[test]
	fn bad_receipts_and_passes_are_refused() {
		let mut l = ledger();
		let v = pair("//Viewer");
		assert_eq!(
			l.handle_receipt(Signed::sign(receipt("//Viewer", 5, 1), &v)),
			Err(ReceiptError::NoPass)
		);
		l.handle_pass(pass_for("//Viewer", 5)).unwrap();

		let mut tampered = Signed::sign(receipt("//Viewer", 5, 1), &v);
		tampered.payload.units = 1000;
		assert_eq!(l.handle_receipt(tampered), Err(ReceiptError::BadReceiptSignature));
		// Signed by somebody else than the pass's viewer.
		let forged = Signed::sign(receipt("//Viewer", 5, 1), &pair("//Mallory"));
		assert_eq!(l.handle_receipt(forged), Err(ReceiptError::BadReceiptSignature));
		let wrong_genesis =
			Signed::sign(Receipt { genesis_hash: [0; 32], ..receipt("//Viewer", 5, 1) }, &v);
		assert_eq!(l.handle_receipt(wrong_genesis), Err(ReceiptError::WrongGenesis));
		let wrong_seeder =
			Signed::sign(Receipt { seeder: [3; 32], ..receipt("//Viewer", 5, 1) }, &v);
		assert_eq!(l.handle_receipt(wrong_seeder), Err(ReceiptError::WrongSeeder));

		let mut bad_pass = pass_for("//Viewer", 6);
		bad_pass.payload.max_units += 1;
		assert_eq!(l.handle_pass(bad_pass), Err(ReceiptError::BadPassSignature));
		let rogue = Signed::sign(
			ViewerPass { issuer: pair("//Rogue").public(), ..pass_for("//Viewer", 6).payload },
			&pair("//Rogue"),
		);
		assert_eq!(l.handle_pass(rogue), Err(ReceiptError::UnauthorisedIssuer(1)));
		let other_chain = Signed::sign(
			ViewerPass { genesis_hash: [0; 32], ..pass_for("//Viewer", 6).payload },
			&pair("//Issuer"),
		);
		assert_eq!(l.handle_pass(other_chain), Err(ReceiptError::WrongGenesis));
		assert_eq!(l.handle_pass(pass_for("//Seeder", 6)), Err(ReceiptError::SelfDealing));
	}

	#[test]
	fn viewer_that_stops_signing_is_cut_off_after_the_slack_and_resumes_after_a_receipt() {
		let mut l = ledger();
		let viewer = pair("//Viewer").public();
		assert!(!l.may_serve(1, &viewer, 5), "no pass, no service");
		l.handle_pass(pass_for("//Viewer", 5)).unwrap();
		// Slack is 10 units: 10 KiB may be served unreceipted, not one byte more.
		l.handle_served(1, &viewer, 5, 10 * UNIT_BYTES);
		assert!(l.may_serve(1, &viewer, 5));
		l.handle_served(1, &viewer, 5, 1);
		assert!(!l.may_serve(1, &viewer, 5));
		// A receipt for what was served lets service resume.
		let r = Signed::sign(receipt("//Viewer", 5, 11), &pair("//Viewer"));
		l.handle_receipt(r).unwrap();
		assert!(l.may_serve(1, &viewer, 5));
		// Other epochs are separate entries.
		assert!(!l.may_serve(1, &viewer, 6));
	}

	#[test]
	fn a_viewer_is_served_no_more_than_its_pass_can_be_paid_for() {
		let mut l = ledger();
		let viewer = pair("//Viewer").public();
		assert_eq!(l.pass_room(1, &viewer, 5), 0, "no pass, no room");
		let p = ViewerPass { max_units: 3, ..pass_for("//Viewer", 5).payload };
		l.handle_pass(Signed::sign(p, &pair("//Issuer"))).unwrap();
		assert_eq!(l.pass_room(1, &viewer, 5), 3 * UNIT_BYTES);
		l.handle_served(1, &viewer, 5, 3 * UNIT_BYTES - 1);
		assert!(l.may_serve(1, &viewer, 5));
		l.handle_served(1, &viewer, 5, 1);
		assert_eq!(l.pass_room(1, &viewer, 5), 0);
		assert!(!l.may_serve(1, &viewer, 5), "the pass is used up, though the slack is not");
	}

	#[test]
	fn a_renewed_pass_with_more_units_replaces_the_held_one_and_is_claimed_with() {
		let with_units = |units| {
			let mut p = pass_for("//Viewer", 5).payload;
			p.max_units = units;
			Signed::sign(p, &pair("//Issuer"))
		};
		let mut l = ledger();
		l.handle_pass(with_units(100)).unwrap();
		l.handle_receipt(Signed::sign(receipt("//Viewer", 5, 3), &pair("//Viewer"))).unwrap();
		l.handle_served(1, &pair("//Viewer").public(), 5, 3000);
		l.handle_pass(with_units(300)).unwrap();
		// An older renewal arriving late does not shrink it.
		l.handle_pass(with_units(200)).unwrap();
		let viewer = pair("//Viewer").public();
		assert_eq!(l.pass(1, &viewer, 5).map(|p| p.payload.max_units), Some(300));
		// The receipt and served bytes stay; the claim item carries the largest pass.
		let (batches, bad) = l.claim_batches(10);
		assert!(bad.is_empty());
		let item = &batches[0][0];
		assert_eq!((item.pass.payload.max_units, item.receipt.payload.units), (300, 3));
		assert_eq!(l.entries().next().map(|e| e.served_bytes), Some(3000));
		// A forged larger pass is refused and changes nothing.
		let mut forged = with_units(1_000_000);
		forged.payload.max_units = 2_000_000;
		assert_eq!(l.handle_pass(forged), Err(ReceiptError::BadPassSignature));
		assert_eq!(l.pass(1, &viewer, 5).map(|p| p.payload.max_units), Some(300));
	}

	#[test]
	fn claim_batches_are_bounded_and_verified() {
		let mut l = ledger();
		for i in 0..5 {
			let v = format!("//Viewer{i}");
			l.handle_pass(pass_for(&v, 5)).unwrap();
			l.handle_receipt(Signed::sign(receipt(&v, 5, 3), &pair(&v))).unwrap();
		}
		// Old epochs are pruned once claimed; a full ledger refuses new passes until then.
		let mut small =
			SeederLedger::new(LedgerConfig { max_entries: 1, ..ledger().config().clone() });
		small.handle_pass(pass_for("//Viewer", 4)).unwrap();
		assert_eq!(small.handle_pass(pass_for("//Viewer", 5)), Err(ReceiptError::Full(1)));
		assert_eq!(small.prune_before(5), 1);
		small.handle_pass(pass_for("//Viewer", 5)).unwrap();
		// A pass without a receipt is not claimable.
		l.handle_pass(pass_for("//Silent", 5)).unwrap();
		let (batches, bad) = l.claim_batches(2);
		assert!(bad.is_empty());
		assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
		for item in batches.iter().flatten() {
			assert_eq!(verify_item(item, &GENESIS, &seeder(), &signers()), Ok(()));
			assert_eq!(
				verify_item(item, &GENESIS, &[3; 32], &signers()),
				Err(ClaimRejection::WrongSeeder)
			);
		}
		let mut swapped = batches[0][0].clone();
		swapped.receipt = batches[0][1].receipt.clone();
		assert_eq!(
			verify_item(&swapped, &GENESIS, &seeder(), &signers()),
			Err(ClaimRejection::Mismatch)
		);
	}
}
