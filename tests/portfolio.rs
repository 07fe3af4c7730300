//! The model portfolio on the default simulation (gradual drift on), read
//! from the engine's own reports: the best configuration against the core
//! engine's online logistic regression, and drift recovery.

use crate::util::run_into;
use fraudstream::connectors::sinks::report::RunReport;

fn last(r: &RunReport) -> (f64, f64, f64) {
    let l = &r.metrics.last_days;
    (
        l.roc_auc.unwrap(),
        l.average_precision.unwrap(),
        l.card_precision_at_k.unwrap(),
    )
}

#[test]
fn the_forest_beats_online_logistic_regression_over_the_last_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let base = run_into(
        None,
        &dir.path().join("logistic"),
        &["model.type=\"logistic\""],
    );
    let best = run_into(None, &dir.path().join("forest"), &["model.type=\"forest\""]);
    assert_eq!(base.model, "logistic");
    assert_eq!(best.model, "forest");
    assert_eq!(base.metrics.last_days_n, 30);
    assert_eq!(best.input, base.input, "the same stream");
    let (b_auc, b_ap, b_cp) = last(&base);
    let (f_auc, f_ap, f_cp) = last(&best);
    println!("last 30 days: logistic AUC {b_auc:.4} AP {b_ap:.4} card P@100 {b_cp:.4}; forest AUC {f_auc:.4} AP {f_ap:.4} card P@100 {f_cp:.4}");
    assert!(
        f_ap > b_ap,
        "average precision: forest {f_ap} vs logistic {b_ap}"
    );
    assert!(
        f_cp > b_cp,
        "card precision@100: forest {f_cp} vs logistic {b_cp}"
    );
    // the served model's own evaluation is the run's evaluation once warm
    let forest = best.models.iter().find(|m| m.name == "forest").unwrap();
    assert!(forest.served);
    assert_eq!(forest.last_days.average_precision, Some(f_ap));
    // every alert says why, with tree path contributions
    let alerts = std::fs::read_to_string(dir.path().join("forest/alerts.jsonl")).unwrap();
    let mut n = 0;
    for line in alerts.lines().skip(alerts.lines().count() / 2).take(200) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let top = v["top_features"].as_array().unwrap();
        assert!(!top.is_empty() && top.len() <= 3, "{line}");
        assert!(
            top.iter().all(|c| c["value"].as_f64().unwrap() > 0.0),
            "{line}"
        );
        n += 1;
    }
    assert!(n > 0, "alerts were raised");
}

/// Overrides for a 45-day stream whose fraud mix flips at day 25: stolen
/// cards and account takeovers before, compromised terminals and card
/// testing after.
const SUDDEN: [&str; 10] = [
    "source.days=45",
    "source.drift.mode=\"sudden\"",
    "source.drift.at_day=25",
    "source.patterns.stolen_card=0.48",
    "source.patterns.compromised_merchant=0.02",
    "source.patterns.account_takeover=0.48",
    "source.patterns.card_testing=0.02",
    "source.drift.end_mix.stolen_card=0.02",
    "source.drift.end_mix.compromised_merchant=0.48",
    "source.drift.end_mix.card_testing=0.48",
];
const AT_DAY: i64 = 25;
/// Days within which the adaptive model must be back (stated in docs/benchmarks.md, "Drift").
const RECOVERY_DAYS: i64 = 7;

/// Days from the change until the 3-day mean of daily AUC is back within
/// 0.02 of the mean of the 5 days before the change; `None` if never.
fn recovery_days(r: &RunReport) -> (f64, Option<i64>) {
    let auc = |d: i64| {
        r.daily
            .iter()
            .find(|m| m.day == d)
            .and_then(|m| m.roc_auc)
            .unwrap()
    };
    let before = (AT_DAY - 5..AT_DAY).map(auc).sum::<f64>() / 5.0;
    let last = r.daily.last().unwrap().day;
    let back = (AT_DAY..=last - 2)
        .find(|&d| (d..d + 3).map(auc).sum::<f64>() / 3.0 >= before - 0.02)
        .map(|d| d - AT_DAY);
    (before, back)
}

#[test]
fn after_a_sudden_change_of_fraud_pattern_forest_and_logistic_recover_within_a_week() {
    let dir = tempfile::tempdir().unwrap();
    let forest = {
        let mut set = SUDDEN.to_vec();
        set.push("model.type=\"forest\"");
        run_into(None, &dir.path().join("forest"), &set)
    };
    let logistic = run_into(None, &dir.path().join("logistic"), &SUDDEN);
    let (f_before, f_back) = recovery_days(&forest);
    let (l_before, l_back) = recovery_days(&logistic);
    println!(
        "daily AUC before the change: forest {f_before:.4}, logistic {l_before:.4}; back within 0.02 after {f_back:?} (forest), {l_back:?} (logistic) days"
    );
    let f_back = f_back.expect("the forest recovers");
    assert!(f_back <= RECOVERY_DAYS, "forest back after {f_back} days");
    // Both learn online; with banded features and merchant risk by
    // transaction time the logistic model is back a day before the forest
    // (6 against 7 days), so it is held to the same bound.
    let l_back = l_back.expect("the logistic model recovers");
    assert!(
        l_back <= RECOVERY_DAYS,
        "logistic model back after {l_back} days"
    );
    // the error detector saw the change within three days of it, and every
    // event is dated in the stream's days
    let seen = forest
        .drift_events
        .iter()
        .find(|e| {
            e.kind == fraudstream_engine::model::portfolio::DriftKind::Error && e.day >= AT_DAY
        })
        .expect("an error drift after the change");
    assert!(
        seen.day <= AT_DAY + 3,
        "first error drift on day {}",
        seen.day
    );
    assert!(forest.drift_events.windows(2).all(|w| w[0].ts <= w[1].ts));
}

#[test]
fn the_blend_with_background_retraining_is_deterministic() {
    let set = [
        "source.days=14",
        "model.type=\"blend\"",
        "model.compare=true",
        "model.batch.retrain_every=20000",
        "model.batch.swap_after=2000",
    ];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ra = run_into(None, a.path(), &set);
    let rb = run_into(None, b.path(), &set);
    assert!(
        ra.batch_swaps >= 3,
        "the batch model was retrained: {}",
        ra.batch_swaps
    );
    assert_eq!(ra.batch_swaps, rb.batch_swaps);
    let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("scores.jsonl")).unwrap();
    let (sa, sb) = (read(&a), read(&b));
    assert!(sa.len() > 500_000, "a real amount of output");
    assert!(sa == sb, "two runs with the same seed differ");
    assert_eq!(ra.models, rb.models, "every member's metrics");
    assert_eq!(ra.drift_events, rb.drift_events);
    let names: Vec<&str> = ra.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["logistic", "hst", "forest", "batch", "blend"]);
    // every member is evaluated on every transaction
    for m in &ra.models {
        assert_eq!(m.overall.transactions, ra.input.transactions, "{}", m.name);
    }
}
