//! # The simulator behind `dsp sim`
//!
//! Runs the real cores on a simulated clock and network ([`network::Network`]): the node admits
//! viewers with [`Admission`] (the capacity rule of `CapacitySettings`), pushes each new chunk to
//! the seeds [`SeedRotation`] picks, gives joiners neighbours from the [`Mesh`], and answers
//! urgent requests; every P2P viewer runs a [`Scheduler`] and serves its neighbours through an
//! [`Uploader`] under its upload cap; direct viewers get every segment pushed by the node and play
//! it through a [`Playout`]. Viewers join over a ramp, then leave and are replaced at the churn
//! rate. Deterministic for a given seed: every choice comes from seeded generators and every map
//! iterates in key order.
//!
//! What is measured (see [`report::RunReport`]): bytes delivered, by source, after the ramp;
//! rebuffer ratio and startup time over all sessions; direct and P2P sessions; checks that must
//! hold (no request to a banned peer, every played segment complete).

pub mod network;
#[cfg(feature = "cli")]
pub mod plot;
pub mod report;

use crate::{
	p2p::{
		mesh::{Mesh, MeshConfig},
		scheduler::{
			chunk_lens, ChunkOutcome, PlayEvent, Playout, Scheduler, SchedulerConfig,
			SchedulerEvent,
		},
		seeding::{SeedConfig, SeedRotation},
		upload::{Serve, UploadConfig, Uploader},
		Millis, Source,
	},
	server::Admission,
};
use dsp_primitives::{AdmissionMode, CapacitySettings, Perbill};
use network::{NetConfig, Network, NodeId};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use report::RunReport;
use std::{
	cmp::Reverse,
	collections::{BTreeSet, BinaryHeap},
	time::Instant,
};

/// The streamer node's endpoint id.
pub const NODE: NodeId = 0;

/// Bytes of a signed header on the wire besides its chunk hashes (ids, lengths, signature,
/// framing), for the node's egress count.
const HEADER_BASE_BYTES: u32 = 150;

/// One simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
	/// Viewers watching at once (after the ramp). Default 2000.
	pub viewers: u32,
	/// `max_streams` of the streamer. Default 2000.
	pub max_streams: u32,
	/// Dynamic streaming rate `r` in [0, 1]. Default 1.
	pub rate: f64,
	/// Stream bitrate, kbit/s. Default 500.
	pub bitrate_kbps: u32,
	/// Segment duration, ms. Default 2000.
	pub segment_ms: u32,
	/// Chunk size, KiB. Default 16.
	pub chunk_kib: u32,
	/// Viewer upload cap as a multiple of the bitrate. Default 1.5.
	pub upload_cap_x: f64,
	/// Share of the viewers that leave (and are replaced by new ones) per minute, after the ramp.
	/// Default 0.1.
	pub churn_per_min: f64,
	/// Simulated time, seconds (ramp included). Default 60.
	pub duration_secs: u64,
	/// The first viewers join evenly over this many seconds; figures about bytes are measured
	/// after it. Default 20.
	pub ramp_secs: u64,
	/// One-way latency of every link, ms. Default 50.
	pub latency_ms: u64,
	/// Packet loss probability. Default 0.
	pub loss: f64,
	/// Seed of every random choice. Default 1.
	pub seed: u64,
	/// Viewers' physical uplink, kbit/s (the upload cap is the policy under it). Default 5000.
	pub viewer_up_kbps: u64,
	/// Viewers' downlink, kbit/s. Default 20 000.
	pub viewer_down_kbps: u64,
	/// The node's uplink, Mbit/s. Default 1000 (the specification's minimum server).
	pub node_up_mbps: u64,
	/// A joining viewer starts this many segments behind the newest one. Default 3: time for
	/// the swarm to spread a segment before anyone needs it.
	pub live_back: u64,
	/// Share of P2P viewers that send corrupt chunks (to exercise verification and bans).
	/// Default 0.
	pub bad_peers: f64,
	/// Scheduler settings of every P2P viewer.
	pub scheduler: SchedulerConfig,
	/// Seeding settings of the node.
	pub seeding: SeedConfig,
	/// Neighbour settings.
	pub mesh: MeshConfig,
	/// A viewer asks the tracker for more neighbours when it has fewer than this. Default 12.
	pub min_neighbours: usize,
}

