//! [`SessionControl`]: the decisions the session driver makes around its [`ServerSession`],
//! sans-IO: what the session is (role, stream, admission mode, swarm membership), what a
//! `Join` is answered when the stream or the tracker cannot take it, when a publisher's freed
//! window is reopened and a viewer's closes the session, when an on-demand recording has run
//! out, when to look a window up again, how many bytes to add to the server's counters, and
//! when the session is over.
//!
//! The driver ([`super::driver::SessionDriver`]) calls a `handle_*` method for what happened
//! and asks the others what to do; nothing here reads a clock, a lock or a socket.

#[cfg(doc)]
use crate::server::ServerSession;
use crate::{
	p2p::tracker::TrackerError,
	protocol::{ErrorCode, Transport},
	server::SessionStats,
};
use dsp_primitives::{AdmissionMode, StreamId};

/// What a session turned out to be, for logs and for which rules apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SessionRole {
	/// Has not said yet (before `Hello`, or a refused connection).
	Unknown,
	/// A viewer fed segments directly.
	Viewer,
	/// A viewer admitted in P2P mode that asked to join a swarm.
	P2p,
	/// A publisher.
	Publisher,
}

impl SessionRole {
	/// Whether the session is a viewer of either mode (closed when its stream is freed).
	fn is_viewer(self) -> bool {
		matches!(self, SessionRole::Viewer | SessionRole::P2p)
	}
}

impl std::fmt::Display for SessionRole {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str(match self {
			SessionRole::Unknown => "unknown",
			SessionRole::Viewer => "viewer",
			SessionRole::P2p => "p2p",
			SessionRole::Publisher => "publisher",
		})
	}
}

/// How the stream of a `Join` stands, as the driver found it before asking the tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JoinStream {
	/// The stream has no origin key: nobody may publish it.
	Unknown,
	/// The stream table refused it a window.
	Refused(ErrorCode),
	/// The stream holds a window, but its passes cannot be paid now
	/// ([`crate::server::StreamDirectory::passes_open`]).
	Unpaid,
	/// The stream holds a window (it had one, or one was opened).
	Held,
}

/// Bytes to add to the server's counters since the previous [`SessionControl::take_counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct CountDeltas {
	/// Bytes queued to the peer (both modes).
	pub bytes_sent: u64,
	/// Of them, bytes queued while the session is in P2P mode.
	pub bytes_sent_p2p: u64,
	/// P2P mode: chunk bytes of the segments announced.
	pub p2p_media_due: u64,
	/// P2P mode: of them, chunk bytes sent by the server.
	pub p2p_chunk_bytes: u64,
}

/// The session driver's state and decisions, sans-IO. See the module docs.
#[derive(Debug)]
pub(super) struct SessionControl {
	transport: Transport,
	role: SessionRole,
	stream: Option<StreamId>,
	/// The admission slot held, released when the session ends.
	admitted: Option<AdmissionMode>,
	/// The swarm joined, left when the session ends.
	joined: Option<StreamId>,
	/// The recording has no more segments and no end: nothing more to look up.
	vod_exhausted: bool,
	/// Whether this publisher stored a segment yet (an earlier recorded end no longer holds).
	stored_any: bool,
	/// The window version last looked up.
	seen_version: u64,
	/// The last lookup could not be made (the session took no more, or had no window): look up
	/// at the next chance even if the window did not change.
	starved: bool,
	/// Counters of the session already added to the server's.
	counted: SessionStats,
	/// The writer task ended (or its channel closed).
	writer_gone: bool,
}

impl SessionControl {
	/// A new connection over `transport`.
	pub(super) fn new(transport: Transport) -> Self {
		Self {
			transport,
			role: SessionRole::Unknown,
			stream: None,
			admitted: None,
			joined: None,
			vod_exhausted: false,
			stored_any: false,
			seen_version: u64::MAX,
			starved: true,
			counted: SessionStats::default(),
			writer_gone: false,
		}
	}

	/// The transport of the connection.
	pub(super) fn transport(&self) -> Transport {
		self.transport
	}

	/// What the session is.
	pub(super) fn role(&self) -> SessionRole {
		self.role
	}

	/// The stream it subscribed to, joined or publishes.
	pub(super) fn stream(&self) -> Option<StreamId> {
		self.stream
	}

