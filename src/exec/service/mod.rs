//! The engine as a long-running service on Fluvio topics.
//!
//! ```text
//! restore checkpoint ─► connect ─► open partitions at the checkpoint's offsets
//!   loop: pull (event-time merge) ─► engine thread ─► producer (scores, alerts, dead letters)
//!         every interval: engine lent to the loop ─► flush producers ─► write checkpoint (state + offsets)
//!                         ─► commit consumer offsets
//!   SIGINT/SIGTERM (or idle with stop_when_idle): drain, flush, checkpoint, exit 0
//! ```
//!
//! Offsets are stored with the state they produced and committed only after
//! the outputs of the records before them were acknowledged: state is
//! exactly once (a restart continues from the checkpoint as if the crash
//! never happened), and outputs effectively once: the records replayed after
//! a crash do not write again what was written before it ([`delivery`]).

pub mod delivery;
pub mod engine_thread;
pub mod http;
pub mod prometheus;

use crate::config::{LabelSource, Records, Role, SinkConfig, SourceConfig, Topology};
use crate::connectors::sinks::fluvio::{open_topic_sinks, TopicSink};
use crate::connectors::sinks::report::{InputCounts, RunReport};
use crate::connectors::sinks::{Output, Sink, SinkRouter};
use crate::connectors::sources::decode::RecordKind;
use crate::connectors::sources::fluvio::{FluvioSource, InputRecords, OpenPlan};
use crate::connectors::sources::{Pulled, Source};
use crate::exec::checkpoint::{self, Chain, CheckpointHeader};
use crate::exec::dashboard::{Dashboard, PartitionLag};
use crate::exec::rules_watch::RulesWatch;
use anyhow::Context;
use engine_thread::{ApiRequests, EngineSide, EngineThread, FromEngine, Item, Outputs};
use fraudstream_engine::engine::Engine;
use fraudstream_engine::event::Event;
use fraudstream_engine::Named as _;
use http::{now_ms, Health, Phase};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often counters, gauges and the score latency are published and stop
/// conditions checked.
pub(crate) const TICK: Duration = Duration::from_millis(500);
/// Longest wait for the producers to acknowledge what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a consumer offset commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often partition high watermarks (for lag) are fetched.
const WATERMARK_EVERY: Duration = Duration::from_secs(5);
/// Outputs are handed to the producers in batches: when this many are
/// queued, or when the next input is not at hand (so no output waits for
/// one).
const SEND_BATCH: u32 = 512;

/// Options of a service run.
#[derive(Clone, Debug, Default)]
pub struct ServiceOptions {
    /// No progress lines or summary.
    pub quiet: bool,
    /// The null pipeline: everything the service does (consume and merge
    /// both topics, decode, produce one score record per transaction,
    /// checkpoint) except the engine's work: each transaction gets score 0
    /// and labels are only counted. The floor `bench --fluvio` measures the
    /// engine against.
    pub null_pipeline: bool,
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
    let stop = Shutdown::install();
    let mut service = Service::start(t, opts).await?;
    let mut stop = Box::pin(stop.wait());
    let reason = loop {
        tokio::select! {
            biased;
            _ = &mut stop => break "signal",
            done = from_engine(&mut service.thread) => match done? {
                FromEngine::Outputs(outputs) => service.route_outputs(outputs).await?,
                FromEngine::Lent(_) => anyhow::bail!("the engine thread handed the engine back unasked"),
            },
            pulled = service.source.pull(TICK) => match pulled? {
                Pulled::End => break "end of input",
                item => service.on_event(item).await?,
            },
        }
        if let Some(reason) = service.tick().await? {
            break reason;
        }
        if service.checkpoint_due() {
            service.checkpoint().await?;
        }
    };
    service.shutdown(reason).await
}

/// What the engine thread hands back next; never, without one (the null
/// pipeline).
async fn from_engine(thread: &mut Option<EngineThread>) -> anyhow::Result<FromEngine> {
    match thread {
        Some(t) => t.recv().await,
        None => std::future::pending().await,
    }
}

