//! Viewer side, sans-IO: the transport controller, the segment buffer that hands the player
//! every segment once and in order, the HLS playlist, and [`ViewerCore`] which ties them to the
//! connections.
//!
//! # Driving a [`ViewerCore`]
//!
//! 1. Call [`ViewerCore::start`] once.
//! 2. Drain [`ViewerCore::poll_action`]: `Connect` opens a connection (TCP or QUIC) that sends
//!    `Hello`, then `Subscribe { start }`, then `Ping` every `keepalive_interval`; `Close` closes
//!    one.
//! 3. Feed every message a connection receives to [`ViewerCore::handle_message`], its end to
//!    [`ViewerCore::handle_closed`], and (QUIC) its path statistics to
//!    [`ViewerCore::handle_path_stats`].
//! 4. Hand every segment from [`ViewerCore::poll_delivered`] to the player.
//! 5. Call [`ViewerCore::handle_timeout`] at [`ViewerCore::poll_timeout`].
//!
//! # Switching without gap or duplicate
//!
//! A switch is make-before-break: the new connection subscribes at the first sequence the player
//! still needs while the old one keeps delivering; the old one is closed once the new one has
//! delivered a segment no later than the next one the player needs (so nothing the old one
//! still has in flight can be lost), or when the old one dies. Both may deliver the same sequence during the overlap;
//! [`SegmentBuffer`] passes the first verified copy and drops the other. A sequence is skipped
//! (a gap, counted and marked as a discontinuity) only when no open connection can still deliver
//! it: each connection delivers in ascending order, so that is when every open connection has
//! delivered a later one or ended.

use crate::{
	protocol::{ErrorCode, Message, ServerAddrs, Start},
	segment::{Assembled, Assembler, Segment, SegmentError, SegmentLimits},
};
use bytes::Bytes;
use dsp_primitives::{Hash32, PublicKey, StreamId};
use std::{
	collections::{BTreeMap, HashMap, VecDeque},
	fmt,
	time::{Duration, Instant},
};

/// Identifies one connection of a viewer.
pub type ConnId = u64;

/// A direct transport (defined with the wire messages, as [`Message::Switched`] carries it).
pub use crate::protocol::Transport;

/// Which transports the controller may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportPolicy {
	/// QUIC first; TCP when UDP is blocked or measurably worse.
	Auto,
	/// Only this transport (reconnects on failure).
	Only(Transport),
}

/// Settings of the [`TransportController`].
#[derive(Clone, Debug)]
pub struct ControllerConfig {
	/// Which transports to use. Default `Auto`.
	pub policy: TransportPolicy,
	/// A connection that is not welcomed within this time has failed (UDP blocked shows up
	/// here). Default 3 s.
	pub connect_timeout: Duration,
	/// The active connection has stalled when nothing (not even a `Pong`) arrived for this
	/// long. Must exceed the keep-alive interval. Default 5 s.
	pub progress_timeout: Duration,
	/// QUIC loss ratio (lost / sent packets between two statistics samples) above which QUIC
	/// is left for TCP. Default 0.10. quinn counts loss of the viewer's own packets; a viewer
	/// mostly sends acknowledgements, so heavy loss on the downstream shows up first as slow
	/// segments (`slow_ratio`) or a stall (`progress_timeout`), which are judged too.
	pub max_quic_loss: f64,
	/// Packets that must have been sent between two samples before loss is judged. Default 200.
	pub min_loss_sample: u64,
	/// QUIC smoothed RTT above which QUIC is left for TCP. Default 2 s.
	pub max_quic_rtt: Duration,
	/// A segment is slow when its transfer took more than this share of its play time.
	/// Default 0.9 (goodput below ~1.1 × bitrate).
	pub slow_ratio: f64,
	/// Consecutive slow segments that make the controller switch. Default 3.
	pub slow_segments: u32,
	/// First delay before reconnecting after a failure, doubled per failure up to
	/// `max_retry_backoff`. Default 250 ms.
	pub retry_backoff: Duration,
	/// Longest delay between reconnect attempts. Default 8 s.
	pub max_retry_backoff: Duration,
	/// After leaving QUIC (Auto policy), try it again (make-before-break) this long after its
	/// last failure; `None` never. Default 60 s, which bounds flapping on a bad path to one
	/// attempt a minute.
	pub quic_reprobe_interval: Option<Duration>,
}

impl Default for ControllerConfig {
	fn default() -> Self {
		Self {
			policy: TransportPolicy::Auto,
			connect_timeout: Duration::from_secs(3),
			progress_timeout: Duration::from_secs(5),
			max_quic_loss: 0.10,
			min_loss_sample: 200,
			max_quic_rtt: Duration::from_secs(2),
			slow_ratio: 0.9,
			slow_segments: 3,
			retry_backoff: Duration::from_millis(250),
			max_retry_backoff: Duration::from_secs(8),
			quic_reprobe_interval: Some(Duration::from_secs(60)),
		}
	}
}

/// Why the controller changed transport or connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwitchReason {
	/// Asked for by the user or a test.
	Forced,
	/// The connection was not established within `connect_timeout`.
	ConnectTimeout,
	/// The connection closed or failed.
	ConnectionLost(String),
	/// Nothing arrived within `progress_timeout`.
	Stalled,
	/// QUIC loss above `max_quic_loss`.
	Loss,
	/// QUIC RTT above `max_quic_rtt`.
	Rtt,
	/// `slow_segments` segments in a row arrived slower than real time.
	Goodput,
	/// Trying QUIC again `quic_reprobe_interval` after it failed.
	Reprobe,
}

/// What the controller asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlAction {
	/// Open connection `conn` over `transport`.
	Connect {
		/// New connection id.
		conn: ConnId,
		/// Transport to use.
		transport: Transport,
		/// Set when the connection is opened to switch transport away from this one (the
		/// driver tells the server with `Switched`).
		switched_from: Option<Transport>,
	},
	/// Close connection `conn`.
	Close {
		/// The connection.
		conn: ConnId,
	},
}

/// A completed switch, for logs and the status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
	/// Transport before.
	pub from: Transport,
	/// Transport after.
	pub to: Transport,
	/// Why.
	pub reason: SwitchReason,
}

#[derive(Clone, Debug)]
struct Conn {
	id: ConnId,
	transport: Transport,
	opened_at: Instant,
	connected: bool,
	/// A complete segment arrived on it: its end is not a failed attempt.
	delivered: bool,
	last_progress: Instant,
	slow_in_a_row: u32,
	loss_sample: Option<(u64, u64)>,
}

impl Conn {
	fn new(id: ConnId, transport: Transport, now: Instant) -> Self {
		Self {
			id,
			transport,
			opened_at: now,
			connected: false,
			delivered: false,
			last_progress: now,
			slow_in_a_row: 0,
			loss_sample: None,
		}
	}
}

/// Chooses and switches the transport of one viewer session. Deterministic: it reads no clock
/// and owns no socket.
#[derive(Debug)]
pub struct TransportController {
	config: ControllerConfig,
	next_id: ConnId,
	active: Option<Conn>,
	candidate: Option<(Conn, SwitchReason)>,
	retry: Option<(Instant, Transport, SwitchReason)>,
	/// When the reconnect in `retry` was scheduled (the failure that caused it).
	retry_scheduled_at: Option<Instant>,
	/// Transport of the connection that failed, while a reconnect waits in `retry`.
	pending_from: Option<Transport>,
	failures_in_a_row: u32,
	/// Active connections in a row that failed to connect or closed before any segment (the
	/// viewer's cue to try another server); cleared by a segment or [`Self::reset_failed_attempts`].
	failed_attempts: u32,
	/// When QUIC last failed or was found worse (Auto policy); cleared when QUIC works again.
	udp_failed: Option<Instant>,
	actions: VecDeque<ControlAction>,
	switches: Vec<Switch>,
	switches_reported: usize,
}

impl TransportController {
	/// A controller with `config`; call [`Self::start`].
	pub fn new(config: ControllerConfig) -> Self {
		Self {
			config,
			next_id: 0,
			active: None,
			candidate: None,
			retry: None,
			retry_scheduled_at: None,
			pending_from: None,
			failures_in_a_row: 0,
			failed_attempts: 0,
			udp_failed: None,
			actions: VecDeque::new(),
			switches: Vec::new(),
			switches_reported: 0,
		}
	}

	fn open(&mut self, now: Instant, transport: Transport, from: Option<Transport>) -> Conn {
		self.next_id += 1;
		let switched_from = from.filter(|f| *f != transport);
		self.actions.push_back(ControlAction::Connect {
			conn: self.next_id,
			transport,
			switched_from,
		});
		Conn::new(self.next_id, transport, now)
	}

	/// Opens the first connection.
	pub fn start(&mut self, now: Instant) {
		let transport = match self.config.policy {
			TransportPolicy::Auto => Transport::Quic,
			TransportPolicy::Only(t) => t,
		};
		let conn = self.open(now, transport, None);
		self.active = Some(conn);
	}

	/// Active connections in a row that failed to connect or closed before delivering a
	/// segment.
	pub fn failed_attempts(&self) -> u32 {
		self.failed_attempts
	}

