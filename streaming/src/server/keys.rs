//! Which key signs which stream: the origin keys fixed at start and the [`StreamDirectory`] the
//! node backs with the chain's registry.

use dsp_primitives::{PublicKey, StreamId};
use std::{collections::HashMap, sync::Arc};

/// Where the server learns streams' origin keys when they are not fixed at start: the node
/// implements it over the chain's registry (open streams and their signing keys, as of the
/// latest finalized block), so streams registered or closed while the server runs take effect
/// without restart. Called when a session names a stream, in the session's task;
/// implementations should cache, ids without an open stream too (anybody can name any id: a
/// flood of bogus ids must not cost a chain read each, see the node's `UnknownStreams`).
pub trait StreamDirectory: Send + Sync + std::fmt::Debug {
	/// The key that must sign `stream`'s headers, or `None` if the stream is unknown or closed.
	fn origin_key(&self, stream: StreamId) -> Option<PublicKey>;

	/// What [`Self::origin_key`] would answer if answering costs nothing (a cache hit, open or
	/// known absent): `Some(answer)`; `None` if it needs a read of the chain. A server's
	/// per-address lookup budget charges only reads, so that an address that spent its budget
	/// on fresh ids still finds the streams the cache knows. Default: every lookup may read.
	fn cached_origin_key(&self, _stream: StreamId) -> Option<Option<PublicKey>> {
		None
	}

	/// Whether a viewer pass for `stream` can be paid now: the node's registry answers from
	/// the chain (the stream's origin committed escrow to it, this epoch's budget is not spent,
	/// and no escrow withdrawal is requested). A server must not issue passes that cannot be
	/// paid: seeders would serve for nothing. Default: yes (no chain to ask).
	fn passes_open(&self, _stream: StreamId) -> bool {
		true
	}
}

/// Which origin key signs which stream: fixed keys (given on the command line) first, then the
/// [`StreamDirectory`] if there is one.
#[derive(Clone, Debug, Default)]
pub struct OriginKeys {
	/// Key for streams not listed in `per_stream`.
	pub default: Option<PublicKey>,
	/// Keys of individual streams.
	pub per_stream: HashMap<StreamId, PublicKey>,
	/// Asked for streams neither `per_stream` nor `default` covers.
	pub directory: Option<Arc<dyn StreamDirectory>>,
}

impl OriginKeys {
	/// The key that must sign `stream`'s headers.
	pub fn get(&self, stream: StreamId) -> Option<PublicKey> {
		self.per_stream
			.get(&stream)
			.copied()
			.or(self.default)
			.or_else(|| self.directory.as_ref().and_then(|d| d.origin_key(stream)))
	}

	/// Whether passes for `stream` can be paid now ([`StreamDirectory::passes_open`]); streams
	/// with a key fixed at start have no chain to ask and are open.
	pub fn passes_open(&self, stream: StreamId) -> bool {
		if self.per_stream.contains_key(&stream) || self.default.is_some() {
			return true;
		}
		self.directory.as_ref().is_some_and(|d| d.passes_open(stream))
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::server::test_util::origin;
	use sp_core::Pair;

	#[test]
	fn origin_keys_fall_back_to_the_directory_and_follow_its_changes() {
		#[derive(Debug, Default)]
		struct Registry(std::sync::Mutex<HashMap<StreamId, PublicKey>>);
		impl StreamDirectory for Registry {
			fn origin_key(&self, stream: StreamId) -> Option<PublicKey> {
				self.0.lock().unwrap().get(&stream).copied()
			}
		}
		let registry = Arc::new(Registry::default());
		let fixed = sp_core::sr25519::Pair::from_string("//Fixed", None).unwrap().public();
		let keys = OriginKeys {
			per_stream: HashMap::from([(1, fixed)]),
			directory: Some(registry.clone()),
			..Default::default()
		};
		assert_eq!(keys.get(2), None);
		registry.0.lock().unwrap().insert(2, origin().public());
		assert_eq!(keys.get(2), Some(origin().public()), "a stream registered later is found");
		registry.0.lock().unwrap().insert(1, origin().public());
		assert_eq!(keys.get(1), Some(fixed), "fixed keys win over the directory");
		registry.0.lock().unwrap().remove(&2);
		assert_eq!(keys.get(2), None, "a closed stream is refused again");
	}

	#[test]
	fn passes_are_open_as_the_directory_says_and_for_fixed_keys() {
		#[derive(Debug)]
		struct Closed;
		impl StreamDirectory for Closed {
			fn origin_key(&self, _: StreamId) -> Option<PublicKey> {
				Some(origin().public())
			}
			fn passes_open(&self, stream: StreamId) -> bool {
				stream == 3
			}
		}
		let keys = OriginKeys {
			per_stream: HashMap::from([(1, origin().public())]),
			directory: Some(Arc::new(Closed)),
			..Default::default()
		};
		assert!(keys.passes_open(1), "a fixed key has no chain to ask");
		assert!(!keys.passes_open(2), "the directory closed stream 2's passes");
		assert!(keys.passes_open(3));
		assert!(!OriginKeys::default().passes_open(1), "no key, no pass");
	}
}
