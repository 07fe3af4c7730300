//! Running a topology: build its source, engine and sinks, drive events
//! through, show progress, and produce the run report.

use crate::config::{LabelSource, Progress, SourceConfig, Topology};
use crate::connectors::sinks::report::{InputCounts, RunReport};
use crate::connectors::sinks::SinkWriter;
use crate::connectors::sources::decode::RecordKind;
use crate::connectors::sources::file::FileReader;
use crate::connectors::sources::merge::{FileLabels, FileSource};
use crate::connectors::sources::simulator::SimulatorSource;
use crate::connectors::sources::{EventSource, SourceItem};
use crate::exec::outputs::{publish_report, run_report, save_model};
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
    /// A Fluvio service runs without the engine
    /// ([`ServiceOptions::null_pipeline`](crate::exec::service::ServiceOptions)).
    pub null_pipeline: bool,
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
        SourceConfig::Api(_) => anyhow::bail!(
            "{}: source.type = \"api\" runs as a service (the scoring API), not as a finite stream",
            t.file
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
    styled_bar(show)
}

/// A progress bar on stderr in per-mille steps (hidden unless `show`).
pub fn styled_bar(show: bool) -> ProgressBar {
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

/// Run `t` (a finite source: simulator or files) to the end of its input and
/// return what it measured. Writes the record sinks and the report, and
/// prints the summary, as configured. [`crate::exec::run`] also takes Fluvio
/// topologies.
pub fn run(t: &Topology, opts: &RunOptions) -> anyhow::Result<RunReport> {
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
    let on_reject = |dead: &fraudstream_engine::event::DeadLetter| input.count_dead_letter(dead);
    let ran = crate::exec::runtime::run_parallel(
        t,
        t.engine.workers,
        opts.pace,
        &mut *source,
        &mut sinks,
        tick,
        on_reject,
    );
    let (engine, counts) = match ran {
        Ok(r) => r,
        Err(e) => {
            bar.finish_and_clear();
            return Err(sinks.abandon(e));
        }
    };
    let events = counts.events;
    input.transactions = counts.transactions;
    input.labels = counts.labels;
    let written = sinks.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    save_model(t, &engine)?;
    let report = run_report(t, &engine, input, events, seconds, written);
    publish_report(t, &report, opts.quiet)?;
    Ok(report)
}
