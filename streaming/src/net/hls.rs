//! The viewer's local HLS gateway: a minimal HTTP/1.1 server on loopback that serves
//! `GET /streams/<id>/index.m3u8` and `GET /streams/<id>/<sequence>.ts` from a [`Playlist`].
//! One request per connection (`Connection: close`); request heads are bounded.

use crate::viewer::Playlist;
use bytes::Bytes;
use parking_lot::Mutex;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
	io::{AsyncReadExt, AsyncWriteExt},
	net::{TcpListener, TcpStream},
	sync::{watch, Semaphore},
};
use tracing::debug;

/// Largest request head read, in bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Most requests served at once (players open a few).
const MAX_CLIENTS: usize = 32;
/// A client has this long to send its request and to take the response.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `playlist` on `listener` until `shutdown` turns true.
pub async fn serve(
	listener: TcpListener,
	playlist: Arc<Mutex<Playlist>>,
	mut shutdown: watch::Receiver<bool>,
) {
	let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
	loop {
		let (sock, peer) = tokio::select! {
			r = listener.accept() => match r {
				Ok(x) => x,
				Err(_) => {
					tokio::time::sleep(Duration::from_millis(100)).await;
					continue;
				},
			},
			_ = shutdown.changed() => return,
		};
		let Ok(permit) = permits.clone().try_acquire_owned() else { continue };
		let playlist = playlist.clone();
		tokio::spawn(async move {
			if let Err(e) = tokio::time::timeout(CLIENT_TIMEOUT, handle(sock, &playlist)).await {
				debug!(%peer, error = %e, "gateway client timed out");
			}
			drop(permit);
		});
	}
}

enum Response {
	Playlist(String),
	Segment(Vec<Bytes>),
	Status(u16, &'static str),
}

fn route(method: &str, path: &str, playlist: &Mutex<Playlist>) -> Response {
	if method != "GET" {
		return Response::Status(405, "Method Not Allowed");
	}
	let path = path.split('?').next().unwrap_or(path);
	let mut p = playlist.lock();
	let prefix = format!("/streams/{}/", p.stream());
	let Some(file) = path.strip_prefix(&prefix) else {
		return Response::Status(404, "Not Found");
	};
	if file == "index.m3u8" {
		return Response::Playlist(p.render());
	}
	match file.strip_suffix(".ts").and_then(|s| s.parse::<u64>().ok()) {
		Some(seq) => match p.segment(seq) {
			Some(chunks) => Response::Segment(chunks),
			None => Response::Status(404, "Not Found"),
		},
		None => Response::Status(404, "Not Found"),
	}
}

async fn handle(mut sock: TcpStream, playlist: &Mutex<Playlist>) -> std::io::Result<()> {
	let mut head = Vec::with_capacity(1024);
	let mut buf = [0u8; 1024];
	while !head.windows(4).any(|w| w == b"\r\n\r\n") {
		let n = sock.read(&mut buf).await?;
		if n == 0 {
			return Ok(());
		}
		head.extend_from_slice(&buf[..n]);
		if head.len() > MAX_REQUEST_HEAD {
			return write_status(&mut sock, 431, "Request Header Fields Too Large").await;
		}
	}
	let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
	let line = String::from_utf8_lossy(line);
	let mut parts = line.split(' ');
	let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
		return write_status(&mut sock, 400, "Bad Request").await;
	};
	match route(method, path, playlist) {
		Response::Playlist(text) => {
			write_head(&mut sock, "application/vnd.apple.mpegurl", text.len()).await?;
			sock.write_all(text.as_bytes()).await?;
		}
		Response::Segment(chunks) => {
			let len = chunks.iter().map(Bytes::len).sum();
			write_head(&mut sock, "video/mp2t", len).await?;
			for c in chunks {
				sock.write_all(&c).await?;
			}
		}
		Response::Status(code, text) => write_status(&mut sock, code, text).await?,
	}
	sock.shutdown().await
}

async fn write_head(sock: &mut TcpStream, content_type: &str, len: usize) -> std::io::Result<()> {
	let head = format!(
		"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
	);
	sock.write_all(head.as_bytes()).await
}

async fn write_status(sock: &mut TcpStream, code: u16, text: &str) -> std::io::Result<()> {
	let head = format!("HTTP/1.1 {code} {text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	sock.write_all(head.as_bytes()).await?;
	sock.shutdown().await
}

/// The URL of the playlist served at `addr`.
pub fn playlist_url(addr: SocketAddr, stream: dsp_primitives::StreamId) -> String {
	format!("http://{addr}/streams/{stream}/index.m3u8")
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::{segment::Segment, viewer::Delivered};
	use sp_core::Pair;

	fn playlist() -> Mutex<Playlist> {
		let pair = sp_core::sr25519::Pair::from_string("//Origin", None).unwrap();
		let mut p = Playlist::new(4, 10);
		for seq in 0..3 {
			let data = Bytes::from(vec![seq as u8; 100]);
			let segment = Segment::build(&pair, [0; 32], 4, 0, seq, 2000, data, 64);
			p.push(&Delivered { segment, discontinuity: false });
		}
		Mutex::new(p)
	}

	#[test]
	fn routes_playlist_segments_and_errors() {
		let p = playlist();
		assert!(matches!(
			route("GET", "/streams/4/index.m3u8?x=1", &p),
			Response::Playlist(t) if t.contains("2.ts")
		));
		assert!(matches!(
			route("GET", "/streams/4/1.ts", &p),
			Response::Segment(c) if c.concat() == vec![1u8; 100]
		));
		for path in ["/streams/4/9.ts", "/streams/5/index.m3u8", "/", "/streams/4/x.ts"] {
			assert!(matches!(route("GET", path, &p), Response::Status(404, _)), "{path}");
		}
		assert!(matches!(route("POST", "/streams/4/index.m3u8", &p), Response::Status(405, _)));
	}
}
