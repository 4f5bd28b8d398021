//! What the worker reads from the chain: its streamer settings, the credit epoch, the origin
//! key of each stream and the other streamers' endpoints, always at a finalized block.
//!
//! The reads go through [`ChainView`], implemented once below for every client with the DSP
//! runtime API (the node's full client) and in the tests by an in-memory chain; what the
//! worker makes of them (the settings in force, the per-block origin-key cache, the redirect
//! targets) is here and is tested without a node.

use super::LOG_TARGET;
use dsp_primitives::{
	CapacitySettings, EndpointsView, EpochIndex, PublicKey, StreamId, StreamView, StreamerView,
};
use dsp_runtime::{opaque::Block, AccountId, Balance, BlockNumber, Hash};
use dsp_runtime_api::DspApi;
use dsp_streaming::{protocol::ServerAddrs, server::StreamDirectory};
use parking_lot::Mutex;
use sc_client_api::HeaderBackend;
use sp_api::{ApiError, ProvideRuntimeApi};
use std::{collections::HashMap, sync::Arc};

/// Most registered streamers the worker reads per finalized block to redirect refused
/// viewers to: refusals rotate over them, `MAX_REDIRECT_SERVERS` at a time, so 64 spread the
/// load widely while one read stays small however many streamers register.
pub const REDIRECT_CANDIDATES: u32 = 64;

/// The chain reads the worker makes. Every read but [`Self::finalized_hash`] is at a block
/// the caller names.
pub trait ChainView: Send + Sync + 'static {
	/// Hash of the latest finalized block.
	fn finalized_hash(&self) -> Hash;
	/// `account`'s streamer record, or `None` if it is not a registered streamer.
	fn streamer(
		&self,
		at: Hash,
		account: &AccountId,
	) -> Result<Option<StreamerView<AccountId>>, ApiError>;
	/// The first [`REDIRECT_CANDIDATES`] registered streamers, in registry order.
	fn streamers(&self, at: Hash) -> Result<Vec<StreamerView<AccountId>>, ApiError>;
	/// The chain-wide default capacity settings.
	fn default_settings(&self, at: Hash) -> Result<CapacitySettings, ApiError>;
	/// The credit epoch of block `at`.
	fn current_epoch(&self, at: Hash) -> Result<EpochIndex, ApiError>;
	/// Stream `id`, open or closed, or `None` if no stream has that id.
	fn stream(
		&self,
		at: Hash,
		id: StreamId,
	) -> Result<Option<StreamView<AccountId, Balance>>, ApiError>;
}

/// The node's client (any client with the DSP runtime API): each read is one runtime call.
impl<C> ChainView for C
where
	C: ProvideRuntimeApi<Block> + HeaderBackend<Block> + Send + Sync + 'static,
	C::Api: DspApi<Block, AccountId, Balance, BlockNumber>,
{
	fn finalized_hash(&self) -> Hash {
		self.info().finalized_hash
	}

	fn streamer(
		&self,
		at: Hash,
		account: &AccountId,
	) -> Result<Option<StreamerView<AccountId>>, ApiError> {
		self.runtime_api().streamer(at, account.clone())
	}

	fn streamers(&self, at: Hash) -> Result<Vec<StreamerView<AccountId>>, ApiError> {
		self.runtime_api().streamers(at, None, REDIRECT_CANDIDATES)
	}

	fn default_settings(&self, at: Hash) -> Result<CapacitySettings, ApiError> {
		self.runtime_api().default_settings(at)
	}

	fn current_epoch(&self, at: Hash) -> Result<EpochIndex, ApiError> {
		self.runtime_api().current_epoch(at)
	}

	fn stream(
		&self,
		at: Hash,
		id: StreamId,
	) -> Result<Option<StreamView<AccountId, Balance>>, ApiError> {
		self.runtime_api().stream(at, id)
	}
}

/// The chain state the worker applies, read at one finalized block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSettings {
	/// Capacity settings in force for this streamer (its own, or the chain default when it is
	/// not registered or has none).
	pub capacity: CapacitySettings,
	/// Whether the node's account is a registered streamer.
	pub registered: bool,
	/// Its registered endpoints, if registered.
	pub endpoints: Option<EndpointsView>,
	/// Current credit epoch: passes name it.
	pub epoch: EpochIndex,
}

