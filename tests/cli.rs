//! The command line: validation reports everything at once, errors are clear.

use crate::util::{fraudstream, repo, text};

#[test]
fn shipped_topologies_validate() {
    let run = fraudstream(
        &[
            "validate",
            "topologies/embedded.toml",
            "topologies/replay-csv.toml",
            "topologies/fluvio.toml",
            "topologies/fluvio-scaled.toml",
            "topologies/fluvio-stages.toml",
            "topologies/api.toml",
            "tests/data/bad_input.toml",
        ],
        &repo(),
    );
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stderr}");
    assert_eq!(stdout.matches(": ok").count(), 7, "{stdout}");
}

#[test]
fn the_null_pipeline_is_refused_for_a_topology_without_fluvio() {
    let run = fraudstream(&["run", "--null-pipeline", "-q"], &repo());
    let (_, stderr) = text(&run);
    assert!(!run.status.success());
    assert!(
        stderr.contains("--null-pipeline runs a Fluvio service"),
        "{stderr}"
    );
}

#[test]
fn a_role_is_chosen_on_the_command_line_and_checked() {
    // A role other than `all` needs [stages], and the error says which key.
    let dir = tempfile::tempdir().unwrap();
    let run = fraudstream(
        &["run", "topologies/fluvio.toml", "--role", "card", "-q"],
        &repo(),
    );
    let (_, stderr) = text(&run);
    assert!(!run.status.success());
    assert!(stderr.contains("stages.topic: expected"), "{stderr}");
    let run = fraudstream(
        &[
            "run",
            "topologies/fluvio-stages.toml",
            "--role",
            "cards",
            "--set",
            &format!("checkpoint.dir={}", dir.path().display()),
        ],
        &repo(),
    );
    let (_, stderr) = text(&run);
    assert!(!run.status.success());
    assert!(
        stderr.contains(r#"stages.role: expected one of "all", "merchant", "card", found "cards""#),
        "{stderr}"
    );
}

#[test]
fn validate_reports_every_error_with_file_key_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[engine]\nalert_threshold = \"high\"\n[source]\ntype = \"kafka\"\n[model]\nalpha = -1\n[sinks.x]\ntype = \"scores\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.toml"), "[source\n").unwrap();
    let run = fraudstream(&["validate", "a.toml", "b.toml"], dir.path());
    let (_, stderr) = text(&run);
    assert!(!run.status.success());
    for needle in [
        "a.toml: engine.alert_threshold: expected a number from 0 to 1, found \"high\"",
        "a.toml: source.type: expected one of \"simulator\", \"file\", \"fluvio\", \"api\", found \"kafka\"",
        "a.toml: model.alpha: expected a number",
        "a.toml: sinks.x.path: expected the path of the output file",
        "b.toml: (syntax): expected valid TOML",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
}