	/// The admission slot it holds (release it when the session ends).
	pub(super) fn admitted(&self) -> Option<AdmissionMode> {
		self.admitted
	}

	/// The swarm it joined (leave it when the session ends).
	pub(super) fn joined(&self) -> Option<StreamId> {
		self.joined
	}

	/// A viewer was admitted (`Ok`, count it under its mode) or refused.
	pub(super) fn handle_admission(&mut self, result: Result<AdmissionMode, ErrorCode>) {
		self.role = SessionRole::Viewer;
		self.admitted = result.ok();
	}

	/// A viewer subscribed to `stream`.
	pub(super) fn handle_subscribed(&mut self, stream: StreamId) {
		self.stream = Some(stream);
	}

	/// A P2P viewer asked to join `stream`'s swarm.
	pub(super) fn handle_join_request(&mut self, stream: StreamId) {
		self.role = SessionRole::P2p;
		self.stream = Some(stream);
	}

	/// The tracker to ask about a `Join` for `stream`, or why it is refused before: a stream
	/// without an origin key gets no slot, swarm or pass (as for `Subscribe`); one the table
	/// has no room for, or a server without P2P (no `tracker`), neither.
	pub(super) fn admit_join<T>(
		stream: StreamId,
		found: JoinStream,
		tracker: Option<T>,
	) -> Result<T, (ErrorCode, String)> {
		match (found, tracker) {
			(JoinStream::Unknown, _) => {
				Err((ErrorCode::UnknownStream, format!("no origin key for stream {stream}")))
			}
			(JoinStream::Refused(code), _) => Err((code, "too many streams held".into())),
			// `Full`: a viewer moves on to other streamers, which may serve it directly.
			(JoinStream::Unpaid, _) => Err((
				ErrorCode::Full,
				format!(
					"no passes for stream {stream} now: its origin's committed escrow does not \
					 cover them (withdrawal requested, epoch budget spent or not funded)"
				),
			)),
			(JoinStream::Held, None) => {
				Err((ErrorCode::UnknownStream, "no P2P on this server".into()))
			}
			(JoinStream::Held, Some(t)) => Ok(t),
		}
	}

	/// What a `Join` the tracker refused is answered: its code and reason.
	pub(super) fn tracker_refusal(why: TrackerError) -> (ErrorCode, String) {
		(why.code(), why.to_string())
	}

	/// The viewer joined `stream`'s swarm.
	pub(super) fn handle_joined(&mut self, stream: StreamId) {
		self.joined = Some(stream);
	}

	/// A publisher announced `stream`.
	pub(super) fn handle_publishing(&mut self, stream: StreamId) {
		self.role = SessionRole::Publisher;
		self.stream = Some(stream);
	}

	/// Whether a segment from the publisher must go to a new window first: the table freed
	/// its window (`window_freed`) while the publisher was silent.
	pub(super) fn must_reopen_window(&self, window_freed: bool) -> bool {
		self.role == SessionRole::Publisher && window_freed
	}

	/// The publisher's segment was stored; `true` the first time (a recorded end of an earlier
	/// run of the stream no longer holds).
	pub(super) fn handle_stored(&mut self) -> bool {
		!std::mem::replace(&mut self.stored_any, true)
	}

	/// Whether the session must be closed because the table freed its stream's window
	/// (`window_freed`): viewers of either mode are, publishers open a new window instead.
	pub(super) fn must_close_freed(&self, window_freed: bool) -> bool {
		self.role.is_viewer() && window_freed
	}

	/// Whether to look the window up now, at window version `version` (and records the
	/// lookup): when the window changed or the previous chance was missed.
	pub(super) fn should_look_up(&mut self, version: u64) -> bool {
		if version == self.seen_version && !self.starved {
			return false;
		}
		self.seen_version = version;
		self.starved = false;
		true
	}

	/// No lookup could be made (the session takes no segments now, or has no window).
	pub(super) fn handle_no_lookup(&mut self) {
		self.starved = true;
	}

	/// Whether the on-demand recording may hold more.
	pub(super) fn vod_open(&self) -> bool {
		!self.vod_exhausted
	}

	/// A recording lookup returned `got` segments or none; `wants_more` is whether the session
	/// still takes segments after it. Returns whether to look up again. A lookup that found
	/// nothing while the session still wants more means the recording ran out (no segments,
	/// no end): it is not read again.
	pub(super) fn handle_vod_lookup(&mut self, got: bool, wants_more: bool) -> bool {
		if !got {
			self.vod_exhausted = wants_more;
		}
		got
	}

