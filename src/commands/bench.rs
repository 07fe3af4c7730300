//! `fraudstream bench`: the whole pipeline on a generated stream, for 1..N
//! workers: throughput at full speed, latency in the engine, latency with
//! queueing at a fixed offered rate, peak memory and bytes per entity;
//! written as JSON and an SVG chart. Also exports the stream and its feature
//! vectors for the River comparison (`benches/river_compare.py`); the Fluvio
//! benchmark and the soak run have modules of their own.

use crate::commands::cli::BenchArgs;
use crate::config::Topology;
use crate::connectors::sinks::create_file;
use crate::connectors::sinks::report::{Latency, RunReport};
use crate::connectors::sources::SourceItem;
use crate::exec::pipeline::{build_source, run, RunOptions};
use fraudstream_engine::event::Event;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Worker counts to run.
    pub workers: Vec<usize>,
    /// Offered rate for the latency run, as a share of the measured maximum.
    pub rate_fraction: f64,
    /// Where `bench.json` and `bench.svg` go.
    pub out: PathBuf,
    /// Also run at the paced rate (latency with queueing).
    pub paced: bool,
}

/// One worker count's figures.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRun {
    /// Card-stage workers.
    pub workers: usize,
    /// Transactions per second at full speed.
    pub transactions_per_sec: f64,
    /// Events (transactions and labels) per second at full speed.
    pub events_per_sec: f64,
    /// Processing time per transaction inside the engine, full speed.
    pub latency: Latency,
    /// Offered events per second in the paced run.
    pub offered_events_per_sec: f64,
    /// Processing time inside the engine, paced run.
    pub paced_latency: Latency,
    /// Offer to score, queueing included, paced run.
    pub paced_latency_with_queueing: Latency,
    /// Peak resident memory of the process during the full-speed run.
    pub peak_rss_bytes: u64,
    /// Bytes of state per card and per merchant.
    pub bytes_per_card: u64,
    /// Bytes of state per merchant.
    pub bytes_per_merchant: u64,
    /// Cards and merchants held at the end.
    pub cards: u64,
    /// Merchants held at the end.
    pub merchants: u64,
    /// Prequential ROC AUC over the whole run (quality must not move with workers).
    pub roc_auc: Option<f64>,
    /// Over the last days.
    pub last_days_roc_auc: Option<f64>,
}

/// The whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Topology benchmarked.
    pub topology: String,
    /// Cores the machine has.
    pub cores: usize,
    /// Transactions in the stream.
    pub transactions: u64,
    /// One entry per worker count.
    pub runs: Vec<BenchRun>,
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reset the peak RSS mark (Linux: `5` into clear_refs); false where unsupported.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn without_file_sinks(t: &Topology, workers: usize) -> Topology {
    let mut t = t.clone();
    t.engine.workers = workers;
    t.sinks.clear();
    t.model.save = None;
    t
}

