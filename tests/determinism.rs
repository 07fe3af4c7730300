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
    // scores and labels moves the AUC more (observed up to 0.0023 with the
    // logistic model, 0.0049 with `auto`).
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

/// Two card stages that replicate learning (each holds the other's scored
/// vectors and learns from every label, as the service's card stages do
/// through the learn topic), fed in step, score every transaction exactly
/// as one engine over the whole stream: same merchant features, same input
/// statistics, same updates in the same order.
#[test]
fn card_stages_that_replicate_learning_score_like_one_engine_bit_for_bit() {
    stages_score_like_one_engine("logistic");
}

/// The same with `auto`: the Half-Space Trees, the candidates' scales and
/// the score detector take in the other stage's vectors too.
#[test]
fn card_stages_serving_auto_score_like_one_engine_bit_for_bit() {
    stages_score_like_one_engine("auto");
}

fn stages_score_like_one_engine(model: &str) {
    use fraudstream::config::Topology;
    use fraudstream::connectors::sources::SourceItem;
    use fraudstream_engine::event::Event;
    let t = Topology::embedded(&[
        "source.days=10".to_string(),
        format!("model.type=\"{model}\""),
    ])
    .unwrap();
    let start = || fraudstream::exec::outputs::start_engine(&t).unwrap();
    let (mut single, mut first, mut second) = (start(), start(), start());
    let (merchant, card0) = first.stages_mut();
    let card1 = second.stages_mut().1;
    card0.replicate_learning();
    card1.replicate_learning();
    let (mut scored, mut replica_labels) = (0u64, 0u64);
    for item in fraudstream::exec::pipeline::build_source(&t).unwrap() {
        match item {
            SourceItem::Event(Event::Transaction(tx)) => {
                let want = single.score(tx.clone());
                let ctx = merchant.on_transaction_at(&tx, 2, 0);
                let (owner, other) = match ctx.worker {
                    0 => (&mut *card0, &mut *card1),
                    _ => (&mut *card1, &mut *card0),
                };
                let got = owner.score(tx, &ctx);
                assert_eq!(
                    (got.score.to_bits(), got.alert, &got.tx_id),
                    (want.score.to_bits(), want.alert, &want.tx_id),
                    "transaction {} scored otherwise",
                    want.tx_id
                );
                for r in owner.take_replicas() {
                    other.hold_replica(&r);
                }
                scored += 1;
            }
            SourceItem::Event(Event::Label(l)) => {
                single.label(&l);
                if let Some((owner, label)) = merchant.on_label(&l) {
                    let (owner, other) = match owner {
                        0 => (&mut *card0, &mut *card1),
                        _ => (&mut *card1, &mut *card0),
                    };
                    owner.label(&label);
                    other.learn_replica(&label);
                    replica_labels += 1;
                }
            }
            SourceItem::Rejected(_) => unreachable!("the simulator writes no bad records"),
        }
    }
    assert!(
        scored > 80_000 && replica_labels > 10_000,
        "{scored} {replica_labels}"
    );
    for card in [&*card0, &*card1] {
        let r = card.replica_stats();
        assert_eq!((r.waited, r.waiting, r.dropped), (0, 0, 0));
        assert!(card.counters().scored > scored / 3, "both stages own cards");
    }
    assert_eq!(
        card0.replica_stats().learnt + card1.replica_stats().learnt,
        replica_labels
    );
}
