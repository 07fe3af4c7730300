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

#[test]
fn served_scores_are_calibrated_without_reordering_them() {
    // On both families and with both model kinds, the default calibration
    // (undoing the class weighting) brings the expected calibration error
    // of the last 30 days to under half the raw score's, and, being an
    // increasing map, leaves every rank metric as it was.
    for (family, model) in [
        ("cards", "logistic"),
        ("cards", "forest"),
        ("categories", "logistic"),
        ("categories", "forest"),
    ] {
        let run = |calibration: &str| {
            let dir = tempfile::tempdir().unwrap();
            let r = run_into(
                None,
                dir.path(),
                &[
                    &format!("source.family={family}"),
                    "source.days=40",
                    "source.cards=2000",
                    "source.merchants=400",
                    &format!("model.type={model}"),
                    &format!("model.calibration={calibration}"),
                ],
            );
            r.metrics.last_days
        };
        let (raw, served) = (run("none"), run("weights"));
        let (e_raw, e_served) = (
            raw.expected_calibration_error.unwrap(),
            served.expected_calibration_error.unwrap(),
        );
        println!("{family}, {model}: ECE raw {e_raw:.4}, served {e_served:.4}");
        assert!(
            e_served * 2.0 < e_raw,
            "{family}, {model}: ECE {e_served} served against {e_raw} raw"
        );
        // Equal but for f32 rounding of the served scores (ties made or
        // broken in the last bit).
        let near = |a: Option<f64>, b: Option<f64>, what: &str| {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(
                (a - b).abs() < 1e-4,
                "{family}, {model}: {what} {a} raw, {b} served"
            );
        };
        near(raw.roc_auc, served.roc_auc, "ROC AUC");
        near(
            raw.average_precision,
            served.average_precision,
            "average precision",
        );
        near(
            raw.card_precision_at_k,
            served.card_precision_at_k,
            "card precision@k",
        );
    }
}