impl Default for SimConfig {
	fn default() -> Self {
		Self {
			viewers: 2000,
			max_streams: 2000,
			rate: 1.0,
			bitrate_kbps: 500,
			segment_ms: 2000,
			chunk_kib: 16,
			upload_cap_x: 1.5,
			churn_per_min: 0.1,
			duration_secs: 60,
			ramp_secs: 20,
			latency_ms: 50,
			loss: 0.0,
			seed: 1,
			viewer_up_kbps: 5_000,
			viewer_down_kbps: 20_000,
			node_up_mbps: 1_000,
			live_back: 3,
			bad_peers: 0.0,
			scheduler: SchedulerConfig::default(),
			seeding: SeedConfig::default(),
			mesh: MeshConfig::default(),
			min_neighbours: 12,
		}
	}
}

#[derive(Clone, Debug)]
enum Msg {
	/// Node → P2P viewer: the (verified) header of `seq`.
	Header {
		seq: u64,
	},
	/// A chunk; `corrupt` stands for a failed hash check at the receiver.
	Chunk {
		seq: u64,
		index: u32,
		len: u32,
		corrupt: bool,
	},
	Request {
		seq: u64,
		index: u32,
		len: u32,
		deadline: Millis,
	},
	Cancel {
		seq: u64,
		index: u32,
	},
	Reject {
		seq: u64,
		index: u32,
	},
	Have {
		seq: u64,
		index: u32,
	},
	/// A new neighbour's announcement of everything it holds.
	HaveAll {
		haves: Vec<(u64, crate::p2p::chunkset::ChunkSet)>,
	},
	/// The sender closed the connection.
	Bye,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
	Publish,
	Join,
	Leave,
	Timer(NodeId),
}

struct P2pViewer {
	sched: Scheduler<NodeId>,
	uploader: Uploader<NodeId>,
	neighbours: BTreeSet<NodeId>,
	bad: bool,
}

struct DirectViewer {
	playout: Playout,
	/// Chunks received of each segment from `start` on.
	received: Vec<u32>,
	start: u64,
}

enum Role {
	P2p(Box<P2pViewer>),
	Direct(DirectViewer),
}

struct Viewer {
	mode: AdmissionMode,
	role: Role,
	timer_at: Option<Millis>,
}

/// Totals kept while running.
#[derive(Default)]
struct Tally {
	delivered_bytes: u64,
	from_peer_bytes: u64,
	node_egress_bytes: u64,
	header_bytes: u64,
	startups: Vec<u64>,
	played_ms: u64,
	stalled_ms: u64,
	stalls: u64,
	segments_played: u64,
	urgent_node_requests: u64,
	peer_requests: u64,
	seeded_chunks: u64,
	peer_timeouts: u64,
	bans: u64,
	requests_to_banned: u64,
	incomplete_played: u64,
	direct_max: u32,
	joins: u64,
	leaves: u64,
	duplicate_bytes: u64,
}

/// The state of one run.
pub struct Simulation {
	cfg: SimConfig,
	net: Network<Msg>,
	heap: BinaryHeap<Reverse<(Millis, u64, Ev)>>,
	counter: u64,
	viewers: Vec<Option<Viewer>>,
	admission: Admission,
	rotation: SeedRotation<NodeId>,
	mesh: Mesh<NodeId>,
	p2p_members: BTreeSet<NodeId>,
	direct_members: BTreeSet<NodeId>,
	rng: SmallRng,
	/// Newest segment the node holds.
	edge: u64,
	lens: Vec<u32>,
	warm_at: Millis,
	end_at: Millis,
	tally: Tally,
	events: u64,
	/// The node's uplink bytes when the measurement window opened.
	node_sent_at_warm: Option<u64>,
}