/// A running service: the engine, its input partitions and output topics,
/// and what it counts between checkpoints.
struct Service<'t> {
    t: &'t Topology,
    /// The stage(s) this process runs.
    role: Role,
    quiet: bool,
    null_pipeline: bool,
    /// The engine when it is on this thread: in the null pipeline, and
    /// from the start of a shutdown.
    side: Option<Box<EngineSide>>,
    /// The engine on its own thread (the service's normal state).
    thread: Option<EngineThread>,
    /// The last checkpoint's header; the next one is written from it.
    header: CheckpointHeader,
    /// The chain of whole checkpoints and deltas the next one extends.
    chain: Chain,
    source: FluvioSource,
    sinks: SinkRouter,
    health: Arc<Health>,
    started: Instant,
    /// Events in this run (all, and transactions).
    events: u64,
    /// Outputs routed and not yet handed to the producers (null pipeline).
    unsent: u32,
    /// First and last event of this run (rates over the time there was work).
    busy: Option<(Instant, Instant)>,
    last_checkpoint: Instant,
    last_tick: Instant,
    last_watermarks: Instant,
}

impl<'t> Service<'t> {
    /// Serve health and metrics, restore the checkpoint, connect, open the
    /// input partitions where the checkpoint left them and the output topics.
    async fn start(t: &'t Topology, opts: &ServiceOptions) -> anyhow::Result<Self> {
        let SourceConfig::Fluvio(tx_input) = &t.source else {
            anyhow::bail!("{}: the service needs source.type = \"fluvio\"", t.file);
        };
        let health = Arc::new(Health::default());
        health.set_phase(Phase::Starting);
        let (dashboard, feed) = Dashboard::new("fluvio");
        // The scoring API beside the stream (not in the null pipeline,
        // which has no engine to answer it).
        let (api_routes, requests) = match &t.api {
            Some(limits) if !opts.null_pipeline => {
                let (routes, queue) = crate::exec::api::beside_stream(limits);
                let answering = crate::exec::api::Answering::new(t);
                (Some(routes), Some(ApiRequests { answering, queue }))
            }
            _ => (None, None),
        };
        if let Some(addr) = &t.service.listen {
            let limits = http::Limits::of(&t.service);
            let api = api_routes.is_some();
            let bound = http::serve(
                addr,
                health.clone(),
                prometheus::recorder(),
                limits,
                api_routes,
                Some(feed),
            )
            .await?;
            if !opts.quiet {
                eprintln!(
                    "fraudstream: health and metrics on http://{bound}/health, /metrics; \
                     live dashboard at /{}",
                    if api {
                        "; scoring API: POST /v1/score, POST /v1/labels"
                    } else {
                        ""
                    }
                );
                if limits.max_connections < t.service.http_max_connections {
                    eprintln!(
                        "fraudstream: service.http_max_connections = {} is over half the \
                         open-file limit; the endpoint holds at most {} connections",
                        t.service.http_max_connections, limits.max_connections
                    );
                }
            }
        }
        let mut engine = crate::exec::outputs::start_engine(t)?;
        let header = restore(t, &mut engine, &health, opts.quiet)?;
        engine.set_wall_clock(now_ms());
        let (fluvio, address) = crate::connectors::cluster::connect(&t.fluvio).await?;
        let fluvio = Arc::new(fluvio);
        let role = t.role();
        let mut plans = Vec::new();
        let mut own_sinks: Vec<Box<dyn Sink>> = Vec::new();
        let mut stage_partitions = 1;
        let (mut replicate, mut owned, mut first_card) = (false, Vec::new(), None);
        match (role, &t.stages) {
            (Role::Card, Some(stages)) => {
                stage_partitions = stages.card_partitions as usize;
                owned = stages.input.partitions.clone();
                first_card = owned.iter().map(|p| p % stages.card_partitions).min();
                plans.push(OpenPlan {
                    input: &stages.input,
                    kind: InputRecords::Stage,
                    resume: &header.offsets,
                });
                if let Some((read, write)) = &stages.learn {
                    plans.push(OpenPlan {
                        input: read,
                        kind: InputRecords::Stage,
                        resume: &header.offsets,
                    });
                    let learn = TopicSink::open(&fluvio, "stages.learn", Records::Learn, write);
                    own_sinks.push(Box::new(learn.await?));
                    engine.stages_mut().1.replicate_learning();
                }
            }
            (Role::Merchant, Some(stages)) => {
                let n = crate::connectors::cluster::partition_count(&fluvio, &stages.input.topic)
                    .await?;
                anyhow::ensure!(
                    n == stages.input.topic_partitions,
                    "{}: the stage topic {} has {n} partitions, the topology {} (source \
                     partitions × stages.card_partitions; label routes depend on it: \
                     recreate the topic, or set the counts it was made for)",
                    t.file,
                    stages.input.topic,
                    stages.input.topic_partitions
                );
                stage_partitions = stages.card_partitions as usize;
                replicate = stages.learn.is_some();
                let out = TopicSink::open(&fluvio, "stages", Records::Stage, &stages.output);
                own_sinks.push(Box::new(out.await?));
            }
            _ => {}
        }
        if role != Role::Card {
            plans.push(OpenPlan {
                input: tx_input,
                kind: InputRecords::Events(RecordKind::Transaction),
                resume: &header.offsets,
            });
            if let LabelSource::Fluvio(l) = &t.labels.source {
                plans.push(OpenPlan {
                    input: l,
                    kind: InputRecords::Events(RecordKind::Label),
                    resume: &header.offsets,
                });
            }
        }
        let source = FluvioSource::open(fluvio.clone(), &plans)
            .await
            .with_context(|| format!("opening the input topics on {address}"))?;
        drop(plans);
        // A merchant stage writes no scores: only what it rejects.
        let outputs: Vec<SinkConfig> = t
            .sinks
            .iter()
            .filter(|s| {
                role != Role::Merchant
                    || matches!(
                        s,
                        SinkConfig::Records {
                            records: Records::DeadLetters,
                            ..
                        }
                    )
            })
            .cloned()
            .collect();
        let mut sinks = open_topic_sinks(&fluvio, &outputs).await?;
        sinks.extend(own_sinks);
        let mut sinks = SinkRouter::new(sinks);
        let mut header = header;
        if header.sequence == 0 {
            header.lineage = delivery::new_lineage();
            header.outputs = delivery::baseline(&fluvio, &sinks)
                .await
                .context("reading where the output topics end")?;
        } else {
            let found = delivery::read_back(
                &fluvio,
                &header.outputs,
                header.lineage,
                &source,
                &mut sinks,
            )
            .await?;
            if !opts.quiet {
                eprintln!(
                    "fraudstream: read {} output records written since checkpoint {} in {:.2} s; \
                     {} of them from inputs this restart replays, not written again",
                    found.records, header.sequence, found.seconds, found.ours
                );
            }
        }
        if !opts.quiet {
            let topics: Vec<String> = source.topics();
            eprintln!(
                "fraudstream: {} stage{}: consuming {} on {address}",
                role.name(),
                if role == Role::All { "s" } else { "" },
                topics.join(", ")
            );
        }
        health.set_phase(Phase::Running);
        health
            .scored
            .store(engine.counters().scored as i64, Relaxed);
        let side = Box::new(EngineSide {
            engine,
            role,
            stage_partitions,
            replicate,
            owned,
            first_card: first_card.unwrap_or(0),
            totals: header.totals.clone(),
            events_tx: 0,
            rules: t
                .decisions
                .enabled
                .then(|| RulesWatch::start(t))
                .transpose()?,
            dashboard,
        });
        let (side, thread) = if opts.null_pipeline {
            (Some(side), None)
        } else {
            (
                None,
                Some(EngineThread::spawn(side, health.clone(), requests)?),
            )
        };
        let now = Instant::now();
        let mut service = Service {
            t,
            role,
            quiet: opts.quiet,
            null_pipeline: opts.null_pipeline,
            side,
            thread,
            header,
            chain: Chain::default(),
            source,
            sinks,
            health,
            started: now,
            events: 0,
            unsent: 0,
            busy: None,
            last_checkpoint: now,
            last_tick: now,
            last_watermarks: now - WATERMARK_EVERY,
        };
        if service.header.sequence == 0 {
            // The lineage and where the outputs began are stored before the
            // first output, so a crash before the first interval does not
            // lose them.
            service.checkpoint().await?;
        }
        Ok(service)
    }

