//! The transport controller: which direct transport (QUIC or TCP) one viewer session uses, when
//! it switches (make-before-break) and when it reconnects. Sans-IO: it reads no clock and owns no
//! socket; [`super::ViewerCore`] drives it.

use super::{ConnId, Transport};
use crate::clock::{millis, Millis};
use std::{collections::VecDeque, time::Duration};

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
	opened_at: Millis,
	connected: bool,
	/// A complete segment arrived on it: its end is not a failed attempt.
	delivered: bool,
	last_progress: Millis,
	slow_in_a_row: u32,
	loss_sample: Option<(u64, u64)>,
}

impl Conn {
	fn new(id: ConnId, transport: Transport, now: Millis) -> Self {
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

	/// When it fails if its handshake has not completed.
	fn connect_deadline(&self, config: &ControllerConfig) -> Millis {
		self.opened_at.saturating_add(millis(config.connect_timeout))
	}

	/// When it stalls if nothing arrives.
	fn progress_deadline(&self, config: &ControllerConfig) -> Millis {
		self.last_progress.saturating_add(millis(config.progress_timeout))
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
	retry: Option<(Millis, Transport, SwitchReason)>,
	/// When the reconnect in `retry` was scheduled (the failure that caused it).
	retry_scheduled_at: Option<Millis>,
	/// Transport of the connection that failed, while a reconnect waits in `retry`.
	pending_from: Option<Transport>,
	failures_in_a_row: u32,
	/// Active connections in a row that failed to connect or closed before any segment (the
	/// viewer's cue to try another server); cleared by a segment or [`Self::reset_failed_attempts`].
	failed_attempts: u32,
	/// When QUIC last failed or was found worse (Auto policy); cleared when QUIC works again.
	udp_failed: Option<Millis>,
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

	fn open(&mut self, now: Millis, transport: Transport, from: Option<Transport>) -> Conn {
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
	pub fn start(&mut self, now: Millis) {
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

	fn note_failure(&mut self, now: Millis, transport: Transport) {
		if transport == Transport::Quic && self.config.policy == TransportPolicy::Auto {
			self.udp_failed = Some(now);
		}
	}

	/// Make-before-break: opens a connection over `to`; the active one stays until the new one
	/// delivers a complete segment.
	fn begin_switch(&mut self, now: Millis, to: Transport, reason: SwitchReason) {
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
		now: Millis,
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
			let delay = (self.config.retry_backoff.saturating_mul(2u32.pow(shift)))
				.min(self.config.max_retry_backoff);
			self.retry = Some((now.saturating_add(millis(delay)), to, reason));
			self.retry_scheduled_at = Some(now);
			self.pending_from = Some(from);
		}
	}

	/// The connection completed its handshake (the server's `Welcome` arrived).
	pub fn handle_connected(&mut self, now: Millis, conn: ConnId) {
		if let Some(c) = self.conn_mut(conn) {
			c.connected = true;
			c.last_progress = now;
		}
	}

	/// Something arrived on `conn`.
	pub fn handle_progress(&mut self, now: Millis, conn: ConnId) {
		if let Some(c) = self.conn_mut(conn) {
			c.last_progress = now;
		}
	}

	/// `conn` delivered a complete segment of `duration` play time in `transfer` time, and it
	/// was not later than the next segment the player needed.
	pub fn handle_segment(
		&mut self,
		now: Millis,
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
		now: Millis,
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
		now: Millis,
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
	pub fn handle_closed(&mut self, now: Millis, conn: ConnId, why: String) {
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
	pub fn handle_refused(&mut self, now: Millis, conn: ConnId, why: String, immediate: bool) {
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
	pub fn force(&mut self, now: Millis, to: Transport) {
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
	pub fn poll_timeout(&self) -> Option<Millis> {
		let mut t: Option<Millis> = None;
		let mut consider = |i: Millis| t = Some(t.map_or(i, |t| t.min(i)));
		for c in self.active.iter().chain(self.candidate.as_ref().map(|(c, _)| c)) {
			if c.connected {
				consider(c.progress_deadline(&self.config));
			} else {
				consider(c.connect_deadline(&self.config));
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
	fn reprobe_at(&self) -> Option<Millis> {
		let interval = self.config.quic_reprobe_interval?;
		let failed = self.udp_failed?;
		let on_tcp =
			self.active.as_ref().is_some_and(|c| c.transport == Transport::Tcp && c.connected);
		(self.config.policy == TransportPolicy::Auto && on_tcp && self.candidate.is_none())
			.then_some(failed.saturating_add(millis(interval)))
	}

	/// Time passed.
	pub fn handle_timeout(&mut self, now: Millis) {
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
				now >= cand.progress_deadline(&self.config)
			} else {
				now >= cand.connect_deadline(&self.config)
			};
			if expired {
				let (cand, _) = self.candidate.take().expect("checked; qed");
				self.note_failure(now, cand.transport);
				self.actions.push_back(ControlAction::Close { conn: cand.id });
			}
		}
		let Some(active) = self.active.clone() else { return };
		if !active.connected && now >= active.connect_deadline(&self.config) {
			self.actions.push_back(ControlAction::Close { conn: active.id });
			self.note_failure(now, active.transport);
			let to = self.alternative(active.transport);
			self.replace_active(now, &active, to, SwitchReason::ConnectTimeout, false);
		} else if active.connected && now >= active.progress_deadline(&self.config) {
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

#[cfg(test)]
mod tests {
	use super::*;
	use crate::viewer::tests::secs;

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
		let t0: Millis = 0;
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		assert_eq!(connects(&mut c), vec![(1, Transport::Quic)]);
		assert_eq!(c.poll_timeout(), Some(t0 + 3_000));
		c.handle_timeout(t0 + 3_000);
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
		c.handle_connected(t0 + 3_000, 2);
		c.handle_closed(t0 + 4_000, 2, "reset".into());
		assert!(connects(&mut c).is_empty());
		c.handle_timeout(c.poll_timeout().unwrap());
		assert_eq!(connects(&mut c), vec![(3, Transport::Tcp)]);
	}

	#[test]
	fn quic_is_tried_again_after_the_reprobe_interval() {
		let t0: Millis = 0;
		let mut c = TransportController::new(ControllerConfig::default());
		// Seconds `from..to`: the TCP connection `tcp` delivers a segment every second.
		let run = |c: &mut TransportController, tcp: ConnId, from: u64, to: u64| {
			let mut opened = Vec::new();
			for s in from..to {
				c.handle_segment(t0 + s * 1000, tcp, secs(2), Duration::ZERO);
				c.handle_timeout(t0 + s * 1000);
				opened.extend(connects(c));
			}
			opened
		};
		c.start(t0);
		connects(&mut c);
		c.handle_timeout(t0 + 3_000);
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);
		c.handle_connected(t0 + 3_000, 2);
		// QUIC failed at 3 s: probed again at 63 s, TCP meanwhile.
		assert!(run(&mut c, 2, 4, 63).is_empty());
		assert_eq!(run(&mut c, 2, 63, 64), vec![(3, Transport::Quic)]);
		// The probe does not connect (closed at 66 s): stay on TCP, next probe at 126 s.
		assert!(run(&mut c, 2, 64, 126).is_empty());
		assert_eq!(c.transport(), Some(Transport::Tcp));
		assert_eq!(run(&mut c, 2, 126, 127), vec![(4, Transport::Quic)]);
		// This one works: back on QUIC.
		c.handle_connected(t0 + 126_000, 4);
		c.handle_segment(t0 + 127_000, 4, secs(2), Duration::ZERO);
		assert_eq!(c.poll_action(), Some(ControlAction::Close { conn: 2 }));
		assert_eq!(c.transport(), Some(Transport::Quic));
		assert_eq!(c.switches().last().unwrap().reason, SwitchReason::Reprobe);
	}

	#[test]
	fn stalled_quic_switches_make_before_break() {
		let t0: Millis = 0;
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		connects(&mut c);
		c.handle_connected(t0, 1);
		c.handle_segment(t0 + 2_000, 1, secs(2), Duration::from_millis(100));
		// Nothing for 5 s: stalled.
		c.handle_timeout(t0 + 7_000);
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);
		// The old connection stays until the new one delivers a segment.
		assert!(c.is_open(1) && c.is_open(2));
		c.handle_connected(t0 + 7_000, 2);
		c.handle_segment(t0 + 8_000, 2, secs(2), Duration::from_millis(100));
		assert_eq!(c.poll_action(), Some(ControlAction::Close { conn: 1 }));
		assert_eq!(
			c.switches(),
			&[Switch { from: Transport::Quic, to: Transport::Tcp, reason: SwitchReason::Stalled }]
		);
	}

	#[test]
	fn quic_loss_and_rtt_are_measured_against_limits() {
		let t0: Millis = 0;
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		connects(&mut c);
		c.handle_connected(t0, 1);
		c.handle_path_stats(t0, 1, Duration::from_millis(5), 0, 0);
		// 5 % loss: fine.
		c.handle_path_stats(t0 + 1_000, 1, Duration::from_millis(5), 10, 200);
		assert!(connects(&mut c).is_empty());
		// 20 % loss over the next 500 packets: switch.
		c.handle_path_stats(t0 + 2_000, 1, Duration::from_millis(5), 110, 700);
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
		let t0: Millis = 0;
		let mut c = TransportController::new(ControllerConfig::default());
		c.start(t0);
		connects(&mut c);
		c.handle_connected(t0, 1);
		for i in 0..2 {
			c.handle_segment(t0 + i * 1000, 1, secs(2), Duration::from_millis(1900));
		}
		c.handle_segment(t0 + 3_000, 1, secs(2), Duration::from_millis(100));
		assert!(connects(&mut c).is_empty());
		for i in 0..3 {
			c.handle_segment(t0 + (4 + i) * 1000, 1, secs(2), Duration::from_millis(1900));
		}
		assert_eq!(connects(&mut c), vec![(2, Transport::Tcp)]);
	}

	#[test]
	fn forced_transport_is_kept() {
		let t0: Millis = 0;
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
}