impl Simulation {
	/// Sets up the node, with a few segments already published.
	pub fn new(cfg: SimConfig) -> Self {
		let net_cfg = NetConfig {
			latency_ms: cfg.latency_ms,
			loss: cfg.loss,
			retransmit_ms: (3 * cfg.latency_ms).max(200),
		};
		let mut net = Network::new(net_cfg, cfg.seed ^ 0x6e65_7477_6f72_6b);
		let node = net.add_endpoint(cfg.node_up_mbps * 1_000_000 / 8, u64::MAX / 4);
		debug_assert_eq!(node, NODE);
		let capacity = CapacitySettings {
			max_streams: cfg.max_streams,
			streaming_rate: Perbill::from_parts((cfg.rate.clamp(0.0, 1.0) * 1e9).round() as u32),
		};
		let segment_bytes = (cfg.bitrate_kbps as u64 * 1000 / 8) * cfg.segment_ms as u64 / 1000;
		let lens = chunk_lens(segment_bytes.max(1) as u32, cfg.chunk_kib.max(1) * 1024);
		let warm_at = cfg.ramp_secs * 1000;
		let end_at = cfg.duration_secs * 1000;
		let mut sim = Self {
			net,
			heap: BinaryHeap::new(),
			counter: 0,
			viewers: vec![None],
			admission: Admission::new(capacity).with_p2p(true),
			rotation: SeedRotation::new(cfg.seeding.clone()),
			mesh: Mesh::new(cfg.mesh.clone(), cfg.seed ^ 0x7472_6163_6b),
			p2p_members: BTreeSet::new(),
			direct_members: BTreeSet::new(),
			rng: SmallRng::seed_from_u64(cfg.seed),
			edge: cfg.live_back + 2,
			lens,
			warm_at,
			end_at,
			tally: Tally::default(),
			events: 0,
			node_sent_at_warm: None,
			cfg,
		};
		sim.schedule(sim.cfg.segment_ms as u64, Ev::Publish);
		let n = sim.cfg.viewers.max(1) as u64;
		for i in 0..n {
			sim.schedule(i * warm_at / n, Ev::Join);
		}
		if sim.cfg.churn_per_min > 0.0 {
			let first = warm_at + sim.churn_gap();
			sim.schedule(first, Ev::Leave);
		}
		sim
	}

	fn schedule(&mut self, at: Millis, ev: Ev) {
		self.counter += 1;
		self.heap.push(Reverse((at, self.counter, ev)));
	}

	/// Time to the next departure: exponential with mean `60 s / (viewers × churn)`.
	fn churn_gap(&mut self) -> Millis {
		let per_ms = self.cfg.viewers as f64 * self.cfg.churn_per_min / 60_000.0;
		let u: f64 = self.rng.random::<f64>().max(1e-12);
		(-u.ln() / per_ms).ceil() as Millis
	}

	fn warm(&self, now: Millis) -> bool {
		now >= self.warm_at
	}

	/// Runs to the end and reports.
	pub fn run(mut self) -> RunReport {
		let wall = Instant::now();
		loop {
			let t_net = self.net.next_time();
			let t_ev = self.heap.peek().map(|Reverse((t, _, _))| *t);
			let now = match (t_net, t_ev) {
				(None, None) => break,
				(Some(a), None) => a,
				(None, Some(b)) => b,
				(Some(a), Some(b)) => a.min(b),
			};
			if now > self.end_at {
				break;
			}
			if self.node_sent_at_warm.is_none() && self.warm(now) {
				self.node_sent_at_warm = Some(self.net.sent_bytes(NODE));
			}
			if t_net == Some(now) {
				while let Some((from, to, msg)) = self.net.poll(now) {
					self.events += 1;
					self.deliver(now, from, to, msg);
				}
				continue;
			}
			let Reverse((_, _, ev)) = self.heap.pop().expect("peeked");
			self.events += 1;
			match ev {
				Ev::Publish => self.publish(now),
				Ev::Join => self.join(now),
				Ev::Leave => {
					self.leave_random(now);
					self.join(now);
					let gap = self.churn_gap();
					self.schedule(now + gap, Ev::Leave);
				}
				Ev::Timer(id) => {
					let due = self
						.viewers
						.get(id as usize)
						.and_then(|v| v.as_ref())
						.and_then(|v| v.timer_at);
					if due == Some(now) {
						self.viewers[id as usize].as_mut().expect("alive").timer_at = None;
						self.on_timer(now, id);
					}
				}
			}
		}
		let ids: Vec<NodeId> = (1..self.viewers.len() as NodeId).collect();
		for id in ids {
			self.account(self.end_at, id);
		}
		// What actually left the node's uplink in the window (not what was queued), plus the
		// headers (control messages, outside the uplink model).
		let sent = self.net.sent_bytes(NODE) - self.node_sent_at_warm.unwrap_or(0);
		self.tally.node_egress_bytes = sent + self.tally.header_bytes;
		report::build(
			&self.cfg,
			&self.tally,
			&self.admission.stats(),
			self.events,
			wall.elapsed(),
			self.end_at - self.warm_at,
		)
	}

