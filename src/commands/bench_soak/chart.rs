//! The soak chart (SVG, plotters): the process RSS over event-time days
//! above, every structure's entry count below (log scale: they span from
//! hundreds of compacted days to millions of evaluation records), a dashed
//! line where the longest retention window has filled.

use super::{SoakReport, STRUCTURES};
use crate::connectors::sinks::report::charts::{
    self, frame, legend, short, Area, DrawResult, COLORS, GREY,
};
use plotters::prelude::*;

/// The chart of `r` as an SVG document.
pub fn svg(r: &SoakReport) -> anyhow::Result<String> {
    charts::svg((1000, 800), |root| draw(r, root))
}

fn draw(r: &SoakReport, root: &Area) -> DrawResult {
    let days = f64::from(r.options.days);
    let fill = f64::from(r.fill_days);
    let root = root.titled(
        &format!(
            "fraudstream bench --soak: {} days at {} transactions/day, churning cards and merchants",
            r.options.days, r.options.tx_per_day
        ),
        ("sans-serif", 18),
    )?;
    // Legends in a column of their own, so no line hides under one.
    let (plots, side) = root.split_horizontally(820);
    let (top, bottom) = plots.split_vertically(360);
    let filled = format!("windows filled (day {})", r.fill_days);

    let rss_max = r.samples.iter().map(|s| s.rss_mib).fold(1.0, f64::max) * 1.15;
    let mut rss =
        frame(&top, "process RSS (VmRSS)", 64).build_cartesian_2d(0.0..days, 0.0..rss_max)?;
    rss.configure_mesh()
        .x_desc("event time (days)")
        .y_desc("RSS (MiB)")
        .x_labels(13)
        .y_labels(8)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    rss.draw_series(LineSeries::new(
        r.samples.iter().map(|s| (f64::from(s.day), s.rss_mib)),
        COLORS[0].stroke_width(2),
    ))?;
    rss.draw_series(DashedLineSeries::new(
        [(fill, 0.0), (fill, rss_max)],
        6,
        4,
        GREY.stroke_width(1),
    ))?;
    legend(
        &side,
        60,
        &[
            ("RSS (MiB)", COLORS[0].stroke_width(2)),
            (&filled, GREY.stroke_width(1)),
        ],
    )?;

    let count_max = r
        .samples
        .iter()
        .flat_map(|s| STRUCTURES.iter().map(move |(_, c)| c(s) as f64))
        .fold(10.0, f64::max)
        * 4.0;
    let mut counts = frame(&bottom, "entries held (log scale)", 64)
        .build_cartesian_2d(0.0..days, (1.0..count_max).log_scale())?;
    counts
        .configure_mesh()
        .x_desc("event time (days)")
        .y_desc("entries")
        .x_labels(13)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    let mut entries = Vec::new();
    for (i, (name, count)) in STRUCTURES.iter().enumerate() {
        // Evaluation records and label routes are often equal: the records
        // are drawn wide and pale under the routes, so both stay visible.
        let style = if *name == "eval_records" {
            COLORS[i].mix(0.5).stroke_width(7)
        } else {
            COLORS[i].stroke_width(2)
        };
        counts.draw_series(LineSeries::new(
            r.samples
                .iter()
                .map(|s| (f64::from(s.day), (count(s) as f64).max(1.0))),
            style,
        ))?;
        entries.push((*name, style));
    }
    counts.draw_series(DashedLineSeries::new(
        [(fill, 1.0), (fill, count_max)],
        6,
        4,
        GREY.stroke_width(1),
    ))?;
    entries.push((filled.as_str(), GREY.stroke_width(1)));
    legend(&side, 420, &entries)
}
