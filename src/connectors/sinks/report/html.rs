//! The replay report as one self-contained HTML page (inline CSS and SVG,
//! no script, nothing fetched when it is opened): the headline figures,
//! every model's ROC and precision-recall curves, the metrics day by day
//! with drift and the cold start, the score distributions, the threshold
//! table a fraud team sets its threshold by, and the features that
//! explained the alerts. Written by `fraudstream run` beside the JSON
//! report and by `fraudstream report REPORT.json` from an existing one.

use super::{charts, ModelCurves, RunReport};
use anyhow::Context;
use fraudstream_engine::eval::MetricsSummary;
use std::fmt::Write as _;
use std::path::Path;

/// Render `r` and write it to `path` (atomically: a temporary file, then a
/// rename, so a reader never sees half a page).
pub fn write(r: &RunReport, path: &Path) -> anyhow::Result<()> {
    let page = render(r)?;
    let tmp = path.with_extension("html.tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&tmp, page).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Text made safe inside HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A metric for a table: three decimals, or a dash.
fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

/// A share as a percentage, or a dash.
fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.1} %", v * 100.0))
}

/// An amount with thousands separators, or a dash.
fn amount(v: Option<f64>) -> String {
    let Some(v) = v else { return "–".into() };
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// A chart in a figure the tests (and readers) can find by name.
fn figure(out: &mut String, name: &str, points: usize, svg: &str, caption: &str) {
    let _ = writeln!(
        out,
        "<figure class=\"chart\" data-chart=\"{name}\" data-points=\"{points}\">{svg}<figcaption>{}</figcaption></figure>",
        esc(caption)
    );
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1320px;color:#222;padding:0 16px}\
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.sub{color:#666;margin-top:0}.cards{display:flex;flex-wrap:wrap;gap:12px}\
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:120px}\
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}\
.row{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{color:#555;font-size:13px;max-width:640px}\
table{border-collapse:collapse;font-size:13px;margin-top:8px}th,td{border-bottom:1px solid #eee;padding:4px 10px;text-align:right}\
th{background:#f6f6f6}td.l,th.l{text-align:left}tr.cur{background:#fff7d6}\
.bar{background:#3b76c4;height:10px;display:inline-block;vertical-align:middle}\
.note{color:#666;font-size:13px;max-width:900px}";

/// The page of `r`.
pub fn render(r: &RunReport) -> anyhow::Result<String> {
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>fraudstream report: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&r.topology)
    );
    let _ = writeln!(
        out,
        "<h1>fraudstream replay report</h1><p class=\"sub\">topology <code>{}</code> · model <b>{}</b> (version {}, {} features) · prequential: every transaction scored before its label could be known</p>",
        esc(&r.topology),
        esc(&r.model),
        r.model_version,
        r.features
    );
    headline(&mut out, r);
    curves(&mut out, r)?;
    daily(&mut out, r)?;
    distribution(&mut out, r)?;
    thresholds(&mut out, r);
    alert_features(&mut out, r);
    models(&mut out, r);
    out.push_str("</body></html>\n");
    Ok(out)
}

/// The figures at the top.
fn headline(out: &mut String, r: &RunReport) {
    let m = &r.metrics.overall;
    let cards = [
        ("transactions", amount(Some(r.input.transactions as f64))),
        ("labelled frauds", amount(Some(m.frauds as f64))),
        ("alerts", amount(Some(r.engine.alerts as f64))),
        ("ROC AUC", num(m.roc_auc)),
        ("average precision", num(m.average_precision)),
        ("card precision@k (daily mean)", num(m.card_precision_at_k)),
        ("calibration error (ECE)", num(m.expected_calibration_error)),
        (
            "transactions/s",
            amount(Some(r.throughput.transactions_per_sec)),
        ),
        ("dead letters", amount(Some(r.input.dead_letters as f64))),
    ];
    out.push_str("<div class=\"cards\">");
    for (name, value) in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><b>{value}</b><span>{}</span></div>",
            esc(name)
        );
    }
    out.push_str("</div>\n");
    let last = &r.metrics.last_days;
    let _ = writeln!(
        out,
        "<p class=\"note\">Over the last {} days: ROC AUC {}, average precision {}, card precision@k {}. {}</p>",
        r.metrics.last_days_n,
        num(last.roc_auc),
        num(last.average_precision),
        num(last.card_precision_at_k),
        if m.compacted_days > 0 {
            "Some days were compacted: their curves come from score histograms (approximate) and carry no amounts."
        } else {
            ""
        }
    );
}

fn curves(out: &mut String, r: &RunReport) -> anyhow::Result<()> {
    out.push_str("<h2>How well each model ranks frauds</h2>\n<div class=\"row\">");
    let with_curve: Vec<ModelCurves> = r
        .curves
        .iter()
        .filter(|m| !m.curves.roc.is_empty() || !m.curves.pr.is_empty())
        .cloned()
        .collect();
    if with_curve.is_empty() {
        out.push_str("<p class=\"note\">No curve: the run evaluated no fraud, or no genuine transaction.</p></div>\n");
        return Ok(());
    }
    let roc_points: usize = with_curve.iter().map(|m| m.curves.roc.len()).sum();
    let pr_points: usize = with_curve.iter().map(|m| m.curves.pr.len()).sum();
    figure(
        out,
        "roc",
        roc_points,
        &charts::roc(&with_curve)?,
        "Share of frauds caught (true positive rate) against share of genuine transactions alerted, as the threshold falls.",
    );
    figure(
        out,
        "pr",
        pr_points,
        &charts::precision_recall(&with_curve)?,
        "Share of alerts that are fraud (precision) against share of frauds caught (recall): what an analyst's queue looks like.",
    );
    out.push_str("</div>\n");
    Ok(())
}

fn daily(out: &mut String, r: &RunReport) -> anyhow::Result<()> {
    out.push_str("<h2>Over the stream</h2>\n");
    if r.daily.is_empty() {
        out.push_str("<p class=\"note\">No day was scored.</p>\n");
        return Ok(());
    }
    let points: usize = r
        .daily
        .iter()
        .map(|d| {
            usize::from(d.roc_auc.is_some())
                + usize::from(d.average_precision.is_some())
                + usize::from(d.card_precision_at_k.is_some())
        })
        .sum();
    let mut caption = String::from(
        "Each day's metrics over that day's transactions, with the labels that had arrived by the end of the run.",
    );
    match r.cold_start_until_day {
        Some(_) => {
            caption.push_str(" Shaded: the cold start, before the model learnt its first label.")
        }
        None => caption.push_str(" The model learnt no label in this run."),
    }
    if r.drift_events_dropped > 0 {
        let _ = write!(
            caption,
            " {} drift events beyond the cap are not drawn.",
            r.drift_events_dropped
        );
    }
    figure(out, "daily", points, &charts::daily(r)?, &caption);
    Ok(())
}

fn distribution(out: &mut String, r: &RunReport) -> anyhow::Result<()> {
    let Some(served) = r.curves.first() else {
        return Ok(());
    };
    out.push_str("<h2>Scores of frauds and genuine transactions</h2>\n");
    let d = &served.curves.distribution;
    let points = d.fraud.iter().chain(&d.genuine).filter(|&&c| c > 0).count();
    figure(
        out,
        "distribution",
        points,
        &charts::distribution(served)?,
        "The share of each class's transactions in each score bin (50 bins of width 0.02): the further apart, the easier the threshold.",
    );
    Ok(())
}

fn thresholds(out: &mut String, r: &RunReport) {
    let Some(served) = r.curves.first() else {
        return;
    };
    let c = &served.curves;
    out.push_str("<h2>Choosing a threshold</h2>\n");
    let _ = writeln!(
        out,
        "<p class=\"note\">What alerting on <i>score ≥ threshold</i> would have given over the run's {} days ({} frauds, {} of fraud amount). Rows: round thresholds, the topology's threshold (highlighted) and the scores that alert the top 0.1–5 % of transactions.{}</p>",
        c.days,
        amount(Some(c.frauds as f64)),
        amount(c.fraud_amount),
        if c.approximate {
            " Scores of compacted days count by histogram bin; amounts are unknown."
        } else {
            ""
        }
    );
    out.push_str("<table data-table=\"thresholds\"><tr><th>threshold</th><th class=\"l\">why listed</th><th>alerts</th><th>alerts/day</th><th>precision</th><th>recall</th><th>frauds caught</th><th>fraud amount caught</th><th>amount reviewed</th><th>caught / reviewed</th></tr>\n");
    for row in &c.thresholds {
        let ratio = row
            .fraud_amount_caught
            .zip(row.amount_reviewed)
            .filter(|(_, rev)| *rev > 0.0)
            .map(|(caught, rev)| caught / rev);
        let _ = writeln!(
            out,
            "<tr{}><td>{:.4}</td><td class=\"l\">{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if row.rule.contains("topology") { " class=\"cur\"" } else { "" },
            row.threshold,
            esc(&row.rule),
            amount(Some(row.alerts as f64)),
            row.alerts_per_day,
            pct(row.precision),
            pct(row.recall),
            amount(Some(row.frauds_caught as f64)),
            amount(row.fraud_amount_caught),
            amount(row.amount_reviewed),
            pct(ratio)
        );
    }
    out.push_str("</table>\n");
}

fn alert_features(out: &mut String, r: &RunReport) {
    out.push_str("<h2>What explained the alerts</h2>\n");
    let total: u64 = r.engine.alerts;
    if r.alert_features.is_empty() {
        out.push_str("<p class=\"note\">No alert was explained (no alert, or <code>engine.explain_top = 0</code>).</p>\n");
        return;
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">How often each feature was among an alert's top contributions (<code>engine.explain_top</code> per alert, {} alerts), and its mean contribution to the log-odds there.</p>",
        amount(Some(total as f64))
    );
    out.push_str("<table data-table=\"alert-features\"><tr><th class=\"l\">feature</th><th>alerts</th><th class=\"l\">share of alerts</th><th>mean contribution</th></tr>\n");
    for f in r.alert_features.iter().take(20) {
        let share = f.alerts as f64 / total.max(1) as f64;
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\"><span class=\"bar\" style=\"width:{:.0}px\"></span> {}</td><td>{:+.3}</td></tr>",
            esc(&f.feature),
            amount(Some(f.alerts as f64)),
            (share * 200.0).min(200.0),
            pct(Some(share)),
            f.contribution / f.alerts.max(1) as f64
        );
    }
    out.push_str("</table>\n");
}

fn summary_row(out: &mut String, name: &str, m: &MetricsSummary) {
    let _ = writeln!(
        out,
        "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(name),
        num(m.roc_auc),
        num(m.average_precision),
        num(m.card_precision_at_k),
        num(m.expected_calibration_error),
        amount(Some(m.alerts as f64))
    );
}

fn models(out: &mut String, r: &RunReport) {
    out.push_str("<h2>Models</h2>\n<table data-table=\"models\"><tr><th class=\"l\">model</th><th>ROC AUC</th><th>average precision</th><th>card precision@k</th><th>ECE</th><th>alerts</th></tr>\n");
    summary_row(out, &format!("served ({})", r.model), &r.metrics.overall);
    for m in &r.models {
        summary_row(
            out,
            &format!("{}{}", m.name, if m.served { " (served)" } else { "" }),
            &m.overall,
        );
    }
    out.push_str("</table>\n");
    if !r.model_switches.is_empty() {
        out.push_str("<p class=\"note\">Switches of the served model (<code>auto</code>):</p><table data-table=\"switches\"><tr><th>day</th><th class=\"l\">from</th><th class=\"l\">to</th><th>labels in window</th><th>AP logistic</th><th>AP forest</th><th>AP blend (+ credit)</th></tr>\n");
        for s in &r.model_switches {
            let [l, f, b] = s.average_precision;
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{l:.3}</td><td>{f:.3}</td><td>{b:.3} (+{})</td></tr>",
                s.day,
                s.from.name(),
                s.to.name(),
                s.window_labels,
                s.blend_prior
            );
        }
        out.push_str("</table>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_numbers_are_safe_and_readable() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(amount(Some(1234567.4)), "1,234,567");
        assert_eq!(amount(Some(-999.0)), "-999");
        assert_eq!(amount(None), "–");
        assert_eq!(pct(Some(0.1234)), "12.3 %");
    }
}
