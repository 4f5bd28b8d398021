//! The relay's tokio shell: listens on one address (TCP and/or UDP), forwards every connection
//! or datagram flow to one target, and holds each read or datagram back by the
//! [`DelaySchedule`] of its direction. All decisions are in [`crate::schedule`]; this module
//! only moves bytes and timers.
//!
//! TCP is relayed as two byte streams (the relay terminates the client's connection and opens
//! its own to the target): the bytes arrive late by the delay, in order, but each TCP
//! connection's own congestion control sees only its hop's round trip, not the added delay.
//! UDP is relayed per client address through its own upstream socket; datagrams keep their
//! boundaries.

use crate::schedule::{DelayLine, DelayProfile, DelaySchedule, Millis, Order};
use std::{
	collections::HashMap,
	io,
	net::{Ipv4Addr, Ipv6Addr, SocketAddr},
	sync::{
		atomic::{AtomicU64, Ordering},
		Arc,
	},
	time::Duration,
};
use tokio::{
	io::{AsyncReadExt, AsyncWriteExt},
	net::{tcp, TcpListener, TcpStream, UdpSocket},
	sync::mpsc,
	task::JoinHandle,
	time::Instant,
};

/// What a relay forwards and how late.
#[derive(Clone, Debug)]
pub struct RelayConfig {
	/// Address clients connect to (TCP) or send to (UDP); port 0 picks one.
	pub listen: SocketAddr,
	/// Where everything is forwarded.
	pub target: SocketAddr,
	/// Relay TCP.
	pub tcp: bool,
	/// Relay UDP.
	pub udp: bool,
	/// Delay client → target.
	pub to_target: DelayProfile,
	/// Delay target → client.
	pub to_client: DelayProfile,
	/// Whether UDP datagrams may overtake each other ([`Order::AllowReorder`] by default, as
	/// on a path with jitter). TCP always keeps order.
	pub udp_order: Order,
	/// Seed of the jitter (each connection and direction derives its own from it).
	pub seed: u64,
	/// A UDP flow (client address) with no datagram either way for this long is forgotten and
	/// its upstream socket closed. Default 60 s: longer than QUIC's idle timeouts.
	pub udp_idle: Duration,
	/// UDP flows held at once; datagrams of further new clients are dropped. Default 1024
	/// (memory: one socket and one small task each).
	pub max_udp_flows: usize,
	/// Datagrams waiting per direction; more are dropped, as a full router queue drops them.
	/// Default 8192 (at most 8192 × 64 KiB in theory, about 12 MiB at QUIC's 1.5 KB).
	pub max_udp_queued: usize,
	/// Reads waiting per TCP connection and direction; the relay stops reading (and TCP
	/// pushes back on the sender) when this many wait. Default 256 (at most 256 ×
	/// `tcp_read_size` = 16 MiB per direction).
	pub max_tcp_queued: usize,
	/// Largest TCP read, bytes. Default 64 KiB.
	pub tcp_read_size: usize,
}

impl RelayConfig {
	/// Both protocols, no delay, the defaults above.
	pub fn new(listen: SocketAddr, target: SocketAddr) -> Self {
		Self {
			listen,
			target,
			tcp: true,
			udp: true,
			to_target: DelayProfile::default(),
			to_client: DelayProfile::default(),
			udp_order: Order::AllowReorder,
			seed: 1,
			udp_idle: Duration::from_secs(60),
			max_udp_flows: 1024,
			max_udp_queued: 8192,
			max_tcp_queued: 256,
			tcp_read_size: 64 * 1024,
		}
	}
}

/// The relay's clock: milliseconds since it started, on tokio's clock.
#[derive(Clone, Copy, Debug)]
struct LabClock(Instant);

impl LabClock {
	fn now(&self) -> Millis {
		Millis::try_from(self.0.elapsed().as_millis()).unwrap_or(Millis::MAX)
	}
	fn instant(&self, at: Millis) -> Instant {
		self.0 + Duration::from_millis(at.min(86_400_000 * 365))
	}
}

/// A running relay; dropping it stops accepting (connections in progress run to their end).
pub struct Relay {
	/// Where TCP listens, when relayed.
	pub tcp_addr: Option<SocketAddr>,
	/// Where UDP listens, when relayed.
	pub udp_addr: Option<SocketAddr>,
	tasks: Vec<JoinHandle<()>>,
}

impl Relay {
	/// Binds the listen address(es) and starts forwarding.
	pub async fn start(config: RelayConfig) -> io::Result<Relay> {
		let clock = LabClock(Instant::now());
		let config = Arc::new(config);
		let mut relay = Relay { tcp_addr: None, udp_addr: None, tasks: Vec::new() };
		if config.tcp {
			let listener = TcpListener::bind(config.listen).await?;
			relay.tcp_addr = Some(listener.local_addr()?);
			relay.tasks.push(tokio::spawn(accept_tcp(listener, config.clone(), clock)));
		}
		if config.udp {
			// The same port as TCP when the listen port was 0.
			let listen = relay.tcp_addr.unwrap_or(config.listen);
			let socket = Arc::new(UdpSocket::bind(listen).await?);
			relay.udp_addr = Some(socket.local_addr()?);
			relay.tasks.push(tokio::spawn(relay_udp(socket, config.clone(), clock)));
		}
		Ok(relay)
	}

