//! The viewer driver: runs a [`ViewerCore`], one task per connection, the HLS gateway and the
//! status line.

use super::{
	hls, open_stream, read_message, tls, vod::PlayRecorder, write_frames, BoxRead, BoxWrite,
	ReadError,
};
use crate::{
	clock::Clock,
	protocol::{
		encode_frame, ErrorCode, FrameDecoder, Message, Role, ServerAddrs, Start, PROTOCOL_VERSION,
	},
	viewer::{
		ConnId, Delivered, Playlist, ServerChange, Switch, Transport, ViewerAction, ViewerConfig,
		ViewerCore, ViewerStats,
	},
};
use bytes::Bytes;
use parking_lot::Mutex;
use std::{
	collections::HashMap,
	io,
	net::SocketAddr,
	path::PathBuf,
	sync::Arc,
	time::{Duration, Instant},
};
use tokio::{
	net::TcpListener,
	sync::{mpsc, oneshot, watch},
	task::JoinHandle,
};
use tracing::{debug, info, warn};

/// One streamer's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerAddr {
	/// Its TCP address.
	pub tcp: Option<SocketAddr>,
	/// Its QUIC address.
	pub quic: Option<SocketAddr>,
}

impl ServerAddr {
	/// Groups endpoints into streamers, in order: an endpoint of a transport the current
	/// streamer already has starts the next one (`tcp://a:1 quic://a:2 tcp://b:1` is a with
	/// both transports, then b with TCP).
	pub fn group(endpoints: &[super::Endpoint]) -> Vec<ServerAddr> {
		fn slot(s: &mut ServerAddr, t: Transport) -> &mut Option<SocketAddr> {
			match t {
				Transport::Tcp => &mut s.tcp,
				Transport::Quic => &mut s.quic,
			}
		}
		let mut servers: Vec<ServerAddr> = Vec::new();
		for e in endpoints {
			if servers.last_mut().is_none_or(|s| slot(s, e.transport).is_some()) {
				servers.push(ServerAddr::default());
			}
			*slot(servers.last_mut().expect("pushed if empty; qed"), e.transport) = Some(e.addr);
		}
		servers
	}

	/// The text form the viewer core and the wire's `Redirect` use.
	pub fn to_text(&self) -> ServerAddrs {
		ServerAddrs { tcp: self.tcp.map(|a| a.to_string()), quic: self.quic.map(|a| a.to_string()) }
	}
}

/// Settings of a running viewer.
#[derive(Clone, Debug)]
pub struct WatchConfig {
	/// Stream, origin key, limits and transport controller settings. Its `servers` are
	/// replaced by [`Self::servers`].
	pub core: ViewerConfig,
	/// The streamers to watch from, most preferred first (at least one with an address). The
	/// viewer starts with the first and moves on when one refuses it (following its
	/// `Redirect`) or fails `core.failover_after` times in a row.
	pub servers: Vec<ServerAddr>,
	/// How the QUIC server certificate is checked (the same for every server: a pinned
	/// fingerprint only fits one).
	pub verification: tls::ServerVerification,
	/// Interval of `Ping` frames (keep-alive and liveness). Default 1 s.
	pub keepalive_interval: Duration,
	/// Interval of QUIC path statistics samples fed to the controller. Default 1 s.
	pub stats_interval: Duration,
	/// Largest frame accepted from the server. Default 256 KiB.
	pub max_frame_len: u32,
	/// Where the HLS gateway listens; `None` for no gateway. Default `127.0.0.1:0`.
	pub gateway: Option<SocketAddr>,
	/// Segments kept in the gateway's playlist. Default 10 (memory: that many segments).
	pub playlist_segments: usize,
	/// Writes every delivered segment to `<dir>/<stream>/<broadcast>/<sequence>.ts` when set
	/// ([`PlayRecorder`]).
	pub record_dir: Option<PathBuf>,
	/// Prints a status line to stderr this often when set.
	pub status_interval: Option<Duration>,
}

