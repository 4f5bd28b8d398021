//! The per-address limits ([`PerAddress`]) as guards the connection tasks hold: a session
//! counted from the accept loop until its task ends, and a stream slot without data counted
//! until it has data or its session ends. Dropping a guard releases what it counted, so no
//! path out of a session (error, panic unwinding, shutdown) leaves a count behind.

use super::shared::Shared;
#[cfg(doc)]
use crate::server::PerAddress;
use crate::server::{OriginKeys, PerAddressRefusal, StreamDirectory};
use dsp_primitives::{PublicKey, StreamId};
use std::{
	net::IpAddr,
	sync::{atomic::Ordering, Arc},
};
use tracing::debug;

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

/// The server's [`StreamDirectory`] as the sessions from one address see it: every lookup is
/// paid from the address's [`crate::server::LookupBudget`] (given back when it found an open
/// stream); one the budget cannot pay is not made, and the stream is reported unknown.
pub(super) struct BudgetedDirectory {
	shared: Arc<Shared>,
	inner: Arc<dyn StreamDirectory>,
	ip: IpAddr,
}

impl BudgetedDirectory {
	/// `keys` with its directory (if any) paid from `ip`'s budget: what a session from `ip`
	/// looks streams up in.
	pub(super) fn wrap(
		shared: &Arc<Shared>,
		keys: &Arc<OriginKeys>,
		ip: IpAddr,
	) -> Arc<OriginKeys> {
		let Some(inner) = &keys.directory else { return keys.clone() };
		let directory = BudgetedDirectory { shared: shared.clone(), inner: inner.clone(), ip };
		Arc::new(OriginKeys { directory: Some(Arc::new(directory)), ..(**keys).clone() })
	}
}

impl std::fmt::Debug for BudgetedDirectory {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.debug_struct("BudgetedDirectory").field("ip", &self.ip).finish_non_exhaustive()
	}
}

impl StreamDirectory for BudgetedDirectory {
	fn origin_key(&self, stream: StreamId) -> Option<PublicKey> {
		// What the directory's cache answers costs nothing and is never refused: an address
		// that spent its budget (or shares it with a flooder behind one NAT) still finds the
		// streams the cache knows.
		if let Some(answer) = self.inner.cached_origin_key(stream) {
			return answer;
		}
		// A read is charged whatever it finds: an open stream missing from the cache costs a
		// runtime call as much as an unknown id does.
		if !self.shared.lookups.lock().try_take(self.shared.now(), self.ip) {
			self.shared.lookups_refused.fetch_add(1, Ordering::Relaxed);
			debug!(ip = %self.ip, stream, "stream lookup refused: the address spent its lookup budget");
			return None;
		}
		// Without the lock: this may be a runtime call.
		self.inner.origin_key(stream)
	}

	fn cached_origin_key(&self, stream: StreamId) -> Option<Option<PublicKey>> {
		self.inner.cached_origin_key(stream)
	}

	fn passes_open(&self, stream: StreamId) -> bool {
		self.inner.passes_open(stream)
	}
}
