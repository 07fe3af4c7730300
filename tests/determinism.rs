//! Same seed and topology, same scores: byte for byte.

use crate::util::run_into;

#[test]
fn same_seed_writes_byte_identical_scores() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    run_into(None, a.path(), &["source.days=20"]);
    run_into(None, b.path(), &["source.days=20"]);
    run_into(None, c.path(), &["source.days=20", "source.seed=7"]);
    let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("scores.jsonl")).unwrap();
    let (sa, sb, sc) = (read(&a), read(&b), read(&c));
    assert!(sa.len() > 1_000_000, "a real amount of output");
    assert!(sa == sb, "two runs with the same seed differ");
    assert!(sa != sc, "another seed gives other traffic");
    let alerts = |d: &tempfile::TempDir| std::fs::read(d.path().join("alerts.jsonl")).unwrap();
    assert!(alerts(&a) == alerts(&b));
}

#[test]
fn one_worker_runtime_equals_the_sequential_engine_byte_for_byte() {
    use fraudstream::config::Topology;
    use fraudstream::connectors::sources::SourceItem;
    use fraudstream_engine::event::Event;
    let dir = tempfile::tempdir().unwrap();
    run_into(None, dir.path(), &["source.days=10", "engine.workers=1"]);
    let piped = std::fs::read(dir.path().join("scores.jsonl")).unwrap();

    let t = Topology::embedded(&["source.days=10".to_string()]).unwrap();
    let mut engine = fraudstream::exec::outputs::start_engine(&t).unwrap();
    let mut sequential = Vec::new();
    for item in fraudstream::exec::pipeline::build_source(&t).unwrap() {
        match item {
            SourceItem::Event(Event::Transaction(tx)) => {
                serde_json::to_writer(&mut sequential, &engine.score(tx)).unwrap();
                sequential.push(b'\n');
            }
            SourceItem::Event(Event::Label(l)) => {
                engine.label(&l);
            }
            SourceItem::Rejected(_) => unreachable!("the simulator writes no bad records"),
        }
    }
    assert!(sequential.len() > 1_000_000);
    assert!(
        piped == sequential,
        "the one-worker pipeline differs from the sequential engine"
    );
}

#[test]
fn two_workers_score_everything_once_with_the_same_quality() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = run_into(None, a.path(), &["engine.workers=1"]);
    let two = run_into(None, b.path(), &["engine.workers=2"]);
    assert_eq!(two.engine.scored, one.engine.scored);
    assert_eq!(two.engine.labels_joined, one.engine.labels_joined);
    let ids = |d: &tempfile::TempDir| {
        let mut v: Vec<u64> = std::fs::read_to_string(d.path().join("scores.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["tx_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        v.sort_unstable();
        v
    };
    let (ia, ib) = (ids(&a), ids(&b));
    assert_eq!(ia, ib, "every transaction scored exactly once");
    // The last 30 days are the acceptance window (issue: within 0.005); the
    // whole run includes the cold start, where the workers' interleaving of
    // scores and labels moves the AUC more (observed up to 0.0023).
    for (window, x, y, tolerance) in [
        (
            "last 30 days",
            one.metrics.last_days.roc_auc,
            two.metrics.last_days.roc_auc,
            0.005,
        ),
        (
            "all days",
            one.metrics.overall.roc_auc,
            two.metrics.overall.roc_auc,
            0.01,
        ),
    ] {
        let (x, y) = (x.unwrap(), y.unwrap());
        println!("{window}: AUC one worker {x:.4}, two workers {y:.4}");
        assert!((x - y).abs() <= tolerance, "{window}: {x} vs {y}");
    }
}
