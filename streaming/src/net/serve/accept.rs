//! The listeners: TCP and QUIC accept loops, each connection on its own task under a
//! `max_connections` permit and its address's limits ([`super::limits`]), the refusals beyond
//! them, and the writer task of a session. A QUIC client proves it receives at its address (a
//! stateless Retry) before anything is held for it.

use super::{driver::run_session, limits::AddressSession, shared::Shared};
use crate::{
	net::FrameSink,
	protocol::{encode_frame, ErrorCode, Message, Transport},
	server::PerAddressRefusal,
};
use bytes::Bytes;
use std::{
	net::SocketAddr,
	sync::{atomic::Ordering, Arc},
	time::Duration,
};
use tokio::{
	io::{AsyncWrite, AsyncWriteExt},
	net::{TcpListener, TcpStream},
	sync::{mpsc, watch, Semaphore},
};
use tracing::{debug, info, warn};

/// Connections beyond `max_connections` being told so (`Redirect`, `Full`) at once; beyond
/// this many, further ones are dropped without a word, so a flood costs at most this many
/// small tasks.
pub(super) const MAX_PENDING_REFUSALS: usize = 64;
/// How long one refusal may take (QUIC handshake, the client's stream, the frames).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `refusal` under a refusal permit, or drops the connection if none is left.
fn spawn_refusal(
	refusals: &Arc<Semaphore>,
	refusal: impl std::future::Future<Output = ()> + Send + 'static,
	peer: SocketAddr,
) {
	let Ok(permit) = refusals.clone().try_acquire_owned() else {
		debug!(%peer, "dropped: max_connections reached and too many refusals under way");
		return;
	};
	tokio::spawn(async move {
		let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refusal).await;
		drop(permit);
	});
}

/// A QUIC client beyond `max_connections` or its address's limits (`why`): completes the
/// handshake, waits for its stream and answers on it like [`refuse`] does over TCP.
async fn refuse_quic(
	incoming: quinn::Incoming,
	shared: Arc<Shared>,
	why: Option<PerAddressRefusal>,
) {
	let peer = incoming.remote_address();
	let Ok(conn) = incoming.await else { return };
	let Ok((mut send, _recv)) = conn.accept_bi().await else { return };
	refuse(&mut send, peer, shared, why).await;
	// Let the frames reach the peer before the connection closes.
	let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
	conn.close(0u32.into(), b"full");
}

/// Refuses a TCP connection without reading from it: beyond `max_connections` (`why` is
/// `None`), `Redirect` (if other streamers are known) and `Error { Full }`; beyond its
/// address's limits, `Error { Full }` naming the limit (another streamer would not help a
/// client that floods, and an honest one behind a busy NAT retries). Then close.
async fn refuse<W: AsyncWrite + Unpin>(
	mut w: W,
	peer: SocketAddr,
	shared: Arc<Shared>,
	why: Option<PerAddressRefusal>,
) {
	let mut frames = Vec::new();
	let reason = match why {
		None => {
			let servers = shared.next_redirect();
			warn!(%peer, redirected = servers.len(), "refused: max_connections reached");
			if !servers.is_empty() {
				frames.extend_from_slice(&encode_frame(&Message::Redirect { servers }));
			}
			"too many connections".to_string()
		}
		Some(why) => {
			debug!(%peer, %why, "refused: per-address limit");
			why.to_string()
		}
	};
	frames.extend_from_slice(&encode_frame(&Message::error(ErrorCode::Full, reason)));
	let _ = tokio::time::timeout(Duration::from_secs(1), w.write_all(&frames)).await;
	let _ = w.shutdown().await;
}

/// Accepts TCP connections until shutdown, one session task each (up to `permits`).
pub(super) async fn accept_tcp(
	listener: TcpListener,
	shared: Arc<Shared>,
	permits: Arc<Semaphore>,
	refusals: Arc<Semaphore>,
	mut shutdown: watch::Receiver<bool>,
) {
	loop {
		let (sock, peer) = tokio::select! {
			r = listener.accept() => match r {
				Ok(x) => x,
				Err(e) => {
					// Out of file descriptors and the like: back off instead of spinning.
					warn!(error = %e, "tcp accept failed");
					tokio::time::sleep(Duration::from_millis(100)).await;
					continue;
				},
			},
			_ = shutdown.changed() => return,
		};
		let address = match AddressSession::try_open(&shared, peer.ip()) {
			Ok(a) => a,
			Err(why) => {
				shared.refused_per_address.fetch_add(1, Ordering::Relaxed);
				spawn_refusal(&refusals, refuse(sock, peer, shared.clone(), Some(why)), peer);
				continue;
			}
		};
		let Ok(permit) = permits.clone().try_acquire_owned() else {
			drop(address);
			spawn_refusal(&refusals, refuse(sock, peer, shared.clone(), None), peer);
			continue;
		};
		let shared = shared.clone();
		let shutdown = shutdown.clone();
		tokio::spawn(async move {
			let _ = sock.set_nodelay(true);
			let (r, w) = TcpStream::into_split(sock);
			let session = run_session(shared, address, peer, Transport::Tcp, r, w, shutdown);
			if let Some(mut w) = session.await {
				let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
			}
			drop(permit);
		});
	}
}

