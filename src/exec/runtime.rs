//! The parallel runtime: one merchant stage, N card stages on their own
//! threads, one sink thread. Transactions are routed to card stages by card
//! key, so each card's state has exactly one owner; labels follow the route
//! of their transaction. Crossbeam channels carry batches, and the batch
//! vectors travel back for reuse. The model is shared between card stages
//! without locks (see [`fraudstream_engine::model::logistic`]).
//!
//! ```text
//! source ─► MerchantStage ─┬─ batch ─► CardStage 0 ─┐
//!  (this thread)           ├─ batch ─► CardStage 1 ─┼─ batch ─► sink thread
//!                          └─ ...                   ┘
//! ```
//!
//! With one card stage the order of every output equals the sequential
//! engine's, so its files are byte-identical.
//!
//! A stage that fails ends the run with its cause: a card stage's panic with
//! its message, a sink's error (the card stages only see the writer stop)
//! with the sink's (see [`SinkWriter::abandon`]). Every card stage is joined
//! first, so what they scored reaches the sinks.

use crate::config::Topology;
use crate::connectors::sinks::{Output, SinkHandle, SinkWriter, WriterStopped};
use crate::connectors::sources::decode::refused;
use crate::connectors::sources::{EventSource, SourceItem};
use crate::exec::outputs::start_model;
use crossbeam::channel::{bounded, Receiver, Sender};
use fraudstream_engine::engine::{CardStage, Engine, LabelContext, MerchantStage, TxContext};
use fraudstream_engine::event::{DeadLetter, Event, Transaction};
use fraudstream_engine::EngineConfig;
use std::time::{Duration, Instant};

/// Sleep most of the way, then spin the last stretch (sleep overshoots by
/// tens of microseconds).
fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Work items per batch sent to a card stage.
pub const WORK_BATCH: usize = 512;

/// One unit of work for a card stage. Kept unboxed: the batches are reused,
/// so a large variant costs a copy, where a box would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub enum WorkItem {
    /// Score this transaction.
    Transaction(Transaction, TxContext),
    /// Learn from this label.
    Label(LabelContext),
}

/// What the router saw, for the report.
#[derive(Debug, Default)]
pub struct RouterCounts {
    /// Valid transactions.
    pub transactions: u64,
    /// Valid labels.
    pub labels: u64,
    /// Events of every kind.
    pub events: u64,
}

/// A card stage's input was closed before the end: the stage stopped, and
/// joining it says why.
#[derive(Debug, thiserror::Error)]
#[error("a card stage stopped early")]
struct StageStopped;

/// What a card stage's thread ends with: the stage, or [`WriterStopped`]
/// when the sink writer stopped under it.
type StageResult = Result<CardStage, WriterStopped>;

struct Worker {
    tx: Sender<Vec<WorkItem>>,
    recycled: Receiver<Vec<WorkItem>>,
    batch: Vec<WorkItem>,
    handle: std::thread::JoinHandle<StageResult>,
}

impl Worker {
    /// Run `stage` on its own thread (number `i`), its scores going to `out`.
    fn spawn(i: usize, stage: CardStage, out: SinkHandle) -> anyhow::Result<Self> {
        Self::spawn_with(i, move |rx, back| card_worker(stage, rx, back, out))
    }

    /// Run `body` on card-stage thread `i`: it takes the batches sent and
    /// hands emptied ones back.
    fn spawn_with(
        i: usize,
        body: impl FnOnce(Receiver<Vec<WorkItem>>, Sender<Vec<WorkItem>>) -> StageResult
            + Send
            + 'static,
    ) -> anyhow::Result<Self> {
        let (tx, rx) = bounded::<Vec<WorkItem>>(8);
        let (back_tx, back_rx) = bounded::<Vec<WorkItem>>(10);
        let handle = std::thread::Builder::new()
            .name(format!("fraudstream-card-{i}"))
            .spawn(move || body(rx, back_tx))?;
        Ok(Worker {
            tx,
            recycled: back_rx,
            batch: Vec::with_capacity(WORK_BATCH),
            handle,
        })
    }

    /// Hand the batch to the stage; the next one is a recycled vector when
    /// one came back.
    fn send(&mut self) -> anyhow::Result<()> {
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(WORK_BATCH));
        let full = std::mem::replace(&mut self.batch, next);
        self.tx.send(full).map_err(|_| StageStopped.into())
    }

    /// Add `item` to the batch. Full batches go under load; at once when the
    /// stage is idle, so light traffic does not wait for a batch to fill.
    #[inline]
    fn queue(&mut self, item: WorkItem) -> anyhow::Result<()> {
        self.batch.push(item);
        if self.batch.len() >= WORK_BATCH || self.tx.is_empty() {
            self.send()?;
        }
        Ok(())
    }

    /// Send what is queued, if anything.
    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

