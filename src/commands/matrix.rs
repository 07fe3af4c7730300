//! `fraudstream matrix`: every model type on the three simulator families under
//! several label delays and fraud rates, each scored on a final window, so
//! a default is chosen for how it does *across* traffic, not on one stream.
//!
//! A cell is one simulated stream (family, label delay, fraud rate); every
//! model type replays it with the same seed through the embedded engine
//! (one worker, deterministic) and is measured on the report's last
//! `metrics.last_days` days: ROC AUC, average precision, card precision@k;
//! and, from the simulator's ground truth, the average precision of each
//! fraud mechanism (its frauds against every genuine transaction there), so
//! a change is seen to help or hurt one kind of fraud.

use crate::commands::cli::MatrixArgs;
use crate::config::{FileFormat, RecordTarget, Records, SinkConfig, SourceConfig, Topology};
use crate::exec::pipeline::RunOptions;
use anyhow::Context;
use fraudstream_engine::eval::average_precision;
use fraudstream_engine::time::DAY_MS;
use fraudstream_sim::{FraudPattern, SimEvent, Simulator};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// Label delay of the cells that vary the fraud rate (days).
pub const DEFAULT_DELAY_DAYS: f64 = 7.0;
/// Fraud rate of the cells that vary the label delay.
pub const DEFAULT_FRAUD_RATE: f64 = 0.007;

/// What the matrix runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MatrixOptions {
    /// Families (`cards`, `categories`).
    pub families: Vec<String>,
    /// Model types (`model.type` values).
    pub models: Vec<String>,
    /// Label delays (days), each at [`DEFAULT_FRAUD_RATE`].
    pub delays_days: Vec<f64>,
    /// Fraud rates, each at [`DEFAULT_DELAY_DAYS`].
    pub fraud_rates: Vec<f64>,
    /// Simulated days per stream.
    pub days: u32,
    /// Cards per stream (merchants: a fifth).
    pub cards: u32,
    /// Simulator seed.
    pub seed: u64,
}

/// One stream of the matrix.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Cell {
    /// Simulator family.
    pub family: &'static str,
    /// Mean label delay (days).
    pub label_delay_days: f64,
    /// Share of fraudulent transactions.
    pub fraud_rate: f64,
}

/// One model on one cell, over the final window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CellResult {
    /// Simulator family.
    pub family: String,
    /// Mean label delay (days).
    pub label_delay_days: f64,
    /// Target fraud rate.
    pub fraud_rate: f64,
    /// `model.type`.
    pub model: String,
    /// Transactions and frauds in the final window.
    pub transactions: u64,
    /// Labelled frauds in the final window.
    pub frauds: u64,
    /// ROC AUC over the final window.
    pub roc_auc: Option<f64>,
    /// Average precision over the final window.
    pub average_precision: Option<f64>,
    /// Mean daily card precision@k over the final window.
    pub card_precision_at_k: Option<f64>,
    /// Transactions per second of the run.
    pub transactions_per_sec: f64,
    /// Average precision of each fraud mechanism over the final window.
    #[serde(default)]
    pub mechanisms: Vec<MechanismResult>,
}

/// One fraud mechanism of a cell, over the final window, from the
/// simulator's ground truth (not from labels).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MechanismResult {
    /// The simulator's name of the mechanism.
    pub mechanism: String,
    /// Its fraudulent transactions in the window.
    pub frauds: u64,
    /// Average precision of its frauds against every genuine transaction.
    pub average_precision: Option<f64>,
}

/// The simulator's truth about a cell's stream: each transaction's time
/// and mechanism (none: genuine), by id.
struct Truth {
    by_id: HashMap<u64, (i64, Option<FraudPattern>)>,
    /// Transactions from this time on are in the final window.
    window_from: i64,
}

impl Truth {
    /// Replay `t`'s simulator (transactions only).
    fn of(t: &Topology, window_days: u32) -> anyhow::Result<Self> {
        let SourceConfig::Simulator(cfg) = &t.source else {
            anyhow::bail!("a matrix cell replays the simulator");
        };
        let sim = Simulator::new(cfg.clone())
            .map_err(|e| anyhow::anyhow!("simulator settings: {}", e.join("; ")))?;
        let mut by_id = HashMap::new();
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for e in sim {
            if let SimEvent::Transaction(tx) = e {
                first = first.min(tx.ts_ms);
                last = last.max(tx.ts_ms);
                by_id.insert(tx.tx_id, (tx.ts_ms, tx.fraud));
            }
        }
        // The report's windows are whole days counted from the first one.
        let last_day = (last - first).div_euclid(DAY_MS);
        let window_from = first + (last_day + 1 - i64::from(window_days)) * DAY_MS;
        Ok(Truth { by_id, window_from })
    }

