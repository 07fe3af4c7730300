//! The replay report an analyst reads: the curves, threshold table and
//! alert features in the JSON report agree with its metrics, the HTML page
//! is written beside it with every chart, and `fraudstream report` draws
//! the same page from the JSON.

use crate::browser::Page;
use crate::util::{fraudstream, run_into, text};
use std::time::Duration;

/// The area under a curve's points (trapezoids).
fn trapezoid(points: &[[f64; 2]]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1][0] - w[0][0]) * (w[1][1] + w[0][1]) / 2.0)
        .sum()
}

const SHORT_RUN: [&str; 2] = ["source.days=20", "source.cards=3000"];

#[test]
fn curve_points_agree_with_the_metrics_and_the_page_has_every_chart() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_into(None, dir.path(), &SHORT_RUN);
    let served = &r.curves[0];
    assert_eq!(served.name, "served");
    let auc = r.metrics.overall.roc_auc.expect("frauds and genuine");
    let from_curve = trapezoid(&served.curves.roc);
    assert!(
        (from_curve - auc).abs() < 1e-3,
        "area under the reported ROC points {from_curve} vs ROC AUC {auc}"
    );
    assert_eq!(served.curves.roc_auc, Some(auc));
    assert_eq!(
        served.curves.average_precision,
        r.metrics.overall.average_precision
    );
    assert!(served.curves.roc.len() > 20 && served.curves.pr.len() > 20);
    assert!(
        served.curves.roc.len() < 2000,
        "{} ROC points",
        served.curves.roc.len()
    );
    // The row at the topology's threshold is the run's own alerting.
    let current = served
        .curves
        .thresholds
        .iter()
        .find(|row| row.rule.contains("topology"))
        .expect("the threshold in force is listed");
    assert_eq!(current.alerts, r.metrics.overall.alerts);
    assert_eq!(current.precision, r.metrics.overall.precision_at_threshold);
    assert_eq!(current.recall, r.metrics.overall.recall_at_threshold);
    for row in &served.curves.thresholds {
        let (caught, reviewed) = (
            row.fraud_amount_caught.unwrap(),
            row.amount_reviewed.unwrap(),
        );
        assert!(caught <= reviewed + 1e-6 && caught <= served.curves.fraud_amount.unwrap() + 1e-6);
    }
    assert_eq!(
        served.curves.frauds,
        served.curves.distribution.fraud.iter().sum::<u64>()
    );
    assert!(!r.alert_features.is_empty(), "alerts were explained");
    assert!(r.alert_features.iter().map(|f| f.alerts).sum::<u64>() <= 3 * r.engine.alerts);
    assert!(r.cold_start_until_day.is_some());

    let page = std::fs::read_to_string(dir.path().join("report.html")).expect("page written");
    for chart in ["roc", "pr", "daily", "distribution"] {
        let at = page
            .find(&format!("data-chart=\"{chart}\""))
            .unwrap_or_else(|| panic!("chart {chart} missing"));
        assert!(page[at..].contains("<svg"), "{chart} has no SVG");
    }
    for table in ["thresholds", "alert-features", "models"] {
        assert!(
            page.contains(&format!("data-table=\"{table}\"")),
            "table {table} missing"
        );
    }
    assert!(
        page.match_indices("http://")
            .all(|(i, _)| page[i..].starts_with("http://www.w3.org/")),
        "the page fetches nothing: the only URLs are SVG namespaces"
    );
    assert!(!page.contains("https://") && !page.contains("<script"));

    // The same page from the JSON alone.
    let again = dir.path().join("again.html");
    let out = fraudstream(
        &[
            "report",
            dir.path().join("report.json").to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("again.html"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);
}

#[test]
fn compared_models_share_the_curve_charts() {
    let dir = tempfile::tempdir().unwrap();
    let mut set: Vec<&str> = SHORT_RUN.to_vec();
    set.extend(["model.compare=true", "model.type=\"forest\""]);
    let r = run_into(None, dir.path(), &set);
    let names: Vec<&str> = r.curves.iter().map(|c| c.name.as_str()).collect();
    assert!(names.len() >= 3 && names.contains(&"forest"), "{names:?}");
    for c in &r.curves {
        let member = r.models.iter().find(|m| m.name == c.name);
        if let Some(m) = member {
            assert_eq!(c.curves.roc_auc, m.overall.roc_auc, "{}", c.name);
        }
    }
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for n in &names {
        assert!(
            page.contains(&format!("{n} (AUC")),
            "{n} not in the ROC legend"
        );
    }
}

#[test]
fn the_page_can_be_turned_off_and_a_bad_setting_is_named() {
    let dir = tempfile::tempdir().unwrap();
    run_into(
        None,
        dir.path(),
        &["source.days=3", "sinks.report.html=false"],
    );
    assert!(!dir.path().join("report.html").exists());
    let out = fraudstream(&["run", "--set", "sinks.report.html=3"], dir.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("sinks.report.html") && stderr.contains("false for none"),
        "{stderr}"
    );
}

#[test]
fn a_report_that_is_not_json_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.json"), "not json").unwrap();
    let out = fraudstream(&["report", "r.json"], dir.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("r.json"), "{stderr}");
}

/// The page as a browser renders it: every chart drawn with its data
/// points, the tables filled, nothing fetched, no console error; a
/// screenshot under `target/screenshots/` for review.
#[test]
fn the_report_renders_in_chromium_with_every_chart_and_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut set: Vec<&str> = SHORT_RUN.to_vec();
    set.push("model.compare=true");
    run_into(None, dir.path(), &set);
    let path = dir.path().join("report.html");
    let Some(page) = Page::open(&format!("file://{}", path.display())) else {
        return;
    };
    assert!(page.wait_until(
        "document.querySelectorAll('figure[data-chart] svg').length === 4",
        Duration::from_secs(10)
    ));
    // Per chart: the points its lines and markers draw in the rendered SVG.
    let drawn = page.eval(
        "Object.fromEntries([...document.querySelectorAll('figure[data-chart]')].map(f => [\
           f.dataset.chart, \
           [...f.querySelectorAll('polyline')].reduce((n, p) => n + p.points.numberOfItems, 0) \
             + f.querySelectorAll('circle').length]))",
    );
    for chart in ["roc", "pr", "daily", "distribution"] {
        let n = drawn[chart].as_u64().unwrap_or(0);
        assert!(n >= 10, "{chart}: {n} points drawn ({drawn})");
    }
    let rows = page.eval(
        "[...document.querySelectorAll('table[data-table]')].map(t => [t.dataset.table, t.rows.length - 1])",
    );
    let rows: Vec<(String, u64)> = serde_json::from_value(rows).unwrap();
    for (table, min) in [("thresholds", 10), ("alert-features", 3), ("models", 3)] {
        let n = rows.iter().find(|r| r.0 == table).map_or(0, |r| r.1);
        assert!(n >= min, "table {table}: {n} rows");
    }
    let shot = page.screenshot("screenshots/report.png");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    assert!(
        page.console_errors().is_empty(),
        "{:?}",
        page.console_errors()
    );
}
