//! How much a viewer pass is worth and who may get a new one, sans-IO (time as [`Millis`]).
//!
//! A pass covers what its session could have consumed: the stream's measured bitrate times the
//! time the session has been joined in the epoch plus one renewal period, times a slack
//! ([`pass_units`]). The tracker renews it while the session stays joined, so holding N
//! payable passes costs N live sessions for the time claimed. [`AddressLimits`] bounds how many
//! such sessions, and how many new passes, one address gets.

use crate::clock::Millis;
use dsp_primitives::{Units, UNIT_BYTES};
use std::{
	collections::{HashMap, VecDeque},
	net::IpAddr,
};

/// `max_units` of a pass: `ceil(bitrate * (admitted + period) * slack / UNIT_BYTES)`, with
/// `bitrate` in bytes per second, `admitted_ms` the time the session has been joined in the
/// pass's epoch, `period_ms` the renewal period and `slack_permille` the slack in thousandths
/// (1500 for 1.5). Integer arithmetic: the same inputs give the same units everywhere.
pub fn pass_units(
	bitrate: u64,
	admitted_ms: Millis,
	period_ms: Millis,
	slack_permille: u32,
) -> Units {
	let ms = u128::from(admitted_ms.saturating_add(period_ms));
	let scaled = u128::from(bitrate).saturating_mul(ms).saturating_mul(u128::from(slack_permille));
	let units = scaled.div_ceil(1000 * 1000 * u128::from(UNIT_BYTES));
	Units::try_from(units).unwrap_or(Units::MAX)
}

/// A slack factor (1.5) in thousandths (1500), as [`pass_units`] takes it. Negative or NaN
/// slacks count as 0.
pub fn slack_permille(slack: f64) -> u32 {
	// `as` saturates: NaN and negatives give 0, huge values u32::MAX.
	(slack * 1000.0).round() as u32
}

/// Settings of [`AddressLimits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressLimitsConfig {
	/// Most P2P sessions joined at once from one address.
	pub max_sessions: u32,
	/// Most new passes (joins) per address in any [`PASS_RATE_WINDOW`]; renewals do not count.
	pub max_new_passes: u32,
}

/// The window of [`AddressLimitsConfig::max_new_passes`]: one minute.
pub const PASS_RATE_WINDOW: Millis = 60_000;

/// A join refused for its address.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressLimitError {
	/// The address holds `max_sessions` joined sessions already.
	#[error("{0} P2P sessions from this address already (the most allowed)")]
	TooManySessions(u32),
	/// The address got `max_new_passes` new passes in the last minute.
	#[error("{0} new passes to this address in the last minute (the most allowed)")]
	TooManyPasses(u32),
}

/// What one address holds: joined sessions, and when its recent new passes were issued.
#[derive(Debug, Default)]
struct Usage {
	sessions: u32,
	/// Issue times within the last [`PASS_RATE_WINDOW`], oldest first; at most
	/// `max_new_passes`.
	recent: VecDeque<Millis>,
}

impl Usage {
	fn forget_before(&mut self, now: Millis) {
		while self.recent.front().is_some_and(|&t| now.saturating_sub(t) >= PASS_RATE_WINDOW) {
			self.recent.pop_front();
		}
	}
}

/// Per-address limits on joined P2P sessions and new passes. An address is an IPv4 address or
/// an IPv6 /64 (one subscriber usually holds a whole /64, so counting single IPv6 addresses
/// would bound nothing). Memory: one small entry per address that holds a session or got a
/// pass in the last minute; idle entries are dropped whenever the map doubled since the last
/// sweep.
#[derive(Debug)]
pub struct AddressLimits {
	config: AddressLimitsConfig,
	usage: HashMap<IpAddr, Usage>,
	/// Sweep idle entries when the map grows past this.
	sweep_at: usize,
}

/// Entries held before the first sweep.
const MIN_SWEEP: usize = 1024;

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
	match ip.to_canonical() {
		IpAddr::V6(v6) => {
			let mut s = v6.segments();
			s[4..].fill(0);
			IpAddr::V6(s.into())
		}
		v4 => v4,
	}
}

impl AddressLimits {
	/// No address holds anything yet.
	pub fn new(config: AddressLimitsConfig) -> Self {
		Self { config, usage: HashMap::new(), sweep_at: MIN_SWEEP }
	}

	/// Whether a new session from `ip` may join (and get a new pass) at `now`.
	pub fn check(&mut self, now: Millis, ip: IpAddr) -> Result<(), AddressLimitError> {
		let Some(u) = self.usage.get_mut(&address_key(ip)) else { return Ok(()) };
		u.forget_before(now);
		if u.sessions >= self.config.max_sessions {
			return Err(AddressLimitError::TooManySessions(self.config.max_sessions));
		}
		if u.recent.len() >= self.config.max_new_passes as usize {
			return Err(AddressLimitError::TooManyPasses(self.config.max_new_passes));
		}
		Ok(())
	}

	/// A session from `ip` joined at `now` with a new pass (after [`Self::check`] allowed it).
	pub fn handle_joined(&mut self, now: Millis, ip: IpAddr) {
		if self.usage.len() >= self.sweep_at {
			self.sweep(now);
		}
		let u = self.usage.entry(address_key(ip)).or_default();
		u.forget_before(now);
		u.sessions = u.sessions.saturating_add(1);
		u.recent.push_back(now);
		while u.recent.len() > self.config.max_new_passes as usize {
			u.recent.pop_front();
		}
	}

