//! Prints the event rate and fraud mix of the default configuration.
//!
//! `cargo run --release -p fraudstream-sim --example throughput [-- DAYS CARDS MERCHANTS]`

use std::time::Instant;

use fraudstream_sim::{FraudPattern, SimConfig, SimEvent, Simulator};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric argument"))
        .collect();
    let mut cfg = SimConfig::default();
    if let Some(&d) = args.first() {
        cfg.days = d as u32;
    }
    if let Some(&c) = args.get(1) {
        cfg.cards = c as u32;
    }
    if let Some(&m) = args.get(2) {
        cfg.merchants = m as u32;
    }
    let t0 = Instant::now();
    let sim = Simulator::new(cfg.clone()).expect("valid config");
    let setup = t0.elapsed();
    let t1 = Instant::now();
    let (mut events, mut tx, mut labels) = (0u64, 0u64, 0u64);
    let mut per_pattern = [0u64; 4];
    for ev in sim {
        events += 1;
        match ev {
            SimEvent::Transaction(t) => {
                tx += 1;
                if let Some(p) = t.fraud {
                    per_pattern[p.index()] += 1;
                }
            }
            SimEvent::Label(_) => labels += 1,
        }
    }
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "{} days, {} cards, {} merchants: setup {:.1} ms, {events} events ({tx} tx, {labels} labels) in {secs:.3} s = {:.2} M events/s",
        cfg.days,
        cfg.cards,
        cfg.merchants,
        setup.as_secs_f64() * 1e3,
        events as f64 / secs / 1e6
    );
    let fraud: u64 = per_pattern.iter().sum();
    println!(
        "fraud: {fraud} tx = {:.3}% of transactions",
        fraud as f64 / tx as f64 * 100.0
    );
    for p in FraudPattern::ALL {
        let n = per_pattern[p.index()];
        println!(
            "  {:<22} {n:>7} tx  {:.3}% of tx  {:.1}% of fraud",
            p.name(),
            n as f64 / tx as f64 * 100.0,
            n as f64 / fraud.max(1) as f64 * 100.0
        );
    }
}
