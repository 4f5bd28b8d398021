//! `dsp load --attack KIND`: an attacker ([`dsp_streaming::net::attack`]) runs against the
//! `dsp serve` child while the honest viewers watch. The child keeps its default limits and
//! knows the streams by their own keys: the honest stream and 32 fresh ids of the load origin
//! (what the publish flood aims at), and 10 streams of each attacking origin (2 more than an
//! origin may hold). Every load run with `--viewers-per-address` uses the same child, so a
//! clean run compares with the attacked ones.

use super::Args;
use crate::args::pair_from_seed;
use dsp_primitives::StreamId;
use dsp_streaming::net::attack::{
	self, attacker_addresses, memory::MemoryAttack, replay::Captured, Attack, AttackCounters,
	AttackKind, AttackReport, AttackTarget,
};
use sp_core::Pair;
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// Fresh stream ids of the load origin (registered, never published): the stream after the
/// live one and 31 more.
pub fn fresh_ids(live: StreamId) -> Vec<StreamId> {
	(1..=32).map(|k| live + k).collect()
}

/// Streams registered to each attacking origin: 2 more than an origin may hold by default.
const STREAMS_PER_ATTACKING_ORIGIN: u64 = 10;

/// The attacking origins of the memory attack and their streams (1,000,000 + 100 × origin + k).
pub fn attacking_origins(n: usize) -> anyhow::Result<Vec<(sp_core::sr25519::Pair, Vec<StreamId>)>> {
	(0..n)
		.map(|o| {
			let pair = pair_from_seed(&format!("//LoadAttackOrigin{o}"), "seed")?;
			let first = 1_000_000 + 100 * o as u64;
			Ok((pair, (first..first + STREAMS_PER_ATTACKING_ORIGIN).collect()))
		})
		.collect()
}

/// The `dsp serve` arguments naming every stream's key (instead of `--origin-key`, so that
/// other ids are unknown to it).
pub fn stream_key_args(a: &Args, load_key: &str) -> anyhow::Result<Vec<String>> {
	let mut args = Vec::new();
	let mut key = |stream: StreamId, hex: &str| {
		args.push("--stream-key".to_string());
		args.push(format!("{stream}={hex}"));
	};
	key(a.stream, load_key);
	for s in fresh_ids(a.stream) {
		key(s, load_key);
	}
	for (pair, streams) in attacking_origins(a.attack_origins)? {
		let hex = hex::encode(pair.public().0);
		for s in streams {
			key(s, &hex);
		}
	}
	Ok(args)
}

/// A running attacker: its own thread and runtime, so that its work (building and signing
/// megabytes, thousands of sockets) does not delay the honest viewers' tasks in this process.
pub struct RunningAttack {
	kind: AttackKind,
	counters: Arc<AttackCounters>,
	stop: tokio::sync::watch::Sender<bool>,
	thread: std::thread::JoinHandle<()>,
}

/// Starts `kind` against the server at `tcp` / `quic`.
pub fn start(
	kind: AttackKind,
	a: &Args,
	tcp: SocketAddr,
	quic: SocketAddr,
	genesis_hash: dsp_primitives::Hash32,
	origin: &sp_core::sr25519::Pair,
) -> anyhow::Result<RunningAttack> {
	let single = matches!(kind, AttackKind::SessionFlood | AttackKind::Replay);
	let target = AttackTarget {
		tcp,
		quic: Some(quic),
		genesis_hash,
		stream: a.stream,
		sources: attacker_addresses(if single { 2 } else { a.attack_addresses }),
		sessions: a.attack_sessions,
		retry: Duration::from_millis(a.attack_retry_ms),
	};
	let segment_len = (a.bitrate_kbps as u64 * a.segment_ms as u64 / 8) as usize;
	let attack = match kind {
		AttackKind::Replay => {
			// An hour before the live broadcast: the earlier broadcast of the same stream.
			let earlier = dsp_streaming::net::publish::new_broadcast_id().saturating_sub(3_600_000);
			Attack::Replay(Captured::earlier_broadcast(
				origin,
				genesis_hash,
				a.stream,
				earlier,
				4,
				segment_len,
			))
		}
		AttackKind::SessionFlood => Attack::SessionFlood,
		AttackKind::SlowHandshake => Attack::SlowHandshake,
		AttackKind::PublishFlood => Attack::PublishFlood(fresh_ids(a.stream)),
		AttackKind::Memory => Attack::Memory(MemoryAttack {
			origins: attacking_origins(a.attack_origins)?,
			plan: Default::default(),
		}),
		AttackKind::UnknownIds => Attack::UnknownIds,
	};
	let counters = Arc::new(AttackCounters::default());
	let (stop, stop_rx) = tokio::sync::watch::channel(false);
	let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
	let c = counters.clone();
	let thread = std::thread::Builder::new()
		.name("attacker".into())
		.spawn(move || rt.block_on(attack::run(attack, target, c, stop_rx)))?;
	Ok(RunningAttack { kind, counters, stop, thread })
}

impl RunningAttack {
	/// Stops the attacker; returns what it achieved.
	pub fn stop(self) -> (AttackKind, AttackReport) {
		let report = self.counters.report();
		let _ = self.stop.send(true);
		let _ = self.thread.join();
		(self.kind, report)
	}
}

/// A real publisher starting a new stream while the attacker runs (what the publish flood
/// once locked out): one segment and the end of a new broadcast of the first fresh id, from
/// this host's usual address. Whether the server took both.
pub async fn fresh_publish(
	a: &Args,
	tcp: dsp_streaming::net::Endpoint,
	genesis_hash: dsp_primitives::Hash32,
	pair: &sp_core::sr25519::Pair,
) -> bool {
	use dsp_primitives::{Signed, StreamEnd};
	use dsp_streaming::{
		net::publish::{new_broadcast_id, PublishConfig, Publisher},
		segment::Segment,
	};
	let stream = a.stream + 1;
	let mut config = PublishConfig::new(stream, vec![tcp], pair.clone());
	config.genesis_hash = genesis_hash;
	let Ok(publisher) = Publisher::start(config) else { return false };
	let broadcast = new_broadcast_id();
	let data = bytes::Bytes::from(vec![1u8; 10_000]);
	let segment = Segment::build(pair, genesis_hash, stream, broadcast, 0, 2000, data, 64 * 1024);
	publisher.push(Arc::new(segment));
	let end = StreamEnd { genesis_hash, stream, broadcast, next_sequence: 1 };
	let reports = publisher.finish(Signed::sign(end, pair), Duration::from_secs(10)).await;
	!reports.is_empty() && reports.iter().all(|r| r.complete && r.acked == 1)
}