/// Run the benchmark.
pub fn bench(
    t: &Topology,
    opts: &BenchOptions,
    mut log: impl FnMut(&str),
) -> anyhow::Result<BenchReport> {
    let mut runs = Vec::new();
    let mut transactions = 0;
    for &w in &opts.workers {
        let tw = without_file_sinks(t, w);
        reset_peak_rss();
        let full = run(
            &tw,
            &RunOptions {
                quiet: true,
                pace: None,
                null_pipeline: false,
            },
        )?;
        let peak = peak_rss().unwrap_or(0);
        transactions = full.input.transactions;
        let offered = full.throughput.events_per_sec * opts.rate_fraction;
        log(&format!(
            "workers {w}: {:.0} transactions/s at full speed; pacing at {:.0} events/s",
            full.throughput.transactions_per_sec, offered
        ));
        let paced = if opts.paced {
            Some(run(
                &tw,
                &RunOptions {
                    quiet: true,
                    pace: Some(offered),
                    null_pipeline: false,
                },
            )?)
        } else {
            None
        };
        runs.push(bench_run(w, &full, paced.as_ref(), offered, peak));
    }
    let report = BenchReport {
        topology: t.file.clone(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        transactions,
        runs,
    };
    std::fs::create_dir_all(&opts.out)?;
    let json = opts.out.join("bench.json");
    serde_json::to_writer_pretty(create_file(&json)?, &report)?;
    std::fs::write(opts.out.join("bench.svg"), chart(&report)?)?;
    Ok(report)
}

fn bench_run(
    w: usize,
    full: &RunReport,
    paced: Option<&RunReport>,
    offered: f64,
    peak: u64,
) -> BenchRun {
    BenchRun {
        workers: w,
        transactions_per_sec: full.throughput.transactions_per_sec,
        events_per_sec: full.throughput.events_per_sec,
        latency: full.latency.clone(),
        offered_events_per_sec: if paced.is_some() { offered } else { 0.0 },
        paced_latency: paced.map(|p| p.latency.clone()).unwrap_or_default(),
        paced_latency_with_queueing: paced
            .map(|p| p.latency_with_queueing.clone())
            .unwrap_or_default(),
        peak_rss_bytes: peak,
        bytes_per_card: full.state.bytes_per_card,
        bytes_per_merchant: full.state.bytes_per_merchant,
        cards: full.state.cards,
        merchants: full.state.merchants,
        roc_auc: full.metrics.overall.roc_auc,
        last_days_roc_auc: full.metrics.last_days.roc_auc,
    }
}

/// The terminal table.
pub fn table(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "fraudstream bench: {} ({} transactions, {} cores)",
        r.topology, r.transactions, r.cores
    );
    let _ = writeln!(
        s,
        "{:>7} {:>12} {:>12} | {:>27} | {:>38} | {:>9} {:>8} {:>8} {:>7}",
        "workers",
        "tx/s",
        "events/s",
        "engine p50/p99/p99.9 (µs)",
        "paced: offered ev/s, queued p50/p99/p99.9",
        "peak MiB",
        "B/card",
        "B/merch",
        "AUC"
    );
    let us = |ns: u64| ns as f64 / 1000.0;
    for x in &r.runs {
        let _ = writeln!(
            s,
            "{:>7} {:>12.0} {:>12.0} | {:>8.1} {:>8.1} {:>9.1} | {:>10.0} {:>8.1} {:>8.1} {:>9.1} | {:>9.0} {:>8} {:>8} {:>7.4}",
            x.workers,
            x.transactions_per_sec,
            x.events_per_sec,
            us(x.latency.p50_ns),
            us(x.latency.p99_ns),
            us(x.latency.p999_ns),
            x.offered_events_per_sec,
            us(x.paced_latency_with_queueing.p50_ns),
            us(x.paced_latency_with_queueing.p99_ns),
            us(x.paced_latency_with_queueing.p999_ns),
            x.peak_rss_bytes as f64 / (1 << 20) as f64,
            x.bytes_per_card,
            x.bytes_per_merchant,
            x.roc_auc.unwrap_or(f64::NAN)
        );
    }
    s
}

