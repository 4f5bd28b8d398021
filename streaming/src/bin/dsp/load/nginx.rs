//! `dsp load --compare-nginx`: nginx serving segments of the same size to the same number of
//! HLS-style HTTP clients, measured the same way as the DSP run.

use super::{measure, report, Args};
use anyhow::{bail, Context};
use dsp_streaming::net::load::{self, LoadCounters};
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// nginx serving segments of the same size to the same number of HLS-style clients.
pub async fn run(a: &Args) -> anyhow::Result<f64> {
	use std::process::{Command as Proc, Stdio};
	let dir = std::env::temp_dir().join(format!("dsp-nginx-{}", std::process::id()));
	let www = dir.join("www/seg");
	std::fs::create_dir_all(&www)?;
	std::fs::create_dir_all(dir.join("tmp"))?;
	let len = (a.bitrate_kbps as u64 * a.segment_ms as u64 / 8) as usize;
	let count = 10;
	for i in 0..count {
		let data: Vec<u8> = (0..len).map(|j| (j as u64 * 31 + i as u64) as u8).collect();
		std::fs::write(www.join(format!("{i}.ts")), data)?;
	}
	// nginx workers may run as another user: make the tree readable.
	for p in [dir.clone(), dir.join("www"), www.clone()] {
		use std::os::unix::fs::PermissionsExt;
		std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
	}
	let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
	let d = dir.display();
	let conf = format!(
		"worker_processes auto;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
		 events {{ worker_connections {}; }}\n\
		 http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000; \
		 keepalive_timeout 120s; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; \
		 fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp; \
		 server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
		a.viewers + 64
	);
	let conf_path = dir.join("nginx.conf");
	std::fs::write(&conf_path, conf)?;
	let mut child = Proc::new("nginx")
		.arg("-p")
		.arg(&dir)
		.arg("-c")
		.arg(&conf_path)
		.args(["-g", "daemon off;"])
		.stderr(Stdio::null())
		.spawn()
		.context("starting nginx")?;
	let master = child.id();
	let addr: SocketAddr = ([127, 0, 0, 1], port).into();
	let started = std::time::Instant::now();
	while tokio::net::TcpStream::connect(addr).await.is_err() {
		if started.elapsed() > Duration::from_secs(10) {
			let _ = child.kill();
			bail!("nginx did not start (see {d}/error.log)");
		}
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
	let counters = Arc::new(LoadCounters::default());
	let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
	let mut tasks = Vec::new();
	let pause = Duration::from_secs_f64(1.0 / a.connect_rate.max(1) as f64);
	for i in 0..a.viewers {
		let phase = Duration::from_millis(a.segment_ms as u64 * i as u64 / a.viewers.max(1) as u64);
		tasks.push(tokio::spawn(load::http_viewer(
			addr,
			count,
			a.segment_ms,
			phase,
			counters.clone(),
			stop_rx.clone(),
		)));
		tokio::time::sleep(pause).await;
	}
	tokio::time::sleep(Duration::from_millis(a.segment_ms as u64 * 2)).await;
	let m = measure(&counters, Duration::from_secs(a.duration_secs), || {
		load::sample_process_tree(master)
	})
	.await;
	let _ = stop_tx.send(true);
	for t in tasks {
		let _ = t.await;
	}
	let _ = Proc::new("nginx")
		.arg("-p")
		.arg(&dir)
		.arg("-c")
		.arg(&conf_path)
		.args(["-s", "stop"])
		.stderr(Stdio::null())
		.status();
	let _ = child.wait();
	let _ = std::fs::remove_dir_all(&dir);
	Ok(report("nginx", a, &m))
}
