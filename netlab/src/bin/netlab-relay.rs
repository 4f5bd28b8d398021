//! `netlab-relay`: the lab's delay and jitter relay (see `--help`).

use netlab::{
	args::{parse, Parsed, HELP},
	relay::Relay,
};

#[tokio::main]
async fn main() {
	let args: Vec<String> = std::env::args().skip(1).collect();
	let config = match parse(args.iter().map(String::as_str)) {
		Ok(Parsed::Help) => {
			print!("{HELP}");
			return;
		}
		Ok(Parsed::Run(c)) => c,
		Err(e) => {
			eprintln!("netlab-relay: {e}");
			std::process::exit(2);
		}
	};
	let summary = format!(
		"{} -> {}: one-way {} ms ± {} ms, udp {}",
		config.listen,
		config.target,
		config.to_client.delay_ms,
		config.to_client.jitter_ms,
		config.udp_order
	);
	match Relay::start(config).await {
		Ok(relay) => {
			eprintln!(
				"netlab-relay: {summary} (tcp {:?}, udp {:?})",
				relay.tcp_addr, relay.udp_addr
			);
			tokio::select! {
				_ = tokio::signal::ctrl_c() => {},
				_ = relay.join() => {},
			}
		}
		Err(e) => {
			eprintln!("netlab-relay: cannot listen: {e}");
			std::process::exit(1);
		}
	}
}