    /// Average precision of each mechanism, from a scores CSV of the run.
    fn mechanisms(&self, scores: &Path) -> anyhow::Result<Vec<MechanismResult>> {
        let mut rd = csv::Reader::from_path(scores)
            .with_context(|| format!("reading {}", scores.display()))?;
        let mut genuine = Vec::new();
        let mut frauds: Vec<(FraudPattern, f32)> = Vec::new();
        for row in rd.records() {
            let row = row?;
            let (Some(id), Some(score)) = (row.get(0), row.get(3)) else {
                anyhow::bail!("{}: a row without tx_id and score", scores.display());
            };
            let id: u64 = id.parse().context("a simulated tx_id")?;
            let score: f32 = score.parse().context("a score")?;
            let Some(&(ts, fraud)) = self.by_id.get(&id) else {
                anyhow::bail!("scored transaction {id} is not in the simulated stream");
            };
            if ts < self.window_from {
                continue;
            }
            match fraud {
                Some(m) => frauds.push((m, score)),
                None => genuine.push((score, false)),
            }
        }
        let mut found: Vec<FraudPattern> = frauds.iter().map(|f| f.0).collect();
        found.sort_by_key(|m| m.name());
        found.dedup();
        Ok(found
            .into_iter()
            .map(|m| {
                let mut pairs = genuine.clone();
                pairs.extend(frauds.iter().filter(|f| f.0 == m).map(|f| (f.1, true)));
                MechanismResult {
                    mechanism: m.name().to_string(),
                    frauds: (pairs.len() - genuine.len()) as u64,
                    average_precision: average_precision(&pairs),
                }
            })
            .collect())
    }
}

/// A model across every cell.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelSummary {
    /// `model.type`.
    pub model: String,
    /// Mean over the cells of the final window's average precision.
    pub mean_average_precision: f64,
    /// Its worst cell.
    pub worst_average_precision: f64,
    /// Mean ROC AUC.
    pub mean_roc_auc: f64,
    /// Mean card precision@k.
    pub mean_card_precision_at_k: f64,
    /// Cells where it has the best average precision.
    pub best_in: u32,
}

/// The whole matrix.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MatrixReport {
    /// What ran.
    pub options: MatrixOptions,
    /// Days of the final window.
    pub window_days: u32,
    /// Every model on every cell.
    pub results: Vec<CellResult>,
    /// Every model across the cells, best mean average precision first.
    pub summary: Vec<ModelSummary>,
}

/// The cells of `o`: per family, each delay at the default rate, then each
/// other rate at the default delay.
pub fn cells(o: &MatrixOptions) -> anyhow::Result<Vec<Cell>> {
    let mut out = Vec::new();
    for f in &o.families {
        let family = match f.as_str() {
            "cards" => "cards",
            "categories" => "categories",
            "handbook" => "handbook",
            other => {
                anyhow::bail!("--families: expected cards, categories or handbook, found {other:?}")
            }
        };
        for &d in &o.delays_days {
            out.push(Cell {
                family,
                label_delay_days: d,
                fraud_rate: DEFAULT_FRAUD_RATE,
            });
        }
        for &r in &o.fraud_rates {
            if r != DEFAULT_FRAUD_RATE || !o.delays_days.contains(&DEFAULT_DELAY_DAYS) {
                out.push(Cell {
                    family,
                    label_delay_days: DEFAULT_DELAY_DAYS,
                    fraud_rate: r,
                });
            }
        }
    }
    Ok(out)
}

/// The overrides that make `base` replay `cell` with `model`.
fn cell_sets(o: &MatrixOptions, cell: &Cell, model: &str) -> Vec<String> {
    let d = cell.label_delay_days;
    vec![
        "source.type=simulator".into(),
        format!("source.family={}", cell.family),
        format!("source.seed={}", o.seed),
        format!("source.days={}", o.days),
        format!("source.cards={}", o.cards),
        format!("source.merchants={}", (o.cards / 5).max(15)),
        format!("source.fraud_rate={}", cell.fraud_rate),
        format!("source.label_delay.chargeback_median_days={d}"),
        // Analysts are never slower than the chargebacks, and genuine
        // transactions are known to be genuine after the same delay.
        format!(
            "source.label_delay.analyst_mean_hours={}",
            (d * 24.0).min(24.0)
        ),
        format!("source.label_delay.genuine_maturity_days={d}"),
        format!(
            "source.label_delay.max_delay_days={}",
            (4.0 * d).clamp(1.0, 365.0)
        ),
        format!("model.type={model}"),
        "engine.workers=1".into(),
    ]
}

