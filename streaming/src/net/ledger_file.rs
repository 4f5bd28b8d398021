//! The seeder's ledger on disk: `dir/ledger.scale`, written atomically and read back verified.
//!
//! The ledger itself and its byte form are sans-IO ([`SeederLedger::encode`],
//! [`SeederLedger::decode`] in [`crate::p2p::receipts`]); this module is the blocking file IO
//! around them. Async shells call it from a blocking task ([`crate::net::p2p`] does).

use crate::p2p::receipts::{LedgerConfig, LoadError, SeederLedger};
use std::{
	io::{self, Write},
	path::{Path, PathBuf},
};

/// File name of a persisted ledger inside its directory.
pub const LEDGER_FILE: &str = "ledger.scale";

impl SeederLedger {
	/// Writes the ledger to `dir/ledger.scale` atomically (see [`write_ledger`]).
	pub fn save(&self, dir: &Path) -> io::Result<()> {
		write_ledger(dir, &self.encode())
	}

	/// Reads `dir/ledger.scale` (an empty ledger if there is none). Every entry is checked again
	/// (pass and receipt, as on arrival): a file edited by hand or damaged on disk is an error,
	/// never trusted.
	pub fn load(config: LedgerConfig, dir: &Path) -> Result<Self, LoadError> {
		let path = ledger_path(dir);
		let bytes = match std::fs::read(&path) {
			Ok(b) => b,
			Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::new(config)),
			Err(e) => return Err(LoadError::Io(e)),
		};
		Self::decode(config, &bytes)
	}
}

/// Writes encoded ledger bytes to `dir/ledger.scale` atomically: a temporary file is written and
/// synced, then renamed over the old one, and the directory is synced, so a crash leaves either
/// the old or the new ledger. Blocking; async shells call it from a blocking task.
pub fn write_ledger(dir: &Path, bytes: &[u8]) -> io::Result<()> {
	std::fs::create_dir_all(dir)?;
	let tmp = dir.join(format!("{LEDGER_FILE}.tmp"));
	{
		let mut f = std::fs::File::create(&tmp)?;
		f.write_all(bytes)?;
		f.sync_all()?;
	}
	std::fs::rename(&tmp, ledger_path(dir))?;
	std::fs::File::open(dir)?.sync_all()
}

/// Path of the ledger file in `dir`.
pub fn ledger_path(dir: &Path) -> PathBuf {
	dir.join(LEDGER_FILE)
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::p2p::receipts::{
		tests::{ledger, pair, pass_for, receipt, signers, GENESIS},
		LedgerConfig,
	};
	use dsp_primitives::Signed;
	use sp_core::Pair;

	#[test]
	fn ledger_persists_atomically_and_reloads_verified() {
		let dir = tempfile::tempdir().unwrap();
		let mut l = ledger();
		let viewer = pair("//Viewer").public();
		l.handle_pass(pass_for("//Viewer", 5)).unwrap();
		l.handle_pass(pass_for("//Viewer2", 5)).unwrap();
		l.handle_served(1, &viewer, 5, 4096);
		l.handle_receipt(Signed::sign(receipt("//Viewer", 5, 4), &pair("//Viewer"))).unwrap();
		l.save(dir.path()).unwrap();
		assert!(!dir.path().join("ledger.scale.tmp").exists());

		let back = SeederLedger::load(l.config().clone(), dir.path()).unwrap();
		assert_eq!(
			back.entries().cloned().collect::<Vec<_>>(),
			l.entries().cloned().collect::<Vec<_>>()
		);

		// A different seeder's config refuses the stored receipt.
		let other = LedgerConfig::new(GENESIS, [3; 32], signers());
		assert!(matches!(SeederLedger::load(other, dir.path()), Err(LoadError::BadEntry(_, _))));
		// Damaged bytes are an error, not an empty ledger.
		std::fs::write(ledger_path(dir.path()), b"\x04garbage").unwrap();
		assert!(matches!(
			SeederLedger::load(l.config().clone(), dir.path()),
			Err(LoadError::Corrupt(_))
		));
		// No file: empty ledger.
		let empty = tempfile::tempdir().unwrap();
		assert_eq!(
			SeederLedger::load(l.config().clone(), empty.path()).unwrap().entries().count(),
			0
		);
	}
}
