//! Criterion benchmarks of the engine's hot paths, one group per stage.
//!
//! Run with `cargo bench --bench engine`; pass a filter to run one group,
//! e.g. `cargo bench --bench engine -- windows`. Inputs are deterministic
//! (seeded ChaCha8 or the seeded simulator), so numbers compare across runs.

use criterion::{criterion_main, Criterion};
use fraudstream::connectors::sources::simulator::to_transaction;
use fraudstream_engine::event::Transaction;
use fraudstream_sim::{SimConfig, SimEvent, SimTransaction, Simulator};
use std::time::Duration;

#[path = "engine/checkpoint.rs"]
mod checkpoint;
#[path = "engine/decode.rs"]
mod decode;
#[path = "engine/features.rs"]
mod features;
#[path = "engine/label_join.rs"]
mod label_join;
#[path = "engine/model.rs"]
mod model;
#[path = "engine/portfolio.rs"]
mod portfolio;
#[path = "engine/windows.rs"]
mod windows;

/// Settings shared by every group: short runs, so the suite stays quick.
pub(crate) fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The first `n` transactions of the default simulation (seed 42), as the
/// simulator produced them and as the engine sees them.
pub(crate) fn sim_transactions(n: usize) -> (Vec<SimTransaction>, Vec<Transaction>) {
    let sim = Simulator::new(SimConfig::default()).expect("default simulator settings are valid");
    let raw: Vec<SimTransaction> = sim
        .filter_map(|e| match e {
            SimEvent::Transaction(t) => Some(t),
            SimEvent::Label(_) => None,
        })
        .take(n)
        .collect();
    assert_eq!(
        raw.len(),
        n,
        "the simulation is too short for {n} transactions"
    );
    let txs = raw.iter().map(to_transaction).collect();
    (raw, txs)
}

criterion_main!(
    windows::benches,
    features::benches,
    model::benches,
    portfolio::benches,
    label_join::benches,
    decode::benches,
    checkpoint::benches
);