	/// Starts counting failed attempts again (the viewer moved to another server). The
	/// reconnect backoff is kept: moving does not make a dead network cheaper to probe.
	pub fn reset_failed_attempts(&mut self) {
		self.failed_attempts = 0;
	}

	/// A reconnect waiting for its backoff goes at once (at the time of the failure that
	/// scheduled it): the viewer moved away from a server that kept failing, and the first
	/// attempt at the new one should not pay for the old one's failures. The backoff itself
	/// keeps growing, so a viewer whose servers all fail still slows down.
	pub fn retry_now(&mut self) {
		if let (Some(retry), Some(at)) = (self.retry.as_mut(), self.retry_scheduled_at) {
			retry.0 = retry.0.min(at);
		}
	}

	/// Whether `conn` is the active connection (not a switch candidate).
	pub fn is_active(&self, conn: ConnId) -> bool {
		self.active.as_ref().is_some_and(|c| c.id == conn)
	}

	/// The transport in use (the active connection's).
	pub fn transport(&self) -> Option<Transport> {
		self.active.as_ref().map(|c| c.transport)
	}

	/// Completed switches so far.
	pub fn switches(&self) -> &[Switch] {
		&self.switches
	}

	/// Switches completed since the last call (for logging them once).
	pub fn poll_switch(&mut self) -> Option<Switch> {
		let s = self.switches.get(self.switches_reported).cloned()?;
		self.switches_reported += 1;
		Some(s)
	}

	/// Whether `conn` is open (active or being switched to).
	pub fn is_open(&self, conn: ConnId) -> bool {
		self.active.as_ref().is_some_and(|c| c.id == conn)
			|| self.candidate.as_ref().is_some_and(|(c, _)| c.id == conn)
	}

	fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
		if let Some(c) = self.active.as_mut().filter(|c| c.id == conn) {
			return Some(c);
		}
		self.candidate.as_mut().map(|(c, _)| c).filter(|c| c.id == conn)
	}

	/// What to switch to when `from` fails or is worse.
	fn alternative(&self, from: Transport) -> Transport {
		match self.config.policy {
			TransportPolicy::Only(t) => t,
			TransportPolicy::Auto if from == Transport::Tcp && self.udp_failed.is_none() => {
				Transport::Quic
			}
			TransportPolicy::Auto => Transport::Tcp,
		}
	}

	fn note_failure(&mut self, now: Instant, transport: Transport) {
		if transport == Transport::Quic && self.config.policy == TransportPolicy::Auto {
			self.udp_failed = Some(now);
		}
	}

	/// Make-before-break: opens a connection over `to`; the active one stays until the new one
	/// delivers a complete segment.
	fn begin_switch(&mut self, now: Instant, to: Transport, reason: SwitchReason) {
		if self.candidate.is_some() {
			return;
		}
		let from = self.transport();
		let conn = self.open(now, to, from);
		self.candidate = Some((conn, reason));
	}

	/// The active connection `closed` is gone: promote the switch candidate if there is one,
	/// otherwise reconnect over `to`, at once on the first failure if that changes transport
	/// (or `immediate`), after the backoff otherwise.
	fn replace_active(
		&mut self,
		now: Instant,
		closed: &Conn,
		to: Transport,
		reason: SwitchReason,
		immediate: bool,
	) {
		let from = closed.transport;
		if !closed.delivered {
			self.failed_attempts += 1;
		}
		self.active = None;
		if let Some((cand, r)) = self.candidate.take() {
			self.switches.push(Switch { from, to: cand.transport, reason: r });
			self.active = Some(cand);
			return;
		}
		self.failures_in_a_row += 1;
		if self.failures_in_a_row == 1 && (to != from || immediate) {
			let conn = self.open(now, to, Some(from));
			self.active = Some(conn);
			if to != from {
				self.switches.push(Switch { from, to, reason });
			}
		} else {
			let shift = self.failures_in_a_row.saturating_sub(1).min(16);
			let delay =
				(self.config.retry_backoff * 2u32.pow(shift)).min(self.config.max_retry_backoff);
			self.retry = Some((now + delay, to, reason));
			self.retry_scheduled_at = Some(now);
			self.pending_from = Some(from);
		}
	}

	/// The connection completed its handshake (the server's `Welcome` arrived).
	pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
		if let Some(c) = self.conn_mut(conn) {
			c.connected = true;
			c.last_progress = now;
		}
	}

	/// Something arrived on `conn`.
	pub fn handle_progress(&mut self, now: Instant, conn: ConnId) {
		if let Some(c) = self.conn_mut(conn) {
			c.last_progress = now;
		}
	}

	/// `conn` delivered a complete segment of `duration` play time in `transfer` time, and it
	/// was not later than the next segment the player needed.
	pub fn handle_segment(
		&mut self,
		now: Instant,
		conn: ConnId,
		duration: Duration,
		transfer: Duration,
	) {
		self.handle_segment_at(now, conn, duration, transfer, true);
	}

	/// `conn` delivered a complete segment of `duration` play time in `transfer` time.
	/// `caught_up`: the segment was not later than the next one the player needed. A switch
	/// completes only on such a segment: one further ahead means the old connection may still
	/// deliver the segments in between.
	pub fn handle_segment_at(
		&mut self,
		now: Instant,
		conn: ConnId,
		duration: Duration,
		transfer: Duration,
		caught_up: bool,
	) {
		self.failures_in_a_row = 0;
		self.failed_attempts = 0;
		if let Some(c) = self.conn_mut(conn) {
			c.delivered = true;
		}
		if let Some((cand, _)) = self.candidate.as_mut().filter(|(c, _)| c.id == conn && !caught_up)
		{
			cand.last_progress = now;
			return;
		}
		if self.candidate.as_ref().is_some_and(|(c, _)| c.id == conn) {
			let (mut cand, reason) = self.candidate.take().expect("checked; qed");
			cand.last_progress = now;
			let old = self.active.replace(cand).expect("a candidate implies an active; qed");
			self.actions.push_back(ControlAction::Close { conn: old.id });
			let to = self.active.as_ref().expect("just set; qed").transport;
			if to == Transport::Quic {
				self.udp_failed = None;
			}
			self.switches.push(Switch { from: old.transport, to, reason });
			return;
		}
		let slow_ratio = self.config.slow_ratio;
		let slow_segments = self.config.slow_segments;
		let Some(active) = self.active.as_mut().filter(|c| c.id == conn) else { return };
		active.last_progress = now;
		if transfer.as_secs_f64() > duration.as_secs_f64() * slow_ratio {
			active.slow_in_a_row += 1;
		} else {
			active.slow_in_a_row = 0;
		}
		if active.slow_in_a_row >= slow_segments {
			active.slow_in_a_row = 0;
			let from = active.transport;
			let to = self.alternative(from);
			if self.config.policy == TransportPolicy::Auto {
				self.note_failure(now, from);
			}
			self.begin_switch(now, to, SwitchReason::Goodput);
		}
	}

	/// QUIC path statistics of `conn` (cumulative counters as quinn reports them).
	pub fn handle_path_stats(
		&mut self,
		now: Instant,
		conn: ConnId,
		rtt: Duration,
		lost_packets: u64,
		sent_packets: u64,
	) {
		if self.config.policy != TransportPolicy::Auto {
			return;
		}
		let (max_loss, min_sample, max_rtt) =
			(self.config.max_quic_loss, self.config.min_loss_sample, self.config.max_quic_rtt);
		let Some(active) = self.active.as_mut().filter(|c| c.id == conn && c.connected) else {
			return;
		};
		if active.transport != Transport::Quic {
			return;
		}
		let mut reason = None;
		match active.loss_sample {
			None => active.loss_sample = Some((lost_packets, sent_packets)),
			Some((lost0, sent0)) => {
				let sent = sent_packets.saturating_sub(sent0);
				if sent >= min_sample {
					let lost = lost_packets.saturating_sub(lost0);
					if lost as f64 / sent as f64 > max_loss {
						reason = Some(SwitchReason::Loss);
					}
					active.loss_sample = Some((lost_packets, sent_packets));
				}
			}
		}
		if rtt > max_rtt {
			reason = Some(SwitchReason::Rtt);
		}
		if let Some(reason) = reason {
			self.udp_failed = Some(now);
			self.begin_switch(now, Transport::Tcp, reason);
		}
	}

	/// `conn` closed (by either side, or failed to connect).
	pub fn handle_closed(&mut self, now: Instant, conn: ConnId, why: String) {
		if self.candidate.as_ref().is_some_and(|(c, _)| c.id == conn) {
			let (cand, _) = self.candidate.take().expect("checked; qed");
			self.note_failure(now, cand.transport);
			return;
		}
		if let Some(active) = self.active.clone().filter(|c| c.id == conn) {
			let from = active.transport;
			self.note_failure(now, from);
			let to = self.alternative(from);
			self.replace_active(now, &active, to, SwitchReason::ConnectionLost(why), false);
		}
	}

	/// The server refused `conn` as full (with or without a redirect). Not a transport
	/// failure: QUIC is not marked failed and the transport is kept. A refused switch
	/// candidate is dropped; a refused active connection is replaced over the same transport,
	/// at once if `immediate` and it is the first failure in a row (a redirect), after the
	/// backoff otherwise (which also bounds redirect loops between full servers).
	pub fn handle_refused(&mut self, now: Instant, conn: ConnId, why: String, immediate: bool) {
		if self.candidate.as_ref().is_some_and(|(c, _)| c.id == conn) {
			self.candidate = None;
			return;
		}
		if let Some(active) = self.active.clone().filter(|c| c.id == conn) {
			let reason = SwitchReason::ConnectionLost(why);
			self.replace_active(now, &active, active.transport, reason, immediate);
		}
	}

	/// Switches to `to` now (make-before-break) and keeps to it: the policy becomes `Only(to)`.
	pub fn force(&mut self, now: Instant, to: Transport) {
		self.config.policy = TransportPolicy::Only(to);
		if self.transport() != Some(to) {
			if let Some((cand, _)) = self.candidate.take() {
				self.actions.push_back(ControlAction::Close { conn: cand.id });
			}
			self.begin_switch(now, to, SwitchReason::Forced);
		}
	}

	/// Returns to automatic choice.
	pub fn set_auto(&mut self) {
		self.config.policy = TransportPolicy::Auto;
	}

	/// The next action for the driver.
	pub fn poll_action(&mut self) -> Option<ControlAction> {
		self.actions.pop_front()
	}

	/// When [`Self::handle_timeout`] must be called next.
	pub fn poll_timeout(&self) -> Option<Instant> {
		let mut t: Option<Instant> = None;
		let mut consider = |i: Instant| t = Some(t.map_or(i, |t| t.min(i)));
		for c in self.active.iter().chain(self.candidate.as_ref().map(|(c, _)| c)) {
			if c.connected {
				consider(c.last_progress + self.config.progress_timeout);
			} else {
				consider(c.opened_at + self.config.connect_timeout);
			}
		}
		if let Some((at, ..)) = self.retry {
			consider(at);
		}
		if let Some(at) = self.reprobe_at() {
			consider(at);
		}
		t
	}

	/// When QUIC is tried again: Auto policy, on a working TCP connection, no switch running.
	fn reprobe_at(&self) -> Option<Instant> {
		let interval = self.config.quic_reprobe_interval?;
		let failed = self.udp_failed?;
		let on_tcp =
			self.active.as_ref().is_some_and(|c| c.transport == Transport::Tcp && c.connected);
		(self.config.policy == TransportPolicy::Auto && on_tcp && self.candidate.is_none())
			.then_some(failed + interval)
	}

	/// Time passed.
	pub fn handle_timeout(&mut self, now: Instant) {
		if self.reprobe_at().is_some_and(|at| now >= at) {
			// A failed probe sets `udp_failed` again, so the next one waits another interval.
			self.udp_failed = Some(now);
			self.begin_switch(now, Transport::Quic, SwitchReason::Reprobe);
		}
		if let Some((at, to, reason)) = self.retry.clone() {
			if now >= at {
				self.retry = None;
				let conn = self.open(now, to, self.pending_from);
				self.active = Some(conn);
				let from = self.pending_from.take().unwrap_or(to);
				if from != to {
					self.switches.push(Switch { from, to, reason });
				}
			}
		}
		if let Some((cand, _)) = &self.candidate {
			let expired = if cand.connected {
				now >= cand.last_progress + self.config.progress_timeout
			} else {
				now >= cand.opened_at + self.config.connect_timeout
			};
			if expired {
				let (cand, _) = self.candidate.take().expect("checked; qed");
				self.note_failure(now, cand.transport);
				self.actions.push_back(ControlAction::Close { conn: cand.id });
			}
		}
		let Some(active) = self.active.clone() else { return };
		if !active.connected && now >= active.opened_at + self.config.connect_timeout {
			self.actions.push_back(ControlAction::Close { conn: active.id });
			self.note_failure(now, active.transport);
			let to = self.alternative(active.transport);
			self.replace_active(now, &active, to, SwitchReason::ConnectTimeout, false);
		} else if active.connected && now >= active.last_progress + self.config.progress_timeout {
			let to = self.alternative(active.transport);
			self.note_failure(now, active.transport);
			if self.candidate.is_none() {
				self.begin_switch(now, to, SwitchReason::Stalled);
			}
			// Do not fire again until the switch resolves.
			if let Some(a) = self.active.as_mut() {
				a.last_progress = now;
			}
		}
	}
}

