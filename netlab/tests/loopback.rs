//! The relay over loopback sockets: it adds at least the configured round trip, and keeps TCP
//! bytes intact and in order under jitter. Only lower bounds on time are asserted: a relay that
//! holds every byte back can never deliver early, however busy the machine is.

use netlab::{
	relay::{Relay, RelayConfig},
	schedule::DelayProfile,
};
use std::{net::SocketAddr, time::Duration};
use tokio::{
	io::{AsyncReadExt, AsyncWriteExt},
	net::{TcpListener, TcpStream, UdpSocket},
	time::Instant,
};

const ONE_WAY_MS: u64 = 40;

async fn tcp_echo() -> SocketAddr {
	let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
	let addr = l.local_addr().unwrap();
	tokio::spawn(async move {
		while let Ok((s, _)) = l.accept().await {
			tokio::spawn(async move {
				let (mut r, mut w) = s.into_split();
				let _ = tokio::io::copy(&mut r, &mut w).await;
			});
		}
	});
	addr
}

async fn udp_echo() -> SocketAddr {
	let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
	let addr = s.local_addr().unwrap();
	tokio::spawn(async move {
		let mut buf = vec![0u8; 2048];
		while let Ok((n, from)) = s.recv_from(&mut buf).await {
			let _ = s.send_to(&buf[..n], from).await;
		}
	});
	addr
}

fn config(target: SocketAddr, jitter_ms: u64) -> RelayConfig {
	let mut c = RelayConfig::new("127.0.0.1:0".parse().unwrap(), target);
	let p = DelayProfile { delay_ms: ONE_WAY_MS, jitter_ms };
	c.to_target = p;
	c.to_client = p;
	c
}

#[tokio::test]
async fn tcp_round_trips_through_the_relay_take_at_least_twice_the_one_way_delay() {
	let direct_target = tcp_echo().await;
	let relay = Relay::start(config(direct_target, 0)).await.unwrap();
	let mut s = TcpStream::connect(relay.tcp_addr.unwrap()).await.unwrap();
	s.set_nodelay(true).unwrap();
	let mut rtts = Vec::new();
	for i in 0..5u8 {
		let t = Instant::now();
		s.write_all(&[i]).await.unwrap();
		let mut b = [0u8; 1];
		s.read_exact(&mut b).await.unwrap();
		assert_eq!(b[0], i);
		rtts.push(t.elapsed());
	}
	let min = rtts.iter().min().copied().unwrap();
	println!("tcp rtt through the relay (one-way {ONE_WAY_MS} ms): {rtts:?}");
	assert!(min >= Duration::from_millis(2 * ONE_WAY_MS), "added round trip: {min:?}");
}

#[tokio::test]
async fn udp_round_trips_through_the_relay_take_at_least_twice_the_one_way_delay() {
	let target = udp_echo().await;
	let relay = Relay::start(config(target, 0)).await.unwrap();
	let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
	s.connect(relay.udp_addr.unwrap()).await.unwrap();
	let mut rtts = Vec::new();
	for i in 0..5u8 {
		let t = Instant::now();
		s.send(&[i; 100]).await.unwrap();
		let mut b = [0u8; 200];
		let n = tokio::time::timeout(Duration::from_secs(10), s.recv(&mut b))
			.await
			.expect("echo through the relay")
			.unwrap();
		assert_eq!(&b[..n], &[i; 100], "the datagram comes back whole");
		rtts.push(t.elapsed());
	}
	let min = rtts.iter().min().copied().unwrap();
	println!("udp rtt through the relay (one-way {ONE_WAY_MS} ms): {rtts:?}");
	assert!(min >= Duration::from_millis(2 * ONE_WAY_MS), "added round trip: {min:?}");
}

#[tokio::test]
async fn tcp_bytes_stay_whole_and_in_order_under_jitter() {
	let target = tcp_echo().await;
	let relay = Relay::start(config(target, 30)).await.unwrap();
	let s = TcpStream::connect(relay.tcp_addr.unwrap()).await.unwrap();
	let (mut r, mut w) = s.into_split();
	let sent: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
	let to_send = sent.clone();
	let writer = tokio::spawn(async move {
		for piece in to_send.chunks(7000) {
			w.write_all(piece).await.unwrap();
		}
		w.shutdown().await.unwrap();
	});
	let mut got = Vec::new();
	r.read_to_end(&mut got).await.unwrap();
	writer.await.unwrap();
	assert_eq!(got.len(), sent.len());
	assert!(got == sent, "every byte, in order, and the end passed on");
}
