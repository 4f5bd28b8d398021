//! The seeder's ledger on disk: one file per credit epoch, `dir/ledger-<epoch>.scale`, each
//! written atomically, all read back verified.
//!
//! One file per epoch makes saving incremental: the driver rewrites only the epochs whose
//! entries changed ([`crate::p2p::serving::Serving::take_changed_epochs`]), in practice the
//! current one, and an epoch the serving core pruned (past the claim window) loses its file.
//! Bounds: the directory holds the files of at most `claim_window_epochs` + 1 epochs and at most
//! `max_entries` entries of about [`ENTRY_BYTES_MAX`] bytes (25 MiB at the default 65 536); one
//! save writes the changed epochs' entries only. A directory written by an older version (one
//! `ledger.scale`) is read too, and replaced by epoch files at the next full
//! [`SeederLedger::save`].
//!
//! The ledger itself and its byte form are sans-IO ([`SeederLedger::encode`],
//! [`SeederLedger::decode`] in [`crate::p2p::receipts`]); this module is the blocking file IO
//! around them. Async shells call it from a blocking task ([`crate::net::p2p`] does).

use crate::p2p::receipts::{LedgerConfig, LedgerEntry, LoadError, SeederLedger};
use codec::{DecodeAll, Encode};
use dsp_primitives::EpochIndex;
use std::{
	collections::{BTreeMap, BTreeSet},
	io::{self, Write},
	path::{Path, PathBuf},
};

/// File name of a whole ledger in one file, as older versions wrote it (read at load only).
pub const LEDGER_FILE: &str = "ledger.scale";

/// Largest encoded ledger entry: a signed pass (180 bytes), an optional signed receipt (1 +
/// 188) and the served bytes (8), rounded up.
pub const ENTRY_BYTES_MAX: usize = 380;

/// The encoded entries of one epoch, or `None` when the ledger holds none of it (its file is
/// removed).
pub type EpochFile = (EpochIndex, Option<Vec<u8>>);

impl SeederLedger {
	/// Writes every epoch of the ledger to `dir` (see [`write_epochs`]) and removes the files
	/// of epochs it no longer holds, and an old single-file ledger.
	pub fn save(&self, dir: &Path) -> io::Result<()> {
		write_all_epochs(dir, &self.encode_epochs(&self.epochs()))
	}

	/// The epochs the ledger holds entries of.
	pub fn epochs(&self) -> BTreeSet<EpochIndex> {
		self.entries().map(|e| e.pass.payload.epoch).collect()
	}

	/// The files of `epochs`: SCALE of each epoch's entries in key order, as
	/// [`SeederLedger::encode`] encodes all of them.
	pub fn encode_epochs(&self, epochs: &BTreeSet<EpochIndex>) -> Vec<EpochFile> {
		let mut by_epoch: BTreeMap<EpochIndex, Vec<&LedgerEntry>> =
			epochs.iter().map(|e| (*e, Vec::new())).collect();
		for e in self.entries() {
			if let Some(v) = by_epoch.get_mut(&e.pass.payload.epoch) {
				v.push(e);
			}
		}
		by_epoch
			.into_iter()
			.map(|(epoch, v)| (epoch, (!v.is_empty()).then(|| v.encode())))
			.collect()
	}

	/// Reads the ledger in `dir`: every epoch file, and an old single-file ledger (an epoch
	/// file wins over it for the same entry); an empty ledger if there is none. Every entry is
	/// checked again (pass and receipt, as on arrival): a file edited by hand or damaged on
	/// disk is an error, never trusted.
	pub fn load(config: LedgerConfig, dir: &Path) -> Result<Self, LoadError> {
		let mut merged = BTreeMap::new();
		let mut paths = vec![ledger_path(dir)];
		paths.extend(epoch_files(dir).or_else(not_found_is_empty)?.into_values());
		for path in paths {
			let bytes = match std::fs::read(&path) {
				Ok(b) => b,
				Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
				Err(e) => return Err(LoadError::Io(e)),
			};
			let entries = Vec::<LedgerEntry>::decode_all(&mut &bytes[..])
				.map_err(|e| LoadError::Corrupt(format!("{}: {e}", path.display())))?;
			for e in entries {
				let p = &e.pass.payload;
				merged.insert((p.stream, p.viewer.0, p.epoch), e);
			}
		}
		Self::decode(config, &merged.values().collect::<Vec<_>>().encode())
	}
}

