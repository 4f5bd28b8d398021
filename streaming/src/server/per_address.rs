//! [`PerAddress`]: what one client address may hold on a server, sans-IO: open sessions (TCP
//! and QUIC together, viewers and publishers alike), handshakes in flight (connections that
//! have not completed `Hello`/`Welcome`) and streams waiting for data (a stream slot the
//! address opened that holds no segment yet).
//!
//! Without it one address can take every connection permit (`max_connections`) with idle
//! sessions and refuse every viewer, or every slot for streams without data. The limits are
//! per address, not per connection, so they also bound what one attacker holds however many
//! ports it uses. IPv6 addresses are counted per /64 prefix: one subscriber is routinely given
//! a whole /64, so counting single addresses would let one host open 2^64 of them.
//!
//! Call order, for each connection: [`PerAddress::try_open`] when it is accepted (refuse it
//! if that fails), [`PerAddress::handle_handshake_done`] once it is past `Welcome` (or
//! refused by admission), [`PerAddress::handle_closed`] when it ends. Around opening a stream
//! slot that no session holds: [`PerAddress::try_wait_stream`] first, and
//! [`PerAddress::handle_stream_not_waiting`] once the slot stored data, was freed, or the
//! session ended.
//!
//! Memory: one small entry per address with an open connection (at most `max_connections`),
//! removed when its counts reach zero.

use std::{collections::HashMap, net::IpAddr};

/// Limits per client address. Every field is a count per address (IPv4) or per /64 (IPv6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerAddressConfig {
	/// Most sessions open at once from one address, over TCP and QUIC, viewers and publishers
	/// together; further connections are refused with `Full`. Default 32: a household, an
	/// office or a carrier-grade NAT puts many honest viewers behind one address, and a
	/// viewer may hold two connections while it switches transport, so the limit is well
	/// above one person's need; yet with the default `max_connections` (4096) it takes at
	/// least 128 addresses to fill a server.
	pub max_sessions: usize,
	/// Most connections from one address that have not completed `Hello`/`Welcome` yet (each
	/// waits up to the hello timeout). Default 8: an honest client completes its handshake in
	/// a round trip or two, so even a busy NAT rarely has more than a few in flight, while a
	/// client that connects and stays silent holds at most this many.
	pub max_handshakes: usize,
	/// Most stream slots opened by sessions from one address that hold no segment yet (a
	/// `Publish` before its first segment, or a `Subscribe` or `Join` waiting for a stream
	/// nobody publishes yet). Default 4: a publisher opens one per stream it starts, and the
	/// server-wide limit (`max_waiting_streams`, 32 per kind) must not be one address's.
	pub max_waiting_streams: usize,
}

impl Default for PerAddressConfig {
	fn default() -> Self {
		Self { max_sessions: 32, max_handshakes: 8, max_waiting_streams: 4 }
	}
}

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerAddressRefusal {
	/// It holds [`PerAddressConfig::max_sessions`] sessions.
	Sessions,
	/// It has [`PerAddressConfig::max_handshakes`] handshakes in flight.
	Handshakes,
	/// It holds [`PerAddressConfig::max_waiting_streams`] slots without data.
	WaitingStreams,
}

impl std::fmt::Display for PerAddressRefusal {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str(match self {
			PerAddressRefusal::Sessions => "too many sessions from your address",
			PerAddressRefusal::Handshakes => "too many handshakes in flight from your address",
			PerAddressRefusal::WaitingStreams => {
				"too many streams without data opened from your address"
			}
		})
	}
}

/// What an address is counted under: an IPv4 address (IPv4-mapped IPv6 too), or the first
/// 64 bits of an IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressKey {
	/// An IPv4 address.
	V4(u32),
	/// An IPv6 /64 prefix.
	V6Prefix(u64),
}

