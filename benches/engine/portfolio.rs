//! The portfolio's models on the feature vectors of 50k simulated
//! transactions: adaptive forest predict and learn (and its Saabas
//! explanation), Half-Space Trees score + learn, the batch champion's
//! plain-data scorer. One element = one transaction.

use criterion::{black_box, criterion_group, Criterion, SamplingMode, Throughput};
use fraudstream_engine::model::batch::{BatchChampion, BatchConfig};
use fraudstream_engine::model::forest::{AdaptiveForest, ForestConfig};
use fraudstream_engine::model::hst::{HalfSpaceTrees, HstConfig};

const TRANSACTIONS: usize = 50_000;
const POSITIVE_WEIGHT: f64 = 5.0;

fn bench_portfolio(c: &mut Criterion) {
    let (space, xs, frauds) = crate::model::vectors(TRANSACTIONS);
    let names = space.names().to_vec();
    let dims = names.len();
    // A forest that has learnt the stream once (trees at working size).
    let mut forest = AdaptiveForest::new(names.clone(), ForestConfig::default());
    for (x, &fraud) in xs.iter().zip(&frauds) {
        forest.learn_example(&x.dense, fraud, if fraud { POSITIVE_WEIGHT } else { 1.0 });
    }
    // Inputs of the anomaly detector: values squashed into [0, 1].
    let unit: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| {
            x.dense
                .iter()
                .map(|v| (v / (1.0 + v.abs())) * 0.5 + 0.5)
                .collect()
        })
        .collect();

    let mut group = c.benchmark_group("portfolio");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(xs.len() as u64));

    group.bench_function("forest_predict", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for x in black_box(&xs) {
                sum += forest.predict(&x.dense);
            }
            sum
        })
    });

    let mut out = Vec::new();
    group.bench_function("forest_explain_top3", |b| {
        b.iter(|| {
            for x in black_box(&xs) {
                forest.contributions(&x.dense, 3, &mut out);
            }
        })
    });

    // Learning keeps growing the trees up to their bounds (depth, leaves).
    let mut learner = forest.clone();
    group.bench_function("forest_learn", |b| {
        b.iter(|| {
            for (x, &fraud) in black_box(&xs).iter().zip(&frauds) {
                learner.learn_example(&x.dense, fraud, if fraud { POSITIVE_WEIGHT } else { 1.0 });
            }
        })
    });

    let mut hst = HalfSpaceTrees::new(dims, HstConfig::default());
    let mut fused = hst.clone();
    group.bench_function("hst_score_and_learn", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for x in black_box(&unit) {
                sum += hst.score(x);
                hst.learn(x);
            }
            sum
        })
    });
    // One descent per tree, as the portfolio runs it.
    group.bench_function("hst_score_and_learn_fused", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for x in black_box(&unit) {
                sum += fused.score_and_learn(x);
            }
            sum
        })
    });

    // A champion of each learner trained once (the swap waits at its planned label).
    for (name, base) in [
        ("batch_score", BatchConfig::forest()),
        ("batch_score_linear", BatchConfig::linear()),
    ] {
        let cfg = BatchConfig {
            retrain_every: 20_000,
            swap_after: 1_000,
            min_frauds: 10,
            negative_rate: 0.5,
            ..base
        };
        let mut champion = BatchChampion::new(dims, cfg);
        for (i, (x, &fraud)) in xs.iter().zip(&frauds).enumerate() {
            // A transaction a second.
            champion.learn(&x.dense, fraud, i as u64, i as i64 * 1000);
        }
        assert!(champion.model().is_some(), "the champion was trained");
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut sum = 0.0;
                for x in black_box(&xs) {
                    sum += champion.score(&x.dense).unwrap_or(0.0);
                }
                sum
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = crate::config();
    targets = bench_portfolio
}
