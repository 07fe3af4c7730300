//! The engine as a long-running service on Fluvio topics.
//!
//! ```text
//! restore checkpoint ─► connect ─► open partitions at the checkpoint's offsets
//!   loop: pull (event-time merge) ─► engine ─► producer (scores, alerts, dead letters)
//!         every interval: flush producers ─► write checkpoint (state + offsets)
//!                         ─► commit consumer offsets
//!   SIGINT/SIGTERM (or idle with stop_when_idle): drain, flush, checkpoint, exit 0
//! ```
//!
//! Offsets are stored with the state they produced and committed only after
//! the outputs of the records before them were acknowledged: outputs are
//! at least once (records after the last checkpoint are scored again after a
//! crash), state is exactly once (a restart continues from the checkpoint as
//! if the crash never happened).

pub mod http;

use crate::config::{LabelSource, SourceConfig, Topology};
use crate::connectors::sinks::fluvio::open_topic_sinks;
use crate::connectors::sinks::report::{InputCounts, RunReport};
use crate::connectors::sinks::{Output, SinkRouter};
use crate::connectors::sources::decode::RecordKind;
use crate::connectors::sources::fluvio::{FluvioSource, OpenPlan, Pulled};
use crate::exec::checkpoint::{self, CheckpointHeader};
use anyhow::Context;
use fraudstream_engine::engine::Engine;
use fraudstream_engine::event::Event;
use http::{now_ms, Health, Phase};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How often counters and gauges are published and stop conditions checked.
const TICK: Duration = Duration::from_millis(500);
/// Longest wait for the producers to acknowledge what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a consumer offset commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often partition high watermarks (for lag) are fetched.
const WATERMARK_EVERY: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed once).
fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Options of a service run.
#[derive(Clone, Debug, Default)]
pub struct ServiceOptions {
    /// No progress lines or summary.
    pub quiet: bool,
}

/// Run the service for `t` until a signal (or `stop_when_idle`) stops it;
/// returns the report of the whole stream (restored counters included).
pub fn run(t: &Topology, opts: &ServiceOptions) -> anyhow::Result<RunReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("fraudstream-io")
        .build()
        .context("starting the I/O runtime")?;
    rt.block_on(run_async(t, opts))
}