fn not_found_is_empty(e: io::Error) -> io::Result<BTreeMap<EpochIndex, PathBuf>> {
	if e.kind() == io::ErrorKind::NotFound {
		Ok(BTreeMap::new())
	} else {
		Err(e)
	}
}

/// Writes each epoch file atomically (a temporary file written and synced, then renamed over
/// the old one) and removes those given as `None`, then syncs the directory once, so a crash
/// leaves every epoch file either old or new. Blocking; async shells call it from a blocking
/// task.
pub fn write_epochs(dir: &Path, files: &[EpochFile]) -> io::Result<()> {
	std::fs::create_dir_all(dir)?;
	for (epoch, bytes) in files {
		let path = epoch_path(dir, *epoch);
		match bytes {
			Some(bytes) => {
				let tmp = path.with_extension("scale.tmp");
				{
					let mut f = std::fs::File::create(&tmp)?;
					f.write_all(bytes)?;
					f.sync_all()?;
				}
				std::fs::rename(&tmp, &path)?;
			}
			None => remove_if_present(&path)?,
		}
	}
	sync_dir(dir)
}

/// Writes `files` as [`write_epochs`] does, then removes every other epoch file and an old
/// single-file ledger: `dir` then holds exactly the ledger `files` came from.
pub fn write_all_epochs(dir: &Path, files: &[EpochFile]) -> io::Result<()> {
	write_epochs(dir, files)?;
	let keep: BTreeSet<EpochIndex> =
		files.iter().filter(|(_, b)| b.is_some()).map(|(e, _)| *e).collect();
	for (epoch, path) in epoch_files(dir)? {
		if !keep.contains(&epoch) {
			remove_if_present(&path)?;
		}
	}
	remove_if_present(&ledger_path(dir))?;
	sync_dir(dir)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
	match std::fs::remove_file(path) {
		Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
		_ => Ok(()),
	}
}

fn sync_dir(dir: &Path) -> io::Result<()> {
	std::fs::File::open(dir)?.sync_all()
}

/// Path of the old single-file ledger in `dir`.
pub fn ledger_path(dir: &Path) -> PathBuf {
	dir.join(LEDGER_FILE)
}

/// Path of `epoch`'s file in `dir`.
pub fn epoch_path(dir: &Path, epoch: EpochIndex) -> PathBuf {
	dir.join(format!("ledger-{epoch}.scale"))
}

