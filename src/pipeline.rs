//! Running a topology: build its source, engine and sinks, drive events
//! through, show progress, and produce the run report.

use crate::config::{LabelSource, Progress, SinkKind, SourceConfig, Topology};
use crate::engine::Engine;
use crate::sinks::report::{
    InputCounts, Latency, MetricsReport, OutputReport, PendingReport, RunReport, StateReport,
    Throughput,
};
use crate::sinks::SinkWriter;
use crate::sources::decode::RecordKind;
use crate::sources::file::FileReader;
use crate::sources::merge::{FileLabels, FileSource};
use crate::sources::simulator::SimulatorSource;
use crate::sources::{EventSource, SourceItem};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// Records per batch sent to the sink thread.
const BATCH: usize = 4096;
/// Events between progress and metrics updates.
const TICK: u64 = 1 << 15;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// No summary or progress on the terminal (files are still written).
    pub quiet: bool,
    /// Offer events at this rate (events per second) instead of as fast as
    /// possible, and measure offer-to-score latency (benchmarks).
    pub pace: Option<f64>,
}

/// Build the source a topology names.
pub fn build_source(t: &Topology) -> anyhow::Result<Box<dyn EventSource>> {
    Ok(match &t.source {
        SourceConfig::Simulator(cfg) => {
            let sim = fraudstream_sim::Simulator::new(cfg.clone())
                .map_err(|e| anyhow::anyhow!("simulator settings: {}", e.join("; ")))?;
            let with_labels = t.labels.source == LabelSource::Simulator;
            Box::new(SimulatorSource::new(sim, with_labels))
        }
        SourceConfig::File(input) => {
            let label_column = match &t.labels.source {
                LabelSource::Column { column, .. } => Some(column.as_str()),
                _ => None,
            };
            let txs = FileReader::open("source", input, RecordKind::Transaction, label_column)?;
            let labels = match &t.labels.source {
                LabelSource::File(l) => FileLabels::File(Box::new(FileReader::open(
                    "labels",
                    l,
                    RecordKind::Label,
                    None,
                )?)),
                LabelSource::Column { delay_ms, .. } => FileLabels::Column {
                    delay_ms: *delay_ms,
                },
                _ => FileLabels::None,
            };
            Box::new(FileSource::new(txs, labels, "source"))
        }
        SourceConfig::Fluvio(f) => anyhow::bail!(
            "{}: source.type = \"fluvio\" (topic {}) runs as a service, not as a finite stream",
            t.file,
            f.topic
        ),
    })
}

fn progress_bar(t: &Topology, quiet: bool) -> ProgressBar {
    let show = !quiet
        && match t.engine.progress {
            Progress::On => true,
            Progress::Off => false,
            Progress::Auto => std::io::stderr().is_terminal(),
        };
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} [{elapsed_precise}, ETA {eta}]")
            .expect("valid template"),
    );
    bar
}