/// Two panels (SVG, plotters): transactions per second by worker count,
/// and the latency percentiles by worker count on a log scale (in engine,
/// and offer-to-score with queueing in the paced run). Any number of
/// worker counts: they are points along an axis, not fixed slots.
pub fn chart(r: &BenchReport) -> anyhow::Result<String> {
    use crate::connectors::sinks::report::charts::{frame, legend, short, svg, COLORS};
    use plotters::prelude::*;
    let workers: Vec<f64> = r.runs.iter().map(|x| x.workers as f64).collect();
    let (w0, w1) = workers
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &w| (lo.min(w), hi.max(w)));
    let (w0, w1) = if w0 > w1 {
        (0.5, 1.5)
    } else {
        (w0 - 0.5, w1 + 0.5)
    };
    let tps_max = r
        .runs
        .iter()
        .map(|x| x.transactions_per_sec)
        .fold(1.0, f64::max)
        * 1.15;
    type Pick = fn(&Latency) -> u64;
    let percentiles: [(&str, Pick); 3] = [
        ("p50", |l| l.p50_ns),
        ("p99", |l| l.p99_ns),
        ("p99.9", |l| l.p999_ns),
    ];
    let us = |ns: u64| (ns.max(1) as f64 / 1000.0).max(0.01);
    let (mut lo, mut hi) = (f64::MAX, 0.01f64);
    for x in &r.runs {
        for (_, pick) in &percentiles {
            for l in [&x.latency, &x.paced_latency_with_queueing] {
                if pick(l) > 0 {
                    lo = lo.min(us(pick(l)));
                    hi = hi.max(us(pick(l)));
                }
            }
        }
    }
    let (lo, hi) = if lo > hi {
        (0.1, 10.0)
    } else {
        (lo / 2.0, hi * 2.0)
    };
    let title = format!(
        "fraudstream bench: {} transactions, {} cores",
        r.transactions, r.cores
    );
    svg((1000, 420), |root| {
        let root = root.titled(&title, ("sans-serif", 16))?;
        let (left, right) = root.split_horizontally(420);
        let mut tps = frame(&left, "transactions/s at full speed", 56)
            .build_cartesian_2d(w0..w1, 0.0..tps_max)?;
        tps.configure_mesh()
            .x_desc("card-stage workers")
            .y_desc("transactions/s")
            .x_labels(workers.len().clamp(2, 16))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| short(*v))
            .draw()?;
        tps.draw_series(r.runs.iter().map(|x| {
            let w = x.workers as f64;
            Rectangle::new(
                [(w - 0.3, 0.0), (w + 0.3, x.transactions_per_sec)],
                COLORS[0].filled(),
            )
        }))?;
        tps.draw_series(r.runs.iter().map(|x| {
            Text::new(
                short(x.transactions_per_sec.round()),
                (x.workers as f64 - 0.25, x.transactions_per_sec * 1.07),
                ("sans-serif", 12).into_font(),
            )
        }))?;
        let (plot, side) = right.split_horizontally(400);
        let mut lat = frame(&plot, "latency per transaction (log)", 56)
            .build_cartesian_2d(w0..w1, (lo..hi).log_scale())?;
        lat.configure_mesh()
            .x_desc("card-stage workers")
            .y_desc("µs")
            .x_labels(workers.len().clamp(2, 16))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| short(*v))
            .draw()?;
        let mut entries: Vec<(String, ShapeStyle)> = Vec::new();
        for (i, (name, pick)) in percentiles.iter().enumerate() {
            let color = COLORS[i + 1];
            let engine: Vec<(f64, f64)> = r
                .runs
                .iter()
                .map(|x| (x.workers as f64, us(pick(&x.latency))))
                .collect();
            lat.draw_series(LineSeries::new(
                engine.iter().copied(),
                color.stroke_width(2),
            ))?;
            lat.draw_series(engine.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            entries.push((format!("{name} in engine"), color.stroke_width(2)));
            let paced: Vec<(f64, f64)> = r
                .runs
                .iter()
                .filter(|x| pick(&x.paced_latency_with_queueing) > 0)
                .map(|x| (x.workers as f64, us(pick(&x.paced_latency_with_queueing))))
                .collect();
            if !paced.is_empty() {
                lat.draw_series(DashedLineSeries::new(
                    paced.iter().copied(),
                    6,
                    4,
                    color.stroke_width(2),
                ))?;
                lat.draw_series(
                    paced
                        .iter()
                        .map(|&p| Circle::new(p, 3, color.stroke_width(1))),
                )?;
                entries.push((
                    format!("{name} paced, with queueing"),
                    color.stroke_width(1),
                ));
            }
        }
        let entries: Vec<(&str, ShapeStyle)> =
            entries.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        legend(&side, 60, &entries)
    })
}

