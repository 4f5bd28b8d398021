//! A discrete-event network: per-endpoint upload and download rates with queueing, one latency
//! for every link, and loss.
//!
//! - *Bulk* messages (chunks) take bandwidth: each sender's uplink sends one message at a time,
//!   round robin over its destinations (so a thousand flows share it fairly, as TCP or QUIC
//!   flows roughly do), then the receiver's downlink takes them first come first served.
//! - *Control* messages (requests, announcements, headers: tens to hundreds of bytes) take only
//!   the latency.
//! - Loss: the transports are reliable, so a loss costs time, not data: each lost 1200-byte
//!   packet of a message (probability `loss` each) delays it by one retransmission timeout.
//!
//! Rates are kept in microseconds inside, so a 1 Gbit/s uplink sending 16 KiB in 131 µs is not
//! rounded to the millisecond clock of the cores; arrivals are reported on that clock.

use crate::p2p::Millis;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::{
	cmp::Reverse,
	collections::{BinaryHeap, VecDeque},
};

/// An endpoint: 0 is the streamer node, viewers count up from 1.
pub type NodeId = u32;

/// Packet size for the loss model (a typical QUIC/TCP payload on a 1500-byte MTU path).
const PACKET_BYTES: u32 = 1200;

/// Network-wide settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
	/// One-way latency of every link, ms.
	pub latency_ms: u64,
	/// Packet loss probability in [0, 1).
	pub loss: f64,
	/// Delay a lost packet adds (retransmission timeout), ms; `max(200, 3 × latency)` is
	/// what TCP's minimum RTO and QUIC's probe timeout come to on such paths.
	pub retransmit_ms: u64,
}

#[derive(Debug)]
struct End<M> {
	up_bytes_per_sec: u64,
	down_bytes_per_sec: u64,
	/// Per destination: queued bulk messages and their lengths.
	queues: Vec<(NodeId, VecDeque<(M, u32)>)>,
	/// Round-robin order of destinations with something queued (indices into `queues`).
	rr: VecDeque<usize>,
	busy_until_us: u64,
	link_event: bool,
	down_free_us: u64,
	alive: bool,
	sent_bytes: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
	LinkFree(NodeId),
	Arrive(usize),
}

/// The simulated network carrying messages of type `M`.
#[derive(Debug)]
pub struct Network<M> {
	config: NetConfig,
	ends: Vec<End<M>>,
	heap: BinaryHeap<Reverse<(Millis, u64, Ev)>>,
	in_flight: Vec<Option<(NodeId, NodeId, M)>>,
	free_slots: Vec<usize>,
	counter: u64,
	rng: SmallRng,
}

impl<M> Network<M> {
	/// An empty network.
	pub fn new(config: NetConfig, seed: u64) -> Self {
		Self {
			config,
			ends: Vec::new(),
			heap: BinaryHeap::new(),
			in_flight: Vec::new(),
			free_slots: Vec::new(),
			counter: 0,
			rng: SmallRng::seed_from_u64(seed),
		}
	}

	/// Adds an endpoint with these link rates (bytes/s); ids count up from 0.
	pub fn add_endpoint(&mut self, up_bytes_per_sec: u64, down_bytes_per_sec: u64) -> NodeId {
		self.ends.push(End {
			up_bytes_per_sec: up_bytes_per_sec.max(1),
			down_bytes_per_sec: down_bytes_per_sec.max(1),
			queues: Vec::new(),
			rr: VecDeque::new(),
			busy_until_us: 0,
			link_event: false,
			down_free_us: 0,
			alive: true,
			sent_bytes: 0,
		});
		(self.ends.len() - 1) as NodeId
	}

	/// The endpoint left: what it queued is dropped, what is sent to it is dropped on arrival.
	pub fn remove_endpoint(&mut self, id: NodeId) {
		let e = &mut self.ends[id as usize];
		e.alive = false;
		e.queues.clear();
		e.rr.clear();
	}

	/// Drops what `from` queued for `to` and has not started sending (a cancelled transfer).
	pub fn drop_queued(&mut self, from: NodeId, to: NodeId, mut pred: impl FnMut(&M) -> bool) {
		let e = &mut self.ends[from as usize];
		if let Some(qi) = e.queues.iter().position(|(d, _)| *d == to) {
			let q = &mut e.queues[qi].1;
			q.retain(|(m, _)| !pred(m));
			if q.is_empty() {
				e.rr.retain(|&i| i != qi);
			}
		}
	}

