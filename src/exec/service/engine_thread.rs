//! The service's engine on a thread of its own.
//!
//! ```text
//! main thread: pull (merge) ─► batch ─► engine thread: admit, stages, model
//!      ▲                                        │
//!      └──── route, encode, produce ◄── outputs, each with its input position
//! ```
//!
//! The thread that runs the service's loop pulls events, routes outputs to
//! the producers and keeps the checkpoints; the engine thread does every
//! event's engine work, in input order, and hands back each batch's outputs
//! with the input position each came from (for effectively-once delivery).
//! So the engine's CPU time is off the loop that feeds it, and both run on
//! the two cores at once: the same events in the same order give the same
//! outputs as one thread did.
//!
//! The engine goes back to the service's loop for a checkpoint or the end
//! ([`EngineThread::lend`]): every batch sent before is processed and its
//! outputs handed over first, so a checkpoint holds exactly the state of the
//! inputs before its offsets.
//!
//! With `[api]`, the thread also answers the scoring API's requests
//! (`exec::api::Answering`), first and between two batches: a
//! request waits for at most the batch in hand ([`ENGINE_BATCH`] events),
//! and a card's transactions from the API and from the topic share one
//! history. Their outputs have no input position (nothing replays them);
//! their effect on the state is kept from the next checkpoint on.