/// A segment handed to the player.
#[derive(Clone, Debug)]
pub struct Delivered {
	/// The verified segment.
	pub segment: Segment,
	/// Whether segments before it were skipped (a gap; HLS `EXT-X-DISCONTINUITY`).
	pub discontinuity: bool,
}

/// Counters of the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferStats {
	/// Segments handed to the player.
	pub delivered: u64,
	/// Copies dropped because the player already had (or was about to get) that sequence.
	pub duplicates: u64,
	/// Sequence numbers skipped because no connection could deliver them any more.
	pub skipped: u64,
}

/// Orders complete segments from any number of connections into one sequence without gaps or
/// duplicates (see the module docs for when a gap is declared).
///
/// Memory: at most `max_pending` complete segments waiting for an earlier one.
#[derive(Debug)]
pub struct SegmentBuffer {
	next: Option<u64>,
	pending: BTreeMap<u64, Segment>,
	/// Per open connection: one past the highest sequence it delivered (or `u64::MAX` once it
	/// sent `End`).
	progress: HashMap<ConnId, Option<u64>>,
	max_pending: usize,
	end: Option<u64>,
	ready: VecDeque<Delivered>,
	last_delivered: Option<u64>,
	stats: BufferStats,
}

impl SegmentBuffer {
	/// A buffer holding at most `max_pending` out-of-order segments.
	pub fn new(max_pending: usize) -> Self {
		Self {
			next: None,
			pending: BTreeMap::new(),
			progress: HashMap::new(),
			max_pending: max_pending.max(1),
			end: None,
			ready: VecDeque::new(),
			last_delivered: None,
			stats: BufferStats::default(),
		}
	}

	/// The first sequence the player still needs (`None` before the first segment).
	pub fn next_needed(&self) -> Option<u64> {
		self.next
	}

	/// Counters.
	pub fn stats(&self) -> BufferStats {
		self.stats
	}

	/// Whether the stream ended and everything before its end was handed out.
	pub fn is_ended(&self) -> bool {
		matches!((self.end, self.next), (Some(e), Some(n)) if n >= e)
			|| (self.end.is_some() && self.next.is_none() && self.pending.is_empty())
	}

	/// A connection opened.
	pub fn handle_opened(&mut self, conn: ConnId) {
		self.progress.insert(conn, None);
	}

	/// A connection closed.
	pub fn handle_closed(&mut self, conn: ConnId) {
		self.progress.remove(&conn);
		self.settle();
	}

	/// `conn` delivered a complete, verified segment.
	pub fn handle_segment(&mut self, conn: ConnId, segment: Segment) {
		let seq = segment.sequence();
		if let Some(p) = self.progress.get_mut(&conn) {
			*p = Some(p.map_or(seq + 1, |p| p.max(seq + 1)));
		}
		let next = *self.next.get_or_insert(seq);
		if seq < next || self.pending.contains_key(&seq) {
			self.stats.duplicates += 1;
		} else {
			self.pending.insert(seq, segment);
		}
		self.settle();
	}

	/// `conn` reported the end of the stream before `next_sequence`.
	pub fn handle_end(&mut self, conn: ConnId, next_sequence: u64) {
		self.end = Some(next_sequence);
		self.progress.insert(conn, Some(u64::MAX));
		self.settle();
	}

	fn settle(&mut self) {
		loop {
			let Some(next) = self.next else { return };
			if let Some(seg) = self.pending.remove(&next) {
				let discontinuity = self.last_delivered.is_some_and(|l| l + 1 != next);
				self.last_delivered = Some(next);
				self.next = Some(next + 1);
				self.stats.delivered += 1;
				self.ready.push_back(Delivered { segment: seg, discontinuity });
				continue;
			}
			let Some((&first, _)) = self.pending.iter().next() else { return };
			// `next` can still come only from a connection that has not delivered past it.
			let unreachable = !self.progress.is_empty()
				&& self.progress.values().all(|p| p.is_some_and(|p| p > next));
			if unreachable || self.pending.len() > self.max_pending {
				self.stats.skipped += first - next;
				self.next = Some(first);
				continue;
			}
			return;
		}
	}

	/// The next segment for the player.
	pub fn poll_delivered(&mut self) -> Option<Delivered> {
		self.ready.pop_front()
	}
}