#[test]
fn run_names_a_missing_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = fraudstream(
        &[
            "run",
            &repo()
                .join("topologies/replay-csv.toml")
                .display()
                .to_string(),
            "-q",
        ],
        dir.path(),
    );
    let (_, stderr) = text(&run);
    assert!(!run.status.success());
    assert!(
        stderr.contains("cannot open data/sim/transactions.csv"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn simulate_writes_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["csv", "jsonl"] {
        let run = fraudstream(
            &[
                "simulate", "--out", format, "--format", format, "--days", "2", "--cards", "200",
                "--seed", "3",
            ],
            dir.path(),
        );
        let (stdout, stderr) = text(&run);
        assert!(run.status.success(), "{stderr}");
        assert!(stdout.starts_with("wrote "), "{stdout}");
        let txs = std::fs::read_to_string(
            dir.path()
                .join(format)
                .join(format!("transactions.{format}")),
        )
        .unwrap();
        assert!(txs.lines().count() > 300, "{format}");
    }
    let bad = fraudstream(&["simulate", "--rate=0"], dir.path());
    assert!(!bad.status.success());
    assert!(text(&bad).1.contains("--rate"));
}

#[test]
fn bench_writes_json_and_chart_for_each_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let run = fraudstream(
        &[
            "bench",
            "--workers",
            "1,2",
            "--no-paced",
            "--set",
            "source.days=2",
            "--out",
            "b",
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stderr}");
    assert!(stdout.contains("workers"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("b/bench.json")).unwrap())
            .unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (r, w) in runs.iter().zip([1, 2]) {
        assert_eq!(r["workers"], w);
        assert!(r["transactions_per_sec"].as_f64().unwrap() > 0.0);
        assert!(r["latency"]["p99_ns"].as_u64().unwrap() > 0);
        assert!(r["bytes_per_card"].as_u64().unwrap() > 0);
    }
    let svg = std::fs::read_to_string(dir.path().join("b/bench.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

#[test]
fn export_stream_writes_every_transaction_and_label_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let run = fraudstream(
        &[
            "bench",
            "--export-stream",
            "s.csv",
            "--set",
            "source.days=2",
            "--set",
            "source.cards=300",
            // A portfolio stores side values after the features: not exported.
            "--set",
            "model.type=\"auto\"",
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stderr}");
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("s.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..4], ["kind", "tx_id", "ts", "is_fraud"]);
    assert_eq!(
        &header[header.len() - 3..],
        ["cat_mcc", "cat_country", "cat_channel"]
    );
    let (mut t, mut l) = (0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), header.len(), "{line}");
        match cols[0] {
            "T" => {
                t += 1;
                seen.insert(cols[1].to_string());
                assert!(cols[4..header.len() - 3]
                    .iter()
                    .all(|v| v.parse::<f32>().unwrap().is_finite()));
            }
            "L" => {
                l += 1;
                assert!(seen.contains(cols[1]), "label after its transaction");
            }
            other => panic!("kind {other}"),
        }
    }
    assert_eq!(t, figures["transactions"].as_u64().unwrap());
    assert_eq!(l, figures["labels"].as_u64().unwrap());
}

#[test]
fn matrix_runs_each_model_on_each_family_and_writes_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let run = fraudstream(
        &[
            "matrix",
            "--families",
            "cards,categories,handbook",
            "--models",
            "logistic,forest",
            "--delays",
            "1",
            "--fraud-rates",
            "0.007",
            "--days",
            "40",
            "--cards",
            "800",
            "--out",
            out.to_str().unwrap(),
        ],
        &repo(),
    );
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("matrix.json")).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    // Two cells (one delay, plus the default rate at the 7-day delay) per
    // family, two models each.
    assert_eq!(results.len(), 12, "{report:#}");
    for r in results {
        let auc = r["roc_auc"].as_f64().unwrap();
        assert!(auc > 0.7 && auc <= 1.0, "{r}");
        assert!(r["frauds"].as_u64().unwrap() > 0, "{r}");
        // Every mechanism of the family, from the simulator's truth: their
        // frauds add up to at least the labelled frauds of the window.
        let mechanisms = r["mechanisms"].as_array().unwrap();
        let names: Vec<&str> = mechanisms
            .iter()
            .map(|m| m["mechanism"].as_str().unwrap())
            .collect();
        let expected: &[&str] = match r["family"].as_str().unwrap() {
            "cards" => &[
                "account_takeover",
                "card_testing",
                "compromised_merchant",
                "stolen_card",
            ],
            "categories" => &["fraud_ring_merchant", "high_value_category", "micro_drain"],
            _ => &[
                "amount_above_level",
                "compromised_customer",
                "compromised_terminal",
            ],
        };
        if r["family"] == "handbook" {
            // 160 terminals, 40 days: a compromised terminal may not fall
            // in the window; the two other mechanisms always do.
            assert!(names.len() >= 2, "{r}");
            assert!(names.iter().all(|n| expected.contains(n)), "{r}");
        } else {
            assert_eq!(names, expected, "{r}");
        }
        let frauds: u64 = mechanisms
            .iter()
            .map(|m| m["frauds"].as_u64().unwrap())
            .sum();
        assert!(frauds >= r["frauds"].as_u64().unwrap(), "{r}");
        for m in mechanisms {
            let ap = m["average_precision"].as_f64().unwrap();
            assert!(ap > 0.0 && ap <= 1.0, "{m}");
        }
    }
    assert_eq!(report["summary"].as_array().unwrap().len(), 2);
    let md = std::fs::read_to_string(out.join("matrix.md")).unwrap();
    assert!(md.contains("| categories | 1 d | 0.70 % |"), "{md}");
    assert!(
        md.contains("| categories | 1 d | 0.70 % | micro_drain |"),
        "{md}"
    );
    assert!(
        stdout.contains("| model | mean average precision |"),
        "{stdout}"
    );
    // A family that does not exist is named in the error.
    let bad = fraudstream(&["matrix", "--families", "paysim"], &repo());
    let (_, stderr) = text(&bad);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("expected cards, categories or handbook, found \"paysim\""),
        "{stderr}"
    );
}
