//! The node's streaming key: an sr25519 key in the keystore under key type `dsps`.
//!
//! Its account is the node's streamer account on chain (the one that called
//! `register_streamer`, whose capacity settings the worker applies), and it signs the viewer
//! passes the node issues in P2P mode; an origin that lists it among its pass signers pays
//! for them. Insert one with
//! `dsp-node key insert --key-type dsps --scheme sr25519 --suri <secret>`; development chains
//! insert the dev seed (`//Alice` for `--dev`) themselves.

use sc_keystore::LocalKeystore;
use sp_core::{crypto::KeyTypeId, sr25519};
use sp_keystore::Keystore;

/// Key type of the streaming key in the keystore.
pub const KEY_TYPE: KeyTypeId = KeyTypeId(*b"dsps");

mod app {
	use super::KEY_TYPE;
	use sp_application_crypto::{app_crypto, sr25519};
	app_crypto!(sr25519, KEY_TYPE);
}

/// Why the worker has no streaming key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
	/// No `dsps` key in the keystore.
	#[error(
		"no streaming key (key type `dsps`) in the keystore; insert one with \
		 `dsp-node key insert --key-type dsps --scheme sr25519 --suri <secret>`"
	)]
	Missing,
	/// Several keys and no choice made.
	#[error(
		"{0} streaming keys (key type `dsps`) in the keystore; choose one with --streamer-key"
	)]
	Ambiguous(usize),
	/// The chosen key is not in the keystore.
	#[error("--streamer-key {0} is not in the keystore under key type `dsps`")]
	NotFound(String),
	/// The keystore failed.
	#[error("keystore: {0}")]
	Keystore(String),
}

/// Inserts the development seed as the streaming key, if none is there yet.
pub fn insert_dev_key(keystore: &LocalKeystore, seed: &str) -> Result<(), KeyError> {
	if keystore.sr25519_public_keys(KEY_TYPE).is_empty() {
		keystore
			.sr25519_generate_new(KEY_TYPE, Some(seed))
			.map_err(|e| KeyError::Keystore(e.to_string()))?;
	}
	Ok(())
}

/// The streaming key pair: `wanted` if given, else the only `dsps` key in the keystore.
pub fn streaming_pair(
	keystore: &LocalKeystore,
	wanted: Option<sr25519::Public>,
) -> Result<sr25519::Pair, KeyError> {
	let keys = keystore.sr25519_public_keys(KEY_TYPE);
	let public = match (wanted, keys.as_slice()) {
		(Some(w), keys) if keys.contains(&w) => w,
		(Some(w), _) => return Err(KeyError::NotFound(hex::encode(w.0))),
		(None, []) => return Err(KeyError::Missing),
		(None, [one]) => *one,
		(None, keys) => return Err(KeyError::Ambiguous(keys.len())),
	};
	let pair = keystore
		.key_pair::<app::Pair>(&app::Public::from(public))
		.map_err(|e| KeyError::Keystore(e.to_string()))?
		.ok_or_else(|| KeyError::NotFound(hex::encode(public.0)))?;
	Ok(pair.into_inner())
}

#[cfg(test)]
mod tests {
	use super::*;
	use sp_core::Pair;

	#[test]
	fn dev_key_is_inserted_once_and_found() {
		let keystore = LocalKeystore::in_memory();
		assert!(matches!(streaming_pair(&keystore, None), Err(KeyError::Missing)));
		insert_dev_key(&keystore, "//Alice").unwrap();
		insert_dev_key(&keystore, "//Bob").unwrap(); // already has one: unchanged
		let alice = sr25519::Pair::from_string("//Alice", None).unwrap();
		let pair = streaming_pair(&keystore, None).unwrap();
		assert_eq!(pair.public(), alice.public());
		assert_eq!(
			streaming_pair(&keystore, Some(alice.public())).unwrap().public(),
			alice.public()
		);
		let bob = sr25519::Pair::from_string("//Bob", None).unwrap().public();
		assert!(matches!(streaming_pair(&keystore, Some(bob)), Err(KeyError::NotFound(_))));
		keystore.sr25519_generate_new(KEY_TYPE, Some("//Charlie")).unwrap();
		assert!(matches!(streaming_pair(&keystore, None), Err(KeyError::Ambiguous(2))));
	}
}