    /// Hand an event (or a rejected record) to the engine thread; the
    /// batch goes at once when the next input is not at hand, so no event
    /// waits for another.
    async fn on_event(&mut self, pulled: Pulled) -> anyhow::Result<()> {
        match pulled {
            Pulled::Event(_) | Pulled::Stage(_) => {
                let now = Instant::now();
                self.busy = Some((self.busy.map_or(now, |b| b.0), now));
                self.events += 1;
            }
            Pulled::Rejected(_) => {}
            Pulled::Idle | Pulled::End => return Ok(()),
        }
        if self.null_pipeline {
            return self.on_event_null(pulled).await;
        }
        let item = Item {
            pulled,
            origin: self.source.origin(),
            lane: self.source.last_partition().unwrap_or(0),
        };
        let now = !self.source.ready();
        let thread = self.thread.as_mut().context("the engine thread is gone")?;
        thread.push(item, now)
    }

    /// Route a batch of the engine's outputs, each with the provenance of
    /// its input, and hand them to the producers.
    async fn route_outputs(&mut self, outputs: Outputs) -> anyhow::Result<()> {
        let lineage = self.header.lineage;
        for (o, origin, value) in &outputs.items {
            match origin {
                Some(origin) => {
                    let from = self.source.provenance_at(*origin, lineage);
                    self.sinks
                        .route_encoded_from(o, &outputs.values[value.clone()], &from)?;
                }
                // The API's: no input replays them, nothing to suppress.
                None => self.sinks.route(o)?,
            }
        }
        if let Some(b) = &mut self.busy {
            b.1 = Instant::now();
        }
        self.sinks.send().await
    }

