//! A simulation written to files and replayed gives the in-process metrics.

use crate::util::{fraudstream, run_into, text};

#[test]
fn csv_replay_matches_the_in_process_run() {
    let work = tempfile::tempdir().unwrap();
    let out = fraudstream(&["simulate", "--out", "data/sim"], work.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("transactions"), "{stdout}");
    let sim = work.path().join("data/sim");
    let replay = run_into(
        Some("topologies/replay-csv.toml"),
        &work.path().join("replay"),
        &[
            &format!("source.path=\"{}\"", sim.join("transactions.csv").display()),
            &format!("labels.path=\"{}\"", sim.join("labels.csv").display()),
        ],
    );
    let live = run_into(None, &work.path().join("live"), &[]);
    assert_eq!(replay.input.transactions, live.input.transactions);
    assert_eq!(replay.input.labels, live.input.labels);
    assert_eq!(replay.input.dead_letters, 0);
    for (r, l) in [
        (&replay.metrics.overall, &live.metrics.overall),
        (&replay.metrics.last_days, &live.metrics.last_days),
    ] {
        let (ra, la) = (r.roc_auc.unwrap(), l.roc_auc.unwrap());
        assert!(
            (ra - la).abs() <= 0.005,
            "replay AUC {ra} vs in-process {la}"
        );
        assert_eq!(r.frauds, l.frauds);
    }
}

#[test]
fn jsonl_replay_with_a_label_column_and_mapping() {
    let work = tempfile::tempdir().unwrap();
    let out = fraudstream(
        &[
            "simulate", "--out", "sim", "--format", "jsonl", "--days", "5", "--cards", "500",
        ],
        work.path(),
    );
    assert!(out.status.success(), "{}", text(&out).1);
    // Rewrite the transactions with the analyst's own column names and a
    // FRAUD column, as recorded data would come.
    let labels = std::fs::read_to_string(work.path().join("sim/labels.jsonl")).unwrap();
    let fraud: std::collections::HashSet<u64> = labels
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["is_fraud"].as_bool().unwrap())
        .map(|v| v["tx_id"].as_u64().unwrap())
        .collect();
    let txs = std::fs::read_to_string(work.path().join("sim/transactions.jsonl")).unwrap();
    let mut mapped = String::new();
    for l in txs.lines() {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
        let o = v.as_object_mut().unwrap();
        let card = o.remove("card_id").unwrap();
        o.insert("CUSTOMER_ID".into(), card);
        let id = o["tx_id"].as_u64().unwrap();
        o.insert("FRAUD".into(), (fraud.contains(&id) as u8).into());
        mapped.push_str(&serde_json::to_string(&v).unwrap());
        mapped.push('\n');
    }
    std::fs::write(work.path().join("mapped.jsonl"), mapped).unwrap();
    let topology = format!(
        r#"
[source]
type = "file"
path = "{}"
timestamp = "rfc3339"
[source.fields]
card_id = "CUSTOMER_ID"
[labels]
type = "column"
column = "FRAUD"
delay = "3d"
[sinks.scores]
type = "scores"
[sinks.alerts]
type = "alerts"
[sinks.dead_letters]
type = "dead_letters"
[sinks.report]
type = "report"
"#,
        work.path().join("mapped.jsonl").display()
    );
    std::fs::write(work.path().join("t.toml"), topology).unwrap();
    let r = run_into(
        Some(work.path().join("t.toml").to_str().unwrap()),
        &work.path().join("o"),
        &[],
    );
    assert_eq!(r.input.dead_letters, 0);
    assert!(r.input.transactions > 4000);
    assert_eq!(r.input.labels, r.input.transactions, "one label per row");
    assert_eq!(r.metrics.overall.frauds as usize, fraud.len());
}
