//! `FeatureExtractor::extract_and_update` over 50k simulated transactions,
//! from an empty extractor each iteration.

use criterion::{black_box, criterion_group, BatchSize, Criterion, SamplingMode, Throughput};
use fraudstream_engine::event::key_of;
use fraudstream_engine::features::{FeatureConfig, FeatureExtractor, FeatureVector};

const TRANSACTIONS: usize = 50_000;

fn bench_features(c: &mut Criterion) {
    let (_, txs) = crate::sim_transactions(TRANSACTIONS);
    // Keys as the engine computes them; computed once, outside the timing.
    let keys: Vec<(u64, u64)> = txs
        .iter()
        .map(|t| {
            (
                key_of(t.card_id.as_bytes()),
                key_of(t.merchant_id.as_bytes()),
            )
        })
        .collect();

    let mut group = c.benchmark_group("features");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(TRANSACTIONS as u64));
    group.bench_function("extract_and_update", |b| {
        b.iter_batched(
            || {
                (
                    FeatureExtractor::new(FeatureConfig::default()),
                    FeatureVector::default(),
                )
            },
            |(mut fx, mut out)| {
                for (tx, &(card, merchant)) in black_box(&txs).iter().zip(&keys) {
                    fx.extract_and_update(tx, card, merchant, false, &mut out);
                    black_box(&out);
                }
                // Returned so the state is dropped outside the timing.
                fx
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = crate::config();
    targets = bench_features
}