    /// The engine, here: every batch sent to its thread processed and the
    /// outputs routed first. [`put_engine`](Self::put_engine) returns it.
    async fn take_engine(&mut self) -> anyhow::Result<Box<EngineSide>> {
        if let Some(side) = self.side.take() {
            return Ok(side);
        }
        let thread = self.thread.as_mut().context("the engine thread is gone")?;
        thread.lend()?;
        loop {
            let thread = self.thread.as_mut().context("the engine thread is gone")?;
            match thread.recv().await? {
                FromEngine::Outputs(outputs) => self.route_outputs(outputs).await?,
                FromEngine::Lent(side) => return Ok(side),
            }
        }
    }

    /// Give the engine back to its thread (or keep it here without one).
    fn put_engine(&mut self, side: Box<EngineSide>) -> anyhow::Result<()> {
        match &mut self.thread {
            Some(t) => t.give_back(side),
            None => {
                self.side = Some(side);
                Ok(())
            }
        }
    }

    /// Hand the queued outputs to the producers once [`SEND_BATCH`] are
    /// queued or the next input is not at hand.
    async fn send_soon(&mut self) -> anyhow::Result<()> {
        self.unsent += 1;
        if self.unsent >= SEND_BATCH || !self.source.ready() {
            self.unsent = 0;
            self.sinks.send().await?;
        }
        Ok(())
    }

    /// [`on_event`](Self::on_event) of the null pipeline.
    async fn on_event_null(&mut self, pulled: Pulled) -> anyhow::Result<()> {
        let from = self.source.provenance(self.header.lineage);
        let here = (self.side.as_deref_mut()).context("the engine is not on this thread")?;
        match pulled {
            Pulled::Event(Event::Transaction(tx)) => {
                here.events_tx += 1;
                here.totals.transactions += 1;
                let score = fraudstream_engine::event::Score {
                    tx_id: tx.tx_id,
                    ts: tx.ts,
                    card_id: tx.card_id,
                    score: 0.0,
                    alert: false,
                    model_version: 0,
                    top_features: Vec::new(),
                    decision: None,
                    reasons: Vec::new(),
                };
                let from = from.context("a transaction without an input position")?;
                self.sinks.route_from(&Output::Score(score), &from)?;
                self.send_soon().await?;
            }
            Pulled::Event(Event::Label(_)) => here.totals.labels += 1,
            // The null pipeline runs both stages' inputs in one process.
            Pulled::Stage(_) => {}
            Pulled::Rejected(d) => {
                here.totals.count_dead_letter(&d);
                let from = from.context("a rejected record without an input position")?;
                self.sinks.route_from(&Output::DeadLetter(d), &from)?;
                self.send_soon().await?;
            }
            Pulled::Idle | Pulled::End => {}
        }
        Ok(())
    }