use crate::config::Role;
use crate::connectors::sinks::fluvio::encode_value;
use crate::connectors::sinks::report::InputCounts;
use crate::connectors::sinks::Output;
use crate::connectors::sources::decode::refused;
use crate::connectors::sources::Pulled;
use crate::connectors::stage::{StageRecord, StagedTransaction};
use crate::exec::api::{Answering, Beside, Work};
use crate::exec::dashboard::{Dashboard, PartitionLag};
use crate::exec::service::http::Health;
use anyhow::Context;
use crossbeam::channel::{bounded, Receiver, Sender};
use fraudstream_engine::engine::Engine;
use fraudstream_engine::event::Event;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Events per batch handed to the engine thread (sooner when the next input
/// is not at hand).
pub const ENGINE_BATCH: usize = 256;

/// Batches queued for the engine thread; the loop waits when it is this far
/// ahead.
const QUEUED_BATCHES: usize = 8;

/// Where an input record sits: the source's partition index and the
/// record's offset ([`crate::connectors::sources::fluvio::FluvioSource::provenance_at`]).
pub type Origin = (usize, i64);

/// One pulled record for the engine, with where it came from and the
/// input partition's lane (a merchant stage routes by it).
pub struct Item {
    /// The record.
    pub pulled: Pulled,
    /// Its input position; `None` only for what has none (idle, end).
    pub origin: Option<Origin>,
    /// Its input partition.
    pub lane: u32,
}

/// The engine and what the service decides and counts with it.
pub struct EngineSide {
    /// Both stages (a process running one uses only that one).
    pub engine: Engine,
    /// The stage(s) this process runs.
    pub role: Role,
    /// Card partitions of the stage topic.
    pub stage_partitions: usize,
    /// A merchant stage: labels go to every card partition of their lane.
    pub replicate: bool,
    /// A card stage: its stage-topic partitions.
    pub owned: Vec<u32>,
    /// A card stage: the first of its card partitions.
    pub first_card: u32,
    /// Valid inputs and dead letters of the stream (restored ones included).
    pub totals: InputCounts,
    /// Transactions scored (or staged) in this run.
    pub events_tx: u64,
    /// Rules reloaded from `[decisions] rules` (applied at the next tick),
    /// and the watcher that reads them.
    pub rules: Option<(
        crate::exec::rules_watch::RulesWatch,
        crossbeam::channel::Receiver<fraudstream_engine::decide::RuleSet>,
    )>,
    /// The live dashboard: fed each score, published each tick.
    pub dashboard: Dashboard,
}

impl EngineSide {
    /// Admit, score or learn `item`, or pass its dead letter on; its
    /// outputs go to `out`, each with the input position it came from.
    pub fn process(&mut self, item: Item, out: &mut Vec<(Output, Origin)>) -> anyhow::Result<()> {
        let Item {
            pulled,
            origin,
            lane,
        } = item;
        let pulled = match pulled {
            Pulled::Event(event) => match self.engine.admit(&event) {
                Ok(()) => Pulled::Event(event),
                Err(refusal) => Pulled::Rejected(refused(&event, refusal)),
            },
            other => other,
        };
        match pulled {
            Pulled::Event(Event::Transaction(tx)) => {
                self.events_tx += 1;
                self.totals.transactions += 1;
                let from = origin.context("a transaction without an input position")?;
                let o = if self.role == Role::Merchant {
                    // One lane of card partitions per input partition.
                    let ctx = (self.engine.stages_mut().0).on_transaction_at(
                        &tx,
                        self.stage_partitions,
                        lane as usize * self.stage_partitions,
                    );
                    Output::Stage(StageRecord::Transaction(Box::new(StagedTransaction {
                        tx,
                        ctx,
                    })))
                } else {
                    let score = self.engine.score(tx);
                    self.dashboard.observe(&score);
                    Output::Score(score)
                };
                out.push((o, from));
            }
            Pulled::Event(Event::Label(l)) => {
                self.totals.labels += 1;
                if self.role != Role::Merchant {
                    self.engine.label(&l);
                } else if let Some((owner, label)) = self.engine.stages_mut().0.on_label(&l) {
                    let from = origin.context("a label without an input position")?;
                    let owner = owner as u32;
                    // Replicated learning: every card partition of the lane.
                    let c = self.stage_partitions as u32;
                    let copies = if self.replicate {
                        (owner - owner % c)..(owner - owner % c + c)
                    } else {
                        owner..owner + 1
                    };
                    for partition in copies {
                        let record = StageRecord::Label {
                            partition,
                            owner,
                            label,
                        };
                        out.push((Output::Stage(record), from));
                    }
                }
            }
            Pulled::Stage(record) => self.staged(record, origin, out)?,
            Pulled::Rejected(d) => {
                self.totals.count_dead_letter(&d);
                let from = origin.context("a rejected record without an input position")?;
                out.push((Output::DeadLetter(d), from));
            }
            Pulled::Idle | Pulled::End => {}
        }
        Ok(())
    }

    /// A card stage's record from the merchant stage.
    fn staged(
        &mut self,
        record: StageRecord,
        origin: Option<Origin>,
        out: &mut Vec<(Output, Origin)>,
    ) -> anyhow::Result<()> {
        let card = self.engine.stages_mut().1;
        let from = origin.context("a stage record without an input position")?;
        match record {
            StageRecord::Transaction(t) => {
                self.events_tx += 1;
                self.totals.transactions += 1;
                let StagedTransaction { tx, ctx } = *t;
                let score = card.score(tx, &ctx);
                self.dashboard.observe(&score);
                out.push((Output::Score(score), from));
                let owner = u32::from(ctx.worker);
                for replica in card.take_replicas() {
                    let replica = Box::new(replica);
                    out.push((Output::Stage(StageRecord::Vector { owner, replica }), from));
                }
            }
            StageRecord::Label {
                partition,
                owner,
                label,
            } => {
                let c = self.stage_partitions as u32;
                if self.owned.contains(&owner) {
                    // The owner's own copy: evaluate, flag, learn.
                    if partition == owner {
                        self.totals.labels += 1;
                        card.label(&label);
                    }
                } else if partition % c == self.first_card {
                    // One copy per lane for a card stage that does not own
                    // the card: learn from its replica.
                    card.learn_replica(&label);
                }
            }
            StageRecord::Vector { owner, replica } => {
                if !self.owned.contains(&owner) {
                    card.hold_replica(&replica);
                }
            }
        }
        Ok(())
    }

    /// Every tick of the service: the wall clock events may not run ahead
    /// of, rules reloaded since the last, counters, gauges and the
    /// score-latency histogram published, the scored count for `/health`,
    /// the dashboard's snapshot (with the consumer `lag` the service's loop
    /// measured).
    pub fn tick(&mut self, now_ms: i64, health: &Health, lag: Vec<PartitionLag>) {
        self.engine.set_wall_clock(now_ms);
        if let Some((_, reloads)) = &self.rules {
            while let Ok(r) = reloads.try_recv() {
                self.engine.set_rules(r);
            }
        }
        crate::exec::service::prometheus::publish_engine(&mut self.engine);
        health
            .scored
            .store(self.engine.counters().scored as i64, Relaxed);
        self.dashboard
            .publish(now_ms, &self.engine, &self.totals, lag);
    }
}

/// What the loop asks of the engine thread.
enum ToEngine {
    Work(Vec<Item>),
    /// The wall clock (epoch ms) and the consumer lag per partition.
    Tick(i64, Vec<PartitionLag>),
    /// Hand the engine over once everything before is processed, and wait
    /// for it to come back.
    Lend,
}

/// A batch's outputs, in input order, each with its input position and
/// its record value, encoded on the engine thread
/// ([`encode_value`]) into one buffer for the batch.
#[derive(Default)]
pub struct Outputs {
    /// Output, input position (none for the API's), and the range of
    /// `values` its value holds.
    pub items: Vec<(Output, Option<Origin>, std::ops::Range<usize>)>,
    /// Every output's record value, one after another.
    pub values: Vec<u8>,
}

impl Outputs {
    /// Encode and add `out`'s outputs.
    fn extend(&mut self, out: &mut Vec<(Output, Origin)>) -> anyhow::Result<()> {
        for (o, origin) in out.drain(..) {
            self.push(o, Some(origin))?;
        }
        Ok(())
    }

    /// Encode and add one output.
    fn push(&mut self, o: Output, origin: Option<Origin>) -> anyhow::Result<()> {
        let start = self.values.len();
        encode_value(&o, &mut self.values)?;
        self.items.push((o, origin, start..self.values.len()));
        Ok(())
    }
}

/// What the engine thread hands back.
pub enum FromEngine {
    /// A batch's outputs.
    Outputs(Outputs),
    /// The engine, lent (see [`EngineThread::lend`]).
    Lent(Box<EngineSide>),
}

/// The engine on its own thread, and the loop's ends of its channels.
pub struct EngineThread {
    work: Sender<ToEngine>,
    done: tokio::sync::mpsc::UnboundedReceiver<FromEngine>,
    back: Sender<Box<EngineSide>>,
    batch: Vec<Item>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl EngineThread {
    /// Run `side` on a thread of its own, answering the scoring API's
    /// `requests` too when given.
    pub(crate) fn spawn(
        side: Box<EngineSide>,
        health: Arc<Health>,
        requests: Option<ApiRequests>,
    ) -> anyhow::Result<Self> {
        let (work, work_rx) = bounded(QUEUED_BATCHES);
        let (back, back_rx) = bounded(1);
        // Unbounded, so the engine never waits on the loop while the loop
        // waits on it; what it holds is bounded by the batches queued.
        let (done_tx, done) = tokio::sync::mpsc::unbounded_channel();
        let handle = std::thread::Builder::new()
            .name("fraudstream-engine".into())
            .spawn(move || serve(side, &work_rx, &done_tx, &back_rx, &health, requests))
            .context("starting the engine thread")?;
        Ok(EngineThread {
            work,
            done,
            back,
            batch: Vec::with_capacity(ENGINE_BATCH),
            handle: Some(handle),
        })
    }

    /// Queue `item`; the batch goes to the engine when full or when `now`.
    pub fn push(&mut self, item: Item, now: bool) -> anyhow::Result<()> {
        self.batch.push(item);
        if now || self.batch.len() >= ENGINE_BATCH {
            self.send_batch()?;
        }
        Ok(())
    }

    /// Hand the queued items to the engine.
    pub fn send_batch(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(ENGINE_BATCH));
        self.send(ToEngine::Work(batch))
    }

    /// Publish counters and the dashboard (with `lag`) and set the wall
    /// clock, after what is queued.
    pub fn tick(&mut self, now_ms: i64, lag: Vec<PartitionLag>) -> anyhow::Result<()> {
        self.send_batch()?;
        self.send(ToEngine::Tick(now_ms, lag))
    }

    /// Ask for the engine: what comes back before it ([`FromEngine::Outputs`])
    /// must be routed, then [`FromEngine::Lent`] is the engine, to be given
    /// [`back`](Self::give_back) (or kept at the end).
    pub fn lend(&mut self) -> anyhow::Result<()> {
        self.send_batch()?;
        self.send(ToEngine::Lend)
    }

    /// Return a lent engine to its thread.
    pub fn give_back(&mut self, side: Box<EngineSide>) -> anyhow::Result<()> {
        if self.back.send(side).is_err() {
            return Err(self.stopped());
        }
        Ok(())
    }

    /// The next thing the engine hands back (cancel-safe).
    pub async fn recv(&mut self) -> anyhow::Result<FromEngine> {
        match self.done.recv().await {
            Some(m) => Ok(m),
            None => Err(self.stopped()),
        }
    }

    fn send(&mut self, m: ToEngine) -> anyhow::Result<()> {
        if self.work.send(m).is_err() {
            return Err(self.stopped());
        }
        Ok(())
    }

    /// Why the engine thread is gone: its error or panic.
    fn stopped(&mut self) -> anyhow::Error {
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => e.context("the engine thread stopped"),
            Some(Err(panic)) => anyhow::anyhow!(
                "the engine thread panicked: {}",
                crate::panic_message(&*panic)
            ),
            Some(Ok(Ok(()))) | None => anyhow::anyhow!("the engine thread stopped"),
        }
    }
}

