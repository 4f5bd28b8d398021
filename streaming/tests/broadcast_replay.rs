//! Broadcast identity on a running server (issue 12, attack 1): once a broadcast's window is
//! freed, its origin-signed segments and `End` must not enter a later broadcast of the stream.

mod common;

use common::*;
use dsp_primitives::{Signed, StreamEnd};
use dsp_streaming::{
	net::{
		publish::{PublishConfig, Publisher},
		read_message,
	},
	protocol::{
		encode_frame, publish_proof, ErrorCode, FrameDecoder, Message, Role, PROTOCOL_VERSION,
	},
	segment::Segment,
	viewer::{Transport, TransportPolicy},
};
use std::{sync::Arc, time::Duration};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const LEN: usize = 20_000;
const STREAM: u64 = 40;
/// The broadcasts: the old one and the new one (publisher start times, ms).
const OLD: u64 = 1_000;
const NEW: u64 = 2_000;

/// Segment `seq` of broadcast `b`, with media that differs per broadcast.
fn segment_of(b: u64, seq: u64) -> Segment {
	Segment::build(&origin(), [0; 32], STREAM, b, seq, 2000, media(b + seq, LEN), 16 * 1024)
}

fn end_of(b: u64, next_sequence: u64) -> Signed<StreamEnd> {
	Signed::sign(
		StreamEnd { genesis_hash: [0; 32], stream: STREAM, broadcast: b, next_sequence },
		&origin(),
	)
}

/// The attack as it worked, except that since protocol version 4 only a holder of the origin
/// key may say `Publish` (a stale publisher instance of the origin, or a leaked key): it sends
/// the old broadcast's segment 3 and its `End` into the new broadcast. The viewer must get the new broadcast's
/// segments 0..4, byte for byte, and the new end; the attacker gets a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_segment_and_end_are_not_replayed_into_a_new_broadcast() {
	tokio::time::timeout(TEST_TIMEOUT, async {
		init_logs();
		let mut config = serve_config();
		config.streams.ended_linger = Duration::from_millis(100);
		let server = server(config).await;
		// The old broadcast: 0..4, ended, then freed.
		let old =
			Publisher::start(PublishConfig::new(STREAM, vec![tcp(&server)], origin())).unwrap();
		for seq in 0..4 {
			old.push(Arc::new(segment_of(OLD, seq)));
		}
		let reports = old.finish(end_of(OLD, 4), Duration::from_secs(30)).await;
		assert!(reports.iter().all(|r| r.complete), "{reports:?}");
		wait_until("the old broadcast freed", || server.stats().streams_freed == 1).await;
		// A viewer waits for the new broadcast, recording what it plays.
		let record = tempfile::tempdir().unwrap();
		let mut viewer_config =
			viewer_config(STREAM, server.tcp_addr, None, TransportPolicy::Only(Transport::Tcp));
		viewer_config.record_dir = Some(record.path().to_path_buf());
		let viewer = tokio::spawn(watch_until_end(viewer_config, |_, _| None));
		let new =
			Publisher::start(PublishConfig::new(STREAM, vec![tcp(&server)], origin())).unwrap();
		for seq in 0..2 {
			new.push(Arc::new(segment_of(NEW, seq)));
		}
		wait_until("two new segments stored", || server.stats().segments_stored == 6).await;
		// The replay.
		let mut s = TcpStream::connect(server.tcp_addr.unwrap()).await.unwrap();
		let hello = Message::Hello {
			version: PROTOCOL_VERSION,
			role: Role::Publisher,
			genesis_hash: [0; 32],
		};
		s.write_all(&encode_frame(&hello)).await.unwrap();
		let mut dec = FrameDecoder::new(1 << 20);
		let challenge = match read_message(&mut s, &mut dec).await.unwrap() {
			Some(Message::Welcome { challenge, .. }) => challenge,
			other => panic!("expected Welcome, got {other:?}"),
		};
		let proof = publish_proof(&origin(), [0; 32], challenge, STREAM);
		s.write_all(&encode_frame(&Message::Publish { stream: STREAM, proof })).await.unwrap();
		for f in &segment_of(OLD, 3).frames {
			s.write_all(f).await.unwrap();
		}
		s.write_all(&encode_frame(&Message::End(end_of(OLD, 4)))).await.unwrap();
		s.shutdown().await.unwrap();
		let answers = read_to_end(&mut s).await;
		assert!(
			matches!(
				answers.last(),
				Some(Message::Error { code: ErrorCode::UnexpectedMessage, reason })
					if reason.contains("older broadcast")
			),
			"{answers:?}"
		);
		for seq in 2..4 {
			new.push(Arc::new(segment_of(NEW, seq)));
		}
		let reports = new.finish(end_of(NEW, 4), Duration::from_secs(30)).await;
		assert!(reports.iter().all(|r| r.complete && r.acked == 4), "{reports:?}");
		let got = viewer.await.unwrap();
		assert_eq!(got.sequences(), vec![0, 1, 2, 3], "the new broadcast, whole");
		for (seq, _, data, _) in &got.segments {
			assert_eq!(data[..], media(NEW + seq, LEN)[..], "segment {seq} is the new one");
		}
		assert!(got.ended);
		// The recording: the new broadcast's segments in its own directory, nothing else.
		let broadcast_dir = record.path().join(STREAM.to_string()).join(NEW.to_string());
		for seq in 0..4 {
			let file = std::fs::read(broadcast_dir.join(format!("{seq}.ts"))).unwrap();
			assert_eq!(file[..], media(NEW + seq, LEN)[..], "recorded segment {seq}");
		}
		assert_eq!(std::fs::read_dir(record.path()).unwrap().count(), 1);
		assert_eq!(std::fs::read_dir(record.path().join(STREAM.to_string())).unwrap().count(), 1);
		assert_eq!(std::fs::read_dir(&broadcast_dir).unwrap().count(), 4);
		server.shutdown().await;
	})
	.await
	.unwrap();
}
