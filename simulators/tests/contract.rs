//! Contract tests of the simulator: determinism, ordering, volume, fraud mix and validation.

use fraudstream_sim::*;

fn small(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        days: 20,
        cards: 800,
        merchants: 200,
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_same_stream_different_seed_differs() {
    let a = Simulator::new(SimConfig::default()).unwrap();
    let b = Simulator::new(SimConfig::default()).unwrap();
    let mut n = 0;
    for (x, y) in a.zip(b).take(100_000) {
        assert_eq!(x, y);
        n += 1;
    }
    assert_eq!(n, 100_000);

    let a = Simulator::new(small(1)).unwrap();
    let b = Simulator::new(small(2)).unwrap();
    let differ = a.zip(b).take(1000).filter(|(x, y)| x != y).count();
    assert!(differ > 900, "only {differ} of 1000 events differ");
}

struct Check {
    tx: u64,
    fraud_tx: u64,
    labels: u64,
    genuine_labels: u64,
    label_tx_ties: u64,
}

/// Runs a whole simulation and asserts the ordering contract along the way.
fn run_checked(cfg: SimConfig) -> Check {
    let genuine_on = matches!(cfg.labels.genuine, GenuineLabels::After { .. });
    let sim = Simulator::new(cfg).unwrap();
    let end = sim.end_ms();
    let mut tx_ts: Vec<i64> = vec![i64::MIN]; // index = tx_id
    let mut tx_fraud: Vec<Option<FraudPattern>> = vec![None];
    let mut labelled: Vec<bool> = vec![false];
    let mut last_ts = i64::MIN;
    let mut last_tx_ts = i64::MIN;
    let mut c = Check {
        tx: 0,
        fraud_tx: 0,
        labels: 0,
        genuine_labels: 0,
        label_tx_ties: 0,
    };
    for ev in sim {
        assert!(ev.ts_ms() >= last_ts, "timestamps went backwards: {ev:?}");
        last_ts = ev.ts_ms();
        match ev {
            SimEvent::Transaction(t) => {
                assert_eq!(t.tx_id, tx_ts.len() as u64, "tx ids must be 1.. in order");
                assert!(t.ts_ms < end);
                assert!(t.amount.is_finite() && t.amount > 0.0, "{t:?}");
                assert_eq!((t.amount * 100.0).round() / 100.0, t.amount);
                assert_eq!(t.channel == Channel::Ecom, t.location.is_none(), "{t:?}");
                tx_ts.push(t.ts_ms);
                tx_fraud.push(t.fraud);
                labelled.push(false);
                last_tx_ts = t.ts_ms;
                c.tx += 1;
                c.fraud_tx += t.fraud.is_some() as u64;
            }
            SimEvent::Label(l) => {
                let id = l.tx_id as usize;
                assert!(id < tx_ts.len(), "label before its transaction: {l:?}");
                assert!(l.ts_ms > tx_ts[id], "label not after its transaction");
                // Labels first at equal timestamps: no transaction at this ts came before.
                assert!(
                    l.ts_ms > last_tx_ts,
                    "label after a tx with the same ts: {l:?}"
                );
                assert!(!labelled[id], "labelled twice");
                labelled[id] = true;
                assert_eq!(l.is_fraud, tx_fraud[id].is_some());
                assert_eq!(l.pattern, tx_fraud[id]);
                c.labels += 1;
                c.genuine_labels += !l.is_fraud as u64;
            }
        }
    }
    // Count label/transaction timestamp ties (possible only with genuine maturity labels).
    if genuine_on {
        let mut all: Vec<i64> = tx_ts[1..].to_vec();
        all.sort_unstable();
        for &t in &tx_ts[1..] {
            if all.binary_search(&(t + 7 * DAY_MS)).is_ok() {
                c.label_tx_ties += 1;
            }
        }
    }
    for id in 1..tx_ts.len() {
        if tx_fraud[id].is_some() || genuine_on {
            assert!(labelled[id], "tx {id} never labelled");
        }
    }
    c
}

#[test]
fn ordering_contract_and_labels() {
    let c = run_checked(small(7));
    assert!(c.tx > 10_000);
    assert_eq!(
        c.labels, c.tx,
        "with maturity labels every tx is labelled once"
    );
    assert!(c.fraud_tx > 0);

    let mut cfg = small(8);
    cfg.labels.genuine = GenuineLabels::Never;
    let c = run_checked(cfg);
    assert_eq!(c.genuine_labels, 0);
    assert_eq!(c.labels, c.fraud_tx);
}

#[test]
fn labels_first_at_equal_timestamps() {
    // Genuine labels land exactly 7 days after their transaction: with thousands of
    // transactions a day some coincide with a later transaction's millisecond.
    let mut cfg = small(9);
    cfg.labels.genuine = GenuineLabels::After { maturity_days: 7.0 };
    cfg.cards = 3000;
    cfg.days = 12;
    let c = run_checked(cfg);
    assert!(c.label_tx_ties > 0, "no tie exercised");
}

#[test]
fn default_volume_fraud_rate_and_drift() {
    let cfg = SimConfig::default();
    let days = cfg.days as i64;
    let start = cfg.start_ms;
    let sim = Simulator::new(cfg).unwrap();
    let mut tx = 0u64;
    let mut per_pattern = [0u64; 4];
    let mut first10 = [0u64; 4];
    let mut last10 = [0u64; 4];
    let mut tx_first10 = 0u64;
    let mut tx_last10 = 0u64;
    let mut ecom = 0u64;
    let mut countries = std::collections::BTreeMap::new();
    for ev in sim {
        if let SimEvent::Transaction(t) = ev {
            tx += 1;
            let day = (t.ts_ms - start) / DAY_MS;
            if day < 10 {
                tx_first10 += 1;
            } else if day >= days - 10 {
                tx_last10 += 1;
            }
            ecom += (t.channel == Channel::Ecom) as u64;
            *countries.entry(t.country).or_insert(0u64) += 1;
            if let Some(p) = t.fraud {
                per_pattern[p.index()] += 1;
                if day < 10 {
                    first10[p.index()] += 1;
                } else if day >= days - 10 {
                    last10[p.index()] += 1;
                }
            }
        }
    }
    let fraud: u64 = per_pattern.iter().sum();
    let rate = fraud as f64 / tx as f64;
    println!(
        "default: {tx} transactions, {fraud} fraud ({:.3}%)",
        rate * 100.0
    );
    for p in FraudPattern::ALL {
        let n = per_pattern[p.index()];
        println!(
            "  {:<22} {n:>6} tx  {:.3}% of tx  {:.1}% of fraud  first10 {:>5}  last10 {:>5}",
            p.name(),
            n as f64 / tx as f64 * 100.0,
            n as f64 / fraud as f64 * 100.0,
            first10[p.index()],
            last10[p.index()]
        );
    }
    println!(
        "  fraud rate first 10 days {:.3}%, last 10 days {:.3}%",
        first10.iter().sum::<u64>() as f64 / tx_first10 as f64 * 100.0,
        last10.iter().sum::<u64>() as f64 / tx_last10 as f64 * 100.0
    );
    println!(
        "  ecom share {:.1}%, countries {countries:?}",
        ecom as f64 / tx as f64 * 100.0
    );
    assert!(tx >= 500_000, "only {tx} transactions");
    assert!((0.005..=0.01).contains(&rate), "fraud rate {rate}");
    for p in FraudPattern::ALL {
        assert!(per_pattern[p.index()] > 0, "{} missing", p.name());
    }
    // Drift: stolen_card share falls (0.3 -> 0.15), card_testing rises (0.2 -> 0.3),
    // and the overall rate rises (x1.5).
    let share = |v: &[u64; 4], i: usize| v[i] as f64 / v.iter().sum::<u64>() as f64;
    assert!(share(&last10, 0) < share(&first10, 0));
    assert!(share(&last10, 3) > share(&first10, 3));
    let r_first = first10.iter().sum::<u64>() as f64 / tx_first10 as f64;
    let r_last = last10.iter().sum::<u64>() as f64 / tx_last10 as f64;
    assert!(r_last > r_first * 1.2, "{r_first} -> {r_last}");
}

#[test]
fn patterns_switch_off_with_zero_share() {
    for off in FraudPattern::ALL {
        let mut cfg = small(11);
        cfg.cards = 1500;
        cfg.fraud_rate = 0.01;
        match off {
            FraudPattern::StolenCard => cfg.patterns.stolen_card = 0.0,
            FraudPattern::CompromisedMerchant => cfg.patterns.compromised_merchant = 0.0,
            FraudPattern::AccountTakeover => cfg.patterns.account_takeover = 0.0,
            FraudPattern::CardTesting => cfg.patterns.card_testing = 0.0,
            other => unreachable!("{other} is not a cards pattern"),
        }
        let mut seen = [0u64; 4];
        for ev in Simulator::new(cfg).unwrap() {
            match ev {
                SimEvent::Transaction(t) => {
                    if let Some(p) = t.fraud {
                        seen[p.index()] += 1;
                    }
                }
                SimEvent::Label(l) => {
                    assert_ne!(l.pattern, Some(off));
                }
            }
        }
        for p in FraudPattern::ALL {
            if p == off {
                assert_eq!(seen[p.index()], 0, "{} should be off", p.name());
            } else {
                assert!(
                    seen[p.index()] > 0,
                    "{} missing when {} off",
                    p.name(),
                    off.name()
                );
            }
        }
    }
}

#[test]
fn no_fraud_when_rate_zero() {
    let mut cfg = small(12);
    cfg.fraud_rate = 0.0;
    cfg.days = 5;
    let fraud = Simulator::new(cfg)
        .unwrap()
        .filter(|e| matches!(e, SimEvent::Transaction(t) if t.fraud.is_some()))
        .count();
    assert_eq!(fraud, 0);
}

#[test]
fn card_testing_shape() {
    let mut cfg = small(13);
    cfg.patterns = PatternMix {
        stolen_card: 0.0,
        compromised_merchant: 0.0,
        account_takeover: 0.0,
        card_testing: 1.0,
    };
    cfg.drift.mode = DriftMode::None;
    let mut tiny = 0;
    let mut large = 0;
    for ev in Simulator::new(cfg).unwrap() {
        if let SimEvent::Transaction(t) = ev {
            if t.fraud == Some(FraudPattern::CardTesting) {
                if t.amount <= 3.0 {
                    assert!(t.amount >= 0.5);
                    tiny += 1;
                } else {
                    assert!((200.0..=2000.0).contains(&t.amount), "{t:?}");
                    large += 1;
                }
            }
        }
    }
    assert!(large > 0);
    assert!(
        tiny >= 5 * large && tiny <= 20 * large,
        "{tiny} tiny, {large} large"
    );
}

#[test]
fn validate_reports_every_problem() {
    let mut cfg = SimConfig {
        days: 0,
        cards: 0,
        fraud_rate: f64::NAN,
        ..SimConfig::default()
    };
    cfg.patterns.card_testing = -1.0;
    cfg.labels.analyst_share = 1.5;
    cfg.labels.chargeback_median_days = 0.0;
    cfg.labels.genuine = GenuineLabels::After {
        maturity_days: f64::INFINITY,
    };
    let errs = cfg.validate().unwrap_err();
    for field in [
        "days:",
        "cards:",
        "fraud_rate:",
        "patterns.card_testing:",
        "labels.analyst_share:",
        "labels.chargeback_median_days:",
        "labels.genuine.maturity_days:",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(field)),
            "no error for {field}: {errs:?}"
        );
    }
    assert!(errs.contains(&"days: must be >= 1".to_string()));
    assert!(Simulator::new(cfg).is_err());
    assert!(SimConfig::default().validate().is_ok());

    let sudden = SimConfig {
        drift: DriftConfig {
            mode: DriftMode::Sudden { at_day: 60 },
            ..DriftConfig::default()
        },
        ..SimConfig::default()
    };
    assert!(sudden.validate().unwrap_err()[0].starts_with("drift.mode:"));
}