/// Settings of a [`ViewerCore`].
#[derive(Clone, Debug)]
pub struct ViewerConfig {
	/// Chain the stream is registered on. Default all zeros.
	pub genesis_hash: Hash32,
	/// Stream to watch.
	pub stream: StreamId,
	/// The origin key that signs the stream's headers.
	pub origin: PublicKey,
	/// Where the first subscription starts. Default `Live { back: 2 }`.
	pub start: Start,
	/// Limits on received headers.
	pub segment_limits: SegmentLimits,
	/// Transport choice.
	pub controller: ControllerConfig,
	/// Most complete segments held while an earlier one is missing. Default 8.
	pub max_pending: usize,
	/// The streamers to watch from, most preferred first (as `host:port` text; the driver
	/// resolves them). The viewer starts with the first and moves to another on a redirect, a
	/// refusal or repeated failures. Empty: one server the driver knows by other means.
	pub servers: Vec<ServerAddrs>,
	/// Move to the next server after this many connection attempts in a row to the current
	/// one failed (connect failed, or closed before any segment). Default 3.
	pub failover_after: u32,
	/// Most servers known at once, configured and learnt from redirects together; targets
	/// beyond it are ignored. Default 32 (a few KiB).
	pub max_servers: usize,
}

impl ViewerConfig {
	/// Defaults for watching `stream` signed by `origin`.
	pub fn new(stream: StreamId, origin: PublicKey) -> Self {
		Self {
			genesis_hash: [0; 32],
			stream,
			origin,
			start: Start::Live { back: 2 },
			segment_limits: SegmentLimits::default(),
			controller: ControllerConfig::default(),
			max_pending: 8,
			servers: Vec::new(),
			failover_after: 3,
			max_servers: 32,
		}
	}
}

/// What the viewer asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewerAction {
	/// Open `conn` to server `server` (an index into [`ViewerCore::servers`]) over
	/// `transport`, then `Hello`, `Subscribe { stream, start }` and, if `switched_from` is set,
	/// `Switched { from }`.
	Connect {
		/// Connection id.
		conn: ConnId,
		/// Which server.
		server: usize,
		/// Transport.
		transport: Transport,
		/// Where to start.
		start: Start,
		/// The connection switches transport away from this one (telemetry for the server).
		switched_from: Option<Transport>,
	},
	/// Close `conn`, sending `Error { code, reason }` first if `code` is set.
	Close {
		/// Connection id.
		conn: ConnId,
		/// Error to send, when closing because of the peer.
		code: Option<ErrorCode>,
		/// Why (for logs).
		reason: String,
	},
}

#[derive(Debug)]
struct ViewerConn {
	transport: Transport,
	assembler: Assembler,
	header_at: Option<Instant>,
	/// `Welcome` arrived (a `Redirect` is only valid before it).
	welcomed: bool,
}

/// Why the viewer moved to another server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerChangeReason {
	/// The server refused the viewer as full and named other streamers.
	Redirected,
	/// The server refused the viewer as full without naming others: the next known one.
	Full,
	/// This many connection attempts in a row failed ([`ViewerConfig::failover_after`]).
	Failover {
		/// Failed attempts.
		attempts: u32,
	},
}

/// The viewer moved from one server to another, for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerChange {
	/// The server left.
	pub from: ServerAddrs,
	/// The server moved to.
	pub to: ServerAddrs,
	/// Why.
	pub reason: ServerChangeReason,
}

/// Counters of a viewer.
#[derive(Clone, Debug, Default)]
pub struct ViewerStats {
	/// Buffer counters.
	pub buffer: BufferStats,
	/// Connections closed because the server sent bad data (signature, hash, protocol).
	pub rejected_connections: u64,
	/// Media bytes received in complete segments (including duplicates).
	pub media_bytes: u64,
	/// Moves to another server (redirects, refusals, failovers).
	pub server_changes: u64,
}

/// One viewer session: connections, verification, ordering, transport control.
#[derive(Debug)]
pub struct ViewerCore {
	config: ViewerConfig,
	controller: TransportController,
	buffer: SegmentBuffer,
	conns: HashMap<ConnId, ViewerConn>,
	actions: VecDeque<ViewerAction>,
	stats: ViewerStats,
	/// Known servers (configured, then learnt from redirects), at most `max_servers`.
	servers: Vec<ServerAddrs>,
	/// Index in `servers` of the server new connections go to.
	current: usize,
	server_changes: VecDeque<ServerChange>,
}

impl ViewerCore {
	/// A viewer with `config`; call [`Self::start`].
	pub fn new(config: ViewerConfig) -> Self {
		let mut servers = config.servers.clone();
		servers.truncate(config.max_servers.max(1));
		if servers.is_empty() {
			servers.push(ServerAddrs::default());
		}
		Self {
			controller: TransportController::new(config.controller.clone()),
			buffer: SegmentBuffer::new(config.max_pending),
			conns: HashMap::new(),
			actions: VecDeque::new(),
			stats: ViewerStats::default(),
			servers,
			current: 0,
			server_changes: VecDeque::new(),
			config,
		}
	}

	/// The servers known, configured ones and those learnt from redirects.
	pub fn servers(&self) -> &[ServerAddrs] {
		&self.servers
	}

	/// The server new connections go to (an index into [`Self::servers`]).
	pub fn current_server(&self) -> usize {
		self.current
	}

	/// A move to another server since the last call (for logging it once).
	pub fn poll_server_change(&mut self) -> Option<ServerChange> {
		self.server_changes.pop_front()
	}

	/// New connections go to server `to` from now on. The next connection subscribes at the
	/// first sequence the player still needs, like a transport switch, so two servers that
	/// hold the same stream hand over without gap or duplicate.
	fn move_to(&mut self, to: usize, reason: ServerChangeReason) {
		self.controller.reset_failed_attempts();
		if to == self.current || to >= self.servers.len() {
			return;
		}
		let from = std::mem::replace(&mut self.current, to);
		self.stats.server_changes += 1;
		self.server_changes.push_back(ServerChange {
			from: self.servers[from].clone(),
			to: self.servers[to].clone(),
			reason,
		});
	}

	fn next_server(&self) -> usize {
		(self.current + 1) % self.servers.len()
	}

	/// Adds the redirect targets not known yet right after the current server (in their
	/// order, while fewer than `max_servers` are known); the index of the first target that is
	/// known now.
	fn merge_redirect(&mut self, targets: Vec<ServerAddrs>) -> Option<usize> {
		let mut at = self.current + 1;
		let mut first = None;
		for t in targets {
			if !self.servers.contains(&t) {
				if self.servers.len() >= self.config.max_servers {
					continue;
				}
				self.servers.insert(at, t.clone());
				at += 1;
			}
			first.get_or_insert(t);
		}
		// Looked up last: insertions move the servers after the current one.
		first.and_then(|f| self.servers.iter().position(|s| *s == f))
	}

	/// `conn` was refused as full; `targets` is its `Redirect`, if one came.
	fn handle_refusal(
		&mut self,
		now: Instant,
		conn: ConnId,
		targets: Option<Vec<ServerAddrs>>,
		why: String,
	) {
		let active = self.controller.is_active(conn);
		self.drop_conn(conn, None, why.clone());
		// A refused switch candidate leaves the active connection in place: no move.
		let redirect = targets.filter(|_| active).and_then(|t| self.merge_redirect(t));
		self.controller.handle_refused(now, conn, why, redirect.is_some());
		if !active {
			return;
		}
		match redirect {
			Some(to) => self.move_to(to, ServerChangeReason::Redirected),
			None => self.move_to(self.next_server(), ServerChangeReason::Full),
		}
	}

	/// Opens the first connection.
	pub fn start(&mut self, now: Instant) {
		self.controller.start(now);
		self.pump();
	}

	/// The transport in use.
	pub fn transport(&self) -> Option<Transport> {
		self.controller.transport()
	}

	/// Completed switches.
	pub fn switches(&self) -> &[Switch] {
		self.controller.switches()
	}

	/// A switch completed since the last call.
	pub fn poll_switch(&mut self) -> Option<Switch> {
		self.controller.poll_switch()
	}

	/// Counters.
	pub fn stats(&self) -> ViewerStats {
		ViewerStats { buffer: self.buffer.stats(), ..self.stats.clone() }
	}

	/// Whether the stream ended and every segment was delivered.
	pub fn is_ended(&self) -> bool {
		self.buffer.is_ended()
	}

	/// Moves controller decisions into viewer actions (after moving to the next server if the
	/// current one failed `failover_after` times in a row); once the stream ended, closes every
	/// connection and stops reconnecting.
	fn pump(&mut self) {
		let attempts = self.controller.failed_attempts();
		if attempts >= self.config.failover_after.max(1) {
			let before = self.current;
			self.move_to(self.next_server(), ServerChangeReason::Failover { attempts });
			if self.current != before {
				self.controller.retry_now();
			}
		}
		if self.buffer.is_ended() {
			while self.controller.poll_action().is_some() {}
			let open: Vec<ConnId> = self.conns.keys().copied().collect();
			for conn in open {
				self.drop_conn(conn, None, "stream ended".into());
			}
			return;
		}
		while let Some(a) = self.controller.poll_action() {
			match a {
				ControlAction::Connect { conn, transport, switched_from } => {
					let start = self.buffer.next_needed().map_or(self.config.start, Start::At);
					let assembler = Assembler::new(
						self.config.genesis_hash,
						self.config.stream,
						self.config.origin,
						self.config.segment_limits.clone(),
					);
					let c = ViewerConn { transport, assembler, header_at: None, welcomed: false };
					self.conns.insert(conn, c);
					self.buffer.handle_opened(conn);
					self.actions.push_back(ViewerAction::Connect {
						conn,
						server: self.current,
						transport,
						start,
						switched_from,
					});
				}
				ControlAction::Close { conn } => self.drop_conn(conn, None, "switched away".into()),
			}
		}
	}

