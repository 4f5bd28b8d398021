//! `dsp sim`: runs the P2P simulator ([`dsp_streaming::sim`]) for each rate, on `--jobs`
//! threads, prints every run's figures and optionally plots them.

use anyhow::bail;
use std::path::PathBuf;
use tracing::info;

#[derive(clap::Args)]
pub struct Args {
	/// Viewers watching at once.
	#[arg(long, default_value_t = 2000)]
	viewers: u32,
	/// `max_streams` of the streamer.
	#[arg(long, default_value_t = 2000)]
	max_streams: u32,
	/// Dynamic streaming rate(s) `r` in [0, 1]: repeat the flag or give a list (`0,0.5,1`).
	#[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = vec![0.0, 0.5, 1.0])]
	rate: Vec<f64>,
	/// Stream bitrate, kbit/s.
	#[arg(long, default_value_t = 500)]
	bitrate_kbps: u32,
	/// Segment duration, ms.
	#[arg(long, default_value_t = 2000)]
	segment_ms: u32,
	/// Chunk size, KiB.
	#[arg(long, default_value_t = 16)]
	chunk_kib: u32,
	/// Viewer upload cap as a multiple of the bitrate.
	#[arg(long, default_value_t = 1.5)]
	upload_cap_x: f64,
	/// Share of the viewers leaving (replaced by new ones) per minute, e.g. 0.1 for 10 %.
	#[arg(long, default_value_t = 0.1)]
	churn_per_min: f64,
	/// Simulated seconds, ramp included.
	#[arg(long, default_value_t = 60)]
	duration_secs: u64,
	/// The viewers join evenly over this many seconds; byte figures are measured after it.
	#[arg(long, default_value_t = 20)]
	ramp_secs: u64,
	/// One-way latency of every link, ms.
	#[arg(long, default_value_t = 50)]
	latency_ms: u64,
	/// Packet loss probability (each lost packet delays its message by a retransmission).
	#[arg(long, default_value_t = 0.0)]
	loss: f64,
	/// Seed of every random choice (same seed, same figures).
	#[arg(long, default_value_t = 1)]
	seed: u64,
	/// Viewers' physical uplink, kbit/s.
	#[arg(long, default_value_t = 5000)]
	viewer_up_kbps: u64,
	/// Viewers' downlink, kbit/s.
	#[arg(long, default_value_t = 20000)]
	viewer_down_kbps: u64,
	/// The node's uplink, Mbit/s.
	#[arg(long, default_value_t = 1000)]
	node_up_mbps: u64,
	/// A joining viewer starts this many segments behind the newest.
	#[arg(long, default_value_t = 3)]
	live_back: u64,
	/// Share of P2P viewers sending corrupt chunks (exercises verification and bans).
	#[arg(long, default_value_t = 0.0)]
	bad_peers: f64,
	/// Write an SVG plot of node egress and direct sessions against the number of viewers
	/// (one line per rate) to this file.
	#[arg(long)]
	plot: Option<PathBuf>,
	/// Viewer counts for the plot (runs at `--viewers` are reused).
	#[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = vec![500, 1000, 1500, 2000, 2500, 3000])]
	plot_viewers: Vec<u32>,
	/// Runs at once (each is single-threaded).
	#[arg(long, default_value_t = 2)]
	jobs: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
	use dsp_streaming::sim::{self, report::RunReport, SimConfig};
	if a.rate.iter().any(|r| !(0.0..=1.0).contains(r)) {
		bail!("--rate must be in [0, 1]");
	}
	if !(0.0..1.0).contains(&a.loss) || !(0.0..=1.0).contains(&a.bad_peers) {
		bail!("--loss must be in [0, 1) and --bad-peers in [0, 1]");
	}
	if a.viewers == 0 || a.segment_ms == 0 || a.bitrate_kbps == 0 || a.duration_secs <= a.ramp_secs
	{
		bail!("need viewers, segment and bitrate > 0 and --duration-secs > --ramp-secs");
	}
	let base = SimConfig {
		viewers: a.viewers,
		max_streams: a.max_streams,
		bitrate_kbps: a.bitrate_kbps,
		segment_ms: a.segment_ms,
		chunk_kib: a.chunk_kib,
		upload_cap_x: a.upload_cap_x,
		churn_per_min: a.churn_per_min,
		duration_secs: a.duration_secs,
		ramp_secs: a.ramp_secs,
		latency_ms: a.latency_ms,
		loss: a.loss,
		seed: a.seed,
		viewer_up_kbps: a.viewer_up_kbps,
		viewer_down_kbps: a.viewer_down_kbps,
		node_up_mbps: a.node_up_mbps,
		live_back: a.live_back,
		bad_peers: a.bad_peers,
		..Default::default()
	};
	// The main runs first (printed), then the extra viewer counts the plot needs.
	let mut jobs: Vec<SimConfig> =
		a.rate.iter().map(|&rate| SimConfig { rate, ..base.clone() }).collect();
	if a.plot.is_some() {
		for &rate in &a.rate {
			for &viewers in a.plot_viewers.iter().filter(|&&v| v != a.viewers && v > 0) {
				jobs.push(SimConfig { rate, viewers, ..base.clone() });
			}
		}
	}
	let main_runs = a.rate.len();
	let wall = std::time::Instant::now();
	let next = std::sync::atomic::AtomicUsize::new(0);
	let results: std::sync::Mutex<Vec<Option<RunReport>>> =
		std::sync::Mutex::new(vec![None; jobs.len()]);
	std::thread::scope(|s| {
		for _ in 0..a.jobs.max(1) {
			s.spawn(|| loop {
				let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
				let Some(cfg) = jobs.get(i) else { break };
				let report = sim::run(cfg.clone());
				if i < main_runs {
					println!("{report}");
				} else {
					info!(
						rate = cfg.rate,
						viewers = cfg.viewers,
						node_mbps = report.node_mbps(),
						"plot point"
					);
				}
				results.lock().expect("no panic while held")[i] = Some(report);
			});
		}
	});
	let results: Vec<RunReport> =
		results.into_inner().expect("no panic while held").into_iter().flatten().collect();
	if let Some(path) = &a.plot {
		sim::plot::draw(path, &results)?;
		println!("plot written to {}", path.display());
	}
	println!("{} runs in {:.1} s wall", results.len(), wall.elapsed().as_secs_f64());
	Ok(())
}