	/// What to add to the server's counters, given the session's counters now and whether it
	/// is in P2P mode now.
	pub(super) fn take_counts(&mut self, stats: SessionStats, p2p: bool) -> CountDeltas {
		let bytes_sent = stats.bytes_sent - self.counted.bytes_sent;
		self.counted.bytes_sent = stats.bytes_sent;
		if !p2p {
			return CountDeltas { bytes_sent, ..Default::default() };
		}
		let deltas = CountDeltas {
			bytes_sent,
			bytes_sent_p2p: bytes_sent,
			p2p_media_due: stats.p2p_media_due - self.counted.p2p_media_due,
			p2p_chunk_bytes: stats.p2p_chunk_bytes - self.counted.p2p_chunk_bytes,
		};
		self.counted.p2p_media_due = stats.p2p_media_due;
		self.counted.p2p_chunk_bytes = stats.p2p_chunk_bytes;
		deltas
	}

	/// Whether to read from the peer: not after the session closed (`closed`; a peer that
	/// closed its side, or a failed read, closes the session too).
	pub(super) fn reading(&self, closed: bool) -> bool {
		!closed
	}

	/// The writer went away (the peer is gone or stopped reading). Returns whether the session
	/// must be closed as a slow consumer: unless it closed already (`closed`).
	pub(super) fn handle_writer_gone(&mut self, closed: bool) -> bool {
		self.writer_gone = true;
		self.reading(closed)
	}

	/// Whether frames may be handed to the writer.
	pub(super) fn writing(&self) -> bool {
		!self.writer_gone
	}

