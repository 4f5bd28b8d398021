//! The command line of `netlab-relay`, parsed by hand (the crate depends on tokio only).

use crate::{
	relay::RelayConfig,
	schedule::{DelayProfile, Order},
};
use std::{net::SocketAddr, time::Duration};

/// `netlab-relay --help`.
pub const HELP: &str = "\
netlab-relay: forward a listen address to a target, adding delay and jitter (UDP and TCP).

The network lab (scripts/netlab.sh) uses it where the kernel has no netem: run it next to the
viewer and point the viewer at it instead of the server.

USAGE:
    netlab-relay --listen ADDR --target ADDR [OPTIONS]

OPTIONS:
    --listen ADDR            Address to accept on, e.g. 127.0.0.1:17700 (TCP and UDP, same port).
    --target ADDR            Address everything is forwarded to, e.g. 10.77.0.1:7700.
    --one-way-delay-ms N     Delay added in EACH direction, ms: the round trip grows by 2 x N.
                             Default 0.
    --one-way-jitter-ms N    Uniform jitter added to each direction's delay, in [-N, +N] ms
                             (never below 0 in total). Default 0.
    --proto tcp|udp|both     What to relay. Default both.
    --udp-keep-order         UDP datagrams never overtake each other. Default: each datagram gets
                             its own delay, so with jitter they may be REORDERED (as on a real
                             path with jitter, and as netem jitter does). TCP always keeps its
                             byte order (each read is held back, never before an earlier one).
    --seed N                 Seed of the jitter (same seed, same sequence). Default 1.
    --udp-idle-secs N        Forget a UDP flow after N s without a datagram. Default 60.
    -h, --help               This text.

NOTES:
    TCP is relayed as two connections: the bytes arrive late by the delay and in order, but
    each TCP connection's congestion control sees only its own hop's round trip.
";

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
	/// Print [`HELP`].
	Help,
	/// Run a relay.
	Run(RelayConfig),
}

fn value<'a>(it: &mut impl Iterator<Item = &'a str>, flag: &str) -> Result<&'a str, String> {
	it.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn number(s: &str, flag: &str) -> Result<u64, String> {
	s.parse().map_err(|_| format!("{flag}: {s:?} is not a whole number"))
}

fn addr(s: &str, flag: &str) -> Result<SocketAddr, String> {
	s.parse().map_err(|_| format!("{flag}: {s:?} is not an IP:port address"))
}

/// Parses the arguments after the program name.
pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Parsed, String> {
	let mut it = args.into_iter();
	let (mut listen, mut target) = (None, None);
	let mut profile = DelayProfile::default();
	let (mut tcp, mut udp) = (true, true);
	let mut order = Order::AllowReorder;
	let mut seed = 1;
	let mut idle = 60;
	while let Some(flag) = it.next() {
		match flag {
			"-h" | "--help" => return Ok(Parsed::Help),
			"--listen" => listen = Some(addr(value(&mut it, flag)?, flag)?),
			"--target" => target = Some(addr(value(&mut it, flag)?, flag)?),
			"--one-way-delay-ms" => profile.delay_ms = number(value(&mut it, flag)?, flag)?,
			"--one-way-jitter-ms" => profile.jitter_ms = number(value(&mut it, flag)?, flag)?,
			"--proto" => {
				(tcp, udp) = match value(&mut it, flag)? {
					"tcp" => (true, false),
					"udp" => (false, true),
					"both" => (true, true),
					other => return Err(format!("--proto: {other:?} is not tcp, udp or both")),
				}
			}
			"--udp-keep-order" => order = Order::Keep,
			"--seed" => seed = number(value(&mut it, flag)?, flag)?,
			"--udp-idle-secs" => idle = number(value(&mut it, flag)?, flag)?,
			other => return Err(format!("unknown argument {other:?} (see --help)")),
		}
	}
	let listen = listen.ok_or("--listen is required (see --help)")?;
	let target = target.ok_or("--target is required (see --help)")?;
	let mut config = RelayConfig::new(listen, target);
	config.tcp = tcp;
	config.udp = udp;
	config.to_target = profile;
	config.to_client = profile;
	config.udp_order = order;
	config.seed = seed;
	config.udp_idle = Duration::from_secs(idle.max(1));
	Ok(Parsed::Run(config))
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn a_full_command_line_fills_the_config() {
		let args = "--listen 127.0.0.1:17700 --target 10.77.0.1:7700 --one-way-delay-ms 40 \
		            --one-way-jitter-ms 10 --proto udp --udp-keep-order --seed 9 --udp-idle-secs 5";
		let Ok(Parsed::Run(c)) = parse(args.split_whitespace()) else { panic!("parses") };
		assert_eq!(c.listen, "127.0.0.1:17700".parse().unwrap());
		assert_eq!(c.target, "10.77.0.1:7700".parse().unwrap());
		let p = DelayProfile { delay_ms: 40, jitter_ms: 10 };
		assert_eq!((c.to_target, c.to_client), (p, p), "the same delay each way");
		assert_eq!((c.tcp, c.udp, c.udp_order, c.seed), (false, true, Order::Keep, 9));
		assert_eq!(c.udp_idle, Duration::from_secs(5));
	}

	#[test]
	fn defaults_relay_both_protocols_without_delay_and_udp_may_reorder() {
		let Ok(Parsed::Run(c)) = parse(["--listen", "127.0.0.1:1", "--target", "127.0.0.1:2"])
		else {
			panic!("parses")
		};
		assert_eq!((c.tcp, c.udp, c.udp_order), (true, true, Order::AllowReorder));
		assert_eq!(c.to_client, DelayProfile::default());
	}

	#[test]
	fn mistakes_are_named() {
		assert!(matches!(parse(["--help"]), Ok(Parsed::Help)));
		let err = |args: &[&str]| parse(args.iter().copied()).err().unwrap_or_default();
		assert!(err(&["--target", "127.0.0.1:2"]).contains("--listen"));
		assert!(err(&["--listen", "x"]).contains("IP:port"));
		assert!(err(&["--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--proto", "sctp"])
			.contains("--proto"));
		assert!(err(&["--one-way-delay-ms"]).contains("needs a value"));
		assert!(err(&["--bogus"]).contains("--bogus"));
	}
}