impl WatchConfig {
	/// Defaults for `core`.
	pub fn new(core: ViewerConfig) -> Self {
		Self {
			core,
			servers: Vec::new(),
			verification: tls::ServerVerification::InsecureSkip,
			keepalive_interval: Duration::from_secs(1),
			stats_interval: Duration::from_secs(1),
			max_frame_len: crate::protocol::DEFAULT_MAX_FRAME_LEN,
			gateway: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
			playlist_segments: 10,
			record_dir: None,
			status_interval: None,
		}
	}
}

/// What a running viewer reports to its owner.
#[derive(Clone, Debug)]
pub enum WatchEvent {
	/// A verified segment was handed to the player.
	Delivered {
		/// Sequence number.
		sequence: u64,
		/// Whether segments were skipped before it.
		discontinuity: bool,
		/// The media bytes.
		data: Vec<Bytes>,
		/// Play time, ms (from the signed header): what a player model needs.
		duration_ms: u32,
		/// Transport in use when it was delivered.
		transport: Option<Transport>,
	},
	/// A transport switch completed.
	Switched(Switch),
	/// The viewer moved to another server (its next connections go there).
	ServerChanged(ServerChange),
	/// The stream ended and every segment was delivered.
	Ended,
}

impl WatchEvent {
	/// The event for a segment handed to the player while on `transport`.
	pub fn delivered(d: &Delivered, transport: Option<Transport>) -> Self {
		WatchEvent::Delivered {
			sequence: d.segment.sequence(),
			discontinuity: d.discontinuity,
			data: d.segment.chunks.clone(),
			duration_ms: d.segment.duration_ms(),
			transport,
		}
	}
}

enum Control {
	Force(Transport),
	Stop,
}

/// A running viewer.
pub struct WatchHandle {
	/// URL of the gateway's playlist, if the gateway runs.
	pub gateway_url: Option<String>,
	control: mpsc::Sender<Control>,
	task: JoinHandle<ViewerStats>,
}

impl WatchHandle {
	/// Switches to `transport` at the next segment boundary and stays on it.
	pub async fn force_transport(&self, transport: Transport) {
		let _ = self.control.send(Control::Force(transport)).await;
	}

	/// Stops the viewer and returns its counters.
	pub async fn stop(self) -> ViewerStats {
		let _ = self.control.send(Control::Stop).await;
		self.task.await.unwrap_or_default()
	}

	/// Waits until the viewer stops by itself (it does not, except when its task fails).
	pub async fn join(self) -> ViewerStats {
		self.task.await.unwrap_or_default()
	}
}

enum ConnEvent {
	Message(ConnId, Message),
	Closed(ConnId, String),
	PathStats { conn: ConnId, rtt: Duration, lost: u64, sent: u64 },
}

struct ConnCtx {
	config: WatchConfig,
	/// QUIC client endpoints, made on first use per address family (IPv4, IPv6): servers
	/// learnt from redirects may be of either.
	quic: Mutex<[Option<(quinn::Endpoint, quinn::ClientConfig)>; 2]>,
}

impl ConnCtx {
	fn quic_client(
		&self,
		server: SocketAddr,
	) -> io::Result<(quinn::Endpoint, quinn::ClientConfig)> {
		let mut clients = self.quic.lock();
		let slot = &mut clients[usize::from(server.is_ipv6())];
		if slot.is_none() {
			let c = self.config.verification;
			*slot = Some(super::quic_client(server, c, self.config.keepalive_interval)?);
		}
		Ok(slot.clone().expect("just set; qed"))
	}
}

/// Starts a viewer. `events`, when given, receives every delivered segment (the viewer waits
/// for the receiver: it is the player).
pub async fn start(
	mut config: WatchConfig,
	events: Option<mpsc::Sender<WatchEvent>>,
) -> io::Result<WatchHandle> {
	if !config.servers.iter().any(|s| s.tcp.is_some() || s.quic.is_some()) {
		return Err(io::Error::new(io::ErrorKind::InvalidInput, "no server address"));
	}
	config.core.servers = config.servers.iter().map(ServerAddr::to_text).collect();
	let playlist =
		Arc::new(Mutex::new(Playlist::new(config.core.stream, config.playlist_segments)));
	let (shutdown_tx, shutdown_rx) = watch::channel(false);
	let mut gateway_url = None;
	if let Some(addr) = config.gateway {
		let listener = TcpListener::bind(addr).await?;
		let local = listener.local_addr()?;
		gateway_url = Some(hls::playlist_url(local, config.core.stream));
		tokio::spawn(hls::serve(listener, playlist.clone(), shutdown_rx));
	}
	let recorder = config.record_dir.clone().map(PlayRecorder::new).transpose()?;
	let (control, control_rx) = mpsc::channel(8);
	let ctx = Arc::new(ConnCtx { config, quic: Mutex::new([None, None]) });
	let task = tokio::spawn(run(ctx, playlist, recorder, control_rx, events, shutdown_tx));
	Ok(WatchHandle { gateway_url, control, task })
}

