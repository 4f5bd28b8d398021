//! Slow handshakes (issue 12, items 2 and 7): half the slots open TCP connections from one
//! address and never send `Hello`; the other half start QUIC handshakes from another address
//! through a one-way relay, so the server's answers (its Retry) never reach the client, as for
//! a spoofed source address. Before the fixes such clients held connection permits; now one
//! address has at most its handshakes-in-flight share, each for the hello timeout, and a QUIC
//! client holds nothing until it answered the Retry.

use super::{count_refusal, recv_message, Answer, AttackCounters, AttackTarget, RawConn};
use crate::net::tls;
use std::{
	net::{IpAddr, SocketAddr},
	sync::{atomic::Ordering, Arc},
	time::Duration,
};
use tokio::{net::UdpSocket, sync::watch};

/// Most QUIC slots (each a client endpoint and a relay: sockets and tasks of the load process).
pub const MAX_QUIC_SLOTS: usize = 256;

/// How many of `sessions` slots are TCP and how many QUIC: half each, QUIC at most
/// [`MAX_QUIC_SLOTS`] (none without a QUIC endpoint).
pub fn split(sessions: usize, quic: bool) -> (usize, usize) {
	let q = if quic { (sessions / 2).min(MAX_QUIC_SLOTS) } else { 0 };
	(sessions - q, q)
}

/// Runs both halves until `stop`: TCP from `target.sources[0]`, QUIC relays from the second
/// address (the first again if there is one only).
pub async fn run(target: AttackTarget, c: Arc<AttackCounters>, stop: watch::Receiver<bool>) {
	let (tcp, quic) = split(target.sessions, target.quic.is_some());
	let target = Arc::new(target);
	let retry = target.retry;
	let silent = {
		let (target, c) = (target.clone(), c.clone());
		super::run_slots(tcp, retry, stop.clone(), move |_| {
			let (target, c) = (target.clone(), c.clone());
			async move { silent_tcp(&target, &c).await }
		})
	};
	let spoofed = {
		let (target, c) = (target.clone(), c.clone());
		super::run_slots(quic, retry, stop, move |_| {
			let (target, c) = (target.clone(), c.clone());
			async move { unanswered_quic(&target, &c).await }
		})
	};
	tokio::join!(silent, spoofed);
}

/// A TCP connection that says nothing, held until the server closes it.
async fn silent_tcp(target: &AttackTarget, c: &Arc<AttackCounters>) {
	c.attempts.fetch_add(1, Ordering::Relaxed);
	let Ok(mut conn) = RawConn::connect(target.source(0), target.tcp).await else {
		return count_refusal(c, &Answer::Closed);
	};
	let _held = c.hold();
	// Up to a minute: far past the hello timeout.
	let m = recv_message(&mut conn.r, &mut conn.dec, Duration::from_secs(60)).await;
	match Answer::of(m) {
		// Refused at once for its address's limits.
		a @ Answer::Refused(crate::protocol::ErrorCode::Full) => count_refusal(c, &a),
		other => {
			c.closed_by_server.fetch_add(1, Ordering::Relaxed);
			c.reason(&other.reason());
		}
	}
}

/// One QUIC handshake whose client never hears the server: a relay from the attacker's
/// second address forwards the client's packets and drops every answer (counted in
/// `closed_by_server` as "answers_dropped" per attempt that got any). A handshake that
/// completes anyway counts as admitted.
async fn unanswered_quic(target: &AttackTarget, c: &Arc<AttackCounters>) {
	let Some(server) = target.quic else { return };
	c.attempts.fetch_add(1, Ordering::Relaxed);
	let source = target.source(1);
	let Ok((relay, answers)) = one_way_relay(source, server).await else {
		return count_refusal(c, &Answer::Closed);
	};
	let client = (|| {
		let cfg = tls::client_config(
			tls::ServerVerification::InsecureSkip,
			Duration::from_secs(10),
			Duration::from_secs(5),
		)?;
		let ep = tls::endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), None, 1 << 20)?;
		Ok::<_, std::io::Error>((ep, cfg))
	})();
	let Ok((ep, cfg)) = client else { return count_refusal(c, &Answer::Closed) };
	let _held = c.hold();
	let done = match ep.connect_with(cfg, relay, tls::SERVER_NAME) {
		Ok(connecting) => tokio::time::timeout(Duration::from_secs(15), connecting).await,
		Err(_) => Ok(Err(quinn::ConnectionError::LocallyClosed)),
	};
	match done {
		Ok(Ok(conn)) => {
			c.admitted.fetch_add(1, Ordering::Relaxed);
			conn.close(0u32.into(), b"");
		}
		_ => {
			let n = answers.load(Ordering::Relaxed);
			c.refused.fetch_add(1, Ordering::Relaxed);
			c.reason(if n > 0 { "quic_answers_dropped" } else { "quic_unanswered" });
		}
	}
	ep.close(0u32.into(), b"");
}

/// A UDP relay to `server` whose server side is bound to `source`: forwards what the client
/// sends and drops every answer, counting them (a client that cannot receive at its address,
/// as a spoofed one). Returns the client-side address and the count. The relay lives until the
/// client stops sending for 20 s.
pub async fn one_way_relay(
	source: IpAddr,
	server: SocketAddr,
) -> std::io::Result<(SocketAddr, Arc<std::sync::atomic::AtomicU64>)> {
	let front = UdpSocket::bind("127.0.0.1:0").await?;
	let back = UdpSocket::bind(SocketAddr::new(source, 0)).await?;
	back.connect(server).await?;
	let addr = front.local_addr()?;
	let answers = Arc::new(std::sync::atomic::AtomicU64::new(0));
	let counted = answers.clone();
	tokio::spawn(async move {
		let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
		loop {
			tokio::select! {
				r = front.recv_from(&mut up) => {
					let Ok((n, _)) = r else { return };
					let _ = back.send(&up[..n]).await;
				},
				r = back.recv(&mut down) => {
					if r.is_ok() {
						counted.fetch_add(1, Ordering::Relaxed);
					}
				},
				_ = tokio::time::sleep(Duration::from_secs(20)) => return,
			}
		}
	});
	Ok((addr, answers))
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn half_tcp_half_quic_bounded() {
		assert_eq!(split(4096, true), (4096 - MAX_QUIC_SLOTS, MAX_QUIC_SLOTS));
		assert_eq!(split(100, true), (50, 50));
		assert_eq!(split(100, false), (100, 0));
	}
}
