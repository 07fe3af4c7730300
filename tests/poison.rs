//! One bad record among 20,000 ordinary ones (the issue's scenarios, through
//! the binary's own file replay): it is a dead letter or a harmless value, and
//! every other transaction scores as if it were not there.

use crate::util::run_into;
use std::io::Write;
use std::path::Path;

/// 20,000 transactions over 500 cards and 40 merchants, one a minute, with
/// `extra` (a JSONL line) written after the 10,000th.
fn stream(path: &Path, extra: Option<&str>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let start = 1_767_225_600_000i64; // 2026-01-01
    for i in 0..20_000i64 {
        let amount = 5.0 + (i * 7919 % 400) as f64;
        writeln!(
            f,
            r#"{{"tx_id":{i},"ts":{},"card_id":"c{}","merchant_id":"m{}","amount":{amount}}}"#,
            start + i * 60_000,
            i % 500,
            i % 40
        )
        .unwrap();
        if let (9_999, Some(line)) = (i, extra) {
            writeln!(f, "{line}").unwrap();
        }
    }
}

/// Scores by tx id of a replay of `extra` in the stream, and the run's report.
fn replay(
    extra: Option<&str>,
) -> (
    std::collections::BTreeMap<String, f64>,
    fraudstream::connectors::sinks::report::RunReport,
) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    stream(&input, extra);
    let source = format!("source.path=\"{}\"", input.display());
    let report = run_into(
        Some("tests/data/bad_input.toml"),
        dir.path(),
        &[&source, "engine.alert_threshold=0.2"],
    );
    let scores = std::fs::read_to_string(dir.path().join("scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let score = v["score"].as_f64().unwrap_or(f64::NAN);
            (v["tx_id"].to_string(), score)
        })
        .collect();
    (scores, report)
}

/// Of `clean`'s scores, how many the poisoned run gave within 0.01 (all of
/// the poisoned run's other scores must be finite).
fn close_scores(
    clean: &std::collections::BTreeMap<String, f64>,
    poisoned: &std::collections::BTreeMap<String, f64>,
) -> usize {
    clean
        .iter()
        .filter(|(id, a)| {
            let b = poisoned[id.as_str()];
            assert!(b.is_finite() && (0.0..=1.0).contains(&b), "tx {id}: {b}");
            (*a - b).abs() <= 0.01
        })
        .count()
}

#[test]
fn one_poisoned_record_leaves_everyone_elses_scores_alone() {
    let (clean, report) = replay(None);
    assert_eq!(clean.len(), 20_000);
    assert_eq!(report.engine.late, 0);
    let cases = [
        (
            "sub-normal amount",
            r#"{"tx_id":"p","ts":1767825599000,"card_id":"c7","merchant_id":"m3","amount":1e-50}"#,
        ),
        (
            "zero amount",
            r#"{"tx_id":"p","ts":1767825599000,"card_id":"c7","merchant_id":"m3","amount":0}"#,
        ),
        (
            "year 2999",
            r#"{"tx_id":"p","ts":"2999-01-01T00:00:00Z","card_id":"c7","merchant_id":"m3","amount":20}"#,
        ),
    ];
    for (what, line) in cases {
        let (poisoned, report) = replay(Some(line));
        assert_eq!(report.engine.late, 0, "{what}: no transaction counted late");
        let close = close_scores(&clean, &poisoned);
        assert!(
            close as f64 >= 0.99 * clean.len() as f64,
            "{what}: only {close} of {} scores within 0.01",
            clean.len()
        );
        let dead = report.input.dead_letters_by_kind.get("future_timestamp");
        if what == "year 2999" {
            assert_eq!(dead, Some(&1), "{what}: a dead letter of its own kind");
            assert_eq!(poisoned.len(), 20_000, "{what}: not scored");
            assert_eq!(close, clean.len(), "{what}: nothing else changed");
        } else {
            assert_eq!(poisoned.len(), 20_001, "{what}: scored");
            assert!(poisoned["\"p\""].is_finite(), "{what}");
        }
    }
}
