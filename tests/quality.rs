//! Model quality on the default simulation, read from the engine's own report.

use crate::util::run_into;

#[test]
fn default_simulation_meets_the_quality_bar() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_into(None, dir.path(), &[]);
    assert!(r.input.transactions >= 500_000, "{}", r.input.transactions);
    let days = r.metrics.overall.last_day.unwrap() - r.metrics.overall.first_day.unwrap() + 1;
    assert!(days >= 60, "{days} days");
    let last = &r.metrics.last_days;
    assert_eq!(r.metrics.last_days_n, 30);
    let auc = last.roc_auc.unwrap();
    let ap = last.average_precision.unwrap();
    println!("last 30 days: AUC {auc:.4}, AP {ap:.4}");
    assert!(auc >= 0.90, "ROC AUC over the last 30 days {auc}");
    assert!(ap >= 0.50, "average precision over the last 30 days {ap}");
    // every label was joined and learnt from, nothing dropped on the way
    assert_eq!(r.engine.labels_joined, r.input.labels);
    assert_eq!(r.engine.scored, r.input.transactions);
    assert_eq!(r.daily.len() as i64, days);
}
