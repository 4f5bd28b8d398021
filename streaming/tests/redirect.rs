//! Load balancing between streamers on loopback: a full server redirects a viewer to another
//! streamer of the same stream, a viewer whose server dies fails over to the next one without
//! gap or duplicate, and transport switches show in the server's counters.

mod common;

use common::*;
use dsp_primitives::{CapacitySettings, Perbill, Signed, StreamEnd};
use dsp_streaming::{
	net::{
		publish::{PublishConfig, Publisher},
		quic_client,
		serve::{RunningServer, SwitchCounts},
		tls::{ServerVerification, SERVER_NAME},
		watch::ServerAddr,
	},
	protocol::{encode_frame, ErrorCode, Message, Role, ServerAddrs, PROTOCOL_VERSION},
	viewer::{ServerChangeReason, Transport, TransportPolicy},
};
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;

const LEN: usize = 20_000;

fn addrs(s: &RunningServer) -> ServerAddrs {
	ServerAddr { tcp: s.tcp_addr, quic: s.quic_addr }.to_text()
}

/// Waits until `rx` reports a sequence of at least `seq`.
async fn reached(rx: &mut mpsc::UnboundedReceiver<u64>, seq: u64) {
	while rx.recv().await.expect("viewer still playing") < seq {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_server_redirects_and_a_dead_server_is_failed_over_without_gap() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		// A: one direct viewer, r = 0 (no P2P), knows B. B: default capacity.
		let mut a_config = serve_config();
		a_config.capacity = CapacitySettings { max_streams: 1, streaming_rate: Perbill::zero() };
		let a = server(a_config).await;
		let b = server(serve_config()).await;
		a.set_redirect(vec![addrs(&b)]);
		let a_addrs = addrs(&a);
		let b_tcp = tcp(&b);

		// One publisher feeds both the same signed segments.
		let (stream, count) = (5, 40);
		let publisher =
			Publisher::start(PublishConfig::new(stream, vec![tcp(&a), tcp(&b)], origin())).unwrap();
		let publishing = tokio::spawn(async move {
			for seq in 0..count {
				publisher.push(Arc::new(segment(stream, seq, LEN)));
				// Pacing, as a live origin: the stream must still be running while viewer 2 is
				// redirected and server A dies.
				tokio::time::sleep(Duration::from_millis(100)).await;
			}
			let end =
				StreamEnd { genesis_hash: [0; 32], stream, broadcast: 0, next_sequence: count };
			// A is dead by then: only B can acknowledge everything.
			publisher.finish(Signed::sign(end, &origin()), Duration::from_secs(5)).await
		});

		// Viewer 1 knows A then B, and plays from A.
		let mut config1 = viewer_config(stream, None, None, TransportPolicy::Only(Transport::Tcp));
		config1.servers = vec![
			ServerAddr { tcp: a.tcp_addr, quic: a.quic_addr },
			ServerAddr { tcp: b.tcp_addr, quic: b.quic_addr },
		];
		let (seq1_tx, mut seq1) = mpsc::unbounded_channel();
		let viewer1 = tokio::spawn(watch_until_end(config1, move |seq, _| {
			let _ = seq1_tx.send(seq);
			None
		}));
		reached(&mut seq1, 2).await;
		assert_eq!(a.stats().admission.direct, 1);

		// Viewer 2 knows only A: refused, redirected to B, plays there; forced to QUIC there.
		let config2 =
			viewer_config(stream, a.tcp_addr, a.quic_addr, TransportPolicy::Only(Transport::Tcp));
		let (seq2_tx, mut seq2) = mpsc::unbounded_channel();
		let viewer2 = tokio::spawn(watch_until_end(config2, move |seq, _| {
			let _ = seq2_tx.send(seq);
			(seq == 4).then_some(Transport::Quic)
		}));
		reached(&mut seq2, 8).await;
		let (a_stats, b_stats) = (a.stats(), b.stats());
		assert_eq!(a_stats.redirects, 1);
		assert_eq!(a_stats.admission.direct, 1, "A still serves viewer 1 only");
		assert_eq!(a_stats.admission.refused, 1);
		assert!(b_stats.admission.direct >= 1, "viewer 2 plays from B: {b_stats:?}");
		assert_eq!(b_stats.redirects, 0);

		// A dies while viewer 1 plays.
		let playing = std::iter::from_fn(|| seq1.try_recv().ok()).max().unwrap_or(2);
		assert!(playing < count - 10, "viewer 1 still has most of the stream ahead ({playing})");
		a.shutdown().await;

		let got1 = viewer1.await.unwrap();
		let got2 = viewer2.await.unwrap();
		let reports = publishing.await.unwrap();
		// Reports come from the servers that acknowledged everything in time: B, not A.
		assert_eq!(reports.len(), 1, "{reports:?}");
		assert_eq!((reports[0].server, reports[0].complete), (b_tcp, true));

		// Both viewers got every segment exactly once, in order, byte-identical, no gap.
		got1.assert_complete(count, LEN);
		got2.assert_complete(count, LEN);
		assert_eq!(got1.server_changes.len(), 1, "{:?}", got1.server_changes);
		assert_eq!(got1.server_changes[0].to, addrs(&b));
		assert!(matches!(got1.server_changes[0].reason, ServerChangeReason::Failover { .. }));
		assert_eq!(got1.stats.server_changes, 1);
		assert_eq!(got2.server_changes.len(), 1, "{:?}", got2.server_changes);
		assert_eq!(
			(got2.server_changes[0].from.clone(), got2.server_changes[0].to.clone()),
			(a_addrs, addrs(&b))
		);
		assert_eq!(got2.server_changes[0].reason, ServerChangeReason::Redirected);
		assert_eq!(got2.segments.last().unwrap().3, Some(Transport::Quic));

		// B counted viewer 2's switch to QUIC, and served viewer 1 after the failover.
		let b_stats = b.stats();
		assert_eq!(b_stats.switches, SwitchCounts { to_tcp: 0, to_quic: 1 });
		assert!(b_stats.connections >= 3, "{b_stats:?}");
		b.shutdown().await;
	})
	.await
	.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_redirected_too() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let other = ServerAddrs { tcp: Some("127.0.0.1:9".into()), quic: None };
		let mut config = serve_config();
		config.max_connections = 0;
		let full = server(config).await;
		full.set_redirect(vec![other.clone()]);
		let mut sock = tokio::net::TcpStream::connect(full.tcp_addr.unwrap()).await.unwrap();
		let got = read_to_end(&mut sock).await;
		assert_eq!(got.len(), 2, "{got:?}");
		assert_eq!(got[0], Message::Redirect { servers: vec![other.clone()] });
		assert!(matches!(got[1], Message::Error { code: ErrorCode::Full, .. }));
		assert_eq!(full.stats().redirects, 1);
		// Without other streamers: only the error.
		full.set_redirect(Vec::new());
		let mut sock = tokio::net::TcpStream::connect(full.tcp_addr.unwrap()).await.unwrap();
		let got = read_to_end(&mut sock).await;
		assert!(matches!(got[..], [Message::Error { code: ErrorCode::Full, .. }]), "{got:?}");
		assert_eq!(full.stats().redirects, 1);
		// Over QUIC too: the handshake completes and the client's stream gets the same answer.
		full.set_redirect(vec![other.clone()]);
		let server = full.quic_addr.unwrap();
		let (endpoint, cfg) =
			quic_client(server, ServerVerification::InsecureSkip, Duration::from_secs(1)).unwrap();
		let conn = endpoint.connect_with(cfg, server, SERVER_NAME).unwrap().await.unwrap();
		let (mut send, mut recv) = conn.open_bi().await.unwrap();
		let hello =
			Message::Hello { version: PROTOCOL_VERSION, role: Role::Viewer, genesis_hash: [0; 32] };
		send.write_all(&encode_frame(&hello)).await.unwrap();
		let got = read_to_end(&mut recv).await;
		assert_eq!(got.len(), 2, "{got:?}");
		assert_eq!(got[0], Message::Redirect { servers: vec![other] });
		assert!(matches!(got[1], Message::Error { code: ErrorCode::Full, .. }));
		assert_eq!(full.stats().redirects, 2);
		full.shutdown().await;
	})
	.await
	.unwrap();
}