/// Run the matrix on `topology` (the built-in one when `None`) with `set`;
/// `progress` hears each finished run.
pub fn run_matrix(
    topology: Option<&Path>,
    set: &[String],
    o: &MatrixOptions,
    mut progress: impl FnMut(&CellResult),
) -> anyhow::Result<MatrixReport> {
    let cells = cells(o)?;
    anyhow::ensure!(
        !o.models.is_empty(),
        "--models: name at least one model type"
    );
    let mut results = Vec::new();
    let mut window_days = 0;
    let scratch = tempfile::tempdir().context("a folder for the runs' scores")?;
    let scores = scratch.path().join("scores.csv");
    for cell in &cells {
        let mut truth = None;
        for model in &o.models {
            let mut sets = set.to_vec();
            sets.extend(cell_sets(o, cell, model));
            let mut t: Topology = super::load(topology, &sets)?;
            t.sinks = vec![SinkConfig::Records {
                id: "scores".into(),
                records: Records::Scores,
                to: RecordTarget::File {
                    path: scores.clone(),
                    format: FileFormat::Csv,
                },
            }];
            t.model.save = None;
            window_days = t.evaluation.last_days;
            if truth.is_none() {
                truth = Some(Truth::of(&t, window_days)?);
            }
            let r = crate::exec::run(
                &t,
                &RunOptions {
                    quiet: true,
                    pace: None,
                    null_pipeline: false,
                },
            )
            .with_context(|| {
                format!(
                    "{model} on {} (label delay {} days, fraud rate {})",
                    cell.family, cell.label_delay_days, cell.fraud_rate
                )
            })?;
            let w = &r.metrics.last_days;
            let res = CellResult {
                family: cell.family.to_string(),
                label_delay_days: cell.label_delay_days,
                fraud_rate: cell.fraud_rate,
                model: model.clone(),
                transactions: w.transactions,
                frauds: w.frauds,
                roc_auc: w.roc_auc,
                average_precision: w.average_precision,
                card_precision_at_k: w.card_precision_at_k,
                transactions_per_sec: r.throughput.transactions_per_sec,
                mechanisms: truth
                    .as_ref()
                    .expect("read before the first run")
                    .mechanisms(&scores)?,
            };
            progress(&res);
            results.push(res);
        }
    }
    let summary = summarise(&o.models, &results);
    Ok(MatrixReport {
        options: o.clone(),
        window_days,
        results,
        summary,
    })
}

/// Every model across the cells, best mean average precision first.
fn summarise(models: &[String], results: &[CellResult]) -> Vec<ModelSummary> {
    let mut out: Vec<ModelSummary> = models
        .iter()
        .map(|m| {
            let mine: Vec<&CellResult> = results.iter().filter(|r| &r.model == m).collect();
            let mean = |f: &dyn Fn(&CellResult) -> Option<f64>| {
                let v: Vec<f64> = mine.iter().map(|r| f(r).unwrap_or(0.0)).collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            };
            let best_in = mine
                .iter()
                .filter(|r| {
                    let ap = r.average_precision.unwrap_or(0.0);
                    results
                        .iter()
                        .filter(|o| same_cell(o, r))
                        .all(|o| o.average_precision.unwrap_or(0.0) <= ap)
                })
                .count() as u32;
            ModelSummary {
                model: m.clone(),
                mean_average_precision: mean(&|r| r.average_precision),
                worst_average_precision: mine
                    .iter()
                    .map(|r| r.average_precision.unwrap_or(0.0))
                    .fold(f64::INFINITY, f64::min),
                mean_roc_auc: mean(&|r| r.roc_auc),
                mean_card_precision_at_k: mean(&|r| r.card_precision_at_k),
                best_in,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.mean_average_precision
            .total_cmp(&a.mean_average_precision)
    });
    out
}

fn same_cell(a: &CellResult, b: &CellResult) -> bool {
    a.family == b.family && a.label_delay_days == b.label_delay_days && a.fraud_rate == b.fraud_rate
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.3}"))
}