	/// Runs until every listener task ended (they end only on a listener error).
	pub async fn join(mut self) {
		for t in std::mem::take(&mut self.tasks) {
			let _ = t.await;
		}
	}
}

impl Drop for Relay {
	fn drop(&mut self) {
		for t in &self.tasks {
			t.abort();
		}
	}
}

/// Jitter seed of connection or flow `n`, direction `dir`: distinct per stream of items.
fn derive_seed(seed: u64, n: u64, dir: u64) -> u64 {
	seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ dir.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
}

async fn accept_tcp(listener: TcpListener, config: Arc<RelayConfig>, clock: LabClock) {
	let mut n = 0u64;
	loop {
		match listener.accept().await {
			Ok((client, from)) => {
				n += 1;
				tokio::spawn(relay_tcp(client, from, n, config.clone(), clock));
			}
			Err(e) => {
				// Out of descriptors and the like: wait instead of spinning.
				eprintln!("netlab-relay: tcp accept failed: {e}");
				tokio::time::sleep(Duration::from_millis(100)).await;
			}
		}
	}
}

async fn relay_tcp(
	client: TcpStream,
	from: SocketAddr,
	n: u64,
	config: Arc<RelayConfig>,
	clock: LabClock,
) {
	let upstream = match TcpStream::connect(config.target).await {
		Ok(s) => s,
		Err(e) => {
			eprintln!("netlab-relay: tcp {from}: connect to {} failed: {e}", config.target);
			return;
		}
	};
	let _ = client.set_nodelay(true);
	let _ = upstream.set_nodelay(true);
	let (client_r, client_w) = client.into_split();
	let (up_r, up_w) = upstream.into_split();
	let up = DelaySchedule::new(config.to_target, Order::Keep, derive_seed(config.seed, n, 0));
	let down = DelaySchedule::new(config.to_client, Order::Keep, derive_seed(config.seed, n, 1));
	tokio::join!(
		pump_tcp(client_r, up_w, up, &config, clock),
		pump_tcp(up_r, client_w, down, &config, clock),
	);
}

/// One direction of a TCP connection: each read waits for its release time, in order; the
/// end of the stream (or a read error) is passed on as a shutdown, delayed like data.
async fn pump_tcp(
	mut from: tcp::OwnedReadHalf,
	mut to: tcp::OwnedWriteHalf,
	mut schedule: DelaySchedule,
	config: &RelayConfig,
	clock: LabClock,
) {
	let (tx, mut rx) = mpsc::channel::<(Millis, Option<Vec<u8>>)>(config.max_tcp_queued.max(1));
	let read_size = config.tcp_read_size.max(1);
	let reader = async move {
		let mut buf = vec![0u8; read_size];
		loop {
			let read = from.read(&mut buf).await;
			let at = schedule.release_at(clock.now());
			let item = match read {
				Ok(0) | Err(_) => None,
				Ok(n) => Some(buf[..n].to_vec()),
			};
			let end = item.is_none();
			if tx.send((at, item)).await.is_err() || end {
				return;
			}
		}
	};
	let writer = async move {
		while let Some((at, item)) = rx.recv().await {
			tokio::time::sleep_until(clock.instant(at)).await;
			match item {
				Some(data) => {
					if to.write_all(&data).await.is_err() {
						return;
					}
				}
				None => {
					let _ = to.shutdown().await;
					return;
				}
			}
		}
	};
	tokio::join!(reader, writer);
}

/// A datagram waiting in a delay line: sent on `socket`, to `dest` or (connected socket) to
/// its peer.
struct Datagram {
	socket: Arc<UdpSocket>,
	dest: Option<SocketAddr>,
	data: Vec<u8>,
}

/// Sends datagrams from `input` through a delay line until `input` closes and the line is
/// empty. Datagrams beyond `max_queued` are dropped.
async fn delay_sender(
	mut line: DelayLine<Datagram>,
	mut input: mpsc::Receiver<Datagram>,
	max_queued: usize,
	clock: LabClock,
) {
	let mut open = true;
	let mut dropped = 0u64;
	loop {
		while let Some(d) = line.poll_ready(clock.now()) {
			// A send error (no route, buffer full) is a lost datagram, as on a real path.
			let _ = match d.dest {
				Some(dest) => d.socket.send_to(&d.data, dest).await,
				None => d.socket.send(&d.data).await,
			};
		}
		if !open && line.is_empty() {
			return;
		}
		let next = line.poll_timeout();
		tokio::select! {
			d = input.recv(), if open => match d {
				Some(d) if line.len() < max_queued => {
					line.push(clock.now(), d);
				},
				Some(_) => {
					dropped += 1;
					if dropped.is_power_of_two() {
						eprintln!("netlab-relay: udp queue full; {dropped} datagrams dropped");
					}
				},
				None => open = false,
			},
			_ = tokio::time::sleep_until(clock.instant(next.unwrap_or(0))), if next.is_some() => {},
		}
	}
}

