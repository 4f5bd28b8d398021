//! Streams over their life on a running server: a restarted publisher continues where the
//! server is, a viewer may wait (bounded) for a stream nobody publishes yet, idle streams are
//! freed, and a recorded stream is served again on demand after a restart, byte-identical,
//! with its signed end.

mod common;

use common::*;
use dsp_primitives::{Signed, StreamEnd};
use dsp_streaming::{
	net::publish::{Held, PublishConfig, Publisher},
	protocol::{encode_frame, ErrorCode, Message, Role, Start, PROTOCOL_VERSION},
	viewer::{Transport, TransportPolicy},
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const LEN: usize = 50_000;

/// A raw viewer: hello and subscribe, then every message until the server closes.
async fn raw_subscribe(addr: SocketAddr, stream: u64) -> Vec<Message> {
	let mut s = TcpStream::connect(addr).await.unwrap();
	let hello =
		Message::Hello { version: PROTOCOL_VERSION, role: Role::Viewer, genesis_hash: [0; 32] };
	s.write_all(&encode_frame(&hello)).await.unwrap();
	s.write_all(&encode_frame(&Message::Subscribe { stream, start: Start::At(0) })).await.unwrap();
	read_to_end(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_publisher_continues_where_the_server_is() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let server = server(serve_config()).await;
		let stream = 11;
		let first =
			Publisher::start(PublishConfig::new(stream, vec![tcp(&server)], origin())).unwrap();
		let none = Held { broadcast: None, next_sequence: 0 };
		assert_eq!(first.resume_point(Duration::from_secs(10)).await, Some(none), "a new stream");
		for seq in 0..5 {
			first.push(Arc::new(segment(stream, seq, LEN)));
		}
		wait_until("5 segments stored", || server.stats().segments_stored == 5).await;
		// The publisher dies without ending the stream, and is started again.
		first.abort();
		let second =
			Publisher::start(PublishConfig::new(stream, vec![tcp(&server)], origin())).unwrap();
		let next = second.resume_point(Duration::from_secs(10)).await;
		let held = Held { broadcast: Some(0), next_sequence: 5 };
		assert_eq!(next, Some(held), "the server said where to continue");
		for seq in 5..10 {
			second.push(Arc::new(segment(stream, seq, LEN)));
		}
		let end = StreamEnd { genesis_hash: [0; 32], stream, broadcast: 0, next_sequence: 10 };
		let reports = second.finish(Signed::sign(end, &origin()), Duration::from_secs(30)).await;
		assert!(reports.iter().all(|r| r.complete && r.acked == 5), "{reports:?}");
		assert_eq!(server.stats().segments_stored, 10, "nothing was acked as a duplicate");
		let config =
			viewer_config(stream, server.tcp_addr, None, TransportPolicy::Only(Transport::Tcp));
		watch_until_end(config, |_, _| None).await.assert_complete(10, LEN);
		server.shutdown().await;
	})
	.await
	.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_waits_for_a_stream_that_is_published_later() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let server = server(serve_config()).await;
		let stream = 12;
		let config =
			viewer_config(stream, server.tcp_addr, None, TransportPolicy::Only(Transport::Tcp));
		let viewer = tokio::spawn(watch_until_end(config, |_, _| None));
		wait_until("the viewer's stream slot", || server.stats().streams_held == 1).await;
		publish(vec![tcp(&server)], stream, 6, LEN, Duration::from_millis(20)).await;
		viewer.await.unwrap().assert_complete(6, LEN);
		server.shutdown().await;
	})
	.await
	.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_streams_are_bounded_and_idle_ones_freed() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		config.streams.max_waiting = 1;
		config.streams.idle_timeout = Duration::from_secs(1);
		let server = server(config).await;
		let addr = server.tcp_addr.unwrap();
		// One viewer waits for stream 30, which nobody publishes.
		let waiting = tokio::spawn(raw_subscribe(addr, 30));
		wait_until("the waiting slot", || server.stats().streams_held == 1).await;
		// A second stream nobody publishes finds no room.
		let refused = raw_subscribe(addr, 31).await;
		assert!(
			matches!(refused.last(), Some(Message::Error { code: ErrorCode::UnknownStream, .. })),
			"{refused:?}"
		);
		// The wait is bounded: after the idle timeout the slot is freed and the viewer closed.
		let msgs = waiting.await.unwrap();
		assert!(matches!(msgs.first(), Some(Message::Welcome { .. })), "{msgs:?}");
		assert!(
			matches!(msgs.last(), Some(Message::Error { code: ErrorCode::UnknownStream, .. })),
			"{msgs:?}"
		);
		let stats = server.stats();
		assert_eq!((stats.streams_held, stats.streams_freed), (0, 1));
		// Room again: a published stream gets a window and is served.
		let viewer_config =
			viewer_config(31, server.tcp_addr, None, TransportPolicy::Only(Transport::Tcp));
		let viewer = tokio::spawn(watch_until_end(viewer_config, |_, _| None));
		publish(vec![tcp(&server)], 31, 3, LEN, Duration::from_millis(20)).await;
		viewer.await.unwrap().assert_complete(3, LEN);
		server.shutdown().await;
	})
	.await
	.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_stream_is_served_on_demand_after_a_restart() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let dir = tempfile::tempdir().unwrap();
		let (stream, count) = (13, 12);
		let mut config = serve_config();
		config.record_dir = Some(dir.path().to_path_buf());
		let live = server(config).await;
		publish(vec![tcp(&live)], stream, count, LEN, Duration::from_millis(5)).await;
		live.shutdown().await;

		let mut config = serve_config();
		config.vod_dir = Some(dir.path().to_path_buf());
		// Pacing is the unit tests' business; here every segment may go at once.
		config.session.on_demand_lead = Duration::from_secs(3600);
		let vod = server(config).await;
		for transport in [Transport::Tcp, Transport::Quic] {
			let config = viewer_config(
				stream,
				vod.tcp_addr,
				vod.quic_addr,
				TransportPolicy::Only(transport),
			);
			watch_until_end(config, |_, _| None).await.assert_complete(count, LEN);
		}
		// A live start on a recording starts at its beginning.
		let mut config =
			viewer_config(stream, vod.tcp_addr, None, TransportPolicy::Only(Transport::Tcp));
		config.core.start = Start::Live { back: 2 };
		watch_until_end(config, |_, _| None).await.assert_complete(count, LEN);
		let stats = vod.stats();
		assert_eq!((stats.vod_sessions, stats.segments_stored, stats.streams_held), (3, 0, 0));
		vod.shutdown().await;
	})
	.await
	.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_the_server_refuses_are_dropped_and_the_rest_delivered() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		// Segment 2 is too long for this server (BadHeader after it was sent); segment 4 has a
		// chunk frame above its max_frame_len (not sent at all).
		config.session.segment_limits.max_segment_len = 2 * LEN as u32;
		config.session.max_frame_len = 40 * 1024;
		let server = server(config).await;
		let stream = 14;
		let publisher =
			Publisher::start(PublishConfig::new(stream, vec![tcp(&server)], origin())).unwrap();
		for seq in 0..6 {
			let seg = match seq {
				2 => segment(stream, seq, 3 * LEN),
				4 => dsp_streaming::segment::Segment::build(
					&origin(),
					[0; 32],
					stream,
					0,
					seq,
					2000,
					media(seq, LEN),
					64 * 1024,
				),
				_ => segment(stream, seq, LEN),
			};
			publisher.push(Arc::new(seg));
		}
		let end = StreamEnd { genesis_hash: [0; 32], stream, broadcast: 0, next_sequence: 6 };
		let reports = publisher.finish(Signed::sign(end, &origin()), Duration::from_secs(30)).await;
		assert_eq!(reports.len(), 1);
		let r = &reports[0];
		assert!(r.complete, "{r:?}");
		assert_eq!((r.acked, r.refused), (4, 2), "{r:?}");
		// One reconnect after the refusal, not one per resend.
		assert_eq!(r.connections, 2, "{r:?}");
		let stats = server.stats();
		assert_eq!((stats.segments_stored, stats.closed_with_error), (4, 1));
		let mut config =
			viewer_config(stream, server.tcp_addr, None, TransportPolicy::Only(Transport::Tcp));
		config.max_frame_len = 40 * 1024;
		let got = watch_until_end(config, |_, _| None).await;
		assert_eq!(got.sequences(), vec![0, 1, 3, 5]);
		assert!(got.ended);
		server.shutdown().await;
	})
	.await
	.unwrap();
}
