//! Inbound connections per remote IP address: a libp2p [`Behaviour`] that denies a connection
//! from an address that has `max_per_ip` established already, before its handshake when it can
//! (pending) and again once established. New peer ids cost nothing to make; addresses do, so
//! this is what keeps one host from taking every connection slot (and every fresh verification
//! budget, [`super::verify_guard`]) of a node. Outbound connections (this node's dials) and
//! loopback addresses (the same host: tests, a local gateway) are not counted.
//!
//! The counting is [`IpCounter`], plain data; the behaviour only feeds it the swarm's events.

use libp2p::{
	core::{multiaddr::Protocol, transport::PortUse, ConnectedPoint, Endpoint},
	swarm::{
		behaviour::ConnectionEstablished, dummy, ConnectionClosed, ConnectionDenied, ConnectionId,
		FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
	},
	Multiaddr, PeerId,
};
use std::{
	collections::{HashMap, HashSet},
	convert::Infallible,
	net::IpAddr,
	task::{Context, Poll},
};

/// The address a multiaddr (`/ip4/…` or `/ip6/…` first) is counted under: the IPv4 address,
/// or the IPv6 /64 (one subscriber usually holds a whole /64:
/// [`super::pass_policy::address_key`]); `None` for none, or a loopback address.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
	let ip = addr.iter().find_map(|p| match p {
		Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
		Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
		_ => None,
	})?;
	(!ip.to_canonical().is_loopback()).then(|| super::pass_policy::address_key(ip))
}

/// Established inbound connections per IP address. Memory: one entry per connection, bounded
/// by the swarm's `max_established`.
#[derive(Debug, Default)]
pub struct IpCounter {
	max_per_ip: usize,
	per_ip: HashMap<IpAddr, HashSet<ConnectionId>>,
	by_connection: HashMap<ConnectionId, IpAddr>,
}

impl IpCounter {
	/// At most `max_per_ip` connections from one address.
	pub fn new(max_per_ip: usize) -> Self {
		Self { max_per_ip, ..Default::default() }
	}

	/// Whether one more connection from `ip` is allowed.
	pub fn allows(&self, ip: &IpAddr) -> bool {
		self.per_ip.get(ip).map_or(0, HashSet::len) < self.max_per_ip
	}

	/// Connection `id` from `ip` is established.
	pub fn handle_established(&mut self, id: ConnectionId, ip: IpAddr) {
		self.per_ip.entry(ip).or_default().insert(id);
		self.by_connection.insert(id, ip);
	}

	/// Connection `id` closed (ignored if it was not counted).
	pub fn handle_closed(&mut self, id: ConnectionId) {
		let Some(ip) = self.by_connection.remove(&id) else { return };
		if let Some(set) = self.per_ip.get_mut(&ip) {
			set.remove(&id);
			if set.is_empty() {
				self.per_ip.remove(&ip);
			}
		}
	}

	/// Connections counted from `ip`.
	pub fn count(&self, ip: &IpAddr) -> usize {
		self.per_ip.get(ip).map_or(0, HashSet::len)
	}
}

/// The denial a [`Behaviour`] gives.
#[derive(Debug, thiserror::Error)]
#[error("too many connections from {0}")]
pub struct TooManyFromIp(pub IpAddr);

/// Denies inbound connections beyond `max_per_ip` per remote IP address.
#[derive(Debug)]
pub struct Behaviour {
	counter: IpCounter,
}

impl Behaviour {
	/// At most `max_per_ip` inbound connections per address.
	pub fn new(max_per_ip: usize) -> Self {
		Self { counter: IpCounter::new(max_per_ip) }
	}

	fn check(&self, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
		match ip_of(remote) {
			Some(ip) if !self.counter.allows(&ip) => Err(ConnectionDenied::new(TooManyFromIp(ip))),
			_ => Ok(()),
		}
	}
}

impl NetworkBehaviour for Behaviour {
	type ConnectionHandler = dummy::ConnectionHandler;
	type ToSwarm = Infallible;

	fn handle_pending_inbound_connection(
		&mut self,
		_: ConnectionId,
		_: &Multiaddr,
		remote: &Multiaddr,
	) -> Result<(), ConnectionDenied> {
		self.check(remote)
	}

	fn handle_established_inbound_connection(
		&mut self,
		_: ConnectionId,
		_: PeerId,
		_: &Multiaddr,
		remote: &Multiaddr,
	) -> Result<THandler<Self>, ConnectionDenied> {
		self.check(remote)?;
		Ok(dummy::ConnectionHandler)
	}

	fn handle_established_outbound_connection(
		&mut self,
		_: ConnectionId,
		_: PeerId,
		_: &Multiaddr,
		_: Endpoint,
		_: PortUse,
	) -> Result<THandler<Self>, ConnectionDenied> {
		Ok(dummy::ConnectionHandler)
	}

	fn on_swarm_event(&mut self, event: FromSwarm) {
		match event {
			// Counted when the swarm reports it (not when allowed above): a connection another
			// behaviour denies never closes, so it must not be counted.
			FromSwarm::ConnectionEstablished(ConnectionEstablished {
				connection_id,
				endpoint: ConnectedPoint::Listener { send_back_addr, .. },
				..
			}) => {
				if let Some(ip) = ip_of(send_back_addr) {
					self.counter.handle_established(connection_id, ip);
				}
			}
			FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
				self.counter.handle_closed(connection_id)
			}
			_ => {}
		}
	}

	fn on_connection_handler_event(
		&mut self,
		_: PeerId,
		_: ConnectionId,
		event: THandlerOutEvent<Self>,
	) {
		match event {}
	}

	fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
		Poll::Pending
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn connections_beyond_the_limit_per_address_are_denied() {
		let mut b = Behaviour::new(2);
		let a: Multiaddr = "/ip4/10.0.0.1/tcp/4000".parse().unwrap();
		let other: Multiaddr = "/ip4/10.0.0.2/udp/4000/quic-v1".parse().unwrap();
		let ip = ip_of(&a).unwrap();
		for n in 0..2 {
			assert!(b
				.handle_pending_inbound_connection(ConnectionId::new_unchecked(n), &a, &a)
				.is_ok());
			b.counter.handle_established(ConnectionId::new_unchecked(n), ip);
		}
		let third = ConnectionId::new_unchecked(2);
		assert!(b.handle_pending_inbound_connection(third, &a, &a).is_err());
		let peer = PeerId::random();
		assert!(b.handle_established_inbound_connection(third, peer, &a, &a).is_err());
		// Loopback is not limited.
		let local: Multiaddr = "/ip4/127.0.0.1/tcp/4000".parse().unwrap();
		assert_eq!(ip_of(&local), None);
		assert!(b.handle_pending_inbound_connection(third, &local, &local).is_ok());
		// Another address is not affected; one closed connection makes room again.
		assert!(b.handle_pending_inbound_connection(third, &other, &other).is_ok());
		// IPv6 is counted per /64: two addresses of one /64 are one address.
		let v6 = |a: &str| -> Multiaddr { format!("/ip6/{a}/tcp/4000").parse().unwrap() };
		assert_eq!(ip_of(&v6("2001:db8:1:2::5")), ip_of(&v6("2001:db8:1:2:ffff::9")));
		assert_ne!(ip_of(&v6("2001:db8:1:2::5")), ip_of(&v6("2001:db8:1:3::5")));
		assert_eq!(ip_of(&v6("::1")), None);
		b.counter.handle_closed(ConnectionId::new_unchecked(0));
		assert_eq!(b.counter.count(&ip), 1);
		assert!(b.handle_established_inbound_connection(third, peer, &a, &a).is_ok());
	}
}