	fn publish(&mut self, now: Millis) {
		self.edge += 1;
		let seq = self.edge;
		self.schedule(now + self.cfg.segment_ms as u64, Ev::Publish);
		let header_len = HEADER_BASE_BYTES + 32 * self.lens.len() as u32;
		let members: Vec<NodeId> = self.p2p_members.iter().copied().collect();
		for &id in &members {
			self.send_header(now, id, seq, header_len);
		}
		let direct: Vec<NodeId> = self.direct_members.iter().copied().collect();
		for id in direct {
			self.push_segment(now, id, seq);
		}
		for index in 0..self.lens.len() as u32 {
			for seed in self.rotation.next_seeds() {
				let len = self.lens[index as usize];
				self.node_send_chunk(now, seed, seq, index, len);
			}
		}
	}

	fn send_header(&mut self, now: Millis, to: NodeId, seq: u64, header_len: u32) {
		if self.warm(now) {
			self.tally.header_bytes += header_len as u64;
		}
		self.net.send_control(now, NODE, to, Msg::Header { seq }, header_len);
	}

	fn node_send_chunk(&mut self, now: Millis, to: NodeId, seq: u64, index: u32, len: u32) {
		self.net.send_bulk(now, NODE, to, Msg::Chunk { seq, index, len, corrupt: false }, len);
	}

	fn push_segment(&mut self, now: Millis, to: NodeId, seq: u64) {
		for index in 0..self.lens.len() as u32 {
			let len = self.lens[index as usize];
			self.node_send_chunk(now, to, seq, index, len);
		}
	}

	fn join(&mut self, now: Millis) {
		let id = self
			.net
			.add_endpoint(self.cfg.viewer_up_kbps * 1000 / 8, self.cfg.viewer_down_kbps * 1000 / 8);
		debug_assert_eq!(id as usize, self.viewers.len());
		// Over the threshold means P2P mode, except at r = 0 ("no P2P": full at max_streams)
		// and beyond the P2P session cap: a refused viewer does not take part.
		let Ok(mode) = self.admission.try_admit() else {
			self.viewers.push(None);
			return;
		};
		self.tally.joins += 1;
		let start = self.edge.saturating_sub(self.cfg.live_back);
		let role = match mode {
			AdmissionMode::Direct => {
				self.direct_members.insert(id);
				let d = self.admission.stats().direct;
				self.tally.direct_max = self.tally.direct_max.max(d);
				Role::Direct(DirectViewer {
					playout: Playout::new(now, start, self.cfg.scheduler.startup_ms),
					received: Vec::new(),
					start,
				})
			}
			AdmissionMode::P2p => {
				let up = UploadConfig {
					bytes_per_sec: (self.cfg.bitrate_kbps as f64 * 1000.0 / 8.0
						* self.cfg.upload_cap_x) as u64,
					..Default::default()
				};
				let bad = self.rng.random::<f64>() < self.cfg.bad_peers;
				Role::P2p(Box::new(P2pViewer {
					sched: Scheduler::new(self.cfg.scheduler.clone(), now, start),
					uploader: Uploader::new(now, up),
					neighbours: BTreeSet::new(),
					bad,
				}))
			}
		};
		self.viewers.push(Some(Viewer { mode, role, timer_at: None }));
		match mode {
			AdmissionMode::Direct => {
				for seq in start..=self.edge {
					self.push_segment(now, id, seq);
				}
			}
			AdmissionMode::P2p => {
				let header_len = HEADER_BASE_BYTES + 32 * self.lens.len() as u32;
				for seq in start..=self.edge {
					self.send_header(now, id, seq, header_len);
				}
				let neighbours = self.mesh.join(id);
				for n in neighbours {
					self.connect(now, id, n);
				}
				self.p2p_members.insert(id);
				self.rotation.handle_peer_joined(id);
			}
		}
		self.step(now, id);
	}

	fn p2p(&mut self, id: NodeId) -> Option<&mut P2pViewer> {
		match &mut self.viewers.get_mut(id as usize)?.as_mut()?.role {
			Role::P2p(p) => Some(p),
			Role::Direct(_) => None,
		}
	}

