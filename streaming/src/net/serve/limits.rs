//! The per-address limits ([`PerAddress`]) as guards the connection tasks hold: a session
//! counted from the accept loop until its task ends, and a stream slot without data counted
//! until it has data or its session ends. Dropping a guard releases what it counted, so no
//! path out of a session (error, panic unwinding, shutdown) leaves a count behind.

use super::shared::Shared;
#[cfg(doc)]
use crate::server::PerAddress;
use crate::server::PerAddressRefusal;
use std::{net::IpAddr, sync::Arc};

/// One connection counted against its address: a session, and a handshake in flight until
/// [`Self::handshake_done`].
pub(super) struct AddressSession {
	shared: Arc<Shared>,
	ip: IpAddr,
	in_handshake: bool,
}

impl AddressSession {
	/// Counts a new connection from `ip`, or says why its address may not open one more.
	pub(super) fn try_open(shared: &Arc<Shared>, ip: IpAddr) -> Result<Self, PerAddressRefusal> {
		shared.per_address.lock().try_open(ip)?;
		Ok(Self { shared: shared.clone(), ip, in_handshake: true })
	}

	/// The connection completed its handshake (idempotent).
	pub(super) fn handshake_done(&mut self) {
		if std::mem::replace(&mut self.in_handshake, false) {
			self.shared.per_address.lock().handle_handshake_done(self.ip);
		}
	}

	/// The client's address.
	pub(super) fn ip(&self) -> IpAddr {
		self.ip
	}
}

impl Drop for AddressSession {
	fn drop(&mut self) {
		self.shared.per_address.lock().handle_closed(self.ip, self.in_handshake);
	}
}

/// A stream slot without data, opened by a session from `ip`.
pub(super) struct WaitingStream {
	shared: Arc<Shared>,
	ip: IpAddr,
}

impl WaitingStream {
	/// Counts a slot about to be opened by a session from `ip`, or says why not.
	pub(super) fn try_new(shared: &Arc<Shared>, ip: IpAddr) -> Result<Self, PerAddressRefusal> {
		shared.per_address.lock().try_wait_stream(ip)?;
		Ok(Self { shared: shared.clone(), ip })
	}
}

impl Drop for WaitingStream {
	fn drop(&mut self) {
		self.shared.per_address.lock().handle_stream_not_waiting(self.ip);
	}
}
