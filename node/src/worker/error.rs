//! Why the streaming worker cannot start. The worker being off (`--no-streaming`, no
//! streaming key) is not an error: [`super::start`] says so in the log and returns `None`.

use super::keys::KeyError;
use substrate_prometheus_endpoint::PrometheusError;

/// A failure that stops the worker from starting (and, when it happens while the node starts,
/// the node). Nothing was listening yet when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
	/// The keystore failed, holds several streaming keys and none was chosen, or does not
	/// hold the chosen one.
	#[error(transparent)]
	Key(#[from] KeyError),
	/// `--streamer-key` is not 32 bytes of hex.
	#[error("--streamer-key: {0}")]
	BadStreamerKey(String),
	/// The node's streamer record could not be read at the finalized block (the runtime has
	/// no DSP API, or the block's state is gone).
	#[error("reading the streamer record: {0}")]
	StreamerRecord(#[source] sp_api::ApiError),
	/// The swarm seed's listen address (`--stream-p2p`, else the registered P2P endpoint) is
	/// not a multiaddr.
	#[error("bad P2P listen address {address}: {reason}")]
	BadP2pListen {
		/// The address given.
		address: String,
		/// Why it does not parse.
		reason: String,
	},
	/// The worker's Prometheus gauges could not be registered (a name is taken).
	#[error(transparent)]
	Metrics(#[from] PrometheusError),
}
