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

use crate::config::Topology;
use crate::connectors::sinks::{Output, SinkHandle, SinkWriter};
use crate::connectors::sources::{EventSource, SourceItem};
use crate::exec::outputs::start_model;
use crossbeam::channel::{bounded, Receiver, Sender};
use fraudstream_engine::engine::{CardStage, Engine, LabelContext, MerchantStage, TxContext};
use fraudstream_engine::event::{Event, Transaction};
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

struct Worker {
    tx: Sender<Vec<WorkItem>>,
    recycled: Receiver<Vec<WorkItem>>,
    batch: Vec<WorkItem>,
    handle: std::thread::JoinHandle<CardStage>,
}

fn card_worker(
    mut stage: CardStage,
    rx: Receiver<Vec<WorkItem>>,
    back: Sender<Vec<WorkItem>>,
    mut out: SinkHandle,
) -> CardStage {
    for mut batch in rx {
        for item in batch.drain(..) {
            match item {
                WorkItem::Transaction(tx, ctx) => {
                    let score = stage.score(tx, &ctx);
                    if !out.push(Output::Score(score)) {
                        return stage; // the writer stopped; its error is reported
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
    out.flush();
    stage.publish_metrics();
    stage
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
    mut on_reject: impl FnMut(&fraudstream_engine::event::DeadLetter),
) -> anyhow::Result<(Engine, RouterCounts)> {
    let workers = workers.max(1);
    let cfg = t.engine_config();
    let first = start_model(t)?;
    let mut stages = vec![CardStage::new(&cfg, first.share())];
    for _ in 1..workers {
        stages.push(CardStage::new(&cfg, first.share()));
    }
    drop(first);
    let mut pool: Vec<Worker> = Vec::with_capacity(workers);
    for (i, stage) in stages.into_iter().enumerate() {
        let (tx, rx) = bounded::<Vec<WorkItem>>(8);
        let (back_tx, back_rx) = bounded::<Vec<WorkItem>>(10);
        let out = sinks.handle();
        let handle = std::thread::Builder::new()
            .name(format!("fraudstream-card-{i}"))
            .spawn(move || card_worker(stage, rx, back_tx, out))?;
        pool.push(Worker {
            tx,
            recycled: back_rx,
            batch: Vec::with_capacity(WORK_BATCH),
            handle,
        });
    }
    let send = |w: &mut Worker| -> anyhow::Result<()> {
        let next = w
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(WORK_BATCH));
        let full = std::mem::replace(&mut w.batch, next);
        w.tx.send(full)
            .map_err(|_| anyhow::anyhow!("a card stage stopped early"))
    };
    let mut merchant = MerchantStage::new(&cfg);
    let mut counts = RouterCounts::default();
    let start = Instant::now();
    while let Some(item) = source.next() {
        let offered = match pace {
            Some(rate) => {
                let due = start + Duration::from_secs_f64(counts.events as f64 / rate);
                let now = Instant::now();
                if due > now {
                    // Idle until the next offer: hand over what is queued first.
                    for w in pool.iter_mut() {
                        if !w.batch.is_empty() {
                            send(w)?;
                        }
                    }
                    wait_until(due);
                }
                // An event the source produced late is offered when it exists:
                // the figure is the engine's queueing, not the source's stalls.
                Some(due.max(now))
            }
            None => None,
        };
        counts.events += 1;
        on_event(&*source, &item, counts.events);
        if counts.events % 32_768 == 0 {
            merchant.publish_metrics();
        }
        match item {
            SourceItem::Event(Event::Transaction(tx)) => {
                counts.transactions += 1;
                let mut ctx = merchant.on_transaction(&tx, workers);
                ctx.offered = offered;
                let w = &mut pool[ctx.worker as usize];
                w.batch.push(WorkItem::Transaction(tx, ctx));
                // Full batches under load; at once when the stage is idle,
                // so light traffic does not wait for a batch to fill.
                if w.batch.len() >= WORK_BATCH || w.tx.is_empty() {
                    send(w)?;
                }
            }
            SourceItem::Event(Event::Label(label)) => {
                counts.labels += 1;
                if let Some((worker, l)) = merchant.on_label(&label) {
                    let w = &mut pool[worker];
                    w.batch.push(WorkItem::Label(l));
                    if w.batch.len() >= WORK_BATCH || w.tx.is_empty() {
                        send(w)?;
                    }
                }
            }
            SourceItem::Rejected(dead) => {
                on_reject(&dead);
                sinks.push(Output::DeadLetter(dead))?;
            }
        }
    }
    for w in pool.iter_mut() {
        if !w.batch.is_empty() {
            send(w)?;
        }
    }
    merchant.publish_metrics();
    let mut done = Vec::with_capacity(workers);
    for w in pool {
        drop(w.tx);
        done.push(
            w.handle
                .join()
                .map_err(|_| anyhow::anyhow!("a card stage panicked"))?,
        );
    }
    let mut iter = done.into_iter();
    let mut card = iter.next().expect("at least one worker");
    for other in iter {
        card.absorb(other);
    }
    Ok((Engine::from_stages(merchant, card), counts))
}