/// Run `t` to the end of its input and return what it measured. Writes the
/// record sinks and the report, and prints the summary, as configured.
pub fn run(t: &Topology, opts: &RunOptions) -> anyhow::Result<RunReport> {
    if let SourceConfig::Fluvio(_) = t.source {
        return crate::service::run(t, &crate::service::ServiceOptions { quiet: opts.quiet });
    }
    let mut source = build_source(t)?;
    let mut sinks = SinkWriter::start(&t.sinks, BATCH)?;
    let bar = progress_bar(t, opts.quiet);
    let mut input = InputCounts::default();
    let started = Instant::now();
    let tick = |src: &dyn EventSource, _: &SourceItem, events: u64| {
        if events % TICK == 0 {
            if let Some(p) = src.progress() {
                bar.set_position((p * 1000.0) as u64);
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{events} events, {:.0}/s", events as f64 / secs));
        }
    };
    let mut dead_by_kind = std::collections::BTreeMap::<String, u64>::new();
    let on_reject = |dead: &crate::event::DeadLetter| {
        *dead_by_kind
            .entry(dead.kind.as_str().to_string())
            .or_default() += 1;
        metrics::counter!("fraudstream_dead_letters_total", "kind" => dead.kind.as_str())
            .increment(1);
    };
    let (engine, counts) = crate::runtime::run_parallel(
        t,
        t.engine.workers,
        opts.pace,
        &mut *source,
        &mut sinks,
        tick,
        on_reject,
    )?;
    let events = counts.events;
    input.transactions = counts.transactions;
    input.labels = counts.labels;
    input.dead_letters = dead_by_kind.values().sum();
    input.dead_letters_by_kind = dead_by_kind;
    let written = sinks.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    save_model(t, &engine)?;
    let report = report(t, &engine, input, events, seconds, written);
    publish_report(t, &report, opts.quiet)?;
    Ok(report)
}

/// Save the model where the topology says (`model.save`).
pub(crate) fn save_model(t: &Topology, engine: &Engine) -> anyhow::Result<()> {
    if let Some(path) = &t.model.save {
        engine
            .model()
            .save(path)
            .with_context(|| format!("saving the model to {}", path.display()))?;
    }
    Ok(())
}

/// Write the JSON report and print the summary, as the topology's sinks say.
pub(crate) fn publish_report(t: &Topology, report: &RunReport, quiet: bool) -> anyhow::Result<()> {
    if let Some(sink) = t.sink(SinkKind::Report) {
        let path = sink.path.as_ref().expect("validated: report has a path");
        report.write_json(path)?;
    }
    if !quiet && t.sink(SinkKind::Summary).is_some() {
        println!("{}", report.summary());
    }
    Ok(())
}

pub(crate) fn report(
    t: &Topology,
    engine: &Engine,
    input: InputCounts,
    events: u64,
    seconds: f64,
    written: crate::sinks::Written,
) -> RunReport {
    let eval = engine.evaluation();
    let overall = eval.summary(None);
    let last_n = t.evaluation.last_days;
    let from = overall.last_day.map(|d| d - last_n as i64 + 1);
    let last = eval.summary(from);
    let pending = engine.pending().stats();
    let (cards, merchants, bytes_card, bytes_merchant) = engine.state();
    let secs = seconds.max(1e-9);
    RunReport {
        topology: t.file.clone(),
        throughput: Throughput {
            seconds,
            events_per_sec: events as f64 / secs,
            transactions_per_sec: input.transactions as f64 / secs,
        },
        input,
        engine: engine.counters(),
        pending: PendingReport {
            held: engine.pending().len() as u64,
            evicted_capacity: pending.evicted_capacity,
            expired: pending.expired,
            replaced: pending.replaced,
        },
        state: StateReport {
            cards: cards as u64,
            merchants: merchants as u64,
            bytes_per_card: bytes_card as u64,
            bytes_per_merchant: bytes_merchant as u64,
        },
        latency: Latency::of(engine.latency()),
        latency_with_queueing: Latency::of(engine.queued_latency()),
        model_version: crate::model::OnlineModel::version(engine.model()),
        features: crate::features::feature_space(&t.features).dense_len() as u64,
        metrics: MetricsReport {
            overall,
            last_days: last,
            last_days_n: last_n,
        },
        daily: eval.daily(),
        model: t.model.portfolio.kind.name().to_string(),
        models: engine
            .portfolio()
            .map(|p| p.member_metrics(from))
            .unwrap_or_default(),
        drift_events: engine
            .portfolio()
            .map(|p| p.drift_events().0.to_vec())
            .unwrap_or_default(),
        drift_events_dropped: engine.portfolio().map_or(0, |p| p.drift_events().1),
        batch_swaps: engine.portfolio().map_or(0, |p| p.batch_swaps()),
        outputs: written
            .0
            .into_iter()
            .map(|(id, path, records)| OutputReport {
                id,
                path: path.display().to_string(),
                records,
            })
            .collect(),
    }
}