/// The matrix as Markdown: one row per cell, AUC / AP / card P@k per model;
/// then the summary.
pub fn markdown(r: &MatrixReport) -> String {
    let models = &r.options.models;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ROC AUC / average precision / card precision@k over the last {} days; \
         {} days of {} cards per stream, seed {}.\n",
        r.window_days, r.options.days, r.options.cards, r.options.seed
    );
    table_head(
        &mut s,
        &["family", "label delay", "fraud rate", "frauds"],
        models,
    );
    let seen = distinct_cells(r);
    for &c in &seen {
        let delay = delay_label(c.label_delay_days);
        let best = r
            .results
            .iter()
            .filter(|o| same_cell(o, c))
            .filter_map(|o| o.average_precision)
            .fold(f64::NEG_INFINITY, f64::max);
        let _ = write!(
            s,
            "| {} | {delay} | {:.2} % | {} |",
            c.family,
            c.fraud_rate * 100.0,
            c.frauds
        );
        for m in models {
            let Some(x) = r.results.iter().find(|o| same_cell(o, c) && &o.model == m) else {
                let _ = write!(s, " |");
                continue;
            };
            let ap = fmt_opt(x.average_precision);
            let ap = if x.average_precision == Some(best) {
                format!("**{ap}**")
            } else {
                ap
            };
            let _ = write!(
                s,
                " {} / {ap} / {} |",
                fmt_opt(x.roc_auc),
                fmt_opt(x.card_precision_at_k)
            );
        }
        s.push('\n');
    }
    mechanism_table(r, &mut s);
    let _ = writeln!(
        s,
        "\n| model | mean average precision | worst cell | mean ROC AUC | mean card P@k | best AP in |\n|---|---|---|---|---|---|"
    );
    for m in &r.summary {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} of {} |",
            m.model,
            m.mean_average_precision,
            m.worst_average_precision,
            m.mean_roc_auc,
            m.mean_card_precision_at_k,
            m.best_in,
            seen.len()
        );
    }
    s
}

/// Average precision by mechanism: one row per cell and mechanism.
fn mechanism_table(r: &MatrixReport, s: &mut String) {
    let models = &r.options.models;
    let _ = writeln!(
        s,
        "\nAverage precision of each fraud mechanism over the same window (its frauds against every genuine transaction; the simulator's ground truth):\n"
    );
    let head = ["family", "label delay", "fraud rate", "mechanism", "frauds"];
    table_head(s, &head, models);
    for c in distinct_cells(r) {
        for mech in &c.mechanisms {
            let of = |o: &CellResult| {
                o.mechanisms
                    .iter()
                    .find(|x| x.mechanism == mech.mechanism)
                    .and_then(|x| x.average_precision)
            };
            let best = (r.results.iter())
                .filter(|o| same_cell(o, c))
                .filter_map(of)
                .fold(f64::NEG_INFINITY, f64::max);
            let _ = write!(
                s,
                "| {} | {} | {:.2} % | {} | {} |",
                c.family,
                delay_label(c.label_delay_days),
                c.fraud_rate * 100.0,
                mech.mechanism,
                mech.frauds
            );
            for m in models {
                let x = (r.results.iter()).find(|o| same_cell(o, c) && &o.model == m);
                let ap = x.and_then(of);
                let cell = fmt_opt(ap);
                let _ = if ap == Some(best) {
                    write!(s, " **{cell}** |")
                } else {
                    write!(s, " {cell} |")
                };
            }
            s.push('\n');
        }
    }
}

/// A Markdown table's header: `columns`, then one per model.
fn table_head(s: &mut String, columns: &[&str], models: &[String]) {
    let names: Vec<&str> = columns
        .iter()
        .copied()
        .chain(models.iter().map(String::as_str))
        .collect();
    let _ = writeln!(s, "| {} |", names.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(names.len()));
}

/// The first result of each cell, in run order.
fn distinct_cells(r: &MatrixReport) -> Vec<&CellResult> {
    let mut seen: Vec<&CellResult> = Vec::new();
    for c in &r.results {
        if !seen.iter().any(|o| same_cell(o, c)) {
            seen.push(c);
        }
    }
    seen
}

/// `6 h`, `7 d`.
fn delay_label(days: f64) -> String {
    if days < 1.0 {
        format!("{} h", (days * 24.0).round())
    } else {
        format!("{days} d")
    }
}

/// `fraudstream matrix`.
pub fn command(a: &MatrixArgs) -> anyhow::Result<()> {
    let o = MatrixOptions {
        families: a.families.clone(),
        models: a.models.clone(),
        delays_days: a.delays.clone(),
        fraud_rates: a.fraud_rates.clone(),
        days: a.days,
        cards: a.cards,
        seed: a.seed,
    };
    let total = (cells(&o)?.len() * o.models.len()) as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} {msg}")
            .expect("a valid template"),
    );
    let report = run_matrix(a.topology.as_deref(), &a.set, &o, |r| {
        bar.set_message(format!(
            "{} on {} ({} d, {:.2} %): AP {}",
            r.model,
            r.family,
            r.label_delay_days,
            r.fraud_rate * 100.0,
            fmt_opt(r.average_precision)
        ));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let md = markdown(&report);
    std::fs::write(
        a.out.join("matrix.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(a.out.join("matrix.md"), &md)?;
    print!("{md}");
    println!(
        "wrote {} and {}",
        a.out.join("matrix.json").display(),
        a.out.join("matrix.md").display()
    );
    Ok(())
}