impl AddressKey {
	/// The key `ip` is counted under.
	pub fn of(ip: IpAddr) -> Self {
		match ip {
			IpAddr::V4(v4) => AddressKey::V4(v4.into()),
			IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
				Some(v4) => AddressKey::V4(v4.into()),
				None => AddressKey::V6Prefix((u128::from(v6) >> 64) as u64),
			},
		}
	}
}

/// What one address holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressUsage {
	/// Open sessions (handshakes included).
	pub sessions: usize,
	/// Of them, handshakes in flight.
	pub handshakes: usize,
	/// Stream slots opened that hold no data yet.
	pub waiting_streams: usize,
}

impl AddressUsage {
	fn is_empty(&self) -> bool {
		*self == AddressUsage::default()
	}
}

/// The per-address counts and limits. See the module docs for the call order.
#[derive(Debug, Default)]
pub struct PerAddress {
	config: PerAddressConfig,
	usage: HashMap<AddressKey, AddressUsage>,
}

impl PerAddress {
	/// No address holds anything yet.
	pub fn new(config: PerAddressConfig) -> Self {
		Self { config, usage: HashMap::new() }
	}

	/// A connection from `ip` was accepted: counts it as a session and a handshake in flight,
	/// or says why not (then nothing is counted).
	pub fn try_open(&mut self, ip: IpAddr) -> Result<(), PerAddressRefusal> {
		let u = self.usage.entry(AddressKey::of(ip)).or_default();
		let refusal = if u.sessions >= self.config.max_sessions {
			Some(PerAddressRefusal::Sessions)
		} else if u.handshakes >= self.config.max_handshakes {
			Some(PerAddressRefusal::Handshakes)
		} else {
			None
		};
		if let Some(r) = refusal {
			self.forget_if_empty(ip);
			return Err(r);
		}
		u.sessions += 1;
		u.handshakes += 1;
		Ok(())
	}

	/// A connection from `ip` completed its handshake.
	pub fn handle_handshake_done(&mut self, ip: IpAddr) {
		if let Some(u) = self.usage.get_mut(&AddressKey::of(ip)) {
			u.handshakes = u.handshakes.saturating_sub(1);
		}
	}

	/// A connection from `ip` ended; `in_handshake` if it had not completed its handshake.
	pub fn handle_closed(&mut self, ip: IpAddr, in_handshake: bool) {
		if let Some(u) = self.usage.get_mut(&AddressKey::of(ip)) {
			u.sessions = u.sessions.saturating_sub(1);
			if in_handshake {
				u.handshakes = u.handshakes.saturating_sub(1);
			}
		}
		self.forget_if_empty(ip);
	}

	/// A session from `ip` is about to open a stream slot that holds no data: counts it, or
	/// says why not.
	pub fn try_wait_stream(&mut self, ip: IpAddr) -> Result<(), PerAddressRefusal> {
		let u = self.usage.entry(AddressKey::of(ip)).or_default();
		if u.waiting_streams >= self.config.max_waiting_streams {
			self.forget_if_empty(ip);
			return Err(PerAddressRefusal::WaitingStreams);
		}
		u.waiting_streams += 1;
		Ok(())
	}

	/// A slot counted by [`Self::try_wait_stream`] stored data, was freed, or its session
	/// ended.
	pub fn handle_stream_not_waiting(&mut self, ip: IpAddr) {
		if let Some(u) = self.usage.get_mut(&AddressKey::of(ip)) {
			u.waiting_streams = u.waiting_streams.saturating_sub(1);
		}
		self.forget_if_empty(ip);
	}

	/// What `ip` holds.
	pub fn usage(&self, ip: IpAddr) -> AddressUsage {
		self.usage.get(&AddressKey::of(ip)).copied().unwrap_or_default()
	}

	/// Addresses holding anything.
	pub fn addresses(&self) -> usize {
		self.usage.len()
	}

