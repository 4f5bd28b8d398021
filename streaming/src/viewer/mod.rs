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
//!
//! # Files
//!
//! - `controller.rs`: [`TransportController`], the choice of transport.
//! - [`abr`]: [`abr::AbrController`], the choice of rendition per segment (adaptive bitrate),
//!   and [`abr_sim`], its deterministic trace simulator.
//! - `buffer.rs`: [`SegmentBuffer`], ordering without gap or duplicate.
//! - `playlist.rs`: [`Playlist`], the local HLS playlist.
//! - this file: [`ViewerCore`], which ties them to the connections and servers.

pub mod abr;
pub mod abr_sim;
mod buffer;
mod controller;
mod playlist;
#[cfg(test)]
mod tests;

pub use buffer::{BufferStats, Delivered, SegmentBuffer};
pub use controller::{
	ControlAction, ControllerConfig, Switch, SwitchReason, TransportController, TransportPolicy,
};
pub use playlist::Playlist;

use crate::{
	clock::Millis,
	protocol::{ErrorCode, Message, ServerAddrs, Start},
	segment::{Assembled, Assembler, SegmentError, SegmentLimits},
};
use bytes::Bytes;
use dsp_primitives::{Hash32, PublicKey, StreamId};
use std::{
	collections::{HashMap, VecDeque},
	time::Duration,
};

/// Identifies one connection of a viewer.
pub type ConnId = u64;

/// A direct transport (defined with the wire messages, as [`Message::Switched`] carries it).
pub use crate::protocol::Transport;
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
	header_at: Option<Millis>,
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
		now: Millis,
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
	pub fn start(&mut self, now: Millis) {
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

	fn reject(&mut self, now: Millis, conn: ConnId, err: SegmentError) {
		self.stats.rejected_connections += 1;
		let reason = err.to_string();
		self.drop_conn(conn, Some(err.code()), reason.clone());
		self.controller.handle_closed(now, conn, reason);
		self.pump();
	}

	/// A message arrived on `conn`.
	pub fn handle_message(&mut self, now: Millis, conn: ConnId, msg: Message) {
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
						let transfer =
							Duration::from_millis(now.saturating_sub(c.header_at.unwrap_or(now)));
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
				self.buffer.handle_end(conn, end.payload.broadcast, end.payload.next_sequence)
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
	pub fn handle_closed(&mut self, now: Millis, conn: ConnId, why: String) {
		if self.conns.remove(&conn).is_some() {
			self.buffer.handle_closed(conn);
			self.controller.handle_closed(now, conn, why);
			self.pump();
		}
	}

	/// QUIC path statistics of `conn`.
	pub fn handle_path_stats(
		&mut self,
		now: Millis,
		conn: ConnId,
		rtt: Duration,
		lost: u64,
		sent: u64,
	) {
		self.controller.handle_path_stats(now, conn, rtt, lost, sent);
		self.pump();
	}

	/// Switches to `to` and stays on it.
	pub fn force_transport(&mut self, now: Millis, to: Transport) {
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
	pub fn poll_timeout(&self) -> Option<Millis> {
		if self.is_ended() {
			return None;
		}
		self.controller.poll_timeout()
	}

	/// Time passed.
	pub fn handle_timeout(&mut self, now: Millis) {
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
