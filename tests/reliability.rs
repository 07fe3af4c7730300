//! Failures are reported, not lost: a sink that cannot be written ends the
//! run with its cause, sequential or parallel, and the other sinks keep what
//! they were given.

use crate::util::{fraudstream, repo, sinks_into, text};
use std::path::Path;
use std::process::Output;

/// `fraudstream run TOPOLOGY` (the embedded one when None) with every sink in
/// `out`, then the scores sent to `/dev/full`, and `extra` overrides.
fn run_with_full_scores(topology: Option<&str>, out: &Path, extra: &[&str]) -> Output {
    let mut sets = sinks_into(out);
    sets.push("sinks.scores.path=\"/dev/full\"".into());
    sets.extend(extra.iter().map(|s| s.to_string()));
    let mut args: Vec<&str> = vec!["run", "-q"];
    args.extend(topology);
    for s in &sets {
        args.extend(["--set", s]);
    }
    fraudstream(&args, &repo())
}

/// The run failed with exit code 1 and `cause` in its error line.
fn assert_failed_with(run: &Output, cause: &str) {
    let (_, stderr) = text(run);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(cause), "missing {cause:?} in\n{stderr}");
    assert!(
        !stderr.contains("stopped"),
        "a symptom, not the cause:\n{stderr}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_mid_run_is_reported_with_the_sink_its_path_and_the_cause() {
    for workers in ["1", "2"] {
        let out = tempfile::tempdir().unwrap();
        // Three days of scores are megabytes: a write fails mid-run.
        let run = run_with_full_scores(
            None,
            out.path(),
            &["source.days=3", &format!("engine.workers={workers}")],
        );
        assert_failed_with(
            &run,
            "sinks.scores: writing /dev/full: No space left on device (os error 28)",
        );
        assert!(
            !out.path().join("report.json").exists(),
            "no report for a failed run"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_at_the_last_flush_fails_the_run_and_the_other_sinks_keep_their_records() {
    // The bad-input file: a few scores (they fit the buffer, so the final
    // flush is what fails) and a dead letter for each broken line.
    let expected_dead = std::fs::read_to_string(repo().join("tests/data/bad_input.expected"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.split_whitespace().count() == 2)
        .count();
    for workers in ["1", "2"] {
        let out = tempfile::tempdir().unwrap();
        let run = run_with_full_scores(
            Some("tests/data/bad_input.toml"),
            out.path(),
            &[&format!("engine.workers={workers}")],
        );
        assert_failed_with(
            &run,
            "sinks.scores: flushing /dev/full: No space left on device (os error 28)",
        );
        let dead = std::fs::read_to_string(out.path().join("dead_letters.jsonl")).unwrap();
        assert_eq!(dead.lines().count(), expected_dead, "{dead}");
        for line in dead.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("whole JSON lines");
        }
    }
}
