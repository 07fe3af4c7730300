//! Failures are reported, not lost: a sink that cannot be written ends the
//! run with its cause, sequential or parallel, and the other sinks keep what
//! they were given. A record too large for `max_record_bytes` is rejected
//! without being held: memory stays bounded whatever the input holds.

use crate::util::{fraudstream, repo, sinks_into, text};
use std::io::Write;
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

/// Peak resident memory (bytes) of `fraudstream args`, run in the
/// repository, and whether it succeeded.
#[cfg(target_os = "linux")]
#[allow(clippy::zombie_processes)] // reaped by wait4 below, not Child::wait
fn peak_memory(args: &[String], stderr: &Path) -> (bool, u64) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fraudstream"))
        .args(args)
        .current_dir(repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("binary runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which zero is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 rather than Child::wait: it gives this child's own peak
    // (ru_maxrss, KiB), not the maximum over every child of the test binary.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "{}", std::io::Error::last_os_error());
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, usage.ru_maxrss as u64 * 1024)
}

/// A CSV transaction file: a header, five good rows, then, with `tail`
/// bytes, a row whose quote is never closed and `tail` bytes of rows after it.
fn csv_with_an_unclosed_quote(path: &Path, tail: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "tx_id,ts,card_id,merchant_id,amount,lat,lon").unwrap();
    for i in 0..5 {
        writeln!(f, "g{i},2026-01-01T00:0{i}:00Z,card{i},m1,12.5,52.0,4.0").unwrap();
    }
    if tail > 0 {
        writeln!(f, "bad,2026-01-01T00:09:00Z,card1,m1,\"12.5,52.0,4.0").unwrap();
        let chunk = b"x1,2026-01-01T00:10:00Z,card1,m1,3.5,,\n".repeat(1 << 20 >> 5);
        for _ in 0..tail / chunk.len() {
            f.write_all(&chunk).unwrap();
        }
    }
    f.flush().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn an_unclosed_csv_quote_is_one_dead_letter_read_in_bounded_memory() {
    const MAX: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |name: &str, tail: usize| {
        let csv = d.join(format!("{name}.csv"));
        csv_with_an_unclosed_quote(&csv, tail);
        let out = d.join(name);
        let mut args: Vec<String> = vec![
            "run".into(),
            "tests/data/bad_input.toml".into(),
            "-q".into(),
        ];
        for s in sinks_into(&out).into_iter().chain([
            format!("source.path=\"{}\"", csv.display()),
            "source.format=\"csv\"".into(),
            format!("source.max_record_bytes={MAX}"),
        ]) {
            args.extend(["--set".into(), s]);
        }
        let (ok, peak) = peak_memory(&args, &d.join(format!("{name}.stderr")));
        let stderr = std::fs::read_to_string(d.join(format!("{name}.stderr"))).unwrap();
        assert!(ok, "{name}: {stderr}");
        (out, peak)
    };
    // The engine's own peak: the same run over the good rows alone.
    let (_, baseline) = run("small", 0);
    let (out, peak) = run("big", 300 << 20);

    let scored = std::fs::read_to_string(out.join("scores.jsonl")).unwrap();
    assert_eq!(scored.lines().count(), 5, "the good rows are scored");
    let dead = std::fs::read_to_string(out.join("dead_letters.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "the rest of the file is one record");
    assert_eq!(dead[0]["kind"], "oversized");
    assert_eq!(dead[0]["line"], 7);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("exceeds max_record_bytes = {MAX}")),
        "{reason}"
    );
    assert!(reason.contains("never closed"), "{reason}");
    let raw = dead[0]["raw"].as_str().unwrap();
    assert!(raw.starts_with("bad,2026-01-01T00:09:00Z,card1,m1,12.5") && raw.len() <= 4096);
    assert!(
        peak < baseline + 4 * MAX,
        "peak {peak} bytes, over the engine's own {baseline} + 4 × max_record_bytes"
    );
}
