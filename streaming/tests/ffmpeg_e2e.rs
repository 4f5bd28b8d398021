//! Real media end to end with the `dsp` binary: ffmpeg makes 20 s of testsrc + sine as
//! MPEG-TS → `dsp publish` (over QUIC) → `dsp serve` → two `dsp watch` (one forced to TCP, one
//! to QUIC). Every segment the viewers recorded is byte-identical to what was published, and
//! ffprobe reading each viewer's HLS gateway decodes all 500 video frames. Then the same with
//! ffmpeg's HLS muxer writing a directory (a growing playlist, and a sliding one whose files
//! ffmpeg deletes) followed by `dsp publish --hls-dir`: every segment file reaches the viewer
//! byte for byte.
//!
//! Needs ffmpeg and ffprobe on PATH (`apt-get install -y ffmpeg`). Set `DSP_SKIP_FFMPEG=1` to
//! skip it on a machine without them; otherwise their absence fails the test.

use std::{
	io::{BufRead, BufReader, Read, Write},
	path::Path,
	process::{Child, Command, Stdio},
	time::{Duration, Instant},
};

/// Kills the process (by its id) when dropped, so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
	fn drop(&mut self) {
		let _ = self.0.kill();
		let _ = self.0.wait();
	}
}

const BOUND: Duration = Duration::from_secs(90);
const FRAMES: u32 = 500; // 20 s at 25 fps

fn dsp() -> Command {
	Command::new(env!("CARGO_BIN_EXE_dsp"))
}

fn have(tool: &str) -> bool {
	Command::new(tool).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Whether ffmpeg and ffprobe are there; without them the test fails unless DSP_SKIP_FFMPEG
/// is set, when it is skipped.
fn ffmpeg_present() -> bool {
	if have("ffmpeg") && have("ffprobe") {
		return true;
	}
	if std::env::var("DSP_SKIP_FFMPEG").is_ok() {
		eprintln!("skipped: ffmpeg/ffprobe not installed and DSP_SKIP_FFMPEG is set");
		return false;
	}
	panic!("ffmpeg and ffprobe are required (apt-get install -y ffmpeg), or set DSP_SKIP_FFMPEG=1");
}

/// The public key of the tests' origin seed, as `dsp key` prints it.
fn origin_key() -> String {
	let out = dsp().args(["key", "--seed", "//FfmpegOrigin"]).output().unwrap();
	String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Waits (bounded by [`BOUND`]) for `p` to exit.
fn wait_exit(p: &mut Proc, what: &str) -> std::process::ExitStatus {
	let start = Instant::now();
	loop {
		if let Some(s) = p.0.try_wait().unwrap() {
			return s;
		}
		assert!(start.elapsed() < BOUND, "{what} did not finish");
		std::thread::sleep(Duration::from_millis(100));
	}
}

fn spawn_with_lines(cmd: &mut Command, lines: usize) -> (Proc, Vec<String>) {
	let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn dsp");
	let mut out = BufReader::new(child.stdout.take().unwrap());
	let mut got = Vec::new();
	for _ in 0..lines {
		let mut l = String::new();
		assert!(out.read_line(&mut l).unwrap() > 0, "dsp exited before printing its addresses");
		got.push(l.trim().to_string());
	}
	(Proc(child), got)
}

fn http_get(url: &str) -> Option<String> {
	let rest = url.strip_prefix("http://")?;
	let (host, path) = rest.split_once('/')?;
	let mut s = std::net::TcpStream::connect(host).ok()?;
	s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
	write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").ok()?;
	let mut body = String::new();
	s.read_to_string(&mut body).ok()?;
	Some(body)
}

fn wait_for_end(url: &str) {
	let start = Instant::now();
	while !http_get(url).is_some_and(|b| b.contains("#EXT-X-ENDLIST")) {
		assert!(start.elapsed() < BOUND, "viewer at {url} did not reach the end of the stream");
		std::thread::sleep(Duration::from_millis(100));
	}
}

fn files(dir: &Path) -> Vec<String> {
	let mut v: Vec<String> = std::fs::read_dir(dir)
		.unwrap()
		.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
		.collect();
	v.sort();
	v
}

/// The directory of the one broadcast of `stream` a `dsp watch --record` wrote under `rec`
/// (`<rec>/<stream>/<broadcast>/<sequence>.ts`).
fn watched_broadcast(rec: &Path, stream: &str) -> std::path::PathBuf {
	let dir = rec.join(stream);
	let broadcasts = files(&dir);
	assert_eq!(broadcasts.len(), 1, "one broadcast recorded: {broadcasts:?}");
	dir.join(&broadcasts[0])
}

fn decoded_frames(url: &str) -> u32 {
	let out = Command::new("ffprobe")
		.args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
		.args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url])
		.output()
		.expect("ffprobe runs");
	assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
	let text = String::from_utf8_lossy(&out.stdout);
	text.split_whitespace()
		.next()
		.and_then(|n| n.parse().ok())
		.unwrap_or_else(|| panic!("ffprobe said {text:?}"))
}

