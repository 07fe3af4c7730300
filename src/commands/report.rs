//! `fraudstream report`: the HTML page of an existing JSON report (one
//! written by `fraudstream run`, which also writes the page itself unless
//! `sinks.report.html = false`).

use super::cli::ReportArgs;
use crate::connectors::sinks::report::{html, RunReport};
use anyhow::Context;

/// Read the JSON report, write its page, say where.
pub fn command(a: &ReportArgs) -> anyhow::Result<()> {
    let report = RunReport::read_json(&a.report)
        .with_context(|| format!("reading the report {}", a.report.display()))?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.report.with_extension("html"));
    if out == a.report {
        anyhow::bail!(
            "the page would overwrite its own JSON report {}: give --out",
            a.report.display()
        );
    }
    if report.curves.is_empty() {
        eprintln!(
            "note: {} holds no curves (written by an older fraudstream?): the page has no curve, distribution or threshold table",
            a.report.display()
        );
    }
    html::write(&report, &out)?;
    println!("report: {}", out.display());
    Ok(())
}
