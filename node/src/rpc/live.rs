//! `dsp_liveLoad` and `dsp_subscribeLiveLoad` (notifications `dsp_liveLoadUpdate`): what the node's streaming worker is doing now
//! (sessions per mode, counters, the settings and epoch it applies), for dashboards and
//! load-aware viewers. The same figures are Prometheus gauges (`dsp_streaming_*`).

use super::dsp::Settings;
use crate::worker::handle::{LiveSnapshot, WorkerHandle};
use jsonrpsee::{
	core::{RpcResult, SubscriptionResult},
	proc_macros::rpc,
	PendingSubscriptionSink, SubscriptionMessage,
};
use serde::{Deserialize, Serialize};
use sp_core::crypto::Ss58Codec;
use std::time::Duration;

/// Open viewer sessions per mode and transport.
pub use dsp_primitives::rpc_types::SessionsByTransport;

/// Sessions per admission mode.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Sessions {
	/// Viewers served directly (TCP or QUIC).
	pub direct: u32,
	/// Viewers admitted in P2P mode (tracker sessions).
	pub p2p: u32,
}

/// Viewer transport switches since start, by the transport switched to.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Switches {
	/// Switches to TCP (from QUIC).
	pub to_tcp: u64,
	/// Switches to QUIC (from TCP).
	pub to_quic: u64,
}

/// The worker's live load.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LiveLoad {
	/// Whether the streaming worker runs.
	pub running: bool,
	/// The node's streamer account (SS58), if it has a streaming key.
	pub streamer: Option<String>,
	/// Whether that account is a registered streamer.
	pub registered: bool,
	/// TCP listen address.
	pub tcp: Option<String>,
	/// QUIC listen address.
	pub quic: Option<String>,
	/// Capacity settings in force (applied at the latest finalized block), with the P2P
	/// threshold they give.
	pub settings: Option<Settings>,
	/// Credit epoch passes are issued for.
	pub epoch: Option<u32>,
	/// Open viewer sessions per mode.
	pub sessions: Sessions,
	/// The same per mode and transport.
	pub sessions_by_transport: SessionsByTransport,
	/// Viewer passes signed since start (viewers admitted in P2P mode).
	pub passes_issued: u64,
	/// Viewers refused since start.
	pub refused: u64,
	/// Of them, viewers sent the other registered streamers' endpoints (a redirect).
	pub redirects: u64,
	/// Transport switches viewers made since start.
	pub switches: Switches,
	/// Connections accepted since start.
	pub connections: u64,
	/// Connections closed with an error since start.
	pub closed_with_error: u64,
	/// Segments stored from publishers since start.
	pub segments_stored: u64,
	/// Bytes queued to viewers since start.
	pub bytes_sent: u64,
	/// Of `bytes_sent`, bytes to viewers in P2P mode (headers, seeded chunks, urgent fetches):
	/// the node's egress to its swarms.
	pub bytes_sent_p2p: u64,
	/// Of `bytes_sent`, bytes to viewers served directly.
	pub bytes_sent_direct: u64,
	/// Share of the media announced to P2P viewers that the node did not send them (so it came
	/// from peers, or was not played); `null` before any P2P viewer got a segment.
	pub p2p_share: Option<f64>,
	/// Streams holding a live window.
	pub streams_held: u64,
}

impl From<LiveSnapshot> for LiveLoad {
	fn from(s: LiveSnapshot) -> Self {
		let stats = s.stats.unwrap_or_default();
		Self {
			running: s.stats.is_some(),
			streamer: s.streamer.map(|a| a.to_ss58check()),
			registered: s.chain.as_ref().is_some_and(|c| c.registered),
			tcp: s.addrs.0.map(|a| a.to_string()),
			quic: s.addrs.1.map(|a| a.to_string()),
			settings: s.chain.as_ref().map(|c| c.capacity.into()),
			epoch: s.chain.as_ref().map(|c| c.epoch),
			sessions: Sessions { direct: stats.admission.direct, p2p: stats.admission.p2p },
			sessions_by_transport: stats.sessions,
			passes_issued: stats.passes_issued,
			refused: stats.admission.refused,
			redirects: stats.redirects,
			switches: Switches { to_tcp: stats.switches.to_tcp, to_quic: stats.switches.to_quic },
			connections: stats.connections,
			closed_with_error: stats.closed_with_error,
			segments_stored: stats.segments_stored,
			bytes_sent: stats.bytes_sent,
			bytes_sent_p2p: stats.bytes_sent_p2p,
			bytes_sent_direct: stats.bytes_sent.saturating_sub(stats.bytes_sent_p2p),
			p2p_share: stats.p2p_share(),
			streams_held: stats.streams_held as u64,
		}
	}
}

/// Shortest update interval a subscriber may ask for.
const MIN_INTERVAL_MS: u64 = 100;
/// Update interval without one.
const DEFAULT_INTERVAL_MS: u64 = 1_000;

/// The live-load methods.
#[rpc(client, server, namespace = "dsp")]
pub trait DspLiveApi {
	/// The streaming worker's load now.
	#[method(name = "liveLoad")]
	fn live_load(&self) -> RpcResult<LiveLoad>;

	/// The worker's load every `intervalMs` milliseconds (default 1000, at least 100).
	#[subscription(name = "subscribeLiveLoad" => "liveLoadUpdate", unsubscribe = "unsubscribeLiveLoad", item = LiveLoad)]
	async fn subscribe_live_load(&self, interval_ms: Option<u64>) -> SubscriptionResult;
}

/// Serves the live-load methods from the worker's handle.
pub struct DspLive {
	worker: WorkerHandle,
}

impl DspLive {
	/// Methods reading `worker`.
	pub fn new(worker: WorkerHandle) -> Self {
		Self { worker }
	}
}

#[jsonrpsee::core::async_trait]
impl DspLiveApiServer for DspLive {
	fn live_load(&self) -> RpcResult<LiveLoad> {
		Ok(self.worker.snapshot().into())
	}

	async fn subscribe_live_load(
		&self,
		pending: PendingSubscriptionSink,
		interval_ms: Option<u64>,
	) -> SubscriptionResult {
		let interval = interval_ms.unwrap_or(DEFAULT_INTERVAL_MS).max(MIN_INTERVAL_MS);
		let sink = pending.accept().await?;
		let mut tick = tokio::time::interval(Duration::from_millis(interval));
		loop {
			tokio::select! {
				_ = sink.closed() => return Ok(()),
				_ = tick.tick() => {
					let load: LiveLoad = self.worker.snapshot().into();
					let msg = SubscriptionMessage::from_json(&load)?;
					if sink.send(msg).await.is_err() {
						return Ok(());
					}
				}
			}
		}
	}
}