	/// A joined session from `ip` ended.
	pub fn handle_left(&mut self, now: Millis, ip: IpAddr) {
		let key = address_key(ip);
		if let Some(u) = self.usage.get_mut(&key) {
			u.sessions = u.sessions.saturating_sub(1);
			u.forget_before(now);
			if u.sessions == 0 && u.recent.is_empty() {
				self.usage.remove(&key);
			}
		}
	}

	/// Joined sessions from `ip` (its /64 for IPv6).
	pub fn sessions(&self, ip: IpAddr) -> u32 {
		self.usage.get(&address_key(ip)).map_or(0, |u| u.sessions)
	}

	/// Addresses with an entry.
	pub fn addresses(&self) -> usize {
		self.usage.len()
	}

	fn sweep(&mut self, now: Millis) {
		self.usage.retain(|_, u| {
			u.forget_before(now);
			u.sessions > 0 || !u.recent.is_empty()
		});
		self.sweep_at = (self.usage.len() * 2).max(MIN_SWEEP);
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn units_follow_the_formula_and_round_up() {
		// 125 000 B/s (1 Mbit/s), just joined, 120 s period, slack 1.5:
		// 125 000 * 120 * 1.5 / 1024 = 21 972.65... -> 21 973.
		assert_eq!(pass_units(125_000, 0, 120_000, 1500), 21_973);
		// Ten minutes admitted add ten minutes' worth.
		assert_eq!(pass_units(125_000, 600_000, 120_000, 1500), 131_836);
		assert_eq!(pass_units(0, 600_000, 120_000, 1500), 0, "no bitrate known: nothing");
		assert_eq!(pass_units(1024, 0, 1000, 1000), 1, "exact: no extra unit");
		assert_eq!(pass_units(1025, 0, 1000, 1000), 2);
		assert_eq!(pass_units(u64::MAX, Millis::MAX, 1, u32::MAX), Units::MAX, "saturates");
		assert_eq!(slack_permille(1.5), 1500);
		assert_eq!(slack_permille(-1.0), 0);
		assert_eq!(slack_permille(f64::NAN), 0);
	}

	fn limits() -> AddressLimits {
		AddressLimits::new(AddressLimitsConfig { max_sessions: 2, max_new_passes: 3 })
	}

	#[test]
	fn concurrent_sessions_per_address_are_bounded_until_one_leaves() {
		let mut l = limits();
		let a: IpAddr = "10.0.0.1".parse().unwrap();
		let b: IpAddr = "10.0.0.2".parse().unwrap();
		for _ in 0..2 {
			assert_eq!(l.check(0, a), Ok(()));
			l.handle_joined(0, a);
		}
		assert_eq!(l.check(0, a), Err(AddressLimitError::TooManySessions(2)));
		assert_eq!(l.check(0, b), Ok(()), "another address is not affected");
		l.handle_left(1, a);
		assert_eq!(l.check(1, a), Ok(()));
		assert_eq!(l.sessions(a), 1);
	}

	#[test]
	fn new_passes_per_address_are_bounded_per_minute() {
		let mut l = limits();
		let a: IpAddr = "10.0.0.1".parse().unwrap();
		// Join and leave at once, three times: the fourth within the minute is refused.
		for t in [0, 10, 20] {
			assert_eq!(l.check(t, a), Ok(()));
			l.handle_joined(t, a);
			l.handle_left(t, a);
		}
		assert_eq!(l.check(30, a), Err(AddressLimitError::TooManyPasses(3)));
		assert_eq!(l.check(59_999, a), Err(AddressLimitError::TooManyPasses(3)));
		// A minute after the first, one more is allowed.
		assert_eq!(l.check(60_000, a), Ok(()));
		l.handle_joined(60_000, a);
		assert_eq!(l.check(60_000, a), Err(AddressLimitError::TooManyPasses(3)));
	}

	#[test]
	fn ipv6_counts_per_slash_64_and_mapped_ipv4_as_ipv4() {
		let mut l = limits();
		l.handle_joined(0, "2001:db8::1".parse().unwrap());
		l.handle_joined(0, "2001:db8::ffff:2".parse().unwrap());
		let third: IpAddr = "2001:db8::3".parse().unwrap();
		assert_eq!(l.check(0, third), Err(AddressLimitError::TooManySessions(2)));
		assert_eq!(l.check(0, "2001:db8:0:1::3".parse().unwrap()), Ok(()), "another /64");
		l.handle_joined(0, "::ffff:10.0.0.1".parse().unwrap());
		assert_eq!(l.sessions("10.0.0.1".parse().unwrap()), 1);
	}

	#[test]
	fn idle_addresses_are_forgotten() {
		let mut l =
			AddressLimits::new(AddressLimitsConfig { max_sessions: 16, max_new_passes: 30 });
		for i in 0..MIN_SWEEP as u32 {
			let ip = IpAddr::from(i.to_be_bytes());
			l.handle_joined(0, ip);
			l.handle_left(0, ip);
		}
		// Each still counts its pass of the last minute.
		assert_eq!(l.addresses(), MIN_SWEEP);
		// A minute later, the next join sweeps them.
		l.handle_joined(PASS_RATE_WINDOW, "1.1.1.1".parse().unwrap());
		assert_eq!(l.addresses(), 1);
	}
}
