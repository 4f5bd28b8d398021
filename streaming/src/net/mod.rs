//! Thin tokio / quinn drivers around the sans-IO cores, and the local HLS gateway.
//!
//! These modules only move bytes and timers: every decision (what to send, when to close,
//! which transport) is made by the state machines in [`crate::server`], [`crate::viewer`] and
//! [`crate::publisher`].

pub mod attack;
pub mod hls;
pub mod hls_ingest;
pub mod ledger_file;
pub mod load;
pub mod p2p;
pub mod p2p_watch;
pub mod publish;
pub mod serve;
pub mod tls;
pub mod vod;
pub mod watch;

use crate::protocol::{FrameDecoder, FrameError, Message};
use bytes::Bytes;
use std::{io, net::SocketAddr, time::Duration};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
	/// The bytes were not a valid frame.
	#[error(transparent)]
	Frame(#[from] FrameError),
	/// The socket failed.
	#[error("read failed: {0}")]
	Io(#[from] io::Error),
}

/// Reads the next frame body. `Ok(None)` when the peer closed on a frame boundary.
/// Cancel-safe: partial frames stay in `dec`.
pub async fn read_frame<R: AsyncRead + Unpin>(
	r: &mut R,
	dec: &mut FrameDecoder,
) -> Result<Option<Bytes>, ReadError> {
	loop {
		if let Some(f) = dec.next_frame()? {
			return Ok(Some(f));
		}
		if r.read_buf(dec.buffer()).await? == 0 {
			dec.finish()?;
			return Ok(None);
		}
	}
}

/// Reads and decodes the next message. `Ok(None)` when the peer closed on a frame boundary.
/// Cancel-safe like [`read_frame`].
pub async fn read_message<R: AsyncRead + Unpin>(
	r: &mut R,
	dec: &mut FrameDecoder,
) -> Result<Option<Message>, ReadError> {
	match read_frame(r, dec).await? {
		Some(body) => Ok(Some(crate::protocol::decode_body(body)?)),
		None => Ok(None),
	}
}

/// Writes frames, failing if the peer does not take them within `timeout`.
pub async fn write_frames<W: AsyncWrite + Unpin>(
	w: &mut W,
	frames: &[Bytes],
	timeout: Duration,
) -> io::Result<()> {
	tokio::time::timeout(timeout, async {
		for f in frames {
			w.write_all(f).await?;
		}
		w.flush().await
	})
	.await
	.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write stalled"))?
}

/// Where a session's frames go. TCP copies them into the socket; QUIC hands the shared
/// `Bytes` to quinn without a copy, so a frame sent to many QUIC viewers stays in memory once.
pub trait FrameSink: Send + Unpin + 'static {
	/// Sends one frame.
	fn send_frame(
		&mut self,
		frame: Bytes,
	) -> impl std::future::Future<Output = io::Result<()>> + Send;
}

impl FrameSink for tokio::net::tcp::OwnedWriteHalf {
	async fn send_frame(&mut self, frame: Bytes) -> io::Result<()> {
		self.write_all(&frame).await
	}
}

impl FrameSink for quinn::SendStream {
	async fn send_frame(&mut self, frame: Bytes) -> io::Result<()> {
		self.write_chunk(frame).await.map_err(io::Error::other)
	}
}

/// The read half of a client's stream to a server (TCP or QUIC).
pub(crate) type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
/// The write half.
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// Opens a client's stream to a server at `addr`: a TCP connection (no Nagle), or over
/// `quic` (endpoint and client configuration) a QUIC connection and one bidirectional stream,
/// returned too so the caller can read its path statistics and close it.
pub(crate) async fn open_stream(
	transport: crate::viewer::Transport,
	addr: SocketAddr,
	quic: Option<(&quinn::Endpoint, &quinn::ClientConfig)>,
) -> io::Result<(BoxRead, BoxWrite, Option<quinn::Connection>)> {
	match transport {
		crate::viewer::Transport::Tcp => {
			let sock = tokio::net::TcpStream::connect(addr).await?;
			let _ = sock.set_nodelay(true);
			let (r, w) = sock.into_split();
			Ok((Box::new(r), Box::new(w), None))
		}
		crate::viewer::Transport::Quic => {
			let (endpoint, cfg) = quic.ok_or_else(|| io::Error::other("no QUIC endpoint"))?;
			let conn = endpoint
				.connect_with(cfg.clone(), addr, tls::SERVER_NAME)
				.map_err(io::Error::other)?
				.await
				.map_err(io::Error::other)?;
			let (send, recv) = conn.open_bi().await.map_err(io::Error::other)?;
			Ok((Box::new(recv), Box::new(send), Some(conn)))
		}
	}
}

/// A QUIC client endpoint on the unspecified address of `server`'s family, and the client
/// configuration to reach it (certificate check, idle timeout, keep-alive).
pub fn quic_client(
	server: SocketAddr,
	verification: tls::ServerVerification,
	keep_alive: Duration,
) -> io::Result<(quinn::Endpoint, quinn::ClientConfig)> {
	let bind: SocketAddr = if server.is_ipv4() {
		([0, 0, 0, 0], 0).into()
	} else {
		(std::net::Ipv6Addr::UNSPECIFIED, 0).into()
	};
	let endpoint = tls::endpoint(bind, None, tls::DEFAULT_UDP_BUFFER)?;
	let cfg = tls::client_config(verification, Duration::from_secs(10), keep_alive)?;
	Ok((endpoint, cfg))
}

/// A server endpoint as given on the command line: `tcp://host:port` or `quic://host:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
	/// Transport.
	pub transport: crate::viewer::Transport,
	/// Address.
	pub addr: SocketAddr,
}

impl std::str::FromStr for Endpoint {
	type Err = String;
	fn from_str(s: &str) -> Result<Self, String> {
		use crate::viewer::Transport;
		let (transport, rest) = if let Some(r) = s.strip_prefix("tcp://") {
			(Transport::Tcp, r)
		} else if let Some(r) = s.strip_prefix("quic://") {
			(Transport::Quic, r)
		} else {
			return Err(format!("{s}: expected tcp://host:port or quic://host:port"));
		};
		let addr = std::net::ToSocketAddrs::to_socket_addrs(rest)
			.map_err(|e| format!("{s}: {e}"))?
			.next()
			.ok_or_else(|| format!("{s}: no address"))?;
		Ok(Endpoint { transport, addr })
	}
}

impl std::fmt::Display for Endpoint {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		write!(f, "{}://{}", self.transport, self.addr)
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::viewer::Transport;

	#[test]
	fn endpoints_parse_and_print() {
		let e: Endpoint = "quic://127.0.0.1:7700".parse().unwrap();
		assert_eq!(e, Endpoint { transport: Transport::Quic, addr: ([127, 0, 0, 1], 7700).into() });
		assert_eq!(e.to_string(), "quic://127.0.0.1:7700");
		assert_eq!("tcp://[::1]:1".parse::<Endpoint>().unwrap().transport, Transport::Tcp);
		assert!("http://127.0.0.1:1".parse::<Endpoint>().is_err());
		assert!("tcp://nowhere".parse::<Endpoint>().is_err());
	}
}