/// Accepts QUIC connections until shutdown, one session task each (up to `permits`).
pub(super) async fn accept_quic(
	endpoint: quinn::Endpoint,
	shared: Arc<Shared>,
	permits: Arc<Semaphore>,
	refusals: Arc<Semaphore>,
	mut shutdown: watch::Receiver<bool>,
) {
	loop {
		let incoming = tokio::select! {
			i = endpoint.accept() => match i { Some(i) => i, None => return },
			_ = shutdown.changed() => return,
		};
		let peer = incoming.remote_address();
		if !incoming.remote_address_validated() {
			// A stateless Retry: nothing is held until the client answers it from `peer`, so
			// Initials from spoofed addresses cost one packet each, no permit and no task.
			// (Not validated implies a Retry may be sent; should it fail, dropping the
			// error drops the connection.)
			shared.quic_retries.fetch_add(1, Ordering::Relaxed);
			let _ = incoming.retry();
			continue;
		}
		let address = match AddressSession::try_open(&shared, peer.ip()) {
			Ok(a) => a,
			Err(why) => {
				shared.refused_per_address.fetch_add(1, Ordering::Relaxed);
				refuse_quic_or_drop(incoming, &refusals, &shared, Some(why));
				continue;
			}
		};
		let Ok(permit) = permits.clone().try_acquire_owned() else {
			drop(address);
			refuse_quic_or_drop(incoming, &refusals, &shared, None);
			continue;
		};
		let shared = shared.clone();
		let shutdown = shutdown.clone();
		tokio::spawn(async move {
			let handshake_timeout = shared.config.session.hello_timeout;
			let conn = match tokio::time::timeout(handshake_timeout, incoming).await {
				Ok(Ok(c)) => c,
				Ok(Err(e)) => return debug!(%peer, error = %e, "quic handshake failed"),
				Err(_) => return debug!(%peer, "quic handshake timed out"),
			};
			let (send, recv) = match tokio::time::timeout(handshake_timeout, conn.accept_bi()).await
			{
				Ok(Ok(s)) => s,
				Ok(Err(e)) => return debug!(%peer, error = %e, "quic stream not opened"),
				Err(_) => {
					shared.closed_with_error.fetch_add(1, Ordering::Relaxed);
					info!(%peer, transport = "quic", code = ?ErrorCode::IdleTimeout, "session closed: no stream within hello_timeout");
					conn.close(1u32.into(), b"no stream");
					return;
				}
			};
			if let Some(mut send) =
				run_session(shared, address, peer, Transport::Quic, recv, send, shutdown).await
			{
				let _ = send.finish();
				// Let the last frames (an Error or End) reach the peer before closing.
				let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
			}
			conn.close(0u32.into(), b"done");
			drop(permit);
		});
	}
}

/// Refuses a validated QUIC client (see [`refuse_quic`]) under a refusal permit, or in the
/// handshake if too many refusals are under way.
fn refuse_quic_or_drop(
	incoming: quinn::Incoming,
	refusals: &Arc<Semaphore>,
	shared: &Arc<Shared>,
	why: Option<PerAddressRefusal>,
) {
	let peer = incoming.remote_address();
	// Checked before `incoming` is moved into the refusal; should the TCP loop take the last
	// refusal permit in between, the connection is dropped unanswered instead.
	if refusals.available_permits() == 0 {
		debug!(%peer, "refused in the handshake: too many refusals under way");
		incoming.refuse();
	} else {
		spawn_refusal(refusals, refuse_quic(incoming, shared.clone(), why), peer);
	}
}

/// Writes frames from `rx` until it closes or a write stalls; returns the writer on a clean end.
pub(super) async fn write_loop<W: FrameSink>(
	mut w: W,
	mut rx: mpsc::Receiver<Bytes>,
	stall: Duration,
) -> Option<W> {
	while let Some(frame) = rx.recv().await {
		match tokio::time::timeout(stall, w.send_frame(frame)).await {
			Ok(Ok(())) => {}
			Ok(Err(_)) => return None,
			Err(_) => {
				debug!("write stalled");
				return None;
			}
		}
	}
	Some(w)
}
