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

#[test]
fn the_categories_family_is_learnt_by_the_default_and_the_forest() {
    // Traffic the features were not written for (BankSim-style categories,
    // labels in daily batches): the default and the forest both learn it,
    // and the forest, which can isolate an amount level per category, ranks
    // its frauds better.
    let mut ap = Vec::new();
    for model in ["logistic", "forest"] {
        let dir = tempfile::tempdir().unwrap();
        let r = run_into(
            None,
            dir.path(),
            &[
                "source.family=categories",
                "source.cards=2000",
                "source.merchants=400",
                &format!("model.type={model}"),
            ],
        );
        assert_eq!(r.engine.scored, r.input.transactions);
        let last = &r.metrics.last_days;
        let (auc, p) = (last.roc_auc.unwrap(), last.average_precision.unwrap());
        println!("categories, {model}: last 30 days AUC {auc:.4}, AP {p:.4}");
        assert!(auc >= 0.85, "{model}: ROC AUC over the last 30 days {auc}");
        ap.push(p);
    }
    assert!(ap[0] >= 0.15, "logistic: average precision {}", ap[0]);
    assert!(ap[1] > ap[0], "forest {} against logistic {}", ap[1], ap[0]);
}