async fn run_async(t: &Topology, opts: &ServiceOptions) -> anyhow::Result<RunReport> {
    let SourceConfig::Fluvio(tx_input) = &t.source else {
        anyhow::bail!("{}: the service needs source.type = \"fluvio\"", t.file);
    };
    let health = Arc::new(Health::default());
    health.set_phase(Phase::Starting);
    if let Some(addr) = &t.service.listen {
        let bound = http::serve(addr, health.clone(), recorder()).await?;
        if !opts.quiet {
            eprintln!("fraudstream: health and metrics on http://{bound}/health, /metrics");
        }
    }

    let mut engine = crate::exec::outputs::start_engine(t)?;
    let mut header = CheckpointHeader {
        written_ms: 0,
        sequence: 0,
        offsets: Vec::new(),
        totals: InputCounts::default(),
        settings: checkpoint::settings_of(t),
    };
    if let Some(c) = &t.checkpoint {
        if let Some(h) = checkpoint::restore(&c.dir, t, &mut engine)? {
            if !opts.quiet {
                eprintln!(
                    "fraudstream: restored checkpoint {} from {} ({} transactions scored so far)",
                    h.sequence,
                    checkpoint::path_in(&c.dir).display(),
                    engine.counters().scored
                );
            }
            health.last_checkpoint_ms.store(h.written_ms, Relaxed);
            header = h;
            header.settings = checkpoint::settings_of(t);
        }
    }

    let (fluvio, address) = crate::connectors::cluster::connect(&t.fluvio).await?;
    let mut plans = vec![OpenPlan {
        input: tx_input,
        kind: RecordKind::Transaction,
        resume: &header.offsets,
    }];
    if let LabelSource::Fluvio(l) = &t.labels.source {
        plans.push(OpenPlan {
            input: l,
            kind: RecordKind::Label,
            resume: &header.offsets,
        });
    }
    let mut source = FluvioSource::open(&fluvio, &plans)
        .await
        .with_context(|| format!("opening the input topics on {address}"))?;
    drop(plans);
    let mut sinks = SinkRouter::new(open_topic_sinks(&fluvio, &t.sinks).await?);
    if !opts.quiet {
        eprintln!("fraudstream: consuming {} on {address}", tx_input.topic);
    }
    health.set_phase(Phase::Running);

    let mut stop = Box::pin(shutdown_signal());
    let started = Instant::now();
    let mut events = 0u64;
    let mut events_tx = 0u64;
    let mut totals = header.totals.clone();
    let interval = t
        .checkpoint
        .as_ref()
        .map(|c| Duration::from_millis(c.interval_ms as u64));
    let mut last_checkpoint = Instant::now();
    let mut last_tick = Instant::now();
    let mut last_watermarks = Instant::now() - WATERMARK_EVERY;
    let mut last_rate = (Instant::now(), 0u64);
    let stop_idle = (t.service.stop_when_idle_ms > 0)
        .then(|| Duration::from_millis(t.service.stop_when_idle_ms as u64));
    let mut reason = "signal";
    let mut busy: Option<(Instant, Instant)> = None;

    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            pulled = source.pull(&fluvio, TICK) => {
                let pulled = pulled?;
                if let Pulled::Event(_) = pulled {
                    let now = Instant::now();
                    busy = Some((busy.map_or(now, |b| b.0), now));
                    events += 1;
                }
                match pulled {
                    Pulled::Event(Event::Transaction(tx)) => {
                        events_tx += 1;
                        totals.transactions += 1;
                        sinks.route(&Output::Score(engine.score(tx)))?;
                        sinks.send().await?;
                    }
                    Pulled::Event(Event::Label(l)) => {
                        totals.labels += 1;
                        engine.label(&l);
                    }
                    Pulled::Rejected(d) => {
                        totals.count_dead_letter(&d);
                        sinks.route(&Output::DeadLetter(d))?;
                        sinks.send().await?;
                    }
                    Pulled::Idle => {}
                }
            },
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            engine.publish_metrics();
            health
                .scored
                .store(engine.counters().scored as i64, Relaxed);
            if last_watermarks.elapsed() >= WATERMARK_EVERY {
                last_watermarks = Instant::now();
                if let Err(e) = source.refresh_watermarks(&fluvio).await {
                    eprintln!("fraudstream: reading partition watermarks: {e:#}");
                }
            }
            publish_gauges(&source, &engine, &health, &mut last_rate, events);
            if let Some(d) = stop_idle {
                if events > 0 && source.all_idle_for(d) {
                    reason = "idle";
                    break;
                }
            }
        }
        if let (Some(every), Some(c)) = (interval, &t.checkpoint) {
            if last_checkpoint.elapsed() >= every {
                take_checkpoint(
                    &c.dir,
                    &mut header,
                    &totals,
                    &engine,
                    &mut source,
                    &mut sinks,
                    &health,
                )
                .await?;
                last_checkpoint = Instant::now();
            }
        }
    }

    health.set_phase(Phase::Stopping);
    if !opts.quiet {
        eprintln!("fraudstream: stopping ({reason}): flushing outputs and writing a checkpoint");
    }
    tokio::time::timeout(FLUSH_TIMEOUT, sinks.flush())
        .await
        .map_err(|_| anyhow::anyhow!("flushing outputs took over {FLUSH_TIMEOUT:?}"))??;
    if let Some(c) = &t.checkpoint {
        take_checkpoint(
            &c.dir,
            &mut header,
            &totals,
            &engine,
            &mut source,
            &mut sinks,
            &health,
        )
        .await?;
    }
    engine.publish_metrics();
    crate::exec::outputs::save_model(t, &engine)?;
    let written = sinks.written();
    // Rates over the time the engine had work (first to last event), not
    // the time it waited for traffic.
    let busy_secs = busy.map_or(0.0, |(a, b)| b.duration_since(a).as_secs_f64());
    let mut report =
        crate::exec::outputs::run_report(t, &engine, totals, events, busy_secs, written);
    report.throughput.transactions_per_sec = events_tx as f64 / busy_secs.max(1e-9);
    if !opts.quiet {
        eprintln!(
            "fraudstream: {events} events in this run, busy {busy_secs:.2} s of {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    crate::exec::outputs::publish_report(t, &report, opts.quiet)?;
    Ok(report)
}

/// Flush outputs, write the checkpoint, then commit consumer offsets.
async fn take_checkpoint(
    dir: &std::path::Path,
    header: &mut CheckpointHeader,
    totals: &InputCounts,
    engine: &Engine,
    source: &mut FluvioSource,
    sinks: &mut SinkRouter,
    health: &Health,
) -> anyhow::Result<()> {
    let began = Instant::now();
    tokio::time::timeout(FLUSH_TIMEOUT, sinks.flush())
        .await
        .map_err(|_| anyhow::anyhow!("flushing outputs took over {FLUSH_TIMEOUT:?}"))?
        .context("flushing outputs before a checkpoint")?;
    header.sequence += 1;
    header.written_ms = now_ms();
    header.offsets = source.offsets();
    header.totals = totals.clone();
    let bytes = tokio::task::block_in_place(|| checkpoint::write(dir, header, engine))?;
    // The checkpoint holds the offsets a restart uses; the consumer's
    // committed offsets serve `start = "committed"` and lag tooling, so a
    // slow or failed commit is reported and the stream goes on.
    if source.commits_enabled() {
        match tokio::time::timeout(COMMIT_TIMEOUT, source.commit()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                metrics::counter!("fraudstream_offset_commit_failures_total").increment(1);
                eprintln!("fraudstream: committing consumer offsets: {e:#}");
            }
            Err(_) => {
                // A stuck commit would stall every checkpoint: stop trying.
                metrics::counter!("fraudstream_offset_commit_failures_total").increment(1);
                source.disable_commits();
                eprintln!(
                    "fraudstream: the cluster did not acknowledge a consumer offset commit \
                     within {COMMIT_TIMEOUT:?}; commits are off for this run (restarts resume \
                     from the checkpoint's offsets all the same)"
                );
            }
        }
    }
    health.last_checkpoint_ms.store(header.written_ms, Relaxed);
    metrics::counter!("fraudstream_checkpoints_total").increment(1);
    metrics::gauge!("fraudstream_checkpoint_bytes").set(bytes as f64);
    metrics::histogram!("fraudstream_checkpoint_seconds").record(began.elapsed().as_secs_f64());
    Ok(())
}

fn publish_gauges(
    source: &FluvioSource,
    engine: &Engine,
    health: &Health,
    last_rate: &mut (Instant, u64),
    events: u64,
) {
    for (topic, partition, lag) in source.lag() {
        metrics::gauge!(
            "fraudstream_consumer_lag",
            "topic" => topic.to_string(),
            "partition" => partition.to_string()
        )
        .set(lag as f64);
    }
    let secs = last_rate.0.elapsed().as_secs_f64();
    if secs >= 1.0 {
        metrics::gauge!("fraudstream_events_per_second").set((events - last_rate.1) as f64 / secs);
        *last_rate = (Instant::now(), events);
    }
    let last = health.last_checkpoint_ms.load(Relaxed);
    if last > 0 {
        metrics::gauge!("fraudstream_checkpoint_age_seconds")
            .set((now_ms() - last) as f64 / 1000.0);
    }
    let h = engine.latency();
    if !h.is_empty() {
        for (q, label) in [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")] {
            metrics::gauge!("fraudstream_score_latency_seconds", "quantile" => label)
                .set(h.value_at_quantile(q) as f64 / 1e9);
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
