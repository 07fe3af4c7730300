//! The report's charts, drawn as SVG documents with plotters (no font or
//! bitmap dependency: text is left to the browser): ROC and
//! precision-recall curves of every model, the daily metrics with drift
//! events, model switches and the cold start, the score distribution of each
//! class. Also the drawing kit the other charts share ([`svg`], [`legend`],
//! [`COLORS`], [`short`]): `bench.svg` and the soak chart.

use super::{ModelCurves, RunReport};
use fraudstream_engine::model::portfolio::DriftKind;
use fraudstream_engine::time::DAY_MS;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Series colours (matplotlib's first ten, the ones analysts know).
pub const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Reference lines (chance, thresholds).
pub const GREY: RGBColor = RGBColor(120, 120, 120);

/// The drawing area of a chart, and what drawing on it can fail with.
pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// What drawing a chart can fail with.
pub type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A count for people: 950, 12k, 2.4M.
pub fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{}M", trim(v / 1e6)),
        a if a >= 1e3 => format!("{}k", trim(v / 1e3)),
        _ => trim(v),
    }
}

/// A number with at most two decimals and no trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// An SVG document of `size` drawn by `draw` on a white area.
pub fn svg(size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("drawing a chart: {e}"))?;
        draw(&root).map_err(|e| anyhow::anyhow!("drawing a chart: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing a chart: {e}"))?;
    }
    Ok(out)
}

/// A legend of `entries` (name, line style) down `area` from `y`: in a
/// column of its own, so no line hides under it.
pub fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    y: i32,
    entries: &[(&str, ShapeStyle)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for (i, (name, style)) in entries.iter().enumerate() {
        let y = y + 22 * i as i32;
        area.draw(&PathElement::new(vec![(4, y), (28, y)], *style))?;
        area.draw(&Text::new(
            name.to_string(),
            (34, y - 6),
            ("sans-serif", 12).into_font(),
        ))?;
    }
    Ok(())
}

/// A chart's frame on `area`: its caption, a margin, room for the axis
/// labels (`y_labels` pixels wide for the values).
pub fn frame<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    y_labels: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(area);
    b.caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(y_labels);
    b
}

/// Size of the report's charts.
const SIZE: (u32, u32) = (640, 420);
/// Width of the plot, the legend's column taking the rest.
const PLOT_WIDTH: u32 = 440;

/// Every model's ROC curve, with chance as a dashed diagonal.
pub fn roc(models: &[ModelCurves]) -> anyhow::Result<String> {
    curves_chart(
        models,
        "ROC curve",
        ("false positive rate", "true positive rate"),
        |m| {
            (
                &m.curves.roc,
                m.curves.roc_auc.map(|a| format!("AUC {a:.3}")),
            )
        },
        true,
    )
}

/// Every model's precision-recall curve.
pub fn precision_recall(models: &[ModelCurves]) -> anyhow::Result<String> {
    curves_chart(
        models,
        "precision-recall curve",
        ("recall", "precision"),
        |m| {
            (
                &m.curves.pr,
                m.curves.average_precision.map(|a| format!("AP {a:.3}")),
            )
        },
        false,
    )
}

type PointsOf = fn(&ModelCurves) -> (&Vec<[f64; 2]>, Option<String>);

fn curves_chart(
    models: &[ModelCurves],
    title: &str,
    axes: (&str, &str),
    points_of: PointsOf,
    diagonal: bool,
) -> anyhow::Result<String> {
    svg(SIZE, |root| {
        let (plot, side) = root.split_horizontally(PLOT_WIDTH);
        let mut chart = frame(&plot, title, 48).build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()?;
        if diagonal {
            chart.draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                6,
                4,
                GREY.stroke_width(1),
            ))?;
        }
        let mut names = Vec::new();
        for (i, m) in models.iter().enumerate() {
            let (points, figure) = points_of(m);
            let style = COLORS[i % COLORS.len()].stroke_width(2);
            chart.draw_series(LineSeries::new(points.iter().map(|p| (p[0], p[1])), style))?;
            names.push((
                format!("{} ({})", m.name, figure.unwrap_or_else(|| "n/a".into())),
                style,
            ));
        }
        if diagonal {
            names.push(("chance".into(), GREY.stroke_width(1)));
        }
        let entries: Vec<(&str, ShapeStyle)> =
            names.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        legend(&side, 60, &entries)
    })
}

/// The day (fractional, as the daily metrics count them) of event time `ts`.
fn day_of(ts: i64, origin_ms: i64) -> f64 {
    (ts - origin_ms) as f64 / DAY_MS as f64
}

/// A day index as a date (`MM-DD`).
fn date(day: f64, origin_ms: i64) -> String {
    let ms = origin_ms.saturating_add((day * DAY_MS as f64) as i64);
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| format!("{day:.0}"), |d| d.format("%m-%d").to_string())
}