	fn drop_conn(&mut self, conn: ConnId, code: Option<ErrorCode>, reason: String) {
		if self.conns.remove(&conn).is_some() {
			self.buffer.handle_closed(conn);
			self.actions.push_back(ViewerAction::Close { conn, code, reason });
		}
	}

	fn reject(&mut self, now: Instant, conn: ConnId, err: SegmentError) {
		self.stats.rejected_connections += 1;
		let reason = err.to_string();
		self.drop_conn(conn, Some(err.code()), reason.clone());
		self.controller.handle_closed(now, conn, reason);
		self.pump();
	}

	/// A message arrived on `conn`.
	pub fn handle_message(&mut self, now: Instant, conn: ConnId, msg: Message) {
		if !self.conns.contains_key(&conn) {
			return;
		}
		self.controller.handle_progress(now, conn);
		match msg {
			Message::Welcome { .. } => {
				self.conns.get_mut(&conn).expect("checked; qed").welcomed = true;
				self.controller.handle_connected(now, conn)
			}
			Message::Redirect { servers } if !self.conns[&conn].welcomed => {
				let why = format!("redirected to {} other streamers", servers.len());
				self.handle_refusal(now, conn, Some(servers), why);
			}
			Message::Error { code: ErrorCode::Full, reason } => {
				self.handle_refusal(now, conn, None, format!("server full: {reason}"));
			}
			Message::Header(h) => {
				let c = self.conns.get_mut(&conn).expect("checked; qed");
				c.header_at = Some(now);
				if let Err(e) = c.assembler.handle_header(h, Bytes::new()) {
					return self.reject(now, conn, e);
				}
			}
			Message::Chunk(chunk) => {
				let c = self.conns.get_mut(&conn).expect("checked; qed");
				match c.assembler.handle_chunk(chunk, Bytes::new()) {
					Err(e) => return self.reject(now, conn, e),
					Ok(Assembled::Progress) => {}
					Ok(Assembled::Complete(seg)) => {
						let transfer = now - c.header_at.unwrap_or(now);
						let duration = Duration::from_millis(seg.duration_ms() as u64);
						self.stats.media_bytes += seg.byte_len() as u64;
						let caught_up =
							self.buffer.next_needed().is_none_or(|n| seg.sequence() <= n);
						self.buffer.handle_segment(conn, seg);
						self.controller.handle_segment_at(now, conn, duration, transfer, caught_up);
					}
				}
			}
			Message::End(end) if end.payload.stream == self.config.stream => {
				// Only the origin may end a stream: an unsigned or forged end is bad input.
				let c = self.conns.get_mut(&conn).expect("checked; qed");
				if let Err(e) = c.assembler.verify_end(&end) {
					return self.reject(now, conn, e);
				}
				self.buffer.handle_end(conn, end.payload.next_sequence)
			}
			Message::Pong(_) | Message::Ping(_) => {}
			Message::Error { code, reason } => {
				let why = format!("server closed: {code:?}: {reason}");
				self.drop_conn(conn, None, why.clone());
				self.controller.handle_closed(now, conn, why);
			}
			other => {
				self.stats.rejected_connections += 1;
				let why = format!("unexpected {} from server", other.kind());
				self.drop_conn(conn, Some(ErrorCode::UnexpectedMessage), why.clone());
				self.controller.handle_closed(now, conn, why);
			}
		}
		self.pump();
	}

	/// `conn` ended (closed by the server, failed to connect, or broke).
	pub fn handle_closed(&mut self, now: Instant, conn: ConnId, why: String) {
		if self.conns.remove(&conn).is_some() {
			self.buffer.handle_closed(conn);
			self.controller.handle_closed(now, conn, why);
			self.pump();
		}
	}

	/// QUIC path statistics of `conn`.
	pub fn handle_path_stats(
		&mut self,
		now: Instant,
		conn: ConnId,
		rtt: Duration,
		lost: u64,
		sent: u64,
	) {
		self.controller.handle_path_stats(now, conn, rtt, lost, sent);
		self.pump();
	}

	/// Switches to `to` and stays on it.
	pub fn force_transport(&mut self, now: Instant, to: Transport) {
		self.controller.force(now, to);
		self.pump();
	}

	/// The next action.
	pub fn poll_action(&mut self) -> Option<ViewerAction> {
		self.actions.pop_front()
	}

	/// The next segment for the player.
	pub fn poll_delivered(&mut self) -> Option<Delivered> {
		self.buffer.poll_delivered()
	}

	/// When [`Self::handle_timeout`] must be called.
	pub fn poll_timeout(&self) -> Option<Instant> {
		if self.is_ended() {
			return None;
		}
		self.controller.poll_timeout()
	}

	/// Time passed.
	pub fn handle_timeout(&mut self, now: Instant) {
		if self.is_ended() {
			return;
		}
		self.controller.handle_timeout(now);
		self.pump();
	}

	/// Transport of an open connection.
	pub fn conn_transport(&self, conn: ConnId) -> Option<Transport> {
		self.conns.get(&conn).map(|c| c.transport)
	}
}

/// One entry of the HLS playlist.
#[derive(Clone, Debug)]
struct Entry {
	sequence: u64,
	/// HLS media sequence number: consecutive over the entries ever pushed, so a gap in
	/// stream sequences never renumbers a segment a player already saw.
	media_sequence: u64,
	duration_ms: u32,
	chunks: Vec<Bytes>,
	discontinuity: bool,
}

/// The local HLS playlist: a sliding window of delivered segments.
#[derive(Debug)]
pub struct Playlist {
	stream: StreamId,
	max_segments: usize,
	entries: VecDeque<Entry>,
	next_media_sequence: u64,
	discontinuity_sequence: u64,
	ended: bool,
	last_requested: Option<u64>,
}

impl Playlist {
	/// A playlist of `stream` keeping the last `max_segments` segments.
	pub fn new(stream: StreamId, max_segments: usize) -> Self {
		Self {
			stream,
			max_segments: max_segments.max(3),
			entries: VecDeque::new(),
			next_media_sequence: 0,
			discontinuity_sequence: 0,
			ended: false,
			last_requested: None,
		}
	}

	/// Adds a delivered segment.
	pub fn push(&mut self, d: &Delivered) {
		self.entries.push_back(Entry {
			sequence: d.segment.sequence(),
			media_sequence: self.next_media_sequence,
			duration_ms: d.segment.duration_ms(),
			chunks: d.segment.chunks.clone(),
			discontinuity: d.discontinuity && !self.entries.is_empty(),
		});
		self.next_media_sequence += 1;
		while self.entries.len() > self.max_segments {
			// RFC 8216 6.2.1: removing a discontinuity tag increments the discontinuity
			// sequence.
			if self.entries.pop_front().is_some_and(|old| old.discontinuity) {
				self.discontinuity_sequence += 1;
			}
		}
	}

	/// Marks the stream ended (`#EXT-X-ENDLIST`).
	pub fn end(&mut self) {
		self.ended = true;
	}

	/// The stream this playlist is for.
	pub fn stream(&self) -> StreamId {
		self.stream
	}