	fn forget_if_empty(&mut self, ip: IpAddr) {
		let key = AddressKey::of(ip);
		if self.usage.get(&key).is_some_and(AddressUsage::is_empty) {
			self.usage.remove(&key);
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn ip(s: &str) -> IpAddr {
		s.parse().unwrap()
	}

	fn limits(max_sessions: usize, max_handshakes: usize, max_waiting: usize) -> PerAddress {
		PerAddress::new(PerAddressConfig {
			max_sessions,
			max_handshakes,
			max_waiting_streams: max_waiting,
		})
	}

	#[test]
	fn sessions_are_limited_per_address_and_freed_when_they_close() {
		let mut p = limits(3, 3, 1);
		let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
		for _ in 0..3 {
			p.try_open(a).unwrap();
			p.handle_handshake_done(a);
		}
		assert_eq!(p.try_open(a), Err(PerAddressRefusal::Sessions));
		assert_eq!(p.try_open(b), Ok(()), "another address is not affected");
		p.handle_closed(a, false);
		assert_eq!(p.try_open(a), Ok(()));
		assert_eq!(p.usage(a), AddressUsage { sessions: 3, handshakes: 1, waiting_streams: 0 });
	}

	#[test]
	fn handshakes_in_flight_are_limited_apart_from_sessions() {
		let mut p = limits(10, 2, 1);
		let a = ip("10.0.0.1");
		p.try_open(a).unwrap();
		p.try_open(a).unwrap();
		assert_eq!(p.try_open(a), Err(PerAddressRefusal::Handshakes));
		// One completes its handshake, one gives up during it: room for two more.
		p.handle_handshake_done(a);
		p.handle_closed(a, true);
		p.try_open(a).unwrap();
		p.try_open(a).unwrap();
		assert_eq!(p.usage(a), AddressUsage { sessions: 3, handshakes: 2, waiting_streams: 0 });
	}

	#[test]
	fn waiting_streams_are_limited_per_address() {
		let mut p = limits(10, 10, 2);
		let a = ip("10.0.0.1");
		p.try_wait_stream(a).unwrap();
		p.try_wait_stream(a).unwrap();
		assert_eq!(p.try_wait_stream(a), Err(PerAddressRefusal::WaitingStreams));
		assert_eq!(p.try_wait_stream(ip("10.0.0.2")), Ok(()));
		p.handle_stream_not_waiting(a);
		assert_eq!(p.try_wait_stream(a), Ok(()));
	}

	#[test]
	fn ipv6_counts_per_64_prefix_and_mapped_ipv4_as_ipv4() {
		let mut p = limits(2, 2, 1);
		p.try_open(ip("2001:db8:1:2::1")).unwrap();
		p.try_open(ip("2001:db8:1:2:ffff::9")).unwrap();
		assert_eq!(
			p.try_open(ip("2001:db8:1:2:abcd::1")),
			Err(PerAddressRefusal::Sessions),
			"same /64"
		);
		assert_eq!(p.try_open(ip("2001:db8:1:3::1")), Ok(()), "another /64");
		p.try_open(ip("10.0.0.1")).unwrap();
		p.handle_handshake_done(ip("10.0.0.1"));
		p.try_open(ip("::ffff:10.0.0.1")).unwrap();
		assert_eq!(p.usage(ip("10.0.0.1")).sessions, 2);
	}

	#[test]
	fn nothing_is_kept_for_an_address_that_holds_nothing() {
		let mut p = limits(1, 1, 1);
		let a = ip("10.0.0.1");
		p.try_open(a).unwrap();
		assert_eq!(p.try_open(a), Err(PerAddressRefusal::Sessions));
		p.try_wait_stream(a).unwrap();
		p.handle_stream_not_waiting(a);
		p.handle_closed(a, true);
		assert_eq!(p.addresses(), 0);
		// Refusals add nothing either.
		let mut p = limits(0, 0, 0);
		assert!(p.try_open(a).is_err() && p.try_wait_stream(a).is_err());
		assert_eq!(p.addresses(), 0);
	}
}
