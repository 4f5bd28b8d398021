//! The IO half of discovery: reads the registry over JSON-RPC, then probes every registered
//! streamer at once (TCP connect time to its streaming endpoint, `dsp_liveLoad` at its node) and
//! hands the measurements to the sans-IO ranking in [`super::discovery`].

use super::{
	client::ChainClient,
	discovery::{rank, Candidate, Discovered, DiscoveryError, RegisteredStreamer},
};
use dsp_primitives::{PublicKey, StreamId};
use serde::Deserialize;
use sp_core::crypto::Ss58Codec;
use std::time::{Duration, Instant};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamRecord {
	signing_key: String,
	open: bool,
	/// Absent from nodes older than storage version 1 of `pallet-dsp`: no passes then.
	#[serde(default)]
	passes_open: bool,
}

#[derive(Deserialize)]
struct LiveSessions {
	direct: u32,
}

#[derive(Deserialize)]
struct LiveLoad {
	running: bool,
	sessions: LiveSessions,
}

/// How long to wait for one streamer's TCP connect or load answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the registry through `client` and probes every streamer.
pub async fn discover(
	client: &ChainClient,
	stream: StreamId,
) -> Result<Discovered, DiscoveryError> {
	let runtime = client.runtime_info().await?;
	let record: Option<StreamRecord> = client.request("dsp_stream", vec![stream.into()]).await?;
	let record = record.filter(|r| r.open).ok_or(DiscoveryError::NoStream(stream))?;
	let origin_key = PublicKey::from_ss58check(&record.signing_key)
		.map_err(|_| DiscoveryError::BadKey(stream))?;
	let registered: Vec<RegisteredStreamer> = client.request("dsp_streamers", vec![]).await?;
	let probes = registered.iter().cloned().map(probe);
	let candidates: Vec<Candidate> = futures::future::join_all(probes).await;
	let order = rank(&candidates);
	if order.is_empty() {
		return Err(DiscoveryError::NoStreamer(registered.len()));
	}
	let streamers = order.into_iter().map(|i| candidates[i].clone()).collect();
	Ok(Discovered {
		genesis_hash: runtime.genesis_hash,
		origin_key,
		passes_open: record.passes_open,
		streamers,
	})
}

async fn probe(streamer: RegisteredStreamer) -> Candidate {
	let tcp = streamer.endpoints.tcp.parse().ok();
	let quic = streamer.endpoints.quic.parse().ok();
	let rtt = match tcp {
		Some(addr) => {
			let start = Instant::now();
			match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
				Ok(Ok(_)) => Some(start.elapsed()),
				_ => None,
			}
		}
		None => None,
	};
	let url = streamer.endpoints.rpc.replacen("ws://", "http://", 1);
	let direct_sessions = match ChainClient::new(&url) {
		Ok(node) => {
			tokio::time::timeout(PROBE_TIMEOUT, node.request::<LiveLoad>("dsp_liveLoad", vec![]))
				.await
				.ok()
				.and_then(Result::ok)
				.filter(|l| l.running)
				.map(|l| l.sessions.direct)
		}
		Err(_) => None,
	};
	Candidate { streamer, tcp, quic, rtt, direct_sessions }
}
