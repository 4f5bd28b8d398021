//! Parsing helpers the subcommands share: hex keys and hashes, addresses, seeds, the
//! `--transport` choice.

use anyhow::{anyhow, Context};
use clap::ValueEnum;
use dsp_primitives::PublicKey;
use dsp_streaming::net::tls::ServerVerification;
use sp_core::{sr25519, Pair};
use std::net::SocketAddr;

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
