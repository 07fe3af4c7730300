//! The model portfolio on the default simulation (gradual drift on), read
//! from the engine's own reports: the best configuration against the core
//! engine's online logistic regression, and drift recovery.

use crate::util::run_into;
use fraudstream::sinks::report::RunReport;

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
    let base = run_into(None, &dir.path().join("logistic"), &[]);
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