#[test]
fn streaming_accessors() {
    let cfg = small(3);
    let mut sim = Simulator::new(cfg.clone()).unwrap();
    assert_eq!(sim.config(), &cfg);
    assert_eq!(sim.progress(), 0.0);
    assert_eq!(sim.end_ms(), cfg.start_ms + cfg.days as i64 * DAY_MS);
    sim.next().unwrap();
    assert!(sim.progress() > 0.0 && sim.progress() < 1.0);
    let n = sim.by_ref().count();
    assert!(n > 0);
    assert_eq!(sim.progress(), 1.0);
    assert!(sim.next().is_none());
}

#[test]
fn event_count_small_config() {
    let cfg = SimConfig {
        days: 3,
        cards: 200,
        merchants: 50,
        ..SimConfig::default()
    };
    let a = Simulator::new(cfg.clone()).unwrap().count();
    let b = Simulator::new(cfg).unwrap().count();
    assert_eq!(a, b);
    // ~1.75 tx per card-day plus one label each.
    assert!((1500..3000).contains(&a), "{a} events");
}

#[test]
fn edge_configs_keep_the_contract() {
    let tiny = SimConfig {
        days: 2,
        cards: 1,
        merchants: MIN_MERCHANTS,
        ..SimConfig::default()
    };
    run_checked(tiny);
    let heavy = SimConfig {
        days: 6,
        cards: 300,
        merchants: 40,
        fraud_rate: 0.3,
        drift: DriftConfig {
            mode: DriftMode::Sudden { at_day: 3 },
            ..DriftConfig::default()
        },
        ..SimConfig::default()
    };
    let c = run_checked(heavy);
    assert!(
        c.fraud_tx as f64 > 0.05 * c.tx as f64,
        "{} of {}",
        c.fraud_tx,
        c.tx
    );
}

