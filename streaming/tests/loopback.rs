//! End to end on loopback: publisher → server → viewer over TCP and over QUIC, and transport
//! switches mid-stream (forced, UDP blocked at start, UDP cut mid-stream). Every segment must
//! arrive exactly once, in order, byte-identical.

mod common;

use common::*;
use dsp_streaming::viewer::{SwitchReason, Transport, TransportPolicy};
use std::time::Duration;

const LEN: usize = 100_000;

async fn deliver_over(transport: Transport) {
	init_logs();
	let server = server(serve_config()).await;
	let stream = 7;
	let count = 20;
	let endpoint = match transport {
		Transport::Tcp => tcp(&server),
		Transport::Quic => quic(&server),
	};
	// The publisher pushes over the same transport the viewer uses.
	let publish =
		tokio::spawn(publish(vec![endpoint], stream, count, LEN, Duration::from_millis(20)));
	let config =
		viewer_config(stream, server.tcp_addr, server.quic_addr, TransportPolicy::Only(transport));
	let got = watch_until_end(config, |_, _| None).await;
	publish.await.unwrap();
	got.assert_complete(count, LEN);
	assert!(got.switches.is_empty(), "{:?}", got.switches);
	assert!(got.segments.iter().all(|s| s.3 == Some(transport)));
	let stats = server.stats();
	assert_eq!(stats.segments_stored, count);
	assert_eq!(stats.closed_with_error, 0);
	server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_delivers_every_segment_byte_identical() {
	tokio::time::timeout(TEST_TIMEOUT, deliver_over(Transport::Tcp)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_delivers_every_segment_byte_identical() {
	tokio::time::timeout(TEST_TIMEOUT, deliver_over(Transport::Quic)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_switches_mid_stream_lose_and_repeat_nothing() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let server = server(serve_config()).await;
		let count = 30;
		let publish =
			tokio::spawn(publish(vec![tcp(&server)], 1, count, LEN, Duration::from_millis(40)));
		let config = viewer_config(1, server.tcp_addr, server.quic_addr, TransportPolicy::Auto);
		let got = watch_until_end(config, |seq, _| match seq {
			4 | 16 => Some(Transport::Tcp),
			10 | 22 => Some(Transport::Quic),
			_ => None,
		})
		.await;
		publish.await.unwrap();
		got.assert_complete(count, LEN);
		let forced: Vec<_> = got
			.switches
			.iter()
			.filter(|s| s.reason == SwitchReason::Forced)
			.map(|s| s.to)
			.collect();
		assert!(forced.len() >= 3, "{:?}", got.switches);
		// Segments before the first switch came over QUIC, the last over what was forced last.
		assert_eq!(got.segments[0].3, Some(Transport::Quic));
		server.shutdown().await;
	})
	.await
	.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_from_the_start_falls_back_to_tcp() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let server = server(serve_config()).await;
		let relay = UdpRelay::start(server.quic_addr.unwrap()).await;
		relay.block();
		let count = 10;
		let publish =
			tokio::spawn(publish(vec![tcp(&server)], 2, count, LEN, Duration::from_millis(20)));
		let mut config = viewer_config(2, server.tcp_addr, Some(relay.addr), TransportPolicy::Auto);
		config.core.controller.connect_timeout = Duration::from_millis(500);
		let got = watch_until_end(config, |_, _| None).await;
		publish.await.unwrap();
		got.assert_complete(count, LEN);
		assert_eq!(got.switches[0].reason, SwitchReason::ConnectTimeout);
		assert!(got.segments.iter().all(|s| s.3 == Some(Transport::Tcp)));
		server.shutdown().await;
	})
	.await
	.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_cut_mid_stream_switches_to_tcp_without_gap_or_duplicate() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let server = server(serve_config()).await;
		let relay = UdpRelay::start(server.quic_addr.unwrap()).await;
		let count = 30;
		let publish =
			tokio::spawn(publish(vec![tcp(&server)], 3, count, LEN, Duration::from_millis(50)));
		let mut config = viewer_config(3, server.tcp_addr, Some(relay.addr), TransportPolicy::Auto);
		config.keepalive_interval = Duration::from_millis(100);
		config.core.controller.progress_timeout = Duration::from_millis(600);
		let blocker = relay.blocked.clone();
		let got = watch_until_end(config, move |seq, _| {
			if seq == 8 {
				blocker.store(true, std::sync::atomic::Ordering::Relaxed);
			}
			None
		})
		.await;
		publish.await.unwrap();
		got.assert_complete(count, LEN);
		assert_eq!(got.segments[0].3, Some(Transport::Quic));
		assert_eq!(got.segments.last().unwrap().3, Some(Transport::Tcp));
		assert!(
			got.switches.iter().any(|s| s.from == Transport::Quic
				&& s.to == Transport::Tcp
				&& s.reason == SwitchReason::Stalled),
			"{:?}",
			got.switches
		);
		server.shutdown().await;
	})
	.await
	.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_delayed_mid_stream_switches_to_tcp_by_measured_rtt() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let server = server(serve_config()).await;
		let relay = UdpRelay::start(server.quic_addr.unwrap()).await;
		let (count, len) = (150, 20_000);
		let publish =
			tokio::spawn(publish(vec![tcp(&server)], 4, count, len, Duration::from_millis(100)));
		let mut config = viewer_config(4, server.tcp_addr, Some(relay.addr), TransportPolicy::Auto);
		config.core.controller.max_quic_rtt = Duration::from_millis(500);
		config.stats_interval = Duration::from_millis(250);
		let delay = relay.delay_ms.clone();
		let got = watch_until_end(config, move |seq, _| {
			if seq == 20 {
				// One second each way from now on: RTT about 2 s.
				delay.store(1000, std::sync::atomic::Ordering::Relaxed);
			}
			None
		})
		.await;
		publish.await.unwrap();
		got.assert_complete(count, len);
		assert_eq!(got.segments[0].3, Some(Transport::Quic));
		assert_eq!(got.segments.last().unwrap().3, Some(Transport::Tcp));
		assert!(
			got.switches.iter().any(|s| s.from == Transport::Quic
				&& s.to == Transport::Tcp
				&& s.reason == SwitchReason::Rtt),
			"{:?}",
			got.switches
		);
		server.shutdown().await;
	})
	.await
	.unwrap();
}