	/// Opens a neighbour connection both ways and exchanges announcements.
	fn connect(&mut self, now: Millis, a: NodeId, b: NodeId) {
		for (x, y) in [(a, b), (b, a)] {
			let Some(v) = self.p2p(x) else { return };
			if !v.sched.handle_peer_joined(y) {
				continue;
			}
			v.neighbours.insert(y);
			let haves: Vec<_> = v
				.sched
				.haves()
				.filter(|(_, h)| h.held() > 0)
				.map(|(s, h)| (s, h.clone()))
				.collect();
			if !haves.is_empty() {
				let len =
					16 + haves.iter().map(|(_, h)| 8 + h.to_bytes().len() as u32).sum::<u32>();
				self.net.send_control(now, x, y, Msg::HaveAll { haves }, len);
			}
		}
	}

	fn leave_random(&mut self, now: Millis) {
		let alive = self.direct_members.len() + self.p2p_members.len();
		if alive == 0 {
			return;
		}
		let k = self.rng.random_range(0..alive);
		let id = if k < self.direct_members.len() {
			*self.direct_members.iter().nth(k).expect("in range")
		} else {
			*self.p2p_members.iter().nth(k - self.direct_members.len()).expect("in range")
		};
		self.leave(now, id);
	}

	fn leave(&mut self, now: Millis, id: NodeId) {
		self.account(now, id);
		self.tally.leaves += 1;
		let v = self.viewers[id as usize].take().expect("alive");
		self.admission.release(v.mode);
		self.net.remove_endpoint(id);
		// The node closes the session: nothing more is sent to it.
		self.net.drop_queued(NODE, id, |_| true);
		self.direct_members.remove(&id);
		if let Role::P2p(p) = v.role {
			self.p2p_members.remove(&id);
			self.rotation.handle_peer_left(id);
			self.mesh.leave(id);
			for n in p.neighbours {
				self.mesh.edge_closed(id, n);
				self.net.send_control(now, id, n, Msg::Bye, 16);
			}
		}
	}

	/// Adds a viewer's playback figures to the totals (when it leaves or at the end).
	fn account(&mut self, now: Millis, id: NodeId) {
		let Some(v) = self.viewers[id as usize].as_ref() else { return };
		let (play, s) = match &v.role {
			Role::P2p(p) => (p.sched.play_stats(now), Some(p.sched.stats())),
			Role::Direct(d) => (d.playout.stats(now), None),
		};
		let t = &mut self.tally;
		if let Some(st) = play.startup_ms {
			t.startups.push(st);
		}
		t.played_ms += play.played_ms;
		t.stalled_ms += play.stalled_ms;
		t.stalls += play.stalls;
		t.segments_played += play.segments_played;
		if let Some(s) = s {
			t.peer_timeouts += s.peer_timeouts;
			t.bans += s.banned;
			t.duplicate_bytes += s.duplicate_bytes;
			t.seeded_chunks += s.seeded_chunks;
		}
	}

	fn deliver(&mut self, now: Millis, from: NodeId, to: NodeId, msg: Msg) {
		if to == NODE {
			if let Msg::Request { seq, index, len, .. } = msg {
				if seq <= self.edge {
					self.node_send_chunk(now, from, seq, index, len);
				}
			}
			return;
		}
		let Some(v) = self.viewers[to as usize].as_mut() else { return };
		match &mut v.role {
			Role::Direct(d) => {
				if let Msg::Chunk { seq, len, .. } = msg {
					if seq >= d.start {
						let i = (seq - d.start) as usize;
						if d.received.len() <= i {
							d.received.resize(i + 1, 0);
						}
						d.received[i] += 1;
						if d.received[i] as usize == self.lens.len() {
							d.playout.handle_complete(now, seq, self.cfg.segment_ms);
						}
					}
					if self.warm(now) {
						self.tally.delivered_bytes += len as u64;
					}
				}
				self.step(now, to);
			}
			Role::P2p(_) => {
				self.deliver_p2p(now, from, to, msg);
				self.step(now, to);
			}
		}
	}