    /// Every [`TICK`]: publish metrics and gauges, refresh partition
    /// watermarks now and then; `Some(reason)` when the service should stop
    /// (`stop_when_idle`).
    async fn tick(&mut self) -> anyhow::Result<Option<&'static str>> {
        if self.last_tick.elapsed() < TICK {
            return Ok(None);
        }
        self.last_tick = Instant::now();
        let lag = self
            .source
            .lag()
            .map(|(topic, partition, lag)| PartitionLag {
                topic: topic.to_string(),
                partition,
                lag,
            })
            .collect();
        match (&mut self.thread, &mut self.side) {
            (Some(t), _) => t.tick(now_ms(), lag)?,
            (None, Some(side)) => side.tick(now_ms(), &self.health, lag),
            (None, None) => anyhow::bail!("the engine thread is gone"),
        }
        if self.last_watermarks.elapsed() >= WATERMARK_EVERY {
            self.last_watermarks = Instant::now();
            if let Err(e) = self.source.refresh_watermarks().await {
                eprintln!("fraudstream: reading partition watermarks: {e:#}");
            }
        }
        publish_gauges(&self.source, &self.health);
        let idle = self.t.service.stop_when_idle_ms;
        // Traffic seen in this run or before the restore: a restarted
        // service with nothing left to read stops too.
        let had_traffic = self.events > 0 || self.health.scored.load(Relaxed) > 0;
        let stop =
            idle > 0 && had_traffic && self.source.all_idle_for(Duration::from_millis(idle as u64));
        Ok(stop.then_some("idle"))
    }

    /// Whether the checkpoint interval has passed.
    fn checkpoint_due(&self) -> bool {
        self.t.checkpoint.as_ref().is_some_and(|c| {
            self.last_checkpoint.elapsed() >= Duration::from_millis(c.interval_ms as u64)
        })
    }

    /// Flush outputs, write the checkpoint, then commit consumer offsets.
    async fn checkpoint(&mut self) -> anyhow::Result<()> {
        if self.t.checkpoint.is_none() {
            return Ok(());
        }
        let mut side = self.take_engine().await?;
        let written = self.checkpoint_with(&mut side).await;
        self.put_engine(side)?;
        written
    }

    /// [`checkpoint`](Self::checkpoint) with the engine here.
    async fn checkpoint_with(&mut self, side: &mut EngineSide) -> anyhow::Result<()> {
        let Some(c) = &self.t.checkpoint else {
            return Ok(());
        };
        let began = Instant::now();
        tokio::time::timeout(FLUSH_TIMEOUT, self.sinks.flush())
            .await
            .map_err(|_| anyhow::anyhow!("flushing outputs took over {FLUSH_TIMEOUT:?}"))?
            .context("flushing outputs before a checkpoint")?;
        let offsets = self.source.offsets();
        // Outputs for inputs the stream has passed will not come again.
        let source = &self.source;
        self.sinks.prune_suppressed(|key| !source.passed(key));
        if self.header.sequence > 0 && offsets == self.header.offsets {
            // Nothing consumed since the last checkpoint: it is still the
            // state, so it is not rewritten (an idle service would otherwise
            // rewrite all of its state every interval).
            metrics::counter!("fraudstream_checkpoints_skipped_total").increment(1);
            self.health.last_checkpoint_ms.store(now_ms(), Relaxed);
            self.last_checkpoint = Instant::now();
            return Ok(());
        }
        let header = &mut self.header;
        header.sequence += 1;
        header.written_ms = now_ms();
        header.offsets = offsets;
        header.totals = side.totals.clone();
        delivery::advance(&mut header.outputs, &self.sinks);
        let (chain, engine) = (&mut self.chain, &mut side.engine);
        let written = tokio::task::block_in_place(|| chain.write(c, header, engine))?;
        commit_offsets(&mut self.source).await;
        self.health
            .last_checkpoint_ms
            .store(header.written_ms, Relaxed);
        let kind = if written.delta { "delta" } else { "base" };
        metrics::counter!("fraudstream_checkpoints_total", "kind" => kind).increment(1);
        metrics::gauge!("fraudstream_checkpoint_bytes").set(written.bytes as f64);
        metrics::histogram!("fraudstream_checkpoint_seconds").record(began.elapsed().as_secs_f64());
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Drain: flush outputs, write a last checkpoint, save the model and
    /// publish the report of the whole stream (restored counters included).
    async fn shutdown(mut self, reason: &str) -> anyhow::Result<RunReport> {
        self.health.set_phase(Phase::Stopping);
        if !self.quiet {
            eprintln!(
                "fraudstream: stopping ({reason}): flushing outputs and writing a checkpoint"
            );
        }
        // The engine comes here for good: its thread ends.
        let side = self.take_engine().await?;
        self.thread = None;
        self.side = Some(side);
        tokio::time::timeout(FLUSH_TIMEOUT, self.sinks.flush())
            .await
            .map_err(|_| anyhow::anyhow!("flushing outputs took over {FLUSH_TIMEOUT:?}"))??;
        self.checkpoint().await?;
        let mut side = self.take_engine().await?;
        prometheus::publish_engine(&mut side.engine);
        let t = self.t;
        crate::exec::outputs::save_model(t, &side.engine)?;
        // Rates over the time the engine had work (first to last event), not
        // the time it waited for traffic.
        let busy_secs = self
            .busy
            .map_or(0.0, |(a, b)| b.duration_since(a).as_secs_f64());
        let written = self.sinks.written();
        let mut report = crate::exec::outputs::run_report(
            t,
            &side.engine,
            side.totals.clone(),
            self.events,
            busy_secs,
            written,
        );
        report.throughput.transactions_per_sec = side.events_tx as f64 / busy_secs.max(1e-9);
        if self.role == Role::Card && !self.quiet {
            let r = side.engine.stages_mut().1.replica_stats();
            eprintln!(
                "fraudstream: learnt {} labels of other card stages' cards ({} after waiting \
                 for their vector); {} still waiting, {} dropped",
                r.learnt, r.waited, r.waiting, r.dropped
            );
        }
        if !self.quiet {
            eprintln!(
                "fraudstream: {} events in this run, busy {busy_secs:.2} s of {:.2} s",
                self.events,
                self.started.elapsed().as_secs_f64()
            );
        }
        crate::exec::outputs::publish_report(t, &report, self.quiet)?;
        Ok(report)
    }
}

