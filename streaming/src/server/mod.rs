//! Server side, sans-IO: the per-connection session state machine, the admission rule, and the
//! live window of recent segments.
//!
//! # Driving a [`ServerSession`]
//!
//! 1. Feed every received frame body to [`ServerSession::handle_frame`] (or a read error to
//!    [`ServerSession::handle_read_error`]).
//! 2. Drain [`ServerSession::poll_event`]: answer `AdmissionRequest` with
//!    [`ServerSession::handle_admission`], `JoinRequest` (P2P mode) with
//!    [`ServerSession::handle_joined`], `FetchRequest` with [`ServerSession::handle_fetch`];
//!    store `SegmentReceived`, record `End`, count `Switched`, log `Closed`. A refused viewer
//!    can be sent elsewhere: answer with [`ServerSession::handle_admission_or_redirect`] and
//!    the next entries of a [`RedirectList`].
//!    On `Publishing`, open the stream's window ([`StreamTable::open`]) and answer with
//!    [`ServerSession::handle_publish_ready`] (or close the session if the table refuses).
//! 3. While [`ServerSession::wants_segments`] returns `Some((stream, from))`, look the stream up
//!    ([`LiveWindow::lookup`], or a recording) and pass the result to
//!    [`ServerSession::handle_segments`]; call it again whenever the stream's window changes.
//! 4. Send every frame from [`ServerSession::poll_transmit`], in order.
//! 5. Call [`ServerSession::handle_timeout`] at [`ServerSession::poll_timeout`].
//! 6. Once [`ServerSession::is_closed`] and nothing is left to transmit, close the connection.

mod admission;
mod fetch;
mod keys;
mod lookup_budget;
mod memory;
mod per_address;
mod session;
mod table;
mod window;

pub use admission::{Admission, AdmissionStats, RedirectList, DEFAULT_MAX_P2P_SESSIONS};
pub use keys::{OriginKeys, StreamDirectory};
pub use lookup_budget::{LookupBudget, LookupBudgetConfig};
pub use memory::{ByteBudget, MemoryConfig, PartialBudget, PartialRefused, PartialReservation};
pub use per_address::{AddressKey, AddressUsage, PerAddress, PerAddressConfig, PerAddressRefusal};
pub use session::{ServerSession, SessionConfig, SessionEvent, SessionStats};
pub use table::{StreamTable, StreamTableConfig};
pub use window::{BroadcastMark, Inserted, LiveWindow, Lookup, Stale, WindowConfig};

/// Fixtures shared by the tests of the server's modules.
#[cfg(test)]
pub(crate) mod test_util {
	use crate::{protocol::ServerAddrs, segment::Segment};
	use bytes::Bytes;
	use sp_core::Pair;
	use std::sync::Arc;

	pub(crate) fn origin() -> sp_core::sr25519::Pair {
		sp_core::sr25519::Pair::from_string("//Origin", None).unwrap()
	}

	pub(crate) fn seg(seq: u64) -> Arc<Segment> {
		Arc::new(Segment::build(
			&origin(),
			[0; 32],
			1,
			0,
			seq,
			2000,
			Bytes::from(vec![seq as u8; 1000]),
			512,
		))
	}

	pub(crate) fn streamer(n: u8) -> ServerAddrs {
		ServerAddrs { tcp: Some(format!("10.0.0.{n}:7700")), quic: None }
	}
}
