//! What the worker reads from the chain: its streamer settings, the credit epoch, the origin
//! key of each stream and the other streamers' endpoints, always at a finalized block.
//!
//! The reads go through [`ChainView`], implemented once below for every client with the DSP
//! runtime API (the node's full client) and in the tests by an in-memory chain; what the
//! worker makes of them (the settings in force, the per-block origin-key cache, the
//! [`UnknownStreams`] cache of ids without an open stream, the redirect targets) is here and
//! is tested without a node.

use super::LOG_TARGET;
use dsp_primitives::{
	CapacitySettings, EndpointsView, EpochIndex, PublicKey, StreamId, StreamView, StreamerView,
};
use dsp_runtime::{opaque::Block, AccountId, Balance, BlockNumber, Hash};
use dsp_runtime_api::DspApi;
use dsp_streaming::{
	clock::{millis, Clock, Millis},
	protocol::ServerAddrs,
	server::StreamDirectory,
};
use parking_lot::Mutex;
use sc_client_api::HeaderBackend;
use sp_api::{ApiError, ProvideRuntimeApi};
use std::{collections::HashMap, sync::Arc, time::Duration};

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

/// What the chain has under one stream id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
	/// No stream has this id.
	Nothing,
	/// A closed stream (closing is final on chain).
	Closed,
	/// An open stream and the key that signs it.
	Open(PublicKey),
}

/// How long a closed stream is remembered as closed. Closing is final on chain, so this only
/// bounds how long an entry stays; 10 min: a flood of closed ids costs one read per id per
/// 10 min instead of one per id and block.
pub const CLOSED_TTL: Duration = Duration::from_secs(600);

/// Most closed streams remembered (a few tens of bytes each); beyond it, further closed ids
/// are read from the chain each time until entries expire.
pub const MAX_CLOSED: usize = 4096;

/// Stream ids the chain has no open stream for, remembered across finalized blocks, sans-IO
/// (the chain read is passed in, time as [`Millis`]).
///
/// The pallet numbers streams `0, 1, 2, …` (`NextStreamId`) and never removes one, so "no
/// stream has id `n`" means `n >= NextStreamId`, and so does every larger id. The cache keeps
/// that bound rather than single ids: once it knows `NextStreamId` exactly (found by
/// bisection, at most 64 reads, the first time an unknown id is asked), every unknown id costs
/// nothing. It is not wiped by a new block: at the first lookup of an unknown id in a new
/// finalized block, one read of id `NextStreamId` checks that no stream was created since; if
/// one was, the bound is dropped (and found again, a few reads). Closed streams are kept
/// apart, [`MAX_CLOSED`] of them for [`CLOSED_TTL`]. Memory: a few KiB at most.
#[derive(Debug, Default)]
pub struct UnknownStreams {
	/// One past the highest id seen to have a stream: a lower bound of `NextStreamId` (it
	/// only grows).
	present_below: StreamId,
	/// The lowest id seen to have no stream, at block `checked_at`: an upper bound of
	/// `NextStreamId` there.
	absent_from: Option<StreamId>,
	checked_at: Hash,
	/// Closed streams, and when they were read.
	closed: HashMap<StreamId, Millis>,
}

impl UnknownStreams {
	/// What the chain has under `id` at finalized block `at`, reading it with `read` (`None`:
	/// the read failed) only when the cache does not know. `None` if a read failed.
	pub fn lookup(
		&mut self,
		at: Hash,
		now: Millis,
		id: StreamId,
		mut read: impl FnMut(StreamId) -> Option<Found>,
	) -> Option<Found> {
		if let Some(&when) = self.closed.get(&id) {
			if now.saturating_sub(when) < millis(CLOSED_TTL) {
				return Some(Found::Closed);
			}
			self.closed.remove(&id);
		}
		if id >= self.present_below {
			if let Some(bound) = self.absent_from {
				if self.checked_at != at {
					// A new block: was a stream created since (is `bound` taken now)?
					match read(bound)? {
						Found::Nothing => self.checked_at = at,
						found => {
							self.absent_from = None;
							self.record(at, now, bound, found);
							if bound == id {
								return Some(found);
							}
						}
					}
				}
			}
			if self.absent_from.is_some_and(|bound| id >= bound) {
				return Some(Found::Nothing);
			}
		}
		let found = read(id)?;
		self.record(at, now, id, found);
		if found == Found::Nothing {
			// Find NextStreamId, so that no other unknown id needs a read.
			while let Some(bound) = self.absent_from.filter(|b| *b > self.present_below) {
				let mid = self.present_below + (bound - self.present_below) / 2;
				let Some(f) = read(mid) else { break };
				self.record(at, now, mid, f);
			}
		}
		Some(found)
	}