	/// Whether the loop is over: the session closed (`closed`) and nothing is left to send
	/// (`has_transmit`), or the writer went away.
	pub(super) fn is_done(&self, closed: bool, has_transmit: bool) -> bool {
		(closed && !has_transmit) || self.writer_gone
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn roles_log_as_before() {
		let names: Vec<String> =
			[SessionRole::Unknown, SessionRole::Viewer, SessionRole::P2p, SessionRole::Publisher]
				.iter()
				.map(ToString::to_string)
				.collect();
		assert_eq!(names, ["unknown", "viewer", "p2p", "publisher"]);
	}

	#[test]
	fn admission_makes_a_viewer_and_holds_a_slot_only_when_admitted() {
		let mut c = SessionControl::new(Transport::Tcp);
		assert_eq!(c.role(), SessionRole::Unknown);
		c.handle_admission(Err(ErrorCode::Full));
		assert_eq!((c.role(), c.admitted()), (SessionRole::Viewer, None));
		let mut c = SessionControl::new(Transport::Quic);
		c.handle_admission(Ok(AdmissionMode::P2p));
		assert_eq!(c.admitted(), Some(AdmissionMode::P2p));
		assert_eq!(c.transport(), Transport::Quic);
	}

	#[test]
	fn join_refusals_name_the_first_reason() {
		let admit = |found, tracker| SessionControl::admit_join(7, found, tracker);
		assert_eq!(
			admit(JoinStream::Unknown, Some(())),
			Err((ErrorCode::UnknownStream, "no origin key for stream 7".into()))
		);
		assert_eq!(
			admit(JoinStream::Refused(ErrorCode::UnknownStream), Some(())),
			Err((ErrorCode::UnknownStream, "too many streams held".into()))
		);
		assert_eq!(
			admit(JoinStream::Held, None),
			Err((ErrorCode::UnknownStream, "no P2P on this server".into()))
		);
		assert_eq!(
			admit(JoinStream::Unknown, None).map_err(|r| r.1),
			Err("no origin key for stream 7".into())
		);
		assert_eq!(admit(JoinStream::Held, Some(())), Ok(()));
		// Issue 11, P3: no pass the stream's committed escrow cannot pay.
		let unpaid = admit(JoinStream::Unpaid, Some(()));
		assert!(
			matches!(&unpaid, Err((ErrorCode::Full, why)) if why.contains("no passes for stream 7")),
			"{unpaid:?}"
		);
		assert_eq!(
			SessionControl::tracker_refusal(TrackerError::TooManyStreams),
			(ErrorCode::UnknownStream, "too many streams with a swarm".into())
		);
		let limit = crate::p2p::pass_policy::AddressLimitError::TooManyPasses(30);
		let (code, reason) = SessionControl::tracker_refusal(limit.into());
		assert_eq!(code, ErrorCode::Full);
		assert!(reason.contains("new passes"), "{reason}");
	}

	#[test]
	fn a_freed_window_is_reopened_for_a_publisher_and_closes_viewers() {
		let mut c = SessionControl::new(Transport::Tcp);
		assert!(!c.must_close_freed(true), "not a viewer yet");
		c.handle_publishing(3);
		assert_eq!((c.role(), c.stream()), (SessionRole::Publisher, Some(3)));
		assert!(c.must_reopen_window(true) && !c.must_reopen_window(false));
		assert!(!c.must_close_freed(true));
		let mut v = SessionControl::new(Transport::Tcp);
		v.handle_admission(Ok(AdmissionMode::Direct));
		v.handle_subscribed(3);
		assert!(v.must_close_freed(true) && !v.must_close_freed(false));
		assert!(!v.must_reopen_window(true));
		let mut p = SessionControl::new(Transport::Tcp);
		p.handle_admission(Ok(AdmissionMode::P2p));
		p.handle_join_request(3);
		assert_eq!(p.role(), SessionRole::P2p);
		assert!(p.must_close_freed(true));
		p.handle_joined(3);
		assert_eq!(p.joined(), Some(3));
	}

	#[test]
	fn only_the_first_stored_segment_reopens_the_recording() {
		let mut c = SessionControl::new(Transport::Tcp);
		assert!(c.handle_stored());
		assert!(!c.handle_stored());
	}

	#[test]
	fn the_window_is_looked_up_when_it_changed_or_a_chance_was_missed() {
		let mut c = SessionControl::new(Transport::Tcp);
		assert!(c.should_look_up(0), "first chance");
		assert!(!c.should_look_up(0), "nothing changed");
		assert!(c.should_look_up(1));
		c.handle_no_lookup();
		assert!(c.should_look_up(1), "missed while the session took nothing");
		assert!(!c.should_look_up(1));
	}

	#[test]
	fn a_recording_runs_out_when_a_lookup_finds_nothing_more_to_take() {
		let mut c = SessionControl::new(Transport::Tcp);
		assert!(c.handle_vod_lookup(true, true));
		assert!(c.vod_open());
		// Nothing found, but the session is paced or full: not run out.
		assert!(!c.handle_vod_lookup(false, false));
		assert!(c.vod_open());
		assert!(!c.handle_vod_lookup(false, true));
		assert!(!c.vod_open());
	}

	#[test]
	fn counts_are_added_once_and_p2p_ones_only_in_p2p_mode() {
		let mut c = SessionControl::new(Transport::Tcp);
		let stats = |bytes_sent, p2p_media_due, p2p_chunk_bytes| SessionStats {
			bytes_sent,
			p2p_media_due,
			p2p_chunk_bytes,
			..Default::default()
		};
		assert_eq!(c.take_counts(stats(100, 0, 0), false).bytes_sent, 100);
		assert_eq!(c.take_counts(stats(100, 0, 0), false), CountDeltas::default());
		assert_eq!(
			c.take_counts(stats(150, 40, 10), true),
			CountDeltas {
				bytes_sent: 50,
				bytes_sent_p2p: 50,
				p2p_media_due: 40,
				p2p_chunk_bytes: 10
			}
		);
		assert_eq!(
			c.take_counts(stats(160, 50, 10), true),
			CountDeltas {
				bytes_sent: 10,
				bytes_sent_p2p: 10,
				p2p_media_due: 10,
				p2p_chunk_bytes: 0
			}
		);
	}

	#[test]
	fn the_loop_ends_once_closed_and_flushed_or_the_writer_is_gone() {
		let c = SessionControl::new(Transport::Tcp);
		assert!(c.reading(false) && !c.reading(true));
		assert!(!c.is_done(false, false));
		assert!(!c.is_done(true, true), "frames left to send");
		assert!(c.is_done(true, false));
		let mut c = SessionControl::new(Transport::Tcp);
		assert!(c.handle_writer_gone(false), "an open session is closed as a slow consumer");
		assert!(!c.writing() && c.is_done(false, true));
		let mut c = SessionControl::new(Transport::Tcp);
		assert!(!c.handle_writer_gone(true), "the session (or the peer) closed already");
	}
}
