//! The worker's live state as the rest of the node sees it: [`WorkerHandle`], which the
//! `dsp_liveLoad` RPC reads and the worker writes. It knows nothing of the client, so the RPC
//! depends on this module only, not on the worker.

use super::registry::ChainSettings;
use dsp_runtime::AccountId;
use dsp_streaming::net::serve::{RunningServer, ServerStats};
use parking_lot::Mutex;
use std::{
	net::SocketAddr,
	sync::{Arc, OnceLock},
};

/// The worker's live state, shared with RPC and metrics.
#[derive(Clone, Default)]
pub struct WorkerHandle(Arc<WorkerShared>);

#[derive(Default)]
struct WorkerShared {
	server: OnceLock<Arc<RunningServer>>,
	chain: Mutex<Option<ChainSettings>>,
	streamer: OnceLock<AccountId>,
}

/// A snapshot of the worker for `dsp_liveLoad`.
#[derive(Clone, Debug)]
pub struct LiveSnapshot {
	/// The node's streamer account.
	pub streamer: Option<AccountId>,
	/// The chain state last applied.
	pub chain: Option<ChainSettings>,
	/// Server counters, if the server runs.
	pub stats: Option<ServerStats>,
	/// Listen addresses (TCP, QUIC).
	pub addrs: (Option<SocketAddr>, Option<SocketAddr>),
}

impl WorkerHandle {
	/// What the worker is doing now.
	pub fn snapshot(&self) -> LiveSnapshot {
		let server = self.0.server.get();
		LiveSnapshot {
			streamer: self.0.streamer.get().cloned(),
			chain: self.0.chain.lock().clone(),
			stats: server.map(|s| s.stats()),
			addrs: server.map_or((None, None), |s| (s.tcp_addr, s.quic_addr)),
		}
	}

	/// The node's streamer account, known once the streaming key is (set once).
	pub(super) fn set_streamer(&self, account: AccountId) {
		let _ = self.0.streamer.set(account);
	}

	/// The chain state the worker applies now.
	pub(super) fn set_chain(&self, chain: ChainSettings) {
		*self.0.chain.lock() = Some(chain);
	}

	/// The running server, once it listens (set once).
	pub(super) fn set_server(&self, server: Arc<RunningServer>) {
		let _ = self.0.server.set(server);
	}
}