	fn record(&mut self, at: Hash, now: Millis, id: StreamId, found: Found) {
		match found {
			Found::Nothing if id >= self.present_below => {
				if self.checked_at != at || self.absent_from.is_none() {
					self.absent_from = Some(id);
					self.checked_at = at;
				} else {
					self.absent_from = self.absent_from.map(|b| b.min(id));
				}
			}
			// An id below one that exists: the pallet no longer numbers densely. Nothing is
			// inferred from it.
			Found::Nothing => {}
			Found::Closed | Found::Open(_) => {
				self.present_below = self.present_below.max(id.saturating_add(1));
				if found == Found::Closed {
					self.remember_closed(now, id);
				}
			}
		}
	}

	fn remember_closed(&mut self, now: Millis, id: StreamId) {
		if self.closed.len() >= MAX_CLOSED {
			let ttl = millis(CLOSED_TTL);
			self.closed.retain(|_, when| now.saturating_sub(*when) < ttl);
		}
		if self.closed.len() < MAX_CLOSED {
			self.closed.insert(id, now);
		}
	}
}

/// Origin keys of open streams, as the latest finalized block has them. Keys of open streams
/// are cached per finalized block, so a burst of viewers costs one runtime call per stream and
/// block; ids without an open stream go through [`UnknownStreams`], which is kept across
/// blocks, so a flood of bogus ids costs a bounded number of calls. A stream registered or
/// closed on chain is seen at the next finalized block.
pub struct ChainRegistry<C> {
	chain: Arc<C>,
	cache: Mutex<(Hash, HashMap<StreamId, Option<PublicKey>>)>,
	/// Whether each stream's passes can be paid, per finalized block (issue 11, P3): read once
	/// per stream and block, for streams with an origin key only (so bounded like `cache`).
	passes: Mutex<(Hash, HashMap<StreamId, bool>)>,
	/// Held during its reads (at most 65 in a row, rare): sessions asking unknown ids at once
	/// wait for one search instead of each running it.
	unknown: Mutex<UnknownStreams>,
	clock: Clock,
}

impl<C: ChainView> ChainRegistry<C> {
	/// A registry reading through `chain`.
	pub fn new(chain: Arc<C>) -> Self {
		Self {
			chain,
			cache: Mutex::new((Hash::default(), HashMap::new())),
			passes: Mutex::new((Hash::default(), HashMap::new())),
			unknown: Mutex::new(UnknownStreams::default()),
			clock: Clock::new(),
		}
	}

	fn read(&self, at: Hash, stream: StreamId) -> Option<Found> {
		match self.chain.stream(at, stream) {
			Ok(None) => Some(Found::Nothing),
			Ok(Some(view)) if view.open => Some(Found::Open(view.signing_key)),
			Ok(Some(_)) => Some(Found::Closed),
			Err(e) => {
				log::warn!(target: LOG_TARGET, "reading stream {stream} at {at}: {e}");
				None
			}
		}
	}

	/// What the chain has under `stream`, through [`UnknownStreams`]; `None` if a read failed.
	fn lookup(&self, at: Hash, stream: StreamId) -> Option<Found> {
		let now = self.clock.now();
		self.unknown.lock().lookup(at, now, stream, |id| self.read(at, id))
	}
}

impl<C> std::fmt::Debug for ChainRegistry<C> {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str("ChainRegistry")
	}
}

impl<C: ChainView> StreamDirectory for ChainRegistry<C> {
	fn passes_open(&self, stream: StreamId) -> bool {
		self.read_passes_open(stream)
	}

	fn cached_origin_key(&self, stream: StreamId) -> Option<Option<PublicKey>> {
		let at = self.chain.finalized_hash();
		{
			let cache = self.cache.lock();
			if cache.0 == at {
				if let Some(key) = cache.1.get(&stream) {
					return Some(*key);
				}
			}
		}
		// `UnknownStreams` answers closed ids and ids past `NextStreamId` without a read; a
		// read it would need is reported as "not cached" (the closure) and changes nothing.
		let now = self.clock.now();
		match self.unknown.lock().lookup(at, now, stream, |_| None)? {
			Found::Open(key) => Some(Some(key)),
			Found::Closed | Found::Nothing => Some(None),
		}
	}

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
		let found = self.lookup(at, stream);
		let key = match found {
			Some(Found::Open(key)) => Some(key),
			_ => None,
		};
		let mut cache = self.cache.lock();
		// Open streams, and failed reads (a broken runtime is asked once per id and block);
		// ids without an open stream are [`UnknownStreams`]' business.
		let cached = matches!(found, None | Some(Found::Open(_)));
		if cache.0 == at && cached {
			if cache.1.len() >= MAX_CACHED_STREAMS {
				cache.1.clear();
			}
			cache.1.insert(stream, key);
		}
		key
	}
}