/// Span over which the status line's bitrate is averaged.
const BITRATE_WINDOW: Duration = Duration::from_secs(10);

/// Events from connection tasks in flight to the viewer loop. Bounded: a connection task
/// waits (and stops reading its socket) while the loop is busy.
const CONN_EVENTS: usize = 256;

struct ConnHandle {
	close: Option<oneshot::Sender<Option<(ErrorCode, String)>>>,
	task: JoinHandle<()>,
}

async fn run(
	ctx: Arc<ConnCtx>,
	playlist: Arc<Mutex<Playlist>>,
	recorder: Option<PlayRecorder>,
	mut control: mpsc::Receiver<Control>,
	events: Option<mpsc::Sender<WatchEvent>>,
	shutdown: watch::Sender<bool>,
) -> ViewerStats {
	let mut core = ViewerCore::new(ctx.config.core.clone());
	let (tx, mut rx) = mpsc::channel(CONN_EVENTS);
	let mut conns: HashMap<ConnId, ConnHandle> = HashMap::new();
	let mut status = ctx.config.status_interval.map(tokio::time::interval);
	let mut ended_reported = false;
	// (time, media bytes) samples of the last BITRATE_WINDOW, for a bitrate that does not
	// swing with segment arrivals.
	let mut samples: std::collections::VecDeque<(Instant, u64)> = Default::default();
	let clock = Clock::new();
	core.start(clock.now());

	loop {
		while let Some(a) = core.poll_action() {
			match a {
				ViewerAction::Connect { conn, server, transport, start, switched_from } => {
					let server = core.servers().get(server).cloned().unwrap_or_default();
					info!(conn, %server, %transport, ?start, ?switched_from, "connecting");
					let (close_tx, close_rx) = oneshot::channel();
					let task = tokio::spawn(run_conn(
						ctx.clone(),
						conn,
						Target { server, transport, start, switched_from },
						tx.clone(),
						close_rx,
					));
					conns.insert(conn, ConnHandle { close: Some(close_tx), task });
				}
				ViewerAction::Close { conn, code, reason } => {
					if code.is_some() {
						warn!(conn, ?code, %reason, "closing connection: bad data from server");
					} else {
						info!(conn, %reason, "closing connection");
					}
					if let Some(mut h) = conns.remove(&conn) {
						let sent = h
							.close
							.take()
							.is_some_and(|c| c.send(code.map(|c| (c, reason))).is_ok());
						if !sent {
							h.task.abort();
						}
					}
				}
			}
		}
		while let Some(c) = core.poll_server_change() {
			info!(from = %c.from, to = %c.to, reason = ?c.reason, "moved to another server");
			if let Some(ev) = &events {
				let _ = ev.send(WatchEvent::ServerChanged(c)).await;
			}
		}
		while let Some(s) = core.poll_switch() {
			info!(from = %s.from, to = %s.to, reason = ?s.reason, "transport switched");
			if let Some(ev) = &events {
				let _ = ev.send(WatchEvent::Switched(s)).await;
			}
		}
		while let Some(d) = core.poll_delivered() {
			deliver(&playlist, recorder.as_ref(), &d).await;
			if let Some(ev) = &events {
				let _ = ev.send(WatchEvent::delivered(&d, core.transport())).await;
			}
		}
		if core.is_ended() && !ended_reported {
			ended_reported = true;
			playlist.lock().end();
			info!("stream ended; all segments delivered");
			if let Some(ev) = &events {
				let _ = ev.send(WatchEvent::Ended).await;
			}
		}
		let deadline = core.poll_timeout().map(|at| clock.instant(at));
		tokio::select! {
			ev = rx.recv() => {
				let now = clock.now();
				match ev.expect("the loop holds a sender; qed") {
					ConnEvent::Message(conn, m) => core.handle_message(now, conn, m),
					ConnEvent::Closed(conn, why) => {
						conns.remove(&conn);
						core.handle_closed(now, conn, why);
					},
					ConnEvent::PathStats { conn, rtt, lost, sent } =>
						core.handle_path_stats(now, conn, rtt, lost, sent),
				}
			},
			_ = async { tokio::time::sleep_until(deadline.expect("guarded; qed")).await }, if deadline.is_some() => {
				core.handle_timeout(clock.now());
			},
			c = control.recv() => match c {
				Some(Control::Force(t)) => core.force_transport(clock.now(), t),
				Some(Control::Stop) | None => break,
			},
			_ = async { status.as_mut().expect("guarded; qed").tick().await }, if status.is_some() => {
				let stats = core.stats();
				let now = Instant::now();
				samples.push_back((now, stats.media_bytes));
				while samples.front().is_some_and(|(t, _)| now - *t > BITRATE_WINDOW) {
					samples.pop_front();
				}
				let (t0, b0) = samples.front().copied().unwrap_or((now, stats.media_bytes));
				let secs = (now - t0).as_secs_f64().max(0.001);
				let kbps = (stats.media_bytes - b0) as f64 * 8.0 / 1000.0 / secs;
				let buffered = playlist.lock().buffered_ms();
				eprintln!(
					"[dsp watch] server={} transport={} bitrate={:.0}kbps buffer={:.1}s segments={} switches={} server_changes={} gaps={} duplicates={} rejected={}",
					core.servers()[core.current_server()],
					core.transport().map_or("-".to_string(), |t| t.to_string()),
					kbps,
					buffered as f64 / 1000.0,
					stats.buffer.delivered,
					core.switches().len(),
					stats.server_changes,
					stats.buffer.skipped,
					stats.buffer.duplicates,
					stats.rejected_connections,
				);
			},
		}
	}
	let _ = shutdown.send(true);
	for (_, h) in conns {
		h.task.abort();
	}
	core.stats()
}