	fn deliver_p2p(&mut self, now: Millis, from: NodeId, to: NodeId, msg: Msg) {
		let warm = self.warm(now);
		let dur = self.cfg.segment_ms;
		let lens = self.lens.clone();
		let min_neighbours = self.cfg.min_neighbours;
		let want_neighbours = self.cfg.mesh.neighbours;
		let mut announce = None;
		let mut reconnect = Vec::new();
		{
			let Some(Some(Viewer { role: Role::P2p(v), .. })) = self.viewers.get_mut(to as usize)
			else {
				return;
			};
			match msg {
				Msg::Header { seq } => {
					let _ = v.sched.handle_header(now, seq, dur, lens);
				}
				Msg::Chunk { seq, index, len, corrupt } => {
					let source = if from == NODE { Source::Node } else { Source::Peer(from) };
					if corrupt && from != NODE {
						v.sched.handle_bad_chunk(now, from, seq, index);
					} else if let Ok(ChunkOutcome::Stored) =
						v.sched.handle_chunk(now, source, seq, index, len)
					{
						announce = Some((seq, index));
						if warm {
							self.tally.delivered_bytes += len as u64;
							if from != NODE {
								self.tally.from_peer_bytes += len as u64;
							}
						}
					}
				}
				Msg::Request { seq, index, len, deadline } => {
					if !v.sched.holds(seq, index)
						|| v.uploader
							.handle_request(now, Serve { to: from, seq, index, len, deadline })
							.is_err()
					{
						self.net.send_control(now, to, from, Msg::Reject { seq, index }, 24);
					}
				}
				Msg::Cancel { seq, index } => {
					v.uploader.handle_cancel(from, seq, index);
					self.net.drop_queued(
						to,
						from,
						|m| matches!(m, Msg::Chunk { seq: s, index: i, .. } if *s == seq && *i == index),
					);
				}
				Msg::Reject { seq, index } => v.sched.handle_request_failed(now, from, seq, index),
				Msg::Have { seq, index } => v.sched.handle_have_chunk(from, seq, index),
				Msg::HaveAll { haves } => {
					for (seq, set) in haves {
						let _ = v.sched.handle_have(from, seq, &set);
					}
				}
				Msg::Bye => {
					v.sched.handle_peer_left(from);
					v.uploader.handle_peer_left(from);
					v.neighbours.remove(&from);
					if v.neighbours.len() < min_neighbours {
						let want = want_neighbours.saturating_sub(v.neighbours.len());
						let exclude: Vec<NodeId> = v.neighbours.iter().copied().collect();
						reconnect = self.mesh.more(to, want, &exclude);
					}
				}
			}
		}
		for n in reconnect {
			self.connect(now, to, n);
		}
		if let Some((seq, index)) = announce {
			let v = self.p2p(to).expect("p2p viewer");
			let ns: Vec<NodeId> = v.neighbours.iter().copied().collect();
			for n in ns {
				self.net.send_control(now, to, n, Msg::Have { seq, index }, 24);
			}
		}
	}

	fn on_timer(&mut self, now: Millis, id: NodeId) {
		let Some(v) = self.viewers[id as usize].as_mut() else { return };
		match &mut v.role {
			Role::Direct(d) => d.playout.handle_timeout(now),
			Role::P2p(p) => p.sched.handle_timeout(now),
		}
		self.step(now, id);
	}

