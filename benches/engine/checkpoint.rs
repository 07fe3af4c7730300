//! The cost of a checkpoint's engine snapshot against the state it holds:
//! 10,000 and 1,000,000 cards (one transaction each, its pending vector and
//! evaluation record kept). Today every checkpoint writes all of the state,
//! so its cost grows with the cards held, not with what changed.

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use fraudstream_engine::engine::Engine;
use fraudstream_engine::event::{Transaction, TxId};
use fraudstream_engine::EngineConfig;
use std::time::Duration;

/// An engine holding `cards` cards over 1,000 merchants.
fn engine_with(cards: u64) -> Engine {
    let mut e = Engine::new(&EngineConfig::default());
    for i in 0..cards {
        e.score(Transaction {
            tx_id: TxId::Int(i),
            ts: 1_700_000_000_000 + i as i64,
            card_id: format!("card{i}").into(),
            merchant_id: format!("m{}", i % 1_000).into(),
            amount: 10.0 + (i % 500) as f64,
            currency: None,
            mcc: None,
            country: None,
            channel: None,
            location: None,
        });
    }
    e
}

fn bench_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for cards in [10_000u64, 1_000_000] {
        let engine = engine_with(cards);
        let mut buf = Vec::new();
        engine.save_state(&mut buf).expect("snapshot");
        println!("checkpoint/{cards} cards: snapshot of {} bytes", buf.len());
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_with_input(BenchmarkId::new("snapshot", cards), &engine, |b, e| {
            b.iter(|| {
                buf.clear();
                e.save_state(black_box(&mut buf)).expect("snapshot");
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = crate::config();
    targets = bench_snapshot
}