	/// The playlist text.
	pub fn render(&self) -> String {
		use fmt::Write;
		let target = self.entries.iter().map(|e| e.duration_ms.div_ceil(1000)).max().unwrap_or(2);
		let mut s = String::new();
		let _ = writeln!(s, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}", target.max(1));
		let first = self.entries.front().map_or(self.next_media_sequence, |e| e.media_sequence);
		let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{first}");
		if self.discontinuity_sequence > 0 {
			let _ = writeln!(s, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
		}
		for e in &self.entries {
			if e.discontinuity {
				s.push_str("#EXT-X-DISCONTINUITY\n");
			}
			let _ = writeln!(
				s,
				"#EXTINF:{}.{:03},\n{}.ts",
				e.duration_ms / 1000,
				e.duration_ms % 1000,
				e.sequence
			);
		}
		if self.ended {
			s.push_str("#EXT-X-ENDLIST\n");
		}
		s
	}

	/// The chunks of segment `sequence`, if still held; records it as the player's position.
	pub fn segment(&mut self, sequence: u64) -> Option<Vec<Bytes>> {
		let e = self.entries.iter().find(|e| e.sequence == sequence)?;
		self.last_requested = Some(self.last_requested.map_or(sequence, |l| l.max(sequence)));
		Some(e.chunks.clone())
	}

	/// Play time held after the last segment the player fetched, in milliseconds.
	pub fn buffered_ms(&self) -> u64 {
		self.entries
			.iter()
			.filter(|e| self.last_requested.is_none_or(|l| e.sequence > l))
			.map(|e| e.duration_ms as u64)
			.sum()
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::protocol::{decode_body, LENGTH_PREFIX};
	use sp_core::Pair;

	use dsp_primitives::{Signed, StreamEnd};

	fn origin() -> sp_core::sr25519::Pair {
		sp_core::sr25519::Pair::from_string("//Origin", None).unwrap()
	}

	fn seg(seq: u64) -> Segment {
		Segment::build(&origin(), [0; 32], 1, seq, 2000, Bytes::from(vec![seq as u8; 3000]), 1024)
	}

	fn secs(s: u64) -> Duration {
		Duration::from_secs(s)
	}

	/// (sequence, discontinuity) of everything `poll` hands out.
	fn in_order(poll: impl FnMut() -> Option<Delivered>) -> Vec<(u64, bool)> {
		std::iter::from_fn(poll).map(|d| (d.segment.sequence(), d.discontinuity)).collect()
	}

	fn delivered(b: &mut SegmentBuffer) -> Vec<(u64, bool)> {
		in_order(|| b.poll_delivered())
	}

	#[test]
	fn buffer_drops_duplicates_from_overlapping_connections() {
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg(10));
		b.handle_segment(1, seg(11));
		b.handle_opened(2);
		// The new connection starts at 12, but the old one delivers 12 first.
		b.handle_segment(1, seg(12));
		b.handle_segment(2, seg(12));
		b.handle_segment(2, seg(13));
		b.handle_closed(1);
		b.handle_segment(2, seg(14));
		assert_eq!(
			delivered(&mut b),
			vec![(10, false), (11, false), (12, false), (13, false), (14, false)]
		);
		assert_eq!(b.stats().duplicates, 1);
		assert_eq!(b.stats().skipped, 0);
	}

	#[test]
	fn buffer_waits_while_any_connection_can_still_deliver() {
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg(0));
		b.handle_opened(2);
		// New connection delivers 2 before the old one delivered 1: hold 2.
		b.handle_segment(2, seg(2));
		assert_eq!(delivered(&mut b), vec![(0, false)]);
		b.handle_segment(1, seg(1));
		assert_eq!(delivered(&mut b), vec![(1, false), (2, false)]);
	}

