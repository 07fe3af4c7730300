//! Broken records of every kind go to the dead letters with their reason;
//! every valid record is scored; the stream goes on.

use crate::util::{fraudstream, repo, text};
use std::collections::BTreeMap;

/// `line -> expected kind` and the valid tx ids, from a `.expected` file.
fn expectations(name: &str) -> (BTreeMap<u64, String>, Vec<String>) {
    let text = std::fs::read_to_string(repo().join("tests/data").join(name)).unwrap();
    let mut dead = BTreeMap::new();
    let mut valid = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let parts: Vec<&str> = l.split_whitespace().collect();
        match parts.as_slice() {
            [_, "valid", id] => valid.push(id.to_string()),
            [line, kind] => {
                dead.insert(line.parse().unwrap(), kind.to_string());
            }
            _ => panic!("bad expectation line {l}"),
        }
    }
    (dead, valid)
}

fn jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check(extra: &[&str], expected: &str) {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let mut args = vec!["run", "tests/data/bad_input.toml", "--quiet"];
    let sets = [
        format!("sinks.scores.path={o}/scores.jsonl"),
        format!("sinks.alerts.path={o}/alerts.jsonl"),
        format!("sinks.dead_letters.path={o}/dead.jsonl"),
        format!("sinks.report.path={o}/report.json"),
    ];
    for s in sets.iter().map(|s| s.as_str()).chain(extra.iter().copied()) {
        args.extend(["--set", s]);
    }
    let run = fraudstream(&args, &repo());
    let (_, stderr) = text(&run);
    assert!(run.status.success(), "{stderr}");
    let (want_dead, want_valid) = expectations(expected);

    let dead = jsonl(&out.path().join("dead.jsonl"));
    let got_dead: BTreeMap<u64, String> = dead
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().unwrap(),
                d["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got_dead, want_dead, "dead letters by line");
    for d in &dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.len() > 10, "a real reason: {d}");
    }
    let scores = jsonl(&out.path().join("scores.jsonl"));
    let scored: Vec<String> = scores
        .iter()
        .map(|s| {
            s["tx_id"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| s["tx_id"].to_string())
        })
        .collect();
    assert_eq!(scored, want_valid, "every valid line scored, in order");
    for s in &scores {
        let p = s["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["input"]["dead_letters"].as_u64().unwrap() as usize,
        want_dead.len()
    );
    let by_kind = report["input"]["dead_letters_by_kind"].as_object().unwrap();
    for kind in want_dead.values() {
        assert!(by_kind[kind].as_u64().unwrap() >= 1, "{kind} counted");
    }
}

#[test]
fn jsonl_broken_lines_of_every_kind() {
    check(&[], "bad_input.expected");
}

#[test]
fn csv_broken_records_of_every_kind() {
    check(
        &[
            "source.path=tests/data/bad_input.csv",
            "source.format=\"csv\"",
        ],
        "bad_input_csv.expected",
    );
}

#[test]
fn late_events_are_counted_and_scored() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let report_set = format!("sinks.report.path={o}/report.json");
    let scores_set = format!("sinks.scores.path={o}/s.jsonl");
    let alerts_set = format!("sinks.alerts.path={o}/a.jsonl");
    let dead_set = format!("sinks.dead_letters.path={o}/d.jsonl");
    let run = fraudstream(
        &[
            "run",
            "tests/data/bad_input.toml",
            "-q",
            "--set",
            &report_set,
            "--set",
            &scores_set,
            "--set",
            &alerts_set,
            "--set",
            &dead_set,
        ],
        &repo(),
    );
    assert!(run.status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    // ok6 is a month behind the stream: late, yet scored; ok4 (30 s behind) is not late.
    assert_eq!(report["engine"]["late"], 1);
}
