//! Parsing helpers the subcommands share: hex keys and hashes, addresses, seeds and secrets,
//! the `--transport` choice.
//!
//! # Secrets
//!
//! Every secret (`--origin-seed`, `--pass-seed`, `--seeder-seed`, `--viewer-seed`) is taken,
//! most safely first, from `--<name>-file PATH` (the file's first line), from an environment
//! variable (`DSP_ORIGIN_SEED`, `DSP_PASS_SEED`, `DSP_SEEDER_SEED`, `DSP_VIEWER_SEED`), or from
//! the argument itself, which every local user can read in the process list. A secret is never
//! printed: `--help` hides the environment values, and errors name the option, not the value.

use anyhow::{anyhow, bail, Context};
use clap::ValueEnum;
use dsp_primitives::PublicKey;
use dsp_streaming::net::tls::ServerVerification;
use sp_core::{sr25519, Pair};
use std::{
	net::SocketAddr,
	path::{Path, PathBuf},
};

// `--transport`: the transports a viewer may use.
#[derive(Clone, Copy, ValueEnum)]
pub enum TransportArg {
	/// QUIC first, TCP when UDP is blocked or worse.
	Auto,
	/// TCP only.
	Tcp,
	/// QUIC (UDP) only.
	Udp,
}

/// 32 bytes from hex (`0x` optional); `00` or nothing is all zeros (the standalone genesis).
pub fn hex32(s: &str, what: &str) -> anyhow::Result<[u8; 32]> {
	let s = s.trim_start_matches("0x");
	if s == "00" || s.is_empty() {
		return Ok([0; 32]);
	}
	let v = hex::decode(s).with_context(|| format!("{what}: not hex"))?;
	v.try_into().map_err(|_| anyhow!("{what}: expected 32 bytes"))
}

/// An sr25519 public key from hex.
pub fn public_key(s: &str) -> anyhow::Result<PublicKey> {
	Ok(PublicKey::from_raw(hex32(s, "origin key")?))
}

/// How QUIC server certificates are checked: against `--quic-fingerprint`, or not at all.
pub fn verification(fp: &Option<String>) -> anyhow::Result<ServerVerification> {
	Ok(match fp {
		Some(f) => ServerVerification::Fingerprint(hex32(f, "quic fingerprint")?),
		None => ServerVerification::InsecureSkip,
	})
}

/// A listen address, or `None` for "none" (that listener off).
pub fn addr_or_none(s: &str) -> anyhow::Result<Option<SocketAddr>> {
	if s == "none" {
		return Ok(None);
	}
	Ok(Some(s.parse().with_context(|| format!("bad address {s}"))?))
}

/// The sr25519 key pair of a seed or secret URI (`//Alice`, a 0x-prefixed hex seed, a
/// mnemonic); `what` names it in the error (`--origin-seed`).
pub fn pair_from_seed(seed: &str, what: &str) -> anyhow::Result<sr25519::Pair> {
	sr25519::Pair::from_string(seed, None).map_err(|e| anyhow!("bad {what}: {e:?}"))
}

/// Longest secret file read: a mnemonic or secret URI is well under it.
const MAX_SECRET_FILE: u64 = 4096;

/// The secret `what` (`--origin-seed`): from `file` (its first line, trimmed) if given, else
/// `value` (the argument or its environment variable). `None` if neither is given.
pub fn secret(
	value: Option<&str>,
	file: Option<&Path>,
	what: &str,
) -> anyhow::Result<Option<String>> {
	let Some(path) = file else { return Ok(value.map(str::to_string)) };
	let meta =
		std::fs::metadata(path).with_context(|| format!("{what}-file {}", path.display()))?;
	if meta.len() > MAX_SECRET_FILE {
		bail!("{what}-file {}: longer than {MAX_SECRET_FILE} bytes", path.display());
	}
	let text =
		std::fs::read_to_string(path).with_context(|| format!("{what}-file {}", path.display()))?;
	match text.lines().next().map(str::trim) {
		Some(line) if !line.is_empty() => Ok(Some(line.to_string())),
		_ => bail!("{what}-file {}: empty", path.display()),
	}
}

/// The key pair of the secret `what` ([`secret`]), `None` if it is not given.
pub fn pair_from_secret(
	value: Option<&str>,
	file: Option<&PathBuf>,
	what: &str,
) -> anyhow::Result<Option<sr25519::Pair>> {
	secret(value, file.map(PathBuf::as_path), what)?.map(|s| pair_from_seed(&s, what)).transpose()
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn secrets_come_from_a_file_first_and_are_never_echoed() {
		let dir = tempfile::tempdir().unwrap();
		let path = dir.path().join("seed");
		std::fs::write(&path, "  //Alice  \nignored\n").unwrap();
		let got = secret(Some("//Bob"), Some(&path), "--origin-seed").unwrap();
		assert_eq!(got.as_deref(), Some("//Alice"));
		assert_eq!(secret(Some("//Bob"), None, "--origin-seed").unwrap().as_deref(), Some("//Bob"));
		assert_eq!(secret(None, None, "--origin-seed").unwrap(), None);
		std::fs::write(&path, "\n").unwrap();
		assert!(secret(None, Some(&path), "--origin-seed").is_err());
		let Err(err) = pair_from_seed("not a seed secret", "--origin-seed") else {
			panic!("not a seed")
		};
		let err = err.to_string();
		assert!(!err.contains("not a seed secret"), "{err}");
	}
}