fn categories(seed: u64) -> SimConfig {
    SimConfig {
        family: Family::Categories,
        ..small(seed)
    }
}

#[test]
fn categories_family_keeps_the_contract_and_its_fraud_rate() {
    // Fraud rings run up to 30 days: the rate settles after the first weeks.
    let mut cfg = categories(11);
    cfg.days = 60;
    let c = run_checked(cfg);
    assert!(c.tx > 10_000, "{} transactions", c.tx);
    assert_eq!(c.labels, c.tx, "every transaction is labelled once");
    let rate = c.fraud_tx as f64 / c.tx as f64;
    assert!((0.0035..0.014).contains(&rate), "fraud rate {rate}");
    // Deterministic, and unlike the cards family on the same seed.
    let a: Vec<SimEvent> = Simulator::new(categories(11)).unwrap().take(5000).collect();
    let b: Vec<SimEvent> = Simulator::new(categories(11)).unwrap().take(5000).collect();
    assert_eq!(a, b);
    let cards: Vec<SimEvent> = Simulator::new(small(11)).unwrap().take(5000).collect();
    assert_ne!(a, cards);
}

#[test]
fn categories_family_has_its_three_mechanisms_and_batched_labels() {
    let mut cfg = categories(12);
    cfg.days = 40;
    cfg.fraud_rate = 0.02;
    let mut per = std::collections::HashMap::new();
    let mut tx_ts = std::collections::HashMap::new();
    let mut countries = std::collections::HashSet::new();
    for ev in Simulator::new(cfg).unwrap() {
        match ev {
            SimEvent::Transaction(t) => {
                countries.insert(t.country);
                tx_ts.insert(t.tx_id, t.ts_ms);
                if let Some(p) = t.fraud {
                    *per.entry(p).or_insert(0u64) += 1;
                    assert!(FraudPattern::CATEGORIES.contains(&p), "{p}");
                    if p == FraudPattern::MicroDrain {
                        assert!(t.amount < 15.0, "{t:?}");
                    }
                }
            }
            SimEvent::Label(l) if l.is_fraud => {
                // Fraud reports come in the 02:00 UTC daily batch, at least
                // a quarter of the mean delay (10 days) after the purchase.
                assert_eq!(l.ts_ms.rem_euclid(DAY_MS), 2 * HOUR_MS, "{l:?}");
                let delay = l.ts_ms - tx_ts[&l.tx_id];
                assert!(delay >= 10 * DAY_MS / 4, "{l:?}");
                assert!(delay <= 10 * DAY_MS * 7 / 4 + DAY_MS, "{l:?}");
            }
            SimEvent::Label(_) => {}
        }
    }
    assert_eq!(countries.len(), 1);
    for p in FraudPattern::CATEGORIES {
        assert!(per.get(&p).copied().unwrap_or(0) > 50, "{p}: {per:?}");
    }
}

#[test]
fn categories_labels_under_a_day_come_on_the_hour() {
    let mut cfg = categories(13);
    cfg.days = 10;
    cfg.fraud_rate = 0.02;
    cfg.labels.chargeback_median_days = 0.25;
    let mut frauds = 0;
    for ev in Simulator::new(cfg).unwrap() {
        if let SimEvent::Label(l) = ev {
            if l.is_fraud {
                frauds += 1;
                assert_eq!(l.ts_ms.rem_euclid(HOUR_MS), 0, "{l:?}");
            }
        }
    }
    assert!(frauds > 100, "{frauds}");
}