impl<C: ChainView> ChainRegistry<C> {
	/// The body of [`StreamDirectory::passes_open`]: the chain's `passes_open` of the stream at
	/// the latest finalized block (a failed read closes them: no pass that might not be paid).
	fn read_passes_open(&self, stream: StreamId) -> bool {
		let at = self.chain.finalized_hash();
		{
			let mut cache = self.passes.lock();
			if cache.0 != at {
				*cache = (at, HashMap::new());
			}
			if let Some(open) = cache.1.get(&stream) {
				return *open;
			}
		}
		if self.origin_key(stream).is_none() {
			// Unknown or closed: no runtime call beyond what `origin_key` bounds.
			return false;
		}
		let open = match self.chain.stream(at, stream) {
			Ok(view) => view.is_some_and(|v| v.passes_open),
			Err(e) => {
				log::warn!(target: LOG_TARGET, "reading stream {stream} at {at}: {e}");
				false
			}
		};
		let mut cache = self.passes.lock();
		if cache.0 == at {
			if cache.1.len() >= MAX_CACHED_STREAMS {
				cache.1.clear();
			}
			cache.1.insert(stream, open);
		}
		open
	}
}

/// Stream ids remembered per block before the cache starts over (a few hundred KiB at most):
/// open streams, and ids whose read failed.
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

	/// Issue 11, P3: once the chain closes a stream's passes (its origin requested a
	/// withdrawal, or its epoch budget is spent), the worker issues none from the next
	/// finalized block on.
	#[test]
	fn passes_close_at_the_first_finalized_block_that_closes_them() {
		let chain = chain_with_streams([stream(1, "//Alice", true)]);
		let registry = ChainRegistry::new(chain.clone());
		assert!(registry.passes_open(1));
		chain.streams.lock().get_mut(&1).expect("stream 1").passes_open = false;
		assert!(registry.passes_open(1), "read once per stream and block");
		chain.finalize(2);
		assert!(!registry.passes_open(1), "closed from the next finalized block on");
		assert!(!registry.passes_open(9), "an unknown stream has no passes");
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

	/// What the per-address lookup budget lets through for free: answers that need no read,
	/// and nothing that does (asking reads nothing and changes nothing).
	#[test]
	fn cached_answers_read_nothing_and_reads_are_reported_as_not_cached() {
		let chain = chain_with_streams([stream(0, "//Origin", true), stream(1, "//Origin", false)]);
		let registry = ChainRegistry::new(chain.clone());
		assert_eq!(registry.cached_origin_key(0), None, "not read yet");
		assert_eq!(registry.cached_origin_key(9), None);
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), 0);
		assert_eq!(registry.origin_key(0), Some(key("//Origin")));
		assert_eq!(registry.origin_key(1), None);
		assert_eq!(registry.origin_key(9), None);
		let reads = chain.stream_reads.load(Ordering::Relaxed);
		assert_eq!(registry.cached_origin_key(0), Some(Some(key("//Origin"))));
		assert_eq!(registry.cached_origin_key(1), Some(None), "closed");
		assert_eq!(registry.cached_origin_key(9), Some(None), "past NextStreamId");
		assert_eq!(registry.cached_origin_key(1_000_000), Some(None));
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), reads);
		// A new block: the open stream's key must be read again, so it is not cached.
		chain.finalize(2);
		assert_eq!(registry.cached_origin_key(0), None);
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), reads);
	}

	#[test]
	fn closed_and_unknown_streams_have_no_origin_key_and_are_cached_too() {
		let chain = chain_with_streams([stream(0, "//Origin", true), stream(1, "//Origin", false)]);
		let registry = ChainRegistry::new(chain.clone());
		assert_eq!(registry.origin_key(1), None, "closed");
		assert_eq!(registry.origin_key(9), None, "unknown");
		assert_eq!(registry.origin_key(9), None);
		assert_eq!(registry.origin_key(1), None);
		// 1, then 9 and the bisection down to NextStreamId = 2 (5, 3, 2).
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), 5);
		// Registered on chain later (as id 2, the next): found at the next finalized block.
		chain.streams.lock().insert(2, stream(2, "//Origin", true));
		chain.finalize(2);
		assert_eq!(registry.origin_key(2), Some(key("//Origin")));
		assert_eq!(registry.origin_key(9), None);
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
		let n = MAX_CACHED_STREAMS as StreamId;
		// One key derivation, not one per stream (slow in debug builds).
		let open = stream(0, "//Origin", true);
		let origin = open.signing_key;
		let chain = chain_with_streams((0..=n).map(|id| StreamView { id, ..open.clone() }));
		let registry = ChainRegistry::new(chain.clone());
		for id in 0..n {
			assert_eq!(registry.origin_key(id), Some(origin));
		}
		assert_eq!(registry.cache.lock().1.len(), MAX_CACHED_STREAMS);
		// One more id: the cache is cleared first, so stream 0 is read again afterwards.
		assert_eq!(registry.origin_key(n), Some(origin));
		assert_eq!(registry.cache.lock().1.len(), 1);
		let reads = chain.stream_reads.load(Ordering::Relaxed);
		assert_eq!(registry.origin_key(0), Some(key("//Origin")));
		assert_eq!(chain.stream_reads.load(Ordering::Relaxed), reads + 1);
	}

	#[test]
	fn unknown_ids_are_known_across_blocks_until_a_stream_is_created() {
		let (a, b, c) = (Hash::repeat_byte(1), Hash::repeat_byte(2), Hash::repeat_byte(3));
		// The chain: ids below `next` exist, 1 is closed; every read is counted.
		let next = std::cell::Cell::new(3u64);
		let reads = std::cell::Cell::new(0);
		let read = |id: StreamId| {
			reads.set(reads.get() + 1);
			Some(match id {
				_ if id >= next.get() => Found::Nothing,
				1 => Found::Closed,
				_ => Found::Open(key("//Origin")),
			})
		};
		let mut u = UnknownStreams::default();
		assert_eq!(u.lookup(a, 0, 1_000, read), Some(Found::Nothing));
		let search = reads.get();
		assert!(search <= 12, "{search}");
		assert_eq!((u.present_below, u.absent_from), (3, Some(3)), "NextStreamId found");
		assert_eq!(u.lookup(a, 0, 7, read), Some(Found::Nothing));
		assert_eq!(reads.get(), search, "no read within the bound");
		// A new block without a new stream: one read, then nothing.
		for id in [3, 50, u64::MAX] {
			assert_eq!(u.lookup(b, 0, id, read), Some(Found::Nothing));
		}
		assert_eq!(reads.get(), search + 1);
		// A stream created: the next block's check sees it and drops the bound.
		next.set(4);
		assert_eq!(u.lookup(b, 0, 3, read), Some(Found::Nothing), "same block: not yet");
		assert_eq!(u.lookup(c, 0, 3, read), Some(Found::Open(key("//Origin"))));
		assert_eq!(u.lookup(c, 0, 4, read), Some(Found::Nothing));
		assert_eq!(u.absent_from, Some(4));
		// Closed streams (1 was read by the search at time 0): remembered for CLOSED_TTL,
		// then read again.
		let before = reads.get();
		assert_eq!(u.lookup(c, 0, 1, read), Some(Found::Closed));
		assert_eq!(u.lookup(c, millis(CLOSED_TTL) - 1, 1, read), Some(Found::Closed));
		assert_eq!(reads.get(), before);
		assert_eq!(u.lookup(c, millis(CLOSED_TTL), 1, read), Some(Found::Closed));
		assert_eq!(reads.get(), before + 1);
		// A failed read answers nothing and teaches nothing.
		let mut fresh = UnknownStreams::default();
		assert_eq!(fresh.lookup(a, 0, 9, |_| None), None);
		assert_eq!((fresh.present_below, fresh.absent_from), (0, None));
	}

	#[test]
	fn a_flood_of_unknown_ids_costs_a_bounded_number_of_chain_reads() {
		// Streams 0..4 exist (the pallet numbers them densely), 3 is closed.
		let chain = chain_with_streams((0..4).map(|id| stream(id, "//Origin", id != 3)));
		let registry = ChainRegistry::new(chain.clone());
		let reads = || chain.stream_reads.load(Ordering::Relaxed);
		// Descending, the worst order for a cache of single ids; then the far end.
		for id in (3..20_000).rev().chain([u64::MAX, u64::MAX / 2]) {
			assert_eq!(registry.origin_key(id), None, "{id}");
		}
		assert!(reads() <= 70, "{} chain reads for 20 000 unknown ids", reads());
		// Kept across blocks: each new block costs one read to check that no stream was made.
		for block in 2..12 {
			chain.finalize(block);
			let before = reads();
			for id in 4..1000 {
				assert_eq!(registry.origin_key(id), None);
			}
			assert!(reads() <= before + 1, "block {block}: {} reads", reads() - before);
		}
		// A stream created on chain is found at the next finalized block.
		chain.streams.lock().insert(4, stream(4, "//Origin", true));
		assert_eq!(registry.origin_key(4), None, "not finalized yet");
		chain.finalize(20);
		assert_eq!(registry.origin_key(4), Some(key("//Origin")));
		assert_eq!(registry.origin_key(2), Some(key("//Origin")));
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