/// ROC AUC, average precision and card precision@k day by day, with the
/// cold start shaded, drift events as ticks along the bottom (one row per
/// detector) and switches of the served model as dashed lines.
pub fn daily(r: &RunReport) -> anyhow::Result<String> {
    let Some((first, last)) = r.daily.first().zip(r.daily.last()) else {
        anyhow::bail!("no daily metrics to draw");
    };
    let (x0, x1) = (first.day as f64, last.day as f64 + 1.0);
    let origin = r.evaluation_origin_ms;
    svg((960, 440), |root| {
        let (plot, side) = root.split_horizontally(740);
        let mut chart = frame(&plot, "metrics by day of the transactions", 48)
            .build_cartesian_2d(x0..x1, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("day (UTC)")
            .y_desc("metric")
            .x_labels(12)
            .y_labels(6)
            .x_label_formatter(&|v| date(*v, origin))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()?;
        let mut entries: Vec<(String, ShapeStyle)> = Vec::new();
        if let Some(end) = r.cold_start_until_day {
            let end = (end as f64).clamp(x0, x1);
            let shade = RGBColor(230, 230, 230).filled();
            chart.draw_series([Rectangle::new([(x0, 0.0), (end, 1.0)], shade)])?;
            entries.push(("cold start (no label learnt)".into(), shade.stroke_width(8)));
        }
        type Metric = fn(&fraudstream_engine::eval::DayMetrics) -> Option<f64>;
        let metrics: [(&str, Metric); 3] = [
            ("ROC AUC", |d| d.roc_auc),
            ("average precision", |d| d.average_precision),
            ("card precision@k", |d| d.card_precision_at_k),
        ];
        for (i, (name, value)) in metrics.iter().enumerate() {
            let color = COLORS[i];
            let points: Vec<(f64, f64)> = r
                .daily
                .iter()
                .filter_map(|d| value(d).map(|v| (d.day as f64 + 0.5, v)))
                .collect();
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
            entries.push(((*name).into(), color.stroke_width(2)));
        }
        let kinds = [
            (DriftKind::Score, "drift: scores"),
            (DriftKind::Error, "drift: error rate"),
            (DriftKind::ForestTree, "drift: forest tree replaced"),
        ];
        for (row, (kind, name)) in kinds.iter().enumerate() {
            let color = COLORS[3 + row];
            let (lo, hi) = (0.01 + 0.03 * row as f64, 0.03 + 0.03 * row as f64);
            let ticks: Vec<f64> = r
                .drift_events
                .iter()
                .filter(|e| e.kind == *kind)
                .map(|e| day_of(e.ts, origin))
                .filter(|d| (x0..=x1).contains(d))
                .collect();
            if ticks.is_empty() {
                continue;
            }
            chart.draw_series(
                ticks
                    .iter()
                    .map(|&d| PathElement::new(vec![(d, lo), (d, hi)], color.stroke_width(1))),
            )?;
            entries.push((format!("{name} ({})", ticks.len()), color.stroke_width(1)));
        }
        let switches: Vec<f64> = r
            .model_switches
            .iter()
            .map(|s| day_of(s.ts, origin))
            .filter(|d| (x0..=x1).contains(d))
            .collect();
        for &d in &switches {
            chart.draw_series(DashedLineSeries::new(
                [(d, 0.0), (d, 1.0)],
                5,
                4,
                GREY.stroke_width(1),
            ))?;
        }
        if !switches.is_empty() {
            entries.push((
                format!("served model switched ({})", switches.len()),
                GREY.stroke_width(1),
            ));
        }
        let entries: Vec<(&str, ShapeStyle)> =
            entries.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        legend(&side, 60, &entries)
    })
}

/// The share of each class's transactions per score bin (log scale: frauds
/// are rare and most scores are small), for the served score.
pub fn distribution(m: &ModelCurves) -> anyhow::Result<String> {
    let d = &m.curves.distribution;
    let bins = d.fraud.len().max(1);
    let shares = |counts: &[u64]| -> Vec<(f64, f64)> {
        let total: u64 = counts.iter().sum();
        counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| ((i as f64 + 0.5) / bins as f64, c as f64 / total as f64))
            .collect()
    };
    let (fraud, genuine) = (shares(&d.fraud), shares(&d.genuine));
    let floor = fraud
        .iter()
        .chain(&genuine)
        .map(|p| p.1)
        .fold(1.0, f64::min)
        .max(1e-9)
        / 2.0;
    svg(SIZE, |root| {
        let (plot, side) = root.split_horizontally(PLOT_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                format!("score distribution ({})", m.name),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, (floor..1.0).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("score")
            .y_desc("share of the class (log)")
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        let mut entries = Vec::new();
        for (i, (name, points)) in [
            (
                format!("frauds ({})", short(d.fraud.iter().sum::<u64>() as f64)),
                &fraud,
            ),
            (
                format!("genuine ({})", short(d.genuine.iter().sum::<u64>() as f64)),
                &genuine,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let color = COLORS[[3, 0][i]];
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
            entries.push((name, color.stroke_width(2)));
        }
        let entries: Vec<(&str, ShapeStyle)> =
            entries.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        legend(&side, 60, &entries)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers_read_well() {
        assert_eq!(short(950.0), "950");
        assert_eq!(short(12_000.0), "12k");
        assert_eq!(short(2_400_000.0), "2.4M");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(0.0), "0");
    }
}