/// A segment handed to the player (direct and P2P mode): into the gateway's playlist, and
/// recorded when the viewer records.
pub(super) async fn deliver(
	playlist: &Mutex<Playlist>,
	recorder: Option<&PlayRecorder>,
	d: &Delivered,
) {
	playlist.lock().push(d);
	if let Some(r) = recorder {
		r.segment(&d.segment).await;
	}
	debug!(seq = d.segment.sequence(), discontinuity = d.discontinuity, "segment delivered");
}

/// Where a connection goes and what it says after `Hello`.
struct Target {
	server: ServerAddrs,
	transport: Transport,
	start: Start,
	switched_from: Option<Transport>,
}

/// Resolves the server's address for `transport` (configured servers are IP literals; those
/// learnt from a `Redirect` may be names) and connects. A name that does not resolve fails
/// like a refused connection: the viewer counts it as a failed attempt.
async fn connect(
	ctx: &ConnCtx,
	server: &ServerAddrs,
	transport: Transport,
) -> io::Result<(BoxRead, BoxWrite, Option<quinn::Connection>)> {
	let no_addr = || io::Error::new(io::ErrorKind::NotFound, format!("no {transport} address"));
	let text = server.get(transport).ok_or_else(no_addr)?;
	let addr = tokio::net::lookup_host(text).await?.next().ok_or_else(no_addr)?;
	match transport {
		Transport::Tcp => open_stream(transport, addr, None).await,
		Transport::Quic => {
			let (endpoint, cfg) = ctx.quic_client(addr)?;
			open_stream(transport, addr, Some((&endpoint, &cfg))).await
		}
	}
}

