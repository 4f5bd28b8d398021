//! What the worker reads from the chain: its streamer settings, the credit epoch, and the
//! origin key of each stream, always at the latest finalized block.

use crate::service::FullClient;
use dsp_primitives::{CapacitySettings, EndpointsView, EpochIndex, PublicKey, StreamId};
use dsp_runtime::{AccountId, Hash};
use dsp_runtime_api::DspApi;
use dsp_streaming::{protocol::ServerAddrs, server::StreamDirectory};
use sc_client_api::HeaderBackend;
use sp_api::ProvideRuntimeApi;
use std::{
	collections::HashMap,
	sync::{Arc, Mutex},
};

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
pub fn read_settings(
	client: &FullClient,
	at: Hash,
	account: &AccountId,
) -> Result<ChainSettings, sp_api::ApiError> {
	let api = client.runtime_api();
	let streamer = api.streamer(at, account.clone())?;
	let epoch = api.current_epoch(at)?;
	Ok(match streamer {
		Some(view) => ChainSettings {
			capacity: view.settings,
			registered: true,
			endpoints: Some(view.endpoints),
			epoch,
		},
		None => ChainSettings {
			capacity: api.default_settings(at)?,
			registered: false,
			endpoints: None,
			epoch,
		},
	})
}

/// Origin keys of open streams, as the latest finalized block has them. Lookups are cached
/// per finalized block, so a burst of viewers costs one runtime call per stream and block;
/// a stream registered or closed on chain is seen at the next finalized block.
pub struct ChainRegistry {
	client: Arc<FullClient>,
	cache: Mutex<(Hash, HashMap<StreamId, Option<PublicKey>>)>,
}

impl ChainRegistry {
	/// A registry reading through `client`.
	pub fn new(client: Arc<FullClient>) -> Self {
		Self { client, cache: Mutex::new((Hash::default(), HashMap::new())) }
	}

	fn lookup(&self, at: Hash, stream: StreamId) -> Option<PublicKey> {
		match self.client.runtime_api().stream(at, stream) {
			Ok(view) => view.filter(|s| s.open).map(|s| s.signing_key),
			Err(e) => {
				log::warn!(target: "dsp-worker", "reading stream {stream} at {at}: {e}");
				None
			}
		}
	}
}

impl std::fmt::Debug for ChainRegistry {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str("ChainRegistry")
	}
}

impl StreamDirectory for ChainRegistry {
	fn origin_key(&self, stream: StreamId) -> Option<PublicKey> {
		let at = self.client.info().finalized_hash;
		{
			let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
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
		let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
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
pub fn stream_bitrate(client: &FullClient, stream: StreamId) -> Option<u32> {
	let at = client.info().finalized_hash;
	client.runtime_api().stream(at, stream).ok().flatten().map(|s| s.bitrate_kbps)
}

/// The other registered streamers' direct endpoints at `at`, in registry order: where the
/// worker redirects viewers it cannot admit. Streamers without a usable endpoint (none
/// announced, not UTF-8, or over the wire limits) are left out.
pub fn redirect_targets(
	client: &FullClient,
	at: Hash,
	own: &AccountId,
) -> Result<Vec<ServerAddrs>, sp_api::ApiError> {
	let text =
		|bytes: &[u8]| std::str::from_utf8(bytes).ok().filter(|s| !s.is_empty()).map(str::to_owned);
	Ok(client
		.runtime_api()
		.streamers(at)?
		.into_iter()
		.filter(|s| &s.account != own)
		.map(|s| ServerAddrs { tcp: text(&s.endpoints.tcp), quic: text(&s.endpoints.quic) })
		.filter(|a| (a.tcp.is_some() || a.quic.is_some()) && a.check().is_ok())
		.collect())
}