/// The datagram size read: the largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Channel room between the receive loops and a delay sender; the sender drains it at once,
/// so this only absorbs bursts.
const DATAGRAM_CHANNEL: usize = 1024;

async fn relay_udp(listen: Arc<UdpSocket>, config: Arc<RelayConfig>, clock: LabClock) {
	let (to_client, to_client_rx) = mpsc::channel(DATAGRAM_CHANNEL);
	let down =
		DelaySchedule::new(config.to_client, config.udp_order, derive_seed(config.seed, 0, 1));
	tokio::spawn(delay_sender(DelayLine::new(down), to_client_rx, config.max_udp_queued, clock));
	let (to_target, to_target_rx) = mpsc::channel(DATAGRAM_CHANNEL);
	let up = DelaySchedule::new(config.to_target, config.udp_order, derive_seed(config.seed, 0, 0));
	tokio::spawn(delay_sender(DelayLine::new(up), to_target_rx, config.max_udp_queued, clock));

	struct Flow {
		upstream: Arc<UdpSocket>,
		last_seen: Arc<AtomicU64>,
	}
	let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
	let (expired_tx, mut expired) = mpsc::channel::<SocketAddr>(64);
	let mut buf = vec![0u8; MAX_DATAGRAM];
	let mut refused = 0u64;
	loop {
		tokio::select! {
			r = listen.recv_from(&mut buf) => {
				let (n, client) = match r {
					Ok(x) => x,
					// ICMP errors surface here on some systems: not fatal for the relay.
					Err(_) => continue,
				};
				if !flows.contains_key(&client) {
					if flows.len() >= config.max_udp_flows {
						refused += 1;
						if refused.is_power_of_two() {
							eprintln!("netlab-relay: {} udp flows held; {refused} datagrams of new clients dropped", flows.len());
						}
						continue;
					}
					match open_flow(client, &listen, &config, to_client.clone(), expired_tx.clone(), clock).await {
						Ok((upstream, last_seen)) => { flows.insert(client, Flow { upstream, last_seen }); },
						Err(e) => {
							eprintln!("netlab-relay: udp {client}: upstream socket failed: {e}");
							continue;
						},
					}
				}
				let Some(flow) = flows.get(&client) else { continue };
				flow.last_seen.store(clock.now(), Ordering::Relaxed);
				let d = Datagram { socket: flow.upstream.clone(), dest: None, data: buf[..n].to_vec() };
				if to_target.send(d).await.is_err() {
					return;
				}
			},
			Some(client) = expired.recv() => { flows.remove(&client); },
		}
	}
}

/// A new UDP flow: its own upstream socket connected to the target, and a task that relays
/// the target's answers back to `client` until the flow is idle for `udp_idle`.
async fn open_flow(
	client: SocketAddr,
	listen: &Arc<UdpSocket>,
	config: &RelayConfig,
	to_client: mpsc::Sender<Datagram>,
	expired: mpsc::Sender<SocketAddr>,
	clock: LabClock,
) -> io::Result<(Arc<UdpSocket>, Arc<AtomicU64>)> {
	let any: SocketAddr = if config.target.is_ipv6() {
		(Ipv6Addr::UNSPECIFIED, 0).into()
	} else {
		(Ipv4Addr::UNSPECIFIED, 0).into()
	};
	let upstream = Arc::new(UdpSocket::bind(any).await?);
	upstream.connect(config.target).await?;
	let last_seen = Arc::new(AtomicU64::new(clock.now()));
	let (socket, seen, listen) = (upstream.clone(), last_seen.clone(), listen.clone());
	let idle = config.udp_idle;
	tokio::spawn(async move {
		let mut buf = vec![0u8; MAX_DATAGRAM];
		loop {
			let idle_ms = Millis::try_from(idle.as_millis()).unwrap_or(Millis::MAX);
			let since = clock.now().saturating_sub(seen.load(Ordering::Relaxed));
			if since >= idle_ms {
				let _ = expired.send(client).await;
				return;
			}
			let wait = Duration::from_millis(idle_ms - since);
			match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
				Ok(Ok(n)) => {
					seen.store(clock.now(), Ordering::Relaxed);
					let d = Datagram {
						socket: listen.clone(),
						dest: Some(client),
						data: buf[..n].to_vec(),
					};
					if to_client.send(d).await.is_err() {
						return;
					}
				}
				// ICMP port unreachable from the target and the like: keep the flow.
				Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
				Err(_) => {}
			}
		}
	});
	Ok((upstream, last_seen))
}
