//! `LogisticModel` scoring and learning (through `Classifier`) on the
//! feature vectors of 50k simulated transactions.

use criterion::{black_box, criterion_group, Criterion, SamplingMode, Throughput};
use fraudstream_engine::event::key_of;
use fraudstream_engine::features::{FeatureConfig, FeatureExtractor, FeatureSpace, FeatureVector};
use fraudstream_engine::model::{Classifier, LogisticConfig, LogisticModel};

const TRANSACTIONS: usize = 50_000;
/// Weight of a fraud example (the default `imbalance = "weight"`).
const POSITIVE_WEIGHT: f64 = 5.0;

/// Feature vectors and fraud flags of the first `n` simulated transactions.
pub(crate) fn vectors(n: usize) -> (FeatureSpace, Vec<FeatureVector>, Vec<bool>) {
    let (raw, txs) = crate::sim_transactions(n);
    let mut fx = FeatureExtractor::new(FeatureConfig::default());
    let xs = txs
        .iter()
        .map(|t| {
            let mut out = FeatureVector::default();
            let card = key_of(t.card_id.as_bytes());
            let merchant = key_of(t.merchant_id.as_bytes());
            fx.extract_and_update(t, card, merchant, false, &mut out);
            out
        })
        .collect();
    let frauds = raw.iter().map(|t| t.fraud.is_some()).collect();
    (fx.space().clone(), xs, frauds)
}

fn bench_model(c: &mut Criterion) {
    let (space, xs, frauds) = vectors(TRANSACTIONS);
    // A model that has already seen the stream once, so weights and input
    // statistics are in their working range.
    let mut trained = LogisticModel::new(&space, LogisticConfig::default());
    for (x, &fraud) in xs.iter().zip(&frauds) {
        trained.predict_proba_one(x);
        trained.learn_one(x, fraud, if fraud { POSITIVE_WEIGHT } else { 1.0 });
    }

    let mut group = c.benchmark_group("model");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(xs.len() as u64));

    // Scoring updates the running standardisation only; the model is reused.
    let mut model = trained.share();
    group.bench_function("score", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for x in black_box(&xs) {
                sum += model.predict_proba_one(x);
            }
            sum
        })
    });

    // Each update costs the same whatever came before; the model is reused.
    let mut model = trained;
    group.bench_function("learn", |b| {
        b.iter(|| {
            for (x, &fraud) in black_box(&xs).iter().zip(&frauds) {
                model.learn_one(x, fraud, if fraud { POSITIVE_WEIGHT } else { 1.0 });
            }
        })
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = crate::config();
    targets = bench_model
}