/// The scoring API's requests for the engine thread, and what answers them.
pub(crate) struct ApiRequests {
    pub(crate) answering: Answering,
    pub(crate) queue: Receiver<Work>,
}

/// The engine thread's loop: work in order, ticks, lends, and the API's
/// requests first whenever there are any; it ends when the loop drops its
/// end (or with the first error).
fn serve(
    mut side: Box<EngineSide>,
    work: &Receiver<ToEngine>,
    done: &tokio::sync::mpsc::UnboundedSender<FromEngine>,
    back: &Receiver<Box<EngineSide>>,
    health: &Health,
    mut requests: Option<ApiRequests>,
) -> anyhow::Result<()> {
    let mut out = Vec::new();
    loop {
        let m = match &requests {
            None => work.recv(),
            Some(api) => {
                if let Ok(request) = api.queue.try_recv() {
                    if !answer(&mut side, api, request, done, health)? {
                        return Ok(());
                    }
                    continue;
                }
                crossbeam::select! {
                    recv(work) -> m => m,
                    recv(api.queue) -> request => {
                        match request {
                            Ok(request) => {
                                if !answer(&mut side, api, request, done, health)? {
                                    return Ok(());
                                }
                            }
                            // The HTTP side is gone: stream work only.
                            Err(_) => requests = None,
                        }
                        continue;
                    }
                }
            }
        };
        let Ok(m) = m else { break };
        match m {
            ToEngine::Work(items) => {
                let mut batch = Outputs {
                    items: Vec::with_capacity(items.len() + items.len() / 8),
                    values: Vec::with_capacity(items.len() * 256),
                };
                for item in items {
                    side.process(item, &mut out)?;
                    batch.extend(&mut out)?;
                }
                if !batch.items.is_empty() && done.send(FromEngine::Outputs(batch)).is_err() {
                    return Ok(());
                }
            }
            ToEngine::Tick(now_ms, lag) => side.tick(now_ms, health, lag),
            ToEngine::Lend => {
                if done.send(FromEngine::Lent(side)).is_err() {
                    return Ok(());
                }
                match back.recv() {
                    Ok(s) => side = s,
                    Err(_) => return Ok(()), // kept at the end
                }
            }
        }
    }
    Ok(())
}

