//! Helpers that make each end-to-end test a few readable lines.

use fraudstream::config::Topology;
use fraudstream::connectors::sinks::report::RunReport;
use fraudstream::exec::pipeline::RunOptions;
use fraudstream::exec::run;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Root of the repository (for topology files).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `--set` overrides that send every file sink of a topology into `dir`.
pub fn sinks_into(dir: &Path) -> Vec<String> {
    ["scores", "alerts", "dead_letters"]
        .iter()
        .map(|s| {
            format!(
                "sinks.{s}.path=\"{}\"",
                dir.join(format!("{s}.jsonl")).display()
            )
        })
        .chain([format!(
            "sinks.report.path=\"{}\"",
            dir.join("report.json").display()
        )])
        .collect()
}

/// Run a topology (embedded when `file` is None) quietly with sinks in `dir`
/// plus `extra` overrides; returns the report read back from its JSON file.
pub fn run_into(file: Option<&str>, dir: &Path, extra: &[&str]) -> RunReport {
    let mut set = sinks_into(dir);
    set.extend(extra.iter().map(|s| s.to_string()));
    let t = match file {
        Some(f) => Topology::from_file(&repo().join(f), &set),
        None => Topology::embedded(&set),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let returned = run(
        &t,
        &RunOptions {
            quiet: true,
            pace: None,
            null_pipeline: false,
        },
    )
    .expect("run succeeds");
    let written = RunReport::read_json(&dir.join("report.json")).expect("report written");
    assert_eq!(
        returned, written,
        "the JSON report says what the run returned"
    );
    written
}

/// Run the `fraudstream` binary.
pub fn fraudstream(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fraudstream"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("binary runs")
}

/// Its stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The Fluvio cluster of the cluster-gated tests (`FLUVIO_SC_ADDR`), or
/// `None` after saying why the test skips.
pub fn cluster(test: &str) -> Option<String> {
    match std::env::var("FLUVIO_SC_ADDR") {
        Ok(a) if !a.trim().is_empty() => Some(a),
        _ => {
            eprintln!("SKIPPED {test}: FLUVIO_SC_ADDR is not set (needs a Fluvio cluster)");
            None
        }
    }
}
