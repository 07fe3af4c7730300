//! The label join: the pending store alone, then the engine's whole
//! score-and-label path on the simulator stream.

use criterion::{black_box, criterion_group, BatchSize, Criterion, SamplingMode, Throughput};
use fraudstream::config::Topology;
use fraudstream::connectors::sources::SourceItem;
use fraudstream::exec::pipeline::build_source;
use fraudstream_engine::event::{key_of, Event};
use fraudstream_engine::features::FeatureVector;
use fraudstream_engine::pending::{PendingFeatures, PendingMeta};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const VECTORS: usize = 50_000;
use fraudstream_engine::time::DAY_MS;

fn bench_pending(c: &mut Criterion) {
    let (_, txs) = crate::sim_transactions(VECTORS);
    let (_, xs, _) = crate::model::vectors(VECTORS);
    let entries: Vec<(u64, PendingMeta)> = txs
        .iter()
        .zip(&xs)
        .map(|(t, x)| {
            (
                t.tx_id.key(),
                PendingMeta {
                    card: key_of(t.card_id.as_bytes()),
                    merchant: key_of(t.merchant_id.as_bytes()),
                    ts: t.ts,
                    cats: x.cats,
                    raw: 0.5,
                },
            )
        })
        .collect();
    // Labels come back in a different order than the transactions went in.
    let mut take_order: Vec<u64> = entries.iter().map(|&(k, _)| k).collect();
    take_order.shuffle(&mut ChaCha8Rng::seed_from_u64(11));
    let stride = xs[0].dense.len();

    let mut group = c.benchmark_group("label_join");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(VECTORS as u64));

    // Steady state: the store is reused, and every iteration leaves it empty
    // (its slots on the free list), as the engine's store is between bursts.
    let mut store = PendingFeatures::new(stride, 2_000_000, 90 * DAY_MS);
    let mut out = FeatureVector::default();
    group.bench_function("pending_insert_take", |b| {
        b.iter(|| {
            for ((tx, meta), x) in black_box(&entries).iter().zip(&xs) {
                store.insert(*tx, x, *meta);
            }
            let mut joined = 0u32;
            for &tx in black_box(&take_order) {
                joined += store.take(tx, &mut out).is_some() as u32;
            }
            assert_eq!(joined as usize, VECTORS);
        })
    });

    group.finish();
}

fn bench_engine(c: &mut Criterion) {
    let topology =
        Topology::embedded(&["source.days=3".into()]).expect("embedded topology is valid");
    let events: Vec<Event> = build_source(&topology)
        .expect("simulator source")
        .map(|item| match item {
            SourceItem::Event(e) => e,
            SourceItem::Rejected(d) => panic!("the simulator produced a dead letter: {d:?}"),
        })
        .collect();

    let mut group = c.benchmark_group("label_join");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(events.len() as u64));
    // A fresh engine per iteration (built, with its copy of the events,
    // outside the timing): each event is one `score` or one `label` call.
    group.bench_function("engine_score_label", |b| {
        b.iter_batched(
            || {
                (
                    fraudstream::exec::outputs::start_engine(&topology).expect("engine"),
                    events.clone(),
                )
            },
            |(mut engine, events)| {
                for event in events {
                    match event {
                        Event::Transaction(tx) => {
                            black_box(engine.score(tx));
                        }
                        Event::Label(label) => {
                            black_box(engine.label(&label));
                        }
                    }
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = crate::config();
    targets = bench_pending, bench_engine
}