	#[test]
	fn buffer_skips_only_when_no_connection_can_deliver() {
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg(0));
		b.handle_opened(2);
		b.handle_segment(2, seg(5));
		assert_eq!(delivered(&mut b), vec![(0, false)]);
		// Connection 1 is gone: nobody can deliver 1..=4 any more.
		b.handle_closed(1);
		assert_eq!(delivered(&mut b), vec![(5, true)]);
		assert_eq!(b.stats().skipped, 4);
	}

	#[test]
	fn buffer_bounds_pending_segments() {
		let mut b = SegmentBuffer::new(2);
		b.handle_opened(1);
		b.handle_opened(2);
		b.handle_segment(1, seg(0));
		for s in 2..5 {
			b.handle_segment(2, seg(s));
		}
		let d = delivered(&mut b);
		assert_eq!(d[0], (0, false));
		assert_eq!(d[1], (2, true));
		assert_eq!(d.len(), 4);
	}

	#[test]
	fn buffer_ends_after_the_last_segment() {
		let mut b = SegmentBuffer::new(8);
		b.handle_opened(1);
		b.handle_segment(1, seg(0));
		b.handle_end(1, 2);
		assert!(!b.is_ended());
		b.handle_segment(1, seg(1));
		assert!(b.is_ended());
	}

	fn connects(c: &mut TransportController) -> Vec<(ConnId, Transport)> {
		std::iter::from_fn(|| c.poll_action())
			.filter_map(|a| match a {
				ControlAction::Connect { conn, transport, .. } => Some((conn, transport)),
				_ => None,
			})
			.collect()
	}

	#[test]
	fn controller_falls_back_to_tcp_when_udp_is_blocked() {
		let t0 = Instant::now();
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		assert_eq!(connects(&mut c), vec![(1, Transport::Quic)]);
		assert_eq!(c.poll_timeout(), Some(t0 + secs(3)));
		c.handle_timeout(t0 + secs(3));
		let actions: Vec<_> = std::iter::from_fn(|| c.poll_action()).collect();
		assert_eq!(
			actions,
			vec![
				ControlAction::Close { conn: 1 },
				ControlAction::Connect {
					conn: 2,
					transport: Transport::Tcp,
					switched_from: Some(Transport::Quic)
				}
			]
		);
		assert_eq!(c.transport(), Some(Transport::Tcp));
		assert_eq!(c.switches()[0].reason, SwitchReason::ConnectTimeout);
		// Once UDP failed, a TCP failure reconnects TCP (after a backoff), not QUIC.
		c.handle_connected(t0 + secs(3), 2);
		c.handle_closed(t0 + secs(4), 2, "reset".into());
		assert!(connects(&mut c).is_empty());
		c.handle_timeout(c.poll_timeout().unwrap());
		assert_eq!(connects(&mut c), vec![(3, Transport::Tcp)]);
	}

	#[test]
	fn quic_is_tried_again_after_the_reprobe_interval() {
		let t0 = Instant::now();
		let mut c = TransportController::new(ControllerConfig::default());
		// Seconds `from..to`: the TCP connection `tcp` delivers a segment every second.
		let run = |c: &mut TransportController, tcp: ConnId, from: u64, to: u64| {
			let mut opened = Vec::new();
			for s in from..to {
				c.handle_segment(t0 + secs(s), tcp, secs(2), Duration::ZERO);
				c.handle_timeout(t0 + secs(s));
				opened.extend(connects(c));
			}
			opened
		};
		c.start(t0);
		connects(&mut c);
		c.handle_timeout(t0 + secs(3));
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);
		c.handle_connected(t0 + secs(3), 2);
		// QUIC failed at 3 s: probed again at 63 s, TCP meanwhile.
		assert!(run(&mut c, 2, 4, 63).is_empty());
		assert_eq!(run(&mut c, 2, 63, 64), vec![(3, Transport::Quic)]);
		// The probe does not connect (closed at 66 s): stay on TCP, next probe at 126 s.
		assert!(run(&mut c, 2, 64, 126).is_empty());
		assert_eq!(c.transport(), Some(Transport::Tcp));
		assert_eq!(run(&mut c, 2, 126, 127), vec![(4, Transport::Quic)]);
		// This one works: back on QUIC.
		c.handle_connected(t0 + secs(126), 4);
		c.handle_segment(t0 + secs(127), 4, secs(2), Duration::ZERO);
		assert_eq!(c.poll_action(), Some(ControlAction::Close { conn: 2 }));
		assert_eq!(c.transport(), Some(Transport::Quic));
		assert_eq!(c.switches().last().unwrap().reason, SwitchReason::Reprobe);
	}

	#[test]
	fn stalled_quic_switches_make_before_break() {
		let t0 = Instant::now();
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		connects(&mut c);
		c.handle_connected(t0, 1);
		c.handle_segment(t0 + secs(2), 1, secs(2), Duration::from_millis(100));
		// Nothing for 5 s: stalled.
		c.handle_timeout(t0 + secs(7));
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);
		// The old connection stays until the new one delivers a segment.
		assert!(c.is_open(1) && c.is_open(2));
		c.handle_connected(t0 + secs(7), 2);
		c.handle_segment(t0 + secs(8), 2, secs(2), Duration::from_millis(100));
		assert_eq!(c.poll_action(), Some(ControlAction::Close { conn: 1 }));
		assert_eq!(
			c.switches(),
			&[Switch { from: Transport::Quic, to: Transport::Tcp, reason: SwitchReason::Stalled }]
		);
	}

	#[test]
	fn quic_loss_and_rtt_are_measured_against_limits() {
		let t0 = Instant::now();
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		connects(&mut c);
		c.handle_connected(t0, 1);
		c.handle_path_stats(t0, 1, Duration::from_millis(5), 0, 0);
		// 5 % loss: fine.
		c.handle_path_stats(t0 + secs(1), 1, Duration::from_millis(5), 10, 200);
		assert!(connects(&mut c).is_empty());
		// 20 % loss over the next 500 packets: switch.
		c.handle_path_stats(t0 + secs(2), 1, Duration::from_millis(5), 110, 700);
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);

		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		connects(&mut c);
		c.handle_connected(t0, 1);
		c.handle_path_stats(t0, 1, secs(3), 0, 0);
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);
	}

	#[test]
	fn slow_segments_mean_goodput_below_bitrate() {
		let t0 = Instant::now();
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		connects(&mut c);
		c.handle_connected(t0, 1);
		for i in 0..2 {
			c.handle_segment(t0 + secs(i), 1, secs(2), Duration::from_millis(1900));
		}
		c.handle_segment(t0 + secs(3), 1, secs(2), Duration::from_millis(100));
		assert!(connects(&mut c).is_empty());
		for i in 0..3 {
			c.handle_segment(t0 + secs(4 + i), 1, secs(2), Duration::from_millis(1900));
		}
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);
	}

	#[test]
	fn forced_transport_is_kept() {
		let t0 = Instant::now();
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		connects(&mut c);
		c.handle_connected(t0, 1);
		c.force(t0, Transport::Tcp);
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);
		c.handle_connected(t0, 2);
		c.handle_segment(t0, 2, secs(2), Duration::ZERO);
		assert_eq!(c.transport(), Some(Transport::Tcp));
		c.force(t0, Transport::Quic);
		assert_eq!(connects(&mut c), vec![(3, Transport::Quic)]);
		c.handle_connected(t0, 3);
		c.handle_segment(t0, 3, secs(2), Duration::ZERO);
		assert_eq!(c.transport(), Some(Transport::Quic));
		assert_eq!(c.switches().len(), 2);
	}

	/// Feeds a segment's frames to a viewer connection.
	fn feed(v: &mut ViewerCore, now: Instant, conn: ConnId, s: &Segment) {
		for f in &s.frames {
			v.handle_message(now, conn, decode_body(f.slice(LENGTH_PREFIX..)).unwrap());
		}
	}

	fn welcome() -> Message {
		Message::Welcome {
			version: crate::protocol::PROTOCOL_VERSION,
			mode: dsp_primitives::AdmissionMode::Direct,
			max_frame_len: 1 << 20,
		}
	}

	/// Connection 1 (QUIC, welcomed) delivers segments 0 and 1, then the viewer is forced to
	/// TCP: connection 2 subscribes at 2. Returns segments `0..count`.
	fn deliver_two_then_force_tcp(v: &mut ViewerCore, t0: Instant, count: u64) -> Vec<Segment> {
		v.handle_message(t0, 1, welcome());
		let segs: Vec<_> = (0..count).map(seg).collect();
		feed(v, t0, 1, &segs[0]);
		feed(v, t0, 1, &segs[1]);
		v.force_transport(t0, Transport::Tcp);
		assert_eq!(
			v.poll_action(),
			Some(ViewerAction::Connect {
				conn: 2,
				server: 0,
				transport: Transport::Tcp,
				start: Start::At(2),
				switched_from: Some(Transport::Quic),
			})
		);
		segs
	}

	#[test]
	fn viewer_switch_resubscribes_at_the_next_needed_segment() {
		let t0 = Instant::now();
		let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
		v.start(t0);
		assert_eq!(
			v.poll_action(),
			Some(ViewerAction::Connect {
				conn: 1,
				server: 0,
				transport: Transport::Quic,
				start: Start::Live { back: 2 },
				switched_from: None,
			})
		);
		let segs = deliver_two_then_force_tcp(&mut v, t0, 6);
		// Overlap: both deliver 2; the old one is closed after the new one's first segment.
		feed(&mut v, t0, 1, &segs[2]);
		v.handle_message(t0, 2, welcome());
		feed(&mut v, t0, 2, &segs[2]);
		assert!(matches!(v.poll_action(), Some(ViewerAction::Close { conn: 1, .. })));
		feed(&mut v, t0, 2, &segs[3]);
		let got: Vec<u64> =
			std::iter::from_fn(|| v.poll_delivered()).map(|d| d.segment.sequence()).collect();
		assert_eq!(got, vec![0, 1, 2, 3]);
		assert_eq!(v.stats().buffer.duplicates, 1);
	}

	#[test]
	fn viewer_rejects_bad_data_and_moves_on() {
		let t0 = Instant::now();
		let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
		v.start(t0);
		v.poll_action();
		v.handle_message(t0, 1, welcome());
		let mallory = sp_core::sr25519::Pair::from_string("//Mallory", None).unwrap();
		let bad = Segment::build(&mallory, [0; 32], 1, 0, 2000, Bytes::from_static(b"x"), 1024);
		feed(&mut v, t0, 1, &bad);
		assert_eq!(
			v.poll_action(),
			Some(ViewerAction::Close {
				conn: 1,
				code: Some(ErrorCode::BadSignature),
				reason: "segment 0: bad header signature".into()
			})
		);
		assert!(matches!(
			v.poll_action(),
			Some(ViewerAction::Connect { conn: 2, transport: Transport::Tcp, .. })
		));
		assert_eq!(v.stats().rejected_connections, 1);
	}

	#[test]
	fn viewer_closes_its_connections_once_the_stream_ended() {
		let t0 = Instant::now();
		let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
		v.start(t0);
		v.poll_action();
		v.handle_message(t0, 1, welcome());
		feed(&mut v, t0, 1, &seg(0));
		let end = StreamEnd { genesis_hash: [0; 32], stream: 1, next_sequence: 1 };
		// A forged end is bad input: that connection is dropped and the stream goes on.
		let forged =
			Signed::sign(end.clone(), &sp_core::sr25519::Pair::from_string("//Eve", None).unwrap());
		v.handle_message(t0, 1, Message::End(forged));
		assert!(!v.is_ended());
		assert_eq!(v.stats().rejected_connections, 1);
		while v.poll_action().is_some() {}
		v.handle_message(t0, 2, welcome());
		feed(&mut v, t0, 2, &seg(0));
		v.handle_message(t0, 2, Message::End(Signed::sign(end, &origin())));
		assert!(v.is_ended());
		assert!(matches!(v.poll_action(), Some(ViewerAction::Close { conn: 2, .. })));
		// The connection's end is not a failure: no reconnect.
		v.handle_closed(t0, 2, "closed".into());
		assert_eq!(v.poll_action(), None);
		assert_eq!(v.poll_timeout(), None);
	}

	/// Media sequence number of every segment URI in a rendered playlist.
	fn media_sequences(text: &str) -> Vec<(String, u64)> {
		let first = text
			.lines()
			.find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
			.and_then(|n| n.parse::<u64>().ok())
			.expect("media sequence");
		let uris = text.lines().filter(|l| l.ends_with(".ts"));
		uris.zip(first..).map(|(uri, msn)| (uri.to_string(), msn)).collect()
	}

	#[test]
	fn playlist_never_renumbers_a_segment_across_a_gap() {
		let mut p = Playlist::new(1, 3);
		let mut seen: HashMap<String, u64> = HashMap::new();
		for (s, disc) in [(0, false), (1, false), (5, true), (6, false), (7, false), (9, true)] {
			p.push(&Delivered { segment: seg(s), discontinuity: disc });
			for (uri, msn) in media_sequences(&p.render()) {
				// A player identifies segments by media sequence number: once it fetched one,
				// the same number must keep naming the same URI.
				assert_eq!(*seen.entry(uri.clone()).or_insert(msn), msn, "{uri} renumbered");
			}
		}
		// The gap is marked, and the discontinuity tags that slid out are counted.
		let text = p.render();
		assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{text}");
		assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
		assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n9.ts"), "{text}");
	}

	#[test]
	fn switch_completes_only_when_the_new_connection_has_the_next_needed_segment() {
		let t0 = Instant::now();
		let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
		v.start(t0);
		v.poll_action();
		let segs = deliver_two_then_force_tcp(&mut v, t0, 7);
		v.handle_message(t0, 2, welcome());
		// The new connection's server skipped ahead to 4 while 2 and 3 are still in flight on
		// the old connection: closing it now would lose them.
		feed(&mut v, t0, 2, &segs[4]);
		assert_eq!(v.poll_action(), None, "old connection closed before it delivered 2 and 3");
		assert_eq!(v.transport(), Some(Transport::Quic));
		feed(&mut v, t0, 1, &segs[2]);
		feed(&mut v, t0, 1, &segs[3]);
		assert_eq!(v.poll_action(), None);
		// Now the new connection delivers the next segment the player needs: switch done.
		feed(&mut v, t0, 2, &segs[5]);
		assert!(matches!(v.poll_action(), Some(ViewerAction::Close { conn: 1, .. })));
		assert_eq!(v.transport(), Some(Transport::Tcp));
		feed(&mut v, t0, 2, &segs[6]);
		assert_eq!(sequences(&mut v), (0..7).map(|s| (s, false)).collect::<Vec<_>>());
		assert_eq!(v.stats().buffer.skipped, 0);
	}

	fn server(n: u8) -> ServerAddrs {
		ServerAddrs {
			tcp: Some(format!("10.0.0.{n}:7700")),
			quic: Some(format!("10.0.0.{n}:7701")),
		}
	}

	/// A viewer over TCP only (no transport fallback in the way) knowing `servers`.
	fn tcp_viewer(servers: Vec<ServerAddrs>) -> ViewerCore {
		let mut c = ViewerConfig::new(1, origin().public());
		c.start = Start::At(0);
		c.controller.policy = TransportPolicy::Only(Transport::Tcp);
		c.servers = servers;
		ViewerCore::new(c)
	}

	/// The connects among the pending actions: (conn, server, start).
	fn connects_to(v: &mut ViewerCore) -> Vec<(ConnId, usize, Start)> {
		std::iter::from_fn(|| v.poll_action())
			.filter_map(|a| match a {
				ViewerAction::Connect { conn, server, start, .. } => Some((conn, server, start)),
				ViewerAction::Close { .. } => None,
			})
			.collect()
	}

	fn full() -> Message {
		Message::error(ErrorCode::Full, "server is full")
	}

	fn sequences(v: &mut ViewerCore) -> Vec<(u64, bool)> {
		in_order(|| v.poll_delivered())
	}

	#[test]
	fn redirect_moves_to_its_first_target_at_once() {
		let t0 = Instant::now();
		let mut v = tcp_viewer(vec![server(1), server(2)]);
		v.start(t0);
		assert_eq!(connects_to(&mut v), vec![(1, 0, Start::At(0))]);
		// Refused, redirected to 3 (new) then 2 (known).
		v.handle_message(t0, 1, Message::Redirect { servers: vec![server(3), server(2)] });
		// The new target goes right after the current server; the first target is next.
		assert_eq!(v.servers(), &[server(1), server(3), server(2)]);
		assert_eq!(v.current_server(), 1);
		assert_eq!(connects_to(&mut v), vec![(2, 1, Start::At(0))]);
		// The Error that follows the Redirect changes nothing more.
		v.handle_message(t0, 1, full());
		assert_eq!(v.poll_action(), None);
		assert_eq!(
			v.poll_server_change(),
			Some(ServerChange {
				from: server(1),
				to: server(3),
				reason: ServerChangeReason::Redirected
			})
		);
		assert_eq!(v.stats().server_changes, 1);
		// The target plays.
		v.handle_message(t0, 2, welcome());
		feed(&mut v, t0, 2, &seg(0));
		assert_eq!(sequences(&mut v), vec![(0, false)]);
		assert_eq!(v.switches(), &[], "a move is not a transport switch");
	}

	#[test]
	fn redirect_targets_are_bounded_and_only_valid_before_welcome() {
		let t0 = Instant::now();
		let mut c = ViewerConfig::new(1, origin().public());
		c.servers = vec![server(1)];
		c.max_servers = 2;
		let mut v = ViewerCore::new(c);
		v.start(t0);
		v.poll_action();
		v.handle_message(t0, 1, Message::Redirect { servers: vec![server(2), server(3)] });
		assert_eq!(v.servers(), &[server(1), server(2)], "max_servers");
		assert!(matches!(v.poll_action(), Some(ViewerAction::Close { conn: 1, .. })));
		assert!(matches!(v.poll_action(), Some(ViewerAction::Connect { conn: 2, server: 1, .. })));
		// Once welcomed, a Redirect is bad input from that server.
		v.handle_message(t0, 2, welcome());
		v.handle_message(t0, 2, Message::Redirect { servers: vec![server(1)] });
		assert!(matches!(
			v.poll_action(),
			Some(ViewerAction::Close { conn: 2, code: Some(ErrorCode::UnexpectedMessage), .. })
		));
		assert_eq!(v.stats().rejected_connections, 1);
		assert_eq!(v.current_server(), 1);
	}

	#[test]
	fn full_without_redirect_moves_to_the_next_server_after_the_backoff() {
		let t0 = Instant::now();
		let mut v = tcp_viewer(vec![server(1), server(2)]);
		v.start(t0);
		connects_to(&mut v);
		v.handle_message(t0, 1, full());
		assert_eq!(connects_to(&mut v), vec![], "backoff first");
		let at = v.poll_timeout().unwrap();
		assert_eq!(at, t0 + Duration::from_millis(250));
		v.handle_timeout(at);
		assert_eq!(connects_to(&mut v), vec![(2, 1, Start::At(0))]);
		assert_eq!(v.poll_server_change().unwrap().reason, ServerChangeReason::Full);
		// The last one is full too: around to the first, the backoff doubled.
		v.handle_message(at, 2, full());
		assert_eq!(v.poll_timeout(), Some(at + Duration::from_millis(500)));
		v.handle_timeout(at + Duration::from_millis(500));
		assert_eq!(connects_to(&mut v), vec![(3, 0, Start::At(0))]);
		assert_eq!(v.stats().server_changes, 2);
	}

	#[test]
	fn failover_after_repeated_failures_continues_the_sequence_without_gap() {
		let t0 = Instant::now();
		let mut v = tcp_viewer(vec![server(1), server(2)]);
		v.start(t0);
		connects_to(&mut v);
		// Server 1 plays 0..=2, then goes away: losing a connection that delivered is not a
		// failed attempt.
		v.handle_message(t0, 1, welcome());
		for i in 0..3 {
			feed(&mut v, t0, 1, &seg(i));
		}
		v.handle_message(t0, 1, Message::error(ErrorCode::Shutdown, "server shutting down"));
		let mut now = t0;
		let mut tried = Vec::new();
		for _ in 0..3 {
			now = v.poll_timeout().expect("a reconnect is scheduled");
			v.handle_timeout(now);
			let c = connects_to(&mut v);
			assert_eq!(c.len(), 1);
			tried.push((c[0].1, c[0].2));
			// Connection refused.
			v.handle_closed(now, c[0].0, "connect failed: refused".into());
		}
		assert_eq!(tried, vec![(0, Start::At(3)); 3], "server 1, resuming at 3");
		assert_eq!(
			v.poll_server_change(),
			Some(ServerChange {
				from: server(1),
				to: server(2),
				reason: ServerChangeReason::Failover { attempts: 3 }
			})
		);
		// The first attempt at server 2 does not wait for the backoff server 1 earned.
		assert_eq!(v.poll_timeout(), Some(now), "server 2 is tried at once");
		v.handle_timeout(now);
		let c = connects_to(&mut v);
		assert_eq!(c, vec![(5, 1, Start::At(3))]);
		// Server 2 holds the same stream: it sends from 3 on (and a stray copy of 2).
		v.handle_message(now, 5, welcome());
		for i in [2, 3, 4, 5] {
			feed(&mut v, now, 5, &seg(i));
		}
		let got = sequences(&mut v);
		assert_eq!(got, (0..6).map(|s| (s, false)).collect::<Vec<_>>());
		let stats = v.stats();
		assert_eq!((stats.buffer.skipped, stats.buffer.delivered), (0, 6));
		assert_eq!(stats.server_changes, 1);
	}

	#[test]
	fn failed_attempts_are_counted_per_server_and_cleared_by_a_segment() {
		let t0 = Instant::now();
		let mut v = tcp_viewer(vec![server(1), server(2)]);
		v.start(t0);
		connects_to(&mut v);
		// Two failures, then a connection that plays: the count starts again.
		v.handle_closed(t0, 1, "refused".into());
		let mut now = v.poll_timeout().unwrap();
		v.handle_timeout(now);
		v.handle_closed(now, 2, "refused".into());
		now = v.poll_timeout().unwrap();
		v.handle_timeout(now);
		assert_eq!(connects_to(&mut v), vec![(2, 0, Start::At(0)), (3, 0, Start::At(0))]);
		v.handle_message(now, 3, welcome());
		feed(&mut v, now, 3, &seg(0));
		v.handle_closed(now, 3, "reset".into());
		// Two more failures: still below failover_after (3) since the segment.
		for _ in 0..2 {
			now = v.poll_timeout().unwrap();
			v.handle_timeout(now);
			let c = connects_to(&mut v);
			assert_eq!(c[0].1, 0);
			v.handle_closed(now, c[0].0, "refused".into());
		}
		assert_eq!(v.poll_server_change(), None);
		assert_eq!(v.current_server(), 0);
	}

	#[test]
	fn a_switch_connection_tells_the_server_where_it_came_from() {
		let t0 = Instant::now();
		let mut v = ViewerCore::new(ViewerConfig::new(1, origin().public()));
		v.start(t0);
		assert!(matches!(
			v.poll_action(),
			Some(ViewerAction::Connect { switched_from: None, transport: Transport::Quic, .. })
		));
		// QUIC never connects: the fallback connection is a switch away from QUIC.
		v.handle_timeout(t0 + secs(3));
		let actions: Vec<_> = std::iter::from_fn(|| v.poll_action()).collect();
		assert!(matches!(
			actions[..],
			[
				ViewerAction::Close { conn: 1, .. },
				ViewerAction::Connect {
					conn: 2,
					transport: Transport::Tcp,
					switched_from: Some(Transport::Quic),
					..
				}
			]
		));
		// A reconnect over the same transport is not a switch.
		v.handle_message(t0 + secs(3), 2, welcome());
		v.handle_closed(t0 + secs(4), 2, "reset".into());
		v.handle_timeout(v.poll_timeout().unwrap());
		assert!(matches!(
			v.poll_action(),
			Some(ViewerAction::Connect { conn: 3, switched_from: None, .. })
		));
	}

	#[test]
	fn playlist_renders_a_sliding_window_with_discontinuities() {
		let mut p = Playlist::new(1, 3);
		for (s, disc) in [(0, false), (1, false), (5, true), (6, false)] {
			p.push(&Delivered { segment: seg(s), discontinuity: disc });
		}
		p.end();
		let text = p.render();
		assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"), "{text}");
		assert!(text.contains("#EXTINF:2.000,\n1.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n5.ts"));
		assert!(text.ends_with("6.ts\n#EXT-X-ENDLIST\n"));
		assert!(p.segment(0).is_none());
		assert_eq!(p.buffered_ms(), 6000);
		assert_eq!(p.segment(5).unwrap().concat(), vec![5u8; 3000]);
		assert_eq!(p.buffered_ms(), 2000);
	}
}