/// Reads [`ChainSettings`] for `account` at `at`.
pub fn read_settings<C: ChainView + ?Sized>(
	chain: &C,
	at: Hash,
	account: &AccountId,
) -> Result<ChainSettings, ApiError> {
	let streamer = chain.streamer(at, account)?;
	let epoch = chain.current_epoch(at)?;
	Ok(match streamer {
		Some(view) => ChainSettings {
			capacity: view.settings,
			registered: true,
			endpoints: Some(view.endpoints),
			epoch,
		},
		None => ChainSettings {
			capacity: chain.default_settings(at)?,
			registered: false,
			endpoints: None,
			epoch,
		},
	})
}

/// Origin keys of open streams, as the latest finalized block has them. Lookups are cached
/// per finalized block, so a burst of viewers costs one runtime call per stream and block;
/// a stream registered or closed on chain is seen at the next finalized block.
pub struct ChainRegistry<C> {
	chain: Arc<C>,
	cache: Mutex<(Hash, HashMap<StreamId, Option<PublicKey>>)>,
}

impl<C: ChainView> ChainRegistry<C> {
	/// A registry reading through `chain`.
	pub fn new(chain: Arc<C>) -> Self {
		Self { chain, cache: Mutex::new((Hash::default(), HashMap::new())) }
	}

	fn lookup(&self, at: Hash, stream: StreamId) -> Option<PublicKey> {
		match self.chain.stream(at, stream) {
			Ok(view) => view.filter(|s| s.open).map(|s| s.signing_key),
			Err(e) => {
				log::warn!(target: LOG_TARGET, "reading stream {stream} at {at}: {e}");
				None
			}
		}
	}
}

impl<C> std::fmt::Debug for ChainRegistry<C> {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str("ChainRegistry")
	}
}

impl<C: ChainView> StreamDirectory for ChainRegistry<C> {
	fn origin_key(&self, stream: StreamId) -> Option<PublicKey> {
		let at = self.chain.finalized_hash();
		{
			let mut cache = self.cache.lock();
			if cache.0 != at {
				*cache = (at, HashMap::new());
			}
			if let Some(key) = cache.1.get(&stream) {
				return *key;
			}
		}
		// The runtime call runs without the lock, so sessions asking for other (cached) streams
		// are not held up by it; two sessions missing the same stream at once both call.
		let key = self.lookup(at, stream);
		let mut cache = self.cache.lock();
		if cache.0 == at {
			// Bounded: at most one entry per stream id asked in one block; ids nobody
			// registered are cached too, so a flood of bogus ids costs one runtime call each
			// per block.
			if cache.1.len() >= MAX_CACHED_STREAMS {
				cache.1.clear();
			}
			cache.1.insert(stream, key);
		}
		key
	}
}

/// Stream ids remembered per block before the cache starts over (a few hundred KiB at most).
const MAX_CACHED_STREAMS: usize = 8192;

/// A stream's registered bitrate (kbit/s) at the latest finalized block.
pub fn stream_bitrate<C: ChainView + ?Sized>(chain: &C, stream: StreamId) -> Option<u32> {
	let at = chain.finalized_hash();
	chain.stream(at, stream).ok().flatten().map(|s| s.bitrate_kbps)
}

/// The other registered streamers' direct endpoints at `at`, in registry order: where the
/// worker redirects viewers it cannot admit. Streamers without a usable endpoint (none
/// announced, not UTF-8, or over the wire limits) are left out.
pub fn redirect_targets<C: ChainView + ?Sized>(
	chain: &C,
	at: Hash,
	own: &AccountId,
) -> Result<Vec<ServerAddrs>, ApiError> {
	let text =
		|bytes: &[u8]| std::str::from_utf8(bytes).ok().filter(|s| !s.is_empty()).map(str::to_owned);
	Ok(chain
		.streamers(at)?
		.into_iter()
		.filter(|s| &s.account != own)
		.map(|s| ServerAddrs { tcp: text(&s.endpoints.tcp), quic: text(&s.endpoints.quic) })
		.filter(|a| (a.tcp.is_some() || a.quic.is_some()) && a.check().is_ok())
		.collect())
}

#[cfg(test)]
mod tests {
	use super::*;
	use dsp_primitives::Perbill;
	use sp_core::{sr25519, Pair};
	use std::sync::atomic::{AtomicUsize, Ordering};

	/// An in-memory chain: one state whatever the block, a finalized hash the test moves, and
	/// a count of stream reads.
	#[derive(Default)]
	struct FakeChain {
		finalized: Mutex<Hash>,
		streamers: Vec<StreamerView<AccountId>>,
		default: Option<CapacitySettings>,
		epoch: EpochIndex,
		streams: Mutex<HashMap<StreamId, StreamView<AccountId, Balance>>>,
		stream_reads: AtomicUsize,
		/// Every read fails (a pruned block, a runtime without the DSP API).
		broken: bool,
	}

