//! The libp2p side of the swarm: one [`Behaviour`] composing `/dsp/p2p/1` request-response with
//! connection limits (in all, per peer, per remote IP address) and a block list (bans), and [`build_swarm`], which puts it on QUIC and on
//! TCP (noise + yamux) with tokio. No protocol logic lives here: answers come from
//! [`super::serving::Serving`], and the driver is [`crate::net::p2p`].

use super::{
	ip_limit,
	wire::{P2pCodec, WireLimits, PROTOCOL_NAME},
};
use libp2p::{
	allow_block_list, connection_limits, identity::Keypair, noise, request_response,
	swarm::NetworkBehaviour, tcp, yamux, StreamProtocol, Swarm,
};
use std::time::Duration;

/// Limits of the libp2p layer. Every one bounds memory or work an untrusted peer can cause.
#[derive(Clone, Debug)]
pub struct SwarmLimits {
	/// Codec limits (message sizes, counts).
	pub wire: WireLimits,
	/// An outbound request without a response in this time fails. Default 10 s.
	pub request_timeout: Duration,
	/// Most request substreams open at once per connection, in and out. Default 32; with
	/// 256 KiB responses, 8 MiB per connection worst case.
	pub max_concurrent_streams: usize,
	/// Most established connections in all. Default 256.
	pub max_established: u32,
	/// Most connections to one peer. Default 2 (one per transport while switching).
	pub max_established_per_peer: u32,
	/// Most incoming connections still in their handshake. Default 64.
	pub max_pending_incoming: u32,
	/// Most inbound connections from one remote IP address. Default 16: peer ids are free,
	/// addresses are not, so one host gets at most 16 of the 256 slots (and their
	/// verification budgets); 16 leaves room for viewers behind one NAT.
	pub max_established_per_ip: u32,
	/// A connection with no substream for this long is closed. Default 30 s.
	pub idle_connection_timeout: Duration,
}

impl Default for SwarmLimits {
	fn default() -> Self {
		Self {
			wire: WireLimits::default(),
			request_timeout: Duration::from_secs(10),
			max_concurrent_streams: 32,
			max_established: 256,
			max_established_per_peer: 2,
			max_pending_incoming: 64,
			max_established_per_ip: 16,
			idle_connection_timeout: Duration::from_secs(30),
		}
	}
}

/// The composed behaviour. Field order matters to libp2p: the limit and block-list behaviours
/// deny a connection before request-response sees it.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
	/// Connection limits.
	pub limits: connection_limits::Behaviour,
	/// Inbound connections per remote IP address.
	pub per_ip: ip_limit::Behaviour,
	/// Banned peers: connections to and from them are denied.
	pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
	/// `/dsp/p2p/1`.
	pub rr: request_response::Behaviour<P2pCodec>,
}

impl Behaviour {
	/// The behaviour under `limits`.
	pub fn new(limits: &SwarmLimits) -> Self {
		let conn = connection_limits::ConnectionLimits::default()
			.with_max_established(Some(limits.max_established))
			.with_max_established_per_peer(Some(limits.max_established_per_peer))
			.with_max_pending_incoming(Some(limits.max_pending_incoming));
		let rr_config = request_response::Config::default()
			.with_request_timeout(limits.request_timeout)
			.with_max_concurrent_streams(limits.max_concurrent_streams);
		Self {
			limits: connection_limits::Behaviour::new(conn),
			per_ip: ip_limit::Behaviour::new(limits.max_established_per_ip as usize),
			blocked: Default::default(),
			rr: request_response::Behaviour::with_codec(
				P2pCodec { limits: limits.wire },
				[(StreamProtocol::new(PROTOCOL_NAME), request_response::ProtocolSupport::Full)],
				rr_config,
			),
		}
	}
}

/// A swarm on tokio with QUIC (`/ip4/…/udp/…/quic-v1`) and TCP with noise and yamux
/// (`/ip4/…/tcp/…`), identified by `keypair`.
pub fn build_swarm(keypair: Keypair, limits: &SwarmLimits) -> Result<Swarm<Behaviour>, String> {
	let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
		.with_tokio()
		.with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
		.map_err(|e| format!("tcp transport: {e}"))?
		.with_other_transport(|key| {
			libp2p_quic::tokio::Transport::new(libp2p_quic::Config::new(key))
		})
		.map_err(|e| format!("quic transport: {e}"))?
		.with_behaviour(|_| Behaviour::new(limits))
		.map_err(|e| format!("behaviour: {e}"))?
		.with_swarm_config(|c| c.with_idle_connection_timeout(limits.idle_connection_timeout))
		.build();
	Ok(swarm)
}