fn card_worker(
    mut stage: CardStage,
    rx: Receiver<Vec<WorkItem>>,
    back: Sender<Vec<WorkItem>>,
    mut out: SinkHandle,
) -> StageResult {
    for mut batch in rx {
        for item in batch.drain(..) {
            match item {
                WorkItem::Transaction(tx, ctx) => {
                    let score = stage.score(tx, &ctx);
                    if !out.push(Output::Score(score)) {
                        return Err(WriterStopped);
                    }
                }
                WorkItem::Label(l) => {
                    stage.label(&l);
                }
            }
        }
        let _ = back.try_send(batch);
        stage.publish_metrics();
    }
    let flushed = out.flush();
    stage.publish_metrics();
    if flushed {
        Ok(stage)
    } else {
        Err(WriterStopped)
    }
}

/// Build `workers` card stages sharing one model and start each on its own
/// thread.
fn start_card_stages(
    t: &Topology,
    cfg: &EngineConfig,
    workers: usize,
    sinks: &mut SinkWriter,
) -> anyhow::Result<Vec<Worker>> {
    let first = start_model(t)?;
    let mut stages = vec![CardStage::new(cfg, first.share())];
    for _ in 1..workers {
        stages.push(CardStage::new(cfg, first.share()));
    }
    drop(first);
    let mut pool: Vec<Worker> = Vec::with_capacity(workers);
    for (i, stage) in stages.into_iter().enumerate() {
        pool.push(Worker::spawn(i, stage, sinks.handle())?);
    }
    Ok(pool)
}