	fn failure() -> ApiError {
		ApiError::UnknownBlock("pruned".into())
	}

	impl FakeChain {
		fn ok<T>(&self, value: T) -> Result<T, ApiError> {
			if self.broken {
				Err(failure())
			} else {
				Ok(value)
			}
		}

		fn finalize(&self, block: u8) {
			*self.finalized.lock() = Hash::repeat_byte(block);
		}
	}

	impl ChainView for FakeChain {
		fn finalized_hash(&self) -> Hash {
			*self.finalized.lock()
		}

		fn streamer(
			&self,
			_at: Hash,
			account: &AccountId,
		) -> Result<Option<StreamerView<AccountId>>, ApiError> {
			self.ok(self.streamers.iter().find(|s| &s.account == account).cloned())
		}

		fn streamers(&self, _at: Hash) -> Result<Vec<StreamerView<AccountId>>, ApiError> {
			self.ok(self.streamers.clone())
		}

		fn default_settings(&self, _at: Hash) -> Result<CapacitySettings, ApiError> {
			self.ok(self.default.unwrap_or_else(CapacitySettings::spec_default))
		}

		fn current_epoch(&self, _at: Hash) -> Result<EpochIndex, ApiError> {
			self.ok(self.epoch)
		}

		fn stream(
			&self,
			_at: Hash,
			id: StreamId,
		) -> Result<Option<StreamView<AccountId, Balance>>, ApiError> {
			self.stream_reads.fetch_add(1, Ordering::Relaxed);
			self.ok(self.streams.lock().get(&id).cloned())
		}
	}

	fn account(seed: &str) -> AccountId {
		AccountId::from(key(seed))
	}

	fn key(seed: &str) -> PublicKey {
		sr25519::Pair::from_string(seed, None).expect("dev seed").public()
	}

	fn streamer(seed: &str, tcp: &[u8], quic: &[u8]) -> StreamerView<AccountId> {
		let settings = CapacitySettings { max_streams: 10, streaming_rate: Perbill::zero() };
		StreamerView {
			account: account(seed),
			endpoints: EndpointsView {
				tcp: tcp.to_vec(),
				quic: quic.to_vec(),
				..Default::default()
			},
			settings,
			uses_default: false,
			p2p_threshold: settings.p2p_threshold(),
		}
	}

	fn stream(id: StreamId, signer: &str, open: bool) -> StreamView<AccountId, Balance> {
		StreamView {
			id,
			origin: account("//Origin"),
			signing_key: key(signer),
			bitrate_kbps: 700,
			price_per_unit: 1,
			viewer_cap_per_epoch: 100,
			open,
			epoch_budget: 1_000,
			committed: 25_000,
			epoch_left: 1_000,
			passes_open: open,
		}
	}

	fn chain_with_streams(
		streams: impl IntoIterator<Item = StreamView<AccountId, Balance>>,
	) -> Arc<FakeChain> {
		let chain = FakeChain::default();
		chain.streams.lock().extend(streams.into_iter().map(|s| (s.id, s)));
		chain.finalize(1);
		Arc::new(chain)
	}

	#[test]
	fn a_registered_streamer_reads_its_own_settings_and_endpoints() {
		let alice = streamer("//Alice", b"127.0.0.1:7000", b"");
		let chain = FakeChain { streamers: vec![alice.clone()], epoch: 4, ..Default::default() };
		let settings = read_settings(&chain, Hash::zero(), &account("//Alice")).unwrap();
		assert_eq!(
			settings,
			ChainSettings {
				capacity: alice.settings,
				registered: true,
				endpoints: Some(alice.endpoints),
				epoch: 4,
			}
		);
	}

	#[test]
	fn an_unregistered_account_gets_the_chain_default() {
		let default =
			CapacitySettings { max_streams: 3, streaming_rate: Perbill::from_percent(50) };
		let chain = FakeChain { default: Some(default), epoch: 2, ..Default::default() };
		let settings = read_settings(&chain, Hash::zero(), &account("//Bob")).unwrap();
		assert_eq!(
			settings,
			ChainSettings { capacity: default, registered: false, endpoints: None, epoch: 2 }
		);
		let broken = FakeChain { broken: true, ..Default::default() };
		assert!(read_settings(&broken, Hash::zero(), &account("//Bob")).is_err());
	}

