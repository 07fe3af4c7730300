//! A model saved at the end of one run starts the next.

use crate::util::run_into;

#[test]
fn saved_model_is_loaded_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    let save = format!("model.save=\"{}\"", model.display());
    let load = format!("model.load=\"{}\"", model.display());
    let first = run_into(None, &dir.path().join("a"), &["source.days=15", &save]);
    assert!(model.exists());
    // The next 15 days, scored by the loaded model without further learning.
    let next = [
        "source.days=15",
        "source.seed=43",
        "labels.learn=false",
        load.as_str(),
    ];
    let warm = run_into(None, &dir.path().join("b"), &next);
    assert_eq!(
        warm.model_version, first.model_version,
        "loaded, not retrained"
    );
    let cold = run_into(None, &dir.path().join("c"), &next[..3]);
    let (w, c) = (
        warm.metrics.overall.roc_auc.unwrap(),
        cold.metrics.overall.roc_auc.unwrap(),
    );
    println!("loaded model AUC {w:.4}, untrained {c:.4}");
    assert!(w > 0.85 && w - c > 0.3, "loaded {w} vs untrained {c}");
}

#[test]
fn a_model_for_other_features_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    let save = format!("model.save=\"{}\"", model.display());
    run_into(None, &dir.path().join("a"), &["source.days=2", &save]);
    let load = format!("model.load=\"{}\"", model.display());
    let set = vec![load, "features.card_windows=[\"1h\"]".to_string()];
    let t = fraudstream::config::Topology::embedded(&set).unwrap();
    let err = fraudstream::exec::outputs::start_engine(&t)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("other features"), "{err}");
}