/// The epoch files in `dir`, by epoch.
pub fn epoch_files(dir: &Path) -> io::Result<BTreeMap<EpochIndex, PathBuf>> {
	let mut files = BTreeMap::new();
	for entry in std::fs::read_dir(dir)? {
		let entry = entry?;
		let name = entry.file_name();
		let epoch = name
			.to_str()
			.and_then(|n| n.strip_prefix("ledger-"))
			.and_then(|n| n.strip_suffix(".scale"))
			.and_then(|n| n.parse::<EpochIndex>().ok());
		if let Some(epoch) = epoch {
			files.insert(epoch, entry.path());
		}
	}
	Ok(files)
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
		l.handle_pass(pass_for("//Viewer", 6)).unwrap();
		l.save(dir.path()).unwrap();
		let names: Vec<String> = std::fs::read_dir(dir.path())
			.unwrap()
			.map(|e| e.unwrap().file_name().into_string().unwrap())
			.collect();
		assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
		assert_eq!(epoch_files(dir.path()).unwrap().into_keys().collect::<Vec<_>>(), vec![5, 6]);

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
		// A ledger an older version wrote in one file loads, and the next save replaces it.
		let old = tempfile::tempdir().unwrap();
		std::fs::write(ledger_path(old.path()), l.encode()).unwrap();
		let back = SeederLedger::load(l.config().clone(), old.path()).unwrap();
		assert_eq!(back.encode(), l.encode());
		back.save(old.path()).unwrap();
		assert!(!ledger_path(old.path()).exists());
		assert_eq!(
			SeederLedger::load(l.config().clone(), old.path()).unwrap().encode(),
			l.encode()
		);
		// No file: empty ledger.
		let empty = tempfile::tempdir().unwrap();
		assert_eq!(
			SeederLedger::load(l.config().clone(), empty.path()).unwrap().entries().count(),
			0
		);
	}

	/// A seed that follows the chain for many epochs and saves as the driver does (only the
	/// epochs that changed) keeps at most `claim_window_epochs + 1` epoch files, each save
	/// writes one epoch, and what it reloads is exactly the claimable epochs.
	#[test]
	fn ledger_files_stay_bounded_over_epochs() {
		use crate::p2p::{
			serving::{ChunkSource, Serving, ServingConfig},
			wire::{Request, Response},
		};
		struct NoChunks;
		impl ChunkSource for NoChunks {
			fn header(
				&self,
				_: dsp_primitives::StreamId,
				_: u64,
			) -> Option<Signed<dsp_primitives::SegmentHeader>> {
				None
			}
			fn chunk(&self, _: dsp_primitives::StreamId, _: u64, _: u32) -> Option<bytes::Bytes> {
				None
			}
		}
		let dir = tempfile::tempdir().unwrap();
		let (window, viewers) = (2, 3);
		let cfg = ServingConfig { claim_window_epochs: window, ..Default::default() };
		let mut s = Serving::new(cfg, ledger());
		let peers: Vec<libp2p::PeerId> = (1..=viewers)
			.map(|n| {
				let key = libp2p::identity::Keypair::ed25519_from_bytes([n as u8; 32]).unwrap();
				key.public().to_peer_id()
			})
			.collect();
		let mut sizes = Vec::new();
		for epoch in 0..12 {
			s.handle_epoch(epoch);
			for (i, peer) in peers.iter().enumerate() {
				let v = format!("//Viewer{i}");
				let req = Request::bound_pass(pass_for(&v, epoch), &pair(&v), peer);
				let now = u64::from(epoch) * 3_600_000;
				assert_eq!(s.handle_request(now, *peer, req, &NoChunks), Response::Ok);
			}
			let changed = s.take_changed_epochs();
			let files = s.ledger().encode_epochs(&changed);
			let written: usize = files.iter().filter_map(|(_, b)| b.as_ref()).map(Vec::len).sum();
			assert!(written <= viewers * ENTRY_BYTES_MAX, "epoch {epoch}: {written} bytes written");
			write_epochs(dir.path(), &files).unwrap();
			let on_disk = epoch_files(dir.path()).unwrap();
			assert!(on_disk.len() as u32 <= window + 1, "epoch {epoch}: {on_disk:?}");
			let size: u64 = on_disk.values().map(|p| std::fs::metadata(p).unwrap().len()).sum();
			sizes.push(size);
		}
		let bound = ((window as usize + 1) * viewers * ENTRY_BYTES_MAX) as u64;
		assert!(sizes.iter().all(|s| *s <= bound), "{sizes:?} over {bound}");
		// Flat once the window is full.
		assert!(sizes[3..].windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
		let back = SeederLedger::load(s.ledger().config().clone(), dir.path()).unwrap();
		let mut epochs: Vec<_> = back.entries().map(|e| e.pass.payload.epoch).collect();
		assert_eq!(epochs.len(), viewers * 3);
		epochs.sort();
		epochs.dedup();
		assert_eq!(epochs, vec![9, 10, 11]);
		assert_eq!(s.stats().ledger_pruned, (9 * viewers) as u64);
	}
}