	#[test]
	fn origin_keys_are_read_once_per_stream_and_finalized_block() {
		let chain = chain_with_streams([stream(0, "//Origin", true)]);
		let registry = ChainRegistry::new(chain.clone());
		assert_eq!(registry.origin_key(0), Some(key("//Origin")));
		assert_eq!(registry.origin_key(0), Some(key("//Origin")));
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), 1);

		// A new finalized block: the key is read again, and a change on chain is seen.
		chain.streams.lock().insert(0, stream(0, "//NewKey", true));
		assert_eq!(registry.origin_key(0), Some(key("//Origin")), "same block, cached");
		chain.finalize(2);
		assert_eq!(registry.origin_key(0), Some(key("//NewKey")));
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), 2);
	}

	#[test]
	fn closed_and_unknown_streams_have_no_origin_key_and_are_cached_too() {
		let chain = chain_with_streams([stream(1, "//Origin", false)]);
		let registry = ChainRegistry::new(chain.clone());
		assert_eq!(registry.origin_key(1), None, "closed");
		assert_eq!(registry.origin_key(9), None, "unknown");
		assert_eq!(registry.origin_key(9), None);
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), 2);
		// Registered on chain later: found at the next finalized block.
		chain.streams.lock().insert(9, stream(9, "//Origin", true));
		chain.finalize(2);
		assert_eq!(registry.origin_key(9), Some(key("//Origin")));
	}

	#[test]
	fn a_failed_read_counts_as_unknown_for_the_rest_of_the_block() {
		let chain = Arc::new(FakeChain { broken: true, ..Default::default() });
		chain.streams.lock().insert(0, stream(0, "//Origin", true));
		let registry = ChainRegistry::new(chain.clone());
		assert_eq!(registry.origin_key(0), None);
		assert_eq!(registry.origin_key(0), None);
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), 1);
	}

	#[test]
	fn the_cache_starts_over_beyond_its_bound() {
		let chain = chain_with_streams([stream(0, "//Origin", true)]);
		let registry = ChainRegistry::new(chain.clone());
		assert_eq!(registry.origin_key(0), Some(key("//Origin")));
		for bogus in 1..MAX_CACHED_STREAMS as StreamId {
			assert_eq!(registry.origin_key(bogus), None);
		}
		assert_eq!(registry.cache.lock().1.len(), MAX_CACHED_STREAMS);
		// One more id: the cache is cleared first, so stream 0 is read again afterwards.
		assert_eq!(registry.origin_key(MAX_CACHED_STREAMS as StreamId), None);
		assert_eq!(registry.cache.lock().1.len(), 1);
		let reads = chain.stream_reads.load(Ordering::Relaxed);
		assert_eq!(registry.origin_key(0), Some(key("//Origin")));
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), reads + 1);
	}

	#[test]
	fn the_bitrate_is_read_at_the_finalized_block() {
		let chain = chain_with_streams([stream(0, "//Origin", true)]);
		assert_eq!(stream_bitrate(&*chain, 0), Some(700));
		assert_eq!(stream_bitrate(&*chain, 1), None);
	}

	#[test]
	fn redirect_targets_are_the_other_streamers_with_a_usable_endpoint() {
		let too_long = vec![b'a'; dsp_streaming::protocol::MAX_SERVER_ADDR_LEN + 1];
		let chain = FakeChain {
			streamers: vec![
				streamer("//Alice", b"10.0.0.1:7000", b"10.0.0.1:7001"),
				streamer("//Bob", b"10.0.0.2:7000", b""),
				streamer("//Charlie", b"", b""),
				streamer("//Dave", &[0xff, 0xfe], b"10.0.0.4:7001"),
				streamer("//Eve", &too_long, b""),
				streamer("//Ferdie", b"", b"10.0.0.6:7001"),
			],
			..Default::default()
		};
		let targets = redirect_targets(&chain, Hash::zero(), &account("//Alice")).unwrap();
		let addr = |tcp: Option<&str>, quic: Option<&str>| ServerAddrs {
			tcp: tcp.map(str::to_owned),
			quic: quic.map(str::to_owned),
		};
		assert_eq!(
			targets,
			vec![
				addr(Some("10.0.0.2:7000"), None),
				addr(None, Some("10.0.0.4:7001")),
				addr(None, Some("10.0.0.6:7001")),
			]
		);
		let broken = FakeChain { broken: true, ..Default::default() };
		assert!(redirect_targets(&broken, Hash::zero(), &account("//Alice")).is_err());
	}
}
