//! The command line: validation reports everything at once, errors are clear.

use crate::util::{fraudstream, repo, text};

#[test]
fn shipped_topologies_validate() {
    let run = fraudstream(
        &[
            "validate",
            "topologies/embedded.toml",
            "topologies/replay-csv.toml",
            "tests/data/bad_input.toml",
        ],
        &repo(),
    );
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stderr}");
    assert_eq!(stdout.matches(": ok").count(), 3, "{stdout}");
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
        "a.toml: source.type: expected one of \"simulator\", \"file\", found \"kafka\"",
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