	/// Moves everything a viewer's cores want to send into the network, and arms its timer.
	fn step(&mut self, now: Millis, id: NodeId) {
		let lens_count = self.lens.len();
		let warm = self.warm(now);
		let Some(v) = self.viewers[id as usize].as_mut() else { return };
		let mut next: Option<Millis>;
		match &mut v.role {
			Role::Direct(d) => {
				while let Some(e) = d.playout.poll_event() {
					if let PlayEvent::Played { seq } = e {
						let i = (seq - d.start) as usize;
						if d.received.get(i).copied().unwrap_or(0) as usize != lens_count {
							self.tally.incomplete_played += 1;
						}
					}
				}
				next = d.playout.poll_timeout();
			}
			Role::P2p(p) => {
				let mut out: Vec<(NodeId, Msg, u32, bool)> = Vec::new();
				while let Some(r) = p.sched.poll_request(now) {
					let to = match r.source {
						Source::Node => {
							if warm {
								self.tally.urgent_node_requests += 1;
							}
							NODE
						}
						Source::Peer(q) => {
							if warm {
								self.tally.peer_requests += 1;
							}
							if p.sched.is_banned(q) {
								self.tally.requests_to_banned += 1;
							}
							q
						}
					};
					let msg = Msg::Request {
						seq: r.seq,
						index: r.index,
						len: r.len,
						deadline: r.deadline,
					};
					out.push((to, msg, 32, false));
				}
				while let Some(c) = p.sched.poll_cancel() {
					out.push((c.peer, Msg::Cancel { seq: c.seq, index: c.index }, 24, false));
				}
				while let Some(e) = p.sched.poll_event() {
					match e {
						SchedulerEvent::PeerBanned(q) => {
							p.neighbours.remove(&q);
							p.uploader.handle_peer_left(q);
							out.push((q, Msg::Bye, 16, false));
						}
						SchedulerEvent::Play(PlayEvent::Played { seq }) => {
							if p.sched.have(seq).is_some_and(|h| !h.is_full()) {
								self.tally.incomplete_played += 1;
							}
						}
						SchedulerEvent::SegmentComplete { .. } | SchedulerEvent::Play(_) => {}
					}
				}
				while let Some(s) = p.uploader.poll_serve(now) {
					if p.sched.holds(s.seq, s.index) {
						let msg =
							Msg::Chunk { seq: s.seq, index: s.index, len: s.len, corrupt: p.bad };
						out.push((s.to, msg, s.len, true));
					} else {
						out.push((s.to, Msg::Reject { seq: s.seq, index: s.index }, 24, false));
					}
				}
				while let Some(s) = p.uploader.poll_refused() {
					out.push((s.to, Msg::Reject { seq: s.seq, index: s.index }, 24, false));
				}
				next = p.sched.poll_timeout();
				if let Some(u) = p.uploader.poll_timeout(now) {
					next = Some(next.map_or(u, |n| n.min(u)));
				}
				for (to, msg, len, bulk) in out {
					if bulk {
						self.net.send_bulk(now, id, to, msg, len);
					} else {
						self.net.send_control(now, id, to, msg, len);
					}
				}
			}
		}
		if let Some(t) = next {
			let t = t.max(now + 1);
			let v = self.viewers[id as usize].as_mut().expect("alive");
			if v.timer_at.is_none_or(|old| t < old || old <= now) {
				v.timer_at = Some(t);
				self.schedule(t, Ev::Timer(id));
			}
		}
	}
}

/// Runs one simulation.
pub fn run(cfg: SimConfig) -> RunReport {
	Simulation::new(cfg).run()
}

#[cfg(test)]
mod tests {
	use super::*;

	fn small(rate: f64, viewers: u32) -> SimConfig {
		SimConfig {
			viewers,
			max_streams: 40,
			rate,
			duration_secs: 30,
			ramp_secs: 6,
			churn_per_min: 0.2,
			seeding: SeedConfig { peers_per_seed: 8, ..Default::default() },
			mesh: MeshConfig { neighbours: 8, max_neighbours: 16 },
			min_neighbours: 4,
			..Default::default()
		}
	}

	#[test]
	fn half_rate_gives_threshold_direct_sessions_works() {
		let r = run(small(0.5, 60));
		assert_eq!(r.p2p_threshold, 20);
		assert_eq!((r.direct_end, r.direct_max, r.p2p_end), (20, 20, 40), "{r}");
		assert!(r.leaves > 0, "churn happened");
		assert_eq!(r.incomplete_played, 0);
		assert_eq!(r.requests_to_banned, 0);
		assert!(r.p2p_bytes > 0 && r.segments_played > 0, "{r}");
	}

	#[test]
	fn zero_rate_is_all_direct_works() {
		let r = run(small(0.0, 30));
		assert_eq!((r.direct_end, r.p2p_end, r.p2p_bytes), (30, 0, 0), "{r}");
		assert_eq!(r.incomplete_played, 0);
		assert!(r.segments_played > 0);
	}

	#[test]
	fn zero_rate_refuses_beyond_max_streams_works() {
		let r = run(small(0.0, 50));
		assert_eq!((r.direct_end, r.p2p_end, r.p2p_bytes), (40, 0, 0), "{r}");
		assert!(r.refused >= 10, "{r}");
		assert_eq!(r.incomplete_played, 0);
	}

	#[test]
	fn corrupt_peers_are_banned_and_never_asked_again_works() {
		let r = run(SimConfig { bad_peers: 0.2, ..small(1.0, 40) });
		assert!(r.bans > 0, "{r}");
		assert_eq!(r.requests_to_banned, 0);
		assert_eq!(r.incomplete_played, 0, "a corrupt chunk is never played");
	}

	#[test]
	fn same_seed_same_figures_works() {
		let a = run(small(1.0, 40));
		let b = run(small(1.0, 40));
		assert_eq!(
			(a.delivered_bytes, a.node_egress_bytes, a.p2p_bytes, a.stalls, a.events),
			(b.delivered_bytes, b.node_egress_bytes, b.p2p_bytes, b.stalls, b.events)
		);
	}
}
