//! Model quality on the default simulation, read from the engine's own report.

use crate::util::{fraudstream, repo, run_into, text};
use fraudstream_engine::model::select::Candidate;

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
fn the_categories_family_is_learnt_by_the_logistic_model_and_the_forest() {
    // Traffic the features were not written for (BankSim-style categories,
    // labels in daily batches): the logistic model (the default until
    // 2026-12-01) and the forest both learn it,
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
fn the_handbook_family_is_learnt_by_the_default() {
    // The Fraud Detection Handbook's simulator (written by others, for
    // their book): amounts above a level, compromised terminals and
    // customers, labels 7 days late. The default learns it from its own
    // labels, and no mechanism is left unread.
    let dir = tempfile::tempdir().unwrap();
    let r = run_into(
        None,
        dir.path(),
        &[
            "source.family=handbook",
            "source.cards=2000",
            "source.merchants=400",
            "source.label_delay.chargeback_median_days=7",
            "source.label_delay.genuine_maturity_days=7",
        ],
    );
    assert_eq!(r.engine.scored, r.input.transactions);
    assert_eq!(r.engine.labels_joined, r.input.labels);
    let last = &r.metrics.last_days;
    let (auc, ap) = (last.roc_auc.unwrap(), last.average_precision.unwrap());
    println!("handbook: last 30 days AUC {auc:.4}, AP {ap:.4}");
    // Measured 2026-12-02: 0.872 and 0.569 (the matrix's 7-day cell).
    assert!(auc >= 0.84, "ROC AUC over the last 30 days {auc}");
    assert!(ap >= 0.45, "average precision over the last 30 days {ap}");
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

#[test]
fn the_default_auto_serves_about_the_best_candidate_on_both_families_and_reports_why() {
    // The default model (`auto`, no `model.type` given) against each
    // candidate's own prequential evaluation in the same run (the candidates
    // learn the same whichever is served; the logistic candidate is the
    // former default, scoring as it does alone): over the last 30 days its
    // average precision beats the logistic model's and is within 0.02 of
    // the best candidate's, and every switch it made is in the report with
    // its figures.
    // Rarer cells, where a 30-day window holds a few dozen frauds, are
    // judged across the whole robustness matrix in the next test.
    for family in ["cards", "categories"] {
        let dir = tempfile::tempdir().unwrap();
        let sets = [
            &format!("source.family={family}")[..],
            "source.cards=2000",
            "source.merchants=400",
        ];
        let r = run_into(None, dir.path(), &sets);
        assert_eq!(r.model, "auto");
        let served = r.metrics.last_days.average_precision.unwrap();
        let candidate = |name: &str| {
            let m = r.models.iter().find(|m| m.name == name).unwrap();
            m.last_days.average_precision.unwrap()
        };
        let (logistic, forest, blend) = (
            candidate("logistic"),
            candidate("forest"),
            candidate("blend"),
        );
        let best = logistic.max(forest).max(blend);
        println!(
            "{family}: auto AP {served:.4}; logistic {logistic:.4}, forest {forest:.4}, blend {blend:.4}; switches {:?}",
            r.model_switches.iter().map(|s| (s.day, s.to.name())).collect::<Vec<_>>()
        );
        assert!(
            served > logistic,
            "{family}: the default {served} against the former default {logistic}"
        );
        assert!(
            served >= best - 0.02,
            "{family}: auto {served} against the best {best}"
        );
        assert!(
            !r.model_switches.is_empty(),
            "{family}: it left the logistic model"
        );
        for w in &r.model_switches {
            assert_ne!(w.from, w.to);
            // The blend is credited `blend_prior` in the comparison.
            let mut credited = w.average_precision;
            credited[Candidate::Blend as usize] += w.blend_prior;
            let (from, to) = (w.from as usize, w.to as usize);
            assert!(
                credited[to] >= credited[from] + 0.02,
                "{family}: a switch leads by the margin: {w:?}"
            );
            assert!(w.window_frauds >= 30 && w.window_labels <= 50_000, "{w:?}");
        }
        let days: Vec<i64> = r.model_switches.iter().map(|w| w.day).collect();
        assert!(days.windows(2).all(|d| d[0] <= d[1]), "by time: {days:?}");
    }
}

#[test]
fn across_the_robustness_matrix_auto_is_about_the_best_candidate_nearly_everywhere() {
    // The default matrix (three families, label delays from 6 hours to 30
    // days, fraud rates from 0.1 % to 3 %: 15 cells, each model run alone,
    // seed 42). In a rare cell the window that judges the candidates holds
    // a few dozen frauds and auto may serve the wrong one, so this asserts
    // what holds across cells: auto is within 0.02 average precision of the
    // best model in nearly every cell (12 of 15 with the batch forest in
    // the blend trained every 40,000 labels, 2026-12-03, 13 at seed 7; 13
    // and 11 with the former batch model, whose means were lower: auto
    // 0.549 and 0.551 against 0.556 and 0.560 now), its mean is not below
    // the best single model's by more than 0.01 (it is the best: 0.556,
    // the blend 0.549), and it beats the logistic model's mean.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let run = fraudstream(&["matrix", "--out", out.to_str().unwrap()], &repo());
    let (_, stderr) = text(&run);
    assert!(run.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("matrix.json")).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    let cell = |r: &serde_json::Value| {
        format!(
            "{} {} d {}",
            r["family"], r["label_delay_days"], r["fraud_rate"]
        )
    };
    let mut cells: std::collections::BTreeMap<String, Vec<(String, f64)>> = Default::default();
    for r in results {
        let ap = r["average_precision"].as_f64().unwrap();
        let model = r["model"].as_str().unwrap().to_string();
        cells.entry(cell(r)).or_default().push((model, ap));
    }
    assert_eq!(cells.len(), 15, "{cells:?}");
    let ap =
        |models: &[(String, f64)], name: &str| models.iter().find(|(m, _)| m == name).unwrap().1;
    let mut near_best = 0;
    for (name, models) in &cells {
        assert_eq!(models.len(), 4, "{name}: {models:?}");
        let auto = ap(models, "auto");
        let best = ["logistic", "forest", "blend"]
            .iter()
            .map(|m| ap(models, m))
            .fold(f64::MIN, f64::max);
        println!("{name}: auto {auto:.3}, best single model {best:.3}");
        if auto >= best - 0.02 {
            near_best += 1;
        }
    }
    assert!(
        near_best >= 12,
        "auto within 0.02 of the best in {near_best} of 15 cells"
    );
    // The matrix's own summary: each model's mean over the cells.
    let summary = report["summary"].as_array().unwrap();
    let mean = |name: &str| {
        let m = summary.iter().find(|m| m["model"] == name).unwrap();
        m["mean_average_precision"].as_f64().unwrap()
    };
    let best_single = ["logistic", "forest", "blend"]
        .map(mean)
        .into_iter()
        .fold(f64::MIN, f64::max);
    println!(
        "mean average precision: auto {}, best single model {best_single}",
        mean("auto")
    );
    assert!(mean("auto") >= best_single - 0.01, "{summary:?}");
    assert!(mean("auto") > mean("logistic"), "{summary:?}");
}