async fn run_conn(
	ctx: Arc<ConnCtx>,
	conn: ConnId,
	target: Target,
	tx: mpsc::Sender<ConnEvent>,
	mut close: oneshot::Receiver<Option<(ErrorCode, String)>>,
) {
	let cfg = &ctx.config;
	let io_timeout = cfg.keepalive_interval * 5;
	let Target { server, transport, start, switched_from } = target;
	let result: Result<String, String> = async {
		let (mut r, mut w, quic) = tokio::select! {
			c = connect(&ctx, &server, transport) => c.map_err(|e| format!("connect to {server} failed: {e}"))?,
			_ = &mut close => return Ok("closed before connecting".to_string()),
		};
		let hello = Message::Hello {
			version: PROTOCOL_VERSION,
			role: Role::Viewer,
			genesis_hash: cfg.core.genesis_hash,
		};
		let sub = Message::Subscribe { stream: cfg.core.stream, start };
		let mut first = vec![encode_frame(&hello), encode_frame(&sub)];
		if let Some(from) = switched_from {
			first.push(encode_frame(&Message::Switched { from }));
		}
		write_frames(&mut w, &first, io_timeout).await.map_err(|e| format!("write failed: {e}"))?;
		let mut dec = FrameDecoder::new(cfg.max_frame_len);
		let mut ping = tokio::time::interval(cfg.keepalive_interval);
		let mut stats = tokio::time::interval(cfg.stats_interval);
		let mut nonce = 0u64;
		loop {
			tokio::select! {
				m = read_message(&mut r, &mut dec) => match m {
					Ok(Some(m)) => {
						if tx.send(ConnEvent::Message(conn, m)).await.is_err() {
							return Ok("viewer stopped".into());
						}
					},
					Ok(None) => return Err("server closed the connection".into()),
					Err(ReadError::Frame(e)) => {
						let frame = encode_frame(&Message::error(e.code(), e.to_string()));
						let _ = write_frames(&mut w, &[frame], io_timeout).await;
						return Err(format!("bad frame from server: {e}"));
					},
					Err(ReadError::Io(e)) => return Err(format!("read failed: {e}")),
				},
				_ = ping.tick() => {
					nonce += 1;
					write_frames(&mut w, &[encode_frame(&Message::Ping(nonce))], io_timeout)
						.await
						.map_err(|e| format!("write failed: {e}"))?;
				},
				_ = stats.tick(), if quic.is_some() => {
					let s = quic.as_ref().expect("guarded; qed").stats();
					let _ = tx.try_send(ConnEvent::PathStats {
						conn,
						rtt: s.path.rtt,
						lost: s.path.lost_packets,
						sent: s.path.sent_packets,
					});
				},
				c = &mut close => {
					if let Ok(Some((code, reason))) = c {
						let frame = encode_frame(&Message::error(code, reason));
						let _ = write_frames(&mut w, &[frame], io_timeout).await;
					}
					drop(w);
					if let Some(q) = &quic {
						q.close(0u32.into(), b"closed by viewer");
					}
					return Ok("closed by viewer".into());
				},
			}
		}
	}
	.await;
	let why = match result {
		Ok(why) => why,
		Err(why) => {
			debug!(conn, %transport, %why, "connection ended");
			why
		}
	};
	let _ = tx.send(ConnEvent::Closed(conn, why)).await;
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn endpoints_group_into_streamers_in_order() {
		let e = |s: &str| s.parse::<super::super::Endpoint>().unwrap();
		let got = ServerAddr::group(&[
			e("tcp://127.0.0.1:1"),
			e("quic://127.0.0.1:2"),
			e("tcp://127.0.0.2:1"),
			e("tcp://127.0.0.3:1"),
			e("quic://127.0.0.3:2"),
		]);
		let a = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
		assert_eq!(
			got,
			vec![
				ServerAddr { tcp: a("127.0.0.1:1"), quic: a("127.0.0.1:2") },
				ServerAddr { tcp: a("127.0.0.2:1"), quic: None },
				ServerAddr { tcp: a("127.0.0.3:1"), quic: a("127.0.0.3:2") },
			]
		);
		assert_eq!(got[1].to_text(), ServerAddrs { tcp: Some("127.0.0.2:1".into()), quic: None });
		assert!(ServerAddr::group(&[]).is_empty());
	}
}