	/// Bytes `id` put on its uplink so far (bulk messages).
	pub fn sent_bytes(&self, id: NodeId) -> u64 {
		self.ends[id as usize].sent_bytes
	}

	fn push(&mut self, at: Millis, ev: Ev) {
		self.counter += 1;
		self.heap.push(Reverse((at, self.counter, ev)));
	}

	fn loss_delay_ms(&mut self, len: u32) -> u64 {
		if self.config.loss <= 0.0 {
			return 0;
		}
		let packets = len.div_ceil(PACKET_BYTES).max(1);
		let lost = (0..packets).filter(|_| self.rng.random::<f64>() < self.config.loss).count();
		lost as u64 * self.config.retransmit_ms
	}

	fn park(&mut self, from: NodeId, to: NodeId, msg: M) -> usize {
		let slot = (from, to, msg);
		if let Some(i) = self.free_slots.pop() {
			self.in_flight[i] = Some(slot);
			i
		} else {
			self.in_flight.push(Some(slot));
			self.in_flight.len() - 1
		}
	}

	/// Sends a control message: it arrives after the latency (and any loss delay).
	pub fn send_control(&mut self, now: Millis, from: NodeId, to: NodeId, msg: M, len: u32) {
		let at = now + self.config.latency_ms + self.loss_delay_ms(len);
		let slot = self.park(from, to, msg);
		self.push(at, Ev::Arrive(slot));
	}

	/// Queues a bulk message of `len` bytes on `from`'s uplink.
	pub fn send_bulk(&mut self, now: Millis, from: NodeId, to: NodeId, msg: M, len: u32) {
		let e = &mut self.ends[from as usize];
		if !e.alive {
			return;
		}
		let qi = match e.queues.iter().position(|(d, _)| *d == to) {
			Some(i) => i,
			None => {
				e.queues.push((to, VecDeque::new()));
				e.queues.len() - 1
			}
		};
		if e.queues[qi].1.is_empty() {
			e.rr.push_back(qi);
		}
		e.queues[qi].1.push_back((msg, len));
		if !e.link_event {
			e.link_event = true;
			self.push(now, Ev::LinkFree(from));
		}
	}

	/// When the next event is due.
	pub fn next_time(&self) -> Option<Millis> {
		self.heap.peek().map(|Reverse((t, _, _))| *t)
	}

	/// The next message arriving at or before `now`: `(from, to, message)`.
	pub fn poll(&mut self, now: Millis) -> Option<(NodeId, NodeId, M)> {
		while let Some(Reverse((t, _, _))) = self.heap.peek() {
			if *t > now {
				return None;
			}
			let Reverse((t, _, ev)) = self.heap.pop().expect("peeked");
			match ev {
				Ev::Arrive(slot) => {
					let (from, to, msg) = self.in_flight[slot].take().expect("parked");
					self.free_slots.push(slot);
					if self.ends[to as usize].alive {
						return Some((from, to, msg));
					}
				}
				Ev::LinkFree(id) => self.transmit(t, id),
			}
		}
		None
	}