/// Answer one API request with the engine; its outputs go to the loop
/// like a batch's. `false` when the loop is gone.
fn answer(
    side: &mut EngineSide,
    api: &ApiRequests,
    request: Work,
    done: &tokio::sync::mpsc::UnboundedSender<FromEngine>,
    health: &Health,
) -> anyhow::Result<bool> {
    let mut batch = Outputs::default();
    let at = Beside {
        engine: &mut side.engine,
        input: &mut side.totals,
        dashboard: &mut side.dashboard,
        health,
    };
    let mut scored = 0u64;
    // `Stop` is the API-only service's; this one stops with its loop.
    api.answering.handle(request, at, &mut |o| {
        scored += u64::from(matches!(o, Output::Score(_)));
        batch.push(o, None)
    })?;
    side.events_tx += scored;
    Ok(batch.items.is_empty() || done.send(FromEngine::Outputs(batch)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sources::simulator::SimulatorSource;
    use crate::connectors::sources::SourceItem;
    use fraudstream_engine::EngineConfig;
    use fraudstream_sim::{SimConfig, Simulator};

    fn side() -> Box<EngineSide> {
        Box::new(EngineSide {
            engine: Engine::new(&EngineConfig::default()),
            role: Role::All,
            stage_partitions: 1,
            replicate: false,
            owned: Vec::new(),
            first_card: 0,
            totals: InputCounts::default(),
            events_tx: 0,
            rules: None,
            dashboard: Dashboard::new("fluvio").0,
        })
    }

    /// A few simulated days, transactions and labels, each at its position.
    fn items() -> impl Iterator<Item = Item> {
        let sim = Simulator::new(SimConfig {
            days: 4,
            cards: 400,
            merchants: 80,
            ..SimConfig::default()
        })
        .expect("valid simulator settings");
        SimulatorSource::new(sim, true)
            .enumerate()
            .map(|(i, item)| Item {
                pulled: match item {
                    SourceItem::Event(e) => Pulled::Event(e),
                    SourceItem::Rejected(d) => Pulled::Rejected(d),
                },
                origin: Some((i % 2, i as i64)),
                lane: 0,
            })
    }

    /// Outputs as comparable text, with their positions.
    fn text(out: &[(Output, Origin)]) -> Vec<(String, Origin)> {
        out.iter()
            .map(|(o, at)| match o {
                Output::Score(s) => (serde_json::to_string(s).unwrap(), *at),
                Output::DeadLetter(d) => (format!("{d:?}"), *at),
                Output::Stage(_) => ("stage".to_string(), *at),
            })
            .collect()
    }

    fn state(side: &EngineSide) -> Vec<u8> {
        let mut bytes = Vec::new();
        side.engine.save_state(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn the_engine_thread_gives_the_outputs_and_state_of_one_thread() {
        let mut alone = side();
        let mut expected = Vec::new();
        for item in items() {
            alone.process(item, &mut expected).unwrap();
        }
        assert!(expected.len() > 1000, "{} outputs", expected.len());

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (got, threaded) = rt.block_on(async {
            let health = Arc::new(Health::default());
            let mut thread = EngineThread::spawn(side(), health.clone(), None).unwrap();
            let mut got = Vec::new();
            let mut lent = None;
            for (n, item) in items().enumerate() {
                // Odd batch ends, a tick and a lend on the way, as the
                // service's loop makes them.
                thread.push(item, n % 97 == 0).unwrap();
                if n == 5_000 {
                    thread.tick(1_800_000_000_000, Vec::new()).unwrap();
                }
                if n == 9_000 {
                    thread.lend().unwrap();
                    loop {
                        match thread.recv().await.unwrap() {
                            FromEngine::Outputs(o) => got.push(o),
                            FromEngine::Lent(s) => {
                                // Everything before the lend is processed.
                                assert_eq!(s.totals.transactions + s.totals.labels, 9_001);
                                thread.give_back(s).unwrap();
                                break;
                            }
                        }
                    }
                }
            }
            thread.lend().unwrap();
            while lent.is_none() {
                match thread.recv().await.unwrap() {
                    FromEngine::Outputs(o) => got.push(o),
                    FromEngine::Lent(s) => lent = Some(s),
                }
            }
            assert!(health.scored.load(Relaxed) > 0, "the tick published");
            (got, lent.unwrap())
        });
        // Each value is its output as a topic sink encodes it.
        let mut flat = Vec::new();
        for batch in got {
            for (o, at, range) in batch.items {
                let mut value = Vec::new();
                encode_value(&o, &mut value).unwrap();
                assert_eq!(batch.values[range], value[..]);
                flat.push((o, at.expect("a stream output has its position")));
            }
        }
        assert_eq!(text(&flat), text(&expected));
        assert_eq!(threaded.totals, alone.totals);
        assert_eq!(threaded.events_tx, alone.events_tx);
        assert!(state(&threaded) == state(&alone), "the same engine state");
    }

    /// A rules file changed on disk decides from the service's next tick
    /// on: every transaction the new rule matches is declined with its
    /// reason code.
    #[test]
    fn a_changed_rules_file_decides_from_the_next_tick() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.toml");
        let rule = |name: &str, decision: &str, amount: &str| {
            format!("[rules.{name}]\ndecision = \"{decision}\"\nwhen = [\"amount >= {amount}\"]\n")
        };
        std::fs::write(&rules, rule("huge", "review", "1e12")).unwrap();
        let t = crate::config::Topology::embedded(&[
            format!("decisions.rules=\"{}\"", rules.display()),
            "decisions.reload=\"20ms\"".into(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let mut side = side();
        side.engine = Engine::new(&t.engine_config());
        side.rules = Some(crate::exec::rules_watch::RulesWatch::start(&t).unwrap());
        let mut stream = items();
        let mut decide = |side: &mut EngineSide| -> Vec<(String, Vec<String>)> {
            let mut out = Vec::new();
            for item in stream.by_ref().take(100) {
                side.process(item, &mut out).unwrap();
            }
            out.iter()
                .filter_map(|(o, _)| match o {
                    Output::Score(s) => Some((
                        format!("{:?}", s.decision),
                        s.reasons.iter().map(|r| r.to_string()).collect(),
                    )),
                    _ => None,
                })
                .collect()
        };
        let before = decide(&mut side);
        assert!(!before.is_empty(), "transactions were scored");
        assert!(
            before.iter().all(|d| !d.1.contains(&"all".to_string())),
            "{before:?}"
        );
        std::fs::write(&rules, rule("all", "decline", "0")).unwrap();
        // The watcher reads the file within its period; a tick applies it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let after = loop {
            std::thread::sleep(std::time::Duration::from_millis(30));
            side.tick(
                crate::exec::service::http::now_ms(),
                &Health::default(),
                Vec::new(),
            );
            let d = decide(&mut side);
            let applied = !d.is_empty()
                && d.iter()
                    .all(|d| d.0.contains("Decline") && d.1.contains(&"all".to_string()));
            if applied || std::time::Instant::now() > deadline {
                break d;
            }
        };
        assert!(
            !after.is_empty()
                && after
                    .iter()
                    .all(|d| d.0.contains("Decline") && d.1.contains(&"all".to_string())),
            "the reloaded rule decides: {after:?}"
        );
    }

    #[test]
    fn a_tick_publishes_the_dashboard_with_the_lag_it_is_given() {
        let (dashboard, feed) = Dashboard::new("fluvio");
        let mut with_board = side();
        with_board.dashboard = dashboard;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let lag = vec![PartitionLag {
            topic: "transactions".into(),
            partition: 1,
            lag: 42,
        }];
        let side = rt.block_on(async {
            let mut thread =
                EngineThread::spawn(with_board, Arc::new(Health::default()), None).unwrap();
            for item in items().take(3_000) {
                thread.push(item, false).unwrap();
            }
            thread.tick(1_800_000_000_000, lag.clone()).unwrap();
            // A lend returns once everything before it, the tick too, is done.
            thread.lend().unwrap();
            loop {
                if let FromEngine::Lent(s) = thread.recv().await.unwrap() {
                    break s;
                }
            }
        });
        let snapshot = feed.borrow().clone();
        assert_eq!(snapshot.service, "fluvio");
        assert_eq!(snapshot.tick, 1);
        assert_eq!(snapshot.at_ms, 1_800_000_000_000);
        assert_eq!(snapshot.lag, lag);
        assert_eq!(snapshot.totals.transactions, side.totals.transactions);
        assert_eq!(snapshot.totals.labels, side.totals.labels);
        assert_eq!(snapshot.totals.alerts, side.engine.counters().alerts);
        assert!(snapshot.totals.transactions > 0);
        assert!(snapshot.latency_us.is_some(), "scored in the interval");
        assert_eq!(
            snapshot.alerts.len() as u64,
            side.engine.counters().alerts.min(20),
            "the latest alerts, observed on the engine thread"
        );
    }

    /// The engine hands itself over once everything before is done; the
    /// outputs on the way are collected into `got`.
    async fn lent(thread: &mut EngineThread, got: &mut Vec<Outputs>) -> Box<EngineSide> {
        thread.lend().unwrap();
        loop {
            match thread.recv().await.unwrap() {
                FromEngine::Outputs(o) => got.push(o),
                FromEngine::Lent(s) => break s,
            }
        }
    }

    #[test]
    fn api_requests_are_answered_by_the_engine_of_the_stream() {
        use crate::exec::api::{Entity, Scored};
        use fraudstream_engine::event::{Transaction, TxId};
        use tokio::sync::oneshot;
        // One thread alone: the stream, then the next transaction of the
        // stream's last card, an hour later.
        let mut alone = side();
        let mut ignored = Vec::new();
        for item in items() {
            alone.process(item, &mut ignored).unwrap();
        }
        let last: Transaction = items()
            .filter_map(|i| match i.pulled {
                Pulled::Event(Event::Transaction(tx)) => Some(tx),
                _ => None,
            })
            .last()
            .unwrap();
        let mut next = last.clone();
        next.tx_id = TxId::Int(u64::MAX - 1);
        next.ts += 3_600_000;
        let looked_alone = alone.engine.card_features(&next.card_id, next.ts).unwrap();
        let scored_alone = alone.engine.score(next.clone());

        let t = crate::config::Topology::embedded(&[]).unwrap();
        let (requests, queue) = bounded(4);
        let api = ApiRequests {
            answering: Answering::new(&t),
            queue,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let health = Arc::new(Health::default());
            let mut thread = EngineThread::spawn(side(), health, Some(api)).unwrap();
            for item in items() {
                thread.push(item, false).unwrap();
            }
            let mut got = Vec::new();
            let stream = lent(&mut thread, &mut got).await;
            let streamed = stream.totals.transactions;
            thread.give_back(stream).unwrap();

            // A lookup sees the card's history from the stream.
            let (reply, wait) = oneshot::channel();
            let card = next.card_id.to_string();
            let lookup = Work::Lookup(Entity::Card, card, Some(next.ts), reply);
            requests.send(lookup).unwrap();
            let looked = wait.await.unwrap().expect("the stream's card is known");
            assert_eq!(looked.features, crate::exec::api::named(looked_alone));

            // A score request: the score one thread gives after the stream.
            let (reply, wait) = oneshot::channel();
            requests
                .send(Work::Score(vec![next.clone()], false, reply))
                .unwrap();
            let answers = wait.await.unwrap();
            let Scored::Answer(answer) = &answers[0] else {
                panic!("refused: {:?}", answers[0]);
            };
            assert_eq!(answer.score.score, scored_alone.score);
            assert_eq!(answer.score.tx_id, next.tx_id);

            // Its score record goes to the loop without an input position.
            got.clear();
            let side = lent(&mut thread, &mut got).await;
            let items: Vec<_> = got.iter().flat_map(|o| &o.items).collect();
            assert_eq!(items.len(), 1, "one output");
            assert!(items[0].1.is_none(), "no input position");
            assert!(
                matches!(&items[0].0, Output::Score(s) if s.tx_id == next.tx_id),
                "the API's score"
            );
            assert_eq!(side.totals.transactions, streamed + 1);
            assert_eq!(
                side.engine.counters().scored,
                alone.engine.counters().scored
            );
            assert!(state(&side) == state(&alone), "the same engine state");
        });
    }

    #[test]
    fn an_engine_error_ends_the_thread_with_its_cause() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut thread =
                EngineThread::spawn(side(), Arc::new(Health::default()), None).unwrap();
            let mut item = items().next().unwrap();
            item.origin = None;
            thread.push(item, true).unwrap();
            let err = thread.recv().await.err().expect("the thread stops");
            assert_eq!(
                format!("{err:#}"),
                "the engine thread stopped: a transaction without an input position"
            );
        });
    }
}