/// Close every card stage's input, wait for each, and merge them into one.
/// A stage that panicked fails it with its message, before one that stopped
/// because the sink writer did ([`WriterStopped`]).
fn join_card_stages(pool: Vec<Worker>) -> anyhow::Result<CardStage> {
    let mut done = Vec::with_capacity(pool.len());
    let mut failed: Option<anyhow::Error> = None;
    for (i, w) in pool.into_iter().enumerate() {
        drop(w.tx);
        match w.handle.join() {
            Ok(Ok(stage)) => done.push(stage),
            Ok(Err(stopped)) => {
                failed.get_or_insert_with(|| {
                    anyhow::Error::new(stopped).context(format!("card stage {i}"))
                });
            }
            Err(panic) => {
                if failed.as_ref().map_or(true, |f| f.is::<WriterStopped>()) {
                    failed = Some(anyhow::anyhow!(
                        "card stage {i} panicked: {}",
                        crate::panic_message(&*panic)
                    ));
                }
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let mut iter = done.into_iter();
    let mut card = iter.next().expect("at least one worker");
    for other in iter {
        card.absorb(other);
    }
    Ok(card)
}

/// The merchant stage and the card stages' inputs: where each event goes.
struct Router {
    pool: Vec<Worker>,
    merchant: MerchantStage,
    counts: RouterCounts,
}

impl Router {
    /// Send what every card stage has queued.
    fn flush(&mut self) -> anyhow::Result<()> {
        for w in self.pool.iter_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// Wait until the next event is due at `rate` events per second from
    /// `start`, handing over what is queued first; returns its offer time.
    fn pace(&mut self, start: Instant, rate: f64) -> anyhow::Result<Instant> {
        let due = start + Duration::from_secs_f64(self.counts.events as f64 / rate);
        let now = Instant::now();
        if due > now {
            // Idle until the next offer: hand over what is queued first.
            self.flush()?;
            wait_until(due);
        }
        // An event the source produced late is offered when it exists:
        // the figure is the engine's queueing, not the source's stalls.
        Ok(due.max(now))
    }

    /// Publish the merchant stage's metrics every 32 768 events.
    #[inline]
    fn publish_now_and_then(&mut self) {
        if self.counts.events % 32_768 == 0 {
            self.merchant.publish_metrics();
        }
    }

    /// Send a transaction or label to its card stage, a rejected record to `sinks`.
    #[inline]
    fn route(
        &mut self,
        item: SourceItem,
        offered: Option<Instant>,
        sinks: &mut SinkWriter,
        on_reject: &mut impl FnMut(&DeadLetter),
    ) -> anyhow::Result<()> {
        let item = match item {
            SourceItem::Event(event) => match self.merchant.admit(&event) {
                Ok(()) => SourceItem::Event(event),
                Err(refusal) => SourceItem::Rejected(refused(&event, refusal)),
            },
            rejected => rejected,
        };
        match item {
            SourceItem::Event(Event::Transaction(tx)) => {
                self.counts.transactions += 1;
                let mut ctx = self.merchant.on_transaction(&tx, self.pool.len());
                ctx.offered = offered;
                let worker = ctx.worker as usize;
                self.pool[worker].queue(WorkItem::Transaction(tx, ctx))?;
            }
            SourceItem::Event(Event::Label(label)) => {
                self.counts.labels += 1;
                if let Some((worker, l)) = self.merchant.on_label(&label) {
                    self.pool[worker].queue(WorkItem::Label(l))?;
                }
            }
            SourceItem::Rejected(dead) => {
                on_reject(&dead);
                sinks.push(Output::DeadLetter(dead))?;
            }
        }
        Ok(())
    }

    /// Hand over what is queued, stop the card stages and assemble the engine.
    fn finish(mut self) -> anyhow::Result<(Engine, RouterCounts)> {
        if let Err(e) = self.flush() {
            return Err(self.abort(e));
        }
        self.merchant.publish_metrics();
        let card = join_card_stages(self.pool)?;
        Ok((Engine::from_stages(self.merchant, card), self.counts))
    }

    /// The run failed with `e`: stop every card stage (what they scored
    /// reaches the sinks) and return the cause. A stage's panic comes first;
    /// when `e` only says a stage stopped, the stage says why.
    fn abort(self, e: anyhow::Error) -> anyhow::Error {
        match join_card_stages(self.pool) {
            Err(stage) if !stage.is::<WriterStopped>() || e.is::<StageStopped>() => stage,
            _ => e,
        }
    }
}

/// Run `source` through `workers` card stages. `on_event` is called for
/// every event (progress) and every rejected record goes to `sinks`. With
/// `pace` (events per second) the source is offered at that rate, and each
/// transaction's time from offer to score is recorded.
/// Returns the engine assembled from the stages and the router's counts.
pub fn run_parallel(
    t: &Topology,
    workers: usize,
    pace: Option<f64>,
    source: &mut dyn EventSource,
    sinks: &mut SinkWriter,
    mut on_event: impl FnMut(&dyn EventSource, &SourceItem, u64),
    mut on_reject: impl FnMut(&DeadLetter),
) -> anyhow::Result<(Engine, RouterCounts)> {
    let cfg = t.engine_config();
    let mut router = Router {
        pool: start_card_stages(t, &cfg, workers.max(1), sinks)?,
        merchant: MerchantStage::new(&cfg),
        counts: RouterCounts::default(),
    };
    let start = Instant::now();
    while let Some(item) = source.next() {
        let offered = match pace {
            Some(rate) => match router.pace(start, rate) {
                Ok(at) => Some(at),
                Err(e) => return Err(router.abort(e)),
            },
            None => None,
        };
        router.counts.events += 1;
        on_event(&*source, &item, router.counts.events);
        router.publish_now_and_then();
        if let Err(e) = router.route(item, offered, sinks, &mut on_reject) {
            return Err(router.abort(e));
        }
    }
    router.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudstream_engine::event::TxId;

    fn tx(n: u64) -> SourceItem {
        SourceItem::Event(Event::Transaction(Transaction {
            tx_id: TxId::Int(n),
            ts: 1_700_000_000_000 + n as i64,
            card_id: "card".into(),
            merchant_id: "merchant".into(),
            amount: 10.0,
            currency: None,
            mcc: None,
            country: None,
            channel: None,
            location: None,
        }))
    }

    /// A router over one card stage that panics on the first batch it gets,
    /// as a bug in scoring would.
    fn router_over_a_panicking_stage() -> Router {
        let worker = Worker::spawn_with(0, |rx, _back| {
            let batch = rx.recv().expect("a batch");
            panic!("scoring {} items went wrong", batch.len());
        })
        .unwrap();
        Router {
            pool: vec![worker],
            merchant: MerchantStage::new(&EngineConfig::default()),
            counts: RouterCounts::default(),
        }
    }

    #[test]
    fn a_card_stage_that_panics_mid_run_ends_it_with_its_message() {
        let mut router = router_over_a_panicking_stage();
        let mut sinks = SinkWriter::start(&[], 64).unwrap();
        // The stage is gone once its input is: a later send fails.
        let stopped = (0..1_000_000)
            .find_map(|n| router.route(tx(n), None, &mut sinks, &mut |_| {}).err())
            .expect("the run stops");
        let err = sinks.abandon(router.abort(stopped));
        assert_eq!(
            format!("{err:#}"),
            "card stage 0 panicked: scoring 1 items went wrong"
        );
    }

    #[test]
    fn a_card_stage_that_panics_is_reported_at_the_end_of_the_input() {
        let mut router = router_over_a_panicking_stage();
        let mut sinks = SinkWriter::start(&[], 64).unwrap();
        router
            .route(tx(0), None, &mut sinks, &mut |_| {})
            .expect("the first transaction is handed over");
        let err = router.finish().err().expect("the run fails");
        assert_eq!(
            format!("{err:#}"),
            "card stage 0 panicked: scoring 1 items went wrong"
        );
        sinks.finish().unwrap();
    }
}
