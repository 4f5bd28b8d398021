//! The specification's table as a picture: node egress and direct sessions against the number
//! of viewers, one line per `r`, drawn as SVG with `plotters`.

use super::report::RunReport;
use plotters::prelude::*;
use std::path::Path;

const COLOURS: [RGBColor; 6] = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];

/// Draws `runs` (any number of rates, each at several viewer counts) into an SVG file at `path`.
pub fn draw(path: &Path, runs: &[RunReport]) -> anyhow::Result<()> {
	let mut rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
	rates.sort_by(|a, b| a.total_cmp(b));
	rates.dedup();
	let x_max = runs.iter().map(|r| r.viewers).max().unwrap_or(1) as f64 * 1.05;
	let egress_max = runs.iter().map(|r| r.node_mbps()).fold(1.0, f64::max) * 1.1;
	let direct_max = runs.iter().map(|r| r.direct_max).max().unwrap_or(1) as f64 * 1.1 + 1.0;
	let max_streams = runs.first().map_or(0, |r| r.max_streams);
	let root = SVGBackend::new(path, (960, 800)).into_drawing_area();
	root.fill(&WHITE)?;
	let (top, bottom) = root.split_vertically(400);
	let panels: [(&DrawingArea<SVGBackend, _>, String, String, f64); 2] = [
		(
			&top,
			format!("Node egress vs viewers (max_streams = {max_streams})"),
			"node egress, Mbit/s".into(),
			egress_max,
		),
		(&bottom, "Direct sessions vs viewers".into(), "direct sessions".into(), direct_max),
	];
	for (panel, (area, caption, y_desc, y_max)) in panels.into_iter().enumerate() {
		let mut chart = ChartBuilder::on(area)
			.caption(caption, ("sans-serif", 20))
			.margin(12)
			.x_label_area_size(40)
			.y_label_area_size(70)
			.build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
		chart.configure_mesh().x_desc("viewers").y_desc(y_desc).draw()?;
		for (i, &rate) in rates.iter().enumerate() {
			let colour = COLOURS[i % COLOURS.len()];
			let mut points: Vec<(f64, f64)> = runs
				.iter()
				.filter(|r| r.rate == rate)
				.map(|r| {
					(r.viewers as f64, if panel == 0 { r.node_mbps() } else { r.direct_max as f64 })
				})
				.collect();
			points.sort_by(|a, b| a.0.total_cmp(&b.0));
			chart
				.draw_series(LineSeries::new(points, colour.stroke_width(2)))?
				.label(format!("r = {rate:.2}"))
				.legend(move |(x, y)| {
					PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
				});
		}
		chart
			.configure_series_labels()
			.position(SeriesLabelPosition::UpperLeft)
			.background_style(WHITE.mix(0.8))
			.border_style(BLACK)
			.draw()?;
	}
	root.present()?;
	Ok(())
}