	/// Starts every transmission of `id`'s uplink that can start by `now`.
	fn transmit(&mut self, now: Millis, id: NodeId) {
		let now_us = now * 1000;
		let latency_us = self.config.latency_ms * 1000;
		let mut sends = Vec::new();
		{
			let e = &mut self.ends[id as usize];
			e.link_event = false;
			e.busy_until_us = e.busy_until_us.max(now_us);
			// Everything that starts within this millisecond goes now: a fast link sends many
			// messages per tick.
			while e.busy_until_us < now_us + 1000 {
				let Some(qi) = e.rr.pop_front() else { break };
				let (to, q) = &mut e.queues[qi];
				let to = *to;
				// A cancelled transfer may have emptied a queue still in the rotation.
				let Some((msg, len)) = q.pop_front() else { continue };
				if !q.is_empty() {
					e.rr.push_back(qi);
				}
				let start = e.busy_until_us;
				let finish = start + (len as u64 * 1_000_000 / e.up_bytes_per_sec).max(1);
				e.busy_until_us = finish;
				e.sent_bytes += len as u64;
				sends.push((to, msg, len, start, finish));
			}
		}
		for (to, msg, len, start, finish) in sends {
			let loss_us = self.loss_delay_ms(len) * 1000;
			let r = &mut self.ends[to as usize];
			let tx_down = (len as u64 * 1_000_000 / r.down_bytes_per_sec).max(1);
			let down_start = (start + latency_us).max(r.down_free_us);
			let done = (down_start + tx_down).max(finish + latency_us) + loss_us;
			r.down_free_us = done;
			let slot = self.park(id, to, msg);
			self.push(done.div_ceil(1000), Ev::Arrive(slot));
		}
		let e = &mut self.ends[id as usize];
		if !e.rr.is_empty() {
			e.link_event = true;
			// The millisecond in which the next transmission starts (not the one after it:
			// that would idle the link for the rest of this one).
			let at = (e.busy_until_us / 1000).max(now + 1);
			self.push(at, Ev::LinkFree(id));
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn uplink_rate_and_fair_sharing_works() {
		let cfg = NetConfig { latency_ms: 10, loss: 0.0, retransmit_ms: 200 };
		let mut net: Network<u32> = Network::new(cfg, 1);
		let a = net.add_endpoint(100_000, 10_000_000); // 100 kB/s up
		let b = net.add_endpoint(10_000_000, 10_000_000);
		let c = net.add_endpoint(10_000_000, 10_000_000);
		for i in 0..5 {
			net.send_bulk(0, a, b, i, 10_000);
		}
		net.send_bulk(0, a, c, 100, 10_000);
		net.send_control(0, b, a, 7, 50);
		let mut got = vec![];
		while let Some(t) = net.next_time() {
			while let Some((from, to, m)) = net.poll(t) {
				got.push((t, from, to, m));
			}
		}
		assert_eq!(got[0], (10, b, a, 7), "control takes only the latency");
		// 10 kB at 100 kB/s = 100 ms each; c's single message goes second (round robin).
		let to_c = got.iter().find(|g| g.2 == c).unwrap();
		assert_eq!(to_c.0, 210);
		let last = got.iter().map(|g| g.0).max().unwrap();
		assert_eq!(last, 610, "six messages take 600 ms on the uplink");
		assert_eq!(net.sent_bytes(a), 60_000);
	}

	#[test]
	fn loss_delays_but_delivers_works() {
		let cfg = NetConfig { latency_ms: 20, loss: 0.05, retransmit_ms: 200 };
		let mut net: Network<u32> = Network::new(cfg, 3);
		let a = net.add_endpoint(1_000_000, 1_000_000);
		let b = net.add_endpoint(1_000_000, 1_000_000);
		for i in 0..200 {
			net.send_control(0, a, b, i, 1200);
		}
		let mut got = vec![];
		while let Some(t) = net.next_time() {
			while let Some((_, _, m)) = net.poll(t) {
				got.push((t, m));
			}
		}
		assert_eq!(got.len(), 200, "nothing is lost for good");
		let late = got.iter().filter(|g| g.0 > 20).count();
		assert!(late > 0 && late < 30, "about 5 % retransmitted: {late}");
		assert!(got.iter().all(|g| g.0 == 20 || (g.0 - 20) % 200 == 0));
	}

	#[test]
	fn saturated_uplink_keeps_its_rate_works() {
		// 1 Gbit/s offered twice its rate for 20 s: it sends 20 s worth, not less.
		let cfg = NetConfig { latency_ms: 50, loss: 0.0, retransmit_ms: 200 };
		let mut net: Network<u32> = Network::new(cfg, 1);
		let node = net.add_endpoint(125_000_000, u64::MAX / 4);
		let viewers: Vec<_> = (0..2000).map(|_| net.add_endpoint(625_000, 2_500_000)).collect();
		let mut received = 0u64;
		for t in 0..20_000 {
			if t % 2000 == 0 {
				for &v in &viewers {
					for _ in 0..8 {
						net.send_bulk(t, node, v, 0, 16_384);
					}
				}
			}
			while net.poll(t).is_some() {
				received += 16_384;
			}
		}
		let expected = 20 * 125_000_000u64;
		assert!(
			net.sent_bytes(node).abs_diff(expected) < expected / 100,
			"{}",
			net.sent_bytes(node)
		);
		assert!(received > expected * 98 / 100, "{received}");
	}
}
