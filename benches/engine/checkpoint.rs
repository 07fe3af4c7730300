//! The cost of a checkpoint's engine state against the state it holds:
//! 10,000 and 1,000,000 cards (one transaction each, its pending vector and
//! evaluation record kept). `snapshot` writes the whole state (a base);
//! `delta_1pct` and `delta_10pct` write what changed after 1 % and 10 % of
//! the cards made a transaction each (untimed); `restore_base` reads a base
//! back, `restore_chain` the same base and ten deltas of 1 % each.

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, SamplingMode};
use fraudstream_engine::engine::Engine;
use fraudstream_engine::event::{Transaction, TxId};
use fraudstream_engine::EngineConfig;
use std::time::{Duration, Instant};

const START_MS: i64 = 1_700_000_000_000;

fn transaction(id: u64, card: u64, ts: i64) -> Transaction {
    Transaction {
        tx_id: TxId::Int(id),
        ts,
        card_id: format!("card{card}").into(),
        merchant_id: format!("m{}", card % 1_000).into(),
        amount: 10.0 + (id % 500) as f64,
        currency: None,
        mcc: None,
        country: None,
        channel: None,
        location: None,
    }
}

/// An engine holding `cards` cards over 1,000 merchants.
fn engine_with(cards: u64) -> Engine {
    let mut e = Engine::new(&EngineConfig::default());
    for i in 0..cards {
        e.score(transaction(i, i, START_MS + i as i64));
    }
    e
}

/// Feeds transactions of a share of the cards, round after round, with ids
/// and times that keep increasing.
struct Traffic {
    cards: u64,
    next_id: u64,
    next_card: u64,
}

impl Traffic {
    fn new(cards: u64) -> Self {
        Traffic {
            cards,
            next_id: cards,
            next_card: 0,
        }
    }

    /// One transaction for each of `n` cards (spread over all of them).
    fn touch(&mut self, e: &mut Engine, n: u64) {
        let stride = (self.cards / n).max(1);
        for _ in 0..n {
            let card = self.next_card % self.cards;
            e.score(transaction(
                self.next_id,
                card,
                START_MS + self.next_id as i64,
            ));
            self.next_id += 1;
            self.next_card += stride;
        }
        self.next_card += 1;
    }
}

fn bench_checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let cfg = EngineConfig::default();
    for cards in [10_000u64, 1_000_000] {
        let mut engine = engine_with(cards);
        let mut buf = Vec::new();
        engine.save_state(&mut buf).expect("snapshot");
        println!("checkpoint/{cards} cards: base of {} bytes", buf.len());
        group.bench_with_input(BenchmarkId::new("snapshot", cards), &engine, |b, e| {
            b.iter(|| {
                buf.clear();
                e.save_state(black_box(&mut buf)).expect("snapshot");
            })
        });

        engine.start_tracking();
        let mut traffic = Traffic::new(cards);
        // Each delta iteration adds traffic first (new transactions: their
        // pending vectors, records and routes stay), so a short measurement
        // keeps the state near its size.
        group.measurement_time(Duration::from_secs(1));
        for (name, share) in [("delta_1pct", 100), ("delta_10pct", 10)] {
            let n = cards / share;
            traffic.touch(&mut engine, n);
            buf.clear();
            engine.save_delta(&mut buf).expect("delta");
            println!(
                "checkpoint/{cards} cards: delta after {n} cards of {} bytes",
                buf.len()
            );
            group.bench_function(BenchmarkId::new(name, cards), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        traffic.touch(&mut engine, n);
                        buf.clear();
                        let began = Instant::now();
                        engine.save_delta(black_box(&mut buf)).expect("delta");
                        spent += began.elapsed();
                    }
                    spent
                })
            });
        }

        println!(
            "checkpoint/{cards} cards: {} transactions added by the delta runs",
            traffic.next_id - cards
        );
        drop(engine);

        // A base of a fresh engine and ten deltas of 1 % each, read back.
        let mut engine = engine_with(cards);
        let mut traffic = Traffic::new(cards);
        let mut base = Vec::new();
        engine.save_state(&mut base).expect("snapshot");
        engine.start_tracking();
        let deltas: Vec<Vec<u8>> = (0..10)
            .map(|_| {
                traffic.touch(&mut engine, cards / 100);
                let mut d = Vec::new();
                engine.save_delta(&mut d).expect("delta");
                d
            })
            .collect();
        let chain_bytes: usize = deltas.iter().map(Vec::len).sum();
        println!(
            "checkpoint/{cards} cards: restore of a base of {} bytes and 10 deltas of {chain_bytes} bytes",
            base.len()
        );
        drop(engine);
        group.measurement_time(Duration::from_secs(10));
        group.bench_function(BenchmarkId::new("restore_base", cards), |b| {
            b.iter(|| {
                let mut e = Engine::new(&cfg);
                e.restore_state(&cfg, &base[..], base.len() as u64)
                    .expect("restore");
                e
            })
        });
        group.bench_function(BenchmarkId::new("restore_chain", cards), |b| {
            b.iter(|| {
                let mut e = Engine::new(&cfg);
                e.restore_state(&cfg, &base[..], base.len() as u64)
                    .expect("restore");
                for d in &deltas {
                    e.apply_delta(&cfg, &d[..], d.len() as u64).expect("delta");
                }
                e
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = crate::config();
    targets = bench_checkpoint
}