/// Run `t` through the sequential engine and write every transaction (with
/// its raw feature vector and categorical values) and every label, in stream
/// order, as CSV: `kind,tx_id,ts,is_fraud,<features...>,cat_mcc,cat_country,cat_channel`.
pub fn export_stream(t: &Topology, path: &Path) -> anyhow::Result<u64> {
    let source = build_source(t)?;
    let mut engine = crate::exec::outputs::start_engine(t)?;
    let names = fraudstream_engine::features::feature_space(&t.features);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, create_file(path)?);
    write!(out, "kind,tx_id,ts,is_fraud")?;
    for n in names.names() {
        write!(out, ",{n}")?;
    }
    writeln!(out, ",cat_mcc,cat_country,cat_channel")?;
    let field =
        |v: &Option<compact_str::CompactString>| v.as_deref().unwrap_or("").replace(',', " ");
    let mut rows = 0;
    for item in source {
        match item {
            SourceItem::Event(Event::Transaction(tx)) => {
                let cats = [field(&tx.mcc), field(&tx.country), field(&tx.channel)];
                let (id, ts) = (tx.tx_id.to_string(), tx.ts);
                engine.score(tx);
                write!(out, "T,{id},{ts},")?;
                // The features only: a portfolio stores its side values after them.
                for v in engine.last_features().dense.iter().take(names.dense_len()) {
                    write!(out, ",{v}")?;
                }
                writeln!(out, ",{},{},{}", cats[0], cats[1], cats[2])?;
            }
            SourceItem::Event(Event::Label(l)) => {
                engine.label(&l);
                writeln!(
                    out,
                    "L,{},{},{}{}",
                    l.tx_id,
                    l.ts,
                    l.is_fraud as u8,
                    ",".repeat(names.dense_len() + 3)
                )?;
            }
            SourceItem::Rejected(_) => continue,
        }
        rows += 1;
    }
    out.flush()?;
    Ok(rows)
}

/// `fraudstream bench`: the worker-count benchmark, or (with its flags) the
/// Fluvio benchmark, the soak run or the stream export for River.
pub fn command(a: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.rate_fraction > 0.0 && a.rate_fraction <= 1.0,
        "--rate-fraction must be in (0, 1]"
    );
    let t = super::load(a.topology.as_deref(), &a.set)?;
    if a.fluvio {
        return crate::commands::bench_fluvio::command(&t, a);
    }
    if a.soak {
        let opts = crate::commands::bench_soak::SoakOptions {
            days: a.soak_days,
            tx_per_day: a.soak_tx_per_day,
            seed: a.soak_seed,
        };
        return crate::commands::bench_soak::command(&t, &opts, &a.out);
    }
    if let Some(path) = &a.export_stream {
        return export_command(&t, path);
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut workers = if a.workers.is_empty() {
        vec![1, cores]
    } else {
        a.workers.clone()
    };
    workers.dedup();
    anyhow::ensure!(
        workers.iter().all(|&w| (1..=256).contains(&w)),
        "--workers takes counts from 1 to 256"
    );
    let report = bench(
        &t,
        &BenchOptions {
            workers,
            rate_fraction: a.rate_fraction,
            out: a.out.clone(),
            paced: !a.no_paced,
        },
        |m| eprintln!("{m}"),
    )?;
    print!("{}", table(&report));
    println!(
        "wrote {} and {}",
        a.out.join("bench.json").display(),
        a.out.join("bench.svg").display()
    );
    Ok(())
}

/// `fraudstream bench --export-stream PATH`: write the stream for River,
/// then print one JSON line of fraudstream's own figures on it.
fn export_command(t: &Topology, path: &Path) -> anyhow::Result<()> {
    let rows = export_stream(t, path)?;
    eprintln!("wrote {rows} rows to {}", path.display());
    let mut one = t.clone();
    one.engine.workers = 1;
    one.sinks.clear();
    let r = run(
        &one,
        &RunOptions {
            quiet: true,
            pace: None,
            null_pipeline: false,
        },
    )?;
    let line = serde_json::json!({
        "engine": "fraudstream",
        "transactions": r.input.transactions,
        "labels": r.input.labels,
        "seconds": r.throughput.seconds,
        "transactions_per_sec": r.throughput.transactions_per_sec,
        "roc_auc": r.metrics.overall.roc_auc,
        "average_precision": r.metrics.overall.average_precision,
        "last_days_roc_auc": r.metrics.last_days.roc_auc,
        "last_days_average_precision": r.metrics.last_days.average_precision,
    });
    println!("{line}");
    Ok(())
}