/// The header to continue from: the checkpoint's (its state restored into
/// `engine`), or a fresh one.
fn restore(
    t: &Topology,
    engine: &mut Engine,
    health: &Health,
    quiet: bool,
) -> anyhow::Result<CheckpointHeader> {
    let fresh = CheckpointHeader {
        written_ms: 0,
        sequence: 0,
        offsets: Vec::new(),
        totals: InputCounts::default(),
        settings: checkpoint::settings_of(t),
        lineage: 0,
        outputs: Vec::new(),
    };
    let Some(c) = &t.checkpoint else {
        return Ok(fresh);
    };
    let Some(restored) = checkpoint::restore(&c.dir, t, engine)? else {
        return Ok(fresh);
    };
    // A fallback is news whether or not progress is shown.
    for line in restored.fallbacks() {
        eprintln!("fraudstream: {line}");
    }
    let mut h = restored.header;
    if !quiet {
        eprintln!(
            "fraudstream: restored checkpoint {} from {}{} ({} transactions scored so far)",
            h.sequence,
            restored.path.display(),
            match restored.deltas {
                0 => String::new(),
                n => format!(" (its base and {n} deltas)"),
            },
            engine.counters().scored
        );
    }
    health.last_checkpoint_ms.store(h.written_ms, Relaxed);
    h.settings = fresh.settings;
    Ok(h)
}

/// Commit the consumer offsets of the checkpoint just written. The
/// checkpoint holds the offsets a restart uses; the consumer's committed
/// offsets serve `start = "committed"` and lag tooling, so a slow or failed
/// commit is reported and the stream goes on.
async fn commit_offsets(source: &mut FluvioSource) {
    if !source.commits_enabled() {
        return;
    }
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

/// The consumer lag of each input partition and the checkpoint's age (no
/// rates: Prometheus derives them from the counters).
fn publish_gauges(source: &FluvioSource, health: &Health) {
    for (topic, partition, lag) in source.lag() {
        metrics::gauge!(
            "fraudstream_consumer_lag",
            "topic" => topic.to_string(),
            "partition" => partition.to_string()
        )
        .set(lag as f64);
    }
    let last = health.last_checkpoint_ms.load(Relaxed);
    if last > 0 {
        metrics::gauge!("fraudstream_checkpoint_age_seconds")
            .set((now_ms() - last) as f64 / 1000.0);
    }
}

/// SIGINT and SIGTERM, caught from the moment this is installed: a signal
/// that comes before anyone waits (say, right after the address line, which
/// a supervisor or a test may answer at once) ends the service cleanly
/// rather than killing the process. Install inside the runtime.
pub(crate) struct Shutdown {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Shutdown {
    /// Catch SIGINT and SIGTERM from now on.
    pub(crate) fn install() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            Shutdown { signals }
        }
        #[cfg(not(unix))]
        {
            Shutdown {}
        }
    }

    /// Resolves on SIGINT or SIGTERM (since [`install`](Self::install)).
    pub(crate) async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.signals {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