#[test]
fn ffmpeg_to_publish_to_serve_to_watch_over_tcp_and_quic() {
	if !ffmpeg_present() {
		return;
	}
	let dir = tempfile::tempdir().unwrap();
	let key = origin_key();

	let (_server, addrs) = spawn_with_lines(
		dsp().args([
			"serve",
			"--tcp",
			"127.0.0.1:0",
			"--quic",
			"127.0.0.1:0",
			"--origin-key",
			&key,
		]),
		3,
	);
	let (tcp, quic) = (addrs[0].clone(), addrs[1].clone());
	let fingerprint = addrs[2].strip_prefix("fingerprint ").unwrap().to_string();
	assert!(tcp.starts_with("tcp://") && quic.starts_with("quic://"), "{addrs:?}");

	let mut viewers = Vec::new();
	for transport in ["tcp", "udp"] {
		let rec = dir.path().join(format!("watch-{transport}"));
		let (p, lines) = spawn_with_lines(
			dsp()
				.args(["watch", "--stream", "1", "--server", &tcp, "--server", &quic])
				.args(["--origin-key", &key, "--transport", transport, "--from", "0"])
				.args(["--quic-fingerprint", &fingerprint, "--playlist-segments", "30"])
				.args(["--status-interval-secs", "0", "--record"])
				.arg(&rec),
			1,
		);
		viewers.push((p, lines[0].clone(), rec));
	}

	let pub_dir = dir.path().join("published");
	let mut ffmpeg = Proc(
		Command::new("ffmpeg")
			.args(["-hide_banner", "-loglevel", "error"])
			.args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
			.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
			.args(["-t", "20", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50"])
			.args(["-keyint_min", "50", "-sc_threshold", "0", "-pix_fmt", "yuv420p"])
			.args(["-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-"])
			.stdout(Stdio::piped())
			.spawn()
			.expect("ffmpeg runs"),
	);
	let ffmpeg_out = ffmpeg.0.stdout.take().unwrap();
	let publish = dsp()
		.args(["publish", "--stream", "1", "--input", "-", "--server", &quic])
		.args(["--origin-seed", "//FfmpegOrigin", "--quic-fingerprint", &fingerprint, "--record"])
		.arg(&pub_dir)
		.stdin(ffmpeg_out)
		.stdout(Stdio::piped())
		.stderr(Stdio::null())
		.spawn()
		.expect("publish runs");
	let mut published = Proc(publish);
	let status = wait_exit(&mut published, "dsp publish");
	assert!(status.success(), "dsp publish failed");
	let segments = files(&pub_dir);
	assert!(segments.len() >= 9, "expected ~10 segments of 2 s, got {segments:?}");

	for (_proc, url, rec) in &viewers {
		wait_for_end(url);
		let rec = &watched_broadcast(rec, "1");
		assert_eq!(files(rec), segments, "viewer recorded other segments");
		for s in &segments {
			let a = std::fs::read(pub_dir.join(s)).unwrap();
			let b = std::fs::read(rec.join(s)).unwrap();
			assert!(a == b, "segment {s} differs");
		}
		assert_eq!(decoded_frames(url), FRAMES, "frames decoded through {url}");
	}
}

const HLS_SECONDS: u32 = 10;

/// One stream through `dsp publish --hls-dir` following ffmpeg's HLS muxer (`extra` are more
/// muxer flags): returns the directories ffmpeg wrote, the publisher recorded and the viewer
/// recorded, and the viewer's playlist URL.
fn hls_dir_case(
	stream: &str,
	tcp: &str,
	key: &str,
	root: &Path,
	extra: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf, String, Proc) {
	let hls = root.join(format!("hls-{stream}"));
	let published = root.join(format!("published-{stream}"));
	let watched = root.join(format!("watched-{stream}"));
	std::fs::create_dir_all(&hls).unwrap();
	let (viewer, lines) = spawn_with_lines(
		dsp()
			.args(["watch", "--stream", stream, "--server", tcp, "--origin-key", key])
			.args(["--transport", "tcp", "--from", "0", "--playlist-segments", "30"])
			.args(["--status-interval-secs", "0", "--record"])
			.arg(&watched),
		1,
	);
	// The publisher starts first and waits for the playlist to appear.
	let mut publish = Proc(
		dsp()
			.args(["publish", "--stream", stream, "--server", tcp, "--hls-poll-ms", "100"])
			.args(["--origin-seed", "//FfmpegOrigin", "--hls-dir"])
			.arg(&hls)
			.arg("--record")
			.arg(&published)
			.stdout(Stdio::null())
			.stderr(Stdio::null())
			.spawn()
			.expect("publish runs"),
	);
	let status = Command::new("ffmpeg")
		.args(["-hide_banner", "-loglevel", "error"])
		.args(["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
		.args(["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
		.args(["-t", &HLS_SECONDS.to_string(), "-c:v", "libx264", "-preset", "ultrafast"])
		.args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-pix_fmt", "yuv420p"])
		.args(["-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "2"])
		.args(extra)
		.arg("-hls_segment_filename")
		.arg(hls.join("seg%d.ts"))
		.arg(hls.join("index.m3u8"))
		.status()
		.expect("ffmpeg runs");
	assert!(status.success(), "ffmpeg failed");
	let status = wait_exit(&mut publish, "dsp publish --hls-dir");
	assert!(status.success(), "dsp publish --hls-dir failed");
	(hls, published, watched, lines[0].clone(), viewer)
}

/// Segment URIs of a playlist, in order.
fn playlist_segments(path: &Path) -> Vec<String> {
	std::fs::read_to_string(path)
		.unwrap()
		.lines()
		.filter(|l| !l.starts_with('#') && !l.trim().is_empty())
		.map(str::to_string)
		.collect()
}

#[test]
fn ffmpeg_hls_directory_to_publish_to_serve_to_watch() {
	if !ffmpeg_present() {
		return;
	}
	let dir = tempfile::tempdir().unwrap();
	let key = origin_key();
	let (_server, addrs) = spawn_with_lines(
		dsp().args(["serve", "--tcp", "127.0.0.1:0", "--quic", "none", "--origin-key", &key]),
		2,
	);
	let tcp = addrs[0].clone();
	let root = dir.path().to_path_buf();
	// A growing playlist, and a sliding one whose old segments ffmpeg deletes, side by side.
	let (t1, t2) = (tcp.clone(), tcp.clone());
	let (k1, k2) = (key.clone(), key.clone());
	let (r1, r2) = (root.clone(), root.clone());
	let growing =
		std::thread::spawn(move || hls_dir_case("2", &t1, &k1, &r1, &["-hls_list_size", "0"]));
	let sliding = std::thread::spawn(move || {
		hls_dir_case("3", &t2, &k2, &r2, &["-hls_list_size", "3", "-hls_flags", "delete_segments"])
	});
	let growing = growing.join().unwrap();
	let sliding = sliding.join().unwrap();

	// Growing: every file ffmpeg listed was published in order, byte for byte.
	let (hls, published, _, _, _) = &growing;
	let listed = playlist_segments(&hls.join("index.m3u8"));
	assert!(listed.len() >= 4, "expected ~{} segments of 2 s, got {listed:?}", HLS_SECONDS / 2);
	for (seq, name) in listed.iter().enumerate() {
		let a = std::fs::read(hls.join(name)).unwrap();
		let b = std::fs::read(published.join(format!("{seq}.ts"))).unwrap();
		assert!(a == b, "{name} was not published byte for byte as segment {seq}");
	}
	assert_eq!(files(published).len(), listed.len());
	// Sliding: ffmpeg deleted old files, yet every segment it made was published.
	let (hls, published, _, _, _) = &sliding;
	let last = playlist_segments(&hls.join("index.m3u8"));
	let left: Vec<String> = files(hls).into_iter().filter(|f| f.ends_with(".ts")).collect();
	assert!(left.len() < files(published).len(), "nothing was deleted: {left:?}");
	let made: usize =
		last.last()
			.unwrap()
			.trim_start_matches("seg")
			.trim_end_matches(".ts")
			.parse::<usize>()
			.unwrap() + 1;
	assert_eq!(files(published).len(), made, "a segment was missed");

	for ((_, published, watched, url, _viewer), stream) in [(&growing, "2"), (&sliding, "3")] {
		wait_for_end(url);
		let watched = &watched_broadcast(watched, stream);
		assert_eq!(files(watched), files(published), "viewer recorded other segments");
		for s in files(published) {
			let a = std::fs::read(published.join(&s)).unwrap();
			let b = std::fs::read(watched.join(&s)).unwrap();
			assert!(a == b, "segment {s} differs at the viewer");
		}
		assert_eq!(decoded_frames(url), HLS_SECONDS * 25, "frames decoded through {url}");
	}
}
