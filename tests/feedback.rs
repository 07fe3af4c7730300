//! The feedback loop matters: without learning from labels the same stream
//! scores clearly worse.

use crate::util::run_into;

#[test]
fn switching_labels_off_scores_clearly_worse() {
    let dir = tempfile::tempdir().unwrap();
    // 60 days: the last 30 are past the first month, where merchant risk
    // by transaction time is still filling (docs/benchmarks.md, banded
    // features and merchant risk).
    let with = run_into(None, dir.path(), &["source.days=60"]);
    let without = run_into(None, dir.path(), &["source.days=60", "labels.learn=false"]);
    let (a, b) = (
        with.metrics.last_days.roc_auc.unwrap(),
        without.metrics.last_days.roc_auc.unwrap(),
    );
    let (pa, pb) = (
        with.metrics.last_days.average_precision.unwrap(),
        without.metrics.last_days.average_precision.unwrap(),
    );
    println!("AUC with feedback {a:.4}, without {b:.4}; AP {pa:.4} vs {pb:.4}");
    assert!(a - b >= 0.2, "AUC gap {a} vs {b}");
    assert!(pa - pb >= 0.3, "AP gap {pa} vs {pb}");
    assert_eq!(without.engine.labels_learnt, 0);
    assert_eq!(without.model_version, 0);
    // labels still reached the evaluation
    assert_eq!(
        without.metrics.overall.labeled,
        with.metrics.overall.labeled
    );
}

#[test]
fn merchant_risk_feedback_alone_helps_compromised_merchants() {
    // Only compromised-merchant fraud: the merchant fraud-risk windows, fed by
    // labels, are what finds it.
    let dir = tempfile::tempdir().unwrap();
    let only = [
        "source.days=30",
        "source.patterns.stolen_card=0",
        "source.patterns.account_takeover=0",
        "source.patterns.card_testing=0",
        "source.drift.mode=\"none\"",
    ];
    let r = run_into(None, dir.path(), &only);
    let auc = r.metrics.last_days.roc_auc.unwrap();
    println!("compromised merchants only: AUC {auc:.4}");
    assert!(auc >= 0.85, "AUC {auc}");
}
